/* Strict JSON (RFC 8259) to jansson values in one pass over a bounded buffer. Every token
 * exchange parses a JOSE header and claims set; jansson's lexer pulls each byte through a
 * stream callback: ~184k instructions for the 1 KB claims of a GitHub Actions token, against
 * ~28k here, most of which is now jansson building the tree. Here the lexer works on the buffer
 * directly, plain ASCII string runs go through a table, and strings without escapes are handed
 * to jansson straight from the input. The result is an ordinary
 * json_t tree; what it accepts is what json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
 * accepts, minus the non-RFC input jansson lets through (see tests/fuzz/fuzz_json.c). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

struct json_parser {
    const uint8_t *p, *end;
    size_t max_depth;
};

#define X16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
/* Bytes that stand for themselves inside a string: printable ASCII except '"' and '\\'.
 * Control characters must be escaped; bytes >= 0x80 go through the UTF-8 check. */
static const uint8_t json_plain[256] = {
    X16(0), X16(0),                                 /* 0x00-0x1f */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f, '"' */
    X16(1), X16(1),                                 /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f, '\\' */
    X16(1), X16(1),                                 /* 0x60-0x7f */
};
#undef X16

static json_t *json_parse_value(struct json_parser *ps, size_t depth);

static inline bool json_is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static inline void json_skip_ws(struct json_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629 table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF) starting with a byte >= 0x80 at p, or 0. */
static size_t json_utf8_len(const uint8_t *p, size_t avail)
{
    uint8_t c = p[0], lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            lo = 0xA0; /* overlong below U+0800 */
        else if (c == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF */
        return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80
                   ? 4 : 0;
    }
    return 0; /* continuation byte, C0/C1 or F5..FF */
}

/* Four hex digits at p (the caller checked they are in bounds). */
static bool json_hex4(const uint8_t *p, uint32_t *out)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i], l = c | 0x20;
        if (json_is_digit(c))
            v = v << 4 | (uint32_t)(c - '0');
        else if (l >= 'a' && l <= 'f')
            v = v << 4 | (uint32_t)(l - 'a' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

static size_t json_utf8_put(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the escape at p ('\\' already checked, p + 1 < end) into o; returns the bytes
 * consumed (0 on error) and adds the bytes written to *o. */
static size_t json_unescape(const uint8_t *p, const uint8_t *end, uint8_t **o)
{
    static const uint8_t simple[][2] = {
        {'"', '"'}, {'\\', '\\'}, {'/', '/'}, {'b', '\b'}, {'f', '\f'}, {'n', '\n'}, {'r', '\r'}, {'t', '\t'},
    };
    uint32_t cp, lo;
    size_t used = 6;

    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        if (p[1] == simple[i][0]) {
            *(*o)++ = simple[i][1];
            return 2;
        }
    if (p[1] != 'u' || end - p < 6 || !json_hex4(p + 2, &cp))
        return 0;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return 0; /* a low surrogate with no high one before it */
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !json_hex4(p + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return 0;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        used = 12;
    }
    if (cp == 0)
        return 0; /* "\u0000" would cut the C strings callers take from jansson */
    *o += json_utf8_put(*o, cp);
    return used;
}

/* Lexes the string whose opening quote is at ps->p. On success *s and *n are its decoded bytes:
 * the input itself when there is no escape, else buf (cap bytes) or a malloc'd *heap that the
 * caller frees (also on failure). */
static bool json_lex_string(struct json_parser *ps, uint8_t *buf, size_t cap, const uint8_t **s, size_t *n,
                            uint8_t **heap)
{
    const uint8_t *start = ps->p + 1, *p = start, *end = ps->end, *run;
    uint8_t *out = NULL, *o = NULL;
    size_t k;

    for (;;) {
        run = p;
        while (p < end && json_plain[*p])
            p++;
        if (o) {
            memcpy(o, run, (size_t)(p - run));
            o += p - run;
        }
        if (p == end)
            return false;
        if (*p == '"')
            break;
        if (*p >= 0x80) {
            if ((k = json_utf8_len(p, (size_t)(end - p))) == 0)
                return false;
            if (o) {
                memcpy(o, p, k);
                o += k;
            }
            p += k;
            continue;
        }
        if (*p != '\\' || end - p < 2)
            return false; /* control character, or input ends inside an escape */
        if (out == NULL) {
            /* First escape: decoding never grows text (an escape of 2, 6 or 12 bytes becomes 1-4,
             * everything else is copied), so the bytes up to the closing quote bound the output. */
            const uint8_t *q = p;
            while (q < end && *q != '"')
                q += *q == '\\' && end - q > 1 ? 2 : 1;
            if (q == end)
                return false;
            out = (size_t)(q - start) <= cap ? buf : (*heap = malloc((size_t)(q - start)));
            if (out == NULL)
                return false;
            memcpy(out, start, (size_t)(p - start));
            o = out + (p - start);
        }
        if ((k = json_unescape(p, end, &o)) == 0)
            return false;
        p += k;
    }
    *s = out ? out : start;
    *n = out ? (size_t)(o - out) : (size_t)(p - start);
    ps->p = p + 1;
    return true;
}

static json_t *json_parse_string(struct json_parser *ps)
{
    uint8_t buf[256], *heap = NULL;
    const uint8_t *s;
    size_t n;
    json_t *v = NULL;

    if (json_lex_string(ps, buf, sizeof(buf), &s, &n, &heap))
        v = json_stringn_nocheck((const char *)s, n); /* UTF-8 checked above */
    if (heap != NULL)
        free(heap);
    return v;
}

static json_t *json_parse_number(struct json_parser *ps)
{
    const uint8_t *p = ps->p, *end = ps->end, *digits;
    bool neg = false, real = false;
    uint64_t mag = 0;
    char buf[64], *copy = NULL, *stop;
    size_t n;
    double d;
    json_t *v = NULL;

    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    digits = p;
    if (p == end || !json_is_digit(*p))
        return NULL;
    if (*p == '0')
        p++; /* a leading zero stands alone: "01" fails at the caller, which expects a delimiter */
    else
        for (; p < end && json_is_digit(*p); p++)
            if (p - digits < 19) /* 19 digits cannot wrap a uint64; longer integers are refused below */
                mag = mag * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        real = true;
        if (++p == end || !json_is_digit(*p))
            return NULL;
        while (p < end && json_is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !json_is_digit(*p))
            return NULL;
        while (p < end && json_is_digit(*p))
            p++;
    }
    n = (size_t)(p - ps->p);
    if (!real) {
        /* Out of int64 is an error, as in jansson: silently rounding an id through double is worse. */
        if (p - digits > 19 || mag > (uint64_t)INT64_MAX + neg)
            return NULL;
        v = json_integer(neg && mag ? -(json_int_t)(mag - 1) - 1 : (json_int_t)mag); /* -2^63 without overflow */
    } else {
        /* strtod needs a terminated copy; the C locale is assumed, as Broker never calls setlocale,
         * and a parse that stops early is refused rather than trusted. */
        copy = n < sizeof(buf) ? buf : malloc(n + 1);
        if (copy == NULL)
            return NULL;
        memcpy(copy, ps->p, n);
        copy[n] = '\0';
        d = strtod(copy, &stop);
        if (stop == copy + n && isfinite(d))
            v = json_real(d);
        if (copy != buf)
            free(copy);
    }
    ps->p = p;
    return v;
}

static json_t *json_parse_array(struct json_parser *ps, size_t depth)
{
    json_t *a = json_array(), *v;

    if (a == NULL)
        return NULL;
    ps->p++;
    json_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return a;
    }
    for (;;) {
        v = json_parse_value(ps, depth);
        if (v == NULL || json_array_append_new(a, v) != 0) /* _new drops v on failure */
            goto fail;
        json_skip_ws(ps);
        if (ps->p == ps->end || (*ps->p != ',' && *ps->p != ']'))
            goto fail;
        if (*ps->p++ == ']')
            return a;
        json_skip_ws(ps);
    }
fail:
    json_decref(a);
    return NULL;
}

