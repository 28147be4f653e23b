/* model.c — model files: the schema (sections, declarations, inits), the
 * static checks that run before any data is read, and the model's accessors
 * and parameter initialisation.  Equations are compiled by expr.c. */
#include "tg_model_internal.h"
#include <math.h>
#include <stdio.h>
#include <yaml.h>

static const char *const top_keys[] = {"name", "description", "dims", "params", "inputs",
                                       "targets", "state", "step", "outputs", "loss", "loss_at"};
#define N_TOP (int)(sizeof top_keys / sizeof top_keys[0])
static const char *const role_noun[] = {"a param", "an input", "a target", "a state", "a dim"};
static const char *const section_of[] = {"params", "inputs", "targets", "state", "dims"};

/* Unknown keys in any mapping: the first one is an error, with a suggestion. */
static tg_status check_keys(const tgm_ydoc *d, int map, const char *const *keys, int n, const char *where)
{
    for (int k = tgm_node(d, map)->first; k >= 0;) {
        int v = tgm_node(d, k)->next;
        const char *key = tgm_str(d, k);
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = !strcmp(key, keys[i]);
        if (!found) {
            char dym[120], list[256];
            /* the previous value may have been cut at a comma inside {...} */
            int prev = -1;
            for (int j = tgm_node(d, map)->first; j >= 0 && j != k;) {
                prev = tgm_node(d, j)->next;
                j = prev >= 0 ? tgm_node(d, prev)->next : -1;
            }
            if (prev >= 0 && tgm_node(d, prev)->kind == TGM_Y_SCALAR && strchr(tgm_str(d, prev), '(') &&
                !strchr(tgm_str(d, prev), ')'))
                return tgm_err_node(d, k, TG_ERR_PARSE,
                                    "unknown key '%.64s' in %s: the value '%.40s' before it has an unclosed '('",
                                    key, where, tgm_str(d, prev));
            size_t len = 0;
            list[0] = 0;
            for (int i = 0; i < n && len < sizeof list - 32; i++)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", keys[i]);
            tgm_did_you_mean(dym, sizeof dym, key, keys, n);
            if (dym[0])
                return tgm_err_node(d, k, TG_ERR_PARSE, "unknown key '%.64s' in %s%s", key, where, dym);
            return tgm_err_node(d, k, TG_ERR_PARSE, "unknown key '%.64s' in %s (expected one of: %s)", key,
                                where, list);
        }
        k = v >= 0 ? tgm_node(d, v)->next : -1;
    }
    return TG_OK;
}

/* ---- reading values ------------------------------------------------------------- */
static tg_status number(const tgm_ydoc *d, int node, const char *what, double *out)
{
    const tgm_ynode *n = tgm_node(d, node);
    if (n->kind != TGM_Y_SCALAR || tgm_is_null(d, node))
        return tgm_err_node(d, node, TG_ERR_PARSE, "%s: expected a number, got %s", what, tgm_kind_name(d, node));
    const char *s = tgm_str(d, node);
    if (tgm_parse_number(s, out)) {
        if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".inf") || !strcmp(s, "-.inf") ||
            !strcmp(s, ".Inf") || !strcmp(s, "-.Inf") || !strcmp(s, "+.inf"))
            return tgm_err_node(d, node, TG_ERR_PARSE, "%s: '%s' is not a finite number", what, s);
        return tgm_err_node(d, node, TG_ERR_PARSE, "%s: expected a number, got '%.40s'", what, s);
    }
    if (!tgm_fits_real(*out))
        return tgm_err_node(d, node, TG_ERR_PARSE, "%s: '%.40s' is out of range for %s (largest %g)", what, s,
                            TG_REAL_NAME, TGM_REAL_MAX);
    return TG_OK;
}

static tg_status put(double *od, tg_real *or_, size_t i, double v)
{
    if (od) od[i] = v;
    if (or_) or_[i] = (tg_real)v;
    return TG_OK;
}

