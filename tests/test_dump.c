/* test_dump.c — graph dumps (text, JSON, DOT), the first-bad-number reports,
 * and per-step gradient norms: the lecture's network dumps in every format,
 * the JSON parses and counts one node per tape entry, dumps grow linearly
 * with T, NaN/Inf are marked, Graphviz renders every DOT without a warning,
 * folding keeps a long sequence small, per-step gradient parts add up to the
 * gradient, and out-of-memory anywhere leaks nothing. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <ctype.h>
#include <glob.h>
#include <sys/wait.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tapegrad.h"
#include "failing_alloc.h"
#include "../examples/seed_tape.h"

/* ---- helpers ------------------------------------------------------------------- */

/* The dump of tape as a string (free() it). */
static char *dump_str(tg_tape *tape, tg_dump_format fmt, const tg_dump_opts *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    tg_status st = tg_tape_dump(tape, f, fmt, o);
    fclose(f);
    cr_assert_eq(st, TG_OK, "%s", tg_errmsg(tg_tape_ctx(tape)));
    return buf;
}

static int count_lines(const char *s, int (*match)(const char *line))
{
    int n = 0;
    for (const char *p = s; *p;) {
        if (match(p)) n++;
        const char *nl = strchr(p, '\n');
        if (!nl) break;
        p = nl + 1;
    }
    return n;
}

/* A DOT node statement of a tape entry: "  e12 [" or "    e12 [" */
static int is_dot_entry(const char *l)
{
    while (*l == ' ') l++;
    if (*l++ != 'e' || !isdigit((unsigned char)*l)) return 0;
    while (isdigit((unsigned char)*l)) l++;
    return l[0] == ' ' && l[1] == '[';
}
static int is_dot_param(const char *l)
{
    while (*l == ' ') l++;
    if (*l++ != 'p' || !isdigit((unsigned char)*l)) return 0;
    while (isdigit((unsigned char)*l)) l++;
    return l[0] == ' ' && l[1] == '[';
}
/* A text dump line of an entry: starts with spaces and an index. */
static int is_text_entry(const char *l)
{
    while (*l == ' ') l++;
    return isdigit((unsigned char)*l);
}

/* ---- a minimal JSON checker: full syntax, counts the "nodes" array --------------- */
typedef struct jp {
    const char *p;
    int depth, nodes, in_nodes_array;
    char keys[32][24];
    int n_keys;
} jp;

static void ws(jp *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') j->p++;
}
static int value(jp *j);
static int string(jp *j, char *out, size_t len)
{
    if (*j->p != '"') return 0;
    size_t k = 0;
    for (j->p++; *j->p != '"'; j->p++) {
        if (!*j->p || (unsigned char)*j->p < 0x20) return 0;
        if (*j->p == '\\') {
            j->p++;
            if (!strchr("\"\\/bfnrtu", *j->p)) return 0;
        }
        if (out && k + 1 < len) out[k++] = *j->p;
    }
    if (out) out[k] = 0;
    j->p++;
    return 1;
}
static int value(jp *j)
{
    ws(j);
    if (*j->p == '{') {
        j->p++;
        j->depth++;
        ws(j);
        if (*j->p == '}') return j->p++, j->depth--, 1;
        for (;;) {
            char key[24];
            ws(j);
            if (!string(j, key, sizeof key)) return 0;
            if (j->depth == 1 && j->n_keys < 32) strcpy(j->keys[j->n_keys++], key);
            ws(j);
            if (*j->p++ != ':') return 0;
            int nodes = j->depth == 1 && !strcmp(key, "nodes");
            if (nodes) j->in_nodes_array = 1;
            if (!value(j)) return 0;
            if (nodes) j->in_nodes_array = 0;
            ws(j);
            if (*j->p == ',') { j->p++; continue; }
            if (*j->p++ != '}') return 0;
            j->depth--;
            return 1;
        }
    }
    if (*j->p == '[') {
        int counting = j->in_nodes_array;
        j->in_nodes_array = 0;
        j->p++;
        ws(j);
        if (*j->p == ']') return j->p++, 1;
        for (;;) {
            if (!value(j)) return 0;
            if (counting) j->nodes++;
            ws(j);
            if (*j->p == ',') { j->p++; continue; }
            return *j->p++ == ']';
        }
    }
    if (*j->p == '"') return string(j, NULL, 0);
    if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "null", 4)) return j->p += 4, 1;
    if (!strncmp(j->p, "false", 5)) return j->p += 5, 1;
    char *end;
    strtod(j->p, &end);
    if (end == j->p) return 0;
    j->p = end;
    return 1;
}
/* Parses s; returns the number of elements of the top-level "nodes", -1 if invalid. */
static int json_nodes(const char *s, jp *j)
{
    memset(j, 0, sizeof *j);
    j->p = s;
    if (!value(j)) return -1;
    ws(j);
    return *j->p ? -1 : j->nodes;
}
static int has_key(const jp *j, const char *k)
{
    for (int i = 0; i < j->n_keys; i++)
        if (!strcmp(j->keys[i], k)) return 1;
    return 0;
}

/* ---- Graphviz: renders with no output on stderr ------------------------------------ */
static int have_dot(void) { return system("command -v dot > /dev/null 2>&1") == 0; }

static void assert_dot_renders(const char *dot)
{
    if (!have_dot()) return; /* Debian: apt-get install graphviz */
    char in[] = "/tmp/tg_dump_XXXXXX", cmd[256];
    int fd = mkstemp(in);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(dot, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "dot -Tsvg %s -o /dev/null 2>&1", in);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char err[2048];
    size_t n = fread(err, 1, sizeof err - 1, p);
    err[n] = 0;
    int rc = pclose(p);
    unlink(in);
    cr_assert_eq(rc, 0, "dot failed: %s", err);
    cr_assert_eq(n, 0, "dot wrote to stderr: %s", err);
}

