/* Token-bucket rate limits in a fixed-size table (no allocation, bounded memory).
 * Direct-mapped by a seeded hash: a new key may evict an idle one, which can only
 * grant that key a fresh burst, never block an unrelated client forever. */
#ifndef BROKER_RATELIMIT_H
#define BROKER_RATELIMIT_H
#include <stdbool.h>
#include <stdint.h>

#define RL_SLOTS 4096

struct rl_bucket {
    uint64_t key;
    uint64_t last_us;
    double tokens;
};

struct rl_table {
    double rate;                /* tokens per second; 0 disables the limit */
    double burst;
    uint64_t seed;
    struct rl_bucket slots[RL_SLOTS];
};

void rl_init(struct rl_table *t, double rate, double burst, uint64_t seed);
/* Take one token for key at now_us. false when limited; *retry_after_s is then >= 1. */
bool rl_take(struct rl_table *t, uint64_t key, uint64_t now_us, unsigned *retry_after_s);
/* Hash arbitrary bytes (an address) into a key. */
uint64_t rl_key(const void *p, unsigned len);

#endif
