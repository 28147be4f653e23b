/* fuse.c — rewrites a compiled step so that an affine map and the
 * activation applied to it record as one `affine` entry (ops/affine.c):
 *
 *   a = U @ x + W @ h + b        affine(U, x, W, h, b; 2 products, tanh)
 *   h = tanh(a)             ->   written to h, at the tanh's position
 *
 * Training and benchmarks record the fused code: it halves the entries of
 * an RNN step and keeps one value per cell instead of five.  The code as
 * written, one instruction per operator, stays beside it for dumps and for
 * anyone who wants to see every intermediate (tg_unroll.each_op).
 *
 * An activation of a sum without products fuses as well, into an affine
 * entry of no products (a layer-normalised gate, Ba et al. 2016):
 *
 *   f = sigmoid(layer_norm(Wx @ x, ..) + layer_norm(Wh @ h, ..) + b)
 *     -> matmul, layer_norm, matmul, layer_norm, affine(ln1, ln2, b; 0, sigmoid)
 *
 * and a layer_norm of such a sum, with the activation applied to it, becomes
 * one layer_norm_act entry:
 *
 *   u = sigmoid(layer_norm(Wx @ x + Wh @ h + b, g, c, eps))
 *     -> layer_norm_act(Wx, x, Wh, h, b, g, c; 2 products, eps, sigmoid)
 *
 * Nothing else is fused into or out of other ops: a div or a where between
 * a sum and its activation ends the plan there.
 *
 * The rewrite only moves computation later, to the instruction that
 * consumes it, and only absorbs a temporary that nothing else reads (no
 * other instruction, output or loss).  Moving is safe unless a state the
 * absorbed instructions read is assigned in between (h read as h(t-1), then
 * assigned, then the sum used): such a sum is left alone. */
#include "tg_model_internal.h"

typedef struct fz {
    tg_model *m;
    int first_temp;     /* slots below are params, inputs, targets, states */
    int *uses;          /* reads of each slot in step and loss, +1 if the model exposes it */
    int *rows, *cols;   /* each slot's shape */
    /* the list being rewritten */
    const tgm_instr *code;
    int n;
    int *producer;      /* instruction writing each temporary slot in this list, or -1 */
    int *consumer;      /* the last instruction of this list reading each slot, or -1 */
    unsigned char *absorbed, *tentative;
    int terms_only;     /* planning a sum of terms only: absorb adds, not matmuls */
    struct plan {
        int n_pairs, n_terms, act, first; /* first: earliest absorbed instruction */
        int ln;         /* a layer_norm_act: the sum normalised with gain and bias */
        int gain, bias; /* its slots */
        double eps;
        int *in;        /* pairs, then terms; TGM_MAX_ARGS slots */
    } *plan;            /* per instruction; n_pairs and n_terms 0: none */
} fz;

enum { ACT_NONE, ACT_TANH, ACT_SIGMOID };

static int is_op(const fz *f, const tgm_instr *k, tg_op_id id) { return k->op && k->op == tg_op_by_id(f->m->ctx, id); }

/* Is slot s reassigned by an instruction strictly between lo and hi?  Only
 * a state is ever assigned after it was read; a temporary is written once,
 * before anything reads it. */
static int written_between(const fz *f, int s, int lo, int hi)
{
    if (s >= f->first_temp) return 0;
    for (int i = lo + 1; i < hi; i++)
        if (f->code[i].out == s) return 1;
    return 0;
}

/* The instruction whose only reader is instruction i, producing slot s, or -1. */
static int absorbable(const fz *f, int s, int i)
{
    if (s < f->first_temp || f->uses[s] != 1) return -1;
    int p = f->producer[s];
    return p >= 0 && p < i && !f->absorbed[p] && !f->tentative[p] ? p : -1;
}

/* Collects the sum that slot s holds, as read by instruction i, into pl.
 * The first pass takes the products of absorbable matmuls as pairs and
 * marks every absorbed instruction tentative; the second walks the same
 * marked tree and takes everything else as terms, so the pairs come first. */
