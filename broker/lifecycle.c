/* Tokens Broker minted, after minting: is this one ours and live (lifecycle_verify, shared with
 * the admin API's Broker-token credential), RFC 7662 introspection and RFC 7009 revocation.
 *
 * POST /v1/revoke with token= needs no credential: a valid token is its own proof, and a token
 * that does not verify (garbage, foreign, expired, already revoked) is answered 200 on the loop
 * without storing anything (RFC 7009 §2.2), so a flood of junk never reaches the database worker.
 * Only a live token of ours, or a jti= from an admin, becomes a worker job: one INSERT ... ON
 * CONFLICT DO NOTHING that NOTIFYs broker_revoke (the other replicas load it within 1 s), then
 * this replica's own set, then 200. */
#include "lifecycle.h"
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "admin_int.h"
#include "b64.h"
#include "bounds.h"
#include "form.h"
#include "jwks.h"
#include "keys.h"
#include "log.h"
#include "revoked.h"
#include "state.h"
#include "verify.h"

/* A revocation by id does not know the token's exp: keep it as long as any token can live. */
#define LIFECYCLE_JTI_KEEP_S (BROKER_MAX_TTL_S + 60)

static const char *self_issuer;

void lifecycle_init(const char *issuer)
{
    self_issuer = issuer;
}

/* The key of ring that signed t (by kid), checked; UNKNOWN_KID when no key has its kid. */
static enum broker_err check_signature(const struct keyring *ring, const struct jwt *t)
{
    if (t->kid == NULL)
        return BROKER_ERR_UNKNOWN_KID;
    for (size_t i = 0; i < ring->n; i++) {
        if (strcmp(ring->keys[i].kid, t->kid) != 0)
            continue;
        struct jwk k = {.type = JWK_EC_P256, .alg = JWT_ALG_ES256, .pkey = ring->keys[i].pkey};
        return verify_signature(&k, JWT_ALG_ES256, t->signing_input, t->signing_input_len, t->sig, t->sig_len) ==
                       BROKER_OK
                   ? BROKER_OK
                   : BROKER_ERR_BAD_SIGNATURE;
    }
    return BROKER_ERR_UNKNOWN_KID;
}

enum broker_err lifecycle_verify_signed(const uint8_t *tok, size_t len, int64_t now, struct jwt *out)
{
    enum broker_err rc;
    if (self_issuer == NULL) {
        memset(out, 0, sizeof(*out));
        return BROKER_ERR_INTERNAL;
    }
    if ((rc = jwt_parse(tok, len, out)) != BROKER_OK)
        return rc;
    const char *typ = json_string_value(json_object_get(out->header, "typ"));
    const json_t *jti = json_object_get(out->claims, "jti");
    size_t jlen = json_is_string(jti) ? json_string_length(jti) : 0;
    struct keyring_ref *kr = NULL;
    if (out->alg != JWT_ALG_ES256)
        rc = BROKER_ERR_ALG_NOT_ALLOWED;
    else if (typ == NULL || strcmp(typ, "at+jwt") != 0)
        rc = BROKER_ERR_BAD_CLAIM;
    else if (out->iss == NULL || strcmp(out->iss, self_issuer) != 0)
        rc = BROKER_ERR_UNKNOWN_ISSUER;
    else if (jlen == 0 || jlen > REVOKED_MAX_JTI || strlen(json_string_value(jti)) != jlen)
        rc = BROKER_ERR_BAD_CLAIM;
    else if ((kr = state_keys_get()) == NULL)
        rc = BROKER_ERR_INTERNAL;
    else if ((rc = check_signature(state_keys_ring(kr), out)) == BROKER_OK)
        rc = verify_times(out->claims, now, 0);
    state_keys_put(kr);
    if (rc != BROKER_OK)
        jwt_release(out);
    return rc;
}

