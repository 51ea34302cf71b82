#include "cli_policy.h"
#include "curlx.h"
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "apply.h"
#include "bounds.h"
#include "cli_lint.h"
#include "cli_test.h"
#include "docload.h"
#include "policy.h"
#include "store.h"

/* Lines of a document pretty-printed with sorted keys (for diffs). */
static size_t doc_lines(const json_t *doc, char **text, char ***lines)
{
    *text = NULL;
    *lines = NULL;
    if (doc == NULL || json_is_null(doc))
        return 0;
    *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    size_t n = 0, cap = 0;
    for (char *p = *text, *save = NULL; p != NULL; p = save) {
        save = strchr(p, '\n');
        if (save != NULL)
            *save++ = '\0';
        if (n == cap) {
            char **nl = realloc(*lines, (cap = cap ? cap * 2 : 64) * sizeof(**lines));
            if (nl == NULL)
                break;
            *lines = nl;
        }
        (*lines)[n++] = p;
    }
    return n;
}

#define DIFF_MAX_LINES 2000 /* beyond this a change is shown whole rather than diffed */

/* A line diff (longest common subsequence) of two documents, "-" removed and "+" added lines. */
static void print_diff(const json_t *before, const json_t *after)
{
    char *ta, *tb, **a, **b;
    size_t na = doc_lines(before, &ta, &a), nb = doc_lines(after, &tb, &b);
    unsigned *lcs = NULL;
    if (na <= DIFF_MAX_LINES && nb <= DIFF_MAX_LINES)
        lcs = calloc((na + 1) * (nb + 1), sizeof(*lcs));
    if (lcs == NULL) {
        for (size_t i = 0; i < na; i++)
            printf("    - %s\n", a[i]);
        for (size_t j = 0; j < nb; j++)
            printf("    + %s\n", b[j]);
        goto out;
    }
#define L(i, j) lcs[(i) * (nb + 1) + (j)]
    for (size_t i = na; i-- > 0;)
        for (size_t j = nb; j-- > 0;)
            L(i, j) = strcmp(a[i], b[j]) == 0 ? L(i + 1, j + 1) + 1 : L(i + 1, j) > L(i, j + 1) ? L(i + 1, j) : L(i, j + 1);
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        if (i < na && j < nb && strcmp(a[i], b[j]) == 0) {
            i++, j++;
        } else if (i < na && (j == nb || L(i + 1, j) >= L(i, j + 1))) {
            printf("    - %s\n", a[i++]); /* removals first, as diff(1) shows them */
        } else {
            printf("    + %s\n", b[j++]);
        }
    }
#undef L
out:
    free(lcs);
    free(a);
    free(b);
    free(ta);
    free(tb);
}

static void print_changes(const json_t *changes, bool dry_run)
{
    size_t i;
    const json_t *c;
    json_array_foreach (changes, i, c) {
        const char *change = json_string_value(json_object_get(c, "change"));
        printf("%s%s %s %s\n", dry_run ? "(dry run) " : "", change ? change : "?",
               json_string_value(json_object_get(c, "kind")), json_string_value(json_object_get(c, "name")));
        if (dry_run && change != NULL && strcmp(change, "unchanged") != 0)
            print_diff(json_object_get(c, "before"), json_object_get(c, "after"));
    }
}

/* POST /v1/policy/apply on a running broker: the same all-or-nothing apply, through the admin
 * API (a CI job can use a broker token it got by exchanging its own OIDC token). */
