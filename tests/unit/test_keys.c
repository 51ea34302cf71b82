/* keys.c: files on disk, classification and rotation by a fixed clock, our JWKS, ES256. */
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "b64.h"
#include "keys.h"

#define T0 1700000000
#define DELAY 3600
#define TTL 900

struct fx {
    char dir[64];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/broker-keys-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    test_rm_tree(f->dir);
    free(f);
    keys_thread_cleanup();
    return 0;
}

static void path_of(const struct fx *f, const char *kid, const char *ext, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%s", f->dir, kid, ext);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static const struct signing_key *find_kid(const struct keyring *r, const char *kid)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->keys[i].kid, kid) == 0)
            return &r->keys[i];
    return NULL;
}

/* The kid recomputed independently: base64url(SHA-256(DER SPKI)[0..16)). */
static void expect_kid_of(EVP_PKEY *pkey, const char *kid)
{
    unsigned char *der = NULL;
    uint8_t h[32];
    char want[32];
    int len = i2d_PUBKEY(pkey, &der);
    assert_true(len > 0);
    SHA256(der, (size_t)len, h);
    OPENSSL_free(der);
    want[b64url_encode(h, 16, want)] = 0;
    assert_string_equal(want, kid);
}

/* The JWKS entry for k has exactly the public members and the key's coordinates. */
static void expect_jwk(const json_t *jwk, const struct signing_key *k)
{
    BIGNUM *bx = NULL, *by = NULL;
    uint8_t x[32], y[32];
    char xs[44], ys[44];
    assert_true(EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) == 1);
    assert_true(EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) == 1);
    assert_int_equal(BN_bn2binpad(bx, x, 32), 32);
    assert_int_equal(BN_bn2binpad(by, y, 32), 32);
    BN_free(bx);
    BN_free(by);
    xs[b64url_encode(x, 32, xs)] = 0;
    ys[b64url_encode(y, 32, ys)] = 0;
    assert_int_equal(json_object_size(jwk), 7);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(jwk, "kid")), k->kid);
    assert_string_equal(json_string_value(json_object_get(jwk, "x")), xs);
    assert_string_equal(json_string_value(json_object_get(jwk, "y")), ys);
    assert_null(json_object_get(jwk, "d"));
}

/* Parses ring->jwks_json and checks it lists exactly ring->keys in order. */
static void expect_jwks_matches(const struct keyring *r)
{
    json_error_t err;
    json_t *j = json_loadb(r->jwks_json, r->jwks_len, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(j);
    assert_int_equal(strlen(r->jwks_json), r->jwks_len);
    json_t *keys = json_object_get(j, "keys");
    assert_true(json_is_array(keys));
    assert_int_equal(json_array_size(keys), r->n);
    for (size_t i = 0; i < r->n; i++)
        expect_jwk(json_array_get(keys, i), &r->keys[i]);
    json_decref(j);
}

static void test_empty_dir_loads_without_active(void **state)
{
    struct fx *f = *state;
    struct keyring *r = NULL;
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    assert_int_equal(r->n, 0);
    assert_null(r->active);
    assert_null(r->next);
    assert_string_equal(r->jwks_json, "{\"keys\":[]}");
    assert_null(keys_active_at(r, T0));
    keys_free(r);
}

static void test_missing_dir_fails(void **state)
{
    struct fx *f = *state;
    struct keyring *r = (struct keyring *)1;
    char p[128];
    snprintf(p, sizeof(p), "%s/nope", f->dir);
    assert_int_equal(keys_load(p, T0, &r), BROKER_ERR_IO);
    assert_null(r);
}

static void test_first_key_active_files_and_modes(void **state)
{
    struct fx *f = *state;
    char sub[128], kid[KEYS_KID_MAX + 1], p[256];
    struct stat st;
    struct keyring *r = NULL;

    snprintf(sub, sizeof(sub), "%s/keys", f->dir);
    assert_int_equal(keys_generate(sub, T0, DELAY, kid), BROKER_OK);
    assert_int_equal(strlen(kid), 22);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(p, sizeof(p), "%s/%s.pem", sub, kid);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);

    size_t mlen = 0;
    snprintf(p, sizeof(p), "%s/%s.json", sub, kid);
    char *meta = test_read_file(p, 0, &mlen);
    assert_non_null(meta);
    json_t *m = json_loadb(meta, mlen, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "kid")), kid);
    assert_string_equal(json_string_value(json_object_get(m, "alg")), "ES256");
    assert_int_equal(json_integer_value(json_object_get(m, "created_at")), T0);
    /* no key active yet: the first key activates immediately, whatever the delay */
    assert_int_equal(json_integer_value(json_object_get(m, "activate_at")), T0);
    json_decref(m);
    free(meta);

    assert_int_equal(keys_load(sub, T0, &r), BROKER_OK);
    assert_int_equal(r->n, 1);
    assert_non_null(r->active);
    assert_ptr_equal(r->active, &r->keys[0]);
    assert_string_equal(r->active->kid, kid);
    assert_int_equal(r->active->state, KEY_ACTIVE);
    assert_int_equal(r->active->retired_at, 0);
    assert_null(r->next);
    expect_kid_of(r->active->pkey, kid);
    expect_jwks_matches(r);
    keys_free(r);
    test_rm_tree(sub);
}

