/* stack_affine.c — Y_k = A1 x1_k + ... + Ap xp_k + b1 + ... + bq for the
 * steps k = 0..K-1 of one unroll, as one product over all K B columns.
 *
 * The model compiler (models/hoist.c) finds the terms of a step that no
 * state reaches — U @ x and the bias of a = U @ x + W @ h + b — and the
 * unroller records them for all steps at once here, before the steps; each
 * step's affine_block entry then reads its block as a term.  One large
 * product instead of K narrow ones keeps BLAS from packing U again at every
 * step, and backward forms dU, db and dx in one pass over the stacked da.
 *
 * Inputs: A1..Ap ([m, n_j]), b1..bq ([m, 1]), then x_{k,j} ([n_j, B]) at
 * p + q + k p + j.  Attributes: p >= 1, q >= 0, K >= 1.  The result is
 * [K m, B], step-major: block k (rows k m .. k m + m - 1) is step k's
 * [m, B], contiguous, so a step reads it in place and its gradient, written
 * by the step, lies where the wide backward product reads it.
 *
 * Layout of the products: with B = 1 the steps are rows, Y = X A^T with X
 * [K, n_j] (the x's themselves when they lie one after another, as a
 * borrowed input sequence does); with B > 1 the x's are gathered into
 * [n_j, K B], Z = A X, and Z is scattered into the step-major blocks.  The
 * scratch the op keeps: the gathered X's (read again by backward), then Z
 * (backward: the gathered gradient), then dX. */
#include "gemm.h"

static int stack_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t err_len)
{
    if (ops_check_inputs(n, -1, in, err, err_len)) return -1;
    double p = attrs[0], q = attrs[1], K = attrs[2];
    if (!(p >= 1 && p <= n && p == (int)p) || !(q >= 0 && q <= n && q == (int)q) ||
        !(K >= 1 && K <= n && K == (int)K)) {
        snprintf(err, err_len, "products %g, terms %g and steps %g must be whole numbers, at least 1, 0 and 1", p,
                 q, K);
        return -1;
    }
    int np = (int)p, nq = (int)q, nk = (int)K;
    if ((long long)np + nq + (long long)nk * np != n) {
        snprintf(err, err_len, "%d products, %d terms and %d steps take %lld inputs, not %d", np, nq, nk,
                 (long long)np + nq + (long long)nk * np, n);
        return -1;
    }
    int m = in[0][0], B = in[np + nq][1];
    for (int j = 0; j < np; j++)
        if (in[j][0] != m) {
            snprintf(err, err_len, "matrix %d is [%d, %d], the first has %d rows", j + 1, in[j][0], in[j][1], m);
            return -1;
        }
    for (int j = np; j < np + nq; j++)
        if (in[j][0] != m || in[j][1] != 1) {
            snprintf(err, err_len, "term %d is [%d, %d]; it must be [%d, 1]", j - np + 1, in[j][0], in[j][1], m);
            return -1;
        }
    for (int k = 0; k < nk; k++)
        for (int j = 0; j < np; j++) {
            const int *x = in[np + nq + k * np + j];
            if (x[0] != in[j][1] || x[1] != B) {
                snprintf(err, err_len, "step %d, product %d: [%d, %d] @ [%d, %d]; it must be [%d, %d]", k + 1, j + 1,
                         in[j][0], in[j][1], x[0], x[1], in[j][1], B);
                return -1;
            }
        }
    if ((long long)m * nk > 0x7fffffff) {
        snprintf(err, err_len, "%d steps of %d rows are too many rows", nk, m);
        return -1;
    }
    out[0] = m * nk;
    out[1] = B;
    return 0;
}

typedef struct stack_dims {
    int p, q, K, m, B;
    size_t KB;
} stack_dims;

static stack_dims dims_of(const tg_tensor *out)
{
    stack_dims d = {(int)out->attr[0], (int)out->attr[1], (int)out->attr[2], 0, out->cols, 0};
    d.m = out->rows / d.K;
    d.KB = (size_t)d.K * (size_t)d.B;
    return d;
}

static tg_tensor *x_at(const tg_tensor *out, const stack_dims *d, int k, int j)
{
    return out->in[d->p + d->q + k * d->p + j];
}

