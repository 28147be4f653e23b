/* dump.c — debugging views of a tape: dumps as text (one grep-able line per
 * entry), JSON (the same facts for tools) and Graphviz DOT (one cluster per
 * time step, non-finite numbers in red, long sequences folded); per-step
 * gradient norms of a backward sweep (the BPTT vanishing/exploding picture);
 * and the entry descriptions the anomaly checks put in error messages. */
#include "tg_internal.h"
#include <limits.h>
#include <math.h>

#ifdef TG_REAL_DOUBLE
#define JSON_DIGITS 17
#else
#define JSON_DIGITS 9
#endif
#define SHOW_DIGITS 4      /* significant digits in text, DOT and messages */
#define DEFAULT_VALUES 4   /* tensors this small are shown value by value */

/* ---- a bounded string builder: appends, truncates, never overflows ------- */
typedef struct sbuf {
    char *p;
    size_t len, pos;
} sbuf;

static void sb_init(sbuf *b, char *p, size_t len)
{
    b->p = p;
    b->len = len;
    b->pos = 0;
    if (len) p[0] = 0;
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->pos + 1 >= b->len) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->pos, b->len - b->pos, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    b->pos += (size_t)k;
    if (b->pos >= b->len) b->pos = b->len - 1;
}

/* ---- numbers and summaries ------------------------------------------------- */
static const char *fmt_num(char *buf, size_t len, double v, int digits)
{
    if (isnan(v)) snprintf(buf, len, "nan");
    else if (isinf(v)) snprintf(buf, len, v > 0 ? "inf" : "-inf");
    else snprintf(buf, len, "%.*g", digits, v);
    return buf;
}

typedef struct stats {
    size_t n, bad, first_bad; /* bad: NaN or Inf, the first at first_bad */
    double min, max, sum, sumsq;
} stats;

static void stats_of(const tg_real *v, size_t n, stats *s)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->min = INFINITY;
    s->max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = (double)v[i];
        if (!isfinite(x)) {
            if (!s->bad++) s->first_bad = i;
            continue;
        }
        if (x < s->min) s->min = x;
        if (x > s->max) s->max = x;
        s->sum += x;
        s->sumsq += x * x;
    }
}

static size_t count_bad(const tg_real *v, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; v && i < n; i++) bad += !isfinite(v[i]);
    return bad;
}

static int max_values_of(const tg_dump_opts *o)
{
    if (!o || o->max_values == 0) return DEFAULT_VALUES;
    return o->max_values < 0 ? 0 : o->max_values;
}

/* A summary of n values: the values themselves when n <= max_values, else
 * min, max and mean of the finite ones and how many are not finite.  Styles:
 * SUM_TEXT has no spaces ("[0.5,-1]", "{min=..,max=..,mean=..}") so the text
 * dump's fields split on whitespace; SUM_DOT is for a graph label; SUM_MSG
 * for an error message ("{min 1, max 2, mean 1.5, 3 of 9 non-finite, ...}"). */
enum { SUM_TEXT, SUM_DOT, SUM_MSG };

static void sb_summary(sbuf *b, const tg_real *v, size_t n, int max_values, int style)
{
    char x[32];
    if (!v) {
        sb_printf(b, "-");
        return;
    }
    if (n <= (size_t)max_values) {
        sb_printf(b, "[");
        for (size_t i = 0; i < n; i++)
            sb_printf(b, "%s%s", i ? (style == SUM_TEXT ? "," : ", ") : "",
                      fmt_num(x, sizeof x, (double)v[i], SHOW_DIGITS));
        sb_printf(b, "]");
        return;
    }
    stats s;
    stats_of(v, n, &s);
    const char *sep = style == SUM_TEXT ? "," : style == SUM_DOT ? "  " : ", ";
    const char *eq = style == SUM_TEXT ? "=" : " ";
    if (style != SUM_DOT) sb_printf(b, "{");
    if (s.bad < n) {
        sb_printf(b, "min%s%s", eq, fmt_num(x, sizeof x, s.min, SHOW_DIGITS));
        sb_printf(b, "%smax%s%s", sep, eq, fmt_num(x, sizeof x, s.max, SHOW_DIGITS));
        sb_printf(b, "%smean%s%s", sep, eq,
                  fmt_num(x, sizeof x, s.sum / (double)(n - s.bad), SHOW_DIGITS));
    }
    if (s.bad) {
        if (style == SUM_TEXT) sb_printf(b, "%snonfinite=%zu", s.bad < n ? sep : "", s.bad);
        else sb_printf(b, "%s%zu of %zu non-finite, first [%zu] = %s", s.bad < n ? ", " : "", s.bad, n,
                       s.first_bad, fmt_num(x, sizeof x, (double)v[s.first_bad], 3));
    }
    if (style != SUM_DOT) sb_printf(b, "}");
}

