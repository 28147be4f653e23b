/* step.c — times one full training step of a recurrent model from models/
 * (forward over T steps, loss, backward, plain SGD, zeroed gradients, the tape
 * re-recorded every step) at one of the benchmark sizes, in float32 with a
 * fixed number of threads.  Prints key=value lines that bench/run.sh
 * tabulates.  Weights and data come from an integer hash that
 * bench/torch_step.py reproduces bit for bit, so both sides start from the
 * same numbers and their losses can be compared.
 *
 * usage: step [--size tiny|small|medium|large] [--model FILE] [--engine yaml|api]
 *             [--threads N | --blas-threads N] [--seconds S] [--lr LR] [--dim NAME=VALUE]...
 *             [--no-replay] [--losses N] [--write-data FILE] [--steps N] [--breakdown]
 *             [--init hash|model]
 *        step --calibrate [--threads N]      (the machine's sgemm rate only)
 *        step --long --shape I,H,O,T,B [--memory SIZE] [--seconds S] [--one-step S] [--model FILE]
 *                                            (the long-sequence table: seconds and peak RSS)
 *
 * --engine yaml (the default) loads the model file and records it with
 * tg_model_unroll(); --engine api records the Elman network by hand through
 * tg_matmul/tg_add/tg_tanh/tg_squared_error (a reference for the unroller's
 * overhead).  --write-data writes the size's data as a data file for
 * `tapegrad train` and exits; --steps N runs N untimed steps after the
 * warm-up, for a profiler (valgrind --tool=callgrind --toggle-collect=train_step);
 * --breakdown times the phases and every op's kernels (see run_breakdown);
 * --init model keeps the model file's own init (seed 1, as `tapegrad train`)
 * instead of the hash, for comparing with the tool.
 * Threads: --threads N (default 2) gives tapegrad N threads
 * (tg_ctx_set_threads, which runs OpenBLAS on one); --blas-threads N is the
 * old configuration, tapegrad on one thread and OpenBLAS on N.  --calibrate
 * always times OpenBLAS on N threads: the machine's limit.
 * --shape I,H,O,T,B replaces the named sizes.  --long times whole steps
 * (forward + loss + backward + SGD + zero_grad) of a long sequence, each
 * alone: steps run until S seconds have passed and two were timed, or just
 * one if it took more than --one-step seconds (20); the time reported is the
 * fastest step after the first (which also pays the tape's first growth), or
 * the first if it ran alone.  The step is tg_model_backprop() with the
 * memory budget SIZE (as `--memory` of the tool; 0, the default: full BPTT).  Peak RSS is the process's (ru_maxrss) and includes the
 * data, which is printed apart (data_mib).
 * Every time is wall-clock, from CLOCK_MONOTONIC. */
#include <cblas.h>
#undef I /* OpenBLAS's cblas.h pulls in <complex.h>; no complex numbers here */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
/* The library's private header, for --breakdown only: it re-runs each tape
 * entry's forward kernel (op->def.forward) to time it apart from recording. */
#include "tg_internal.h"
#include <unistd.h>

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

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* The CPU time the whole machine spent busy (non-idle jiffies of /proc/stat),
 * in seconds; with this process's own CPU time it tells how much of a
 * measurement other processes took.  -1 where /proc/stat is unreadable. */
static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5) return -1;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* all but idle, iowait */
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static void die(const char *what, tg_ctx *ctx)
{
    fprintf(stderr, "step: %s%s%s\n", what, ctx ? ": " : "", ctx ? tg_errmsg(ctx) : "");
    exit(1);
}

/* ---- the deterministic init, mirrored in torch_step.py ----------------------
 * u(seed, i) = mix32(i * 0x9E3779B9 + seed) / 2^32 in [0, 1), all in uint32
 * arithmetic, so numpy gives the same bits.  A parameter's seed is the FNV-1a
 * hash of its name; a 2-D parameter [r, c] is uniform in +-1/sqrt(c), a 1-D
 * one in +-0.1.  Inputs are uniform in [-1, 1), targets in +-0.9, both
 * seeded by "data:" + name and laid out [T][rows][B] as tg_data_values(). */
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

static void fill_hash(tg_real *v, size_t n, uint32_t seed, double scale)
{
    for (size_t i = 0; i < n; i++) {
        double u = (double)mix32((uint32_t)i * 0x9E3779B9U + seed) / 4294967296.0;
        v[i] = (tg_real)(scale * (2.0 * u - 1.0));
    }
}

static void init_param(tg_tensor *p, const char *name)
{
    double scale = tg_ndim(p) == 2 ? 1.0 / sqrt((double)tg_cols(p)) : 0.1;
    fill_hash(tg_data(p), tg_size(p), fnv1a("", name), scale);
}

/* ---- one training step ------------------------------------------------------- */
typedef struct bench {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_params *ps;
    tg_model *model;      /* NULL for --engine api */
    tg_unroll u;
    const tg_real **inputs, **targets;
    int *input_rows, *target_rows;
    tg_real *x, *y;       /* the api engine's data */
    tg_tensor *U, *W, *b, *V, *c;
    size_spec s;
    double lr;
    double loss;          /* of the last step, before its update */
    size_t memory;        /* --long: tg_model_backprop's budget in bytes (0: full BPTT) */
    int model_init;       /* keep the model file's own init (seed 1) */
} bench;

