/* test_budget.c — a memory budget from the user's side (tg_train_opts.memory,
 * --memory of grad, train and dump): the trainer's parameters under a budget
 * equal full BPTT's (truncated BPTT, batches, accumulation, validation), a
 * checkpoint keeps the budget and resumes bit for bit, a non-finite number in
 * a recomputed segment is named as without a budget, grad's gradients and
 * dump's gradient norms equal the whole tape's, and bad sizes are refused
 * with their messages. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tapegrad.h"
#include "models_testutil.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tg-budget-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(budget, .init = setup, .fini = teardown, .timeout = 120);

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Budgets that cut the tests' sequences into several segments (a step of
 * ELMAN at these sizes takes a few hundred bytes of tape). */
#define BUDGET ((size_t)8 << 10)
#define TOOL_BUDGET "12K"

#ifdef TG_REAL_DOUBLE
#define TOL 1e-12
#else
#define TOL 2e-5
#endif

static const char *ELMAN =
    "name: elman\n"
    "dims: {input: 2, hidden: 3, output: 1}\n"
    "params:\n"
    "  U: {shape: [hidden, input], init: uniform(-0.5, 0.5)}\n"
    "  W: {shape: [hidden, hidden], init: normal(0, 0.5)}\n"
    "  b: {shape: [hidden], init: zeros}\n"
    "  V: {shape: [output, hidden], init: xavier}\n"
    "  c: {shape: [output], init: zeros}\n"
    "inputs:  {x: [input]}\n"
    "targets: {y: [output]}\n"
    "state:   {h: {shape: [hidden], init: zeros}}\n"
    "step:\n"
    "  - h = tanh(U @ x + W @ h + b)\n"
    "  - o = tanh(V @ h + c)\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

/* Writes a YAML data file of n sequences of T steps for models/elman.yaml
 * (x: [2], y: [1]); returns its path. */
