/* checkpoint.c — what a trainer keeps in its one-file checkpoint (the
 * container is ckpt_file.c) and reading it back.  Sections:
 *   model     the model file's path and text, and every dim's value
 *   opts      the run's tg_train_opts
 *   params    per parameter: name, rows, cols, values
 *   optim     steps taken, then each state buffer (name, values)
 *   position  step, epoch, batch, chunk, the epoch's loss sums, seconds, the
 *             data's fingerprint, validation / patience / plateau state, and
 *             the carried states
 *   vocab     a text run's code points
 *   best      the best parameters of a run with patience
 *   rng       the context's generator (xoshiro256**, 4 words): dropout's
 *             masks go on where they stopped (absent in older files)
 * Every number read back is checked against the run it resumes before
 * anything is changed, with a message naming the file and the field. */
#include "train_internal.h"
#include "ckpt_file.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_CONTENT 1  /* the trainer's layout of the sections, inside container version 1 */

struct tg_checkpoint {
    tg_ctx *ctx;
    tgc_file *f;
    char *path;
    char *model_path;        /* the model file's path when it was trained */
    tg_vocab *vocab;
};

static void put_opts(tgc_buf *b, const tg_train_opts *o)
{
    const tg_optim_opts *q = &o->optim;
    tgc_put_u32(b, (uint32_t)q->kind);
    tgc_put_f64(b, q->lr), tgc_put_f64(b, q->momentum), tgc_put_u8(b, (uint8_t)q->nesterov);
    tgc_put_f64(b, q->beta1), tgc_put_f64(b, q->beta2), tgc_put_f64(b, q->rho), tgc_put_f64(b, q->eps);
    tgc_put_f64(b, q->weight_decay), tgc_put_u8(b, (uint8_t)q->decoupled), tgc_put_f64(b, q->clip);
    /* clip_value, eps_inside, then a slot kept for Adagrad's initial accumulator (0 today) */
    tgc_put_f64(b, q->clip_value), tgc_put_u8(b, (uint8_t)q->eps_inside), tgc_put_f64(b, 0);
    tgc_put_i64(b, o->epochs), tgc_put_u64(b, o->max_steps), tgc_put_i64(b, o->batch), tgc_put_i64(b, o->bptt);
    tgc_put_i64(b, o->accumulate), tgc_put_u32(b, (uint32_t)o->reduction), tgc_put_u32(b, (uint32_t)o->schedule);
    tgc_put_i64(b, o->warmup), tgc_put_f64(b, o->gamma), tgc_put_i64(b, o->step_size);
    tgc_put_i64(b, o->plateau_patience), tgc_put_f64(b, o->target), tgc_put_i64(b, o->patience);
    tgc_put_u64(b, o->seed);
    tgc_put_u64(b, (uint64_t)o->memory); /* last: a file from before it has none (no budget) */
}

/* An int field in [lo, hi], else the cursor fails naming it. */
static int64_t get_int(tgc_cur *c, const char *field, int64_t lo, int64_t hi)
{
    int64_t v = tgc_get_i64(c);
    if (!c->err && (v < lo || v > hi)) {
        char what[160];
        snprintf(what, sizeof what, "field '%s' is %lld, outside %lld..%lld", field, (long long)v, (long long)lo,
                 (long long)hi);
        tgc_cur_fail(c, what);
        return lo;
    }
    return v;
}

/* A double field that must be finite (and >= lo when lo is not NAN). */
static double get_num(tgc_cur *c, const char *field, double lo, int allow_nan)
{
    double v = tgc_get_f64(c);
    if (c->err) return 0;
    if ((isnan(v) && !allow_nan) || isinf(v) || (!isnan(lo) && !isnan(v) && v < lo)) {
        char what[160];
        snprintf(what, sizeof what, "field '%s' is %g, not a finite number%s", field, v, isnan(lo) ? "" : " >= 0");
        tgc_cur_fail(c, what);
        return 0;
    }
    return v;
}

static uint32_t get_enum(tgc_cur *c, const char *field, uint32_t n)
{
    uint32_t v = tgc_get_u32(c);
    if (!c->err && v >= n) {
        char what[160];
        snprintf(what, sizeof what, "field '%s' is %u, not one of 0..%u", field, v, n - 1);
        tgc_cur_fail(c, what);
        return 0;
    }
    return v;
}

