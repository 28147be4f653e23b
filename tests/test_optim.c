/* test_optim.c — each optimizer's update against values worked out by hand
 * (and in Python with float64) for two or three steps; weight decay, coupled
 * and decoupled; clipping by global norm; Adam's bias correction; the state
 * layout checkpoints rely on; bad options.  Adagrad, clip_value and
 * eps_inside as torch.optim defines them (expected values from the update
 * rules in Python float64; first steps by hand in the comments). */
#include <criterion/criterion.h>
#include <math.h>
#include "tg_internal.h"

static tg_ctx *ctx;
static tg_params *ps;
static tg_tensor *w;

/* Two parameters: w = [1, -2] and a 1-element z = [0] whose gradient stays
 * zero unless a test sets it. */
static void setup(void)
{
    ctx = tg_ctx_new(NULL);
    cr_assert_not_null(ctx);
    ps = tg_params_new(ctx);
    w = tg_params_add(ps, "w", 2, 0);
    cr_assert(ps && w && tg_params_add(ps, "z", 1, 0));
    tg_data(w)[0] = 1;
    tg_data(w)[1] = -2;
}

static void teardown(void)
{
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

TestSuite(optim, .init = setup, .fini = teardown);

static double tol(void) { return sizeof(tg_real) == 8 ? 1e-12 : 2e-6; }

static void set_grad(double g0, double g1)
{
    tg_params_zero_grad(ps);
    tg_grad(w)[0] = (tg_real)g0;
    tg_grad(w)[1] = (tg_real)g1;
}

static void expect_w(double w0, double w1)
{
    cr_assert_float_eq(tg_data(w)[0], w0, tol(), "w[0] = %.12g, expected %.12g", (double)tg_data(w)[0], w0);
    cr_assert_float_eq(tg_data(w)[1], w1, tol(), "w[1] = %.12g, expected %.12g", (double)tg_data(w)[1], w1);
}

static tg_optim *make(tg_optim_kind kind, double lr)
{
    tg_optim_opts o = tg_optim_defaults(kind);
    o.lr = lr;
    tg_optim *opt = tg_optim_new(ps, &o);
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    return opt;
}

static void step(tg_optim *o)
{
    cr_assert_eq(tg_optim_step(o, NULL), TG_OK, "%s", tg_errmsg(ctx));
}

Test(optim, sgd_moves_against_the_gradient_by_lr_times_it)
{
    tg_optim *o = make(TG_OPTIM_SGD, 0.1);
    set_grad(0.5, -1), step(o), expect_w(0.95, -1.9);
    set_grad(0.5, -1), step(o), expect_w(0.9, -1.8);
    cr_assert_eq(tg_optim_steps(o), 2);
    cr_assert_eq(tg_optim_state_count(o), 0);
    tg_optim_free(o);
}

Test(optim, momentum_accumulates_a_velocity)
{
    /* b1 = g = 0.5; b2 = 0.9*0.5 + 0.5 = 0.95; b3 = 0.9*0.95 + 0.5 = 1.355 */
    tg_optim *o = make(TG_OPTIM_MOMENTUM, 0.1);
    set_grad(0.5, -1), step(o), expect_w(0.95, -1.9);
    set_grad(0.5, -1), step(o), expect_w(0.855, -1.71);
    set_grad(0.5, -1), step(o), expect_w(0.7195, -1.439);
    const char *name;
    tg_real *b = tg_optim_state(o, 0, &name);
    cr_assert_str_eq(name, "velocity");
    cr_assert_float_eq(b[0], 1.355, tol());
    tg_optim_free(o);
}

Test(optim, nesterov_looks_ahead_along_the_velocity)
{
    /* d1 = g + mu*b1 = 0.5 + 0.45 = 0.95; d2 = 0.5 + 0.9*0.95 = 1.355 */
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_MOMENTUM);
    opt.lr = 0.1;
    opt.nesterov = 1;
    tg_optim *o = tg_optim_new(ps, &opt);
    set_grad(0.5, -1), step(o), expect_w(0.905, -1.81);
    set_grad(0.5, -1), step(o), expect_w(0.7695, -1.539);
    tg_optim_free(o);
}

