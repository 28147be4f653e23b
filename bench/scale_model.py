#!/usr/bin/env python3
"""scale_model.py -- the step time of data-parallel training on N machines,
on paper (docs/distributed.md explains every term):

    T(N) = (T1 - U) / N  +  U  +  2(N-1) alpha  +  2(N-1)/N * S / beta

T1 is the benchmark's single-machine step (bench/README.md), U the part of
it that does not shrink with N (the optimizer update over every parameter,
which every rank repeats), S the gradient buffer in bytes, alpha the latency
of one message and beta the bandwidth of one link (a ring allreduce: each
rank sends and receives 2(N-1)/N of the buffer in 2(N-1) messages).  With the
global batch fixed ("strong"), each rank computes B/N columns, so N <= B.
With the per-rank batch fixed ("weak"), the global batch is N*B and the
step stays T1 - U + U + allreduce; the gain is throughput.

    python3 bench/scale_model.py [ALPHA_US BETA_GBS]
"""
import math
import sys

ALPHA = float(sys.argv[1]) * 1e-6 if len(sys.argv) > 1 else 25e-6   # s per message
BETA = float(sys.argv[2]) * 1e9 if len(sys.argv) > 2 else 1.1e9     # bytes/s per link
MEM = 10e9     # bytes/s one core streams through an update (read params+grads, write params)

def elman_params(i, h, o):
    """models/elman.yaml: U [h,i], W [h,h], b [h], V [o,h], c [o]."""
    return h * i + h * h + h + o * h + o

# size: (I, H, O, T, B, T1 seconds from bench/README.md's latest quiet run)
SIZES = {
    "medium": (64, 256, 64, 100, 32, 15.1e-3),
    "large": (256, 1024, 256, 100, 64, 353e-3),
}

def allreduce(n, s):
    return 0.0 if n == 1 else 2 * (n - 1) * ALPHA + 2 * (n - 1) / n * s / BETA

def main():
    print(f"alpha = {ALPHA * 1e6:g} us per message, beta = {BETA / 1e9:g} GB/s per link, "
          f"update streamed at {MEM / 1e9:g} GB/s")
    for name, (i, h, o, t, b, t1) in SIZES.items():
        p = elman_params(i, h, o)
        s = 4 * p
        u = 3 * s / MEM       # SGD: read params and grads, write params
        print(f"\n{name}: {i}-{h}-{o}, T {t}, B {b}: {p} parameters, S = {s / 1e6:.3f} MB, "
              f"T1 = {t1 * 1e3:g} ms, U = {u * 1e3:.3f} ms")
        print(f"{'N':>4} {'allreduce ms':>13} {'strong ms':>10} {'speedup':>8} {'eff':>5}"
              f" {'weak ms':>9} {'weak x':>7} {'eff':>5}")
        for n in (1, 2, 4, 8, 16, 32, 64, 128):
            ar = allreduce(n, s)
            if n <= b:
                ts = (t1 - u) / n + u + ar
                strong = f"{ts * 1e3:10.3f} {t1 / ts:8.2f} {t1 / ts / n:5.2f}"
            else:
                strong = f"{'n/a':>10} {'':>8} {'':>5}"
            tw = t1 + ar
            print(f"{n:4d} {ar * 1e3:13.3f} {strong} {tw * 1e3:9.3f} {n * t1 / tw:7.2f} {t1 / tw:5.2f}")
        # dT/dN = 0 for the strong-scaling time, ignoring the cap N <= B
        c = t1 - u - 2 * s / BETA
        nstar = math.sqrt(c / (2 * ALPHA)) if c > 0 else 1
        # the largest N whose strong-scaling efficiency is still >= 50%
        half = max((n for n in range(1, b + 1)
                    if t1 / ((t1 - u) / n + u + allreduce(n, s)) / n >= 0.5), default=1)
        print(f"fastest step at N = {nstar:.0f} (batch caps N at {b}); "
              f"efficiency >= 50% up to N = {half}")

if __name__ == "__main__":
    main()
