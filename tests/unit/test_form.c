/* Token-request body parsing: urlencoded and JSON, decoding, rejection rules and limits. */
#include <stdbool.h>
#include "test_util.h"
#include "form.h"

/* Parse with a scratch buffer of exactly len bytes (heap, so ASan sees any overrun). */
static enum broker_err parse_n(const char *s, size_t len, bool json, struct form *f)
{
    char *scratch = malloc(len ? len : 1);
    enum broker_err e;
    assert_non_null(scratch);
    f->n = 99;
    e = json ? form_parse_json((const uint8_t *)s, len, f, scratch, len)
             : form_parse((const uint8_t *)s, len, f, scratch, len);
    if (e != BROKER_OK)
        assert_int_equal(f->n, 0);
    /* values point into scratch; the tests copy what they need before it goes */
    for (size_t i = 0; i < (e == BROKER_OK ? f->n : 0); i++) {
        char *v = malloc(f->f[i].len + 1);
        memcpy(v, f->f[i].value, f->f[i].len + 1);
        assert_int_equal(strlen(v), f->f[i].len);
        f->f[i].value = v;
    }
    free(scratch);
    return e;
}

static enum broker_err parse(const char *s, struct form *f)
{
    return parse_n(s, strlen(s), false, f);
}

static enum broker_err parse_json(const char *s, struct form *f)
{
    return parse_n(s, strlen(s), true, f);
}

static void form_release(struct form *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->f[i].value);
    f->n = 0;
}

static void expect_bad(const char *s, bool json)
{
    struct form f;
    enum broker_err e = json ? parse_json(s, &f) : parse(s, &f);
    if (e != BROKER_ERR_BAD_REQUEST)
        fail_msg("%.60s: got %s, want bad_request", s, broker_strerror(e));
}

static void assert_field(const struct form *f, const char *name, const char *value)
{
    size_t len = 77;
    const char *v = form_get(f, name, &len);
    if (v == NULL)
        fail_msg("missing field %s", name);
    assert_string_equal(v, value);
    assert_int_equal(len, strlen(value));
}

static void test_basic(void **state)
{
    struct form f;
    size_t len = 5;
    (void)state;
    assert_int_equal(parse("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token="
                           "eyJ.eyJ.sig&scope=a+b%20c&empty=&bare",
                           &f),
                     BROKER_OK);
    assert_int_equal(f.n, 5);
    assert_field(&f, "grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
    assert_field(&f, "subject_token", "eyJ.eyJ.sig");
    assert_field(&f, "scope", "a b c");
    assert_field(&f, "empty", "");
    assert_field(&f, "bare", "");
    assert_null(form_get(&f, "missing", &len));
    assert_int_equal(len, 0);
    assert_null(form_get(&f, "Scope", NULL)); /* names are case-sensitive */
    assert_non_null(form_get(&f, "scope", NULL));
    form_release(&f);
}

static void test_decoding(void **state)
{
    struct form f;
    (void)state;
    assert_int_equal(parse("a=%2B%2b%26%3D%25&b%5Fc=x&d=%C3%A9&e=a=b=c&f+g=h", &f), BROKER_OK);
    assert_field(&f, "a", "++&=%");
    assert_field(&f, "b_c", "x");
    assert_field(&f, "d", "\xc3\xa9");
    assert_field(&f, "e", "a=b=c"); /* only the first '=' splits */
    assert_field(&f, "f g", "h");
    form_release(&f);
}

static void test_bad_escapes_and_nul(void **state)
{
    static const char *const bad[] = {
        "a=%", "a=%2", "a=%zz", "a=%g0", "a=%0g", "a=%%41", "a=x%", "a=%2&b=1", "%=1", "a%=1", "a%4=1",
        "a=%00", "a%00=1", "a=x%00y", "=1", "a=1&=2", "=", "a=% 1",
    };
    struct form f;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i], false);
    /* a raw NUL byte is refused too: the parser is length-based */
    assert_int_equal(parse_n("a=x\0y", 5, false, &f), BROKER_ERR_BAD_REQUEST);
    assert_int_equal(parse_n("a\0=1", 4, false, &f), BROKER_ERR_BAD_REQUEST);
}

static void test_repeats(void **state)
{
    struct form f;
    (void)state;
    /* RFC 6749 §3.2: request parameters must not be included more than once */
    expect_bad("a=1&a=2", false);
    expect_bad("a=1&a=1", false);
    expect_bad("a=1&a", false);
    expect_bad("a=&a=", false);
    expect_bad("scope=x&grant_type=y&scope=x", false);
    expect_bad("a%62=1&ab=2", false); /* same name after decoding */
    expect_bad("a+b=1&a%20b=2", false);
    assert_int_equal(parse("a=1&A=2", &f), BROKER_OK);
    assert_int_equal(f.n, 2);
    form_release(&f);
}

