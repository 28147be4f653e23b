/* unroll.c — records a compiled model onto a tape for a range of time steps.
 * This is the hot path of training: per step it makes the input leaves and
 * runs the flat instruction list through tg_record(), with every name
 * already resolved to a slot; no strings, hashing or heap allocation (the
 * slot table and result arrays come from the tape's arena). */
#include "tg_model_internal.h"
#include <math.h>

static tg_status fail_at(const tg_model *m, const tgm_instr *k, int t)
{
    char msg[TG_ERRMSG_LEN];
    tg_ctx *ctx = m->ctx;
    tg_status s = tg_status_last(ctx);
    if (!s) s = TG_ERR_NOMEM;
    snprintf(msg, sizeof msg, "%s", tg_errmsg(ctx));
    return tg_error(ctx, s, "%s:%d:%d: in '%s' at step %d: %s", m->file, k->line, k->col, k->label, t, msg);
}

/* Runs instructions code[0..n) for step t.  Labels count steps from 1, as
 * the lecture does (h(0) is the initial state). */
static tg_status run_blocks(const tg_model *m, tg_tape *tape, const tgm_instr *code, int n, tg_tensor **slots,
                            int t, int B, int blk, int blocks)
{
    tg_tensor *in[TGM_MAX_ARGS];
    double attrs[TG_MAX_ATTRS];
    for (int i = 0; i < n; i++) {
        const tgm_instr *k = &code[i];
        if (!k->op) {
            slots[k->out] = slots[k->in[0]];
            continue;
        }
        for (int j = 0; j < k->n_in; j++) in[j] = slots[k->in[j]];
        const double *a = k->attrs;
        if (k->stacked) { /* this step's block of the hoisted products */
            memcpy(attrs, k->attrs, sizeof attrs);
            attrs[2] = blk;
            attrs[3] = blocks;
            a = attrs;
        }
        tg_tensor *y = k->checked ? tg_record_checked(tape, k->op, k->n_in, in, a, k->rows,
                                                      k->cols == TGM_BATCH ? B : k->cols)
                                  : tg_record(tape, k->op, k->n_in, in, k->n_attrs, a);
        if (!y) {
            /* an anomaly leaves the failing entry on the tape: label it for dumps */
            int len = tg_tape_length(tape);
            tg_tensor *e = len ? tg_tape_at(tape, len - 1) : NULL;
            if (e && e->op == k->op && !e->label) {
                tg_tensor_set_label(e, k->label, t + 1);
                tg_tensor_set_source(e, m->file, k->line, k->col);
            }
            return fail_at(m, k, t + 1);
        }
        y->label = k->label;
        y->step = t + 1;
        y->file = m->file;
        y->line = k->line;
        y->column = k->col;
        slots[k->out] = y;
    }
    return TG_OK;
}

static tg_status run(const tg_model *m, tg_tape *tape, const tgm_instr *code, int n, tg_tensor **slots, int t,
                     int B)
{
    return run_blocks(m, tape, code, n, slots, t, B, 0, 0);
}

/* Inputs and targets borrow the caller's buffers (valid for the recording,
 * as tg_unroll promises); initial states are copied, since a trainer
 * overwrites its carried state with the final one. */
static tg_tensor *leaf(const tg_model *m, tg_tape *tape, const tgm_var *v, int B, const tg_real *data, int t,
                       bool borrow)
{
    tg_tensor *x = borrow ? tg_input_ref(tape, v->rows, B, data) : tg_input(tape, v->rows, B, data, 0);
    if (x) {
        x->label = v->name;
        x->step = t;
        x->file = m->file;
        x->line = v->line;
        x->column = v->col;
    }
    return x;
}

/* A state's value before the first recorded step: given, or its init
 * repeated in every column. */
