/* Per-issuer key cache. Static key sets are loaded by issuers_sync; fetched sets come from a
 * few fetcher threads (each fetch: issuers_fetch.c, discovery then JWKS), so event-loop threads
 * never wait on the network: they take a referenced snapshot of the current set under a short
 * mutex and, on an unknown kid, queue a callback that a fetcher calls when its fetch is done.
 *
 * Locking: one mutex guards the table, every entry and the lists below; it is never held across
 * I/O, parsing or a callback. Key sets are immutable and refcounted, so a reader keeps using its
 * snapshot while a fetcher swaps in the next one. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "issuers.h"
#include "clock.h"
#include "issuers_fetch.h"
#include "log.h"

#define ISSUERS_THREADS 4                   /* a slow issuer cannot hold up another issuer's refetch */
#define ISSUERS_BACKOFF_MIN_MS 1000
#define ISSUERS_BACKOFF_MAX_MS (5 * 60 * 1000)
#define ISSUERS_IDLE_WAIT_MS (60 * 1000)    /* fetchers re-check the schedule at least this often */

struct issuer_keys {
    atomic_uint refs;
    struct jwks *jwks;
    int64_t fetched_at;
    uint8_t digest[ISSUERS_FETCH_DIGEST_LEN]; /* of the fetched document: "changed" compares it */
};

struct waiter {
    void (*cb)(void *arg, bool changed);
    void *arg;
    struct waiter *next;
};

struct issuer_entry {
    char *name;
    char *url;
    char *jwks_uri;            /* NULL: discovery */
    char *ca_file;             /* NULL: system store */
    char *bearer_token_file;   /* NULL: none; read by each fetch */
    bool is_static;
    bool in_flight;
    bool removed;              /* dropped by a sync while its fetch ran; freed by the fetcher */
    bool kept;                 /* scratch flag for issuers_sync */
    uint64_t gen;              /* bumped when the fetch source changes: older results are discarded */
    struct issuer_keys *keys;
    int64_t due_ms;            /* monotonic time of the next fetch */
    int64_t refresh_s;         /* periodic refresh chosen at the last success (Cache-Control); 0 before */
    int64_t backoff_ms;        /* 0 after a success */
    int64_t last_refetch_ms;   /* last unknown-kid refetch, for the cool-down */
    bool refetched;
    struct waiter *waiters;    /* owed a callback when the next fetch completes */
    struct waiter *late;       /* came while a fetch they did not ask for ran: owed the one after */
    uint64_t counts[ISSUERS_FETCH__COUNT];
    int last_result;           /* enum issuers_fetch_result, -1 before the first fetch */
    struct issuer_entry *next; /* on the dead list, or a local free list */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;                   /* CLOCK_MONOTONIC; fetchers sleep on it */
static pthread_once_t cv_once = PTHREAD_ONCE_INIT;
static bool cv_ok;
static struct issuer_entry **entries;       /* sorted by url */
static size_t nentries;
static struct issuer_entry *dead;           /* removed while in flight */
static struct waiter *orphans;              /* callbacks owed with no fetch to wait for */
static pthread_t threads[ISSUERS_THREADS];
static size_t nthreads;
static bool running, stopping, curl_inited;
static atomic_bool aborting;                /* makes in-flight transfers give up at stop */

static int64_t wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static void cv_init(void)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0)
        return;
    if (pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&cv, &a) == 0)
        cv_ok = true;
    pthread_condattr_destroy(&a);
}

static bool streq_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static char *dup_or_null(const char *s, bool *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = true;
    return d;
}

/* ------------------------------------------------------------------ key sets */

/* Takes set; digest NULL for static sets (never compared). */
static struct issuer_keys *keys_new(struct jwks *set, const uint8_t *digest)
{
    struct issuer_keys *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    if (digest != NULL)
        memcpy(k->digest, digest, sizeof(k->digest));
    atomic_init(&k->refs, 1);
    k->jwks = set;
    k->fetched_at = wall_s();
    return k;
}

