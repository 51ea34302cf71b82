/* Hostile subject tokens against an RS256 issuer: each known JWT attack, run through the same
 * jwt_parse + verify_jwt path as an exchange, must fail with its specific reason. */
#include <stdbool.h>
#include "test_util.h"
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include "b64.h"
#include "jwt.h"
#include "jwks.h"
#include "verify.h"

#define T0 1700000000
#define LEEWAY 60
#define MASK JWT_ALG_BIT(JWT_ALG_RS256) /* the issuer's algorithm list */

enum signer { ISSUER, ATTACKER, HMAC_PEM, HMAC_DER, EMPTY_SIG };

struct fx {
    EVP_PKEY *issuer, *attacker;
    struct jwks *keys;       /* the registered issuer key set: the issuer's public key only */
    char kid[BROKER_MAX_KID_LEN + 1];
    char attacker_kid[64];
    char attacker_jwk[1024]; /* {"kty":"RSA","n":..,"e":..} of the attacker key */
    char *pem;               /* issuer public key, PEM text */
    size_t pem_len;
    uint8_t *der;            /* issuer public key, DER SPKI */
    size_t der_len;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    BIO *bio = BIO_new(BIO_s_mem());
    BIGNUM *n = NULL, *e = NULL;
    uint8_t buf[600];
    char nb[800], eb[16];
    char *mem;
    long len;
    unsigned char *der = NULL;
    int dl;

    if (!f || !bio)
        return -1;
    f->issuer = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    f->attacker = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (!f->issuer || !f->attacker || PEM_write_bio_PUBKEY(bio, f->issuer) != 1)
        return -1;
    len = BIO_get_mem_data(bio, &mem);
    f->pem = malloc((size_t)len + 1);
    memcpy(f->pem, mem, (size_t)len);
    f->pem[len] = '\0';
    f->pem_len = (size_t)len;
    BIO_free(bio);
    if (jwks_from_pem((uint8_t *)f->pem, f->pem_len, &f->keys) != BROKER_OK)
        return -1;
    memcpy(f->kid, f->keys->keys[0].kid, sizeof(f->kid));
    dl = i2d_PUBKEY(f->issuer, &der);
    if (dl <= 0)
        return -1;
    f->der = der;
    f->der_len = (size_t)dl;
    snprintf(f->attacker_kid, sizeof(f->attacker_kid), "attacker-key-1");
    if (EVP_PKEY_get_bn_param(f->attacker, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(f->attacker, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
        return -1;
    nb[b64url_encode(buf, (size_t)BN_bn2bin(n, buf), nb)] = '\0';
    eb[b64url_encode(buf, (size_t)BN_bn2bin(e, buf), eb)] = '\0';
    snprintf(f->attacker_jwk, sizeof(f->attacker_jwk), "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"}",
             f->attacker_kid, nb, eb);
    BN_free(n);
    BN_free(e);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    EVP_PKEY_free(f->issuer);
    EVP_PKEY_free(f->attacker);
    jwks_free(f->keys);
    free(f->pem);
    OPENSSL_free(f->der);
    free(f);
    return 0;
}

/* b64(hdr).b64(payload).b64(sig by signer) + suffix; malloc'd. */
static char *build(const struct fx *f, const char *hdr, const char *pl, enum signer who, const char *suffix)
{
    size_t cap = B64URL_ENCODED_LEN(strlen(hdr)) + B64URL_ENCODED_LEN(strlen(pl)) + 1500 + strlen(suffix);
    char *tok = malloc(cap);
    uint8_t sig[512];
    size_t n, sig_len = sizeof(sig);
    unsigned int mac_len;
    EVP_MD_CTX *ctx;

    assert_non_null(tok);
    n = b64url_encode((const uint8_t *)hdr, strlen(hdr), tok);
    tok[n++] = '.';
    n += b64url_encode((const uint8_t *)pl, strlen(pl), tok + n);
    switch (who) {
    case ISSUER:
    case ATTACKER:
        ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, who == ISSUER ? f->issuer : f->attacker), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (uint8_t *)tok, n), 1);
        EVP_MD_CTX_free(ctx);
        break;
    case HMAC_PEM:
    case HMAC_DER:
        assert_non_null(HMAC(EVP_sha256(), who == HMAC_PEM ? (const void *)f->pem : f->der,
                             (int)(who == HMAC_PEM ? f->pem_len : f->der_len), (uint8_t *)tok, n, sig, &mac_len));
        sig_len = mac_len;
        break;
    case EMPTY_SIG:
        sig_len = 0;
        break;
    }
    tok[n++] = '.';
    n += b64url_encode(sig, sig_len, tok + n);
    memcpy(tok + n, suffix, strlen(suffix) + 1);
    return tok;
}