static void test_rotation_next_active_retired_prune(void **state)
{
    struct fx *f = *state;
    char k1[KEYS_KID_MAX + 1], k2[KEYS_KID_MAX + 1], k3[KEYS_KID_MAX + 1], p[256];
    struct keyring *r = NULL;
    const struct signing_key *a, *b;
    int pruned = -1;

    assert_int_equal(keys_generate(f->dir, T0, DELAY, k1), BROKER_OK);
    assert_int_equal(keys_generate(f->dir, T0 + 10, DELAY, k2), BROKER_OK);
    assert_string_not_equal(k1, k2);

    /* before activation: k2 is next and already published, after the active key */
    assert_int_equal(keys_load(f->dir, T0 + 20, &r), BROKER_OK);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->active->kid, k1);
    assert_non_null(r->next);
    assert_string_equal(r->next->kid, k2);
    assert_int_equal(r->next->state, KEY_NEXT);
    assert_int_equal(r->next->activate_at, T0 + 10 + DELAY);
    assert_string_equal(r->keys[1].kid, k2);
    expect_jwks_matches(r);
    /* a long-lived ring switches on time without reloading */
    assert_string_equal(keys_active_at(r, T0 + 10 + DELAY - 1)->kid, k1);
    assert_string_equal(keys_active_at(r, T0 + 10 + DELAY)->kid, k2);
    keys_free(r);

    /* the clock passes activate_at: k2 active, k1 retired and still published */
    assert_int_equal(keys_load(f->dir, T0 + 10 + DELAY, &r), BROKER_OK);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->active->kid, k2);
    assert_null(r->next);
    a = find_kid(r, k1);
    assert_non_null(a);
    assert_int_equal(a->state, KEY_RETIRED);
    assert_int_equal(a->retired_at, T0 + 10 + DELAY);
    assert_string_equal(r->keys[0].kid, k2);
    assert_string_equal(r->keys[1].kid, k1);
    expect_jwks_matches(r);
    keys_free(r);

    /* a third key pre-published: prune must leave active and next alone even with ttl 0 */
    assert_int_equal(keys_generate(f->dir, T0 + 20 + DELAY, DELAY, k3), BROKER_OK);
    int64_t retire = T0 + 10 + DELAY;
    assert_int_equal(keys_prune(f->dir, retire + TTL, TTL, &pruned), BROKER_OK);
    assert_int_equal(pruned, 0); /* retired_at + ttl == now: tokens may still be valid */
    assert_int_equal(keys_load(f->dir, retire + TTL, &r), BROKER_OK);
    assert_int_equal(r->n, 3);
    keys_free(r);

    assert_int_equal(keys_prune(f->dir, retire + TTL + 1, TTL, &pruned), BROKER_OK);
    assert_int_equal(pruned, 1);
    path_of(f, k1, ".pem", p, sizeof(p));
    assert_int_equal(access(p, F_OK), -1);
    path_of(f, k1, ".json", p, sizeof(p));
    assert_int_equal(access(p, F_OK), -1);

    assert_int_equal(keys_prune(f->dir, retire + TTL + 1, 0, &pruned), BROKER_OK);
    assert_int_equal(pruned, 0);
    assert_int_equal(keys_load(f->dir, retire + TTL + 1, &r), BROKER_OK);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->active->kid, k2);
    assert_string_equal(r->next->kid, k3);
    b = find_kid(r, k1);
    assert_null(b);
    expect_jwks_matches(r);
    keys_free(r);
}

