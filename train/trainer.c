/* trainer.c — the training loop: the epoch plan (minibatches of
 * equal-length items shuffled from (seed, epoch), or B text streams),
 * truncated BPTT with the state carried between chunks, gradient
 * accumulation, the learning-rate schedule, validation, early stopping and
 * progress.  Every buffer is allocated when the data is set; a step resets
 * and reuses one tape. */
#include "train_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEXT_BPTT 64  /* the chunk length for text when bptt is -1 */

double tgt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

tg_train_opts tg_train_defaults(void)
{
    tg_train_opts o;
    memset(&o, 0, sizeof o);
    o.optim = tg_optim_defaults(TG_OPTIM_ADAM);
    o.epochs = 1;
    o.bptt = -1;
    o.accumulate = 1;
    o.reduction = TG_REDUCE_MEAN;
    o.schedule = TG_SCHED_CONSTANT;
    o.step_size = 1000;
    o.plateau_patience = 10;
    o.seed = 1;
    return o;
}

static const char *const sched_names[] = {"constant", "step", "exp", "cosine", "plateau"};
const char *tg_schedule_name(tg_schedule s) { return (unsigned)s < 5 ? sched_names[s] : "?"; }
int tg_schedule_parse(const char *name)
{
    for (int i = 0; name && i < 5; i++)
        if (!strcmp(name, sched_names[i])) return i;
    return -1;
}

/* ---- the plan ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int tgt_batch_steps(const tgt_plan *p, int k)
{
    return p->set->kind == TGT_TEXT ? p->T_max : p->set->items[p->order[p->start[k]]].steps;
}
int tgt_batch_cols(const tgt_plan *p, int k) { return p->set->kind == TGT_TEXT ? p->B : p->count[k]; }
int tgt_batch_chunks(const tgt_plan *p, int k)
{
    int T = tgt_batch_steps(p, k);
    return (T + p->K - 1) / p->K;
}

/* This plan's share [*lo, *lo + n) of a batch of cols columns; returns n. */
static int shard_cols(const tgt_plan *p, int cols, int *lo)
{
    *lo = (int)((long long)p->rank * cols / p->size);
    return (int)((long long)(p->rank + 1) * cols / p->size) - *lo;
}

void tgt_plan_free(tgt_plan *p, int n_in, int n_tg, int n_st)
{
    for (int i = 0; p->in && i < n_in; i++) free(p->in[i]);
    for (int i = 0; p->tg && i < n_tg; i++) free(p->tg[i]);
    for (int i = 0; p->carry && i < n_st; i++) free(p->carry[i]);
    for (int i = 0; p->carry_loc && i < n_st; i++) free(p->carry_loc[i]);
    for (int i = 0; p->out && i < n_st; i++) free(p->out[i]);
    free(p->in), free(p->tg), free(p->carry), free(p->carry_loc), free(p->out);
    free(p->order), free(p->start), free(p->count);
    memset(p, 0, sizeof *p);
}

/* Sizes the plan and its buffers for set s with the trainer's batch and
 * bptt; the batches themselves come from tgt_plan_epoch(). */
tg_status tgt_plan_init(tg_trainer *tr, tgt_plan *p, const tg_trainset *s)
{
    memset(p, 0, sizeof *p);
    p->set = s;
    p->filled = -1;
    p->size = 1;
    int B = tr->o.batch;
    if (s->kind == TGT_TEXT) {
        if (!B) B = 1;
        if ((size_t)B > s->n_sym - 1) {
            if (s != tr->train) B = (int)(s->n_sym - 1); /* a short validation text: fewer streams */
            else
                return tg_error(tr->ctx, TG_ERR_ARG, "%s: %zu characters are too few for batch %d", s->name, s->n_sym,
                                B);
        }
        size_t L = (s->n_sym - 1) / (size_t)B;
        if (L > 1000000000) L = 1000000000;
        p->B = B;
        p->n_batches = 1;
        p->T_max = (int)L;
    } else {
        if (!B) B = s->seq_batch[0];
        p->B = B;
        int n = s->n_items;
        p->order = malloc((size_t)n * sizeof *p->order);
        p->start = malloc((size_t)n * sizeof *p->start);
        p->count = malloc((size_t)n * sizeof *p->count);
        if (!p->order || !p->start || !p->count) return tg_error(tr->ctx, TG_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n; i++) p->T_max = s->items[i].steps > p->T_max ? s->items[i].steps : p->T_max;
    }
    int bptt = tr->o.bptt < 0 ? (s->kind == TGT_TEXT ? TEXT_BPTT : 0) : tr->o.bptt;
    p->K = bptt > 0 && bptt < p->T_max ? bptt : p->T_max;
    /* a reverse sweep starts at the end of a sequence: no chunks */
    for (int i = 0; i < tr->n_st && p->K < p->T_max; i++)
        if (tg_model_var_flags(tr->m, TG_ROLE_STATE, i, NULL) & TG_VAR_REVERSE)
            return tg_error(tr->ctx, TG_ERR_ARG, "--bptt %d: state '%s' of %s runs in reverse, so the model trains on "
                            "whole sequences (no truncated BPTT)", p->K, tg_model_var(tr->m, TG_ROLE_STATE, i, NULL, NULL),
                            tg_model_name(tr->m));
    int span = s->kind == TGT_TEXT ? p->K : p->T_max;
    p->in = calloc((size_t)tr->n_in + 1, sizeof *p->in);
    p->tg = calloc((size_t)tr->n_tg + 1, sizeof *p->tg);
    p->carry = calloc((size_t)tr->n_st + 1, sizeof *p->carry);
    p->out = calloc((size_t)tr->n_st + 1, sizeof *p->out);
    int oom = !p->in || !p->tg || !p->carry || !p->out;
    /* a text feeds one input and one target of vocab rows, or one row of indices */
    for (int i = 0; !oom && i < tr->n_in; i++) {
        size_t rows = (size_t)(s->kind == TGT_TEXT ? (tr->in_flags[i] & TG_VAR_INDEX ? 1 : s->vocab->n) : s->rows[i]);
        oom = !(p->in[i] = malloc((size_t)span * rows * (size_t)p->B * sizeof(tg_real)));
    }
    for (int i = 0; !oom && i < tr->n_tg; i++) {
        size_t rows = (size_t)(s->kind == TGT_TEXT ? (tr->tg_flags[i] & TG_VAR_INDEX ? 1 : s->vocab->n)
                                                   : s->rows[tr->n_in + i]);
        oom = !(p->tg[i] = malloc((size_t)span * rows * (size_t)p->B * sizeof(tg_real)));
    }
    for (int i = 0; !oom && i < tr->n_st; i++)
        oom = !(p->carry[i] = calloc((size_t)tr->st_rows[i] * (size_t)p->B, sizeof(tg_real))) ||
              !(p->out[i] = calloc((size_t)tr->st_rows[i] * (size_t)p->B, sizeof(tg_real)));
    if (oom) return tg_error(tr->ctx, TG_ERR_NOMEM, "out of memory for the batch buffers");
    return TG_OK;
}

