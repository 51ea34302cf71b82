/* Revoked token ids (jti) of Broker-minted tokens, in memory on every replica. PostgreSQL's
 * revoked_tokens table is the truth; the state thread copies it here at start and then every
 * second and on each NOTIFY broker_revoke (incrementally, by seq), and a replica that revokes a
 * token adds it at once. Readers (event loops, the admin worker) take a read lock around a hash
 * lookup: no I/O is ever done under the lock, so a reader never waits on PostgreSQL. */
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
/* The state thread says the set holds every stored revocation (set once, after the first full
 * load). Until then a Broker token cannot be judged: callers fail closed. */
void revoked_mark_loaded(void);
bool revoked_loaded(void);

#endif
