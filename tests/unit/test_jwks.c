/* JWKS and PEM key loading: real key sets, and each rejection and skip rule. */
#include <stdbool.h>
#include "test_util.h"
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "jwks.h"
#include "b64.h"

/* RFC 7515 A.3 P-256 key and RFC 7515 A.2 RSA-2048 key, as JWK members. */
#define EC_X "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define EC_Y "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define RSA_N                                                                                                        \
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-" \
    "pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-"                 \
    "UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-"                                    \
    "DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
#define ED_X "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"

static enum broker_err parse_s(const char *s, unsigned flags, struct jwks **out)
{
    return jwks_parse((const uint8_t *)s, strlen(s), flags, out);
}

static void expect_doc(const char *s, unsigned flags, enum broker_err want)
{
    struct jwks *set = (struct jwks *)1;
    enum broker_err e = parse_s(s, flags, &set);
    if (e != want)
        fail_msg("jwks %.120s: got %s, want %s", s, broker_strerror(e), broker_strerror(want));
    if (e == BROKER_OK)
        jwks_free(set);
    else
        assert_null(set);
}

/* Parse s and return the number of usable keys (0 on error). */
static size_t count_keys(const char *s, unsigned flags)
{
    struct jwks *set = NULL;
    size_t n;
    if (parse_s(s, flags, &set) != BROKER_OK)
        return 0;
    n = set->n;
    jwks_free(set);
    return n;
}

static void test_fixture_sets(void **state)
{
    static const struct { const char *file; size_t n; enum jwk_type type; const char *kid0; unsigned flags; } v[] = {
        {"github-actions/jwks_2022_token.actions.githubusercontent.com.json", 2, JWK_RSA,
         "78167F727DEC5D801DD1C8784C704A1C880EC0E1", 0},
        {"github-actions/jwks_2024-25_token.actions.githubusercontent.com.json", 4, JWK_RSA,
         "cc413527-173f-5a05-976e-9c52b1d7b431", 0},
        {"kubernetes/minikube_v1.18.10_sa.jwks.derived.json", 1, JWK_RSA, "pJcxkJ4q0O1tOt0Z37VB6-x6Mw8xFZSxM9roPtMQq0A", 0},
        {"jose-rfc-vectors/rfc7515_A2_RS256.pub.jwk.json", 1, JWK_RSA, "", 0},
        {"jose-rfc-vectors/rfc7515_A3_ES256.pub.jwk.json", 1, JWK_EC_P256, "", 0},
        {"jose-rfc-vectors/rfc7520_4.1_RS256.pub.jwk.json", 1, JWK_RSA, "bilbo.baggins@hobbiton.example", 0},
        {"jose-rfc-vectors/rfc7520_4.3_ES512.pub.jwk.json", 1, JWK_EC_P521, "bilbo.baggins@hobbiton.example", 0},
        {"jose-rfc-vectors/rfc8037_A.4_Ed25519.pub.jwk.json", 1, JWK_OKP_ED25519, "", 0},
        {"jose-rfc-vectors/rfc7515_A1_HS256.jwk.json", 1, JWK_OCT, "", JWKS_ALLOW_SYMMETRIC},
        {"jose-rfc-vectors/rfc7520_4.4_HS256.jwk.json", 1, JWK_OCT, "018c0ae5-4d9b-471b-bfd6-eef314bc7037",
         JWKS_ALLOW_SYMMETRIC},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len;
        char *s = test_read_file(v[i].file, 1, &len);
        struct jwks *set = NULL;
        assert_non_null(s);
        assert_int_equal(jwks_parse((uint8_t *)s, len, v[i].flags, &set), BROKER_OK);
        assert_int_equal(set->n, v[i].n);
        assert_int_equal(set->keys[0].type, v[i].type);
        assert_string_equal(set->keys[0].kid, v[i].kid0);
        if (v[i].type == JWK_OCT) {
            assert_null(set->keys[0].pkey);
            assert_non_null(set->keys[0].secret);
            assert_true(set->keys[0].secret_len >= 32);
        } else {
            assert_non_null(set->keys[0].pkey);
        }
        jwks_free(set);
        free(s);
    }
}

