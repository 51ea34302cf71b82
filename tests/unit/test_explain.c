/* Explanations of real GitHub Actions tokens (fixed clock: their iat, or an hour past exp) against
 * the policies of tests/data/explain/, and of the denials an admin meets: wrong subject, missing
 * claim, expired, wrong audience, untrusted issuer, bad signature, unknown kid. Each explained
 * decision is also checked against the fast path an exchange takes (verify_jwt + policy_eval). */
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>
#include "test_util.h"
#include "cli_test.h"
#include "docload.h"
#include "explain.h"
#include "jwks.h"
#include "jwt.h"
#include "policy.h"
#include "verify.h"

#define GH "https://token.actions.githubusercontent.com"
#define BROKER "https://broker.example.com"
#define TOK2025 "github-actions/gha_2025-03-29_rgl_github-actions-validate-jwt.jwt"
#define JWKS2025 "github-actions/jwks_2024-25_token.actions.githubusercontent.com.json"
#define JWKS2022 "github-actions/jwks_2022_token.actions.githubusercontent.com.json"
#define IAT2025 1743246227 /* 2025-03-29T11:03:47Z */
#define EXP2025 1743267827 /* 2025-03-29T17:03:47Z */
#define DATA "tests/data/explain"

struct keys {
    struct jwks *jwks;
    int calls;
};

static const struct jwks *test_keys(void *ctx, const struct issuer_cfg *c)
{
    struct keys *k = ctx;
    size_t len;
    k->calls++;
    if (k->jwks == NULL && c->jwks_file != NULL) {
        char *doc = test_read_file(c->jwks_file, 0, &len);
        if (doc != NULL && jwks_parse((const uint8_t *)doc, len, 0, &k->jwks) != BROKER_OK)
            k->jwks = NULL;
        free(doc);
    }
    return k->jwks;
}

static char *fixture_path(const char *rel)
{
    char joined[PATH_MAX * 2], *real = malloc(PATH_MAX);
    snprintf(joined, sizeof(joined), "%s/%s", test_fixtures_dir(), rel);
    assert_non_null(real);
    assert_non_null(realpath(joined, real));
    return real;
}

/* The GitHub issuer with a fixture key set (absolute path), plus the identity documents of dir. */
static struct policy_set *build_set(const char *jwks_rel, const char *dir, json_t *more_identities)
{
    char *jwks = fixture_path(jwks_rel), err[512];
    json_t *issuers = json_pack("[{s:s, s:s, s:s, s:[s]}]", "issuer", "github-actions", "url", GH, "jwks_file", jwks,
                                "algorithms", "RS256");
    json_t *ids = json_array();
    struct docset docs;
    struct policy_set *set = NULL;
    assert_int_equal(docset_init(&docs), 0);
    if (dir != NULL) {
        assert_int_equal(docset_load_path(&docs, dir, false, stderr), 0);
        json_array_extend(ids, docs.identities);
    }
    docset_clear(&docs);
    if (more_identities != NULL)
        json_array_extend(ids, more_identities);
    if (policy_set_build(issuers, ids, &set, err, sizeof(err)) != BROKER_OK)
        fail_msg("policy_set_build: %s", err);
    json_decref(issuers);
    json_decref(ids);
    json_decref(more_identities);
    free(jwks);
    return set;
}

static char *token2025(size_t *len)
{
    char *t = test_read_file(TOK2025, 1, len);
    assert_non_null(t);
    return t;
}

/* What the token endpoint decides, by its own fast path (exchange.c's order). */
static const char *fast_reason(const struct policy_set *set, const char *tok, size_t len, const char *identity,
                               int64_t at, const struct jwks *keys, const struct sockaddr *peer)
{
    struct jwt t;
    enum broker_err e = jwt_parse((const uint8_t *)tok, len, &t);
    if (e != BROKER_OK)
        return broker_strerror(e);
    const struct issuer_cfg *ic = t.iss ? policy_set_issuer_by_url(set, t.iss) : NULL;
    if (ic == NULL)
        e = BROKER_ERR_UNKNOWN_ISSUER;
    else if (keys == NULL)
        e = BROKER_ERR_KEYS_UNAVAILABLE;
    else
        e = verify_jwt(&t, keys, ic->algs, at, ic->leeway_s);
    if (e == BROKER_OK) {
        struct policy_input in = {.issuer = ic, .claims = t.claims, .identity = identity, .peer = peer,
                                  .default_audience = BROKER};
        struct policy_result res;
        e = policy_eval(set, &in, &res, NULL);
    }
    jwt_release(&t);
    return broker_strerror(e);
}

