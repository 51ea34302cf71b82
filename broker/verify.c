/* Signature and time-window checks. OpenSSL EVP only; keys arrive pre-parsed from jwks.c,
 * so a verification costs a digest and the public-key operation on a per-thread cached context. */
#include <string.h>
#include <limits.h> /* before openssl/err.h: OpenSSL 3.0's err.h uses INT_MAX without it */
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include "verify.h"
#include "prof.h"

/* Largest DER ECDSA-Sig-Value: P-521, two 67-byte INTEGERs with headers, long-form length. */
#define ECDSA_DER_MAX 160

bool verify_alg_fits_key(enum jwt_alg alg, const struct jwk *key)
{
    return jwks_key_fits_alg(key, alg);
}

static const EVP_MD *alg_md(enum jwt_alg alg)
{
    switch (alg) {
    case JWT_ALG_RS256: case JWT_ALG_PS256: case JWT_ALG_ES256: case JWT_ALG_HS256:
        return EVP_sha256();
    case JWT_ALG_RS384: case JWT_ALG_PS384: case JWT_ALG_ES384: case JWT_ALG_HS384:
        return EVP_sha384();
    case JWT_ALG_RS512: case JWT_ALG_PS512: case JWT_ALG_ES512: case JWT_ALG_HS512:
        return EVP_sha512();
    default:
        return NULL; /* EdDSA hashes internally */
    }
}

static enum broker_err verify_hmac(const struct jwk *key, const EVP_MD *md, const uint8_t *msg, size_t msg_len,
                                   const uint8_t *sig, size_t sig_len)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t dlen = (size_t)EVP_MD_get_size(md);
    enum broker_err err = BROKER_ERR_BAD_SIGNATURE;

    /* RFC 7518 §3.2: the key must be at least as long as the hash output. */
    if (key->secret == NULL || key->secret_len < dlen || key->secret_len > INT32_MAX) {
        err = BROKER_ERR_ALG_NOT_ALLOWED;
        goto done;
    }
    if (sig_len != dlen)
        goto done;
    if (HMAC(md, key->secret, (int)key->secret_len, msg, msg_len, mac, &mac_len) == NULL || mac_len != dlen) {
        err = BROKER_ERR_INTERNAL;
        goto done;
    }
    if (CRYPTO_memcmp(mac, sig, dlen) == 0)
        err = BROKER_OK;
done:
    OPENSSL_cleanse(mac, sizeof(mac));
    return err;
}

/* JWS carries ECDSA as raw r||s of exactly twice the field size (RFC 7518 §3.4); OpenSSL wants
 * DER. Any other length is refused, so an ES256 signature can never be presented as ES384. */
static enum broker_err ecdsa_to_der(const uint8_t *sig, size_t sig_len, size_t clen, uint8_t *der, size_t *der_len)
{
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *w = der;
    int n;
    enum broker_err err = BROKER_ERR_BAD_SIGNATURE;

    if (sig_len != 2 * clen)
        goto done;
    err = BROKER_ERR_NOMEM;
    if ((es = ECDSA_SIG_new()) == NULL || (r = BN_bin2bn(sig, (int)clen, NULL)) == NULL ||
        (s = BN_bin2bn(sig + clen, (int)clen, NULL)) == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto done;
    r = s = NULL; /* owned by es now */
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || n > ECDSA_DER_MAX || i2d_ECDSA_SIG(es, &w) != n) {
        err = BROKER_ERR_INTERNAL;
        goto done;
    }
    *der_len = (size_t)n;
    err = BROKER_OK;
done:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return err;
}

/* Per-thread verification contexts, one per (key, alg), initialised once: EVP_DigestVerifyInit
 * costs about as much as an RSA-2048 verify itself (provider fetches, key export). A cached
 * context holds a reference to its key, so a key's address cannot be reused while cached. */
#define VERIFY_CACHE_SLOTS 8
struct verify_slot {
    const EVP_PKEY *pkey;
    enum jwt_alg alg;
    EVP_PKEY_CTX *ctx;
};
static _Thread_local struct verify_slot verify_cache[VERIFY_CACHE_SLOTS];
static _Thread_local unsigned verify_cache_next;

