/* arith.c — add, sub, mul: elementwise with broadcasting of any dimension of
 * size 1.  Equal shapes take a flat loop; otherwise each row is walked with a
 * column step of 1, or 0 for an input that is one column wide (a bias). */
#include "ops_real.h"

enum { ADD, SUB, MUL };

/* kind is a constant at every call, so after inlining the switch is gone */
static inline tg_real combine(int kind, tg_real x, tg_real y)
{
    switch (kind) {
    case ADD: return x + y;
    case SUB: return x - y;
    default: return x * y;
    }
}

/* Steps through t's values when it is broadcast to out's shape. */
static inline size_t row_step(const tg_tensor *t) { return t->rows == 1 ? 0 : (size_t)t->cols; }
static inline size_t col_step(const tg_tensor *t) { return t->cols == 1 ? 0 : 1; }

static inline void binary_forward(tg_tensor *out, int kind)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    tg_real *restrict y = out->val;
    if (a->rows == b->rows && a->cols == b->cols) {
        const tg_real *restrict x0 = a->val, *restrict x1 = b->val;
        size_t n = tg_numel(out);
        for (size_t i = 0; i < n; i++) y[i] = combine(kind, x0[i], x1[i]);
        return;
    }
    size_t ars = row_step(a), brs = row_step(b), acs = col_step(a), bcs = col_step(b);
    int rows = out->rows, cols = out->cols;
    for (int i = 0; i < rows; i++) {
        const tg_real *restrict ar = a->val + (size_t)i * ars, *restrict br = b->val + (size_t)i * brs;
        tg_real *restrict yr = y + (size_t)i * cols;
        if (acs && bcs) {
            for (int j = 0; j < cols; j++) yr[j] = combine(kind, ar[j], br[j]);
        } else if (acs) {
            tg_real s = br[0];
            for (int j = 0; j < cols; j++) yr[j] = combine(kind, ar[j], s);
        } else if (bcs) {
            tg_real s = ar[0];
            for (int j = 0; j < cols; j++) yr[j] = combine(kind, s, br[j]);
        } else {
            tg_real s = combine(kind, ar[0], br[0]);
            for (int j = 0; j < cols; j++) yr[j] = s;
        }
    }
}

/* d += g * o (or sign * g when o is NULL), summed down to d's own shape:
 * d has steps (drs, dcs) and o (ors, ocs) into a [rows, cols] upstream g. */
static void accumulate(tg_real *d, size_t drs, size_t dcs, const tg_real *g, int rows, int cols,
                       const tg_real *o, size_t ors, size_t ocs, tg_real sign)
{
    for (int i = 0; i < rows; i++) {
        tg_real *restrict dr = d + (size_t)i * drs;
        const tg_real *restrict gr = g + (size_t)i * cols;
        if (!o) {
            if (dcs) {
                for (int j = 0; j < cols; j++) dr[j] += sign * gr[j];
            } else {
                tg_real s = 0;
                for (int j = 0; j < cols; j++) s += gr[j];
                dr[0] += sign * s;
            }
            continue;
        }
        const tg_real *restrict orow = o + (size_t)i * ors;
        if (dcs && ocs) {
            for (int j = 0; j < cols; j++) dr[j] += gr[j] * orow[j];
        } else if (dcs) {
            tg_real v = orow[0];
            for (int j = 0; j < cols; j++) dr[j] += gr[j] * v;
        } else if (ocs) {
            tg_real s = 0;
            for (int j = 0; j < cols; j++) s += gr[j] * orow[j];
            dr[0] += s;
        } else {
            tg_real s = 0;
            for (int j = 0; j < cols; j++) s += gr[j];
            dr[0] += s * orow[0];
        }
    }
}

static inline void binary_backward(tg_tensor *out, int kind)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    const tg_real *restrict g = out->grad;
    /* a and b may be one tensor (x * x): their grads alias, so one loop each */
    if (a->rows == b->rows && a->cols == b->cols) {
        size_t n = tg_numel(out);
        if (a->grad) {
            tg_real *restrict da = a->grad;
            if (kind == MUL) {
                const tg_real *restrict bv = b->val;
                for (size_t i = 0; i < n; i++) da[i] += g[i] * bv[i];
            } else {
                for (size_t i = 0; i < n; i++) da[i] += g[i];
            }
        }
        if (b->grad) {
            tg_real *restrict db = b->grad;
            if (kind == MUL) {
                const tg_real *restrict av = a->val;
                for (size_t i = 0; i < n; i++) db[i] += g[i] * av[i];
            } else if (kind == SUB) {
                for (size_t i = 0; i < n; i++) db[i] -= g[i];
            } else {
                for (size_t i = 0; i < n; i++) db[i] += g[i];
            }
        }
        return;
    }
    int rows = out->rows, cols = out->cols;
    if (a->grad)
        accumulate(a->grad, row_step(a), col_step(a), g, rows, cols, kind == MUL ? b->val : NULL,
                   row_step(b), col_step(b), 1);
    if (b->grad)
        accumulate(b->grad, row_step(b), col_step(b), g, rows, cols, kind == MUL ? a->val : NULL,
                   row_step(a), col_step(a), kind == SUB ? -1 : 1);
}

/* y = a + b;  da += dy,  db += dy  (each summed over its broadcast dimensions) */
static void add_forward(tg_tensor *out) { binary_forward(out, ADD); }
static void add_backward(tg_tensor *out) { binary_backward(out, ADD); }
/* y = a - b;  da += dy,  db -= dy */
static void sub_forward(tg_tensor *out) { binary_forward(out, SUB); }
static void sub_backward(tg_tensor *out) { binary_backward(out, SUB); }
/* y = a * b;  da += dy * b,  db += dy * a */
static void mul_forward(tg_tensor *out) { binary_forward(out, MUL); }
static void mul_backward(tg_tensor *out) { binary_backward(out, MUL); }

/* same shapes, a bias column, a broadcast row, and both sides broadcasting */
#define BINARY_TEST                                                                                \
    {                                                                                              \
        .n_cases = 4,                                                                              \
        .cases = {                                                                                 \
            {.n_in = 2, .shape = {{3, 4}, {3, 4}}},                                                \
            {.n_in = 2, .shape = {{3, 4}, {3, 1}}},                                                \
            {.n_in = 2, .shape = {{1, 4}, {3, 4}}},                                                \
            {.n_in = 2, .shape = {{3, 1}, {1, 4}}},                                                \
        },                                                                                         \
        .tol = 1e-3,                                                                               \
    }

const tg_builtin_op tg_op_add = {
    .name = "add", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = add_forward, .backward = add_backward, .test = BINARY_TEST,
};
const tg_builtin_op tg_op_sub = {
    .name = "sub", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = sub_forward, .backward = sub_backward, .test = BINARY_TEST,
};
const tg_builtin_op tg_op_mul = {
    .name = "mul", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = mul_forward, .backward = mul_backward, .test = BINARY_TEST,
};
