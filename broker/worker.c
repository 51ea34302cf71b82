#include "worker.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "verify.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct worker_job *head, *tail;
static bool stopping;
static pthread_t tid;
static char *dburl;

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "broker-worker");
    struct store *st = NULL;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (head == NULL && !stopping)
            pthread_cond_wait(&cv, &mu);
        struct worker_job *j = head;
        if (j != NULL) {
            head = j->next;
            if (head == NULL)
                tail = NULL;
        }
        pthread_mutex_unlock(&mu);
        if (j == NULL)
            break; /* stopping and drained */
        /* on failure st stays broken (or NULL) and run() answers 503; the next job retries */
        enum broker_err e = BROKER_OK;
        if (st == NULL)
            e = store_open(dburl, &st);
        else if (!store_connected(st))
            e = store_reconnect(st);
        if (e != BROKER_OK)
            log_msg(LOG_WARN, "worker_db_down", "reason=%s", broker_strerror(e));
        j->run(st, j);
        http_post(j->loop, &j->msg);
    }
    store_close(st);
    verify_thread_cleanup(); /* POST /v1/policy/test verifies signatures on this thread */
    return NULL;
}

enum broker_err worker_start(const char *conninfo)
{
    dburl = strdup(conninfo);
    if (dburl == NULL)
        return BROKER_ERR_NOMEM;
    if (pthread_create(&tid, NULL, worker_main, NULL) != 0)
        return BROKER_ERR_INTERNAL;
    return BROKER_OK;
}

void worker_stop(void)
{
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(tid, NULL);
    free(dburl);
    dburl = NULL;
}

void worker_submit(struct worker_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&mu);
    if (tail != NULL)
        tail->next = job;
    else
        head = job;
    tail = job;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}