static void test_generate_negative_delay_rejected(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1];
    assert_int_equal(keys_generate(f->dir, T0, -1, kid), BROKER_ERR_CONFIG);
    assert_string_equal(kid, "");
}

/* Generates one key and returns its kid; the dir then gets damaged by each test. */
static void gen_one(struct fx *f, char kid[KEYS_KID_MAX + 1])
{
    assert_int_equal(keys_generate(f->dir, T0, 0, kid), BROKER_OK);
}

static void expect_load_fails(struct fx *f, const char *why_contains)
{
    struct keyring *r = (struct keyring *)1;
    char why[256];
    enum broker_err rc = keys_load_diag(f->dir, T0, &r, why, sizeof(why));
    assert_int_not_equal(rc, BROKER_OK);
    assert_null(r);
    if (why_contains && !strstr(why, why_contains)) {
        fprintf(stderr, "diagnostic '%s' lacks '%s'\n", why, why_contains);
        fail();
    }
}

static void test_corrupted_pem_fails(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256];
    size_t len = 0;
    gen_one(f, kid);
    path_of(f, kid, ".pem", p, sizeof(p));
    char *pem = test_read_file(p, 0, &len);
    assert_non_null(pem);
    /* flip one base64 character inside the key body */
    size_t i = strlen("-----BEGIN PRIVATE KEY-----\n") + 40;
    pem[i] = pem[i] == 'A' ? 'B' : 'A';
    write_file(p, pem, len);
    free(pem);
    expect_load_fails(f, ".pem");
    char k2[KEYS_KID_MAX + 1];
    assert_int_not_equal(keys_generate(f->dir, T0, 0, k2), BROKER_OK); /* broken dir: no new key */
}

static void test_truncated_pem_fails(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256];
    size_t len = 0;
    gen_one(f, kid);
    path_of(f, kid, ".pem", p, sizeof(p));
    char *pem = test_read_file(p, 0, &len);
    assert_non_null(pem);
    write_file(p, pem, len / 2);
    free(pem);
    expect_load_fails(f, kid);
}

static void test_trailing_garbage_pem_fails(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256];
    size_t len = 0;
    gen_one(f, kid);
    path_of(f, kid, ".pem", p, sizeof(p));
    char *pem = test_read_file(p, 0, &len);
    assert_non_null(pem);
    char buf[1024];
    assert_true(len + 8 < sizeof(buf));
    memcpy(buf, pem, len);
    memcpy(buf + len, "\nextra\n", 7);
    write_file(p, buf, len + 7);
    free(pem);
    expect_load_fails(f, ".pem");
}

static void test_corrupted_json_fails(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256], buf[256];
    gen_one(f, kid);
    path_of(f, kid, ".json", p, sizeof(p));
    write_file(p, "{\"kid\":", 7);
    expect_load_fails(f, ".json");

    /* unknown member */
    snprintf(buf, sizeof(buf), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":1,\"x\":1}", kid);
    write_file(p, buf, strlen(buf));
    expect_load_fails(f, ".json");
    /* wrong alg */
    snprintf(buf, sizeof(buf), "{\"kid\":\"%s\",\"alg\":\"RS256\",\"created_at\":1,\"activate_at\":1}", kid);
    write_file(p, buf, strlen(buf));
    expect_load_fails(f, ".json");
    /* activate_at missing */
    snprintf(buf, sizeof(buf), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1}", kid);
    write_file(p, buf, strlen(buf));
    expect_load_fails(f, ".json");
    /* activate_at a string */
    snprintf(buf, sizeof(buf), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":\"1\"}", kid);
    write_file(p, buf, strlen(buf));
    expect_load_fails(f, ".json");
    /* duplicate member */
    snprintf(buf, sizeof(buf), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":1,\"activate_at\":2}",
             kid);
    write_file(p, buf, strlen(buf));
    expect_load_fails(f, ".json");
    /* kid differs from the file name */
    snprintf(buf, sizeof(buf), "{\"kid\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":1}");
    write_file(p, buf, strlen(buf));
    expect_load_fails(f, ".json");
    /* and the valid form loads (so the failures above were about the damage) */
    snprintf(buf, sizeof(buf), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":1}", kid);
    write_file(p, buf, strlen(buf));
    struct keyring *r = NULL;
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    assert_int_equal(r->n, 1);
    keys_free(r);
}

