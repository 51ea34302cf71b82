#include "idlimit.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define IDLIMIT_SLOTS 4096  /* identities with a limit that are active at once */
#define IDLIMIT_PROBE 8

struct idbucket {
    pthread_mutex_t mu;
    uint64_t key;           /* hash of the identity name; 0: free */
    uint64_t last_us;
    double tokens;
};

static struct idbucket buckets[IDLIMIT_SLOTS];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_uint replicas = 1;

static void init_buckets(void)
{
    for (size_t i = 0; i < IDLIMIT_SLOTS; i++)
        pthread_mutex_init(&buckets[i].mu, NULL);
}

void idlimit_set_replicas(unsigned n)
{
    atomic_store(&replicas, n > 0 ? n : 1);
}

unsigned idlimit_replicas(void)
{
    return atomic_load(&replicas);
}

static uint64_t name_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h | 1; /* never 0, which marks a free slot */
}

bool idlimit_take(const char *identity, uint32_t per_minute, uint32_t burst, uint64_t now_us, unsigned *retry_after_s)
{
    if (per_minute == 0)
        return true;
    pthread_once(&init_once, init_buckets);
    unsigned n = atomic_load(&replicas);
    double rate = (double)per_minute / 60.0 / n; /* tokens per second for this replica */
    double cap = (double)burst / n;
    if (cap < 1)
        cap = 1;
    uint64_t key = name_key(identity);
    size_t home = key % IDLIMIT_SLOTS, pick = home;
    uint64_t oldest = UINT64_MAX;
    /* the identity's slot, else a free one, else the least recently used one in the probe window */
    for (size_t i = 0; i < IDLIMIT_PROBE; i++) {
        struct idbucket *b = &buckets[(home + i) % IDLIMIT_SLOTS];
        pthread_mutex_lock(&b->mu);
        uint64_t k = b->key, last = b->last_us;
        pthread_mutex_unlock(&b->mu);
        if (k == key) {
            pick = (home + i) % IDLIMIT_SLOTS;
            break;
        }
        if (k == 0 && oldest != 0) {
            pick = (home + i) % IDLIMIT_SLOTS;
            oldest = 0;
        } else if (k != 0 && last < oldest) {
            pick = (home + i) % IDLIMIT_SLOTS;
            oldest = last;
        }
    }
    struct idbucket *b = &buckets[pick];
    bool ok;
    pthread_mutex_lock(&b->mu);
    if (b->key != key) {
        b->key = key;
        b->tokens = cap;
        b->last_us = now_us;
    } else if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) / 1e6 * rate;
        if (b->tokens > cap)
            b->tokens = cap;
        b->last_us = now_us;
    }
    if (b->tokens > cap) /* the share shrank (more replicas): clamp */
        b->tokens = cap;
    ok = b->tokens >= 1;
    if (ok)
        b->tokens -= 1;
    else
        *retry_after_s = (unsigned)((1 - b->tokens) / rate) + 1;
    pthread_mutex_unlock(&b->mu);
    return ok;
}
