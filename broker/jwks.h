/* Pure JWKS parser: JSON text -> OpenSSL key objects, parsed once. */
#ifndef BROKER_JWKS_H
#define BROKER_JWKS_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include "err.h"
#include "jwt.h"
#include "bounds.h"

enum jwk_type { JWK_RSA = 1, JWK_EC_P256, JWK_EC_P384, JWK_EC_P521, JWK_OKP_ED25519, JWK_OCT };

struct jwk {
    char kid[BROKER_MAX_KID_LEN + 1]; /* "" when the key has no kid */
    enum jwk_type type;
    enum jwt_alg alg;                 /* JWT_ALG_INVALID when the JWK has no "alg" */
    EVP_PKEY *pkey;                   /* NULL for JWK_OCT */
    uint8_t *secret;                  /* JWK_OCT only (tests / RFC vectors) */
    size_t secret_len;
};

struct jwks {
    size_t n;
    struct jwk keys[BROKER_MAX_JWKS_KEYS];
};

#define JWKS_ALLOW_SYMMETRIC 1u /* accept kty "oct" (never for issuers; for RFC vectors in tests) */

/* Parse a JWKS document ({"keys":[...]}) or, with a single JWK object, a one-key set.
 * Keys with "use" other than "sig", or unknown kty/crv, are skipped; RSA keys below
 * BROKER_MIN_RSA_BITS are rejected whole; > BROKER_MAX_JWKS_KEYS keys or > BROKER_MAX_JWKS_BYTES
 * is an error; duplicate kids are an error. Zero usable keys is an error. */
enum broker_err jwks_parse(const uint8_t *p, size_t len, unsigned flags, struct jwks **out) BROKER_WUR;
/* Build a one-key set from a PEM public key or certificate (kid = base64url(SHA-256(DER
 * SubjectPublicKeyInfo)), as kube-apiserver computes it; not an RFC 7638 thumbprint). */
enum broker_err jwks_from_pem(const uint8_t *p, size_t len, struct jwks **out) BROKER_WUR;
void jwks_free(struct jwks *set);

/* true when key's type (and its JWK "alg", if any) allows alg; verify_alg_fits_key uses this. */
bool jwks_key_fits_alg(const struct jwk *key, enum jwt_alg alg);
/* Find the key for kid, exactly (NULL or "" kid: the only key that fits alg, if exactly one). */
const struct jwk *jwks_find(const struct jwks *set, const char *kid, enum jwt_alg alg);

#endif