static void get_opts(tgc_cur *c, tg_train_opts *o)
{
    memset(o, 0, sizeof *o);
    tg_optim_opts *q = &o->optim;
    q->kind = (tg_optim_kind)get_enum(c, "opts.optimizer", TG_OPTIM_ADAGRAD + 1);
    q->lr = get_num(c, "opts.lr", 0, 0);
    q->momentum = get_num(c, "opts.momentum", 0, 0);
    q->nesterov = tgc_get_u8(c) != 0;
    q->beta1 = get_num(c, "opts.beta1", 0, 0);
    q->beta2 = get_num(c, "opts.beta2", 0, 0);
    q->rho = get_num(c, "opts.rho", 0, 0);
    q->eps = get_num(c, "opts.eps", 0, 0);
    q->weight_decay = get_num(c, "opts.weight_decay", 0, 0);
    q->decoupled = tgc_get_u8(c) != 0;
    q->clip = get_num(c, "opts.clip", 0, 0);
    q->clip_value = get_num(c, "opts.clip_value", 0, 0);
    q->eps_inside = tgc_get_u8(c) != 0;
    get_num(c, "opts.initial_accumulator", 0, 0);
    o->epochs = (int)get_int(c, "opts.epochs", 0, 100000000);
    o->max_steps = tgc_get_u64(c);
    o->batch = (int)get_int(c, "opts.batch", 0, TGM_MAX_BATCH);
    o->bptt = (int)get_int(c, "opts.bptt", -1, TGM_MAX_STEPS);
    o->accumulate = (int)get_int(c, "opts.accumulate", 1, 1000000);
    o->reduction = (tg_reduction)get_enum(c, "opts.reduction", 2);
    o->schedule = (tg_schedule)get_enum(c, "opts.schedule", 5);
    o->warmup = (int)get_int(c, "opts.warmup", 0, 2000000000);
    o->gamma = get_num(c, "opts.gamma", 0, 0);
    o->step_size = (int)get_int(c, "opts.step_size", 1, 2000000000);
    o->plateau_patience = (int)get_int(c, "opts.plateau_patience", 0, 2000000000);
    o->target = get_num(c, "opts.target", 0, 0);
    o->patience = (int)get_int(c, "opts.patience", 0, 2000000000);
    o->seed = tgc_get_u64(c);
    if (!c->err && c->pos < c->len) { /* files saved before the memory budget end here */
        uint64_t mem = tgc_get_u64(c);
#if SIZE_MAX < UINT64_MAX
        if (!c->err && mem > (uint64_t)SIZE_MAX) tgc_cur_fail(c, "field 'opts.memory' does not fit this machine's size_t");
#endif
        o->memory = (size_t)mem;
    }
}

/* ---- saving ---------------------------------------------------------------- */

static void put_params(tgc_buf *b, const tg_model *m, tg_params *ps, const tg_real *values)
{
    int np = tg_model_count(m, TG_ROLE_PARAM);
    tgc_put_u32(b, (uint32_t)np);
    for (int i = 0; i < np; i++) {
        int r, c;
        const char *name = tg_model_var(m, TG_ROLE_PARAM, i, &r, &c);
        tg_tensor *t = tg_params_find(ps, name);
        tgc_put_str(b, name, strlen(name));
        tgc_put_u32(b, (uint32_t)r);
        tgc_put_u32(b, (uint32_t)c);
        size_t off = (size_t)(tg_data(t) - tg_params_values(ps));
        tgc_put_reals(b, (values ? values : tg_params_values(ps)) + off, tg_size(t));
    }
}

