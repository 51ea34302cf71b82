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

enum broker_err store_open(const char *conninfo, struct store **out) BROKER_WUR;
void store_close(struct store *st);
/* Re-establish a broken connection; BROKER_OK when usable. */
enum broker_err store_reconnect(struct store *st) BROKER_WUR;
const char *store_last_error(const struct store *st);

/* Apply sql/NNN_*.sql in order, each once, in a transaction, under an advisory lock. */
enum broker_err store_migrate(struct store *st, const char *sql_dir, int *applied) BROKER_WUR;

/* All stored documents: two JSON arrays (issuer docs, identity docs), sorted by name. */
enum broker_err store_load_documents(struct store *st, json_t **issuers, json_t **identities) BROKER_WUR;
/* Upsert documents in one transaction (and with prune, delete the rest); appends
 * {"kind","name","change":"created|updated|deleted|unchanged"} to changes; NOTIFY broker_policy. */
enum broker_err store_put_documents(struct store *st, const json_t *issuers, const json_t *identities, bool prune,
                                    bool dry_run, json_t *changes) BROKER_WUR;

/* Insert the records in one transaction (pipelined); BROKER_OK only after COMMIT. */
enum broker_err store_audit_write(struct store *st, struct audit_record *const *recs, size_t n) BROKER_WUR;
/* The record of request_id as a JSON object, BROKER_ERR_NOT_FOUND when none. */
enum broker_err store_audit_get(struct store *st, const char *request_id, json_t **out) BROKER_WUR;

/* Admin tokens: only SHA-256 hashes are stored. */
enum broker_err store_admin_token_add(struct store *st, const char *name, const uint8_t hash[32]) BROKER_WUR;
/* BROKER_OK and name when hash belongs to an unrevoked admin token; BROKER_ERR_UNAUTHORIZED otherwise. */
enum broker_err store_admin_token_check(struct store *st, const uint8_t hash[32], char *name, size_t name_cap) BROKER_WUR;

#endif
