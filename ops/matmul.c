/* matmul.c — the one op that does real arithmetic volume, so products go to
 * CBLAS; backward accumulates in place through beta = 1 and needs no
 * temporary.
 *
 * Small products skip BLAS: a cblas_sgemm call costs ~900 instructions of
 * interface, buffer pool, locking and packing before it multiplies anything,
 * more than a 32 x 32 matrix-vector product itself.  Matrix-vector products
 * (B = 1 in a recurrent network) and tiny products run as the direct loops
 * of the small-product section, forward and backward; larger ones go to
 * BLAS, gemv/ger for very large matrix-vector products, gemm for the rest
 * exactly as before.  The limits were chosen by measurement: see "which
 * path" below. */
#include "ops_real.h"
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

/* ---- the small-product path --------------------------------------------------
 * Plain loops GCC vectorises at -O3.  Every inner loop is either an axpy
 * (y[j] += s x[j], independent lanes) or a dot product with DOT_LANES
 * separate partial sums, so that it vectorises without -ffast-math: GCC will
 * not reorder one float sum, but it packs DOT_LANES independent ones into
 * vector registers.  The order of every sum is fixed by the source, so each
 * clone below (AVX-512, AVX2, the SSE2 default) gives the same bits.
 */
#define DOT_LANES 16
#define SMALL_MAX_KN 1024 /* the transposed copy in small_grad_a (on the stack) */

/* sum a[j] b[j] over j < k, as 16 partial sums (two groups of 8, which SLP
 * keeps in vector registers and adds group to group) folded in a fixed
 * order, then the tail */
TG_INLINE tg_real dot(const tg_real *restrict a, const tg_real *restrict b, int k)
{
    tg_real s = 0;
    int j = 0;
    if (k >= DOT_LANES) {
        tg_real lo[8] = {0}, hi[8] = {0};
        for (; j + DOT_LANES <= k; j += DOT_LANES) {
            for (int l = 0; l < 8; l++) lo[l] += a[j + l] * b[j + l];
            for (int l = 0; l < 8; l++) hi[l] += a[j + 8 + l] * b[j + 8 + l];
        }
        for (int l = 0; l < 8; l++) lo[l] += hi[l];
        s = ((lo[0] + lo[4]) + (lo[2] + lo[6])) + ((lo[1] + lo[5]) + (lo[3] + lo[7]));
    }
    for (; j < k; j++) s += a[j] * b[j];
    return s;
}

/* C = A B:  [m, k] @ [k, n] */
TG_CLONES static void small_forward(int m, int n, int k, const tg_real *restrict a,
                                    const tg_real *restrict b, tg_real *restrict c)
{
    if (n == 1) { /* matrix-vector: one dot product per row */
        for (int i = 0; i < m; i++) c[i] = dot(a + (size_t)i * k, b, k);
        return;
    }
    for (int i = 0; i < m; i++) {
        tg_real *restrict ci = c + (size_t)i * n;
        for (int j = 0; j < n; j++) ci[j] = 0;
        for (int p = 0; p < k; p++) {
            tg_real s = a[(size_t)i * k + p];
            const tg_real *restrict bp = b + (size_t)p * n;
            for (int j = 0; j < n; j++) ci[j] += s * bp[j];
        }
    }
}

/* dA += dY B^T:  [m, n] @ [n, k] */
TG_CLONES static void small_grad_a(int m, int n, int k, const tg_real *restrict dy,
                                   const tg_real *restrict b, tg_real *restrict da)
{
    if (n == 1) { /* outer product: row i of dA gets dy[i] x^T */
        for (int i = 0; i < m; i++) {
            tg_real s = dy[i];
            tg_real *restrict dai = da + (size_t)i * k;
            for (int p = 0; p < k; p++) dai[p] += s * b[p];
        }
        return;
    }
    if (n >= DOT_LANES || (size_t)k * (size_t)n > SMALL_MAX_KN) { /* rows long enough for dot() */
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
                da[(size_t)i * k + p] += dot(dy + (size_t)i * n, b + (size_t)p * n, n);
        return;
    }
    /* short rows: with B transposed into bt, every update is an axpy along a row of dA */
    tg_real bt[SMALL_MAX_KN];
    for (int p = 0; p < k; p++)
        for (int j = 0; j < n; j++) bt[(size_t)j * k + p] = b[(size_t)p * n + j];
    for (int i = 0; i < m; i++) {
        tg_real *restrict dai = da + (size_t)i * k;
        for (int j = 0; j < n; j++) {
            tg_real s = dy[(size_t)i * n + j];
            const tg_real *restrict btj = bt + (size_t)j * k;
            for (int p = 0; p < k; p++) dai[p] += s * btj[p];
        }
    }
}