static tg_tensor *initial_state(const tg_model *m, tg_tape *tape, const tgm_var *v, int B, const tg_real *given,
                                int t)
{
    tg_tensor *x = leaf(m, tape, v, B, given, t, false);
    if (!x || given) return x;
    tg_real *val = tg_data(x);
    for (int r = 0; r < v->rows; r++) {
        double s = v->init == TGM_INIT_ONES ? 1 : v->init == TGM_INIT_CONST ? v->a
                 : v->init == TGM_INIT_LITERAL ? v->values[r] : 0;
        for (int c = 0; c < B; c++) val[(size_t)r * (size_t)B + (size_t)c] = (tg_real)s;
    }
    return x;
}

/* The leaves every step shares: params, constants (and numbers used as
 * tensors), targets given once per sequence. */
static tg_status shared_leaves(const tg_model *m, tg_tape *tape, const tg_unroll *u, tg_tensor **slots, int B)
{
    tg_ctx *ctx = m->ctx;
    for (int i = 0; i < m->n_vars[TG_ROLE_PARAM]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_PARAM][i];
        /* tg_model_init_params adds the parameters in declaration order:
         * try that position before searching by name */
        const tg_params *ps = u->params;
        tg_tensor *p = i < ps->n && !strcmp(ps->list[i].name, v->name) ? ps->list[i].t
                                                                        : tg_params_find(u->params, v->name);
        if (!p || tg_rows(p) != v->rows || tg_cols(p) != (v->cols ? v->cols : 1))
            return tg_error(ctx, TG_ERR_ARG, "unroll: parameter '%s' is %s (tg_model_init_params adds it)", v->name,
                            p ? "not in the declared shape" : "missing");
        slots[v->slot] = p;
    }
    for (int i = 0; i < m->n_cslots; i++) {
        const tgm_cslot *cs = &m->cslots[i];
        tg_tensor *x = cs->var ? tg_input_ref(tape, cs->rows, cs->cols, cs->var->fixed)
                               : tg_input_ref(tape, 1, 1, &cs->value);
        if (!x) return tg_status_last(ctx);
        if (cs->var) {
            x->label = cs->var->name;
            x->file = m->file;
            x->line = cs->var->line;
            x->column = cs->var->col;
        }
        slots[cs->slot] = x;
    }
    for (int i = 0; u->targets && i < m->n_vars[TG_ROLE_TARGET]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_TARGET][i];
        if (v->per_seq && !(slots[v->slot] = leaf(m, tape, v, B, u->targets[i], 0, true))) return tg_status_last(ctx);
    }
    return TG_OK;
}

/* The leaves of step t: inputs, targets given per step, the step index.
 * Hoisting records the inputs of a chunk's steps first (LEAVES_INPUTS), the rest
 * with each step (LEAVES_REST). */
enum { LEAVES_INPUTS = 1, LEAVES_REST = 2, LEAVES_ALL = 3 };
static tg_status step_leaves(const tg_model *m, tg_tape *tape, const tg_unroll *u, tg_tensor **slots, int B, int t,
                             int which)
{
    tg_ctx *ctx = m->ctx;
    for (int i = 0; (which & LEAVES_INPUTS) && i < m->n_vars[TG_ROLE_INPUT]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_INPUT][i];
        const tg_real *x = u->inputs[i] + (size_t)t * (size_t)v->rows * (size_t)B;
        if (!(slots[v->slot] = leaf(m, tape, v, B, x, t + 1, true))) return tg_status_last(ctx);
    }
    if (!(which & LEAVES_REST)) return TG_OK;
    for (int i = 0; u->targets && i < m->n_vars[TG_ROLE_TARGET]; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_TARGET][i];
        if (v->per_seq) continue;
        const tg_real *y = u->targets[i] + (size_t)t * (size_t)v->rows * (size_t)B;
        if (!(slots[v->slot] = leaf(m, tape, v, B, y, t + 1, true))) return tg_status_last(ctx);
    }
    if (m->t_slot >= 0) {
        tg_real step = (tg_real)(t + 1);
        tg_tensor *x = tg_input(tape, 1, 1, &step, 0);
        if (!x) return tg_status_last(ctx);
        x->label = "t";
        x->step = t + 1;
        slots[m->t_slot] = x;
    }
    return TG_OK;
}

