#include "metrics.h"
#include <stdatomic.h>
#include <stdio.h>
#include "audit.h"
#include "issuers.h"
#include "keys.h"
#include "prof.h"
#include "revoked.h"
#include "tokenreview.h"

static const uint64_t bucket_us[] = {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

static _Atomic uint64_t exchanges[BROKER_ERR__COUNT];
static _Atomic uint64_t latency_hist[NBUCKETS + 1];
static _Atomic uint64_t latency_sum_us;
static _Atomic uint64_t rate_limited;
static _Atomic uint64_t status_class[6];

void metrics_exchange(enum broker_err reason, uint64_t latency_us)
{
    if ((unsigned)reason >= BROKER_ERR__COUNT)
        reason = BROKER_ERR_INTERNAL;
    atomic_fetch_add_explicit(&exchanges[reason], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < NBUCKETS && latency_us > bucket_us[b])
        b++;
    atomic_fetch_add_explicit(&latency_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us, latency_us, memory_order_relaxed);
}

void metrics_rate_limited(void)
{
    atomic_fetch_add_explicit(&rate_limited, 1, memory_order_relaxed);
}

void metrics_http_status(int status)
{
    int c = status / 100;
    if (c >= 1 && c <= 5)
        atomic_fetch_add_explicit(&status_class[c], 1, memory_order_relaxed);
}

#define APPEND(...)                                                                                                    \
    do {                                                                                                               \
        int n_ = snprintf(out + len, cap - len, __VA_ARGS__);                                                          \
        if (n_ < 0 || (size_t)n_ >= cap - len)                                                                         \
            return 0;                                                                                                  \
        len += (size_t)n_;                                                                                             \
    } while (0)

size_t metrics_render(char *out, size_t cap)
{
    size_t len = 0;
    APPEND("# HELP broker_exchanges_total Token exchange decisions by result and reason.\n"
           "# TYPE broker_exchanges_total counter\n");
    for (int e = 0; e < BROKER_ERR__COUNT; e++) {
        uint64_t v = atomic_load_explicit(&exchanges[e], memory_order_relaxed);
        if (v == 0 && e != BROKER_OK)
            continue;
        APPEND("broker_exchanges_total{result=\"%s\",reason=\"%s\"} %llu\n", e == BROKER_OK ? "issued" : "denied",
               broker_strerror((enum broker_err)e), (unsigned long long)v);
    }
    APPEND("# HELP broker_exchange_duration_seconds Time from request to response of /v1/token.\n"
           "# TYPE broker_exchange_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        cum += atomic_load_explicit(&latency_hist[b], memory_order_relaxed);
        if (b < NBUCKETS)
            APPEND("broker_exchange_duration_seconds_bucket{le=\"%g\"} %llu\n", (double)bucket_us[b] / 1e6,
                   (unsigned long long)cum);
        else
            APPEND("broker_exchange_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    APPEND("broker_exchange_duration_seconds_sum %.6f\nbroker_exchange_duration_seconds_count %llu\n",
           (double)atomic_load_explicit(&latency_sum_us, memory_order_relaxed) / 1e6, (unsigned long long)cum);
    APPEND("# TYPE broker_rate_limited_total counter\nbroker_rate_limited_total %llu\n",
           (unsigned long long)atomic_load_explicit(&rate_limited, memory_order_relaxed));
    APPEND("# TYPE broker_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        APPEND("broker_http_responses_total{class=\"%dxx\"} %llu\n", c,
               (unsigned long long)atomic_load_explicit(&status_class[c], memory_order_relaxed));
    APPEND("# HELP broker_audit_queue_depth Decisions waiting for their audit commit.\n"
           "# TYPE broker_audit_queue_depth gauge\nbroker_audit_queue_depth %zu\n"
           "# TYPE broker_audit_db_up gauge\nbroker_audit_db_up %d\n"
           "# TYPE broker_audit_batches_total counter\nbroker_audit_batches_total %llu\n"
           "# TYPE broker_audit_rows_total counter\nbroker_audit_rows_total %llu\n"
           "# TYPE broker_audit_failures_total counter\nbroker_audit_failures_total %llu\n",
           audit_queue_depth(), audit_db_up() ? 1 : 0, (unsigned long long)audit_batches(),
           (unsigned long long)audit_rows(), (unsigned long long)audit_failures());
    uint64_t together, alone, batches;
    keys_sign_counts(&together, &alone, &batches);
    APPEND("# HELP broker_signatures_total Tokens signed together with their loop iteration's others, or alone.\n"
           "# TYPE broker_signatures_total counter\nbroker_signatures_total{mode=\"batch\"} %llu\n"
           "broker_signatures_total{mode=\"alone\"} %llu\n"
           "# TYPE broker_signature_batches_total counter\nbroker_signature_batches_total %llu\n",
           (unsigned long long)together, (unsigned long long)alone, (unsigned long long)batches);
    size_t n = issuers_metrics(out + len, cap - len);
    if (n == 0 && cap - len < 2)
        return 0;
    len += n;
    len += tokenreview_metrics(out + len, cap - len);
    len += prof_metrics(out + len, cap - len);
    len += revoked_metrics(out + len, cap - len);
    return len;
}