tg_status tgm_read_values(const tgm_ydoc *d, int node, const char *what, int rows, int cols,
                          double *out_d, tg_real *out_r)
{
    char want[48];
    tgm_shape_str(want, sizeof want, rows, cols, cols == 0 ? 1 : 2);
    const tgm_ynode *n = tgm_node(d, node);
    double v;
    tg_status st;
    if (n->kind == TGM_Y_SCALAR) {
        if ((size_t)rows * (size_t)(cols ? cols : 1) != 1)
            return tgm_err_node(d, node, TG_ERR_SHAPE, "%s: expected nested lists in the shape %s, got %s", what,
                                want, tgm_kind_name(d, node));
        if ((st = number(d, node, what, &v))) return st;
        return put(out_d, out_r, 0, v);
    }
    if (n->kind != TGM_Y_SEQ)
        return tgm_err_node(d, node, TG_ERR_SHAPE, "%s: expected a list in the shape %s, got %s", what, want,
                            tgm_kind_name(d, node));
    /* a [1] or [1, 1] given as [x] is fine; a [n, 1] may be a flat list */
    int flat = cols == 0 || (cols == 1 && n->count == rows && n->first >= 0 &&
                             tgm_node(d, n->first)->kind == TGM_Y_SCALAR);
    if (cols > 0 && rows == 1 && n->count == cols && n->first >= 0 && tgm_node(d, n->first)->kind == TGM_Y_SCALAR) {
        size_t i = 0;
        for (int e = n->first; e >= 0; e = tgm_node(d, e)->next, i++) {
            if ((st = number(d, e, what, &v))) return st;
            put(out_d, out_r, i, v);
        }
        return TG_OK;
    }
    if (n->count != rows)
        return tgm_err_node(d, node, TG_ERR_SHAPE, "%s: expected %d %s (shape %s), got %d", what, rows,
                            flat ? (rows == 1 ? "number" : "numbers") : (rows == 1 ? "row" : "rows"), want,
                            n->count);
    int r = 0;
    for (int e = n->first; e >= 0; e = tgm_node(d, e)->next, r++) {
        if (flat) {
            if ((st = number(d, e, what, &v))) return st;
            put(out_d, out_r, (size_t)r, v);
            continue;
        }
        const tgm_ynode *row = tgm_node(d, e);
        if (row->kind != TGM_Y_SEQ)
            return tgm_err_node(d, e, TG_ERR_SHAPE, "%s: row %d must be a list of %d numbers (shape %s), got %s",
                                what, r + 1, cols, want, tgm_kind_name(d, e));
        if (row->count != cols)
            return tgm_err_node(d, e, TG_ERR_SHAPE, "%s: row %d has %d numbers but the shape %s needs %d", what,
                                r + 1, row->count, want, cols);
        int k = 0;
        for (int x = row->first; x >= 0; x = tgm_node(d, x)->next, k++) {
            if ((st = number(d, x, what, &v))) return st;
            put(out_d, out_r, (size_t)r * (size_t)cols + (size_t)k, v);
        }
    }
    return TG_OK;
}

/* ---- declarations ----------------------------------------------------------------- */
typedef struct loader {
    tg_model *m;
    const tgm_ydoc *d;
    tg_ctx *ctx;
} loader;

/* The model's name travels into titles, plots and file headers: only what a
 * name needs (letters, digits, '_', '-', '.'), so no quoting can go wrong. */
static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

static tg_status check_model_name(const tgm_ydoc *d, int node)
{
    const char *name = tgm_str(d, node);
    size_t len = tgm_node(d, node)->len;
    if (len == 0) return tgm_err_node(d, node, TG_ERR_PARSE, "'name' must not be empty");
    if (len > TGM_MAX_NAME)
        return tgm_err_node(d, node, TG_ERR_LIMIT, "'name' is longer than the limit of %d characters", TGM_MAX_NAME);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (name_char(c)) continue;
        char shown[8];
        if (c >= ' ' && c < 0x7f) snprintf(shown, sizeof shown, "'%c'", c);
        else snprintf(shown, sizeof shown, "\\x%02x", c);
        return tgm_err_at(d, node, i, TG_ERR_PARSE,
                          "a model name may contain only letters, digits, '_', '-' and '.', not %s", shown);
    }
    return TG_OK;
}

/* A new name must be an identifier, short, and not declared before. */
static tg_status check_name(loader *L, int key)
{
    const tgm_ydoc *d = L->d;
    const char *name = tgm_str(d, key);
    if (!tgm_is_ident(name))
        return tgm_err_node(d, key, TG_ERR_PARSE,
                            "'%.64s' is not a valid name (letters, digits and '_', not starting with a digit)",
                            name);
    if (strlen(name) > TGM_MAX_NAME)
        return tgm_err_node(d, key, TG_ERR_LIMIT, "name longer than the limit of %d characters", TGM_MAX_NAME);
    for (int r = 0; r < 5; r++)
        for (int i = 0; i < L->m->n_vars[r]; i++)
            if (!strcmp(L->m->vars[r][i].name, name))
                return tgm_err_node(d, key, TG_ERR_PARSE, "'%s' is already declared as %s at line %d", name,
                                    role_noun[r], L->m->vars[r][i].line);
    return TG_OK;
}

