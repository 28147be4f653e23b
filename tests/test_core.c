/* test_core.c — the tape, the reverse sweep, parameters, the gradient checker,
 * the op table's registration and every error path of the core. */
#include <criterion/criterion.h>
#include <math.h>
#include "tg_internal.h"

static tg_ctx *ctx;
static tg_tape *tape;
static tg_params *ps;

static void setup(void)
{
    ctx = tg_ctx_new(NULL);
    cr_assert_not_null(ctx);
    tape = tg_tape_new(ctx);
    ps = tg_params_new(ctx);
    cr_assert(tape && ps);
}

static void teardown(void)
{
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

TestSuite(core, .init = setup, .fini = teardown);

static tg_real tol(void) { return sizeof(tg_real) == 8 ? 1e-12 : 1e-5f; }

Test(core, backward_of_a_chain_is_the_product_of_local_derivatives)
{
    tg_tensor *x = tg_params_add(ps, "x", 1, 0);
    tg_data(x)[0] = (tg_real)0.3;
    tg_tensor *y = tg_tanh(tape, tg_scale(tape, x, 2.0, 0.5));
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, y), TG_OK, "%s", tg_errmsg(ctx));
    double t = tanh(2 * 0.3 + 0.5);
    cr_assert_float_eq(tg_item(y), t, tol());
    cr_assert_float_eq(tg_grad(x)[0], 2 * (1 - t * t), tol());
}

Test(core, a_value_used_many_times_gets_the_sum_of_all_its_uses)
{
    /* L = sum(w*x1) + sum(w*x2) + sum(w*x3): dL/dw = x1 + x2 + x3 */
    tg_tensor *w = tg_params_add(ps, "w", 3, 0);
    tg_real xs[3][3] = {{1, 2, 3}, {-1, 0.5f, 2}, {4, -2, 1}};
    tg_tensor *loss = NULL;
    for (int k = 0; k < 3; k++) {
        tg_tensor *x = tg_input(tape, 3, 0, xs[k], 0);
        tg_tensor *s = tg_sum(tape, tg_mul(tape, w, x));
        loss = loss ? tg_add(tape, loss, s) : s;
    }
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(tg_grad(w)[i], xs[0][i] + xs[1][i] + xs[2][i], tol());
}

Test(core, parameter_gradients_accumulate_until_zeroed)
{
    tg_tensor *w = tg_params_add(ps, "w", 1, 0);
    tg_data(w)[0] = 2;
    for (int rep = 1; rep <= 3; rep++) {
        tg_tape_reset(tape);
        tg_tensor *l = tg_sum(tape, tg_mul(tape, w, w));
        cr_assert_eq(tg_backward(tape, l), TG_OK);
        cr_assert_float_eq(tg_grad(w)[0], 4.0 * rep, tol());
    }
    tg_params_zero_grad(ps);
    cr_assert_eq(tg_grad(w)[0], 0);
}

Test(core, backward_twice_on_one_tape_gives_the_same_entry_gradients)
{
    tg_tensor *w = tg_params_add(ps, "w", 2, 0);
    tg_data(w)[0] = 1; tg_data(w)[1] = -1;
    tg_tensor *h = tg_tanh(tape, w);
    tg_tensor *l = tg_sum(tape, tg_mul(tape, h, h));
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    tg_real g0 = tg_grad(h)[0];
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    cr_assert_float_eq(tg_grad(h)[0], g0, tol());
    cr_assert_float_eq(tg_grad(w)[0], 2 * (1 - tanh(1.0) * tanh(1.0)) * 2 * tanh(1.0), 1e-4);
}

Test(core, inputs_can_ask_for_their_gradient_and_recorded_values_read_back)
{
    tg_real xv[2] = {0.5f, -1};
    tg_tensor *x = tg_input(tape, 2, 0, xv, 1);
    tg_tensor *nograd = tg_input(tape, 2, 0, xv, 0);
    tg_tensor *h = tg_tanh(tape, tg_add(tape, x, nograd));
    tg_tensor *l = tg_sum(tape, h);
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    cr_assert_float_eq(tg_data(h)[0], tanh(1.0), tol());
    cr_assert_float_eq(tg_grad(x)[1], 1 - tanh(-2.0) * tanh(-2.0), tol());
    cr_assert_null(tg_grad(nograd));
    cr_assert_eq(tg_tape_length(tape), 5);
    cr_assert_eq(tg_tape_at(tape, 2), h->in[0]);
    cr_assert_str_eq(tg_tensor_op(tg_tape_at(tape, 0)), "input");
}

