/* Trust policies: the decision table in policy_cases.json, plus the pure helpers (glob, cidr,
 * durations, JSON Pointer), the index, the allocation-free fast path and the example documents. */
#include "test_util.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
#include <netinet/in.h>
#include <time.h>
#include "cidr.h"
#include "glob.h"
#include "jwt.h"
#include "policy.h"

static const char *cases_path(void)
{
    const char *p = getenv("BROKER_POLICY_CASES");
    return p ? p : "tests/unit/policy_cases.json";
}

static json_t *load_json_file(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        fprintf(stderr, "%s:%d: %s\n", path, e.line, e.text);
    return j;
}

static json_t *json_parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!j)
        fprintf(stderr, "bad test JSON: %s: %s\n", e.text, text);
    assert_non_null(j);
    return j;
}

static struct policy_set *build_or_fail(const json_t *issuers, const json_t *identities)
{
    struct policy_set *s = NULL;
    char err[512];
    enum broker_err rc = policy_set_build(issuers, identities, &s, err, sizeof(err));
    if (rc != BROKER_OK)
        fprintf(stderr, "policy_set_build: %s (%s)\n", err, broker_strerror(rc));
    assert_int_equal(rc, BROKER_OK);
    assert_non_null(s);
    return s;
}

/* ---- the decision table ---- */

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "case \"%s\": ", name);              \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
            failures++;                                          \
        }                                                        \
    } while (0)

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static bool make_peer(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

static const char *first_false_label(const json_t *conds)
{
    size_t i;
    const json_t *c;
    json_array_foreach (conds, i, c)
        if (json_is_false(json_object_get(c, "result")))
            return json_string_value(json_object_get(c, "condition"));
    return NULL;
}

/* Every entry has the documented shape, and first_failed/result agree with the conditions. */
static void check_explain_shape(const char *name, const json_t *explain)
{
    size_t i, k;
    const json_t *e, *c;
    json_array_foreach (explain, i, e) {
        CHECK(json_object_size(e) == 5, "explain[%zu] has %zu keys", i, json_object_size(e));
        CHECK(json_is_string(json_object_get(e, "identity")) && json_is_string(json_object_get(e, "policy")),
              "explain[%zu] identity/policy", i);
        const json_t *conds = json_object_get(e, "conditions");
        CHECK(json_is_array(conds) && json_array_size(conds) >= 2, "explain[%zu] conditions", i);
        const char *first = first_false_label(conds);
        const json_t *ff = json_object_get(e, "first_failed");
        const char *result = str_or(e, "result", "");
        if (first) {
            CHECK(json_is_string(ff) && strcmp(json_string_value(ff), first) == 0, "explain[%zu] first_failed", i);
            CHECK(strcmp(result, "no_match") == 0, "explain[%zu] result should be no_match", i);
        } else {
            CHECK(json_is_null(ff), "explain[%zu] first_failed should be null", i);
            CHECK(strcmp(result, "match") == 0, "explain[%zu] result should be match", i);
        }
        json_array_foreach (conds, k, c) {
            CHECK(json_object_size(c) == 5 && json_is_string(json_object_get(c, "condition")) &&
                      json_is_string(json_object_get(c, "op")) && json_object_get(c, "expected") &&
                      json_object_get(c, "actual") && json_is_boolean(json_object_get(c, "result")),
                  "explain[%zu].conditions[%zu] shape", i, k);
        }
        CHECK(strcmp(str_or(json_array_get(conds, 0), "condition", ""), "audience") == 0,
              "explain[%zu] audience is checked first", i);
    }
}

static void run_case(const json_t *root, const json_t *c, struct policy_set *set)
{
    const char *name = str_or(c, "name", "?");
    const json_t *expect = json_object_get(c, "expect");
    const json_t *req = json_object_get(c, "request");
    const json_t *base = json_object_get(json_object_get(root, "claim_sets"), str_or(c, "claims", ""));
    struct issuer_cfg fake = {0};
    struct sockaddr_storage peer;
    const char *key;
    json_t *v;

    CHECK(base && expect, "claims or expect missing");
    if (!base || !expect)
        return;
    json_t *claims = json_deep_copy(base);
    json_object_foreach ((json_t *)json_object_get(c, "patch"), key, v) {
        if (json_is_null(v))
            json_object_del(claims, key);
        else
            json_object_set_new(claims, key, json_deep_copy(v));
    }
    size_t i;
    json_array_foreach (json_object_get(c, "null_claims"), i, v)
        json_object_set_new(claims, json_string_value(v), json_null());

    struct policy_input in = {
        .issuer = policy_set_issuer_by_name(set, str_or(c, "issuer", "")),
        .claims = claims,
        .identity = str_or(req, "identity", NULL),
        .scope = str_or(req, "scope", NULL),
        .audience = str_or(req, "audience", NULL),
        .default_audience = str_or(c, "default_audience", str_or(root, "default_audience", NULL)),
    };
    if (!in.issuer) {
        fake.name = (char *)str_or(c, "issuer", "");
        in.issuer = &fake;
    }
    if (str_or(req, "peer", NULL)) {
        CHECK(make_peer(str_or(req, "peer", NULL), &peer), "bad peer");
        in.peer = (const struct sockaddr *)&peer;
    }

    struct policy_result fast, slow;
    json_t *explain = json_array();
    enum broker_err rc1 = policy_eval(set, &in, &fast, NULL);
    enum broker_err rc2 = policy_eval(set, &in, &slow, explain);

    CHECK(rc1 == rc2, "fast path %s, explained %s", broker_strerror(rc1), broker_strerror(rc2));
    CHECK(strcmp(broker_strerror(rc1), str_or(expect, "result", "")) == 0, "result %s, expected %s",
          broker_strerror(rc1), str_or(expect, "result", ""));
    CHECK(fast.identity == slow.identity && fast.policy == slow.policy && fast.ttl_s == slow.ttl_s &&
              fast.audience == slow.audience && strcmp(fast.scope, slow.scope) == 0,
          "fast and explained results differ");
    if (rc1 != BROKER_OK && rc1 != BROKER_ERR_INVALID_SCOPE && rc1 != BROKER_ERR_INVALID_TARGET)
        CHECK(fast.identity == NULL && fast.policy == NULL, "a denial carries no identity");
    if (rc1 == BROKER_OK)
        CHECK(fast.identity && fast.policy && fast.audience && fast.ttl_s > 0, "a grant is complete");

    const char *want;
    if ((want = str_or(expect, "identity", NULL)))
        CHECK(fast.identity && strcmp(fast.identity->name, want) == 0, "identity %s, expected %s",
              fast.identity ? fast.identity->name : "(none)", want);
    if ((want = str_or(expect, "policy", NULL)))
        CHECK(fast.policy && strcmp(fast.policy->name, want) == 0, "policy %s, expected %s",
              fast.policy ? fast.policy->name : "(none)", want);
    if ((want = str_or(expect, "scope", NULL)))
        CHECK(strcmp(fast.scope, want) == 0, "scope \"%s\", expected \"%s\"", fast.scope, want);
    if ((want = str_or(expect, "audience", NULL)))
        CHECK(fast.audience && strcmp(fast.audience, want) == 0, "audience %s, expected %s",
              fast.audience ? fast.audience : "(none)", want);
    if (json_object_get(expect, "ttl"))
        CHECK(fast.ttl_s == json_integer_value(json_object_get(expect, "ttl")), "ttl %lld, expected %lld",
              (long long)fast.ttl_s, (long long)json_integer_value(json_object_get(expect, "ttl")));

    check_explain_shape(name, explain);
    const json_t *want_explain = json_object_get(expect, "explain");
    if (want_explain) {
        CHECK(json_array_size(explain) == json_array_size(want_explain), "explain has %zu entries, expected %zu",
              json_array_size(explain), json_array_size(want_explain));
        for (i = 0; i < json_array_size(explain) && i < json_array_size(want_explain); i++) {
            const json_t *got = json_array_get(explain, i), *w = json_array_get(want_explain, i);
            const json_t *ff = json_object_get(got, "first_failed");
            const json_t *wff = json_array_get(w, 2);
            CHECK(strcmp(str_or(got, "identity", ""), json_string_value(json_array_get(w, 0))) == 0 &&
                      strcmp(str_or(got, "policy", ""), json_string_value(json_array_get(w, 1))) == 0,
                  "explain[%zu] is %s/%s, expected %s/%s", i, str_or(got, "identity", ""), str_or(got, "policy", ""),
                  json_string_value(json_array_get(w, 0)), json_string_value(json_array_get(w, 1)));
            CHECK(json_equal(ff, wff), "explain[%zu] first_failed %s, expected %s", i,
                  json_is_string(ff) ? json_string_value(ff) : "null",
                  json_is_string(wff) ? json_string_value(wff) : "null");
        }
    }
    json_decref(explain);
    json_decref(claims);
}

static void test_table_cases(void **state)
{
    (void)state;
    json_t *root = load_json_file(cases_path());
    assert_non_null(root);
    const json_t *docsets = json_object_get(root, "docsets");
    const json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) > 50);

    failures = 0;
    const char *dname;
    const json_t *ds;
    json_object_foreach ((json_t *)docsets, dname, ds) {
        struct policy_set *set = build_or_fail(json_object_get(ds, "issuers"), json_object_get(ds, "identities"));
        size_t i, ran = 0;
        const json_t *c;
        json_array_foreach (cases, i, c) {
            if (strcmp(str_or(c, "docset", ""), dname) == 0) {
                run_case(root, c, set);
                ran++;
            }
        }
        assert_true(ran > 0);
        policy_set_unref(set);
    }
    json_decref(root);
    assert_int_equal(failures, 0);
}