static int collect(fz *f, struct plan *pl, int s, int i, int pass)
{
    int p;
    if (pass == 0) {
        p = absorbable(f, s, i);
        if (p >= 0 && !is_op(f, &f->code[p], TG_OP_ADD) && (f->terms_only || !is_op(f, &f->code[p], TG_OP_MATMUL)))
            p = -1;
        if (p >= 0) {
            f->tentative[p] = 1;
            if (p < pl->first) pl->first = p;
        }
    } else {
        p = s >= f->first_temp ? f->producer[s] : -1;
        if (p >= 0 && !f->tentative[p]) p = -1;
    }
    const tgm_instr *k = p >= 0 ? &f->code[p] : NULL;
    if (k && is_op(f, k, TG_OP_MATMUL)) {
        if (pass == 1) return 0;
        if (2 * pl->n_pairs + 2 > TGM_MAX_ARGS) return -1;
        pl->in[2 * pl->n_pairs] = k->in[0];
        pl->in[2 * pl->n_pairs + 1] = k->in[1];
        pl->n_pairs++;
        return 0;
    }
    if (k) return collect(f, pl, k->in[0], i, pass) || collect(f, pl, k->in[1], i, pass) ? -1 : 0;
    if (pass == 0) return 0;
    if (2 * pl->n_pairs + pl->n_terms + 1 > TGM_MAX_ARGS) return -1;
    pl->in[2 * pl->n_pairs + pl->n_terms++] = s;
    return 0;
}

static void drop_tentative(fz *f, int commit)
{
    for (int i = 0; i < f->n; i++) {
        if (f->tentative[i] && commit) f->absorbed[i] = 1;
        f->tentative[i] = 0;
    }
}

/* Every slot the plan reads keeps its value from pl->first to i, and the
 * shapes fit the affine op: products [rows, cols], terms that or [rows, 1].
 * A plan of terms only fuses two terms or more. */
static int plan_ok(const fz *f, const struct plan *pl, int i, int rows, int cols)
{
    if (pl->n_pairs < 1 && !(f->terms_only && pl->n_terms >= 2)) return 0;
    int n = 2 * pl->n_pairs + pl->n_terms;
    for (int j = 0; j < n; j++)
        if (written_between(f, pl->in[j], pl->first, i)) return 0;
    for (int j = 0; j < pl->n_pairs; j++) {
        int a = pl->in[2 * j], x = pl->in[2 * j + 1];
        if (f->rows[a] != rows || f->cols[x] != cols || f->cols[a] != f->rows[x]) return 0;
    }
    for (int j = 2 * pl->n_pairs; j < n; j++) {
        int t = pl->in[j];
        if (f->rows[t] != rows || (f->cols[t] != cols && f->cols[t] != 1)) return 0;
    }
    return 1;
}

static void plan_sum(fz *f, int i)
{
    const tgm_instr *k = &f->code[i];
    struct plan *pl = &f->plan[i];
    pl->n_pairs = pl->n_terms = 0;
    pl->act = ACT_NONE;
    pl->first = i;
    int ok = 1;
    if (is_op(f, k, TG_OP_ADD)) {
        for (int pass = 0; pass < 2 && ok; pass++)
            for (int j = 0; j < 2 && ok; j++) ok = collect(f, pl, k->in[j], i, pass) == 0;
    } else { /* an activation of one absorbable matmul */
        int p = absorbable(f, k->in[0], i);
        if (p < 0 || !is_op(f, &f->code[p], TG_OP_MATMUL)) ok = 0;
        else ok = collect(f, pl, k->in[0], i, 0) == 0;
    }
    ok = ok && plan_ok(f, pl, i, k->rows, k->cols);
    drop_tentative(f, ok);
    if (!ok) pl->n_pairs = pl->n_terms = 0;
}

/* A layer_norm plan's gain and bias keep their values from the plan's
 * first instruction (or the layer_norm at p) to i. */
static int ln_params_kept(const fz *f, const struct plan *pl, int p, int i)
{
    int lo = pl->first < p ? pl->first : p;
    return !written_between(f, pl->gain, lo, i) && !written_between(f, pl->bias, lo, i);
}

/* The activation at i of the sum an absorbable add holds, as a plan of
 * terms only (the add's own plan found no products it could take). */
