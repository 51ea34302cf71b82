/* json_parse_strict: what it accepts equals what jansson builds; every RFC 8259 rule and every
 * bound is rejected; truncations, real token payloads, and the jwt_json_load_strict wrapper. */
#include "test_util.h"
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include "b64.h"
#include "bounds.h"
#include "json.h"
#include "jwt.h"

struct text {
    const char *s;
    size_t n;
};
#define T(lit) {lit, sizeof(lit) - 1}
#define S(lit) lit, sizeof(lit) - 1
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Parses an exact-size heap copy, so ASan reports any read past len. */
static json_t *parse(const char *s, size_t n, size_t max_depth)
{
    uint8_t *b = malloc(n ? n : 1);
    json_t *j;

    assert_non_null(b);
    memcpy(b, s, n);
    j = json_parse_strict(b, n, max_depth);
    free(b);
    return j;
}

static json_t *jansson(const char *s, size_t n)
{
    return json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
}

/* Accepts, and builds exactly what jansson builds (json_equal also tells integer from real). */
static json_t *accept_same(const char *s, size_t n, size_t max_depth)
{
    json_t *j = parse(s, n, max_depth), *ref = jansson(s, n);

    if (j == NULL || ref == NULL || !json_equal(j, ref))
        fail_msg("accept \"%.*s\": ours %s, jansson %s, %s", (int)n, s, j ? "ok" : "NULL", ref ? "ok" : "NULL",
                 j && ref ? "values differ" : "");
    json_decref(ref);
    return j;
}

static void test_accept_table(void **state)
{
    static const struct text ok[] = {
        T("{}"), T("[]"), T("0"), T("-0"), T("1"), T("-1"), T("true"), T("false"), T("null"), T("\"\""),
        T("\"x\""), T("  42  "), T("[{},{},{}]"), T("[[],[],[]]"),
        T(" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \t\r\n"),
        T("[0,-0,0.0,-0.0,1e308,-1e308,1E+2,1e-2,0e0,-0E-0,1.5e-400,2.2250738585072014e-308,4.9e-324]"),
        T("[-9223372036854775808,9223372036854775807,9007199254740993,123456789012345678901234.5]"),
        T("[0.000000000000000000000000000000000000000000000000000000000000000000000000000001]"),
        T("{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"}"),
        T("[\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\\ud83d\\ude00\\uDBFF\\uDFFF\\uD800\\uDC00\\u0001\\u001f\"]"),
        T("[\"\xc3\xa9\xe2\x82\xac\xef\xbf\xbf\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xc2\x80\xe0\xa0\x80\xed\x9f\xbf"
          "\xee\x80\x80\xf0\x90\x80\x80\x7f\"]"),
        T("{\"k\\u00e9y\":1,\"k\xc3\xa9y2\":2,\"\":3,\"a\\u0062\":4,\"a\":null,\"b\":\"\\\\\"}"),
        T("{\"a\":{\"b\":[true,false,null,{\"c\":\"d\"},[[]]]}}"),
        T("{\"alg\":\"RS256\",\"ALG\":\"none\",\"alg \":1}"),
    };
    (void)state;
    for (size_t i = 0; i < N(ok); i++)
        json_decref(accept_same(ok[i].s, ok[i].n, BROKER_MAX_JSON_DEPTH));
}

/* The decoded values themselves, not only agreement with jansson. */
static void test_decoded_values(void **state)
{
    json_t *j;
    (void)state;

    j = accept_same(S("[0,-0,-9223372036854775808,9223372036854775807,1e308,-0.0,1.5e-400]"), 1);
    assert_true(json_is_integer(json_array_get(j, 0)) && json_integer_value(json_array_get(j, 0)) == 0);
    assert_true(json_is_integer(json_array_get(j, 1)) && json_integer_value(json_array_get(j, 1)) == 0);
    assert_true(json_integer_value(json_array_get(j, 2)) == INT64_MIN);
    assert_true(json_integer_value(json_array_get(j, 3)) == INT64_MAX);
    assert_true(json_is_real(json_array_get(j, 4)) && json_real_value(json_array_get(j, 4)) == 1e308);
    assert_true(json_is_real(json_array_get(j, 5)));
    assert_true(json_is_real(json_array_get(j, 6)) && json_real_value(json_array_get(j, 6)) == 0.0);
    json_decref(j);

    /* escapes, a surrogate pair, and raw UTF-8 passed through */
    j = accept_same(S("\"a\\n\\u00e9\\ud83d\\ude00\\/\xe2\x82\xac\""), 0);
    assert_int_equal(json_string_length(j), 12);
    assert_memory_equal(json_string_value(j), "a\n\xc3\xa9\xf0\x9f\x98\x80/\xe2\x82\xac", 12);
    json_decref(j);

    /* an escaped key is the same key as its plain spelling */
    j = accept_same(S("{\"\\u0061\\/b\":1}"), 1);
    assert_non_null(json_object_get(j, "a/b"));
    json_decref(j);
}

