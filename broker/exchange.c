/* The token endpoint (RFC 8693, and RFC 7523 jwt-bearer). Everything that can be refused
 * cheaply is refused before any crypto; the answer is sent only after the decision's audit
 * row has been committed (fail closed). The one table mapping internal errors to HTTP status
 * and OAuth error lives here. */
#include "exchange.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "audit.h"
#include "explain.h"
#include "form.h"
#include "idlimit.h"
#include "issuers.h"
#include "jalloc.h"
#include "jwt.h"
#include "bounds.h"
#include "log.h"
#include "metrics.h"
#include "mint.h"
#include "policy.h"
#include "signq.h"
#include "state.h"
#include "tokenreview.h"
#include "verify.h"

#define GT_TOKEN_EXCHANGE "urn:ietf:params:oauth:grant-type:token-exchange"
#define GT_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define TT_JWT "urn:ietf:params:oauth:token-type:jwt"
#define TT_ID_TOKEN "urn:ietf:params:oauth:token-type:id_token"
#define TT_ACCESS_TOKEN "urn:ietf:params:oauth:token-type:access_token"

struct error_map {
    int status;
    const char *error;
    const char *description; /* what kind of failure; never policy content */
};

static const struct error_map errors[BROKER_ERR__COUNT] = {
    [BROKER_ERR_BAD_REQUEST] = {400, "invalid_request", "malformed or missing parameter"},
    [BROKER_ERR_UNSUPPORTED_GRANT] = {400, "unsupported_grant_type",
                                      "grant_type must be token-exchange (RFC 8693) or jwt-bearer (RFC 7523)"},
    [BROKER_ERR_TOKEN_MALFORMED] = {400, "invalid_grant", "subject_token is not a well-formed signed JWT"},
    [BROKER_ERR_TOKEN_TOO_LARGE] = {400, "invalid_grant", "subject_token is too large"},
    [BROKER_ERR_TOKEN_CRIT] = {400, "invalid_grant", "subject_token has critical header parameters"},
    [BROKER_ERR_ALG_NOT_ALLOWED] = {400, "invalid_grant", "subject_token algorithm is not accepted for its issuer"},
    [BROKER_ERR_UNKNOWN_ISSUER] = {400, "invalid_grant", "subject_token issuer is not trusted"},
    [BROKER_ERR_UNKNOWN_KID] = {400, "invalid_grant", "subject_token signing key is not one of the issuer's keys"},
    [BROKER_ERR_KEYS_UNAVAILABLE] = {503, "temporarily_unavailable", "the issuer's keys are not available yet"},
    [BROKER_ERR_BAD_SIGNATURE] = {400, "invalid_grant", "subject_token signature is invalid"},
    [BROKER_ERR_MISSING_EXP] = {400, "invalid_grant", "subject_token has no exp claim"},
    [BROKER_ERR_EXPIRED] = {400, "invalid_grant", "subject_token has expired"},
    [BROKER_ERR_NOT_YET_VALID] = {400, "invalid_grant", "subject_token is not valid yet"},
    [BROKER_ERR_BAD_CLAIM] = {400, "invalid_grant", "subject_token has a malformed registered claim"},
    [BROKER_ERR_WRONG_AUDIENCE] = {400, "invalid_grant", "subject_token audience is not accepted"},
    [BROKER_ERR_REPLAY] = {400, "invalid_grant", "subject_token has already been used"},
    [BROKER_ERR_CLAIM_TOO_LONG] = {400, "invalid_grant", "a claim of subject_token is too long to copy into the access token"},
    [BROKER_ERR_NO_MATCH] = {400, "invalid_grant", "no trust policy matches the subject token"},
    [BROKER_ERR_RATE_LIMITED] = {429, "rate_limited", "the identity's exchange rate limit is exceeded; retry later"},
    /* same answer as NO_MATCH: a caller must not learn which identities exist */
    [BROKER_ERR_UNKNOWN_IDENTITY] = {400, "invalid_grant", "no trust policy matches the subject token"},
    [BROKER_ERR_AMBIGUOUS_IDENTITY] = {400, "invalid_request",
                                       "several identities trust this token; pass the identity parameter"},
    [BROKER_ERR_INVALID_SCOPE] = {400, "invalid_scope", "requested scope is not granted by the matching trust policy"},
    [BROKER_ERR_INVALID_TARGET] = {400, "invalid_target", "requested audience is not allowed for this identity"},
    [BROKER_ERR_NOT_READY] = {503, "temporarily_unavailable", "trust policies are not loaded yet"},
    [BROKER_ERR_AUDIT_UNAVAILABLE] = {503, "temporarily_unavailable",
                                      "the audit store cannot record the decision; nothing was issued"},
    [BROKER_ERR_TOKEN_REVIEW_DENIED] = {400, "invalid_grant",
                                        "subject_token is no longer valid according to its issuer (TokenReview)"},
    [BROKER_ERR_TOKEN_REVIEW_UNAVAILABLE] = {503, "temporarily_unavailable",
                                             "the issuer's TokenReview API cannot confirm the subject_token; "
                                             "nothing was issued"},
};