/* Items grouped by length (file order within a group); when shuffling, each
 * group shuffled, cut into batches of up to B, and the batch order shuffled.
 * Depends only on (seed, epoch). */
void tgt_plan_epoch(tgt_plan *p, uint64_t seed, uint64_t epoch, int shuffle)
{
    const tg_trainset *s = p->set;
    p->filled = -1;
    if (s->kind == TGT_TEXT) return;
    uint64_t st = seed * 0x2545f4914f6cdd1dull + epoch + 1;
    int n = s->n_items;
    for (int i = 0; i < n; i++) p->order[i] = i;
    for (int i = 1; i < n; i++) {
        int v = p->order[i], j = i - 1;
        while (j >= 0 && s->items[p->order[j]].steps > s->items[v].steps) p->order[j + 1] = p->order[j], j--;
        p->order[j + 1] = v;
    }
    p->n_batches = 0;
    for (int g = 0; g < n;) {
        int e = g;
        while (e < n && s->items[p->order[e]].steps == s->items[p->order[g]].steps) e++;
        for (int i = e - 1; shuffle && i > g; i--) {
            int j = g + (int)(splitmix(&st) % (uint64_t)(i - g + 1));
            int t = p->order[i];
            p->order[i] = p->order[j];
            p->order[j] = t;
        }
        for (int b = g; b < e; b += p->B) {
            p->start[p->n_batches] = b;
            p->count[p->n_batches] = e - b < p->B ? e - b : p->B;
            p->n_batches++;
        }
        g = e;
    }
    for (int i = p->n_batches - 1; shuffle && i > 0; i--) {
        int j = (int)(splitmix(&st) % (uint64_t)(i + 1));
        int a = p->start[i], c = p->count[i];
        p->start[i] = p->start[j], p->count[i] = p->count[j];
        p->start[j] = a, p->count[j] = c;
    }
}

/* Sequences: the whole batch k from step 0 (a `per: sequence` target: its
 * one block); text: steps [t0, t0 + steps) of the B streams from offset 0,
 * one-hot, or for an `index: vocab` variable the index, [1, B] a step. */
static void plan_fill(const tg_trainer *tr, tgt_plan *p, int k, int t0, int steps)
{
    const tg_trainset *s = p->set;
    int n_in = tr->n_in, n_tg = tr->n_tg;
    int lo, B = shard_cols(p, tgt_batch_cols(p, k), &lo); /* this plan's columns */
    if (s->kind == TGT_TEXT) {
        int V = s->vocab->n;
        int xi = tr->in_flags[0] & TG_VAR_INDEX, yi = tr->tg_flags[0] & TG_VAR_INDEX;
        size_t L = (size_t)p->T_max, Vx = xi ? 1 : (size_t)V, Vy = yi ? 1 : (size_t)V;
        memset(p->in[0], 0, (size_t)steps * Vx * (size_t)B * sizeof(tg_real));
        memset(p->tg[0], 0, (size_t)steps * Vy * (size_t)B * sizeof(tg_real));
        for (int t = 0; t < steps; t++)
            for (int j = 0; j < B; j++) {
                size_t at = (size_t)(lo + j) * L + (size_t)(t0 + t), a = (size_t)s->sym[at], b = (size_t)s->sym[at + 1];
                if (xi) p->in[0][(size_t)t * (size_t)B + (size_t)j] = (tg_real)a;
                else p->in[0][((size_t)t * Vx + a) * (size_t)B + (size_t)j] = 1;
                if (yi) p->tg[0][(size_t)t * (size_t)B + (size_t)j] = (tg_real)b;
                else p->tg[0][((size_t)t * Vy + b) * (size_t)B + (size_t)j] = 1;
            }
        return;
    }
    int T = tgt_batch_steps(p, k), nv = n_in + n_tg;
    for (int j = 0; j < B; j++) {
        const tgt_item *it = &s->items[p->order[p->start[k] + lo + j]];
        int b = s->seq_batch[it->seq];
        for (int v = 0; v < nv; v++) {
            int rows = s->rows[v];
            const tg_real *src = s->vals[(size_t)it->seq * (size_t)nv + (size_t)v];
            tg_real *dst = v < n_in ? p->in[v] : p->tg[v - n_in];
            int once = v >= n_in && (tr->tg_flags[v - n_in] & TG_VAR_PER_SEQUENCE); /* one block, not one per step */
            for (int t = 0; t < (once ? 1 : T); t++)
                for (int r = 0; r < rows; r++)
                    dst[((size_t)t * (size_t)rows + (size_t)r) * (size_t)B + (size_t)j] =
                        src[((size_t)t * (size_t)rows + (size_t)r) * (size_t)b + (size_t)it->col];
        }
    }
    p->filled = k;
}

