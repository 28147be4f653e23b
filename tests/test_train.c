/* test_train.c — `tapegrad train` and `tapegrad sample` as a user runs them
 * (the tool from TG_TOOL, models from TG_ROOT): short deterministic runs that
 * must lower the loss; resume equal to an uninterrupted run, bit for bit;
 * checkpoints that stay whole when the process is killed while writing;
 * Ctrl-C; mismatched checkpoints refused; truncated BPTT; shuffling from the
 * seed; bad flags.  Each test works in its own temporary directory. */
#define _XOPEN_SOURCE 600
#include <dirent.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
#include <yaml.h>
#include "tapegrad.h"

static char dir[64];
static char out[1 << 16], err[1 << 16];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tg-train-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(getenv("TG_TOOL"), "TG_TOOL is not set (run through make test)");
    cr_assert_not_null(getenv("TG_ROOT"), "TG_ROOT is not set (run through make test)");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(train, .init = setup, .fini = teardown, .timeout = 60);

static const char *path(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *model(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/models/%s", getenv("TG_ROOT"), name);
    return buf[k];
}

static void slurp(const char *p, char *buf, size_t len)
{
    FILE *f = fopen(p, "rb");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Starts the tool with args (NULL-terminated) in the test's directory, its
 * stdout and stderr going to files there.  Returns the pid. */
static pid_t start(const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = getenv("TG_TOOL");
    for (; *args && n < 62; args++) argv[n++] = *args;
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(path("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(path("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 || chdir(dir) != 0) _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int finish(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    slurp(path("stdout"), out, sizeof out);
    slurp(path("stderr"), err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define TOOL(...) finish(start((const char *[]){__VA_ARGS__, NULL}))

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(path(name), "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* A CSV of n sequences of T steps for elman.yaml (x[0], x[1] -> y):
 * y(t) = tanh(x0(t) - x1(t-1)), inputs from a fixed generator. */
static void write_series(const char *name, int n, int T)
{
    FILE *f = fopen(path(name), "w");
    cr_assert_not_null(f);
    fprintf(f, "x[0],x[1],y\n");
    unsigned s = 12345;
    for (int q = 0; q < n; q++) {
        double prev = 0;
        for (int t = 0; t < T; t++) {
            s = s * 1103515245u + 12345u;
            double a = ((s >> 8) % 2000) / 1000.0 - 1;
            s = s * 1103515245u + 12345u;
            double b = ((s >> 8) % 2000) / 1000.0 - 1;
            fprintf(f, "%.3f,%.3f,%.6f\n", a, b, tanh(a - prev) * 0.8);
            prev = b;
        }
        fprintf(f, "\n");
    }
    fclose(f);
}

static void write_text(const char *name)
{
    FILE *f = fopen(path(name), "w");
    cr_assert_not_null(f);
    static const char *const words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "saw", "dog", "ran"};
    unsigned s = 7;
    for (int i = 0; i < 400; i++) {
        s = s * 1103515245u + 12345u;
        fprintf(f, "%s%s", words[(s >> 16) % 10], i % 9 == 8 ? ".\n" : " ");
    }
    fclose(f);
}

/* The parameters two checkpoints hold (read through the library) are the
 * same, bit for bit. */
static int same_file(const char *a, const char *b)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_real *v[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    const char *names[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        tg_checkpoint *c = tg_checkpoint_open(ctx, path(names[i]));
        tg_model *m = c ? tg_checkpoint_model(c, NULL, 0) : NULL;
        tg_params *ps = m ? tg_params_new(ctx) : NULL;
        if (ps && tg_checkpoint_params(c, m, ps, 0) == TG_OK) {
            n[i] = tg_params_total(ps);
            v[i] = malloc(n[i] * sizeof(tg_real));
            memcpy(v[i], tg_params_values(ps), n[i] * sizeof(tg_real));
        }
        tg_params_free(ps);
        tg_model_free(m);
        tg_checkpoint_close(c);
    }
    int same = v[0] && v[1] && n[0] == n[1] && !memcmp(v[0], v[1], n[0] * sizeof(tg_real));
    free(v[0]), free(v[1]);
    tg_ctx_free(ctx);
    return same;
}

/* The loss column of a CSV log: first and last row. */
static int log_losses(const char *name, double *first, double *last)
{
    FILE *f = fopen(path(name), "r");
    if (!f) return 0;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long step;
        int epoch;
        double loss;
        if (sscanf(line, "%llu,%d,%lf", &step, &epoch, &loss) == 3) {
            if (!n) *first = loss;
            *last = loss;
            n++;
        }
    }
    fclose(f);
    return n;
}

Test(train, the_loss_decreases_over_50_steps)
{
    const char *data = path("seed.yaml");
    write_file("seed.yaml", "x: [[1, 0], [0.5, -0.2], [0, 1]]\ny: [1, -1, 1]\n");
    int rc = TOOL("train", model("elman.yaml"), "--data", data, "--epochs", "50", "--optimizer", "sgd", "--lr",
                  "0.05", "--log", "loss.csv", "--save", "fit.params");
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    double first = 0, last = 0;
    cr_assert_eq(log_losses("loss.csv", &first, &last), 50);
    cr_assert_lt(last, 0.5 * first, "loss went from %g to %g", first, last);
    cr_assert(strstr(out, "trained elman: 50 steps"), "%s", out);
    /* the saved params feed `tapegrad run` */
    rc = TOOL("run", model("elman.yaml"), "--data", data, "--params", "fit.params");
    cr_assert_eq(rc, 0, "run --params of the trained file: exit %d: %s", rc, err);
}

Test(train, every_optimizer_lowers_the_loss_of_a_batched_series)
{
    write_series("s.csv", 8, 12);
    const char *which[] = {"sgd", "momentum", "adam", "rmsprop"};
    const char *lr[] = {"0.05", "0.02", "0.02", "0.005"};
    for (int i = 0; i < 4; i++) {
        int rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "25", "--batch", "4",
                      "--optimizer", which[i], "--lr", lr[i], "--clip", "5", "--log", "l.csv", "--quiet");
        cr_assert_eq(rc, 0, "%s: exit %d: %s", which[i], rc, err);
        double first = 0, last = 0;
        cr_assert_eq(log_losses("l.csv", &first, &last), 50, "%s", which[i]);
        cr_assert_lt(last, first, "%s: loss went from %g to %g", which[i], first, last);
        cr_assert_eq(out[0], 0, "--quiet printed: %s", out);
    }
}

Test(train, resume_gives_the_same_parameters_as_an_uninterrupted_run)
{
    write_series("s.csv", 6, 10);
    const char *common[] = {"--data", "s.csv", "--epochs", "6", "--batch", "4", "--bptt", "4", "--optimizer",
                            "adam", "--lr", "0.01", "--seed", "3", "--quiet"};
#define COMMON common[0], common[1], common[2], common[3], common[4], common[5], common[6], common[7], \
               common[8], common[9], common[10], common[11], common[12], common[13], common[14]
    int rc = TOOL("train", model("elman.yaml"), COMMON, "--save", "whole.params");
    cr_assert_eq(rc, 0, "%s", err);
    /* 6 epochs x (a batch of 4 + one of 2) x 3 chunks = 36 steps; stop at 17:
     * mid-epoch, mid-batch, with a carried state */
    rc = TOOL("train", model("elman.yaml"), COMMON, "--save", "part.params", "--steps", "17");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(!same_file("whole.params", "part.params"));
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--resume", "part.params", "--save", "part.params",
              "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(same_file("whole.params", "part.params"), "resumed parameters differ from the uninterrupted run");
#undef COMMON
}

Test(train, ctrl_c_saves_a_checkpoint_that_resumes_exactly)
{
    write_text("t.txt");
    const char *args[] = {"train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=24", "--epochs",
                          "400", "--bptt", "16", "--batch", "2", "--lr", "0.01", "--save-every", "50", "--quiet",
                          "--save", "a.params", NULL};
    pid_t pid = start(args);
    /* wait until it trains (its first checkpoint), then Ctrl-C */
    struct stat sb;
    for (int wait = 0; wait < 6000 && stat(path("a.params"), &sb) != 0; wait++) sleep_ms(5);
    sleep_ms(100);
    kill(pid, SIGINT);
    int rc = finish(pid);
    cr_assert_eq(rc, 130, "exit %d after SIGINT: %s", rc, err);
    cr_assert(strstr(err, "interrupted at step"), "%s", err);
    cr_assert(strstr(err, "--resume a.params"), "%s", err);
    cr_assert_eq(stat(path("a.params"), &sb), 0, "no checkpoint after Ctrl-C");
    /* what it saved resumes: run the rest and compare with one whole run */
    const char *step = strstr(err, "interrupted at step ");
    cr_assert_not_null(step);
    int stopped = atoi(step + 20);
    cr_assert_gt(stopped, 0);
    char upto[32];
    snprintf(upto, sizeof upto, "%d", stopped + 40);
    rc = TOOL("train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=24", "--resume", "a.params",
              "--save", "a.params", "--steps", upto, "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    rc = TOOL("train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=24", "--epochs", "400", "--bptt",
              "16", "--batch", "2", "--lr", "0.01", "--save", "b.params", "--steps", upto, "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(same_file("a.params", "b.params"), "interrupted at %d + resumed != one run of %s steps", stopped, upto);
}

/* A checkpoint is whole: the library opens it (magic, length, checksums). */
static int state_is_whole(const char *p)
{
    if (access(p, F_OK) != 0) return -1;
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_checkpoint *c = tg_checkpoint_open(ctx, p);
    int whole = c != NULL;
    if (!c) fprintf(stderr, "%s\n", tg_errmsg(ctx));
    tg_checkpoint_close(c);
    tg_ctx_free(ctx);
    return whole;
}

Test(train, checkpoints_survive_a_kill_in_the_middle_of_writing)
{
    write_text("t.txt");
    /* vocab of the text: the params file is checked with the library */
    static char text[1 << 16];
    slurp(path("t.txt"), text, sizeof text);
    int seen[256] = {0}, V = 0;
    for (char *c = text; *c; c++) V += !seen[(unsigned char)*c]++;
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_dim dims[] = {{"vocab", V}, {"hidden", 96}};
    tg_model *m = tg_model_load(ctx, model("char_rnn.yaml"), dims, 2);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK);

    srand(42);
    int checked = 0, kills = 0;
    struct timespec last_write = {0, 0};
    for (int round = 0; round < 12; round++) {
        /* a checkpoint after every step: most of the time goes to writing */
        const char *args[] = {"train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=96",
                              "--epochs", "1000", "--bptt", "8", "--save-every", "1", "--quiet", "--save",
                              "k.params", round ? "--resume" : NULL, "k.params", NULL};
        pid_t pid = start(args);
        /* once this run has written a checkpoint it is saving in a loop (a
         * slow or loaded machine takes a while to get there); then a kill at
         * a random moment */
        struct stat sb;
        for (int wait = 0; wait < 6000; wait++) {
            if (stat(path("k.params"), &sb) == 0 &&
                (sb.st_mtim.tv_sec != last_write.tv_sec || sb.st_mtim.tv_nsec != last_write.tv_nsec))
                break;
            sleep_ms(5);
        }
        if (stat(path("k.params"), &sb) == 0) last_write = sb.st_mtim;
        sleep_ms(rand() % 60);
        kill(pid, SIGKILL);
        int rc = finish(pid);
        kills += rc == 128 + SIGKILL;
        if (rc != 128 + SIGKILL) fprintf(stderr, "round %d: exit %d: %s\n", round, rc, err);
        int whole = state_is_whole(path("k.params"));
        cr_assert_neq(whole, -1, "round %d: no checkpoint was written", round);
        cr_assert_eq(whole, 1, "round %d: the training state is cut short", round);
        cr_assert_eq(tg_params_load(ps, m, path("k.params")), TG_OK, "round %d: %s", round, tg_errmsg(ctx));
        checked++;
    }
    cr_assert_gt(kills, 6);
    /* leftover temporary files show that kills did land in the middle of writes */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c 'tmp' > '%s/ntmp'", dir, dir);
    if (system(cmd) == -1) {}
    char ntmp[32];
    slurp(path("ntmp"), ntmp, sizeof ntmp);
    fprintf(stderr, "kill test: %d kills, %d checkpoints checked, %d killed mid-write\n", kills, checked, atoi(ntmp));
    /* and the last one resumes */
    int rc = TOOL("train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=96", "--resume", "k.params",
                  "--steps", "1", "--quiet");
    cr_assert(rc == 0, "exit %d: %s", rc, err);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

Test(train, a_checkpoint_of_another_model_or_shape_is_refused_clearly)
{
    write_series("s.csv", 2, 5);
    int rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--save", "e.params", "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    write_file("l.csv", "x[0],x[1],y[0],y[1]\n1,2,3,4\n0,1,0,1\n");
    rc = TOOL("train", model("lstm.yaml"), "--data", "l.csv", "--epochs", "2", "--save", "l.params", "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    rc = TOOL("train", model("lstm.yaml"), "--data", "l.csv", "--epochs", "4", "--dim", "hidden=3", "--resume",
              "l.params");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "parameter 'Wf' is [4, 6] in the checkpoint but [3, 5] in the model"), "%s", err);
    rc = TOOL("train", model("lstm.yaml"), "--data", "l.csv", "--epochs", "4", "--resume", "e.params");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "checkpoint is for model 'elman', not 'lstm'"), "%s", err);
    /* a checkpoint cut short is not taken for a whole one */
    static char st[1 << 16];
    FILE *f = fopen(path("e.params"), "rb");
    size_t n = fread(st, 1, sizeof st, f);
    fclose(f);
    f = fopen(path("cut.params"), "wb");
    fwrite(st, 1, n / 2, f);
    fclose(f);
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "4", "--resume", "cut.params");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "cut.params: truncated"), "%s", err);
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "4", "--resume", "none.params");
    cr_assert_eq(rc, 3);
    cr_assert(strstr(err, "none.params: No such file or directory"), "%s", err);
}

