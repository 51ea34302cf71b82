/* Runtime key sets of the registered issuers: static sets loaded at policy sync, fetched sets
 * (OIDC discovery + JWKS over verified HTTPS) refreshed by background fetcher threads.
 * Event-loop threads only read (issuers_keys_get) and ask for refetches; they never block on I/O. */
#ifndef BROKER_ISSUERS_H
#define BROKER_ISSUERS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "jwks.h"
#include "policy.h"

struct issuer_keys; /* refcounted, immutable: a struct jwks + when it was fetched */

/* Start the fetcher threads (libcurl). Issuers synced before start are fetched once it runs. */
enum broker_err issuers_start(void) BROKER_WUR;
/* Stop the fetchers, call every pending refetch callback with changed=false (on the calling
 * thread), and drop every issuer. */
void issuers_stop(void);

/* Reconcile with a new policy set (from a non-loop thread, after each policy reload): static key
 * sets (inline jwks, jwks_file as JWKS or PEM public key/certificate) are loaded now; fetched
 * issuers are scheduled (an unchanged url/jwks_uri/ca_file keeps its key set and schedule; a
 * changed bearer_token_file keeps the set and fetches now);
 * removed issuers are dropped. On error nothing changes and err names the issuer. */
enum broker_err issuers_sync(const struct policy_set *set, char *err, size_t errlen) BROKER_WUR;
/* Every check issuers_sync would make on set (static key sets parsed, no url twice), with no
 * effect on the table: what an admin write runs before committing a set every replica must load. */
enum broker_err issuers_check(const struct policy_set *set, char *err, size_t errlen) BROKER_WUR;

/* Referenced current key set of the issuer with exactly this url; NULL when none (yet). */
struct issuer_keys *issuers_keys_get(const char *url);
const struct jwks *issuer_keys_jwks(const struct issuer_keys *k);
/* Unix time the set was fetched (or loaded, for static sets). */
int64_t issuer_keys_fetched_at(const struct issuer_keys *k);
void issuer_keys_unref(struct issuer_keys *k);

/* Unknown kid: ask for a refetch. Concurrent callers for one issuer share one fetch (a caller
 * arriving while a fetch is queued or running joins it); a new fetch starts at most once per
 * BROKER_JWKS_REFETCH_COOLDOWN_S per issuer; static issuers never refetch. true: cb(arg, changed)
 * will be called exactly once, on a fetcher thread, after the fetch (changed: the key set now
 * differs from before); false: no fetch and no call. */
bool issuers_refetch(const char *url, void (*cb)(void *arg, bool changed), void *arg);

/* Prometheus text: broker_jwks_fetch_total{issuer,result}, broker_jwks_keys{issuer},
 * broker_jwks_age_seconds{issuer}, broker_jwks_next_refresh_seconds{issuer}. Writes whole lines
 * only, NUL-terminated; returns bytes written. */
size_t issuers_metrics(char *out, size_t cap);

/* Every registered issuer has a key set (for /readyz). */
bool issuers_ready(void);

/* Snapshot of one issuer's state (admin API, tests). false when url is not registered. */
struct issuer_status {
    bool is_static;
    bool has_keys;
    bool fetching;          /* a fetch is queued or running */
    size_t nkeys;
    uint64_t fetch_ok;
    uint64_t fetch_failed;
    const char *last_result; /* "ok", "tls", "timeout", ... (static string); NULL before any fetch */
    int64_t fetched_at;     /* Unix time of the current key set; 0 without one */
    int64_t refresh_s;      /* refresh interval from the last good JWKS's Cache-Control, clamped; 0 before */
    int64_t next_fetch_at;  /* Unix time of the next scheduled fetch (refresh or back-off); 0 if static */
};
bool issuers_status(const char *url, struct issuer_status *out);

#endif
