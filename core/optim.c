/* optim.c — SGD, momentum, Adam, RMSprop and Adagrad as one loop each over the
 * contiguous value and gradient buffers of a tg_params, with global-norm
 * clipping and weight decay; the per-scalar state is laid out like the
 * values so a checkpoint can save it per parameter. */
#include "tg_internal.h"
#include <math.h>

#define MAX_STATE 2

struct tg_optim {
    tg_params *ps;             /* borrowed */
    tg_optim_opts o;
    uint64_t steps;            /* updates taken (Adam's t) */
    int n_state;               /* per-scalar buffers this kind keeps */
    tg_real *state[MAX_STATE]; /* each cap scalars, zero past ps->total */
    size_t cap;
};

#define N_KINDS (TG_OPTIM_ADAGRAD + 1)
static const char *const kind_names[N_KINDS] = {"sgd", "momentum", "adam", "rmsprop", "adagrad"};
static const char *const state_names[N_KINDS][MAX_STATE] = {
    {NULL, NULL}, {"velocity", NULL}, {"m", "v"}, {"sq", NULL}, {"sum", NULL}};

tg_optim_opts tg_optim_defaults(tg_optim_kind kind)
{
    return (tg_optim_opts){
        .kind = kind,
        .lr = kind == TG_OPTIM_ADAM ? 1e-3 : 1e-2,
        .momentum = 0.9,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .rho = 0.99,
        .eps = kind == TG_OPTIM_ADAGRAD ? 1e-10 : 1e-8, /* torch.optim.Adagrad's */
    };
}

const char *tg_optim_kind_name(tg_optim_kind kind)
{
    return (unsigned)kind < N_KINDS ? kind_names[kind] : "?";
}

int tg_optim_kind_parse(const char *name)
{
    for (int i = 0; name && i < N_KINDS; i++)
        if (strcmp(name, kind_names[i]) == 0) return i;
    return -1;
}

/* Every option in range, or an error naming the first that is not. */
static tg_status check_opts(tg_ctx *ctx, const tg_optim_opts *o)
{
    const char *bad = NULL;
    double v = 0;
    if ((unsigned)o->kind >= N_KINDS)
        return tg_error(ctx, TG_ERR_ARG, "optimizer: unknown kind %d", (int)o->kind);
    /* eps is all that keeps g / sqrt(v) from being 0/0 = NaN for a parameter
     * whose gradient has been zero so far */
    if ((o->kind == TG_OPTIM_ADAM || o->kind == TG_OPTIM_RMSPROP || o->kind == TG_OPTIM_ADAGRAD) &&
        !(o->eps > 0 && isfinite(o->eps)))
        return tg_error(ctx, TG_ERR_ARG, "optimizer: eps = %g: %s needs eps > 0 (with 0, a parameter whose "
                        "gradient is zero becomes 0/0 = NaN)", o->eps, kind_names[o->kind]);
    if (!(o->lr > 0) || !isfinite(o->lr)) bad = "lr", v = o->lr;
    else if (!(o->momentum >= 0 && o->momentum < 1)) bad = "momentum", v = o->momentum;
    else if (!(o->beta1 >= 0 && o->beta1 < 1)) bad = "beta1", v = o->beta1;
    else if (!(o->beta2 >= 0 && o->beta2 < 1)) bad = "beta2", v = o->beta2;
    else if (!(o->rho >= 0 && o->rho < 1)) bad = "rho", v = o->rho;
    else if (!(o->eps >= 0) || !isfinite(o->eps)) bad = "eps", v = o->eps;
    else if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay)) bad = "weight_decay", v = o->weight_decay;
    else if (!(o->clip >= 0) || isnan(o->clip)) bad = "clip", v = o->clip;
    else if (!(o->clip_value >= 0) || isnan(o->clip_value)) bad = "clip_value", v = o->clip_value;
    if (bad)
        return tg_error(ctx, TG_ERR_ARG, "optimizer: %s = %g is out of range (lr > 0; momentum, "
                        "betas and rho in [0, 1); eps, weight decay, clip and clip_value >= 0)", bad, v);
    return TG_OK;
}

