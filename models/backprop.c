/* backprop.c — tg_model_backprop: the forward and reverse sweep of a range of
 * steps in one call, in one recording or, under a memory budget, segment by
 * segment as the binomial schedule of models/revolve.c says.  Every segment is
 * recorded by tg_model_unroll and swept by the tape's one reverse sweep; this
 * file only decides which segment is on the tape when, and carries the
 * states forward and their gradient backward across segment boundaries
 * (docs/memory.md). */
#include "tg_model_internal.h"
#include "tg_revolve.h"

#include <inttypes.h>

/* The values of every state after the recording on the tape, into the
 * caller's buffers (entries may be NULL). */
static void copy_states(const tg_model *m, int B, tg_tensor *const *state, tg_real *const *out)
{
    if (!out) return;
    for (int i = 0; i < m->n_vars[TG_ROLE_STATE]; i++)
        if (out[i])
            memcpy(out[i], tg_data(state[i]), (size_t)m->vars[TG_ROLE_STATE][i].rows * (size_t)B * sizeof(tg_real));
}

/* One recording of the whole range and one sweep: what memory = 0 asks for,
 * and what a budget that holds everything gets. */
static tg_status whole(const tg_model *m, tg_tape *tape, tg_unroll *u, tg_real *const *state_out, double *loss)
{
    tg_tape_reset(tape);
    tg_status st = tg_model_unroll(m, tape, u);
    if (st) return st;
    copy_states(m, u->batch, u->state, state_out);
    if (u->loss && (st = tg_backward(tape, u->loss))) return st;
    if (loss) *loss = u->loss ? tg_item(u->loss) : 0;
    if (tape->seg_hook) tape->seg_hook(tape, u->t0, u->steps, tape->seg_hook_user);
    return TG_OK;
}

/* "1.0 KiB", "12 bytes": budgets in messages */
static const char *human(char *buf, size_t len, size_t bytes)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, len, "%zu byte%s", bytes, bytes == 1 ? "" : "s");
        return buf;
    }
    double v = (double)bytes / 1024;
    int i = 0;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, "%.1f %s", v, unit[i]);
    return buf;
}

/* ---- the sweep under a budget --------------------------------------------------------------- */
/* What one call under a budget holds besides the tape: per-state arrays; the
 * working state (where advances leave the state); the carried gradient of the
 * states; the snapshots past the start (which is the caller's state0,
 * borrowed); a generator state per snapshot (dropout's masks) and the
 * schedule's stack.  The first part is allocated before measuring, the rest
 * once the plan says how many snapshots. */
typedef struct bp_run {
    const tg_model *m;
    tg_ctx *ctx;
    tg_tape *tape;
    const tg_unroll *u;   /* the caller's; read only */
    tg_unroll seg;        /* the recording under way */
    int ns, B, t0, N, T, L, n;
    size_t S;             /* bytes of one copy of all states, cache-line rounded */
    /* per-state arrays (one allocation, `arrays`) */
    size_t *off;          /* its offset in a state copy, in tg_reals */
    bool *carry;          /* its gradient crosses segment boundaries */
    const tg_real **src;  /* where the next recording starts */
    tg_tensor **leaves, **seeds;
    const tg_real **grads;
    void *arrays;
    size_t arrays_bytes;
    /* the plan's buffers (one allocation, `block`) */
    tg_real *W, *G, *snaps;  /* working state, carried gradient, snapshots 1..s-1 */
    uint64_t (*rng)[4];   /* per slot */
    tgr_frame *stack;
    void *block;
    size_t block_bytes;
    bool src_given;       /* src is set (else the caller's state0 as it is) */
    size_t tape_max;
} bp_run;

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t arrays_layout(bp_run *b, char *carve)
{
    size_t at = 0;
#define PART(field, n)                                                                 \
    do {                                                                               \
        if (carve) b->field = (void *)(carve + at);                                   \
        at += round64(sizeof *b->field * (size_t)(n));                                 \
    } while (0)
    PART(off, b->ns);
    PART(carry, b->ns);
    PART(src, b->ns);
    PART(leaves, b->ns);
    PART(seeds, b->ns);
    PART(grads, b->ns);
    return at;
}

