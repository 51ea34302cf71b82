/* config: the default number of event loops follows the CPUs this process may run on (a taskset
 * or a container's cpuset), not all the machine has; BROKER_THREADS overrides it within 1..256.
 * BROKER_ISSUER is an http(s) URL with a host and no query or fragment (RFC 8414 §2). */
#include "test_util.h"
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config.h"

static void test_threads_follow_affinity(void **state)
{
    (void)state;
    struct config c;
    char err[256];
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
    unsetenv("BROKER_THREADS");
    memset(&c, 0, sizeof(c));
    assert_int_equal(config_from_env(&c, err, sizeof(err)), BROKER_OK);
    assert_int_equal(c.threads, (unsigned)CPU_COUNT(&all));

    int first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
        if (CPU_ISSET(i, &all))
            first = i;
    assert_true(first >= 0);
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(config_from_env(&c, err, sizeof(err)), BROKER_OK);
    assert_int_equal(c.threads, 1);

    assert_int_equal(setenv("BROKER_THREADS", "3", 1), 0); /* the operator's word wins */
    memset(&c, 0, sizeof(c));
    assert_int_equal(config_from_env(&c, err, sizeof(err)), BROKER_OK);
    assert_int_equal(c.threads, 3);
    assert_int_equal(setenv("BROKER_THREADS", "0", 1), 0);
    assert_int_equal(config_from_env(&c, err, sizeof(err)), BROKER_ERR_CONFIG);
    assert_non_null(strstr(err, "BROKER_THREADS"));
    unsetenv("BROKER_THREADS");
    assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
}

static void test_issuer_url(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want; /* want NULL: refused */
    } cases[] = {
        {"https://broker.example.com", "https://broker.example.com"},
        {"https://broker.example.com/", "https://broker.example.com"},
        {"http://127.0.0.1:8080/tenant-a//", "http://127.0.0.1:8080/tenant-a"},
        {"https://", NULL},
        {"https://:443", NULL},
        {"https://@", NULL},
        {"https://a:b@h.example.com", NULL},
        {"https://[::1]:8443/x", "https://[::1]:8443/x"},
        {"https://h.example.com/a@b", "https://h.example.com/a@b"},
        {"https:///path", NULL},
        {"http://", NULL},
        {"ftp://x", NULL},
        {"broker.example.com", NULL},
        {"https://b.example.com?x=1", NULL},
        {"https://b.example.com#f", NULL},
        {"https://b.example.com/a b", NULL},
        {"https://b.example.com/\n", NULL},
    };
    char err[256];
    struct config c;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(setenv("BROKER_ISSUER", cases[i].in, 1), 0);
        enum broker_err e = config_from_env(&c, err, sizeof(err));
        if (cases[i].want == NULL) {
            assert_int_equal(e, BROKER_ERR_CONFIG);
            assert_non_null(strstr(err, "BROKER_ISSUER"));
        } else {
            assert_int_equal(e, BROKER_OK);
            assert_string_equal(c.issuer, cases[i].want);
        }
    }
    char big[600];
    memcpy(big, "https://", 8);
    memset(big + 8, 'a', sizeof(big) - 9);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(setenv("BROKER_ISSUER", big, 1), 0);
    assert_int_equal(config_from_env(&c, err, sizeof(err)), BROKER_ERR_CONFIG);
    unsetenv("BROKER_ISSUER");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_follow_affinity), cmocka_unit_test(test_issuer_url)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
