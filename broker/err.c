#include "err.h"

static const char *const names[BROKER_ERR__COUNT] = {
    [BROKER_OK] = "ok",
    [BROKER_ERR_NOMEM] = "out_of_memory",
    [BROKER_ERR_INTERNAL] = "internal",
    [BROKER_ERR_IO] = "io",
    [BROKER_ERR_CONFIG] = "config",
    [BROKER_ERR_BAD_REQUEST] = "bad_request",
    [BROKER_ERR_UNSUPPORTED_GRANT] = "unsupported_grant_type",
    [BROKER_ERR_METHOD] = "method_not_allowed",
    [BROKER_ERR_BODY_TOO_LARGE] = "body_too_large",
    [BROKER_ERR_CONTENT_TYPE] = "unsupported_media_type",
    [BROKER_ERR_RATE_LIMITED] = "rate_limited",
    [BROKER_ERR_NOT_FOUND] = "not_found",
    [BROKER_ERR_UNAUTHORIZED] = "unauthorized",
    [BROKER_ERR_FORBIDDEN] = "forbidden",
    [BROKER_ERR_TOKEN_MALFORMED] = "token_malformed",
    [BROKER_ERR_TOKEN_TOO_LARGE] = "token_too_large",
    [BROKER_ERR_TOKEN_CRIT] = "token_crit_unsupported",
    [BROKER_ERR_ALG_NOT_ALLOWED] = "alg_not_allowed",
    [BROKER_ERR_UNKNOWN_ISSUER] = "untrusted_issuer",
    [BROKER_ERR_UNKNOWN_KID] = "unknown_kid",
    [BROKER_ERR_KEYS_UNAVAILABLE] = "issuer_keys_unavailable",
    [BROKER_ERR_BAD_SIGNATURE] = "bad_signature",
    [BROKER_ERR_MISSING_EXP] = "missing_exp",
    [BROKER_ERR_EXPIRED] = "expired",
    [BROKER_ERR_NOT_YET_VALID] = "not_yet_valid",
    [BROKER_ERR_BAD_CLAIM] = "bad_claim",
    [BROKER_ERR_WRONG_AUDIENCE] = "wrong_audience",
    [BROKER_ERR_REPLAY] = "replay",
    [BROKER_ERR_NO_MATCH] = "no_matching_policy",
    [BROKER_ERR_AMBIGUOUS_IDENTITY] = "ambiguous_identity",
    [BROKER_ERR_UNKNOWN_IDENTITY] = "unknown_identity",
    [BROKER_ERR_INVALID_SCOPE] = "invalid_scope",
    [BROKER_ERR_INVALID_TARGET] = "invalid_target",
    [BROKER_ERR_INVALID_DOCUMENT] = "invalid_document",
    [BROKER_ERR_DB] = "database",
    [BROKER_ERR_AUDIT_UNAVAILABLE] = "audit_unavailable",
    [BROKER_ERR_NOT_READY] = "not_ready",
    [BROKER_ERR_PRECONDITION_FAILED] = "precondition_failed",
    [BROKER_ERR_CONFLICT] = "conflict",
    [BROKER_ERR_TOKEN_REVIEW_DENIED] = "token_review_denied",
    [BROKER_ERR_TOKEN_REVIEW_UNAVAILABLE] = "token_review_unavailable",
    [BROKER_ERR_TOKEN_REVOKED] = "revoked",
    [BROKER_ERR_CLAIM_TOO_LONG] = "claim_too_long",
};

const char *broker_strerror(enum broker_err e)
{
    if ((unsigned)e >= BROKER_ERR__COUNT || names[e] == 0)
        return "unknown";
    return names[e];
}