const struct jwks *issuer_keys_jwks(const struct issuer_keys *k)
{
    return k != NULL ? k->jwks : NULL;
}

int64_t issuer_keys_fetched_at(const struct issuer_keys *k)
{
    return k != NULL ? k->fetched_at : 0;
}

void issuer_keys_unref(struct issuer_keys *k)
{
    if (k == NULL || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    jwks_free(k->jwks);
    free(k);
}

/* ------------------------------------------------------------------ entries and waiters */

static void entry_free(struct issuer_entry *e)
{
    if (e == NULL)
        return;
    free(e->name);
    free(e->url);
    free(e->jwks_uri);
    free(e->ca_file);
    free(e->bearer_token_file);
    issuer_keys_unref(e->keys);
    free(e);
}

static void entries_free_list(struct issuer_entry *e)
{
    while (e != NULL) {
        struct issuer_entry *next = e->next;
        entry_free(e);
        e = next;
    }
}

static void waiters_move(struct waiter **dst, struct waiter **src)
{
    struct waiter *w = *src;
    if (w == NULL)
        return;
    while (w->next != NULL)
        w = w->next;
    w->next = *dst;
    *dst = *src;
    *src = NULL;
}

static void waiters_deliver(struct waiter *w, bool changed)
{
    while (w != NULL) {
        struct waiter *next = w->next;
        w->cb(w->arg, changed);
        free(w);
        w = next;
    }
}

static int entry_cmp(const void *a, const void *b)
{
    const struct issuer_entry *x = *(const struct issuer_entry *const *)a;
    const struct issuer_entry *y = *(const struct issuer_entry *const *)b;
    return strcmp(x->url, y->url);
}

static int entry_key_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const struct issuer_entry *const *)elem)->url);
}

/* Caller holds mu. */
static struct issuer_entry *find_locked(const char *url)
{
    if (url == NULL || nentries == 0)
        return NULL;
    struct issuer_entry **p = bsearch(url, entries, nentries, sizeof(*entries), entry_key_cmp);
    return p != NULL ? *p : NULL;
}

/* ------------------------------------------------------------------ static key sets */

static enum broker_err read_small_file(const char *path, uint8_t **out, size_t *len)
{
    enum broker_err e = BROKER_ERR_IO;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rbe");
    if (f == NULL)
        goto out;
    buf = malloc(BROKER_MAX_JWKS_BYTES + 1);
    if (buf == NULL) {
        e = BROKER_ERR_NOMEM;
        goto out;
    }
    size_t n = fread(buf, 1, BROKER_MAX_JWKS_BYTES + 1, f);
    if (ferror(f))
        goto out;
    if (n > BROKER_MAX_JWKS_BYTES) {
        e = BROKER_ERR_CONFIG;
        goto out;
    }
    *out = buf;
    *len = n;
    buf = NULL;
    e = BROKER_OK;
out:
    free(buf);
    if (f != NULL)
        fclose(f);
    return e;
}

#define ISSUERS_STR_(x) #x
#define ISSUERS_STR(x) ISSUERS_STR_(x)

/* Why a static key set was refused, for the admin who wrote it (jwks_parse says no more). */
static const char *keys_problem(enum broker_err e)
{
    if (e == BROKER_ERR_INVALID_DOCUMENT)
        return "not a usable key set (1.." ISSUERS_STR(BROKER_MAX_JWKS_KEYS) " keys with unique kids, each an RSA "
               "public key of at least " ISSUERS_STR(BROKER_MIN_RSA_BITS) " bits, EC P-256/P-384/P-521 or Ed25519) "
               "(invalid_document)";
    return broker_strerror(e);
}

