/* jansson's allocator. Outside an arena window it is malloc/free. Inside one (a loop thread
 * parsing a subject token between jalloc_arena_begin and jalloc_arena_end) jansson's allocations
 * are bumped out of a block the exchange job owns, and freeing them is a no-op: the block is
 * reused whole by the job's next request. That takes ~100 malloc/free pairs off every exchange.
 * Blocks come from one reserved address range, so jalloc_free tells arena memory from heap
 * memory by address alone, and memory that jansson hands out elsewhere (json_dumps) stays plain
 * malloc memory that callers free() as before.
 * Rule: nothing allocated inside a window may outlive the job that owns the block (the claims
 * live in the job; everything built from them later is a deep copy or freed first). Sanitizer
 * builds poison a block between uses, so an escape is a use-after-poison report in the tests. */
#ifndef BROKER_JALLOC_H
#define BROKER_JALLOC_H
#include <stddef.h>
#include <stdint.h>

struct jalloc_arena {
    uint8_t *base; /* NULL: no block (jansson uses the heap) */
    size_t used;
    int spilled;   /* an allocation inside a window went to the heap since the last reset */
};

/* Reserve the block range and route jansson through jalloc. Once, before any jansson call and
 * before threads start; false when the range cannot be reserved (jansson then keeps malloc). */
int jalloc_install(void);
/* Take a block for a new job (a->base NULL when none is left, which only costs speed). */
void jalloc_arena_acquire(struct jalloc_arena *a);
/* Give the block back (the job itself is being freed). */
void jalloc_arena_release(struct jalloc_arena *a);
/* Forget everything allocated in the block (the job is recycled). */
void jalloc_arena_reset(struct jalloc_arena *a);
/* True when everything allocated inside this arena's windows since the last reset is in its
 * block: a tree built there can then be dropped with the block, without walking it to free. */
int jalloc_arena_whole(const struct jalloc_arena *a);
/* Open and close the window on this thread; windows do not nest. */
void jalloc_arena_begin(struct jalloc_arena *a);
void jalloc_arena_end(void);
/* Bytes allocated from blocks and from the heap inside windows since start (tests, tuning). */
void jalloc_stats(uint64_t *arena_bytes, uint64_t *overflow_bytes);

#endif