uint64_t tgt_fingerprint(const tg_trainset *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 0x100000001b3ull)
    MIX(s->kind);
    if (s->kind == TGT_TEXT) {
        MIX(s->n_sym);
        for (size_t i = 0; i < s->n_sym; i++) MIX(s->sym[i]);
    } else {
        MIX(s->n_items);
        for (int i = 0; i < s->n_items; i++) MIX(s->items[i].steps);
    }
#undef MIX
    return h;
}

/* ---- the trainer ----------------------------------------------------------- */

tg_trainer *tg_trainer_new(const tg_model *m, tg_params *ps, const tg_train_opts *opts)
{
    if (!m) return NULL;
    tg_ctx *ctx = m->ctx;
    tg_train_opts o = opts ? *opts : tg_train_defaults();
    const char *bad = NULL;
    if (!ps) bad = "params are required";
    else if (!tg_model_has_loss(m)) bad = "the model has no 'loss', so there is nothing to train";
    else if (o.epochs < 0) bad = "epochs must be >= 0";
    else if (o.batch < 0 || o.batch > TGM_MAX_BATCH) bad = "batch must be from 0 to 65536";
    else if (o.bptt < -1 || o.bptt > TGM_MAX_STEPS) bad = "bptt must be from -1 to 1000000";
    else if (o.accumulate < 1 || o.accumulate > 1000000) bad = "accumulate must be from 1 to 1000000";
    else if ((unsigned)o.reduction > TG_REDUCE_SUM) bad = "unknown reduction";
    else if ((unsigned)o.schedule > TG_SCHED_PLATEAU) bad = "unknown schedule";
    else if (o.warmup < 0) bad = "warmup must be >= 0";
    else if (!(o.gamma >= 0 && o.gamma <= 1)) bad = "gamma must be from 0 to 1";
    else if (o.step_size < 1) bad = "step_size must be >= 1";
    else if (o.plateau_patience < 0) bad = "plateau_patience must be >= 0";
    else if (!(o.target >= 0) || isinf(o.target)) bad = "target must be a finite number >= 0";
    else if (o.patience < 0) bad = "patience must be >= 0";
    if (bad) {
        tg_error(ctx, TG_ERR_ARG, "tg_trainer_new: %s", bad);
        return NULL;
    }
    if (o.gamma == 0) o.gamma = o.schedule == TG_SCHED_EXP ? 0.99 : 0.1;
    tg_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    tr->ctx = ctx;
    tr->m = m;
    tr->ps = ps;
    tr->o = o;
    tr->plan_epoch = -1;
    tr->valid_loss = tr->best_loss = tr->plateau_best = tr->first_epoch_loss = tr->last_epoch_loss = NAN;
    tr->lr_factor = 1;
    tr->n_in = tg_model_count(m, TG_ROLE_INPUT);
    tr->n_tg = tg_model_count(m, TG_ROLE_TARGET);
    tr->n_st = tg_model_count(m, TG_ROLE_STATE);
    tr->st_rows = calloc((size_t)tr->n_st + 1, sizeof *tr->st_rows);
    tr->in_flags = calloc((size_t)tr->n_in + 1, sizeof *tr->in_flags);
    tr->tg_flags = calloc((size_t)tr->n_tg + 1, sizeof *tr->tg_flags);
    for (int i = 0; tr->st_rows && i < tr->n_st; i++) tg_model_var(m, TG_ROLE_STATE, i, &tr->st_rows[i], NULL);
    for (int i = 0; tr->in_flags && i < tr->n_in; i++) tr->in_flags[i] = tg_model_var_flags(m, TG_ROLE_INPUT, i, NULL);
    for (int i = 0; tr->tg_flags && i < tr->n_tg; i++) tr->tg_flags[i] = tg_model_var_flags(m, TG_ROLE_TARGET, i, NULL);
    if (!tr->st_rows || !tr->in_flags || !tr->tg_flags || !(tr->opt = tg_optim_new(ps, &o.optim)) || !(tr->tape = tg_tape_new(ctx))) {
        if (!tg_status_last(ctx)) tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        tg_trainer_free(tr);
        return NULL;
    }
    tg_tape_keep_grads(tr->tape, 0); /* training reads parameter gradients only */
    tr->n_scalars = tg_params_total(ps);
    tr->prog.valid_loss = tr->prog.best_valid_loss = tr->prog.loss = tr->prog.step_loss = NAN;
    tr->prog.lr = o.optim.lr;
    return tr;
}

