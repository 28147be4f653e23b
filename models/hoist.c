/* hoist.c — finds the work of a fused step that no state reaches, so that
 * the unroller records it for a chunk of steps (TGM_HOIST_CHUNK) as one
 * product.
 *
 * In a = U @ x + W @ h + b the product U @ x and the bias b depend on the
 * input only: for K steps they are one [m, n] @ [n, K B] product (a
 * stack_affine entry, ops/stack_affine.c) instead of K narrow ones, and
 * backward forms dU, db and dx in one pass too.  The pass reads the fused
 * step (fuse.c's affine entries), never hand-marked cells:
 *
 * - a slot is state-free when it is an input, or written once per step by
 *   a deterministic built-in op (not dropout, not a registered op) from
 *   params, constants, inputs and state-free slots written before;
 * - in an affine entry, a product P @ x with P a param or constant and x
 *   state-free, and the bias terms ([m, 1] params or constants) beside it,
 *   move into a stack_affine; the entry becomes affine_block, which reads
 *   its step's block of the stack as a term;
 * - the instructions that compute a hoisted x (an embedding lookup) move to
 *   `pre`, which the unroller runs for every step of a chunk before its
 *   products.
 *
 * An affine entry that is itself hoisted cannot feed another product's x
 * (its value needs the stack first); instructions are taken in order, so
 * every producer is decided before its readers.  Models with states that
 * run in reverse keep the plain fused step. */
#include "tg_model_internal.h"

/* Measured (models/README.md, Fusion): one training step of elman, CPU
 * time, 100 steps, the hoisted products over chunks of 32 steps against one
 * per step, both with the parameter gradients deferred to the sweep's end
 * (core/defer.c, which already turns the per-step rank-B updates dU += da
 * x^T into one product; without it hoisting gained 11-36% at 256 x 1024,
 * batch 1, and 2-5% from 64 x 256 at batch 1 to 4).  What is left is the
 * forward U @ x, a matrix-vector product that reads U again every step at
 * batch 1: U of 256 x 1024 at batch 1 a median 4% less CPU time (11
 * pairs of runs on a busy machine, from 18% less to 24% more), batch 2 3%
 * less (5 pairs), batch 4 6-10% more; 128 x 512 and 64 x 256 at batch 1 no gain (3-14% more
 * CPU time in 4 of 6 pairs, the same wall time: a BLAS call and one more
 * pass over the stack per step cost what the product saves); at batch 8
 * and more, hoisting never gained (the per-step products already run at
 * the BLAS rate).  Tests lower the model's copy (hoist_max_batch,
 * hoist_min_elems) to hoist small models. */
enum { HOIST_MAX_BATCH = 2, HOIST_MIN_ELEMS = 256 * 1024 };

enum { LEAF_NONE, LEAF_INVARIANT, LEAF_INPUT };

typedef struct hz {
    tg_model *m;
    const tgm_instr *code;
    int n;
    const int *rows, *cols;
    int *leaf;     /* per slot: LEAF_* */
    int *writer;   /* per slot: the one instruction writing it, -1 none, -2 several */
    signed char *free_memo; /* per slot: -1 unknown, 0 no, 1 state-free */
    char *rewrite; /* per instruction: its affine reads a stack */
    char *pre;     /* per instruction: moved to pre */
} hz;

static int op_is(const tgm_instr *k, int id) { return k->op && k->op->id == id; }

/* Slot s holds a state-free value when instruction `at` reads it. */
static int state_free(hz *h, int s, int at)
{
    if (h->leaf[s] == LEAF_INPUT || h->leaf[s] == LEAF_INVARIANT) return 1;
    if (s < h->m->first_temp) return 0; /* states, targets, t */
    int p = h->writer[s];
    if (p < 0 || p >= at) return 0; /* several writers, or last step's value */
    if (h->free_memo[s] >= 0) return h->free_memo[s];
    const tgm_instr *k = &h->code[p];
    int ok = !h->rewrite[p] && (!k->op || (k->op->id < TG_OP_BUILTIN_COUNT && k->op->id != TG_OP_DROPOUT));
    for (int j = 0; ok && j < k->n_in; j++) ok = state_free(h, k->in[j], p);
    h->free_memo[s] = (signed char)ok;
    return ok;
}

