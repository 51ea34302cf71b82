/* Every input bound in one place. Limits tighten before authentication: an
 * unauthenticated caller can never make Broker buffer, parse or fetch more
 * than these. */
#ifndef BROKER_BOUNDS_H
#define BROKER_BOUNDS_H

/* HTTP */
#define BROKER_MAX_BODY 65536              /* request body answered with 413 above this */
#define BROKER_MAX_BODY_BUFFER 262144      /* h2o's own buffer cap (see README: HTTP/2 RST above it) */
#define BROKER_MAX_HTTP2_STREAMS 64        /* concurrent requests per HTTP/2 connection */
#define BROKER_MAX_FORM_FIELDS 16          /* fields in a form or JSON token request */
#define BROKER_MAX_FORM_VALUE 16384        /* one decoded form value */

/* JWT / JSON */
#define BROKER_MAX_TOKEN_LEN 16384         /* compact JWS, bytes */
#define BROKER_MAX_JOSE_HEADER_LEN 2048    /* decoded protected header, bytes */
#define BROKER_MAX_JSON_DEPTH 16           /* nesting of arrays/objects in any parsed JSON */
#define BROKER_MAX_SIG_LEN 1024            /* decoded signature (RSA-8192 = 1024 bytes) */
#define BROKER_MAX_KID_LEN 256
#define BROKER_MAX_CLAIM_LEN 4096          /* a claim value copied into audit or a minted token */

/* Issuer keys */
#define BROKER_MAX_JWKS_BYTES 65536
#define BROKER_MAX_JWKS_KEYS 32
#define BROKER_MIN_RSA_BITS 2048
#define BROKER_MAX_RSA_BITS 8192
#define BROKER_JWKS_FETCH_TIMEOUT_MS 5000
#define BROKER_JWKS_REFETCH_COOLDOWN_S 10  /* unknown-kid refetches per issuer at most this often */
#define BROKER_JWKS_REFRESH_S 3600         /* periodic refresh of fetched key sets */

/* Policy documents */
#define BROKER_MAX_DOC_BYTES (1024 * 1024)
#define BROKER_MAX_NAME_LEN 128            /* identity, issuer and policy names */
#define BROKER_MAX_POLICIES_PER_IDENTITY 64
#define BROKER_MAX_CONDITIONS 64           /* claim conditions per trust policy */
#define BROKER_MAX_LIST 256                /* entries in `in`, scopes, audiences, cidrs */
#define BROKER_MAX_TTL_S (12 * 3600)

/* Minted tokens */
#define BROKER_DEFAULT_TTL_S 900
#define BROKER_MAX_MINTED_LEN 8192

/* Rate limits (per event-loop thread, before any crypto) */
#define BROKER_RATE_PER_CONN 200           /* requests per second, burst the same */
#define BROKER_RATE_PER_ADDR 2000          /* requests per second per client address */

/* Audit */
#define BROKER_AUDIT_QUEUE_MAX 8192        /* pending records; above it exchanges get 503 */
#define BROKER_AUDIT_BATCH_MAX 256         /* rows per group commit */
#define BROKER_AUDIT_EXPLAIN_MAX 65536     /* bytes of explanation stored per decision */

/* Trust policy conditions */
#define BROKER_MAX_PATTERN_LEN 1024        /* glob and regex source text */
#define BROKER_MAX_CLAIM_NAME_LEN 256      /* claim names and JSON Pointers in policies */
#define BROKER_MAX_REGEX_COST 4096         /* estimated compiled size of a regex (repetitions expanded) */

#define BROKER_MAX_FORM_NAME 64           /* one decoded form or JSON parameter name */

/* Kubernetes TokenReview (tokenreview.c) */
#define BROKER_TOKEN_REVIEW_TIMEOUT_MS 3000 /* one review, connect included */
#define BROKER_TOKEN_REVIEW_MAX_RESPONSE 65536
#define BROKER_TOKEN_REVIEW_QUEUE_MAX 256  /* distinct reviews waiting or running; above it: unavailable */
#define BROKER_TOKEN_REVIEW_CACHE_MAX 4096 /* cached answers (4-way sets, the soonest to expire evicted) */

/* Issuer fetches (appended; see issuers_fetch.c) */
#define BROKER_JWKS_MIN_REFRESH_S 60       /* Cache-Control max-age (or no-cache/no-store) never refreshes sooner */
#define BROKER_JWKS_MAX_REFRESH_S 21600    /* ... nor later: a key the issuer removed stops verifying within 6 h */
#define BROKER_MAX_FETCH_HEADER_BYTES 65536 /* all response header lines of one fetch request */
#define BROKER_MAX_CACHE_CONTROL_LEN 1024  /* combined Cache-Control value; longer: ignored (default refresh) */
#define BROKER_MAX_BEARER_FILE_BYTES 16384 /* bearer_token_file, read at each fetch */
#define BROKER_MAX_BEARER_ALLOW_BYTES 4096 /* BROKER_BEARER_TOKEN_FILES, the whole value */
#define BROKER_MAX_BEARER_ALLOW_ENTRIES 32

/* Revocations (appended; see revoked.c) */
#define BROKER_REVOKED_MAX_STALE_MS 5000   /* no complete revocation sync for longer: Broker tokens get 503 */

#endif