void verify_thread_cleanup(void)
{
    for (unsigned i = 0; i < VERIFY_CACHE_SLOTS; i++) {
        EVP_PKEY_CTX_free(verify_cache[i].ctx);
        verify_cache[i] = (struct verify_slot){0};
    }
}

static EVP_PKEY_CTX *verify_ctx(EVP_PKEY *pkey, enum jwt_alg alg, const EVP_MD *md, bool pss)
{
    for (unsigned i = 0; i < VERIFY_CACHE_SLOTS; i++)
        if (verify_cache[i].pkey == pkey && verify_cache[i].alg == alg && verify_cache[i].ctx != NULL)
            return verify_cache[i].ctx;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (c == NULL || EVP_PKEY_verify_init(c) != 1 || EVP_PKEY_CTX_set_signature_md(c, md) != 1)
        goto fail;
    /* JWS PS*: MGF1 with the same hash and a salt exactly as long as the hash (RFC 7518 §3.5). */
    if (pss && (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) != 1 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) != 1 ||
                EVP_PKEY_CTX_set_rsa_mgf1_md(c, md) != 1))
        goto fail;
    struct verify_slot *s = &verify_cache[verify_cache_next++ % VERIFY_CACHE_SLOTS];
    EVP_PKEY_CTX_free(s->ctx);
    *s = (struct verify_slot){.pkey = pkey, .alg = alg, .ctx = c};
    return c;
fail:
    EVP_PKEY_CTX_free(c);
    return NULL;
}

/* Digests fetched once: the legacy EVP_sha256() objects trigger an implicit fetch per use. */
static EVP_MD *fetched_md[3];
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void fetch_mds(void)
{
    fetched_md[0] = EVP_MD_fetch(NULL, "SHA256", NULL);
    fetched_md[1] = EVP_MD_fetch(NULL, "SHA384", NULL);
    fetched_md[2] = EVP_MD_fetch(NULL, "SHA512", NULL);
}

static const EVP_MD *fast_md(const EVP_MD *md)
{
    pthread_once(&md_once, fetch_mds);
    int bits = EVP_MD_get_size(md) * 8;
    const EVP_MD *f = bits == 256 ? fetched_md[0] : bits == 384 ? fetched_md[1] : bits == 512 ? fetched_md[2] : NULL;
    return f != NULL ? f : md;
}

static enum broker_err evp_verify(EVP_PKEY *pkey, enum jwt_alg alg, const EVP_MD *md, bool pss, const uint8_t *msg,
                                  size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    enum broker_err err = BROKER_ERR_INTERNAL;
    if (md == NULL) { /* EdDSA: one-shot over the message, no pre-hash */
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (ctx == NULL)
            return BROKER_ERR_NOMEM;
        if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1)
            err = EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1 ? BROKER_OK : BROKER_ERR_BAD_SIGNATURE;
        EVP_MD_CTX_free(ctx);
        return err;
    }
    md = fast_md(md);
    uint8_t dgst[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    EVP_PKEY_CTX *c = verify_ctx(pkey, alg, md, pss);
    if (c == NULL || EVP_Digest(msg, msg_len, dgst, &dlen, md, NULL) != 1)
        return err;
    int64_t t0 = prof_begin();
    int ok = EVP_PKEY_verify(c, sig, sig_len, dgst, dlen);
    prof_end(PROF_VERIFY, t0);
    return ok == 1 ? BROKER_OK : BROKER_ERR_BAD_SIGNATURE;
}

