/* Internal to the admin module: the job every admin route becomes, shared by admin.c (the job
 * machinery, authentication and authorization: the one place) and the route families
 * admin_docs.c, admin_audit.c and admin_policy.c. Not for other modules; they use admin.h. */
#ifndef BROKER_ADMIN_INT_H
#define BROKER_ADMIN_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "admin.h"
#include "bounds.h"
#include "err.h"
#include "http.h"
#include "store.h"
#include "worker.h"

#define ADMIN_MAX_QUERY 4096

enum admin_op {
    OP_DOC_LIST, OP_DOC_GET, OP_DOC_PUT, OP_DOC_DELETE, OP_AUDIT_LIST, OP_AUDIT_GET, OP_POLICY_TEST, OP_POLICY_APPLY,
    OP_INTROSPECT, OP_REVOKE
};

#define PRIV_BIT(p) (1u << (unsigned)(p))

enum admin_cred {
    CRED_ADMIN_TOKEN,           /* brk_admin_...: looked up by hash on the worker */
    CRED_BROKER_TOKEN,          /* a Broker-minted access token, verified on the loop (lifecycle_verify) */
    CRED_NONE,                  /* POST /v1/revoke only: no credential, or one that did not authenticate */
};

struct admin_job {
    struct worker_job w;
    struct http_request *r;     /* NULL once h2o freed the request */
    struct http_defer *defer;
    enum admin_op op;
    enum http_priv priv;        /* what the route requires */
    const char *kind;           /* "identity" / "issuer" on document routes */
    enum admin_cred cred;
    uint8_t hash[32];
    unsigned privs;             /* PRIV_BIT set of the caller, filled by authentication */
    char *arg;                  /* path segment after the route prefix; NULL when none or too long */
    char *query;                /* without '?'; NULL when none */
    size_t query_len;
    char *body;
    size_t body_len;
    bool json_body;
    char *if_match, *if_none_match;
    bool bad_header;            /* a precondition header over ADMIN_MAX_HEADER */
    bool form_body;             /* Content-Type application/x-www-form-urlencoded (introspection) */
    int64_t exp;                /* OP_REVOKE: the token's exp; 0 for a revocation by jti (in arg) */
    bool no_bearer;             /* CRED_NONE: the request had no Authorization: Bearer at all */
    /* outcome, written on the worker */
    char who[BROKER_MAX_NAME_LEN + 16];
    int status;
    const char *error;          /* error code (static) when resp is NULL */
    char desc[1100];
    const char *www_auth;       /* static */
    char etag[STORE_ETAG_HEX + 3];
    char location[64 + BROKER_MAX_NAME_LEN];
    const char *change;         /* static */
    char *resp;                 /* JSON body, malloc'ed */
};

/* Loop side of every admin route: copy the request into a job for the worker (prefix: see admin.c). */
int admin_submit(struct http_request *r, enum admin_op op, const char *kind, const char *prefix);
/* Loop side of POST /v1/revoke once the loop has decided what to revoke: jti, and exp (the token's;
 * 0 for a revocation by id, which requires PRIV_ADMIN). The bearer credential is optional: without
 * one, or with one that does not authenticate, the job runs as CRED_NONE. */
int admin_submit_revoke(struct http_request *r, const char *jti, size_t jti_len, int64_t exp);
/* The broker's own issuer URL given to admin_init. */
const char *admin_issuer(void);
/* The job's answer: an error (desc formatted), a store failure (503, or 500 out of memory), JSON (takes o). */
void admin_job_fail(struct admin_job *j, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void admin_job_store_fail(struct admin_job *j, struct store *st, enum broker_err e);
void admin_job_json(struct admin_job *j, int status, json_t *o);

/* Worker side, after admin_authorize let the caller through (admin_docs.c, admin_audit.c, admin_policy.c). */
void admin_docs_run_list(struct store *st, struct admin_job *j);
void admin_docs_run_get(struct store *st, struct admin_job *j);
void admin_docs_run_put(struct store *st, struct admin_job *j);
void admin_docs_run_delete(struct store *st, struct admin_job *j);
void admin_audit_run_list(struct store *st, struct admin_job *j);
void admin_audit_run_get(struct store *st, struct admin_job *j);
void admin_policy_run_test(struct admin_job *j);
void admin_policy_run_apply(struct store *st, struct admin_job *j);
/* lifecycle.c: POST /v1/introspect and POST /v1/revoke (the revocation, after the loop verified the token). */
void lifecycle_run_introspect(struct admin_job *j);
void lifecycle_run_revoke(struct store *st, struct admin_job *j);

#endif
