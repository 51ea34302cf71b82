// SOURCES: broker/jwks.c broker/jwt.c broker/b64.c broker/err.c broker/json.c
/* libFuzzer target: jwks_parse (with and without symmetric keys) and jwks_from_pem. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "jwks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct jwks *set)
{
    if (set->n == 0 || set->n > BROKER_MAX_JWKS_KEYS)
        abort();
    for (size_t i = 0; i < set->n; i++) {
        const struct jwk *k = &set->keys[i];
        if (strlen(k->kid) > BROKER_MAX_KID_LEN || (k->type == JWK_OCT) != (k->pkey == NULL))
            abort();
        /* a key with a kid is found by it, and only a key that fits is found without one */
        if (k->kid[0] != '\0' && jwks_find(set, k->kid, k->alg) != k)
            abort();
        const struct jwk *any = jwks_find(set, NULL, k->alg ? k->alg : JWT_ALG_RS256);
        if (any != NULL && !jwks_key_fits_alg(any, k->alg ? k->alg : JWT_ALG_RS256))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jwks *set = NULL;

    for (unsigned flags = 0; flags <= JWKS_ALLOW_SYMMETRIC; flags++) {
        if (jwks_parse(data, size, flags, &set) == BROKER_OK) {
            check(set);
            jwks_free(set);
        } else if (set != NULL) {
            abort();
        }
    }
    if (jwks_from_pem(data, size, &set) == BROKER_OK) {
        check(set);
        jwks_free(set);
    }
    return 0;
}
