/* Kubernetes TokenReview for issuers with "token_review": a token that verified offline is also
 * checked with the cluster's API server, so a deleted pod's (or service account's) token stops
 * working before it expires. Answers are cached for token_review_cache_s (never past the token's
 * exp). Reviews run on this module's own threads (libcurl); loop threads never block. */
#ifndef BROKER_TOKENREVIEW_H
#define BROKER_TOKENREVIEW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "policy.h"

enum tokenreview_result {
    TOKENREVIEW_AUTHENTICATED,    /* status.authenticated, for the audience we asked about */
    TOKENREVIEW_REJECTED,         /* status.authenticated false: pod or service account gone */
    /* no answer: the exchange is refused all the same (fail closed) and nothing is cached */
    TOKENREVIEW_ERR_NETWORK,      /* connect, DNS, reset */
    TOKENREVIEW_ERR_TLS,          /* handshake or certificate verification */
    TOKENREVIEW_ERR_TIMEOUT,      /* BROKER_TOKEN_REVIEW_TIMEOUT_MS, or queued that long before a thread was free */
    TOKENREVIEW_ERR_UNAUTHORIZED, /* 401/403: our bearer token is refused or lacks the RBAC grant */
    TOKENREVIEW_ERR_HTTP_STATUS,  /* any other status, redirects included */
    TOKENREVIEW_ERR_BAD_RESPONSE, /* not a TokenReview, too large, or not audience-aware */
    TOKENREVIEW_ERR_BEARER,       /* bearer_token_file not allowed (BROKER_BEARER_TOKEN_FILES), unreadable, empty,
                                     too large or not a token */
    TOKENREVIEW_ERR_OVERLOADED,   /* BROKER_TOKEN_REVIEW_QUEUE_MAX reviews pending, or not started */
    TOKENREVIEW_ERR_INTERNAL,
    TOKENREVIEW__COUNT
};

/* Metric label and log reason: "authenticated", "rejected", "network", ... */
const char *tokenreview_result_name(enum tokenreview_result r);
/* One sentence for the audit record, naming TokenReview and what an admin can do about it. */
const char *tokenreview_result_text(enum tokenreview_result r);

/* Start the review threads; idempotent. */
enum broker_err tokenreview_start(void) BROKER_WUR;
/* Abort running reviews, join the threads, call every pending callback with
 * TOKENREVIEW_ERR_OVERLOADED (on the calling thread) and empty the cache. */
void tokenreview_stop(void);

struct tokenreview_request {
    const struct issuer_cfg *issuer; /* token_review_url (not NULL), token_review_cache_s, ca_file,
                                        bearer_token_file; copied, need not outlive the call */
    const char *audience;            /* the audience the trust policy accepted: spec.audiences */
    const char *token;               /* the subject token (copied; never logged) */
    size_t token_len;
    int64_t exp;                     /* its exp (Unix seconds): no answer is reused past it */
};

/* Review a verified token. false: the answer is known now, in *result (a cached answer, or an error
 * such as TOKENREVIEW_ERR_OVERLOADED). true: cb(arg, result) will be called exactly once, on a review
 * thread; concurrent checks of one token share one request to the API server. */
bool tokenreview_check(const struct tokenreview_request *rq, enum tokenreview_result *result,
                       void (*cb)(void *arg, enum tokenreview_result r), void *arg);

/* Prometheus text: broker_token_review_total{result}, broker_token_review_cache_hits_total.
 * Writes whole lines only, NUL-terminated; returns bytes written. */
size_t tokenreview_metrics(char *out, size_t cap);

#endif
