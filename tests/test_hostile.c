/* test_hostile.c — files and conditions an embedding program cannot trust:
 * every documented limit at its boundary (the limit passes, one more fails
 * with its exact message; docs/limits.md is the table), out-of-memory at
 * every allocation along load -> init -> data -> unroll -> backward ->
 * optimizer step -> save, and the regression cases the fuzzers found
 * (tests/fuzz/). */
#include <fcntl.h>
#include <sys/stat.h>
#include <tapegrad.h>
#include "tg_model_internal.h"
#include "models_testutil.h"
#include "failing_alloc.h"

/* ---- a growable string ------------------------------------------------------------ */
typedef struct sb {
    char *s;
    size_t len, cap;
} sb;

static void sb_put(sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = realloc(b->s, cap);
        cr_assert(b->s);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_add(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sb *b, const char *fmt, ...)
{
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof tmp);
    sb_put(b, tmp, (size_t)n);
}

/* n copies of s */
static void sb_rep(sb *b, const char *s, long n)
{
    for (long i = 0; i < n; i++) sb_put(b, s, strlen(s));
}

/* pads b with comment lines to exactly len bytes (b must end in a newline) */
static void sb_pad(sb *b, size_t len)
{
    cr_assert(b->len + 2 <= len);
    while (b->len < len) {
        size_t left = len - b->len, line = left > 100 ? 100 : left;
        if (left - line == 1) line--; /* never leave a single byte: it could not hold "#\n" */
        char buf[101];
        memset(buf, 'x', line);
        buf[0] = '#';
        buf[line - 1] = '\n';
        sb_put(b, buf, line);
    }
}

static tg_ctx *ctx_new(void)
{
    mt_chdir_root();
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    return ctx;
}