static enum broker_err load_static(const struct issuer_cfg *c, struct issuer_keys **out, char *err, size_t errlen)
{
    struct jwks *set = NULL;
    uint8_t *doc = NULL;
    size_t len = 0;
    enum broker_err e;
    if (c->jwks_inline != NULL) {
        e = jwks_parse((const uint8_t *)c->jwks_inline, strlen(c->jwks_inline), 0, &set);
        if (e != BROKER_OK) {
            snprintf(err, errlen, "issuer %s: jwks: %s", c->name, keys_problem(e));
            goto out;
        }
    } else {
        e = read_small_file(c->jwks_file, &doc, &len);
        if (e != BROKER_OK) {
            snprintf(err, errlen, "issuer %s: jwks_file %s: %s", c->name, c->jwks_file,
                     e == BROKER_ERR_CONFIG ? "too large" : "cannot read");
            goto out;
        }
        /* Kubernetes publishes no JWKS without the API server; its service-account key (or the
         * API server certificate) as PEM is what operators have at hand. */
        if (memmem(doc, len, "-----BEGIN ", 11) != NULL)
            e = jwks_from_pem(doc, len, &set);
        else
            e = jwks_parse(doc, len, 0, &set);
        if (e != BROKER_OK) {
            snprintf(err, errlen, "issuer %s: jwks_file %s: %s", c->name, c->jwks_file, keys_problem(e));
            goto out;
        }
    }
    *out = keys_new(set, NULL);
    if (*out == NULL) {
        e = BROKER_ERR_NOMEM;
        snprintf(err, errlen, "issuer %s: out of memory", c->name);
        goto out;
    }
    set = NULL;
    e = BROKER_OK;
out:
    jwks_free(set);
    free(doc);
    return e;
}

/* A fresh entry for cfg, static keys loaded; not yet in the table. */
static enum broker_err entry_prepare(const struct issuer_cfg *c, struct issuer_entry **out, char *err, size_t errlen)
{
    enum broker_err e = BROKER_ERR_NOMEM;
    bool fail = false;
    struct issuer_entry *n = calloc(1, sizeof(*n));
    if (n == NULL)
        goto out;
    n->last_result = -1;
    n->name = dup_or_null(c->name != NULL ? c->name : "", &fail);
    n->url = dup_or_null(c->url != NULL ? c->url : "", &fail);
    n->jwks_uri = dup_or_null(c->jwks_uri, &fail);
    n->ca_file = dup_or_null(c->ca_file, &fail);
    n->bearer_token_file = dup_or_null(c->bearer_token_file, &fail);
    if (fail)
        goto out;
    n->is_static = c->jwks_inline != NULL || c->jwks_file != NULL;
    if (n->is_static) {
        e = load_static(c, &n->keys, err, errlen);
        if (e != BROKER_OK)
            goto out;
    }
    *out = n;
    n = NULL;
    e = BROKER_OK;
out:
    if (e == BROKER_ERR_NOMEM)
        snprintf(err, errlen, "issuer %s: out of memory", c->name != NULL ? c->name : "?");
    entry_free(n);
    return e;
}

#define SWAP_PTR(a, b)       \
    do {                     \
        void *t_ = (void *)(a); \
        (a) = (b);           \
        (b) = t_;            \
    } while (0)

/* A set's entries prepared for a sync: fresh[i] for each issuer of the set (static keys loaded),
 * nv the same entries sorted by url. */
struct prepared {
    size_t n;
    struct issuer_entry **fresh, **nv;
};

static void prepared_free(struct prepared *p)
{
    if (p->fresh != NULL)
        for (size_t i = 0; i < p->n; i++)
            entry_free(p->fresh[i]);
    free(p->fresh);
    free(p->nv);
}

/* Everything in a sync that can fail, without touching the table: every entry made, no url
 * twice. On error err names the issuer; prepared_free either way. */
