/* Compact JWS parsing: real tokens, and every way a token can be malformed. */
#include <stdbool.h>
#include "test_util.h"
#include "jwt.h"
#include "b64.h"

static char tokbuf[4 * BROKER_MAX_TOKEN_LEN];

static size_t enc(const char *s, size_t len, char *out)
{
    size_t n = b64url_encode((const uint8_t *)s, len, out);
    out[n] = '\0';
    return n;
}

/* b64url(hdr) "." b64url(payload) "." sig_b64 in a static buffer. */
static const char *tok3(const char *hdr, const char *payload, const char *sig_b64)
{
    size_t n = enc(hdr, strlen(hdr), tokbuf);
    tokbuf[n++] = '.';
    n += enc(payload, strlen(payload), tokbuf + n);
    tokbuf[n++] = '.';
    memcpy(tokbuf + n, sig_b64, strlen(sig_b64) + 1);
    return tokbuf;
}

static const char *tok(const char *hdr, const char *payload)
{
    return tok3(hdr, payload, "c2lnbmF0dXJl"); /* "signature" */
}

static enum broker_err parse(const char *s, struct jwt *t)
{
    return jwt_parse((const uint8_t *)s, strlen(s), t);
}

static void assert_empty(const struct jwt *t)
{
    assert_null(t->header);
    assert_null(t->claims);
    assert_null(t->kid);
    assert_null(t->iss);
    assert_null(t->signing_input);
    assert_int_equal(t->sig_len, 0);
    assert_int_equal(t->alg, JWT_ALG_INVALID);
}

static void expect(const char *s, enum broker_err want)
{
    struct jwt t;
    enum broker_err e = parse(s, &t);
    if (e != want)
        fail_msg("token %.80s: got %s, want %s", s, broker_strerror(e), broker_strerror(want));
    if (e == BROKER_OK)
        jwt_release(&t);
    else
        assert_empty(&t);
}

static const char HDR[] = "{\"alg\":\"RS256\",\"kid\":\"k1\"}";
static const char PL[] = "{\"iss\":\"https://issuer.example\",\"sub\":\"s\",\"exp\":2000000000}";

