/* cmd_dump.c — `tapegrad dump`: what the tape recorded for a model, every
 * entry with its equation, time step, source line, value and gradient, as
 * text, JSON or a Graphviz graph; the first NaN or Inf (--detect-anomaly);
 * and the per-step gradient norms of BPTT (--norms, --norms-csv). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tg_model_internal.h" /* tgm_unroll */

typedef struct dump_args {
    cli_common c;
    const char *output, *norms_csv;
    int steps, batch, values, grads, fold, anomaly, norms, fused;
} dump_args;

/* Records the first `steps` steps (all if 0) of every sequence, summing the
 * losses into *loss (NULL without targets).  Like cli_unroll_all, which
 * records whole sequences.  The gradient norms attribute each entry's
 * gradient to its step, so they get the fused step without the products
 * hoisted over all steps (hoist 0). */
static tg_status unroll(cli_session *s, int steps, int fused, int hoist, tg_tensor **loss)
{
    int ni = tg_model_count(s->model, TG_ROLE_INPUT), nt = tg_model_count(s->model, TG_ROLE_TARGET);
    const tg_real *in[256], *tg[256];
    *loss = NULL;
    for (int q = 0; q < tg_dataset_count(s->data); q++) {
        int have_targets = nt <= 256, T = tg_dataset_steps(s->data, q);
        if (steps > 0 && steps < T) T = steps;
        for (int i = 0; i < ni && i < 256; i++) in[i] = tg_dataset_values(s->data, q, TG_ROLE_INPUT, i);
        for (int i = 0; i < nt && i < 256; i++)
            if (!(tg[i] = tg_dataset_values(s->data, q, TG_ROLE_TARGET, i))) have_targets = 0;
        tg_unroll u = {
            .params = s->params,
            .batch = tg_dataset_batch(s->data, q),
            .steps = T,
            .seq_steps = T,
            .inputs = in,
            .targets = have_targets ? tg : NULL,
            .each_op = !fused,
        };
        tg_status st = tgm_unroll(s->model, s->tape, &u, hoist);
        if (st) return st;
        if (u.loss) {
            *loss = *loss ? tg_add(s->tape, *loss, u.loss) : u.loss;
            if (!*loss) return tg_status_last(s->ctx);
        }
    }
    return TG_OK;
}

/* Writes the dump to a.output, or to stdout unless the norm table goes there. */
static int write_dump(const cli_cmd *cmd, cli_session *s, const dump_args *a, const tg_dump_opts *opts)
{
    if (a->norms && !a->output) return CLI_OK;
    FILE *f = a->output ? fopen(a->output, "w") : stdout;
    if (!f) return cli_error(CLI_FAILURE, "tapegrad %s: cannot write %s: %s", cmd->name, a->output, strerror(errno));
    int fmt = tg_dump_format_parse(a->c.format);
    tg_status st = tg_tape_dump(s->tape, f, (tg_dump_format)fmt, opts);
    if ((a->output && fclose(f) != 0) || st)
        return cli_error(CLI_FAILURE, "tapegrad %s: cannot write %s", cmd->name, a->output ? a->output : "the output");
    return CLI_OK;
}

static int write_norms(const cli_cmd *cmd, const dump_args *a, const tg_grad_norms *gn)
{
    if (a->norms && tg_grad_norms_write(gn, stdout, 0)) {
        fprintf(stderr, "tapegrad %s: cannot write the output\n", cmd->name);
        return CLI_FAILURE;
    }
    if (!a->norms_csv) return CLI_OK;
    FILE *f = fopen(a->norms_csv, "w");
    tg_status st = f ? tg_grad_norms_write(gn, f, 1) : TG_ERR_IO;
    if (!f || fclose(f) != 0 || st) return cli_error(CLI_FAILURE, "tapegrad %s: cannot write %s", cmd->name, a->norms_csv);
    return CLI_OK;
}

