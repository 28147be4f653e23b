/* test_trainer.c — the trainer through the public API: resume from the
 * one-file checkpoint equal bit for bit to an uninterrupted run (every
 * optimizer and schedule, batches, truncated BPTT, accumulation,
 * validation); the schedules' learning rates against hand-computed values;
 * mean and sum reductions; accumulation; the reduction hook; patience;
 * text as UTF-8 characters; the CSV reader's refusals; range checks of every
 * number a checkpoint holds. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tapegrad.h"
#include "ckpt_file.h"

static tg_ctx *ctx;
static char dir[64];

static void setup(void)
{
    ctx = tg_ctx_new(NULL);
    cr_assert_not_null(ctx);
    snprintf(dir, sizeof dir, "/tmp/tg-trainer-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    tg_ctx_free(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(trainer, .init = setup, .fini = teardown, .timeout = 120);

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *ELMAN =
    "name: elman\n"
    "dims: {input: 2, hidden: 3, output: 1}\n"
    "params:\n"
    "  U: {shape: [hidden, input], init: uniform(-0.5, 0.5)}\n"
    "  W: {shape: [hidden, hidden], init: normal(0, 0.3)}\n"
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

static const char *CHARS =
    "name: chars\n"
    "dims: {vocab: 4, hidden: 8}\n"
    "params:\n"
    "  U: {shape: [hidden, vocab], init: normal(0, 0.3)}\n"
    "  W: {shape: [hidden, hidden], init: normal(0, 0.3)}\n"
    "  b: [hidden]\n"
    "  V: {shape: [vocab, hidden], init: normal(0, 0.3)}\n"
    "  c: [vocab]\n"
    "inputs:  {x: [vocab]}\n"
    "targets: {y: [vocab]}\n"
    "state:   {h: [hidden]}\n"
    "step:\n"
    "  - h = tanh(U @ x + W @ h + b)\n"
    "  - z = V @ h + c\n"
    "outputs: [z]\n"
    "loss: softmax_cross_entropy(z, y)\n";

static tg_model *model(const char *text, const tg_dim *dims, int n)
{
    tg_model *m = tg_model_parse(ctx, "test.yaml", text, strlen(text), dims, n);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    return m;
}

/* A CSV of n sequences of lengths T, T-1, ... (two lengths: batches differ). */
static char *series(int n, int T)
{
    size_t cap = 64 + (size_t)n * (size_t)T * 40;
    char *s = malloc(cap), *w = s;
    w += sprintf(w, "x[0],x[1],y\n");
    unsigned r = 12345;
    for (int q = 0; q < n; q++) {
        double prev = 0;
        for (int t = 0; t < T - q % 2; t++) {
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

static tg_trainset *csv(tg_model *m, const char *text)
{
    tg_trainset *s = tg_trainset_csv_parse(ctx, m, "s.csv", text, strlen(text));
    cr_assert_not_null(s, "%s", tg_errmsg(ctx));
    return s;
}

/* Trains `steps` steps in one go, or stops at k, saves, resumes in a fresh
 * trainer and goes on; returns the parameters' bytes (malloc'd). */
static tg_real *train_run(const char *mtext, const tg_dim *dims, int nd, const char *data, int text,
                          tg_train_opts o, double split, int stop_at, size_t *n_out)
{
    tg_model *m = model(mtext, dims, nd);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 7), TG_OK);
    tg_trainset *tr_set = text ? tg_trainset_text_parse(ctx, "t.txt", data, strlen(data), NULL) : csv(m, data);
    cr_assert_not_null(tr_set, "%s", tg_errmsg(ctx));
    tg_trainset *va = split > 0 ? tg_trainset_split(tr_set, split) : NULL;
    cr_assert(split == 0 || va, "%s", tg_errmsg(ctx));
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_not_null(tr, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_set_data(tr, tr_set, va), TG_OK, "%s", tg_errmsg(ctx));
    if (stop_at) {
        tg_train_opts o2 = o;
        o2.max_steps = (uint64_t)stop_at;
        tg_trainer_free(tr);
        tr = tg_trainer_new(m, ps, &o2);
        cr_assert_eq(tg_trainer_set_data(tr, tr_set, va), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_end(tr), TG_END_MAX_STEPS);
        cr_assert_eq(tg_trainer_save(tr, path("ck")), TG_OK, "%s", tg_errmsg(ctx));
        tg_trainer_free(tr);
        /* a fresh model, params and trainer, as another process would have */
        tg_params_free(ps);
        ps = tg_params_new(ctx);
        cr_assert_eq(tg_model_init_params(m, ps, 99), TG_OK);
        tg_checkpoint *ck = tg_checkpoint_open(ctx, path("ck"));
        cr_assert_not_null(ck, "%s", tg_errmsg(ctx));
        tg_train_opts so;
        cr_assert_eq(tg_checkpoint_opts(ck, &so), TG_OK);
        cr_assert_eq(so.max_steps, (uint64_t)stop_at);
        so.max_steps = o.max_steps;
        tr = tg_trainer_new(m, ps, &so);
        cr_assert_eq(tg_trainer_set_data(tr, tr_set, va), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_resume(tr, ck), TG_OK, "%s", tg_errmsg(ctx));
        tg_checkpoint_close(ck);
    }
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    size_t n = tg_params_total(ps);
    tg_real *out = malloc(n * sizeof *out);
    memcpy(out, tg_params_values(ps), n * sizeof *out);
    *n_out = n;
    tg_trainer_free(tr);
    tg_trainset_free(va);
    tg_trainset_free(tr_set);
    tg_params_free(ps);
    tg_model_free(m);
    return out;
}

static const char *TEXT = "abcd abba dcba cab bad dab cad acdc baba dada\nabcd bcda cdab dabc\n";

Test(trainer, resume_is_bit_identical_for_every_optimizer_and_schedule)
{
    char *data = series(7, 9);
    static const tg_optim_kind kinds[] = {TG_OPTIM_SGD, TG_OPTIM_MOMENTUM, TG_OPTIM_ADAM, TG_OPTIM_RMSPROP,
                                          TG_OPTIM_ADAGRAD};
    int cases = 0;
    for (int k = 0; k < 5; k++)
        for (int s = 0; s <= TG_SCHED_PLATEAU; s++) {
            tg_train_opts o = tg_train_defaults();
            o.optim = tg_optim_defaults(kinds[k]);
            o.optim.lr = kinds[k] == TG_OPTIM_SGD ? 0.05 : 0.01;
            o.optim.clip = 5;
            o.optim.clip_value = k == 4 ? 0.5 : 0; /* min-char-rnn's: clamped, eps under the root */
            o.optim.eps_inside = k >= 2;
            o.epochs = 4;
            o.batch = 2;
            o.bptt = 4;
            o.accumulate = 2;
            o.schedule = (tg_schedule)s;
            o.warmup = 2;
            o.step_size = 3;
            o.plateau_patience = 0;
            o.patience = 3;
            o.seed = 5;
            size_t n1, n2;
            tg_real *a = train_run(ELMAN, NULL, 0, data, 0, o, 0.3, 0, &n1);
            /* stop mid-epoch, mid-batch (a carried state) */
            tg_real *b = train_run(ELMAN, NULL, 0, data, 0, o, 0.3, 5, &n2);
            cr_assert_eq(n1, n2);
            cr_assert(!memcmp(a, b, n1 * sizeof *a), "%s, %s: resumed parameters differ from one run",
                      tg_optim_kind_name(kinds[k]), tg_schedule_name((tg_schedule)s));
            free(a), free(b);
            cases++;
        }
    cr_assert_eq(cases, 25);
    free(data);
}

Test(trainer, resume_of_a_text_run_is_bit_identical)
{
    tg_dim dims[] = {{"vocab", 6}};
    tg_train_opts o = tg_train_defaults();
    o.optim.lr = 0.01;
    o.epochs = 3;
    o.batch = 3;
    o.bptt = 5;
    o.accumulate = 2;
    o.reduction = TG_REDUCE_SUM;
    o.schedule = TG_SCHED_COSINE;
    size_t n1, n2;
    tg_real *a = train_run(CHARS, dims, 1, TEXT, 1, o, 0.2, 0, &n1);
    for (int k = 1; k < 5; k++) {
        tg_real *b = train_run(CHARS, dims, 1, TEXT, 1, o, 0.2, k, &n2);
        cr_assert(!memcmp(a, b, n1 * sizeof *a), "stopped at %d: resumed text run differs", k);
        free(b);
    }
    free(a);
}

/* ELMAN with dropout on the hidden state before the output. */
static const char *ELMAN_DROP =
    "name: elman\n"
    "dims: {input: 2, hidden: 3, output: 1}\n"
    "params:\n"
    "  U: {shape: [hidden, input], init: uniform(-0.5, 0.5)}\n"
    "  W: {shape: [hidden, hidden], init: normal(0, 0.3)}\n"
    "  b: {shape: [hidden], init: zeros}\n"
    "  V: {shape: [output, hidden], init: xavier}\n"
    "  c: {shape: [output], init: zeros}\n"
    "inputs:  {x: [input]}\n"
    "targets: {y: [output]}\n"
    "state:   {h: {shape: [hidden], init: zeros}}\n"
    "step:\n"
    "  - h = tanh(U @ x + W @ h + b)\n"
    "  - o = tanh(V @ dropout(h, 0.5) + c)\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";

/* Dropout draws its masks from the context's generator: the checkpoint keeps
 * the generator, so a resumed run draws the masks the uninterrupted one drew. */
Test(trainer, resume_with_dropout_is_bit_identical_and_evaluation_has_no_dropout)
{
    char *data = series(7, 9);
    tg_train_opts o = tg_train_defaults();
    o.optim = tg_optim_defaults(TG_OPTIM_ADAM);
    o.optim.lr = 0.01;
    o.epochs = 3, o.batch = 2, o.bptt = 4, o.seed = 5;
    size_t n1, n2;
    tg_real *a = train_run(ELMAN_DROP, NULL, 0, data, 0, o, 0.3, 0, &n1);
    for (int k = 3; k <= 6; k += 3) {
        tg_real *b = train_run(ELMAN_DROP, NULL, 0, data, 0, o, 0.3, k, &n2);
        cr_assert_eq(n1, n2);
        cr_assert(!memcmp(a, b, n1 * sizeof *a), "stopped at %d: resumed dropout run differs", k);
        free(b);
    }
    free(a);

    /* a training step applies dropout: from the same parameters it moves them
     * elsewhere than the model without dropout does */
    tg_model *md = model(ELMAN_DROP, NULL, 0), *m0 = model(ELMAN, NULL, 0);
    tg_params *pd = tg_params_new(ctx), *p0 = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(md, pd, 7), TG_OK);
    cr_assert_eq(tg_model_init_params(m0, p0, 7), TG_OK);
    size_t n = tg_params_total(pd);
    cr_assert(n == tg_params_total(p0) && !memcmp(tg_params_values(pd), tg_params_values(p0), n * sizeof(tg_real)));
    tg_trainset *s = csv(m0, data);
    tg_trainer *td = tg_trainer_new(md, pd, &o), *t0 = tg_trainer_new(m0, p0, &o);
    cr_assert_eq(tg_trainer_set_data(td, s, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_set_data(t0, s, NULL), TG_OK, "%s", tg_errmsg(ctx));
    /* evaluation is the identity on dropout: the same loss as without, every time */
    double ld, ld2, l0;
    cr_assert_eq(tg_trainer_evaluate(td, s, &ld), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_evaluate(td, s, &ld2), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_evaluate(t0, s, &l0), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert(ld == l0 && ld2 == l0, "evaluation with dropout %.17g, %.17g; without %.17g", ld, ld2, l0);
    cr_assert_eq(tg_trainer_step(td), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_step(t0), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert(memcmp(tg_params_values(pd), tg_params_values(p0), n * sizeof(tg_real)),
              "a training step with dropout moved the parameters as one without");

    /* the saved generator is checked: all zeros is xoshiro's one invalid state */
    cr_assert_eq(tg_trainer_save(td, path("d")), TG_OK, "%s", tg_errmsg(ctx));
    for (int bad = 0; bad < 2; bad++) {
        tgc_file *f;
        char msg[512];
        cr_assert_eq(tgc_open(path("d"), &f, msg, sizeof msg), TG_OK, "%s", msg);
        tgc_writer *w = tgc_writer_new();
        int seen = 0;
        for (int i = 0; i < tgc_section_count(f); i++) {
            const char *name = tgc_section_name(f, i);
            tgc_cur c;
            tgc_section(f, name, &c);
            tgc_buf b = {0};
            int rng = !strcmp(name, "rng");
            seen += rng;
            for (size_t k = 0; k < c.len; k++) tgc_put_u8(&b, rng ? 0 : c.p[k]);
            if (rng && bad) tgc_put_u8(&b, 1); /* a byte past the four words */
            cr_assert_eq(tgc_writer_add(w, name, &b), 0);
        }
        cr_assert_eq(seen, 1, "the checkpoint has one 'rng' section");
        cr_assert_eq(tgc_writer_commit(w, path("dz"), msg, sizeof msg), TG_OK, "%s", msg);
        tgc_writer_free(w);
        tgc_close(f);
        tg_checkpoint *ck = tg_checkpoint_open(ctx, path("dz"));
        cr_assert_not_null(ck, "%s", tg_errmsg(ctx));
        tg_trainer *t2 = tg_trainer_new(md, pd, &o);
        cr_assert_eq(tg_trainer_set_data(t2, s, NULL), TG_OK);
        cr_assert_eq(tg_trainer_resume(t2, ck), TG_ERR_PARSE);
        char want[512];
        snprintf(want, sizeof want, "%s: section 'rng': field 'rng' %s", path("dz"),
                 bad ? "does not fit" : "is all zeros, not a state of the generator");
        cr_assert_str_eq(tg_errmsg(ctx), want);
        tg_trainer_free(t2);
        tg_checkpoint_close(ck);
    }
    tg_trainer_free(td), tg_trainer_free(t0);
    tg_trainset_free(s);
    tg_params_free(pd), tg_params_free(p0);
    tg_model_free(md), tg_model_free(m0);
    free(data);
}

/* A reverse state's sweep starts at a sequence's end: no truncated BPTT. */
Test(trainer, a_reverse_state_refuses_chunks_shorter_than_the_sequence)
{
    const char *text = "name: back\ndims: {input: 2, hidden: 3, output: 1}\n"
                       "params:\n  U: [hidden, input]\n  W: [hidden, hidden]\n  V: [output, hidden]\n"
                       "inputs: {x: [input]}\ntargets: {y: [output]}\n"
                       "state:\n  hb: {shape: [hidden], direction: reverse}\n"
                       "step:\n  - hb = tanh(U @ x + W @ hb)\n  - o = V @ hb\noutputs: [o]\n"
                       "loss: squared_error(o, y)\n";
    char *data = series(4, 6);
    tg_model *m = model(text, NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK);
    tg_trainset *s = csv(m, data);
    tg_train_opts o = tg_train_defaults();
    o.epochs = 2, o.bptt = 3;
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_ERR_ARG);
    cr_assert_str_eq(tg_errmsg(ctx), "--bptt 3: state 'hb' of back runs in reverse, so the model trains on whole "
                                     "sequences (no truncated BPTT)");
    tg_trainer_free(tr);
    o.bptt = 6; /* the longest sequence: whole sequences */
    tr = tg_trainer_new(m, ps, &o);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    free(data);
}

/* Records the learning rate of every step. */
typedef struct lrs { double lr[64]; int n; double valid[16]; int nv; } lrs;
static int record(const tg_train_progress *p, void *user)
{
    lrs *l = user;
    if (p->epoch_end) {
        if (l->nv < 16) l->valid[l->nv++] = p->valid_loss;
    } else if (l->n < 64)
        l->lr[l->n++] = p->lr;
    return 0;
}
/* Keeps the parameters still: the loss stays the same every epoch. */
static int zero_grads(tg_real *g, size_t n, double *stats, int n_stats, void *user)
{
    memset(g, 0, n * sizeof *g);
    (void)stats, (void)n_stats, (void)user;
    return 0;
}

static lrs schedule_run(tg_train_opts o, int frozen)
{
    char *data = series(4, 3); /* 4 sequences, batch 1, full BPTT: 4 steps per epoch */
    tg_model *m = model(ELMAN, NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    tg_trainset *s = csv(m, data);
    o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1};
    o.batch = 1;
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_not_null(tr, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK, "%s", tg_errmsg(ctx));
    lrs l = {0};
    tg_trainer_set_progress(tr, record, &l);
    if (frozen) tg_trainer_set_reduce(tr, zero_grads, NULL);
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    free(data);
    return l;
}

static void expect_lrs(const lrs *l, const double *want, int n, const char *what)
{
    cr_assert_geq(l->n, n, "%s: %d steps", what, l->n);
    for (int i = 0; i < n; i++)
        cr_assert(fabs(l->lr[i] - want[i]) <= 1e-12 * fabs(want[i]) + 1e-15, "%s: step %d: lr %.17g, expected %.17g",
                  what, i + 1, l->lr[i], want[i]);
}

Test(trainer, schedules_give_the_learning_rates_torch_defines)
{
    tg_train_opts o = tg_train_defaults();
    o.epochs = 2; /* 8 steps */
    o.schedule = TG_SCHED_CONSTANT;
    lrs l = schedule_run(o, 0);
    expect_lrs(&l, (double[]){0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 8, "constant");
    /* StepLR(step_size=3, gamma=0.5) */
    o.schedule = TG_SCHED_STEP, o.step_size = 3, o.gamma = 0.5;
    l = schedule_run(o, 0);
    expect_lrs(&l, (double[]){0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025}, 8, "step");
    /* ExponentialLR(gamma=0.9) */
    o.schedule = TG_SCHED_EXP, o.gamma = 0.9;
    l = schedule_run(o, 0);
    expect_lrs(&l, (double[]){0.1, 0.09, 0.081, 0.0729, 0.06561, 0.059049, 0.0531441, 0.04782969}, 8, "exp");
    /* CosineAnnealingLR(T_max=8): 0.05 (1 + cos(pi t / 8)) */
    o.schedule = TG_SCHED_COSINE;
    l = schedule_run(o, 0);
    expect_lrs(&l, (double[]){0.1, 0.09619397662556434, 0.08535533905932738, 0.0691341716182545, 0.05,
                              0.030865828381745515, 0.014644660940672627, 0.0038060233744356634}, 8, "cosine");
    /* warm-up 3, then cosine over the other 5 steps: 0.05 (1 + cos(pi s / 5)) */
    o.warmup = 3;
    l = schedule_run(o, 0);
    expect_lrs(&l, (double[]){0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.09045084971874738, 0.06545084971874737,
                              0.03454915028125263, 0.009549150281252633}, 8, "warmup + cosine");
    /* max_steps pauses a run: it does not shorten the cosine */
    o.warmup = 0, o.max_steps = 3;
    l = schedule_run(o, 0);
    cr_assert_eq(l.n, 3);
    expect_lrs(&l, (double[]){0.1, 0.09619397662556434, 0.08535533905932738}, 3, "cosine paused");
    o.max_steps = 0;
    /* ReduceLROnPlateau(patience=1, factor=0.5), the loss held still: epoch 1
     * sets best, epochs 2 and 3 are bad (2 > 1: halve after epoch 3) */
    o.schedule = TG_SCHED_PLATEAU, o.gamma = 0.5, o.plateau_patience = 1, o.epochs = 5;
    l = schedule_run(o, 1);
    double want[20];
    for (int i = 0; i < 20; i++) want[i] = i < 12 ? 0.1 : 0.05;
    expect_lrs(&l, want, 20, "plateau");
}

Test(trainer, sum_reduction_steps_count_times_further_than_mean)
{
    char *data = series(3, 5); /* lengths 5, 4, 5 */
    tg_model *m = model(ELMAN, NULL, 0);
    tg_trainset *s = csv(m, data);
    tg_real *p[2];
    size_t n = 0;
    tg_real init[256];
    for (int red = 0; red < 2; red++) {
        tg_params *ps = tg_params_new(ctx);
        tg_model_init_params(m, ps, 3);
        n = tg_params_total(ps);
        memcpy(init, tg_params_values(ps), n * sizeof *init);
        tg_train_opts o = tg_train_defaults();
        o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.01};
        o.batch = 2, o.reduction = (tg_reduction)red, o.max_steps = 1;
        tg_trainer *tr = tg_trainer_new(m, ps, &o);
        cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_trainer_step(tr), TG_OK, "%s", tg_errmsg(ctx));
        p[red] = malloc(n * sizeof(tg_real));
        for (size_t i = 0; i < n; i++) p[red][i] = tg_params_values(ps)[i] - init[i];
        tg_trainer_free(tr);
        tg_params_free(ps);
    }
    /* the first batch of the seed-5 plan: the two sequences of 5 steps (one batch
     * of 2 columns) or the one of 4; MEAN divides by the columns */
    double ratio = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(p[0][i]) > 1e-6) {
            ratio = p[1][i] / p[0][i];
            break;
        }
    cr_assert(fabs(ratio - 2) < 1e-3 || fabs(ratio - 1) < 1e-3, "sum/mean step ratio %g", ratio);
    free(p[0]), free(p[1]);
    tg_trainset_free(s);
    tg_model_free(m);
    free(data);
}

