/* The explanation engine: the token endpoint's decision with every check and condition around it.
 * The reason is always taken from the same functions the endpoint uses (jwt_parse, verify_jwt,
 * policy_eval), so the explanation can never disagree with a real exchange; the individual checks
 * are re-derived next to it for display, and go on after a failure wherever the input still allows. */
#include "explain.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "jwks.h"
#include "jwt.h"
#include "verify.h"

#define EXPLAIN_DEFAULT_LEEWAY_S 60 /* an unregistered issuer's times are judged with the document default */
#define EXPLAIN_MAX_LISTED 32       /* registered urls or key ids shown in one check */

/* ---- small helpers ---- */

struct ex {
    json_t *out, *checks, *policies;
    bool oom;
};

/* Sets key to v (a new reference; NULL counts as out of memory). */
static void ex_set(struct ex *x, json_t *o, const char *key, json_t *v)
{
    if (v == NULL || o == NULL || json_object_set_new(o, key, v) != 0)
        x->oom = true;
}

/* snprintf cuts at a byte count: drop an incomplete UTF-8 sequence at the end so the text stays valid. */
static void utf8_fix_tail(char *s)
{
    size_t n = strlen(s), i = n, need;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && n - i < 3)
        i--;
    if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < need)
        s[i - 1] = '\0';
}

static json_t *jfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *jfmt(const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    utf8_fix_tail(buf);
    return json_string(buf);
}