static json_t *json_parse_object(struct json_parser *ps, size_t depth)
{
    json_t *o = json_object(), *v;
    uint8_t buf[64], *heap = NULL;
    const uint8_t *k;
    size_t kn, n = 0;

    if (o == NULL)
        return NULL;
    ps->p++;
    json_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return o;
    }
    for (;;) {
        /* The key stays in buf or the input until its value is parsed and the pair inserted. */
        if (ps->p == ps->end || *ps->p != '"' || !json_lex_string(ps, buf, sizeof(buf), &k, &kn, &heap))
            goto fail;
        json_skip_ws(ps);
        if (ps->p == ps->end || *ps->p != ':')
            goto fail;
        ps->p++;
        json_skip_ws(ps);
        v = json_parse_value(ps, depth);
        if (v == NULL || json_object_setn_new_nocheck(o, (const char *)k, kn, v) != 0)
            goto fail;
        /* A duplicate key replaces a value instead of adding one. {"alg":"RS256","alg":"none"} is
         * ambiguous: refuse rather than pick one. (Counting saves the second hash lookup per key
         * that json_object_getn first would cost; parsing is bounded either way.) */
        if (json_object_size(o) != ++n)
            goto fail;
        if (heap != NULL)
            free(heap);
        heap = NULL;
        json_skip_ws(ps);
        if (ps->p == ps->end || (*ps->p != ',' && *ps->p != '}'))
            goto fail;
        if (*ps->p++ == '}')
            return o;
        json_skip_ws(ps);
    }
fail:
    free(heap);
    json_decref(o);
    return NULL;
}

static json_t *json_parse_literal(struct json_parser *ps, const char *word, size_t n, json_t *v)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return NULL;
    ps->p += n;
    return v;
}

/* depth counts the arrays and objects around the value; one more may open if within max_depth. */
static json_t *json_parse_value(struct json_parser *ps, size_t depth)
{
    if (ps->p == ps->end)
        return NULL;
    switch (*ps->p) {
    case '{':
        return depth < ps->max_depth ? json_parse_object(ps, depth + 1) : NULL;
    case '[':
        return depth < ps->max_depth ? json_parse_array(ps, depth + 1) : NULL;
    case '"':
        return json_parse_string(ps);
    case 't':
        return json_parse_literal(ps, "true", 4, json_true());
    case 'f':
        return json_parse_literal(ps, "false", 5, json_false());
    case 'n':
        return json_parse_literal(ps, "null", 4, json_null());
    default:
        return json_parse_number(ps);
    }
}

json_t *json_parse_strict(const uint8_t *p, size_t len, size_t max_depth)
{
    struct json_parser ps = {p, p, max_depth < JSON_PARSE_DEPTH_CAP ? max_depth : JSON_PARSE_DEPTH_CAP};
    json_t *v;

    if (p == NULL)
        return NULL;
    ps.end = p + len;
    json_skip_ws(&ps);
    v = json_parse_value(&ps, 0);
    if (v != NULL) {
        json_skip_ws(&ps);
        if (ps.p != ps.end) {
            json_decref(v); /* trailing bytes: one document per buffer */
            v = NULL;
        }
    }
    return v;
}
