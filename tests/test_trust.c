/* test_trust.c — nothing in a model, data or params file, or in a path, can run
 * code, break an output's syntax, destroy a file or hang the tool (issue 11):
 * the escaper (core/escape.c) kind by kind; hostile labels, file names and
 * titles through every dump (text, JSON, DOT) and the gradient-norm CSV, each
 * output checked by a small parser; a model file whose name would inject a
 * gnuplot `system` command, through `dump`, `check` and `train --plot`;
 * outputs that are inputs or devices refused before any work; non-finite
 * results exit 4 naming where they came from; empty params, UTF-16/32 files,
 * FIFOs and devices as inputs refused with their exact messages. */
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <tapegrad.h>
#include "models_testutil.h"
#include "tg_escape.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* Runs the tool with args from the repository root, like mt_tool, but killed
 * by SIGALRM after 60 s (alarm survives exec), so a tool that blocks on a FIFO
 * fails its test (code -SIGALRM) instead of hanging the suite. */
static mt_result tr_tool(const char *const *args)
{
    mt_chdir_root();
    const char *path = getenv("TG_TOOL");
    cr_assert(path, "TG_TOOL is not set (run through make test)");
    char out_path[] = "/tmp/tgtrust-outXXXXXX", err_path[] = "/tmp/tgtrust-errXXXXXX";
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
        signal(SIGALRM, SIG_DFL);
        alarm(60);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
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

typedef struct tmpdir {
    char path[64];
} tmpdir;

static void tmp_make(tmpdir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/tgtrustXXXXXX");
    cr_assert(mkdtemp(d->path));
}

/* Removes the directory and the files in it (tests make no subdirectories). */
static void tmp_remove(tmpdir *d)
{
    DIR *dir = opendir(d->path);
    struct dirent *e;
    char p[4096];
    while (dir && (e = readdir(dir))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", d->path, e->d_name);
        unlink(p);
    }
    if (dir) closedir(dir);
    rmdir(d->path);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* The shipped Elman model without its name: line, so that its name comes
 * from the file name; `edit` (if not NULL) replaces the line that starts
 * with "  - o = ". */
static void write_model(const char *path, const char *o_line)
{
    mt_chdir_root();
    size_t len;
    char *src = mt_read("models/elman.yaml", &len);
    cr_assert(src);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    for (char *line = src; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (!strncmp(line, "name:", 5)) {
        } else if (o_line && !strncmp(line, "  - o = ", 8))
            fprintf(f, "%s\n", o_line);
        else
            fwrite(line, 1, n, f);
        line += n;
    }
    fclose(f);
    free(src);
}

static char *escaped(const char *s, tg_esc_kind kind)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    return tg_esc_str(buf[k], sizeof buf[k], s, kind);
}

/* The hostile strings: quotes of every syntax, line breaks, control bytes, a
 * terminal escape, invalid UTF-8, a C1 control, printf directives, and the
 * gnuplot injection of the issue. */
static const char *const hostile[] = {
    "q\"uote",  "new\nline", "back\\slash", "it's",  "pct%s%n%%", "ctl\x01\x1b[31mred", "bad\xff\xfe utf8",
    "cr\r\nlf", "c1\xc2\x85next", "tab\there", "comma,\"x\"", "'\nsystem 'touch PWNED'\n'",
};
#define N_HOSTILE ((int)(sizeof hostile / sizeof hostile[0]))

/* ---- tiny checkers for each output's syntax ------------------------------------------ */

/* A JSON validator (RFC 8259): returns the end of the value at p, or NULL.
 * Strings must hold no raw control character and only valid UTF-8. */
static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

static const char *json_value(const char *p, int depth);

static const char *json_string(const char *p)
{
    if (*p++ != '"') return NULL;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i]) return NULL;
                p += 5;
            } else if (*p && strchr("\"\\/bfnrt", *p))
                p++;
            else
                return NULL;
            continue;
        }
        int n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!n) return NULL;
        for (int i = 1; i < n; i++)
            if (((unsigned char)p[i] & 0xc0) != 0x80) return NULL;
        p += n;
    }
    return p + 1;
}

static const char *json_value(const char *p, int depth)
{
    p = json_ws(p);
    if (depth > 64) return NULL;
    if (*p == '"') return json_string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = json_string(json_ws(p));
                if (!p) return NULL;
                p = json_ws(p);
                if (*p++ != ':') return NULL;
            }
            p = json_value(p, depth + 1);
            if (!p) return NULL;
            p = json_ws(p);
            if (*p == close) return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    const char *s = p;
    if (*p == '-') p++;
    if (*p < '0' || *p > '9') return NULL;
    while ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-') p++;
    return p > s ? p : NULL;
}

