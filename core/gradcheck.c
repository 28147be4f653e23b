/* gradcheck.c — compares the reverse sweep with finite differences of the same
 * function.  The 5-point stencil's error is O(h^4), which lets h be large
 * enough that rounding stays small even in float32.
 * Wider or higher-order stencils in double were measured and rejected: a
 * 9-point (order 8) stencil at h = 5e-3 moves a value by 0.02 and crosses the
 * kinks of stacked.yaml (2.6e-5 error); at h = 2e-2 truncation on ln_lstm
 * reaches 6.3e-7.  Yet long unrolled losses (char_rnn, loss ~1e3) carry
 * rounding noise of ~1e-11 per evaluation, which needs h >= ~0.05 for a 1e-9
 * check, so no fixed step serves every model. */
#include "tg_internal.h"
#include <math.h>

static tg_status eval(tg_tape *tape, tg_build_fn build, void *user, double *out)
{
    tg_ctx *ctx = tape->ctx;
    tg_tape_reset(tape);
    tg_tensor *y = build(tape, user);
    if (!y) {
        if (!ctx->status) tg_error(ctx, TG_ERR_ARG, "gradcheck: the build function returned NULL");
        return ctx->status;
    }
    if (tg_numel(y) != 1)
        return tg_error(ctx, TG_ERR_SHAPE, "gradcheck: the function must return a 1x1 tensor, not [%d, %d]",
                        y->rows, y->cols);
    *out = (double)y->val[0];
    return TG_OK;
}

tg_status tg_gradcheck(tg_tape *tape, tg_params *ps, tg_build_fn build, void *user,
                       const tg_gradcheck_opts *opts, tg_gradcheck_result *result)
{
    if (!tape || !ps || !build) {
        if (tape) tg_error(tape->ctx, TG_ERR_ARG, "gradcheck: tape, params and build are required");
        return TG_ERR_ARG;
    }
    tg_ctx *ctx = tape->ctx;
#ifdef TG_REAL_DOUBLE
    double h = 1e-3, tol = 1e-6;
#else
    double h = 1e-2, tol = 5e-3;
#endif
    if (opts && opts->eps > 0) h = opts->eps;
    if (opts && opts->tol > 0) tol = opts->tol;
    FILE *report = opts ? opts->report : NULL;
    tg_gradcheck_result r = {0, -1, 0, 0};

    /* the analytic gradient, kept aside while the values are perturbed */
    tg_params_zero_grad(ps);
    tg_tape_reset(tape);
    tg_tensor *y = build(tape, user);
    if (!y) {
        if (!ctx->status) tg_error(ctx, TG_ERR_ARG, "gradcheck: the build function returned NULL");
        return ctx->status;
    }
    tg_status st = tg_backward(tape, y);
    if (st) return st;
    size_t total = ps->total;
    tg_real *analytic = tg_alloc(ctx, (total ? total : 1) * sizeof(tg_real));
    if (!analytic) return TG_ERR_NOMEM;
    memcpy(analytic, ps->grads, total * sizeof(tg_real));

    for (int p = 0; p < ps->n && st == TG_OK; p++) {
        tg_tensor *t = ps->list[p].t;
        size_t n = tg_numel(t), off = ps->list[p].offset;
        double worst = 0, worst_num = 0;
        size_t worst_i = 0;
        for (size_t i = 0; i < n; i++) {
            tg_real v = t->val[i];
            double f[4];
            static const double k[4] = {-2, -1, 1, 2};
            for (int j = 0; j < 4 && st == TG_OK; j++) {
                t->val[i] = (tg_real)((double)v + k[j] * h);
                st = eval(tape, build, user, &f[j]);
            }
            t->val[i] = v;
            if (st) break;
            double num = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
            double a = (double)analytic[off + i];
            double scale = fmax(1.0, fmax(fabs(a), fabs(num)));
            double err = fabs(a - num) / scale;
            if (!(err <= worst)) { /* also catches NaN */
                worst = isnan(err) ? INFINITY : err;
                worst_i = i;
                worst_num = num;
            }
            r.checked++;
        }
        if (st) break;
        if (report)
            fprintf(report, "%-12s worst scaled error %.3e at element %zu (analytic %.9g, numeric %.9g)\n",
                    ps->list[p].name, worst, worst_i, (double)analytic[off + worst_i], worst_num);
        if (worst > r.max_err || r.worst_param < 0) {
            r.max_err = worst;
            r.worst_param = p;
            r.worst_index = worst_i;
        }
    }
    tg_tape_reset(tape);
    memcpy(ps->grads, analytic, total * sizeof(tg_real));
    tg_free(ctx, analytic, (total ? total : 1) * sizeof(tg_real));
    if (result) *result = r;
    if (st) return st;
    if (r.max_err > tol)
        return tg_error(ctx, TG_ERR_CHECK, "gradcheck: parameter '%s' element %zu: scaled error %.3e exceeds %.1e",
                        ps->list[r.worst_param].name, r.worst_index, r.max_err, tol);
    return TG_OK;
}
