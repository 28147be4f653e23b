/* seed_lecture.h — the lecture's worked BPTT example (2 inputs, 2 hidden
 * units, 1 output, T = 3) computed by hand, in plain C and double precision,
 * exactly as the slides derive it: dL/dV as a sum over t, dh/dW (and dh/dU,
 * dh/db) by the forward recursion over t.  It shares no code with the
 * engine, so agreeing with it means something.  Used by examples/seed_bptt.c
 * and by tests/test_seed.c. */
#ifndef SEED_LECTURE_H
#define SEED_LECTURE_H

#include <math.h>
#include <string.h>

#define SEED_T 3

typedef struct seed_weights {
    double U[2][2], W[2][2], b[2], V[2], c;
} seed_weights;

static const double seed_x[SEED_T][2] = {{1, 0}, {0.5, -0.2}, {0, 1}};
static const double seed_y[SEED_T] = {1, -1, 1};
static const seed_weights seed_w0 = {
    .U = {{0.5, -0.3}, {0.2, 0.8}},
    .W = {{0.1, -0.4}, {0.6, 0.3}},
    .b = {0.05, -0.1},
    .V = {0.7, -0.5},
    .c = 0.2,
};

/* Forward: fills h[t] (h[0] = 0) and o[t] for t = 1..T, returns L. */
static double seed_forward(const seed_weights *w, double h[SEED_T + 1][2], double o[SEED_T + 1])
{
    double L = 0;
    h[0][0] = h[0][1] = 0;
    for (int t = 1; t <= SEED_T; t++) {
        const double *x = seed_x[t - 1];
        for (int i = 0; i < 2; i++) {
            double a = w->U[i][0] * x[0] + w->U[i][1] * x[1] + w->W[i][0] * h[t - 1][0] +
                       w->W[i][1] * h[t - 1][1] + w->b[i];
            h[t][i] = tanh(a);
        }
        o[t] = tanh(w->V[0] * h[t][0] + w->V[1] * h[t][1] + w->c);
        double e = seed_y[t - 1] - o[t];
        L += e * e;
    }
    return L;
}

/* The slides' hand-derived gradients.  g receives dL/d(each weight). */
static double seed_hand_gradients(const seed_weights *w, seed_weights *g)
{
    double h[SEED_T + 1][2], o[SEED_T + 1];
    double L = seed_forward(w, h, o);
    /* dh_i/dW_jk, dh_i/dU_jk, dh_i/db_j carried forward through time, zero at t = 0 */
    double dhW[2][2][2] = {{{0}}}, dhU[2][2][2] = {{{0}}}, dhb[2][2] = {{0}};
    memset(g, 0, sizeof *g);
    for (int t = 1; t <= SEED_T; t++) {
        const double *x = seed_x[t - 1];
        double nW[2][2][2], nU[2][2][2], nb[2][2];
        for (int i = 0; i < 2; i++) {
            double d = 1 - h[t][i] * h[t][i]; /* tanh' */
            for (int j = 0; j < 2; j++) {
                for (int k = 0; k < 2; k++) {
                    /* direct term (i == j) plus the path through h(t-1) */
                    nW[i][j][k] = d * ((i == j ? h[t - 1][k] : 0) + w->W[i][0] * dhW[0][j][k] +
                                       w->W[i][1] * dhW[1][j][k]);
                    nU[i][j][k] = d * ((i == j ? x[k] : 0) + w->W[i][0] * dhU[0][j][k] +
                                       w->W[i][1] * dhU[1][j][k]);
                }
                nb[i][j] = d * ((i == j ? 1 : 0) + w->W[i][0] * dhb[0][j] + w->W[i][1] * dhb[1][j]);
            }
        }
        memcpy(dhW, nW, sizeof nW);
        memcpy(dhU, nU, sizeof nU);
        memcpy(dhb, nb, sizeof nb);
        /* dL/da_o = -2 (y - o) (1 - o^2), then a_o = V h + c */
        double delta = -2 * (seed_y[t - 1] - o[t]) * (1 - o[t] * o[t]);
        g->c += delta;
        for (int j = 0; j < 2; j++) {
            g->V[j] += delta * h[t][j];
            for (int k = 0; k < 2; k++) {
                g->W[j][k] += delta * (w->V[0] * dhW[0][j][k] + w->V[1] * dhW[1][j][k]);
                g->U[j][k] += delta * (w->V[0] * dhU[0][j][k] + w->V[1] * dhU[1][j][k]);
            }
            g->b[j] += delta * (w->V[0] * dhb[0][j] + w->V[1] * dhb[1][j]);
        }
    }
    return L;
}

/* Central finite differences (5-point) of seed_forward, in double. */
static void seed_numeric_gradients(const seed_weights *w, seed_weights *g)
{
    enum { N = sizeof(seed_weights) / sizeof(double) };
    const double hstep = 1e-3;
    seed_weights p = *w;
    double *pv = (double *)&p, *gv = (double *)g;
    double h[SEED_T + 1][2], o[SEED_T + 1];
    for (int i = 0; i < N; i++) {
        double v = pv[i], f[4];
        static const double k[4] = {-2, -1, 1, 2};
        for (int j = 0; j < 4; j++) {
            pv[i] = v + k[j] * hstep;
            f[j] = seed_forward(&p, h, o);
        }
        pv[i] = v;
        gv[i] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * hstep);
    }
}

#endif