static tg_tensor *record_api(bench *bn)
{
    tg_tape *tp = bn->tape;
    const size_spec *s = &bn->s;
    tg_tensor *h = tg_input(tp, s->n_hid, s->batch, NULL, 0); /* h0 = 0 */
    tg_tensor *loss = NULL;
    for (int t = 0; t < s->steps; t++) {
        tg_tensor *x = tg_input_ref(tp, s->n_in, s->batch, bn->x + (size_t)t * s->n_in * s->batch);
        tg_tensor *y = tg_input_ref(tp, s->n_out, s->batch, bn->y + (size_t)t * s->n_out * s->batch);
        tg_tensor *a = tg_add(tp, tg_add(tp, tg_matmul(tp, bn->U, x), tg_matmul(tp, bn->W, h)), bn->b);
        h = tg_tanh(tp, a);
        tg_tensor *o = tg_tanh(tp, tg_add(tp, tg_matmul(tp, bn->V, h), bn->c));
        tg_tensor *e = tg_squared_error(tp, o, y);
        loss = loss ? tg_add(tp, loss, e) : e;
    }
    return loss;
}

/* Resets the tape and records the forward pass and loss of one step. */
static tg_tensor *record(bench *bn)
{
    tg_tape_reset(bn->tape);
    tg_tensor *loss;
    if (bn->model) {
        if (tg_model_unroll(bn->model, bn->tape, &bn->u) != TG_OK) die("unroll", bn->ctx);
        loss = bn->u.loss;
    } else {
        loss = record_api(bn);
    }
    if (!loss) die("no loss", bn->ctx);
    return loss;
}

__attribute__((noinline)) static void train_step(bench *bn)
{
    tg_tensor *loss = record(bn);
    bn->loss = tg_item(loss);
    if (tg_backward(bn->tape, loss) != TG_OK) die("backward", bn->ctx);
    tg_real *restrict v = tg_params_values(bn->ps);
    const tg_real *restrict g = tg_params_grads(bn->ps);
    size_t n = tg_params_total(bn->ps);
    tg_real lr = (tg_real)bn->lr;
    for (size_t i = 0; i < n; i++) v[i] -= lr * g[i];
    tg_params_zero_grad(bn->ps);
}

/* One step of --long: the same step as train_step, through tg_model_backprop
 * (which records, sweeps and resets the tape itself, in segments under a budget). */
static tg_bptt_plan long_plan;
static void long_step(bench *bn)
{
    if (tg_model_backprop(bn->model, bn->tape, &bn->u, bn->memory, NULL, &bn->loss, &long_plan) != TG_OK)
        die("tg_model_backprop", bn->ctx);
    tg_real *restrict v = tg_params_values(bn->ps);
    const tg_real *restrict g = tg_params_grads(bn->ps);
    size_t n = tg_params_total(bn->ps);
    tg_real lr = (tg_real)bn->lr;
    for (size_t i = 0; i < n; i++) v[i] -= lr * g[i];
    tg_params_zero_grad(bn->ps);
}

static void run_long(bench *bn, double seconds, double one_limit)
{
    size_t data = 0;
    for (int i = 0; bn->inputs[i]; i++) data += (size_t)bn->s.steps * bn->s.batch * sizeof(tg_real) * (size_t)bn->input_rows[i];
    for (int i = 0; bn->targets[i]; i++) data += (size_t)bn->s.steps * bn->s.batch * sizeof(tg_real) * (size_t)bn->target_rows[i];
    printf("memory=%zu\ndata_mib=%.1f\n", bn->memory, (double)data / 1048576.0);
    fflush(stdout);
    double first = 0, best = 0, start = now(), busy0 = machine_busy_s(), own0 = own_cpu_s();
    int n = 0;
    for (;;) {
        double a = now();
        long_step(bn);
        double t = now() - a;
        if (!isfinite(bn->loss)) die("the loss is not finite", NULL);
        if (n == 0) first = t, printf("loss0=%.9g\n", bn->loss);
        else if (n == 1 || t < best) best = t;
        n++;
        if (n == 1 && t > one_limit) break;
        if (n >= 2 && now() - start >= seconds) break;
    }
    double busy1 = machine_busy_s(), own1 = own_cpu_s(), wall = now() - start;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (busy0 >= 0 && busy1 >= 0 && ncpu > 0)
        printf("others_cpu_pct=%.0f\n", fmax(0, 100.0 * ((busy1 - busy0) - (own1 - own0)) / (wall * (double)ncpu)));
    printf("steps_run=%d\ns_first=%.6f\ns_step=%.6f\n", n, first, n > 1 ? best : first);
    printf("rss_mib=%.1f\ntape_mib=%.1f\n", peak_rss_mib(), (double)tg_tape_bytes(bn->tape) / 1048576.0);
    const tg_bptt_plan *p = &long_plan;
    printf("plan_steps=%d\nplan_segment=%d\nplan_segments=%d\nplan_snapshots=%d\n", p->steps, p->segment,
           p->segments, p->snapshots);
    printf("plan_forward_steps=%lld\nplan_recomputed=%lld\nplan_tape_mib=%.1f\nplan_snapshot_mib=%.1f\n",
           p->forward_steps, p->recomputed, (double)p->tape_bytes / 1048576.0,
           (double)p->snapshot_bytes / 1048576.0);
}

