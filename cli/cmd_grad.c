/* cmd_grad.c — `tapegrad grad`: one forward pass over the data, one backward
 * sweep, then the loss and the gradient of every parameter. */
#include <string.h>
#include "cli.h"
#include "tg_escape.h"

static int grad(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1, .format = "text"};
    const char *pos[1];
    const cli_opt opts[] = {
        CLI_OPT_DATA(&o, "the sequences (YAML: inputs and targets per step) (required)"),
        CLI_OPT_PARAMS(&o),
        CLI_OPT_FORMAT(&o),
        CLI_OPT_SEED(&o),
        CLI_OPT_DIM(&o),
    };
    const cli_usage usage = {
        "MODEL --data DATA [--params PARAMS] [--format text|json] [options]",
        "Unrolls MODEL over every sequence of DATA, sums the loss, runs one backward\n"
        "sweep (BPTT) and prints the loss and dL/dP for every parameter P, in its\n"
        "declared shape.  JSON: {\"loss\": L, \"grads\": {\"U\": [[...], ...], ...}}.",
        1, pos,
    };
    int rc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    o.model = pos[0];
    if (!o.data) return cli_usage_error(cmd, "--data is required");
    cli_session s;
    if ((rc = cli_open(&s, &o))) return rc;
    tg_tensor *loss;
    if ((rc = cli_check_targets(&s)) == CLI_OK) {
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
    }
    if (rc == CLI_OK) {
        int json = !strcmp(o.format, "json");
        int n = tg_params_count(s.params);
        if (json) {
            fputs("{\"loss\": ", stdout);
            cli_json_number(stdout, tg_item(loss));
            fputs(", \"grads\": {", stdout);
        } else
            printf("loss %.9g\n", tg_item(loss));
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
