/* test_models.c — the model layer through the C API: the malformed-model
 * corpus gives its exact messages, the lecture's example matches an
 * independent computation, every shipped model passes a gradient check,
 * truncated unrolling, batches, data and params files, registered ops,
 * labels, and robustness (truncated and mutated files, failing allocator). */
#include <stdint.h>
#include <tapegrad.h>
#include "models_testutil.h"
#include "tg_model_internal.h"

#ifdef TG_REAL_DOUBLE
#define REAL_TOL 1e-12
#else
#define REAL_TOL 2e-6
#endif

static tg_ctx *ctx_new(void)
{
    mt_chdir_root();
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    return ctx;
}

/* ---- the malformed-model corpus ----------------------------------------------- */
MT_TEST(models, malformed_corpus_messages)
{
    tg_ctx *ctx = ctx_new();
    char **cases;
    int n = mt_list("tests/malformed", ".yaml", &cases);
    cr_assert_geq(n, 30, "the corpus has %d cases", n);
    for (int i = 0; i < n; i++) {
        char err[4096];
        snprintf(err, sizeof err, "%.*s.err", (int)(strlen(cases[i]) - 5), cases[i]);
        char *want = mt_read(err, NULL);
        cr_assert(want, "%s has no .err file", cases[i]);
        tg_model *m = tg_model_load(ctx, cases[i], NULL, 0);
        cr_expect_null(m, "%s loaded", cases[i]);
        tg_model_free(m);
        char got[2048];
        snprintf(got, sizeof got, "%s\n", tg_errmsg(ctx));
        cr_expect_str_eq(got, want, "%s", cases[i]);
        free(want);
    }
    mt_free_list(cases, n);
    tg_ctx_free(ctx);
}

/* ---- the lecture's example --------------------------------------------------------- */
typedef struct loaded {
    tg_ctx *ctx;
    tg_model *m;
    tg_params *ps;
    tg_dataset *d;
    tg_tape *tape;
    int each_op;    /* unroll_seq: one entry per operator instead of the fused tape */
} loaded;

static void load_all(loaded *L, const char *model, const char *data, const char *params, const tg_dim *dims,
                     int n_dims)
{
    L->ctx = ctx_new();
    L->m = tg_model_load(L->ctx, model, dims, n_dims);
    cr_assert(L->m, "%s", tg_errmsg(L->ctx));
    L->ps = tg_params_new(L->ctx);
    cr_assert_eq(tg_model_init_params(L->m, L->ps, 7), TG_OK, "%s", tg_errmsg(L->ctx));
    if (params) cr_assert_eq(tg_params_load(L->ps, L->m, params), TG_OK, "%s", tg_errmsg(L->ctx));
    L->d = data ? tg_dataset_load(L->ctx, L->m, data) : NULL;
    if (data) cr_assert(L->d, "%s", tg_errmsg(L->ctx));
    L->tape = tg_tape_new(L->ctx);
}

static void free_all(loaded *L)
{
    tg_tape_free(L->tape);
    tg_dataset_free(L->d);
    tg_params_free(L->ps);
    tg_model_free(L->m);
    tg_ctx_free(L->ctx);
}

/* unroll sequence q of L->d (all steps) */
static tg_unroll unroll_seq(loaded *L, int q, const tg_real *const *state0)
{
    const tg_real *in[8], *tg[8];
    for (int i = 0; i < tg_model_count(L->m, TG_ROLE_INPUT); i++) in[i] = tg_dataset_values(L->d, q, TG_ROLE_INPUT, i);
    for (int i = 0; i < tg_model_count(L->m, TG_ROLE_TARGET); i++)
        tg[i] = tg_dataset_values(L->d, q, TG_ROLE_TARGET, i);
    tg_unroll u = {.params = L->ps, .batch = tg_dataset_batch(L->d, q), .steps = tg_dataset_steps(L->d, q),
                   .inputs = in, .targets = tg, .state0 = state0, .each_op = L->each_op};
    cr_assert_eq(tg_model_unroll(L->m, L->tape, &u), TG_OK, "%s", tg_errmsg(L->ctx));
    return u;
}

static void expect_grad(tg_params *ps, const char *name, const double *want, int n)
{
    tg_tensor *p = tg_params_find(ps, name);
    cr_assert(p, "no parameter %s", name);
    cr_assert_eq((int)tg_size(p), n);
    for (int i = 0; i < n; i++)
        cr_expect(mt_close(tg_grad(p)[i], want[i], REAL_TOL), "dL/d%s[%d] = %.12g, want %.12g", name, i,
                  (double)tg_grad(p)[i], want[i]);
}

MT_TEST(models, elman_seed_matches_reference)
{
    loaded L;
    load_all(&L, "models/elman.yaml", "examples/data/seed.yaml", "examples/data/seed-params.yaml", NULL, 0);
    cr_assert_eq(tg_dataset_count(L.d), 1);
    cr_assert_eq(tg_dataset_steps(L.d, 0), 3);
    cr_assert_eq(tg_dataset_batch(L.d, 0), 1);
    tg_unroll u = unroll_seq(&L, 0, NULL);
    cr_assert_eq(tg_backward(L.tape, u.loss), TG_OK, "%s", tg_errmsg(L.ctx));
    mt_seed_grads g;
    mt_seed_reference(&g);
    cr_expect(mt_close(tg_item(u.loss), g.loss, REAL_TOL), "loss %.12g want %.12g", tg_item(u.loss), g.loss);
    expect_grad(L.ps, "U", &g.U[0][0], 4);
    expect_grad(L.ps, "W", &g.W[0][0], 4);
    expect_grad(L.ps, "b", g.b, 2);
    expect_grad(L.ps, "V", g.V, 2);
    expect_grad(L.ps, "c", &g.c, 1);
    free_all(&L);
}

/* Every entry the unroller records carries the equation's name, the step and
 * the position of its operator in the model file.  Recorded one operator at
 * a time, h = tanh(a) is a tanh entry; fused, U @ x + W @ h + b and its tanh
 * are one affine entry labelled h (a 2 x 2 U is too small to stack: see
 * tgm_hoist_pays). */
MT_TEST(models, entries_have_labels_and_sources)
{
    for (int each_op = 0; each_op < 2; each_op++) {
        loaded L;
        load_all(&L, "models/elman.yaml", "examples/data/seed.yaml", "examples/data/seed-params.yaml", NULL, 0);
        L.each_op = each_op;
        unroll_seq(&L, 0, NULL);
        const char *want = each_op ? "tanh" : "affine";
        int found = 0;
        for (int i = 0; i < tg_tape_length(L.tape); i++) {
            tg_tensor *t = tg_tape_at(L.tape, i);
            int step;
            const char *label = tg_tensor_label(t, &step);
            cr_expect(label, "entry %d (%s) has no label", i, tg_tensor_op(t));
            if (label && !strcmp(label, "h") && !strcmp(tg_tensor_op(t), want) && step == 1) found = 1;
        }
        cr_expect(found, "no %s entry labelled h at step 1", want);
        cr_expect_eq(tg_tape_length(L.tape), each_op ? 36 : 18, "tape of %d entries", tg_tape_length(L.tape));
        free_all(&L);
    }
}

