/* failing_alloc.h — a tg_allocator that fails one chosen request, for the
 * out-of-memory sweeps (test_alloc, test_dump, test_hostile, test_threads):
 * set countdown to N and the request after N successful ones fails; every
 * call is counted and every block outstanding, so a sweep can prove that a
 * failure anywhere leaks nothing. */
#ifndef TG_TEST_FAILING_ALLOC_H
#define TG_TEST_FAILING_ALLOC_H

#include "tapegrad.h"
#include <stdlib.h>

typedef struct failing {
    long countdown;      /* requests left before the one that fails; < 0: never */
    long live;           /* blocks outstanding */
    long calls;          /* requests made */
    long backward_calls; /* test_hostile: of which by the first backward */
} failing;

static inline void *f_alloc(size_t n, void *u)
{
    failing *f = u;
    f->calls++;
    if (f->countdown == 0) return NULL;
    if (f->countdown > 0) f->countdown--;
    void *p = malloc(n);
    if (p) f->live++;
    return p;
}

static inline void *f_realloc(void *p, size_t o, size_t n, void *u)
{
    (void)o;
    failing *f = u;
    f->calls++;
    if (f->countdown == 0) return NULL;
    if (f->countdown > 0) f->countdown--;
    return realloc(p, n);
}

static inline void f_free(void *p, size_t n, void *u)
{
    (void)n;
    if (p) ((failing *)u)->live--;
    free(p);
}

#endif
