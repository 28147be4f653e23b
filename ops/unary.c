/* unary.c — the elementwise nonlinearities.  Where the derivative is a
 * function of the output (tanh, sigmoid, exp), backward reads the saved
 * output instead of evaluating the function again.
 *
 * In float, tanh, sigmoid and exp do not call libm: a scalar tanhf costs
 * 15-20 ns per value (43% of a medium benchmark step), so they are computed
 * by the branch-free approximations below, in loops GCC vectorises (and
 * clones for AVX2 and AVX-512).  In double they stay libm calls: the
 * double gradient checks are tight and the double build is the reference. */
#include "ops_real.h"
#include <stdint.h>

#ifndef TG_REAL_DOUBLE
/* ---- float approximations ------------------------------------------------------
 * Accuracy against double libm, measured over every float in [-10, 10]
 * (tanh), [-110, 110] (sigmoid) and [-100, 100] (exp), 2.2e9 values each;
 * subnormal results are within one subnormal step, overflow gives +inf.
 * tests/test_ops.c re-checks a dense sweep of 2.1e6 values.
 *   tanh     max relative error 9.9e-8 (0.83 x 2^-23), mean 2.5e-9
 *   sigmoid  max relative error 1.8e-7 (1.50 x 2^-23), mean 6.6e-9
 *   exp      max relative error 8.4e-8 (0.71 x 2^-23), mean 5.7e-9
 * The AVX-512, AVX2 and SSE2 clones gave the same bits on all of them.
 * tanh(0) = 0 (with its sign), tanh(-x) = -tanh(x) exactly, tiny x gives x,
 * |x| >= 9.1 gives exactly +-1, and a NaN comes out as a NaN (anomaly
 * detection depends on it): every clamp below is written as sel(a > c, c, a),
 * which keeps a NaN, where fminf would drop it.
 *
 * The coefficients were fitted for this code (Chebyshev interpolation in
 * mpmath, 50 digits) and rounded to float; the error figures above include
 * that rounding and every rounding of the float arithmetic as written (no
 * FMA: -std=c11 keeps a * b + c two roundings in every clone). */

TG_INLINE uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

TG_INLINE float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* c ? a : b as bit masks: GCC 12 will not if-convert two ?: in a row (or one
 * whose arms it has sunk into branches) for AVX2 or SSE2, and then leaves
 * the whole loop scalar; with masks there is nothing to convert. */
TG_INLINE float sel(int c, float a, float b)
{
    uint32_t m = -(uint32_t)c;
    return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

/* e^y for y in [-105, 89] (callers clamp; a NaN passes through).
 * y = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, so n ln2_hi is exact);
 * e^r = 1 + r + r^2 Q(r) with Q of degree 4; then the scale 2^n, applied as
 * two factors 2^(n/2) so that results down to the subnormals (n = -151) and
 * up to the overflow to +inf (n = 128) need no special case. */
TG_INLINE float exp_core(float y)
{
    const float magic = 12582912.0f; /* 0x1.8p23: adding it rounds to an integer */
    float kf = y * 1.44269504088896341f + magic;
    float n = kf - magic;
    float r = (y - n * 0.693359375f) - n * -2.12194440e-4f;
    int32_t ni = (int32_t)(f2u(kf) - f2u(magic)); /* n as an integer, read off kf's bits */
    float q = 0.0013928367868113448f;
    q = q * r + 0.0083649276772949782f;
    q = q * r + 0.041666541115154172f;
    q = q * r + 0.16666566181100728f;
    q = q * r + 0.5f;
    float p = 1.0f + (r + (r * r) * q);
    int32_t h = ni >> 1;
    float s1 = u2f((uint32_t)(h + 127) << 23), s2 = u2f((uint32_t)(ni - h + 127) << 23);
    return p * s1 * s2;
}

/* tanh: below |x| = 0.75 the odd polynomial x + x^3 P(x^2) (P of degree 6),
 * above it 1 - 2 / (1 + e^2|x|), where the division's error shrinks with
 * the term it computes; both are evaluated and one is selected.  |x| is
 * clamped to 10, where tanh is 1 in float, so that e^2|x| stays finite. */
TG_INLINE float tanh_1(float x)
{
    float a = fabsf(x);
    a = sel(a > 10.0f, 10.0f, a);
    float s = a * a;
    float P = -0.00069653303341604157f;
    P = P * s + 0.0030899263945650961f;
    P = P * s + -0.0086847169902478788f;
    P = P * s + 0.021835781401076455f;
    P = P * s + -0.053965167731973587f;
    P = P * s + 0.13333322611171833f;
    P = P * s + -0.33333333271933147f;
    float small = a + a * s * P;
    float big = 1.0f - 2.0f / (1.0f + exp_core(2.0f * a));
    return copysignf(sel(a < 0.75f, small, big), x);
}

/* sigmoid: with e = e^-|x| (never overflows), 1 / (1 + e) for x >= 0 and
 * e / (1 + e) below; one division for both.  |x| is clamped to 105, past
 * which e^-|x| is 0 in float. */
TG_INLINE float sigmoid_1(float x)
{
    float a = fabsf(x);
    a = sel(a > 105.0f, 105.0f, a);
    float e = exp_core(-a);
    return sel(x >= 0, 1.0f, e) / (1.0f + e);
}

/* exp: clamped to [-105, 89], outside which it is 0 or +inf in float */
TG_INLINE float exp_1(float x)
{
    float y = sel(x < -105.0f, -105.0f, x);
    y = sel(y > 89.0f, 89.0f, y);
    return exp_core(y);
}

TG_CLONES static void tanh_loop(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanh_1(x[i]);
}

TG_CLONES static void sigmoid_loop(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = sigmoid_1(x[i]);
}

TG_CLONES static void exp_loop(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = exp_1(x[i]);
}

TG_CLONES static void tanh_inplace(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanh_1(y[i]);
}

TG_CLONES static void sigmoid_inplace(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = sigmoid_1(y[i]);
}
#endif

#ifdef TG_REAL_DOUBLE
/* sigmoid through libm: exp(-|x|) never overflows, and the two branches are
 * the same function on either side of 0 */
static inline tg_real sigmoid_libm(tg_real x)
{
    tg_real e = real_exp(-real_abs(x));
    tg_real r = 1 / (1 + e);
    return x >= 0 ? r : e * r;
}
#endif

/* In place, for ops that apply an activation as their last stage (affine):
 * the same function, value for value, as the tanh and sigmoid ops. */
void tg_tanh_inplace(tg_real *y, size_t n)
{
#ifdef TG_REAL_DOUBLE
    for (size_t i = 0; i < n; i++) y[i] = real_tanh(y[i]);
#else
    tanh_inplace(y, n);
#endif
}

void tg_sigmoid_inplace(tg_real *y, size_t n)
{
#ifdef TG_REAL_DOUBLE
    for (size_t i = 0; i < n; i++) y[i] = sigmoid_libm(y[i]);
#else
    sigmoid_inplace(y, n);
#endif
}

/* y = tanh x;  dx += dy (1 - y^2) */
static void tanh_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
#ifdef TG_REAL_DOUBLE
    for (size_t i = 0; i < n; i++) y[i] = real_tanh(x[i]);
#else
    tanh_loop(x, y, n);
#endif
}