static json_t *explain_and_check(const struct policy_set *set, const char *tok, size_t len, const char *identity,
                                 int64_t at, struct keys *k)
{
    json_t *r = explain_token(set, tok, len, identity, at, BROKER, test_keys, k);
    assert_non_null(r);
    assert_true(k->calls <= 1);
    assert_string_equal(json_string_value(json_object_get(r, "reason")),
                        fast_reason(set, tok, len, identity, at, k->jwks, NULL));
    return r;
}

static const json_t *check_of(const json_t *r, const char *name)
{
    size_t i;
    const json_t *c;
    json_array_foreach (json_object_get(r, "checks"), i, c)
        if (strcmp(json_string_value(json_object_get(c, "check")), name) == 0)
            return c;
    fail_msg("no check %s", name);
    return NULL;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "(null)";
}

static void assert_contains(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("missing \"%s\" in:\n%s", needle, text);
}

/* The table row of `condition` under the policy header line: cells split at runs of two spaces. */
static void assert_row(const char *text, const char *header, const char *const want[5])
{
    const char *p = strstr(text, header);
    if (p == NULL)
        fail_msg("no \"%s\" in:\n%s", header, text);
    p = strchr(p, '\n');
    while (p != NULL && p[1] == ' ' && p[2] == ' ') {
        const char *line = p + 3, *end = strchr(line, '\n');
        char cells[5][160];
        size_t n = 0;
        while (line < end && n < 5) {
            const char *sep = strstr(line, "  ");
            if (sep == NULL || sep > end)
                sep = end;
            snprintf(cells[n++], sizeof(cells[0]), "%.*s", (int)(sep - line), line);
            line = sep;
            while (line < end && *line == ' ')
                line++;
        }
        if (n == 5 && strcmp(cells[0], want[0]) == 0) {
            for (size_t i = 0; i < 5; i++)
                if (strcmp(cells[i], want[i]) != 0)
                    fail_msg("row %s cell %zu: \"%s\", want \"%s\" in:\n%s", want[0], i, cells[i], want[i], text);
            return;
        }
        p = end;
    }
    fail_msg("no row %s under \"%s\" in:\n%s", want[0], header, text);
}

/* ---- the real tokens verify and match ---- */

static void test_real_tokens_issued(void **state)
{
    (void)state;
    static const struct {
        const char *token, *jwks, *dir, *identity, *policy, *scope;
        int64_t iat;
    } cases[] = {
        {"github-actions/gha_2022-08-05_varunsh-coder_actions-playground.jwt", JWKS2022, DATA "/gha-2022",
         "playground-release", "main-dispatch", "npm:publish", 1659662993},
        {"github-actions/gha_2022-10-20_qoomon_github-actions-access-manager.jwt", JWKS2022, DATA "/gha-2022",
         "access-manager", "main", "tokens:read", 1666298761},
        {"github-actions/gha_2023-01-30_trustification_source-distributed.jwt", JWKS2022, DATA "/gha-2022", "sscs",
         "branch-push", "sign:artifacts", 1675089665},
        {TOK2025, JWKS2025, DATA "/gha-2025", "validate-jwt", "main-push", "secrets:read:build", IAT2025},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        char *tok = test_read_file(cases[i].token, 1, &len), header[256];
        struct policy_set *set = build_set(cases[i].jwks, cases[i].dir, NULL);
        struct keys k = {0};
        json_t *r = explain_and_check(set, tok, len, NULL, cases[i].iat, &k);
        assert_string_equal(jstr(r, "decision"), "issued");
        assert_string_equal(jstr(r, "reason"), "ok");
        assert_string_equal(jstr(r, "identity"), cases[i].identity);
        assert_string_equal(jstr(r, "policy"), cases[i].policy);
        assert_string_equal(jstr(r, "scope"), cases[i].scope);
        static const char *const all[] = {"parse", "issuer", "alg", "signature", "exp", "nbf", "iat", "audience"};
        assert_int_equal(json_array_size(json_object_get(r, "checks")), 8);
        for (size_t c = 0; c < 8; c++) {
            assert_string_equal(jstr(json_array_get(json_object_get(r, "checks"), c), "check"), all[c]);
            assert_true(json_is_true(json_object_get(check_of(r, all[c]), "result")));
        }
        char *text = explain_render_text(r);
        assert_non_null(text);
        assert_contains(text, "decision: ISSUED  identity ");
        snprintf(header, sizeof(header), "identity %s / policy %s: MATCH\n", cases[i].identity, cases[i].policy);
        assert_contains(text, header);
        assert_contains(text, "checks: parse ok · issuer ok (github-actions) · alg ok · signature ok");
        free(text);
        json_decref(r);
        jwks_free(k.jwks);
        policy_set_unref(set);
        free(tok);
    }
}

