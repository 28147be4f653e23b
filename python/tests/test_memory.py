"""Objects free their C memory: creating models over and over does not grow the process."""
import gc
import resource

import numpy as np

from conftest import ROOT

import tapegrad

ELMAN = str(ROOT / "models/elman.yaml")
LSTM = str(ROOT / "models/lstm.yaml")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def churn(n):
    x = np.zeros((4, 2, 3), np.float32)
    y = np.zeros((4, 2, 3), np.float32)
    for i in range(n):
        m = tapegrad.Model(LSTM, dims={"hidden": 16})
        p = m.init_params(seed=i)
        m.loss_and_grad(p, x=x, y=y)
        if i % 3 == 0:  # a view outlives its model for a while
            keep = p["Wf"]
        if i % 5 == 0:  # and a reference cycle leaves it to the garbage collector
            m.cycle = m
        t = m.ctx.tape()
        t.sum(t.input(x[0]))
    del keep


def test_ten_thousand_models_do_not_grow_the_process():
    churn(500)  # warm up: the libraries, numpy, cffi's caches
    gc.collect()
    before = rss_bytes()
    churn(10000)
    gc.collect()
    after = rss_bytes()
    # each model (context, model, params, tape with an LSTM's 4 steps) takes
    # tens of kilobytes; 10,000 kept would be hundreds of megabytes
    print("RSS before %.1f MB, after 10,000 models %.1f MB" % (before / 2**20, after / 2**20))
    assert after - before < 16 << 20, (before, after)


def test_without_cycles_everything_is_freed_at_once_without_the_garbage_collector():
    import weakref
    x = np.zeros((4, 2, 3), np.float32)
    gc.collect()
    gc.disable()
    try:
        base = len(weakref.finalize._registry)
        for i in range(200):
            m = tapegrad.Model(LSTM, dims={"hidden": 8})
            p = m.init_params(seed=i)
            loss, g = m.loss_and_grad(p, x=x, y=x)
            w = p["Wf"]  # a view
            del m, p, g
            assert len(weakref.finalize._registry) > base  # the view holds its buffers
            del w
            assert len(weakref.finalize._registry) == base
    finally:
        gc.enable()