static tg_status shape_entry(loader *L, int node, const char *name, int *out)
{
    double v;
    tg_status st = tgm_const_expr(L->m, L->d, node, &v);
    if (st) return st;
    if (v != floor(v) || v < 1 || v > TGM_MAX_DIM)
        return tgm_err_node(L->d, node, TG_ERR_SHAPE,
                            "a dimension of '%s' must be a whole number from 1 to %d, got %.15g", name, TGM_MAX_DIM, v);
    *out = (int)v;
    return TG_OK;
}

/* The `init` of a param or state. */
static tg_status parse_init(loader *L, tgm_var *v, int node, int is_state)
{
    const tgm_ydoc *d = L->d;
    char what[TGM_MAX_NAME + 32];
    snprintf(what, sizeof what, "init of '%s'", v->name);
    if (tgm_node(d, node)->kind == TGM_Y_SEQ) {
        size_t n = (size_t)v->rows * (size_t)(v->cols > 0 ? v->cols : 1);
        v->values = tgm_palloc(&L->m->pool, n * sizeof *v->values);
        if (!v->values) return TG_ERR_NOMEM;
        v->init = TGM_INIT_LITERAL;
        return tgm_read_values(d, node, what, v->rows, v->cols > 0 ? v->cols : 0, v->values, NULL);
    }
    if (tgm_node(d, node)->kind != TGM_Y_SCALAR || tgm_is_null(d, node))
        return tgm_err_node(d, node, TG_ERR_PARSE, "%s must be a name like 'zeros', a number or a list, not %s",
                            what, tgm_kind_name(d, node));
    char fname[TGM_MAX_NAME + 1];
    double args[4];
    int n_args;
    size_t foff;
    tg_status st = tgm_init_expr(L->m, d, node, fname, sizeof fname, &foff, args, 4, &n_args);
    if (st) return st;
    if (!fname[0]) {
        if (!tgm_fits_real(args[0]))
            return tgm_err_node(d, node, TG_ERR_PARSE, "%s: %g is out of range for %s (largest %g)", what, args[0],
                                TG_REAL_NAME, TGM_REAL_MAX);
        v->init = TGM_INIT_CONST;
        v->a = args[0];
        return TG_OK;
    }
    static const char *const names[] = {"zeros", "ones", "uniform", "normal", "xavier"};
    static const int kinds[] = {TGM_INIT_ZEROS, TGM_INIT_ONES, TGM_INIT_UNIFORM, TGM_INIT_NORMAL, TGM_INIT_XAVIER};
    static const int arity[] = {0, 0, 2, 2, 0};
    int which = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(fname, names[i])) which = i;
    if (which < 0) {
        char dym[120];
        return tgm_err_at(d, node, foff, TG_ERR_PARSE,
                          "unknown init '%s'%s; use zeros, ones, uniform(a, b), normal(mean, std), xavier, a number or a list",
                          fname, tgm_did_you_mean(dym, sizeof dym, fname, names, 5));
    }
    if (n_args != arity[which])
        return tgm_err_at(d, node, foff, TG_ERR_PARSE, "'%s' takes %d argument%s, got %d", fname, arity[which],
                          arity[which] == 1 ? "" : "s", n_args);
    if (is_state && kinds[which] != TGM_INIT_ZEROS && kinds[which] != TGM_INIT_ONES)
        return tgm_err_at(d, node, foff, TG_ERR_PARSE,
                          "a state's init must be zeros, ones, a number or a list, not '%s'", fname);
    if (kinds[which] == TGM_INIT_UNIFORM && !(args[0] < args[1]))
        return tgm_err_at(d, node, foff, TG_ERR_PARSE, "uniform(a, b) needs a < b, got %g and %g", args[0], args[1]);
    if (kinds[which] == TGM_INIT_NORMAL && !(args[1] >= 0))
        return tgm_err_at(d, node, foff, TG_ERR_PARSE, "normal(mean, std) needs std >= 0, got %g", args[1]);
    /* every draw must be finite in tg_real: a normal draw is within 38 std
     * of the mean (Box-Muller with u1 >= 1e-300) */
    if ((kinds[which] == TGM_INIT_UNIFORM && !(tgm_fits_real(args[0]) && tgm_fits_real(args[1]) &&
                                                 isfinite(args[1] - args[0]))) ||
        (kinds[which] == TGM_INIT_NORMAL && !tgm_fits_real(fabs(args[0]) + 38 * args[1])))
        return tgm_err_at(d, node, foff, TG_ERR_PARSE, "%s(%g, %g) would draw values too large to hold", fname,
                          args[0], args[1]);
    v->init = kinds[which];
    v->a = n_args > 0 ? args[0] : 0;
    v->b = n_args > 1 ? args[1] : 0;
    return TG_OK;
}

