#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "cidr.h"

enum broker_err cidr_parse(const char *s, size_t len, struct cidr *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    size_t alen = len;
    long prefix = -1;
    const char *slash = memchr(s, '/', len);

    memset(out, 0, sizeof(*out));
    if (slash) {
        alen = (size_t)(slash - s);
        size_t plen = len - alen - 1;
        /* 1-3 digits, no sign, no leading zero (except "0"), no spaces */
        if (plen == 0 || plen > 3 || (plen > 1 && slash[1] == '0'))
            return BROKER_ERR_INVALID_DOCUMENT;
        prefix = 0;
        for (size_t i = 0; i < plen; i++) {
            if (slash[1 + i] < '0' || slash[1 + i] > '9')
                return BROKER_ERR_INVALID_DOCUMENT;
            prefix = prefix * 10 + (slash[1 + i] - '0');
        }
    }
    if (alen == 0 || alen >= sizeof(addr))
        return BROKER_ERR_INVALID_DOCUMENT;
    memcpy(addr, s, alen);
    addr[alen] = 0;
    if (strchr(addr, '%'))  /* zone ids have no meaning for a policy */
        return BROKER_ERR_INVALID_DOCUMENT;

    unsigned nbytes;
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        nbytes = 4;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        nbytes = 16;
    } else {
        return BROKER_ERR_INVALID_DOCUMENT;
    }
    if (prefix < 0)
        prefix = (long)nbytes * 8;
    if (prefix > (long)nbytes * 8)
        return BROKER_ERR_INVALID_DOCUMENT;
    out->prefix = (unsigned)prefix;

    for (unsigned bit = out->prefix; bit < nbytes * 8; bit++) {
        if (out->addr[bit / 8] & (0x80u >> (bit % 8))) {
            memset(out, 0, sizeof(*out));
            return BROKER_ERR_INVALID_DOCUMENT;
        }
    }
    return BROKER_OK;
}

static bool cidr_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/* Extracts family and address bytes; an IPv4-mapped IPv6 address becomes IPv4. */
static bool cidr_peer_bytes(const struct sockaddr *sa, int *family, uint8_t addr[16])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(addr, &in->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        if (memcmp(b, v4mapped, sizeof(v4mapped)) == 0) {
            memcpy(addr, b + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(addr, b, 16);
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

bool cidr_contains(const struct cidr *c, const struct sockaddr *sa)
{
    int family;
    uint8_t addr[16];

    if (!cidr_peer_bytes(sa, &family, addr) || family != c->family)
        return false;
    return cidr_prefix_equal(addr, c->addr, c->prefix);
}

bool cidr_format(const struct cidr *c, char *out, size_t cap)
{
    char addr[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family, c->addr, addr, sizeof(addr)))
        return false;
    int n = snprintf(out, cap, "%s/%u", addr, c->prefix);
    return n > 0 && (size_t)n < cap;
}

bool cidr_format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
    int family;
    uint8_t addr[16];
    if (!cidr_peer_bytes(sa, &family, addr) || cap > (size_t)0x7fffffff)
        return false;
    return inet_ntop(family, addr, out, (socklen_t)cap) != NULL;
}
