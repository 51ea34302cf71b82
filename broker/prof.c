#include "prof.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_once_t prof_once = PTHREAD_ONCE_INIT;
static bool prof_on;
static _Atomic uint64_t prof_ns[PROF__COUNT], prof_n[PROF__COUNT];
static const char *const prof_names[PROF__COUNT] = {[PROF_VERIFY] = "verify", [PROF_SIGN] = "sign"};

static void prof_init(void)
{
    const char *v = getenv("BROKER_PROFILE_CRYPTO");
    prof_on = v != NULL && strcmp(v, "1") == 0;
}

static int64_t thread_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t prof_begin(void)
{
    pthread_once(&prof_once, prof_init);
    return prof_on ? thread_ns() : 0;
}

void prof_end_n(enum prof_op op, int64_t t0, uint64_t n)
{
    if (t0 == 0 || (unsigned)op >= PROF__COUNT)
        return;
    int64_t d = thread_ns() - t0;
    atomic_fetch_add_explicit(&prof_ns[op], d > 0 ? (uint64_t)d : 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&prof_n[op], n, memory_order_relaxed);
}

void prof_end(enum prof_op op, int64_t t0)
{
    prof_end_n(op, t0, 1);
}

size_t prof_metrics(char *out, size_t cap)
{
    size_t n = 0;
    pthread_once(&prof_once, prof_init);
    if (cap == 0)
        return 0;
    out[0] = '\0';
    if (!prof_on)
        return 0;
    for (int op = 0; op < PROF__COUNT; op++) {
        char line[200];
        int k = snprintf(line, sizeof(line),
                         "broker_crypto_cpu_seconds_total{op=\"%s\"} %.6f\nbroker_crypto_ops_total{op=\"%s\"} %llu\n",
                         prof_names[op], (double)atomic_load_explicit(&prof_ns[op], memory_order_relaxed) / 1e9,
                         prof_names[op], (unsigned long long)atomic_load_explicit(&prof_n[op], memory_order_relaxed));
        if (k < 0 || (size_t)k >= cap - n)
            break;
        memcpy(out + n, line, (size_t)k + 1);
        n += (size_t)k;
    }
    return n;
}
