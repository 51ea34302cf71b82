/* One issuer key fetch: OIDC discovery (unless a jwks_uri is configured), then the JWKS, over
 * verified HTTPS with libcurl. Blocking: for issuers.c's fetcher threads only, never a loop thread. */
#ifndef BROKER_ISSUERS_FETCH_H
#define BROKER_ISSUERS_FETCH_H
#include <stdatomic.h>
#include <stdint.h>
#include "err.h"
#include "jwks.h"

enum issuers_fetch_result {
    ISSUERS_FETCH_OK,
    ISSUERS_FETCH_NETWORK,         /* connect, DNS, reset, unsupported scheme */
    ISSUERS_FETCH_TLS,             /* handshake or certificate verification */
    ISSUERS_FETCH_TIMEOUT,         /* BROKER_JWKS_FETCH_TIMEOUT_MS for the whole fetch */
    ISSUERS_FETCH_HTTP_STATUS,     /* anything but 200, redirects included */
    ISSUERS_FETCH_TOO_LARGE,       /* a body over BROKER_MAX_JWKS_BYTES, headers over BROKER_MAX_FETCH_HEADER_BYTES */
    ISSUERS_FETCH_BAD_DISCOVERY,   /* not a JSON object, or no https jwks_uri */
    ISSUERS_FETCH_ISSUER_MISMATCH, /* discovery "issuer" is not the registered url */
    ISSUERS_FETCH_BAD_JWKS,        /* jwks_parse refused the document */
    ISSUERS_FETCH_INTERNAL,
    ISSUERS_FETCH_CREDENTIALS,     /* bearer_token_file not allowed, missing, empty, too large or not a token */
    ISSUERS_FETCH__COUNT
};

#define ISSUERS_FETCH_DIGEST_LEN 32

struct issuers_fetch_out {
    struct jwks *jwks;                        /* owned by the caller on ISSUERS_FETCH_OK */
    uint8_t digest[ISSUERS_FETCH_DIGEST_LEN]; /* SHA-256 of the JWKS document */
    const char *stage;                        /* "setup", "discovery" or "jwks": where it stopped */
    long status;                              /* HTTP status of the last response, 0 without one */
    int64_t max_age_s;                        /* of the JWKS response: issuers_fetch_cache_control */
};

/* Where one issuer's keys come from. */
struct issuers_fetch_src {
    const char *url;               /* exact iss */
    const char *jwks_uri;          /* NULL: discovery at url/.well-known/openid-configuration */
    const char *ca_file;           /* NULL: the system store */
    const char *bearer_token_file; /* NULL: no Authorization header */
};

/* BROKER_FETCH_CONNECT_TO: "HOST:PORT:CONNECT_HOST:CONNECT_PORT[,...]" (libcurl's CONNECT_TO) sends
 * fetches for HOST:PORT to another address — an egress proxy-less mirror, a private endpoint, or
 * tests that serve a platform's real issuer name from 127.0.0.1. TLS is still verified against
 * HOST, so it cannot weaken what a key set is trusted for. NULL or "" clears it. Call before
 * issuers_start and after issuers_stop only. */
enum broker_err issuers_fetch_connect_to(const char *spec, char *err, size_t errlen) BROKER_WUR;

/* Metric label and log reason ("ok", "tls", "timeout", ...). */
const char *issuers_fetch_result_name(enum issuers_fetch_result r);

/* Fetch the key set of src->url. Discovery's "issuer" must equal url. bearer_token_file is read
 * at each call (projected tokens rotate; only if BROKER_BEARER_TOKEN_FILES allows it, see bearer.h,
 * else ISSUERS_FETCH_CREDENTIALS) and sent as "Authorization: Bearer" to the url's origin only: a
 * jwks_uri on another origin, discovered or configured, never gets it. The
 * transfer gives up as soon as *cancel (may be NULL) becomes true. */
enum issuers_fetch_result issuers_fetch_from(const struct issuers_fetch_src *src, const atomic_bool *cancel,
                                             struct issuers_fetch_out *out);
/* issuers_fetch_from without a bearer token (kept for callers that have none). */
enum issuers_fetch_result issuers_fetch(const char *url, const char *jwks_uri, const char *ca_file,
                                        const atomic_bool *cancel, struct issuers_fetch_out *out);

/* A Cache-Control field value (RFC 9111 §5.2; several field lines joined with ","): max-age=N
 * (first occurrence; N saturates at 2^31), 0 when no-store, no-cache or max-age=0 is present,
 * -1 when there is no max-age or the value is malformed (0 all the same when no-store or no-cache
 * came before the malformed part). s-maxage is ignored: Broker's key cache
 * is its own, not a shared cache. */
int64_t issuers_fetch_cache_control(const uint8_t *p, size_t len);
/* Seconds until the periodic refresh after a successful fetch: BROKER_JWKS_REFRESH_S for -1,
 * else max_age_s clamped to [BROKER_JWKS_MIN_REFRESH_S, BROKER_JWKS_MAX_REFRESH_S]. */
int64_t issuers_fetch_refresh_s(int64_t max_age_s);

#endif
