/* test_cli.c — the `tapegrad` tool as a person runs it: grad on the
 * lecture's data against an independent computation (and examples/seed_bptt),
 * check on every shipped model, run, help and usage errors with their exit
 * codes, and the malformed-model corpus with its exact messages. */
#include <fcntl.h>
#include <sys/wait.h>
#include "models_testutil.h"

#define FLOAT_TOL 1e-5 /* float32 precision, relative to max(1, |x|) */

/* ---- a tiny JSON reader for the numbers under a key ------------------------------- */
/* The numbers of the value that follows "key": (a number or nested lists),
 * in order; returns how many. */
static int json_numbers(const char *json, const char *key, double *out, int max)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    if (!p) return -1;
    p += strlen(pat);
    int depth = 0, n = 0;
    do {
        if (*p == '[') depth++, p++;
        else if (*p == ']') depth--, p++;
        else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char *end;
            double v = strtod(p, &end);
            if (n < max) out[n] = v;
            n++;
            p = end;
        } else if (*p == 0) return -1;
        else p++;
    } while (depth > 0);
    return n;
}

static void expect_json(const char *json, const char *key, const double *want, int n)
{
    double got[16];
    cr_assert_eq(json_numbers(json, key, got, 16), n, "%s in %s", key, json);
    for (int i = 0; i < n; i++)
        cr_expect(mt_close(got[i], want[i], FLOAT_TOL), "%s[%d] = %.9g, want %.9g", key, i, got[i], want[i]);
}

#define SEED_ARGS "models/elman.yaml", "--data", "examples/data/seed.yaml", "--params", "examples/data/seed-params.yaml"

/* The acceptance test: the lecture's network from YAML, the lecture's
 * data and weights, against the slides' formulas computed independently. */
MT_TEST(cli, grad_elman_seed_matches_reference)
{
    const char *args[] = {"grad", SEED_ARGS, "--format", "json", NULL};
    mt_result r = mt_tool(args);
    cr_assert_eq(r.code, 0, "stderr: %s", r.err);
    cr_expect_str_empty(r.err);
    mt_seed_grads g;
    mt_seed_reference(&g);
    expect_json(r.out, "loss", &g.loss, 1);
    expect_json(r.out, "U", &g.U[0][0], 4);
    expect_json(r.out, "W", &g.W[0][0], 4);
    expect_json(r.out, "b", g.b, 2);
    expect_json(r.out, "V", g.V, 2);
    expect_json(r.out, "c", &g.c, 1);
    /* the declared shapes: U nested, b flat */
    cr_expect(strstr(r.out, "\"U\": [["), "%s", r.out);
    cr_expect(strstr(r.out, "\"b\": [") && !strstr(r.out, "\"b\": [["), "%s", r.out);
    mt_result_free(&r);
}

/* ... and against the hand-written tape of examples/seed_bptt. */
MT_TEST(cli, grad_elman_seed_matches_seed_bptt)
{
    const char *ex = getenv("TG_EXAMPLES");
    char path[4096];
    snprintf(path, sizeof path, "%s/seed_bptt", ex ? ex : "");
    if (!ex || access(path, X_OK) != 0) cr_skip_test("examples/seed_bptt is not built");
    FILE *p = popen(path, "r");
    cr_assert(p);
    char line[512];
    double loss = NAN, tape[13];
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        double v;
        if (sscanf(line, "loss L = %lf", &v) == 1) loss = v;
        const char *t = strstr(line, " tape ");
        if (t && strstr(line, "dL/d") && n < 13) tape[n++] = strtod(t + 6, NULL);
    }
    cr_expect_eq(pclose(p), 0);
    cr_assert_eq(n, 13, "seed_bptt printed %d gradients", n);
    const char *args[] = {"grad", SEED_ARGS, "--format", "json", NULL};
    mt_result r = mt_tool(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    expect_json(r.out, "loss", &loss, 1);
    expect_json(r.out, "U", tape, 4);
    expect_json(r.out, "W", tape + 4, 4);
    expect_json(r.out, "b", tape + 8, 2);
    expect_json(r.out, "V", tape + 10, 2);
    expect_json(r.out, "c", tape + 12, 1);
    mt_result_free(&r);
}

MT_TEST(cli, grad_text_and_run)
{
    const char *args[] = {"grad", SEED_ARGS, NULL};
    mt_result r = mt_tool(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "loss 3.92886", 12) == 0, "%s", r.out);
    cr_expect(strstr(r.out, "dL/dU [2, 2]\n"), "%s", r.out);
    cr_expect(strstr(r.out, "dL/dc [1]\n"), "%s", r.out);
    mt_result_free(&r);

    const char *run[] = {"run", SEED_ARGS, NULL};
    r = mt_tool(run);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "step 1  o = 0.4625"), "%s", r.out);
    cr_expect(strstr(r.out, "step 3  o = -0.3497"), "%s", r.out);
    cr_expect(strstr(r.out, "loss 3.92886"), "%s", r.out);
    mt_result_free(&r);

    const char *json[] = {"run", SEED_ARGS, "--format=json", NULL};
    r = mt_tool(json);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "{\"sequences\": [{\"steps\": [{\"o\": [[0.4625", 40) == 0, "%s", r.out);
    mt_result_free(&r);
}

