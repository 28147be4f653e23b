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

/* c (+)= op(a) op(b) with op(a) [m, k], op(b) [k, n], row-major with leading
 * dimensions as BLAS takes them (ta: a is stored [k, m]; tb: b is [n, k]):
 * the wide products of stack_affine, over the K B columns of all steps.
 * Small products by direct loops, large ones split over the threads. */
void tg_mm_general(tg_ctx *ctx, bool ta, bool tb, int m, int n, int k, const tg_real *a, int lda,
                   const tg_real *b, int ldb, tg_real *c, int ldc, bool acc);

/* gemm_small.c: the direct loops, for the shapes gemm.c sends them */
#define TG_DOT_LANES 16
void tg_small_forward(int m, int n, int k, const tg_real *restrict a, const tg_real *restrict b,
                      tg_real *restrict c, bool acc);
void tg_small_grad_a(int m, int n, int k, const tg_real *restrict dy, const tg_real *restrict b,
                     tg_real *restrict da);
void tg_small_grad_b(int m, int n, int k, const tg_real *restrict a, const tg_real *restrict dy,
                     tg_real *restrict db);

#endif