/* Bytes of the plan's block for s snapshots: linear in s, as the planner
 * assumes; with carve, points b's buffers into it. */
static size_t block_layout(bp_run *b, int s, char *carve)
{
    size_t at = 0;
    const size_t S = b->S;
    if (carve) {
        b->W = (tg_real *)carve;
        b->G = (tg_real *)(carve + S);
        b->snaps = (tg_real *)(carve + 2 * S);
    }
    at = 2 * S + S * (size_t)(s - 1);
    if (carve) b->rng = (void *)(carve + at);
    at += sizeof *b->rng * (size_t)s;
    if (carve) b->stack = (void *)(carve + at);
    at += sizeof *b->stack * (size_t)s;
    return at;
}

static size_t state_bytes(const tg_model *m, int B)
{
    size_t S = 0;
    for (int i = 0; i < m->n_vars[TG_ROLE_STATE]; i++) S += (size_t)m->vars[TG_ROLE_STATE][i].rows * (size_t)B;
    return round64(S * sizeof(tg_real));
}

static void note_tape(bp_run *b)
{
    size_t t = tg_tape_bytes(b->tape);
    if (t > b->tape_max) b->tape_max = t;
}

/* The leaves the unroller made for the segment's start states (copies of
 * state0, labelled with the state's name at the segment's first step). */
static void find_leaves(bp_run *b)
{
    for (int i = 0; i < b->ns; i++) b->leaves[i] = NULL;
    int found = 0, len = tg_tape_length(b->tape);
    for (int e = 0; e < len && found < b->ns; e++) {
        tg_tensor *t = tg_tape_at(b->tape, e);
        if (t->op || t->kind != TG_KIND_INPUT || t->step != b->seg.t0) continue;
        for (int i = 0; i < b->ns; i++)
            if (!b->leaves[i] && t->label == b->m->vars[TG_ROLE_STATE][i].name) {
                b->leaves[i] = t;
                found++;
                break;
            }
    }
    for (int i = 0; i < b->ns; i++)
        TG_ASSERT(b->leaves[i]); /* unroll.c records every initial state as such a leaf */
}

/* Finds the start leaves and makes those of carried states need a gradient. */
static void require_carried(bp_run *b)
{
    find_leaves(b);
    int k = 0;
    for (int i = 0; i < b->ns; i++)
        if (b->carry[i]) b->seeds[k++] = b->leaves[i];
    tg_tape_require_grad(b->tape, b->seeds, k);
}

/* Records steps [t0, t0 + len) of the sequence from b->src onto the reset
 * tape; with_grad makes the start states need a gradient (those that carry). */
static tg_status record(bp_run *b, int t0, int len, bool with_grad)
{
    tg_tape_reset(b->tape);
    b->seg = *b->u;
    b->seg.t0 = t0;
    b->seg.steps = len;
    b->seg.seq_steps = b->T;
    if (b->src_given) b->seg.state0 = b->src;
    tg_status st = tg_model_unroll(b->m, b->tape, &b->seg);
    note_tape(b);
    if (st || !with_grad) return st;
    require_carried(b);
    return TG_OK;
}

/* The sweep of the segment on the tape: from its loss (if it has one) and
 * from the carried gradient of its final states (if seeded). */
static tg_status sweep(bp_run *b, bool seeded, bool check_loss)
{
    int k = 0;
    for (int i = 0; seeded && i < b->ns; i++)
        if (b->carry[i]) {
            b->seeds[k] = b->seg.state[i];
            b->grads[k++] = b->G ? b->G + b->off[i] : NULL;
        }
    if (!b->seg.loss && !k) return TG_OK;
    tg_status st = tg_backward_seeded(b->tape, b->seg.loss, k, b->seeds, b->grads, check_loss);
    note_tape(b);
    return st;
}

