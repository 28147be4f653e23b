/* broadcast.c — the shape rule of the elementwise ops: each dimension of the
 * output is the largest among the inputs, and an input may differ from it
 * only by being 1 (a bias [n] = n x 1 spreads across the batch columns). */
#include "ops_real.h"

/* The core prefixes the op name to err, so `op` is not repeated in it. */
int tg_broadcast_shape(int n, const int (*in)[2], int out[2], const char *op, char *err,
                       size_t err_len)
{
    (void)op;
    if (ops_check_inputs(n, -1, in, err, err_len)) return -1;
    int big[2] = {0, 0}; /* which input is widest in each dimension */
    for (int i = 1; i < n; i++)
        for (int d = 0; d < 2; d++)
            if (in[i][d] > in[big[d]][d]) big[d] = i;
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < 2; d++) {
            int want = in[big[d]][d];
            if (in[i][d] == want || in[i][d] == 1) continue;
            /* i clashes with the widest input in d; name both in argument order */
            int lo = i < big[d] ? i : big[d], hi = i < big[d] ? big[d] : i;
            snprintf(err, err_len, "shapes [%d, %d] and [%d, %d] do not broadcast", in[lo][0],
                     in[lo][1], in[hi][0], in[hi][1]);
            return -1;
        }
    }
    out[0] = in[big[0]][0];
    out[1] = in[big[1]][1];
    return 0;
}

/* The shape rule of every two-input elementwise op (add, sub, mul, div, max,
 * min, mod, the comparisons): exactly two inputs, broadcast as above. */
int ops_binary_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t err_len)
{
    (void)attrs;
    if (ops_check_inputs(n, 2, in, err, err_len)) return -1;
    return tg_broadcast_shape(n, in, out, NULL, err, err_len);
}

/* The shape rule of every one-input elementwise op (tanh, sigmoid, relu, exp,
 * log, sqrt, abs, softplus, and pow after its own attribute check). */
int ops_unary_shape(int n, const int (*in)[2], const double *attrs, int out[2], char *err, size_t err_len)
{
    (void)attrs;
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}
