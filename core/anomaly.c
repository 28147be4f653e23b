/* anomaly.c — where a non-finite number came from, in words: the entry
 * descriptions that anomaly mode (tape.c) and tg_tape_check_finite put in
 * error messages ("entry 17 (exp [1] 'h[t=12]' at m.yaml:9:7); value ...;
 * inputs: ..."), with the string builder and value summaries that the dumps
 * share (tg_dump.h).  Names and file names are escaped (tg_escape.h). */
#include "tg_dump.h"
#include "tg_escape.h"
#include <math.h>

/* ---- a bounded string builder: appends, truncates, never overflows ------- */

void tgd_sb_init(tgd_sbuf *b, char *p, size_t len)
{
    b->p = p;
    b->len = len;
    b->pos = 0;
    if (len) p[0] = 0;
}

void tgd_sb_printf(tgd_sbuf *b, const char *fmt, ...)
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

void tgd_sb_esc(tgd_sbuf *b, const char *s)
{
    if (!s || b->pos + 1 >= b->len) return;
    tg_esc_str(b->p + b->pos, b->len - b->pos, s, TG_ESC_TEXT);
    b->pos += strlen(b->p + b->pos);
}

/* ---- numbers and summaries ------------------------------------------------- */
const char *tgd_fmt_num(char *buf, size_t len, double v, int digits)
{
    if (isnan(v)) snprintf(buf, len, "nan");
    else if (isinf(v)) snprintf(buf, len, v > 0 ? "inf" : "-inf");
    else snprintf(buf, len, "%.*g", digits, v);
    return buf;
}

void tgd_stats_of(const tg_real *v, size_t n, tgd_stats *s)
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

size_t tgd_count_bad(const tg_real *v, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; v && i < n; i++) bad += !isfinite(v[i]);
    return bad;
}

void tgd_sb_summary(tgd_sbuf *b, const tg_real *v, size_t n, int max_values, int style)
{
    char x[32];
    if (!v) {
        tgd_sb_printf(b, "-");
        return;
    }
    if (n <= (size_t)max_values) {
        tgd_sb_printf(b, "[");
        for (size_t i = 0; i < n; i++)
            tgd_sb_printf(b, "%s%s", i ? (style == TGD_SUM_TEXT ? "," : ", ") : "",
                      tgd_fmt_num(x, sizeof x, (double)v[i], TGD_SHOW_DIGITS));
        tgd_sb_printf(b, "]");
        return;
    }
    tgd_stats s;
    tgd_stats_of(v, n, &s);
    const char *sep = style == TGD_SUM_TEXT ? "," : style == TGD_SUM_DOT ? "  " : ", ";
    const char *eq = style == TGD_SUM_TEXT ? "=" : " ";
    if (style != TGD_SUM_DOT) tgd_sb_printf(b, "{");
    if (s.bad < n) {
        tgd_sb_printf(b, "min%s%s", eq, tgd_fmt_num(x, sizeof x, s.min, TGD_SHOW_DIGITS));
        tgd_sb_printf(b, "%smax%s%s", sep, eq, tgd_fmt_num(x, sizeof x, s.max, TGD_SHOW_DIGITS));
        tgd_sb_printf(b, "%smean%s%s", sep, eq,
                  tgd_fmt_num(x, sizeof x, s.sum / (double)(n - s.bad), TGD_SHOW_DIGITS));
    }
    if (s.bad) {
        if (style == TGD_SUM_TEXT) tgd_sb_printf(b, "%snonfinite=%zu", s.bad < n ? sep : "", s.bad);
        else tgd_sb_printf(b, "%s%zu of %zu non-finite, first [%zu] = %s", s.bad < n ? ", " : "", s.bad, n,
                       s.first_bad, tgd_fmt_num(x, sizeof x, (double)v[s.first_bad], 3));
    }
    if (style != TGD_SUM_DOT) tgd_sb_printf(b, "}");
}

void tgd_sb_shape(tgd_sbuf *b, const tg_tensor *t, int compact)
{
    if (t->ndim == 1) tgd_sb_printf(b, "[%d]", t->rows);
    else tgd_sb_printf(b, compact ? "[%d,%d]" : "[%d, %d]", t->rows, t->cols);
}

