/* defer.c — parameter gradients added once per sweep instead of once per
 * step (tg_internal.h says what is kept; ops/gemm.h what an op calls).
 *
 * Why: a recurrent cell's backward adds dU += da x^T and dW += da h^T at
 * every step with inner dimension n, the batch.  At batch 1 that is a rank-1
 * update, which reads and writes all of dW to do m k multiply-adds; at batch
 * 32 or 64 it is a product that still reads and writes dW every step.  dW is
 * a parameter's gradient, a leaf nothing in the sweep reads, so the steps'
 * da and x can wait in two buffers, [m, cap] and [k, cap], each step in its
 * own n columns, and one product with inner dimension cap (as cuDNN does for
 * its weight gradients) adds them.  The results differ from adding each
 * step at once only in the order of the additions.
 *
 * What the sweep keeps per group (entries of one kind: op, shape and
 * parameters; an unrolled model has one per cell) is sized when the group
 * starts: as many steps as there are entries of its kind at or below the
 * entry on the tape, at most TG_DEFER_COLS columns and TG_DEFER_BYTES bytes.
 * A full group is added and starts again; the sweep adds every group before
 * it returns, also when it stops on an error. */
#include "gemm.h"

/* TG_DEFER_COLS and TG_DEFER_BYTES (tg_internal.h): the columns a group
 * holds at most, and the bytes of its buffers.  The inner
 * dimension of the sum only has to make the product a product: measured on
 * this project's machine (OpenBLAS 0.3.21, one thread, float), dW [256, 320]
 * += da x^T runs at 96, 98, 99, 95 GFLOP/s with inner dimension 32, 64, 128,
 * 1024, and [1024, 1280] at 94-100 throughout, while one of inner dimension 1
 * (the rank-1 update of batch 1) is memory-bound.  What the bound buys is
 * fewer passes over dW: at the medium size (256 hidden, batch 32, 100 steps)
 * 1024 columns is 32 steps per pass and 2.3 MiB of buffers; at the large
 * size (1024 hidden, batch 64) 4 MiB holds 7 steps. */
/* TG_DEFER_MIN_ELEMS and TG_DEFER_MAX_N: where deferring pays.  OpenBLAS
 * (one thread, float) adds dW [256, 320] += da x^T at 17, 44, 51, 62, 78,
 * 88, 92 GFLOP/s with inner dimension 1, 2, 4, 8, 16, 32, 64 (and
 * [1024, 1280] at 12, 26, 45, 54, 67, 81): from a batch of 16 or 32 the
 * per-step product is near the machine's rate already and deferring only
 * adds its copies.  A small cell's gradient stays in L1 and its per-step
 * products take the direct loops of gemm_small.c, while deferring copies
 * every step and calls BLAS at the end.  bench/step.c, one thread, float,
 * ms per training step immediate -> deferred (min of ~2 s, interleaved, on
 * a machine shared with two other jobs, so +-10%): batch 1: hidden 32 (m
 * sum k = 32 x 48 = 1.5K elements) 0.0225 -> 0.029, slower; hidden 64 (5K)
 * 0.058 -> 0.054; hidden 128 0.161 -> 0.148; hidden 256 1.39 -> 1.12;
 * hidden 512 5.6 -> 4.5; hidden 1024 (CPU time) 28.8 -> 21.2.  Batch 4,
 * hidden 256: 2.76 -> 2.70.  Batch 32, hidden 256 (the medium size): 22.5
 * -> 23.4, and 35.3 -> 38.0 on two threads: slower. */

/* How far below an entry the sizing looks for others of its kind: a step of
 * an unrolled model has far fewer entries, and a lone entry (an MLP's layer)
 * costs no more than this. */
#define TG_DEFER_SCAN 4096

/* Entries of one kind: the same op and shape, reading the same parameters at
 * the same positions. */
static bool same_kind(const tg_tensor *e, const tg_tensor *f)
{
    if (e->op != f->op || e->n_in != f->n_in || e->rows != f->rows || e->cols != f->cols) return false;
    for (int i = 0; i < e->n_in; i++) {
        bool p = e->in[i]->kind == TG_KIND_PARAM, q = f->in[i]->kind == TG_KIND_PARAM;
        if (p != q || (p && e->in[i] != f->in[i])) return false;
    }
    return true;
}

