/* revolve.c — the binomial checkpointing schedule of Griewank and Walther
 * ("Algorithm 799: revolve", ACM TOMS 26(1), 2000), written from the paper's
 * recursion: to reverse units [p, q) with s snapshots, advance to a split m,
 * keep the state at m, reverse [m, q) with s - 1 snapshots, then [p, m) with
 * s.  The split keeps both halves in the band where the fewest advances per
 * unit are spent, which makes the total r n - beta(s + 1, r - 1), the
 * optimum.  An explicit stack instead of recursion, so a million units cost
 * no C stack. */
#include "tg_revolve.h"

#include <stdint.h>

long long tgr_beta(int s, int r, long long cap)
{
    if (r < 0 || s < 0) return 0;
    /* C(s + r, k) with k = min(s, r): each partial product is itself a
     * binomial, so the division is exact and the value grows monotonically */
    int k = s < r ? s : r, a = s + r;
    unsigned __int128 v = 1;
    for (int i = 1; i <= k; i++) {
        v = v * (unsigned)(a - k + i) / (unsigned)i;
        if (v > (unsigned __int128)cap) return cap + 1;
    }
    return (long long)v;
}

int tgr_repetitions(int n, int s)
{
    /* beta(s, r + 1) = beta(s, r) (s + r + 1) / (r + 1), exactly */
    long long b = 1;
    int r = 0;
    while (b < n) {
        b = (long long)((unsigned __int128)b * (unsigned)(s + r + 1) / (unsigned)(r + 1));
        r++;
    }
    return r;
}

long long tgr_advances(int n, int s)
{
    if (n <= 1) return 0;
    int r = tgr_repetitions(n, s);
    return (long long)r * n - tgr_beta(s + 1, r - 1, INT64_MAX / 4);
}

/* Where to keep the next snapshot when reversing n >= 2 units with s >= 2:
 * j units are advanced now and reversed later with s snapshots and one
 * advance fewer each (so j <= beta(s, r - 1)); the other n - j are reversed
 * with s - 1 (so n - j <= beta(s - 1, r)).  Any j in that range that also
 * keeps each side in its own band (j >= beta(s, r - 2)) is optimal; this
 * takes the smallest, which keeps the fewest units to re-advance. */
static int split(int n, int s)
{
    int r = tgr_repetitions(n, s);
    long long j = tgr_beta(s, r - 2, n);
    long long right = n - tgr_beta(s - 1, r, n);
    if (right > j) j = right;
    if (j < 1) j = 1;
    return (int)j;
}

void tgr_init(tgr_sched *sc, int n, int snaps, tgr_frame *stack)
{
    sc->n = n;
    sc->snaps = snaps;
    sc->stack = stack;
    sc->depth = 0;
    sc->nq = sc->iq = 0;
    if (n > 0) {
        stack[0] = (tgr_frame){.p = 0, .q = n, .s = snaps};
        sc->depth = 1;
    }
}

static void emit(tgr_sched *sc, tgr_kind kind, int slot, int from, int to)
{
    sc->queue[sc->nq++] = (tgr_action){kind, slot, from, to};
}

tgr_action tgr_next(tgr_sched *sc)
{
    for (;;) {
        if (sc->iq < sc->nq) return sc->queue[sc->iq++];
        sc->nq = sc->iq = 0;
        if (sc->depth == 0) return (tgr_action){TGR_DONE, 0, 0, 0};
        tgr_frame *f = &sc->stack[sc->depth - 1];
        const int base = sc->snaps - f->s; /* the slot holding position p */
        switch (f->stage) {
        case 0: {
            int len = f->q - f->p;
            if (len <= 0) {
                sc->depth--;
                break;
            }
            if (f->s == 1 || len == 1) { /* no snapshot to spare: from p to each unit, last first */
                f->k = f->q - 1;
                f->stage = 2;
                break;
            }
            f->m = f->p + split(len, f->s);
            f->stage = 1;
            emit(sc, TGR_RESTORE, base, f->p, f->p);
            emit(sc, TGR_ADVANCE, 0, f->p, f->m);
            emit(sc, TGR_STORE, base + 1, f->m, f->m);
            sc->stack[sc->depth++] = (tgr_frame){.p = f->m, .q = f->q, .s = f->s - 1};
            break;
        }
        case 1: /* [m, q) is reversed and its snapshot free: now [p, m), in this frame */
            f->q = f->m;
            f->stage = 0;
            break;
        default:
            if (f->k < f->p) {
                sc->depth--;
                break;
            }
            emit(sc, TGR_RESTORE, base, f->p, f->p);
            if (f->k > f->p) emit(sc, TGR_ADVANCE, 0, f->p, f->k);
            emit(sc, TGR_REVERSE, 0, f->k, f->k + 1);
            f->k--;
            break;
        }
    }
}

/* ---- choosing a plan --------------------------------------------------------------- */
static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
static size_t sat_mul(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

size_t tgr_tape_bytes(const tgr_costs *c, int L)
{
    size_t arena = sat_add(c->tape1, sat_mul(c->tape_step, (size_t)(L - 1)));
    arena = arena > SIZE_MAX - 63 ? SIZE_MAX : (arena + 63) & ~(size_t)63;
    size_t entries = sat_add(c->entries1, sat_mul(c->entries_step, (size_t)(L - 1)));
    return sat_add(arena, sat_mul(entries, sizeof(void *)));
}

size_t tgr_other_bytes(const tgr_costs *c, int segments, int snapshots)
{
    if (segments <= 1) return 0;
    return sat_add(c->fixed, sat_mul(c->per_snapshot, (size_t)(snapshots - 1)));
}

int tgr_choose(const tgr_costs *c, size_t memory, tgr_choice *out)
{
    const int N = c->steps;
    int found = 0;
    /* for each number of segments n only the shortest L that gives it is worth
     * trying: less tape, as many snapshots or more, as many advances */
    for (int L = 1, prev_n = -1; L <= N; L++) {
        int n = (N + L - 1) / L;
        if (n == prev_n) continue;
        prev_n = n;
        if (c->whole_only && n > 1) continue;
        if (c->max_segment && L > c->max_segment) break;
        size_t tape = tgr_tape_bytes(c, L);
        if (tape > memory) break; /* longer segments need more still */
        int s = 1;
        if (n > 1) {
            size_t other = tgr_other_bytes(c, n, 1);
            if (other > memory - tape) continue;
            size_t spare = memory - tape - other;
            size_t more = c->per_snapshot ? spare / c->per_snapshot : (size_t)n;
            s = more >= (size_t)n ? n : 1 + (int)more;
            if (s > n - 1) s = n - 1 > 1 ? n - 1 : 1; /* n - 1 already advance each unit once */
        }
        long long fwd = (long long)N + (long long)L * tgr_advances(n, s);
        if (!found || fwd < out->forward_steps || (fwd == out->forward_steps && n < out->segments)) {
            *out = (tgr_choice){L, n, s, fwd, tape, tgr_other_bytes(c, n, s)};
            found = 1;
        }
    }
    return found ? 0 : -1;
}
