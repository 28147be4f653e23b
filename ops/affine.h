/* affine.h — what affine.c lends the ops that extend its sum
 * (affine_block in stack_affine.c). */
#ifndef TG_AFFINE_H
#define TG_AFFINE_H

#include "ops_real.h"

/* y = act(y) in place (act: affine's attribute 1, 0 none, 1 tanh, 2
 * sigmoid), split over the context's threads when y is large enough */
void tg_affine_activate(tg_ctx *ctx, int act, tg_real *y, size_t n);

#endif
