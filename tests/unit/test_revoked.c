/* The revoked-jti set: membership, idempotent adds keeping the later exp, growth past many
 * resizes, pruning by exp (and shrinking), bounds, colliding seeds, and the process-wide set
 * read by several threads while one writes, and the staleness rule (fixed clock). */
#include "test_util.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include "bounds.h"
#include "clock.h"
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

/* The pure rule: never synced is never usable; usable up to and including the bound, not a
 * millisecond after; a stamp newer than the caller's clock reading is fresh. */
static void test_staleness_rule(void **state)
{
    (void)state;
    const int64_t t = 1000000, max = BROKER_REVOKED_MAX_STALE_MS;
    assert_false(revoked_fresh(REVOKED_NEVER, t));
    assert_false(revoked_fresh(REVOKED_NEVER, INT64_MIN));
    assert_false(revoked_fresh(REVOKED_NEVER, INT64_MAX));
    assert_true(revoked_fresh(t, t));
    assert_true(revoked_fresh(t, t + 1000)); /* the sync runs every second */
    assert_true(revoked_fresh(t, t + max));
    assert_false(revoked_fresh(t, t + max + 1));
    assert_false(revoked_fresh(t, t + 3600 * 1000));
    assert_true(revoked_fresh(t, t - 5)); /* synced after the reader took its clock */
    assert_true(revoked_fresh(0, 0));     /* 0 is a time, not "never" */
    assert_false(revoked_fresh(0, max + 1));
    assert_false(revoked_fresh(INT64_MIN + 1, INT64_MAX)); /* no overflow into "fresh" */
    assert_true(max >= 2000 && max <= 60000);              /* several 1 s rounds, yet well under a token's life */
}

/* The process-wide stamp: fresh after a sync, stale once no round succeeded within the bound,
 * fresh again after the next; revoked_init and revoked_shutdown forget it; a late stamp older
 * than the current one does not move it back. */
static void test_global_staleness(void **state)
{
    (void)state;
    const int64_t t = 50000, max = BROKER_REVOKED_MAX_STALE_MS;
    assert_int_equal(revoked_init(), BROKER_OK);
    assert_false(revoked_loaded_at(t));
    assert_int_equal(revoked_sync_age_ms(), -1);
    revoked_mark_synced(t);
    assert_true(revoked_loaded_at(t + max));
    assert_false(revoked_loaded_at(t + max + 1)); /* rounds kept failing: fail closed */
    revoked_mark_synced(t - 1000);                /* an older stamp is ignored */
    assert_false(revoked_loaded_at(t + max + 1));
    revoked_mark_synced(t + max + 500); /* a round succeeded again */
    assert_true(revoked_loaded_at(t + max + 1));
    assert_true(revoked_loaded_at(t + 2 * max + 500));
    assert_false(revoked_loaded_at(t + 2 * max + 501));
    /* the real clock: just synced is loaded, a stamp older than the bound is not */
    assert_int_equal(revoked_init(), BROKER_OK);
    int64_t now = clock_mono_ms();
    revoked_mark_synced(now - max - 1000);
    assert_false(revoked_loaded());
    int64_t age = revoked_sync_age_ms();
    assert_true(age >= max + 1000 && age < max + 60000);
    revoked_mark_loaded();
    assert_true(revoked_loaded());
    assert_true(revoked_sync_age_ms() >= 0 && revoked_sync_age_ms() < 1000);
    revoked_shutdown();
    assert_false(revoked_loaded());
    assert_int_equal(revoked_sync_age_ms(), -1);
}

/* /metrics: the age in seconds (+Inf before any sync) and the set size; nothing when it does not fit. */
static void test_metrics(void **state)
{
    (void)state;
    char buf[1024];
    assert_int_equal(revoked_init(), BROKER_OK);
    size_t n = revoked_metrics(buf, sizeof(buf));
    assert_true(n > 0 && n == strlen(buf));
    assert_non_null(strstr(buf, "\nbroker_revocations_sync_age_seconds +Inf\n"));
    assert_non_null(strstr(buf, "# TYPE broker_revocations_sync_age_seconds gauge\n"));
    assert_non_null(strstr(buf, "\nbroker_revocations 0\n"));
    assert_int_equal(revoked_add("a", 1, 100), BROKER_OK);
    revoked_mark_synced(clock_mono_ms() - 7000);
    n = revoked_metrics(buf, sizeof(buf));
    assert_true(n > 0);
    const char *v = strstr(buf, "\nbroker_revocations_sync_age_seconds ");
    assert_non_null(v);
    double age = strtod(v + strlen("\nbroker_revocations_sync_age_seconds "), NULL);
    assert_true(age >= 7.0 && age < 67.0);
    assert_non_null(strstr(buf, "\nbroker_revocations 1\n"));
    assert_int_equal(revoked_metrics(buf, n), 0); /* one byte short (the NUL) */
    assert_int_equal(revoked_metrics(buf, 0), 0);
    revoked_shutdown();
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
        cmocka_unit_test(test_staleness_rule),
        cmocka_unit_test(test_global_staleness),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_global_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