Test(core, stop_gradient_blocks_the_sweep)
{
    tg_tensor *w = tg_params_add(ps, "w", 1, 0);
    tg_data(w)[0] = 3;
    tg_tensor *l = tg_sum(tape, tg_mul(tape, w, tg_stop_gradient(tape, w)));
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    cr_assert_float_eq(tg_grad(w)[0], 3, tol()); /* not 6 */
}

Test(core, a_million_entries_record_and_sweep_without_recursion, .timeout = 120)
{
    tg_tensor *x = tg_params_add(ps, "x", 1, 0);
    tg_data(x)[0] = 1;
    tg_tensor *h = x;
    const int n = 1000000;
    for (int i = 0; i < n && h; i++) h = tg_scale(tape, h, 1.0, 1e-6);
    cr_assert_not_null(h, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_tape_length(tape), n);
    cr_assert_eq(tg_backward(tape, h), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_float_eq(tg_grad(x)[0], 1.0, tol());
    cr_assert_float_eq(tg_item(h), 2.0, sizeof(tg_real) == 4 ? 0.1 : 1e-6); /* float rounds each +1e-6 */
}

Test(core, a_warm_tape_reuses_its_memory)
{
    tg_tensor *w = tg_params_add(ps, "w", 8, 8);
    size_t first = 0;
    for (int rep = 0; rep < 5; rep++) {
        tg_tape_reset(tape);
        tg_real xv[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        tg_tensor *h = tg_input(tape, 8, 0, NULL, 0);
        for (int t = 0; t < 50; t++)
            h = tg_tanh(tape, tg_add(tape, tg_matmul(tape, w, h), tg_input(tape, 8, 0, xv, 0)));
        cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
        if (rep == 1) first = tg_tape_bytes(tape);
        if (rep > 1) cr_assert_eq(tg_tape_bytes(tape), first, "tape grew on reset: %zu -> %zu",
                                  first, tg_tape_bytes(tape));
    }
}

/* counts allocations so "allocates nothing once warm" is checked directly */
typedef struct counting { size_t allocs; } counting;
static void *c_alloc(size_t n, void *u) { ((counting *)u)->allocs++; return malloc(n); }
static void *c_realloc(void *p, size_t o, size_t n, void *u) { (void)o; ((counting *)u)->allocs++; return realloc(p, n); }
static void c_free(void *p, size_t n, void *u) { (void)n; (void)u; free(p); }

Test(core, a_warm_tape_calls_the_allocator_zero_times)
{
    counting cnt = {0};
    tg_allocator a = {c_alloc, c_realloc, c_free, &cnt};
    tg_ctx *c2 = tg_ctx_new(&a);
    tg_tape *t2 = tg_tape_new(c2);
    tg_params *p2 = tg_params_new(c2);
    tg_tensor *w = tg_params_add(p2, "w", 4, 4);
    size_t before = 0;
    for (int rep = 0; rep < 4; rep++) {
        if (rep == 2) before = cnt.allocs;
        tg_tape_reset(t2);
        tg_tensor *h = tg_input(t2, 4, 3, NULL, 0);
        for (int t = 0; t < 300; t++) h = tg_tanh(t2, tg_matmul(t2, w, h));
        cr_assert_eq(tg_backward(t2, tg_mean(t2, h)), TG_OK, "%s", tg_errmsg(c2));
    }
    cr_assert_eq(cnt.allocs, before, "warm steps allocated %zu times", cnt.allocs - before);
    tg_params_free(p2);
    tg_tape_free(t2);
    tg_ctx_free(c2);
}

Test(core, two_tapes_and_two_contexts_live_side_by_side)
{
    tg_ctx *c2 = tg_ctx_new(NULL);
    tg_tape *t2 = tg_tape_new(c2), *t3 = tg_tape_new(ctx);
    tg_params *p2 = tg_params_new(c2);
    tg_tensor *a = tg_params_add(ps, "a", 1, 0), *b = tg_params_add(p2, "a", 1, 0);
    tg_data(a)[0] = 1;
    tg_data(b)[0] = 2;
    tg_tensor *la = tg_sum(tape, tg_mul(tape, a, a));
    tg_tensor *lb = tg_sum(t2, tg_mul(t2, b, b));
    tg_tensor *lc = tg_sum(t3, tg_scale(t3, a, 5, 0));
    cr_assert_eq(tg_backward(t2, lb), TG_OK);
    cr_assert_eq(tg_backward(tape, la), TG_OK);
    cr_assert_eq(tg_backward(t3, lc), TG_OK);
    cr_assert_float_eq(tg_grad(a)[0], 2 + 5, tol());
    cr_assert_float_eq(tg_grad(b)[0], 4, tol());
    /* an error in one context leaves the other's message alone */
    cr_assert_null(tg_matmul(t2, tg_input(t2, 2, 3, NULL, 0), tg_input(t2, 2, 3, NULL, 0)));
    cr_assert_eq(tg_status_last(ctx), TG_OK);
    cr_assert_eq(tg_status_last(c2), TG_ERR_SHAPE);
    tg_tape_free(t3);
    tg_tape_free(t2);
    tg_params_free(p2);
    tg_ctx_free(c2);
}

Test(core, params_are_one_contiguous_buffer)
{
    tg_tensor *a = tg_params_add(ps, "a", 3, 2);
    tg_tensor *b = tg_params_add(ps, "b", 5, 0);
    cr_assert_eq(tg_params_count(ps), 2);
    cr_assert(tg_params_total(ps) >= 11);
    tg_real *v = tg_params_values(ps), *g = tg_params_grads(ps);
    cr_assert(tg_data(a) >= v && tg_data(b) + 5 <= v + tg_params_total(ps));
    cr_assert(tg_grad(a) >= g && tg_grad(b) + 5 <= g + tg_params_total(ps));
    cr_assert_eq(tg_params_find(ps, "b"), b);
    cr_assert_null(tg_params_find(ps, "nope"));
    cr_assert_str_eq(tg_params_name(ps, 1), "b");
    cr_assert_eq(tg_ndim(b), 1);
    cr_assert_eq(tg_ndim(a), 2);
    /* growing moves the buffers but keeps every value */
    tg_data(a)[5] = 7;
    for (int i = 0; i < 20; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", i);
        cr_assert_not_null(tg_params_add(ps, nm, 10, 10));
    }
    cr_assert_eq(tg_data(a)[5], 7);
    cr_assert_null(tg_params_add(ps, "a", 1, 0));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_ARG);
    cr_assert_null(tg_params_add(ps, "neg", -1, 2));
}

Test(core, clipping_makes_the_global_norm_equal_the_threshold)
{
    tg_tensor *a = tg_params_add(ps, "a", 2, 0), *b = tg_params_add(ps, "b", 1, 0);
    tg_grad(a)[0] = 3; tg_grad(a)[1] = 4; tg_grad(b)[0] = 12; /* norm 13 */
    double n = tg_params_clip_grad(ps, 6.5);
    cr_assert_float_eq(n, 13, 1e-6);
    double ss = 0;
    for (size_t i = 0; i < tg_params_total(ps); i++) ss += tg_params_grads(ps)[i] * tg_params_grads(ps)[i];
    cr_assert_float_eq(sqrt(ss), 6.5, 1e-5);
    cr_assert_float_eq(tg_grad(b)[0], 6, 1e-5);
    cr_assert_float_eq(tg_params_clip_grad(ps, 100), 6.5, 1e-5); /* below: untouched */
}

/* ---- gradient check ---- */
static tg_tensor *build_rnn(tg_tape *t, void *user)
{
    tg_params *p = user;
    tg_tensor *W = tg_params_find(p, "W"), *U = tg_params_find(p, "U");
    tg_tensor *h = tg_input(t, 3, 2, NULL, 0);
    tg_real xv[4] = {0.3f, -0.2f, 0.9f, 0.1f};
    for (int s = 0; s < 4; s++)
        h = tg_tanh(t, tg_add(t, tg_matmul(t, W, h), tg_matmul(t, U, tg_input(t, 2, 2, xv, 0))));
    return tg_mean(t, tg_mul(t, h, h));
}

static void fill(tg_tensor *t, double scale)
{
    for (size_t i = 0; i < tg_size(t); i++) tg_data(t)[i] = (tg_real)(scale * (2 * tg_rand_uniform(ctx) - 1));
}

Test(core, gradcheck_passes_a_correct_gradient)
{
    fill(tg_params_add(ps, "W", 3, 3), 0.8);
    fill(tg_params_add(ps, "U", 3, 2), 0.8);
    tg_gradcheck_result r;
    tg_status s = tg_gradcheck(tape, ps, build_rnn, ps, NULL, &r);
    cr_assert_eq(s, TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(r.checked, 15);
    cr_assert(r.max_err < (sizeof(tg_real) == 8 ? 1e-8 : 5e-3), "max err %g", r.max_err);
}

/* an op whose backward is deliberately wrong (twice the true derivative) */
static int sq_shape(int n, const int (*in)[2], const double *a, int out[2], char *e, size_t el)
{
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}
static void sq_fwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    for (size_t i = 0; i < tg_size(o); i++) tg_data(o)[i] = tg_data(x)[i] * tg_data(x)[i];
}
static void sq_bwd_wrong(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    if (!tg_grad(x)) return;
    for (size_t i = 0; i < tg_size(o); i++) tg_grad(x)[i] += 4 * tg_data(x)[i] * tg_grad(o)[i];
}
static void sq_bwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    if (!tg_grad(x)) return;
    for (size_t i = 0; i < tg_size(o); i++) tg_grad(x)[i] += 2 * tg_data(x)[i] * tg_grad(o)[i];
}
static tg_tensor *build_op(tg_tape *t, void *user)
{
    tg_tensor *w = tg_params_at(ps, 0);
    return tg_sum(t, tg_apply(t, user, 1, &w, 0, NULL));
}

