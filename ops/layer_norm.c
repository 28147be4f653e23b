/* layer_norm.c — layer normalisation (Ba, Kiros and Hinton, 2016) as one
 * entry: each column of x [n, B] normalised over its n rows, then times
 * gain [n] plus bias [n].  Written out of primitives it costs a dozen
 * entries and their buffers per use (a mean is a matmul by ones); fused, the
 * statistics are taken in double and backward is the closed form below.
 *
 * Attribute: eps, added to the variance (the biased one, 1/n, as torch).
 *
 * layer_norm_act is the same followed by an activation, attributes eps and
 * the activation (0 none, 1 tanh, 2 sigmoid, as affine's): the model
 * compiler fuses sigmoid(layer_norm(..)) into it (models/fuse.c), so that a
 * layer-normalised gate keeps one value instead of two.  Backward forms
 * dy act'(y) from y, element by element, as the tanh and sigmoid ops do. */
#include "ops_real.h"

enum { ACT_NONE, ACT_TANH, ACT_SIGMOID };

static int layer_norm_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                            size_t err_len)
{
    if (ops_check_inputs(n, 3, in, err, err_len)) return -1;
    if (!attrs || !(attrs[0] >= 0 && isfinite(attrs[0]))) {
        snprintf(err, err_len, "eps must be a finite number >= 0, got %g", attrs ? attrs[0] : NAN);
        return -1;
    }
    for (int i = 1; i < 3; i++)
        if (in[i][0] != in[0][0] || in[i][1] != 1) {
            snprintf(err, err_len, "the %s is [%d, %d]; for x [%d, %d] it must be [%d]",
                     i == 1 ? "gain" : "bias", in[i][0], in[i][1], in[0][0], in[0][1], in[0][0]);
            return -1;
        }
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}

/* scratch: xhat [n, B], then 1/sigma [B] */
static size_t layer_norm_scratch(const tg_tensor *out) { return tg_numel(out) + (size_t)out->cols; }

static int layer_norm_act_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                                size_t err_len)
{
    if (attrs && !(attrs[1] == ACT_NONE || attrs[1] == ACT_TANH || attrs[1] == ACT_SIGMOID)) {
        snprintf(err, err_len, "the activation must be 0 (none), 1 (tanh) or 2 (sigmoid), not %g", attrs[1]);
        return -1;
    }
    return layer_norm_shape(n, in, attrs, out, err, err_len);
}

/* mu_j = mean_i x_ij,  sigma_j = sqrt(mean_i (x_ij - mu_j)^2 + eps),
 * xhat = (x - mu) / sigma,  y = act(gain xhat + bias) */
static void layer_norm_forward(tg_tensor *out, int act)
{
    const tg_tensor *x = out->in[0];
    const int n = x->rows, B = x->cols;
    const tg_real *restrict v = x->val, *restrict gain = out->in[1]->val, *restrict bias = out->in[2]->val;
    tg_real *restrict xhat = out->scratch, *restrict rstd = out->scratch + tg_numel(out), *restrict y = out->val;
    const double eps = out->attr[0];
    for (int j = 0; j < B; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += v[(size_t)i * B + j];
        const double mu = s / n;
        double ss = 0;
        for (int i = 0; i < n; i++) {
            double d = v[(size_t)i * B + j] - mu;
            ss += d * d;
        }
        const double r = 1 / sqrt(ss / n + eps);
        rstd[j] = (tg_real)r;
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)i * B + j;
            xhat[k] = (tg_real)((v[k] - mu) * r);
            y[k] = gain[i] * xhat[k] + bias[i];
        }
    }
    if (act == ACT_TANH) tg_tanh_inplace(y, tg_numel(out));
    else if (act == ACT_SIGMOID) tg_sigmoid_inplace(y, tg_numel(out));
}

/* dy act'(y) at element k: the upstream gradient of gain xhat + bias */
static inline tg_real pre_grad(int act, const tg_real *g, const tg_real *y, size_t k)
{
    switch (act) {
    case ACT_TANH: return g[k] * (1 - y[k] * y[k]);
    case ACT_SIGMOID: return g[k] * y[k] * (1 - y[k]);
    default: return g[k];
    }
}

