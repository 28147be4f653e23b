/* gradnorms.c — per-step gradient norms of a backward sweep, by parameter
 * and by equation: the BPTT vanishing/exploding-gradient picture, as a table
 * (tg_grad_norms_*) written as text or CSV (headers escaped by tg_escape.h). */
#include "tg_dump.h"
#include "tg_escape.h"
#include <math.h>

/* ---- gradient norms by parameter and time step ------------------------------------ */
struct tg_grad_norms {
    tg_ctx *ctx;
    int n_rows, n_cols, n_params; /* columns: the parameters, then the equations */
    int *row_step;                /* each row's step, increasing; -1 (last) for no step */
    char **names;                 /* each column's name, owned */
    double *norm;                 /* [n_rows][n_cols]; NaN where nothing was recorded */
    double *total;                /* [n_cols]: the whole sweep's gradient; NaN for equations */
};

/* What the sweep hook needs: for each parameter, its gradient when last seen
 * (snap) and the part added since the current step's entries began (acc). */
typedef struct norms_watch {
    tg_grad_norms *gn;
    tg_tensor **params;
    size_t *off;     /* each parameter's offset into snap, acc and start */
    tg_real *snap, *acc, *start;
    int *acc_row;    /* the row acc belongs to, -1 none */
    double *sq;      /* [n_params][n_rows]: squared norms of each step's part */
    const int *step; /* inferred step of each entry */
} norms_watch;

static int row_of(const tg_grad_norms *gn, int step)
{
    int lo = 0, hi = gn->n_rows - 1;
    if (step < 0) return gn->row_step[hi] == -1 ? hi : -1;
    if (gn->row_step[hi] == -1) hi--;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (gn->row_step[mid] == step) return mid;
        if (gn->row_step[mid] < step) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static void watch_flush(norms_watch *w, int j)
{
    size_t n = tg_numel(w->params[j]);
    tg_real *acc = w->acc + w->off[j];
    if (w->acc_row[j] >= 0) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)acc[i] * (double)acc[i];
        w->sq[(size_t)j * (size_t)w->gn->n_rows + (size_t)w->acc_row[j]] += s;
    }
    memset(acc, 0, n * sizeof *acc);
    w->acc_row[j] = -1;
}

/* Called after each entry's backward: whatever a parameter's gradient gained
 * since the last look came from this entry.  A step's parts are summed as
 * vectors while its entries sweep in a row (the unroller records a step's
 * entries together); should a step come back later, the squared norms add. */
static void watch_hook(tg_tensor *e, void *user)
{
    norms_watch *w = user;
    if (!e) return;
    for (int k = 0; k < e->n_in; k++) {
        tg_tensor *x = e->in[k];
        if (x->kind != TG_KIND_PARAM) continue;
        int dup = 0;
        for (int m = 0; m < k; m++) dup |= e->in[m] == x;
        if (dup) continue;
        int j = w->gn->n_params - 1;
        while (j >= 0 && w->params[j] != x) j--;
        if (j < 0) continue;
        int row = row_of(w->gn, w->step[e->index]);
        if (row != w->acc_row[j]) watch_flush(w, j);
        w->acc_row[j] = row;
        size_t n = tg_numel(x);
        tg_real *snap = w->snap + w->off[j], *acc = w->acc + w->off[j];
        for (size_t i = 0; i < n; i++) {
            acc[i] += x->grad[i] - snap[i];
            snap[i] = x->grad[i];
        }
    }
}

void tg_grad_norms_free(tg_grad_norms *gn)
{
    if (!gn) return;
    tg_ctx *ctx = gn->ctx;
    for (int c = 0; gn->names && c < gn->n_cols; c++) tg_strfree(ctx, gn->names[c]);
    if (!gn->names) gn->n_cols = 0; /* the table was never made */
    tg_free(ctx, gn->names, (size_t)gn->n_cols * sizeof *gn->names);
    tg_free(ctx, gn->row_step, (size_t)gn->n_rows * sizeof *gn->row_step);
    tg_free(ctx, gn->norm, (size_t)gn->n_rows * (size_t)gn->n_cols * sizeof *gn->norm);
    tg_free(ctx, gn->total, (size_t)gn->n_cols * sizeof *gn->total);
    tg_free(ctx, gn, sizeof *gn);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

/* The rows: the distinct steps of entries 0..last in increasing order, then
 * -1 if some entry has none. */
static tg_status norms_rows(tg_grad_norms *gn, const int *step, int last)
{
    size_t n = (size_t)last + 1;
    int *s = tg_alloc(gn->ctx, n * sizeof *s);
    if (!s) return TG_ERR_NOMEM;
    memcpy(s, step, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_int);
    int rows = 0, has_none = s[0] < 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0 && (i == 0 || s[i] != s[i - 1])) s[rows++] = s[i];
    if (has_none) s[rows++] = -1;
    gn->row_step = tg_alloc(gn->ctx, (size_t)rows * sizeof *gn->row_step);
    if (gn->row_step) {
        memcpy(gn->row_step, s, (size_t)rows * sizeof *s);
        gn->n_rows = rows;
    }
    tg_free(gn->ctx, s, n * sizeof *s);
    return gn->row_step ? TG_OK : TG_ERR_NOMEM;
}