void tg_trainer_free(tg_trainer *tr)
{
    if (!tr) return;
    tgt_plan_free(&tr->plan, tr->n_in, tr->n_tg, tr->n_st);
    tg_optim_free(tr->opt);
    tg_tape_free(tr->tape);
    free(tr->st_rows);
    free(tr->in_flags), free(tr->tg_flags);
    free(tr->best);
    free(tr);
}

static tg_status check_set(tg_trainer *tr, const tg_trainset *s)
{
    const tg_model *m = tr->m;
    if (s->kind == TGT_TEXT) {
        /* one-hot over the vocabulary or an index into it (vi, vt: the declared vocab) */
        int V = s->vocab->n, ri = 0, rt = 0, vi = 0, vt = 0;
        if (tr->n_in == 1) tg_model_var(m, TG_ROLE_INPUT, 0, &ri, NULL), tg_model_var_flags(m, TG_ROLE_INPUT, 0, &vi);
        if (tr->n_tg == 1) tg_model_var(m, TG_ROLE_TARGET, 0, &rt, NULL), tg_model_var_flags(m, TG_ROLE_TARGET, 0, &vt);
        if (tr->n_in != 1 || tr->n_tg != 1 || (vi ? vi : ri) != V || (vt ? vt : rt) != V ||
            (tr->tg_flags[0] & TG_VAR_PER_SEQUENCE))
            return tg_error(tr->ctx, TG_ERR_SHAPE, "%s: a character model has one input and one target of size vocab "
                            "(%d here); this one has %d inputs and %d targets", s->name, V, tr->n_in, tr->n_tg);
        return TG_OK;
    }
    if (s->n_in != tr->n_in || s->n_tg != tr->n_tg)
        return tg_error(tr->ctx, TG_ERR_SHAPE, "%s: the data has %d inputs and %d targets; model '%s' has %d and %d",
                        s->name, s->n_in, s->n_tg, tg_model_name(m), tr->n_in, tr->n_tg);
    for (int v = 0; v < s->n_in + s->n_tg; v++) {
        int r;
        tg_model_var(m, v < s->n_in ? TG_ROLE_INPUT : TG_ROLE_TARGET, v < s->n_in ? v : v - s->n_in, &r, NULL);
        if (r != s->rows[v])
            return tg_error(tr->ctx, TG_ERR_SHAPE, "%s: the data was read for another model (sizes differ)", s->name);
    }
    return TG_OK;
}

/* The training plan computes the trainer's shard of each batch. */
static tg_status plan_shard(tg_trainer *tr, tgt_plan *p)
{
    if (tr->shard_size <= 1) return TG_OK;
    p->rank = tr->shard_rank;
    p->size = tr->shard_size;
    if (!(p->carry_loc = calloc((size_t)tr->n_st + 1, sizeof *p->carry_loc)))
        return tg_error(tr->ctx, TG_ERR_NOMEM, "out of memory for the batch buffers");
    for (int i = 0; i < tr->n_st; i++)
        if (!(p->carry_loc[i] = malloc((size_t)tr->st_rows[i] * (size_t)p->B * sizeof(tg_real))))
            return tg_error(tr->ctx, TG_ERR_NOMEM, "out of memory for the batch buffers");
    return TG_OK;
}

tg_status tg_trainer_set_shard(tg_trainer *tr, int rank, int size)
{
    if (!tr) return TG_ERR_ARG;
    if (size < 1 || rank < 0 || rank >= size)
        return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_set_shard: rank %d of %d is not from 0 to size - 1", rank, size);
    if (tr->train) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_set_shard: call it before tg_trainer_set_data");
    tr->shard_rank = rank;
    tr->shard_size = size;
    return TG_OK;
}

tg_status tg_trainer_gather(tg_trainer *tr)
{
    if (!tr) return TG_ERR_ARG;
    tgt_plan *p = &tr->plan;
    /* a checkpoint keeps the carry only within a batch (chunk > 0) */
    if (!tr->train || p->size <= 1 || !p->has_carry || !tr->pos.chunk || !tr->reduce_fn) return TG_OK;
    int all = tgt_batch_cols(p, tr->pos.batch), lo, cols = shard_cols(p, all, &lo);
    for (int i = 0; i < tr->n_st; i++) {
        /* own columns only (a second gather must not add them twice), then the sum */
        tg_real *c = p->carry[i];
        size_t rows = (size_t)tr->st_rows[i];
        for (size_t r = 0; r < rows; r++) {
            tg_real *row = c + r * (size_t)all;
            memset(row, 0, (size_t)lo * sizeof(tg_real));
            memset(row + lo + cols, 0, (size_t)(all - lo - cols) * sizeof(tg_real));
        }
        if (tr->reduce_fn(c, rows * (size_t)all, NULL, 0, tr->reduce_user))
            return tg_error(tr->ctx, TG_ERR_IO, "step %llu: gathering the carried states failed",
                            (unsigned long long)tr->pos.step);
    }
    return TG_OK;
}

