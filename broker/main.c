/* broker: commands and start-up. */
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "admin.h"
#include "audit.h"
#include "bearer.h"
#include "cli_audit.h"
#include "cli_exchange.h"
#include "cli_policy.h"
#include "config.h"
#include "exchange.h"
#include "http.h"
#include "issuers.h"
#include "issuers_fetch.h"
#include "jalloc.h"
#include "keys.h"
#include "lifecycle.h"
#include "log.h"
#include "names.h"
#include "policy.h"
#include "revoked.h"
#include "state.h"
#include "store.h"
#include "tokenreview.h"
#include "wellknown.h"
#include "worker.h"

static const struct http_route routes[] = {
    {"POST", "/v1/token", PRIV_NONE, exchange_handle},
    {"GET", "/v1/audit", PRIV_ADMIN, admin_audit_list},
    {"GET", "/v1/audit/", PRIV_ADMIN, admin_audit_get},
    {"GET", "/v1/identities", PRIV_ADMIN, admin_docs_list},
    {"GET", "/v1/identities/", PRIV_ADMIN, admin_doc_get},
    {"PUT", "/v1/identities/", PRIV_ADMIN, admin_doc_put},
    {"DELETE", "/v1/identities/", PRIV_ADMIN, admin_doc_delete},
    {NULL, "/v1/identities/", PRIV_ADMIN, admin_doc_method},
    {"POST", "/v1/policy/test", PRIV_ADMIN, admin_policy_test},
    {"POST", "/v1/policy/apply", PRIV_ADMIN, admin_policy_apply},
    {"POST", "/v1/introspect", PRIV_INTROSPECT, lifecycle_introspect},
    /* token=: no credential (the token is the proof); jti=: PRIV_ADMIN, checked by the handler */
    {"POST", "/v1/revoke", PRIV_NONE, lifecycle_revoke},
    {"GET", "/v1/issuers", PRIV_ADMIN, admin_docs_list},
    {"GET", "/v1/issuers/", PRIV_ADMIN, admin_doc_get},
    {"PUT", "/v1/issuers/", PRIV_ADMIN, admin_doc_put},
    {"DELETE", "/v1/issuers/", PRIV_ADMIN, admin_doc_delete},
    {NULL, "/v1/issuers/", PRIV_ADMIN, admin_doc_method},
    {"GET", "/.well-known/openid-configuration", PRIV_NONE, wellknown_discovery},
    {"GET", "/.well-known/oauth-authorization-server", PRIV_NONE, wellknown_discovery},
    {"GET", "/.well-known/jwks.json", PRIV_NONE, wellknown_jwks},
    {"GET", "/healthz", PRIV_NONE, wellknown_healthz},
    {"GET", "/readyz", PRIV_NONE, wellknown_readyz},
    {"GET", "/metrics", PRIV_NONE, wellknown_metrics},
};

static void usage(void)
{
    fputs("usage: broker COMMAND\n"
          "  serve [--listen H:P] [--tls-listen H:P --tls-cert F --tls-key F] [--issuer URL]\n"
          "        [--keys-dir D] [--threads N] [--database-url URL]\n"
          "  migrate                         apply sql/ migrations (idempotent)\n"
          "  policy apply [--prune] [--dry-run] [--server URL --token T] PATH...\n"
          "  policy lint [--json] PATH...      flag dangerous trust policies (exit 1 on errors)\n"
          "  policy test --token FILE [--identity N] [--at TIME] [--json] [PATH...]\n"
          "                                  explain how a token would be decided\n"
          "  keys generate [--activate-in DURATION] | keys list | keys prune [--max-token-ttl DURATION]\n"
          "  admin-token create --name NAME  print a new admin token once; only its hash is stored\n"
          "  admin-token revoke --name NAME  stop a token working, on every replica at once\n"
          "  audit show REQUEST_ID [--json]  one decision and why (denials: every check and condition)\n"
          "  exchange --server URL [--identity N] [--audience A] [--scope S] [--token-file F | --token-env VAR]\n"
          "        [--oidc-audience AUD] [--format token|json|env] [--cacert F] [--retries N]\n"
          "                                  exchange the ambient OIDC token, print the access token\n"
          "  run --server URL [exchange options] -- CMD ARGS...\n"
          "                                  run CMD with BROKER_TOKEN (refreshed into BROKER_TOKEN_FILE)\n"
          "Configuration comes from BROKER_* environment variables (see README.md).\n",
          stderr);
}