/* The whole text of one issued decision, so a change of layout is a conscious one. */
static void test_issued_text_exact(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, "validate-jwt", IAT2025, &k);
    char *text = explain_render_text(r);
    assert_string_equal(
        text,
        "decision: ISSUED  identity validate-jwt  policy main-push  scope secrets:read:build  audience "
        "https://secrets.example.com  ttl 10m  at 2025-03-29T11:03:47Z\n"
        "token: iss https://token.actions.githubusercontent.com  sub repo:rgl/github-actions-validate-jwt:ref:refs/"
        "heads/main  aud https://example.com  kid 38826b17…  alg RS256\n"
        "checks: parse ok · issuer ok (github-actions) · alg ok · signature ok\n"
        "        exp ok (at 2025-03-29T11:03:47Z, exp 2025-03-29T17:03:47Z) · nbf ok · iat ok · audience ok\n"
        "identity validate-jwt / policy main-push: MATCH\n"
        "  condition                   op        expected                                                    actual    "
        "                                                  result\n"
        "  audience                    contains  \"https://example.com\"                                       "
        "\"https://example.com\"                                       ok\n"
        "  subject                     equals    \"repo:rgl/github-actions-validate-jwt:ref:refs/heads/main\"  "
        "\"repo:rgl/github-actions-validate-jwt:ref:refs/heads/main\"  ok\n"
        "  claims.repository_id        equals    \"957014466\"                                                 "
        "\"957014466\"                                                 ok\n"
        "  claims.repository_owner_id  equals    \"43356\"                                                     "
        "\"43356\"                                                     ok\n"
        "  claims.event_name           in        [\"push\",\"workflow_dispatch\"]                                "
        "\"push\"                                                      ok\n"
        "  claims.runner_environment   equals    \"github-hosted\"                                             "
        "\"github-hosted\"                                             ok\n");
    assert_int_equal(json_integer_value(json_object_get(r, "ttl")), 600);
    assert_string_equal(jstr(r, "audience"), "https://secrets.example.com");
    free(text);
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

/* ---- denials ---- */