/* One entry of params, inputs, targets or state: either a shape list, or a
 * mapping {shape, init}. */
static tg_status declare(loader *L, int role, int key, int val)
{
    const tgm_ydoc *d = L->d;
    tg_model *m = L->m;
    tg_status st = check_name(L, key);
    if (st) return st;
    const char *name = tgm_str(d, key);
    tgm_var *v = &m->vars[role][m->n_vars[role]];
    memset(v, 0, sizeof *v);
    v->name = tgm_pstrdup(&m->pool, name, strlen(name));
    if (!v->name) return TG_ERR_NOMEM;
    v->role = role;
    v->line = tgm_node(d, key)->line;
    v->col = tgm_node(d, key)->col;
    int shape = -1, init = -1;
    if (tgm_node(d, val)->kind == TGM_Y_SEQ) shape = val;
    else if (tgm_node(d, val)->kind == TGM_Y_MAP) {
        static const char *const keys_init[] = {"shape", "init"};
        int with_init = role == TG_ROLE_PARAM || role == TG_ROLE_STATE;
        char where[TGM_MAX_NAME + 32];
        snprintf(where, sizeof where, "'%s'", name);
        if ((st = check_keys(d, val, keys_init, with_init ? 2 : 1, where))) return st;
        int k;
        shape = tgm_map_get(d, val, "shape", &k);
        init = tgm_map_get(d, val, "init", &k);
        if (shape < 0)
            return tgm_err_node(d, val, TG_ERR_PARSE, "'%s' needs a 'shape', e.g. shape: [hidden]", name);
    } else
        return tgm_err_node(d, val, TG_ERR_PARSE, "'%s' must be a shape like [hidden] or a mapping {shape: ...}, not %s",
                            name, tgm_kind_name(d, val));
    const tgm_ynode *sn = tgm_node(d, shape);
    if (sn->kind != TGM_Y_SEQ)
        return tgm_err_node(d, shape, TG_ERR_PARSE, "the shape of '%s' must be a list like [hidden, input], not %s",
                            name, tgm_kind_name(d, shape));
    int max_dims = role == TG_ROLE_PARAM ? 2 : 1;
    if (sn->count < 1 || sn->count > max_dims) {
        if (role == TG_ROLE_PARAM)
            return tgm_err_node(d, shape, TG_ERR_SHAPE, "the shape of '%s' must have 1 or 2 dimensions, got %d", name,
                                sn->count);
        return tgm_err_node(d, shape, TG_ERR_SHAPE,
                            "%s '%s' must have one dimension, like [%s] (the batch adds the columns), got %d",
                            role == TG_ROLE_INPUT ? "input" : role == TG_ROLE_TARGET ? "target" : "state", name,
                            role == TG_ROLE_STATE ? "hidden" : "input", sn->count);
    }
    int dims[2] = {0, 0}, i = 0;
    for (int e = sn->first; e >= 0; e = tgm_node(d, e)->next, i++)
        if ((st = shape_entry(L, e, name, &dims[i]))) return st;
    v->rows = dims[0];
    v->cols = role == TG_ROLE_PARAM ? dims[1] : TG_MODEL_BATCH;
    if ((size_t)v->rows * (size_t)(v->cols > 0 ? v->cols : 1) > TGM_MAX_PARAM_ELEMS)
        return tgm_err_node(d, shape, TG_ERR_LIMIT, "'%s' has more than the limit of %zu elements", name,
                            TGM_MAX_PARAM_ELEMS);
    v->init = TGM_INIT_DEFAULT;
    if (init >= 0 && !tgm_is_null(d, init)) {
        if (role == TG_ROLE_STATE) {
            /* a state's literal is one column, [n] */
            int cols = v->cols;
            v->cols = 0;
            st = parse_init(L, v, init, 1);
            v->cols = cols;
        } else
            st = parse_init(L, v, init, 0);
        if (st) return st;
    }
    m->n_vars[role]++;
    return TG_OK;
}