static void test_table_invalid(void **state)
{
    (void)state;
    json_t *root = load_json_file(cases_path());
    assert_non_null(root);
    const json_t *invalid = json_object_get(root, "invalid");
    assert_true(json_array_size(invalid) > 40);
    size_t i;
    const json_t *c;
    failures = 0;
    json_array_foreach (invalid, i, c) {
        const char *name = str_or(c, "name", "?");
        const json_t *issuers = json_object_get(c, "issuers");
        const json_t *identities = json_object_get(c, "identities");
        struct policy_set *s = (struct policy_set *)1;
        char err[512];
        if (!issuers)
            issuers = json_object_get(root, "invalid_default_issuers");
        enum broker_err rc = policy_set_build(issuers, identities, &s, err, sizeof(err));
        CHECK(rc == BROKER_ERR_INVALID_DOCUMENT, "result %s, expected invalid_document", broker_strerror(rc));
        CHECK(s == NULL, "nothing is built on error");
        CHECK(strstr(err, str_or(c, "error", "")) != NULL, "error \"%s\" does not contain \"%s\"", err,
              str_or(c, "error", ""));
        if (rc == BROKER_OK)
            policy_set_unref(s);
    }
    json_decref(root);
    assert_int_equal(failures, 0);
}

/* ---- pure helpers ---- */

static void test_glob(void **state)
{
    (void)state;
    static const struct { const char *pat, *s; bool want; } t[] = {
        {"*", "", true},
        {"*", "anything/at:all", true},
        {"a*", "a", true},
        {"a*", "ba", false},
        {"*a", "bba", true},
        {"*a", "ab", false},
        {"?", "", false},
        {"?", "x", true},
        {"?", "xy", false},
        {"?", "\xc3\xa9", true},          /* one two-byte character */
        {"??", "\xc3\xa9", false},
        {"a?c", "a/c", true},
        {"a?c", "a:c", true},
        {"repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true},
        {"repo:acme/*:ref:refs/heads/main", "repo:acme/a/b:ref:refs/heads/main", true},
        {"repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main2", false},
        {"repo:acme/*", "repo:acme/", true},
        {"repo:acme/*", "repo:acmex/y", false},
        {"*:ref:*", "repo:x:ref:y", true},
        {"a*b*c", "aXbYc", true},
        {"a*b*c", "aXbY", false},
        {"a*b*c", "abcbc", true},
        {"[ab]", "a", false},             /* brackets are literal */
        {"[ab]", "[ab]", true},
        {"a\\*", "a\\xyz", true},         /* so is backslash; * still a wildcard */
        {"exact", "exact", true},
        {"exact", "exac", false},
        {"exact", "exactly", false},
        {"**", "", true},
        {"*?*", "", false},
        {"*?*", "z", true},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        bool got = glob_match(t[i].pat, strlen(t[i].pat), t[i].s, strlen(t[i].s));
        if (got != t[i].want)
            fprintf(stderr, "glob \"%s\" vs \"%s\": got %d\n", t[i].pat, t[i].s, got);
        assert_int_equal(got, t[i].want);
    }
    /* embedded NUL is just a byte */
    assert_true(glob_match("a*", 2, "a\0b", 3));
    assert_false(glob_match("ab", 2, "a\0b", 3));

    /* pathological pattern: bounded by len(pat) * len(s), no exponential backtracking */
    char pat[200], s[20001];
    for (size_t i = 0; i < sizeof(pat) - 2; i += 2) {
        pat[i] = '*';
        pat[i + 1] = 'a';
    }
    pat[sizeof(pat) - 2] = 'b';
    memset(s, 'a', sizeof(s) - 1);
    clock_t t0 = clock();
    assert_false(glob_match(pat, sizeof(pat) - 1, s, sizeof(s) - 1));
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 2.0);
}

