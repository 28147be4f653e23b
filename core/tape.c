/* tape.c — the Wengert list.  Every op appends one entry in execution order,
 * which is a topological order, so the reverse sweep is a plain backwards
 * loop: no recursion, no graph search, any length.  BPTT is this same sweep
 * over an unrolled tape; nothing here knows about time. */
#include "tg_internal.h"
#include <math.h>

tg_tape *tg_tape_new(tg_ctx *ctx)
{
    if (!ctx) return NULL;
    tg_tape *tp = tg_alloc(ctx, sizeof *tp);
    if (!tp) return NULL;
    memset(tp, 0, sizeof *tp);
    tp->ctx = ctx;
    tp->defer.min_elems = TG_DEFER_MIN_ELEMS;
    tp->defer.max_n = TG_DEFER_MAX_N;
    tg_arena_init(&tp->arena, ctx);
    return tp;
}

void tg_tape_free(tg_tape *tp)
{
    if (!tp) return;
    tg_arena_release(&tp->arena);
    tg_free(tp->ctx, tp->nodes, (size_t)tp->cap * sizeof *tp->nodes);
    tg_free(tp->ctx, tp, sizeof *tp);
}

void tg_tape_reset(tg_tape *tp)
{
    if (!tp) return;
    tp->n = 0;
    tp->n_free_sizes = 0; /* the buffers go back with the arena */
    tp->work = NULL;
    tp->work_len = 0;
    tg_defer_reset(tp);
    tg_arena_reset(&tp->arena);
}

/* The read-only views and setters take NULL as "nothing": 0, NULL, no-op. */
tg_ctx *tg_tape_ctx(tg_tape *tp) { return tp ? tp->ctx : NULL; }
int tg_tape_length(const tg_tape *tp) { return tp ? tp->n : 0; }
tg_tensor *tg_tape_at(tg_tape *tp, int i) { return tp && i >= 0 && i < tp->n ? tp->nodes[i] : NULL; }
size_t tg_tape_bytes(const tg_tape *tp)
{
    return tp ? tp->arena.reserved + (size_t)tp->cap * sizeof *tp->nodes : 0;
}
void tg_tape_detect_anomaly(tg_tape *tp, int on)
{
    if (tp) tp->detect_anomaly = on != 0;
}
void tg_tape_keep_grads(tg_tape *tp, int keep)
{
    if (tp) tp->recycle_grads = !keep;
}
void tg_tape_set_training(tg_tape *tp, int on)
{
    if (tp) tp->training = on != 0;
}
int tg_tape_training(const tg_tape *tp) { return tp ? tp->training : 0; }

/* Gradient buffers a sweep no longer needs, kept by exact size for the next
 * request of that size.  An RNN's entries come in a handful of sizes; past
 * 16 sizes a buffer is simply left in the arena. */
static void grad_release(tg_tape *tp, tg_real *g, size_t bytes)
{
    int i = 0;
    while (i < tp->n_free_sizes && tp->free_grads[i].bytes != bytes) i++;
    if (i == tp->n_free_sizes) {
        if (i == 16 || bytes < sizeof(void *)) return;
        tp->free_grads[tp->n_free_sizes++] = (struct tg_free_grads){bytes, NULL};
    }
    *(void **)g = tp->free_grads[i].head;
    tp->free_grads[i].head = g;
}

/* A gradient buffer comes from the arena, which rounds every block up to 16
 * bytes, so the few-unit buffers of a small RNN are cleared in whole 16-byte
 * stores of a known size instead of a call to memset (GCC turns a loop back
 * into that call). */
static inline void zero_grad_buffer(tg_real *g, size_t bytes)
{
    char *c = (char *)g;
    switch ((bytes + 15) / 16) {
    case 4: memset(c + 48, 0, 16); /* fall through */
    case 3: memset(c + 32, 0, 16); /* fall through */
    case 2: memset(c + 16, 0, 16); /* fall through */
    case 1: memset(c, 0, 16); break;
    default: memset(c, 0, bytes);
    }
}

