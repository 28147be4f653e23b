/* mpi_main.c — `mpirun -np N tapegrad-mpi train ...`: data-parallel
 * training on Open MPI, with the flags of `tapegrad train` (cli_train).
 * Every rank runs the same command on its share of each minibatch
 * (tg_trainer_set_shard); after backward the gradients and the loss are
 * summed by an in-place MPI_Allreduce, so every rank takes the same
 * optimizer step.  Rank 0 alone prints and writes files; the other ranks'
 * output is kept and shown only if they fail on their own.  A checksum of
 * the parameters is compared across the ranks at the first step and every
 * --check-every steps; a watchdog ends a rank that waits longer than
 * --timeout seconds in a collective (a rank hangs), and Open MPI ends the
 * job when a rank dies.  docs/distributed.md tells the whole story. */
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"

#ifdef TG_REAL_DOUBLE
#define MPI_REAL_T MPI_DOUBLE
#else
#define MPI_REAL_T MPI_FLOAT
#endif

#define DEFAULT_TIMEOUT 300
#define DEFAULT_CHECK_EVERY 100

typedef struct mpi_run {
    cli_parallel par;
    tg_trainer *tr;
    tg_params *ps;
    int check_every, timeout;
    int started;          /* every rank entered the run */
    int uniform_failure;  /* every rank saw the same failure (no abort needed) */
    FILE *err;            /* this rank's real stderr (ranks > 0 write theirs to a file) */
    FILE *kept;           /* ranks > 0: what train printed on stderr */
    /* the watchdog: a deadline (monotonic ns, 0: none) and what is awaited */
    long long deadline;
    char what[96];
    pthread_t dog;
    int dog_on;
} mpi_run;

static mpi_run R;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(R.err, "tapegrad-mpi: ");
    vfprintf(R.err, fmt, ap);
    fputc('\n', R.err);
    fflush(R.err);
    va_end(ap);
}

/* ---- the watchdog: no collective may wait longer than --timeout ------------- */

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec nap = {0, 100000000};
        nanosleep(&nap, NULL);
        long long d = __atomic_load_n(&R.deadline, __ATOMIC_ACQUIRE);
        if (d && now_ns() > d) {
            /* The other ranks' progress is unknown; ending this process makes
             * mpirun end the job (a rank that exits without MPI_Finalize). */
            say("rank %d of %d: no answer from the other ranks for %d s in %s: a rank hangs or died; "
                "stopping (the last checkpoint saved stays valid)",
                R.par.rank, R.par.size, R.timeout, R.what);
            _exit(CLI_FAILURE);
        }
    }
    return NULL;
}

static void watch(const char *what, unsigned long long step)
{
    snprintf(R.what, sizeof R.what, "%s%llu", what, step);
    __atomic_store_n(&R.deadline, now_ns() + (long long)R.timeout * 1000000000LL, __ATOMIC_RELEASE);
}
static void unwatch(void) { __atomic_store_n(&R.deadline, 0, __ATOMIC_RELEASE); }

/* ---- the reduction the trainer calls after backward ---------------------------- */