static tg_status section(loader *L, int role, int node)
{
    const tgm_ydoc *d = L->d;
    if (node < 0 || tgm_is_null(d, node)) return TG_OK;
    if (tgm_node(d, node)->kind != TGM_Y_MAP)
        return tgm_err_node(d, node, TG_ERR_PARSE, "'%s' must be a mapping from names to %s, not %s",
                            section_of[role], role == TG_ROLE_DIM ? "sizes" : "shapes", tgm_kind_name(d, node));
    int n = tgm_node(d, node)->count / 2;
    if (n > TGM_MAX_DECLS)
        return tgm_err_node(d, node, TG_ERR_LIMIT, "more than %d entries in '%s'", TGM_MAX_DECLS, section_of[role]);
    L->m->vars[role] = tgm_palloc(&L->m->pool, (size_t)(n ? n : 1) * sizeof(tgm_var));
    if (!L->m->vars[role]) return TG_ERR_NOMEM;
    for (int k = tgm_node(d, node)->first; k >= 0;) {
        int v = tgm_node(d, k)->next;
        tg_status st;
        if (role == TG_ROLE_DIM) {
            if ((st = check_name(L, k))) return st;
            double x;
            char what[TGM_MAX_NAME + 16];
            snprintf(what, sizeof what, "dim '%s'", tgm_str(d, k));
            if (tgm_node(d, v)->kind != TGM_Y_SCALAR || tgm_parse_number(tgm_str(d, v), &x) || x != floor(x) ||
                x < 1 || x > TGM_MAX_DIM)
                return tgm_err_node(d, v, TG_ERR_PARSE, "%s must be a whole number from 1 to %d, got %s%.40s%s",
                                    what, TGM_MAX_DIM, tgm_node(d, v)->kind == TGM_Y_SCALAR ? "'" : "",
                                    tgm_node(d, v)->kind == TGM_Y_SCALAR ? tgm_str(d, v) : tgm_kind_name(d, v),
                                    tgm_node(d, v)->kind == TGM_Y_SCALAR ? "'" : "");
            tgm_var *dv = &L->m->vars[role][L->m->n_vars[role]++];
            dv->name = tgm_pstrdup(&L->m->pool, tgm_str(d, k), tgm_node(d, k)->len);
            if (!dv->name) return TG_ERR_NOMEM;
            dv->role = role;
            dv->rows = (int)x;
            dv->line = tgm_node(d, k)->line;
            dv->col = tgm_node(d, k)->col;
        } else if ((st = declare(L, role, k, v)))
            return st;
        k = tgm_node(d, v)->next;
    }
    return TG_OK;
}

static tg_status override_dims(loader *L, const tg_dim *dims, int n_dims)
{
    tg_model *m = L->m;
    for (int i = 0; i < n_dims; i++) {
        const char *name = dims[i].name ? dims[i].name : "";
        tgm_var *v = NULL;
        for (int k = 0; k < m->n_vars[TG_ROLE_DIM]; k++)
            if (!strcmp(m->vars[TG_ROLE_DIM][k].name, name)) v = &m->vars[TG_ROLE_DIM][k];
        if (!v) {
            const char *cands[TGM_MAX_DECLS];
            for (int k = 0; k < m->n_vars[TG_ROLE_DIM]; k++) cands[k] = m->vars[TG_ROLE_DIM][k].name;
            char dym[120];
            return tg_error(L->ctx, TG_ERR_ARG, "%s: cannot set dim '%.64s': the model has no such dim%s", m->file,
                            name, tgm_did_you_mean(dym, sizeof dym, name, cands, m->n_vars[TG_ROLE_DIM]));
        }
        if (dims[i].value < 1 || dims[i].value > TGM_MAX_DIM)
            return tg_error(L->ctx, TG_ERR_ARG, "%s: dim '%s' must be from 1 to %d, got %d", m->file, name,
                            TGM_MAX_DIM, dims[i].value);
        v->rows = dims[i].value;
    }
    return TG_OK;
}

