/* Trust policy documents: strict validation of issuer and identity documents into their parsed
 * form. Unknown fields are errors (a typo must never silently weaken a policy); every string,
 * list and pattern is bounded. Pure: no I/O, no clock, no globals. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jwt.h"
#include "names.h"
#include "policy.h"
#include "policy_cond.h"
#include "policy_preset.h"

#define DOC_MAX_PATH 4096       /* jwks_file, ca_file */
#define DOC_SCOPE_BUF 2048      /* struct policy_result.scope */



static char *doc_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Printable text: no control characters (so values stay safe in logs and error messages). */
static bool doc_text_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E. */
static bool doc_scope_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

enum broker_err policy_doc_string(const json_t *v, const char *path, enum policy_doc_str kind, size_t max, char **out,
                                  char *err, size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    if (!v)
        DOC_FAIL("%s: required", path);
    if (!json_is_string(v))
        DOC_FAIL("%s: must be a string", path);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0)
        DOC_FAIL("%s: must not be empty", path);
    if (memchr(s, 0, len))
        DOC_FAIL("%s: contains a NUL byte", path);
    if (len > max)
        DOC_FAIL("%s: longer than %zu bytes", path, max);
    if (kind == POLICY_DOC_STR_NAME && !broker_name_ok(s, len))
        DOC_FAIL("%s: \"%s\" is not a valid name ([A-Za-z0-9._-], 1..%d characters)", path, s, BROKER_MAX_NAME_LEN);
    if (kind == POLICY_DOC_STR_TEXT && !doc_text_ok(s, len))
        DOC_FAIL("%s: contains control characters", path);
    *out = doc_strndup(s, len);
    if (!*out)
        rc = BROKER_ERR_NOMEM;
done:
    return rc;
}

static enum broker_err doc_known_fields(const json_t *obj, const char *path, const char *const *known, char *err,
                                        size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    const char *key;
    const json_t *v;
    json_object_foreach ((json_t *)obj, key, v) {
        size_t i;
        for (i = 0; known[i]; i++)
            if (strcmp(key, known[i]) == 0)
                break;
        if (!known[i]) {
            char shown[64];
            snprintf(shown, sizeof(shown), "%s", key);
            DOC_FAIL("%s%sunknown field \"%s\"", path, path[0] ? ": " : "", shown);
        }
    }
done:
    return rc;
}

enum broker_err policy_parse_duration(const char *s, int64_t *out_s)
{
    static const struct { char unit; int64_t mult; } units[] = {{'h', 3600}, {'m', 60}, {'s', 1}};
    size_t next_unit = 0;
    int64_t total = 0;
    bool any = false;

    if (!s || !out_s)
        return BROKER_ERR_INVALID_DOCUMENT;
    while (*s) {
        int64_t n = 0;
        size_t digits = 0;
        while (*s >= '0' && *s <= '9') {
            if (++digits > 9)
                return BROKER_ERR_INVALID_DOCUMENT;
            n = n * 10 + (*s - '0');
            s++;
        }
        if (digits == 0)
            return BROKER_ERR_INVALID_DOCUMENT;
        /* units appear at most once each, largest first ("1h30m", not "30m1h") */
        while (next_unit < 3 && units[next_unit].unit != *s)
            next_unit++;
        if (next_unit == 3)
            return BROKER_ERR_INVALID_DOCUMENT;
        total += n * units[next_unit].mult;
        next_unit++;
        s++;
        any = true;
    }
    if (!any)
        return BROKER_ERR_INVALID_DOCUMENT;
    *out_s = total;
    return BROKER_OK;
}

