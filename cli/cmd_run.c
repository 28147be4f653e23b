/* cmd_run.c — `tapegrad run`: the forward pass only; the model's outputs at
 * every step of every sequence (and the loss when the data has targets). */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tg_escape.h"
#include <math.h>

static void print_output(FILE *f, tg_tensor *t, int json)
{
    if (json) cli_json_tensor(f, tg_data(t), tg_rows(t), tg_cols(t), tg_ndim(t));
    else cli_text_value(f, tg_data(t), tg_rows(t), tg_cols(t));
}

static int is_finite_tensor(tg_tensor *t)
{
    const tg_real *v = t ? tg_data(t) : NULL;
    for (size_t i = 0; v && i < tg_size(t); i++)
        if (!isfinite((double)v[i])) return 0;
    return 1;
}

/* Every output at every step and every loss a finite number? */
static int outputs_finite(const tg_unroll *u, int nq, int no)
{
    for (int q = 0; q < nq; q++) {
        if (!is_finite_tensor(u[q].loss)) return 0;
        for (size_t k = 0; k < (size_t)u[q].steps * (size_t)no; k++)
            if (!is_finite_tensor(u[q].outputs[k])) return 0;
    }
    return 1;
}

static int run(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1, .format = "text"};
    const char *pos[1];
    const cli_opt opts[] = {
        CLI_OPT_DATA(&o, "the sequences (YAML: inputs, and targets if any, per step) (required)"),
        CLI_OPT_PARAMS(&o),
        CLI_OPT_FORMAT(&o),
        CLI_OPT_SEED(&o),
        CLI_OPT_DIM(&o),
    };
    const cli_usage usage = {
        "MODEL --data DATA [--params PARAMS] [--format text|json] [options]",
        "Runs MODEL forward over every sequence of DATA and prints its outputs at\n"
        "every step (a vector per step, or a matrix with one column per batch item),\n"
        "and the loss when DATA has the targets.  JSON: {\"sequences\": [{\"steps\":\n"
        "[{\"o\": [...]}, ...], \"loss\": L or null}, ...]}.",
        1, pos,
    };
    int rc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    o.model = pos[0];
    if (!o.data) return cli_usage_error(cmd, "--data is required");
    cli_session s;
    if ((rc = cli_open(&s, &o))) return rc;
    int nq = tg_dataset_count(s.data), no = tg_model_count(s.model, TG_ROLE_OUTPUT);
    int json = !strcmp(o.format, "json");
    tg_unroll *u = calloc((size_t)nq, sizeof *u);
    tg_tensor *total;
    if (!u) {
        rc = cli_error(CLI_FAILURE, "tapegrad run: out of memory");
    } else if (cli_unroll_all(&s, &total, u))
        rc = cli_fail(&s);
    else if (!outputs_finite(u, nq, no) && tg_tape_check_finite(s.tape, NULL) == TG_ERR_NONFINITE)
        /* exit 4, naming the entry (equation, step, FILE:LINE:COL) of the first bad number */
        rc = cli_error(CLI_FAILURE, "tapegrad %s: %s", cmd->name, tg_errmsg(s.ctx));
    if (rc == CLI_OK) {
        if (json) fputs("{\"sequences\": [", stdout);
        for (int q = 0; q < nq; q++) {
            if (json) fputs(q ? ", {\"steps\": [" : "{\"steps\": [", stdout);
            else if (nq > 1) printf("sequence %d\n", q + 1);
            for (int k = 0; k < u[q].steps; k++) {
                if (json) fputs(k ? ", {" : "{", stdout);
                else printf("step %d", k + 1); /* from 1, as the dumps and the lecture count */
                for (int j = 0; j < no; j++) {
                    const char *name = tg_model_var(s.model, TG_ROLE_OUTPUT, j, NULL, NULL);
                    tg_tensor *t = u[q].outputs[(size_t)k * (size_t)no + (size_t)j];
                    if (json) {
                        fputs(j ? ", " : "", stdout);
                        tg_esc_write(stdout, name, TG_ESC_JSON);
                        fputs(": ", stdout);
                    } else
                        printf("  %s = ", name);
                    print_output(stdout, t, json);
                }
                /* the target beside the prediction, when the data has it */
                for (int i = 0; !json && i < tg_model_count(s.model, TG_ROLE_TARGET); i++) {
                    int rows, B = tg_dataset_batch(s.data, q);
                    const char *name = tg_model_var(s.model, TG_ROLE_TARGET, i, &rows, NULL);
                    const tg_real *y = tg_dataset_values(s.data, q, TG_ROLE_TARGET, i);
                    if (!y) continue;
                    printf("   (%s = ", name);
                    cli_text_value(stdout, y + (size_t)k * (size_t)rows * (size_t)B, rows, B);
                    fputc(')', stdout);
                }
                if (json) fputc('}', stdout);
                else fputc('\n', stdout);
            }
            if (json) {
                fputs("], \"loss\": ", stdout);
                if (u[q].loss) cli_json_number(stdout, tg_item(u[q].loss));
                else fputs("null", stdout);
                fputc('}', stdout);
            } else if (u[q].loss)
                printf("loss %.9g\n", tg_item(u[q].loss));
        }
        if (json) fputs("]}\n", stdout);
        if (fflush(stdout) != 0) {
            fprintf(stderr, "tapegrad run: cannot write the output\n");
            rc = CLI_FAILURE;
        }
    }
    free(u);
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_run = {"run", "forward only: the outputs at every step", run};