static enum broker_err prepare(const struct policy_set *set, struct prepared *p, char *err, size_t errlen)
{
    enum broker_err e;
    p->n = set != NULL ? policy_set_issuer_count(set) : 0;
    p->fresh = calloc(p->n + 1, sizeof(*p->fresh));
    p->nv = calloc(p->n + 1, sizeof(*p->nv));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (p->fresh == NULL || p->nv == NULL) {
        snprintf(err, errlen, "issuers: out of memory");
        return BROKER_ERR_NOMEM;
    }
    for (size_t i = 0; i < p->n; i++) {
        e = entry_prepare(policy_set_issuer_at(set, i), &p->fresh[i], err, errlen);
        if (e != BROKER_OK)
            return e;
    }
    memcpy(p->nv, p->fresh, p->n * sizeof(*p->nv));
    qsort(p->nv, p->n, sizeof(*p->nv), entry_cmp);
    for (size_t i = 1; i < p->n; i++) {
        if (strcmp(p->nv[i - 1]->url, p->nv[i]->url) == 0) {
            snprintf(err, errlen, "issuer %s: url is also issuer %s's", p->nv[i]->name, p->nv[i - 1]->name);
            return BROKER_ERR_CONFIG;
        }
    }
    return BROKER_OK;
}

enum broker_err issuers_check(const struct policy_set *set, char *err, size_t errlen)
{
    struct prepared p = {0};
    enum broker_err e = prepare(set, &p, err, errlen);
    prepared_free(&p);
    return e;
}

enum broker_err issuers_sync(const struct policy_set *set, char *err, size_t errlen)
{
    struct prepared p = {0};
    struct issuer_entry *trash = NULL;
    struct waiter *owed = NULL;
    /* Everything that can fail happens before the table is touched: no partial update. */
    enum broker_err e = prepare(set, &p, err, errlen);
    if (e != BROKER_OK)
        goto out;
    size_t n = p.n;

    pthread_once(&cv_once, cv_init);
    pthread_mutex_lock(&mu);
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < n; i++) {
        struct issuer_entry *f = p.nv[i], *old = find_locked(f->url);
        if (old == NULL) {
            f->due_ms = now;
            continue;
        }
        if (f->is_static) {
            if (!old->is_static) {
                old->gen++;
                waiters_move(&owed, &old->waiters);
                waiters_move(&owed, &old->late);
            }
            SWAP_PTR(old->keys, f->keys); /* the previous static or fetched set goes to trash */
        } else if (old->is_static || !streq_null(old->jwks_uri, f->jwks_uri) ||
                   !streq_null(old->ca_file, f->ca_file)) {
            /* keys from another source are not evidence about this one */
            old->gen++;
            SWAP_PTR(old->keys, f->keys);
            old->due_ms = now;
            old->backoff_ms = 0;
        } else if (!streq_null(old->bearer_token_file, f->bearer_token_file)) {
            /* same keys, another credential: keep them, but try it now (it may fix failures) */
            old->due_ms = now;
            old->backoff_ms = 0;
        }
        old->is_static = f->is_static;
        SWAP_PTR(old->name, f->name);
        SWAP_PTR(old->jwks_uri, f->jwks_uri);
        SWAP_PTR(old->ca_file, f->ca_file);
        SWAP_PTR(old->bearer_token_file, f->bearer_token_file);
        old->kept = true;
        f->next = trash;
        trash = f;
        p.nv[i] = old;
    }
    for (size_t i = 0; i < nentries; i++) {
        struct issuer_entry *old = entries[i];
        if (old->kept) {
            old->kept = false;
            continue;
        }
        old->removed = true;
        waiters_move(&owed, &old->waiters);
        waiters_move(&owed, &old->late);
        old->next = old->in_flight ? dead : trash;
        if (old->in_flight)
            dead = old;
        else
            trash = old;
    }
    SWAP_PTR(entries, p.nv); /* the old array is freed with p */
    nentries = n;
    waiters_move(&orphans, &owed);
    if (cv_ok)
        pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    memset(p.fresh, 0, (n + 1) * sizeof(*p.fresh)); /* now owned by the table or the trash */
    e = BROKER_OK;