/* With B = 1, the x's of product j lying one after another are X itself. */
static bool in_place(const tg_tensor *out, const stack_dims *d, int j)
{
    if (d->B != 1) return false;
    const tg_tensor *x0 = x_at(out, d, 0, j);
    for (int k = 1; k < d->K; k++)
        if (x_at(out, d, k, j)->val != x0->val + (size_t)k * (size_t)x0->rows) return false;
    return true;
}

/* Where product j's X lies in scratch (or NULL: in place), and the end. */
static size_t x_offset(const tg_tensor *out, const stack_dims *d, int j)
{
    size_t off = 0;
    for (int i = 0; i < j; i++)
        if (!in_place(out, d, i)) off += (size_t)out->in[i]->cols * d->KB;
    return off;
}

static bool x_needs_grad(const tg_tensor *out, const stack_dims *d)
{
    for (int i = d->p + d->q; i < out->n_in; i++)
        if (out->in[i]->requires_grad) return true;
    return false;
}

static size_t stack_scratch(const tg_tensor *out)
{
    stack_dims d = dims_of(out);
    size_t n = x_offset(out, &d, d.p), widest = 0;
    for (int j = 0; j < d.p; j++)
        if ((size_t)out->in[j]->cols > widest) widest = (size_t)out->in[j]->cols;
    if (d.B > 1) n += (size_t)d.m * d.KB;
    if (x_needs_grad(out, &d)) n += widest * d.KB;
    return n;
}

static const tg_real *x_matrix(const tg_tensor *out, const stack_dims *d, int j)
{
    return in_place(out, d, j) ? x_at(out, d, 0, j)->val : out->scratch + x_offset(out, d, j);
}

static void stack_forward(tg_tensor *out)
{
    stack_dims d = dims_of(out);
    tg_ctx *ctx = out->op->ctx;
    const int m = d.m, B = d.B;
    const size_t KB = d.KB;
    tg_real *y = out->val;
    tg_real *z = out->scratch + x_offset(out, &d, d.p); /* B > 1: [m, K B] */
    for (int j = 0; j < d.p; j++) {
        const tg_tensor *a = out->in[j];
        const int nj = a->cols;
        if (!in_place(out, &d, j)) {
            tg_real *xs = out->scratch + x_offset(out, &d, j);
            for (int k = 0; k < d.K; k++) {
                const tg_real *xk = x_at(out, &d, k, j)->val;
                if (B == 1) memcpy(xs + (size_t)k * nj, xk, (size_t)nj * sizeof *xs);
                else
                    for (int i = 0; i < nj; i++)
                        memcpy(xs + (size_t)i * KB + (size_t)k * B, xk + (size_t)i * B, (size_t)B * sizeof *xs);
            }
        }
        const tg_real *xm = x_matrix(out, &d, j);
        if (B == 1) /* Y [K, m] = X [K, n_j] A^T */
            tg_mm_general(ctx, false, true, d.K, m, nj, xm, nj, a->val, nj, y, m, j > 0);
        else /* Z [m, K B] = A X */
            tg_mm_general(ctx, false, false, m, (int)KB, nj, a->val, nj, xm, (int)KB, z, (int)KB, j > 0);
    }
    for (int k = 0; k < d.K; k++)
        for (int r = 0; r < m; r++) {
            tg_real s = 0;
            for (int i = d.p; i < d.p + d.q; i++) s += out->in[i]->val[r];
            tg_real *restrict yr = y + ((size_t)k * m + r) * B;
            if (B == 1) yr[0] += s;
            else {
                const tg_real *restrict zr = z + (size_t)r * KB + (size_t)k * B;
                for (int c = 0; c < B; c++) yr[c] = zr[c] + s;
            }
        }
}

