/* Broker's own ES256 signing keys: generation, rotation (pre-publication, overlap), the
 * published JWKS, and signing with keys parsed once. Files in BROKER_KEYS_DIR:
 *   <kid>.pem   PKCS#8 private key, mode 0600
 *   <kid>.json  {"kid","alg":"ES256","created_at","activate_at","retire_after"?}
 * The active key is the one with the latest activate_at <= now. A key whose activate_at
 * is in the future is "next" and already published. A key superseded by a newer active key
 * is "retired" and stays published until it is pruned. */
#ifndef BROKER_KEYS_H
#define BROKER_KEYS_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include "err.h"

#define KEYS_KID_MAX 64

enum key_state { KEY_NEXT = 1, KEY_ACTIVE, KEY_RETIRED };

struct signing_key {
    char kid[KEYS_KID_MAX + 1];
    EVP_PKEY *pkey;          /* P-256 private key */
    int64_t created_at;
    int64_t activate_at;
    int64_t retired_at;      /* when a newer key became active; 0 while active or next */
    enum key_state state;
};

struct keyring {
    size_t n;
    struct signing_key *keys;
    const struct signing_key *active;  /* NULL when no key is active */
    char *jwks_json;                   /* public JWKS of every key, NUL-terminated */
    size_t jwks_len;
};

/* Load every key in dir and classify it at time now. */
enum broker_err keys_load(const char *dir, int64_t now, struct keyring **out) BROKER_WUR;
void keys_free(struct keyring *ring);
/* Create a new P-256 key; activate_at = now + delay (0 when no key is active yet). */
enum broker_err keys_generate(const char *dir, int64_t now, int64_t delay_s, char kid_out[KEYS_KID_MAX + 1]) BROKER_WUR;
/* Delete retired keys whose retirement is older than max_token_ttl_s; *pruned counts them. */
enum broker_err keys_prune(const char *dir, int64_t now, int64_t max_token_ttl_s, int *pruned) BROKER_WUR;
/* ES256 over msg; sig receives 64 bytes r||s. */
enum broker_err keys_sign(const struct signing_key *k, const uint8_t *msg, size_t len, uint8_t sig[64]) BROKER_WUR;

#endif