tg_optim *tg_optim_new(tg_params *ps, const tg_optim_opts *opts)
{
    if (!ps) return NULL;
    tg_ctx *ctx = ps->ctx;
    if (!opts) {
        tg_error(ctx, TG_ERR_ARG, "optimizer: no options given");
        return NULL;
    }
    if (check_opts(ctx, opts) != TG_OK) return NULL;
    tg_optim *o = tg_alloc(ctx, sizeof *o);
    if (!o) return NULL;
    memset(o, 0, sizeof *o);
    o->ps = ps;
    o->o = *opts;
    o->n_state = opts->kind == TG_OPTIM_SGD ? 0 : opts->kind == TG_OPTIM_ADAM ? 2 : 1;
    o->o.eps_inside = opts->eps_inside != 0;
    return o;
}

void tg_optim_free(tg_optim *o)
{
    if (!o) return;
    for (int k = 0; k < o->n_state; k++) tg_free(o->ps->ctx, o->state[k], o->cap * sizeof(tg_real));
    tg_free(o->ps->ctx, o, sizeof *o);
}

/* Makes the state buffers cover every scalar of ps (parameters may have been
 * added since the last step); new state is zero. */
static tg_status fit_state(tg_optim *o)
{
    size_t total = o->ps->total;
    if (total <= o->cap || o->n_state == 0) return TG_OK;
    tg_real *fresh[MAX_STATE] = {NULL, NULL};
    for (int k = 0; k < o->n_state; k++) {
        fresh[k] = tg_alloc(o->ps->ctx, total * sizeof(tg_real));
        if (!fresh[k]) {
            for (int j = 0; j < k; j++) tg_free(o->ps->ctx, fresh[j], total * sizeof(tg_real));
            return TG_ERR_NOMEM;
        }
    }
    for (int k = 0; k < o->n_state; k++) {
        if (o->cap) memcpy(fresh[k], o->state[k], o->cap * sizeof(tg_real));
        memset(fresh[k] + o->cap, 0, (total - o->cap) * sizeof(tg_real));
        tg_free(o->ps->ctx, o->state[k], o->cap * sizeof(tg_real));
        o->state[k] = fresh[k];
    }
    o->cap = total;
    return TG_OK;
}

