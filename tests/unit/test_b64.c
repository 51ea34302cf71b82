/* Strict base64url: RFC 4648 vectors, round trips, and every rejection rule. */
#include "test_util.h"
#include <stdbool.h>
#include "b64.h"

static enum broker_err dec(const char *s, uint8_t *out, size_t cap, size_t *out_len)
{
    return b64url_decode((const uint8_t *)s, strlen(s), out, cap, out_len);
}

static void test_rfc4648_vectors(void **state)
{
    static const struct { const char *plain, *enc; } v[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char enc[16];
        uint8_t out[16];
        size_t n = b64url_encode((const uint8_t *)v[i].plain, strlen(v[i].plain), enc), olen = 99;
        assert_int_equal(n, strlen(v[i].enc));
        assert_int_equal(n, B64URL_ENCODED_LEN(strlen(v[i].plain)));
        assert_memory_equal(enc, v[i].enc, n);
        assert_int_equal(dec(v[i].enc, out, sizeof(out), &olen), BROKER_OK);
        assert_int_equal(olen, strlen(v[i].plain));
        if (olen)
            assert_memory_equal(out, v[i].plain, olen);
    }
}

static void test_url_alphabet(void **state)
{
    const uint8_t in[] = {0xfb, 0xff, 0xbf};
    char enc[8];
    uint8_t out[8];
    size_t olen;
    (void)state;
    assert_int_equal(b64url_encode(in, 3, enc), 4);
    assert_memory_equal(enc, "-_-_", 4);
    assert_int_equal(dec("-_8", out, sizeof(out), &olen), BROKER_OK);
    assert_int_equal(olen, 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
}

static void test_round_trip_bytes(void **state)
{
    uint8_t in[300], out[300];
    char enc[400];
    uint32_t x = 12345;
    (void)state;
    for (size_t len = 0; len <= sizeof(in); len++) {
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            in[i] = (uint8_t)(x >> 16);
        }
        if (len > 0)
            in[0] = 0; /* bytes, not strings: NUL must survive */
        size_t n = b64url_encode(in, len, enc), olen;
        assert_int_equal(n, B64URL_ENCODED_LEN(len));
        assert_true(B64URL_DECODED_MAX(n) >= len);
        assert_int_equal(b64url_decode((uint8_t *)enc, n, out, len, &olen), BROKER_OK);
        assert_int_equal(olen, len);
        if (len)
            assert_memory_equal(in, out, len);
    }
}

static void test_rejects_padding_and_std_alphabet(void **state)
{
    static const char *const bad[] = {
        "Zg==", "Zm8=", "Zg=", "=", "====", "Zm9v====", /* padding */
        "Zm9v+A", "Zm9v/A", "+/+/", "ab+c", "ab/c",   /* standard alphabet */
        " Zm9v", "Zm9v ", "Zm 9v", "Zm9v\n", "Zm9v\r\n", "\tZm9v", /* whitespace */
        "Zm9v.A", "Zm9v!A", "Zm9v*A", "Zm9v~A", "Zm9v%3D",          /* other ASCII */
        "Zm9vY", "A", "AAAAA",                                    /* len % 4 == 1 */
        "Zh", "Zm9", "Zm9vYh", "Zm9vYmF", "_x", "AB", "AAB",     /* non-zero trailing bits */
    };
    uint8_t out[64];
    size_t olen;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        olen = 77;
        assert_int_equal(dec(bad[i], out, sizeof(out), &olen), BROKER_ERR_TOKEN_MALFORMED);
        assert_int_equal(olen, 0);
    }
}

static void test_rejects_non_ascii_and_nul(void **state)
{
    uint8_t in[4] = {'Z', 'm', '9', 'v'}, out[8];
    size_t olen;
    (void)state;
    for (int c = 0; c < 256; c++) {
        bool valid = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '_';
        in[1] = (uint8_t)c; /* middle position: no trailing-bit rule applies */
        enum broker_err e = b64url_decode(in, 4, out, sizeof(out), &olen);
        assert_int_equal(e, valid ? BROKER_OK : BROKER_ERR_TOKEN_MALFORMED);
    }
}

