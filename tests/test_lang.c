/* test_lang.c — the cell language's forms (models/README.md): division and
 * numbers where tensors go, sums along an axis, the step index t,
 * `constants:`, index inputs and targets, reverse states and the order of a
 * bidirectional step, `final:` and targets given once per sequence, dropout's
 * training mode.  Values are checked against sums worked out by hand in the
 * test; errors with their exact messages (the malformed corpus holds more). */
#include <stdint.h>
#include <tapegrad.h>
#include "models_testutil.h"

#ifdef TG_REAL_DOUBLE
#define REAL_TOL 1e-12
#else
#define REAL_TOL 2e-6
#endif

typedef struct lang {
    tg_ctx *ctx;
    tg_model *m;
    tg_params *ps;
    tg_dataset *d;
    tg_tape *tape;
    tg_unroll u;
    const tg_real *in[8], *tg[8];
} lang;

static void lang_open(lang *L, const char *model, const char *data)
{
    memset(L, 0, sizeof *L);
    mt_chdir_root();
    L->ctx = tg_ctx_new(NULL);
    cr_assert(L->ctx);
    L->m = tg_model_parse(L->ctx, "lang.yaml", model, strlen(model), NULL, 0);
    cr_assert(L->m, "%s", tg_errmsg(L->ctx));
    L->ps = tg_params_new(L->ctx);
    cr_assert_eq(tg_model_init_params(L->m, L->ps, 3), TG_OK, "%s", tg_errmsg(L->ctx));
    L->tape = tg_tape_new(L->ctx);
    if (data) {
        L->d = tg_dataset_parse(L->ctx, L->m, "data.yaml", data, strlen(data));
        cr_assert(L->d, "%s", tg_errmsg(L->ctx));
    }
}

/* Records sequence 0 of the data; returns the status. */
static tg_status lang_unroll(lang *L, int each_op)
{
    for (int i = 0; i < tg_model_count(L->m, TG_ROLE_INPUT); i++)
        L->in[i] = tg_dataset_values(L->d, 0, TG_ROLE_INPUT, i);
    int have = 1;
    for (int i = 0; i < tg_model_count(L->m, TG_ROLE_TARGET); i++)
        if (!(L->tg[i] = tg_dataset_values(L->d, 0, TG_ROLE_TARGET, i))) have = 0;
    tg_tape_reset(L->tape);
    L->u = (tg_unroll){.params = L->ps, .batch = tg_dataset_batch(L->d, 0), .steps = tg_dataset_steps(L->d, 0),
                       .inputs = L->in, .targets = have ? L->tg : NULL, .each_op = each_op};
    return tg_model_unroll(L->m, L->tape, &L->u);
}

static void lang_close(lang *L)
{
    tg_tape_free(L->tape);
    tg_dataset_free(L->d);
    tg_params_free(L->ps);
    tg_model_free(L->m);
    tg_ctx_free(L->ctx);
}

/* output j at step k, element (r, c) */
static double out_at(const lang *L, int k, int j, int r, int c)
{
    tg_tensor *t = L->u.outputs[k * tg_model_count(L->m, TG_ROLE_OUTPUT) + j];
    return (double)tg_data(t)[r * tg_cols(t) + c];
}

static void expect_parse_error(const char *model, const char *want)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_model *m = tg_model_parse(ctx, "bad.yaml", model, strlen(model), NULL, 0);
    cr_expect_null(m);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- division, numbers as tensors, axis sums -------------------------------------- */
static const char *arith_model =
    "dims: {n: 2}\n"
    "params: {tau: {shape: [n], init: [2, 4]}}\n"
    "inputs: {x: [n]}\n"
    "step:\n"
    "  - a = x / tau\n"                  /* [n, B] / [n]: broadcast like * */
    "  - r = 1 / tau\n"                  /* a number on the left */
    "  - q = x / 4\n"                    /* a number on the right: scale */
    "  - m = max(x, 0)\n"                /* a number for a tensor argument */
    "  - e = eq(x, 0)\n"
    "  - s0 = sum(x, 0)\n"               /* over the rows: [1, B] */
    "  - s1 = mean(x, 1)\n"              /* over the columns: [n, 1] */
    "  - s = sum(x)\n"                   /* everything: [1, 1] */
    "  - md = mod(x, 3)\n"
    "  - w = where(lt(x, 0), 0 - x, x)\n"
    "outputs: [a, r, q, m, e, s0, s1, s, md, w]\n";