static tg_real *grad_alloc(tg_tape *tp, size_t bytes)
{
    for (int i = 0; i < tp->n_free_sizes; i++)
        if (tp->free_grads[i].bytes == bytes && tp->free_grads[i].head) {
            void *g = tp->free_grads[i].head;
            tp->free_grads[i].head = *(void **)g;
            return g;
        }
    return tg_arena_alloc(&tp->arena, bytes);
}

void tg_tape_set_sweep_hook(tg_tape *tp, tg_sweep_hook fn, void *user)
{
    if (!tp) return;
    tp->hook = fn;
    tp->hook_user = user;
}

void tg_tape_set_segment_hook(tg_tape *tp, tg_segment_hook fn, void *user)
{
    if (!tp) return;
    tp->seg_hook = fn;
    tp->seg_hook_user = user;
}

/* ---- tensor views ---------------------------------------------------------- */
/* NULL reads as an empty tensor: 0, NULL, NaN, -1 (no position) */
int tg_rows(const tg_tensor *t) { return t ? t->rows : 0; }
int tg_cols(const tg_tensor *t) { return t ? t->cols : 0; }
int tg_ndim(const tg_tensor *t) { return t ? t->ndim : 0; }
size_t tg_size(const tg_tensor *t) { return t ? tg_numel(t) : 0; }
tg_real *tg_data(tg_tensor *t) { return t ? t->val : NULL; }
tg_real *tg_grad(tg_tensor *t) { return t ? t->grad : NULL; }
int tg_tensor_arity(const tg_tensor *t) { return t ? t->n_in : 0; }
tg_tensor *tg_tensor_input(tg_tensor *t, int i) { return t && i >= 0 && i < t->n_in ? t->in[i] : NULL; }
int tg_tensor_index(const tg_tensor *t) { return t ? t->index : -1; }
double tg_attr(const tg_tensor *t, int i) { return t && i >= 0 && i < TG_MAX_ATTRS ? t->attr[i] : NAN; }
double tg_item(tg_tensor *t) { return t && tg_numel(t) == 1 ? (double)t->val[0] : NAN; }

const char *tg_tensor_op(const tg_tensor *t)
{
    if (!t) return NULL;
    if (t->op) return t->op->def.name;
    return t->kind == TG_KIND_PARAM ? "param" : "input";
}

void tg_tensor_set_label(tg_tensor *t, const char *label, int step)
{
    if (!t) return;
    t->label = label;
    t->step = step;
}

void tg_tensor_set_source(tg_tensor *t, const char *file, int line, int column)
{
    if (!t) return;
    t->file = file;
    t->line = line;
    t->column = column;
}

const char *tg_tensor_label(const tg_tensor *t, int *step)
{
    if (step) *step = t ? t->step : -1;
    return t ? t->label : NULL;
}

/* ---- recording ------------------------------------------------------------- */
static tg_status push(tg_tape *tp, tg_tensor *t)
{
    if (tp->n == tp->cap) {
        int cap = tp->cap ? tp->cap * 2 : 256;
        tg_tensor **nodes = tg_realloc(tp->ctx, tp->nodes, (size_t)tp->cap * sizeof *nodes,
                                       (size_t)cap * sizeof *nodes);
        if (!nodes) return TG_ERR_NOMEM;
        tp->nodes = nodes;
        tp->cap = cap;
    }
    t->index = tp->n;
    tp->nodes[tp->n++] = t;
    return TG_OK;
}

/* One arena block per entry: the struct, its input list, then its value
 * (on a cache line when it is large enough to be worth one). */
static tg_tensor *new_entry(tg_tape *tp, int rows, int cols, int ndim, int n_in, bool own_value)
{
    size_t n = (size_t)rows * (size_t)cols, vbytes = own_value ? n * sizeof(tg_real) : 0;
    size_t head = sizeof(tg_tensor) + (size_t)n_in * sizeof(tg_tensor *);
    head = vbytes >= TG_ALIGN ? (head + TG_ALIGN - 1) & ~(size_t)(TG_ALIGN - 1) : (head + 15) & ~(size_t)15;
    char *block = tg_arena_alloc(&tp->arena, head + vbytes);
    if (!block) return NULL;
    tg_tensor *t = (tg_tensor *)block;
    *t = (tg_tensor){
        .val = own_value ? (tg_real *)(block + head) : NULL,
        .in = (tg_tensor **)(t + 1),
        .n_in = n_in,
        .rows = rows,
        .cols = cols,
        .ndim = (signed char)ndim,
        .step = -1,
    };
    return t;
}

