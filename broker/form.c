/* Token-request body parsers. Both produce the same struct form, so the exchange code has one
 * shape to check; both refuse anything ambiguous (repeats, NULs, bad escapes) instead of
 * guessing which value was meant. */
#include <string.h>
#include "form.h"
#include "jwt.h"

static int hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The scan below looks at 8 bytes at a time (SWAR) for the only bytes that need work: '%', '+'
 * and NUL (refused). Tokens are ~1-2 KB of plain base64url, so almost every word is copied as it
 * is. form_below(x, b) sets the top bit of each byte of x below b (b <= 0x80): exact when no
 * byte is below b, and the lowest set bit is always exact (a borrow only marks bytes above a real
 * hit), which is all the scan uses. */
#define FORM_ONES 0x0101010101010101ull
#define FORM_HIGHS 0x8080808080808080ull

static inline uint64_t form_below(uint64_t x, uint8_t b)
{
    return (x - b * FORM_ONES) & ~x & FORM_HIGHS;
}

/* Decode one urlencoded component into out (cap >= n always suffices: decoding only shrinks). */
static enum broker_err pct_decode(const uint8_t *in, size_t n, char *out, size_t *out_len)
{
    size_t i = 0, o = 0;

    while (i < n) {
        while (n - i >= 8) {
            uint64_t w, hit;
            memcpy(&w, in + i, 8);
            /* Copied before looking: o <= i, so the store stays within the n bytes of out, and
             * whatever follows a special byte is overwritten by the bytes decoded after it. */
            memcpy(out + o, &w, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            w = __builtin_bswap64(w); /* first byte lowest, so the lowest hit is the first */
#endif
            /* NUL, '%' and '+' all lie below ',' while base64url, '.' and most text lie above:
             * one cheap test clears the common word, the exact one runs only when it fails. */
            if (form_below(w, ',') == 0 ||
                (hit = form_below(w, 1) | form_below(w ^ ('%' * FORM_ONES), 1) |
                       form_below(w ^ ('+' * FORM_ONES), 1)) == 0) {
                i += 8, o += 8;
                continue;
            }
            size_t k = (size_t)__builtin_ctzll(hit) / 8; /* plain bytes before the special one */
            i += k, o += k;
            break;
        }
        if (i == n)
            break;
        uint8_t c = in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (n - i < 3 || (hi = hex_val(in[i + 1])) < 0 || (lo = hex_val(in[i + 2])) < 0)
                return BROKER_ERR_BAD_REQUEST;
            c = (uint8_t)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0') /* values become C strings; an embedded NUL would truncate one silently */
            return BROKER_ERR_BAD_REQUEST;
        out[o++] = (char)c;
        i++;
    }
    *out_len = o;
    return BROKER_OK;
}

/* Append a field after the shared checks; the value is already in scratch. */
static enum broker_err add_field(struct form *out, const char *name, size_t name_len, char *value, size_t len)
{
    struct form_field *fl;

    if (name_len == 0 || name_len > BROKER_MAX_FORM_NAME || len > BROKER_MAX_FORM_VALUE ||
        memchr(name, '\0', name_len) != NULL)
        return BROKER_ERR_BAD_REQUEST;
    for (size_t i = 0; i < out->n; i++)
        if (strlen(out->f[i].name) == name_len && memcmp(out->f[i].name, name, name_len) == 0)
            return BROKER_ERR_BAD_REQUEST; /* RFC 6749 §3.2: no parameter more than once */
    if (out->n == BROKER_MAX_FORM_FIELDS)
        return BROKER_ERR_BAD_REQUEST;
    fl = &out->f[out->n++];
    memcpy(fl->name, name, name_len);
    fl->name[name_len] = '\0';
    fl->value = value;
    fl->len = len;
    return BROKER_OK;
}

enum broker_err form_parse(const uint8_t *p, size_t len, struct form *out, char *scratch, size_t scratch_cap)
{
    char name[BROKER_MAX_FORM_NAME];
    size_t pos = 0, used = 0;
    enum broker_err err = BROKER_OK;

    out->n = 0;
    while (pos < len) {
        const uint8_t *pair = p + pos, *amp = memchr(pair, '&', len - pos);
        size_t plen = amp ? (size_t)(amp - pair) : len - pos;
        const uint8_t *eq = memchr(pair, '=', plen);
        size_t nlen_enc = eq ? (size_t)(eq - pair) : plen;
        size_t nlen, vlen;

        pos += plen + 1;
        if (plen == 0)
            continue; /* "a=1&&b=2": tolerated, as clients do produce them */
        if (nlen_enc == 0) {
            err = BROKER_ERR_BAD_REQUEST;
            break;
        }
        /* The decoded name and the decoded value plus its NUL each fit in the pair's own bytes, so
         * scratch_cap >= len always suffices. */
        if (plen > scratch_cap - used) {
            err = BROKER_ERR_INTERNAL;
            break;
        }
        if ((err = pct_decode(pair, nlen_enc, scratch + used, &nlen)) != BROKER_OK)
            break;
        if (nlen > BROKER_MAX_FORM_NAME) {
            err = BROKER_ERR_BAD_REQUEST;
            break;
        }
        memcpy(name, scratch + used, nlen);
        if (eq == NULL)
            vlen = 0;
        else if ((err = pct_decode(eq + 1, plen - nlen_enc - 1, scratch + used, &vlen)) != BROKER_OK)
            break;
        scratch[used + vlen] = '\0';
        if ((err = add_field(out, name, nlen, scratch + used, vlen)) != BROKER_OK)
            break;
        used += vlen + 1;
    }
    if (err != BROKER_OK)
        out->n = 0;
    return err;
}

enum broker_err form_parse_json(const uint8_t *p, size_t len, struct form *out, char *scratch, size_t scratch_cap)
{
    /* Depth 1: a token request is a flat object, so nesting is refused before jansson allocates. */
    json_t *root = jwt_json_load_strict(p, len, 1), *v;
    const char *key;
    size_t used = 0;
    enum broker_err err = BROKER_ERR_BAD_REQUEST;

    out->n = 0;
    if (!json_is_object(root) || json_object_size(root) > BROKER_MAX_FORM_FIELDS)
        goto done;
    json_object_foreach(root, key, v) {
        size_t vlen = json_string_length(v);
        if (!json_is_string(v)) {
            err = BROKER_ERR_BAD_REQUEST;
            goto done;
        }
        if (vlen + 1 > scratch_cap - used) {
            err = vlen > BROKER_MAX_FORM_VALUE ? BROKER_ERR_BAD_REQUEST : BROKER_ERR_INTERNAL;
            goto done;
        }
        /* jansson refuses "\u0000" without JSON_ALLOW_NUL, so strings and keys have no NUL. */
        memcpy(scratch + used, json_string_value(v), vlen + 1);
        if ((err = add_field(out, key, strlen(key), scratch + used, vlen)) != BROKER_OK)
            goto done;
        used += vlen + 1;
    }
    err = BROKER_OK;
done:
    if (err != BROKER_OK)
        out->n = 0;
    json_decref(root);
    return err;
}

const char *form_get(const struct form *f, const char *name, size_t *len)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->f[i].name, name) == 0) {
            if (len != NULL)
                *len = f->f[i].len;
            return f->f[i].value;
        }
    }
    if (len != NULL)
        *len = 0;
    return NULL;
}
