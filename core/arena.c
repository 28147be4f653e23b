/* arena.c — the tape's memory: values, gradients and entries are bumped out of
 * chunks.  A reset rewinds without freeing, so a warm tape that records the
 * same graph again allocates nothing. */
#include "tg_internal.h"

#define TG_CHUNK_MIN ((size_t)64 << 10)

static inline size_t align_up(size_t n) { return (n + TG_ALIGN - 1) & ~(size_t)(TG_ALIGN - 1); }
_Static_assert(sizeof(tg_chunk) <= TG_CHUNK_HEADER, "a chunk's header must fit its first line");
static inline size_t chunk_header(void) { return TG_CHUNK_HEADER; }
static inline char *chunk_data(tg_chunk *c) { return (char *)c + chunk_header(); }

void tg_arena_init(tg_arena *a, tg_ctx *ctx)
{
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
}

/* Chunks come from the context's allocator, which only promises malloc
 * alignment, so each chunk is over-allocated by TG_ALIGN and its start is
 * rounded up. */
static tg_chunk *chunk_new(tg_arena *a, size_t need)
{
    size_t size = a->reserved > TG_CHUNK_MIN ? a->reserved : TG_CHUNK_MIN; /* doubles */
    if (size < need) size = align_up(need);
    size_t counted = size;
    if (a->exact) { /* one request per chunk: nothing else fits in it */
        size = need;
        counted = align_up(need);
    }
    if (a->limit && (counted > a->limit || a->reserved > a->limit - counted)) {
        a->limit_hit = true;
        tg_error(a->ctx, TG_ERR_NOMEM, "the tape reached its memory budget of %zu bytes", a->limit);
        return NULL;
    }
    size_t total = chunk_header() + size + TG_ALIGN + sizeof(void *);
    char *raw = tg_alloc(a->ctx, total);
    if (!raw) return NULL;
    tg_chunk *c = (tg_chunk *)(((uintptr_t)raw + sizeof(void *) + TG_ALIGN - 1) & ~(uintptr_t)(TG_ALIGN - 1));
    ((void **)c)[-1] = raw; /* the raw pointer sits just before the chunk */
    c->next = NULL;
    c->size = size;
    c->used = 0;
    a->reserved += counted;
    return c;
}

static void chunk_free(tg_arena *a, tg_chunk *c)
{
    void *raw = ((void **)c)[-1];
    tg_free(a->ctx, raw, chunk_header() + c->size + TG_ALIGN + sizeof(void *));
}

/* The current chunk is full (tg_arena_alloc's inline path failed). */
void *tg_arena_alloc_slow(tg_arena *a, size_t bytes)
{
    tg_chunk *c = a->cur; /* a fresh chunk's data is cache-line aligned */
    /* move on to the next kept chunk that fits; skipped chunks stay for later
     * resets, so the same sequence of requests takes the same path each time */
    tg_chunk *prev = c;
    tg_chunk *n = c ? c->next : a->head;
    while (n && n->size < bytes) {
        prev = n;
        n = n->next;
    }
    if (!n) {
        n = chunk_new(a, bytes);
        if (!n) return NULL;
        if (prev) {
            n->next = prev->next;
            prev->next = n;
        } else {
            a->head = n;
        }
    }
    a->cur = n;
    n->used = bytes;
    return chunk_data(n);
}

void tg_arena_reset(tg_arena *a)
{
    for (tg_chunk *c = a->head; c; c = c->next) c->used = 0;
    a->cur = a->head;
}

void tg_arena_release(tg_arena *a)
{
    tg_chunk *c = a->head;
    while (c) {
        tg_chunk *next = c->next;
        chunk_free(a, c);
        c = next;
    }
    a->head = a->cur = NULL;
    a->reserved = 0;
}

tg_status tg_arena_reserve(tg_arena *a, size_t bytes)
{
    tg_arena_release(a);
    bool exact = a->exact;
    size_t limit = a->limit;
    a->exact = true; /* exactly this size, not the 64 KiB a first chunk gets */
    a->limit = 0;
    tg_chunk *c = chunk_new(a, align_up(bytes ? bytes : 16));
    a->exact = exact;
    a->limit = limit;
    if (!c) return TG_ERR_NOMEM;
    a->head = a->cur = c;
    return TG_OK;
}
