/* unroll.c — records a compiled model onto a tape for a range of time steps.
 * This is the hot path of training: per step it makes the input leaves and
 * runs the flat instruction list through tg_record(), with every name
 * already resolved to a slot; no strings, hashing or heap allocation (the
 * slot table and result arrays come from the tape's arena). */
#include "tg_model_internal.h"

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
static tg_status run(const tg_model *m, tg_tape *tape, const tgm_instr *code, int n, tg_tensor **slots, int t,
                     int B)
{
    tg_tensor *in[TGM_MAX_ARGS];
    for (int i = 0; i < n; i++) {
        const tgm_instr *k = &code[i];
        if (!k->op) {
            slots[k->out] = slots[k->in[0]];
            continue;
        }
        for (int j = 0; j < k->n_in; j++) in[j] = slots[k->in[j]];
        tg_tensor *y = k->checked ? tg_record_checked(tape, k->op, k->n_in, in, k->attrs, k->rows,
                                                      k->cols == TGM_BATCH ? B : k->cols)
                                  : tg_record(tape, k->op, k->n_in, in, k->n_attrs, k->attrs);
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

tg_status tg_model_unroll(const tg_model *m, tg_tape *tape, tg_unroll *u)
{
    if (!m) return TG_ERR_ARG;
    tg_ctx *ctx = m->ctx;
    if (!tape || !u) return tg_error(ctx, TG_ERR_ARG, "unroll: tape and arguments are required");
    if (tg_tape_ctx(tape) != ctx) return tg_error(ctx, TG_ERR_ARG, "unroll: the tape belongs to another context");
    u->loss = NULL;
    u->outputs = NULL;
    u->state = NULL;
    const int np = m->n_vars[TG_ROLE_PARAM], ni = m->n_vars[TG_ROLE_INPUT], nt = m->n_vars[TG_ROLE_TARGET],
              ns = m->n_vars[TG_ROLE_STATE], no = m->n_outputs;
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

    tg_arena *arena = &tape->arena;
    tg_tensor **slots = tg_arena_alloc(arena, (size_t)m->n_slots * sizeof *slots);
    tg_tensor **outs = tg_arena_alloc(arena, (size_t)(u->steps * no + 1) * sizeof *outs);
    tg_tensor **state = tg_arena_alloc(arena, (size_t)(ns + 1) * sizeof *state);
    if (!slots || !outs || !state) return TG_ERR_NOMEM;

    for (int i = 0; i < np; i++) {
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
    for (int i = 0; i < ns; i++) {
        const tgm_var *v = &m->vars[TG_ROLE_STATE][i];
        const tg_real *given = u->state0 ? u->state0[i] : NULL;
        if (!(slots[v->slot] = initial_state(m, tape, v, B, given, u->t0))) return tg_status_last(ctx);
    }
    const int last = (u->seq_steps ? u->seq_steps : u->t0 + u->steps) - 1;
    const int with_loss = u->targets && m->loss_slot >= 0;
    tg_tensor *loss = NULL;
    tg_status st;
    const tgm_instr *step = u->each_op ? m->step_each_op : m->step;
    const tgm_instr *loss_code = u->each_op ? m->loss_each_op : m->loss;
    const int n_step = u->each_op ? m->n_step_each_op : m->n_step;
    const int n_loss = u->each_op ? m->n_loss_each_op : m->n_loss;
    for (int k = 0; k < u->steps; k++) {
        const int t = u->t0 + k;
        for (int i = 0; i < ni; i++) {
            const tgm_var *v = &m->vars[TG_ROLE_INPUT][i];
            const tg_real *x = u->inputs[i] + (size_t)t * (size_t)v->rows * (size_t)B;
            if (!(slots[v->slot] = leaf(m, tape, v, B, x, t + 1, true))) return tg_status_last(ctx);
        }
        for (int i = 0; u->targets && i < nt; i++) {
            const tgm_var *v = &m->vars[TG_ROLE_TARGET][i];
            const tg_real *y = u->targets[i] + (size_t)t * (size_t)v->rows * (size_t)B;
            if (!(slots[v->slot] = leaf(m, tape, v, B, y, t + 1, true))) return tg_status_last(ctx);
        }
        if ((st = run(m, tape, step, n_step, slots, t, B))) return st;
        for (int j = 0; j < no; j++) outs[(size_t)k * (size_t)no + (size_t)j] = slots[m->outputs[j].slot];
        if (with_loss && (!m->loss_at_last || t == last)) {
            if ((st = run(m, tape, loss_code, n_loss, slots, t, B))) return st;
            tg_tensor *l = slots[m->loss_slot];
            if (loss) {
                /* both [1, 1] (the model was checked): no shape rule to run */
                static const double no_attrs[TG_MAX_ATTRS];
                tg_tensor *pair[2] = {loss, l};
                if (!(loss = tg_record_checked(tape, tg_op_by_id(ctx, TG_OP_ADD), 2, pair, no_attrs, 1, 1)))
                    return tg_status_last(ctx);
                tg_tensor_set_label(loss, "loss", t + 1);
                tg_tensor_set_source(loss, m->file, m->loss_line, m->loss_col);
            } else
                loss = l;
        }
    }
    for (int i = 0; i < ns; i++) state[i] = slots[m->vars[TG_ROLE_STATE][i].slot];
    u->loss = loss;
    u->outputs = outs;
    u->state = state;
    return TG_OK;
}
