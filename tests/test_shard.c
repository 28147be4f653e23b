/* test_shard.c — data-parallel training through the library alone: N
 * trainers, each in its own thread with its own context, share every
 * minibatch (tg_trainer_set_shard) and sum their gradients through the
 * reduction hook, here a barrier that adds the ranks' buffers in rank order.
 * After K steps their parameters equal one trainer's on the whole batch to
 * float rounding (the sums are grouped differently: rank 0's columns, then
 * rank 1's, instead of one product over all columns), for sequences with a
 * short last batch (a rank with no column) and for text with truncated BPTT;
 * a checkpoint written mid-text after tg_trainer_gather() resumes in a plain
 * trainer as the uninterrupted run goes on.  tests/mpi.sh checks the same
 * through `tapegrad-mpi train` on Open MPI. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tapegrad.h"

#define MAX_RANKS 4

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

/* The ranks of one run: each hook call puts a rank's buffer in its slot;
 * after a barrier every rank adds the slots in rank order. */
typedef struct group {
    int size;
    pthread_barrier_t bar;
    tg_real *slot[MAX_RANKS];
    double stats[MAX_RANKS][2];
    size_t n;
} group;

typedef struct rank_run {
    group *g;
    int rank;
    int text;              /* CHARS on a text, else ELMAN on CSV sequences */
    const char *data;
    tg_train_opts o;
    uint64_t stop_at;      /* 0: run o.max_steps; else stop there, gather, save */
    const char *save;      /* checkpoint path (rank 0 writes it) */
    tg_real *params;       /* out: the parameters after the run (malloc'd) */
    size_t n;
    double epoch_loss;     /* out: tg_trainer_progress()->loss */
    char err[256];
} rank_run;

static int sum_hook(tg_real *buf, size_t n, double *stats, int n_stats, void *user)
{
    rank_run *r = user;
    group *g = r->g;
    if (n > g->n) return -1;
    memcpy(g->slot[r->rank], buf, n * sizeof *buf);
    for (int i = 0; i < n_stats; i++) g->stats[r->rank][i] = stats[i];
    pthread_barrier_wait(&g->bar);
    for (size_t i = 0; i < n; i++) {
        tg_real s = 0;
        for (int k = 0; k < g->size; k++) s += g->slot[k][i];
        buf[i] = s;
    }
    for (int i = 0; i < n_stats; i++) {
        double s = 0;
        for (int k = 0; k < g->size; k++) s += g->stats[k][i];
        stats[i] = s;
    }
    pthread_barrier_wait(&g->bar); /* nobody refills a slot before all have read it */
    return 0;
}

static void *rank_main(void *arg)
{
    rank_run *r = arg;
    tg_ctx *ctx = tg_ctx_new(NULL);
    const char *text = r->text ? CHARS : ELMAN;
    tg_model *m = tg_model_parse(ctx, "m.yaml", text, strlen(text), NULL, 0);
    tg_trainset *s = NULL;
    tg_params *ps = tg_params_new(ctx);
    tg_trainer *tr = NULL;
    tg_status st = !m ? TG_ERR_PARSE : TG_OK;
    if (!st) st = tg_model_init_params(m, ps, 7);
    if (!st) {
        s = r->text ? tg_trainset_text_parse(ctx, "t.txt", r->data, strlen(r->data), NULL)
                    : tg_trainset_csv_parse(ctx, m, "d.csv", r->data, strlen(r->data));
        st = s ? TG_OK : tg_status_last(ctx);
    }
    tg_train_opts o = r->o;
    if (r->stop_at) o.max_steps = r->stop_at;
    if (!st) st = (tr = tg_trainer_new(m, ps, &o)) ? TG_OK : tg_status_last(ctx);
    if (!st && r->g) st = tg_trainer_set_shard(tr, r->rank, r->g->size);
    if (!st) st = tg_trainer_set_data(tr, s, NULL);
    if (!st && r->g) tg_trainer_set_reduce(tr, sum_hook, r);
    if (!st) st = tg_trainer_run(tr);
    if (!st && r->stop_at) {
        st = tg_trainer_gather(tr);
        if (!st && r->rank == 0) st = tg_trainer_save(tr, r->save);
    }
    if (st) snprintf(r->err, sizeof r->err, "rank %d: %s", r->rank, tg_errmsg(ctx));
    r->n = tg_params_total(ps);
    r->params = malloc(r->n * sizeof(tg_real));
    memcpy(r->params, tg_params_values(ps), r->n * sizeof(tg_real));
    r->epoch_loss = tr ? tg_trainer_progress(tr)->loss : NAN;
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    return NULL;
}

