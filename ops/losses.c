/* losses.c — the two losses, each fused into one op so that backward is one
 * pass and softmax cross-entropy stays finite for any logits: it works from
 * the column max and log-sum-exp, never from exp(z) itself. */
#include "ops_real.h"

static int same_two(int n, const int (*in)[2], char *err, size_t err_len, const char *what)
{
    if (ops_check_inputs(n, 2, in, err, err_len)) return -1;
    if (in[0][0] != in[1][0] || in[0][1] != in[1][1]) {
        snprintf(err, err_len, "%s differ in shape: [%d, %d] and [%d, %d]", what, in[0][0],
                 in[0][1], in[1][0], in[1][1]);
        return -1;
    }
    return 0;
}

/* L = sum (y - o)^2;  do += -2 dL (y - o),  dy += 2 dL (y - o) */
static int squared_error_shape(int n, const int (*in)[2], const double *attrs, int out[2],
                               char *err, size_t err_len)
{
    if (same_two(n, in, err, err_len, "output and target")) return -1;
    out[0] = out[1] = 1;
    return 0;
}

static void squared_error_forward(tg_tensor *out)
{
    const tg_real *restrict o = out->in[0]->val, *restrict y = out->in[1]->val;
    size_t n = tg_numel(out->in[0]);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)o[i];
        s += d * d;
    }
    out->val[0] = (tg_real)s;
}

static void squared_error_backward(tg_tensor *out)
{
    tg_tensor *o = out->in[0], *y = out->in[1];
    tg_real g2 = 2 * out->grad[0];
    size_t n = tg_numel(o);
    const tg_real *restrict ov = o->val, *restrict yv = y->val;
    /* o and y may be one tensor, so one loop per gradient */
    if (o->grad) {
        tg_real *restrict d = o->grad;
        for (size_t i = 0; i < n; i++) d[i] += g2 * (ov[i] - yv[i]);
    }
    if (y->grad) {
        tg_real *restrict d = y->grad;
        for (size_t i = 0; i < n; i++) d[i] += g2 * (yv[i] - ov[i]);
    }
}

/* L = sum_j -sum_i y_ij log p_ij,  p_.j = softmax(z_.j), lse_j = log sum_i e^z_ij;
 * dz_ij += dL (p_ij sum_k y_kj - y_ij),  dy_ij += -dL (z_ij - lse_j).
 * y need not sum to 1, so dz keeps the sum_k y_kj factor.  Scratch holds
 * p [V, B], lse [B] and one spare row [B]. */
static int softmax_cross_entropy_shape(int n, const int (*in)[2], const double *attrs,
                                       int out[2], char *err, size_t err_len)
{
    if (same_two(n, in, err, err_len, "logits and targets")) return -1;
    out[0] = out[1] = 1;
    return 0;
}

static size_t softmax_cross_entropy_scratch(const tg_tensor *out)
{
    const tg_tensor *z = out->in[0];
    return ((size_t)z->rows + 2) * (size_t)z->cols;
}

/* p = softmax of each column of z [V, B], lse_j = log sum_i e^z_ij, from the
 * column max; tot [B] is a workspace.  Row by row, so that the inner loops
 * run along memory over the batch. */
static void softmax_columns(const tg_real *restrict z, int V, int B, tg_real *restrict p,
                            tg_real *restrict lse, tg_real *restrict tot)
{
    for (int j = 0; j < B; j++) {
        lse[j] = z[j]; /* the column max, for now */
        tot[j] = 0;
    }
    for (int i = 1; i < V; i++)
        for (int j = 0; j < B; j++) {
            tg_real v = z[(size_t)i * B + j];
            lse[j] = v > lse[j] ? v : lse[j];
        }
    for (int i = 0; i < V; i++)
        for (int j = 0; j < B; j++) {
            size_t k = (size_t)i * B + j;
            p[k] = real_exp(z[k] - lse[j]);
            tot[j] += p[k];
        }
    for (int j = 0; j < B; j++) {
        lse[j] += real_log(tot[j]); /* tot >= 1: the max term is e^0 */
        tot[j] = 1 / tot[j];
    }
    for (int i = 0; i < V; i++)
        for (int j = 0; j < B; j++) p[(size_t)i * B + j] *= tot[j];
}

static void softmax_cross_entropy_forward(tg_tensor *out)
{
    const tg_tensor *zt = out->in[0], *yt = out->in[1];
    int V = zt->rows, B = zt->cols;
    const tg_real *restrict z = zt->val, *restrict y = yt->val;
    tg_real *restrict p = out->scratch, *restrict lse = p + (size_t)V * B;
    softmax_columns(z, V, B, p, lse, lse + B);
    double loss = 0;
    for (int i = 0; i < V; i++)
        for (int j = 0; j < B; j++) {
            size_t k = (size_t)i * B + j;
            loss -= (double)y[k] * ((double)z[k] - (double)lse[j]);
        }
    out->val[0] = (tg_real)loss;
}

