/* Names: identities, issuers, trust policies and admin tokens are 1..BROKER_MAX_NAME_LEN
 * characters of [A-Za-z0-9._-], so a name is safe in a URL path, a log line and a filter. */
#ifndef BROKER_NAMES_H
#define BROKER_NAMES_H
#include <stdbool.h>
#include <stddef.h>
#include "bounds.h"

static inline bool broker_name_ok(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > BROKER_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

#endif