static void test_wrong_subject(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, "wrong-branch", IAT2025, &k);
    assert_string_equal(jstr(r, "decision"), "denied");
    assert_string_equal(jstr(r, "reason"), "no_matching_policy");
    assert_string_equal(jstr(r, "identity"), "wrong-branch");
    assert_true(json_is_null(json_object_get(r, "policy")));
    const json_t *p = json_array_get(json_object_get(r, "policies"), 0);
    assert_int_equal(json_array_size(json_object_get(r, "policies")), 1);
    assert_string_equal(jstr(p, "result"), "no_match");
    assert_string_equal(jstr(p, "first_failed"), "subject");
    const json_t *c = json_array_get(json_object_get(p, "conditions"), 1);
    assert_string_equal(jstr(c, "expected"), "repo:rgl/github-actions-validate-jwt:ref:refs/heads/release");
    assert_string_equal(jstr(c, "actual"), "repo:rgl/github-actions-validate-jwt:ref:refs/heads/main");
    assert_true(json_is_false(json_object_get(c, "result")));
    char *text = explain_render_text(r);
    assert_contains(text, "decision: DENIED (no_matching_policy)  at 2025-03-29T11:03:47Z\n");
    assert_contains(text, "hint: see the first failed condition of each trust policy below\n");
    assert_contains(text, "identity wrong-branch / policy release-push: NO MATCH (first failed: subject)\n");
    assert_row(text, "policy release-push:",
               (const char *const[]){"subject", "equals", "\"repo:rgl/github-actions-validate-jwt:ref:refs/heads/release\"",
                                     "\"repo:rgl/github-actions-validate-jwt:ref:refs/heads/main\"", "FAIL"});
    assert_row(text, "policy release-push:",
               (const char *const[]){"claims.repository_id", "equals", "\"957014466\"", "\"957014466\"", "ok"});
    free(text);
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_missing_claim(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, "missing-claim", IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "no_matching_policy");
    const json_t *p = json_array_get(json_object_get(r, "policies"), 0);
    assert_string_equal(jstr(p, "first_failed"), "claims.environment");
    const json_t *c = json_array_get(json_object_get(p, "conditions"), 3);
    assert_string_equal(jstr(c, "condition"), "claims.environment");
    assert_true(json_is_null(json_object_get(c, "actual")));
    char *text = explain_render_text(r);
    assert_contains(text, "identity missing-claim / policy production: NO MATCH (first failed: claims.environment)\n");
    assert_row(text, "policy production:",
               (const char *const[]){"claims.environment", "equals", "\"production\"", "(missing)", "FAIL"});
    assert_row(text, "policy production:",
               (const char *const[]){"audience", "contains", "\"https://example.com\"", "\"https://example.com\"", "ok"});
    free(text);
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_expired(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, "validate-jwt", EXP2025 + 3600, &k);
    assert_string_equal(jstr(r, "decision"), "denied");
    assert_string_equal(jstr(r, "reason"), "expired");
    assert_string_equal(jstr(r, "policy_reason"), "ok"); /* the policy would match: only the time failed */
    assert_string_equal(jstr(r, "identity"), "validate-jwt");
    assert_string_equal(jstr(r, "policy"), "main-push");
    assert_true(json_is_null(json_object_get(r, "scope")));
    const json_t *c = check_of(r, "exp");
    assert_true(json_is_false(json_object_get(c, "result")));
    assert_int_equal(json_integer_value(json_object_get(c, "actual")), EXP2025);
    assert_string_equal(jstr(c, "expected"), "after 2025-03-29T18:02:47Z");
    assert_true(json_is_true(json_object_get(check_of(r, "signature"), "result")));
    assert_true(json_is_true(json_object_get(check_of(r, "nbf"), "result")));
    assert_string_equal(jstr(json_array_get(json_object_get(r, "policies"), 0), "result"), "match");
    char *text = explain_render_text(r);
    assert_contains(text, "decision: DENIED (expired)  at 2025-03-29T18:03:47Z\n");
    assert_contains(text, "exp FAIL (at 2025-03-29T18:03:47Z, exp 2025-03-29T17:03:47Z: expired 1h before, leeway 60s)");
    assert_contains(text, "identity validate-jwt / policy main-push: MATCH (but denied: expired)\n");
    free(text);
    json_decref(r);
    /* within the leeway it is still valid */
    k.calls = 0;
    r = explain_and_check(set, tok, len, "validate-jwt", EXP2025 + 59, &k);
    assert_string_equal(jstr(r, "reason"), "ok");
    json_decref(r);
    /* before nbf - leeway: not yet valid, the iat check fails too */
    k.calls = 0;
    r = explain_and_check(set, tok, len, "validate-jwt", 1743245927 - 61, &k);
    assert_string_equal(jstr(r, "reason"), "not_yet_valid");
    assert_true(json_is_false(json_object_get(check_of(r, "nbf"), "result")));
    assert_string_equal(jstr(check_of(r, "nbf"), "detail"),
                        "at 2025-03-29T10:57:46Z, nbf 2025-03-29T10:58:47Z: 1m1s in the future, leeway 60s");
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_wrong_audience(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, "wrong-audience", IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "wrong_audience");
    const json_t *c = check_of(r, "audience");
    assert_true(json_is_false(json_object_get(c, "result")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "expected"), 0)), BROKER);
    assert_string_equal(jstr(c, "actual"), "https://example.com");
    char *text = explain_render_text(r);
    assert_contains(text, "decision: DENIED (wrong_audience)");
    assert_contains(text, "audience FAIL (the token's aud contains no audience a listed trust policy requires)");
    assert_contains(text, "identity wrong-audience / policy main-push: NO MATCH (first failed: audience)\n");
    assert_row(text, "policy main-push: NO MATCH",
               (const char *const[]){"audience", "contains", "\"" BROKER "\"", "\"https://example.com\"", "FAIL"});
    free(text);
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_untrusted_issuer(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len), err[256], *jwks = fixture_path(JWKS2022);
    json_t *issuers = json_pack("[{s:s, s:s, s:s}]", "issuer", "gitlab", "url", "https://gitlab.com", "jwks_file", jwks);
    struct policy_set *set = NULL;
    assert_int_equal(policy_set_build(issuers, NULL, &set, err, sizeof(err)), BROKER_OK);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, NULL, IAT2025, &k);
    assert_int_equal(k.calls, 0); /* keys of an unregistered issuer are never looked up */
    assert_string_equal(jstr(r, "reason"), "untrusted_issuer");
    assert_true(json_is_null(json_object_get(r, "issuer")));
    const json_t *c = check_of(r, "issuer");
    assert_true(json_is_false(json_object_get(c, "result")));
    assert_string_equal(jstr(c, "actual"), GH);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "expected"), 0)), "https://gitlab.com");
    assert_true(json_is_true(json_object_get(check_of(r, "exp"), "result"))); /* still judged */
    assert_int_equal(json_array_size(json_object_get(r, "policies")), 0);
    char *text = explain_render_text(r);
    assert_contains(text, "decision: DENIED (untrusted_issuer)");
    assert_contains(text, "hint: register an issuer document whose url is exactly the token's iss\n");
    assert_contains(text, "issuer FAIL (no issuer document has this url;");
    free(text);
    json_decref(r);
    json_decref(issuers);
    policy_set_unref(set);
    free(jwks);
    free(tok);
}

