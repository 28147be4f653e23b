/* test_ops.c — the built-in ops: a gradient check of every op driven by the
 * test spec in its table entry, forward values against numbers worked out by
 * hand, gradient accumulation on fan-out, and the shape errors. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include "tg_internal.h"
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#ifdef TG_REAL_DOUBLE
#define VAL_TOL 1e-12 /* relative error allowed in forward values */
#define SPEC_TOL_DIV 1e6 /* a spec's usual 1e-3 is 1e-9 in double */
#else
#define VAL_TOL 2e-6
#define SPEC_TOL_DIV 1
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

/* Criterion ignores how a worker exits and what .fini asserts, so a leak
 * report at exit would pass unnoticed: under ASan each test checks for leaks
 * itself and crashes the test if there are any. */
static void teardown(void)
{
    tg_tape_free(tp);
    tg_ctx_free(ctx);
#ifdef __SANITIZE_ADDRESS__
    if (__lsan_do_recoverable_leak_check()) {
        fprintf(stderr, "test_ops: memory leaked (report above)\n");
        abort();
    }
#endif
}

TestSuite(ops, .init = setup, .fini = teardown);

#define EXPECT_NEAR(got, want, what, ...)                                                          \
    do {                                                                                           \
        double g_ = (double)(got), w_ = (double)(want);                                            \
        cr_expect(fabs(g_ - w_) <= VAL_TOL * fmax(1.0, fabs(w_)),                                  \
                  what ": got %.9g, want %.9g", ##__VA_ARGS__, g_, w_);                            \
    } while (0)

/* Every element of t against want[], and t's shape. */
static void expect_values(tg_tensor *t, int rows, int cols, const double *want, const char *what)
{
    cr_assert(t, "%s: NULL (%s)", what, tg_errmsg(ctx));
    cr_assert_eq(tg_rows(t), rows, "%s: rows %d, want %d", what, tg_rows(t), rows);
    cr_assert_eq(tg_cols(t), cols, "%s: cols %d, want %d", what, tg_cols(t), cols);
    for (int i = 0; i < rows * cols; i++) EXPECT_NEAR(tg_data(t)[i], want[i], "%s[%d]", what, i);
}

static tg_tensor *input(int rows, int cols, const double *v)
{
    tg_real buf[64];
    int n = rows * (cols ? cols : 1);
    cr_assert(n <= 64);
    for (int i = 0; v && i < n; i++) buf[i] = (tg_real)v[i];
    tg_tensor *t = tg_input(tp, rows, cols, v ? buf : NULL, 0);
    cr_assert(t, "tg_input: %s", tg_errmsg(ctx));
    return t;
}

/* ---- 1. the op-table gradient check ------------------------------------- */

typedef struct gc_case {
    const char *op;
    int n_in, n_attrs;
    tg_tensor *in[TG_TEST_MAX_IN];
    const double *attrs;
    int rows, cols;  /* the op's output shape */
    tg_real *weight; /* R: fixed upstream weights, so dL/dy is not all ones */
    unsigned constant;                /* the spec's: inputs recorded as data */
    tg_real *data[TG_TEST_MAX_IN];    /* their values (malloc'd) */
    int shape[TG_TEST_MAX_IN][2];
    bool training;                    /* a training tape, the generator reseeded */
} gc_case;

/* loss = sum(op(inputs) * R) */
static tg_tensor *build_case(tg_tape *tape, void *user)
{
    gc_case *c = user;
    tg_tensor *in[TG_TEST_MAX_IN];
    for (int i = 0; i < c->n_in; i++)
        in[i] = c->constant >> i & 1 ? tg_input(tape, c->shape[i][0], c->shape[i][1], c->data[i], 0)
                                     : c->in[i];
    tg_tape_set_training(tape, c->training);
    if (c->training) tg_seed(ctx, 31337); /* every evaluation draws the same dropout mask */
    tg_tensor *y = tg_apply(tape, c->op, c->n_in, in, c->n_attrs, c->attrs);
    tg_tensor *r = tg_input(tape, c->rows, c->cols, c->weight, 0);
    return tg_sum(tape, tg_mul(tape, y, r));
}

/* Uniform in [lo, hi], at least `kink` away from kink_at. */
static double draw(const tg_op_test *spec)
{
    double lo = spec->lo, hi = spec->hi;
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    for (;;) {
        double v = lo + (hi - lo) * tg_rand_uniform(ctx);
        if (!(fabs(v - spec->kink_at) < spec->kink)) return v;
    }
}

/* Sets up case ci of op d: one parameter per input in ps (or, for the
 * spec's constant inputs, data in c), filled from the spec's range and
 * prepared by its prepare hook, and c ready for build_case() with weights
 * in weight[256].  Free with free_case(). */
static void make_case(const tg_builtin_op *d, int ci, tg_params *ps, gc_case *c, tg_real *weight)
{
    const tg_op_test *spec = &d->test;
    const tg_op_test_case *tc = &spec->cases[ci];
    cr_assert(tc->n_in >= 1 && tc->n_in <= TG_TEST_MAX_IN, "%s case %d: n_in %d", d->name, ci,
              tc->n_in);
    *c = (gc_case){.op = d->name, .n_in = tc->n_in, .n_attrs = d->n_attrs, .attrs = tc->attrs,
                   .constant = spec->constant, .training = spec->training};
    int shapes[TG_TEST_MAX_IN][2];
    for (int i = 0; i < tc->n_in; i++) {
        shapes[i][0] = c->shape[i][0] = tc->shape[i][0];
        shapes[i][1] = c->shape[i][1] = tc->shape[i][1];
        if (c->constant >> i & 1) {
            c->data[i] = malloc((size_t)tc->shape[i][0] * (size_t)tc->shape[i][1] * sizeof(tg_real));
            cr_assert(c->data[i]);
            continue;
        }
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        c->in[i] = tg_params_add(ps, name, tc->shape[i][0], tc->shape[i][1]);
        cr_assert(c->in[i], "%s case %d: %s", d->name, ci, tg_errmsg(ctx));
    }
    /* values only after every add: adding may move the buffers */
    tg_real *v[TG_TEST_MAX_IN];
    for (int i = 0; i < tc->n_in; i++) v[i] = c->constant >> i & 1 ? c->data[i] : tg_data(c->in[i]);
    for (int tries = 0;; tries++) {
        cr_assert(tries < 100000, "%s case %d: prepare refused 100000 draws", d->name, ci);
        for (int i = 0; i < tc->n_in; i++)
            for (int k = 0; k < shapes[i][0] * shapes[i][1]; k++) v[i][k] = (tg_real)draw(spec);
        if (!spec->prepare || spec->prepare(tc->n_in, v, (const int (*)[2])shapes, tc->attrs) == 0)
            break;
    }
    int out[2];
    cr_assert_eq(tg_op_shape(ctx, d->name, tc->n_in, (const int (*)[2])shapes, d->n_attrs,
                             tc->attrs, out),
                 TG_OK, "%s case %d: %s", d->name, ci, tg_errmsg(ctx));
    c->rows = out[0];
    c->cols = out[1];
    size_t n_out = (size_t)out[0] * (size_t)out[1];
    cr_assert(n_out <= 256, "%s case %d: output too big for the test", d->name, ci);
    for (size_t k = 0; k < n_out; k++) weight[k] = (tg_real)(2 * tg_rand_uniform(ctx) - 1);
    c->weight = weight;
}

static void free_case(gc_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* Checks one case of one op; returns 0 when it passes. */
static int check_case(const tg_builtin_op *d, int ci)
{
    const tg_op_test *spec = &d->test;
    tg_params *ps = tg_params_new(ctx);
    cr_assert(ps);
    gc_case c;
    tg_real weight[256];
    make_case(d, ci, ps, &c, weight);

    int failed = 0;
    if (d->differentiable) {
        cr_expect(spec->tol > 0, "%s: its test spec sets no tol", d->name);
        tg_gradcheck_opts opts = {.tol = spec->tol / SPEC_TOL_DIV};
        tg_gradcheck_result r = {.worst_param = -1};
        tg_status st = tg_gradcheck(tp, ps, build_case, &c, &opts, &r);
        if (getenv("TG_GRADCHECK_REPORT"))
            fprintf(stderr, "%-22s case %d: worst %.3e (tol %.1e)\n", d->name, ci, r.max_err,
                    opts.tol);
        if (st != TG_OK) {
            failed = 1;
            cr_expect_fail("%s case %d: worst scaled error %.3e at input %d element %zu "
                           "(tol %.1e): %s",
                           d->name, ci, r.max_err, r.worst_param, r.worst_index, opts.tol,
                           tg_errmsg(ctx));
        }
    } else {
        /* the output is a constant as far as gradients go */
        tg_params_zero_grad(ps);
        tg_tape_reset(tp);
        tg_tensor *loss = build_case(tp, &c);
        cr_assert(loss, "%s case %d: %s", d->name, ci, tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tp, loss), TG_OK, "%s: %s", d->name, tg_errmsg(ctx));
        for (size_t k = 0; k < tg_params_total(ps); k++) {
            if (tg_params_grads(ps)[k] != 0) {
                failed = 1;
                cr_expect_fail("%s case %d: gradient %g at %zu, want 0", d->name, ci,
                               (double)tg_params_grads(ps)[k], k);
                break;
            }
        }
    }
    free_case(&c);
    tg_params_free(ps);
    tg_tape_set_training(tp, 0);
    return failed;
}

Test(ops, gradcheck_every_builtin)
{
    tg_seed(ctx, 20240611);
    cr_assert_eq(tg_op_count(ctx) >= TG_OP_BUILTIN_COUNT, 1);
    int failures = 0;
    for (int i = 0; i < TG_OP_BUILTIN_COUNT; i++) {
        const tg_builtin_op *d = tg_builtin_at(i);
        cr_assert(d);
        cr_expect_str_eq(tg_op_name(ctx, i), d->name, "table order differs from ops.def");
        if (d->test.n_cases < 1 || d->test.n_cases > TG_TEST_MAX_CASES) {
            cr_expect_fail("%s: its test spec has %d cases", d->name, d->test.n_cases);
            failures++;
            continue;
        }
        for (int ci = 0; ci < d->test.n_cases; ci++) failures += check_case(d, ci);
    }
    cr_expect_eq(failures, 0, "%d op cases failed", failures);
}

/* Backward must add into an input's gradient, never overwrite it: with the
 * parameters' gradients starting at g0, one sweep must leave g0 + g.  (A
 * gradient check alone cannot see this: it starts from zero.) */
Test(ops, every_builtin_accumulates)
{
    tg_seed(ctx, 77);
    for (int i = 0; i < TG_OP_BUILTIN_COUNT; i++) {
        const tg_builtin_op *d = tg_builtin_at(i);
        for (int ci = 0; d->differentiable && ci < d->test.n_cases; ci++) {
            tg_params *ps = tg_params_new(ctx);
            gc_case c;
            tg_real weight[256], g[256], g0[256];
            make_case(d, ci, ps, &c, weight);
            size_t n = tg_params_total(ps);
            cr_assert(n <= 256);
            tg_tape_reset(tp);
            tg_tensor *loss = build_case(tp, &c);
            cr_assert(loss, "%s: %s", d->name, tg_errmsg(ctx));
            tg_params_zero_grad(ps);
            cr_assert_eq(tg_backward(tp, loss), TG_OK, "%s: %s", d->name, tg_errmsg(ctx));
            memcpy(g, tg_params_grads(ps), n * sizeof *g);
            for (size_t k = 0; k < n; k++) g0[k] = (tg_real)(tg_rand_uniform(ctx) + 1);
            memcpy(tg_params_grads(ps), g0, n * sizeof *g0);
            cr_assert_eq(tg_backward(tp, loss), TG_OK, "%s: %s", d->name, tg_errmsg(ctx));
            for (size_t k = 0; k < n; k++) {
                double got = tg_params_grads(ps)[k], want = (double)g0[k] + (double)g[k];
                if (fabs(got - want) > 1e-5 * fmax(1.0, fabs(want))) {
                    cr_expect_fail("%s case %d: gradient %zu is %g after a sweep from %g, "
                                   "want %g: backward overwrote instead of adding",
                                   d->name, ci, k, got, (double)g0[k], want);
                    break;
                }
            }
            free_case(&c);
            tg_params_free(ps);
        }
    }
    tg_tape_set_training(tp, 0);
}

/* ---- 2. forward values -------------------------------------------------- */

Test(ops, matmul_values)
{
    tg_tensor *a = input(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = input(3, 2, (double[]){7, 8, 9, 10, 11, 12});
    expect_values(tg_matmul(tp, a, b), 2, 2, (double[]){58, 64, 139, 154}, "a @ b");
    /* a column vector [3] = 3 x 1 on the right */
    tg_tensor *v = input(3, 0, (double[]){1, 0, -1});
    expect_values(tg_matmul(tp, a, v), 2, 1, (double[]){-2, -2}, "a @ v");
    expect_values(tg_matmul(tp, v, tg_transpose(tp, v)), 3, 3,
                  (double[]){1, 0, -1, 0, 0, 0, -1, 0, 1}, "outer product");
}

Test(ops, arith_values_and_broadcast)
{
    tg_tensor *x = input(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *y = input(2, 3, (double[]){6, 5, 4, 3, 2, 1});
    tg_tensor *bias = input(2, 0, (double[]){10, 20}); /* [2]: spreads over columns */
    tg_tensor *row = input(1, 3, (double[]){1, 0, -1});
    tg_tensor *col = input(2, 1, (double[]){2, 3});
    tg_tensor *one = input(1, 1, (double[]){0.5});
    expect_values(tg_add(tp, x, y), 2, 3, (double[]){7, 7, 7, 7, 7, 7}, "x + y");
    expect_values(tg_sub(tp, x, y), 2, 3, (double[]){-5, -3, -1, 1, 3, 5}, "x - y");
    expect_values(tg_mul(tp, x, y), 2, 3, (double[]){6, 10, 12, 12, 10, 6}, "x * y");
    tg_tensor *xb = tg_add(tp, x, bias);
    expect_values(xb, 2, 3, (double[]){11, 12, 13, 24, 25, 26}, "x + bias");
    cr_expect_eq(tg_ndim(xb), 2);
    expect_values(tg_add(tp, bias, x), 2, 3, (double[]){11, 12, 13, 24, 25, 26}, "bias + x");
    expect_values(tg_sub(tp, bias, x), 2, 3, (double[]){9, 8, 7, 16, 15, 14}, "bias - x");
    expect_values(tg_sub(tp, x, row), 2, 3, (double[]){0, 2, 4, 3, 5, 7}, "x - row");
    expect_values(tg_mul(tp, row, x), 2, 3, (double[]){1, 0, -3, 4, 0, -6}, "row * x");
    expect_values(tg_mul(tp, col, row), 2, 3, (double[]){2, 0, -2, 3, 0, -3}, "col * row");
    expect_values(tg_sub(tp, row, col), 2, 3, (double[]){-1, -2, -3, -2, -3, -4}, "row - col");
    expect_values(tg_mul(tp, x, one), 2, 3, (double[]){0.5, 1, 1.5, 2, 2.5, 3}, "x * scalar");
    tg_tensor *bb = tg_add(tp, bias, bias);
    expect_values(bb, 2, 1, (double[]){20, 40}, "bias + bias");
    cr_expect_eq(tg_ndim(bb), 1, "[2] + [2] stays 1-D");
}

Test(ops, scale_and_unary_values)
{
    tg_tensor *x = input(1, 4, (double[]){-2, 0, 1, 3});
    expect_values(tg_scale(tp, x, 2, 1), 1, 4, (double[]){-3, 1, 3, 7}, "2x + 1");
    expect_values(tg_scale(tp, x, -1, 0), 1, 4, (double[]){2, 0, -1, -3}, "-x");
    expect_values(tg_tanh(tp, x), 1, 4,
                  (double[]){-0.9640275800758169, 0, 0.7615941559557649, 0.9950547536867305},
                  "tanh");
    expect_values(tg_relu(tp, x), 1, 4, (double[]){0, 0, 1, 3}, "relu");
    expect_values(tg_exp(tp, x), 1, 4,
                  (double[]){0.1353352832366127, 1, 2.718281828459045, 20.085536923187668}, "exp");
    tg_tensor *p = input(1, 3, (double[]){1, 2.718281828459045, 0.5});
    expect_values(tg_log(tp, p), 1, 3, (double[]){0, 1, -0.6931471805599453}, "log");
    /* no silent clamp: log 0 = -inf and log -1 = NaN, for anomaly detection */
    tg_tensor *bad = tg_log(tp, input(1, 2, (double[]){0, -1}));
    cr_assert(bad);
    cr_expect(isinf(tg_data(bad)[0]) && tg_data(bad)[0] < 0, "log 0 = %g", tg_data(bad)[0]);
    cr_expect(isnan(tg_data(bad)[1]), "log -1 = %g", tg_data(bad)[1]);
    /* and relu passes a NaN on rather than turning it into 0 */
    tg_tensor *nan_in = input(1, 1, (double[]){NAN});
    cr_expect(isnan(tg_data(tg_relu(tp, nan_in))[0]), "relu(NaN) hides the NaN");
}

Test(ops, sigmoid_is_stable)
{
    tg_tensor *x = input(1, 5, (double[]){0, 2, -2, 100, -100});
    expect_values(tg_sigmoid(tp, x), 1, 5,
                  (double[]){0.5, 0.8807970779778823, 0.11920292202211755, 1, 0}, "sigmoid");
    tg_tensor *s = tg_sigmoid(tp, input(1, 4, (double[]){-1000, 1000, -90, 90}));
    cr_assert(s);
    for (int i = 0; i < 4; i++)
        cr_expect(isfinite(tg_data(s)[i]) && tg_data(s)[i] >= 0 && tg_data(s)[i] <= 1,
                  "sigmoid[%d] = %g", i, tg_data(s)[i]);
    cr_expect(tg_data(s)[2] > 0, "sigmoid(-90) underflows only as far as the type must");
}

Test(ops, reduce_values)
{
    tg_tensor *x = input(2, 2, (double[]){1, 2, 3, 4});
    expect_values(tg_sum(tp, x), 1, 1, (double[]){10}, "sum");
    expect_values(tg_mean(tp, x), 1, 1, (double[]){2.5}, "mean");
    cr_expect_eq(tg_item(tg_mean(tp, x)), 2.5);
}

Test(ops, loss_values)
{
    tg_tensor *o = input(2, 2, (double[]){1, 2, 3, 4});
    tg_tensor *y = input(2, 2, (double[]){2, 4, 3, 3});
    expect_values(tg_squared_error(tp, o, y), 1, 1, (double[]){1 + 4 + 0 + 1}, "squared_error");

    /* -log softmax([1, 2, 3])_3 = log(1 + e^-1 + e^-2) */
    const double want = 0.40760596444438013;
    tg_tensor *t3 = input(3, 0, (double[]){0, 0, 1});
    expect_values(tg_softmax_cross_entropy(tp, input(3, 0, (double[]){1, 2, 3}), t3), 1, 1,
                  (double[]){want}, "cross-entropy");
    /* the same shifted by 1000: e^1000 would overflow without the column max */
    tg_tensor *ce = tg_softmax_cross_entropy(tp, input(3, 0, (double[]){1001, 1002, 1003}), t3);
    cr_assert(ce);
    cr_expect(isfinite(tg_item(ce)));
    cr_expect(fabs(tg_item(ce) - want) < 1e-4, "large logits: got %.9g", tg_item(ce));
    /* a batch of two columns: the second is uniform over 3 classes, target class 0 */
    tg_tensor *z = input(3, 2, (double[]){1000, -1000, 1001, -1000, 1002, -1000});
    tg_tensor *t = input(3, 2, (double[]){0, 1, 0, 0, 1, 0});
    ce = tg_softmax_cross_entropy(tp, z, t);
    cr_assert(ce);
    cr_expect(fabs(tg_item(ce) - (want + log(3.0))) < 1e-4, "batch: got %.9g", tg_item(ce));
    /* a very wrong confident prediction costs the logit gap, not inf */
    ce = tg_softmax_cross_entropy(tp, input(2, 0, (double[]){1000, -1000}),
                                  input(2, 0, (double[]){0, 1}));
    cr_assert(ce);
    EXPECT_NEAR(tg_item(ce), 2000, "confidently wrong");
}

Test(ops, softmax_cross_entropy_gradient)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *z = tg_params_add(ps, "z", 3, 2);
    cr_assert(z);
    const double zv[6] = {1001, 5, 1002, 5, 1003, 5};
    for (int i = 0; i < 6; i++) tg_data(z)[i] = (tg_real)zv[i];
    tg_tensor *t = input(3, 2, (double[]){0, 1, 0, 0, 1, 0});
    tg_tensor *loss = tg_softmax_cross_entropy(tp, z, t);
    cr_assert(loss);
    cr_assert_eq(tg_backward(tp, loss), TG_OK, "%s", tg_errmsg(ctx));
    /* one-hot targets: dz = softmax(z) - y */
    const double p[3] = {0.09003057317038048, 0.2447284710547977, 0.665240955774822};
    for (int i = 0; i < 3; i++) {
        EXPECT_NEAR(tg_grad(z)[i * 2], p[i] - (i == 2), "dz[%d][0]", i);
        EXPECT_NEAR(tg_grad(z)[i * 2 + 1], 1.0 / 3 - (i == 0), "dz[%d][1]", i);
    }
    tg_params_free(ps);
}

Test(ops, shape_op_values)
{
    tg_tensor *a = input(1, 2, (double[]){1, 2});
    tg_tensor *b = input(2, 2, (double[]){3, 4, 5, 6});
    tg_tensor *c = input(1, 2, (double[]){7, 8});
    tg_tensor *parts[3] = {a, b, c};
    expect_values(tg_concat(tp, 3, parts), 4, 2, (double[]){1, 2, 3, 4, 5, 6, 7, 8}, "concat 3");
    expect_values(tg_concat(tp, 1, parts), 1, 2, (double[]){1, 2}, "concat 1");
    tg_tensor *u = input(2, 0, (double[]){1, 2}), *v = input(1, 0, (double[]){3});
    tg_tensor *uv = tg_concat(tp, 2, (tg_tensor *[]){u, v});
    expect_values(uv, 3, 1, (double[]){1, 2, 3}, "concat of vectors");
    cr_expect_eq(tg_ndim(uv), 1);

    tg_tensor *x = input(4, 2, (double[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_values(tg_slice(tp, x, 1, 2), 2, 2, (double[]){2, 3, 4, 5}, "slice 1..3");
    expect_values(tg_slice(tp, x, 3, 1), 1, 2, (double[]){6, 7}, "slice last");
    expect_values(tg_slice(tp, x, 0, 4), 4, 2, (double[]){0, 1, 2, 3, 4, 5, 6, 7}, "slice all");

    tg_tensor *m = input(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    expect_values(tg_transpose(tp, m), 3, 2, (double[]){1, 4, 2, 5, 3, 6}, "transpose");
    expect_values(tg_transpose(tp, tg_transpose(tp, m)), 2, 3, (double[]){1, 2, 3, 4, 5, 6},
                  "transpose twice");
    expect_values(tg_stop_gradient(tp, m), 2, 3, (double[]){1, 2, 3, 4, 5, 6}, "stop_gradient");
}

Test(ops, apply_with_attrs)
{
    tg_tensor *x = input(3, 1, (double[]){1, 2, 3});
    expect_values(tg_apply(tp, "scale", 1, &x, 2, (double[]){-1, 4}), 3, 1, (double[]){3, 2, 1},
                  "apply scale");
    expect_values(tg_apply(tp, "slice", 1, &x, 2, (double[]){1, 2}), 2, 1, (double[]){2, 3},
                  "apply slice");
}

/* ---- 3. gradients: fan-out accumulates, broadcasting sums back ---------- */

Test(ops, fan_out_accumulates)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *x = tg_params_add(ps, "x", 2, 2);
    cr_assert(x);
    const double xv[4] = {1, 2, 3, -1};
    for (int i = 0; i < 4; i++) tg_data(x)[i] = (tg_real)xv[i];
    /* d/dx sum(x*x + x) = 2x + 1 */
    tg_tensor *loss = tg_sum(tp, tg_add(tp, tg_mul(tp, x, x), x));
    cr_assert(loss);
    cr_assert_eq(tg_backward(tp, loss), TG_OK, "%s", tg_errmsg(ctx));
    for (int i = 0; i < 4; i++) EXPECT_NEAR(tg_grad(x)[i], 2 * xv[i] + 1, "dx[%d]", i);

    /* a second sweep adds to the parameter's gradient again */
    cr_assert_eq(tg_backward(tp, loss), TG_OK);
    for (int i = 0; i < 4; i++) EXPECT_NEAR(tg_grad(x)[i], 2 * (2 * xv[i] + 1), "dx[%d] x2", i);

    /* x - x and x @ x (both inputs one tensor) */
    tg_params_zero_grad(ps);
    tg_tape_reset(tp);
    loss = tg_add(tp, tg_sum(tp, tg_sub(tp, x, x)), tg_sum(tp, tg_matmul(tp, x, x)));
    cr_assert(loss);
    cr_assert_eq(tg_backward(tp, loss), TG_OK);
    /* d/dX sum(X X) = 1 X^T + X^T 1: element (i,j) = sum_k x[j][k] + sum_k x[k][i] */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            double want = xv[j * 2] + xv[j * 2 + 1] + xv[i] + xv[2 + i];
            EXPECT_NEAR(tg_grad(x)[i * 2 + j], want, "d sum(x @ x)[%d][%d]", i, j);
        }
    tg_params_free(ps);
}

Test(ops, weight_shared_over_steps)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *W = tg_params_add(ps, "W", 2, 3);
    tg_tensor *b = tg_params_add(ps, "b", 2, 0);
    cr_assert(W && b);
    for (int i = 0; i < 6; i++) tg_data(W)[i] = (tg_real)(0.1 * i);
    const double x1[3] = {1, 2, 3}, x2[3] = {-1, 0, 4};
    /* sum over steps of sum(W x_t + b): dW[i][j] = sum_t x_t[j], db[i] = T */
    tg_tensor *loss = NULL;
    for (int t = 0; t < 2; t++) {
        tg_tensor *x = input(3, 0, t ? x2 : x1);
        tg_tensor *s = tg_sum(tp, tg_add(tp, tg_matmul(tp, W, x), b));
        loss = loss ? tg_add(tp, loss, s) : s;
    }
    cr_assert(loss, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tp, loss), TG_OK);
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 3; j++) EXPECT_NEAR(tg_grad(W)[i * 3 + j], x1[j] + x2[j], "dW");
        EXPECT_NEAR(tg_grad(b)[i], 2, "db[%d]", i);
    }
    tg_params_free(ps);
}

