#include "ratelimit.h"
#include <string.h>

void rl_init(struct rl_table *t, double rate, double burst, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    t->rate = rate;
    t->burst = burst < 1 ? 1 : burst;
    t->seed = seed | 1;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t rl_key(const void *p, unsigned len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

bool rl_take(struct rl_table *t, uint64_t key, uint64_t now_us, unsigned *retry_after_s)
{
    if (t->rate <= 0)
        return true;
    struct rl_bucket *b = &t->slots[mix(key ^ t->seed) % RL_SLOTS];
    if (b->key != key || b->last_us == 0) {
        b->key = key;
        b->tokens = t->burst;
        b->last_us = now_us;
    } else if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * t->rate / 1e6;
        if (b->tokens > t->burst)
            b->tokens = t->burst;
        b->last_us = now_us;
    }
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return true;
    }
    double wait = (1 - b->tokens) / t->rate;
    unsigned s = (unsigned)wait + 1;
    *retry_after_s = s;
    return false;
}
