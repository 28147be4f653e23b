/* cmd_dump.c — `tapegrad dump`: what the tape recorded for a model, every
 * entry with its equation, time step, source line, value and gradient, as
 * text, JSON or a Graphviz graph; the first NaN or Inf (--detect-anomaly);
 * and the per-step gradient norms of BPTT (--norms, --norms-csv). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tg_model_internal.h" /* tgm_unroll */

typedef struct dump_args {
    cli_common c;
    const char *output, *norms_csv, *memory;
    int steps, batch, values, grads, fold, anomaly, norms, fused;
} dump_args;

/* Under --memory the tape holds one segment at a time: the segment hook
 * dumps each into a temporary file as it is swept (last first), and the
 * parts are copied out in time order at the end. */
typedef struct seg_part { long at, len; int seq, t0, steps; } seg_part;
typedef struct seg_dump {
    FILE *tmp;
    seg_part *part;
    int n, cap, seq, first_of_seq; /* parts [first_of_seq, n) are the sequence under way's */
    tg_dump_format fmt;
    tg_dump_opts opts;
    const char *model;
    int failed, nonfinite;         /* nonfinite: the first sequence (1-based) whose loss is not, or 0 */
    /* the first non-finite value in time order (from the earliest segment
     * that has one) and the first gradient in sweep order, as a whole-tape
     * dump warns of them */
    char bad_value[1024], bad_grad[1024];
    int bad_seq, bad_t0;
} seg_dump;

/* Notes the segment's first non-finite value or gradient (see seg_dump). */
static void seg_check(seg_dump *d, tg_tape *tape, int t0)
{
    tg_ctx *ctx = tg_tape_ctx(tape);
    int n = tg_tape_length(tape);
    if (tg_tape_check_finite(tape, NULL)) {
        if (!d->bad_value[0] || d->seq < d->bad_seq || (d->seq == d->bad_seq && t0 < d->bad_t0)) {
            snprintf(d->bad_value, sizeof d->bad_value, "%s", tg_errmsg(ctx));
            d->bad_seq = d->seq, d->bad_t0 = t0;
        }
    } else if (!d->bad_grad[0] && n && tg_tape_check_finite(tape, tg_tape_at(tape, n - 1))) {
        snprintf(d->bad_grad, sizeof d->bad_grad, "%s", tg_errmsg(ctx));
    }
    tg_clear_error(ctx);
}

static void seg_hook(tg_tape *tape, int t0, int steps, void *user)
{
    seg_dump *d = user;
    seg_check(d, tape, t0);
    if (d->failed || !d->tmp) return;
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 16;
        seg_part *p = realloc(d->part, (size_t)cap * sizeof *p);
        if (!p) {
            d->failed = 1;
            return;
        }
        d->part = p;
        d->cap = cap;
    }
    char title[512];
    snprintf(title, sizeof title, "%s, sequence %d, steps %d..%d (one segment of a sweep under --memory)", d->model,
             d->seq + 1, t0 + 1, t0 + steps);
    tg_dump_opts o = d->opts;
    o.title = title;
    long at = ftell(d->tmp);
    if (at < 0 || tg_tape_dump(tape, d->tmp, d->fmt, &o) || fflush(d->tmp)) {
        d->failed = 1;
        return;
    }
    d->part[d->n++] = (seg_part){at, ftell(d->tmp) - at, d->seq, t0, steps};
}

/* Copies the parts to f: sequences in data order, each one's segments in time
 * order (they were swept last first); JSON as one array of the dumps. */
static int seg_write(seg_dump *d, FILE *f)
{
    char buf[65536];
    int json = d->fmt == TG_DUMP_JSON, k = 0;
    if (json) fputs("[\n", f);
    for (int i = 0; i < d->n;) {
        int e = i;
        while (e < d->n && d->part[e].seq == d->part[i].seq) e++;
        for (int j = e - 1; j >= i; j--, k++) {
            if (json && k) fputs(",\n", f);
            if (fseek(d->tmp, d->part[j].at, SEEK_SET)) return -1;
            for (long left = d->part[j].len; left > 0;) {
                size_t want = left < (long)sizeof buf ? (size_t)left : sizeof buf;
                if (fread(buf, 1, want, d->tmp) != want || fwrite(buf, 1, want, f) != want) return -1;
                left -= (long)want;
            }
        }
        i = e;
    }
    if (json) fputs("]\n", f);
    return ferror(f) ? -1 : 0;
}

