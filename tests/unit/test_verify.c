/* Signature and time checks: every real token and RFC vector verifies with its key at a fixed
 * clock; any tampering, wrong key type or wrong algorithm fails with its own reason; libjwt
 * agrees on the real GitHub tokens. */
#include <stdbool.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>
#include "test_util.h"
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "b64.h"
#include "jwt.h"
#include "jwks.h"
#include "verify.h"

/* libjwt 1.10.2, declared by hand: its <jwt.h> reuses our enum and struct names. */
typedef struct libjwt_opaque libjwt_t;
int jwt_decode(libjwt_t **jwt, const char *token, const unsigned char *key, int key_len);
int jwt_get_alg(libjwt_t *jwt);
#define LIBJWT_ALG_RS256 4 /* jwt_alg_t: NONE, HS256, HS384, HS512, RS256, ... */

#define RS256 JWT_ALG_BIT(JWT_ALG_RS256)

static struct jwks *load_set(const char *file, unsigned flags)
{
    size_t len;
    char *s = test_read_file(file, 1, &len);
    struct jwks *set = NULL;
    enum broker_err e;
    assert_non_null(s);
    if (strstr(file, ".pem"))
        e = jwks_from_pem((uint8_t *)s, len, &set);
    else
        e = jwks_parse((uint8_t *)s, len, flags, &set);
    if (e != BROKER_OK)
        fail_msg("%s: %s", file, broker_strerror(e));
    free(s);
    return set;
}

static int64_t digits(const char *s, int n)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        assert_true(s[i] >= '0' && s[i] <= '9');
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "2022-08-05T01:29:53Z" -> Unix seconds. */
static int64_t rfc3339(const char *s)
{
    struct tm tm = {0};
    assert_int_equal(strlen(s), 20);
    tm.tm_year = (int)digits(s, 4) - 1900;
    tm.tm_mon = (int)digits(s + 5, 2) - 1;
    tm.tm_mday = (int)digits(s + 8, 2);
    tm.tm_hour = (int)digits(s + 11, 2);
    tm.tm_min = (int)digits(s + 14, 2);
    tm.tm_sec = (int)digits(s + 17, 2);
    return (int64_t)timegm(&tm);
}

/* Replace the first segment (0, 1 or 2) of tok with b64url(data); returns a malloc'd token. */
static char *replace_segment(const char *tok, int seg, const uint8_t *data, size_t len)
{
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    const char *start = seg == 0 ? tok : seg == 1 ? d1 + 1 : d2 + 1;
    const char *end = seg == 0 ? d1 : seg == 1 ? d2 : tok + strlen(tok);
    size_t pre = (size_t)(start - tok), post = strlen(end);
    char *out = malloc(pre + B64URL_ENCODED_LEN(len) + post + 1);
    assert_non_null(out);
    memcpy(out, tok, pre);
    size_t n = pre + b64url_encode(data, len, out + pre);
    memcpy(out + n, end, post + 1);
    return out;
}

static size_t segment(const char *tok, int seg, uint8_t *out, size_t cap)
{
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    const char *start = seg == 0 ? tok : seg == 1 ? d1 + 1 : d2 + 1;
    const char *end = seg == 0 ? d1 : seg == 1 ? d2 : tok + strlen(tok);
    size_t n;
    assert_int_equal(b64url_decode((const uint8_t *)start, (size_t)(end - start), out, cap, &n), BROKER_OK);
    return n;
}

static enum broker_err parse_verify(const char *tok, const struct jwks *set, uint32_t mask, int64_t now, int64_t leeway)
{
    struct jwt t;
    enum broker_err e = jwt_parse((const uint8_t *)tok, strlen(tok), &t);
    if (e != BROKER_OK)
        return e;
    e = verify_jwt(&t, set, mask, now, leeway);
    jwt_release(&t);
    return e;
}

