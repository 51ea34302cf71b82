#include "state.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "bounds.h"
#include "idlimit.h"
#include "issuers.h"
#include "log.h"
#include "clock.h"
#include "revoked.h"
#include "store.h"

#define POLICY_CHECK_MS 1000 /* consistency check while LISTENing: heals a missed NOTIFY within 1 s */
#define POLICY_POLL_MS 250   /* without a LISTEN connection: poll the generation this often */
#define KEYS_CHECK_S 10
#define REVOKE_PAGE 1000     /* revocations read per statement */
#define REVOKE_RECENT_S 30   /* re-read this much history each round (see store_revoke_recent) */
#define REVOKE_PRUNE_S 60    /* prune the in-memory set this often, keeping a minute past exp like the table */

struct keyring_ref {
    atomic_int refs;
    struct keyring *ring;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct policy_set *cur_policy;
static struct keyring_ref *cur_keys;
static json_t *last_issuers, *last_identities;
static int64_t last_gen = -1;
static atomic_bool db_up, stop_flag;
static bool kicked;
static pthread_t tid;
static const struct config *cfg;

struct policy_set *state_policy_get(void)
{
    pthread_mutex_lock(&mu);
    struct policy_set *s = cur_policy ? policy_set_ref(cur_policy) : NULL;
    pthread_mutex_unlock(&mu);
    return s;
}

struct keyring_ref *state_keys_get(void)
{
    pthread_mutex_lock(&mu);
    struct keyring_ref *k = cur_keys;
    if (k != NULL)
        atomic_fetch_add(&k->refs, 1);
    pthread_mutex_unlock(&mu);
    return k;
}

const struct keyring *state_keys_ring(const struct keyring_ref *k)
{
    return k->ring;
}

void state_keys_put(struct keyring_ref *k)
{
    if (k != NULL && atomic_fetch_sub(&k->refs, 1) == 1) {
        keys_free(k->ring);
        free(k);
    }
}

bool state_ready(void)
{
    pthread_mutex_lock(&mu);
    bool ok = cur_policy != NULL && cur_keys != NULL && cur_keys->ring->active != NULL;
    pthread_mutex_unlock(&mu);
    return ok && atomic_load(&db_up);
}

void state_kick(void)
{
    pthread_mutex_lock(&mu);
    kicked = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static enum broker_err load_keys(char *err, size_t errlen)
{
    struct keyring *ring = NULL;
    enum broker_err e = keys_load(cfg->keys_dir, (int64_t)time(NULL), &ring);
    if (e != BROKER_OK) {
        snprintf(err, errlen, "cannot load signing keys from %s: %s", cfg->keys_dir, broker_strerror(e));
        return e;
    }
    if (ring->active == NULL) {
        snprintf(err, errlen, "no active signing key in %s (run `broker keys generate`)", cfg->keys_dir);
        keys_free(ring);
        return BROKER_ERR_CONFIG;
    }
    struct keyring_ref *k = malloc(sizeof(*k));
    if (k == NULL) {
        keys_free(ring);
        return BROKER_ERR_NOMEM;
    }
    atomic_init(&k->refs, 1);
    k->ring = ring;
    pthread_mutex_lock(&mu);
    struct keyring_ref *old = cur_keys;
    bool changed = old == NULL || old->ring->active == NULL || strcmp(old->ring->active->kid, ring->active->kid) != 0;
    cur_keys = k;
    pthread_mutex_unlock(&mu);
    if (changed)
        log_msg(LOG_INFO, "signing_key_active", "kid=%s keys=%zu", ring->active->kid, ring->n);
    state_keys_put(old);
    return BROKER_OK;
}

/* One policy check: load documents, rebuild only when they changed. */
static void reload_policies(struct store **st)
{
    char err[512];
    if (*st == NULL) {
        if (store_open(cfg->database_url, st) != BROKER_OK) {
            store_close(*st);
            *st = NULL;
            if (atomic_exchange(&db_up, false))
                log_msg(LOG_WARN, "policy_db_down", "reason=\"connect failed\"");
            return;
        }
    }
    json_t *iss = NULL, *ids = NULL;
    int64_t gen = 0;
    /* cheap check first: documents are reloaded only when the generation moved */
    if (store_policy_generation(*st, &gen) == BROKER_OK && last_issuers != NULL && gen == last_gen) {
        if (!atomic_exchange(&db_up, true))
            log_msg(LOG_INFO, "policy_db_up", "%s", "");
        return;
    }
    if (store_load_documents_gen(*st, &iss, &ids, &gen) != BROKER_OK) {
        if (atomic_exchange(&db_up, false))
            log_msg(LOG_WARN, "policy_db_down", "reason=\"load failed\"");
        store_close(*st);
        *st = NULL;
        return;
    }
    if (!atomic_exchange(&db_up, true))
        log_msg(LOG_INFO, "policy_db_up", "%s", "");
    if (last_issuers != NULL && json_equal(iss, last_issuers) && json_equal(ids, last_identities)) {
        json_decref(iss);
        json_decref(ids);
        last_gen = gen;
        return;
    }
    struct policy_set *set = NULL;
    if (policy_set_build(iss, ids, &set, err, sizeof(err)) != BROKER_OK) {
        log_msg(LOG_ERROR, "policy_rejected", "reason=\"%s\"", err);
        goto remember;
    }
    if (issuers_sync(set, err, sizeof(err)) != BROKER_OK) {
        log_msg(LOG_ERROR, "policy_rejected", "reason=\"%s\"", err);
        policy_set_unref(set);
        goto remember;
    }
    pthread_mutex_lock(&mu);
    struct policy_set *old = cur_policy;
    cur_policy = set;
    pthread_mutex_unlock(&mu);
    if (old != NULL)
        policy_set_unref(old);
    log_msg(LOG_INFO, "policy_loaded", "issuers=%zu identities=%zu", policy_set_issuer_count(set),
            policy_set_identity_count(set));
remember:
    /* a rejected set is remembered too, so it is not rebuilt (and logged) every second */
    json_decref(last_issuers);
    json_decref(last_identities);
    last_issuers = iss;
    last_identities = ids;
    last_gen = gen;
}

/* ---- revocations: PostgreSQL -> this replica's set ---- */

static int64_t revoke_seq; /* the largest seq copied into the set (state thread only) */
static bool revoke_failing, revoke_was_loaded, revoke_stale;
static int64_t revoke_ok_ms = REVOKED_NEVER; /* monotonic ms of this thread's last complete round */

static enum broker_err on_revocation(void *arg, const char *jti, size_t len, int64_t exp)
{
    (void)arg;
    enum broker_err e = revoked_add(jti, len, exp);
    /* a jti over REVOKED_MAX_JTI (never minted, refused by POST /v1/revoke) can match no token
     * lifecycle_verify accepts: nothing to enforce */
    return e == BROKER_ERR_BAD_REQUEST ? BROKER_OK : e;
}

/* Seconds of history to re-read: REVOKE_RECENT_S past the last complete round, so that after an
 * outage a row whose seq was taken before that round but committed during the outage is still
 * seen; capped where every revocation has been pruned anyway. */
static int recent_window_s(int64_t now_ms)
{
    int64_t cap = BROKER_MAX_TTL_S + 2 * 60 + REVOKE_RECENT_S, gap;
    if (revoke_ok_ms == REVOKED_NEVER)
        return REVOKE_RECENT_S;
    gap = now_ms > revoke_ok_ms ? (now_ms - revoke_ok_ms) / 1000 + 1 : 0;
    return (int)(gap > cap - REVOKE_RECENT_S ? cap : REVOKE_RECENT_S + gap);
}

/* Copy revocations made since the last round into the set: new seqs page by page, then the last
 * REVOKE_RECENT_S seconds (or more after a failure) again. Only a complete round stamps the set
 * fresh (revoked_mark_synced); when rounds keep failing it goes stale after
 * BROKER_REVOKED_MAX_STALE_MS and Broker tokens are refused with 503 until one succeeds. */
static void sync_revocations(struct store *st)
{
    int rows = 0;
    int64_t start_ms = clock_mono_ms(); /* what the round saw is at least this fresh */
    enum broker_err e = st != NULL ? BROKER_OK : BROKER_ERR_DB;
    while (e == BROKER_OK) {
        e = store_revoke_list(st, revoke_seq, REVOKE_PAGE, on_revocation, NULL, &revoke_seq, &rows);
        if (rows < REVOKE_PAGE)
            break;
    }
    if (e == BROKER_OK)
        e = store_revoke_recent(st, recent_window_s(start_ms), on_revocation, NULL, &rows);
    if (e != BROKER_OK) {
        if (!revoke_failing && st != NULL)
            log_msg(LOG_WARN, "revocations_load_failed", "reason=%s detail=\"%s\"", broker_strerror(e),
                    store_last_error(st));
        revoke_failing = true;
        if (revoke_was_loaded && !revoke_stale && !revoked_loaded()) {
            revoke_stale = true;
            log_msg(LOG_ERROR, "revocations_stale", "age_ms=%lld max_ms=%d reason=%s",
                    (long long)revoked_sync_age_ms(), BROKER_REVOKED_MAX_STALE_MS, broker_strerror(e));
        }
        return;
    }
    /* stale now even if no failing round has logged it yet (the bound is a clock, rounds are not) */
    bool was_stale = revoke_stale || (revoke_was_loaded && !revoked_loaded());
    revoke_failing = false;
    revoke_ok_ms = start_ms;
    revoked_mark_synced(start_ms);
    if (!revoke_was_loaded) {
        revoke_was_loaded = true;
        log_msg(LOG_INFO, "revocations_loaded", "count=%zu seq=%lld", revoked_count(), (long long)revoke_seq);
    } else if (was_stale) {
        revoke_stale = false;
        log_msg(LOG_INFO, "revocations_fresh", "count=%zu seq=%lld", revoked_count(), (long long)revoke_seq);
    }
}

static char replica_id[64];

static void heartbeat(struct store *st)
{
    unsigned live = 1;
    if (st != NULL && store_replica_heartbeat(st, replica_id, &live) == BROKER_OK && live != idlimit_replicas()) {
        idlimit_set_replicas(live);
        log_msg(LOG_INFO, "replicas", "live=%u", live);
    }
}

static void *reloader(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "broker-reload");
    struct store *st = NULL;
    time_t keys_at = time(NULL), beat_at = 0, prune_at = time(NULL);
    while (!atomic_load(&stop_flag)) {
        reload_policies(&st);
        sync_revocations(st);
        if (time(NULL) - prune_at >= REVOKE_PRUNE_S) {
            size_t n = revoked_prune((int64_t)time(NULL) - 60);
            if (n > 0)
                log_msg(LOG_INFO, "revocations_pruned", "count=%zu left=%zu", n, revoked_count());
            prune_at = time(NULL);
        }
        if (time(NULL) != beat_at) { /* about once a second */
            heartbeat(st);
            beat_at = time(NULL);
        }
        if (time(NULL) - keys_at >= KEYS_CHECK_S) {
            char err[512];
            if (load_keys(err, sizeof(err)) != BROKER_OK)
                log_msg(LOG_ERROR, "keys_reload_failed", "reason=\"%s\"", err);
            keys_at = time(NULL);
        }
        /* LISTEN again each round (cheap, and a reconnected session has lost it): a NOTIFY from
         * any replica or `policy apply` (broker_policy), or a revocation (broker_revoke), wakes us
         * at once */
        if (st != NULL && store_listen(st) == BROKER_OK && store_revoke_listen(st) == BROKER_OK) {
            for (int slice = 0; slice < POLICY_CHECK_MS / POLICY_POLL_MS; slice++) {
                bool notified = false;
                if (store_wait_notify(st, POLICY_POLL_MS, &notified) != BROKER_OK || notified)
                    break;
                pthread_mutex_lock(&mu);
                bool wake = kicked || atomic_load(&stop_flag);
                kicked = false;
                pthread_mutex_unlock(&mu);
                if (wake)
                    break;
            }
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)POLICY_POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&mu);
        while (!kicked && !atomic_load(&stop_flag))
            if (pthread_cond_timedwait(&cv, &mu, &ts) != 0)
                break;
        kicked = false;
        pthread_mutex_unlock(&mu);
    }
    store_close(st);
    return NULL;
}