Test(ops, broadcast_gradient_sums_over_batch)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *b = tg_params_add(ps, "b", 2, 0);
    tg_tensor *r = tg_params_add(ps, "r", 1, 3);
    cr_assert(b && r);
    tg_data(b)[0] = 1, tg_data(b)[1] = -2;
    for (int j = 0; j < 3; j++) tg_data(r)[j] = (tg_real)(j + 1);
    tg_tensor *x = input(2, 3, (double[]){1, 2, 3, 4, 5, 6});
    /* L = sum((x + b) * r): db[i] = sum_j r_j = 6, dr[j] = sum_i (x_ij + b_i) */
    tg_tensor *loss = tg_sum(tp, tg_mul(tp, tg_add(tp, x, b), r));
    cr_assert(loss);
    cr_assert_eq(tg_backward(tp, loss), TG_OK);
    EXPECT_NEAR(tg_grad(b)[0], 6, "db[0]");
    EXPECT_NEAR(tg_grad(b)[1], 6, "db[1]");
    const double dr[3] = {1 + 4 + 1 - 2, 2 + 5 + 1 - 2, 3 + 6 + 1 - 2};
    for (int j = 0; j < 3; j++) EXPECT_NEAR(tg_grad(r)[j], dr[j], "dr[%d]", j);
    cr_expect_null(tg_grad(x), "an input without requires_grad gets no gradient");
    tg_params_free(ps);
}