static const char *elman_data(const char *name, int n, int T)
{
    const char *p = path(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    unsigned r = 777;
    for (int q = 0; q < n; q++) {
        fprintf(f, "%sx: [", n > 1 ? "- " : "");
        for (int t = 0; t < T; t++) {
            r = r * 1103515245u + 12345u;
            double a = ((r >> 8) % 2000) / 1000.0 - 1;
            r = r * 1103515245u + 12345u;
            fprintf(f, "%s[%.3f, %.3f]", t ? ", " : "", a, ((r >> 8) % 2000) / 1000.0 - 1);
        }
        fprintf(f, "]\n%sy: [", n > 1 ? "  " : "");
        for (int t = 0; t < T; t++) {
            r = r * 1103515245u + 12345u;
            fprintf(f, "%s%.3f", t ? ", " : "", ((r >> 8) % 2000) / 1000.0 - 1);
        }
        fprintf(f, "]\n");
    }
    cr_assert_eq(fclose(f), 0);
    return p;
}

/* The numbers of a tool's output in order (all of them: a JSON document or a table). */
static int numbers(const char *s, double *out, int max)
{
    int n = 0;
    while (*s) {
        if ((*s == '-' || (*s >= '0' && *s <= '9')) && (s[-1] == ' ' || s[-1] == '[' || s[-1] == ',' || s[-1] == '\n')) {
            char *end;
            double v = strtod(s, &end);
            if (end > s) {
                if (n < max) out[n] = v;
                n++;
                s = end;
                continue;
            }
        }
        s++;
    }
    return n;
}

static void expect_same_numbers(const char *a, const char *b, double tol, const char *what)
{
    static double x[20000], y[20000];
    int n = numbers(a, x, 20000), m = numbers(b, y, 20000);
    cr_assert_eq(n, m, "%s: %d numbers against %d\n%s\n---\n%s", what, n, m, a, b);
    cr_assert(n > 0 && n <= 20000);
    for (int i = 0; i < n; i++)
        cr_expect(mt_close(x[i], y[i], tol), "%s: number %d is %.17g under the budget, %.17g without", what, i, y[i],
                  x[i]);
}

/* ---- sizes ------------------------------------------------------------------------ */

MT_TEST(budget, hostile_sizes_are_usage_errors_with_their_reason)
{
    static const struct { const char *size, *why; } cases[] = {
        {"-1", "size '-1': a size cannot be negative"},
        {"1e999", "size '1e999': unexpected characters after the number"},
        {"12Q", "size '12Q': unexpected characters after the number"},
        {"", NULL}, /* the option parser's own refusal */
        {"18446744073709551616", "size '18446744073709551616': it is too large"},
        {"0.5", "size '0.5': a number of bytes must be whole"},
    };
    const char *tail = "; a size is a number of bytes with an optional K, M, G or T (powers of 1024) and an "
                       "optional B, such as 4096, 64K, 256M or 1.5G\n";
    const char *cmds[] = {"grad", "train", "dump"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int c = 0; c < 3; c++) {
            const char *args[10];
            int k = 0;
            args[k++] = cmds[c], args[k++] = "models/elman.yaml", args[k++] = "--data";
            args[k++] = "examples/data/seed.yaml";
            if (c == 1) args[k++] = "--epochs", args[k++] = "1";
            args[k++] = "--memory", args[k++] = cases[i].size, args[k] = NULL;
            mt_result r = mt_tool(args);
            char want[512];
            if (cases[i].why)
                snprintf(want, sizeof want, "tapegrad %s: --memory: %s%sTry 'tapegrad %s --help'.\n", cmds[c],
                         cases[i].why, tail, cmds[c]);
            else
                snprintf(want, sizeof want, "tapegrad %s: --memory needs a non-empty SIZE\nTry 'tapegrad %s --help'.\n",
                         cmds[c], cmds[c]);
            cr_expect_eq(r.code, 2, "%s --memory '%s': %d %s", cmds[c], cases[i].size, r.code, r.err);
            cr_expect_str_eq(r.err, want);
            cr_expect_str_empty(r.out);
            mt_result_free(&r);
        }
    const char *zero[] = {"grad", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--memory", "0", NULL};
    mt_result r = mt_tool(zero);
    cr_expect_eq(r.code, 2);
    cr_expect_str_eq(r.err, "tapegrad grad: --memory '0': a budget must be at least 1 byte (leave --memory out for "
                            "no budget)\nTry 'tapegrad grad --help'.\n");
    mt_result_free(&r);
}

/* A budget below one step's needs: the library's message, exit 2. */
MT_TEST(budget, too_small_a_budget_names_the_least_that_would_do)
{
    const char *args[] = {"grad", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--memory", "16", NULL};
    mt_result r = mt_tool(args);
    cr_expect_eq(r.code, 2, "%d %s", r.code, r.err);
    cr_expect(strstr(r.err, "tapegrad grad: ") == r.err && strstr(r.err, "16"), "%s", r.err);
    mt_result_free(&r);
}

/* ---- the trainer ------------------------------------------------------------------- */

/* A CSV of n sequences of T steps for ELMAN. */
static char *series(int n, int T)
{
    size_t cap = 64 + (size_t)n * (size_t)(T + 1) * 40;
    char *s = malloc(cap), *w = s;
    w += sprintf(w, "x[0],x[1],y\n");
    unsigned r = 4242;
    for (int q = 0; q < n; q++) {
        double prev = 0;
        for (int t = 0; t < T; t++) {
            r = r * 1103515245u + 12345u;
            double a = ((r >> 8) % 2000) / 1000.0 - 1;
            r = r * 1103515245u + 12345u;
            double b = ((r >> 8) % 2000) / 1000.0 - 1;
            w += sprintf(w, "%.3f,%.3f,%.6f\n", a, b, tanh(a - prev) * 0.8);
            prev = b;
        }
        w += sprintf(w, "\n");
    }
    return s;
}

typedef struct run_out {
    tg_real *params;
    size_t n;
    double valid_loss;
    tg_bptt_plan plan;
} run_out;

/* Trains ELMAN on `data` with o; with stop_at, stops there, saves, and goes
 * on from the checkpoint in a fresh trainer (whose options come from the
 * file).  Returns the parameters, the last validation loss and the last plan. */
static run_out train(const char *data, tg_train_opts o, int stop_at)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_model *m = tg_model_parse(ctx, "elman.yaml", ELMAN, strlen(ELMAN), NULL, 0);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 5), TG_OK);
    tg_trainset *set = tg_trainset_csv_parse(ctx, m, "s.csv", data, strlen(data));
    cr_assert_not_null(set, "%s", tg_errmsg(ctx));
    tg_trainset *va = tg_trainset_split(set, 0.25);
    cr_assert_not_null(va, "%s", tg_errmsg(ctx));
    tg_train_opts o1 = o;
    if (stop_at) o1.max_steps = (uint64_t)stop_at;
    tg_trainer *tr = tg_trainer_new(m, ps, &o1);
    cr_assert_not_null(tr, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_set_data(tr, set, va), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    if (stop_at) {
        cr_assert_eq(tg_trainer_save(tr, path("ck")), TG_OK, "%s", tg_errmsg(ctx));
        tg_trainer_free(tr);
        tg_checkpoint *ck = tg_checkpoint_open(ctx, path("ck"));
        cr_assert_not_null(ck, "%s", tg_errmsg(ctx));
        tg_train_opts so;
        cr_assert_eq(tg_checkpoint_opts(ck, &so), TG_OK, "%s", tg_errmsg(ctx));
        cr_expect_eq(so.memory, o.memory, "the checkpoint keeps the budget: %zu, not %zu", so.memory, o.memory);
        so.max_steps = o.max_steps;
        cr_assert_not_null(tr = tg_trainer_new(m, ps, &so), "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_set_data(tr, set, va), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_resume(tr, ck), TG_OK, "%s", tg_errmsg(ctx));
        tg_checkpoint_close(ck);
        cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    }
    run_out r;
    r.n = tg_params_total(ps);
    r.params = malloc(r.n * sizeof *r.params);
    memcpy(r.params, tg_params_values(ps), r.n * sizeof *r.params);
    const tg_train_progress *p = tg_trainer_progress(tr);
    r.valid_loss = p->valid_loss;
    r.plan = p->plan;
    tg_trainer_free(tr);
    tg_trainset_free(va);
    tg_trainset_free(set);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    return r;
}

static void expect_same_params(const run_out *a, const run_out *b, double tol, const char *what)
{
    cr_assert_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        cr_expect(mt_close((double)b->params[i], (double)a->params[i], tol), "%s: parameter %zu is %.9g, not %.9g",
                  what, i, (double)b->params[i], (double)a->params[i]);
    cr_expect(mt_close(b->valid_loss, a->valid_loss, tol), "%s: validation loss %.9g, not %.9g", what, b->valid_loss,
              a->valid_loss);
}

/* Full BPTT and truncated BPTT (the state carried from tg_model_backprop's
 * state_out), batches and accumulation: a budget that cuts every chunk into
 * several segments trains the parameters full BPTT trains, to rounding. */
MT_TEST(budget, training_under_a_budget_equals_full_bptt)
{
    char *data = series(8, 48);
    static const struct { int bptt, batch, accumulate; } cases[] = {{0, 2, 1}, {16, 3, 2}, {20, 1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_train_opts o = tg_train_defaults();
        o.optim = tg_optim_defaults(TG_OPTIM_SGD);
        o.optim.lr = 0.05;
        o.epochs = 2;
        o.bptt = cases[k].bptt;
        o.batch = cases[k].batch;
        o.accumulate = cases[k].accumulate;
        run_out full = train(data, o, 0);
        o.memory = BUDGET;
        run_out cut = train(data, o, 0);
        char what[64];
        snprintf(what, sizeof what, "bptt %d, batch %d, accumulate %d", cases[k].bptt, cases[k].batch,
                 cases[k].accumulate);
        cr_expect_gt(cut.plan.segments, 1, "%s: the budget does not cut the chunks (%d segment)", what,
                     cut.plan.segments);
        cr_expect_eq(full.plan.segments, 1, "%s", what);
        expect_same_params(&full, &cut, TOL, what);
        free(full.params), free(cut.params);
    }
    free(data);
}

/* A run saved under a budget keeps it, and resumes bit for bit. */
MT_TEST(budget, a_checkpoint_keeps_the_budget_and_resumes_bit_for_bit)
{
    char *data = series(8, 48);
    tg_train_opts o = tg_train_defaults();
    o.epochs = 3;
    o.batch = 2;
    o.bptt = 16;
    o.memory = BUDGET;
    run_out whole = train(data, o, 0), parts = train(data, o, 5);
    expect_same_params(&whole, &parts, 0, "resumed");
    free(whole.params), free(parts.params);
    free(data);
}

/* ---- a non-finite number in a recomputed segment ----------------------------------- */

/* s(t) = exp(w s(t-1) + x(t)): with x = -10 s stays near 0; from step 41 on
 * x = 0 and s climbs 1, e, 15.2, 3.8e6 to Inf at step 45, far past the first
 * segment (the one the tape still holds after the sweep). */
static const char *OVERFLOW =
    "name: overflow\n"
    "dims: {n: 1}\n"
    "params:\n"
    "  w: {shape: [n, n], init: [[1]]}\n"
    "inputs:  {x: [n]}\n"
    "targets: {y: [n]}\n"
    "state:   {s: {shape: [n], init: ones}}\n"
    "step:\n"
    "  - a = w @ s + x\n"
    "  - s = exp(a)\n"
    "outputs: [s]\n"
    "loss: squared_error(s, y)\n";

static const char *overflow_files(void)
{
    FILE *f = fopen(path("overflow.yaml"), "w");
    cr_assert_not_null(f);
    fputs(OVERFLOW, f);
    fclose(f);
    f = fopen(path("overflow-data.yaml"), "w");
    cr_assert_not_null(f);
    fputs("x: [", f);
    for (int t = 0; t < 48; t++) fprintf(f, "%s%d", t ? ", " : "", t < 40 ? -10 : 0);
    fputs("]\ny: [", f);
    for (int t = 0; t < 48; t++) fprintf(f, "%s0", t ? ", " : "");
    fputs("]\n", f);
    fclose(f);
    return path("overflow.yaml");
}

/* The message with every "entry N" number replaced by "entry #": entries
 * are numbered from the start of the tape, which under a budget holds one
 * segment. */
static char *mask_entries(const char *msg)
{
    char *out = malloc(strlen(msg) + 1), *w = out;
    for (const char *p = msg; *p;) {
        if (!strncmp(p, "entry ", 6) && p[6] >= '0' && p[6] <= '9') {
            memcpy(w, "entry #", 7), w += 7, p += 6;
            while (*p >= '0' && *p <= '9') p++;
        } else {
            *w++ = *p++;
        }
    }
    *w = 0;
    return out;
}

MT_TEST(budget, grad_names_the_first_nonfinite_number_as_without_a_budget)
{
    char model[256], data[256];
    snprintf(model, sizeof model, "%s", overflow_files());
    snprintf(data, sizeof data, "%s", path("overflow-data.yaml"));
    const char *full[] = {"grad", model, "--data", data, NULL};
    const char *cut[] = {"grad", model, "--data", data, "--memory", TOOL_BUDGET, NULL};
    mt_result a = mt_tool(full), b = mt_tool(cut);
    cr_expect_eq(a.code, 4, "%s", a.err);
    cr_expect_eq(b.code, 4, "%s", b.err);
    /* the schedule comes first under a budget, then the same message */
    const char *msg = strstr(b.err, "tapegrad grad: ");
    cr_assert_not_null(msg, "%s", b.err);
    char *ma = mask_entries(a.err), *mb = mask_entries(msg);
    cr_expect_str_eq(mb, ma);
    cr_expect(strstr(a.err, "'s[t=45]' at ") && strstr(a.err, "overflow.yaml:10:9"), "%s", a.err);
    free(ma), free(mb);
    mt_result_free(&a), mt_result_free(&b);
}

MT_TEST(budget, training_names_the_first_nonfinite_number_as_without_a_budget)
{
    char msg[2][2048];
    for (int k = 0; k < 2; k++) {
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = tg_model_parse(ctx, "overflow.yaml", OVERFLOW, strlen(OVERFLOW), NULL, 0);
        cr_assert_not_null(m, "%s", tg_errmsg(ctx));
        tg_params *ps = tg_params_new(ctx);
        cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK);
        char csv[2048], *w = csv;
        w += sprintf(w, "x,y\n");
        for (int t = 0; t < 48; t++) w += sprintf(w, "%d,0\n", t < 40 ? -10 : 0);
        tg_trainset *set = tg_trainset_csv_parse(ctx, m, "o.csv", csv, strlen(csv));
        cr_assert_not_null(set, "%s", tg_errmsg(ctx));
        tg_train_opts o = tg_train_defaults();
        o.memory = k ? BUDGET : 0;
        tg_trainer *tr = tg_trainer_new(m, ps, &o);
        cr_assert_eq(tg_trainer_set_data(tr, set, NULL), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_step(tr), TG_ERR_NONFINITE);
        char *masked = mask_entries(tg_errmsg(ctx));
        snprintf(msg[k], sizeof msg[k], "%s", masked);
        free(masked);
        tg_trainer_free(tr);
        tg_trainset_free(set);
        tg_params_free(ps);
        tg_model_free(m);
        tg_ctx_free(ctx);
    }
    cr_expect_str_eq(msg[1], msg[0]);
    cr_expect(strstr(msg[0], "step 1: the loss is inf; the first non-finite value: entry # (exp [1, 1] 's[t=45]' at "
                             "overflow.yaml:10:9)"), "%s", msg[0]);
}

/* ---- grad and dump under a budget ------------------------------------------------------- */

MT_TEST(budget, grad_under_a_budget_equals_the_whole_tape)
{
    const char *data = elman_data("long.yaml", 3, 40);
    const char *full[] = {"grad", "models/elman.yaml", "--data", data, "--format", "json", NULL};
    const char *cut[] = {"grad", "models/elman.yaml", "--data", data, "--format", "json", "--memory", TOOL_BUDGET, NULL};
    mt_result a = mt_tool(full), b = mt_tool(cut);
    cr_assert_eq(a.code, 0, "%s", a.err);
    cr_assert_eq(b.code, 0, "%s", b.err);
    /* the schedule of each sequence on stderr, and in the JSON */
    for (int q = 1; q <= 3; q++) {
        char want[128];
        snprintf(want, sizeof want, "sequence %d: memory budget 12.0 KiB: 40 steps in ", q);
        cr_expect(strstr(b.err, want), "no '%s' in %s", want, b.err);
    }
    cr_expect(strstr(b.err, "binomial schedule"), "%s", b.err);
    const char *sched = strstr(b.out, ", \"memory\": 12288, \"schedule\": {\"steps\": 40, \"segment\": ");
    cr_assert_not_null(sched, "%s", b.out);
    /* the same numbers once the budget's fields are taken out */
    char *plain = strdup(b.out), *s0 = strstr(plain, ", \"memory\""), *s1 = strstr(s0, "}");
    memmove(s0, s1 + 1, strlen(s1 + 1) + 1);
    expect_same_numbers(a.out, plain, TOL, "grad --memory");
    free(plain);
    mt_result_free(&a), mt_result_free(&b);
}

/* The gradient norms per step come out the same with and without a budget. */
MT_TEST(budget, dump_norms_csv_is_the_same_table_under_a_budget)
{
    char data[256];
    snprintf(data, sizeof data, "%s", elman_data("norms.yaml", 1, 40));
    for (int fused = 0; fused < 2; fused++) {
        const char *full[] = {"dump", "models/elman.yaml", "--data", data, "--norms-csv", path("a.csv"), "--output",
                              path("a.txt"), fused ? "--fused" : NULL, NULL};
        const char *cut[] = {"dump", "models/elman.yaml", "--data", data, "--norms-csv", path("b.csv"), "--output",
                             path("b.txt"), "--memory", TOOL_BUDGET, fused ? "--fused" : NULL, NULL};
        mt_result a = mt_tool(full), b = mt_tool(cut);
        cr_assert_eq(a.code, 0, "%s", a.err);
        cr_assert_eq(b.code, 0, "%s", b.err);
        char *ca = mt_read(path("a.csv"), NULL), *cb = mt_read(path("b.csv"), NULL);
        cr_assert(ca && cb);
        /* the same header, the same steps, the same numbers */
        cr_expect(!strncmp(ca, cb, (size_t)(strchr(ca, '\n') - ca + 1)), "%s\n---\n%s", ca, cb);
        expect_same_numbers(ca, cb, TOL, "--norms-csv");
        free(ca), free(cb);
        mt_result_free(&a), mt_result_free(&b);
    }
}

/* dump --memory: one dump per segment, in time order: every step's entries
 * appear once, in increasing order of steps. */
MT_TEST(budget, dump_under_a_budget_lists_the_segments_in_time_order)
{
    const char *data = elman_data("dump.yaml", 1, 40);
    const char *cut[] = {"dump", "models/elman.yaml", "--data", data, "--grads", "--memory", TOOL_BUDGET, NULL};
    mt_result r = mt_tool(cut);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "memory budget 12.0 KiB: 40 steps in "), "%s", r.err);
    int last = 0, parts = 0;
    for (const char *p = r.out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        char op[32], name[64];
        int step;
        if (sscanf(p, "%*d %31s %63s", op, name) == 2 && !strcmp(op, "tanh") && sscanf(name, "h[t=%d]", &step) == 1) {
            cr_expect_eq(step, last + 1, "h[t=%d] after h[t=%d]", step, last);
            last = step;
        }
    }
    cr_expect_eq(last, 40);
    for (const char *p = r.out; (p = strstr(p, "(one segment of a sweep under --memory)")); p++) parts++;
    cr_expect_gt(parts, 1, "%s", r.out);
    mt_result_free(&r);
}

