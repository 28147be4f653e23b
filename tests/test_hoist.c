/* test_hoist.c — the state-free products stacked over chunks of steps
 * (models/hoist.c, ops/stack_affine.c) where the unroller decides to:
 * which calls hoist, and that memory budgets (tg_model_backprop, which
 * records segments through the same unroller) agree with one recording.
 * The agreement of hoisted and plain tapes on every shipped model, the
 * gradient check with stack entries and the anomaly messages are in
 * test_models.c. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <tapegrad.h>
#include "models_testutil.h"
#include "tg_model_internal.h"

#ifdef TG_REAL_DOUBLE
#define EPS DBL_EPSILON
#else
#define EPS FLT_EPSILON
#endif

/* elman at the given input and hidden sizes, output 4.  With `low`, the
 * unroller's threshold (tgm_hoist_pays) is lowered so that U of 64 x 256
 * hoists at batch 4 or less, and the tests stay small. */
static tg_model *wide_elman(tg_ctx *ctx, int input, int hidden, int low)
{
    mt_chdir_root();
    const tg_dim dims[] = {{"input", input}, {"hidden", hidden}, {"output", 4}};
    tg_model *m = tg_model_load(ctx, "models/elman.yaml", dims, 3);
    cr_assert(m, "%s", tg_errmsg(ctx));
    if (low) {
        m->hoist_max_batch = 4;
        m->hoist_min_elems = 64 * 256;
    }
    return m;
}

typedef struct stacks {
    int n, steps;     /* stack_affine entries, the steps they cover */
    int widest, bad;  /* most steps in one; entries whose columns are not K B */
} stacks;

static stacks count_stacks(tg_tape *tape, int B)
{
    stacks s = {0};
    for (int i = 0; i < tg_tape_length(tape); i++) {
        tg_tensor *t = tg_tape_at(tape, i);
        if (strcmp(tg_tensor_op(t), "stack_affine") != 0) continue;
        int K = (int)tg_attr(t, 2);
        s.n++;
        s.steps += K;
        if (K > s.widest) s.widest = K;
        s.bad += tg_cols(t) != K * B;
    }
    return s;
}

static void noop_hook(tg_tensor *entry, void *user)
{
    (void)entry;
    (void)user;
}

/* What tg_model_unroll records: by default, stacks only where U holds
 * 256 x 1024 elements or more at batch 1 or 2; with the threshold lowered,
 * stacks of TGM_HOIST_CHUNK steps (the last one shorter) at batch 1 and 4;
 * none past the batch or under the size, none on a tape whose sweep a hook
 * watches entry by entry (per-step gradient norms), none for a call of one
 * step. */
Test(hoist, the_unroller_stacks_chunks_where_it_pays)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    const int T = 2 * TGM_HOIST_CHUNK + 6;
    struct { int input, hidden, low, B, steps, hook, want; } cases[] = {
        {256, 1024, 0, 1, 3, 0, 1}, {256, 1024, 0, 2, 3, 0, 1}, {256, 1024, 0, 4, 3, 0, 0}, {128, 512, 0, 1, 3, 0, 0},
        {64, 256, 1, 1, T, 0, 3},   {64, 256, 1, 4, T, 0, 3},   {64, 256, 1, 8, T, 0, 0},   {32, 128, 1, 1, T, 0, 0},
        {64, 256, 1, 1, T, 1, 0},   {64, 256, 1, 1, 1, 0, 0},   {64, 256, 1, 1, 2, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tg_model *m = wide_elman(ctx, cases[c].input, cases[c].hidden, cases[c].low);
        tg_params *ps = tg_params_new(ctx);
        cr_assert_eq(tg_model_init_params(m, ps, 3), TG_OK, "%s", tg_errmsg(ctx));
        tg_dataset *d = tg_dataset_random(ctx, m, cases[c].steps, cases[c].B, 4);
        cr_assert(d, "%s", tg_errmsg(ctx));
        const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
        const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
        tg_tape *tape = tg_tape_new(ctx);
        if (cases[c].hook) tg_tape_set_sweep_hook(tape, noop_hook, NULL);
        tg_unroll u = {.params = ps, .batch = cases[c].B, .steps = cases[c].steps, .inputs = in, .targets = tg};
        cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
        stacks s = count_stacks(tape, cases[c].B);
        cr_expect_eq(s.n, cases[c].want, "case %zu: %d stacks, want %d", c, s.n, cases[c].want);
        if (s.n) {
            cr_expect_eq(s.steps, cases[c].steps, "case %zu: the stacks cover %d steps of %d", c, s.steps,
                         cases[c].steps);
            cr_expect_leq(s.widest, TGM_HOIST_CHUNK);
            cr_expect_eq(s.bad, 0, "case %zu: a stack is not [m, K B]", c);
        }
        cr_assert_eq(tg_backward(tape, u.loss), TG_OK, "%s", tg_errmsg(ctx));
        tg_tape_free(tape);
        tg_dataset_free(d);
        tg_params_free(ps);
        tg_model_free(m);
    }
    tg_ctx_free(ctx);
}

