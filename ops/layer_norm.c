/* layer_norm.c — layer normalisation (Ba, Kiros and Hinton, 2016) as one
 * entry: each column of x [n, B] normalised over its n rows, then times
 * gain [n] plus bias [n].  Written out of primitives it costs a dozen
 * entries and their buffers per use (a mean is a matmul by ones); fused, the
 * statistics are taken in double and backward is the closed form below.
 *
 * Attribute: eps, added to the variance (the biased one, 1/n, as torch).
 *
 * layer_norm_act is act(layer_norm(A1 x1 + ... + Ap xp + t1 + ... + tq,
 * gain, bias)): the model compiler fuses a layer-normalised gate into it
 * (models/fuse.c), the sum of its products as affine does (ops/affine.c)
 * and the activation after it, so that the gate keeps one value instead of
 * three.  Inputs: the p pairs, the q terms ([m, n] or a bias [m, 1]; with
 * no products one of them [m, n]), then gain and bias.  Attributes: p, eps,
 * the activation (0 none, 1 tanh, 2 sigmoid, as affine's).  Backward forms
 * dy act'(y) from y, element by element, as the tanh and sigmoid ops do. */
#include "gemm.h"

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

/* scratch: xhat [n, B], then 1/sigma [B]; layer_norm_act of a sum keeps a
 * third part, [n, B], for the gradient of the sum during backward */
static size_t layer_norm_scratch(const tg_tensor *out) { return tg_numel(out) + (size_t)out->cols; }
static int summed(const tg_tensor *out) { return out->attr[0] > 0 || out->n_in > 3; }
static size_t layer_norm_act_scratch(const tg_tensor *out)
{
    return layer_norm_scratch(out) + (summed(out) ? tg_numel(out) : 0);
}

static int layer_norm_act_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                                size_t err_len)
{
    if (ops_check_inputs(n, -1, in, err, err_len)) return -1;
    double p = attrs[0], eps = attrs[1], act = attrs[2];
    if (n < 3 || !(p >= 0 && p <= (n - 2) / 2 && p == (int)p) || (p == 0 && n < 3)) {
        snprintf(err, err_len, "takes products and terms, then gain and bias: %d inputs with %g products do not fit",
                 n, p);
        return -1;
    }
    if (!(eps >= 0 && isfinite(eps))) {
        snprintf(err, err_len, "eps must be a finite number >= 0, got %g", eps);
        return -1;
    }
    if (!(act == ACT_NONE || act == ACT_TANH || act == ACT_SIGMOID)) {
        snprintf(err, err_len, "the activation must be 0 (none), 1 (tanh) or 2 (sigmoid), not %g", act);
        return -1;
    }
    const int np = (int)p, nsum = n - 2;
    if (np == 0 && nsum < 1) {
        snprintf(err, err_len, "no products and no terms to normalise");
        return -1;
    }
    int rows = in[0][0], cols = np ? in[1][1] : 0;
    for (int i = 0; !np && i < nsum; i++) cols = in[i][1] > cols ? in[i][1] : cols;
    for (int i = 0; i < np; i++) {
        const int *a = in[2 * i], *x = in[2 * i + 1];
        if (a[1] != x[0] || a[0] != rows || x[1] != cols) {
            snprintf(err, err_len, "product %d is [%d, %d] @ [%d, %d]; the first gives [%d, %d]", i + 1, a[0], a[1],
                     x[0], x[1], rows, cols);
            return -1;
        }
    }
    for (int i = 2 * np; i < nsum; i++)
        if (in[i][0] != rows || (in[i][1] != cols && in[i][1] != 1)) {
            snprintf(err, err_len, "term %d is [%d, %d]; it must be [%d, %d] or [%d, 1]", i - 2 * np + 1, in[i][0],
                     in[i][1], rows, cols, rows);
            return -1;
        }
    for (int i = nsum; i < n; i++)
        if (in[i][0] != rows || in[i][1] != 1) {
            snprintf(err, err_len, "the %s is [%d, %d]; it must be [%d]", i == nsum ? "gain" : "bias", in[i][0],
                     in[i][1], rows);
            return -1;
        }
    out[0] = rows;
    out[1] = cols;
    return 0;
}

/* mu_j = mean_i x_ij,  sigma_j = sqrt(mean_i (x_ij - mu_j)^2 + eps),
 * xhat = (x - mu) / sigma,  y = act(gain xhat + bias) */