/* ---- set-up -------------------------------------------------------------------- */
static const char *const dim_I[] = {"input", "inputs", "n_input", "n_in", "in", "I", NULL};
static const char *const dim_H[] = {"hidden", "n_hidden", "H", NULL};
static const char *const dim_O[] = {"output", "outputs", "n_output", "n_out", "out", "O", NULL};

static int name_in(const char *nm, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(nm, *list)) return 1;
    return 0;
}

#define MAX_DIMS 32
static void setup_yaml(bench *bn, const char *path, tg_dim *extra, int n_extra, int verbose)
{
    /* load once to learn the dimension names, then again with the size's values */
    tg_model *m0 = tg_model_load(bn->ctx, path, NULL, 0);
    if (!m0) die("model", bn->ctx);
    tg_dim dims[MAX_DIMS];
    char *names[MAX_DIMS];
    int nd = 0, nm = tg_model_count(m0, TG_ROLE_DIM);
    for (int i = 0; i < nm && nd < MAX_DIMS; i++) {
        int rows, cols;
        const char *d = tg_model_var(m0, TG_ROLE_DIM, i, &rows, &cols);
        int v = name_in(d, dim_I) ? bn->s.n_in : name_in(d, dim_H) ? bn->s.n_hid : name_in(d, dim_O) ? bn->s.n_out : -1;
        for (int k = 0; k < n_extra; k++)
            if (!strcmp(extra[k].name, d)) v = extra[k].value;
        if (v < 0) {
            fprintf(stderr, "step: note: dimension '%s' of %s kept at %d\n", d, path, rows);
            continue;
        }
        names[nd] = strdup(d);
        dims[nd].name = names[nd];
        dims[nd].value = v;
        nd++;
    }
    tg_model_free(m0);
    bn->model = tg_model_load(bn->ctx, path, dims, nd);
    if (!bn->model) die("model", bn->ctx);
    for (int i = 0; i < nd; i++) free(names[i]);
    tg_model *m = bn->model;
    if (tg_model_init_params(m, bn->ps, 1) != TG_OK) die("init params", bn->ctx);
    int np = tg_model_count(m, TG_ROLE_PARAM);
    for (int i = 0; i < np; i++) {
        int rows, cols;
        const char *name = tg_model_var(m, TG_ROLE_PARAM, i, &rows, &cols);
        tg_tensor *p = tg_params_find(bn->ps, name);
        if (!p) die("a declared parameter is missing", NULL);
        if (!bn->model_init) init_param(p, name);
        if (verbose) printf("param=%s:%d:%d\n", name, rows, cols);
    }
    int ni = tg_model_count(m, TG_ROLE_INPUT), nt = tg_model_count(m, TG_ROLE_TARGET);
    bn->inputs = calloc((size_t)ni + 1, sizeof *bn->inputs);
    bn->targets = calloc((size_t)nt + 1, sizeof *bn->targets);
    bn->input_rows = calloc((size_t)ni + 1, sizeof *bn->input_rows);
    bn->target_rows = calloc((size_t)nt + 1, sizeof *bn->target_rows);
    if (!bn->inputs || !bn->targets || !bn->input_rows || !bn->target_rows) die("out of memory", NULL);
    for (int role = TG_ROLE_INPUT; role <= TG_ROLE_TARGET; role++) {
        int n = role == TG_ROLE_INPUT ? ni : nt;
        for (int i = 0; i < n; i++) {
            int rows, cols;
            const char *name = tg_model_var(m, (tg_model_role)role, i, &rows, &cols);
            size_t len = (size_t)bn->s.steps * (size_t)rows * (size_t)bn->s.batch;
            tg_real *buf = malloc(len * sizeof *buf);
            if (!buf) die("out of memory", NULL);
            fill_hash(buf, len, fnv1a("data:", name), role == TG_ROLE_INPUT ? 1.0 : 0.9);
            (role == TG_ROLE_INPUT ? bn->inputs : bn->targets)[i] = buf;
            (role == TG_ROLE_INPUT ? bn->input_rows : bn->target_rows)[i] = rows;
            if (verbose) printf("%s=%s:%d\n", role == TG_ROLE_INPUT ? "input" : "target", name, rows);
        }
    }
    memset(&bn->u, 0, sizeof bn->u); /* outputs and state come back on the tape */
    bn->u.params = bn->ps;
    bn->u.batch = bn->s.batch;
    bn->u.t0 = 0;
    bn->u.steps = bn->s.steps;
    bn->u.seq_steps = bn->s.steps;
    bn->u.inputs = bn->inputs;
    bn->u.targets = bn->targets;
}

static void setup_api(bench *bn)
{
    const size_spec *s = &bn->s;
    struct { tg_tensor **p; const char *name; int rows, cols; } ps[] = {
        {&bn->U, "U", s->n_hid, s->n_in}, {&bn->W, "W", s->n_hid, s->n_hid}, {&bn->b, "b", s->n_hid, 0},
        {&bn->V, "V", s->n_out, s->n_hid}, {&bn->c, "c", s->n_out, 0},
    };
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        if (!(*ps[i].p = tg_params_add(bn->ps, ps[i].name, ps[i].rows, ps[i].cols))) die("params", bn->ctx);
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) init_param(*ps[i].p, ps[i].name);
    size_t nx = (size_t)s->steps * s->n_in * s->batch, ny = (size_t)s->steps * s->n_out * s->batch;
    bn->x = malloc(nx * sizeof *bn->x);
    bn->y = malloc(ny * sizeof *bn->y);
    if (!bn->x || !bn->y) die("out of memory", NULL);
    fill_hash(bn->x, nx, fnv1a("data:", "x"), 1.0);
    fill_hash(bn->y, ny, fnv1a("data:", "y"), 0.9);
}