Test(optim, adam_two_steps_with_changing_gradients)
{
    tg_optim *o = make(TG_OPTIM_ADAM, 0.1);
    set_grad(0.5, -1), step(o), expect_w(0.900000002, -1.900000001);
    set_grad(-0.25, 2), step(o), expect_w(0.8733662987078463, -1.9366103534720749);
    const char *m, *v;
    cr_assert_eq(tg_optim_state_count(o), 2);
    tg_real *ms = tg_optim_state(o, 0, &m), *vs = tg_optim_state(o, 1, &v);
    cr_assert_str_eq(m, "m");
    cr_assert_str_eq(v, "v");
    /* m2 = 0.9*0.05 + 0.1*(-0.25) = 0.02;  v2 = 0.999*0.00025 + 0.001*0.0625 */
    cr_assert_float_eq(ms[0], 0.02, tol());
    cr_assert_float_eq(vs[0], 0.00031225, tol());
    tg_optim_free(o);
}

Test(optim, adam_bias_correction_makes_the_first_steps_lr_sized)
{
    /* With a constant gradient the corrected m/sqrt(v) is exactly sign(g):
     * every step moves by lr.  Without the correction the first step would be
     * lr * 0.1 / sqrt(0.001) = 3.16 lr.  (A tiny eps keeps it exact in
     * double; 0 is refused.) */
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_ADAM);
    opt.lr = 0.01;
    opt.eps = 1e-300;
    tg_optim *o = tg_optim_new(ps, &opt);
    for (int t = 1; t <= 3; t++) {
        set_grad(3, -0.002);
        step(o);
        expect_w(1 - 0.01 * t, -2 + 0.01 * t);
    }
    tg_optim_free(o);
}

Test(optim, rmsprop_divides_by_the_running_rms)
{
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_RMSPROP);
    opt.lr = 0.01;
    opt.rho = 0.9;
    tg_optim *o = tg_optim_new(ps, &opt);
    cr_assert_not_null(o);
    set_grad(0.5, -1), step(o), expect_w(0.968377225398316, -1.9683772243983162);
    set_grad(-0.25, 2), step(o), expect_w(0.9831214201442406, -1.9969486525615816);
    tg_optim_free(o);
}

Test(optim, weight_decay_is_l2_or_decoupled)
{
    /* SGD: g' = 0.5 + 0.1*1 = 0.6, p = 1 - 0.1*0.6 = 0.94 */
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_SGD);
    opt.lr = 0.1;
    opt.weight_decay = 0.1;
    tg_optim *o = tg_optim_new(ps, &opt);
    set_grad(0.5, 0), step(o);
    cr_assert_float_eq(tg_data(w)[0], 0.94, tol());
    cr_assert_float_eq(tg_data(w)[1], -2 + 0.1 * 0.1 * 2, tol()); /* decay alone pulls to 0 */
    tg_optim_free(o);

    /* Adam, coupled: the decayed gradient still normalises to a step of lr */
    tg_data(w)[0] = 1;
    opt = tg_optim_defaults(TG_OPTIM_ADAM);
    opt.lr = 0.1;
    opt.weight_decay = 0.1;
    o = tg_optim_new(ps, &opt);
    set_grad(0.5, 0), step(o);
    cr_assert_float_eq(tg_data(w)[0], 0.9000000016666666, tol());
    tg_optim_free(o);

    /* AdamW: p = 1 * (1 - 0.1*0.1) = 0.99, then the Adam step of lr */
    tg_data(w)[0] = 1;
    opt.decoupled = 1;
    o = tg_optim_new(ps, &opt);
    set_grad(0.5, 0), step(o);
    cr_assert_float_eq(tg_data(w)[0], 0.890000002, tol());
    tg_optim_free(o);
}

static double grad_norm(void)
{
    double ss = 0;
    for (size_t i = 0; i < tg_params_total(ps); i++) ss += (double)tg_params_grads(ps)[i] * tg_params_grads(ps)[i];
    return sqrt(ss);
}