Test(train, truncated_bptt_equals_full_when_k_covers_the_sequence)
{
    write_series("s.csv", 1, 12);
    const char *base[] = {"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "30", "--lr", "0.02",
                          "--quiet", "--log"};
#define BASE base[0], base[1], base[2], base[3], base[4], base[5], base[6], base[7], base[8], base[9]
    cr_assert_eq(TOOL(BASE, "full.csv", "--save", "full.params"), 0, "%s", err);
    cr_assert_eq(TOOL(BASE, "k12.csv", "--save", "k12.params", "--bptt", "12"), 0, "%s", err);
    cr_assert_eq(TOOL(BASE, "k50.csv", "--save", "k50.params", "--bptt", "50"), 0, "%s", err);
    cr_assert(same_file("full.params", "k12.params"));
    cr_assert(same_file("full.params", "k50.params"));
    cr_assert_eq(TOOL(BASE, "k3.csv", "--save", "k3.params", "--bptt", "3"), 0, "%s", err);
    cr_assert(!same_file("full.params", "k3.params"), "--bptt 3 of 12 steps changed nothing");
    double first, last;
    cr_assert_eq(log_losses("k3.csv", &first, &last), 120, "4 chunks x 30 epochs");
    /* each chunk is 3 of 12 steps: compare whole epochs */
    FILE *f = fopen(path("k3.csv"), "r");
    char line[256];
    double e1 = 0, eN = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long s;
        int ep;
        double l;
        if (sscanf(line, "%llu,%d,%lf", &s, &ep, &l) == 3) {
            if (ep == 1) e1 += l;
            if (ep == 30) eN += l;
        }
    }
    fclose(f);
    cr_assert_lt(eN, e1, "truncated BPTT: epoch loss went from %g to %g", e1, eN);