static void test_bad_signature(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    char *sig = strrchr(tok, '.') + 1;
    sig[20] = sig[20] == 'A' ? 'B' : 'A'; /* one byte of the signature */
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, NULL, IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "bad_signature");
    const json_t *c = check_of(r, "signature");
    assert_true(json_is_false(json_object_get(c, "result")));
    assert_string_equal(jstr(c, "actual"), "38826b17-6a30-5f9b-b169-8beb8202f723");
    assert_true(json_is_true(json_object_get(check_of(r, "alg"), "result")));
    /* the claims are still evaluated, so the admin sees the policy would have matched */
    assert_string_equal(jstr(r, "policy_reason"), "ok");
    char *text = explain_render_text(r);
    assert_contains(text, "decision: DENIED (bad_signature)");
    assert_contains(text, "signature FAIL (does not verify with key 38826b17-6a30-5f9b-b169-8beb8202f723: the token "
                          "was altered or signed by another key)");
    assert_contains(text, "identity validate-jwt / policy main-push: MATCH (but denied: bad_signature)\n");
    free(text);
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_unknown_kid_and_no_keys(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2022, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, NULL, IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "unknown_kid");
    const json_t *c = check_of(r, "signature");
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "expected"), 0)),
                        "78167F727DEC5D801DD1C8784C704A1C880EC0E1");
    assert_string_equal(jstr(c, "detail"), "no key with this kid in the issuer's key set; the set has: "
                                           "78167F727DEC5D801DD1C8784C704A1C880EC0E1, 52F197C481DE70112C441B4A9B37B53C7FCF0DB5");
    json_decref(r);
    r = explain_token(set, tok, len, NULL, IAT2025, BROKER, NULL, NULL);
    assert_string_equal(jstr(r, "reason"), "issuer_keys_unavailable");
    assert_string_equal(jstr(r, "policy_reason"), "ok");
    json_decref(r);
    /* request strings that are not UTF-8 are refused, not echoed */
    r = explain_token(set, tok, len, "bad\xff", IAT2025, BROKER, test_keys, &k);
    assert_string_equal(jstr(r, "reason"), "bad_request");
    assert_true(json_is_null(json_object_get(r, "identity")));
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_malformed(void **state)
{
    (void)state;
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, "abc.def", 7, NULL, IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "token_malformed");
    assert_null(json_object_get(r, "token"));
    assert_int_equal(json_array_size(json_object_get(r, "checks")), 1);
    char *text = explain_render_text(r);
    assert_contains(text, "checks: parse FAIL (not a compact JWS");
    free(text);
    json_decref(r);
    policy_set_unref(set);
}

/* Without an identity every trust policy of the issuer is listed, matches first, including those the
 * subject index never considers (a different subject). */
static void test_all_policies_listed(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, NULL, IAT2025, &k);
    json_t *ps = json_object_get(r, "policies");
    assert_int_equal(json_array_size(ps), 4);
    assert_string_equal(jstr(json_array_get(ps, 0), "identity"), "validate-jwt");
    assert_string_equal(jstr(json_array_get(ps, 0), "result"), "match");
    assert_string_equal(jstr(json_array_get(ps, 3), "identity"), "wrong-branch");
    assert_string_equal(jstr(json_array_get(ps, 3), "first_failed"), "subject");
    assert_null(json_object_get(r, "policies_omitted"));
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static json_t *identity_doc(const char *name, const char *subject_op, const char *subject, json_t *extra)
{
    json_t *d = json_pack("{s:s, s:[s], s:[s], s:[{s:s, s:s, s:s, s:{s:s}, s:{s:{s:s}}}]}", "identity", name,
                          "scopes", "x", "audiences", "https://aud.example.com", "trust", "name", "p", "issuer",
                          "github-actions", "audience", "https://example.com", "subject", subject_op, subject, "claims",
                          "repository_id", "equals", "957014466");
    if (extra != NULL) {
        json_object_update(json_array_get(json_object_get(d, "trust"), 0), extra);
        json_decref(extra);
    }
    return d;
}

static void test_policy_cap(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    /* glob subjects are all considered; equals subjects of other repositories never are */
    static const char *const ops[] = {"glob", "equals"};
    for (size_t o = 0; o < 2; o++) {
        json_t *ids = json_array();
        char name[32], subj[64];
        for (int i = 0; i < EXPLAIN_MAX_POLICIES + 5; i++) {
            snprintf(name, sizeof(name), "id%03d", i);
            snprintf(subj, sizeof(subj), "repo:rgl/other-%d:*", i);
            json_array_append_new(ids, identity_doc(name, ops[o], subj, NULL));
        }
        struct policy_set *set = build_set(JWKS2025, NULL, ids);
        struct keys k = {0};
        json_t *r = explain_and_check(set, tok, len, NULL, IAT2025, &k);
        assert_int_equal(json_array_size(json_object_get(r, "policies")), EXPLAIN_MAX_POLICIES);
        assert_int_equal(json_integer_value(json_object_get(r, "policies_omitted")), 5);
        char *text = explain_render_text(r);
        assert_contains(text, "(5 more trust policies not shown; name the identity to see them)\n");
        free(text);
        json_decref(r);
        jwks_free(k.jwks);
        policy_set_unref(set);
    }
    free(tok);
}

