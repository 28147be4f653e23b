/* test_threads.c — tapegrad's own threads (tg_ctx_set_threads, core/threads.c,
 * ops/gemm.c): products split over 2 to 4 threads agree with one thread, at
 * shapes on both sides of the split threshold and down every BLAS path; the
 * gradient checks of the ops that multiply pass with the split forced; the
 * pool survives being set, reset and freed many times and many batches in a
 * row (spinning and sleeping workers); an allocator failing at every step
 * leaks nothing and keeps the old setting; and `tapegrad --threads`. */
#include <cblas.h>
#undef I /* OpenBLAS's cblas.h may pull in <complex.h> */
#include <fcntl.h>
#include <float.h>
#include <sys/wait.h>
#include <time.h>
#include "models_testutil.h"
#include "failing_alloc.h"
#include "gemm.h"

/* ---- 1. products: split vs one thread vs a double reference ---------------------- */

typedef struct mm_case {
    int m, n, k;
    tg_real *a, *b, *dy;
    double *ref_c, *ref_da, *ref_db;       /* the exact products, in double */
    double *bnd_c, *bnd_da, *bnd_db;       /* len u sum |terms|: any summation order */
} mm_case;

static double uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) * 0x1.0p-53 * 2 - 1;
}

static void case_init(mm_case *c, int m, int n, int k, uint64_t seed)
{
    c->m = m, c->n = n, c->k = k;
    size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
    c->a = malloc(na * sizeof *c->a), c->b = malloc(nb * sizeof *c->b), c->dy = malloc(nc * sizeof *c->dy);
    c->ref_c = malloc(nc * sizeof(double)), c->bnd_c = malloc(nc * sizeof(double));
    c->ref_da = malloc(na * sizeof(double)), c->bnd_da = malloc(na * sizeof(double));
    c->ref_db = malloc(nb * sizeof(double)), c->bnd_db = malloc(nb * sizeof(double));
    cr_assert(c->a && c->b && c->dy && c->ref_c && c->bnd_c && c->ref_da && c->bnd_da && c->ref_db && c->bnd_db);
    for (size_t i = 0; i < na; i++) c->a[i] = (tg_real)uniform(&seed);
    for (size_t i = 0; i < nb; i++) c->b[i] = (tg_real)uniform(&seed);
    for (size_t i = 0; i < nc; i++) c->dy[i] = (tg_real)uniform(&seed);
#ifdef TG_REAL_DOUBLE
    const double u = DBL_EPSILON / 2;
#else
    const double u = FLT_EPSILON / 2;
#endif
    /* the +2: the accumulating calls add one more rounding */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, t = 0;
            for (int p = 0; p < k; p++) {
                double x = (double)c->a[(size_t)i * k + p] * c->b[(size_t)p * n + j];
                s += x, t += fabs(x);
            }
            c->ref_c[(size_t)i * n + j] = s, c->bnd_c[(size_t)i * n + j] = (k + 2) * u * t + 1e-300;
        }
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) {
            double s = 0, t = 0;
            for (int j = 0; j < n; j++) {
                double x = (double)c->dy[(size_t)i * n + j] * c->b[(size_t)p * n + j];
                s += x, t += fabs(x);
            }
            c->ref_da[(size_t)i * k + p] = s, c->bnd_da[(size_t)i * k + p] = (n + 2) * u * (t + 1) + 1e-300;
        }
    for (int p = 0; p < k; p++)
        for (int j = 0; j < n; j++) {
            double s = 0, t = 0;
            for (int i = 0; i < m; i++) {
                double x = (double)c->a[(size_t)i * k + p] * c->dy[(size_t)i * n + j];
                s += x, t += fabs(x);
            }
            c->ref_db[(size_t)p * n + j] = s, c->bnd_db[(size_t)p * n + j] = (m + 2) * u * (t + 1) + 1e-300;
        }
}