static int json_valid(const char *s)
{
    const char *end = json_value(s, 0);
    return end && *json_ws(end) == 0;
}

/* DOT as the dumps write it: one statement or brace per line, so no line may
 * end inside a quoted string, and braces balance. */
static int dot_lines_ok(const char *dot, char *why, size_t len)
{
    int depth = 0, lineno = 1;
    const char *p = dot;
    while (*p) {
        int in_str = 0;
        for (; *p && *p != '\n'; p++) {
            if (in_str && *p == '\\' && p[1] && p[1] != '\n') p++;
            else if (*p == '"') in_str = !in_str;
            else if (!in_str && *p == '{') depth++;
            else if (!in_str && *p == '}') depth--;
            else if ((unsigned char)*p < 0x20 && *p != '\t') {
                snprintf(why, len, "line %d: control byte 0x%02x", lineno, (unsigned char)*p);
                return 0;
            }
        }
        if (in_str) {
            snprintf(why, len, "line %d ends inside a string", lineno);
            return 0;
        }
        if (*p) p++, lineno++;
    }
    if (depth != 0) snprintf(why, len, "braces do not balance (%d)", depth);
    return depth == 0;
}

static int have_dot(void)
{
    return access("/usr/bin/dot", X_OK) == 0 || access("/usr/local/bin/dot", X_OK) == 0;
}

static void assert_dot_renders(const char *dot)
{
    if (!have_dot()) return;
    char in[] = "/tmp/tgtrust_dotXXXXXX", cmd[256];
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
    cr_expect_eq(rc, 0, "dot failed: %s\n%s", err, dot);
}

/* The text dump: every line a comment ('#') or an entry (spaces, then 'p' or
 * a digit); returns the number of lines, -1 if one is neither. */
static int text_lines(const char *text)
{
    int n = 0;
    for (const char *l = text; *l;) {
        const char *p = l + strspn(l, " ");
        if (*p != '#' && *p != 'p' && !(*p >= '0' && *p <= '9')) return -1;
        for (const char *c = l; *c && *c != '\n'; c++)
            if ((unsigned char)*c < 0x20) return -1;
        n++;
        l = strchr(l, '\n');
        if (!l) break;
        l++;
    }
    return n;
}

/* Lines of s, or -1 if one holds a control character. */
static int plain_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) {
        if (*s == '\n') n++;
        else if ((unsigned char)*s < 0x20) return -1;
    }
    return n;
}

/* RFC 4180 records with no line break inside a field; returns how many
 * records, each with `fields` fields, else -1. */
static int csv_records(const char *csv, int fields)
{
    int records = 0;
    const char *p = csv;
    while (*p) {
        int nf = 0;
        for (;;) {
            nf++;
            if (*p == '"') {
                for (p++;; p++) {
                    if (!*p || *p == '\n' || *p == '\r') return -1;
                    if (*p == '"' && p[1] == '"') p++;
                    else if (*p == '"') break;
                }
                p++;
            } else {
                while (*p && *p != ',' && *p != '\n') {
                    if (*p == '"' || (unsigned char)*p < 0x20) return -1;
                    p++;
                }
            }
            if (*p == ',') p++;
            else break;
        }
        if (*p != '\n' || nf != fields) return -1;
        p++;
        records++;
    }
    return records;
}

