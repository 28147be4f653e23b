"""Trainer: the library's training loop from Python, checkpoints, resume, Ctrl-C."""
import os
import signal
import threading

import numpy as np
import pytest

from conftest import ROOT

import tapegrad

ELMAN = str(ROOT / "models/elman.yaml")
SEED_DATA = str(ROOT / "examples/data/seed.yaml")
SEED_PARAMS = str(ROOT / "examples/data/seed-params.yaml")


def sequences(m, n=12, T=6, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(-1, 1, (T, 2, 1)).astype(np.float32),
             "y": rng.uniform(-1, 1, (T, 1, 1)).astype(np.float32)} for _ in range(n)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_is_the_loop_written_by_hand(dtype):
    """SGD on the lecture's sequence, sums: the trainer's steps are loss_and_grad and p -= lr g."""
    m = tapegrad.Model(ELMAN, dtype=dtype)
    p = m.load_params(SEED_PARAMS)
    q = m.load_params(SEED_PARAMS)
    seen = []
    tapegrad.Trainer(m, p, optimizer="sgd", lr=0.05, reduction="sum").fit(
        SEED_DATA, epochs=50, callback=lambda s: seen.append(s.step_loss) if not s.epoch_end else None)
    data = m.load_data(SEED_DATA)
    losses = []
    for _ in range(50):
        loss, g = m.loss_and_grad(q, data)
        losses.append(loss)
        for k in q:
            q[k][...] -= 0.05 * g[k]
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert np.allclose(seen, losses, rtol=tol, atol=tol)
    for k in p:
        assert np.allclose(p[k], q[k], rtol=tol, atol=tol)
    assert losses[-1] < losses[0] / 2


def run(m, p, data, stop_at=None, **fit):
    tr = tapegrad.Trainer(m, p, optimizer="adam", lr=0.01, batch=3, clip=1.0)
    cb = (lambda s: s.step == stop_at and not s.epoch_end) if stop_at else None
    tr.fit(data, epochs=4, callback=cb, **fit)
    return tr


def test_a_stopped_run_resumes_bit_for_bit(tmp_path):
    m = tapegrad.Model(ELMAN)
    data = sequences(m)
    whole = m.init_params(seed=2)
    run(m, whole, data)  # 4 epochs of 4 batches: 16 steps
    part = m.init_params(seed=2)
    tr = run(m, part, data, stop_at=7, checkpoint=tmp_path / "run.ckpt")
    assert tr.end == "stopped" and tr.progress().step == 7
    again = tapegrad.Trainer.from_checkpoint(tmp_path / "run.ckpt")
    again.fit(data, epochs=4)
    assert again.end == "epochs" and again.progress().step == 16
    for k in whole:
        assert again.params[k].tobytes() == whole[k].tobytes()


def test_ctrl_c_saves_the_checkpoint_and_is_raised_again(tmp_path, capfd, request):
    m = tapegrad.Model(ELMAN)
    data = sequences(m)
    whole = m.init_params(seed=5)
    run(m, whole, data)

    def interrupt(s):
        if s.step == 6 and not s.epoch_end:
            # a real SIGINT in the middle of the run, sent to the main thread: sent to the
            # process, the kernel may hand it to a BLAS thread, and on a loaded machine
            # Python then sees it only after the run has ended
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    p = m.init_params(seed=5)
    tr = tapegrad.Trainer(m, p, optimizer="adam", lr=0.01, batch=3, clip=1.0)
    # Python installs its Ctrl-C handler only when SIGINT is not ignored at start-up, and a
    # runner started in the background (`make check &`) ignores it: install it here
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, old))
    with pytest.raises(KeyboardInterrupt):
        tr.fit(data, epochs=4, callback=interrupt, checkpoint=tmp_path / "c.ckpt")
    err = capfd.readouterr().err
    assert "tapegrad: interrupted at step 6; saved %s" % (tmp_path / "c.ckpt") in err
    tr.fit(data, epochs=4, resume=tmp_path / "c.ckpt")
    for k in whole:
        assert p[k].tobytes() == whole[k].tobytes()


def test_validation_patience_and_text():
    m = tapegrad.Model(ELMAN)
    p = m.init_params()
    tr = tapegrad.Trainer(m, p, optimizer="adam", lr=0.05, patience=2)
    last = tr.fit(sequences(m, 20), epochs=200, valid=0.25)
    assert tr.end in ("patience", "epochs") and not np.isnan(last.valid_loss)
    assert tr.evaluate(sequences(m, 5, seed=9)) > 0
    ts = tapegrad.TrainSet.text("hello, hello, hello world\n" * 20)
    assert ts.is_text and ts.vocab == "\n ,dehlorw" and len(ts) == 26 * 20
    mc = tapegrad.Model(str(ROOT / "models/char_rnn.yaml"), dims={"vocab": ts.vocab_size, "hidden": 16})
    pc = mc.init_params()
    tr = tapegrad.Trainer(mc, pc, lr=0.01, bptt=16, batch=4)
    first = []
    last = tr.fit(ts, epochs=30, callback=lambda s: first.append(s.loss) if s.epoch_end else None)
    assert last.loss < first[0] / 2


def test_bad_options_and_data_are_refused():
    m = tapegrad.Model(ELMAN)
    p = m.init_params()
    with pytest.raises(ValueError, match="optimizer must be one of sgd, momentum, adam, rmsprop, adagrad, not 'adagrd'"):
        tapegrad.Trainer(m, p, optimizer="adagrd")
    with pytest.raises(tapegrad.ArgError):
        tapegrad.Trainer(m, p, lr=-1).fit(sequences(m), epochs=1)
    with pytest.raises(ValueError, match="x: expected shape"):
        tapegrad.Trainer(m, p).fit([{"x": np.zeros((3, 3, 1), np.float32), "y": np.zeros((3, 1, 1), np.float32)}])


def test_a_memory_budget_trains_as_full_bptt():
    """memory= (bytes or "6K"): each chunk swept in segments; the parameters are full BPTT's to rounding."""
    m = tapegrad.Model(ELMAN)
    data = sequences(m, n=6, T=40)
    full, cut = m.init_params(seed=3), m.init_params(seed=3)
    tapegrad.Trainer(m, full, optimizer="sgd", lr=0.05, batch=2).fit(data, epochs=2)
    tr = tapegrad.Trainer(m, cut, optimizer="sgd", lr=0.05, batch=2, memory="6K")
    assert tr._opts.memory == 6144
    tr.fit(data, epochs=2)
    for k in full:
        assert np.allclose(full[k], cut[k], rtol=1e-5, atol=1e-6), k
    assert tapegrad.Trainer(m, cut, memory=4096)._opts.memory == 4096
    with pytest.raises(tapegrad.ArgError, match=r"size '12Q': unexpected characters after the number"):
        tapegrad.Trainer(m, cut, memory="12Q")
    with pytest.raises(ValueError, match=r"memory must be from 0 to 2\*\*64 - 1 bytes, not -1"):
        tapegrad.Trainer(m, cut, memory=-1)
    with pytest.raises(TypeError, match="memory is a number of bytes or a size such as '256M', not float"):
        tapegrad.Trainer(m, cut, memory=1.5)