static int cmd_serve(int argc, char **argv)
{
    struct config cfg;
    char err[512];
    if (config_from_env(&cfg, err, sizeof(err)) != BROKER_OK ||
        config_from_args(&cfg, argc, argv, err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "serve: %s\n", err);
        return 2;
    }
    if (cfg.database_url == NULL) {
        fprintf(stderr, "serve: BROKER_DATABASE_URL is required\n");
        return 2;
    }
    int rc = 1;
    bool audit_on = false, worker_on = false, issuers_on = false, state_on = false, review_on = false,
         revoked_on = false;
    exchange_init(cfg.issuer);
    admin_init(cfg.issuer);
    lifecycle_init(cfg.issuer);
    if (revoked_init() != BROKER_OK) {
        fprintf(stderr, "serve: out of memory\n");
        goto out;
    }
    revoked_on = true;
    if (wellknown_init(cfg.issuer) != BROKER_OK)
        goto out;
    if (issuers_fetch_connect_to(getenv("BROKER_FETCH_CONNECT_TO"), err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "serve: %s\n", err);
        goto out;
    }
    /* which files issuer documents may name as bearer_token_file: unset allows none */
    if (bearer_allowlist_set(getenv("BROKER_BEARER_TOKEN_FILES"), err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "serve: %s\n", err);
        goto out;
    }
    if (issuers_start() != BROKER_OK) {
        fprintf(stderr, "serve: cannot start the issuer key fetcher\n");
        goto out;
    }
    issuers_on = true;
    if (tokenreview_start() != BROKER_OK) {
        fprintf(stderr, "serve: cannot start the TokenReview threads\n");
        goto out;
    }
    review_on = true;
    if (state_start(&cfg, err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "serve: %s\n", err);
        goto out;
    }
    state_on = true;
    if (audit_start(cfg.database_url) != BROKER_OK || (audit_on = true, worker_start(cfg.database_url)) != BROKER_OK) {
        fprintf(stderr, "serve: cannot start the audit writer\n");
        goto out;
    }
    worker_on = true;
    if (http_serve(&cfg, routes, sizeof(routes) / sizeof(routes[0])) == BROKER_OK)
        rc = 0;
out:
    if (audit_on)
        audit_stop(); /* every accepted decision is written or failed before exit */
    if (worker_on)
        worker_stop();
    if (state_on)
        state_stop();
    if (review_on)
        tokenreview_stop();
    if (issuers_on)
        issuers_stop();
    if (revoked_on)
        revoked_shutdown(); /* after every reader (loops, worker) and the writer (state) stopped */
    if (issuers_fetch_connect_to(NULL, err, sizeof(err)) != BROKER_OK) /* frees the list; cannot fail */
        rc = 1;
    return rc;
}

static int cmd_migrate(int argc, char **argv)
{
    struct config cfg;
    char err[512];
    if (config_from_env(&cfg, err, sizeof(err)) != BROKER_OK) {
        fprintf(stderr, "migrate: %s\n", err);
        return 2;
    }
    for (int i = 0; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sql-dir") == 0)
            cfg.sql_dir = argv[i + 1];
        else if (strcmp(argv[i], "--database-url") == 0)
            cfg.database_url = argv[i + 1];
    }
    if (cfg.database_url == NULL) {
        fprintf(stderr, "migrate: BROKER_DATABASE_URL is required\n");
        return 2;
    }
    struct store *st = NULL;
    int applied = 0, rc = 1;
    if (store_open(cfg.database_url, &st) != BROKER_OK)
        fprintf(stderr, "migrate: %s\n", st ? store_last_error(st) : "out of memory");
    else if (store_migrate(st, cfg.sql_dir, &applied) != BROKER_OK)
        fprintf(stderr, "migrate: %s\n", store_last_error(st));
    else {
        printf("migrations applied: %d\n", applied);
        rc = 0;
    }
    store_close(st);
    return rc;
}

static const char *keys_dir(void)
{
    const char *d = getenv("BROKER_KEYS_DIR");
    return d && *d ? d : "./keys";
}