static void test_trailing_bits_exhaustive(void **state)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t in[3], out[4];
    size_t olen;
    (void)state;
    for (int a = 0; a < 64; a++) {
        for (int b = 0; b < 64; b++) {
            in[0] = (uint8_t)alpha[a];
            in[1] = (uint8_t)alpha[b];
            /* two chars carry 8 bits: the low 4 bits of the second must be zero */
            assert_int_equal(b64url_decode(in, 2, out, 4, &olen), (b & 0xf) ? BROKER_ERR_TOKEN_MALFORMED : BROKER_OK);
            in[2] = (uint8_t)alpha[b];
            in[1] = 'A';
            /* three chars carry 16 bits: the low 2 bits of the third must be zero */
            assert_int_equal(b64url_decode(in, 3, out, 4, &olen), (b & 0x3) ? BROKER_ERR_TOKEN_MALFORMED : BROKER_OK);
        }
    }
}

static void test_output_capacity(void **state)
{
    uint8_t out[8];
    size_t olen;
    (void)state;
    assert_int_equal(dec("Zm9vYmFy", out, 5, &olen), BROKER_ERR_TOKEN_TOO_LARGE);
    assert_int_equal(dec("Zm9vYmFy", out, 6, &olen), BROKER_OK);
    assert_int_equal(olen, 6);
    assert_int_equal(dec("Zm9vYmE", out, 4, &olen), BROKER_ERR_TOKEN_TOO_LARGE);
    assert_int_equal(dec("Zm9vYmE", out, 5, &olen), BROKER_OK);
    assert_int_equal(dec("", NULL, 0, &olen), BROKER_OK);
    assert_int_equal(olen, 0);
}

static void test_zero_bytes(void **state)
{
    uint8_t out[4] = {9, 9, 9, 9};
    size_t olen;
    (void)state;
    assert_int_equal(dec("AAA", out, sizeof(out), &olen), BROKER_OK);
    assert_int_equal(olen, 2);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
}

/* ---- Differential test: the previous decoder, kept verbatim as the reference. The table-driven
 * decoder in b64.c must accept and refuse exactly the same inputs with the same output. ---- */

