/* expr.c — the equation language of model files.  Each equation of `step`
 * (and the `loss`) is lexed, parsed by recursive descent and compiled in the
 * same pass into flat instructions over numbered slots, with every name
 * resolved and every shape checked (through tg_op_shape, so the checker and
 * the tape agree).  Nothing here runs per time step.
 *
 *   equation := NAME '=' expr
 *   expr     := term (('+' | '-') term)*
 *   term     := unary (('*' | '/' | '@') unary)*
 *   unary    := ('-' | '+') unary | primary
 *   primary  := NUMBER | NAME | NAME '(' [expr (',' expr)*] ')' | '(' expr ')'
 *
 * Numbers fold: `1 - z` becomes scale(z, -1, 1), `2 * x` scale(x, 2, 0). */
#include "tg_model_internal.h"
#include <math.h>
#include <stdio.h>

enum { SYM_DIM, SYM_PARAM, SYM_INPUT, SYM_TARGET, SYM_STATE, SYM_EQ, SYM_CONST };
static const char *const sym_kind_name[] = {"a dim", "a param", "an input", "a target", "a state",
                                            "an equation", "a constant"};

typedef struct sym {
    const char *name;
    int kind;           /* SYM_* */
    int slot;           /* tensors */
    int rows, cols, ndim;
    double value;       /* SYM_DIM, SYM_CONST */
    int line;           /* declared or defined at */
    int assigned_line;  /* states: where the step assigns it, 0 before */
} sym;

/* a value while compiling: a number known now, or a tensor in a slot */
typedef struct val {
    int is_const;
    double c;
    int slot;
    int rows, cols, ndim;
    int temp;           /* the slot is a fresh temporary written by the last instruction */
} val;

enum { T_END, T_NAME, T_NUM, T_PUNCT, T_BAD };

typedef struct later_eq { const char *name; size_t len; int line; } later_eq;

struct tgm_compiler {
    tg_model *m;
    const tgm_ydoc *d;
    tg_ctx *ctx;
    sym *syms;
    int n_syms, cap_syms;
    tgm_instr *code;
    int n_code, cap_code;
    /* the equation being compiled */
    int node;
    const char *src;
    size_t len, pos;
    int tok;            /* T_* */
    size_t tok_pos, tok_len;
    double tok_num;
    int depth;
    const char *label;
    const char *self;   /* the name being defined, for "uses itself" */
    size_t self_len;
    int const_only;     /* shapes and init arguments: numbers and dims only */
    int syntax_only;    /* a first pass that only parses, so syntax errors come first */
    later_eq *later;    /* names every equation of the step defines, in order */
    int n_later, cur_eq;
};
typedef struct tgm_compiler C;