static void test_real_tokens(void **state)
{
    static const struct { const char *file; enum jwt_alg alg; const char *kid, *iss; } v[] = {
        {"github-actions/gha_2022-08-05_varunsh-coder_actions-playground.jwt", JWT_ALG_RS256,
         "78167F727DEC5D801DD1C8784C704A1C880EC0E1", "https://token.actions.githubusercontent.com"},
        {"github-actions/gha_2022-10-20_qoomon_github-actions-access-manager.jwt", JWT_ALG_RS256,
         "78167F727DEC5D801DD1C8784C704A1C880EC0E1", "https://token.actions.githubusercontent.com"},
        {"github-actions/gha_2023-01-30_trustification_source-distributed.jwt", JWT_ALG_RS256,
         "78167F727DEC5D801DD1C8784C704A1C880EC0E1", "https://token.actions.githubusercontent.com"},
        {"github-actions/gha_2025-03-29_rgl_github-actions-validate-jwt.jwt", JWT_ALG_RS256,
         "38826b17-6a30-5f9b-b169-8beb8202f723", "https://token.actions.githubusercontent.com"},
        {"kubernetes/k8s_minikube_projected_2020-10-30_exp2030.jwt", JWT_ALG_RS256,
         "pJcxkJ4q0O1tOt0Z37VB6-x6Mw8xFZSxM9roPtMQq0A", "kubernetes/serviceaccount"},
        {"kubernetes/k8s_minikube_projected_2020-10-30_expired.jwt", JWT_ALG_RS256,
         "pJcxkJ4q0O1tOt0Z37VB6-x6Mw8xFZSxM9roPtMQq0A", "kubernetes/serviceaccount"},
        {"kubernetes/k8s_minikube_legacy_secret_token_2017.jwt", JWT_ALG_RS256, NULL, "kubernetes/serviceaccount"},
        {"jose-rfc-vectors/rfc7515_A1_HS256.jws", JWT_ALG_HS256, NULL, "joe"},
        {"jose-rfc-vectors/rfc7515_A2_RS256.jws", JWT_ALG_RS256, NULL, "joe"},
        {"jose-rfc-vectors/rfc7515_A3_ES256.jws", JWT_ALG_ES256, NULL, "joe"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len;
        char *s = test_read_file(v[i].file, 1, &len);
        struct jwt t;
        assert_non_null(s);
        assert_int_equal(jwt_parse((uint8_t *)s, len, &t), BROKER_OK);
        assert_int_equal(t.alg, v[i].alg);
        if (v[i].kid)
            assert_string_equal(t.kid, v[i].kid);
        else
            assert_null(t.kid);
        assert_string_equal(t.iss, v[i].iss);
        assert_true(json_is_object(t.header));
        assert_true(json_is_object(t.claims));
        assert_ptr_equal(t.signing_input, s);
        assert_int_equal(t.signing_input_len, (size_t)(strrchr(s, '.') - s));
        assert_int_equal(t.sig_len, v[i].alg == JWT_ALG_ES256 ? 64 : v[i].alg == JWT_ALG_HS256 ? 32 : 256);
        jwt_release(&t);
        free(s);
    }
}

static void test_rfc_text_payloads_are_not_claims(void **state)
{
    /* RFC 7520 §4 and RFC 8037 payloads are plain text: a JWT parser must refuse them. */
    static const char *const files[] = {
        "jose-rfc-vectors/rfc7520_4.1_RS256.jws", "jose-rfc-vectors/rfc7520_4.2_PS384.jws",
        "jose-rfc-vectors/rfc7520_4.3_ES512.jws", "jose-rfc-vectors/rfc7520_4.4_HS256.jws",
        "jose-rfc-vectors/rfc8037_A.4_Ed25519.jws",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *s = test_read_file(files[i], 1, NULL);
        assert_non_null(s);
        expect(s, BROKER_ERR_TOKEN_MALFORMED);
        free(s);
    }
}

static void test_good_synthetic(void **state)
{
    struct jwt t;
    const char *s = tok(HDR, PL);
    (void)state;
    assert_int_equal(parse(s, &t), BROKER_OK);
    assert_int_equal(t.alg, JWT_ALG_RS256);
    assert_string_equal(t.kid, "k1");
    assert_string_equal(t.iss, "https://issuer.example");
    assert_int_equal(t.sig_len, 9);
    assert_memory_equal(t.sig, "signature", 9);
    jwt_release(&t);
    assert_empty(&t);
}

static void test_segment_counts(void **state)
{
    char good[512], bad[600];
    (void)state;
    snprintf(good, sizeof(good), "%s", tok(HDR, PL));
    char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    /* 0 dots */
    expect("eyJhbGciOiJSUzI1NiJ9", BROKER_ERR_TOKEN_MALFORMED);
    /* 1 dot: header.payload */
    snprintf(bad, sizeof(bad), "%.*s", (int)(d2 - good), good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    /* 3 and 4 dots: extra segments (JWE has 5 segments) */
    snprintf(bad, sizeof(bad), "%s.c2ln", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%s.c2ln.c2ln", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%s.", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), ".%s", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    /* empty segments */
    expect("..", BROKER_ERR_TOKEN_MALFORMED);
    expect("", BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%s", d1); /* ".payload.sig" */
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%.*s.%s", (int)(d1 - good), good, d2); /* "header..sig" */
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%.*s", (int)(d2 + 1 - good), good); /* "header.payload." */
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
}

static void test_encoding_strictness(void **state)
{
    char good[512], bad[600];
    (void)state;
    snprintf(good, sizeof(good), "%s", tok3(HDR, PL, "c2lnbmF0dXJlcw")); /* "signatures", needs padding */
    expect(good, BROKER_OK);
    char *d1 = strchr(good, '.');
    snprintf(bad, sizeof(bad), "%s==", good); /* padded signature */
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%.*s=%s", (int)(d1 - good), good, d1); /* padded header */
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    expect(tok3(HDR, PL, "c2ln+mF0dXJl"), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok3(HDR, PL, "c2ln/mF0dXJl"), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok3(HDR, PL, "c2lnbmF0dXJlcx"), BROKER_ERR_TOKEN_MALFORMED); /* non-zero trailing bits */
    expect(tok3(HDR, PL, "c2lnb"), BROKER_ERR_TOKEN_MALFORMED);          /* len % 4 == 1 */
    snprintf(bad, sizeof(bad), " %s", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%s\n", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%s ", good);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    snprintf(bad, sizeof(bad), "%.*s .%s", (int)(d1 - good), good, d1 + 1);
    expect(bad, BROKER_ERR_TOKEN_MALFORMED);
    /* an embedded NUL is just another bad byte: the parser uses len, not strlen */
    struct jwt t;
    size_t n = strlen(good);
    memcpy(bad, good, n);
    bad[n - 2] = '\0';
    assert_int_equal(jwt_parse((uint8_t *)bad, n, &t), BROKER_ERR_TOKEN_MALFORMED);
    assert_empty(&t);
}

static void test_json_shape(void **state)
{
    (void)state;
    /* duplicate keys: last-one-wins would let {"alg":"RS256","alg":"none"} mean two things */
    expect(tok("{\"alg\":\"RS256\",\"alg\":\"none\"}", PL), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok("{\"alg\":\"RS256\",\"kid\":\"a\",\"kid\":\"b\"}", PL), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok(HDR, "{\"sub\":\"a\",\"sub\":\"b\"}"), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok(HDR, "{\"x\":{\"a\":1,\"a\":2}}"), BROKER_ERR_TOKEN_MALFORMED);
    /* non-object JSON */
    static const char *const nonobj[] = {"[]", "[{\"alg\":\"RS256\"}]", "\"RS256\"", "1", "null", "true", "",
                                         "{", "{\"alg\":\"RS256\"} x", "{\"alg\":\"RS256\"}{}"};
    for (size_t i = 0; i < sizeof(nonobj) / sizeof(nonobj[0]); i++) {
        expect(tok(nonobj[i], PL), BROKER_ERR_TOKEN_MALFORMED);
        expect(tok(HDR, nonobj[i]), BROKER_ERR_TOKEN_MALFORMED);
    }
    /* invalid UTF-8 and NUL escapes inside strings */
    expect(tok(HDR, "{\"sub\":\"\xff\"}"), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok(HDR, "{\"sub\":\"a\\u0000b\"}"), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok("{\"alg\":\"RS256\\u0000\"}", PL), BROKER_ERR_TOKEN_MALFORMED);
    /* iss of the wrong type */
    expect(tok(HDR, "{\"iss\":1}"), BROKER_ERR_BAD_CLAIM);
    expect(tok(HDR, "{\"iss\":[\"a\"]}"), BROKER_ERR_BAD_CLAIM);
    /* kid */
    expect(tok("{\"alg\":\"RS256\",\"kid\":7}", PL), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok("{\"alg\":\"RS256\",\"kid\":null}", PL), BROKER_ERR_TOKEN_MALFORMED);
    struct jwt t;
    assert_int_equal(parse(tok("{\"alg\":\"RS256\",\"kid\":\"\"}", PL), &t), BROKER_OK);
    assert_null(t.kid); /* "" names no key */
    jwt_release(&t);
}

static void test_kid_length(void **state)
{
    char hdr[600], kid[BROKER_MAX_KID_LEN + 2];
    struct jwt t;
    (void)state;
    memset(kid, 'k', sizeof(kid) - 1);
    kid[BROKER_MAX_KID_LEN] = '\0';
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid);
    assert_int_equal(parse(tok(hdr, PL), &t), BROKER_OK);
    assert_int_equal(strlen(t.kid), BROKER_MAX_KID_LEN);
    jwt_release(&t);
    kid[BROKER_MAX_KID_LEN] = 'k';
    kid[BROKER_MAX_KID_LEN + 1] = '\0';
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid);
    expect(tok(hdr, PL), BROKER_ERR_TOKEN_MALFORMED);
}

static char *nested(size_t depth, const char *open, const char *close)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *s = malloc(depth * (lo + lc) + 16), *w = s;
    assert_non_null(s);
    for (size_t i = 0; i < depth; i++, w += lo)
        memcpy(w, open, lo);
    *w++ = '1';
    for (size_t i = 0; i < depth; i++, w += lc)
        memcpy(w, close, lc);
    *w = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    char *inner, pl[8192];
    (void)state;
    /* the payload object itself is depth 1; the "x" value adds depth-1 more levels */
    inner = nested(BROKER_MAX_JSON_DEPTH - 1, "[", "]");
    snprintf(pl, sizeof(pl), "{\"x\":%s}", inner);
    expect(tok(HDR, pl), BROKER_OK);
    free(inner);
    inner = nested(BROKER_MAX_JSON_DEPTH, "[", "]");
    snprintf(pl, sizeof(pl), "{\"x\":%s}", inner);
    expect(tok(HDR, pl), BROKER_ERR_TOKEN_MALFORMED);
    free(inner);
    inner = nested(BROKER_MAX_JSON_DEPTH, "{\"a\":", "}");
    snprintf(pl, sizeof(pl), "{\"x\":%s}", inner);
    expect(tok(HDR, pl), BROKER_ERR_TOKEN_MALFORMED);
    free(inner);
    inner = nested(2000, "[", "]"); /* far past the limit, still well-formed */
    snprintf(pl, sizeof(pl), "{\"x\":%s}", inner);
    expect(tok(HDR, pl), BROKER_ERR_TOKEN_MALFORMED);
    free(inner);
    inner = nested(BROKER_MAX_JSON_DEPTH, "{\"a\":", "}");
    snprintf(pl, sizeof(pl), "{\"alg\":\"RS256\",\"x\":%s}", inner);
    expect(tok(pl, PL), BROKER_ERR_TOKEN_MALFORMED); /* header depth too */
    free(inner);
    /* brackets inside strings are text, not nesting */
    expect(tok(HDR, "{\"x\":\"[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{\",\"y\":\"\\\"[[[[[[[[[[[[[[[[[[[[\"}"),
           BROKER_OK);
}