static void layer_norm_forward(tg_tensor *out, const tg_real *v, const tg_tensor *gt, const tg_tensor *bt,
                               double eps, int act)
{
    const int n = out->rows, B = out->cols;
    const tg_real *restrict gain = gt->val, *restrict bias = bt->val;
    tg_real *restrict xhat = out->scratch, *restrict rstd = out->scratch + tg_numel(out), *y = out->val;
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
static void layer_norm_backward(tg_tensor *out, tg_real *dx, tg_tensor *gt, tg_tensor *bt, int act)
{
    const int n = out->rows, B = out->cols;
    const tg_real *restrict dy = out->grad, *restrict y = out->val, *restrict gain = gt->val;
    const tg_real *restrict xhat = out->scratch, *restrict rstd = out->scratch + tg_numel(out);
    tg_real *dgain = gt->grad, *dbias = bt->grad;
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
static void ln_forward(tg_tensor *out)
{
    layer_norm_forward(out, out->in[0]->val, out->in[1], out->in[2], out->attr[0], ACT_NONE);
}
static void ln_backward(tg_tensor *out) { layer_norm_backward(out, out->in[0]->grad, out->in[1], out->in[2], ACT_NONE); }

/* y = act(layer_norm(sum)): the sum is formed in y and normalised in place */
static void ln_act_forward(tg_tensor *out)
{
    const int np = (int)out->attr[0], nsum = out->n_in - 2, m = out->rows, n = out->cols;
    const tg_tensor *gt = out->in[nsum], *bt = out->in[nsum + 1];
    if (!summed(out)) {
        layer_norm_forward(out, out->in[0]->val, gt, bt, out->attr[1], (int)out->attr[2]);
        return;
    }
    tg_real *restrict y = out->val;
    if (!np) memset(y, 0, tg_numel(out) * sizeof *y);
    for (int i = 0; i < np; i++) {
        const tg_tensor *a = out->in[2 * i], *x = out->in[2 * i + 1];
        tg_mm_forward(out->op->ctx, m, n, a->cols, a->val, x->val, y, i > 0);
    }
    for (int i = 2 * np; i < nsum; i++) {
        const tg_tensor *t = out->in[i];
        const tg_real *restrict v = t->val;
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++) y[(size_t)r * n + j] += v[t->cols == n ? (size_t)r * n + j : (size_t)r];
    }
    layer_norm_forward(out, y, gt, bt, out->attr[1], (int)out->attr[2]);
}

/* The gradient of the sum is formed in scratch, then handed to its
 * products and terms as affine does. */
static void ln_act_backward(tg_tensor *out)
{
    const int np = (int)out->attr[0], nsum = out->n_in - 2, m = out->rows, n = out->cols, act = (int)out->attr[2];
    tg_tensor *gt = out->in[nsum], *bt = out->in[nsum + 1];
    if (!summed(out)) {
        layer_norm_backward(out, out->in[0]->grad, gt, bt, act);
        return;
    }
    const size_t len = tg_numel(out);
    tg_real *restrict d = out->scratch + layer_norm_scratch(out);
    memset(d, 0, len * sizeof *d);
    layer_norm_backward(out, d, gt, bt, act);
    for (int i = 0; i < np; i++) {
        tg_tensor *a = out->in[2 * i], *x = out->in[2 * i + 1];
        if (a->grad || x->grad) tg_mm_backward(out->op->ctx, m, n, a->cols, a->val, x->val, d, a->grad, x->grad);
    }
    for (int i = 2 * np; i < nsum; i++) {
        tg_real *restrict dt = out->in[i]->grad;
        if (!dt) continue;
        if (out->in[i]->cols == n) {
            for (size_t j = 0; j < len; j++) dt[j] += d[j];
        } else {
            for (int r = 0; r < m; r++) {
                tg_real s = 0;
                for (int j = 0; j < n; j++) s += d[(size_t)r * n + j];
                dt[r] += s;
            }
        }
    }
}

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
    .name = "layer_norm_act", .arity = -1, .n_attrs = 3, .differentiable = true,
    .shape = layer_norm_act_shape, .forward = ln_act_forward, .backward = ln_act_backward,
    .scratch = layer_norm_act_scratch,
    .test = {
        .n_cases = 5,
        .cases = {
            /* act(layer_norm(x)) */
            {.n_in = 3, .shape = {{5, 3}, {5, 1}, {5, 1}}, .attrs = {0, 1e-5, ACT_SIGMOID}},
            {.n_in = 3, .shape = {{3, 1}, {3, 1}, {3, 1}}, .attrs = {0, 0.1, ACT_NONE}},
            /* a gate: tanh(layer_norm(U x + W h + b)) */
            {.n_in = 7, .shape = {{4, 2}, {2, 3}, {4, 4}, {4, 3}, {4, 1}, {4, 1}, {4, 1}},
             .attrs = {2, 1e-5, ACT_TANH}},
            /* one product, no terms, a batch of one */
            {.n_in = 4, .shape = {{5, 3}, {3, 1}, {5, 1}, {5, 1}}, .attrs = {1, 1e-3, ACT_SIGMOID}},
            /* terms only, a full one and a bias */
            {.n_in = 4, .shape = {{3, 1}, {3, 2}, {3, 1}, {3, 1}}, .attrs = {0, 1e-5, ACT_NONE}},
        },
        .lo = -2, .hi = 2, .tol = 1e-3,
    },
};