/* ---- errors --------------------------------------------------------------------- */
static tg_status err_at(C *c, size_t off, tg_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static tg_status err_at(C *c, size_t off, tg_status s, const char *fmt, ...)
{
    char msg[TG_ERRMSG_LEN - 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tgm_err_at(c->d, c->node, off, s, "%s", msg);
}

static const char *tok_text(C *c, char *buf, size_t len)
{
    if (c->tok == T_END) return "the end of the equation";
    size_t n = c->tok_len < 40 ? c->tok_len : 40;
    unsigned char ch = (unsigned char)c->src[c->tok_pos];
    if (c->tok == T_BAD && (ch < 32 || ch >= 127)) snprintf(buf, len, "byte 0x%02x", ch);
    else if (c->tok == T_BAD && ch == '\'') snprintf(buf, len, "\"'\"");
    else snprintf(buf, len, "'%.*s'", (int)n, c->src + c->tok_pos);
    return buf;
}

/* ---- the lexer ----------------------------------------------------------------------- */
static int is_alpha(char ch) { return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }
static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static void next(C *c)
{
    const char *s = c->src;
    while (c->pos < c->len && (s[c->pos] == ' ' || s[c->pos] == '\t' || s[c->pos] == '\n' ||
                               s[c->pos] == '\r'))
        c->pos++;
    c->tok_pos = c->pos;
    if (c->pos >= c->len) {
        c->tok = T_END;
        c->tok_len = 0;
        return;
    }
    char ch = s[c->pos];
    if (is_alpha(ch)) {
        while (c->pos < c->len && (is_alpha(s[c->pos]) || is_digit(s[c->pos]))) c->pos++;
        c->tok = T_NAME;
    } else if (is_digit(ch) || (ch == '.' && c->pos + 1 < c->len && is_digit(s[c->pos + 1]))) {
        while (c->pos < c->len && is_digit(s[c->pos])) c->pos++;
        if (c->pos < c->len && s[c->pos] == '.') {
            c->pos++;
            while (c->pos < c->len && is_digit(s[c->pos])) c->pos++;
        }
        if (c->pos < c->len && (s[c->pos] == 'e' || s[c->pos] == 'E')) {
            size_t p = c->pos + 1;
            if (p < c->len && (s[p] == '+' || s[p] == '-')) p++;
            if (p < c->len && is_digit(s[p])) {
                while (p < c->len && is_digit(s[p])) p++;
                c->pos = p;
            }
        }
        char buf[64];
        size_t n = c->pos - c->tok_pos;
        c->tok = T_NUM;
        if (n >= sizeof buf || (c->pos < c->len && is_alpha(s[c->pos]))) {
            while (c->pos < c->len && (is_alpha(s[c->pos]) || is_digit(s[c->pos]))) c->pos++;
            c->tok = T_BAD;
        } else {
            memcpy(buf, s + c->tok_pos, n);
            buf[n] = 0;
            c->tok_num = strtod(buf, NULL);
            if (!isfinite(c->tok_num)) c->tok = T_BAD;
        }
    } else if (strchr("=+-*/@(),", ch)) {
        c->pos++;
        c->tok = T_PUNCT;
    } else {
        c->pos++;
        c->tok = T_BAD;
    }
    c->tok_len = c->pos - c->tok_pos;
}

static int is_punct(C *c, char ch) { return c->tok == T_PUNCT && c->src[c->tok_pos] == ch; }

/* ---- symbols ----------------------------------------------------------------------------- */
static sym *find_sym(C *c, const char *name, size_t len)
{
    for (int i = c->n_syms - 1; i >= 0; i--)
        if (strlen(c->syms[i].name) == len && memcmp(c->syms[i].name, name, len) == 0) return &c->syms[i];
    return NULL;
}

static sym *add_sym(C *c, const char *name, int kind)
{
    if (c->n_syms == c->cap_syms) {
        int cap = c->cap_syms ? c->cap_syms * 2 : 64;
        sym *s = tg_realloc(c->ctx, c->syms, (size_t)c->cap_syms * sizeof *s, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        c->syms = s;
        c->cap_syms = cap;
    }
    sym *s = &c->syms[c->n_syms++];
    memset(s, 0, sizeof *s);
    s->name = name;
    s->kind = kind;
    s->slot = -1;
    return s;
}

/* ---- emitting ------------------------------------------------------------------------------ */
static int new_slot(C *c) { return c->m->n_slots++; }

static tgm_instr *emit(C *c, const tg_op *op, int n_in, const int *in, int n_attrs,
                       const double *attrs, size_t off)
{
    if (c->n_code == c->cap_code) {
        int cap = c->cap_code ? c->cap_code * 2 : 64;
        tgm_instr *k = tg_realloc(c->ctx, c->code, (size_t)c->cap_code * sizeof *k, (size_t)cap * sizeof *k);
        if (!k) return NULL;
        c->code = k;
        c->cap_code = cap;
    }
    int *ins = tgm_palloc(&c->m->pool, (size_t)(n_in ? n_in : 1) * sizeof *ins);
    if (!ins) return NULL;
    memcpy(ins, in, (size_t)n_in * sizeof *ins);
    tgm_instr *k = &c->code[c->n_code++];
    memset(k, 0, sizeof *k);
    k->op = op;
    k->n_in = n_in;
    k->in = ins;
    k->n_attrs = n_attrs;
    for (int i = 0; i < n_attrs; i++) k->attrs[i] = attrs[i];
    k->out = new_slot(c);
    k->label = c->label;
    tgm_locate(c->d, c->node, off, &k->line, &k->col);
    if (n_in > c->m->max_in) c->m->max_in = n_in;
    return k;
}

/* op messages are "name: reason"; keep the reason, with the batch stand-in as B */
static void op_reason(C *c, char *out, size_t len)
{
    const char *msg = tg_errmsg(c->ctx);
    const char *colon = strstr(msg, ": ");
    if (colon) msg = colon + 2;
    char num[16];
    int nl = snprintf(num, sizeof num, "%d", TGM_BATCH);
    size_t k = 0;
    while (*msg && k + 2 < len) {
        if (!strncmp(msg, num, (size_t)nl) && !is_digit(msg[nl])) {
            out[k++] = 'B';
            msg += nl;
        } else out[k++] = *msg++;
    }
    out[k] = 0;
}

static int all_1d_out(const val *v, int n, int out_cols)
{
    for (int i = 0; i < n; i++)
        if (v[i].ndim != 1) return 2;
    return out_cols == 1 ? 1 : 2;
}

/* Records op over tensor values v[0..n) at source offset off; on a shape
 * error, describe() words the message.  The result is a temporary. */
static tg_status apply(C *c, const tg_op *op, int n, const val *v, int n_attrs, const double *attrs,
                       size_t off, const char *sym_name, val *out)
{
    int shapes[TGM_MAX_ARGS][2], in[TGM_MAX_ARGS];
    if (c->syntax_only) {
        memset(out, 0, sizeof *out);
        out->rows = out->cols = out->ndim = 1;
        return TG_OK;
    }
    for (int i = 0; i < n; i++) {
        shapes[i][0] = v[i].rows;
        shapes[i][1] = v[i].ndim == 1 ? 1 : v[i].cols;
        in[i] = v[i].slot;
    }
    int o[2];
    if (tg_op_shape(c->ctx, op->def.name, n, (const int (*)[2])shapes, n_attrs, attrs, o) != TG_OK) {
        char a[40], b[40], reason[300];
        if (tg_status_last(c->ctx) == TG_ERR_NOMEM) return TG_ERR_NOMEM;
        op_reason(c, reason, sizeof reason);
        tgm_shape_str(a, sizeof a, v[0].rows, v[0].cols, v[0].ndim);
        if (sym_name && n == 2) {
            tgm_shape_str(b, sizeof b, v[1].rows, v[1].cols, v[1].ndim);
            char why[160];
            if (*sym_name == '@') {
                char ka[16], kb[16];
                snprintf(why, sizeof why, "inner dimensions %s and %s differ",
                         v[0].ndim == 1 ? "1" : (v[0].cols == TGM_BATCH ? "B" : (snprintf(ka, sizeof ka, "%d", v[0].cols), ka)),
                         v[1].rows == TGM_BATCH ? "B" : (snprintf(kb, sizeof kb, "%d", v[1].rows), kb));
            } else {
                int rows_clash = v[0].rows != v[1].rows && v[0].rows != 1 && v[1].rows != 1;
                int ca = v[0].ndim == 1 ? 1 : v[0].cols, cb = v[1].ndim == 1 ? 1 : v[1].cols;
                char x[16], y[16];
                if (rows_clash)
                    snprintf(why, sizeof why, "rows %s and %s differ",
                             v[0].rows == TGM_BATCH ? "B" : (snprintf(x, sizeof x, "%d", v[0].rows), x),
                             v[1].rows == TGM_BATCH ? "B" : (snprintf(y, sizeof y, "%d", v[1].rows), y));
                else
                    snprintf(why, sizeof why, "columns %s and %s differ",
                             ca == TGM_BATCH ? "B" : (snprintf(x, sizeof x, "%d", ca), x),
                             cb == TGM_BATCH ? "B" : (snprintf(y, sizeof y, "%d", cb), y));
            }
            return err_at(c, off, TG_ERR_SHAPE, "shape mismatch in '%s': %s %s %s (%s)", sym_name, a,
                          sym_name, b, why);
        }
        char list[400];
        size_t k = 0;
        list[0] = 0;
        for (int i = 0; i < n && k < sizeof list - 48; i++) {
            tgm_shape_str(a, sizeof a, v[i].rows, v[i].cols, v[i].ndim);
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", a);
        }
        return err_at(c, off, TG_ERR_SHAPE, "shape mismatch in '%s': %s (%s)", op->def.name, list, reason);
    }
    tgm_instr *k = emit(c, op, n, in, n_attrs, attrs, off);
    if (!k) return TG_ERR_NOMEM;
    k->rows = o[0];
    k->cols = o[1];
    memset(out, 0, sizeof *out);
    out->slot = k->out;
    out->rows = o[0];
    out->ndim = all_1d_out(v, n, o[1]);
    out->cols = out->ndim == 1 ? 1 : o[1];
    out->temp = 1;
    return TG_OK;
}

static const tg_op *builtin(C *c, tg_op_id id) { return tg_op_by_id(c->ctx, id); }

/* alpha * v + beta, folding into the previous scale if v was just made by one */
static tg_status scale(C *c, const val *v, double alpha, double beta, size_t off, val *out)
{
    if (!c->syntax_only && v->temp && c->n_code > 0) {
        tgm_instr *k = &c->code[c->n_code - 1];
        if (k->out == v->slot && k->op == builtin(c, TG_OP_SCALE)) {
            k->attrs[0] *= alpha;
            k->attrs[1] = k->attrs[1] * alpha + beta;
            *out = *v;
            return TG_OK;
        }
    }
    double at[2] = {alpha, beta};
    return apply(c, builtin(c, TG_OP_SCALE), 1, v, 2, at, off, NULL, out);
}

/* ---- the parser ------------------------------------------------------------------------------ */
static tg_status expr(C *c, val *out, size_t *start);

static tg_status name_value(C *c, size_t off, size_t len, val *out)
{
    const char *name = c->src + off;
    if (c->syntax_only) {
        memset(out, 0, sizeof *out);
        out->rows = out->cols = out->ndim = 1;
        return TG_OK;
    }
    sym *s = find_sym(c, name, len);
    if (!s || (c->const_only && s->kind != SYM_DIM && s->kind != SYM_CONST)) {
        if (c->const_only) {
            if (s)
                return err_at(c, off, TG_ERR_PARSE, "'%.*s' is %s; only numbers and dims may appear here",
                              (int)len, name, sym_kind_name[s->kind]);
            const char *cands[TGM_MAX_DECLS];
            int n = 0;
            for (int i = 0; i < c->n_syms && n < TGM_MAX_DECLS; i++)
                if (c->syms[i].kind == SYM_DIM) cands[n++] = c->syms[i].name;
            char word[TGM_MAX_NAME + 1], dym[120];
            snprintf(word, sizeof word, "%.*s", (int)(len < TGM_MAX_NAME ? len : TGM_MAX_NAME), name);
            return err_at(c, off, TG_ERR_PARSE, "unknown dim '%.*s'%s", (int)len, name,
                          tgm_did_you_mean(dym, sizeof dym, word, cands, n));
        }
        if (c->self && len == c->self_len && !memcmp(name, c->self, len))
            return err_at(c, off, TG_ERR_PARSE,
                          "equation '%.*s' uses itself (only a state may read its previous value)",
                          (int)len, name);
        for (int i = c->cur_eq + 1; i < c->n_later; i++)
            if (c->later[i].len == len && !memcmp(c->later[i].name, name, len))
                return err_at(c, off, TG_ERR_PARSE,
                              "'%.*s' is read before its equation at line %d assigns it: equations run in "
                              "order, and a value carried from one step to the next must be declared under "
                              "'state:'", (int)len, name, c->later[i].line);
        const char **cands = tg_alloc(c->ctx, (size_t)(c->n_syms + 1) * sizeof *cands);
        if (!cands) return TG_ERR_NOMEM;
        for (int i = 0; i < c->n_syms; i++) cands[i] = c->syms[i].name;
        char word[TGM_MAX_NAME + 1], dym[120];
        snprintf(word, sizeof word, "%.*s", (int)(len < TGM_MAX_NAME ? len : TGM_MAX_NAME), name);
        tgm_did_you_mean(dym, sizeof dym, word, cands, c->n_syms);
        tg_free(c->ctx, cands, (size_t)(c->n_syms + 1) * sizeof *cands);
        if (tg_op_exists(c->ctx, word))
            return err_at(c, off, TG_ERR_PARSE, "'%.*s' is an op: call it as %.*s(...)", (int)len, name,
                          (int)len, name);
        return err_at(c, off, TG_ERR_PARSE, "unknown name '%.*s'%s", (int)len, name, dym);
    }
    memset(out, 0, sizeof *out);
    if (s->kind == SYM_DIM || s->kind == SYM_CONST) {
        out->is_const = 1;
        out->c = s->value;
        return TG_OK;
    }
    out->slot = s->slot;
    out->rows = s->rows;
    out->cols = s->cols;
    out->ndim = s->ndim;
    return TG_OK;
}

static tg_status call(C *c, size_t off, size_t len, val *out)
{
    char name[TGM_MAX_NAME + 1], tb[64];
    snprintf(name, sizeof name, "%.*s", (int)(len < TGM_MAX_NAME ? len : TGM_MAX_NAME), c->src + off);
    if (c->const_only) {
        /* a dim named like an init function hides the function */
        if (find_sym(c, c->src + off, len))
            return err_at(c, off, TG_ERR_PARSE, "'%s' is a dim, so '%s(...)' cannot be read as a call here; "
                          "rename the dim", name, name);
        return err_at(c, off, TG_ERR_PARSE, "'%s(...)': only numbers and dims may appear here", name);
    }
    const tg_op *op = len <= TGM_MAX_NAME ? tg_op_lookup(c->ctx, name) : NULL;
    if (!op && !c->syntax_only) {
        int n = tg_op_count(c->ctx);
        const char **cands = tg_alloc(c->ctx, (size_t)(n + 1) * sizeof *cands);
        if (!cands) return TG_ERR_NOMEM;
        for (int i = 0; i < n; i++) cands[i] = tg_op_name(c->ctx, i);
        char dym[120];
        tgm_did_you_mean(dym, sizeof dym, name, cands, n);
        tg_free(c->ctx, cands, (size_t)(n + 1) * sizeof *cands);
        return err_at(c, off, TG_ERR_PARSE, "unknown op '%s'%s", name, dym);
    }
    if (++c->depth > TGM_MAX_EXPR_DEPTH)
        return err_at(c, off, TG_ERR_LIMIT, "expression nested deeper than %d levels", TGM_MAX_EXPR_DEPTH);
    size_t open = c->tok_pos;
    next(c); /* '(' */
    val args[TGM_MAX_ARGS];
    size_t arg_pos[TGM_MAX_ARGS];
    int n = 0;
    tg_status st;
    if (!is_punct(c, ')')) {
        for (;;) {
            if (n == TGM_MAX_ARGS)
                return err_at(c, c->tok_pos, TG_ERR_LIMIT, "more than %d arguments in a call", TGM_MAX_ARGS);
            if ((st = expr(c, &args[n], &arg_pos[n]))) return st;
            n++;
            if (is_punct(c, ',')) {
                next(c);
                continue;
            }
            if (is_punct(c, ')')) break;
            int l, col;
            tgm_locate(c->d, c->node, open, &l, &col);
            return err_at(c, c->tok_pos, TG_ERR_PARSE, "expected ',' or ')' in the call to '%s' opened at column %d, got %s",
                          name, col, tok_text(c, tb, sizeof tb));
        }
    }
    next(c); /* ')' */
    c->depth--;
    if (c->syntax_only) return apply(c, NULL, 0, NULL, 0, NULL, off, NULL, out);

    const tg_builtin_op *d = &op->def;
    int n_t = 0; /* tensor arguments: the fixed arity, or the leading tensors */
    if (d->arity >= 0) n_t = d->arity;
    else
        while (n_t < n && !args[n_t].is_const) n_t++;
    int n_a = n - n_t;
    if (n < n_t || n_a != d->n_attrs || (d->arity < 0 && n_t < 1)) {
        char want[96];
        if (d->arity < 0)
            snprintf(want, sizeof want, "at least 1 tensor%s", d->n_attrs ? " and then numbers" : "");
        else if (d->n_attrs)
            snprintf(want, sizeof want, "%d tensor%s and %d number%s", d->arity, d->arity == 1 ? "" : "s",
                     d->n_attrs, d->n_attrs == 1 ? "" : "s");
        else
            snprintf(want, sizeof want, "%d argument%s", d->arity, d->arity == 1 ? "" : "s");
        return err_at(c, off, TG_ERR_PARSE, "'%s' takes %s, got %d argument%s", name, want, n,
                      n == 1 ? "" : "s");
    }
    double attrs[TG_MAX_ATTRS];
    for (int i = 0; i < n; i++) {
        if (i < n_t && args[i].is_const)
            return err_at(c, arg_pos[i], TG_ERR_PARSE, "argument %d of '%s' must be a tensor, got the number %g",
                          i + 1, name, args[i].c);
        if (i >= n_t && !args[i].is_const)
            return err_at(c, arg_pos[i], TG_ERR_PARSE,
                          "argument %d of '%s' must be a number (an attribute), got a tensor", i + 1, name);
        if (i >= n_t) attrs[i - n_t] = args[i].c;
    }
    return apply(c, op, n_t, args, n_a, attrs, off, NULL, out);
}

static tg_status primary(C *c, val *out)
{
    char tb[64];
    if (c->tok == T_NUM) {
        memset(out, 0, sizeof *out);
        out->is_const = 1;
        out->c = c->tok_num;
        next(c);
        return TG_OK;
    }
    if (c->tok == T_NAME) {
        size_t off = c->tok_pos, len = c->tok_len;
        next(c);
        if (is_punct(c, '(')) return call(c, off, len, out);
        return name_value(c, off, len, out);
    }
    if (is_punct(c, '(')) {
        size_t open = c->tok_pos, start;
        if (++c->depth > TGM_MAX_EXPR_DEPTH)
            return err_at(c, open, TG_ERR_LIMIT, "expression nested deeper than %d levels", TGM_MAX_EXPR_DEPTH);
        next(c);
        tg_status st = expr(c, out, &start);
        if (st) return st;
        if (!is_punct(c, ')')) {
            int l, col;
            tgm_locate(c->d, c->node, open, &l, &col);
            return err_at(c, c->tok_pos, TG_ERR_PARSE, "expected ')' to close the '(' at column %d, got %s",
                          col, tok_text(c, tb, sizeof tb));
        }
        c->depth--;
        next(c);
        return TG_OK;
    }
    if (c->tok == T_END) return err_at(c, c->tok_pos, TG_ERR_PARSE, "expected a value at the end of the equation");
    if (c->tok == T_BAD) {
        if (is_digit(c->src[c->tok_pos]) || c->src[c->tok_pos] == '.')
            return err_at(c, c->tok_pos, TG_ERR_PARSE, "malformed number %s", tok_text(c, tb, sizeof tb));
        return err_at(c, c->tok_pos, TG_ERR_PARSE, "unexpected character %s", tok_text(c, tb, sizeof tb));
    }
    return err_at(c, c->tok_pos, TG_ERR_PARSE, "expected a value, got %s", tok_text(c, tb, sizeof tb));
}

static tg_status unary(C *c, val *out)
{
    if (is_punct(c, '-') || is_punct(c, '+')) {
        int neg = is_punct(c, '-');
        size_t off = c->tok_pos;
        if (++c->depth > TGM_MAX_EXPR_DEPTH)
            return err_at(c, off, TG_ERR_LIMIT, "expression nested deeper than %d levels", TGM_MAX_EXPR_DEPTH);
        next(c);
        val v;
        tg_status st = unary(c, &v);
        c->depth--;
        if (st) return st;
        if (!neg) *out = v;
        else if (v.is_const) *out = (val){.is_const = 1, .c = -v.c};
        else return scale(c, &v, -1, 0, off, out);
        return TG_OK;
    }
    return primary(c, out);
}

/* a op b for the infix operators */
static tg_status binary(C *c, char op, val *a, const val *b, size_t off)
{
    char sym_s[2] = {op, 0};
    if (c->syntax_only) return apply(c, NULL, 0, NULL, 0, NULL, off, NULL, a);
    if (op == '@') {
        if (a->is_const || b->is_const)
            return err_at(c, off, TG_ERR_PARSE, "'@' needs a tensor on both sides, got a number on the %s",
                          a->is_const ? "left" : "right");
        val v[2] = {*a, *b};
        return apply(c, builtin(c, TG_OP_MATMUL), 2, v, 0, NULL, off, sym_s, a);
    }
    if (a->is_const && b->is_const) {
        double x = a->c, y = b->c, r;
        if (op == '+') r = x + y;
        else if (op == '-') r = x - y;
        else if (op == '*') r = x * y;
        else {
            if (y == 0) return err_at(c, off, TG_ERR_PARSE, "division by zero");
            r = x / y;
        }
        if (!isfinite(r)) return err_at(c, off, TG_ERR_PARSE, "the constant overflows");
        a->c = r;
        return TG_OK;
    }
    if (op == '/') {
        if (!b->is_const)
            return err_at(c, off, TG_ERR_PARSE,
                          "'/' divides by a number only (there is no elementwise division op)");
        if (b->c == 0) return err_at(c, off, TG_ERR_PARSE, "division by zero");
        return scale(c, a, 1 / b->c, 0, off, a);
    }
    if (a->is_const || b->is_const) {
        const val *t = a->is_const ? b : a;
        double k = a->is_const ? a->c : b->c;
        val tv = *t;
        if (op == '+') return scale(c, &tv, 1, k, off, a);
        if (op == '*') return scale(c, &tv, k, 0, off, a);
        /* '-' */
        if (a->is_const) return scale(c, &tv, -1, k, off, a);
        return scale(c, &tv, 1, -k, off, a);
    }
    tg_op_id id = op == '+' ? TG_OP_ADD : op == '-' ? TG_OP_SUB : TG_OP_MUL;
    val v[2] = {*a, *b};
    return apply(c, builtin(c, id), 2, v, 0, NULL, off, sym_s, a);
}

static tg_status term(C *c, val *out)
{
    tg_status st = unary(c, out);
    while (!st && (is_punct(c, '*') || is_punct(c, '/') || is_punct(c, '@'))) {
        char op = c->src[c->tok_pos];
        size_t off = c->tok_pos;
        next(c);
        val b;
        if ((st = unary(c, &b))) break;
        st = binary(c, op, out, &b, off);
    }
    return st;
}

static tg_status expr(C *c, val *out, size_t *start)
{
    *start = c->tok_pos;
    tg_status st = term(c, out);
    while (!st && (is_punct(c, '+') || is_punct(c, '-'))) {
        char op = c->src[c->tok_pos];
        size_t off = c->tok_pos;
        next(c);
        val b;
        if ((st = term(c, &b))) break;
        st = binary(c, op, out, &b, off);
    }
    return st;
}

/* Parses all of the current source as one expression. */
static tg_status whole_expr(C *c, val *out, size_t *start)
{
    char tb[64];
    tg_status st = expr(c, out, start);
    if (st) return st;
    if (c->tok != T_END) {
        if (c->tok == T_NAME || c->tok == T_NUM || is_punct(c, '('))
            return err_at(c, c->tok_pos, TG_ERR_PARSE, "unexpected %s (missing an operator?)",
                          tok_text(c, tb, sizeof tb));
        if (c->tok == T_BAD)
            return err_at(c, c->tok_pos, TG_ERR_PARSE, "unexpected character %s", tok_text(c, tb, sizeof tb));
        return err_at(c, c->tok_pos, TG_ERR_PARSE, "unexpected %s", tok_text(c, tb, sizeof tb));
    }
    return TG_OK;
}

static void begin(C *c, int node, const char *label)
{
    c->node = node;
    c->src = tgm_str(c->d, node);
    c->len = tgm_node(c->d, node)->len;
    c->pos = 0;
    c->depth = 0;
    c->label = label;
    c->self = NULL;
    c->self_len = 0;
    next(c);
}

/* ---- constant expressions (shapes, init arguments) -------------------------------------- */
static tg_status add_dims(C *c)
{
    tg_model *m = c->m;
    for (int i = 0; m && i < m->n_vars[TG_ROLE_DIM]; i++) {
        sym *s = add_sym(c, m->vars[TG_ROLE_DIM][i].name, SYM_DIM);
        if (!s) return TG_ERR_NOMEM;
        s->value = m->vars[TG_ROLE_DIM][i].rows;
        s->line = m->vars[TG_ROLE_DIM][i].line;
    }
    return TG_OK;
}

tg_status tgm_const_expr(tg_model *m, const tgm_ydoc *d, int node, double *out)
{
    C c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.d = d;
    c.ctx = d->ctx;
    c.const_only = 1;
    tg_status st = add_dims(&c);
    if (!st) {
        begin(&c, node, "");
        if (c.len > TGM_MAX_EQ_LEN)
            st = tgm_err_node(d, node, TG_ERR_LIMIT, "longer than the limit of %d characters", TGM_MAX_EQ_LEN);
        else {
            val v;
            size_t start;
            st = whole_expr(&c, &v, &start);
            if (!st) *out = v.c;
        }
    }
    tg_free(c.ctx, c.syms, (size_t)c.cap_syms * sizeof *c.syms);
    return st;
}

tg_status tgm_init_expr(tg_model *m, const tgm_ydoc *d, int node, char *fname, size_t fname_len,
                        size_t *fname_off, double *args, int max_args, int *n_args)
{
    C c;
    char tb[64];
    memset(&c, 0, sizeof c);
    c.m = m;
    c.d = d;
    c.ctx = d->ctx;
    c.const_only = 1;
    fname[0] = 0;
    *n_args = 0;
    *fname_off = 0;
    tg_status st = add_dims(&c);
    if (st) goto done;
    begin(&c, node, "");
    if (c.len > TGM_MAX_EQ_LEN) {
        st = tgm_err_node(d, node, TG_ERR_LIMIT, "longer than the limit of %d characters", TGM_MAX_EQ_LEN);
        goto done;
    }
    if (c.tok == T_NAME && !find_sym(&c, c.src + c.tok_pos, c.tok_len)) {
        snprintf(fname, fname_len, "%.*s", (int)(c.tok_len < fname_len - 1 ? c.tok_len : fname_len - 1),
                 c.src + c.tok_pos);
        *fname_off = c.tok_pos;
        next(&c);
        if (is_punct(&c, '(')) {
            size_t open = c.tok_pos;
            next(&c);
            while (!is_punct(&c, ')')) {
                val v;
                size_t start;
                if (*n_args == max_args) {
                    st = err_at(&c, c.tok_pos, TG_ERR_PARSE, "too many arguments to '%s'", fname);
                    goto done;
                }
                if ((st = expr(&c, &v, &start))) goto done;
                args[(*n_args)++] = v.c;
                if (is_punct(&c, ',')) next(&c);
                else if (!is_punct(&c, ')')) {
                    int l, col;
                    tgm_locate(d, node, open, &l, &col);
                    st = err_at(&c, c.tok_pos, TG_ERR_PARSE,
                                "expected ',' or ')' in '%s(...)' opened at column %d, got %s", fname, col,
                                tok_text(&c, tb, sizeof tb));
                    goto done;
                }
            }
            next(&c);
        }
        if (c.tok != T_END)
            st = err_at(&c, c.tok_pos, TG_ERR_PARSE, "unexpected %s after '%s'", tok_text(&c, tb, sizeof tb), fname);
        goto done;
    }
    {
        val v;
        size_t start;
        if ((st = whole_expr(&c, &v, &start))) goto done;
        args[0] = v.c;
        *n_args = 1;
    }
done:
    tg_free(c.ctx, c.syms, (size_t)c.cap_syms * sizeof *c.syms);
    return st;
}

/* ---- the step ------------------------------------------------------------------------------ */
static tg_status declare_vars(C *c)
{
    static const int kinds[] = {SYM_PARAM, SYM_INPUT, SYM_TARGET, SYM_STATE};
    tg_model *m = c->m;
    if (add_dims(c)) return TG_ERR_NOMEM;
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < m->n_vars[r]; i++) {
            tgm_var *v = &m->vars[r][i];
            sym *s = add_sym(c, v->name, kinds[r]);
            if (!s) return TG_ERR_NOMEM;
            v->slot = new_slot(c);
            s->slot = v->slot;
            s->line = v->line;
            s->rows = v->rows;
            if (r == TG_ROLE_PARAM) {
                s->ndim = v->cols == 0 ? 1 : 2;
                s->cols = v->cols == 0 ? 1 : v->cols;
            } else {
                s->ndim = 2;
                s->cols = TGM_BATCH;
            }
        }
    }
    return TG_OK;
}

/* "name = ..." at the start of an equation: the name's offset and length */
static int lhs_name(const char *s, size_t len, size_t *off, size_t *n)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
    if (i >= len || !is_alpha(s[i])) return -1;
    *off = i;
    while (i < len && (is_alpha(s[i]) || is_digit(s[i]))) i++;
    *n = i - *off;
    while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
    return i < len && s[i] == '=' ? 0 : -1;
}