/* Records the first `steps` steps (all if 0) of every sequence, summing the
 * losses into *loss (NULL without targets).  Like cli_unroll_all, which
 * records whole sequences.  The gradient norms credit each entry's gradient
 * to its step, so they get the fused step without the state-free products
 * stacked over chunks of steps (hoist 0). */
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
        tg_status st = tgm_unroll(s->model, s->tape, &u, hoist ? TGM_HOIST_AUTO : TGM_HOIST_NEVER);
        if (st) return st;
        if (u.loss) {
            *loss = *loss ? tg_add(s->tape, *loss, u.loss) : u.loss;
            if (!*loss) return tg_status_last(s->ctx);
        }
    }
    return TG_OK;
}

/* Sweeps the first `steps` steps of every sequence through tg_model_backprop
 * under the budget, each segment dumped (d) and its norms gathered (*gn, with
 * --norms) as it is swept; the schedule of each sequence on stderr. */
static tg_status budget_sweep(const cli_cmd *cmd, cli_session *s, const dump_args *a, size_t memory, seg_dump *d,
                              tg_grad_norms **gn)
{
    (void)cmd;
    int ni = tg_model_count(s->model, TG_ROLE_INPUT), nt = tg_model_count(s->model, TG_ROLE_TARGET), n = tg_dataset_count(s->data);
    const tg_real *in[256], *tg[256];
    int dumping = !a->norms || a->output;
    if (dumping && !(d->tmp = tmpfile())) d->failed = 1; /* said once the sweep is done */
    tg_tape_set_segment_hook(s->tape, seg_hook, d);
    if ((a->norms || a->norms_csv) && !(*gn = tg_grad_norms_watch(s->tape, s->params))) return tg_status_last(s->ctx);
    tg_status st = TG_OK;
    for (int q = 0; q < n && !st; q++) {
        int T = tg_dataset_steps(s->data, q);
        if (a->steps > 0 && a->steps < T) T = a->steps;
        for (int i = 0; i < ni && i < 256; i++) in[i] = tg_dataset_values(s->data, q, TG_ROLE_INPUT, i);
        for (int i = 0; i < nt && i < 256; i++) tg[i] = tg_dataset_values(s->data, q, TG_ROLE_TARGET, i);
        tg_unroll u = {
            .params = s->params,
            .batch = tg_dataset_batch(s->data, q),
            .steps = T,
            .seq_steps = T,
            .inputs = in,
            .targets = tg,
            .each_op = !a->fused,
        };
        d->seq = q;
        double loss;
        tg_bptt_plan plan;
        st = tg_model_backprop(s->model, s->tape, &u, memory, NULL, &loss, &plan);
        if (st) break;
        if (!isfinite(loss) && !d->nonfinite) d->nonfinite = q + 1;
        char line[512];
        cli_plan_text(line, sizeof line, memory, &plan);
        if (n > 1) fprintf(stderr, "sequence %d: %s\n", q + 1, line);
        else fprintf(stderr, "%s\n", line);
    }
    if (*gn) {
        tg_status f = tg_grad_norms_finish(*gn);
        if (!st) st = f;
    }
    tg_tape_set_segment_hook(s->tape, NULL, NULL);
    return st;
}

/* Writes the dump (the tape, or with segs the segments' parts) to a.output,
 * or to stdout unless the norm table goes there. */
