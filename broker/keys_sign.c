/* ES256 signing with keys parsed once: one message (keys_sign) or an event loop's batch of them
 * (keys_sign_batch).
 *
 * Why a batch: an ECDSA signature needs two modular inversions, of the nonce k (mod n) and of
 * the Z coordinate of k·G (mod p, to get its affine x). In OpenSSL's P-256 sign they are ~40 %
 * of the instructions (callgrind). Montgomery's trick replaces the inversions of a batch of m
 * signatures by one inversion per modulus plus three Montgomery multiplications per element.
 * Everything secret still goes through constant-time code:
 *   - k is OpenSSL's hedged nonce (BN_generate_dsa_nonce: SHA-512 of the private key, the
 *     message digest and fresh DRBG bytes), exactly what ECDSA_do_sign draws;
 *   - k·G is OpenSSL's constant-time fixed-base multiplication (EC_POINT_mul);
 *   - the products are BN_mod_mul_montgomery, a fixed sequence whatever the values; the one
 *     inversion per modulus is Fermat's (BN_mod_exp_mont_consttime, public exponent);
 *   - s = k⁻¹(m + r·d) is OpenSSL's own (ECDSA_do_sign_ex with the precomputed k⁻¹ and r).
 * What differs from OpenSSL's internal path: the public BN API trims a result's leading zero
 * 64-bit words, a timing difference only when a value's top word is zero (probability 2⁻⁶⁴).
 * Every k·k⁻¹ and Z·Z⁻¹ is checked to be 1 before any signature leaves (a wrong k⁻¹ published
 * next to a right one would give the private key away); on any failure the batch is signed
 * one by one instead. */
#include "keys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "prof.h"

/* /metrics: signatures made together and alone, and the batches */
static _Atomic uint64_t signed_together, signed_alone, sign_batches;

/* BN_generate_dsa_nonce returns 0 with probability 2⁻²⁵⁶: retries are bounded, not expected. */
#define KEYS_NONCE_TRIES 8

/* Per-thread signing state. ES256 signs through OpenSSL's EC_KEY method directly: it is the very
 * code the EVP provider runs (the provider's ecdsa_sign calls ECDSA_sign_ex on the same EC_KEY),
 * minus the provider dispatch, the DER encoding of (r, s) and our decoding of it again — about
 * 2 µs of the ~30 µs sign here (`make bench`). The API is deprecated in OpenSSL 3.0, not removed;
 * the calls are fenced below. We hold a reference to the EVP_PKEY as well as to its EC_KEY,
 * so a cached pointer can never be reused by a different key while we compare against it. */