/* Runs `size` ranks (size 1: a plain trainer, no shard, no hook) and
 * returns rank 0's run; every rank must end with the same parameters. */
static rank_run run(int size, int text, const char *data, tg_train_opts o, uint64_t stop_at, const char *save)
{
    group g = {.size = size, .n = 4096};
    rank_run r[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    pthread_barrier_init(&g.bar, NULL, (unsigned)size);
    for (int k = 0; k < size; k++) {
        g.slot[k] = malloc(g.n * sizeof(tg_real));
        r[k] = (rank_run){.g = size > 1 ? &g : NULL, .rank = k, .text = text, .data = data, .o = o,
                          .stop_at = stop_at, .save = save};
        cr_assert_eq(pthread_create(&th[k], NULL, rank_main, &r[k]), 0);
    }
    for (int k = 0; k < size; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < size; k++) {
        cr_assert_str_empty(r[k].err, "%s", r[k].err);
        if (k) {
            cr_assert_eq(memcmp(r[k].params, r[0].params, r[0].n * sizeof(tg_real)), 0,
                         "rank %d's parameters differ from rank 0's", k);
            cr_assert_eq(r[k].epoch_loss, r[0].epoch_loss);
            free(r[k].params);
        }
        free(g.slot[k]);
    }
    pthread_barrier_destroy(&g.bar);
    return r[0];
}

/* Float rounding: relative to the parameter, 1e-5 in float (a few ulps of
 * the sums times a few steps), 1e-12 in double. */
#ifdef TG_REAL_DOUBLE
#define TOL 1e-12
#else
#define TOL 1e-5
#endif

static void assert_close(const rank_run *a, const rank_run *b, const char *what)
{
    cr_assert_eq(a->n, b->n);
    double worst = 0;
    for (size_t i = 0; i < a->n; i++) {
        double d = fabs((double)a->params[i] - (double)b->params[i]) / fmax(1, fabs((double)b->params[i]));
        worst = fmax(worst, d);
    }
    cr_assert(worst <= TOL, "%s: parameters differ by %g (tolerance %g)", what, worst, TOL);
    cr_assert(fabs(a->epoch_loss - b->epoch_loss) <= TOL * fmax(1, fabs(b->epoch_loss)), "%s: epoch loss %.9g vs %.9g",
              what, a->epoch_loss, b->epoch_loss);
}

/* 7 sequences of 4 steps: with batch 3, batches of 3, 3 and 1 columns. */
static char *sequences(void)
{
    size_t cap = 4096, len = 0;
    char *d = malloc(cap);
    len += (size_t)snprintf(d + len, cap - len, "x[0],x[1],y\n");
    for (int s = 0; s < 7; s++) {
        for (int t = 0; t < 4; t++)
            len += (size_t)snprintf(d + len, cap - len, "%g,%g,%g\n", sin(s + 0.3 * t), cos(2.0 * s - t),
                                    0.5 * sin(s * t + 1.0));
        if (s < 6) len += (size_t)snprintf(d + len, cap - len, "\n");
    }
    return d;
}

static char *text(void)
{
    static const char four[] = "abcd";
    char *t = malloc(401);
    uint64_t x = 12345;
    for (int i = 0; i < 400; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = four[(x >> 33) % 4];
    }
    t[400] = 0;
    return t;
}

Test(shard, sequences_on_two_and_three_ranks_step_as_one_trainer, .timeout = 60)
{
    char *d = sequences();
    tg_train_opts o = tg_train_defaults();
    o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1};
    o.batch = 3, o.bptt = 2, o.epochs = 2, o.max_steps = 12;
    rank_run one = run(1, 0, d, o, 0, NULL);
    for (int n = 2; n <= 3; n++) {
        rank_run par = run(n, 0, d, o, 0, NULL);
        char what[32];
        snprintf(what, sizeof what, "%d ranks", n);
        assert_close(&par, &one, what);
        free(par.params);
    }
    free(one.params);
    free(d);
}

