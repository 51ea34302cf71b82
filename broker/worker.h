/* A background thread with its own PostgreSQL connection for the rare requests that need a
 * query (admin routes). Loops never block: run() happens on the worker, then the job is
 * posted back to its loop. */
#ifndef BROKER_WORKER_H
#define BROKER_WORKER_H
#include "err.h"
#include "http.h"
#include "store.h"

struct worker_job {
    struct loop_msg msg;        /* msg.cb runs on the loop after run() */
    struct http_loop *loop;
    /* runs on the worker thread; st is connected or reconnect failed (then calls fail) */
    void (*run)(struct store *st, struct worker_job *job);
    struct worker_job *next;
};

enum broker_err worker_start(const char *conninfo) BROKER_WUR;
void worker_stop(void);
void worker_submit(struct worker_job *job);

#endif
