/* test_ckpt_kill.c — `kill -9` at random moments of a run that saves a checkpoint after
 * every step, 50 times (seeded): after each kill there is exactly one checkpoint, it
 * verifies whole (every section's checksum), it resumes (through the library here, and
 * through `tapegrad train --resume` in the next trial), its step never goes back; the only
 * other files are the run's lock sidecar and temporaries of killed runs, and once a run
 * has saved to the end none of those temporaries is left. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "ckpt_file.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tg-kill-XXXXXX");
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

TestSuite(ckpt_kill, .init = setup, .fini = teardown, .timeout = 120);

static const char *path(const char *name)
{
    static char buf[8][4096];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

/* Starts the tool in the test's directory (output to files there). */
static pid_t start(const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = getenv("TG_TOOL");
    for (; *args && n < 31; args++) argv[n++] = *args;
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

static int finish(pid_t pid, char *err, size_t len)
{
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    FILE *f = fopen(path("stderr"), "r");
    size_t n = f ? fread(err, 1, len - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The names in the test's directory other than the data and the tool's output, sorted
 * into one line "a b c". */
static void listing(char *out, size_t len)
{
    char names[64][256];
    int n = 0;
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "stdout") || !strcmp(e->d_name, "stderr") ||
            !strcmp(e->d_name, "seq.csv"))
            continue;
        snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strncat(out, " ", len - strlen(out) - 1);
        strncat(out, names[i], len - strlen(out) - 1);
    }
}

/* The checkpoint resumes: a trainer of its model takes its state, reports its step and
 * takes one more step.  Returns the step it had. */
static uint64_t resume_in_library(const char *ck, const char *data, int trial)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_checkpoint *c = tg_checkpoint_open(ctx, ck);
    cr_assert_not_null(c, "trial %d: %s", trial, tg_errmsg(ctx));
    tg_model *m = tg_checkpoint_model(c, NULL, 0);
    cr_assert_not_null(m, "trial %d: %s", trial, tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK);
    cr_assert_eq(tg_checkpoint_params(c, m, ps, 0), TG_OK, "trial %d: %s", trial, tg_errmsg(ctx));
    tg_train_opts o;
    cr_assert_eq(tg_checkpoint_opts(c, &o), TG_OK, "trial %d: %s", trial, tg_errmsg(ctx));
    tg_trainset *set = tg_trainset_load(ctx, m, data, NULL);
    cr_assert_not_null(set, "%s", tg_errmsg(ctx));
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_not_null(tr, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_set_data(tr, set, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_resume(tr, c), TG_OK, "trial %d: %s", trial, tg_errmsg(ctx));
    uint64_t step = tg_trainer_progress(tr)->step;
    cr_assert_eq(tg_trainer_step(tr), TG_OK, "trial %d: %s", trial, tg_errmsg(ctx));
    tg_trainer_free(tr);
    tg_trainset_free(set);
    tg_checkpoint_close(c);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    return step;
}