Test(core, gradcheck_catches_a_wrong_backward)
{
    tg_op_spec bad = {"square_bad", 1, 0, sq_shape, sq_fwd, sq_bwd_wrong};
    cr_assert_eq(tg_op_register(ctx, &bad), TG_OK, "%s", tg_errmsg(ctx));
    fill(tg_params_add(ps, "w", 2, 2), 1.0);
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck(tape, ps, build_op, "square_bad", NULL, &r), TG_ERR_CHECK);
    cr_assert(r.max_err > 0.1);
    cr_assert(strstr(tg_errmsg(ctx), "'w'"), "%s", tg_errmsg(ctx));
}

/* ---- the refined estimate: a loss with rounding noise, a small wrong backward, a kink ---- */
/* "noisy_sin": sin(x), whose backward is cos(x) times (1 + attr 0), so that a
 * registered op can be wrong by any relative amount; "noisy_abs": |x - attr 0|
 * with the same factor attr 1 */
static void ns_fwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    for (size_t i = 0; i < tg_size(o); i++) tg_data(o)[i] = (tg_real)sin((double)tg_data(x)[i]);
}
static void ns_bwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    if (!tg_grad(x)) return;
    for (size_t i = 0; i < tg_size(o); i++)
        tg_grad(x)[i] += (tg_real)(cos((double)tg_data(x)[i]) * (1 + tg_attr(o, 0)) * tg_grad(o)[i]);
}
static void na_fwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    for (size_t i = 0; i < tg_size(o); i++) tg_data(o)[i] = (tg_real)fabs(tg_data(x)[i] - tg_attr(o, 0));
}
static void na_bwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    if (!tg_grad(x)) return;
    for (size_t i = 0; i < tg_size(o); i++)
        tg_grad(x)[i] += (tg_real)((tg_data(x)[i] > tg_attr(o, 0) ? 1 : -1) * (1 + tg_attr(o, 1)) * tg_grad(o)[i]);
}

