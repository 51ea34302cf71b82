/* What a failed libcurl transfer means for Broker's outbound HTTPS calls (issuer key fetches,
 * Kubernetes TokenReview): one list of which codes are TLS failures, shared by both. */
#ifndef BROKER_CURLX_H
#define BROKER_CURLX_H
#include <curl/curl.h>

enum curlx_kind {
    CURLX_NETWORK,   /* connect, DNS, reset, unsupported scheme, anything else */
    CURLX_TIMEOUT,   /* the transfer's deadline */
    CURLX_TOO_LARGE, /* the server announced more than the size cap */
    CURLX_WRITE,     /* our write callback stopped the transfer (over the cap while receiving) */
    CURLX_TLS,       /* handshake or certificate verification */
    CURLX_NOMEM,
};

enum curlx_kind curlx_classify(CURLcode c);

/* A response body collected in memory (the CLI's calls to a Broker server): p is NUL-terminated,
 * at most max bytes; more aborts the transfer (CURLE_WRITE_ERROR). The caller frees p. */
struct curlx_body {
    char *p;
    size_t n, max;
};
/* CURLOPT_WRITEFUNCTION for a struct curlx_body passed as CURLOPT_WRITEDATA. */
size_t curlx_on_body(char *data, size_t size, size_t nmemb, void *arg);

#endif
