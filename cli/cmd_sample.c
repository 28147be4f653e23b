/* cmd_sample.c — `tapegrad sample MODEL --params FILE`: runs a character
 * model trained by `tapegrad train` on a text forward one step at a time,
 * feeding each drawn character back in, and prints the text it makes.  The
 * vocabulary and the parameters come from the checkpoint FILE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

/* The code points of s (UTF-8; an invalid byte b is U+DC00 + b, as the
 * library reads text); returns how many, at most max. */
static size_t utf8_chars(const char *s, uint32_t *out, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    while (*u && n < max) {
        unsigned c = *u;
        int k = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
        uint32_t cp = k == 0 ? c : k == 1 ? c & 0x1F : k == 2 ? c & 0x0F : c & 0x07;
        int ok = k >= 0;
        for (int i = 1; ok && i <= k; i++) {
            ok = (u[i] & 0xC0) == 0x80;
            if (ok) cp = cp << 6 | (u[i] & 0x3F);
        }
        if (ok && ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF))))
            ok = 0;
        out[n++] = ok ? cp : 0xDC00 + c;
        u += ok ? k + 1 : 1;
    }
    return n;
}

static int sample(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1};
    int length = 300;
    double temperature = 1.0;
    const char *prime = NULL, *output = NULL;
    const cli_opt opts[] = {
        {"params", CLI_STRING, &o.params, "FILE", "the checkpoint of `tapegrad train --save FILE` (it has the "
                                                  "vocabulary)", 0, 0},
        {"length", CLI_INT, &length, "N", "characters to generate (default 300)", 0, 100000000},
        {"temperature", CLI_DOUBLE, &temperature, "T", "divides the logits: < 1 is surer, > 1 wilder, 0 always "
                                                       "takes the likeliest (default 1)", 0, 100},
        {"prime", CLI_STRING, &prime, "TEXT", "text to run through the model first (default: a newline)", 0, 0},
        {"output", CLI_STRING, &output, "NAME", "the output holding the logits (default: the first of size "
                                                "vocab)", 0, 0},
        {"seed", CLI_U64, &o.seed, "S", "seed of the sampling (default 1)", 0, 0},
        CLI_OPT_DIM(&o),
    };
    const char *pos[1];
    cli_usage usage = {
        "MODEL --params FILE [options]",
        "Generates text with a character model trained by `tapegrad train MODEL --data\n"
        "TEXT --save FILE`: each step's output is read as logits over the vocabulary,\n"
        "a character is drawn from softmax(logits / T) and fed back as the next input.",
        1, pos};
    int prc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (prc) return prc < 0 ? CLI_OK : prc;
    o.model = pos[0];
    if (!o.params) return cli_usage_error(cmd, "--params FILE is required (written by tapegrad train --save FILE)");

    tg_ctx *aux = tg_ctx_new(NULL);
    tg_checkpoint *ck = aux ? tg_checkpoint_open(aux, o.params) : NULL;
    if (!ck) {
        fprintf(stderr, "tapegrad sample: %s\n", aux ? tg_errmsg(aux) : "out of memory");
        tg_ctx_free(aux);
        return CLI_BAD_INPUT;
    }
    const tg_vocab *v = tg_checkpoint_vocab(ck);
    if (!v) {
        fprintf(stderr, "tapegrad sample: %s has no vocabulary: sample needs a character model trained on a text "
                        "file\n", o.params);
        tg_checkpoint_close(ck);
        tg_ctx_free(aux);
        return CLI_BAD_INPUT;
    }
    if (o.dims.n == CLI_MAX_DIMS) {
        tg_checkpoint_close(ck);
        tg_ctx_free(aux);
        return cli_usage_error(cmd, "too many --dim options");
    }
    o.dims.dim[o.dims.n++] = (tg_dim){"vocab", tg_vocab_size(v)};
    cli_session s;
    int rc = cli_open(&s, &o);
    uint32_t *pcs = NULL;
    if (rc) {
        tg_checkpoint_close(ck);
        tg_ctx_free(aux);
        return rc;
    }
    tg_model *m = s.model;
    int V = tg_vocab_size(v), n_in = tg_model_count(m, TG_ROLE_INPUT), n_st = tg_model_count(m, TG_ROLE_STATE);
    int n_out = tg_model_count(m, TG_ROLE_OUTPUT), which = -1, rows = 0;
    int in_rows = 0;
    if (n_in == 1) tg_model_var(m, TG_ROLE_INPUT, 0, &in_rows, NULL);
    for (int j = 0; j < n_out && which < 0; j++) {
        const char *name = tg_model_var(m, TG_ROLE_OUTPUT, j, &rows, NULL);
        if (output ? !strcmp(name, output) : rows == V) which = j;
    }
    if (n_in != 1 || in_rows != V || which < 0 || rows != V || n_st > 256) {
        fprintf(stderr, "tapegrad sample: %s: %s\n", o.model,
                n_in != 1 || in_rows != V ? "a character model has one input of size vocab"
                : which < 0 && output ? "no such output (see `outputs:` in the model)"
                                      : "a character model needs an output of size vocab (the logits)");
        cli_close(&s);
        tg_checkpoint_close(ck);
        tg_ctx_free(aux);
        return CLI_BAD_INPUT;
    }
    /* prime: every character must be in the vocabulary */
    tg_real *x = NULL, *carry[256] = {0};
    double *prob = NULL;
    size_t n_prime = 1;
    pcs = malloc((prime ? strlen(prime) + 1 : 1) * sizeof *pcs);
    if (!pcs) {
        fprintf(stderr, "tapegrad sample: out of memory\n");
        rc = CLI_FAILURE;
        goto done;
    }
    if (prime && *prime) n_prime = utf8_chars(prime, pcs, strlen(prime));
    else pcs[0] = tg_vocab_index(v, '\n') >= 0 ? '\n' : tg_vocab_char(v, 0);
    for (size_t i = 0; i < n_prime; i++)
        if (tg_vocab_index(v, pcs[i]) < 0) {
            char shown[8] = "";
            if (pcs[i] >= 32 && pcs[i] < 127) snprintf(shown, sizeof shown, "'%c' ", (char)pcs[i]);
            fprintf(stderr, "tapegrad sample: --prime: character %s(U+%04X) is not in the model's vocabulary\n",
                    shown, (unsigned)pcs[i]);
            rc = CLI_USAGE;
            goto done;
        }
    x = calloc((size_t)V, sizeof *x);
    prob = calloc((size_t)V, sizeof *prob);
    const tg_real *st0[256];
    int ok = x && prob;
    for (int i = 0; i < n_st; i++) {
        int r;
        tg_model_var(m, TG_ROLE_STATE, i, &r, NULL);
        carry[i] = ok ? calloc((size_t)r, sizeof(tg_real)) : NULL;
        st0[i] = NULL;
        ok = ok && carry[i];
    }
    if (!ok) {
        fprintf(stderr, "tapegrad sample: out of memory\n");
        rc = CLI_FAILURE;
        goto done;
    }
    tg_seed(s.ctx, o.seed);
    int cur = tg_vocab_index(v, pcs[0]);
    if (prime) fputs(prime, stdout);
    for (size_t t = 0; t + 1 < n_prime + (size_t)length; t++) {
        memset(x, 0, (size_t)V * sizeof *x);
        x[cur] = 1;
        const tg_real *in[1] = {x};
        tg_tape_reset(s.tape);
        tg_unroll u = {.params = s.params, .batch = 1, .t0 = 0, .steps = 1, .inputs = in,
                       .state0 = n_st ? st0 : NULL};
        if (tg_model_unroll(m, s.tape, &u)) {
            rc = cli_fail(&s);
            goto done_closed;
        }
        for (int i = 0; i < n_st; i++) {
            int r;
            tg_model_var(m, TG_ROLE_STATE, i, &r, NULL);
            memcpy(carry[i], tg_data(u.state[i]), (size_t)r * sizeof(tg_real));
            st0[i] = carry[i];
        }
        if (t + 1 < n_prime) {
            cur = tg_vocab_index(v, pcs[t + 1]);
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
        char utf8[4];
        fwrite(utf8, 1, (size_t)tg_vocab_utf8(v, cur, utf8), stdout);
    }
    putchar('\n');
    fflush(stdout);
    rc = CLI_OK;
done:
    cli_close(&s);
done_closed:
    for (int i = 0; i < n_st && i < 256; i++) free(carry[i]);
    free(x);
    free(prob);
    free(pcs);
    tg_checkpoint_close(ck);
    tg_ctx_free(aux);
    return rc;
}

const cli_cmd cli_cmd_sample = {"sample", "generate text with a trained character model", sample};