static void test_json_without_pem_fails(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256];
    gen_one(f, kid);
    path_of(f, kid, ".pem", p, sizeof(p));
    assert_int_equal(unlink(p), 0);
    expect_load_fails(f, ".pem");
}

static void test_key_swapped_under_kid_fails(void **state)
{
    struct fx *f = *state;
    char k1[KEYS_KID_MAX + 1], k2[KEYS_KID_MAX + 1], p1[256], p2[256];
    gen_one(f, k1);
    gen_one(f, k2);
    path_of(f, k1, ".pem", p1, sizeof(p1));
    path_of(f, k2, ".pem", p2, sizeof(p2));
    assert_int_equal(rename(p2, p1), 0); /* k1.pem now holds k2's key; k2.pem gone */
    path_of(f, k2, ".json", p2, sizeof(p2));
    assert_int_equal(unlink(p2), 0);
    expect_load_fails(f, "does not match");
}

static void test_bad_json_name_fails(void **state)
{
    struct fx *f = *state;
    char p[256];
    snprintf(p, sizeof(p), "%s/not-a-kid.json", f->dir);
    write_file(p, "{}", 2);
    expect_load_fails(f, "not-a-kid.json");
}

static void write_pkey(struct fx *f, const char *name, EVP_PKEY *pk, const EVP_CIPHER *enc)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", f->dir, name);
    BIO *bio = BIO_new_file(p, "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, pk, enc, enc ? "pw" : NULL, enc ? 2 : 0, NULL, NULL), 1);
    BIO_free(bio);
}

/* A P-384 key (or an encrypted P-256 one) under a correct-looking name is refused. */
static void test_wrong_curve_and_encrypted_fail(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256], json[256];
    gen_one(f, kid);
    snprintf(json, sizeof(json), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":1}", kid);

    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    assert_non_null(p384);
    snprintf(p, sizeof(p), "%s.pem", kid);
    write_pkey(f, p, p384, NULL);
    EVP_PKEY_free(p384);
    expect_load_fails(f, ".pem");

    EVP_PKEY *p256 = EVP_EC_gen("P-256");
    assert_non_null(p256);
    write_pkey(f, p, p256, EVP_aes_128_cbc());
    EVP_PKEY_free(p256);
    expect_load_fails(f, ".pem");
}

/* Publication order: active, next soonest first, retired most recent first; retired_at is
 * the activate_at of the key that superseded each. */
static void test_publication_order(void **state)
{
    struct fx *f = *state;
    char k[5][KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    assert_int_equal(keys_generate(f->dir, T0, DELAY, k[0]), BROKER_OK);     /* active at T0 */
    assert_int_equal(keys_generate(f->dir, T0 + 1, 10, k[1]), BROKER_OK);    /* T0+11 */
    assert_int_equal(keys_generate(f->dir, T0 + 2, 20, k[2]), BROKER_OK);    /* T0+22 */
    assert_int_equal(keys_generate(f->dir, T0 + 3, 100, k[3]), BROKER_OK);   /* T0+103 */
    assert_int_equal(keys_generate(f->dir, T0 + 4, 50, k[4]), BROKER_OK);    /* T0+54 */
    assert_int_equal(keys_load(f->dir, T0 + 30, &r), BROKER_OK);
    assert_int_equal(r->n, 5);
    const int order[5] = {2, 4, 3, 1, 0};
    const enum key_state st[5] = {KEY_ACTIVE, KEY_NEXT, KEY_NEXT, KEY_RETIRED, KEY_RETIRED};
    const int64_t retired[5] = {0, 0, 0, T0 + 22, T0 + 11};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(r->keys[i].kid, k[order[i]]);
        assert_int_equal(r->keys[i].state, st[i]);
        assert_int_equal(r->keys[i].retired_at, retired[i]);
    }
    assert_ptr_equal(r->active, &r->keys[0]);
    assert_ptr_equal(r->next, &r->keys[1]);
    expect_jwks_matches(r);
    keys_free(r);
}

