/* gemm_small.c — products too small for BLAS: a cblas_sgemm call costs ~900
 * instructions of interface, buffer pool, locking and packing before it
 * multiplies anything, more than a 32 x 32 matrix-vector product itself.
 * Matrix-vector products (B = 1 in a recurrent network) and tiny products
 * run here, forward and backward; gemm.c decides which path a product takes. */
#include "gemm.h"

/* Plain loops GCC vectorises (at -O3, and most of them at -O2).  Every
 * vector loop is either an axpy (y[j] += s x[j], independent lanes) or a
 * dot product with LANES separate partial sums, so that it vectorises
 * without -ffast-math: GCC will not reorder one float sum, but it packs
 * LANES independent ones into a vector register.  The order of every sum is
 * fixed by the source, so each clone (AVX-512, AVX2, the SSE2 default) gives
 * the same bits.
 *
 * A row is cut into blocks of LANES elements and a tail of fewer.  The
 * matrix-vector products of a recurrent network at batch 1 have short rows
 * (16 or 32 elements: 2 or 4 blocks), where a loop of unknown length costs
 * more in set-up, peeling and epilogue than in arithmetic, so the kernels
 * take the number of blocks as a parameter and are instantiated with 1 to
 * UNROLL_BLOCKS as constants (GCC then unrolls the blocks into straight
 * vector code and keeps the vector x in registers across rows); longer and
 * shorter rows take plain loops.  Every instance of a kernel computes the
 * same sums in the same order, except that the matrix-vector product sums
 * rows of more than UNROLL_BLOCKS blocks in 2 LANES partial sums.
 *
 * GCC 12 is touchy about the layout: variants that looked equivalent (two
 * rows per pass, separate accumulator arrays, a constant row stride, the
 * fold in the row loop) were vectorised across rows or blocks instead, with
 * a shuffle per element, and ran 2 to 8 times slower.  Check a change
 * with callgrind (the AVX2 clone) and a timing (the AVX-512 clone on this
 * machine), at -O2 and -O3, and tests/test_gemm_small.c.
 */
#define LANES 8          /* partial sums per dot product; elements per block */
#define UNROLL_BLOCKS 4  /* rows of up to 4 blocks run unrolled */
#define MV_CHUNK 64      /* rows per pass of matvec: their block sums wait in a buffer */
#define SMALL_MAX_KN 1024 /* the transposed copy in tg_small_grad_a (on the stack) */
/* The loops for rows longer than UNROLL_BLOCKS blocks live in functions of
 * their own, cloned like the entry points (GCC 12 calls the clone of the
 * caller's target directly, no dispatch): compiled inside the entry points
 * next to the unrolled kernels, they came out with spills in the row loop
 * and ran 10-30% slower (1 x 512 x 512 dA: 16.8 us against 12.5). */
#define LONG_ROWS static TG_CLONES __attribute__((noinline))
#define PRAGMA_(x) _Pragma(#x)
#define UNROLL(n) PRAGMA_(GCC unroll n) /* unrolled at -O2 as well as -O3 */

/* body with NB_ set to nb as a constant when 1 <= nb <= UNROLL_BLOCKS, else other */
#define WITH_BLOCKS(nb, body, other)                                                               \
    do {                                                                                           \
        switch (nb) {                                                                              \
        case 1: { const int NB_ = 1; body; } break;                                                \
        case 2: { const int NB_ = 2; body; } break;                                                \
        case 3: { const int NB_ = 3; body; } break;                                                \
        case 4: { const int NB_ = 4; body; } break;                                                \
        default: other; break;                                                                     \
        }                                                                                          \
    } while (0)

/* ---- y = A x ----------------------------------------------------------------------
 * Rows of 1 to UNROLL_BLOCKS blocks: lane l sums a[i][j] x[j] over the
 * columns j = l (mod LANES) of the blocks, in order (starting from the first
 * product, not from 0); the lanes are folded as ((s0 + s4) + (s2 + s6)) +
 * ((s1 + s5) + (s3 + s7)); the tail columns are added one by one; acc then
 * adds the result to y[i].
 *
 * Laid out for GCC 12's vectoriser: mv_rows() takes one row at a time, so
 * that its LANES sums stay in one vector register and x in registers across
 * rows, and stores the sums to the buffer h; the folds then run as a loop
 * over rows, which GCC vectorises across rows (a transposition of LANES
 * rows' sums and LANES - 1 vector additions, instead of a horizontal fold
 * per row).
 *
 * Longer rows: dot_long(), two groups of LANES partial sums from 0 (as the
 * loops before it); rows shorter than a block: a plain sum from 0. */