static const uint8_t old_dec_table[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,  ['H'] = 7,
    ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
    ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
    ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
    ['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['-'] = 62, ['_'] = 63,
};

static uint32_t old_b64_val(uint8_t c, uint32_t *bad)
{
    uint32_t v = old_dec_table[c];
    *bad |= (v == 0 && c != 'A');
    return v;
}

static enum broker_err old_b64url_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap,
                                         size_t *out_len)
{
    size_t rem = len % 4, full = len / 4;
    size_t need = full * 3 + (rem == 2 ? 1 : rem == 3 ? 2 : 0);
    uint32_t bad = 0;
    size_t o = 0, i = 0;

    *out_len = 0;
    if (rem == 1)
        return BROKER_ERR_TOKEN_MALFORMED;
    if (need > out_cap)
        return BROKER_ERR_TOKEN_TOO_LARGE;
    for (size_t q = 0; q < full; q++, i += 4) {
        uint32_t v = old_b64_val(in[i], &bad) << 18 | old_b64_val(in[i + 1], &bad) << 12 |
                     old_b64_val(in[i + 2], &bad) << 6 | old_b64_val(in[i + 3], &bad);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (rem == 2) {
        uint32_t v = old_b64_val(in[i], &bad) << 6 | old_b64_val(in[i + 1], &bad);
        bad |= (v & 0xf) != 0;
        out[o++] = (uint8_t)(v >> 4);
    } else if (rem == 3) {
        uint32_t v = old_b64_val(in[i], &bad) << 12 | old_b64_val(in[i + 1], &bad) << 6 | old_b64_val(in[i + 2], &bad);
        bad |= (v & 0x3) != 0;
        out[o++] = (uint8_t)(v >> 10);
        out[o++] = (uint8_t)(v >> 2);
    }
    if (bad)
        return BROKER_ERR_TOKEN_MALFORMED;
    *out_len = o;
    return BROKER_OK;
}

static const char old_enc_table[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t old_b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = old_enc_table[v >> 18];
        out[o++] = old_enc_table[(v >> 12) & 63];
        out[o++] = old_enc_table[(v >> 6) & 63];
        out[o++] = old_enc_table[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = old_enc_table[v >> 18];
        out[o++] = old_enc_table[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = old_enc_table[v >> 18];
        out[o++] = old_enc_table[(v >> 12) & 63];
        out[o++] = old_enc_table[(v >> 6) & 63];
    }
    return o;
}

#define DIFF_MAX 512
#define DIFF_CANARY 0xa5

struct diff_counts {
    unsigned long cases, ok, malformed, too_large;
};

/* Old and new on one input at one capacity: same code, same length, same bytes; new writes
 * nothing at or past out_cap (the canary after it stays intact). */
static void diff_one(const uint8_t *in, size_t len, size_t cap, struct diff_counts *c)
{
    uint8_t a[DIFF_MAX + 8], b[DIFF_MAX + 8];
    size_t alen = 111, blen = 222;
    assert_true(cap <= DIFF_MAX);
    memset(b, DIFF_CANARY, sizeof(b));
    enum broker_err ea = old_b64url_decode(in, len, a, cap, &alen);
    enum broker_err eb = b64url_decode(in, len, b, cap, &blen);
    if (ea != eb || alen != blen || (ea == BROKER_OK && alen && memcmp(a, b, alen) != 0))
        fail_msg("b64 differs: len %zu cap %zu: old %s/%zu new %s/%zu", len, cap, broker_strerror(ea), alen,
                 broker_strerror(eb), blen);
    for (size_t i = cap; i < sizeof(b); i++)
        if (b[i] != DIFF_CANARY)
            fail_msg("b64 wrote past out_cap: len %zu cap %zu byte %zu", len, cap, i);
    c->cases++;
    c->ok += ea == BROKER_OK;
    c->malformed += ea == BROKER_ERR_TOKEN_MALFORMED;
    c->too_large += ea == BROKER_ERR_TOKEN_TOO_LARGE;
}

/* Every input at a roomy capacity, at exactly the decoded size and one below it. */
static void diff_caps(const uint8_t *in, size_t len, struct diff_counts *c)
{
    size_t need = len / 4 * 3 + (len % 4 == 2 ? 1 : len % 4 == 3 ? 2 : 0);
    diff_one(in, len, DIFF_MAX, c);
    if (need <= DIFF_MAX)
        diff_one(in, len, need, c);
    if (need > 0 && need - 1 <= DIFF_MAX)
        diff_one(in, len, need - 1, c);
}

static uint64_t diff_rng = 0x2545f4914f6cdd1dull; /* fixed seed: failures reproduce */

static uint64_t diff_next(void)
{
    diff_rng ^= diff_rng << 13;
    diff_rng ^= diff_rng >> 7;
    diff_rng ^= diff_rng << 17;
    return diff_rng;
}

static const char diff_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void test_diff_short_exhaustive(void **state)
{
    /* values with different low bits (trailing-bit rules) plus near misses and non-ASCII */
    static const uint8_t few[] = {'A', 'B', 'E', 'Q', 'g', 'w', 'z', '0', '9', '-', '_',
                                  '=', '+', '/', ' ', '\n', '\0', '.', 0x80, 0xff};
    const size_t nf = sizeof(few);
    struct diff_counts c = {0};
    uint8_t in[4] = {0};
    (void)state;
    diff_caps(in, 0, &c);
    for (int x = 0; x < 256; x++) {
        in[0] = (uint8_t)x;
        diff_caps(in, 1, &c);
        for (int y = 0; y < 256; y++) {
            in[1] = (uint8_t)y;
            diff_caps(in, 2, &c);
        }
    }
    for (size_t x = 0; x < nf; x++)
        for (size_t y = 0; y < nf; y++)
            for (size_t z = 0; z < nf; z++) {
                in[0] = few[x], in[1] = few[y], in[2] = few[z];
                diff_caps(in, 3, &c);
                for (size_t w = 0; w < nf; w++) {
                    in[3] = few[w];
                    diff_caps(in, 4, &c);
                }
            }
    /* 1 + 256 + 65536 + 20^3 + 20^4 inputs */
    assert_true(c.cases >= 1 + 256 + 65536 + 8000 + 160000);
    assert_true(c.ok > 10000 && c.malformed > 10000 && c.too_large > 10000);
    print_message("b64 exhaustive short: %lu cases (%lu ok, %lu malformed, %lu too large)\n", c.cases, c.ok,
                  c.malformed, c.too_large);
}

/* Each byte value at each position of valid strings: the unrolled main loop, the single quad and
 * the 2-3 character tail each see every invalid byte in every slot. */
static void test_diff_every_byte_every_position(void **state)
{
    struct diff_counts c = {0};
    uint8_t in[40];
    (void)state;
    for (size_t len = 1; len <= sizeof(in); len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)diff_alpha[diff_next() % 64];
        if (len % 4 == 2)
            in[len - 1] = 'Q'; /* canonical tail: only the substituted byte can make it fail */
        else if (len % 4 == 3)
            in[len - 1] = 'E';
        for (size_t pos = 0; pos < len; pos++) {
            uint8_t keep = in[pos];
            for (int v = 0; v < 256; v++) {
                in[pos] = (uint8_t)v;
                diff_caps(in, len, &c);
            }
            in[pos] = keep;
        }
    }
    assert_true(c.ok > 10000 && c.malformed > 100000);
}

static void test_diff_random(void **state)
{
    static const uint8_t junk[] = {'=', '+', '/', ' ', '\n', '\r', '\t', '\0', '.', '%', 0x80, 0xc3, 0xff, '~'};
    struct diff_counts c = {0};
    uint8_t in[300];
    (void)state;
    for (int it = 0; it < 200000; it++) {
        size_t len = (size_t)(diff_next() % (sizeof(in) + 1));
        /* per input, how often a character is junk: never (valid unless the tail is not canonical),
         * rarely, often */
        uint64_t rate = (uint64_t[]){0, 0, 1000, 40, 3}[diff_next() % 5];
        for (size_t i = 0; i < len; i++) {
            uint64_t r = diff_next();
            if (rate && r % rate == 0)
                in[i] = junk[(r >> 32) % sizeof(junk)];
            else if (rate && (r >> 20) % 64 == 0)
                in[i] = (uint8_t)(r >> 40); /* any byte at all */
            else
                in[i] = (uint8_t)diff_alpha[(r >> 32) % 64];
        }
        if (it % 2 == 0 && len % 4 >= 2) /* make half the tails canonical so successes are common */
            in[len - 1] = len % 4 == 2 ? 'g' : 'I';
        size_t need = len / 4 * 3 + (len % 4 == 2 ? 1 : len % 4 == 3 ? 2 : 0);
        size_t cap = it % 7 == 0 && need > 0 ? (size_t)(diff_next() % need) : need + (size_t)(diff_next() % 4);
        uint8_t *exact = malloc(len ? len : 1); /* heap, exactly len: ASan sees any over-read */
        assert_non_null(exact);
        memcpy(exact, in, len);
        diff_one(exact, len, cap, &c);
        free(exact);
    }
    print_message("b64 random: %lu cases (%lu ok, %lu malformed, %lu too large)\n", c.cases, c.ok, c.malformed,
                  c.too_large);
    assert_int_equal(c.cases, 200000);
    assert_true(c.ok > 30000 && c.malformed > 30000 && c.too_large > 10000);
}

static void diff_encode(const uint8_t *in, size_t len)
{
    char a[DIFF_MAX + 8], b[DIFF_MAX + 8];
    size_t na = old_b64url_encode(in, len, a);
    memset(b, DIFF_CANARY, sizeof(b));
    size_t nb = b64url_encode(in, len, b);
    if (na != nb || memcmp(a, b, na) != 0)
        fail_msg("b64 encode differs: len %zu", len);
    for (size_t i = nb; i < sizeof(b); i++)
        if ((uint8_t)b[i] != DIFF_CANARY)
            fail_msg("b64 encode wrote past its length: len %zu byte %zu", len, i);
}

/* The encoder's 6-byte word loop against the old one: every 1- and 2-byte input, then random
 * bytes of every length up to 300 (several times each), reading from a buffer of exactly len. */
static void test_diff_encode(void **state)
{
    uint8_t in[2] = {0};
    (void)state;
    diff_encode(in, 0);
    for (int x = 0; x < 256; x++) {
        in[0] = (uint8_t)x;
        diff_encode(in, 1);
        for (int y = 0; y < 256; y++) {
            in[1] = (uint8_t)y;
            diff_encode(in, 2);
        }
    }
    for (int round = 0; round < 20; round++) {
        for (size_t len = 0; len <= 300; len++) {
            uint8_t *p = malloc(len ? len : 1);
            assert_non_null(p);
            for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)diff_next();
            diff_encode(p, len);
            free(p);
        }
    }
}