static void tanh_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] * (1 - y[i] * y[i]);
}

/* y = 1 / (1 + e^-x);  dx += dy y (1 - y).  exp(-|x|) never overflows, and
 * the two branches are the same function on either side of 0. */
static void sigmoid_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
#ifdef TG_REAL_DOUBLE
    for (size_t i = 0; i < n; i++) y[i] = sigmoid_libm(x[i]);
#else
    sigmoid_loop(x, y, n);
#endif
}

static void sigmoid_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] * y[i] * (1 - y[i]);
}

/* y = max(x, 0);  dx += dy [x > 0]  (the subgradient at 0 is 0).  Written
 * as x < 0 ? 0 : x so that a NaN passes through for anomaly detection. */
static void relu_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i];
}

static void relu_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0 ? g[i] : 0;
}

/* y = e^x;  dx += dy y */
static void exp_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
#ifdef TG_REAL_DOUBLE
    for (size_t i = 0; i < n; i++) y[i] = real_exp(x[i]);
#else
    exp_loop(x, y, n);
#endif
}

static void exp_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] * y[i];
}

/* y = ln x;  dx += dy / x.  x <= 0 gives -inf or NaN on purpose: anomaly
 * detection reports it where it happened, a clamp would hide it. */
static void log_forward(tg_tensor *out)
{
    const tg_real *restrict x = out->in[0]->val;
    tg_real *restrict y = out->val;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) y[i] = real_log(x[i]);
}

static void log_backward(tg_tensor *out)
{
    tg_real *restrict dx = out->in[0]->grad;
    if (!dx) return;
    const tg_real *restrict x = out->in[0]->val, *restrict g = out->grad;
    size_t n = tg_numel(out);
    for (size_t i = 0; i < n; i++) dx[i] += g[i] / x[i];
}

#define UNARY_CASES                                                                                \
    .n_cases = 3, .cases = {                                                                       \
        {.n_in = 1, .shape = {{3, 4}}},                                                            \
        {.n_in = 1, .shape = {{5, 1}}},                                                            \
        {.n_in = 1, .shape = {{1, 1}}},                                                            \
    }

const tg_builtin_op tg_op_tanh = {
    .name = "tanh", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = tanh_forward, .backward = tanh_backward,
    .test = {UNARY_CASES, .lo = -3, .hi = 3, .tol = 1e-3},
};
const tg_builtin_op tg_op_sigmoid = {
    .name = "sigmoid", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = sigmoid_forward, .backward = sigmoid_backward,
    .test = {UNARY_CASES, .lo = -4, .hi = 4, .tol = 1e-3},
};
const tg_builtin_op tg_op_relu = {
    .name = "relu", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = relu_forward, .backward = relu_backward,
    .test = {UNARY_CASES, .kink = 0.05, .kink_at = 0, .tol = 1e-3},
};
const tg_builtin_op tg_op_exp = {
    .name = "exp", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = exp_forward, .backward = exp_backward,
    .test = {UNARY_CASES, .lo = -2, .hi = 2, .tol = 1e-3},
};
const tg_builtin_op tg_op_log = {
    .name = "log", .arity = 1, .differentiable = true, .shape = ops_unary_shape,
    .forward = log_forward, .backward = log_backward,
    .test = {UNARY_CASES, .lo = 0.5, .hi = 2, .tol = 1e-3},
};