static void plan_terms(fz *f, int i, int act)
{
    const tgm_instr *k = &f->code[i];
    struct plan *pl = &f->plan[i];
    pl->n_pairs = pl->n_terms = 0;
    pl->act = act;
    pl->first = i;
    f->terms_only = 1;
    int ok = collect(f, pl, k->in[0], i, 0) == 0 && collect(f, pl, k->in[0], i, 1) == 0 &&
             plan_ok(f, pl, i, k->rows, k->cols);
    f->terms_only = 0;
    drop_tentative(f, ok);
    if (!ok) pl->n_pairs = pl->n_terms = 0;
}

static tg_status rewrite(fz *f, const tgm_instr *code, int n, tgm_instr **out, int *n_out)
{
    tg_ctx *ctx = f->m->ctx;
    f->code = code;
    f->n = n;
    for (int s = 0; s < f->m->n_slots; s++) f->producer[s] = f->consumer[s] = -1;
    for (int i = 0; i < n; i++) {
        if (code[i].out >= f->first_temp) f->producer[code[i].out] = i;
        for (int j = 0; j < code[i].n_in; j++) f->consumer[code[i].in[j]] = i;
        f->absorbed[i] = f->tentative[i] = 0;
        f->plan[i].n_pairs = f->plan[i].n_terms = f->plan[i].ln = 0;
    }
    for (int i = 0; i < n; i++) {
        const tgm_instr *k = &code[i];
        if (is_op(f, k, TG_OP_ADD)) {
            /* a + b + c is add(add(a, b), c): plan the outermost sum only */
            int c = f->uses[k->out] == 1 ? f->consumer[k->out] : -1;
            if (!(c > i && is_op(f, &code[c], TG_OP_ADD))) plan_sum(f, i);
        }
        else if (is_op(f, k, TG_OP_TANH) || is_op(f, k, TG_OP_SIGMOID)) {
            int act = is_op(f, k, TG_OP_TANH) ? ACT_TANH : ACT_SIGMOID;
            int p = absorbable(f, k->in[0], i);
            if (p >= 0 && f->plan[p].n_pairs && f->plan[p].act == ACT_NONE && !f->plan[p].ln &&
                plan_ok(f, &f->plan[p], i, k->rows, k->cols)) {
                /* the sum was fused already: hand its plan to the activation */
                struct plan tmp = f->plan[i];
                f->plan[i] = f->plan[p];
                f->plan[p] = tmp;
                f->plan[p].n_pairs = f->plan[p].n_terms = 0;
                f->plan[i].act = act;
                f->absorbed[p] = 1;
            } else if (p >= 0 && is_op(f, &code[p], TG_OP_MATMUL)) {
                plan_sum(f, i);
                if (f->plan[i].n_pairs) f->plan[i].act = act;
            } else if (p >= 0 && is_op(f, &code[p], TG_OP_ADD) && !f->plan[p].n_pairs) {
                plan_terms(f, i, act);
            } else if (p >= 0 && is_op(f, &code[p], TG_OP_LAYER_NORM)) {
                struct plan *pl = &f->plan[i];
                if (f->plan[p].ln) { /* the normalised sum, fused already */
                    if (plan_ok(f, &f->plan[p], i, k->rows, k->cols) && ln_params_kept(f, &f->plan[p], p, i)) {
                        struct plan tmp = *pl;
                        *pl = f->plan[p];
                        f->plan[p] = tmp;
                        pl->act = act;
                        f->absorbed[p] = 1;
                    }
                } else {
                    /* its inputs keep their values until the activation reads them */
                    int ok = 1;
                    for (int j = 0; j < 3; j++) ok &= !written_between(f, code[p].in[j], p, i);
                    if (ok) {
                        pl->in[0] = code[p].in[0];
                        pl->n_terms = 1;
                        pl->ln = 1;
                        pl->gain = code[p].in[1];
                        pl->bias = code[p].in[2];
                        pl->eps = code[p].attrs[0];
                        pl->act = act;
                        pl->first = p;
                        f->absorbed[p] = 1;
                    }
                }
            }
        } else if (is_op(f, k, TG_OP_LAYER_NORM)) {
            /* the sum it normalises, fused already, moves into it */
            int p = absorbable(f, k->in[0], i);
            struct plan *pl = &f->plan[i];
            if (p >= 0 && f->plan[p].n_pairs && f->plan[p].act == ACT_NONE && !f->plan[p].ln &&
                2 * f->plan[p].n_pairs + f->plan[p].n_terms + 2 <= TGM_MAX_ARGS &&
                plan_ok(f, &f->plan[p], i, k->rows, k->cols) && !written_between(f, k->in[1], p, i) &&
                !written_between(f, k->in[2], p, i)) {
                struct plan tmp = *pl;
                *pl = f->plan[p];
                f->plan[p] = tmp;
                pl->ln = 1;
                pl->gain = k->in[1];
                pl->bias = k->in[2];
                pl->eps = k->attrs[0];
                f->absorbed[p] = 1;
            }
        }
    }
    int kept = 0;
    for (int i = 0; i < n; i++) kept += !f->absorbed[i];
    tgm_instr *dst = tgm_palloc(&f->m->pool, (size_t)(kept ? kept : 1) * sizeof *dst);
    if (!dst) return TG_ERR_NOMEM;
    const tg_op *affine = tg_op_by_id(ctx, TG_OP_AFFINE);
    int j = 0;
    for (int i = 0; i < n; i++) {
        if (f->absorbed[i]) continue;
        dst[j] = code[i];
        const struct plan *pl = &f->plan[i];
        if (pl->n_pairs || pl->n_terms) {
            int nin = 2 * pl->n_pairs + pl->n_terms;
            int *in = tgm_palloc(&f->m->pool, (size_t)(nin + 2) * sizeof *in);
            if (!in) return TG_ERR_NOMEM;
            memcpy(in, pl->in, (size_t)nin * sizeof *in);
            if (pl->ln) {
                in[nin] = pl->gain;
                in[nin + 1] = pl->bias;
                dst[j].op = tg_op_by_id(ctx, TG_OP_LAYER_NORM_ACT);
                dst[j].n_in = nin + 2;
                dst[j].in = in;
                dst[j].n_attrs = 3;
                dst[j].attrs[0] = pl->n_pairs;
                dst[j].attrs[1] = pl->eps;
                dst[j].attrs[2] = pl->act;
                if (nin + 2 > f->m->max_in) f->m->max_in = nin + 2;
                j++;
                continue;
            }
            dst[j].op = affine;
            dst[j].n_in = nin;
            dst[j].in = in;
            dst[j].n_attrs = 2;
            dst[j].attrs[0] = pl->n_pairs;
            dst[j].attrs[1] = pl->act;
            if (nin > f->m->max_in) f->m->max_in = nin;
        }
        j++;
    }
    *out = dst;
    *n_out = kept;
    return TG_OK;
}