static void case_free(mm_case *c)
{
    free(c->a), free(c->b), free(c->dy);
    free(c->ref_c), free(c->bnd_c), free(c->ref_da), free(c->bnd_da), free(c->ref_db), free(c->bnd_db);
}

/* got[i] against ref[i] + add (the value the buffer started from), within bnd[i] */
static int compare(const tg_real *got, const double *ref, const double *bnd, size_t len, double add,
                   const char *what, const mm_case *c, const char *config)
{
    for (size_t i = 0; i < len; i++)
        if (!(fabs((double)got[i] - (ref[i] + add)) <= bnd[i])) {
            cr_expect_fail("[%d, %d] @ [%d, %d], %s: %s[%zu] = %.9g, want %.9g (bound %.2g)", c->m, c->k, c->k,
                           c->n, config, what, i, (double)got[i], ref[i] + add, bnd[i]);
            return 1;
        }
    return 0;
}

static void fill(tg_real *p, size_t n, tg_real v)
{
    for (size_t i = 0; i < n; i++) p[i] = v;
}

/* Forward (=, then +=) and backward (both, da only, db only) of c through
 * ctx as it is set; returns the number of wrong results. */
static int check_products(tg_ctx *ctx, const mm_case *c, const char *config)
{
    size_t na = (size_t)c->m * c->k, nb = (size_t)c->k * c->n, nc = (size_t)c->m * c->n;
    tg_real *y = malloc(nc * sizeof *y), *da = malloc(na * sizeof *da), *db = malloc(nb * sizeof *db);
    cr_assert(y && da && db);
    int bad = 0;
    fill(y, nc, (tg_real)7); /* acc = false must overwrite */
    tg_mm_forward(ctx, c->m, c->n, c->k, c->a, c->b, y, false);
    bad += compare(y, c->ref_c, c->bnd_c, nc, 0, "a b", c, config);
    fill(y, nc, (tg_real)0.5);
    tg_mm_forward(ctx, c->m, c->n, c->k, c->a, c->b, y, true);
    bad += compare(y, c->ref_c, c->bnd_c, nc, 0.5, "0.5 + a b", c, config);
    for (int which = 0; which < 3; which++) { /* both, da only, db only */
        fill(da, na, (tg_real)0.25), fill(db, nb, (tg_real)-0.25);
        tg_mm_backward(ctx, c->m, c->n, c->k, c->a, c->b, c->dy, which == 2 ? NULL : da, which == 1 ? NULL : db);
        if (which != 2) bad += compare(da, c->ref_da, c->bnd_da, na, 0.25, "da", c, config);
        if (which != 1) bad += compare(db, c->ref_db, c->bnd_db, nb, -0.25, "db", c, config);
        for (size_t i = 0; which == 2 && i < na; i++)
            if (da[i] != (tg_real)0.25) {
                cr_expect_fail("%s: da changed though not asked for", config);
                bad++;
                break;
            }
        for (size_t i = 0; which == 1 && i < nb; i++)
            if (db[i] != (tg_real)-0.25) {
                cr_expect_fail("%s: db changed though not asked for", config);
                bad++;
                break;
            }
    }
    free(y), free(da), free(db);
    return bad;
}

static const int shapes[][3] = {
    /* m, n, k */
    {64, 64, 64}, {63, 64, 64}, {64, 63, 64},  /* around the default threshold 64^3 */
    {40, 32, 40},                              /* below it */
    {256, 32, 64}, {64, 32, 256}, {256, 32, 256}, /* a medium training step's */
    {257, 33, 129}, {100, 37, 70}, {17, 9, 300},  /* odd sizes: blocks and tails */
    {5, 200, 100}, {1, 300, 200}, {9, 16, 400},   /* too few rows: split by columns */
    {300, 1, 200}, {700, 1, 500}, {1, 1, 900},    /* matrix-vector */
};