typedef struct hook_seen { int calls; double loss, count; } hook_seen;
static int seen_hook(tg_real *g, size_t n, double *stats, int n_stats, void *user)
{
    hook_seen *h = user;
    h->calls++;
    cr_assert_eq(n_stats, 2);
    h->loss = stats[0], h->count = stats[1];
    (void)g, (void)n;
    return 0;
}
static int failing_hook(tg_real *g, size_t n, double *stats, int n_stats, void *user)
{
    (void)g, (void)n, (void)stats, (void)n_stats, (void)user;
    return -1;
}

Test(trainer, accumulation_matches_a_bigger_batch_and_the_hook_sees_the_sums)
{
    /* 4 sequences of one length: batch 4 in one step == batch 2 accumulated twice */
    const char *data = "x[0],x[1],y\n1,0,0.5\n0,1,-0.5\n\n0.5,0.5,0.1\n-1,0,0.2\n\n0,0,0\n1,1,0.3\n\n0.2,-0.3,0.4\n"
                       "0.1,0.1,-0.2\n";
    tg_model *m = model(ELMAN, NULL, 0);
    tg_trainset *s = csv(m, data);
    tg_real *got[2];
    size_t n = 0;
    for (int v = 0; v < 2; v++) {
        tg_params *ps = tg_params_new(ctx);
        tg_model_init_params(m, ps, 3);
        n = tg_params_total(ps);
        tg_train_opts o = tg_train_defaults();
        o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1};
        o.batch = v ? 2 : 4, o.accumulate = v ? 2 : 1, o.max_steps = 1;
        tg_trainer *tr = tg_trainer_new(m, ps, &o);
        cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK);
        hook_seen h = {0};
        tg_trainer_set_reduce(tr, seen_hook, &h);
        cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(h.calls, 1);
        cr_assert_eq(h.count, 4, "MEAN divides by the 4 sequences, got %g", h.count);
        cr_assert_gt(h.loss, 0);
        got[v] = malloc(n * sizeof(tg_real));
        memcpy(got[v], tg_params_values(ps), n * sizeof(tg_real));
        tg_trainer_free(tr);
        tg_params_free(ps);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[0][i] - got[1][i]) < 1e-5, "element %zu: %g vs %g", i, got[0][i], got[1][i]);
    free(got[0]), free(got[1]);
    /* a failing hook fails the step */
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 3);
    tg_trainer *tr = tg_trainer_new(m, ps, NULL);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK);
    tg_trainer_set_reduce(tr, failing_hook, NULL);
    cr_assert_eq(tg_trainer_step(tr), TG_ERR_IO);
    cr_assert_str_eq(tg_errmsg(ctx), "step 1: gradient reduction failed");
    tg_trainer_free(tr);
    tg_params_free(ps);
    tg_trainset_free(s);
    tg_model_free(m);
}