#undef BASE
}

Test(train, shuffled_batches_are_reproducible_from_the_seed)
{
    write_series("s.csv", 8, 6);
    const char *base[] = {"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "5", "--batch", "3",
                          "--lr", "0.02", "--quiet", "--save"};
#define BASE base[0], base[1], base[2], base[3], base[4], base[5], base[6], base[7], base[8], base[9], base[10], \
             base[11]
    cr_assert_eq(TOOL(BASE, "a.params", "--seed", "5"), 0, "%s", err);
    cr_assert_eq(TOOL(BASE, "b.params", "--seed", "5"), 0, "%s", err);
    cr_assert_eq(TOOL(BASE, "c.params", "--seed", "6"), 0, "%s", err);
    cr_assert(same_file("a.params", "b.params"), "the same seed gave different runs");
    cr_assert(!same_file("a.params", "c.params"), "another seed gave the same run");
    /* the shuffling alone differs: the same initial params, another order */
    cr_assert_eq(TOOL(BASE, "d.params", "--seed", "5", "--params", "a.params"), 0, "%s", err);
    cr_assert_eq(TOOL(BASE, "e.params", "--seed", "6", "--params", "a.params"), 0, "%s", err);
    cr_assert(!same_file("d.params", "e.params"), "the batch order does not depend on the seed");
#undef BASE
}

