/* mint.c: every minted token verifies under libjwt 1.10.2 (alg pinned) and OpenSSL EVP,
 * claims are exact, escaping round-trips, and everything is bounded. */
#include "test_util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
/* libjwt's header by absolute path: -Ibroker would otherwise find broker/jwt.h. */
#include </usr/include/jwt.h>

#include "b64.h"
#include "mint.h"

#define T0 1700000000

struct fx {
    char dir[64];
    struct keyring *ring;
    char *pub_pem;
    size_t pub_pem_len;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char kid[KEYS_KID_MAX + 1];
    BIO *bio = NULL;
    char *mem;
    long n;
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/broker-mint-XXXXXX");
    if (!mkdtemp(f->dir) || keys_generate(f->dir, T0 - 100, 0, kid) != BROKER_OK ||
        keys_load(f->dir, T0, &f->ring) != BROKER_OK || !f->ring->active)
        return -1;
    bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_PUBKEY(bio, f->ring->active->pkey) != 1)
        return -1;
    n = BIO_get_mem_data(bio, &mem);
    f->pub_pem = malloc((size_t)n + 1);
    memcpy(f->pub_pem, mem, (size_t)n);
    f->pub_pem[n] = 0;
    f->pub_pem_len = (size_t)n;
    BIO_free(bio);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    test_rm_tree(f->dir);
    keys_free(f->ring);
    free(f->pub_pem);
    free(f);
    keys_thread_cleanup();
    return 0;
}

static struct mint_input base_input(void)
{
    struct mint_input in = {
        .issuer = "https://broker.example.com",
        .identity = "payments-deploy",
        .audience = "https://secrets.example.com",
        .scope = "secrets:read:payments/prod secrets:list",
        .now = T0,
        .ttl_s = 600,
        .src_iss = "https://token.actions.githubusercontent.com",
        .src_sub = "repo:acme/payments:ref:refs/heads/main",
        .src_policy = "github-main",
        .ext = NULL,
    };
    return in;
}

/* Decode one base64url segment of a token into a NUL-terminated buffer. */
static size_t seg_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
    size_t n = 0;
    assert_int_equal(b64url_decode((const uint8_t *)s, len, out, cap - 1, &n), BROKER_OK);
    out[n] = 0;
    return n;
}

/* Independent check with OpenSSL: split, raw r||s -> DER, EVP_DigestVerify; returns the
 * decoded header and claims as jansson objects. */
static void evp_verify(const struct fx *f, const char *tok, json_t **header, json_t **claims)
{
    const char *d1 = strchr(tok, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    static uint8_t buf[16384];
    uint8_t sig[128];
    size_t n;

    n = seg_decode(tok, (size_t)(d1 - tok), buf, sizeof(buf));
    *header = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(*header);
    n = seg_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf));
    *claims = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(*claims);
    n = seg_decode(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
    assert_int_equal(n, 64);

    ECDSA_SIG *es = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)), 1);
    unsigned char *der = NULL;
    int dlen = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, f->ring->active->pkey), 1);
    assert_int_equal(EVP_DigestVerify(md, der, (size_t)dlen, (const uint8_t *)tok, (size_t)(d2 - tok)), 1);
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
}

/* libjwt 1.10.2 exports, but only declares in jwt-private.h, the PEM signature check that
 * jwt_decode runs after its header checks. */
int jwt_verify_sha_pem(jwt_t *jwt, const char *head, const char *sig_b64);

/* libbroker.a defines its own jwt_free (broker/jwt.h); naming libjwt's here would link that
 * one in and libjwt would call it too (ELF interposition). Take libjwt's by dlsym instead and
 * never reference the name. */
static void libjwt_free(jwt_t *j)
{
    static void (*fn)(jwt_t *);
    if (!fn) {
        void *h = dlopen("libjwt.so.0", RTLD_NOW | RTLD_NOLOAD);
        assert_non_null(h);
        *(void **)&fn = dlsym(h, "jwt_free");
        assert_non_null(fn);
        dlclose(h); /* still loaded: the test links libjwt */
    }
    fn(j);
}

/* libjwt's signature check over the token exactly as minted, alg pinned to ES256. (jwt_decode
 * itself refuses any "typ" other than "JWT", so it cannot take an RFC 9068 at+jwt token.) */
