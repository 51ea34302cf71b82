/* Admin routes: identity and issuer documents, audit records. Authentication: an admin token
 * (only its SHA-256 is stored); the privilege each route needs is the route table's priv column,
 * checked in one place (admin_authorize in admin.c). Every handler answers later, from the
 * worker thread's result: the event loop never waits on PostgreSQL. */
#ifndef BROKER_ADMIN_H
#define BROKER_ADMIN_H
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "http.h"

#define ADMIN_TOKEN_PREFIX "brk_admin_"
/* A committed change waits at most this long for this replica to serve it. */
#define ADMIN_SERVE_WAIT_MS 2000

/* GET /v1/identities, GET /v1/issuers: {"items":[{"name","etag","version","updated_at","document"}]} */
int admin_docs_list(struct http_request *r);
/* GET /v1/identities/{name}, /v1/issuers/{name}: the stored document, with ETag (304 on If-None-Match) */
int admin_doc_get(struct http_request *r);
/* PUT ...: 201 created / 200 updated or unchanged, {"kind","name","change","etag","served","document"} */
int admin_doc_put(struct http_request *r);
/* DELETE ...: 204; 409 for an issuer an identity still trusts */
int admin_doc_delete(struct http_request *r);
/* Any other method on /v1/identities/{name} or /v1/issuers/{name}: 405 with Allow */
int admin_doc_method(struct http_request *r);
/* GET /v1/audit?identity=&result=&since=&request_id=&limit=&cursor=: {"items":[...],"next_cursor"} */
int admin_audit_list(struct http_request *r);
/* GET /v1/audit/{request_id} */
int admin_audit_get(struct http_request *r);
/* POST /v1/policy/apply (GitOps batch, all or nothing) */
int admin_policy_apply(struct http_request *r);
/* POST /v1/policy/test */
int admin_policy_test(struct http_request *r);
/* The broker's own issuer URL (default audience of trust policies, for explanations). */
void admin_init(const char *issuer);

/* New random admin token text (NUL-terminated) and its hash. */
enum broker_err admin_token_new(char *out, size_t cap, uint8_t hash[32]) BROKER_WUR;
void admin_token_hash(const char *token, size_t len, uint8_t hash[32]);

#endif
