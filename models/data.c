/* data.c — the files that go with a model: data files (sequences of inputs
 * and targets, one column per batch item) and params files (parameter values
 * in their declared shapes, which training also writes).  Both are plain
 * YAML read through yaml.c with the same limits as model files. */
#include "tg_model_internal.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

typedef struct tgm_seq {
    int steps, batch;
    tg_real **vals;        /* inputs then targets; NULL for a missing target */
} tgm_seq;

struct tg_dataset {
    tg_ctx *ctx;
    int n_in, n_tg;        /* the model's inputs and targets */
    int *rows;             /* per variable */
    int n_seq;
    tgm_seq *seq;
};

static size_t var_bytes(const tg_dataset *d, const tgm_seq *s, int v)
{
    return (size_t)s->steps * (size_t)d->rows[v] * (size_t)s->batch * sizeof(tg_real);
}

void tg_dataset_free(tg_dataset *d)
{
    if (!d) return;
    tg_ctx *ctx = d->ctx;
    int nv = d->n_in + d->n_tg;
    for (int i = 0; i < d->n_seq; i++) {
        if (!d->seq[i].vals) continue;
        for (int v = 0; v < nv; v++)
            if (d->seq[i].vals[v]) tg_free(ctx, d->seq[i].vals[v], var_bytes(d, &d->seq[i], v));
        tg_free(ctx, d->seq[i].vals, (size_t)nv * sizeof(tg_real *));
    }
    tg_free(ctx, d->seq, (size_t)(d->n_seq ? d->n_seq : 1) * sizeof *d->seq);
    tg_free(ctx, d->rows, (size_t)(nv ? nv : 1) * sizeof *d->rows);
    tg_free(ctx, d, sizeof *d);
}

static tg_dataset *data_new(tg_ctx *ctx, const tg_model *m, int n_seq)
{
    tg_dataset *d = tg_alloc(ctx, sizeof *d);
    if (!d) return NULL;
    memset(d, 0, sizeof *d);
    d->ctx = ctx;
    d->n_in = m->n_vars[TG_ROLE_INPUT];
    d->n_tg = m->n_vars[TG_ROLE_TARGET];
    int nv = d->n_in + d->n_tg;
    d->rows = tg_alloc(ctx, (size_t)(nv ? nv : 1) * sizeof *d->rows);
    d->seq = tg_alloc(ctx, (size_t)(n_seq ? n_seq : 1) * sizeof *d->seq);
    if (!d->rows || !d->seq) {
        tg_dataset_free(d);
        return NULL;
    }
    memset(d->seq, 0, (size_t)(n_seq ? n_seq : 1) * sizeof *d->seq);
    d->n_seq = n_seq;
    for (int v = 0; v < nv; v++)
        d->rows[v] = v < d->n_in ? m->vars[TG_ROLE_INPUT][v].rows : m->vars[TG_ROLE_TARGET][v - d->n_in].rows;
    for (int i = 0; i < n_seq; i++) {
        d->seq[i].vals = tg_alloc(ctx, (size_t)(nv ? nv : 1) * sizeof(tg_real *));
        if (!d->seq[i].vals) {
            tg_dataset_free(d);
            return NULL;
        }
        memset(d->seq[i].vals, 0, (size_t)(nv ? nv : 1) * sizeof(tg_real *));
    }
    return d;
}

/* ---- data files ----------------------------------------------------------------- */
static tg_status step_number(const tgm_ydoc *y, int node, const char *what, int t, tg_real *out)
{
    double v;
    const tgm_ynode *n = tgm_node(y, node);
    if (n->kind != TGM_Y_SCALAR || tgm_parse_number(tgm_str(y, node), &v))
        return tgm_err_node(y, node, TG_ERR_PARSE, "'%s' step %d: expected a number, got %s%.40s%s", what, t + 1,
                            n->kind == TGM_Y_SCALAR && !tgm_is_null(y, node) ? "'" : "",
                            n->kind == TGM_Y_SCALAR && !tgm_is_null(y, node) ? tgm_str(y, node) : tgm_kind_name(y, node),
                            n->kind == TGM_Y_SCALAR && !tgm_is_null(y, node) ? "'" : "");
    if (!tgm_fits_real(v))
        return tgm_err_node(y, node, TG_ERR_PARSE, "'%s' step %d: '%.40s' is out of range for %s (largest %g)", what,
                            t + 1, tgm_str(y, node), TG_REAL_NAME, TGM_REAL_MAX);
    if (out) *out = (tg_real)v;
    return TG_OK;
}

