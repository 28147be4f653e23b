/* gemm.c — every product of the ops (matmul, affine) goes through here: it
 * picks the direct loops of gemm_small.c or CBLAS, and accumulates in place
 * through beta = 1, so backward needs no temporary. */
#include "gemm.h"
#include <cblas.h>
#include <limits.h>

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

/* ---- splitting over the context's threads ------------------------------------
 * With tg_ctx_set_threads(ctx, n >= 2), BLAS single-threaded and m n k at
 * least ctx->par_min_mnk, a BLAS product becomes up to n calls on disjoint
 * blocks of its output, run by tg_parallel(): forward by blocks of rows of c
 * (blocks of columns when c has too few rows), backward da and db at once
 * when both are wanted (each split further past 2 threads), otherwise the
 * one gradient by rows.  Every output element is computed by one call from
 * the same operands, in the same order as unsplit, so the results agree
 * with one thread to rounding (in practice bit for bit).
 *
 * Threshold (ctx->par_min_mnk = TG_PAR_MIN_MNK = 64^3), measured on this
 * project's machine (2 vCPUs of an AMD EPYC, OpenBLAS 0.3.21 Haswell
 * kernels, float, best of 15 interleaved samples, quiet machine), one thread
 * vs split over 2, in µs (forward; backward with both gradients):
 *   32x32x32 (m n k = 33k)        0.99 -> 2.22;  1.98 -> 3.36   a batch costs ~1.5-2 µs
 *   64x32x64 (131k)               3.02 -> 3.09;  5.97 -> 6.40   no gain
 *   64x64x64, 128x32x64 (262k)    5.5 -> 5.0, 5.8 -> 4.9;  11.3 -> 8.2, 11.4 -> 8.6
 *   256x32x64 (524k, medium U x)  11.0 -> 7.7;   22.1 -> 13.2
 *   256x32x256 (2.1M, medium W h) 44.0 -> 25.0;  87.9 -> 47.0
 *   1024x64x1024 (67M, large W h) 1517 -> 760;   3047 -> 1549
 *   gemv 1024x1024, 2048x2048     58.7 -> 33.7,  313 -> 114
 * OpenBLAS's own 2 threads on the same shapes: no change up to 96^3 (it
 * stays on one), 1.3-2.4x SLOWER at 256x32x64 and 256x32x256, 0.54x at
 * 1024x64x1024.  With another process on the second core, a split product
 * waits for it and can take longer than unsplit (the caller runs any job no
 * worker has claimed yet, so an asleep or busy worker costs less).
 * m == 1 products above matmul_mv_max (gemm with one row) gain nothing from
 * the column split here: measured 248 µs for 1x1024x1024 either way. */
typedef struct mm_call {
    char kind;                      /* 'g' gemm, 'v' gemv, 'r' ger */
    enum CBLAS_TRANSPOSE ta, tb;    /* gemm: both; gemv: ta */
    int m, n, k, lda, ldb, ldc;     /* gemm as cblas; gemv, ger: A is [m, k] */
    const tg_real *a, *b;           /* gemv: b is x; ger: a is x, b is y */
    tg_real *c;                     /* gemv: y; ger: A */
    tg_real beta;
} mm_call;

static void mm_run(void *arg, int job)
{
    const mm_call *q = (const mm_call *)arg + job;
    switch (q->kind) {
    case 'g':
        gemm(q->ta, q->tb, q->m, q->n, q->k, q->a, q->lda, q->b, q->ldb, q->beta, q->c, q->ldc);
        break;
#ifdef TG_REAL_DOUBLE
    case 'v':
        cblas_dgemv(CblasRowMajor, q->ta, q->m, q->k, 1.0, q->a, q->lda, q->b, 1,
                    q->beta, q->c, 1);
        break;
    case 'r':
        cblas_dger(CblasRowMajor, q->m, q->k, 1.0, q->a, 1, q->b, 1, q->c, q->lda);
        break;
#else
    case 'v':
        cblas_sgemv(CblasRowMajor, q->ta, q->m, q->k, 1.0f, q->a, q->lda, q->b, 1, q->beta, q->c, 1);
        break;
    case 'r':
        cblas_sger(CblasRowMajor, q->m, q->k, 1.0f, q->a, 1, q->b, 1, q->c, q->lda);
        break;
#endif
    }
}