static int libjwt_check_sig(const struct fx *f, const char *tok)
{
    static char hp[16384];
    const char *d2 = strrchr(tok, '.');
    jwt_t *j = NULL;
    int rc;
    assert_non_null(d2);
    assert_true((size_t)(d2 - tok) < sizeof(hp));
    memcpy(hp, tok, (size_t)(d2 - tok));
    hp[d2 - tok] = 0;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_set_alg(j, JWT_ALG_ES256, (const unsigned char *)f->pub_pem, (int)f->pub_pem_len), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_ES256);
    rc = jwt_verify_sha_pem(j, hp, d2 + 1);
    libjwt_free(j);
    return rc;
}

/* Full jwt_decode of the minted claims segment: re-head it with typ "JWT" (the only typ
 * libjwt 1.10.2 accepts), sign with keys_sign, decode with the alg pinned. Caller frees. */
static jwt_t *libjwt_decode_claims(const struct fx *f, const char *tok)
{
    static char t2[16384];
    char hdr[160];
    uint8_t sig[64];
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    jwt_t *j = NULL;
    int hl = snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", f->ring->active->kid);
    size_t o = b64url_encode((const uint8_t *)hdr, (size_t)hl, t2);
    size_t pl = (size_t)(d2 - d1);
    assert_true(o + pl + 90 < sizeof(t2));
    memcpy(t2 + o, d1, pl); /* ".payload" */
    o += pl;
    assert_int_equal(keys_sign(f->ring->active, (const uint8_t *)t2, o, sig), BROKER_OK);
    t2[o++] = '.';
    o += b64url_encode(sig, 64, t2 + o);
    t2[o] = 0;
    assert_int_equal(jwt_decode(&j, t2, (const unsigned char *)f->pub_pem, (int)f->pub_pem_len), 0);
    assert_non_null(j);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_ES256);
    return j;
}

static bool is_b64url(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            return false;
    return true;
}

static void test_mint_verifies_and_claims_exact(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    json_t *ext = json_loads("{\"repo\":\"acme/payments\",\"run\":12345,\"n\":{\"a\":[1,true,null,\"x\"]}}", 0, NULL);
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0;
    in.ext = ext;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_OK);
    assert_int_equal(strlen(tok), len);
    assert_int_equal(strlen(jti), MINT_JTI_LEN);
    assert_true(is_b64url(jti));

    /* libjwt: signature over the token as minted, alg pinned; its jwt_decode refuses typ at+jwt */
    assert_int_equal(libjwt_check_sig(f, tok), 0);
    jwt_t *j = NULL;
    assert_int_not_equal(jwt_decode(&j, tok, (const unsigned char *)f->pub_pem, (int)f->pub_pem_len), 0);
    /* libjwt reads back the claims exactly as minted */
    j = libjwt_decode_claims(f, tok);
    assert_string_equal(jwt_get_grant(j, "iss"), in.issuer);
    assert_string_equal(jwt_get_grant(j, "sub"), in.identity);
    assert_string_equal(jwt_get_grant(j, "client_id"), in.identity);
    assert_string_equal(jwt_get_grant(j, "aud"), in.audience);
    assert_string_equal(jwt_get_grant(j, "scope"), in.scope);
    assert_string_equal(jwt_get_grant(j, "jti"), jti);
    assert_int_equal(jwt_get_grant_int(j, "iat"), T0);
    assert_int_equal(jwt_get_grant_int(j, "nbf"), T0);
    assert_int_equal(jwt_get_grant_int(j, "exp"), T0 + 600);
    char *src = jwt_get_grants_json(j, "src");
    assert_non_null(src);
    json_t *src_j = json_loads(src, JSON_REJECT_DUPLICATES, NULL);
    json_t *src_want = json_pack("{s:s,s:s,s:s}", "iss", in.src_iss, "sub", in.src_sub, "policy", in.src_policy);
    assert_true(json_equal(src_j, src_want));
    char *ext_s = jwt_get_grants_json(j, "ext");
    json_t *ext_j = json_loads(ext_s, JSON_REJECT_DUPLICATES, NULL);
    assert_true(json_equal(ext_j, ext));
    free(src);
    free(ext_s);
    json_decref(src_j);
    json_decref(ext_j);
    libjwt_free(j);

    /* OpenSSL EVP, and the exact member sets */
    json_t *h = NULL, *c = NULL;
    evp_verify(f, tok, &h, &c);
    json_t *h_want = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", f->ring->active->kid);
    assert_true(json_equal(h, h_want));
    json_t *c_want = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:O,s:O}", "iss", in.issuer, "sub", in.identity,
                               "client_id", in.identity, "aud", in.audience, "scope", in.scope, "iat", (json_int_t)T0,
                               "nbf", (json_int_t)T0, "exp", (json_int_t)(T0 + 600), "jti", jti, "src", src_want,
                               "ext", ext);
    assert_true(json_equal(c, c_want));
    json_decref(h);
    json_decref(c);
    json_decref(h_want);
    json_decref(c_want);
    json_decref(src_want);
    json_decref(ext);
}

