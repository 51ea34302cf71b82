/* rnd: the per-thread pool hands out each byte once, refills across its boundary, refuses bad
 * sizes, and a forked child never repeats what its parent hands out next. */
#include "test_util.h"
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "rnd.h"

#define DRAWS 200 /* 200 x 64 bytes: the 1 KiB pool is refilled 12 times */

static void test_draws_differ_and_refill(void **state)
{
    (void)state;
    static uint8_t seen[DRAWS][RND_MAX];
    for (int i = 0; i < DRAWS; i++) {
        size_t n = i % 3 == 0 ? 16 : RND_MAX; /* sizes that do not divide the pool */
        memset(seen[i], 0, sizeof(seen[i]));
        assert_int_equal(rnd_bytes(seen[i], n), BROKER_OK);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], 16);
    }
    /* not all zero, nor one repeated byte: the bytes came from the DRBG */
    int distinct = 0;
    uint8_t hist[256] = {0};
    for (int i = 0; i < DRAWS; i++)
        for (int k = 0; k < 16; k++)
            distinct += hist[seen[i][k]]++ == 0;
    assert_true(distinct > 200);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    uint8_t b[RND_MAX + 1];
    assert_int_equal(rnd_bytes(b, 0), BROKER_ERR_INTERNAL);
    assert_int_equal(rnd_bytes(b, RND_MAX + 1), BROKER_ERR_INTERNAL);
    assert_int_equal(rnd_bytes(NULL, 16), BROKER_ERR_INTERNAL);
}

static void test_fork_child_does_not_repeat(void **state)
{
    (void)state;
    uint8_t first[16], parent[16], child[16];
    int fds[2];
    assert_int_equal(rnd_bytes(first, sizeof(first)), BROKER_OK); /* the pool is now full */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t c[16];
        int ok = rnd_bytes(c, sizeof(c)) == BROKER_OK && write(fds[1], c, sizeof(c)) == (ssize_t)sizeof(c);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(rnd_bytes(parent, sizeof(parent)), BROKER_OK);
    assert_int_equal(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* without the fork handler the child would have drawn exactly the parent's next bytes */
    assert_memory_not_equal(parent, child, sizeof(child));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draws_differ_and_refill),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_fork_child_does_not_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
