/* Admin routes. Every route takes the same path: on the event loop, admin_submit copies what
 * the request carries (credential hash, path segment, query, preconditions, body) into a job;
 * on the worker thread admin_authorize decides who the caller is and whether it holds the
 * route's privilege, and only then is the request parsed and run against PostgreSQL; the loop
 * sends the answer. So an unauthenticated caller gets 401 before any parsing, and the request
 * (which h2o may free when the client resets) is never touched off the loop. */
#include "admin.h"
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "apply.h"
#include "b64.h"
#include "bounds.h"
#include "explain.h"
#include "form.h"
#include "issuers.h"
#include "jwks.h"
#include "jwt.h"
#include "log.h"
#include "policy.h"
#include "state.h"
#include "store.h"
#include "verify.h"
#include "worker.h"

#define ADMIN_MAX_ARG 256        /* path segment ({name}, {request_id}) kept for validation */
#define ADMIN_MAX_QUERY 4096
#define ADMIN_MAX_HEADER 1024    /* If-Match / If-None-Match */
#define ADMIN_DEFAULT_LIMIT 100
#define ADMIN_MAX_INFLIGHT 64     /* admin jobs queued or running, per process */
#define PRIV_BIT(p) (1u << (unsigned)(p))

static atomic_int inflight;

void admin_token_hash(const char *token, size_t len, uint8_t hash[32])
{
    SHA256((const unsigned char *)token, len, hash);
}

