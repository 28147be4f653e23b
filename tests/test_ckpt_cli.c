/* test_ckpt_cli.c — a checkpoint where a MODEL goes: `run`, `grad`, `dump` and `check` read
 * the model and parameters a checkpoint holds, `export` writes them as the YAML params file
 * that --params reads (the same numbers: run through either gives the same output), and
 * `sample` finds its vocabulary there.  A truncated, corrupted, foreign or newer-version
 * checkpoint given to each command is refused with its exact message and exit status 3.
 * Checkpoints are made here through the library's trainer (tg_trainer_save). */
#include <criterion/criterion.h>
#include "ckpt_file.h"
#include "models_testutil.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tg-ckcli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(getenv("TG_ROOT"), "TG_ROOT is not set (run through make test)");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(ckpt_cli, .init = setup, .fini = teardown, .timeout = 60);

static const char *path(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Trains model (a path from the repository root) on data for `steps` steps and saves to
 * out.  A text (data not ending in .yaml) sets the model's vocab from its characters. */
static void make_checkpoint(const char *model, const char *data, int steps, const char *out)
{
    mt_chdir_root();
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_model *m = tg_model_load(ctx, model, NULL, 0);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    tg_trainset *set = tg_trainset_load(ctx, m, data, NULL);
    cr_assert_not_null(set, "%s", tg_errmsg(ctx));
    if (tg_trainset_is_text(set)) {
        tg_dim d = {"vocab", tg_vocab_size(tg_trainset_vocab(set))};
        tg_model_free(m);
        m = tg_model_load(ctx, model, &d, 1);
        cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    }
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK, "%s", tg_errmsg(ctx));
    tg_train_opts o = tg_train_defaults();
    o.bptt = 16;
    tg_trainer *tr = tg_trainer_new(m, ps, &o);
    cr_assert_not_null(tr, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_set_data(tr, set, NULL), TG_OK, "%s", tg_errmsg(ctx));
    for (int i = 0; i < steps; i++) cr_assert_eq(tg_trainer_step(tr), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_trainer_save(tr, out), TG_OK, "%s", tg_errmsg(ctx));
    tg_trainer_free(tr);
    tg_trainset_free(set);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

#define tool(...) mt_tool((const char *[]){__VA_ARGS__, NULL})

/* s with every "CK(" and the ")" after the model's path removed and runs of spaces made one:
 * a dump's source column reads CK(models/elman.yaml):18:11 for a checkpoint's model */
static void normalize(char *s, const char *ck)
{
    char pre[300];
    snprintf(pre, sizeof pre, "%s(", ck);
    char *p;
    while ((p = strstr(s, pre))) memmove(p, p + strlen(pre), strlen(p + strlen(pre)) + 1);
    while ((p = strstr(s, ".yaml):"))) memmove(p + 5, p + 6, strlen(p + 6) + 1);
    char *w = s;
    for (const char *r = s; *r; r++)
        if (!(*r == ' ' && w > s && w[-1] == ' ')) *w++ = *r;
    *w = 0;
}

static void expect_same(mt_result a, mt_result b, const char *what)
{
    cr_assert_eq(a.code, 0, "%s: %s", what, a.err);
    cr_assert_eq(b.code, 0, "%s: %s", what, b.err);
    cr_assert_str_eq(a.out, b.out, "%s", what);
}

Test(ckpt_cli, run_grad_dump_check_read_a_checkpoint_and_export_writes_its_params)
{
    const char *ck = path("seed.tgckpt"), *yaml = path("seed.yaml");
    make_checkpoint("models/elman.yaml", "examples/data/seed.yaml", 3, ck);
    mt_result r = tool("export", ck, "--params", yaml);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char want[512];
    snprintf(want, sizeof want, "wrote %s: 5 parameters of elman (13 numbers)\n", yaml);
    cr_assert_str_eq(r.out, want);
    mt_result_free(&r);

    /* the checkpoint as MODEL, and the model with the exported params, agree everywhere */
    const char *data = "examples/data/seed.yaml";
    const char *cmds[] = {"run", "grad"};
    for (int k = 0; k < 2; k++) {
        mt_result a = tool(cmds[k], ck, "--data", data);
        mt_result b = tool(cmds[k], "models/elman.yaml", "--data", data, "--params", yaml);
        expect_same(a, b, cmds[k]);
        mt_result_free(&a);
        mt_result_free(&b);
    }
    /* and they are not the model's own init: the checkpoint's params were trained */
    mt_result a = tool("run", ck, "--data", data);
    mt_result b = tool("run", "models/elman.yaml", "--data", data);
    cr_assert_str_neq(a.out, b.out);
    mt_result_free(&a);
    mt_result_free(&b);
    /* a dump's first line names what it read; the entries are the same */
    a = tool("dump", ck, "--data", data, "--grads");
    b = tool("dump", "models/elman.yaml", "--data", data, "--params", yaml, "--grads");
    cr_assert_eq(a.code, 0, "%s", a.err);
    const char *ea = strchr(a.out, '\n'), *eb = strchr(b.out, '\n');
    cr_assert(ea && eb);
    cr_assert(strstr(a.out, ck) && strstr(a.out, ck) < ea, "the title names the checkpoint: %.*s",
              (int)(ea - a.out), a.out);
    normalize(a.out, ck);
    normalize(b.out, ck);
    ea = strchr(a.out, '\n');
    eb = strchr(b.out, '\n');
    cr_assert_str_eq(ea, eb, "dump entries");
    mt_result_free(&a);
    mt_result_free(&b);
    a = tool("check", ck, "--steps", "4");
    cr_assert_eq(a.code, 0, "check: %s%s", a.out, a.err);
    mt_result_free(&a);

    /* export refuses to overwrite its input, and a missing --params */
    r = tool("export", ck, "--params", ck);
    cr_assert_eq(r.code, 2);
    snprintf(want, sizeof want, "tapegrad export: %s: is the same file as the input %s; refusing to "
             "overwrite it\n", ck, ck);
    cr_assert_str_eq(r.err, want);
    mt_result_free(&r);
    r = tool("export", ck);
    cr_assert_eq(r.code, 2);
    cr_assert(strstr(r.err, "tapegrad export: --params OUT is required"), "%s", r.err);
    mt_result_free(&r);
}

static void write_bytes(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* The four kinds of bad checkpoint, passed to every command that takes one. */
Test(ckpt_cli, every_command_refuses_bad_checkpoints)
{
    const char *ck = path("good.tgckpt");
    make_checkpoint("models/elman.yaml", "examples/data/seed.yaml", 1, ck);
    size_t n;
    unsigned char *b = (unsigned char *)mt_read(ck, &n);
    cr_assert(b && n > 100);
    char msg[512], last[TGC_MAX_NAME + 1];
    tgc_file *f;
    cr_assert_eq(tgc_open(ck, &f, msg, sizeof msg), TG_OK, "%s", msg);
    snprintf(last, sizeof last, "%s", tgc_section_name(f, tgc_section_count(f) - 1));
    cr_assert_str_eq(tgc_section_name(f, 0), "model", "the cut below falls in its header");
    tgc_close(f);

    const char *cut = path("cut.tgckpt"), *bad = path("bad.tgckpt"), *v2 = path("v2.tgckpt"),
               *png = path("picture.png");
    write_bytes(cut, b, 40);
    b[n - 1] ^= 0x20;
    write_bytes(bad, b, n);
    b[n - 1] ^= 0x20;
    b[8] = 2; /* version 2, with the header's checksum made right */
    uint32_t crc = tgc_crc32(0, b, 24);
    for (int i = 0; i < 4; i++) b[24 + i] = (unsigned char)(crc >> (8 * i));
    write_bytes(v2, b, n);
    write_bytes(png, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    free(b);

    char want_cut[512], want_bad[512], want_v2[512], want_png[512];
    snprintf(want_cut, sizeof want_cut, "%s: truncated: section 1's header ends at byte 47 of 40\n", cut);
    snprintf(want_bad, sizeof want_bad, "%s: section '%s' is corrupted (checksum mismatch)\n", bad, last);
    snprintf(want_v2, sizeof want_v2, "%s: checkpoint format version 2 is newer than this tapegrad reads (1); "
             "upgrade tapegrad\n", v2);
    const char *files[] = {cut, bad, v2};
    const char *wants[] = {want_cut, want_bad, want_v2};
    const char *data = "examples/data/seed.yaml";
    for (int c = 0; c < 6; c++) {
        for (int k = 0; k < 4; k++) {
            const char *file = k < 3 ? files[k] : png;
            mt_result r;
            switch (c) {
            case 0: r = tool("run", file, "--data", data); break;
            case 1: r = tool("grad", file, "--data", data); break;
            case 2: r = tool("dump", file, "--data", data); break;
            case 3: r = tool("check", file); break;
            case 4: r = tool("export", file, "--params", path("out.yaml")); break;
            default: r = tool("sample", file); break;
            }
            cr_assert_eq(r.code, 3, "command %d, file %s: exit %d: %s", c, file, r.code, r.err);
            cr_assert_str_eq(r.out, "");
            if (k < 3) {
                cr_assert_str_eq(r.err, wants[k], "command %d", c);
            } else if (c >= 4) {
                /* sample and export take only a checkpoint */
                snprintf(want_png, sizeof want_png, "%s: not a tapegrad checkpoint (%s reads what tapegrad "
                         "train --save writes)\n", png, c == 4 ? "export" : "sample");
                cr_assert_str_eq(r.err, want_png);
            } else {
                /* run, grad, dump and check read a model file unless it is a checkpoint */
                snprintf(want_png, sizeof want_png, "%s:1:1: ", png);
                cr_assert(!strncmp(r.err, want_png, strlen(want_png)), "command %d: %s", c, r.err);
            }
            mt_result_free(&r);
        }
    }
    cr_assert_eq(access(path("out.yaml"), F_OK), -1, "export wrote nothing");
}

Test(ckpt_cli, sample_reads_the_vocabulary_from_the_checkpoint)
{
    const char *text = path("text.txt"), *ck = path("chars.tgckpt");
    const char *t = "naïve café, déjà vu; naïve café, déjà vu; naïve café, déjà vu\n";
    char body[4096] = "";
    for (int i = 0; i < 20; i++) strcat(body, t);
    write_bytes(text, body, strlen(body));
    make_checkpoint("models/char_rnn.yaml", text, 3, ck);

    mt_result a = tool("sample", ck, "--length", "200", "--seed", "5");
    mt_result b = tool("sample", ck, "--length", "200", "--seed", "5");
    cr_assert_eq(a.code, 0, "%s", a.err);
    cr_assert_str_eq(a.out, b.out, "the same seed draws the same text");
    mt_result_free(&b);
    /* 200 characters of the text's own alphabet (some of them two bytes), then a newline */
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)a.out; *p; p++) {
        if ((*p & 0xC0) == 0x80) continue;
        chars++;
        if (*p == '\n' && p[1] == 0) break;
        if (*p >= 0x80) {
            char one[5] = {0};
            memcpy(one, p, 2);
            cr_assert(strstr(t, one), "a character from outside the text: %s", one);
        } else {
            cr_assert(strchr(t, *p), "a character from outside the text: 0x%02x", *p);
        }
    }
    cr_assert_eq(chars, 201, "%s", a.out);
    mt_result_free(&a);

    /* a prime of the text's characters is echoed first; one from outside is refused */
    a = tool("sample", ck, "--prime", "café", "--length", "5");
    cr_assert_eq(a.code, 0, "%s", a.err);
    cr_assert(!strncmp(a.out, "café", strlen("café")), "%s", a.out);
    mt_result_free(&a);
    a = tool("sample", ck, "--prime", "caf€");
    cr_assert_eq(a.code, 2);
    cr_assert_str_eq(a.err, "tapegrad sample: --prime: character U+20AC is not in the model's vocabulary of "
                            "16 characters\n");
    mt_result_free(&a);
    a = tool("sample", ck, "--prime", "\xff");
    cr_assert_eq(a.code, 2);
    cr_assert_str_eq(a.err, "tapegrad sample: --prime: the byte 0xFF is not in the model's vocabulary of "
                            "16 characters\n");
    mt_result_free(&a);

    /* a checkpoint of a model trained on sequences has no vocabulary */
    make_checkpoint("models/elman.yaml", "examples/data/seed.yaml", 1, path("seed.tgckpt"));
    a = tool("sample", path("seed.tgckpt"));
    cr_assert_eq(a.code, 3);
    char want[512];
    snprintf(want, sizeof want, "%s: the checkpoint has no vocabulary: sample needs a character model trained "
             "on a text file\n", path("seed.tgckpt"));
    cr_assert_str_eq(a.err, want);
    mt_result_free(&a);
}