static void test_alg_recorded(void **state)
{
    char *s = test_read_file("github-actions/jwks_2022_token.actions.githubusercontent.com.json", 1, NULL);
    struct jwks *set;
    (void)state;
    assert_int_equal(parse_s(s, 0, &set), BROKER_OK);
    assert_int_equal(set->keys[0].alg, JWT_ALG_RS256);
    assert_int_equal(set->keys[1].alg, JWT_ALG_RS256);
    assert_string_equal(set->keys[1].kid, "52F197C481DE70112C441B4A9B37B53C7FCF0DB5");
    jwks_free(set);
    free(s);
    assert_int_equal(parse_s("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" EC_X "\",\"y\":\"" EC_Y "\"}", 0, &set),
                     BROKER_OK);
    assert_int_equal(set->keys[0].alg, JWT_ALG_INVALID);
    jwks_free(set);
}

static void test_symmetric_needs_flag(void **state)
{
    char *s = test_read_file("jose-rfc-vectors/rfc7515_A1_HS256.jwk.json", 1, NULL);
    (void)state;
    expect_doc(s, 0, BROKER_ERR_INVALID_DOCUMENT); /* skipped, so no usable key */
    expect_doc(s, JWKS_ALLOW_SYMMETRIC, BROKER_OK);
    free(s);
    /* mixed: the oct key is skipped, the EC key kept */
    assert_int_equal(count_keys("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" EC_X
                                "\",\"y\":\"" EC_Y "\"}]}",
                                0),
                     1);
    expect_doc("{\"kty\":\"oct\",\"k\":\"\"}", JWKS_ALLOW_SYMMETRIC, BROKER_ERR_INVALID_DOCUMENT);
    expect_doc("{\"kty\":\"oct\",\"k\":\"AA==\"}", JWKS_ALLOW_SYMMETRIC, BROKER_ERR_INVALID_DOCUMENT);
}

#define EC_KEY(extra) "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" EC_X "\",\"y\":\"" EC_Y "\"" extra "}"
#define EC_OTHER "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"" ED_X "\"}"

static void test_skip_rules(void **state)
{
    (void)state;
    /* each skipped key next to a good one: the set keeps exactly the good one */
    static const char *const skipped[] = {
        EC_KEY(",\"use\":\"enc\""),
        EC_KEY(",\"use\":5"),
        EC_KEY(",\"key_ops\":[\"encrypt\"]"),
        EC_KEY(",\"key_ops\":\"verify\""),
        EC_KEY(",\"alg\":\"ECDH-ES\""),
        EC_KEY(",\"alg\":\"none\""),
        EC_KEY(",\"alg\":\"RS256\""), /* alg contradicts the key type */
        EC_KEY(",\"alg\":\"ES384\""),
        EC_KEY(",\"alg\":7"),
        "{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"" EC_X "\",\"y\":\"" EC_Y "\"}",
        "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"" ED_X "\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"" ED_X "\"}",
        "{\"kty\":\"foo\"}",
        "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
    };
    char doc[1024];
    for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s]}", skipped[i], EC_OTHER);
        if (count_keys(doc, 0) != 1)
            fail_msg("not skipped: %s", skipped[i]);
        expect_doc(skipped[i], 0, BROKER_ERR_INVALID_DOCUMENT); /* alone: nothing usable */
    }
    /* kept */
    assert_int_equal(count_keys(EC_KEY(",\"use\":\"sig\",\"key_ops\":[\"verify\"],\"alg\":\"ES256\""), 0), 1);
    assert_int_equal(count_keys(EC_KEY(",\"x5c\":[\"junk\"],\"x5t\":1,\"ext\":true"), 0), 1);
}