tg_status tg_trainer_save(tg_trainer *tr, const char *path)
{
    if (!tr) return TG_ERR_ARG;
    if (!path) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_save: path is NULL");
    const tg_model *m = tr->m;
    tgc_writer *w = tgc_writer_new();
    if (!w) return tg_error(tr->ctx, TG_ERR_NOMEM, "out of memory");
    tgc_buf b = {0};
    /* model */
    tgc_put_u32(&b, CKPT_CONTENT);
    tgc_put_str(&b, m->file, strlen(m->file));
    tgc_put_str(&b, m->text, m->text_len);
    int nd = tg_model_count(m, TG_ROLE_DIM);
    tgc_put_u32(&b, (uint32_t)nd);
    for (int i = 0; i < nd; i++) {
        int v;
        const char *name = tg_model_var(m, TG_ROLE_DIM, i, &v, NULL);
        tgc_put_str(&b, name, strlen(name));
        tgc_put_i64(&b, v);
    }
    tgc_writer_add(w, "model", &b);
    put_opts(&b, &tr->o);
    tgc_writer_add(w, "opts", &b);
    put_params(&b, m, tr->ps, NULL);
    tgc_writer_add(w, "params", &b);
    tgc_put_u64(&b, tg_optim_steps(tr->opt));
    int ns = tg_optim_state_count(tr->opt);
    tgc_put_u32(&b, (uint32_t)ns);
    for (int k = 0; k < ns; k++) {
        const char *sname;
        tg_real *buf = tg_optim_state(tr->opt, k, &sname);
        tgc_put_str(&b, sname, strlen(sname));
        tgc_put_reals(&b, buf, tr->n_scalars);
    }
    tgc_writer_add(w, "optim", &b);
    /* position */
    const tgt_pos *p = &tr->pos;
    tgc_put_u64(&b, p->step);
    tgc_put_i64(&b, p->epoch), tgc_put_i64(&b, p->batch), tgc_put_i64(&b, p->chunk);
    tgc_put_f64(&b, p->epoch_loss), tgc_put_f64(&b, p->epoch_count);
    tgc_put_f64(&b, p->seconds + (tr->started ? tgt_now() - tr->t0 : 0));
    tgc_put_u64(&b, tr->train ? tgt_fingerprint(tr->train) : 0);
    tgc_put_f64(&b, tr->valid_loss), tgc_put_f64(&b, tr->best_loss), tgc_put_f64(&b, tr->plateau_best);
    tgc_put_f64(&b, tr->lr_factor), tgc_put_f64(&b, tr->first_epoch_loss), tgc_put_f64(&b, tr->last_epoch_loss);
    tgc_put_i64(&b, tr->bad_epochs), tgc_put_i64(&b, tr->plateau_bad);
    int carry = tr->train && p->chunk > 0 && tr->plan.has_carry;
    tgc_put_u8(&b, (uint8_t)carry);
    if (carry) {
        int cols = tgt_batch_cols(&tr->plan, p->batch);
        tgc_put_u32(&b, (uint32_t)tr->n_st);
        for (int i = 0; i < tr->n_st; i++) {
            tgc_put_u32(&b, (uint32_t)tr->st_rows[i]), tgc_put_u32(&b, (uint32_t)cols);
            tgc_put_reals(&b, tr->plan.carry[i], (size_t)tr->st_rows[i] * (size_t)cols);
        }
    }
    tgc_writer_add(w, "position", &b);
    if (tr->train && tr->train->kind == TGT_TEXT) {
        const tg_vocab *v = tr->train->vocab;
        tgc_put_u32(&b, (uint32_t)v->n);
        for (int i = 0; i < v->n; i++) tgc_put_u32(&b, v->chars[i]);
        tgc_writer_add(w, "vocab", &b);
    }
    if (tr->best) {
        put_params(&b, m, tr->ps, tr->best);
        tgc_writer_add(w, "best", &b);
    }
    for (int i = 0; i < 4; i++) tgc_put_u64(&b, tr->ctx->rng[i]);
    tgc_writer_add(w, "rng", &b);
    char msg[4400];
    tg_status st = tgc_writer_commit(w, path, msg, sizeof msg);
    tgc_writer_free(w);
    return st ? tg_error(tr->ctx, st, "%s", msg) : TG_OK;
}

/* ---- reading ----------------------------------------------------------------- */

static tg_status cur_error(tg_checkpoint *c, tgc_cur *cur)
{
    return tg_error(c->ctx, TG_ERR_PARSE, "%s: %s", c->path, cur->msg);
}

int tg_checkpoint_is(const char *path) { return path ? tgc_is_checkpoint(path) : 0; }