/* A token must fail, once parsed and verified, after each kind of tampering. */
static void check_tamper(const char *tok, const struct jwks *set, uint32_t mask, int64_t now)
{
    uint8_t buf[12288];
    size_t n;
    char *t2;
    struct jwt t;

    /* signature: one bit of the decoded signature */
    assert_int_equal(jwt_parse((const uint8_t *)tok, strlen(tok), &t), BROKER_OK);
    t.sig[t.sig_len / 2] ^= 0x01;
    assert_int_equal(verify_jwt(&t, set, mask, now, 0), BROKER_ERR_BAD_SIGNATURE);
    t.sig[t.sig_len / 2] ^= 0x01;
    t.sig_len--; /* and one byte short */
    assert_int_equal(verify_jwt(&t, set, mask, now, 0), BROKER_ERR_BAD_SIGNATURE);
    jwt_release(&t);
    /* payload and header: same JSON meaning, one byte more (a space before the final brace) */
    for (int seg = 0; seg < 2; seg++) {
        n = segment(tok, seg, buf, sizeof(buf) - 1);
        assert_int_equal(buf[n - 1], '}');
        buf[n - 1] = ' ';
        buf[n++] = '}';
        t2 = replace_segment(tok, seg, buf, n);
        assert_int_equal(parse_verify(t2, set, mask, now, 0), BROKER_ERR_BAD_SIGNATURE);
        free(t2);
    }
    /* payload: one changed byte inside a claim value */
    n = segment(tok, 1, buf, sizeof(buf));
    uint8_t *q = (uint8_t *)memmem(buf, n, "\"sub\":\"", 7);
    assert_non_null(q);
    q[8] ^= 0x01;
    t2 = replace_segment(tok, 1, buf, n);
    assert_int_equal(parse_verify(t2, set, mask, now, 0), BROKER_ERR_BAD_SIGNATURE);
    free(t2);
    /* every single-character substitution anywhere in the token fails one way or another */
    size_t len = strlen(tok);
    t2 = malloc(len + 1);
    assert_non_null(t2);
    for (size_t i = 0; i < len; i++) {
        memcpy(t2, tok, len + 1);
        if (t2[i] == '.')
            continue;
        t2[i] = t2[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(parse_verify(t2, set, mask, now, 0), BROKER_OK);
    }
    free(t2);
}
/*
 * libjwt as a second implementation, alg pinned, in a child process so that a crash inside
 * libjwt (its error paths are poorly tested) cannot take the whole suite down. */
static void libjwt_accepts(const char *tok, const struct jwk *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long pem_len;
    pid_t pid;
    int status;
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key->pkey), 1);
    pem_len = BIO_get_mem_data(bio, &pem);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        libjwt_t *j = NULL;
        /* die on a crash instead of returning into cmocka's handler in the child */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);
        int ok = jwt_decode(&j, tok, (const unsigned char *)pem, (int)pem_len) == 0 && j != NULL &&
                 jwt_get_alg(j) == LIBJWT_ALG_RS256;
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    BIO_free(bio);
}

static void test_real_tokens_from_manifest(void **state)
{
    size_t mlen, checked = 0, github = 0;
    char *m = test_read_file("manifest.json", 1, &mlen);
    json_t *root = json_loadb(m, mlen, 0, NULL), *fx;
    size_t i;
    (void)state;
    assert_non_null(root);
    json_array_foreach(json_object_get(root, "fixtures"), i, fx) {
        const char *cat = json_string_value(json_object_get(fx, "category"));
        const char *tf = json_string_value(json_object_get(fx, "token_file"));
        const char *kf = json_string_value(json_object_get(fx, "key_file"));
        const char *iat = json_string_value(json_object_get(fx, "iat"));
        const char *exp = json_string_value(json_object_get(fx, "exp"));
        if (strcmp(cat, "github-actions") != 0 && strcmp(cat, "kubernetes") != 0)
            continue;
        char *tok = test_read_file(tf, 1, NULL);
        struct jwks *set = load_set(kf, 0);
        assert_non_null(tok);
        if (iat == NULL) {
            /* the legacy secret token: good signature, but no exp, which we require */
            struct jwt t;
            assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
            assert_null(t.kid);
            assert_int_equal(verify_signature(jwks_find(set, NULL, t.alg), t.alg, t.signing_input,
                                              t.signing_input_len, t.sig, t.sig_len),
                             BROKER_OK);
            assert_int_equal(verify_jwt(&t, set, RS256, 1504120000, 0), BROKER_ERR_MISSING_EXP);
            jwt_release(&t);
        } else {
            int64_t now = rfc3339(iat), end = rfc3339(exp);
            assert_int_equal(parse_verify(tok, set, RS256, now, 0), BROKER_OK);
            assert_int_equal(parse_verify(tok, set, RS256, end - 1, 0), BROKER_OK);
            assert_int_equal(parse_verify(tok, set, RS256, end, 0), BROKER_ERR_EXPIRED);
            assert_int_equal(parse_verify(tok, set, RS256, end + 59, 60), BROKER_OK);
            assert_int_equal(parse_verify(tok, set, RS256, end + 60, 60), BROKER_ERR_EXPIRED);
            assert_int_equal(parse_verify(tok, set, RS256, now - 3600, 60), BROKER_ERR_NOT_YET_VALID);
            /* the issuer's alg list decides: RS256 tokens are refused under an ES256/PS256-only list */
            assert_int_equal(parse_verify(tok, set, JWT_ALG_BIT(JWT_ALG_ES256) | JWT_ALG_BIT(JWT_ALG_PS256), now, 0),
                             BROKER_ERR_ALG_NOT_ALLOWED);
            check_tamper(tok, set, RS256, now);
            if (strcmp(cat, "github-actions") == 0) {
                struct jwt t;
                assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
                libjwt_accepts(tok, jwks_find(set, t.kid, t.alg));
                jwt_release(&t);
                github++;
            }
        }
        checked++;
        jwks_free(set);
        free(tok);
    }
    assert_int_equal(checked, 8); /* 4 GitHub, projected (PEM and JWKS), expired, legacy */
    assert_int_equal(github, 4);
    json_decref(root);
    free(m);
}

