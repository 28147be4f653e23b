/* bptt_plan.c — what tg_model_backprop does under memory budgets on one long
 * sequence: the plan (segment, segments, snapshots, steps recorded again),
 * the bytes the tape and the snapshots held, the seconds of the call, and
 * whether the parameter gradients equal one recording's bit for bit.
 *   make build/float/bptt_plan && build/float/bptt_plan [T [B [hidden [keep]]]] [BUDGET...]
 * (models/elman.yaml with input = output = 16; keep 1 keeps every gradient,
 * 0 recycles them as the trainer does.)  A measurement, not a test. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tapegrad.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int T = argc > 1 ? atoi(argv[1]) : 10000, B = argc > 2 ? atoi(argv[2]) : 32;
    int H = argc > 3 ? atoi(argv[3]) : 256, keep = argc > 4 ? atoi(argv[4]) : 0;
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_dim dims[] = {{"input", 16}, {"hidden", H}, {"output", 16}};
    tg_model *m = tg_model_load(ctx, "models/elman.yaml", dims, 3);
    if (!m) {
        fprintf(stderr, "%s\n", tg_errmsg(ctx));
        return 1;
    }
    tg_params *ps = tg_params_new(ctx);
    tg_model_init_params(m, ps, 1);
    tg_dataset *d = tg_dataset_random(ctx, m, T, B, 2);
    const tg_real *in[] = {tg_dataset_values(d, 0, TG_ROLE_INPUT, 0)};
    const tg_real *tgt[] = {tg_dataset_values(d, 0, TG_ROLE_TARGET, 0)};
    tg_tape *tape = tg_tape_new(ctx);
    tg_tape_keep_grads(tape, keep);
    size_t np = tg_params_total(ps);
    tg_real *full = malloc(np * sizeof *full);
    const char *deflt[] = {"0", "1G", "256M", "64M", "16M", "4M", "1M"};
    const char **budgets = argc > 5 ? (const char **)argv + 5 : deflt;
    int nb = argc > 5 ? argc - 5 : (int)(sizeof deflt / sizeof *deflt);
    printf("elman hidden %d, batch %d, T = %d, keep_grads %d\n", H, B, T, keep);
    printf("%8s %8s %8s %9s %12s %12s %12s %12s %8s %s\n", "budget", "segment", "segments", "snapshots",
           "recomputed", "forward", "tape MiB", "snap MiB", "seconds", "gradients");
    for (int i = 0; i < nb; i++) {
        size_t mem;
        if (tg_parse_size(ctx, budgets[i], &mem)) {
            fprintf(stderr, "%s\n", tg_errmsg(ctx));
            return 1;
        }
        tg_tape_free(tape); /* each budget from a cold tape */
        tape = tg_tape_new(ctx);
        tg_tape_keep_grads(tape, keep);
        tg_params_zero_grad(ps);
        tg_unroll u = {.params = ps, .batch = B, .steps = T, .inputs = in, .targets = tgt};
        tg_bptt_plan plan;
        double loss, t = now();
        tg_status st = tg_model_backprop(m, tape, &u, mem, NULL, &loss, &plan);
        t = now() - t;
        if (st) {
            printf("%8s %s\n", budgets[i], tg_errmsg(ctx));
            continue;
        }
        if (i == 0) memcpy(full, tg_params_grads(ps), np * sizeof *full);
        printf("%8s %8d %8d %9d %12lld %12lld %12.1f %12.2f %8.2f %s\n", budgets[i], plan.segment, plan.segments,
               plan.snapshots, plan.recomputed, plan.forward_steps, plan.tape_bytes / 1048576.0,
               plan.snapshot_bytes / 1048576.0, t,
               memcmp(full, tg_params_grads(ps), np * sizeof *full) ? "differ" : "bit-identical");
    }
    free(full);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    return 0;
}