/* Rows [r0, r1) of q's output (gemm: of C; gemv: of y; ger: of A). */
static mm_call rows_of(mm_call q, int r0, int r1)
{
    switch (q.kind) {
    case 'g':
        q.a += q.ta == CblasNoTrans ? (size_t)r0 * (size_t)q.lda : (size_t)r0;
        q.c += (size_t)r0 * (size_t)q.ldc;
        q.m = r1 - r0;
        break;
    case 'v':
        if (q.ta == CblasNoTrans) q.a += (size_t)r0 * (size_t)q.lda, q.m = r1 - r0;
        else q.a += r0, q.k = r1 - r0; /* y = A^T x: y's rows are A's columns */
        q.c += r0;
        break;
    case 'r':
        q.a += r0; /* x */
        q.c += (size_t)r0 * (size_t)q.lda;
        q.m = r1 - r0;
        break;
    }
    return q;
}

/* Columns [c0, c1) of a gemm's C. */
static mm_call cols_of(mm_call q, int c0, int c1)
{
    q.b += q.tb == CblasNoTrans ? (size_t)c0 : (size_t)c0 * (size_t)q.ldb;
    q.c += c0;
    q.n = c1 - c0;
    return q;
}

static int out_rows(const mm_call *q)
{
    return q->kind == 'v' && q->ta != CblasNoTrans ? q->k : q->m;
}

/* Appends q to out[] split into at most parts blocks of rows (or, for a
 * gemm with too few rows, of columns), each a multiple of `grain` but the
 * last; returns how many it appended. */
static int split(const mm_call *q, int parts, mm_call *out)
{
    enum { ROW_GRAIN = 8, COL_GRAIN = 16 }; /* whole register blocks, whole cache lines */
    int rows = out_rows(q), by_cols = q->kind == 'g' && rows < 2 * ROW_GRAIN && q->n > rows;
    int len = by_cols ? q->n : rows, grain = by_cols ? COL_GRAIN : ROW_GRAIN;
    int units = (len + grain - 1) / grain;
    if (parts > units) parts = units;
    if (parts < 1) parts = 1;
    int n = 0;
    for (int p = 0, u0 = 0; p < parts; p++) {
        int u1 = u0 + (units - u0) / (parts - p); /* even split of what is left */
        int e0 = u0 * grain, e1 = u1 * grain < len ? u1 * grain : len;
        if (e1 > e0) out[n++] = by_cols ? cols_of(*q, e0, e1) : rows_of(*q, e0, e1);
        u0 = u1;
    }
    return n;
}

static inline bool use_threads(const tg_ctx *c, int m, int n, int k)
{
    return c->threads >= 2 && c->pool && (size_t)m * (size_t)n * (size_t)k >= c->par_min_mnk &&
           tg_blas_is_single_threaded();
}

/* Runs one or two products, each as one call or split over the threads. */
static void run_split(tg_ctx *ctx, const mm_call *q, int nq)
{
    mm_call jobs[TG_MAX_THREADS];
    int t = ctx->threads, n = 0;
    if (nq == 1) n = split(&q[0], t, jobs);
    else {
        n = split(&q[0], (t + 1) / 2, jobs);
        n += split(&q[1], t / 2, jobs + n);
    }
    tg_parallel(ctx, n, mm_run, jobs);
}

void tg_mm_forward(tg_ctx *ctx, int m, int n, int k, const tg_real *a, const tg_real *b, tg_real *c,
                   bool acc)
{
    if (use_small(ctx, m, n, k)) tg_small_forward(m, n, k, a, b, c, acc);
    else if (use_threads(ctx, m, n, k)) {
        mm_call q = n == 1 ? (mm_call){.kind = 'v', .ta = CblasNoTrans, .m = m, .k = k, .lda = k,
                                       .a = a, .b = b, .c = c, .beta = acc ? 1 : 0}
                           : (mm_call){.kind = 'g', .ta = CblasNoTrans, .tb = CblasNoTrans, .m = m,
                                       .n = n, .k = k, .lda = k, .ldb = n, .ldc = n, .a = a, .b = b,
                                       .c = c, .beta = acc ? 1 : 0};
        run_split(ctx, &q, 1);
    } else if (n == 1) gemv(CblasNoTrans, m, k, a, b, acc ? 1 : 0, c);
    else gemm(CblasNoTrans, CblasNoTrans, m, n, k, a, k, b, n, acc ? 1 : 0, c, n);
}

