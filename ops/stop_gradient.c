/* stop_gradient.c — passes a value through and cuts the gradient path, e.g.
 * for a target computed from the model itself.  Marked not differentiable,
 * so the core never gives its output a gradient to propagate. */
#include "ops_real.h"

/* y = x;  dx += 0 */
static int stop_gradient_shape(int n, const int (*in)[2], const double *attrs, int out[2],
                               char *err, size_t err_len)
{
    if (ops_check_inputs(n, 1, in, err, err_len)) return -1;
    out[0] = in[0][0];
    out[1] = in[0][1];
    return 0;
}

static void stop_gradient_forward(tg_tensor *out)
{
    memcpy(out->val, out->in[0]->val, tg_numel(out) * sizeof *out->val);
}

/* Nothing flows back; defined so that a core calling it anyway stays safe. */
static void stop_gradient_backward(tg_tensor *out) { (void)out; }

const tg_builtin_op tg_op_stop_gradient = {
    .name = "stop_gradient",
    .arity = 1,
    .differentiable = false,
    .shape = stop_gradient_shape,
    .forward = stop_gradient_forward,
    .backward = stop_gradient_backward,
    .test = {
        .n_cases = 2,
        .cases = {
            {.n_in = 1, .shape = {{3, 4}}},
            {.n_in = 1, .shape = {{4, 1}}},
        },
    },
};