tg_status tg_trainer_set_data(tg_trainer *tr, const tg_trainset *train, const tg_trainset *valid)
{
    if (!tr) return TG_ERR_ARG;
    if (!train) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_set_data: a training set is required");
    if (check_set(tr, train) || (valid && check_set(tr, valid))) return tg_status_last(tr->ctx);
    if (valid && train->kind != valid->kind)
        return tg_error(tr->ctx, TG_ERR_SHAPE, "%s: validation data must be of the training data's kind (%s)",
                        valid->name, train->kind == TGT_TEXT ? "text" : "sequences");
    if (valid && valid->kind == TGT_TEXT && valid->vocab->n != train->vocab->n)
        return tg_error(tr->ctx, TG_ERR_SHAPE, "%s: the validation text has another vocabulary than the training text",
                        valid->name);
    tgt_plan_free(&tr->plan, tr->n_in, tr->n_tg, tr->n_st);
    tr->train = train;
    tr->valid = valid;
    if (tgt_plan_init(tr, &tr->plan, train) || plan_shard(tr, &tr->plan)) {
        tgt_plan_free(&tr->plan, tr->n_in, tr->n_tg, tr->n_st);
        tr->train = NULL;
        return tg_status_last(tr->ctx);
    }
    /* steps per epoch (the plan's chunk counts do not depend on the shuffle) */
    tgt_plan_epoch(&tr->plan, tr->o.seed, 0, 1);
    tr->plan_epoch = 0;
    uint64_t chunks = 0;
    for (int k = 0; k < tr->plan.n_batches; k++) chunks += (uint64_t)tgt_batch_chunks(&tr->plan, k);
    tr->per_epoch = (chunks + (uint64_t)tr->o.accumulate - 1) / (uint64_t)tr->o.accumulate;
    tr->total_steps = tr->per_epoch * (uint64_t)tr->o.epochs;
    if (tr->o.max_steps && tr->o.max_steps < tr->total_steps) tr->total_steps = tr->o.max_steps;
    memset(&tr->pos, 0, sizeof tr->pos);
    tr->end = TG_END_NONE;
    tr->prog.epochs = tr->o.epochs;
    tr->prog.total_steps = tr->total_steps;
    tr->prog.epoch = 1;
    return TG_OK;
}

/* The learning rate of the step after `t` steps (see tapegrad.h). */
static double schedule_lr(const tg_trainer *tr, uint64_t t)
{
    const tg_train_opts *o = &tr->o;
    double base = o->optim.lr;
    if ((uint64_t)o->warmup > t) return base * (double)(t + 1) / (double)o->warmup * tr->lr_factor;
    double s = (double)(t - (uint64_t)o->warmup);
    switch (o->schedule) {
    case TG_SCHED_STEP: return base * pow(o->gamma, floor(s / o->step_size));
    case TG_SCHED_EXP: return base * pow(o->gamma, s);
    case TG_SCHED_COSINE: {
        double T = (double)(tr->per_epoch * (uint64_t)o->epochs) - o->warmup;
        if (T <= 0) return base;
        return base * (1 + cos(3.14159265358979323846 * (s < T ? s : T) / T)) / 2;
    }
    case TG_SCHED_PLATEAU: return base * tr->lr_factor;
    default: return base;
    }
}

/* Evaluation: records u's steps without a sweep and sums the loss into *raw;
 * leaves the final states in p->out.  Under a memory budget it records
 * segments of the last training sweep's segment length (scaled to the
 * columns; one step before any sweep), the states carried from one to the
 * next, so the tape never holds more than a training sweep's segment; a
 * model with a reverse state is recorded whole, as its sweeps are. */
static tg_status forward_only(tg_trainer *tr, tgt_plan *p, tg_unroll *u, int text, double *raw)
{
    int steps = u->steps, seg = steps, reverse = 0;
    /* a state that runs in reverse starts at the end: the sequence is recorded whole */
    for (int i = 0; i < tr->n_st; i++) reverse |= tg_model_var_flags(tr->m, TG_ROLE_STATE, i, NULL) & TG_VAR_REVERSE;
    if (tr->o.memory && !reverse) {
        long long s = tr->prog.plan.segment > 0 ? tr->prog.plan.segment : 1;
        if (tr->plan_cols > u->batch) s = s * tr->plan_cols / u->batch;
        seg = s < 1 ? 1 : s < steps ? (int)s : steps;
    }
    const tg_real *const *st0 = u->state0;
    const tg_real *carried[TGM_MAX_DECLS];
    int t_first = u->t0;
    if (text) u->seq_steps = steps; /* a text chunk is the sequence `loss_at: last` sees */
    *raw = 0;
    for (int k = 0; k < steps; k += seg) {
        tg_tape_reset(tr->tape);
        u->t0 = t_first + k;
        u->steps = steps - k < seg ? steps - k : seg;
        u->state0 = k ? (tr->n_st ? carried : NULL) : st0;
        tg_status st = tg_model_unroll(tr->m, tr->tape, u);
        if (st) return st;
        double l = u->loss ? tg_item(u->loss) : 0;
        *raw = k ? *raw + l : l;
        for (int i = 0; i < tr->n_st; i++) {
            memcpy(p->out[i], tg_data(u->state[i]), (size_t)tr->st_rows[i] * (size_t)u->batch * sizeof(tg_real));
            carried[i] = p->out[i];
        }
        if (!isfinite(l)) break; /* the tape holds the segment with the first non-finite value */
    }
    return TG_OK;
}

/* After a chunk whose loss (or sweep) was not finite: the first non-finite
 * value, as tg_tape_check_finite() words it, into where[]; TG_ERR_NONFINITE
 * if found.  Under a budget a swept tape holds only its first segment, so
 * the chunk is recorded again with every value checked as it is computed
 * (anomaly mode stops at the first, whichever segment it is in). */