static const struct error_map *error_for(enum broker_err e)
{
    static const struct error_map internal = {500, "server_error", "internal error"};
    if ((unsigned)e < BROKER_ERR__COUNT && errors[e].status != 0)
        return &errors[e];
    return &internal;
}

static const char *self_issuer;

void exchange_init(const char *issuer)
{
    self_issuer = issuer;
}

struct xjob {
    struct loop_msg msg;          /* continuation on the loop thread */
    struct http_request *r;       /* NULL once h2o has freed the request */
    struct http_defer *defer;
    struct http_loop *loop;
    struct audit_job audit;
    int64_t now;
    const char *token;            /* in req->pool: valid only while r != NULL */
    size_t token_len;
    const char *want_identity, *want_scope, *want_audience, *issued_type;
    const char *bad_request;      /* description for BAD_REQUEST */
    unsigned retry_after_s;       /* for RATE_LIMITED */
    struct jwt jwt;
    bool have_jwt, refetched;
    enum tokenreview_result review; /* set on the review thread, read after the post */
    struct policy_set *set;
    const struct issuer_cfg *issuer;
    enum broker_err result;
    /* between mint_and_decide and on_sign_later: the token's signing input is in minted */
    struct keyring_ref *kr;       /* holds sq.key */
    struct signq_req sq;          /* sq.len: the length of the signing input */
    char jti[48];
    char scope[2048];
    int64_t expires_in;
    size_t minted_len;
    char minted[BROKER_MAX_MINTED_LEN];
    struct policy_result res;     /* the match, kept while a TokenReview is pending */
    struct jalloc_arena arena;    /* the parsed token's JSON; kept across recycling */
};

/* Jobs are ~12 KiB (token and signature buffers): recycled per loop thread rather than
 * calloc'ed and freed per request. A job is allocated and freed on its loop's thread only. */
#define JOB_POOL_MAX 64
static _Thread_local struct xjob *job_pool[JOB_POOL_MAX];
static _Thread_local unsigned job_pool_n;

static struct xjob *job_new(void)
{
    struct xjob *j;
    if (job_pool_n > 0) {
        j = job_pool[--job_pool_n];
    } else {
        if ((j = malloc(sizeof(*j))) == NULL)
            return NULL;
        jalloc_arena_acquire(&j->arena);
    }
    /* everything before the large buffers; those are written before they are read */
    memset(j, 0, offsetof(struct xjob, scope));
    j->scope[0] = '\0';
    j->expires_in = 0;
    j->minted_len = 0;
    return j;
}

static void job_free(struct xjob *j)
{
    http_defer_release(j->defer, &j->r);
    signq_remove(&j->sq);
    if (j->kr != NULL)
        state_keys_put(j->kr);
    if (j->have_jwt && jalloc_arena_whole(&j->arena))
        memset(&j->jwt, 0, sizeof(j->jwt)); /* every node is in the block: dropped with it, unwalked */
    else if (j->have_jwt)
        jwt_release(&j->jwt);
    jalloc_arena_reset(&j->arena); /* after the claims tree is gone */
    if (j->set != NULL)
        policy_set_unref(j->set);
    audit_record_clear(&j->audit.rec);
    /* a signed but unfinished token (its request went away in between) is a credential too */
    OPENSSL_cleanse(j->minted, j->minted_len > j->sq.len ? j->minted_len : j->sq.len);
    OPENSSL_cleanse(j->sq.sig, sizeof(j->sq.sig));
    if (job_pool_n < JOB_POOL_MAX) {
        job_pool[job_pool_n++] = j;
    } else {
        jalloc_arena_release(&j->arena);
        free(j);
    }
}

void exchange_thread_cleanup(void)
{
    while (job_pool_n > 0) {
        struct xjob *j = job_pool[--job_pool_n];
        jalloc_arena_release(&j->arena);
        free(j);
    }
}

