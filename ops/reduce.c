/* reduce.c — sum and mean of every element to a 1x1, the usual last step
 * before a loss.  They add in double so that a float tensor of many elements
 * still gives a sum accurate to float precision. */
#include "ops_real.h"

static int scalar_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                        size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    out[0] = out[1] = 1;
    return 0;
}

static double total(const tg_tensor *t)
{
    const tg_real *restrict x = t->val;
    size_t n = tg_numel(t);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

/* every element gets the same upstream gradient g */
static void spread(tg_tensor *t, tg_real g)
{
    tg_real *restrict dx = t->grad;
    if (!dx) return;
    size_t n = tg_numel(t);
    for (size_t i = 0; i < n; i++) dx[i] += g;
}

/* y = sum_i x_i;  dx_i += dy */
static void sum_forward(tg_tensor *out) { out->val[0] = (tg_real)total(out->in[0]); }
static void sum_backward(tg_tensor *out) { spread(out->in[0], out->grad[0]); }

/* y = (1/n) sum_i x_i;  dx_i += dy / n */
static void mean_forward(tg_tensor *out)
{
    out->val[0] = (tg_real)(total(out->in[0]) / (double)tg_numel(out->in[0]));
}
static void mean_backward(tg_tensor *out)
{
    spread(out->in[0], (tg_real)(out->grad[0] / (double)tg_numel(out->in[0])));
}

#define REDUCE_TEST                                                                                \
    {                                                                                              \
        .n_cases = 3,                                                                              \
        .cases = {                                                                                 \
            {.n_in = 1, .shape = {{3, 4}}},                                                        \
            {.n_in = 1, .shape = {{6, 1}}},                                                        \
            {.n_in = 1, .shape = {{1, 1}}},                                                        \
        },                                                                                         \
        .tol = 1e-3,                                                                               \
    }

const tg_builtin_op tg_op_sum = {
    .name = "sum", .arity = 1, .differentiable = true, .shape = scalar_shape,
    .forward = sum_forward, .backward = sum_backward, .test = REDUCE_TEST,
};
const tg_builtin_op tg_op_mean = {
    .name = "mean", .arity = 1, .differentiable = true, .shape = scalar_shape,
    .forward = mean_forward, .backward = mean_backward, .test = REDUCE_TEST,
};