static tg_status equation_pass(C *c, int node);

/* Each equation is parsed twice: once for syntax alone, so that a typo is
 * reported before any shape or name problem left of it, then compiled. */
static tg_status equation(C *c, int node)
{
    c->syntax_only = 1;
    tg_status st = equation_pass(c, node);
    c->syntax_only = 0;
    return st ? st : equation_pass(c, node);
}

static tg_status equation_pass(C *c, int node)
{
    char tb[64];
    const tgm_ydoc *d = c->d;
    if (tgm_node(d, node)->kind != TGM_Y_SCALAR || tgm_is_null(d, node))
        return tgm_err_node(d, node, TG_ERR_PARSE, "an equation must be a string 'name = expression', not %s",
                            tgm_kind_name(d, node));
    if (tgm_node(d, node)->len > TGM_MAX_EQ_LEN)
        return tgm_err_node(d, node, TG_ERR_LIMIT, "equation longer than the limit of %d characters",
                            TGM_MAX_EQ_LEN);
    begin(c, node, "");
    if (c->tok != T_NAME) {
        if (c->tok == T_END) return err_at(c, 0, TG_ERR_PARSE, "empty equation");
        return err_at(c, c->tok_pos, TG_ERR_PARSE, "an equation starts with the name it defines, got %s",
                      tok_text(c, tb, sizeof tb));
    }
    size_t noff = c->tok_pos, nlen = c->tok_len;
    next(c);
    if (!is_punct(c, '='))
        return err_at(c, c->tok_pos, TG_ERR_PARSE, "expected '=' after '%.*s' (an equation reads 'name = expression'), got %s",
                      (int)(nlen < 40 ? nlen : 40), c->src + noff, tok_text(c, tb, sizeof tb));
    if (nlen > TGM_MAX_NAME)
        return err_at(c, noff, TG_ERR_LIMIT, "name longer than the limit of %d characters", TGM_MAX_NAME);
    if (c->syntax_only) {
        val v;
        size_t start;
        next(c);
        return whole_expr(c, &v, &start);
    }
    sym *target = find_sym(c, c->src + noff, nlen);
    int nline, ncol;
    tgm_locate(d, node, noff, &nline, &ncol);
    if (target && target->kind != SYM_STATE) {
        if (target->kind == SYM_EQ || target->kind == SYM_CONST)
            return err_at(c, noff, TG_ERR_PARSE, "'%.*s' is already defined at line %d", (int)nlen,
                          c->src + noff, target->line);
        return err_at(c, noff, TG_ERR_PARSE, "'%.*s' is %s (line %d); an equation cannot assign it",
                      (int)nlen, c->src + noff, sym_kind_name[target->kind], target->line);
    }
    if (target && target->assigned_line)
        return err_at(c, noff, TG_ERR_PARSE, "state '%.*s' is assigned twice (first at line %d)", (int)nlen,
                      c->src + noff, target->assigned_line);
    const char *label = target ? target->name : tgm_pstrdup(&c->m->pool, c->src + noff, nlen);
    if (!label) return TG_ERR_NOMEM;
    c->label = label;
    if (!target) {
        c->self = c->src + noff;
        c->self_len = nlen;
    }
    next(c);
    val v;
    size_t start;
    tg_status st = whole_expr(c, &v, &start);
    if (st) return st;

    if (target) { /* a state: the value goes into the state's own slot */
        char a[40], b[40];
        if (v.is_const)
            return err_at(c, start, TG_ERR_SHAPE, "state '%s' must be assigned a tensor, not the number %g",
                          target->name, v.c);
        if (v.rows != target->rows || v.cols != TGM_BATCH || v.ndim != 2)
            return err_at(c, start, TG_ERR_SHAPE, "state '%s' is %s but is assigned %s", target->name,
                          tgm_shape_str(a, sizeof a, target->rows, TGM_BATCH, 2),
                          tgm_shape_str(b, sizeof b, v.rows, v.cols, v.ndim));
        if (v.temp) c->code[c->n_code - 1].out = target->slot;
        else {
            int in = v.slot;
            tgm_instr *k = emit(c, NULL, 1, &in, 0, NULL, start);
            if (!k) return TG_ERR_NOMEM;
            k->out = target->slot;
            c->m->n_slots--; /* emit() took a slot it does not need */
        }
        target->assigned_line = nline;
        return TG_OK;
    }
    sym *s = add_sym(c, label, v.is_const ? SYM_CONST : SYM_EQ);
    if (!s) return TG_ERR_NOMEM;
    s->line = nline;
    if (v.is_const) {
        s->value = v.c;
        return TG_OK;
    }
    s->rows = v.rows;
    s->cols = v.cols;
    s->ndim = v.ndim;
    s->slot = v.slot;
    if (!v.temp) {
        /* an alias; a state's slot changes when it is assigned, so copy it */
        for (int i = 0; i < c->n_syms; i++)
            if (c->syms[i].kind == SYM_STATE && c->syms[i].slot == v.slot) {
                int in = v.slot;
                tgm_instr *k = emit(c, NULL, 1, &in, 0, NULL, start);
                if (!k) return TG_ERR_NOMEM;
                s->slot = k->out;
                break;
            }
    }
    return TG_OK;
}