MT_TEST(threads, products_agree_with_one_thread, .timeout = 120)
{
    tg_ctx *one = tg_ctx_new(NULL);
    cr_assert(one);
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        mm_case c;
        case_init(&c, shapes[s][0], shapes[s][1], shapes[s][2], 1000 + s);
        bad += check_products(one, &c, "1 thread");
        for (int t = 2; t <= 4; t++) {
            tg_ctx *ctx = tg_ctx_new(NULL);
            cr_assert(ctx);
            cr_assert_eq(tg_ctx_set_threads(ctx, t), TG_OK, "%s", tg_errmsg(ctx));
            cr_assert_eq(tg_ctx_threads(ctx), t);
            char cfg[96];
            snprintf(cfg, sizeof cfg, "%d threads, default threshold", t);
            bad += check_products(ctx, &c, cfg);
            /* every product split, down the BLAS paths (no direct loops) */
            ctx->par_min_mnk = 0;
            ctx->matmul_small_mnk = ctx->matmul_mv_max = 0;
            snprintf(cfg, sizeof cfg, "%d threads, every product split through BLAS", t);
            bad += check_products(ctx, &c, cfg);
            tg_ctx_free(ctx);
        }
        case_free(&c);
    }
    tg_ctx_free(one);
    cr_expect_eq(bad, 0, "%d wrong results", bad);
}

/* The same product one thread and two, with a real split: bit for bit is
 * not promised, but each output element is computed by one BLAS call from
 * the same operands, so the results must at least agree to rounding. */
MT_TEST(threads, one_and_two_threads_agree_to_rounding)
{
    const int m = 256, n = 64, k = 256;
    mm_case c;
    case_init(&c, m, n, k, 7);
    tg_ctx *one = tg_ctx_new(NULL), *two = tg_ctx_new(NULL);
    cr_assert(one && two);
    cr_assert_eq(tg_ctx_set_threads(two, 2), TG_OK);
    tg_real *y1 = calloc((size_t)m * n, sizeof *y1), *y2 = calloc((size_t)m * n, sizeof *y2);
    tg_real *da1 = calloc((size_t)m * k, sizeof *da1), *da2 = calloc((size_t)m * k, sizeof *da2);
    tg_real *db1 = calloc((size_t)k * n, sizeof *db1), *db2 = calloc((size_t)k * n, sizeof *db2);
    cr_assert(y1 && y2 && da1 && da2 && db1 && db2);
    tg_mm_forward(one, m, n, k, c.a, c.b, y1, false);
    tg_mm_forward(two, m, n, k, c.a, c.b, y2, false);
    tg_mm_backward(one, m, n, k, c.a, c.b, c.dy, da1, db1);
    tg_mm_backward(two, m, n, k, c.a, c.b, c.dy, da2, db2);
#ifdef TG_REAL_DOUBLE
    const double tol = 1e-13;
#else
    const double tol = 1e-5;
#endif
    for (size_t i = 0; i < (size_t)m * n; i++)
        cr_assert(fabs((double)y1[i] - y2[i]) <= tol * fmax(1, fabs((double)y1[i])), "y[%zu]: %.9g vs %.9g", i,
                  (double)y1[i], (double)y2[i]);
    for (size_t i = 0; i < (size_t)m * k; i++)
        cr_assert(fabs((double)da1[i] - da2[i]) <= tol * fmax(1, fabs((double)da1[i])), "da[%zu]", i);
    for (size_t i = 0; i < (size_t)k * n; i++)
        cr_assert(fabs((double)db1[i] - db2[i]) <= tol * fmax(1, fabs((double)db1[i])), "db[%zu]", i);
    free(y1), free(y2), free(da1), free(da2), free(db1), free(db2);
    tg_ctx_free(one);
    tg_ctx_free(two);
    case_free(&c);
}

/* ---- 2. the gradient checks of the ops that multiply, split --------------------- */

