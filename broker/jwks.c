/* Pure JWKS parser: JSON text -> OpenSSL key objects, built once per fetched document so the
 * request path never parses key material. Anything we cannot use safely is skipped; anything
 * that looks like a usable key but is broken fails the whole document (fail closed). */
#include <string.h>
#include <limits.h> /* before openssl/err.h: OpenSSL 3.0's err.h uses INT_MAX without it */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include "jwks.h"
#include "b64.h"

#define RSA_N_MAX_BYTES (BROKER_MAX_RSA_BITS / 8 + 1) /* one leading zero byte tolerated */
#define RSA_E_MAX_BITS 32
#define JWKS_OCT_MAX_BYTES 1024
#define EC_COORD_MAX 66

bool jwks_key_fits_alg(const struct jwk *key, enum jwt_alg alg)
{
    bool ok;

    if (key == NULL)
        return false;
    switch (alg) {
    case JWT_ALG_RS256: case JWT_ALG_RS384: case JWT_ALG_RS512:
    case JWT_ALG_PS256: case JWT_ALG_PS384: case JWT_ALG_PS512:
        ok = key->type == JWK_RSA;
        break;
    case JWT_ALG_ES256: ok = key->type == JWK_EC_P256; break;
    case JWT_ALG_ES384: ok = key->type == JWK_EC_P384; break;
    case JWT_ALG_ES512: ok = key->type == JWK_EC_P521; break;
    case JWT_ALG_EDDSA: ok = key->type == JWK_OKP_ED25519; break;
    case JWT_ALG_HS256: case JWT_ALG_HS384: case JWT_ALG_HS512:
        ok = key->type == JWK_OCT;
        break;
    default:
        ok = false;
        break;
    }
    /* A JWK that names its "alg" may be used with that algorithm only (RFC 7517 §4.4). */
    return ok && (key->alg == JWT_ALG_INVALID || key->alg == alg);
}

static bool json_str_is(const json_t *v, const char *s)
{
    return json_is_string(v) && json_string_length(v) == strlen(s) && strcmp(json_string_value(v), s) == 0;
}

/* Decode a required base64url member into buf; exact_len != 0 demands that decoded size. */
static bool get_b64(const json_t *o, const char *name, uint8_t *buf, size_t cap, size_t exact_len, size_t *out_len)
{
    const json_t *v = json_object_get(o, name);

    if (!json_is_string(v))
        return false;
    if (b64url_decode((const uint8_t *)json_string_value(v), json_string_length(v), buf, cap, out_len) != BROKER_OK)
        return false;
    return *out_len > 0 && (exact_len == 0 || *out_len == exact_len);
}

/* Common RSA sanity for JWK and PEM keys: size in policy, odd modulus, small odd e >= 3. */
static bool rsa_params_ok(const BIGNUM *n, const BIGNUM *e)
{
    int bits = BN_num_bits(n);

    return bits >= BROKER_MIN_RSA_BITS && bits <= BROKER_MAX_RSA_BITS && BN_is_odd(n) && BN_is_odd(e) &&
           !BN_is_one(e) && BN_num_bits(e) <= RSA_E_MAX_BITS;
}

static enum broker_err rsa_from_jwk(const json_t *o, struct jwk *k)
{
    uint8_t nb[RSA_N_MAX_BYTES], eb[RSA_E_MAX_BITS / 8];
    size_t nlen, elen;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    if (!get_b64(o, "n", nb, sizeof(nb), 0, &nlen) || !get_b64(o, "e", eb, sizeof(eb), 0, &elen))
        goto done;
    n = BN_bin2bn(nb, (int)nlen, NULL);
    e = BN_bin2bn(eb, (int)elen, NULL);
    if (n == NULL || e == NULL) {
        err = BROKER_ERR_NOMEM;
        goto done;
    }
    if (!rsa_params_ok(n, e))
        goto done;
    err = BROKER_ERR_NOMEM;
    if ((bld = OSSL_PARAM_BLD_new()) == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL)
        goto done;
    err = BROKER_ERR_INVALID_DOCUMENT;
    if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &k->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto done;
    k->type = JWK_RSA;
    err = BROKER_OK;
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return err;
}

