/* test_api_hostile.c — every function of tapegrad.h called as a careless or
 * hostile caller would: with NULL for each object, out-of-range indices, and
 * op specs that break their contract.  Each call must return its documented
 * "nothing" (0, NULL, NaN, -1 or TG_ERR_ARG) without crashing, and every
 * error status must leave a non-empty message where there is a context to
 * hold it.  A crash shows as a crashed test (Criterion forks per test). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <tapegrad.h>

static tg_ctx *ctx;
static tg_tape *tp;
static tg_params *ps;

static void setup(void)
{
    ctx = tg_ctx_new(NULL);
    cr_assert_not_null(ctx);
    tp = tg_tape_new(ctx);
    ps = tg_params_new(ctx);
    cr_assert(tp && ps);
}

static void teardown(void)
{
    tg_params_free(ps);
    tg_tape_free(tp);
    tg_ctx_free(ctx);
}

TestSuite(api_hostile, .init = setup, .fini = teardown);

/* The call failed with s and left a non-empty message in ctx. */
#define expect_fail(call, s)                                                                        \
    do {                                                                                           \
        tg_clear_error(ctx);                                                                       \
        tg_status got_ = (call);                                                                   \
        cr_expect_eq(got_, (s), "%s returned %d", #call, got_);                                     \
        cr_expect_neq(tg_errmsg(ctx)[0], 0, "%s left no message", #call);                           \
    } while (0)

/* The call returned NULL and left a non-empty message in ctx. */
#define expect_null_msg(call)                                                                      \
    do {                                                                                           \
        tg_clear_error(ctx);                                                                       \
        cr_expect_null((call), "%s", #call);                                                       \
        cr_expect_neq(tg_status_last(ctx), TG_OK, "%s set no status", #call);                       \
        cr_expect_neq(tg_errmsg(ctx)[0], 0, "%s left no message", #call);                           \
    } while (0)

Test(api_hostile, context_calls_survive_null)
{
    tg_ctx_free(NULL);
    cr_expect_eq(tg_status_last(NULL), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(NULL), "the context is NULL (tg_ctx_new returns NULL when out of memory "
                                      "or when the program's tg_real is not the library's)");
    tg_clear_error(NULL);
    cr_expect_str_eq(tg_status_name((tg_status)-1), "unknown status");
    cr_expect_str_eq(tg_status_name((tg_status)1000), "unknown status");
    tg_seed(NULL, 1);
    cr_expect(isnan(tg_rand_uniform(NULL)));
    cr_expect(isnan(tg_rand_normal(NULL)));
    cr_expect_eq(tg_ctx_set_threads(NULL, 2), TG_ERR_ARG);
    cr_expect_eq(tg_ctx_threads(NULL), 1); /* the default */
    cr_expect_null(tg_ctx_new_checked(&(tg_allocator){NULL, NULL, NULL, NULL}, sizeof(tg_real)));
    expect_fail(tg_ctx_set_threads(ctx, 0), TG_ERR_ARG);
    expect_fail(tg_ctx_set_threads(ctx, TG_MAX_THREADS + 1), TG_ERR_ARG);
}

Test(api_hostile, tensor_views_survive_null)
{
    cr_expect_eq(tg_rows(NULL), 0);
    cr_expect_eq(tg_cols(NULL), 0);
    cr_expect_eq(tg_ndim(NULL), 0);
    cr_expect_eq(tg_size(NULL), 0);
    cr_expect_null(tg_data(NULL));
    cr_expect_null(tg_grad(NULL));
    cr_expect_null(tg_tensor_op(NULL));
    cr_expect_eq(tg_tensor_arity(NULL), 0);
    cr_expect_null(tg_tensor_input(NULL, 0));
    cr_expect_eq(tg_tensor_index(NULL), -1);
    tg_tensor_set_label(NULL, "x", 1);
    tg_tensor_set_source(NULL, "f", 1, 1);
    int step = 7;
    cr_expect_null(tg_tensor_label(NULL, &step));
    cr_expect_eq(step, -1);
    cr_expect_null(tg_tensor_label(NULL, NULL));
    cr_expect(isnan(tg_item(NULL)));
    /* out-of-range inputs, and tg_item of a tensor that is not 1x1 */
    tg_tensor *x = tg_input(tp, 2, 1, NULL, 0);
    tg_tensor *s = tg_sum(tp, x);
    cr_assert(x && s);
    cr_expect_null(tg_tensor_input(s, 1));
    cr_expect_null(tg_tensor_input(s, -1));
    cr_expect_null(tg_tensor_input(x, 0));
    cr_expect(isnan(tg_item(x)));
    cr_expect_eq(tg_item(s), 0);
}

Test(api_hostile, params_calls_survive_null)
{
    cr_expect_null(tg_params_new(NULL));
    tg_params_free(NULL);
    cr_expect_null(tg_params_add(NULL, "w", 1, 1));
    expect_null_msg(tg_params_add(ps, NULL, 1, 1));
    expect_null_msg(tg_params_add(ps, "w", -1, 1));
    cr_expect_null(tg_params_find(NULL, "w"));
    cr_expect_null(tg_params_find(ps, NULL));
    cr_expect_eq(tg_params_count(NULL), 0);
    cr_expect_null(tg_params_at(NULL, 0));
    cr_expect_null(tg_params_at(ps, -1));
    cr_expect_null(tg_params_at(ps, 1 << 30));
    cr_expect_null(tg_params_name(NULL, 0));
    cr_expect_null(tg_params_name(ps, -1));
    cr_expect_eq(tg_params_total(NULL), 0);
    cr_expect_null(tg_params_values(NULL));
    cr_expect_null(tg_params_grads(NULL));
    tg_params_zero_grad(NULL);
    cr_expect_eq(tg_params_clip_grad(NULL, 1), 0);
}

Test(api_hostile, optimizer_calls_survive_null)
{
    cr_expect_str_eq(tg_optim_kind_name((tg_optim_kind)-1), "?"); /* printable */
    cr_expect_str_eq(tg_optim_kind_name((tg_optim_kind)99), "?");
    cr_expect_eq(tg_optim_kind_parse(NULL), -1);
    cr_expect_eq(tg_optim_kind_parse(""), -1);
    cr_expect_null(tg_optim_new(NULL, NULL));
    expect_null_msg(tg_optim_new(ps, NULL));
    tg_optim_opts bad = tg_optim_defaults((tg_optim_kind)99);
    expect_null_msg(tg_optim_new(ps, &bad));
    tg_optim_free(NULL);
    double n = 5;
    cr_expect_eq(tg_optim_step(NULL, &n), TG_ERR_ARG);
    cr_expect(isnan(n));
    cr_expect_eq(tg_optim_step(NULL, NULL), TG_ERR_ARG);
    cr_expect_null(tg_optim_get_opts(NULL));
    tg_optim_set_lr(NULL, 1);
    cr_expect_eq(tg_optim_steps(NULL), 0);
    tg_optim_set_steps(NULL, 3);
    cr_expect_eq(tg_optim_state_count(NULL), 0);
    const char *name = "x";
    cr_expect_null(tg_optim_state(NULL, 0, &name));
    cr_expect_null(name);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    tg_optim *opt = tg_optim_new(ps, &o);
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    name = "x";
    cr_expect_null(tg_optim_state(opt, 2, &name));
    cr_expect_null(name);
    cr_expect_null(tg_optim_state(opt, -1, NULL));
    tg_optim_free(opt);
}

Test(api_hostile, tape_calls_survive_null)
{
    cr_expect_null(tg_tape_new(NULL));
    tg_tape_free(NULL);
    tg_tape_reset(NULL);
    cr_expect_null(tg_tape_ctx(NULL));
    cr_expect_eq(tg_tape_length(NULL), 0);
    cr_expect_null(tg_tape_at(NULL, 0));
    cr_expect_null(tg_tape_at(tp, 0));
    cr_expect_null(tg_tape_at(tp, -1));
    cr_expect_eq(tg_tape_bytes(NULL), 0);
    tg_tape_detect_anomaly(NULL, 1);
    tg_tape_keep_grads(NULL, 0);
    cr_expect_null(tg_input(NULL, 1, 1, NULL, 1));
    cr_expect_null(tg_input_ref(NULL, 1, 1, NULL));
    expect_null_msg(tg_input_ref(tp, 1, 1, NULL));
    expect_null_msg(tg_input(tp, -1, 1, NULL, 0));
    tg_tape_set_sweep_hook(NULL, NULL, NULL);
}

Test(api_hostile, ops_survive_null)
{
    tg_tensor *x = tg_input(tp, 2, 1, NULL, 1);
    cr_assert_not_null(x);
    /* no tape: NULL without a context to write to */
    cr_expect_null(tg_matmul(NULL, x, x));
    cr_expect_null(tg_add(NULL, x, x));
    cr_expect_null(tg_tanh(NULL, x));
    cr_expect_null(tg_apply(NULL, "add", 2, (tg_tensor *[]){x, x}, 0, NULL));
    cr_expect_null(tg_concat(NULL, 1, &x));
    /* a NULL operand on a tape: NULL with a message */
    expect_null_msg(tg_matmul(tp, NULL, x));
    expect_null_msg(tg_add(tp, x, NULL));
    expect_null_msg(tg_sub(tp, NULL, NULL));
    expect_null_msg(tg_mul(tp, NULL, x));
    expect_null_msg(tg_scale(tp, NULL, 1, 0));
    expect_null_msg(tg_tanh(tp, NULL));
    expect_null_msg(tg_sigmoid(tp, NULL));
    expect_null_msg(tg_relu(tp, NULL));
    expect_null_msg(tg_exp(tp, NULL));
    expect_null_msg(tg_log(tp, NULL));
    expect_null_msg(tg_sum(tp, NULL));
    expect_null_msg(tg_mean(tp, NULL));
    expect_null_msg(tg_squared_error(tp, NULL, x));
    expect_null_msg(tg_softmax_cross_entropy(tp, x, NULL));
    expect_null_msg(tg_concat(tp, 2, NULL));
    expect_null_msg(tg_concat(tp, 2, (tg_tensor *[]){x, NULL}));
    expect_null_msg(tg_concat(tp, 0, &x));
    expect_null_msg(tg_slice(tp, NULL, 0, 1));
    expect_null_msg(tg_slice(tp, x, 1, 5));
    expect_null_msg(tg_transpose(tp, NULL));
    expect_null_msg(tg_stop_gradient(tp, NULL));
    expect_null_msg(tg_apply(tp, NULL, 1, &x, 0, NULL));
    expect_null_msg(tg_apply(tp, "no_such_op", 1, &x, 0, NULL));
    expect_null_msg(tg_apply(tp, "tanh", 1, NULL, 0, NULL));
    expect_null_msg(tg_apply(tp, "tanh", -1, &x, 0, NULL));
    expect_null_msg(tg_apply(tp, "scale", 1, &x, 2, NULL));
}

static int shape_same(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t len)
{
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}
static void fwd_copy(tg_tensor *out)
{
    tg_tensor *a = tg_tensor_input(out, 0);
    memcpy(tg_data(out), tg_data(a), tg_size(a) * sizeof(tg_real));
}
static void bwd_copy(tg_tensor *out)
{
    tg_tensor *a = tg_tensor_input(out, 0);
    if (tg_grad(a))
        for (size_t i = 0; i < tg_size(a); i++) tg_grad(a)[i] += tg_grad(out)[i];
}

Test(api_hostile, op_table_calls_survive_null)
{
    tg_op_spec spec = {"copy2", 1, 0, shape_same, fwd_copy, bwd_copy};
    cr_expect_eq(tg_op_register(NULL, &spec), TG_ERR_ARG);
    expect_fail(tg_op_register(ctx, NULL), TG_ERR_ARG);
    cr_expect_eq(tg_op_exists(NULL, "add"), 0);
    cr_expect_eq(tg_op_exists(ctx, NULL), 0);
    cr_expect(isnan(tg_attr(NULL, 0)));
    cr_expect_eq(tg_op_count(NULL), 0);
    cr_expect_null(tg_op_name(NULL, 0));
    cr_expect_null(tg_op_name(ctx, -1));
    cr_expect_null(tg_op_name(ctx, 1 << 30));
    int out[2], in[1][2] = {{2, 1}};
    cr_expect_eq(tg_op_shape(NULL, "tanh", 1, in, 0, NULL, out), TG_ERR_ARG);
    expect_fail(tg_op_shape(ctx, NULL, 1, in, 0, NULL, out), TG_ERR_ARG);
    expect_fail(tg_op_shape(ctx, "tanh", 1, NULL, 0, NULL, out), TG_ERR_ARG);
    expect_fail(tg_op_shape(ctx, "tanh", 1, in, 0, NULL, NULL), TG_ERR_ARG);
    expect_fail(tg_op_shape(ctx, "no_such_op", 1, in, 0, NULL, out), TG_ERR_NOTFOUND);
    /* an any-arity op with no inputs */
    expect_fail(tg_op_shape(ctx, "concat", 0, in, 0, NULL, out), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "concat: takes at least 1 input, given 0");
    tg_tensor *x = tg_input(tp, 2, 1, NULL, 0);
    cr_expect(isnan(tg_attr(x, -1)));
    cr_expect(isnan(tg_attr(x, 99)));
}

Test(api_hostile, sweep_and_debugging_calls_survive_null)
{
    cr_expect_eq(tg_backward(NULL, NULL), TG_ERR_ARG);
    expect_fail(tg_backward(tp, NULL), TG_ERR_ARG);
    cr_expect_eq(tg_tape_dump(NULL, stdout, TG_DUMP_TEXT, NULL), TG_ERR_ARG);
    expect_fail(tg_tape_dump(tp, NULL, TG_DUMP_TEXT, NULL), TG_ERR_ARG);
    FILE *devnull = fopen("/dev/null", "w");
    cr_assert_not_null(devnull);
    expect_fail(tg_tape_dump(tp, devnull, (tg_dump_format)99, NULL), TG_ERR_ARG);
    fclose(devnull);
    cr_expect_null(tg_dump_format_name((tg_dump_format)99));
    cr_expect_eq(tg_dump_format_parse(NULL), -1);
    cr_expect_eq(tg_tape_check_finite(NULL, NULL), TG_ERR_ARG);
    cr_expect_null(tg_grad_norms_new(NULL, NULL, NULL));
    expect_null_msg(tg_grad_norms_new(tp, NULL, NULL));
    tg_grad_norms_free(NULL);
    int r = 5, c = 5;
    tg_grad_norms_size(NULL, &r, &c);
    cr_expect(r == 0 && c == 0);
    tg_grad_norms_size(NULL, NULL, NULL);
    cr_expect_eq(tg_grad_norms_step(NULL, 0), -1);
    int isp = 5;
    cr_expect_null(tg_grad_norms_name(NULL, 0, &isp));
    cr_expect(isnan(tg_grad_norms_at(NULL, 0, 0)));
    cr_expect_eq(tg_grad_norms_write(NULL, stdout, 0), TG_ERR_ARG);
}

static tg_tensor *build_null(tg_tape *t, void *user) { return NULL; }

Test(api_hostile, gradcheck_survives_null)
{
    cr_expect_eq(tg_gradcheck(NULL, ps, build_null, NULL, NULL, NULL), TG_ERR_ARG);
    expect_fail(tg_gradcheck(tp, NULL, build_null, NULL, NULL, NULL), TG_ERR_ARG);
    expect_fail(tg_gradcheck(tp, ps, NULL, NULL, NULL, NULL), TG_ERR_ARG);
    /* build() failing without a message of its own */
    cr_assert_not_null(tg_params_add(ps, "w", 1, 0));
    tg_clear_error(ctx);
    tg_status s = tg_gradcheck(tp, ps, build_null, NULL, NULL, NULL);
    cr_expect_neq(s, TG_OK);
    cr_expect_neq(tg_errmsg(ctx)[0], 0);
}

static const char *model_text = "name: m\nparams: {w: [2]}\ninputs: {x: [2]}\ntargets: {y: [2]}\n"
                                "step:\n  - o = w * x\noutputs: [o]\nloss: squared_error(o, y)\n";

Test(api_hostile, model_calls_survive_null)
{
    cr_expect_null(tg_model_load(NULL, "models/mlp.yaml", NULL, 0));
    expect_null_msg(tg_model_load(ctx, NULL, NULL, 0));
    cr_expect_null(tg_model_parse(NULL, "m", model_text, strlen(model_text), NULL, 0));
    expect_null_msg(tg_model_parse(ctx, "m", NULL, 5, NULL, 0));
    expect_null_msg(tg_model_parse(ctx, "m", model_text, strlen(model_text), NULL, 1));
    expect_null_msg(tg_model_parse(ctx, "m", model_text, strlen(model_text), &(tg_dim){NULL, 2}, 1));
    tg_model_free(NULL);
    cr_expect_null(tg_model_name(NULL));
    cr_expect_eq(tg_model_count(NULL, TG_ROLE_PARAM), 0);
    int rows = 5, cols = 5;
    cr_expect_null(tg_model_var(NULL, TG_ROLE_PARAM, 0, &rows, &cols));
    cr_expect_eq(tg_model_has_loss(NULL), 0);

    tg_model *m = tg_model_parse(ctx, "m", model_text, strlen(model_text), NULL, 0);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_model_count(m, (tg_model_role)99), 0);
    cr_expect_eq(tg_model_count(m, (tg_model_role)-1), 0);
    cr_expect_null(tg_model_var(m, (tg_model_role)99, 0, NULL, NULL));
    cr_expect_null(tg_model_var(m, TG_ROLE_PARAM, -1, NULL, NULL));
    cr_expect_null(tg_model_var(m, TG_ROLE_PARAM, 1, NULL, NULL));
    cr_expect_eq(tg_model_init_params(NULL, ps, 1), TG_ERR_ARG);
    expect_fail(tg_model_init_params(m, NULL, 1), TG_ERR_ARG);

    /* params files: a NULL model still reports through the params' context */
    cr_expect_eq(tg_params_load(NULL, NULL, NULL), TG_ERR_ARG);
    cr_expect_eq(tg_params_save(NULL, NULL, NULL), TG_ERR_ARG);
    expect_fail(tg_params_load(ps, NULL, "p.yaml"), TG_ERR_ARG);
    expect_fail(tg_params_save(ps, NULL, "p.yaml"), TG_ERR_ARG);
    expect_fail(tg_params_load(NULL, m, "p.yaml"), TG_ERR_ARG);
    expect_fail(tg_params_save(NULL, m, "p.yaml"), TG_ERR_ARG);
    expect_fail(tg_params_load(ps, m, NULL), TG_ERR_ARG);
    expect_fail(tg_params_save(ps, m, NULL), TG_ERR_ARG);

    /* data */
    cr_expect_null(tg_dataset_load(NULL, m, "d.yaml"));
    expect_null_msg(tg_dataset_load(ctx, NULL, "d.yaml"));
    expect_null_msg(tg_dataset_load(ctx, m, NULL));
    cr_expect_null(tg_dataset_parse(NULL, m, "d", "x: []", 5));
    expect_null_msg(tg_dataset_parse(ctx, NULL, "d", "x: []", 5));
    expect_null_msg(tg_dataset_parse(ctx, m, "d", NULL, 5));
    cr_expect_null(tg_dataset_random(NULL, m, 2, 1, 1));
    expect_null_msg(tg_dataset_random(ctx, NULL, 2, 1, 1));
    tg_dataset_free(NULL);
    cr_expect_eq(tg_dataset_count(NULL), 0);
    cr_expect_eq(tg_dataset_steps(NULL, 0), 0);
    cr_expect_eq(tg_dataset_batch(NULL, 0), 0);
    cr_expect_null(tg_dataset_values(NULL, 0, TG_ROLE_INPUT, 0));
    tg_dataset *d = tg_dataset_random(ctx, m, 2, 1, 1);
    cr_assert_not_null(d, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_dataset_steps(d, 1), 0);
    cr_expect_eq(tg_dataset_steps(d, -1), 0);
    cr_expect_eq(tg_dataset_batch(d, 1), 0);
    cr_expect_null(tg_dataset_values(d, 1, TG_ROLE_INPUT, 0));
    cr_expect_null(tg_dataset_values(d, 0, TG_ROLE_INPUT, 1));
    cr_expect_null(tg_dataset_values(d, 0, TG_ROLE_PARAM, 0));
    cr_expect_null(tg_dataset_values(d, 0, (tg_model_role)99, 0));
    tg_dataset_free(d);

    /* unrolling */
    tg_unroll u = {0};
    cr_expect_eq(tg_model_unroll(NULL, tp, &u), TG_ERR_ARG);
    expect_fail(tg_model_unroll(m, NULL, &u), TG_ERR_ARG);
    expect_fail(tg_model_unroll(m, tp, NULL), TG_ERR_ARG);
    expect_fail(tg_model_unroll(m, tp, &u), TG_ERR_ARG); /* no params, batch 0 */
    tg_model_free(m);
}

/* ---- op specs that break their contract --------------------------------------------- */

/* fills the whole buffer and leaves no terminating NUL */
static int shape_unterminated(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t len)
{
    memset(err, 'x', len);
    return -1;
}

Test(api_hostile, a_shape_message_without_a_nul_is_terminated)
{
    tg_op_spec spec = {"xshape", 1, 0, shape_unterminated, fwd_copy, bwd_copy};
    cr_assert_eq(tg_op_register(ctx, &spec), TG_OK, "%s", tg_errmsg(ctx));
    tg_tensor *x = tg_input(tp, 2, 1, NULL, 0);
    cr_expect_null(tg_apply(tp, "xshape", 1, &x, 0, NULL));
    char want[300] = "xshape: ";
    memset(want + 8, 'x', 255);
    want[8 + 255] = 0;
    cr_expect_eq(tg_status_last(ctx), TG_ERR_SHAPE);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    int out[2], in[1][2] = {{2, 1}};
    tg_clear_error(ctx);
    cr_expect_eq(tg_op_shape(ctx, "xshape", 1, in, 0, NULL, out), TG_ERR_SHAPE);
    cr_expect_str_eq(tg_errmsg(ctx), want);
}

Test(api_hostile, an_op_without_backward_forward_or_shape_is_refused)
{
    tg_op_spec nb = {"noback", 1, 0, shape_same, fwd_copy, NULL};
    expect_fail(tg_op_register(ctx, &nb), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "op noback has no backward");
    tg_op_spec nf = {"nofwd", 1, 0, shape_same, NULL, bwd_copy};
    expect_fail(tg_op_register(ctx, &nf), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "op nofwd has no forward");
    tg_op_spec ns = {"noshape", 1, 0, NULL, fwd_copy, bwd_copy};
    expect_fail(tg_op_register(ctx, &ns), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "op noshape has no shape function");
    cr_expect_not(tg_op_exists(ctx, "noback"));
    cr_expect_not(tg_op_exists(ctx, "nofwd"));
    cr_expect_not(tg_op_exists(ctx, "noshape"));
}

Test(api_hostile, op_names_of_the_model_language_or_not_identifiers_are_refused)
{
    static const char *const reserved[] = {
        "input", "param", "B", "t", "name", "description", "dims", "params", "inputs", "targets", "state",
        "step", "outputs", "loss", "loss_at", "final", "constants", "shape", "init", "target", "output", "dim",
        "zeros", "ones", "uniform", "normal", "xavier", "nan", "inf", "true", "false", "null",
    };
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        tg_op_spec spec = {reserved[i], 1, 0, shape_same, fwd_copy, bwd_copy};
        expect_fail(tg_op_register(ctx, &spec), TG_ERR_ARG);
        char want[200];
        snprintf(want, sizeof want, "op_register: '%s' is reserved by the model language; choose another op name",
                 reserved[i]);
        cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    static const char *const bad[] = {"", "9lives", "a-b", "x y", "h(t)", "caf\xC3\xA9", "a.b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_op_spec spec = {bad[i], 1, 0, shape_same, fwd_copy, bwd_copy};
        expect_fail(tg_op_register(ctx, &spec), TG_ERR_ARG);
        char want[200];
        snprintf(want, sizeof want, "op_register: '%s' is not a valid op name (letters, digits and _, not "
                 "starting with a digit)", bad[i]);
        cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    tg_op_spec null_name = {NULL, 1, 0, shape_same, fwd_copy, bwd_copy};
    expect_fail(tg_op_register(ctx, &null_name), TG_ERR_ARG);
    /* names that only resemble them are fine */
    tg_op_spec ok = {"inputs2", 1, 0, shape_same, fwd_copy, bwd_copy};
    cr_expect_eq(tg_op_register(ctx, &ok), TG_OK, "%s", tg_errmsg(ctx));
}

Test(api_hostile, a_parameter_of_another_context_is_refused_on_a_tape)
{
    tg_ctx *c2 = tg_ctx_new(NULL);
    tg_params *p2 = tg_params_new(c2);
    tg_tensor *w2 = tg_params_add(p2, "w", 2, 0);
    cr_assert_not_null(w2);
    tg_tensor *x = tg_input(tp, 2, 0, NULL, 0);
    tg_clear_error(ctx);
    cr_expect_null(tg_add(tp, x, w2));
    cr_expect_str_eq(tg_errmsg(ctx), "add: input 2 is a parameter of another context");
    /* one of this context is fine */
    tg_tensor *w = tg_params_add(ps, "w", 2, 0);
    cr_expect_not_null(tg_add(tp, x, w), "%s", tg_errmsg(ctx));
    /* the model unroller refuses another context's params as well */
    tg_model *m = tg_model_parse(ctx, "m", model_text, strlen(model_text), NULL, 0);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_model_init_params(m, p2, 1), TG_OK, "%s", tg_errmsg(c2));
    tg_real xs[4] = {1, 2, 3, 4};
    const tg_real *inputs[] = {xs};
    tg_unroll u = {.params = p2, .batch = 1, .steps = 2, .inputs = inputs};
    expect_fail(tg_model_unroll(m, tp, &u), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "unroll: the params belong to another context");
    tg_model_free(m);
    tg_params_free(p2);
    tg_ctx_free(c2);
}

Test(api_hostile, a_dim_named_like_an_op_or_an_init_function)
{
    /* an op's name as a dim is not ambiguous: a call has parentheses */
    const char *ok = "name: d\ndims: {tanh: 2}\nparams: {W: [tanh, tanh]}\ninputs: {x: [tanh]}\n"
                     "step:\n  - h = tanh(W @ x) * tanh\noutputs: [h]\n";
    tg_model *m = tg_model_parse(ctx, "ok.yaml", ok, strlen(ok), NULL, 0);
    cr_expect_not_null(m, "%s", tg_errmsg(ctx));
    tg_model_free(m);
    /* an init function's name as a dim hides the function: said where */
    const char *bad = "name: d\ndims: {uniform: 2}\n"
                      "params:\n  W: {shape: [uniform, uniform], init: uniform(-0.5, 0.5)}\n"
                      "inputs: {x: [uniform]}\nstep:\n  - h = tanh(W @ x)\noutputs: [h]\n";
    expect_null_msg(tg_model_parse(ctx, "bad.yaml", bad, strlen(bad), NULL, 0));
    cr_expect_str_eq(tg_errmsg(ctx), "bad.yaml:4:40: 'uniform' is a dim, so 'uniform(...)' cannot be read as a "
                                     "call here; rename the dim");
}