typedef struct gc {
    const char *op;
    int n_in, n_attrs;
    tg_tensor *in[TG_TEST_MAX_IN];
    const double *attrs;
    int rows, cols;
    tg_real *weight;
} gc;

static tg_tensor *build(tg_tape *tape, void *user)
{
    gc *c = user;
    tg_tensor *y = tg_apply(tape, c->op, c->n_in, c->in, c->n_attrs, c->attrs);
    return tg_sum(tape, tg_mul(tape, y, tg_input(tape, c->rows, c->cols, c->weight, 0)));
}

/* The op's own test cases and, for matmul, larger shapes that split into
 * several blocks, with 2 threads, every product split and through BLAS. */
static int gradcheck_split(tg_ctx *ctx, const tg_builtin_op *d, const tg_op_test_case *tc)
{
    tg_tape *tape = tg_tape_new(ctx);
    tg_params *ps = tg_params_new(ctx);
    cr_assert(tape && ps);
    gc c = {.op = d->name, .n_in = tc->n_in, .n_attrs = d->n_attrs, .attrs = tc->attrs};
    int shp[TG_TEST_MAX_IN][2], out[2];
    for (int i = 0; i < tc->n_in; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        c.in[i] = tg_params_add(ps, name, tc->shape[i][0], tc->shape[i][1]);
        cr_assert(c.in[i], "%s", tg_errmsg(ctx));
        shp[i][0] = tc->shape[i][0], shp[i][1] = tc->shape[i][1];
    }
    double lo = d->test.lo, hi = d->test.hi;
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    for (int i = 0; i < tc->n_in; i++)
        for (size_t k = 0; k < tg_size(c.in[i]); k++) tg_data(c.in[i])[k] = (tg_real)(lo + (hi - lo) * tg_rand_uniform(ctx));
    cr_assert_eq(tg_op_shape(ctx, d->name, tc->n_in, (const int (*)[2])shp, d->n_attrs, tc->attrs, out), TG_OK, "%s",
                 tg_errmsg(ctx));
    c.rows = out[0], c.cols = out[1];
    tg_real *w = malloc((size_t)out[0] * out[1] * sizeof *w);
    cr_assert(w);
    for (int i = 0; i < out[0] * out[1]; i++) w[i] = (tg_real)(2 * tg_rand_uniform(ctx) - 1);
    c.weight = w;
#ifdef TG_REAL_DOUBLE
    tg_gradcheck_opts opts = {.tol = d->test.tol / 1e3};
#else
    tg_gradcheck_opts opts = {.tol = d->test.tol};
#endif
    tg_gradcheck_result r = {.worst_param = -1};
    tg_status st = tg_gradcheck(tape, ps, build, &c, &opts, &r);
    if (st != TG_OK)
        cr_expect_fail("%s with 2 threads: worst scaled error %.3e at input %d element %zu (tol %.1e): %s", d->name,
                       r.max_err, r.worst_param, r.worst_index, opts.tol, tg_errmsg(ctx));
    free(w);
    tg_params_free(ps);
    tg_tape_free(tape);
    return st != TG_OK;
}

MT_TEST(threads, gradcheck_of_products_with_two_threads, .timeout = 120)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    ctx->par_min_mnk = 0;
    ctx->matmul_small_mnk = ctx->matmul_mv_max = 0;
    tg_seed(ctx, 606);
    int failures = 0, checked = 0;
    for (int i = 0; i < TG_OP_BUILTIN_COUNT; i++) {
        const tg_builtin_op *d = tg_builtin_at(i);
        /* the ops whose kernels go through ops/gemm.c */
        if (strcmp(d->name, "matmul") != 0 && strcmp(d->name, "affine") != 0 &&
            strcmp(d->name, "affine_block") != 0 && strcmp(d->name, "stack_affine") != 0)
            continue;
        for (int ci = 0; ci < d->test.n_cases; ci++, checked++) failures += gradcheck_split(ctx, d, &d->test.cases[ci]);
        if (!strcmp(d->name, "matmul")) {
            static const int more[][3] = {{24, 10, 20}, {1, 12, 33}, {40, 6, 1}, {5, 7, 40}}; /* m, k, n */
            for (size_t s = 0; s < sizeof more / sizeof *more; s++, checked++) {
                tg_op_test_case tc = {.n_in = 2, .shape = {{more[s][0], more[s][1]}, {more[s][1], more[s][2]}}};
                failures += gradcheck_split(ctx, d, &tc);
            }
        }
    }
    cr_expect(checked >= 15, "only %d cases checked: no matmul in the op table?", checked);
    cr_expect_eq(failures, 0, "%d cases failed", failures);
    tg_ctx_free(ctx);
}

