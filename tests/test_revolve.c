/* test_revolve.c — the binomial schedule (models/revolve.c) as pure
 * functions: its advances equal the closed form r n - beta(s + 1, r - 1) for
 * every n <= 300 and s <= 12, and a brute-force dynamic programme's optimum
 * for n <= 60 and s <= 6; it never holds more snapshots than it is given,
 * advances from and stores at the positions it claims, and reverses every
 * unit exactly once, last to first.  Also the plan chooser. */
#include <criterion/criterion.h>
#include <stdint.h>
#include "tg_revolve.h"

/* Runs the schedule for n units and s snapshots the way the driver does,
 * tracking the state's position and what each slot holds, and returns the
 * unit advances. */
static long long run(int n, int s)
{
    tgr_frame stack[16];
    int slot_pos[16];
    cr_assert_leq(s, 16);
    for (int i = 0; i < 16; i++) slot_pos[i] = -1;
    slot_pos[0] = 0;
    tgr_sched sc;
    tgr_init(&sc, n, s, stack);
    int cur = -1, next_reverse = n - 1;
    long long advances = 0;
    for (int guard = 0;; guard++) {
        cr_assert_lt(guard, 10 * n * n + 10, "n=%d s=%d: the schedule does not end", n, s);
        tgr_action a = tgr_next(&sc);
        if (a.kind == TGR_DONE) break;
        switch (a.kind) {
        case TGR_RESTORE:
            cr_assert(a.slot >= 0 && a.slot < s, "n=%d s=%d: slot %d of %d", n, s, a.slot, s);
            cr_assert_eq(slot_pos[a.slot], a.to, "n=%d s=%d: slot %d holds %d, not %d", n, s, a.slot,
                         slot_pos[a.slot], a.to);
            cur = a.to;
            break;
        case TGR_ADVANCE:
            cr_assert_eq(cur, a.from, "n=%d s=%d: advance from %d at %d", n, s, a.from, cur);
            cr_assert(a.to > a.from && a.to < n, "n=%d s=%d: advance %d..%d", n, s, a.from, a.to);
            advances += a.to - a.from;
            cur = a.to;
            break;
        case TGR_STORE:
            cr_assert(a.slot >= 1 && a.slot < s, "n=%d s=%d: store in slot %d of %d", n, s, a.slot, s);
            cr_assert_eq(cur, a.to);
            /* a slot is overwritten only once nothing needs it: every
             * position it held is behind the reversal */
            cr_assert(slot_pos[a.slot] < 0 || slot_pos[a.slot] > next_reverse, "n=%d s=%d: slot %d still needed",
                      n, s, a.slot);
            slot_pos[a.slot] = a.to;
            break;
        case TGR_REVERSE:
            cr_assert_eq(a.from, next_reverse, "n=%d s=%d: reversed unit %d, expected %d", n, s, a.from,
                         next_reverse);
            cr_assert_eq(cur, a.from, "n=%d s=%d: unit %d reversed from position %d", n, s, a.from, cur);
            next_reverse--;
            break;
        default:
            cr_assert_fail("unknown action %d", a.kind);
        }
    }
    cr_assert_eq(next_reverse, -1, "n=%d s=%d: units 0..%d never reversed", n, s, next_reverse);
    return advances;
}

Test(revolve, beta_is_the_binomial)
{
    cr_expect_eq(tgr_beta(1, 1, 1000), 2);
    cr_expect_eq(tgr_beta(2, 3, 1000), 10);
    cr_expect_eq(tgr_beta(3, 2, 1000), 10);
    cr_expect_eq(tgr_beta(5, -1, 1000), 0);
    cr_expect_eq(tgr_beta(12, 12, INT64_MAX / 4), 2704156);
    cr_expect_eq(tgr_beta(30, 30, 1000), 1001, "saturates at cap + 1");
    cr_expect_eq(tgr_repetitions(1, 3), 0);
    cr_expect_eq(tgr_repetitions(4, 3), 1);
    cr_expect_eq(tgr_repetitions(5, 3), 2);
    cr_expect_eq(tgr_repetitions(1000000, 1), 999999);
}