static void test_minikube_pem_and_jwks(void **state)
{
    char *tok = test_read_file("kubernetes/k8s_minikube_projected_2020-10-30_exp2030.jwt", 1, NULL);
    struct jwks *pem = load_set("kubernetes/minikube_v1.18.10_sa.pub.pem", 0);
    struct jwks *jw = load_set("kubernetes/minikube_v1.18.10_sa.jwks.derived.json", 0);
    struct jwks *gh = load_set("github-actions/jwks_2022_token.actions.githubusercontent.com.json", 0);
    const int64_t now = 1604082797 + 10;
    (void)state;
    assert_int_equal(parse_verify(tok, pem, RS256, now, 0), BROKER_OK);
    assert_int_equal(parse_verify(tok, jw, RS256, now, 0), BROKER_OK);
    /* RSA keys fit PS256 too, but an RS256-signed token is not a PSS signature */
    assert_int_equal(parse_verify(tok, pem, RS256 | JWT_ALG_BIT(JWT_ALG_PS256), now, 0), BROKER_OK);
    /* someone else's key set: the kid is unknown there */
    assert_int_equal(parse_verify(tok, gh, RS256, now, 0), BROKER_ERR_UNKNOWN_KID);
    jwks_free(pem);
    jwks_free(jw);
    jwks_free(gh);
    free(tok);
}

/* Verify the raw signing input of an RFC vector (payloads of RFC 7520/8037 are not JSON). */
static void check_raw_vector(const char *jws_file, const char *key_file, enum jwt_alg alg)
{
    char *tok = test_read_file(jws_file, 1, NULL);
    struct jwks *set = load_set(key_file, JWKS_ALLOW_SYMMETRIC);
    const char *d2 = strrchr(tok, '.');
    uint8_t sig[1024];
    size_t sig_len;
    const struct jwk *k = &set->keys[0];
    size_t mlen = (size_t)(d2 - tok);
    assert_int_equal(b64url_decode((uint8_t *)d2 + 1, strlen(d2 + 1), sig, sizeof(sig), &sig_len), BROKER_OK);
    assert_int_equal(verify_signature(k, alg, (uint8_t *)tok, mlen, sig, sig_len), BROKER_OK);
    /* one bit of signature, of message, one byte shorter message */
    sig[sig_len - 1] ^= 0x80;
    assert_int_equal(verify_signature(k, alg, (uint8_t *)tok, mlen, sig, sig_len), BROKER_ERR_BAD_SIGNATURE);
    sig[sig_len - 1] ^= 0x80;
    tok[mlen - 5] ^= 0x01;
    assert_int_equal(verify_signature(k, alg, (uint8_t *)tok, mlen, sig, sig_len), BROKER_ERR_BAD_SIGNATURE);
    tok[mlen - 5] ^= 0x01;
    assert_int_equal(verify_signature(k, alg, (uint8_t *)tok, mlen - 1, sig, sig_len), BROKER_ERR_BAD_SIGNATURE);
    /* the same bytes under every other algorithm: wrong key type, or a signature that fails */
    for (int a = JWT_ALG_INVALID; a < JWT_ALG__COUNT; a++) {
        if (a == (int)alg)
            continue;
        enum broker_err e = verify_signature(k, (enum jwt_alg)a, (uint8_t *)tok, mlen, sig, sig_len);
        assert_int_equal(e, verify_alg_fits_key((enum jwt_alg)a, k) ? BROKER_ERR_BAD_SIGNATURE
                                                                      : BROKER_ERR_ALG_NOT_ALLOWED);
    }
    jwks_free(set);
    free(tok);
}

