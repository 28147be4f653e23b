/* scale.c — an affine map with constant coefficients, so that x/2, 1 - x and
 * -x need no tensor of constants on the tape. */
#include "ops_real.h"

/* y = alpha x + beta;  dx += alpha dy */
static int scale_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                       size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    if (!attrs) {
        snprintf(err, err_len, "needs attributes alpha and beta");
        return -1;
    }
    if (!isfinite(attrs[0]) || !isfinite(attrs[1])) {
        snprintf(err, err_len, "alpha and beta must be finite, got %g and %g", attrs[0], attrs[1]);
        return -1;
    }
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}

static void scale_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    tg_real alpha = (tg_real)out->attr[0], beta = (tg_real)out->attr[1];
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta;
}

static void scale_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict g = out->grad;
    tg_real alpha = (tg_real)out->attr[0];
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += alpha * g[i];
}

const tg_builtin_op tg_op_scale = {
    .name = "scale",
    .arity = 1,
    .n_attrs = 2,
    .differentiable = true,
    .shape = scale_shape,
    .forward = scale_forward,
    .backward = scale_backward,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 1, .shape = {{3, 4}}, .attrs = {1.5, -0.5}},
            {.n_in = 1, .shape = {{4, 1}}, .attrs = {-2.0, 3.0}},
            {.n_in = 1, .shape = {{2, 3}}, .attrs = {0.0, 1.0}}, /* constant: zero gradient */
        },
        .tol = 1e-3,
    },
};