out:
    prepared_free(&p);
    entries_free_list(trash);
    return e;
}

/* ------------------------------------------------------------------ fetching */

struct fetch_job {
    char *name, *url, *jwks_uri, *ca_file, *bearer_token_file;
    uint64_t gen;
};

static void job_clear(struct fetch_job *j)
{
    free(j->name);
    free(j->url);
    free(j->jwks_uri);
    free(j->ca_file);
    free(j->bearer_token_file);
    memset(j, 0, sizeof(*j));
}

/* Record a finished fetch (max_age_s: of the JWKS response). Caller holds mu. Returns the
 * callbacks to run (after unlocking); *fetched is left holding the key set to drop, *gone an entry
 * to free. */
static struct waiter *complete_locked(struct issuer_entry *e, const struct fetch_job *job, enum issuers_fetch_result r,
                                      int64_t max_age_s, struct issuer_keys **fetched, bool *changed,
                                      struct issuer_entry **gone)
{
    struct waiter *w = NULL;
    *changed = false;
    e->in_flight = false;
    if (e->removed) {
        for (struct issuer_entry **pp = &dead; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        }
        waiters_move(&w, &e->waiters);
        waiters_move(&w, &e->late);
        *gone = e;
        return w;
    }
    if (job->gen != e->gen) {
        /* the source changed meanwhile: the result is stale; a fetch of the new source is due now
         * and will answer the waiters (a now-static issuer answered them at sync) */
        waiters_move(&e->waiters, &e->late);
        return NULL;
    }
    int64_t now = clock_mono_ms();
    e->counts[r]++;
    e->last_result = (int)r;
    if (r == ISSUERS_FETCH_OK) {
        *changed = e->keys == NULL || memcmp(e->keys->digest, (*fetched)->digest, sizeof(e->keys->digest)) != 0;
        SWAP_PTR(e->keys, *fetched);
        e->backoff_ms = 0;
        /* the issuer says how long its keys stay current, within bounds: sooner would only load
         * it, later would keep a key it withdrew (an unknown kid refetches early regardless) */
        e->refresh_s = issuers_fetch_refresh_s(max_age_s);
        e->due_ms = now + e->refresh_s * 1000;
    } else {
        /* the last good set (if any) keeps serving; retry sooner than the periodic refresh */
        e->backoff_ms = e->backoff_ms == 0 ? ISSUERS_BACKOFF_MIN_MS : e->backoff_ms * 2;
        if (e->backoff_ms > ISSUERS_BACKOFF_MAX_MS)
            e->backoff_ms = ISSUERS_BACKOFF_MAX_MS;
        e->due_ms = now + e->backoff_ms;
    }
    waiters_move(&w, &e->waiters);
    if (e->late != NULL) { /* their fetch is the next one, now */
        waiters_move(&e->waiters, &e->late);
        e->due_ms = now;
    }
    return w;
}

