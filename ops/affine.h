/* affine.h — what affine.c lends the ops that extend its sum
 * (affine_block in stack_affine.c). */
#ifndef TG_AFFINE_H
#define TG_AFFINE_H

#include "ops_real.h"

/* y = act(y) in place (act: affine's attribute 1, 0 none, 1 tanh, 2
 * sigmoid), split over the context's threads when y is large enough */
void tg_affine_activate(tg_ctx *ctx, int act, tg_real *y, size_t n);

/* Backward of affine's sum, shared with affine_block so the two cannot drift
 * apart.  tg_affine_da: da = dy act'(y), in the scratch the sweep lent out
 * (or dy itself without an activation).  tg_affine_backward_sum: sends da on
 * through the products and terms among out's first n_in inputs (deferring
 * parameter products to the sweep's end where core/defer.c takes them). */
const tg_real *tg_affine_da(tg_tensor *out);
void tg_affine_backward_sum(tg_tensor *out, const tg_real *da, int n_in);

#endif