/* Largest tensor a tape accepts: keeps rows*cols*sizeof well inside size_t
 * and a mistyped dimension from asking the allocator for terabytes. */
#define TG_MAX_ELEMS ((size_t)1 << 31)

static int finite_all(const tg_real *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static tg_tensor *input(tg_tape *tp, int rows, int cols, const tg_real *data, int requires_grad,
                        bool borrow)
{
    if (!tp) return NULL;
    int ndim = cols == 0 ? 1 : 2;
    if (cols == 0) cols = 1;
    if (rows < 1 || cols < 1) {
        tg_error(tp->ctx, TG_ERR_ARG, "input: bad shape [%d, %d]: sizes must be at least 1", rows, cols);
        return NULL;
    }
    if ((size_t)rows * (size_t)cols > TG_MAX_ELEMS) {
        tg_error(tp->ctx, TG_ERR_LIMIT, "input: shape [%d, %d] has more than %zu elements, the most one "
                 "tensor may hold", rows, cols, TG_MAX_ELEMS);
        return NULL;
    }
    if (borrow && !data) {
        tg_error(tp->ctx, TG_ERR_ARG, "input_ref: data is NULL");
        return NULL;
    }
    tg_tensor *t = new_entry(tp, rows, cols, ndim, 0, !borrow);
    if (!t) return NULL;
    size_t n = tg_numel(t);
    if (borrow) t->val = (tg_real *)data; /* read-only by contract: no op writes an input */
    else if (data) memcpy(t->val, data, n * sizeof(tg_real));
    else memset(t->val, 0, n * sizeof(tg_real));
    t->kind = TG_KIND_INPUT;
    t->requires_grad = requires_grad != 0;
    if (push(tp, t)) return NULL;
    if (tp->detect_anomaly && !finite_all(t->val, n)) {
        char what[TG_ERRMSG_LEN - 64];
        tg_describe_entry(t, TG_DESCRIBE_VALUE, what, sizeof what);
        tg_error(tp->ctx, TG_ERR_NONFINITE, "non-finite value in input %s", what);
        return NULL;
    }
    return t;
}

tg_tensor *tg_input(tg_tape *tp, int rows, int cols, const tg_real *data, int requires_grad)
{
    return input(tp, rows, cols, data, requires_grad, false);
}

tg_tensor *tg_input_ref(tg_tape *tp, int rows, int cols, const tg_real *data)
{
    return input(tp, rows, cols, data, 0, true);
}

/* The part of recording that follows the checks: allocate, link, run. */
static tg_tensor *record(tg_tape *tp, const tg_op *op, int n, tg_tensor *const *in, const double *attrs,
                         int rows, int cols, int ndim, int needs_grad)
{
    const tg_builtin_op *d = &op->def;
    tg_tensor *t = new_entry(tp, rows, cols, ndim, n, true);
    if (!t) return NULL;
    t->op = op;
    for (int i = 0; i < n; i++) t->in[i] = in[i];
    memcpy(t->attr, attrs, sizeof t->attr);
    t->kind = TG_KIND_NODE;
    t->requires_grad = d->differentiable && needs_grad;
    t->train = tp->training;
    if (d->check) {
        char err[256] = "";
        if (d->check(t, err, sizeof err)) {
            tg_error(tp->ctx, TG_ERR_ARG, "%s: %s", d->name, err[0] ? err : "bad input values");
            return NULL;
        }
    }
    if (d->scratch) {
        size_t sz = d->scratch(t);
        if (sz && !(t->scratch = tg_arena_alloc(&tp->arena, sz * sizeof(tg_real)))) return NULL;
    }
    if (push(tp, t)) return NULL;
    d->forward(t);
    if (tp->detect_anomaly && !finite_all(t->val, tg_numel(t))) {
        char what[TG_ERRMSG_LEN - 64];
        tg_describe_entry(t, TG_DESCRIBE_VALUE, what, sizeof what);
        tg_error(tp->ctx, TG_ERR_NONFINITE, "non-finite value computed by %s", what);
        return NULL;
    }
    return t;
}

tg_tensor *tg_record(tg_tape *tp, const tg_op *op, int n, tg_tensor *const *in,
                     int n_attrs, const double *attrs)
{
    tg_ctx *ctx = tp->ctx;
    const tg_builtin_op *d = &op->def;
    char err[256], sh[32];
    if (tg_op_check_args(ctx, d, n, n_attrs)) return NULL;
    int shapes_small[8][2];
    int (*shapes)[2] = shapes_small;
    if (n > 8) {
        shapes = tg_arena_alloc(&tp->arena, (size_t)n * sizeof *shapes);
        if (!shapes) return NULL;
    }
    int all_1d = 1, needs_grad = 0;
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            /* chained failure: keep the first message; a NULL the caller
             * passed with no failure before it gets one of its own */
            if (ctx->status == TG_OK) tg_error(ctx, TG_ERR_ARG, "%s: input %d is NULL", d->name, i + 1);
            return NULL;
        }
        if (in[i]->kind == TG_KIND_PARAM) {
            if (tg_param_ctx(in[i]) != ctx) {
                tg_error(ctx, TG_ERR_ARG, "%s: input %d is a parameter of another context", d->name, i + 1);
                return NULL;
            }
        } else if (in[i]->index < 0 || in[i]->index >= tp->n || tp->nodes[in[i]->index] != in[i]) {
            tg_error(ctx, TG_ERR_ARG, "%s: input %d is not an entry of this tape "
                     "(another tape's, or recorded before a reset)", d->name, i + 1);
            return NULL;
        }
        shapes[i][0] = in[i]->rows;
        shapes[i][1] = in[i]->cols;
        all_1d &= in[i]->ndim == 1;
        needs_grad |= in[i]->requires_grad;
    }
    double a[TG_MAX_ATTRS] = {0};
    for (int i = 0; i < n_attrs; i++) a[i] = attrs[i];
    int out[2] = {0, 0};
    err[0] = 0;
    int bad = d->shape(n, (const int (*)[2])shapes, a, out, err, sizeof err) != 0;
    err[sizeof err - 1] = 0; /* a registered shape function may not terminate it */
    if (bad) {
        tg_error(ctx, TG_ERR_SHAPE, "%s: %s", d->name, err[0] ? err : "shapes do not fit");
        return NULL;
    }
    if (out[0] < 1 || out[1] < 1 || (size_t)out[0] * (size_t)out[1] > TG_MAX_ELEMS) {
        tg_error(ctx, TG_ERR_SHAPE, "%s: output shape %s is empty or too large", d->name,
                 tg_shape_str(sh, out[0], out[1], 2));
        return NULL;
    }
    return record(tp, op, n, in, a, out[0], out[1], all_1d && out[1] == 1 ? 1 : 2, needs_grad);
}

