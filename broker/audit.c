/* Fail-closed group commit (see audit.h). One writer thread owns the connection; producers only
 * touch the queue under a mutex. Nothing is ever reported written unless its COMMIT succeeded. */
#include "audit.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounds.h"
#include "log.h"

#define AUDIT_BACKOFF_MIN_MS 100
#define AUDIT_BACKOFF_MAX_MS 2000
#define AUDIT_IDLE_PING_MS 5000  /* an idle connection is checked this often */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;          /* to the writer: a job arrived, or stop */
    struct audit_job *head, *tail;
    size_t depth;
    bool running;                 /* from audit_start until audit_stop has joined */
    bool stopping;
    bool down;                    /* known down: audit_submit refuses at once */
    bool waiting;                 /* the writer sleeps on wake */
    pthread_t thread;
    char *conninfo;
} w = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool a_db_up;
static _Thread_local bool held, wake_owed; /* audit_hold on this thread; a wake-up it withheld */
static atomic_uint_least64_t a_batches, a_rows, a_failures;

static void audit_set_down(bool down)
{
    pthread_mutex_lock(&w.mu);
    w.down = down;
    pthread_mutex_unlock(&w.mu);
    atomic_store(&a_db_up, !down);
}

static bool audit_stopping(void)
{
    pthread_mutex_lock(&w.mu);
    bool s = w.stopping;
    pthread_mutex_unlock(&w.mu);
    return s;
}

