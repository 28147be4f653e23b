/* binary.c — div, max, min, mod: elementwise with broadcasting of any
 * dimension of 1, exactly as add and mul (ops/arith.c), with gradients that
 * depend on both operands.  Kink conventions: max and min send the gradient
 * of a tie to the first operand; mod is not differentiable where a / b is a
 * whole number (the test keeps away from there). */
#include "ops_real.h"

enum { DIV, MAX, MIN, MOD };

/* Python's and torch.remainder's modulo: the result has the sign of b (or
 * is 0), |result| < |b|.  fmod is exact; moving it into b's sign adds b once.
 * b = 0 gives NaN, as fmod does. */
static inline tg_real floor_mod(tg_real a, tg_real b)
{
    tg_real r = real_fmod(a, b);
    if (r != 0 && (r < 0) != (b < 0)) r += b;
    return r;
}

/* max and min pass a NaN in either operand on (anomaly detection depends
 * on it); a tie takes a. */
static inline int max_takes_a(tg_real a, tg_real b) { return !(a < b || b != b); }
static inline int min_takes_a(tg_real a, tg_real b) { return !(a > b || b != b); }

/* kind is a constant at every call, so after inlining the switch is gone */
static inline tg_real combine(int kind, tg_real a, tg_real b)
{
    switch (kind) {
    case DIV: return a / b;
    case MAX: return max_takes_a(a, b) ? a : b;
    case MIN: return min_takes_a(a, b) ? a : b;
    default: return floor_mod(a, b);
    }
}

/* dy/da and dy/db at (a, b), where y = combine(kind, a, b) */
static inline void partials(int kind, tg_real a, tg_real b, tg_real y, tg_real *pa, tg_real *pb)
{
    switch (kind) {
    case DIV: *pa = 1 / b, *pb = -y / b; return;
    case MAX: *pa = (tg_real)max_takes_a(a, b), *pb = 1 - *pa; return;
    case MIN: *pa = (tg_real)min_takes_a(a, b), *pb = 1 - *pa; return;
    default: /* y = a - b floor(a / b); the quotient read back from y */
        *pa = 1, *pb = -real_rint((a - y) / b);
        return;
    }
}

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
    for (int i = 0; i < out->rows; i++)
        for (int j = 0; j < out->cols; j++)
            *y++ = combine(kind, a->val[ops_bcast_at(a->rows, a->cols, i, j)],
                           b->val[ops_bcast_at(b->rows, b->cols, i, j)]);
}

/* a and b may be one tensor (max(x, x)): their gradients alias, so no
 * restrict and one element at a time. */
static inline void binary_backward(tg_tensor *out, int kind)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    tg_real *da = a->grad, *db = b->grad;
    if (!da && !db) return;
    const tg_real *g = out->grad, *y = out->val;
    for (int i = 0, k = 0; i < out->rows; i++)
        for (int j = 0; j < out->cols; j++, k++) {
            size_t ia = ops_bcast_at(a->rows, a->cols, i, j), ib = ops_bcast_at(b->rows, b->cols, i, j);
            tg_real pa, pb;
            partials(kind, a->val[ia], b->val[ib], y[k], &pa, &pb);
            if (da) da[ia] += g[k] * pa;
            if (db) db[ib] += g[k] * pb;
        }
}

/* y = a / b;  da += dy / b,  db -= dy a / b^2 = dy y / b */
static void div_forward(tg_tensor *out) { binary_forward(out, DIV); }
static void div_backward(tg_tensor *out) { binary_backward(out, DIV); }
/* y = max(a, b);  da += dy [a >= b],  db += dy [a < b]  (a tie goes to a) */
static void max_forward(tg_tensor *out) { binary_forward(out, MAX); }
static void max_backward(tg_tensor *out) { binary_backward(out, MAX); }
/* y = min(a, b);  da += dy [a <= b],  db += dy [a > b]  (a tie goes to a) */
static void min_forward(tg_tensor *out) { binary_forward(out, MIN); }
static void min_backward(tg_tensor *out) { binary_backward(out, MIN); }
/* y = a - b floor(a / b);  da += dy,  db -= dy floor(a / b) */
static void mod_forward(tg_tensor *out) { binary_forward(out, MOD); }
static void mod_backward(tg_tensor *out) { binary_backward(out, MOD); }

