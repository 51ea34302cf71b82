/* Broker's signing keys: files on disk, classification by time, our JWKS. Private keys are
 * parsed once per load (PEM parsing costs ~400 µs); signing with them is keys_sign.c. */
#include "keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "b64.h"

#define KEYS_PEM_MAX 16384
#define KEYS_META_MAX 4096
#define KEYS_KID_LEN 22 /* base64url of 16 bytes */
#define KEYS_PEM_HEADER "-----BEGIN PRIVATE KEY-----"

static void keys_why(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void keys_why(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/* A kid we created: 22 base64url characters. Also keeps file names free of '/' and "..". */
static bool keys_kid_valid(const char *s, size_t len)
{
    return len == KEYS_KID_LEN && b64url_alphabet_ok(s, len, KEYS_KID_LEN);
}

static enum broker_err keys_compute_kid(EVP_PKEY *pkey, char kid[KEYS_KID_MAX + 1])
{
    unsigned char *der = NULL;
    uint8_t h[SHA256_DIGEST_LENGTH];
    int len = i2d_PUBKEY(pkey, &der);
    if (len <= 0)
        return BROKER_ERR_INTERNAL;
    SHA256(der, (size_t)len, h);
    OPENSSL_free(der);
    size_t n = b64url_encode(h, 16, kid);
    kid[n] = 0;
    return BROKER_OK;
}

static bool keys_is_p256(EVP_PKEY *pkey)
{
    char group[32];
    size_t glen = 0;
    if (!EVP_PKEY_is_a(pkey, "EC"))
        return false;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
        return false;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/* Public coordinates as fixed 32-byte big-endian values. */
static enum broker_err keys_pub_xy(EVP_PKEY *pkey, uint8_t x[32], uint8_t y[32])
{
    BIGNUM *bx = NULL, *by = NULL;
    enum broker_err rc = BROKER_ERR_INTERNAL;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1)
        goto out;
    if (BN_bn2binpad(bx, x, 32) != 32 || BN_bn2binpad(by, y, 32) != 32)
        goto out;
    rc = BROKER_OK;
out:
    BN_free(bx);
    BN_free(by);
    return rc;
}

/* Read a whole regular file (symlinks allowed: Kubernetes secret volumes use them). */
static enum broker_err keys_read_file(int dfd, const char *name, size_t max, uint8_t **buf, size_t *len)
{
    enum broker_err rc = BROKER_ERR_IO;
    uint8_t *b = NULL;
    size_t n = 0;
    struct stat st;
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto out;
    if (fstat(fd, &st) != 0)
        goto out;
    if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > max) {
        rc = BROKER_ERR_CONFIG;
        goto out;
    }
    b = malloc((size_t)st.st_size + 1);
    if (!b) {
        rc = BROKER_ERR_NOMEM;
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto out;
        n += (size_t)r;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    b = NULL;
    rc = BROKER_OK;
out:
    if (b) {
        OPENSSL_cleanse(b, (size_t)st.st_size + 1);
        free(b);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static int keys_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* never prompt: an encrypted key is a configuration error */
}

/* Exactly one unencrypted PKCS#8 P-256 private key, nothing after it but whitespace. */
static enum broker_err keys_parse_pem(const uint8_t *p, size_t len, EVP_PKEY **out)
{
    enum broker_err rc = BROKER_ERR_CONFIG;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    char rest[64];
    int r;

    if (len < sizeof(KEYS_PEM_HEADER) - 1 || memcmp(p, KEYS_PEM_HEADER, sizeof(KEYS_PEM_HEADER) - 1) != 0)
        goto out;
    bio = BIO_new_mem_buf(p, (int)len);
    if (!bio) {
        rc = BROKER_ERR_NOMEM;
        goto out;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, keys_no_passphrase, NULL);
    if (!pkey || !keys_is_p256(pkey))
        goto out;
    while ((r = BIO_read(bio, rest, sizeof(rest))) > 0)
        for (int i = 0; i < r; i++)
            if (rest[i] != '\n' && rest[i] != '\r' && rest[i] != ' ' && rest[i] != '\t')
                goto out;
    {
        /* The public key stored in the file must belong to the private scalar. */
        EVP_PKEY_CTX *cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        int ok = cctx && EVP_PKEY_pairwise_check(cctx) == 1;
        EVP_PKEY_CTX_free(cctx);
        if (!ok)
            goto out;
    }
    *out = pkey;
    pkey = NULL;
    rc = BROKER_OK;
out:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return rc;
}

static enum broker_err keys_parse_meta(const uint8_t *p, size_t len, const char *kid, struct signing_key *k)
{
    json_error_t jerr;
    json_t *o = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    enum broker_err rc = BROKER_ERR_CONFIG;
    const char *name;
    json_t *v;
    int seen = 0;

    if (!json_is_object(o))
        goto out;
    json_object_foreach(o, name, v) {
        if (strcmp(name, "kid") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), kid) != 0)
                goto out;
            seen |= 1;
        } else if (strcmp(name, "alg") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), "ES256") != 0)
                goto out;
            seen |= 2;
        } else if (strcmp(name, "created_at") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                goto out;
            k->created_at = (int64_t)json_integer_value(v);
            seen |= 4;
        } else if (strcmp(name, "activate_at") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                goto out;
            k->activate_at = (int64_t)json_integer_value(v);
            seen |= 8;
        } else {
            goto out; /* unknown member: we wrote this file, so it is not ours or damaged */
        }
    }
    if (seen != 15)
        goto out;
    rc = BROKER_OK;
