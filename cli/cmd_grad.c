/* cmd_grad.c — `tapegrad grad`: one forward pass over the data, one backward
 * sweep, then the loss and the gradient of every parameter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tg_escape.h"

/* The sweep under a budget: each sequence through tg_model_backprop (the last
 * first, so that every parameter gradient gathers its parts in the order one
 * sweep of the whole tape adds them; in data order with --train, so that
 * dropout's masks are drawn in the order of a whole-tape run), the schedule of each on stderr, the loss
 * summed in the tape's precision as the whole tape's `add` entries sum it.  A
 * non-finite loss is recorded again in anomaly mode, which stops at the first
 * bad number; the message names it as without a budget. */
static int budget_sweep(const cli_cmd *cmd, cli_session *s, size_t memory, int train, double *loss,
                        tg_bptt_plan *last)
{
    int n = tg_dataset_count(s->data), ni = tg_model_count(s->model, TG_ROLE_INPUT);
    int nt = tg_model_count(s->model, TG_ROLE_TARGET);
    const tg_real *in[256], *tg[256];
    double *each = calloc((size_t)n + 1, sizeof *each);
    tg_bptt_plan *plans = calloc((size_t)n + 1, sizeof *plans);
    if (!each || !plans) {
        free(each), free(plans);
        return cli_error(CLI_FAILURE, "tapegrad %s: out of memory", cmd->name);
    }
    int rc = CLI_OK;
    tg_params_zero_grad(s->params);
    for (int k = 0; k < n && rc == CLI_OK; k++) {
        int q = train ? k : n - 1 - k;
        for (int i = 0; i < ni && i < 256; i++) in[i] = tg_dataset_values(s->data, q, TG_ROLE_INPUT, i);
        for (int i = 0; i < nt && i < 256; i++) tg[i] = tg_dataset_values(s->data, q, TG_ROLE_TARGET, i);
        tg_unroll u = {
            .params = s->params,
            .batch = tg_dataset_batch(s->data, q),
            .steps = tg_dataset_steps(s->data, q),
            .inputs = in,
            .targets = tg,
        };
        tg_status st = tg_model_backprop(s->model, s->tape, &u, memory, NULL, &each[q], &plans[q]);
        if (st == TG_OK && isfinite(each[q])) continue;
        if (st == TG_ERR_ARG) { /* a budget too small for one step */
            rc = cli_error(CLI_USAGE, "tapegrad %s: --memory: %s", cmd->name, tg_errmsg(s->ctx));
            break;
        }
        if (st && st != TG_ERR_NONFINITE) {
            rc = cli_fail(s);
            break;
        }
        /* where the first non-finite number came from */
        double again;
        tg_clear_error(s->ctx);
        if (!tg_tape_check_finite(s->tape, NULL)) {
            tg_tape_detect_anomaly(s->tape, 1);
            st = tg_model_backprop(s->model, s->tape, &u, memory, NULL, &again, NULL);
            tg_tape_detect_anomaly(s->tape, 0);
            if (st == TG_ERR_NONFINITE) tg_tape_check_finite(s->tape, NULL); /* worded as without a budget */
        }
        rc = cli_error(CLI_FAILURE, "tapegrad %s: %s", cmd->name,
                       tg_status_last(s->ctx) ? tg_errmsg(s->ctx) : "the loss is not finite");
    }
    for (int q = 0; q < n; q++) { /* the schedules, in data order */
        char line[512];
        if (!plans[q].steps) continue;
        cli_plan_text(line, sizeof line, memory, &plans[q]);
        if (n > 1) fprintf(stderr, "sequence %d: %s\n", q + 1, line);
        else fprintf(stderr, "%s\n", line);
    }
    if (n) *last = plans[0]; /* JSON shows the first sequence's */
    tg_real sum = 0;
    for (int q = 0; q < n; q++) sum = q ? (tg_real)(sum + (tg_real)each[q]) : (tg_real)each[q];
    *loss = sum;
    free(each), free(plans);
    return rc;
}