static void count_reads(fz *f, const tgm_instr *code, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < code[i].n_in; j++) f->uses[code[i].in[j]]++;
}

/* Slot shapes: declarations for variables, then each instruction's result
 * in order (a copy has its source's shape). */
static void slot_shapes(fz *f, const tgm_instr *code, int n)
{
    for (int i = 0; i < n; i++) {
        int s = code[i].out;
        if (s < f->first_temp) continue;
        f->rows[s] = code[i].op ? code[i].rows : f->rows[code[i].in[0]];
        f->cols[s] = code[i].op ? code[i].cols : f->cols[code[i].in[0]];
    }
}

/* An instruction can skip the recording-time checks when the compile-time
 * check of its shapes holds for every batch size: no input's rows and no
 * result dimension depend on B (those would be TGM_BATCH or a multiple, far
 * above any real dimension), only whole columns of B do.  Every op then
 * computes the same shape at run time with B in place of the stand-in. */
static void mark_checked(const fz *f, tgm_instr *code, int n)
{
    for (int i = 0; i < n; i++) {
        tgm_instr *k = &code[i];
        int ok = k->op && k->rows >= 1 && k->rows <= TGM_MAX_DIM &&
                 (k->cols == TGM_BATCH || (k->cols >= 1 && k->cols <= TGM_MAX_DIM));
        for (int j = 0; ok && j < k->n_in; j++) {
            int r = f->rows[k->in[j]], c = f->cols[k->in[j]];
            ok = r >= 1 && r <= TGM_MAX_DIM && (c == TGM_BATCH || (c >= 1 && c <= TGM_MAX_DIM));
        }
        k->checked = ok;
    }
}