static tg_status add_loss(const tg_model *m, tg_tape *tape, tg_tensor **loss, tg_tensor *l, int t)
{
    if (!*loss) {
        *loss = l;
        return TG_OK;
    }
    /* both [1, 1] (the model was checked): no shape rule to run */
    static const double no_attrs[TG_MAX_ATTRS];
    tg_tensor *pair[2] = {*loss, l};
    if (!(*loss = tg_record_checked(tape, tg_op_by_id(m->ctx, TG_OP_ADD), 2, pair, no_attrs, 1, 1)))
        return tg_status_last(m->ctx);
    tg_tensor_set_label(*loss, "loss", t + 1);
    tg_tensor_set_source(*loss, m->file, m->loss_line, m->loss_col);
    return TG_OK;
}

/* Hoisting applies to this call (hoist: TGM_HOIST_*): the model has products
 * to hoist; the call records two steps or more (one step gains nothing:
 * `sample` records one at a time); no sweep hook watches the tape (per-step
 * gradient norms credit each entry's gradient to that entry's step, and a
 * stack holds a chunk's); and, unless forced, it pays (tgm_hoist_pays). */
static bool hoisting(const tg_model *m, const tg_tape *tape, const tg_unroll *u, int hoist)
{
    if (hoist == TGM_HOIST_NEVER || u->each_op || !m->n_hoists || m->n_reverse || u->steps < 2) return false;
    if (hoist == TGM_HOIST_ALWAYS) return true;
    return !tape->hook && tgm_hoist_pays(m, u->batch);
}

/* A non-finite value in a stack names the equation and the first step
 * whose block (columns k B .. k B + B - 1) has it, as the step's own entry
 * would have. */
static tg_status stack_failed(const tg_model *m, tg_tape *tape, const tgm_hoist *h, int t0, int B)
{
    tg_ctx *ctx = m->ctx;
    int len = tg_tape_length(tape);
    tg_tensor *e = len ? tg_tape_at(tape, len - 1) : NULL;
    int step = t0;
    if (tg_status_last(ctx) == TG_ERR_NONFINITE && e && e->op == h->prod.op) {
        int first = e->cols;
        for (int r = 0; r < e->rows; r++)
            for (int c = 0; c < first; c++)
                if (!isfinite(e->val[(size_t)r * (size_t)e->cols + (size_t)c])) first = c;
        step = t0 + first / B;
        tg_tensor_set_label(e, h->prod.label, step + 1);
        tg_tensor_set_source(e, m->file, h->prod.line, h->prod.col);
        char what[TG_ERRMSG_LEN - 64];
        tg_describe_entry(e, TG_DESCRIBE_VALUE, what, sizeof what);
        tg_error(ctx, TG_ERR_NONFINITE, "non-finite value computed by %s", what);
    }
    return fail_at(m, &h->prod, step + 1);
}

/* The first pass of a chunk of K steps from t0: every step's inputs and
 * what the hoisted products read of them (kept per step in
 * keep[k * n_keep ..]), then the products of the chunk, each into its slot. */
