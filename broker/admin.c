/* Admin routes. Every route takes the same path: on the event loop, admin_submit copies what
 * the request carries (credential hash, path segment, query, preconditions, body) into a job;
 * on the worker thread admin_authorize decides who the caller is and whether it holds the
 * route's privilege, and only then is the request parsed and run against PostgreSQL; the loop
 * sends the answer. So an unauthenticated caller gets 401 before any parsing, and the request
 * (which h2o may free when the client resets) is never touched off the loop. POST /v1/introspect
 * and POST /v1/revoke (lifecycle.c) ride on the same jobs; a revocation's credential is optional. */
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
#include "admin_int.h"
#include "b64.h"
#include "bounds.h"
#include "jwks.h"
#include "jwt.h"
#include "lifecycle.h"
#include "log.h"
#include "names.h"
#include "state.h"
#include "store.h"
#include "verify.h"
#include "worker.h"

#define ADMIN_MAX_ARG 256        /* path segment ({name}, {request_id}) kept for validation */
#define ADMIN_MAX_HEADER 1024    /* If-Match / If-None-Match */
#define ADMIN_MAX_INFLIGHT 64     /* admin jobs queued or running, per process */

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

static const char *const op_names[] = {"list",        "get",          "put",        "delete", "audit_list",
                                       "audit_get",   "policy_test",  "policy_apply", "introspect", "revoke"};

static const char *broker_issuer; /* default audience of trust policies, for explanations */

void admin_init(const char *issuer)
{
    broker_issuer = issuer;
}

const char *admin_issuer(void)
{
    return broker_issuer;
}

void admin_job_fail(struct admin_job *j, int status, const char *error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->desc, sizeof(j->desc), fmt, ap);
    va_end(ap);
    j->status = status;
    j->error = error;
}

/* A store failure other than the expected outcomes. */
void admin_job_store_fail(struct admin_job *j, struct store *st, enum broker_err e)
{
    if (e == BROKER_ERR_NOMEM) {
        admin_job_fail(j, 500, "server_error", "out of memory");
        return;
    }
    log_msg(LOG_WARN, "admin_db_error", "op=%s reason=%s detail=\"%s\"", op_names[j->op], broker_strerror(e),
            store_last_error(st));
    admin_job_fail(j, 503, "temporarily_unavailable", "the database is unreachable");
}

void admin_job_json(struct admin_job *j, int status, json_t *o)
{
    j->resp = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (j->resp == NULL)
        admin_job_fail(j, 500, "server_error", "out of memory");
    else
        j->status = status;
}

/* ---- authorization: the one place ---- */

/* The privilege a route requires is the route table's priv column (broker/main.c); POST
 * /v1/revoke raises it to PRIV_ADMIN for a revocation by jti (admin_submit_revoke). */
static enum http_priv route_priv(const struct http_request *r)
{
    return r->route != NULL ? r->route->priv : PRIV_ADMIN; /* the route table's column */
}

/* Who the bearer is: j->who and j->privs (left empty when the credential does not authenticate).
 * False, with the answer (503) set, only when the database cannot say. */
static bool admin_authenticate(struct store *st, struct admin_job *j)
{
    char name[BROKER_MAX_NAME_LEN + 1];

    if (st == NULL || !store_connected(st)) {
        admin_job_fail(j, 503, "temporarily_unavailable", "the database is unreachable");
        return false;
    }
    switch (j->cred) {
    case CRED_ADMIN_TOKEN: {
        enum broker_err e = store_admin_token_check(st, j->hash, name, sizeof(name));
        if (e == BROKER_ERR_UNAUTHORIZED)
            break;
        if (e != BROKER_OK) {
            admin_job_store_fail(j, st, e);
            return false;
        }
        snprintf(j->who, sizeof(j->who), "admin-token:%s", name);
        j->privs = PRIV_BIT(PRIV_ADMIN) | PRIV_BIT(PRIV_INTROSPECT); /* an admin token holds every privilege */
        break;
    }
    case CRED_BROKER_TOKEN:
        /* verified on the loop (admin_credential, lifecycle_verify: signature, lifetime and the
         * revocation set): who and privs are already set */
        break;
    case CRED_NONE:
        break;
    }
    return true;
}

/* Who the bearer is and whether it holds j->priv. On false the answer (401, 403, 503) is set. */
static bool admin_authorize(struct store *st, struct admin_job *j)
{
    if (!admin_authenticate(st, j))
        return false;
    if (j->who[0] == '\0') {
        j->www_auth = j->no_bearer ? "Bearer" : "Bearer error=\"invalid_token\"";
        admin_job_fail(j, 401, "invalid_token", j->no_bearer ? "an admin bearer token is required"
                                                             : "the bearer token is not a valid admin token");
        return false;
    }
    if (j->priv != PRIV_NONE && (j->privs & PRIV_BIT(j->priv)) == 0) {
        j->www_auth = "Bearer error=\"insufficient_scope\"";
        admin_job_fail(j, 403, "insufficient_scope", "the bearer token lacks the privilege this route requires");
        return false;
    }
    return true;
}