MT_TEST(models, anomaly_names_the_equation)
{
    loaded L;
    load_all(&L, "models/elman.yaml", "examples/data/seed.yaml", "examples/data/seed-params.yaml", NULL, 0);
    tg_data(tg_params_find(L.ps, "V"))[0] = (tg_real)NAN; /* poisons V @ h */
    tg_tape_detect_anomaly(L.tape, 1);
    const tg_real *in[1] = {tg_dataset_values(L.d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(L.d, 0, TG_ROLE_TARGET, 0)};
    /* the first NaN is V @ h in the equation of o, at step 1: recorded one
     * operator at a time, the message points at the @; fused, at the tanh
     * that ends the affine entry */
    char *text = mt_read("models/elman.yaml", NULL);
    cr_assert(text);
    const char *at = strstr(text, "o = tanh(V @ h + c)");
    cr_assert(at);
    for (int each_op = 0; each_op < 2; each_op++) {
        tg_tape_reset(L.tape);
        tg_unroll u = {.params = L.ps, .batch = 1, .steps = 3, .inputs = in, .targets = tg, .each_op = each_op};
        cr_assert_eq(tg_model_unroll(L.m, L.tape, &u), TG_ERR_NONFINITE);
        int line = 1, col = 1;
        for (const char *p = text; p < at + (each_op ? 11 : 4); p++) {
            if (*p == '\n') line++, col = 1;
            else col++;
        }
        char want[128];
        snprintf(want, sizeof want, "models/elman.yaml:%d:%d: in 'o' at step 1: ", line, col);
        const char *msg = tg_errmsg(L.ctx);
        cr_expect(strncmp(msg, want, strlen(want)) == 0, "%s\nwant %s...", msg, want);
    }
    free(text);
    free_all(&L);
}

/* An overflow in the hoisted U @ x of step 2 names h and step 2 (the
 * per-operator tape names the product's equation a at step 2; the plain
 * fused entry never holds the inf, which its tanh saturates), and in the
 * second chunk of steps the step counts from the sequence's start; a clean
 * sequence sweeps in anomaly mode without a false alarm. */
MT_TEST(models, anomaly_in_a_hoisted_product_names_its_step)
{
    loaded L;
    load_all(&L, "models/elman.yaml", "examples/data/seed.yaml", "examples/data/seed-params.yaml", NULL, 0);
    tg_tape_detect_anomaly(L.tape, 1);
    const tg_real big = sizeof(tg_real) == 8 ? (tg_real)1e160 : (tg_real)1e20;
    tg_real x[6];
    memcpy(x, tg_dataset_values(L.d, 0, TG_ROLE_INPUT, 0), sizeof x);
    const tg_real *in[1] = {x};
    const tg_real *tg[1] = {tg_dataset_values(L.d, 0, TG_ROLE_TARGET, 0)};
    char *text = mt_read("models/elman.yaml", NULL);
    cr_assert(text);
    const char *at = strstr(text, "h = tanh(a)");
    cr_assert(at);
    int line = 1, col = 1;
    for (const char *p = text; p < at + 4; p++) {
        if (*p == '\n') line++, col = 1;
        else col++;
    }
    char want[160];
    snprintf(want, sizeof want, "models/elman.yaml:%d:%d: in 'h' at step 2: non-finite value computed by entry", line,
             col);
    tg_real *U = tg_data(tg_params_find(L.ps, "U"));
    const tg_real u0 = U[0];
    U[0] = big;
    x[2] = big; /* x at step 2 */
    for (int each_op = 0; each_op < 2; each_op++) {
        tg_tape_reset(L.tape);
        tg_unroll u = {.params = L.ps, .batch = 1, .steps = 3, .inputs = in, .targets = tg, .each_op = each_op};
        cr_assert_eq(tgm_unroll(L.m, L.tape, &u, TGM_HOIST_ALWAYS), TG_ERR_NONFINITE, "%s", tg_errmsg(L.ctx));
        const char *msg = tg_errmsg(L.ctx);
        if (each_op)
            cr_expect(strstr(msg, ": in 'a' at step 2: non-finite value computed by entry"), "%s", msg);
        else {
            cr_expect(strncmp(msg, want, strlen(want)) == 0, "%s\nwant %s...", msg, want);
            cr_expect(strstr(msg, "(stack_affine [2, 3] 'h[t=2]'"), "%s", msg);
        }
    }
    /* in the second chunk of steps: step 35 is block 2 of a stack of 8 */
    enum { LONG = TGM_HOIST_CHUNK + 8, AT = TGM_HOIST_CHUNK + 3 };
    tg_real xl[2 * LONG], yl[LONG];
    for (int k = 0; k < LONG; k++) {
        xl[2 * k] = (tg_real)(0.1 * (k % 5)), xl[2 * k + 1] = (tg_real)(-0.05 * (k % 3)), yl[k] = (tg_real)0.5;
    }
    xl[2 * (AT - 1)] = big;
    const tg_real *inl[1] = {xl}, *tgl[1] = {yl};
    tg_tape_reset(L.tape);
    tg_unroll ul = {.params = L.ps, .batch = 1, .steps = LONG, .inputs = inl, .targets = tgl};
    cr_assert_eq(tgm_unroll(L.m, L.tape, &ul, TGM_HOIST_ALWAYS), TG_ERR_NONFINITE, "%s", tg_errmsg(L.ctx));
    snprintf(want, sizeof want, "models/elman.yaml:%d:%d: in 'h' at step %d: non-finite value computed by entry",
             line, col, AT);
    const char *msg = tg_errmsg(L.ctx);
    cr_expect(strncmp(msg, want, strlen(want)) == 0, "%s\nwant %s...", msg, want);
    char shape[64];
    snprintf(shape, sizeof shape, "(stack_affine [2, %d] 'h[t=%d]'", LONG - TGM_HOIST_CHUNK, AT);
    cr_expect(strstr(msg, shape), "%s\nwant %s", msg, shape);
    U[0] = u0;
    memcpy(x, tg_dataset_values(L.d, 0, TG_ROLE_INPUT, 0), sizeof x);
    size_t np = tg_params_total(L.ps);
    tg_real *grads = malloc(2 * np * sizeof *grads);
    cr_assert(grads);
    for (int hoist = 0; hoist < 2; hoist++) {
        tg_tape_reset(L.tape);
        tg_params_zero_grad(L.ps);
        tg_unroll u = {.params = L.ps, .batch = 1, .steps = 3, .inputs = in, .targets = tg};
        cr_assert_eq(tgm_unroll(L.m, L.tape, &u, hoist ? TGM_HOIST_ALWAYS : TGM_HOIST_NEVER), TG_OK, "%s", tg_errmsg(L.ctx));
        cr_assert_eq(tg_backward(L.tape, u.loss), TG_OK, "%s", tg_errmsg(L.ctx));
        memcpy(grads + (size_t)hoist * np, tg_params_grads(L.ps), np * sizeof *grads);
    }
    for (size_t k = 0; k < np; k++)
        cr_expect(mt_close(grads[np + k], grads[k], 10 * REAL_TOL), "gradient %zu", k);
    free(grads);
    free(text);
    free_all(&L);
}

/* ---- every shipped model passes a gradient check -------------------------------------- */
/* how gc_build records: the fused step with its state-free products stacked
 * (models/hoist.c) or as it is, or one operator at a time */
enum { GC_HOISTED, GC_EACH_OP, GC_PLAIN };
typedef struct gc_user {
    const tg_model *m;
    tg_params *ps;
    tg_dataset *d;
    int mode;
} gc_user;

static tg_tensor *gc_build(tg_tape *tape, void *p)
{
    gc_user *g = p;
    const tg_real *in[16], *tg[16];
    for (int i = 0; i < tg_model_count(g->m, TG_ROLE_INPUT); i++) in[i] = tg_dataset_values(g->d, 0, TG_ROLE_INPUT, i);
    for (int i = 0; i < tg_model_count(g->m, TG_ROLE_TARGET); i++)
        tg[i] = tg_dataset_values(g->d, 0, TG_ROLE_TARGET, i);
    tg_unroll u = {.params = g->ps, .batch = tg_dataset_batch(g->d, 0), .steps = tg_dataset_steps(g->d, 0),
                   .inputs = in, .targets = tg, .each_op = g->mode == GC_EACH_OP};
    return tgm_unroll(g->m, tape, &u, g->mode == GC_HOISTED ? TGM_HOIST_ALWAYS : TGM_HOIST_NEVER) ? NULL : u.loss;
}

static void gradcheck_model(const char *path, int steps, int batch, uint64_t seed, int mode)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = mt_load_small(ctx, path);
    if (!tg_model_has_loss(m)) {
        tg_model_free(m);
        tg_ctx_free(ctx);
        return;
    }
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, seed), TG_OK, "%s", tg_errmsg(ctx));
    tg_dataset *d = tg_dataset_random(ctx, m, steps, batch, seed + 1);
    cr_assert(d, "%s", tg_errmsg(ctx));
    tg_tape *tape = tg_tape_new(ctx);
    gc_user u = {m, ps, d, mode};
    tg_gradcheck_result r;
    tg_status st = tg_gradcheck(tape, ps, gc_build, &u, NULL, &r);
    static const char *how[] = {", hoisted", ", each op", ""};
    cr_expect_eq(st, TG_OK, "%s, T=%d, B=%d%s: %s (worst %.3e)", path, steps, batch, how[mode],
                 tg_errmsg(ctx), r.max_err);
    cr_expect_gt(r.checked, 0);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(models, gradcheck_every_shipped_model, .timeout = 120)
{
    mt_chdir_root();
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    cr_assert_geq(n, 5);
#ifdef TG_REAL_DOUBLE
    /* the bar: random params, T up to 50, batch 1 and 4, double;
     * hoisted, 50 steps are a whole chunk of stacked products and a part */
    for (int i = 0; i < n; i++) {
        gradcheck_model(paths[i], 50, 1, 11, GC_HOISTED);
        gradcheck_model(paths[i], 50, 4, 12, GC_HOISTED);
        gradcheck_model(paths[i], 10, 3, 14, GC_EACH_OP);
        gradcheck_model(paths[i], 10, 2, 15, GC_PLAIN);
    }
#else
    /* float: short sequences, the float tolerance */
    for (int i = 0; i < n; i++) {
        gradcheck_model(paths[i], 4, 2, 13, GC_HOISTED);
        gradcheck_model(paths[i], 4, 2, 13, GC_EACH_OP);
        gradcheck_model(paths[i], 4, 2, 13, GC_PLAIN);
    }
#endif
    mt_free_list(paths, n);
}