Test(train, a_character_model_learns_saves_its_vocabulary_and_samples)
{
    write_text("t.txt");
    int rc = TOOL("train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=32", "--epochs", "15",
                  "--bptt", "16", "--batch", "4", "--lr", "0.01", "--clip", "5", "--save", "c.params", "--log",
                  "c.csv");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "nats per character"), "%s", out);
    double first, last;
    cr_assert_gt(log_losses("c.csv", &first, &last), 20);
    cr_assert_lt(last, first - 0.5, "loss %g -> %g", first, last);
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_checkpoint *ck = tg_checkpoint_open(ctx, path("c.params"));
    cr_assert_not_null(ck, "%s", tg_errmsg(ctx));
    const tg_vocab *v = tg_checkpoint_vocab(ck);
    cr_assert(v && tg_vocab_size(v) == 16 && tg_vocab_char(v, 0) == 10 && tg_vocab_char(v, 1) == 32 &&
              tg_vocab_char(v, 2) == 46 && tg_vocab_char(v, 3) == 97, "vocab not saved");
    tg_checkpoint_close(ck);
    tg_ctx_free(ctx);
    rc = TOOL("sample", "c.params", "--length", "200", "--seed", "2", "--temperature", "0.5");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(strlen(out), 200 + 1, "%zu chars: %s", strlen(out), out);
    for (char *c = out; *c; c++) cr_assert(strchr(" .\nthecatsonmdgwr", *c), "'%c' is not in the text", *c);
    static char first_sample[sizeof out];
    memcpy(first_sample, out, sizeof out);
    rc = TOOL("sample", "c.params", "--length", "200", "--seed", "2", "--temperature", "0.5");
    cr_assert_str_eq(out, first_sample, "the same seed must give the same sample");
    /* a text with a character the checkpoint does not know */
    write_file("u.txt", "the cat sat on the mat!\n");
    rc = TOOL("train", model("char_rnn.yaml"), "--data", "u.txt", "--dim", "hidden=32", "--epochs", "20",
              "--resume", "c.params");
    cr_assert_eq(rc, 3, "%s", err);
    cr_assert(strstr(err, "u.txt:1:23: character '!' (U+0021) is not in the vocabulary of 16 characters"), "%s", err);
    /* sample needs the vocabulary */
    rc = TOOL("sample", "missing.params");
    cr_assert_eq(rc, 3);
    cr_assert_str_eq(err, "missing.params: No such file or directory\n");
}