/* sum(op(w)) + C: adding C rounds the loss to ulp(C) at every evaluation, the
 * noise a long unrolled loss carries (char_rnn's ~4e4 at T = 50, B = 4) */
typedef struct noisy {
    const char *op;
    double attrs[2];
    double big;
} noisy;
static tg_tensor *build_noisy(tg_tape *t, void *user)
{
    noisy *n = user;
    tg_tensor *w = tg_params_at(ps, 0);
    return tg_scale(t, tg_sum(t, tg_apply(t, n->op, 1, &w, 2, n->attrs)), 1.0, n->big);
}

static void register_noisy_ops(void)
{
    tg_op_spec s = {"noisy_sin", 1, 2, sq_shape, ns_fwd, ns_bwd}, a = {"noisy_abs", 1, 2, sq_shape, na_fwd, na_bwd};
    cr_assert_eq(tg_op_register(ctx, &s), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_op_register(ctx, &a), TG_OK, "%s", tg_errmsg(ctx));
}

#ifdef TG_REAL_DOUBLE
#define NOISY_BIG 1e6 /* ulp 1.2e-10: the 5-point estimate at h = 1e-3 errs by ~3e-8 */
#define NOISY_TOL 1e-9
#define NOISY_WRONG 1e-6
#else
#define NOISY_BIG 1e3 /* ulp 6.1e-5: the 5-point estimate at h = 1e-2 errs by ~2e-3 */
#define NOISY_TOL 1e-3
#define NOISY_WRONG 1e-2
#endif