static void run_one(struct issuer_entry *e)
{
    struct fetch_job job = {0};
    bool fail = false;
    job.name = dup_or_null(e->name, &fail);
    job.url = dup_or_null(e->url, &fail);
    job.jwks_uri = dup_or_null(e->jwks_uri, &fail);
    job.ca_file = dup_or_null(e->ca_file, &fail);
    job.bearer_token_file = dup_or_null(e->bearer_token_file, &fail);
    job.gen = e->gen;
    e->in_flight = true;
    pthread_mutex_unlock(&mu);

    struct issuers_fetch_out fo = {.stage = "setup"};
    struct issuer_keys *fetched = NULL;
    enum issuers_fetch_result r = ISSUERS_FETCH_INTERNAL;
    if (!fail) {
        const struct issuers_fetch_src src = {.url = job.url,
                                              .jwks_uri = job.jwks_uri,
                                              .ca_file = job.ca_file,
                                              .bearer_token_file = job.bearer_token_file};
        r = issuers_fetch_from(&src, &aborting, &fo);
    }
    if (r == ISSUERS_FETCH_OK && (fetched = keys_new(fo.jwks, fo.digest)) == NULL) {
        jwks_free(fo.jwks);
        r = ISSUERS_FETCH_INTERNAL;
    }
    if (r == ISSUERS_FETCH_OK)
        log_msg(LOG_INFO, "jwks_fetched", "issuer=%s keys=%zu max_age=%lld", job.name, fetched->jwks->n,
                (long long)fo.max_age_s);
    else if (!atomic_load(&aborting))
        log_msg(LOG_WARN, "jwks_fetch_failed", "issuer=%s stage=%s reason=%s status=%ld",
                job.name != NULL ? job.name : "?", fo.stage, issuers_fetch_result_name(r), fo.status);

    bool changed = false;
    struct issuer_entry *gone = NULL;
    pthread_mutex_lock(&mu);
    struct waiter *w = complete_locked(e, &job, r, fo.max_age_s, &fetched, &changed, &gone);
    pthread_mutex_unlock(&mu);
    waiters_deliver(w, changed);
    issuer_keys_unref(fetched);
    entry_free(gone);
    job_clear(&job);
    pthread_mutex_lock(&mu);
}

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "broker-jwks");
    pthread_mutex_lock(&mu);
    while (!stopping) {
        if (orphans != NULL) {
            struct waiter *w = orphans;
            orphans = NULL;
            pthread_mutex_unlock(&mu);
            waiters_deliver(w, false);
            pthread_mutex_lock(&mu);
            continue;
        }
        int64_t now = clock_mono_ms(), next = now + ISSUERS_IDLE_WAIT_MS;
        struct issuer_entry *pick = NULL;
        for (size_t i = 0; i < nentries; i++) {
            struct issuer_entry *e = entries[i];
            if (e->is_static || e->in_flight)
                continue;
            if (e->due_ms <= now) {
                if (pick == NULL || e->due_ms < pick->due_ms)
                    pick = e;
            } else if (e->due_ms < next) {
                next = e->due_ms;
            }
        }
        if (pick != NULL) {
            run_one(pick); /* unlocks for the fetch, returns locked */
            continue;
        }
        struct timespec ts = {.tv_sec = next / 1000, .tv_nsec = (long)(next % 1000) * 1000000};
        int rc = pthread_cond_timedwait(&cv, &mu, &ts);
        if (rc != 0 && rc != ETIMEDOUT && rc != EINTR)
            break;
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

static void stop_threads(void)
{
    pthread_mutex_lock(&mu);
    stopping = true;
    atomic_store(&aborting, true);
    if (cv_ok)
        pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    nthreads = 0;
    pthread_mutex_lock(&mu);
    running = false;
    pthread_mutex_unlock(&mu);
}

enum broker_err issuers_start(void)
{
    pthread_once(&cv_once, cv_init);
    if (!cv_ok)
        return BROKER_ERR_INTERNAL;
    pthread_mutex_lock(&mu);
    bool already = running;
    pthread_mutex_unlock(&mu);
    if (already)
        return BROKER_OK;
    if (!curl_inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return BROKER_ERR_INTERNAL;
        curl_inited = true;
    }
    pthread_mutex_lock(&mu);
    stopping = false;
    atomic_store(&aborting, false);
    running = true;
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < ISSUERS_THREADS; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0) {
            stop_threads();
            return BROKER_ERR_INTERNAL;
        }
        nthreads = i + 1;
    }
    return BROKER_OK;
}

