/* dump.c — debugging views of a tape: dumps as text (one grep-able line per
 * entry), JSON (the same facts for tools) and Graphviz DOT (one cluster per
 * time step, non-finite numbers in red, long sequences folded).  Every string
 * from an input (labels, file names, the title) goes through tg_escape.h, so
 * each output stays well-formed whatever a model's file is called. */
#include "tg_dump.h"
#include "tg_escape.h"
#include <limits.h>
#include <math.h>

static int max_values_of(const tg_dump_opts *o)
{
    if (!o || o->max_values == 0) return TGD_DEFAULT_VALUES;
    return o->max_values < 0 ? 0 : o->max_values;
}

/* ---- what a dump knows about the tape ---------------------------------------- */
static const char *const role_names[] = {"op", "input", "target", "loss"};

int tgd_param_find(const tgd_view *v, const tg_tensor *p)
{
    for (int j = v->n_params - 1; j >= 0; j--)
        if (v->params[j] == p) return j;
    return -1;
}

tg_status tgd_param_add(tgd_view *v, tg_tensor *p)
{
    if (tgd_param_find(v, p) >= 0) return TG_OK;
    if (v->n_params == v->cap_params) {
        int cap = v->cap_params ? 2 * v->cap_params : 16;
        tg_tensor **l = tg_realloc(v->tp->ctx, v->params, (size_t)v->cap_params * sizeof *l,
                                   (size_t)cap * sizeof *l);
        if (!l) return TG_ERR_NOMEM;
        v->params = l;
        v->cap_params = cap;
    }
    v->params[v->n_params++] = p;
    return TG_OK;
}

/* Parameters in the order of their tg_params (their place in its buffer),
 * not in the order the tape happened to read them. */
static int cmp_param(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(tg_tensor *const *)a)->val, y = (uintptr_t)(*(tg_tensor *const *)b)->val;
    return x < y ? -1 : x > y;
}

void tgd_params_sort(tgd_view *v)
{
    if (v->n_params > 1) qsort(v->params, (size_t)v->n_params, sizeof *v->params, cmp_param);
}

static void view_free(tgd_view *v)
{
    tg_ctx *ctx = v->tp->ctx;
    size_t n = (size_t)(v->n ? v->n : 1);
    tg_free(ctx, v->step, n * sizeof *v->step);
    tg_free(ctx, v->role, n);
    tg_free(ctx, v->params, (size_t)v->cap_params * sizeof *v->params);
}

/* The step of every entry.  Labelled entries carry theirs; an unlabelled
 * entry takes the earliest step of the entries that read it (U x_t belongs to
 * the step whose h_t reads it), else the latest step among its inputs (a loss
 * accumulator), then consumers again for leaves that fed only those.  Every
 * pass is a loop over the tape, consumers after their inputs. */
void tgd_infer_steps(tg_tape *tp, int n, int *s)
{
    tg_tensor **e = tp->nodes;
    for (int i = 0; i < n; i++) s[i] = e[i]->label ? e[i]->step : -1;
    /* x has its own step when it is labelled with one */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = n - 1; i >= 0; i--) {
            if (s[i] < 0) continue;
            for (int k = 0; k < e[i]->n_in; k++) {
                const tg_tensor *x = e[i]->in[k];
                if (x->index < 0 || (x->label && x->step >= 0)) continue;
                int *sx = &s[x->index];
                if (*sx < 0 || s[i] < *sx) *sx = s[i];
            }
        }
        if (pass) break;
        for (int i = 0; i < n; i++) {
            if (s[i] >= 0) continue;
            for (int k = 0; k < e[i]->n_in; k++) {
                const tg_tensor *x = e[i]->in[k];
                if (x->index >= 0 && s[x->index] > s[i]) s[i] = s[x->index];
            }
        }
    }
}

static int is_folded(const tgd_view *v, int i)
{
    return v->fold && i != v->loss && v->step[i] >= v->fold_lo && v->step[i] <= v->fold_hi;
}