static void test_ambiguous_single_use_cidrs(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    json_t *ids = json_array();
    json_array_append_new(ids, identity_doc("a", "glob", "repo:rgl/*", NULL));
    json_array_append_new(ids, identity_doc("b", "equals", "repo:rgl/github-actions-validate-jwt:ref:refs/heads/main",
                                            json_pack("{s:b}", "single_use", 1)));
    json_array_append_new(ids, identity_doc("c", "glob", "repo:rgl/*", json_pack("{s:[s]}", "source_cidrs", "10.0.0.0/8")));
    struct policy_set *set = build_set(JWKS2025, NULL, ids);
    struct keys k = {0};
    json_t *r = explain_and_check(set, tok, len, NULL, IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "ambiguous_identity");
    char *text = explain_render_text(r);
    assert_contains(text, "identity a / policy p: MATCH (but denied: ambiguous_identity)\n");
    assert_contains(text, "identity c / policy p: NO MATCH (first failed: source_cidrs)\n");
    assert_row(text, "identity c / policy p:",
               (const char *const[]){"source_cidrs", "cidr", "[\"10.0.0.0/8\"]", "(missing)", "FAIL"});
    free(text);
    json_decref(r);

    /* naming b: issued, and the explanation says replay state is not checked offline */
    k.calls = 0;
    r = explain_and_check(set, tok, len, "b", IAT2025, &k);
    assert_string_equal(jstr(r, "decision"), "issued");
    assert_true(json_is_true(json_object_get(r, "single_use")));
    assert_non_null(strstr(jstr(r, "note"), "single_use"));
    json_decref(r);

    /* c from inside 10/8 matches; the peer is passed through explain_run */
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
    k.calls = 0;
    struct explain_request rq = {.token = tok, .token_len = len, .identity = "c", .peer = (struct sockaddr *)&sin,
                                 .at = IAT2025, .broker_issuer = BROKER, .keys = test_keys, .keys_ctx = &k};
    r = explain_run(set, &rq);
    assert_string_equal(jstr(r, "reason"), "ok");
    assert_string_equal(fast_reason(set, tok, len, "c", IAT2025, k.jwks, (struct sockaddr *)&sin), "ok");
    json_decref(r);
    /* unknown identity */
    k.calls = 0;
    r = explain_and_check(set, tok, len, "nobody", IAT2025, &k);
    assert_string_equal(jstr(r, "reason"), "unknown_identity");
    assert_string_equal(jstr(r, "note"), "no identity is named \"nobody\"");
    json_decref(r);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static json_t *payload_of(const char *tok, size_t len)
{
    struct jwt t;
    assert_int_equal(jwt_parse((const uint8_t *)tok, len, &t), BROKER_OK);
    json_t *c = json_deep_copy(t.claims);
    jwt_release(&t);
    return c;
}

static void test_claims_mode(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len);
    json_t *claims = payload_of(tok, len);
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    json_t *r = explain_claims(set, "github-actions", claims, NULL, IAT2025, BROKER);
    assert_string_equal(jstr(r, "decision"), "issued");
    assert_string_equal(jstr(r, "mode"), "claims");
    assert_string_equal(jstr(r, "identity"), "validate-jwt");
    assert_int_equal(json_array_size(json_object_get(r, "checks")), 5); /* issuer, exp, nbf, iat, audience */
    char *text = explain_render_text(r);
    assert_contains(text, "claims: iss https://token.actions.githubusercontent.com  sub repo:rgl/");
    free(text);
    json_decref(r);

    /* no exp is fine in a claims test; a wrong iss is not */
    json_object_del(claims, "exp");
    json_object_set_new(claims, "iss", json_string("https://gitlab.com"));
    r = explain_claims(set, "github-actions", claims, NULL, IAT2025, BROKER);
    assert_string_equal(jstr(r, "reason"), "untrusted_issuer");
    assert_true(json_is_true(json_object_get(check_of(r, "exp"), "result")));
    json_decref(r);
    r = explain_claims(set, "nope", claims, NULL, IAT2025, BROKER);
    assert_string_equal(jstr(r, "reason"), "untrusted_issuer");
    json_decref(r);

    /* token-controlled text cannot drive the terminal */
    json_object_del(claims, "iss");
    json_object_set_new(claims, "sub", json_string("repo:\x1b[31mevil\xe2\x80\xae"));
    r = explain_claims(set, "github-actions", claims, NULL, IAT2025, BROKER);
    text = explain_render_text(r);
    assert_null(strchr(text, '\x1b'));
    assert_null(strstr(text, "\xe2\x80\xae"));
    assert_contains(text, "sub repo:\\x1b[31mevil\\u202e");
    free(text);
    json_decref(r);
    json_decref(claims);
    policy_set_unref(set);
    free(tok);
}