/* ---- 3. the pool's life ---------------------------------------------------------- */

MT_TEST(threads, set_and_get)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    cr_expect_eq(tg_ctx_threads(ctx), 1, "the default is 1");
    cr_expect_eq(tg_ctx_threads(NULL), 1);
    cr_expect_eq(tg_ctx_set_threads(NULL, 2), TG_ERR_ARG);
    const int bad[] = {0, -1, TG_MAX_THREADS + 1, 1 << 30};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(tg_ctx_set_threads(ctx, bad[i]), TG_ERR_ARG, "%d threads accepted", bad[i]);
        cr_expect(strstr(tg_errmsg(ctx), "threads"), "message: %s", tg_errmsg(ctx));
        cr_expect_eq(tg_ctx_threads(ctx), 1, "a refused setting changed it");
    }
    cr_expect_eq(tg_ctx_set_threads(ctx, 3), TG_OK);
    cr_expect_eq(tg_ctx_threads(ctx), 3);
    cr_expect_eq(openblas_get_num_threads(), 1, "BLAS must run one thread beside tapegrad's");
    cr_expect_eq(tg_ctx_set_threads(ctx, TG_MAX_THREADS + 1), TG_ERR_ARG);
    cr_expect_eq(tg_ctx_threads(ctx), 3);
    cr_expect_eq(tg_ctx_set_threads(ctx, 1), TG_OK);
    cr_expect_eq(tg_ctx_threads(ctx), 1);
    cr_expect_eq(openblas_get_num_threads(), 1, "back at 1, BLAS stays at one thread (documented)");
    tg_ctx_free(ctx);
}

/* A product big enough to split by default, and its check. */
static void one_split_product(tg_ctx *ctx, const mm_case *c)
{
    tg_real *y = malloc((size_t)c->m * c->n * sizeof *y);
    cr_assert(y);
    tg_mm_forward(ctx, c->m, c->n, c->k, c->a, c->b, y, false);
    compare(y, c->ref_c, c->bnd_c, (size_t)c->m * c->n, 0, "a b", c, "set and free");
    free(y);
}

MT_TEST(threads, set_and_free_many_times, .timeout = 120)
{
    mm_case c;
    case_init(&c, 128, 32, 128, 5);
    for (int rep = 0; rep < 150; rep++) {
        tg_ctx *ctx = tg_ctx_new(NULL);
        cr_assert(ctx);
        cr_assert_eq(tg_ctx_set_threads(ctx, 2 + rep % 3), TG_OK);
        if (rep % 5 == 4) { /* workers never started */
            tg_ctx_free(ctx);
            continue;
        }
        one_split_product(ctx, &c);
        cr_assert_eq(tg_ctx_set_threads(ctx, 2 + rep % 2), TG_OK);
        cr_assert_eq(tg_ctx_set_threads(ctx, 2 + rep % 2), TG_OK); /* the same again: kept */
        one_split_product(ctx, &c);
        cr_assert_eq(tg_ctx_set_threads(ctx, 1), TG_OK);
        one_split_product(ctx, &c);
        cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
        if (rep % 2) one_split_product(ctx, &c);
        tg_ctx_free(ctx); /* joins whatever runs */
    }
    case_free(&c);
}