static void test_json_load_strict(void **state)
{
    json_t *j;
    (void)state;
    j = jwt_json_load_strict((const uint8_t *)"[[1]]", 5, 2);
    assert_non_null(j);
    json_decref(j);
    assert_null(jwt_json_load_strict((const uint8_t *)"[[1]]", 5, 1));
    assert_null(jwt_json_load_strict((const uint8_t *)"{\"a\":1,\"a\":1}", 13, 4));
    j = jwt_json_load_strict((const uint8_t *)"{\"a\":\"]]]\\\\\"}", 13, 1); /* escaped backslash, then quote */
    assert_non_null(j);
    json_decref(j);
}

static void test_size_limits(void **state)
{
    size_t hdr_overhead, n;
    char *pl, *hdr;
    struct jwt t;
    (void)state;
    /* total length: exactly BROKER_MAX_TOKEN_LEN parses, one more byte does not */
    pl = malloc(BROKER_MAX_TOKEN_LEN);
    assert_non_null(pl);
    hdr_overhead = strlen(tok(HDR, "{\"p\":\"\"}"));
    /* each 3 payload bytes add 4 encoded characters */
    n = (BROKER_MAX_TOKEN_LEN - hdr_overhead) / 4 * 3;
    snprintf(pl, BROKER_MAX_TOKEN_LEN, "{\"p\":\"%0*d\"}", (int)n, 0);
    const char *s = tok(HDR, pl);
    assert_true(strlen(s) <= BROKER_MAX_TOKEN_LEN);
    assert_int_equal(parse(s, &t), BROKER_OK);
    jwt_release(&t);
    n = strlen(s);
    memset(tokbuf + n, 'A', BROKER_MAX_TOKEN_LEN + 1 - n); /* grow the signature */
    tokbuf[BROKER_MAX_TOKEN_LEN + 1] = '\0';
    expect(tokbuf, BROKER_ERR_TOKEN_TOO_LARGE);
    free(pl);

    /* decoded header: BROKER_MAX_JOSE_HEADER_LEN bytes parse, one more is too large */
    hdr = malloc(BROKER_MAX_JOSE_HEADER_LEN + 2);
    assert_non_null(hdr);
    n = BROKER_MAX_JOSE_HEADER_LEN - strlen("{\"alg\":\"RS256\",\"x\":\"\"}");
    snprintf(hdr, BROKER_MAX_JOSE_HEADER_LEN + 2, "{\"alg\":\"RS256\",\"x\":\"%0*d\"}", (int)n, 0);
    assert_int_equal(strlen(hdr), BROKER_MAX_JOSE_HEADER_LEN);
    expect(tok(hdr, PL), BROKER_OK);
    snprintf(hdr, BROKER_MAX_JOSE_HEADER_LEN + 2, "{\"alg\":\"RS256\",\"x\":\"%0*d\"}", (int)n + 1, 0);
    expect(tok(hdr, PL), BROKER_ERR_TOKEN_TOO_LARGE);
    free(hdr);

    /* signature: BROKER_MAX_SIG_LEN decoded bytes fit, more is malformed */
    char sig[BROKER_MAX_SIG_LEN + 8], sigb64[2 * BROKER_MAX_SIG_LEN];
    memset(sig, 0x5a, sizeof(sig));
    enc(sig, BROKER_MAX_SIG_LEN, sigb64);
    assert_int_equal(parse(tok3(HDR, PL, sigb64), &t), BROKER_OK);
    assert_int_equal(t.sig_len, BROKER_MAX_SIG_LEN);
    jwt_release(&t);
    enc(sig, BROKER_MAX_SIG_LEN + 1, sigb64);
    expect(tok3(HDR, PL, sigb64), BROKER_ERR_TOKEN_MALFORMED);
}

