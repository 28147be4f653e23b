/* test_defer.c — parameter gradients deferred to one product per sweep
 * (core/defer.c) against the same sweep adding every step's at once (the
 * tape's internal `immediate` switch): every shipped model, fused and per
 * operator, at batch 1 and 4; the gradient check with deferral on; groups
 * that fill and start again; a sweep hook turning it off; and the sweep's
 * error paths (an anomaly mid-sweep, a NaN or an overflow in deferred work,
 * running out of memory), which add or drop the pending work and leak
 * nothing (the SAN build checks). */
#include "failing_alloc.h"
#include "gemm.h"
#include "tg_internal.h"
#include "models_testutil.h"
#include <float.h>
#include <limits.h>
#include <stdint.h>

#ifdef TG_REAL_DOUBLE
#define EPS DBL_EPSILON
#else
#define EPS ((double)FLT_EPSILON)
#endif

static tg_ctx *ctx_new(void)
{
    mt_chdir_root();
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    return ctx;
}

static double inf_norm(const tg_real *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s = fmax(s, fabs((double)v[i]));
    return s;
}

/* One recording of model m (T steps, batch B) swept on a tape deferring or
 * not; the parameters' gradients into out.  Returns the groups the sweep made. */
static int model_grads(tg_ctx *ctx, tg_model *m, tg_params *ps, tg_dataset *d, int T, int B, int each_op,
                       bool immediate, tg_real *out)
{
    const tg_real *in[16], *tg[16];
    for (int i = 0; i < tg_model_count(m, TG_ROLE_INPUT); i++) in[i] = tg_dataset_values(d, 0, TG_ROLE_INPUT, i);
    for (int i = 0; i < tg_model_count(m, TG_ROLE_TARGET); i++) tg[i] = tg_dataset_values(d, 0, TG_ROLE_TARGET, i);
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.immediate = immediate;
    tape->defer.min_elems = 0; /* these cells are small */
    tg_params_zero_grad(ps);
    tg_unroll u = {.params = ps, .batch = B, .steps = T, .inputs = in, .targets = tg, .each_op = each_op};
    cr_assert_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, u.loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_null(ctx->defer, "the sweep leaves the context as it found it");
    int groups = tape->defer.n_groups;
    for (int g = 0; g < groups; g++) cr_assert_eq(tape->defer.g[g].used, 0, "group %d was not added", g);
    memcpy(out, tg_params_grads(ps), tg_params_total(ps) * sizeof(tg_real));
    tg_tape_free(tape);
    return groups;
}

/* Deferred and immediate differ only in the order of the additions: within
 * T B eps of the largest gradient, eps of tg_real (a sum of T B terms,
 * reordered; the worst measured in float is 0.04 T B eps, char_rnn at B=4). */
MT_TEST(defer, every_shipped_model_agrees_with_immediate, .timeout = 120)
{
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    cr_assert_gt(n, 10);
    const int T = 20;
    int runs = 0;
    for (int i = 0; i < n; i++)
        for (int B = 1; B <= 4; B += 3)
            for (int each_op = 0; each_op < 2; each_op++) {
                tg_ctx *ctx = ctx_new();
                tg_model *m = mt_load_small(ctx, paths[i]);
                if (!tg_model_has_loss(m)) {
                    tg_model_free(m);
                    tg_ctx_free(ctx);
                    continue;
                }
                tg_params *ps = tg_params_new(ctx);
                cr_assert_eq(tg_model_init_params(m, ps, 7), TG_OK, "%s", tg_errmsg(ctx));
                tg_dataset *d = tg_dataset_random(ctx, m, T, B, 8);
                cr_assert(d, "%s", tg_errmsg(ctx));
                size_t np = tg_params_total(ps);
                tg_real *want = malloc(np * sizeof *want), *got = malloc(np * sizeof *got);
                cr_assert_eq(model_grads(ctx, m, ps, d, T, B, each_op, true, want), 0);
                int groups = model_grads(ctx, m, ps, d, T, B, each_op, false, got);
                cr_expect_gt(groups, 0, "%s B=%d%s: nothing deferred", paths[i], B, each_op ? " each op" : "");
                runs++;
                double scale = inf_norm(want, np), worst = 0;
                for (size_t j = 0; j < np; j++) worst = fmax(worst, fabs((double)got[j] - (double)want[j]));
                cr_expect(worst <= (double)T * B * EPS * fmax(scale, DBL_MIN),
                          "%s B=%d%s: deferred gradients differ by %.3g, %.2f T B eps of the largest (%.3g)", paths[i],
                          B, each_op ? " each op" : "", worst, worst / (T * B * EPS * scale), scale);
                free(want);
                free(got);
                tg_dataset_free(d);
                tg_params_free(ps);
                tg_model_free(m);
                tg_ctx_free(ctx);
            }
    cr_expect_gt(runs, 2 * n);
    mt_free_list(paths, n);
}