/* ---- fusion: the fused tape computes what the equations say ---------------------------- */
/* h is read as h(t-1) into s, then assigned, then s is summed with V @ h(t):
 * moving W @ h down to the sum would read h(t), so that sum must stay as
 * written.  The other affine maps fuse. */
static const char *reassigned_model =
    "name: reassigned\n"
    "dims: {n: 3}\n"
    "params: {W: [n, n], U: [n, 2], b: [n], V: [n, n], c: [n], R: [1, n]}\n"
    "inputs: {x: [2]}\n"
    "targets: {y: [1]}\n"
    "state: {h: [n]}\n"
    "step:\n"
    "  - s = W @ h\n"
    "  - h = tanh(U @ x + b)\n"
    "  - g = sigmoid(s + V @ h + c)\n"
    "  - o = R @ (g * h) + R @ h\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

/* Both tapes of a model from source (text) or file (path): same loss and
 * parameter gradients; the fused one has fewer entries. */
static void expect_fusion_agrees(const char *path, const char *text, int min_affine)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = text ? tg_model_parse(ctx, path, text, strlen(text), NULL, 0) : mt_load_small(ctx, path);
    cr_assert(m, "%s", tg_errmsg(ctx));
    if (!tg_model_has_loss(m)) {
        tg_model_free(m);
        tg_ctx_free(ctx);
        return;
    }
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 5), TG_OK, "%s", tg_errmsg(ctx));
    tg_dataset *d = tg_dataset_random(ctx, m, 6, 3, 6);
    cr_assert(d, "%s", tg_errmsg(ctx));
    size_t np = tg_params_total(ps);
    double loss[2];
    int len[2], affine = 0;
    tg_real *grads = calloc(2 * np, sizeof *grads);
    cr_assert(grads);
    for (int each_op = 0; each_op < 2; each_op++) {
        tg_tape *tape = tg_tape_new(ctx);
        gc_user g = {m, ps, d, each_op ? GC_EACH_OP : GC_PLAIN};
        tg_params_zero_grad(ps);
        tg_tensor *l = gc_build(tape, &g);
        cr_assert(l, "%s: %s", path, tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tape, l), TG_OK, "%s", tg_errmsg(ctx));
        loss[each_op] = tg_item(l);
        len[each_op] = tg_tape_length(tape);
        memcpy(grads + (size_t)each_op * np, tg_params_grads(ps), np * sizeof *grads);
        for (int i = 0; i < len[each_op]; i++) affine += !strcmp(tg_tensor_op(tg_tape_at(tape, i)), "affine");
        tg_tape_free(tape);
    }
    cr_expect(mt_close(loss[0], loss[1], REAL_TOL), "%s: fused loss %.9g, each op %.9g", path, loss[0], loss[1]);
    for (size_t k = 0; k < np; k++)
        if (!mt_close(grads[k], grads[np + k], 10 * REAL_TOL)) {
            cr_expect_fail("%s: gradient %zu fused %.9g, each op %.9g", path, k, (double)grads[k],
                           (double)grads[np + k]);
            break;
        }
    cr_expect_geq(affine, min_affine, "%s: %d affine entries", path, affine);
    if (affine) cr_expect_lt(len[0], len[1], "%s: fused %d entries, each op %d", path, len[0], len[1]);
    free(grads);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(models, fused_and_each_op_tapes_agree)
{
    mt_chdir_root();
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    for (int i = 0; i < n; i++) expect_fusion_agrees(paths[i], NULL, 1);
    mt_free_list(paths, n);
    expect_fusion_agrees("reassigned.yaml", reassigned_model, 1);
}