/* --detect-anomaly under a budget stops where it stops without one. */
MT_TEST(budget, dump_detect_anomaly_names_the_same_entry_under_a_budget)
{
    char model[256], data[256];
    snprintf(model, sizeof model, "%s", overflow_files());
    snprintf(data, sizeof data, "%s", path("overflow-data.yaml"));
    const char *full[] = {"dump", model, "--data", data, "--detect-anomaly", "--fused", "--output", path("a.txt"), NULL};
    const char *cut[] = {"dump", model, "--data", data, "--detect-anomaly", "--fused", "--output", path("b.txt"),
                         "--memory", TOOL_BUDGET, NULL};
    mt_result a = mt_tool(full), b = mt_tool(cut);
    cr_expect_eq(a.code, 4, "%s", a.err);
    cr_expect_eq(b.code, 4, "%s", b.err);
    char *ma = mask_entries(a.err), *mb = mask_entries(b.err);
    cr_expect_str_eq(mb, ma);
    cr_expect(strstr(a.err, "overflow.yaml:10:9: in 's' at step 45: non-finite value computed by entry "), "%s", a.err);
    free(ma), free(mb);
    mt_result_free(&a), mt_result_free(&b);
}

/* The tool: a run saved under --memory resumes with its budget (and says so);
 * a checkpoint from before budgets existed reads as no budget. */
