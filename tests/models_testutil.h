/* models_testutil.h — what test_models.c and test_cli.c share: finding the
 * repository, reading files, running the tool, listing the malformed-model corpus, and an
 * independent reference for the lecture's example (plain double C of the
 * slides' formulas, forward and hand-written BPTT, no tapegrad). */
#ifndef MODELS_TESTUTIL_H
#define MODELS_TESTUTIL_H

#include <criterion/criterion.h>
#include <tapegrad.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>

/* Criterion counts a test as passed even when LeakSanitizer flags its worker
 * at exit (and ignores assertions in a suite's fini), so under ASan every
 * test here ends with a leak check inside the test: declare tests with
 * MT_TEST(suite, name, options...) instead of Test(). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
static inline void mt_leak_check(void)
{
    cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see above)");
}
#else
static inline void mt_leak_check(void) {}
#endif
#define MT_TEST(suite, name, ...)                                                  \
    static void suite##_##name##_body(void);                                       \
    Test(suite, name, ##__VA_ARGS__)                                               \
    {                                                                              \
        suite##_##name##_body();                                                   \
        mt_leak_check();                                                           \
    }                                                                              \
    static void suite##_##name##_body(void)

/* Every test runs from the repository root (the Makefile sets TG_ROOT). */
static inline void mt_chdir_root(void)
{
    const char *root = getenv("TG_ROOT");
    if (root) cr_assert_eq(chdir(root), 0, "cannot chdir to TG_ROOT=%s", root);
}

/* The whole file, NUL-terminated (free()), or NULL. */
static inline char *mt_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* ---- running the tool -------------------------------------------------------------------- */
typedef struct mt_result {
    int code;        /* exit status; -signal if killed */
    char *out, *err; /* free() */
} mt_result;

static inline void mt_result_free(mt_result *r)
{
    free(r->out);
    free(r->err);
}

/* Runs the tool (TG_TOOL) with args (NULL-terminated) from the repository
 * root, stdin from /dev/null, capturing stdout and stderr. */
static inline mt_result mt_tool(const char *const *args)
{
    mt_chdir_root();
    const char *path = getenv("TG_TOOL");
    cr_assert(path, "TG_TOOL is not set (run through make test)");
    char out_path[] = "/tmp/tgcli-outXXXXXX", err_path[] = "/tmp/tgcli-errXXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path);
    cr_assert(fo >= 0 && fe >= 0);
    const char *argv[40] = {path};
    int n = 1;
    while (n < 39 && args[n - 1]) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    close(fo);
    close(fe);
    mt_result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    r.out = mt_read(out_path, NULL);
    r.err = mt_read(err_path, NULL);
    unlink(out_path);
    unlink(err_path);
    cr_assert(r.out && r.err);
    return r;
}

static int mt_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted paths "DIR/NAME" of the files in dir ending in ext; free with
 * mt_free_list. */
static inline int mt_list(const char *dir, const char *ext, char ***out)
{
    DIR *d = opendir(dir);
    int n = 0, cap = 16;
    char **v = malloc((size_t)cap * sizeof *v);
    struct dirent *e;
    size_t le = strlen(ext);
    while (d && v && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l <= le || strcmp(e->d_name + l - le, ext)) continue;
        if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        size_t need = strlen(dir) + l + 2;
        v[n] = malloc(need);
        snprintf(v[n], need, "%s/%s", dir, e->d_name);
        n++;
    }
    if (d) closedir(d);
    qsort(v, (size_t)n, sizeof *v, mt_cmp);
    *out = v;
    return n;
}

static inline void mt_free_list(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ---- the lecture's example, computed independently --------------------------- */
typedef struct mt_seed_grads {
    double loss, U[2][2], W[2][2], b[2], V[2], c;
} mt_seed_grads;

static const double mt_X[3][2] = {{1, 0}, {0.5, -0.2}, {0, 1}};
static const double mt_Y[3] = {1, -1, 1};
static const double mt_U[2][2] = {{0.5, -0.3}, {0.2, 0.8}};
static const double mt_W[2][2] = {{0.1, -0.4}, {0.6, 0.3}};
static const double mt_b[2] = {0.05, -0.1};
static const double mt_V[2] = {0.7, -0.5};
static const double mt_c = 0.2;

/* h(t) = tanh(U x + W h(t-1) + b), o = tanh(V h + c), L = sum (y - o)^2,
 * and its gradients by back-propagation through time written out by hand. */
static inline void mt_seed_reference(mt_seed_grads *g)
{
    double h[4][2] = {{0, 0}}, o[3];
    memset(g, 0, sizeof *g);
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < 2; i++)
            h[t + 1][i] = tanh(mt_U[i][0] * mt_X[t][0] + mt_U[i][1] * mt_X[t][1] + mt_W[i][0] * h[t][0] +
                               mt_W[i][1] * h[t][1] + mt_b[i]);
        o[t] = tanh(mt_V[0] * h[t + 1][0] + mt_V[1] * h[t + 1][1] + mt_c);
        g->loss += (mt_Y[t] - o[t]) * (mt_Y[t] - o[t]);
    }
    double dh_next[2] = {0, 0};
    for (int t = 2; t >= 0; t--) {
        double dz = -2 * (mt_Y[t] - o[t]) * (1 - o[t] * o[t]);
        g->c += dz;
        double dh[2], da[2];
        for (int i = 0; i < 2; i++) {
            g->V[i] += dz * h[t + 1][i];
            dh[i] = mt_V[i] * dz + dh_next[i];
            da[i] = dh[i] * (1 - h[t + 1][i] * h[t + 1][i]);
        }
        for (int i = 0; i < 2; i++) {
            g->b[i] += da[i];
            for (int j = 0; j < 2; j++) {
                g->U[i][j] += da[i] * mt_X[t][j];
                g->W[i][j] += da[i] * h[t][j];
            }
        }
        for (int j = 0; j < 2; j++) dh_next[j] = mt_W[0][j] * da[0] + mt_W[1][j] * da[1];
    }
}

/* float32 agreement: relative to max(1, |want|) */
static inline int mt_close(double got, double want, double tol)
{
    return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

/* Loads path with every dim shrunk to at most 3 (keeping the file's dims if
 * the model does not allow that, e.g. a literal init). */
static inline tg_model *mt_load_small(tg_ctx *ctx, const char *path)
{
    tg_model *m = tg_model_load(ctx, path, NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_dim dims[32];
    int n = 0;
    for (int i = 0; i < tg_model_count(m, TG_ROLE_DIM) && n < 32; i++) {
        int v;
        const char *name = tg_model_var(m, TG_ROLE_DIM, i, &v, NULL);
        if (v > 3) dims[n++] = (tg_dim){name, 3};
    }
    tg_model *small = n ? tg_model_load(ctx, path, dims, n) : NULL;
    if (small) {
        tg_model_free(m);
        return small;
    }
    return m;
}

#endif