/* ---- an Elman network by hand: affine(U, x_t, W, h, b), tanh -------------------- */
typedef struct elman {
    tg_params *ps;
    tg_tensor *U, *W, *b;
    int I, H, B, T, poison_at; /* poison_at: step whose state passes through the "poison" op, -1 none */
} elman;

static tg_tensor *elman_build(tg_tape *tape, void *user)
{
    const elman *e = user;
    tg_tensor *h = tg_input(tape, e->H, e->B, NULL, 0), *loss = NULL;
    for (int t = 0; t < e->T; t++) {
        tg_real x[64 * 64];
        for (int i = 0; i < e->I * e->B; i++) x[i] = (tg_real)sin(0.3 * t + 0.7 * i);
        tg_tensor *in[] = {e->U, tg_input(tape, e->I, e->B, x, 0), e->W, h, e->b};
        double attrs[] = {2, 1};
        h = tg_apply(tape, "affine", 5, in, 2, attrs);
        if (t == e->poison_at) h = tg_apply(tape, "poison", 1, &h, 0, NULL);
        tg_tensor *l = tg_sum(tape, tg_mul(tape, h, h));
        loss = loss ? tg_add(tape, loss, l) : l;
    }
    return loss;
}

static void elman_init(elman *e, tg_ctx *ctx, int I, int H, int B, int T)
{
    *e = (elman){.ps = tg_params_new(ctx), .I = I, .H = H, .B = B, .T = T, .poison_at = -1};
    e->U = tg_params_add(e->ps, "U", H, I);
    e->W = tg_params_add(e->ps, "W", H, H);
    e->b = tg_params_add(e->ps, "b", H, 1);
    tg_real *v = tg_params_values(e->ps);
    for (size_t i = 0; i < tg_params_total(e->ps); i++) v[i] = (tg_real)(0.4 * sin(1.0 + 0.37 * (double)i));
}

/* poison: the identity, whose backward makes the gradient's first element infinite */
static int poison_shape(int n, const int (*in)[2], const double *a, int out[2], char *err, size_t len)
{
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}
static void poison_fwd(tg_tensor *o) { memcpy(o->val, o->in[0]->val, tg_numel(o) * sizeof(tg_real)); }
static void poison_bwd(tg_tensor *o)
{
    tg_real *g = o->in[0]->grad;
    if (!g) return;
    for (size_t i = 0; i < tg_numel(o); i++) g[i] += o->grad[i];
    g[0] = (tg_real)INFINITY;
}

static void register_poison(tg_ctx *ctx)
{
    tg_op_spec spec = {"poison", 1, 0, poison_shape, poison_fwd, poison_bwd};
    cr_assert_eq(tg_op_register(ctx, &spec), TG_OK, "%s", tg_errmsg(ctx));
}

static bool wide; /* elman_sweep: defer entries of any batch */

/* Sweeps e's tape; the status, the message, the gradients (into g). */
static tg_status elman_sweep(tg_ctx *ctx, elman *e, bool immediate, bool anomaly, tg_real *g, char *msg, int *groups)
{
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.immediate = immediate;
    tape->defer.min_elems = 0; /* these cells are small */
    if (wide) tape->defer.max_n = INT_MAX;
    tg_tape_detect_anomaly(tape, anomaly);
    tg_params_zero_grad(e->ps);
    tg_tensor *loss = elman_build(tape, e);
    cr_assert(loss, "%s", tg_errmsg(ctx));
    tg_status st = tg_backward(tape, loss);
    snprintf(msg, TG_ERRMSG_LEN, "%s", st ? tg_errmsg(ctx) : "");
    cr_assert_null(ctx->defer);
    for (int k = 0; k < tape->defer.n_groups; k++) cr_assert_eq(tape->defer.g[k].used, 0, "group %d left pending", k);
    if (groups) *groups = tape->defer.n_groups;
    memcpy(g, tg_params_grads(e->ps), tg_params_total(e->ps) * sizeof(tg_real));
    tg_tape_free(tape);
    return st;
}