enum broker_err verify_signature(const struct jwk *key, enum jwt_alg alg, const uint8_t *msg, size_t msg_len,
                                 const uint8_t *sig, size_t sig_len)
{
    static const size_t ec_clen[] = {[JWK_EC_P256] = 32, [JWK_EC_P384] = 48, [JWK_EC_P521] = 66};
    uint8_t der[ECDSA_DER_MAX];
    size_t der_len;
    const EVP_MD *md = alg_md(alg);
    enum broker_err err = BROKER_ERR_ALG_NOT_ALLOWED;

    if (key == NULL || (msg == NULL && msg_len != 0) || (sig == NULL && sig_len != 0) ||
        !verify_alg_fits_key(alg, key))
        goto done;
    switch (key->type) {
    case JWK_OCT:
        err = verify_hmac(key, md, msg, msg_len, sig, sig_len);
        break;
    case JWK_RSA:
        /* RFC 8017 §8.2.2: a signature is exactly k octets; OpenSSL would accept it shorter. */
        if (sig_len != (size_t)EVP_PKEY_get_size(key->pkey)) {
            err = BROKER_ERR_BAD_SIGNATURE;
            break;
        }
        err = evp_verify(key->pkey, alg, md, alg >= JWT_ALG_PS256 && alg <= JWT_ALG_PS512, msg, msg_len, sig, sig_len);
        break;
    case JWK_EC_P256: case JWK_EC_P384: case JWK_EC_P521:
        if ((err = ecdsa_to_der(sig, sig_len, ec_clen[key->type], der, &der_len)) != BROKER_OK)
            break;
        err = evp_verify(key->pkey, alg, md, false, msg, msg_len, der, der_len);
        break;
    case JWK_OKP_ED25519:
        err = sig_len == 64 ? evp_verify(key->pkey, alg, NULL, false, msg, msg_len, sig, sig_len)
                            : BROKER_ERR_BAD_SIGNATURE;
        break;
    default:
        break;
    }
done:
    ERR_clear_error(); /* a failed verify leaves entries on the thread's error queue */
    return err;
}

enum broker_err verify_times(const json_t *claims, int64_t now, int64_t leeway_s)
{
    int64_t exp, nbf, iat;
    bool has_exp, has_nbf, has_iat;

    /* Clamped so that no sum or difference below can overflow, whatever the caller passes. */
    if (leeway_s < 0)
        leeway_s = 0;
    if (leeway_s > INT32_MAX)
        leeway_s = INT32_MAX;
    if (jwt_claim_time(claims, "exp", &has_exp, &exp) != BROKER_OK ||
        jwt_claim_time(claims, "nbf", &has_nbf, &nbf) != BROKER_OK ||
        jwt_claim_time(claims, "iat", &has_iat, &iat) != BROKER_OK)
        return BROKER_ERR_BAD_CLAIM;
    if (!has_exp)
        return BROKER_ERR_MISSING_EXP;
    /* Valid while now < exp + leeway; claims are in [0, 2^53], so exp + leeway and nbf - leeway
     * cannot overflow, and now is never added to. */
    if (exp + leeway_s <= now)
        return BROKER_ERR_EXPIRED;
    if ((has_nbf && nbf - leeway_s > now) || (has_iat && iat - leeway_s > now))
        return BROKER_ERR_NOT_YET_VALID;
    return BROKER_OK;
}

enum broker_err verify_jwt(const struct jwt *t, const struct jwks *keys, uint32_t allowed_algs, int64_t now,
                           int64_t leeway_s)
{
    const struct jwk *key;
    enum broker_err err;

    if (t == NULL || keys == NULL || t->claims == NULL)
        return BROKER_ERR_INTERNAL;
    /* The issuer's list decides; HMAC is only possible when the caller's mask names it. */
    if (t->alg <= JWT_ALG_INVALID || t->alg >= JWT_ALG__COUNT || (allowed_algs & JWT_ALG_BIT(t->alg)) == 0)
        return BROKER_ERR_ALG_NOT_ALLOWED;
    key = jwks_find(keys, t->kid, t->alg);
    if (key == NULL)
        return BROKER_ERR_UNKNOWN_KID;
    err = verify_signature(key, t->alg, t->signing_input, t->signing_input_len, t->sig, t->sig_len);
    if (err != BROKER_OK)
        return err;
    return verify_times(t->claims, now, leeway_s);
}