/* What a fold hides: every step strictly between the first that computes
 * something (not just initial states) and the last, if there is one; fills fold, fold_lo, fold_hi, fold_steps (distinct steps)
 * and fold_entries. */
static tg_status fold_init(tgd_view *v)
{
    int first = INT_MAX, first_op = INT_MAX, last = -1;
    for (int i = 0; i < v->n; i++) {
        int s = v->step[i];
        if (s < 0 || i == v->loss) continue;
        if (s < first) first = s;
        if (s < first_op && v->tp->nodes[i]->op) first_op = s;
        if (s > last) last = s;
    }
    if (first_op < INT_MAX) first = first_op; /* an initial state's step stays too */
    int lo = INT_MAX, hi = -1;
    for (int i = 0; i < v->n; i++) {
        int s = v->step[i];
        if (s > first && s < last && i != v->loss) {
            if (s < lo) lo = s;
            if (s > hi) hi = s;
        }
    }
    if (hi < 0) return TG_OK;
    size_t span = (size_t)(hi - lo) + 1;
    unsigned char *seen = tg_alloc(v->tp->ctx, span);
    if (!seen) return TG_ERR_NOMEM;
    memset(seen, 0, span);
    v->fold = 1;
    v->fold_lo = lo;
    v->fold_hi = hi;
    for (int i = 0; i < v->n; i++) {
        if (!is_folded(v, i)) continue;
        v->fold_entries++;
        if (!seen[v->step[i] - lo]++) v->fold_steps++;
    }
    tg_free(v->tp->ctx, seen, span);
    return TG_OK;
}

static int is_target_name(const char *label, const char *const *names)
{
    for (int i = 0; label && names[i]; i++)
        if (strcmp(label, names[i]) == 0) return 1;
    return 0;
}

static tg_status view_init(tgd_view *v, tg_tape *tp, const tg_dump_opts *o)
{
    memset(v, 0, sizeof *v);
    v->tp = tp;
    v->n = tp->n;
    v->loss = -1;
    v->first_bad = -1;
    size_t n = (size_t)(v->n ? v->n : 1);
    v->step = tg_alloc(tp->ctx, n * sizeof *v->step);
    v->role = tg_alloc(tp->ctx, n);
    if (!v->step || !v->role) {
        tg_free(tp->ctx, v->step, n * sizeof *v->step);
        tg_free(tp->ctx, v->role, n);
        v->step = NULL;
        v->role = NULL;
        return TG_ERR_NOMEM;
    }
    tgd_infer_steps(tp, tp->n, v->step);
    if (o && o->loss && o->loss->index >= 0 && o->loss->index < tp->n && tp->nodes[o->loss->index] == o->loss)
        v->loss = o->loss->index;
    else if (tp->n && tp->nodes[tp->n - 1]->op && tg_numel(tp->nodes[tp->n - 1]) == 1 &&
             tp->nodes[tp->n - 1]->grad) /* the sweep started there */
        v->loss = tp->n - 1;
    for (int i = 0; i < tp->n; i++) {
        tg_tensor *t = tp->nodes[i];
        v->role[i] = t->kind == TG_KIND_INPUT ? ROLE_INPUT : ROLE_OP;
        if (o && o->targets && t->kind == TG_KIND_INPUT && is_target_name(t->label, o->targets))
            v->role[i] = ROLE_TARGET;
        for (int k = 0; k < t->n_in; k++)
            if (t->in[k]->kind == TG_KIND_PARAM && tgd_param_add(v, t->in[k])) return TG_ERR_NOMEM;
        if (v->first_bad < 0 && (tgd_count_bad(t->val, tg_numel(t)) ||
                                 (o && o->grads && tgd_count_bad(t->grad, tg_numel(t)))))
            v->first_bad = i;
    }
    tgd_params_sort(v);
    /* Without names, a target is an input read as the target of a loss op. */
    if (!(o && o->targets)) {
        for (int i = 0; i < tp->n; i++) {
            tg_tensor *t = tp->nodes[i];
            if (!t->op || t->n_in < 2) continue;
            const char *op = t->op->def.name;
            if (strcmp(op, "squared_error") && strcmp(op, "softmax_cross_entropy")) continue;
            if (t->in[1]->kind == TG_KIND_INPUT) v->role[t->in[1]->index] = ROLE_TARGET;
        }
    }
    if (v->loss >= 0) v->role[v->loss] = ROLE_LOSS;
    return o && o->fold ? fold_init(v) : TG_OK;
}