/* What a segment of len steps ending where the range ends costs on the tape
 * (start states needing a gradient, final states seeded, the loss there):
 * no segment of that length costs more.  Measured in the arena's exact mode
 * within limit (0: none); *over when the limit was reached. */
static tg_status measure(bp_run *b, int len, size_t limit, size_t *bytes, size_t *entries, bool *over)
{
    tg_tape *tp = b->tape;
    tg_tape_reset(tp);
    tg_arena_release(&tp->arena);
    tp->arena.exact = true;
    tp->arena.limit = limit;
    tp->arena.limit_hit = false;
    const bool anomaly = tp->detect_anomaly;
    tp->detect_anomaly = false; /* values at a made-up start state prove nothing */
    tg_sweep_hook hook = tp->hook; /* nor are these sweeps the caller's to watch */
    tp->hook = NULL;
    bool whole_seq = b->m->n_reverse > 0;
    int t0 = whole_seq ? 0 : b->t0 + b->N - len;
    tg_real *G = b->G;
    b->G = NULL; /* seeds of zeros */
    b->src_given = false;
    tg_status st;
    if (whole_seq) {
        int T = b->T;
        b->T = len;
        st = record(b, t0, len, false);
        b->T = T;
    } else {
        st = record(b, t0, len, false);
    }
    if (!st && !whole_seq) {
        /* which states carry a gradient: those whose final value depends on
         * the parameters, directly or through another state that carries */
        require_carried(b);
        for (bool grew = true; grew;) {
            grew = false;
            int k = 0;
            for (int i = 0; i < b->ns; i++)
                if (!b->carry[i] && b->seg.state[i]->requires_grad) {
                    b->carry[i] = true;
                    b->seeds[k++] = b->leaves[i];
                    grew = true;
                }
            tg_tape_require_grad(tp, b->seeds, k);
        }
    }
    if (!st) {
        /* an op adds into a parameter's gradient only where there is one: the
         * caller's gradients stay as they were */
        tg_params *ps = b->u->params;
        for (int i = 0; i < ps->n; i++) ps->list[i].t->grad = NULL;
        st = sweep(b, !whole_seq, false);
        for (int i = 0; i < ps->n; i++) ps->list[i].t->grad = ps->grads + ps->list[i].offset;
    }
    b->G = G;
    note_tape(b);
    *bytes = tp->arena.reserved;
    *entries = (size_t)tg_tape_length(tp);
    *over = false;
    if (st && tp->arena.limit_hit) {
        *over = true;
        tg_clear_error(b->ctx);
        st = TG_OK;
    }
    tp->arena.exact = false;
    tp->arena.limit = 0;
    tp->detect_anomaly = anomaly;
    tp->hook = hook;
    tg_tape_reset(tp);
    tg_arena_release(&tp->arena);
    return st;
}

/* Sizes the tape for the plan's segment: one arena chunk and an entry list
 * that recording L steps never outgrows.  What the last call left is kept
 * when it is large enough and within room (the budget less the rest): a
 * fresh chunk of hundreds of MiB costs a page fault per 4 KiB on every call,
 * as much as a third of the step's time. */
static tg_status prepare_tape(bp_run *b, const tgr_costs *c, int L, size_t room)
{
    size_t arena = c->tape1 + c->tape_step * (size_t)(L - 1);
    size_t entries = c->entries1 + c->entries_step * (size_t)(L - 1);
    tg_tape *tp = b->tape;
    const tg_chunk *h = tp->arena.head;
    if (h && !h->next && h->size >= arena && (size_t)tp->cap >= entries &&
        tg_tape_bytes(tp) <= room) {
        tg_tape_reset(tp);
        note_tape(b);
        return TG_OK;
    }
    tg_status st;
    if ((st = tg_tape_set_capacity(b->tape, (int)entries))) return st;
    if ((st = tg_arena_reserve(&b->tape->arena, arena))) return st;
    note_tape(b);
    return TG_OK;
}

static void copy_to(bp_run *b, tg_real *dst, tg_tensor *const *state)
{
    for (int i = 0; i < b->ns; i++)
        memcpy(dst + b->off[i], tg_data(state[i]),
               (size_t)b->m->vars[TG_ROLE_STATE][i].rows * (size_t)b->B * sizeof(tg_real));
}

