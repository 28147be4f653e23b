/* gemm.h — the product kernels the ops share (gemm.c, gemm_small.c).  All
 * row-major and dense: a is [m, k], b is [k, n], the product [m, n]. */
#ifndef TG_GEMM_H
#define TG_GEMM_H

#include "ops_real.h"

/* c = a b, or c += a b when acc */
void tg_mm_forward(tg_ctx *ctx, int m, int n, int k, const tg_real *a, const tg_real *b, tg_real *c,
                   bool acc);
/* da += dy b^T and db += a^T dy, where dy is [m, n]; a NULL da or db is skipped */
void tg_mm_backward(tg_ctx *ctx, int m, int n, int k, const tg_real *a, const tg_real *b,
                    const tg_real *dy, tg_real *da, tg_real *db);

/* Deferred parameter gradients (core/defer.c, tg_internal.h): for an entry
 * of [m, n] (its rows and cols) being swept, a[i]->grad [m, k_i] += dy
 * x[i]^T for i < np, with k_i = a[i]->cols and x[i] [k_i, n], and
 * bias[j]->grad [m] += the row sums of dy for j < nb; dy is [m, n].  Every
 * a[i] and bias[j] must be one tg_defer_wants() accepts.
 * Returns true when the sweep has taken them (copied: dy and x[i] may change
 * once it returns) and will add them, the steps of every entry of the same
 * kind (op, shape, parameters) as one product, before tg_backward returns;
 * false when the caller must add them itself now: outside a sweep, under a
 * sweep hook (which watches gradients entry by entry), on a tape sized for
 * a memory budget, for a cell smaller than the tape's min_elems, for an
 * entry with no other of its kind below it on the tape, or when no group is
 * left or its buffers cannot be had. */
static inline bool tg_defer_wants(const tg_ctx *ctx, const tg_tensor *p)
{
    return ctx->defer && p->kind == TG_KIND_PARAM && p->grad;
}
/* Whether an entry of [m, n] whose deferred products' parameters have
 * `cols` columns in all may be deferred at all (the tape's min_elems and
 * max_n): an op asks before it gathers its arguments, since a cell too
 * small or too wide is refused at every step. */
static inline bool tg_defer_worth(const tg_ctx *ctx, int m, int n, size_t cols)
{
    return ctx->defer && n <= ctx->defer->max_n && (size_t)m * cols >= ctx->defer->min_elems;
}
bool tg_mm_grad_a_deferred(tg_tensor *entry, const tg_real *dy, int np, tg_tensor *const *a,
                           const tg_real *const *x, int nb, tg_tensor *const *bias);
/* The product that adds them: grad[i] [m, k[i]] += da x[i]^T for i < np,
 * da [m, c] and x[i] [k[i], c] row-major with leading dimension ld: inner
 * dimension c, all parameters' products split over the threads at once. */
void tg_mm_grad_a_wide(tg_ctx *ctx, int m, int c, int ld, const tg_real *da, int np, const int *k,
                       tg_real *const *x, tg_real *const *grad);

/* gemm_small.c: the direct loops, for the shapes gemm.c sends them */
#define TG_DOT_LANES 16
void tg_small_forward(int m, int n, int k, const tg_real *restrict a, const tg_real *restrict b,
                      tg_real *restrict c, bool acc);
void tg_small_grad_a(int m, int n, int k, const tg_real *restrict dy, const tg_real *restrict b,
                     tg_real *restrict da);
void tg_small_grad_b(int m, int n, int k, const tg_real *restrict a, const tg_real *restrict dy,
                     tg_real *restrict db);

#endif