static void sb_shape(sbuf *b, const tg_tensor *t, int compact)
{
    if (t->ndim == 1) sb_printf(b, "[%d]", t->rows);
    else sb_printf(b, compact ? "[%d,%d]" : "[%d, %d]", t->rows, t->cols);
}

static void sb_name(sbuf *b, const tg_tensor *t)
{
    if (t->kind == TG_KIND_PARAM) sb_printf(b, "%s", t->label ? t->label : "?");
    else if (t->label && t->step >= 0) sb_printf(b, "%s[t=%d]", t->label, t->step);
    else if (t->label) sb_printf(b, "%s", t->label);
}

/* ---- anomaly messages (tape.c calls this when detection is on) ------------ */

/* "entry 17 (exp [1] 'h[t=12]' at m.yaml:9:7)", then per `what`: the entry's
 * value (TG_DESCRIBE_VALUE) or gradient (TG_DESCRIBE_GRAD) and each input's
 * value (and gradient) summary, so a message shows where the bad number came
 * from.  Writes at most len bytes into buf. */
void tg_describe_entry(const tg_tensor *t, int what, char *buf, size_t len)
{
    sbuf b;
    sb_init(&b, buf, len);
    sb_printf(&b, "entry %d (%s ", t->index, tg_tensor_op(t));
    sb_shape(&b, t, 0);
    if (t->label) {
        sb_printf(&b, " '");
        sb_name(&b, t);
        sb_printf(&b, "'");
    }
    if (t->file) sb_printf(&b, " at %s:%d:%d", t->file, t->line, t->column);
    sb_printf(&b, ")");
    if (what == TG_DESCRIBE_NAME) return;
    size_t n = tg_numel(t);
    int grads = what == TG_DESCRIBE_GRAD;
    sb_printf(&b, grads ? "; its gradient " : "; value ");
    sb_summary(&b, grads ? t->grad : t->val, n, DEFAULT_VALUES, SUM_MSG);
    for (int k = 0; k < t->n_in; k++) {
        const tg_tensor *x = t->in[k];
        if (b.pos + 160 >= b.len) {
            sb_printf(&b, "; and %d more input%s", t->n_in - k, t->n_in - k > 1 ? "s" : "");
            break;
        }
        sb_printf(&b, "%s input %d: ", k ? ";" : "; inputs:", k);
        if (x->kind == TG_KIND_PARAM) sb_printf(&b, "param '%s' ", x->label ? x->label : "?");
        else {
            sb_printf(&b, "entry %d %s ", x->index, tg_tensor_op(x));
            if (x->label) {
                sb_printf(&b, "'");
                sb_name(&b, x);
                sb_printf(&b, "' ");
            }
        }
        sb_shape(&b, x, 0);
        sb_printf(&b, " value ");
        sb_summary(&b, x->val, tg_numel(x), DEFAULT_VALUES, SUM_MSG);
        if (grads && x->grad) {
            sb_printf(&b, ", gradient ");
            sb_summary(&b, x->grad, tg_numel(x), DEFAULT_VALUES, SUM_MSG);
        }
    }
    if (b.pos + 1 >= b.len && len > 4) memcpy(buf + len - 4, "...", 4);
}

/* After the fact, what anomaly mode does while recording: by then the
 * unroller has labelled every entry, so the report names the equation. */
tg_status tg_tape_check_finite(tg_tape *tp, tg_tensor *loss)
{
    if (!tp) return TG_ERR_ARG;
    char where[TG_ERRMSG_LEN - 64];
    for (int i = 0; i < tp->n; i++) {
        tg_tensor *t = tp->nodes[i];
        if (count_bad(t->val, tg_numel(t))) {
            tg_describe_entry(t, TG_DESCRIBE_VALUE, where, sizeof where);
            return tg_error(tp->ctx, TG_ERR_NONFINITE, "first non-finite value: %s", where);
        }
    }
    if (!loss) return TG_OK;
    /* Gradients flow from the loss down the tape: the first bad one in sweep
     * order is the highest-indexed entry that has one. */
    for (int i = loss->index; i >= 0 && i < tp->n; i--) {
        tg_tensor *t = tp->nodes[i];
        if (t->grad && count_bad(t->grad, tg_numel(t))) {
            tg_describe_entry(t, TG_DESCRIBE_GRAD, where, sizeof where);
            return tg_error(tp->ctx, TG_ERR_NONFINITE, "first non-finite gradient: %s", where);
        }
    }
    return TG_OK;
}

