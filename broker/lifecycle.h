/* The lifecycle of tokens Broker minted: the one check that a token is ours and live (used by the
 * admin API for its Broker-token credential too), POST /v1/introspect (RFC 7662) and POST
 * /v1/revoke (RFC 7009). Both endpoints run through the admin job machinery (admin.c): the
 * event loop never waits on PostgreSQL. */
#ifndef BROKER_LIFECYCLE_H
#define BROKER_LIFECYCLE_H
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "http.h"
#include "jwt.h"

/* Broker's own issuer URL (iss of every token it mints). */
void lifecycle_init(const char *issuer);

/* A token Broker minted and that is live at now: compact JWS, alg ES256, typ at+jwt, kid of a key
 * in the current keyring (active, next or retired), a valid signature, iss = our issuer, a jti of
 * 1..REVOKED_MAX_JTI bytes, exp > now >= nbf, iat (no leeway: replicas sign and verify with the
 * same clock source). Any audience. Pure crypto, no I/O: fine on an event loop. On BROKER_OK *out
 * holds the parsed token (jwt_release it; its signing_input points into tok); on error *out is
 * empty. Errors: jwt_parse's, ALG_NOT_ALLOWED, BAD_CLAIM, UNKNOWN_ISSUER, UNKNOWN_KID,
 * BAD_SIGNATURE, EXPIRED/NOT_YET_VALID/MISSING_EXP, INTERNAL (no keyring). */
enum broker_err lifecycle_verify_signed(const uint8_t *tok, size_t len, int64_t now, struct jwt *out) BROKER_WUR;
/* lifecycle_verify_signed, then the revocation set: TOKEN_REVOKED for a revoked jti, NOT_READY
 * while the set is not loaded yet or is stale (revoked_loaded: no complete sync within
 * BROKER_REVOKED_MAX_STALE_MS) — fail closed; *out empty on both. */
enum broker_err lifecycle_verify(const uint8_t *tok, size_t len, int64_t now, struct jwt *out) BROKER_WUR;

/* POST /v1/introspect: {"active":true,...claims,"token_type":"Bearer"} or {"active":false};
 * caller: PRIV_INTROSPECT. */
int lifecycle_introspect(struct http_request *r);
/* POST /v1/revoke: token= (its bearer may revoke it; always 200) or jti= (PRIV_ADMIN). */
int lifecycle_revoke(struct http_request *r);

#endif