/* Parses a model; want NULL: it must load, else fail with exactly want. */
static void expect_model(tg_ctx *ctx, const char *text, size_t len, const char *want)
{
    tg_model *m = tg_model_parse(ctx, "t.yaml", text, len, NULL, 0);
    if (!want) cr_expect(m, "did not load: %s", tg_errmsg(ctx));
    else {
        cr_expect_null(m, "loaded, want: %s", want);
        if (!m) cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    tg_model_free(m);
}

static void expect_data(tg_ctx *ctx, const tg_model *m, const char *text, size_t len, const char *want)
{
    tg_dataset *d = tg_dataset_parse(ctx, m, "d.yaml", text, len);
    if (!want) cr_expect(d, "did not load: %s", tg_errmsg(ctx));
    else {
        cr_expect_null(d, "loaded, want: %s", want);
        if (!d) cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    tg_dataset_free(d);
}

/* the YAML layer alone, with the limits of data and params files */
static void expect_yaml(tg_ctx *ctx, const char *text, size_t len, const char *want)
{
    tgm_ydoc d;
    memset(&d, 0, sizeof d);
    tgm_ylimits lim = {TGM_MAX_DATA_BYTES, TGM_MAX_DEPTH, TGM_MAX_DATA_NODES};
    tg_status st = tgm_yaml_parse(&d, ctx, "y.yaml", text, len, &lim);
    if (!want) cr_expect_eq(st, TG_OK, "did not parse: %s", tg_errmsg(ctx));
    else {
        cr_expect_neq(st, TG_OK, "parsed, want: %s", want);
        if (st) cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    tgm_yaml_free(&d);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* A scratch directory for files; removed (with what is in it) by rm_dir. */
static void tmp_dir(char *buf, size_t len)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, len, "%s/tapegrad-hostile-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(buf), "mkdtemp");
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

#define SMALL_MODEL "inputs: {x: [2]}\nstep:\n  - h = tanh(x)\n"

/* ---- limits: file sizes -------------------------------------------------------------- */
MT_TEST(limits, model_file_size, .timeout = 60)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    sb_add(&b, SMALL_MODEL);
    sb_pad(&b, TGM_MAX_MODEL_BYTES);
    expect_model(ctx, b.s, b.len, NULL);
    sb_put(&b, "\n", 1);
    expect_model(ctx, b.s, b.len, "t.yaml:1:1: the file is larger than the limit of 1048576 bytes");
    char dir[256], path[300];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    write_file(path, b.s, b.len);
    cr_expect_null(tg_model_load(ctx, path, NULL, 0));
    char want[512];
    snprintf(want, sizeof want, "%s: the model file is larger than the limit of 1048576 bytes", path);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    write_file(path, b.s, b.len - 1);
    tg_model *m = tg_model_load(ctx, path, NULL, 0);
    cr_expect(m, "%s", tg_errmsg(ctx));
    tg_model_free(m);
    rm_dir(dir);
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, data_and_params_file_size, .timeout = 120)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "t.yaml", SMALL_MODEL, strlen(SMALL_MODEL), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    sb b = {0};
    sb_add(&b, "x: [[1, 2]]\n");
    sb_pad(&b, TGM_MAX_DATA_BYTES);
    expect_data(ctx, m, b.s, b.len, NULL);
    sb_put(&b, "\n", 1);
    expect_data(ctx, m, b.s, b.len, "d.yaml:1:1: the file is larger than the limit of 67108864 bytes");
    char dir[256], path[300], want[512];
    tmp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    write_file(path, b.s, b.len);
    cr_expect_null(tg_dataset_load(ctx, m, path));
    snprintf(want, sizeof want, "%s: the data file is larger than the limit of 67108864 bytes", path);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    tg_params *ps = tg_params_new(ctx);
    cr_expect_eq(tg_params_load(ps, m, path), TG_ERR_LIMIT);
    snprintf(want, sizeof want, "%s: the params file is larger than the limit of 67108864 bytes", path);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    /* at the limit, a params file is read (and this one, all comment, is refused for setting nothing) */
    b.s[0] = '#';
    write_file(path, b.s, b.len - 1);
    cr_expect_eq(tg_params_load(ps, m, path), TG_ERR_PARSE, "%s", tg_errmsg(ctx));
    snprintf(want, sizeof want, "%s:1:1: the params file is empty: it sets no parameter of model t", path);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    tg_params_free(ps);
    rm_dir(dir);
    free(b.s);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- limits: the YAML layer ------------------------------------------------------------ */
MT_TEST(limits, yaml_nesting_depth)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    sb_rep(&b, "[", TGM_MAX_DEPTH);
    sb_add(&b, "1");
    sb_rep(&b, "]", TGM_MAX_DEPTH);
    expect_yaml(ctx, b.s, b.len, NULL);
    b.len = 0;
    sb_rep(&b, "[", TGM_MAX_DEPTH + 1);
    sb_add(&b, "1");
    sb_rep(&b, "]", TGM_MAX_DEPTH + 1);
    expect_yaml(ctx, b.s, b.len, "y.yaml:1:17: nesting deeper than the limit of 16 levels");
    /* the same through a data file, in block style */
    tg_model *m = tg_model_parse(ctx, "t.yaml", SMALL_MODEL, strlen(SMALL_MODEL), NULL, 0);
    b.len = 0;
    sb_add(&b, "x:\n"); /* the mapping is the first level */
    for (int i = 1; i <= TGM_MAX_DEPTH; i++) {
        sb_rep(&b, "  ", i);
        sb_add(&b, "-\n");
    }
    sb_rep(&b, "  ", TGM_MAX_DEPTH + 1);
    sb_add(&b, "- 1\n");
    expect_data(ctx, m, b.s, b.len, "d.yaml:17:33: nesting deeper than the limit of 16 levels");
    free(b.s);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(limits, yaml_values_per_file, .timeout = 120)
{
#if defined(__SANITIZE_ADDRESS__)
    /* 4M nodes take 20 s under ASan; the float and double builds test this */
    cr_skip_test("slow under ASan; run in the float and double builds");
#endif
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    /* one list and TGM_MAX_DATA_NODES - 1 numbers */
    sb_add(&b, "[0");
    sb_rep(&b, ",0", TGM_MAX_DATA_NODES - 2);
    sb_add(&b, "]");
    expect_yaml(ctx, b.s, b.len, NULL);
    b.len -= 1;
    sb_add(&b, ",0]");
    expect_yaml(ctx, b.s, b.len, "y.yaml:1:8388608: too many values: the limit is 4194304 YAML nodes per file");
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, keys_per_mapping)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    for (int i = 0; i < TGM_MAX_KEYS; i++) sb_add(&b, "k%d: 0\n", i);
    expect_yaml(ctx, b.s, b.len, NULL);
    sb_add(&b, "k%d: 0\n", TGM_MAX_KEYS);
    expect_yaml(ctx, b.s, b.len, "y.yaml:1:1: more than 4096 keys in one mapping");
    free(b.s);
    tg_ctx_free(ctx);
}

/* ---- limits: model files --------------------------------------------------------------- */
MT_TEST(limits, entries_per_section)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    sb_add(&b, "dims:\n");
    for (int i = 0; i < TGM_MAX_DECLS; i++) sb_add(&b, "  d%d: 1\n", i);
    sb_add(&b, SMALL_MODEL);
    expect_model(ctx, b.s, b.len, NULL);
    b.len = 0;
    sb_add(&b, "dims:\n");
    for (int i = 0; i <= TGM_MAX_DECLS; i++) sb_add(&b, "  d%d: 1\n", i);
    sb_add(&b, SMALL_MODEL);
    expect_model(ctx, b.s, b.len, "t.yaml:2:3: more than 256 entries in 'dims'");
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, equations_in_step)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    sb_add(&b, "inputs: {x: [2]}\nstep:\n");
    for (int i = 0; i < TGM_MAX_EQUATIONS; i++) sb_add(&b, "  - e%d = tanh(x)\n", i);
    expect_model(ctx, b.s, b.len, NULL);
    sb_add(&b, "  - e%d = tanh(x)\n", TGM_MAX_EQUATIONS);
    expect_model(ctx, b.s, b.len, "t.yaml:3:3: more than the limit of 1024 equations in 'step'");
    free(b.s);
    tg_ctx_free(ctx);
}

