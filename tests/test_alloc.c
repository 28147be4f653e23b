/* test_alloc.c — an allocator that fails the Nth allocation, swept over every
 * N along making a context, adding parameters, recording a tape, running
 * backward and recording again.  Each failure must come back as
 * TG_ERR_NOMEM (or NULL with that status), leak nothing (ASan's leak check
 * runs in `make check`), and leave the parameters as they were. */
#include <criterion/criterion.h>
#include "tapegrad.h"
#include "failing_alloc.h"
#include <stdlib.h>
#include <string.h>

/* one run of the whole path; returns 1 if it got to the end */
static int run_path(failing *f)
{
    tg_allocator a = {f_alloc, f_realloc, f_free, f};
    tg_ctx *ctx = tg_ctx_new(&a);
    if (!ctx) return 0;
    int done = 0;
    tg_params *ps = tg_params_new(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *W = NULL, *U = NULL;
    if (!ps || !tape) goto out;
    W = tg_params_add(ps, "W", 16, 16);
    U = tg_params_add(ps, "U", 16, 4);
    if (!W || !U) {
        cr_assert_eq(tg_status_last(ctx), TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
        goto out;
    }
    for (int i = 0; i < 256; i++) tg_data(W)[i] = (tg_real)(0.01 * (i % 7));
    tg_real snapshot[256];
    memcpy(snapshot, tg_data(W), sizeof snapshot);
    for (int rep = 0; rep < 2; rep++) {
        tg_tape_reset(tape);
        tg_real x[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        tg_tensor *h = tg_input(tape, 16, 3, NULL, 0);
        for (int t = 0; t < 40 && h; t++)
            h = tg_tanh(tape, tg_add(tape, tg_matmul(tape, W, h),
                                     tg_matmul(tape, U, tg_input(tape, 4, 3, x, 0))));
        tg_tensor *l = tg_sum(tape, h);
        if (!l) {
            cr_assert_eq(tg_status_last(ctx), TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
            goto check;
        }
        tg_status s = tg_backward(tape, l);
        if (s != TG_OK) {
            cr_assert_eq(s, TG_ERR_NOMEM, "%s", tg_errmsg(ctx));
            goto check;
        }
    }
    done = 1;
check:
    cr_assert_eq(memcmp(snapshot, tg_data(W), sizeof snapshot), 0, "a failure changed a parameter");
out:
    tg_tape_free(tape);
    tg_params_free(ps);
    tg_ctx_free(ctx);
    return done;
}

Test(alloc, every_failing_allocation_is_reported_and_leaks_nothing, .timeout = 120)
{
    long n;
    for (n = 0; n < 100000; n++) {
        failing f = {.countdown = n};
        int done = run_path(&f);
        cr_assert_eq(f.live, 0, "allocation %ld failing leaked %ld blocks", n, f.live);
        if (done) break;
    }
    cr_assert(n > 5 && n < 100000, "the path made only %ld allocations", n);
}