/* ---- the gradient test's inputs ------------------------------------------- */

/* Calls fn(a, b) for the pair of values behind every output element; -1 if
 * any call says no. */
static int each_pair(tg_real *const *v, const int (*shape)[2], int (*fn)(tg_real *a, tg_real *b))
{
    int rows = shape[0][0] > shape[1][0] ? shape[0][0] : shape[1][0];
    int cols = shape[0][1] > shape[1][1] ? shape[0][1] : shape[1][1];
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            if (fn(&v[0][ops_bcast_at(shape[0][0], shape[0][1], i, j)],
                   &v[1][ops_bcast_at(shape[1][0], shape[1][1], i, j)]))
                return -1;
    return 0;
}

/* The finite differences step each value by up to 0.04 (float): keep every
 * pair 0.1 apart, so none crosses a tie. */
static int apart(tg_real *a, tg_real *b) { return real_abs(*a - *b) < (tg_real)0.1 ? -1 : 0; }
static int prepare_maxmin(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    (void)n_in, (void)attrs;
    return each_pair(v, shape, apart);
}

/* b away from 0 and a / b at least 0.15 from a whole number: a step of 0.04
 * in b moves a / b by at most |a| 0.04 / b^2 = 0.12. */
static int off_kink(tg_real *a, tg_real *b)
{
    tg_real q = *a / *b, f = q - (tg_real)floor((double)q);
    return f < (tg_real)0.15 || f > (tg_real)0.85 ? -1 : 0;
}
static int prepare_div(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    (void)n_in, (void)attrs;
    /* drawn in [-1, 1]: a to [-3, 3], b to +-[1, 2] */
    for (size_t k = 0; k < (size_t)shape[0][0] * (size_t)shape[0][1]; k++) v[0][k] *= 3;
    for (size_t k = 0; k < (size_t)shape[1][0] * (size_t)shape[1][1]; k++)
        v[1][k] = v[1][k] < 0 ? v[1][k] - 1 : v[1][k] + 1;
    return 0;
}
static int prepare_mod(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs)
{
    prepare_div(n_in, v, shape, attrs); /* both signs of b: both signs of the result */
    return each_pair(v, shape, off_kink);
}

/* same shapes, a bias column, a broadcast row, and both sides broadcasting */
#define BINARY_CASES                                                                               \
    .n_cases = 4,                                                                                  \
    .cases = {                                                                                     \
        {.n_in = 2, .shape = {{3, 4}, {3, 4}}},                                                    \
        {.n_in = 2, .shape = {{3, 4}, {3, 1}}},                                                    \
        {.n_in = 2, .shape = {{1, 4}, {3, 4}}},                                                    \
        {.n_in = 2, .shape = {{3, 1}, {1, 4}}},                                                    \
    }

const tg_builtin_op tg_op_div = {
    .name = "div", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = div_forward, .backward = div_backward,
    .test = {BINARY_CASES, .tol = 1e-3, .prepare = prepare_div},
};
const tg_builtin_op tg_op_max = {
    .name = "max", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = max_forward, .backward = max_backward,
    .test = {BINARY_CASES, .tol = 1e-3, .prepare = prepare_maxmin},
};
const tg_builtin_op tg_op_min = {
    .name = "min", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = min_forward, .backward = min_backward,
    .test = {BINARY_CASES, .tol = 1e-3, .prepare = prepare_maxmin},
};
const tg_builtin_op tg_op_mod = {
    .name = "mod", .arity = 2, .differentiable = true, .shape = ops_binary_shape,
    .forward = mod_forward, .backward = mod_backward,
    .test = {BINARY_CASES, .tol = 1e-3, .prepare = prepare_mod},
};