static void point_at(bp_run *b, const tg_real *buf)
{
    for (int i = 0; i < b->ns; i++) b->src[i] = buf + b->off[i];
    b->src_given = true;
}

/* Runs the schedule: n segments of L steps (the last shorter), s snapshots. */
static tg_status run_schedule(bp_run *b, int s, tg_real *const *state_out, double *loss, long long *forward)
{
    tg_ctx *ctx = b->ctx;
    tgr_sched sc;
    tgr_init(&sc, b->n, s, b->stack);
    uint64_t rng_end[4];
    memcpy(b->rng[0], ctx->rng, sizeof ctx->rng);
    memcpy(rng_end, ctx->rng, sizeof rng_end);
    double sum = 0;
    long long fwd = 0;
    tg_status st = TG_OK;
    for (tgr_action a; !st && (a = tgr_next(&sc)).kind != TGR_DONE;) {
        switch (a.kind) {
        case TGR_RESTORE:
            if (a.slot == 0) b->src_given = false; /* the caller's state0 (or the states' inits) */
            else point_at(b, b->snaps + b->S / sizeof(tg_real) * (size_t)(a.slot - 1));
            memcpy(ctx->rng, b->rng[a.slot], sizeof ctx->rng);
            break;
        case TGR_ADVANCE:
            for (int k = a.from; k < a.to && !st; k++) {
                if (!(st = record(b, b->t0 + k * b->L, b->L, false))) {
                    copy_to(b, b->W, b->seg.state);
                    point_at(b, b->W);
                    fwd += b->L;
                }
            }
            break;
        case TGR_STORE: {
            tg_real *dst = b->snaps + b->S / sizeof(tg_real) * (size_t)(a.slot - 1);
            memcpy(dst, b->W, b->S);
            point_at(b, dst);
            memcpy(b->rng[a.slot], ctx->rng, sizeof ctx->rng);
            break;
        }
        case TGR_REVERSE: {
            const int k = a.from, t0 = b->t0 + k * b->L, len = k == b->n - 1 ? b->N - k * b->L : b->L;
            if ((st = record(b, t0, len, k > 0))) break;
            fwd += len;
            if (k == b->n - 1) { /* the end of the one forward pass */
                copy_states(b->m, b->B, b->seg.state, state_out);
                memcpy(rng_end, ctx->rng, sizeof rng_end);
            }
            if ((st = sweep(b, k < b->n - 1, true))) break;
            if (b->seg.loss) sum += tg_item(b->seg.loss);
            if (k > 0)
                for (int i = 0; i < b->ns; i++)
                    if (b->carry[i]) {
                        size_t n = (size_t)b->m->vars[TG_ROLE_STATE][i].rows * (size_t)b->B;
                        tg_real *g = tg_grad(b->leaves[i]);
                        if (g) memcpy(b->G + b->off[i], g, n * sizeof(tg_real));
                        else memset(b->G + b->off[i], 0, n * sizeof(tg_real));
                    }
            if (b->tape->seg_hook) b->tape->seg_hook(b->tape, t0, len, b->tape->seg_hook_user);
            break;
        }
        default:
            break;
        }
    }
    if (st) return st;
    memcpy(ctx->rng, rng_end, sizeof rng_end); /* where one recording would leave dropout's generator */
    if (loss) *loss = sum;
    *forward = fwd;
    return TG_OK;
}

/* Measures what a step costs and chooses the plan, or fails naming the
 * least budget that would do. */
