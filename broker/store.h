/* PostgreSQL access. store*.c are the only files that include libpq (store_int.h is their
 * internal header). Blocking calls: use it from background threads or the CLI, never from an
 * event loop. */
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
    /* single_use: when replay_exp > 0 the subject token's (subject_iss, subject_jti) is claimed in
     * the same transaction; if it was already used the row is stored as denied/replay instead and
     * replayed is set (the caller must then not hand out the token). */
    int64_t replay_exp;       /* Unix seconds after which the claim may be pruned; 0: no claim */
    bool replayed;            /* out */
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
/* Record this replica as live (id: unique per process) and count the live replicas (seen in the
 * last 5 s, this one included). */
enum broker_err store_replica_heartbeat(struct store *st, const char *id, unsigned *live) BROKER_WUR;
/* LISTEN broker_policy on this connection (every document change NOTIFYs it). */
enum broker_err store_listen(struct store *st) BROKER_WUR;
/* Wait up to timeout_ms for notifications; *notified when any arrived (all are consumed). */
enum broker_err store_wait_notify(struct store *st, int timeout_ms, bool *notified) BROKER_WUR;
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

/* ---- admin API: one document at a time, with ETags ----
 * A document's ETag value is the first 32 hex digits of SHA-256 of its stored text (PostgreSQL's
 * canonical jsonb text, which is also what store_doc_get returns): equal documents have equal
 * ETags, so a delete and re-create cannot make a stale ETag match different content. */
#define STORE_ETAG_HEX 32
#define STORE_PRECOND_MAX_TAGS 8

struct store_doc {
    char etag[STORE_ETAG_HEX + 1];
    int64_t version;          /* the row's version (1 on create, +1 per update) */
    char *text;               /* the stored document (jsonb text), malloc'ed */
};
void store_doc_clear(struct store_doc *d);

/* One stored document; kind is "issuer" or "identity". BROKER_ERR_NOT_FOUND when absent. */
enum broker_err store_doc_get(struct store *st, const char *kind, const char *name, struct store_doc *out) BROKER_WUR;
/* All documents of a kind as a JSON array sorted by name:
 * [{"name","etag","version","updated_at" (RFC 3339 UTC),"document"}...]. */
enum broker_err store_doc_list(struct store *st, const char *kind, json_t **out) BROKER_WUR;

/* HTTP preconditions (RFC 9110 §13), evaluated with the document's row locked. Tags are ETag
 * values without quotes; weak tags never match an If-Match (strong comparison), so a caller
 * passes only the strong ones and keeps if_match set. */
struct store_precond {
    bool if_match;            /* the document must exist and, unless match_any, carry one of match[] */
    bool match_any;           /* If-Match: * */
    const char *match[STORE_PRECOND_MAX_TAGS];
    size_t nmatch;
    bool if_none_match;       /* fails when the document exists and (none_any or it carries one of none[]) */
    bool none_any;            /* If-None-Match: * */
    const char *none[STORE_PRECOND_MAX_TAGS];
    size_t nnone;
};

/* Validates the whole document set a change would produce (arrays of issuer and identity
 * documents); anything but BROKER_OK refuses the change, with err saying why. */
struct store_doc_check {
    enum broker_err (*fn)(void *arg, const json_t *issuers, const json_t *identities, char *err, size_t errlen);
    void *arg;
};

/* store_put_documents_as with check run on the whole resulting set inside the transaction, under
 * the policy_state lock (also on a dry run): a refusal is BROKER_ERR_INVALID_DOCUMENT with err
 * saying why (as for a bad shape or duplicate name), nothing written. check may be NULL. */
enum broker_err store_put_documents_checked(struct store *st, const char *actor, const json_t *issuers,
                                            const json_t *identities, bool prune, bool dry_run,
                                            const struct store_doc_check *check, json_t *changes, char *err,
                                            size_t errlen) BROKER_WUR;