tg_status tg_optim_step(tg_optim *o, double *grad_norm)
{
    if (!o) {
        if (grad_norm) *grad_norm = NAN;
        return TG_ERR_ARG;
    }
    tg_ctx *ctx = o->ps->ctx;
    tg_params *ps = o->ps;
    /* the norm first: a non-finite gradient must not touch the parameters */
    double ss = 0;
    for (size_t i = 0; i < ps->total; i++) ss += (double)ps->grads[i] * (double)ps->grads[i];
    double norm = sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return tg_error(ctx, TG_ERR_NONFINITE, "optimizer: the gradient norm is %g at step %llu; "
                        "parameters left unchanged (try a smaller --lr or --clip)", norm,
                        (unsigned long long)o->steps + 1);
    if (fit_state(o) != TG_OK) return TG_ERR_NOMEM;
    const tg_optim_opts *op = &o->o;
    /* clip_value first, then the global norm of what it left (as
     * clip_grad_value_ then clip_grad_norm_ in PyTorch) */
    double clip_norm = norm;
    if (op->clip_value > 0) {
        const tg_real cv = (tg_real)op->clip_value;
        ss = 0;
        for (size_t i = 0; i < ps->total; i++) {
            tg_real gi = ps->grads[i];
            gi = gi > cv ? cv : gi < -cv ? -cv : gi;
            ps->grads[i] = gi;
            ss += (double)gi * (double)gi;
        }
        clip_norm = sqrt(ss);
    }
    if (op->clip > 0 && clip_norm > op->clip) {
        tg_real s = (tg_real)(op->clip / clip_norm);
        for (size_t i = 0; i < ps->total; i++) ps->grads[i] *= s;
    }
    const int inside = op->eps_inside;
    o->steps++;
    tg_real *p = ps->values, *g = ps->grads;
    const size_t n = ps->total;
    const double lr = op->lr, wd = op->weight_decay;
    const double l2 = op->decoupled ? 0 : wd;          /* added to the gradient */
    const double shrink = op->decoupled ? 1 - lr * wd : 1; /* applied to p */
    if (wd > 0)
        for (size_t i = 0; i < n; i++) {
            g[i] += (tg_real)(l2 * (double)p[i]);
            p[i] = (tg_real)(shrink * (double)p[i]);
        }
    switch (op->kind) {
    case TG_OPTIM_SGD:
        for (size_t i = 0; i < n; i++) p[i] -= (tg_real)(lr * (double)g[i]);
        break;
    case TG_OPTIM_MOMENTUM: {
        tg_real *b = o->state[0];
        const double mu = op->momentum;
        for (size_t i = 0; i < n; i++) {
            double bi = mu * (double)b[i] + (double)g[i];
            b[i] = (tg_real)bi;
            double d = op->nesterov ? (double)g[i] + mu * bi : bi;
            p[i] -= (tg_real)(lr * d);
        }
        break;
    }
    case TG_OPTIM_ADAM: {
        tg_real *m = o->state[0], *v = o->state[1];
        const double b1 = op->beta1, b2 = op->beta2, eps = op->eps;
        const double c1 = 1 - pow(b1, (double)o->steps), c2 = 1 - pow(b2, (double)o->steps);
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i];
            double mi = b1 * (double)m[i] + (1 - b1) * gi;
            double vi = b2 * (double)v[i] + (1 - b2) * gi * gi;
            m[i] = (tg_real)mi;
            v[i] = (tg_real)vi;
            p[i] -= (tg_real)(lr * (mi / c1) / (inside ? sqrt(vi / c2 + eps) : sqrt(vi / c2) + eps));
        }
        break;
    }
    case TG_OPTIM_RMSPROP: {
        tg_real *v = o->state[0];
        const double rho = op->rho, eps = op->eps;
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i];
            double vi = rho * (double)v[i] + (1 - rho) * gi * gi;
            v[i] = (tg_real)vi;
            p[i] -= (tg_real)(lr * gi / (inside ? sqrt(vi + eps) : sqrt(vi) + eps));
        }
        break;
    }
    case TG_OPTIM_ADAGRAD: {
        tg_real *sum = o->state[0];
        const double eps = op->eps;
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i];
            double si = (double)sum[i] + gi * gi;
            sum[i] = (tg_real)si;
            p[i] -= (tg_real)(lr * gi / (inside ? sqrt(si + eps) : sqrt(si) + eps));
        }
        break;
    }
    }
    return TG_OK;
}

const tg_optim_opts *tg_optim_get_opts(const tg_optim *o) { return o ? &o->o : NULL; }

void tg_optim_set_lr(tg_optim *o, double lr)
{
    if (o && lr > 0 && isfinite(lr)) o->o.lr = lr;
}

uint64_t tg_optim_steps(const tg_optim *o) { return o ? o->steps : 0; }
void tg_optim_set_steps(tg_optim *o, uint64_t steps)
{
    if (o) o->steps = steps;
}

int tg_optim_state_count(const tg_optim *o) { return o ? o->n_state : 0; }

tg_real *tg_optim_state(tg_optim *o, int k, const char **name)
{
    if (name) *name = NULL;
    if (!o || k < 0 || k >= o->n_state || fit_state(o) != TG_OK) return NULL;
    if (name) *name = state_names[o->o.kind][k];
    return o->state[k];
}