static void test_rfc_vectors(void **state)
{
    (void)state;
    check_raw_vector("jose-rfc-vectors/rfc7515_A1_HS256.jws", "jose-rfc-vectors/rfc7515_A1_HS256.jwk.json",
                     JWT_ALG_HS256);
    check_raw_vector("jose-rfc-vectors/rfc7515_A2_RS256.jws", "jose-rfc-vectors/rfc7515_A2_RS256.pub.jwk.json",
                     JWT_ALG_RS256);
    check_raw_vector("jose-rfc-vectors/rfc7515_A3_ES256.jws", "jose-rfc-vectors/rfc7515_A3_ES256.pub.jwk.json",
                     JWT_ALG_ES256);
    check_raw_vector("jose-rfc-vectors/rfc7520_4.1_RS256.jws", "jose-rfc-vectors/rfc7520_4.1_RS256.pub.jwk.json",
                     JWT_ALG_RS256);
    check_raw_vector("jose-rfc-vectors/rfc7520_4.2_PS384.jws", "jose-rfc-vectors/rfc7520_4.2_PS384.pub.jwk.json",
                     JWT_ALG_PS384);
    check_raw_vector("jose-rfc-vectors/rfc7520_4.3_ES512.jws", "jose-rfc-vectors/rfc7520_4.3_ES512.pub.jwk.json",
                     JWT_ALG_ES512);
    check_raw_vector("jose-rfc-vectors/rfc7520_4.4_HS256.jws", "jose-rfc-vectors/rfc7520_4.4_HS256.jwk.json",
                     JWT_ALG_HS256);
    check_raw_vector("jose-rfc-vectors/rfc8037_A.4_Ed25519.jws", "jose-rfc-vectors/rfc8037_A.4_Ed25519.pub.jwk.json",
                     JWT_ALG_EDDSA);
}

static void test_rfc7515_whole_tokens(void **state)
{
    /* RFC 7515 A.1-A.3 payloads are JWT claims (exp 1300819380): the whole path works */
    static const struct { const char *tok, *key; enum jwt_alg alg; } v[] = {
        {"jose-rfc-vectors/rfc7515_A1_HS256.jws", "jose-rfc-vectors/rfc7515_A1_HS256.jwk.json", JWT_ALG_HS256},
        {"jose-rfc-vectors/rfc7515_A2_RS256.jws", "jose-rfc-vectors/rfc7515_A2_RS256.pub.jwk.json", JWT_ALG_RS256},
        {"jose-rfc-vectors/rfc7515_A3_ES256.jws", "jose-rfc-vectors/rfc7515_A3_ES256.pub.jwk.json", JWT_ALG_ES256},
    };
    const int64_t now = 1300819380 - 100;
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *tok = test_read_file(v[i].tok, 1, NULL);
        struct jwks *set = load_set(v[i].key, JWKS_ALLOW_SYMMETRIC);
        uint32_t mask = JWT_ALG_BIT(v[i].alg);
        assert_int_equal(parse_verify(tok, set, mask, now, 0), BROKER_OK);
        assert_int_equal(parse_verify(tok, set, mask, 1300819380, 0), BROKER_ERR_EXPIRED);
        /* HMAC only when the mask says so */
        assert_int_equal(parse_verify(tok, set, ~mask & ~JWT_ALG_BIT(JWT_ALG_INVALID), now, 0),
                         BROKER_ERR_ALG_NOT_ALLOWED);
        {
            uint8_t buf[512];
            size_t n = segment(tok, 1, buf, sizeof(buf) - 1);
            buf[n - 1] = ' ';
            buf[n++] = '}';
            char *t2 = replace_segment(tok, 1, buf, n);
            assert_int_equal(parse_verify(t2, set, mask, now, 0), BROKER_ERR_BAD_SIGNATURE);
            free(t2);
        }
        jwks_free(set);
        free(tok);
    }
}

/* --- tokens we sign ourselves ------------------------------------------------------------ */

static char *sign_token(const char *hdr, const char *pl, EVP_PKEY *key, enum jwt_alg alg, int pss_salt)
{
    static const char *const md_name[JWT_ALG__COUNT] = {
        [JWT_ALG_RS256] = "SHA256", [JWT_ALG_PS256] = "SHA256", [JWT_ALG_ES256] = "SHA256",
        [JWT_ALG_RS384] = "SHA384", [JWT_ALG_PS384] = "SHA384", [JWT_ALG_ES384] = "SHA384",
        [JWT_ALG_RS512] = "SHA512", [JWT_ALG_PS512] = "SHA512", [JWT_ALG_ES512] = "SHA512",
    };
    char *tok = malloc(8192);
    size_t n = b64url_encode((const uint8_t *)hdr, strlen(hdr), tok);
    uint8_t sig[1024], raw[132];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    tok[n++] = '.';
    n += b64url_encode((const uint8_t *)pl, strlen(pl), tok + n);
    assert_int_equal(EVP_DigestSignInit_ex(ctx, &pctx, md_name[alg], NULL, NULL, key, NULL), 1);
    if (alg >= JWT_ALG_PS256 && alg <= JWT_ALG_PS512) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt), 1);
    }
    assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (uint8_t *)tok, n), 1);
    EVP_MD_CTX_free(ctx);
    if (alg >= JWT_ALG_ES256 && alg <= JWT_ALG_ES512) {
        size_t clen = alg == JWT_ALG_ES256 ? 32 : alg == JWT_ALG_ES384 ? 48 : 66;
        const uint8_t *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        assert_non_null(es);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)clen), (int)clen);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + clen, (int)clen), (int)clen);
        ECDSA_SIG_free(es);
        memcpy(sig, raw, 2 * clen);
        sig_len = 2 * clen;
    }
    tok[n++] = '.';
    n += b64url_encode(sig, sig_len, tok + n);
    tok[n] = '\0';
    return tok;
}