enum broker_err admin_token_new(char *out, size_t cap, uint8_t hash[32])
{
    uint8_t raw[32];
    size_t plen = strlen(ADMIN_TOKEN_PREFIX);
    if (cap < plen + B64URL_ENCODED_LEN(sizeof(raw)) + 1)
        return BROKER_ERR_INTERNAL;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return BROKER_ERR_INTERNAL;
    memcpy(out, ADMIN_TOKEN_PREFIX, plen);
    size_t n = b64url_encode(raw, sizeof(raw), out + plen);
    out[plen + n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    admin_token_hash(out, plen + n, hash);
    return BROKER_OK;
}

enum admin_op {
    OP_DOC_LIST, OP_DOC_GET, OP_DOC_PUT, OP_DOC_DELETE, OP_AUDIT_LIST, OP_AUDIT_GET, OP_POLICY_TEST, OP_POLICY_APPLY
};
static const char *const op_names[] = {"list",      "get",       "put",         "delete",
                                       "audit_list", "audit_get", "policy_test", "policy_apply"};

static const char *broker_issuer; /* default audience of trust policies, for explanations */

void admin_init(const char *issuer)
{
    broker_issuer = issuer;
}

enum admin_cred {
    CRED_ADMIN_TOKEN,           /* brk_admin_...: looked up by hash on the worker */
    CRED_BROKER_TOKEN,          /* reserved: a broker-minted access token, verified on the loop */
};

struct admin_job {
    struct worker_job w;
    struct http_request *r;     /* NULL once h2o freed the request */
    struct http_defer *defer;
    enum admin_op op;
    enum http_priv priv;        /* what the route requires */
    const char *kind;           /* "identity" / "issuer" on document routes */
    enum admin_cred cred;
    uint8_t hash[32];
    unsigned privs;             /* PRIV_BIT set of the caller, filled by authentication */
    char *arg;                  /* path segment after the route prefix; NULL when none or too long */
    char *query;                /* without '?'; NULL when none */
    size_t query_len;
    char *body;
    size_t body_len;
    bool json_body;
    char *if_match, *if_none_match;
    bool bad_header;            /* a precondition header over ADMIN_MAX_HEADER */
    /* outcome, written on the worker */
    char who[BROKER_MAX_NAME_LEN + 16];
    int status;
    const char *error;          /* error code (static) when resp is NULL */
    char desc[1100];
    const char *www_auth;       /* static */
    char etag[STORE_ETAG_HEX + 3];
    char location[64 + BROKER_MAX_NAME_LEN];
    const char *change;         /* static */
    char *resp;                 /* JSON body, malloc'ed */
};

static void job_fail(struct admin_job *j, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void job_fail(struct admin_job *j, int status, const char *error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->desc, sizeof(j->desc), fmt, ap);
    va_end(ap);
    j->status = status;
    j->error = error;
}

/* A store failure other than the expected outcomes. */
static void job_store_fail(struct admin_job *j, struct store *st, enum broker_err e)
{
    if (e == BROKER_ERR_NOMEM) {
        job_fail(j, 500, "server_error", "out of memory");
        return;
    }
    log_msg(LOG_WARN, "admin_db_error", "op=%s reason=%s detail=\"%s\"", op_names[j->op], broker_strerror(e),
            store_last_error(st));
    job_fail(j, 503, "temporarily_unavailable", "the database is unreachable");
}

static void job_json(struct admin_job *j, int status, json_t *o)
{
    j->resp = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (j->resp == NULL)
        job_fail(j, 500, "server_error", "out of memory");
    else
        j->status = status;
}

/* ---- authorization: the one place ---- */

/* The privilege a route requires is the route table's priv column (broker/main.c). http.c does
 * not hand the matched route to handlers yet, and every admin route there requires PRIV_ADMIN;
 * once struct http_request carries the route this becomes `return r->route->priv;`. */
static enum http_priv route_priv(const struct http_request *r)
{
    return r->route != NULL ? r->route->priv : PRIV_ADMIN; /* the route table's column */
}

/* Who the bearer is and whether it holds j->priv. On false the answer (401, 403, 503) is set. */
static bool admin_authorize(struct store *st, struct admin_job *j)
{
    char name[BROKER_MAX_NAME_LEN + 1];

    if (st == NULL || !store_connected(st)) {
        job_fail(j, 503, "temporarily_unavailable", "the database is unreachable");
        return false;
    }
    switch (j->cred) {
    case CRED_ADMIN_TOKEN: {
        enum broker_err e = store_admin_token_check(st, j->hash, name, sizeof(name));
        if (e == BROKER_ERR_UNAUTHORIZED)
            break;
        if (e != BROKER_OK) {
            job_store_fail(j, st, e);
            return false;
        }
        snprintf(j->who, sizeof(j->who), "admin-token:%s", name);
        j->privs = PRIV_BIT(PRIV_ADMIN); /* an admin token holds every privilege */
        break;
    }
    case CRED_BROKER_TOKEN:
        /* verified on the loop (admin_credential): who and privs are already set; a revocation
         * check by jti would go here */
        break;
    }
    if (j->who[0] == '\0') {
        j->www_auth = "Bearer error=\"invalid_token\"";
        job_fail(j, 401, "invalid_token", "the bearer token is not a valid admin token");
        return false;
    }
    if (j->priv != PRIV_NONE && (j->privs & PRIV_BIT(j->priv)) == 0) {
        j->www_auth = "Bearer error=\"insufficient_scope\"";
        job_fail(j, 403, "insufficient_scope", "the bearer token lacks the privilege this route requires");
        return false;
    }
    return true;
}

/* ---- request pieces (parsed on the worker, after authorization) ---- */

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > BROKER_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

static bool request_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* "*" or a list of entity-tags (RFC 9110 §8.8.3), parsed in place. Strong tags go to tags[];
 * weak ones too when weak_ok (If-None-Match compares weakly), else they are dropped (If-Match
 * compares strongly: a weak tag never matches). false when malformed or too many. */
static bool etag_list_parse(char *s, bool weak_ok, bool *any, const char **tags, size_t *n)
{
    size_t seen = 0;
    char *p = s;
    *any = false;
    *n = 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (p[0] == '*') {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        *any = true;
        return *p == '\0';
    }
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        bool weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        if (*p != '"')
            return false;
        char *start = ++p;
        while (*p != '\0' && *p != '"') {
            if ((unsigned char)*p < 0x21 || *p == 0x7f)
                return false;
            p++;
        }
        if (*p != '"')
            return false;
        *p++ = '\0';
        seen++;
        if (!weak || weak_ok) {
            if (*n == STORE_PRECOND_MAX_TAGS)
                return false;
            tags[(*n)++] = start;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0' && *p != ',')
            return false;
    }
    return seen > 0;
}

static bool precond_parse(struct admin_job *j, struct store_precond *pre)
{
    memset(pre, 0, sizeof(*pre));
    if (j->bad_header) {
        job_fail(j, 400, "invalid_request", "If-Match / If-None-Match is too long");
        return false;
    }
    if (j->if_match != NULL) {
        pre->if_match = true;
        if (!etag_list_parse(j->if_match, false, &pre->match_any, pre->match, &pre->nmatch)) {
            job_fail(j, 400, "invalid_request", "If-Match must be * or a list of quoted ETags");
            return false;
        }
    }
    if (j->if_none_match != NULL) {
        pre->if_none_match = true;
        if (!etag_list_parse(j->if_none_match, true, &pre->none_any, pre->none, &pre->nnone)) {
            job_fail(j, 400, "invalid_request", "If-None-Match must be * or a list of quoted ETags");
            return false;
        }
    }
    return true;
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339 date-time: 2024-05-01T12:00:00Z, optional fraction, Z or ±hh:mm. */
static bool rfc3339_ok(const char *s, size_t n)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, oh, om;
    if (n < 20 || n > 40 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) || s[13] != ':' ||
        !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
        mi > 59 || sec > 60)
        return false;
    size_t i = 19;
    if (s[i] == '.') {
        size_t f = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f || i - f > 9)
            return false;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == n;
    return i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
           digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59;
}

