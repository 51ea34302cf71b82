/* Whole-string glob matching for trust-policy conditions: '*' matches any run of bytes ('/' and ':'
 * included), '?' one UTF-8 character; every other byte is literal. Worst case O(len(pat)*len(s)),
 * no recursion, no allocation. */
#ifndef BROKER_GLOB_H
#define BROKER_GLOB_H
#include <stdbool.h>
#include <stddef.h>

bool glob_match(const char *pat, size_t plen, const char *s, size_t slen);

#endif