/* dB += A^T dY:  [k, m] @ [m, n], as one axpy per element of A */
TG_CLONES static void small_grad_b(int m, int n, int k, const tg_real *restrict a,
                                   const tg_real *restrict dy, tg_real *restrict db)
{
    if (n == 1) { /* dx += A^T dy: rows of A scaled by dy, four at a time */
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            tg_real s0 = dy[i], s1 = dy[i + 1], s2 = dy[i + 2], s3 = dy[i + 3];
            const tg_real *restrict a0 = a + (size_t)i * k, *restrict a1 = a0 + k,
                          *restrict a2 = a1 + k, *restrict a3 = a2 + k;
            for (int p = 0; p < k; p++)
                db[p] += (s0 * a0[p] + s1 * a1[p]) + (s2 * a2[p] + s3 * a3[p]);
        }
        for (; i < m; i++) {
            tg_real s = dy[i];
            const tg_real *restrict ai = a + (size_t)i * k;
            for (int p = 0; p < k; p++) db[p] += s * ai[p];
        }
        return;
    }
    for (int i = 0; i < m; i++) {
        const tg_real *restrict dyi = dy + (size_t)i * n;
        for (int p = 0; p < k; p++) {
            tg_real s = a[(size_t)i * k + p];
            tg_real *restrict dbp = db + (size_t)p * n;
            for (int j = 0; j < n; j++) dbp[j] += s * dyi[j];
        }
    }
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
static inline bool use_small(const tg_tensor *out, int m, int n, int k)
{
    const tg_ctx *c = out->op->ctx;
    if (n == 1) return (size_t)m * (size_t)k <= c->matmul_mv_max;
    if (m == 1 && n >= DOT_LANES) return (size_t)k * (size_t)n <= c->matmul_mv_max;
    return (size_t)m * (size_t)n * (size_t)k <= c->matmul_small_mnk;
}

/* y = a @ b, [m, k] @ [k, n] -> [m, n];  da += dy b^T,  db += a^T dy */
static int matmul_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                        size_t err_len)
{
    if (ops_check_inputs(n, 2, in, err, err_len)) return -1;
    if (in[0][1] != in[1][0]) {
        snprintf(err, err_len, "inner dimensions differ: [%d, %d] @ [%d, %d]", in[0][0], in[0][1],
                 in[1][0], in[1][1]);
        return -1;
    }
    out[0] = in[0][0];
    out[1] = in[1][1];
    return 0;
}

static void matmul_forward(tg_tensor *out)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    int m = a->rows, k = a->cols, n = b->cols;
    if (use_small(out, m, n, k)) small_forward(m, n, k, a->val, b->val, out->val);
    else if (n == 1) gemv(CblasNoTrans, m, k, a->val, b->val, 0, out->val);
    else gemm(CblasNoTrans, CblasNoTrans, m, n, k, a->val, k, b->val, n, 0, out->val, n);
}

static void matmul_backward(tg_tensor *out)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    int m = a->rows, k = a->cols, n = b->cols;
    if (use_small(out, m, n, k)) {
        if (a->grad) small_grad_a(m, n, k, out->grad, b->val, a->grad);
        if (b->grad) small_grad_b(m, n, k, a->val, out->grad, b->grad);
    } else if (n == 1) {
        if (a->grad) ger(m, k, out->grad, b->val, a->grad);
        if (b->grad) gemv(CblasTrans, m, k, a->val, out->grad, 1, b->grad);
    } else {
        if (a->grad) gemm(CblasNoTrans, CblasTrans, m, k, n, out->grad, n, b->val, n, 1, a->grad, k);
        if (b->grad) gemm(CblasTrans, CblasNoTrans, k, n, m, a->val, k, out->grad, n, 1, b->grad, n);
    }
}

const tg_builtin_op tg_op_matmul = {
    .name = "matmul",
    .arity = 2,
    .differentiable = true,
    .shape = matmul_shape,
    .forward = matmul_forward,
    .backward = matmul_backward,
    .test = {
        .n_cases = 4,
        .cases = {
            /* with the default limits the first three take the direct loops,
             * the last gemm; tests/test_ops.c runs more shapes both ways */
            {.n_in = 2, .shape = {{3, 4}, {4, 2}}},
            {.n_in = 2, .shape = {{7, 19}, {19, 1}}}, /* matrix-vector: a dot block + tail */
            {.n_in = 2, .shape = {{4, 1}, {1, 3}}},   /* outer product, k = 1 */
            {.n_in = 2, .shape = {{6, 3}, {3, 5}}},   /* m n k = 90: gemm */
        },
        .tol = 1e-3,
    },
};