/* Decimal in [lo, hi], digits only. */
static bool int_param(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v = 0;
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* ---- documents ---- */

static const char *kind_path(const char *kind)
{
    return strcmp(kind, "identity") == 0 ? "/v1/identities/" : "/v1/issuers/";
}

/* The serving set's copy of a document, NULL when it has none. */
static const json_t *served_doc(const struct policy_set *s, const char *kind, const char *name)
{
    if (strcmp(kind, "identity") == 0) {
        const struct identity *id = policy_set_identity_by_name(s, name);
        return id ? id->doc : NULL;
    }
    const struct issuer_cfg *c = policy_set_issuer_by_name(s, name);
    return c ? c->doc : NULL;
}

/* After a committed change: reload this replica now and wait (bounded) until it serves the
 * change, so the caller's next exchange here uses it; other replicas follow within a second.
 * text: the stored document, NULL after a delete. false when it is not served in time (e.g. the
 * reload refused the set: the broker log says why). */
static bool await_served(const char *kind, const char *name, const char *text)
{
    json_error_t jerr;
    json_t *want = text ? json_loads(text, 0, &jerr) : NULL;
    bool served = false;
    if (text != NULL && want == NULL)
        return false;
    state_kick();
    for (int waited = 0; !served && waited <= ADMIN_SERVE_WAIT_MS; waited += 5) {
        struct policy_set *s = state_policy_get();
        if (s != NULL) {
            const json_t *have = served_doc(s, kind, name);
            served = want ? have != NULL && json_equal(have, want) : have == NULL;
            policy_set_unref(s);
        }
        if (!served) {
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    json_decref(want);
    return served;
}

/* The check run on the whole resulting set inside the write transaction. */
static enum broker_err check_set(void *arg, const json_t *issuers, const json_t *identities, char *err, size_t errlen)
{
    (void)arg;
    struct policy_set *set = NULL;
    enum broker_err e = policy_set_build(issuers, identities, &set, err, errlen);
    if (set != NULL)
        policy_set_unref(set);
    return e;
}

/* Files named by an issuer document are read by every replica: through the API there is no
 * document directory to resolve a relative path against, and a path no replica can read would
 * make every reload refuse the whole set. */
static bool issuer_files_ok(struct admin_job *j, const json_t *doc)
{
    static const char *const keys[] = {"jwks_file", "ca_file", "bearer_token_file"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = json_string_value(json_object_get(doc, keys[i]));
        if (v == NULL)
            continue;
        if (v[0] != '/') {
            job_fail(j, 400, "invalid_request", "%s: must be an absolute path on the broker hosts", keys[i]);
            return false;
        }
        if (access(v, R_OK) != 0) {
            job_fail(j, 400, "invalid_request", "%s: not readable by the broker", keys[i]);
            return false;
        }
    }
    return true;
}

static void doc_list(struct store *st, struct admin_job *j)
{
    json_t *items = NULL;
    enum broker_err e = store_doc_list(st, j->kind, &items);
    if (e != BROKER_OK) {
        job_store_fail(j, st, e);
        return;
    }
    job_json(j, 200, json_pack("{s:o}", "items", items));
}

static void doc_get(struct store *st, struct admin_job *j)
{
    struct store_doc d;
    struct store_precond pre;
    if (!precond_parse(j, &pre))
        return;
    enum broker_err e = store_doc_get(st, j->kind, j->arg, &d);
    if (e == BROKER_ERR_NOT_FOUND) {
        job_fail(j, 404, "not_found", "no %s named %s", j->kind, j->arg);
        return;
    }
    if (e != BROKER_OK) {
        job_store_fail(j, st, e);
        return;
    }
    snprintf(j->etag, sizeof(j->etag), "\"%s\"", d.etag);
    bool listed = false;
    for (size_t i = 0; i < pre.nnone; i++)
        listed = listed || strcmp(pre.none[i], d.etag) == 0;
    if (pre.if_none_match && (pre.none_any || listed)) {
        j->status = 304;
    } else {
        j->resp = d.text; /* the stored text itself: the bytes the ETag names */
        d.text = NULL;
        j->status = 200;
    }
    store_doc_clear(&d);
}

static void doc_put(struct store *st, struct admin_job *j)
{
    struct store_precond pre;
    struct store_doc_result res;
    struct store_doc_check check = {check_set, NULL};
    json_t *doc = NULL;

    memset(&res, 0, sizeof(res));
    if (!j->json_body) {
        job_fail(j, 415, "invalid_request", "Content-Type must be application/json");
        goto out;
    }
    doc = j->body_len ? jwt_json_load_strict((const uint8_t *)j->body, j->body_len, BROKER_MAX_JSON_DEPTH) : NULL;
    if (!json_is_object(doc)) {
        job_fail(j, 400, "invalid_request",
                 "the body must be one JSON object (no duplicate keys, nesting at most %d)", BROKER_MAX_JSON_DEPTH);
        goto out;
    }
    const char *kind = policy_doc_kind(doc);
    if (kind == NULL || strcmp(kind, j->kind) != 0) {
        job_fail(j, 400, "invalid_request", "the body is not an %s document (it needs \"%s\" and not \"%s\")",
                 j->kind, j->kind, strcmp(j->kind, "identity") == 0 ? "issuer" : "identity");
        goto out;
    }
    const char *name = json_string_value(json_object_get(doc, j->kind));
    if (name == NULL || strcmp(name, j->arg) != 0) {
        job_fail(j, 400, "invalid_request", "the document's \"%s\" must equal the name in the path (%s)", j->kind,
                 j->arg);
        goto out;
    }
    if ((strcmp(j->kind, "issuer") == 0 && !issuer_files_ok(j, doc)) || !precond_parse(j, &pre))
        goto out;
    enum broker_err e = store_doc_put(st, j->who, j->kind, doc, &pre, &check, &res);
    switch (e) {
    case BROKER_OK:
        break;
    case BROKER_ERR_PRECONDITION_FAILED:
        job_fail(j, 412, "precondition_failed", "%s", res.err);
        goto out;
    case BROKER_ERR_INVALID_DOCUMENT:
        job_fail(j, 400, "invalid_request", "invalid document, nothing changed: %s", res.err);
        goto out;
    default:
        job_store_fail(j, st, e);
        goto out;
    }
    j->change = res.change;
    bool created = strcmp(res.change, "created") == 0;
    bool served = await_served(j->kind, j->arg, res.doc.text);
    if (!served)
        log_msg(LOG_WARN, "admin_change_not_served", "kind=%s name=%s", j->kind, j->arg);
    json_error_t jerr;
    json_t *stored = json_loads(res.doc.text, 0, &jerr);
    snprintf(j->etag, sizeof(j->etag), "\"%s\"", res.doc.etag);
    if (created)
        snprintf(j->location, sizeof(j->location), "%s%s", kind_path(j->kind), j->arg);
    job_json(j, created ? 201 : 200,
             stored ? json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "kind", j->kind, "name", j->arg, "change", res.change,
                                "etag", res.doc.etag, "served", served, "document", stored)
                    : NULL);
out:
    store_doc_clear(&res.doc);
    json_decref(doc);
}

static void doc_delete(struct store *st, struct admin_job *j)
{
    struct store_precond pre;
    struct store_doc_result res;
    struct store_doc_check check = {check_set, NULL};

    memset(&res, 0, sizeof(res));
    if (!precond_parse(j, &pre))
        return;
    enum broker_err e = store_doc_delete(st, j->who, j->kind, j->arg, &pre, &check, &res);
    switch (e) {
    case BROKER_OK:
        j->change = res.change;
        j->status = 204;
        if (!await_served(j->kind, j->arg, NULL))
            log_msg(LOG_WARN, "admin_change_not_served", "kind=%s name=%s", j->kind, j->arg);
        break;
    case BROKER_ERR_NOT_FOUND:
        job_fail(j, 404, "not_found", "no %s named %s", j->kind, j->arg);
        break;
    case BROKER_ERR_PRECONDITION_FAILED:
        job_fail(j, 412, "precondition_failed", "%s", res.err);
        break;
    case BROKER_ERR_CONFLICT:
        job_fail(j, 409, "conflict", "%s", res.err);
        break;
    default:
        job_store_fail(j, st, e);
    }
    store_doc_clear(&res.doc);
}

/* ---- audit ---- */

static void audit_list(struct store *st, struct admin_job *j)
{
    struct store_audit_filter f = {.limit = ADMIN_DEFAULT_LIMIT};
    struct form q;
    char *scratch = NULL;
    json_t *items = NULL;
    int64_t next = 0, v;

    q.n = 0;
    if (j->query_len > ADMIN_MAX_QUERY) {
        job_fail(j, 400, "invalid_request", "query string too long");
        goto out;
    }
    if (j->query != NULL) {
        if ((scratch = malloc(j->query_len + 1)) == NULL) {
            job_fail(j, 500, "server_error", "out of memory");
            goto out;
        }
        if (form_parse((const uint8_t *)j->query, j->query_len, &q, scratch, j->query_len + 1) != BROKER_OK) {
            job_fail(j, 400, "invalid_request", "malformed or repeated query parameter");
            goto out;
        }
    }
    for (size_t i = 0; i < q.n; i++) {
        const char *n = q.f[i].name, *val = q.f[i].value;
        size_t len = q.f[i].len;
        if (strcmp(n, "identity") == 0 && len > 0 && len <= BROKER_MAX_NAME_LEN) {
            f.identity = val;
        } else if (strcmp(n, "result") == 0 && (strcmp(val, "issued") == 0 || strcmp(val, "denied") == 0)) {
            f.result = val;
        } else if (strcmp(n, "since") == 0 && rfc3339_ok(val, len)) {
            f.since = val;
        } else if (strcmp(n, "request_id") == 0 && request_id_ok(val, len)) {
            f.request_id = val;
        } else if (strcmp(n, "limit") == 0 && int_param(val, len, 1, STORE_AUDIT_LIST_MAX, &v)) {
            f.limit = (int)v;
        } else if (strcmp(n, "cursor") == 0 && int_param(val, len, 1, INT64_MAX, &v)) {
            f.before_id = v;
        } else {
            bool known = strcmp(n, "identity") == 0 || strcmp(n, "result") == 0 || strcmp(n, "since") == 0 ||
                         strcmp(n, "request_id") == 0 || strcmp(n, "limit") == 0 || strcmp(n, "cursor") == 0;
            if (known)
                job_fail(j, 400, "invalid_request",
                         "bad %s (identity: a name; result: issued or denied; since: RFC 3339 time; request_id: "
                         "[A-Za-z0-9_-]{1,64}; limit: 1..%d; cursor: a next_cursor value)",
                         n, STORE_AUDIT_LIST_MAX);
            else
                job_fail(j, 400, "invalid_request",
                         "unknown query parameter (use identity, result, since, request_id, limit, cursor)");
            goto out;
        }
    }
    enum broker_err e = store_audit_list(st, &f, &items, &next);
    if (e != BROKER_OK) {
        job_store_fail(j, st, e);
        goto out;
    }
    char cur[24];
    snprintf(cur, sizeof(cur), "%lld", (long long)next);
    job_json(j, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next > 0 ? json_string(cur) : json_null()));
out:
    free(scratch);
}

static void audit_get(struct store *st, struct admin_job *j)
{
    json_t *rec = NULL;
    if (j->arg == NULL || !request_id_ok(j->arg, strlen(j->arg))) {
        job_fail(j, 400, "invalid_request", "request_id must be 1-64 characters of [A-Za-z0-9_-]");
        return;
    }
    enum broker_err e = store_audit_get(st, j->arg, &rec);
    if (e == BROKER_ERR_NOT_FOUND)
        job_fail(j, 404, "not_found", "no audit record has that request_id");
    else if (e != BROKER_OK)
        job_store_fail(j, st, e);
    else
        job_json(j, 200, rec);
}

struct test_keys {
    struct issuer_keys *k;
};

static const struct jwks *on_test_keys(void *ctx, const struct issuer_cfg *issuer)
{
    struct test_keys *x = ctx;
    if (x->k == NULL)
        x->k = issuers_keys_get(issuer->url); /* the keys this replica serves with; never a fetch */
    return x->k != NULL ? issuer_keys_jwks(x->k) : NULL;
}

/* POST /v1/policy/test: the decision and its explanation for a token (or issuer + claims),
 * against the policy set this replica serves. */
static void policy_test(struct admin_job *j)
{
    if (!j->json_body) {
        job_fail(j, 415, "invalid_request", "Content-Type must be application/json");
        return;
    }
    json_t *body = j->body ? jwt_json_load_strict((const uint8_t *)j->body, j->body_len, BROKER_MAX_JSON_DEPTH) : NULL;
    struct policy_set *set = state_policy_get();
    struct test_keys keys = {0};
    char err[512] = "";
    int status = 500;
    json_t *res = NULL;
    if (!json_is_object(body))
        job_fail(j, 400, "invalid_request", "the body must be a JSON object: {\"token\"} or {\"issuer\", \"claims\"}");
    else if (set == NULL)
        job_fail(j, 503, "temporarily_unavailable", "trust policies are not loaded yet");
    else if ((res = explain_api(set, body, (int64_t)time(NULL), broker_issuer, on_test_keys, &keys, &status, err,
                                sizeof(err))) == NULL)
        job_fail(j, status, status == 400 ? "invalid_request" : "server_error", "%s", err[0] ? err : "internal error");
    else
        job_json(j, 200, res);
    if (keys.k != NULL)
        issuer_keys_unref(keys.k);
    if (set != NULL)
        policy_set_unref(set);
    json_decref(body);
}

/* POST /v1/policy/apply: {"issuers":[...], "identities":[...], "prune", "dry_run"} — the GitOps
 * batch of `broker policy apply --server`, validated whole and written in one transaction. */
static void policy_apply(struct store *st, struct admin_job *j)
{
    json_t *body = j->body ? jwt_json_load_strict((const uint8_t *)j->body, j->body_len, BROKER_MAX_JSON_DEPTH) : NULL;
    json_t *iss = json_object_get(body, "issuers"), *ids = json_object_get(body, "identities");
    json_t *prune = json_object_get(body, "prune"), *dry = json_object_get(body, "dry_run");
    json_t *changes = json_array();
    char err[1024];
    if (!j->json_body)
        job_fail(j, 415, "invalid_request", "Content-Type must be application/json");
    else if (!json_is_object(body) || (iss && !json_is_array(iss)) || (ids && !json_is_array(ids)) ||
             (prune && !json_is_boolean(prune)) || (dry && !json_is_boolean(dry)) || json_object_size(body) > 4)
        job_fail(j, 400, "invalid_request",
                 "the body must be {\"issuers\": [...], \"identities\": [...], \"prune\": bool, \"dry_run\": bool}");
    else if (changes == NULL)
        job_fail(j, 500, "server_error", "out of memory");
    else {
        enum broker_err e = apply_documents(st, j->who, iss, ids, json_is_true(prune), json_is_true(dry), changes, err,
                                            sizeof(err));
        if (e == BROKER_ERR_INVALID_DOCUMENT)
            job_fail(j, 400, "invalid_request", "refused, nothing changed: %s", err);
        else if (e != BROKER_OK)
            job_store_fail(j, st, e);
        else {
            if (!json_is_true(dry))
                state_kick(); /* this replica reloads now; the others within 250 ms */
            job_json(j, 200, json_pack("{s:O, s:b}", "changes", changes, "dry_run", json_is_true(dry)));
        }
    }
    json_decref(changes);
    json_decref(body);
}

/* ---- the job: worker side, then loop side ---- */

static void admin_run(struct store *st, struct worker_job *w)
{
    struct admin_job *j = (struct admin_job *)w;
    if (!admin_authorize(st, j))
        return;
    bool named = j->op == OP_DOC_GET || j->op == OP_DOC_PUT || j->op == OP_DOC_DELETE;
    if (named && !name_ok(j->arg)) {
        job_fail(j, 400, "invalid_request", "the name must be 1-%d characters of [A-Za-z0-9._-]",
                 BROKER_MAX_NAME_LEN);
        return;
    }
    switch (j->op) {
    case OP_DOC_LIST:
        doc_list(st, j);
        break;
    case OP_DOC_GET:
        doc_get(st, j);
        break;
    case OP_DOC_PUT:
        doc_put(st, j);
        break;
    case OP_DOC_DELETE:
        doc_delete(st, j);
        break;
    case OP_AUDIT_LIST:
        audit_list(st, j);
        break;
    case OP_AUDIT_GET:
        audit_get(st, j);
        break;
    case OP_POLICY_TEST:
        policy_test(j);
        break;
    case OP_POLICY_APPLY:
        policy_apply(st, j);
        break;
    }
}

static void job_free(struct admin_job *j)
{
    atomic_fetch_sub(&inflight, 1);
    free(j->arg);
    free(j->query);
    free(j->body);
    free(j->if_match);
    free(j->if_none_match);
    free(j->resp);
    OPENSSL_cleanse(j->hash, sizeof(j->hash));
    free(j);
}

/* An error body with a description that may quote the caller's input: JSON-escaped here, and
 * cut back to whole UTF-8 characters (a description is truncated by byte count). */
static void respond_error(struct http_request *r, int status, const char *error, char *desc)
{
    size_t n = strlen(desc), k = n;
    while (k > 0 && ((unsigned char)desc[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > 0 && (unsigned char)desc[k - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)desc[k - 1];
        size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (n - (k - 1) < want)
            desc[k - 1] = '\0';
    }
    json_t *o = json_pack("{s:s, s:s, s:s}", "error", error, "error_description", desc, "request_id", r->request_id);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s != NULL)
        http_respond_json(r, status, s, strlen(s));
    else
        http_respond_error(r, status, error, "see the broker log");
    free(s);
    json_decref(o);
}

static void admin_done(struct loop_msg *m)
{
    struct admin_job *j = (struct admin_job *)m;
    struct http_request *r = j->r;
    http_inflight_add(j->w.loop, -1);
    if (r != NULL) {
        if (j->www_auth != NULL)
            http_add_header(r, "www-authenticate", j->www_auth);
        if (j->etag[0] != '\0')
            http_add_header(r, "etag", j->etag);
        if (j->location[0] != '\0')
            http_add_header(r, "location", j->location);
        if (j->status == 204 || j->status == 304)
            http_respond(r, j->status, "application/json", "", 0);
        else if (j->resp != NULL)
            http_respond_json(r, j->status, j->resp, strlen(j->resp));
        else
            respond_error(r, j->status ? j->status : 500, j->error ? j->error : "server_error", j->desc);
    }
    if (j->change != NULL && strcmp(j->change, "unchanged") != 0)
        log_msg(LOG_INFO, "admin_change", "who=%s what=%s/%s change=%s", j->who, j->kind, j->arg, j->change);
    else if (j->who[0] != '\0')
        log_msg(LOG_INFO, "admin_request", "who=%s op=%s status=%d", j->who, op_names[j->op], j->status);
    http_defer_release(j->defer);
    job_free(j);
}

/* Bearer credentials from the Authorization header; false when absent or malformed. */
static bool bearer(const h2o_req_t *req, const char **tok, size_t *len)
{
    size_t hl;
    const char *h = http_header(req, "authorization", &hl);
    if (h == NULL || hl < 8 || !h2o_lcstris(h, 7, "bearer ", 7))
        return false;
    h += 7;
    hl -= 7;
    while (hl > 0 && *h == ' ') {
        h++;
        hl--;
    }
    if (hl == 0 || hl > BROKER_MAX_TOKEN_LEN)
        return false;
    *tok = h;
    *len = hl;
    return true;
}

/* What kind of credential the bearer is, decided on the loop without I/O; false: none we accept. */
/* true when the space-delimited scope list holds want exactly */
static bool scope_has(const char *scope, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = scope; p != NULL && *p;) {
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, want, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* A Broker-minted access token (e.g. a CI job's, exchanged from its own OIDC token): ES256 by one
 * of our published keys, our iss, Broker itself among its audiences, typ at+jwt, inside its lifetime. Pure crypto: fine on the loop.
 * Scope "broker:admin" grants PRIV_ADMIN; a valid token without it is known (403, not 401). */
static bool broker_credential(struct admin_job *j, const char *tok, size_t len)
{
    struct jwt t;
    bool ok = false;
    if (broker_issuer == NULL || jwt_parse((const uint8_t *)tok, len, &t) != BROKER_OK)
        return false;
    struct keyring_ref *kr = state_keys_get();
    const struct keyring *ring = kr ? state_keys_ring(kr) : NULL;
    const char *typ = json_string_value(json_object_get(t.header, "typ"));
    const char *sub = json_string_value(json_object_get(t.claims, "sub"));
    const char *scope = json_string_value(json_object_get(t.claims, "scope"));
    if (ring == NULL || t.alg != JWT_ALG_ES256 || t.kid == NULL || typ == NULL || strcmp(typ, "at+jwt") != 0 ||
        t.iss == NULL || strcmp(t.iss, broker_issuer) != 0 || sub == NULL || strlen(sub) > BROKER_MAX_NAME_LEN ||
        !jwt_aud_contains(t.claims, broker_issuer)) /* minted for Broker itself, not for another service */
        goto out;
    for (size_t i = 0; i < ring->n && !ok; i++) {
        if (strcmp(ring->keys[i].kid, t.kid) != 0)
            continue;
        struct jwk k = {.type = JWK_EC_P256, .alg = JWT_ALG_ES256, .pkey = ring->keys[i].pkey};
        ok = verify_signature(&k, JWT_ALG_ES256, t.signing_input, t.signing_input_len, t.sig, t.sig_len) ==
                 BROKER_OK &&
             verify_times(t.claims, (int64_t)time(NULL), 0) == BROKER_OK;
    }
    if (ok) {
        j->cred = CRED_BROKER_TOKEN;
        snprintf(j->who, sizeof(j->who), "broker-token:%s", sub);
        j->privs = scope != NULL && scope_has(scope, "broker:admin") ? PRIV_BIT(PRIV_ADMIN) : 0;
    }
out:
    state_keys_put(kr);
    jwt_release(&t);
    return ok;
}

static bool admin_credential(struct admin_job *j, const char *tok, size_t len)
{
    size_t plen = strlen(ADMIN_TOKEN_PREFIX);
    if (len == plen + B64URL_ENCODED_LEN(32) && memcmp(tok, ADMIN_TOKEN_PREFIX, plen) == 0) {
        for (size_t i = plen; i < len; i++) {
            char c = tok[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
                return false;
        }
        j->cred = CRED_ADMIN_TOKEN;
        admin_token_hash(tok, len, j->hash);
        return true;
    }
    return broker_credential(j, tok, len);
}

static char *dupn(const char *s, size_t n, bool *fail)
{
    char *d = malloc(n + 1);
    if (d == NULL) {
        *fail = true;
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *header_copy(const h2o_req_t *req, const char *name, bool *too_long, bool *fail)
{
    size_t len;
    const char *v = http_header(req, name, &len);
    if (v == NULL)
        return NULL;
    if (len > ADMIN_MAX_HEADER) {
        *too_long = true;
        return NULL;
    }
    return dupn(v, len, fail);
}

/* Loop side of every admin route: copy the request into a job and hand it to the worker.
 * prefix: the route prefix before the path argument ("/v1/identities/"), NULL for none. */
static int admin_submit(struct http_request *r, enum admin_op op, const char *kind, const char *prefix)
{
    h2o_req_t *req = r->req;
    const char *tok;
    size_t tlen;
    bool fail = false;

    if (!bearer(req, &tok, &tlen)) {
        http_add_header(r, "www-authenticate", "Bearer");
        http_respond_error(r, 401, "invalid_token", "an admin bearer token is required");
        return 0;
    }
    if (req->entity.len > BROKER_MAX_BODY) { /* a bound, so before authentication */
        http_respond_error(r, 413, "invalid_request", "request body too large");
        return 0;
    }
    /* queued jobs hold copies of their bodies: bound them, so a flood of requests with
     * well-formed but wrong tokens cannot pile up memory behind the one worker */
    if (atomic_fetch_add(&inflight, 1) >= ADMIN_MAX_INFLIGHT) {
        atomic_fetch_sub(&inflight, 1);
        http_add_header(r, "retry-after", "1");
        http_respond_error(r, 503, "temporarily_unavailable", "too many admin requests in progress");
        return 0;
    }
    struct admin_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        atomic_fetch_sub(&inflight, 1);
        http_respond_error(r, 500, "server_error", "out of memory");
        return 0;
    }
    j->op = op;
    j->kind = kind;
    j->priv = route_priv(r);
    if (!admin_credential(j, tok, tlen)) {
        job_free(j);
        http_add_header(r, "www-authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(r, 401, "invalid_token", "the bearer token is not a valid admin token");
        return 0;
    }
    if (prefix != NULL) {
        h2o_iovec_t path = req->path_normalized;
        size_t n = strlen(prefix), end = n;
        while (end < path.len && path.base[end] != '?')
            end++;
        if (path.len >= n && end - n <= ADMIN_MAX_ARG)
            j->arg = dupn(path.base + n, end - n, &fail);
    }
    if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
        j->query_len = req->path.len - req->query_at - 1;
        if (j->query_len <= ADMIN_MAX_QUERY)
            j->query = dupn(req->path.base + req->query_at + 1, j->query_len, &fail);
    }
    j->if_match = header_copy(req, "if-match", &j->bad_header, &fail);
    j->if_none_match = header_copy(req, "if-none-match", &j->bad_header, &fail);
    if (op == OP_DOC_PUT || op == OP_POLICY_TEST || op == OP_POLICY_APPLY) {
        j->json_body = http_content_type_is(req, "application/json");
        j->body_len = req->entity.len;
        if (j->body_len > 0)
            j->body = dupn(req->entity.base, req->entity.len, &fail);
    }
    if (fail) {
        job_free(j);
        http_respond_error(r, 500, "server_error", "out of memory");
        return 0;
    }
    j->defer = http_defer(r, &j->r);
    j->w.loop = r->loop;
    j->w.run = admin_run;
    j->w.msg.cb = admin_done;
    http_inflight_add(r->loop, 1);
    worker_submit(&j->w);
    return 0;
}

/* Document routes serve /v1/identities[/...] and /v1/issuers[/...]. */
static const char *path_kind(const struct http_request *r, const char **prefix)
{
    h2o_iovec_t p = r->req->path_normalized;
    bool ids = p.len >= 14 && memcmp(p.base, "/v1/identities", 14) == 0;
    *prefix = ids ? "/v1/identities/" : "/v1/issuers/";
    return ids ? "identity" : "issuer";
}

int admin_docs_list(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_LIST, kind, NULL);
}

int admin_doc_get(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_GET, kind, prefix);
}

int admin_doc_put(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_PUT, kind, prefix);
}

int admin_doc_delete(struct http_request *r)
{
    const char *prefix;
    const char *kind = path_kind(r, &prefix);
    return admin_submit(r, OP_DOC_DELETE, kind, prefix);
}

int admin_doc_method(struct http_request *r)
{
    http_add_header(r, "allow", "GET, PUT, DELETE");
    http_respond_error(r, 405, "invalid_request", "method not allowed");
    return 0;
}

int admin_audit_list(struct http_request *r)
{
    return admin_submit(r, OP_AUDIT_LIST, NULL, NULL);
}

int admin_policy_apply(struct http_request *r)
{
    return admin_submit(r, OP_POLICY_APPLY, NULL, NULL);
}

int admin_policy_test(struct http_request *r)
{
    return admin_submit(r, OP_POLICY_TEST, NULL, NULL);
}

int admin_audit_get(struct http_request *r)
{
    return admin_submit(r, OP_AUDIT_GET, NULL, "/v1/audit/");
}
