/* gradnorms.c — per-step gradient norms of a backward sweep, by parameter
 * and by equation: the BPTT vanishing/exploding-gradient picture, as a table
 * (tg_grad_norms_*) written as text or CSV (headers escaped by tg_escape.h).
 * One collector serves a sweep of the whole tape (tg_grad_norms_new) and a
 * sweep in segments under a memory budget (tg_grad_norms_watch): it watches
 * entries as they sweep and reads each segment's entries while they are on
 * the tape, keyed by time step, so both give the same table. */
#include "tg_dump.h"
#include "tg_escape.h"
#include <limits.h>
#include <math.h>

#define NO_STEP INT_MIN /* acc holds nothing */

/* What the collector keeps between segments.  Steps are columns of the
 * growing per-step arrays at index step + 1 (index 0: entries without a step). */
typedef struct norms_watch {
    tg_tape *tp;
    tg_tensor **params;
    int n_p;
    size_t *off;     /* each parameter's offset into snap, acc and start */
    tg_real *snap, *acc, *start;
    size_t total;
    int *acc_step;   /* the step acc belongs to, NO_STEP none */
    int *step;       /* inferred step of each entry of the tape now */
    int cap_entries;
    int cap_steps;   /* columns of seen, sq and each eq_norm */
    unsigned char *seen;
    double *sq;      /* [cap_steps][n_p]: squared norms of each step's part */
    int n_eq, cap_eq;
    char **eq_name;  /* the equations' labels, owned */
    long long *eq_key; /* where a label is first used in time order: (segment start, entry) */
    double **eq_norm;  /* per equation [cap_steps]: |dL/d label[t]|, NaN where none */
    int segment_t0;  /* the segment being swept starts at this step (0: the whole tape) */
    tg_status err;
    tg_sweep_hook old_hook;
    void *old_user;
    tg_segment_hook old_seg;
    void *old_seg_user;
} norms_watch;

struct tg_grad_norms {
    tg_ctx *ctx;
    int n_rows, n_cols, n_params; /* columns: the parameters, then the equations */
    int *row_step;                /* each row's step, increasing; -1 (last) for no step */
    char **names;                 /* each column's name, owned */
    double *norm;                 /* [n_rows][n_cols]; NaN where nothing was recorded */
    double *total;                /* [n_cols]: the whole sweep's gradient; NaN for equations */
    norms_watch *w;               /* while collecting, else NULL */
};

/* Makes room for steps up to `step`; 0 or TG_ERR_NOMEM (kept in w->err). */
static tg_status watch_grow(norms_watch *w, int step)
{
    tg_ctx *ctx = w->tp->ctx;
    if (step + 1 < w->cap_steps) return TG_OK;
    int cap = w->cap_steps ? w->cap_steps : 16;
    while (cap <= step + 1) cap = cap > INT_MAX / 2 ? INT_MAX : 2 * cap;
    size_t o = (size_t)w->cap_steps, n = (size_t)cap;
    unsigned char *seen = tg_realloc(ctx, w->seen, o, n);
    if (seen) w->seen = seen;
    double *sq = seen ? tg_realloc(ctx, w->sq, o * (size_t)w->n_p * sizeof *sq, n * (size_t)w->n_p * sizeof *sq) : NULL;
    if (sq) w->sq = sq;
    if (!seen || !sq) return w->err = TG_ERR_NOMEM;
    memset(seen + o, 0, n - o);
    memset(sq + o * (size_t)w->n_p, 0, (n - o) * (size_t)w->n_p * sizeof *sq);
    /* the equation columns: all new or none, so that every one has cap_steps */
    double **cols = tg_alloc(ctx, (size_t)(w->n_eq ? w->n_eq : 1) * sizeof *cols);
    int made = 0;
    while (cols && made < w->n_eq && (cols[made] = tg_alloc(ctx, n * sizeof **cols))) made++;
    if (!cols || made < w->n_eq) {
        for (int c = 0; c < made; c++) tg_free(ctx, cols[c], n * sizeof **cols);
        tg_free(ctx, cols, (size_t)(w->n_eq ? w->n_eq : 1) * sizeof *cols);
        return w->err = TG_ERR_NOMEM;
    }
    for (int c = 0; c < w->n_eq; c++) {
        memcpy(cols[c], w->eq_norm[c], o * sizeof **cols);
        for (size_t i = o; i < n; i++) cols[c][i] = NAN;
        tg_free(ctx, w->eq_norm[c], o * sizeof **cols);
        w->eq_norm[c] = cols[c];
    }
    tg_free(ctx, cols, (size_t)(w->n_eq ? w->n_eq : 1) * sizeof *cols);
    w->cap_steps = cap;
    return TG_OK;
}

