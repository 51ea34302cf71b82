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

/* ---- Differential test: the previous urlencoded parser, kept verbatim as the reference. The
 * word-at-a-time pct_decode in form.c must accept and refuse exactly the same bodies and produce
 * the same fields. ---- */

static int old_hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static enum broker_err old_pct_decode(const uint8_t *in, size_t n, char *out, size_t *out_len)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (n - i < 3 || (hi = old_hex_val(in[i + 1])) < 0 || (lo = old_hex_val(in[i + 2])) < 0)
                return BROKER_ERR_BAD_REQUEST;
            c = (uint8_t)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0')
            return BROKER_ERR_BAD_REQUEST;
        out[o++] = (char)c;
    }
    *out_len = o;
    return BROKER_OK;
}

static enum broker_err old_add_field(struct form *out, const char *name, size_t name_len, char *value, size_t len)
{
    struct form_field *fl;

    if (name_len == 0 || name_len > BROKER_MAX_FORM_NAME || len > BROKER_MAX_FORM_VALUE ||
        memchr(name, '\0', name_len) != NULL)
        return BROKER_ERR_BAD_REQUEST;
    for (size_t i = 0; i < out->n; i++)
        if (strlen(out->f[i].name) == name_len && memcmp(out->f[i].name, name, name_len) == 0)
            return BROKER_ERR_BAD_REQUEST;
    if (out->n == BROKER_MAX_FORM_FIELDS)
        return BROKER_ERR_BAD_REQUEST;
    fl = &out->f[out->n++];
    memcpy(fl->name, name, name_len);
    fl->name[name_len] = '\0';
    fl->value = value;
    fl->len = len;
    return BROKER_OK;
}

static enum broker_err old_form_parse(const uint8_t *p, size_t len, struct form *out, char *scratch,
                                      size_t scratch_cap)
{
    char name[BROKER_MAX_FORM_NAME];
    size_t pos = 0, used = 0;
    enum broker_err err = BROKER_OK;

    out->n = 0;
    while (pos < len) {
        const uint8_t *pair = p + pos, *amp = memchr(pair, '&', len - pos);
        size_t plen = amp ? (size_t)(amp - pair) : len - pos;
        const uint8_t *eq = memchr(pair, '=', plen);
        size_t nlen_enc = eq ? (size_t)(eq - pair) : plen;
        size_t nlen, vlen;

        pos += plen + 1;
        if (plen == 0)
            continue;
        if (nlen_enc == 0) {
            err = BROKER_ERR_BAD_REQUEST;
            break;
        }
        if (plen > scratch_cap - used) {
            err = BROKER_ERR_INTERNAL;
            break;
        }
        if ((err = old_pct_decode(pair, nlen_enc, scratch + used, &nlen)) != BROKER_OK)
            break;
        if (nlen > BROKER_MAX_FORM_NAME) {
            err = BROKER_ERR_BAD_REQUEST;
            break;
        }
        memcpy(name, scratch + used, nlen);
        if (eq == NULL)
            vlen = 0;
        else if ((err = old_pct_decode(eq + 1, plen - nlen_enc - 1, scratch + used, &vlen)) != BROKER_OK)
            break;
        scratch[used + vlen] = '\0';
        if ((err = old_add_field(out, name, nlen, scratch + used, vlen)) != BROKER_OK)
            break;
        used += vlen + 1;
    }
    if (err != BROKER_OK)
        out->n = 0;
    return err;
}

struct fdiff_counts {
    unsigned long cases, ok, bad, internal;
};

/* Old and new on one body (copied to the heap at exactly len bytes) with scratch of exactly cap
 * bytes: same code, same fields in the same order, same names, lengths and value bytes. */
