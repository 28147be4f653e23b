/* test_seed.c — the lecture's worked example: the tape's gradients equal the
 * slides' hand-derived formulas and finite differences, and the example
 * program that prints them says so. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include "tapegrad.h"
#include "../examples/seed_tape.h"

#ifdef TG_REAL_DOUBLE
#define TOL 1e-9
#else
#define TOL 1e-5
#endif

static void close_enough(const char *what, int i, double tape, double ref)
{
    double err = fabs(tape - ref) / fmax(fabs(ref), 1e-3);
    cr_expect(err <= TOL, "%s[%d]: tape %.12g vs %.12g (relative %.2e > %.0e)", what, i, tape, ref, err, TOL);
}

Test(seed, tape_equals_hand_formulas_and_finite_differences)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_params *ps = tg_params_new(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    seed_net net;
    cr_assert_eq(seed_net_init(&net, ps, &seed_w0), 0);
    tg_tensor *loss = seed_net_record(tape, &net);
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));

    seed_weights hand, fd;
    double L = seed_hand_gradients(&seed_w0, &hand);
    seed_numeric_gradients(&seed_w0, &fd);
    close_enough("L", 0, tg_item(loss), L);
    struct { const char *n; tg_tensor *t; const double *h, *f; int k; } g[] = {
        {"dU", net.U, &hand.U[0][0], &fd.U[0][0], 4}, {"dW", net.W, &hand.W[0][0], &fd.W[0][0], 4},
        {"db", net.b, hand.b, fd.b, 2}, {"dV", net.V, hand.V, fd.V, 2}, {"dc", net.c, &hand.c, &fd.c, 1},
    };
    for (size_t p = 0; p < sizeof g / sizeof g[0]; p++)
        for (int i = 0; i < g[p].k; i++) {
            close_enough(g[p].n, i, tg_grad(g[p].t)[i], g[p].h[i]);
            close_enough(g[p].n, i, g[p].f[i], g[p].h[i]); /* hand formulas vs FD */
        }
    /* and the engine's own checker agrees on the same function */
    cr_assert_eq(tg_gradcheck(tape, ps, seed_net_record, &net, NULL, NULL), TG_OK, "%s", tg_errmsg(ctx));
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

Test(seed, the_example_program_agrees)
{
    const char *dir = getenv("TG_EXAMPLES");
    cr_assert_not_null(dir, "TG_EXAMPLES is not set (run through make test)");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/seed_bptt > /dev/null", dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}
