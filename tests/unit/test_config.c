/* config: the default number of event loops follows the CPUs this process may run on (a taskset
 * or a container's cpuset), not all the machine has; BROKER_THREADS overrides it within 1..256. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_follow_affinity)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
