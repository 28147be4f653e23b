/* affine.c — y = act(A1 x1 + ... + Ap xp + t1 + ... + tq), one entry for
 * what a recurrent cell writes as a = U @ x + W @ h + b; h = tanh(a).
 *
 * The model compiler fuses those equations into this op (models/fuse.c)
 * because, recorded one operator at a time, they cost 2p + q entries, as
 * many value buffers and gradients, and as many passes over memory; fused,
 * the products accumulate into one buffer (gemm beta = 1), the terms and the
 * activation are applied in place, and only y is kept.  Backward forms
 * da = dy act'(y) in a workspace the sweep lends for the call, from y alone,
 * as the tanh and sigmoid ops do.
 *
 * Inputs: A1, x1, ..., Ap, xp, then the terms t1..tq (q >= 0), each [m, n]
 * or a column [m, 1] spread across the n columns (a bias).  With p = 0 it
 * is act(t1 + ... + tq), what a layer-normalised gate writes as
 * sigmoid(layer_norm(..) + layer_norm(..) + b): then at least one term is
 * [m, n] and gives the shape.
 * Attributes: p, and the activation (0 none, 1 tanh, 2 sigmoid). */
#include "affine.h"
#include "gemm.h"

enum { ACT_NONE, ACT_TANH, ACT_SIGMOID };

static int affine_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err,
                        size_t err_len)
{
    if (ops_check_inputs(n, -1, in, err, err_len)) return -1;
    double p = attrs[0], act = attrs[1];
    if (!(p >= 0 && p <= n / 2 && p == (int)p)) {
        snprintf(err, err_len, "the number of products must be a whole number from 0 to %d, not %g", n / 2, p);
        return -1;
    }
    if (!(act == ACT_NONE || act == ACT_TANH || act == ACT_SIGMOID)) {
        snprintf(err, err_len, "the activation must be 0 (none), 1 (tanh) or 2 (sigmoid), not %g", act);
        return -1;
    }
    int np = (int)p, rows = in[0][0], cols = np ? in[1][1] : 0;
    for (int i = 0; !np && i < n; i++) cols = in[i][1] > cols ? in[i][1] : cols;
    for (int i = 0; i < np; i++) {
        const int *a = in[2 * i], *x = in[2 * i + 1];
        if (a[1] != x[0]) {
            snprintf(err, err_len, "product %d: inner dimensions differ: [%d, %d] @ [%d, %d]", i + 1, a[0], a[1],
                     x[0], x[1]);
            return -1;
        }
        if (a[0] != rows || x[1] != cols) {
            snprintf(err, err_len, "product %d is [%d, %d], the first is [%d, %d]", i + 1, a[0], x[1], rows, cols);
            return -1;
        }
    }
    for (int i = 2 * np; i < n; i++) {
        if (in[i][0] != rows || (in[i][1] != cols && in[i][1] != 1)) {
            snprintf(err, err_len, "term %d is [%d, %d]; it must be [%d, %d] or [%d, 1]", i - 2 * np + 1, in[i][0],
                     in[i][1], rows, cols, rows);
            return -1;
        }
    }
    out[0] = rows;
    out[1] = cols;
    return 0;
}

/* The activation over a cell's values, split across the context's threads
 * when there are enough of them: at the medium benchmark size (256 x 32) the
 * tanh was a third of what the caller's thread did while the products were
 * already split. */
#define ACT_PAR_MIN 4096
typedef struct act_job {
    tg_real *y;
    size_t n, chunk;
    int act;
} act_job;

static void act_run(void *arg, int job)
{
    const act_job *a = arg;
    size_t lo = (size_t)job * a->chunk, len = a->n - lo < a->chunk ? a->n - lo : a->chunk;
    if (a->act == ACT_TANH) tg_tanh_inplace(a->y + lo, len);
    else tg_sigmoid_inplace(a->y + lo, len);
}

static void activate(tg_ctx *ctx, int act, tg_real *y, size_t n)
{
    if (act == ACT_NONE) return;
    act_job a = {y, n, n, act};
    int parts = ctx->threads > 1 && n >= ACT_PAR_MIN ? ctx->threads : 1;
    if (parts == 1) {
        act_run(&a, 0);
        return;
    }
    a.chunk = (n / (size_t)parts + 15) & ~(size_t)15; /* whole vectors, aligned as y is */
    parts = (int)((n + a.chunk - 1) / a.chunk);
    tg_parallel(ctx, parts, act_run, &a);
}

void tg_affine_activate(tg_ctx *ctx, int act, tg_real *y, size_t n) { activate(ctx, act, y, n); }

static void affine_forward(tg_tensor *out)
{
    const int np = (int)out->attr[0], m = out->rows, n = out->cols;
    tg_real *restrict y = out->val;
    if (!np) memset(y, 0, tg_numel(out) * sizeof *y);
    for (int i = 0; i < np; i++) {
        const tg_tensor *a = out->in[2 * i], *x = out->in[2 * i + 1];
        tg_mm_forward(out->op->ctx, m, n, a->cols, a->val, x->val, y, i > 0);
    }
    for (int i = 2 * np; i < out->n_in; i++) {
        const tg_tensor *t = out->in[i];
        const tg_real *restrict v = t->val;
        if (t->cols == n) {
            size_t len = tg_numel(out);
            for (size_t j = 0; j < len; j++) y[j] += v[j];
        } else {
            for (int r = 0; r < m; r++) {
                tg_real s = v[r], *restrict yr = y + (size_t)r * n;
                for (int j = 0; j < n; j++) yr[j] += s;
            }
        }
    }
    activate(out->op->ctx, (int)out->attr[1], y, tg_numel(out));
}

