/* test_backprop.c — tg_model_backprop against one recording swept by
 * tg_backward (tg_model_unroll + tg_backward, the reference): parameter
 * gradients, loss and final states on every shipped model, with and without
 * a memory budget; the plan's numbers; the budget kept; anomaly detection,
 * dropout and the segment hook under a budget; hostile arguments; and
 * tg_parse_size. */
#include <stdint.h>
#include <tapegrad.h>
#include "models_testutil.h"
#include "tg_internal.h" /* the tape's switch for immediate parameter gradients (core/defer.c) */

static tg_ctx *ctx_new(void)
{
    mt_chdir_root();
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    return ctx;
}

/* ---- tg_parse_size --------------------------------------------------------------------- */
MT_TEST(backprop, parse_size_reads_sizes)
{
    tg_ctx *ctx = ctx_new();
    static const struct { const char *text; size_t want; } ok[] = {
        {"0", 0},           {"4096", 4096},        {"4096B", 4096},         {"64K", 65536},
        {"64k", 65536},     {"64KB", 65536},       {"64KiB", 65536},        {"256M", 256u << 20},
        {"1.5G", (size_t)3 << 29}, {"0.5K", 512},  {".5K", 512},            {"1.0009765625K", 1025},
        {"1T", (size_t)1 << 40},   {"3.3K", 3379}, /* 3379.2 rounded down */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t got = 7;
        cr_expect_eq(tg_parse_size(ctx, ok[i].text, &got), TG_OK, "%s: %s", ok[i].text, tg_errmsg(ctx));
        cr_expect_eq(got, ok[i].want, "%s gave %zu, not %zu", ok[i].text, got, ok[i].want);
    }
    static const struct { const char *text, *why; } bad[] = {
        {"", "it is empty"},
        {"-1M", "a size cannot be negative"},
        {"M", "it does not start with a digit"},
        {" 1M", "it does not start with a digit"},
        {"1M ", "unexpected characters after the number"},
        {"12X", "unexpected characters after the number"},
        {"1.5", "a number of bytes must be whole"},
        {"1.M", "a digit must follow the point"},
        {"1e6", "unexpected characters after the number"},
        {"99999999999999999999", "it is too large"},
        {"16777216T", "it is too large"},
        {"18446744073709551615.9K", "it is too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t got = 7;
        cr_expect_eq(tg_parse_size(ctx, bad[i].text, &got), TG_ERR_ARG, "%s was accepted", bad[i].text);
        cr_expect_eq(got, 7, "%s: the result was written on failure", bad[i].text);
        char want[512];
        snprintf(want, sizeof want,
                 "size '%s': %s; a size is a number of bytes with an optional K, M, G or T (powers of 1024) and "
                 "an optional B, such as 4096, 64K, 256M or 1.5G",
                 bad[i].text, bad[i].why);
        cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    size_t b;
    cr_expect_eq(tg_parse_size(ctx, NULL, &b), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "parse_size: text and bytes are required");
    cr_expect_eq(tg_parse_size(ctx, "1K", NULL), TG_ERR_ARG);
    cr_expect_eq(tg_parse_size(NULL, "1K", &b), TG_ERR_ARG);
    tg_ctx_free(ctx);
}

/* ---- against one recording ------------------------------------------------------------- */
#include <float.h>
#include "tg_revolve.h"

#ifdef TG_REAL_DOUBLE
#define EPS DBL_EPSILON
#else
#define EPS FLT_EPSILON
#endif

/* One model, its parameters, a random sequence of T steps and batch B, and
 * what one recording of steps [t0, t0 + steps) gives. */
typedef struct fixture {
    tg_ctx *ctx;
    tg_model *m;
    tg_params *ps;
    tg_dataset *d;
    tg_tape *tape;
    int T, B, t0, steps, ns, each_op;
    const tg_real *inputs[16], *targets[16];
    tg_real *state0[16];     /* NULL entries: the inits */
    int has_state0;
    int batched;             /* the reference recorded a product over all its steps
                                (stack_affine, issue 15 part 2): segments batch fewer */
    int immediate;           /* parameter gradients added at every step, not deferred
                                to one product per sweep (core/defer.c) */
    tg_real *want_grads;     /* the reference */
    double want_loss;
    tg_real *want_state[16];
    size_t n_params;
} fixture;

static size_t state_len(fixture *f, int i)
{
    int rows;
    tg_model_var(f->m, TG_ROLE_STATE, i, &rows, NULL);
    return (size_t)rows * (size_t)f->B;
}

static tg_unroll fx_unroll(fixture *f)
{
    return (tg_unroll){.params = f->ps, .batch = f->B, .t0 = f->t0, .steps = f->steps, .seq_steps = f->T,
                       .inputs = f->inputs, .targets = f->targets,
                       .state0 = f->has_state0 ? (const tg_real *const *)f->state0 : NULL, .each_op = f->each_op};
}

static int fx_open(fixture *f, tg_ctx *ctx, const char *path, int T, int B, int t0, int with_state0, int each_op,
                   int immediate, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->ctx = ctx;
    f->m = mt_load_small(ctx, path);
    if (!tg_model_has_loss(f->m)) {
        tg_model_free(f->m);
        return 0;
    }
    /* a model with states that run in reverse records whole sequences */
    f->ns = tg_model_count(f->m, TG_ROLE_STATE);
    int reverse = 0;
    for (int i = 0; i < f->ns; i++) reverse |= tg_model_var_flags(f->m, TG_ROLE_STATE, i, NULL) & TG_VAR_REVERSE;
    if (reverse) t0 = 0;
    f->T = T;
    f->B = B;
    f->t0 = t0;
    f->steps = T - t0;
    f->each_op = each_op;
    f->ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(f->m, f->ps, seed), TG_OK, "%s", tg_errmsg(ctx));
    f->d = tg_dataset_random(ctx, f->m, T, B, seed + 1);
    cr_assert(f->d, "%s", tg_errmsg(ctx));
    cr_assert_leq(tg_model_count(f->m, TG_ROLE_INPUT), 16);
    for (int i = 0; i < tg_model_count(f->m, TG_ROLE_INPUT); i++)
        f->inputs[i] = tg_dataset_values(f->d, 0, TG_ROLE_INPUT, i);
    for (int i = 0; i < tg_model_count(f->m, TG_ROLE_TARGET); i++)
        f->targets[i] = tg_dataset_values(f->d, 0, TG_ROLE_TARGET, i);
    f->has_state0 = with_state0 && !reverse;
    for (int i = 0; i < f->ns; i++) {
        f->want_state[i] = calloc(state_len(f, i), sizeof(tg_real));
        if (!f->has_state0) continue;
        f->state0[i] = malloc(state_len(f, i) * sizeof(tg_real));
        for (size_t j = 0; j < state_len(f, i); j++) f->state0[i][j] = (tg_real)(0.5 * tg_rand_uniform(ctx) - 0.25);
    }
    f->tape = tg_tape_new(ctx);
    f->immediate = immediate;
    f->tape->defer.immediate = immediate;
    f->tape->defer.min_elems = 0; /* defer even these small cells */
    /* the reference: one recording, one sweep */
    f->n_params = tg_params_total(f->ps);
    tg_params_zero_grad(f->ps);
    tg_unroll u = fx_unroll(f);
    cr_assert_eq(tg_model_unroll(f->m, f->tape, &u), TG_OK, "%s: %s", path, tg_errmsg(ctx));
    cr_assert(u.loss, "%s: no loss recorded", path);
    cr_assert_eq(tg_backward(f->tape, u.loss), TG_OK, "%s: %s", path, tg_errmsg(ctx));
    f->want_loss = tg_item(u.loss);
    for (int i = 0; i < tg_tape_length(f->tape); i++)
        f->batched |= !strcmp(tg_tensor_op(tg_tape_at(f->tape, i)), "stack_affine");
    for (int i = 0; i < f->ns; i++) memcpy(f->want_state[i], tg_data(u.state[i]), state_len(f, i) * sizeof(tg_real));
    f->want_grads = malloc(f->n_params * sizeof(tg_real));
    memcpy(f->want_grads, tg_params_grads(f->ps), f->n_params * sizeof(tg_real));
    cr_assert(immediate || f->tape->defer.n_groups > 0, "%s: the reference deferred nothing", path);
    tg_tape_reset(f->tape);
    return 1;
}

static void fx_close(fixture *f)
{
    for (int i = 0; i < f->ns; i++) {
        free(f->state0[i]);
        free(f->want_state[i]);
    }
    free(f->want_grads);
    tg_tape_free(f->tape);
    tg_dataset_free(f->d);
    tg_params_free(f->ps);
    tg_model_free(f->m);
}

typedef struct hook_log {
    int calls, t0[4096], steps[4096];
} hook_log;

static void log_segment(tg_tape *tape, int t0, int steps, void *user)
{
    hook_log *h = user;
    cr_assert_gt(tg_tape_length(tape), 0, "the segment is on the tape");
    if (h->calls < 4096) {
        h->t0[h->calls] = t0;
        h->steps[h->calls] = steps;
    }
    h->calls++;
}

/* Runs tg_model_backprop under memory and checks it against the reference:
 * parameter gradients bit for bit, final states bit for bit, the loss within
 * the rounding of a sum, the plan's numbers and the budget. */
static void fx_check(fixture *f, const char *path, size_t memory, tg_bptt_plan *plan_out)
{
    tg_params_zero_grad(f->ps);
    tg_unroll u = fx_unroll(f);
    tg_real *out[16];
    for (int i = 0; i < f->ns; i++) out[i] = malloc(state_len(f, i) * sizeof(tg_real));
    hook_log *h = calloc(1, sizeof *h);
    tg_tape_set_segment_hook(f->tape, log_segment, h);
    double loss = NAN;
    tg_bptt_plan plan;
    tg_status st = tg_model_backprop(f->m, f->tape, &u, memory, out, &loss, &plan);
    cr_assert_eq(st, TG_OK, "%s B=%d t0=%d memory %zu: %s", path, f->B, f->t0, memory, tg_errmsg(f->ctx));
    const char *what = f->each_op ? "each op" : "fused";
    const tg_real *g = tg_params_grads(f->ps);
    const bool same_entries = !f->batched || f->each_op; /* every entry covers one step */
    if (same_entries && f->immediate) {
        for (size_t j = 0; j < f->n_params; j++)
            cr_assert(g[j] == f->want_grads[j] && signbit(g[j]) == signbit(f->want_grads[j]),
                      "%s (%s) B=%d t0=%d memory %zu (segment %d of %d, %d snapshots): gradient %zu is %.17g, one "
                      "recording gives %.17g",
                      path, what, f->B, f->t0, memory, plan.segment, plan.segments, plan.snapshots, j, (double)g[j],
                      (double)f->want_grads[j]);
    } else {
        /* a product over a segment's steps instead of all (stack_affine, or
         * the deferred parameter gradients of core/defer.c): the same terms
         * summed in another order, so within the rounding of a sum of T
         * terms of the gradients' size (docs/memory.md) */
        double scale = 1;
        for (size_t j = 0; j < f->n_params; j++) scale = fmax(scale, fabs((double)f->want_grads[j]));
        for (size_t j = 0; j < f->n_params; j++)
            cr_assert(fabs((double)g[j] - (double)f->want_grads[j]) <= 16.0 * f->T * EPS * scale,
                      "%s (%s, %s) B=%d t0=%d memory %zu (segment %d of %d): gradient %zu is %.17g, one "
                      "recording gives %.17g",
                      path, what, f->immediate ? "batched" : "deferred", f->B, f->t0, memory, plan.segment,
                      plan.segments, j, (double)g[j], (double)f->want_grads[j]);
    }
    if (same_entries) {
        for (int i = 0; i < f->ns; i++)
            cr_assert_eq(memcmp(out[i], f->want_state[i], state_len(f, i) * sizeof(tg_real)), 0,
                         "%s: final state %d differs", path, i);
    } else {
        for (int i = 0; i < f->ns; i++)
            for (size_t j = 0; j < state_len(f, i); j++)
                cr_assert(fabs((double)out[i][j] - (double)f->want_state[i][j]) <= 16.0 * f->T * EPS,
                          "%s: final state %d differs", path, i);
    }
    double tol = 4.0 * (f->steps + 1) * EPS * fmax(1.0, fabs(f->want_loss));
    cr_assert(fabs(loss - f->want_loss) <= tol, "%s: loss %.17g, one recording %.17g", path, loss, f->want_loss);
    /* the plan */
    cr_assert_eq(plan.steps, f->steps);
    cr_assert_eq(plan.segments, (f->steps + plan.segment - 1) / plan.segment);
    cr_assert_leq(plan.snapshots, plan.segments > 1 ? plan.segments - 1 : 1);
    cr_assert_eq(plan.recomputed, (long long)plan.segment * tgr_advances(plan.segments, plan.snapshots),
                 "%s: %lld recomputed, the formula says %d x %lld", path, plan.recomputed, plan.segment,
                 tgr_advances(plan.segments, plan.snapshots));
    cr_assert_eq(plan.forward_steps, plan.steps + plan.recomputed);
    if (memory) {
        cr_assert_leq(plan.tape_bytes + plan.snapshot_bytes, memory, "%s: %zu + %zu bytes under a budget of %zu",
                      path, plan.tape_bytes, plan.snapshot_bytes, memory);
        cr_assert_leq(tg_tape_bytes(f->tape), memory);
    }
    /* the hook: once per segment, last first, covering the range */
    cr_assert_eq(h->calls, plan.segments, "%s: hook called %d times for %d segments", path, h->calls, plan.segments);
    int end = f->t0 + f->steps;
    for (int k = 0; k < h->calls && k < 4096; k++) {
        cr_assert_eq(h->t0[k] + h->steps[k], end, "%s: segment %d ends at %d, not %d", path, k, h->t0[k] + h->steps[k],
                     end);
        cr_assert(h->steps[k] == plan.segment || (k == 0 && h->steps[k] <= plan.segment));
        end = h->t0[k];
    }
    cr_assert_eq(end, f->t0);
    /* the tape holds the first segment */
    cr_assert(u.loss == NULL || tg_tensor_index(u.loss) >= 0);
    tg_tape_set_segment_hook(f->tape, NULL, NULL);
    free(h);
    for (int i = 0; i < f->ns; i++) free(out[i]);
    if (plan_out) *plan_out = plan;
}

/* The least budget, read from the message of a budget of one byte. */
static size_t least_budget(fixture *f, const char *path)
{
    tg_unroll u = fx_unroll(f);
    double loss;
    tg_status st = tg_model_backprop(f->m, f->tape, &u, 1, NULL, &loss, NULL);
    cr_assert_eq(st, TG_ERR_ARG, "%s: a budget of one byte was accepted", path);
    const char *msg = tg_errmsg(f->ctx), *p = strstr(msg, "the least ");
    cr_assert(p, "%s: %s", path, msg);
    p = strstr(p, " is ");
    cr_assert(p, "%s: %s", path, msg);
    size_t least = strtoull(p + 4, NULL, 10);
    cr_assert_gt(least, 0, "%s", msg);
    return least;
}

/* Budgets from the least upwards until segments of 4 steps: every plan on the
 * way is checked.  Returns a bit mask of the segment lengths seen. */
static unsigned sweep_budgets(fixture *f, const char *path)
{
    unsigned seen = 0;
    size_t least = least_budget(f, path), step = least / 24 > 64 ? least / 24 : 64;
    for (size_t mem = least, k = 0; k < 400; k++, mem += step) {
        tg_bptt_plan plan;
        fx_check(f, path, mem, &plan);
        if (plan.segment < 32) seen |= 1u << plan.segment;
        if (plan.segment >= 4 || plan.segments == 1) break;
    }
    return seen;
}

static void check_model(const char *path, int B, int t0, int with_state0, int each_op, int immediate)
{
    tg_ctx *ctx = ctx_new();
    fixture f;
    if (!fx_open(&f, ctx, path, 20, B, t0, with_state0, each_op, immediate, 31 + (uint64_t)B)) {
        tg_ctx_free(ctx);
        return;
    }
    fx_check(&f, path, 0, NULL);
    int reverse = f.t0 == 0 && t0 > 0;
    for (int i = 0; i < f.ns; i++) reverse |= tg_model_var_flags(f.m, TG_ROLE_STATE, i, NULL) & TG_VAR_REVERSE;
    if (!reverse) {
        unsigned seen = sweep_budgets(&f, path);
        /* the chooser may skip a length (3 steps in 7 segments can cost more
         * than 2 steps in 10 with the snapshots that memory buys) */
        cr_expect(seen & 2 && seen & 4 && seen & ~7u, "%s B=%d: segments of 1, 2 and 3 or more steps (seen mask %#x)",
                  path, B, seen);
    } else {
        fx_check(&f, path, (size_t)1 << 30, NULL); /* a budget that holds the whole sequence */
    }
    fx_close(&f);
    tg_ctx_free(ctx);
}

/* Bit for bit with parameter gradients added at every step; deferred
 * (the default), to rounding. */
MT_TEST(backprop, every_shipped_model_matches_one_recording, .timeout = 300)
{
    mt_chdir_root();
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    cr_assert_geq(n, 5);
    for (int i = 0; i < n; i++)
        for (int B = 1; B <= 4; B += 3)
            for (int immediate = 0; immediate < 2; immediate++) {
                check_model(paths[i], B, 0, 0, 0, immediate);
                check_model(paths[i], B, 0, 0, 1, immediate);
                check_model(paths[i], B, 5, 1, B == 4, immediate); /* truncated BPTT: t0 > 0 from a given state */
            }
    mt_free_list(paths, n);
}

/* Under a budget a trainer's tape recycles gradient buffers
 * (tg_tape_keep_grads(tape, 0)): the budget holds and nothing changes. */
MT_TEST(backprop, recycled_gradients_keep_the_budget)
{
    static const char *const paths[] = {"models/elman.yaml", "models/lstm.yaml", "models/gru.yaml",
                                        "models/stacked.yaml"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        tg_ctx *ctx = ctx_new();
        fixture f;
        cr_assert(fx_open(&f, ctx, paths[i], 23, 2, 3, 1, 0, 0, 7));
        tg_tape_keep_grads(f.tape, 0);
        unsigned seen = sweep_budgets(&f, paths[i]);
        cr_expect(seen & 2, "%s", paths[i]);
        fx_close(&f);
        tg_ctx_free(ctx);
    }
}

/* ---- dropout: a segment recorded again draws the masks it drew the first time ----------- */
static const char *dropout_model =
    "name: drop\n"
    "dims: {n: 3}\n"
    "params: {W: [n, n], U: [n, n], b: [n], V: [1, n]}\n"
    "inputs: {x: [n]}\n"
    "targets: {y: [1]}\n"
    "state: {h: {shape: [n], init: zeros}}\n"
    "step:\n"
    "  - h = tanh(W @ dropout(h, 0.3) + U @ dropout(x, 0.5) + b)\n"
    "  - o = V @ h\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

MT_TEST(backprop, dropout_masks_are_drawn_again_alike)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "drop.yaml", dropout_model, strlen(dropout_model), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 3), TG_OK);
    const int T = 30, B = 2;
    tg_dataset *d = tg_dataset_random(ctx, m, T, B, 4);
    const tg_real *in[] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    for (int immediate = 1; immediate >= 0; immediate--) {
        tg_tape *tape = tg_tape_new(ctx);
        tg_tape_set_training(tape, 1);
        tape->defer.immediate = immediate;
        tape->defer.min_elems = 0;
        size_t np = tg_params_total(ps);
        /* the reference: one recording */
        tg_seed(ctx, 99);
        tg_params_zero_grad(ps);
        tg_unroll u = {.params = ps, .batch = B, .steps = T, .inputs = in, .targets = tg};
        cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tape, u.loss), TG_OK);
        double want_loss = tg_item(u.loss), want_next = tg_rand_uniform(ctx);
        tg_real *want = malloc(np * sizeof(tg_real));
        memcpy(want, tg_params_grads(ps), np * sizeof(tg_real));
        double scale = 1;
        for (size_t j = 0; j < np; j++) scale = fmax(scale, fabs((double)want[j]));
        /* the masks matter: a different seed gives other gradients */
        tg_seed(ctx, 100);
        tg_params_zero_grad(ps);
        cr_assert_eq(tg_model_backprop(m, tape, &u, 0, NULL, NULL, NULL), TG_OK);
        cr_assert_neq(memcmp(want, tg_params_grads(ps), np * sizeof(tg_real)), 0);
        /* budgets from the least up: every plan draws the same masks */
        u = (tg_unroll){.params = ps, .batch = B, .steps = T, .inputs = in, .targets = tg};
        cr_assert_eq(tg_model_backprop(m, tape, &u, 1, NULL, NULL, NULL), TG_ERR_ARG);
        const char *p = strstr(tg_errmsg(ctx), "would do is ");
        cr_assert(p, "%s", tg_errmsg(ctx));
        size_t least = strtoull(p + 12, NULL, 10);
        int recomputing = 0;
        for (size_t mem = least; mem < 16 * least; mem += least / 8) {
            tg_seed(ctx, 99);
            tg_params_zero_grad(ps);
            double loss;
            tg_bptt_plan plan;
            cr_assert_eq(tg_model_backprop(m, tape, &u, mem, NULL, &loss, &plan), TG_OK, "%s", tg_errmsg(ctx));
            recomputing += plan.recomputed > 0;
            if (immediate) /* bit for bit */
                cr_assert_eq(memcmp(want, tg_params_grads(ps), np * sizeof(tg_real)), 0,
                             "budget %zu (segment %d, %d snapshots): the gradients differ", mem, plan.segment,
                             plan.snapshots);
            else /* deferred over a segment's steps, not all: to rounding */
                for (size_t j = 0; j < np; j++)
                    cr_assert(fabs((double)tg_params_grads(ps)[j] - (double)want[j]) <= 16.0 * T * EPS * scale,
                              "budget %zu (segment %d, %d snapshots): gradient %zu differs", mem, plan.segment,
                              plan.snapshots, j);
            cr_assert(fabs(loss - want_loss) <= 4.0 * (T + 1) * EPS * fmax(1, fabs(want_loss)));
            cr_assert_eq(tg_rand_uniform(ctx), want_next, "the generator is not where one recording leaves it");
        }
        cr_assert_gt(recomputing, 0);
        free(want);
        tg_tape_free(tape);
    }
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- anomaly detection inside a segment recorded again -------------------------------- */
/* sqrt(c x) is 0 where x is: its gradient there is infinite (a backward
 * anomaly); log(z) is -inf where z is 0 (a forward one). */
