/* Revoked jtis: an open-addressing hash set (linear probing, load <= 1/2, jti stored inline so an
 * entry costs no allocation), and one process-wide instance behind a read-write lock. Writers
 * (the state thread's sync, the admin worker after a revocation it stored) hold the write lock
 * only for memory work; readers hold the read lock for one lookup. */
#include "revoked.h"
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bounds.h"
#include "clock.h"

#define REVOKED_MIN_CAP 64 /* a power of two */

struct revoked_entry {
    uint64_t hash;
    int64_t exp;
    uint8_t len; /* 0: empty slot */
    char jti[REVOKED_MAX_JTI];
};

struct revoked_set {
    struct revoked_entry *slots;
    size_t cap; /* power of two */
    size_t n;
    uint64_t seed;
};

/* FNV-1a with a per-process seed, then a splitmix64 finalizer so that the low bits (the slot
 * index) depend on every byte. Only admins can choose a jti freely (revocation by id); the seed
 * keeps even them from aiming at one chain. */
static uint64_t hash_jti(uint64_t seed, const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

struct revoked_set *revoked_set_new(uint64_t seed)
{
    struct revoked_set *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->slots = calloc(REVOKED_MIN_CAP, sizeof(*s->slots));
    if (s->slots == NULL) {
        free(s);
        return NULL;
    }
    s->cap = REVOKED_MIN_CAP;
    s->seed = seed;
    return s;
}

void revoked_set_free(struct revoked_set *s)
{
    if (s == NULL)
        return;
    free(s->slots);
    free(s);
}

/* The slot holding jti, or the empty slot where it would go. */
static struct revoked_entry *find(const struct revoked_set *s, uint64_t h, const char *jti, size_t len)
{
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct revoked_entry *e = &s->slots[i];
        if (e->len == 0 || (e->hash == h && e->len == len && memcmp(e->jti, jti, len) == 0))
            return e;
    }
}

/* Move every entry that is still needed at keep_after (INT64_MIN: all) into a table of cap slots. */
static enum broker_err rebuild(struct revoked_set *s, size_t cap, int64_t keep_after, size_t *dropped)
{
    struct revoked_entry *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return BROKER_ERR_NOMEM;
    struct revoked_entry *old = s->slots;
    size_t oldcap = s->cap, n = 0, gone = 0;
    s->slots = slots;
    s->cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].len == 0)
            continue;
        if (old[i].exp < keep_after) {
            gone++;
            continue;
        }
        *find(s, old[i].hash, old[i].jti, old[i].len) = old[i];
        n++;
    }
    s->n = n;
    free(old);
    if (dropped != NULL)
        *dropped = gone;
    return BROKER_OK;
}

enum broker_err revoked_set_add(struct revoked_set *s, const char *jti, size_t len, int64_t exp)
{
    if (len == 0 || len > REVOKED_MAX_JTI)
        return BROKER_ERR_BAD_REQUEST;
    uint64_t h = hash_jti(s->seed, jti, len);
    struct revoked_entry *e = find(s, h, jti, len);
    if (e->len != 0) {
        if (exp > e->exp)
            e->exp = exp;
        return BROKER_OK;
    }
    if ((s->n + 1) * 2 > s->cap) {
        if (s->cap > SIZE_MAX / 2 / sizeof(*s->slots))
            return BROKER_ERR_NOMEM;
        enum broker_err rc = rebuild(s, s->cap * 2, INT64_MIN, NULL);
        if (rc != BROKER_OK)
            return rc;
        e = find(s, h, jti, len);
    }
    e->hash = h;
    e->exp = exp;
    e->len = (uint8_t)len;
    memcpy(e->jti, jti, len);
    s->n++;
    return BROKER_OK;
}

bool revoked_set_has(const struct revoked_set *s, const char *jti, size_t len)
{
    if (len == 0 || len > REVOKED_MAX_JTI)
        return false;
    return find(s, hash_jti(s->seed, jti, len), jti, len)->len != 0;
}

size_t revoked_set_prune(struct revoked_set *s, int64_t now)
{
    size_t cap = s->cap, dropped = 0, live = 0;
    for (size_t i = 0; i < s->cap; i++)
        live += s->slots[i].len != 0 && s->slots[i].exp >= now;
    if (live == s->n)
        return 0;
    while (cap > REVOKED_MIN_CAP && live * 8 < cap) /* shrink once mostly empty */
        cap /= 2;
    if (rebuild(s, cap, now, &dropped) != BROKER_OK) {
        return 0; /* no memory for a new table: the expired entries stay (harmless) until the next prune */
    }
    return dropped;
}