Test(optim, clipping_scales_the_global_norm_to_the_threshold_not_to_one)
{
    /* gradients over two parameters: [3, 0] and [4]: global norm 5 */
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_SGD);
    opt.lr = 1;
    opt.clip = 2;
    tg_optim *o = tg_optim_new(ps, &opt);
    set_grad(3, 0);
    tg_grad(tg_params_find(ps, "z"))[0] = 4;
    double before;
    cr_assert_eq(tg_optim_step(o, &before), TG_OK);
    cr_assert_float_eq(before, 5, 1e-6);
    cr_assert_float_eq(grad_norm(), 2, 1e-6, "clipped norm %g, expected the threshold 2", grad_norm());
    expect_w(1 - 1.2, -2);
    cr_assert_float_eq(tg_data(tg_params_find(ps, "z"))[0], -1.6, tol());

    /* under the threshold nothing is scaled */
    set_grad(0.3, 0.4);
    cr_assert_eq(tg_optim_step(o, &before), TG_OK);
    cr_assert_float_eq(before, 0.5, 1e-6);
    cr_assert_float_eq(grad_norm(), 0.5, 1e-6);
    tg_optim_free(o);

    /* a larger threshold than 1 really is that threshold */
    opt.clip = 3.5;
    o = tg_optim_new(ps, &opt);
    set_grad(30, 40);
    cr_assert_eq(tg_optim_step(o, &before), TG_OK);
    cr_assert_float_eq(grad_norm(), 3.5, 1e-5);
    tg_optim_free(o);
}

Test(optim, a_nonfinite_gradient_changes_nothing)
{
    tg_optim *o = make(TG_OPTIM_ADAM, 0.1);
    set_grad(NAN, 1);
    cr_assert_eq(tg_optim_step(o, NULL), TG_ERR_NONFINITE);
    cr_assert(strstr(tg_errmsg(ctx), "gradient norm"), "%s", tg_errmsg(ctx));
    expect_w(1, -2);
    cr_assert_eq(tg_optim_steps(o), 0);
    tg_optim_free(o);
}

Test(optim, state_sits_at_each_parameters_offset_and_grows_with_params)
{
    tg_optim *o = make(TG_OPTIM_MOMENTUM, 0.1);
    tg_tensor *z = tg_params_find(ps, "z");
    tg_params_zero_grad(ps);
    tg_grad(z)[0] = 7;
    step(o);
    size_t off = (size_t)(tg_data(z) - tg_params_values(ps));
    cr_assert_float_eq(tg_optim_state(o, 0, NULL)[off], 7, tol());
    /* a parameter added later starts with zero state; old state is kept */
    tg_tensor *u = tg_params_add(ps, "u", 3, 2);
    cr_assert_not_null(u);
    z = tg_params_find(ps, "z");
    tg_params_zero_grad(ps);
    tg_grad(u)[5] = 1;
    step(o);
    tg_real *b = tg_optim_state(o, 0, NULL);
    cr_assert_float_eq(b[off], 0.9 * 7, tol());
    size_t uoff = (size_t)(tg_data(u) - tg_params_values(ps));
    cr_assert_float_eq(b[uoff + 5], 1, tol());
    cr_assert_float_eq(b[uoff], 0, tol());
    /* restoring: write the state and the step count back */
    tg_optim_set_steps(o, 41);
    cr_assert_eq(tg_optim_steps(o), 41);
    cr_assert_null(tg_optim_state(o, 1, NULL));
    tg_optim_free(o);
}

Test(optim, bad_options_are_refused_with_a_reason)
{
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_ADAM);
    opt.lr = 0;
    cr_assert_null(tg_optim_new(ps, &opt));
    cr_assert(strstr(tg_errmsg(ctx), "lr"), "%s", tg_errmsg(ctx));
    opt = tg_optim_defaults(TG_OPTIM_ADAM);
    opt.beta2 = 1;
    cr_assert_null(tg_optim_new(ps, &opt));
    cr_assert(strstr(tg_errmsg(ctx), "beta2"), "%s", tg_errmsg(ctx));
    opt = tg_optim_defaults(TG_OPTIM_SGD);
    opt.clip = -1;
    cr_assert_null(tg_optim_new(ps, &opt));
    cr_assert_null(tg_optim_new(ps, NULL));
    cr_assert_eq(tg_optim_kind_parse("rmsprop"), TG_OPTIM_RMSPROP);
    cr_assert_eq(tg_optim_kind_parse("adamw"), -1);
    cr_assert_str_eq(tg_optim_kind_name(TG_OPTIM_MOMENTUM), "momentum");
}

