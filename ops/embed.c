/* embed.c — an embedding table: embed(E, idx) takes rows idx_1..idx_B of
 * E [vocab, n] as the columns of an [n, B] block, what a one-hot input times
 * E^T gives, without the vocab-sized vector or product.  Indices are reals
 * holding whole numbers from 0 to vocab - 1, checked before forward runs
 * (tg_check_indices, shared with softmax_cross_entropy_index). */
#include "ops_real.h"

int tg_check_indices(const tg_tensor *idx, int limit, const char *pre, const char *post, char *err,
                     size_t err_len)
{
    const tg_real *v = idx->val;
    for (size_t j = 0, n = tg_numel(idx); j < n; j++) {
        double x = (double)v[j];
        if (!(x == floor(x))) { /* also a NaN or an infinity */
            snprintf(err, err_len, "index %g in column %zu is not a whole number", x, j + 1);
            return -1;
        }
        if (x < 0 || x >= limit) {
            snprintf(err, err_len, "index %g in column %zu is out of range for %s%d %s (0 to %d)", x, j + 1,
                     pre, limit, post, limit - 1);
            return -1;
        }
    }
    return 0;
}

static int embed_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                       size_t err_len)
{
    if (ops_check_inputs(n, 2, in, err, err_len)) return -1;
    if (in[1][0] != 1) {
        snprintf(err, err_len, "the indices must be one row [1, B], got [%d, %d]", in[1][0], in[1][1]);
        return -1;
    }
    out[0] = in[0][1];
    out[1] = in[1][1];
    return 0;
}

static int embed_check(const tg_tensor *out, char *err, size_t err_len)
{
    return tg_check_indices(out->in[1], out->in[0]->rows, "a table of ", "rows", err, err_len);
}

/* y_rj = E_(idx_j) r;  dE_(idx_j) r += dy_rj  (a repeated index adds up), nothing to idx */
static void embed_forward(tg_tensor *out)
{
    const tg_tensor *E = out->in[0];
    const tg_real *restrict idx = out->in[1]->val;
    const int n = E->cols, B = out->cols;
    tg_real *restrict y = out->val;
    for (int j = 0; j < B; j++) {
        const tg_real *restrict row = E->val + (size_t)idx[j] * (size_t)n;
        for (int r = 0; r < n; r++) y[(size_t)r * B + j] = row[r];
    }
}

static void embed_backward(tg_tensor *out)
{
    tg_tensor *E = out->in[0];
    if (!E->grad) return;
    const tg_real *idx = out->in[1]->val, *restrict g = out->grad;
    const int n = E->cols, B = out->cols;
    for (int j = 0; j < B; j++) {
        tg_real *restrict d = E->grad + (size_t)idx[j] * (size_t)n;
        for (int r = 0; r < n; r++) d[r] += g[(size_t)r * B + j];
    }
}

/* The op-table test's indices: whole numbers from 0 to rows - 1 of input 0
 * (a table, or the logits of softmax_cross_entropy_index), repeats likely. */
int tg_test_indices(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    (void)n_in, (void)attrs;
    for (int j = 0; j < shape[1][1]; j++) {
        int k = (int)floor(((double)v[1][j] + 1) / 2 * shape[0][0]);
        v[1][j] = (tg_real)(k < 0 ? 0 : k >= shape[0][0] ? shape[0][0] - 1 : k);
    }
    return 0;
}

const tg_builtin_op tg_op_embed = {
    .name = "embed", .arity = 2, .differentiable = true, .shape = embed_shape,
    .forward = embed_forward, .backward = embed_backward, .check = embed_check,
    .test = {
        .n_cases = 3,
        .cases = {
            {.n_in = 2, .shape = {{4, 3}, {1, 6}}}, /* 6 draws from 4 rows: repeats */
            {.n_in = 2, .shape = {{5, 2}, {1, 1}}},
            {.n_in = 2, .shape = {{1, 4}, {1, 3}}}, /* one row, used three times */
        },
        .tol = 1e-3, .constant = 1u << 1, .prepare = tg_test_indices,
    },
};
