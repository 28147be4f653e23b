/* test_ops_new.c — the ops the cell language added (issue 14): forward values
 * against numbers worked out by hand, broadcasting, the conventions at kinks,
 * comparisons' missing gradient, where, dropout's masks, the index ops'
 * errors, and layer_norm against a double computation of its own.  Their
 * gradients against finite differences are in tests/test_ops.c, which walks
 * the op table. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include "tg_internal.h"
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#ifdef TG_REAL_DOUBLE
#define VAL_TOL 1e-12
#else
#define VAL_TOL 2e-6
#endif

static tg_ctx *ctx;
static tg_tape *tp;

static void setup(void)
{
    ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    tp = tg_tape_new(ctx);
    cr_assert(tp);
}

static void teardown(void)
{
    tg_tape_free(tp);
    tg_ctx_free(ctx);
#ifdef __SANITIZE_ADDRESS__
    if (__lsan_do_recoverable_leak_check()) {
        fprintf(stderr, "test_ops_new: memory leaked (report above)\n");
        abort();
    }
#endif
}

TestSuite(ops_new, .init = setup, .fini = teardown);

#define EXPECT_NEAR(got, want, what, ...)                                                          \
    do {                                                                                           \
        double g_ = (double)(got), w_ = (double)(want);                                            \
        cr_expect(fabs(g_ - w_) <= VAL_TOL * fmax(1.0, fabs(w_)),                                  \
                  what ": got %.9g, want %.9g", ##__VA_ARGS__, g_, w_);                            \
    } while (0)

static void expect_values(tg_tensor *t, int rows, int cols, const double *want, const char *what)
{
    cr_assert(t, "%s: NULL (%s)", what, tg_errmsg(ctx));
    cr_assert_eq(tg_rows(t), rows, "%s: rows %d, want %d", what, tg_rows(t), rows);
    cr_assert_eq(tg_cols(t), cols, "%s: cols %d, want %d", what, tg_cols(t), cols);
    for (int i = 0; i < rows * cols; i++) EXPECT_NEAR(tg_data(t)[i], want[i], "%s[%d]", what, i);
}

static void expect_grad(tg_tensor *t, const double *want, const char *what)
{
    cr_assert(tg_grad(t), "%s: no gradient", what);
    for (size_t i = 0; i < tg_size(t); i++) EXPECT_NEAR(tg_grad(t)[i], want[i], "%s[%zu]", what, i);
}

/* A leaf with these values; with grad, tg_grad() gives dL/d(leaf). */
static tg_tensor *leaf(int rows, int cols, const double *v, int grad)
{
    tg_real buf[64];
    int n = rows * (cols ? cols : 1);
    cr_assert(n <= 64);
    for (int i = 0; v && i < n; i++) buf[i] = (tg_real)v[i];
    tg_tensor *t = tg_input(tp, rows, cols, v ? buf : NULL, grad);
    cr_assert(t, "tg_input: %s", tg_errmsg(ctx));
    return t;
}
static tg_tensor *input(int rows, int cols, const double *v) { return leaf(rows, cols, v, 0); }
static tg_tensor *param(int rows, int cols, const double *v) { return leaf(rows, cols, v, 1); }

static tg_tensor *op1(const char *name, tg_tensor *a) { return tg_apply(tp, name, 1, &a, 0, NULL); }
static tg_tensor *op1a(const char *name, tg_tensor *a, double attr) { return tg_apply(tp, name, 1, &a, 1, &attr); }
static tg_tensor *op2(const char *name, tg_tensor *a, tg_tensor *b)
{
    return tg_apply(tp, name, 2, (tg_tensor *[]){a, b}, 0, NULL);
}

/* backward from sum(y) */
static void backward_sum(tg_tensor *y)
{
    cr_assert(y, "%s", tg_errmsg(ctx));
    tg_tensor *l = tg_sum(tp, y);
    cr_assert(l, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tp, l), TG_OK, "%s", tg_errmsg(ctx));
}

/* ---- elementwise ------------------------------------------------------------- */