static void test_cidr(void **state)
{
    (void)state;
    struct cidr c;
    struct sockaddr_storage ss;
    char text[CIDR_TEXT_MAX];

    assert_int_equal(cidr_parse("10.0.0.0/8", 10, &c), BROKER_OK);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_true(cidr_format(&c, text, sizeof(text)));
    assert_string_equal(text, "10.0.0.0/8");
    assert_true(make_peer("10.255.0.1", &ss));
    assert_true(cidr_contains(&c, (struct sockaddr *)&ss));
    assert_true(make_peer("11.0.0.1", &ss));
    assert_false(cidr_contains(&c, (struct sockaddr *)&ss));
    assert_true(make_peer("::ffff:10.0.0.1", &ss));
    assert_true(cidr_contains(&c, (struct sockaddr *)&ss));
    assert_true(cidr_format_peer((struct sockaddr *)&ss, text, sizeof(text)));
    assert_string_equal(text, "10.0.0.1");
    assert_false(cidr_contains(&c, NULL));

    assert_int_equal(cidr_parse("0.0.0.0/0", 9, &c), BROKER_OK);
    assert_true(make_peer("203.0.113.9", &ss));
    assert_true(cidr_contains(&c, (struct sockaddr *)&ss));
    assert_true(make_peer("2001:db8::1", &ss));
    assert_false(cidr_contains(&c, (struct sockaddr *)&ss)); /* families never mix */

    assert_int_equal(cidr_parse("2001:db8::/33", 13, &c), BROKER_OK);
    assert_int_equal(c.family, AF_INET6);
    assert_true(make_peer("2001:db8:7fff::1", &ss));
    assert_true(cidr_contains(&c, (struct sockaddr *)&ss));
    assert_true(make_peer("2001:db8:8000::1", &ss));
    assert_false(cidr_contains(&c, (struct sockaddr *)&ss));

    assert_int_equal(cidr_parse("192.168.1.7", 11, &c), BROKER_OK);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("::1", 3, &c), BROKER_OK);
    assert_int_equal(c.prefix, 128);

    static const char *const bad[] = {"10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1",
                                      "10.0.0/8", "::1/129", "fe80::1%eth0", "", "/8", "10.0.0.0/8 ", "host"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cidr_parse(bad[i], strlen(bad[i]), &c), BROKER_ERR_INVALID_DOCUMENT);
    /* length-bounded: the bytes after len are not read */
    assert_int_equal(cidr_parse("10.0.0.0/8xyz", 10, &c), BROKER_OK);
}

static void test_duration(void **state)
{
    (void)state;
    static const struct { const char *s; int64_t want; } ok[] = {
        {"90s", 90}, {"15m", 900}, {"1h", 3600}, {"1h30m", 5400}, {"2m30s", 150}, {"1h0m1s", 3601}, {"0s", 0},
    };
    static const char *const bad[] = {"", "90", "m", "1x", "1d", "30m1h", "1h1h", "-1s", "1.5h", " 1s", "1s ",
                                      "1 h", "9999999999s", "1hs"};
    int64_t v;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(policy_parse_duration(ok[i].s, &v), BROKER_OK);
        assert_int_equal(v, ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(policy_parse_duration(bad[i], &v), BROKER_ERR_INVALID_DOCUMENT);
    assert_int_equal(policy_parse_duration(NULL, &v), BROKER_ERR_INVALID_DOCUMENT);
}

static void test_claim_get(void **state)
{
    (void)state;
    json_t *c = json_parse("{\"a\": {\"b\": [10, {\"c\": \"deep\"}]}, \"x/y\": {\"m~n\": 1}, \"\": {\"\": \"empty\"},"
                           " \"/lit\": \"plain-name-with-slash\", \"plain\": true}");
    assert_int_equal(json_integer_value(policy_claim_get(c, "/a/b/0")), 10);
    assert_string_equal(json_string_value(policy_claim_get(c, "/a/b/1/c")), "deep");
    assert_int_equal(json_integer_value(policy_claim_get(c, "/x~1y/m~0n")), 1);
    assert_string_equal(json_string_value(policy_claim_get(c, "//")), "empty");
    assert_true(json_is_true(policy_claim_get(c, "plain")));
    assert_true(json_is_object(policy_claim_get(c, "/a")));
    assert_null(policy_claim_get(c, "/a/b/2"));
    assert_null(policy_claim_get(c, "/a/b/01"));   /* no leading zeros */
    assert_null(policy_claim_get(c, "/a/b/-"));
    assert_null(policy_claim_get(c, "/a/b/0/x"));  /* through a number */
    assert_null(policy_claim_get(c, "/x~2y"));     /* bad escape */
    assert_null(policy_claim_get(c, "/x~"));
    assert_null(policy_claim_get(c, "/x/y"));
    assert_null(policy_claim_get(c, "/lit"));      /* a pointer, not a name */
    assert_null(policy_claim_get(c, "missing"));
    assert_null(policy_claim_get(NULL, "plain"));
    char longname[BROKER_MAX_CLAIM_NAME_LEN + 10];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = 0;
    assert_null(policy_claim_get(c, longname));
    json_decref(c);
}

static void test_scalar_text(void **state)
{
    (void)state;
    json_t *v = json_parse("[\"s\", 123, -7, 1.5, 0.1, 1e300, 2.0, true, false, null, {}, []]");
    static const char *const want[] = {"s", "123", "-7", "1.5", "0.1", "1e+300", "2", "true", "false"};
    char buf[POLICY_SCALAR_BUF];
    const char *t;
    size_t len;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_true(policy_scalar_text(json_array_get(v, i), buf, &t, &len));
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(t, want[i], len);
    }
    for (size_t i = 9; i < 12; i++)
        assert_false(policy_scalar_text(json_array_get(v, i), buf, &t, &len));
    json_decref(v);
}

/* ---- documents ---- */