static tg_status load(loader *L, const char *text, size_t len, const tg_dim *dims, int n_dims)
{
    tg_model *m = L->m;
    tgm_ydoc doc;
    memset(&doc, 0, sizeof doc);
    tgm_ylimits lim = {TGM_MAX_MODEL_BYTES, TGM_MAX_DEPTH, TGM_MAX_MODEL_NODES};
    tg_status st = tgm_yaml_parse(&doc, L->ctx, m->file, text, len, &lim);
    const tgm_ydoc *d = &doc;
    L->d = d;
    if (st) goto out;
    int root = d->root;
    if (root < 0) {
        st = tg_error(L->ctx, TG_ERR_PARSE, "%s:1:1: the model file is empty", m->file);
        goto out;
    }
    if (tgm_node(d, root)->kind != TGM_Y_MAP) {
        st = tgm_err_node(d, root, TG_ERR_PARSE,
                          "a model file is a mapping of sections (name, dims, params, inputs, state, step, ...), not %s",
                          tgm_kind_name(d, root));
        goto out;
    }
    if ((st = check_keys(d, root, top_keys, N_TOP, "the model"))) goto out;
    int k, node;
    node = tgm_map_get(d, root, "name", &k);
    if (node >= 0) {
        if (tgm_node(d, node)->kind != TGM_Y_SCALAR || tgm_is_null(d, node)) {
            st = tgm_err_node(d, node, TG_ERR_PARSE, "'name' must be a string, not %s", tgm_kind_name(d, node));
            goto out;
        }
        if ((st = check_model_name(d, node))) goto out;
        m->name = tgm_pstrdup(&m->pool, tgm_str(d, node), tgm_node(d, node)->len);
    } else {
        const char *base = strrchr(m->file, '/');
        base = base ? base + 1 : m->file;
        const char *dot = strrchr(base, '.');
        size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
        char *nm = n ? tgm_pstrdup(&m->pool, base, n > TGM_MAX_NAME ? TGM_MAX_NAME : n)
                     : tgm_pstrdup(&m->pool, "model", 5);
        /* a file may be called anything; its name keeps the rule of 'name:' */
        for (char *c = nm; c && *c; c++)
            if (!name_char((unsigned char)*c)) *c = '_';
        m->name = nm;
    }
    if (!m->name) {
        st = TG_ERR_NOMEM;
        goto out;
    }
    node = tgm_map_get(d, root, "description", &k);
    if (node >= 0 && tgm_node(d, node)->kind != TGM_Y_SCALAR) {
        st = tgm_err_node(d, node, TG_ERR_PARSE, "'description' must be a string, not %s", tgm_kind_name(d, node));
        goto out;
    }
    if ((st = section(L, TG_ROLE_DIM, tgm_map_get(d, root, "dims", &k)))) goto out;
    if ((st = override_dims(L, dims, n_dims))) goto out;
    static const int order[] = {TG_ROLE_PARAM, TG_ROLE_INPUT, TG_ROLE_TARGET, TG_ROLE_STATE};
    for (int i = 0; i < 4; i++) {
        node = tgm_map_get(d, root, section_of[order[i]], &k);
        if ((st = section(L, order[i], node))) goto out;
        if (!m->vars[order[i]] && !(m->vars[order[i]] = tgm_palloc(&m->pool, sizeof(tgm_var)))) {
            st = TG_ERR_NOMEM;
            goto out;
        }
    }
    size_t total = 0;
    for (int i = 0; i < m->n_vars[TG_ROLE_PARAM]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_PARAM][i];
        total += (size_t)v->rows * (size_t)(v->cols ? v->cols : 1);
        if (total > TGM_MAX_TOTAL_PARAMS) {
            st = tg_error(L->ctx, TG_ERR_LIMIT, "%s:%d:%d: the parameters up to '%s' hold more than the limit of %zu scalars",
                          m->file, v->line, v->col, v->name, TGM_MAX_TOTAL_PARAMS);
            goto out;
        }
    }
    if (m->n_vars[TG_ROLE_INPUT] == 0) {
        node = tgm_map_get(d, root, "inputs", &k);
        st = node >= 0 ? tgm_err_node(d, node, TG_ERR_PARSE, "'inputs' must declare at least one input, e.g. x: [input]")
                       : tgm_err_node(d, root, TG_ERR_PARSE, "the model has no 'inputs' (e.g. inputs: {x: [input]})");
        goto out;
    }
    int step = tgm_map_get(d, root, "step", &k);
    if (step < 0) {
        st = tgm_err_node(d, root, TG_ERR_PARSE, "the model has no 'step' (the list of equations of one time step)");
        goto out;
    }
    if (tgm_node(d, step)->kind != TGM_Y_SEQ || tgm_node(d, step)->count == 0) {
        st = tgm_err_node(d, step, TG_ERR_PARSE, "'step' must be a non-empty list of equations like '- h = tanh(a)', not %s",
                          tgm_node(d, step)->kind == TGM_Y_SEQ ? "an empty list" : tgm_kind_name(d, step));
        goto out;
    }
    if (tgm_node(d, step)->count > TGM_MAX_EQUATIONS) {
        st = tgm_err_node(d, step, TG_ERR_LIMIT, "more than the limit of %d equations in 'step'", TGM_MAX_EQUATIONS);
        goto out;
    }
    int outputs = tgm_map_get(d, root, "outputs", &k);
    if (outputs >= 0 && tgm_is_null(d, outputs)) outputs = -1;
    if (outputs >= 0 && tgm_node(d, outputs)->kind == TGM_Y_MAP) {
        st = tgm_err_node(d, outputs, TG_ERR_PARSE, "'outputs' must be a list of names like [o], not a mapping");
        goto out;
    }
    if (outputs >= 0 && tgm_node(d, outputs)->kind == TGM_Y_SEQ && tgm_node(d, outputs)->count > TGM_MAX_DECLS) {
        st = tgm_err_node(d, outputs, TG_ERR_LIMIT, "more than %d outputs", TGM_MAX_DECLS);
        goto out;
    }
    int loss = tgm_map_get(d, root, "loss", &k);
    int loss_at = tgm_map_get(d, root, "loss_at", &k);
    if (loss_at >= 0) {
        static const char *const whens[] = {"all", "last"};
        const char *w = tgm_node(d, loss_at)->kind == TGM_Y_SCALAR ? tgm_str(d, loss_at) : "";
        char dym[120];
        if (!strcmp(w, "last")) m->loss_at_last = 1;
        else if (strcmp(w, "all")) {
            st = tgm_err_node(d, loss_at, TG_ERR_PARSE, "'loss_at' must be 'all' (every step) or 'last', not %s%.40s%s%s",
                              tgm_node(d, loss_at)->kind == TGM_Y_SCALAR ? "'" : "",
                              tgm_node(d, loss_at)->kind == TGM_Y_SCALAR ? w : tgm_kind_name(d, loss_at),
                              tgm_node(d, loss_at)->kind == TGM_Y_SCALAR ? "'" : "",
                              tgm_did_you_mean(dym, sizeof dym, w, whens, 2));
            goto out;
        }
        if (loss < 0) {
            st = tgm_err_node(d, loss_at, TG_ERR_PARSE, "'loss_at' is given but the model has no 'loss'");
            goto out;
        }
    }
    st = tgm_compile(m, d, step, outputs, loss);