Test(ops, stop_gradient_cuts_the_path)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *x = tg_params_add(ps, "x", 3, 0);
    cr_assert(x);
    for (int i = 0; i < 3; i++) tg_data(x)[i] = (tg_real)(i + 1);
    /* L = sum(x * stop(x)): dx = stop(x) = x, not 2x */
    tg_tensor *loss = tg_sum(tp, tg_mul(tp, x, tg_stop_gradient(tp, x)));
    cr_assert(loss);
    cr_assert_eq(tg_backward(tp, loss), TG_OK);
    for (int i = 0; i < 3; i++) EXPECT_NEAR(tg_grad(x)[i], i + 1, "dx[%d]", i);
    tg_params_free(ps);
}

/* ---- 4. shape errors and chained failure ------------------------------- */

/* r is NULL, the status is `st`, and the message contains each of the words. */
static void expect_error(tg_tensor *r, tg_status st, const char *what, const char *const *words)
{
    cr_expect_null(r, "%s: should fail", what);
    cr_expect_eq(tg_status_last(ctx), st, "%s: status %s, want %s", what,
                 tg_status_name(tg_status_last(ctx)), tg_status_name(st));
    for (; *words; words++)
        cr_expect(strstr(tg_errmsg(ctx), *words), "%s: message '%s' lacks '%s'", what,
                  tg_errmsg(ctx), *words);
    tg_clear_error(ctx);
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(ops, shape_errors)
{
    tg_tensor *a23 = input(2, 3, NULL), *a41 = input(4, 1, NULL), *a34 = input(3, 4, NULL);
    tg_tensor *a24 = input(2, 4, NULL), *a52 = input(5, 2, NULL), *a32 = input(3, 2, NULL);
    tg_tensor *a31 = input(3, 1, NULL);
    expect_error(tg_matmul(tp, a23, a41), TG_ERR_SHAPE, "matmul",
                 WORDS("matmul", "[2, 3]", "[4, 1]"));
    expect_error(tg_add(tp, a34, a24), TG_ERR_SHAPE, "add", WORDS("add", "[3, 4]", "[2, 4]"));
    expect_error(tg_sub(tp, a23, a31), TG_ERR_SHAPE, "sub", WORDS("sub", "[2, 3]", "[3, 1]"));
    expect_error(tg_mul(tp, a24, a41), TG_ERR_SHAPE, "mul", WORDS("mul", "[2, 4]", "[4, 1]"));
    expect_error(tg_concat(tp, 2, (tg_tensor *[]){a23, a24}), TG_ERR_SHAPE, "concat",
                 WORDS("concat", "[2, 3]", "[2, 4]"));
    expect_error(tg_concat(tp, 3, (tg_tensor *[]){a52, a32, a23}), TG_ERR_SHAPE, "concat 3",
                 WORDS("concat", "[5, 2]", "[2, 3]"));
    expect_error(tg_slice(tp, a52, 3, 4), TG_ERR_SHAPE, "slice past the end",
                 WORDS("slice", "[3, 7)", "[5, 2]"));
    expect_error(tg_slice(tp, a52, -1, 2), TG_ERR_SHAPE, "slice before 0", WORDS("slice", "[5, 2]"));
    expect_error(tg_slice(tp, a52, 1, 0), TG_ERR_SHAPE, "empty slice", WORDS("slice"));
    expect_error(tg_apply(tp, "slice", 1, &a52, 2, (double[]){0.5, 1}), TG_ERR_SHAPE,
                 "fractional slice", WORDS("slice"));
    expect_error(tg_apply(tp, "slice", 1, &a52, 2, (double[]){1e300, 1}), TG_ERR_SHAPE,
                 "huge slice", WORDS("slice"));
    expect_error(tg_scale(tp, a52, NAN, 0), TG_ERR_SHAPE, "scale by NaN", WORDS("scale"));
    expect_error(tg_squared_error(tp, a32, a31), TG_ERR_SHAPE, "squared_error",
                 WORDS("squared_error", "[3, 2]", "[3, 1]"));
    expect_error(tg_softmax_cross_entropy(tp, a34, a24), TG_ERR_SHAPE, "softmax_cross_entropy",
                 WORDS("softmax_cross_entropy", "[3, 4]", "[2, 4]"));
    /* arity is checked by the core before the shape rule; it calls it a bad
     * argument (TG_ERR_ARG), not a shape mismatch */
    expect_error(tg_apply(tp, "add", 1, &a34, 0, NULL), TG_ERR_ARG, "add of one",
                 WORDS("add", "2", "1"));
    expect_error(tg_apply(tp, "tanh", 2, (tg_tensor *[]){a34, a34}, 0, NULL), TG_ERR_ARG,
                 "tanh of two", WORDS("tanh"));
    expect_error(tg_apply(tp, "concat", 0, NULL, 0, NULL), TG_ERR_ARG, "concat of none",
                 WORDS("concat"));
    expect_error(tg_apply(tp, "no_such_op", 1, &a34, 0, NULL), TG_ERR_NOTFOUND, "unknown op",
                 WORDS("no_such_op"));
    /* nothing was recorded by any failed call */
    cr_expect_eq(tg_tape_length(tp), 7);
}

Test(ops, null_inputs_chain)
{
    tg_tensor *a = input(2, 3, NULL), *b = input(4, 1, NULL);
    tg_tensor *bad = tg_matmul(tp, a, b);
    cr_assert_null(bad);
    char first[TG_ERRMSG_LEN];
    snprintf(first, sizeof first, "%s", tg_errmsg(ctx));
    int len = tg_tape_length(tp);
    /* every op handed the failure returns NULL and keeps the first message */
    tg_tensor *r = tg_tanh(tp, tg_add(tp, a, tg_mul(tp, bad, a)));
    r = tg_sum(tp, tg_squared_error(tp, r, a));
    r = tg_concat(tp, 2, (tg_tensor *[]){a, r});
    r = tg_slice(tp, tg_transpose(tp, tg_scale(tp, r, 2, 0)), 0, 1);
    r = tg_softmax_cross_entropy(tp, tg_stop_gradient(tp, r), a);
    cr_expect_null(r);
    cr_expect_eq(tg_status_last(ctx), TG_ERR_SHAPE);
    cr_expect_str_eq(tg_errmsg(ctx), first);
    cr_expect_eq(tg_tape_length(tp), len, "a chained failure records nothing");
    for (int i = 0; i < TG_OP_BUILTIN_COUNT; i++) {
        const tg_builtin_op *d = tg_builtin_at(i);
        tg_tensor *in[2] = {bad, bad};
        int n = d->arity < 0 ? 2 : d->arity;
        cr_expect_null(tg_apply(tp, d->name, n, in, d->n_attrs, (double[]){0, 1, 0, 0}), "%s",
                       d->name);
        cr_expect_str_eq(tg_errmsg(ctx), first, "%s replaced the first message", d->name);
    }
}

/* The shape rules are also reached through tg_op_shape() by model checkers:
 * they must answer, not crash, for any sizes and attributes. */
Test(ops, shape_rules_never_crash)
{
    const int sizes[] = {1, 2, 7, INT_MAX, 0, -1, INT_MIN};
    const double attrs[][2] = {{0, 1}, {1, 1}, {-1, 2}, {0.5, 1}, {NAN, 1}, {INFINITY, 1},
                               {1, INFINITY}, {1e300, 1e300}, {0, 0}, {2147483647.0, 1}};
    for (int i = 0; i < TG_OP_BUILTIN_COUNT; i++) {
        const tg_builtin_op *d = tg_builtin_at(i);
        for (size_t r = 0; r < sizeof sizes / sizeof *sizes; r++)
            for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++)
                for (size_t k = 0; k < sizeof attrs / sizeof *attrs; k++)
                    for (int n = 0; n <= 3; n++) {
                        int in[3][2] = {{sizes[r], sizes[c]}, {sizes[c], sizes[r]},
                                        {sizes[r], sizes[r]}};
                        double at[TG_MAX_ATTRS] = {attrs[k][0], attrs[k][1]};
                        int out[2] = {-7, -7};
                        char err[256] = "";
                        int rc = d->shape(n, (const int (*)[2])in, at, out, err, sizeof err);
                        if (rc == 0)
                            cr_expect(out[0] >= 1 && out[1] >= 1, "%s gave [%d, %d]", d->name,
                                      out[0], out[1]);
                        else
                            cr_expect(err[0], "%s failed without a message", d->name);
                    }
    }
    /* concat counts rows past INT_MAX instead of wrapping */
    int big[2][2] = {{INT_MAX, 1}, {INT_MAX, 1}}, out[2];
    char err[256] = "";
    cr_expect_eq(tg_op_concat.shape(2, (const int (*)[2])big, NULL, out, err, sizeof err), -1);
    cr_expect_neq(tg_op_shape(ctx, "matmul", 2, (const int[][2]){{2, 3}, {4, 1}}, 0, NULL, out),
                  TG_OK);
    cr_expect(strstr(tg_errmsg(ctx), "[2, 3]") && strstr(tg_errmsg(ctx), "[4, 1]"), "%s",
              tg_errmsg(ctx));
}

