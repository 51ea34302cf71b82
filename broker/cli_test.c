/* `broker policy test`. Documents come from PATHs (a small loader of its own: the same rules as
 * `policy apply`) or the database; keys from the issuer documents (inline, file, or one synchronous
 * fetch as the server would make it). The decision and its explanation are explain.c's. */
#include "cli_test.h"
#include "docload.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/crypto.h>
#include "bearer.h"
#include "bounds.h"
#include "config.h"
#include "explain.h"
#include "issuers_fetch.h"
#include "jwks.h"
#include "jwt.h"
#include "policy.h"
#include "store.h"
#include "verify.h"

#define CLI_TEST_USAGE                                                                                        \
    "usage: broker policy test --token FILE [--identity NAME] [--at TIME] [--json] [--issuer-url URL]\n"      \
    "                          [--scope S] [--audience A] [--source ADDR] [--database-url URL] [PATH...]\n" \
    "  FILE '-' reads the token from stdin; TIME is RFC 3339 (2025-03-29T11:05:00Z) or Unix seconds;\n"      \
    "  without PATH the documents come from BROKER_DATABASE_URL. Exit 0 issued, 1 denied, 2 error.\n"

/* Whole small file (at most max bytes); NULL with errno-style text in err. */
static uint8_t *read_file(FILE *in, const char *path, size_t max, size_t *len, FILE *err)
{
    FILE *f = in != NULL ? in : fopen(path, "rbe");
    uint8_t *buf = NULL;
    size_t n = 0;
    if (f == NULL) {
        fprintf(err, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    buf = malloc(max + 1);
    if (buf == NULL) {
        fprintf(err, "%s: out of memory\n", path);
        goto out;
    }
    n = fread(buf, 1, max + 1, f);
    if (ferror(f) || n > max) {
        fprintf(err, "%s: %s\n", path, ferror(f) ? "read error" : "too large");
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = '\0';
    *len = n;
out:
    if (in == NULL)
        fclose(f);
    return buf;
}

/* Documents of one PATH argument (the loader shared with apply and lint). */
static int load_path(const char *path, json_t *issuers, json_t *identities, FILE *err)
{
    struct docset d;
    if (docset_init(&d) != 0)
        return -1;
    int rc = docset_load_path(&d, path, false, err);
    if (rc == 0 && (json_array_extend(issuers, d.issuers) != 0 || json_array_extend(identities, d.identities) != 0))
        rc = -1;
    docset_clear(&d);
    return rc;
}

/* ---- keys ---- */

struct keys_ctx {
    struct jwks *jwks;
    FILE *err;
};

static const struct jwks *on_keys(void *arg, const struct issuer_cfg *c)
{
    struct keys_ctx *k = arg;
    enum broker_err e;
    if (c->jwks_inline != NULL) {
        if ((e = jwks_parse((const uint8_t *)c->jwks_inline, strlen(c->jwks_inline), 0, &k->jwks)) != BROKER_OK)
            fprintf(k->err, "issuer %s: jwks: %s\n", c->name, broker_strerror(e));
    } else if (c->jwks_file != NULL) {
        size_t len = 0;
        uint8_t *doc = read_file(NULL, c->jwks_file, BROKER_MAX_JWKS_BYTES, &len, k->err);
        if (doc == NULL)
            return NULL;
        /* as issuers.c: a PEM public key or certificate, else a JWKS */
        e = memmem(doc, len, "-----BEGIN ", 11) != NULL ? jwks_from_pem(doc, len, &k->jwks)
                                                        : jwks_parse(doc, len, 0, &k->jwks);
        if (e != BROKER_OK)
            fprintf(k->err, "issuer %s: jwks_file %s: %s\n", c->name, c->jwks_file, broker_strerror(e));
        free(doc);
    } else {
        struct issuers_fetch_out out = {0};
        const struct issuers_fetch_src src = {c->url, c->jwks_uri, c->ca_file, c->bearer_token_file};
        enum issuers_fetch_result r = issuers_fetch_from(&src, NULL, &out);
        if (r == ISSUERS_FETCH_OK)
            k->jwks = out.jwks;
        else if (r == ISSUERS_FETCH_CREDENTIALS && !bearer_path_allowed(c->bearer_token_file))
            fprintf(k->err, "issuer %s: bearer_token_file %s: not allowed by BROKER_BEARER_TOKEN_FILES\n", c->name,
                    c->bearer_token_file);
        else
            fprintf(k->err, "issuer %s: key fetch failed at %s: %s (HTTP status %ld)\n", c->name,
                    out.stage ? out.stage : "setup", issuers_fetch_result_name(r), out.status);
    }
    return k->jwks;
}

/* ---- the command ---- */

struct opts {
    const char *token_file, *identity, *at, *issuer_url, *scope, *audience, *source, *dburl;
    bool json;
    int npaths;
};

static int parse_opts(int argc, char **argv, struct opts *o, json_t *issuers, json_t *identities, FILE *err)
{
    static const struct { const char *flag; size_t off; } valued[] = {
        {"--token", offsetof(struct opts, token_file)},     {"--identity", offsetof(struct opts, identity)},
        {"--at", offsetof(struct opts, at)},                {"--issuer-url", offsetof(struct opts, issuer_url)},
        {"--scope", offsetof(struct opts, scope)},          {"--audience", offsetof(struct opts, audience)},
        {"--source", offsetof(struct opts, source)},        {"--database-url", offsetof(struct opts, dburl)},
    };
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        size_t k = 0;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(CLI_TEST_USAGE, err);
            return -1;
        }
        while (k < sizeof(valued) / sizeof(valued[0]) && strcmp(a, valued[k].flag) != 0)
            k++;
        if (k < sizeof(valued) / sizeof(valued[0])) {
            if (i + 1 >= argc) {
                fprintf(err, "policy test: %s needs a value\n%s", a, CLI_TEST_USAGE);
                return -1;
            }
            *(const char **)(void *)((char *)o + valued[k].off) = argv[++i];
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            fprintf(err, "policy test: unknown flag %s\n%s", a, CLI_TEST_USAGE);
            return -1;
        }
        o->npaths++;
        if (load_path(a, issuers, identities, err) != 0)
            return -1;
    }
    if (o->token_file == NULL) {
        fprintf(err, "policy test: --token is required\n%s", CLI_TEST_USAGE);
        return -1;
    }
    return 0;
}

static int load_db(const char *dburl, json_t **issuers, json_t **identities, FILE *err)
{
    struct store *st = NULL;
    int rc = -1;
    if (dburl == NULL || *dburl == '\0') {
        fprintf(err, "policy test: give PATHs of documents, or set BROKER_DATABASE_URL\n");
        return -1;
    }
    json_decref(*issuers);
    json_decref(*identities);
    *issuers = *identities = NULL;
    if (store_open(dburl, &st) != BROKER_OK || store_load_documents(st, issuers, identities) != BROKER_OK)
        fprintf(err, "policy test: database: %s\n", st ? store_last_error(st) : "out of memory");
    else
        rc = 0;
    store_close(st);
    return rc;
}

/* The broker's own issuer URL, the default audience of trust policies: as `broker serve` derives it. */
static int broker_issuer(const char *flag, char *out, size_t cap, FILE *err)
{
    if (flag != NULL) {
        size_t n = strlen(flag);
        while (n > 1 && flag[n - 1] == '/')
            n--;
        if (n == 0 || n >= cap) {
            fprintf(err, "policy test: --issuer-url is empty or too long\n");
            return -1;
        }
        memcpy(out, flag, n);
        out[n] = '\0';
        return 0;
    }
    struct config cfg;
    char msg[256];
    if (config_from_env(&cfg, msg, sizeof(msg)) != BROKER_OK) {
        fprintf(err, "policy test: %s (or pass --issuer-url)\n", msg);
        return -1;
    }
    snprintf(out, cap, "%s", cfg.issuer);
    return 0;
}

static int parse_source(const char *s, struct sockaddr_storage *ss, FILE *err)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, s, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return 0;
    }
    fprintf(err, "policy test: --source %s is not an IPv4 or IPv6 address\n", s);
    return -1;
}