static int dump(const cli_cmd *cmd, int argc, char **argv)
{
    dump_args a = {.c = {.seed = 1, .format = "text"}, .batch = 1};
    const char *pos[1];
    const cli_opt opts[] = {
        CLI_OPT_DATA(&a.c, "the sequences (YAML); without it, random data of --steps steps"),
        CLI_OPT_PARAMS(&a.c),
        {"steps", CLI_INT, &a.steps, "T", "record the first T steps of each sequence (random data: default 5)",
         1, 1000000},
        {"batch", CLI_INT, &a.batch, "B", "columns of the random data (default 1)", 1, 65536},
        {"format", CLI_CHOICE, &a.c.format, "text|json|dot",
         "text: one line per entry; json; dot: Graphviz (default text)", 0, 0},
        {"grads", CLI_FLAG, &a.grads, NULL, "run backward and show every gradient too", 0, 0},
        {"fold", CLI_FLAG, &a.fold, NULL, "text, dot: show the first and last step, fold the others", 0, 0},
        {"fused", CLI_FLAG, &a.fused, NULL,
         "record as training does: an affine map and its activation as one 'affine' entry", 0, 0},
        {"values", CLI_INT, &a.values, "N", "print tensors of up to N numbers in full, else min/max/mean (default 4)",
         0, 1000},
        {"detect-anomaly", CLI_FLAG, &a.anomaly, NULL,
         "stop at the first NaN or Inf, forward or backward, and say where it came from", 0, 0},
        {"norms", CLI_FLAG, &a.norms, NULL,
         "print per-step gradient norms (BPTT) instead of the dump (which --output still writes)", 0, 0},
        {"norms-csv", CLI_STRING, &a.norms_csv, "FILE", "write the per-step gradient norms to FILE as CSV", 0, 0},
        {"output", CLI_STRING, &a.output, "FILE", "write the dump to FILE instead of standard output", 0, 0},
        CLI_OPT_SEED(&a.c),
        CLI_OPT_DIM(&a.c),
    };
    const cli_usage usage = {
        "MODEL [--data DATA] [--params PARAMS] [--steps T] [--format text|json|dot] [--grads] [--fold]",
        "Unrolls MODEL over DATA (or random data) and prints what the tape recorded:\n"
        "one entry per op, with the equation and time step it came from (h[t=2]),\n"
        "its FILE:LINE:COL in MODEL, its inputs, shape, a summary of its value and,\n"
        "with --grads, of its gradient.  NaN and Inf are flagged (red in DOT).\n"
        "  tapegrad dump MODEL --data DATA --grads --format dot > g.dot && dot -Tsvg g.dot -o g.svg\n"
        "Each operator of the equations is one entry; --fused shows the tape that\n"
        "train, grad and check record, where a = U @ x + W @ h + b; h = tanh(a) is\n"
        "one 'affine' entry.  --fold keeps a long sequence readable.\n"
        "--detect-anomaly stops at the first non-finite number and names the entry,\n"
        "its inputs, the step and the equation.\n"
        "--norms prints |dL/dP| contributed at each step for each parameter P and\n"
        "|dL/dh(t)| for each equation h: the vanishing/exploding-gradient picture.",
        1, pos,
    };
    int rc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    a.c.model = pos[0];
    /* an output must not be an input, a device or in a missing directory; and
     * the two outputs must not be one file */
    const char *outs[] = {a.output, a.norms_csv}, *ins[] = {a.c.model, a.c.data, a.c.params, a.output};
    if ((rc = cli_check_outputs(cmd, outs, 1, ins, 3)) || (rc = cli_check_outputs(cmd, outs + 1, 1, ins, 4)))
        return rc;
    if (a.output && a.norms_csv && !strcmp(a.output, a.norms_csv))
        return cli_usage_error(cmd, "--output and --norms-csv name the same file %s", a.output);
    int backward = a.grads || a.norms || a.norms_csv;
    cli_session s;
    if ((rc = cli_open(&s, &a.c))) return rc;
    if (!s.data && !(s.data = tg_dataset_random(s.ctx, s.model, a.steps ? a.steps : 5, a.batch, a.c.seed))) {
        rc = cli_fail(&s);
        cli_close(&s);
        return rc;
    }
    if (backward && (rc = cli_check_targets(&s))) {
        cli_close(&s);
        return rc;
    }

    int nt = tg_model_count(s.model, TG_ROLE_TARGET);
    const char **targets = calloc((size_t)nt + 1, sizeof *targets);
    if (!targets) {
        fprintf(stderr, "tapegrad %s: out of memory\n", cmd->name);
        cli_close(&s);
        return CLI_FAILURE;
    }
    for (int i = 0; i < nt; i++) targets[i] = tg_model_var(s.model, TG_ROLE_TARGET, i, NULL, NULL);
    tg_tensor *loss = NULL;
    tg_grad_norms *gn = NULL;
    tg_tape_detect_anomaly(s.tape, a.anomaly);
    tg_params_zero_grad(s.params);
    tg_status st = unroll(&s, a.steps, a.fused, !(a.norms || a.norms_csv), &loss);
    if (!st && backward) {
        if (a.norms || a.norms_csv) st = (gn = tg_grad_norms_new(s.tape, loss, s.params)) ? TG_OK : tg_status_last(s.ctx);
        else st = tg_backward(s.tape, loss);
    }
    tg_dump_opts dopts = {
        .grads = backward,
        .fold = a.fold,
        .max_values = a.values ? a.values : 4,
        .loss = loss,
        .targets = targets,
        .title = a.c.model,
    };
    if (st) {
        /* The message names the entry, its inputs, the step and the
         * equation; the dump shows the tape up to there. */
        rc = cli_fail(&s);
        if (st == TG_ERR_NONFINITE && !a.anomaly && tg_tape_check_finite(s.tape, loss))
            cli_error(rc, "%s", tg_errmsg(s.ctx)); /* where the bad number came from */
        if (st == TG_ERR_NONFINITE) write_dump(cmd, &s, &a, &dopts);
    } else {
        rc = write_dump(cmd, &s, &a, &dopts);
        if (!rc && gn) rc = write_norms(cmd, &a, gn);
        if (!rc && tg_tape_check_finite(s.tape, backward ? loss : NULL)) {
            cli_error(0, "tapegrad %s: warning: %s", cmd->name, tg_errmsg(s.ctx));
            fputs("(--detect-anomaly stops at the first one)\n", stderr);
        }
    }
    tg_grad_norms_free(gn);
    free(targets);
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_dump = {"dump", "what the tape recorded: text, JSON or a Graphviz graph; NaN hunting", dump};