Test(core, gradcheck_refines_what_rounding_noise_hides)
{
    register_noisy_ops();
    fill(tg_params_add(ps, "w", 4, 4), 1.0);
    tg_gradcheck_opts o = {.tol = NOISY_TOL};
    tg_gradcheck_result r;
    noisy ok = {"noisy_sin", {0, 0}, NOISY_BIG};
    cr_assert_eq(tg_gradcheck(tape, ps, build_noisy, &ok, &o, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(r.checked, 16);
    cr_expect_gt(r.refined, 0, "the 5-point estimate should have been too noisy for tol %g", NOISY_TOL);
    cr_expect_eq(r.unresolved, 0);
    cr_expect_leq(r.max_err, NOISY_TOL);
    /* the same loss without the noise needs no refinement */
    noisy quiet = {"noisy_sin", {0, 0}, 0};
    cr_assert_eq(tg_gradcheck(tape, ps, build_noisy, &quiet, &o, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(r.refined + r.unresolved, 0);
}

Test(core, gradcheck_fails_a_backward_wrong_by_a_little_through_the_noise)
{
    register_noisy_ops();
    fill(tg_params_add(ps, "w", 4, 4), 1.0);
    tg_gradcheck_opts o = {.tol = NOISY_TOL};
    tg_gradcheck_result r;
    /* wrong by NOISY_WRONG relative: |cos w| >= 0.54 on [-1, 1], so scaled errors of 0.54 to 1 x NOISY_WRONG */
    noisy bad = {"noisy_sin", {NOISY_WRONG, 0}, NOISY_BIG};
    cr_assert_eq(tg_gradcheck(tape, ps, build_noisy, &bad, &o, &r), TG_ERR_CHECK);
    cr_expect(r.max_err > 0.9 * NOISY_WRONG && r.max_err < 1.1 * NOISY_WRONG, "max err %g", r.max_err);
    cr_expect(strstr(tg_errmsg(ctx), "parameter 'w'"), "%s", tg_errmsg(ctx));
    /* ... and passes where that error is within tolerance */
    o.tol = 2 * NOISY_WRONG;
    cr_expect_eq(tg_gradcheck(tape, ps, build_noisy, &bad, &o, &r), TG_OK, "%s", tg_errmsg(ctx));
#ifdef TG_REAL_DOUBLE
    /* wrong by 1e-8, below the 5-point estimate's noise (~3e-8): the refined
     * estimates (bounds ~1e-9 here) still see it */
    noisy slightly = {"noisy_sin", {1e-8, 0}, NOISY_BIG};
    o.tol = NOISY_TOL;
    cr_assert_eq(tg_gradcheck(tape, ps, build_noisy, &slightly, &o, &r), TG_ERR_CHECK);
    cr_expect_gt(r.refined, 0);
    cr_expect(r.max_err > 0.8e-8 && r.max_err < 1.2e-8, "max err %g", r.max_err);
#endif
}

/* The kink of |w - k| is 5e-3 from w: inside every wider step, outside the
 * 5-point stencil.  No fit follows it, so the 5-point verdict stands (it is
 * exact on a straight line but for the noise) and the scalar is unresolved. */
Test(core, gradcheck_leaves_a_kink_to_the_5_point_estimate)
{
    register_noisy_ops();
    tg_data(tg_params_add(ps, "w", 1, 0))[0] = (tg_real)0.3;
    double h = sizeof(tg_real) == 8 ? 1e-3 : 1e-2, k = 0.3 - 2.5 * h;
    tg_gradcheck_opts o = {.tol = NOISY_TOL};
    tg_gradcheck_result r;
    noisy good = {"noisy_abs", {k, 0}, NOISY_BIG}, bad = {"noisy_abs", {k, NOISY_WRONG}, NOISY_BIG};
    /* the 5-point estimate, as the check computes it */
    double f[4], dk[4] = {-2, -1, 1, 2};
    for (int j = 0; j < 4; j++) {
        tg_real *w = tg_data(tg_params_at(ps, 0));
        *w = (tg_real)(0.3 + dk[j] * h);
        tg_tape_reset(tape);
        f[j] = tg_item(build_noisy(tape, &good));
        *w = (tg_real)0.3;
    }
    double num = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h), want = fabs(1 - num) / fmax(1, fabs(num));
    tg_status st = tg_gradcheck(tape, ps, build_noisy, &good, &o, &r);
    cr_expect_eq(st, want > NOISY_TOL ? TG_ERR_CHECK : TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(r.unresolved, want > NOISY_TOL / 2);
    cr_expect_eq(r.refined, 0);
    cr_expect_float_eq(r.max_err, want, 1e-3 * want + 1e-300, "max err %g, the 5-point estimate's %g", r.max_err, want);
    cr_expect_eq(tg_gradcheck(tape, ps, build_noisy, &bad, &o, &r), TG_ERR_CHECK);
    cr_expect_eq(r.unresolved, 1);
    cr_expect(r.max_err > 0.5 * NOISY_WRONG, "max err %g", r.max_err);
}

Test(core, a_registered_op_works_like_a_builtin)
{
    tg_op_spec sq = {"square", 1, 0, sq_shape, sq_fwd, sq_bwd};
    int before = tg_op_count(ctx);
    cr_assert_eq(tg_op_register(ctx, &sq), TG_OK);
    cr_assert_eq(tg_op_count(ctx), before + 1);
    cr_assert_str_eq(tg_op_name(ctx, before), "square");
    cr_assert(tg_op_exists(ctx, "square"));
    fill(tg_params_add(ps, "w", 3, 2), 1.0);
    cr_assert_eq(tg_gradcheck(tape, ps, build_op, "square", NULL, NULL), TG_OK, "%s", tg_errmsg(ctx));
    int out[2];
    const int in[1][2] = {{3, 2}};
    cr_assert_eq(tg_op_shape(ctx, "square", 1, in, 0, NULL, out), TG_OK);
    cr_assert(out[0] == 3 && out[1] == 2);
    /* a second context does not see it: no global op table */
    tg_ctx *c2 = tg_ctx_new(NULL);
    cr_assert_not(tg_op_exists(c2, "square"));
    tg_ctx_free(c2);
}

Test(core, registration_refuses_bad_specs)
{
    tg_op_spec s = {"square", 1, 0, sq_shape, sq_fwd, sq_bwd};
    cr_assert_eq(tg_op_register(ctx, &s), TG_OK);
    cr_assert_eq(tg_op_register(ctx, &s), TG_ERR_ARG);
    cr_assert(strstr(tg_errmsg(ctx), "already exists"));
    tg_op_spec t = {"tanh", 1, 0, sq_shape, sq_fwd, sq_bwd};
    cr_assert_eq(tg_op_register(ctx, &t), TG_ERR_ARG);
    tg_op_spec u = {"9lives", 1, 0, sq_shape, sq_fwd, sq_bwd};
    cr_assert_eq(tg_op_register(ctx, &u), TG_ERR_ARG);
    tg_op_spec v = {"noshape", 1, 0, NULL, sq_fwd, sq_bwd};
    cr_assert_eq(tg_op_register(ctx, &v), TG_ERR_ARG);
    cr_assert_eq(tg_op_register(ctx, NULL), TG_ERR_ARG);
}

/* ---- error paths ---- */
Test(core, errors_are_statuses_with_messages_never_aborts)
{
    tg_tensor *a = tg_input(tape, 2, 3, NULL, 0), *b = tg_input(tape, 4, 1, NULL, 0);
    cr_assert_null(tg_matmul(tape, a, b));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_SHAPE);
    cr_assert(strstr(tg_errmsg(ctx), "matmul"), "%s", tg_errmsg(ctx));
    cr_assert(strstr(tg_errmsg(ctx), "[2, 3]") && strstr(tg_errmsg(ctx), "[4"), "%s", tg_errmsg(ctx));

    /* chaining keeps the first message */
    char first[256];
    snprintf(first, sizeof first, "%s", tg_errmsg(ctx));
    cr_assert_null(tg_tanh(tape, tg_add(tape, tg_matmul(tape, a, b), a)));
    cr_assert_str_eq(tg_errmsg(ctx), first);

    cr_assert_null(tg_apply(tape, "no_such_op", 1, &a, 0, NULL));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_NOTFOUND);
    cr_assert(strstr(tg_errmsg(ctx), "no_such_op"));

    cr_assert_null(tg_apply(tape, "tanh", 2, (tg_tensor *[]){a, a}, 0, NULL));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_ARG);

    cr_assert_null(tg_input(tape, 0, 3, NULL, 0));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_ARG);

    cr_assert_eq(tg_backward(tape, NULL), TG_ERR_ARG);
    cr_assert_eq(tg_backward(tape, a), TG_ERR_SHAPE); /* not 1x1 */
    tg_clear_error(ctx);
    cr_assert_str_eq(tg_errmsg(ctx), "");
}