static int stop_at_3(const tg_train_progress *p, void *user)
{
    (void)user;
    return !p->epoch_end && p->step == 3;
}

Test(trainer, patience_stops_and_keeps_the_best_parameters_and_a_callback_stops)
{
    char *data = series(6, 6);
    tg_model *m = model(ELMAN, NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 3);
    tg_trainset *s = csv(m, data);
    tg_trainset *v = tg_trainset_split(s, 0.34);
    cr_assert_not_null(v, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainset_length(v), 2);
    cr_assert_eq(tg_trainset_length(s), 4);
    tg_train_opts o = tg_train_defaults();
    /* an lr so large that the validation loss soon stops improving */
    o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 3};
    o.epochs = 200, o.patience = 2;
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_eq(tg_trainer_set_data(tr, s, v), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_end(tr), TG_END_PATIENCE);
    const tg_train_progress *p = tg_trainer_progress(tr);
    double best = p->best_valid_loss, now;
    cr_assert(isfinite(best));
    cr_assert_eq(tg_trainer_evaluate(tr, v, &now), TG_OK);
    cr_assert_eq(now, best, "the parameters kept give %.9g, the best was %.9g", now, best);
    tg_trainer_free(tr);
    /* a progress callback that returns nonzero stops the run */
    o.patience = 0;
    o.optim.lr = 0.01;
    tr = tg_trainer_new(m, ps, &o);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK);
    tg_trainer_set_progress(tr, stop_at_3, NULL);
    cr_assert_eq(tg_trainer_run(tr), TG_OK);
    cr_assert_eq(tg_trainer_end(tr), TG_END_STOPPED);
    cr_assert_eq(tg_trainer_progress(tr)->step, 3);
    tg_trainer_free(tr);
    tg_trainset_free(v);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    free(data);
}