/* ---- the lecture's network ------------------------------------------------------- */
typedef struct seed_fixture {
    tg_ctx *ctx;
    tg_params *ps;
    tg_tape *tape;
    seed_net net;
    tg_tensor *loss;
} seed_fixture;

static void seed_open(seed_fixture *s, int backward)
{
    s->ctx = tg_ctx_new(NULL);
    s->ps = tg_params_new(s->ctx);
    s->tape = tg_tape_new(s->ctx);
    cr_assert_eq(seed_net_init(&s->net, s->ps, &seed_w0), 0);
    s->loss = seed_net_record(s->tape, &s->net);
    cr_assert_not_null(s->loss, "%s", tg_errmsg(s->ctx));
    if (backward) cr_assert_eq(tg_backward(s->tape, s->loss), TG_OK, "%s", tg_errmsg(s->ctx));
}

static void seed_close(seed_fixture *s)
{
    tg_tape_free(s->tape);
    tg_params_free(s->ps);
    tg_ctx_free(s->ctx);
}

Test(dump, the_seed_network_dumps_in_all_three_formats_before_and_after_backward)
{
    for (int bw = 0; bw < 2; bw++) {
        seed_fixture s;
        seed_open(&s, bw);
        tg_dump_opts o = {.grads = bw, .title = "seed"};
        int n = tg_tape_length(s.tape);

        char *text = dump_str(s.tape, TG_DUMP_TEXT, &o);
        cr_expect_eq(count_lines(text, is_text_entry), n, "%s", text);
        cr_expect(strstr(text, "h[t=2]") && strstr(text, "o[t=3]"), "%s", text);
        cr_expect(strstr(text, "\n   p0 param         U "), "%s", text);
        cr_expect_eq(strstr(text, "grad=") != NULL, bw, "%s", text);
        free(text);

        char *json = dump_str(s.tape, TG_DUMP_JSON, &o);
        jp j;
        cr_expect_eq(json_nodes(json, &j), n, "%s", json);
        const char *keys[] = {"format", "real", "length", "grads", "loss", "params", "nodes"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) cr_expect(has_key(&j, keys[k]), "no %s", keys[k]);
        cr_expect(strstr(json, "\"label\": \"h\", \"step\": 2"), "%s", json);
        cr_expect_eq(strstr(json, "\"grad\": {") != NULL, bw);
        free(json);

        char *dot = dump_str(s.tape, TG_DUMP_DOT, &o);
        cr_expect_eq(count_lines(dot, is_dot_entry), n);
        cr_expect_eq(count_lines(dot, is_dot_param), 5);
        for (int t = 1; t <= 3; t++) {
            char c[32];
            snprintf(c, sizeof c, "subgraph cluster_t%d {", t);
            cr_expect(strstr(dot, c), "no cluster for t = %d", t);
        }
        cr_expect(strstr(dot, "h[t=2]\\n#"), "%s", dot);
        cr_expect(!strstr(dot, "color=red"));
        assert_dot_renders(dot);
        free(dot);
        seed_close(&s);
    }
}

Test(dump, values_and_gradients_in_the_text_dump_match_the_tape)
{
    seed_fixture s;
    seed_open(&s, 1);
    tg_dump_opts o = {.grads = 1};
    char *text = dump_str(s.tape, TG_DUMP_TEXT, &o);
    tg_tensor *h2 = NULL;
    for (int i = 0; i < tg_tape_length(s.tape); i++) {
        int st;
        const char *l = tg_tensor_label(tg_tape_at(s.tape, i), &st);
        if (l && !strcmp(l, "h") && st == 2) h2 = tg_tape_at(s.tape, i);
    }
    cr_assert_not_null(h2);
    char want[128];
    snprintf(want, sizeof want, "val=[%.4g,%.4g]", (double)tg_data(h2)[0], (double)tg_data(h2)[1]);
    char *line = strstr(text, "h[t=2]");
    cr_assert_not_null(line);
    char *eol = strchr(line, '\n');
    *eol = 0;
    cr_expect(strstr(line, "tanh") == NULL || strstr(line - 20, "tanh"), "%s", line);
    cr_expect(strstr(line, want), "want %s in: %s", want, line);
    snprintf(want, sizeof want, "grad=[%.4g,%.4g]", (double)tg_grad(h2)[0], (double)tg_grad(h2)[1]);
    cr_expect(strstr(line, want), "want %s in: %s", want, line);
    *eol = '\n';
    /* the loss and the targets are marked */
    cr_expect(strstr(text, " loss\n"), "%s", text);
    cr_expect(strstr(text, " target\n"), "%s", text);
    cr_expect(strstr(text, "\n   35 add           -      -      in=23,34 [1,1] val=[3.929]"), "%s", text);
    free(text);
    seed_close(&s);
}

/* An Elman RNN over T steps through the C API, labelled as the model
 * unroller labels it (name, step, FILE:LINE:COL). */
static tg_tensor *rnn_record(tg_tape *tape, tg_params *ps, int T)
{
    tg_tensor *W = tg_params_find(ps, "W"), *U = tg_params_find(ps, "U");
    tg_tensor *h = tg_input(tape, 3, 2, NULL, 0), *loss = NULL;
    tg_tensor_set_label(h, "h", 0);
    for (int t = 1; t <= T; t++) {
        tg_real xv[4] = {(tg_real)(0.1 * t), -0.5f, 0.25f, (tg_real)(0.01 * t)};
        tg_tensor *x = tg_input(tape, 2, 2, xv, 0);
        tg_tensor_set_label(x, "x", t);
        tg_tensor *a = tg_add(tape, tg_matmul(tape, W, h), tg_matmul(tape, U, x));
        h = tg_tanh(tape, a);
        cr_assert_not_null(h, "%s", tg_errmsg(tg_tape_ctx(tape)));
        tg_tensor_set_label(a, "a", t);
        tg_tensor_set_source(a, "rnn.yaml", 9, 7);
        tg_tensor_set_label(h, "h", t);
        tg_tensor_set_source(h, "rnn.yaml", 10, 7);
        tg_tensor *e = tg_sum(tape, tg_mul(tape, h, h));
        loss = loss ? tg_add(tape, loss, e) : e;
    }
    return loss;
}

