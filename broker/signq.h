/* The access tokens of an event-loop iteration waiting for their signature: the first of them
 * to be handled signs them all together (signq_run, keys_sign_batch), the others find theirs
 * done. The queue is per thread; a request is added, run and removed on one thread. */
#ifndef BROKER_SIGNQ_H
#define BROKER_SIGNQ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "keys.h"

struct signq_req {
    /* set by the caller before signq_add; key and msg must stay valid until done or removed */
    const struct signing_key *key;
    const uint8_t *msg;
    size_t len;
    bool (*wanted)(const struct signq_req *q); /* false: skipped, its owner removes it */
    /* set by signq_run */
    bool done;
    enum broker_err rc; /* when done */
    uint8_t sig[64];    /* when done with BROKER_OK: JWS r || s */
    /* the queue's own */
    struct signq_req *prev, *next;
    bool queued;
};

/* Queues q on this thread (done is reset). */
void signq_add(struct signq_req *q);
/* Takes q off this thread's queue; nothing when it is not queued. */
void signq_remove(struct signq_req *q);
/* Signs every queued request of this thread that is still wanted, by key, KEYS_SIGN_BATCH_MAX
 * at a time; each leaves the queue done. Unwanted ones stay queued, untouched. */
void signq_run(void);

#endif