out:
    tgm_yaml_free(&doc);
    return st;
}

tg_model *tg_model_parse(tg_ctx *ctx, const char *filename, const char *text, size_t len, const tg_dim *dims,
                         int n_dims)
{
    if (!ctx) return NULL;
    if (!filename) filename = "(model)";
    if (!text || n_dims < 0 || (n_dims > 0 && !dims)) {
        tg_error(ctx, TG_ERR_ARG, "tg_model_parse: text is NULL or dims are bad");
        return NULL;
    }
    tg_model *m = tg_alloc(ctx, sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->pool.ctx = ctx;
    m->loss_slot = -1;
    loader L = {m, NULL, ctx};
    m->text_len = len;
    if (!(m->file = tgm_pstrdup(&m->pool, filename, strlen(filename))) ||
        !(m->text = tgm_pstrdup(&m->pool, text, len)) || load(&L, text, len, dims, n_dims) != TG_OK) {
        if (!tg_status_last(ctx)) tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        tg_model_free(m);
        return NULL;
    }
    return m;
}

tg_model *tg_model_load(tg_ctx *ctx, const char *path, const tg_dim *dims, int n_dims)
{
    if (!ctx) return NULL;
    if (!path) {
        tg_error(ctx, TG_ERR_ARG, "tg_model_load: path is NULL");
        return NULL;
    }
    char *text;
    size_t len;
    if (tgm_read_file(ctx, path, TGM_MAX_MODEL_BYTES, "the model file", &text, &len)) return NULL;
    tg_model *m = tg_model_parse(ctx, path, text, len, dims, n_dims);
    tg_free(ctx, text, len + 1);
    return m;
}

void tg_model_free(tg_model *m)
{
    if (!m) return;
    tg_ctx *ctx = m->ctx;
    tgm_pool_free(&m->pool);
    tg_free(ctx, m, sizeof *m);
}

/* ---- accessors --------------------------------------------------------------------------- */
const char *tg_model_name(const tg_model *m) { return m ? m->name : NULL; }
int tg_model_has_loss(const tg_model *m) { return m && m->loss_slot >= 0; }

int tg_model_count(const tg_model *m, tg_model_role role)
{
    if (!m) return 0;
    if (role == TG_ROLE_OUTPUT) return m->n_outputs;
    return (unsigned)role < 5 ? m->n_vars[role] : 0;
}

const char *tg_model_var(const tg_model *m, tg_model_role role, int i, int *rows, int *cols)
{
    if (rows) *rows = 0;
    if (cols) *cols = 0;
    if (!m || i < 0 || i >= tg_model_count(m, role)) return NULL;
    if (role == TG_ROLE_OUTPUT) {
        const tgm_output *o = &m->outputs[i];
        if (rows) *rows = o->rows == TGM_BATCH ? TG_MODEL_BATCH : o->rows;
        if (cols) *cols = o->ndim == 1 ? 0 : o->cols == TGM_BATCH ? TG_MODEL_BATCH : o->cols;
        return o->name;
    }
    const tgm_var *v = &m->vars[role][i];
    if (rows) *rows = v->rows;
    if (cols) *cols = role == TG_ROLE_DIM ? 0 : v->cols;
    return v->name;
}

/* ---- parameters -------------------------------------------------------------------------- */
tg_status tg_model_init_params(const tg_model *m, tg_params *ps, uint64_t seed)
{
    if (!m || !ps) return m ? tg_error(m->ctx, TG_ERR_ARG, "init_params: params is NULL") : TG_ERR_ARG;
    tg_ctx *ctx = m->ctx;
    char a[40], b[40];
    for (int i = 0; i < m->n_vars[TG_ROLE_PARAM]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_PARAM][i];
        tg_tensor *t = tg_params_find(ps, v->name);
        if (t) {
            if (tg_rows(t) != v->rows || tg_cols(t) != (v->cols ? v->cols : 1) || tg_ndim(t) != (v->cols ? 2 : 1))
                return tg_error(ctx, TG_ERR_SHAPE, "params: '%s' is %s but model %s declares it %s", v->name,
                                tgm_shape_str(a, sizeof a, tg_rows(t), tg_cols(t), tg_ndim(t)), m->name,
                                tgm_shape_str(b, sizeof b, v->rows, v->cols, v->cols ? 2 : 1));
        } else if (!tg_params_add(ps, v->name, v->rows, v->cols))
            return tg_status_last(ctx);
    }
    tg_seed(ctx, seed);
    for (int i = 0; i < m->n_vars[TG_ROLE_PARAM]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_PARAM][i];
        tg_tensor *t = tg_params_find(ps, v->name);
        tg_real *x = tg_data(t);
        size_t n = tg_size(t);
        int init = v->init;
        if (init == TGM_INIT_DEFAULT) init = v->cols ? TGM_INIT_XAVIER : TGM_INIT_ZEROS;
        double lim = sqrt(6.0 / ((double)v->rows + (double)(v->cols ? v->cols : 1)));
        for (size_t k = 0; k < n; k++) {
            double val = 0;
            switch (init) {
            case TGM_INIT_ONES: val = 1; break;
            case TGM_INIT_CONST: val = v->a; break;
            case TGM_INIT_UNIFORM: val = v->a + (v->b - v->a) * tg_rand_uniform(ctx); break;
            case TGM_INIT_NORMAL: val = v->a + v->b * tg_rand_normal(ctx); break;
            case TGM_INIT_XAVIER: val = lim * (2 * tg_rand_uniform(ctx) - 1); break;
            case TGM_INIT_LITERAL: val = v->values[k]; break;
            default: break;
            }
            x[k] = (tg_real)val;
        }
    }
    return TG_OK;
}