MT_TEST(lang, division_numbers_and_axis_sums)
{
    lang L;
    /* one step, batch 2: x = [[-2, 6], [0, 5]] */
    lang_open(&L, arith_model, "x: [[[-2, 6], [0, 5]]]\n");
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    const double x[2][2] = {{-2, 6}, {0, 5}}, tau[2] = {2, 4};
    for (int r = 0; r < 2; r++) {
        cr_expect(mt_close(out_at(&L, 0, 1, r, 0), 1 / tau[r], REAL_TOL));
        for (int c = 0; c < 2; c++) {
            cr_expect(mt_close(out_at(&L, 0, 0, r, c), x[r][c] / tau[r], REAL_TOL));
            cr_expect(mt_close(out_at(&L, 0, 2, r, c), x[r][c] / 4, REAL_TOL));
            cr_expect(mt_close(out_at(&L, 0, 3, r, c), x[r][c] > 0 ? x[r][c] : 0, REAL_TOL));
            cr_expect(mt_close(out_at(&L, 0, 4, r, c), x[r][c] == 0, REAL_TOL));
            cr_expect(mt_close(out_at(&L, 0, 8, r, c), fmod(fmod(x[r][c], 3) + 3, 3), REAL_TOL));
            cr_expect(mt_close(out_at(&L, 0, 9, r, c), fabs(x[r][c]), REAL_TOL));
        }
        cr_expect(mt_close(out_at(&L, 0, 6, r, 0), (x[r][0] + x[r][1]) / 2, REAL_TOL));
    }
    int rows, cols;
    tg_model_var(L.m, TG_ROLE_OUTPUT, 5, &rows, &cols);
    cr_expect(rows == 1 && cols == TG_MODEL_BATCH, "sum(x, 0) is [%d, %d]", rows, cols);
    tg_model_var(L.m, TG_ROLE_OUTPUT, 6, &rows, &cols);
    cr_expect(rows == 2 && cols == 1, "mean(x, 1) is [%d, %d]", rows, cols);
    tg_model_var(L.m, TG_ROLE_OUTPUT, 7, &rows, &cols);
    cr_expect(rows == 1 && cols == 1, "sum(x) is [%d, %d]", rows, cols);
    cr_expect(mt_close(out_at(&L, 0, 5, 0, 0), -2, REAL_TOL));
    cr_expect(mt_close(out_at(&L, 0, 5, 0, 1), 11, REAL_TOL));
    cr_expect(mt_close(out_at(&L, 0, 7, 0, 0), 9, REAL_TOL));
    lang_close(&L);
}

MT_TEST(lang, division_errors)
{
    expect_parse_error("dims: {n: 2}\nparams: {W: [3, 2]}\ninputs: {x: [n]}\nstep:\n  - a = x / W\n",
                       "bad.yaml:5:11: shape mismatch in '/': [2, B] / [3, 2] (rows 2 and 3 differ)");
    expect_parse_error("inputs: {x: [2]}\nstep:\n  - a = x / (1 - 1)\n", "bad.yaml:3:11: division by zero");
    expect_parse_error("inputs: {x: [2]}\nstep:\n  - a = mean(x, -1)\n",
                       "bad.yaml:3:17: the axis of mean(x, axis) is 0 (over the rows of each column, giving "
                       "[1, B]) or 1 (over the columns, giving [n, 1]), got -1");
}

/* ---- the step index t ---------------------------------------------------------------- */
MT_TEST(lang, step_index_counts_from_one)
{
    lang L;
    lang_open(&L,
              "inputs: {x: [1]}\n"
              "step:\n"
              "  - a = t * x + mod(t, 2)\n"
              "  - b = t\n"
              "outputs: [a, b]\n",
              "x: [1, 1, 1, 1]\n");
    for (int each_op = 0; each_op < 2; each_op++) {
        cr_assert_eq(lang_unroll(&L, each_op), TG_OK, "%s", tg_errmsg(L.ctx));
        for (int k = 0; k < 4; k++) {
            cr_expect(mt_close(out_at(&L, k, 0, 0, 0), (k + 1) + (k + 1) % 2, REAL_TOL), "step %d", k + 1);
            cr_expect(mt_close(out_at(&L, k, 1, 0, 0), k + 1, REAL_TOL));
        }
    }
    lang_close(&L);
    /* a declared name hides it */
    lang_open(&L, "dims: {t: 5}\ninputs: {x: [1]}\nstep:\n  - a = t * x\noutputs: [a]\n", "x: [2]\n");
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    cr_expect(mt_close(out_at(&L, 0, 0, 0, 0), 10, REAL_TOL));
    lang_close(&L);
}

/* ---- constants ---------------------------------------------------------------------- */
static const char *const_model =
    "dims: {n: 3}\n"
    "params: {V: {shape: [1, n], init: ones}}\n"
    "constants:\n"
    "  R: {shape: [n, n], init: normal(0, 1)}\n"
    "  k: {shape: [n], init: [1, 2, 3]}\n"
    "  z: {shape: [n], init: 0.5}\n"
    "inputs: {x: [n]}\n"
    "targets: {y: [1]}\n"
    "step:\n"
    "  - o = V @ (R @ x + k * z)\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

