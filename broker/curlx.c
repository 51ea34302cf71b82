#include "curlx.h"

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
