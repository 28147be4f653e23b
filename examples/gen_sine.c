/* gen_sine — data for examples/README.md's sine example: N sequences of T
 * steps of x(t) = 0.8 sin(2 pi t / P + phase), each with a random phase, as
 * CSV for `tapegrad train` (columns x, y with y(t) = x(t + 1): next-value
 * prediction), or with `yaml` last as the YAML data format that `tapegrad
 * run` reads.  Usage: gen_sine [N [T [P [SEED [yaml]]]]]  (default 16 40 20 1) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 16, T = argc > 2 ? atoi(argv[2]) : 40;
    double P = argc > 3 ? atof(argv[3]) : 20;
    unsigned long long s = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    int yaml = argc > 5 && !strcmp(argv[5], "yaml");
    if (argc > 6 || (argc > 5 && !yaml) || n < 1 || T < 1 || !(P > 0)) {
        fprintf(stderr, "usage: gen_sine [N [T [PERIOD [SEED [yaml]]]]]\n");
        return 2;
    }
    const double pi = 3.14159265358979323846;
    printf("# %d sine waves of %d steps, period %g: predict the next value\n%s", n, T, P, yaml ? "" : "x,y\n");
    for (int q = 0; q < n; q++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double phase = 2 * pi * (double)(s >> 11) / 9007199254740992.0;
        if (yaml) {
            for (int k = 0; k < 2; k++) {
                printf("%s%s: [", k ? "  " : "- ", k ? "y" : "x");
                for (int t = 0; t < T; t++)
                    printf("%s%.6f", t ? ", " : "", 0.8 * sin(2 * pi * (t + k) / P + phase));
                printf("]\n");
            }
            continue;
        }
        for (int t = 0; t < T; t++)
            printf("%.6f,%.6f\n", 0.8 * sin(2 * pi * t / P + phase), 0.8 * sin(2 * pi * (t + 1) / P + phase));
        printf("\n");
    }
    return 0;
}