/* A well-formed PKCS#8 file whose embedded public key is not the private scalar's. */
static void test_mismatched_keypair_fails(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256"), *mix = NULL;
    BIGNUM *priv = NULL;
    uint8_t pub[65];
    size_t publen = 0;
    char kid[32], name[64], json[256], p[256];
    unsigned char *der = NULL;
    uint8_t h[32];
    assert_true(a && b);
    assert_int_equal(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_PRIV_KEY, &priv), 1);
    assert_int_equal(EVP_PKEY_get_octet_string_param(b, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &publen), 1);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, publen);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &mix, EVP_PKEY_KEYPAIR, params), 1);
    int len = i2d_PUBKEY(mix, &der);
    assert_true(len > 0);
    SHA256(der, (size_t)len, h);
    OPENSSL_free(der);
    kid[b64url_encode(h, 16, kid)] = 0;
    snprintf(name, sizeof(name), "%s.pem", kid);
    write_pkey(f, name, mix, NULL);
    snprintf(json, sizeof(json), "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":1,\"activate_at\":1}", kid);
    snprintf(p, sizeof(p), "%s/%s.json", f->dir, kid);
    write_file(p, json, strlen(json));
    expect_load_fails(f, ".pem");
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(priv);
    EVP_PKEY_free(mix);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

static void test_stray_files_ignored(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1], p[256];
    struct keyring *r = NULL;
    gen_one(f, kid);
    snprintf(p, sizeof(p), "%s/README.md", f->dir);
    write_file(p, "x", 1);
    snprintf(p, sizeof(p), "%s/.%s.json.tmp", f->dir, kid);
    write_file(p, "{", 1);
    /* a key whose metadata was never written (generate interrupted) is not published */
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    write_pkey(f, "BBBBBBBBBBBBBBBBBBBBBB.pem", pk, NULL);
    EVP_PKEY_free(pk);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    assert_int_equal(r->n, 1);
    assert_string_equal(r->active->kid, kid);
    keys_free(r);
}

static void expect_sig_verifies(EVP_PKEY *pk, const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    assert_true(test_es256_verifies(pk, msg, len, sig));
}

static void test_sign_verifies_and_tamper_fails(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    uint8_t sig[64], sig2[64];
    const uint8_t msg[] = "header.payload";
    gen_one(f, kid);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    assert_int_equal(keys_sign(r->active, msg, sizeof(msg) - 1, sig), BROKER_OK);
    expect_sig_verifies(r->active->pkey, msg, sizeof(msg) - 1, sig);
    /* random nonce: a second signature differs and also verifies */
    assert_int_equal(keys_sign(r->active, msg, sizeof(msg) - 1, sig2), BROKER_OK);
    assert_memory_not_equal(sig, sig2, 64);
    expect_sig_verifies(r->active->pkey, msg, sizeof(msg) - 1, sig2);
    /* a changed message does not verify */
    assert_false(test_es256_verifies(r->active->pkey, (const uint8_t *)"header.payloaD", 14, sig));
    assert_int_equal(keys_sign(NULL, msg, 1, sig), BROKER_ERR_INTERNAL);
    keys_free(r);
}

/* r and s shorter than 32 bytes (a leading zero byte, about 1 in 128 signatures) come out
 * left-padded and verify: 2,000 signatures all verify and include such a short value. */