/* ---- 5. tanh, sigmoid and exp against double libm ---------------------------
 * In float these are the approximations of ops/unary.c, in double libm's own
 * functions; either way each value is checked against the double libm value
 * over a dense sweep: 2^21 + 1 evenly spaced values in [-LIM, LIM] and 8000
 * tiny to large magnitudes on a log scale.  Outputs below the smallest
 * normal number (subnormals) are checked to one subnormal step, outputs past
 * the largest finite one must be +inf. */
#include "ops_real.h"
#include <float.h>
#include <stdint.h>

#ifdef TG_REAL_DOUBLE
/* libm's tanh and exp: within an ulp or so */
#define TANH_TOL 1e-15
#define SIGMOID_TOL 1e-15
#define EXP_TOL 1e-15
#define TINY_NORMAL DBL_MIN
#define HUGE_FINITE DBL_MAX
#define SUB_STEP 4.9406564584124654e-324
#else
/* the worst cases over every float in range (ops/unary.c): tanh 9.9e-8,
 * sigmoid 1.78e-7, exp 8.4e-8 */
#define TANH_TOL 1.2e-7
#define SIGMOID_TOL 2e-7
#define EXP_TOL 1.2e-7
#define TINY_NORMAL FLT_MIN
#define HUGE_FINITE FLT_MAX
#define SUB_STEP 1.401298464324817e-45
#endif