static const char *anomaly_model =
    "name: anom\n"
    "dims: {n: 2}\n"
    "params: {W: [n, n], c: {shape: [n], init: ones}, V: [1, n]}\n"
    "inputs: {x: [n], z: [n]}\n"
    "targets: {y: [1]}\n"
    "state: {h: {shape: [n], init: zeros}}\n"
    "step:\n"
    "  - a = sqrt(c * x)\n"
    "  - h = tanh(W @ h + a + log(z))\n"
    "  - o = V @ h\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

/* The message of a run with anomaly detection on; with memory 0 one
 * recording and tg_backward (the reference), else tg_model_backprop under
 * that budget.  The entry numbers differ between the two (a segment's tape is
 * shorter), so they are cut out: "entry 123 (" becomes "entry # (". */
static char *anomaly_message(tg_ctx *ctx, tg_model *m, tg_params *ps, const tg_real *const *in,
                             const tg_real *const *tgt, int T, size_t memory, tg_bptt_plan *plan)
{
    tg_tape *tape = tg_tape_new(ctx);
    tg_tape_detect_anomaly(tape, 1);
    tg_unroll u = {.params = ps, .batch = 1, .steps = T, .inputs = in, .targets = tgt};
    tg_status st;
    if (memory) {
        st = tg_model_backprop(m, tape, &u, memory, NULL, NULL, plan);
    } else {
        st = tg_model_unroll(m, tape, &u);
        if (!st) st = tg_backward(tape, u.loss);
    }
    cr_assert_eq(st, TG_ERR_NONFINITE, "memory %zu: %s", memory, tg_errmsg(ctx));
    const char *msg = tg_errmsg(ctx);
    char *out = malloc(strlen(msg) + 1), *o = out;
    for (const char *p = msg; *p;) {
        if (!strncmp(p, "entry ", 6) && p[6] >= '0' && p[6] <= '9') {
            memcpy(o, "entry #", 7);
            o += 7;
            for (p += 6; *p >= '0' && *p <= '9'; p++) {}
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    tg_tape_free(tape);
    return out;
}

MT_TEST(backprop, anomaly_detection_in_a_recomputed_segment)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "anom.yaml", anomaly_model, strlen(anomaly_model), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 5), TG_OK);
    enum { T = 24, BAD = 6 };
    tg_real x[T * 2], z[T * 2], y[T];
    for (int i = 0; i < T * 2; i++) x[i] = z[i] = 1;
    for (int i = 0; i < T; i++) y[i] = (tg_real)(0.1 * i);
    const tg_real *in[] = {x, z}, *tgt[] = {y};
    /* the least budget, to find one that recomputes */
    tg_tape *tape = tg_tape_new(ctx);
    tg_unroll u = {.params = ps, .batch = 1, .steps = T, .inputs = in, .targets = tgt};
    cr_assert_eq(tg_model_backprop(m, tape, &u, 1, NULL, NULL, NULL), TG_ERR_ARG);
    size_t least = strtoull(strstr(tg_errmsg(ctx), "would do is ") + 12, NULL, 10);
    tg_tape_free(tape);
    for (int kind = 0; kind < 2; kind++) {
        /* step BAD (counted from 1, as labels are): x = 0 (backward) or z = 0 (forward) */
        (kind ? z : x)[(BAD - 1) * 2] = 0;
        char *want = anomaly_message(ctx, m, ps, in, tgt, T, 0, NULL);
        char label[32];
        snprintf(label, sizeof label, "[t=%d]", BAD);
        cr_assert(strstr(want, label), "%s", want);
        for (size_t mem = least; mem < least * 3; mem += least / 4) {
            tg_bptt_plan plan = {0};
            char *got = anomaly_message(ctx, m, ps, in, tgt, T, mem, &plan);
            cr_assert_str_eq(got, want, "budget %zu", mem);
            free(got);
        }
        free(want);
        (kind ? z : x)[(BAD - 1) * 2] = 1;
    }
    /* with a budget that recomputes, the backward anomaly is found in a
     * segment recorded again: the hook saw the later segments first */
    x[(BAD - 1) * 2] = 0;
    tape = tg_tape_new(ctx);
    tg_tape_detect_anomaly(tape, 1);
    hook_log *h = calloc(1, sizeof *h);
    tg_tape_set_segment_hook(tape, log_segment, h);
    cr_assert_eq(tg_model_backprop(m, tape, &u, least, NULL, NULL, NULL), TG_ERR_NONFINITE);
    cr_assert_gt(h->calls, 0);
    cr_assert_gt(h->t0[h->calls - 1], BAD - 1, "the segments after step %d were swept first", BAD);
    /* the failing segment is on the tape, for a dump */
    int found = 0;
    for (int i = 0; i < tg_tape_length(tape); i++) {
        int step;
        const char *l = tg_tensor_label(tg_tape_at(tape, i), &step);
        found |= l && !strcmp(l, "a") && step == BAD;
    }
    cr_assert(found, "the segment of step %d is not on the tape", BAD);
    free(h);
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

