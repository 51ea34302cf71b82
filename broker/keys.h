/* Broker's own ES256 signing keys: generation, rotation (pre-publication, overlap), the
 * published JWKS, and signing with keys parsed once. Files in BROKER_KEYS_DIR:
 *   <kid>.pem   PKCS#8 unencrypted P-256 private key, mode 0600, never rewritten
 *   <kid>.json  {"kid","alg":"ES256","created_at","activate_at"} (exactly these members;
 *               written atomically, tmp + rename)
 * kid = base64url(first 16 bytes of SHA-256(DER SubjectPublicKeyInfo)), 22 characters, so it
 * is checked against the key on every load. Files whose name starts with '.' and files that
 * are neither .json nor .pem are ignored; a .pem without .json (a key being generated, or a
 * prune interrupted) is ignored; a .json without .pem or any bad file fails the whole load.
 * The active key is the one with the latest activate_at <= now (ties: later created_at, then
 * kid). A key whose activate_at is in the future is "next" and already published. A key
 * superseded by a newer active key is "retired" and stays published until it is pruned;
 * retired_at is computed at load (the activate_at of the key that superseded it), not stored. */
#ifndef BROKER_KEYS_H
#define BROKER_KEYS_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include "err.h"
#include "bounds.h"

#define KEYS_KID_MAX 64
/* Keys in one directory; equals what our own JWKS parser accepts. */
#define KEYS_MAX BROKER_MAX_JWKS_KEYS

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
    struct signing_key *keys;          /* active first, then next (soonest first), then retired (newest first) */
    const struct signing_key *active;  /* NULL when no key is active */
    const struct signing_key *next;    /* soonest next key, NULL when none */
    char *jwks_json;                   /* public JWKS of every key, same order, NUL-terminated */
    size_t jwks_len;
};

/* Load every key in dir and classify it at time now. Errors: BROKER_ERR_IO (dir or file
 * unreadable), BROKER_ERR_CONFIG (bad/mismatched/stray files). No active key is not an error. */
enum broker_err keys_load(const char *dir, int64_t now, struct keyring **out) BROKER_WUR;
/* keys_load that also writes a one-line reason (file name and problem) into why on failure. */
enum broker_err keys_load_diag(const char *dir, int64_t now, struct keyring **out, char *why,
                               size_t why_cap) BROKER_WUR;
/* Wipes and frees (NULL is fine). */
void keys_free(struct keyring *ring);
/* The key active at now in an already loaded ring (lets a long-lived ring switch keys on time
 * without reloading); NULL when none. */
const struct signing_key *keys_active_at(const struct keyring *ring, int64_t now);
/* Create a new P-256 key (creating dir 0700 if missing); activate_at = now when no key is
 * active, else now + delay_s. Fails when the existing dir does not load. */
enum broker_err keys_generate(const char *dir, int64_t now, int64_t delay_s, char kid_out[KEYS_KID_MAX + 1]) BROKER_WUR;
/* Delete retired keys with retired_at + max_token_ttl_s < now; *pruned counts them. Never
 * touches active or next keys. Pass the longest token lifetime plus reload interval and clock
 * skew: a replica signs with the old key until it notices the new one. */
enum broker_err keys_prune(const char *dir, int64_t now, int64_t max_token_ttl_s, int *pruned) BROKER_WUR;
/* ES256 over msg (SHA-256, random nonce); sig receives 64 bytes r||s. Thread-safe; reuses a
 * per-thread signing context bound to the last key that thread used. */
enum broker_err keys_sign(const struct signing_key *k, const uint8_t *msg, size_t len, uint8_t sig[64]) BROKER_WUR;
/* One message of keys_sign_batch: msg/len in, sig and rc out. */
struct keys_sign_item {
    const uint8_t *msg;
    size_t len;
    uint8_t sig[64];
    enum broker_err rc;
};
/* Messages signed together at most (a larger n is signed in chunks), and at least: the two
 * inversions a batch costs outweigh what it saves below that (`make bench`, sign_batch: a batch
 * of 3 would break even, 4 saves ~5 %, 8 ~20-25 %, 32 ~35 % of the CPU per signature). */
#define KEYS_SIGN_BATCH_MAX 64
#define KEYS_SIGN_BATCH_MIN 4
/* keys_sign over n messages: the same signatures (each with its own hedged nonce), at about two
 * thirds of the CPU when there are several (see keys_sign.c). Each item gets its own rc.
 * Returns how many were signed together (the others, if any, were signed one by one). */
size_t keys_sign_batch(const struct signing_key *k, struct keys_sign_item *items, size_t n);
/* Signatures made together (by keys_sign_batch, in how many batches of at most
 * KEYS_SIGN_BATCH_MAX) and alone, since start: for /metrics. */
void keys_sign_counts(uint64_t *together, uint64_t *alone, uint64_t *batches);
/* Releases this thread's signing context and its reference to the last key it used (a
 * thread-exit destructor does the same; the main thread should call it before exit). */
void keys_thread_cleanup(void);

#endif
