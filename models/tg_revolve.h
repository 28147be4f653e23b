/* tg_revolve.h — the binomial checkpointing schedule (Griewank & Walther,
 * "Algorithm 799: revolve", ACM TOMS 26(1), 2000) as pure functions over
 * units (segments of time steps): which unit to record when, which states to
 * keep.  models/backprop.c runs it on the tape; tests/test_revolve.c checks it
 * against the closed form and a brute-force optimum. */
#ifndef TG_REVOLVE_H
#define TG_REVOLVE_H

#include <stddef.h>

/* beta(s, r) = C(s + r, s): the most units s snapshots (the start's among
 * them) reverse when no unit is advanced more than r times.  0 for r < 0;
 * values past cap come back as cap + 1, so callers compare without overflow. */
long long tgr_beta(int s, int r, long long cap);
/* The least r with beta(s, r) >= n (n >= 1, s >= 1). */
int tgr_repetitions(int n, int s);
/* The fewest unit advances (recordings without a sweep) that reverse n units
 * with s snapshots: r n - beta(s + 1, r - 1), r = tgr_repetitions(n, s);
 * 0 for n <= 1.  Every unit is recorded once more to be swept. */
long long tgr_advances(int n, int s);

/* What the driver does next.  A position is a unit boundary, 0..n; unit k
 * runs from position k to k + 1.  Snapshot slot 0 holds position 0 from the
 * start and is never written. */
typedef enum tgr_kind {
    TGR_RESTORE, /* continue from the state in `slot` (at position `to`) */
    TGR_ADVANCE, /* record units from..to-1 without sweeping; the state moves to `to` */
    TGR_STORE,   /* keep the current state (at position `to`) in `slot` */
    TGR_REVERSE, /* record unit `from` from the current state and sweep it */
    TGR_DONE
} tgr_kind;

typedef struct tgr_action {
    tgr_kind kind;
    int slot, from, to;
} tgr_action;

/* One reversal under way: units [p, q) with s snapshots, the first of them
 * (slot snaps - s) holding position p. */
typedef struct tgr_frame {
    int p, q, s, m, k, stage;
} tgr_frame;

typedef struct tgr_sched {
    int n, snaps;
    tgr_frame *stack;   /* snaps frames, the caller's */
    int depth;
    tgr_action queue[3];
    int nq, iq;
} tgr_sched;

/* n >= 0 units, 1 <= snaps; stack has room for snaps frames (a frame is
 * pushed only when a snapshot is taken, so the depth never exceeds snaps).
 * Nothing is allocated. */
void tgr_init(tgr_sched *sc, int n, int snaps, tgr_frame *stack);
tgr_action tgr_next(tgr_sched *sc);

/* Choosing segment length L and snapshots s for `steps` steps within a
 * budget.  A segment of L steps needs tape(L) = round64(tape1 + (L-1) tape_step)
 * + ptr (entries1 + (L-1) entries_step) bytes on the tape; with more than one
 * segment the driver holds `fixed` + (s - 1) `per_snapshot` bytes besides.
 * whole_only: one segment or nothing (states that run in reverse). */
typedef struct tgr_costs {
    int steps;
    size_t tape1, tape_step;
    size_t entries1, entries_step;
    size_t fixed, per_snapshot;
    int whole_only;
    int max_segment;    /* 0: any; else L at most this (what was measured to fit) */
} tgr_costs;

typedef struct tgr_choice {
    int segment, segments, snapshots;
    long long forward_steps;    /* steps + segment * tgr_advances(segments, snapshots) */
    size_t tape_bytes, other_bytes;
} tgr_choice;

size_t tgr_tape_bytes(const tgr_costs *c, int L);
size_t tgr_other_bytes(const tgr_costs *c, int segments, int snapshots);
/* The choice with the fewest recorded steps (ties: fewer segments) whose
 * tape_bytes + other_bytes <= memory; -1 when not even one step fits. */
int tgr_choose(const tgr_costs *c, size_t memory, tgr_choice *out);

#endif