typedef enum { FN_TANH, FN_SIGMOID, FN_EXP } approx_fn;
static const char *const fn_name[] = {"tanh", "sigmoid", "exp"};

static double fn_ref(approx_fn f, double x)
{
    switch (f) {
    case FN_TANH: return tanh(x);
    case FN_SIGMOID: return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
    default: return exp(x);
    }
}

static tg_tensor *fn_apply(approx_fn f, tg_tensor *x)
{
    return f == FN_TANH ? tg_tanh(tp, x) : f == FN_SIGMOID ? tg_sigmoid(tp, x) : tg_exp(tp, x);
}

/* f over n inputs through the op itself; returns the values (on the tape) */
static const tg_real *fn_run(approx_fn f, const tg_real *x, int n)
{
    tg_tensor *in = tg_input(tp, n, 1, x, 0);
    cr_assert(in, "%s", tg_errmsg(ctx));
    tg_tensor *y = fn_apply(f, in);
    cr_assert(y, "%s: %s", fn_name[f], tg_errmsg(ctx));
    return tg_data(y);
}

/* max relative error of f over the sweep; fails on any value off by more than tol */
static double sweep_error(approx_fn f, double lim, double tol)
{
    int n_lin = (1 << 21) + 1, n_log = 4000, n = n_lin + 2 * n_log;
    tg_real *x = malloc((size_t)n * sizeof *x);
    cr_assert(x);
    for (int i = 0; i < n_lin; i++) x[i] = (tg_real)(-lim + 2 * lim * i / (n_lin - 1));
    for (int i = 0; i < n_log; i++) { /* 10^-40 .. 10^2 both signs (clipped to lim) */
        double v = pow(10.0, -40 + 42.0 * i / (n_log - 1));
        x[n_lin + 2 * i] = (tg_real)fmin(v, lim);
        x[n_lin + 2 * i + 1] = (tg_real)-fmin(v, lim);
    }
    const tg_real *y = fn_run(f, x, n);
    double worst = 0, worst_x = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double ref = fn_ref(f, (double)x[i]), got = (double)y[i], err;
        if (fabs(ref) < TINY_NORMAL) err = fabs(got - ref) <= SUB_STEP ? 0 : INFINITY;
        else if (fabs(ref) > HUGE_FINITE) err = isinf(got) && got > 0 ? 0 : INFINITY;
        else err = fabs(got - ref) / fabs(ref);
        if (!(err <= tol) && bad++ < 5)
            cr_expect_fail("%s(%.9g) = %.9g, want %.9g (relative error %.3g > %.3g)", fn_name[f],
                           (double)x[i], got, ref, err, tol);
        if (err > worst) worst = err, worst_x = (double)x[i];
    }
    if (getenv("TG_APPROX_REPORT"))
        fprintf(stderr, "%s over [-%g, %g]: %d values, max relative error %.3e at %.9g\n",
                fn_name[f], lim, lim, n, worst, worst_x);
    free(x);
    return worst;
}