static tg_status measure_and_choose(bp_run *b, tgr_costs *c, size_t memory, tgr_choice *ch)
{
    const tg_model *m = b->m;
    tg_ctx *ctx = b->ctx;
    tg_tape *tape = b->tape;
    char h1[32], h2[32], h3[32];
    /* measure a segment of 1, 2 and 3 steps, each within the budget */
    uint64_t rng0[4];
    memcpy(rng0, ctx->rng, sizeof rng0); /* measuring draws dropout masks too */
    /* the entry list is sized before each measurement (k steps make at most
     * k times the entries of one), so that the arena's limit is all that
     * can grow */
    tg_status st = tg_tape_set_capacity(tape, 64);
    const size_t held = 64 * sizeof(void *) + b->arrays_bytes;
    size_t u1 = 0, e1 = 0, u2 = 0, e2 = 0;
    bool over = false, too_small = false;
    if (!st) st = measure(b, 1, memory > held ? memory - held : 1, &u1, &e1, &over);
    /* what measuring one step held (its entry list may have grown) */
    size_t held1 = (size_t)tape->cap * sizeof(void *) + b->arrays_bytes;
    if (!st && !over && round64(u1) + held1 > memory) over = true;
    too_small = over;
    c->max_segment = 1;
    for (int k = 2; !st && !over && k <= 3 && k <= b->N; k++) {
        size_t list = (size_t)k * e1 * sizeof(void *) + b->arrays_bytes, uk, ek;
        if (list >= memory || (st = tg_tape_set_capacity(tape, k * (int)e1))) {
            over = true;
        } else if (!(st = measure(b, k, memory - list, &uk, &ek, &over)) && !over) {
            /* a tape that recycles gradient buffers settles after a step or
             * two: the larger of the first two increments */
            size_t du = k == 2 ? uk - u1 : uk - u2, de = k == 2 ? ek - e1 : ek - e2;
            if (du > c->tape_step) c->tape_step = du;
            if (de > c->entries_step) c->entries_step = de;
            u2 = uk;
            e2 = ek;
            c->max_segment = k == 3 || k == b->N ? 0 : k;
        }
        if (k == 2) too_small = over && c->whole_only;
    }
    if (!st && too_small) {
        /* to name the least budget that would do, measure again without the
         * limit (only on the way to failing may the tape pass the budget) */
        st = measure(b, 1, 0, &u1, &e1, &over);
        if (held1 < (size_t)tape->cap * sizeof(void *) + b->arrays_bytes)
            held1 = (size_t)tape->cap * sizeof(void *) + b->arrays_bytes;
        if (!st && c->whole_only && b->N >= 2 && !(st = measure(b, 2, 0, &u2, &e2, &over))) {
            c->tape_step = u2 - u1;
            c->entries_step = e2 - e1;
        }
    }
    c->tape1 = u1;
    c->entries1 = e1;
    memcpy(ctx->rng, rng0, sizeof rng0);
    if (!st && (too_small || tgr_choose(c, memory > b->arrays_bytes ? memory - b->arrays_bytes : 0, ch))) {
        if (c->whole_only) {
            size_t need = tgr_tape_bytes(c, b->N) + b->arrays_bytes;
            st = tg_error(ctx, TG_ERR_ARG,
                          "%s: model %s has states that run in reverse, so it records whole sequences: %d steps at "
                          "batch %d need %s; memory budget %s is too small (the least that would do is %zu bytes)",
                          m->file, m->name, b->N, b->B, human(h1, sizeof h1, need), human(h2, sizeof h2, memory), need);
        } else {
            size_t least = tgr_tape_bytes(c, 1) + b->arrays_bytes + (b->N > 1 ? c->fixed : 0);
            if (least < round64(u1) + held1) least = round64(u1) + held1; /* what measuring it takes */
            st = tg_error(ctx, TG_ERR_ARG,
                          "memory budget %s is too small: one step of model %s at batch %d needs %s on the tape; "
                          "the least budget that would do is %zu bytes (%s)",
                          human(h1, sizeof h1, memory), m->name, b->B, human(h2, sizeof h2, tgr_tape_bytes(c, 1)),
                          least, human(h3, sizeof h3, least));
        }
    }
    return st;
}