static char *hmac_token(const char *hdr, const char *pl, const uint8_t *secret, size_t secret_len)
{
    char *tok = malloc(8192);
    size_t n = b64url_encode((const uint8_t *)hdr, strlen(hdr), tok);
    uint8_t mac[32];
    unsigned int mac_len;
    tok[n++] = '.';
    n += b64url_encode((const uint8_t *)pl, strlen(pl), tok + n);
    assert_non_null(HMAC(EVP_sha256(), secret, (int)secret_len, (uint8_t *)tok, n, mac, &mac_len));
    tok[n++] = '.';
    n += b64url_encode(mac, mac_len, tok + n);
    tok[n] = '\0';
    return tok;
}

static struct jwks *set_from_key(EVP_PKEY *key, char kid[BROKER_MAX_KID_LEN + 1])
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long n;
    struct jwks *set = NULL;
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    n = BIO_get_mem_data(bio, &pem);
    assert_int_equal(jwks_from_pem((uint8_t *)pem, (size_t)n, &set), BROKER_OK);
    BIO_free(bio);
    memcpy(kid, set->keys[0].kid, sizeof(set->keys[0].kid));
    return set;
}

#define T0 1700000000
#define PL_OK "{\"iss\":\"https://i.example\",\"sub\":\"s\",\"iat\":1700000000,\"exp\":1700000600}"