static void test_sign_short_integers(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    uint8_t sig[64];
    const uint8_t msg[] = "header.payload";
    int short_values = 0;
    gen_one(f, kid);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(keys_sign(r->active, msg, sizeof(msg) - 1, sig), BROKER_OK);
        if (sig[0] == 0 || sig[32] == 0) {
            short_values++;
            expect_sig_verifies(r->active->pkey, msg, sizeof(msg) - 1, sig);
        }
    }
    assert_true(short_values > 0);
    keys_free(r);
}

struct sign_job {
    const struct keyring *ring;
    int failures;
};

static void *sign_worker(void *arg)
{
    struct sign_job *j = arg;
    uint8_t msg[64], sig[64];
    for (int i = 0; i < 200; i++) {
        /* alternate keys so the per-thread context is rebound while others sign */
        const struct signing_key *k = &j->ring->keys[(size_t)i % j->ring->n];
        snprintf((char *)msg, sizeof(msg), "msg-%d-%p", i, (void *)j);
        size_t len = strlen((char *)msg);
        if (keys_sign(k, msg, len, sig) != BROKER_OK) {
            j->failures++;
            continue;
        }
        if (!test_es256_verifies(k->pkey, msg, len, sig))
            j->failures++;
    }
    return NULL; /* the thread-exit destructor frees the signing context */
}

static void test_sign_concurrent(void **state)
{
    struct fx *f = *state;
    char k1[KEYS_KID_MAX + 1], k2[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    pthread_t th[4];
    struct sign_job jobs[4];
    gen_one(f, k1);
    assert_int_equal(keys_generate(f->dir, T0, DELAY, k2), BROKER_OK);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    assert_int_equal(r->n, 2);
    for (int i = 0; i < 4; i++) {
        jobs[i].ring = r;
        jobs[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, sign_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
    keys_free(r);
}

/* Signing still works after the ring that last signed on this thread was freed and a new
 * ring loaded (the cached context must not outlive or confuse keys). */
static void test_sign_across_reload(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    uint8_t sig[64];
    gen_one(f, kid);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
        assert_int_equal(keys_sign(r->active, (const uint8_t *)"m", 1, sig), BROKER_OK);
        expect_sig_verifies(r->active->pkey, (const uint8_t *)"m", 1, sig);
        keys_free(r);
    }
}

/* The batch signer: every signature verifies over its own message and no other, every nonce is
 * fresh (even for one message signed twice in a batch), batches from KEYS_SIGN_BATCH_MIN on are
 * signed together (not silently one by one), and sizes around the limits (chunks of
 * KEYS_SIGN_BATCH_MAX, a small remainder) all come out right. */
static void test_sign_batch_sizes(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    static const size_t sizes[] = {0, 1, KEYS_SIGN_BATCH_MIN - 1, KEYS_SIGN_BATCH_MIN, 7, KEYS_SIGN_BATCH_MAX,
                                   KEYS_SIGN_BATCH_MAX + 1, KEYS_SIGN_BATCH_MAX + KEYS_SIGN_BATCH_MIN, 150};
    enum { MAXN = 150 };
    static struct keys_sign_item it[MAXN];
    static char msgs[MAXN][32];
    gen_one(f, kid);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t n = sizes[si], expect_together = 0;
        for (size_t i = 0; i < n; i++) {
            /* the last two items carry the same message: their nonces must still differ */
            snprintf(msgs[i], sizeof(msgs[i]), "h.p-%zu-%zu", n, i + 1 == n && n > 1 ? i - 1 : i);
            it[i] = (struct keys_sign_item){.msg = (const uint8_t *)msgs[i], .len = strlen(msgs[i]), .rc = BROKER_OK};
            memset(it[i].sig, 0, sizeof(it[i].sig));
        }
        for (size_t left = n; left > 0;) {
            size_t m = left < KEYS_SIGN_BATCH_MAX ? left : KEYS_SIGN_BATCH_MAX;
            expect_together += m >= KEYS_SIGN_BATCH_MIN ? m : 0;
            left -= m;
        }
        assert_int_equal(keys_sign_batch(r->active, it, n), expect_together);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(it[i].rc, BROKER_OK);
            expect_sig_verifies(r->active->pkey, it[i].msg, it[i].len, it[i].sig);
            for (size_t j = 0; j < i; j++)
                assert_memory_not_equal(it[i].sig, it[j].sig, 32); /* r differs: k differs */
        }
        if (n > 1) /* a signature does not verify over its neighbour's message */
            assert_false(test_es256_verifies(r->active->pkey, it[1].msg, it[1].len, it[0].sig));
    }
    /* no key: every item fails, nothing is signed */
    it[0] = (struct keys_sign_item){.msg = (const uint8_t *)"m", .len = 1};
    assert_int_equal(keys_sign_batch(NULL, it, 1), 0);
    assert_int_equal(it[0].rc, BROKER_ERR_INTERNAL);
    keys_free(r);
}