tg_checkpoint *tg_checkpoint_open(tg_ctx *ctx, const char *path)
{
    if (!ctx) return NULL;
    if (!path) {
        tg_error(ctx, TG_ERR_ARG, "tg_checkpoint_open: path is NULL");
        return NULL;
    }
    tg_checkpoint *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->ctx = ctx;
    char msg[4400];
    tg_status st = tgc_open(path, &c->f, msg, sizeof msg);
    if (st) {
        tg_error(ctx, st, "%s", msg);
        tg_checkpoint_close(c);
        return NULL;
    }
    tgc_cur cur;
    if (!tgc_section(c->f, "model", &cur) || !tgc_section(c->f, "params", &cur) ||
        !tgc_section(c->f, "opts", &cur)) {
        cur_error(c, &cur);
        tg_checkpoint_close(c);
        return NULL;
    }
    tgc_section(c->f, "model", &cur);
    uint32_t content = tgc_get_u32(&cur);
    size_t pl;
    const char *mp = tgc_get_str(&cur, &pl);
    if (!cur.err && (c->model_path = malloc(pl + 1))) memcpy(c->model_path, mp, pl), c->model_path[pl] = 0;
    if (!cur.err && content != CKPT_CONTENT) {
        tg_error(ctx, TG_ERR_PARSE, "%s: training content version %u; this tapegrad reads version %d", path, content,
                 CKPT_CONTENT);
        tg_checkpoint_close(c);
        return NULL;
    }
    if (tgc_section(c->f, "vocab", &cur)) {
        uint32_t n = tgc_get_u32(&cur);
        if (!cur.err && (n < 1 || n > (1u << 21) || (size_t)n * 4 > cur.len - cur.pos))
            tgc_cur_fail(&cur, "field 'vocab.count' does not fit the section");
        uint32_t *chars = cur.err ? NULL : malloc((size_t)n * sizeof *chars);
        for (uint32_t i = 0; chars && i < n; i++) chars[i] = tgc_get_u32(&cur);
        if (chars && !cur.err) c->vocab = tg_vocab_new(ctx, chars, (int)n);
        free(chars);
        if (cur.err || !c->vocab) {
            if (cur.err) cur_error(c, &cur);
            else tg_error(ctx, TG_ERR_PARSE, "%s: section 'vocab' is not a vocabulary (%s)", path, tg_errmsg(ctx));
            tg_checkpoint_close(c);
            return NULL;
        }
    }
    return c;
}

void tg_checkpoint_close(tg_checkpoint *c)
{
    if (!c) return;
    tgc_close(c->f);
    tg_vocab_free(c->vocab);
    free(c->path);
    free(c->model_path);
    free(c);
}

const tg_vocab *tg_checkpoint_vocab(const tg_checkpoint *c) { return c ? c->vocab : NULL; }

const char *tg_checkpoint_model_text(const tg_checkpoint *c, size_t *len, const char **path)
{
    if (!c) return NULL;
    tgc_cur cur;
    tgc_section(c->f, "model", &cur);
    tgc_get_u32(&cur);
    size_t pl, tl;
    const char *p = tgc_get_str(&cur, &pl);
    const char *t = tgc_get_str(&cur, &tl);
    if (cur.err) return NULL;
    (void)p;
    if (len) *len = tl;
    if (path) *path = c->model_path;
    return t;
}

tg_model *tg_checkpoint_model(tg_checkpoint *c, const tg_dim *dims, int n_dims)
{
    if (!c) return NULL;
    if (n_dims < 0 || (n_dims && !dims)) {
        tg_error(c->ctx, TG_ERR_ARG, "tg_checkpoint_model: bad dims");
        return NULL;
    }
    tgc_cur cur;
    tgc_section(c->f, "model", &cur);
    tgc_get_u32(&cur);
    size_t pl, tl;
    const char *p = tgc_get_str(&cur, &pl);
    const char *t = tgc_get_str(&cur, &tl);
    uint32_t nd = tgc_get_u32(&cur);
    if (!cur.err && nd > TGM_MAX_DECLS) tgc_cur_fail(&cur, "field 'model.dims' holds more than 256 dims");
    tg_dim all[TGM_MAX_DECLS + 64];
    char names[TGM_MAX_DECLS][TGM_MAX_NAME + 1];
    int n = 0;
    for (uint32_t i = 0; !cur.err && i < nd; i++) {
        size_t l;
        const char *s = tgc_get_str(&cur, &l);
        int64_t v = get_int(&cur, "model.dim", 1, TGM_MAX_DIM);
        if (cur.err) break;
        if (l > TGM_MAX_NAME) {
            tgc_cur_fail(&cur, "a dim name is longer than 64 characters");
            break;
        }
        memcpy(names[n], s, l);
        names[n][l] = 0;
        int over = 0;
        for (int k = 0; k < n_dims; k++) over |= dims[k].name && !strcmp(dims[k].name, names[n]);
        if (!over) all[n] = (tg_dim){names[n], (int)v}, n++;
    }
    if (cur.err) {
        cur_error(c, &cur);
        return NULL;
    }
    for (int k = 0; k < n_dims && n < (int)(sizeof all / sizeof all[0]); k++) all[n++] = dims[k];
    /* messages about the model name the checkpoint and the file it came from */
    char fname[4400];
    snprintf(fname, sizeof fname, "%s(%.*s)", c->path, (int)(pl < 4000 ? pl : 4000), p ? p : "");
    return tg_model_parse(c->ctx, fname, t, tl, all, n);
}