static tg_params *rnn_params(tg_ctx *ctx)
{
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *W = tg_params_add(ps, "W", 3, 3), *U = tg_params_add(ps, "U", 3, 2);
    cr_assert(W && U);
    for (int i = 0; i < 9; i++) tg_data(W)[i] = (tg_real)(0.3 * sin(i + 1.0));
    for (int i = 0; i < 6; i++) tg_data(U)[i] = (tg_real)(0.5 * cos(i + 1.0));
    return ps;
}

Test(dump, node_counts_equal_the_tape_length_and_grow_linearly_with_T)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_params *ps = rnn_params(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    int Ts[3] = {5, 10, 20}, len[3], nodes[3];
    for (int k = 0; k < 3; k++) {
        tg_tape_reset(tape);
        tg_tensor *loss = rnn_record(tape, ps, Ts[k]);
        cr_assert_eq(tg_backward(tape, loss), TG_OK);
        tg_dump_opts o = {.grads = 1};
        len[k] = tg_tape_length(tape);
        char *json = dump_str(tape, TG_DUMP_JSON, &o), *dot = dump_str(tape, TG_DUMP_DOT, &o),
             *text = dump_str(tape, TG_DUMP_TEXT, &o);
        jp j;
        nodes[k] = json_nodes(json, &j);
        cr_expect_eq(nodes[k], len[k], "JSON nodes %d, tape %d", nodes[k], len[k]);
        cr_expect_eq(count_lines(dot, is_dot_entry), len[k]);
        cr_expect_eq(count_lines(text, is_text_entry), len[k]);
        if (k == 0) assert_dot_renders(dot);
        free(json);
        free(dot);
        free(text);
    }
    /* a + b T: the same number of entries per step */
    cr_expect_eq(nodes[1] - nodes[0], (nodes[2] - nodes[1]) / 2);
    cr_expect_eq((nodes[1] - nodes[0]) % 5, 0);
    cr_expect_gt(nodes[1], nodes[0]);
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

Test(dump, fold_draws_the_first_and_last_step_and_says_how_many_were_folded)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_params *ps = rnn_params(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *loss = rnn_record(tape, ps, 1000);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    tg_dump_opts o = {.grads = 1, .fold = 1};
    char *dot = dump_str(tape, TG_DUMP_DOT, &o);
    cr_expect(strstr(dot, "998 steps folded\\n(t = 2 ... 999)"), "%.3000s", dot);
    int shown = count_lines(dot, is_dot_entry);
    cr_expect_lt(shown, 30, "%d entries drawn", shown);
    cr_expect(strstr(dot, "cluster_t1 {") && strstr(dot, "cluster_t1000 {") && !strstr(dot, "cluster_t2 {"));
    cr_expect_lt(strlen(dot), 20000u);
    assert_dot_renders(dot);
    char *text = dump_str(tape, TG_DUMP_TEXT, &o);
    cr_expect(strstr(text, "# ... 998 steps folded (t = 2 ... 999)"), "%.2000s", text);
    cr_expect_lt(count_lines(text, is_text_entry), 30);
    free(text);
    free(dot);
    /* JSON ignores folding: it is for tools */
    char *json = dump_str(tape, TG_DUMP_JSON, &o);
    jp j;
    cr_expect_eq(json_nodes(json, &j), tg_tape_length(tape));
    free(json);
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

Test(dump, non_finite_values_and_gradients_are_marked_red)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_real v[6] = {1, -1, 2, 3, 4, 5};
    tg_tensor *x = tg_input(tape, 6, 0, v, 1);
    tg_tensor *lg = tg_log(tape, x); /* log(-1) = nan */
    tg_tensor_set_label(lg, "lx", 4);
    tg_tensor_set_source(lg, "m.yaml", 3, 5);
    tg_tensor *l = tg_sum(tape, lg);
    cr_assert_not_null(l);
    tg_dump_opts o = {0};
    char *dot = dump_str(tape, TG_DUMP_DOT, &o);
    const char *e1 = strstr(dot, "  e1 [");
    cr_assert_not_null(e1, "%s", dot);
    cr_expect(strstr(e1, "color=red") < strchr(e1, '\n') && strstr(e1, "color=red"), "%s", dot);
    cr_expect(strstr(e1, "1 of 6 non-finite, first [1] = nan"), "%s", dot);
    cr_expect(strstr(dot, "  e0 [") && !strstr(strstr(dot, "  e0 ["), "color=red\n"));
    assert_dot_renders(dot);
    char *text = dump_str(tape, TG_DUMP_TEXT, &o);
    cr_expect_eq(count_lines(text, is_text_entry), 3);
    cr_expect(strstr(text, "nonfinite=1} NONFINITE"), "%s", text);
    cr_expect(strstr(text, "# first non-finite number: entry 1 (log [6] 'lx[t=4]' at m.yaml:3:5)"), "%s", text);
    char *json = dump_str(tape, TG_DUMP_JSON, &o);
    jp j;
    cr_expect_eq(json_nodes(json, &j), 3, "%s", json);
    cr_expect(strstr(json, "\"first_nonfinite\": 1"), "%s", json);
    cr_expect(strstr(json, "\"nonfinite\": 1"), "%s", json);
    free(dot);
    free(text);
    free(json);

    /* a small tensor with an Inf shows the value itself; gradients too */
    tg_tape_reset(tape);
    tg_real big[2] = {1000, 1};
    tg_tensor *e = tg_exp(tape, tg_input(tape, 2, 0, big, 1));
    cr_assert_not_null(e);
    dot = dump_str(tape, TG_DUMP_DOT, &o);
    cr_expect(strstr(dot, "val [inf, 2.718]"), "%s", dot);
    cr_expect(strstr(dot, "color=red"));
    assert_dot_renders(dot);
    free(dot);
    json = dump_str(tape, TG_DUMP_JSON, &o);
    cr_expect(strstr(json, "\"values\": [\"inf\", 2.71828"), "%s", json);
    cr_expect_eq(json_nodes(json, &j), 2, "%s", json);
    free(json);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(dump, labels_are_escaped_for_dot_json_and_text)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_params *ps = tg_params_new(ctx);
    tg_tensor *p = tg_params_add(ps, "W\"<b>\\n", 1, 0);
    tg_tensor *x = tg_input(tape, 1, 0, NULL, 0);
    tg_tensor *y = tg_add(tape, x, p);
    tg_tensor_set_label(x, "a \"quoted\"\\ {x|y} <z>\n\ttab \xff\xfe bad utf-8 \xc3\xa9", 1);
    tg_tensor_set_source(y, "dir with space/m\"odel.yaml", 2, 3);
    tg_dump_opts o = {.title = "title \"with\" \\ quotes"};
    char *dot = dump_str(tape, TG_DUMP_DOT, &o);
    /* a newline in a name is shown, not a line break of the label */
    cr_expect(strstr(dot, "a \\\"quoted\\\"\\\\ {x|y} <z>\\\\x0a\\\\x09tab \\\\xff\\\\xfe bad utf-8 \xc3\xa9[t=1]"), "%s",
              dot);
    cr_expect(strstr(dot, "W\\\"<b>\\\\n"), "%s", dot);
    assert_dot_renders(dot);
    char *json = dump_str(tape, TG_DUMP_JSON, &o);
    jp j;
    cr_expect_eq(json_nodes(json, &j), 2, "%s", json);
    cr_expect(strstr(json, "<z>\\n\\ttab \\ufffd\\ufffd bad utf-8 \xc3\xa9\""), "%s", json);
    char *text = dump_str(tape, TG_DUMP_TEXT, &o);
    cr_expect_eq(count_lines(text, is_text_entry), 2, "%s", text);
    free(dot);
    free(json);
    free(text);
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

Test(dump, bad_arguments_and_write_errors_are_statuses)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_sum(tape, tg_input(tape, 2, 0, NULL, 0));
    cr_expect_eq(tg_tape_dump(tape, NULL, TG_DUMP_TEXT, NULL), TG_ERR_ARG);
    cr_expect_eq(tg_tape_dump(tape, stdout, (tg_dump_format)7, NULL), TG_ERR_ARG);
    cr_expect_eq(tg_tape_dump(NULL, stdout, TG_DUMP_TEXT, NULL), TG_ERR_ARG);
    FILE *ro = fopen("/dev/null", "r");
    cr_assert_not_null(ro);
    cr_expect_eq(tg_tape_dump(tape, ro, TG_DUMP_JSON, NULL), TG_ERR_IO);
    cr_expect(strstr(tg_errmsg(ctx), "writing failed"), "%s", tg_errmsg(ctx));
    fclose(ro);
    cr_expect_eq(tg_dump_format_parse("dot"), TG_DUMP_DOT);
    cr_expect_eq(tg_dump_format_parse("svg"), -1);
    cr_expect_str_eq(tg_dump_format_name(TG_DUMP_JSON), "json");
    /* an empty tape is a valid, empty dump */
    tg_tape_reset(tape);
    char *json = dump_str(tape, TG_DUMP_JSON, NULL);
    jp j;
    cr_expect_eq(json_nodes(json, &j), 0, "%s", json);
    char *dot = dump_str(tape, TG_DUMP_DOT, NULL);
    assert_dot_renders(dot);
    free(json);
    free(dot);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* ---- the first bad number --------------------------------------------------------- */

/* h(t) = exp(h(t-1)), h(0) = 1: e, 15.2, 3.8e6, then Inf at t = 4. */
static tg_tensor *overflow_record(tg_tape *tape, int T)
{
    tg_real one[1] = {1};
    tg_tensor *h = tg_input(tape, 1, 0, one, 1);
    tg_tensor_set_label(h, "h", 0);
    for (int t = 1; t <= T; t++) {
        tg_tensor *nh = tg_exp(tape, h);
        if (!nh) return NULL;
        tg_tensor_set_label(nh, "h", t);
        tg_tensor_set_source(nh, "overflow.yaml", 7, 9);
        h = nh;
    }
    return tg_sum(tape, h);
}

Test(anomaly, detection_stops_at_the_first_overflow_and_shows_the_inputs)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tape_detect_anomaly(tape, 1);
    cr_assert_null(overflow_record(tape, 6));
    cr_assert_eq(tg_status_last(ctx), TG_ERR_NONFINITE);
    const char *m = tg_errmsg(ctx);
    cr_expect(strstr(m, "non-finite value computed by entry 4 (exp [1]); value [inf]"), "%s", m);
    cr_expect(strstr(m, "inputs: input 0: entry 3 exp 'h[t=3]' [1] value [3.814e+06]"), "%s", m);
    cr_expect_eq(tg_tape_length(tape), 5); /* it stopped there */
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(anomaly, check_finite_names_the_equation_its_step_and_source_after_the_fact)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *l = overflow_record(tape, 6);
    cr_assert_not_null(l);
    cr_expect_eq(tg_tape_check_finite(tape, NULL), TG_ERR_NONFINITE);
    const char *m = tg_errmsg(ctx);
    cr_expect(strstr(m, "first non-finite value: entry 4 (exp [1] 'h[t=4]' at overflow.yaml:7:9)"), "%s", m);
    cr_expect(strstr(m, "input 0: entry 3 exp 'h[t=3]' [1] value [3.814e+06]"), "%s", m);
    /* a finite tape passes */
    tg_tape_reset(tape);
    l = overflow_record(tape, 2);
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    cr_expect_eq(tg_tape_check_finite(tape, l), TG_OK);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

static int inf_shape(int n, const int (*in)[2], const double *a, int out[2], char *err, size_t len)
{
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}
static void inf_fwd(tg_tensor *o) { tg_data(o)[0] = tg_data(tg_tensor_input(o, 0))[0]; }
static void inf_bwd(tg_tensor *o)
{
    tg_tensor *x = tg_tensor_input(o, 0);
    if (tg_grad(x)) tg_grad(x)[0] += (tg_real)INFINITY;
}

Test(anomaly, a_bad_gradient_names_the_entry_its_gradient_and_its_inputs)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_op_spec spec = {"inf_grad", 1, 0, inf_shape, inf_fwd, inf_bwd};
    cr_assert_eq(tg_op_register(ctx, &spec), TG_OK);
    tg_real two[1] = {2};
    tg_tensor *x = tg_input(tape, 1, 0, two, 1);
    tg_tensor *y = tg_apply(tape, "inf_grad", 1, &x, 0, NULL);
    tg_tensor_set_label(y, "h", 7);
    tg_tensor_set_source(y, "model.yaml", 12, 9);
    tg_tensor *l = tg_sum(tape, tg_scale(tape, y, 3, 0));
    tg_tape_detect_anomaly(tape, 1);
    cr_assert_eq(tg_backward(tape, l), TG_ERR_NONFINITE);
    const char *m = tg_errmsg(ctx);
    cr_expect(strstr(m, "non-finite gradient flowing into input 0 of entry 1 (inf_grad [1] 'h[t=7]' at "
                        "model.yaml:12:9); its gradient [3]; inputs: input 0: entry 0 input [1] value [2], "
                        "gradient [inf]"), "%s", m);
    tg_tape_detect_anomaly(tape, 0);
    cr_assert_eq(tg_backward(tape, l), TG_OK);
    cr_expect_eq(tg_tape_check_finite(tape, l), TG_ERR_NONFINITE);
    cr_expect(strstr(tg_errmsg(ctx), "first non-finite gradient: entry 0 (input [1]); its gradient [inf]"), "%s",
              tg_errmsg(ctx));
    tg_dump_opts o = {.grads = 1};
    char *dot = dump_str(tape, TG_DUMP_DOT, &o);
    cr_expect(strstr(dot, "grad [inf]"), "%s", dot);
    cr_expect(strstr(dot, "color=red"));
    free(dot);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(anomaly, a_long_report_is_cut_to_the_message_buffer)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *parts[40];
    tg_real v[3] = {1, 2, NAN};
    for (int i = 0; i < 40; i++) parts[i] = tg_input(tape, 3, 0, v, 0);
    tg_tape_detect_anomaly(tape, 1);
    cr_expect_null(tg_input(tape, 3, 0, v, 0));
    cr_expect(strstr(tg_errmsg(ctx), "non-finite value in input entry 40 (input [3]); value [1, 2, nan]"), "%s",
              tg_errmsg(ctx));
    cr_expect_null(tg_concat(tape, 40, parts));
    const char *m = tg_errmsg(ctx);
    cr_expect(strstr(m, "non-finite value computed by entry 41 (concat [120]); value {min 1, max 2, mean 1.5, "
                        "40 of 120 non-finite, first [2] = nan}; inputs: input 0: entry 0 input [3] value [1, 2, nan];"),
              "%s", m);
    cr_expect(strstr(m, "; and 2") && strstr(m, " more inputs"), "%s", m);
    cr_expect_lt(strlen(m), 1024u);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* ---- gradient norms ----------------------------------------------------------------- */

static double norm2(const tg_real *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; v && i < n; i++) s += (double)v[i] * (double)v[i];
    return sqrt(s);
}

#define CLOSE(a, b) (fabs((a) - (b)) <= (sizeof(tg_real) == 8 ? 1e-10 : 2e-5) * fmax(1, fabs(b)))

Test(norms, per_step_parts_of_the_seed_gradient_add_up_to_the_gradient)
{
    seed_fixture s;
    seed_open(&s, 0);
    tg_grad_norms *gn = tg_grad_norms_new(s.tape, s.loss, s.ps);
    cr_assert_not_null(gn, "%s", tg_errmsg(s.ctx));
    int rows, cols, is_param;
    tg_grad_norms_size(gn, &rows, &cols);
    cr_assert_eq(rows, 3); /* t = 1, 2, 3 */
    cr_assert_eq(cols, 7); /* U W b V c, then dL/dh and dL/do */
    const char *names[7] = {"U", "W", "b", "V", "c", "h", "o"};
    for (int c = 0; c < cols; c++) {
        cr_expect_str_eq(tg_grad_norms_name(gn, c, &is_param), names[c]);
        cr_expect_eq(is_param, c < 5);
    }
    for (int r = 0; r < 3; r++) cr_expect_eq(tg_grad_norms_step(gn, r), r + 1);

    /* Independently: a_t = U x_t + W h_{t-1} + b is the add that h_t's tanh
     * reads, so step t adds g_t = dL/da_t to dL/db, g_t x_t^T to dL/dU and
     * g_t h_{t-1}^T to dL/dW; summed over t they are the whole gradient. */
    tg_real sum_b[2] = {0, 0};
    double prev_h[2] = {0, 0};
    for (int t = 1; t <= 3; t++) {
        tg_tensor *h = NULL;
        for (int i = 0; i < tg_tape_length(s.tape); i++) {
            int st;
            const char *l = tg_tensor_label(tg_tape_at(s.tape, i), &st);
            if (l && !strcmp(l, "h") && st == t) h = tg_tape_at(s.tape, i);
        }
        cr_assert_not_null(h);
        tg_tensor *a = tg_tensor_input(h, 0);
        double g = norm2(tg_grad(a), 2), x = hypot(seed_x[t - 1][0], seed_x[t - 1][1]);
        double hp = hypot(prev_h[0], prev_h[1]);
        cr_expect(CLOSE(tg_grad_norms_at(gn, t - 1, 2), g), "b t=%d %g vs %g", t, tg_grad_norms_at(gn, t - 1, 2), g);
        cr_expect(CLOSE(tg_grad_norms_at(gn, t - 1, 0), g * x), "U t=%d", t);
        cr_expect(CLOSE(tg_grad_norms_at(gn, t - 1, 1), g * hp), "W t=%d", t);
        cr_expect(CLOSE(tg_grad_norms_at(gn, t - 1, 5), norm2(tg_grad(h), 2)), "dL/dh t=%d", t);
        for (int i = 0; i < 2; i++) sum_b[i] += tg_grad(a)[i];
        prev_h[0] = tg_data(h)[0];
        prev_h[1] = tg_data(h)[1];
    }
    for (int i = 0; i < 2; i++) cr_expect(CLOSE(sum_b[i], tg_grad(s.net.b)[i]));
    /* the total row is each whole gradient, and no step's part exceeds it by the triangle */
    tg_tensor *P[5] = {s.net.U, s.net.W, s.net.b, s.net.V, s.net.c};
    for (int c = 0; c < 5; c++) {
        double tot = tg_grad_norms_at(gn, -1, c), sum = 0;
        cr_expect(CLOSE(tot, norm2(tg_grad(P[c]), tg_size(P[c]))), "total of %s", names[c]);
        for (int r = 0; r < 3; r++) sum += tg_grad_norms_at(gn, r, c);
        cr_expect_leq(tot, sum * (1 + 1e-6));
    }
    /* and agree with the slides' hand-derived gradients */
    seed_weights hand;
    seed_hand_gradients(&seed_w0, &hand);
    (void)seed_numeric_gradients;
    cr_expect(CLOSE(tg_grad_norms_at(gn, -1, 0), hypot(hypot(hand.U[0][0], hand.U[0][1]), hypot(hand.U[1][0], hand.U[1][1]))));
    cr_expect(CLOSE(tg_grad_norms_at(gn, -1, 4), fabs(hand.c)));
    cr_expect(isnan(tg_grad_norms_at(gn, -1, 5)));
    cr_expect(isnan(tg_grad_norms_at(gn, 9, 0)) && isnan(tg_grad_norms_at(gn, 0, 9)));
    tg_grad_norms_free(gn);

    /* parameter gradients accumulate; the table counts this sweep only */
    gn = tg_grad_norms_new(s.tape, s.loss, s.ps);
    cr_assert_not_null(gn);
    cr_expect(CLOSE(2 * tg_grad_norms_at(gn, -1, 0), norm2(tg_grad(s.net.U), 4)));
    tg_grad_norms_free(gn);
    seed_close(&s);
}

Test(norms, the_table_and_csv_have_a_row_per_step_and_a_column_per_parameter)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_params *ps = rnn_params(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *loss = rnn_record(tape, ps, 12);
    tg_grad_norms *gn = tg_grad_norms_new(tape, loss, NULL); /* the tape's params: W, U */
    cr_assert_not_null(gn, "%s", tg_errmsg(ctx));
    int rows, cols;
    tg_grad_norms_size(gn, &rows, &cols);
    cr_expect_eq(rows, 13); /* h(0) is step 0 */
    cr_expect_eq(cols, 4);  /* W U | a h */
    cr_expect_str_eq(tg_grad_norms_name(gn, 0, NULL), "W"); /* as in ps, whatever the tape read first */
    cr_expect_str_eq(tg_grad_norms_name(gn, 2, NULL), "a");
    cr_expect_str_eq(tg_grad_norms_name(gn, 3, NULL), "h");
    /* the loss sums h_t^2 at every step: later steps have had less time to
     * add up and the last step's h gets only its own term */
    cr_expect_eq(tg_grad_norms_at(gn, 1, 0), 0); /* W h(0) with h(0) = 0 */
    for (int r = 2; r < rows; r++) cr_expect_gt(tg_grad_norms_at(gn, r, 0), 0);
    for (int r = 1; r < rows; r++) cr_expect_gt(tg_grad_norms_at(gn, r, 1), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(tg_grad_norms_write(gn, f, 1), TG_OK);
    fclose(f);
    cr_expect(!strncmp(buf, "step,W,U,dL/da,dL/dh\n0,0,0,,\n1,0,", 33), "%s", buf);
    int lines = 0;
    for (char *p = buf; *p; p++) {
        if (*p != '\n') continue;
        lines++;
    }
    cr_expect_eq(lines, 1 + rows + 1, "%s", buf);
    for (char *l = buf; *l; l = strchr(l, '\n') + 1) {
        int commas = 0;
        for (char *p = l; *p && *p != '\n'; p++) commas += *p == ',';
        cr_expect_eq(commas, cols, "%.60s", l);
    }
    cr_expect(strstr(buf, "\ntotal,"), "%s", buf);
    free(buf);
    f = open_memstream(&buf, &len);
    cr_assert_eq(tg_grad_norms_write(gn, f, 0), TG_OK);
    fclose(f);
    cr_expect(strstr(buf, " step          W          U |      dL/da      dL/dh\n"), "%s", buf);
    cr_expect(strstr(buf, "\n   12 "), "%s", buf);
    free(buf);
    tg_grad_norms_free(gn);
    /* a loss from elsewhere is refused with the sweep's message */
    cr_expect_null(tg_grad_norms_new(tape, NULL, ps));
    cr_expect_eq(tg_status_last(ctx), TG_ERR_ARG);
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

/* ---- out of memory anywhere: a status, nothing leaked --------------------------------- */
Test(dump, out_of_memory_in_dumps_and_norms_is_a_status_and_leaks_nothing)
{
    int completed = 0;
    for (long nth = 0; nth < 400 && !completed; nth++) {
        failing fl = {.countdown = -1};
        tg_allocator a = {f_alloc, f_realloc, f_free, &fl};
        tg_ctx *ctx = tg_ctx_new(&a);
        cr_assert_not_null(ctx);
        tg_params *ps = rnn_params(ctx);
        tg_tape *tape = tg_tape_new(ctx);
        tg_tensor *loss = rnn_record(tape, ps, 6);
        cr_assert_not_null(loss);
        fl.countdown = nth; /* fail from here on: only dump and norms allocate */
        int ok = 1;
        tg_dump_opts o = {.grads = 1, .fold = 1};
        for (int fmt = TG_DUMP_TEXT; fmt <= TG_DUMP_DOT && ok; fmt++) {
            FILE *devnull = fopen("/dev/null", "w");
            tg_status st = tg_tape_dump(tape, devnull, (tg_dump_format)fmt, &o);
            fclose(devnull);
            if (st) cr_expect_eq(st, TG_ERR_NOMEM);
            ok = st == TG_OK;
        }
        if (ok) {
            tg_grad_norms *gn = tg_grad_norms_new(tape, loss, ps);
            if (!gn) cr_expect_eq(tg_status_last(ctx), TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
            else {
                FILE *devnull = fopen("/dev/null", "w");
                tg_status st = tg_grad_norms_write(gn, devnull, 0);
                fclose(devnull);
                if (st) cr_expect_eq(st, TG_ERR_NOMEM);
                completed = st == TG_OK;
                tg_grad_norms_free(gn);
            }
        }
        tg_tape_free(tape);
        tg_params_free(ps);
        tg_ctx_free(ctx);
        cr_expect_eq(fl.live, 0, "%ld blocks leaked when allocation %ld failed", fl.live, nth);
    }
    cr_expect(completed, "never got through");
}

/* ---- the `tapegrad dump` command, as a user runs it ------------------------------------ */

static char cli_out[1 << 20], cli_err[1 << 16];

static void slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Runs `tapegrad dump ARGS` from the source tree; stdout and stderr land in
 * cli_out and cli_err.  Returns the exit status. */
static int tool(const char *args)
{
    const char *exe = getenv("TG_TOOL"), *root = getenv("TG_ROOT");
    cr_assert(exe && root, "TG_TOOL and TG_ROOT are not set (run through make test)");
    char o[] = "/tmp/tg_dump_out_XXXXXX", e[] = "/tmp/tg_dump_err_XXXXXX", cmd[4096];
    int fo = mkstemp(o), fe = mkstemp(e);
    cr_assert(fo >= 0 && fe >= 0);
    close(fo);
    close(fe);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' dump %s > %s 2> %s", root, exe, args, o, e);
    int rc = system(cmd);
    slurp(o, cli_out, sizeof cli_out);
    slurp(e, cli_err, sizeof cli_err);
    unlink(o);
    unlink(e);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int json_length(const char *json)
{
    const char *p = strstr(json, "\"length\": ");
    return p ? atoi(p + 10) : -1;
}

/* One test per model file in models/, so that they run in parallel. */
typedef struct model_file {
    char path[256]; /* relative to TG_ROOT */
} model_file;

static void free_models(struct criterion_test_params *ctp) { cr_free(ctp->params); }

ParameterizedTestParameters(dump_cli, every_shipped_model_dumps_in_all_three_formats)
{
    char pattern[4096];
    const char *root = getenv("TG_ROOT");
    snprintf(pattern, sizeof pattern, "%s/models/*.yaml", root ? root : ".");
    glob_t g;
    size_t n = glob(pattern, 0, NULL, &g) == 0 ? g.gl_pathc : 0;
    model_file *m = cr_malloc((n ? n : 1) * sizeof *m);
    /* relative to the root (whose own name may hold "models/") */
    size_t skip = strlen(pattern) - strlen("models/*.yaml");
    for (size_t i = 0; i < n; i++) snprintf(m[i].path, sizeof m[i].path, "%s", g.gl_pathv[i] + skip);
    if (!n) snprintf(m[n++].path, sizeof m->path, "models/*.yaml (none found)");
    globfree(&g);
    return cr_make_param_array(model_file, m, n, free_models);
}

ParameterizedTest(model_file *mf, dump_cli, every_shipped_model_dumps_in_all_three_formats, .timeout = 60)
{
    const char *m = mf->path;
    char args[512];
    snprintf(args, sizeof args, "%s --grads --steps 3 --format json", m);
    cr_assert_eq(tool(args), 0, "%s: %s", args, cli_err);
    jp j;
    int n = json_nodes(cli_out, &j), len = json_length(cli_out);
    cr_expect(n > 0 && n == len, "%s: JSON nodes %d, length %d", m, n, len);
    cr_expect(strstr(cli_out, "\"kind\": \"loss\""), "%s: no loss", m);
    snprintf(args, sizeof args, "%s --grads --steps 3 --format text", m);
    cr_expect_eq(tool(args), 0, "%s: %s", args, cli_err);
    cr_expect_eq(count_lines(cli_out, is_text_entry), len, "%s", m);
    cr_expect(strstr(cli_out, "[t=2]") && strstr(cli_out, " grad="), "%s", m);
    snprintf(args, sizeof args, "%s --grads --steps 3 --format dot", m);
    cr_expect_eq(tool(args), 0, "%s: %s", args, cli_err);
    cr_expect_eq(count_lines(cli_out, is_dot_entry), len, "%s", m);
    cr_expect(strstr(cli_out, "subgraph cluster_t2 {"), "%s", m);
    cr_expect_str_empty(cli_err, "%s", m);
    assert_dot_renders(cli_out);
}

Test(dump_cli, the_seed_example_names_equations_steps_and_lines)
{
    cr_assert_eq(tool("models/elman.yaml --data examples/data/seed.yaml --params examples/data/seed-params.yaml "
                      "--grads"), 0, "%s", cli_err);
    cr_expect(strstr(cli_out, " tanh          h[t=2]    models/elman.yaml:21:9  in=17    [2,1] "
                              "val=[0.3542,0.1686]"), "%s", cli_out);
    cr_expect(strstr(cli_out, "grad=[1.821,-0.4136]"), "%s", cli_out);
    cr_expect(strstr(cli_out, "val=[3.929]") && strstr(cli_out, " loss\n"), "%s", cli_out);
    cr_expect_eq(count_lines(cli_out, is_text_entry), 36);
}

Test(dump_cli, node_counts_grow_linearly_with_the_steps)
{
    int len[3], T[3] = {5, 10, 20};
    for (int k = 0; k < 3; k++) {
        char args[256];
        snprintf(args, sizeof args, "models/elman.yaml --steps %d --format json", T[k]);
        cr_assert_eq(tool(args), 0, "%s", cli_err);
        jp j;
        len[k] = json_nodes(cli_out, &j);
        cr_expect_eq(len[k], json_length(cli_out));
    }
    cr_expect_gt(len[1], len[0]);
    cr_expect_eq(2 * (len[1] - len[0]), len[2] - len[1], "%d %d %d", len[0], len[1], len[2]);
}

Test(dump_cli, detect_anomaly_names_the_equation_line_and_step_of_the_overflow)
{
    cr_expect_eq(tool("tests/data/overflow.yaml --data tests/data/overflow-data.yaml --detect-anomaly"), 4);
    cr_expect(strstr(cli_err, "tests/data/overflow.yaml:13:9: in 's' at step 4: non-finite value computed by "
                              "entry 25 (exp [1, 1]); value [inf]; inputs: input 0: entry 24 add 'a[t=4]' [1, 1] "
                              "value [3.814e+06]"), "%s", cli_err);
    /* the dump still shows the tape up to the bad number */
    const char *last = strstr(cli_out, "\n   25 exp ");
    cr_expect(last && strstr(last, " val=[inf] ") && strstr(last, " NONFINITE\n# first non-finite number: entry 25"),
              "%s", cli_out);
    cr_expect_eq(count_lines(cli_out, is_text_entry), 26);

    /* and in the graph, in red */
    cr_expect_eq(tool("tests/data/overflow.yaml --data tests/data/overflow-data.yaml --detect-anomaly "
                      "--format dot"), 4);
    cr_expect(strstr(cli_out, "e25 [label=\"s[t=4]  overflow.yaml:13\\n#25 exp [1, 1]\\nval [inf]\"") &&
              strstr(strstr(cli_out, "e25 [label"), "color=red"), "%s", cli_out);
    assert_dot_renders(cli_out);
}

Test(dump_cli, without_detection_the_first_bad_number_is_still_reported)
{
    /* backward refuses an Inf loss; the report says where it came from */
    cr_expect_eq(tool("tests/data/overflow.yaml --data tests/data/overflow-data.yaml --grads"), 4);
    cr_expect(strstr(cli_err, "backward: the loss is inf"), "%s", cli_err);
    cr_expect(strstr(cli_err, "first non-finite value: entry 25 (exp [1, 1] 's[t=4]' at "
                              "tests/data/overflow.yaml:13:9)"), "%s", cli_err);
    /* a forward dump succeeds and warns */
    cr_expect_eq(tool("tests/data/overflow.yaml --data tests/data/overflow-data.yaml --format json"), 0);
    cr_expect(strstr(cli_err, "warning: first non-finite value: entry 25 (exp [1, 1] 's[t=4]'"), "%s", cli_err);
    cr_expect(strstr(cli_out, "\"first_nonfinite\": 25"), "%s", cli_out);
}

Test(dump_cli, fold_keeps_a_thousand_steps_readable)
{
    cr_assert_eq(tool("models/elman.yaml --steps 1000 --grads --fold --format dot"), 0, "%s", cli_err);
    cr_expect(strstr(cli_out, "998 steps folded\\n(t = 2 ... 999)"), "%.2000s", cli_out);
    cr_expect_lt(count_lines(cli_out, is_dot_entry), 40);
    assert_dot_renders(cli_out);
}

Test(dump_cli, gradient_norms_as_a_table_and_as_csv)
{
    char csv[] = "/tmp/tg_norms_XXXXXX", args[512], buf[8192];
    int fd = mkstemp(csv);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(args, sizeof args, "models/elman.yaml --data examples/data/seed.yaml "
                                "--params examples/data/seed-params.yaml --norms --norms-csv %s", csv);
    cr_assert_eq(tool(args), 0, "%s", cli_err);
    cr_expect(strstr(cli_out, " step          U          W          b          V          c |      dL/da"),
              "%s", cli_out);
    cr_expect(strstr(cli_out, "\ntotal "), "%s", cli_out);
    cr_expect(!strstr(cli_out, "digraph") && !strstr(cli_out, "# tapegrad tape"), "%s", cli_out);
    slurp(csv, buf, sizeof buf);
    unlink(csv);
    cr_expect(!strncmp(buf, "step,U,W,b,V,c,dL/da,dL/dh,dL/do,dL/dloss\n0,", 43), "%s", buf);
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 1 + 4 + 1, "%s", buf); /* header, t = 0 (the initial state) ... 3, total */
}

Test(dump_cli, bad_options_are_usage_errors)
{
    cr_expect_eq(tool("models/elman.yaml --format svg"), 2);
    cr_expect(strstr(cli_err, "--format must be one of text|json|dot"), "%s", cli_err);
    cr_expect_eq(tool("models/elman.yaml --fodl"), 2);
    cr_expect(strstr(cli_err, "did you mean '--fold'"), "%s", cli_err);
    cr_expect_eq(tool("--help"), 0);
    cr_expect(strstr(cli_out, "--detect-anomaly") && strstr(cli_out, "--norms-csv FILE"), "%s", cli_out);
    cr_expect_eq(tool("models/no-such-model.yaml"), 3);
}