/* ---- the escaper, kind by kind -------------------------------------------------------- */
MT_TEST(trust, escaper_kinds)
{
    static const struct { const char *in; tg_esc_kind kind; const char *out; } cases[] = {
        {"plain_name-1.2", TG_ESC_TEXT, "plain_name-1.2"},
        {"a\nb\tc\x01\x7f", TG_ESC_TEXT, "a\\x0ab\\x09c\\x01\\x7f"},
        {"\x1b[31m", TG_ESC_TEXT, "\\x1b[31m"},
        {"bad\xff\xc3(", TG_ESC_TEXT, "bad\\xff\\xc3("},
        {"c1\xc2\x85 \xc3\xa9", TG_ESC_TEXT, "c1\\xc2\\x85 \xc3\xa9"},
        {"\xed\xa0\x80 \xc0\xaf", TG_ESC_TEXT, "\\xed\\xa0\\x80 \\xc0\\xaf"}, /* surrogate, overlong */
        {"a b\n", TG_ESC_TOKEN, "a\\x20b\\x0a"},
        {"q\"b\\s\n\t\r\b\f\x01\x7f", TG_ESC_JSON, "\"q\\\"b\\\\s\\n\\t\\r\\b\\f\\u0001\\u007f\""},
        {"\xff\xc3\xa9\xc2\x85", TG_ESC_JSON, "\"\\ufffd\xc3\xa9\\u0085\""},
        {"q\"b\\s\nx\x01", TG_ESC_DOT, "\"q\\\"b\\\\s\\nx\\\\x01\""},
        {"plain", TG_ESC_CSV, "plain"},
        {"a,b", TG_ESC_CSV, "\"a,b\""},
        {"say \"hi\"", TG_ESC_CSV, "\"say \"\"hi\"\"\""},
        {"two\nlines", TG_ESC_CSV, "\"two\\x0alines\""},
        {" pad", TG_ESC_CSV, "\" pad\""},
        {"it's", TG_ESC_GNUPLOT, "'it''s'"},
        {"'\nsystem 'touch PWNED'\n'", TG_ESC_GNUPLOT, "'''\\x0asystem ''touch PWNED''\\x0a'''"},
        {"`cmd` @m \\", TG_ESC_GNUPLOT, "'`cmd` @m \\'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        cr_expect_str_eq(tg_esc_str(buf, sizeof buf, cases[i].in, cases[i].kind), cases[i].out, "case %zu", i);
        char *mem = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&mem, &len);
        cr_assert(f);
        cr_expect_eq(tg_esc_write(f, cases[i].in, cases[i].kind), 0);
        fclose(f);
        cr_expect_str_eq(mem, cases[i].out, "case %zu (stream)", i);
        free(mem);
    }
    /* a short buffer cuts at a whole escape and keeps the closing quote */
    char small[8];
    cr_expect_str_eq(tg_esc_str(small, sizeof small, "abcd\ne", TG_ESC_TEXT), "abcd");
    cr_expect_str_eq(tg_esc_str(small, sizeof small, "abc\"def", TG_ESC_JSON), "\"abc\\\"\"");
    cr_expect(tg_esc_needed("a\nb") && tg_esc_needed("\xff") && !tg_esc_needed("ok \xc3\xa9 '\""));
}

/* Valid UTF-8 with no control character (C0, DEL, C1)? */
static int clean_utf8(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p < 0x20 || *p == 0x7f) return 0;
        int n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3 : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
        if (!n || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80) return 0;
        p += n;
    }
    return 1;
}

/* 20000 random byte strings (biased to the bytes that matter) through every
 * kind: each output keeps its syntax. */
MT_TEST(trust, escaper_random_strings_keep_every_syntax)
{
    static const char special[] = "\"'\\\n\r\t,` @%\x01\x1b\x7f\x80\x85\xc2\xc3\xa9\xe2\x82\xac\xed\xa0\xf0\x9f\xff";
    uint64_t rng = 0x9e3779b97f4a7c15u;
    char in[64], out[1024];
    for (int iter = 0; iter < 20000; iter++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        int n = (int)(rng >> 58); /* 0..63 */
        for (int i = 0; i < n; i++) {
            rng = rng * 6364136223846793005u + 1442695040888963407u;
            unsigned r = (unsigned)(rng >> 33);
            char c = r % 3 ? special[r / 3 % (sizeof special - 1)] : (char)(r / 3 % 255 + 1);
            in[i] = c;
        }
        in[n] = 0;
        cr_assert(clean_utf8(tg_esc_str(out, sizeof out, in, TG_ESC_TEXT)), "TEXT %d: %s", iter, out);
        tg_esc_str(out, sizeof out, in, TG_ESC_TOKEN);
        cr_assert(clean_utf8(out) && !strchr(out, ' '), "TOKEN %d: %s", iter, out);
        tg_esc_str(out, sizeof out, in, TG_ESC_JSON);
        cr_assert(json_valid(out), "JSON %d: %s", iter, out);
        tg_esc_str(out, sizeof out, in, TG_ESC_DOT);
        char dot[1100], why[128];
        snprintf(dot, sizeof dot, "x [label=%s];\n", out);
        cr_assert(clean_utf8(out) && dot_lines_ok(dot, why, sizeof why), "DOT %d: %s: %s", iter, why, out);
        tg_esc_str(out, sizeof out, in, TG_ESC_CSV);
        char rec[1100];
        snprintf(rec, sizeof rec, "%s,x\n", out);
        cr_assert(csv_records(rec, 2) == 1, "CSV %d: %s", iter, out);
        tg_esc_str(out, sizeof out, in, TG_ESC_GNUPLOT);
        size_t len = strlen(out);
        cr_assert(len >= 2 && out[0] == '\'' && out[len - 1] == '\'' && clean_utf8(out), "GNUPLOT %d: %s", iter, out);
        for (size_t i = 1; i + 1 < len; i++) /* inside, quotes come in pairs */
            if (out[i] == '\'') cr_assert(out[++i] == '\'', "GNUPLOT %d: %s", iter, out);
    }
}