static void watch_flush(norms_watch *w, int j)
{
    size_t n = tg_numel(w->params[j]);
    tg_real *acc = w->acc + w->off[j];
    if (w->acc_step[j] != NO_STEP) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)acc[i] * (double)acc[i];
        w->sq[(size_t)(w->acc_step[j] + 1) * (size_t)w->n_p + (size_t)j] += s;
    }
    memset(acc, 0, n * sizeof *acc);
    w->acc_step[j] = NO_STEP;
}

/* Before a sweep (entry NULL): the steps of the entries on the tape now.
 * After each entry's backward: whatever a parameter's gradient gained since
 * the last look came from this entry.  A step's parts are summed as vectors
 * while its entries sweep in a row (the unroller records a step's entries
 * together); should a step come back later, the squared norms add. */
static void watch_hook(tg_tensor *e, void *user)
{
    norms_watch *w = user;
    tg_tape *tp = w->tp;
    if (w->old_hook) w->old_hook(e, w->old_user);
    if (w->err) return;
    if (!e) {
        if (tp->n > w->cap_entries) {
            int *s = tg_realloc(tp->ctx, w->step, (size_t)w->cap_entries * sizeof *s, (size_t)tp->n * sizeof *s);
            if (!s) {
                w->err = TG_ERR_NOMEM;
                return;
            }
            w->step = s;
            w->cap_entries = tp->n;
        }
        tgd_infer_steps(tp, tp->n, w->step);
        int hi = -1;
        for (int i = 0; i < tp->n; i++) hi = w->step[i] > hi ? w->step[i] : hi;
        if (watch_grow(w, hi)) return;
        for (int i = 0; i < tp->n; i++) w->seen[w->step[i] + 1] = 1;
        return;
    }
    if (e->index < 0 || e->index >= w->cap_entries) return;
    for (int k = 0; k < e->n_in; k++) {
        tg_tensor *x = e->in[k];
        /* a parameter without a gradient: a sweep that is not the caller's
         * (tg_model_backprop measuring a step's cost) */
        if (x->kind != TG_KIND_PARAM || !x->grad) continue;
        int dup = 0;
        for (int m = 0; m < k; m++) dup |= e->in[m] == x;
        if (dup) continue;
        int j = w->n_p - 1;
        while (j >= 0 && w->params[j] != x) j--;
        if (j < 0) continue;
        int step = w->step[e->index];
        if (step != w->acc_step[j]) watch_flush(w, j);
        w->acc_step[j] = step;
        size_t n = tg_numel(x);
        tg_real *snap = w->snap + w->off[j], *acc = w->acc + w->off[j];
        for (size_t i = 0; i < n; i++) {
            acc[i] += x->grad[i] - snap[i];
            snap[i] = x->grad[i];
        }
    }
}

/* After a sweep, while its entries (and their gradients) are on the tape:
 * one column per labelled equation, |dL/d label[t]| of the last entry of
 * each step with that label, which is the equation's result.  Entries
 * 0..last count.  A segment that starts at t0 > 0 begins with its states
 * given as inputs at step t0: the segment before computed them, and the
 * whole tape holds only that entry, so those inputs do not count. */
