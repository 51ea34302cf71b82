/* Per-thread pool of DRBG output for public identifiers (see rnd.h). */
#include "rnd.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define RND_POOL 1024

struct rnd_pool {
    uint8_t buf[RND_POOL];
    size_t left;      /* unread bytes at the end of buf */
    unsigned gen;     /* rnd_gen when filled */
};

static _Thread_local struct rnd_pool pool;
static atomic_uint rnd_gen = 1;  /* bumped in a forked child: every pool filled before is stale */
static pthread_once_t rnd_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&rnd_gen, 1);
}

static void rnd_init(void)
{
    /* Without the handler a child could repeat its parent's bytes: then never use the pool. */
    if (pthread_atfork(NULL, NULL, on_fork_child) != 0)
        atomic_store(&rnd_gen, 0);
}

enum broker_err rnd_bytes(uint8_t *out, size_t n)
{
    if (!out || n == 0 || n > RND_MAX)
        return BROKER_ERR_INTERNAL;
    (void)pthread_once(&rnd_once, rnd_init);
    unsigned gen = atomic_load(&rnd_gen);
    if (gen == 0) {
        if (RAND_bytes(out, (int)n) == 1)
            return BROKER_OK;
        OPENSSL_cleanse(out, n);
        return BROKER_ERR_INTERNAL;
    }
    if (pool.gen != gen || pool.left < n) {
        if (RAND_bytes(pool.buf, sizeof(pool.buf)) != 1) {
            OPENSSL_cleanse(pool.buf, sizeof(pool.buf));
            pool.left = 0;
            OPENSSL_cleanse(out, n);
            return BROKER_ERR_INTERNAL;
        }
        pool.left = sizeof(pool.buf);
        pool.gen = gen;
    }
    uint8_t *p = pool.buf + sizeof(pool.buf) - pool.left;
    memcpy(out, p, n);
    OPENSSL_cleanse(p, n); /* handed-out bytes do not stay behind */
    pool.left -= n;
    return BROKER_OK;
}