tg_status tgm_fuse(tg_model *m)
{
    tg_ctx *ctx = m->ctx;
    m->step_each_op = m->step;
    m->n_step_each_op = m->n_step;
    m->loss_each_op = m->loss;
    m->n_loss_each_op = m->n_loss;
    const int ns = m->n_slots, ni = m->n_step > m->n_loss ? m->n_step : m->n_loss;
    fz f = {.m = m};
    f.first_temp = m->first_temp;
    size_t ints = (size_t)(ns ? ns : 1);
    size_t ninstr = (size_t)(ni ? ni : 1);
    f.uses = tg_alloc(ctx, 5 * ints * sizeof(int));
    f.absorbed = tg_alloc(ctx, 2 * ninstr);
    f.plan = tg_alloc(ctx, ninstr * (sizeof *f.plan + TGM_MAX_ARGS * sizeof(int)));
    tg_status st = TG_ERR_NOMEM;
    if (!f.uses || !f.absorbed || !f.plan) goto done;
    memset(f.uses, 0, 5 * ints * sizeof(int));
    f.rows = f.uses + ints;
    f.cols = f.rows + ints;
    f.producer = f.cols + ints;
    f.consumer = f.producer + ints;
    f.tentative = f.absorbed + ninstr;
    int *pool = (int *)(f.plan + ninstr);
    for (size_t i = 0; i < ninstr; i++) f.plan[i].in = pool + i * TGM_MAX_ARGS;

    for (int r = 0; r < 4; r++)
        for (int i = 0; i < m->n_vars[r]; i++) {
            const tgm_var *v = &m->vars[r][i];
            f.rows[v->slot] = v->rows;
            f.cols[v->slot] = r == TG_ROLE_PARAM ? (v->cols ? v->cols : 1) : TGM_BATCH;
            if (r == TG_ROLE_STATE) {
                f.rows[v->cur] = v->rows;
                f.cols[v->cur] = TGM_BATCH;
                if (v->final_slot >= 0) {
                    f.rows[v->final_slot] = v->rows;
                    f.cols[v->final_slot] = TGM_BATCH;
                }
            }
        }
    for (int i = 0; i < m->n_cslots; i++) {
        f.rows[m->cslots[i].slot] = m->cslots[i].rows;
        f.cols[m->cslots[i].slot] = m->cslots[i].cols;
    }
    if (m->t_slot >= 0) f.rows[m->t_slot] = f.cols[m->t_slot] = 1;
    slot_shapes(&f, m->step, m->n_step);
    slot_shapes(&f, m->final, m->n_final);
    slot_shapes(&f, m->loss, m->n_loss);
    count_reads(&f, m->step, m->n_step);
    count_reads(&f, m->final, m->n_final);
    count_reads(&f, m->loss, m->n_loss);
    for (int j = 0; j < m->n_outputs; j++) f.uses[m->outputs[j].slot]++;
    if (m->loss_slot >= 0) f.uses[m->loss_slot]++;

    if ((st = rewrite(&f, m->step_each_op, m->n_step_each_op, &m->step, &m->n_step))) goto done;
    if ((st = rewrite(&f, m->loss_each_op, m->n_loss_each_op, &m->loss, &m->n_loss))) goto done;
    for (int p = 0; p < 3; p++) {
        m->n_phase_each_op[p] = m->n_phase[p];
        m->n_phase[p] = 0;
    }
    if (m->n_reverse == 0) m->n_phase_each_op[TGM_PHASE_FWD] = m->n_step_each_op;
    for (int i = 0; i < m->n_step; i++) m->n_phase[m->n_reverse ? m->step[i].phase : TGM_PHASE_FWD]++;
    mark_checked(&f, m->final, m->n_final);
    /* each list judged by the inputs its own instructions read: a fused
     * entry reads the leaves of the sum, not the temporaries it replaced */
    mark_checked(&f, m->step_each_op, m->n_step_each_op);
    mark_checked(&f, m->loss_each_op, m->n_loss_each_op);
    mark_checked(&f, m->step, m->n_step);
    mark_checked(&f, m->loss, m->n_loss);
    st = tgm_hoist_find(m, f.rows, f.cols);
done:
    tg_free(ctx, f.uses, 5 * ints * sizeof(int));
    tg_free(ctx, f.absorbed, 2 * ninstr);
    tg_free(ctx, f.plan, ninstr * (sizeof *f.plan + TGM_MAX_ARGS * sizeof(int)));
    return st;
}