/* The columns a step holds: a number or a flat list is one column (for a
 * one-row variable a flat list is one row of columns); a list of rows gives
 * the length of its first row. */
static int step_batch(const tgm_ydoc *y, int node, int rows)
{
    const tgm_ynode *n = tgm_node(y, node);
    if (n->kind != TGM_Y_SEQ || n->first < 0) return 1;
    const tgm_ynode *f = tgm_node(y, n->first);
    if (f->kind == TGM_Y_SEQ) return f->count;
    return rows == 1 ? n->count : 1;
}

/* Step t of variable `what` ([rows], batch B) into out[rows * B], or only
 * checked if out is NULL. */
static tg_status read_step(const tgm_ydoc *y, int node, const char *what, int t, int rows, int B, tg_real *out)
{
    const tgm_ynode *n = tgm_node(y, node);
    if (n->kind == TGM_Y_SCALAR) {
        if (rows * B != 1)
            return tgm_err_node(y, node, TG_ERR_SHAPE, "'%s' step %d: expected %d numbers (one column of [%d]), got one",
                                what, t + 1, rows, rows);
        return step_number(y, node, what, t, out);
    }
    if (n->kind != TGM_Y_SEQ)
        return tgm_err_node(y, node, TG_ERR_PARSE, "'%s' step %d: expected a list of numbers, got %s", what, t + 1,
                            tgm_kind_name(y, node));
    int nested = n->first >= 0 && tgm_node(y, n->first)->kind == TGM_Y_SEQ;
    tg_status st;
    if (!nested) {
        /* a column of [rows] (B = 1), or for one row, B columns */
        int want = rows == 1 ? B : rows;
        if (rows > 1 && B != 1)
            return tgm_err_node(y, node, TG_ERR_SHAPE,
                                "'%s' step %d: expected %d rows of %d columns (the batch), got a flat list", what, t + 1,
                                rows, B);
        if (n->count != want)
            return tgm_err_node(y, node, TG_ERR_SHAPE, "'%s' step %d: expected %d number%s, got %d", what, t + 1, want,
                                want == 1 ? "" : "s", n->count);
        int k = 0;
        for (int e = n->first; e >= 0; e = tgm_node(y, e)->next, k++)
            if ((st = step_number(y, e, what, t, out ? &out[k] : NULL))) return st;
        return TG_OK;
    }
    if (n->count != rows)
        return tgm_err_node(y, node, TG_ERR_SHAPE, "'%s' step %d: expected %d row%s, got %d", what, t + 1, rows,
                            rows == 1 ? "" : "s", n->count);
    int r = 0;
    for (int e = n->first; e >= 0; e = tgm_node(y, e)->next, r++) {
        const tgm_ynode *row = tgm_node(y, e);
        if (row->kind != TGM_Y_SEQ)
            return tgm_err_node(y, e, TG_ERR_PARSE, "'%s' step %d row %d: expected a list of %d numbers, got %s", what,
                                t + 1, r + 1, B, tgm_kind_name(y, e));
        if (row->count != B)
            return tgm_err_node(y, e, TG_ERR_SHAPE, "'%s' step %d row %d: expected %d number%s (the batch), got %d",
                                what, t + 1, r + 1, B, B == 1 ? "" : "s", row->count);
        int k = 0;
        for (int x = row->first; x >= 0; x = tgm_node(y, x)->next, k++)
            if ((st = step_number(y, x, what, t, out ? &out[(size_t)r * (size_t)B + (size_t)k] : NULL))) return st;
    }
    return TG_OK;
}

