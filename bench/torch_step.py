#!/usr/bin/env python3
"""torch_step.py - the benchmark's training step in PyTorch, for comparison
with bench/step.c: same sizes, same float32 weights and data (the integer hash
of step.c, reproduced bit for bit with numpy), same loss, same plain SGD.
Prints key=value lines that bench/run.sh tabulates.

usage: torch_step.py --size tiny|small|medium|large
                     --impl op|rnn|lstm-op|gru-op|lstm-nn|gru-nn
                     [--threads N] [--seconds S] [--lr LR] [--losses N]

  op       the Elman network op by op with autograd (columns are the batch,
           exactly the products tapegrad records)
  rnn      torch.nn.RNN(tanh) + Linear + tanh (the second bias b_hh is held
           at zero and not trained, so the update equals tapegrad's)
  lstm-op, gru-op   models/lstm.yaml and models/gru.yaml, equation by equation
           (same weights and data as tapegrad: the losses must agree)
  lstm-nn, gru-nn   torch.nn.LSTM / torch.nn.GRU + Linear at the same sizes
           (PyTorch's own gate layout and, for the GRU, its own candidate
           r * (W h + b) instead of W (r * h): the losses are not comparable)

Threads: torch.set_num_threads(N) (intra-op, OpenMP) and the BLAS pool through
OPENBLAS_NUM_THREADS, which the caller sets before Python starts (bench/run.sh
does); both are printed.
"""
import argparse
import ctypes
import math
import os
import resource
import sys
import time

import numpy as np
import torch

SIZES = {  # I, H, O, T, B
    "tiny": (2, 2, 1, 3, 1),
    "small": (16, 32, 8, 50, 1),
    "medium": (64, 256, 64, 100, 32),
    "large": (256, 1024, 256, 100, 64),
}