static int apply_remote(const char *server, const char *token, const struct docset *docs, bool prune, bool dry_run,
                        json_t *changes)
{
    int rc = 1;
    struct curlx_body resp = {.max = BROKER_MAX_DOC_BYTES * 4};
    char url[1024], auth[BROKER_MAX_TOKEN_LEN + 32];
    json_t *body = json_pack("{s:O, s:O, s:b, s:b}", "issuers", docs->issuers, "identities", docs->identities,
                             "prune", prune, "dry_run", dry_run);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    size_t sl = strlen(server);
    while (sl > 0 && server[sl - 1] == '/')
        sl--;
    if (text == NULL || c == NULL || strlen(token) > BROKER_MAX_TOKEN_LEN)
        goto out;
    snprintf(url, sizeof(url), "%.*s/v1/policy/apply", (int)sl, server);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlx_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    json_t *r = resp.p ? json_loads(resp.p, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (cc != CURLE_OK)
        fprintf(stderr, "policy apply: %s: %s\n", url, curl_easy_strerror(cc));
    else if (status != 200)
        fprintf(stderr, "policy apply: refused (%ld %s): %s\n", status,
                json_string_value(json_object_get(r, "error")) ? json_string_value(json_object_get(r, "error")) : "",
                json_string_value(json_object_get(r, "error_description")) ? json_string_value(json_object_get(r, "error_description")) : "");
    else if (json_is_array(json_object_get(r, "changes"))) {
        json_array_extend(changes, json_object_get(r, "changes"));
        rc = 0;
    }
    json_decref(r);
out:
    OPENSSL_cleanse(auth, sizeof(auth));
    curl_slist_free_all(h);
    if (c != NULL)
        curl_easy_cleanup(c);
    free(text);
    free(resp.p);
    json_decref(body);
    return rc;
}

/* The issuers the linter sees: the stored ones give context to the incoming identities, and an
 * incoming issuer replaces the stored one of its name (else re-applying a set would report each
 * of its issuers as a duplicate of itself). NULL when out of memory. */
static json_t *lint_context(const json_t *stored, const json_t *incoming)
{
    json_t *ctx = json_array();
    size_t i, k;
    const json_t *s, *in;
    json_array_foreach(stored, i, s) {
        bool replaced = false;
        json_array_foreach(incoming, k, in)
            replaced = replaced || json_equal(json_object_get(in, "issuer"), json_object_get(s, "issuer"));
        if (!replaced && ctx != NULL && json_array_append(ctx, (json_t *)s) != 0) {
            json_decref(ctx);
            return NULL;
        }
    }
    if (ctx != NULL && json_array_extend(ctx, (json_t *)incoming) != 0) {
        json_decref(ctx);
        return NULL;
    }
    return ctx;
}

static int apply(int argc, char **argv)
{
    bool prune = false, dry_run = false;
    const char *dburl = getenv("BROKER_DATABASE_URL"), *server = NULL, *token = getenv("BROKER_ADMIN_TOKEN");
    struct docset docs;
    if (docset_init(&docs) != 0)
        return 1;
    json_t *changes = json_array();
    struct store *st = NULL;
    int rc = 1, npaths = 0;
    char err[1024];
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--prune") == 0)
            prune = true;
        else if (strcmp(argv[i], "--dry-run") == 0)
            dry_run = true;
        else if (strcmp(argv[i], "--database-url") == 0 && i + 1 < argc)
            dburl = argv[++i];
        else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            server = argv[++i];
        else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc)
            token = argv[++i];
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
        fprintf(stderr, "usage: broker policy apply [--prune] [--dry-run] [--server URL --token T] PATH...\n");
        goto out;
    }
    if (server != NULL) {
        if (token == NULL) {
            fprintf(stderr, "policy apply: --server needs --token (or BROKER_ADMIN_TOKEN)\n");
            goto out;
        }
        if ((rc = apply_remote(server, token, &docs, prune, dry_run, changes)) == 0)
            print_changes(changes, dry_run);
        goto out;
    }
    if (dburl == NULL) {
        fprintf(stderr, "policy apply: BROKER_DATABASE_URL is not set (or use --server)\n");
        goto out;
    }
    if (store_open(dburl, &st) != BROKER_OK) {
        fprintf(stderr, "policy apply: database: %s\n", st ? store_last_error(st) : "out of memory");
        goto out;
    }
    /* the linter's findings are warnings here: `broker policy lint` is the gate that fails */
    json_t *st_iss = NULL, *st_ids = NULL;
    if (store_load_documents(st, &st_iss, &st_ids) == BROKER_OK) {
        json_t *ctx = lint_context(st_iss, docs.issuers);
        struct lint_report lint = {0};
        if (ctx != NULL && lint_documents(ctx, docs.identities, &lint) == BROKER_OK)
            for (size_t k = 0; k < lint.n; k++) {
                fputs("warning: ", stderr);
                cli_lint_print(stderr, NULL, &lint.items[k]);
            }
        lint_report_free(&lint);
        json_decref(ctx);
    }
    json_decref(st_iss);
    json_decref(st_ids);
    enum broker_err e = apply_documents(st, "cli", docs.issuers, docs.identities, prune, dry_run, false, changes, err,
                                        sizeof(err));
    if (e != BROKER_OK) {
        fprintf(stderr, "policy apply: refused, nothing changed: %s\n", err);
        goto out;
    }
    print_changes(changes, dry_run);
    rc = 0;
out:
    docset_clear(&docs);
    json_decref(changes);
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
    fprintf(stderr, "usage: broker policy apply [--prune] [--dry-run] [--server URL --token T] PATH...\n"
                    "       broker policy lint [--json] PATH...\n"
                    "       broker policy test --token FILE [--identity N] [--at TIME] [--json] [PATH...]\n");
    return 2;
}