static enum broker_err doc_duration(const json_t *v, const char *path, int64_t min, int64_t max, int64_t *out,
                                    char *err, size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    if (!json_is_string(v) || memchr(json_string_value(v), 0, json_string_length(v)))
        DOC_FAIL("%s: must be a duration string such as \"90s\", \"15m\", \"1h\"", path);
    if (policy_parse_duration(json_string_value(v), out) != BROKER_OK)
        DOC_FAIL("%s: \"%.32s\" is not a duration (use \"90s\", \"15m\", \"1h\", \"1h30m\")", path,
                 json_string_value(v));
    if (*out < min)
        DOC_FAIL("%s: must be at least %llds", path, (long long)min);
    if (*out > max)
        DOC_FAIL("%s: must be at most %llds", path, (long long)max);
done:
    return rc;
}

/* "rate_limit": {"per_minute": N, "burst": M}: exchanges for this identity, summed over replicas. */
static enum broker_err doc_rate_limit(const json_t *v, struct identity *id, char *err, size_t errlen)
{
    static const char *const known[] = {"per_minute", "burst", NULL};
    enum broker_err rc = BROKER_OK;
    const json_t *pm, *b;
    if (!json_is_object(v))
        DOC_FAIL("rate_limit: must be an object {\"per_minute\": N, \"burst\": M}");
    DOC_TRY(doc_known_fields(v, "rate_limit", known, err, errlen));
    pm = json_object_get(v, "per_minute");
    if (!json_is_integer(pm) || json_integer_value(pm) < 1 || json_integer_value(pm) > 1000000)
        DOC_FAIL("rate_limit.per_minute: required, an integer from 1 to 1000000");
    id->rate_per_minute = (uint32_t)json_integer_value(pm);
    id->rate_burst = id->rate_per_minute;
    if ((b = json_object_get(v, "burst"))) {
        if (!json_is_integer(b) || json_integer_value(b) < 1 || json_integer_value(b) > 1000000)
            DOC_FAIL("rate_limit.burst: an integer from 1 to 1000000");
        id->rate_burst = (uint32_t)json_integer_value(b);
    }
done:
    return rc;
}

bool policy_doc_https_url(const char *s, size_t len, bool allow_query)
{
    static const char scheme[] = "https://";
    size_t i = sizeof(scheme) - 1;
    if (len <= i || memcmp(s, scheme, i) != 0)
        return false;
    size_t host_start = i;
    for (; i < len && s[i] != '/' && s[i] != '?'; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || c == '[' || c == ']'))
            return false;
    }
    if (i == host_start || s[host_start] == ':')
        return false;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '#' || (c == '?' && !allow_query))
            return false;
    }
    return true;
}

/* ---- string lists ---- */

static void doc_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n && v; i++)
        free(v[i]);
    free(v);
}

enum doc_list { DOC_LIST_SCOPES, DOC_LIST_TEXT };

/* A non-empty (unless allow_empty) array of unique strings. */
static enum broker_err doc_strv(const json_t *arr, const char *path, enum doc_list kind, bool allow_empty,
                                char ***out, size_t *nout, char *err, size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    char sub[192];
    char **v = NULL;
    size_t n = json_array_size(arr), got = 0;

    if (!json_is_array(arr))
        DOC_FAIL("%s: must be an array of strings", path);
    if (n == 0 && !allow_empty)
        DOC_FAIL("%s: must not be empty", path);
    if (n > BROKER_MAX_LIST)
        DOC_FAIL("%s: more than %d entries", path, BROKER_MAX_LIST);
    v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
        DOC_TRY(policy_doc_string(e, sub, POLICY_DOC_STR_TEXT, POLICY_DOC_MAX_TEXT, &v[i], err, errlen));
        got = i + 1;
        if (kind == DOC_LIST_SCOPES && !doc_scope_ok(v[i], strlen(v[i])))
            DOC_FAIL("%s: \"%s\" is not a valid scope (no spaces, quotes or backslashes)", sub, v[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[i], v[j]) == 0)
                DOC_FAIL("%s: duplicate \"%s\"", sub, v[i]);
    }
    *out = v;
    *nout = n;
    v = NULL;
done:
    doc_strv_free(v, got);
    return rc;
}

/* ---- issuer documents ---- */