struct keys_sign_ctx {
    EVP_PKEY *pkey;  /* a reference of our own */
    EC_KEY *ec;      /* pkey's legacy EC_KEY, a reference of our own */
    EVP_MD *sha256;
    /* batch state, made by the first batch with this key (all of it public) */
    BN_CTX *bn;
    BN_MONT_CTX *mont_p;        /* the field's (the order's is the group's own) */
    BIGNUM *p, *p_minus_2, *n_minus_2;
    EC_POINT *pt;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static EC_KEY *keys_ec_key(EVP_PKEY *pkey)
{
    return EVP_PKEY_get1_EC_KEY(pkey); /* made once per key, cached inside pkey under its lock */
}

static ECDSA_SIG *keys_ecdsa_sign(const uint8_t digest[32], EC_KEY *ec)
{
    return ECDSA_do_sign(digest, 32, ec);
}

static ECDSA_SIG *keys_ecdsa_sign_ex(const uint8_t digest[32], const BIGNUM *kinv, const BIGNUM *r, EC_KEY *ec)
{
    return ECDSA_do_sign_ex(digest, 32, kinv, r, ec);
}

/* k·G's Jacobian X and Z (affine x = X / Z²), without the inversion EC_POINT_get_affine_coordinates does */
static bool keys_point_xz(const EC_GROUP *g, const EC_POINT *pt, BIGNUM *x, BIGNUM *z, BN_CTX *bn)
{
    return EC_POINT_get_Jprojective_coordinates_GFp(g, pt, x, NULL, z, bn) == 1;
}

static const EC_GROUP *keys_ec_group(const EC_KEY *ec)
{
    return EC_KEY_get0_group(ec);
}

static const BIGNUM *keys_ec_priv(const EC_KEY *ec)
{
    return EC_KEY_get0_private_key(ec);
}

static void keys_ec_key_free(EC_KEY *ec)
{
    EC_KEY_free(ec);
}
#pragma GCC diagnostic pop

static void keys_batch_state_free(struct keys_sign_ctx *c)
{
    BN_CTX_free(c->bn);
    BN_MONT_CTX_free(c->mont_p);
    BN_free(c->p);
    BN_free(c->p_minus_2);
    BN_free(c->n_minus_2);
    EC_POINT_clear_free(c->pt);
    c->bn = NULL;
    c->mont_p = NULL;
    c->p = c->p_minus_2 = c->n_minus_2 = NULL;
    c->pt = NULL;
}

static pthread_key_t keys_tls;
static pthread_once_t keys_tls_once = PTHREAD_ONCE_INIT;
static int keys_tls_ready;

static void keys_sign_ctx_free(void *p)
{
    struct keys_sign_ctx *c = p;
    if (!c)
        return;
    keys_batch_state_free(c);
    keys_ec_key_free(c->ec);
    EVP_PKEY_free(c->pkey);
    EVP_MD_free(c->sha256);
    free(c);
}

static void keys_tls_init(void)
{
    keys_tls_ready = pthread_key_create(&keys_tls, keys_sign_ctx_free) == 0;
}

void keys_thread_cleanup(void)
{
    if (pthread_once(&keys_tls_once, keys_tls_init) != 0 || !keys_tls_ready)
        return;
    keys_sign_ctx_free(pthread_getspecific(keys_tls));
    pthread_setspecific(keys_tls, NULL);
}

static struct keys_sign_ctx *keys_sign_ctx_get(EVP_PKEY *pkey)
{
    struct keys_sign_ctx *c;
    if (pthread_once(&keys_tls_once, keys_tls_init) != 0 || !keys_tls_ready)
        return NULL;
    c = pthread_getspecific(keys_tls);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (!c->sha256 || pthread_setspecific(keys_tls, c) != 0) {
            keys_sign_ctx_free(c);
            return NULL;
        }
    }
    if (c->pkey != pkey) {
        keys_batch_state_free(c);
        keys_ec_key_free(c->ec);
        EVP_PKEY_free(c->pkey);
        c->ec = NULL;
        c->pkey = NULL;
        if (EVP_PKEY_up_ref(pkey) != 1)
            return NULL;
        c->pkey = pkey;
        if (!(c->ec = keys_ec_key(pkey))) {
            EVP_PKEY_free(c->pkey);
            c->pkey = NULL;
            return NULL;
        }
    }
    return c;
}

/* A scalar below the group order into 32 big-endian bytes. Not BN_bn2binpad: that one is
 * constant-time, and r and s are public the moment they are computed. */
static bool keys_bn32(const BIGNUM *v, uint8_t out[32])
{
    int n = BN_num_bytes(v);
    if (n < 0 || n > 32)
        return false;
    memset(out, 0, (size_t)(32 - n));
    return BN_bn2bin(v, out + 32 - n) == n;
}

/* JWS's r || s (RFC 7518 §3.4) */
static bool keys_sig_out(const ECDSA_SIG *es, uint8_t sig[64])
{
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    return keys_bn32(r, sig) && keys_bn32(s, sig + 32);
}

enum broker_err keys_sign(const struct signing_key *k, const uint8_t *msg, size_t len, uint8_t sig[64])
{
    uint8_t digest[32];
    unsigned int dlen = 0;
    enum broker_err rc = BROKER_ERR_INTERNAL;
    struct keys_sign_ctx *c;
    ECDSA_SIG *es = NULL;