static int grad(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1, .format = "text"};
    int train = 0;
    const char *pos[1], *memory_arg = NULL;
    size_t memory = 0;
    const cli_opt opts[] = {
        CLI_OPT_DATA(&o, "the sequences (YAML: inputs and targets per step) (required)"),
        CLI_OPT_PARAMS(&o),
        CLI_OPT_FORMAT(&o),
        CLI_OPT_SEED(&o),
        CLI_OPT_DIM(&o),
        {"train", CLI_FLAG, &train, NULL, "record as training does: dropout active, its masks drawn from --seed", 0, 0},
        {"memory", CLI_STRING, &memory_arg, "SIZE", CLI_MEMORY_HELP, 0, 0},
    };
    const cli_usage usage = {
        "MODEL --data DATA [--params PARAMS] [--format text|json] [options]",
        "Unrolls MODEL over every sequence of DATA, sums the loss, runs one backward\n"
        "sweep (BPTT) and prints the loss and dL/dP for every parameter P, in its\n"
        "declared shape.  JSON: {\"loss\": L, \"grads\": {\"U\": [[...], ...], ...}}.\n"
        "With --memory SIZE each sequence is swept in segments that fit SIZE (the schedule\n"
        "is printed on standard error; JSON adds \"memory\" and \"schedule\"); the gradients\n"
        "are those of the whole tape (to float rounding).",
        1, pos,
    };
    int rc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    o.model = pos[0];
    if (!o.data) return cli_usage_error(cmd, "--data is required");
    if (memory_arg && (rc = cli_parse_memory(cmd, memory_arg, &memory))) return rc;
    cli_session s;
    if ((rc = cli_open(&s, &o))) return rc;
    /* the masks continue the generator that drew the initial weights */
    tg_tape_set_training(s.tape, train);
    tg_tensor *loss = NULL;
    double loss_value = 0;
    tg_bptt_plan plan;
    memset(&plan, 0, sizeof plan);
    if ((rc = cli_check_targets(&s)) == CLI_OK && memory) {
        rc = budget_sweep(cmd, &s, memory, train, &loss_value, &plan);
    } else if (rc == CLI_OK) {
        tg_params_zero_grad(s.params);
        tg_status st = cli_unroll_all(&s, &loss, NULL);
        if (!st) st = tg_backward(s.tape, loss);
        /* a loss or gradient that is not a number is no result: exit 4, naming
         * the entry (equation, step, FILE:LINE:COL) of the first bad number */
        if ((st == TG_OK || st == TG_ERR_NONFINITE) &&
            tg_tape_check_finite(s.tape, st ? NULL : loss) == TG_ERR_NONFINITE)
            rc = cli_error(CLI_FAILURE, "tapegrad %s: %s", cmd->name, tg_errmsg(s.ctx));
        else if (st)
            rc = cli_fail(&s);
        if (rc == CLI_OK) loss_value = tg_item(loss);
    }
    if (rc == CLI_OK) {
        int json = !strcmp(o.format, "json");
        int n = tg_params_count(s.params);
        if (json) {
            fputs("{\"loss\": ", stdout);
            cli_json_number(stdout, loss_value);
            if (memory) cli_plan_json(stdout, memory, &plan);
            fputs(", \"grads\": {", stdout);
        } else
            printf("loss %.9g\n", loss_value);
        for (int i = 0; i < n; i++) {
            tg_tensor *p = tg_params_at(s.params, i);
            if (json) {
                fputs(i ? ", " : "", stdout);
                tg_esc_write(stdout, tg_params_name(s.params, i), TG_ESC_JSON);
                fputs(": ", stdout);
                cli_json_tensor(stdout, tg_grad(p), tg_rows(p), tg_cols(p), tg_ndim(p));
            } else {
                if (tg_ndim(p) == 1) printf("dL/d%s [%d]\n", tg_params_name(s.params, i), tg_rows(p));
                else printf("dL/d%s [%d, %d]\n", tg_params_name(s.params, i), tg_rows(p), tg_cols(p));
                if (tg_ndim(p) == 1) cli_text_tensor(stdout, tg_grad(p), 1, tg_rows(p), "   ");
                else cli_text_tensor(stdout, tg_grad(p), tg_rows(p), tg_cols(p), "   ");
            }
        }
        if (json) fputs("}}\n", stdout);
        if (fflush(stdout) != 0) {
            fprintf(stderr, "tapegrad grad: cannot write the output\n");
            rc = CLI_FAILURE;
        }
    }
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_grad = {"grad", "the loss and the gradient of every parameter (one forward, one backward)",
                              grad};
