#include <string.h>
#include "glob.h"

/* Length of the UTF-8 character starting at s[i] (a lone continuation or truncated sequence counts
 * as one byte, so '?' always makes progress). */
static size_t glob_char_len(const char *s, size_t slen, size_t i)
{
    size_t n = 1;
    while (i + n < slen && ((unsigned char)s[i + n] & 0xC0) == 0x80 && n < 4)
        n++;
    return n;
}

/* Classic two-pointer matcher: on a mismatch, retry from the most recent '*' consuming one more
 * character. Only the last star matters (an earlier star can absorb whatever a later one could),
 * which bounds the work to O(plen * slen) with no backtracking stack. */
bool glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0;
    size_t star_p = (size_t)-1, star_i = 0;

    /* the literal prefix decides most real patterns ("repo:acme/app:ref:refs/tags/v*") at memcmp speed */
    while (p < plen && pat[p] != '*' && pat[p] != '?')
        p++;
    if (p > slen || memcmp(pat, s, p) != 0)
        return false;
    i = p;

    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            if (p + 1 == plen)
                return true; /* a trailing star absorbs the rest */
            star_p = p++;
            star_i = i;
            continue;
        }
        if (p < plen && pat[p] == '?') {
            p++;
            i += glob_char_len(s, slen, i);
            continue;
        }
        if (p < plen && pat[p] == s[i]) {
            p++;
            i++;
            continue;
        }
        if (star_p == (size_t)-1)
            return false;
        p = star_p + 1;
        star_i += glob_char_len(s, slen, star_i);
        i = star_i;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}
