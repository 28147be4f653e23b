/* seed_bptt — the lecture's worked example of back-propagation through time.
 * Records a 2-2-1 tanh RNN over three steps on a tape, runs the one generic
 * backward sweep, and prints every gradient beside the slides' hand-derived
 * formulas and finite differences (both in plain double-precision C).
 * Exits 1 if they disagree.  Usage: seed_bptt */
#include <math.h>
#include <stdio.h>
#include <tapegrad.h>
#include "seed_tape.h"

static double worst = 0;

static void show(const char *name, const tg_real *tape, const double *hand, const double *fd, int n)
{
    for (int i = 0; i < n; i++) {
        double err = fabs((double)tape[i] - hand[i]) / fmax(1e-3, fabs(hand[i]));
        double err_fd = fabs(fd[i] - hand[i]) / fmax(1e-3, fabs(hand[i]));
        if (err > worst) worst = err;
        if (err_fd > worst) worst = err_fd;
        printf("  dL/d%s[%d]  tape % .10f   hand % .10f   finite-diff % .10f\n", name, i,
               (double)tape[i], hand[i], fd[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: %s\n(the lecture's 2-2-1 RNN over three steps; no arguments)\n", argv[0]);
        return 2;
    }
    tg_ctx *ctx = tg_ctx_new(NULL);
    if (!ctx) return 1;
    tg_params *ps = tg_params_new(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    seed_net net;
    int rc = 1;
    if (!ps || !tape || seed_net_init(&net, ps, &seed_w0) != 0) goto fail;

    tg_tensor *loss = seed_net_record(tape, &net);
    if (!loss || tg_backward(tape, loss) != TG_OK) goto fail;

    seed_weights hand, fd;
    double L = seed_hand_gradients(&seed_w0, &hand);
    seed_numeric_gradients(&seed_w0, &fd);

    printf("the lecture's RNN: 2 inputs, 2 hidden (tanh), 1 output (tanh), T = %d\n", SEED_T);
    for (int t = 0; t < tg_tape_length(tape); t++) {
        int step;
        tg_tensor *e = tg_tape_at(tape, t);
        const char *label = tg_tensor_label(e, &step);
        if (label && label[0] == 'h')
            printf("  h(%d) = [% .6f, % .6f]\n", step, (double)tg_data(e)[0], (double)tg_data(e)[1]);
    }
    printf("loss L = %.10f   (hand: %.10f)\n", tg_item(loss), L);
    show("U", tg_grad(net.U), &hand.U[0][0], &fd.U[0][0], 4);
    show("W", tg_grad(net.W), &hand.W[0][0], &fd.W[0][0], 4);
    show("b", tg_grad(net.b), hand.b, fd.b, 2);
    show("V", tg_grad(net.V), hand.V, fd.V, 2);
    show("c", tg_grad(net.c), &hand.c, &fd.c, 1);
    double lerr = fabs(tg_item(loss) - L) / L;
    if (lerr > worst) worst = lerr;
#ifdef TG_REAL_DOUBLE
    const double tol = 1e-9;
#else
    const double tol = 1e-5;
#endif
    printf("worst relative difference %.2e (tolerance %.0e): %s\n", worst, tol,
           worst <= tol ? "tape, hand formulas and finite differences agree" : "MISMATCH");
    rc = worst <= tol ? 0 : 1;
    goto done;
fail:
    fprintf(stderr, "seed_bptt: %s\n", tg_errmsg(ctx));
done:
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
    return rc;
}