static tg_status locate_nonfinite(tg_trainer *tr, tg_unroll *u, int backward, char *where, size_t len)
{
    where[0] = 0;
    tg_status f = tg_tape_check_finite(tr->tape, NULL);
    if (!f && backward && tr->o.memory) {
        double loss;
        tg_tape_reset(tr->tape);
        tg_tape_detect_anomaly(tr->tape, 1);
        tg_status a = tg_model_backprop(tr->m, tr->tape, u, tr->o.memory, NULL, &loss, NULL);
        tg_tape_detect_anomaly(tr->tape, 0);
        if (a == TG_ERR_NONFINITE && !(f = tg_tape_check_finite(tr->tape, NULL))) {
            snprintf(where, len, "%s", tg_errmsg(tr->ctx)); /* anomaly mode's own words */
            return TG_ERR_NONFINITE;
        }
    }
    if (f) { /* "first non-finite value: ..." follows "the first non-finite value: " */
        const char *msg = tg_errmsg(tr->ctx), *pre = "first non-finite value: ";
        snprintf(where, len, "%s", strncmp(msg, pre, strlen(pre)) ? msg : msg + strlen(pre));
    }
    return f;
}

/* Records chunk c of batch k of plan p, runs backward when asked, and
 * carries the states on.  *raw gets the summed loss, *count what MEAN
 * divides it by, *epoch_count what the epoch's mean divides by. */
static tg_status run_chunk(tg_trainer *tr, tgt_plan *p, int k, int c, int backward, double *raw, double *count,
                           double *epoch_count)
{
    const tg_trainset *s = p->set;
    int text = s->kind == TGT_TEXT;
    int T = tgt_batch_steps(p, k), all = tgt_batch_cols(p, k), lo, cols = shard_cols(p, all, &lo);
    int t0 = c * p->K, steps = T - t0 < p->K ? T - t0 : p->K;
    if (c == 0) p->has_carry = 0;
    if (cols == 0) { /* a shard with no column of a short batch: it adds nothing */
        *raw = *count = 0;
        *epoch_count = text ? (double)steps * all : (c == 0 ? all : 0);
        p->has_carry = 1;
        return TG_OK;
    }
    if (text) plan_fill(tr, p, k, t0, steps);
    else if (p->filled != k) plan_fill(tr, p, k, 0, T);
    const tg_real *inp[TGT_MAX_VARS], *tgp[TGT_MAX_VARS], *st0[TGM_MAX_DECLS];
    for (int i = 0; i < tr->n_in; i++) inp[i] = p->in[i];
    for (int i = 0; i < tr->n_tg; i++) tgp[i] = p->tg[i];
    for (int i = 0; i < tr->n_st; i++) {
        st0[i] = p->has_carry ? p->carry[i] : NULL;
        if (p->has_carry && p->size > 1) { /* this shard's columns of the carried state */
            for (int r = 0; r < tr->st_rows[i]; r++)
                memcpy(p->carry_loc[i] + (size_t)r * (size_t)cols, p->carry[i] + (size_t)r * (size_t)all + (size_t)lo,
                       (size_t)cols * sizeof(tg_real));
            st0[i] = p->carry_loc[i];
        }
    }
    tg_tape_set_training(tr->tape, backward); /* dropout in training steps only, not in evaluation */
    tg_unroll u = {
        .params = tr->ps,
        .batch = cols,
        .t0 = text ? 0 : t0,
        .steps = steps,
        .seq_steps = text ? 0 : T,
        .inputs = inp,
        .targets = tgp,
        .state0 = tr->n_st ? st0 : NULL,
    };
    tg_status st;
    *raw = NAN;
    if (backward) {
        /* one call records, sweeps (in segments under a budget) and leaves the final state */
        tg_real *out[TGM_MAX_DECLS];
        for (int i = 0; i < tr->n_st; i++) out[i] = p->out[i];
        st = tg_model_backprop(tr->m, tr->tape, &u, tr->o.memory, tr->n_st ? out : NULL, raw, &tr->prog.plan);
        tr->plan_cols = cols;
        /* a non-finite loss stops the sweep before *raw is set: one recording still
         * holds it; under a budget a recording without a sweep sums it again */
        if (st == TG_ERR_NONFINITE && !tr->o.memory && u.loss) *raw = tg_item(u.loss);
        else if (st == TG_ERR_NONFINITE) {
            tg_unroll v = u; /* forward_only moves its range; u is recorded again below */
            if ((st = forward_only(tr, p, &v, text, raw)) == TG_OK) st = TG_ERR_NONFINITE;
        }
    } else {
        st = forward_only(tr, p, &u, text, raw);
    }
    if (st && st != TG_ERR_NONFINITE) return st;
    *count = text ? (double)steps * cols : (double)cols;
    /* the whole batch's: every shard counts the epoch alike */
    *epoch_count = text ? (double)steps * all : (c == 0 ? all : 0);
    if (st || !isfinite(*raw)) {
        /* where the first non-finite value came from */
        char where[1024];
        tg_status f = locate_nonfinite(tr, &u, backward, where, sizeof where);
        return tg_error(tr->ctx, TG_ERR_NONFINITE, "step %llu: the loss is %g%s%s%s", (unsigned long long)tr->pos.step + 1,
                        *raw, f ? "; the first non-finite value: " : "", where,
                        tr->pos.step ? " (a smaller learning rate or gradient clipping may help)"
                                     : " (at the first step: the model overflows with its initial parameters)");
    }
    for (int i = 0; i < tr->n_st; i++) {
        if (p->size == 1) {
            memcpy(p->carry[i], p->out[i], (size_t)tr->st_rows[i] * (size_t)cols * sizeof(tg_real));
            continue;
        }
        for (int r = 0; r < tr->st_rows[i]; r++)
            memcpy(p->carry[i] + (size_t)r * (size_t)all + (size_t)lo, p->out[i] + (size_t)r * (size_t)cols,
                   (size_t)cols * sizeof(tg_real));
    }
    p->has_carry = 1;
    return TG_OK;
}