# ---- the deterministic init of step.c ----------------------------------------
def mix32(x):
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def fnv1a(prefix, s):
    h = 2166136261
    for ch in (prefix + s).encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def hash_uniform(n, seed, scale):
    """scale * (2u - 1), u = mix32(i * 0x9E3779B9 + seed) / 2^32, as float32."""
    i = np.arange(n, dtype=np.uint64)
    x = ((i * np.uint64(0x9E3779B9) + np.uint64(seed)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    u = mix32(x).astype(np.float64) / 4294967296.0
    return (scale * (2.0 * u - 1.0)).astype(np.float32)


def param(name, rows, cols=0):
    """A parameter as step.c's init_param sets it: [rows, cols] in +-1/sqrt(cols),
    [rows] in +-0.1."""
    if cols:
        v = hash_uniform(rows * cols, fnv1a("", name), 1.0 / math.sqrt(cols)).reshape(rows, cols)
    else:
        v = hash_uniform(rows, fnv1a("", name), 0.1)
    return torch.from_numpy(v.copy())


def data(name, T, rows, B, scale):
    """[T, rows, B], the layout of tg_data_values()."""
    v = hash_uniform(T * rows * B, fnv1a("data:", name), scale).reshape(T, rows, B)
    return torch.from_numpy(v.copy())


# ---- the models ---------------------------------------------------------------
class ElmanOps:
    """h0 = 0; a = U x + W h + b; h = tanh a; o = tanh(V h + c); L = sum (y - o)^2"""

    def __init__(self, I, H, O, T, B):
        self.p = {"U": param("U", H, I), "W": param("W", H, H), "b": param("b", H),
                  "V": param("V", O, H), "c": param("c", O)}
        self.x, self.y = data("x", T, I, B, 1.0), data("y", T, O, B, 0.9)
        self.H, self.B = H, B

    def params(self):
        return list(self.p.values())

    def loss(self):
        U, W, b, V, c = (self.p[k] for k in "UWbVc")
        bc, cc = b[:, None], c[:, None]
        h = torch.zeros(self.H, self.B)
        loss = None
        for t in range(self.x.shape[0]):
            h = torch.tanh(U @ self.x[t] + W @ h + bc)
            o = torch.tanh(V @ h + cc)
            e = ((self.y[t] - o) ** 2).sum()
            loss = e if loss is None else loss + e
        return loss


class LSTMOps:
    """models/lstm.yaml: z = [x; h]; f, i, q = sigmoid(W. z + b.); g = tanh(Wg z + bg);
    c = f * c + i * g; h = q * tanh(c); o = V h + d; L = sum (y - o)^2"""

    def __init__(self, I, H, O, T, B):
        self.p = {k: param(k, H, I + H) for k in ("Wf", "Wi", "Wg", "Wq")}
        self.p.update({k: param(k, H) for k in ("bf", "bi", "bg", "bq")})
        self.p["V"], self.p["d"] = param("V", O, H), param("d", O)
        self.x, self.y = data("x", T, I, B, 1.0), data("y", T, O, B, 0.9)
        self.H, self.B = H, B

    def params(self):
        return list(self.p.values())

    def loss(self):
        p = self.p
        bf, bi, bg, bq, d = (p[k][:, None] for k in ("bf", "bi", "bg", "bq", "d"))
        h = torch.zeros(self.H, self.B)
        c = torch.zeros(self.H, self.B)
        loss = None
        for t in range(self.x.shape[0]):
            z = torch.cat((self.x[t], h), 0)
            f = torch.sigmoid(p["Wf"] @ z + bf)
            i = torch.sigmoid(p["Wi"] @ z + bi)
            g = torch.tanh(p["Wg"] @ z + bg)
            q = torch.sigmoid(p["Wq"] @ z + bq)
            c = f * c + i * g
            h = q * torch.tanh(c)
            o = p["V"] @ h + d
            e = ((self.y[t] - o) ** 2).sum()
            loss = e if loss is None else loss + e
        return loss


class GRUOps:
    """models/gru.yaml: z = sigmoid(Wz x + Uz h + bz); r = sigmoid(Wr x + Ur h + br);
    n = tanh(Wn x + Un (r * h) + bn); h = (1 - z) * n + z * h; o = V h + c"""

    def __init__(self, I, H, O, T, B):
        self.p = {k: param(k, H, I) for k in ("Wz", "Wr", "Wn")}
        self.p.update({k: param(k, H, H) for k in ("Uz", "Ur", "Un")})
        self.p.update({k: param(k, H) for k in ("bz", "br", "bn")})
        self.p["V"], self.p["c"] = param("V", O, H), param("c", O)
        self.x, self.y = data("x", T, I, B, 1.0), data("y", T, O, B, 0.9)
        self.H, self.B = H, B

    def params(self):
        return list(self.p.values())

    def loss(self):
        p = self.p
        bz, br, bn, c = (p[k][:, None] for k in ("bz", "br", "bn", "c"))
        h = torch.zeros(self.H, self.B)
        loss = None
        for t in range(self.x.shape[0]):
            x = self.x[t]
            z = torch.sigmoid(p["Wz"] @ x + p["Uz"] @ h + bz)
            r = torch.sigmoid(p["Wr"] @ x + p["Ur"] @ h + br)
            n = torch.tanh(p["Wn"] @ x + p["Un"] @ (r * h) + bn)
            h = (1 - z) * n + z * h
            o = p["V"] @ h + c
            e = ((self.y[t] - o) ** 2).sum()
            loss = e if loss is None else loss + e
        return loss


class NNRecurrent:
    """torch.nn.RNN (+ Linear + tanh, the Elman network) or torch.nn.LSTM / GRU
    (+ Linear, as models/lstm.yaml and gru.yaml read out); batch in the middle."""

    def __init__(self, kind, I, H, O, T, B):
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
        kw = {"nonlinearity": "tanh"} if kind == "rnn" else {}
        self.rnn = cls(I, H, bias=True, **kw)
        self.lin = torch.nn.Linear(H, O)
        with torch.no_grad():
            if kind == "rnn":
                self.rnn.weight_ih_l0.copy_(param("U", H, I))
                self.rnn.weight_hh_l0.copy_(param("W", H, H))
                self.rnn.bias_ih_l0.copy_(param("b", H))
                self.rnn.bias_hh_l0.zero_()
                self.rnn.bias_hh_l0.requires_grad_(False)
            else:  # the same hash, PyTorch's own layout: not tapegrad's weights
                for name, p in self.rnn.named_parameters():
                    shape = tuple(p.shape)
                    p.copy_(param(name, *shape) if len(shape) == 2 else param(name, shape[0]))
            self.lin.weight.copy_(param("V", O, H))
            self.lin.bias.copy_(param("c", O))
        self.x = data("x", T, I, B, 1.0).permute(0, 2, 1).contiguous()  # [T, B, I]
        self.y = data("y", T, O, B, 0.9).permute(0, 2, 1).contiguous()  # [T, B, O]
        self.squash = kind == "rnn"

    def params(self):
        return [p for p in list(self.rnn.parameters()) + list(self.lin.parameters()) if p.requires_grad]

    def loss(self):
        h, _ = self.rnn(self.x)
        o = self.lin(h)
        if self.squash:
            o = torch.tanh(o)
        return ((self.y - o) ** 2).sum()


# ---- timing ----------------------------------------------------------------------
def time_it(fn, seconds):
    """Same scheme as step.c: samples of >= 2 ms, until `seconds` and >= 5 samples."""
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    reps = 1 if one >= 2e-3 else int(2e-3 / max(one, 1e-8)) + 1
    samples = []
    start = time.perf_counter()
    while len(samples) < 400 and (len(samples) < 5 or time.perf_counter() - start < seconds):
        a = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - a) / reps)
    samples.sort()
    n = len(samples)
    med = samples[n // 2] if n % 2 else 0.5 * (samples[n // 2 - 1] + samples[n // 2])
    return med, samples[0], samples[-1], n, reps


def blas_info():
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()
    except (OSError, AttributeError):
        return "unknown", -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="tiny", choices=SIZES)
    ap.add_argument("--impl", default="op", choices=["op", "rnn", "lstm-op", "gru-op", "lstm-nn", "gru-nn"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--lr", type=float, default=-1)
    ap.add_argument("--losses", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    I, H, O, T, B = SIZES[args.size]
    lr = args.lr if args.lr > 0 else 0.01 / (T * B)
    if args.impl == "op":
        model = ElmanOps(I, H, O, T, B)
    elif args.impl == "rnn":
        model = NNRecurrent("rnn", I, H, O, T, B)
    elif args.impl.endswith("-nn"):
        model = NNRecurrent(args.impl[:-3], I, H, O, T, B)
    else:
        model = (LSTMOps if args.impl == "lstm-op" else GRUOps)(I, H, O, T, B)
    params = model.params()
    for p in params:
        p.requires_grad_(True)
    losses = []

    def step():
        loss = model.loss()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
                p.grad = None

    corename, blas_threads = blas_info()
    print(f"impl={args.impl}\nsize={args.size}\ntorch={torch.__version__}")
    print(f"torch_threads={torch.get_num_threads()}\nblas_threads={blas_threads}\ncorename={corename}")
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        print(f"env_{k}={os.environ.get(k, '(unset)')}")
    for i in range(max(3, args.losses)):
        step()
    print(f"loss0={losses[0]:.9g}\nloss1={losses[1]:.9g}")
    for i in range(args.losses):
        print(f"loss_step{i}={losses[i]:.9g}")
    med, lo, hi, n, reps = time_it(step, args.seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"ms_median={med * 1e3:.6f}\nms_min={lo * 1e3:.6f}\nms_max={hi * 1e3:.6f}")
    print(f"samples={n}\nreps_per_sample={reps}\nsteps_per_s={1.0 / med:.1f}\nrss_mib={rss:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