Test(ops, tanh_accuracy)
{
    cr_expect_eq(sweep_error(FN_TANH, 10, TANH_TOL) <= TANH_TOL, 1);
}

Test(ops, sigmoid_accuracy)
{
    /* past -87 the values are subnormal in float: checked to one subnormal step */
    cr_expect_eq(sweep_error(FN_SIGMOID, 110, SIGMOID_TOL) <= SIGMOID_TOL, 1);
}

Test(ops, exp_accuracy)
{
    cr_expect_eq(sweep_error(FN_EXP, 100, EXP_TOL) <= EXP_TOL, 1);
}

static uint64_t bits_of(tg_real v)
{
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}

Test(ops, tanh_exact_values_and_symmetry)
{
    /* 0 and -0 come back as themselves, tiny values as themselves */
    const tg_real z[6] = {0, -(tg_real)0, (tg_real)1e-30, -(tg_real)1e-30, (tg_real)1e-40,
                          (tg_real)3e-5};
    const tg_real *y = fn_run(FN_TANH, z, 6);
    cr_expect(y[0] == 0 && !signbit(y[0]), "tanh(0) = %g", (double)y[0]);
    cr_expect(y[1] == 0 && signbit(y[1]), "tanh(-0) = %g", (double)y[1]);
    for (int i = 2; i < 5; i++)
        cr_expect_eq(bits_of(y[i]), bits_of(z[i]), "tanh(%g) = %.9g, want x", (double)z[i],
                     (double)y[i]);
    EXPECT_NEAR(y[5], tanh((double)z[5]), "tanh(3e-5)");
    /* odd: tanh(-x) = -tanh(x) bit for bit, on a sweep */
    enum { N = 20001 };
    tg_real *x = malloc(2 * N * sizeof *x);
    cr_assert(x);
    for (int i = 0; i < N; i++) x[i] = (tg_real)(i * 1e-3), x[N + i] = -x[i];
    y = fn_run(FN_TANH, x, 2 * N);
    int bad = 0;
    for (int i = 0; i < N && bad < 5; i++)
        if (bits_of(y[N + i]) != bits_of(-y[i]))
        {
            bad++;
            cr_expect_fail("tanh(-%g) = %.9g but tanh(%g) = %.9g", (double)x[i],
                           (double)y[N + i], (double)x[i], (double)y[i]);
        }
    free(x);
}