static int cmd_keys(int argc, char **argv)
{
    int64_t now = (int64_t)time(NULL);
    if (argc >= 1 && strcmp(argv[0], "generate") == 0) {
        int64_t delay = 3600;
        if (argc != 1 && (argc != 3 || strcmp(argv[1], "--activate-in") != 0)) {
            fprintf(stderr, "usage: broker keys generate [--activate-in DURATION]\n");
            return 2;
        }
        if (argc == 3 && policy_parse_duration(argv[2], &delay) != BROKER_OK) {
            fprintf(stderr, "keys generate: bad duration %s\n", argv[2]);
            return 2;
        }
        char kid[KEYS_KID_MAX + 1];
        enum broker_err e = keys_generate(keys_dir(), now, delay, kid);
        if (e != BROKER_OK) {
            fprintf(stderr, "keys generate: %s\n", broker_strerror(e));
            return 1;
        }
        printf("%s\n", kid);
        return 0;
    }
    if (argc >= 1 && strcmp(argv[0], "list") == 0) {
        struct keyring *ring = NULL;
        enum broker_err e = keys_load(keys_dir(), now, &ring);
        if (e != BROKER_OK) {
            fprintf(stderr, "keys list: %s\n", broker_strerror(e));
            return 1;
        }
        static const char *const states[] = {"", "next", "active", "retired"};
        for (size_t i = 0; i < ring->n; i++) {
            const struct signing_key *k = &ring->keys[i];
            char at[32];
            time_t t = (time_t)k->activate_at;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("%-24s %-8s activate_at=%s\n", k->kid, states[k->state], at);
        }
        keys_free(ring);
        return 0;
    }
    if (argc >= 1 && strcmp(argv[0], "prune") == 0) {
        int64_t ttl = 24 * 3600;
        if (argc >= 3 && strcmp(argv[1], "--max-token-ttl") == 0 && policy_parse_duration(argv[2], &ttl) != BROKER_OK) {
            fprintf(stderr, "keys prune: bad duration %s\n", argv[2]);
            return 2;
        }
        int pruned = 0;
        enum broker_err e = keys_prune(keys_dir(), now, ttl, &pruned);
        if (e != BROKER_OK) {
            fprintf(stderr, "keys prune: %s\n", broker_strerror(e));
            return 1;
        }
        printf("pruned %d key(s)\n", pruned);
        return 0;
    }
    usage();
    return 2;
}

static int cmd_admin_token(int argc, char **argv)
{
    bool create = argc == 3 && strcmp(argv[0], "create") == 0, revoke = argc == 3 && strcmp(argv[0], "revoke") == 0;
    if ((!create && !revoke) || strcmp(argv[1], "--name") != 0) {
        usage();
        return 2;
    }
    const char *dburl = getenv("BROKER_DATABASE_URL");
    if (dburl == NULL) {
        fprintf(stderr, "admin-token: BROKER_DATABASE_URL is required\n");
        return 2;
    }
    char tok[128] = "";
    uint8_t hash[32];
    struct store *st = NULL;
    int rc = 1;
    enum broker_err e;
    if (create && !broker_name_ok(argv[2], strlen(argv[2]))) {
        /* the name appears in logs and in audit_changes.who */
        fprintf(stderr, "admin-token: the name must be 1-%d characters of [A-Za-z0-9._-]\n", BROKER_MAX_NAME_LEN);
        return 2;
    }
    if (create && admin_token_new(tok, sizeof(tok), hash) != BROKER_OK)
        goto out;
    if (store_open(dburl, &st) != BROKER_OK) {
        fprintf(stderr, "admin-token: %s\n", st ? store_last_error(st) : "out of memory");
        goto out;
    }
    if (revoke) {
        /* every admin request looks its token up, so this takes effect on every replica at once */
        if ((e = store_admin_token_revoke(st, argv[2])) != BROKER_OK) {
            fprintf(stderr, "admin-token: %s\n",
                    e == BROKER_ERR_NOT_FOUND ? "no active token has that name" : store_last_error(st));
            goto out;
        }
        printf("revoked %s\n", argv[2]);
        rc = 0;
        goto out;
    }
    if ((e = store_admin_token_add(st, argv[2], hash)) != BROKER_OK) {
        fprintf(stderr, "admin-token: %s\n", e == BROKER_ERR_BAD_REQUEST ? "a token with that name exists"
                                                                            : store_last_error(st));
        goto out;
    }
    printf("%s\n", tok);
    rc = 0;
out:
    OPENSSL_cleanse(tok, sizeof(tok));
    store_close(st);
    return rc;
}

int main(int argc, char **argv)
{
    if (!jalloc_install()) /* before any jansson call; without it jansson simply keeps malloc */
        fprintf(stderr, "broker: cannot reserve the JSON arena range; continuing without it\n");
    if (argc < 2) {
        usage();
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *cmd = argv[1];
    int rc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(argc - 2, argv + 2);
    else if (strcmp(cmd, "migrate") == 0)
        rc = cmd_migrate(argc - 2, argv + 2);
    else if (strcmp(cmd, "policy") == 0)
        rc = cli_policy(argc - 2, argv + 2);
    else if (strcmp(cmd, "keys") == 0)
        rc = cmd_keys(argc - 2, argv + 2);
    else if (strcmp(cmd, "audit") == 0)
        rc = cli_audit(argc - 2, argv + 2);
    else if (strcmp(cmd, "admin-token") == 0)
        rc = cmd_admin_token(argc - 2, argv + 2);
    else if (strcmp(cmd, "exchange") == 0)
        rc = cli_exchange(argc - 2, argv + 2);
    else if (strcmp(cmd, "run") == 0)
        rc = cli_run(argc - 2, argv + 2);
    else {
        usage();
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