void policy_issuer_clear(struct issuer_cfg *c)
{
    if (!c)
        return;
    free(c->name);
    free(c->url);
    free(c->jwks_uri);
    free(c->jwks_inline);
    free(c->jwks_file);
    free(c->ca_file);
    free(c->bearer_token_file);
    free(c->token_review_url);
    json_decref(c->doc);
    memset(c, 0, sizeof(*c));
}

static const struct { const char *name; enum jwt_alg alg; } doc_algs[] = {
    {"RS256", JWT_ALG_RS256}, {"RS384", JWT_ALG_RS384}, {"RS512", JWT_ALG_RS512}, {"PS256", JWT_ALG_PS256},
    {"PS384", JWT_ALG_PS384}, {"PS512", JWT_ALG_PS512}, {"ES256", JWT_ALG_ES256}, {"ES384", JWT_ALG_ES384},
    {"ES512", JWT_ALG_ES512}, {"EdDSA", JWT_ALG_EDDSA},
};

static enum broker_err doc_algorithms(const json_t *arr, uint32_t *mask, char *err, size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    size_t n = json_array_size(arr);
    *mask = 0;
    if (!json_is_array(arr) || n == 0)
        DOC_FAIL("algorithms: must be a non-empty array of algorithm names");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        const char *s = json_string_value(e);
        if (!s)
            DOC_FAIL("algorithms[%zu]: must be a string", i);
        size_t k;
        for (k = 0; k < sizeof(doc_algs) / sizeof(doc_algs[0]); k++)
            if (strlen(doc_algs[k].name) == json_string_length(e) && strcmp(s, doc_algs[k].name) == 0)
                break;
        if (k == sizeof(doc_algs) / sizeof(doc_algs[0])) {
            if ((s[0] == 'H' || s[0] == 'h') && (s[1] == 'S' || s[1] == 's'))
                DOC_FAIL("algorithms[%zu]: HMAC algorithms are refused for issuers (a public key would be "
                         "usable as the shared secret)", i);
            if (strncmp(s, "none", 4) == 0 || strncmp(s, "None", 4) == 0 || strncmp(s, "NONE", 4) == 0)
                DOC_FAIL("algorithms[%zu]: \"none\" is refused", i);
            DOC_FAIL("algorithms[%zu]: \"%.16s\" is not supported (RS256/384/512, PS256/384/512, ES256/384/512, "
                     "EdDSA)", i, s);
        }
        if (*mask & JWT_ALG_BIT(doc_algs[k].alg))
            DOC_FAIL("algorithms[%zu]: duplicate \"%s\"", i, s);
        *mask |= JWT_ALG_BIT(doc_algs[k].alg);
    }
done:
    return rc;
}

#define DOC_TOKEN_REVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"

/* "token_review": {"url": "https://API-SERVER", "cache_seconds": 5}: after offline verification the
 * token is also checked with the cluster's TokenReview API, so a deleted pod's token stops working.
 * url defaults to the issuer's url (the in-cluster API server); the broker authenticates with the
 * bearer_token_file, which is therefore required. */
static enum broker_err doc_token_review(const json_t *v, struct issuer_cfg *out, char *err, size_t errlen)
{
    static const char *const known[] = {"url", "cache_seconds", NULL};
    enum broker_err rc = BROKER_OK;
    const json_t *u, *cs;
    char *base = NULL;