static int entry_bad(const tg_tensor *t, int grads)
{
    return tgd_count_bad(t->val, tg_numel(t)) || (grads && tgd_count_bad(t->grad, tg_numel(t)));
}

/* ---- text ---------------------------------------------------------------------- */

/* The fields of one text line: index, op, name, source, inputs, shape,
 * value, gradient, flags.  Each is one whitespace-free token. */
enum { F_ID, F_OP, F_NAME, F_SOURCE, F_IN, F_SHAPE, F_VAL, F_GRAD, F_FLAGS, N_FIELDS };
#define FIELD_LEN 512
#define FIELD_WIDTH_CAP 40 /* wider fields push their line, not the whole column */

/* s as one whitespace-free field (tg_escape.h: TG_ESC_TOKEN). */
static void token(char *dst, const char *s)
{
    tg_esc_str(dst, FIELD_LEN, s, TG_ESC_TOKEN);
}

static void text_fields(const tgd_view *v, const tg_tensor *t, int pidx, const tg_dump_opts *o,
                        char f[N_FIELDS][FIELD_LEN])
{
    char buf[FIELD_LEN];
    tgd_sbuf b;
    int grads = o && o->grads, mv = max_values_of(o);
    if (t->kind == TG_KIND_PARAM) snprintf(f[F_ID], FIELD_LEN, "p%d", pidx);
    else snprintf(f[F_ID], FIELD_LEN, "%d", t->index);
    token(f[F_OP], tg_tensor_op(t));
    tgd_sb_init(&b, buf, sizeof buf);
    tgd_sb_name(&b, t);
    token(f[F_NAME], b.pos ? buf : "-");
    tgd_sb_init(&b, buf, sizeof buf);
    if (t->file) {
        tgd_sb_esc(&b, t->file);
        tgd_sb_printf(&b, ":%d:%d", t->line, t->column);
    }
    token(f[F_SOURCE], b.pos ? buf : "-");
    tgd_sb_init(&b, buf, sizeof buf);
    tgd_sb_printf(&b, "in=");
    for (int k = 0; k < t->n_in; k++) {
        const tg_tensor *x = t->in[k];
        if (x->kind == TG_KIND_PARAM) {
            tgd_sb_printf(&b, "%s", k ? "," : "");
            tgd_sb_esc(&b, x->label ? x->label : "?");
        }
        else tgd_sb_printf(&b, "%s%d", k ? "," : "", x->index);
    }
    if (!t->n_in) tgd_sb_printf(&b, "-");
    token(f[F_IN], buf);
    tgd_sb_init(&b, buf, sizeof buf);
    tgd_sb_shape(&b, t, 1);
    token(f[F_SHAPE], buf);
    tgd_sb_init(&b, buf, sizeof buf);
    tgd_sb_printf(&b, "val=");
    tgd_sb_summary(&b, t->val, tg_numel(t), mv, TGD_SUM_TEXT);
    token(f[F_VAL], buf);
    f[F_GRAD][0] = 0;
    if (grads) {
        tgd_sb_init(&b, buf, sizeof buf);
        tgd_sb_printf(&b, "grad=");
        tgd_sb_summary(&b, t->grad, tg_numel(t), mv, TGD_SUM_TEXT);
        token(f[F_GRAD], buf);
    }
    tgd_sb_init(&b, f[F_FLAGS], FIELD_LEN);
    if (t->kind != TG_KIND_PARAM && v->role[t->index] >= ROLE_TARGET)
        tgd_sb_printf(&b, "%s", role_names[v->role[t->index]]);
    if (entry_bad(t, grads)) tgd_sb_printf(&b, "%sNONFINITE", b.pos ? " " : "");
}