static void count_sweeps(tg_tensor *entry, void *user)
{
    if (!entry) ++*(int *)user;
}

/* ---- hostile arguments ----------------------------------------------------------------- */
MT_TEST(backprop, hostile_arguments_get_messages)
{
    tg_ctx *ctx = ctx_new(), *other = tg_ctx_new(NULL);
    tg_model *m = tg_model_load(ctx, "models/elman.yaml", NULL, 0);
    cr_assert(m);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    tg_dataset *d = tg_dataset_random(ctx, m, 8, 1, 2);
    const tg_real *in[] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tgt[] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_tape *tape = tg_tape_new(ctx), *otape = tg_tape_new(other);
    tg_unroll u = {.params = ps, .batch = 1, .steps = 8, .inputs = in, .targets = tgt};
    double loss;
    tg_bptt_plan plan;
    cr_expect_eq(tg_model_backprop(NULL, tape, &u, 0, NULL, &loss, &plan), TG_ERR_ARG);
    cr_expect_eq(tg_model_backprop(m, NULL, &u, 0, NULL, &loss, &plan), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "backprop: tape and arguments are required");
    cr_expect_eq(tg_model_backprop(m, tape, NULL, 0, NULL, &loss, &plan), TG_ERR_ARG);
    cr_expect_eq(tg_model_backprop(m, otape, &u, 0, NULL, &loss, &plan), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "backprop: the tape belongs to another context");
    u.targets = NULL;
    cr_expect_eq(tg_model_backprop(m, tape, &u, 0, NULL, &loss, &plan), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "backprop: targets are required (the loss reads them)");
    u.targets = tgt;
    static const struct { int batch, t0, steps, seq; const char *msg; } bad[] = {
        {0, 0, 8, 0, "backprop: bad batch 0, t0 0, steps 8 or seq_steps 0"},
        {1, -1, 8, 0, "backprop: bad batch 1, t0 -1, steps 8 or seq_steps 0"},
        {1, 0, 2147483647, 0, "backprop: bad batch 1, t0 0, steps 2147483647 or seq_steps 0"},
        {1, 2147483600, 8, 0, "backprop: bad batch 1, t0 2147483600, steps 8 or seq_steps 0"},
        {1, 0, 8, 5, "backprop: steps 1..8 run past the sequence's 5 steps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (size_t mem = 0; mem <= 1; mem++) {
            tg_unroll v = u;
            v.batch = bad[i].batch;
            v.t0 = bad[i].t0;
            v.steps = bad[i].steps;
            v.seq_steps = bad[i].seq;
            cr_expect_eq(tg_model_backprop(m, tape, &v, mem << 20, NULL, &loss, &plan), TG_ERR_ARG);
            cr_expect_str_eq(tg_errmsg(ctx), bad[i].msg);
        }
    /* a budget of one byte names the least that would do, which then works */
    cr_expect_eq(tg_model_backprop(m, tape, &u, 1, NULL, &loss, &plan), TG_ERR_ARG);
    const char *msg = tg_errmsg(ctx);
    cr_expect(!strncmp(msg, "memory budget 1 byte is too small: one step of model elman at batch 1 needs ", 75), "%s",
              msg);
    const char *p = strstr(msg, "; the least budget that would do is ");
    cr_assert(p, "%s", msg);
    size_t least = strtoull(p + 36, NULL, 10);
    cr_expect_eq(tg_model_backprop(m, tape, &u, least - 1, NULL, &loss, &plan), TG_ERR_ARG);
    int sweeps = 0;
    tg_tape_set_sweep_hook(tape, count_sweeps, &sweeps);
    cr_expect_eq(tg_model_backprop(m, tape, &u, least, NULL, &loss, &plan), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(sweeps, plan.segments, "the sweep hook saw %d sweeps for %d segments (measuring is not one)", sweeps,
                 plan.segments);
    tg_tape_set_sweep_hook(tape, NULL, NULL);
    cr_expect_eq(plan.segment, 1);
    cr_expect_eq(plan.recomputed, tgr_advances(8, plan.snapshots));
    /* the largest budget is one recording */
    cr_expect_eq(tg_model_backprop(m, tape, &u, SIZE_MAX, NULL, NULL, &plan), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(plan.segments, 1);
    cr_expect_eq(plan.recomputed, 0);
    /* no steps: nothing to sweep, the state out is the state in */
    tg_real h[2] = {7, 7}, *out[] = {h};
    u.steps = 0;
    cr_expect_eq(tg_model_backprop(m, tape, &u, 4096, out, &loss, &plan), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(h[0] == 0 && h[1] == 0 && loss == 0);
    /* a model without a loss */
    static const char *noloss = "name: nl\ndims: {n: 2}\nparams: {W: [n, n]}\ninputs: {x: [n]}\ntargets: {y: [n]}\n"
                                "step:\n  - o = W @ x\noutputs: [o]\n";
    tg_model *nl = tg_model_parse(ctx, "nl.yaml", noloss, strlen(noloss), NULL, 0);
    cr_assert(nl, "%s", tg_errmsg(ctx));
    u.steps = 8;
    cr_expect_eq(tg_model_backprop(nl, tape, &u, 0, NULL, &loss, &plan), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "nl.yaml: model nl declares no loss to differentiate");
    tg_model_free(nl);
    tg_tape_free(otape);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(other);
    tg_ctx_free(ctx);
}

/* A model whose states run in reverse records whole sequences: a budget too
 * small for that says so and names the budget that would do. */
MT_TEST(backprop, reverse_states_need_the_whole_sequence)
{
    tg_ctx *ctx = ctx_new();
    fixture f;
    cr_assert(fx_open(&f, ctx, "models/birnn.yaml", 20, 2, 0, 0, 0, 0, 3));
    tg_unroll u = fx_unroll(&f);
    cr_assert_eq(tg_model_backprop(f.m, f.tape, &u, 10000, NULL, NULL, NULL), TG_ERR_ARG);
    const char *msg = tg_errmsg(ctx);
    cr_expect(strstr(msg, "models/birnn.yaml: model birnn has states that run in reverse, so it records whole "
                          "sequences: 20 steps at batch 2 need ") == msg, "%s", msg);
    const char *p = strstr(msg, "memory budget 9.8 KiB is too small (the least that would do is ");
    cr_assert(p, "%s", msg);
    size_t need = strtoull(p + 63, NULL, 10);
    cr_assert_gt(need, 10000);
    tg_bptt_plan plan;
    fx_check(&f, "models/birnn.yaml", need, &plan);
    cr_expect_eq(plan.segments, 1);
    cr_expect_eq(tg_model_backprop(f.m, f.tape, &u, need - 1, NULL, NULL, NULL), TG_ERR_ARG);
    fx_close(&f);
    tg_ctx_free(ctx);
}

/* ---- out of memory anywhere ------------------------------------------------------------ */
#include "failing_alloc.h"

/* Every allocation of a budgeted call fails in turn: each failure is a
 * status with a message, leaks nothing, and leaves the parameters' gradient
 * buffers in place; then the call succeeds with one recording's gradients. */
MT_TEST(backprop, out_of_memory_anywhere_leaks_nothing, .timeout = 120)
{
    mt_chdir_root();
    failing f = {.countdown = -1};
    tg_allocator a = {f_alloc, f_realloc, f_free, &f};
    tg_ctx *ctx = tg_ctx_new(&a);
    cr_assert(ctx);
    tg_model *m = tg_model_load(ctx, "models/lstm.yaml", NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 2), TG_OK);
    tg_dataset *d = tg_dataset_random(ctx, m, 12, 2, 3);
    const tg_real *in[] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tgt[] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_unroll u = {.params = ps, .batch = 2, .steps = 12, .inputs = in, .targets = tgt};
    size_t np = tg_params_total(ps);
    tg_real *want = malloc(np * sizeof(tg_real));
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.min_elems = 0; /* defer even these small cells */
    tg_params_zero_grad(ps);
    cr_assert_eq(tg_model_backprop(m, tape, &u, 0, NULL, NULL, NULL), TG_OK);
    memcpy(want, tg_params_grads(ps), np * sizeof(tg_real));
    cr_assert_eq(tg_model_backprop(m, tape, &u, 1, NULL, NULL, NULL), TG_ERR_ARG);
    size_t least = strtoull(strstr(tg_errmsg(ctx), "would do is ") + 12, NULL, 10);
    tg_tape_free(tape);
    const size_t memory = least + least / 2;
    int done = 0;
    for (long n = 0; n < 100000 && !done; n++) {
        long live = f.live;
        tape = tg_tape_new(ctx);
        cr_assert(tape);
        tape->defer.min_elems = 0;
        tg_params_zero_grad(ps);
        f.countdown = n;
        tg_bptt_plan plan;
        tg_status st = tg_model_backprop(m, tape, &u, memory, NULL, NULL, &plan);
        f.countdown = -1;
        if (st == TG_OK) {
            done = 1;
            cr_expect_gt(plan.recomputed, 0);
            /* deferred over each segment's steps, not all: to rounding */
            double scale = 1;
            for (size_t j = 0; j < np; j++) scale = fmax(scale, fabs((double)want[j]));
            for (size_t j = 0; j < np; j++)
                cr_expect(fabs((double)tg_params_grads(ps)[j] - (double)want[j]) <= 16.0 * 12 * EPS * scale,
                          "gradient %zu differs", j);
        } else {
            cr_expect_eq(st, TG_ERR_NOMEM, "allocation %ld: %s", n, tg_errmsg(ctx));
            cr_expect(tg_errmsg(ctx)[0], "no message at allocation %ld", n);
        }
        for (int i = 0; i < tg_params_count(ps); i++)
            cr_assert(tg_grad(tg_params_at(ps, i)), "allocation %ld: a parameter lost its gradient buffer", n);
        tg_tape_free(tape);
        cr_assert_eq(f.live, live, "%ld blocks leaked when allocation %ld failed", f.live - live, n);
    }
    cr_expect(done);
    free(want);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}