/* ---- what a dump knows about the tape ---------------------------------------- */
enum { ROLE_OP, ROLE_INPUT, ROLE_TARGET, ROLE_LOSS };
static const char *const role_names[] = {"op", "input", "target", "loss"};

typedef struct view {
    tg_tape *tp;
    int n;               /* entries */
    int *step;           /* per entry: its step, inferred for unlabelled ones */
    unsigned char *role; /* per entry: ROLE_* */
    tg_tensor **params;  /* parameters the tape reads, in order of first use */
    int n_params, cap_params;
    int loss;            /* index of the loss entry, -1 if none */
    int first_bad;       /* first entry with a non-finite value or gradient, -1 */
    int fold;            /* steps fold_lo..fold_hi are drawn as one box */
    int fold_lo, fold_hi, fold_steps, fold_entries;
} view;

static int param_find(const view *v, const tg_tensor *p)
{
    for (int j = v->n_params - 1; j >= 0; j--)
        if (v->params[j] == p) return j;
    return -1;
}

static tg_status param_add(view *v, tg_tensor *p)
{
    if (param_find(v, p) >= 0) return TG_OK;
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

static void params_sort(view *v)
{
    if (v->n_params > 1) qsort(v->params, (size_t)v->n_params, sizeof *v->params, cmp_param);
}

static void view_free(view *v)
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
static void infer_steps(tg_tape *tp, int n, int *s)
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

static int is_folded(const view *v, int i)
{
    return v->fold && i != v->loss && v->step[i] >= v->fold_lo && v->step[i] <= v->fold_hi;
}

/* What a fold hides: every step strictly between the first that computes
 * something (not just initial states) and the last, if there is one; fills fold, fold_lo, fold_hi, fold_steps (distinct steps)
 * and fold_entries. */
static tg_status fold_init(view *v)
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

static tg_status view_init(view *v, tg_tape *tp, const tg_dump_opts *o)
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
    infer_steps(tp, tp->n, v->step);
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
            if (t->in[k]->kind == TG_KIND_PARAM && param_add(v, t->in[k])) return TG_ERR_NOMEM;
        if (v->first_bad < 0 && (count_bad(t->val, tg_numel(t)) ||
                                 (o && o->grads && count_bad(t->grad, tg_numel(t)))))
            v->first_bad = i;
    }
    params_sort(v);
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
    return count_bad(t->val, tg_numel(t)) || (grads && count_bad(t->grad, tg_numel(t)));
}

/* ---- text ---------------------------------------------------------------------- */

/* The fields of one text line: index, op, name, source, inputs, shape,
 * value, gradient, flags.  Each is one whitespace-free token. */
enum { F_ID, F_OP, F_NAME, F_SOURCE, F_IN, F_SHAPE, F_VAL, F_GRAD, F_FLAGS, N_FIELDS };
#define FIELD_LEN 512
#define FIELD_WIDTH_CAP 40 /* wider fields push their line, not the whole column */

/* Copies s with control characters and spaces replaced by '_'. */
static void token(char *dst, const char *s)
{
    size_t k = 0;
    for (; *s && k + 1 < FIELD_LEN; s++) dst[k++] = (unsigned char)*s <= ' ' ? '_' : *s;
    dst[k] = 0;
}