/* Reads a params-layout section into ps (or into out, laid out as ps's
 * values), checking every name and shape against m first. */
static tg_status read_params(tg_checkpoint *c, const char *section, const tg_model *m, tg_params *ps, tg_real *out)
{
    tgc_cur cur;
    if (!tgc_section(c->f, section, &cur)) return cur_error(c, &cur);
    int np = tg_model_count(m, TG_ROLE_PARAM);
    uint32_t n = tgc_get_u32(&cur);
    if (cur.err) return cur_error(c, &cur);
    if ((int)n != np)
        return tg_error(c->ctx, TG_ERR_PARSE, "%s: the checkpoint of model has %u parameters; the model '%s' has %d "
                        "(was the model file changed?)", c->path, n, tg_model_name(m), np);
    /* pass 1: names and shapes; pass 2: values */
    for (int pass = 0; pass < 2; pass++) {
        tgc_section(c->f, section, &cur);
        tgc_get_u32(&cur);
        for (int i = 0; i < np; i++) {
            size_t l;
            const char *s = tgc_get_str(&cur, &l);
            uint32_t sr = tgc_get_u32(&cur), sc = tgc_get_u32(&cur);
            if (cur.err) return cur_error(c, &cur);
            char name[TGM_MAX_NAME + 1];
            if (l > TGM_MAX_NAME) return tg_error(c->ctx, TG_ERR_PARSE, "%s: a parameter name is too long", c->path);
            memcpy(name, s, l);
            name[l] = 0;
            int r = 0, cc = 0, found = -1;
            for (int k = 0; k < np && found < 0; k++)
                if (!strcmp(tg_model_var(m, TG_ROLE_PARAM, k, &r, &cc), name)) found = k;
            if (found < 0)
                return tg_error(c->ctx, TG_ERR_PARSE, "%s: the checkpoint has a parameter '%s' that model '%s' lacks "
                                "(was the model file changed?)", c->path, name, tg_model_name(m));
            if ((int)sr != r || (int)sc != cc) {
                char a[40], b[40];
                snprintf(a, sizeof a, cc ? "[%d, %d]" : "[%d]", r, cc);
                snprintf(b, sizeof b, sc ? "[%u, %u]" : "[%u]", sr, sc);
                return tg_error(c->ctx, TG_ERR_PARSE, "%s: parameter '%s' is %s in the checkpoint but %s in the model "
                                "(different dims?)", c->path, name, b, a);
            }
            tg_tensor *t = tg_params_find(ps, name);
            if (!t) {
                t = tg_params_add(ps, name, r, cc);
                if (!t) return tg_status_last(c->ctx);
            }
            size_t off = (size_t)(tg_data(t) - tg_params_values(ps));
            tg_real *dst = pass == 0 ? NULL : out ? out + off : tg_data(t);
            if (pass == 0) {
                /* skip the values: kind, count, bytes */
                uint8_t kind = tgc_get_u8(&cur);
                uint64_t cnt = tgc_get_u64(&cur);
                if (!cur.err && ((kind != 4 && kind != 8) || cnt != tg_size(t) || cnt * kind > cur.len - cur.pos)) {
                    char what[200];
                    snprintf(what, sizeof what, "the values of '%s' do not fit its shape", name);
                    tgc_cur_fail(&cur, what);
                }
                if (!cur.err) cur.pos += (size_t)cnt * kind;
            } else {
                tgc_get_reals(&cur, dst, tg_size(t));
            }
            if (cur.err) return cur_error(c, &cur);
        }
    }
    return TG_OK;
}

tg_status tg_checkpoint_params(tg_checkpoint *c, const tg_model *m, tg_params *ps, int best)
{
    if (!c) return TG_ERR_ARG;
    if (!m || !ps) return tg_error(c->ctx, TG_ERR_ARG, "tg_checkpoint_params: model and params are required");
    tgc_cur cur;
    return read_params(c, best && tgc_section(c->f, "best", &cur) ? "best" : "params", m, ps, NULL);
}

