/* threads.c — the context's own worker threads (tg_ctx_set_threads), for
 * the products that ops/gemm.c splits.  One pool per context, nothing
 * global: its struct and thread ids come from the context's allocator, the
 * threads start at the first split product and are joined by
 * tg_ctx_set_threads(ctx, 1) or tg_ctx_free().
 *
 * How a batch runs (tg_parallel): the caller publishes the job function and
 * bumps `state`, one 64-bit atomic holding the batch's generation, its job
 * count and the next unclaimed job.  Everyone, the caller included, claims
 * jobs by compare-and-swap on `state`, so the caller runs whatever no worker
 * has picked up yet (a slow or sleeping worker delays nothing but its own
 * job) and a worker late for a batch can never claim a job of the next one.
 * The caller then waits for `remaining`, the jobs claimed but not finished.
 *
 * Waiting: a split product takes 10 µs to a few ms, and a training step runs
 * hundreds of them back to back with elementwise ops in between, so both
 * workers and caller first spin on the atomics (with a pause) for up to
 * TG_SPIN_NS, then sleep on a condition variable: idle workers use no CPU
 * between training steps.  The sleepers count and the seq_cst order of
 * "store state; load sleepers" against "add sleepers; load state" (and the
 * same pair for caller_waiting and remaining) mean no wake-up is lost. */
#include "tg_internal.h"
#include <cblas.h>
#undef I /* OpenBLAS's cblas.h may pull in <complex.h> */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

/* How long an idle worker (or a waiting caller) spins before it sleeps.
 * Measured on this project's 2-core machine (bench/step.c, medium size,
 * float, 2 threads, two runs each): spinning 20 µs gave 28.2-28.6 ms/step,
 * 200 µs 25.7-26.0, 2 ms 26.0 (the gaps between a step's products, its
 * elementwise work, are tens of µs; a worker asleep takes far longer than
 * that to wake).  A split of two 26 µs halves took 27.8 µs per batch. */
#ifndef TG_SPIN_NS
#define TG_SPIN_NS 200000
#endif
/* Past this much spinning, a spinner also yields its CPU every 64 rounds: on
 * a machine busier than its cores, the thread it waits for may need it. */
#ifndef TG_YIELD_AFTER_NS
#define TG_YIELD_AFTER_NS 20000
#endif

struct tg_pool {
    int cap;                   /* workers wanted: threads - 1 */
    int started;               /* workers running */
    bool start_failed;         /* pthread_create said no: do not try again */
    pthread_t *tid;            /* [cap] */
    pthread_mutex_t mu;
    pthread_cond_t wake;       /* workers sleep here */
    pthread_cond_t done;       /* the caller sleeps here */
    _Atomic uint64_t state;    /* generation << 32 | jobs << 16 | next job */
    atomic_int remaining;      /* jobs of the batch not finished */
    atomic_int sleepers;       /* workers in (or entering) pthread_cond_wait */
    atomic_int caller_waiting; /* the caller in (or entering) pthread_cond_wait */
    atomic_bool stop;
    atomic_bool busy;          /* a batch is running: a nested call runs inline */
    uint32_t start_gen;        /* the generation workers start from */
    tg_job_fn fn;              /* the batch's job; read only by a job's claimer */
    void *arg;
};

#define GEN(s) ((uint32_t)((s) >> 32))
#define NJOBS(s) ((unsigned)(((s) >> 16) & 0xffff))
#define NEXT(s) ((unsigned)((s) & 0xffff))

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One round of a spin that started at t0; false once it has lasted TG_SPIN_NS. */
static inline bool keep_spinning(unsigned i, uint64_t t0)
{
    cpu_relax();
    if (i & 63) return true;
    uint64_t dt = now_ns() - t0;
    if (dt > TG_YIELD_AFTER_NS) sched_yield();
    return dt <= TG_SPIN_NS;
}