static tg_status read_sequence(tg_dataset *D, const tg_model *m, const tgm_ydoc *y, int map, int idx, int many)
{
    tg_ctx *ctx = D->ctx;
    tgm_seq *s = &D->seq[idx];
    int nv = D->n_in + D->n_tg;
    char where[48] = "";
    if (many) snprintf(where, sizeof where, " in sequence %d", idx + 1);
    if (tgm_node(y, map)->kind != TGM_Y_MAP)
        return tgm_err_node(y, map, TG_ERR_PARSE, "a sequence is a mapping from input and target names to lists of steps, not %s",
                            tgm_kind_name(y, map));
    /* every key must be an input or a target */
    const char *names[2 * TGM_MAX_DECLS];
    for (int v = 0; v < nv; v++)
        names[v] = v < D->n_in ? m->vars[TG_ROLE_INPUT][v].name : m->vars[TG_ROLE_TARGET][v - D->n_in].name;
    for (int k = tgm_node(y, map)->first; k >= 0;) {
        int val = tgm_node(y, k)->next;
        int found = 0;
        for (int v = 0; v < nv && !found; v++) found = !strcmp(tgm_str(y, k), names[v]);
        if (!found) {
            char dym[120];
            tgm_did_you_mean(dym, sizeof dym, tgm_str(y, k), names, nv);
            return tgm_err_node(y, k, TG_ERR_PARSE, "'%.64s' is not an input or target of model %s%s", tgm_str(y, k),
                                m->name, dym);
        }
        k = tgm_node(y, val)->next;
    }
    int first_var = -1, first_key = -1;
    s->steps = 0;
    s->batch = 0;
    for (int v = 0; v < nv; v++) {
        int key, node = tgm_map_get(y, map, names[v], &key);
        if (node < 0) {
            if (v < D->n_in)
                return tgm_err_node(y, map, TG_ERR_PARSE, "input '%s' is missing%s", names[v], where);
            continue; /* a target may be missing: run needs none */
        }
        const tgm_ynode *n = tgm_node(y, node);
        if (n->kind != TGM_Y_SEQ || n->count == 0)
            return tgm_err_node(y, node, TG_ERR_PARSE, "'%s' must be a non-empty list of steps, not %s", names[v],
                                n->kind == TGM_Y_SEQ ? "an empty list" : tgm_kind_name(y, node));
        if (n->count > TGM_MAX_STEPS)
            return tgm_err_node(y, node, TG_ERR_LIMIT, "'%s' has more than the limit of %d steps", names[v], TGM_MAX_STEPS);
        if (first_var < 0) {
            first_var = v;
            first_key = key;
            s->steps = n->count;
            s->batch = step_batch(y, n->first, D->rows[v]);
            if (s->batch < 1 || s->batch > TGM_MAX_BATCH)
                return tgm_err_node(y, n->first, TG_ERR_LIMIT, "'%s' step 1: the batch must have 1 to %d columns, got %d",
                                    names[v], TGM_MAX_BATCH, s->batch);
        } else if (n->count != s->steps)
            return tgm_err_node(y, key, TG_ERR_SHAPE, "'%s' has %d steps but '%s' (line %d) has %d%s", names[v], n->count,
                                names[first_var], tgm_node(y, first_key)->line, s->steps, where);
        /* check every step first: the buffer is allocated only for data
         * that is really there */
        int t = 0;
        for (int e = n->first; e >= 0; e = tgm_node(y, e)->next, t++) {
            tg_status st = read_step(y, e, names[v], t, D->rows[v], s->batch, NULL);
            if (st) return st;
        }
        size_t per = (size_t)D->rows[v] * (size_t)s->batch;
        tg_real *buf = tg_alloc(ctx, (size_t)s->steps * per * sizeof(tg_real));
        if (!buf) return TG_ERR_NOMEM;
        s->vals[v] = buf;
        t = 0;
        for (int e = n->first; e >= 0; e = tgm_node(y, e)->next, t++)
            read_step(y, e, names[v], t, D->rows[v], s->batch, buf + (size_t)t * per);
    }
    return TG_OK;
}