/* dump shows every operator; --fused shows the tape training records, with
 * each h = tanh(U @ x + W @ h + b) one affine_block entry of the same value
 * and gradient, reading U @ x + b from one stack_affine over all steps */
MT_TEST(cli, dump_fused_shows_the_training_tape)
{
    const char *plain[] = {"dump", SEED_ARGS, "--grads", NULL};
    const char *fused[] = {"dump", SEED_ARGS, "--grads", "--fused", NULL};
    mt_result a = mt_tool(plain), b = mt_tool(fused);
    cr_assert_eq(a.code, 0, "%s", a.err);
    cr_assert_eq(b.code, 0, "%s", b.err);
    cr_expect(strstr(a.out, "tapegrad tape of models/elman.yaml: 36 entries"), "%s", a.out);
    cr_expect(strstr(b.out, "tapegrad tape of models/elman.yaml: 19 entries"), "%s", b.out);
    cr_expect(!strstr(a.out, " affine "), "%s", a.out);
    const char *want[] = {"h[t=3]    models/elman.yaml:21:9", "[2,1] val=[-0.2748,0.7456] ", " grad=[-1.658,1.185]"};
    for (int i = 0; i < 3; i++) {
        cr_expect(strstr(a.out, want[i]), "%s", a.out);
        cr_expect(strstr(b.out, want[i]), "%s", b.out);
    }
    cr_expect(strstr(b.out, "affine_block  h[t=3]"), "%s", b.out);
    cr_expect(strstr(b.out, "stack_affine  h  "), "%s", b.out);
    cr_expect(strstr(a.out, "tanh          h[t=3]"), "%s", a.out);
    mt_result_free(&a);
    mt_result_free(&b);
}

/* tapegrad check on every shipped model, random data, batch 1 and 4 */
MT_TEST(cli, check_every_shipped_model, .timeout = 120)
{
    mt_chdir_root();
    char **paths;
    int n = mt_list("models", ".yaml", &paths);
    for (int i = 0; i < n; i++) {
        /* other engineers' big models are checked small */
        const char *small[] = {"check", paths[i], "--steps", "6", "--batch", "4", "--dim", "vocab=3", "--dim",
                               "hidden=3", NULL};
        const char *plain[] = {"check", paths[i], "--steps", "6", "--batch", "4", NULL};
        int big = strstr(paths[i], "char") != NULL;
        mt_result r = mt_tool(big ? small : plain);
        cr_expect_eq(r.code, 0, "%s: %s%s", paths[i], r.out, r.err);
        cr_expect(strstr(r.out, ": ok\n"), "%s: %s", paths[i], r.out);
        mt_result_free(&r);
    }
    mt_free_list(paths, n);
    const char *args[] = {"check", "models/elman.yaml", "--steps", "50", "--batch", "1", NULL};
    mt_result r = mt_tool(args);
    cr_expect_eq(r.code, 0, "%s%s", r.out, r.err);
    mt_result_free(&r);
}

MT_TEST(cli, check_reports_failure_with_exit_1)
{
    const char *args[] = {"check", "models/elman.yaml", "--steps", "5", "--tol", "1e-15", NULL};
    mt_result r = mt_tool(args);
    cr_expect_eq(r.code, 1, "%s%s", r.out, r.err);
    cr_expect(strstr(r.out, ": FAILED\n"), "%s", r.out);
    cr_expect(strstr(r.err, "exceeds"), "%s", r.err);
    mt_result_free(&r);
}

