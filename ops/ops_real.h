/* ops_real.h — what the op files share: libm calls at the precision of
 * tg_real (expf in float, exp in double, never a silent double round trip)
 * and the common shape-rule checks. */
#ifndef TG_OPS_REAL_H
#define TG_OPS_REAL_H

#include "tg_internal.h"
#include <math.h>
#include <stdio.h>

#ifdef TG_REAL_DOUBLE
static inline tg_real real_exp(tg_real x) { return exp(x); }
static inline tg_real real_log(tg_real x) { return log(x); }
static inline tg_real real_tanh(tg_real x) { return tanh(x); }
static inline tg_real real_abs(tg_real x) { return fabs(x); }
static inline tg_real real_sqrt(tg_real x) { return sqrt(x); }
static inline tg_real real_log1p(tg_real x) { return log1p(x); }
static inline tg_real real_pow(tg_real x, tg_real p) { return pow(x, p); }
static inline tg_real real_fmod(tg_real x, tg_real y) { return fmod(x, y); }
static inline tg_real real_rint(tg_real x) { return rint(x); }
#else
static inline tg_real real_exp(tg_real x) { return expf(x); }
static inline tg_real real_log(tg_real x) { return logf(x); }
static inline tg_real real_tanh(tg_real x) { return tanhf(x); }
static inline tg_real real_abs(tg_real x) { return fabsf(x); }
static inline tg_real real_sqrt(tg_real x) { return sqrtf(x); }
static inline tg_real real_log1p(tg_real x) { return log1pf(x); }
static inline tg_real real_pow(tg_real x, tg_real p) { return powf(x, p); }
static inline tg_real real_fmod(tg_real x, tg_real y) { return fmodf(x, y); }
static inline tg_real real_rint(tg_real x) { return rintf(x); }
#endif

/* Kernels that should use the machine's vector width.  The library is built
 * without -march, so a loop GCC vectorises gets SSE2 only; TG_CLONES also
 * compiles a function for AVX2 and AVX-512 and picks one at load time
 * (GCC's target_clones, an ifunc).  Its helpers must be TG_INLINE, so that
 * they are compiled inside each clone rather than once for SSE2.  The
 * clones give the same bits: -std=c11 turns off the contraction of a * b + c
 * into an FMA, and no loop here relies on reassociation. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(TG_NO_CLONES)
#define TG_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TG_CLONES
#endif
#define TG_INLINE static inline __attribute__((always_inline))

/* unary.c: the tanh and sigmoid ops' own functions, applied in place */
void tg_tanh_inplace(tg_real *y, size_t n);
void tg_sigmoid_inplace(tg_real *y, size_t n);

/* embed.c: the check of the index ops (embed, softmax_cross_entropy_index):
 * every value of idx a whole number from 0 to limit - 1, else -1 and
 * "index 7 in column 2 is out of range for <pre><limit> <post> (0 to 4)" */
int tg_check_indices(const tg_tensor *idx, int limit, const char *pre, const char *post, char *err,
                     size_t err_len);
/* embed.c: their test spec's prepare: input 1 to indices into input 0's rows */
int tg_test_indices(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs);


/* broadcast.c: the shape rules of the one- and two-input elementwise ops */
int ops_unary_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t err_len);
int ops_binary_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t err_len);

/* Where an input's element for output element (i, j) lives when the input
 * is broadcast: a dimension of 1 repeats (arith.c's rule). */
static inline size_t ops_bcast_at(int rows, int cols, int i, int j)
{
    return (size_t)(rows == 1 ? 0 : i) * (size_t)cols + (size_t)(cols == 1 ? 0 : j);
}

/* Every shape rule starts here: the core checks arity and sizes before it
 * calls a rule, but rules are also reachable through tg_op_shape() by model
 * checkers, so they re-check rather than trust. */
static inline int ops_check_inputs(int n, int want, const int (*in)[2], char *err,
                                   size_t err_len)
{
    if (want >= 0 ? n != want : n < 1) {
        if (want >= 0) snprintf(err, err_len, "takes %d input%s, got %d", want, want == 1 ? "" : "s", n);
        else snprintf(err, err_len, "takes at least 1 input, got %d", n);
        return -1;
    }
    if (!in) {
        snprintf(err, err_len, "no input shapes");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (in[i][0] < 1 || in[i][1] < 1) {
            snprintf(err, err_len, "input %d has empty shape [%d, %d]", i, in[i][0], in[i][1]);
            return -1;
        }
    }
    return 0;
}

#endif
