/* Minted access tokens: JSON written by hand into bounded buffers (jansson objects would cost
 * several µs per token on the hot path), base64url, ES256. Only ext, which is arbitrary JSON
 * copied from the subject token, goes through jansson's serializer. */
#include "mint.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>

#include "b64.h"
#include "bounds.h"
#include "dec.h"
#include "rnd.h"

/* Length of a valid UTF-8 sequence starting at p (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0. */
static size_t mint_utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

size_t mint_json_escape(const char *s, char *out, size_t cap)
{
    /* 1 for a byte copied as it is: printable ASCII other than '"' and '\\' (0x7f included, as
     * JSON allows it). Row = high nibble. Names, ids and scopes are such runs; each run costs one
     * table probe per byte and one bounds check + memcpy, instead of a UTF-8 probe per byte. */
    static const uint8_t plain[256] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x0_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x1_ */
        1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x2_ */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x3_ */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x4_ */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x5_ */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x6_ */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x7_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x8_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x9_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xA_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xB_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xC_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xD_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xE_ */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xF_ */
    };
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    if (!s || cap < 2)
        return 0;
    out[o++] = '"';
    for (;;) {
        const unsigned char *run = p;
        while (plain[*p]) /* plain[0] == 0: stops at the terminator */
            p++;
        size_t n = (size_t)(p - run);
        if (cap - o < n)
            return 0;
        memcpy(out + o, run, n);
        o += n;
        unsigned char c = *p;
        if (c == '\0') {
            break;
        } else if (c == '"' || c == '\\') {
            if (cap - o < 2)
                return 0;
            out[o++] = '\\';
            out[o++] = (char)c;
            p++;
        } else if (c < 0x20) {
            if (cap - o < 6)
                return 0;
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
            p++;
        } else {
            /* c >= 0x80. A NUL inside a multi-byte sequence fails the continuation-byte test, so
             * the look-ahead never passes the terminator. */
            size_t len = mint_utf8_len(p);
            if (len == 0 || cap - o < len)
                return 0;
            memcpy(out + o, p, len);
            o += len;
            p += len;
        }
    }
    if (cap - o < 1)
        return 0;
    out[o++] = '"';
    return o;
}

void mint_raw(struct mint_buf *b, const char *s, size_t n)
{
    if (b->failed || b->cap - b->len < n) {
        b->failed = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void mint_str(struct mint_buf *b, const char *s)
{
    size_t n;
    if (b->failed)
        return;
    n = mint_json_escape(s, b->p + b->len, b->cap - b->len);
    if (n == 0)
        b->failed = true;
    b->len += n;
}

void mint_int(struct mint_buf *b, int64_t v)
{
    char tmp[DEC_I64_MAX];
    mint_raw(b, tmp, dec_i64(v, tmp));
}

/* ext is untrusted-in-content but already parsed JSON; jansson serializes it into the buffer. */
static void mint_json(struct mint_buf *b, const json_t *v)
{
    size_t n;
    if (b->failed)
        return;
    n = json_dumpb(v, b->p + b->len, b->cap - b->len, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0 || n > b->cap - b->len) {
        b->failed = true;
        return;
    }
    b->len += n;
}

/* Mapped claims are mostly strings: those are escaped here, anything else goes through jansson
 * (json_dumpb costs ~1 µs per call even for one short string). */
static void mint_ext(struct mint_buf *b, const json_t *ext)
{
    const char *k;
    const json_t *v;
    bool first = true;
    MINT_LIT(b, "{");
    json_object_foreach((json_t *)ext, k, v) {
        if (!first)
            MINT_LIT(b, ",");
        first = false;
        mint_str(b, k);
        MINT_LIT(b, ":");
        if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v))
            mint_str(b, json_string_value(v));
        else
            mint_json(b, v);
    }
    MINT_LIT(b, "}");
}

/* The claims set into cb. subject false leaves out what the subject token brings (src.sub is null,
 * no ext): the measure of what the token would need without it. */
