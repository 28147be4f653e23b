/* gemm.c — every product of the ops (matmul, affine) goes through here: it
 * picks the direct loops of gemm_small.c or CBLAS, and accumulates in place
 * through beta = 1, so backward needs no temporary. */
#include "gemm.h"
#include <cblas.h>

/* C = alpha op(A) op(B) + beta C, row-major, at the precision of tg_real */
static inline void gemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                        const tg_real *a, int lda, const tg_real *b, int ldb, tg_real beta,
                        tg_real *c, int ldc)
{
#ifdef TG_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
#endif
}

/* y = op(A) x + beta y for a row-major [m, k] A */
static inline void gemv(enum CBLAS_TRANSPOSE ta, int m, int k, const tg_real *a, const tg_real *x,
                        tg_real beta, tg_real *y)
{
#ifdef TG_REAL_DOUBLE
    cblas_dgemv(CblasRowMajor, ta, m, k, 1.0, a, k, x, 1, beta, y, 1);
#else
    cblas_sgemv(CblasRowMajor, ta, m, k, 1.0f, a, k, x, 1, beta, y, 1);
#endif
}

/* A += x y^T for a row-major [m, k] A */
static inline void ger(int m, int k, const tg_real *x, const tg_real *y, tg_real *a)
{
#ifdef TG_REAL_DOUBLE
    cblas_dger(CblasRowMajor, m, k, 1.0, x, 1, y, 1, a, k);
#else
    cblas_sger(CblasRowMajor, m, k, 1.0f, x, 1, y, 1, a, k);
#endif
}

/* ---- which path ------------------------------------------------------------------
 * Measured on this project's machine (2 cores of an AMD EPYC, OpenBLAS 0.3.21,
 * float, forward + both backward products, best of 30, quiet machine):
 *
 * - matrix-vector (n == 1) and vector-matrix (m == 1, n >= 16: shorter rows
 *   leave the axpy loops too short to vectorise): the loops beat sgemm at
 *   every size tried (2x2: 16 ns vs 195; 32x32: 203 vs 683; 1024x1024:
 *   0.16 ms vs 0.43), and beat or come close to gemv + ger + gemv^T up to
 *   512x512
 *   (32x32: 203 ns vs 281; 256x256: 8.6 us vs 12.3; 512x512: 37.7 vs 34.1
 *   with 2 OpenBLAS threads, 37.0 vs 44.1 with 1).  Past that gemv/ger win
 *   on 2 threads (1024x1024: 0.12 ms vs 0.16; 2048x2048: 0.53 vs 1.85).  So:
 *   the loops while the matrix has at most matmul_mv_max = 512^2
 *   elements, above it gemv/ger for n == 1 and gemm for m == 1.
 * - anything else: the loops win only while m n k is below ~100 (4x4x4:
 *   138 ns vs 211; 4x4x5: 150 vs 217; 8x8x2: 321 vs 262; 8x8x8: 360 vs
 *   277), so up to matmul_small_mnk = 64.
 *
 * Both limits live in the context (tg_internal.h) so that tests can drive
 * any shape down either path. */
static inline bool use_small(const tg_ctx *c, int m, int n, int k)
{
    if (n == 1) return (size_t)m * (size_t)k <= c->matmul_mv_max;
    if (m == 1 && n >= TG_DOT_LANES) return (size_t)k * (size_t)n <= c->matmul_mv_max;
    return (size_t)m * (size_t)n * (size_t)k <= c->matmul_small_mnk;
}

void tg_mm_forward(tg_ctx *ctx, int m, int n, int k, const tg_real *a, const tg_real *b, tg_real *c,
                   bool acc)
{
    if (use_small(ctx, m, n, k)) tg_small_forward(m, n, k, a, b, c, acc);
    else if (n == 1) gemv(CblasNoTrans, m, k, a, b, acc ? 1 : 0, c);
    else gemm(CblasNoTrans, CblasNoTrans, m, n, k, a, k, b, n, acc ? 1 : 0, c, n);
}

void tg_mm_backward(tg_ctx *ctx, int m, int n, int k, const tg_real *a, const tg_real *b,
                    const tg_real *dy, tg_real *da, tg_real *db)
{
    if (use_small(ctx, m, n, k)) {
        if (da) tg_small_grad_a(m, n, k, dy, b, da);
        if (db) tg_small_grad_b(m, n, k, a, dy, db);
    } else if (n == 1) {
        if (da) ger(m, k, dy, b, da);
        if (db) gemv(CblasTrans, m, k, a, dy, 1, db);
    } else {
        if (da) gemm(CblasNoTrans, CblasTrans, m, k, n, dy, n, b, n, 1, da, k);
        if (db) gemm(CblasTrans, CblasNoTrans, k, n, m, a, k, dy, n, 1, db, n);
    }
}