/* Strings with escapes longer than the stack buffers, numbers longer than the real buffer. */
static void test_long_values(void **state)
{
    char *s = malloc(8192);
    const char *key;
    size_t n = 0;
    json_t *j, *v;
    (void)state;

    assert_non_null(s);
    n += (size_t)snprintf(s + n, 8192 - n, "{\"");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(s + n, 8192 - n, "k\\u00e9"); /* a key of 120 decoded bytes */
    n += (size_t)snprintf(s + n, 8192 - n, "\":[\"");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(s + n, 8192 - n, "x\\n\\ud83d\\ude00\xc3\xa9");
    n += (size_t)snprintf(s + n, 8192 - n, "\",1.");
    for (int i = 0; i < 200; i++)
        s[n++] = (char)('0' + i % 10);
    n += (size_t)snprintf(s + n, 8192 - n, "e-5,-");
    for (int i = 0; i < 100; i++)
        s[n++] = '9';
    n += (size_t)snprintf(s + n, 8192 - n, ".5]}");
    j = accept_same(s, n, 2);
    assert_int_equal(json_object_size(j), 1);
    json_object_foreach(j, key, v) {
        assert_int_equal(strlen(key), 120);
        assert_int_equal(json_string_length(json_array_get(v, 0)), 300 * 8);
        assert_true(json_is_real(json_array_get(v, 1)) && json_is_real(json_array_get(v, 2)));
    }
    json_decref(j);
    free(s);
}