static void timespec_add_ms(struct timespec *t, long ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static bool timespec_passed(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* store_last_error as a logfmt value: double quotes would end it early. */
static const char *audit_reason(const struct store *st, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", st ? store_last_error(st) : "out of memory");
    for (char *p = buf; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = '\'';
    return buf;
}

/* (Re)connect; on failure schedule the next try. Backoff resets only after a commit, so a
 * database that accepts connections but fails every write is not hammered either. */
static void audit_connect(struct store **st, long *backoff_ms, struct timespec *next_try)
{
    char why[512];
    enum broker_err rc = *st ? store_reconnect(*st) : store_open(w.conninfo, st);
    if (rc == BROKER_OK) {
        log_msg(LOG_INFO, "audit_db_up", "%s", "");
        audit_set_down(false);
        return;
    }
    if (*backoff_ms == 0)  /* once per outage, not per retry */
        log_msg(LOG_WARN, "audit_db_down", "reason=\"%s\"", audit_reason(*st, why, sizeof(why)));
    audit_set_down(true);
    *backoff_ms = *backoff_ms ? *backoff_ms * 2 : AUDIT_BACKOFF_MIN_MS;
    if (*backoff_ms > AUDIT_BACKOFF_MAX_MS)
        *backoff_ms = AUDIT_BACKOFF_MAX_MS;
    clock_gettime(CLOCK_MONOTONIC, next_try);
    timespec_add_ms(next_try, *backoff_ms);
}

/* A data error (SQLSTATE class 22 or 23) is about one row, not the database: then each row is
 * written alone, so one bad record cannot fail its whole batch. */
static bool audit_row_error(const struct store *st)
{
    const char *s = store_last_sqlstate(st);
    return store_connected(st) && (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0);
}

static void audit_write_batch(struct store **st, struct audit_job **jobs, size_t n, long *backoff_ms,
                              struct timespec *next_try)
{
    struct audit_record *recs[BROKER_AUDIT_BATCH_MAX];
    bool ok[BROKER_AUDIT_BATCH_MAX] = {false};
    size_t committed = 0;
    bool unwell = false;

    if (store_connected(*st)) {
        for (size_t i = 0; i < n; i++)
            recs[i] = &jobs[i]->rec;
        if (store_audit_write(*st, recs, n) == BROKER_OK) {
            for (size_t i = 0; i < n; i++)
                ok[i] = true;
            committed = n;
            atomic_fetch_add(&a_batches, 1);
        } else if (!audit_row_error(*st)) {
            unwell = true;
        } else if (n > 1) {
            for (size_t i = 0; i < n && !unwell; i++) {
                ok[i] = store_audit_write(*st, &recs[i], 1) == BROKER_OK;
                committed += ok[i];
                atomic_fetch_add(&a_batches, ok[i]);
                unwell = !ok[i] && !audit_row_error(*st);
            }
        }
        if (committed > 0)
            *backoff_ms = 0;
        if (unwell) {
            /* Anything else means the database or the session is unwell: drop the session, refuse
             * new jobs at once, and let the backoff loop reconnect. */
            char why[512];
            log_msg(LOG_WARN, "audit_write_failed", "rows=%zu reason=\"%s\"", n - committed,
                    audit_reason(*st, why, sizeof(why)));
            store_close(*st);
            *st = NULL;
            audit_set_down(true);
            clock_gettime(CLOCK_MONOTONIC, next_try);
            timespec_add_ms(next_try, *backoff_ms ? *backoff_ms : AUDIT_BACKOFF_MIN_MS);
        }
    }
    atomic_fetch_add(&a_rows, committed);
    atomic_fetch_add(&a_failures, n - committed);
    for (size_t i = 0; i < n; i++) {
        jobs[i]->result = ok[i] ? BROKER_OK : BROKER_ERR_AUDIT_UNAVAILABLE;
        jobs[i]->done(jobs[i]);  /* may free the job: not touched afterwards */
    }
}

static void *audit_main(void *arg)
{
    struct audit_job *jobs[BROKER_AUDIT_BATCH_MAX];
    struct store *st = NULL;
    long backoff_ms = 0;
    struct timespec next_try;

    (void)arg;
    pthread_setname_np(pthread_self(), "broker-audit"); /* top -H, /proc/PID/task/N/comm */
    clock_gettime(CLOCK_MONOTONIC, &next_try);
    for (;;) {
        if (!store_connected(st) && timespec_passed(&next_try) && !audit_stopping())
            audit_connect(&st, &backoff_ms, &next_try);
        bool connected = store_connected(st), timed_out = false;
        struct timespec deadline = next_try;
        size_t n = 0;
        if (connected) {
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            timespec_add_ms(&deadline, AUDIT_IDLE_PING_MS);
        }

        pthread_mutex_lock(&w.mu);
        while (!w.head && !w.stopping && !timed_out) {
            w.waiting = true;
            timed_out = pthread_cond_timedwait(&w.wake, &w.mu, &deadline) == ETIMEDOUT;
            w.waiting = false;
        }
        if (!w.head && w.stopping) {
            pthread_mutex_unlock(&w.mu);
            break;
        }
        while (w.head && n < BROKER_AUDIT_BATCH_MAX) {
            jobs[n++] = w.head;
            w.head = w.head->next;
        }
        if (!w.head)
            w.tail = NULL;
        w.depth -= n;
        pthread_mutex_unlock(&w.mu);

        if (n > 0) {
            audit_write_batch(&st, jobs, n, &backoff_ms, &next_try);
        } else if (connected && timed_out && store_ping(st) != BROKER_OK) {
            /* Found dead while idle (say, the server restarted): reconnect now, before a
             * request has to fail on it. */
            char why[512];
            log_msg(LOG_WARN, "audit_db_lost", "reason=\"%s\"", audit_reason(st, why, sizeof(why)));
            store_close(st);
            st = NULL;
            audit_set_down(true);
            clock_gettime(CLOCK_MONOTONIC, &next_try);
        }
    }
    store_close(st);
    atomic_store(&a_db_up, false);
    return NULL;
}

enum broker_err audit_start(const char *conninfo)
{
    enum broker_err rc = BROKER_ERR_INTERNAL;
    pthread_condattr_t attr;

    if (!conninfo)
        return BROKER_ERR_CONFIG;
    pthread_mutex_lock(&w.mu);
    if (w.running)
        goto cleanup;
    if (!(w.conninfo = strdup(conninfo))) {
        rc = BROKER_ERR_NOMEM;
        goto cleanup;
    }
    /* Timed waits for the reconnect schedule use the monotonic clock. */
    if (pthread_condattr_init(&attr) != 0)
        goto cleanup;
    int crc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    crc = crc ? crc : pthread_cond_init(&w.wake, &attr);
    pthread_condattr_destroy(&attr);
    if (crc != 0)
        goto cleanup;
    w.head = w.tail = NULL;
    w.depth = 0;
    w.stopping = w.down = w.waiting = false;
    if (pthread_create(&w.thread, NULL, audit_main, NULL) != 0) {
        pthread_cond_destroy(&w.wake);
        goto cleanup;
    }
    w.running = true;
    rc = BROKER_OK;
cleanup:
    if (rc != BROKER_OK && !w.running) {
        free(w.conninfo);
        w.conninfo = NULL;
    }
    pthread_mutex_unlock(&w.mu);
    return rc;
}

enum broker_err audit_submit(struct audit_job *job)
{
    if (!job || !job->done)
        return BROKER_ERR_INTERNAL;
    job->next = NULL;
    job->result = BROKER_ERR_AUDIT_UNAVAILABLE;
    pthread_mutex_lock(&w.mu);
    if (!w.running || w.stopping || w.down || w.depth >= BROKER_AUDIT_QUEUE_MAX) {
        pthread_mutex_unlock(&w.mu);
        atomic_fetch_add(&a_failures, 1);
        return BROKER_ERR_AUDIT_UNAVAILABLE;
    }
    if (w.tail)
        w.tail->next = job;
    else
        w.head = job;
    w.tail = job;
    w.depth++;
    if (held)
        wake_owed = true;
    else if (w.waiting)
        pthread_cond_signal(&w.wake);
    pthread_mutex_unlock(&w.mu);
    return BROKER_OK;
}

void audit_hold(void)
{
    held = true;
}

void audit_release(void)
{
    held = false;
    if (!wake_owed)
        return;
    wake_owed = false;
    pthread_mutex_lock(&w.mu);
    if (w.waiting)
        pthread_cond_signal(&w.wake);
    pthread_mutex_unlock(&w.mu);
}

void audit_stop(void)
{
    pthread_mutex_lock(&w.mu);
    if (!w.running || w.stopping) {
        pthread_mutex_unlock(&w.mu);
        return;
    }
    w.stopping = true;
    pthread_cond_signal(&w.wake);
    pthread_mutex_unlock(&w.mu);

    pthread_join(w.thread, NULL);

    pthread_mutex_lock(&w.mu);
    pthread_cond_destroy(&w.wake);
    free(w.conninfo);
    w.conninfo = NULL;
    w.running = w.stopping = false;
    pthread_mutex_unlock(&w.mu);
}

size_t audit_queue_depth(void)
{
    pthread_mutex_lock(&w.mu);
    size_t d = w.depth;
    pthread_mutex_unlock(&w.mu);
    return d;
}

bool audit_db_up(void)
{
    return atomic_load(&a_db_up);
}

uint64_t audit_batches(void)
{
    return atomic_load(&a_batches);
}

uint64_t audit_rows(void)
{
    return atomic_load(&a_rows);
}

uint64_t audit_failures(void)
{
    return atomic_load(&a_failures);
}
