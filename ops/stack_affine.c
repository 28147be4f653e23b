/* stack_affine.c — the state-free terms of a chunk of steps as one product
 * (stack_affine), and a step's affine sum reading its block (affine_block).
 *
 * The model compiler (models/hoist.c) finds the terms of a step that no
 * state reaches — U @ x and the bias of a = U @ x + W @ h + b — and the
 * unroller records them for a chunk of K steps at once, before the steps;
 * each step's affine_block then reads its block of the result as a term.
 * One product over K B columns instead of K products over B keeps BLAS from
 * packing U again at every step, and backward forms dU, db and dx in one
 * pass over the chunk.
 *
 * stack_affine: Y = A1 X1 + ... + Ap Xp + b1 + ... + bq, where Xj gathers
 * the chunk's operands x_{k,j} ([n_j, B]) side by side: Y is [m, K B],
 * row-major, and step k's block is its columns k B .. k B + B - 1 (row
 * stride K B).  affine_block reads its block strided and writes its da into
 * the same columns of Y's gradient, so that gradient is already the
 * [m, K B] matrix backward multiplies: nothing is scattered or gathered but
 * the x's (n_j B per step).  The gathered X's live only for the duration
 * of a call (forward: a buffer from the context's allocator, or one product
 * per step if that fails; backward: the sweep's workspace), so the entry
 * keeps nothing but Y.  With B = 1 and the x's one after another (a
 * borrowed input sequence) X^T is read in place.
 * Inputs: A1..Ap ([m, n_j]), b1..bq ([m, 1]), then x_{k,j} at p + q + k p + j.
 * Attributes: p >= 1, q >= 0, K >= 1.
 *
 * affine_block: y = act(A1 x1 + ... + Ap xp + t1 + ... + tq + S_k), affine
 * (ops/affine.c) with one more term: block k of a stack S ([m, K n]).
 * Attributes: p, the activation (0 none, 1 tanh, 2 sigmoid), k, K. */
#include "affine.h"
#include "gemm.h"
#include <cblas.h>
#include <string.h>

enum { ACT_NONE, ACT_TANH, ACT_SIGMOID }; /* as affine's attribute 1 */

/* ---- one wide product, split over the threads ----------------------------
 * c = op(a) op(b) (+ c), row-major with leading dimensions (gemm.h's
 * kernels take dense operands only).  With two threads or more it is cut
 * along c's longer side: a wide [m, K B] product by columns, so that each
 * call packs only its share of the wide operand (by rows every call would
 * pack all of it), a tall one by rows.  Every element of c is computed by
 * one call, from the same operands in the same order. */
typedef struct wide_call {
    CBLAS_TRANSPOSE ta, tb;
    int m, n, k, lda, ldb, ldc, parts, by_cols, grain;
    const tg_real *a, *b;
    tg_real *c;
    tg_real beta;
} wide_call;

static void gemm_call(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const tg_real *a, int lda,
                      const tg_real *b, int ldb, tg_real beta, tg_real *c, int ldc)
{
#ifdef TG_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
#endif
}

static void wide_run(void *arg, int job)
{
    const wide_call *w = arg;
    const int len = w->by_cols ? w->n : w->m;
    const int per = ((len + w->parts - 1) / w->parts + w->grain - 1) / w->grain * w->grain;
    const int lo = job * per, cnt = len - lo < per ? len - lo : per;
    if (cnt <= 0) return;
    if (w->by_cols) {
        const tg_real *b = w->tb == CblasNoTrans ? w->b + lo : w->b + (size_t)lo * (size_t)w->ldb;
        gemm_call(w->ta, w->tb, w->m, cnt, w->k, w->a, w->lda, b, w->ldb, w->beta, w->c + lo, w->ldc);
    } else {
        const tg_real *a = w->ta == CblasNoTrans ? w->a + (size_t)lo * (size_t)w->lda : w->a + lo;
        gemm_call(w->ta, w->tb, cnt, w->n, w->k, a, w->lda, w->b, w->ldb, w->beta, w->c + (size_t)lo * (size_t)w->ldc,
                  w->ldc);
    }
}