static void test_alg_key_mismatch(void **state)
{
    EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    char kid256[BROKER_MAX_KID_LEN + 1], kid384[BROKER_MAX_KID_LEN + 1], hdr[BROKER_MAX_KID_LEN + 64];
    struct jwks *s256 = set_from_key(p256, kid256), *s384 = set_from_key(p384, kid384);
    struct jwks *rfc_rsa = load_set("jose-rfc-vectors/rfc7515_A2_RS256.pub.jwk.json", 0);
    uint32_t all = ~JWT_ALG_BIT(JWT_ALG_INVALID);
    char *tok;
    (void)state;

    /* ES256 round trip with our own key */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid256);
    tok = sign_token(hdr, PL_OK, p256, JWT_ALG_ES256, 0);
    assert_int_equal(parse_verify(tok, s256, JWT_ALG_BIT(JWT_ALG_ES256), T0, 0), BROKER_OK);
    free(tok);

    /* ES256 signature presented as ES384: against the P-256 key the alg does not fit; against a
     * P-384 key the 64-byte signature is the wrong size */
    struct jwt t;
    tok = sign_token("{\"alg\":\"ES256\"}", PL_OK, p256, JWT_ALG_ES256, 0);
    assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
    assert_int_equal(verify_signature(&s256->keys[0], JWT_ALG_ES384, t.signing_input, t.signing_input_len, t.sig,
                                      t.sig_len),
                     BROKER_ERR_ALG_NOT_ALLOWED);
    assert_int_equal(verify_signature(&s384->keys[0], JWT_ALG_ES384, t.signing_input, t.signing_input_len, t.sig,
                                      t.sig_len),
                     BROKER_ERR_BAD_SIGNATURE);
    /* ... and ES256 against a P-384 key */
    assert_int_equal(verify_signature(&s384->keys[0], JWT_ALG_ES256, t.signing_input, t.signing_input_len, t.sig,
                                      t.sig_len),
                     BROKER_ERR_ALG_NOT_ALLOWED);
    t.alg = JWT_ALG_ES256;
    assert_int_equal(verify_jwt(&t, s384, all, T0, 0), BROKER_ERR_UNKNOWN_KID); /* no kid, no fitting key */
    /* a DER signature where raw r||s is expected */
    {
        uint8_t der[160];
        size_t dl = sizeof(der);
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, p256), 1);
        assert_int_equal(EVP_DigestSign(c, der, &dl, t.signing_input, t.signing_input_len), 1);
        EVP_MD_CTX_free(c);
        assert_int_equal(verify_signature(&s256->keys[0], JWT_ALG_ES256, t.signing_input, t.signing_input_len, der,
                                          dl),
                         BROKER_ERR_BAD_SIGNATURE);
    }
    /* r or s of zero, or all 0xff (>= n) */
    memset(t.sig, 0, 32);
    assert_int_equal(verify_signature(&s256->keys[0], JWT_ALG_ES256, t.signing_input, t.signing_input_len, t.sig, 64),
                     BROKER_ERR_BAD_SIGNATURE);
    memset(t.sig, 0xff, 64);
    assert_int_equal(verify_signature(&s256->keys[0], JWT_ALG_ES256, t.signing_input, t.signing_input_len, t.sig, 64),
                     BROKER_ERR_BAD_SIGNATURE);
    jwt_release(&t);
    free(tok);

    /* an RS256 token whose kid names an EC key */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid256);
    tok = sign_token(hdr, PL_OK, p256, JWT_ALG_ES256, 0); /* signature content does not matter */
    assert_int_equal(parse_verify(tok, s256, all, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
    free(tok);
    /* EC token against an RSA key set without kid: nothing fits */
    tok = sign_token("{\"alg\":\"ES256\"}", PL_OK, p256, JWT_ALG_ES256, 0);
    assert_int_equal(parse_verify(tok, rfc_rsa, all, T0, 0), BROKER_ERR_UNKNOWN_KID);
    free(tok);

    /* a JWK pinned to RS256 refuses PS256 even though the key type would fit */
    struct jwks *gh = load_set("github-actions/jwks_2022_token.actions.githubusercontent.com.json", 0);
    tok = sign_token("{\"alg\":\"PS256\",\"kid\":\"78167F727DEC5D801DD1C8784C704A1C880EC0E1\"}", PL_OK, p256,
                     JWT_ALG_ES256, 0);
    assert_int_equal(parse_verify(tok, gh, all, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
    free(tok);
    jwks_free(gh);

    jwks_free(s256);
    jwks_free(s384);
    jwks_free(rfc_rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
}

static void test_hs256_with_public_key_as_secret(void **state)
{
    size_t pem_len;
    char *pem = test_read_file("kubernetes/minikube_v1.18.10_sa.pub.pem", 1, &pem_len);
    struct jwks *set = load_set("kubernetes/minikube_v1.18.10_sa.pub.pem", 0);
    char hdr[BROKER_MAX_KID_LEN + 64];
    (void)state;
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"%s\"}", set->keys[0].kid);
    /* the classic confusion: HMAC keyed with the issuer's public key text (with and without the
     * trailing newline test_read_file strips) */
    for (int nl = 0; nl < 2; nl++) {
        char *key = malloc(pem_len + 2);
        memcpy(key, pem, pem_len);
        key[pem_len] = '\n';
        char *tok = hmac_token(hdr, PL_OK, (uint8_t *)key, pem_len + (size_t)nl);
        assert_int_equal(parse_verify(tok, set, RS256, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
        /* even a careless mask that includes HS256 cannot make an RSA key an HMAC secret */
        assert_int_equal(parse_verify(tok, set, RS256 | JWT_ALG_MASK_HMAC, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
        free(tok);
        free(key);
    }
    jwks_free(set);
    free(pem);
}

static void test_hmac_rules(void **state)
{
    static const uint8_t secret[32] = "0123456789abcdef0123456789abcdef";
    char doc[256], k[64];
    struct jwks *set;
    char *tok;
    (void)state;
    k[b64url_encode(secret, sizeof(secret), k)] = '\0';
    snprintf(doc, sizeof(doc), "{\"kty\":\"oct\",\"k\":\"%s\"}", k);
    assert_int_equal(jwks_parse((uint8_t *)doc, strlen(doc), JWKS_ALLOW_SYMMETRIC, &set), BROKER_OK);
    tok = hmac_token("{\"alg\":\"HS256\"}", PL_OK, secret, sizeof(secret));
    assert_int_equal(parse_verify(tok, set, JWT_ALG_BIT(JWT_ALG_HS256), T0, 0), BROKER_OK);
    assert_int_equal(parse_verify(tok, set, RS256, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
    struct jwt t;
    assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
    /* a 32-byte secret is too short for HS384/HS512 (RFC 7518 §3.2) */
    assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_HS384, t.signing_input, t.signing_input_len, t.sig,
                                      t.sig_len),
                     BROKER_ERR_ALG_NOT_ALLOWED);
    /* truncated MAC */
    assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_HS256, t.signing_input, t.signing_input_len, t.sig, 16),
                     BROKER_ERR_BAD_SIGNATURE);
    jwt_release(&t);
    free(tok);
    jwks_free(set);
}

static void test_pss_and_rsa_sizes(void **state)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char kid[BROKER_MAX_KID_LEN + 1];
    struct jwks *set = set_from_key(rsa, kid);
    uint32_t mask = JWT_ALG_BIT(JWT_ALG_PS256) | JWT_ALG_BIT(JWT_ALG_PS512) | JWT_ALG_BIT(JWT_ALG_RS384);
    char *tok;
    (void)state;
    tok = sign_token("{\"alg\":\"PS256\"}", PL_OK, rsa, JWT_ALG_PS256, 32);
    assert_int_equal(parse_verify(tok, set, mask, T0, 0), BROKER_OK);
    free(tok);
    tok = sign_token("{\"alg\":\"PS512\"}", PL_OK, rsa, JWT_ALG_PS512, 64);
    assert_int_equal(parse_verify(tok, set, mask, T0, 0), BROKER_OK);
    free(tok);
    tok = sign_token("{\"alg\":\"RS384\"}", PL_OK, rsa, JWT_ALG_RS384, 0);
    assert_int_equal(parse_verify(tok, set, mask, T0, 0), BROKER_OK);
    free(tok);
    /* JWS fixes the PSS salt to the hash length: any other salt is refused */
    tok = sign_token("{\"alg\":\"PS256\"}", PL_OK, rsa, JWT_ALG_PS256, 20);
    assert_int_equal(parse_verify(tok, set, mask, T0, 0), BROKER_ERR_BAD_SIGNATURE);
    free(tok);
    tok = sign_token("{\"alg\":\"PS256\"}", PL_OK, rsa, JWT_ALG_PS256, RSA_PSS_SALTLEN_MAX);
    assert_int_equal(parse_verify(tok, set, mask, T0, 0), BROKER_ERR_BAD_SIGNATURE);
    free(tok);
    /* a PKCS#1 v1.5 signature presented as PSS */
    {
        struct jwt t;
        tok = sign_token("{\"alg\":\"RS256\"}", PL_OK, rsa, JWT_ALG_RS256, 0);
        assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
        assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_RS256, t.signing_input, t.signing_input_len, t.sig,
                                          t.sig_len),
                         BROKER_OK);
        assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_PS256, t.signing_input, t.signing_input_len, t.sig,
                                          t.sig_len),
                         BROKER_ERR_BAD_SIGNATURE);
        /* an RSA signature with a zero byte prepended (k+1 bytes) */
        memmove(t.sig + 1, t.sig, t.sig_len);
        t.sig[0] = 0;
        assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_RS256, t.signing_input, t.signing_input_len, t.sig,
                                          t.sig_len + 1),
                         BROKER_ERR_BAD_SIGNATURE);
        jwt_release(&t);
        free(tok);
    }
    jwks_free(set);
    EVP_PKEY_free(rsa);
}

