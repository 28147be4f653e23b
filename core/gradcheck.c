/* gradcheck.c — compares the reverse sweep with finite differences of the same
 * function.  The 5-point stencil's error is O(h^4), which lets h be large
 * enough that rounding stays small even in float32.
 *
 * No fixed step serves every model in double at a 1e-9 check.  Long unrolled
 * losses (char_rnn at T = 50, B = 4: a loss of ~4e4) carry rounding noise of
 * ~1e-11 per evaluation, about an ulp of the loss, so a 5-point difference at
 * h = 1e-3 is off by ~1e-8; larger steps or wider stencils for every scalar
 * meet truncation (the 5-point error reaches 1e-6 at h = 3e-2 on char_rnn) or
 * the kinks of relu-like ops (a 9-point stencil at 5e-3 crossed stacked.yaml's,
 * 2.6e-5).  So the 5-point estimate stays, and only a scalar it cannot vouch
 * for — scaled disagreement above tol / 2 — is refined: the odd part
 * g(s) = (f(x+s) - f(x-s)) / 2 at 12 steps s = H/12 .. H is fitted by least
 * squares with odd Chebyshev polynomials T1 .. T9 on [-H, H], and g'(0) is
 * the estimate.  The large aperture (H = 200 h) divides the noise by H
 * instead of h, the fit averages it over the points, and the residuals give
 * the estimate's standard error, which also grows when the fit cannot follow
 * the function (too wide a step, a kink, a NaN).  Measured on char_rnn
 * (T = 50, B = 4) against the analytic gradient (PyTorch agrees with it to
 * 1e-15): the 5-point estimate at h = 1e-3 errs by up to 1.6e-8; the fit over
 * 8 steps at H = 0.2 by at most 3e-10, with standard errors of 1e-10 to
 * 3e-10 that track its errors; Ridders' extrapolation over shrinking steps
 * (from H = 1e-2 .. 5e-2, ratio 1.4 or 2) only reached ~1e-9, and its error
 * estimate was 10 times too small at times.
 *
 * The refined estimate decides only when its bound is within tol: the t
 * quantile (99%) times the standard error, plus truncation the residuals do
 * not show — how far a sixth term (T11) moves the estimate beyond what noise
 * explains.  On char_rnn (B = 1) W[14190]'s fit at H = 0.2 erred by 7.5e-10
 * with a standard error of 1e-10, and T11 moved it by 8e-10.  Otherwise the grid is
 * doubled (if noise is why: the finest grid's bound would be within tol), or
 * H is halved (three times); if no fit is good enough the 5-point verdict
 * stands and the scalar counts as unresolved.  A disagreement within the
 * bound of tol (neither under tol / 2 nor clearly above tol) also doubles the
 * grid, up to 96 steps. */
#include "tg_internal.h"
#include <math.h>

enum {
    GC_POINTS = 12,     /* steps of the first fit */
    GC_MAX_POINTS = 96, /* the finest grid, for disagreements near tol */
    GC_TERMS = 5,       /* T1, T3, T5, T7, T9; a sixth (T11) estimates the truncation */
    GC_APERTURES = 4,   /* H = 200 h, 100 h, 50 h, 25 h */
};

typedef struct gc_fn {
    tg_tape *tape;
    tg_build_fn build;
    void *user;
} gc_fn;

