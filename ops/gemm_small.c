/* gemm_small.c — products too small for BLAS: a cblas_sgemm call costs ~900
 * instructions of interface, buffer pool, locking and packing before it
 * multiplies anything, more than a 32 x 32 matrix-vector product itself.
 * Matrix-vector products (B = 1 in a recurrent network) and tiny products
 * run here, forward and backward; gemm.c decides which path a product takes. */
#include "gemm.h"

/* Plain loops GCC vectorises at -O3.  Every inner loop is either an axpy
 * (y[j] += s x[j], independent lanes) or a dot product with DOT_LANES
 * separate partial sums, so that it vectorises without -ffast-math: GCC will
 * not reorder one float sum, but it packs DOT_LANES independent ones into
 * vector registers.  The order of every sum is fixed by the source, so each
 * clone below (AVX-512, AVX2, the SSE2 default) gives the same bits.
 */
#define DOT_LANES TG_DOT_LANES
#define SMALL_MAX_KN 1024 /* the transposed copy in tg_small_grad_a (on the stack) */

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

/* C = A B, or C += A B with acc:  [m, k] @ [k, n] */
TG_CLONES void tg_small_forward(int m, int n, int k, const tg_real *restrict a,
                                const tg_real *restrict b, tg_real *restrict c, bool acc)
{
    if (n == 1) { /* matrix-vector: one dot product per row */
        if (acc)
            for (int i = 0; i < m; i++) c[i] += dot(a + (size_t)i * k, b, k);
        else
            for (int i = 0; i < m; i++) c[i] = dot(a + (size_t)i * k, b, k);
        return;
    }
    for (int i = 0; i < m; i++) {
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
TG_CLONES void tg_small_grad_b(int m, int n, int k, const tg_real *restrict a,
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

