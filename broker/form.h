/* Token-request bodies: application/x-www-form-urlencoded, or a JSON object of strings.
 * No allocation: names live in the struct, values are decoded into caller scratch (the
 * request pool). */
#ifndef BROKER_FORM_H
#define BROKER_FORM_H
#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "bounds.h"

struct form_field {
    char name[BROKER_MAX_FORM_NAME + 1]; /* decoded, NUL-terminated, non-empty */
    char *value;                         /* decoded into scratch, NUL-terminated, no NUL inside */
    size_t len;                          /* strlen(value), <= BROKER_MAX_FORM_VALUE */
};

struct form {
    size_t n;
    struct form_field f[BROKER_MAX_FORM_FIELDS];
};

/* Parse a urlencoded body: '+' is a space, %XX strict, empty pairs skipped. BAD_REQUEST on a bad
 * escape, a decoded NUL, an empty or overlong name, a repeated name (RFC 6749 §3.2), more than
 * BROKER_MAX_FORM_FIELDS fields or a value over BROKER_MAX_FORM_VALUE. scratch_cap >= len is
 * always enough (INTERNAL otherwise). On error out->n == 0. */
enum broker_err form_parse(const uint8_t *p, size_t len, struct form *out, char *scratch, size_t scratch_cap) BROKER_WUR;
/* Same result from a JSON object whose members are all strings (duplicates, nesting, non-string
 * values, and the limits above are BAD_REQUEST). scratch_cap >= len is always enough. */
enum broker_err form_parse_json(const uint8_t *p, size_t len, struct form *out, char *scratch,
                                size_t scratch_cap) BROKER_WUR;
/* Value of field name (exact, case-sensitive) and its length; NULL when absent. */
const char *form_get(const struct form *f, const char *name, size_t *len);

#endif