int cli_policy_test_io(int argc, char **argv, FILE *out, FILE *err)
{
    struct opts o = {.dburl = getenv("BROKER_DATABASE_URL")};
    json_t *issuers = json_array(), *identities = json_array(), *result = NULL;
    struct policy_set *set = NULL;
    struct keys_ctx keys = {.err = err};
    struct sockaddr_storage peer;
    uint8_t *token = NULL;
    size_t token_len = 0, token_read = 0;
    char issuer[512], msg[1024];
    int rc = 2;

    if (issuers == NULL || identities == NULL || parse_opts(argc, argv, &o, issuers, identities, err) != 0)
        goto out;
    struct explain_request rq = {.identity = o.identity, .scope = o.scope, .audience = o.audience,
                                 .keys = on_keys, .keys_ctx = &keys};
    rq.at = (int64_t)time(NULL);
    if (o.at != NULL && explain_parse_time(o.at, strlen(o.at), &rq.at) != BROKER_OK) {
        fprintf(err, "policy test: --at %s: expected RFC 3339 (2025-03-29T11:05:00Z) or Unix seconds\n", o.at);
        goto out;
    }
    if (o.source != NULL) {
        if (parse_source(o.source, &peer, err) != 0)
            goto out;
        rq.peer = (const struct sockaddr *)&peer;
    }
    if (broker_issuer(o.issuer_url, issuer, sizeof(issuer), err) != 0)
        goto out;
    rq.broker_issuer = issuer;
    /* the same rule as serve: a document read here names files too, and their contents are sent */
    if (bearer_allowlist_set(getenv("BROKER_BEARER_TOKEN_FILES"), msg, sizeof(msg)) != BROKER_OK) {
        fprintf(err, "policy test: %s\n", msg);
        goto out;
    }
    /* a token file may end in a newline; anything larger than a token plus slack is not one */
    token = read_file(strcmp(o.token_file, "-") == 0 ? stdin : NULL, o.token_file, BROKER_MAX_TOKEN_LEN + 4096,
                      &token_len, err);
    if (token == NULL)
        goto out;
    token_read = token_len;
    size_t start = 0;
    while (start < token_len && (token[start] == ' ' || token[start] == '\t' || token[start] == '\r' ||
                                 token[start] == '\n'))
        start++;
    while (token_len > start && (token[token_len - 1] == ' ' || token[token_len - 1] == '\t' ||
                                 token[token_len - 1] == '\r' || token[token_len - 1] == '\n'))
        token_len--;
    rq.token = (const char *)token + start;
    rq.token_len = token_len - start;

    if (o.npaths == 0 && load_db(o.dburl, &issuers, &identities, err) != 0)
        goto out;
    if (policy_set_build(issuers, identities, &set, msg, sizeof(msg)) != BROKER_OK) {
        fprintf(err, "policy test: documents refused: %s\n", msg);
        goto out;
    }
    result = explain_run(set, &rq);
    if (result == NULL) {
        fprintf(err, "policy test: out of memory\n");
        goto out;
    }
    char *text = o.json ? json_dumps(result, JSON_INDENT(2)) : explain_render_text(result);
    if (text == NULL) {
        fprintf(err, "policy test: out of memory\n");
        goto out;
    }
    fputs(text, out);
    if (o.json)
        fputc('\n', out);
    free(text);
    const char *reason = json_string_value(json_object_get(result, "reason"));
    rc = strcmp(reason, "ok") == 0 ? 0 : strcmp(reason, "bad_request") == 0 ? 2 : 1;
out:
    if (token != NULL) {
        OPENSSL_cleanse(token, token_read); /* a live token is a credential */
        free(token);
    }
    json_decref(result);
    json_decref(issuers);
    json_decref(identities);
    if (set != NULL)
        policy_set_unref(set);
    jwks_free(keys.jwks);
    verify_thread_cleanup();
    return rc;
}

int cli_policy_test(int argc, char **argv)
{
    return cli_policy_test_io(argc, argv, stdout, stderr);
}