void tg_mm_backward(tg_ctx *ctx, int m, int n, int k, const tg_real *a, const tg_real *b,
                    const tg_real *dy, tg_real *da, tg_real *db)
{
    if (use_small(ctx, m, n, k)) {
        if (da) tg_small_grad_a(m, n, k, dy, b, da);
        if (db) tg_small_grad_b(m, n, k, a, dy, db);
    } else if ((da || db) && use_threads(ctx, m, n, k)) {
        mm_call q[2];
        int nq = 0;
        if (da) /* da [m, k] += dy b^T */
            q[nq++] = n == 1 ? (mm_call){.kind = 'r', .m = m, .k = k, .lda = k, .a = dy, .b = b, .c = da}
                             : (mm_call){.kind = 'g', .ta = CblasNoTrans, .tb = CblasTrans, .m = m,
                                         .n = k, .k = n, .lda = n, .ldb = n, .ldc = k, .a = dy,
                                         .b = b, .c = da, .beta = 1};
        if (db) /* db [k, n] += a^T dy */
            q[nq++] = n == 1 ? (mm_call){.kind = 'v', .ta = CblasTrans, .m = m, .k = k, .lda = k,
                                         .a = a, .b = dy, .c = db, .beta = 1}
                             : (mm_call){.kind = 'g', .ta = CblasTrans, .tb = CblasNoTrans, .m = k,
                                         .n = n, .k = m, .lda = k, .ldb = n, .ldc = n, .a = a,
                                         .b = dy, .c = db, .beta = 1};
        run_split(ctx, q, nq);
    } else if (n == 1) {
        if (da) ger(m, k, dy, b, da);
        if (db) gemv(CblasTrans, m, k, a, dy, 1, db);
    } else {
        if (da) gemm(CblasNoTrans, CblasTrans, m, k, n, dy, n, b, n, 1, da, k);
        if (db) gemm(CblasTrans, CblasNoTrans, k, n, m, a, k, dy, n, 1, db, n);
    }
}

/* The deferred products of core/defer.c: wide in the inner dimension (all
 * the steps pending), narrow in the output, one per parameter.  Each is split
 * by rows (by columns when it has too few rows) into as many blocks as there
 * are threads, and every block of every parameter goes into one batch, so a
 * thread that finishes its share of dU picks up part of dW rather than wait. */
void tg_mm_grad_a_wide(tg_ctx *ctx, int m, int c, int ld, const tg_real *da, int np, const int *k,
                       tg_real *const *x, tg_real *const *grad)
{
    size_t kt = 0;
    for (int i = 0; i < np; i++) kt += (size_t)k[i];
    if (!use_threads(ctx, m, (int)(kt < INT_MAX ? kt : INT_MAX), c)) {
        for (int i = 0; i < np; i++) gemm(CblasNoTrans, CblasTrans, m, k[i], c, da, ld, x[i], ld, 1, grad[i], k[i]);
        return;
    }
    enum { MAX_JOBS = 64 };
    mm_call jobs[MAX_JOBS];
    int parts = ctx->threads < MAX_JOBS ? ctx->threads : MAX_JOBS, n = 0;
    for (int i = 0; i < np; i++) {
        if (n + parts > MAX_JOBS) {
            tg_parallel(ctx, n, mm_run, jobs);
            n = 0;
        }
        mm_call q = {.kind = 'g', .ta = CblasNoTrans, .tb = CblasTrans, .m = m, .n = k[i], .k = c, .lda = ld,
                     .ldb = ld, .ldc = k[i], .a = da, .b = x[i], .c = grad[i], .beta = 1};
        n += split(&q, parts, jobs + n);
    }
    if (n) tg_parallel(ctx, n, mm_run, jobs);
}