MT_TEST(lang, constants_are_not_parameters)
{
    lang L;
    lang_open(&L, const_model, "x: [[1, 0, 0]]\ny: [0]\n");
    /* only V is a parameter: R, k, z have no gradient and no place in ps */
    cr_expect_eq(tg_model_count(L.m, TG_ROLE_PARAM), 1);
    cr_expect_eq(tg_params_count(L.ps), 1);
    cr_expect_null(tg_params_find(L.ps, "R"));
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    double o1 = tg_item(L.u.outputs[0]);
    /* same seed, same draws: a second model agrees; another seed differs */
    tg_params *ps2 = tg_params_new(L.ctx);
    cr_assert_eq(tg_model_init_params(L.m, ps2, 3), TG_OK);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK);
    cr_expect(mt_close(tg_item(L.u.outputs[0]), o1, REAL_TOL));
    cr_assert_eq(tg_model_init_params(L.m, ps2, 4), TG_OK);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK);
    cr_expect(!mt_close(tg_item(L.u.outputs[0]), o1, 1e-3), "seed 4 drew the same reservoir");
    tg_params_free(ps2);
    /* o = sum_i (R[i][0] + k_i z) for x = e1: the literal and number inits hold */
    cr_assert_eq(tg_model_init_params(L.m, L.ps, 3), TG_OK);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK);
    double sum_r = 0;
    for (int i = 0; i < tg_tape_length(L.tape); i++) {
        tg_tensor *t = tg_tape_at(L.tape, i);
        const char *lab = tg_tensor_label(t, NULL);
        if (lab && !strcmp(lab, "R"))
            for (int r = 0; r < 3; r++) sum_r += (double)tg_data(t)[r * 3];
    }
    cr_expect(mt_close(tg_item(L.u.outputs[0]), sum_r + 0.5 * (1 + 2 + 3), REAL_TOL), "o = %g, want %g",
              tg_item(L.u.outputs[0]), sum_r + 3);
    /* a params file never holds a constant, and naming one is an error */
    char dir[] = "/tmp/tglangXXXXXX", path[64];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/p.yaml", dir);
    cr_assert_eq(tg_params_save(L.ps, L.m, path), TG_OK, "%s", tg_errmsg(L.ctx));
    char *text = mt_read(path, NULL);
    cr_assert(text);
    cr_expect(strstr(text, "V:") && !strstr(text, "R:") && !strstr(text, "k:"), "%s", text);
    free(text);
    FILE *f = fopen(path, "w");
    fputs("R: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n", f);
    fclose(f);
    cr_expect_eq(tg_params_load(L.ps, L.m, path), TG_ERR_PARSE);
    char want[160];
    snprintf(want, sizeof want, "%s:1:1: model lang has no parameter 'R'", path);
    cr_expect_str_eq(tg_errmsg(L.ctx), want);
    unlink(path);
    rmdir(dir);
    lang_close(&L);
}

MT_TEST(lang, constants_share_the_limit_on_parameter_scalars)
{
    expect_parse_error("inputs: {x: [1]}\n"
                       "params: {W: [8192, 8192]}\n"
                       "constants:\n"
                       "  a: {shape: [8192, 8192], init: normal(0, 1)}\n"
                       "  b: [8192, 8192]\n"
                       "  c: [8192, 8192]\n"
                       "  d: [2]\n"
                       "step:\n  - o = x\n",
                       "bad.yaml:7:3: the parameters and constants up to 'd' hold more than the limit of "
                       "268435456 scalars");
}

MT_TEST(lang, random_constants_need_init_params)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_model *m = tg_model_parse(ctx, "c.yaml", const_model, strlen(const_model), NULL, 0);
    cr_assert(m);
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *v = tg_params_add(ps, "V", 1, 3);
    cr_assert(v);
    tg_tape *tape = tg_tape_new(ctx);
    tg_real x[3] = {1, 0, 0};
    const tg_real *in[1] = {x};
    tg_unroll u = {.params = ps, .batch = 1, .steps = 1, .inputs = in};
    cr_expect_eq(tg_model_unroll(m, tape, &u), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "unroll: constant 'R' is random: call tg_model_init_params first");
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- reverse states: a forward and a reverse running sum -------------------------------- */
static const char *sums_model =
    "inputs: {x: [1]}\n"
    "targets: {y: [1]}\n"
    "state:\n"
    "  f: [1]\n"
    "  b: {shape: [1], direction: reverse}\n"
    "step:\n"
    "  - both = f + b\n"          /* before both assignments: f(t-1) + b(t+1) */
    "  - f = f + x\n"             /* x(1) + ... + x(t) */
    "  - b = b + x\n"             /* x(t) + ... + x(T) */
    "  - o = f + b\n"             /* the total plus x(t) */
    "final:\n"
    "  - tot = final(f) + final(b)\n"
    "outputs: [o, both]\n"
    "loss: squared_error(o, y)\n";