static char *dup_str(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* A scalar claim's text (numbers and booleans by their JSON text, as conditions compare them),
 * copied; NULL when missing, not a scalar or longer than BROKER_MAX_CLAIM_LEN. */
static char *dup_claim(const json_t *claims, const char *name)
{
    char buf[POLICY_SCALAR_BUF];
    const char *t;
    size_t n;
    const json_t *v = json_object_get(claims, name);
    if (v == NULL || !policy_scalar_text(v, buf, &t, &n) || n > BROKER_MAX_CLAIM_LEN)
        return NULL;
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, t, n);
        p[n] = '\0';
    }
    return p;
}

static void respond_error(struct xjob *j, enum broker_err e)
{
    const struct error_map *m = error_for(e);
    const char *desc = e == BROKER_ERR_BAD_REQUEST && j->bad_request ? j->bad_request : m->description;
    if (e == BROKER_ERR_RATE_LIMITED) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", j->retry_after_s > 0 ? j->retry_after_s : 1);
        http_add_header(j->r, "retry-after", ra);
    }
    http_respond_error(j->r, m->status, m->error, desc);
}

static void respond_success(struct xjob *j)
{
    /* every exchange answers this way: no snprintf, one pool allocation (escaping grows a byte
     * to at most 6) */
    size_t cap = j->minted_len + strlen(j->issued_type) + 6 * strlen(j->scope) + 128;
    struct mint_buf b = {h2o_mem_alloc_pool(&j->r->req->pool, cap), 0, cap, false};
    MINT_LIT(&b, "{\"access_token\":\"");
    mint_raw(&b, j->minted, j->minted_len);
    MINT_LIT(&b, "\",\"issued_token_type\":\"");
    mint_raw(&b, j->issued_type, strlen(j->issued_type));
    MINT_LIT(&b, "\",\"token_type\":\"Bearer\",\"expires_in\":");
    mint_int(&b, j->expires_in);
    MINT_LIT(&b, ",\"scope\":");
    mint_str(&b, j->scope);
    MINT_LIT(&b, "}");
    if (b.failed) {
        http_respond_error(j->r, 500, "server_error", "internal error");
        return;
    }
    http_respond_json(j->r, 200, b.p, b.len);
}

/* Final step on the loop thread: answer (if the client is still there) and free. */
static void finish(struct xjob *j, enum broker_err e)
{
    metrics_exchange(e, j->r ? http_now_us() - j->r->t0_us : 0);
    if (j->r != NULL) {
        if (e == BROKER_OK)
            respond_success(j);
        else
            respond_error(j, e);
    }
    job_free(j);
}

static void on_audited_loop(struct loop_msg *m)
{
    struct xjob *j = (struct xjob *)m;
    http_inflight_add(j->loop, -1);
    enum broker_err e = j->audit.result != BROKER_OK ? BROKER_ERR_AUDIT_UNAVAILABLE
                        : j->audit.rec.replayed  ? BROKER_ERR_REPLAY /* the row says denied/replay */
                                                 : j->result;
    finish(j, e);
}

static void on_audited(struct audit_job *aj)
{
    struct xjob *j = aj->arg;
    j->msg.cb = on_audited_loop;
    http_post(j->loop, &j->msg); /* from the writer thread back to the request's loop */
}

struct explain_keys {
    struct issuer_keys *k;
};

static const struct jwks *on_explain_keys(void *ctx, const struct issuer_cfg *issuer)
{
    struct explain_keys *x = ctx;
    if (x->k == NULL)
        x->k = issuers_keys_get(issuer->url); /* cached keys only: explaining never fetches */
    return x->k != NULL ? issuer_keys_jwks(x->k) : NULL;
}

/* The audit explanation of a denial: the same document `broker policy test` prints (every check,
 * every trust policy of the issuer with each condition), so `broker audit show` can render it.
 * Denials are the slow path: this parses and verifies once more. */
static char *explain_denial(const struct xjob *j, enum broker_err e)
{
    json_t *o = NULL;
    if (j->token != NULL && j->set != NULL && e != BROKER_ERR_BAD_REQUEST && e != BROKER_ERR_UNSUPPORTED_GRANT) {
        struct explain_keys keys = {0};
        struct explain_request rq = {
            .token = j->token,
            .token_len = j->token_len,
            .identity = j->want_identity,
            .scope = j->want_scope,
            .audience = j->want_audience,
            .peer = (const struct sockaddr *)&j->r->peer,
            .at = j->now,
            .broker_issuer = self_issuer,
            .keys = on_explain_keys,
            .keys_ctx = &keys,
        };
        o = explain_run(j->set, &rq);
        if (keys.k != NULL)
            issuer_keys_unref(keys.k);
    } else {
        o = json_pack("{s:s, s:s}", "decision", "denied", "reason", broker_strerror(e));
        if (o != NULL && e == BROKER_ERR_BAD_REQUEST && j->bad_request != NULL)
            json_object_set_new(o, "detail", json_string(j->bad_request));
    }
    if (o == NULL)
        return NULL;
    /* the exchange's own reason is authoritative (e.g. keys arrived between the two looks) */
    json_object_set_new(o, "reason", json_string(broker_strerror(e)));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s != NULL && strlen(s) > BROKER_AUDIT_EXPLAIN_MAX) {
        free(s);
        s = NULL;
        if ((o = json_pack("{s:s, s:s, s:b}", "decision", "denied", "reason", broker_strerror(e), "truncated", 1)))
            s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    return s;
}