/* ---- Adagrad, clip_value, eps_inside, eps > 0 ------------------------------------- */

Test(optim, adagrad_divides_by_the_root_of_the_summed_squares)
{
    /* step 1: s = [0.25, 1]; p -= 0.1 * 0.5 / (0.5 + 1e-10) = 0.1 (less 2e-11)
     * step 2: s = [0.3125, 5]; p0 += 0.1 * 0.25 / sqrt(0.3125) = 0.0447... */
    tg_optim_opts d = tg_optim_defaults(TG_OPTIM_ADAGRAD);
    cr_assert_float_eq(d.lr, 0.01, 0);
    cr_assert_float_eq(d.eps, 1e-10, 0);
    tg_optim *o = make(TG_OPTIM_ADAGRAD, 0.1);
    set_grad(0.5, -1), step(o), expect_w(0.90000000002, -1.90000000001);
    set_grad(-0.25, 2), step(o), expect_w(0.9447213595619958, -1.9894427191059916);
    const char *name;
    cr_assert_eq(tg_optim_state_count(o), 1);
    tg_real *sum = tg_optim_state(o, 0, &name);
    cr_assert_str_eq(name, "sum");
    cr_assert_float_eq(sum[0], 0.3125, tol());
    cr_assert_float_eq(sum[1], 5, tol());
    /* the parameter whose gradient stayed zero is still exactly 0 */
    cr_assert_eq(tg_data(tg_params_find(ps, "z"))[0], 0);
    cr_assert_str_eq(tg_optim_kind_name(TG_OPTIM_ADAGRAD), "adagrad");
    cr_assert_eq(tg_optim_kind_parse("adagrad"), TG_OPTIM_ADAGRAD);
    tg_optim_free(o);
}

/* eps 0.25 makes inside and outside differ in the third digit */
static tg_optim *make_eps(tg_optim_kind kind, double lr, double eps, int inside)
{
    tg_optim_opts o = tg_optim_defaults(kind);
    o.lr = lr;
    o.eps = eps;
    o.rho = 0.9;
    o.eps_inside = inside;
    tg_optim *opt = tg_optim_new(ps, &o);
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    return opt;
}

Test(optim, eps_inside_puts_eps_under_the_root)
{
    /* Adagrad step 1: 0.1 * 0.5 / sqrt(0.25 + 0.25) = 0.0707...: p = 0.9292893 */
    tg_optim *o = make_eps(TG_OPTIM_ADAGRAD, 0.1, 0.25, 1);
    set_grad(0.5, -1), step(o), expect_w(0.9292893218813453, -1.9105572809000084);
    set_grad(-0.25, 2), step(o), expect_w(0.9626226552146786, -1.9978444369944053);
    tg_optim_free(o);
    tg_data(w)[0] = 1, tg_data(w)[1] = -2;
    /* RMSprop step 1: v = 0.1 * 0.25 = 0.025; 0.01 * 0.5 / sqrt(0.275) */
    o = make_eps(TG_OPTIM_RMSPROP, 0.01, 0.25, 1);
    set_grad(0.5, -1), step(o), expect_w(0.9904653741075441, -1.9830969149054296);
    set_grad(-0.25, 2), step(o), expect_w(0.9952005113456479, -2.0063464426541935);
    tg_optim_free(o);
    tg_data(w)[0] = 1, tg_data(w)[1] = -2;
    o = make_eps(TG_OPTIM_RMSPROP, 0.01, 0.25, 0); /* outside, for contrast */
    set_grad(0.5, -1), step(o), expect_w(0.9877485177344558, -1.9823392623955098);
    set_grad(-0.25, 2), step(o), expect_w(0.9937071659138534, -2.0033918939744573);
    tg_optim_free(o);
    tg_data(w)[0] = 1, tg_data(w)[1] = -2;
    /* Adam step 1: m_hat = g, v_hat = g^2: 0.1 * 0.5 / sqrt(0.25 + 0.25) */
    o = make_eps(TG_OPTIM_ADAM, 0.1, 0.25, 1);
    set_grad(0.5, -1), step(o), expect_w(0.9292893218813453, -1.9105572809000084);
    set_grad(-0.25, 2), step(o), expect_w(0.9127733255722231, -1.9454643586860354);
    tg_optim_free(o);
    tg_data(w)[0] = 1, tg_data(w)[1] = -2;
    o = make_eps(TG_OPTIM_ADAM, 0.1, 0.25, 0); /* 0.1 * 0.5 / (0.5 + 0.25) */
    set_grad(0.5, -1), step(o), expect_w(0.9333333333333333, -1.92);
    set_grad(-0.25, 2), step(o), expect_w(0.9170191645106088, -1.9516126964782203);
    tg_optim_free(o);
}