static void test_document_errors(void **state)
{
    static const char *const bad[] = {
        "", "[]", "null", "\"keys\"", "{\"keys\":{}}", "{\"keys\":[]}", "{\"keys\":null}", "{}",
        "{\"keys\":[1]}", "{\"keys\":[[]]}", "{\"keys\":[" EC_OTHER ",\"x\"]}",
        "{\"keys\":[" EC_OTHER "]", "{\"keys\":[" EC_OTHER "],\"keys\":[]}", /* truncated, duplicate member */
        "{\"kty\":1}", "{\"kid\":\"a\"}",                                   /* kty missing or not a string */
        "{\"kty\":\"EC\",\"x\":\"" EC_X "\",\"y\":\"" EC_Y "\"}",             /* crv missing */
        "{\"kty\":\"OKP\",\"x\":\"" ED_X "\"}",
        EC_KEY(",\"kid\":1"),
        EC_KEY(",\"x\":\"dup\""),
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_doc(bad[i], JWKS_ALLOW_SYMMETRIC, BROKER_ERR_INVALID_DOCUMENT);
    struct jwks *set = (struct jwks *)1;
    assert_int_equal(jwks_parse(NULL, 0, 0, &set), BROKER_ERR_INVALID_DOCUMENT);
    assert_null(set);
}

static void test_kid_rules(void **state)
{
    char kid[BROKER_MAX_KID_LEN + 2], doc[1024];
    struct jwks *set;
    (void)state;
    /* duplicate non-empty kid: ambiguous */
    expect_doc("{\"keys\":[" EC_KEY(",\"kid\":\"a\"") "," EC_KEY(",\"kid\":\"a\"") "]}", 0,
               BROKER_ERR_INVALID_DOCUMENT);
    expect_doc("{\"keys\":[" EC_KEY(",\"kid\":\"a\"") ",{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"a\",\"x\":\"" ED_X
               "\"}]}",
               0, BROKER_ERR_INVALID_DOCUMENT);
    /* a duplicate that is skipped anyway does not count; two kid-less keys are fine */
    assert_int_equal(count_keys("{\"keys\":[" EC_KEY(",\"kid\":\"a\"") "," EC_KEY(",\"kid\":\"a\",\"use\":\"enc\"") "]}", 0), 1);
    assert_int_equal(count_keys("{\"keys\":[" EC_KEY("") "," EC_OTHER "]}", 0), 2);
    assert_int_equal(count_keys("{\"keys\":[" EC_KEY(",\"kid\":\"a\"") "," EC_KEY(",\"kid\":\"A\"") "]}", 0), 2);
    /* kid length */
    memset(kid, 'k', sizeof(kid));
    kid[BROKER_MAX_KID_LEN] = '\0';
    snprintf(doc, sizeof(doc), EC_KEY(",\"kid\":\"%s\""), kid);
    assert_int_equal(parse_s(doc, 0, &set), BROKER_OK);
    assert_int_equal(strlen(set->keys[0].kid), BROKER_MAX_KID_LEN);
    jwks_free(set);
    kid[BROKER_MAX_KID_LEN] = 'k';
    kid[BROKER_MAX_KID_LEN + 1] = '\0';
    snprintf(doc, sizeof(doc), EC_KEY(",\"kid\":\"%s\""), kid);
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
}

static void test_limits(void **state)
{
    size_t cap = BROKER_MAX_JWKS_BYTES + 4096, n;
    char *doc = malloc(cap);
    (void)state;
    assert_non_null(doc);
    /* BROKER_MAX_JWKS_KEYS keys parse; one more is refused */
    for (int total = BROKER_MAX_JWKS_KEYS; total <= BROKER_MAX_JWKS_KEYS + 1; total++) {
        n = (size_t)snprintf(doc, cap, "{\"keys\":[");
        for (int i = 0; i < total; i++)
            n += (size_t)snprintf(doc + n, cap - n, "%s{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"k%d\",\"x\":\"%s\"}",
                                  i ? "," : "", i, ED_X);
        snprintf(doc + n, cap - n, "]}");
        if (total == BROKER_MAX_JWKS_KEYS)
            assert_int_equal(count_keys(doc, 0), BROKER_MAX_JWKS_KEYS);
        else
            expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    }
    /* size: padding whitespace up to the limit is fine, one byte more is not */
    n = (size_t)snprintf(doc, cap, "%s", EC_OTHER);
    memset(doc + n, ' ', BROKER_MAX_JWKS_BYTES - n);
    doc[BROKER_MAX_JWKS_BYTES] = ' ';
    struct jwks *set = NULL;
    assert_int_equal(jwks_parse((uint8_t *)doc, BROKER_MAX_JWKS_BYTES + 1, 0, &set), BROKER_ERR_INVALID_DOCUMENT);
    assert_null(set);
    assert_int_equal(jwks_parse((uint8_t *)doc, BROKER_MAX_JWKS_BYTES, 0, &set), BROKER_OK);
    jwks_free(set);
    free(doc);
}

static size_t bn_b64(const BIGNUM *bn, char *out)
{
    uint8_t buf[1100];
    int n = BN_bn2bin(bn, buf);
    size_t w = b64url_encode(buf, (size_t)n, out);
    out[w] = '\0';
    return w;
}

/* JWK text for a generated RSA key of the given size. */
static char *rsa_jwk(int bits)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    BIGNUM *n = NULL, *e = NULL;
    char nb[1500], eb[16], *doc = malloc(2048);
    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    bn_b64(n, nb);
    bn_b64(e, eb);
    snprintf(doc, 2048, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", nb, eb);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(pk);
    return doc;
}

static void test_rsa_rules(void **state)
{
    char doc[4096], big[1400];
    uint8_t nbytes[1025];
    (void)state;
    char *small = rsa_jwk(1024), *almost = rsa_jwk(2047);
    expect_doc(small, 0, BROKER_ERR_INVALID_DOCUMENT);
    expect_doc(almost, 0, BROKER_ERR_INVALID_DOCUMENT);
    /* a small key is refused even next to good ones: fail closed, not "skip" */
    snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s]}", EC_OTHER, small);
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    free(small);
    free(almost);
    /* over BROKER_MAX_RSA_BITS: 8193 bits, odd */
    memset(nbytes, 0xab, sizeof(nbytes));
    nbytes[0] = 0x01;
    big[b64url_encode(nbytes, sizeof(nbytes), big)] = '\0';
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}", big);
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    /* exponent rules */
    static const char *const bad_e[] = {"AQAA", "AQ", "Ag", "AA", "", "AQAB=", "AQABAAAB", "+QAB"};
    for (size_t i = 0; i < sizeof(bad_e) / sizeof(bad_e[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", RSA_N, bad_e[i]);
        expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    }
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"Aw\"}", RSA_N); /* e = 3 is odd and small */
    expect_doc(doc, 0, BROKER_OK);
    /* modulus encoding */
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":\"%s=\",\"e\":\"AQAB\"}", RSA_N);
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":\"%sAAA\",\"e\":\"AQAB\"}", RSA_N); /* len % 4 == 1 */
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":1,\"e\":\"AQAB\"}");
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"e\":\"AQAB\"}");
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    /* even modulus */
    snprintf(doc, sizeof(doc), "{\"kty\":\"RSA\",\"n\":\"%.*sA\",\"e\":\"AQAB\"}", (int)strlen(RSA_N) - 1, RSA_N);
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
}