/* ---- the state-free products of all steps as one (models/hoist.c) ------------------ */
typedef struct hoist_run {
    double loss;
    tg_real *grads, *outs;  /* the parameter gradients; every output of every step */
    size_t n_outs;
    int stacks;             /* stack_affine entries on the tape */
} hoist_run;

/* Steps t0 .. t0 + steps - 1 of sequence 0 of d from state0 (NULL: the
 * inits), recorded with the hoisting on or off; backward. */
static hoist_run hoist_unroll(tg_ctx *ctx, const tg_model *m, tg_params *ps, tg_dataset *d, int t0, int steps,
                              const tg_real *const *state0, int hoist)
{
    const tg_real *in[16], *tg[16];
    for (int i = 0; i < tg_model_count(m, TG_ROLE_INPUT); i++) in[i] = tg_dataset_values(d, 0, TG_ROLE_INPUT, i);
    for (int i = 0; i < tg_model_count(m, TG_ROLE_TARGET); i++) tg[i] = tg_dataset_values(d, 0, TG_ROLE_TARGET, i);
    tg_unroll u = {.params = ps, .batch = tg_dataset_batch(d, 0), .t0 = t0, .steps = steps,
                   .seq_steps = tg_dataset_steps(d, 0), .inputs = in, .targets = tg, .state0 = state0};
    tg_tape *tape = tg_tape_new(ctx);
    tg_params_zero_grad(ps);
    cr_assert_eq(tgm_unroll(m, tape, &u, hoist ? TGM_HOIST_ALWAYS : TGM_HOIST_NEVER), TG_OK, "%s", tg_errmsg(ctx));
    hoist_run r = {.loss = u.loss ? tg_item(u.loss) : 0};
    if (u.loss) cr_assert_eq(tg_backward(tape, u.loss), TG_OK, "%s", tg_errmsg(ctx));
    size_t np = tg_params_total(ps);
    r.grads = malloc(np * sizeof *r.grads);
    cr_assert(r.grads);
    memcpy(r.grads, tg_params_grads(ps), np * sizeof *r.grads);
    int no = tg_model_count(m, TG_ROLE_OUTPUT);
    for (int j = 0; j < steps * no; j++) r.n_outs += tg_size(u.outputs[j]);
    r.outs = malloc((r.n_outs + 1) * sizeof *r.outs);
    cr_assert(r.outs);
    for (int j = 0, at = 0; j < steps * no; at += (int)tg_size(u.outputs[j]), j++)
        memcpy(r.outs + at, tg_data(u.outputs[j]), tg_size(u.outputs[j]) * sizeof *r.outs);
    for (int i = 0; i < tg_tape_length(tape); i++) r.stacks += !strcmp(tg_tensor_op(tg_tape_at(tape, i)), "stack_affine");
    tg_tape_free(tape);
    return r;
}

static void expect_hoist_agrees(tg_ctx *ctx, const char *path, const tg_model *m, tg_params *ps, tg_dataset *d,
                                int t0, int steps, const tg_real *const *state0, int *hoisted)
{
    hoist_run a = hoist_unroll(ctx, m, ps, d, t0, steps, state0, 1),
              b = hoist_unroll(ctx, m, ps, d, t0, steps, state0, 0);
    const char *how = state0 ? " from a given state" : "";
    int B = tg_dataset_batch(d, 0);
    cr_expect_eq(b.stacks, 0, "%s: %d stacks with hoisting off", path, b.stacks);
    *hoisted |= a.stacks > 0;
    cr_expect(mt_close(a.loss, b.loss, REAL_TOL), "%s B=%d t0=%d%s: loss hoisted %.9g, not %.9g", path, B, t0, how,
              a.loss, b.loss);
    cr_assert_eq(a.n_outs, b.n_outs);
    for (size_t k = 0; k < a.n_outs; k++)
        if (!mt_close(a.outs[k], b.outs[k], REAL_TOL)) {
            cr_expect_fail("%s B=%d t0=%d%s: output value %zu hoisted %.9g, not %.9g", path, B, t0, how, k,
                           (double)a.outs[k], (double)b.outs[k]);
            break;
        }
    for (size_t k = 0; k < tg_params_total(ps); k++)
        if (!mt_close(a.grads[k], b.grads[k], 10 * REAL_TOL)) {
            cr_expect_fail("%s B=%d t0=%d%s: gradient %zu hoisted %.9g, not %.9g", path, B, t0, how, k,
                           (double)a.grads[k], (double)b.grads[k]);
            break;
        }
    free(a.grads);
    free(a.outs);
    free(b.grads);
    free(b.outs);
}

/* Every shipped model records the same values and gradients with its
 * state-free products hoisted as without, to rounding: whole sequences of
 * two chunks of steps and a part (TGM_HOIST_CHUNK) at batch 1 and 4, and a
 * middle piece (t0 > 0) from a given state, as truncated BPTT records it.  The models whose cells read U @ x do hoist. */