Test(train, bad_flags_get_clear_errors_and_a_nonzero_exit)
{
    write_series("s.csv", 1, 4);
    struct { const char *args[12]; int rc; const char *says; } cases[] = {
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--optimizer", "adamw"}, 2,
         "--optimizer must be one of sgd|momentum|adam|rmsprop|adagrad, not 'adamw'"},
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--lr", "-1"}, 2, "--lr needs a number"},
        {{"train", model("elman.yaml"), "--epochs", "2"}, 2, "--data FILE is required"},
        {{"train", model("elman.yaml"), "--data", "s.csv"}, 2, "--epochs N is required"},
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--plot", "loss.pdf"}, 2,
         "must end in .svg or .png"},
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--bacth", "2"}, 2,
         "did you mean '--batch'"},
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--nesterov"}, 2,
         "--nesterov goes with --optimizer momentum"},
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--batch", "0"}, 2, "--batch"},
        {{"train", model("elman.yaml"), "--data", "nope.csv", "--epochs", "2"}, 3, "nope.csv: cannot open"},
        {{"train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--dim", "vocab=3"}, 2,
         "no such dim"},
        {{"train", model("elman.yaml"), "--data", "t.txt", "--epochs", "2"}, 2, "dim named 'vocab'"},
    };
    write_file("t.txt", "abc abc\n");
    write_file("bad.csv", "x[0],y\n1,2\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = finish(start(cases[i].args));
        cr_assert_eq(rc, cases[i].rc, "case %zu: exit %d, expected %d: %s", i, rc, cases[i].rc, err);
        cr_assert(strstr(err, cases[i].says), "case %zu: '%s' not in: %s", i, cases[i].says, err);
    }
    int rc = TOOL("train", model("elman.yaml"), "--data", "bad.csv", "--epochs", "2");
    cr_assert_eq(rc, 3, "%s", err);
    cr_assert(strstr(err, "bad.csv:1: the header lacks input 'x'"), "%s", err);
}