static void wide_gemm(tg_ctx *ctx, bool ta, bool tb, int m, int n, int k, const tg_real *a, int lda,
                      const tg_real *b, int ldb, bool acc, tg_real *c, int ldc)
{
    if (m < 1 || n < 1) return;
    if (k < 1) {
        if (!acc)
            for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof *c);
        return;
    }
    wide_call w = {ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, lda, ldb, ldc, 1, n >= m,
                   0, a, b, c, acc ? 1 : 0};
    w.grain = w.by_cols ? 16 : 8; /* whole cache lines of c; whole register blocks of rows */
    const int len = w.by_cols ? n : m;
    if (ctx->threads >= 2 && ctx->pool && (size_t)m * (size_t)n * (size_t)k >= ctx->par_min_mnk &&
        tg_blas_is_single_threaded()) {
        w.parts = ctx->threads < (len + w.grain - 1) / w.grain ? ctx->threads : (len + w.grain - 1) / w.grain;
    }
    if (w.parts <= 1) {
        w.parts = 1;
        wide_run(&w, 0);
        return;
    }
    const int per = ((len + w.parts - 1) / w.parts + w.grain - 1) / w.grain * w.grain;
    tg_parallel(ctx, (len + per - 1) / per, wide_run, &w);
}

/* ---- stack_affine ------------------------------------------------------ */
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
    if ((long long)B * nk > 0x7fffffff) {
        snprintf(err, err_len, "%d steps of %d columns are too many columns", nk, B);
        return -1;
    }
    out[0] = m;
    out[1] = B * nk;
    return 0;
}

typedef struct stack_dims {
    int p, q, K, m, B, KB;
} stack_dims;

static stack_dims dims_of(const tg_tensor *out)
{
    stack_dims d = {(int)out->attr[0], (int)out->attr[1], (int)out->attr[2], out->rows, 0, out->cols};
    d.B = d.KB / d.K;
    return d;
}

static tg_tensor *x_at(const tg_tensor *out, const stack_dims *d, int k, int j)
{
    return out->in[d->p + d->q + k * d->p + j];
}

/* With B = 1, the x's of product j lying one after another are X^T itself. */
static bool in_place(const tg_tensor *out, const stack_dims *d, int j)
{
    if (d->B != 1) return false;
    const tg_tensor *x0 = x_at(out, d, 0, j);
    for (int k = 1; k < d->K; k++)
        if (x_at(out, d, k, j)->val != x0->val + (size_t)k * (size_t)x0->rows) return false;
    return true;
}

static int widest(const tg_tensor *out, const stack_dims *d)
{
    int w = 0;
    for (int j = 0; j < d->p; j++)
        if (out->in[j]->cols > w) w = out->in[j]->cols;
    return w;
}

/* Xj [n_j, K B]: the operands of product j side by side */
static void gather(const tg_tensor *out, const stack_dims *d, int j, tg_real *xs)
{
    const int nj = out->in[j]->cols, B = d->B;
    const size_t KB = (size_t)d->KB;
    for (int k = 0; k < d->K; k++) {
        const tg_real *xk = x_at(out, d, k, j)->val;
        for (int i = 0; i < nj; i++)
            memcpy(xs + (size_t)i * KB + (size_t)k * B, xk + (size_t)i * B, (size_t)B * sizeof *xs);
    }
}

static void stack_forward(tg_tensor *out)
{
    stack_dims d = dims_of(out);
    tg_ctx *ctx = out->op->ctx;
    const int m = d.m, B = d.B, KB = d.KB;
    tg_real *y = out->val;
    size_t tmp_len = (size_t)widest(out, &d) * (size_t)KB;
    tg_real *tmp = NULL;
    for (int j = 0; j < d.p; j++) {
        const tg_tensor *a = out->in[j];
        const int nj = a->cols;
        if (in_place(out, &d, j)) { /* Y [m, K] = A [m, n_j] (X^T [K, n_j])^T */
            wide_gemm(ctx, false, true, m, KB, nj, a->val, nj, x_at(out, &d, 0, j)->val, nj, j > 0, y, KB);
            continue;
        }
        /* the allocator directly: a failure takes the slower path, and is no error */
        if (!tmp) tmp = ctx->alloc.alloc(tmp_len * sizeof *tmp, ctx->alloc.user);
        if (tmp) {
            gather(out, &d, j, tmp);
            wide_gemm(ctx, false, false, m, KB, nj, a->val, nj, tmp, KB, j > 0, y, KB);
        } else { /* no room for the gathered X: one product per step, same sums */
            for (int k = 0; k < d.K; k++)
                wide_gemm(ctx, false, false, m, B, nj, a->val, nj, x_at(out, &d, k, j)->val, B, j > 0, y + (size_t)k * B,
                          KB);
        }
    }
    if (tmp) tg_free(ctx, tmp, tmp_len * sizeof *tmp);
    for (int r = 0; d.q && r < m; r++) {
        tg_real s = 0;
        for (int i = d.p; i < d.p + d.q; i++) s += out->in[i]->val[r];
        tg_real *restrict yr = y + (size_t)r * KB;
        for (int c = 0; c < KB; c++) yr[c] += s;
    }
}