struct store_doc_result {
    const char *change;       /* "created", "updated", "unchanged" or "deleted" (static) */
    struct store_doc doc;     /* after a put; the deleted document after a delete */
    char err[1024];           /* why a change was refused */
};

/* Create or replace one document (its name is its "issuer" / "identity" member) in one
 * transaction: lock the policy state and the row, evaluate pre, overlay doc on the stored set
 * and run check on the result, write, record an audit_changes row (who = actor, before, after),
 * bump policy_state.generation and NOTIFY broker_policy. An equal document is "unchanged":
 * nothing written (pre still applies). Errors: BROKER_ERR_PRECONDITION_FAILED,
 * BROKER_ERR_INVALID_DOCUMENT (shape or check; out->err says why), BROKER_ERR_DB, NOMEM; then
 * nothing changed. out must be zeroed by the caller and released with store_doc_clear(&out->doc). */
enum broker_err store_doc_put(struct store *st, const char *actor, const char *kind, const json_t *doc,
                              const struct store_precond *pre, const struct store_doc_check *check,
                              struct store_doc_result *out) BROKER_WUR;
/* Delete one document the same way. BROKER_ERR_NOT_FOUND when absent (PRECONDITION_FAILED when
 * pre->if_match is set); BROKER_ERR_CONFLICT when an identity's trust policy still names the issuer
 * or check refuses the remaining set (out->err says which). */
enum broker_err store_doc_delete(struct store *st, const char *actor, const char *kind, const char *name,
                                 const struct store_precond *pre, const struct store_doc_check *check,
                                 struct store_doc_result *out) BROKER_WUR;

/* Decisions newest first, for GET /v1/audit. NULL filters match everything. */
#define STORE_AUDIT_LIST_MAX 1000
struct store_audit_filter {
    const char *identity;     /* exact */
    const char *result;       /* "issued" or "denied" */
    const char *since;        /* RFC 3339 timestamp (checked by the caller): at >= since */
    const char *request_id;   /* exact */
    int64_t before_id;        /* cursor: only rows with a smaller id; 0 = from the newest */
    int limit;                /* 1..STORE_AUDIT_LIST_MAX */
};
/* *items: a JSON array of records as store_audit_get returns them, without "explanation";
 * *next_cursor: the last row's id when more rows follow, else 0. */
enum broker_err store_audit_list(struct store *st, const struct store_audit_filter *f, json_t **items,
                                 int64_t *next_cursor) BROKER_WUR;

/* ---- revoked tokens (store_revoke.c) ---- */
/* Record a revocation of jti (the token's exp in Unix seconds; by: "bearer" or the admin's name)
 * and NOTIFY broker_revoke, in one statement. Idempotent: an existing row is left as it is and
 * *added is false. */
enum broker_err store_revoke_add(struct store *st, const char *jti, int64_t exp, const char *by,
                                 bool *added) BROKER_WUR;
/* Revocations with seq > after_seq in seq order, at most limit, each passed to fn (jti, its length,
 * exp in Unix seconds; a result other than BROKER_OK stops the listing and is returned).
 * *last_seq: the seq of the last row fn accepted (left alone when none); *rows: how many. Rows
 * not pruned yet are listed even when expired. */
enum broker_err store_revoke_list(struct store *st, int64_t after_seq, int limit,
                                  enum broker_err (*fn)(void *arg, const char *jti, size_t len, int64_t exp),
                                  void *arg, int64_t *last_seq, int *rows) BROKER_WUR;
/* The same for every revocation made in the last `seconds` seconds, whatever its seq: heals a row
 * whose seq was taken before another's but that committed after the reader moved past it. */
enum broker_err store_revoke_recent(struct store *st, int seconds,
                                    enum broker_err (*fn)(void *arg, const char *jti, size_t len, int64_t exp),
                                    void *arg, int *rows) BROKER_WUR;
/* LISTEN broker_revoke on this connection (store_wait_notify reports it like broker_policy). */
enum broker_err store_revoke_listen(struct store *st) BROKER_WUR;

#endif
