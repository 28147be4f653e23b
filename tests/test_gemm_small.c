/* test_gemm_small.c — the direct product loops of ops/gemm_small.c called
 * directly, over shapes that reach every block count, tail and row remainder
 * (m, k = 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 40, 41, ... and
 * m or n = 1), against a long double reference: C = A B with and without
 * accumulation, dA += dY B^T, dB += A^T dY.  Every array is allocated at its
 * exact size, so that the sanitizer build catches a read or write past one;
 * the ordinary builds check that the outputs' neighbours stay untouched. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "gemm.h"

#ifdef TG_REAL_DOUBLE
#define UNIT (DBL_EPSILON / 2)
#else
#define UNIT (FLT_EPSILON / 2)
#endif

static uint64_t rng = 88172645463325252u;
static double uniform(void) /* in [-1, 1), a few exact zeros and powers of two */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    double u = (double)(rng >> 11) / 9007199254740992.0;
    if (u < 0.02) return 0;
    if (u < 0.04) return u < 0.03 ? 0.5 : -2;
    return 2 * u - 1;
}

#define GUARD 4
static const tg_real guard_value = (tg_real)-12345.5;

/* an exact-size array of random values (malloc(0) avoided) */
static tg_real *random_array(size_t n)
{
    tg_real *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert(p);
    for (size_t i = 0; i < n; i++) p[i] = (tg_real)uniform();
    return p;
}

/* an output of n random values.  In the ordinary builds it sits between
 * GUARD guard values on each side, which must stay untouched; under ASan it
 * is an allocation of its own, exact size, so that ASan reports a stray
 * access instead. */
#if defined(__SANITIZE_ADDRESS__)
#define SEPARATE_OUTPUTS 1
#else
#define SEPARATE_OUTPUTS 0
#endif
typedef struct out {
    tg_real *base, *v;
    size_t n;
} out;

static out out_new(size_t n)
{
    out o = {.n = n};
    if (SEPARATE_OUTPUTS) {
        o.base = o.v = random_array(n);
        return o;
    }
    o.base = malloc((n + 2 * GUARD) * sizeof *o.base);
    cr_assert(o.base);
    o.v = o.base + GUARD;
    for (size_t i = 0; i < n + 2 * GUARD; i++)
        o.base[i] = i < GUARD || i >= n + GUARD ? guard_value : (tg_real)uniform();
    return o;
}

static void out_free(out *o) { free(o->base); }

static int failures;

/* got against ref within bound; at most a few reports per array */
static void expect_close(const tg_real *got, const long double *ref, const long double *bound,
                         size_t n, const char *what, int m, int k, int nn)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        long double d = fabsl((long double)got[i] - ref[i]);
        if (!(d <= bound[i])) {
            failures++;
            if (bad++ < 3)
                cr_expect_fail("%s, m %d k %d n %d: [%zu] = %.17g, want %.17Lg (bound %.3Lg)", what,
                               m, k, nn, i, (double)got[i], ref[i], bound[i]);
        }
    }
}

static void expect_guards(const out *o, const char *what, int m, int k, int n)
{
    if (SEPARATE_OUTPUTS) return;
    for (size_t i = 0; i < GUARD; i++)
        if (o->base[i] != guard_value || o->v[o->n + i] != guard_value) {
            failures++;
            cr_expect_fail("%s, m %d k %d n %d: a guard next to the output changed", what, m, k, n);
            return;
        }
}

