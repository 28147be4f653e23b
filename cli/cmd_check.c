/* cmd_check.c — `tapegrad check`: the gradient of the whole unrolled model
 * from the tape against finite differences (tg_gradcheck), with the
 * given data or random data of a chosen length and batch. */
#include <string.h>
#include "cli.h"

static tg_tensor *build(tg_tape *tape, void *user)
{
    cli_session *s = user;
    tg_tensor *loss;
    (void)tape; /* the same tape as s->tape */
    if (cli_unroll_all(s, &loss, NULL)) return NULL;
    return loss;
}

static int check(const cli_cmd *cmd, int argc, char **argv)
{
    cli_common o = {.seed = 1};
    int steps = 10, batch = 1;
    double eps = 0, tol = 0;
    const char *pos[1];
    const cli_opt opts[] = {
        CLI_OPT_DATA(&o, "the sequences to check with (default: random data)"),
        CLI_OPT_PARAMS(&o),
        {"steps", CLI_INT, &steps, "T", "steps of random data (default 10)", 1, 100000},
        {"batch", CLI_INT, &batch, "B", "columns of random data (default 1)", 1, 4096},
        CLI_OPT_SEED(&o),
        CLI_OPT_DIM(&o),
        {"eps", CLI_DOUBLE, &eps, "H", "finite-difference step (default 1e-3 double, 1e-2 float)", 1e-12, 1},
        {"tol", CLI_DOUBLE, &tol, "E", "largest scaled error that passes (default 1e-6 double, 5e-3 float)", 1e-15, 1},
    };
    const cli_usage usage = {
        "MODEL [--data DATA | --steps T --batch B] [--params PARAMS] [options]",
        "Checks the gradient of MODEL's loss, unrolled over the data, against central\n"
        "finite differences (5 points) for every element of every parameter.  Prints\n"
        "the worst scaled error |analytic - numeric| / max(1, |analytic|, |numeric|)\n"
        "per parameter and exits 1 if any exceeds the tolerance.  Where the 5-point\n"
        "estimate disagrees by more than half the tolerance, a least-squares fit\n"
        "over 12 to 96 wider steps (up to 200 H) decides if its error bound is\n"
        "within the tolerance (\"refined\"); if not (\"unresolved\"), the 5-point\n"
        "estimate does.  Without --data it uses random data: inputs uniform in\n"
        "[-1, 1), targets in [0, 1), seeded with --seed + 1 (parameters use\n"
        "--seed).",
        1, pos,
    };
    int rc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    o.model = pos[0];
    cli_session s;
    if ((rc = cli_open(&s, &o))) return rc;
    if (!s.data && !(s.data = tg_dataset_random(s.ctx, s.model, steps, batch, o.seed + 1))) {
        rc = cli_fail(&s);
        cli_close(&s);
        return rc;
    }
    if ((rc = cli_check_targets(&s))) {
        cli_close(&s);
        return rc;
    }
    size_t scalars = 0;
    for (int i = 0; i < tg_params_count(s.params); i++) scalars += tg_size(tg_params_at(s.params, i));
    printf("checking %s: %d parameters (%zu scalars); %d sequence%s, %d steps, batch %d; %s\n",
           tg_model_name(s.model), tg_params_count(s.params), scalars, tg_dataset_count(s.data),
           tg_dataset_count(s.data) == 1 ? "" : "s", tg_dataset_steps(s.data, 0), tg_dataset_batch(s.data, 0),
#ifdef TG_REAL_DOUBLE
           "double"
#else
           "float"
#endif
    );
    fflush(stdout);
    tg_gradcheck_opts go = {eps, tol, stdout};
    tg_gradcheck_result res;
    tg_status st = tg_gradcheck(s.tape, s.params, build, &s, &go, &res);
    if (st == TG_OK || st == TG_ERR_CHECK) {
        if (res.refined || res.unresolved)
            printf("%zu scalars disagreed by more than tol / 2 at 5 points: %zu judged by a fit over wider steps, "
                   "%zu unresolved (no fit within tol; 5 points kept)\n",
                   res.refined + res.unresolved, res.refined, res.unresolved);
        const char *worst = res.worst_param >= 0 ? tg_params_name(s.params, res.worst_param) : "-";
        printf("worst scaled error %.3e (%s element %zu) over %zu scalars: %s\n", res.max_err, worst,
               res.worst_index, res.checked, st == TG_OK ? "ok" : "FAILED");
    }
    if (st) rc = cli_fail(&s);
    cli_close(&s);
    return rc;
}

const cli_cmd cli_cmd_check = {"check", "gradient check of the unrolled model against finite differences", check};