out:
    json_decref(o);
    return rc;
}

/* Load one key: <kid>.json then <kid>.pem, with every cross-check. */
static enum broker_err keys_load_one(int dfd, const char *kid, struct signing_key *k, char *why, size_t why_cap)
{
    char name[KEYS_KID_MAX + 8];
    uint8_t *buf = NULL;
    size_t len = 0;
    char computed[KEYS_KID_MAX + 1];
    enum broker_err rc;

    memcpy(k->kid, kid, strlen(kid) + 1);
    snprintf(name, sizeof(name), "%s.json", kid);
    rc = keys_read_file(dfd, name, KEYS_META_MAX, &buf, &len);
    if (rc != BROKER_OK) {
        keys_why(why, why_cap, "%s: cannot read (%s)", name, broker_strerror(rc));
        goto out;
    }
    rc = keys_parse_meta(buf, len, kid, k);
    free(buf);
    buf = NULL;
    if (rc != BROKER_OK) {
        keys_why(why, why_cap, "%s: bad metadata", name);
        goto out;
    }
    snprintf(name, sizeof(name), "%s.pem", kid);
    rc = keys_read_file(dfd, name, KEYS_PEM_MAX, &buf, &len);
    if (rc != BROKER_OK) {
        if (rc == BROKER_ERR_IO && errno == ENOENT)
            rc = BROKER_ERR_CONFIG;
        keys_why(why, why_cap, "%s: cannot read (%s)", name, broker_strerror(rc));
        goto out;
    }
    rc = keys_parse_pem(buf, len, &k->pkey);
    if (rc != BROKER_OK) {
        keys_why(why, why_cap, "%s: not an unencrypted PKCS#8 P-256 private key", name);
        goto out;
    }
    rc = keys_compute_kid(k->pkey, computed);
    if (rc != BROKER_OK)
        goto out;
    if (strcmp(computed, kid) != 0) {
        rc = BROKER_ERR_CONFIG;
        keys_why(why, why_cap, "%s: key does not match its kid", name);
        goto out;
    }
out:
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    return rc;
}

/* Activation order: activate_at, then created_at, then kid. */
static int keys_cmp_activation(const void *a, const void *b)
{
    const struct signing_key *x = a, *y = b;
    if (x->activate_at != y->activate_at)
        return x->activate_at < y->activate_at ? -1 : 1;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return strcmp(x->kid, y->kid);
}

static int keys_state_rank(enum key_state s)
{
    return s == KEY_ACTIVE ? 0 : s == KEY_NEXT ? 1 : 2;
}

/* Publication order: active, next soonest first, retired newest first. */
static int keys_cmp_publication(const void *a, const void *b)
{
    const struct signing_key *x = a, *y = b;
    int rx = keys_state_rank(x->state), ry = keys_state_rank(y->state);
    if (rx != ry)
        return rx - ry;
    int c = keys_cmp_activation(a, b);
    return x->state == KEY_RETIRED ? -c : c;
}