Test(optim, clip_value_clamps_each_element_before_the_norm_clip)
{
    tg_optim_opts opt = tg_optim_defaults(TG_OPTIM_SGD);
    opt.lr = 1;
    opt.clip_value = 1;
    tg_optim *o = tg_optim_new(ps, &opt);
    cr_assert_not_null(o);
    double before;
    set_grad(3, -0.5);
    cr_assert_eq(tg_optim_step(o, &before), TG_OK);
    cr_assert_float_eq(before, sqrt(9.25), 1e-6, "the reported norm is before any clipping");
    expect_w(0, -1.5);
    cr_assert_float_eq(tg_grad(w)[0], 1, 0);
    cr_assert_float_eq(tg_grad(w)[1], -0.5, 0);
    tg_optim_free(o);
    /* then the norm clip scales [1, -0.5] (norm sqrt(1.25)) to norm 0.5:
     * the norm of the clamped gradients, not of the raw ones */
    tg_data(w)[0] = 1, tg_data(w)[1] = -2;
    opt.clip = 0.5;
    o = tg_optim_new(ps, &opt);
    set_grad(3, -0.5);
    cr_assert_eq(tg_optim_step(o, &before), TG_OK);
    cr_assert_float_eq(before, sqrt(9.25), 1e-6);
    expect_w(0.5527864045000421, -1.776393202250021);
    cr_assert_float_eq(grad_norm(), 0.5, 1e-6);
    tg_optim_free(o);
    opt.clip_value = -1;
    cr_assert_null(tg_optim_new(ps, &opt));
    cr_assert_str_eq(tg_errmsg(ctx), "optimizer: clip_value = -1 is out of range (lr > 0; momentum, betas and rho "
                                     "in [0, 1); eps, weight decay, clip and clip_value >= 0)");
}

Test(optim, eps_must_be_positive_where_it_divides)
{
    const tg_optim_kind kinds[] = {TG_OPTIM_ADAM, TG_OPTIM_RMSPROP, TG_OPTIM_ADAGRAD};
    const double bad[] = {0, -1e-8, NAN, INFINITY};
    for (int k = 0; k < 3; k++)
        for (int b = 0; b < 4; b++) {
            tg_optim_opts o = tg_optim_defaults(kinds[k]);
            o.eps = bad[b];
            tg_clear_error(ctx);
            cr_expect_null(tg_optim_new(ps, &o), "%s eps %g", tg_optim_kind_name(kinds[k]), bad[b]);
            cr_expect_eq(tg_status_last(ctx), TG_ERR_ARG);
            char want[256];
            snprintf(want, sizeof want, "optimizer: eps = %g: %s needs eps > 0 (with 0, a parameter whose gradient "
                     "is zero becomes 0/0 = NaN)", bad[b], tg_optim_kind_name(kinds[k]));
            cr_expect_str_eq(tg_errmsg(ctx), want);
        }
    /* SGD and momentum do not divide: eps 0 is fine there */
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_SGD);
    o.eps = 0;
    tg_optim *opt = tg_optim_new(ps, &o);
    cr_expect_not_null(opt, "%s", tg_errmsg(ctx));
    tg_optim_free(opt);
    /* and with a positive eps a zero gradient leaves its parameter alone */
    for (int k = 0; k < 3; k++) {
        tg_optim *a = make(kinds[k], 0.1);
        tg_params_zero_grad(ps);
        step(a);
        cr_expect_eq(tg_data(tg_params_find(ps, "z"))[0], 0, "%s", tg_optim_kind_name(kinds[k]));
        expect_w(1, -2);
        tg_optim_free(a);
    }
}