static void text_fields(const view *v, const tg_tensor *t, int pidx, const tg_dump_opts *o,
                        char f[N_FIELDS][FIELD_LEN])
{
    char buf[FIELD_LEN];
    sbuf b;
    int grads = o && o->grads, mv = max_values_of(o);
    if (t->kind == TG_KIND_PARAM) snprintf(f[F_ID], FIELD_LEN, "p%d", pidx);
    else snprintf(f[F_ID], FIELD_LEN, "%d", t->index);
    token(f[F_OP], tg_tensor_op(t));
    sb_init(&b, buf, sizeof buf);
    sb_name(&b, t);
    token(f[F_NAME], b.pos ? buf : "-");
    sb_init(&b, buf, sizeof buf);
    if (t->file) sb_printf(&b, "%s:%d:%d", t->file, t->line, t->column);
    token(f[F_SOURCE], b.pos ? buf : "-");
    sb_init(&b, buf, sizeof buf);
    sb_printf(&b, "in=");
    for (int k = 0; k < t->n_in; k++) {
        const tg_tensor *x = t->in[k];
        if (x->kind == TG_KIND_PARAM) sb_printf(&b, "%s%s", k ? "," : "", x->label ? x->label : "?");
        else sb_printf(&b, "%s%d", k ? "," : "", x->index);
    }
    if (!t->n_in) sb_printf(&b, "-");
    token(f[F_IN], buf);
    sb_init(&b, buf, sizeof buf);
    sb_shape(&b, t, 1);
    token(f[F_SHAPE], buf);
    sb_init(&b, buf, sizeof buf);
    sb_printf(&b, "val=");
    sb_summary(&b, t->val, tg_numel(t), mv, SUM_TEXT);
    token(f[F_VAL], buf);
    f[F_GRAD][0] = 0;
    if (grads) {
        sb_init(&b, buf, sizeof buf);
        sb_printf(&b, "grad=");
        sb_summary(&b, t->grad, tg_numel(t), mv, SUM_TEXT);
        token(f[F_GRAD], buf);
    }
    sb_init(&b, f[F_FLAGS], FIELD_LEN);
    if (t->kind != TG_KIND_PARAM && v->role[t->index] >= ROLE_TARGET)
        sb_printf(&b, "%s", role_names[v->role[t->index]]);
    if (entry_bad(t, grads)) sb_printf(&b, "%sNONFINITE", b.pos ? " " : "");
}

static const tg_tensor *text_row(const view *v, int r, int *pidx)
{
    *pidx = r < v->n_params ? r : -1;
    return r < v->n_params ? v->params[r] : v->tp->nodes[r - v->n_params];
}

static void dump_text(FILE *out, const view *v, const tg_dump_opts *o)
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
    fprintf(out, "# tapegrad tape%s%s: %d entries, %d params%s\n", o && o->title ? " of " : "",
            o && o->title ? o->title : "", v->n, v->n_params, grads ? ", with gradients" : "");
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

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static int utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (s[0] >= 0xf8) n = 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* A JSON string literal (or null); invalid UTF-8 becomes U+FFFD. */
static void json_str(FILE *out, const char *s)
{
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (!n) {
            fputs("\\ufffd", out);
            p++;
        } else if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p++, out);
        } else if (*p < 0x20) {
            const char *esc = *p == '\n' ? "\\n" : *p == '\t' ? "\\t" : *p == '\r' ? "\\r" : NULL;
            if (esc) fputs(esc, out);
            else fprintf(out, "\\u%04x", *p);
            p++;
        } else {
            fwrite(p, 1, (size_t)n, out);
            p += n;
        }
    }
    fputc('"', out);
}

static void json_num(FILE *out, double x)
{
    if (isnan(x)) fputs("\"nan\"", out);
    else if (isinf(x)) fputs(x > 0 ? "\"inf\"" : "\"-inf\"", out);
    else fprintf(out, "%.*g", JSON_DIGITS, x);
}

static void json_summary(FILE *out, const tg_real *v, size_t n, int max_values)
{
    if (!v) {
        fputs("null", out);
        return;
    }
    stats s;
    stats_of(v, n, &s);
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

static void dump_json(FILE *out, const view *v, const tg_dump_opts *o)
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

/* A DOT double-quoted string: quotes and backslashes escaped, '\n' in s
 * becomes a centred line break, other control characters and invalid UTF-8
 * become '?' (Graphviz warns about both).  <, > and braces need no escape in
 * a quoted (non-HTML, non-record) label. */
static void dot_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        if (!n) {
            fputc('?', out);
            p++;
        } else if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p++, out);
        } else if (*p == '\n') {
            fputs("\\n", out);
            p++;
        } else if (*p < 0x20) {
            fputc('?', out);
            p++;
        } else {
            fwrite(p, 1, (size_t)n, out);
            p += n;
        }
    }
    fputc('"', out);
}

/* Fill colours by role, and for parameters; one legend says what they mean. */
#define DOT_PARAM  "#fff2cc"
#define DOT_INPUT  "#dae8fc"
#define DOT_TARGET "#e1d5e7"
#define DOT_LOSS   "#ffd8a8"
#define DOT_OP     "#ffffff"