static void test_eddsa_sizes(void **state)
{
    struct jwks *set = load_set("jose-rfc-vectors/rfc8037_A.4_Ed25519.pub.jwk.json", 0);
    uint8_t sig[65] = {0};
    (void)state;
    assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_EDDSA, (const uint8_t *)"x", 1, sig, 64),
                     BROKER_ERR_BAD_SIGNATURE);
    assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_EDDSA, (const uint8_t *)"x", 1, sig, 65),
                     BROKER_ERR_BAD_SIGNATURE);
    assert_int_equal(verify_signature(&set->keys[0], JWT_ALG_EDDSA, (const uint8_t *)"x", 1, sig, 0),
                     BROKER_ERR_BAD_SIGNATURE);
    assert_int_equal(verify_signature(NULL, JWT_ALG_EDDSA, (const uint8_t *)"x", 1, sig, 64),
                     BROKER_ERR_ALG_NOT_ALLOWED);
    jwks_free(set);
}

static enum broker_err times(const char *claims, int64_t now, int64_t leeway)
{
    json_t *c = json_loads(claims, 0, NULL);
    enum broker_err e;
    assert_non_null(c);
    e = verify_times(c, now, leeway);
    json_decref(c);
    return e;
}

static void test_times(void **state)
{
    (void)state;
    assert_int_equal(times("{}", T0, 0), BROKER_ERR_MISSING_EXP);
    assert_int_equal(times("{\"iat\":1700000000,\"nbf\":1700000000}", T0, 60), BROKER_ERR_MISSING_EXP);
    /* exp: valid while now < exp + leeway */
    assert_int_equal(times("{\"exp\":1700000001}", T0, 0), BROKER_OK);
    assert_int_equal(times("{\"exp\":1700000000}", T0, 0), BROKER_ERR_EXPIRED);
    assert_int_equal(times("{\"exp\":1699999941}", T0, 60), BROKER_OK);
    assert_int_equal(times("{\"exp\":1699999940}", T0, 60), BROKER_ERR_EXPIRED);
    assert_int_equal(times("{\"exp\":0}", T0, 0), BROKER_ERR_EXPIRED);
    /* nbf and iat: not after now + leeway */
    assert_int_equal(times("{\"exp\":1800000000,\"nbf\":1700000000}", T0, 0), BROKER_OK);
    assert_int_equal(times("{\"exp\":1800000000,\"nbf\":1700000001}", T0, 0), BROKER_ERR_NOT_YET_VALID);
    assert_int_equal(times("{\"exp\":1800000000,\"nbf\":1700000060}", T0, 60), BROKER_OK);
    assert_int_equal(times("{\"exp\":1800000000,\"nbf\":1700000061}", T0, 60), BROKER_ERR_NOT_YET_VALID);
    assert_int_equal(times("{\"exp\":1800000000,\"iat\":1700000000}", T0, 0), BROKER_OK);
    assert_int_equal(times("{\"exp\":1800000000,\"iat\":1700000001}", T0, 0), BROKER_ERR_NOT_YET_VALID);
    assert_int_equal(times("{\"exp\":1800000000,\"iat\":1700000060}", T0, 60), BROKER_OK);
    assert_int_equal(times("{\"exp\":1800000000,\"iat\":1700000061}", T0, 60), BROKER_ERR_NOT_YET_VALID);
    /* extreme clocks and leeways never overflow into acceptance */
    assert_int_equal(times("{\"exp\":1800000000}", INT64_MAX, INT64_MAX), BROKER_ERR_EXPIRED);
    assert_int_equal(times("{\"exp\":9007199254740992,\"nbf\":0}", INT64_MIN, INT64_MAX), BROKER_ERR_NOT_YET_VALID);
    assert_int_equal(times("{\"exp\":1800000000,\"iat\":9007199254740992}", T0, INT64_MAX),
                     BROKER_ERR_NOT_YET_VALID);
    /* a negative leeway is no leeway */
    assert_int_equal(times("{\"exp\":1700000001}", T0, -100), BROKER_OK);
    /* wrong types, even when another check would fail first */
    static const char *const bad[] = {
        "{\"exp\":\"1800000000\"}", "{\"exp\":1800000000.0}", "{\"exp\":-1}", "{\"exp\":null}",
        "{\"exp\":true}", "{\"exp\":[1800000000]}", "{\"exp\":1800000000,\"nbf\":\"0\"}",
        "{\"exp\":1800000000,\"iat\":1.5}", "{\"exp\":1800000000,\"iat\":-5}", "{\"nbf\":\"x\"}",
        "{\"exp\":9007199254740993}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(times(bad[i], T0, 0), BROKER_ERR_BAD_CLAIM);
}

static void test_verify_jwt_order(void **state)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char kid[BROKER_MAX_KID_LEN + 1], hdr[BROKER_MAX_KID_LEN + 64];
    struct jwks *set = set_from_key(rsa, kid);
    char *tok;
    (void)state;
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid);
    /* an expired token with a bad signature reports the signature: times are checked last */
    struct jwt t;
    tok = sign_token(hdr, "{\"exp\":1}", rsa, JWT_ALG_RS256, 0);
    assert_int_equal(parse_verify(tok, set, RS256, T0, 0), BROKER_ERR_EXPIRED);
    assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
    t.sig[0] ^= 0x01;
    assert_int_equal(verify_jwt(&t, set, RS256, T0, 0), BROKER_ERR_BAD_SIGNATURE);
    jwt_release(&t);
    free(tok);
    /* unknown kid beats the signature */
    tok = sign_token("{\"alg\":\"RS256\",\"kid\":\"other\"}", PL_OK, rsa, JWT_ALG_RS256, 0);
    assert_int_equal(parse_verify(tok, set, RS256, T0, 0), BROKER_ERR_UNKNOWN_KID);
    free(tok);
    /* no kid and a single RSA key: found */
    tok = sign_token("{\"alg\":\"RS256\"}", PL_OK, rsa, JWT_ALG_RS256, 0);
    assert_int_equal(parse_verify(tok, set, RS256, T0, 0), BROKER_OK);
    free(tok);
    /* a parsed token with an alg outside the enum or INVALID is refused, never indexed */
    tok = sign_token(hdr, PL_OK, rsa, JWT_ALG_RS256, 0);
    assert_int_equal(jwt_parse((uint8_t *)tok, strlen(tok), &t), BROKER_OK);
    t.alg = JWT_ALG_INVALID;
    assert_int_equal(verify_jwt(&t, set, 0xffffffffu, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
    t.alg = JWT_ALG__COUNT;
    assert_int_equal(verify_jwt(&t, set, 0xffffffffu, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
    t.alg = JWT_ALG_RS256;
    assert_int_equal(verify_jwt(&t, set, 0, T0, 0), BROKER_ERR_ALG_NOT_ALLOWED);
    assert_int_equal(verify_jwt(&t, set, RS256, T0, 0), BROKER_OK);
    jwt_release(&t);
    free(tok);
    jwks_free(set);
    EVP_PKEY_free(rsa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_tokens_from_manifest),
        cmocka_unit_test(test_minikube_pem_and_jwks),
        cmocka_unit_test(test_rfc_vectors),
        cmocka_unit_test(test_rfc7515_whole_tokens),
        cmocka_unit_test(test_alg_key_mismatch),
        cmocka_unit_test(test_hs256_with_public_key_as_secret),
        cmocka_unit_test(test_hmac_rules),
        cmocka_unit_test(test_pss_and_rsa_sizes),
        cmocka_unit_test(test_eddsa_sizes),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_verify_jwt_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