static bool x_needs_grad(const tg_tensor *out, const stack_dims *d)
{
    for (int i = d->p + d->q; i < out->n_in; i++)
        if (out->in[i]->requires_grad) return true;
    return false;
}

/* backward's workspace: one gathered Xj, then one dXj */
static size_t stack_backward_scratch(const tg_tensor *out)
{
    stack_dims d = dims_of(out);
    size_t w = (size_t)widest(out, &d) * (size_t)d.KB;
    return w * (1 + x_needs_grad(out, &d));
}

static void stack_backward(tg_tensor *out)
{
    stack_dims d = dims_of(out);
    tg_ctx *ctx = out->op->ctx;
    const int m = d.m, B = d.B, KB = d.KB;
    const tg_real *g = out->grad; /* [m, K B]: the steps' da, written in place by affine_block */
    tg_real *xs = out->scratch, *dx = xs + (size_t)widest(out, &d) * (size_t)KB;
    for (int i = d.p; i < d.p + d.q; i++) {
        tg_real *db = out->in[i]->grad;
        if (!db) continue;
        for (int r = 0; r < m; r++) {
            const tg_real *restrict gr = g + (size_t)r * KB;
            tg_real s = 0;
            for (int c = 0; c < KB; c++) s += gr[c];
            db[r] += s;
        }
    }
    const bool want_dx = x_needs_grad(out, &d);
    for (int j = 0; j < d.p; j++) {
        tg_tensor *a = out->in[j];
        const int nj = a->cols;
        const bool flat = in_place(out, &d, j);
        const tg_real *xm = flat ? x_at(out, &d, 0, j)->val : xs;
        if (a->grad) {
            if (flat) /* dA [m, n_j] += G [m, K] X^T [K, n_j] */
                wide_gemm(ctx, false, false, m, nj, KB, g, KB, xm, nj, true, a->grad, nj);
            else { /* dA += G [m, K B] Xj^T */
                gather(out, &d, j, xs);
                wide_gemm(ctx, false, true, m, nj, KB, g, KB, xm, KB, true, a->grad, nj);
            }
        }
        bool any = false;
        for (int k = 0; want_dx && k < d.K; k++) any |= x_at(out, &d, k, j)->grad != NULL;
        if (!any) continue;
        /* dXj [n_j, K B] = A^T G, added into each step's x */
        wide_gemm(ctx, true, false, nj, KB, m, a->val, nj, g, KB, false, dx, KB);
        for (int k = 0; k < d.K; k++) {
            tg_real *gx = x_at(out, &d, k, j)->grad;
            for (int i = 0; gx && i < nj; i++) {
                tg_real *restrict gr = gx + (size_t)i * B;
                const tg_real *restrict src = dx + (size_t)i * KB + (size_t)k * B;
                for (int c = 0; c < B; c++) gr[c] += src[c];
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
    .backward_scratch = stack_backward_scratch,
    .test = {
        .n_cases = 5,
        .cases = {
            /* wide enough to split over two threads (test_threads): Y and dX
             * by columns, dA by rows */
            {.n_in = 8, .shape = {{9, 3}, {9, 1}, {3, 4}, {3, 4}, {3, 4}, {3, 4}, {3, 4}, {3, 4}}, .attrs = {1, 1, 6}},
            /* U x_k + b over 3 steps of batch 2 */
            {.n_in = 5, .shape = {{3, 2}, {3, 1}, {2, 2}, {2, 2}, {2, 2}}, .attrs = {1, 1, 3}},
            /* batch 1: X^T in place when the x's are adjacent, no term */
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

/* ---- affine_block ------------------------------------------------------ */
static int block_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t err_len)
{
    if (ops_check_inputs(n, -1, in, err, err_len)) return -1;
    double p = attrs[0], act = attrs[1], k = attrs[2], K = attrs[3];
    if (!(p >= 0 && p == (int)p && 2 * p < n)) {
        snprintf(err, err_len, "%g products need %g inputs and the stack, not %d", p, 2 * p + 1, n);
        return -1;
    }
    if (act != ACT_NONE && act != ACT_TANH && act != ACT_SIGMOID) {
        snprintf(err, err_len, "the activation must be 0 (none), 1 (tanh) or 2 (sigmoid), not %g", act);
        return -1;
    }
    if (!(K >= 1 && K <= 0x7fffffff && K == (int)K && k >= 0 && k < K && k == (int)k)) {
        snprintf(err, err_len, "block %g of %g: the block must be a whole number from 0 to blocks - 1", k, K);
        return -1;
    }
    const int np = (int)p, *s = in[n - 1];
    if (s[1] % (int)K) {
        snprintf(err, err_len, "the stack [%d, %d] does not split into %g blocks of columns", s[0], s[1], K);
        return -1;
    }
    const int rows = s[0], cols = s[1] / (int)K;
    for (int i = 0; i < np; i++) {
        const int *a = in[2 * i], *x = in[2 * i + 1];
        if (a[0] != rows || a[1] != x[0] || x[1] != cols) {
            snprintf(err, err_len, "product %d: [%d, %d] @ [%d, %d]; the block is [%d, %d]", i + 1, a[0], a[1], x[0],
                     x[1], rows, cols);
            return -1;
        }
    }
    for (int i = 2 * np; i < n - 1; i++)
        if (in[i][0] != rows || (in[i][1] != cols && in[i][1] != 1)) {
            snprintf(err, err_len, "term %d is [%d, %d]; it must be [%d, %d] or [%d, 1]", i - 2 * np + 1, in[i][0],
                     in[i][1], rows, cols, rows);
            return -1;
        }
    out[0] = rows;
    out[1] = cols;
    return 0;
}

static void block_forward(tg_tensor *out)
{
    const int np = (int)out->attr[0], k = (int)out->attr[2], m = out->rows, n = out->cols;
    const tg_tensor *s = out->in[out->n_in - 1];
    tg_real *restrict y = out->val;
    for (int r = 0; r < m; r++) /* the block first: the products then add into it */
        memcpy(y + (size_t)r * n, s->val + (size_t)r * s->cols + (size_t)k * n, (size_t)n * sizeof *y);
    for (int i = 0; i < np; i++) {
        const tg_tensor *a = out->in[2 * i], *x = out->in[2 * i + 1];
        tg_mm_forward(out->op->ctx, m, n, a->cols, a->val, x->val, y, true);
    }
    for (int i = 2 * np; i < out->n_in - 1; i++) {
        const tg_tensor *t = out->in[i];
        const tg_real *restrict v = t->val;
        if (t->cols == n) {
            size_t len = tg_numel(out);
            for (size_t j = 0; j < len; j++) y[j] += v[j];
        } else {
            for (int r = 0; r < m; r++) {
                tg_real b = v[r], *restrict yr = y + (size_t)r * n;
                for (int j = 0; j < n; j++) yr[j] += b;
            }
        }
    }
    tg_affine_activate(out->op->ctx, (int)out->attr[1], y, tg_numel(out));
}

static size_t block_backward_scratch(const tg_tensor *out)
{
    return (int)out->attr[1] == ACT_NONE ? 0 : tg_numel(out);
}

static void block_backward(tg_tensor *out)
{
    const int k = (int)out->attr[2], m = out->rows, n = out->cols;
    const tg_real *da = tg_affine_da(out); /* contiguous, as the products' kernels read it */
    tg_tensor *s = out->in[out->n_in - 1];
    if (s->grad) /* into the stack's gradient, where its one wide product reads it */
        for (int r = 0; r < m; r++) {
            tg_real *restrict ds = s->grad + (size_t)r * s->cols + (size_t)k * n;
            const tg_real *restrict dr = da + (size_t)r * n;
            for (int j = 0; j < n; j++) ds[j] += dr[j];
        }
    /* the rest is affine's sum (W's part deferred as affine's is) */
    tg_affine_backward_sum(out, da, out->n_in - 1);
}

const tg_builtin_op tg_op_affine_block = {
    .name = "affine_block",
    .arity = -1,
    .n_attrs = 4,
    .differentiable = true,
    .shape = block_shape,
    .forward = block_forward,
    .backward = block_backward,
    .backward_scratch = block_backward_scratch,
    .test = {
        .n_cases = 4,
        .cases = {
            /* W h + block 1 of 3, tanh */
            {.n_in = 3, .shape = {{3, 3}, {3, 4}, {3, 12}}, .attrs = {1, ACT_TANH, 1, 3}},
            /* the block alone, the last of 2, sigmoid, batch 1 */
            {.n_in = 1, .shape = {{4, 2}}, .attrs = {0, ACT_SIGMOID, 1, 2}},
            /* a product, a bias, block 0 of 2, no activation */
            {.n_in = 4, .shape = {{2, 3}, {3, 5}, {2, 1}, {2, 10}}, .attrs = {1, ACT_NONE, 0, 2}},
            /* two products (gemm's size), a full-shape term, the middle block of 3 */
            {.n_in = 6, .shape = {{6, 3}, {3, 5}, {6, 4}, {4, 5}, {6, 5}, {6, 15}}, .attrs = {2, ACT_TANH, 1, 3}},
        },
        .tol = 1e-3,
    },
};
