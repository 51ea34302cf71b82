/* Pure compact-JWS parsing: split, decode, typed access. No I/O, no clock, no crypto. */
#ifndef BROKER_JWT_H
#define BROKER_JWT_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <jansson.h>
#include "err.h"
#include "bounds.h"

enum jwt_alg {
    JWT_ALG_INVALID = 0, /* unknown, "none" in any spelling, or absent */
    JWT_ALG_RS256, JWT_ALG_RS384, JWT_ALG_RS512,
    JWT_ALG_PS256, JWT_ALG_PS384, JWT_ALG_PS512,
    JWT_ALG_ES256, JWT_ALG_ES384, JWT_ALG_ES512,
    JWT_ALG_EDDSA,
    JWT_ALG_HS256, JWT_ALG_HS384, JWT_ALG_HS512,
    JWT_ALG__COUNT
};
#define JWT_ALG_BIT(a) (1u << (a))
#define JWT_ALG_MASK_HMAC (JWT_ALG_BIT(JWT_ALG_HS256) | JWT_ALG_BIT(JWT_ALG_HS384) | JWT_ALG_BIT(JWT_ALG_HS512))

/* Exact, case-sensitive lookup ("RS256"); JWT_ALG_INVALID for anything else. */
enum jwt_alg jwt_alg_from_name(const char *name, size_t len);
const char *jwt_alg_name(enum jwt_alg alg);

struct jwt {
    json_t *header;                 /* owned; protected header object */
    json_t *claims;                 /* owned; payload object */
    const uint8_t *signing_input;   /* borrowed: points into the parsed buffer */
    size_t signing_input_len;       /* "b64(header).b64(payload)" */
    uint8_t sig[BROKER_MAX_SIG_LEN];
    size_t sig_len;
    enum jwt_alg alg;
    const char *kid;                /* borrowed from header, NULL when absent */
    const char *iss;                /* borrowed from claims, NULL when absent */
};

/* Parse a compact JWS: exactly 3 segments, strict base64url, header and payload JSON objects
 * (duplicate keys rejected, depth <= BROKER_MAX_JSON_DEPTH), "crit" rejected, "alg" a string.
 * Errors: TOKEN_TOO_LARGE (len > BROKER_MAX_TOKEN_LEN or decoded header > BROKER_MAX_JOSE_HEADER_LEN),
 * ALG_NOT_ALLOWED ("alg" absent, "none" in any case, or unknown), TOKEN_CRIT, BAD_CLAIM ("iss"
 * not a string), TOKEN_MALFORMED (anything else, including an empty signature). An empty "kid"
 * is reported as NULL. jku/x5u/jwk/x5c are ignored. signing_input points into p, so p must
 * outlive *out. On error *out is left empty (nothing to free). */
enum broker_err jwt_parse(const uint8_t *p, size_t len, struct jwt *out) BROKER_WUR;
void jwt_release(struct jwt *t);

/* Parse JSON text with duplicate keys rejected and depth bounded; NULL on error. */
json_t *jwt_json_load_strict(const uint8_t *p, size_t len, size_t max_depth);

/* Typed claim access: integer NumericDate (rejects non-integers beyond 2^53 or negative). */
enum broker_err jwt_claim_time(const json_t *claims, const char *name, bool *present, int64_t *out) BROKER_WUR;
/* true when the "aud" claim (string or array of strings) contains aud exactly. */
bool jwt_aud_contains(const json_t *claims, const char *aud);

#endif