static void softmax_cross_entropy_backward(tg_tensor *out)
{
    tg_tensor *zt = out->in[0], *yt = out->in[1];
    int V = zt->rows, B = zt->cols;
    tg_real g = out->grad[0];
    const tg_real *restrict z = zt->val, *restrict y = yt->val;
    const tg_real *restrict p = out->scratch, *restrict lse = p + (size_t)V * B;
    tg_real *restrict ysum = out->scratch + (size_t)(V + 1) * B;
    if (zt->grad) {
        tg_real *restrict dz = zt->grad;
        for (int j = 0; j < B; j++) ysum[j] = 0;
        for (int i = 0; i < V; i++)
            for (int j = 0; j < B; j++) ysum[j] += y[(size_t)i * B + j];
        for (int i = 0; i < V; i++)
            for (int j = 0; j < B; j++) {
                size_t k = (size_t)i * B + j;
                dz[k] += g * (p[k] * ysum[j] - y[k]);
            }
    }
    if (yt->grad) {
        tg_real *restrict dy = yt->grad;
        for (int i = 0; i < V; i++)
            for (int j = 0; j < B; j++) {
                size_t k = (size_t)i * B + j;
                dy[k] -= g * (z[k] - lse[j]);
            }
    }
}

const tg_builtin_op tg_op_squared_error = {
    .name = "squared_error",
    .arity = 2,
    .differentiable = true,
    .shape = squared_error_shape,
    .forward = squared_error_forward,
    .backward = squared_error_backward,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 2, .shape = {{3, 4}, {3, 4}}},
            {.n_in = 2, .shape = {{5, 1}, {5, 1}}},
            {.n_in = 2, .shape = {{1, 1}, {1, 1}}},
        },
        .tol = 1e-3,
    },
};

const tg_builtin_op tg_op_softmax_cross_entropy = {
    .name = "softmax_cross_entropy",
    .arity = 2,
    .differentiable = true,
    .shape = softmax_cross_entropy_shape,
    .forward = softmax_cross_entropy_forward,
    .backward = softmax_cross_entropy_backward,
    .scratch = softmax_cross_entropy_scratch,
    .test = {
        .n_cases = 4,
        .cases = {
            {.n_in = 2, .shape = {{5, 1}, {5, 1}}},
            {.n_in = 2, .shape = {{4, 3}, {4, 3}}}, /* a batch of 3 columns */
            {.n_in = 2, .shape = {{1, 2}, {1, 2}}}, /* one class: p = 1 */
            {.n_in = 2, .shape = {{7, 5}, {7, 5}}},
        },
        .lo = -2,
        .hi = 2,
        .tol = 1e-3,
    },
};

/* ---- with a target of class indices ---------------------------------------
 * L = sum_j (lse_j - z_(c_j) j) for classes c [1, B], what the one-hot target
 * gives without the [V, B] block of targets;  dz_ij += dL (p_ij - [i = c_j]),
 * nothing to c.  Scratch holds p [V, B], lse [B] and a spare row [B]. */
static int softmax_cross_entropy_index_shape(int n, const int (*in)[2], const double *attrs,
                                             int out[2], char *err, size_t err_len)
{
    if (ops_check_inputs(n, 2, in, err, err_len)) return -1;
    if (in[1][0] != 1 || in[1][1] != in[0][1]) {
        snprintf(err, err_len, "the class indices must be [1, %d] for logits [%d, %d], got [%d, %d]",
                 in[0][1], in[0][0], in[0][1], in[1][0], in[1][1]);
        return -1;
    }
    out[0] = out[1] = 1;
    return 0;
}

static int softmax_cross_entropy_index_check(const tg_tensor *out, char *err, size_t err_len)
{
    return tg_check_indices(out->in[1], out->in[0]->rows, "", "classes", err, err_len);
}

static void softmax_cross_entropy_index_forward(tg_tensor *out)
{
    const tg_tensor *zt = out->in[0];
    int V = zt->rows, B = zt->cols;
    const tg_real *restrict z = zt->val, *restrict c = out->in[1]->val;
    tg_real *restrict p = out->scratch, *restrict lse = p + (size_t)V * B;
    softmax_columns(z, V, B, p, lse, lse + B);
    double loss = 0;
    for (int j = 0; j < B; j++) loss += (double)lse[j] - (double)z[(size_t)c[j] * B + j];
    out->val[0] = (tg_real)loss;
}

static void softmax_cross_entropy_index_backward(tg_tensor *out)
{
    tg_tensor *zt = out->in[0];
    if (!zt->grad) return;
    int V = zt->rows, B = zt->cols;
    tg_real g = out->grad[0];
    const tg_real *restrict p = out->scratch, *restrict c = out->in[1]->val;
    tg_real *restrict dz = zt->grad;
    for (size_t k = 0, n = (size_t)V * B; k < n; k++) dz[k] += g * p[k];
    for (int j = 0; j < B; j++) dz[(size_t)c[j] * B + j] -= g;
}

const tg_builtin_op tg_op_softmax_cross_entropy_index = {
    .name = "softmax_cross_entropy_index",
    .arity = 2,
    .differentiable = true,
    .shape = softmax_cross_entropy_index_shape,
    .forward = softmax_cross_entropy_index_forward,
    .backward = softmax_cross_entropy_index_backward,
    .scratch = softmax_cross_entropy_scratch,
    .check = softmax_cross_entropy_index_check,
    .test = {
        .n_cases = 4,
        .cases = {
            {.n_in = 2, .shape = {{5, 1}, {1, 1}}},
            {.n_in = 2, .shape = {{4, 3}, {1, 3}}}, /* a batch of 3 columns */
            {.n_in = 2, .shape = {{1, 2}, {1, 2}}}, /* one class: p = 1, L = 0 */
            {.n_in = 2, .shape = {{7, 5}, {1, 5}}},
        },
        .lo = -2,
        .hi = 2,
        .tol = 1e-3,
        .constant = 1u << 1,
        .prepare = tg_test_indices,
    },
};
