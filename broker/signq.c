#include "signq.h"
#include <string.h>

static _Thread_local struct signq_req *signq_head;

void signq_add(struct signq_req *q)
{
    q->done = false;
    q->rc = BROKER_ERR_INTERNAL;
    q->prev = NULL;
    q->next = signq_head;
    if (signq_head != NULL)
        signq_head->prev = q;
    signq_head = q;
    q->queued = true;
}

void signq_remove(struct signq_req *q)
{
    if (!q->queued)
        return;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        signq_head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    q->queued = false;
}

void signq_run(void)
{
    struct keys_sign_item items[KEYS_SIGN_BATCH_MAX];
    struct signq_req *batch[KEYS_SIGN_BATCH_MAX];
    for (;;) {
        const struct signing_key *key = NULL;
        size_t n = 0;
        for (struct signq_req *q = signq_head; q != NULL && n < KEYS_SIGN_BATCH_MAX; q = q->next) {
            if ((key != NULL && q->key != key) || (q->wanted != NULL && !q->wanted(q)))
                continue; /* another key's turn comes next; an unwanted one waits for its owner */
            key = q->key;
            items[n] = (struct keys_sign_item){.msg = q->msg, .len = q->len};
            batch[n++] = q;
        }
        if (n == 0)
            return;
        (void)keys_sign_batch(key, items, n);
        for (size_t i = 0; i < n; i++) {
            signq_remove(batch[i]);
            batch[i]->rc = items[i].rc;
            memcpy(batch[i]->sig, items[i].sig, sizeof(items[i].sig));
            batch[i]->done = true;
        }
    }
}