static tg_status finish_code(C *c, tgm_instr **code, int *n)
{
    *n = c->n_code;
    *code = tgm_palloc(&c->m->pool, (size_t)(c->n_code ? c->n_code : 1) * sizeof **code);
    if (!*code) return TG_ERR_NOMEM;
    if (c->n_code) memcpy(*code, c->code, (size_t)c->n_code * sizeof **code); /* code is NULL when empty */
    c->n_code = 0;
    return TG_OK;
}

static int reads_target(const tg_model *m, const tgm_instr *code, int n)
{
    int lo = m->n_vars[TG_ROLE_PARAM] + m->n_vars[TG_ROLE_INPUT];
    int hi = lo + m->n_vars[TG_ROLE_TARGET];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < code[i].n_in; k++)
            if (code[i].in[k] >= lo && code[i].in[k] < hi) return 1;
    return 0;
}

static tg_status compile(C *c, int step_node, int outputs_node, int loss_node)
{
    tg_model *m = c->m;
    const tgm_ydoc *d = c->d;
    tg_status st = declare_vars(c);
    if (st) return st;

    /* the names the step defines, for "defined later" */
    int n_eq = tgm_node(d, step_node)->count;
    c->later = tg_alloc(c->ctx, (size_t)(n_eq ? n_eq : 1) * sizeof *c->later);
    if (!c->later) return TG_ERR_NOMEM;
    c->n_later = n_eq;
    int i = 0;
    for (int e = tgm_node(d, step_node)->first; e >= 0; e = tgm_node(d, e)->next, i++) {
        size_t off, len;
        c->later[i] = (later_eq){"", 0, 0};
        if (tgm_node(d, e)->kind == TGM_Y_SCALAR && !lhs_name(tgm_str(d, e), tgm_node(d, e)->len, &off, &len)) {
            int col;
            c->later[i].name = tgm_str(d, e) + off;
            c->later[i].len = len;
            tgm_locate(d, e, off, &c->later[i].line, &col);
        }
    }
    i = 0;
    for (int e = tgm_node(d, step_node)->first; e >= 0; e = tgm_node(d, e)->next, i++) {
        c->cur_eq = i;
        if ((st = equation(c, e))) return st;
    }
    c->cur_eq = n_eq;
    for (int k = 0; k < c->n_syms; k++)
        if (c->syms[k].kind == SYM_STATE && !c->syms[k].assigned_line) {
            const tgm_var *v = NULL;
            for (int j = 0; j < m->n_vars[TG_ROLE_STATE]; j++)
                if (m->vars[TG_ROLE_STATE][j].slot == c->syms[k].slot) v = &m->vars[TG_ROLE_STATE][j];
            return tg_error(c->ctx, TG_ERR_PARSE, "%s:%d:%d: state '%s' is never assigned in the step",
                            d->file, v ? v->line : 1, v ? v->col : 1, c->syms[k].name);
        }
    if ((st = finish_code(c, &m->step, &m->n_step))) return st;
    m->step_uses_targets = reads_target(m, m->step, m->n_step);

    /* outputs: names of tensors after the step */
    if (outputs_node >= 0) {
        const tgm_ynode *on = tgm_node(d, outputs_node);
        int count = on->kind == TGM_Y_SEQ ? on->count : 1;
        m->outputs = tgm_palloc(&m->pool, (size_t)(count ? count : 1) * sizeof *m->outputs);
        if (!m->outputs) return TG_ERR_NOMEM;
        int e = on->kind == TGM_Y_SEQ ? on->first : outputs_node;
        for (; e >= 0; e = on->kind == TGM_Y_SEQ ? tgm_node(d, e)->next : -1) {
            if (tgm_node(d, e)->kind != TGM_Y_SCALAR || !tgm_is_ident(tgm_str(d, e)))
                return tgm_err_node(d, e, TG_ERR_PARSE, "an output must be a name, not %s", tgm_kind_name(d, e));
            const char *nm = tgm_str(d, e);
            begin(c, e, "");
            val v;
            if ((st = name_value(c, 0, strlen(nm), &v))) return st;
            if (v.is_const)
                return tgm_err_node(d, e, TG_ERR_PARSE, "output '%s' is a number, not a tensor", nm);
            for (int k = 0; k < m->n_outputs; k++)
                if (!strcmp(m->outputs[k].name, nm))
                    return tgm_err_node(d, e, TG_ERR_PARSE, "output '%s' is listed twice", nm);
            tgm_output *o = &m->outputs[m->n_outputs++];
            sym *s = find_sym(c, nm, strlen(nm));
            o->name = s->name;
            o->slot = v.slot;
            o->rows = v.rows;
            o->cols = v.cols;
            o->ndim = v.ndim;
        }
    }

    /* the loss, per step, after the step's equations */
    m->loss_slot = -1;
    if (loss_node >= 0) {
        if (tgm_node(d, loss_node)->kind != TGM_Y_SCALAR || tgm_is_null(d, loss_node))
            return tgm_err_node(d, loss_node, TG_ERR_PARSE, "'loss' must be an expression, not %s",
                                tgm_kind_name(d, loss_node));
        if (tgm_node(d, loss_node)->len > TGM_MAX_EQ_LEN)
            return tgm_err_node(d, loss_node, TG_ERR_LIMIT, "loss longer than the limit of %d characters",
                                TGM_MAX_EQ_LEN);
        val v;
        size_t start;
        c->syntax_only = 1;
        begin(c, loss_node, "loss");
        st = whole_expr(c, &v, &start);
        c->syntax_only = 0;
        if (st) return st;
        begin(c, loss_node, "loss");
        if ((st = whole_expr(c, &v, &start))) return st;
        char a[40];
        if (v.is_const)
            return err_at(c, start, TG_ERR_SHAPE, "the loss must be a tensor, not the number %g", v.c);
        if (v.rows != 1 || v.cols != 1)
            return err_at(c, start, TG_ERR_SHAPE, "the loss must be a scalar [1, 1] but is %s (sum it?)",
                          tgm_shape_str(a, sizeof a, v.rows, v.cols, v.ndim));
        m->loss_slot = v.slot;
        tgm_locate(d, loss_node, start, &m->loss_line, &m->loss_col);
        if ((st = finish_code(c, &m->loss, &m->n_loss))) return st;
        if (!reads_target(m, m->loss, m->n_loss) && !m->step_uses_targets && m->n_vars[TG_ROLE_TARGET] > 0) {
            /* a loss of the outputs alone is allowed; nothing to check */
        }
    }
    return TG_OK;
}

tg_status tgm_compile(tg_model *m, const tgm_ydoc *d, int step_node, int outputs_node, int loss_node)
{
    C c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.d = d;
    c.ctx = d->ctx;
    tg_status st = compile(&c, step_node, outputs_node, loss_node);
    if (!st) st = tgm_fuse(m);
    tg_free(c.ctx, c.syms, (size_t)c.cap_syms * sizeof *c.syms);
    tg_free(c.ctx, c.code, (size_t)c.cap_code * sizeof *c.code);
    tg_free(c.ctx, c.later, (size_t)(c.n_later ? c.n_later : 1) * sizeof *c.later);
    return st;
}