/* ---- hostile labels, file names and titles through every dump --------------------------- */

/* A tape whose parameter, input label, entry label, source file and title
 * are all h. */
static void hostile_tape(const char *h, tg_ctx **ctx, tg_params **ps, tg_tape **tape, tg_tensor **loss)
{
    *ctx = tg_ctx_new(NULL);
    cr_assert(*ctx);
    *ps = tg_params_new(*ctx);
    *tape = tg_tape_new(*ctx);
    tg_tensor *p = tg_params_add(*ps, h, 2, 0);
    cr_assert(p, "%s", tg_errmsg(*ctx));
    tg_real xv[2] = {1, 2};
    tg_tensor *x = tg_input(*tape, 2, 0, xv, 0);
    tg_tensor_set_label(x, h, 1);
    tg_tensor *y = tg_add(*tape, x, p);
    tg_tensor_set_label(y, h, 1);
    tg_tensor_set_source(y, h, 3, 4);
    tg_tensor *z = tg_add(*tape, y, p);
    tg_tensor_set_label(z, "z", 2);
    *loss = tg_sum(*tape, z);
    cr_assert(*loss);
}

static char *dump_to_string(tg_tape *tape, tg_dump_format fmt, const tg_dump_opts *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    cr_assert_eq(tg_tape_dump(tape, f, fmt, o), TG_OK, "%s", tg_errmsg(tg_tape_ctx(tape)));
    fclose(f);
    return buf;
}

MT_TEST(trust, hostile_names_in_dumps_keep_each_syntax)
{
    for (int i = 0; i < N_HOSTILE; i++) {
        const char *h = hostile[i];
        tg_ctx *ctx;
        tg_params *ps;
        tg_tape *tape;
        tg_tensor *loss;
        hostile_tape(h, &ctx, &ps, &tape, &loss);
        cr_assert_eq(tg_backward(tape, loss), TG_OK);
        tg_dump_opts o = {.grads = 1, .title = h, .loss = loss};

        char *text = dump_to_string(tape, TG_DUMP_TEXT, &o);
        /* title, column heads, 1 parameter and 4 entries: 7 lines, nothing else */
        cr_expect_eq(text_lines(text), 7, "case %d:\n%s", i, text);
        cr_expect(strstr(text, escaped(h, TG_ESC_TOKEN)), "case %d: %s not in\n%s", i, escaped(h, TG_ESC_TOKEN),
                  text);
        char *json = dump_to_string(tape, TG_DUMP_JSON, &o);
        cr_expect(json_valid(json), "case %d:\n%s", i, json);
        cr_expect(strstr(json, escaped(h, TG_ESC_JSON)), "case %d:\n%s", i, json);
        char *dot = dump_to_string(tape, TG_DUMP_DOT, &o);
        char why[128] = "";
        cr_expect(dot_lines_ok(dot, why, sizeof why), "case %d: %s\n%s", i, why, dot);
        assert_dot_renders(dot);
        free(text);
        free(json);
        free(dot);

        /* the gradient norms: step, the parameter, dL/d<label> and dL/dz */
        tg_grad_norms *gn = tg_grad_norms_new(tape, loss, ps);
        cr_assert(gn, "%s", tg_errmsg(ctx));
        int rows, cols;
        tg_grad_norms_size(gn, &rows, &cols);
        char *csv = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&csv, &len);
        cr_assert_eq(tg_grad_norms_write(gn, f, 1), TG_OK);
        fclose(f);
        cr_expect_eq(csv_records(csv, cols + 1), rows + 2, "case %d:\n%s", i, csv);
        char *table = NULL;
        f = open_memstream(&table, &len);
        cr_assert_eq(tg_grad_norms_write(gn, f, 0), TG_OK);
        fclose(f);
        cr_expect_eq(plain_lines(table), rows + 4, "case %d:\n%s", i, table); /* 2 notes, heads, rows, total */
        free(csv);
        free(table);
        tg_grad_norms_free(gn);

        /* anomaly messages name the entry in one line */
        tg_tape_reset(tape);
        tg_real bad[2] = {NAN, 1};
        tg_tensor *x = tg_input(tape, 2, 0, bad, 0);
        tg_tensor_set_label(x, h, 1);
        tg_tensor *y = tg_add(tape, x, tg_params_at(ps, 0));
        tg_tensor_set_source(y, h, 1, 1);
        cr_expect_eq(tg_tape_check_finite(tape, NULL), TG_ERR_NONFINITE);
        const char *msg = tg_errmsg(ctx);
        for (const char *c = msg; *c; c++) cr_expect((unsigned char)*c >= 0x20, "case %d: %s", i, msg);
        tg_tape_free(tape);
        tg_params_free(ps);
        tg_ctx_free(ctx);
    }
}