static void keys_classify(struct keyring *ring, int64_t now)
{
    struct signing_key *k = ring->keys;
    size_t n = ring->n, active = SIZE_MAX;

    ring->active = ring->next = NULL;
    if (n == 0)
        return;
    qsort(k, n, sizeof(*k), keys_cmp_activation);
    for (size_t i = 0; i < n; i++)
        if (k[i].activate_at <= now)
            active = i;
    for (size_t i = 0; i < n; i++) {
        k[i].retired_at = 0;
        if (active == SIZE_MAX || i > active) {
            k[i].state = KEY_NEXT;
        } else if (i == active) {
            k[i].state = KEY_ACTIVE;
        } else {
            k[i].state = KEY_RETIRED;
            k[i].retired_at = k[i + 1].activate_at;
        }
    }
    qsort(k, n, sizeof(*k), keys_cmp_publication);
    ring->active = k[0].state == KEY_ACTIVE ? &k[0] : NULL;
    for (size_t i = 0; i < n && !ring->next; i++)
        if (k[i].state == KEY_NEXT)
            ring->next = &k[i];
}

const struct signing_key *keys_active_at(const struct keyring *ring, int64_t now)
{
    const struct signing_key *best = NULL;
    if (!ring)
        return NULL;
    for (size_t i = 0; i < ring->n; i++) {
        const struct signing_key *k = &ring->keys[i];
        if (k->activate_at <= now && (!best || keys_cmp_activation(k, best) > 0))
            best = k;
    }
    return best;
}

#define KEYS_JWK_FMT "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"%s\",\"alg\":\"ES256\",\"use\":\"sig\"}"

static enum broker_err keys_build_jwks(struct keyring *ring)
{
    /* Per key: fixed text (~80) + 43 + 43 + kid; 256 is ample. */
    size_t cap = 16 + ring->n * 256, off = 0;
    char *j = malloc(cap);
    enum broker_err rc = BROKER_ERR_INTERNAL;
    if (!j)
        return BROKER_ERR_NOMEM;
    off = (size_t)snprintf(j, cap, "{\"keys\":[");
    for (size_t i = 0; i < ring->n; i++) {
        uint8_t x[32], y[32];
        char xs[44], ys[44];
        if (keys_pub_xy(ring->keys[i].pkey, x, y) != BROKER_OK)
            goto out;
        xs[b64url_encode(x, 32, xs)] = 0;
        ys[b64url_encode(y, 32, ys)] = 0;
        int w = snprintf(j + off, cap - off, "%s" KEYS_JWK_FMT, i ? "," : "", xs, ys, ring->keys[i].kid);
        if (w < 0 || (size_t)w >= cap - off)
            goto out;
        off += (size_t)w;
    }
    if (cap - off < 3)
        goto out;
    memcpy(j + off, "]}", 3);
    off += 2;
    ring->jwks_json = j;
    ring->jwks_len = off;
    j = NULL;
    rc = BROKER_OK;
out:
    free(j);
    return rc;
}