/* With dz = dy act'(y) (dy without an activation) and dxhat = gain dz, per
 * column:
 *   dx += (1/sigma) (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
 *   dgain += sum_j dz xhat,  dbias += sum_j dz.
 * Gradients are only added to, never read, so x and gain may be one tensor. */
static void layer_norm_backward(tg_tensor *out, int act)
{
    tg_tensor *x = out->in[0], *gt = out->in[1], *bt = out->in[2];
    const int n = x->rows, B = x->cols;
    const tg_real *restrict dy = out->grad, *restrict y = out->val, *restrict gain = gt->val;
    const tg_real *restrict xhat = out->scratch, *restrict rstd = out->scratch + tg_numel(out);
    tg_real *dx = x->grad, *dgain = gt->grad, *dbias = bt->grad;
    if (dx)
        for (int j = 0; j < B; j++) {
            double m1 = 0, m2 = 0;
            for (int i = 0; i < n; i++) {
                size_t k = (size_t)i * B + j;
                double d = (double)gain[i] * pre_grad(act, dy, y, k);
                m1 += d;
                m2 += d * xhat[k];
            }
            m1 /= n, m2 /= n;
            for (int i = 0; i < n; i++) {
                size_t k = (size_t)i * B + j;
                dx[k] += (tg_real)(rstd[j] * ((double)gain[i] * pre_grad(act, dy, y, k) - m1 - xhat[k] * m2));
            }
        }
    if (dgain || dbias)
        for (int i = 0; i < n; i++) {
            double sg = 0, sb = 0;
            for (int j = 0; j < B; j++) {
                size_t k = (size_t)i * B + j;
                tg_real d = pre_grad(act, dy, y, k);
                sg += (double)d * xhat[k];
                sb += d;
            }
            if (dgain) dgain[i] += (tg_real)sg;
            if (dbias) dbias[i] += (tg_real)sb;
        }
}

/* y = gain xhat + bias (above) */
static void ln_forward(tg_tensor *out) { layer_norm_forward(out, ACT_NONE); }
static void ln_backward(tg_tensor *out) { layer_norm_backward(out, ACT_NONE); }
/* y = act(gain xhat + bias) */
static void ln_act_forward(tg_tensor *out) { layer_norm_forward(out, (int)out->attr[1]); }
static void ln_act_backward(tg_tensor *out) { layer_norm_backward(out, (int)out->attr[1]); }

const tg_builtin_op tg_op_layer_norm = {
    .name = "layer_norm", .arity = 3, .n_attrs = 1, .differentiable = true,
    .shape = layer_norm_shape, .forward = ln_forward, .backward = ln_backward,
    .scratch = layer_norm_scratch,
    .test = {
        .n_cases = 4,
        .cases = {
            {.n_in = 3, .shape = {{5, 3}, {5, 1}, {5, 1}}, .attrs = {1e-5}},
            {.n_in = 3, .shape = {{4, 1}, {4, 1}, {4, 1}}, .attrs = {1e-5}},
            {.n_in = 3, .shape = {{3, 4}, {3, 1}, {3, 1}}, .attrs = {0.5}},
            {.n_in = 3, .shape = {{1, 2}, {1, 1}, {1, 1}}, .attrs = {1e-3}}, /* n = 1: y = bias */
        },
        .lo = -2, .hi = 2, .tol = 1e-3,
    },
};

const tg_builtin_op tg_op_layer_norm_act = {
    .name = "layer_norm_act", .arity = 3, .n_attrs = 2, .differentiable = true,
    .shape = layer_norm_act_shape, .forward = ln_act_forward, .backward = ln_act_backward,
    .scratch = layer_norm_scratch,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 3, .shape = {{5, 3}, {5, 1}, {5, 1}}, .attrs = {1e-5, ACT_SIGMOID}},
            {.n_in = 3, .shape = {{4, 2}, {4, 1}, {4, 1}}, .attrs = {1e-5, ACT_TANH}},
            {.n_in = 3, .shape = {{3, 1}, {3, 1}, {3, 1}}, .attrs = {0.1, ACT_NONE}},
        },
        .lo = -2, .hi = 2, .tol = 1e-3,
    },
};