static int allreduce_reals(tg_real *v, size_t n)
{
    for (size_t at = 0; at < n;) { /* MPI counts are ints */
        size_t k = n - at < (size_t)1 << 30 ? n - at : (size_t)1 << 30;
        if (MPI_Allreduce(MPI_IN_PLACE, v + at, (int)k, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
        at += k;
    }
    return 0;
}

/* FNV-1a over the parameters' bytes: equal on every rank while they agree. */
static unsigned long long checksum(const tg_real *v, size_t n)
{
    unsigned long long h = 0xcbf29ce484222325ULL;
    const unsigned char *b = (const unsigned char *)v;
    for (size_t i = 0; i < n * sizeof *v; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static int reduce(tg_real *g, size_t n, double *stats, int n_stats, void *user)
{
    mpi_run *M = user;
    if (!stats || n_stats == 0) { /* tg_trainer_gather: the carried states */
        watch("the allreduce of the carried states for the checkpoint of step ",
              (unsigned long long)tg_trainer_progress(M->tr)->step);
        int bad = allreduce_reals(g, n);
        unwatch();
        return bad;
    }
    unsigned long long step = tg_trainer_progress(M->tr)->step + 1;
    /* the loss, its count and the stop request travel beside the gradients */
    double s[8] = {0};
    int ns = n_stats < 7 ? n_stats : 7;
    memcpy(s, stats, (size_t)ns * sizeof *s);
    s[ns] = M->par.stop ? 1 : 0;
    MPI_Request req;
    watch("the gradient allreduce of step ", step);
    int bad = MPI_Iallreduce(MPI_IN_PLACE, s, ns + 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &req) != MPI_SUCCESS;
    bad = bad || allreduce_reals(g, n) || MPI_Wait(&req, MPI_STATUS_IGNORE) != MPI_SUCCESS;
    unwatch();
    if (bad) return -1;
    memcpy(stats, s, (size_t)ns * sizeof *s);
    if (s[ns] > 0 && !M->par.stopped) {
        M->par.stopped = 1;
        tg_trainer_stop(M->tr);
    }
    /* the parameters going into this step must be equal on every rank */
    if (M->check_every > 0 && (step - 1) % (unsigned long long)M->check_every == 0) {
        unsigned long long h = checksum(tg_params_values(M->ps), tg_params_total(M->ps)), hh[2] = {h, ~h};
        watch("the parameter checksum of step ", step);
        bad = MPI_Allreduce(MPI_IN_PLACE, hh, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS;
        unwatch();
        if (bad) return -1;
        if (hh[0] != ~hh[1]) {
            if (M->par.rank == 0)
                say("the ranks' parameters differ before step %llu (checksums from %016llx to %016llx; this "
                    "rank's %016llx): they no longer train one model (different --seed, --params or data on "
                    "some rank?); stopping", step, ~hh[1], hh[0], h);
            M->uniform_failure = 1;
            return -1;
        }
    }
    return 0;
}

/* ---- what cli_train calls ------------------------------------------------------ */

static int attach(cli_parallel *par, tg_trainer *tr, tg_params *ps, int text)
{
    mpi_run *M = (mpi_run *)par;
    M->tr = tr;
    M->ps = ps;
    int b = tg_trainer_opts(tr)->batch;
    if (par->size > 1 && ((b > 0 && b < par->size) || (b == 0 && text))) {
        return cli_error(CLI_USAGE, "tapegrad-mpi train: --batch %d is smaller than the %d ranks, so some would have "
                         "nothing to do; give every rank at least one column (--batch %d or more)",
                         b ? b : 1, par->size, par->size);
    }
    if (tg_trainer_set_shard(tr, par->rank, par->size)) {
        return cli_error(CLI_FAILURE, "tapegrad-mpi train: rank %d of %d: the trainer refused its shard", par->rank,
                         par->size);
    }
    tg_trainer_set_reduce(tr, reduce, M);
    return CLI_OK;
}

static int agree(cli_parallel *par, int rc)
{
    mpi_run *M = (mpi_run *)par;
    int all = rc;
    par->agreed = 1;
    snprintf(R.what, sizeof R.what, "the start of the run");
    __atomic_store_n(&R.deadline, now_ns() + (long long)R.timeout * 1000000000LL, __ATOMIC_RELEASE);
    if (MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) all = CLI_FAILURE;
    /* did rank 0 fail (and say why)?  Else a rank that failed alone shows its output. */
    int r0 = rc;
    MPI_Bcast(&r0, 1, MPI_INT, 0, MPI_COMM_WORLD);
    unwatch();
    if (rc && !r0 && M->kept) {
        fflush(stderr);
        rewind(M->kept);
        char line[1024];
        while (fgets(line, sizeof line, M->kept)) fprintf(M->err, "[rank %d] %s", par->rank, line);
        fflush(M->err);
    }
    M->started = all == CLI_OK;
    return all;
}

static const char *const TOOL_HELP =
    "usage: mpirun -np N tapegrad-mpi train MODEL --data DATA --epochs N [options]\n"
    "       tapegrad-mpi train --help\n\n"
    "Data-parallel `tapegrad train` on Open MPI: each of the N ranks computes its\n"
    "share of every minibatch's columns (text: its own streams), the gradients\n"
    "are summed by MPI_Allreduce and every rank takes the same step.  Rank 0\n"
    "prints and writes the log, the plot and the checkpoint, which resumes with\n"
    "any N or in plain tapegrad.  As root, Open MPI also needs\n"
    "`mpirun --allow-run-as-root`; more ranks than cores need --oversubscribe.\n"
    "See docs/distributed.md.\n";

int main(int argc, char **argv)
{
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "tapegrad-mpi: MPI_Init failed\n");
        return CLI_FAILURE;
    }
    memset(&R, 0, sizeof R);
    R.err = stderr;
    MPI_Comm_rank(MPI_COMM_WORLD, &R.par.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &R.par.size);
    R.check_every = DEFAULT_CHECK_EVERY;
    R.timeout = DEFAULT_TIMEOUT;
    const cli_opt own[] = {
        {"check-every", CLI_INT, &R.check_every, "K",
         "MPI: compare the parameters' checksum across ranks every K steps (100; 0: never)", 0, 2000000000},
        {"timeout", CLI_INT, &R.timeout, "S",
         "MPI: stop when the other ranks are silent for S seconds (default 300)", 1, 1000000},
    };
    R.par.opts = own;
    R.par.n_opts = 2;
    R.par.attach = attach;
    R.par.agree = agree;

    int rc;
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd || !strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (R.par.rank == 0) fputs(TOOL_HELP, cmd ? stdout : stderr);
        MPI_Finalize();
        return cmd ? CLI_OK : CLI_USAGE;
    }
    if (strcmp(cmd, "train")) {
        if (R.par.rank == 0)
            fprintf(stderr, "tapegrad-mpi: '%s': tapegrad-mpi runs train only (the other commands: tapegrad %s)\n",
                    cmd, cmd);
        MPI_Finalize();
        return CLI_USAGE;
    }
    /* ranks > 0: nothing on stdout; stderr kept, shown if they fail alone */
    if (R.par.rank > 0) {
        int fd = dup(2);
        R.err = fd >= 0 ? fdopen(fd, "w") : NULL;
        R.kept = tmpfile();
        if (!R.err || !R.kept || !freopen("/dev/null", "w", stdout) || dup2(fileno(R.kept), 2) < 0) {
            fprintf(stderr, "tapegrad-mpi: rank %d: cannot set up its output\n", R.par.rank);
            MPI_Abort(MPI_COMM_WORLD, CLI_FAILURE);
        }
    }
    R.dog_on = pthread_create(&R.dog, NULL, watchdog, NULL) == 0;
    if (!R.dog_on) say("rank %d: no watchdog thread: a hanging rank will not be noticed", R.par.rank);

    rc = cli_train(&cli_cmd_train, argc - 1, argv + 1, &R.par);
    if (!R.par.agreed) agree(&R.par, rc); /* it returned before the run: tell the others */
    fflush(stdout);
    fflush(stderr);
    if (rc && rc != 130 && R.started && !R.uniform_failure) {
        /* failed during the run on this rank: the others may wait in a collective */
        if (R.kept) {
            rewind(R.kept);
            char line[1024];
            while (fgets(line, sizeof line, R.kept)) fprintf(R.err, "[rank %d] %s", R.par.rank, line);
        }
        say("rank %d failed during the run (exit status %d); stopping every rank", R.par.rank, rc);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    snprintf(R.what, sizeof R.what, "MPI_Finalize");
    __atomic_store_n(&R.deadline, now_ns() + (long long)R.timeout * 1000000000LL, __ATOMIC_RELEASE);
    MPI_Finalize();
    if (R.dog_on) {
        pthread_cancel(R.dog);
        pthread_join(R.dog, NULL);
    }
    if (R.kept) fclose(R.kept);
    if (R.err != stderr) fclose(R.err);
    return rc;
}