/* ---- memory budgets ---------------------------------------------------- */
typedef struct seg_log {
    int segments, bad;     /* segments; ones whose stacks do not cover exactly their steps */
    int stacked, multi;    /* segments holding a stack; of two steps or more */
    int B;
} seg_log;

static void check_segment(tg_tape *tape, int t0, int steps, void *user)
{
    (void)t0;
    seg_log *l = user;
    stacks s = count_stacks(tape, l->B);
    l->segments++;
    l->stacked += s.n > 0;
    l->multi += steps >= 2;
    /* a segment of two steps or more stacks its own steps, never a
     * neighbour's: the stacks are recorded per tg_model_unroll call */
    if (steps >= 2 && (s.steps != steps || s.bad || s.n != (steps + TGM_HOIST_CHUNK - 1) / TGM_HOIST_CHUNK)) l->bad++;
    if (steps < 2 && s.n) l->bad++;
}

/* Steps [t0, T) of a random sequence: tg_model_backprop under budgets from
 * one that holds everything down to segments of a few steps gives the
 * gradients, the final state and the loss of one recording (which stacks
 * chunks of 32 steps, where a segment stacks its own) within the rounding
 * of sums of T terms, and stays within the budget. */
static void budgets_agree(int B, int t0)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    tg_model *m = wide_elman(ctx, 64, 256, 1);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 7), TG_OK, "%s", tg_errmsg(ctx));
    const int T = 2 * TGM_HOIST_CHUNK + 6, H = 256;
    /* W of the file's normal(0, 0.3) at hidden 256 makes the map chaotic,
     * where the rounding of a sum grows without bound over 70 steps: scaled
     * to a spectral radius near 0.5, and U out of saturation */
    const char *shrink[] = {"W", "U"};
    for (int i = 0; i < 2; i++) {
        tg_tensor *p = tg_params_find(ps, shrink[i]);
        for (size_t j = 0; j < tg_size(p); j++) tg_data(p)[j] *= (tg_real)0.1;
    }
    tg_dataset *d = tg_dataset_random(ctx, m, T, B, 8);
    cr_assert(d, "%s", tg_errmsg(ctx));
    const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_real *h0 = malloc((size_t)H * (size_t)B * sizeof *h0);
    cr_assert(h0);
    for (int i = 0; i < H * B; i++) h0[i] = (tg_real)(0.05 * ((i * 7) % 11) - 0.25);
    const tg_real *state0[1] = {h0};
    tg_unroll base = {.params = ps, .batch = B, .t0 = t0, .steps = T - t0, .seq_steps = T, .inputs = in,
                      .targets = tg, .state0 = t0 ? state0 : NULL};

    /* one recording */
    tg_tape *tape = tg_tape_new(ctx);
    tg_unroll u = base;
    tg_params_zero_grad(ps);
    cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_gt(count_stacks(tape, B).n, 1, "one recording stacks its chunks");
    cr_assert_eq(tg_backward(tape, u.loss), TG_OK, "%s", tg_errmsg(ctx));
    const double want_loss = tg_item(u.loss);
    const size_t np = tg_params_total(ps);
    tg_real *want = malloc(np * sizeof *want), *want_h = malloc((size_t)H * B * sizeof *want_h),
            *got_h = malloc((size_t)H * B * sizeof *got_h);
    cr_assert(want && want_h && got_h);
    memcpy(want, tg_params_grads(ps), np * sizeof *want);
    memcpy(want_h, tg_data(u.state[0]), (size_t)H * B * sizeof *want_h);
    const size_t whole = tg_tape_bytes(tape);
    double scale = 1;
    for (size_t j = 0; j < np; j++) scale = fmax(scale, fabs((double)want[j]));

    int small_segments = 0;
    for (int k = 0; k < 6; k++) {
        /* from twice the whole tape down to a sixteenth of it */
        const size_t memory = k == 0 ? 2 * whole : whole >> k;
        tg_tape_reset(tape);
        seg_log log = {.B = B};
        tg_tape_set_segment_hook(tape, check_segment, &log);
        tg_params_zero_grad(ps);
        u = base;
        double loss = NAN;
        tg_bptt_plan plan;
        tg_real *out[1] = {got_h};
        tg_status st = tg_model_backprop(m, tape, &u, memory, out, &loss, &plan);
        tg_tape_set_segment_hook(tape, NULL, NULL);
        if (st == TG_ERR_ARG) break; /* below the least budget */
        cr_assert_eq(st, TG_OK, "B=%d t0=%d memory %zu: %s", B, t0, memory, tg_errmsg(ctx));
        cr_expect_leq(plan.tape_bytes + plan.snapshot_bytes, memory);
        cr_expect_leq(tg_tape_bytes(tape), memory);
        cr_expect_eq(log.segments, plan.segments);
        cr_expect_eq(log.bad, 0, "B=%d t0=%d memory %zu: %d of %d segments stack other steps than their own", B, t0,
                     memory, log.bad, log.segments);
        cr_expect_eq(log.stacked, log.multi, "B=%d t0=%d memory %zu: %d of %d segments of two steps or more stack",
                     B, t0, memory, log.stacked, log.multi);
        small_segments |= plan.segments > 2;
        const tg_real *g = tg_params_grads(ps);
        for (size_t j = 0; j < np; j++)
            if (!(fabs((double)g[j] - (double)want[j]) <= 16.0 * T * EPS * scale)) {
                cr_expect_fail("B=%d t0=%d memory %zu (segments of %d): gradient %zu is %.9g, one recording %.9g", B,
                               t0, memory, plan.segment, j, (double)g[j], (double)want[j]);
                break;
            }
        for (int i = 0; i < H * B; i++)
            if (!(fabs((double)got_h[i] - (double)want_h[i]) <= 16.0 * T * EPS)) {
                cr_expect_fail("B=%d t0=%d memory %zu: final state %d is %.9g, not %.9g", B, t0, memory, i,
                               (double)got_h[i], (double)want_h[i]);
                break;
            }
        cr_expect(fabs(loss - want_loss) <= 4.0 * (T + 1) * EPS * fmax(1.0, fabs(want_loss)),
                  "B=%d t0=%d memory %zu: loss %.9g, one recording %.9g", B, t0, memory, loss, want_loss);
    }
    cr_expect(small_segments, "B=%d t0=%d: no budget split the sequence into more than 2 segments", B, t0);
    free(want);
    free(want_h);
    free(got_h);
    free(h0);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