Test(trainer, text_is_read_as_utf8_characters_with_invalid_bytes_escaped)
{
    /* 14 distinct characters, some of two and three bytes */
    const char *t = "héllo wörld — ça va\n";
    tg_trainset *s = tg_trainset_text_parse(ctx, "u.txt", t, strlen(t), NULL);
    cr_assert_not_null(s, "%s", tg_errmsg(ctx));
    const tg_vocab *v = tg_trainset_vocab(s);
    cr_assert_eq(tg_trainset_length(s), 20);
    cr_assert_eq(tg_vocab_size(v), 14, "vocabulary %d", tg_vocab_size(v));
    cr_assert_geq(tg_vocab_index(v, 0x2014), 0, "the em dash is one character");
    char buf[4];
    cr_assert_eq(tg_vocab_utf8(v, tg_vocab_index(v, 0x2014), buf), 3);
    cr_assert(!memcmp(buf, "\xe2\x80\x94", 3));
    tg_trainset_free(s);
    /* invalid bytes: each its own character U+DC00 + byte, written back as the byte */
    const char bad[] = "a\xff" "b\xc3" "c\xed\xa0\x80\n";
    s = tg_trainset_text_parse(ctx, "b.txt", bad, sizeof bad - 1, NULL);
    cr_assert_not_null(s, "%s", tg_errmsg(ctx));
    v = tg_trainset_vocab(s);
    cr_assert_eq(tg_trainset_length(s), 9);
    int k = tg_vocab_index(v, 0xDCFF);
    cr_assert_geq(k, 0);
    cr_assert_eq(tg_vocab_utf8(v, k, buf), 1);
    cr_assert_eq((unsigned char)buf[0], 0xFF);
    cr_assert_geq(tg_vocab_index(v, 0xDCC3), 0, "a truncated sequence's lead byte");
    cr_assert_geq(tg_vocab_index(v, 0xDCED), 0, "an encoded surrogate is three invalid bytes");
    cr_assert_geq(tg_vocab_index(v, 0xDCA0), 0);
    /* a text read with another vocabulary: a position and the character */
    tg_trainset *s2 = tg_trainset_text_parse(ctx, "c.txt", "ab\nba!", 6, v);
    cr_assert_null(s2);
    cr_assert_str_eq(tg_errmsg(ctx), "c.txt:2:3: character '!' (U+0021) is not in the vocabulary of 9 characters");
    tg_trainset_free(s);
    /* a character model must have vocab-sized input and target */
    tg_dim dims[] = {{"vocab", 5}};
    tg_model *m = model(CHARS, dims, 1);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    s = tg_trainset_text_parse(ctx, "t.txt", TEXT, strlen(TEXT), NULL);
    tg_trainer *tr = tg_trainer_new(m, ps, NULL);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_ERR_SHAPE);
    cr_assert(strstr(tg_errmsg(ctx), "one input and one target of size vocab (6 here)"), "%s", tg_errmsg(ctx));
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
}