/* Full public-key validation (EC: on the curve, not infinity, right order). */
static bool pkey_public_ok(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    bool ok = c != NULL && EVP_PKEY_public_check(c) == 1;

    EVP_PKEY_CTX_free(c);
    return ok;
}

static enum broker_err ec_from_jwk(const json_t *o, enum jwk_type type, struct jwk *k)
{
    static const struct { const char *group; size_t clen; } curves[] = {
        [JWK_EC_P256] = {"prime256v1", 32}, [JWK_EC_P384] = {"secp384r1", 48}, [JWK_EC_P521] = {"secp521r1", 66},
    };
    uint8_t pt[1 + 2 * EC_COORD_MAX];
    size_t clen = curves[type].clen, got;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM params[3];
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    /* Uncompressed SEC1 point; coordinates must be exactly the field size (RFC 7518 §6.2.1.2). */
    pt[0] = 0x04;
    if (!get_b64(o, "x", pt + 1, clen, clen, &got) || !get_b64(o, "y", pt + 1 + clen, clen, clen, &got))
        goto done;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)curves[type].group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * clen);
    params[2] = OSSL_PARAM_construct_end();
    if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL) {
        err = BROKER_ERR_NOMEM;
        goto done;
    }
    if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &k->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto done;
    if (!pkey_public_ok(k->pkey))
        goto done;
    k->type = type;
    err = BROKER_OK;
done:
    EVP_PKEY_CTX_free(ctx);
    return err;
}

static enum broker_err okp_from_jwk(const json_t *o, struct jwk *k)
{
    uint8_t x[32];
    size_t got;

    if (!get_b64(o, "x", x, sizeof(x), sizeof(x), &got))
        return BROKER_ERR_INVALID_DOCUMENT;
    k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, sizeof(x));
    if (k->pkey == NULL)
        return BROKER_ERR_INVALID_DOCUMENT;
    k->type = JWK_OKP_ED25519;
    return BROKER_OK;
}

static enum broker_err oct_from_jwk(const json_t *o, struct jwk *k)
{
    uint8_t buf[JWKS_OCT_MAX_BYTES];
    size_t got;
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    if (!get_b64(o, "k", buf, sizeof(buf), 0, &got))
        goto done;
    if ((k->secret = OPENSSL_malloc(got)) == NULL) {
        err = BROKER_ERR_NOMEM;
        goto done;
    }
    memcpy(k->secret, buf, got);
    k->secret_len = got;
    k->type = JWK_OCT;
    err = BROKER_OK;
done:
    OPENSSL_cleanse(buf, sizeof(buf));
    return err;
}

static void jwk_clear(struct jwk *k)
{
    EVP_PKEY_free(k->pkey);
    if (k->secret != NULL) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        OPENSSL_free(k->secret);
    }
    memset(k, 0, sizeof(*k));
}

/* "key_ops", when present, must allow "verify" (RFC 7517 §4.3). */
static bool key_ops_allow_verify(const json_t *ops)
{
    size_t i;
    json_t *e;

    if (ops == NULL)
        return true;
    if (!json_is_array(ops))
        return false;
    json_array_foreach(ops, i, e) {
        if (json_str_is(e, "verify"))
            return true;
    }
    return false;
}