Test(hoist, memory_budgets_agree_with_one_recording, .timeout = 120)
{
    budgets_agree(1, 0);
    budgets_agree(4, 0);
    budgets_agree(1, 5); /* truncated BPTT: a middle piece from a given state */
}

/* U's column of the per-step gradient norms: rows (steps) with a norm of U's
 * gradient, and at which steps. */
static int u_rows(const tg_grad_norms *gn, int *first, int *last)
{
    int rows, cols, u = -1, n = 0;
    tg_grad_norms_size(gn, &rows, &cols);
    for (int c = 0; c < cols; c++) {
        int is_param;
        if (!strcmp(tg_grad_norms_name(gn, c, &is_param), "U") && is_param) u = c;
    }
    cr_assert_geq(u, 0, "no column for U");
    *first = *last = -1;
    for (int r = 0; r < rows; r++) {
        int step = tg_grad_norms_step(gn, r);
        double v = tg_grad_norms_at(gn, r, u);
        if (step < 0 || isnan(v) || v == 0) continue;
        if (*first < 0) *first = step;
        *last = step;
        n++;
    }
    return n;
}

/* tapegrad.h's promise: norms of a tape that stacked its chunks credit a
 * chunk's dU to the chunk's first step; watched before it is recorded, the
 * tape is recorded step by step and every step has its part. */