static void fdiff_one(const uint8_t *body, size_t len, size_t cap, struct fdiff_counts *c)
{
    uint8_t *p = malloc(len ? len : 1);
    char *sa = malloc(cap ? cap : 1), *sb = malloc(cap ? cap : 1);
    struct form fa, fb;
    assert_true(p && sa && sb);
    memcpy(p, body, len);
    fb.n = 99;
    enum broker_err ea = old_form_parse(p, len, &fa, sa, cap);
    enum broker_err eb = form_parse(p, len, &fb, sb, cap);
    if (ea != eb || fa.n != fb.n)
        fail_msg("form differs: len %zu cap %zu: old %s/%zu new %s/%zu", len, cap, broker_strerror(ea), fa.n,
                 broker_strerror(eb), fb.n);
    for (size_t i = 0; i < fa.n; i++) {
        if (strcmp(fa.f[i].name, fb.f[i].name) != 0 || fa.f[i].len != fb.f[i].len ||
            memcmp(fa.f[i].value, fb.f[i].value, fa.f[i].len + 1) != 0)
            fail_msg("form field %zu differs: len %zu", i, len);
    }
    c->cases++;
    c->ok += ea == BROKER_OK;
    c->bad += ea == BROKER_ERR_BAD_REQUEST;
    c->internal += ea == BROKER_ERR_INTERNAL;
    free(p);
    free(sa);
    free(sb);
}

static uint64_t fdiff_rng = 0x9e3779b97f4a7c15ull; /* fixed seed: failures reproduce */

static uint64_t fdiff_next(void)
{
    fdiff_rng ^= fdiff_rng << 13;
    fdiff_rng ^= fdiff_rng >> 7;
    fdiff_rng ^= fdiff_rng << 17;
    return fdiff_rng;
}

static void test_diff_short_exhaustive(void **state)
{
    /* escapes (valid and not, both cases), separators, NUL, plain text, bytes below ',' that are
     * not special ('*', ' '), non-ASCII */
    static const uint8_t few[] = {'%', '+', '&', '=', '\0', '0', '2', '9', 'a', 'f',
                                  'g', 'A', 'F', 'G', 'x', ' ', '*', '.', 0x80, 0xff};
    const size_t nf = sizeof(few);
    struct fdiff_counts c = {0};
    uint8_t in[4] = {0};
    (void)state;
    fdiff_one(in, 0, 0, &c);
    for (int x = 0; x < 256; x++) {
        in[0] = (uint8_t)x;
        fdiff_one(in, 1, 1, &c);
        for (int y = 0; y < 256; y++) {
            in[1] = (uint8_t)y;
            fdiff_one(in, 2, 2, &c);
        }
    }
    for (size_t x = 0; x < nf; x++)
        for (size_t y = 0; y < nf; y++)
            for (size_t z = 0; z < nf; z++) {
                in[0] = few[x], in[1] = few[y], in[2] = few[z];
                fdiff_one(in, 3, 3, &c);
                for (size_t w = 0; w < nf; w++) {
                    in[3] = few[w];
                    fdiff_one(in, 4, 4, &c);
                    fdiff_one(in, 4, 2, &c); /* short scratch: INTERNAL at the same pair */
                }
            }
    print_message("form exhaustive short: %lu cases (%lu ok, %lu bad, %lu internal)\n", c.cases, c.ok, c.bad,
                  c.internal);
    assert_true(c.cases >= 1 + 256 + 65536 + 8000 + 2 * 160000);
    assert_true(c.ok > 10000 && c.bad > 10000 && c.internal > 1000);
}

/* Each byte value at each position of a body whose components are long enough for the
 * word-at-a-time scan, a special byte in every lane of a word and in the byte-wise tail. */
static void test_diff_every_byte_every_position(void **state)
{
    static const char base[] = "subject_token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln&scope=read+wr%69te&aud=x%2Fy";
    uint8_t in[sizeof(base)];
    struct fdiff_counts c = {0};
    const size_t len = sizeof(base) - 1;
    (void)state;
    memcpy(in, base, len);
    fdiff_one(in, len, len, &c);
    assert_int_equal(c.ok, 1);
    for (size_t pos = 0; pos < len; pos++) {
        for (int v = 0; v < 256; v++) {
            in[pos] = (uint8_t)v;
            fdiff_one(in, len, len, &c);
        }
        in[pos] = (uint8_t)base[pos];
    }
    assert_true(c.ok > 10000 && c.bad > 1000);
}

/* Random bodies of 0-300 bytes: structured pairs with repeated names half the time, arbitrary
 * pieces otherwise; escapes valid, truncated or broken, '%00', raw NULs and high bytes. */
