/* Builds RFC 9068 JWT access tokens. Pure apart from signing and the random jti. */
#ifndef BROKER_MINT_H
#define BROKER_MINT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "err.h"
#include "keys.h"

/* Longest claims JSON mint_token builds (a stack buffer on the hot path). */
#define MINT_CLAIMS_MAX BROKER_MAX_MINTED_LEN
/* jti: 16 random bytes, base64url. */
#define MINT_JTI_LEN 22

struct mint_input {
    const char *issuer;       /* BROKER_ISSUER */
    const char *identity;     /* sub and client_id */
    const char *audience;
    const char *scope;        /* space-delimited */
    int64_t now;              /* iat and nbf */
    int64_t ttl_s;            /* 1 .. BROKER_MAX_TTL_S */
    const char *src_iss, *src_sub, *src_policy; /* src_sub may be NULL */
    const json_t *ext;        /* object of mapped claims, or NULL (omitted when NULL or empty) */
};

/* Writes a compact JWS (NUL-terminated) into out; jti_out receives the 22-character jti.
 * Header {"alg":"ES256","typ":"at+jwt","kid"}; claims iss, sub, client_id, aud, scope, iat,
 * nbf, exp, jti, src{iss,sub,policy}, ext. Every string must be valid UTF-8.
 * src_sub may be NULL (a subject token without a scalar sub): "sub" is then null.
 * BROKER_ERR_CLAIM_TOO_LONG when the token would fit without what the subject token brings
 * (src.sub, ext) but not with it: the client's doing, the caller denies the exchange.
 * BROKER_ERR_INTERNAL when it does not fit cap (or the claims MINT_CLAIMS_MAX) otherwise, a
 * string is NULL or not UTF-8, ext is not an object, or ttl/now are out of range: all are caller
 * or policy bugs, never the client's. On error out and jti_out are empty strings. */
enum broker_err mint_token(const struct signing_key *key, const struct mint_input *in, char *out, size_t cap,
                           size_t *out_len, char jti_out[48]) BROKER_WUR;
/* mint_token in two steps, so that an event loop can sign its tokens together
 * (keys_sign_batch): mint_prepare writes header.claims (the signing input, not NUL-terminated)
 * into out, its length into *signing_len and the jti, with mint_token's errors; mint_finish
 * appends '.' and the signature (cap was checked by mint_prepare for the whole token). */
enum broker_err mint_prepare(const struct signing_key *key, const struct mint_input *in, char *out, size_t cap,
                             size_t *signing_len, char jti_out[48]) BROKER_WUR;
enum broker_err mint_finish(char *out, size_t cap, size_t signing_len, const uint8_t sig[64],
                            size_t *out_len) BROKER_WUR;

/* A bounded append-only JSON text writer (the token's header and claims, and the exchange's
 * answer): once anything fails to fit, or a string is not UTF-8, every later append is a no-op
 * and failed stays set. Initialise as {buf, 0, cap, false}. */
struct mint_buf {
    char *p;
    size_t len, cap;
    bool failed;
};
void mint_raw(struct mint_buf *b, const char *s, size_t n);
#define MINT_LIT(b, lit) mint_raw((b), (lit), sizeof(lit) - 1)
/* s as a JSON string literal (mint_json_escape). */
void mint_str(struct mint_buf *b, const char *s);
/* v in decimal. */
void mint_int(struct mint_buf *b, int64_t v);

/* Writes s as a complete JSON string literal, WITH the surrounding quotes, into out (no NUL):
 * '"' and '\\' backslash-escaped, control characters as \u00XX, UTF-8 passed through.
 * Returns bytes written (>= 2), or 0 when it does not fit or s is not valid UTF-8. */
size_t mint_json_escape(const char *s, char *out, size_t cap);

#endif