/* At most DEFER_MAX products and biases of one entry are deferred (a cell
 * has 2 or 3); an entry with more adds them all at once. */
#define DEFER_MAX 16

static size_t affine_backward_scratch(const tg_tensor *out)
{
    return (int)out->attr[1] == ACT_NONE ? 0 : tg_numel(out);
}

const tg_real *tg_affine_da(tg_tensor *out)
{
    const int act = (int)out->attr[1];
    const size_t len = tg_numel(out);
    const tg_real *restrict y = out->val, *restrict g = out->grad;
    if (act == ACT_NONE) return g;
    tg_real *restrict d = out->scratch; /* lent by the sweep for this call */
    if (act == ACT_TANH)
        for (size_t j = 0; j < len; j++) d[j] = g[j] * (1 - y[j] * y[j]);
    else
        for (size_t j = 0; j < len; j++) d[j] = g[j] * y[j] * (1 - y[j]);
    return d;
}

void tg_affine_backward_sum(tg_tensor *out, const tg_real *da, int n_in)
{
    const int np = (int)out->attr[0], m = out->rows, n = out->cols;
    const size_t len = tg_numel(out);
    /* The parameters' parts (dA += da x^T, a bias's row sums) wait for the
     * sweep to add every step's at once (core/defer.c); what flows on into
     * the x's and the other terms is needed now. */
    tg_ctx *ctx = out->op->ctx;
    int kp = 0, kb = 0; /* how many products and biases the sweep took */
    if (ctx->defer && n <= ctx->defer->max_n && np <= DEFER_MAX) {
        tg_tensor *pa[DEFER_MAX], *pb[DEFER_MAX];
        const tg_real *px[DEFER_MAX];
        size_t cols = 0;
        for (int i = 0; i < np; i++)
            if (tg_defer_wants(ctx, out->in[2 * i])) {
                pa[kp] = out->in[2 * i];
                cols += (size_t)pa[kp]->cols;
                px[kp++] = out->in[2 * i + 1]->val;
            }
        if (!tg_defer_worth(ctx, m, n, cols)) kp = 0;
        for (int i = 2 * np; kp && i < n_in && kb < DEFER_MAX; i++)
            if (tg_defer_wants(ctx, out->in[i]) && out->in[i]->cols == 1) pb[kb++] = out->in[i];
        if (!kp || !tg_mm_grad_a_deferred(out, da, kp, pa, px, kb, pb)) kp = kb = 0;
    }
    for (int i = 0; i < np; i++) {
        tg_tensor *a = out->in[2 * i], *x = out->in[2 * i + 1];
        tg_real *ga = kp && tg_defer_wants(ctx, a) ? NULL : a->grad;
        if (ga || x->grad) tg_mm_backward(ctx, m, n, a->cols, a->val, x->val, da, ga, x->grad);
    }
    for (int i = 2 * np; i < n_in; i++) {
        if (kb && tg_defer_wants(ctx, out->in[i]) && out->in[i]->cols == 1) { /* the first kb of these were taken */
            kb--;
            continue;
        }
        tg_real *restrict dt = out->in[i]->grad;
        if (!dt) continue;
        if (out->in[i]->cols == n) {
            for (size_t j = 0; j < len; j++) dt[j] += da[j];
        } else {
            for (int r = 0; r < m; r++) {
                const tg_real *restrict dr = da + (size_t)r * n;
                tg_real s = 0;
                for (int j = 0; j < n; j++) s += dr[j];
                dt[r] += s;
            }
        }
    }
}

static void affine_backward(tg_tensor *out) { tg_affine_backward_sum(out, tg_affine_da(out), out->n_in); }

const tg_builtin_op tg_op_affine = {
    .name = "affine",
    .arity = -1,
    .n_attrs = 2,
    .differentiable = true,
    .shape = affine_shape,
    .forward = affine_forward,
    .backward = affine_backward,
    .backward_scratch = affine_backward_scratch,
    .test = {
        .n_cases = 5,
        .cases = {
            /* an Elman cell: U x + W h + b, tanh */
            {.n_in = 5, .shape = {{3, 2}, {2, 4}, {3, 3}, {3, 4}, {3, 1}}, .attrs = {2, ACT_TANH}},
            /* a gate over a batch-1 column (the matrix-vector loops), sigmoid */
            {.n_in = 3, .shape = {{5, 7}, {7, 1}, {5, 1}}, .attrs = {1, ACT_SIGMOID}},
            /* no activation, a full-shape term and a bias */
            {.n_in = 4, .shape = {{2, 3}, {3, 3}, {2, 3}, {2, 1}}, .attrs = {1, ACT_NONE}},
            /* large enough for gemm, no terms */
            {.n_in = 4, .shape = {{6, 3}, {3, 5}, {6, 4}, {4, 5}}, .attrs = {2, ACT_TANH}},
            /* no products: a sum of terms under a sigmoid, bias first */
            {.n_in = 3, .shape = {{3, 1}, {3, 4}, {3, 4}}, .attrs = {0, ACT_SIGMOID}},
        },
        .tol = 1e-3,
    },
};