static void ensure_plan(tg_trainer *tr)
{
    if (tr->plan_epoch != tr->pos.epoch) {
        tgt_plan_epoch(&tr->plan, tr->o.seed, (uint64_t)tr->pos.epoch, 1);
        tr->plan_epoch = tr->pos.epoch;
    }
}

/* ended: the epoch closed with the last step (pos is already past it). */
static void fill_progress(tg_trainer *tr, int epoch_end, int ended)
{
    tg_train_progress *p = &tr->prog;
    p->epoch = tr->pos.epoch + (ended ? 0 : 1);
    p->epochs = tr->o.epochs;
    p->step = tr->pos.step;
    p->total_steps = tr->total_steps;
    p->loss = ended ? tr->last_epoch_loss
              : tr->pos.epoch_count > 0 ? tr->pos.epoch_loss / tr->pos.epoch_count : tr->last_epoch_loss;
    p->valid_loss = tr->valid_loss;
    p->best_valid_loss = tr->best_loss;
    p->seconds = tr->pos.seconds + (tr->started ? tgt_now() - tr->t0 : 0);
    p->epoch_end = epoch_end;
}

static int report(tg_trainer *tr, int epoch_end, int ended)
{
    fill_progress(tr, epoch_end, ended);
    if (tr->progress_fn && tr->progress_fn(&tr->prog, tr->progress_user)) tr->stop = 1;
    return 0;
}

static tg_status end_epoch(tg_trainer *tr)
{
    double mean = tr->pos.epoch_loss / (tr->pos.epoch_count > 0 ? tr->pos.epoch_count : 1);
    tr->last_epoch_loss = mean;
    if (isnan(tr->first_epoch_loss)) tr->first_epoch_loss = mean;
    double metric = mean;
    if (tr->valid) {
        tg_status st = tg_trainer_evaluate(tr, tr->valid, &tr->valid_loss);
        if (st) return st;
        metric = tr->valid_loss;
    }
    if (tr->o.patience > 0 || tr->valid) {
        if (isnan(tr->best_loss) || metric < tr->best_loss) {
            tr->best_loss = metric;
            tr->bad_epochs = 0;
            if (tr->o.patience > 0) {
                if (!tr->best && !(tr->best = malloc((tr->n_scalars ? tr->n_scalars : 1) * sizeof(tg_real))))
                    return tg_error(tr->ctx, TG_ERR_NOMEM, "out of memory");
                memcpy(tr->best, tg_params_values(tr->ps), tr->n_scalars * sizeof(tg_real));
            }
        } else if (++tr->bad_epochs >= tr->o.patience && tr->o.patience > 0) {
            memcpy(tg_params_values(tr->ps), tr->best, tr->n_scalars * sizeof(tg_real));
            tr->end = TG_END_PATIENCE;
        }
    }
    if (tr->o.schedule == TG_SCHED_PLATEAU) {
        /* ReduceLROnPlateau: mode min, threshold 1e-4 relative, cooldown 0 */
        if (isnan(tr->plateau_best) || metric < tr->plateau_best * (1 - 1e-4)) {
            tr->plateau_best = metric;
            tr->plateau_bad = 0;
        } else if (++tr->plateau_bad > tr->o.plateau_patience) {
            tr->lr_factor *= tr->o.gamma;
            tr->plateau_bad = 0;
        }
    }
    if (tr->o.target > 0 && mean < tr->o.target && tr->end == TG_END_NONE) tr->end = TG_END_TARGET;
    tr->pos.epoch++;
    tr->pos.batch = tr->pos.chunk = 0;
    tr->pos.epoch_loss = tr->pos.epoch_count = 0;
    tr->plan.has_carry = 0;
    return TG_OK;
}