tg_dataset *tg_dataset_parse(tg_ctx *ctx, const tg_model *m, const char *filename, const char *text, size_t len)
{
    if (!ctx) return NULL;
    if (!m || !text) {
        tg_error(ctx, TG_ERR_ARG, "tg_dataset_parse: model and text are required");
        return NULL;
    }
    if (!filename) filename = "(data)";
    tgm_ydoc y;
    memset(&y, 0, sizeof y);
    tgm_ylimits lim = {TGM_MAX_DATA_BYTES, TGM_MAX_DEPTH, TGM_MAX_DATA_NODES};
    tg_dataset *D = NULL;
    if (tgm_yaml_parse(&y, ctx, filename, text, len, &lim)) goto out;
    if (y.root < 0) {
        tg_error(ctx, TG_ERR_PARSE, "%s:1:1: the data file is empty", filename);
        goto out;
    }
    int many = tgm_node(&y, y.root)->kind == TGM_Y_SEQ;
    int n_seq = many ? tgm_node(&y, y.root)->count : 1;
    if (tgm_node(&y, y.root)->kind == TGM_Y_SCALAR) {
        tgm_err_node(&y, y.root, TG_ERR_PARSE,
                     "a data file is a mapping like {x: [...], y: [...]} or a list of them, not %s",
                     tgm_kind_name(&y, y.root));
        goto out;
    }
    if (n_seq == 0) {
        tgm_err_node(&y, y.root, TG_ERR_PARSE, "the data file holds no sequences");
        goto out;
    }
    if (n_seq > TGM_MAX_SEQUENCES) {
        tgm_err_node(&y, y.root, TG_ERR_LIMIT, "more than the limit of %d sequences", TGM_MAX_SEQUENCES);
        goto out;
    }
    if (!(D = data_new(ctx, m, n_seq))) goto out;
    int i = 0;
    for (int e = many ? tgm_node(&y, y.root)->first : y.root; e >= 0 && i < n_seq;
         e = many ? tgm_node(&y, e)->next : -1, i++) {
        if (read_sequence(D, m, &y, e, i, many)) {
            tg_dataset_free(D);
            D = NULL;
            goto out;
        }
    }
out:
    tgm_yaml_free(&y);
    if (!D && !tg_status_last(ctx)) tg_error(ctx, TG_ERR_NOMEM, "out of memory");
    return D;
}

tg_dataset *tg_dataset_load(tg_ctx *ctx, const tg_model *m, const char *path)
{
    if (!ctx) return NULL;
    if (!path || !m) {
        tg_error(ctx, TG_ERR_ARG, "tg_dataset_load: model and path are required");
        return NULL;
    }
    char *text;
    size_t len;
    if (tgm_read_file(ctx, path, TGM_MAX_DATA_BYTES, "the data file", &text, &len)) return NULL;
    tg_dataset *d = tg_dataset_parse(ctx, m, path, text, len);
    tg_free(ctx, text, len + 1);
    return d;
}

tg_dataset *tg_dataset_random(tg_ctx *ctx, const tg_model *m, int steps, int batch, uint64_t seed)
{
    if (!ctx) return NULL;
    if (!m || steps < 1 || steps > TGM_MAX_STEPS || batch < 1 || batch > TGM_MAX_BATCH) {
        tg_error(ctx, TG_ERR_ARG, "random data: steps must be 1..%d and batch 1..%d", TGM_MAX_STEPS, TGM_MAX_BATCH);
        return NULL;
    }
    tg_dataset *D = data_new(ctx, m, 1);
    if (!D) return NULL;
    tgm_seq *s = &D->seq[0];
    s->steps = steps;
    s->batch = batch;
    tg_seed(ctx, seed);
    for (int v = 0; v < D->n_in + D->n_tg; v++) {
        size_t n = (size_t)steps * (size_t)D->rows[v] * (size_t)batch;
        if (!(s->vals[v] = tg_alloc(ctx, n * sizeof(tg_real)))) {
            tg_dataset_free(D);
            return NULL;
        }
        for (size_t k = 0; k < n; k++)
            s->vals[v][k] = (tg_real)(v < D->n_in ? 2 * tg_rand_uniform(ctx) - 1 : tg_rand_uniform(ctx));
    }
    return D;
}

int tg_dataset_count(const tg_dataset *d) { return d ? d->n_seq : 0; }
int tg_dataset_steps(const tg_dataset *d, int seq) { return d && seq >= 0 && seq < d->n_seq ? d->seq[seq].steps : 0; }
int tg_dataset_batch(const tg_dataset *d, int seq) { return d && seq >= 0 && seq < d->n_seq ? d->seq[seq].batch : 0; }