Test(ops_new, div_values_broadcast_and_gradient)
{
    tg_tensor *a = param(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = param(2, 0, (double[]){2, -4}); /* a column [2]: spreads over the columns */
    tg_tensor *y = op2("div", a, b);
    expect_values(y, 2, 3, (double[]){0.5, 1, 1.5, -1, -1.25, -1.5}, "a / b");
    backward_sum(y);
    expect_grad(a, (double[]){0.5, 0.5, 0.5, -0.25, -0.25, -0.25}, "d(a/b)/da");
    /* db_i = -sum_j a_ij / b_i^2: -(6)/4, -(15)/16 */
    expect_grad(b, (double[]){-1.5, -0.9375}, "d(a/b)/db");
    expect_values(op2("div", input(1, 3, (double[]){1, 2, 3}), input(2, 1, (double[]){1, 2})), 2, 3,
                  (double[]){1, 2, 3, 0.5, 1, 1.5}, "row / column");
    tg_tensor *z = op2("div", input(1, 2, (double[]){1, -1}), input(1, 1, (double[]){0}));
    cr_assert(z);
    cr_expect(isinf(tg_data(z)[0]) && tg_data(z)[0] > 0 && isinf(tg_data(z)[1]) && tg_data(z)[1] < 0,
              "1/0 and -1/0 are +inf and -inf, not clamped");
}

Test(ops_new, sqrt_abs_softplus_pow_values)
{
    expect_values(op1("sqrt", input(1, 3, (double[]){0, 4, 2})), 1, 3, (double[]){0, 2, 1.4142135623730951}, "sqrt");
    tg_tensor *s = op1("sqrt", input(1, 1, (double[]){-1}));
    cr_expect(s && isnan(tg_data(s)[0]), "sqrt(-1) is NaN, for anomaly detection");
    expect_values(op1("abs", input(1, 3, (double[]){-2.5, 0, 3})), 1, 3, (double[]){2.5, 0, 3}, "abs");
    /* log(1 + e^x): log 2, log(1 + e), log(1 + e^-1); 100 exactly; e^-100 */
    expect_values(op1("softplus", input(1, 4, (double[]){0, 1, -1, 100})), 1, 4,
                  (double[]){0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 100}, "softplus");
    tg_tensor *big = op1("softplus", input(1, 3, (double[]){1000, -1000, -100}));
    cr_assert(big);
    cr_expect_eq(tg_data(big)[0], 1000, "softplus(1000) = %g: log(1 + e^1000) must not overflow",
                 (double)tg_data(big)[0]);
    cr_expect_eq(tg_data(big)[1], 0);
#ifdef TG_REAL_DOUBLE
    EXPECT_NEAR(tg_data(big)[2] / 3.720075976020836e-44, 1, "softplus(-100) keeps its digits");
#endif
    expect_values(op1a("pow", input(1, 3, (double[]){2, -3, 0.5}), 3), 1, 3, (double[]){8, -27, 0.125}, "x^3");
    expect_values(op1a("pow", input(1, 2, (double[]){4, 2.25}), 0.5), 1, 2, (double[]){2, 1.5}, "x^0.5");
    expect_values(op1a("pow", input(1, 2, (double[]){4, 0.5}), -1), 1, 2, (double[]){0.25, 2}, "x^-1");
}

Test(ops_new, unary_gradients_and_kinks)
{
    tg_tensor *x = param(1, 4, (double[]){-2, 0, 3, 1e-30});
    backward_sum(op1("abs", x));
    /* abs'(0) = 0, as torch: the subgradient that moves nothing */
    expect_grad(x, (double[]){-1, 0, 1, 1}, "abs'");
    tg_tensor *s = param(1, 3, (double[]){0, 2, -2});
    backward_sum(op1("softplus", s));
    expect_grad(s, (double[]){0.5, 0.8807970779778823, 0.11920292202211755}, "softplus' = sigmoid");
    tg_tensor *q = param(1, 2, (double[]){4, 0.25});
    backward_sum(op1("sqrt", q));
    expect_grad(q, (double[]){0.25, 1}, "sqrt' = 1 / (2 sqrt x)");
    tg_tensor *p = param(1, 3, (double[]){0, -2, 3});
    backward_sum(op1a("pow", p, 2));
    expect_grad(p, (double[]){0, -4, 6}, "(x^2)' at 0, -2, 3");
    tg_tensor *p0 = param(1, 2, (double[]){0, 5});
    tg_tensor *y0 = op1a("pow", p0, 0);
    expect_values(y0, 1, 2, (double[]){1, 1}, "x^0");
    backward_sum(y0);
    expect_grad(p0, (double[]){0, 0}, "(x^0)' is 0, also at x = 0");
}

Test(ops_new, max_min_values_and_ties)
{
    tg_tensor *a = param(2, 2, (double[]){1, 5, -3, 2});
    tg_tensor *b = param(2, 0, (double[]){2, 2}); /* a column: ties with a[1][1] */
    tg_tensor *mx = op2("max", a, b);
    expect_values(mx, 2, 2, (double[]){2, 5, 2, 2}, "max(a, b)");
    backward_sum(mx);
    /* a tie goes to the first operand: a[1][1] = 2 = b[1] */
    expect_grad(a, (double[]){0, 1, 0, 1}, "dmax/da");
    expect_grad(b, (double[]){1, 1}, "dmax/db");

    tg_tape_reset(tp);
    a = param(2, 2, (double[]){1, 5, -3, 2});
    b = param(2, 0, (double[]){2, 2});
    tg_tensor *mn = op2("min", a, b);
    expect_values(mn, 2, 2, (double[]){1, 2, -3, 2}, "min(a, b)");
    backward_sum(mn);
    expect_grad(a, (double[]){1, 0, 1, 1}, "dmin/da");
    expect_grad(b, (double[]){1, 0}, "dmin/db");

    /* min(b, a): the tie now goes to b */
    tg_tape_reset(tp);
    a = param(1, 1, (double[]){2}), b = param(1, 1, (double[]){2});
    backward_sum(op2("min", b, a));
    expect_grad(b, (double[]){1}, "tie: first operand");
    expect_grad(a, (double[]){0}, "tie: second operand");

    /* a NaN on either side comes out */
    tg_tensor *n1 = op2("max", input(1, 2, (double[]){NAN, 1}), input(1, 2, (double[]){1, NAN}));
    tg_tensor *n2 = op2("min", input(1, 2, (double[]){NAN, 1}), input(1, 2, (double[]){1, NAN}));
    cr_assert(n1 && n2);
    for (int i = 0; i < 2; i++)
        cr_expect(isnan(tg_data(n1)[i]) && isnan(tg_data(n2)[i]), "max/min dropped a NaN at %d", i);
}

Test(ops_new, mod_has_floor_semantics)
{
    /* as Python's % and torch.remainder: the sign of b */
    tg_tensor *a = param(1, 6, (double[]){7, -7, 7, -7, 5.5, 6});
    tg_tensor *b = param(1, 6, (double[]){3, 3, -3, -3, 2, 3});
    tg_tensor *y = op2("mod", a, b);
    expect_values(y, 1, 6, (double[]){1, 2, -2, -1, 1.5, 0}, "mod");
    backward_sum(y);
    expect_grad(a, (double[]){1, 1, 1, 1, 1, 1}, "dmod/da");
    /* -floor(a / b): -2, 3, 3, -2, -2, -2 */
    expect_grad(b, (double[]){-2, 3, 3, -2, -2, -2}, "dmod/db");
    /* broadcast: a period as a scalar */
    expect_values(op2("mod", input(1, 4, (double[]){0, 1, 5, -1}), input(1, 1, (double[]){4})), 1, 4,
                  (double[]){0, 1, 1, 3}, "mod(t, 4)");
    tg_tensor *z = op2("mod", input(1, 1, (double[]){1}), input(1, 1, (double[]){0}));
    cr_expect(z && isnan(tg_data(z)[0]), "mod(1, 0) is NaN");
}

Test(ops_new, comparisons_values_and_no_gradient)
{
    tg_tensor *a = param(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = param(1, 3, (double[]){2, 2, 5}); /* a row, broadcast down */
    static const struct { const char *op; double want[6]; } cases[] = {
        {"eq", {0, 1, 0, 0, 0, 0}}, {"ne", {1, 0, 1, 1, 1, 1}}, {"lt", {1, 0, 1, 0, 0, 0}},
        {"le", {1, 1, 1, 0, 0, 0}}, {"gt", {0, 0, 0, 1, 1, 1}}, {"ge", {0, 1, 0, 1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        tg_tensor *m = op2(cases[c].op, a, b);
        expect_values(m, 2, 3, cases[c].want, cases[c].op);
        /* a mask is a constant: sum(m * a) sends a the mask and b nothing */
        tg_tensor *l = tg_sum(tp, tg_mul(tp, m, a));
        cr_assert_eq(tg_backward(tp, l), TG_OK, "%s", tg_errmsg(ctx));
        expect_grad(a, cases[c].want, cases[c].op);
        cr_expect(!tg_grad(b) || (tg_grad(b)[0] == 0 && tg_grad(b)[1] == 0 && tg_grad(b)[2] == 0),
                  "%s sent a gradient to b", cases[c].op);
        /* and a mask alone carries none: the loss does not need one */
        tg_tensor *only = tg_sum(tp, m);
        cr_assert_eq(tg_backward(tp, only), TG_OK);
    }
    /* a NaN compares false except under ne */
    tg_tensor *n = input(1, 1, (double[]){NAN}), *one = input(1, 1, (double[]){1});
    const char *ops[] = {"eq", "ne", "lt", "le", "gt", "ge"};
    for (int i = 0; i < 6; i++) {
        tg_tensor *m = op2(ops[i], n, one);
        cr_assert(m);
        cr_expect_eq(tg_data(m)[0], i == 1, "%s(NaN, 1) = %g", ops[i], (double)tg_data(m)[0]);
    }
}

Test(ops_new, where_picks_and_routes_gradients)
{
    tg_tensor *c = param(2, 2, (double[]){1, 0, -2, 0}); /* any value but 0 picks a */
    tg_tensor *a = param(2, 2, (double[]){10, 20, 30, 40});
    tg_tensor *b = param(2, 0, (double[]){-1, -2}); /* a column */
    tg_tensor *y = tg_apply(tp, "where", 3, (tg_tensor *[]){c, a, b}, 0, NULL);
    expect_values(y, 2, 2, (double[]){10, -1, 30, -2}, "where");
    backward_sum(y);
    expect_grad(a, (double[]){1, 0, 1, 0}, "dwhere/da");
    expect_grad(b, (double[]){1, 1}, "dwhere/db");
    expect_grad(c, (double[]){0, 0, 0, 0}, "dwhere/dc");
    /* where(gt(x, 0), x, 0 * x) is relu, gradient and all */
    tg_tape_reset(tp);
    tg_tensor *x = param(1, 4, (double[]){-1, 2, -3, 4});
    tg_tensor *zero = input(1, 1, (double[]){0});
    tg_tensor *r = tg_apply(tp, "where", 3, (tg_tensor *[]){op2("gt", x, zero), x, zero}, 0, NULL);
    expect_values(r, 1, 4, (double[]){0, 2, 0, 4}, "relu by where");
    backward_sum(r);
    expect_grad(x, (double[]){0, 1, 0, 1}, "relu' by where");
}

/* ---- reductions along an axis ---------------------------------------------- */

Test(ops_new, sum_and_mean_along_an_axis)
{
    tg_tensor *x = param(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *s0 = op1a("sum_axis", x, 0), *s1 = op1a("sum_axis", x, 1);
    expect_values(s0, 1, 3, (double[]){5, 7, 9}, "sum over rows");
    expect_values(s1, 2, 1, (double[]){6, 15}, "sum over columns");
    expect_values(op1a("mean_axis", x, 0), 1, 3, (double[]){2.5, 3.5, 4.5}, "mean over rows");
    tg_tensor *m1 = op1a("mean_axis", x, 1);
    expect_values(m1, 2, 1, (double[]){2, 5}, "mean over columns");
    /* L = sum(s0 * [1 2 3]) + sum(m1 * [1 -1]) */
    tg_tensor *l = tg_add(tp, tg_sum(tp, tg_mul(tp, s0, input(1, 3, (double[]){1, 2, 3}))),
                          tg_sum(tp, tg_mul(tp, m1, input(2, 1, (double[]){1, -1}))));
    cr_assert_eq(tg_backward(tp, l), TG_OK, "%s", tg_errmsg(ctx));
    expect_grad(x, (double[]){1 + 1.0 / 3, 2 + 1.0 / 3, 3 + 1.0 / 3, 1 - 1.0 / 3, 2 - 1.0 / 3, 3 - 1.0 / 3},
                "d/dx");
    /* a vector [3] is a column: over its rows, a 1x1; over its columns, itself */
    tg_tensor *v = input(3, 0, (double[]){1, 2, 4});
    expect_values(op1a("sum_axis", v, 0), 1, 1, (double[]){7}, "sum of [3] over rows");
    tg_tensor *same = op1a("mean_axis", v, 1);
    expect_values(same, 3, 1, (double[]){1, 2, 4}, "mean of [3] over columns");
    cr_expect_eq(tg_ndim(same), 1);
    cr_expect_null(op1a("sum_axis", x, 2));
    cr_expect_str_eq(tg_errmsg(ctx), "sum_axis: the axis must be 0 (over the rows) or 1 (over the columns), not 2");
}

/* ---- layer_norm ---------------------------------------------------------------- */

/* The reference: y and L = sum(y * R) in double, straight from the definition. */
static double ln_ref(int n, int B, const double *x, const double *g, const double *b, double eps,
                     const double *R, double *y)
{
    double L = 0;
    for (int j = 0; j < B; j++) {
        double mu = 0, var = 0;
        for (int i = 0; i < n; i++) mu += x[i * B + j] / n;
        for (int i = 0; i < n; i++) var += (x[i * B + j] - mu) * (x[i * B + j] - mu) / n;
        for (int i = 0; i < n; i++) {
            double v = g[i] * (x[i * B + j] - mu) / sqrt(var + eps) + b[i];
            if (y) y[i * B + j] = v;
            L += v * R[i * B + j];
        }
    }
    return L;
}

Test(ops_new, layer_norm_against_double)
{
    enum { N = 7, B = 3 };
    double x[N * B], g[N], b[N], R[N * B], y[N * B];
    const double eps = 1e-5;
    tg_seed(ctx, 5);
    for (int k = 0; k < N * B; k++) x[k] = 4 * tg_rand_uniform(ctx) - 2 + (k % B) * 10; /* columns far apart */
    for (int k = 0; k < N * B; k++) R[k] = 2 * tg_rand_uniform(ctx) - 1;
    for (int i = 0; i < N; i++) g[i] = 0.5 + tg_rand_uniform(ctx), b[i] = tg_rand_uniform(ctx) - 0.5;
    /* the inputs as the op will see them, rounded to tg_real */
    for (int k = 0; k < N * B; k++) x[k] = (double)(tg_real)x[k], R[k] = (double)(tg_real)R[k];
    for (int i = 0; i < N; i++) g[i] = (double)(tg_real)g[i], b[i] = (double)(tg_real)b[i];
    ln_ref(N, B, x, g, b, eps, R, y);

    tg_tensor *xt = param(N, B, x), *gt = param(N, 0, g), *bt = param(N, 0, b);
    tg_tensor *yt = tg_apply(tp, "layer_norm", 3, (tg_tensor *[]){xt, gt, bt}, 1, &eps);
    cr_assert(yt, "%s", tg_errmsg(ctx));
#ifdef TG_REAL_DOUBLE
    const double tol = 1e-12, gtol = 1e-8;
#else
    const double tol = 1e-6, gtol = 1e-5;
#endif
    for (int k = 0; k < N * B; k++)
        cr_expect(fabs(tg_data(yt)[k] - y[k]) <= tol * fmax(1, fabs(y[k])), "y[%d] = %.9g, want %.9g", k,
                  (double)tg_data(yt)[k], y[k]);
    tg_tensor *l = tg_sum(tp, tg_mul(tp, yt, input(N, B, R)));
    cr_assert_eq(tg_backward(tp, l), TG_OK, "%s", tg_errmsg(ctx));
    /* the reference gradient by central differences of the double reference */
    double *vals[3] = {x, g, b};
    tg_tensor *ts[3] = {xt, gt, bt};
    const int lens[3] = {N * B, N, N};
    const char *names[3] = {"dx", "dgain", "dbias"};
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < lens[p]; k++) {
            double v = vals[p][k], h = 1e-6;
            vals[p][k] = v + h;
            double up = ln_ref(N, B, x, g, b, eps, R, NULL);
            vals[p][k] = v - h;
            double down = ln_ref(N, B, x, g, b, eps, R, NULL);
            vals[p][k] = v;
            double want = (up - down) / (2 * h), got = tg_grad(ts[p])[k];
            cr_expect(fabs(got - want) <= gtol * fmax(1, fabs(want)), "%s[%d] = %.9g, want %.9g", names[p], k,
                      got, want);
        }
    /* a constant column normalises to 0: y = bias, and finite */
    tg_tensor *c = tg_apply(tp, "layer_norm", 3,
                            (tg_tensor *[]){input(2, 1, (double[]){3, 3}), input(2, 0, (double[]){2, 2}),
                                            input(2, 0, (double[]){0.5, -1})},
                            1, &eps);
    expect_values(c, 2, 1, (double[]){0.5, -1}, "constant column");
}

Test(ops_new, layer_norm_shape_errors)
{
    const double eps = 1e-5, bad_eps = -1;
    tg_tensor *x = input(4, 3, NULL), *g3 = input(3, 0, NULL), *g4 = input(4, 0, NULL);
    cr_expect_null(tg_apply(tp, "layer_norm", 3, (tg_tensor *[]){x, g3, g4}, 1, &eps));
    cr_expect_str_eq(tg_errmsg(ctx), "layer_norm: the gain is [3, 1]; for x [4, 3] it must be [4]");
    cr_expect_null(tg_apply(tp, "layer_norm", 3, (tg_tensor *[]){x, g4, x}, 1, &eps));
    cr_expect_str_eq(tg_errmsg(ctx), "layer_norm: the bias is [4, 3]; for x [4, 3] it must be [4]");
    cr_expect_null(tg_apply(tp, "layer_norm", 3, (tg_tensor *[]){x, g4, g4}, 1, &bad_eps));
    cr_expect_str_eq(tg_errmsg(ctx), "layer_norm: eps must be a finite number >= 0, got -1");
}

/* ---- dropout ------------------------------------------------------------------- */

Test(ops_new, dropout_is_the_identity_unless_training)
{
    cr_expect_eq(tg_tape_training(tp), 0, "a new tape does not train");
    tg_tensor *x = param(2, 3, (double[]){1, -2, 3, -4, 5, -6});
    tg_tensor *y = op1a("dropout", x, 0.5);
    expect_values(y, 2, 3, (double[]){1, -2, 3, -4, 5, -6}, "dropout when evaluating");
    backward_sum(y);
    expect_grad(x, (double[]){1, 1, 1, 1, 1, 1}, "its gradient");
    /* p = 0 keeps everything even while training */
    tg_tape_set_training(tp, 1);
    expect_values(op1a("dropout", x, 0), 2, 3, (double[]){1, -2, 3, -4, 5, -6}, "p = 0");
    cr_expect_null(op1a("dropout", x, 1));
    cr_expect_str_eq(tg_errmsg(ctx), "dropout: the probability of dropping must be in [0, 1), got 1");
}

enum { DN = 20000 };

/* dropout(ones * 2, p) on a training tape seeded with seed; the values into v */
static void dropped(uint64_t seed, double p, tg_real *v, tg_tensor **xp, tg_tensor **yp)
{
    tg_tape_reset(tp);
    tg_tape_set_training(tp, 1);
    tg_seed(ctx, seed);
    tg_tensor *x = tg_input(tp, DN, 0, NULL, 1);
    cr_assert(x);
    for (int i = 0; i < DN; i++) tg_data(x)[i] = 2;
    tg_tensor *y = op1a("dropout", x, p);
    cr_assert(y, "%s", tg_errmsg(ctx));
    memcpy(v, tg_data(y), DN * sizeof *v);
    if (xp) *xp = x, *yp = y;
}

Test(ops_new, dropout_masks_scale_and_reproduce)
{
    static tg_real a[DN], b[DN], c[DN];
    const double p = 0.3;
    tg_tensor *x, *y;
    dropped(42, p, a, &x, &y);
    int kept = 0;
    for (int i = 0; i < DN; i++) {
        /* kept values are scaled by 1 / (1 - p), exactly as tg_real rounds it */
        cr_expect(a[i] == 0 || a[i] == 2 * (tg_real)(1 / (1 - p)), "y[%d] = %.9g", i, (double)a[i]);
        kept += a[i] != 0;
    }
    /* kept ~ Binomial(DN, 0.7): sd 0.0032 in the fraction, 0.02 is six of them */
    double frac = (double)kept / DN;
    cr_expect(fabs(frac - (1 - p)) < 0.02, "kept %.4f of the elements, want about %.2f", frac, 1 - p);
    /* the gradient goes through the kept elements, scaled alike */
    backward_sum(y);
    for (int i = 0; i < DN; i++)
        if (tg_grad(x)[i] != a[i] / 2) {
            cr_expect_fail("dx[%d] = %g with y %g: not the mask", i, (double)tg_grad(x)[i], (double)a[i]);
            break;
        }
    dropped(42, p, b, NULL, NULL);
    cr_expect(!memcmp(a, b, sizeof a), "the same seed gave another mask");
    dropped(43, p, c, NULL, NULL);
    cr_expect(memcmp(a, c, sizeof a) != 0, "another seed gave the same mask");
    /* a reset keeps the mode */
    tg_tape_reset(tp);
    cr_expect_eq(tg_tape_training(tp), 1);
    tg_tape_set_training(tp, 0);
}

/* ---- index ops ---------------------------------------------------------------- */

Test(ops_new, embed_takes_rows_and_adds_gradients)
{
    /* E [4, 2]: row r is (r, 10 r) */
    tg_tensor *E = param(4, 2, (double[]){0, 0, 1, 10, 2, 20, 3, 30});
    tg_tensor *idx = input(1, 4, (double[]){2, 0, 2, 3});
    tg_tensor *y = op2("embed", E, idx);
    expect_values(y, 2, 4, (double[]){2, 0, 2, 3, 20, 0, 20, 30}, "embed");
    /* L = sum(y * R): row 2 is used twice, row 1 never */
    tg_tensor *R = input(2, 4, (double[]){1, 2, 3, 4, 5, 6, 7, 8});
    tg_tensor *l = tg_sum(tp, tg_mul(tp, y, R));
    cr_assert_eq(tg_backward(tp, l), TG_OK, "%s", tg_errmsg(ctx));
    expect_grad(E, (double[]){2, 6, 0, 0, 1 + 3, 5 + 7, 4, 8}, "dE");
}

Test(ops_new, bad_indices_are_errors_not_reads)
{
    tg_tensor *E = param(5, 3, NULL);
    tg_tensor *z = param(5, 2, NULL);
    static const struct { double v[2]; const char *embed, *xent; } cases[] = {
        {{1, 5}, "embed: index 5 in column 2 is out of range for a table of 5 rows (0 to 4)",
         "softmax_cross_entropy_index: index 5 in column 2 is out of range for 5 classes (0 to 4)"},
        {{-1, 0}, "embed: index -1 in column 1 is out of range for a table of 5 rows (0 to 4)",
         "softmax_cross_entropy_index: index -1 in column 1 is out of range for 5 classes (0 to 4)"},
        {{0, 2.5}, "embed: index 2.5 in column 2 is not a whole number",
         "softmax_cross_entropy_index: index 2.5 in column 2 is not a whole number"},
        {{NAN, 0}, "embed: index nan in column 1 is not a whole number",
         "softmax_cross_entropy_index: index nan in column 1 is not a whole number"},
        {{1e30, 0}, "embed: index 1e+30 in column 1 is out of range for a table of 5 rows (0 to 4)",
         "softmax_cross_entropy_index: index 1e+30 in column 1 is out of range for 5 classes (0 to 4)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        tg_tensor *idx = input(1, 2, cases[c].v);
        int len = tg_tape_length(tp);
        cr_expect_null(op2("embed", E, idx));
        cr_expect_eq(tg_status_last(ctx), TG_ERR_ARG);
        cr_expect_str_eq(tg_errmsg(ctx), cases[c].embed);
        cr_expect_null(op2("softmax_cross_entropy_index", z, idx));
        cr_expect_str_eq(tg_errmsg(ctx), cases[c].xent);
        cr_expect_eq(tg_tape_length(tp), len, "a refused entry stays off the tape");
    }
    cr_expect_null(op2("embed", E, input(2, 1, (double[]){0, 1})));
    cr_expect_str_eq(tg_errmsg(ctx), "embed: the indices must be one row [1, B], got [2, 1]");
    cr_expect_null(op2("softmax_cross_entropy_index", z, input(1, 3, (double[]){0, 1, 2})));
    cr_expect_str_eq(tg_errmsg(ctx),
                     "softmax_cross_entropy_index: the class indices must be [1, 2] for logits [5, 2], got [1, 3]");
}

Test(ops_new, index_cross_entropy_equals_the_one_hot_one)
{
    /* z [3, 2]; classes 2 and 0 */
    const double zv[6] = {1, 5, 2, 5, 3, 5};
    tg_tensor *z1 = param(3, 2, zv), *z2 = param(3, 2, zv);
    tg_tensor *a = op2("softmax_cross_entropy_index", z1, input(1, 2, (double[]){2, 0}));
    tg_tensor *b = tg_softmax_cross_entropy(tp, z2, input(3, 2, (double[]){0, 1, 0, 0, 1, 0}));
    cr_assert(a && b, "%s", tg_errmsg(ctx));
    /* log(1 + e^-1 + e^-2) + log 3 */
    EXPECT_NEAR(tg_item(a), 0.40760596444438013 + log(3.0), "loss");
    EXPECT_NEAR(tg_item(a), tg_item(b), "index and one-hot");
    cr_assert_eq(tg_backward(tp, tg_add(tp, a, b)), TG_OK, "%s", tg_errmsg(ctx));
    for (int k = 0; k < 6; k++) EXPECT_NEAR(tg_grad(z1)[k], tg_grad(z2)[k], "dz[%d]", k);
    EXPECT_NEAR(tg_grad(z1)[4], 0.665240955774822 - 1, "dz of the target class");
}

/* ---- fusion around the new ops ------------------------------------------------- */
/* A layer-normalised LSTM cell in the two styles of Ba et al. (2016): f
 * normalises its two products apart (a sum of terms under a sigmoid), u
 * normalises the whole sum, h normalises the cell; and a where and a div,
 * across which nothing fuses. */
static const char *ln_model =
    "name: ln\n"
    "dims: {input: 2, hidden: 4, output: 2}\n"
    "params:\n"
    "  Wx: [hidden, input]\n"
    "  Wh: [hidden, hidden]\n"
    "  gx: {shape: [hidden], init: ones}\n"
    "  bx: [hidden]\n"
    "  gh: {shape: [hidden], init: ones}\n"
    "  bh: [hidden]\n"
    "  b: [hidden]\n"
    "  gc: {shape: [hidden], init: ones}\n"
    "  bc: [hidden]\n"
    "  V: [output, hidden]\n"
    "  d: [output]\n"
    "inputs: {x: [input]}\n"
    "targets: {y: [output]}\n"
    "state: {h: [hidden], c: [hidden]}\n"
    "step:\n"
    "  - f = sigmoid(layer_norm(Wx @ x, gx, bx, 0.001) + layer_norm(Wh @ h, gh, bh, 0.001) + b)\n"
    "  - u = sigmoid(layer_norm(Wx @ x + Wh @ h + b, gx, bx, 0.001))\n"
    "  - c = f * c + u * tanh(div(Wh @ h, softplus(b) + Wh @ c))\n"
    "  - h = u * tanh(layer_norm(c, gc, bc, 0.001))\n"
    "  - o = V @ h + d\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

static tg_tensor *unroll_ln(tg_tape *tape, const tg_model *m, tg_params *ps, tg_dataset *d, int each_op)
{
    const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_unroll u = {.params = ps, .batch = tg_dataset_batch(d, 0), .steps = tg_dataset_steps(d, 0),
                   .inputs = in, .targets = tg, .each_op = each_op};
    cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
    return u.loss;
}

/* The fused and the each-op tapes of a model give the same loss and
 * gradients; the fused one records want (label:op of step 1). */
static void fusion_agrees(const char *text, const char *want)
{
    tg_model *m = tg_model_parse(ctx, "ln.yaml", text, strlen(text), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 3), TG_OK, "%s", tg_errmsg(ctx));
    tg_dataset *d = tg_dataset_random(ctx, m, 6, 3, 4);
    cr_assert(d, "%s", tg_errmsg(ctx));
    size_t np = tg_params_total(ps);
    tg_real *g = calloc(2 * np, sizeof *g);
    cr_assert(g);
    double loss[2];
    int len[2];
    char ops[1024] = "";
    for (int each_op = 0; each_op < 2; each_op++) {
        tg_tape_reset(tp);
        tg_params_zero_grad(ps);
        tg_tensor *l = unroll_ln(tp, m, ps, d, each_op);
        cr_assert_eq(tg_backward(tp, l), TG_OK, "%s", tg_errmsg(ctx));
        loss[each_op] = tg_item(l);
        len[each_op] = tg_tape_length(tp);
        memcpy(g + (size_t)each_op * np, tg_params_grads(ps), np * sizeof *g);
        for (int i = 0; !each_op && i < tg_tape_length(tp); i++) {
            tg_tensor *t = tg_tape_at(tp, i);
            int step;
            const char *label = tg_tensor_label(t, &step);
            if (step != 1 || !t->op) continue;
            snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s:%s ", label, tg_tensor_op(t));
        }
    }
    cr_expect_str_eq(ops, want);
    cr_expect_lt(len[0], len[1], "fused %d entries, each op %d", len[0], len[1]);
    EXPECT_NEAR(loss[0], loss[1], "fused and each-op losses");
#ifdef TG_REAL_DOUBLE
    const double gtol = 1e-12;
#else
    const double gtol = 1e-5;
#endif
    for (size_t k = 0; k < np; k++)
        cr_expect(fabs(g[k] - g[np + k]) <= gtol * fmax(1, fabs(g[np + k])), "gradient %zu: fused %.9g, each op %.9g",
                  k, (double)g[k], (double)g[np + k]);
    free(g);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
}

Test(ops_new, fusion_around_layer_norm)
{
    fusion_agrees(ln_model, "f:matmul f:layer_norm f:matmul f:layer_norm f:affine "
                            "u:layer_norm_act "
                            "c:mul c:matmul c:softplus c:affine c:div c:tanh c:mul c:add "
                            "h:layer_norm_act h:mul o:affine loss:squared_error ");
}

/* s reads h(t-1) and h is assigned before the layer_norm of s.  A state
 * has two slots since reverse states came (the value from the neighbouring
 * step, read before its equation, and the new one), so W @ h still reads
 * h(t-1) when the sum moves into z's layer_norm_act: the fused and
 * each-op tapes must agree in values and gradients all the same. */
static const char *ln_reassigned_model =
    "name: ln_reassigned\n"
    "dims: {n: 3}\n"
    "params: {W: [n, n], U: [n, 2], b: [n], g: {shape: [n], init: ones}, c: [n], R: [1, n]}\n"
    "inputs: {x: [2]}\n"
    "targets: {y: [1]}\n"
    "state: {h: [n]}\n"
    "step:\n"
    "  - s = W @ h + b\n"
    "  - h = tanh(U @ x + b)\n"
    "  - z = sigmoid(layer_norm(s, g, c, 0.01)) * h\n"
    "  - o = R @ z\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

Test(ops_new, fusion_never_moves_a_sum_past_an_assignment_into_layer_norm)
{
    /* h's U @ x + b reads no state: its step reads it from the stack of all
     * steps (models/hoist.c) */
    fusion_agrees(ln_reassigned_model, "h:affine_block z:layer_norm_act z:mul o:matmul loss:squared_error ");
}
