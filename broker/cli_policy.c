#include "cli_policy.h"
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "jwt.h"
#include "bounds.h"
#include "cli_lint.h"
#include "cli_test.h"
#include "policy.h"
#include "store.h"

/* Make a relative file reference of an issuer document absolute, relative to the document's
 * directory, so every replica reads the same file whatever its working directory. */
static int absolutize(json_t *doc, const char *key, const char *docpath)
{
    const char *v = json_string_value(json_object_get(doc, key));
    if (v == NULL || v[0] == '/')
        return 0;
    char dirbuf[PATH_MAX], joined[PATH_MAX * 2], real[PATH_MAX];
    snprintf(dirbuf, sizeof(dirbuf), "%s", docpath);
    snprintf(joined, sizeof(joined), "%s/%s", dirname(dirbuf), v);
    if (realpath(joined, real) == NULL) {
        fprintf(stderr, "%s: %s: cannot resolve %s: %s\n", docpath, key, joined, strerror(errno));
        return -1;
    }
    json_object_set_new(doc, key, json_string(real));
    return 0;
}

static int load_file(const char *path, json_t *issuers, json_t *identities)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(BROKER_MAX_DOC_BYTES + 1);
    size_t n = buf ? fread(buf, 1, BROKER_MAX_DOC_BYTES + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > BROKER_MAX_DOC_BYTES) {
        fprintf(stderr, "%s: larger than %d bytes\n", path, BROKER_MAX_DOC_BYTES);
        free(buf);
        return -1;
    }
    json_t *doc = jwt_json_load_strict((const uint8_t *)buf, n, BROKER_MAX_JSON_DEPTH);
    free(buf);
    if (doc == NULL || !json_is_object(doc)) {
        fprintf(stderr, "%s: not a JSON object (or duplicate keys / too deeply nested)\n", path);
        json_decref(doc);
        return -1;
    }
    const char *kind = policy_doc_kind(doc);
    int rc = 0;
    if (kind != NULL && strcmp(kind, "issuer") == 0) {
        if (absolutize(doc, "jwks_file", path) != 0 || absolutize(doc, "ca_file", path) != 0 ||
            absolutize(doc, "bearer_token_file", path) != 0)
            rc = -1;
        else
            json_array_append(issuers, doc);
    } else if (kind != NULL && strcmp(kind, "identity") == 0) {
        json_array_append(identities, doc);
    } else {
        fprintf(stderr, "%s: neither an issuer document (\"issuer\") nor an identity document (\"identity\")\n", path);
        rc = -1;
    }
    json_decref(doc);
    return rc;
}

static int load_path(const char *path, json_t *issuers, json_t *identities)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode))
        return load_file(path, issuers, identities);
    /* a directory: its *.json files, sorted, not recursive (examples/ stay out) */
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, alphasort), rc = 0;
    if (n < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(ents[i]->d_name);
        char full[PATH_MAX];
        if (l > 5 && strcmp(ents[i]->d_name + l - 5, ".json") == 0 && ents[i]->d_name[0] != '.') {
            snprintf(full, sizeof(full), "%s/%s", path, ents[i]->d_name);
            if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && load_file(full, issuers, identities) != 0)
                rc = -1;
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

/* Overlay new documents on the stored ones by name (or replace them all with prune). */
static json_t *merged(const json_t *stored, const json_t *incoming, const char *key, bool prune)
{
    json_t *out = json_array();
    size_t i;
    json_t *d;
    if (!prune) {
        json_array_foreach(stored, i, d)
        {
            const char *name = json_string_value(json_object_get(d, key));
            bool replaced = false;
            size_t k;
            json_t *nd;
            json_array_foreach(incoming, k, nd)
            if (name && json_string_value(json_object_get(nd, key)) &&
                strcmp(name, json_string_value(json_object_get(nd, key))) == 0) replaced = true;
            if (!replaced)
                json_array_append(out, d);
        }
    }
    json_array_extend(out, (json_t *)incoming);
    return out;
}

static int apply(int argc, char **argv)
{
    bool prune = false, dry_run = false;
    const char *dburl = getenv("BROKER_DATABASE_URL");
    json_t *issuers = json_array(), *identities = json_array(), *changes = json_array();
    json_t *st_iss = NULL, *st_ids = NULL, *all_iss = NULL, *all_ids = NULL;
    struct store *st = NULL;
    struct policy_set *set = NULL;
    int rc = 1, npaths = 0;
    char err[1024];
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--prune") == 0)
            prune = true;
        else if (strcmp(argv[i], "--dry-run") == 0)
            dry_run = true;
        else if (strcmp(argv[i], "--database-url") == 0 && i + 1 < argc)
            dburl = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "policy apply: unknown flag %s\n", argv[i]);
            goto out;
        } else {
            npaths++;
            if (load_path(argv[i], issuers, identities) != 0)
                goto out;
        }
    }
    if (npaths == 0) {
        fprintf(stderr, "usage: broker policy apply [--prune] [--dry-run] PATH...\n");
        goto out;
    }
    if (dburl == NULL) {
        fprintf(stderr, "policy apply: BROKER_DATABASE_URL is not set\n");
        goto out;
    }
    if (store_open(dburl, &st) != BROKER_OK || store_load_documents(st, &st_iss, &st_ids) != BROKER_OK) {
        fprintf(stderr, "policy apply: database: %s\n", st ? store_last_error(st) : "out of memory");
        goto out;
    }
    /* validate the whole resulting set first: an invalid document changes nothing */
    all_iss = merged(st_iss, issuers, "issuer", prune);
    all_ids = merged(st_ids, identities, "identity", prune);
    if (policy_set_build(all_iss, all_ids, &set, err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "policy apply: refused, nothing changed: %s\n", err);
        goto out;
    }
    /* the linter's findings are warnings here: `broker policy lint` is the gate that fails */
    struct lint_report lint = {0};
    if (lint_documents(all_iss, identities, &lint) == BROKER_OK) /* stored issuers give context */
        for (size_t k = 0; k < lint.n; k++) {
            fputs("warning: ", stderr);
            cli_lint_print(stderr, NULL, &lint.items[k]);
        }
    lint_report_free(&lint);
    if (store_put_documents(st, issuers, identities, prune, dry_run, changes) != BROKER_OK) {
        fprintf(stderr, "policy apply: database: %s\n", store_last_error(st));
        goto out;
    }
    size_t i;
    json_t *c;
    json_array_foreach(changes, i, c)
    {
        printf("%s%s %s %s\n", dry_run ? "(dry run) " : "", json_string_value(json_object_get(c, "change")),
               json_string_value(json_object_get(c, "kind")), json_string_value(json_object_get(c, "name")));
    }
    rc = 0;
out:
    if (set != NULL)
        policy_set_unref(set);
    json_decref(issuers);
    json_decref(identities);
    json_decref(changes);
    json_decref(st_iss);
    json_decref(st_ids);
    json_decref(all_iss);
    json_decref(all_ids);
    store_close(st);
    return rc;
}

int cli_policy(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "apply") == 0)
        return apply(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "lint") == 0)
        return cli_policy_lint(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "test") == 0)
        return cli_policy_test(argc - 1, argv + 1);
    fprintf(stderr, "usage: broker policy apply [--prune] [--dry-run] PATH...\n"
                    "       broker policy lint [--json] PATH...\n"
                    "       broker policy test --token FILE [--identity N] [--at TIME] [--json] [PATH...]\n");
    return 2;
}