/* 3,000 batch signatures (about 23 with a short r or s) all verify; batches alternate between two
 * keys so the thread's batch state is rebuilt for each key while the ring lives. */
static void test_sign_batch_many_two_keys(void **state)
{
    struct fx *f = *state;
    char k1[KEYS_KID_MAX + 1], k2[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    struct keys_sign_item it[KEYS_SIGN_BATCH_MAX];
    char msgs[KEYS_SIGN_BATCH_MAX][32];
    int short_values = 0;
    gen_one(f, k1);
    assert_int_equal(keys_generate(f->dir, T0, DELAY, k2), BROKER_OK);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    assert_int_equal(r->n, 2);
    for (int b = 0; b < 3000 / 50; b++) {
        const struct signing_key *k = &r->keys[b % 2];
        for (size_t i = 0; i < 50; i++) {
            snprintf(msgs[i], sizeof(msgs[i]), "m-%d-%zu", b, i);
            it[i] = (struct keys_sign_item){.msg = (const uint8_t *)msgs[i], .len = strlen(msgs[i])};
        }
        assert_int_equal(keys_sign_batch(k, it, 50), 50);
        for (size_t i = 0; i < 50; i++) {
            assert_int_equal(it[i].rc, BROKER_OK);
            expect_sig_verifies(k->pkey, it[i].msg, it[i].len, it[i].sig);
            short_values += it[i].sig[0] == 0 || it[i].sig[32] == 0;
        }
    }
    assert_true(short_values > 0);
    keys_free(r);
}

/* One bad message (NULL with a length) in a batch of 8: that one fails, the whole chunk falls
 * back to one-by-one signing (nothing signed together), and the other seven still verify. */
static void test_sign_batch_one_bad_item(void **state)
{
    struct fx *f = *state;
    char kid[KEYS_KID_MAX + 1];
    struct keyring *r = NULL;
    struct keys_sign_item it[8];
    char msgs[8][16];
    gen_one(f, kid);
    assert_int_equal(keys_load(f->dir, T0, &r), BROKER_OK);
    for (size_t i = 0; i < 8; i++) {
        snprintf(msgs[i], sizeof(msgs[i]), "m-%zu", i);
        it[i] = (struct keys_sign_item){.msg = (const uint8_t *)msgs[i], .len = strlen(msgs[i])};
    }
    it[3].msg = NULL;
    it[3].len = 5;
    assert_int_equal(keys_sign_batch(r->active, it, 8), 0);
    for (size_t i = 0; i < 8; i++) {
        if (i == 3) {
            assert_int_equal(it[i].rc, BROKER_ERR_INTERNAL);
            continue;
        }
        assert_int_equal(it[i].rc, BROKER_OK);
        expect_sig_verifies(r->active->pkey, it[i].msg, it[i].len, it[i].sig);
    }
    keys_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_dir_loads_without_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_key_active_files_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_next_active_retired_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_negative_delay_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_pem_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_pem_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_garbage_pem_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_json_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_without_pem_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_swapped_under_kid_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_json_name_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_curve_and_encrypted_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publication_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatched_keypair_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_files_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_short_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_verifies_and_tamper_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_across_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_batch_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_batch_many_two_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_batch_one_bad_item, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
