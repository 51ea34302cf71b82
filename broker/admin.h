/* Admin routes. Authentication: an admin token (only its SHA-256 is stored). */
#ifndef BROKER_ADMIN_H
#define BROKER_ADMIN_H
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "http.h"

#define ADMIN_TOKEN_PREFIX "brk_admin_"

/* GET /v1/audit/{request_id} */
int admin_audit_get(struct http_request *r);
/* New random admin token text (NUL-terminated) and its hash. */
enum broker_err admin_token_new(char *out, size_t cap, uint8_t hash[32]) BROKER_WUR;
void admin_token_hash(const char *token, size_t len, uint8_t hash[32]);

#endif