static void test_empty_pairs(void **state)
{
    static const char *const ok[] = {"a=1&&b=2", "&a=1&b=2&", "&&&a=1&&&b=2&&&"};
    struct form f;
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(parse(ok[i], &f), BROKER_OK);
        assert_int_equal(f.n, 2);
        assert_field(&f, "a", "1");
        assert_field(&f, "b", "2");
        form_release(&f);
    }
    assert_int_equal(parse("", &f), BROKER_OK);
    assert_int_equal(f.n, 0);
    assert_int_equal(parse("&&&", &f), BROKER_OK);
    assert_int_equal(f.n, 0);
}

static void test_limits(void **state)
{
    size_t cap = 4 * BROKER_MAX_FORM_VALUE + 256, n;
    char *s = malloc(cap);
    struct form f;
    (void)state;
    assert_non_null(s);
    /* field count */
    for (int total = BROKER_MAX_FORM_FIELDS; total <= BROKER_MAX_FORM_FIELDS + 1; total++) {
        n = 0;
        for (int i = 0; i < total; i++)
            n += (size_t)snprintf(s + n, cap - n, "%sf%d=%d", i ? "&" : "", i, i);
        if (total == BROKER_MAX_FORM_FIELDS) {
            assert_int_equal(parse(s, &f), BROKER_OK);
            assert_int_equal(f.n, BROKER_MAX_FORM_FIELDS);
            form_release(&f);
        } else {
            expect_bad(s, false);
        }
    }
    /* value length is measured decoded: MAX bytes spelled as %41 triples pass, one more fails */
    n = (size_t)snprintf(s, cap, "v=");
    for (int i = 0; i < BROKER_MAX_FORM_VALUE; i++)
        n += (size_t)snprintf(s + n, cap - n, "%%41");
    assert_int_equal(parse(s, &f), BROKER_OK);
    assert_int_equal(f.f[0].len, BROKER_MAX_FORM_VALUE);
    form_release(&f);
    snprintf(s + n, cap - n, "A");
    expect_bad(s, false);
    /* name length */
    memset(s, 'n', BROKER_MAX_FORM_NAME);
    snprintf(s + BROKER_MAX_FORM_NAME, cap - BROKER_MAX_FORM_NAME, "=1");
    assert_int_equal(parse(s, &f), BROKER_OK);
    assert_int_equal(strlen(f.f[0].name), BROKER_MAX_FORM_NAME);
    form_release(&f);
    memset(s, 'n', BROKER_MAX_FORM_NAME + 1);
    snprintf(s + BROKER_MAX_FORM_NAME + 1, cap - BROKER_MAX_FORM_NAME - 1, "=1");
    expect_bad(s, false);
    /* an escaped name that decodes to exactly MAX is fine */
    n = (size_t)snprintf(s, cap, "%%6E");
    memset(s + n, 'n', BROKER_MAX_FORM_NAME - 1);
    snprintf(s + n + BROKER_MAX_FORM_NAME - 1, cap - n - BROKER_MAX_FORM_NAME + 1, "=1");
    assert_int_equal(parse(s, &f), BROKER_OK);
    form_release(&f);
    free(s);
}

static void test_scratch(void **state)
{
    /* scratch_cap == len always suffices (parse_n allocates exactly len); with less, the parser
     * either still fits or says INTERNAL, and never writes past the buffer (heap, under ASan) */
    static const char *const forms[] = {"a", "a&b", "a=1", "a&b&c&d&e&f&g&h", "a=&b=&c=", "ab=%41%42", "x=y+z"};
    struct form f;
    (void)state;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        size_t len = strlen(forms[i]);
        assert_int_equal(parse(forms[i], &f), BROKER_OK);
        form_release(&f);
        for (size_t cap = 0; cap < len; cap++) {
            char *scratch = malloc(cap);
            enum broker_err e = form_parse((const uint8_t *)forms[i], len, &f, scratch, cap);
            assert_true(e == BROKER_OK || (e == BROKER_ERR_INTERNAL && f.n == 0));
            free(scratch);
        }
    }
    char two[2];
    assert_int_equal(form_parse((const uint8_t *)"a=1", 3, &f, two, sizeof(two)), BROKER_ERR_INTERNAL);
    assert_int_equal(form_parse((const uint8_t *)"a", 1, &f, NULL, 0), BROKER_ERR_INTERNAL);
    assert_int_equal(form_parse((const uint8_t *)"", 0, &f, NULL, 0), BROKER_OK);
    assert_int_equal(f.n, 0);
}