/* Record the decision, then answer once it is durable. */
static void decide(struct xjob *j, enum broker_err e, char *explanation)
{
    struct audit_record *rec = &j->audit.rec;
    j->result = e;
    memcpy(rec->request_id, j->r->request_id, sizeof(j->r->request_id));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rec->at_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    rec->issued = e == BROKER_OK;
    rec->reason = broker_strerror(e);
    rec->client_addr = strdup(j->r->peer_text);
    if (j->have_jwt) {
        rec->subject_iss = j->jwt.iss ? strdup(j->jwt.iss) : NULL;
        rec->subject_sub = dup_claim(j->jwt.claims, "sub");
        rec->subject_jti = dup_claim(j->jwt.claims, "jti");
    }
    if (rec->identity == NULL && j->want_identity != NULL)
        rec->identity = strdup(j->want_identity);
    if (rec->issued && rec->replay_exp > 0 && (rec->subject_iss == NULL || rec->subject_jti == NULL)) {
        /* out of memory copying the jti: it could not be claimed, so nothing is issued */
        log_msg(LOG_WARN, "replay_claim_failed", "request_id=%s", j->r->request_id);
        free(explanation);
        finish(j, BROKER_ERR_INTERNAL);
        return;
    }
    rec->explanation = explanation != NULL ? explanation : e != BROKER_OK ? explain_denial(j, e) : NULL;
    j->audit.done = on_audited;
    j->audit.arg = j;
    if (audit_submit(&j->audit) != BROKER_OK) {
        log_msg(LOG_WARN, "audit_unavailable", "request_id=%s", j->r->request_id);
        finish(j, BROKER_ERR_AUDIT_UNAVAILABLE);
        return;
    }
    http_inflight_add(j->loop, 1);
}

static void on_refetched_loop(struct loop_msg *m);
static void on_refetched(void *arg, bool changed);
static void mint_and_decide(struct xjob *j);

static void evaluate(struct xjob *j);

/* The three stages of the loop's end-of-iteration batch (http_later): verify and evaluate, then
 * write the token, then sign (on_sign_later). A request whose client reset the stream within the
 * iteration is dropped undecided. */
static struct xjob *job_still_wanted(struct loop_msg *m)
{
    struct xjob *j = (struct xjob *)m;
    if (j->r != NULL)
        return j;
    job_free(j);
    return NULL;
}

static void on_evaluate_later(struct loop_msg *m)
{
    struct xjob *j = job_still_wanted(m);
    if (j != NULL)
        evaluate(j);
}

static void on_mint_later(struct loop_msg *m)
{
    struct xjob *j = job_still_wanted(m);
    if (j != NULL)
        mint_and_decide(j);
}

static void on_reviewed(void *arg, enum tokenreview_result r);

/* A TokenReview's answer: mint, or deny with an explanation an admin can act on. */
static void reviewed(struct xjob *j, enum tokenreview_result tr)
{
    if (tr == TOKENREVIEW_AUTHENTICATED) {
        mint_and_decide(j);
        return;
    }
    enum broker_err e =
        tr == TOKENREVIEW_REJECTED ? BROKER_ERR_TOKEN_REVIEW_DENIED : BROKER_ERR_TOKEN_REVIEW_UNAVAILABLE;
    j->audit.rec.identity = dup_str(j->res.identity->name);
    j->audit.rec.policy = dup_str(j->res.policy->name);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "decision", "denied", "reason", broker_strerror(e),
                          "stage", "token_review", "token_review", tokenreview_result_name(tr), "identity",
                          j->res.identity->name, "policy", j->res.policy->name, "note", tokenreview_result_text(tr));
    char *why = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    decide(j, e, why);
}

static void on_reviewed_loop(struct loop_msg *m)
{
    struct xjob *j = (struct xjob *)m;
    struct http_loop *loop = j->loop;
    if (j->r == NULL) /* the client went away meanwhile: no decision was made */
        job_free(j);
    else
        reviewed(j, j->review);
    http_inflight_add(loop, -1); /* after: a drain never sees a gap before what it queued */
}

