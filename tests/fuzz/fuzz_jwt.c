// SOURCES: broker/jwt.c broker/b64.c broker/jwks.c broker/verify.c broker/prof.c broker/err.c broker/json.c
/* libFuzzer target: jwt_parse, then verify_jwt against a fixed key set of every key type
 * (RSA, P-256, Ed25519 and an HMAC secret), with every algorithm allowed so that each
 * verification path is reachable. Never crashes, never leaks, never accepts by accident
 * (a forged token would need one of the fixed keys). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "jwt.h"
#include "jwks.h"
#include "verify.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 7515 A.2 (RSA), A.3 (P-256), A.1 (HMAC) and RFC 8037 A.4 (Ed25519) public keys. */
static const char KEYS[] =
    "{\"keys\":["
    "{\"kty\":\"RSA\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4"
    "d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-U"
    "To7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2"
    "PAcDTW9gb54h4FRWyuXpoQ\",\"e\":\"AQAB\"},"
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"},"
    "{\"kty\":\"oct\",\"kid\":\"hs\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAz"
    "Zr1Z9CAow\"}]}";

static struct jwks *keys;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (jwks_parse((const uint8_t *)KEYS, sizeof(KEYS) - 1, JWKS_ALLOW_SYMMETRIC, &keys) != BROKER_OK || keys->n != 4)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jwt t;
    bool present;
    int64_t v;

    if (jwt_parse(data, size, &t) != BROKER_OK) {
        /* no partial state on error */
        if (t.header || t.claims || t.sig_len || t.kid)
            abort();
        return 0;
    }
    if (t.alg == JWT_ALG_INVALID || t.signing_input != data || t.signing_input_len >= size)
        abort();
    (void)verify_jwt(&t, keys, 0xffffffffu, 1300819000, 60);
    (void)jwt_claim_time(t.claims, "exp", &present, &v);
    (void)jwt_aud_contains(t.claims, "aud");
    jwt_release(&t);
    return 0;
}