/* ---- the job: worker side, then loop side ---- */

static void admin_run(struct store *st, struct worker_job *w)
{
    struct admin_job *j = (struct admin_job *)w;
    if (j->op == OP_REVOKE && j->exp != 0) {
        /* revocation of a token: the token itself is the proof (verified on the loop); a
         * credential, when one came along, only names who revoked it */
        if (j->cred != CRED_NONE && !admin_authenticate(st, j))
            return;
        lifecycle_run_revoke(st, j);
        return;
    }
    if (!admin_authorize(st, j))
        return;
    bool named = j->op == OP_DOC_GET || j->op == OP_DOC_PUT || j->op == OP_DOC_DELETE;
    if (named && (j->arg == NULL || !broker_name_ok(j->arg, strlen(j->arg)))) {
        admin_job_fail(j, 400, "invalid_request", "the name must be 1-%d characters of [A-Za-z0-9._-]",
                       BROKER_MAX_NAME_LEN);
        return;
    }
    switch (j->op) {
    case OP_DOC_LIST:
        admin_docs_run_list(st, j);
        break;
    case OP_DOC_GET:
        admin_docs_run_get(st, j);
        break;
    case OP_DOC_PUT:
        admin_docs_run_put(st, j);
        break;
    case OP_DOC_DELETE:
        admin_docs_run_delete(st, j);
        break;
    case OP_AUDIT_LIST:
        admin_audit_run_list(st, j);
        break;
    case OP_AUDIT_GET:
        admin_audit_run_get(st, j);
        break;
    case OP_POLICY_TEST:
        admin_policy_run_test(j);
        break;
    case OP_POLICY_APPLY:
        admin_policy_run_apply(st, j);
        break;
    case OP_INTROSPECT:
        lifecycle_run_introspect(j);
        break;
    case OP_REVOKE:
        lifecycle_run_revoke(st, j); /* by jti, as an admin */
        break;
    }
}