static void dot_node(FILE *out, const view *v, const tg_tensor *t, int pidx, const tg_dump_opts *o,
                     const char *indent)
{
    char buf[1024];
    sbuf b;
    int grads = o && o->grads, mv = max_values_of(o);
    int is_param = t->kind == TG_KIND_PARAM;
    int role = is_param ? -1 : v->role[t->index];
    sb_init(&b, buf, sizeof buf);
    if (is_param) {
        sb_printf(&b, "%s\nparam ", t->label ? t->label : "?");
    } else {
        if (t->label) sb_name(&b, t);
        if (t->file) { /* the file's base name keeps the box narrow; the tooltip has all */
            const char *base = strrchr(t->file, '/');
            sb_printf(&b, "%s%s:%d", t->label ? "  " : "", base ? base + 1 : t->file, t->line);
        }
        if (t->label || t->file) sb_printf(&b, "\n");
        sb_printf(&b, "#%d %s ", t->index, tg_tensor_op(t));
    }
    sb_shape(&b, t, 0);
    if (role == ROLE_LOSS) sb_printf(&b, "  (loss)");
    else if (role == ROLE_TARGET) sb_printf(&b, "  (target)");
    sb_printf(&b, "\nval ");
    sb_summary(&b, t->val, tg_numel(t), mv, SUM_DOT);
    if (grads && t->grad) {
        sb_printf(&b, "\ngrad ");
        sb_summary(&b, t->grad, tg_numel(t), mv, SUM_DOT);
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
    sb_init(&b, buf, sizeof buf);
    if (is_param) sb_printf(&b, "parameter %s", t->label ? t->label : "?");
    else sb_printf(&b, "entry %d", t->index);
    if (t->file) sb_printf(&b, " at %s:%d:%d", t->file, t->line, t->column);
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
static void dot_time_axis(FILE *out, const view *v, const uint64_t *order, size_t n)
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

static tg_status dump_dot(FILE *out, const view *v, const tg_dump_opts *o)
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
        sbuf b;
        sb_init(&b, buf, sizeof buf);
        sb_printf(&b, "%s%s%d tape entries, %d parameters%s", o && o->title ? o->title : "",
                  o && o->title ? ": " : "", v->n, v->n_params, o && o->grads ? ", after backward" : "");
        sb_printf(&b, "\nyellow: parameter   blue: input   purple: target   orange: loss   "
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
            if (is_param) snprintf(src, sizeof src, "p%d", param_find(v, x));
            else snprintf(src, sizeof src, "e%d", x->index);
            const char *attr = is_param ? " [color=\"#b8a040\", style=dashed]" : "";
            if (fi && fx) continue;
            if (fi) {
                size_t slot = is_param ? n + (size_t)param_find(v, x) : (size_t)x->index;
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
    view v;
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
    view v; /* collects the tape's parameters when ps is NULL */
    memset(&v, 0, sizeof v);
    v.tp = tp;
    tg_status st = TG_ERR_NOMEM;
    int *step = tg_alloc(ctx, n * sizeof *step);
    if (!step) goto done;
    infer_steps(tp, tp->n, step);
    w.step = step;
    if (ps) { /* the table's columns: ps's parameters in order, else the tape's */
        for (int j = 0; j < ps->n; j++)
            if (param_add(&v, ps->list[j].t)) goto done;
    } else {
        for (int i = 0; i <= last; i++)
            for (int k = 0; k < tp->nodes[i]->n_in; k++)
                if (tp->nodes[i]->in[k]->kind == TG_KIND_PARAM && param_add(&v, tp->nodes[i]->in[k]))
                    goto done;
    }
    params_sort(&v);
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
        if (!isnan(x)) fprintf(out, ",%s", fmt_num(b, sizeof b, x, JSON_DIGITS));
        else fputc(',', out);
    } else {
        fprintf(out, " %*s", width, isnan(x) ? "-" : fmt_num(b, sizeof b, x, SHOW_DIGITS));
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
        char head[96];
        snprintf(head, sizeof head, "%s%s", c < gn->n_params ? "" : "dL/d", gn->names[c]);
        if (csv) {
            fputc(',', out);
            for (const char *p = head; *p; p++) /* quote-free CSV: names are identifiers */
                fputc(*p == ',' || *p == '"' || (unsigned char)*p < ' ' ? '_' : *p, out);
        } else {
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