static void test_issuer_parse(void **state)
{
    (void)state;
    struct issuer_cfg c;
    char err[256];
    json_t *d = json_parse("{\"issuer\": \"k8s\", \"url\": \"kubernetes/serviceaccount\","
                           " \"jwks\": {\"keys\": [{\"kty\": \"EC\", \"kid\": \"a\"}]}, \"algorithms\": [\"ES256\", \"EdDSA\", \"PS512\"],"
                           " \"leeway\": \"2m\", \"ca_file\": \"/etc/ca.pem\"}");
    assert_int_equal(policy_issuer_parse(d, &c, err, sizeof(err)), BROKER_OK);
    assert_string_equal(c.name, "k8s");
    assert_string_equal(c.url, "kubernetes/serviceaccount");
    assert_string_equal(c.jwks_inline, "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"a\"}]}");
    assert_null(c.jwks_uri);
    assert_null(c.jwks_file);
    assert_string_equal(c.ca_file, "/etc/ca.pem");
    assert_int_equal(c.algs, JWT_ALG_BIT(JWT_ALG_ES256) | JWT_ALG_BIT(JWT_ALG_EDDSA) | JWT_ALG_BIT(JWT_ALG_PS512));
    assert_int_equal(c.leeway_s, 120);
    assert_true(json_equal(c.doc, d));
    assert_string_equal(policy_doc_kind(d), "issuer");
    policy_issuer_clear(&c);
    policy_issuer_clear(&c); /* idempotent */
    json_decref(d);

    d = json_parse("{\"issuer\": \"gh\", \"preset\": \"github-actions\"}");
    assert_int_equal(policy_issuer_parse(d, &c, err, sizeof(err)), BROKER_OK);
    assert_string_equal(c.url, "https://token.actions.githubusercontent.com");
    assert_int_equal(c.algs, JWT_ALG_BIT(JWT_ALG_RS256));
    assert_int_equal(c.leeway_s, 60);
    policy_issuer_clear(&c);
    json_decref(d);

    d = json_parse("{\"issuer\": \"gh\", \"preset\": \"github-actions\", \"enterprise\": \"acme-corp\"}");
    assert_int_equal(policy_issuer_parse(d, &c, err, sizeof(err)), BROKER_OK);
    assert_string_equal(c.url, "https://token.actions.githubusercontent.com/acme-corp");
    policy_issuer_clear(&c);
    json_decref(d);

    d = json_parse("{\"issuer\": \"ghes\", \"preset\": \"github-actions\", \"ghes_host\": \"github.acme.example\","
                   " \"algorithms\": [\"RS256\", \"RS512\"]}");
    assert_int_equal(policy_issuer_parse(d, &c, err, sizeof(err)), BROKER_OK);
    assert_string_equal(c.url, "https://github.acme.example/_services/token");
    assert_int_equal(c.algs, JWT_ALG_BIT(JWT_ALG_RS256) | JWT_ALG_BIT(JWT_ALG_RS512));
    policy_issuer_clear(&c);
    json_decref(d);

    /* fields beside a preset override it */
    d = json_parse("{\"issuer\": \"gh\", \"preset\": \"github-actions\", \"url\": \"https://gh.internal.example\"}");
    assert_int_equal(policy_issuer_parse(d, &c, err, sizeof(err)), BROKER_OK);
    assert_string_equal(c.url, "https://gh.internal.example");
    policy_issuer_clear(&c);
    json_decref(d);

    d = json_parse("{\"issuer\": \"gh\", \"preset\": \"github-actions\", \"ghes_host\": \"bad host/x\"}");
    assert_int_equal(policy_issuer_parse(d, &c, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "ghes_host"));
    assert_null(c.name); /* cleared on error */
    json_decref(d);
}

static const char *const identity_doc =
    "{\"identity\": \"payments-deploy\", \"description\": \"Deploys\", \"scopes\": [\"a\", \"b\"],"
    " \"audiences\": [\"https://x\"], \"max_ttl\": \"10m\","
    " \"trust\": [{\"name\": \"p\", \"issuer\": \"gh\", \"subject\": {\"not\": {\"in\": [\"x\", 5, true]}},"
    "   \"claims\": {\"zeta\": {\"equals\": 1}, \"alpha\": {\"glob\": \"a*\"}, \"/m/n\": {\"regex\": \"[0-9]{3}\"}},"
    "   \"scopes\": [\"b\"], \"source_cidrs\": [\"10.0.0.0/8\"], \"claim_mappings\": {\"repository\": \"repo\", \"/a/b\": \"ab\"},"
    "   \"single_use\": true}]}";

