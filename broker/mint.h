/* Builds RFC 9068 JWT access tokens. Pure apart from signing and the random jti. */
#ifndef BROKER_MINT_H
#define BROKER_MINT_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "err.h"
#include "keys.h"

struct mint_input {
    const char *issuer;       /* BROKER_ISSUER */
    const char *identity;     /* sub and client_id */
    const char *audience;
    const char *scope;        /* space-delimited */
    int64_t now;              /* iat and nbf */
    int64_t ttl_s;
    const char *src_iss, *src_sub, *src_policy;
    const json_t *ext;        /* object of mapped claims, or NULL */
};

/* Writes a compact JWS (NUL-terminated) into out; jti_out receives the 22+ character jti. */
enum broker_err mint_token(const struct signing_key *key, const struct mint_input *in, char *out, size_t cap,
                           size_t *out_len, char jti_out[48]) BROKER_WUR;

/* JSON string escaping into a bounded buffer; returns bytes written or 0 when it does not fit. */
size_t mint_json_escape(const char *s, char *out, size_t cap);

#endif