const tg_real *tg_dataset_values(const tg_dataset *d, int seq, tg_model_role role, int i)
{
    if (!d || seq < 0 || seq >= d->n_seq) return NULL;
    if (role == TG_ROLE_INPUT && i >= 0 && i < d->n_in) return d->seq[seq].vals[i];
    if (role == TG_ROLE_TARGET && i >= 0 && i < d->n_tg) return d->seq[seq].vals[d->n_in + i];
    return NULL;
}

/* ---- params files --------------------------------------------------------------------- */
static tg_status params_parse(tg_params *ps, const tg_model *m, const tgm_ydoc *y)
{
    tg_ctx *ctx = m->ctx;
    const int np = m->n_vars[TG_ROLE_PARAM];
    const tgm_var *pv = m->vars[TG_ROLE_PARAM];
    /* a file that sets nothing would leave every parameter at its init while
     * the run looks as if it used the file's values */
    if (y->root < 0)
        return tg_error(ctx, TG_ERR_PARSE, "%s:1:1: the params file is empty: it sets no parameter of model %s",
                        y->file, m->name);
    if (tgm_node(y, y->root)->kind != TGM_Y_MAP)
        return tgm_err_node(y, y->root, TG_ERR_PARSE, "a params file is a mapping from parameter names to values, not %s",
                            tgm_kind_name(y, y->root));
    if (tgm_node(y, y->root)->first < 0)
        return tgm_err_node(y, y->root, TG_ERR_PARSE, "the params file holds no parameters of model %s", m->name);
    const char *names[TGM_MAX_DECLS];
    size_t off[TGM_MAX_DECLS + 1];
    int node_of[TGM_MAX_DECLS];
    off[0] = 0;
    for (int i = 0; i < np; i++) {
        names[i] = pv[i].name;
        off[i + 1] = off[i] + (size_t)pv[i].rows * (size_t)(pv[i].cols ? pv[i].cols : 1);
        node_of[i] = -1;
    }
    for (int k = tgm_node(y, y->root)->first; k >= 0;) {
        int v = tgm_node(y, k)->next, found = -1;
        for (int i = 0; i < np && found < 0; i++)
            if (!strcmp(tgm_str(y, k), names[i])) found = i;
        if (found < 0) {
            char dym[120];
            return tgm_err_node(y, k, TG_ERR_PARSE, "model %s has no parameter '%.64s'%s", m->name, tgm_str(y, k),
                                tgm_did_you_mean(dym, sizeof dym, tgm_str(y, k), names, np));
        }
        node_of[found] = v;
        k = tgm_node(y, v)->next;
    }
    /* read everything first, so a bad file changes nothing */
    tg_real *tmp = tg_alloc(ctx, (off[np] ? off[np] : 1) * sizeof(tg_real));
    if (!tmp) return TG_ERR_NOMEM;
    tg_status st = TG_OK;
    for (int i = 0; i < np && !st; i++)
        if (node_of[i] >= 0) {
            char what[TGM_MAX_NAME + 8];
            snprintf(what, sizeof what, "'%s'", names[i]);
            st = tgm_read_values(y, node_of[i], what, pv[i].rows, pv[i].cols, NULL, tmp + off[i]);
        }
    for (int i = 0; i < np && !st; i++) {
        if (node_of[i] < 0) continue;
        tg_tensor *t = tg_params_find(ps, names[i]);
        char a[40], b[40];
        if (t && (tg_rows(t) != pv[i].rows || tg_cols(t) != (pv[i].cols ? pv[i].cols : 1)))
            st = tg_error(ctx, TG_ERR_SHAPE, "params: '%s' is %s but model %s declares it %s", names[i],
                          tgm_shape_str(a, sizeof a, tg_rows(t), tg_cols(t), tg_ndim(t)), m->name,
                          tgm_shape_str(b, sizeof b, pv[i].rows, pv[i].cols, pv[i].cols ? 2 : 1));
        else if (!t && !tg_params_add(ps, names[i], pv[i].rows, pv[i].cols))
            st = tg_status_last(ctx);
    }
    for (int i = 0; i < np && !st; i++)
        if (node_of[i] >= 0)
            memcpy(tg_data(tg_params_find(ps, names[i])), tmp + off[i], (off[i + 1] - off[i]) * sizeof(tg_real));
    tg_free(ctx, tmp, (off[np] ? off[np] : 1) * sizeof(tg_real));
    return st;
}