/* What each preset yields: the iss, the algorithms, and where keys come from (NULL jwks_uri: discovery). */
static void test_issuer_presets(void **state)
{
    (void)state;
    static const uint32_t rs = JWT_ALG_BIT(JWT_ALG_RS256);
    static const struct {
        const char *doc;
        const char *url;
        uint32_t algs;
        const char *jwks_uri;
        const char *bearer;
    } cases[] = {
        {"{\"issuer\": \"a\", \"preset\": \"github-actions\"}", "https://token.actions.githubusercontent.com", rs, NULL,
         NULL},
        {"{\"issuer\": \"a\", \"preset\": \"gitlab\"}", "https://gitlab.com", rs, NULL, NULL},
        {"{\"issuer\": \"a\", \"preset\": \"gitlab\", \"url\": \"https://gitlab.acme.example\"}",
         "https://gitlab.acme.example", rs, NULL, NULL},
        {"{\"issuer\": \"a\", \"preset\": \"google\"}", "https://accounts.google.com", rs, NULL, NULL},
        {"{\"issuer\": \"a\", \"preset\": \"aws-eks\", \"url\": "
         "\"https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE\"}",
         "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE", rs, NULL, NULL},
        /* the China partition */
        {"{\"issuer\": \"a\", \"preset\": \"aws-eks\", \"url\": "
         "\"https://oidc.eks.cn-north-1.amazonaws.com.cn/id/EXAMPLED539D4633E53DE1B71EXAMPLE\"}",
         "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/EXAMPLED539D4633E53DE1B71EXAMPLE", rs, NULL, NULL},
        {"{\"issuer\": \"a\", \"preset\": \"aws-outbound\", \"url\": "
         "\"https://8c5f0a3e-4b8e-4f0a-9d3c-2f1e6a7b9c01.tokens.sts.global.api.aws\"}",
         "https://8c5f0a3e-4b8e-4f0a-9d3c-2f1e6a7b9c01.tokens.sts.global.api.aws",
         rs | JWT_ALG_BIT(JWT_ALG_ES384), NULL, NULL},
        {"{\"issuer\": \"a\", \"preset\": \"kubernetes\", \"url\": \"https://kubernetes.default.svc.cluster.local\","
         " \"ca_file\": \"/etc/k8s/ca.pem\", \"bearer_token_file\": \"/var/run/secrets/token\"}",
         "https://kubernetes.default.svc.cluster.local", rs | JWT_ALG_BIT(JWT_ALG_ES256),
         "https://kubernetes.default.svc.cluster.local/openid/v1/jwks", "/var/run/secrets/token"},
        /* a trailing slash on the issuer does not double the path separator */
        {"{\"issuer\": \"a\", \"preset\": \"kubernetes\", \"url\": \"https://k8s.example.com:6443/\"}",
         "https://k8s.example.com:6443/", rs | JWT_ALG_BIT(JWT_ALG_ES256), "https://k8s.example.com:6443/openid/v1/jwks",
         NULL},
        /* static keys: any iss string, no fetch */
        {"{\"issuer\": \"a\", \"preset\": \"kubernetes\", \"url\": \"kubernetes/serviceaccount\","
         " \"jwks_file\": \"/etc/k8s.jwks\"}",
         "kubernetes/serviceaccount", rs | JWT_ALG_BIT(JWT_ALG_ES256), NULL, NULL},
        /* fields beside a preset override it */
        {"{\"issuer\": \"a\", \"preset\": \"kubernetes\", \"url\": \"https://k8s.example.com\","
         " \"jwks_uri\": \"https://keys.example.com/jwks\", \"algorithms\": [\"ES256\"]}",
         "https://k8s.example.com", JWT_ALG_BIT(JWT_ALG_ES256), "https://keys.example.com/jwks", NULL},
        {"{\"issuer\": \"a\", \"preset\": \"aws-outbound\", \"algorithms\": [\"ES384\"], \"url\": "
         "\"https://8c5f0a3e-4b8e-4f0a-9d3c-2f1e6a7b9c01.tokens.sts.global.api.aws\"}",
         "https://8c5f0a3e-4b8e-4f0a-9d3c-2f1e6a7b9c01.tokens.sts.global.api.aws", JWT_ALG_BIT(JWT_ALG_ES384), NULL,
         NULL},
        /* no preset: bearer_token_file is still a known field */
        {"{\"issuer\": \"a\", \"url\": \"https://k8s.example.com\", \"bearer_token_file\": \"/t\"}",
         "https://k8s.example.com", rs, NULL, "/t"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        struct issuer_cfg c;
        json_t *d = json_loads(cases[i].doc, 0, NULL);
        assert_non_null(d);
        if (policy_issuer_parse(d, &c, err, sizeof(err)) != BROKER_OK)
            fail_msg("case %zu: %s", i, err);
        assert_string_equal(c.url, cases[i].url);
        assert_int_equal(c.algs, cases[i].algs);
        if (cases[i].jwks_uri)
            assert_string_equal(c.jwks_uri, cases[i].jwks_uri);
        else
            assert_null(c.jwks_uri);
        if (cases[i].bearer)
            assert_string_equal(c.bearer_token_file, cases[i].bearer);
        else
            assert_null(c.bearer_token_file);
        policy_issuer_clear(&c);
        json_decref(d);
    }
}

static void test_identity_parse(void **state)
{
    (void)state;
    struct identity id;
    char err[256];
    json_t *d = json_parse(identity_doc);
    assert_int_equal(policy_identity_parse(d, &id, err, sizeof(err)), BROKER_OK);
    assert_string_equal(id.name, "payments-deploy");
    assert_string_equal(id.description, "Deploys");
    assert_int_equal(id.nscopes, 2);
    assert_int_equal(id.max_ttl_s, 600);
    assert_int_equal(id.ttl_s, 600); /* the default ttl, capped by max_ttl */
    assert_int_equal(id.ntrust, 1);
    const struct trust_policy *tp = &id.trust[0];
    assert_null(tp->audience);
    assert_int_equal(tp->subject->op, COND_NOT);
    assert_int_equal(tp->subject->inner->op, COND_IN);
    assert_int_equal(tp->subject->inner->nlist, 3);
    assert_string_equal(tp->subject->inner->list[1], "5");
    assert_string_equal(tp->subject->inner->list[2], "true");
    /* document order is kept */
    assert_int_equal(tp->nclaims, 3);
    assert_string_equal(tp->claims[0].claim, "zeta");
    assert_string_equal(tp->claims[1].claim, "alpha");
    assert_string_equal(tp->claims[2].claim, "/m/n");
    assert_int_equal(tp->claims[2].cond.op, COND_REGEX);
    assert_int_equal(tp->nscopes, 1);
    assert_int_equal(tp->ncidrs, 1);
    assert_int_equal(tp->nmappings, 2);
    assert_string_equal(tp->mappings[1].from, "/a/b");
    assert_string_equal(tp->mappings[1].to, "ab");
    assert_true(tp->single_use);
    assert_int_equal(tp->ttl_s, 0);
    assert_string_equal(policy_doc_kind(d), "identity");
    policy_identity_clear(&id);
    json_decref(d);

    /* over-long patterns */
    char pat[BROKER_MAX_PATTERN_LEN + 2];
    memset(pat, 'a', sizeof(pat) - 1);
    pat[sizeof(pat) - 1] = 0;
    d = json_pack("{s:s, s:[s], s:[s], s:[{s:s, s:s, s:{s:s}}]}", "identity", "a", "scopes", "s", "audiences", "x",
                  "trust", "name", "p", "issuer", "gh", "subject", "regex", pat);
    assert_int_equal(policy_identity_parse(d, &id, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_string_equal(err, "trust[0].subject: regex pattern longer than 1024 bytes");
    json_decref(d);
    pat[sizeof(pat) - 2] = 0;
    d = json_pack("{s:s, s:[s], s:[s], s:[{s:s, s:s, s:{s:s}}]}", "identity", "a", "scopes", "s", "audiences", "x",
                  "trust", "name", "p", "issuer", "gh", "subject", "glob", pat);
    assert_int_equal(policy_identity_parse(d, &id, err, sizeof(err)), BROKER_OK);
    policy_identity_clear(&id);
    json_decref(d);

    /* a NUL inside a pattern is refused, not truncated */
    d = json_parse("{\"identity\": \"a\", \"scopes\": [], \"audiences\": [\"x\"],"
                   " \"trust\": [{\"name\": \"p\", \"issuer\": \"gh\", \"subject\": {\"equals\": \"ab\\u0000c\"}}]}");
    assert_int_equal(policy_identity_parse(d, &id, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_non_null(strstr(err, "NUL"));
    json_decref(d);

    /* regexes that must be refused before regcomp sees them */
    static const char *const bad_re[] = {"a)|(b", "(a", "a\\1", "((a{17}){17}){17}", "a{1,300}", "x{2"};
    for (size_t i = 0; i < sizeof(bad_re) / sizeof(bad_re[0]); i++) {
        d = json_pack("{s:s, s:[s], s:[s], s:[{s:s, s:s, s:{s:s}}]}", "identity", "a", "scopes", "s", "audiences",
                      "x", "trust", "name", "p", "issuer", "gh", "subject", "regex", bad_re[i]);
        assert_int_equal(policy_identity_parse(d, &id, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
        json_decref(d);
    }
    /* and ones that are fine: brackets holding parentheses, classes, bounded repeats */
    static const char *const good_re[] = {"[)(]+", "[[:alnum:]_.-]+", "[]a]", "[^]a]*", "\\(x\\)", "[0-9a-f]{40}",
                                          "(v[0-9]+\\.){2}[0-9]+", "a|b|c"};
    for (size_t i = 0; i < sizeof(good_re) / sizeof(good_re[0]); i++) {
        d = json_pack("{s:s, s:[s], s:[s], s:[{s:s, s:s, s:{s:s}}]}", "identity", "a", "scopes", "s", "audiences",
                      "x", "trust", "name", "p", "issuer", "gh", "subject", "regex", good_re[i]);
        if (policy_identity_parse(d, &id, err, sizeof(err)) != BROKER_OK)
            fprintf(stderr, "regex %s: %s\n", good_re[i], err);
        assert_int_equal(id.ntrust, 1);
        policy_identity_clear(&id);
        json_decref(d);
    }

    assert_null(policy_doc_kind(NULL));
    d = json_parse("{\"identity\": \"a\", \"issuer\": \"b\"}");
    assert_null(policy_doc_kind(d));
    json_decref(d);
    d = json_parse("{\"name\": \"a\"}");
    assert_null(policy_doc_kind(d));
    json_decref(d);
}

/* ---- the set ---- */

static void test_build_error_names_document(void **state)
{
    (void)state;
    json_t *issuers = json_parse("[{\"issuer\": \"github-actions\", \"preset\": \"github-actions\"}]");
    json_t *ids = json_parse("[{\"identity\": \"payments-deploy\", \"scopes\": [\"s\"], \"audiences\": [\"a\"],"
                             " \"trust\": [{\"name\": \"p\", \"issuer\": \"github-actions\", \"subject\": {\"glob\": \"\"}}]}]");
    struct policy_set *s = (struct policy_set *)1;
    char err[256];
    assert_int_equal(policy_set_build(issuers, ids, &s, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    assert_null(s);
    assert_string_equal(err, "identity payments-deploy: trust[0].subject: glob pattern empty");
    /* a tiny error buffer truncates, never overflows */
    char small[8];
    assert_int_equal(policy_set_build(issuers, ids, &s, small, sizeof(small)), BROKER_ERR_INVALID_DOCUMENT);
    assert_string_equal(small, "identit");
    assert_int_equal(policy_set_build(issuers, ids, &s, NULL, 0), BROKER_ERR_INVALID_DOCUMENT);
    json_decref(ids);
    json_decref(issuers);

    json_t *notarray = json_parse("{\"issuer\": \"x\"}");
    assert_int_equal(policy_set_build(notarray, NULL, &s, err, sizeof(err)), BROKER_ERR_INVALID_DOCUMENT);
    json_decref(notarray);
}

static void test_set_lookups_and_refcount(void **state)
{
    (void)state;
    json_t *issuers = json_parse("[{\"issuer\": \"gh\", \"preset\": \"github-actions\"},"
                                 " {\"issuer\": \"k8s\", \"url\": \"kubernetes/serviceaccount\", \"jwks_file\": \"/k.json\"}]");
    json_t *ids = json_parse("[{\"identity\": \"one\", \"scopes\": [], \"audiences\": [\"a\"],"
                             "   \"trust\": [{\"name\": \"p\", \"issuer\": \"gh\", \"subject\": {\"equals\": \"x\"}}]},"
                             " {\"identity\": \"two\", \"scopes\": [], \"audiences\": [\"a\"],"
                             "   \"trust\": [{\"name\": \"p\", \"issuer\": \"k8s\", \"subject\": {\"equals\": \"x\"}}]}]");
    struct policy_set *s = build_or_fail(issuers, ids);
    json_decref(issuers);
    json_decref(ids);

    assert_int_equal(policy_set_issuer_count(s), 2);
    assert_int_equal(policy_set_identity_count(s), 2);
    assert_string_equal(policy_set_issuer_at(s, 1)->name, "k8s");
    assert_null(policy_set_issuer_at(s, 2));
    assert_string_equal(policy_set_identity_at(s, 0)->name, "one");
    assert_null(policy_set_identity_at(s, 2));
    assert_ptr_equal(policy_set_issuer_by_url(s, "https://token.actions.githubusercontent.com"), policy_set_issuer_at(s, 0));
    assert_ptr_equal(policy_set_issuer_by_url(s, "kubernetes/serviceaccount"), policy_set_issuer_at(s, 1));
    assert_null(policy_set_issuer_by_url(s, "https://token.actions.githubusercontent.com/"));
    assert_null(policy_set_issuer_by_url(s, NULL));
    assert_ptr_equal(policy_set_issuer_by_name(s, "k8s"), policy_set_issuer_at(s, 1));
    assert_null(policy_set_issuer_by_name(s, "K8S"));
    assert_ptr_equal(policy_set_identity_by_name(s, "two"), policy_set_identity_at(s, 1));
    assert_null(policy_set_identity_by_name(s, "three"));
    assert_null(policy_set_identity_by_name(NULL, "two"));
    assert_int_equal(policy_set_identity_count(NULL), 0);

    /* a reader holding a reference keeps the set alive after the publisher drops it */
    struct policy_set *reader = policy_set_ref(s);
    assert_ptr_equal(reader, s);
    policy_set_unref(s);
    assert_string_equal(policy_set_identity_at(reader, 1)->name, "two");
    policy_set_unref(reader);
    policy_set_unref(NULL);

    /* an empty set is valid and denies */
    json_t *empty = json_array();
    s = build_or_fail(empty, empty);
    struct issuer_cfg fake = {.name = (char *)"gh"};
    json_t *claims = json_parse("{\"sub\": \"x\", \"aud\": \"a\"}");
    struct policy_input in = {.issuer = &fake, .claims = claims, .default_audience = "a"};
    struct policy_result out;
    assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_ERR_UNKNOWN_ISSUER);
    assert_int_equal(policy_eval(NULL, &in, &out, NULL), BROKER_ERR_INTERNAL);
    in.claims = NULL;
    assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_ERR_INTERNAL);
    policy_set_unref(s);
    json_decref(claims);
    json_decref(empty);
}

static void test_explain_conditions(void **state)
{
    (void)state;
    json_t *issuers = json_parse("[{\"issuer\": \"gh\", \"preset\": \"github-actions\"}]");
    json_t *ids = json_parse(
        "[{\"identity\": \"payments-deploy\", \"scopes\": [\"s\"], \"audiences\": [\"https://secrets\"],"
        "  \"trust\": [{\"name\": \"main\", \"issuer\": \"gh\", \"audience\": \"https://broker\","
        "    \"subject\": {\"equals\": \"repo:acme/payments:ref:refs/heads/main\"},"
        "    \"claims\": {\"repository_id\": {\"equals\": 123}, \"event_name\": {\"in\": [\"push\", \"workflow_dispatch\"]},"
        "                \"ref\": {\"not\": {\"glob\": \"refs/tags/*\"}}, \"/env/name\": {\"regex\": \"prod|staging\"}},"
        "    \"source_cidrs\": [\"10.0.0.0/8\", \"::1/128\"]}]}]");
    struct policy_set *s = build_or_fail(issuers, ids);
    json_t *claims = json_parse("{\"aud\": [\"https://broker\"], \"sub\": \"repo:acme/payments:ref:refs/heads/main\","
                                " \"repository_id\": \"124\", \"ref\": \"refs/heads/main\"}");
    struct sockaddr_storage peer;
    assert_true(make_peer("192.0.2.1", &peer));
    struct policy_input in = {.issuer = policy_set_issuer_by_name(s, "gh"), .claims = claims,
                              .peer = (struct sockaddr *)&peer, .default_audience = "https://unused"};
    struct policy_result out;
    json_t *explain = json_array();
    assert_int_equal(policy_eval(s, &in, &out, explain), BROKER_ERR_NO_MATCH);
    json_t *want = json_parse(
        "[{\"identity\": \"payments-deploy\", \"policy\": \"main\", \"result\": \"no_match\","
        "  \"first_failed\": \"claims.repository_id\", \"conditions\": ["
        "  {\"condition\": \"audience\", \"op\": \"contains\", \"expected\": \"https://broker\", \"actual\": [\"https://broker\"], \"result\": true},"
        "  {\"condition\": \"subject\", \"op\": \"equals\", \"expected\": \"repo:acme/payments:ref:refs/heads/main\","
        "   \"actual\": \"repo:acme/payments:ref:refs/heads/main\", \"result\": true},"
        "  {\"condition\": \"claims.repository_id\", \"op\": \"equals\", \"expected\": \"123\", \"actual\": \"124\", \"result\": false},"
        "  {\"condition\": \"claims.event_name\", \"op\": \"in\", \"expected\": [\"push\", \"workflow_dispatch\"], \"actual\": null, \"result\": false},"
        "  {\"condition\": \"claims.ref\", \"op\": \"not\", \"expected\": {\"glob\": \"refs/tags/*\"}, \"actual\": \"refs/heads/main\", \"result\": true},"
        "  {\"condition\": \"claims./env/name\", \"op\": \"regex\", \"expected\": \"prod|staging\", \"actual\": null, \"result\": false},"
        "  {\"condition\": \"source_cidrs\", \"op\": \"cidr\", \"expected\": [\"10.0.0.0/8\", \"::1/128\"], \"actual\": \"192.0.2.1\", \"result\": false}"
        "]}]");
    if (!json_equal(explain, want)) {
        char *got = json_dumps(explain, JSON_INDENT(1));
        fprintf(stderr, "explain: %s\n", got);
        free(got);
    }
    assert_true(json_equal(explain, want));
    json_decref(want);
    json_decref(explain);
    json_decref(claims);
    json_decref(ids);
    json_decref(issuers);
    policy_set_unref(s);
}

/* The index: 10,000 identities with exact subjects; a token is compared with its own only. */
static void test_index_skips_unrelated(void **state)
{
    (void)state;
    enum { N = 10000 };
    json_t *issuers = json_parse("[{\"issuer\": \"gh\", \"preset\": \"github-actions\"}]");
    json_t *ids = json_array();
    char name[64], sub[128];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "app-%05d", i);
        snprintf(sub, sizeof(sub), "repo:acme/app-%05d:ref:refs/heads/main", i);
        json_array_append_new(ids, json_pack("{s:s, s:[s], s:[s], s:[{s:s, s:s, s:{s:s}, s:{s:{s:s}}}]}", "identity",
                                             name, "scopes", "deploy", "audiences", "https://deploy", "trust", "name",
                                             "main", "issuer", "gh", "subject", "equals", sub, "claims",
                                             "repository_owner", "equals", "acme"));
    }
    struct policy_set *s = build_or_fail(issuers, ids);
    json_t *claims = json_pack("{s:s, s:s, s:s}", "aud", "https://broker", "sub",
                               "repo:acme/app-04242:ref:refs/heads/main", "repository_owner", "acme");
    struct policy_input in = {.issuer = policy_set_issuer_by_name(s, "gh"), .claims = claims,
                              .default_audience = "https://broker"};
    struct policy_result out;
    json_t *explain = json_array();
    assert_int_equal(policy_eval(s, &in, &out, explain), BROKER_OK);
    assert_string_equal(out.identity->name, "app-04242");
    assert_int_equal(json_array_size(explain), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(explain, 0), "identity")), "app-04242");
    json_decref(explain);

    /* the fast path is the same decision and does not slow down with the set's size */
    assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_OK);
    assert_string_equal(out.identity->name, "app-04242");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 20000;
    fprintf(stderr, "# policy_eval, 10000 identities, indexed subject: %.0f ns\n", ns);
    assert_true(ns < 100000); /* generous: sanitizers, shared CPU; a scan of 10k policies would not pass */

    json_object_set_new(claims, "sub", json_string("repo:acme/unknown:ref:refs/heads/main"));
    explain = json_array();
    assert_int_equal(policy_eval(s, &in, &out, explain), BROKER_ERR_NO_MATCH);
    assert_int_equal(json_array_size(explain), 0);
    json_decref(explain);

    json_decref(claims);
    json_decref(ids);
    json_decref(issuers);
    policy_set_unref(s);
}

static size_t alloc_count;
static void *counting_malloc(size_t n)
{
    alloc_count++;
    return malloc(n);
}
static void counting_free(void *p)
{
    free(p);
}

/* A GitHub-shaped token against 10 considered policies: fast, and jansson allocates nothing. */
static void test_fast_path_cost(void **state)
{
    (void)state;
    json_t *issuers = json_parse("[{\"issuer\": \"gh\", \"preset\": \"github-actions\"}]");
    json_t *ids = json_array();
    char name[64], pat[128];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "svc-%d", i);
        snprintf(pat, sizeof(pat), "repo:acme/svc-%d:ref:refs/*", i);
        json_array_append_new(
            ids, json_pack("{s:s, s:[s,s], s:[s], s:[{s:s, s:s, s:s, s:{s:s}, s:{s:{s:s}, s:{s:[s,s]}, s:{s:s}}}]}",
                           "identity", name, "scopes", "read", "write", "audiences", "https://secrets", "trust", "name",
                           "ci", "issuer", "gh", "audience", "https://broker", "subject", "glob", pat, "claims",
                           "repository_id", "equals", "9", "event_name", "in", "push", "workflow_dispatch",
                           "/runner_environment", "equals", "github-hosted"));
    }
    struct policy_set *s = build_or_fail(issuers, ids);
    json_t *claims = json_parse(
        "{\"actor\":\"rgl\",\"actor_id\":\"43356\",\"aud\":\"https://broker\",\"base_ref\":\"\",\"event_name\":\"push\","
        "\"exp\":1743267827,\"head_ref\":\"\",\"iat\":1743246227,\"iss\":\"https://token.actions.githubusercontent.com\","
        "\"job_workflow_ref\":\"acme/svc-9/.github/workflows/build.yml@refs/heads/main\",\"jti\":\"58772c9f\","
        "\"nbf\":1743245927,\"ref\":\"refs/heads/main\",\"ref_protected\":\"false\",\"ref_type\":\"branch\","
        "\"repository\":\"acme/svc-9\",\"repository_id\":\"9\",\"repository_owner\":\"acme\",\"run_id\":\"1414\","
        "\"runner_environment\":\"github-hosted\",\"sha\":\"0f661a4a\",\"sub\":\"repo:acme/svc-9:ref:refs/heads/main\","
        "\"workflow\":\"Build\"}");
    struct policy_input in = {.issuer = policy_set_issuer_by_name(s, "gh"), .claims = claims,
                              .default_audience = "https://broker", .scope = "read"};
    struct policy_result out;

    json_set_alloc_funcs(counting_malloc, counting_free);
    alloc_count = 0;
    enum broker_err rc = policy_eval(s, &in, &out, NULL);
    size_t allocs = alloc_count;
    json_set_alloc_funcs(malloc, free);
    assert_int_equal(rc, BROKER_OK);
    assert_int_equal(allocs, 0);
    assert_string_equal(out.identity->name, "svc-9");
    assert_string_equal(out.scope, "read");

    enum { ITER = 200000 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < ITER; i++)
        if (policy_eval(s, &in, &out, NULL) != BROKER_OK)
            fail();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / ITER;
    fprintf(stderr, "# policy_eval, GitHub token vs 10 glob policies: %.0f ns\n", ns);
    assert_true(ns < 50000);

    json_decref(claims);
    json_decref(ids);
    json_decref(issuers);
    policy_set_unref(s);
}