/* ---- through the tool: a model file named to inject a gnuplot command ------------------ */
#define INJECT_NAME "x'\nsystem 'touch PWNED'\n'.yaml"

static void no_marker(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/PWNED", dir);
    cr_expect_neq(access(p, F_OK), 0, "%s was created", p);
    mt_chdir_root();
    cr_expect_neq(access("PWNED", F_OK), 0, "PWNED was created in the repository root");
}

MT_TEST(trust, hostile_model_path_through_dump_and_messages, .timeout = 120)
{
    tmpdir d;
    tmp_make(&d);
    char model[256], csv[256];
    snprintf(model, sizeof model, "%s/" INJECT_NAME, d.path);
    snprintf(csv, sizeof csv, "%s/norms.csv", d.path);
    write_model(model, NULL);
    const char *shown = escaped(model, TG_ESC_TEXT);

    const char *text[] = {"dump", model, "--grads", NULL};
    mt_result r = tr_tool(text);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_gt(text_lines(r.out), 10, "%s", r.out);
    char want[1024];
    snprintf(want, sizeof want, "# tapegrad tape of %s: ", shown);
    cr_expect(!strncmp(r.out, want, strlen(want)), "%s", r.out);
    mt_result_free(&r);

    const char *json[] = {"dump", model, "--grads", "--format", "json", NULL};
    r = tr_tool(json);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(json_valid(r.out), "%s", r.out);
    cr_expect(strstr(r.out, escaped(model, TG_ESC_JSON)), "%s", r.out);
    mt_result_free(&r);

    const char *dot[] = {"dump", model, "--grads", "--format", "dot", NULL};
    r = tr_tool(dot);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char why[128] = "";
    cr_expect(dot_lines_ok(r.out, why, sizeof why), "%s\n%s", why, r.out);
    assert_dot_renders(r.out);
    mt_result_free(&r);

    const char *norms[] = {"dump", model, "--norms-csv", csv, NULL};
    r = tr_tool(norms);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *c = mt_read(csv, NULL);
    cr_assert(c);
    cr_expect(!strncmp(c, "step,U,W,b,V,c,dL/da,dL/dh,dL/do,dL/dloss\n", 42), "%s", c);
    cr_expect_gt(csv_records(c, 10), 2, "%s", c);
    free(c);
    mt_result_free(&r);

    /* the model's name comes from the file name, with the name rule */
    const char *check[] = {"check", model, "--steps", "2", NULL};
    r = tr_tool(check);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(!strncmp(r.out, "checking x__system__touch_PWNED___: ", 36), "%s", r.out);
    mt_result_free(&r);

    /* an error message naming the file stays on one line */
    const char *bad_dim[] = {"check", model, "--dim", "hiden=3", NULL};
    r = tr_tool(bad_dim);
    cr_expect_eq(r.code, 2);
    snprintf(want, sizeof want, "%s: cannot set dim 'hiden': the model has no such dim (did you mean 'hidden'?)\n",
             shown);
    cr_expect_str_eq(r.err, want);
    mt_result_free(&r);
    const char *no_data[] = {"grad", model, "--data", model, NULL};
    r = tr_tool(no_data);
    cr_expect_eq(r.code, 3);
    snprintf(want, sizeof want, "%s:8:1: 'dims' is not an input or target of model x__system__touch_PWNED___\n",
             shown);
    cr_expect_str_eq(r.err, want);
    mt_result_free(&r);
    no_marker(d.path);
    tmp_remove(&d);
}