tg_tensor *tg_record_checked(tg_tape *tp, const tg_op *op, int n, tg_tensor *const *in, const double *attrs,
                             int rows, int cols)
{
    int all_1d = 1, needs_grad = 0;
    for (int i = 0; i < n; i++) {
        all_1d &= in[i]->ndim == 1;
        needs_grad |= in[i]->requires_grad;
    }
    return record(tp, op, n, in, attrs, rows, cols, all_1d && cols == 1 ? 1 : 2, needs_grad);
}

tg_tensor *tg_apply(tg_tape *tp, const char *name, int n, tg_tensor *const *in, int n_attrs,
                    const double *attrs)
{
    if (!tp) return NULL;
    if (!name) {
        tg_error(tp->ctx, TG_ERR_ARG, "tg_apply: op name is NULL");
        return NULL;
    }
    const tg_op *op = tg_op_lookup(tp->ctx, name);
    if (!op) {
        tg_error(tp->ctx, TG_ERR_NOTFOUND, "unknown op '%s'", name);
        return NULL;
    }
    if (n < 0 || (n > 0 && !in) || (n_attrs > 0 && !attrs)) {
        tg_error(tp->ctx, TG_ERR_ARG, "%s: bad input or attribute list", name);
        return NULL;
    }
    return tg_record(tp, op, n, in, n_attrs, attrs);
}