enum broker_err state_start(const struct config *c, char *err, size_t errlen)
{
    cfg = c;
    uint8_t rnd[8];
    char host[32] = "";
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return BROKER_ERR_INTERNAL;
    gethostname(host, sizeof(host) - 1);
    snprintf(replica_id, sizeof(replica_id), "%.31s-%02x%02x%02x%02x%02x%02x%02x%02x", host, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    enum broker_err e = load_keys(err, errlen);
    if (e != BROKER_OK)
        return e;
    struct store *st = NULL;
    reload_policies(&st); /* first load synchronously so a healthy start is ready at once */
    sync_revocations(st); /* a token revoked before this replica started is refused from the start */
    store_close(st);
    if (pthread_create(&tid, NULL, reloader, NULL) != 0) {
        snprintf(err, errlen, "cannot start reloader thread");
        return BROKER_ERR_INTERNAL;
    }
    return BROKER_OK;
}

void state_stop(void)
{
    atomic_store(&stop_flag, true);
    state_kick();
    pthread_join(tid, NULL);
    pthread_mutex_lock(&mu);
    struct policy_set *p = cur_policy;
    struct keyring_ref *k = cur_keys;
    cur_policy = NULL;
    cur_keys = NULL;
    pthread_mutex_unlock(&mu);
    if (p != NULL)
        policy_set_unref(p);
    state_keys_put(k);
    json_decref(last_issuers);
    json_decref(last_identities);
    last_issuers = last_identities = NULL;
    revoke_seq = 0;
    revoke_ok_ms = REVOKED_NEVER;
    revoke_failing = revoke_was_loaded = revoke_stale = false;
}
