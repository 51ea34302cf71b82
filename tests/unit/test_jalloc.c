/* jalloc: jansson allocations inside a window come from the job's block and are dropped with it;
 * outside a window, and past the block's end, they are ordinary heap memory that jansson frees
 * (LeakSanitizer checks that in the sanitizer build). */
#include "test_util.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "jalloc.h"

static void test_window_uses_the_block(void **state)
{
    (void)state;
    struct jalloc_arena a;
    uint64_t ab0, ob0, ab1, ob1;
    jalloc_arena_acquire(&a);
    assert_non_null(a.base);
    jalloc_stats(&ab0, &ob0);
    jalloc_arena_begin(&a);
    json_t *o = json_pack("{s:s, s:i, s:[s,s]}", "sub", "repo:acme/app:ref:refs/heads/main", "n", 7, "a", "x", "y");
    jalloc_arena_end();
    assert_non_null(o);
    jalloc_stats(&ab1, &ob1);
    assert_true(ab1 > ab0);      /* allocated from the block */
    assert_int_equal(ob1, ob0);  /* nothing overflowed */
    assert_true(a.used > 0 && a.used <= 16 * 1024);
    assert_true(jalloc_arena_whole(&a)); /* the tree may be dropped with the block, unwalked */
    assert_string_equal(json_string_value(json_object_get(o, "sub")), "repo:acme/app:ref:refs/heads/main");
    /* outside the window: heap memory, also freed through jalloc */
    json_t *h = json_string("on the heap");
    assert_non_null(h);
    char *dump = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS); /* callers free() dumps as always */
    assert_string_equal(dump, "{\"a\":[\"x\",\"y\"],\"n\":7,\"sub\":\"repo:acme/app:ref:refs/heads/main\"}");
    free(dump);
    json_decref(h);
    json_decref(o); /* walks the tree; arena nodes are not freed one by one */
    jalloc_arena_reset(&a);
    assert_int_equal(a.used, 0);
    jalloc_arena_release(&a);
    assert_null(a.base);
}

static void test_overflow_goes_to_the_heap(void **state)
{
    (void)state;
    struct jalloc_arena a;
    uint64_t ab0, ob0, ab1, ob1;
    char *big = malloc(20000);
    assert_non_null(big);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    jalloc_arena_acquire(&a);
    jalloc_stats(&ab0, &ob0);
    jalloc_arena_begin(&a);
    json_t *s = json_string(big); /* larger than a block */
    json_t *t = json_string("small");
    jalloc_arena_end();
    jalloc_stats(&ab1, &ob1);
    assert_false(jalloc_arena_whole(&a)); /* part of it is heap memory: it must be walked and freed */
    assert_non_null(s);
    assert_non_null(t);
    assert_true(ob1 - ob0 >= 20000);
    assert_int_equal(strlen(json_string_value(s)), 19999);
    json_decref(s); /* the heap copy is really freed: no leak report */
    json_decref(t);
    jalloc_arena_reset(&a);
    assert_true(jalloc_arena_whole(&a)); /* a reset block starts whole again */
    jalloc_arena_release(&a);
    assert_false(jalloc_arena_whole(&a)); /* no block: nothing is in one */
    free(big);
}

static void test_blocks_are_distinct(void **state)
{
    (void)state;
    struct jalloc_arena a, b;
    jalloc_arena_acquire(&a);
    jalloc_arena_acquire(&b);
    assert_non_null(a.base);
    assert_non_null(b.base);
    assert_true(a.base + 16 * 1024 <= b.base || b.base + 16 * 1024 <= a.base);
    jalloc_arena_release(&a);
    jalloc_arena_release(&b);
}

int main(void)
{
    if (!jalloc_install())
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_uses_the_block),
        cmocka_unit_test(test_overflow_goes_to_the_heap),
        cmocka_unit_test(test_blocks_are_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
