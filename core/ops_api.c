/* ops_api.c — the typed C entry points for the built-in ops.  Built-ins sit
 * at the front of every context's table in ops.def order, so these index it
 * directly instead of hashing a name. */
#include "tg_internal.h"

static tg_tensor *rec(tg_tape *tp, tg_op_id id, int n, tg_tensor *const *in, int na, const double *a)
{
    if (!tp) return NULL;
    return tg_record(tp, tp->ctx->op_list[id], n, in, na, a);
}

#define UNARY(fn, ID) \
    tg_tensor *fn(tg_tape *tp, tg_tensor *a) { return rec(tp, ID, 1, &a, 0, NULL); }
#define BINARY(fn, ID)                                              \
    tg_tensor *fn(tg_tape *tp, tg_tensor *a, tg_tensor *b)          \
    {                                                               \
        tg_tensor *in[2] = {a, b};                                  \
        return rec(tp, ID, 2, in, 0, NULL);                         \
    }

BINARY(tg_matmul, TG_OP_MATMUL)
BINARY(tg_add, TG_OP_ADD)
BINARY(tg_sub, TG_OP_SUB)
BINARY(tg_mul, TG_OP_MUL)
BINARY(tg_squared_error, TG_OP_SQUARED_ERROR)
BINARY(tg_softmax_cross_entropy, TG_OP_SOFTMAX_CROSS_ENTROPY)
UNARY(tg_tanh, TG_OP_TANH)
UNARY(tg_sigmoid, TG_OP_SIGMOID)
UNARY(tg_relu, TG_OP_RELU)
UNARY(tg_exp, TG_OP_EXP)
UNARY(tg_log, TG_OP_LOG)
UNARY(tg_sum, TG_OP_SUM)
UNARY(tg_mean, TG_OP_MEAN)
UNARY(tg_transpose, TG_OP_TRANSPOSE)
UNARY(tg_stop_gradient, TG_OP_STOP_GRADIENT)

tg_tensor *tg_scale(tg_tape *tp, tg_tensor *a, double alpha, double beta)
{
    double attrs[2] = {alpha, beta};
    return rec(tp, TG_OP_SCALE, 1, &a, 2, attrs);
}

tg_tensor *tg_slice(tg_tape *tp, tg_tensor *a, int start, int count)
{
    double attrs[2] = {start, count};
    return rec(tp, TG_OP_SLICE, 1, &a, 2, attrs);
}

tg_tensor *tg_concat(tg_tape *tp, int n, tg_tensor *const *parts)
{
    if (!tp) return NULL;
    if (n < 1 || !parts) {
        tg_error(tp->ctx, TG_ERR_ARG, "concat: needs at least one input");
        return NULL;
    }
    return rec(tp, TG_OP_CONCAT, n, parts, 0, NULL);
}
