/* Random bytes for public identifiers (a minted token's jti), served from a per-thread pool that
 * OpenSSL's DRBG refills 1 KiB at a time. One RAND_bytes call per exchange cost ~1–2 µs here: the
 * DRBG re-keys its AES context and calls getpid() (a system call) on every request, whatever the
 * size. Never for keys, nonces or anything secret: the pool keeps bytes that will be handed out
 * later in memory. A fork empties every pool (pthread_atfork), so a child never repeats its
 * parent's identifiers. */
#ifndef BROKER_RND_H
#define BROKER_RND_H
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define RND_MAX 64 /* the most one call hands out */

/* n (1..RND_MAX) random bytes into out; BROKER_ERR_INTERNAL when the DRBG fails (out wiped). */
enum broker_err rnd_bytes(uint8_t *out, size_t n) BROKER_WUR;

#endif