Test(ops, tanh_saturates)
{
    /* tanh reaches 1 in float just past 9.01 (at 9 it rounds to 1 - 2^-24),
     * in double past 19.06 */
#ifdef TG_REAL_DOUBLE
    const double from = 19.1;
#else
    const double from = 9.1;
#endif
    enum { N = 2000 };
    tg_real x[2 * N];
    for (int i = 0; i < N; i++) x[i] = (tg_real)(from + i * 0.05), x[N + i] = -x[i];
    const tg_real *y = fn_run(FN_TANH, x, 2 * N);
    int bad = 0;
    for (int i = 0; i < 2 * N && bad < 5; i++)
        if (y[i] != (i < N ? 1 : -1))
        {
            bad++;
            cr_expect_fail("tanh(%.9g) = %.17g, want exactly %d", (double)x[i], (double)y[i],
                           i < N ? 1 : -1);
        }
    /* 9 .. 9.1 in float: within one step of 1 (9 itself rounds to 1 - 2^-24) */
    tg_real x9[3] = {9, (tg_real)9.05, -9};
    const tg_real *y9 = fn_run(FN_TANH, x9, 3);
    cr_expect(y9[0] >= 1 - 1.2e-7 && y9[0] <= 1, "tanh(9) = %.9g", (double)y9[0]);
    cr_expect(y9[1] >= 1 - 1.2e-7 && y9[1] <= 1, "tanh(9.05) = %.9g", (double)y9[1]);
    cr_expect_eq(y9[2], -y9[0]);
}

Test(ops, approximations_keep_nan_and_infinities)
{
    const tg_real in[5] = {NAN, -NAN, INFINITY, -INFINITY, (tg_real)1e30};
    const tg_real *t = fn_run(FN_TANH, in, 5);
    cr_expect(isnan(t[0]) && isnan(t[1]), "tanh(NaN) = %g, %g", (double)t[0], (double)t[1]);
    cr_expect(t[2] == 1 && t[3] == -1 && t[4] == 1, "tanh(+-inf, 1e30) = %g %g %g",
              (double)t[2], (double)t[3], (double)t[4]);
    const tg_real *s = fn_run(FN_SIGMOID, in, 5);
    cr_expect(isnan(s[0]) && isnan(s[1]), "sigmoid(NaN) = %g, %g", (double)s[0], (double)s[1]);
    cr_expect(s[2] == 1 && s[3] == 0 && s[4] == 1, "sigmoid(+-inf, 1e30) = %g %g %g",
              (double)s[2], (double)s[3], (double)s[4]);
    const tg_real *e = fn_run(FN_EXP, in, 5);
    cr_expect(isnan(e[0]) && isnan(e[1]), "exp(NaN) = %g, %g", (double)e[0], (double)e[1]);
    cr_expect(isinf(e[2]) && e[2] > 0 && e[3] == 0 && isinf(e[4]), "exp(+-inf, 1e30) = %g %g %g",
              (double)e[2], (double)e[3], (double)e[4]);
    /* exp overflows where the type does, not before */
    const tg_real edge[4] = {(tg_real)88.7, (tg_real)88.8, (tg_real)-103, (tg_real)-104};
    e = fn_run(FN_EXP, edge, 4);
    cr_expect(isfinite(e[0]) && e[0] > 3e38, "exp(88.7) = %g", (double)e[0]);
#ifndef TG_REAL_DOUBLE
    cr_expect(isinf(e[1]), "exp(88.8) = %g in float", (double)e[1]);
    cr_expect(e[2] > 0 && e[3] == 0, "exp(-103) = %g, exp(-104) = %g", (double)e[2], (double)e[3]);
#endif
    /* and a NaN in the middle of a vector-width block stays where it is */
    tg_real blk[37];
    for (int i = 0; i < 37; i++) blk[i] = (tg_real)(i - 18) / 4;
    blk[21] = NAN;
    for (int f = FN_TANH; f <= FN_EXP; f++) {
        const tg_real *y = fn_run((approx_fn)f, blk, 37);
        for (int i = 0; i < 37; i++)
            cr_expect(i == 21 ? isnan(y[i]) : isfinite(y[i]), "%s: element %d = %g", fn_name[f],
                      i, (double)y[i]);
    }
}