static enum broker_err run(const struct fx *f, const char *tok, size_t len)
{
    struct jwt t;
    enum broker_err e = jwt_parse((const uint8_t *)tok, len, &t);
    if (e != BROKER_OK)
        return e;
    e = verify_jwt(&t, f->keys, MASK, T0, LEEWAY);
    jwt_release(&t);
    return e;
}

#define GOOD_PL "{\"iss\":\"https://issuer.example\",\"sub\":\"repo:acme/app:ref:refs/heads/main\",\"aud\":\"b\"," \
                "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700000300}"

/* "%K" in a header is replaced by the issuer kid, "%A" by the attacker kid, "%J" by the attacker's JWK. */
struct hostile {
    const char *name;
    const char *hdr;
    const char *pl;
    enum signer who;
    const char *suffix;
    enum broker_err want;
};

static const struct hostile table[] = {
    {"control: well-formed, issuer-signed", "{\"alg\":\"RS256\",\"kid\":\"%K\",\"typ\":\"JWT\"}", GOOD_PL, ISSUER, "",
     BROKER_OK},
    {"control: no kid, single issuer key", "{\"alg\":\"RS256\"}", GOOD_PL, ISSUER, "", BROKER_OK},
    {"control: escaped alg spelling", "{\"alg\":\"\\u0052S256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "", BROKER_OK},

    /* alg none */
    {"alg none, empty sig", "{\"alg\":\"none\"}", GOOD_PL, EMPTY_SIG, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg None, empty sig", "{\"alg\":\"None\"}", GOOD_PL, EMPTY_SIG, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg NONE, empty sig", "{\"alg\":\"NONE\"}", GOOD_PL, EMPTY_SIG, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg nOnE, empty sig, with kid", "{\"alg\":\"nOnE\",\"kid\":\"%K\"}", GOOD_PL, EMPTY_SIG, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg none escaped", "{\"alg\":\"\\u006eone\"}", GOOD_PL, EMPTY_SIG, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg none with a valid RS256 signature", "{\"alg\":\"none\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg absent", "{\"kid\":\"%K\"}", GOOD_PL, ISSUER, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg empty", "{\"alg\":\"\"}", GOOD_PL, EMPTY_SIG, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg lower-case rs256", "{\"alg\":\"rs256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "", BROKER_ERR_ALG_NOT_ALLOWED},
    {"alg duplicated RS256 then none", "{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "",
     BROKER_ERR_TOKEN_MALFORMED},

    /* key confusion */
    {"HS256 keyed with the issuer public key PEM", "{\"alg\":\"HS256\",\"kid\":\"%K\"}", GOOD_PL, HMAC_PEM, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"HS256 keyed with the issuer public key PEM, no kid", "{\"alg\":\"HS256\"}", GOOD_PL, HMAC_PEM, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"HS256 keyed with the issuer public key DER", "{\"alg\":\"HS256\",\"kid\":\"%K\"}", GOOD_PL, HMAC_DER, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"PS256 not in the issuer list", "{\"alg\":\"PS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"ES256 against an RSA issuer", "{\"alg\":\"ES256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "",
     BROKER_ERR_ALG_NOT_ALLOWED},
    {"EdDSA against an RSA issuer", "{\"alg\":\"EdDSA\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "",
     BROKER_ERR_ALG_NOT_ALLOWED},

    /* keys named by the token: never fetched, never used */
    {"jku to attacker, attacker kid", "{\"alg\":\"RS256\",\"kid\":\"%A\",\"jku\":\"https://evil.example/jwks.json\"}",
     GOOD_PL, ATTACKER, "", BROKER_ERR_UNKNOWN_KID},
    {"jku to attacker, issuer kid", "{\"alg\":\"RS256\",\"kid\":\"%K\",\"jku\":\"https://evil.example/jwks.json\"}",
     GOOD_PL, ATTACKER, "", BROKER_ERR_BAD_SIGNATURE},
    {"x5u to attacker, issuer kid", "{\"alg\":\"RS256\",\"kid\":\"%K\",\"x5u\":\"https://evil.example/cert.pem\"}",
     GOOD_PL, ATTACKER, "", BROKER_ERR_BAD_SIGNATURE},
    {"x5u to attacker, no kid", "{\"alg\":\"RS256\",\"x5u\":\"https://evil.example/cert.pem\"}", GOOD_PL, ATTACKER, "",
     BROKER_ERR_BAD_SIGNATURE},
    {"embedded attacker jwk, attacker kid", "{\"alg\":\"RS256\",\"kid\":\"%A\",\"jwk\":%J}", GOOD_PL, ATTACKER, "",
     BROKER_ERR_UNKNOWN_KID},
    {"embedded attacker jwk, no kid", "{\"alg\":\"RS256\",\"jwk\":%J}", GOOD_PL, ATTACKER, "",
     BROKER_ERR_BAD_SIGNATURE},
    {"embedded x5c, issuer kid", "{\"alg\":\"RS256\",\"kid\":\"%K\",\"x5c\":[\"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\"]}",
     GOOD_PL, ATTACKER, "", BROKER_ERR_BAD_SIGNATURE},
    {"kid path traversal", "{\"alg\":\"RS256\",\"kid\":\"../../../../dev/null\"}", GOOD_PL, ISSUER, "",
     BROKER_ERR_UNKNOWN_KID},
    {"kid SQL", "{\"alg\":\"RS256\",\"kid\":\"' OR '1'='1\"}", GOOD_PL, ISSUER, "", BROKER_ERR_UNKNOWN_KID},
    {"kid not a string", "{\"alg\":\"RS256\",\"kid\":{\"$ne\":\"\"}}", GOOD_PL, ISSUER, "", BROKER_ERR_TOKEN_MALFORMED},

    /* structure */
    {"crit", "{\"alg\":\"RS256\",\"kid\":\"%K\",\"crit\":[\"exp\"]}", GOOD_PL, ISSUER, "", BROKER_ERR_TOKEN_CRIT},
    {"crit b64", "{\"alg\":\"RS256\",\"kid\":\"%K\",\"b64\":false,\"crit\":[\"b64\"]}", GOOD_PL, ISSUER, "",
     BROKER_ERR_TOKEN_CRIT},
    {"duplicate claim, signed", "{\"alg\":\"RS256\",\"kid\":\"%K\"}",
     "{\"sub\":\"repo:acme/app:ref:refs/heads/main\",\"sub\":\"repo:evil/x\",\"exp\":1700000300}", ISSUER, "",
     BROKER_ERR_TOKEN_MALFORMED},
    {"duplicate nested claim, signed", "{\"alg\":\"RS256\",\"kid\":\"%K\"}",
     "{\"exp\":1700000300,\"ext\":{\"a\":1,\"a\":2}}", ISSUER, "", BROKER_ERR_TOKEN_MALFORMED},
    {"four segments", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, ".AAAA", BROKER_ERR_TOKEN_MALFORMED},
    {"five segments (JWE shape)", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, ".AAAA.AAAA",
     BROKER_ERR_TOKEN_MALFORMED},
    {"trailing dot", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, ".", BROKER_ERR_TOKEN_MALFORMED},
    {"padded signature", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "==", BROKER_ERR_TOKEN_MALFORMED},
    {"trailing newline", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, "\n", BROKER_ERR_TOKEN_MALFORMED},
    {"trailing space", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, ISSUER, " ", BROKER_ERR_TOKEN_MALFORMED},
    {"empty signature, RS256", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", GOOD_PL, EMPTY_SIG, "",
     BROKER_ERR_TOKEN_MALFORMED},
    {"payload not JSON, signed", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "exp=1700000300", ISSUER, "",
     BROKER_ERR_TOKEN_MALFORMED},
    {"payload a JSON array, signed", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "[{\"exp\":1700000300}]", ISSUER, "",
     BROKER_ERR_TOKEN_MALFORMED},
    {"payload with NUL escape, signed", "{\"alg\":\"RS256\",\"kid\":\"%K\"}",
     "{\"sub\":\"repo:acme/app\\u0000evil\",\"exp\":1700000300}", ISSUER, "", BROKER_ERR_TOKEN_MALFORMED},
    {"header a JSON string", "\"RS256\"", GOOD_PL, ISSUER, "", BROKER_ERR_TOKEN_MALFORMED},
    {"iss not a string, signed", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"iss\":[\"https://issuer.example\"],"
                                                                      "\"exp\":1700000300}",
     ISSUER, "", BROKER_ERR_BAD_CLAIM},

    /* time */
    {"expired beyond leeway", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"iat\":1699990000,\"exp\":1699999940}", ISSUER,
     "", BROKER_ERR_EXPIRED},
    {"expired within leeway", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"iat\":1699990000,\"exp\":1699999941}", ISSUER,
     "", BROKER_OK},
    {"nbf in the future", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"nbf\":1700000061,\"exp\":1700000600}", ISSUER, "",
     BROKER_ERR_NOT_YET_VALID},
    {"iat in the future", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"iat\":1700000061,\"exp\":1700000600}", ISSUER, "",
     BROKER_ERR_NOT_YET_VALID},
    {"no exp", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"iat\":1700000000,\"sub\":\"x\"}", ISSUER, "",
     BROKER_ERR_MISSING_EXP},
    {"exp a string", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"exp\":\"1700000300\"}", ISSUER, "",
     BROKER_ERR_BAD_CLAIM},
    {"exp fractional", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"exp\":1700000300.5}", ISSUER, "", BROKER_ERR_BAD_CLAIM},
    {"exp beyond 2^53", "{\"alg\":\"RS256\",\"kid\":\"%K\"}", "{\"exp\":99999999999999999}", ISSUER, "",
     BROKER_ERR_BAD_CLAIM},
};

/* Expand %K, %A and %J in a header template. */
static char *expand(const struct fx *f, const char *tpl)
{
    size_t cap = strlen(tpl) + 2048, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (const char *p = tpl; *p; p++) {
        const char *ins = NULL;
        if (p[0] == '%' && p[1] == 'K')
            ins = f->kid;
        else if (p[0] == '%' && p[1] == 'A')
            ins = f->attacker_kid;
        else if (p[0] == '%' && p[1] == 'J')
            ins = f->attacker_jwk;
        if (ins) {
            size_t l = strlen(ins);
            assert_true(n + l < cap);
            memcpy(out + n, ins, l);
            n += l;
            p++;
        } else {
            assert_true(n + 1 < cap);
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return out;
}

static void test_table(void **state)
{
    const struct fx *f = *state;
    size_t failures = 0;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char *hdr = expand(f, table[i].hdr);
        char *tok = build(f, hdr, table[i].pl, table[i].who, table[i].suffix);
        enum broker_err e = run(f, tok, strlen(tok));
        if (e != table[i].want) {
            print_error("hostile %zu (%s): got %s, want %s\n", i, table[i].name, broker_strerror(e),
                        broker_strerror(table[i].want));
            failures++;
        }
        free(tok);
        free(hdr);
    }
    assert_int_equal(failures, 0);
}

static void test_segment_counts(void **state)
{
    const struct fx *f = *state;
    char *hdr = expand(f, "{\"alg\":\"RS256\",\"kid\":\"%K\"}");
    char *tok = build(f, hdr, GOOD_PL, ISSUER, "");
    char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    assert_int_equal(run(f, tok, strlen(tok)), BROKER_OK);
    /* one and two segments: cut before the dots */
    assert_int_equal(run(f, tok, (size_t)(d1 - tok)), BROKER_ERR_TOKEN_MALFORMED);
    assert_int_equal(run(f, tok, (size_t)(d2 - tok)), BROKER_ERR_TOKEN_MALFORMED);
    /* header and signature only, payload dropped */
    size_t hl = (size_t)(d1 - tok) + 1;
    char *two = malloc(strlen(tok) + 1);
    memcpy(two, tok, hl);
    memcpy(two + hl, d2, strlen(d2) + 1);
    assert_int_equal(run(f, two, strlen(two)), BROKER_ERR_TOKEN_MALFORMED);
    free(two);
    free(tok);
    free(hdr);
}

static void test_oversize_and_depth(void **state)
{
    const struct fx *f = *state;
    char *hdr = expand(f, "{\"alg\":\"RS256\",\"kid\":\"%K\"}");
    char *pl = malloc(BROKER_MAX_TOKEN_LEN + 64);
    size_t n;
    /* a signed token over BROKER_MAX_TOKEN_LEN */
    n = (size_t)snprintf(pl, 64, "{\"exp\":1700000300,\"pad\":\"");
    memset(pl + n, 'x', BROKER_MAX_TOKEN_LEN * 3 / 4);
    snprintf(pl + n + BROKER_MAX_TOKEN_LEN * 3 / 4, 8, "\"}");
    char *tok = build(f, hdr, pl, ISSUER, "");
    assert_true(strlen(tok) > BROKER_MAX_TOKEN_LEN);
    assert_int_equal(run(f, tok, strlen(tok)), BROKER_ERR_TOKEN_TOO_LARGE);
    free(tok);
    /* a signed token nested 17 deep, and 1000 deep */
    for (int depth = BROKER_MAX_JSON_DEPTH; depth <= 1000; depth += 1000 - BROKER_MAX_JSON_DEPTH) {
        n = (size_t)snprintf(pl, 64, "{\"exp\":1700000300,\"x\":");
        memset(pl + n, '[', (size_t)depth);
        memset(pl + n + depth, ']', (size_t)depth);
        snprintf(pl + n + 2 * depth, 8, "}");
        tok = build(f, hdr, pl, ISSUER, "");
        assert_int_equal(run(f, tok, strlen(tok)), BROKER_ERR_TOKEN_MALFORMED);
        free(tok);
    }
    /* one level less is fine */
    n = (size_t)snprintf(pl, 64, "{\"exp\":1700000300,\"x\":");
    memset(pl + n, '[', BROKER_MAX_JSON_DEPTH - 1);
    memset(pl + n + BROKER_MAX_JSON_DEPTH - 1, ']', BROKER_MAX_JSON_DEPTH - 1);
    snprintf(pl + n + 2 * (BROKER_MAX_JSON_DEPTH - 1), 8, "}");
    tok = build(f, hdr, pl, ISSUER, "");
    assert_int_equal(run(f, tok, strlen(tok)), BROKER_OK);
    free(tok);
    /* an oversized protected header */
    char *big = malloc(BROKER_MAX_JOSE_HEADER_LEN + 64);
    n = (size_t)snprintf(big, 64, "{\"alg\":\"RS256\",\"x\":\"");
    memset(big + n, 'h', BROKER_MAX_JOSE_HEADER_LEN);
    snprintf(big + n + BROKER_MAX_JOSE_HEADER_LEN, 8, "\"}");
    tok = build(f, big, GOOD_PL, ISSUER, "");
    assert_int_equal(run(f, tok, strlen(tok)), BROKER_ERR_TOKEN_TOO_LARGE);
    free(tok);
    free(big);
    free(pl);
    free(hdr);
}

static void test_alg_header_swap(void **state)
{
    /* re-labelling a valid RS256 signature as RS384/RS512 changes the signing input: refused */
    const struct fx *f = *state;
    char *hdr = expand(f, "{\"alg\":\"RS512\",\"kid\":\"%K\"}");
    char *tok = build(f, hdr, GOOD_PL, ISSUER, "");
    struct jwt t;
    assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
    assert_int_equal(verify_jwt(&t, f->keys, JWT_ALG_BIT(JWT_ALG_RS512) | MASK, T0, LEEWAY),
                     BROKER_ERR_BAD_SIGNATURE);
    jwt_release(&t);
    free(tok);
    free(hdr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_segment_counts),
        cmocka_unit_test(test_oversize_and_depth),
        cmocka_unit_test(test_alg_header_swap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