Test(ckpt_kill, fifty_kills_leave_one_whole_checkpoint_that_resumes)
{
    /* 4 sequences of 6 steps for elman.yaml: a step is tiny, so saving dominates */
    FILE *f = fopen(path("seq.csv"), "w");
    cr_assert_not_null(f);
    fprintf(f, "x[0],x[1],y\n");
    for (int q = 0; q < 4; q++) {
        if (q) fputc('\n', f);
        for (int t = 0; t < 6; t++) fprintf(f, "%d,%d,0.%d\n", (q + t) % 3 - 1, t % 2, (q * 7 + t) % 10);
    }
    fclose(f);
    char model[4096], err[8192], names[4096];
    snprintf(model, sizeof model, "%s/models/elman.yaml", getenv("TG_ROOT"));
    char ck[4096];
    snprintf(ck, sizeof ck, "%s", path("k.tgckpt"));

    /* until `tapegrad train --save` writes the one-file checkpoint, there is nothing to kill */
    const char *probe[] = {"train", model, "--data", "seq.csv", "--epochs", "1", "--quiet", "--save",
                           "probe.tgckpt", NULL};
    int prc = finish(start(probe), err, sizeof err);
    if (prc != 0 || !tgc_is_checkpoint(path("probe.tgckpt"))) {
        cr_skip_test("tapegrad train --save does not write a one-file checkpoint yet (exit %d: %s)", prc, err);
    }
    char rm[4200];
    snprintf(rm, sizeof rm, "rm -f '%s'*", path("probe.tgckpt"));
    cr_assert_eq(system(rm), 0);

    srand(20261129);
    uint64_t last_step = 0;
    struct timespec last_write = {0, 0};
    int kills = 0, mid_write = 0;
    for (int trial = 0; trial < 50; trial++) {
        const char *args[] = {"train", model, "--data", "seq.csv", "--epochs", "1000000", "--quiet",
                              "--save", "k.tgckpt", "--save-every", "1",
                              trial ? "--resume" : NULL, "k.tgckpt", NULL};
        pid_t pid = start(args);
        /* kill once this run has saved (its checkpoint is newer than the last one seen),
         * at a random moment of its save loop */
        struct stat sb;
        int saved = 0;
        for (int wait = 0; wait < 20000 && !saved; wait++) {
            saved = stat(ck, &sb) == 0 && (sb.st_mtim.tv_sec != last_write.tv_sec ||
                                            sb.st_mtim.tv_nsec != last_write.tv_nsec);
            if (!saved) {
                int st;
                if (waitpid(pid, &st, WNOHANG) == pid) {
                    cr_assert_fail("trial %d: the run ended before saving (status 0x%x)", trial, st);
                }
                sleep_us(500);
            }
        }
        cr_assert(saved, "trial %d: no checkpoint after 10 s", trial);
        last_write = sb.st_mtim;
        sleep_us(rand() % 4000);
        kill(pid, SIGKILL);
        int rc = finish(pid, err, sizeof err);
        cr_assert_eq(rc, 128 + SIGKILL, "trial %d: exit %d before the kill: %s", trial, rc, err);
        kills++;

        /* exactly one checkpoint; beside it only the lock and temporaries (of the killed run,
         * or of an earlier one when this run was killed before its save swept them) */
        listing(names, sizeof names);
        char tmp_prefix[64];
        snprintf(tmp_prefix, sizeof tmp_prefix, "k.tgckpt.tmp.%ld.", (long)pid);
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", names);
        int have_ck = 0;
        for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " ")) {
            if (!strcmp(tok, "k.tgckpt")) have_ck = 1;
            else if (!strncmp(tok, tmp_prefix, strlen(tmp_prefix))) mid_write++;
            else if (!strncmp(tok, "k.tgckpt.tmp.", 13)) continue;
            else cr_assert(!strcmp(tok, "k.tgckpt.lock"), "trial %d: a stray file '%s' in: %s", trial, tok, names);
        }
        cr_assert(have_ck, "trial %d: no checkpoint in: %s", trial, names);

        /* it verifies whole, and resumes where the run was (never before the last one) */
        tgc_file *cf;
        char msg[4400];
        cr_assert_eq(tgc_open(ck, &cf, msg, sizeof msg), TG_OK, "trial %d: %s", trial, msg);
        tgc_close(cf);
        uint64_t step = resume_in_library(ck, path("seq.csv"), trial);
        cr_assert_geq(step, last_step, "trial %d: the checkpoint went back from step %llu to %llu", trial,
                      (unsigned long long)last_step, (unsigned long long)step);
        cr_assert_gt(step, 0, "trial %d", trial);
        last_step = step;
    }
    /* a last run resumes through the tool and saves: every dead run's temporary is gone */
    char steps[32];
    snprintf(steps, sizeof steps, "%llu", (unsigned long long)last_step + 1);
    const char *args[] = {"train", model, "--data", "seq.csv", "--quiet", "--save", "k.tgckpt",
                          "--resume", "k.tgckpt", "--steps", steps, NULL};
    int rc = finish(start(args), err, sizeof err);
    cr_assert_eq(rc, 0, "the last resume: exit %d: %s", rc, err);
    listing(names, sizeof names);
    cr_assert(!strcmp(names, "k.tgckpt") || !strcmp(names, "k.tgckpt k.tgckpt.lock"),
              "after a save only the checkpoint (and a dead run's lock) stays: %s", names);
    cr_assert_eq(resume_in_library(ck, path("seq.csv"), 50), last_step + 1);
    fprintf(stderr, "ckpt_kill: %d kills, %d of them in the middle of a save, last step %llu\n", kills,
            mid_write, (unsigned long long)last_step);
}
