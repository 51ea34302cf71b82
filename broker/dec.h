/* Decimal text of an integer without printf: the hot path formats a few numbers per exchange
 * (a minted token's iat/nbf/exp, the audit row's timestamps, expires_in), where snprintf's
 * format parsing and locale machinery cost more than the digits. */
#ifndef BROKER_DEC_H
#define BROKER_DEC_H
#include <stddef.h>
#include <stdint.h>

#define DEC_I64_MAX 21 /* "-9223372036854775808" and its NUL */

/* v in decimal into out, NUL-terminated; returns the digits' length (sign included). */
size_t dec_i64(int64_t v, char out[DEC_I64_MAX]);

#endif