/* Many batches back to back (workers spinning), then batches far apart
 * (workers asleep on the condition variable), forced split of small
 * products so that each batch is short. */
MT_TEST(threads, many_batches_awake_and_asleep, .timeout = 120)
{
    mm_case c;
    case_init(&c, 24, 8, 16, 11);
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    cr_assert_eq(tg_ctx_set_threads(ctx, 3), TG_OK);
    ctx->par_min_mnk = 0;
    ctx->matmul_small_mnk = ctx->matmul_mv_max = 0;
    tg_real y[24 * 8], da[24 * 16], db[16 * 8];
    int bad = 0;
    for (int rep = 0; rep < 3000 && !bad; rep++) {
        tg_mm_forward(ctx, 24, 8, 16, c.a, c.b, y, false);
        bad += compare(y, c.ref_c, c.bnd_c, 24 * 8, 0, "a b", &c, "back to back");
        memset(da, 0, sizeof da), memset(db, 0, sizeof db);
        tg_mm_backward(ctx, 24, 8, 16, c.a, c.b, c.dy, da, db);
        bad += compare(da, c.ref_da, c.bnd_da, 24 * 16, 0, "da", &c, "back to back");
        bad += compare(db, c.ref_db, c.bnd_db, 16 * 8, 0, "db", &c, "back to back");
    }
    for (int rep = 0; rep < 12 && !bad; rep++) {
        /* past the spin: the workers sleep */
        nanosleep(&(struct timespec){0, rep % 2 ? 3000000 : 300000}, NULL);
        tg_mm_forward(ctx, 24, 8, 16, c.a, c.b, y, false);
        bad += compare(y, c.ref_c, c.bnd_c, 24 * 8, 0, "a b", &c, "after a pause");
        memset(da, 0, sizeof da), memset(db, 0, sizeof db);
        tg_mm_backward(ctx, 24, 8, 16, c.a, c.b, c.dy, da, db);
        bad += compare(da, c.ref_da, c.bnd_da, 24 * 16, 0, "da", &c, "after a pause");
        bad += compare(db, c.ref_db, c.bnd_db, 16 * 8, 0, "db", &c, "after a pause");
    }
    cr_expect_eq(bad, 0);
    tg_ctx_free(ctx);
    case_free(&c);
}

/* A recorded network over several steps, 2 threads vs 1: the same loss and
 * gradients (every matmul forced to split). */
MT_TEST(threads, tape_with_threads_matches)
{
    double loss[2];
    tg_real grad[2][48 * 48];
    for (int t = 0; t < 2; t++) {
        tg_ctx *ctx = tg_ctx_new(NULL);
        cr_assert(ctx);
        if (t) {
            cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
            ctx->par_min_mnk = 0;
        }
        tg_params *ps = tg_params_new(ctx);
        tg_tape *tape = tg_tape_new(ctx);
        tg_tensor *W = tg_params_add(ps, "W", 48, 48);
        cr_assert(ps && tape && W);
        uint64_t s = 3;
        for (int i = 0; i < 48 * 48; i++) tg_data(W)[i] = (tg_real)(0.2 * uniform(&s));
        tg_real x[48 * 16];
        for (int i = 0; i < 48 * 16; i++) x[i] = (tg_real)uniform(&s);
        tg_tensor *h = tg_input(tape, 48, 16, x, 0);
        for (int step = 0; step < 6; step++) h = tg_tanh(tape, tg_matmul(tape, W, h));
        tg_tensor *l = tg_sum(tape, tg_mul(tape, h, h));
        cr_assert(l, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tape, l), TG_OK, "%s", tg_errmsg(ctx));
        loss[t] = tg_item(l);
        memcpy(grad[t], tg_grad(W), sizeof grad[t]);
        tg_tape_free(tape);
        tg_params_free(ps);
        tg_ctx_free(ctx);
    }
    cr_expect(fabs(loss[0] - loss[1]) <= 1e-5 * fmax(1, fabs(loss[0])), "loss %.9g vs %.9g", loss[0], loss[1]);
    for (int i = 0; i < 48 * 48; i++)
        cr_assert(fabs((double)grad[0][i] - grad[1][i]) <= 1e-5 * fmax(1, fabs((double)grad[0][i])),
                  "dW[%d]: %.9g vs %.9g", i, (double)grad[0][i], (double)grad[1][i]);
}

