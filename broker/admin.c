#include "admin.h"
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "b64.h"
#include "bounds.h"
#include "log.h"
#include "worker.h"

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

struct audit_get_job {
    struct worker_job w;
    struct http_request *r;
    struct http_defer *defer;
    uint8_t hash[32];
    char request_id[65];
    int status;
    char *body;               /* JSON, malloc'ed */
    char who[BROKER_MAX_NAME_LEN + 1];
};

static void audit_get_run(struct store *st, struct worker_job *w)
{
    struct audit_get_job *j = (struct audit_get_job *)w;
    if (st == NULL || !store_connected(st)) {
        j->status = 503;
        return;
    }
    enum broker_err e = store_admin_token_check(st, j->hash, j->who, sizeof(j->who));
    if (e != BROKER_OK) {
        j->status = e == BROKER_ERR_UNAUTHORIZED ? 401 : 503;
        return;
    }
    json_t *rec = NULL;
    e = store_audit_get(st, j->request_id, &rec);
    if (e == BROKER_ERR_NOT_FOUND) {
        j->status = 404;
        return;
    }
    if (e != BROKER_OK) {
        j->status = 503;
        return;
    }
    j->body = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    j->status = j->body ? 200 : 500;
}

static void audit_get_done(struct loop_msg *m)
{
    struct audit_get_job *j = (struct audit_get_job *)m;
    http_inflight_add(j->w.loop, -1);
    if (j->r != NULL) {
        switch (j->status) {
        case 200:
            http_respond_json(j->r, 200, j->body, strlen(j->body));
            break;
        case 401:
            http_add_header(j->r, "www-authenticate", "Bearer error=\"invalid_token\"");
            http_respond_error(j->r, 401, "invalid_token", "the bearer token is not a valid admin token");
            break;
        case 404:
            http_respond_error(j->r, 404, "not_found", "no audit record has that request_id");
            break;
        case 503:
            http_respond_error(j->r, 503, "temporarily_unavailable", "the database is unreachable");
            break;
        default:
            http_respond_error(j->r, 500, "server_error", "internal error");
        }
    }
    if (j->status == 200)
        log_msg(LOG_INFO, "admin_audit_read", "admin=%s request_id=%s", j->who, j->request_id);
    http_defer_release(j->defer);
    free(j->body);
    OPENSSL_cleanse(j->hash, sizeof(j->hash));
    free(j);
}

static bool valid_request_id(const char *s, size_t n)
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

int admin_audit_get(struct http_request *r)
{
    const char *tok;
    size_t tlen;
    if (!bearer(r->req, &tok, &tlen)) {
        http_add_header(r, "www-authenticate", "Bearer");
        http_respond_error(r, 401, "invalid_token", "an admin bearer token is required");
        return 0;
    }
    h2o_iovec_t path = r->req->path_normalized;
    static const char prefix[] = "/v1/audit/";
    const char *id = path.base + sizeof(prefix) - 1;
    size_t idlen = path.len - (sizeof(prefix) - 1);
    for (size_t i = 0; i < idlen; i++)
        if (id[i] == '?') {
            idlen = i;
            break;
        }
    if (!valid_request_id(id, idlen)) {
        http_respond_error(r, 400, "invalid_request", "request_id must be 1-64 characters of [A-Za-z0-9_-]");
        return 0;
    }
    struct audit_get_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        http_respond_error(r, 500, "server_error", "out of memory");
        return 0;
    }
    j->defer = http_defer(r, &j->r);
    admin_token_hash(tok, tlen, j->hash);
    memcpy(j->request_id, id, idlen);
    j->request_id[idlen] = '\0';
    j->w.loop = r->loop;
    j->w.run = audit_get_run;
    j->w.msg.cb = audit_get_done;
    http_inflight_add(r->loop, 1);
    worker_submit(&j->w);
    return 0;
}