static void test_ec_rules(void **state)
{
    char doc[1024], y[64];
    (void)state;
    /* point not on the curve: flip the last coordinate bits of y */
    snprintf(y, sizeof(y), "%s", EC_Y);
    y[strlen(y) - 2] = y[strlen(y) - 2] == 'A' ? 'B' : 'A';
    snprintf(doc, sizeof(doc), "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", EC_X, y);
    expect_doc(doc, 0, BROKER_ERR_INVALID_DOCUMENT);
    /* right point, wrong curve */
    expect_doc("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"" EC_X "\",\"y\":\"" EC_Y "\"}", 0, BROKER_ERR_INVALID_DOCUMENT);
    /* coordinates must be exactly 32 bytes: no leading-zero stripping, no extra byte */
    expect_doc("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA" EC_X "\",\"y\":\"" EC_Y "\"}", 0,
               BROKER_ERR_INVALID_DOCUMENT);
    expect_doc("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" EC_X "\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a\"}",
               0, BROKER_ERR_INVALID_DOCUMENT);
    expect_doc("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" EC_X "\"}", 0, BROKER_ERR_INVALID_DOCUMENT);
    /* the identity-ish all-zero point */
    expect_doc("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
               "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
               0, BROKER_ERR_INVALID_DOCUMENT);
    /* Ed25519: exactly 32 bytes */
    expect_doc("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA" ED_X "\"}", 0, BROKER_ERR_INVALID_DOCUMENT);
    expect_doc("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHUQ\"}", 0,
               BROKER_ERR_INVALID_DOCUMENT);
    expect_doc("{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}", 0, BROKER_ERR_INVALID_DOCUMENT);
}