static void test_crit_and_alg(void **state)
{
    static const char *const none[] = {"none", "None", "NONE", "nOnE", "NoNe", "", "rs256", "RS256 ", " RS256",
                                       "RS-256", "HS1", "ES256K", "RSA-OAEP", "dir", "Ed25519", "eddsa"};
    char hdr[128];
    (void)state;
    expect(tok("{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}", PL), BROKER_ERR_TOKEN_CRIT);
    expect(tok("{\"alg\":\"RS256\",\"crit\":[]}", PL), BROKER_ERR_TOKEN_CRIT);
    expect(tok("{\"alg\":\"RS256\",\"crit\":null}", PL), BROKER_ERR_TOKEN_CRIT);
    expect(tok("{\"alg\":\"RS256\",\"b64\":false,\"crit\":[\"b64\"]}", PL), BROKER_ERR_TOKEN_CRIT);
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\"}", none[i]);
        expect(tok3(hdr, PL, ""), BROKER_ERR_ALG_NOT_ALLOWED); /* unsigned, as alg none sends it */
        expect(tok(hdr, PL), BROKER_ERR_ALG_NOT_ALLOWED);
    }
    expect(tok("{\"typ\":\"JWT\"}", PL), BROKER_ERR_ALG_NOT_ALLOWED);
    expect(tok("{\"alg\":256}", PL), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok("{\"alg\":null}", PL), BROKER_ERR_TOKEN_MALFORMED);
    expect(tok("{\"alg\":[\"RS256\"]}", PL), BROKER_ERR_TOKEN_MALFORMED);
    /* a good alg with an empty signature is malformed: every algorithm we accept signs */
    expect(tok3(HDR, PL, ""), BROKER_ERR_TOKEN_MALFORMED);
    /* key-carrying headers are accepted and ignored (verify uses registered keys only) */
    expect(tok("{\"alg\":\"RS256\",\"jku\":\"https://evil.example/jwks\",\"x5u\":\"https://evil.example/c\","
               "\"jwk\":{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"},\"x5c\":[\"MIIB\"]}",
               PL),
           BROKER_OK);
}