Test(hoist, gradient_norms_per_step_need_a_watched_tape)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    tg_model *m = wide_elman(ctx, 64, 256, 1);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 3), TG_OK, "%s", tg_errmsg(ctx));
    const int T = TGM_HOIST_CHUNK + 8;
    tg_dataset *d = tg_dataset_random(ctx, m, T, 1, 4);
    cr_assert(d, "%s", tg_errmsg(ctx));
    const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_tape *tape = tg_tape_new(ctx);
    for (int watched = 0; watched < 2; watched++) {
        tg_tape_reset(tape);
        tg_params_zero_grad(ps);
        tg_grad_norms *gn = watched ? tg_grad_norms_watch(tape, ps) : NULL;
        cr_assert(!watched || gn, "%s", tg_errmsg(ctx));
        tg_unroll u = {.params = ps, .batch = 1, .steps = T, .inputs = in, .targets = tg};
        cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
        cr_expect_eq(count_stacks(tape, 1).n, watched ? 0 : 2);
        if (watched) {
            cr_assert_eq(tg_backward(tape, u.loss), TG_OK, "%s", tg_errmsg(ctx));
            cr_assert_eq(tg_grad_norms_finish(gn), TG_OK, "%s", tg_errmsg(ctx));
        } else {
            gn = tg_grad_norms_new(tape, u.loss, ps);
            cr_assert(gn, "%s", tg_errmsg(ctx));
        }
        int first, last, n = u_rows(gn, &first, &last);
        if (watched) {
            cr_expect_eq(n, T, "U has a norm at %d steps of %d", n, T);
        } else { /* steps 1 and 33, the chunks' first */
            cr_expect_eq(n, 2, "U has a norm at %d steps", n);
            cr_expect_eq(first, 1);
            cr_expect_eq(last, TGM_HOIST_CHUNK + 1);
        }
        tg_grad_norms_free(gn);
    }
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* The shape rules name what is wrong (tg_op_shape, as model checkers and a
 * hand-written tape call them). */
