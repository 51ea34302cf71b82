/* The serving state every loop reads: the current policy set and signing keyring. Both are
 * immutable once published; a background thread rebuilds them (policies from PostgreSQL,
 * keys from BROKER_KEYS_DIR) and swaps the reference. A failed rebuild keeps the old one. The
 * same thread copies revocations (revoked_tokens) into the revoked set (revoked.h): at start,
 * each second and on NOTIFY broker_revoke, stamping each complete round (revoked_mark_synced). */
#ifndef BROKER_STATE_H
#define BROKER_STATE_H
#include <stdbool.h>
#include "config.h"
#include "err.h"
#include "keys.h"
#include "policy.h"

struct keyring_ref;

/* Load keys (an active key is required) and start the reloader thread. */
enum broker_err state_start(const struct config *cfg, char *err, size_t errlen) BROKER_WUR;
void state_stop(void);

/* Referenced current policy set, NULL until the first successful load. */
struct policy_set *state_policy_get(void);
/* Referenced current keyring (never NULL after state_start). */
struct keyring_ref *state_keys_get(void);
const struct keyring *state_keys_ring(const struct keyring_ref *k);
void state_keys_put(struct keyring_ref *k);
/* Policies and keys loaded and the database reachable at the last check (revocations: see
 * revoked_loaded, which /readyz reports beside this). */
bool state_ready(void);
/* Rebuild now (used after a local change; the periodic check does the same within 1 s). */
void state_kick(void);

#endif