static tg_status hoist_chunk(const tg_model *m, tg_tape *tape, const tg_unroll *u, tg_tensor **slots,
                             tg_tensor **keep, int t0, int K)
{
    const int B = u->batch, nk = m->n_keep;
    tg_status st;
    for (int k = 0; k < K; k++) {
        const int t = t0 + k;
        if ((st = step_leaves(m, tape, u, slots, B, t, LEAVES_INPUTS))) return st;
        if ((st = run(m, tape, m->pre, m->n_pre, slots, t, B))) return st;
        for (int j = 0; j < nk; j++) keep[(size_t)k * nk + j] = slots[m->keep[j]];
    }
    for (int i = 0; i < m->n_hoists; i++) {
        const tgm_hoist *h = &m->hoists[i];
        const int p = (int)h->prod.attrs[0], q = (int)h->prod.attrs[1], n = p + q + K * p;
        tg_tensor **in = tg_arena_alloc(&tape->arena, (size_t)n * sizeof *in);
        if (!in) return TG_ERR_NOMEM;
        for (int j = 0; j < p + q; j++) in[j] = slots[h->prod.in[j]];
        for (int k = 0; k < K; k++)
            for (int j = 0; j < p; j++) in[p + q + k * p + j] = keep[(size_t)k * nk + h->x_keep[j]];
        const double attrs[TG_MAX_ATTRS] = {p, q, K};
        tg_tensor *y = tg_record_checked(tape, h->prod.op, n, in, attrs, h->prod.rows, K * B);
        if (!y) return stack_failed(m, tape, h, t0, B);
        y->label = h->prod.label;
        y->file = m->file;
        y->line = h->prod.line;
        y->column = h->prod.col;
        slots[h->slot] = y;
    }
    return TG_OK;
}

tg_status tg_model_unroll(const tg_model *m, tg_tape *tape, tg_unroll *u)
{
    return tgm_unroll(m, tape, u, TGM_HOIST_AUTO);
}