static void test_reject_table(void **state)
{
    static const struct text bad[] = {
        /* structure */
        T(""), T(" "), T("\n"), T("{"), T("["), T("}"), T("]"), T("[1"), T("{\"a\""),
        T("{\"a\":"), T("{\"a\":1"), T("[1,]"), T("{\"a\":1,}"), T("[,1]"), T("[,]"), T("{,}"),
        T("[1 2]"), T("[1,,2]"), T("{\"a\" 1}"), T("{\"a\":1 \"b\":2}"), T("{\"a\"}"), T("{1:2}"),
        T("{a:1}"), T("{'a':1}"), T("['a']"), T("[\"a]"), T("{\"a\"::1}"), T("{\"a\":1:2}"),
        T("[}"), T("{]"), T("[1}"), T("{\"a\":1]"), T(":"), T(","), T("[:]"),
        /* trailing garbage, a second document, BOM, comments, non-JSON whitespace */
        T("{}x"), T("{} {}"), T("[]]"), T("1 2"), T("\"a\"\"b\""), T("{},"), T("[]\0"),
        T("\xef\xbb\xbf{}"), T("{}//c"), T("/*c*/{}"), T("[1/*c*/]"), T("#\n{}"), T("\f[]"),
        T("[\v1]"), T("\xc2\xa0[]"), T("[1\xe2\x80\x80]"),
        /* literals */
        T("tru"), T("True"), T("TRUE"), T("nul"), T("NULL"), T("fals"), T("truee"), T("[nulll]"),
        T("undefined"), T("NaN"), T("-NaN"), T("Infinity"), T("-Infinity"), T("[infinity]"),
        /* numbers */
        T("01"), T("-01"), T("00"), T("[01]"), T("[-00]"), T("+1"), T("[+1]"), T(".5"), T("[.5]"),
        T("1."), T("[1.]"), T("1.e5"), T("1e"), T("1e+"), T("1E-"), T("-"), T("[-]"), T("--1"),
        T("-.5"), T("0x10"), T("[0x1F]"), T("1_000"), T("[1e5.5]"), T("1.5.5"), T("[1e5e5]"),
        T("[9223372036854775808]"), T("[-9223372036854775809]"), T("[18446744073709551616]"),
        T("[99999999999999999999999]"), T("9223372036854775808"), T("[1e999]"), T("[-1e999]"),
        T("[1e309]"), T("[1.8e308]"), T("1e999"),
        /* escapes */
        T("[\"\\ud800\"]"), T("[\"\\udc00\"]"), T("[\"\\udc00\\ud800\"]"), T("[\"\\ud800\\u0041\"]"),
        T("[\"\\ud800\\ud800\"]"), T("[\"\\ud800x\"]"), T("[\"\\udbff\\ue000\"]"), T("[\"\\ud800\\n\"]"),
        T("[\"\\u0000\"]"), T("{\"\\u0000\":1}"), T("{\"a\\u0000b\":1}"), T("[\"a\\u0000\"]"),
        T("[\"\\u12\"]"), T("[\"\\u12G4\"]"), T("[\"\\U0041\"]"), T("[\"\\x41\"]"), T("[\"\\a\"]"),
        T("[\"\\'\"]"), T("[\"\\ \"]"), T("[\"\\\"]"), T("[\"abc]"), T("\"abc"), T("\"\\"),
        T("\"\\u"), T("\"\\u00"), T("\"\\ud83d\\ude0"),
        /* raw control characters and NUL bytes */
        T("[\"\x01\"]"), T("[\"\x1f\"]"), T("[\"a\tb\"]"), T("[\"a\nb\"]"), T("[\"a\rb\"]"),
        T("[\"a\0b\"]"), T("{\"a\0\":1}"), T("{\"\0\":1}"), T("\0"), T("\0[]"), T("[\0]"),
        /* UTF-8: overlong, surrogates, above U+10FFFF, F5+, stray or missing continuations */
        T("[\"\xc0\x80\"]"), T("[\"\xc1\xbf\"]"), T("[\"\xe0\x80\x80\"]"), T("[\"\xe0\x9f\xbf\"]"),
        T("[\"\xf0\x80\x80\x80\"]"), T("[\"\xf0\x8f\xbf\xbf\"]"), T("[\"\xed\xa0\x80\"]"),
        T("[\"\xed\xbf\xbf\"]"), T("[\"\xed\xa0\xbd\xed\xb8\x80\"]"), T("[\"\xf4\x90\x80\x80\"]"),
        T("[\"\xf5\x80\x80\x80\"]"), T("[\"\xf8\x88\x80\x80\x80\"]"), T("[\"\xfc\x84\x80\x80\x80\x80\"]"),
        T("[\"\xfe\"]"), T("[\"\xff\"]"), T("[\"\x80\"]"), T("[\"\xbf\"]"), T("[\"\xc3\"]"),
        T("[\"\xe2\x82\"]"), T("[\"\xf0\x9f\x98\"]"), T("[\"\xc3\x28\"]"), T("[\"\xe2\x28\xa1\"]"),
        T("[\"\xf0\x9f\x28\x80\"]"), T("[\xc3\xa9]"), T("\xc3\xa9"), T("{\"\xc0\xaf\":1}"),
        /* duplicate keys, however spelled, at any level */
        T("{\"a\":1,\"a\":2}"), T("{\"a\":1,\"a\":1}"), T("{\"a\":1,\"\\u0061\":2}"),
        T("{\"x\":{\"a\":1,\"b\":2,\"a\":3}}"), T("[{\"a\":1,\"a\":1}]"), T("{\"\":1,\"\":2}"),
        T("{\"\xc3\xa9\":1,\"\\u00e9\":2}"), T("{\"alg\":\"RS256\",\"alg\":\"none\"}"),
        T("{\"a/b\":1,\"a\\/b\":2}"),
    };
    /* The one deliberate difference: jansson skips a raw NUL byte right after a number or literal
     * (its stream_unget of a 0 byte re-reads a fresh one); RFC 8259 has no NUL outside strings. */
    static const struct text nul_quirk[] = {T("[1\0]"), T("[true\0]"), T("[-0.5e1\0,null\0]"), T("7\0")};
    (void)state;
    for (size_t i = 0; i < N(bad) + N(nul_quirk); i++) {
        const struct text *t = i < N(bad) ? &bad[i] : &nul_quirk[i - N(bad)];
        json_t *j = parse(t->s, t->n, BROKER_MAX_JSON_DEPTH), *ref = jansson(t->s, t->n);
        if (j != NULL)
            fail_msg("reject case %zu accepted: \"%.*s\"", i, (int)t->n, t->s);
        if ((ref != NULL) != (i >= N(bad)))
            fail_msg("reject case %zu: jansson %s it", i, ref ? "accepts" : "rejects");
        json_decref(ref);
    }
}