/* The benchmark's data as a data file that `tapegrad train --data` reads: a
 * list of B sequences, each mapping every input and target name to T steps.
 * Returns 0, or -1 if the file could not be written. */
static int write_data(const bench *bn, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const tg_model *m = bn->model;
    int ni = tg_model_count(m, TG_ROLE_INPUT), nt = tg_model_count(m, TG_ROLE_TARGET);
    fprintf(f, "# bench/step.c --write-data: %d sequences of %d steps\n", bn->s.batch, bn->s.steps);
    for (int b = 0; b < bn->s.batch; b++) {
        for (int k = 0; k < ni + nt; k++) {
            int role = k < ni ? TG_ROLE_INPUT : TG_ROLE_TARGET, i = k < ni ? k : k - ni;
            int rows, cols;
            const char *name = tg_model_var(m, (tg_model_role)role, i, &rows, &cols);
            const tg_real *v = (role == TG_ROLE_INPUT ? bn->inputs : bn->targets)[i];
            fprintf(f, "%s%s: [", k ? "  " : "- ", name);
            for (int t = 0; t < bn->s.steps; t++) {
                fputs(t ? ", [" : "[", f);
                for (int r = 0; r < rows; r++)
                    fprintf(f, "%s%.9g", r ? ", " : "",
                            (double)v[((size_t)t * rows + r) * bn->s.batch + b]);
                fputc(']', f);
            }
            fputs("]\n", f);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- FLOPs and the matmul-only lower bound, both read off the tape ---------- */
typedef struct gemm_call { int m, k, n, da, db; } gemm_call;

typedef struct tape_stats {
    double mm_fwd, mm_bwd;     /* FLOPs of the products, 2mkn each */
    double ew_fwd, ew_bwd;     /* elements written by every other op */
    int entries, matmuls;
    gemm_call *calls;
    size_t max_a, max_b, max_c;
} tape_stats;

/* Call after a backward on a tape that keeps its gradients: an entry took
 * part in the sweep iff it has a gradient. */
static void read_tape(tg_tape *tp, tape_stats *st)
{
    memset(st, 0, sizeof *st);
    int n = tg_tape_length(tp);
    st->entries = n;
    size_t products = 1;
    for (int i = 0; i < n; i++) products += (size_t)tg_tensor_arity(tg_tape_at(tp, i));
    st->calls = calloc(products, sizeof *st->calls);
    for (int i = 0; i < n; i++) {
        tg_tensor *t = tg_tape_at(tp, i);
        const char *op = tg_tensor_op(t);
        int swept = tg_grad(t) != NULL;
        /* a matmul is one product; an affine entry (the fused tape) is
         * attr 0 products over its first inputs, then elementwise work */
        int is_affine = !strcmp(op, "affine"), pairs = is_affine ? (int)tg_attr(t, 0) : !strcmp(op, "matmul");
        for (int j = 0; j < pairs; j++) {
            tg_tensor *a = tg_tensor_input(t, 2 * j), *b = tg_tensor_input(t, 2 * j + 1);
            gemm_call c = {tg_rows(a), tg_cols(a), tg_cols(b), swept && tg_grad(a), swept && tg_grad(b)};
            double f = 2.0 * c.m * c.k * c.n;
            st->mm_fwd += f;
            st->mm_bwd += f * (c.da + c.db);
            st->calls[st->matmuls++] = c;
            size_t sa = (size_t)c.m * c.k, sb = (size_t)c.k * c.n, sc = (size_t)c.m * c.n;
            if (sa > st->max_a) st->max_a = sa;
            if (sb > st->max_b) st->max_b = sb;
            if (sc > st->max_c) st->max_c = sc;
        }
        if (is_affine) {
            st->ew_fwd += (double)tg_size(t);
            if (swept) st->ew_bwd += (double)tg_size(t);
        } else if (!pairs && strcmp(op, "input") != 0) {
            st->ew_fwd += (double)tg_size(t);
            if (swept) st->ew_bwd += (double)tg_size(t);
        }
    }
}

/* Every product of one step (forward in tape order, then the backward ones in
 * reverse, accumulating with beta = 1 as ops/matmul.c does), on zero buffers. */
static void replay(const tape_stats *st, float *a, float *b, float *c)
{
    for (int i = 0; i < st->matmuls; i++) {
        const gemm_call *g = &st->calls[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, a, g->k, b,
                    g->n, 0.0f, c, g->n);
    }
    for (int i = st->matmuls - 1; i >= 0; i--) {
        const gemm_call *g = &st->calls[i];
        if (g->da)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->m, g->k, g->n, 1.0f, c, g->n, b,
                        g->n, 1.0f, a, g->k);
        if (g->db)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->k, g->n, g->m, 1.0f, a, g->k, c,
                        g->n, 1.0f, b, g->n);
    }
}

/* ---- timing ------------------------------------------------------------------------ */
typedef struct timing {
    double med, min, max;  /* seconds per call */
    int samples, reps;
} timing;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs fn until `seconds` have passed and at least 5 samples are in; each
 * sample averages enough calls to last >= 2 ms, so a sub-microsecond step is
 * not swamped by the clock. */
#define MAX_SAMPLES 400
static timing time_it(void (*fn)(void *), void *arg, double seconds)
{
    double t0 = now();
    fn(arg);
    double one = now() - t0;
    int reps = one >= 2e-3 ? 1 : (int)(2e-3 / (one > 1e-8 ? one : 1e-8)) + 1;
    double samples[MAX_SAMPLES];
    int ns = 0;
    double start = now();
    while (ns < MAX_SAMPLES && (ns < 5 || now() - start < seconds)) {
        double a = now();
        for (int r = 0; r < reps; r++) fn(arg);
        samples[ns++] = (now() - a) / reps;
    }
    qsort(samples, (size_t)ns, sizeof samples[0], cmp_double);
    timing t = {ns % 2 ? samples[ns / 2] : 0.5 * (samples[ns / 2 - 1] + samples[ns / 2]),
                samples[0], samples[ns - 1], ns, reps};
    return t;
}

static void step_fn(void *arg) { train_step(arg); }

typedef struct replay_arg { const tape_stats *st; float *a, *b, *c; } replay_arg;
static void replay_fn(void *arg)
{
    replay_arg *r = arg;
    replay(r->st, r->a, r->b, r->c);
}

typedef struct sgemm_arg { int m, k, n; float *a, *b, *c; } sgemm_arg;
static void sgemm_fn(void *arg)
{
    sgemm_arg *s = arg;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->m, s->n, s->k, 1.0f, s->a, s->k, s->b,
                s->n, 0.0f, s->c, s->n);
}