Test(train, a_missing_gnuplot_is_a_warning_not_a_failure)
{
    write_series("s.csv", 1, 4);
    const char *tool = getenv("TG_TOOL");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && PATH=/nonexistent '%s' train '%s' --data s.csv --epochs 3 --plot l.svg "
             ">stdout 2>stderr", dir, tool, model("elman.yaml"));
    int rc = system(cmd);
    slurp(path("stderr"), err, sizeof err);
    cr_assert_eq(WEXITSTATUS(rc), 0, "%s", err);
    cr_assert(strstr(err, "warning: gnuplot is not installed"), "%s", err);
}

Test(train, outputs_are_checked_and_a_checkpoint_is_locked_before_any_work)
{
    write_series("s.csv", 2, 5);
    static char before[1 << 16];
    slurp(path("s.csv"), before, sizeof before);
    int rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--log", "s.csv");
    cr_assert_eq(rc, 2, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "tapegrad train: s.csv: is the same file as the input s.csv; refusing to overwrite it"), "%s",
              err);
    static char after[1 << 16];
    slurp(path("s.csv"), after, sizeof after);
    cr_assert_str_eq(before, after, "the data file was touched");
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--save", model("elman.yaml"));
    cr_assert_eq(rc, 2, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "is the same file as the input"), "%s", err);
    /* a second run saving to the same checkpoint is refused while the first holds it */
    write_text("t.txt");
    const char *args[] = {"train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=16", "--epochs", "400",
                          "--quiet", "--save", "a.ckpt", NULL};
    pid_t pid = start(args);
    struct stat sb;
    for (int wait = 0; wait < 6000 && stat(path("a.ckpt.lock"), &sb) != 0; wait++) sleep_ms(5);
    sleep_ms(50);
    pid_t pid2 = start((const char *[]){"train", model("char_rnn.yaml"), "--data", "t.txt", "--dim", "hidden=16",
                                         "--epochs", "1", "--save", "a.ckpt", NULL});
    int st;
    while (waitpid(pid2, &st, 0) < 0 && errno == EINTR) {}
    static char second[1 << 12];
    slurp(path("stderr"), second, sizeof second);
    kill(pid, SIGINT);
    finish(pid);
    cr_assert_eq(WEXITSTATUS(st), 2, "second run: exit %d: %s", WEXITSTATUS(st), second);
    cr_assert(strstr(second, "a.ckpt: another process is writing this file (lock a.ckpt.lock held)"), "%s", second);
}

