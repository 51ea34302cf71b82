/* Process-wide counters rendered as Prometheus text on /metrics. */
#ifndef BROKER_METRICS_H
#define BROKER_METRICS_H
#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* One exchange decision: BROKER_OK when issued, else the denial reason; latency in µs. */
void metrics_exchange(enum broker_err reason, uint64_t latency_us);
void metrics_rate_limited(void);
void metrics_http_status(int status);
/* Render everything (including issuer and audit gauges) into out; returns length, 0 when too small. */
size_t metrics_render(char *out, size_t cap);

#endif