/* GFLOP/s of one sgemm shape, best of the median over a short run. */
static double sgemm_rate(int m, int k, int n, double seconds)
{
    sgemm_arg s = {m, k, n, calloc((size_t)m * k, 4), calloc((size_t)k * n, 4), calloc((size_t)m * n, 4)};
    if (!s.a || !s.b || !s.c) die("out of memory", NULL);
    for (size_t i = 0; i < (size_t)m * k; i++) s.a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)k * n; i++) s.b[i] = (float)(i % 5) * 0.01f;
    timing t = time_it(sgemm_fn, &s, seconds);
    free(s.a);
    free(s.b);
    free(s.c);
    return 2.0 * m * k * n / t.med * 1e-9;
}

/* ---- --breakdown: where the time of a step goes ------------------------------
 * Phases are timed around the public calls (reset + unroll, backward, the
 * SGD loop, zero_grad).  Inside them, every backward kernel is timed from the
 * sweep hook (called after each entry's backward) and every forward kernel by
 * running it again on the recorded tape; recording overhead and the sweep's
 * own bookkeeping (marking, gradient allocation and zero-fill) are what the
 * phases take beyond their kernels.  The hook's own clock reads are measured
 * and subtracted.  Too coarse for the tiny size (use callgrind there). */
#define MAX_OPS 64
typedef struct op_time {
    const char *name;
    double fwd, bwd;     /* seconds, summed over the reps */
    long n_fwd, n_bwd;   /* kernel calls */
} op_time;

typedef struct breakdown {
    op_time ops[MAX_OPS];
    int n;
    double last;         /* the hook's clock */
    long hook_calls;
} breakdown;

static op_time *op_slot(breakdown *bd, const char *name)
{
    for (int i = 0; i < bd->n; i++)
        if (bd->ops[i].name == name || !strcmp(bd->ops[i].name, name)) return &bd->ops[i];
    if (bd->n == MAX_OPS) return &bd->ops[MAX_OPS - 1];
    bd->ops[bd->n].name = name;
    return &bd->ops[bd->n++];
}

static void sweep_timer(tg_tensor *entry, void *user)
{
    breakdown *bd = user;
    double t = now();
    if (entry) {
        op_time *o = op_slot(bd, tg_tensor_op(entry));
        o->bwd += t - bd->last;
        o->n_bwd++;
    }
    bd->hook_calls++;
    bd->last = now();
}