static int write_dump(const cli_cmd *cmd, cli_session *s, const dump_args *a, const tg_dump_opts *opts, seg_dump *segs)
{
    if (a->norms && !a->output) return CLI_OK;
    FILE *f = a->output ? fopen(a->output, "w") : stdout;
    if (!f) return cli_error(CLI_FAILURE, "tapegrad %s: cannot write %s: %s", cmd->name, a->output, strerror(errno));
    int fmt = tg_dump_format_parse(a->c.format);
    tg_status st = segs ? (seg_write(segs, f) ? TG_ERR_IO : TG_OK) : tg_tape_dump(s->tape, f, (tg_dump_format)fmt, opts);
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
        {"memory", CLI_STRING, &a.memory, "SIZE",
         CLI_MEMORY_HELP "; one dump per segment", 0, 0},
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
        "|dL/dh(t)| for each equation h: the vanishing/exploding-gradient picture.\n"
        "--memory SIZE sweeps each sequence (as --grads does: the data needs its targets)\n"
        "in segments that fit SIZE, the schedule on standard error; the dump is one per\n"
        "segment (entries numbered from the segment's start, its states at the first\n"
        "step given as inputs), sequences in order and each one's segments in time\n"
        "order (JSON: an array of them); --norms gives the table it gives without.",
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
    size_t memory = 0;
    if (a.memory && (rc = cli_parse_memory(cmd, a.memory, &memory))) return rc;
    cli_session s;
    if ((rc = cli_open(&s, &a.c))) return rc;
    if (!s.data && !(s.data = tg_dataset_random(s.ctx, s.model, a.steps ? a.steps : 5, a.batch, a.c.seed))) {
        rc = cli_fail(&s);
        cli_close(&s);
        return rc;
    }
    if ((backward || memory) && (rc = cli_check_targets(&s))) {
        if (memory && !backward) cli_error(0, "(--memory sweeps the tape in segments, which needs the loss)");
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
    seg_dump segs = {.fmt = (tg_dump_format)tg_dump_format_parse(a.c.format), .model = a.c.model};
    segs.opts = (tg_dump_opts){.grads = backward, .fold = a.fold, .max_values = a.values ? a.values : 4,
                               .targets = targets};
    tg_status st = TG_OK;
    if (memory) {
        st = budget_sweep(cmd, &s, &a, memory, &segs, &gn);
    } else {
        st = unroll(&s, a.steps, a.fused, !(a.norms || a.norms_csv), &loss);
        if (!st && backward) {
            if (a.norms || a.norms_csv) st = (gn = tg_grad_norms_new(s.tape, loss, s.params)) ? TG_OK : tg_status_last(s.ctx);
            else st = tg_backward(s.tape, loss);
        }
    }
    tg_dump_opts dopts = {
        .grads = backward,
        .fold = a.fold,
        .max_values = a.values ? a.values : 4,
        .loss = loss,
        .targets = targets,
        .title = a.c.model,
    };
    if (st == TG_ERR_ARG && memory) { /* a budget too small for one step */
        rc = cli_error(CLI_USAGE, "tapegrad %s: --memory: %s", cmd->name, tg_errmsg(s.ctx));
    } else if (st) {
        /* The message names the entry, its inputs, the step and the
         * equation; the dump shows the tape up to there. */
        rc = cli_fail(&s);
        if (st == TG_ERR_NONFINITE && !a.anomaly && tg_tape_check_finite(s.tape, loss))
            cli_error(rc, "%s", tg_errmsg(s.ctx)); /* where the bad number came from */
        if (st == TG_ERR_NONFINITE) write_dump(cmd, &s, &a, &dopts, NULL); /* the segment that stopped */
    } else if (memory) {
        rc = segs.failed ? cli_error(CLI_FAILURE, "tapegrad %s: cannot write a temporary file for the segments",
                                     cmd->name)
                         : write_dump(cmd, &s, &a, &dopts, &segs);
        if (!rc && gn) rc = write_norms(cmd, &a, gn);
        const char *bad = segs.bad_value[0] ? segs.bad_value : segs.bad_grad;
        if (!rc && (bad[0] || segs.nonfinite)) {
            if (bad[0]) cli_error(0, "tapegrad %s: warning: %s", cmd->name, bad);
            else cli_error(0, "tapegrad %s: warning: the loss of sequence %d is not finite", cmd->name, segs.nonfinite);
            fputs("(--detect-anomaly stops at the first one)\n", stderr);
        }
    } else {
        rc = write_dump(cmd, &s, &a, &dopts, NULL);
        if (!rc && gn) rc = write_norms(cmd, &a, gn);
        if (!rc && tg_tape_check_finite(s.tape, backward ? loss : NULL)) {
            cli_error(0, "tapegrad %s: warning: %s", cmd->name, tg_errmsg(s.ctx));
            fputs("(--detect-anomaly stops at the first one)\n", stderr);
        }
    }
    tg_grad_norms_free(gn);
    if (segs.tmp) fclose(segs.tmp);
    free(segs.part);
    free(targets);
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_dump = {"dump", "what the tape recorded: text, JSON or a Graphviz graph; NaN hunting", dump};
