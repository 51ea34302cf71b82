/* The revoked-jti set: membership, idempotent adds keeping the later exp, growth past many
 * resizes, pruning by exp (and shrinking), bounds, colliding seeds, and the process-wide set
 * read by several threads while one writes. */
#include "test_util.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include "revoked.h"

static bool has(const struct revoked_set *s, const char *jti)
{
    return revoked_set_has(s, jti, strlen(jti));
}

static enum broker_err add(struct revoked_set *s, const char *jti, int64_t exp)
{
    return revoked_set_add(s, jti, strlen(jti), exp);
}

static void test_membership(void **state)
{
    (void)state;
    struct revoked_set *s = revoked_set_new(42);
    assert_non_null(s);
    assert_false(has(s, "abc"));
    assert_int_equal(add(s, "abc", 100), BROKER_OK);
    assert_true(has(s, "abc"));
    assert_false(has(s, "ab"));   /* a prefix is another jti */
    assert_false(has(s, "abcd")); /* so is an extension */
    assert_false(has(s, "ABC"));  /* case matters */
    assert_false(revoked_set_has(s, "abc", 0));
    assert_int_equal(revoked_set_count(s), 1);
    /* not NUL-terminated input: only len bytes count */
    assert_true(revoked_set_has(s, "abcXYZ", 3));
    revoked_set_free(s);
}

static void test_add_is_idempotent_and_keeps_later_exp(void **state)
{
    (void)state;
    struct revoked_set *s = revoked_set_new(1);
    assert_int_equal(add(s, "j1", 100), BROKER_OK);
    assert_int_equal(add(s, "j1", 50), BROKER_OK); /* an earlier exp does not shorten it */
    assert_int_equal(revoked_set_count(s), 1);
    assert_int_equal(revoked_set_prune(s, 80), 0);
    assert_true(has(s, "j1"));
    assert_int_equal(add(s, "j1", 200), BROKER_OK); /* a later one extends it */
    assert_int_equal(revoked_set_prune(s, 150), 0);
    assert_true(has(s, "j1"));
    assert_int_equal(revoked_set_prune(s, 201), 1);
    assert_false(has(s, "j1"));
    assert_int_equal(revoked_set_count(s), 0);
    revoked_set_free(s);
}

static void test_bounds(void **state)
{
    (void)state;
    char big[REVOKED_MAX_JTI + 2];
    memset(big, 'a', sizeof(big));
    struct revoked_set *s = revoked_set_new(7);
    assert_int_equal(revoked_set_add(s, "", 0, 1), BROKER_ERR_BAD_REQUEST);
    assert_int_equal(revoked_set_add(s, big, REVOKED_MAX_JTI + 1, 1), BROKER_ERR_BAD_REQUEST);
    assert_false(revoked_set_has(s, big, REVOKED_MAX_JTI + 1));
    assert_int_equal(revoked_set_add(s, big, REVOKED_MAX_JTI, 1), BROKER_OK);
    assert_true(revoked_set_has(s, big, REVOKED_MAX_JTI));
    assert_false(revoked_set_has(s, big, REVOKED_MAX_JTI - 1));
    assert_int_equal(revoked_set_count(s), 1);
    revoked_set_free(s);
}

/* Many entries (several doublings), then pruning half by exp: the rest stay, the table shrinks
 * and still answers, and re-adding works. */
static void test_grow_and_prune(void **state)
{
    (void)state;
    enum { N = 20000 };
    char id[32];
    struct revoked_set *s = revoked_set_new(0x1234);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "jti-%d", i);
        assert_int_equal(add(s, id, i % 2 ? 1000 : 10), BROKER_OK);
    }
    assert_int_equal(revoked_set_count(s), N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "jti-%d", i);
        assert_true(has(s, id));
        snprintf(id, sizeof(id), "other-%d", i);
        assert_false(has(s, id));
    }
    assert_int_equal(revoked_set_prune(s, 11), N / 2);
    assert_int_equal(revoked_set_count(s), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "jti-%d", i);
        assert_int_equal(has(s, id), i % 2 == 1);
    }
    assert_int_equal(revoked_set_prune(s, 11), 0); /* nothing more to drop */
    assert_int_equal(revoked_set_prune(s, 1001), N / 2);
    assert_int_equal(revoked_set_count(s), 0);
    assert_int_equal(add(s, "again", 5), BROKER_OK);
    assert_true(has(s, "again"));
    revoked_set_free(s);
}

/* Two sets with different seeds agree on membership (the seed only moves slots). */
static void test_seeds(void **state)
{
    (void)state;
    struct revoked_set *a = revoked_set_new(0), *b = revoked_set_new(UINT64_MAX);
    char id[32];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "%d", i * 7);
        assert_int_equal(add(a, id, 1), BROKER_OK);
        assert_int_equal(add(b, id, 1), BROKER_OK);
    }
    for (int i = 0; i < 3500; i++) {
        snprintf(id, sizeof(id), "%d", i);
        assert_int_equal(has(a, id), i % 7 == 0);
        assert_int_equal(has(b, id), i % 7 == 0);
    }
    revoked_set_free(a);
    revoked_set_free(b);
}

/* ---- the process-wide set ---- */

static void test_global_lifecycle(void **state)
{
    (void)state;
    assert_false(revoked_has("x", 1)); /* before init: nothing, no crash */
    assert_int_equal(revoked_add("x", 1, 1), BROKER_ERR_INTERNAL);
    assert_int_equal(revoked_init(), BROKER_OK);
    assert_false(revoked_loaded());
    revoked_mark_loaded();
    assert_true(revoked_loaded());
    assert_int_equal(revoked_add("x", 1, 100), BROKER_OK);
    assert_true(revoked_has("x", 1));
    assert_int_equal(revoked_count(), 1);
    assert_int_equal(revoked_prune(50), 0);
    assert_int_equal(revoked_prune(101), 1);
    assert_false(revoked_has("x", 1));
    revoked_shutdown();
    assert_false(revoked_loaded());
    assert_false(revoked_has("x", 1));
}

struct reader_arg {
    int misses;   /* a jti added before the readers started that was not found */
    int phantoms; /* a never-added jti that was found */
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    char id[32];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 100; i++) {
            snprintf(id, sizeof(id), "pre-%d", i);
            a->misses += !revoked_has(id, strlen(id));
            snprintf(id, sizeof(id), "never-%d", i);
            a->phantoms += revoked_has(id, strlen(id));
        }
    }
    return NULL;
}

/* Readers on other threads while the writer grows the table through several resizes: what was
 * there stays visible, what never was never appears. */
static void test_global_concurrent_readers(void **state)
{
    (void)state;
    char id[32];
    assert_int_equal(revoked_init(), BROKER_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "pre-%d", i);
        assert_int_equal(revoked_add(id, strlen(id), 1000), BROKER_OK);
    }
    pthread_t t[3];
    struct reader_arg args[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, &args[i]), 0);
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "new-%d", i);
        assert_int_equal(revoked_add(id, strlen(id), i % 2 ? 1000 : 1), BROKER_OK);
        if (i % 5000 == 4999)
            (void)revoked_prune(2);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(args[i].misses, 0);
        assert_int_equal(args[i].phantoms, 0);
    }
    assert_int_equal(revoked_count(), 100 + 10000);
    revoked_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_add_is_idempotent_and_keeps_later_exp),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_grow_and_prune),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_global_lifecycle),
        cmocka_unit_test(test_global_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