static tg_status eval(const gc_fn *fn, double *out)
{
    tg_ctx *ctx = fn->tape->ctx;
    tg_tape_reset(fn->tape);
    tg_tensor *y = fn->build(fn->tape, fn->user);
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

/* g(s) = (f(v+s) - f(v-s)) / 2 at the steps the stored values really take
 * (v + s rounds to tg_real; in float that moves s by up to 3e-6 relative). */
static tg_status odd_part(const gc_fn *fn, tg_real *x, double s, double *step, double *g)
{
    tg_real v = *x;
    double fp, fm;
    *x = (tg_real)((double)v + s);
    double sp = (double)*x - (double)v;
    tg_status st = eval(fn, &fp);
    *x = (tg_real)((double)v - s);
    double sm = (double)v - (double)*x;
    if (!st) st = eval(fn, &fm);
    *x = v;
    *step = (sp + sm) / 2;
    *g = (fp - fm) / 2;
    return st;
}

/* Least squares of g(s_k) on the first q of T1(u), T3(u), T5(u), ..., u = s / H,
 * by modified Gram-Schmidt; returns the fitted g'(0) and its standard error
 * from the residuals (infinite or NaN when the data cannot say). */
static double odd_fit(const double *s, const double *g, int n, double H, int q, double *se)
{
    double A[GC_MAX_POINTS][GC_TERMS + 1], Q[GC_MAX_POINTS][GC_TERMS + 1], R[GC_TERMS + 1][GC_TERMS + 1] = {{0}};
    double c[GC_TERMS + 1], qg[GC_TERMS + 1], z[GC_TERMS + 1];
    for (int k = 0; k < n; k++) {
        double u = s[k] / H, t0 = 1, t1 = u;
        for (int deg = 1, j = 0; j < q; deg++) {
            if (deg % 2) A[k][j++] = t1;
            double t2 = 2 * u * t1 - t0;
            t0 = t1;
            t1 = t2;
        }
    }
    for (int j = 0; j < q; j++) {
        for (int k = 0; k < n; k++) Q[k][j] = A[k][j];
        for (int i = 0; i < j; i++) {
            double d = 0;
            for (int k = 0; k < n; k++) d += Q[k][i] * Q[k][j];
            R[i][j] = d;
            for (int k = 0; k < n; k++) Q[k][j] -= d * Q[k][i];
        }
        double norm = 0;
        for (int k = 0; k < n; k++) norm += Q[k][j] * Q[k][j];
        R[j][j] = norm = sqrt(norm);
        for (int k = 0; k < n; k++) Q[k][j] /= norm;
    }
    for (int j = 0; j < q; j++) {
        qg[j] = 0;
        for (int k = 0; k < n; k++) qg[j] += Q[k][j] * g[k];
    }
    for (int j = q - 1; j >= 0; j--) {
        double d = qg[j];
        for (int i = j + 1; i < q; i++) d -= R[j][i] * c[i];
        c[j] = d / R[j][j];
    }
    double ss = 0;
    for (int k = 0; k < n; k++) {
        double r = g[k];
        for (int j = 0; j < q; j++) r -= A[k][j] * c[j];
        ss += r * r;
    }
    /* g'(0) = w . c with w_j = T'_{2j+1}(0) / H = (2j+1)(-1)^j / H; its
     * variance is sigma^2 |R^-T w|^2 */
    double d = 0, zz = 0;
    for (int j = 0; j < q; j++) {
        double w = (2 * j + 1) * (j % 2 ? -1.0 : 1.0) / H;
        d += c[j] * w;
        for (int i = 0; i < j; i++) w -= R[i][j] * z[i];
        z[j] = w / R[j][j];
        zz += z[j] * z[j];
    }
    *se = sqrt(ss / (n - q) * zz);
    return d;
}

/* t quantile (two-sided 99%) for the residual degrees of freedom of each grid:
 * the standard error comes from as few as 7 residuals, so 3 sigma would
 * understate it */
static double t99(int dof)
{
    return dof <= 7 ? 3.50 : dof <= 19 ? 2.86 : dof <= 43 ? 2.70 : 2.63;
}

/* A better estimate of dL/dx for one scalar whose 5-point estimate disagreed
 * with the analytic a; *num and *bound (the 99% bound) are set only when a
 * fit's bound is within tol (scaled), else left alone (unresolved). */
static tg_status refine(const gc_fn *fn, tg_real *x, double a, double h, double tol, double *num, double *bound)
{
    double H = 200 * h;
    for (int ap = 0; ap < GC_APERTURES; ap++, H /= 2) {
        double s[GC_MAX_POINTS], g[GC_MAX_POINTS];
        int n = 0, found = 0;
        for (int grid = GC_POINTS; grid <= GC_MAX_POINTS; grid *= 2) {
            /* the first grid H/12 .. H; each next one adds the midpoints */
            int stride = n ? 2 : 1;
            for (int k = 1; k <= grid; k += stride) {
                tg_status st = odd_part(fn, x, H * k / grid, &s[n], &g[n]);
                if (st) return st;
                n++;
            }
            /* the estimate with T1 .. T9; where adding T11 moves it by more
             * than noise would (t times the standard error of the difference
             * of nested fits), the excess is truncation it still carries */
            double se, se6, d = odd_fit(s, g, n, H, GC_TERMS, &se);
            double t = t99(n - GC_TERMS), moved = fabs(d - odd_fit(s, g, n, H, GC_TERMS + 1, &se6));
            double trunc = fmax(0.0, moved - t * sqrt(fmax(0.0, se6 * se6 - se * se)));
            if (isnan(moved) || isnan(se6)) trunc = NAN;
            double scale = fmax(1.0, fmax(fabs(a), fabs(d)));
            double b = t * se + trunc;
            if (!(b <= tol * scale)) {
                /* too noisy, too wide or not smooth (NaN too): more steps help
                 * only noise, and only if the finest grid could get there */
                if (found || !(trunc <= tol * scale / 2) ||
                    !(t99(GC_MAX_POINTS - GC_TERMS) * se * sqrt((double)n / GC_MAX_POINTS) + trunc <= tol * scale))
                    break;
                continue;
            }
            *num = d;
            *bound = b;
            found = 1;
            double err = fabs(a - d) / scale;
            if (err <= tol / 2 || err - b / scale > tol) break;
        }
        if (found) return TG_OK;
    }
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
    tg_gradcheck_result r = {0, -1, 0, 0, 0, 0};
    gc_fn fn = {tape, build, user};
    int max_unresolved = 0; /* the worst scalar kept its 5-point estimate */

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
        size_t n = tg_numel(t), off = ps->list[p].offset, refined = 0, unresolved = 0;
        double worst = 0, worst_num = 0, worst_bound = -1;
        size_t worst_i = 0;
        int worst_unresolved = 0;
        for (size_t i = 0; i < n; i++) {
            tg_real v = t->val[i];
            double f[4];
            static const double k[4] = {-2, -1, 1, 2};
            for (int j = 0; j < 4 && st == TG_OK; j++) {
                t->val[i] = (tg_real)((double)v + k[j] * h);
                st = eval(&fn, &f[j]);
            }
            t->val[i] = v;
            if (st) break;
            double num = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
            double a = (double)analytic[off + i];
            double scale = fmax(1.0, fmax(fabs(a), fabs(num)));
            double err = fabs(a - num) / scale, bound = -1;
            int unres = 0;
            if (!(err <= tol / 2)) {
                double rnum = 0, rbound = -1;
                if ((st = refine(&fn, &t->val[i], a, h, tol, &rnum, &rbound))) break;
                if (rbound >= 0) {
                    num = rnum;
                    bound = rbound;
                    err = fabs(a - num) / fmax(1.0, fmax(fabs(a), fabs(num)));
                    refined++;
                } else {
                    unresolved++;
                    unres = 1;
                }
            }
            if (!(err <= worst)) { /* also catches NaN */
                worst = isnan(err) ? INFINITY : err;
                worst_i = i;
                worst_num = num;
                worst_bound = bound;
                worst_unresolved = unres;
            }
            r.checked++;
        }
        if (st) break;
        r.refined += refined;
        r.unresolved += unresolved;
        if (report) {
            fprintf(report, "%-12s worst scaled error %.3e at element %zu (analytic %.9g, numeric %.9g)",
                    ps->list[p].name, worst, worst_i, (double)analytic[off + worst_i], worst_num);
            if (worst_bound >= 0) fprintf(report, " +- %.1e (refined)", worst_bound);
            if (refined || unresolved) fprintf(report, "; %zu refined, %zu unresolved", refined, unresolved);
            fputc('\n', report);
        }
        if (worst > r.max_err || r.worst_param < 0) {
            r.max_err = worst;
            r.worst_param = p;
            r.worst_index = worst_i;
            max_unresolved = worst_unresolved;
        }
    }
    tg_tape_reset(tape);
    memcpy(ps->grads, analytic, total * sizeof(tg_real));
    tg_free(ctx, analytic, (total ? total : 1) * sizeof(tg_real));
    if (result) *result = r;
    if (st) return st;
    if (r.max_err > tol)
        return tg_error(ctx, TG_ERR_CHECK, "gradcheck: parameter '%s' element %zu: scaled error %.3e exceeds %.1e%s",
                        ps->list[r.worst_param].name, r.worst_index, r.max_err, tol,
                        max_unresolved ? " (5-point estimate; no wider fit bounded its error within tolerance)" : "");
    return TG_OK;
}
