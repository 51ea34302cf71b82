/* Shared helpers for unit tests (cmocka). */
#ifndef BROKER_TEST_UTIL_H
#define BROKER_TEST_UTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

/* Directory of ../shared/fixtures/real-oidc (env BROKER_FIXTURES overrides). */
static inline const char *test_fixtures_dir(void)
{
    const char *d = getenv("BROKER_FIXTURES");
    return d ? d : "../shared/fixtures/real-oidc";
}

/* Read a whole file (relative paths under the fixtures dir when rel_fixture is set); NUL-terminated. */
static inline char *test_read_file(const char *path, int rel_fixture, size_t *len)
{
    char full[1024];
    if (rel_fixture)
        snprintf(full, sizeof(full), "%s/%s", test_fixtures_dir(), path);
    else
        snprintf(full, sizeof(full), "%s", path);
    FILE *f = fopen(full, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", full);
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096 + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    /* strip one trailing newline so token files compare as tokens */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    if (len) *len = n;
    return buf;
}

/* Removes dir and everything under it (test scratch directories). */
static inline void test_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= (int)sizeof(p))
            continue;
        if (unlink(p) != 0)
            test_rm_tree(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Whether a JWS ES256 signature (r || s) verifies over msg under pk, by OpenSSL EVP. */
static inline int test_es256_verifies(EVP_PKEY *pk, const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int ok = 0, dlen;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (es == NULL || r == NULL || s == NULL || md == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    dlen = i2d_ECDSA_SIG(es, &der);
    ok = dlen > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
         EVP_DigestVerify(md, der, (size_t)dlen, msg, len) == 1;
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok;
}
#endif
