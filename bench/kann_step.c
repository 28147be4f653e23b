/* kann_step.c — the benchmark's Elman step in KANN (github.com/attractivechaos/kann,
 * MIT licence), for bench/run.sh beside bench/step.c and bench/torch_step.py.
 * KANN is not part of tapegrad and is not shipped: run.sh compiles this file
 * with kann.c and kautodiff.c from the checkout that TG_BENCH_KANN names, in
 * build/bench.  Only KANN's public API is used (kann.h, kautodiff.h).
 *
 * The network, built the way KANN's examples build theirs (kann_layer_input,
 * kann_layer_rnn, kann_layer_dense, kann_new, kann_unroll over T):
 *   h(t) = tanh(U x(t) + W h(t-1) + b), h(0) = 0   (kann_layer_rnn, no flags)
 *   o(t) = tanh(V h(t) + c)                        (kann_layer_dense + kad_tanh)
 *   cost = kad_mse(o, y), averaged over t by the pivot kann_new adds.
 * KANN's cost is tapegrad's sum of squares divided by T*B*O, so the SGD step
 * uses lr * T*B*O and makes the same update; the losses printed are scaled
 * back (loss0, loss1 compare with step.c's).  Weights and data come from the
 * integer hash of step.c (mirrored here), laid out as KANN wants: a weight
 * [out, in] row-major, as tapegrad's; the inputs of step t as [B][rows].
 *
 * One step = kann_cost(ua, 0, 1) (forward over T, cost, backward; KANN zeroes
 * the gradients itself) + the SGD loop.  KANN's threads: kann_mt(ua, N, B)
 * splits the batch between N copies of the unrolled network (so N <= B);
 * its products are its own kad_sgemm_simple unless built with -DHAVE_CBLAS,
 * then cblas_sgemm with OpenBLAS's threads (OPENBLAS_NUM_THREADS).
 *
 * usage: kann_step --size tiny|small|medium|large [--threads N] [--seconds S] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kann.h"

typedef struct size_spec {
    const char *name;
    int n_in, n_hid, n_out, steps, batch; /* I, H, O, T, B */
} size_spec;

static const size_spec sizes[] = {
    {"tiny", 2, 2, 1, 3, 1},
    {"small", 16, 32, 8, 50, 1},
    {"medium", 64, 256, 64, 100, 32},
    {"large", 256, 1024, 256, 100, 64},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5) return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* ---- step.c's deterministic init (see there) -------------------------------- */
static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static uint32_t fnv1a(const char *prefix, const char *s)
{
    uint32_t h = 2166136261U;
    for (const char *p = prefix; *p; p++) h = (h ^ (unsigned char)*p) * 16777619U;
    for (const char *p = s; *p; p++) h = (h ^ (unsigned char)*p) * 16777619U;
    return h;
}

static float hash_value(size_t i, uint32_t seed, double scale)
{
    double u = (double)mix32((uint32_t)i * 0x9E3779B9U + seed) / 4294967296.0;
    return (float)(scale * (2.0 * u - 1.0));
}

/* a KANN variable node as step.c's init_param sets the parameter `name` */
static void init_var(kad_node_t *v, const char *name, int rows, int cols)
{
    int want = cols ? 2 : 1;
    if (!kad_is_var(v) || v->n_d != want || v->d[0] != rows || (cols && v->d[1] != cols)) {
        fprintf(stderr, "kann_step: KANN's graph is not laid out as expected at %s\n", name);
        exit(1);
    }
    double scale = cols ? 1.0 / sqrt((double)cols) : 0.1;
    int n = rows * (cols ? cols : 1);
    for (int i = 0; i < n; i++) v->x[i] = hash_value((size_t)i, fnv1a("", name), scale);
}

/* ---- timing ------------------------------------------------------------------ */
typedef struct bench {
    kann_t *ua;
    float *x, *g;
    int n_var;
    float lr;
    double scale; /* T*B*O: KANN's cost times this is tapegrad's loss */
    double loss;
} bench;