/* Called on a TokenReview thread. */
static void on_reviewed(void *arg, enum tokenreview_result r)
{
    struct xjob *j = arg;
    j->review = r;
    http_post(j->loop, &j->msg);
}

/* Signature, policy and minting: everything after the request has been parsed. */
static void evaluate(struct xjob *j)
{
    enum broker_err e;
    struct issuer_keys *keys = issuers_keys_get(j->issuer->url);
    if (keys == NULL) {
        decide(j, BROKER_ERR_KEYS_UNAVAILABLE, NULL);
        return;
    }
    e = verify_jwt(&j->jwt, issuer_keys_jwks(keys), j->issuer->algs, j->now, j->issuer->leeway_s);
    issuer_keys_unref(keys);
    if (e == BROKER_ERR_UNKNOWN_KID && !j->refetched) {
        /* a rotated issuer key: one shared refetch, then exactly one more try */
        j->refetched = true;
        j->msg.cb = on_refetched_loop;
        if (issuers_refetch(j->issuer->url, on_refetched, j)) {
            http_inflight_add(j->loop, 1);
            return;
        }
    }
    if (e != BROKER_OK) {
        decide(j, e, NULL);
        return;
    }

    struct policy_input in = {
        .issuer = j->issuer,
        .claims = j->jwt.claims,
        .identity = j->want_identity,
        .scope = j->want_scope,
        .audience = j->want_audience,
        .peer = (const struct sockaddr *)&j->r->peer,
        .default_audience = self_issuer,
    };
    struct policy_result *res = &j->res;
    e = policy_eval(j->set, &in, res, NULL);
    if (e != BROKER_OK) {
        decide(j, e, NULL); /* the audit record gets the full explanation */
        return;
    }
    if (res->identity->rate_per_minute > 0 &&
        !idlimit_take(res->identity->name, res->identity->rate_per_minute, res->identity->rate_burst, http_now_us(),
                      &j->retry_after_s)) {
        j->audit.rec.identity = dup_str(res->identity->name);
        j->audit.rec.policy = dup_str(res->policy->name);
        char why[160];
        snprintf(why, sizeof(why), "{\"stage\":\"rate_limit\",\"per_minute\":%u,\"burst\":%u,\"replicas\":%u}",
                 res->identity->rate_per_minute, res->identity->rate_burst, idlimit_replicas());
        decide(j, BROKER_ERR_RATE_LIMITED, strdup(why));
        return;
    }
    if (res->policy->single_use) {
        /* replay protection: the jti is claimed in the audit transaction, across replicas */
        const json_t *jti = json_object_get(j->jwt.claims, "jti");
        int64_t exp = 0;
        bool has_exp = false;
        if (!json_is_string(jti) || json_string_length(jti) == 0 || json_string_length(jti) > BROKER_MAX_CLAIM_LEN ||
            jwt_claim_time(j->jwt.claims, "exp", &has_exp, &exp) != BROKER_OK || !has_exp) {
            j->audit.rec.identity = dup_str(res->identity->name);
            j->audit.rec.policy = dup_str(res->policy->name);
            decide(j, BROKER_ERR_BAD_CLAIM,
                   strdup("{\"decision\":\"denied\",\"reason\":\"bad_claim\","
                          "\"note\":\"a single_use trust policy needs a jti claim\"}"));
            return;
        }
        j->audit.rec.replay_exp = exp + j->issuer->leeway_s;
    }

    if (j->issuer->token_review_url != NULL) {
        /* the token verified offline; its cluster must still know it (deleted pods, service accounts) */
        int64_t exp = 0;
        bool has_exp = false;
        enum tokenreview_result tr;
        if (jwt_claim_time(j->jwt.claims, "exp", &has_exp, &exp) != BROKER_OK || !has_exp)
            exp = j->now; /* verify_jwt requires exp: unreachable, and then nothing is cached */
        struct tokenreview_request rq = {
            .issuer = j->issuer,
            .audience = res->policy->audience != NULL ? res->policy->audience : self_issuer,
            .token = j->token,
            .token_len = j->token_len,
            .exp = exp,
        };
        j->msg.cb = on_reviewed_loop;
        if (tokenreview_check(&rq, &tr, on_reviewed, j)) {
            http_inflight_add(j->loop, 1);
            return;
        }
        reviewed(j, tr);
        return;
    }
    j->msg.cb = on_mint_later;
    http_later(j->loop, &j->msg); /* signed with this loop iteration's other exchanges */
}