/* Moves the instructions that compute slot s (state-free) to pre. */
static void mark_pre(hz *h, int s)
{
    if (h->leaf[s] != LEAF_NONE) return;
    int p = h->writer[s];
    if (h->pre[p]) return;
    h->pre[p] = 1;
    for (int j = 0; j < h->code[p].n_in; j++) mark_pre(h, h->code[p].in[j]);
}

/* Product j of affine entry k is hoistable: an invariant matrix times a
 * state-free per-step operand. */
static int hoistable(hz *h, const tgm_instr *k, int i, int j)
{
    int a = k->in[2 * j], x = k->in[2 * j + 1];
    return h->leaf[a] == LEAF_INVARIANT && h->cols[a] != TGM_BATCH && h->cols[x] == TGM_BATCH &&
           state_free(h, x, i);
}

static int is_bias(const hz *h, int t) { return h->leaf[t] == LEAF_INVARIANT && h->cols[t] == 1; }

tg_status tgm_hoist_find(tg_model *m, const int *rows, const int *cols)
{
    m->n_hoists = 0;
    m->hoist_max_batch = HOIST_MAX_BATCH;
    m->hoist_min_elems = HOIST_MIN_ELEMS;
    if (m->n_reverse || m->n_step == 0) return TG_OK;
    tg_ctx *ctx = m->ctx;
    const int ns = m->n_slots, n = m->n_step;
    hz h = {.m = m, .code = m->step, .n = n, .rows = rows, .cols = cols};
    size_t ints = (size_t)ns * 2 * sizeof(int), bytes = ints + (size_t)ns + 2 * (size_t)n;
    char *mem = tg_alloc(ctx, bytes);
    if (!mem) return TG_ERR_NOMEM;
    memset(mem, 0, bytes);
    h.leaf = (int *)mem;
    h.writer = h.leaf + ns;
    h.free_memo = (signed char *)(mem + ints);
    h.rewrite = (char *)h.free_memo + ns;
    h.pre = h.rewrite + n;
    tg_status st = TG_OK;

    for (int s = 0; s < ns; s++) {
        h.writer[s] = -1;
        h.free_memo[s] = -1;
    }
    for (int i = 0; i < m->n_vars[TG_ROLE_PARAM]; i++) h.leaf[m->vars[TG_ROLE_PARAM][i].slot] = LEAF_INVARIANT;
    for (int i = 0; i < m->n_cslots; i++) h.leaf[m->cslots[i].slot] = LEAF_INVARIANT;
    for (int i = 0; i < m->n_vars[TG_ROLE_INPUT]; i++) h.leaf[m->vars[TG_ROLE_INPUT][i].slot] = LEAF_INPUT;
    for (int i = 0; i < n; i++) {
        int s = m->step[i].out;
        h.writer[s] = h.writer[s] == -1 ? i : -2;
    }
    /* a slot written in the step is no leaf (inputs and params never are) */
    for (int s = 0; s < ns; s++)
        if (h.writer[s] != -1) h.leaf[s] = LEAF_NONE;

    int n_hoists = 0;
    for (int i = 0; i < n; i++) {
        const tgm_instr *k = &m->step[i];
        if (!op_is(k, TG_OP_AFFINE) || k->cols != TGM_BATCH || !k->checked) continue;
        int np = (int)k->attrs[0], any = 0;
        for (int j = 0; j < np && !any; j++) any = hoistable(&h, k, i, j);
        if (!any) continue;
        h.rewrite[i] = 1;
        n_hoists++;
        for (int j = 0; j < np; j++)
            if (hoistable(&h, k, i, j)) mark_pre(&h, k->in[2 * j + 1]);
    }
    if (!n_hoists) goto done;

    /* what the first pass keeps per step: the inputs, then pre's results */
    int n_pre = 0;
    for (int i = 0; i < n; i++) n_pre += h.pre[i];
    const int ni = m->n_vars[TG_ROLE_INPUT];
    st = TG_ERR_NOMEM;
    m->keep = tgm_palloc(&m->pool, (size_t)(ni + n_pre + 1) * sizeof *m->keep);
    m->pre = tgm_palloc(&m->pool, (size_t)(n_pre + 1) * sizeof *m->pre);
    m->step_hoisted = tgm_palloc(&m->pool, (size_t)(n - n_pre) * sizeof *m->step_hoisted);
    m->hoists = tgm_palloc(&m->pool, (size_t)n_hoists * sizeof *m->hoists);
    if (!m->keep || !m->pre || !m->step_hoisted || !m->hoists) goto done;
    for (int i = 0; i < ni; i++) m->keep[i] = m->vars[TG_ROLE_INPUT][i].slot;
    m->n_keep = ni;
    m->n_pre = m->n_step_hoisted = 0;
    const tg_op *stack = tg_op_by_id(ctx, TG_OP_STACK_AFFINE), *block = tg_op_by_id(ctx, TG_OP_AFFINE_BLOCK);
    for (int i = 0; i < n; i++) {
        const tgm_instr *k = &m->step[i];
        if (h.pre[i]) {
            m->pre[m->n_pre++] = *k;
            m->keep[m->n_keep++] = k->out;
            continue;
        }
        tgm_instr *d = &m->step_hoisted[m->n_step_hoisted++];
        *d = *k;
        if (!h.rewrite[i]) continue;
        /* split the sum: hoisted products and biases, the rest */
        const int np = (int)k->attrs[0], nt = k->n_in - 2 * np;
        int hp = 0, hb = 0;
        for (int j = 0; j < np; j++) hp += hoistable(&h, k, i, j);
        for (int j = 0; j < nt; j++) hb += is_bias(&h, k->in[2 * np + j]);
        tgm_hoist *hz_ = &m->hoists[m->n_hoists++];
        int *pin = tgm_palloc(&m->pool, (size_t)(2 * hp + hb) * sizeof *pin);
        int *rin = tgm_palloc(&m->pool, (size_t)(k->n_in - 2 * hp - hb + 1) * sizeof *rin);
        hz_->x_keep = tgm_palloc(&m->pool, (size_t)hp * sizeof *hz_->x_keep);
        hz_->x_rows = tgm_palloc(&m->pool, (size_t)hp * sizeof *hz_->x_rows);
        if (!pin || !rin || !hz_->x_keep || !hz_->x_rows) goto done;
        int a = 0, xb = hp + hb, r = 0;
        for (int j = 0; j < np; j++) {
            int A = k->in[2 * j], x = k->in[2 * j + 1];
            if (hoistable(&h, k, i, j)) {
                int q = 0;
                while (m->keep[q] != x) q++; /* an input or pre's result: kept */
                hz_->x_keep[a] = q;
                hz_->x_rows[a] = h.rows[x];
                pin[a++] = A;
                pin[xb++] = x;
            } else {
                rin[r++] = A;
                rin[r++] = x;
            }
        }
        for (int j = 0; j < nt; j++) {
            int t = k->in[2 * np + j];
            if (is_bias(&h, t)) pin[a++] = t;
            else rin[r++] = t;
        }
        hz_->slot = m->n_slots++;
        rin[r++] = hz_->slot;
        hz_->prod = *k;
        hz_->prod.op = stack;
        hz_->prod.in = pin;
        hz_->prod.n_in = 2 * hp + hb;
        hz_->prod.n_attrs = 3;
        hz_->prod.attrs[0] = hp;
        hz_->prod.attrs[1] = hb;
        hz_->prod.attrs[2] = hz_->prod.attrs[3] = 0;
        hz_->prod.out = hz_->slot;
        d->op = block;
        d->in = rin;
        d->n_in = r;
        d->n_attrs = 4;
        d->attrs[0] = np - hp;
        d->attrs[2] = d->attrs[3] = 0;
        d->stacked = 1;
        if (r > m->max_in) m->max_in = r;
    }
    st = TG_OK;
done:
    if (st) m->n_hoists = 0;
    tg_free(ctx, mem, bytes);
    return st;
}

bool tgm_hoist_pays(const tg_model *m, int batch)
{
    size_t elems = 0; /* of the hoisted matrices */
    for (int i = 0; i < m->n_hoists; i++)
        for (int j = 0; j < (int)m->hoists[i].prod.attrs[0]; j++)
            elems += (size_t)m->hoists[i].prod.rows * (size_t)m->hoists[i].x_rows[j];
    return batch <= m->hoist_max_batch && elems >= m->hoist_min_elems;
}
