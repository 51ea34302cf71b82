/* POST /v1/token: request -> verify -> policy -> sign -> audit -> response. */
#ifndef BROKER_EXCHANGE_H
#define BROKER_EXCHANGE_H
#include "http.h"

/* Set once at start-up: the broker's own issuer URL (iss of minted tokens, default audience). */
void exchange_init(const char *issuer);
int exchange_handle(struct http_request *r);
/* Free this loop thread's recycled jobs (at thread exit). */
void exchange_thread_cleanup(void);

#endif