static int keys_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum broker_err keys_load_diag(const char *dir, int64_t now, struct keyring **out, char *why, size_t why_cap)
{
    enum broker_err rc = BROKER_ERR_IO;
    struct keyring *ring = NULL;
    char kids[KEYS_MAX][KEYS_KID_MAX + 1];
    char *sorted[KEYS_MAX];
    size_t nk = 0;
    DIR *d = NULL;
    int dfd = -1;
    struct dirent *de;

    *out = NULL;
    keys_why(why, why_cap, "ok");
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        keys_why(why, why_cap, "%s: cannot open keys directory: %s", dir, strerror(errno));
        goto out;
    }
    {
        int dfd2 = dup(dfd);
        d = dfd2 >= 0 ? fdopendir(dfd2) : NULL;
        if (!d && dfd2 >= 0)
            close(dfd2);
    }
    if (!d) {
        keys_why(why, why_cap, "%s: cannot list keys directory", dir);
        goto out;
    }
    rc = BROKER_ERR_CONFIG;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (nm[0] == '.' || l < 6 || strcmp(nm + l - 5, ".json") != 0)
            continue; /* tmp files, README, lone .pem: not keys */
        if (!keys_kid_valid(nm, l - 5)) {
            keys_why(why, why_cap, "%s: file name is not a kid", nm);
            goto out;
        }
        if (nk == KEYS_MAX) {
            keys_why(why, why_cap, "%s: more than %d keys; prune", dir, KEYS_MAX);
            goto out;
        }
        memcpy(kids[nk], nm, l - 5);
        kids[nk][l - 5] = 0;
        sorted[nk] = kids[nk];
        nk++;
    }
    if (errno != 0) {
        rc = BROKER_ERR_IO;
        goto out;
    }
    qsort(sorted, nk, sizeof(sorted[0]), keys_cmp_str);

    rc = BROKER_ERR_NOMEM;
    ring = calloc(1, sizeof(*ring));
    if (!ring || (nk > 0 && !(ring->keys = calloc(nk, sizeof(*ring->keys)))))
        goto out;
    for (size_t i = 0; i < nk; i++) {
        rc = keys_load_one(dfd, sorted[i], &ring->keys[i], why, why_cap);
        ring->n = i + 1; /* so keys_free releases a partly loaded key */
        if (rc != BROKER_OK)
            goto out;
    }
    keys_classify(ring, now);
    rc = keys_build_jwks(ring);
    if (rc != BROKER_OK)
        goto out;
    *out = ring;
    ring = NULL;
out:
    keys_free(ring);
    if (d)
        closedir(d);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

enum broker_err keys_load(const char *dir, int64_t now, struct keyring **out)
{
    return keys_load_diag(dir, now, out, NULL, 0);
}

void keys_free(struct keyring *ring)
{
    if (!ring)
        return;
    for (size_t i = 0; i < ring->n; i++)
        EVP_PKEY_free(ring->keys[i].pkey); /* OpenSSL clears the private scalar */
    if (ring->keys)
        OPENSSL_cleanse(ring->keys, ring->n * sizeof(*ring->keys));
    free(ring->keys);
    free(ring->jwks_json);
    OPENSSL_cleanse(ring, sizeof(*ring));
    free(ring);
}

static enum broker_err keys_write_all(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len > 0) {
        ssize_t w = write(fd, b, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return BROKER_ERR_IO;
        b += w;
        len -= (size_t)w;
    }
    return BROKER_OK;
}

/* Create name exclusively with mode, write, fsync. A partial file is removed. */
static enum broker_err keys_write_new(int dfd, const char *name, int flags, mode_t mode, const void *p, size_t len)
{
    enum broker_err rc = BROKER_ERR_IO;
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | flags, mode);
    if (fd < 0)
        return BROKER_ERR_IO;
    if (keys_write_all(fd, p, len) != BROKER_OK || fsync(fd) != 0)
        goto out;
    rc = BROKER_OK;
out:
    if (close(fd) != 0)
        rc = BROKER_ERR_IO;
    if (rc != BROKER_OK)
        unlinkat(dfd, name, 0);
    return rc;
}

/* Open dir (creating it 0700 if missing) and take an exclusive lock against a concurrent
 * generate/prune. */
static enum broker_err keys_open_locked(const char *dir, bool create, int *dfd_out)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT && create) {
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return BROKER_ERR_IO;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0)
        return BROKER_ERR_IO;
    if (flock(dfd, LOCK_EX) != 0) {
        close(dfd);
        return BROKER_ERR_IO;
    }
    *dfd_out = dfd;
    return BROKER_OK;
}

enum broker_err keys_generate(const char *dir, int64_t now, int64_t delay_s, char kid_out[KEYS_KID_MAX + 1])
{
    enum broker_err rc;
    struct keyring *ring = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    int dfd = -1;
    char kid[KEYS_KID_MAX + 1], name[KEYS_KID_MAX + 16], meta[256];
    int64_t activate_at;
    char *pem;
    long pem_len;
    int mlen;
    bool pem_orphan = false; /* .pem written, .json not yet in place */

