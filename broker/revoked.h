/* Revoked token ids (jti) of Broker-minted tokens, in memory on every replica. PostgreSQL's
 * revoked_tokens table is the truth; the state thread copies it here at start and then every
 * second and on each NOTIFY broker_revoke (incrementally, by seq), and a replica that revokes a
 * token adds it at once. Readers (event loops, the admin worker) take a read lock around a hash
 * lookup: no I/O is ever done under the lock, so a reader never waits on PostgreSQL. A set whose
 * last complete sync is older than BROKER_REVOKED_MAX_STALE_MS is not trusted (see revoked_loaded). */
#ifndef BROKER_REVOKED_H
#define BROKER_REVOKED_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* Longest jti accepted for revocation (Broker mints 22 characters). */
#define REVOKED_MAX_JTI 64

/* ---- a set (one thread at a time; the process-wide one below adds the lock) ---- */
struct revoked_set;

/* Empty set; NULL when out of memory. seed perturbs the hash (random in the process-wide set). */
struct revoked_set *revoked_set_new(uint64_t seed);
void revoked_set_free(struct revoked_set *s);
/* Add jti (1..REVOKED_MAX_JTI bytes) that matters until exp (Unix seconds); adding it again keeps
 * the later exp. BAD_REQUEST for an empty or overlong jti, NOMEM when the table cannot grow. */
enum broker_err revoked_set_add(struct revoked_set *s, const char *jti, size_t len, int64_t exp) BROKER_WUR;
bool revoked_set_has(const struct revoked_set *s, const char *jti, size_t len);
/* Drop entries whose exp is before now; returns how many were dropped. */
size_t revoked_set_prune(struct revoked_set *s, int64_t now);
size_t revoked_set_count(const struct revoked_set *s);

/* ---- the process-wide set ---- */
enum broker_err revoked_init(void) BROKER_WUR;
/* Frees the set (after every reader and writer has stopped). */
void revoked_shutdown(void);
enum broker_err revoked_add(const char *jti, size_t len, int64_t exp) BROKER_WUR;
/* true when jti is revoked. Before revoked_init: false. */
bool revoked_has(const char *jti, size_t len);
size_t revoked_prune(int64_t now);
size_t revoked_count(void);
/* Freshness. The state thread stamps each complete sync round (every stored revocation copied,
 * including the re-read of recent ones) with the monotonic clock. A set never synced, or last
 * synced more than BROKER_REVOKED_MAX_STALE_MS ago, cannot judge a Broker token: callers fail
 * closed (NOT_READY), because revocations made on other replicas may be missing from it. */
#define REVOKED_NEVER INT64_MIN
/* Pure rule: a set last synced at synced_ms (REVOKED_NEVER: not yet) is usable at now_ms. A stamp
 * later than now_ms (a sync finished after the caller read the clock) counts as fresh. */
bool revoked_fresh(int64_t synced_ms, int64_t now_ms);
/* A complete sync round finished at now_ms (monotonic); a stamp older than the current one is ignored. */
void revoked_mark_synced(int64_t now_ms);
/* revoked_mark_synced(clock_mono_ms()). */
void revoked_mark_loaded(void);
/* The process-wide set is usable at now_ms / now: synced at least once and not stale. */
bool revoked_loaded_at(int64_t now_ms);
bool revoked_loaded(void);
/* Milliseconds since the last complete sync; -1 before the first. */
int64_t revoked_sync_age_ms(void);
/* Prometheus text (sync age, set size) appended by metrics_render; 0 when out is too small. */
size_t revoked_metrics(char *out, size_t cap);

#endif