static void test_api(void **state)
{
    (void)state;
    size_t len;
    char *tok = token2025(&len), err[256];
    struct policy_set *set = build_set(JWKS2025, DATA "/gha-2025", NULL);
    struct keys k = {0};
    int status = 0;
    json_t *body = json_pack("{s:s, s:s, s:s}", "token", tok, "identity", "wrong-branch", "at", "2025-03-29T11:03:47Z");
    json_t *r = explain_api(set, body, 0, BROKER, test_keys, &k, &status, err, sizeof(err));
    assert_int_equal(status, 200);
    assert_string_equal(jstr(r, "reason"), "no_matching_policy");
    assert_int_equal(json_integer_value(json_object_get(r, "at")), IAT2025);
    json_decref(r);
    json_decref(body);

    static const char *const bad[] = {
        "[]", "{}", "{\"token\": 1}", "{\"token\": \"a.b.c\", \"issuer\": \"x\"}", "{\"tokn\": \"a\"}",
        "{\"issuer\": \"github-actions\", \"claims\": \"x\"}", "{\"issuer\": \"github-actions\"}",
        "{\"token\": \"a.b.c\", \"at\": \"yesterday\"}", "{\"token\": \"a.b.c\", \"identity\": \"\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        err[0] = 0;
        r = explain_api(set, body, IAT2025, BROKER, test_keys, &k, &status, err, sizeof(err));
        if (r != NULL || status != 400 || err[0] == 0)
            fail_msg("body %s accepted", bad[i]);
        json_decref(body);
    }
    body = json_pack("{s:s, s:{s:s}, s:i}", "issuer", "github-actions", "claims", "sub", "x", "at", IAT2025);
    r = explain_api(set, body, 0, BROKER, NULL, NULL, &status, err, sizeof(err));
    assert_int_equal(status, 200);
    assert_string_equal(jstr(r, "mode"), "claims");
    json_decref(r);
    json_decref(body);
    jwks_free(k.jwks);
    policy_set_unref(set);
    free(tok);
}