static void run_breakdown(bench *bn, double seconds)
{
    breakdown bd;
    memset(&bd, 0, sizeof bd);
    double ph[5] = {0, 0, 0, 0, 0}; /* record, backward, sgd, zero_grad, forward kernels re-run */
    /* the gradients a sweep that keeps them all would hold, from one such step */
    size_t grad_elems = 0;
    tg_tape_keep_grads(bn->tape, 1);
    train_step(bn);
    for (int i = 0; i < tg_tape_length(bn->tape); i++) {
        tg_tensor *t = tg_tape_at(bn->tape, i);
        if (tg_grad(t)) grad_elems += tg_size(t);
    }
    tg_tape_keep_grads(bn->tape, 0);
    int reps = 0;
    double start = now(), busy0 = machine_busy_s(), own0 = own_cpu_s();
    tg_tape_set_sweep_hook(bn->tape, sweep_timer, &bd);
    while (reps < 3 || (now() - start < seconds && reps < 100000)) {
        double a = now();
        tg_tensor *loss = record(bn);
        double b = now();
        if (tg_backward(bn->tape, loss) != TG_OK) die("backward", bn->ctx);
        double c = now();
        tg_real *restrict v = tg_params_values(bn->ps);
        const tg_real *restrict g = tg_params_grads(bn->ps);
        size_t n = tg_params_total(bn->ps);
        tg_real lr = (tg_real)bn->lr;
        for (size_t i = 0; i < n; i++) v[i] -= lr * g[i];
        double d = now();
        tg_params_zero_grad(bn->ps);
        double e = now();
        ph[0] += b - a, ph[1] += c - b, ph[2] += d - c, ph[3] += e - d;
        /* the forward kernels again, each timed, in tape order */
        int len = tg_tape_length(bn->tape);
        for (int i = 0; i < len; i++) {
            tg_tensor *t = tg_tape_at(bn->tape, i);
            if (!t->op) continue;
            double t0 = now();
            t->op->def.forward(t);
            double t1 = now();
            op_time *o = op_slot(&bd, tg_tensor_op(t));
            o->fwd += t1 - t0;
            o->n_fwd++;
        }
        ph[4] += now() - e;
        reps++;
    }
    tg_tape_set_sweep_hook(bn->tape, NULL, NULL);
    double busy1 = machine_busy_s(), own1 = own_cpu_s(), wall = now() - start;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (busy0 >= 0 && busy1 >= 0 && ncpu > 0)
        printf("bd_others_cpu_pct=%.0f\n",
               fmax(0, 100.0 * ((busy1 - busy0) - (own1 - own0)) / (wall * (double)ncpu)));
    /* what one hook call costs: two clock reads and a lookup */
    breakdown probe;
    memset(&probe, 0, sizeof probe);
    tg_tensor *any = tg_tape_at(bn->tape, tg_tape_length(bn->tape) - 1);
    double h0 = now();
    for (int i = 0; i < 10000; i++) sweep_timer(any, &probe);
    double hook_cost = (now() - h0) / 10000;
    double clock_cost = 0;
    {
        double c0 = now();
        for (int i = 0; i < 10000; i++) (void)now();
        clock_cost = (now() - c0) / 10000;
    }
    /* a memset of all those gradients, for comparison with the bookkeeping */
    size_t bytes = grad_elems * sizeof(tg_real);
    char *buf = malloc(bytes ? bytes : 1);
    double ms_memset = 0;
    if (buf) {
        memset(buf, 1, bytes);
        double m0 = now();
        for (int i = 0; i < 20; i++) {
            memset(buf, 0, bytes);
            __asm__ volatile("" : : "r"(buf) : "memory");
        }
        ms_memset = (now() - m0) / 20 * 1e3;
        free(buf);
    }
    double sum_fwd = 0, sum_bwd = 0;
    long n_entries_bwd = 0, n_entries_fwd = 0;
    for (int i = 0; i < bd.n; i++) {
        sum_fwd += bd.ops[i].fwd;
        sum_bwd += bd.ops[i].bwd;
        n_entries_bwd += bd.ops[i].n_bwd;
        n_entries_fwd += bd.ops[i].n_fwd;
    }
    double R = reps;
    /* a forward kernel's timing carries one clock read; a backward one a hook call */
    double fwd_clock = clock_cost * (double)n_entries_fwd / R;
    double bwd_hook = hook_cost * (double)bd.hook_calls / R;
    printf("bd_reps=%d\nbd_tape_entries=%d\nbd_grad_mib=%.2f\n", reps, tg_tape_length(bn->tape),
           (double)bytes / 1048576.0);
    printf("bd_record_ms=%.6f\nbd_backward_ms=%.6f\nbd_sgd_ms=%.6f\nbd_zero_grad_ms=%.6f\n", ph[0] / R * 1e3,
           (ph[1] / R - bwd_hook) * 1e3, ph[2] / R * 1e3, ph[3] / R * 1e3);
    printf("bd_hook_overhead_ms=%.6f\nbd_clock_ns=%.1f\n", bwd_hook * 1e3, clock_cost * 1e9);
    printf("bd_fwd_kernels_ms=%.6f\nbd_bwd_kernels_ms=%.6f\n", (sum_fwd / R - fwd_clock) * 1e3,
           (sum_bwd / R) * 1e3);
    printf("bd_record_overhead_ms=%.6f\n", (ph[0] - sum_fwd) / R * 1e3 + fwd_clock * 1e3);
    printf("bd_sweep_bookkeeping_ms=%.6f\n", (ph[1] / R - bwd_hook - sum_bwd / R) * 1e3);
    printf("bd_memset_same_bytes_ms=%.6f\n", ms_memset);
    for (int i = 0; i < bd.n; i++) {
        const op_time *o = &bd.ops[i];
        printf("bd_op=%s fwd_ms=%.6f bwd_ms=%.6f fwd_calls=%ld bwd_calls=%ld\n", o->name,
               (o->fwd - clock_cost * (double)o->n_fwd) / R * 1e3, o->bwd / R * 1e3, o->n_fwd / reps,
               o->n_bwd / reps);
    }
}

static int tg_threads = 1;                   /* tapegrad's threads, for print_env */
static const char *thread_config = "tapegrad"; /* or "blas": --blas-threads, --calibrate */

static void print_env(int threads)
{
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE"),
               *nt = getenv("OPENBLAS_NUM_THREADS");
    printf("corename=%s\n", openblas_get_corename());
    printf("blas_config=%s\n", openblas_get_config());
    printf("blas_threads=%d requested=%d\n", openblas_get_num_threads(), threads);
    printf("tg_threads=%d\nthread_config=%s\n", tg_threads, thread_config);
    printf("env_OPENBLAS_CORETYPE=%s\nenv_OPENBLAS_L2_SIZE=%s\nenv_OPENBLAS_NUM_THREADS=%s\n",
           ct ? ct : "(unset)", l2 ? l2 : "(unset)", nt ? nt : "(unset)");
}