Test(core, a_loss_from_another_tape_is_refused)
{
    tg_tape *t2 = tg_tape_new(ctx);
    tg_tensor *l = tg_sum(t2, tg_input(t2, 2, 0, NULL, 1));
    cr_assert_eq(tg_backward(tape, l), TG_ERR_ARG);
    tg_tape_free(t2);
}

Test(core, a_nan_loss_is_refused_and_anomaly_mode_names_the_entry)
{
    tg_real bad[2] = {1, -1};
    tg_tensor *x = tg_input(tape, 2, 0, bad, 1);
    tg_tensor *l = tg_sum(tape, tg_log(tape, x));
    cr_assert_not_null(l);
    cr_assert_eq(tg_backward(tape, l), TG_ERR_NONFINITE);

    tg_tape_reset(tape);
    tg_tape_detect_anomaly(tape, 1);
    x = tg_input(tape, 2, 0, bad, 1);
    tg_tensor *lg = tg_log(tape, x);
    cr_assert_null(lg);
    cr_assert_eq(tg_status_last(ctx), TG_ERR_NONFINITE);
    cr_assert(strstr(tg_errmsg(ctx), "log"), "%s", tg_errmsg(ctx));
    cr_assert(strstr(tg_errmsg(ctx), "entry 1"), "%s", tg_errmsg(ctx));
}