static void expect_close(const tg_real *got, const tg_real *want, size_t n, double tol, const char *what)
{
    double scale = inf_norm(want, n);
    for (size_t j = 0; j < n; j++)
        cr_expect(fabs((double)got[j] - (double)want[j]) <= tol * fmax(scale, 1e-30), "%s: gradient %zu is %.9g, not %.9g",
                  what, j, (double)got[j], (double)want[j]);
}

/* 40 steps of batch 64 are 2560 columns: a group of at most TG_DEFER_COLS
 * fills and starts again. */
MT_TEST(defer, full_groups_are_added_and_start_again)
{
    tg_ctx *ctx = ctx_new();
    elman e;
    elman_init(&e, ctx, 3, 5, 64, 40);
    size_t np = tg_params_total(e.ps);
    tg_real *want = malloc(np * sizeof *want), *got = malloc(np * sizeof *got);
    char msg[TG_ERRMSG_LEN];
    int groups = -1;
    wide = true; /* batch 64 */
    cr_assert_eq(elman_sweep(ctx, &e, true, false, want, msg, &groups), TG_OK, "%s", msg);
    cr_assert_eq(groups, 0);
    cr_assert_eq(elman_sweep(ctx, &e, false, false, got, msg, &groups), TG_OK, "%s", msg);
    cr_assert_eq(groups, 1);
    cr_assert_gt(e.T * e.B, TG_DEFER_COLS);
    expect_close(got, want, np, (double)e.T * e.B * EPS, "deferred");
    /* by default a batch of 64 is added at every step */
    wide = false;
    cr_assert_eq(elman_sweep(ctx, &e, false, false, got, msg, &groups), TG_OK, "%s", msg);
    cr_expect_eq(groups, 0);
    cr_expect_eq(memcmp(got, want, np * sizeof *want), 0);
    free(want);
    free(got);
    tg_params_free(e.ps);
    tg_ctx_free(ctx);
}

static int hook_calls;
static void count_hook(tg_tensor *t, void *user) { hook_calls++; }

/* A sweep hook watches parameter gradients grow entry by entry (per-step
 * gradient norms): nothing is deferred, and the gradients are bit for bit
 * the immediate ones. */
MT_TEST(defer, a_sweep_hook_turns_it_off)
{
    tg_ctx *ctx = ctx_new();
    elman e;
    elman_init(&e, ctx, 2, 3, 2, 10);
    size_t np = tg_params_total(e.ps);
    tg_real *want = malloc(np * sizeof *want);
    char msg[TG_ERRMSG_LEN];
    cr_assert_eq(elman_sweep(ctx, &e, true, false, want, msg, NULL), TG_OK);
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.min_elems = 0;
    tg_tape_set_sweep_hook(tape, count_hook, NULL);
    tg_params_zero_grad(e.ps);
    cr_assert_eq(tg_backward(tape, elman_build(tape, &e)), TG_OK);
    cr_expect_eq(tape->defer.n_groups, 0);
    cr_expect_gt(hook_calls, 0);
    cr_expect_eq(memcmp(want, tg_params_grads(e.ps), np * sizeof *want), 0);
    tg_tape_free(tape);
    free(want);
    tg_params_free(e.ps);
    tg_ctx_free(ctx);
}

/* The gradient check passes with deferral on (tests/test_models.c checks
 * every shipped model; this one makes sure the check's sweeps deferred). */
MT_TEST(defer, the_gradient_check_passes_deferred)
{
    tg_ctx *ctx = ctx_new();
    elman e;
    elman_init(&e, ctx, 3, 4, 3, 12);
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.min_elems = 0;
    tg_gradcheck_result r;
    cr_expect_eq(tg_gradcheck(tape, e.ps, elman_build, &e, NULL, &r), TG_OK, "%s (worst %.3g)", tg_errmsg(ctx),
                 r.max_err);
    cr_expect_gt(r.checked, 0);
    tg_tape_reset(tape);
    cr_assert_eq(tg_backward(tape, elman_build(tape, &e)), TG_OK);
    cr_expect_eq(tape->defer.n_groups, 1, "the check's sweeps deferred");
    tg_tape_free(tape);
    tg_params_free(e.ps);
    tg_ctx_free(ctx);
}