static bool group_is(const tg_defer_group *g, const tg_tensor *e, int np, tg_tensor *const *a, int nb,
                     tg_tensor *const *bias)
{
    if (g->op != e->op || g->m != e->rows || g->n != e->cols || g->np != np || g->nb != nb) return false;
    for (int i = 0; i < np; i++)
        if (g->a[i] != a[i]) return false;
    for (int j = 0; j < nb; j++)
        if (g->b[j] != bias[j]) return false;
    return true;
}

/* A new group for e's kind, or -1: nothing to gain (no other entry of the
 * kind below e, or not two steps' room) or no room (d->err on NOMEM). */
static int group_new(tg_defer *d, const tg_tensor *e, int np, tg_tensor *const *a, int nb, tg_tensor *const *bias)
{
    tg_tape *tp = d->tp;
    if (d->n_groups == TG_DEFER_GROUPS) return -1;
    const int m = e->rows, n = e->cols;
    size_t rows = (size_t)m, cols = 0;
    for (int i = 0; i < np; i++) cols += (size_t)a[i]->cols;
    if ((size_t)m * cols < d->min_elems || n > d->max_n) return -1;
    rows += cols;
    size_t cap = TG_DEFER_BYTES / (rows * sizeof(tg_real));
    if (cap > TG_DEFER_COLS) cap = TG_DEFER_COLS;
    size_t steps = cap / (size_t)n, count = 0;
    if (steps < 2) return -1;
    for (int i = e->index, seen = 0; i >= 0 && count < steps && seen < TG_DEFER_SCAN; i--, seen++)
        if (tp->nodes[i] == e || same_kind(tp->nodes[i], e)) count++;
    if (count < 2) return -1;
    cap = count * (size_t)n;

    tg_defer_group *g = &d->g[d->n_groups];
    size_t lists = (size_t)(2 * np + nb) * sizeof(void *) + (size_t)np * sizeof(int);
    char *block = tg_arena_alloc(&tp->arena, lists);
    tg_real *buf = block ? tg_arena_alloc(&tp->arena, rows * cap * sizeof(tg_real)) : NULL;
    if (!buf) {
        d->err = TG_ERR_NOMEM;
        return -1;
    }
    *g = (tg_defer_group){.op = e->op, .m = m, .n = n, .np = np, .nb = nb, .cap = (int)cap};
    g->a = (tg_tensor **)block;
    g->x = (tg_real **)(g->a + np);
    g->b = (tg_tensor **)(g->x + np);
    g->k = (int *)(g->b + nb);
    g->da = buf;
    buf += (size_t)m * cap;
    for (int i = 0; i < np; i++) {
        g->a[i] = a[i];
        g->k[i] = a[i]->cols;
        g->x[i] = buf;
        buf += (size_t)g->k[i] * cap;
    }
    for (int j = 0; j < nb; j++) g->b[j] = bias[j];
    return d->n_groups++;
}

/* Adds a group's pending columns into its parameters' gradients. */
static void group_flush(tg_ctx *ctx, tg_defer_group *g)
{
    if (!g->used) return;
    const int m = g->m, c = g->used, ld = g->cap;
    enum { BATCH = 16 };
    for (int i0 = 0; i0 < g->np; i0 += BATCH) { /* a cell has 2 or 3 products; any number works */
        tg_real *grad[BATCH];
        int p = g->np - i0 < BATCH ? g->np - i0 : BATCH;
        for (int i = 0; i < p; i++) grad[i] = g->a[i0 + i]->grad;
        tg_mm_grad_a_wide(ctx, m, c, ld, g->da, p, g->k + i0, g->x + i0, grad);
    }
    for (int j = 0; j < g->nb; j++) {
        tg_real *restrict db = g->b[j]->grad;
        for (int r = 0; r < m; r++) {
            const tg_real *restrict row = g->da + (size_t)r * (size_t)ld;
            tg_real s = 0;
            for (int col = 0; col < c; col++) s += row[col];
            db[r] += s;
        }
    }
    g->used = 0;
}