/* ---- 4. allocation failures ------------------------------------------------------ */

/* Makes a context, sets 2 threads, runs a split product, sets 4, runs
 * again; returns 1 if it got to the end. */
static int threads_path(failing *f, const mm_case *c)
{
    tg_allocator a = {f_alloc, NULL, f_free, f};
    tg_ctx *ctx = tg_ctx_new(&a);
    if (!ctx) return 0;
    int done = 0;
    tg_status s = tg_ctx_set_threads(ctx, 2);
    if (s != TG_OK) {
        cr_assert_eq(s, TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_ctx_threads(ctx), 1, "a failed setting changed it");
        one_split_product(ctx, c); /* still computes, on one thread */
        goto out;
    }
    one_split_product(ctx, c);
    s = tg_ctx_set_threads(ctx, 4);
    if (s != TG_OK) {
        cr_assert_eq(s, TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_ctx_threads(ctx), 2, "a failed setting changed it");
        one_split_product(ctx, c); /* the old pool still works */
        goto out;
    }
    one_split_product(ctx, c);
    done = 1;
out:
    tg_ctx_free(ctx);
    return done;
}

MT_TEST(threads, every_failing_allocation_is_reported_and_leaks_nothing)
{
    mm_case c;
    case_init(&c, 96, 32, 96, 9);
    long n;
    for (n = 0; n < 10000; n++) {
        failing f = {.countdown = n};
        int done = threads_path(&f, &c);
        cr_assert_eq(f.live, 0, "allocation %ld failing leaked %ld blocks", n, f.live);
        if (done) break;
    }
    cr_assert(n > 1 && n < 10000, "the path made only %ld allocations", n);
    case_free(&c);
}

/* ---- 5. the command-line tool's --threads ---------------------------------------- */

/* The "norm" of every parameter's gradient in a dump's JSON, in order. */
static int grad_norms(const char *json, double *out, int max)
{
    const char *end = strstr(json, "\"nodes\"");
    int n = 0;
    for (const char *p = json; n < max && (p = strstr(p, "\"grad\": {")) && (!end || p < end); p++) {
        const char *q = strstr(p, "\"norm\": ");
        if (!q) break;
        out[n++] = strtod(q + 8, NULL);
    }
    return n;
}

