/* compare.c — the comparisons eq ne lt le gt ge, giving masks of 0 and 1,
 * and where(c, a, b), which picks a where c is not 0 and b elsewhere.  All
 * broadcast a dimension of 1 as add and mul do.  A mask is a constant as far
 * as gradients go: comparisons are recorded as not differentiable (no
 * backward), and where sends no gradient to c.  A NaN compares false in
 * all but ne, as in C; where counts a NaN in c as not 0. */
#include "ops_real.h"

enum { EQ, NE, LT, LE, GT, GE };

static inline tg_real compare(int kind, tg_real a, tg_real b)
{
    switch (kind) {
    case EQ: return a == b;
    case NE: return a != b;
    case LT: return a < b;
    case LE: return a <= b;
    case GT: return a > b;
    default: return a >= b;
    }
}

static inline void compare_forward(tg_tensor *out, int kind)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    tg_real *restrict y = out->val;
    if (a->rows == b->rows && a->cols == b->cols) {
        const tg_real *restrict x0 = a->val, *restrict x1 = b->val;
        for (size_t i = 0, n = tg_numel(out); i < n; i++) y[i] = compare(kind, x0[i], x1[i]);
        return;
    }
    for (int i = 0; i < out->rows; i++)
        for (int j = 0; j < out->cols; j++)
            *y++ = compare(kind, a->val[ops_bcast_at(a->rows, a->cols, i, j)],
                           b->val[ops_bcast_at(b->rows, b->cols, i, j)]);
}

/* y = [a == b] and so on; no gradient to either side */
static void eq_forward(tg_tensor *out) { compare_forward(out, EQ); }
static void ne_forward(tg_tensor *out) { compare_forward(out, NE); }
static void lt_forward(tg_tensor *out) { compare_forward(out, LT); }
static void le_forward(tg_tensor *out) { compare_forward(out, LE); }
static void gt_forward(tg_tensor *out) { compare_forward(out, GT); }
static void ge_forward(tg_tensor *out) { compare_forward(out, GE); }

/* y = c != 0 ? a : b;  da += dy [c != 0],  db += dy [c == 0],  nothing to c */
static int where_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                       size_t err_len)
{
    if (ops_check_inputs(n, 3, in, err, err_len)) return -1;
    return tg_broadcast_shape(n, in, out, NULL, err, err_len);
}

static void where_forward(tg_tensor *out)
{
    const tg_tensor *c = out->in[0], *a = out->in[1], *b = out->in[2];
    tg_real *restrict y = out->val;
    for (int i = 0; i < out->rows; i++)
        for (int j = 0; j < out->cols; j++)
            *y++ = c->val[ops_bcast_at(c->rows, c->cols, i, j)] != 0
                       ? a->val[ops_bcast_at(a->rows, a->cols, i, j)]
                       : b->val[ops_bcast_at(b->rows, b->cols, i, j)];
}

/* a and b may be one tensor: no restrict */
static void where_backward(tg_tensor *out)
{
    const tg_tensor *c = out->in[0], *a = out->in[1], *b = out->in[2];
    tg_real *da = a->grad, *db = b->grad;
    const tg_real *g = out->grad;
    for (int i = 0, k = 0; i < out->rows; i++)
        for (int j = 0; j < out->cols; j++, k++) {
            if (c->val[ops_bcast_at(c->rows, c->cols, i, j)] != 0) {
                if (da) da[ops_bcast_at(a->rows, a->cols, i, j)] += g[k];
            } else if (db) {
                db[ops_bcast_at(b->rows, b->cols, i, j)] += g[k];
            }
        }
}

/* Values on a grid of 0.5, so that the test meets ties (eq, le, ge). */
static int prepare_grid(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    (void)attrs;
    for (int i = 0; i < n_in; i++)
        for (size_t k = 0; k < (size_t)shape[i][0] * (size_t)shape[i][1]; k++)
            v[i][k] = (tg_real)(floor(2 * (double)v[i][k] + 0.5) / 2);
    return 0;
}

/* where's condition: 0, 1 or -2 (any value but 0 picks a) */
static int prepare_where(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    (void)n_in, (void)attrs;
    for (size_t k = 0; k < (size_t)shape[0][0] * (size_t)shape[0][1]; k++)
        v[0][k] = v[0][k] > 0 ? 1 : v[0][k] < (tg_real)-0.6 ? -2 : 0;
    return 0;
}

#define COMPARE_TEST                                                                               \
    {                                                                                              \
        .n_cases = 3,                                                                              \
        .cases = {                                                                                 \
            {.n_in = 2, .shape = {{3, 4}, {3, 4}}},                                                \
            {.n_in = 2, .shape = {{3, 4}, {3, 1}}},                                                \
            {.n_in = 2, .shape = {{1, 4}, {3, 1}}},                                                \
        },                                                                                         \
        .prepare = prepare_grid,                                                                   \
    }

#define COMPARE_OP(op)                                                                             \
    const tg_builtin_op tg_op_##op = {                                                             \
        .name = #op, .arity = 2, .differentiable = false, .shape = ops_binary_shape,                \
        .forward = op##_forward, .test = COMPARE_TEST,                                             \
    };
COMPARE_OP(eq)
COMPARE_OP(ne)
COMPARE_OP(lt)
COMPARE_OP(le)
COMPARE_OP(gt)
COMPARE_OP(ge)

const tg_builtin_op tg_op_where = {
    .name = "where", .arity = 3, .differentiable = true, .shape = where_shape,
    .forward = where_forward, .backward = where_backward,
    .test = {
        .n_cases = 4,
        .cases = {
            {.n_in = 3, .shape = {{3, 4}, {3, 4}, {3, 4}}},
            {.n_in = 3, .shape = {{3, 4}, {3, 1}, {1, 4}}}, /* a bias and a row */
            {.n_in = 3, .shape = {{3, 1}, {3, 4}, {1, 1}}}, /* a column mask, a scalar */
            {.n_in = 3, .shape = {{1, 4}, {3, 4}, {3, 4}}},
        },
        .tol = 1e-3, .constant = 1u << 0, .prepare = prepare_where,
    },
};