MT_TEST(budget, train_resumes_with_the_budget_it_was_saved_with)
{
    char data[256], ck[256];
    snprintf(data, sizeof data, "%s", elman_data("train.yaml", 4, 40));
    snprintf(ck, sizeof ck, "%s", path("run.tgckpt"));
    const char *first[] = {"train", "models/elman.yaml", "--data", data, "--epochs", "2", "--steps", "3", "--memory",
                           TOOL_BUDGET, "--save", ck, NULL};
    mt_result r = mt_tool(first);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "adam lr 0.001, 13 parameters, 2 epochs, memory budget 12.0 KiB\n"), "%s", r.err);
    cr_expect(strstr(r.err, "\nmemory budget 12.0 KiB: 40 steps in "), "%s", r.err);
    cr_expect(strstr(r.out, "  schedule of the last step: memory budget 12.0 KiB: 40 steps in "), "%s", r.out);
    mt_result_free(&r);
    const char *again[] = {"train", "models/elman.yaml", "--data", data, "--resume", ck, "--format", "json", NULL};
    r = mt_tool(again);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\"steps\": 5, \"total_steps\": 8, ") && strstr(r.out, "\"memory\": 12288, \"schedule\": {"),
              "%s", r.out);
    mt_result_free(&r);
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_checkpoint *c = tg_checkpoint_open(ctx, "tests/data/ckpt-v1.tgckpt");
    cr_assert_not_null(c, "%s", tg_errmsg(ctx));
    tg_train_opts o;
    memset(&o, 0xff, sizeof o);
    cr_assert_eq(tg_checkpoint_opts(c, &o), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(o.memory, 0);
    tg_checkpoint_close(c);
    tg_ctx_free(ctx);
}

/* Without --detect-anomaly, a dump under a budget (which sweeps, as with
 * --grads) stops at a non-finite loss and names the first non-finite number
 * as the whole tape's dump with --grads does. */
MT_TEST(budget, dump_names_the_first_nonfinite_number_under_a_budget)
{
    char model[256], data[256];
    snprintf(model, sizeof model, "%s", overflow_files());
    snprintf(data, sizeof data, "%s", path("overflow-data.yaml"));
    const char *full[] = {"dump", model, "--data", data, "--fused", "--grads", "--output", path("a.txt"), NULL};
    const char *cut[] = {"dump", model, "--data", data, "--fused", "--grads", "--output", path("b.txt"), "--memory",
                         TOOL_BUDGET, NULL};
    mt_result a = mt_tool(full), b = mt_tool(cut);
    cr_expect_eq(a.code, 4, "%s", a.err);
    cr_expect_eq(b.code, 4, "%s", b.err);
    char *ma = mask_entries(a.err), *mb = mask_entries(b.err);
    cr_expect_str_eq(mb, ma);
    cr_expect(strstr(a.err, "first non-finite value: entry "), "%s", a.err);
    free(ma), free(mb);
    mt_result_free(&a), mt_result_free(&b);
}
