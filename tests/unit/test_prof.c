/* prof: off unless BROKER_PROFILE_CRYPTO=1 (read once, at first use); on, each measured operation
 * is counted with a non-negative CPU time and shows on the metrics text. */
#include "test_util.h"
#include <stdlib.h>
#include <string.h>
#include "prof.h"

static void test_counts_when_enabled(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(setenv("BROKER_PROFILE_CRYPTO", "1", 1), 0);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = prof_begin();
        assert_true(t0 > 0);
        volatile unsigned x = 0;
        for (unsigned k = 0; k < 100000; k++)
            x += k;
        prof_end(PROF_SIGN, t0);
        assert_true(x > 0);
    }
    prof_end(PROF_VERIFY, 0); /* t0 0: profiling was off when it began, nothing counted */
    prof_end_n(PROF_SIGN, prof_begin(), 40); /* a batch of 40 signatures */
    prof_end_n(PROF_VERIFY, 0, 5);
    size_t n = prof_metrics(out, sizeof(out));
    assert_true(n > 0 && n == strlen(out));
    assert_non_null(strstr(out, "broker_crypto_ops_total{op=\"sign\"} 43\n"));
    assert_non_null(strstr(out, "broker_crypto_ops_total{op=\"verify\"} 0\n"));
    assert_non_null(strstr(out, "broker_crypto_cpu_seconds_total{op=\"sign\"} 0."));
    /* a buffer too small for any line gets nothing, never a partial line */
    assert_int_equal(prof_metrics(out, 10), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_counts_when_enabled)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