MT_TEST(models, hoisted_and_plain_fused_tapes_agree, .timeout = 60)
{
    mt_chdir_root();
    char **paths;
    int n = mt_list("models", ".yaml", &paths), n_hoisted = 0;
    for (int i = 0; i < n; i++) {
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = mt_load_small(ctx, paths[i]);
        tg_params *ps = tg_params_new(ctx);
        cr_assert_eq(tg_model_init_params(m, ps, 11), TG_OK, "%s", tg_errmsg(ctx));
        int hoisted = 0, reverse = 0, ns = tg_model_count(m, TG_ROLE_STATE);
        for (int s = 0; s < ns; s++) reverse |= tg_model_var_flags(m, TG_ROLE_STATE, s, NULL) & TG_VAR_REVERSE;
        for (int B = 1; B <= 4; B += 3) {
            /* two whole chunks of steps and a part of one */
            const int T = 2 * TGM_HOIST_CHUNK + 6;
            tg_dataset *d = tg_dataset_random(ctx, m, T, B, 17 + (uint64_t)B);
            cr_assert(d, "%s", tg_errmsg(ctx));
            expect_hoist_agrees(ctx, paths[i], m, ps, d, 0, T, NULL, &hoisted);
            if (!reverse) {
                tg_real *state0[16] = {0};
                for (int s = 0; s < ns && s < 16; s++) {
                    int rows;
                    tg_model_var(m, TG_ROLE_STATE, s, &rows, NULL);
                    state0[s] = malloc((size_t)rows * (size_t)B * sizeof **state0);
                    cr_assert(state0[s]);
                    for (int e = 0; e < rows * B; e++) state0[s][e] = (tg_real)(0.1 * ((e * 7 + s) % 9) - 0.4);
                }
                expect_hoist_agrees(ctx, paths[i], m, ps, d, 2, T - 5, (const tg_real *const *)state0, &hoisted);
                for (int s = 0; s < ns && s < 16; s++) free(state0[s]);
            }
            tg_dataset_free(d);
        }
        n_hoisted += hoisted;
        const char *base = strrchr(paths[i], '/') ? strrchr(paths[i], '/') + 1 : paths[i];
        if (!strcmp(base, "elman.yaml") || !strcmp(base, "char_embed.yaml") || !strcmp(base, "gru.yaml") ||
            !strcmp(base, "mlp.yaml"))
            cr_expect(hoisted, "%s: nothing hoisted", paths[i]);
        tg_params_free(ps);
        tg_model_free(m);
        tg_ctx_free(ctx);
    }
    cr_expect_geq(n_hoisted, 8, "%d models hoisted", n_hoisted);
    mt_free_list(paths, n);
}

/* Which instructions fuse, read off the fused tape of reassigned_model. */
MT_TEST(models, fusion_never_moves_a_read_past_an_assignment)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "reassigned.yaml", reassigned_model, strlen(reassigned_model), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 5), TG_OK);
    tg_dataset *d = tg_dataset_random(ctx, m, 1, 1, 6);
    tg_tape *tape = tg_tape_new(ctx);
    gc_user g = {m, ps, d, GC_HOISTED};
    cr_assert(gc_build(tape, &g), "%s", tg_errmsg(ctx));
    char ops[512] = "";
    for (int i = 0; i < tg_tape_length(tape); i++) {
        tg_tensor *t = tg_tape_at(tape, i);
        int step;
        const char *label = tg_tensor_label(t, &step);
        if (!t || !strcmp(tg_tensor_op(t), "input")) continue;
        snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s:%s ", label ? label : "?", tg_tensor_op(t));
    }
    /* s stays a matmul (W @ h(t-1)); h is one affine; g's sum keeps s, so its
     * products stay where they are and only the sum of s, V @ h and c fuses
     * with the sigmoid (an affine of no products); o's two products fuse.
     * (h's U @ x + b reads no state, but one step hoists nothing.) */
    cr_expect_str_eq(ops, "s:matmul h:affine g:matmul g:affine o:mul o:affine loss:squared_error ");
    /* two steps: h's U @ x + b of both is one stack_affine before them, and
     * h's entries read their blocks (affine_block) */
    tg_dataset_free(d);
    d = tg_dataset_random(ctx, m, 2, 1, 6);
    g.d = d;
    tg_tape_reset(tape);
    cr_assert(gc_build(tape, &g), "%s", tg_errmsg(ctx));
    ops[0] = 0;
    for (int i = 0; i < tg_tape_length(tape); i++) {
        tg_tensor *t = tg_tape_at(tape, i);
        int step;
        const char *label = tg_tensor_label(t, &step);
        if (!t || !strcmp(tg_tensor_op(t), "input") || step == 2) continue;
        snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s:%s ", label ? label : "?", tg_tensor_op(t));
    }
    cr_expect_str_eq(ops, "h:stack_affine s:matmul h:affine_block g:matmul g:affine o:mul o:affine loss:squared_error ");
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- unrolling -------------------------------------------------------------------------- */
/* Two chunks with the state carried over (no gradient) record the same
 * forward values as one unroll: the basis of truncated BPTT. */
