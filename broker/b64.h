/* Strict base64url (RFC 4648 §5, no padding, canonical trailing bits). */
#ifndef BROKER_B64_H
#define BROKER_B64_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* Decoded size upper bound for an input of len characters. */
#define B64URL_DECODED_MAX(len) (((len) * 3) / 4 + 1)
/* Encoded size (no padding, no NUL) of len bytes. */
#define B64URL_ENCODED_LEN(len) (((len) * 4 + 2) / 3)

/* Decode; rejects '=', '+', '/', whitespace, len%4==1 and non-zero trailing bits
 * (BROKER_ERR_TOKEN_MALFORMED), or output above out_cap (BROKER_ERR_TOKEN_TOO_LARGE). */
enum broker_err b64url_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap, size_t *out_len) BROKER_WUR;
/* Encode into out (capacity >= B64URL_ENCODED_LEN(len)); returns characters written, no NUL. */
size_t b64url_encode(const uint8_t *in, size_t len, char *out);
/* s[0..n) is 1..max characters of the base64url alphabet (no padding): the shape of Broker's
 * request ids, kids and jtis, checked before such a value is used as a name or a key. */
bool b64url_alphabet_ok(const char *s, size_t n, size_t max);

#endif
