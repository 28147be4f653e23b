/* backprop.c — tg_model_backprop: the forward and reverse sweep of a range of
 * steps in one call, in one recording or, under a memory budget, segment by
 * segment as the binomial schedule of models/revolve.c says.  Every segment is
 * recorded by tg_model_unroll and swept by the tape's one reverse sweep; this
 * file only decides which segment is on the tape when, and carries the
 * states forward and their gradient backward across segment boundaries. */
#include "tg_model_internal.h"

/* The values of every state after the recording on the tape, into the
 * caller's buffers (entries may be NULL). */
static void copy_states(const tg_model *m, const tg_unroll *u, tg_real *const *out)
{
    if (!out) return;
    for (int i = 0; i < m->n_vars[TG_ROLE_STATE]; i++)
        if (out[i])
            memcpy(out[i], tg_data(u->state[i]),
                   (size_t)m->vars[TG_ROLE_STATE][i].rows * (size_t)u->batch * sizeof(tg_real));
}

/* One recording of the whole range and one sweep: what memory = 0 asks for,
 * and what a budget that holds everything gets. */
static tg_status whole(const tg_model *m, tg_tape *tape, tg_unroll *u, tg_real *const *state_out, double *loss)
{
    tg_tape_reset(tape);
    tg_status st = tg_model_unroll(m, tape, u);
    if (st) return st;
    copy_states(m, u, state_out);
    if (u->loss && (st = tg_backward(tape, u->loss))) return st;
    if (loss) *loss = u->loss ? tg_item(u->loss) : 0;
    if (tape->seg_hook) tape->seg_hook(tape, u->t0, u->steps, tape->seg_hook_user);
    return TG_OK;
}

tg_status tg_model_backprop(const tg_model *m, tg_tape *tape, tg_unroll *u, size_t memory,
                            tg_real *const *state_out, double *loss, tg_bptt_plan *plan)
{
    if (!m) return TG_ERR_ARG;
    tg_ctx *ctx = m->ctx;
    if (!tape || !u) return tg_error(ctx, TG_ERR_ARG, "backprop: tape and arguments are required");
    if (tg_tape_ctx(tape) != ctx) return tg_error(ctx, TG_ERR_ARG, "backprop: the tape belongs to another context");
    if (!u->targets) return tg_error(ctx, TG_ERR_ARG, "backprop: targets are required (the loss reads them)");
    if (m->loss_slot < 0) return tg_error(ctx, TG_ERR_ARG, "%s: model %s declares no loss to differentiate", m->file, m->name);
    if (loss) *loss = 0;
    if (plan) memset(plan, 0, sizeof *plan);
    if (memory) return tg_error(ctx, TG_ERR_ARG, "backprop: a memory budget is not implemented yet");
    tg_status st = whole(m, tape, u, state_out, loss);
    if (st) return st;
    if (plan) {
        plan->steps = u->steps;
        plan->segment = u->steps;
        plan->segments = 1;
        plan->snapshots = 1;
        plan->forward_steps = u->steps;
        plan->tape_bytes = tg_tape_bytes(tape);
    }
    return TG_OK;
}
