#include "jalloc.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <jansson.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JALLOC_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define JALLOC_ASAN 1
#endif
#ifdef JALLOC_ASAN
#include <sanitizer/asan_interface.h>
#define JALLOC_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define JALLOC_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define JALLOC_POISON(p, n) ((void)(p), (void)(n))
#define JALLOC_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* A GitHub Actions claims tree takes about 6 KiB; larger tokens overflow to the heap. */
#define JALLOC_BLOCK (16 * 1024)
#define JALLOC_BLOCKS 4096 /* 64 MiB of address space, touched only as jobs need it */
#define JALLOC_ALIGN 16

static uint8_t *region;        /* JALLOC_BLOCKS * JALLOC_BLOCK, NULL before install */
static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t free_list[JALLOC_BLOCKS];
static size_t free_n;
static _Thread_local struct jalloc_arena *cur;
static _Atomic uint64_t arena_bytes, overflow_bytes;

static void *jalloc_malloc(size_t n)
{
    struct jalloc_arena *a = cur;
    if (a != NULL && a->base != NULL) {
        size_t need = (n + JALLOC_ALIGN - 1) & ~(size_t)(JALLOC_ALIGN - 1);
        if (need >= n && need <= JALLOC_BLOCK - a->used) {
            uint8_t *p = a->base + a->used;
            a->used += need;
            JALLOC_UNPOISON(p, n);
            atomic_fetch_add_explicit(&arena_bytes, need, memory_order_relaxed);
            return p;
        }
        atomic_fetch_add_explicit(&overflow_bytes, n, memory_order_relaxed);
    }
    if (a != NULL)
        a->spilled = 1;
    return malloc(n);
}

static void jalloc_free(void *p)
{
    if ((uintptr_t)p - (uintptr_t)region < (size_t)JALLOC_BLOCKS * JALLOC_BLOCK)
        return; /* arena memory: dropped with its block */
    free(p);
}

int jalloc_install(void)
{
    if (region != NULL)
        return 1;
    void *r = mmap(NULL, (size_t)JALLOC_BLOCKS * JALLOC_BLOCK, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return 0;
    region = r;
    JALLOC_POISON(region, (size_t)JALLOC_BLOCKS * JALLOC_BLOCK);
    for (size_t i = 0; i < JALLOC_BLOCKS; i++)
        free_list[i] = (uint32_t)(JALLOC_BLOCKS - 1 - i);
    free_n = JALLOC_BLOCKS;
    json_set_alloc_funcs(jalloc_malloc, jalloc_free);
    return 1;
}

void jalloc_arena_acquire(struct jalloc_arena *a)
{
    a->base = NULL;
    a->used = 0;
    a->spilled = 0;
    if (region == NULL)
        return;
    pthread_mutex_lock(&free_mu);
    if (free_n > 0)
        a->base = region + (size_t)free_list[--free_n] * JALLOC_BLOCK;
    pthread_mutex_unlock(&free_mu);
}

void jalloc_arena_release(struct jalloc_arena *a)
{
    if (a->base == NULL)
        return;
    JALLOC_POISON(a->base, JALLOC_BLOCK);
    pthread_mutex_lock(&free_mu);
    free_list[free_n++] = (uint32_t)((size_t)(a->base - region) / JALLOC_BLOCK);
    pthread_mutex_unlock(&free_mu);
    a->base = NULL;
    a->used = 0;
}

void jalloc_arena_reset(struct jalloc_arena *a)
{
    if (a->base != NULL)
        JALLOC_POISON(a->base, JALLOC_BLOCK);
    a->used = 0;
    a->spilled = 0;
}

int jalloc_arena_whole(const struct jalloc_arena *a)
{
    return a->base != NULL && !a->spilled;
}

void jalloc_arena_begin(struct jalloc_arena *a)
{
    cur = a;
}

void jalloc_arena_end(void)
{
    cur = NULL;
}

void jalloc_stats(uint64_t *arena, uint64_t *overflow)
{
    *arena = atomic_load_explicit(&arena_bytes, memory_order_relaxed);
    *overflow = atomic_load_explicit(&overflow_bytes, memory_order_relaxed);
}