Test(train, resume_without_save_saves_back_and_says_so)
{
    write_series("s.csv", 3, 5);
    int rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "3", "--save", "r.ckpt", "--steps", "4",
                  "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--resume", "r.ckpt");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "tapegrad train: no --save: saving back into r.ckpt"), "%s", err);
    cr_assert(strstr(out, "saved r.ckpt"), "%s", out);
    /* it holds the whole run now: going on has nothing left to do */
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--resume", "r.ckpt", "--format", "json");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "\"steps\": 0, \"total_steps\": 9, \"epochs\": 3,"), "%s", out);
}

Test(train, validation_patience_schedules_and_a_json_summary)
{
    write_series("s.csv", 10, 6);
    int rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "6", "--valid-split", "0.2", "--batch",
                  "2", "--schedule", "cosine", "--warmup", "2", "--accumulate", "2", "--reduction", "sum", "--log",
                  "l.csv", "--format", "json", "--save", "v.ckpt");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "{\"model\": \"elman\", \"steps\": 12, \"total_steps\": 12, \"epochs\": 6, \"loss\": ") == out,
              "%s", out);
    cr_assert(strstr(out, "\"valid_loss\": ") && !strstr(out, "\"valid_loss\": null"), "%s", out);
    cr_assert(strstr(out, "\"end\": \"epochs\", \"saved\": \"v.ckpt\"}\n"), "%s", out);
    static char log[1 << 16];
    slurp(path("l.csv"), log, sizeof log);
    cr_assert(strstr(log, "step,epoch,loss,grad_norm,seconds,lr,valid_loss\n") == log, "%s", log);
    /* warm-up: lr 0.0005 then 0.001; every epoch's last row has the validation loss */
    char *row2 = strchr(strchr(log, '\n') + 1, '\n') + 1;
    cr_assert(strstr(log, ",0.0005,\n"), "%s", log);
    cr_assert(!strncmp(row2, "2,1,", 4) && strstr(row2, ",0.001,") && strchr(row2, '\n')[-1] != ',',
              "the first epoch's second (last) step has the lr and the validation loss: %s", row2);
    /* --patience stops once the validation loss no longer improves */
    rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "500", "--valid-split", "0.2", "--lr",
              "1", "--optimizer", "sgd", "--patience", "2");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "(no better validation loss: --patience; kept the best)"), "%s", out);
    cr_assert(strstr(out, "validation loss "), "%s", out);
}

Test(train, text_from_standard_input_as_utf8_characters)
{
    write_file("u.txt", "héllo wörld, ça va? héllo wörld, ça va?\n");
    const char *tool = getenv("TG_TOOL");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' train '%s' --data - --dim hidden=8 --epochs 2 --bptt 8 < u.txt "
             ">stdout 2>stderr", dir, tool, model("char_rnn.yaml"));
    int rc = system(cmd);
    slurp(path("stderr"), err, sizeof err);
    cr_assert_eq(WEXITSTATUS(rc), 0, "%s", err);
    cr_assert(strstr(err, "train char_rnn on -: 40 characters, vocabulary 15,"), "%s", err);
}

/* The tool on a pseudo-terminal `cols` wide: every redraw of the progress
 * line fits in it. */