MT_TEST(cli, help_and_usage_errors)
{
    static const char *cmds[] = {"grad", "check", "run"};
    for (int i = 0; i < 3; i++) {
        const char *args[] = {cmds[i], "--help", NULL};
        mt_result r = mt_tool(args);
        cr_expect_eq(r.code, 0);
        char want[64];
        snprintf(want, sizeof want, "usage: tapegrad %s MODEL", cmds[i]);
        cr_expect(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
        cr_expect(strstr(r.out, "exit status:"), "%s", r.out);
        mt_result_free(&r);
    }
    const char *top[] = {"--help", NULL};
    mt_result r = mt_tool(top);
    cr_expect_eq(r.code, 0);
    cr_expect(strstr(r.out, "  grad ") && strstr(r.out, "  check ") && strstr(r.out, "  run "), "%s", r.out);
    mt_result_free(&r);

    static const struct { const char *args[8]; const char *err; } bad[] = {
        {{"grad", "models/elman.yaml", "--dta", "x.yaml", NULL},
         "tapegrad grad: unknown option '--dta' (did you mean '--data'?)\nTry 'tapegrad grad --help'.\n"},
        {{"grad", "models/elman.yaml", NULL}, "tapegrad grad: --data is required\nTry 'tapegrad grad --help'.\n"},
        {{"grad", NULL},
         "tapegrad grad: missing argument: usage: tapegrad grad MODEL --data DATA [--params PARAMS] "
         "[--format text|json] [options]\nTry 'tapegrad grad --help'.\n"},
        {{"run", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--format", "xml", NULL},
         "tapegrad run: --format must be one of text|json, not 'xml'\nTry 'tapegrad run --help'.\n"},
        {{"check", "models/elman.yaml", "--steps", "0", NULL},
         "tapegrad check: --steps needs a whole number from 1 to 100000, not '0'\nTry 'tapegrad check --help'.\n"},
        {{"check", "models/lstm.yaml", "--dim", "hiden=3", NULL},
         "models/lstm.yaml: cannot set dim 'hiden': the model has no such dim (did you mean 'hidden'?)\n"},
        {{"check", "a.yaml", "b.yaml", NULL}, "tapegrad check: unexpected argument 'b.yaml'\nTry 'tapegrad check --help'.\n"},
        {{"grda", NULL}, "tapegrad: unknown command 'grda' (did you mean 'grad'?)\nTry 'tapegrad --help'.\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = mt_tool(bad[i].args);
        cr_expect_eq(r.code, 2, "case %zu: exit %d", i, r.code);
        cr_expect_str_eq(r.err, bad[i].err, "case %zu", i);
        mt_result_free(&r);
    }
    const char *version[] = {"--version", NULL};
    r = mt_tool(version);
    cr_expect_eq(r.code, 0);
    cr_expect(strncmp(r.out, "tapegrad ", 9) == 0);
    mt_result_free(&r);
}

/* Bad data and params files: exit 3 with the file's position. */
MT_TEST(cli, bad_data_and_params_files)
{
    const char *nodata[] = {"grad", "models/elman.yaml", "--data", "no/such.yaml", NULL};
    mt_result r = mt_tool(nodata);
    cr_expect_eq(r.code, 3);
    cr_expect_str_eq(r.err, "no/such.yaml: cannot open the data file: No such file or directory\n");
    mt_result_free(&r);
    /* the model file given as data */
    const char *wrong[] = {"grad", "models/elman.yaml", "--data", "models/elman.yaml", NULL};
    r = mt_tool(wrong);
    cr_expect_eq(r.code, 3);
    cr_expect_str_eq(r.err, "models/elman.yaml:8:1: 'name' is not an input or target of model elman\n");
    mt_result_free(&r);
    /* the data as params */
    const char *params[] = {"grad", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--params",
                            "examples/data/seed.yaml", NULL};
    r = mt_tool(params);
    cr_expect_eq(r.code, 3);
    cr_expect_str_eq(r.err, "examples/data/seed.yaml:2:1: model elman has no parameter 'x'\n");
    mt_result_free(&r);
    /* forward-only data has no targets: run works, grad says what is missing */
    char dir[] = "/tmp/tgcliXXXXXX";
    cr_assert(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/x.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs("x: [[1, 0], [0, 1]]\n", f);
    fclose(f);
    const char *run[] = {"run", "models/elman.yaml", "--data", path, NULL};
    r = mt_tool(run);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "step 2  o = "), "%s", r.out);
    mt_result_free(&r);
    const char *grad[] = {"grad", "models/elman.yaml", "--data", path, NULL};
    r = mt_tool(grad);
    cr_expect_eq(r.code, 3);
    char want[128];
    snprintf(want, sizeof want, "%s: the data has no target 'y', which the loss needs\n", path);
    cr_expect_str_eq(r.err, want);
    mt_result_free(&r);
    unlink(path);
    rmdir(dir);
}

/* The malformed-model corpus through the tool: exit 3 and exactly the
 * expected message on stderr, nothing on stdout.  In three parts, so that
 * the test runner's jobs share the process start-ups. */
static void corpus_part(int part, int parts)
{
    mt_chdir_root();
    char **cases;
    int n = mt_list("tests/malformed", ".yaml", &cases);
    cr_assert_geq(n, 30);
    for (int i = part; i < n; i += parts) {
        char err[4096];
        snprintf(err, sizeof err, "%.*s.err", (int)(strlen(cases[i]) - 5), cases[i]);
        char *want = mt_read(err, NULL);
        cr_assert(want, "%s has no .err file", cases[i]);
        const char *args[] = {"check", cases[i], "--steps", "2", NULL};
        mt_result r = mt_tool(args);
        cr_expect_eq(r.code, 3, "%s: exit %d", cases[i], r.code);
        cr_expect_str_eq(r.err, want, "%s", cases[i]);
        cr_expect_str_empty(r.out, "%s", cases[i]);
        mt_result_free(&r);
        free(want);
    }
    mt_free_list(cases, n);
}

MT_TEST(cli, malformed_corpus_through_the_tool_1, .timeout = 60)
{
    corpus_part(0, 3);
}
MT_TEST(cli, malformed_corpus_through_the_tool_2, .timeout = 60)
{
    corpus_part(1, 3);
}
MT_TEST(cli, malformed_corpus_through_the_tool_3, .timeout = 60)
{
    corpus_part(2, 3);
}