/* one shape: C = A B (acc or not), dA += dY B^T, dB += A^T dY */
static void check_shape(int m, int k, int n)
{
    const size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
    tg_real *a = random_array(na), *b = random_array(nb), *dy = random_array(nc);
    long double *ref = malloc((na + nb + nc) * sizeof *ref), *bound = malloc((na + nb + nc) * sizeof *bound);
    cr_assert(ref && bound);
    const long double u = UNIT;

    for (int acc = 0; acc < 2; acc++) {
        out c = out_new(nc);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                long double s = acc ? c.v[(size_t)i * n + j] : 0, t = fabsl(s);
                for (int p = 0; p < k; p++) {
                    long double x = (long double)a[(size_t)i * k + p] * b[(size_t)p * n + j];
                    s += x, t += fabsl(x);
                }
                ref[(size_t)i * n + j] = s, bound[(size_t)i * n + j] = (k + 2) * u * t;
            }
        tg_small_forward(m, n, k, a, b, c.v, acc);
        expect_close(c.v, ref, bound, nc, acc ? "C += A B" : "C = A B", m, k, n);
        expect_guards(&c, "C", m, k, n);
        out_free(&c);
    }

    out da = out_new(na);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) {
            long double s = da.v[(size_t)i * k + p], t = fabsl(s);
            for (int j = 0; j < n; j++) {
                long double x = (long double)dy[(size_t)i * n + j] * b[(size_t)p * n + j];
                s += x, t += fabsl(x);
            }
            ref[(size_t)i * k + p] = s, bound[(size_t)i * k + p] = (n + 2) * u * t;
        }
    tg_small_grad_a(m, n, k, dy, b, da.v);
    expect_close(da.v, ref, bound, na, "dA += dY B^T", m, k, n);
    expect_guards(&da, "dA", m, k, n);
    out_free(&da);

    out db = out_new(nb);
    for (int p = 0; p < k; p++)
        for (int j = 0; j < n; j++) {
            long double s = db.v[(size_t)p * n + j], t = fabsl(s);
            for (int i = 0; i < m; i++) {
                long double x = (long double)a[(size_t)i * k + p] * dy[(size_t)i * n + j];
                s += x, t += fabsl(x);
            }
            ref[(size_t)p * n + j] = s, bound[(size_t)p * n + j] = (m + 2) * u * t;
        }
    tg_small_grad_b(m, n, k, a, dy, db.v);
    expect_close(db.v, ref, bound, nb, "dB += A^T dY", m, k, n);
    expect_guards(&db, "dB", m, k, n);
    out_free(&db);

    free(a), free(b), free(dy), free(ref), free(bound);
}

/* lengths around every block (8) and unrolled-row limit (32..39), the
 * 64-row chunks of the matrix-vector product, and longer */
static const int lengths[] = {1,  2,  3,  4,  5,  7,  8,  9,  15, 16, 17, 23, 24, 25,
                              31, 32, 33, 39, 40, 41, 47, 48, 63, 64, 65, 100, 129};
#define N_LENGTHS (int)(sizeof lengths / sizeof *lengths)

Test(gemm_small, matrix_vector_products_every_m_and_k)
{
    failures = 0;
    for (int x = 0; x < N_LENGTHS; x++)
        for (int y = 0; y < N_LENGTHS; y++) check_shape(lengths[x], lengths[y], 1);
    cr_expect_eq(failures, 0);
}

Test(gemm_small, vector_matrix_products_every_k_and_n)
{
    failures = 0;
    for (int x = 0; x < N_LENGTHS; x++)
        for (int y = 0; y < N_LENGTHS; y++) check_shape(1, lengths[x], lengths[y]);
    cr_expect_eq(failures, 0);
}

Test(gemm_small, small_general_products)
{
    static const int dims[] = {2, 3, 4, 5, 7, 8, 9, 16, 17};
    const int nd = (int)(sizeof dims / sizeof *dims);
    failures = 0;
    for (int x = 0; x < nd; x++)
        for (int y = 0; y < nd; y++)
            for (int z = 0; z < nd; z++) check_shape(dims[x], dims[y], dims[z]);
    cr_expect_eq(failures, 0);
}

/* A row's value does not depend on how many rows come with it (blocks of
 * rows, the 64-row chunks), nor on acc beyond the one addition: the sum
 * order is fixed per row. */
Test(gemm_small, a_rows_product_is_the_same_in_any_matrix)
{
    static const int ks[] = {1, 7, 8, 16, 17, 32, 39, 40, 100};
    for (size_t q = 0; q < sizeof ks / sizeof *ks; q++) {
        const int k = ks[q], m = 131;
        tg_real *a = random_array((size_t)m * k), *x = random_array((size_t)k);
        tg_real *all = random_array((size_t)m), *one = random_array(1), *acc = random_array(1);
        tg_small_forward(m, 1, k, a, x, all, false);
        for (int i = 0; i < m; i++) {
            tg_small_forward(1, 1, k, a + (size_t)i * k, x, one, false);
            cr_expect(memcmp(one, all + i, sizeof *one) == 0,
                      "k %d: row %d alone %.17g, in the matrix %.17g", k, i, (double)one[0],
                      (double)all[i]);
            tg_real before = acc[0];
            tg_small_forward(1, 1, k, a + (size_t)i * k, x, acc, true);
            cr_expect(acc[0] == before + one[0], "k %d: row %d with acc is not y + the row", k, i);
        }
        free(a), free(x), free(all), free(one), free(acc);
    }
}
