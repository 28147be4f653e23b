/* gemm_shapes.c — the products of one Elman training step, shape by shape,
 * through cblas_sgemm at 1 and 2 OpenBLAS threads: as the tape does them
 * now (one call per time step, k or n = B) and as a time-batched unroller
 * could (one call over all T steps, k or n = T*B, for every product that is
 * not on the recurrent path).  Input to bench/PROFILE.md.
 *
 * usage: gemm_shapes [--size medium|large] [--seconds S] */
#include <cblas.h>
#undef I /* OpenBLAS's cblas.h pulls in <complex.h>; no complex numbers here */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    const char *what;
    char ta, tb;     /* 'N' or 'T' */
    int m, n, k;     /* C[m, n] += op(A)[m, k] op(B)[k, n] */
    int per_step;    /* calls per training step */
    int recurrent;   /* on the sequential path: cannot be batched over t */
} shape;

static float *buf_a, *buf_b, *buf_c;

static void gemm(const shape *s)
{
    int lda = s->ta == 'N' ? s->k : s->m, ldb = s->tb == 'N' ? s->n : s->k;
    cblas_sgemm(CblasRowMajor, s->ta == 'N' ? CblasNoTrans : CblasTrans, s->tb == 'N' ? CblasNoTrans : CblasTrans,
                s->m, s->n, s->k, 1.0f, buf_a, lda, buf_b, ldb, 1.0f, buf_c, s->n);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call over samples of >= 2 ms. */
static double time_shape(const shape *s, double seconds)
{
    gemm(s);
    double t0 = now();
    gemm(s);
    double one = now() - t0;
    int reps = one >= 2e-3 ? 1 : (int)(2e-3 / (one > 1e-8 ? one : 1e-8)) + 1;
    double smp[200];
    int n = 0;
    double start = now();
    while (n < 200 && (n < 5 || now() - start < seconds)) {
        double a = now();
        for (int r = 0; r < reps; r++) gemm(s);
        smp[n++] = (now() - a) / reps;
    }
    qsort(smp, (size_t)n, sizeof smp[0], cmp);
    return smp[n / 2];
}

int main(int argc, char **argv)
{
    const char *size = "medium";
    double seconds = 0.3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) size = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    }
    int I, H, O, T, B;
    if (!strcmp(size, "large")) I = 256, H = 1024, O = 256, T = 100, B = 64;
    else if (!strcmp(size, "small")) I = 16, H = 32, O = 8, T = 50, B = 1;
    else I = 64, H = 256, O = 64, T = 100, B = 32;
    int TB = T * B;
    /* per step as recorded now; then the batched form of the non-recurrent ones */
    shape now_[] = {
        {"fwd  U x        ", 'N', 'N', H, B, I, T, 0},
        {"fwd  W h        ", 'N', 'N', H, B, H, T - 1, 1}, /* W h0 = 0 is skipped by neither */
        {"fwd  V h        ", 'N', 'N', O, B, H, T, 0},
        {"bwd  dV += do h'", 'N', 'T', O, H, B, T, 0},
        {"bwd  dh += V'do ", 'T', 'N', H, B, O, T, 0},
        {"bwd  dW += da h'", 'N', 'T', H, H, B, T, 0},
        {"bwd  dh += W'da ", 'T', 'N', H, B, H, T - 1, 1},
        {"bwd  dU += da x'", 'N', 'T', H, I, B, T, 0},
    };
    shape batched[] = {
        {"fwd  U X   (all t)", 'N', 'N', H, TB, I, 1, 0},
        {"fwd  V H   (all t)", 'N', 'N', O, TB, H, 1, 0},
        {"bwd  dV += dO H'  ", 'N', 'T', O, H, TB, 1, 0},
        {"bwd  dH += V'dO   ", 'T', 'N', H, TB, O, 1, 0},
        {"bwd  dW += dA H'  ", 'N', 'T', H, H, TB, 1, 0},
        {"bwd  dU += dA X'  ", 'N', 'T', H, I, TB, 1, 0},
    };
    size_t big = (size_t)(H > I ? H : I) * (size_t)(TB > H ? TB : H);
    buf_a = calloc(big, 4);
    buf_b = calloc(big, 4);
    buf_c = calloc(big, 4);
    if (!buf_a || !buf_b || !buf_c) return 1;
    printf("size %s: I=%d H=%d O=%d T=%d B=%d; core %s\n", size, I, H, O, T, B, openblas_get_corename());
    double tot[2][2] = {{0, 0}, {0, 0}}; /* [scheme][threads-1] ms per step */
    double best_now = 0, best_batched = 0;
    for (int pass = 0; pass < 2; pass++) {
        shape *list = pass ? batched : now_;
        int n = pass ? (int)(sizeof batched / sizeof batched[0]) : (int)(sizeof now_ / sizeof now_[0]);
        printf("%s\n%-20s %-5s %14s %8s %12s %12s %12s\n", pass ? "-- batched over t (one call per step):" :
               "-- as recorded now (one call per time step):", "product", "op", "m x n x k", "calls",
               "1t GFLOP/s", "2t GFLOP/s", "best ms/step");
        for (int i = 0; i < n; i++) {
            const shape *s = &list[i];
            double ms[2];
            for (int th = 1; th <= 2; th++) {
                openblas_set_num_threads(th);
                ms[th - 1] = time_shape(s, seconds) * 1e3 * s->per_step;
                tot[pass][th - 1] += ms[th - 1];
            }
            double f = 2.0 * s->m * s->n * s->k * s->per_step;
            double best = ms[0] < ms[1] ? ms[0] : ms[1];
            if (pass) best_batched += best;
            else best_now += best;
            char dims[48];
            snprintf(dims, sizeof dims, "%dx%dx%d", s->m, s->n, s->k);
            printf("%-20s %c%c    %14s %8d %12.1f %12.1f %12.3f\n", s->what, s->ta, s->tb, dims, s->per_step,
                   f / ms[0] * 1e-6, f / ms[1] * 1e-6, best);
        }
    }
    /* the recurrent products stay per step in the batched scheme */
    double rec[2] = {0, 0}, rec_best = 0;
    for (size_t i = 0; i < sizeof now_ / sizeof now_[0]; i++) {
        if (!now_[i].recurrent) continue;
        double ms[2];
        for (int th = 1; th <= 2; th++) {
            openblas_set_num_threads(th);
            ms[th - 1] = time_shape(&now_[i], seconds) * 1e3 * now_[i].per_step;
            rec[th - 1] += ms[th - 1];
        }
        rec_best += ms[0] < ms[1] ? ms[0] : ms[1];
    }
    printf("-- ms per step of all products:\n");
    printf("   as now:           1 thread %8.2f   2 threads %8.2f   best thread count per shape %8.2f\n",
           tot[0][0], tot[0][1], best_now);
    printf("   batched over t:   1 thread %8.2f   2 threads %8.2f   best thread count per shape %8.2f\n",
           tot[1][0] + rec[0], tot[1][1] + rec[1], best_batched + rec_best);
    return 0;
}