/* ---- the measured cost, kept on the tape ------------------------------------------------- */
/* What a step costs depends on the model's graph, the batch, the range, the
 * fused or per-operator form, dropout (training), gradient recycling, which
 * start states are given, the parameter set and the budget (which bounds
 * the measuring).  A training loop calls with all of these the same every
 * minibatch: the first call measures, the next ones reuse it.  The model is
 * known by its address and a hash of its text and dimensions, so a model
 * loaded at a freed model's address is not taken for it. */
typedef struct bp_key {
    const tg_model *m;
    const tg_params *params;
    uint64_t model_hash, state0_mask;
    size_t memory;
    int batch, t0, steps, T, each_op, training, recycle;
} bp_key;

typedef struct bp_cache {
    bp_key key;
    tgr_costs c;
    int ns;
    bool carry[]; /* per state: its gradient crosses segment boundaries */
} bp_cache;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* Fills *k, padding included (keys are compared with memcmp). */
static void make_key(bp_key *k, const tg_model *m, const tg_tape *tape, const tg_unroll *u, size_t memory, int T)
{
    memset(k, 0, sizeof *k);
    k->m = m;
    k->params = u->params;
    uint64_t h = fnv(0xcbf29ce484222325ull, m->text, m->text_len);
    for (int r = 0; r < 6; r++)
        for (int i = 0; i < m->n_vars[r]; i++) {
            int dims[2] = {m->vars[r][i].rows, m->vars[r][i].cols};
            h = fnv(h, dims, sizeof dims);
        }
    k->model_hash = h;
    for (int i = 0; i < m->n_vars[TG_ROLE_STATE] && i < 64; i++)
        if (u->state0 && u->state0[i]) k->state0_mask |= (uint64_t)1 << i;
    k->memory = memory;
    k->batch = u->batch;
    k->t0 = u->t0;
    k->steps = u->steps;
    k->T = T;
    k->each_op = u->each_op != 0;
    k->training = tape->training;
    k->recycle = tape->recycle_grads;
}

/* The kept cost for this key, or NULL. */
static const bp_cache *cache_find(const tg_tape *tape, const bp_key *k, int ns)
{
    const bp_cache *bc = tape->bp_cache;
    if (!bc || bc->ns != ns || memcmp(&bc->key, k, sizeof *k) != 0 || ns > 64) return NULL;
    return bc;
}

/* Keeps c for the next call (up to 64 states: the key's mask). */
static tg_status cache_store(tg_tape *tape, const bp_key *k, const tgr_costs *c, const bool *carry, int ns)
{
    if (ns > 64) return TG_OK;
    size_t bytes = sizeof(bp_cache) + (size_t)ns * sizeof(bool);
    bp_cache *bc = tape->bp_cache;
    if (bc && tape->bp_cache_bytes != bytes) {
        tg_free(tape->ctx, bc, tape->bp_cache_bytes);
        tape->bp_cache = bc = NULL;
        tape->bp_cache_bytes = 0;
    }
    if (!bc) {
        if (!(bc = tg_alloc(tape->ctx, bytes))) return TG_ERR_NOMEM;
        tape->bp_cache = bc;
        tape->bp_cache_bytes = bytes;
    }
    memcpy(&bc->key, k, sizeof *k); /* padding too: the key is compared with memcmp */
    bc->c = *c;
    bc->ns = ns;
    memcpy(bc->carry, carry, (size_t)ns * sizeof(bool));
    return TG_OK;
}