    if (!json_is_object(v))
        DOC_FAIL("token_review: must be an object {\"url\": \"https://API-SERVER\", \"cache_seconds\": 5}");
    DOC_TRY(doc_known_fields(v, "token_review", known, err, errlen));
    if ((u = json_object_get(v, "url"))) {
        DOC_TRY(policy_doc_string(u, "token_review.url", POLICY_DOC_STR_TEXT, POLICY_DOC_MAX_TEXT, &base, err,
                                  errlen));
        if (!policy_doc_https_url(base, strlen(base), false))
            DOC_FAIL("token_review.url: must be an https:// URL without query or fragment");
    } else {
        if (!policy_doc_https_url(out->url, strlen(out->url), false))
            DOC_FAIL("token_review.url: required when the issuer's url is not an https:// URL (give the API "
                     "server, e.g. \"https://kubernetes.default.svc\")");
        base = strdup(out->url);
        if (!base) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
    }
    if (!out->bearer_token_file)
        DOC_FAIL("token_review: needs bearer_token_file (a token allowed to create tokenreviews, such as the "
                 "broker's own service-account token with the system:auth-delegator role)");
    out->token_review_cache_s = 5;
    if ((cs = json_object_get(v, "cache_seconds"))) {
        if (!json_is_integer(cs) || json_integer_value(cs) < 0 || json_integer_value(cs) > 60)
            DOC_FAIL("token_review.cache_seconds: an integer from 0 to 60");
        out->token_review_cache_s = json_integer_value(cs);
    }
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    size_t cap = n + sizeof(DOC_TOKEN_REVIEW_PATH);
    if (!(out->token_review_url = malloc(cap))) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    memcpy(out->token_review_url, base, n);
    memcpy(out->token_review_url + n, DOC_TOKEN_REVIEW_PATH, sizeof(DOC_TOKEN_REVIEW_PATH));
done:
    free(base);
    return rc;
}

enum broker_err policy_issuer_parse(const json_t *doc, struct issuer_cfg *out, char *err, size_t errlen)
{
    static const char *const known[] = {"issuer", "url", "jwks_uri", "jwks", "jwks_file", "ca_file", "algorithms",
                                        "leeway", "preset", "enterprise", "ghes_host", "bearer_token_file",
                                        "token_review", NULL};
    enum broker_err rc = BROKER_OK;
    const json_t *v;

    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = 0;
    if (!json_is_object(doc))
        DOC_FAIL("document: must be a JSON object");
    DOC_TRY(doc_known_fields(doc, "", known, err, errlen));
    DOC_TRY(policy_doc_string(json_object_get(doc, "issuer"), "issuer", POLICY_DOC_STR_NAME, BROKER_MAX_NAME_LEN,
                              &out->name, err, errlen));

    if ((v = json_object_get(doc, "url")))
        DOC_TRY(policy_doc_string(v, "url", POLICY_DOC_STR_TEXT, POLICY_DOC_MAX_TEXT, &out->url, err, errlen));
    if ((v = json_object_get(doc, "jwks_uri"))) {
        DOC_TRY(policy_doc_string(v, "jwks_uri", POLICY_DOC_STR_TEXT, POLICY_DOC_MAX_TEXT, &out->jwks_uri, err,
                                  errlen));
        if (!policy_doc_https_url(out->jwks_uri, strlen(out->jwks_uri), true))
            DOC_FAIL("jwks_uri: must be an https:// URL");
    }
    if ((v = json_object_get(doc, "jwks"))) {
        const json_t *keys = json_object_get(v, "keys");
        if (!json_is_object(v) || !json_is_array(keys))
            DOC_FAIL("jwks: must be a JWKS object with a \"keys\" array");
        if (json_array_size(keys) == 0 || json_array_size(keys) > BROKER_MAX_JWKS_KEYS)
            DOC_FAIL("jwks: must hold 1..%d keys", BROKER_MAX_JWKS_KEYS);
        out->jwks_inline = json_dumps(v, JSON_COMPACT);
        if (!out->jwks_inline) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        if (strlen(out->jwks_inline) > BROKER_MAX_JWKS_BYTES)
            DOC_FAIL("jwks: larger than %d bytes", BROKER_MAX_JWKS_BYTES);
    }
    if ((v = json_object_get(doc, "jwks_file")))
        DOC_TRY(policy_doc_string(v, "jwks_file", POLICY_DOC_STR_TEXT, DOC_MAX_PATH, &out->jwks_file, err, errlen));
    if ((v = json_object_get(doc, "ca_file")))
        DOC_TRY(policy_doc_string(v, "ca_file", POLICY_DOC_STR_TEXT, DOC_MAX_PATH, &out->ca_file, err, errlen));
    if ((v = json_object_get(doc, "bearer_token_file")))
        DOC_TRY(policy_doc_string(v, "bearer_token_file", POLICY_DOC_STR_TEXT, DOC_MAX_PATH, &out->bearer_token_file,
                                  err, errlen));
    /* with static keys the bearer token still authenticates TokenReview calls */
    if (out->bearer_token_file && (out->jwks_inline || out->jwks_file) && !json_object_get(doc, "token_review"))
        DOC_FAIL("bearer_token_file: only used to fetch keys, cannot be combined with jwks or jwks_file");
    if (out->jwks_inline && out->jwks_file)
        DOC_FAIL("jwks_file: cannot be combined with jwks (give the keys once)");
    if (out->jwks_uri && (out->jwks_inline || out->jwks_file))
        DOC_FAIL("jwks_uri: cannot be combined with static keys (jwks or jwks_file)");