static const tg_tensor *text_row(const tgd_view *v, int r, int *pidx)
{
    *pidx = r < v->n_params ? r : -1;
    return r < v->n_params ? v->params[r] : v->tp->nodes[r - v->n_params];
}

static void dump_text(FILE *out, const tgd_view *v, const tg_dump_opts *o)
{
    static const char *const heads[N_FIELDS] = {"#", "op", "name", "source", "inputs", "shape", "value",
                                                "gradient", ""};
    char f[N_FIELDS][FIELD_LEN];
    int grads = o && o->grads, width[N_FIELDS], rows = v->n_params + v->n, pidx;
    for (int k = 0; k < N_FIELDS; k++) width[k] = (int)strlen(heads[k]);
    width[F_ID] = 5;
    for (int r = 0; r < rows; r++) { /* column widths over the lines shown */
        if (r >= v->n_params && is_folded(v, r - v->n_params)) continue;
        const tg_tensor *t = text_row(v, r, &pidx);
        text_fields(v, t, pidx, o, f);
        for (int k = 0; k < N_FIELDS; k++) {
            int w = (int)strlen(f[k]);
            if (w > width[k]) width[k] = w < FIELD_WIDTH_CAP ? w : FIELD_WIDTH_CAP;
        }
    }
    fprintf(out, "# tapegrad tape%s", o && o->title ? " of " : "");
    if (o && o->title) tg_esc_write(out, o->title, TG_ESC_TEXT);
    fprintf(out, ": %d entries, %d params%s\n", v->n, v->n_params, grads ? ", with gradients" : "");
    fprintf(out, "%*s", width[F_ID], "#");
    for (int k = F_OP; k <= (grads ? F_GRAD : F_VAL); k++)
        fprintf(out, " %-*s", k == (grads ? F_GRAD : F_VAL) ? 0 : width[k], heads[k]);
    fputc('\n', out);
    int folded_note = 0;
    for (int r = 0; r < rows; r++) {
        if (r >= v->n_params && is_folded(v, r - v->n_params)) {
            if (!folded_note)
                fprintf(out, "# ... %d steps folded (t = %d ... %d): %d entries not shown\n",
                        v->fold_steps, v->fold_lo, v->fold_hi, v->fold_entries);
            folded_note = 1;
            continue;
        }
        const tg_tensor *t = text_row(v, r, &pidx);
        text_fields(v, t, pidx, o, f);
        fprintf(out, "%*s", width[F_ID], f[F_ID]);
        int last = grads ? F_GRAD : F_VAL;
        for (int k = F_OP; k <= last; k++)
            fprintf(out, " %-*s", k == last && !f[F_FLAGS][0] ? 0 : width[k], f[k]);
        if (f[F_FLAGS][0]) fprintf(out, " %s", f[F_FLAGS]);
        fputc('\n', out);
    }
    if (v->first_bad >= 0) {
        char where[512];
        tg_describe_entry(v->tp->nodes[v->first_bad], TG_DESCRIBE_NAME, where, sizeof where);
        fprintf(out, "# first non-finite number: %s\n", where);
    }
}

/* ---- JSON ------------------------------------------------------------------------ */

/* A JSON string literal (or null): RFC 8259 escapes, invalid UTF-8 as U+FFFD. */
static void json_str(FILE *out, const char *s)
{
    if (!s) fputs("null", out);
    else tg_esc_write(out, s, TG_ESC_JSON);
}

static void json_num(FILE *out, double x)
{
    if (isnan(x)) fputs("\"nan\"", out);
    else if (isinf(x)) fputs(x > 0 ? "\"inf\"" : "\"-inf\"", out);
    else fprintf(out, "%.*g", TGD_JSON_DIGITS, x);
}

