/* shape.c — ops that only move values: concat (stack rows), slice (a block
 * of rows) and transpose.  Rows are contiguous in row-major order, so concat
 * and slice are block copies. */
#include "ops_real.h"
#include <limits.h>

/* y = [a_0; a_1; ...];  da_k += the rows of dy that came from a_k */
static int concat_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                        size_t err_len)
{
    if (ops_check_inputs(n, -1, in, err, err_len)) return -1;
    long long rows = 0;
    for (int i = 0; i < n; i++) {
        if (in[i][1] != in[0][1]) {
            snprintf(err, err_len, "columns differ: input 0 is [%d, %d] but input %d is [%d, %d]",
                     in[0][0], in[0][1], i, in[i][0], in[i][1]);
            return -1;
        }
        rows += in[i][0];
        if (rows > INT_MAX) {
            snprintf(err, err_len, "more than %d rows in all", INT_MAX);
            return -1;
        }
    }
    out[0] = (int)rows;
    out[1] = in[0][1];
    return 0;
}

static void concat_forward(tg_tensor *out)
{
    tg_real *y = out->val;
    for (int i = 0; i < out->n_in; i++) {
        size_t n = tg_numel(out->in[i]);
        memcpy(y, out->in[i]->val, n * sizeof *y);
        y += n;
    }
}

static void concat_backward(tg_tensor *out)
{
    const tg_real *g = out->grad;
    for (int i = 0; i < out->n_in; i++) {
        size_t n = tg_numel(out->in[i]);
        tg_real *restrict dx = out->in[i]->grad;
        const tg_real *restrict gi = g;
        if (dx)
            for (size_t k = 0; k < n; k++) dx[k] += gi[k];
        g += n;
    }
}

/* y = a[start : start + count, :];  da[start : start + count, :] += dy */
static int slice_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                       size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    if (!attrs) {
        snprintf(err, err_len, "needs attributes start and count");
        return -1;
    }
    double start = attrs[0], count = attrs[1];
    /* compare in double: a huge or fractional attribute must not wrap an int */
    if (!(start == floor(start) && count == floor(count))) {
        snprintf(err, err_len, "start and count must be integers, got %g and %g", start, count);
        return -1;
    }
    if (count < 1) {
        snprintf(err, err_len, "count must be at least 1, got %.0f", count);
        return -1;
    }
    if (start < 0 || start + count > in[0][0]) {
        snprintf(err, err_len, "rows [%.0f, %.0f) out of range for [%d, %d]", start,
                 start + count, in[0][0], in[0][1]);
        return -1;
    }
    out[0] = (int)count;
    out[1] = in[0][1];
    return 0;
}

static void slice_forward(tg_tensor *out)
{
    const tg_tensor *a = out->in[0];
    size_t start = (size_t)out->attr[0];
    memcpy(out->val, a->val + start * (size_t)a->cols, tg_numel(out) * sizeof *out->val);
}

static void slice_backward(tg_tensor *out)
{
    tg_tensor *a = out->in[0];
    if (!a->grad) return;
    size_t start = (size_t)out->attr[0], n = tg_numel(out);
    tg_real *restrict dx = a->grad + start * (size_t)a->cols;
    const tg_real *restrict g = out->grad;
    for (size_t k = 0; k < n; k++) dx[k] += g[k];
}

/* y = a^T;  da += dy^T */
static int transpose_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                           size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    out[0] = in[0][1];
    out[1] = in[0][0];
    return 0;
}

static void transpose_forward(tg_tensor *out)
{
    const tg_tensor *a = out->in[0];
    int r = a->rows, c = a->cols;
    const tg_real *restrict x = a->val;
    tg_real *restrict y = out->val;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) y[(size_t)j * r + i] = x[(size_t)i * c + j];
}

static void transpose_backward(tg_tensor *out)
{
    tg_tensor *a = out->in[0];
    if (!a->grad) return;
    int r = a->rows, c = a->cols;
    tg_real *restrict dx = a->grad;
    const tg_real *restrict g = out->grad;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) dx[(size_t)i * c + j] += g[(size_t)j * r + i];
}

const tg_builtin_op tg_op_concat = {
    .name = "concat",
    .arity = -1,
    .differentiable = true,
    .shape = concat_shape,
    .forward = concat_forward,
    .backward = concat_backward,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 2, .shape = {{2, 3}, {4, 3}}},
            {.n_in = 3, .shape = {{1, 2}, {3, 2}, {2, 2}}},
            {.n_in = 1, .shape = {{3, 1}}},
        },
        .tol = 1e-3,
    },
};

const tg_builtin_op tg_op_slice = {
    .name = "slice",
    .arity = 1,
    .n_attrs = 2,
    .differentiable = true,
    .shape = slice_shape,
    .forward = slice_forward,
    .backward = slice_backward,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 1, .shape = {{5, 3}}, .attrs = {1, 3}},
            {.n_in = 1, .shape = {{4, 2}}, .attrs = {0, 4}}, /* the whole tensor */
            {.n_in = 1, .shape = {{6, 1}}, .attrs = {5, 1}}, /* the last row */
        },
        .tol = 1e-3,
    },
};

const tg_builtin_op tg_op_transpose = {
    .name = "transpose",
    .arity = 1,
    .differentiable = true,
    .shape = transpose_shape,
    .forward = transpose_forward,
    .backward = transpose_backward,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 1, .shape = {{3, 4}}},
            {.n_in = 1, .shape = {{1, 5}}},
            {.n_in = 1, .shape = {{5, 1}}},
        },
        .tol = 1e-3,
    },
};