static void watch_segment(norms_watch *w, int last, int t0)
{
    tg_tape *tp = w->tp;
    tg_ctx *ctx = tp->ctx;
    for (int i = 0; i <= last && !w->err; i++) {
        tg_tensor *t = tp->nodes[i];
        if (!t->label || t->step < 0 || !t->grad) continue;
        if (t0 > 0 && t->kind == TG_KIND_INPUT && t->step == t0) continue;
        if (watch_grow(w, t->step)) return;
        int c = 0;
        while (c < w->n_eq && strcmp(w->eq_name[c], t->label)) c++;
        long long key = ((long long)t0 << 32) | (long long)i;
        if (c == w->n_eq) {
            if (w->n_eq == w->cap_eq) {
                int cap = w->cap_eq ? 2 * w->cap_eq : 8;
                char **nm = tg_realloc(ctx, w->eq_name, (size_t)w->cap_eq * sizeof *nm, (size_t)cap * sizeof *nm);
                if (nm) w->eq_name = nm;
                long long *k = nm ? tg_realloc(ctx, w->eq_key, (size_t)w->cap_eq * sizeof *k, (size_t)cap * sizeof *k)
                                  : NULL;
                if (k) w->eq_key = k;
                double **e = k ? tg_realloc(ctx, w->eq_norm, (size_t)w->cap_eq * sizeof *e, (size_t)cap * sizeof *e)
                               : NULL;
                if (!e) {
                    w->err = TG_ERR_NOMEM;
                    return;
                }
                w->eq_norm = e;
                w->cap_eq = cap;
            }
            double *col = tg_alloc(ctx, (size_t)w->cap_steps * sizeof *col);
            char *name = col ? tg_strdup(ctx, t->label) : NULL;
            if (!name) {
                tg_free(ctx, col, (size_t)w->cap_steps * sizeof *col);
                w->err = TG_ERR_NOMEM;
                return;
            }
            for (int s = 0; s < w->cap_steps; s++) col[s] = NAN;
            w->eq_name[c] = name;
            w->eq_norm[c] = col;
            w->eq_key[c] = key;
            w->n_eq++;
        } else if (key < w->eq_key[c]) {
            w->eq_key[c] = key;
        }
        double s = 0;
        for (size_t k = 0; k < tg_numel(t); k++) s += (double)t->grad[k] * (double)t->grad[k];
        w->eq_norm[c][t->step + 1] = sqrt(s);
    }
}

static void watch_segment_hook(tg_tape *tp, int t0, int steps, void *user)
{
    norms_watch *w = user;
    w->segment_t0 = t0;
    watch_segment(w, tp->n - 1, t0);
    if (w->old_seg) w->old_seg(tp, t0, steps, w->old_seg_user);
}

static void watch_free(tg_ctx *ctx, norms_watch *w)
{
    if (!w) return;
    tg_free(ctx, w->params, (size_t)w->n_p * sizeof *w->params);
    tg_free(ctx, w->off, (size_t)(w->n_p + 1) * sizeof *w->off);
    tg_free(ctx, w->snap, w->total * sizeof(tg_real));
    tg_free(ctx, w->acc, w->total * sizeof(tg_real));
    tg_free(ctx, w->start, w->total * sizeof(tg_real));
    tg_free(ctx, w->acc_step, (size_t)w->n_p * sizeof *w->acc_step);
    tg_free(ctx, w->step, (size_t)w->cap_entries * sizeof *w->step);
    tg_free(ctx, w->seen, (size_t)w->cap_steps);
    tg_free(ctx, w->sq, (size_t)w->cap_steps * (size_t)w->n_p * sizeof *w->sq);
    for (int c = 0; c < w->n_eq; c++) {
        tg_strfree(ctx, w->eq_name[c]);
        tg_free(ctx, w->eq_norm[c], (size_t)w->cap_steps * sizeof *w->eq_norm[c]);
    }
    tg_free(ctx, w->eq_name, (size_t)w->cap_eq * sizeof *w->eq_name);
    tg_free(ctx, w->eq_key, (size_t)w->cap_eq * sizeof *w->eq_key);
    tg_free(ctx, w->eq_norm, (size_t)w->cap_eq * sizeof *w->eq_norm);
    tg_free(ctx, w, sizeof *w);
}

