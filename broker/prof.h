/* Opt-in CPU accounting of the two public-key operations of an exchange (BROKER_PROFILE_CRYPTO=1),
 * so the benchmark can show what verify and sign cost inside the running broker next to what
 * `openssl speed` measures alone. Off by default: each measurement is two clock_gettime calls on
 * the thread CPU clock, which are system calls. */
#ifndef BROKER_PROF_H
#define BROKER_PROF_H
#include <stddef.h>
#include <stdint.h>

enum prof_op { PROF_VERIFY, PROF_SIGN, PROF__COUNT };

/* Thread CPU time in ns when profiling is on, 0 when off. */
int64_t prof_begin(void);
/* Adds the thread CPU time since t0 to op; nothing when t0 is 0. */
void prof_end(enum prof_op op, int64_t t0);
/* prof_end for n operations done together (a batch of signatures). */
void prof_end_n(enum prof_op op, int64_t t0, uint64_t n);
/* Prometheus text (broker_crypto_cpu_seconds_total{op}, broker_crypto_ops_total{op}) when
 * profiling is on, nothing otherwise. Whole lines, NUL-terminated; returns bytes written. */
size_t prof_metrics(char *out, size_t cap);

#endif