static void train_step(bench *bn)
{
    bn->loss = kann_cost(bn->ua, 0, 1) * bn->scale;
    float *restrict x = bn->x;
    const float *restrict g = bn->g;
    float lr = bn->lr;
    for (int i = 0; i < bn->n_var; i++) x[i] -= lr * g[i];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_SAMPLES 400

int main(int argc, char **argv)
{
    const char *size = NULL;
    int threads = 1;
    double seconds = 1.5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) size = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else size = NULL, i = argc;
    }
    const size_spec *s = NULL;
    for (size_t i = 0; size && i < sizeof sizes / sizeof sizes[0]; i++)
        if (!strcmp(size, sizes[i].name)) s = &sizes[i];
    if (!s || threads < 1 || (argc % 2) != 1) {
        fprintf(stderr, "usage: kann_step --size tiny|small|medium|large [--threads N] [--seconds S]\n");
        return 2;
    }
    const int I = s->n_in, H = s->n_hid, O = s->n_out, T = s->steps, B = s->batch;

    /* the network, one time step */
    kad_node_t *in = kann_layer_input(I);
    kad_node_t *h = kann_layer_rnn(in, H, 0);
    kad_node_t *d = kann_layer_dense(h, O);
    kad_node_t *o = kad_tanh(d);
    kad_node_t *y = kad_feed(2, 1, O);
    y->ext_flag |= KANN_F_TRUTH;
    o->ext_flag |= KANN_F_OUT;
    kad_node_t *cost = kad_mse(o, y);
    kann_t *ann = kann_new(cost, 0);
    if (!ann) {
        fprintf(stderr, "kann_step: kann_new failed\n");
        return 1;
    }
    /* the parameters, found through the nodes kann_layer_rnn and
     * kann_layer_dense built (tanh(add(add(cmul(x, U), cmul(h0, W)), b)) and
     * add(cmul(h, V), c)); kann_new moved their values into ann->x, which the
     * unrolled network shares */
    kad_node_t *ab = h->child[0], *sum = ab->child[0];
    init_var(sum->child[0]->child[1], "U", H, I);
    init_var(sum->child[1]->child[1], "W", H, H);
    init_var(ab->child[1], "b", H, 0);
    init_var(d->child[0]->child[1], "V", O, H);
    init_var(d->child[1], "c", O, 0);

    /* the data, [T][rows][B] in step.c, here per step [B][rows] */
    float **xs = malloc((size_t)T * sizeof *xs), **ys = malloc((size_t)T * sizeof *ys);
    if (!xs || !ys) return 1;
    uint32_t sx = fnv1a("data:", "x"), sy = fnv1a("data:", "y");
    for (int t = 0; t < T; t++) {
        xs[t] = malloc((size_t)B * I * sizeof(float));
        ys[t] = malloc((size_t)B * O * sizeof(float));
        if (!xs[t] || !ys[t]) return 1;
        for (int r = 0; r < I; r++)
            for (int b = 0; b < B; b++) xs[t][b * I + r] = hash_value(((size_t)t * I + r) * B + b, sx, 1.0);
        for (int r = 0; r < O; r++)
            for (int b = 0; b < B; b++) ys[t][b * O + r] = hash_value(((size_t)t * O + r) * B + b, sy, 0.9);
    }

    kann_t *ua = kann_unroll(ann, T);
    kann_set_batch_size(ua, B);
    kann_mt(ua, threads, B); /* KANN caps its threads at the batch size */
    kann_feed_bind(ua, KANN_F_IN, 0, xs);
    kann_feed_bind(ua, KANN_F_TRUTH, 0, ys);
    kann_switch(ua, 1);

    bench bn = {ua, ua->x, ua->g, kann_size_var(ua), 0, (double)T * B * O, 0};
    double lr = 0.01 / ((double)T * B); /* step.c's */
    bn.lr = (float)(lr * bn.scale);
    const char *nt = getenv("OPENBLAS_NUM_THREADS");
#ifdef HAVE_CBLAS
    const char *gemm = "cblas";
#else
    const char *gemm = "kann";
#endif
    printf("impl=kann\nsize=%s\nI=%d\nH=%d\nO=%d\nT=%d\nB=%d\nparams=%d\n", s->name, I, H, O, T, B, bn.n_var);
    printf("kann_threads=%d\nkann_threads_used=%d\nsgemm=%s\nenv_OPENBLAS_NUM_THREADS=%s\n", threads,
           threads < B ? threads : B, gemm, nt ? nt : "(unset)");
    if (!strcmp(gemm, "cblas"))
        printf("cfg=kann_mt %d, OpenBLAS %s\n", threads < B ? threads : B, nt ? nt : "(unset)");
    else
        printf("cfg=kann_mt %d, own sgemm\n", threads < B ? threads : B);
    for (int i = 0; i < 3; i++) { /* warm-up, and the losses to compare */
        train_step(&bn);
        if (i < 2) printf("loss%d=%.9g\n", i, bn.loss);
        if (!isfinite(bn.loss)) {
            fprintf(stderr, "kann_step: the loss is not finite\n");
            return 1;
        }
    }

    /* step.c's time_it: samples of >= 2 ms, for `seconds`, at least 5 */
    double busy0 = machine_busy_s(), own0 = own_cpu_s(), wall0 = now();
    double t0 = now();
    train_step(&bn);
    double one = now() - t0;
    int reps = one >= 2e-3 ? 1 : (int)(2e-3 / (one > 1e-8 ? one : 1e-8)) + 1;
    static double samples[MAX_SAMPLES];
    int ns = 0;
    double start = now();
    while (ns < MAX_SAMPLES && (ns < 5 || now() - start < seconds)) {
        double a = now();
        for (int r = 0; r < reps; r++) train_step(&bn);
        samples[ns++] = (now() - a) / reps;
    }
    double busy1 = machine_busy_s(), own1 = own_cpu_s(), wall1 = now();
    qsort(samples, (size_t)ns, sizeof samples[0], cmp_double);
    double med = ns % 2 ? samples[ns / 2] : 0.5 * (samples[ns / 2 - 1] + samples[ns / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (busy0 >= 0 && busy1 >= 0 && ncpu > 0)
        printf("others_cpu_pct=%.0f\n",
               fmax(0, 100.0 * ((busy1 - busy0) - (own1 - own0)) / ((wall1 - wall0) * (double)ncpu)));
    printf("ms_median=%.6f\nms_min=%.6f\nms_max=%.6f\nsamples=%d\nreps_per_sample=%d\n", med * 1e3,
           samples[0] * 1e3, samples[ns - 1] * 1e3, ns, reps);
    printf("rss_mib=%.1f\nloss_last=%.9g\n", (double)ru.ru_maxrss / 1024.0, bn.loss);

    kann_mt(ua, 1, B); /* stops KANN's worker threads */
    kann_delete_unrolled(ua);
    kann_delete(ann);
    for (int t = 0; t < T; t++) free(xs[t]), free(ys[t]);
    free(xs);
    free(ys);
    return 0;
}