MT_TEST(models, chunked_unroll_matches_whole)
{
    loaded L;
    load_all(&L, "models/lstm.yaml", NULL, NULL, NULL, 0);
    L.d = tg_dataset_random(L.ctx, L.m, 9, 3, 5);
    cr_assert(L.d);
    tg_unroll whole = unroll_seq(&L, 0, NULL);
    double lw = tg_item(whole.loss);
    int rows, ns = tg_model_count(L.m, TG_ROLE_STATE);
    tg_real keep[2][64];
    for (int i = 0; i < ns; i++) {
        tg_model_var(L.m, TG_ROLE_STATE, i, &rows, NULL);
        memcpy(keep[i], tg_data(whole.state[i]), (size_t)rows * 3 * sizeof(tg_real));
    }
    tg_tape_reset(L.tape);
    const tg_real *in[1] = {tg_dataset_values(L.d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(L.d, 0, TG_ROLE_TARGET, 0)};
    tg_unroll a = {.params = L.ps, .batch = 3, .t0 = 0, .steps = 4, .inputs = in, .targets = tg};
    cr_assert_eq(tg_model_unroll(L.m, L.tape, &a), TG_OK, "%s", tg_errmsg(L.ctx));
    tg_real carry[2][64];
    const tg_real *state0[2];
    for (int i = 0; i < ns; i++) {
        tg_model_var(L.m, TG_ROLE_STATE, i, &rows, NULL);
        memcpy(carry[i], tg_data(a.state[i]), (size_t)rows * 3 * sizeof(tg_real));
        state0[i] = carry[i];
    }
    double la = tg_item(a.loss);
    tg_tape_reset(L.tape);
    tg_unroll b = {.params = L.ps, .batch = 3, .t0 = 4, .steps = 5, .inputs = in, .targets = tg, .state0 = state0};
    cr_assert_eq(tg_model_unroll(L.m, L.tape, &b), TG_OK, "%s", tg_errmsg(L.ctx));
    cr_expect(mt_close(la + tg_item(b.loss), lw, 1e-5), "%g + %g != %g", la, tg_item(b.loss), lw);
    for (int i = 0; i < ns; i++) {
        tg_model_var(L.m, TG_ROLE_STATE, i, &rows, NULL);
        for (int k = 0; k < rows * 3; k++)
            cr_expect(mt_close(tg_data(b.state[i])[k], keep[i][k], 1e-5), "state %d element %d", i, k);
    }
    cr_expect_not_null(b.outputs);
    cr_expect_eq(tg_rows(b.outputs[4]), 2); /* o at step 8: [output, B] */
    cr_expect_eq(tg_cols(b.outputs[4]), 3);
    free_all(&L);
}

/* A batch of two equal columns gives twice the loss and twice the gradient. */
MT_TEST(models, batch_columns_add_up)
{
    loaded L;
    load_all(&L, "models/elman.yaml", "examples/data/seed.yaml", "examples/data/seed-params.yaml", NULL, 0);
    tg_unroll one = unroll_seq(&L, 0, NULL);
    cr_assert_eq(tg_backward(L.tape, one.loss), TG_OK);
    double l1 = tg_item(one.loss);
    tg_real g1 = tg_grad(tg_params_find(L.ps, "W"))[1];
    tg_real x2[3 * 2 * 2], y2[3 * 2];
    const tg_real *x = tg_dataset_values(L.d, 0, TG_ROLE_INPUT, 0), *y = tg_dataset_values(L.d, 0, TG_ROLE_TARGET, 0);
    for (int t = 0; t < 3; t++) {
        for (int r = 0; r < 2; r++) x2[t * 4 + r * 2] = x2[t * 4 + r * 2 + 1] = x[t * 2 + r];
        y2[t * 2] = y2[t * 2 + 1] = y[t];
    }
    const tg_real *in[1] = {x2}, *tg[1] = {y2};
    tg_params_zero_grad(L.ps);
    tg_tape_reset(L.tape);
    tg_unroll two = {.params = L.ps, .batch = 2, .steps = 3, .inputs = in, .targets = tg};
    cr_assert_eq(tg_model_unroll(L.m, L.tape, &two), TG_OK, "%s", tg_errmsg(L.ctx));
    cr_assert_eq(tg_backward(L.tape, two.loss), TG_OK);
    cr_expect(mt_close(tg_item(two.loss), 2 * l1, 1e-6));
    cr_expect(mt_close(tg_grad(tg_params_find(L.ps, "W"))[1], 2 * g1, 1e-5));
    free_all(&L);
}

static const char *last_model =
    "name: last\n"
    "dims: {n: 2}\n"
    "params: {W: [n, n], b: [n], V: [1, n]}\n"
    "inputs: {x: [n]}\n"
    "targets: {y: [1]}\n"
    "state: {h: {shape: [n], init: [0.5, -0.5]}}\n"
    "step:\n"
    "  - h = tanh(W @ h + x + b)\n"
    "  - s = V @ h * 0.5\n"
    "outputs: [s, h]\n"
    "loss: squared_error(s, y)\n"
    "loss_at: last\n";

MT_TEST(models, loss_at_last_counts_the_last_step_only)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "last.yaml", last_model, strlen(last_model), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_model_count(m, TG_ROLE_OUTPUT), 2);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 3), TG_OK);
    tg_dataset *d = tg_dataset_random(ctx, m, 5, 1, 4);
    tg_tape *tape = tg_tape_new(ctx);
    const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_unroll u = {.params = ps, .batch = 1, .steps = 5, .inputs = in, .targets = tg};
    cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
    double s = tg_item(u.outputs[4 * 2 + 0]), y = tg[0][4];
    cr_expect(mt_close(tg_item(u.loss), (s - y) * (s - y), 1e-6), "loss %g, want %g", tg_item(u.loss), (s - y) * (s - y));
    /* the state's literal init is h(-1) */
    tg_tape_reset(tape);
    tg_unroll first = {.params = ps, .batch = 1, .steps = 1, .inputs = in, .targets = tg, .each_op = 1};
    cr_assert_eq(tg_model_unroll(m, tape, &first), TG_OK);
    tg_tensor *h1 = first.outputs[1];
    tg_tensor *pre = tg_tensor_input(h1, 0); /* W @ h + x + b */
    tg_tensor *wh = tg_tensor_input(tg_tensor_input(pre, 0), 0);
    tg_tensor *h0 = tg_tensor_input(wh, 1);
    cr_expect(mt_close(tg_data(h0)[0], 0.5, 0) && mt_close(tg_data(h0)[1], -0.5, 0));
    /* a chunk that ends before the last step has no loss */
    tg_tape_reset(tape);
    tg_unroll early = {.params = ps, .batch = 1, .steps = 2, .seq_steps = 5, .inputs = in, .targets = tg};
    cr_assert_eq(tg_model_unroll(m, tape, &early), TG_OK);
    cr_expect_null(early.loss);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(models, dims_override_and_accessors)
{
    tg_ctx *ctx = ctx_new();
    tg_dim dims[] = {{"hidden", 5}};
    tg_model *m = tg_model_load(ctx, "models/lstm.yaml", dims, 1);
    cr_assert(m, "%s", tg_errmsg(ctx));
    cr_expect_str_eq(tg_model_name(m), "lstm");
    int r, c;
    const char *name = tg_model_var(m, TG_ROLE_PARAM, 0, &r, &c);
    cr_expect_str_eq(name, "Wf");
    cr_expect_eq(r, 5);
    cr_expect_eq(c, 2 + 5); /* [hidden, input + hidden] */
    cr_expect_eq(tg_model_count(m, TG_ROLE_STATE), 2);
    cr_expect_str_eq(tg_model_var(m, TG_ROLE_STATE, 1, &r, &c), "c");
    cr_expect_eq(c, TG_MODEL_BATCH);
    cr_expect_str_eq(tg_model_var(m, TG_ROLE_OUTPUT, 0, &r, &c), "o");
    cr_expect_eq(r, 2);
    cr_expect_eq(c, TG_MODEL_BATCH);
    tg_model_free(m);
    tg_dim bad[] = {{"hiden", 5}};
    cr_expect_null(tg_model_load(ctx, "models/lstm.yaml", bad, 1));
    cr_expect_str_eq(tg_errmsg(ctx),
                     "models/lstm.yaml: cannot set dim 'hiden': the model has no such dim (did you mean 'hidden'?)");
    tg_ctx_free(ctx);
}

/* ---- data and params files ---------------------------------------------------------------- */
static tg_dataset *parse_data(tg_ctx *ctx, tg_model *m, const char *text)
{
    return tg_dataset_parse(ctx, m, "d.yaml", text, strlen(text));
}