/* Real tokens: every segment of every fixture token decodes identically. */
static void test_diff_real_tokens(void **state)
{
    static const char *const files[] = {
        "github-actions/gha_2022-08-05_varunsh-coder_actions-playground.jwt",
        "github-actions/gha_2025-03-29_rgl_github-actions-validate-jwt.jwt",
    };
    (void)state;
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len = 0;
        char *tok = test_read_file(files[f], 1, &len);
        assert_non_null(tok);
        while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r'))
            len--;
        size_t start = 0, segs = 0;
        for (size_t i = 0; i <= len; i++) {
            if (i < len && tok[i] != '.')
                continue;
            uint8_t a[4096], b[4096];
            size_t alen, blen;
            assert_int_equal(b64url_decode((uint8_t *)tok + start, i - start, b, sizeof(b), &blen), BROKER_OK);
            assert_int_equal(old_b64url_decode((uint8_t *)tok + start, i - start, a, sizeof(a), &alen), BROKER_OK);
            assert_int_equal(alen, blen);
            assert_memory_equal(a, b, alen);
            start = i + 1;
            segs++;
        }
        assert_int_equal(segs, 3);
        free(tok);
    }
}

static void test_alphabet_ok(void **state)
{
    (void)state;
    assert_true(b64url_alphabet_ok("aZ09-_", 6, 6));
    assert_false(b64url_alphabet_ok("aZ09-_", 6, 5)); /* over max */
    assert_false(b64url_alphabet_ok("", 0, 6));       /* empty */
    assert_false(b64url_alphabet_ok("ab=", 3, 6));    /* padding */
    assert_false(b64url_alphabet_ok("a+b", 3, 6));
    assert_false(b64url_alphabet_ok("a/b", 3, 6));
    assert_false(b64url_alphabet_ok("a.b", 3, 6));
    assert_false(b64url_alphabet_ok("a\0b", 3, 6));  /* an embedded NUL is not a shorter id */
    assert_false(b64url_alphabet_ok("../x", 4, 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alphabet_ok),
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_round_trip_bytes),
        cmocka_unit_test(test_rejects_padding_and_std_alphabet),
        cmocka_unit_test(test_rejects_non_ascii_and_nul),
        cmocka_unit_test(test_trailing_bits_exhaustive),
        cmocka_unit_test(test_output_capacity),
        cmocka_unit_test(test_zero_bytes),
        cmocka_unit_test(test_diff_short_exhaustive),
        cmocka_unit_test(test_diff_every_byte_every_position),
        cmocka_unit_test(test_diff_random),
        cmocka_unit_test(test_diff_real_tokens),
        cmocka_unit_test(test_diff_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
