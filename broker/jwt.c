/* Pure compact-JWS parsing. This is the first code that touches an unauthenticated token, on
 * every exchange: it decodes into stack buffers, parses each JSON segment once, and leaves
 * nothing behind on error. */
#include <string.h>
#include "jwt.h"
#include "b64.h"
#include "json.h"

static const char *const alg_names[JWT_ALG__COUNT] = {
    [JWT_ALG_RS256] = "RS256", [JWT_ALG_RS384] = "RS384", [JWT_ALG_RS512] = "RS512",
    [JWT_ALG_PS256] = "PS256", [JWT_ALG_PS384] = "PS384", [JWT_ALG_PS512] = "PS512",
    [JWT_ALG_ES256] = "ES256", [JWT_ALG_ES384] = "ES384", [JWT_ALG_ES512] = "ES512",
    [JWT_ALG_EDDSA] = "EdDSA",
    [JWT_ALG_HS256] = "HS256", [JWT_ALG_HS384] = "HS384", [JWT_ALG_HS512] = "HS512",
};

enum jwt_alg jwt_alg_from_name(const char *name, size_t len)
{
    if (name == NULL)
        return JWT_ALG_INVALID;
    /* Exact bytes: "none", "None", "rs256" and "RS256\0x" all fall through to INVALID. */
    for (int a = JWT_ALG_INVALID + 1; a < JWT_ALG__COUNT; a++)
        if (strlen(alg_names[a]) == len && memcmp(alg_names[a], name, len) == 0)
            return (enum jwt_alg)a;
    return JWT_ALG_INVALID;
}

const char *jwt_alg_name(enum jwt_alg alg)
{
    if ((unsigned)alg >= JWT_ALG__COUNT || alg_names[alg] == NULL)
        return "invalid";
    return alg_names[alg];
}

json_t *jwt_json_load_strict(const uint8_t *p, size_t len, size_t max_depth)
{
    /* Duplicate keys are ambiguous ({"alg":"RS256","alg":"none"}): json_parse_strict refuses
     * them, stops at max_depth before opening a deeper container, and refuses "\u0000", so C
     * strings from it are whole. Only an object or array is a document here (as with json_loadb
     * without JSON_DECODE_ANY, which this replaced). */
    json_t *j = json_parse_strict(p, len, max_depth);

    if (j != NULL && !json_is_object(j) && !json_is_array(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static enum broker_err load_object(const uint8_t *p, size_t len, json_t **out)
{
    json_t *j = jwt_json_load_strict(p, len, BROKER_MAX_JSON_DEPTH);

    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        return BROKER_ERR_TOKEN_MALFORMED;
    }
    *out = j;
    return BROKER_OK;
}

enum broker_err jwt_parse(const uint8_t *p, size_t len, struct jwt *out)
{
    uint8_t hbuf[BROKER_MAX_JOSE_HEADER_LEN];
    uint8_t pbuf[B64URL_DECODED_MAX(BROKER_MAX_TOKEN_LEN)];
    const uint8_t *d1, *d2;
    size_t hlen, plen;
    json_t *v;
    enum broker_err err;

    memset(out, 0, sizeof(*out));
    if (len > BROKER_MAX_TOKEN_LEN)
        return BROKER_ERR_TOKEN_TOO_LARGE;
    if (p == NULL || len == 0)
        return BROKER_ERR_TOKEN_MALFORMED;
    d1 = memchr(p, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - p)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - p)) != NULL)
        return BROKER_ERR_TOKEN_MALFORMED;

    err = b64url_decode(p, (size_t)(d1 - p), hbuf, sizeof(hbuf), &hlen);
    if (err != BROKER_OK)
        goto done; /* TOKEN_TOO_LARGE for a header over BROKER_MAX_JOSE_HEADER_LEN */
    if ((err = load_object(hbuf, hlen, &out->header)) != BROKER_OK)
        goto done;

    v = json_object_get(out->header, "alg");
    if (v == NULL) {
        err = BROKER_ERR_ALG_NOT_ALLOWED;
        goto done;
    }
    if (!json_is_string(v)) {
        err = BROKER_ERR_TOKEN_MALFORMED;
        goto done;
    }
    out->alg = jwt_alg_from_name(json_string_value(v), json_string_length(v));
    if (out->alg == JWT_ALG_INVALID) {
        err = BROKER_ERR_ALG_NOT_ALLOWED;
        goto done;
    }
    /* We implement no JWS extensions, so any "crit" is one we do not understand (RFC 7515 §4.1.11). */
    if (json_object_get(out->header, "crit") != NULL) {
        err = BROKER_ERR_TOKEN_CRIT;
        goto done;
    }
    v = json_object_get(out->header, "kid");
    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) > BROKER_MAX_KID_LEN) {
            err = BROKER_ERR_TOKEN_MALFORMED;
            goto done;
        }
        /* An empty kid names no key; treating it as absent keeps "" from matching kid-less keys. */
        out->kid = json_string_length(v) ? json_string_value(v) : NULL;
    }
    /* jku, x5u, jwk and x5c are deliberately never read: keys come only from registered issuers. */

    /* pbuf holds the payload of any token within BROKER_MAX_TOKEN_LEN, so only MALFORMED here. */
    err = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pbuf, sizeof(pbuf), &plen);
    if (err != BROKER_OK)
        goto done;
    if ((err = load_object(pbuf, plen, &out->claims)) != BROKER_OK)
        goto done;
    v = json_object_get(out->claims, "iss");
    if (v != NULL) {
        if (!json_is_string(v)) {
            err = BROKER_ERR_BAD_CLAIM;
            goto done;
        }
        out->iss = json_string_value(v);
    }

    err = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - p), out->sig, sizeof(out->sig), &out->sig_len);
    if (err != BROKER_OK || out->sig_len == 0) {
        err = BROKER_ERR_TOKEN_MALFORMED;
        goto done;
    }
    out->signing_input = p;
    out->signing_input_len = (size_t)(d2 - p);

done:
    if (err != BROKER_OK)
        jwt_release(out);
    return err;
}

void jwt_release(struct jwt *t)
{
    if (t == NULL)
        return;
    json_decref(t->header);
    json_decref(t->claims);
    memset(t, 0, sizeof(*t));
}

enum broker_err jwt_claim_time(const json_t *claims, const char *name, bool *present, int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    json_int_t n;

    *present = false;
    *out = 0;
    if (v == NULL)
        return BROKER_OK;
    /* Integers only: no issuer we accept sends fractional dates, and a real would need rounding. */
    if (!json_is_integer(v))
        return BROKER_ERR_BAD_CLAIM;
    n = json_integer_value(v);
    if (n < 0 || n > ((json_int_t)1 << 53))
        return BROKER_ERR_BAD_CLAIM;
    *present = true;
    *out = (int64_t)n;
    return BROKER_OK;
}

static bool str_eq(const json_t *v, const char *s, size_t slen)
{
    return json_is_string(v) && json_string_length(v) == slen && memcmp(json_string_value(v), s, slen) == 0;
}

bool jwt_aud_contains(const json_t *claims, const char *aud)
{
    const json_t *v = json_object_get(claims, "aud");
    size_t alen, i;
    json_t *e;

    if (v == NULL || aud == NULL)
        return false;
    alen = strlen(aud);
    if (json_is_string(v))
        return str_eq(v, aud, alen);
    if (!json_is_array(v))
        return false;
    json_array_foreach(v, i, e) {
        if (str_eq(e, aud, alen))
            return true;
    }
    return false;
}