static void test_tampered_token_rejected(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_OK);
    assert_int_equal(libjwt_check_sig(f, tok), 0);
    /* change one payload character: the signature must no longer verify */
    char *p = strchr(tok, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_not_equal(libjwt_check_sig(f, tok), 0);
    *p = *p == 'A' ? 'B' : 'A';
    /* nor does a changed signature */
    char *s = strrchr(tok, '.') + 10;
    *s = *s == 'A' ? 'B' : 'A';
    assert_int_not_equal(libjwt_check_sig(f, tok), 0);
}

/* The exchange's path: 20 tokens written with mint_prepare, signed together by keys_sign_batch,
 * finished with mint_finish. libjwt (the independent implementation) accepts every one, each has
 * its own jti, and mint_finish refuses a buffer without room for the signature. */
static void test_prepare_batch_finish(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    enum { N = 20 };
    static char tok[N][BROKER_MAX_MINTED_LEN];
    char jti[N][48];
    size_t slen[N], len = 0;
    struct keys_sign_item it[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(mint_prepare(f->ring->active, &in, tok[i], sizeof(tok[i]), &slen[i], jti[i]), BROKER_OK);
        assert_int_equal(strlen(jti[i]), MINT_JTI_LEN);
        assert_non_null(memchr(tok[i], '.', slen[i])); /* header.claims, no signature yet */
        it[i] = (struct keys_sign_item){.msg = (const uint8_t *)tok[i], .len = slen[i]};
    }
    assert_int_equal(keys_sign_batch(f->ring->active, it, N), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(it[i].rc, BROKER_OK);
        /* no room for '.', 86 characters of signature and the NUL: refused, out emptied */
        assert_int_equal(mint_finish(tok[i], slen[i] + 87, slen[i], it[i].sig, &len), BROKER_ERR_INTERNAL);
        assert_int_equal(len, 0);
        assert_int_equal(mint_finish(tok[i], sizeof(tok[i]), 0, it[i].sig, &len), BROKER_ERR_INTERNAL);
        /* tok[i] was emptied by the refusal: write it again, then finish for real */
        char j2[48];
        assert_int_equal(mint_prepare(f->ring->active, &in, tok[i], sizeof(tok[i]), &slen[i], j2), BROKER_OK);
        memcpy(jti[i], j2, sizeof(j2));
        it[i] = (struct keys_sign_item){.msg = (const uint8_t *)tok[i], .len = slen[i]};
    }
    assert_int_equal(keys_sign_batch(f->ring->active, it, N), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(it[i].rc, BROKER_OK);
        assert_int_equal(mint_finish(tok[i], slen[i] + 88, slen[i], it[i].sig, &len), BROKER_OK);
        assert_int_equal(len, slen[i] + 87);
        assert_int_equal(strlen(tok[i]), len);
        assert_int_equal(libjwt_check_sig(f, tok[i]), 0);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(jti[i], jti[k]);
    }
    /* one changed character of the claims: libjwt refuses it */
    char *p = strchr(tok[0], '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_not_equal(libjwt_check_sig(f, tok[0]), 0);
}

static void test_ext_omitted_when_null_or_empty(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0;
    json_t *empty = json_object();
    for (int i = 0; i < 2; i++) {
        in.ext = i ? empty : NULL;
        assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_OK);
        json_t *h = NULL, *c = NULL;
        evp_verify(f, tok, &h, &c);
        assert_null(json_object_get(c, "ext"));
        assert_int_equal(json_object_size(c), 10);
        json_decref(h);
        json_decref(c);
    }
    json_decref(empty);
}

