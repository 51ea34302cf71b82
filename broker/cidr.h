/* IPv4/IPv6 address prefixes for trust-policy source_cidrs. Pure, no allocation. */
#ifndef BROKER_CIDR_H
#define BROKER_CIDR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "err.h"

struct cidr {
    int family;           /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

#define CIDR_TEXT_MAX 64  /* fits "ffff:...:ffff/128" */

/* "10.0.0.0/8", "::1/128", or a bare address (full-length prefix). Host bits beyond the prefix are
 * refused (a typo should not silently mean something else). */
enum broker_err cidr_parse(const char *s, size_t len, struct cidr *out) BROKER_WUR;
/* Does the prefix contain the socket address? IPv4-mapped IPv6 peers are compared as IPv4. */
bool cidr_contains(const struct cidr *c, const struct sockaddr *sa);
/* Canonical "addr/prefix" text into out (NUL-terminated); false when it does not fit. */
bool cidr_format(const struct cidr *c, char *out, size_t cap);
/* A peer address as text ("10.1.2.3", "::1"); false when unsupported or too small. */
bool cidr_format_peer(const struct sockaddr *sa, char *out, size_t cap);

#endif