/* a loss "sum(x + ... + x   )" of exactly len characters */
static void loss_of_length(sb *b, size_t len)
{
    size_t base = b->len;
    sb_add(b, "sum(x");
    while (b->len - base + 4 + 1 <= len) sb_add(b, " + x");
    while (b->len - base + 1 < len) sb_add(b, " ");
    sb_add(b, ")");
}

MT_TEST(limits, equation_length)
{
    tg_ctx *ctx = ctx_new();
    sb eq = {0};
    /* "h = x + x + ... + x" of exactly TGM_MAX_EQ_LEN characters (spaces pad it) */
    sb_add(&eq, "h = x");
    while (eq.len + 4 <= TGM_MAX_EQ_LEN) sb_add(&eq, " + x");
    while (eq.len < TGM_MAX_EQ_LEN) sb_add(&eq, " ");
    cr_assert_eq(eq.len, TGM_MAX_EQ_LEN);
    sb b = {0};
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - '");
    sb_put(&b, eq.s, eq.len);
    sb_add(&b, "'\nloss: '");
    loss_of_length(&b, TGM_MAX_EQ_LEN);
    sb_add(&b, "'\n");
    expect_model(ctx, b.s, b.len, NULL);
    b.len = 0;
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - '");
    sb_put(&b, eq.s, eq.len);
    sb_add(&b, " '\n");
    expect_model(ctx, b.s, b.len, "t.yaml:3:5: equation longer than the limit of 4096 characters");
    b.len = 0;
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - h = x\nloss: '");
    loss_of_length(&b, TGM_MAX_EQ_LEN + 1);
    sb_add(&b, "'\n");
    expect_model(ctx, b.s, b.len, "t.yaml:4:7: loss longer than the limit of 4096 characters");
    free(eq.s);
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, expression_nesting)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - h = ");
    sb_rep(&b, "(", TGM_MAX_EXPR_DEPTH);
    sb_add(&b, "x");
    sb_rep(&b, ")", TGM_MAX_EXPR_DEPTH);
    sb_add(&b, "\n");
    expect_model(ctx, b.s, b.len, NULL);
    b.len = 0;
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - h = ");
    sb_rep(&b, "(", TGM_MAX_EXPR_DEPTH + 1);
    sb_add(&b, "x");
    sb_rep(&b, ")", TGM_MAX_EXPR_DEPTH + 1);
    sb_add(&b, "\n");
    expect_model(ctx, b.s, b.len, "t.yaml:3:73: expression nested deeper than 64 levels");
    /* calls count as levels too */
    b.len = 0;
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - h = ");
    sb_rep(&b, "tanh(", TGM_MAX_EXPR_DEPTH + 1);
    sb_add(&b, "x");
    sb_rep(&b, ")", TGM_MAX_EXPR_DEPTH + 1);
    sb_add(&b, "\n");
    expect_model(ctx, b.s, b.len, "t.yaml:3:329: expression nested deeper than 64 levels");
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, arguments_of_a_call)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0};
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - h = concat(x");
    sb_rep(&b, ", x", TGM_MAX_ARGS - 1);
    sb_add(&b, ")\n");
    expect_model(ctx, b.s, b.len, NULL);
    b.len = 0;
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - h = concat(x");
    sb_rep(&b, ", x", TGM_MAX_ARGS);
    sb_add(&b, ")\n");
    expect_model(ctx, b.s, b.len, "t.yaml:3:208: more than 64 arguments in a call");
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, name_length)
{
    tg_ctx *ctx = ctx_new();
    char name[TGM_MAX_NAME + 2], other[TGM_MAX_NAME + 2];
    memset(name, 'a', sizeof name);
    name[TGM_MAX_NAME] = 0;
    memcpy(other, name, sizeof other);
    other[0] = 'b';
    sb b = {0};
    sb_add(&b, "inputs: {%s: [2]}\nstep:\n  - %s = tanh(%s)\n", name, other, name);
    expect_model(ctx, b.s, b.len, NULL);
    name[TGM_MAX_NAME] = 'a';
    name[TGM_MAX_NAME + 1] = 0;
    b.len = 0;
    sb_add(&b, "inputs: {%s: [2]}\nstep:\n  - h = tanh(x)\n", name);
    expect_model(ctx, b.s, b.len, "t.yaml:1:10: name longer than the limit of 64 characters");
    b.len = 0;
    sb_add(&b, "inputs: {x: [2]}\nstep:\n  - %s = tanh(x)\n", name);
    expect_model(ctx, b.s, b.len, "t.yaml:3:5: name longer than the limit of 64 characters");
    free(b.s);
    tg_ctx_free(ctx);
}

MT_TEST(limits, dimension)
{
    tg_ctx *ctx = ctx_new();
    const char *ok = "dims: {n: 1000000}\ninputs: {x: [n]}\nstep:\n  - h = tanh(x)\n";
    expect_model(ctx, ok, strlen(ok), NULL);
    const char *big = "dims: {n: 1000001}\ninputs: {x: [n]}\nstep:\n  - h = tanh(x)\n";
    expect_model(ctx, big, strlen(big), "t.yaml:1:11: dim 'n' must be a whole number from 1 to 1000000, got '1000001'");
    const char *shape = "inputs: {x: [1000000 + 1]}\nstep:\n  - h = tanh(x)\n";
    expect_model(ctx, shape, strlen(shape),
                 "t.yaml:1:14: a dimension of 'x' must be a whole number from 1 to 1000000, got 1000001");
    tg_dim over = {"n", 1000001};
    cr_expect_null(tg_model_parse(ctx, "t.yaml", ok, strlen(ok), &over, 1));
    cr_expect_str_eq(tg_errmsg(ctx), "t.yaml: dim 'n' must be from 1 to 1000000, got 1000001");
    tg_ctx_free(ctx);
}

MT_TEST(limits, parameter_elements)
{
    tg_ctx *ctx = ctx_new();
    /* 8192 * 8192 = 2^26 */
    const char *ok = "params: {W: [8192, 8192]}\n" SMALL_MODEL;
    expect_model(ctx, ok, strlen(ok), NULL);
    const char *big = "params: {W: [8192, 8193]}\n" SMALL_MODEL;
    expect_model(ctx, big, strlen(big), "t.yaml:1:13: 'W' has more than the limit of 67108864 elements");
    const char *total = "params: {A: [8192, 8192], B: [8192, 8192], C: [8192, 8192], D: [8192, 8192]}\n" SMALL_MODEL;
    expect_model(ctx, total, strlen(total), NULL);
    const char *over = "params: {A: [8192, 8192], B: [8192, 8192], C: [8192, 8192], D: [8192, 8192], e: [1]}\n" SMALL_MODEL;
    expect_model(ctx, over, strlen(over),
                 "t.yaml:1:78: the parameters up to 'e' hold more than the limit of 268435456 scalars");
    tg_ctx_free(ctx);
}

MT_TEST(limits, outputs)
{
    tg_ctx *ctx = ctx_new();
    sb b = {0}, outs = {0};
    sb_add(&b, "inputs:\n");
    for (int i = 0; i < TGM_MAX_DECLS; i++) {
        sb_add(&b, "  x%d: [1]\n", i);
        sb_add(&outs, "%sx%d", i ? ", " : "", i);
    }
    sb_add(&b, "step:\n  - e = tanh(x0)\n");
    size_t head = b.len;
    sb_add(&b, "outputs: [%s]\n", outs.s);
    expect_model(ctx, b.s, b.len, NULL);
    b.len = head;
    sb_add(&b, "outputs: [%s, e]\n", outs.s);
    expect_model(ctx, b.s, b.len, "t.yaml:260:10: more than 256 outputs");
    free(outs.s);
    free(b.s);
    tg_ctx_free(ctx);
}

/* Tensors on a tape: at most 2^31 elements (core/tape.c).  At the limit the
 * request reaches the allocator (which here refuses anything over 1 GiB, so
 * the test needs no memory); one more is refused before it. */
static void *big_alloc(size_t n, void *u) { return n > ((size_t)1 << 30) ? NULL : malloc(n); }
static void *big_realloc(void *p, size_t o, size_t n, void *u) { return n > ((size_t)1 << 30) ? NULL : realloc(p, n); }
static void big_free(void *p, size_t n, void *u) { free(p); }

MT_TEST(limits, tensor_elements)
{
    tg_allocator a = {big_alloc, big_realloc, big_free, NULL};
    tg_ctx *ctx = tg_ctx_new(&a);
    tg_tape *tape = tg_tape_new(ctx);
    cr_assert(ctx && tape);
    cr_expect_null(tg_input(tape, 65536, 32768, NULL, 0));
    cr_expect_eq(tg_status_last(ctx), TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
    cr_expect_null(tg_input(tape, 65536, 32769, NULL, 0));
    cr_expect_eq(tg_status_last(ctx), TG_ERR_LIMIT);
    cr_expect_str_eq(tg_errmsg(ctx), "input: shape [65536, 32769] has more than 2147483648 elements, "
                                     "the most one tensor may hold");
    tg_tensor *col = tg_input(tape, 65536, 1, NULL, 0), *row = tg_input(tape, 1, 32768, NULL, 0);
    tg_tensor *row1 = tg_input(tape, 1, 32769, NULL, 0);
    cr_assert(col && row && row1, "%s", tg_errmsg(ctx));
    cr_expect_null(tg_matmul(tape, col, row));
    cr_expect_eq(tg_status_last(ctx), TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
    cr_expect_null(tg_matmul(tape, col, row1));
    cr_expect_eq(tg_status_last(ctx), TG_ERR_SHAPE);
    cr_expect_str_eq(tg_errmsg(ctx), "matmul: output shape [65536, 32769] is empty or too large");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* ---- limits: data files ------------------------------------------------------------------ */
#define ONE_MODEL "inputs: {x: [1]}\nstep:\n  - h = tanh(x)\n"

MT_TEST(limits, steps_per_sequence, .timeout = 120)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "t.yaml", ONE_MODEL, strlen(ONE_MODEL), NULL, 0);
    cr_assert(m);
    sb b = {0};
    sb_add(&b, "x: [0");
    sb_rep(&b, ",0", TGM_MAX_STEPS - 1);
    sb_add(&b, "]");
    tg_dataset *d = tg_dataset_parse(ctx, m, "d.yaml", b.s, b.len);
    cr_expect(d, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_dataset_steps(d, 0), TGM_MAX_STEPS);
    tg_dataset_free(d);
    b.len -= 1;
    sb_add(&b, ",0]");
    expect_data(ctx, m, b.s, b.len, "d.yaml:1:4: 'x' has more than the limit of 1000000 steps");
    /* random data has the same bounds */
    d = tg_dataset_random(ctx, m, TGM_MAX_STEPS, 1, 1);
    cr_expect(d, "%s", tg_errmsg(ctx));
    tg_dataset_free(d);
    cr_expect_null(tg_dataset_random(ctx, m, TGM_MAX_STEPS + 1, 1, 1));
    cr_expect_str_eq(tg_errmsg(ctx), "random data: steps must be 1..1000000 and batch 1..65536");
    free(b.s);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(limits, batch_columns)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "t.yaml", ONE_MODEL, strlen(ONE_MODEL), NULL, 0);
    cr_assert(m);
    sb b = {0};
    sb_add(&b, "x: [[0");
    sb_rep(&b, ",0", TGM_MAX_BATCH - 1);
    sb_add(&b, "]]");
    tg_dataset *d = tg_dataset_parse(ctx, m, "d.yaml", b.s, b.len);
    cr_expect(d, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_dataset_batch(d, 0), TGM_MAX_BATCH);
    tg_dataset_free(d);
    b.len -= 2;
    sb_add(&b, ",0]]");
    expect_data(ctx, m, b.s, b.len, "d.yaml:1:5: 'x' step 1: the batch must have 1 to 65536 columns, got 65537");
    cr_expect_null(tg_dataset_random(ctx, m, 1, TGM_MAX_BATCH + 1, 1));
    cr_expect_str_eq(tg_errmsg(ctx), "random data: steps must be 1..1000000 and batch 1..65536");
    free(b.s);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

MT_TEST(limits, sequences_per_file, .timeout = 60)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_parse(ctx, "t.yaml", ONE_MODEL, strlen(ONE_MODEL), NULL, 0);
    cr_assert(m);
    sb b = {0};
    sb_rep(&b, "- x: [0]\n", TGM_MAX_SEQUENCES);
    tg_dataset *d = tg_dataset_parse(ctx, m, "d.yaml", b.s, b.len);
    cr_expect(d, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_dataset_count(d), TGM_MAX_SEQUENCES);
    tg_dataset_free(d);
    sb_add(&b, "- x: [0]\n");
    expect_data(ctx, m, b.s, b.len, "d.yaml:1:1: more than the limit of 100000 sequences");
    free(b.s);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- regressions the fuzzers found ------------------------------------------------------------ */
/* fuzz_data, fuzz_params: in the float build a number past FLT_MAX parsed
 * as a double and loaded as Inf. */
MT_TEST(fuzz_regressions, numbers_out_of_range_for_the_build)
{
    tg_ctx *ctx = ctx_new();
    tg_model *m = tg_model_load(ctx, "models/elman.yaml", NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_dataset *d = tg_dataset_load(ctx, m, "tests/data/out-of-range-data.yaml");
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK);
    tg_status st = tg_params_load(ps, m, "tests/data/out-of-range-params.yaml");
#ifdef TG_REAL_DOUBLE
    cr_expect(d, "%s", tg_errmsg(ctx));
    cr_expect_eq(st, TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_data(tg_params_find(ps, "W"))[3], 1e39);
#else
    cr_expect_null(d);
    cr_expect_eq(st, TG_ERR_PARSE);
    cr_expect_str_eq(tg_errmsg(ctx), "tests/data/out-of-range-params.yaml:3:24: 'W': '1e39' is out of range for "
                                     "float (largest 3.40282e+38)");
    d = tg_dataset_load(ctx, m, "tests/data/out-of-range-data.yaml");
    cr_expect_str_eq(tg_errmsg(ctx), "tests/data/out-of-range-data.yaml:3:19: 'x' step 2: '-3.5e38' is out of "
                                     "range for float (largest 3.40282e+38)");
#endif
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* fuzz_expr: a step of aliases only compiles to no instruction, and copying
 * the empty code passed NULL to memcpy (undefined behaviour). */
MT_TEST(fuzz_regressions, step_without_instructions)
{
    tg_ctx *ctx = ctx_new();
    const char *text = "inputs: {x: [2]}\nstep:\n  - a = x\noutputs: [a]\n";
    tg_model *m = tg_model_parse(ctx, "alias.yaml", text, strlen(text), NULL, 0);
    cr_assert(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    tg_real x[2] = {1, -2};
    const tg_real *in[1] = {x};
    tg_unroll u = {.params = ps, .batch = 1, .steps = 1, .inputs = in};
    cr_expect_eq(tg_model_unroll(m, tape, &u), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_data(u.outputs[0])[1], -2);
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

/* ---- out of memory along the whole path ------------------------------------------------------ */
static char *slurp(const char *path, size_t *len)
{
    char *s = mt_read(path, len);
    cr_assert(s, "cannot read %s", path);
    return s;
}

/* the lstm (hidden 4) over two chunks of `chunk_steps` steps, BATCH columns;
 * the test picks chunk_steps so that backward needs an arena chunk of its
 * own (where that happens depends on the arena's growth and tg_real) */
#define BATCH 8
static int chunk_steps = 8;
#define CHUNK chunk_steps

enum { AT_NONE, AT_CTX, AT_MODEL, AT_INIT, AT_PARAMS, AT_DATA, AT_TAPE, AT_UNROLL, AT_BACKWARD, AT_OPTIM, AT_STEP,
       AT_SAVE, AT_DONE };

/* One run of the path with the allocator failing as f says; returns the
 * stage reached (AT_DONE: all of it). */
static int run_path(failing *f, tg_optim_kind kind, const char *ckpt, const char *ckpt_before, size_t ckpt_len)
{
    tg_allocator a = {f_alloc, f_realloc, f_free, f};
    tg_ctx *ctx = tg_ctx_new(&a);
    if (!ctx) return AT_CTX;
    int stage = AT_MODEL;
    tg_model *m = NULL;
    tg_params *ps = NULL;
    tg_dataset *d = NULL;
    tg_tape *tape = NULL;
    tg_optim *opt = NULL;
    size_t total = 0;
    tg_status st = TG_OK;
    if (!(m = tg_model_load(ctx, "models/lstm.yaml", NULL, 0))) goto fail;
    stage = AT_INIT;
    if (!(ps = tg_params_new(ctx)) || (st = tg_model_init_params(m, ps, 3))) goto fail;
    total = tg_params_total(ps);
    cr_assert(total <= 64 * 4 && total > 0);
    tg_real *snap = malloc(total * sizeof(tg_real)), *snap2 = malloc(total * sizeof(tg_real));
    memcpy(snap, tg_params_values(ps), total * sizeof(tg_real));
    stage = AT_PARAMS;
    st = tg_params_load(ps, m, ckpt);
    if (st) {
        /* a failed load changes nothing */
        cr_expect_eq(tg_params_total(ps), total);
        cr_expect_eq(memcmp(snap, tg_params_values(ps), total * sizeof(tg_real)), 0, "a failed load changed values");
        goto fail_snap;
    }
    memcpy(snap2, tg_params_values(ps), total * sizeof(tg_real));
    stage = AT_DATA;
    if (!(d = tg_dataset_random(ctx, m, 2 * CHUNK, BATCH, 11))) goto fail_snap;
    stage = AT_TAPE;
    if (!(tape = tg_tape_new(ctx))) goto fail_snap;
    stage = AT_OPTIM;
    tg_optim_opts o = tg_optim_defaults(kind);
    o.clip = 1;
    o.weight_decay = 0.01;
    if (!(opt = tg_optim_new(ps, &o))) goto fail_snap;
    /* two chunks of truncated BPTT, a step after each */
    tg_real carry[2][4 * BATCH];
    for (int chunk = 0; chunk < 2; chunk++) {
        long before_backward = 0;
        const tg_real *in[1] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
        const tg_real *tg[1] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
        const tg_real *s0[2] = {carry[0], carry[1]};
        tg_tape_reset(tape);
        tg_params_zero_grad(ps);
        tg_unroll u = {.params = ps, .batch = BATCH, .t0 = CHUNK * chunk, .steps = CHUNK, .seq_steps = 2 * CHUNK, .inputs = in,
                       .targets = tg, .state0 = chunk ? s0 : NULL};
        stage = AT_UNROLL;
        if ((st = tg_model_unroll(m, tape, &u))) goto fail_snap;
        for (int s = 0; s < 2; s++) memcpy(carry[s], tg_data(u.state[s]), sizeof carry[s]);
        stage = AT_BACKWARD;
        before_backward = f->calls;
        if ((st = tg_backward(tape, u.loss))) goto fail_snap;
        if (chunk == 0) f->backward_calls = f->calls - before_backward;
        stage = AT_STEP;
        memcpy(snap2, tg_params_values(ps), total * sizeof(tg_real));
        if ((st = tg_optim_step(opt, NULL))) goto fail_snap;
        cr_expect_neq(memcmp(snap2, tg_params_values(ps), total * sizeof(tg_real)), 0, "the step changed nothing");
        memcpy(snap2, tg_params_values(ps), total * sizeof(tg_real));
    }
    stage = AT_SAVE;
    if ((st = tg_params_save(ps, m, ckpt))) goto fail_snap;
    stage = AT_DONE;
    goto out_snap;
fail_snap:
    /* whatever failed after the params file was read left the values as the
     * last completed step (or the load) made them */
    if (stage > AT_PARAMS)
        cr_expect_eq(memcmp(snap2, tg_params_values(ps), total * sizeof(tg_real)), 0,
                     "a failure at stage %d changed the parameters", stage);
out_snap:
    free(snap);
    free(snap2);
    goto out;
fail:
    (void)st;
out:
    if (stage != AT_DONE) {
        cr_expect_eq(tg_status_last(ctx), TG_ERR_NOMEM, "stage %d: %s", stage, tg_errmsg(ctx));
        cr_expect(tg_errmsg(ctx)[0], "stage %d: no message", stage);
        /* the checkpoint on disk is untouched, and no temporary is left */
        size_t len;
        char *now = slurp(ckpt, &len);
        cr_expect(len == ckpt_len && !memcmp(now, ckpt_before, len), "stage %d changed %s", stage, ckpt);
        free(now);
    }
    tg_optim_free(opt);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    return stage;
}

MT_TEST(oom, every_allocation_from_load_to_save, .timeout = 300)
{
    mt_chdir_root();
    char dir[256], ckpt[300];
    tmp_dir(dir, sizeof dir);
    snprintf(ckpt, sizeof ckpt, "%s/lstm.params.yaml", dir);
    static const tg_optim_kind kinds[] = {TG_OPTIM_SGD, TG_OPTIM_MOMENTUM, TG_OPTIM_ADAM, TG_OPTIM_RMSPROP, TG_OPTIM_ADAGRAD};
    {
        /* an existing checkpoint, then a chunk length that makes backward allocate */
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = tg_model_load(ctx, "models/lstm.yaml", NULL, 0);
        tg_params *ps = tg_params_new(ctx);
        cr_assert(m && ps && tg_model_init_params(m, ps, 1) == TG_OK);
        cr_assert_eq(tg_params_save(ps, m, ckpt), TG_OK, "%s", tg_errmsg(ctx));
        tg_params_free(ps);
        tg_model_free(m);
        tg_ctx_free(ctx);
        size_t len;
        char *before = slurp(ckpt, &len);
        for (chunk_steps = 4; chunk_steps <= 64; chunk_steps++) {
            failing f = {.countdown = -1};
            cr_assert_eq(run_path(&f, TG_OPTIM_ADAM, ckpt, before, len), AT_DONE);
            if (f.backward_calls > 0) break;
        }
        cr_assert(chunk_steps <= 64, "backward never allocates");
        free(before);
    }
    for (int k = 0; k < (int)(sizeof kinds / sizeof kinds[0]); k++) {
        /* an existing checkpoint: the model's params with seed 1 */
        tg_ctx *ctx = tg_ctx_new(NULL);
        tg_model *m = tg_model_load(ctx, "models/lstm.yaml", NULL, 0);
        tg_params *ps = tg_params_new(ctx);
        cr_assert(m && ps && tg_model_init_params(m, ps, 1) == TG_OK);
        cr_assert_eq(tg_params_save(ps, m, ckpt), TG_OK, "%s", tg_errmsg(ctx));
        tg_params_free(ps);
        tg_model_free(m);
        tg_ctx_free(ctx);
        size_t len;
        char *before = slurp(ckpt, &len);

        long n, calls = 0;
        int stages_seen = 0;
        for (n = 0; n < 1000000; n++) {
            failing f = {.countdown = n};
            int stage = run_path(&f, kinds[k], ckpt, before, len);
            cr_assert_eq(f.live, 0, "%s: allocation %ld failing (stage %d) leaked %ld blocks",
                         tg_optim_kind_name(kinds[k]), n, stage, f.live);
            cr_assert_eq(count_files(dir), 1, "a temporary file was left in %s", dir);
            stages_seen |= 1 << stage;
            if (stage == AT_DONE) {
                calls = f.calls;
                break;
            }
        }
        cr_expect_eq(n, calls, "%ld allocations, failed each of the first %ld", calls, n);
        /* every stage that allocates was hit by a failure */
        for (int s = AT_CTX; s <= AT_STEP; s++)
            cr_expect(stages_seen & (1 << s) || (s == AT_STEP && kinds[k] == TG_OPTIM_SGD),
                      "%s: no failure hit stage %d", tg_optim_kind_name(kinds[k]), s);
        /* the path completed: the checkpoint now holds the trained values */
        size_t len2;
        char *after = slurp(ckpt, &len2);
        cr_expect(len2 != len || memcmp(after, before, len), "the completed save changed nothing");
        free(after);
        free(before);
    }
    rm_dir(dir);
}