#define FOLD(s) ((((s)[0] + (s)[4]) + ((s)[2] + (s)[6])) + (((s)[1] + (s)[5]) + ((s)[3] + (s)[7])))

/* h[r] = the LANES block sums of rows r < mc of a, nb blocks each */
TG_INLINE void mv_rows(int mc, int nb, size_t lda, const tg_real *restrict a,
                       const tg_real *restrict x, tg_real (*restrict h)[LANES])
{
    for (int r = 0; r < mc; r++) {
        const tg_real *restrict ar = a + r * lda;
        tg_real *restrict s = h[r];
        for (int l = 0; l < LANES; l++) s[l] = ar[l] * x[l];
        UNROLL(UNROLL_BLOCKS)
        for (int j = LANES; j < nb * LANES; j += LANES)
            for (int l = 0; l < LANES; l++) s[l] += ar[j + l] * x[j + l];
    }
}

/* sum_j a[j] x[j] for k >= 2 LANES: two groups of LANES partial sums over
 * blocks of 2 LANES, added group to group, folded, then the tail */
TG_INLINE tg_real dot_long(const tg_real *restrict a, const tg_real *restrict x, int k)
{
    tg_real lo[LANES] = {0}, hi[LANES] = {0};
    int j = 0;
    for (; j + 2 * LANES <= k; j += 2 * LANES) {
        for (int l = 0; l < LANES; l++) lo[l] += a[j + l] * x[j + l];
        for (int l = 0; l < LANES; l++) hi[l] += a[j + LANES + l] * x[j + LANES + l];
    }
    for (int l = 0; l < LANES; l++) lo[l] += hi[l];
    tg_real t = FOLD(lo);
    for (; j < k; j++) t += a[j] * x[j];
    return t;
}

/* y = A x, or y += A x with acc, for rows longer than UNROLL_BLOCKS blocks */
LONG_ROWS void matvec_long(int m, int k, const tg_real *restrict a, const tg_real *restrict x,
                           tg_real *restrict y, bool acc)
{
    for (int i = 0; i < m; i++) {
        tg_real t = dot_long(a + (size_t)i * k, x, k);
        y[i] = acc ? y[i] + t : t;
    }
}

/* y = A x, or y += A x with acc, for a row-major [m, k] A */
TG_INLINE void matvec(int m, int k, const tg_real *restrict a, const tg_real *restrict x,
                      tg_real *restrict y, bool acc)
{
    const size_t lda = (size_t)k;
    const int nb = k / LANES, kb = nb * LANES;
    if (nb == 0) {
        for (int i = 0; i < m; i++) {
            const tg_real *restrict ai = a + i * lda;
            tg_real t = 0;
            for (int j = 0; j < k; j++) t += ai[j] * x[j];
            y[i] = acc ? y[i] + t : t;
        }
        return;
    }
    if (nb > UNROLL_BLOCKS) {
        matvec_long(m, k, a, x, y, acc);
        return;
    }
    tg_real h[MV_CHUNK][LANES];
    for (int i0 = 0; i0 < m; i0 += MV_CHUNK) {
        const int mc = m - i0 < MV_CHUNK ? m - i0 : MV_CHUNK;
        const tg_real *restrict a0 = a + i0 * lda;
        tg_real *restrict y0 = y + i0;
        WITH_BLOCKS(nb, mv_rows(mc, NB_, lda, a0, x, h), );
        if (kb == k) {
            /* the folds, over a whole number of LANES rows so that they
             * vectorise across rows without an epilogue (the only kind of
             * loop -O2 vectorises): straight to y when mc allows, else
             * through t with the buffer's rows past mc zeroed */
            const int m8 = (mc + LANES - 1) / LANES * LANES;
            if (m8 == mc) {
                if (acc)
                    for (int r = 0; r < mc / LANES * LANES; r++) y0[r] += FOLD(h[r]);
                else
                    for (int r = 0; r < mc / LANES * LANES; r++) y0[r] = FOLD(h[r]);
            } else {
                tg_real t[MV_CHUNK];
                for (int r = mc; r < m8; r++)
                    for (int l = 0; l < LANES; l++) h[r][l] = 0;
                for (int r = 0; r < m8; r++) t[r] = FOLD(h[r]);
                if (acc)
                    for (int r = 0; r < mc; r++) y0[r] += t[r];
                else
                    for (int r = 0; r < mc; r++) y0[r] = t[r];
            }
        } else {
            for (int r = 0; r < mc; r++) {
                const tg_real *restrict ar = a0 + r * lda;
                tg_real t = FOLD(h[r]);
                for (int j = kb; j < k; j++) t += ar[j] * x[j];
                y0[r] = acc ? y0[r] + t : t;
            }
        }
    }
}

