/* signq: the loop iteration's tokens signed together. Whatever is queued and wanted is signed
 * by one signq_run, grouped by key (each signature verifies under its own key), in chunks of
 * KEYS_SIGN_BATCH_MAX; unwanted and removed requests are left alone; an empty run does nothing. */
#include "test_util.h"
#include "signq.h"

#define T0 1700000000

struct fx {
    char dir[64];
    struct keyring *ring;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char k1[KEYS_KID_MAX + 1], k2[KEYS_KID_MAX + 1];
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/broker-signq-XXXXXX");
    if (!mkdtemp(f->dir) || keys_generate(f->dir, T0, 0, k1) != BROKER_OK ||
        keys_generate(f->dir, T0, 3600, k2) != BROKER_OK || keys_load(f->dir, T0, &f->ring) != BROKER_OK ||
        f->ring->n != 2) {
        test_rm_tree(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    keys_free(f->ring);
    test_rm_tree(f->dir);
    free(f);
    keys_thread_cleanup();
    return 0;
}

static bool wanted_flag[200];
static struct signq_req reqs[200];
static char msgs[200][24];

static bool is_wanted(const struct signq_req *q)
{
    return wanted_flag[q - reqs];
}

static void queue(size_t i, const struct signing_key *k)
{
    snprintf(msgs[i], sizeof(msgs[i]), "header.claims-%zu", i);
    memset(&reqs[i], 0, sizeof(reqs[i]));
    reqs[i].key = k;
    reqs[i].msg = (const uint8_t *)msgs[i];
    reqs[i].len = strlen(msgs[i]);
    reqs[i].wanted = is_wanted;
    wanted_flag[i] = true;
    signq_add(&reqs[i]);
}

static void test_wanted_removed_and_empty(void **state)
{
    struct fx *f = *state;
    signq_run(); /* empty: nothing happens */
    for (size_t i = 0; i < 10; i++)
        queue(i, f->ring->active);
    wanted_flag[2] = wanted_flag[7] = false; /* their clients went away */
    signq_remove(&reqs[5]);                  /* freed before the run */
    signq_remove(&reqs[5]);                  /* twice is harmless */
    signq_run();
    for (size_t i = 0; i < 10; i++) {
        if (i == 2 || i == 7) {
            assert_false(reqs[i].done);
            assert_true(reqs[i].queued); /* left for its owner */
        } else if (i == 5) {
            assert_false(reqs[i].done);
            assert_false(reqs[i].queued);
        } else {
            assert_true(reqs[i].done);
            assert_false(reqs[i].queued);
            assert_int_equal(reqs[i].rc, BROKER_OK);
            assert_true(test_es256_verifies(f->ring->active->pkey, reqs[i].msg, reqs[i].len, reqs[i].sig));
        }
    }
    signq_run(); /* only the unwanted two are left: still nothing */
    assert_false(reqs[2].done);
    signq_remove(&reqs[2]);
    signq_remove(&reqs[7]);
    assert_false(reqs[2].queued || reqs[7].queued);
}

/* 150 requests over two keys in one run: all signed, each under its own key, and the batch
 * path was used (chunks of up to KEYS_SIGN_BATCH_MAX per key). */
static void test_two_keys_many(void **state)
{
    struct fx *f = *state;
    uint64_t t0, a0, b0, t1, a1, b1;
    keys_sign_counts(&t0, &a0, &b0);
    for (size_t i = 0; i < 150; i++)
        queue(i, &f->ring->keys[i % 2]);
    signq_run();
    keys_sign_counts(&t1, &a1, &b1);
    for (size_t i = 0; i < 150; i++) {
        const struct signing_key *k = &f->ring->keys[i % 2], *other = &f->ring->keys[(i + 1) % 2];
        assert_true(reqs[i].done);
        assert_int_equal(reqs[i].rc, BROKER_OK);
        assert_true(test_es256_verifies(k->pkey, reqs[i].msg, reqs[i].len, reqs[i].sig));
        assert_false(test_es256_verifies(other->pkey, reqs[i].msg, reqs[i].len, reqs[i].sig));
    }
    assert_int_equal(t1 - t0, 150); /* 75 per key: 64 + 11 each, all at or above the minimum */
    assert_int_equal(b1 - b0, 4);
    assert_int_equal(a1 - a0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wanted_removed_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_keys_many, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
