/* cmd_sample.c — `tapegrad sample CKPT`: runs a character model trained by
 * `tapegrad train` on a text forward one step at a time, feeding each drawn
 * character back in, and prints the text it makes.  The checkpoint holds the
 * model, its parameters and the vocabulary. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"

/* The next character of a UTF-8 string, read as the library reads text (tg_vocab): an
 * invalid byte b (0x80 to 0xFF) is the character U+DC00 + b, as Python's surrogateescape.
 * Advances *p. */
static uint32_t next_char(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int n = c < 0x80 ? 0 : c >= 0xC2 && c < 0xE0 ? 1 : c >= 0xE0 && c < 0xF0 ? 2 : c >= 0xF0 && c < 0xF5 ? 3 : -1;
    if (n == 0) {
        *p = s + 1;
        return c;
    }
    if (n > 0) {
        uint32_t cp = c & (0x3Fu >> n);
        int k = 1;
        for (; k <= n && (s[k] & 0xC0) == 0x80; k++) cp = cp << 6 | (s[k] & 0x3Fu);
        static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
        if (k > n && cp >= least[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp < 0xE000)) {
            *p = s + n + 1;
            return cp;
        }
    }
    *p = s + 1;
    return 0xDC00 + c;
}

static int sample(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1};
    int length = 300;
    double temperature = 1.0;
    const char *prime = NULL, *output = NULL;
    const cli_opt opts[] = {
        {"length", CLI_INT, &length, "N", "characters to generate (default 300)", 0, 100000000},
        {"temperature", CLI_DOUBLE, &temperature, "T", "divides the logits: < 1 is surer, > 1 wilder, 0 always "
                                                       "takes the likeliest (default 1)", 0, 100},
        {"prime", CLI_STRING, &prime, "TEXT", "text to run through the model first (default: a newline)", 0, 0},
        {"output", CLI_STRING, &output, "NAME", "the output holding the logits (default: the first of size "
                                                "vocab)", 0, 0},
        {"seed", CLI_U64, &o.seed, "S", "seed of the sampling (default 1)", 0, 0},
    };
    const char *pos[1];
    cli_usage usage = {
        "CKPT [options]",
        "Generates text with a character model trained by `tapegrad train MODEL --data\n"
        "TEXT --save CKPT`: each step's output is read as logits over the checkpoint's\n"
        "vocabulary, a character is drawn from softmax(logits / T) and fed back as the\n"
        "next input.  The best parameters of a run with --patience; the last ones\n"
        "otherwise.",
        1, pos};
    int prc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (prc) return prc < 0 ? CLI_OK : prc;
    o.model = pos[0];
    struct stat sb;
    if (stat(o.model, &sb) != 0) return cli_error(CLI_BAD_INPUT, "%s: %s", o.model, strerror(errno));
    if (!tg_checkpoint_is(o.model))
        return cli_error(CLI_BAD_INPUT, "%s: not a tapegrad checkpoint (sample reads what tapegrad train "
                                        "--save writes)", o.model);
    cli_session s;
    int rc = cli_open(&s, &o);
    if (rc) return rc;
    tg_checkpoint *ck = tg_checkpoint_open(s.ctx, o.model);
    const tg_vocab *v = ck ? tg_checkpoint_vocab(ck) : NULL;
    if (!ck || !v) {
        if (ck) rc = cli_error(CLI_BAD_INPUT, "%s: the checkpoint has no vocabulary: sample needs a character "
                                              "model trained on a text file", o.model);
        else rc = cli_fail(&s);
        tg_checkpoint_close(ck);
        cli_close(&s);
        return rc;
    }
    tg_model *m = s.model;
    int V = tg_vocab_size(v), n_in = tg_model_count(m, TG_ROLE_INPUT), n_st = tg_model_count(m, TG_ROLE_STATE);
    int n_out = tg_model_count(m, TG_ROLE_OUTPUT), which = -1, rows = 0, in_rows = 0, index = 0;
    int *pidx = NULL;
    tg_real *x = NULL, *carry[256] = {0};
    double *prob = NULL;
    const tg_real *st0[256];
    if (n_in == 1) tg_model_var(m, TG_ROLE_INPUT, 0, &in_rows, NULL);
    /* an index input (`index: vocab`) takes the character's index instead of a one-hot vector */
    if (n_in == 1 && (tg_model_var_flags(m, TG_ROLE_INPUT, 0, &index) & TG_VAR_INDEX) && index == V) in_rows = V;
    for (int j = 0; j < n_out && which < 0; j++) {
        const char *name = tg_model_var(m, TG_ROLE_OUTPUT, j, &rows, NULL);
        if (output ? !strcmp(name, output) : rows == V) which = j;
    }
    if (n_in != 1 || in_rows != V || which < 0 || rows != V || n_st > 256) {
        rc = cli_error(CLI_BAD_INPUT, "tapegrad sample: %s: %s", o.model,
                       n_in != 1 || in_rows != V ? "a character model has one input of size vocab"
                       : which < 0 && output     ? "no such output (see `outputs:` in the model)"
                                                 : "a character model needs an output of size vocab (the logits)");
        goto done;
    }
    /* prime: every character must be in the vocabulary */
    int nl = tg_vocab_index(v, '\n');
    const char *p0 = prime ? prime : nl >= 0 ? "\n" : NULL;
    size_t n_prime = p0 ? strlen(p0) : 1;
    if (!(pidx = malloc((n_prime ? n_prime : 1) * sizeof *pidx))) goto oom;
    if (!p0) {
        pidx[0] = 0; /* no newline in the text: start from its first character */
    } else {
        const unsigned char *c = (const unsigned char *)p0;
        for (n_prime = 0; *c;) {
            uint32_t cp = next_char(&c);
            if ((pidx[n_prime++] = tg_vocab_index(v, cp)) < 0) {
                int byte = cp >= 0xDC80 && cp <= 0xDCFF;
                rc = cli_error(CLI_USAGE, "tapegrad sample: --prime: %s%0*X is not in the model's vocabulary "
                                          "of %d characters", byte ? "the byte 0x" : "character U+",
                               byte ? 2 : 4, byte ? cp - 0xDC00 : cp, V);
                goto done;
            }
        }
    }
    x = calloc((size_t)V, sizeof *x);
    prob = calloc((size_t)V, sizeof *prob);
    if (!x || !prob) goto oom;
    for (int i = 0; i < n_st; i++) {
        int r;
        tg_model_var(m, TG_ROLE_STATE, i, &r, NULL);
        if (!(carry[i] = calloc((size_t)r, sizeof(tg_real)))) goto oom;
        st0[i] = NULL;
    }
    tg_seed(s.ctx, o.seed);
    int cur = pidx[0];
    if (prime) fputs(prime, stdout);
    for (size_t t = 0; t + 1 < n_prime + (size_t)length; t++) {
        memset(x, 0, (size_t)V * sizeof *x);
        if (index) x[0] = (tg_real)cur;
        else x[cur] = 1;
        const tg_real *in[1] = {x};
        tg_tape_reset(s.tape);
        tg_unroll u = {.params = s.params, .batch = 1, .t0 = 0, .steps = 1, .inputs = in,
                       .state0 = n_st ? st0 : NULL};
        if (tg_model_unroll(m, s.tape, &u)) {
            rc = cli_fail(&s);
            goto done;
        }
        for (int i = 0; i < n_st; i++) {
            int r;
            tg_model_var(m, TG_ROLE_STATE, i, &r, NULL);
            memcpy(carry[i], tg_data(u.state[i]), (size_t)r * sizeof(tg_real));
            st0[i] = carry[i];
        }
        if (t + 1 < n_prime) {
            cur = pidx[t + 1];
            continue;
        }
        const tg_real *z = tg_data(u.outputs[which]);
        int best = 0;
        for (int k = 1; k < V; k++)
            if (z[k] > z[best]) best = k;
        if (temperature == 0) {
            cur = best;
        } else {
            double sum = 0;
            for (int k = 0; k < V; k++) sum += prob[k] = exp(((double)z[k] - (double)z[best]) / temperature);
            double r = tg_rand_uniform(s.ctx) * sum;
            cur = V - 1;
            for (int k = 0; k < V; k++)
                if ((r -= prob[k]) < 0) {
                    cur = k;
                    break;
                }
        }
        char ch[4];
        fwrite(ch, 1, (size_t)tg_vocab_utf8(v, cur, ch), stdout);
    }
    putchar('\n');
    rc = fflush(stdout) ? cli_error(CLI_FAILURE, "tapegrad sample: cannot write the output") : CLI_OK;
    goto done;
oom:
    rc = cli_error(CLI_FAILURE, "tapegrad sample: out of memory");
done:
    for (int i = 0; i < n_st && i < 256; i++) free(carry[i]);
    free(pidx);
    free(x);
    free(prob);
    tg_checkpoint_close(ck);
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_sample = {"sample", "generate text with a trained character model", sample};