static void bwd_inf(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    if (tg_grad(x)) tg_grad(x)[0] += (tg_real)INFINITY;
}

Test(core, anomaly_mode_catches_a_non_finite_gradient)
{
    tg_op_spec spec = {"inf_grad", 1, 0, sq_shape, sq_fwd, bwd_inf};
    cr_assert_eq(tg_op_register(ctx, &spec), TG_OK);
    tg_real one[1] = {1};
    tg_tensor *x = tg_input(tape, 1, 0, one, 1);
    tg_tensor *y = tg_apply(tape, "inf_grad", 1, &x, 0, NULL);
    tg_tensor_set_label(y, "h", 7);
    tg_tensor_set_source(y, "model.yaml", 12, 9);
    tg_tensor *l = tg_sum(tape, y);
    cr_assert_eq(tg_backward(tape, l), TG_OK); /* off: no check */
    tg_tape_detect_anomaly(tape, 1);
    cr_assert_eq(tg_backward(tape, l), TG_ERR_NONFINITE);
    const char *m = tg_errmsg(ctx);
    cr_assert(strstr(m, "inf_grad") && strstr(m, "h[t=7]") && strstr(m, "model.yaml:12:9"), "%s", m);
}

Test(core, real_size_mismatch_is_refused)
{
    cr_assert_null(tg_ctx_new_checked(NULL, sizeof(tg_real) == 4 ? 8 : 4));
}