static void test_pem(void **state)
{
    size_t len;
    char *pem = test_read_file("kubernetes/minikube_v1.18.10_sa.pub.pem", 1, &len);
    char *cert = test_read_file("kubernetes/minikube_2017_apiserver_cert.pem", 1, NULL);
    char *jwk = test_read_file("kubernetes/minikube_v1.18.10_sa.jwks.derived.json", 1, NULL);
    struct jwks *a = NULL, *b = NULL, *c = NULL;
    (void)state;
    assert_int_equal(jwks_from_pem((uint8_t *)pem, len, &a), BROKER_OK);
    assert_int_equal(a->n, 1);
    assert_int_equal(a->keys[0].type, JWK_RSA);
    assert_int_equal(a->keys[0].alg, JWT_ALG_INVALID);
    /* kube-apiserver's kid: base64url(SHA-256(DER SPKI)) */
    assert_string_equal(a->keys[0].kid, "pJcxkJ4q0O1tOt0Z37VB6-x6Mw8xFZSxM9roPtMQq0A");
    assert_int_equal(parse_s(jwk, 0, &b), BROKER_OK);
    assert_int_equal(EVP_PKEY_eq(a->keys[0].pkey, b->keys[0].pkey), 1);
    assert_int_equal(jwks_from_pem((uint8_t *)cert, strlen(cert), &c), BROKER_OK);
    assert_int_equal(c->keys[0].type, JWK_RSA);
    assert_string_equal(c->keys[0].kid, "Oj-qlrJyaZRVvBGNZobjGpERwPTH3fIvalhjWH_GtrA");
    jwks_free(a);
    jwks_free(b);
    jwks_free(c);

    /* not PEM, truncated PEM, a JWKS, empty */
    struct jwks *x = (struct jwks *)1;
    assert_int_equal(jwks_from_pem((uint8_t *)jwk, strlen(jwk), &x), BROKER_ERR_INVALID_DOCUMENT);
    assert_null(x);
    assert_int_equal(jwks_from_pem((uint8_t *)pem, len / 2, &x), BROKER_ERR_INVALID_DOCUMENT);
    assert_int_equal(jwks_from_pem((uint8_t *)"", 0, &x), BROKER_ERR_INVALID_DOCUMENT);
    /* an "encrypted" public key block must not prompt for a passphrase, just fail */
    static const char enc_pem[] = "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n"
                                  "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n"
                                  "-----END PUBLIC KEY-----\n";
    assert_int_equal(jwks_from_pem((const uint8_t *)enc_pem, strlen(enc_pem), &x), BROKER_ERR_INVALID_DOCUMENT);
    free(pem);
    free(cert);
    free(jwk);
}

static void test_pem_small_rsa(void **state)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;
    struct jwks *x = NULL;
    (void)state;
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pk), 1);
    n = BIO_get_mem_data(bio, &data);
    assert_int_equal(jwks_from_pem((uint8_t *)data, (size_t)n, &x), BROKER_ERR_INVALID_DOCUMENT);
    BIO_free(bio);
    EVP_PKEY_free(pk);
    /* an EC key works through PEM too */
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pk), 1);
    n = BIO_get_mem_data(bio, &data);
    assert_int_equal(jwks_from_pem((uint8_t *)data, (size_t)n, &x), BROKER_OK);
    assert_int_equal(x->keys[0].type, JWK_EC_P384);
    assert_int_equal(strlen(x->keys[0].kid), 43);
    jwks_free(x);
    BIO_free(bio);
    EVP_PKEY_free(pk);
}