static void test_alg_names(void **state)
{
    (void)state;
    for (int a = JWT_ALG_INVALID + 1; a < JWT_ALG__COUNT; a++) {
        const char *n = jwt_alg_name((enum jwt_alg)a);
        assert_int_equal(jwt_alg_from_name(n, strlen(n)), a);
        assert_int_equal(jwt_alg_from_name(n, strlen(n) - 1), JWT_ALG_INVALID);
    }
    assert_int_equal(jwt_alg_from_name("EdDSA", 5), JWT_ALG_EDDSA);
    assert_int_equal(jwt_alg_from_name("EDDSA", 5), JWT_ALG_INVALID);
    assert_int_equal(jwt_alg_from_name("RS256x", 5), JWT_ALG_RS256); /* length is authoritative */
    assert_int_equal(jwt_alg_from_name("RS256\0", 6), JWT_ALG_INVALID);
    assert_int_equal(jwt_alg_from_name(NULL, 0), JWT_ALG_INVALID);
    assert_string_equal(jwt_alg_name(JWT_ALG_INVALID), "invalid");
    assert_string_equal(jwt_alg_name(JWT_ALG__COUNT), "invalid");
}

static void test_claim_time(void **state)
{
    json_t *c = json_loads("{\"i\":1700000000,\"z\":0,\"big\":9007199254740992,\"over\":9007199254740993,"
                           "\"neg\":-1,\"real\":1700000000.0,\"str\":\"1700000000\",\"nul\":null,\"b\":true}",
                           0, NULL);
    bool present;
    int64_t v;
    (void)state;
    assert_non_null(c);
    assert_int_equal(jwt_claim_time(c, "i", &present, &v), BROKER_OK);
    assert_true(present);
    assert_int_equal(v, 1700000000);
    assert_int_equal(jwt_claim_time(c, "z", &present, &v), BROKER_OK);
    assert_true(present);
    assert_int_equal(v, 0);
    assert_int_equal(jwt_claim_time(c, "big", &present, &v), BROKER_OK);
    assert_int_equal(v, 9007199254740992LL);
    assert_int_equal(jwt_claim_time(c, "absent", &present, &v), BROKER_OK);
    assert_false(present);
    static const char *const bad[] = {"over", "neg", "real", "str", "nul", "b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(jwt_claim_time(c, bad[i], &present, &v), BROKER_ERR_BAD_CLAIM);
        assert_false(present);
    }
    json_decref(c);
}