/* An anomaly mid-sweep: the sweep stops at the poisoned step with the
 * message an immediate sweep gives, and the later steps' pending products
 * are added before it returns, as an immediate sweep had added them. */
MT_TEST(defer, an_anomaly_mid_sweep_adds_what_is_pending)
{
    tg_ctx *ctx = ctx_new();
    register_poison(ctx);
    elman e;
    elman_init(&e, ctx, 3, 4, 2, 12);
    e.poison_at = 5;
    size_t np = tg_params_total(e.ps);
    tg_real *want = malloc(np * sizeof *want), *got = malloc(np * sizeof *got);
    char want_msg[TG_ERRMSG_LEN], got_msg[TG_ERRMSG_LEN];
    cr_assert_eq(elman_sweep(ctx, &e, true, true, want, want_msg, NULL), TG_ERR_NONFINITE);
    int groups;
    cr_assert_eq(elman_sweep(ctx, &e, false, true, got, got_msg, &groups), TG_ERR_NONFINITE);
    cr_expect_eq(groups, 1);
    cr_expect(strstr(got_msg, "non-finite gradient flowing into input 0 of entry"), "%s", got_msg);
    cr_expect_str_eq(got_msg, want_msg);
    cr_expect_gt(inf_norm(want, np), 0, "the later steps added something");
    expect_close(got, want, np, (double)e.T * e.B * EPS, "after the anomaly");
    free(want);
    free(got);
    tg_params_free(e.ps);
    tg_ctx_free(ctx);
}

/* ---- an op that defers through ops/gemm.h: y = P x, its da made NaN or huge ---- */
static int pmm_shape(int n, const int (*in)[2], const double *a, int out[2], char *err, size_t len)
{
    out[0] = in[0][0];
    out[1] = in[1][1];
    return 0;
}
static void pmm_fwd(tg_tensor *o)
{
    const tg_tensor *p = o->in[0], *x = o->in[1];
    tg_mm_forward(o->op->ctx, p->rows, x->cols, p->cols, p->val, x->val, o->val, false);
}
/* finite, but their product is not */
#ifdef TG_REAL_DOUBLE
#define HUGE_DA 1e200
#define HUGE_X 1e200
#else
#define HUGE_DA 1e30
#define HUGE_X 1e20
#endif
/* attr 0: 1 puts a NaN into da, 2 scales da to overflow once multiplied by x */
static void pmm_bwd(tg_tensor *o)
{
    tg_tensor *p = o->in[0], *x = o->in[1];
    const tg_real *da;
    size_t n = tg_numel(o);
    static tg_real buf[4096];
    cr_assert_leq(n, 4096);
    for (size_t i = 0; i < n; i++) buf[i] = o->grad[i];
    if (o->attr[0] == 1) buf[0] = (tg_real)NAN;
    if (o->attr[0] == 2)
        for (size_t i = 0; i < n; i++) buf[i] = (tg_real)HUGE_DA;
    da = buf;
    const tg_real *xv = x->val;
    if (!(tg_defer_wants(o->op->ctx, p) && tg_mm_grad_a_deferred(o, da, 1, &p, &xv, 0, NULL)) && p->grad)
        tg_mm_backward(o->op->ctx, p->rows, x->cols, p->cols, p->val, x->val, da, p->grad, NULL);
}

typedef struct pmm_net {
    tg_params *ps;
    tg_tensor *P;
    int bad_at;    /* step whose product's da is made bad */
    double how;    /* 1 NaN, 2 overflow */
} pmm_net;

static tg_tensor *pmm_build(tg_tape *tape, void *user)
{
    const pmm_net *q = user;
    tg_tensor *loss = NULL;
    for (int t = 0; t < 8; t++) {
        tg_real x[6];
        for (int i = 0; i < 6; i++) x[i] = (tg_real)(HUGE_X * (1 + i % 2));
        if (q->how != 2)
            for (int i = 0; i < 6; i++) x[i] = (tg_real)cos(t + i);
        tg_tensor *in[] = {q->P, tg_input(tape, 3, 2, x, 0)};
        double a[] = {q->how == 2 || t == q->bad_at ? q->how : 0}; /* an overflow at every step */
        tg_tensor *y = tg_apply(tape, "pmm", 2, in, 1, a);
        tg_tensor *l = tg_sum(tape, y);
        loss = loss ? tg_add(tape, loss, l) : l;
    }
    return loss;
}

