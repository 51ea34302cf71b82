/* PostgreSQL access. The only file that includes libpq. Blocking calls: use it from
 * background threads or the CLI, never from an event loop. */
#ifndef BROKER_STORE_H
#define BROKER_STORE_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <jansson.h>
#include "err.h"

struct store;

struct audit_record {
    char request_id[40];
    int64_t at_us;            /* decision time, Unix microseconds */
    bool issued;
    const char *reason;       /* broker_strerror code ("ok" when issued) */
    char *identity;           /* may be NULL */
    char *policy;             /* may be NULL */
    char *subject_iss;        /* may be NULL (token unparseable) */
    char *subject_sub;
    char *subject_jti;
    char *token_jti;          /* minted jti, NULL when denied */
    char *scope;
    char *audience;
    char *client_addr;
    char *explanation;        /* JSON text (array), may be NULL */
};
void audit_record_clear(struct audit_record *r);

/* Connects (application_name=broker, statement_timeout 5 s, TCP keepalives). On failure *out is
 * still set (store_last_error says why, store_reconnect retries) unless it is BROKER_ERR_NOMEM. */
enum broker_err store_open(const char *conninfo, struct store **out) BROKER_WUR;
void store_close(struct store *st);
/* Re-establish a broken connection; BROKER_OK when usable. */
enum broker_err store_reconnect(struct store *st) BROKER_WUR;
/* False once the connection is known broken (then only store_reconnect helps). */
bool store_connected(const struct store *st);
/* A round trip (SELECT 1): BROKER_OK when the database answers. */
enum broker_err store_ping(struct store *st) BROKER_WUR;
const char *store_last_error(const struct store *st);
/* SQLSTATE of the last failed statement ("" when none, e.g. a connection failure). */
const char *store_last_sqlstate(const struct store *st);

/* Apply sql/NNN_*.sql in order, each once, in a transaction, under an advisory lock. */
enum broker_err store_migrate(struct store *st, const char *sql_dir, int *applied) BROKER_WUR;

/* All stored documents: two JSON arrays (issuer docs, identity docs), sorted by name. */
enum broker_err store_load_documents(struct store *st, json_t **issuers, json_t **identities) BROKER_WUR;
/* The same, with the policy generation of that snapshot (one statement, so consistent). */
enum broker_err store_load_documents_gen(struct store *st, json_t **issuers, json_t **identities,
                                         int64_t *generation) BROKER_WUR;
/* policy_state.generation: bumped by every committed document change. */
enum broker_err store_policy_generation(struct store *st, int64_t *generation) BROKER_WUR;
/* Upsert documents in one transaction (and with prune, delete the rest); appends
 * {"kind","name","change":"created|updated|deleted|unchanged"} to changes; NOTIFY broker_policy.
 * A document's name is its "issuer" / "identity" member. NULL array: that kind is left alone
 * (not pruned either). Bad shape or a duplicate name: BROKER_ERR_INVALID_DOCUMENT, nothing written.
 * On failure changes is left as it was. Changes are recorded in audit_changes as done by "cli". */
enum broker_err store_put_documents(struct store *st, const json_t *issuers, const json_t *identities, bool prune,
                                    bool dry_run, json_t *changes) BROKER_WUR;
/* store_put_documents recording actor (e.g. the admin token's name) as who made the changes. */
enum broker_err store_put_documents_as(struct store *st, const char *actor, const json_t *issuers,
                                       const json_t *identities, bool prune, bool dry_run, json_t *changes) BROKER_WUR;
/* Delete one document; kind is "issuer" or "identity". BROKER_ERR_NOT_FOUND when absent. */
enum broker_err store_delete_document(struct store *st, const char *actor, const char *kind, const char *name,
                                      json_t *changes) BROKER_WUR;

/* Insert the records in one transaction (pipelined); BROKER_OK only after COMMIT, else
 * BROKER_ERR_DB with nothing written. Text fields are made safe in place first: invalid UTF-8
 * bytes become '?', values are cut at BROKER_MAX_CLAIM_LEN bytes, and an explanation over
 * BROKER_AUDIT_EXPLAIN_MAX is stored as [{"truncated":true,"bytes":N}]. */
enum broker_err store_audit_write(struct store *st, struct audit_record *const *recs, size_t n) BROKER_WUR;
/* The record of request_id as a JSON object, BROKER_ERR_NOT_FOUND when none: request_id, at
 * (RFC 3339, UTC, microseconds), result, reason, identity ... client_addr (null when unset),
 * explanation (embedded JSON). */
enum broker_err store_audit_get(struct store *st, const char *request_id, json_t **out) BROKER_WUR;

/* Admin tokens: only SHA-256 hashes are stored. */
enum broker_err store_admin_token_add(struct store *st, const char *name, const uint8_t hash[32]) BROKER_WUR;
/* BROKER_OK and name when hash belongs to an unrevoked admin token; BROKER_ERR_UNAUTHORIZED otherwise. */
enum broker_err store_admin_token_check(struct store *st, const uint8_t hash[32], char *name, size_t name_cap) BROKER_WUR;
/* Add: BROKER_ERR_BAD_REQUEST when the name (or hash) exists. Revoke: BROKER_ERR_NOT_FOUND when
 * no unrevoked token has that name. */
enum broker_err store_admin_token_revoke(struct store *st, const char *name) BROKER_WUR;

#endif