size_t revoked_set_count(const struct revoked_set *s)
{
    return s->n;
}

/* ---- the process-wide set ---- */

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static struct revoked_set *global;
/* monotonic ms of the last complete sync (REVOKED_NEVER: none since revoked_init) */
static _Atomic int64_t synced_ms = REVOKED_NEVER;

enum broker_err revoked_init(void)
{
    uint64_t seed;
    if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1)
        return BROKER_ERR_INTERNAL;
    struct revoked_set *s = revoked_set_new(seed);
    if (s == NULL)
        return BROKER_ERR_NOMEM;
    pthread_rwlock_wrlock(&lock);
    struct revoked_set *old = global;
    global = s;
    pthread_rwlock_unlock(&lock);
    revoked_set_free(old);
    atomic_store(&synced_ms, REVOKED_NEVER);
    return BROKER_OK;
}

void revoked_shutdown(void)
{
    pthread_rwlock_wrlock(&lock);
    struct revoked_set *s = global;
    global = NULL;
    pthread_rwlock_unlock(&lock);
    revoked_set_free(s);
    atomic_store(&synced_ms, REVOKED_NEVER);
}

enum broker_err revoked_add(const char *jti, size_t len, int64_t exp)
{
    pthread_rwlock_wrlock(&lock);
    enum broker_err rc = global != NULL ? revoked_set_add(global, jti, len, exp) : BROKER_ERR_INTERNAL;
    pthread_rwlock_unlock(&lock);
    return rc;
}

bool revoked_has(const char *jti, size_t len)
{
    pthread_rwlock_rdlock(&lock);
    bool has = global != NULL && revoked_set_has(global, jti, len);
    pthread_rwlock_unlock(&lock);
    return has;
}

size_t revoked_prune(int64_t now)
{
    pthread_rwlock_wrlock(&lock);
    size_t n = global != NULL ? revoked_set_prune(global, now) : 0;
    pthread_rwlock_unlock(&lock);
    return n;
}

size_t revoked_count(void)
{
    pthread_rwlock_rdlock(&lock);
    size_t n = global != NULL ? revoked_set_count(global) : 0;
    pthread_rwlock_unlock(&lock);
    return n;
}

bool revoked_fresh(int64_t synced, int64_t now_ms)
{
    if (synced == REVOKED_NEVER)
        return false;
    /* now_ms > synced: the difference fits in uint64_t whatever the values */
    return now_ms <= synced || (uint64_t)now_ms - (uint64_t)synced <= (uint64_t)BROKER_REVOKED_MAX_STALE_MS;
}

void revoked_mark_synced(int64_t now_ms)
{
    int64_t cur = atomic_load(&synced_ms);
    while (cur < now_ms && !atomic_compare_exchange_weak(&synced_ms, &cur, now_ms))
        ;
}

void revoked_mark_loaded(void)
{
    revoked_mark_synced(clock_mono_ms());
}

bool revoked_loaded_at(int64_t now_ms)
{
    return revoked_fresh(atomic_load(&synced_ms), now_ms);
}

bool revoked_loaded(void)
{
    return revoked_loaded_at(clock_mono_ms());
}

int64_t revoked_sync_age_ms(void)
{
    int64_t synced = atomic_load(&synced_ms), now_ms = clock_mono_ms();
    if (synced == REVOKED_NEVER)
        return -1;
    return now_ms > synced ? now_ms - synced : 0;
}

size_t revoked_metrics(char *out, size_t cap)
{
    char age[32];
    int64_t ms = revoked_sync_age_ms();
    if (ms < 0)
        snprintf(age, sizeof(age), "+Inf"); /* never synced: as stale as it gets */
    else
        snprintf(age, sizeof(age), "%.3f", (double)ms / 1000.0);
    int n = snprintf(out, cap,
                     "# HELP broker_revocations_sync_age_seconds Time since this replica last copied every stored "
                     "revocation; above %g Broker tokens are answered 503.\n"
                     "# TYPE broker_revocations_sync_age_seconds gauge\nbroker_revocations_sync_age_seconds %s\n"
                     "# TYPE broker_revocations gauge\nbroker_revocations %zu\n",
                     (double)BROKER_REVOKED_MAX_STALE_MS / 1000.0, age, revoked_count());
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
