/* Signature and time-window checks. The clock is always passed in. */
#ifndef BROKER_VERIFY_H
#define BROKER_VERIFY_H
#include <stdint.h>
#include <stdbool.h>
#include "err.h"
#include "jwt.h"
#include "jwks.h"

/* true when alg may be used with this key: RS* and PS* need RSA, ES256/384/512 need
 * P-256/P-384/P-521, EdDSA needs Ed25519, HS* need oct; a JWK "alg" must equal alg. */
bool verify_alg_fits_key(enum jwt_alg alg, const struct jwk *key);

/* Verify sig over msg with key under alg (checks verify_alg_fits_key first).
 * ECDSA signatures are JWS raw r||s of the exact curve size. Uses OpenSSL EVP only. */
enum broker_err verify_signature(const struct jwk *key, enum jwt_alg alg, const uint8_t *msg, size_t msg_len,
                                 const uint8_t *sig, size_t sig_len) BROKER_WUR;

/* exp required; exp > now - leeway; nbf <= now + leeway; iat <= now + leeway. */
enum broker_err verify_times(const json_t *claims, int64_t now, int64_t leeway_s) BROKER_WUR;

/* Whole check of a parsed token against a key set: alg in allowed_algs (a JWT_ALG_BIT mask,
 * HMAC never allowed unless the mask says so), key lookup by kid, signature, times.
 * Returns BROKER_ERR_UNKNOWN_KID when no key matches (caller may refetch once). */
enum broker_err verify_jwt(const struct jwt *t, const struct jwks *keys, uint32_t allowed_algs, int64_t now,
                           int64_t leeway_s) BROKER_WUR;

/* Free this thread's cached verification contexts (call before a thread that verified exits). */
void verify_thread_cleanup(void);

#endif
