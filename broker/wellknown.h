/* Discovery (RFC 8414 / OIDC), the public JWKS and the operations endpoints. */
#ifndef BROKER_WELLKNOWN_H
#define BROKER_WELLKNOWN_H
#include "err.h"
#include "http.h"

enum broker_err wellknown_init(const char *issuer) BROKER_WUR;
int wellknown_discovery(struct http_request *r);
int wellknown_jwks(struct http_request *r);
int wellknown_healthz(struct http_request *r);
int wellknown_readyz(struct http_request *r);
int wellknown_metrics(struct http_request *r);

#endif