void tg_grad_norms_free(tg_grad_norms *gn)
{
    if (!gn) return;
    tg_ctx *ctx = gn->ctx;
    if (gn->w) { /* never finished: the hooks go back */
        tg_tape_set_sweep_hook(gn->w->tp, gn->w->old_hook, gn->w->old_user);
        tg_tape_set_segment_hook(gn->w->tp, gn->w->old_seg, gn->w->old_seg_user);
        watch_free(ctx, gn->w);
    }
    for (int c = 0; gn->names && c < gn->n_cols; c++) tg_strfree(ctx, gn->names[c]);
    if (!gn->names) gn->n_cols = 0; /* the table was never made */
    tg_free(ctx, gn->names, (size_t)gn->n_cols * sizeof *gn->names);
    tg_free(ctx, gn->row_step, (size_t)gn->n_rows * sizeof *gn->row_step);
    tg_free(ctx, gn->norm, (size_t)gn->n_rows * (size_t)gn->n_cols * sizeof *gn->norm);
    tg_free(ctx, gn->total, (size_t)gn->n_cols * sizeof *gn->total);
    tg_free(ctx, gn, sizeof *gn);
}

/* A collector for the parameters v->params (taken over), hooked on tp. */
static tg_grad_norms *watch_new(tg_tape *tp, tgd_view *v)
{
    tg_ctx *ctx = tp->ctx;
    tg_grad_norms *gn = tg_alloc(ctx, sizeof *gn);
    norms_watch *w = tg_alloc(ctx, sizeof *w);
    if (!gn || !w) {
        tg_free(ctx, gn, sizeof *gn);
        tg_free(ctx, w, sizeof *w);
        tg_free(ctx, v->params, (size_t)v->cap_params * sizeof *v->params);
        return NULL;
    }
    memset(gn, 0, sizeof *gn);
    memset(w, 0, sizeof *w);
    gn->ctx = ctx;
    gn->w = w;
    w->tp = tp;
    int n_p = v->n_params;
    /* the list, exactly n_p long (watch_free frees that much) */
    w->params = tg_alloc(ctx, (size_t)(n_p ? n_p : 1) * sizeof *w->params);
    if (w->params) memcpy(w->params, v->params, (size_t)n_p * sizeof *w->params), w->n_p = n_p;
    tg_free(ctx, v->params, (size_t)v->cap_params * sizeof *v->params);
    if (!w->params) goto fail;
    if (!(w->off = tg_alloc(ctx, (size_t)(n_p + 1) * sizeof *w->off))) goto fail;
    for (int j = 0; j <= n_p; j++) {
        w->off[j] = w->total;
        if (j < n_p) w->total += tg_numel(w->params[j]);
    }
    w->snap = tg_alloc(ctx, w->total * sizeof(tg_real));
    w->acc = tg_alloc(ctx, w->total * sizeof(tg_real));
    w->start = tg_alloc(ctx, w->total * sizeof(tg_real));
    w->acc_step = tg_alloc(ctx, (size_t)n_p * sizeof *w->acc_step);
    if (!w->snap || !w->acc || !w->start || !w->acc_step) goto fail;
    memset(w->acc, 0, w->total * sizeof(tg_real));
    for (int j = 0; j < n_p; j++) {
        memcpy(w->snap + w->off[j], w->params[j]->grad, tg_numel(w->params[j]) * sizeof(tg_real));
        w->acc_step[j] = NO_STEP;
    }
    memcpy(w->start, w->snap, w->total * sizeof(tg_real));
    if (watch_grow(w, 0)) goto fail;
    w->old_hook = tp->hook;
    w->old_user = tp->hook_user;
    w->old_seg = tp->seg_hook;
    w->old_seg_user = tp->seg_hook_user;
    tg_tape_set_sweep_hook(tp, watch_hook, w);
    tg_tape_set_segment_hook(tp, watch_segment_hook, w);
    return gn;
fail:
    gn->w = NULL;
    watch_free(ctx, w);
    tg_grad_norms_free(gn);
    return NULL;
}