    kid_out[0] = 0;
    if (delay_s < 0 || now < 0 || __builtin_add_overflow(now, delay_s, &activate_at))
        return BROKER_ERR_CONFIG;
    rc = keys_open_locked(dir, true, &dfd);
    if (rc != BROKER_OK)
        goto out;
    rc = keys_load(dir, now, &ring);
    if (rc != BROKER_OK)
        goto out;
    rc = BROKER_ERR_CONFIG;
    if (ring->n >= KEYS_MAX)
        goto out;
    if (!ring->active)
        activate_at = now;

    rc = BROKER_ERR_INTERNAL;
    pkey = EVP_EC_gen("P-256");
    if (!pkey || keys_compute_kid(pkey, kid) != BROKER_OK)
        goto out;
    bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1)
        goto out;
    pem_len = BIO_get_mem_data(bio, &pem);
    if (pem_len <= 0)
        goto out;
    snprintf(name, sizeof(name), "%s.pem", kid);
    rc = keys_write_new(dfd, name, O_EXCL, 0600, pem, (size_t)pem_len);
    OPENSSL_cleanse(pem, (size_t)pem_len);
    if (rc != BROKER_OK)
        goto out;
    pem_orphan = true;

    mlen = snprintf(meta, sizeof(meta),
                    "{\"kid\":\"%s\",\"alg\":\"ES256\",\"created_at\":%" PRId64 ",\"activate_at\":%" PRId64 "}\n", kid,
                    now, activate_at);
    if (mlen < 0 || (size_t)mlen >= sizeof(meta)) {
        rc = BROKER_ERR_INTERNAL;
        goto out;
    }
    snprintf(name, sizeof(name), ".%s.json.tmp", kid);
    rc = keys_write_new(dfd, name, O_TRUNC, 0644, meta, (size_t)mlen);
    if (rc != BROKER_OK)
        goto out;
    {
        char final[KEYS_KID_MAX + 8];
        snprintf(final, sizeof(final), "%s.json", kid);
        if (renameat(dfd, name, dfd, final) != 0) {
            unlinkat(dfd, name, 0);
            rc = BROKER_ERR_IO;
            goto out;
        }
    }
    pem_orphan = false;
    if (fsync(dfd) != 0) {
        rc = BROKER_ERR_IO;
        goto out;
    }
    memcpy(kid_out, kid, strlen(kid) + 1);
    rc = BROKER_OK;
out:
    if (pem_orphan) {
        snprintf(name, sizeof(name), "%s.pem", kid);
        unlinkat(dfd, name, 0);
    }
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    keys_free(ring);
    if (dfd >= 0)
        close(dfd); /* releases the lock */
    return rc;
}

enum broker_err keys_prune(const char *dir, int64_t now, int64_t max_token_ttl_s, int *pruned)
{
    enum broker_err rc;
    struct keyring *ring = NULL;
    int dfd = -1, count = 0;
    char name[KEYS_KID_MAX + 8];

    *pruned = 0;
    if (max_token_ttl_s < 0)
        return BROKER_ERR_CONFIG;
    rc = keys_open_locked(dir, false, &dfd);
    if (rc != BROKER_OK)
        goto out;
    rc = keys_load(dir, now, &ring);
    if (rc != BROKER_OK)
        goto out;
    for (size_t i = 0; i < ring->n; i++) {
        const struct signing_key *k = &ring->keys[i];
        int64_t expiry;
        if (k->state != KEY_RETIRED)
            continue;
        if (__builtin_add_overflow(k->retired_at, max_token_ttl_s, &expiry) || expiry >= now)
            continue;
        /* Metadata first: a leftover .pem is ignored by keys_load, a leftover .json is not. */
        snprintf(name, sizeof(name), "%s.json", k->kid);
        if (unlinkat(dfd, name, 0) != 0) {
            rc = BROKER_ERR_IO;
            goto out;
        }
        snprintf(name, sizeof(name), "%s.pem", k->kid);
        if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) {
            rc = BROKER_ERR_IO;
            goto out;
        }
        count++;
    }
    if (count > 0 && fsync(dfd) != 0) {
        rc = BROKER_ERR_IO;
        goto out;
    }
    rc = BROKER_OK;
out:
    *pruned = count;
    keys_free(ring);
    if (dfd >= 0)
        close(dfd);
    return rc;
}