void tgd_sb_name(tgd_sbuf *b, const tg_tensor *t)
{
    if (t->kind == TG_KIND_PARAM) tgd_sb_esc(b, t->label ? t->label : "?");
    else if (t->label) {
        tgd_sb_esc(b, t->label);
        if (t->step >= 0) tgd_sb_printf(b, "[t=%d]", t->step);
    }
}

/* ---- anomaly messages (tape.c calls this when detection is on) ------------ */

/* "entry 17 (exp [1] 'h[t=12]' at m.yaml:9:7)", then per `what`: the entry's
 * value (TG_DESCRIBE_VALUE) or gradient (TG_DESCRIBE_GRAD) and each input's
 * value (and gradient) summary, so a message shows where the bad number came
 * from.  Writes at most len bytes into buf. */
void tg_describe_entry(const tg_tensor *t, int what, char *buf, size_t len)
{
    tgd_sbuf b;
    tgd_sb_init(&b, buf, len);
    tgd_sb_printf(&b, "entry %d (%s ", t->index, tg_tensor_op(t));
    tgd_sb_shape(&b, t, 0);
    if (t->label) {
        tgd_sb_printf(&b, " '");
        tgd_sb_name(&b, t);
        tgd_sb_printf(&b, "'");
    }
    if (t->file) {
        tgd_sb_printf(&b, " at ");
        tgd_sb_esc(&b, t->file);
        tgd_sb_printf(&b, ":%d:%d", t->line, t->column);
    }
    tgd_sb_printf(&b, ")");
    if (what == TG_DESCRIBE_NAME) return;
    size_t n = tg_numel(t);
    int grads = what == TG_DESCRIBE_GRAD;
    tgd_sb_printf(&b, grads ? "; its gradient " : "; value ");
    tgd_sb_summary(&b, grads ? t->grad : t->val, n, TGD_DEFAULT_VALUES, TGD_SUM_MSG);
    for (int k = 0; k < t->n_in; k++) {
        const tg_tensor *x = t->in[k];
        if (b.pos + 160 >= b.len) {
            tgd_sb_printf(&b, "; and %d more input%s", t->n_in - k, t->n_in - k > 1 ? "s" : "");
            break;
        }
        tgd_sb_printf(&b, "%s input %d: ", k ? ";" : "; inputs:", k);
        if (x->kind == TG_KIND_PARAM) {
            tgd_sb_printf(&b, "param '");
            tgd_sb_esc(&b, x->label ? x->label : "?");
            tgd_sb_printf(&b, "' ");
        }
        else {
            tgd_sb_printf(&b, "entry %d %s ", x->index, tg_tensor_op(x));
            if (x->label) {
                tgd_sb_printf(&b, "'");
                tgd_sb_name(&b, x);
                tgd_sb_printf(&b, "' ");
            }
        }
        tgd_sb_shape(&b, x, 0);
        tgd_sb_printf(&b, " value ");
        tgd_sb_summary(&b, x->val, tg_numel(x), TGD_DEFAULT_VALUES, TGD_SUM_MSG);
        if (grads && x->grad) {
            tgd_sb_printf(&b, ", gradient ");
            tgd_sb_summary(&b, x->grad, tg_numel(x), TGD_DEFAULT_VALUES, TGD_SUM_MSG);
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
        if (tgd_count_bad(t->val, tg_numel(t))) {
            tg_describe_entry(t, TG_DESCRIBE_VALUE, where, sizeof where);
            return tg_error(tp->ctx, TG_ERR_NONFINITE, "first non-finite value: %s", where);
        }
    }
    if (!loss) return TG_OK;
    /* Gradients flow from the loss down the tape: the first bad one in sweep
     * order is the highest-indexed entry that has one. */
    for (int i = loss->index; i >= 0 && i < tp->n; i--) {
        tg_tensor *t = tp->nodes[i];
        if (t->grad && tgd_count_bad(t->grad, tg_numel(t))) {
            tg_describe_entry(t, TG_DESCRIBE_GRAD, where, sizeof where);
            return tg_error(tp->ctx, TG_ERR_NONFINITE, "first non-finite gradient: %s", where);
        }
    }
    return TG_OK;
}