static tg_status budgeted(const tg_model *m, tg_tape *tape, tg_unroll *u, size_t memory, tg_real *const *state_out,
                          double *loss, tg_bptt_plan *plan)
{
    tg_ctx *ctx = m->ctx;
    bp_run b = {.m = m, .ctx = ctx, .tape = tape, .u = u, .ns = m->n_vars[TG_ROLE_STATE], .B = u->batch,
                .t0 = u->t0, .N = u->steps, .T = u->seq_steps ? u->seq_steps : u->t0 + u->steps};
    b.S = state_bytes(m, b.B);
    b.arrays_bytes = arrays_layout(&b, NULL);
    if (!(b.arrays = tg_alloc(ctx, b.arrays_bytes))) return TG_ERR_NOMEM;
    memset(b.arrays, 0, b.arrays_bytes);
    arrays_layout(&b, b.arrays);
    for (int i = 0, at = 0; i < b.ns; i++) {
        b.off[i] = (size_t)at;
        at += m->vars[TG_ROLE_STATE][i].rows * b.B;
    }
    tgr_costs c = {.steps = b.N, .whole_only = m->n_reverse > 0};
    c.fixed = block_layout(&b, 1, NULL);
    c.per_snapshot = block_layout(&b, 2, NULL) - block_layout(&b, 1, NULL);
    bp_key key;
    make_key(&key, m, tape, u, memory, b.T);
    const bp_cache *kept = cache_find(tape, &key, b.ns);
    tg_status st = TG_OK;
    tgr_choice ch = {0};
    if (kept && memory > b.arrays_bytes && !tgr_choose(&kept->c, memory - b.arrays_bytes, &ch)) {
        c = kept->c;
        memcpy(b.carry, kept->carry, (size_t)b.ns * sizeof(bool));
    } else {
        st = measure_and_choose(&b, &c, memory, &ch);
        if (!st) st = cache_store(tape, &key, &c, b.carry, b.ns);
    }
    long long forward = b.N;
    b.tape_max = 0; /* measuring stayed within the budget's share (the limit); now the plan's tape */
    const size_t room = memory - b.arrays_bytes;
    if (!st && ch.segments == 1) {
        if (!(st = prepare_tape(&b, &c, b.N, room))) st = whole(m, tape, u, state_out, loss);
        note_tape(&b);
    } else if (!st) {
        b.L = ch.segment;
        b.n = ch.segments;
        b.block_bytes = block_layout(&b, ch.snapshots, NULL);
        if (!(b.block = tg_alloc(ctx, b.block_bytes))) st = TG_ERR_NOMEM;
        if (!st) {
            block_layout(&b, ch.snapshots, b.block);
            if (!(st = prepare_tape(&b, &c, b.L, room - b.block_bytes)))
                st = run_schedule(&b, ch.snapshots, state_out, loss, &forward);
            if (!st) { /* the caller's view of the tape: its first segment */
                u->loss = b.seg.loss;
                u->outputs = b.seg.outputs;
                u->state = b.seg.state;
            }
            tg_free(ctx, b.block, b.block_bytes);
        }
    }
    tg_free(ctx, b.arrays, b.arrays_bytes);
    if (st) return st;
    if (plan) {
        plan->steps = b.N;
        plan->segment = ch.segment;
        plan->segments = ch.segments;
        plan->snapshots = ch.snapshots;
        plan->forward_steps = ch.segments == 1 ? b.N : forward;
        plan->recomputed = plan->forward_steps - b.N;
        plan->tape_bytes = b.tape_max;
        plan->snapshot_bytes = b.arrays_bytes + (ch.segments == 1 ? 0 : b.block_bytes);
    }
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
    if (m->loss_slot < 0)
        return tg_error(ctx, TG_ERR_ARG, "%s: model %s declares no loss to differentiate", m->file, m->name);
    if (loss) *loss = 0;
    if (plan) memset(plan, 0, sizeof *plan);
    if (u->batch < 1 || u->batch > TGM_MAX_BATCH || u->t0 < 0 || u->t0 > TGM_MAX_STEPS || u->steps < 0 ||
        u->steps > TGM_MAX_STEPS || u->seq_steps < 0 || u->seq_steps > TGM_MAX_STEPS)
        return tg_error(ctx, TG_ERR_ARG, "backprop: bad batch %d, t0 %d, steps %d or seq_steps %d", u->batch, u->t0,
                        u->steps, u->seq_steps);
    if (u->seq_steps && u->t0 + u->steps > u->seq_steps)
        return tg_error(ctx, TG_ERR_ARG, "backprop: steps %d..%d run past the sequence's %d steps", u->t0 + 1,
                        u->t0 + u->steps, u->seq_steps);
    if (memory && u->steps > 0) return budgeted(m, tape, u, memory, state_out, loss, plan);
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
