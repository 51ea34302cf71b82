/* The one error enum of Broker. Fallible functions return it. */
#ifndef BROKER_ERR_H
#define BROKER_ERR_H

#define BROKER_WUR __attribute__((warn_unused_result))

enum broker_err {
    BROKER_OK = 0,
    BROKER_ERR_NOMEM,
    BROKER_ERR_INTERNAL,
    BROKER_ERR_IO,
    BROKER_ERR_CONFIG,

    /* request shape */
    BROKER_ERR_BAD_REQUEST,         /* malformed or missing parameter */
    BROKER_ERR_UNSUPPORTED_GRANT,
    BROKER_ERR_METHOD,
    BROKER_ERR_BODY_TOO_LARGE,
    BROKER_ERR_CONTENT_TYPE,
    BROKER_ERR_RATE_LIMITED,
    BROKER_ERR_NOT_FOUND,
    BROKER_ERR_UNAUTHORIZED,        /* no or bad bearer token */
    BROKER_ERR_FORBIDDEN,           /* valid bearer, missing privilege */

    /* subject token */
    BROKER_ERR_TOKEN_MALFORMED,     /* not a compact JWS / bad base64url / bad JSON */
    BROKER_ERR_TOKEN_TOO_LARGE,
    BROKER_ERR_TOKEN_CRIT,          /* crit header: we understand no extensions */
    BROKER_ERR_ALG_NOT_ALLOWED,     /* none, HMAC, not in issuer list, key type mismatch */
    BROKER_ERR_UNKNOWN_ISSUER,
    BROKER_ERR_UNKNOWN_KID,
    BROKER_ERR_KEYS_UNAVAILABLE,    /* issuer keys never fetched successfully */
    BROKER_ERR_BAD_SIGNATURE,
    BROKER_ERR_MISSING_EXP,
    BROKER_ERR_EXPIRED,
    BROKER_ERR_NOT_YET_VALID,       /* nbf or iat in the future beyond leeway */
    BROKER_ERR_BAD_CLAIM,           /* a registered claim of the wrong type */
    BROKER_ERR_WRONG_AUDIENCE,
    BROKER_ERR_REPLAY,

    /* policy */
    BROKER_ERR_NO_MATCH,
    BROKER_ERR_AMBIGUOUS_IDENTITY,
    BROKER_ERR_UNKNOWN_IDENTITY,
    BROKER_ERR_INVALID_SCOPE,
    BROKER_ERR_INVALID_TARGET,
    BROKER_ERR_INVALID_DOCUMENT,

    /* storage */
    BROKER_ERR_DB,
    BROKER_ERR_AUDIT_UNAVAILABLE,
    BROKER_ERR_NOT_READY,           /* policies or keys not loaded yet */

    /* admin API */
    BROKER_ERR_PRECONDITION_FAILED, /* If-Match / If-None-Match does not hold */
    BROKER_ERR_CONFLICT,            /* the change would break a reference (issuer still in use) */

    /* Kubernetes TokenReview (after offline verification) */
    BROKER_ERR_TOKEN_REVIEW_DENIED,      /* the API server says the token is not authenticated */
    BROKER_ERR_TOKEN_REVIEW_UNAVAILABLE, /* the review could not be made: denied, fail closed */

    BROKER_ERR_TOKEN_REVOKED,       /* a Broker-minted token revoked through POST /v1/revoke */
    BROKER_ERR_CLAIM_TOO_LONG,      /* a claim copied by claim_mappings does not fit the access token */

    BROKER_ERR__COUNT
};

/* Short, stable, log-safe reason code ("expired", "bad_signature", ...). */
const char *broker_strerror(enum broker_err e);

#endif
