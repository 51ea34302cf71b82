/* The fail-closed, group-committing audit writer: one background thread with its own database
 * connection writes everything queued (up to BROKER_AUDIT_BATCH_MAX rows) in one pipelined
 * transaction, so under load the next batch forms while a COMMIT is in flight. Independent of
 * the HTTP layer: done() runs on the writer thread and must hand its result back itself. */
#ifndef BROKER_AUDIT_H
#define BROKER_AUDIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "store.h"

struct audit_job {
    struct audit_record rec;  /* filled by the caller; may be cleaned in place (store_audit_write) */
    enum broker_err result;   /* BROKER_OK (row committed) or BROKER_ERR_AUDIT_UNAVAILABLE */
    void (*done)(struct audit_job *job);
    void *arg;                /* for the caller */
    struct audit_job *next;   /* queue link: the writer's while the job is queued */
};

/* Start the writer thread; it connects right away in the background and reconnects with
 * backoff (100 ms doubling to 2 s). BROKER_ERR_INTERNAL when already running. */
enum broker_err audit_start(const char *conninfo) BROKER_WUR;
/* BROKER_OK: queued; done() is called exactly once, on the writer thread, without any audit lock
 * held, after COMMIT (result BROKER_OK) or a failure (BROKER_ERR_AUDIT_UNAVAILABLE).
 * BROKER_ERR_AUDIT_UNAVAILABLE at once (job not taken, done() never called) when the writer is
 * not running, the queue holds BROKER_AUDIT_QUEUE_MAX jobs or the database is known to be down.
 * BROKER_ERR_INTERNAL when job or done is NULL. */
enum broker_err audit_submit(struct audit_job *job) BROKER_WUR;
/* Refuse new jobs, write (or fail) every queued one, join the thread. audit_start may follow. */
void audit_stop(void);
/* Between audit_hold and audit_release, audit_submit on this thread queues without waking the
 * writer; audit_release wakes it once. An event loop holds across its end-of-iteration batch, so
 * the writer takes the whole burst of decisions in one transaction instead of waking on the first
 * and leaving the rest for the next round trip. Holds do not nest. */
void audit_hold(void);
void audit_release(void);

size_t audit_queue_depth(void);
/* True while the writer holds a working connection. */
bool audit_db_up(void);
uint64_t audit_batches(void);   /* committed transactions */
uint64_t audit_rows(void);      /* committed rows */
uint64_t audit_failures(void);  /* jobs refused by audit_submit or failed by the writer */

#endif