/* Parse one JWK into *k; *used is false (and *k empty) when the key is skipped. */
static enum broker_err parse_key(const json_t *o, unsigned flags, struct jwk *k, bool *used)
{
    const json_t *kty, *v, *crv;
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    *used = false;
    memset(k, 0, sizeof(*k));
    kty = json_object_get(o, "kty");
    if (!json_is_object(o) || !json_is_string(kty))
        goto done;
    v = json_object_get(o, "kid");
    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) > BROKER_MAX_KID_LEN)
            goto done;
        memcpy(k->kid, json_string_value(v), json_string_length(v) + 1);
    }
    err = BROKER_OK; /* from here on, a key we cannot use is skipped */
    v = json_object_get(o, "use");
    if (v != NULL && !json_str_is(v, "sig"))
        goto done;
    if (!key_ops_allow_verify(json_object_get(o, "key_ops")))
        goto done;
    v = json_object_get(o, "alg");
    if (v != NULL && (!json_is_string(v) ||
                      (k->alg = jwt_alg_from_name(json_string_value(v), json_string_length(v))) == JWT_ALG_INVALID))
        goto done;

    crv = json_object_get(o, "crv");
    if (json_str_is(kty, "RSA")) {
        err = rsa_from_jwk(o, k);
    } else if (json_str_is(kty, "EC")) {
        if (!json_is_string(crv))
            err = BROKER_ERR_INVALID_DOCUMENT;
        else if (json_str_is(crv, "P-256"))
            err = ec_from_jwk(o, JWK_EC_P256, k);
        else if (json_str_is(crv, "P-384"))
            err = ec_from_jwk(o, JWK_EC_P384, k);
        else if (json_str_is(crv, "P-521"))
            err = ec_from_jwk(o, JWK_EC_P521, k);
    } else if (json_str_is(kty, "OKP")) {
        if (!json_is_string(crv))
            err = BROKER_ERR_INVALID_DOCUMENT;
        else if (json_str_is(crv, "Ed25519"))
            err = okp_from_jwk(o, k);
    } else if (json_str_is(kty, "oct") && (flags & JWKS_ALLOW_SYMMETRIC)) {
        err = oct_from_jwk(o, k);
    }
    /* k->type stays 0 for skipped kty/crv; a key whose "alg" contradicts its type is unusable. */
    if (err == BROKER_OK && k->type != 0 && (k->alg == JWT_ALG_INVALID || jwks_key_fits_alg(k, k->alg)))
        *used = true;
done:
    if (!*used)
        jwk_clear(k);
    ERR_clear_error(); /* keep OpenSSL's per-thread queue from growing on rejected keys */
    return err;
}

static enum broker_err add_key(struct jwks *set, const json_t *o, unsigned flags)
{
    struct jwk *k = &set->keys[set->n];
    bool used;
    enum broker_err err = parse_key(o, flags, k, &used);

    if (err != BROKER_OK || !used)
        return err;
    if (k->kid[0] != '\0') {
        for (size_t i = 0; i < set->n; i++) {
            if (strcmp(set->keys[i].kid, k->kid) == 0) {
                jwk_clear(k); /* two keys with one kid: which one signs is ambiguous */
                return BROKER_ERR_INVALID_DOCUMENT;
            }
        }
    }
    set->n++;
    return BROKER_OK;
}

enum broker_err jwks_parse(const uint8_t *p, size_t len, unsigned flags, struct jwks **out)
{
    json_t *root = NULL, *keys, *e;
    struct jwks *set = NULL;
    size_t i;
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    *out = NULL;
    if (p == NULL || len > BROKER_MAX_JWKS_BYTES)
        goto done;
    root = jwt_json_load_strict(p, len, BROKER_MAX_JSON_DEPTH);
    if (!json_is_object(root))
        goto done;
    if ((set = calloc(1, sizeof(*set))) == NULL) {
        err = BROKER_ERR_NOMEM;
        goto done;
    }
    keys = json_object_get(root, "keys");
    if (keys == NULL) {
        err = add_key(set, root, flags);
    } else if (!json_is_array(keys) || json_array_size(keys) > BROKER_MAX_JWKS_KEYS) {
        err = BROKER_ERR_INVALID_DOCUMENT;
    } else {
        err = BROKER_OK;
        json_array_foreach(keys, i, e) {
            if ((err = add_key(set, e, flags)) != BROKER_OK)
                break;
        }
    }
    if (err == BROKER_OK && set->n == 0)
        err = BROKER_ERR_INVALID_DOCUMENT;
done:
    if (err == BROKER_OK)
        *out = set;
    else
        jwks_free(set);
    json_decref(root);
    return err;
}

void jwks_free(struct jwks *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        jwk_clear(&set->keys[i]);
    free(set);
}