    if (!k || !k->pkey || (!msg && len > 0))
        return BROKER_ERR_INTERNAL;
    c = keys_sign_ctx_get(k->pkey);
    if (!c)
        return BROKER_ERR_NOMEM;
    if (EVP_Digest(msg, len, digest, &dlen, c->sha256, NULL) != 1 || dlen != sizeof(digest))
        goto out;
    int64_t t0 = prof_begin();
    es = keys_ecdsa_sign(digest, c->ec);
    prof_end(PROF_SIGN, t0);
    if (!es || !keys_sig_out(es, sig))
        goto out;
    atomic_fetch_add_explicit(&signed_alone, 1, memory_order_relaxed);
    rc = BROKER_OK;
out:
    ECDSA_SIG_free(es);
    if (rc != BROKER_OK)
        OPENSSL_cleanse(sig, 64);
    return rc;
}

static bool keys_batch_state(struct keys_sign_ctx *c)
{
    const EC_GROUP *g = keys_ec_group(c->ec);
    if (c->bn != NULL)
        return true;
    if (g == NULL || (c->bn = BN_CTX_new()) == NULL || (c->mont_p = BN_MONT_CTX_new()) == NULL ||
        (c->p = BN_new()) == NULL || (c->p_minus_2 = BN_new()) == NULL || (c->n_minus_2 = BN_new()) == NULL ||
        (c->pt = EC_POINT_new(g)) == NULL || EC_GROUP_get_curve(g, c->p, NULL, NULL, c->bn) != 1 ||
        BN_MONT_CTX_set(c->mont_p, c->p, c->bn) != 1 || BN_copy(c->p_minus_2, c->p) == NULL ||
        BN_sub_word(c->p_minus_2, 2) != 1 || EC_GROUP_get_mont_data(g) == NULL ||
        BN_copy(c->n_minus_2, EC_GROUP_get0_order(g)) == NULL || BN_sub_word(c->n_minus_2, 2) != 1) {
        keys_batch_state_free(c);
        return false;
    }
    return true;
}

/* out[i] = a[i]⁻¹ mod m for i < n (each a[i] in [1, m)): Montgomery's trick over Montgomery
 * forms, one Fermat inversion. out[i] is in Montgomery form (a[i]⁻¹·R) when mont_out. pre and
 * am are n scratch values each; the caller clears them (they are as secret as a). */
static bool keys_batch_inverse(BIGNUM **out, BIGNUM *const *a, size_t n, const BIGNUM *m, const BIGNUM *m_minus_2,
                               BN_MONT_CTX *mont, bool mont_out, BIGNUM **pre, BIGNUM **am, BIGNUM *inv, BN_CTX *bn)
{
    for (size_t i = 0; i < n; i++) {
        if (BN_to_montgomery(am[i], a[i], mont, bn) != 1) /* a_i·R */
            return false;
        if (i == 0 ? BN_copy(pre[0], am[0]) == NULL : BN_mod_mul_montgomery(pre[i], pre[i - 1], am[i], mont, bn) != 1)
            return false; /* pre[i] = a_0···a_i·R */
    }
    if (BN_from_montgomery(inv, pre[n - 1], mont, bn) != 1)
        return false;
    BN_set_flags(inv, BN_FLG_CONSTTIME);
    if (BN_mod_exp_mont_consttime(inv, inv, m_minus_2, m, bn, mont) != 1 || BN_to_montgomery(inv, inv, mont, bn) != 1)
        return false; /* inv = (a_0···a_{n-1})⁻¹·R */
    for (size_t i = n; i-- > 0;) {
        BIGNUM *o = out[i];
        if (i == 0 ? BN_copy(o, inv) == NULL : BN_mod_mul_montgomery(o, inv, pre[i - 1], mont, bn) != 1)
            return false; /* a_i⁻¹·R */
        if (!mont_out && BN_from_montgomery(o, o, mont, bn) != 1)
            return false;
        if (i > 0 && BN_mod_mul_montgomery(inv, inv, am[i], mont, bn) != 1)
            return false; /* (a_0···a_{i-1})⁻¹·R */
    }
    return true;
}