static tg_status pmm_sweep(tg_ctx *ctx, pmm_net *q, bool immediate, char *msg)
{
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.immediate = immediate;
    tape->defer.min_elems = 0; /* these cells are small */
    tg_tape_detect_anomaly(tape, 1);
    tg_params_zero_grad(q->ps);
    tg_tensor *loss = pmm_build(tape, q);
    cr_assert(loss, "%s", tg_errmsg(ctx));
    tg_status st = tg_backward(tape, loss);
    snprintf(msg, TG_ERRMSG_LEN, "%s", st ? tg_errmsg(ctx) : "");
    cr_assert_null(ctx->defer);
    tg_tape_free(tape);
    return st;
}

/* A NaN in deferred work is found at the entry that deferred it, with the
 * immediate sweep's message (the pending products are added first, so the
 * parameter's gradient in it is the immediate one); a sum that overflows is
 * found when the products are added. */
MT_TEST(defer, a_nan_or_an_overflow_in_deferred_work_is_reported)
{
    tg_ctx *ctx = ctx_new();
    tg_op_spec spec = {"pmm", 2, 1, pmm_shape, pmm_fwd, pmm_bwd};
    cr_assert_eq(tg_op_register(ctx, &spec), TG_OK, "%s", tg_errmsg(ctx));
    pmm_net q = {.ps = tg_params_new(ctx), .bad_at = 3, .how = 1};
    q.P = tg_params_add(q.ps, "P", 2, 3);
    for (int i = 0; i < 6; i++) tg_params_values(q.ps)[i] = (tg_real)(0.1 * i);
    char want[TG_ERRMSG_LEN], got[TG_ERRMSG_LEN];
    cr_assert_eq(pmm_sweep(ctx, &q, true, want), TG_ERR_NONFINITE, "%s", tg_errmsg(ctx));
    cr_assert_eq(pmm_sweep(ctx, &q, false, got), TG_ERR_NONFINITE, "%s", tg_errmsg(ctx));
    cr_expect(strstr(got, "non-finite gradient flowing into input 0 of entry"), "%s", got);
    cr_expect_str_eq(got, want);
    /* finite da and x whose products overflow */
    q.how = 2;
    cr_assert_eq(pmm_sweep(ctx, &q, true, want), TG_ERR_NONFINITE, "%s", tg_errmsg(ctx));
    cr_expect(strstr(want, "non-finite gradient flowing into input 0 of entry"), "%s", want);
    cr_assert_eq(pmm_sweep(ctx, &q, false, got), TG_ERR_NONFINITE, "%s", tg_errmsg(ctx));
    cr_expect(strstr(got, "non-finite gradient of a parameter [2, 3] after adding the products of entries "), "%s",
              got);
    tg_params_free(q.ps);
    tg_ctx_free(ctx);
}

/* Out of memory anywhere in a deferring sweep (a group's buffers among the
 * requests): TG_ERR_NOMEM with a message, nothing pending, nothing leaked,
 * and the same tape sweeps again once memory is back. */