Test(core, statuses_have_names)
{
    for (int s = TG_OK; s <= TG_ERR_CHECK; s++) cr_assert_neq(strcmp(tg_status_name(s), "unknown status"), 0);
    cr_assert_str_eq(tg_status_name((tg_status)99), "unknown status");
}

Test(core, an_entry_of_another_tape_or_before_a_reset_is_refused)
{
    tg_tape *t2 = tg_tape_new(ctx);
    tg_tensor *foreign = tg_input(t2, 2, 0, NULL, 0);
    tg_tensor *mine = tg_input(tape, 2, 0, NULL, 0);
    cr_assert_null(tg_add(tape, mine, foreign));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_ARG);
    cr_assert(strstr(tg_errmsg(ctx), "not an entry of this tape"), "%s", tg_errmsg(ctx));
    tg_tape_reset(tape);
    tg_input(tape, 3, 0, NULL, 0); /* reuses the memory mine pointed at */
    cr_assert_null(tg_tanh(tape, tg_tape_at(t2, 0)));
    tg_tape_free(t2);
}

Test(core, input_ref_borrows_the_callers_buffer)
{
    tg_real x[3] = {1, 2, 3};
    tg_tensor *w = tg_params_add(ps, "w", 3, 0);
    tg_tensor *r = tg_input_ref(tape, 3, 0, x);
    cr_assert_eq(tg_data(r), x);
    tg_tensor *l = tg_sum(tape, tg_mul(tape, w, r));
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    cr_assert_float_eq(tg_grad(w)[2], 3, tol());
    cr_assert_null(tg_grad(r));
    cr_assert_null(tg_input_ref(tape, 3, 0, NULL));
}

/* an RNN's parameter gradients with and without recycling entry gradients */
static void rnn_grads(int keep, tg_real *out, size_t *bytes)
{
    tg_ctx *c = tg_ctx_new(NULL);
    tg_tape *t = tg_tape_new(c);
    tg_params *p = tg_params_new(c);
    tg_tensor *W = tg_params_add(p, "W", 32, 32), *U = tg_params_add(p, "U", 32, 8);
    for (size_t i = 0; i < tg_size(W); i++) tg_data(W)[i] = (tg_real)(0.2 * sin(1.0 + i));
    for (size_t i = 0; i < tg_size(U); i++) tg_data(U)[i] = (tg_real)(0.3 * cos(2.0 + i));
    tg_tape_keep_grads(t, keep);
    for (int rep = 0; rep < 2; rep++) {
        tg_tape_reset(t);
        tg_tensor *h = tg_input(t, 32, 4, NULL, 0), *loss = NULL, *h1 = NULL;
        for (int s = 0; s < 200; s++) {
            tg_real x[32];
            for (int i = 0; i < 32; i++) x[i] = (tg_real)sin(0.1 * s + i);
            h = tg_tanh(t, tg_add(t, tg_matmul(t, W, h), tg_matmul(t, U, tg_input(t, 8, 4, x, 0))));
            if (s == 0) h1 = h;
            tg_tensor *e = tg_mean(t, tg_mul(t, h, h));
            loss = loss ? tg_add(t, loss, e) : e;
        }
        cr_assert_eq(tg_backward(t, loss), TG_OK, "%s", tg_errmsg(c));
        if (keep) cr_assert_not_null(tg_grad(h1));
        else cr_assert_null(tg_grad(h1), "a recycled entry must not show a stale gradient");
    }
    memcpy(out, tg_params_grads(p), tg_params_total(p) * sizeof(tg_real));
    *bytes = tg_tape_bytes(t);
    tg_params_free(p);
    tg_tape_free(t);
    tg_ctx_free(c);
}

Test(core, recycled_gradients_give_the_same_parameter_gradients_in_less_memory)
{
    static tg_real a[32 * 40 + 64], b[32 * 40 + 64];
    size_t kept, recycled;
    rnn_grads(1, a, &kept);
    rnn_grads(0, b, &recycled);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "recycling changed a gradient");
    cr_assert_lt(recycled, kept, "tape bytes %zu with recycling, %zu without", recycled, kept);
}