static void job_free(struct admin_job *j)
{
    atomic_fetch_sub(&inflight, 1);
    free(j->arg);
    free(j->query);
    if (j->body != NULL)
        OPENSSL_cleanse(j->body, j->body_len); /* may hold a token (introspection, policy test) */
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
    http_defer_release(j->defer, &j->r);
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

enum cred_check { CRED_BAD, CRED_OK, CRED_UNAVAILABLE };

/* A Broker-minted access token (e.g. a CI job's, exchanged from its own OIDC token): ours and live
 * and not revoked (lifecycle_verify: pure crypto and a lookup in memory, fine on the loop), with
 * Broker itself among its audiences. Scope "broker:admin" grants PRIV_ADMIN and PRIV_INTROSPECT,
 * "broker:introspect" PRIV_INTROSPECT; a valid token without either is known (403, not 401). */
static enum cred_check broker_credential(struct admin_job *j, const char *tok, size_t len)
{
    struct jwt t;
    enum broker_err e = lifecycle_verify((const uint8_t *)tok, len, (int64_t)time(NULL), &t);
    if (e == BROKER_ERR_NOT_READY)
        return CRED_UNAVAILABLE; /* revocations not loaded, or not synced lately: fail closed */
    if (e != BROKER_OK)
        return CRED_BAD;
    const char *sub = json_string_value(json_object_get(t.claims, "sub"));
    const char *scope = json_string_value(json_object_get(t.claims, "scope"));
    bool ok = broker_issuer != NULL && sub != NULL && strlen(sub) <= BROKER_MAX_NAME_LEN &&
              jwt_aud_contains(t.claims, broker_issuer); /* minted for Broker itself, not for another service */
    if (ok) {
        j->cred = CRED_BROKER_TOKEN;
        snprintf(j->who, sizeof(j->who), "broker-token:%s", sub);
        j->privs = 0;
        if (scope != NULL && scope_has(scope, "broker:admin"))
            j->privs = PRIV_BIT(PRIV_ADMIN) | PRIV_BIT(PRIV_INTROSPECT);
        else if (scope != NULL && scope_has(scope, "broker:introspect"))
            j->privs = PRIV_BIT(PRIV_INTROSPECT);
    }
    jwt_release(&t);
    return ok ? CRED_OK : CRED_BAD;
}

/* What kind of credential the bearer is, decided on the loop without I/O. */
static enum cred_check admin_credential(struct admin_job *j, const char *tok, size_t len)
{
    size_t plen = strlen(ADMIN_TOKEN_PREFIX);
    if (len == plen + B64URL_ENCODED_LEN(32) && memcmp(tok, ADMIN_TOKEN_PREFIX, plen) == 0) {
        for (size_t i = plen; i < len; i++) {
            char c = tok[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
                return CRED_BAD;
        }
        j->cred = CRED_ADMIN_TOKEN;
        admin_token_hash(tok, len, j->hash);
        return CRED_OK;
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
/* The job of a request, its credential checked as far as the loop can; NULL when the request was
 * answered here (401, 413, 503, 500). optional (POST /v1/revoke): a missing or failing credential
 * gives a CRED_NONE job instead of a 401. */
static struct admin_job *job_for(struct http_request *r, enum admin_op op, bool optional)
{
    h2o_req_t *req = r->req;
    const char *tok = NULL;
    size_t tlen = 0;
    bool have = bearer(req, &tok, &tlen);

    if (!have && !optional) {
        http_add_header(r, "www-authenticate", "Bearer");
        http_respond_error(r, 401, "invalid_token",
                           route_priv(r) == PRIV_INTROSPECT
                               ? "a bearer token is required: an admin token, or a Broker token with scope "
                                 "broker:introspect"
                               : "an admin bearer token is required");
        return NULL;
    }
    if (req->entity.len > BROKER_MAX_BODY) { /* a bound, so before authentication */
        http_respond_error(r, 413, "invalid_request", "request body too large");
        return NULL;
    }
    /* queued jobs hold copies of their bodies: bound them, so a flood of requests with
     * well-formed but wrong tokens cannot pile up memory behind the one worker */
    if (atomic_fetch_add(&inflight, 1) >= ADMIN_MAX_INFLIGHT) {
        atomic_fetch_sub(&inflight, 1);
        http_add_header(r, "retry-after", "1");
        http_respond_error(r, 503, "temporarily_unavailable", "too many admin requests in progress");
        return NULL;
    }
    struct admin_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        atomic_fetch_sub(&inflight, 1);
        http_respond_error(r, 500, "server_error", "out of memory");
        return NULL;
    }
    j->op = op;
    j->priv = route_priv(r);
    enum cred_check c = have ? admin_credential(j, tok, tlen) : CRED_BAD;
    if (c != CRED_OK && c != CRED_UNAVAILABLE && optional) {
        memset(j->who, 0, sizeof(j->who));
        j->privs = 0;
        j->cred = CRED_NONE;
        j->no_bearer = !have;
    } else if (c == CRED_UNAVAILABLE) { /* a credential that cannot be checked now is not "none" */
        job_free(j);
        http_add_header(r, "retry-after", "1");
        http_respond_error(r, 503, "temporarily_unavailable", "revoked tokens are not loaded or not current");
        return NULL;
    } else if (c != CRED_OK) {
        job_free(j);
        http_add_header(r, "www-authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(r, 401, "invalid_token", "the bearer token is not a valid admin token");
        return NULL;
    }
    return j;
}

static int job_submit(struct http_request *r, struct admin_job *j)
{
    j->defer = http_defer(r, &j->r);
    j->w.loop = r->loop;
    j->w.run = admin_run;
    j->w.msg.cb = admin_done;
    http_inflight_add(r->loop, 1);
    worker_submit(&j->w);
    return 0;
}

/* Loop side of every admin route: copy the request into a job and hand it to the worker.
 * prefix: the route prefix before the path argument ("/v1/identities/"), NULL for none. */
int admin_submit(struct http_request *r, enum admin_op op, const char *kind, const char *prefix)
{
    h2o_req_t *req = r->req;
    bool fail = false;
    struct admin_job *j = job_for(r, op, false);
    if (j == NULL)
        return 0;
    j->kind = kind;
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
    if (op == OP_DOC_PUT || op == OP_POLICY_TEST || op == OP_POLICY_APPLY || op == OP_INTROSPECT) {
        j->json_body = http_content_type_is(req, "application/json");
        j->form_body = http_content_type_is(req, "application/x-www-form-urlencoded");
        j->body_len = req->entity.len;
        if (j->body_len > 0)
            j->body = dupn(req->entity.base, req->entity.len, &fail);
    }
    if (fail) {
        job_free(j);
        http_respond_error(r, 500, "server_error", "out of memory");
        return 0;
    }
    return job_submit(r, j);
}

int admin_submit_revoke(struct http_request *r, const char *jti, size_t jti_len, int64_t exp)
{
    bool fail = false;
    struct admin_job *j = job_for(r, OP_REVOKE, true);
    if (j == NULL)
        return 0;
    j->exp = exp;
    if (exp == 0)
        j->priv = PRIV_ADMIN; /* by id: only an admin */
    j->arg = dupn(jti, jti_len, &fail);
    if (fail) {
        job_free(j);
        http_respond_error(r, 500, "server_error", "out of memory");
        return 0;
    }
    return job_submit(r, j);
}