tg_status tgm_unroll(const tg_model *m, tg_tape *tape, tg_unroll *u, int hoist)
{
    if (!m) return TG_ERR_ARG;
    tg_ctx *ctx = m->ctx;
    if (!tape || !u) return tg_error(ctx, TG_ERR_ARG, "unroll: tape and arguments are required");
    if (tg_tape_ctx(tape) != ctx) return tg_error(ctx, TG_ERR_ARG, "unroll: the tape belongs to another context");
    u->loss = NULL;
    u->outputs = NULL;
    u->state = NULL;
    const int ni = m->n_vars[TG_ROLE_INPUT], nt = m->n_vars[TG_ROLE_TARGET], ns = m->n_vars[TG_ROLE_STATE],
              no = m->n_outputs;
    const int B = u->batch;
    if (!u->params) return tg_error(ctx, TG_ERR_ARG, "unroll: params are required");
    if (u->params->ctx != ctx) return tg_error(ctx, TG_ERR_ARG, "unroll: the params belong to another context");
    if (B < 1 || B > TGM_MAX_BATCH || u->t0 < 0 || u->steps < 0 || u->steps > TGM_MAX_STEPS || u->seq_steps < 0)
        return tg_error(ctx, TG_ERR_ARG, "unroll: bad batch %d, t0 %d or steps %d", B, u->t0, u->steps);
    if (!u->inputs) return tg_error(ctx, TG_ERR_ARG, "unroll: inputs are required");
    for (int i = 0; i < ni; i++)
        if (!u->inputs[i]) return tg_error(ctx, TG_ERR_ARG, "unroll: input '%s' is NULL", m->vars[TG_ROLE_INPUT][i].name);
    if (u->targets)
        for (int i = 0; i < nt; i++)
            if (!u->targets[i])
                return tg_error(ctx, TG_ERR_ARG, "unroll: target '%s' is NULL", m->vars[TG_ROLE_TARGET][i].name);
    if (!u->targets && m->step_uses_targets)
        return tg_error(ctx, TG_ERR_ARG, "%s: the step of model %s reads targets, so targets are required", m->file,
                        m->name);
    for (int i = 0; i < m->n_vars[TGM_ROLE_CONST]; i++) {
        const tgm_var *v = &m->vars[TGM_ROLE_CONST][i];
        int init = v->init != TGM_INIT_DEFAULT ? v->init : v->cols ? TGM_INIT_XAVIER : TGM_INIT_ZEROS;
        if (!m->consts_drawn && (init == TGM_INIT_UNIFORM || init == TGM_INIT_NORMAL || init == TGM_INIT_XAVIER))
            return tg_error(ctx, TG_ERR_ARG, "unroll: constant '%s' is random: call tg_model_init_params first",
                            v->name);
    }
    const int T = u->seq_steps ? u->seq_steps : u->t0 + u->steps;
    /* a reverse sweep starts at the end: it needs the whole sequence at once */
    if (m->n_reverse && (u->t0 != 0 || u->steps != T))
        return tg_error(ctx, TG_ERR_ARG,
                        "%s: model %s has states that run in reverse, so it records whole sequences (steps %d..%d "
                        "of %d asked; truncated BPTT cannot split it)",
                        m->file, m->name, u->t0 + 1, u->t0 + u->steps, T);
    const int at_end = u->t0 + u->steps == T; /* this call reaches the end: final equations run */

    tg_arena *arena = &tape->arena;
    const int K = u->steps, tables = m->n_reverse ? (K ? K : 1) : 1;
    const size_t per = (size_t)m->n_slots * sizeof(tg_tensor *);
    tg_tensor **base = tg_arena_alloc(arena, per * (size_t)tables);
    tg_tensor **outs = tg_arena_alloc(arena, (size_t)(K * no + 1) * sizeof *outs);
    tg_tensor **state = tg_arena_alloc(arena, (size_t)(ns + 1) * sizeof *state);
    tg_tensor **init = tg_arena_alloc(arena, (size_t)(ns + 1) * sizeof *init);
    if (!base || !outs || !state || !init) return TG_ERR_NOMEM;
    tg_status st;
    if ((st = shared_leaves(m, tape, u, base, B))) return st;
    for (int i = 0; i < ns; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_STATE][i];
        const tg_real *given = u->state0 ? u->state0[i] : NULL;
        if (!(init[i] = initial_state(m, tape, v, B, given, v->reverse ? T + 1 : u->t0))) return tg_status_last(ctx);
    }
    const int last = T - 1;
    const int with_loss = u->targets && m->loss_slot >= 0;
    tg_tensor *loss = NULL;
    const tgm_instr *step = u->each_op ? m->step_each_op : m->step;
    const tgm_instr *loss_code = u->each_op ? m->loss_each_op : m->loss;
    const int *n_phase = u->each_op ? m->n_phase_each_op : m->n_phase;
    const int n_loss = u->each_op ? m->n_loss_each_op : m->n_loss;
    const tgm_instr *rev = step + n_phase[0], *both = rev + n_phase[1];
    tg_tensor **slots = base;
    if (!m->n_reverse) {
        /* one table: each step overwrites the last one's slots */
        const bool hoisted = hoisting(m, tape, u, hoist);
        const int chunk = TGM_HOIST_CHUNK < K ? TGM_HOIST_CHUNK : K;
        tg_tensor **keep = NULL;
        int n_code = n_phase[0];
        if (hoisted) {
            if (!(keep = tg_arena_alloc(arena, (size_t)chunk * (size_t)m->n_keep * sizeof *keep + 1))) return TG_ERR_NOMEM;
            step = m->step_hoisted;
            n_code = m->n_step_hoisted;
        }
        for (int i = 0; i < ns; i++) slots[m->vars[TG_ROLE_STATE][i].slot] = init[i];
        for (int k = 0, k0 = 0, len = 0; k < K; k++) {
            const int t = u->t0 + k;
            if (hoisted && k == k0 + len) { /* the next chunk's stacks, before its steps */
                k0 = k;
                len = K - k < chunk ? K - k : chunk;
                if ((st = hoist_chunk(m, tape, u, slots, keep, t, len))) return st;
            }
            if ((st = step_leaves(m, tape, u, slots, B, t, hoisted ? LEAVES_REST : LEAVES_ALL))) return st;
            for (int j = 0; hoisted && j < m->n_keep; j++) slots[m->keep[j]] = keep[(size_t)(k - k0) * m->n_keep + j];
            if ((st = run_blocks(m, tape, step, n_code, slots, t, B, k - k0, len))) return st;
            for (int j = 0; j < no; j++) outs[(size_t)k * (size_t)no + (size_t)j] = slots[m->outputs[j].slot];
            if (with_loss && !m->loss_per_seq && (!m->loss_at_last || t == last)) {
                if ((st = run(m, tape, loss_code, n_loss, slots, t, B))) return st;
                if ((st = add_loss(m, tape, &loss, slots[m->loss_slot], t))) return st;
            }
            for (int i = 0; i < ns; i++) slots[m->vars[TG_ROLE_STATE][i].slot] = slots[m->vars[TG_ROLE_STATE][i].cur];
        }
        for (int i = 0; i < ns; i++) state[i] = slots[m->vars[TG_ROLE_STATE][i].slot];
    } else {
        /* a table per step: the sweeps meet in the step's own slots */
        for (int k = 1; k < K; k++) memcpy(base + (size_t)k * m->n_slots, base, per);
#define TABLE(k) (base + (size_t)(k) * (size_t)m->n_slots)
        for (int k = 0; k < K; k++) {
            tg_tensor **sl = TABLE(k);
            if ((st = step_leaves(m, tape, u, sl, B, k, LEAVES_ALL))) return st;
            for (int i = 0; i < ns; i++) {
                const tgm_var *v = &m->vars[TG_ROLE_STATE][i];
                if (!v->reverse) sl[v->slot] = k ? TABLE(k - 1)[v->cur] : init[i];
            }
            if ((st = run(m, tape, step, n_phase[0], sl, k, B))) return st;
        }
        for (int k = K - 1; k >= 0; k--) {
            tg_tensor **sl = TABLE(k);
            for (int i = 0; i < ns; i++) {
                const tgm_var *v = &m->vars[TG_ROLE_STATE][i];
                if (v->reverse) sl[v->slot] = k < K - 1 ? TABLE(k + 1)[v->cur] : init[i];
            }
            if ((st = run(m, tape, rev, n_phase[1], sl, k, B))) return st;
        }
        for (int k = 0; k < K; k++) {
            tg_tensor **sl = TABLE(k);
            if ((st = run(m, tape, both, n_phase[2], sl, k, B))) return st;
            for (int j = 0; j < no; j++) outs[(size_t)k * (size_t)no + (size_t)j] = sl[m->outputs[j].slot];
            if (with_loss && !m->loss_per_seq && (!m->loss_at_last || k == last)) {
                if ((st = run(m, tape, loss_code, n_loss, sl, k, B))) return st;
                if ((st = add_loss(m, tape, &loss, sl[m->loss_slot], k))) return st;
            }
        }
        /* each state at the end of its sweep */
        for (int i = 0; i < ns; i++) {
            const tgm_var *v = &m->vars[TG_ROLE_STATE][i];
            state[i] = K == 0 ? init[i] : TABLE(v->reverse ? 0 : K - 1)[v->cur];
        }
        slots = K ? TABLE(K - 1) : base;
#undef TABLE
    }
    /* only a loss reads final equations (outputs are per step), and they may
     * read targets: without targets there is nothing to run */
    if (at_end && with_loss && m->loss_per_seq) {
        for (int i = 0; i < ns; i++) {
            const tgm_var *v = &m->vars[TG_ROLE_STATE][i];
            if (v->final_slot >= 0) slots[v->final_slot] = state[i];
        }
        if ((st = run(m, tape, m->final, m->n_final, slots, T - 1, B))) return st;
        if ((st = run(m, tape, loss_code, n_loss, slots, T - 1, B))) return st;
        if ((st = add_loss(m, tape, &loss, slots[m->loss_slot], T - 1))) return st;
    }
    u->loss = loss;
    u->outputs = outs;
    u->state = state;
    return TG_OK;
}