static void json_summary(FILE *out, const tg_real *v, size_t n, int max_values)
{
    if (!v) {
        fputs("null", out);
        return;
    }
    tgd_stats s;
    tgd_stats_of(v, n, &s);
    fputs("{\"min\": ", out);
    if (s.bad < n) json_num(out, s.min);
    else fputs("null", out);
    fputs(", \"max\": ", out);
    if (s.bad < n) json_num(out, s.max);
    else fputs("null", out);
    fputs(", \"mean\": ", out);
    if (s.bad < n) json_num(out, s.sum / (double)(n - s.bad));
    else fputs("null", out);
    fputs(", \"norm\": ", out);
    json_num(out, sqrt(s.sumsq));
    fprintf(out, ", \"nonfinite\": %zu", s.bad);
    if (n <= (size_t)max_values) {
        fputs(", \"values\": [", out);
        for (size_t i = 0; i < n; i++) {
            if (i) fputs(", ", out);
            json_num(out, (double)v[i]);
        }
        fputc(']', out);
    }
    fputc('}', out);
}

static void json_shape(FILE *out, const tg_tensor *t)
{
    if (t->ndim == 1) fprintf(out, "[%d]", t->rows);
    else fprintf(out, "[%d, %d]", t->rows, t->cols);
}

static void dump_json(FILE *out, const tgd_view *v, const tg_dump_opts *o)
{
    int grads = o && o->grads, mv = max_values_of(o);
    fputs("{\"format\": \"tapegrad-dump\", \"version\": 1, \"real\": \"" TG_REAL_NAME "\", \"title\": ", out);
    json_str(out, o ? o->title : NULL);
    fprintf(out, ", \"length\": %d, \"grads\": %s, \"loss\": ", v->n, grads ? "true" : "false");
    if (v->loss >= 0) fprintf(out, "%d", v->loss);
    else fputs("null", out);
    fputs(", \"first_nonfinite\": ", out);
    if (v->first_bad >= 0) fprintf(out, "%d", v->first_bad);
    else fputs("null", out);
    fputs(",\n\"params\": [", out);
    for (int j = 0; j < v->n_params; j++) {
        const tg_tensor *p = v->params[j];
        fputs(j ? ",\n  {\"name\": " : "\n  {\"name\": ", out);
        json_str(out, p->label);
        fputs(", \"shape\": ", out);
        json_shape(out, p);
        fputs(", \"value\": ", out);
        json_summary(out, p->val, tg_numel(p), mv);
        if (grads) {
            fputs(", \"grad\": ", out);
            json_summary(out, p->grad, tg_numel(p), mv);
        }
        fputc('}', out);
    }
    fputs("],\n\"nodes\": [", out);
    for (int i = 0; i < v->n; i++) {
        const tg_tensor *t = v->tp->nodes[i];
        fprintf(out, "%s  {\"index\": %d, \"op\": ", i ? ",\n" : "\n", i);
        json_str(out, tg_tensor_op(t));
        fprintf(out, ", \"kind\": \"%s\", \"label\": ", role_names[v->role[i]]);
        json_str(out, t->label);
        fprintf(out, ", \"step\": %d, \"source\": ", t->label ? t->step : -1);
        if (t->file) {
            fputs("{\"file\": ", out);
            json_str(out, t->file);
            fprintf(out, ", \"line\": %d, \"column\": %d}", t->line, t->column);
        } else {
            fputs("null", out);
        }
        fputs(", \"inputs\": [", out);
        for (int k = 0; k < t->n_in; k++) {
            if (k) fputs(", ", out);
            if (t->in[k]->kind == TG_KIND_PARAM) json_str(out, t->in[k]->label);
            else fprintf(out, "%d", t->in[k]->index);
        }
        fputs("], \"shape\": ", out);
        json_shape(out, t);
        fputs(", \"value\": ", out);
        json_summary(out, t->val, tg_numel(t), mv);
        if (grads) {
            fputs(", \"grad\": ", out);
            json_summary(out, t->grad, tg_numel(t), mv);
        }
        fputc('}', out);
    }
    fputs("]}\n", out);
}

/* ---- DOT --------------------------------------------------------------------------- */

/* A DOT double-quoted string (tg_escape.h: TG_ESC_DOT): a '\n' in s is the
 * label's line break; names in s were escaped as text when it was built, so a
 * line break in a name shows as \x0a. */
static void dot_str(FILE *out, const char *s)
{
    tg_esc_write(out, s, TG_ESC_DOT);
}