    DOC_TRY(policy_preset_apply(doc, out, err, errlen));
    if (!out->url)
        DOC_FAIL("url: required (the exact \"iss\" of the issuer's tokens)");
    /* keys fetched over the network need an https issuer; static keys allow any iss string */
    if (!out->jwks_inline && !out->jwks_file && !policy_doc_https_url(out->url, strlen(out->url), false))
        DOC_FAIL("url: must be an https:// URL without query or fragment (or give static keys with jwks or "
                 "jwks_file)");

    if (!out->algs) /* a preset may have set them */
        out->algs = JWT_ALG_BIT(JWT_ALG_RS256);
    if ((v = json_object_get(doc, "algorithms")))
        DOC_TRY(doc_algorithms(v, &out->algs, err, errlen));
    out->leeway_s = 60;
    if ((v = json_object_get(doc, "leeway")))
        DOC_TRY(doc_duration(v, "leeway", 0, 300, &out->leeway_s, err, errlen));

    if ((v = json_object_get(doc, "token_review")))
        DOC_TRY(doc_token_review(v, out, err, errlen));

    out->doc = json_deep_copy(doc);
    if (!out->doc)
        rc = BROKER_ERR_NOMEM;
done:
    if (rc != BROKER_OK) {
        if (rc == BROKER_ERR_NOMEM)
            policy_errf(err, errlen, "out of memory");
        policy_issuer_clear(out);
    }
    return rc;
}

/* ---- identity documents ---- */

static void doc_trust_clear(struct trust_policy *tp)
{
    free(tp->name);
    free(tp->issuer);
    free(tp->audience);
    if (tp->subject) {
        policy_cond_clear(tp->subject);
        free(tp->subject);
    }
    for (size_t i = 0; i < tp->nclaims; i++) {
        free(tp->claims[i].claim);
        policy_cond_clear(&tp->claims[i].cond);
    }
    free(tp->claims);
    doc_strv_free(tp->scopes, tp->nscopes);
    free(tp->cidrs);
    for (size_t i = 0; i < tp->nmappings; i++) {
        free(tp->mappings[i].from);
        free(tp->mappings[i].to);
    }
    free(tp->mappings);
    memset(tp, 0, sizeof(*tp));
}

void policy_identity_clear(struct identity *id)
{
    if (!id)
        return;
    free(id->name);
    free(id->description);
    doc_strv_free(id->scopes, id->nscopes);
    doc_strv_free(id->audiences, id->naudiences);
    for (size_t i = 0; i < id->ntrust; i++)
        doc_trust_clear(&id->trust[i]);
    free(id->trust);
    json_decref(id->doc);
    memset(id, 0, sizeof(*id));
}

