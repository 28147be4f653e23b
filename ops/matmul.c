/* matmul.c — the one op that does real arithmetic volume, so every product,
 * forward and backward, goes to CBLAS; backward accumulates in place through
 * gemm's beta = 1 and needs no temporary. */
#include "ops_real.h"
#include <cblas.h>

/* C = alpha op(A) op(B) + beta C, row-major, at the precision of tg_real */
static inline void gemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                        const tg_real *a, int lda, const tg_real *b, int ldb, tg_real beta,
                        tg_real *c, int ldc)
{
#ifdef TG_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
#endif
}

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
    gemm(CblasNoTrans, CblasNoTrans, m, n, k, a->val, k, b->val, n, 0, out->val, n);
}

static void matmul_backward(tg_tensor *out)
{
    const tg_tensor *a = out->in[0], *b = out->in[1];
    int m = a->rows, k = a->cols, n = b->cols;
    if (a->grad) gemm(CblasNoTrans, CblasTrans, m, k, n, out->grad, n, b->val, n, 1, a->grad, k);
    if (b->grad) gemm(CblasTrans, CblasNoTrans, k, n, m, a->val, k, out->grad, n, 1, b->grad, n);
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
            {.n_in = 2, .shape = {{3, 4}, {4, 2}}},
            {.n_in = 2, .shape = {{1, 5}, {5, 1}}},  /* row times column: 1x1 */
            {.n_in = 2, .shape = {{4, 1}, {1, 3}}},  /* outer product, k = 1 */
            {.n_in = 2, .shape = {{6, 3}, {3, 5}}},
        },
        .tol = 1e-3,
    },
};
