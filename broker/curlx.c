#include "curlx.h"
#include <stdlib.h>
#include <string.h>

enum curlx_kind curlx_classify(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        return CURLX_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return CURLX_TOO_LARGE;
    case CURLE_WRITE_ERROR:
        return CURLX_WRITE;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return CURLX_TLS;
    case CURLE_OUT_OF_MEMORY:
        return CURLX_NOMEM;
    default:
        return CURLX_NETWORK;
    }
}

size_t curlx_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct curlx_body *b = arg;
    size_t add = size * nmemb; /* libcurl documents size as always 1 */
    if (add > b->max || b->n > b->max - add)
        return 0;
    char *np = realloc(b->p, b->n + add + 1);
    if (np == NULL)
        return 0;
    memcpy(np + b->n, data, add);
    b->p = np;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}