static enum broker_err doc_claims(const json_t *obj, const char *path, struct trust_policy *tp, char *err,
                                  size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    char sub[192];
    const char *key;
    const json_t *v;
    size_t n = json_object_size(obj);

    if (!json_is_object(obj))
        DOC_FAIL("%s.claims: must be an object of claim conditions", path);
    if (n > BROKER_MAX_CONDITIONS)
        DOC_FAIL("%s.claims: more than %d conditions", path, BROKER_MAX_CONDITIONS);
    if (n == 0)
        goto done;
    tp->claims = calloc(n, sizeof(*tp->claims));
    if (!tp->claims) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    /* jansson keeps insertion order, so conditions run (and are explained) in document order */
    json_object_foreach ((json_t *)obj, key, v) {
        struct claim_cond *cc = &tp->claims[tp->nclaims];
        size_t klen = strlen(key);
        if (!policy_cond_claim_name_ok(key, klen)) {
            char shown[64];
            snprintf(shown, sizeof(shown), "%s", key);
            DOC_FAIL("%s.claims: \"%s\" is not a valid claim name or JSON Pointer", path, shown);
        }
        cc->claim = doc_strndup(key, klen);
        tp->nclaims++;
        if (!cc->claim) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        snprintf(sub, sizeof(sub), "%s.claims.%s", path, key);
        DOC_TRY(policy_cond_parse(v, sub, &cc->cond, err, errlen));
    }
done:
    return rc;
}

static enum broker_err doc_cidrs(const json_t *arr, const char *path, struct trust_policy *tp, char *err,
                                 size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0)
        DOC_FAIL("%s.source_cidrs: must be a non-empty array (omit it to allow any source)", path);
    if (n > BROKER_MAX_LIST)
        DOC_FAIL("%s.source_cidrs: more than %d entries", path, BROKER_MAX_LIST);
    tp->cidrs = calloc(n, sizeof(*tp->cidrs));
    if (!tp->cidrs) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        if (!json_is_string(e) ||
            cidr_parse(json_string_value(e), json_string_length(e), &tp->cidrs[i]) != BROKER_OK)
            DOC_FAIL("%s.source_cidrs[%zu]: not an address or prefix such as \"10.0.0.0/8\" or \"::1/128\" "
                     "(host bits must be zero)", path, i);
    }
    tp->ncidrs = n;
done:
    return rc;
}

static enum broker_err doc_mappings(const json_t *obj, const char *path, struct trust_policy *tp, char *err,
                                    size_t errlen)
{
    enum broker_err rc = BROKER_OK;
    const char *key;
    const json_t *v;
    size_t n = json_object_size(obj);
    char sub[192];

    if (!json_is_object(obj))
        DOC_FAIL("%s.claim_mappings: must be an object {\"claim\": \"name\"}", path);
    if (n > BROKER_MAX_CONDITIONS)
        DOC_FAIL("%s.claim_mappings: more than %d entries", path, BROKER_MAX_CONDITIONS);
    if (n == 0)
        goto done;
    tp->mappings = calloc(n, sizeof(*tp->mappings));
    if (!tp->mappings) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    json_object_foreach ((json_t *)obj, key, v) {
        struct claim_mapping *m = &tp->mappings[tp->nmappings];
        if (!policy_cond_claim_name_ok(key, strlen(key))) {
            char shown[64];
            snprintf(shown, sizeof(shown), "%s", key);
            DOC_FAIL("%s.claim_mappings: \"%s\" is not a valid claim name or JSON Pointer", path, shown);
        }
        m->from = doc_strndup(key, strlen(key));
        tp->nmappings++;
        if (!m->from) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        snprintf(sub, sizeof(sub), "%s.claim_mappings.%s", path, key);
        DOC_TRY(policy_doc_string(v, sub, POLICY_DOC_STR_NAME, BROKER_MAX_NAME_LEN, &m->to, err, errlen));
        for (size_t j = 0; j + 1 < tp->nmappings; j++)
            if (strcmp(tp->mappings[j].to, m->to) == 0)
                DOC_FAIL("%s: target \"%s\" is used twice", sub, m->to);
    }
done:
    return rc;
}