/* ---- the reverse sweep -------------------------------------------------------- */
static tg_status loss_check(tg_tape *tp, tg_tensor *loss)
{
    tg_ctx *ctx = tp->ctx;
    if (loss->index < 0 || loss->index >= tp->n || tp->nodes[loss->index] != loss)
        return tg_error(ctx, TG_ERR_ARG, "backward: the loss is not an entry of this tape");
    if (tg_numel(loss) != 1) {
        char sh[32];
        return tg_error(ctx, TG_ERR_SHAPE, "backward: the loss must be 1x1, not %s",
                        tg_shape_str(sh, loss->rows, loss->cols, loss->ndim));
    }
    return TG_OK;
}

static tg_status sweep(tg_tape *tp, tg_tensor *loss, int n_seeds, tg_tensor *const *seeds,
                       const tg_real *const *seed_grads);

tg_status tg_backward(tg_tape *tp, tg_tensor *loss)
{
    if (!tp) return TG_ERR_ARG;
    tg_ctx *ctx = tp->ctx;
    if (!loss) return tg_error(ctx, TG_ERR_ARG, "backward: loss is NULL");
    tg_status st = loss_check(tp, loss);
    if (st) return st;
    if (!isfinite(loss->val[0]))
        return tg_error(ctx, TG_ERR_NONFINITE, "backward: the loss is %g", (double)loss->val[0]);
    return sweep(tp, loss, 0, NULL, NULL);
}

tg_status tg_backward_seeded(tg_tape *tp, tg_tensor *loss, int n, tg_tensor *const *seeds,
                             const tg_real *const *grads, bool check_loss)
{
    tg_status st;
    if (loss && (st = loss_check(tp, loss))) return st;
    if (loss && check_loss && !isfinite(loss->val[0]))
        return tg_error(tp->ctx, TG_ERR_NONFINITE, "backward: the loss is %g", (double)loss->val[0]);
    for (int i = 0; i < n; i++)
        TG_ASSERT(seeds[i]->index >= 0 && seeds[i]->index < tp->n && tp->nodes[seeds[i]->index] == seeds[i]);
    return sweep(tp, loss, n, seeds, grads);
}

/* One reverse pass.  An entry's gradient is allocated and zeroed when its
 * first consumer is about to add into it: consumers come later on the tape,
 * so every consumer has run by the time the sweep reaches the entry itself.
 * Entries no path from the loss (or a seed) reaches are skipped and keep no
 * gradient; forward-only use of a tape pays nothing for them. */