static void test_find(void **state)
{
    struct jwks *set;
    (void)state;
    assert_int_equal(parse_s("{\"keys\":[" EC_KEY(",\"kid\":\"ec\"") ",{\"kty\":\"RSA\",\"kid\":\"rsa\",\"n\":\"" RSA_N
                             "\",\"e\":\"AQAB\",\"alg\":\"RS256\"}," EC_OTHER "]}",
                             0, &set),
                     BROKER_OK);
    assert_int_equal(set->n, 3);
    assert_ptr_equal(jwks_find(set, "ec", JWT_ALG_ES256), &set->keys[0]);
    assert_ptr_equal(jwks_find(set, "rsa", JWT_ALG_RS256), &set->keys[1]);
    /* by kid the key is returned even if it does not fit: verify refuses it, by reason */
    assert_ptr_equal(jwks_find(set, "rsa", JWT_ALG_ES256), &set->keys[1]);
    assert_null(jwks_find(set, "RSA", JWT_ALG_RS256));
    assert_null(jwks_find(set, "rs", JWT_ALG_RS256));
    assert_null(jwks_find(set, "nope", JWT_ALG_RS256));
    /* no kid: the single key fitting alg */
    assert_ptr_equal(jwks_find(set, NULL, JWT_ALG_RS256), &set->keys[1]);
    assert_ptr_equal(jwks_find(set, "", JWT_ALG_RS256), &set->keys[1]);
    assert_null(jwks_find(set, NULL, JWT_ALG_PS256)); /* the RSA key is pinned to RS256 */
    assert_ptr_equal(jwks_find(set, NULL, JWT_ALG_ES256), &set->keys[0]);
    assert_ptr_equal(jwks_find(set, NULL, JWT_ALG_EDDSA), &set->keys[2]);
    assert_null(jwks_find(set, NULL, JWT_ALG_ES384));
    assert_null(jwks_find(set, NULL, JWT_ALG_HS256));
    assert_null(jwks_find(NULL, "ec", JWT_ALG_ES256));
    jwks_free(set);
    /* two candidates and no kid: no guess */
    assert_int_equal(parse_s("{\"keys\":[" EC_KEY(",\"kid\":\"a\"") "," EC_KEY(",\"kid\":\"b\"") "]}", 0, &set),
                     BROKER_OK);
    assert_null(jwks_find(set, NULL, JWT_ALG_ES256));
    assert_non_null(jwks_find(set, "b", JWT_ALG_ES256));
    jwks_free(set);
}

static void test_fits(void **state)
{
    struct jwk k = {0};
    (void)state;
    static const struct { enum jwk_type type; uint32_t ok; } v[] = {
        {JWK_RSA, JWT_ALG_BIT(JWT_ALG_RS256) | JWT_ALG_BIT(JWT_ALG_RS384) | JWT_ALG_BIT(JWT_ALG_RS512) |
                      JWT_ALG_BIT(JWT_ALG_PS256) | JWT_ALG_BIT(JWT_ALG_PS384) | JWT_ALG_BIT(JWT_ALG_PS512)},
        {JWK_EC_P256, JWT_ALG_BIT(JWT_ALG_ES256)},
        {JWK_EC_P384, JWT_ALG_BIT(JWT_ALG_ES384)},
        {JWK_EC_P521, JWT_ALG_BIT(JWT_ALG_ES512)},
        {JWK_OKP_ED25519, JWT_ALG_BIT(JWT_ALG_EDDSA)},
        {JWK_OCT, JWT_ALG_MASK_HMAC},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        k.type = v[i].type;
        for (int a = 0; a < JWT_ALG__COUNT; a++) {
            k.alg = JWT_ALG_INVALID;
            assert_int_equal(jwks_key_fits_alg(&k, (enum jwt_alg)a), (v[i].ok >> a) & 1);
            k.alg = (enum jwt_alg)a; /* pinned to itself: same answer; pinned elsewhere: never */
            assert_int_equal(jwks_key_fits_alg(&k, (enum jwt_alg)a), (v[i].ok >> a) & 1);
            k.alg = a == JWT_ALG_RS256 ? JWT_ALG_PS256 : JWT_ALG_RS256;
            assert_false(jwks_key_fits_alg(&k, (enum jwt_alg)a));
        }
    }
    assert_false(jwks_key_fits_alg(NULL, JWT_ALG_RS256));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_sets),
        cmocka_unit_test(test_alg_recorded),
        cmocka_unit_test(test_symmetric_needs_flag),
        cmocka_unit_test(test_skip_rules),
        cmocka_unit_test(test_document_errors),
        cmocka_unit_test(test_kid_rules),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_rsa_rules),
        cmocka_unit_test(test_ec_rules),
        cmocka_unit_test(test_pem),
        cmocka_unit_test(test_pem_small_rsa),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