static int have_gnuplot(void)
{
    return access("/usr/bin/gnuplot", X_OK) == 0 || access("/usr/local/bin/gnuplot", X_OK) == 0;
}

MT_TEST(trust, plot_cannot_run_commands, .timeout = 120)
{
    tmpdir d;
    tmp_make(&d);
    char model[256], plot[256], log[256];
    snprintf(model, sizeof model, "%s/" INJECT_NAME, d.path);
    write_model(model, NULL);
    /* the model's file name, the log's and the plot's each carry an injection */
    snprintf(log, sizeof log, "%s/l'; system('touch PWNED'); '.csv", d.path);
    snprintf(plot, sizeof plot, "%s/p'`touch PWNED`'.svg", d.path);
    const char *args[] = {"train", model, "--data", "examples/data/seed.yaml", "--epochs", "3", "--quiet",
                          "--log", log, "--plot", plot, NULL};
    mt_result r = tr_tool(args);
    cr_expect_eq(r.code, 0, "%s", r.err);
    no_marker(d.path);
    if (have_gnuplot()) {
        cr_expect_str_empty(r.err);
        char *svg = mt_read(plot, NULL);
        cr_assert(svg, "no %s", plot);
        cr_expect(strstr(svg, "</svg>"));
        cr_expect(strstr(svg, "tapegrad train x__system__touch_PWNED___"));
        free(svg);
    }
    cr_expect(!strstr(r.out, "<svg"), "%s", r.out);
    mt_result_free(&r);

    /* a log name with a line break cannot be quoted for gnuplot: a warning */
    snprintf(log, sizeof log, "%s/l'\nsystem 'touch PWNED'\n'.csv", d.path);
    const char *nl[] = {"train", model, "--data", "examples/data/seed.yaml", "--epochs", "3", "--quiet",
                        "--log", log, "--plot", plot, NULL};
    r = tr_tool(nl);
    cr_expect_eq(r.code, 0, "%s", r.err);
    if (have_gnuplot()) {
        char want[1024];
        snprintf(want, sizeof want,
                 "tapegrad train: warning: no plot: the file name %s holds a control character or invalid UTF-8, "
                 "which gnuplot cannot be given safely\n",
                 escaped(log, TG_ESC_TEXT));
        cr_expect_str_eq(r.err, want);
    }
    no_marker(d.path);
    mt_result_free(&r);
    tmp_remove(&d);
}

MT_TEST(trust, plot_into_a_missing_directory_is_refused_first)
{
    tmpdir d;
    tmp_make(&d);
    char plot[256], want[512];
    snprintf(plot, sizeof plot, "%s/no/such/dir/loss.svg", d.path);
    const char *args[] = {"train", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--epochs", "3",
                          "--plot", plot, NULL};
    mt_result r = tr_tool(args);
    cr_expect_eq(r.code, 2);
    snprintf(want, sizeof want, "tapegrad train: %s: directory %s/no/such/dir does not exist\n", plot, d.path);
    cr_expect_str_eq(r.err, want);
    cr_expect_str_empty(r.out); /* no training, and no SVG */
    mt_result_free(&r);
    tmp_remove(&d);
}