MT_TEST(lang, reverse_states_sweep_backwards)
{
    lang L;
    lang_open(&L, sums_model, "x: [1, 2, 4, 8]\ny: [0, 0, 0, 0]\n");
    const double x[4] = {1, 2, 4, 8};
    for (int each_op = 0; each_op < 2; each_op++) {
        cr_assert_eq(lang_unroll(&L, each_op), TG_OK, "%s", tg_errmsg(L.ctx));
        double loss = 0;
        for (int k = 0; k < 4; k++) {
            double before = 0, after = 0;
            for (int j = 0; j < k; j++) before += x[j];
            for (int j = k + 1; j < 4; j++) after += x[j];
            cr_expect(mt_close(out_at(&L, k, 0, 0, 0), 15 + x[k], REAL_TOL), "o(%d) = %g", k + 1,
                      out_at(&L, k, 0, 0, 0));
            cr_expect(mt_close(out_at(&L, k, 1, 0, 0), before + after, REAL_TOL), "both(%d)", k + 1);
            loss += (15 + x[k]) * (15 + x[k]);
        }
        cr_expect(mt_close(tg_item(L.u.loss), loss, REAL_TOL));
        /* each state at the end of its sweep: f(T) and b(1) */
        cr_expect(mt_close(tg_item(L.u.state[0]), 15, REAL_TOL));
        cr_expect(mt_close(tg_item(L.u.state[1]), 15, REAL_TOL));
        /* dL/dx(t) through both sweeps: x(t) reaches o(j) for every j, twice for j = t */
        cr_assert_eq(tg_backward(L.tape, L.u.loss), TG_OK);
    }
    int vocab;
    cr_expect_eq(tg_model_var_flags(L.m, TG_ROLE_STATE, 1, &vocab), TG_VAR_REVERSE);
    cr_expect_eq(tg_model_var_flags(L.m, TG_ROLE_STATE, 0, &vocab), 0);
    /* a reverse sweep cannot be cut into chunks */
    tg_unroll part = {.params = L.ps, .batch = 1, .t0 = 0, .steps = 2, .seq_steps = 4, .inputs = L.in};
    cr_expect_eq(tg_model_unroll(L.m, L.tape, &part), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(L.ctx),
                     "lang.yaml: model lang has states that run in reverse, so it records whole sequences (steps "
                     "1..2 of 4 asked; truncated BPTT cannot split it)");
    lang_close(&L);
}

/* Equations that read both directions run after both sweeps: on the tape,
 * every forward entry comes first, then the reverse ones from T down to 1. */
MT_TEST(lang, bidirectional_step_order_on_the_tape)
{
    lang L;
    lang_open(&L, sums_model, "x: [1, 2, 4]\ny: [0, 0, 0]\n");
    cr_assert_eq(lang_unroll(&L, 1), TG_OK, "%s", tg_errmsg(L.ctx));
    char seq[256] = "";
    for (int i = 0; i < tg_tape_length(L.tape); i++) {
        tg_tensor *t = tg_tape_at(L.tape, i);
        int step;
        const char *lab = tg_tensor_label(t, &step);
        if (!lab || strcmp(tg_tensor_op(t), "add")) continue;
        char one[32];
        snprintf(one, sizeof one, "%s%d ", lab, step);
        strcat(seq, one);
    }
    /* the per-step losses add up after each step's both-sweep equations; the
     * final equation `tot` is read by no loss, so it is not recorded */
    cr_expect_str_eq(seq, "f1 f2 f3 b3 b2 b1 both1 o1 both2 o2 loss2 both3 o3 loss3 ");
    lang_close(&L);
}

/* ---- final equations and a target per sequence ----------------------------------------------- */
static const char *classify_model =
    "dims: {c: 2}\n"
    "params: {V: {shape: [c, 1], init: [[1], [-1]]}}\n"
    "inputs: {x: [1]}\n"
    "targets: {y: {shape: [c], per: sequence}}\n"
    "state: {h: [1]}\n"
    "step:\n"
    "  - h = h + x\n"
    "final:\n"
    "  - p = V @ final(h)\n"
    "  - q = p - y\n"
    "loss: sum(q * q)\n";