/* Fills the table from what the collector gathered: rows are the steps
 * seen in increasing order, then -1 if some entry had none; columns the
 * parameters, then the equations in order of first use in time. */
static tg_status watch_table(tg_grad_norms *gn)
{
    norms_watch *w = gn->w;
    tg_ctx *ctx = gn->ctx;
    int n_p = w->n_p, rows = 0, *order = NULL;
    for (int j = 0; j < n_p; j++) watch_flush(w, j);
    for (int s = 1; s < w->cap_steps; s++) rows += w->seen[s];
    rows += w->seen[0];
    int cols = n_p + w->n_eq;
    gn->n_params = n_p;
    if (!(gn->row_step = tg_alloc(ctx, (size_t)rows * sizeof *gn->row_step))) return TG_ERR_NOMEM;
    gn->n_rows = rows;
    for (int s = 1, r = 0; s < w->cap_steps; s++)
        if (w->seen[s]) gn->row_step[r++] = s - 1;
    if (w->seen[0]) gn->row_step[rows - 1] = -1;
    if (!(gn->names = tg_alloc(ctx, (size_t)cols * sizeof *gn->names))) return TG_ERR_NOMEM;
    memset(gn->names, 0, (size_t)cols * sizeof *gn->names);
    gn->n_cols = cols;
    size_t cells = (size_t)rows * (size_t)cols;
    gn->norm = tg_alloc(ctx, cells * sizeof *gn->norm);
    gn->total = tg_alloc(ctx, (size_t)cols * sizeof *gn->total);
    order = tg_alloc(ctx, (size_t)(w->n_eq ? w->n_eq : 1) * sizeof *order);
    if (!gn->norm || !gn->total || !order) {
        tg_free(ctx, order, (size_t)(w->n_eq ? w->n_eq : 1) * sizeof *order);
        return TG_ERR_NOMEM;
    }
    for (int c = 0; c < w->n_eq; c++) { /* by first use in time; a handful of equations */
        int k = c;
        while (k > 0 && w->eq_key[order[k - 1]] > w->eq_key[c]) order[k] = order[k - 1], k--;
        order[k] = c;
    }
    tg_status st = TG_ERR_NOMEM;
    for (int c = 0; c < cols; c++) {
        const char *nm = c < n_p ? (w->params[c]->label ? w->params[c]->label : "?") : w->eq_name[order[c - n_p]];
        if (!(gn->names[c] = tg_strdup(ctx, nm))) goto done;
    }
    for (int r = 0; r < rows; r++) {
        size_t s = (size_t)(gn->row_step[r] + 1);
        for (int j = 0; j < n_p; j++)
            gn->norm[(size_t)r * (size_t)cols + (size_t)j] = sqrt(w->sq[s * (size_t)n_p + (size_t)j]);
        for (int c = 0; c < w->n_eq; c++)
            gn->norm[(size_t)r * (size_t)cols + (size_t)(n_p + c)] = w->eq_norm[order[c]][s];
    }
    for (int j = 0; j < n_p; j++) {
        double s = 0;
        for (size_t i = 0; i < tg_numel(w->params[j]); i++) {
            double d = (double)w->params[j]->grad[i] - (double)w->start[w->off[j] + i];
            s += d * d;
        }
        gn->total[j] = sqrt(s);
    }
    for (int c = n_p; c < cols; c++) gn->total[c] = NAN;
    st = TG_OK;
done:
    tg_free(ctx, order, (size_t)(w->n_eq ? w->n_eq : 1) * sizeof *order);
    return st;
}