/* Claims and runs jobs of generation gen until none is left unclaimed. */
static void run_jobs(tg_pool *pl, uint32_t gen)
{
    uint64_t s = atomic_load_explicit(&pl->state, memory_order_acquire);
    while (GEN(s) == gen && NEXT(s) < NJOBS(s)) {
        if (!atomic_compare_exchange_weak_explicit(&pl->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* s holds the newer state */
        /* job NEXT(s) is ours, so the batch is not over and fn, arg stay put */
        pl->fn(pl->arg, (int)NEXT(s));
        if (atomic_fetch_sub(&pl->remaining, 1) == 1 && atomic_load(&pl->caller_waiting)) {
            pthread_mutex_lock(&pl->mu);
            pthread_cond_signal(&pl->done);
            pthread_mutex_unlock(&pl->mu);
        }
        s = atomic_load_explicit(&pl->state, memory_order_acquire);
    }
}

static void *worker(void *p)
{
    tg_pool *pl = p;
    uint32_t seen = pl->start_gen;
    for (;;) {
        uint64_t s = atomic_load_explicit(&pl->state, memory_order_acquire);
        if (GEN(s) == seen && !atomic_load(&pl->stop)) {
            uint64_t t0 = now_ns();
            for (unsigned i = 1;; i++) {
                s = atomic_load_explicit(&pl->state, memory_order_acquire);
                if (GEN(s) != seen || atomic_load_explicit(&pl->stop, memory_order_relaxed)) break;
                if (!keep_spinning(i, t0)) {
                    pthread_mutex_lock(&pl->mu);
                    atomic_fetch_add(&pl->sleepers, 1);
                    while (GEN(s = atomic_load(&pl->state)) == seen && !atomic_load(&pl->stop))
                        pthread_cond_wait(&pl->wake, &pl->mu);
                    atomic_fetch_sub(&pl->sleepers, 1);
                    pthread_mutex_unlock(&pl->mu);
                    break;
                }
            }
        }
        if (atomic_load(&pl->stop)) return NULL;
        seen = GEN(s);
        run_jobs(pl, seen);
    }
}

/* Starts the workers, with every signal blocked (signals stay with the
 * program's own threads).  A failure leaves fewer workers, never an error. */
static void start_workers(tg_pool *pl)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pl->start_gen = GEN(atomic_load(&pl->state));
    while (pl->started < pl->cap) {
        if (pthread_create(&pl->tid[pl->started], NULL, worker, pl) != 0) {
            pl->start_failed = true;
            break;
        }
        pl->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void tg_parallel(tg_ctx *ctx, int n, tg_job_fn fn, void *arg)
{
    tg_pool *pl = ctx->pool;
    if (pl && pl->started < pl->cap && !pl->start_failed && n > 1) start_workers(pl);
    if (!pl || !pl->started || n < 2 || n > 0xffff || atomic_exchange(&pl->busy, true)) {
        for (int i = 0; i < n; i++) fn(arg, i);
        return;
    }
    pl->fn = fn;
    pl->arg = arg;
    atomic_store(&pl->remaining, n);
    uint32_t gen = GEN(atomic_load(&pl->state)) + 1;
    atomic_store(&pl->state, (uint64_t)gen << 32 | (uint64_t)n << 16);
    if (atomic_load(&pl->sleepers)) {
        pthread_mutex_lock(&pl->mu);
        pthread_cond_broadcast(&pl->wake);
        pthread_mutex_unlock(&pl->mu);
    }
    run_jobs(pl, gen);
    if (atomic_load(&pl->remaining)) {
        uint64_t t0 = now_ns();
        for (unsigned i = 1; atomic_load_explicit(&pl->remaining, memory_order_acquire); i++) {
            if (!keep_spinning(i, t0)) {
                pthread_mutex_lock(&pl->mu);
                atomic_store(&pl->caller_waiting, 1);
                while (atomic_load(&pl->remaining)) pthread_cond_wait(&pl->done, &pl->mu);
                atomic_store(&pl->caller_waiting, 0);
                pthread_mutex_unlock(&pl->mu);
                break;
            }
        }
    }
    atomic_store(&pl->busy, false);
}

static void pool_free(tg_ctx *ctx, tg_pool *pl)
{
    if (!pl) return;
    pthread_mutex_lock(&pl->mu);
    atomic_store(&pl->stop, true);
    pthread_cond_broadcast(&pl->wake);
    pthread_mutex_unlock(&pl->mu);
    for (int i = 0; i < pl->started; i++) pthread_join(pl->tid[i], NULL);
    pthread_cond_destroy(&pl->done);
    pthread_cond_destroy(&pl->wake);
    pthread_mutex_destroy(&pl->mu);
    tg_free(ctx, pl->tid, (size_t)pl->cap * sizeof *pl->tid);
    tg_free(ctx, pl, sizeof *pl);
}

void tg_threads_free(tg_ctx *ctx)
{
    pool_free(ctx, ctx->pool);
    ctx->pool = NULL;
}

/* BLAS's own threads and ours must never run at once on the same cores. */
static void blas_single_threaded(void)
{
#ifdef OPENBLAS_VERSION
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
#endif
}

bool tg_blas_is_single_threaded(void)
{
#ifdef OPENBLAS_VERSION
    return openblas_get_num_threads() == 1;
#else
    return true;
#endif
}

tg_status tg_ctx_set_threads(tg_ctx *ctx, int n)
{
    if (!ctx) return TG_ERR_ARG;
    if (n < 1 || n > TG_MAX_THREADS)
        return tg_error(ctx, TG_ERR_ARG, "tg_ctx_set_threads: %d threads: must be 1 to %d", n,
                        TG_MAX_THREADS);
    if (n == ctx->threads && (n == 1 || ctx->pool)) {
        if (n >= 2) blas_single_threaded(); /* in case someone changed it since */
        return TG_OK;
    }
    tg_pool *pl = NULL;
    if (n >= 2) {
        if (!(pl = tg_alloc(ctx, sizeof *pl))) return TG_ERR_NOMEM;
        memset(pl, 0, sizeof *pl);
        pl->cap = n - 1;
        if (!(pl->tid = tg_alloc(ctx, (size_t)pl->cap * sizeof *pl->tid))) {
            tg_free(ctx, pl, sizeof *pl);
            return TG_ERR_NOMEM;
        }
        int e = pthread_mutex_init(&pl->mu, NULL), w = -1, d = -1;
        if (!e && !(w = pthread_cond_init(&pl->wake, NULL))) d = pthread_cond_init(&pl->done, NULL);
        if (e || w || d) {
            if (!w) pthread_cond_destroy(&pl->wake);
            if (!e) pthread_mutex_destroy(&pl->mu);
            tg_free(ctx, pl->tid, (size_t)pl->cap * sizeof *pl->tid);
            tg_free(ctx, pl, sizeof *pl);
            return tg_error(ctx, TG_ERR_NOMEM, "tg_ctx_set_threads: cannot make a thread pool");
        }
        atomic_init(&pl->state, 0);
        atomic_init(&pl->remaining, 0);
        atomic_init(&pl->sleepers, 0);
        atomic_init(&pl->caller_waiting, 0);
        atomic_init(&pl->stop, false);
        atomic_init(&pl->busy, false);
    }
    if (n >= 2) blas_single_threaded();
    tg_threads_free(ctx);
    ctx->pool = pl;
    ctx->threads = n;
    return TG_OK;
}

int tg_ctx_threads(const tg_ctx *ctx) { return ctx && ctx->threads > 1 ? ctx->threads : 1; }