static void mint_claims(struct mint_buf *cb, const struct mint_input *in, int64_t exp, const char *jti, bool subject)
{
    MINT_LIT(cb, "{\"iss\":");
    mint_str(cb, in->issuer);
    MINT_LIT(cb, ",\"sub\":");
    mint_str(cb, in->identity);
    MINT_LIT(cb, ",\"client_id\":");
    mint_str(cb, in->identity);
    MINT_LIT(cb, ",\"aud\":");
    mint_str(cb, in->audience);
    MINT_LIT(cb, ",\"scope\":");
    mint_str(cb, in->scope);
    MINT_LIT(cb, ",\"iat\":");
    mint_int(cb, in->now);
    MINT_LIT(cb, ",\"nbf\":");
    mint_int(cb, in->now);
    MINT_LIT(cb, ",\"exp\":");
    mint_int(cb, exp);
    MINT_LIT(cb, ",\"jti\":");
    mint_str(cb, jti);
    MINT_LIT(cb, ",\"src\":{\"iss\":");
    mint_str(cb, in->src_iss);
    MINT_LIT(cb, ",\"sub\":");
    if (subject && in->src_sub != NULL)
        mint_str(cb, in->src_sub);
    else
        MINT_LIT(cb, "null");
    MINT_LIT(cb, ",\"policy\":");
    mint_str(cb, in->src_policy);
    MINT_LIT(cb, "}");
    if (subject && in->ext && json_object_size(in->ext) > 0) {
        MINT_LIT(cb, ",\"ext\":");
        mint_ext(cb, in->ext);
    }
    MINT_LIT(cb, "}");
}

/* header.claims.sig + NUL */
static size_t mint_need(size_t header_len, size_t claims_len)
{
    return B64URL_ENCODED_LEN(header_len) + 1 + B64URL_ENCODED_LEN(claims_len) + 1 + B64URL_ENCODED_LEN(64) + 1;
}

enum broker_err mint_prepare(const struct signing_key *key, const struct mint_input *in, char *out, size_t cap,
                             size_t *signing_len, char jti_out[48])
{
    char claims[MINT_CLAIMS_MAX], header[32 + 6 * KEYS_KID_MAX];
    struct mint_buf cb = {claims, 0, sizeof(claims), false};
    struct mint_buf hb = {header, 0, sizeof(header), false};
    uint8_t rnd[16];
    char jti[MINT_JTI_LEN + 1];
    int64_t exp;
    size_t o;

    if (cap > 0)
        out[0] = 0;
    jti_out[0] = 0;
    *signing_len = 0;
    if (!key || !in || in->now < 0 || in->ttl_s <= 0 || in->ttl_s > BROKER_MAX_TTL_S ||
        __builtin_add_overflow(in->now, in->ttl_s, &exp))
        return BROKER_ERR_INTERNAL;
    if (in->ext && !json_is_object(in->ext))
        return BROKER_ERR_INTERNAL;
    if (rnd_bytes(rnd, sizeof(rnd)) != BROKER_OK)
        return BROKER_ERR_INTERNAL;
    jti[b64url_encode(rnd, sizeof(rnd), jti)] = 0;

    MINT_LIT(&hb, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":");
    mint_str(&hb, key->kid);
    MINT_LIT(&hb, "}");
    mint_claims(&cb, in, exp, jti, true);
    if (hb.failed || cb.failed || mint_need(hb.len, cb.len) > cap) {
        /* Too long, or a bad string. When the token fits without what the subject token brought
         * (src.sub, ext), the subject token is to blame: the caller denies it. */
        struct mint_buf wo = {claims, 0, sizeof(claims), false};
        mint_claims(&wo, in, exp, jti, false);
        if (!hb.failed && !wo.failed && mint_need(hb.len, wo.len) <= cap)
            return BROKER_ERR_CLAIM_TOO_LONG;
        return BROKER_ERR_INTERNAL;
    }
    o = b64url_encode((const uint8_t *)header, hb.len, out);
    out[o++] = '.';
    o += b64url_encode((const uint8_t *)claims, cb.len, out + o);
    *signing_len = o;
    memcpy(jti_out, jti, sizeof(jti));
    return BROKER_OK;
}

enum broker_err mint_finish(char *out, size_t cap, size_t signing_len, const uint8_t sig[64], size_t *out_len)
{
    *out_len = 0;
    if (signing_len == 0 || cap < signing_len + 1 + B64URL_ENCODED_LEN(64) + 1) {
        if (cap > 0)
            out[0] = 0;
        return BROKER_ERR_INTERNAL;
    }
    size_t o = signing_len;
    out[o++] = '.';
    o += b64url_encode(sig, 64, out + o);
    out[o] = 0;
    *out_len = o;
    return BROKER_OK;
}

enum broker_err mint_token(const struct signing_key *key, const struct mint_input *in, char *out, size_t cap,
                           size_t *out_len, char jti_out[48])
{
    uint8_t sig[64];
    size_t signing_len = 0;
    enum broker_err rc = mint_prepare(key, in, out, cap, &signing_len, jti_out);
    *out_len = 0;
    if (rc == BROKER_OK)
        rc = keys_sign(key, (const uint8_t *)out, signing_len, sig);
    if (rc == BROKER_OK)
        rc = mint_finish(out, cap, signing_len, sig, out_len);
    if (rc != BROKER_OK) {
        if (cap > 0)
            out[0] = 0;
        jti_out[0] = 0;
    }
    return rc;
}