enum broker_err lifecycle_verify(const uint8_t *tok, size_t len, int64_t now, struct jwt *out)
{
    enum broker_err rc = lifecycle_verify_signed(tok, len, now, out);
    if (rc != BROKER_OK)
        return rc;
    const char *jti = json_string_value(json_object_get(out->claims, "jti"));
    if (!revoked_loaded())
        rc = BROKER_ERR_NOT_READY; /* never or not lately synced: a revocation elsewhere may be missing */
    else if (revoked_has(jti, strlen(jti)))
        rc = BROKER_ERR_TOKEN_REVOKED;
    if (rc != BROKER_OK)
        jwt_release(out);
    return rc;
}

/* ---- POST /v1/introspect: through admin_submit (authorization first), answered here ---- */

int lifecycle_introspect(struct http_request *r)
{
    return admin_submit(r, OP_INTROSPECT, NULL, NULL);
}

/* Worker side, after admin_authorize found PRIV_INTROSPECT. */
void lifecycle_run_introspect(struct admin_job *j)
{
    static const char *const copied[] = {"iss", "sub", "aud", "scope", "client_id", "exp",
                                         "iat", "nbf", "jti", "src", "ext"};
    struct form f;
    size_t tlen;
    char *scratch = NULL;
    struct jwt t;

    if (!j->form_body && !j->json_body) {
        admin_job_fail(j, 415, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
        return;
    }
    if ((scratch = malloc(j->body_len + 1)) == NULL) {
        admin_job_fail(j, 500, "server_error", "out of memory");
        return;
    }
    const uint8_t *body = (const uint8_t *)(j->body != NULL ? j->body : "");
    enum broker_err e = j->json_body ? form_parse_json(body, j->body_len, &f, scratch, j->body_len + 1)
                                     : form_parse(body, j->body_len, &f, scratch, j->body_len + 1);
    const char *tok = e == BROKER_OK ? form_get(&f, "token", &tlen) : NULL;
    if (e != BROKER_OK)
        admin_job_fail(j, 400, "invalid_request", "the request body is not a well-formed form");
    else if (tok == NULL)
        admin_job_fail(j, 400, "invalid_request", "the token parameter is required");
    if (tok == NULL)
        goto out;
    /* token_type_hint is accepted and ignored: Broker introspects only its own access tokens */
    e = lifecycle_verify((const uint8_t *)tok, tlen, (int64_t)time(NULL), &t);
    if (e == BROKER_ERR_NOT_READY) {
        admin_job_fail(j, 503, "temporarily_unavailable", "revoked tokens are not loaded or not current");
        goto out;
    }
    json_t *o = json_pack("{s:b}", "active", e == BROKER_OK);
    if (e == BROKER_OK) {
        for (size_t i = 0; o != NULL && i < sizeof(copied) / sizeof(copied[0]); i++) {
            json_t *v = json_object_get(t.claims, copied[i]);
            if (v != NULL && json_object_set(o, copied[i], v) != 0) {
                json_decref(o);
                o = NULL;
            }
        }
        if (o != NULL && json_object_set_new(o, "token_type", json_string("Bearer")) != 0) {
            json_decref(o);
            o = NULL;
        }
        jwt_release(&t);
    } else {
        log_msg(LOG_DEBUG, "introspect_inactive", "who=%s reason=%s", j->who, broker_strerror(e));
    }
    admin_job_json(j, 200, o);
out:
    if (scratch != NULL)
        OPENSSL_cleanse(scratch, j->body_len + 1); /* it held a bearer token */
    free(scratch);
}

/* ---- POST /v1/revoke ---- */

/* http_respond adds Cache-Control: no-store to every answer (RFC 7662 §2.2 asks it here). */
static void respond_done(struct http_request *r)
{
    http_respond_json(r, 200, "{}", 2);
}

/* An admin's jti=: what Broker mints (base64url), bounded. */
static bool jti_ok(const char *s, size_t n)
{
    return b64url_alphabet_ok(s, n, REVOKED_MAX_JTI);
}

int lifecycle_revoke(struct http_request *r)
{
    h2o_req_t *req = r->req;
    struct form f;
    size_t tlen = 0, jlen = 0;

    if (req->entity.len > BROKER_MAX_BODY) {
        http_respond_error(r, 413, "invalid_request", "request body too large");
        return 0;
    }
    bool is_json = http_content_type_is(req, "application/json");
    if (!is_json && !http_content_type_is(req, "application/x-www-form-urlencoded")) {
        http_respond_error(r, 415, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
        return 0;
    }
    size_t cap = req->entity.len + 1;
    char *scratch = h2o_mem_alloc_pool(&req->pool, cap);
    const uint8_t *body = (const uint8_t *)req->entity.base;
    enum broker_err e = is_json ? form_parse_json(body, req->entity.len, &f, scratch, cap)
                                : form_parse(body, req->entity.len, &f, scratch, cap);
    if (e != BROKER_OK) {
        http_respond_error(r, 400, "invalid_request", "the request body is not a well-formed form");
        return 0;
    }
    const char *tok = form_get(&f, "token", &tlen), *jti = form_get(&f, "jti", &jlen);
    if ((tok == NULL) == (jti == NULL)) {
        http_respond_error(r, 400, "invalid_request", "give token (or, as an admin, jti), not both");
        return 0;
    }
    if (jti != NULL) {
        if (!jti_ok(jti, jlen)) {
            http_respond_error(r, 400, "invalid_request", "jti must be 1-64 base64url characters");
            return 0;
        }
        return admin_submit_revoke(r, jti, jlen, 0);
    }
    /* token_type_hint is accepted and ignored. Anything but a live token of ours: nothing to do */
    struct jwt t;
    if (lifecycle_verify_signed((const uint8_t *)tok, tlen, (int64_t)time(NULL), &t) != BROKER_OK) {
        respond_done(r);
        return 0;
    }
    char id[REVOKED_MAX_JTI + 1];
    const char *s = json_string_value(json_object_get(t.claims, "jti"));
    size_t n = strlen(s); /* lifecycle_verify_signed checked 1..REVOKED_MAX_JTI */
    memcpy(id, s, n + 1);
    bool present;
    int64_t exp = 0;
    if (jwt_claim_time(t.claims, "exp", &present, &exp) != BROKER_OK || !present || exp <= 0)
        exp = (int64_t)time(NULL) + LIFECYCLE_JTI_KEEP_S; /* cannot happen: verify_times required it */
    jwt_release(&t);
    if (revoked_has(id, n)) {
        respond_done(r); /* already revoked: idempotent, no second row */
        return 0;
    }
    return admin_submit_revoke(r, id, n, exp);
}

/* Worker side: store the revocation (and NOTIFY), add it to this replica's set, then 200. A
 * revocation by jti has passed admin_authorize (PRIV_ADMIN); a token's came with the token as
 * proof, and j->who names an admin only when the request also carried an admin credential. */
void lifecycle_run_revoke(struct store *st, struct admin_job *j)
{
    bool by_jti = j->exp == 0, added = false;
    const char *who = (j->privs & PRIV_BIT(PRIV_ADMIN)) != 0 && j->who[0] != '\0' ? j->who : "bearer";
    int64_t exp = by_jti ? (int64_t)time(NULL) + LIFECYCLE_JTI_KEEP_S : j->exp;
    size_t n = j->arg != NULL ? strlen(j->arg) : 0;

    if (n == 0) {
        admin_job_fail(j, 500, "server_error", "out of memory");
        return;
    }
    if (st == NULL) {
        admin_job_fail(j, 503, "temporarily_unavailable", "the database is unreachable");
        return;
    }
    enum broker_err e = store_revoke_add(st, j->arg, exp, who, &added);
    if (e != BROKER_OK) {
        admin_job_store_fail(j, st, e);
        return;
    }
    /* this replica refuses the token before the caller hears 200 (the others within 1 s) */
    if ((e = revoked_add(j->arg, n, exp)) != BROKER_OK) {
        log_msg(LOG_ERROR, "revoked_add_failed", "jti=%s reason=%s", j->arg, broker_strerror(e));
        admin_job_fail(j, 500, "server_error", "the revocation is stored but not yet in force here; retry");
        return;
    }
    log_msg(LOG_INFO, "token_revoked", "jti=%s who=%s by=%s exp=%" PRId64 " new=%s", j->arg, who,
            by_jti ? "jti" : "token", exp, added ? "true" : "false");
    admin_job_json(j, 200, json_object());
}