/* Fill colours by role, and for parameters; one legend says what they mean. */
#define DOT_PARAM  "#fff2cc"
#define DOT_INPUT  "#dae8fc"
#define DOT_TARGET "#e1d5e7"
#define DOT_LOSS   "#ffd8a8"
#define DOT_OP     "#ffffff"

static void dot_node(FILE *out, const tgd_view *v, const tg_tensor *t, int pidx, const tg_dump_opts *o,
                     const char *indent)
{
    char buf[1024];
    tgd_sbuf b;
    int grads = o && o->grads, mv = max_values_of(o);
    int is_param = t->kind == TG_KIND_PARAM;
    int role = is_param ? -1 : v->role[t->index];
    tgd_sb_init(&b, buf, sizeof buf);
    if (is_param) {
        tgd_sb_esc(&b, t->label ? t->label : "?");
        tgd_sb_printf(&b, "\nparam ");
    } else {
        if (t->label) tgd_sb_name(&b, t);
        if (t->file) { /* the file's base name keeps the box narrow; the tooltip has all */
            const char *base = strrchr(t->file, '/');
            tgd_sb_printf(&b, "%s", t->label ? "  " : "");
            tgd_sb_esc(&b, base ? base + 1 : t->file);
            tgd_sb_printf(&b, ":%d", t->line);
        }
        if (t->label || t->file) tgd_sb_printf(&b, "\n");
        tgd_sb_printf(&b, "#%d %s ", t->index, tg_tensor_op(t));
    }
    tgd_sb_shape(&b, t, 0);
    if (role == ROLE_LOSS) tgd_sb_printf(&b, "  (loss)");
    else if (role == ROLE_TARGET) tgd_sb_printf(&b, "  (target)");
    tgd_sb_printf(&b, "\nval ");
    tgd_sb_summary(&b, t->val, tg_numel(t), mv, TGD_SUM_DOT);
    if (grads && t->grad) {
        tgd_sb_printf(&b, "\ngrad ");
        tgd_sb_summary(&b, t->grad, tg_numel(t), mv, TGD_SUM_DOT);
    }
    if (is_param) fprintf(out, "%sp%d [label=", indent, pidx);
    else fprintf(out, "%se%d [label=", indent, t->index);
    dot_str(out, buf);
    const char *fill = is_param ? DOT_PARAM : role == ROLE_INPUT ? DOT_INPUT
                     : role == ROLE_TARGET ? DOT_TARGET : role == ROLE_LOSS ? DOT_LOSS : DOT_OP;
    const char *style = is_param ? "filled" : role == ROLE_OP ? "rounded,filled" : "filled";
    fprintf(out, ", fillcolor=\"%s\", style=\"%s\"", fill, style);
    if (is_param) fputs(", shape=box3d", out);
    else if (role == ROLE_LOSS) fputs(", peripheries=2", out);
    else if (role == ROLE_INPUT || role == ROLE_TARGET) fputs(", shape=note", out);
    if (entry_bad(t, grads)) fputs(", color=red, fontcolor=red, penwidth=2.5", out);
    tgd_sb_init(&b, buf, sizeof buf);
    if (is_param) {
        tgd_sb_printf(&b, "parameter ");
        tgd_sb_esc(&b, t->label ? t->label : "?");
    }
    else tgd_sb_printf(&b, "entry %d", t->index);
    if (t->file) {
        tgd_sb_printf(&b, " at ");
        tgd_sb_esc(&b, t->file);
        tgd_sb_printf(&b, ":%d:%d", t->line, t->column);
    }
    fputs(", tooltip=", out);
    dot_str(out, buf);
    fputs("];\n", out);
}

/* Entries are drawn grouped by step: (step + 1, index) pairs packed in 64
 * bits sort with plain qsort (C11 qsort takes no user pointer). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Time runs down the page.  Graphviz would put clusters side by side in an
 * order of its choosing (the inputs of every step are sources, so every
 * cluster starts at the top); an invisible edge from the last entry of each
 * step to every leaf of the next stacks step t+1 below step t instead.  The
 * fold box takes the place of the steps it hides.  order: as in dump_dot. */