static enum broker_err doc_trust(const json_t *doc, size_t idx, const struct identity *id, struct trust_policy *tp,
                                 char *err, size_t errlen)
{
    static const char *const known[] = {"name",  "issuer",       "audience",       "subject",     "claims",
                                        "scopes", "ttl",         "source_cidrs",   "claim_mappings", "single_use",
                                        NULL};
    enum broker_err rc = BROKER_OK;
    char path[32], sub[192];
    const json_t *v;

    snprintf(path, sizeof(path), "trust[%zu]", idx);
    if (!json_is_object(doc))
        DOC_FAIL("%s: must be an object", path);
    DOC_TRY(doc_known_fields(doc, path, known, err, errlen));
    snprintf(sub, sizeof(sub), "%s.name", path);
    DOC_TRY(policy_doc_string(json_object_get(doc, "name"), sub, POLICY_DOC_STR_NAME, BROKER_MAX_NAME_LEN, &tp->name,
                              err, errlen));
    snprintf(sub, sizeof(sub), "%s.issuer", path);
    DOC_TRY(policy_doc_string(json_object_get(doc, "issuer"), sub, POLICY_DOC_STR_NAME, BROKER_MAX_NAME_LEN,
                              &tp->issuer, err, errlen));
    if ((v = json_object_get(doc, "audience"))) {
        snprintf(sub, sizeof(sub), "%s.audience", path);
        DOC_TRY(policy_doc_string(v, sub, POLICY_DOC_STR_TEXT, POLICY_DOC_MAX_TEXT, &tp->audience, err, errlen));
    }
    if ((v = json_object_get(doc, "subject"))) {
        tp->subject = calloc(1, sizeof(*tp->subject));
        if (!tp->subject) {
            rc = BROKER_ERR_NOMEM;
            goto done;
        }
        snprintf(sub, sizeof(sub), "%s.subject", path);
        DOC_TRY(policy_cond_parse(v, sub, tp->subject, err, errlen));
    }
    if ((v = json_object_get(doc, "claims")))
        DOC_TRY(doc_claims(v, path, tp, err, errlen));
    if (!tp->subject && tp->nclaims == 0)
        DOC_FAIL("%s: binds neither subject nor any claim (it would trust every token of the issuer)", path);

    if ((v = json_object_get(doc, "scopes"))) {
        snprintf(sub, sizeof(sub), "%s.scopes", path);
        DOC_TRY(doc_strv(v, sub, DOC_LIST_SCOPES, false, &tp->scopes, &tp->nscopes, err, errlen));
        for (size_t i = 0; i < tp->nscopes; i++) {
            size_t j;
            for (j = 0; j < id->nscopes; j++)
                if (strcmp(tp->scopes[i], id->scopes[j]) == 0)
                    break;
            if (j == id->nscopes)
                DOC_FAIL("%s[%zu]: \"%s\" is not one of the identity's scopes", sub, i, tp->scopes[i]);
        }
    }
    if ((v = json_object_get(doc, "ttl"))) {
        snprintf(sub, sizeof(sub), "%s.ttl", path);
        DOC_TRY(doc_duration(v, sub, 1, id->max_ttl_s, &tp->ttl_s, err, errlen));
    }
    if ((v = json_object_get(doc, "source_cidrs")))
        DOC_TRY(doc_cidrs(v, path, tp, err, errlen));
    if ((v = json_object_get(doc, "claim_mappings")))
        DOC_TRY(doc_mappings(v, path, tp, err, errlen));
    if ((v = json_object_get(doc, "single_use"))) {
        if (!json_is_boolean(v))
            DOC_FAIL("%s.single_use: must be true or false", path);
        tp->single_use = json_is_true(v);
    }
done:
    return rc;
}