Test(revolve, advances_equal_the_closed_form)
{
    for (int s = 1; s <= 12; s++)
        for (int n = 1; n <= 300; n++) {
            long long want = 0;
            if (n > 1) {
                int r = 0;
                while (tgr_beta(s, r, INT64_MAX / 4) < n) r++;
                want = (long long)r * n - tgr_beta(s + 1, r - 1, INT64_MAX / 4);
            }
            cr_assert_eq(tgr_advances(n, s), want, "n=%d s=%d", n, s);
            long long got = run(n, s);
            cr_assert_eq(got, want, "n=%d s=%d: the schedule advances %lld units, the formula says %lld", n, s,
                         got, want);
        }
    /* the textbook corners: one snapshot advances 1 + 2 + ... + (n - 1) */
    cr_expect_eq(tgr_advances(10, 1), 45);
    cr_expect_eq(tgr_advances(10, 9), 9);
    cr_expect_eq(tgr_advances(10, 20), 9);
}

/* F(n, s): the fewest advances over every choice of split, by brute force */
Test(revolve, advances_equal_the_dynamic_programme)
{
    enum { N = 60, S = 6 };
    static long long F[N + 1][S + 1];
    for (int s = 1; s <= S; s++) F[0][s] = F[1][s] = 0;
    for (int n = 2; n <= N; n++) F[n][1] = (long long)n * (n - 1) / 2;
    for (int s = 2; s <= S; s++)
        for (int n = 2; n <= N; n++) {
            long long best = F[n][s - 1]; /* a snapshot left unused */
            for (int j = 1; j < n; j++) {
                long long c = j + F[n - j][s - 1] + F[j][s];
                if (c < best) best = c;
            }
            F[n][s] = best;
        }
    for (int s = 1; s <= S; s++)
        for (int n = 1; n <= N; n++)
            cr_assert_eq(run(n, s), F[n][s], "n=%d s=%d: schedule %lld, optimum %lld", n, s, run(n, s), F[n][s]);
}

Test(revolve, no_units_no_actions)
{
    tgr_frame st[2];
    tgr_sched sc;
    tgr_init(&sc, 0, 2, st);
    cr_expect_eq(tgr_next(&sc).kind, TGR_DONE);
    cr_expect_eq(run(1, 1), 0);
}

Test(revolve, chooser_fits_the_budget_and_prefers_one_recording)
{
    tgr_costs c = {.steps = 1000, .tape1 = 5000, .tape_step = 1000, .entries1 = 10, .entries_step = 5,
                   .fixed = 300, .per_snapshot = 100};
    tgr_choice ch;
    /* everything fits: one segment, nothing recomputed */
    cr_assert_eq(tgr_choose(&c, 10u << 20, &ch), 0);
    cr_expect_eq(ch.segments, 1);
    cr_expect_eq(ch.segment, 1000);
    cr_expect_eq(ch.forward_steps, 1000);
    cr_expect_eq(ch.other_bytes, 0);
    /* tighter budgets: within the budget, the forward steps the formula says */
    size_t budgets[] = {7000, 9000, 20000, 50000, 200000, 1000000};
    long long last = -1;
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        cr_assert_eq(tgr_choose(&c, budgets[i], &ch), 0, "budget %zu", budgets[i]);
        cr_expect_leq(ch.tape_bytes + ch.other_bytes, budgets[i]);
        cr_expect_eq(ch.tape_bytes, tgr_tape_bytes(&c, ch.segment));
        cr_expect_eq(ch.segments, (1000 + ch.segment - 1) / ch.segment);
        cr_expect_eq(ch.forward_steps, 1000 + (long long)ch.segment * tgr_advances(ch.segments, ch.snapshots));
        if (last >= 0) cr_expect_leq(ch.forward_steps, last, "more memory, more recomputation");
        last = ch.forward_steps;
    }
    /* too small for one step and the state buffers */
    cr_expect_eq(tgr_choose(&c, 5000, &ch), -1);
    c.whole_only = 1;
    cr_expect_eq(tgr_choose(&c, 1000000, &ch), -1);
    cr_expect_eq(tgr_choose(&c, 10u << 20, &ch), 0);
}