tg_status tg_trainer_step(tg_trainer *tr)
{
    if (!tr) return TG_ERR_ARG;
    if (!tr->train) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_step: no data (call tg_trainer_set_data)");
    if (tr->pos.epoch >= tr->o.epochs) {
        tr->end = TG_END_EPOCHS;
        return TG_OK;
    }
    if (!tr->started) tr->t0 = tgt_now(), tr->started = 1;
    ensure_plan(tr);
    tgt_plan *p = &tr->plan;
    tg_params_zero_grad(tr->ps);
    double stats[2] = {0, 0}, ecount_sum = 0;
    for (int a = 0; a < tr->o.accumulate && tr->pos.batch < p->n_batches; a++) {
        double raw, count, ecount;
        tg_status st = run_chunk(tr, p, tr->pos.batch, tr->pos.chunk, 1, &raw, &count, &ecount);
        if (st) return st;
        stats[0] += raw;
        stats[1] += count;
        ecount_sum += ecount;
        if (++tr->pos.chunk == tgt_batch_chunks(p, tr->pos.batch)) tr->pos.batch++, tr->pos.chunk = 0;
    }
    size_t n = tg_params_total(tr->ps);
    tg_real *g = tg_params_grads(tr->ps);
    if (tr->reduce_fn && tr->reduce_fn(g, n, stats, 2, tr->reduce_user))
        return tg_error(tr->ctx, TG_ERR_IO, "step %llu: gradient reduction failed", (unsigned long long)tr->pos.step + 1);
    /* the epoch's loss from the summed stats, so that every shard decides alike */
    tr->pos.epoch_loss += stats[0];
    tr->pos.epoch_count += ecount_sum;
    if (tr->o.reduction == TG_REDUCE_MEAN && stats[1] > 0 && stats[1] != 1) {
        tg_real inv = (tg_real)(1.0 / stats[1]);
        for (size_t i = 0; i < n; i++) g[i] *= inv;
    }
    double lr = schedule_lr(tr, tr->pos.step), norm = 0;
    tg_optim_set_lr(tr->opt, lr);
    tg_status st = tg_optim_step(tr->opt, &norm);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", tg_errmsg(tr->ctx));
        return tg_error(tr->ctx, st, "step %llu: %s", (unsigned long long)tr->pos.step + 1, msg);
    }
    tr->pos.step++;
    tr->prog.step_loss = stats[1] > 0 ? stats[0] / stats[1] : stats[0];
    tr->prog.lr = lr;
    tr->prog.grad_norm = norm;
    /* the epoch's end is settled before the reports, so that a callback that
     * saves a checkpoint saves a place where the run can go on */
    int ended = tr->pos.batch >= p->n_batches;
    if (ended && (st = end_epoch(tr))) return st;
    report(tr, 0, ended);
    if (ended) report(tr, 1, 1);
    return TG_OK;
}

tg_status tg_trainer_epoch(tg_trainer *tr)
{
    if (!tr) return TG_ERR_ARG;
    int e = tr->pos.epoch;
    while (tr->pos.epoch == e && e < tr->o.epochs && !tr->stop) {
        tg_status st = tg_trainer_step(tr);
        if (st) return st;
    }
    return TG_OK;
}

tg_status tg_trainer_run(tg_trainer *tr)
{
    if (!tr) return TG_ERR_ARG;
    if (!tr->train) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_run: no data (call tg_trainer_set_data)");
    if (tr->end == TG_END_EPOCHS || tr->end == TG_END_MAX_STEPS || tr->end == TG_END_STOPPED) tr->end = TG_END_NONE;
    for (;;) {
        if (tr->end != TG_END_NONE) break;
        if (tr->stop) {
            tr->stop = 0;
            tr->end = TG_END_STOPPED;
            break;
        }
        if (tr->pos.epoch >= tr->o.epochs) {
            tr->end = TG_END_EPOCHS;
            break;
        }
        if (tr->o.max_steps && tr->pos.step >= tr->o.max_steps) {
            tr->end = TG_END_MAX_STEPS;
            break;
        }
        tg_status st = tg_trainer_step(tr);
        if (st) return st;
    }
    return TG_OK;
}

tg_train_end tg_trainer_end(const tg_trainer *tr) { return tr ? tr->end : TG_END_NONE; }
void tg_trainer_stop(tg_trainer *tr)
{
    if (tr) tr->stop = 1;
}
void tg_trainer_set_progress(tg_trainer *tr, tg_train_progress_fn fn, void *user)
{
    if (tr) tr->progress_fn = fn, tr->progress_user = user;
}
void tg_trainer_set_reduce(tg_trainer *tr, tg_train_reduce_fn fn, void *user)
{
    if (tr) tr->reduce_fn = fn, tr->reduce_user = user;
}
const tg_train_progress *tg_trainer_progress(const tg_trainer *tr)
{
    if (!tr) return NULL;
    fill_progress((tg_trainer *)tr, 0, tr->pos.batch == 0 && tr->pos.chunk == 0 && tr->pos.epoch > 0);
    return &tr->prog;
}
const tg_train_opts *tg_trainer_opts(const tg_trainer *tr) { return tr ? &tr->o : NULL; }
tg_optim *tg_trainer_optim(tg_trainer *tr) { return tr ? tr->opt : NULL; }

tg_status tg_trainer_evaluate(tg_trainer *tr, const tg_trainset *set, double *loss)
{
    if (!tr) return TG_ERR_ARG;
    if (!set || !loss) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_evaluate: a set and loss are required");
    if (check_set(tr, set)) return tg_status_last(tr->ctx);
    tgt_plan p;
    tg_status st = tgt_plan_init(tr, &p, set);
    if (!st) {
        tgt_plan_epoch(&p, 0, 0, 0);
        double sum = 0, cnt = 0;
        uint64_t step = tr->pos.step;
        for (int k = 0; !st && k < p.n_batches; k++)
            for (int c = 0; !st && c < tgt_batch_chunks(&p, k); c++) {
                double raw, count, ecount;
                st = run_chunk(tr, &p, k, c, 0, &raw, &count, &ecount);
                sum += raw;
                cnt += ecount;
            }
        tr->pos.step = step;
        *loss = sum / (cnt > 0 ? cnt : 1);
    }
    tgt_plan_free(&p, tr->n_in, tr->n_tg, tr->n_st);
    return st;
}