static void test_diff_random(void **state)
{
    static const char plain[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~*";
    static const char hexd[] = "0123456789abcdefABCDEF";
    static const char *const names[] = {"a",     "b",        "c",        "d",    "grant_type", "subject_token",
                                        "scope", "audience", "resource", "a%62", "%61"};
    struct fdiff_counts c = {0};
    uint8_t in[300];
    (void)state;
    for (int it = 0; it < 200000; it++) {
        size_t len = (size_t)(fdiff_next() % (sizeof(in) + 1)), n = 0;
        bool structured = it % 2 == 0;
        uint64_t noise = (uint64_t[]){0, 0, 500, 60, 8}[fdiff_next() % 5]; /* 1 in noise pieces is junk */
        while (n < len) {
            uint64_t r = fdiff_next();
            if (structured && (n == 0 || in[n - 1] == '&')) {
                const char *nm = names[r % (sizeof(names) / sizeof(names[0]))];
                for (size_t k = 0; nm[k] && n < len; k++)
                    in[n++] = (uint8_t)nm[k];
                if (n < len)
                    in[n++] = '=';
                continue;
            }
            switch ((r >> 8) % 16) {
            case 0:
                in[n++] = '+';
                break;
            case 1:
            case 2:
                in[n++] = '%';
                for (int k = 0; k < 2 && n < len; k++)
                    in[n++] = noise && (r >> (16 + 8 * k)) % noise == 0 ? 'g' /* not hex */
                                                                      : (uint8_t)hexd[(r >> (16 + 8 * k)) % (sizeof(hexd) - 1)];
                break;
            case 3:
                in[n++] = (structured ? (r >> 16) % 8 == 0 : (r >> 16) % 3 == 0) ? '&' : '=';
                break;
            default:
                if (noise && (r >> 32) % noise == 0) {
                    static const uint8_t junk[] = {'\0', '%', '&', '=', 0x80, 0xff, ' ', '\n'};
                    in[n++] = (r >> 40) % 2 ? junk[(r >> 44) % sizeof(junk)] : (uint8_t)(r >> 48);
                } else {
                    in[n++] = (uint8_t)plain[(r >> 16) % (sizeof(plain) - 1)];
                }
            }
        }
        size_t cap = it % 11 == 0 && len > 0 ? (size_t)(fdiff_next() % len) : len;
        fdiff_one(in, len, cap, &c);
    }
    print_message("form random: %lu cases (%lu ok, %lu bad, %lu internal)\n", c.cases, c.ok, c.bad, c.internal);
    assert_int_equal(c.cases, 200000);
    assert_true(c.ok > 30000 && c.bad > 30000 && c.internal > 1000);
}

/* A real exchange body: the GitHub Actions token as subject_token, URNs percent-encoded. */
static void test_diff_real_body(void **state)
{
    size_t tlen = 0;
    char *tok = test_read_file("github-actions/gha_2022-08-05_varunsh-coder_actions-playground.jwt", 1, &tlen);
    struct fdiff_counts c = {0};
    (void)state;
    assert_non_null(tok);
    while (tlen > 0 && (tok[tlen - 1] == '\n' || tok[tlen - 1] == '\r'))
        tlen--;
    size_t cap = tlen + 512;
    char *body = malloc(cap);
    assert_non_null(body);
    int n = snprintf(body, cap,
                     "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Atoken-exchange&subject_token=%.*s"
                     "&subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken-type%%3Aid_token"
                     "&audience=https%%3A%%2F%%2Fbroker.example.com&scope=read+write",
                     (int)tlen, tok);
    assert_true(n > 0 && (size_t)n < cap);
    fdiff_one((const uint8_t *)body, (size_t)n, (size_t)n, &c);
    assert_int_equal(c.ok, 1);
    struct form f;
    assert_int_equal(parse_n(body, (size_t)n, false, &f), BROKER_OK);
    assert_int_equal(f.n, 5);
    assert_field(&f, "audience", "https://broker.example.com");
    size_t vlen = 0;
    const char *v = form_get(&f, "subject_token", &vlen);
    assert_non_null(v);
    assert_int_equal(vlen, tlen);
    assert_memory_equal(v, tok, tlen);
    form_release(&f);
    free(body);
    free(tok);
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
        cmocka_unit_test(test_diff_short_exhaustive),
        cmocka_unit_test(test_diff_every_byte_every_position),
        cmocka_unit_test(test_diff_random),
        cmocka_unit_test(test_diff_real_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
