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
        {"", "size '': it is empty"},
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
            snprintf(want, sizeof want, "tapegrad %s: --memory: %s%sTry 'tapegrad %s --help'.\n", cmds[c],
                     cases[i].why, tail, cmds[c]);
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
