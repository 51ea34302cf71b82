// SOURCES: broker/curlx.c broker/issuers_fetch.c broker/bearer.c broker/log.c broker/jwks.c broker/jwt.c broker/b64.c broker/err.c broker/json.c
// LIBS: -lcurl
/* libFuzzer target: issuers_fetch_cache_control, the Cache-Control value of an issuer's JWKS
 * response (untrusted: whoever serves the keys chooses it). Checks the documented range, that the
 * answer is a pure function of the bytes, that directive names are case-insensitive, that a
 * non-negative answer came from a directive that is really there, and that the refresh interval
 * derived from any answer stays within [BROKER_JWKS_MIN_REFRESH_S, BROKER_JWKS_MAX_REFRESH_S]. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bounds.h"
#include "issuers_fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, int64_t got, int64_t other)
{
    fprintf(stderr, "fuzz_cache_control: %s (%lld, %lld)\n", what, (long long)got, (long long)other);
    abort();
}

static bool contains(const uint8_t *p, size_t n, const char *lit)
{
    return memmem(p, n, lit, strlen(lit)) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int64_t cap = (int64_t)1 << 31;
    int64_t r = issuers_fetch_cache_control(data, size);

    if (r < -1 || r > cap)
        fail("result out of range", r, cap);
    int64_t again = issuers_fetch_cache_control(data, size);
    if (again != r)
        fail("not deterministic", r, again);
    int64_t s = issuers_fetch_refresh_s(r);
    if (s < BROKER_JWKS_MIN_REFRESH_S || s > BROKER_JWKS_MAX_REFRESH_S)
        fail("refresh interval out of bounds", r, s);

    /* Letters only matter in directive names (case-insensitive) or make a max-age value bad in
     * either case, so folding the input must not change the answer. The lower-case copy (of exactly
     * size bytes, so ASan still sees any over-read) also lets us ask which directives are present. */
    uint8_t *lower = malloc(size ? size : 1), *upper = malloc(size ? size : 1);
    if (lower == NULL || upper == NULL)
        abort();
    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        lower[i] = c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
        upper[i] = c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
    }
    int64_t rl = issuers_fetch_cache_control(lower, size), ru = issuers_fetch_cache_control(upper, size);
    if (rl != r || ru != r)
        fail("depends on letter case", r, rl != r ? rl : ru);
    if (r == 0 && !contains(lower, size, "no-store") && !contains(lower, size, "no-cache") &&
        !contains(lower, size, "max-age"))
        fail("0 without no-store, no-cache or max-age", r, 0);
    if (r > 0 && !contains(lower, size, "max-age"))
        fail("a max-age without max-age", r, 0);
    free(lower);
    free(upper);
    return 0;
}