MT_TEST(models, data_file_forms)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_load(ctx, "models/elman.yaml", NULL, 0);
    cr_assert(m);
    /* vectors, a matrix per step (batch 2), scalars for a one-row target */
    tg_dataset *d = parse_data(ctx, m,
                               "- x: [[1, 2], [3, 4]]\n  y: [0.5, 0.25]\n"
                               "- x: [[[1, 2], [3, 4]]]\n  y: [[[5, 6]]]\n"
                               "- x: [[1, 0]]\n");
    cr_assert(d, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_dataset_count(d), 3);
    cr_expect_eq(tg_dataset_steps(d, 0), 2);
    cr_expect_eq(tg_dataset_batch(d, 0), 1);
    cr_expect_eq(tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)[3], 4);
    cr_expect_eq(tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)[1], (tg_real)0.25);
    cr_expect_eq(tg_dataset_batch(d, 1), 2);
    cr_expect_eq(tg_dataset_values(d, 1, TG_ROLE_INPUT, 0)[2], 3); /* row 1, column 0 */
    cr_expect_eq(tg_dataset_values(d, 1, TG_ROLE_TARGET, 0)[1], 6);
    cr_expect_null(tg_dataset_values(d, 2, TG_ROLE_TARGET, 0));
    tg_dataset_free(d);

    static const struct { const char *text, *msg; } bad[] = {
        {"x: [[1, 0]]\nz: [1]\n", "d.yaml:2:1: 'z' is not an input or target of model elman"},
        {"y: [1]\n", "d.yaml:1:1: input 'x' is missing"},
        {"x: [[1, 0], [1, 2]]\ny: [1]\n", "d.yaml:2:1: 'y' has 1 steps but 'x' (line 1) has 2"},
        {"x: [[1, 0, 3]]\n", "d.yaml:1:5: 'x' step 1: expected 2 numbers, got 3"},
        {"x: [[1, zero]]\n", "d.yaml:1:9: 'x' step 1: expected a number, got 'zero'"},
        {"x: [[[1, 2], [3]]]\n", "d.yaml:1:14: 'x' step 1 row 2: expected 2 numbers (the batch), got 1"},
        {"x: [[1, .nan]]\n", "d.yaml:1:9: 'x' step 1: expected a number, got '.nan'"},
        {"- x: [[1, 0]]\n- x: 3\n", "d.yaml:2:6: 'x' must be a non-empty list of steps, not a number"},
        {"x: &a [[1, 0]]\n", "d.yaml:1:4: anchors ('&a') are not allowed: the file must be plain data"},
        {"", "d.yaml:1:1: the data file is empty"},
        {"xx: [[1, 0]]\n", "d.yaml:1:1: 'xx' is not an input or target of model elman (did you mean 'x'?)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_null(parse_data(ctx, m, bad[i].text), "case %zu parsed", i);
        cr_expect_str_eq(tg_errmsg(ctx), bad[i].msg, "case %zu", i);
    }
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(models, params_save_load_round_trip)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_load(ctx, "models/gru.yaml", NULL, 0);
    cr_assert(m);
    tg_params *a = tg_params_new(ctx), *b = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, a, 42), TG_OK);
    char dir[] = "/tmp/tgparamsXXXXXX";
    cr_assert(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/p.yaml", dir);
    cr_assert_eq(tg_params_save(a, m, path), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_params_load(b, m, path), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_params_count(b), tg_params_count(a));
    for (int i = 0; i < tg_params_count(a); i++) {
        tg_tensor *pa = tg_params_at(a, i), *pb = tg_params_find(b, tg_params_name(a, i));
        cr_assert(pb);
        cr_expect_eq(memcmp(tg_data(pa), tg_data(pb), tg_size(pa) * sizeof(tg_real)), 0, "%s differs",
                     tg_params_name(a, i));
    }
    /* nothing but the file is left behind */
    char **left;
    int n = mt_list(dir, "", &left);
    cr_expect_eq(n, 1);
    mt_free_list(left, n);
    /* a bad file changes nothing and names the problem */
    FILE *f = fopen(path, "w");
    fputs("bz: [1, 2, 3, 4]\nWz: [[1, 2], [3, 4]]\n", f);
    fclose(f);
    tg_real before = tg_data(tg_params_find(b, "bz"))[0];
    cr_expect_neq(tg_params_load(b, m, path), TG_OK);
    char want[256];
    snprintf(want, sizeof want, "%s:2:5: 'Wz': expected 4 rows (shape [4, 2]), got 2", path);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    cr_expect_eq(tg_data(tg_params_find(b, "bz"))[0], before);
    f = fopen(path, "w");
    fputs("Wq: [[1, 2]]\n", f);
    fclose(f);
    cr_expect_neq(tg_params_load(b, m, path), TG_OK);
    snprintf(want, sizeof want, "%s:1:1: model gru has no parameter 'Wq' (did you mean 'Wz'?)", path);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    unlink(path);
    rmdir(dir);
    tg_params_free(a);
    tg_params_free(b);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- registered ops are part of the language ----------------------------------------------- */
static int square_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t len)
{
    (void)n, (void)attrs, (void)err, (void)len;
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}
static void square_forward(tg_tensor *out)
{
    tg_tensor *x = tg_tensor_input(out, 0);
    for (size_t i = 0; i < tg_size(out); i++) tg_data(out)[i] = tg_data(x)[i] * tg_data(x)[i];
}
static void square_backward(tg_tensor *out)
{
    tg_tensor *x = tg_tensor_input(out, 0);
    if (!tg_grad(x)) return;
    for (size_t i = 0; i < tg_size(out); i++) tg_grad(x)[i] += 2 * tg_data(x)[i] * tg_grad(out)[i];
}