/* Whether a claim the access token would carry has a JSON text longer than BROKER_MAX_CLAIM_LEN.
 * Scalars and short strings cannot (an escape is at most 6 bytes), so the common case costs no
 * serialization (json_dumpb is ~1 µs even for a short string). */
static bool claim_text_too_long(const json_t *v)
{
    if (json_is_string(v) && json_string_length(v) * 6 + 2 <= BROKER_MAX_CLAIM_LEN)
        return false;
    if (!json_is_string(v) && !json_is_object(v) && !json_is_array(v))
        return false;
    return json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) > BROKER_MAX_CLAIM_LEN;
}

/* A heap JSON text writer for an audit explanation: room for a NUL is kept; out of memory
 * makes it failed from the start, so appends are no-ops and buf_take gives NULL. */
static struct mint_buf buf_new(size_t cap)
{
    char *p = malloc(cap);
    return (struct mint_buf){p, 0, p != NULL ? cap - 1 : 0, p == NULL};
}

/* The text, NUL-terminated, or NULL (and freed) when anything failed: no explanation rather
 * than a broken one. */
static char *buf_take(struct mint_buf *b)
{
    if (b->failed) {
        free(b->p);
        return NULL;
    }
    b->p[b->len] = '\0';
    return b->p;
}

/* The explanation of a token denied for what the access token would copy from it (mint_and_decide):
 * one claim (sub, or one of claim_mappings) whose JSON text is longer than BROKER_MAX_CLAIM_LEN
 * (named), or all of them together too long for the access token. */
static char *explain_claim_too_long(const struct policy_result *res, const char *claim)
{
    struct mint_buf b =
        buf_new(6 * (strlen(res->identity->name) + strlen(res->policy->name) + (claim ? strlen(claim) : 0)) + 320);
    MINT_LIT(&b, "{\"decision\":\"denied\",\"reason\":\"claim_too_long\",\"identity\":");
    mint_str(&b, res->identity->name);
    MINT_LIT(&b, ",\"policy\":");
    mint_str(&b, res->policy->name);
    if (claim != NULL) {
        MINT_LIT(&b, ",\"claim\":");
        mint_str(&b, claim);
        MINT_LIT(&b, ",\"note\":\"the access token carries this claim (src.sub, or ext by claim_mappings), and its JSON text is longer than ");
        mint_int(&b, BROKER_MAX_CLAIM_LEN);
    } else {
        MINT_LIT(&b, ",\"note\":\"the claims copied from the subject token (src.sub, claim_mappings) make the access token longer than ");
        mint_int(&b, BROKER_MAX_MINTED_LEN);
    }
    MINT_LIT(&b, " bytes\"}");
    return buf_take(&b); /* names are bounded (BROKER_MAX_CLAIM_NAME_LEN): it fits */
}

/* A queued token is signed only while its client is still there. */
static bool job_sq_wanted(const struct signq_req *q)
{
    return ((const struct xjob *)((const char *)q - offsetof(struct xjob, sq)))->r != NULL;
}

static void record_match(struct xjob *j)
{
    const struct policy_result *res = &j->res;
    j->audit.rec.identity = dup_str(res->identity->name);
    j->audit.rec.policy = dup_str(res->policy->name);
    j->audit.rec.scope = dup_str(res->scope);
    j->audit.rec.audience = dup_str(res->audience);
}

/* The token is signed: finish it, then the issue's audit record. */
static void mint_done(struct xjob *j)
{
    const struct policy_result *res = &j->res;
    enum broker_err e = j->sq.done ? j->sq.rc : BROKER_ERR_INTERNAL;
    if (e == BROKER_OK)
        e = mint_finish(j->minted, sizeof(j->minted), j->sq.len, j->sq.sig, &j->minted_len);
    state_keys_put(j->kr);
    j->kr = NULL;
    j->sq.key = NULL;
    record_match(j);
    if (e != BROKER_OK) {
        decide(j, e, NULL);
        return;
    }
    j->audit.rec.token_jti = strdup(j->jti);
    snprintf(j->scope, sizeof(j->scope), "%s", res->scope);
    j->expires_in = res->ttl_s;
    /* the explanation of an issue is short: built without a JSON tree (hot path); names are
     * checked ASCII (policy_doc.c), so it always fits */
    struct mint_buf b = buf_new(6 * (strlen(res->identity->name) + strlen(res->policy->name)) + 64);
    MINT_LIT(&b, "{\"stage\":\"policy\",\"reason\":\"ok\",\"identity\":");
    mint_str(&b, res->identity->name);
    MINT_LIT(&b, ",\"policy\":");
    mint_str(&b, res->policy->name);
    MINT_LIT(&b, "}");
    decide(j, BROKER_OK, buf_take(&b));
}

