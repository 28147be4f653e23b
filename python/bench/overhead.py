"""Per-call cost of Model.loss_and_grad on the lecture's tiny model (models/elman.yaml,
examples/data/seed.yaml: T = 3, B = 1) against the library's own training loop, and the
process size after 10,000 model creations.  A measurement, not a test:
    PYTHONPATH=python /usr/bin/python3 python/bench/overhead.py"""
import gc
import resource
import time

import numpy as np
import tapegrad


def best_of(fn, n, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn(n)
        best = min(best, time.process_time() - t0)
    return best / n


def statm():
    with open("/proc/self/statm") as f:
        size, rss = (int(v) * resource.getpagesize() for v in f.read().split()[:2])
    return size / 2**20, rss / 2**20


m = tapegrad.Model("models/elman.yaml")
p = m.load_params("examples/data/seed-params.yaml")
seq = m.load_data("examples/data/seed.yaml")[0]
X, Y = seq["x"][:, :, 0].copy(), seq["y"][:, :, 0].copy()


def calls(n):
    for _ in range(n):
        m.loss_and_grad(p, x=X, y=Y)


def steps(n):  # loss_and_grad plus an SGD step in numpy, as a hand-written loop would
    for _ in range(n):
        m.loss_and_grad(p, x=X, y=Y)
        p.values[...] -= 0.01 * p.grads


q = m.load_params("examples/data/seed-params.yaml")
tr = tapegrad.Trainer(m, q, optimizer="sgd", lr=0.01, reduction="sum")


def trainer(n):
    tr.fit("examples/data/seed.yaml", epochs=n)


print("loss_and_grad                  %6.2f us per call" % (best_of(calls, 20000) * 1e6))
print("loss_and_grad + numpy SGD step %6.2f us per step" % (best_of(steps, 20000) * 1e6))
print("Trainer.fit (the C loop)       %6.2f us per step" % (best_of(trainer, 20000) * 1e6))

size0, rss0 = statm()
x = np.zeros((3, 2), np.float32)
y = np.zeros((3, 1), np.float32)
for i in range(10000):
    mm = tapegrad.Model("models/elman.yaml")
    mm.loss_and_grad(mm.init_params(seed=i), x=x, y=y)
gc.collect()
size1, rss1 = statm()
print("after 10,000 models: size %.1f MB (was %.1f), resident %.1f MB (was %.1f)" % (size1, size0, rss1, rss0))
