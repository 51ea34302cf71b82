/* Strict base64url (RFC 4648 §5). Only the canonical encoding of a byte string is accepted,
 * so one token has exactly one textual form (no padding, no '+' '/', no stray bits). */
#include "b64.h"

/* 0..63 for the 64 base64url characters, 0xff for everything else. */
static const uint8_t dec_table[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,  ['H'] = 7,
    ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
    ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
    ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
    ['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['-'] = 62, ['_'] = 63,
};

static const char enc_table[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The table is zero-initialised, so 'A' (value 0) is told apart from invalid bytes here. */
static inline uint32_t b64_val(uint8_t c, uint32_t *bad)
{
    uint32_t v = dec_table[c];
    *bad |= (v == 0 && c != 'A');
    return v;
}

enum broker_err b64url_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t rem = len % 4, full = len / 4;
    size_t need = full * 3 + (rem == 2 ? 1 : rem == 3 ? 2 : 0);
    uint32_t bad = 0;
    size_t o = 0, i = 0;

    *out_len = 0;
    if (rem == 1)
        return BROKER_ERR_TOKEN_MALFORMED;
    if (need > out_cap)
        return BROKER_ERR_TOKEN_TOO_LARGE;
    for (size_t q = 0; q < full; q++, i += 4) {
        uint32_t v = b64_val(in[i], &bad) << 18 | b64_val(in[i + 1], &bad) << 12 |
                     b64_val(in[i + 2], &bad) << 6 | b64_val(in[i + 3], &bad);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (rem == 2) {
        uint32_t v = b64_val(in[i], &bad) << 6 | b64_val(in[i + 1], &bad);
        bad |= (v & 0xf) != 0; /* non-canonical: the 4 unused bits must be zero */
        out[o++] = (uint8_t)(v >> 4);
    } else if (rem == 3) {
        uint32_t v = b64_val(in[i], &bad) << 12 | b64_val(in[i + 1], &bad) << 6 | b64_val(in[i + 2], &bad);
        bad |= (v & 0x3) != 0;
        out[o++] = (uint8_t)(v >> 10);
        out[o++] = (uint8_t)(v >> 2);
    }
    if (bad)
        return BROKER_ERR_TOKEN_MALFORMED;
    *out_len = o;
    return BROKER_OK;
}

size_t b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = enc_table[v >> 18];
        out[o++] = enc_table[(v >> 12) & 63];
        out[o++] = enc_table[(v >> 6) & 63];
        out[o++] = enc_table[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = enc_table[v >> 18];
        out[o++] = enc_table[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = enc_table[v >> 18];
        out[o++] = enc_table[(v >> 12) & 63];
        out[o++] = enc_table[(v >> 6) & 63];
    }
    return o;
}
