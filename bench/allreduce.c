/* allreduce.c — the time of one in-place MPI_Allreduce (sum) of N floats,
 * the one collective `tapegrad-mpi train` makes per step: the median, minimum
 * and 90th percentile over many repetitions, each repetition timed as the
 * slowest rank saw it (a step waits for the slowest).
 *
 *   mpirun -np 2 build/float/bench/allreduce [REPS] [N ...]
 *
 * Defaults: 200 repetitions (after 10 untimed) of 37072 floats (the
 * character model of the demo: vocab 80, hidden 128) and 10000000 (a
 * 10M-parameter model).  `make bench-allreduce` builds and runs it. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long parse_long(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v >= lo && v <= hi) ? v : -1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    long reps = argc > 1 ? parse_long(argv[1], 1, 1000000) : 200;
    long deflt[] = {37072, 10000000};
    int n_sizes = argc > 2 ? argc - 2 : 2;
    long *sizes = malloc((size_t)n_sizes * sizeof *sizes);
    int bad = reps < 0 || !sizes;
    for (int i = 0; !bad && i < n_sizes; i++) {
        sizes[i] = argc > 2 ? parse_long(argv[i + 2], 1, 1L << 30) : deflt[i];
        bad = sizes[i] < 0;
    }
    if (bad) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -np N allreduce [REPS] [FLOATS ...]\n");
        MPI_Finalize();
        free(sizes);
        return 2;
    }
    double *t = malloc((size_t)reps * sizeof *t), *tmax = malloc((size_t)reps * sizeof *tmax);
    if (rank == 0)
        printf("in-place MPI_Allreduce(MPI_SUM) of floats, %d ranks, %ld repetitions\n"
               "%12s %12s %12s %12s %12s %10s\n",
               size, reps, "floats", "MB", "median ms", "min ms", "p90 ms", "GB/s*");
    for (int s = 0; s < n_sizes; s++) {
        long n = sizes[s];
        float *buf = malloc((size_t)n * sizeof *buf);
        if (!buf || !t || !tmax) {
            fprintf(stderr, "allreduce: out of memory for %ld floats\n", n);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        /* One checked sum first: every rank gives rank + 1 at each index. */
        for (long i = 0; i < n; i++) buf[i] = (float)(rank + 1);
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        float want = (float)size * (float)(size + 1) / 2;
        for (long i = 0; i < n; i++)
            if (buf[i] != want) {
                fprintf(stderr, "allreduce: rank %d: element %ld is %g, not %g\n", rank, i, buf[i], want);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        /* Zeros from here on, so repeated sums stay finite and normal. */
        memset(buf, 0, (size_t)n * sizeof *buf);
        for (long r = -10; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            if (r >= 0) t[r] = MPI_Wtime() - t0;
        }
        MPI_Reduce(t, tmax, (int)reps, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            qsort(tmax, (size_t)reps, sizeof *tmax, cmp_double);
            double med = reps % 2 ? tmax[reps / 2] : (tmax[reps / 2 - 1] + tmax[reps / 2]) / 2;
            double mb = (double)n * sizeof(float) / 1e6;
            /* GB/s*: what a ring moves per rank, 2(N-1)/N of the buffer, over the median. */
            double moved = 2.0 * (size - 1) / size * (double)n * sizeof(float);
            printf("%12ld %12.3f %12.4f %12.4f %12.4f %10.2f\n", n, mb, med * 1e3, tmax[0] * 1e3,
                   tmax[(size_t)(0.9 * (double)(reps - 1))] * 1e3, moved / med / 1e9);
        }
        free(buf);
    }
    if (rank == 0)
        printf("* GB/s: 2(N-1)/N of the buffer (what each rank of a ring sends) over the median\n");
    free(t);
    free(tmax);
    free(sizes);
    MPI_Finalize();
    return 0;
}