MT_TEST(lang, final_equations_and_targets_per_sequence)
{
    lang L;
    /* batch 2: sums 3 and -1; targets [1, 0] and [0, 1] */
    lang_open(&L, classify_model, "x: [[1, -1], [2, 0]]\ny: [[1, 0], [0, 1]]\n");
    cr_expect_eq(tg_dataset_steps(L.d, 0), 2);
    cr_expect_eq(tg_model_var_flags(L.m, TG_ROLE_TARGET, 0, NULL), TG_VAR_PER_SEQUENCE);
    const tg_real *y = tg_dataset_values(L.d, 0, TG_ROLE_TARGET, 0);
    cr_expect(y[0] == 1 && y[1] == 0 && y[2] == 0 && y[3] == 1);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    /* p = [3, -3] and [-1, 1]: (3-1)^2 + 9 + 1 + 0 = 14, once, not per step */
    cr_expect(mt_close(tg_item(L.u.loss), 14, REAL_TOL), "loss %g", tg_item(L.u.loss));
    cr_assert_eq(tg_backward(L.tape, L.u.loss), TG_OK);
    /* dL/dV = sum_j 2 (p - y)_j h_j: [2*2*3 + 2*(-1)*(-1), 2*(-3)*3 + 2*0] */
    const tg_real *g = tg_grad(tg_params_find(L.ps, "V"));
    cr_expect(mt_close(g[0], 14, REAL_TOL) && mt_close(g[1], -18, REAL_TOL), "%g %g", g[0], g[1]);
    lang_close(&L);

    /* recorded in chunks, the final equations run with the chunk that ends the sequence */
    lang_open(&L, classify_model, "x: [1, 2, 3]\ny: [1, 0]\n");
    const tg_real *in[1] = {tg_dataset_values(L.d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tg[1] = {tg_dataset_values(L.d, 0, TG_ROLE_TARGET, 0)};
    tg_unroll a = {.params = L.ps, .batch = 1, .t0 = 0, .steps = 2, .seq_steps = 3, .inputs = in, .targets = tg};
    cr_assert_eq(tg_model_unroll(L.m, L.tape, &a), TG_OK, "%s", tg_errmsg(L.ctx));
    cr_expect_null(a.loss);
    tg_real carry = tg_data(a.state[0])[0];
    const tg_real *st0[1] = {&carry};
    tg_unroll b = {.params = L.ps, .batch = 1, .t0 = 2, .steps = 1, .seq_steps = 3, .inputs = in, .targets = tg,
                   .state0 = st0};
    cr_assert_eq(tg_model_unroll(L.m, L.tape, &b), TG_OK, "%s", tg_errmsg(L.ctx));
    cr_assert(b.loss);
    cr_expect(mt_close(tg_item(b.loss), 25 + 36, REAL_TOL), "loss %g", tg_item(b.loss));
    lang_close(&L);
}

MT_TEST(lang, data_per_sequence_and_index_errors)
{
    lang L;
    static const struct { const char *data, *msg; } bad[] = {
        {"x: [1, 2]\ny: [[1, 0], [0, 1]]\n", "data.yaml:2:5: 'y' (one value per sequence) row 1: expected 1 number (the batch), got 2"},
        {"x: [1, 2]\ny: [1]\n", "data.yaml:2:4: 'y' (one value per sequence): expected 2 numbers, got 1"},
        {"x: [1, 2]\ny: [[1, 0], [0, 1], [1, 1]]\n", "data.yaml:2:4: 'y' (one value per sequence): expected 2 rows, got 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = tg_model_parse(ctx, "lang.yaml", classify_model, strlen(classify_model), NULL, 0);
        cr_assert(m);
        tg_dataset *d = tg_dataset_parse(ctx, m, "data.yaml", bad[i].data, strlen(bad[i].data));
        cr_expect_null(d);
        cr_expect_str_eq(tg_errmsg(ctx), bad[i].msg);
        tg_dataset_free(d);
        tg_model_free(m);
        tg_ctx_free(ctx);
    }

    static const char *index_model =
        "dims: {vocab: 4, n: 2}\n"
        "params: {E: [vocab, n], V: [vocab, n]}\n"
        "inputs: {ch: {index: vocab}}\n"
        "targets: {next: {index: vocab}}\n"
        "step:\n"
        "  - z = V @ embed(E, ch)\n"
        "outputs: [z]\n"
        "loss: softmax_cross_entropy(z, next)\n";
    lang_open(&L, index_model, "ch: [3, 0, 1]\nnext: [0, 2, 3]\n");
    cr_expect_eq(tg_dataset_batch(L.d, 0), 1);
    lang_close(&L);
    lang_open(&L, index_model, "ch: [[3, 1], [0, 0]]\nnext: [[0, 1], [2, 3]]\n");
    cr_expect_eq(tg_dataset_batch(L.d, 0), 2);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    int vocab;
    cr_expect_eq(tg_model_var_flags(L.m, TG_ROLE_INPUT, 0, &vocab), TG_VAR_INDEX);
    cr_expect_eq(vocab, 4);
    lang_close(&L);
    static const struct { const char *data, *msg; } errs[] = {
        {"ch: [3, 4]\nnext: [0, 1]\n", "data.yaml:1:9: 'ch' step 2: '4' is not an index from 0 to 3 (vocab 4)"},
        {"ch: [3, 1.5]\nnext: [0, 1]\n", "data.yaml:1:9: 'ch' step 2: '1.5' is not an index from 0 to 3 (vocab 4)"},
        {"ch: [3, 1]\nnext: [0, -1]\n", "data.yaml:2:11: 'next' step 2: '-1' is not an index from 0 to 3 (vocab 4)"},
        {"ch: [3, x]\nnext: [0, 1]\n", "data.yaml:1:9: 'ch' step 2: expected an index, got 'x'"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = tg_model_parse(ctx, "lang.yaml", index_model, strlen(index_model), NULL, 0);
        cr_assert(m);
        tg_dataset *d = tg_dataset_parse(ctx, m, "data.yaml", errs[i].data, strlen(errs[i].data));
        cr_expect_null(d);
        cr_expect_str_eq(tg_errmsg(ctx), errs[i].msg);
        tg_dataset_free(d);
        tg_model_free(m);
        tg_ctx_free(ctx);
    }
}

/* ---- dropout: the identity unless the tape is training ----------------------------------------- */
MT_TEST(lang, dropout_only_while_training)
{
    lang L;
    lang_open(&L,
              "inputs: {x: [50]}\n"
              "step:\n"
              "  - d = dropout(x, 0.5)\n"
              "outputs: [d]\n",
              NULL);
    char data[1024] = "x: [[";
    for (int i = 0; i < 50; i++) strcat(data, i ? ", 1" : "1");
    strcat(data, "]]\n");
    L.d = tg_dataset_parse(L.ctx, L.m, "data.yaml", data, strlen(data));
    cr_assert(L.d, "%s", tg_errmsg(L.ctx));
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    for (int r = 0; r < 50; r++) cr_expect_eq(out_at(&L, 0, 0, r, 0), 1);
    tg_tape_set_training(L.tape, 1);
    tg_seed(L.ctx, 9);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK, "%s", tg_errmsg(L.ctx));
    int zeros = 0, twos = 0;
    double first[50];
    for (int r = 0; r < 50; r++) {
        first[r] = out_at(&L, 0, 0, r, 0);
        zeros += first[r] == 0;
        twos += first[r] == 2;
    }
    cr_expect_eq(zeros + twos, 50);
    cr_expect(zeros > 5 && twos > 5, "%d dropped of 50", zeros);
    /* the same seed, the same mask */
    tg_seed(L.ctx, 9);
    cr_assert_eq(lang_unroll(&L, 0), TG_OK);
    for (int r = 0; r < 50; r++) cr_expect_eq(out_at(&L, 0, 0, r, 0), first[r]);
    lang_close(&L);
}

/* `tapegrad grad --train` turns dropout on; without it the loss is the identity's. */
MT_TEST(lang, grad_train_flag)
{
    char dir[] = "/tmp/tglangXXXXXX", model[64], data[64];
    cr_assert(mkdtemp(dir));
    snprintf(model, sizeof model, "%s/m.yaml", dir);
    snprintf(data, sizeof data, "%s/d.yaml", dir);
    FILE *f = fopen(model, "w");
    fputs("params: {V: {shape: [1, 8], init: ones}}\ninputs: {x: [8]}\ntargets: {y: [1]}\n"
          "step:\n  - o = V @ dropout(x, 0.5)\nloss: squared_error(o, y)\n", f);
    fclose(f);
    f = fopen(data, "w");
    fputs("x: [[1, 1, 1, 1, 1, 1, 1, 1]]\ny: [0]\n", f);
    fclose(f);
    const char *plain[] = {"grad", model, "--data", data, NULL};
    const char *train[] = {"grad", model, "--data", data, "--train", NULL};
    mt_result a = mt_tool(plain), b = mt_tool(train), c = mt_tool(train);
    cr_expect_eq(a.code, 0, "%s", a.err);
    cr_expect_eq(b.code, 0, "%s", b.err);
    /* without dropout o = 8 and every dL/dV_i = 2 o x_i = 16; with it, some
     * inputs are dropped (gradient 0) and the rest scaled by 2 */
    cr_expect(!strncmp(a.out, "loss 64\n", 8), "%s", a.out);
    cr_expect(!strstr(a.out, " 0.00000000"), "%s", a.out);
    cr_expect(strstr(b.out, " 0.00000000"), "--train left dropout off: %s", b.out);
    cr_expect_str_eq(b.out, c.out, "the same seed gave another mask");
    mt_result_free(&a);
    mt_result_free(&b);
    mt_result_free(&c);
    unlink(model);
    unlink(data);
    rmdir(dir);
}

/* ---- the shipped models that use the new forms run through the tool ----------------------------- */
MT_TEST(lang, shipped_models_check, .timeout = 120)
{
    static const char *models[] = {"models/birnn.yaml", "models/ln_lstm.yaml", "models/char_embed.yaml",
                                   "models/phased_lstm.yaml", "models/mgu_classifier.yaml", "models/esn.yaml",
                                   "models/ctrnn.yaml"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        for (int b = 1; b <= 4; b += 3) {
            char batch[4];
            snprintf(batch, sizeof batch, "%d", b);
#ifdef TG_REAL_DOUBLE
            const char *tol = "1e-9", *steps = "50";
#else
            /* float: finite differences of a 50-step loss are noise; short runs */
            const char *tol = "5e-3", *steps = "6";
#endif
            /* the character model checked small: its vocabulary and hidden layer are text-sized */
            int small = strstr(models[i], "char") != NULL;
            const char *args[] = {"check", models[i], "--steps", steps, "--batch", batch, "--tol", tol,
                                  small ? "--dim" : NULL, "vocab=5", "--dim", "hidden=5", NULL};
            mt_result r = mt_tool(args);
            cr_expect_eq(r.code, 0, "%s B=%d: %s%s", models[i], b, r.out, r.err);
            mt_result_free(&r);
        }
}

/* run prints a target given once per sequence beside every step */
MT_TEST(lang, run_prints_a_target_per_sequence)
{
    char dir[] = "/tmp/tglangXXXXXX", model[64], data[64];
    cr_assert(mkdtemp(dir));
    snprintf(model, sizeof model, "%s/m.yaml", dir);
    snprintf(data, sizeof data, "%s/d.yaml", dir);
    FILE *f = fopen(model, "w");
    fputs(classify_model, f);
    fputs("outputs: [h]\n", f);
    fclose(f);
    f = fopen(data, "w");
    fputs("x: [1, 2]\ny: [1, 0]\n", f);
    fclose(f);
    const char *args[] = {"run", model, "--data", data, NULL};
    mt_result r = mt_tool(args);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "step 1  h = 1   (y = [1, 0])\nstep 2  h = 3   (y = [1, 0])\nloss 13\n");
    mt_result_free(&r);
    /* without the target, the final equations (which read it) do not run */
    f = fopen(data, "w");
    fputs("x: [1, 2]\n", f);
    fclose(f);
    r = mt_tool(args);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "step 1  h = 1\nstep 2  h = 3\n");
    mt_result_free(&r);
    unlink(model);
    unlink(data);
    rmdir(dir);
}

/* ---- float against double ----------------------------------------------------------------------- */
/* Every number of a JSON text in order (keys hold no digits here). */
static int json_numbers(const char *s, double *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        if ((*s >= '0' && *s <= '9') || *s == '-') {
            char *end;
            out[n++] = strtod(s, &end);
            s = end;
        } else
            s++;
    }
    return n;
}

static void write_data(FILE *f, const tg_model *m, const tg_dataset *d)
{
    int T = tg_dataset_steps(d, 0), B = tg_dataset_batch(d, 0);
    for (int role = TG_ROLE_INPUT; role <= TG_ROLE_TARGET; role++)
        for (int i = 0; i < tg_model_count(m, role); i++) {
            int rows;
            const char *name = tg_model_var(m, role, i, &rows, NULL);
            const tg_real *v = tg_dataset_values(d, 0, role, i);
            int once = tg_model_var_flags(m, role, i, NULL) & TG_VAR_PER_SEQUENCE;
            fprintf(f, "%s: %s", name, once ? "" : "[");
            for (int t = 0; t < (once ? 1 : T); t++) {
                fputs(t ? ", [" : "[", f);
                for (int r = 0; r < rows; r++) {
                    fputs(r ? ", [" : "[", f);
                    for (int c = 0; c < B; c++)
                        fprintf(f, "%s%.17g", c ? ", " : "", (double)v[((size_t)t * rows + r) * B + c]);
                    fputc(']', f);
                }
                fputc(']', f);
            }
            fputs(once ? "\n" : "]\n", f);
        }
}

/* Every shipped model's loss and gradients in float match the double
 * build's to 2e-4 (scaled as the gradient check scales), same params and
 * data, 20 steps, batch 3.  Needs both builds (make check builds them). */
MT_TEST(lang, float_gradients_match_double, .timeout = 120)
{
    mt_chdir_root();
    const char *root = getenv("TG_ROOT");
    char fl[4096], db[4096];
    snprintf(fl, sizeof fl, "%s/build/float/tapegrad", root ? root : ".");
    snprintf(db, sizeof db, "%s/build/double/tapegrad", root ? root : ".");
    if (access(fl, X_OK) || access(db, X_OK)) cr_skip_test("needs both build/float and build/double");
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    char dir[] = "/tmp/tglangXXXXXX", data[64], params[64];
    cr_assert(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/d.yaml", dir);
    snprintf(params, sizeof params, "%s/p.yaml", dir);
    double *a = malloc(200000 * sizeof *a), *b = malloc(200000 * sizeof *b);
    cr_assert(a && b);
    double worst_all = 0;
    for (int i = 0; i < n; i++) {
        int small = strstr(paths[i], "char") != NULL;
        tg_dim dims[2] = {{"vocab", 5}, {"hidden", 5}};
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = tg_model_load(ctx, paths[i], dims, small ? 2 : 0);
        cr_assert(m, "%s", tg_errmsg(ctx));
        if (!tg_model_has_loss(m)) {
            tg_model_free(m);
            tg_ctx_free(ctx);
            continue;
        }
        tg_params *ps = tg_params_new(ctx);
        cr_assert_eq(tg_model_init_params(m, ps, 21), TG_OK);
        cr_assert_eq(tg_params_save(ps, m, params), TG_OK, "%s", tg_errmsg(ctx));
        tg_dataset *d = tg_dataset_random(ctx, m, 20, 3, 22);
        cr_assert(d);
        FILE *f = fopen(data, "w");
        cr_assert(f);
        write_data(f, m, d);
        fclose(f);
        const char *args[] = {"grad", paths[i], "--data", data, "--params", params, "--seed", "21", "--format",
                              "json", small ? "--dim" : NULL, "vocab=5", "--dim", "hidden=5", NULL};
        setenv("TG_TOOL", fl, 1);
        mt_result rf = mt_tool(args);
        setenv("TG_TOOL", db, 1);
        mt_result rd = mt_tool(args);
        cr_expect_eq(rf.code, 0, "%s: %s", paths[i], rf.err);
        cr_expect_eq(rd.code, 0, "%s: %s", paths[i], rd.err);
        int na = json_numbers(rf.out ? rf.out : "", a, 200000), nb = json_numbers(rd.out ? rd.out : "", b, 200000);
        cr_expect(na == nb && na > 1, "%s: %d and %d numbers", paths[i], na, nb);
        double worst = 0;
        for (int k = 0; k < na && k < nb; k++) {
            double e = fabs(a[k] - b[k]) / fmax(1, fmax(fabs(a[k]), fabs(b[k])));
            if (e > worst) worst = e;
        }
        cr_expect_leq(worst, 2e-4, "%s: float and double differ by %.3e (scaled)", paths[i], worst);
        if (worst > worst_all) worst_all = worst;
        mt_result_free(&rf);
        mt_result_free(&rd);
        tg_dataset_free(d);
        tg_params_free(ps);
        tg_model_free(m);
        tg_ctx_free(ctx);
    }
    cr_log_info("float against double: worst scaled difference %.3e over %d models", worst_all, n);
    free(a);
    free(b);
    unlink(data);
    unlink(params);
    rmdir(dir);
    mt_free_list(paths, n);
}

/* ---- training with the new forms ------------------------------------------------------------------ */
static double csv_loss(const char *path, int last)
{
    char *text = mt_read(path, NULL);
    cr_assert(text, "no log %s", path);
    char *line = strchr(text, '\n'), *pick = NULL;
    while (line && line[1]) {
        pick = line + 1;
        if (!last) break;
        line = strchr(line + 1, '\n');
    }
    cr_assert(pick);
    double step, epoch, loss = NAN;
    cr_assert_eq(sscanf(pick, "%lf,%lf,%lf", &step, &epoch, &loss), 3, "%s", pick);
    free(text);
    return loss;
}

MT_TEST(lang, train_index_text_per_sequence_targets_and_no_bptt_for_reverse_states, .timeout = 120)
{
    char dir[] = "/tmp/tglangXXXXXX", text[64], seqs[64], log[64], save[64], bi[64];
    cr_assert(mkdtemp(dir));
    snprintf(text, sizeof text, "%s/t.txt", dir);
    snprintf(seqs, sizeof seqs, "%s/s.yaml", dir);
    snprintf(log, sizeof log, "%s/log.csv", dir);
    snprintf(save, sizeof save, "%s/p.ckpt", dir);
    snprintf(bi, sizeof bi, "%s/b.yaml", dir);
    /* a text with a pattern to learn: index inputs and targets, no one-hot */
    FILE *f = fopen(text, "w");
    for (int i = 0; i < 300; i++) fputs("abcab ", f);
    fclose(f);
    const char *tr[] = {"train", "models/char_embed.yaml", "--data", text, "--epochs", "4", "--batch", "4",
                        "--dim", "hidden=16", "--dim", "embed=4", "--lr", "0.01", "--quiet", "--log", log,
                        "--save", save, NULL};
    mt_result r = mt_tool(tr);
    cr_expect_eq(r.code, 0, "%s", r.err);
    mt_result_free(&r);
    double first = csv_loss(log, 0), last = csv_loss(log, 1);
    cr_expect_lt(last, 0.5 * first, "char_embed: loss %g -> %g", first, last);
    const char *sa[] = {"sample", save, "--length", "12", "--temperature", "0", "--prime", "a", NULL};
    r = mt_tool(sa);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(r.out && strstr(r.out, "abcab"), "sampled %s", r.out);
    mt_result_free(&r);

    /* a class given once per sequence */
    f = fopen(seqs, "w");
    for (int q = 0; q < 6; q++) {
        fputs("- x: [", f);
        for (int t = 0; t < 4; t++) fprintf(f, "%s[%d, %d, 0]", t ? ", " : "", q % 3 == 0, q % 3 == 1);
        fprintf(f, "]\n  y: [%d, %d, %d]\n", q % 3 == 0, q % 3 == 1, q % 3 == 2);
    }
    fclose(f);
    const char *tc[] = {"train", "models/mgu_classifier.yaml", "--data", seqs, "--epochs", "40", "--lr", "0.02",
                        "--quiet", "--log", log, NULL};
    r = mt_tool(tc);
    cr_expect_eq(r.code, 0, "%s", r.err);
    mt_result_free(&r);
    first = csv_loss(log, 0), last = csv_loss(log, 1);
    cr_expect_lt(last, 0.3 * first, "mgu_classifier: loss %g -> %g", first, last);

    /* a reverse state trains on whole sequences */
    f = fopen(bi, "w");
    fputs("x: [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]\ny: [[0, 1], [1, 0], [0, 1], [1, 0]]\n", f);
    fclose(f);
    const char *tb[] = {"train", "models/birnn.yaml", "--data", bi, "--epochs", "1", "--bptt", "2", "--quiet", NULL};
    r = mt_tool(tb);
    cr_expect_eq(r.code, 2);
    cr_expect_str_eq(r.err, "tapegrad train: --bptt 2: state 'hb' of birnn runs in reverse, so the model trains on "
                            "whole sequences (no truncated BPTT)\n");
    mt_result_free(&r);
    const char *tw[] = {"train", "models/birnn.yaml", "--data", bi, "--epochs", "1", "--quiet", NULL};
    r = mt_tool(tw);
    cr_expect_eq(r.code, 0, "%s", r.err);
    mt_result_free(&r);
    unlink(text);
    unlink(seqs);
    unlink(log);
    unlink(save);
    unlink(bi);
    rmdir(dir);
}
