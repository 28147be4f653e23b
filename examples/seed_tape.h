/* seed_tape.h — the lecture's network recorded on a tapegrad tape through the
 * public C API: h0 = 0; a_t = U x_t + W h_{t-1} + b; h_t = tanh(a_t);
 * o_t = tanh(V h_t + c); L = sum_t (y_t - o_t)^2.  Shared by
 * examples/seed_bptt.c and tests/test_seed.c. */
#ifndef SEED_TAPE_H
#define SEED_TAPE_H

#include <tapegrad.h>
#include "seed_lecture.h"

typedef struct seed_net {
    tg_params *ps;
    tg_tensor *U, *W, *b, *V, *c;
} seed_net;

/* Creates the five parameters in ps and sets them to w.  Returns 0, or -1
 * with the reason in tg_errmsg(). */
static int seed_net_init(seed_net *net, tg_params *ps, const seed_weights *w)
{
    net->ps = ps;
    net->U = tg_params_add(ps, "U", 2, 2);
    net->W = tg_params_add(ps, "W", 2, 2);
    net->b = tg_params_add(ps, "b", 2, 0);
    net->V = tg_params_add(ps, "V", 1, 2);
    net->c = tg_params_add(ps, "c", 1, 0);
    if (!net->U || !net->W || !net->b || !net->V || !net->c) return -1;
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) {
            tg_data(net->U)[i * 2 + j] = (tg_real)w->U[i][j];
            tg_data(net->W)[i * 2 + j] = (tg_real)w->W[i][j];
        }
        tg_data(net->b)[i] = (tg_real)w->b[i];
        tg_data(net->V)[i] = (tg_real)w->V[i];
    }
    tg_data(net->c)[0] = (tg_real)w->c;
    return 0;
}

/* Records the unrolled network on tape and returns L (NULL on error).  The
 * hidden states h_1..h_T are labelled so a caller can find them. */
static tg_tensor *seed_net_record(tg_tape *tape, void *user)
{
    seed_net *net = user;
    tg_tensor *h = tg_input(tape, 2, 0, NULL, 0); /* h0 = 0 */
    tg_tensor *loss = NULL;
    for (int t = 1; t <= SEED_T; t++) {
        tg_real xv[2] = {(tg_real)seed_x[t - 1][0], (tg_real)seed_x[t - 1][1]};
        tg_real yv[1] = {(tg_real)seed_y[t - 1]};
        tg_tensor *x = tg_input(tape, 2, 0, xv, 0);
        tg_tensor *y = tg_input(tape, 1, 0, yv, 0);
        tg_tensor *a = tg_add(tape, tg_add(tape, tg_matmul(tape, net->U, x),
                                           tg_matmul(tape, net->W, h)), net->b);
        h = tg_tanh(tape, a);
        if (h) tg_tensor_set_label(h, "h", t);
        tg_tensor *o = tg_tanh(tape, tg_add(tape, tg_matmul(tape, net->V, h), net->c));
        if (o) tg_tensor_set_label(o, "o", t);
        tg_tensor *e = tg_squared_error(tape, o, y);
        loss = loss ? tg_add(tape, loss, e) : e;
    }
    return loss;
}

#endif