/* Readers share one immutable set: concurrent evaluation (regex included) and reference counting. */
struct reader_arg {
    struct policy_set *set;
    const json_t *claims;
    int ok;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    struct policy_input in = {.issuer = policy_set_issuer_by_name(a->set, "github-actions"), .claims = a->claims,
                              .default_audience = "https://broker.example.com"};
    struct policy_result out;
    for (int i = 0; i < 20000; i++) {
        struct policy_set *mine = policy_set_ref(a->set);
        if (policy_eval(mine, &in, &out, NULL) == BROKER_OK && strcmp(out.identity->name, "docs-preview") == 0)
            a->ok++;
        policy_set_unref(mine);
    }
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    (void)state;
    json_t *root = load_json_file(cases_path());
    assert_non_null(root);
    const json_t *ds = json_object_get(json_object_get(root, "docsets"), "main");
    struct policy_set *set = build_or_fail(json_object_get(ds, "issuers"), json_object_get(ds, "identities"));
    const json_t *claims = json_object_get(json_object_get(root, "claim_sets"), "gha_docs");
    struct reader_arg args[3] = {{set, claims, 0}, {set, claims, 0}, {set, claims, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 20000);
    }
    policy_set_unref(set);
    json_decref(root);
}

/* ---- trust-policies/ examples ---- */

