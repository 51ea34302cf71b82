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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_round_trip_bytes),
        cmocka_unit_test(test_rejects_padding_and_std_alphabet),
        cmocka_unit_test(test_rejects_non_ascii_and_nul),
        cmocka_unit_test(test_trailing_bits_exhaustive),
        cmocka_unit_test(test_output_capacity),
        cmocka_unit_test(test_zero_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