static void usage(void)
{
    fprintf(stderr,
            "usage: step [--size tiny|small|medium|large] [--model FILE] [--engine yaml|api]\n"
            "            [--threads N | --blas-threads N] [--seconds S] [--lr LR] [--dim NAME=VALUE]...\n"
            "            [--no-replay]\n"
            "            [--losses N] [--write-data FILE] [--steps N] [--breakdown] [--init hash|model]\n"
            "       step --calibrate [--threads N] [--seconds S]\n"
            "       step --long --shape I,H,O,T,B [--memory SIZE] [--seconds S] [--one-step S] [--model FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *size = "tiny", *model = "models/elman.yaml", *engine = "yaml", *data_out = NULL, *init = "hash";
    int threads = 2, calibrate = 0, do_replay = 1, n_losses = 0, fixed_steps = 0, want_breakdown = 0;
    int blas_threads = 0; /* --blas-threads N: OpenBLAS's threads, tapegrad on one */
    int long_mode = 0;
    const char *shape = NULL, *memory = "0";
    double one_limit = 20;
    double seconds = 1.5, lr = -1;
    tg_dim extra[MAX_DIMS];
    int n_extra = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--calibrate")) calibrate = 1;
        else if (!strcmp(a, "--no-replay")) do_replay = 0;
        else if (!strcmp(a, "--breakdown")) want_breakdown = 1;
        else if (!strcmp(a, "--long")) long_mode = 1;
        else if (!v) usage();
        else if (!strcmp(a, "--size")) size = v, i++;
        else if (!strcmp(a, "--model")) model = v, i++;
        else if (!strcmp(a, "--engine")) engine = v, i++;
        else if (!strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (!strcmp(a, "--blas-threads")) threads = blas_threads = atoi(v), i++;
        else if (!strcmp(a, "--seconds")) seconds = atof(v), i++;
        else if (!strcmp(a, "--lr")) lr = atof(v), i++;
        else if (!strcmp(a, "--losses")) n_losses = atoi(v), i++;
        else if (!strcmp(a, "--write-data")) data_out = v, i++;
        else if (!strcmp(a, "--steps")) fixed_steps = atoi(v), i++;
        else if (!strcmp(a, "--init")) init = v, i++;
        else if (!strcmp(a, "--shape")) shape = v, i++;
        else if (!strcmp(a, "--memory")) memory = v, i++;
        else if (!strcmp(a, "--one-step")) one_limit = atof(v), i++;
        else if (!strcmp(a, "--dim") && n_extra < MAX_DIMS) {
            const char *eq = strchr(v, '=');
            if (!eq) usage();
            extra[n_extra].name = strndup(v, (size_t)(eq - v));
            extra[n_extra].value = atoi(eq + 1);
            n_extra++;
            i++;
        } else usage();
    }
    if (threads < 1 || threads > TG_MAX_THREADS) usage();
    /* tapegrad's threads (with OpenBLAS on one), or OpenBLAS's (tapegrad on one) */
    openblas_set_num_threads(calibrate || blas_threads ? threads : 1);
    tg_threads = calibrate || blas_threads ? 1 : threads;
    if (calibrate || blas_threads) thread_config = "blas";

    if (calibrate) {
        print_env(threads);
        /* the machine's limit: the best of large square products */
        double best = 0;
        int sq[] = {1024, 1536, 2048};
        for (int i = 0; i < 3; i++) {
            double r = sgemm_rate(sq[i], sq[i], sq[i], seconds / 3);
            printf("sgemm_square_%d_gflops=%.1f\n", sq[i], r);
            if (r > best) best = r;
        }
        printf("sgemm_peak_gflops=%.1f\n", best);
        return 0;
    }

    bench bn;
    memset(&bn, 0, sizeof bn);
    int found = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!strcmp(size, sizes[i].name)) bn.s = sizes[i], found = 1;
    if (shape) {
        size_spec c = {"custom", 0, 0, 0, 0, 0};
        char tail;
        if (sscanf(shape, "%d,%d,%d,%d,%d%c", &c.n_in, &c.n_hid, &c.n_out, &c.steps, &c.batch, &tail) != 5 ||
            c.n_in < 1 || c.n_hid < 1 || c.n_out < 1 || c.steps < 1 || c.batch < 1)
            usage();
        bn.s = c, found = 1;
    }
    if (!found) usage();
    if (long_mode && (strcmp(engine, "yaml") != 0 || strcmp(init, "hash") != 0)) usage();
    /* the loss sums over T and B: keep the step relative to that sum */
    bn.lr = lr > 0 ? lr : 0.01 / ((double)bn.s.steps * bn.s.batch);
    bn.ctx = tg_ctx_new(NULL);
    if (!bn.ctx) die("context", NULL);
    if (tg_ctx_set_threads(bn.ctx, tg_threads) != TG_OK) die("threads", bn.ctx);
    bn.ps = tg_params_new(bn.ctx);
    bn.tape = tg_tape_new(bn.ctx);
    if (!bn.ps || !bn.tape) die("set-up", bn.ctx);
    /* as `tapegrad train`: the step reads parameter gradients only, so the
     * tape recycles the gradients of its entries during the sweep */
    tg_tape_keep_grads(bn.tape, 0);
    int api = !strcmp(engine, "api");
    if (!api && strcmp(engine, "yaml") != 0) usage();
    if (strcmp(init, "hash") != 0 && (api || strcmp(init, "model") != 0)) usage();
    bn.model_init = !strcmp(init, "model");
    if (api) setup_api(&bn);
    else setup_yaml(&bn, model, extra, n_extra, 1);
    if (long_mode) {
        printf("size=%s\nI=%d\nH=%d\nO=%d\nT=%d\nB=%d\nlr=%.9g\n", bn.s.name, bn.s.n_in, bn.s.n_hid,
               bn.s.n_out, bn.s.steps, bn.s.batch, bn.lr);
        print_env(threads);
        if (strcmp(memory, "0") != 0) printf("memory_text=%s\n", memory);
        if (tg_parse_size(bn.ctx, memory, &bn.memory) != TG_OK) die("--memory", bn.ctx);
        fflush(stdout);
        run_long(&bn, seconds, one_limit);
        return 0;
    }

    if (data_out) {
        if (api || write_data(&bn, data_out) != 0) die("--write-data needs --engine yaml and a writable file", NULL);
        return 0;
    }
    const char *base = strrchr(model, '/');
    printf("engine=%s\nmodel=%s\nsize=%s\nI=%d\nH=%d\nO=%d\nT=%d\nB=%d\nlr=%.9g\nparams=%zu\n", engine,
           api ? "elman(api)" : base ? base + 1 : model, size, bn.s.n_in, bn.s.n_hid, bn.s.n_out, bn.s.steps, bn.s.batch,
           bn.lr, tg_params_total(bn.ps));
    print_env(threads);
    printf("keep_grads=0\n");

    /* the first steps, untimed: their losses for the comparison with PyTorch,
     * and the tape's own warm-up (the arena grows once) */
    int warm = n_losses > 3 ? n_losses : 3;
    for (int i = 0; i < warm; i++) {
        train_step(&bn);
        if (i < 2) printf("loss%d=%.9g\n", i, bn.loss);
        if (i < n_losses) printf("loss_step%d=%.9g\n", i, bn.loss);
        if (!isfinite(bn.loss)) die("the loss is not finite", NULL);
    }

    if (want_breakdown) {
        run_breakdown(&bn, seconds);
        return 0;
    }
    if (fixed_steps > 0) { /* for profilers: exactly this many more steps, untimed */
        for (int i = 0; i < fixed_steps; i++) train_step(&bn);
        printf("steps=%d\nloss_last=%.9g\n", fixed_steps, bn.loss);
        return 0;
    }

    double busy0 = machine_busy_s(), own0 = own_cpu_s(), wall0 = now();
    timing t = time_it(step_fn, &bn, seconds);
    double busy1 = machine_busy_s(), own1 = own_cpu_s(), wall1 = now();
    double rss = peak_rss_mib(); /* before the gradient-keeping step and the replay below */
    size_t tape_bytes = tg_tape_bytes(bn.tape);
    /* one more step keeping every gradient, then the tape as it stands after
     * a backward: which entries the sweep reached, so which products ran */
    tg_tape_keep_grads(bn.tape, 1);
    train_step(&bn);
    tape_stats st;
    read_tape(bn.tape, &st);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (busy0 >= 0 && busy1 >= 0 && ncpu > 0) /* coarse: jiffies are 10 ms */
        printf("others_cpu_pct=%.0f\n", fmax(0, 100.0 * ((busy1 - busy0) - (own1 - own0)) /
                                                  ((wall1 - wall0) * (double)ncpu)));
    printf("own_cpu_pct=%.0f\n", 100.0 * (own1 - own0) / (wall1 - wall0));
    double flop = st.mm_fwd + st.mm_bwd;
    printf("ms_median=%.6f\nms_min=%.6f\nms_max=%.6f\nsamples=%d\nreps_per_sample=%d\n", t.med * 1e3,
           t.min * 1e3, t.max * 1e3, t.samples, t.reps);
    printf("steps_per_s=%.1f\nrss_mib=%.1f\n", 1.0 / t.med, rss);
    printf("tape_entries=%d\ntape_mib=%.2f\nmatmuls=%d\n", st.entries, (double)tape_bytes / 1048576.0,
           st.matmuls);
    printf("flop_mm_fwd=%.6g\nflop_mm_bwd=%.6g\nflop_step=%.6g\new_elems_fwd=%.6g\new_elems_bwd=%.6g\n",
           st.mm_fwd, st.mm_bwd, flop, st.ew_fwd, st.ew_bwd);
    printf("gflops=%.3f\n", flop / t.med * 1e-9);
    printf("loss_last=%.9g\n", bn.loss);

    if (do_replay && st.matmuls) {
        size_t big = st.max_a > st.max_b ? st.max_a : st.max_b;
        if (st.max_c > big) big = st.max_c;
        replay_arg r = {&st, calloc(big, 4), calloc(big, 4), calloc(big, 4)};
        if (!r.a || !r.b || !r.c) die("out of memory", NULL);
        timing tr = time_it(replay_fn, &r, seconds / 2);
        printf("matmul_only_ms=%.6f\nmatmul_only_gflops=%.3f\n", tr.med * 1e3, flop / tr.med * 1e-9);
        free(r.a);
        free(r.b);
        free(r.c);
    }
    free(st.calls);
    return 0;
}
