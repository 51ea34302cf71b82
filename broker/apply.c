#include "apply.h"
#include <stdio.h>
#include <string.h>
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

/* The stored documents overlaid with the incoming ones by name (prune: the incoming ones only). */
static json_t *overlay(const json_t *stored, const json_t *incoming, const char *key, bool prune)
{
    json_t *out = json_array();
    size_t i;
    json_t *d;
    if (out == NULL)
        return NULL;
    if (incoming == NULL) {
        json_array_extend(out, (json_t *)stored);
        return out;
    }
    if (!prune)
        json_array_foreach ((json_t *)stored, i, d) {
            const char *name = json_string_value(json_object_get(d, key));
            if (name == NULL || find_doc(incoming, key, name) == NULL)
                json_array_append(out, d);
        }
    json_array_extend(out, (json_t *)incoming);
    return out;
}

enum broker_err apply_documents(struct store *st, const char *actor, const json_t *issuers, const json_t *identities,
                                bool prune, bool dry_run, json_t *changes, char *err, size_t errlen)
{
    json_t *st_iss = NULL, *st_ids = NULL, *all_iss = NULL, *all_ids = NULL, *mine = json_array();
    struct policy_set *set = NULL;
    enum broker_err e;
    err[0] = '\0';
    if (mine == NULL)
        return BROKER_ERR_NOMEM;
    if ((e = store_load_documents(st, &st_iss, &st_ids)) != BROKER_OK) {
        snprintf(err, errlen, "database: %s", store_last_error(st));
        goto out;
    }
    all_iss = overlay(st_iss, issuers, "issuer", prune);
    all_ids = overlay(st_ids, identities, "identity", prune);
    if (all_iss == NULL || all_ids == NULL) {
        e = BROKER_ERR_NOMEM;
        goto out;
    }
    if ((e = policy_set_build(all_iss, all_ids, &set, err, errlen)) != BROKER_OK)
        goto out;
    if ((e = store_put_documents_as(st, actor, issuers, identities, prune, dry_run, mine)) != BROKER_OK) {
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
    if (set != NULL)
        policy_set_unref(set);
    json_decref(mine);
    json_decref(st_iss);
    json_decref(st_ids);
    json_decref(all_iss);
    json_decref(all_ids);
    return e;
}