static void dot_time_axis(FILE *out, const tgd_view *v, const uint64_t *order, size_t n)
{
    char prev[24] = "", cur[24] = "";
    int step = -1;
    for (size_t r = 0; r < n; r++) {
        int i = (int)(uint32_t)order[r], s = (int)(order[r] >> 32) - 1;
        if (s < 0) continue;
        if (is_folded(v, i)) {
            if (strcmp(cur, "fold")) {
                if (cur[0]) fprintf(out, "  %s -> fold [style=invis];\n", cur);
                memcpy(prev, cur, sizeof prev);
                snprintf(cur, sizeof cur, "fold");
            }
            step = -1;
            continue;
        }
        if (s != step) {
            memcpy(prev, cur, sizeof prev);
            step = s;
        }
        if (!v->tp->nodes[i]->op && prev[0]) fprintf(out, "  %s -> e%d [style=invis];\n", prev, i);
        snprintf(cur, sizeof cur, "e%d", i);
    }
}

static tg_status dump_dot(FILE *out, const tgd_view *v, const tg_dump_opts *o)
{
    tg_ctx *ctx = v->tp->ctx;
    size_t n = (size_t)v->n;
    uint64_t *order = tg_alloc(ctx, (n ? n : 1) * sizeof *order);
    /* edges to and from the fold box are drawn once per far end */
    unsigned char *to_fold = tg_alloc(ctx, n + (size_t)v->n_params + 1);
    unsigned char *from_fold = tg_alloc(ctx, n + 1);
    if (!order || !to_fold || !from_fold) {
        tg_free(ctx, order, (n ? n : 1) * sizeof *order);
        tg_free(ctx, to_fold, n + (size_t)v->n_params + 1);
        tg_free(ctx, from_fold, n + 1);
        return TG_ERR_NOMEM;
    }
    memset(to_fold, 0, n + (size_t)v->n_params + 1);
    memset(from_fold, 0, n + 1);

    fputs("digraph tape {\n", out);
    fputs("  graph [rankdir=TB, newrank=true, nodesep=0.25, ranksep=0.35, fontname=\"Helvetica\", "
          "fontsize=12, labelloc=t, label=", out);
    {
        char buf[512];
        tgd_sbuf b;
        tgd_sb_init(&b, buf, sizeof buf);
        if (o && o->title) {
            tgd_sb_esc(&b, o->title);
            tgd_sb_printf(&b, ": ");
        }
        tgd_sb_printf(&b, "%d tape entries, %d parameters%s", v->n, v->n_params,
                      o && o->grads ? ", after backward" : "");
        tgd_sb_printf(&b, "\nyellow: parameter   blue: input   purple: target   orange: loss   "
                      "red outline: NaN or Inf");
        dot_str(out, buf);
    }
    fputs("];\n", out);
    fputs("  node [shape=box, fontname=\"Helvetica\", fontsize=10, margin=\"0.08,0.04\"];\n", out);
    fputs("  edge [color=\"#555555\", arrowsize=0.6];\n", out);
    for (int j = 0; j < v->n_params; j++) dot_node(out, v, v->params[j], j, o, "  ");

    /* Entries by step: each step a cluster, the rest (loss, unstepped) outside. */
    for (size_t i = 0; i < n; i++) {
        int s = (int)i == v->loss ? -1 : v->step[i];
        order[i] = ((uint64_t)(uint32_t)(s + 1) << 32) | (uint32_t)i;
    }
    qsort(order, n, sizeof *order, cmp_u64);
    int open = -1; /* the step whose cluster is open, -1 none */
    int fold_drawn = 0;
    for (size_t r = 0; r < n; r++) {
        int i = (int)(uint32_t)order[r];
        int s = (int)(order[r] >> 32) - 1;
        if (is_folded(v, i)) {
            if (open >= 0) fputs("  }\n", out);
            open = -1;
            if (!fold_drawn) {
                int lo = v->fold_lo, hi = v->fold_hi, k = v->fold_entries;
                fprintf(out, "  fold [label=\"... %d steps folded\\n(t = %d ... %d)\\n%d entries\", "
                             "shape=box, style=\"rounded,dashed\", tooltip=\"%d entries folded\"];\n",
                        v->fold_steps, lo, hi, k, k);
                fold_drawn = 1;
            }
            continue;
        }
        if (s != open) {
            if (open >= 0) fputs("  }\n", out);
            open = s;
            if (s >= 0)
                fprintf(out, "  subgraph cluster_t%d {\n    label=\"t = %d\"; style=rounded; "
                             "color=\"#7f8fbf\"; fontcolor=\"#3f4f7f\";\n", s, s);
        }
        dot_node(out, v, v->tp->nodes[i], -1, o, s >= 0 ? "    " : "  ");
    }
    if (open >= 0) fputs("  }\n", out);
    dot_time_axis(out, v, order, n);

    for (int i = 0; i < v->n; i++) {
        const tg_tensor *t = v->tp->nodes[i];
        int fi = is_folded(v, i);
        for (int k = 0; k < t->n_in; k++) {
            const tg_tensor *x = t->in[k];
            int is_param = x->kind == TG_KIND_PARAM;
            int fx = !is_param && is_folded(v, x->index);
            char src[24];
            if (is_param) snprintf(src, sizeof src, "p%d", tgd_param_find(v, x));
            else snprintf(src, sizeof src, "e%d", x->index);
            const char *attr = is_param ? " [color=\"#b8a040\", style=dashed]" : "";
            if (fi && fx) continue;
            if (fi) {
                size_t slot = is_param ? n + (size_t)tgd_param_find(v, x) : (size_t)x->index;
                if (!to_fold[slot]) fprintf(out, "  %s -> fold%s;\n", src, attr);
                to_fold[slot] = 1;
            } else if (fx) {
                if (!from_fold[i]) fprintf(out, "  fold -> e%d;\n", i);
                from_fold[i] = 1;
            } else {
                fprintf(out, "  %s -> e%d%s;\n", src, i, attr);
            }
        }
    }
    fputs("}\n", out);
    tg_free(ctx, order, (n ? n : 1) * sizeof *order);
    tg_free(ctx, to_fold, n + (size_t)v->n_params + 1);
    tg_free(ctx, from_fold, n + 1);
    return TG_OK;
}