/* ---- 6. matmul: the direct loops and BLAS give the same products ------------ */

/* matmul's gradient check (its spec's cases plus shapes that reach every
 * loop of ops/matmul.c) with the path forced each way */
Test(ops, matmul_gradcheck_both_paths)
{
    static const int shapes[][3] = {
        /* m, k, n */
        {3, 4, 2}, {1, 5, 1}, {4, 1, 3}, {6, 3, 5},  /* the spec's */
        {7, 19, 1},  /* n = 1, k past a dot block (16) and a tail */
        {9, 6, 1},   /* n = 1, rows 4 at a time plus one */
        {1, 7, 20},  /* m = 1, n >= 16 */
        {2, 3, 17},  /* n >= 16: dot() rows in dA */
        {5, 5, 3},   /* short rows: the transposed copy in dA */
    };
    const size_t saved_mnk = ctx->matmul_small_mnk, saved_mv = ctx->matmul_mv_max;
    tg_seed(ctx, 4242);
    int failures = 0;
    for (int path = 0; path < 2; path++) {
        ctx->matmul_small_mnk = ctx->matmul_mv_max = path ? 0 : SIZE_MAX; /* 0: direct, 1: BLAS */
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            tg_builtin_op d = tg_op_matmul;
            d.test.n_cases = 1;
            d.test.cases[0] = (tg_op_test_case){
                .n_in = 2, .shape = {{shapes[s][0], shapes[s][1]}, {shapes[s][1], shapes[s][2]}}};
            if (check_case(&d, 0)) {
                failures++;
                cr_expect_fail("matmul [%d, %d] @ [%d, %d] through %s", shapes[s][0],
                               shapes[s][1], shapes[s][1], shapes[s][2], path ? "BLAS" : "the loops");
            }
        }
    }
    ctx->matmul_small_mnk = saved_mnk, ctx->matmul_mv_max = saved_mv;
    cr_expect_eq(failures, 0);
}

/* y = A B, dA = R B^T, dB = A^T R for L = sum(y * R), against a double
 * reference, with the path as set; the bound is the rigorous one for a sum
 * of len terms in any order: len u sum |terms|. */
static void matmul_against_reference(int m, int k, int n, const char *path)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *A = tg_params_add(ps, "A", m, k), *B = tg_params_add(ps, "B", k, n);
    cr_assert(A && B, "%s", tg_errmsg(ctx));
    size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
    tg_real *r = malloc(nc * sizeof *r);
    double *ref = malloc((na + nb + nc) * sizeof *ref), *bound = malloc((na + nb + nc) * sizeof *bound);
    cr_assert(r && ref && bound);
    for (size_t i = 0; i < na; i++) tg_data(A)[i] = (tg_real)(2 * tg_rand_uniform(ctx) - 1);
    for (size_t i = 0; i < nb; i++) tg_data(B)[i] = (tg_real)(2 * tg_rand_uniform(ctx) - 1);
    for (size_t i = 0; i < nc; i++) r[i] = (tg_real)(2 * tg_rand_uniform(ctx) - 1);
    const tg_real *a = tg_data(A), *b = tg_data(B);
    double *rc = ref, *rda = ref + nc, *rdb = ref + nc + na;
    double *bc = bound, *bda = bound + nc, *bdb = bound + nc + na;
#ifdef TG_REAL_DOUBLE
    const double u = DBL_EPSILON / 2;
#else
    const double u = FLT_EPSILON / 2;
#endif
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, t = 0;
            for (int p = 0; p < k; p++) s += (double)a[i * k + p] * b[p * n + j], t += fabs((double)a[i * k + p] * b[p * n + j]);
            rc[i * n + j] = s, bc[i * n + j] = (k + 1) * u * t;
        }
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) {
            double s = 0, t = 0;
            for (int j = 0; j < n; j++) s += (double)r[i * n + j] * b[p * n + j], t += fabs((double)r[i * n + j] * b[p * n + j]);
            rda[i * k + p] = s, bda[i * k + p] = (n + 1) * u * t;
        }
    for (int p = 0; p < k; p++)
        for (int j = 0; j < n; j++) {
            double s = 0, t = 0;
            for (int i = 0; i < m; i++) s += (double)a[i * k + p] * r[i * n + j], t += fabs((double)a[i * k + p] * r[i * n + j]);
            rdb[p * n + j] = s, bdb[p * n + j] = (m + 1) * u * t;
        }
    tg_tape_reset(tp);
    tg_params_zero_grad(ps);
    tg_tensor *y = tg_matmul(tp, A, B);
    tg_tensor *loss = tg_sum(tp, tg_mul(tp, y, tg_input(tp, m, n, r, 0)));
    cr_assert(loss, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tp, loss), TG_OK, "%s", tg_errmsg(ctx));
    const tg_real *got[3] = {tg_data(y), tg_grad(A), tg_grad(B)};
    const size_t len[3] = {nc, na, nb};
    const char *what[3] = {"A @ B", "dA", "dB"};
    for (int q = 0, off = 0; q < 3; off += (int)len[q], q++) {
        int bad = 0;
        for (size_t i = 0; i < len[q] && bad < 3; i++)
            if (!(fabs((double)got[q][i] - ref[off + i]) <= bound[off + i] + 1e-300))
            {
                bad++;
                cr_expect_fail("[%d, %d] @ [%d, %d] via %s: %s[%zu] = %.9g, want %.9g (bound %.2g)",
                               m, k, k, n, path, what[q], i, (double)got[q][i], ref[off + i],
                               bound[off + i]);
            }
    }
    free(r), free(ref), free(bound);
    tg_params_free(ps);
}

Test(ops, matmul_paths_agree_around_thresholds)
{
    static const int shapes[][3] = {
        /* m, k, n: at and just past each default limit, and ordinary shapes */
        {4, 4, 4}, {4, 4, 5}, {2, 8, 4}, {8, 8, 2},      /* m n k around 64 */
        {512, 512, 1}, {512, 513, 1}, {1, 1, 1},         /* n = 1 around 512^2 */
        {1, 512, 512}, {1, 513, 512}, {1, 64, 15},       /* m = 1 */
        {32, 16, 1}, {32, 32, 1}, {8, 32, 1}, {2, 2, 1}, /* the benchmark's */
        {33, 17, 3}, {16, 16, 16}, {64, 64, 32},
    };
    const size_t saved_mnk = ctx->matmul_small_mnk, saved_mv = ctx->matmul_mv_max;
    tg_seed(ctx, 99);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        matmul_against_reference(m, k, n, "the default path");
        ctx->matmul_small_mnk = ctx->matmul_mv_max = SIZE_MAX;
        matmul_against_reference(m, k, n, "the direct loops");
        ctx->matmul_small_mnk = ctx->matmul_mv_max = 0;
        matmul_against_reference(m, k, n, "BLAS");
        ctx->matmul_small_mnk = saved_mnk, ctx->matmul_mv_max = saved_mv;
    }
}
