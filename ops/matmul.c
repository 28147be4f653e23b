/* matmul.c — y = a @ b.  The products themselves (the small-product loops,
 * CBLAS, and the choice between them) are in gemm.c, shared with affine. */
#include "gemm.h"

/* y = a @ b, [m, k] @ [k, n] -> [m, n];  da += dy b^T,  db += a^T dy */
static int matmul_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                        size_t err_len)
{
    if (ops_check_inputs(n, 2, in, err, err_len)) return -1;
    if (in[0][1] != in[1][0]) {
        snprintf(err, err_len, "inner dimensions differ: [%d, %d] @ [%d, %d]", in[0][0], in[0][1],
                 in[1][0], in[1][1]);
        return -1;
    }
    out[0] = in[0][0];
    out[1] = in[1][1];
    return 0;
}

static void matmul_forward(tg_tensor *out)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    int m = a->rows, k = a->cols, n = b->cols;
    tg_mm_forward(out->op->ctx, m, n, k, a->val, b->val, out->val, false);
}

static void matmul_backward(tg_tensor *out)
{
    tg_tensor *a = out->in[0], *b = out->in[1];
    int m = a->rows, k = a->cols, n = b->cols;
    tg_ctx *ctx = out->op->ctx;
    tg_real *ga = a->grad;
    /* a parameter's da += dy b^T can wait for the sweep to add all steps' at
     * once (core/defer.c); db flows on and is needed now */
    if (tg_defer_wants(ctx, a) && tg_defer_worth(ctx, m, n, (size_t)k) && tg_mm_grad_a_deferred(out, out->grad, 1, &a, (const tg_real *const *)&b->val, 0, NULL))
        ga = NULL;
    if (ga || b->grad) tg_mm_backward(ctx, m, n, k, a->val, b->val, out->grad, ga, b->grad);
}

const tg_builtin_op tg_op_matmul = {
    .name = "matmul",
    .arity = 2,
    .differentiable = true,
    .shape = matmul_shape,
    .forward = matmul_forward,
    .backward = matmul_backward,
    .test = {
        .n_cases = 4,
        .cases = {
            /* with the default limits the first three take the direct loops,
             * the last gemm; tests/test_ops.c runs more shapes both ways */
            {.n_in = 2, .shape = {{3, 4}, {4, 2}}},
            {.n_in = 2, .shape = {{7, 19}, {19, 1}}}, /* matrix-vector: a dot block + tail */
            {.n_in = 2, .shape = {{4, 1}, {1, 3}}},   /* outer product, k = 1 */
            {.n_in = 2, .shape = {{6, 3}, {3, 5}}},   /* m n k = 90: gemm */
        },
        .tol = 1e-3,
    },
};