/* A string member, "" when absent or not a string. */
static const char *jget(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

static json_t *jcopy(const json_t *v)
{
    return v != NULL ? json_deep_copy(v) : json_null();
}

static json_t *jstr_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

/* Appends a check; expected/actual are new references or NULL (omitted). */
static void ex_check(struct ex *x, const char *name, bool ok, json_t *expected, json_t *actual, json_t *detail)
{
    json_t *c = json_object();
    ex_set(x, c, "check", json_string(name));
    ex_set(x, c, "result", json_boolean(ok));
    if (expected != NULL)
        ex_set(x, c, "expected", expected);
    if (actual != NULL)
        ex_set(x, c, "actual", actual);
    if (detail != NULL)
        ex_set(x, c, "detail", detail);
    if (c == NULL || json_array_append_new(x->checks, c) != 0)
        x->oom = true;
}

void explain_format_time(int64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (cap == 0)
        return;
    if (t < 0 || t > 253402300799 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "@%lld", (long long)t);
}

void explain_format_duration(int64_t s, char *out, size_t cap)
{
    static const struct { int64_t unit; char c; } parts[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    size_t pos = 0;
    if (s < 0)
        s = -s;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && pos < cap; i++) {
        int64_t n = s / parts[i].unit;
        s %= parts[i].unit;
        if (n > 0) {
            int w = snprintf(out + pos, cap - pos, "%lld%c", (long long)n, parts[i].c);
            pos += w > 0 ? (size_t)w : 0;
        }
    }
    if (pos == 0)
        snprintf(out, cap, "0s");
}

static int64_t add_clamped(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

/* ---- checks ---- */

static const char *parse_detail(enum broker_err e)
{
    switch (e) {
    case BROKER_ERR_TOKEN_TOO_LARGE: return "the token (or its header) exceeds the size limit";
    case BROKER_ERR_ALG_NOT_ALLOWED: return "alg is absent, \"none\" or not a JWS algorithm";
    case BROKER_ERR_TOKEN_CRIT: return "the header has \"crit\": no JWS extensions are accepted";
    case BROKER_ERR_BAD_CLAIM: return "iss is not a string";
    default: return "not a compact JWS: three base64url segments, JSON objects, no duplicate keys";
    }
}

/* exp, nbf and iat, judged as verify_times judges them; returns the reason verify_times would give
 * (with exp_required false, a missing exp is no failure: claims tests need not carry one). */
static enum broker_err time_checks(struct ex *x, const json_t *claims, int64_t at, int64_t leeway, bool exp_required)
{
    static const char *const names[3] = {"exp", "nbf", "iat"};
    char at_s[32], v_s[32], bound_s[32], dur[48], lw[24];
    bool bad = false, missing = false, expired = false, early = false;

    if (leeway < 0)
        leeway = 0;
    if (leeway > INT32_MAX)
        leeway = INT32_MAX;
    explain_format_time(at, at_s, sizeof(at_s));
    snprintf(lw, sizeof(lw), "%llds", (long long)leeway);
    for (int i = 0; i < 3; i++) {
        bool present = false, ok;
        int64_t v = 0;
        const json_t *raw = json_object_get(claims, names[i]);
        if (jwt_claim_time(claims, names[i], &present, &v) != BROKER_OK) {
            bad = true;
            ex_check(x, names[i], false, json_string("integer NumericDate"), jcopy(raw),
                     jfmt("%s is not an integer NumericDate", names[i]));
            continue;
        }
        if (!present) {
            ok = i != 0 || !exp_required;
            missing |= !ok;
            ex_check(x, names[i], ok, NULL, json_null(),
                     json_string(ok ? "absent" : "no exp claim: tokens without an expiry are refused"));
            continue;
        }
        explain_format_time(v, v_s, sizeof(v_s));
        if (i == 0) {
            /* valid while at < exp + leeway */
            ok = v + leeway > at;
            expired |= !ok;
            explain_format_time(add_clamped(at, -leeway), bound_s, sizeof(bound_s));
            explain_format_duration(add_clamped(at, -v), dur, sizeof(dur));
            ex_check(x, "exp", ok, jfmt("after %s", bound_s), json_integer(v),
                     ok ? jfmt("at %s, exp %s", at_s, v_s)
                        : jfmt("at %s, exp %s: expired %s before, leeway %s", at_s, v_s, dur, lw));
        } else {
            /* nbf and iat may be at most leeway in the future */
            ok = v - leeway <= at;
            early |= !ok;
            explain_format_time(add_clamped(at, leeway), bound_s, sizeof(bound_s));
            explain_format_duration(add_clamped(v, -at), dur, sizeof(dur));
            ex_check(x, names[i], ok, jfmt("at or before %s", bound_s), json_integer(v),
                     ok ? jfmt("at %s, %s %s", at_s, names[i], v_s)
                        : jfmt("at %s, %s %s: %s in the future, leeway %s", at_s, names[i], v_s, dur, lw));
        }
    }
    return bad ? BROKER_ERR_BAD_CLAIM
           : missing ? BROKER_ERR_MISSING_EXP
           : expired ? BROKER_ERR_EXPIRED
           : early ? BROKER_ERR_NOT_YET_VALID
           : BROKER_OK;
}

static void issuer_check(struct ex *x, const struct policy_set *set, const struct issuer_cfg *ic, const char *iss,
                         bool have_iss)
{
    if (ic != NULL) {
        ex_check(x, "issuer", true, json_string(ic->url), jstr_or_null(iss), jfmt("registered as issuer %s", ic->name));
        return;
    }
    json_t *urls = json_array();
    size_t n = policy_set_issuer_count(set);
    for (size_t i = 0; urls != NULL && i < n && i < EXPLAIN_MAX_LISTED; i++)
        if (json_array_append_new(urls, json_string(policy_set_issuer_at(set, i)->url)) != 0)
            x->oom = true;
    ex_check(x, "issuer", false, urls, jstr_or_null(iss),
             json_string(have_iss ? "no issuer document has this url; tokens of unregistered issuers are refused "
                                    "and their keys never fetched"
                                  : "the token has no iss claim"));
}

/* alg and signature, for display; the decision uses verify_jwt's answer. */
static void signature_checks(struct ex *x, const struct jwt *t, const struct issuer_cfg *ic, const struct jwks *keys)
{
    json_t *algs = json_array();
    for (int a = JWT_ALG_INVALID + 1; algs != NULL && a < JWT_ALG__COUNT; a++)
        if ((ic->algs & JWT_ALG_BIT(a)) && json_array_append_new(algs, json_string(jwt_alg_name((enum jwt_alg)a))))
            x->oom = true;
    bool alg_ok = (ic->algs & JWT_ALG_BIT(t->alg)) != 0;
    ex_check(x, "alg", alg_ok, algs, json_string(jwt_alg_name(t->alg)),
             alg_ok ? NULL : json_string("the issuer document's \"algorithms\" do not include this alg"));

    if (keys == NULL) {
        ex_check(x, "signature", false, NULL, jstr_or_null(t->kid),
                 json_string("the issuer's keys are not available (never fetched or loaded successfully)"));
        return;
    }
    const struct jwk *key = jwks_find(keys, t->kid, t->alg);
    if (key == NULL) {
        json_t *kids = json_array();
        for (size_t i = 0; kids != NULL && i < keys->n && i < EXPLAIN_MAX_LISTED; i++)
            if (json_array_append_new(kids, json_string(keys->keys[i].kid)) != 0)
                x->oom = true;
        char list[512];
        size_t pos = 0;
        list[0] = '\0';
        for (size_t i = 0; i < keys->n && pos < sizeof(list); i++) {
            int w = snprintf(list + pos, sizeof(list) - pos, "%s%s", i ? ", " : "", keys->keys[i].kid);
            pos += w > 0 ? (size_t)w : 0;
        }
        ex_check(x, "signature", false, kids, jstr_or_null(t->kid),
                 jfmt("%s; the set has: %s",
                      t->kid ? "no key with this kid in the issuer's key set"
                             : "no kid, and not exactly one key of the set fits the alg", list));
        return;
    }
    enum broker_err e = verify_signature(key, t->alg, t->signing_input, t->signing_input_len, t->sig, t->sig_len);
    json_t *detail = e == BROKER_OK ? jfmt("verified with key %s", key->kid)
                     : e == BROKER_ERR_ALG_NOT_ALLOWED ? jfmt("key %s does not fit alg %s", key->kid, jwt_alg_name(t->alg))
                     : e == BROKER_ERR_BAD_SIGNATURE
                         ? jfmt("does not verify with key %s: the token was altered or signed by another key", key->kid)
                         : jfmt("verification failed: %s", broker_strerror(e));
    ex_check(x, "signature", e == BROKER_OK, NULL, json_string(key->kid), detail);
}

/* The token's aud against the audiences the listed policies require (their first condition). */
static void audience_check(struct ex *x, const json_t *claims, const char *broker_issuer)
{
    json_t *want = json_array();
    bool any = false, ok = false;
    size_t i, k;
    json_t *p, *c;
    json_array_foreach (x->policies, i, p) {
        c = json_array_get(json_object_get(p, "conditions"), 0);
        if (!c || strcmp(jget(c, "condition"), "audience") != 0)
            continue;
        const json_t *e = json_object_get(c, "expected");
        bool seen = false;
        json_t *w;
        json_array_foreach (want, k, w)
            seen |= json_equal(w, e);
        if (!seen && want != NULL && json_array_append(want, (json_t *)e) != 0)
            x->oom = true;
        any = true;
        ok |= json_is_true(json_object_get(c, "result"));
    }
    const json_t *aud = json_object_get(claims, "aud");
    if (!any) {
        /* no policy to ask: report the default every audience-less policy would require */
        ok = broker_issuer != NULL && jwt_aud_contains(claims, broker_issuer);
        if (broker_issuer != NULL && json_array_append_new(want, json_string(broker_issuer)) != 0)
            x->oom = true;
        ex_check(x, "audience", ok, want, jcopy(aud),
                 json_string("no trust policy to compare with; a policy without \"audience\" requires the "
                             "broker's issuer URL"));
        return;
    }
    ex_check(x, "audience", ok, want, jcopy(aud),
             ok ? NULL : json_string("the token's aud contains no audience a listed trust policy requires"));
}

/* Strings of the request end up in JSON: they must be UTF-8 (jansson refuses anything else). */
static bool request_utf8(const struct explain_request *rq)
{
    const char *const s[] = {rq->identity, rq->scope, rq->audience, rq->broker_issuer, rq->issuer_name};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        json_t *j = s[i] != NULL ? json_string(s[i]) : NULL;
        if (s[i] != NULL && j == NULL)
            return false;
        json_decref(j);
    }
    return true;
}

/* ---- policies ---- */

static bool tp_listed(const json_t *entries, size_t from, size_t to, const char *ident, const char *pol)
{
    for (size_t i = from; i < to; i++) {
        const json_t *e = json_array_get(entries, i);
        if (strcmp(jget(e, "identity"), ident) == 0 &&
            strcmp(jget(e, "policy"), pol) == 0)
            return true;
    }
    return false;
}

static void list_policy(struct ex *x, json_t *entry, size_t *omitted)
{
    if (json_array_size(x->policies) >= EXPLAIN_MAX_POLICIES)
        (*omitted)++;
    else if (json_array_append(x->policies, entry) != 0)
        x->oom = true;
}

/* Decide with policy_eval, then list: matches, the rest of what the decision considered, and (without
 * a requested identity) every other trust policy of the issuer, which the subject index skipped because
 * its subject cannot match. */
static enum broker_err policy_step(struct ex *x, const struct policy_set *set, const struct policy_input *in,
                                   struct policy_result *res)
{
    json_t *considered = json_array(), *extra = NULL;
    size_t omitted = 0, i;
    json_t *e;
    enum broker_err pe = BROKER_ERR_NOMEM;
    if (considered == NULL)
        goto done;
    pe = policy_eval(set, in, res, considered);
    if (pe == BROKER_ERR_NOMEM || pe == BROKER_ERR_INTERNAL)
        goto done;
    json_array_foreach (considered, i, e)
        if (strcmp(jget(e, "result"), "match") == 0)
            list_policy(x, e, &omitted);
    json_array_foreach (considered, i, e)
        if (strcmp(jget(e, "result"), "match") != 0)
            list_policy(x, e, &omitted);

    if (in->identity == NULL) {
        /* considered is in (identity index, position) order, like this walk */
        size_t pos = 0, nc = json_array_size(considered), nid = policy_set_identity_count(set);
        for (size_t k = 0; k < nid; k++) {
            const struct identity *id = policy_set_identity_at(set, k);
            size_t from = pos, mine = 0;
            while (pos < nc && strcmp(jget(json_array_get(considered, pos), "identity"), id->name) == 0)
                pos++;
            for (size_t t = 0; t < id->ntrust; t++)
                mine += strcmp(id->trust[t].issuer, in->issuer->name) == 0;
            if (mine == pos - from)
                continue;
            if (json_array_size(x->policies) >= EXPLAIN_MAX_POLICIES) {
                omitted += mine - (pos - from);
                continue;
            }
            struct policy_input one = *in;
            struct policy_result ignored;
            one.identity = id->name;
            extra = json_array();
            if (extra == NULL || policy_eval(set, &one, &ignored, extra) == BROKER_ERR_NOMEM) {
                pe = BROKER_ERR_NOMEM;
                goto done;
            }
            size_t j;
            json_array_foreach (extra, j, e)
                if (!tp_listed(considered, from, pos, id->name, jget(e, "policy")))
                    list_policy(x, e, &omitted);
            json_decref(extra);
            extra = NULL;
        }
    }
    if (omitted > 0)
        ex_set(x, x->out, "policies_omitted", json_integer((json_int_t)omitted));
done:
    json_decref(considered);
    json_decref(extra);
    return pe;
}

static const char *hint_for(enum broker_err e)
{
    switch (e) {
    case BROKER_ERR_TOKEN_MALFORMED: case BROKER_ERR_TOKEN_TOO_LARGE: case BROKER_ERR_TOKEN_CRIT:
        return "the subject token must be a compact signed JWT as the issuer produced it";
    case BROKER_ERR_ALG_NOT_ALLOWED:
        return "the token's alg must be in the issuer document's \"algorithms\" and fit the key type";
    case BROKER_ERR_UNKNOWN_ISSUER:
        return "register an issuer document whose url is exactly the token's iss";
    case BROKER_ERR_UNKNOWN_KID:
        return "the issuer's key set has no key with this kid (a rotated key appears after the next JWKS fetch)";
    case BROKER_ERR_KEYS_UNAVAILABLE:
        return "the issuer's JWKS could not be fetched or loaded; check url, jwks_uri, ca_file or jwks_file";
    case BROKER_ERR_BAD_SIGNATURE: return "the token was altered, or signed by a key of another issuer";
    case BROKER_ERR_MISSING_EXP: return "tokens without exp are never accepted";
    case BROKER_ERR_EXPIRED: return "request a fresh token (\"at\" / --at replays a decision at an earlier time)";
    case BROKER_ERR_NOT_YET_VALID: return "nbf or iat lies in the future: check the clocks of the issuer and the broker";
    case BROKER_ERR_BAD_CLAIM: return "exp, nbf and iat must be integer NumericDates";
    case BROKER_ERR_WRONG_AUDIENCE:
        return "request the token for the policy's audience (default: the broker's issuer URL), or change the policy";
    case BROKER_ERR_NO_MATCH: return "see the first failed condition of each trust policy below";
    case BROKER_ERR_AMBIGUOUS_IDENTITY: return "several identities trust this token: name the identity";
    case BROKER_ERR_UNKNOWN_IDENTITY: return "no identity has this name";
    case BROKER_ERR_INVALID_SCOPE: return "a requested scope is not granted by the matching trust policy";
    case BROKER_ERR_INVALID_TARGET: return "the requested audience is not one of the identity's audiences";
    default: return NULL;
    }
}

static void token_summary(struct ex *x, const json_t *claims, const struct jwt *t)
{
    json_t *o = json_object();
    static const char *const keys[] = {"iss", "sub", "aud", "jti"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(claims, keys[i]);
        if (v != NULL)
            ex_set(x, o, keys[i], json_deep_copy(v));
    }
    if (t != NULL) {
        if (t->kid != NULL)
            ex_set(x, o, "kid", json_string(t->kid));
        ex_set(x, o, "alg", json_string(jwt_alg_name(t->alg)));
    }
    ex_set(x, x->out, "token", o);
}

json_t *explain_run(const struct policy_set *set, const struct explain_request *rq)
{
    struct ex x = {.out = json_object(), .checks = json_array(), .policies = json_array()};
    struct jwt t;
    bool have_jwt = false, token_mode = rq->token != NULL;
    const json_t *claims = NULL;
    const struct issuer_cfg *ic = NULL;
    enum broker_err reason = BROKER_OK, policy_reason = BROKER_OK;
    bool policy_ran = false;
    struct policy_result res = {0};
    struct explain_request blank = {0};

    if (x.out == NULL || x.checks == NULL || x.policies == NULL)
        goto fail;
    ex_set(&x, x.out, "mode", json_string(token_mode ? "token" : "claims"));
    ex_set(&x, x.out, "at", json_integer(rq->at));
    if (!request_utf8(rq)) {
        ex_check(&x, "parse", false, NULL, NULL, json_string("identity, scope, audience and issuer must be UTF-8"));
        reason = BROKER_ERR_BAD_REQUEST;
        blank.at = rq->at;
        rq = &blank; /* nothing of it is echoed */
        goto decided;
    }

    if (token_mode) {
        enum broker_err e = jwt_parse((const uint8_t *)rq->token, rq->token_len, &t);
        ex_check(&x, "parse", e == BROKER_OK, NULL, NULL, e == BROKER_OK ? NULL : json_string(parse_detail(e)));
        if (e != BROKER_OK) {
            reason = e;
            goto decided;
        }
        have_jwt = true;
        claims = t.claims;
        token_summary(&x, claims, &t);
        ic = t.iss != NULL ? policy_set_issuer_by_url(set, t.iss) : NULL;
        issuer_check(&x, set, ic, t.iss, t.iss != NULL);
        if (ic == NULL) {
            reason = BROKER_ERR_UNKNOWN_ISSUER;
            (void)time_checks(&x, claims, rq->at, EXPLAIN_DEFAULT_LEEWAY_S, true);
            goto decided;
        }
        const struct jwks *keys = rq->keys != NULL ? rq->keys(rq->keys_ctx, ic) : NULL;
        signature_checks(&x, &t, ic, keys);
        (void)time_checks(&x, claims, rq->at, ic->leeway_s, true);
        reason = keys != NULL ? verify_jwt(&t, keys, ic->algs, rq->at, ic->leeway_s) : BROKER_ERR_KEYS_UNAVAILABLE;
    } else {
        claims = rq->claims;
        if (!json_is_object(claims)) {
            ex_check(&x, "parse", false, NULL, NULL, json_string("claims must be a JSON object"));
            reason = BROKER_ERR_BAD_REQUEST;
            goto decided;
        }
        token_summary(&x, claims, NULL);
        ic = rq->issuer_name != NULL ? policy_set_issuer_by_name(set, rq->issuer_name) : NULL;
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (ic == NULL) {
            ex_check(&x, "issuer", false, NULL, jstr_or_null(rq->issuer_name),
                     json_string("no issuer document has this name"));
            reason = BROKER_ERR_UNKNOWN_ISSUER;
        } else if (json_object_get(claims, "iss") != NULL && (iss == NULL || strcmp(iss, ic->url) != 0)) {
            /* a token with this iss would be judged under another issuer document */
            ex_check(&x, "issuer", false, json_string(ic->url), jcopy(json_object_get(claims, "iss")),
                     jfmt("claims.iss is not the url of issuer %s", ic->name));
            reason = BROKER_ERR_UNKNOWN_ISSUER;
            ic = NULL;
        } else {
            ex_check(&x, "issuer", true, json_string(ic->url), jstr_or_null(iss),
                     jfmt("registered as issuer %s", ic->name));
        }
        enum broker_err te = time_checks(&x, claims, rq->at, ic ? ic->leeway_s : EXPLAIN_DEFAULT_LEEWAY_S, false);
        if (reason == BROKER_OK)
            reason = te;
    }

    if (ic != NULL) {
        struct policy_input in = {
            .issuer = ic,
            .claims = claims,
            .identity = rq->identity,
            .scope = rq->scope,
            .audience = rq->audience,
            .peer = rq->peer,
            .default_audience = rq->broker_issuer,
        };
        policy_reason = policy_step(&x, set, &in, &res);
        if (policy_reason == BROKER_ERR_NOMEM)
            goto fail;
        policy_ran = true;
        ex_set(&x, x.out, "policy_reason", json_string(broker_strerror(policy_reason)));
        audience_check(&x, claims, rq->broker_issuer);
        if (reason == BROKER_OK)
            reason = policy_reason;
        if (policy_reason == BROKER_ERR_UNKNOWN_IDENTITY)
            ex_set(&x, x.out, "note", jfmt("no identity is named \"%s\"", rq->identity));
        else if (json_array_size(x.policies) == 0 && rq->identity != NULL)
            ex_set(&x, x.out, "note", jfmt("identity %s has no trust policy for issuer %s", rq->identity, ic->name));
        else if (json_array_size(x.policies) == 0)
            ex_set(&x, x.out, "note", jfmt("no trust policy trusts issuer %s", ic->name));
        else if (res.policy != NULL && res.policy->single_use && policy_reason == BROKER_OK)
            ex_set(&x, x.out, "note", json_string("single_use: an exchange accepts this token's jti once; "
                                                  "whether it was used already is not checked here"));
        if (res.policy != NULL && res.policy->single_use)
            ex_set(&x, x.out, "single_use", json_true());
    }

decided:
    ex_set(&x, x.out, "decision", json_string(reason == BROKER_OK ? "issued" : "denied"));
    ex_set(&x, x.out, "reason", json_string(broker_strerror(reason)));
    if (reason != BROKER_OK && hint_for(reason) != NULL)
        ex_set(&x, x.out, "hint", json_string(hint_for(reason)));
    ex_set(&x, x.out, "issuer", jstr_or_null(ic ? ic->name : NULL));
    ex_set(&x, x.out, "identity", jstr_or_null(res.identity ? res.identity->name : rq->identity));
    ex_set(&x, x.out, "policy", jstr_or_null(res.policy ? res.policy->name : NULL));
    bool issued = reason == BROKER_OK && policy_ran;
    ex_set(&x, x.out, "scope", issued ? json_string(res.scope) : json_null());
    ex_set(&x, x.out, "audience", issued ? jstr_or_null(res.audience) : json_null());
    ex_set(&x, x.out, "ttl", issued ? json_integer(res.ttl_s) : json_null());
    ex_set(&x, x.out, "checks", json_incref(x.checks));
    ex_set(&x, x.out, "policies", json_incref(x.policies));
    if (x.oom)
        goto fail;
    if (have_jwt)
        jwt_release(&t);
    json_decref(x.checks);
    json_decref(x.policies);
    return x.out;
fail:
    if (have_jwt)
        jwt_release(&t);
    json_decref(x.checks);
    json_decref(x.policies);
    json_decref(x.out);
    return NULL;
}

json_t *explain_token(const struct policy_set *set, const char *token, size_t len, const char *identity, int64_t at,
                      const char *broker_issuer, explain_keys_fn keys, void *keys_ctx)
{
    struct explain_request rq = {
        .token = token != NULL ? token : "",
        .token_len = token != NULL ? len : 0,
        .identity = identity,
        .at = at,
        .broker_issuer = broker_issuer,
        .keys = keys,
        .keys_ctx = keys_ctx,
    };
    return explain_run(set, &rq);
}

json_t *explain_claims(const struct policy_set *set, const char *issuer_name, const json_t *claims,
                       const char *identity, int64_t at, const char *broker_issuer)
{
    struct explain_request rq = {
        .issuer_name = issuer_name,
        .claims = claims,
        .identity = identity,
        .at = at,
        .broker_issuer = broker_issuer,
    };
    return explain_run(set, &rq);
}

/* ---- POST /v1/policy/test ---- */

static bool api_string(const json_t *body, const char *key, size_t max, const char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(body, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "%s: must be a non-empty string of at most %zu bytes", key, max);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

json_t *explain_api(const struct policy_set *set, const json_t *body, int64_t now, const char *broker_issuer,
                    explain_keys_fn keys, void *keys_ctx, int *status, char *err, size_t errlen)
{
    static const char *const known[] = {"token", "issuer", "claims", "identity", "scope", "audience", "at"};
    struct explain_request rq = {.at = now, .broker_issuer = broker_issuer, .keys = keys, .keys_ctx = keys_ctx};
    const char *key, *at_text = NULL;
    const json_t *v;

    *status = 400;
    if (!json_is_object(body)) {
        snprintf(err, errlen, "the body must be a JSON object");
        return NULL;
    }
    json_object_foreach ((json_t *)body, key, v) {
        size_t i = 0;
        while (i < sizeof(known) / sizeof(known[0]) && strcmp(known[i], key) != 0)
            i++;
        if (i == sizeof(known) / sizeof(known[0])) {
            snprintf(err, errlen, "unknown member \"%.64s\" (expected token, or issuer and claims; identity, "
                     "scope, audience, at)", key);
            utf8_fix_tail(err);
            return NULL;
        }
    }
    if (!api_string(body, "token", BROKER_MAX_TOKEN_LEN, &rq.token, err, errlen) ||
        !api_string(body, "issuer", BROKER_MAX_NAME_LEN, &rq.issuer_name, err, errlen) ||
        !api_string(body, "identity", BROKER_MAX_NAME_LEN, &rq.identity, err, errlen) ||
        !api_string(body, "scope", BROKER_MAX_FORM_VALUE, &rq.scope, err, errlen) ||
        !api_string(body, "audience", BROKER_MAX_FORM_VALUE, &rq.audience, err, errlen))
        return NULL;
    rq.claims = json_object_get(body, "claims");
    if ((rq.token != NULL) == (rq.issuer_name != NULL || rq.claims != NULL)) {
        snprintf(err, errlen, "give either \"token\" or both \"issuer\" and \"claims\"");
        return NULL;
    }
    if (rq.token == NULL && (rq.issuer_name == NULL || !json_is_object(rq.claims))) {
        snprintf(err, errlen, "\"issuer\" must name an issuer document and \"claims\" be a JSON object");
        return NULL;
    }
    rq.token_len = rq.token != NULL ? strlen(rq.token) : 0;
    v = json_object_get(body, "at");
    if (json_is_integer(v)) {
        rq.at = json_integer_value(v);
    } else if (v != NULL && (!json_is_string(v) || (at_text = json_string_value(v)) == NULL ||
                             explain_parse_time(at_text, json_string_length(v), &rq.at) != BROKER_OK)) {
        snprintf(err, errlen, "at: must be Unix seconds or an RFC 3339 time such as 2025-03-29T11:05:00Z");
        return NULL;
    }
    json_t *r = explain_run(set, &rq);
    if (r == NULL) {
        *status = 500;
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *status = 200;
    return r;
}

/* ---- time parsing ---- */

static bool digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return n > 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

enum broker_err explain_parse_time(const char *s, size_t len, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t y, mo, d, h, mi, sec, oh = 0, om = 0;
    size_t p = 19;

    if (s == NULL)
        return BROKER_ERR_BAD_REQUEST;
    if (len > 0 && len <= 12 && digits(s, len, out)) /* Unix seconds, up to year 33658 */
        return BROKER_OK;
    if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return BROKER_ERR_BAD_REQUEST;
    if (s[p] == '.') { /* fraction: at least one digit, dropped */
        size_t f = ++p;
        while (p < len && s[p] >= '0' && s[p] <= '9')
            p++;
        if (p == f)
            return BROKER_ERR_BAD_REQUEST;
    }
    if (p + 1 == len && (s[p] == 'Z' || s[p] == 'z')) {
        /* UTC */
    } else if (p + 6 == len && (s[p] == '+' || s[p] == '-') && digits(s + p + 1, 2, &oh) && s[p + 3] == ':' &&
               digits(s + p + 4, 2, &om) && oh <= 23 && om <= 59) {
        if (s[p] == '-') {
            oh = -oh;
            om = -om;
        }
    } else {
        return BROKER_ERR_BAD_REQUEST;
    }
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 ||
        sec > 60)
        return BROKER_ERR_BAD_REQUEST;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (oh * 3600 + om * 60);
    return BROKER_OK;
}
