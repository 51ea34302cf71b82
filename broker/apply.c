#include "apply.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "bearer.h"
#include "issuers.h"
#include "policy.h"

static const json_t *find_doc(const json_t *docs, const char *key, const char *name)
{
    size_t i;
    const json_t *d;
    json_array_foreach (docs, i, d) {
        const char *n = json_string_value(json_object_get(d, key));
        if (n != NULL && strcmp(n, name) == 0)
            return d;
    }
    return NULL;
}

/* Files named by a document being written are read by every replica: through the API there is
 * no document directory to resolve a relative path against (the CLI's docload has made them
 * absolute), and a file no replica can read would make every reload refuse the whole set. */
static enum broker_err files_check(const json_t *doc, bool broker_host, char *err, size_t errlen)
{
    static const char *const keys[] = {"jwks_file", "ca_file", "bearer_token_file"};
    const char *name = json_string_value(json_object_get(doc, "issuer"));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = json_string_value(json_object_get(doc, keys[i]));
        bool bearer = strcmp(keys[i], "bearer_token_file") == 0;
        if (v == NULL)
            continue;
        if (v[0] != '/') {
            snprintf(err, errlen, "issuer %s: %s: must be an absolute path on the broker hosts", name, keys[i]);
            return BROKER_ERR_INVALID_DOCUMENT;
        }
        /* the CLI does not run on the broker hosts: a projected token file is theirs alone */
        if (bearer && !broker_host)
            continue;
        /* checked before access(): for a path outside the list, the answer must not say whether
         * it exists (no oracle on the broker hosts' file system) */
        if (bearer && !bearer_path_allowed(v)) {
            snprintf(err, errlen, "issuer %s: bearer_token_file: not allowed by BROKER_BEARER_TOKEN_FILES", name);
            return BROKER_ERR_INVALID_DOCUMENT;
        }
        if (access(v, R_OK) != 0) {
            snprintf(err, errlen, "issuer %s: %s: not readable by the broker", name, keys[i]);
            return BROKER_ERR_INVALID_DOCUMENT;
        }
    }
    return BROKER_OK;
}

enum broker_err apply_check_set(void *arg, const json_t *issuers, const json_t *identities, char *err, size_t errlen)
{
    const struct apply_check *c = arg;
    struct policy_set *set = NULL;
    enum broker_err e = policy_set_build(issuers, identities, &set, err, errlen);
    size_t i;
    const json_t *doc;
    if (e != BROKER_OK)
        goto out;
    if (c != NULL && c->incoming != NULL)
        json_array_foreach (c->incoming, i, doc) {
            if ((e = files_check(doc, c->broker_host, err, errlen)) != BROKER_OK)
                goto out;
        }
    /* what the reload does next (issuers_sync): static key sets parsed, each url once */
    e = issuers_check(set, err, errlen);
out:
    if (set != NULL)
        policy_set_unref(set);
    return e;
}

enum broker_err apply_documents(struct store *st, const char *actor, const json_t *issuers, const json_t *identities,
                                bool prune, bool dry_run, bool broker_host, json_t *changes, char *err, size_t errlen)
{
    json_t *st_iss = NULL, *st_ids = NULL, *mine = json_array();
    struct apply_check ac = {issuers, broker_host};
    struct store_doc_check check = {apply_check_set, &ac};
    enum broker_err e;
    err[0] = '\0';
    if (mine == NULL)
        return BROKER_ERR_NOMEM;
    /* only to show each change's "before"; the set is checked inside the write's transaction */
    if ((e = store_load_documents(st, &st_iss, &st_ids)) != BROKER_OK) {
        snprintf(err, errlen, "database: %s", store_last_error(st));
        goto out;
    }
    e = store_put_documents_checked(st, actor, issuers, identities, prune, dry_run, &check, mine, err, errlen);
    if (e != BROKER_OK) {
        if (e == BROKER_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
        else if (e != BROKER_ERR_INVALID_DOCUMENT)
            snprintf(err, errlen, "database: %s", store_last_error(st));
        goto out;
    }
    size_t i;
    json_t *c;
    json_array_foreach (mine, i, c) {
        const char *kind = json_string_value(json_object_get(c, "kind"));
        const char *name = json_string_value(json_object_get(c, "name"));
        bool iss = kind != NULL && strcmp(kind, "issuer") == 0;
        const char *key = iss ? "issuer" : "identity";
        const json_t *before = name ? find_doc(iss ? st_iss : st_ids, key, name) : NULL;
        const json_t *after = name ? find_doc(iss ? issuers : identities, key, name) : NULL;
        json_object_set_new(c, "before", before ? json_deep_copy(before) : json_null());
        json_object_set_new(c, "after", after ? json_deep_copy(after) : json_null());
    }
    json_array_extend(changes, mine);
out:
    json_decref(mine);
    json_decref(st_iss);
    json_decref(st_ids);
    return e;
}