static void test_example_documents(void **state)
{
    (void)state;
    json_t *issuers = json_array(), *ids = json_array();
    size_t n = 0;
    /* the applied documents and the examples beside them */
    static const char *const dirs[] = {"trust-policies", "trust-policies/examples"};
    for (size_t d = 0; d < 2; d++) {
        DIR *dir = opendir(dirs[d]);
        assert_non_null(dir);
        struct dirent *de;
        while ((de = readdir(dir))) {
            size_t len = strlen(de->d_name);
            if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
                continue;
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dirs[d], de->d_name);
            json_t *doc = load_json_file(path);
            assert_non_null(doc);
            const char *kind = policy_doc_kind(doc);
            assert_non_null(kind);
            json_array_append_new(strcmp(kind, "issuer") == 0 ? issuers : ids, doc);
            n++;
        }
        closedir(dir);
    }
    assert_true(n >= 6);
    struct policy_set *s = build_or_fail(issuers, ids);
    assert_non_null(policy_set_identity_by_name(s, "demo-deploy"));
    assert_non_null(policy_set_identity_by_name(s, "payments-deploy"));
    assert_non_null(policy_set_issuer_by_url(s, "https://token.actions.githubusercontent.com"));
    assert_non_null(policy_set_issuer_by_url(s, "kubernetes/serviceaccount"));

    /* the demo token shape the demo script mints */
    json_t *claims = json_parse("{\"iss\": \"https://127.0.0.1:9443\", \"aud\": \"https://broker.demo\","
                                " \"sub\": \"repo:acme/demo:ref:refs/heads/main\", \"repository\": \"acme/demo\","
                                " \"repository_id\": \"123456789\", \"event_name\": \"push\", \"run_id\": \"7\"}");
    struct policy_input in = {.issuer = policy_set_issuer_by_name(s, "demo"), .claims = claims,
                              .default_audience = "https://broker.demo"};
    struct policy_result out;
    assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_OK);
    assert_string_equal(out.identity->name, "demo-deploy");
    assert_string_equal(out.scope, "secrets:read:demo");
    assert_string_equal(out.audience, "https://secrets.example.com");
    json_object_set_new(claims, "event_name", json_string("pull_request_target"));
    assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_ERR_NO_MATCH);

    /* the claims of the real minikube projected token (fixtures: kubernetes/) against the kubernetes example */
    json_decref(claims);
    claims = json_parse("{\"aud\":[\"kubernetes.default.svc\"],\"exp\":1920082797,\"iat\":1604082797,"
                        "\"iss\":\"kubernetes/serviceaccount\",\"kubernetes.io\":{\"namespace\":\"default\","
                        "\"pod\":{\"name\":\"vault\",\"uid\":\"086c2f61-dea2-47bb-b5ca-63e63c5c9885\"},"
                        "\"serviceaccount\":{\"name\":\"default\",\"uid\":\"77c81ad7-1bea-4d94-9ca5-f5d7f3632331\"}},"
                        "\"nbf\":1604082797,\"sub\":\"system:serviceaccount:default:default\"}");
    in.issuer = policy_set_issuer_by_url(s, "kubernetes/serviceaccount");
    in.claims = claims;
    assert_int_equal(policy_eval(s, &in, &out, NULL), BROKER_OK);
    assert_string_equal(out.identity->name, "minikube-vault");
    assert_int_equal(out.ttl_s, 1800);
    json_decref(claims);
    json_decref(issuers);
    json_decref(ids);
    policy_set_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_cases),
        cmocka_unit_test(test_table_invalid),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_claim_get),
        cmocka_unit_test(test_scalar_text),
        cmocka_unit_test(test_issuer_parse),
        cmocka_unit_test(test_issuer_presets),
        cmocka_unit_test(test_identity_parse),
        cmocka_unit_test(test_build_error_names_document),
        cmocka_unit_test(test_set_lookups_and_refcount),
        cmocka_unit_test(test_explain_conditions),
        cmocka_unit_test(test_index_skips_unrelated),
        cmocka_unit_test(test_fast_path_cost),
        cmocka_unit_test(test_concurrent_readers),
        cmocka_unit_test(test_example_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