Test(hoist, shape_rules_name_the_mistake)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    static const struct {
        const char *op;
        int n, shape[6][2];
        double attrs[4];
        const char *want;
    } cases[] = {
        {"stack_affine", 4, {{3, 2}, {3, 1}, {2, 2}, {2, 2}}, {1, 1, 3},
         "stack_affine: 1 products, 1 terms and 3 steps take 5 inputs, not 4"},
        {"stack_affine", 4, {{3, 2}, {3, 1}, {2, 2}, {2, 2}}, {0, 1, 2},
         "stack_affine: products 0, terms 1 and steps 2 must be whole numbers, at least 1, 0 and 1"},
        {"stack_affine", 4, {{3, 2}, {3, 2}, {2, 2}, {2, 2}}, {1, 1, 2}, "stack_affine: term 1 is [3, 2]; it must be [3, 1]"},
        {"stack_affine", 4, {{3, 2}, {3, 1}, {2, 2}, {2, 3}}, {1, 1, 2},
         "stack_affine: step 2, product 1: [3, 2] @ [2, 3]; it must be [2, 2]"},
        {"affine_block", 3, {{3, 3}, {3, 4}, {3, 12}}, {1, 1, 3, 3},
         "affine_block: block 3 of 3: the block must be a whole number from 0 to blocks - 1"},
        {"affine_block", 3, {{3, 3}, {3, 4}, {3, 10}}, {1, 1, 0, 3},
         "affine_block: the stack [3, 10] does not split into 3 blocks of columns"},
        {"affine_block", 3, {{3, 3}, {3, 4}, {3, 15}}, {1, 1, 0, 3},
         "affine_block: product 1: [3, 3] @ [3, 4]; the block is [3, 5]"},
        {"affine_block", 2, {{3, 3}, {3, 12}}, {1, 1, 0, 3}, "affine_block: 1 products need 3 inputs and the stack, not 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int out[2];
        int n_attrs = strcmp(cases[i].op, "stack_affine") ? 4 : 3;
        cr_expect_eq(tg_op_shape(ctx, cases[i].op, cases[i].n, cases[i].shape, n_attrs, cases[i].attrs, out),
                     TG_ERR_SHAPE, "case %zu: %s", i, tg_errmsg(ctx));
        cr_expect_str_eq(tg_errmsg(ctx), cases[i].want, "case %zu", i);
    }
    /* and what they give */
    int out[2];
    const int st[5][2] = {{3, 2}, {3, 1}, {2, 4}, {2, 4}, {2, 4}};
    cr_assert_eq(tg_op_shape(ctx, "stack_affine", 5, st, 3, (const double[]){1, 1, 3}, out), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(out[0] == 3 && out[1] == 12, "[%d, %d]", out[0], out[1]);
    const int bl[3][2] = {{3, 3}, {3, 4}, {3, 12}};
    cr_assert_eq(tg_op_shape(ctx, "affine_block", 3, bl, 4, (const double[]){1, 1, 2, 3}, out), TG_OK, "%s",
                 tg_errmsg(ctx));
    cr_expect(out[0] == 3 && out[1] == 4, "[%d, %d]", out[0], out[1]);
    tg_ctx_free(ctx);
}

/* With deferred parameter gradients (core/defer.c) a stacked step's W
 * product waits for the sweep's end as a plain step's does: a hoisted and
 * deferred sweep of wide elman gives the gradients of a plain, immediate one
 * within the rounding of sums of T terms, and affine_block entries did
 * defer. */
Test(hoist, stacked_steps_defer_their_w_products)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    tg_model *m = wide_elman(ctx, 64, 256, 1);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 5), TG_OK, "%s", tg_errmsg(ctx));
    const char *shrink[] = {"W", "U"}; /* contractive, as in budgets_agree */
    for (int i = 0; i < 2; i++) {
        tg_tensor *p = tg_params_find(ps, shrink[i]);
        for (size_t j = 0; j < tg_size(p); j++) tg_data(p)[j] *= (tg_real)0.1;
    }
    const int T = TGM_HOIST_CHUNK + 8;
    tg_dataset *d = tg_dataset_random(ctx, m, T, 2, 6);
    cr_assert(d, "%s", tg_errmsg(ctx));
    const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    const size_t np = tg_params_total(ps);
    tg_real *grads[2];
    int stacked[2], deferred_blocks[2];
    for (int hoisted = 0; hoisted < 2; hoisted++) {
        tg_tape *tape = tg_tape_new(ctx);
        tape->defer.immediate = !hoisted;
        tg_params_zero_grad(ps);
        tg_unroll u = {.params = ps, .batch = 2, .steps = T, .inputs = in, .targets = tg};
        cr_assert_eq(tgm_unroll(m, tape, &u, hoisted ? TGM_HOIST_AUTO : TGM_HOIST_NEVER), TG_OK, "%s",
                     tg_errmsg(ctx));
        stacked[hoisted] = count_stacks(tape, 2).n;
        cr_assert_eq(tg_backward(tape, u.loss), TG_OK, "%s", tg_errmsg(ctx));
        deferred_blocks[hoisted] = 0;
        for (int i = 0; i < tape->defer.n_groups; i++)
            deferred_blocks[hoisted] += !strcmp(tape->defer.g[i].op->def.name, "affine_block");
        grads[hoisted] = malloc(np * sizeof(tg_real));
        cr_assert(grads[hoisted]);
        memcpy(grads[hoisted], tg_params_grads(ps), np * sizeof(tg_real));
        tg_tape_free(tape);
    }
    cr_expect_eq(stacked[0], 0);
    cr_expect_eq(stacked[1], 2);
    cr_expect_eq(deferred_blocks[0], 0);
    /* one group: every step's W product, across both chunks */
    cr_expect_eq(deferred_blocks[1], 1, "%d groups of affine_block deferred", deferred_blocks[1]);
    double scale = 1;
    for (size_t j = 0; j < np; j++) scale = fmax(scale, fabs((double)grads[0][j]));
    for (size_t j = 0; j < np; j++)
        if (!(fabs((double)grads[1][j] - (double)grads[0][j]) <= 16.0 * T * EPS * scale)) {
            cr_expect_fail("gradient %zu: hoisted and deferred %.9g, plain and immediate %.9g", j, (double)grads[1][j],
                           (double)grads[0][j]);
            break;
        }
    free(grads[0]);
    free(grads[1]);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}
