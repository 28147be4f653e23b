/* gen_adding — data for the adding problem (Hochreiter & Schmidhuber 1997):
 * N sequences of T steps; input x[0] is a random value in [-1, 1], x[1]
 * marks two steps (one in the first half, one in the second); the target,
 * read only at the last step, is 0.5 + (sum of the two marked values) / 4.
 * A model must carry the first marked value across ~T/2 steps.  Writes CSV
 * (columns x[0], x[1], y; y repeats the target on every step).
 * Usage: gen_adding [N [T [SEED]]]  (default 512 50 1) */
#include <stdio.h>
#include <stdlib.h>

static unsigned long long s;
static double uniform(void)
{
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(s >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 512, T = argc > 2 ? atoi(argv[2]) : 50;
    s = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    if (argc > 4 || n < 1 || T < 2) {
        fprintf(stderr, "usage: gen_adding [N [T [SEED]]]\n");
        return 2;
    }
    double *x = malloc((size_t)T * sizeof *x);
    if (!x) return 1;
    printf("# the adding problem: %d sequences of %d steps\nx[0],x[1],y\n", n, T);
    for (int q = 0; q < n; q++) {
        for (int t = 0; t < T; t++) x[t] = 2 * uniform() - 1;
        int a = (int)(uniform() * (T / 2)), b = T / 2 + (int)(uniform() * (T - T / 2));
        double y = 0.5 + (x[a] + x[b]) / 4;
        for (int t = 0; t < T; t++) printf("%.5f,%d,%.6f\n", x[t], t == a || t == b, y);
        printf("\n");
    }
    free(x);
    return 0;
}