static void stack_backward(tg_tensor *out)
{
    stack_dims d = dims_of(out);
    tg_ctx *ctx = out->op->ctx;
    const int m = d.m, B = d.B, KB = (int)d.KB;
    const tg_real *dy = out->grad;
    tg_real *g = out->scratch + x_offset(out, &d, d.p); /* B > 1: dY gathered to [m, K B] */
    tg_real *dx = B > 1 ? g + (size_t)m * d.KB : g;    /* [n_j, K B] or [K, n_j] */
    if (B > 1)
        for (int k = 0; k < d.K; k++)
            for (int r = 0; r < m; r++)
                memcpy(g + (size_t)r * d.KB + (size_t)k * B, dy + ((size_t)k * m + r) * B, (size_t)B * sizeof *g);
    const tg_real *gm = B > 1 ? g : dy; /* [m, K B], or [K, m] with B = 1 */
    for (int i = d.p; i < d.p + d.q; i++) {
        tg_real *db = out->in[i]->grad;
        if (!db) continue;
        for (int r = 0; r < m; r++) {
            tg_real s = 0;
            if (B > 1)
                for (int c = 0; c < KB; c++) s += gm[(size_t)r * KB + c];
            else
                for (int k = 0; k < d.K; k++) s += gm[(size_t)k * m + r];
            db[r] += s;
        }
    }
    bool want_dx = x_needs_grad(out, &d);
    for (int j = 0; j < d.p; j++) {
        tg_tensor *a = out->in[j];
        const int nj = a->cols;
        const tg_real *xm = x_matrix(out, &d, j);
        if (a->grad) {
            if (B == 1) /* dA [m, n_j] += dY^T [m, K] X [K, n_j] */
                tg_mm_general(ctx, true, false, m, nj, d.K, gm, m, xm, nj, a->grad, nj, true);
            else /* dA += G [m, K B] X^T */
                tg_mm_general(ctx, false, true, m, nj, KB, gm, KB, xm, KB, a->grad, nj, true);
        }
        bool any = false;
        for (int k = 0; want_dx && k < d.K; k++) any |= x_at(out, &d, k, j)->grad != NULL;
        if (!any) continue;
        if (B == 1) { /* dX [K, n_j] = dY [K, m] A */
            tg_mm_general(ctx, false, false, d.K, nj, m, gm, m, a->val, nj, dx, nj, false);
            for (int k = 0; k < d.K; k++) {
                tg_real *gx = x_at(out, &d, k, j)->grad;
                const tg_real *src = dx + (size_t)k * nj;
                for (int i = 0; gx && i < nj; i++) gx[i] += src[i];
            }
        } else { /* dX [n_j, K B] = A^T G */
            tg_mm_general(ctx, true, false, nj, KB, m, a->val, nj, gm, KB, dx, KB, false);
            for (int k = 0; k < d.K; k++) {
                tg_real *gx = x_at(out, &d, k, j)->grad;
                for (int i = 0; gx && i < nj; i++) {
                    tg_real *restrict gr = gx + (size_t)i * B;
                    const tg_real *restrict src = dx + (size_t)i * d.KB + (size_t)k * B;
                    for (int c = 0; c < B; c++) gr[c] += src[c];
                }
            }
        }
    }
}

const tg_builtin_op tg_op_stack_affine = {
    .name = "stack_affine",
    .arity = -1,
    .n_attrs = 3,
    .differentiable = true,
    .shape = stack_shape,
    .forward = stack_forward,
    .backward = stack_backward,
    .scratch = stack_scratch,
    .test = {
        .n_cases = 4,
        .cases = {
            /* U x_k + b over 3 steps of batch 2 */
            {.n_in = 5, .shape = {{3, 2}, {3, 1}, {2, 2}, {2, 2}, {2, 2}}, .attrs = {1, 1, 3}},
            /* batch 1: the steps as rows, no term */
            {.n_in = 5, .shape = {{4, 3}, {3, 1}, {3, 1}, {3, 1}, {3, 1}}, .attrs = {1, 0, 4}},
            /* two products and a bias over 2 steps of batch 3 */
            {.n_in = 7, .shape = {{2, 3}, {2, 2}, {2, 1}, {3, 3}, {2, 3}, {3, 3}, {2, 3}}, .attrs = {2, 1, 2}},
            /* batch 1, two products, two biases */
            {.n_in = 8, .shape = {{3, 2}, {3, 1}, {3, 1}, {3, 1}, {2, 1}, {1, 1}, {2, 1}, {1, 1}},
             .attrs = {2, 2, 2}},
        },
        .tol = 1e-3,
    },
};