enum broker_err policy_identity_parse(const json_t *doc, struct identity *out, char *err, size_t errlen)
{
    static const char *const known[] = {"identity", "description", "scopes", "audiences", "ttl", "max_ttl", "trust",
                                        "rate_limit", NULL};
    enum broker_err rc = BROKER_OK;
    const json_t *v, *trust;

    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = 0;
    if (!json_is_object(doc))
        DOC_FAIL("document: must be a JSON object");
    DOC_TRY(doc_known_fields(doc, "", known, err, errlen));
    DOC_TRY(policy_doc_string(json_object_get(doc, "identity"), "identity", POLICY_DOC_STR_NAME, BROKER_MAX_NAME_LEN,
                              &out->name, err, errlen));
    if ((v = json_object_get(doc, "description")))
        DOC_TRY(policy_doc_string(v, "description", POLICY_DOC_STR_TEXT, POLICY_DOC_MAX_TEXT, &out->description, err,
                                  errlen));

    if (!(v = json_object_get(doc, "scopes")))
        DOC_FAIL("scopes: required (an array of the scopes this identity may be granted)");
    DOC_TRY(doc_strv(v, "scopes", DOC_LIST_SCOPES, true, &out->scopes, &out->nscopes, err, errlen));
    size_t joined = 0;
    for (size_t i = 0; i < out->nscopes; i++)
        joined += strlen(out->scopes[i]) + 1;
    if (joined > DOC_SCOPE_BUF)
        DOC_FAIL("scopes: together longer than %d bytes", DOC_SCOPE_BUF - 1);

    if (!(v = json_object_get(doc, "audiences")))
        DOC_FAIL("audiences: required (at least one audience for minted tokens)");
    DOC_TRY(doc_strv(v, "audiences", DOC_LIST_TEXT, false, &out->audiences, &out->naudiences, err, errlen));

    out->max_ttl_s = 3600;
    if ((v = json_object_get(doc, "max_ttl")))
        DOC_TRY(doc_duration(v, "max_ttl", 1, BROKER_MAX_TTL_S, &out->max_ttl_s, err, errlen));
    out->ttl_s = BROKER_DEFAULT_TTL_S < out->max_ttl_s ? BROKER_DEFAULT_TTL_S : out->max_ttl_s;
    if ((v = json_object_get(doc, "ttl"))) {
        DOC_TRY(doc_duration(v, "ttl", 1, BROKER_MAX_TTL_S, &out->ttl_s, err, errlen));
        if (out->ttl_s > out->max_ttl_s)
            DOC_FAIL("ttl: longer than max_ttl (%llds)", (long long)out->max_ttl_s);
    }

    if ((v = json_object_get(doc, "rate_limit")))
        DOC_TRY(doc_rate_limit(v, out, err, errlen));

    trust = json_object_get(doc, "trust");
    size_t n = json_array_size(trust);
    if (!json_is_array(trust) || n == 0)
        DOC_FAIL("trust: required, a non-empty array of trust policies");
    if (n > BROKER_MAX_POLICIES_PER_IDENTITY)
        DOC_FAIL("trust: more than %d policies", BROKER_MAX_POLICIES_PER_IDENTITY);
    out->trust = calloc(n, sizeof(*out->trust));
    if (!out->trust) {
        rc = BROKER_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        out->ntrust = i + 1;
        DOC_TRY(doc_trust(json_array_get(trust, i), i, out, &out->trust[i], err, errlen));
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->trust[i].name, out->trust[j].name) == 0)
                DOC_FAIL("trust[%zu].name: \"%s\" is already used by trust[%zu]", i, out->trust[i].name, j);
    }

    out->doc = json_deep_copy(doc);
    if (!out->doc)
        rc = BROKER_ERR_NOMEM;
done:
    if (rc != BROKER_OK) {
        if (rc == BROKER_ERR_NOMEM)
            policy_errf(err, errlen, "out of memory");
        policy_identity_clear(out);
    }
    return rc;
}

const char *policy_doc_kind(const json_t *doc)
{
    if (!json_is_object(doc))
        return NULL;
    bool is_issuer = json_object_get(doc, "issuer") != NULL;
    bool is_identity = json_object_get(doc, "identity") != NULL;
    if (is_issuer == is_identity)
        return NULL;
    return is_issuer ? "issuer" : "identity";
}