Test(train, the_progress_line_fits_a_40_column_terminal)
{
    write_text("t.txt");
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert_geq(master, 0);
    cr_assert_eq(grantpt(master), 0);
    cr_assert_eq(unlockpt(master), 0);
    const char *slave_name = ptsname(master);
    struct winsize ws = {.ws_row = 24, .ws_col = 40};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int s = open(slave_name, O_RDWR);
        if (s < 0 || ioctl(s, TIOCSWINSZ, &ws) < 0 || dup2(s, 2) < 0 || chdir(dir) != 0) _exit(126);
        int o = open("/dev/null", O_WRONLY);
        dup2(o, 1);
        execl(getenv("TG_TOOL"), getenv("TG_TOOL"), "train", model("char_rnn.yaml"), "--data", "t.txt", "--dim",
              "hidden=16", "--epochs", "30", "--valid-split", "0.1", (char *)NULL);
        _exit(127);
    }
    static char buf[1 << 20];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(master, buf + n, sizeof buf - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    int st;
    waitpid(pid, &st, 0);
    close(master);
    cr_assert_eq(WEXITSTATUS(st), 0, "%s", buf);
    int lines = 0;
    for (char *p = strstr(buf, "\r\033[K"); p; p = strstr(p + 1, "\r\033[K")) {
        char *e = p + 4;
        size_t len = strcspn(e, "\r\n");
        cr_assert_lt(len, 40, "a progress line of %zu columns: %.*s", len, (int)len, e);
        lines++;
    }
    cr_assert_gt(lines, 0, "no progress line on the terminal: %s", buf);
}

Test(train, data_is_read_safely_a_fifo_utf16_and_bad_csv_are_refused_by_position)
{
    cr_assert_eq(mkfifo(path("fifo.txt"), 0600), 0);
    int rc = TOOL("train", model("char_rnn.yaml"), "--data", "fifo.txt", "--epochs", "1");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "fifo.txt: cannot read the text: it is a FIFO, not a regular file"), "%s", err);
    FILE *f = fopen(path("w.txt"), "wb");
    fwrite("\xff\xfe" "a\0b\0c\0\n\0", 1, 10, f);
    fclose(f);
    rc = TOOL("train", model("char_rnn.yaml"), "--data", "w.txt", "--epochs", "1");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "w.txt: this file is UTF-16; save it as UTF-8"), "%s", err);
    f = fopen(path("n.csv"), "wb");
    fwrite("x[0],x[1],y\n1,2,3\n4,5\0,6\n", 1, 25, f);
    fclose(f);
    rc = TOOL("train", model("elman.yaml"), "--data", "n.csv", "--epochs", "1");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "tapegrad train: n.csv:3:4: a NUL byte in CSV data"), "%s", err);
    write_file("i.csv", "x[0],x[1],y\n1,2,3\n4,inf,6\n");
    rc = TOOL("train", model("elman.yaml"), "--data", "i.csv", "--epochs", "1");
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "tapegrad train: i.csv:3:3: 'inf' is not a finite number"), "%s", err);
}

/* A full disk (a 16 KiB tmpfs; mounting needs root, as CI runs): the log's
 * buffered rows fail at its close, the checkpoint at its save; both exit 4
 * with the reason, and no temporary is left on the disk. */
Test(train, a_full_disk_fails_the_log_and_the_checkpoint_clearly)
{
    cr_assert_eq(mkdir(path("fs"), 0755), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=16k tmpfs %s 2>/dev/null", path("fs"));
    if (system(cmd) != 0) cr_skip_test("cannot mount a small tmpfs here (needs root)");
    write_series("s.csv", 2, 5);
    int rc = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "3000", "--quiet", "--log", "fs/log.csv");
    int rc2 = TOOL("train", model("elman.yaml"), "--data", "s.csv", "--epochs", "2", "--quiet", "--dim", "hidden=64",
                   "--save", "fs/x.ckpt");
    static char err2[1 << 12];
    snprintf(err2, sizeof err2, "%s", err);
    DIR *dp = opendir(path("fs"));
    int temps = 0;
    for (struct dirent *e; dp && (e = readdir(dp));) temps += strstr(e->d_name, ".tmp.") != NULL;
    if (dp) closedir(dp);
    snprintf(cmd, sizeof cmd, "umount %s", path("fs"));
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(rc, 4, "log: exit %d", rc);
    cr_expect_eq(rc2, 4, "save: exit %d: %s", rc2, err2);
    cr_expect(strstr(err2, "No space left on device") || strstr(err2, "no space"), "%s", err2);
    cr_expect_eq(temps, 0, "temporaries left on the full disk");
}