bool tg_mm_grad_a_deferred(tg_tensor *e, const tg_real *dy, int np, tg_tensor *const *a, const tg_real *const *x,
                           int nb, tg_tensor *const *bias)
{
    tg_defer *d = e->op ? e->op->ctx->defer : NULL;
    if (!d || np + nb == 0) return false;
    tg_tape *tp = d->tp;
    if (e->index < 0 || e->index >= tp->n || tp->nodes[e->index] != e) return false; /* not this sweep's */
    int gi = 0;
    while (gi < d->n_groups && !group_is(&d->g[gi], e, np, a, nb, bias)) gi++;
    if (gi == d->n_groups && (gi = group_new(d, e, np, a, nb, bias)) < 0) return false;
    tg_defer_group *g = &d->g[gi];
    const int m = g->m, n = g->n;
    const size_t ld = (size_t)g->cap;
    if (g->used + n > g->cap) group_flush(tp->ctx, g);
    const size_t c0 = (size_t)g->used;
    if (n == 1) { /* batch 1: one column, strided */
        for (int r = 0; r < m; r++) g->da[(size_t)r * ld + c0] = dy[r];
        for (int i = 0; i < np; i++)
            for (int r = 0; r < g->k[i]; r++) g->x[i][(size_t)r * ld + c0] = x[i][r];
    } else {
        for (int r = 0; r < m; r++) memcpy(g->da + (size_t)r * ld + c0, dy + (size_t)r * (size_t)n, (size_t)n * sizeof *dy);
        for (int i = 0; i < np; i++)
            for (int r = 0; r < g->k[i]; r++)
                memcpy(g->x[i] + (size_t)r * ld + c0, x[i] + (size_t)r * (size_t)n, (size_t)n * sizeof *dy);
    }
    if (!g->used) g->first = e->index;
    g->last = e->index;
    g->used += n;
    d->last = e;
    d->last_group = gi;
    d->last_col = (int)c0;
    return true;
}

tg_defer *tg_defer_begin(tg_tape *tp)
{
    tg_defer *prev = tp->ctx->defer, *d = &tp->defer;
    d->tp = tp;
    d->last = NULL;
    d->err = TG_OK;
    /* a sweep hook watches parameter gradients grow entry by entry (per-step
     * gradient norms); a budget's tape is short of memory (tg_internal.h) */
    tp->ctx->defer = d->immediate || d->budget || tp->hook ? NULL : d;
    return prev;
}

void tg_defer_flush(tg_tape *tp)
{
    for (int i = 0; i < tp->defer.n_groups; i++) group_flush(tp->ctx, &tp->defer.g[i]);
}

static bool all_finite(const tg_real *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

tg_status tg_defer_end(tg_tape *tp, tg_defer *prev, bool check)
{
    tg_defer *d = &tp->defer;
    tg_status st = TG_OK;
    for (int i = 0; i < d->n_groups; i++) {
        tg_defer_group *g = &d->g[i];
        int first = g->first, last = g->last, used = g->used;
        group_flush(tp->ctx, g);
        if (!check || !used || st) continue;
        /* every da added was checked as it was deferred (tg_defer_bad), so
         * only a sum that overflowed is left to report */
        for (int j = 0; j < g->np + g->nb && !st; j++) {
            const tg_tensor *p = j < g->np ? g->a[j] : g->b[j - g->np];
            if (all_finite(p->grad, tg_numel(p))) continue;
            char where[TG_ERRMSG_LEN - 128];
            tg_describe_entry(tp->nodes[last], TG_DESCRIBE_GRAD, where, sizeof where);
            st = tg_error(tp->ctx, TG_ERR_NONFINITE,
                          "non-finite gradient of a parameter [%d, %d] after adding the products of entries %d to %d "
                          "together; the last: %s", p->rows, p->cols, last, first, where);
        }
    }
    d->last = NULL;
    tp->ctx->defer = prev;
    return d->err ? d->err : st;
}

bool tg_defer_bad(const tg_tape *tp, const tg_tensor *t)
{
    const tg_defer *d = &tp->defer;
    if (d->last != t) return false;
    const tg_defer_group *g = &d->g[d->last_group];
    for (int r = 0; r < g->m; r++)
        if (!all_finite(g->da + (size_t)r * (size_t)g->cap + d->last_col, (size_t)g->n)) return true;
    return false;
}

void tg_defer_reset(tg_tape *tp)
{
    tp->defer.n_groups = 0; /* the buffers go back with the arena */
    tp->defer.last = NULL;
}
