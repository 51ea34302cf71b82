#include "cli_policy.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_lint.h"
#include "cli_test.h"
#include "docload.h"
#include "policy.h"
#include "store.h"

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
    struct docset docs;
    if (docset_init(&docs) != 0)
        return 1;
    json_t *issuers = docs.issuers, *identities = docs.identities, *changes = json_array();
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
            if (docset_load_path(&docs, argv[i], false, stderr) != 0)
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
    docset_clear(&docs);
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