tg_status tg_params_load(tg_params *ps, const tg_model *m, const char *path)
{
    if (!m) return ps ? tg_error(ps->ctx, TG_ERR_ARG, "tg_params_load: the model is NULL") : TG_ERR_ARG;
    tg_ctx *ctx = m->ctx;
    if (!ps || !path) return tg_error(ctx, TG_ERR_ARG, "tg_params_load: params and path are required");
    if (tg_checkpoint_is(path)) {
        /* a checkpoint of `tapegrad train --save` holds the params too */
        tg_checkpoint *c = tg_checkpoint_open(ctx, path);
        tg_status cs = c ? tg_checkpoint_params(c, m, ps, 0) : tg_status_last(ctx);
        tg_checkpoint_close(c);
        return cs;
    }
    char *text;
    size_t len;
    tg_status st = tgm_read_file(ctx, path, TGM_MAX_DATA_BYTES, "the params file", &text, &len);
    if (st) return st;
    tgm_ydoc y;
    memset(&y, 0, sizeof y);
    tgm_ylimits lim = {TGM_MAX_DATA_BYTES, TGM_MAX_DEPTH, TGM_MAX_DATA_NODES};
    st = tgm_yaml_parse(&y, ctx, path, text, len, &lim);
    if (!st) st = params_parse(ps, m, &y);
    tgm_yaml_free(&y);
    tg_free(ctx, text, len + 1);
    return st;
}

static void put_number(FILE *f, double v)
{
#ifdef TG_REAL_DOUBLE
    fprintf(f, "%.17g", v);
#else
    fprintf(f, "%.9g", v);
#endif
}

tg_status tg_params_save(tg_params *ps, const tg_model *m, const char *path)
{
    if (!m) return ps ? tg_error(ps->ctx, TG_ERR_ARG, "tg_params_save: the model is NULL") : TG_ERR_ARG;
    tg_ctx *ctx = m->ctx;
    if (!ps || !path) return tg_error(ctx, TG_ERR_ARG, "tg_params_save: params and path are required");
    const int np = m->n_vars[TG_ROLE_PARAM];
    for (int i = 0; i < np; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_PARAM][i];
        tg_tensor *t = tg_params_find(ps, v->name);
        if (!t || tg_rows(t) != v->rows || tg_cols(t) != (v->cols ? v->cols : 1))
            return tg_error(ctx, TG_ERR_ARG, "params: '%s' is missing or not in the declared shape; nothing saved",
                            v->name);
        for (size_t k = 0; k < tg_size(t); k++)
            if (!isfinite((double)tg_data(t)[k]))
                return tg_error(ctx, TG_ERR_NONFINITE, "params: '%s' holds a non-finite value; nothing saved", v->name);
    }
    tg_atomic out;
    if (tg_atomic_open(&out, path) != 0)
        return tg_error(ctx, TG_ERR_IO, "%s: cannot write params: %s", path, out.why[0] ? out.why : strerror(errno));
    FILE *f = out.f;
    fprintf(f, "# tapegrad params for model '%s' (%s)\n", m->name, TG_REAL_NAME);
    for (int i = 0; i < np; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_PARAM][i];
        const tg_real *x = tg_data(tg_params_find(ps, v->name));
        fprintf(f, "%s:", v->name);
        if (v->cols == 0) {
            fputs(" [", f);
            for (int r = 0; r < v->rows; r++) {
                if (r) fputs(", ", f);
                put_number(f, (double)x[r]);
            }
            fputs("]\n", f);
            continue;
        }
        fputc('\n', f);
        for (int r = 0; r < v->rows; r++) {
            fputs("  - [", f);
            for (int c = 0; c < v->cols; c++) {
                if (c) fputs(", ", f);
                put_number(f, (double)x[(size_t)r * (size_t)v->cols + (size_t)c]);
            }
            fputs("]\n", f);
        }
    }
    if (tg_atomic_commit(&out) != 0)
        return tg_error(ctx, TG_ERR_IO, "%s: cannot write params: %s", path, out.why[0] ? out.why : strerror(errno));
    return TG_OK;
}
