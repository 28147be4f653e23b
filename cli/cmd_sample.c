/* cmd_sample.c — `tapegrad sample MODEL --params FILE`: runs a character
 * model trained by `tapegrad train` on a text forward one step at a time,
 * feeding each drawn character back in, and prints the text it makes.  The
 * vocabulary comes from the training state FILE.state beside the params. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "train_data.h"
#include "train_state.h"

static int sample(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1};
    int length = 300;
    double temperature = 1.0;
    const char *prime = NULL, *output = NULL;
    const cli_opt opts[] = {
        {"params", CLI_STRING, &o.params, "FILE", "the trained parameters (FILE.state beside it has the "
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

    char msg[2048], sp[4200];
    ts_file *st = ts_open(ts_state_path(sp, sizeof sp, o.params), msg, sizeof msg);
    if (!st) {
        fprintf(stderr, "tapegrad sample: %s\n", msg);
        return CLI_BAD_INPUT;
    }
    td_vocab v;
    int has_vocab = ts_vocab(st, &v);
    ts_close(st);
    if (!has_vocab) {
        fprintf(stderr, "tapegrad sample: %s has no vocabulary: sample needs a character model trained on a text "
                        "file\n", sp);
        return CLI_BAD_INPUT;
    }
    if (o.dims.n == CLI_MAX_DIMS) return cli_usage_error(cmd, "too many --dim options");
    o.dims.dim[o.dims.n++] = (tg_dim){"vocab", v.n};
    cli_session s;
    int rc = cli_open(&s, &o);
    if (rc) return rc;
    tg_model *m = s.model;
    int V = v.n, n_in = tg_model_count(m, TG_ROLE_INPUT), n_st = tg_model_count(m, TG_ROLE_STATE);
    int n_out = tg_model_count(m, TG_ROLE_OUTPUT), which = -1, rows = 0;
    int in_rows = 0, index = 0;
    if (n_in == 1) tg_model_var(m, TG_ROLE_INPUT, 0, &in_rows, NULL);
    /* an index input (`index: vocab`) takes the character's index instead of a one-hot vector */
    if (n_in == 1 && (tg_model_var_flags(m, TG_ROLE_INPUT, 0, &index) & TG_VAR_INDEX) && index == V) in_rows = V;
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
        return CLI_BAD_INPUT;
    }
    /* prime: every character must be in the vocabulary */
    const char *p0 = prime ? prime : v.index['\n'] >= 0 ? "\n" : NULL;
    char first[2] = {(char)v.bytes[0], 0};
    if (!p0) p0 = first;
    for (const char *c = p0; *c; c++)
        if (v.index[(unsigned char)*c] < 0) {
            fprintf(stderr, "tapegrad sample: --prime: character '%c' is not in the model's vocabulary\n", *c);
            cli_close(&s);
            return CLI_USAGE;
        }
    tg_real *x = calloc((size_t)V, sizeof *x);
    double *prob = calloc((size_t)V, sizeof *prob);
    tg_real *carry[256] = {0};
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
    size_t n_prime = strlen(p0);
    int cur = v.index[(unsigned char)p0[0]];
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
            goto done_closed;
        }
        for (int i = 0; i < n_st; i++) {
            int r;
            tg_model_var(m, TG_ROLE_STATE, i, &r, NULL);
            memcpy(carry[i], tg_data(u.state[i]), (size_t)r * sizeof(tg_real));
            st0[i] = carry[i];
        }
        if (t + 1 < n_prime) {
            cur = v.index[(unsigned char)p0[t + 1]];
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
        putchar(v.bytes[cur]);
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
    return rc;
}

const cli_cmd cli_cmd_sample = {"sample", "generate text with a trained character model", sample};