Test(trainer, csv_refuses_nul_nonfinite_out_of_range_and_overlong_sequences)
{
    tg_model *m = model(ELMAN, NULL, 0);
    struct { const char *text; size_t len; const char *msg; } cases[] = {
        {"x[0],x[1],y\n1,2,3\n4,\0,6\n", 24, "s.csv:3:3: a NUL byte in CSV data"},
        {"x[0],x[1],y\n1,2,3\n4,nan,6\n", 0, "s.csv:3:3: 'nan' is not a finite number"},
        {"x[0],x[1],y\n1,2,3\n4,5,-inf\n", 0, "s.csv:3:5: '-inf' is not a finite number"},
        {"x[0],x[1],y\n1,2,1e309\n", 0, "s.csv:2:5: '1e309' is out of range for"},
        {"x[0],x[1],y\n1,2\n", 0, "s.csv:2: expected 3 values, found 2"},
        {"x[0],x[1],y\n1,2,3,4\n", 0, "s.csv:2: more than the header's 3 values"},
        {"x[0],x[1],y\n1,zz,3\n", 0, "s.csv:2:3: expected a number, found 'zz'"},
        {"x[0],x[1],y\n1,0x10,3\n", 0, "s.csv:2:3: '0x10' is a hexadecimal number; write numbers in decimal"},
        {"x[0],y\n1,2\n", 0, "s.csv:1: the header lacks input 'x'"},
        {"x[0],x[1],q\n", 0, "s.csv:1:11: column 'q' is not an input or target of model 'elman'"},
        {"x[0],x[1],y\n", 0, "s.csv: no data lines"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        tg_trainset *s = tg_trainset_csv_parse(ctx, m, "s.csv", cases[i].text, len);
        cr_assert_null(s, "case %zu accepted", i);
        cr_assert(strstr(tg_errmsg(ctx), cases[i].msg), "case %zu: '%s' not in '%s'", i, cases[i].msg, tg_errmsg(ctx));
    }
    /* fuzz_csv found it: text that is not NUL-terminated, ending inside a number */
    const char cut[] = "x[0],x[1],y\n9.5,-";
    char *heap = malloc(sizeof cut - 1);
    memcpy(heap, cut, sizeof cut - 1);
    cr_assert_null(tg_trainset_csv_parse(ctx, m, "s.csv", heap, sizeof cut - 1));
    cr_assert_str_eq(tg_errmsg(ctx), "s.csv:2:5: expected a number, found '-'");
    free(heap);
    if (sizeof(tg_real) == 4) {
        tg_trainset *s = tg_trainset_csv_parse(ctx, m, "s.csv", "x[0],x[1],y\n1,1e39,3\n", 21);
        cr_assert_null(s);
        cr_assert_str_eq(tg_errmsg(ctx), "s.csv:2:3: '1e39' is out of range for float (largest 3.40282e+38)");
    }
    /* the step limit (docs/limits.md): 1,000,000 steps pass, one more does not */
    size_t n = 1000001;
    char *big = malloc(16 + n * 6), *w = big;
    w += sprintf(w, "x[0],x[1],y\n");
    for (size_t i = 0; i < n; i++) memcpy(w, "0,0,0\n", 6), w += 6;
    tg_trainset *s = tg_trainset_csv_parse(ctx, m, "big.csv", big, (size_t)(w - big));
    cr_assert_null(s);
    cr_assert_str_eq(tg_errmsg(ctx), "big.csv:1000002:1: sequence 1 has more than the limit of 1000000 steps");
    s = tg_trainset_csv_parse(ctx, m, "big.csv", big, (size_t)(w - big) - 6);
    cr_assert_not_null(s, "%s", tg_errmsg(ctx));
    tg_trainset_free(s);
    free(big);
    tg_model_free(m);
}

Test(trainer, a_model_that_overflows_at_step_1_says_where)
{
    const char *text = "name: boom\ndims: {n: 1}\nparams:\n  w: {shape: [n], init: 100}\ninputs: {x: [n]}\n"
                       "targets: {y: [n]}\nstep:\n  - o = exp(w * x)\noutputs: [o]\nloss: squared_error(o, y)\n";
    tg_model *m = model(text, NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    tg_trainset *s = csv(m, "x,y\n10,1\n");
    tg_trainer *tr = tg_trainer_new(m, ps, NULL);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_step(tr), TG_ERR_NONFINITE);
    const char *e = tg_errmsg(ctx);
    cr_assert(strstr(e, "step 1: the loss is inf; the first non-finite value: "), "%s", e);
    cr_assert(strstr(e, "test.yaml:8:"), "no source position: %s", e);
    cr_assert(strstr(e, "at the first step: the model overflows with its initial parameters"), "%s", e);
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
}

/* Rewrites checkpoint `from` into `to` with the position section's bytes at
 * offset off replaced by the 8 bytes of v (little-endian). */
static void patch_position(const char *from, const char *to, size_t off, uint64_t v)
{
    tgc_file *f;
    char msg[512];
    cr_assert_eq(tgc_open(from, &f, msg, sizeof msg), TG_OK, "%s", msg);
    tgc_writer *w = tgc_writer_new();
    for (int i = 0; i < tgc_section_count(f); i++) {
        const char *name = tgc_section_name(f, i);
        tgc_cur c;
        tgc_section(f, name, &c);
        tgc_buf b = {0};
        for (size_t k = 0; k < c.len; k++) tgc_put_u8(&b, c.p[k]);
        if (!strcmp(name, "position"))
            for (int k = 0; k < 8; k++) b.p[off + (size_t)k] = (unsigned char)(v >> (8 * k));
        cr_assert_eq(tgc_writer_add(w, name, &b), 0);
    }
    cr_assert_eq(tgc_writer_commit(w, to, msg, sizeof msg), TG_OK, "%s", msg);
    tgc_writer_free(w);
    tgc_close(f);
}

static uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

Test(trainer, every_number_a_checkpoint_holds_is_range_checked)
{
    char *data = series(5, 6);
    tg_model *m = model(ELMAN, NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 3);
    tg_trainset *s = csv(m, data);
    tg_train_opts o = tg_train_defaults();
    o.epochs = 3, o.batch = 2, o.bptt = 2, o.max_steps = 4;
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK);
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_save(tr, path("good")), TG_OK, "%s", tg_errmsg(ctx));
    /* position: step u64 @0, epoch @8, batch @16, chunk @24, epoch_loss @32, epoch_count @40 */
    struct { size_t off; uint64_t v; const char *msg; } cases[] = {
        {8, (uint64_t)(int64_t)-2000000000, "field 'position.epoch' is -2000000000, outside 0..3"},
        {16, (uint64_t)(int64_t)-100000000, "field 'position.batch' is -100000000, outside"},
        {16, 100000000, "is not a place in this run (3 batches per epoch)"},
        {24, 999999, "is not a place in this run"},
        {32, f64_bits(1e300 * 1e10), "field 'position.epoch_loss' is inf, not a finite number"},
        {32, f64_bits(NAN), "field 'position.epoch_loss' is nan, not a finite number"},
        {40, f64_bits(-5), "field 'position.epoch_count' is -5, not a finite number >= 0"},
        {0, (uint64_t)1 << 60, "field 'position.step' is past 2^53"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        patch_position(path("good"), path("bad"), cases[i].off, cases[i].v);
        tg_checkpoint *ck = tg_checkpoint_open(ctx, path("bad"));
        cr_assert_not_null(ck, "%s", tg_errmsg(ctx));
        tg_trainer *t2 = tg_trainer_new(m, ps, &o);
        cr_assert_eq(tg_trainer_set_data(t2, s, NULL), TG_OK);
        cr_assert_neq(tg_trainer_resume(t2, ck), TG_OK, "case %zu resumed", i);
        cr_assert(strstr(tg_errmsg(ctx), path("bad")), "case %zu: no file name: %s", i, tg_errmsg(ctx));
        cr_assert(strstr(tg_errmsg(ctx), cases[i].msg), "case %zu: '%s' not in '%s'", i, cases[i].msg, tg_errmsg(ctx));
        tg_trainer_free(t2);
        tg_checkpoint_close(ck);
    }
    /* the good one resumes; another seed is refused */
    tg_checkpoint *ck = tg_checkpoint_open(ctx, path("good"));
    tg_trainer *t2 = tg_trainer_new(m, ps, &o);
    tg_trainer_set_data(t2, s, NULL);
    cr_assert_eq(tg_trainer_resume(t2, ck), TG_OK, "%s", tg_errmsg(ctx));
    tg_trainer_free(t2);
    o.seed = 9;
    t2 = tg_trainer_new(m, ps, &o);
    tg_trainer_set_data(t2, s, NULL);
    cr_assert_eq(tg_trainer_resume(t2, ck), TG_ERR_ARG);
    cr_assert(strstr(tg_errmsg(ctx), "seed 1"), "%s", tg_errmsg(ctx));
    tg_trainer_free(t2);
    /* the checkpoint alone gives the model back */
    size_t tl;
    const char *mpath, *mtext = tg_checkpoint_model_text(ck, &tl, &mpath);
    cr_assert(mtext && tl == strlen(ELMAN) && !memcmp(mtext, ELMAN, tl));
    cr_assert_str_eq(mpath, "test.yaml");
    tg_model *m2 = tg_checkpoint_model(ck, NULL, 0);
    cr_assert_not_null(m2, "%s", tg_errmsg(ctx));
    cr_assert_str_eq(tg_model_name(m2), "elman");
    tg_params *p2 = tg_params_new(ctx);
    cr_assert_eq(tg_checkpoint_params(ck, m2, p2, 0), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert(!memcmp(tg_params_values(p2), tg_params_values(ps), tg_params_total(ps) * sizeof(tg_real)));
    tg_params_free(p2);
    tg_model_free(m2);
    tg_checkpoint_close(ck);
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    free(data);
}

/* examples/train_char.c, as `make` builds it: trains, stops at step 10 with a
 * checkpoint, resumes and finishes. */
Test(trainer, the_example_trains_stops_and_resumes)
{
    const char *ex = getenv("TG_EXAMPLES"), *root = getenv("TG_ROOT");
    cr_assert(ex && root, "TG_EXAMPLES and TG_ROOT are set by make test");
    FILE *f = fopen(path("t.txt"), "w");
    for (int i = 0; i < 30; i++) fputs(TEXT, f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/train_char' '%s/models/char_rnn.yaml' '%s' '%s' > '%s' 2>&1", ex, root, path("t.txt"),
             path("c.ckpt"), path("out"));
    int rc = system(cmd);
    static char out[1 << 14];
    f = fopen(path("out"), "r");
    size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    if (f) fclose(f);
    cr_assert_eq(WEXITSTATUS(rc), 0, "%s", out);
    cr_assert(strstr(out, "stopped at step 10\n"), "%s", out);
    cr_assert(strstr(out, "epoch 4: loss "), "%s", out);
    cr_assert(strstr(out, "resumed, stopped at step "), "%s", out);
}
