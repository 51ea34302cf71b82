/* `make bench`, part two: the ES256 signer alone, one by one (keys_sign) against batches of a
 * given size (keys_sign_batch), in alternating rounds so that this machine's drift falls on both.
 * One line per batch size:
 *   bench: sign batch=N alone_us=X batched_us=Y batched_over_alone=Z signed_together=T
 * where X and Y are process CPU µs per signature and T how many of the batch path's signatures
 * were really signed together (below KEYS_SIGN_BATCH_MIN the batch path signs one by one). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"

#define ROUNDS 8
#define PER_ROUND 512 /* signatures per side and round */

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int main(void)
{
    static const size_t sizes[] = {1, 2, 3, 4, 6, 8, 16, 32, KEYS_SIGN_BATCH_MAX};
    char dir[] = "/tmp/broker-signbench.XXXXXX", kid[KEYS_KID_MAX + 1];
    struct keyring *ring = NULL;
    static char msgs[KEYS_SIGN_BATCH_MAX][700];
    struct keys_sign_item it[KEYS_SIGN_BATCH_MAX];
    uint8_t sig[64];
    int rc = 1;
    bool made = false;

    kid[0] = '\0';
    if ((made = mkdtemp(dir) != NULL) == false || keys_generate(dir, time(NULL), 0, kid) != BROKER_OK ||
        keys_load(dir, time(NULL), &ring) != BROKER_OK || ring->active == NULL) {
        fprintf(stderr, "sign_batch: cannot make a signing key in %s\n", dir);
        goto out;
    }
    for (size_t i = 0; i < KEYS_SIGN_BATCH_MAX; i++) /* token-sized signing inputs */
        for (size_t j = 0; j < sizeof(msgs[i]); j++)
            msgs[i][j] = (char)('A' + (i * 7 + j * 13) % 26);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t b = sizes[si], together = 0, per = PER_ROUND / b * b;
        double alone = 0, batched = 0;
        for (int r = 0; r < ROUNDS; r++) {
            double t0 = cpu_us();
            for (size_t k = 0; k < per; k++)
                if (keys_sign(ring->active, (const uint8_t *)msgs[k % b], sizeof(msgs[0]), sig) != BROKER_OK)
                    goto out;
            double t1 = cpu_us();
            for (size_t k = 0; k < per; k += b) {
                for (size_t i = 0; i < b; i++)
                    it[i] = (struct keys_sign_item){.msg = (const uint8_t *)msgs[i], .len = sizeof(msgs[0])};
                together += keys_sign_batch(ring->active, it, b);
                for (size_t i = 0; i < b; i++)
                    if (it[i].rc != BROKER_OK)
                        goto out;
            }
            double t2 = cpu_us();
            alone += t1 - t0;
            batched += t2 - t1;
        }
        printf("bench: sign batch=%zu alone_us=%.1f batched_us=%.1f batched_over_alone=%.2f signed_together=%zu/%zu\n", b,
               alone / (ROUNDS * per), batched / (ROUNDS * per), batched / alone, together, (size_t)ROUNDS * per);
    }
    rc = 0;
out:
    keys_free(ring);
    keys_thread_cleanup();
    if (made) { /* the key's two files, then the directory */
        char path[sizeof(dir) + KEYS_KID_MAX + 8];
        snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s.json", dir, kid);
        unlink(path);
        if (rmdir(dir) != 0)
            fprintf(stderr, "sign_batch: could not remove %s\n", dir);
    }
    return rc;
}