/* A subject token without a scalar sub (the caller passes NULL): src.sub is null, not a failure. */
static void test_src_sub_null(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0;
    in.src_sub = NULL;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_OK);
    json_t *h = NULL, *c = NULL;
    evp_verify(f, tok, &h, &c);
    json_t *src = json_object_get(c, "src");
    assert_true(json_is_object(src));
    assert_true(json_is_null(json_object_get(src, "sub")));
    assert_string_equal(json_string_value(json_object_get(src, "iss")), in.src_iss);
    json_decref(h);
    json_decref(c);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_jti_unique_over_1000(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    static char jtis[1000][48];
    char tok[BROKER_MAX_MINTED_LEN];
    size_t len = 0;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jtis[i]), BROKER_OK);
        assert_int_equal(strlen(jtis[i]), MINT_JTI_LEN);
        assert_true(is_b64url(jtis[i]));
    }
    qsort(jtis, 1000, sizeof(jtis[0]), cmp_str);
    for (int i = 1; i < 1000; i++)
        assert_string_not_equal(jtis[i - 1], jtis[i]);
}

/* Quotes, backslashes, control characters and UTF-8 in names and ext round-trip. */
static void test_escaping_round_trips(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    const char *nasty = "a\"b\\c\x01\n\t\x1f/\x7f" "é日本\xF0\x9F\x94\x91 \"},\"admin\":true,\"x\":\"";
    json_t *ext = json_pack("{s:s,s:[s,i],s:{s:s}}", "ref", nasty, "list", nasty, 7, "k\"\\\n", "v", nasty);
    assert_non_null(ext);
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0;
    in.identity = nasty;
    in.scope = nasty;
    in.src_sub = nasty;
    in.ext = ext;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_OK);
    json_t *h = NULL, *c = NULL;
    evp_verify(f, tok, &h, &c);
    assert_string_equal(json_string_value(json_object_get(c, "sub")), nasty);
    assert_string_equal(json_string_value(json_object_get(c, "client_id")), nasty);
    assert_string_equal(json_string_value(json_object_get(c, "scope")), nasty);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "src"), "sub")), nasty);
    assert_null(json_object_get(c, "admin")); /* no injection */
    assert_true(json_equal(json_object_get(c, "ext"), ext));
    json_decref(h);
    json_decref(c);
    assert_int_equal(libjwt_check_sig(f, tok), 0);
    jwt_t *j = libjwt_decode_claims(f, tok);
    assert_string_equal(jwt_get_grant(j, "sub"), nasty);
    libjwt_free(j);
    json_decref(ext);
}

static void test_json_escape_exact(void **state)
{
    (void)state;
    char out[128];
    const char *in = "q\"b\\c\x01\x1f\n/é";
    const char *want = "\"q\\\"b\\\\c\\u0001\\u001f\\u000a/é\"";
    size_t need = strlen(want);
    assert_int_equal(mint_json_escape(in, out, sizeof(out)), need);
    assert_memory_equal(out, want, need);
    /* every too-small capacity fails, the exact one succeeds */
    for (size_t cap = 0; cap < need; cap++)
        assert_int_equal(mint_json_escape(in, out, cap), 0);
    assert_int_equal(mint_json_escape(in, out, need), need);
    /* the empty string is two quotes, distinguishable from failure */
    assert_int_equal(mint_json_escape("", out, sizeof(out)), 2);
    assert_memory_equal(out, "\"\"", 2);
    assert_int_equal(mint_json_escape(NULL, out, sizeof(out)), 0);
}

static void test_json_escape_rejects_bad_utf8(void **state)
{
    (void)state;
    char out[64];
    const char *bad[] = {
        "\xC0\x80",          /* overlong NUL */
        "\xE0\x80\xAF",      /* overlong '/' */
        "\xED\xA0\x80",      /* surrogate */
        "\xF4\x90\x80\x80",  /* above U+10FFFF */
        "\xF5\x80\x80\x80",  /* invalid lead */
        "\x80",              /* lone continuation */
        "ab\xE2\x82",        /* truncated at the end */
        "\xE2\x82x",         /* truncated mid-string */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mint_json_escape(bad[i], out, sizeof(out)), 0);
    /* boundaries that are valid */
    assert_int_equal(mint_json_escape("\xF4\x8F\xBF\xBF", out, sizeof(out)), 6);
    assert_int_equal(mint_json_escape("\xEF\xBF\xBF", out, sizeof(out)), 5);
}