tg_status tg_tape_dump(tg_tape *tp, FILE *out, tg_dump_format fmt, const tg_dump_opts *opts)
{
    if (!tp) return TG_ERR_ARG;
    if (!out) return tg_error(tp->ctx, TG_ERR_ARG, "dump: no output file");
    if (fmt != TG_DUMP_TEXT && fmt != TG_DUMP_JSON && fmt != TG_DUMP_DOT)
        return tg_error(tp->ctx, TG_ERR_ARG, "dump: unknown format %d", (int)fmt);
    tgd_view v;
    tg_status st = view_init(&v, tp, opts);
    if (st == TG_OK) {
        if (fmt == TG_DUMP_TEXT) dump_text(out, &v, opts);
        else if (fmt == TG_DUMP_JSON) dump_json(out, &v, opts);
        else st = dump_dot(out, &v, opts);
    }
    view_free(&v);
    if (st == TG_ERR_NOMEM) return tg_error(tp->ctx, st, "dump: out of memory");
    if (st) return st;
    if (fflush(out) != 0 || ferror(out))
        return tg_error(tp->ctx, TG_ERR_IO, "dump: writing failed");
    return TG_OK;
}

const char *tg_dump_format_name(tg_dump_format fmt)
{
    return fmt == TG_DUMP_TEXT ? "text" : fmt == TG_DUMP_JSON ? "json" : fmt == TG_DUMP_DOT ? "dot" : NULL;
}

int tg_dump_format_parse(const char *name)
{
    for (int f = TG_DUMP_TEXT; f <= TG_DUMP_DOT; f++)
        if (name && strcmp(name, tg_dump_format_name((tg_dump_format)f)) == 0) return f;
    return -1;
}