tg_status tg_grad_norms_finish(tg_grad_norms *gn)
{
    if (!gn) return TG_ERR_ARG;
    norms_watch *w = gn->w;
    if (!w) return tg_error(gn->ctx, TG_ERR_ARG, "tg_grad_norms_finish: the table is already finished");
    tg_tape_set_sweep_hook(w->tp, w->old_hook, w->old_user);
    tg_tape_set_segment_hook(w->tp, w->old_seg, w->old_seg_user);
    tg_status st = w->err ? w->err : watch_table(gn);
    watch_free(gn->ctx, w);
    gn->w = NULL;
    if (st == TG_ERR_NOMEM) return tg_error(gn->ctx, st, "gradient norms: out of memory");
    return st;
}

tg_grad_norms *tg_grad_norms_watch(tg_tape *tp, tg_params *ps)
{
    if (!tp) return NULL;
    if (!ps) {
        tg_error(tp->ctx, TG_ERR_ARG, "tg_grad_norms_watch: the parameters (ps) are required");
        return NULL;
    }
    tgd_view v;
    memset(&v, 0, sizeof v);
    v.tp = tp;
    for (int j = 0; j < ps->n; j++)
        if (tgd_param_add(&v, ps->list[j].t)) {
            tg_free(tp->ctx, v.params, (size_t)v.cap_params * sizeof *v.params);
            tg_error(tp->ctx, TG_ERR_NOMEM, "gradient norms: out of memory");
            return NULL;
        }
    tgd_params_sort(&v);
    tg_grad_norms *gn = watch_new(tp, &v);
    if (!gn) tg_error(tp->ctx, TG_ERR_NOMEM, "gradient norms: out of memory");
    return gn;
}

tg_grad_norms *tg_grad_norms_new(tg_tape *tp, tg_tensor *loss, tg_params *ps)
{
    if (!tp) return NULL;
    tg_ctx *ctx = tp->ctx;
    if (!loss || loss->index < 0 || loss->index >= tp->n || tp->nodes[loss->index] != loss) {
        tg_backward(tp, loss); /* says what is wrong with it */
        return NULL;
    }
    int last = loss->index;
    tgd_view v; /* the table's columns: ps's parameters in order, else the tape's */
    memset(&v, 0, sizeof v);
    v.tp = tp;
    int oom = 0;
    if (ps) {
        for (int j = 0; j < ps->n && !oom; j++) oom = tgd_param_add(&v, ps->list[j].t) != TG_OK;
    } else {
        for (int i = 0; i <= last && !oom; i++)
            for (int k = 0; k < tp->nodes[i]->n_in && !oom; k++)
                if (tp->nodes[i]->in[k]->kind == TG_KIND_PARAM) oom = tgd_param_add(&v, tp->nodes[i]->in[k]) != TG_OK;
    }
    tgd_params_sort(&v);
    tg_grad_norms *gn = oom ? NULL : watch_new(tp, &v);
    if (!gn) {
        if (oom) tg_free(ctx, v.params, (size_t)v.cap_params * sizeof *v.params);
        tg_error(ctx, TG_ERR_NOMEM, "gradient norms: out of memory");
        return NULL;
    }
    /* one sweep of the whole tape is one segment; entries past the loss do not count */
    norms_watch *w = gn->w;
    tg_status st = tg_backward(tp, loss);
    if (st == TG_OK && w->err) st = tg_error(ctx, w->err, "gradient norms: out of memory");
    if (st == TG_OK) {
        /* rows count entries 0..last only */
        for (int s = 0; s < w->cap_steps; s++) w->seen[s] = 0;
        for (int i = 0; i <= last && i < w->cap_entries; i++) w->seen[w->step[i] + 1] = 1;
        watch_segment(w, last, 0);
        st = tg_grad_norms_finish(gn);
    }
    if (st) {
        tg_grad_norms_free(gn);
        return NULL;
    }
    return gn;
}