tg_status tg_checkpoint_opts(const tg_checkpoint *c, tg_train_opts *opts)
{
    if (!c) return TG_ERR_ARG;
    if (!opts) return tg_error(c->ctx, TG_ERR_ARG, "tg_checkpoint_opts: opts is NULL");
    tgc_cur cur;
    tgc_section(c->f, "opts", &cur);
    tg_train_opts o;
    get_opts(&cur, &o);
    if (cur.err) return cur_error((tg_checkpoint *)c, &cur);
    *opts = o;
    return TG_OK;
}

static int same_double(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static tg_status resume(tg_trainer *tr, tg_checkpoint *c);

tg_status tg_trainer_resume(tg_trainer *tr, tg_checkpoint *c)
{
    if (!tr) return TG_ERR_ARG;
    if (!c) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_resume: no checkpoint");
    /* the checkpoint may come from another context: its errors go to the trainer's */
    tg_ctx *own = c->ctx;
    c->ctx = tr->ctx;
    tg_status st = resume(tr, c);
    c->ctx = own;
    return st;
}

static tg_status resume(tg_trainer *tr, tg_checkpoint *c)
{
    if (!tr->train) return tg_error(tr->ctx, TG_ERR_ARG, "tg_trainer_resume: set the data first");
    tg_ctx *ctx = tr->ctx;
    const tg_model *m = tr->m;
    /* the model: name, then shapes (read_params) */
    tg_model *saved = NULL;
    {
        tgc_cur cur;
        tgc_section(c->f, "model", &cur);
        tgc_get_u32(&cur);
        size_t pl, tl;
        tgc_get_str(&cur, &pl);
        const char *t = tgc_get_str(&cur, &tl);
        if (cur.err) return cur_error(c, &cur);
        /* the name is the model's `name:`; compare without compiling the text again */
        const char *want = tg_model_name(m);
        (void)t;
        saved = NULL;
        const char *nm = NULL;
        size_t nl = 0;
        for (size_t i = 0; i + 5 <= tl; i++)
            if ((i == 0 || t[i - 1] == '\n') && !strncmp(t + i, "name:", 5)) {
                size_t j = i + 5;
                while (j < tl && (t[j] == ' ' || t[j] == '\t' || t[j] == '"' || t[j] == '\'')) j++;
                nm = t + j;
                while (j < tl && t[j] != '\n' && t[j] != '\r' && t[j] != ' ' && t[j] != '#' && t[j] != '"' &&
                       t[j] != '\'')
                    j++;
                nl = (size_t)(t + j - nm);
                break;
            }
        if (nm && (nl != strlen(want) || strncmp(nm, want, nl)))
            return tg_error(ctx, TG_ERR_PARSE, "%s: this checkpoint is for model '%.*s', not '%s'", c->path,
                            (int)(nl < 64 ? nl : 64), nm, want);
    }
    (void)saved;
    /* opts that fix the run's plan must match */
    tg_train_opts so;
    if (tg_checkpoint_opts(c, &so)) return tg_status_last(ctx);
    if (so.batch != tr->o.batch || so.bptt != tr->o.bptt || so.seed != tr->o.seed || so.accumulate != tr->o.accumulate)
        return tg_error(ctx, TG_ERR_ARG, "%s: the run used batch %d, bptt %d, seed %llu, accumulate %d; this trainer "
                        "has %d, %d, %llu, %d", c->path, so.batch, so.bptt, (unsigned long long)so.seed, so.accumulate,
                        tr->o.batch, tr->o.bptt, (unsigned long long)tr->o.seed, tr->o.accumulate);
    if (so.optim.kind != tr->o.optim.kind)
        return tg_error(ctx, TG_ERR_ARG, "%s: the checkpoint holds %s state; this trainer uses %s", c->path,
                        tg_optim_kind_name(so.optim.kind), tg_optim_kind_name(tr->o.optim.kind));
    /* the vocabulary */
    if (tr->train->kind == TGT_TEXT) {
        const tg_vocab *v = tr->train->vocab;
        int same = c->vocab && c->vocab->n == v->n;
        for (int i = 0; same && i < v->n; i++) same = c->vocab->chars[i] == v->chars[i];
        if (!same)
            return tg_error(ctx, TG_ERR_ARG, "%s: the text's vocabulary (%d characters) is not the checkpoint's (%d); "
                            "read the text with the checkpoint's vocabulary", c->path, v->n,
                            c->vocab ? c->vocab->n : 0);
    }
    /* the position, checked against this run's plan before anything changes */
    tgc_cur cur;
    if (!tgc_section(c->f, "position", &cur)) return cur_error(c, &cur);
    tgt_pos p;
    p.step = tgc_get_u64(&cur);
    if (!cur.err && p.step > (uint64_t)1 << 53) tgc_cur_fail(&cur, "field 'position.step' is past 2^53");
    p.epoch = (int)get_int(&cur, "position.epoch", 0, tr->o.epochs);
    int64_t batch = get_int(&cur, "position.batch", 0, 1 << 30);
    int64_t chunk = get_int(&cur, "position.chunk", 0, TGM_MAX_STEPS);
    p.epoch_loss = get_num(&cur, "position.epoch_loss", NAN, 0);
    p.epoch_count = get_num(&cur, "position.epoch_count", 0, 0);
    p.seconds = get_num(&cur, "position.seconds", 0, 0);
    uint64_t fp = tgc_get_u64(&cur);
    double valid_loss = get_num(&cur, "position.valid_loss", NAN, 1);
    double best_loss = get_num(&cur, "position.best_loss", NAN, 1);
    double plateau_best = get_num(&cur, "position.plateau_best", NAN, 1);
    double lr_factor = get_num(&cur, "position.lr_factor", 0, 0);
    double first = get_num(&cur, "position.first_epoch_loss", NAN, 1);
    double last = get_num(&cur, "position.last_epoch_loss", NAN, 1);
    int bad = (int)get_int(&cur, "position.bad_epochs", 0, 2000000000);
    int pbad = (int)get_int(&cur, "position.plateau_bad", 0, 2000000000);
    uint8_t has_carry = tgc_get_u8(&cur);
    if (cur.err) return cur_error(c, &cur);
    if (fp != tgt_fingerprint(tr->train))
        return tg_error(ctx, TG_ERR_ARG, "%s: the checkpoint's run trained on other data than %s (its length or "
                        "contents differ)", c->path, tr->train->name);
    if (p.epoch == tr->o.epochs && (batch || chunk))
        return tg_error(ctx, TG_ERR_ARG, "%s stopped in epoch %d, past --epochs %d", c->path, p.epoch + 1,
                        tr->o.epochs);
    /* the plan of the epoch it stopped in: batch and chunk must exist there */
    if (p.epoch < tr->o.epochs) {
        tgt_plan_epoch(&tr->plan, tr->o.seed, (uint64_t)p.epoch, 1);
        tr->plan_epoch = p.epoch;
        if (batch >= tr->plan.n_batches || (batch < tr->plan.n_batches && chunk >= tgt_batch_chunks(&tr->plan, (int)batch)))
            return tg_error(ctx, TG_ERR_PARSE, "%s: field 'position.batch' %lld / 'position.chunk' %lld is not a place "
                            "in this run (%d batches per epoch)", c->path, (long long)batch, (long long)chunk,
                            tr->plan.n_batches);
    }
    p.batch = (int)batch;
    p.chunk = (int)chunk;
    if ((chunk > 0) != (has_carry != 0) && tr->n_st)
        return tg_error(ctx, TG_ERR_PARSE, "%s: field 'position.carry' is %s for chunk %lld", c->path,
                        has_carry ? "present" : "missing", (long long)chunk);
    int cols = p.epoch < tr->o.epochs ? tgt_batch_cols(&tr->plan, p.batch) : 0;
    if (has_carry) {
        uint32_t ns = tgc_get_u32(&cur);
        if (!cur.err && (int)ns != tr->n_st) tgc_cur_fail(&cur, "field 'position.states' does not match the model");
        for (int i = 0; !cur.err && i < tr->n_st; i++) {
            uint32_t r = tgc_get_u32(&cur), cc = tgc_get_u32(&cur);
            if (!cur.err && ((int)r != tr->st_rows[i] || (int)cc != cols))
                tgc_cur_fail(&cur, "field 'position.carry' has the wrong shape for this batch");
            if (!cur.err) {
                uint8_t kind = tgc_get_u8(&cur);
                uint64_t cnt = tgc_get_u64(&cur);
                if (!cur.err && ((kind != 4 && kind != 8) || cnt != (uint64_t)r * cc || cnt * kind > cur.len - cur.pos))
                    tgc_cur_fail(&cur, "field 'position.carry' does not fit");
                if (!cur.err) cur.pos += (size_t)cnt * kind;
            }
        }
        if (cur.err) return cur_error(c, &cur);
    }
    /* optimizer state shape */
    tgc_cur oc;
    if (!tgc_section(c->f, "optim", &oc)) return cur_error(c, &oc);
    uint64_t osteps = tgc_get_u64(&oc);
    uint32_t ons = tgc_get_u32(&oc);
    if (!oc.err && (int)ons != tg_optim_state_count(tr->opt))
        tgc_cur_fail(&oc, "field 'optim.states' does not match the optimizer");
    if (!oc.err && osteps > (uint64_t)1 << 53) tgc_cur_fail(&oc, "field 'optim.steps' is past 2^53");
    if (oc.err) return cur_error(c, &oc);
    tgc_cur bc;
    int has_best = tgc_section(c->f, "best", &bc);
    /* the generator: four words, not all zero (xoshiro's one invalid state) */
    uint64_t rng[4] = {0};
    tgc_cur rc;
    int has_rng = tgc_section(c->f, "rng", &rc);
    if (has_rng) {
        for (int i = 0; i < 4; i++) rng[i] = tgc_get_u64(&rc);
        if (!rc.err && rc.pos != rc.len) tgc_cur_fail(&rc, "field 'rng' does not fit");
        if (!rc.err && !(rng[0] | rng[1] | rng[2] | rng[3]))
            tgc_cur_fail(&rc, "field 'rng' is all zeros, not a state of the generator");
        if (rc.err) return cur_error(c, &rc);
    }
    /* everything checked but values: now read (params first: their shapes are checked there) */
    if (read_params(c, "params", m, tr->ps, NULL)) return tg_status_last(ctx);
    if (tr->n_scalars != tg_params_total(tr->ps))
        return tg_error(ctx, TG_ERR_ARG, "%s: the parameters grew while resuming", c->path);
    for (uint32_t k = 0; k < ons; k++) {
        size_t l;
        const char *sn = tgc_get_str(&oc, &l);
        const char *want;
        tg_real *buf = tg_optim_state(tr->opt, (int)k, &want);
        if (!oc.err && (l != strlen(want) || strncmp(sn, want, l)))
            tgc_cur_fail(&oc, "an optimizer state has another name (saved by another optimizer?)");
        if (!oc.err) tgc_get_reals(&oc, buf, tr->n_scalars);
        if (oc.err) return cur_error(c, &oc);
    }
    tg_optim_set_steps(tr->opt, osteps);
    if (has_best) {
        if (!tr->best && !(tr->best = malloc((tr->n_scalars ? tr->n_scalars : 1) * sizeof(tg_real))))
            return tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        if (read_params(c, "best", m, tr->ps, tr->best)) return tg_status_last(ctx);
    }
    if (has_carry) {
        tgc_section(c->f, "position", &cur);
        cur.pos = 0;
        /* skip to the carry: re-read the fixed fields */
        tgc_get_u64(&cur);
        for (int i = 0; i < 3; i++) tgc_get_i64(&cur);
        for (int i = 0; i < 3; i++) tgc_get_f64(&cur);
        tgc_get_u64(&cur);
        for (int i = 0; i < 6; i++) tgc_get_f64(&cur);
        tgc_get_i64(&cur), tgc_get_i64(&cur), tgc_get_u8(&cur), tgc_get_u32(&cur);
        for (int i = 0; i < tr->n_st; i++) {
            tgc_get_u32(&cur), tgc_get_u32(&cur);
            tgc_get_reals(&cur, tr->plan.carry[i], (size_t)tr->st_rows[i] * (size_t)cols);
        }
        if (cur.err) return cur_error(c, &cur);
    }
    if (has_rng) memcpy(tr->ctx->rng, rng, sizeof rng);
    tr->plan.has_carry = has_carry;
    tr->plan.filled = -1;
    tr->pos = p;
    tr->valid_loss = valid_loss, tr->best_loss = best_loss, tr->plateau_best = plateau_best;
    tr->lr_factor = lr_factor, tr->first_epoch_loss = first, tr->last_epoch_loss = last;
    tr->bad_epochs = bad, tr->plateau_bad = pbad;
    tr->end = TG_END_NONE;
    tr->started = 0;
    (void)same_double;
    return TG_OK;
}
