/* params.c — parameters live outside any tape, in one contiguous value buffer
 * and one contiguous gradient buffer, so an optimizer (or an allreduce) is a
 * single loop over tg_params_total() scalars. */
#include "tg_internal.h"
#include <math.h>

tg_params *tg_params_new(tg_ctx *ctx)
{
    if (!ctx) return NULL;
    tg_params *ps = tg_alloc(ctx, sizeof *ps);
    if (!ps) return NULL;
    memset(ps, 0, sizeof *ps);
    ps->ctx = ctx;
    return ps;
}

void tg_params_free(tg_params *ps)
{
    if (!ps) return;
    tg_ctx *ctx = ps->ctx;
    for (int i = 0; i < ps->n; i++) {
        tg_strfree(ctx, ps->list[i].name);
        tg_free(ctx, ps->list[i].t, sizeof(tg_param_tensor));
    }
    tg_free(ctx, ps->list, (size_t)ps->cap * sizeof *ps->list);
    tg_free(ctx, ps->values, 2 * ps->cap_total * sizeof(tg_real));
    tg_free(ctx, ps, sizeof *ps);
}

/* Values and gradients share one allocation (values first, then gradients)
 * so growing can fail only before anything changed.  Every tensor's val/grad
 * is re-pointed after a move. */
static tg_status reserve(tg_params *ps, size_t total)
{
    if (total <= ps->cap_total) return TG_OK;
    size_t cap = ps->cap_total ? ps->cap_total : 64;
    while (cap < total) cap *= 2;
    tg_real *buf = tg_alloc(ps->ctx, 2 * cap * sizeof(tg_real));
    if (!buf) return TG_ERR_NOMEM;
    if (ps->values) {
        memcpy(buf, ps->values, ps->total * sizeof(tg_real));
        memcpy(buf + cap, ps->grads, ps->total * sizeof(tg_real));
        tg_free(ps->ctx, ps->values, 2 * ps->cap_total * sizeof(tg_real));
    }
    ps->values = buf;
    ps->grads = buf + cap;
    ps->cap_total = cap;
    for (int i = 0; i < ps->n; i++) {
        ps->list[i].t->val = ps->values + ps->list[i].offset;
        ps->list[i].t->grad = ps->grads + ps->list[i].offset;
    }
    return TG_OK;
}

tg_tensor *tg_params_add(tg_params *ps, const char *name, int rows, int cols)
{
    if (!ps) return NULL;
    tg_ctx *ctx = ps->ctx;
    int ndim = cols == 0 ? 1 : 2;
    if (cols == 0) cols = 1;
    if (!name || !*name) {
        tg_error(ctx, TG_ERR_ARG, "params: a parameter needs a name");
        return NULL;
    }
    if (rows < 1 || cols < 1 || (size_t)rows * (size_t)cols > ((size_t)1 << 31)) {
        tg_error(ctx, TG_ERR_ARG, "params: bad shape [%d, %d] for '%s'", rows, cols, name);
        return NULL;
    }
    if (tg_params_find(ps, name)) {
        tg_error(ctx, TG_ERR_ARG, "params: '%s' already exists", name);
        return NULL;
    }
    size_t n = (size_t)rows * (size_t)cols;
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 8;
        tg_param_entry *l = tg_realloc(ctx, ps->list, (size_t)ps->cap * sizeof *l, (size_t)cap * sizeof *l);
        if (!l) return NULL;
        ps->list = l;
        ps->cap = cap;
    }
    tg_param_tensor *pt = tg_alloc(ctx, sizeof *pt);
    tg_tensor *t = pt ? &pt->t : NULL;
    char *nm = t ? tg_strdup(ctx, name) : NULL;
    /* keep every parameter aligned like the arena's tensors */
    size_t offset = (ps->total + 15) & ~(size_t)15;
    if (!nm || reserve(ps, offset + n) != TG_OK) {
        tg_free(ctx, pt, sizeof *pt);
        tg_strfree(ctx, nm);
        return NULL;
    }
    memset(pt, 0, sizeof *pt);
    pt->ctx = ctx;
    t->rows = rows;
    t->cols = cols;
    t->ndim = (signed char)ndim;
    t->kind = TG_KIND_PARAM;
    t->requires_grad = 1;
    t->index = -1;
    t->step = -1;
    t->label = nm;
    t->val = ps->values + offset;
    t->grad = ps->grads + offset;
    memset(ps->values + ps->total, 0, (offset + n - ps->total) * sizeof(tg_real));
    memset(ps->grads + ps->total, 0, (offset + n - ps->total) * sizeof(tg_real));
    ps->list[ps->n++] = (tg_param_entry){nm, t, offset};
    ps->total = offset + n;
    return t;
}

tg_tensor *tg_params_find(tg_params *ps, const char *name)
{
    for (int i = 0; ps && name && i < ps->n; i++)
        if (strcmp(ps->list[i].name, name) == 0) return ps->list[i].t;
    return NULL;
}

int tg_params_count(const tg_params *ps) { return ps ? ps->n : 0; }
tg_tensor *tg_params_at(tg_params *ps, int i) { return ps && i >= 0 && i < ps->n ? ps->list[i].t : NULL; }
const char *tg_params_name(const tg_params *ps, int i)
{
    return ps && i >= 0 && i < ps->n ? ps->list[i].name : NULL;
}
size_t tg_params_total(const tg_params *ps) { return ps ? ps->total : 0; }
tg_real *tg_params_values(tg_params *ps) { return ps ? ps->values : NULL; }
tg_real *tg_params_grads(tg_params *ps) { return ps ? ps->grads : NULL; }

void tg_params_zero_grad(tg_params *ps)
{
    if (ps && ps->grads) memset(ps->grads, 0, ps->total * sizeof(tg_real));
}

double tg_params_clip_grad(tg_params *ps, double max_norm)
{
    if (!ps) return 0.0;
    double ss = 0.0;
    for (size_t i = 0; i < ps->total; i++) ss += (double)ps->grads[i] * (double)ps->grads[i];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        tg_real s = (tg_real)(max_norm / norm);
        for (size_t i = 0; i < ps->total; i++) ps->grads[i] *= s;
    }
    return norm;
}