void tg_grad_norms_size(const tg_grad_norms *gn, int *rows, int *cols)
{
    if (rows) *rows = gn ? gn->n_rows : 0;
    if (cols) *cols = gn ? gn->n_cols : 0;
}

int tg_grad_norms_step(const tg_grad_norms *gn, int row)
{
    return gn && row >= 0 && row < gn->n_rows ? gn->row_step[row] : -1;
}

const char *tg_grad_norms_name(const tg_grad_norms *gn, int col, int *is_param)
{
    if (!gn || col < 0 || col >= gn->n_cols) return NULL;
    if (is_param) *is_param = col < gn->n_params;
    return gn->names[col];
}

double tg_grad_norms_at(const tg_grad_norms *gn, int row, int col)
{
    if (!gn || col < 0 || col >= gn->n_cols || row < -1 || row >= gn->n_rows) return NAN;
    return row < 0 ? gn->total[col] : gn->norm[(size_t)row * (size_t)gn->n_cols + (size_t)col];
}

static void put_cell(FILE *out, double x, int width, int csv)
{
    char b[32];
    if (csv) {
        if (!isnan(x)) fprintf(out, ",%s", tgd_fmt_num(b, sizeof b, x, TGD_JSON_DIGITS));
        else fputc(',', out);
    } else {
        fprintf(out, " %*s", width, isnan(x) ? "-" : tgd_fmt_num(b, sizeof b, x, TGD_SHOW_DIGITS));
    }
}

tg_status tg_grad_norms_write(const tg_grad_norms *gn, FILE *out, int csv)
{
    if (!gn) return TG_ERR_ARG;
    if (!out) return tg_error(gn->ctx, TG_ERR_ARG, "gradient norms: no output file");
    int *w = tg_alloc(gn->ctx, (size_t)gn->n_cols * sizeof *w);
    if (!w) return TG_ERR_NOMEM;
    for (int c = 0; c < gn->n_cols; c++) {
        int k = (int)strlen(gn->names[c]) + (c < gn->n_params ? 0 : 4);
        w[c] = k > 10 ? k : 10;
    }
    if (!csv) {
        fprintf(out, "# gradient norms by time step.  Parameter columns: |the part of dL/dP that step t's\n"
                     "# entries added|; dL/d<name> columns: |dL/d name[t]|, the gradient flowing back into step t.\n");
        fputs(" step", out);
    } else {
        fputs("step", out);
    }
    for (int c = 0; c < gn->n_cols; c++) {
        char head[160];
        snprintf(head, sizeof head, "%s%s", c < gn->n_params ? "" : "dL/d", gn->names[c]);
        if (csv) {
            fputc(',', out);
            tg_esc_write(out, head, TG_ESC_CSV);
        } else {
            char raw[160];
            snprintf(raw, sizeof raw, "%s", head);
            tg_esc_str(head, sizeof head, raw, TG_ESC_TOKEN);
            fprintf(out, "%s %*s", c == gn->n_params ? " |" : "", w[c], head);
        }
    }
    fputc('\n', out);
    for (int i = 0; i <= gn->n_rows; i++) {
        int row = i < gn->n_rows ? i : -1; /* the steps, then the total */
        if (row >= 0 && gn->row_step[row] >= 0) fprintf(out, csv ? "%d" : "%5d", gn->row_step[row]);
        else fputs(row >= 0 ? (csv ? "none" : " none") : "total", out);
        for (int c = 0; c < gn->n_cols; c++) {
            if (!csv && c == gn->n_params) fputs(" |", out);
            put_cell(out, tg_grad_norms_at(gn, row, c), w[c], csv);
        }
        fputc('\n', out);
    }
    tg_free(gn->ctx, w, (size_t)gn->n_cols * sizeof *w);
    if (fflush(out) != 0 || ferror(out))
        return tg_error(gn->ctx, TG_ERR_IO, "gradient norms: writing failed");
    return TG_OK;
}