void issuers_stop(void)
{
    stop_threads();
    struct waiter *w = NULL;
    struct issuer_entry *drop = NULL;
    pthread_mutex_lock(&mu);
    waiters_move(&w, &orphans);
    for (size_t i = 0; i < nentries; i++) {
        waiters_move(&w, &entries[i]->waiters);
        waiters_move(&w, &entries[i]->late);
        entries[i]->next = drop;
        drop = entries[i];
    }
    /* fetchers have exited, so nothing is in flight: dead entries are ours too */
    while (dead != NULL) {
        struct issuer_entry *e = dead;
        dead = e->next;
        waiters_move(&w, &e->waiters);
        waiters_move(&w, &e->late);
        e->next = drop;
        drop = e;
    }
    free(entries);
    entries = NULL;
    nentries = 0;
    pthread_mutex_unlock(&mu);
    waiters_deliver(w, false);
    entries_free_list(drop);
    if (curl_inited) {
        curl_global_cleanup();
        curl_inited = false;
    }
}

/* ------------------------------------------------------------------ queries */

struct issuer_keys *issuers_keys_get(const char *url)
{
    struct issuer_keys *k = NULL;
    pthread_mutex_lock(&mu);
    struct issuer_entry *e = find_locked(url);
    if (e != NULL && e->keys != NULL) {
        k = e->keys;
        atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&mu);
    return k;
}

bool issuers_refetch(const char *url, void (*cb)(void *arg, bool changed), void *arg)
{
    if (url == NULL || cb == NULL)
        return false;
    struct waiter *w = malloc(sizeof(*w)); /* outside the lock: the critical section never allocates */
    if (w == NULL)
        return false;
    w->cb = cb;
    w->arg = arg;
    w->next = NULL;
    bool queued = false;
    pthread_mutex_lock(&mu);
    struct issuer_entry *e = running && !stopping ? find_locked(url) : NULL;
    if (e != NULL && !e->is_static) {
        int64_t now = clock_mono_ms();
        bool cooled = !e->refetched || now - e->last_refetch_ms >= (int64_t)BROKER_JWKS_REFETCH_COOLDOWN_S * 1000;
        bool pending = e->in_flight || e->waiters != NULL; /* join it: single flight */
        if (e->in_flight && (cooled || e->late != NULL)) {
            /* The fetch in flight began before this unknown kid came (a periodic refresh, a retry,
             * or a refetch more than the cool-down ago): its answer may predate a rotation. Wait
             * for the one after it, which every such caller shares. */
            if (e->late == NULL) {
                e->refetched = true;
                e->last_refetch_ms = now;
            }
            w->next = e->late;
            e->late = w;
            queued = true;
        } else if (pending || cooled) {
            if (!pending) {
                e->refetched = true;
                e->last_refetch_ms = now;
                e->due_ms = now;
                pthread_cond_signal(&cv);
            }
            w->next = e->waiters;
            e->waiters = w;
            queued = true;
        }
    }
    pthread_mutex_unlock(&mu);
    if (!queued)
        free(w);
    return queued;
}

bool issuers_ready(void)
{
    bool ok = true;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nentries && ok; i++)
        ok = entries[i]->keys != NULL;
    pthread_mutex_unlock(&mu);
    return ok;
}

bool issuers_status(const char *url, struct issuer_status *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&mu);
    const struct issuer_entry *e = find_locked(url);
    if (e != NULL) {
        out->is_static = e->is_static;
        out->has_keys = e->keys != NULL;
        out->fetching = e->in_flight || e->waiters != NULL || e->late != NULL;
        out->nkeys = e->keys != NULL ? e->keys->jwks->n : 0;
        out->fetched_at = e->keys != NULL ? e->keys->fetched_at : 0;
        out->fetch_ok = e->counts[ISSUERS_FETCH_OK];
        for (size_t r = ISSUERS_FETCH_OK + 1; r < ISSUERS_FETCH__COUNT; r++)
            out->fetch_failed += e->counts[r];
        out->last_result = e->last_result >= 0 ? issuers_fetch_result_name(e->last_result) : NULL;
        out->refresh_s = e->refresh_s;
        if (!e->is_static)
            out->next_fetch_at = wall_s() + (e->due_ms - clock_mono_ms()) / 1000;
    }
    pthread_mutex_unlock(&mu);
    return e != NULL;
}