static char *nest(const char *open, const char *inner, const char *close, size_t d)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close), n = 0;
    char *s = malloc(d * (lo + lc) + li + 1);

    assert_non_null(s);
    for (size_t i = 0; i < d; i++, n += lo)
        memcpy(s + n, open, lo);
    memcpy(s + n, inner, li);
    n += li;
    for (size_t i = 0; i < d; i++, n += lc)
        memcpy(s + n, close, lc);
    s[n] = '\0';
    return s;
}

/* Depth is the lexical count jwt_json_load_strict always used: each array or object is one level,
 * scalars none; max_depth containers are allowed, max_depth + 1 are not. */
static void test_depth(void **state)
{
    static const struct {
        const char *open, *inner, *close;
    } shapes[] = {{"[", "", "]"}, {"[", "1", "]"}, {"{\"a\":", "{}", "}"}, {"[{\"a\":", "[]", "}]"}};
    (void)state;
    for (size_t sh = 0; sh < N(shapes); sh++)
        for (size_t limit = 1; limit <= BROKER_MAX_JSON_DEPTH; limit++) {
            /* shape 2 and 3 add levels per step; nest until the real depth is limit or limit+1 */
            size_t per = sh == 3 ? 2 : 1, extra = strcmp(shapes[sh].inner, "") && strcmp(shapes[sh].inner, "1") ? 1 : 0;
            for (size_t d = 1; d * per + extra <= limit + 1; d++) {
                char *s = nest(shapes[sh].open, shapes[sh].inner, shapes[sh].close, d);
                json_t *j = parse(s, strlen(s), limit);
                if (d * per + extra <= limit)
                    json_decref(accept_same(s, strlen(s), limit));
                else if (j != NULL)
                    fail_msg("depth %zu accepted at max_depth %zu: %s", d * per + extra, limit, s);
                json_decref(j);
                free(s);
            }
        }

    json_t *j = accept_same(S("7"), 0); /* max_depth 0: scalars only */
    json_decref(j);
    assert_null(parse(S("[]"), 0));
    assert_null(parse(S("{}"), 0));
    json_decref(accept_same(S("[1,\"x\",{}]"), 2));
    assert_null(parse(S("[1,\"x\",{}]"), 1));
    assert_null(parse(S("{\"a\":[]}"), 1));
    assert_null(parse(S("[{}]"), 1));

    /* a hostile "[[[[..." stops at the limit; a huge max_depth is capped, bounding recursion */
    char *deep = nest("[", "", "]", 100000);
    assert_null(json_parse_strict((const uint8_t *)deep, 100000, BROKER_MAX_JSON_DEPTH));
    assert_null(json_parse_strict((const uint8_t *)deep, 200000, SIZE_MAX));
    free(deep);
    deep = nest("[", "", "]", JSON_PARSE_DEPTH_CAP);
    json_decref(accept_same(deep, strlen(deep), SIZE_MAX));
    free(deep);
    deep = nest("[", "", "]", JSON_PARSE_DEPTH_CAP + 1);
    assert_null(parse(deep, strlen(deep), SIZE_MAX));
    free(deep);
}

/* Every proper prefix of a document is rejected, read from an exact-size buffer. */
static void truncations(const char *s, size_t n)
{
    json_decref(accept_same(s, n, BROKER_MAX_JSON_DEPTH));
    for (size_t k = 0; k < n; k++) {
        json_t *j = parse(s, k, BROKER_MAX_JSON_DEPTH);
        if (j != NULL)
            fail_msg("prefix of %zu bytes accepted: \"%.*s\"", k, (int)k, s);
    }
}

static void test_truncations(void **state)
{
    (void)state;
    truncations(S("{\"a\":[1,-2.5e+3,true,false,null,\"x\\u00e9\\ud83d\\ude00\\n\xe2\x82\xac\",{\"b\":{}},[]],"
                  "\"c\":\"\",\"d\":-0,\"e\":12345678901234}"));
    truncations(S("[\"\xf0\x9f\x98\x80\",\"\\/\",9223372036854775807,-9223372036854775808,0.5]"));
}

