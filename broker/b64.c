/* Strict base64url (RFC 4648 §5). Only the canonical encoding of a byte string is accepted,
 * so one token has exactly one textual form (no padding, no '+' '/', no stray bits). */
#include <string.h>
#include "b64.h"

/* Decoding is on the hot path (every token, every exchange), so a quad of characters costs four
 * table loads OR-ed together. There is one table per position in the quad, holding the 6-bit
 * value already shifted to where it lands in a big-endian word (bits 31..8), so the word is the
 * three output bytes followed by a zero byte. A character outside the alphabet yields B64_BAD in
 * the low byte instead, which no valid character sets: errors are OR-accumulated and tested once.
 * Table lookups index on the input (not constant-time), which is fine: the broker decodes
 * tokens and public JWK members (n, e, x, y); an "oct" JWK's secret "k" is only decoded under
 * JWKS_ALLOW_SYMMETRIC, which the broker never sets (RFC vectors in tests). */
#define B64_BAD 1u
#define B64_VAL(c)                                                                                               \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                                      \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                                                 \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                                                 \
     : (c) == '-'               ? 62                                                                             \
     : (c) == '_'               ? 63                                                                             \
                                : -1)
#define B64_E(c, sh) (B64_VAL(c) < 0 ? B64_BAD : (uint32_t)B64_VAL(c) << (sh))
#define B64_R4(c, sh) B64_E(c, sh), B64_E((c) + 1, sh), B64_E((c) + 2, sh), B64_E((c) + 3, sh)
#define B64_R16(c, sh) B64_R4(c, sh), B64_R4((c) + 4, sh), B64_R4((c) + 8, sh), B64_R4((c) + 12, sh)
#define B64_R64(c, sh) B64_R16(c, sh), B64_R16((c) + 16, sh), B64_R16((c) + 32, sh), B64_R16((c) + 48, sh)
#define B64_TABLE(sh) {B64_R64(0, sh), B64_R64(64, sh), B64_R64(128, sh), B64_R64(192, sh)}

static const uint32_t dec0[256] = B64_TABLE(26), dec1[256] = B64_TABLE(20), dec2[256] = B64_TABLE(14),
                      dec3[256] = B64_TABLE(8);

static const char enc_table[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Four characters as a big-endian word: three output bytes, then B64_BAD flags. */
static inline uint32_t b64_quad(const uint8_t *in)
{
    return dec0[in[0]] | dec1[in[1]] | dec2[in[2]] | dec3[in[3]];
}

/* Stores all four bytes of the word: one store instead of three. The fourth byte lands on the
 * first output byte of the next quad, so callers use it only when another quad follows. */
static inline void b64_put4(uint8_t *out, uint32_t w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap32(w);
#endif
    memcpy(out, &w, 4);
}

enum broker_err b64url_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t rem = len % 4, full = len / 4;
    size_t need = full * 3 + (rem == 2 ? 1 : rem == 3 ? 2 : 0);
    uint32_t bad = 0, v;

    *out_len = 0;
    if (rem == 1)
        return BROKER_ERR_TOKEN_MALFORMED;
    if (need > out_cap)
        return BROKER_ERR_TOKEN_TOO_LARGE;
    uint8_t *o = out;
    /* Two quads per iteration while at least one more follows (b64_put4's spare byte). */
    for (; full > 2; full -= 2, in += 8, o += 6) {
        uint32_t a = b64_quad(in), b = b64_quad(in + 4);
        bad |= a | b;
        b64_put4(o, a);
        b64_put4(o + 3, b);
    }
    if (full == 2) {
        v = b64_quad(in);
        bad |= v;
        b64_put4(o, v);
        in += 4, o += 3, full--;
    }
    if (full == 1) { /* the last quad stores exactly its three bytes */
        v = b64_quad(in);
        bad |= v;
        o[0] = (uint8_t)(v >> 24);
        o[1] = (uint8_t)(v >> 16);
        o[2] = (uint8_t)(v >> 8);
        in += 4, o += 3;
    }
    if (rem == 2) {
        v = dec0[in[0]] | dec1[in[1]];
        bad |= v | (v >> 20 & 0xf); /* non-canonical: the 4 unused bits must be zero */
        o[0] = (uint8_t)(v >> 24);
    } else if (rem == 3) {
        v = dec0[in[0]] | dec1[in[1]] | dec2[in[2]];
        bad |= v | (v >> 14 & 0x3);
        o[0] = (uint8_t)(v >> 24);
        o[1] = (uint8_t)(v >> 16);
    }
    if (bad & 0xff)
        return BROKER_ERR_TOKEN_MALFORMED;
    *out_len = need;
    return BROKER_OK;
}

size_t b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;

    /* Six bytes per iteration, loaded as one big-endian word while eight are readable. */
    for (; i + 8 <= len; i += 6, o += 8) {
        uint64_t v;
        memcpy(&v, in + i, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        v = __builtin_bswap64(v);
#endif
        out[o] = enc_table[v >> 58];
        out[o + 1] = enc_table[(v >> 52) & 63];
        out[o + 2] = enc_table[(v >> 46) & 63];
        out[o + 3] = enc_table[(v >> 40) & 63];
        out[o + 4] = enc_table[(v >> 34) & 63];
        out[o + 5] = enc_table[(v >> 28) & 63];
        out[o + 6] = enc_table[(v >> 22) & 63];
        out[o + 7] = enc_table[(v >> 16) & 63];
    }
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

bool b64url_alphabet_ok(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
            return false;
    }
    return true;
}