/* ------------------------------------------------------------------ metrics */

struct mbuf {
    char *out;
    size_t cap, len;
    bool full;
};

/* Appends one whole line or nothing (a scrape never sees half a sample). */
__attribute__((format(printf, 2, 3))) static void mb_line(struct mbuf *m, const char *fmt, ...)
{
    if (m->full || m->cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->out + m->len, m->cap - m->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= m->cap - m->len) {
        m->full = true;
        m->out[m->len] = '\0';
        return;
    }
    m->len += (size_t)n;
}

/* Prometheus label value escaping: backslash, double quote, newline. */
static const char *label_escape(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s != '\0' && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

size_t issuers_metrics(char *out, size_t cap)
{
    struct mbuf m = {.out = out, .cap = cap};
    char esc[2 * BROKER_MAX_NAME_LEN + 4];
    if (cap > 0)
        out[0] = '\0';
    int64_t wall = wall_s();
    pthread_mutex_lock(&mu);
    mb_line(&m, "# HELP broker_jwks_fetch_total Issuer key fetches (discovery and JWKS) by result.\n"
                "# TYPE broker_jwks_fetch_total counter\n");
    for (size_t i = 0; i < nentries; i++) {
        const struct issuer_entry *e = entries[i];
        if (e->is_static)
            continue;
        label_escape(e->name, esc, sizeof(esc));
        for (size_t r = 0; r < ISSUERS_FETCH__COUNT; r++)
            mb_line(&m, "broker_jwks_fetch_total{issuer=\"%s\",result=\"%s\"} %llu\n", esc,
                    issuers_fetch_result_name(r), (unsigned long long)e->counts[r]);
    }
    mb_line(&m, "# HELP broker_jwks_keys Keys in the issuer's current key set (0: none yet).\n"
                "# TYPE broker_jwks_keys gauge\n");
    for (size_t i = 0; i < nentries; i++) {
        const struct issuer_entry *e = entries[i];
        mb_line(&m, "broker_jwks_keys{issuer=\"%s\"} %zu\n", label_escape(e->name, esc, sizeof(esc)),
                e->keys != NULL ? e->keys->jwks->n : 0);
    }
    mb_line(&m, "# HELP broker_jwks_age_seconds Seconds since the issuer's key set was fetched or loaded.\n"
                "# TYPE broker_jwks_age_seconds gauge\n");
    for (size_t i = 0; i < nentries; i++) {
        const struct issuer_entry *e = entries[i];
        if (e->keys == NULL)
            continue;
        int64_t age = wall - e->keys->fetched_at;
        mb_line(&m, "broker_jwks_age_seconds{issuer=\"%s\"} %lld\n", label_escape(e->name, esc, sizeof(esc)),
                (long long)(age > 0 ? age : 0));
    }
    mb_line(&m, "# HELP broker_jwks_next_refresh_seconds Seconds until the issuer's next scheduled key fetch "
                "(Cache-Control max-age within bounds, or the failure back-off).\n"
                "# TYPE broker_jwks_next_refresh_seconds gauge\n");
    int64_t mono = clock_mono_ms();
    for (size_t i = 0; i < nentries; i++) {
        const struct issuer_entry *e = entries[i];
        if (e->is_static)
            continue;
        int64_t left = e->due_ms - mono;
        mb_line(&m, "broker_jwks_next_refresh_seconds{issuer=\"%s\"} %lld\n", label_escape(e->name, esc, sizeof(esc)),
                (long long)(left > 0 ? (left + 999) / 1000 : 0));
    }
    pthread_mutex_unlock(&mu);
    return m.len;
}