static void test_aud(void **state)
{
    json_t *s = json_loads("{\"aud\":\"https://a.example\"}", 0, NULL);
    json_t *a = json_loads("{\"aud\":[1,\"x\",\"https://a.example\"]}", 0, NULL);
    json_t *o = json_loads("{\"aud\":{\"https://a.example\":1}}", 0, NULL);
    json_t *n = json_loads("{\"sub\":\"x\"}", 0, NULL);
    (void)state;
    assert_true(jwt_aud_contains(s, "https://a.example"));
    assert_false(jwt_aud_contains(s, "https://a.example/"));
    assert_false(jwt_aud_contains(s, "https://a.exampl"));
    assert_false(jwt_aud_contains(s, ""));
    assert_true(jwt_aud_contains(a, "https://a.example"));
    assert_true(jwt_aud_contains(a, "x"));
    assert_false(jwt_aud_contains(a, "1"));
    assert_false(jwt_aud_contains(o, "https://a.example"));
    assert_false(jwt_aud_contains(n, "x"));
    assert_false(jwt_aud_contains(s, NULL));
    json_decref(s);
    json_decref(a);
    json_decref(o);
    json_decref(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_tokens),
        cmocka_unit_test(test_rfc_text_payloads_are_not_claims),
        cmocka_unit_test(test_good_synthetic),
        cmocka_unit_test(test_segment_counts),
        cmocka_unit_test(test_encoding_strictness),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_kid_length),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_json_load_strict),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_crit_and_alg),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_claim_time),
        cmocka_unit_test(test_aud),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