static void test_parse_time(void **state)
{
    (void)state;
    static const struct { const char *s; int64_t want; } good[] = {
        {"2022-08-05T01:30:00Z", 1659663000},      {"1659663000", 1659663000},
        {"2022-08-05T03:30:00+02:00", 1659663000}, {"2022-08-04T23:00:00-02:30", 1659663000},
        {"2022-08-05t01:30:00.123456z", 1659663000}, {"2024-02-29T00:00:00Z", 1709164800},
        {"1970-01-01T00:00:00Z", 0},               {"0", 0},
    };
    static const char *const bad[] = {"", "2023-02-29T00:00:00Z", "2022-08-05T01:30:00", "2022-13-01T00:00:00Z",
                                      "2022-08-05T24:00:00Z", "12a", "2022-08-05T01:30:00.Z", "-5",
                                      "2022-08-05T01:30:00+2:00", "2022-08-05T01:30:00Zjunk", "1234567890123"};
    int64_t t;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(explain_parse_time(good[i].s, strlen(good[i].s), &t), BROKER_OK);
        assert_int_equal(t, good[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (explain_parse_time(bad[i], strlen(bad[i]), &t) == BROKER_OK)
            fail_msg("accepted %s", bad[i]);
    char buf[32];
    explain_format_time(1659663000, buf, sizeof(buf));
    assert_string_equal(buf, "2022-08-05T01:30:00Z");
    explain_format_duration(5400, buf, sizeof(buf));
    assert_string_equal(buf, "1h30m");
    explain_format_duration(0, buf, sizeof(buf));
    assert_string_equal(buf, "0s");
}

/* ---- the command ---- */

static int run_cli(char **argv, int argc, char **out, char **err)
{
    size_t ol, el;
    FILE *o = open_memstream(out, &ol), *e = open_memstream(err, &el);
    int rc = cli_policy_test_io(argc, argv, o, e);
    fclose(o);
    fclose(e);
    return rc;
}

static void test_cli(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_explain_XXXXXX", issuer[PATH_MAX], tokfile[PATH_MAX], *out, *err;
    char *jwks = fixture_path(JWKS2025), *tokpath = fixture_path(TOK2025);
    assert_non_null(mkdtemp(dir));
    snprintf(issuer, sizeof(issuer), "%s/gh.json", dir);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "issuer", "github-actions", "url", GH, "jwks_file", jwks);
    assert_int_equal(json_dump_file(doc, issuer, 0), 0);
    json_decref(doc);

    char *a1[] = {"--token", tokpath, "--at", "2025-03-29T11:03:47Z", issuer, DATA "/gha-2025"};
    assert_int_equal(run_cli(a1, 6, &out, &err), 0);
    assert_contains(out, "decision: ISSUED  identity validate-jwt  policy main-push");
    free(out);
    free(err);

    char *a2[] = {"--json", "--identity", "wrong-branch", "--at", "1743246227", "--token", tokpath, issuer,
                  DATA "/gha-2025"};
    assert_int_equal(run_cli(a2, 9, &out, &err), 1);
    json_t *r = json_loads(out, 0, NULL);
    assert_non_null(r);
    assert_string_equal(jstr(r, "reason"), "no_matching_policy");
    json_decref(r);
    free(out);
    free(err);

    /* the default audience comes from --issuer-url: policies without "audience" use it */
    snprintf(tokfile, sizeof(tokfile), "%s/id.json", dir);
    doc = identity_doc("default-aud", "glob", "repo:rgl/*", NULL);
    json_object_del(json_array_get(json_object_get(doc, "trust"), 0), "audience");
    assert_int_equal(json_dump_file(doc, tokfile, 0), 0);
    json_decref(doc);
    char *a3[] = {"--token", tokpath, "--at", "1743246227", "--issuer-url", "https://example.com/", issuer, tokfile};
    assert_int_equal(run_cli(a3, 8, &out, &err), 0);
    free(out);
    free(err);
    char *a4[] = {"--token", tokpath, "--at", "1743246227", "--issuer-url", BROKER, issuer, tokfile};
    assert_int_equal(run_cli(a4, 8, &out, &err), 1);
    assert_contains(out, "decision: DENIED (wrong_audience)");
    free(out);
    free(err);

    char *a5[] = {"--token", tokpath, "--identity", "bad\xff", issuer, DATA "/gha-2025"};
    assert_int_equal(run_cli(a5, 6, &out, &err), 2);
    assert_contains(out, "decision: DENIED (bad_request)");
    free(out);
    free(err);

    /* usage and I/O errors: 2 */
    char *b1[] = {"--at", "1743246227", issuer};
    char *b2[] = {"--token", tokpath, "--at", "noon", issuer};
    char *b3[] = {"--token", "/nonexistent/token", issuer};
    char *b4[] = {"--token", tokpath, "--bogus", issuer};
    char *b5[] = {"--token", tokpath, "/nonexistent/dir"};
    char **bad[] = {b1, b2, b3, b4, b5};
    int nbad[] = {3, 5, 3, 4, 3};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(run_cli(bad[i], nbad[i], &out, &err), 2);
        assert_true(err[0] != 0);
        free(out);
        free(err);
    }
    unlink(issuer);
    unlink(tokfile);
    rmdir(dir);
    free(jwks);
    free(tokpath);
}

/* The checked-in issuer documents reach the fixtures relative to themselves (default layout only). */
static void test_data_issuers_resolve(void **state)
{
    (void)state;
    if (getenv("BROKER_FIXTURES") != NULL)
        skip();
    struct docset d;
    assert_int_equal(docset_init(&d), 0);
    assert_int_equal(docset_load_path(&d, DATA "/issuers", false, stderr), 0);
    assert_int_equal(json_array_size(d.issuers), 2);
    const char *f = json_string_value(json_object_get(json_array_get(d.issuers, 0), "jwks_file"));
    assert_true(f != NULL && f[0] == '/');
    assert_int_equal(access(f, R_OK), 0);
    docset_clear(&d);
}

static int teardown(void **state)
{
    (void)state;
    verify_thread_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_real_tokens_issued, teardown),
        cmocka_unit_test_teardown(test_issued_text_exact, teardown),
        cmocka_unit_test_teardown(test_wrong_subject, teardown),
        cmocka_unit_test_teardown(test_missing_claim, teardown),
        cmocka_unit_test_teardown(test_expired, teardown),
        cmocka_unit_test_teardown(test_wrong_audience, teardown),
        cmocka_unit_test_teardown(test_untrusted_issuer, teardown),
        cmocka_unit_test_teardown(test_bad_signature, teardown),
        cmocka_unit_test_teardown(test_unknown_kid_and_no_keys, teardown),
        cmocka_unit_test_teardown(test_malformed, teardown),
        cmocka_unit_test_teardown(test_all_policies_listed, teardown),
        cmocka_unit_test_teardown(test_policy_cap, teardown),
        cmocka_unit_test_teardown(test_ambiguous_single_use_cidrs, teardown),
        cmocka_unit_test_teardown(test_claims_mode, teardown),
        cmocka_unit_test_teardown(test_api, teardown),
        cmocka_unit_test_teardown(test_parse_time, teardown),
        cmocka_unit_test_teardown(test_cli, teardown),
        cmocka_unit_test_teardown(test_data_issuers_resolve, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
