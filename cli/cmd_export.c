/* cmd_export.c — `tapegrad export CKPT --params OUT`: the parameters a checkpoint holds,
 * written as the readable YAML params file that --params reads (name -> nested lists),
 * for people, diffs and other tools. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"

static int export_params(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1};
    const char *pos[1];
    const cli_opt opts[] = {
        {"params", CLI_STRING, &o.params, "OUT", "the YAML params file to write (required)", 0, 0},
    };
    const cli_usage usage = {
        "CKPT --params OUT",
        "Writes the parameters of the checkpoint CKPT (tapegrad train --save CKPT) as a\n"
        "YAML params file: a mapping from each parameter's name to its values as nested\n"
        "lists in its declared shape, which every command's --params reads.  The best\n"
        "parameters of a run with --patience; the last ones otherwise.  OUT is written\n"
        "atomically.",
        1, pos,
    };
    int rc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    const char *ckpt = pos[0], *out = o.params;
    if (!out) return cli_usage_error(cmd, "--params OUT is required (the YAML file to write)");
    struct stat sb;
    if (stat(ckpt, &sb) != 0) return cli_error(CLI_BAD_INPUT, "%s: %s", ckpt, strerror(errno));
    if (!tg_checkpoint_is(ckpt))
        return cli_error(CLI_BAD_INPUT, "%s: not a tapegrad checkpoint (export reads what tapegrad train "
                                        "--save writes)", ckpt);
    const char *inputs[1] = {ckpt}, *outputs[1] = {out};
    if ((rc = cli_check_outputs(cmd, outputs, 1, inputs, 1))) return rc;
    /* the checkpoint is MODEL; --params is the output here, not an input */
    o.model = ckpt;
    o.params = NULL;
    cli_session s;
    if ((rc = cli_open(&s, &o))) return rc;
    if (tg_params_save(s.params, s.model, out) != TG_OK) {
        rc = cli_fail(&s);
    } else {
        size_t n = 0;
        for (int i = 0; i < tg_params_count(s.params); i++) n += tg_size(tg_params_at(s.params, i));
        printf("wrote %s: %d parameters of %s (%zu numbers)\n", out, tg_params_count(s.params),
               tg_model_name(s.model), n);
        if (fflush(stdout) != 0) rc = cli_error(CLI_FAILURE, "tapegrad export: cannot write the output");
    }
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_export = {"export", "write a checkpoint's parameters as a YAML params file",
                                export_params};
