/* math.c — sqrt, abs, softplus and pow(x, p): elementwise functions the
 * cells of the literature write (a norm, a rectifier, a positive rate, a
 * power).  libm at the precision of tg_real; none clamps, so a NaN from
 * sqrt(-1) reaches anomaly detection where it happened. */
#include "ops_real.h"

/* y = sqrt x;  dx += dy / (2 y)  (x = 0 gives an infinite gradient, as it must) */
static void sqrt_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    for (size_t i = 0, n = tg_numel(out); i < n; i++) y[i] = real_sqrt(x[i]);
}

static void sqrt_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    for (size_t i = 0, n = tg_numel(out); i < n; i++) dx[i] += g[i] / (2 * y[i]);
}

/* y = |x|;  dx += dy sign(x), with sign(0) = 0 (torch's subgradient) */
static void abs_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    for (size_t i = 0, n = tg_numel(out); i < n; i++) y[i] = real_abs(x[i]);
}

static void abs_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    for (size_t i = 0, n = tg_numel(out); i < n; i++)
        dx[i] += x[i] > 0 ? g[i] : x[i] < 0 ? -g[i] : 0;
}

/* y = log(1 + e^x), as x + log1p(e^-x) for x > 0 so that e^x never
 * overflows and large x gives x;  dx += dy sigmoid(x) */
static void softplus_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    for (size_t i = 0, n = tg_numel(out); i < n; i++)
        y[i] = x[i] > 0 ? x[i] + real_log1p(real_exp(-x[i])) : real_log1p(real_exp(x[i]));
}

static void softplus_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    for (size_t i = 0, n = tg_numel(out); i < n; i++) {
        tg_real e = real_exp(-real_abs(x[i])); /* sigmoid without overflow */
        dx[i] += g[i] * (x[i] >= 0 ? 1 / (1 + e) : e / (1 + e));
    }
}

/* y = x^p (p the attribute);  dx += dy p x^(p-1).  libm's pow: a negative x
 * with a p that is not a whole number gives NaN. */
static int pow_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                     size_t err_len)
{
    if (!attrs || !isfinite(attrs[0])) {
        snprintf(err, err_len, "the exponent must be a finite number, got %g", attrs ? attrs[0] : NAN);
        return -1;
    }
    return ops_unary_shape(n, in, attrs, out, err, err_len);
}

static void pow_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val, p = (tg_real)out->attr[0];
    for (size_t i = 0, n = tg_numel(out); i < n; i++) y[i] = real_pow(x[i], p);
}

static void pow_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    tg_real p = (tg_real)out->attr[0];
    if (p == 0) return; /* y = 1: 0 x^-1 would make 0 a NaN */
    for (size_t i = 0, n = tg_numel(out); i < n; i++) dx[i] += g[i] * p * real_pow(x[i], p - 1);
}

/* pow's test: a power that is not a whole number needs x > 0 */
static int prepare_pow(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    (void)n_in;
    if (attrs[0] == floor(attrs[0])) return 0;
    for (size_t k = 0; k < (size_t)shape[0][0] * (size_t)shape[0][1]; k++) v[0][k] = real_abs(v[0][k]) + (tg_real)0.5;
    return 0;
}

#define UNARY_CASES                                                                                \
    .n_cases = 3, .cases = {                                                                       \
        {.n_in = 1, .shape = {{3, 4}}},                                                            \
        {.n_in = 1, .shape = {{5, 1}}},                                                            \
        {.n_in = 1, .shape = {{1, 1}}},                                                            \
    }

const tg_builtin_op tg_op_sqrt = {
    .name = "sqrt", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = sqrt_forward, .backward = sqrt_backward,
    .test = {UNARY_CASES, .lo = 0.2, .hi = 3, .tol = 1e-3},
};
const tg_builtin_op tg_op_abs = {
    .name = "abs", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = abs_forward, .backward = abs_backward,
    .test = {UNARY_CASES, .lo = -2, .hi = 2, .kink = 0.1, .kink_at = 0, .tol = 1e-3},
};
const tg_builtin_op tg_op_softplus = {
    .name = "softplus", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = softplus_forward, .backward = softplus_backward,
    .test = {UNARY_CASES, .lo = -4, .hi = 4, .tol = 1e-3},
};
const tg_builtin_op tg_op_pow = {
    .name = "pow", .arity = 1, .n_attrs = 1, .differentiable = true, .shape = pow_shape,
    .forward = pow_forward, .backward = pow_backward,
    .test = {
        .n_cases = 4,
        .cases = {
            {.n_in = 1, .shape = {{3, 4}}, .attrs = {2}},
            {.n_in = 1, .shape = {{5, 1}}, .attrs = {3}},    /* odd: negative x too */
            {.n_in = 1, .shape = {{2, 3}}, .attrs = {0.5}},  /* x > 0 */
            {.n_in = 1, .shape = {{2, 2}}, .attrs = {-1.5}}, /* x > 0 */
        },
        .lo = -2, .hi = 2, .tol = 1e-3, .prepare = prepare_pow,
    },
};