static void on_sign_later(struct loop_msg *m)
{
    struct xjob *j = job_still_wanted(m);
    if (j == NULL)
        return;
    if (!j->sq.done)
        signq_run(); /* this iteration's tokens, all at once */
    mint_done(j);
}

/* Minting and the issue's audit record, once every check has passed: the token is written
 * here and signed with the loop iteration's other tokens (on_sign_later). */
static void mint_and_decide(struct xjob *j)
{
    enum broker_err e;
    const struct policy_result *res = &j->res;
    struct keyring_ref *kr = state_keys_get();
    const struct signing_key *sk = kr ? state_keys_ring(kr)->active : NULL;
    json_t *ext = NULL;
    const char *too_long = NULL; /* a mapped claim over BROKER_MAX_CLAIM_LEN: the token is denied */
    if (res->policy->nmappings > 0) {
        ext = json_object();
        for (size_t i = 0; ext != NULL && i < res->policy->nmappings; i++) {
            const json_t *v = policy_claim_get(j->jwt.claims, res->policy->mappings[i].from);
            if (v == NULL)
                continue;
            if (claim_text_too_long(v)) {
                too_long = res->policy->mappings[i].from;
                break;
            }
            json_object_set(ext, res->policy->mappings[i].to, (json_t *)v);
        }
    }
    char src_buf[POLICY_SCALAR_BUF];
    const char *src_sub = NULL; /* src.sub: the subject's sub as text, null when it has none */
    size_t src_sub_len;
    const json_t *sub = json_object_get(j->jwt.claims, "sub");
    if (sub == NULL || !policy_scalar_text(sub, src_buf, &src_sub, &src_sub_len))
        src_sub = NULL;
    else if (too_long == NULL && claim_text_too_long(sub))
        too_long = "sub"; /* copied into src.sub */
    struct mint_input mi = {
        .issuer = self_issuer,
        .identity = res->identity->name,
        .audience = res->audience,
        .scope = res->scope,
        .now = j->now,
        .ttl_s = res->ttl_s,
        .src_iss = j->jwt.iss,
        .src_sub = src_sub,
        .src_policy = res->policy->name,
        .ext = ext,
    };
    e = too_long != NULL ? BROKER_ERR_CLAIM_TOO_LONG
        : sk         ? mint_prepare(sk, &mi, j->minted, sizeof(j->minted), &j->sq.len, j->jti)
                     : BROKER_ERR_INTERNAL;
    json_decref(ext);
    if (e != BROKER_OK) {
        state_keys_put(kr);
        record_match(j);
        decide(j, e, e == BROKER_ERR_CLAIM_TOO_LONG ? explain_claim_too_long(res, too_long) : NULL);
        return;
    }
    j->kr = kr;
    j->sq.key = sk;
    j->sq.msg = (const uint8_t *)j->minted;
    j->sq.wanted = job_sq_wanted;
    signq_add(&j->sq);
    j->msg.cb = on_sign_later;
    http_later(j->loop, &j->msg);
}

static void on_refetched_loop(struct loop_msg *m)
{
    struct xjob *j = (struct xjob *)m;
    struct http_loop *loop = j->loop;
    if (j->r == NULL) /* the client went away meanwhile: no decision was made */
        job_free(j);
    else
        evaluate(j);
    http_inflight_add(loop, -1); /* after: a drain never sees a gap before what it queued */
}

/* Called on the fetcher thread when the shared refetch is done. */
static void on_refetched(void *arg, bool changed)
{
    (void)changed;
    struct xjob *j = arg;
    http_post(j->loop, &j->msg);
}

static const char *param(const struct form *f, const char *name)
{
    size_t len;
    const char *v = form_get(f, name, &len);
    return v != NULL && len > 0 ? v : NULL;
}