/* ---- D += s x^T ------------------------------------------------------------------
 * Row i of a row-major [m, k] D gets s[i] x, element by element.  Short
 * rows: the blocks unrolled, x in registers across rows, two rows per pass
 * (through outer_pair(), whose restrict parameters tell GCC the rows
 * apart; written with one pointer it checked for overlap at run time).
 * Other rows: one loop per row. */

/* rows d0 and d1 get s0 x and s1 x */
TG_INLINE void outer_pair(int k, int nb, tg_real s0, tg_real s1, const tg_real *restrict x,
                          tg_real *restrict d0, tg_real *restrict d1)
{
    UNROLL(UNROLL_BLOCKS)
    for (int j = 0; j < nb * LANES; j += LANES)
        for (int l = 0; l < LANES; l++) {
            d0[j + l] += s0 * x[j + l];
            d1[j + l] += s1 * x[j + l];
        }
    for (int p = nb * LANES; p < k; p++) d0[p] += s0 * x[p], d1[p] += s1 * x[p];
}

TG_INLINE void outer_rows(int m, int k, int nb, const tg_real *restrict s,
                          const tg_real *restrict x, tg_real *restrict d)
{
    const size_t ld = (size_t)k;
    int i = 0;
    if (nb > 0)
        for (; i + 2 <= m; i += 2) outer_pair(k, nb, s[i], s[i + 1], x, d + i * ld, d + (i + 1) * ld);
    for (; i < m; i++) {
        const tg_real si = s[i];
        tg_real *restrict di = d + i * ld;
        UNROLL(UNROLL_BLOCKS)
        for (int j = 0; j < nb * LANES; j += LANES)
            for (int l = 0; l < LANES; l++) di[j + l] += si * x[j + l];
        for (int p = nb * LANES; p < k; p++) di[p] += si * x[p];
    }
}

LONG_ROWS void outer_long(int m, int k, const tg_real *restrict s, const tg_real *restrict x,
                          tg_real *restrict d)
{
    outer_rows(m, k, 0, s, x, d);
}

TG_INLINE void outer(int m, int k, const tg_real *restrict s, const tg_real *restrict x,
                     tg_real *restrict d)
{
    if (k < LANES) outer_rows(m, k, 0, s, x, d);
    else if (k / LANES > UNROLL_BLOCKS) outer_long(m, k, s, x, d);
    else WITH_BLOCKS(k / LANES, outer_rows(m, k, NB_, s, x, d), );
}

/* ---- y += A^T s ------------------------------------------------------------------
 * y[p] += sum_i s[i] a[i][p] for a row-major [m, k] A: rows taken four at
 * a time, their products summed as ((s0 a0 + s1 a1) + (s2 a2 + s3 a3))
 * before they reach y, then the rows left one by one.  Blocks unrolled for
 * short rows, one loop for the others. */