MT_TEST(threads, cli_threads_option, .timeout = 120)
{
    /* the products here (64 x 64 x 64) are split with 2 threads */
    double norms[2][8];
    int counts[2];
    for (int t = 0; t < 2; t++) {
        const char *args[] = {"dump", "models/elman.yaml", "--dim", "input=64", "--dim", "hidden=64", "--steps", "3",
                              "--batch", "64", "--grads", "--format", "json", "--threads", t ? "2" : "1", NULL};
        mt_result r = mt_tool(args);
        cr_assert_eq(r.code, 0, "dump --threads %d: exit %d: %s", t + 1, r.code, r.err);
        counts[t] = grad_norms(r.out, norms[t], 8);
        mt_result_free(&r);
    }
    cr_assert_eq(counts[0], counts[1]);
    cr_assert(counts[0] >= 5, "%d gradient norms in the dump", counts[0]);
    for (int i = 0; i < counts[0]; i++)
        cr_expect(fabs(norms[0][i] - norms[1][i]) <= 1e-5 * fmax(1, fabs(norms[0][i])), "norm %d: %.9g vs %.9g", i,
                  norms[0][i], norms[1][i]);

    /* --threads=N and a thread count past the CPUs are fine */
    const char *ok[] = {"grad", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--params",
                        "examples/data/seed-params.yaml", "--threads=3", NULL};
    mt_result r = mt_tool(ok);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "loss 3.9288"), "%s", r.out);
    mt_result_free(&r);

    /* bad values: a usage error naming the option and the range */
    static const char *const bad[] = {"0", "-2", "65", "two", "2.5", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *args[] = {"run", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--threads", bad[i], NULL};
        r = mt_tool(args);
        cr_expect_eq(r.code, 2, "--threads '%s': exit %d", bad[i], r.code);
        cr_expect(strstr(r.err, "--threads needs a whole number from 1 to 64"), "--threads '%s': %s", bad[i], r.err);
        cr_expect_str_empty(r.out, "--threads '%s' printed: %s", bad[i], r.out);
        mt_result_free(&r);
    }
    const char *missing[] = {"check", "models/elman.yaml", "--threads", NULL};
    r = mt_tool(missing);
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "--threads needs a value"), "%s", r.err);
    mt_result_free(&r);
    const char *typo[] = {"grad", "models/elman.yaml", "--thread", "2", NULL};
    r = mt_tool(typo);
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "did you mean '--threads'"), "%s", r.err);
    mt_result_free(&r);

    /* every command lists it in --help */
    static const char *const cmds[] = {"grad", "check", "run", "train", "sample", "dump"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        const char *args[] = {cmds[i], "--help", NULL};
        r = mt_tool(args);
        cr_expect_eq(r.code, 0);
        cr_expect(strstr(r.out, "--threads N"), "tapegrad %s --help: no --threads:\n%s", cmds[i], r.out);
        mt_result_free(&r);
    }
}

/* affine applies its activation in parts across the threads once a cell has
 * enough values (ops/affine.c, ACT_PAR_MIN): every value must come out as on
 * one thread, bit for bit, whatever the split and the ragged last part. */
MT_TEST(threads, affine_activation_split_matches_one_thread)
{
    const int m = 100, k = 8, n = 77; /* 7700 values: split on 2 or 3 threads */
    tg_real *a = malloc((size_t)m * k * sizeof *a), *x = malloc((size_t)k * n * sizeof *x);
    tg_real *b = malloc((size_t)m * sizeof *b), *first = malloc((size_t)m * n * sizeof *first);
    cr_assert(a && x && b && first);
    uint64_t s = 99;
    for (int i = 0; i < m * k; i++) a[i] = (tg_real)(4 * uniform(&s) - 2);
    for (int i = 0; i < k * n; i++) x[i] = (tg_real)(2 * uniform(&s) - 1);
    for (int i = 0; i < m; i++) b[i] = (tg_real)(uniform(&s) - 0.5);
    for (int act = 1; act <= 2; act++)
        for (int threads = 1; threads <= 3; threads++) {
            tg_ctx *ctx = tg_ctx_new(NULL);
            cr_assert(ctx);
            cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
            tg_tape *tape = tg_tape_new(ctx);
            tg_tensor *in[3] = {tg_input(tape, m, k, a, 0), tg_input(tape, k, n, x, 0), tg_input(tape, m, 1, b, 0)};
            double attrs[2] = {1, act};
            tg_tensor *y = tg_apply(tape, "affine", 3, in, 2, attrs);
            cr_assert(y, "%s", tg_errmsg(ctx));
            if (threads == 1) memcpy(first, tg_data(y), (size_t)m * n * sizeof *first);
            else
                cr_expect(memcmp(first, tg_data(y), (size_t)m * n * sizeof *first) == 0,
                          "activation %d on %d threads differs from one thread", act, threads);
            tg_tape_free(tape);
            tg_ctx_free(ctx);
        }
    free(a), free(x), free(b), free(first);
}