/* Request shape checks: no crypto, no lookups. */
static enum broker_err parse_request(struct xjob *j, const struct form *f)
{
    const char *gt = param(f, "grant_type");
    if (gt == NULL) {
        j->bad_request = "grant_type is required";
        return BROKER_ERR_BAD_REQUEST;
    }
    if (strcmp(gt, GT_TOKEN_EXCHANGE) == 0) {
        const char *tt = param(f, "subject_token_type");
        j->token = param(f, "subject_token");
        if (j->token == NULL || tt == NULL) {
            j->bad_request = "subject_token and subject_token_type are required";
            return BROKER_ERR_BAD_REQUEST;
        }
        if (strcmp(tt, TT_JWT) != 0 && strcmp(tt, TT_ID_TOKEN) != 0) {
            j->bad_request = "subject_token_type must be urn:ietf:params:oauth:token-type:jwt or :id_token";
            return BROKER_ERR_BAD_REQUEST;
        }
        if (param(f, "actor_token") != NULL || param(f, "actor_token_type") != NULL) {
            j->bad_request = "actor_token (delegation) is not supported";
            return BROKER_ERR_BAD_REQUEST;
        }
    } else if (strcmp(gt, GT_JWT_BEARER) == 0) {
        j->token = param(f, "assertion");
        if (j->token == NULL) {
            j->bad_request = "assertion is required";
            return BROKER_ERR_BAD_REQUEST;
        }
    } else {
        return BROKER_ERR_UNSUPPORTED_GRANT;
    }
    j->token_len = strlen(j->token);
    if (param(f, "resource") != NULL) {
        j->bad_request = "resource is not supported; use audience";
        return BROKER_ERR_BAD_REQUEST;
    }
    const char *rtt = param(f, "requested_token_type");
    if (rtt == NULL || strcmp(rtt, TT_ACCESS_TOKEN) == 0)
        j->issued_type = TT_ACCESS_TOKEN;
    else if (strcmp(rtt, TT_JWT) == 0)
        j->issued_type = TT_JWT;
    else {
        j->bad_request = "requested_token_type must be access_token or jwt";
        return BROKER_ERR_BAD_REQUEST;
    }
    j->want_identity = param(f, "identity");
    j->want_scope = param(f, "scope");
    j->want_audience = param(f, "audience");
    if (j->want_identity != NULL && strlen(j->want_identity) > BROKER_MAX_NAME_LEN) {
        j->bad_request = "identity is too long";
        return BROKER_ERR_BAD_REQUEST;
    }
    return BROKER_OK;
}

int exchange_handle(struct http_request *r)
{
    h2o_req_t *req = r->req;
    if (req->entity.len > BROKER_MAX_BODY) {
        http_respond_error(r, 413, "invalid_request", "request body is too large");
        return 0;
    }
    bool is_json = http_content_type_is(req, "application/json");
    if (!is_json && !http_content_type_is(req, "application/x-www-form-urlencoded")) {
        http_respond_error(r, 415, "invalid_request",
                           "Content-Type must be application/x-www-form-urlencoded or application/json");
        return 0;
    }
    if (http_draining()) {
        http_respond_error(r, 503, "temporarily_unavailable", "shutting down");
        return 0;
    }

    struct xjob *j = job_new();
    if (j == NULL) {
        http_respond_error(r, 500, "server_error", "out of memory");
        return 0;
    }
    j->defer = http_defer(r, &j->r);
    j->loop = r->loop;
    j->now = (int64_t)time(NULL);

    struct form f;
    size_t scratch_cap = req->entity.len + 1;
    char *scratch = h2o_mem_alloc_pool(&req->pool, scratch_cap);
    enum broker_err e = is_json ? form_parse_json((const uint8_t *)req->entity.base, req->entity.len, &f, scratch,
                                                  scratch_cap)
                                : form_parse((const uint8_t *)req->entity.base, req->entity.len, &f, scratch, scratch_cap);
    if (e != BROKER_OK) {
        j->bad_request = "the request body is not a well-formed form (or JSON object of strings)";
        decide(j, BROKER_ERR_BAD_REQUEST, NULL);
        return 0;
    }
    if ((e = parse_request(j, &f)) != BROKER_OK) {
        decide(j, e, NULL);
        return 0;
    }
    j->set = state_policy_get();
    if (j->set == NULL) {
        decide(j, BROKER_ERR_NOT_READY, NULL); /* no policies loaded yet: nothing can be decided */
        return 0;
    }
    if (j->token_len > BROKER_MAX_TOKEN_LEN) {
        decide(j, BROKER_ERR_TOKEN_TOO_LARGE, NULL);
        return 0;
    }
    jalloc_arena_begin(&j->arena); /* the header and claims trees live in the job's block */
    e = jwt_parse((const uint8_t *)j->token, j->token_len, &j->jwt);
    jalloc_arena_end();
    if (e != BROKER_OK) {
        decide(j, e, NULL);
        return 0;
    }
    j->have_jwt = true;
    j->issuer = j->jwt.iss ? policy_set_issuer_by_url(j->set, j->jwt.iss) : NULL;
    if (j->issuer == NULL) {
        decide(j, BROKER_ERR_UNKNOWN_ISSUER, NULL);
        return 0;
    }
    j->msg.cb = on_evaluate_later;
    http_later(j->loop, &j->msg); /* verified with this iteration's other requests, then signed */
    return 0;
}