static tg_status sweep(tg_tape *tp, tg_tensor *loss, int n_seeds, tg_tensor *const *seeds,
                       const tg_real *const *seed_grads)
{
    tg_ctx *ctx = tp->ctx;
    int last = loss ? loss->index : -1;
    for (int i = 0; i < n_seeds; i++)
        if (seeds[i]->index > last) last = seeds[i]->index;
    unsigned id = ++tp->sweep;
    if (id == 0) { /* wrapped after 2^32 sweeps: forget every old mark */
        for (int i = 0; i < tp->n; i++) tp->nodes[i]->sweep = 0;
        id = tp->sweep = 1;
    }
    int started = 0;
    if (loss && loss->requires_grad) {
        if (!loss->grad && !(loss->grad = tg_arena_alloc(&tp->arena, sizeof(tg_real)))) return TG_ERR_NOMEM;
        loss->grad[0] = 1;
        loss->sweep = id;
        started = 1;
    }
    for (int i = 0; i < n_seeds; i++) {
        tg_tensor *x = seeds[i];
        if (!x->requires_grad || x->kind == TG_KIND_PARAM) continue; /* nothing upstream needs it */
        size_t n = tg_numel(x);
        if (x->sweep != id) {
            x->sweep = id;
            if (!x->grad && !(x->grad = grad_alloc(tp, n * sizeof(tg_real)))) return TG_ERR_NOMEM;
            if (seed_grads[i]) memcpy(x->grad, seed_grads[i], n * sizeof(tg_real));
            else memset(x->grad, 0, n * sizeof(tg_real));
        } else if (seed_grads[i]) { /* seeded twice (two states, one entry): the sum */
            for (size_t j = 0; j < n; j++) x->grad[j] += seed_grads[i][j];
        }
        started = 1;
    }
    if (!started) return TG_OK; /* nothing upstream needs a gradient */

    /* From here every exit goes through `out`, which adds the products into
     * parameter gradients that ops deferred (core/defer.c). */
    struct tg_defer *prev = tg_defer_begin(tp);
    tg_status st = TG_OK;
    if (tp->hook) tp->hook(NULL, tp->hook_user);
    for (int i = last; i >= 0; i--) {
        tg_tensor *t = tp->nodes[i];
        if (t->sweep != id) {
            t->grad = NULL;
            continue;
        }
        if (!t->op) continue; /* a leaf: its gradient is complete */
        for (int k = 0; k < t->n_in; k++) {
            tg_tensor *x = t->in[k];
            if (!x->requires_grad || x->kind == TG_KIND_PARAM || x->sweep == id) continue;
            x->sweep = id;
            size_t bytes = tg_numel(x) * sizeof(tg_real);
            if (!x->grad && !(x->grad = grad_alloc(tp, bytes))) {
                st = TG_ERR_NOMEM;
                goto out;
            }
            zero_grad_buffer(x->grad, bytes);
        }
        if (t->op->def.backward_scratch) {
            size_t need = t->op->def.backward_scratch(t);
            if (need > tp->work_len) {
                if (!(tp->work = tg_arena_alloc(&tp->arena, need * sizeof(tg_real)))) {
                    st = TG_ERR_NOMEM;
                    goto out;
                }
                tp->work_len = need;
            }
            t->scratch = tp->work;
        }
        t->op->def.backward(t);
        if (tp->defer.err) goto out; /* its buffers could not be had */
        if (tp->hook) tp->hook(t, tp->hook_user);
        if (tp->detect_anomaly) {
            /* a NaN the entry deferred is added now, so that the message
             * shows the parameter's gradient as an immediate sweep has it */
            if (tg_defer_bad(tp, t)) tg_defer_flush(tp);
            for (int k = 0; k < t->n_in; k++) {
                tg_tensor *x = t->in[k];
                if (x->grad && !finite_all(x->grad, tg_numel(x))) {
                    char where[TG_ERRMSG_LEN - 64];
                    tg_describe_entry(t, TG_DESCRIBE_GRAD, where, sizeof where);
                    st = tg_error(ctx, TG_ERR_NONFINITE, "non-finite gradient flowing into input %d of %s", k, where);
                    goto out;
                }
            }
        }
        if (tp->recycle_grads && t != loss) {
            grad_release(tp, t->grad, tg_numel(t) * sizeof(tg_real));
            t->grad = NULL;
        }
    }
out:;
    tg_status fs = tg_defer_end(tp, prev, tp->detect_anomaly && !st);
    return st ? st : fs;
}

void tg_tape_require_grad(tg_tape *tp, tg_tensor *const *leaves, int n)
{
    int first = tp->n;
    for (int i = 0; i < n; i++) {
        if (leaves[i]->requires_grad) continue;
        leaves[i]->requires_grad = 1;
        if (leaves[i]->index < first) first = leaves[i]->index;
    }
    /* creation order is topological: one forward pass settles every entry */
    for (int i = first + 1; i < tp->n; i++) {
        tg_tensor *t = tp->nodes[i];
        if (t->requires_grad || !t->op || !t->op->def.differentiable) continue;
        for (int k = 0; k < t->n_in; k++)
            if (t->in[k]->requires_grad) {
                t->requires_grad = 1;
                break;
            }
    }
}

tg_status tg_tape_set_capacity(tg_tape *tp, int entries)
{
    tg_tape_reset(tp);
    tg_arena_release(&tp->arena);
    tp->defer.budget = entries > 0;
    if (entries == tp->cap) return TG_OK;
    if (entries == 0) {
        tg_free(tp->ctx, tp->nodes, (size_t)tp->cap * sizeof *tp->nodes);
        tp->nodes = NULL;
        tp->cap = 0;
        return TG_OK;
    }
    tg_tensor **nodes = tg_realloc(tp->ctx, tp->nodes, (size_t)tp->cap * sizeof *nodes, (size_t)entries * sizeof *nodes);
    if (!nodes) return TG_ERR_NOMEM;
    tp->nodes = nodes;
    tp->cap = entries;
    return TG_OK;
}
