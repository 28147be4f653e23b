/* unary.c — the elementwise nonlinearities.  Where the derivative is a
 * function of the output (tanh, sigmoid, exp), backward reads the saved
 * output instead of evaluating the function again. */
#include "ops_real.h"

static int same_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                      size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}

/* y = tanh x;  dx += dy (1 - y^2) */
static void tanh_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = real_tanh(x[i]);
}

static void tanh_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] * (1 - y[i] * y[i]);
}

/* y = 1 / (1 + e^-x);  dx += dy y (1 - y).  exp(-|x|) never overflows, and
 * the two branches are the same function on either side of 0. */
static void sigmoid_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) {
        tg_real e = real_exp(-real_abs(x[i]));
        tg_real r = 1 / (1 + e);
        y[i] = x[i] >= 0 ? r : e * r;
    }
}

static void sigmoid_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] * y[i] * (1 - y[i]);
}

/* y = max(x, 0);  dx += dy [x > 0]  (the subgradient at 0 is 0).  Written
 * as x < 0 ? 0 : x so that a NaN passes through for anomaly detection. */
static void relu_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i];
}

static void relu_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0 ? g[i] : 0;
}

/* y = e^x;  dx += dy y */
static void exp_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = real_exp(x[i]);
}

static void exp_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] * y[i];
}

/* y = ln x;  dx += dy / x.  x <= 0 gives -inf or NaN on purpose: anomaly
 * detection reports it where it happened, a clamp would hide it. */
static void log_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = real_log(x[i]);
}

static void log_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] / x[i];
}

#define UNARY_CASES                                                                                \
    .n_cases = 3, .cases = {                                                                       \
        {.n_in = 1, .shape = {{3, 4}}},                                                            \
        {.n_in = 1, .shape = {{5, 1}}},                                                            \
        {.n_in = 1, .shape = {{1, 1}}},                                                            \
    }

const tg_builtin_op tg_op_tanh = {
    .name = "tanh", .arity = 1, .differentiable = true, .shape = same_shape,
    .forward = tanh_forward, .backward = tanh_backward,
    .test = {UNARY_CASES, .lo = -3, .hi = 3, .tol = 1e-3},
};
const tg_builtin_op tg_op_sigmoid = {
    .name = "sigmoid", .arity = 1, .differentiable = true, .shape = same_shape,
    .forward = sigmoid_forward, .backward = sigmoid_backward,
    .test = {UNARY_CASES, .lo = -4, .hi = 4, .tol = 1e-3},
};
const tg_builtin_op tg_op_relu = {
    .name = "relu", .arity = 1, .differentiable = true, .shape = same_shape,
    .forward = relu_forward, .backward = relu_backward,
    .test = {UNARY_CASES, .kink = 0.05, .kink_at = 0, .tol = 1e-3},
};
const tg_builtin_op tg_op_exp = {
    .name = "exp", .arity = 1, .differentiable = true, .shape = same_shape,
    .forward = exp_forward, .backward = exp_backward,
    .test = {UNARY_CASES, .lo = -2, .hi = 2, .tol = 1e-3},
};
const tg_builtin_op tg_op_log = {
    .name = "log", .arity = 1, .differentiable = true, .shape = same_shape,
    .forward = log_forward, .backward = log_backward,
    .test = {UNARY_CASES, .lo = 0.5, .hi = 2, .tol = 1e-3},
};