MT_TEST(models, registered_op_in_a_model)
{
    tg_ctx *ctx = ctx_new();
    tg_op_spec sq = {"square", 1, 0, square_shape, square_forward, square_backward};
    cr_assert_eq(tg_op_register(ctx, &sq), TG_OK, "%s", tg_errmsg(ctx));
    const char *text =
        "dims: {n: 3}\nparams: {W: [n, n], b: [n]}\ninputs: {x: [n]}\ntargets: {y: [n]}\n"
        "state: {h: [n]}\nstep:\n  - h = tanh(W @ h + square(x) + b)\nloss: sum(square(h - y))\n";
    tg_model *m = tg_model_parse(ctx, "sq.yaml", text, strlen(text), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    cr_expect_str_eq(tg_model_name(m), "sq"); /* from the file name */
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    tg_dataset *d = tg_dataset_random(ctx, m, 6, 2, 2);
    tg_tape *tape = tg_tape_new(ctx);
    gc_user u = {m, ps, d, GC_HOISTED};
    tg_gradcheck_result r;
    cr_expect_eq(tg_gradcheck(tape, ps, gc_build, &u, NULL, &r), TG_OK, "%s", tg_errmsg(ctx));
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    /* without the registration the name is unknown */
    tg_ctx *plain = tg_ctx_new(NULL);
    cr_expect_null(tg_model_parse(plain, "sq.yaml", text, strlen(text), NULL, 0));
    cr_expect_str_eq(tg_errmsg(plain), "sq.yaml:7:22: unknown op 'square'");
    tg_ctx_free(plain);
    tg_ctx_free(ctx);
}

/* ---- robustness -------------------------------------------------------------------------- */
/* Every prefix of every shipped model, and random byte mutations, load or
 * fail with a positioned message; never crash, hang or leak (the sanitizer
 * build runs this too). */
MT_TEST(models, truncated_and_mutated_files, .timeout = 120)
{
    tg_ctx *ctx = ctx_new();
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        char *text = mt_read(paths[i], &len);
        cr_assert(text);
        size_t stride = len / 400 + 1;
        for (size_t k = 0; k < len; k += stride) {
            tg_model *m = tg_model_parse(ctx, "cut.yaml", text, k, NULL, 0);
            if (!m) cr_expect(strncmp(tg_errmsg(ctx), "cut.yaml:", 9) == 0, "prefix %zu: %s", k, tg_errmsg(ctx));
            tg_model_free(m);
        }
        char *copy = malloc(len + 1);
        for (int trial = 0; trial < 300; trial++) {
            memcpy(copy, text, len + 1);
            for (int k = 0; k < 3; k++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                static const char pool[] = "[]{}(),:#&*!|>-=@+ \n\"'x0.";
                copy[rng % len] = pool[(rng >> 32) % (sizeof pool - 1)];
            }
            tg_model *m = tg_model_parse(ctx, "mut.yaml", copy, len, NULL, 0);
            if (!m) cr_expect(strncmp(tg_errmsg(ctx), "mut.yaml:", 9) == 0, "%s", tg_errmsg(ctx));
            tg_model_free(m);
        }
        free(copy);
        free(text);
    }
    mt_free_list(paths, n);
    /* data files too */
    tg_model *elman = tg_model_load(ctx, "models/elman.yaml", NULL, 0);
    size_t len = 0;
    char *text = mt_read("examples/data/seed.yaml", &len);
    cr_assert(elman && text);
    char *copy = malloc(len + 1);
    for (int trial = 0; trial < 500; trial++) {
        memcpy(copy, text, len + 1);
        size_t cut = len;
        for (int k = 0; k < 3; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            static const char pool[] = "[]{}(),:#&*!-. \n\"'x0y9e";
            copy[rng % len] = pool[(rng >> 32) % (sizeof pool - 1)];
            if (trial % 5 == 0) cut = (rng >> 16) % len;
        }
        tg_dataset *d = tg_dataset_parse(ctx, elman, "mut.yaml", copy, cut);
        if (!d) cr_expect(strncmp(tg_errmsg(ctx), "mut.yaml:", 9) == 0, "%s", tg_errmsg(ctx));
        tg_dataset_free(d);
    }
    free(copy);
    free(text);
    tg_model_free(elman);
    /* the classic alias bomb is refused at the first alias */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
    cr_expect_null(tg_model_parse(ctx, "bomb.yaml", bomb, strlen(bomb), NULL, 0));
    cr_expect_str_eq(tg_errmsg(ctx), "bomb.yaml:1:4: anchors ('&a') are not allowed: the file must be plain data");
    /* limits: a long flow list is refused by size, not by running out of memory */
    cr_expect_null(tg_model_load(ctx, "/nonexistent/model.yaml", NULL, 0));
    cr_expect_str_eq(tg_errmsg(ctx), "/nonexistent/model.yaml: cannot open the model file: No such file or directory");
    cr_expect_null(tg_model_load(ctx, "models", NULL, 0));
    cr_expect_str_eq(tg_errmsg(ctx), "models: cannot read the model file: it is a directory");
    tg_ctx_free(ctx);
}

/* An allocator that fails the Nth call and counts what is outstanding. */
typedef struct failing {
    long calls, fail_at;
    long long bytes;
} failing;
static void *f_alloc(size_t size, void *user)
{
    failing *f = user;
    if (++f->calls == f->fail_at) return NULL;
    f->bytes += (long long)size;
    return malloc(size);
}
static void *f_realloc(void *p, size_t old, size_t size, void *user)
{
    failing *f = user;
    if (++f->calls == f->fail_at) return NULL;
    void *q = realloc(p, size);
    if (q) f->bytes += (long long)size - (long long)old;
    return q;
}
static void f_free(void *p, size_t size, void *user)
{
    failing *f = user;
    f->bytes -= (long long)size;
    free(p);
}

MT_TEST(models, out_of_memory_anywhere_leaks_nothing, .timeout = 120)
{
    mt_chdir_root();
    failing f = {0, 0, 0};
    tg_allocator a = {f_alloc, f_realloc, f_free, &f};
    tg_ctx *ctx = tg_ctx_new(&a);
    cr_assert(ctx);
    long long base = f.bytes;
    int done = 0;
    for (long n = 1; n < 100000 && !done; n++) {
        f.calls = 0;
        f.fail_at = n;
        tg_model *m = tg_model_load(ctx, "models/elman.yaml", NULL, 0);
        tg_params *ps = m ? tg_params_new(ctx) : NULL;
        tg_dataset *d = NULL;
        tg_tape *tape = NULL;
        if (ps && tg_model_init_params(m, ps, 1) == TG_OK &&
            tg_params_load(ps, m, "examples/data/seed-params.yaml") == TG_OK &&
            (d = tg_dataset_load(ctx, m, "examples/data/seed.yaml")) && (tape = tg_tape_new(ctx))) {
            const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
            const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
            tg_unroll u = {.params = ps, .batch = 1, .steps = 3, .inputs = in, .targets = tg};
            if (tg_model_unroll(m, tape, &u) == TG_OK && tg_backward(tape, u.loss) == TG_OK) done = 1;
        }
        if (!done) cr_expect(tg_errmsg(ctx)[0], "no message at n=%ld", n);
        tg_tape_free(tape);
        tg_dataset_free(d);
        tg_params_free(ps);
        tg_model_free(m);
        cr_assert_eq(f.bytes, base, "%lld bytes leaked when allocation %ld failed", f.bytes - base, n);
    }
    cr_expect(done);
    tg_ctx_free(ctx);
}