MT_TEST(defer, out_of_memory_in_a_deferring_sweep_leaks_nothing)
{
    mt_chdir_root();
    failing f = {.countdown = -1};
    tg_allocator a = {f_alloc, f_realloc, f_free, &f};
    tg_ctx *ctx = tg_ctx_new(&a);
    cr_assert(ctx);
    elman e;
    elman_init(&e, ctx, 3, 40, 8, 30); /* buffers larger than the first arena chunk */
    size_t np = tg_params_total(e.ps);
    tg_real *want = malloc(np * sizeof *want);
    char msg[TG_ERRMSG_LEN];
    cr_assert_eq(elman_sweep(ctx, &e, false, false, want, msg, NULL), TG_OK);
    int failed_in_sweep = 0, done = 0;
    for (long n = 0; n < 10000 && !done; n++) {
        long live = f.live;
        tg_tape *tape = tg_tape_new(ctx);
        cr_assert(tape);
        tape->defer.min_elems = 0;
        tg_params_zero_grad(e.ps);
        tg_tensor *loss = elman_build(tape, &e);
        cr_assert(loss, "%s", tg_errmsg(ctx));
        f.countdown = n;
        tg_status st = tg_backward(tape, loss);
        f.countdown = -1;
        cr_assert_null(ctx->defer);
        if (st == TG_OK) {
            done = 1;
            cr_expect_eq(memcmp(want, tg_params_grads(e.ps), np * sizeof *want), 0);
        } else {
            failed_in_sweep++;
            cr_expect_eq(st, TG_ERR_NOMEM, "allocation %ld: %s", n, tg_errmsg(ctx));
            for (int k = 0; k < tape->defer.n_groups; k++) cr_expect_eq(tape->defer.g[k].used, 0);
            tg_params_zero_grad(e.ps);
            cr_assert_eq(tg_backward(tape, loss), TG_OK, "the tape sweeps again: %s", tg_errmsg(ctx));
            cr_expect_eq(memcmp(want, tg_params_grads(e.ps), np * sizeof *want), 0);
        }
        tg_tape_free(tape);
        cr_expect_eq(f.live, live, "allocation %ld: %ld blocks leaked", n, f.live - live);
    }
    cr_expect(done);
    cr_expect_gt(failed_in_sweep, 0, "no allocation in the sweep failed");
    free(want);
    tg_params_free(e.ps);
    tg_ctx_free(ctx);
}

/* Below TG_DEFER_MIN_ELEMS (m times the products' columns) deferring costs
 * more than it saves (core/defer.c): a new tape adds such a cell's products
 * at once, bit for bit as immediate, and defers a larger one. */
MT_TEST(defer, small_cells_are_added_at_once)
{
    tg_ctx *ctx = ctx_new();
    for (int H = 8; H <= 64; H += 56) { /* 8 x 11 and 64 x 67 elements */
        elman e;
        elman_init(&e, ctx, 3, H, 2, 6);
        size_t np = tg_params_total(e.ps);
        tg_real *want = malloc(np * sizeof *want);
        char msg[TG_ERRMSG_LEN];
        cr_assert_eq(elman_sweep(ctx, &e, true, false, want, msg, NULL), TG_OK);
        tg_tape *tape = tg_tape_new(ctx);
        cr_assert_eq(tape->defer.min_elems, TG_DEFER_MIN_ELEMS);
        tg_params_zero_grad(e.ps);
        cr_assert_eq(tg_backward(tape, elman_build(tape, &e)), TG_OK);
        cr_expect_eq(tape->defer.n_groups, H == 64, "H %d: %d groups", H, tape->defer.n_groups);
        if (H == 8) cr_expect_eq(memcmp(want, tg_params_grads(e.ps), np * sizeof *want), 0);
        tg_tape_free(tape);
        free(want);
        tg_params_free(e.ps);
    }
    tg_ctx_free(ctx);
}

/* Under a memory budget nothing is deferred (the buffers would shorten the
 * segments, docs/memory.md), from then on until the tape is sized again. */
MT_TEST(defer, a_budget_tape_defers_nothing)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = mt_load_small(ctx, "models/elman.yaml");
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 3), TG_OK);
    tg_dataset *d = tg_dataset_random(ctx, m, 20, 2, 4);
    const tg_real *in[] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_unroll u = {.params = ps, .batch = 2, .steps = 20, .inputs = in, .targets = tg};
    tg_tape *tape = tg_tape_new(ctx);
    tape->defer.min_elems = 0;
    cr_assert_eq(tg_model_backprop(m, tape, &u, 0, NULL, NULL, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_gt(tape->defer.n_groups, 0);
    tg_bptt_plan plan;
    cr_assert_eq(tg_model_backprop(m, tape, &u, 16 << 10, NULL, NULL, &plan), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_gt(plan.segments, 1);
    cr_expect(tape->defer.budget);
    cr_expect_eq(tape->defer.n_groups, 0);
    cr_assert_eq(tg_model_backprop(m, tape, &u, 0, NULL, NULL, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tape->defer.n_groups, 0, "the tape keeps its budget's choice");
    cr_assert_eq(tg_tape_set_capacity(tape, 0), TG_OK);
    cr_assert_eq(tg_model_backprop(m, tape, &u, 0, NULL, NULL, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_gt(tape->defer.n_groups, 0);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}