/* The distinct labels (first use first) of entries 0..last that have a step
 * and a gradient: one column each, |dL/d label[t]| of the last such entry of
 * each step, which is the equation's result. */
static tg_status norms_equations(tg_grad_norms *gn, tg_tape *tp, int last, const char ***labels,
                                 int *n_labels, int *cap)
{
    for (int i = 0; i <= last; i++) {
        tg_tensor *t = tp->nodes[i];
        if (!t->label || t->step < 0 || !t->grad) continue;
        int c = 0;
        while (c < *n_labels && strcmp((*labels)[c], t->label)) c++;
        if (c < *n_labels) continue;
        if (*n_labels == *cap) {
            int ncap = *cap ? 2 * *cap : 8;
            const char **l = tg_realloc(gn->ctx, (void *)*labels, (size_t)*cap * sizeof *l,
                                        (size_t)ncap * sizeof *l);
            if (!l) return TG_ERR_NOMEM;
            *labels = l;
            *cap = ncap;
        }
        (*labels)[(*n_labels)++] = t->label;
    }
    return TG_OK;
}

static void watch_free(tg_ctx *ctx, norms_watch *w, int n_p, size_t total, int n_rows)
{
    tg_free(ctx, w->off, (size_t)(n_p + 1) * sizeof *w->off);
    tg_free(ctx, w->snap, total * sizeof(tg_real));
    tg_free(ctx, w->acc, total * sizeof(tg_real));
    tg_free(ctx, w->start, total * sizeof(tg_real));
    tg_free(ctx, w->acc_row, (size_t)n_p * sizeof *w->acc_row);
    tg_free(ctx, w->sq, (size_t)n_p * (size_t)n_rows * sizeof *w->sq);
}

/* Fills the table once the sweep is done: each parameter's per-step norms
 * and total, then one column per equation label. */
static tg_status norms_fill(tg_grad_norms *gn, tg_tape *tp, int last, norms_watch *w)
{
    tg_ctx *ctx = gn->ctx;
    const char **labels = NULL;
    int n_labels = 0, cap = 0, n_p = gn->n_params;
    tg_status st = norms_equations(gn, tp, last, &labels, &n_labels, &cap);
    if (st) goto done;
    st = TG_ERR_NOMEM;
    int cols = n_p + n_labels;
    size_t cells = (size_t)gn->n_rows * (size_t)cols;
    gn->n_cols = cols;
    if (!(gn->names = tg_alloc(ctx, (size_t)cols * sizeof *gn->names))) goto done;
    memset(gn->names, 0, (size_t)cols * sizeof *gn->names);
    gn->norm = tg_alloc(ctx, cells * sizeof *gn->norm);
    gn->total = tg_alloc(ctx, (size_t)cols * sizeof *gn->total);
    if (!gn->norm || !gn->total) goto done;
    for (int c = 0; c < cols; c++) {
        const char *nm = c < n_p ? (w->params[c]->label ? w->params[c]->label : "?") : labels[c - n_p];
        if (!(gn->names[c] = tg_strdup(ctx, nm))) goto done;
    }
    for (size_t i = 0; i < cells; i++) gn->norm[i] = NAN;
    for (int j = 0; j < n_p; j++) {
        for (int r = 0; r < gn->n_rows; r++)
            gn->norm[(size_t)r * (size_t)cols + (size_t)j] =
                sqrt(w->sq[(size_t)j * (size_t)gn->n_rows + (size_t)r]);
        double s = 0;
        for (size_t i = 0; i < tg_numel(w->params[j]); i++) {
            double d = (double)w->params[j]->grad[i] - (double)w->start[w->off[j] + i];
            s += d * d;
        }
        gn->total[j] = sqrt(s);
    }
    for (int c = n_p; c < cols; c++) gn->total[c] = NAN;
    for (int i = 0; i <= last; i++) {
        tg_tensor *t = tp->nodes[i];
        if (!t->label || t->step < 0 || !t->grad) continue;
        int c = 0;
        while (strcmp(labels[c], t->label)) c++;
        double s = 0;
        for (size_t k = 0; k < tg_numel(t); k++) s += (double)t->grad[k] * (double)t->grad[k];
        gn->norm[(size_t)row_of(gn, t->step) * (size_t)cols + (size_t)(n_p + c)] = sqrt(s);
    }
    st = TG_OK;
done:
    tg_free(ctx, (void *)labels, (size_t)cap * sizeof *labels);
    return st;
}