/* Signs it[0..n) (KEYS_SIGN_BATCH_MIN <= n <= KEYS_SIGN_BATCH_MAX) together: each item's rc is
 * BROKER_OK with its sig, or an error (the caller signs that one alone). Returns false when the
 * whole batch must be signed one by one instead (nothing was written then). */
static bool keys_batch(struct keys_sign_ctx *c, struct keys_sign_item *it, size_t n)
{
    const EC_GROUP *g = keys_ec_group(c->ec);
    const BIGNUM *order = EC_GROUP_get0_order(g), *priv = keys_ec_priv(c->ec);
    BN_MONT_CTX *mont_n = EC_GROUP_get_mont_data(g);
    uint8_t dg[KEYS_SIGN_BATCH_MAX][32];
    BIGNUM *k[KEYS_SIGN_BATCH_MAX], *kinv[KEYS_SIGN_BATCH_MAX], *x[KEYS_SIGN_BATCH_MAX], *z[KEYS_SIGN_BATCH_MAX],
        *zinv[KEYS_SIGN_BATCH_MAX], *pre[KEYS_SIGN_BATCH_MAX], *am[KEYS_SIGN_BATCH_MAX];
    bool ok = false;
    size_t got = 0; /* values taken from the BN_CTX: all of them are cleared at the end */
    BN_CTX *bn = c->bn;

    if (order == NULL || priv == NULL || mont_n == NULL)
        return false;
    BN_CTX_start(bn);
    BIGNUM *t = BN_CTX_get(bn), *r = BN_CTX_get(bn), *inv = BN_CTX_get(bn);
    for (got = 0; got < n; got++) {
        k[got] = BN_CTX_get(bn);
        kinv[got] = BN_CTX_get(bn);
        x[got] = BN_CTX_get(bn);
        z[got] = BN_CTX_get(bn);
        zinv[got] = BN_CTX_get(bn);
        pre[got] = BN_CTX_get(bn);
        if ((am[got] = BN_CTX_get(bn)) == NULL) /* BN_CTX_get fails for good once it has failed */
            break;
    }
    if (t == NULL || got < n)
        goto out;
    for (size_t i = 0; i < n; i++) {
        unsigned int dlen = 0;
        int tries = 0;
        if ((it[i].msg == NULL && it[i].len > 0) ||
            EVP_Digest(it[i].msg, it[i].len, dg[i], &dlen, c->sha256, NULL) != 1 || dlen != 32)
            goto out;
        do {
            if (++tries > KEYS_NONCE_TRIES || BN_generate_dsa_nonce(k[i], order, priv, dg[i], 32, bn) != 1)
                goto out;
        } while (BN_is_zero(k[i]));
        BN_set_flags(k[i], BN_FLG_CONSTTIME);
        if (EC_POINT_mul(g, c->pt, k[i], NULL, NULL, bn) != 1 || !keys_point_xz(g, c->pt, x[i], z[i], bn))
            goto out;
    }
    if (!keys_batch_inverse(zinv, z, n, c->p, c->p_minus_2, c->mont_p, true, pre, am, inv, bn) ||
        !keys_batch_inverse(kinv, k, n, order, c->n_minus_2, mont_n, false, pre, am, inv, bn))
        goto out;
    for (size_t i = 0; i < n; i++) { /* k·k⁻¹ = 1 (mod n) and Z·Z⁻¹ = 1 (mod p), or nothing leaves */
        if (BN_to_montgomery(t, kinv[i], mont_n, bn) != 1 || BN_mod_mul_montgomery(t, t, k[i], mont_n, bn) != 1 ||
            !BN_is_one(t) || BN_mod_mul_montgomery(t, zinv[i], z[i], c->mont_p, bn) != 1 || !BN_is_one(t))
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ECDSA_SIG *es = NULL;
        it[i].rc = BROKER_ERR_INTERNAL;
        /* r = x mod n with x = X·Z⁻²: zinv is Z⁻¹·R, so MM(zinv, zinv) = Z⁻²·R and MM(that, X) = X·Z⁻² */
        if (BN_mod_mul_montgomery(t, zinv[i], zinv[i], c->mont_p, bn) != 1 ||
            BN_mod_mul_montgomery(t, t, x[i], c->mont_p, bn) != 1 || BN_nnmod(r, t, order, bn) != 1 || BN_is_zero(r))
            continue; /* r = 0 (probability 2⁻²⁵⁶): this one is signed alone */
        es = keys_ecdsa_sign_ex(dg[i], kinv[i], r, c->ec); /* NULL when s = 0: signed alone */
        if (es != NULL && keys_sig_out(es, it[i].sig))
            it[i].rc = BROKER_OK;
        ECDSA_SIG_free(es);
    }
    ok = true;
out:
    for (size_t i = 0; i < got; i++) { /* k, its inverse and k·G's coordinates are secret */
        BN_clear(k[i]);
        BN_clear(kinv[i]);
        BN_clear(x[i]);
        BN_clear(z[i]);
        BN_clear(zinv[i]);
        BN_clear(pre[i]);
        BN_clear(am[i]);
    }
    if (t != NULL)
        BN_clear(t);
    if (inv != NULL)
        BN_clear(inv);
    OPENSSL_cleanse(dg, sizeof(dg));
    BN_CTX_end(bn);
    if (EC_POINT_set_to_infinity(g, c->pt) != 1) /* the last k·G's coordinates, like k, are secret */
        keys_batch_state_free(c);
    return ok;
}