/* Only len bytes are read: the byte after a value never changes it. */
static void test_exact_length(void **state)
{
    json_t *j;
    (void)state;
    j = json_parse_strict((const uint8_t *)"[1]x", 3, 1);
    assert_non_null(j);
    json_decref(j);
    assert_null(json_parse_strict((const uint8_t *)"\"ab\"", 3, 1));
    j = json_parse_strict((const uint8_t *)"1234", 3, 1);
    assert_int_equal(json_integer_value(j), 123);
    json_decref(j);
    j = json_parse_strict((const uint8_t *)"truex", 4, 1);
    assert_true(json_is_true(j));
    assert_null(json_parse_strict((const uint8_t *)"1.5", 2, 1));
    assert_null(json_parse_strict((const uint8_t *)"1e5", 2, 1));
    assert_null(json_parse_strict(NULL, 0, 1));
}

/* Header and claims of every real token and RFC vector, compared with jansson. */
static void test_real_tokens(void **state)
{
    static const char *const dirs[] = {"github-actions", "kubernetes", "jose-rfc-vectors"};
    size_t json_docs = 0;
    (void)state;

    for (size_t d = 0; d < N(dirs); d++) {
        char path[512];
        struct dirent *e;
        DIR *dir;
        snprintf(path, sizeof(path), "%s/%s", test_fixtures_dir(), dirs[d]);
        assert_non_null(dir = opendir(path));
        while ((e = readdir(dir)) != NULL) {
            size_t l = strlen(e->d_name), tlen = 0;
            if (l < 5 || (strcmp(e->d_name + l - 4, ".jwt") != 0 && strcmp(e->d_name + l - 4, ".jws") != 0))
                continue;
            snprintf(path, sizeof(path), "%s/%s", dirs[d], e->d_name);
            char *tok = test_read_file(path, 1, &tlen), *dot = tok ? memchr(tok, '.', tlen) : NULL, *dot2;
            assert_non_null(dot);
            assert_non_null(dot2 = memchr(dot + 1, '.', tlen - (size_t)(dot + 1 - tok)));
            const char *seg[2] = {tok, dot + 1};
            size_t seglen[2] = {(size_t)(dot - tok), (size_t)(dot2 - dot - 1)};
            for (int s = 0; s < 2; s++) {
                uint8_t buf[B64URL_DECODED_MAX(BROKER_MAX_TOKEN_LEN)];
                size_t n;
                assert_int_equal(b64url_decode((const uint8_t *)seg[s], seglen[s], buf, sizeof(buf), &n), BROKER_OK);
                json_t *ref = jansson((const char *)buf, n), *j;
                if (ref == NULL) { /* RFC 7520's payload is prose, not JSON */
                    assert_null(parse((const char *)buf, n, BROKER_MAX_JSON_DEPTH));
                    continue;
                }
                j = accept_same((const char *)buf, n, BROKER_MAX_JSON_DEPTH);
                assert_true(json_is_object(j));
                json_decref(j);
                json_decref(ref);
                json_docs++;
            }
            free(tok);
        }
        closedir(dir);
    }
    assert_true(json_docs >= 20); /* 10 tokens with a JSON header and claims, 5 RFC headers at least */
}

/* The wrapper the rest of Broker calls: documents are objects or arrays, as with json_loadb. */
static void test_jwt_json_load_strict(void **state)
{
    static const struct text scalars[] = {T("1"), T("\"s\""), T("true"), T("null"), T(" -0.5 ")};
    json_t *j;
    (void)state;
    for (size_t i = 0; i < N(scalars); i++)
        assert_null(jwt_json_load_strict((const uint8_t *)scalars[i].s, scalars[i].n, BROKER_MAX_JSON_DEPTH));
    j = jwt_json_load_strict((const uint8_t *)"{\"grant_type\":\"x\"}", 18, 1); /* form.c's depth */
    assert_true(json_is_object(j));
    json_decref(j);
    assert_null(jwt_json_load_strict((const uint8_t *)"{\"a\":[]}", 8, 1));
    j = jwt_json_load_strict((const uint8_t *)" [] ", 4, 1);
    assert_true(json_is_array(j));
    json_decref(j);
    assert_null(jwt_json_load_strict((const uint8_t *)"{\"a\":1,\"a\":1}", 13, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_table),
        cmocka_unit_test(test_decoded_values),
        cmocka_unit_test(test_long_values),
        cmocka_unit_test(test_reject_table),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_exact_length),
        cmocka_unit_test(test_real_tokens),
        cmocka_unit_test(test_jwt_json_load_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