/* ---- outputs that are inputs or devices are refused before any work -------------------- */
MT_TEST(trust, dump_outputs_are_checked_first)
{
    tmpdir d;
    tmp_make(&d);
    char model[256], data[256], params[256], link[256], want[1024];
    snprintf(model, sizeof model, "%s/m.yaml", d.path);
    snprintf(data, sizeof data, "%s/d.yaml", d.path);
    snprintf(params, sizeof params, "%s/p.yaml", d.path);
    snprintf(link, sizeof link, "%s/link.yaml", d.path);
    write_model(model, NULL);
    mt_chdir_root();
    char *seed = mt_read("examples/data/seed.yaml", NULL), *sp = mt_read("examples/data/seed-params.yaml", NULL);
    write_file(data, seed, strlen(seed));
    write_file(params, sp, strlen(sp));
    cr_assert_eq(symlink(model, link), 0);
    char *before = mt_read(model, NULL);
    struct {
        const char *opt, *path, *input;
    } same[] = {
        {"--output", model, model}, {"--output", data, data},   {"--norms-csv", params, params},
        {"--output", link, model},  {"--norms-csv", model, model},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        const char *args[] = {"dump", model, "--data", data, "--params", params, same[i].opt, same[i].path, NULL};
        mt_result r = tr_tool(args);
        cr_expect_eq(r.code, 2, "case %zu", i);
        snprintf(want, sizeof want, "tapegrad dump: %s: is the same file as the input %s; refusing to overwrite it\n",
                 same[i].path, same[i].input);
        cr_expect_str_eq(r.err, want, "case %zu", i);
        cr_expect_str_empty(r.out);
        mt_result_free(&r);
    }
    char *after = mt_read(model, NULL);
    cr_expect_str_eq(after, before);
    char *d_after = mt_read(data, NULL), *p_after = mt_read(params, NULL);
    cr_expect_str_eq(d_after, seed);
    cr_expect_str_eq(p_after, sp);

    /* a device: /dev/null stays a device (root could replace it) */
    const char *dev[] = {"dump", model, "--output", "/dev/null", NULL};
    mt_result r = tr_tool(dev);
    cr_expect_eq(r.code, 2);
    cr_expect_str_eq(r.err, "tapegrad dump: /dev/null: is a character device, not a regular file; refusing to "
                            "write it\n");
    struct stat st;
    cr_expect(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    mt_result_free(&r);
    /* a missing directory */
    char out[256];
    snprintf(out, sizeof out, "%s/nodir/n.csv", d.path);
    const char *missing[] = {"dump", model, "--norms-csv", out, NULL};
    r = tr_tool(missing);
    cr_expect_eq(r.code, 2);
    snprintf(want, sizeof want, "tapegrad dump: %s: directory %s/nodir does not exist\n", out, d.path);
    cr_expect_str_eq(r.err, want);
    cr_expect_str_empty(r.out);
    mt_result_free(&r);
    /* both outputs into one file */
    snprintf(out, sizeof out, "%s/o.txt", d.path);
    const char *both[] = {"dump", model, "--output", out, "--norms-csv", out, NULL};
    r = tr_tool(both);
    cr_expect_eq(r.code, 2);
    snprintf(want, sizeof want, "tapegrad dump: --output and --norms-csv name the same file %s\n"
                                "Try 'tapegrad dump --help'.\n", out);
    cr_expect_str_eq(r.err, want);
    mt_result_free(&r);
    free(before);
    free(after);
    free(d_after);
    free(p_after);
    free(seed);
    free(sp);
    tmp_remove(&d);
}

/* ---- non-finite results: exit 4, naming where the first bad number came from ------------ */
MT_TEST(trust, non_finite_results_exit_4)
{
    tmpdir d;
    tmp_make(&d);
    char model[256], want[1024];
    snprintf(model, sizeof model, "%s/overflow.yaml", d.path);
    write_model(model, "  - o = exp(V @ h + c + 1000)");
    const char *grad[] = {"grad", model, "--data", "examples/data/seed.yaml", "--format", "json", NULL};
    mt_result r = tr_tool(grad);
    cr_expect_eq(r.code, 4);
    snprintf(want, sizeof want,
             "tapegrad grad: first non-finite value: entry 9 (exp [1, 1] 'o[t=1]' at %s:21:9); value [inf]; "
             "inputs: input 0: entry 8 scale 'o[t=1]' [1, 1] value [1000]\n", model);
    cr_expect_str_eq(r.err, want);
    cr_expect_str_empty(r.out);
    mt_result_free(&r);
    const char *run[] = {"run", model, "--data", "examples/data/seed.yaml", NULL};
    r = tr_tool(run);
    cr_expect_eq(r.code, 4);
    snprintf(want, sizeof want,
             "tapegrad run: first non-finite value: entry 9 (exp [1, 1] 'o[t=1]' at %s:21:9); value [inf]; "
             "inputs: input 0: entry 8 scale 'o[t=1]' [1, 1] value [1000]\n", model);
    cr_expect_str_eq(r.err, want);
    cr_expect_str_empty(r.out);
    mt_result_free(&r);
    tmp_remove(&d);
}

/* ---- inputs the readers refuse --------------------------------------------------------- */
MT_TEST(trust, params_that_set_nothing_are_refused)
{
    tmpdir d;
    tmp_make(&d);
    static const struct { const char *text, *err; } cases[] = {
        {"", "%s:1:1: the params file is empty: it sets no parameter of model elman\n"},
        {"# only a comment\n\n", "%s:1:1: the params file is empty: it sets no parameter of model elman\n"},
        {"{}\n", "%s:1:1: the params file holds no parameters of model elman\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256], want[512];
        snprintf(path, sizeof path, "%s/p%zu.yaml", d.path, i);
        write_file(path, cases[i].text, strlen(cases[i].text));
        const char *args[] = {"grad", "models/elman.yaml", "--data", "examples/data/seed.yaml", "--params", path,
                              NULL};
        mt_result r = tr_tool(args);
        cr_expect_eq(r.code, 3, "case %zu", i);
        snprintf(want, sizeof want, cases[i].err, path);
        cr_expect_str_eq(r.err, want, "case %zu", i);
        mt_result_free(&r);
    }
    tmp_remove(&d);
}

/* UTF-16 (with and without a byte-order mark) and UTF-32 as model, data, params. */
static size_t encode(const char *utf8, int width, int bom, char *out)
{
    size_t n = 0;
    if (bom) {
        static const char b16[] = {'\xff', '\xfe'}, b32[] = {'\xff', '\xfe', 0, 0};
        memcpy(out, width == 2 ? b16 : b32, (size_t)width);
        n = (size_t)width;
    }
    for (const char *p = utf8; *p; p++) { /* ASCII text: little-endian code units */
        memset(out + n, 0, (size_t)width);
        out[n] = *p;
        n += (size_t)width;
    }
    return n;
}

MT_TEST(trust, utf16_and_utf32_files_are_named)
{
    tmpdir d;
    tmp_make(&d);
    mt_chdir_root();
    char *model = mt_read("models/elman.yaml", NULL), *data = mt_read("examples/data/seed.yaml", NULL),
         *params = mt_read("examples/data/seed-params.yaml", NULL);
    cr_assert(model && data && params);
    char *buf = malloc(4 * strlen(model) + 8);
    static const struct { int width, bom; } enc[] = {{2, 1}, {2, 0}, {4, 1}, {4, 0}};
    for (size_t e = 0; e < 4; e++) {
        for (int which = 0; which < 3; which++) {
            const char *src = which == 0 ? model : which == 1 ? data : params;
            char path[256], want[512];
            snprintf(path, sizeof path, "%s/f%zu-%d.yaml", d.path, e, which);
            write_file(path, buf, encode(src, enc[e].width, enc[e].bom, buf));
            const char *args[] = {"grad", which == 0 ? path : "models/elman.yaml", "--data",
                                  which == 1 ? path : "examples/data/seed.yaml", "--params",
                                  which == 2 ? path : "examples/data/seed-params.yaml", NULL};
            mt_result r = tr_tool(args);
            cr_expect_eq(r.code, 3, "%zu/%d", e, which);
            snprintf(want, sizeof want, "%s: this file is UTF-%d; save it as UTF-8\n", path, enc[e].width * 8);
            cr_expect_str_eq(r.err, want, "%zu/%d", e, which);
            mt_result_free(&r);
        }
    }
    free(buf);
    free(model);
    free(data);
    free(params);
    tmp_remove(&d);
}

/* A FIFO with no writer, a device and a directory as MODEL, --data and
 * --params: refused at once (tr_tool kills a tool that blocks). */
MT_TEST(trust, special_files_as_inputs_are_refused_at_once)
{
    tmpdir d;
    tmp_make(&d);
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo.yaml", d.path);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    static const char *const what[] = {"model", "data", "params"};
    const char *special[] = {fifo, "/dev/null", d.path};
    const char *kind[] = {"it is a FIFO, not a regular file", "it is a character device, not a regular file",
                          "it is a directory"};
    for (int s = 0; s < 3; s++)
        for (int which = 0; which < 3; which++) {
            const char *args[] = {"grad", which == 0 ? special[s] : "models/elman.yaml", "--data",
                                  which == 1 ? special[s] : "examples/data/seed.yaml", "--params",
                                  which == 2 ? special[s] : "examples/data/seed-params.yaml", NULL};
            mt_result r = tr_tool(args);
            cr_expect_eq(r.code, 3, "%d/%d: exit %d", s, which, r.code);
            char want[512];
            snprintf(want, sizeof want, "%s: cannot read the %s file: %s\n", special[s], what[which], kind[s]);
            cr_expect_str_eq(r.err, want);
            mt_result_free(&r);
        }
    tmp_remove(&d);
}