size_t keys_sign_batch(const struct signing_key *k, struct keys_sign_item *items, size_t n)
{
    size_t together = 0;
    for (size_t i = 0; i < n; i++)
        items[i].rc = BROKER_ERR_INTERNAL;
    while (n > 0) {
        size_t m = n < KEYS_SIGN_BATCH_MAX ? n : KEYS_SIGN_BATCH_MAX;
        bool batched = false;
        if (m >= KEYS_SIGN_BATCH_MIN && k != NULL && k->pkey != NULL) {
            struct keys_sign_ctx *c = keys_sign_ctx_get(k->pkey);
            if (c != NULL && keys_batch_state(c)) {
                int64_t t0 = prof_begin();
                batched = keys_batch(c, items, m);
                if (batched) { /* a failed batch's time is not counted: its items are signed (and counted) alone */
                    uint64_t ok = 0;
                    for (size_t i = 0; i < m; i++)
                        ok += items[i].rc == BROKER_OK;
                    prof_end_n(PROF_SIGN, t0, ok);
                }
            }
        }
        size_t chunk_together = 0;
        for (size_t i = 0; i < m; i++) { /* a small batch, or what the batch could not sign */
            if (batched && items[i].rc == BROKER_OK)
                chunk_together++;
            else
                items[i].rc = keys_sign(k, items[i].msg, items[i].len, items[i].sig);
        }
        if (chunk_together > 0) {
            atomic_fetch_add_explicit(&signed_together, chunk_together, memory_order_relaxed);
            atomic_fetch_add_explicit(&sign_batches, 1, memory_order_relaxed);
            together += chunk_together;
        }
        items += m;
        n -= m;
    }
    return together;
}

void keys_sign_counts(uint64_t *together, uint64_t *alone, uint64_t *batches)
{
    *together = atomic_load_explicit(&signed_together, memory_order_relaxed);
    *alone = atomic_load_explicit(&signed_alone, memory_order_relaxed);
    *batches = atomic_load_explicit(&sign_batches, memory_order_relaxed);
}