TG_INLINE void tmv_rows(int m, int k, int nb, const tg_real *restrict a,
                        const tg_real *restrict s, tg_real *restrict y)
{
    const size_t lda = (size_t)k;
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        const tg_real s0 = s[i], s1 = s[i + 1], s2 = s[i + 2], s3 = s[i + 3];
        const tg_real *restrict a0 = a + i * lda;
        UNROLL(UNROLL_BLOCKS)
        for (int j = 0; j < nb * LANES; j += LANES)
            for (int l = 0; l < LANES; l++) {
                const int p = j + l;
                y[p] += (s0 * a0[p] + s1 * a0[lda + p]) + (s2 * a0[2 * lda + p] + s3 * a0[3 * lda + p]);
            }
        for (int p = nb * LANES; p < k; p++)
            y[p] += (s0 * a0[p] + s1 * a0[lda + p]) + (s2 * a0[2 * lda + p] + s3 * a0[3 * lda + p]);
    }
    for (; i < m; i++) {
        const tg_real si = s[i];
        const tg_real *restrict ai = a + i * lda;
        for (int p = 0; p < k; p++) y[p] += si * ai[p];
    }
}

LONG_ROWS void tmv_long(int m, int k, const tg_real *restrict a, const tg_real *restrict s,
                        tg_real *restrict y)
{
    tmv_rows(m, k, 0, a, s, y);
}

TG_INLINE void tmv(int m, int k, const tg_real *restrict a, const tg_real *restrict s,
                   tg_real *restrict y)
{
    if (k < LANES) tmv_rows(m, k, 0, a, s, y);
    else if (k / LANES > UNROLL_BLOCKS) tmv_long(m, k, a, s, y);
    else WITH_BLOCKS(k / LANES, tmv_rows(m, k, NB_, a, s, y), );
}

/* ---- the entry points ------------------------------------------------------------ */

/* C = A B, or C += A B with acc:  [m, k] @ [k, n] */
TG_CLONES void tg_small_forward(int m, int n, int k, const tg_real *restrict a,
                                const tg_real *restrict b, tg_real *restrict c, bool acc)
{
    if (n == 1) { /* matrix-vector: c = A b */
        if (acc) matvec(m, k, a, b, c, true);
        else matvec(m, k, a, b, c, false);
        return;
    }
    if (m == 1) { /* vector-matrix: c = B^T a^T, summed onto 0 without acc */
        if (!acc)
            for (int j = 0; j < n; j++) c[j] = 0;
        tmv(k, n, b, a, c);
        return;
    }
    for (int i = 0; i < m; i++) { /* row i of C: axpys along the rows of B */
        tg_real *restrict ci = c + (size_t)i * n;
        if (!acc)
            for (int j = 0; j < n; j++) ci[j] = 0;
        for (int p = 0; p < k; p++) {
            tg_real s = a[(size_t)i * k + p];
            const tg_real *restrict bp = b + (size_t)p * n;
            for (int j = 0; j < n; j++) ci[j] += s * bp[j];
        }
    }
}

/* dA += dY B^T:  [m, n] @ [n, k] */
TG_CLONES void tg_small_grad_a(int m, int n, int k, const tg_real *restrict dy,
                               const tg_real *restrict b, tg_real *restrict da)
{
    if (n == 1) { /* outer product: row i of dA gets dy[i] b^T */
        outer(m, k, dy, b, da);
        return;
    }
    if (n >= LANES || (size_t)k * (size_t)n > SMALL_MAX_KN) {
        /* rows long enough for dot products: row i of dA += B dy_i, a
         * matrix-vector product with B's [k, n] rows */
        for (int i = 0; i < m; i++) matvec(k, n, b, dy + (size_t)i * n, da + (size_t)i * k, true);
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

/* dB += A^T dY:  [k, m] @ [m, n] */
TG_CLONES void tg_small_grad_b(int m, int n, int k, const tg_real *restrict a,
                               const tg_real *restrict dy, tg_real *restrict db)
{
    if (n == 1) { /* dx += A^T dy */
        tmv(m, k, a, dy, db);
        return;
    }
    if (m == 1) { /* outer product: row p of dB gets a[p] dy^T */
        outer(k, n, a, dy, db);
        return;
    }
    for (int i = 0; i < m; i++) { /* one axpy per element of A */
        const tg_real *restrict dyi = dy + (size_t)i * n;
        for (int p = 0; p < k; p++) {
            tg_real s = a[(size_t)i * k + p];
            tg_real *restrict dbp = db + (size_t)p * n;
            for (int j = 0; j < n; j++) dbp[j] += s * dyi[j];
        }
    }
}