Test(shard, text_streams_on_two_and_four_ranks_step_as_one_trainer, .timeout = 60)
{
    char *t = text();
    tg_train_opts o = tg_train_defaults();
    o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.3};
    o.batch = 4, o.bptt = 8, o.epochs = 2, o.max_steps = 20;
    rank_run one = run(1, 1, t, o, 0, NULL);
    for (int n = 2; n <= 4; n += 2) {
        rank_run par = run(n, 1, t, o, 0, NULL);
        char what[32];
        snprintf(what, sizeof what, "%d ranks", n);
        assert_close(&par, &one, what);
        free(par.params);
    }
    free(one.params);
    free(t);
}

Test(shard, a_checkpoint_gathered_mid_text_resumes_in_a_plain_trainer, .timeout = 60)
{
    char *t = text(), dir[] = "/tmp/tg-shard-XXXXXX", ck[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ck, sizeof ck, "%s/run.ckpt", dir);
    tg_train_opts o = tg_train_defaults();
    o.optim = (tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.3};
    o.batch = 4, o.bptt = 8, o.epochs = 2, o.max_steps = 20;
    rank_run one = run(1, 1, t, o, 0, NULL);
    /* 100 characters per stream, chunks of 8: step 7 ends inside the batch */
    rank_run half = run(2, 1, t, o, 7, ck);
    free(half.params);

    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_model *m = tg_model_parse(ctx, "m.yaml", CHARS, strlen(CHARS), NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 7), TG_OK);
    tg_trainset *s = tg_trainset_text_parse(ctx, "t.txt", t, strlen(t), NULL);
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK);
    tg_checkpoint *c = tg_checkpoint_open(ctx, ck);
    cr_assert_not_null(c, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_resume(tr, c), TG_OK, "%s", tg_errmsg(ctx));
    tg_checkpoint_close(c);
    cr_assert_eq(tg_trainer_progress(tr)->step, 7);
    cr_assert_eq(tg_trainer_run(tr), TG_OK, "%s", tg_errmsg(ctx));
    rank_run resumed = {.n = tg_params_total(ps), .params = tg_params_values(ps),
                        .epoch_loss = tg_trainer_progress(tr)->loss};
    assert_close(&resumed, &one, "2 ranks to step 7, then 1");
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    free(one.params);
    free(t);
    unlink(ck);
    rmdir(dir);
}

Test(shard, a_bad_rank_or_a_late_call_is_refused)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_model *m = tg_model_parse(ctx, "m.yaml", ELMAN, strlen(ELMAN), NULL, 0);
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    tg_trainer *tr = tg_trainer_new(m, ps, NULL);
    cr_assert_eq(tg_trainer_set_shard(tr, 2, 2), TG_ERR_ARG);
    cr_assert_str_eq(tg_errmsg(ctx), "tg_trainer_set_shard: rank 2 of 2 is not from 0 to size - 1");
    cr_assert_eq(tg_trainer_set_shard(tr, 0, 0), TG_ERR_ARG);
    char *d = sequences();
    tg_trainset *s = tg_trainset_csv_parse(ctx, m, "d.csv", d, strlen(d));
    cr_assert_eq(tg_trainer_set_data(tr, s, NULL), TG_OK);
    cr_assert_eq(tg_trainer_set_shard(tr, 0, 2), TG_ERR_ARG);
    cr_assert_str_eq(tg_errmsg(ctx), "tg_trainer_set_shard: call it before tg_trainer_set_data");
    cr_assert_eq(tg_trainer_gather(tr), TG_OK); /* unsharded: nothing to do */
    tg_trainer_free(tr);
    tg_trainset_free(s);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    free(d);
}