/* Never prompt for a passphrase: a public key or certificate needs none. */
static int on_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Classify an EVP_PKEY loaded from PEM into our key types, with the same checks as JWKs. */
static enum broker_err classify_pkey(EVP_PKEY *pkey, struct jwk *k)
{
    char group[32];
    BIGNUM *n = NULL, *e = NULL;
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
            EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1 || !rsa_params_ok(n, e))
            goto done;
        k->type = JWK_RSA;
        break;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) != 1 ||
            !pkey_public_ok(pkey))
            goto done;
        if (strcmp(group, "prime256v1") == 0)
            k->type = JWK_EC_P256;
        else if (strcmp(group, "secp384r1") == 0)
            k->type = JWK_EC_P384;
        else if (strcmp(group, "secp521r1") == 0)
            k->type = JWK_EC_P521;
        else
            goto done;
        break;
    case EVP_PKEY_ED25519:
        k->type = JWK_OKP_ED25519;
        break;
    default:
        goto done;
    }
    err = BROKER_OK;
done:
    BN_free(n);
    BN_free(e);
    return err;
}

/* kid = base64url(SHA-256(DER SubjectPublicKeyInfo)), as kube-apiserver derives it. */
static enum broker_err spki_kid(EVP_PKEY *pkey, char *kid, size_t cap)
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    unsigned char *der = NULL;
    int der_len = i2d_PUBKEY(pkey, &der);
    size_t n;

    if (der_len <= 0 || cap < B64URL_ENCODED_LEN(sizeof(md)) + 1) {
        OPENSSL_free(der);
        return BROKER_ERR_INVALID_DOCUMENT;
    }
    SHA256(der, (size_t)der_len, md);
    OPENSSL_free(der);
    n = b64url_encode(md, sizeof(md), kid);
    kid[n] = '\0';
    return BROKER_OK;
}

enum broker_err jwks_from_pem(const uint8_t *p, size_t len, struct jwks **out)
{
    BIO *bio = NULL;
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    struct jwks *set = NULL;
    enum broker_err err = BROKER_ERR_INVALID_DOCUMENT;

    *out = NULL;
    if (p == NULL || len == 0 || len > BROKER_MAX_JWKS_BYTES)
        goto done;
    if ((bio = BIO_new_mem_buf(p, (int)len)) == NULL) {
        err = BROKER_ERR_NOMEM;
        goto done;
    }
    pkey = PEM_read_bio_PUBKEY(bio, NULL, on_no_password, NULL);
    if (pkey == NULL) {
        BIO_free(bio);
        if ((bio = BIO_new_mem_buf(p, (int)len)) == NULL) {
            err = BROKER_ERR_NOMEM;
            goto done;
        }
        cert = PEM_read_bio_X509(bio, NULL, on_no_password, NULL);
        if (cert == NULL || (pkey = X509_get_pubkey(cert)) == NULL)
            goto done;
    }
    if ((set = calloc(1, sizeof(*set))) == NULL) {
        err = BROKER_ERR_NOMEM;
        goto done;
    }
    if ((err = classify_pkey(pkey, &set->keys[0])) != BROKER_OK ||
        (err = spki_kid(pkey, set->keys[0].kid, sizeof(set->keys[0].kid))) != BROKER_OK)
        goto done;
    set->keys[0].pkey = pkey;
    pkey = NULL;
    set->n = 1;
done:
    if (err == BROKER_OK) {
        *out = set;
    } else {
        free(set); /* n == 0: nothing inside it is owned yet */
    }
    EVP_PKEY_free(pkey);
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    return err;
}

const struct jwk *jwks_find(const struct jwks *set, const char *kid, enum jwt_alg alg)
{
    const struct jwk *found = NULL;

    if (set == NULL)
        return NULL;
    if (kid != NULL && kid[0] != '\0') {
        /* By kid, exactly; whether the key fits alg is verify_alg_fits_key's decision. */
        for (size_t i = 0; i < set->n; i++)
            if (strcmp(set->keys[i].kid, kid) == 0)
                return &set->keys[i];
        return NULL;
    }
    for (size_t i = 0; i < set->n; i++) {
        if (!jwks_key_fits_alg(&set->keys[i], alg))
            continue;
        if (found != NULL)
            return NULL; /* several candidates: guessing would let any of them sign */
        found = &set->keys[i];
    }
    return found;
}