tg_grad_norms *tg_grad_norms_new(tg_tape *tp, tg_tensor *loss, tg_params *ps)
{
    if (!tp) return NULL;
    tg_ctx *ctx = tp->ctx;
    if (!loss || loss->index < 0 || loss->index >= tp->n || tp->nodes[loss->index] != loss) {
        tg_backward(tp, loss); /* says what is wrong with it */
        return NULL;
    }
    int last = loss->index, n_p = 0;
    size_t total = 0, n = (size_t)tp->n;
    tg_grad_norms *gn = tg_alloc(ctx, sizeof *gn);
    if (!gn) return NULL;
    memset(gn, 0, sizeof *gn);
    gn->ctx = ctx;
    norms_watch w;
    memset(&w, 0, sizeof w);
    w.gn = gn;
    tgd_view v; /* collects the tape's parameters when ps is NULL */
    memset(&v, 0, sizeof v);
    v.tp = tp;
    tg_status st = TG_ERR_NOMEM;
    int *step = tg_alloc(ctx, n * sizeof *step);
    if (!step) goto done;
    tgd_infer_steps(tp, tp->n, step);
    w.step = step;
    if (ps) { /* the table's columns: ps's parameters in order, else the tape's */
        for (int j = 0; j < ps->n; j++)
            if (tgd_param_add(&v, ps->list[j].t)) goto done;
    } else {
        for (int i = 0; i <= last; i++)
            for (int k = 0; k < tp->nodes[i]->n_in; k++)
                if (tp->nodes[i]->in[k]->kind == TG_KIND_PARAM && tgd_param_add(&v, tp->nodes[i]->in[k]))
                    goto done;
    }
    tgd_params_sort(&v);
    n_p = gn->n_params = v.n_params;
    w.params = v.params;
    if (norms_rows(gn, step, last)) goto done;
    if (!(w.off = tg_alloc(ctx, (size_t)(n_p + 1) * sizeof *w.off))) goto done;
    for (int j = 0; j <= n_p; j++) {
        w.off[j] = total;
        if (j < n_p) total += tg_numel(w.params[j]);
    }
    w.snap = tg_alloc(ctx, total * sizeof(tg_real));
    w.acc = tg_alloc(ctx, total * sizeof(tg_real));
    w.start = tg_alloc(ctx, total * sizeof(tg_real));
    w.acc_row = tg_alloc(ctx, (size_t)n_p * sizeof *w.acc_row);
    w.sq = tg_alloc(ctx, (size_t)n_p * (size_t)gn->n_rows * sizeof *w.sq);
    if (!w.snap || !w.acc || !w.start || !w.acc_row || !w.sq) goto done;
    memset(w.acc, 0, total * sizeof(tg_real));
    memset(w.sq, 0, (size_t)n_p * (size_t)gn->n_rows * sizeof *w.sq);
    for (int j = 0; j < n_p; j++) {
        memcpy(w.snap + w.off[j], w.params[j]->grad, tg_numel(w.params[j]) * sizeof(tg_real));
        w.acc_row[j] = -1;
    }
    memcpy(w.start, w.snap, total * sizeof(tg_real));

    tg_sweep_hook old = tp->hook;
    void *old_user = tp->hook_user;
    tg_tape_set_sweep_hook(tp, watch_hook, &w);
    st = tg_backward(tp, loss);
    tg_tape_set_sweep_hook(tp, old, old_user);
    if (st == TG_OK) {
        for (int j = 0; j < n_p; j++) watch_flush(&w, j);
        st = norms_fill(gn, tp, last, &w);
    }
done:
    if (st == TG_ERR_NOMEM) tg_error(ctx, st, "gradient norms: out of memory");
    watch_free(ctx, &w, n_p, total, gn->n_rows);
    tg_free(ctx, step, n * sizeof *step);
    tg_free(ctx, v.params, (size_t)v.cap_params * sizeof *v.params);
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
