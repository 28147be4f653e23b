/* dropout.c — inverted dropout (Srivastava et al., 2014): on a training tape
 * (tg_tape_set_training) each element is kept with probability 1 - p and
 * scaled by 1 / (1 - p), so that nothing changes at evaluation time, where
 * the op is the identity.  The mask is drawn from the context's generator
 * while the entry is recorded, so a run reproduces from its seed, and kept
 * in the entry's scratch for backward.
 *
 * Attribute: p, the probability of dropping, in [0, 1). */
#include "ops_real.h"

static int dropout_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                         size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    if (!attrs || !(attrs[0] >= 0 && attrs[0] < 1)) {
        snprintf(err, err_len, "the probability of dropping must be in [0, 1), got %g", attrs ? attrs[0] : NAN);
        return -1;
    }
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}

static int active(const tg_tensor *out) { return out->train && out->attr[0] > 0; }

/* the mask m, one value per element: 0 or 1 / (1 - p) */
static size_t dropout_scratch(const tg_tensor *out) { return active(out) ? tg_numel(out) : 0; }

/* y = m x;  dx += m dy  (m = 1 when inactive) */
static void dropout_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    const size_t n = tg_numel(out);
    if (!active(out)) {
        memcpy(y, x, n * sizeof *y);
        return;
    }
    tg_ctx *ctx = out->op->ctx;
    const double p = out->attr[0];
    const tg_real keep = (tg_real)(1 / (1 - p));
    tg_real *restrict m = out->scratch;
    for (size_t i = 0; i < n; i++) {
        m[i] = tg_rand_uniform(ctx) >= p ? keep : 0;
        y[i] = m[i] * x[i];
    }
}

static void dropout_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict g = out->grad;
    const size_t n = tg_numel(out);
    if (!active(out)) {
        for (size_t i = 0; i < n; i++) dx[i] += g[i];
        return;
    }
    const tg_real *restrict m = out->scratch;
    for (size_t i = 0; i < n; i++) dx[i] += m[i] * g[i];
}

const tg_builtin_op tg_op_dropout = {
    .name = "dropout", .arity = 1, .n_attrs = 1, .differentiable = true,
    .shape = dropout_shape, .forward = dropout_forward, .backward = dropout_backward,
    .scratch = dropout_scratch,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 1, .shape = {{6, 4}}, .attrs = {0.5}},
            {.n_in = 1, .shape = {{5, 1}}, .attrs = {0.2}},
            {.n_in = 1, .shape = {{3, 3}}, .attrs = {0}},
        },
        .tol = 1e-3, .training = true, /* the mask reseeded alike for every evaluation */
    },
};