static void test_does_not_fit_fails_cleanly(void **state)
{
    struct fx *f = *state;
    struct mint_input in = base_input();
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0, full;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &full, jti), BROKER_OK);
    /* same inputs give the same length (jti is fixed-size): exactly full + NUL fits */
    assert_int_equal(mint_token(f->ring->active, &in, tok, full + 1, &len, jti), BROKER_OK);
    assert_int_equal(len, full);
    memset(tok, 'Z', sizeof(tok));
    memcpy(jti, "stale", 6);
    /* one byte short: it would fit without src.sub, so the subject token is to blame */
    assert_int_equal(mint_token(f->ring->active, &in, tok, full, &len, jti), BROKER_ERR_CLAIM_TOO_LONG);
    assert_int_equal(tok[0], 0);
    assert_int_equal(len, 0);
    assert_string_equal(jti, "");
    /* nothing fits in 10 bytes, whatever the subject token says: the caller's bug */
    assert_int_equal(mint_token(f->ring->active, &in, tok, 10, &len, jti), BROKER_ERR_INTERNAL);
    assert_int_equal(tok[0], 0);
    /* a long src.sub alone (the subject token's sub): CLAIM_TOO_LONG, not INTERNAL */
    char *longsub = malloc(BROKER_MAX_MINTED_LEN);
    memset(longsub, 's', BROKER_MAX_MINTED_LEN - 1);
    longsub[BROKER_MAX_MINTED_LEN - 1] = '\0';
    struct mint_input in2 = base_input();
    in2.src_sub = longsub;
    assert_int_equal(mint_token(f->ring->active, &in2, tok, sizeof(tok), &len, jti), BROKER_ERR_CLAIM_TOO_LONG);
    free(longsub);

    /* claims above MINT_CLAIMS_MAX fail whatever the cap; when the mapped claims (ext) are what
     * does not fit, the subject token is to blame (CLAIM_TOO_LONG), otherwise it is INTERNAL */
    size_t big = MINT_CLAIMS_MAX;
    char *s = malloc(big + 1);
    memset(s, 'x', big);
    s[big] = 0;
    json_t *ext = json_pack("{s:s}", "blob", s);
    in.ext = ext;
    static char huge[4 * MINT_CLAIMS_MAX];
    assert_int_equal(mint_token(f->ring->active, &in, huge, sizeof(huge), &len, jti), BROKER_ERR_CLAIM_TOO_LONG);
    assert_int_equal(huge[0], 0);
    assert_string_equal(jti, "");
    /* a mapped claim that fits the claims buffer but not the caller's cap: the same */
    json_t *ext2 = json_pack("{s:s#}", "blob", s, (int)(full > 100 ? 100 : full));
    in.ext = ext2;
    assert_int_equal(mint_token(f->ring->active, &in, tok, full + 1, &len, jti), BROKER_ERR_CLAIM_TOO_LONG);
    json_decref(ext2);
    in.ext = NULL;
    in.identity = s;
    assert_int_equal(mint_token(f->ring->active, &in, huge, sizeof(huge), &len, jti), BROKER_ERR_INTERNAL);
    json_decref(ext);
    free(s);
}

static void test_bad_inputs_rejected(void **state)
{
    struct fx *f = *state;
    char tok[BROKER_MAX_MINTED_LEN], jti[48];
    size_t len = 0;
    struct mint_input in = base_input();
    json_t *arr = json_array();

    in.ttl_s = 0;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_ERR_INTERNAL);
    in.ttl_s = BROKER_MAX_TTL_S + 1;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_ERR_INTERNAL);
    in = base_input();
    in.audience = NULL;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_ERR_INTERNAL);
    in = base_input();
    in.ext = arr;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_ERR_INTERNAL);
    in = base_input();
    in.identity = "bad\xC0\x80";
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_ERR_INTERNAL);
    in = base_input();
    assert_int_equal(mint_token(NULL, &in, tok, sizeof(tok), &len, jti), BROKER_ERR_INTERNAL);
    /* the maximum ttl itself is fine */
    in.ttl_s = BROKER_MAX_TTL_S;
    assert_int_equal(mint_token(f->ring->active, &in, tok, sizeof(tok), &len, jti), BROKER_OK);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mint_verifies_and_claims_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_token_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_batch_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ext_omitted_when_null_or_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_src_sub_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_unique_over_1000, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_round_trips, setup, teardown),
        cmocka_unit_test(test_json_escape_exact),
        cmocka_unit_test(test_json_escape_rejects_bad_utf8),
        cmocka_unit_test_setup_teardown(test_does_not_fit_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs_rejected, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