static void test_json(void **state)
{
    struct form f;
    (void)state;
    assert_int_equal(parse_json("{\"grant_type\":\"urn:x\",\"subject_token\":\"a.b.c\",\"scope\":\"a b\","
                                "\"u\":\"\\u00e9\\n\\\"\",\"e\":\"\"}",
                                &f),
                     BROKER_OK);
    assert_int_equal(f.n, 5);
    assert_field(&f, "grant_type", "urn:x");
    assert_field(&f, "subject_token", "a.b.c");
    assert_field(&f, "scope", "a b");
    assert_field(&f, "u", "\xc3\xa9\n\"");
    assert_field(&f, "e", "");
    form_release(&f);
    assert_int_equal(parse_json("{}", &f), BROKER_OK);
    assert_int_equal(f.n, 0);
    assert_int_equal(parse_json(" { \"a\" : \"b\" } ", &f), BROKER_OK);
    assert_int_equal(f.n, 1);
    form_release(&f);

    static const char *const bad[] = {
        "", " ", "[]", "[\"a\"]", "\"a\"", "1", "null",
        "{\"a\":1}", "{\"a\":null}", "{\"a\":true}", "{\"a\":[\"x\"]}", "{\"a\":{}}", "{\"a\":{\"b\":\"c\"}}",
        "{\"a\":\"1\",\"a\":\"2\"}",                        /* duplicate */
        "{\"a\":\"x\\u0000y\"}", "{\"a\\u0000\":\"x\"}",   /* NUL */
        "{\"\":\"x\"}",                                    /* empty name */
        "{\"a\":\"1\"", "{\"a\":\"1\"}x", "{\"a\":\"\xff\"}", /* truncated, trailing, bad UTF-8 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i], true);
}

static void test_json_limits(void **state)
{
    size_t cap = BROKER_MAX_FORM_VALUE + 4096, n;
    char *s = malloc(cap);
    struct form f;
    (void)state;
    assert_non_null(s);
    for (int total = BROKER_MAX_FORM_FIELDS; total <= BROKER_MAX_FORM_FIELDS + 1; total++) {
        n = (size_t)snprintf(s, cap, "{");
        for (int i = 0; i < total; i++)
            n += (size_t)snprintf(s + n, cap - n, "%s\"f%d\":\"%d\"", i ? "," : "", i, i);
        snprintf(s + n, cap - n, "}");
        if (total == BROKER_MAX_FORM_FIELDS) {
            assert_int_equal(parse_json(s, &f), BROKER_OK);
            form_release(&f);
        } else {
            expect_bad(s, true);
        }
    }
    n = (size_t)snprintf(s, cap, "{\"v\":\"");
    memset(s + n, 'x', BROKER_MAX_FORM_VALUE);
    snprintf(s + n + BROKER_MAX_FORM_VALUE, cap - n - BROKER_MAX_FORM_VALUE, "\"}");
    assert_int_equal(parse_json(s, &f), BROKER_OK);
    assert_int_equal(f.f[0].len, BROKER_MAX_FORM_VALUE);
    form_release(&f);
    snprintf(s + n + BROKER_MAX_FORM_VALUE, cap - n - BROKER_MAX_FORM_VALUE, "x\"}");
    expect_bad(s, true);
    n = (size_t)snprintf(s, cap, "{\"");
    memset(s + n, 'n', BROKER_MAX_FORM_NAME + 1);
    snprintf(s + n + BROKER_MAX_FORM_NAME + 1, cap - n - BROKER_MAX_FORM_NAME - 1, "\":\"1\"}");
    expect_bad(s, true);
    s[n + BROKER_MAX_FORM_NAME] = '"';
    snprintf(s + n + BROKER_MAX_FORM_NAME, cap - n - BROKER_MAX_FORM_NAME, "\":\"1\"}");
    assert_int_equal(parse_json(s, &f), BROKER_OK);
    form_release(&f);
    /* deep nesting is refused before jansson allocates for it */
    n = (size_t)snprintf(s, cap, "{\"a\":");
    memset(s + n, '[', 3000);
    s[n + 3000] = '\0';
    expect_bad(s, true);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_decoding),
        cmocka_unit_test(test_bad_escapes_and_nul),
        cmocka_unit_test(test_repeats),
        cmocka_unit_test(test_empty_pairs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_scratch),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
