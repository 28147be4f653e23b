/* reduce.c — sum and mean of every element to a 1x1, the usual last step
 * before a loss, and sum_axis and mean_axis along one axis: axis 0 reduces
 * the rows (units) of each column to [1, B], axis 1 the columns to [n, 1].
 * They add in double so that a float tensor of many elements still gives a
 * sum accurate to float precision. */
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

/* ---- along an axis -------------------------------------------------------- */

static int axis_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                      size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    if (!attrs || !(attrs[0] == 0 || attrs[0] == 1)) {
        snprintf(err, err_len, "the axis must be 0 (over the rows) or 1 (over the columns), not %g",
                 attrs ? attrs[0] : NAN);
        return -1;
    }
    out[0] = attrs[0] == 0 ? 1 : in[0][0];
    out[1] = attrs[0] == 0 ? in[0][1] : 1;
    return 0;
}

/* y = the sums along the axis, times scale (1, or 1 / the count for a mean) */
static void axis_forward(tg_tensor *out, int mean)
{
    const tg_tensor *x = out->in[0];
    const int rows = x->rows, cols = x->cols;
    const tg_real *restrict v = x->val;
    if (out->attr[0] == 0) {
        for (int j = 0; j < cols; j++) {
            double s = 0;
            for (int i = 0; i < rows; i++) s += v[(size_t)i * cols + j];
            out->val[j] = (tg_real)(mean ? s / rows : s);
        }
    } else {
        for (int i = 0; i < rows; i++) {
            double s = 0;
            for (int j = 0; j < cols; j++) s += v[(size_t)i * cols + j];
            out->val[i] = (tg_real)(mean ? s / cols : s);
        }
    }
}

/* dx_ij += dy_j (axis 0) or dy_i (axis 1), over the count for a mean */
static void axis_backward(tg_tensor *out, int mean)
{
    tg_tensor *x = out->in[0];
    tg_real *restrict dx = x->grad;
    if (!dx) return;
    const int rows = x->rows, cols = x->cols, axis0 = out->attr[0] == 0;
    const tg_real *restrict g = out->grad;
    const tg_real k = mean ? (tg_real)1 / (tg_real)(axis0 ? rows : cols) : 1;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) dx[(size_t)i * cols + j] += k * g[axis0 ? j : i];
}

/* y_j = sum_i x_ij (axis 0), y_i = sum_j x_ij (axis 1);  dx_ij += dy along the same index */
static void sum_axis_forward(tg_tensor *out) { axis_forward(out, 0); }
static void sum_axis_backward(tg_tensor *out) { axis_backward(out, 0); }
/* the same over the count: rows for axis 0, columns for axis 1 */
static void mean_axis_forward(tg_tensor *out) { axis_forward(out, 1); }
static void mean_axis_backward(tg_tensor *out) { axis_backward(out, 1); }

#define AXIS_TEST                                                                                  \
    {                                                                                              \
        .n_cases = 4,                                                                              \
        .cases = {                                                                                 \
            {.n_in = 1, .shape = {{3, 4}}, .attrs = {0}},                                          \
            {.n_in = 1, .shape = {{3, 4}}, .attrs = {1}},                                          \
            {.n_in = 1, .shape = {{6, 1}}, .attrs = {0}},                                          \
            {.n_in = 1, .shape = {{1, 5}}, .attrs = {1}},                                          \
        },                                                                                         \
        .tol = 1e-3,                                                                               \
    }

const tg_builtin_op tg_op_sum_axis = {
    .name = "sum_axis", .arity = 1, .n_attrs = 1, .differentiable = true, .shape = axis_shape,
    .forward = sum_axis_forward, .backward = sum_axis_backward, .test = AXIS_TEST,
};
const tg_builtin_op tg_op_mean_axis = {
    .name = "mean_axis", .arity = 1, .n_attrs = 1, .differentiable = true, .shape = axis_shape,
    .forward = mean_axis_forward, .backward = mean_axis_backward, .test = AXIS_TEST,
};
