"""Every library status becomes its own exception class, with the library's message."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

import tapegrad

ELMAN = str(ROOT / "models/elman.yaml")


def caught(exc, fn):
    with pytest.raises(exc) as e:
        fn()
    assert isinstance(e.value, tapegrad.Error)
    return e.value


def test_one_class_per_status_in_the_order_of_tg_status():
    classes = [tapegrad.ArgError, tapegrad.ShapeError, tapegrad.NoMemoryError, tapegrad.NotFoundError,
               tapegrad.NonFiniteError, tapegrad.ParseError, tapegrad.IOError, tapegrad.LimitError,
               tapegrad.CheckError]
    assert [c.code for c in classes] == list(range(1, 10))
    assert len(set(classes)) == 9 and all(issubclass(c, tapegrad.Error) for c in classes)
    # the status names the library gives, one per class
    L = tapegrad.Context()._L
    names = [L.ffi.string(L.lib.tg_status_name(c.code)).decode() for c in classes]
    assert len(set(names)) == 9


def test_a_malformed_model_names_file_line_and_column():
    bad = "name: bad\ninputs: {x: [2]}\nstep:\n  - h = tanh(x) + hh\n"
    e = caught(tapegrad.ParseError, lambda: tapegrad.Model("bad.yaml", text=bad))
    assert str(e) == "bad.yaml:4:19: unknown name 'hh'"
    assert (e.file, e.line, e.column) == ("bad.yaml", 4, 19)


def test_files_dims_and_limits():
    e = caught(tapegrad.IOError, lambda: tapegrad.Model("nosuch.yaml"))
    assert str(e) == "nosuch.yaml: cannot open the model file: No such file or directory"
    assert isinstance(e, OSError)
    e = caught(tapegrad.ArgError, lambda: tapegrad.Model(ELMAN, dims={"nosuch": 3}))
    assert str(e) == ELMAN + ": cannot set dim 'nosuch': the model has no such dim"
    e = caught(tapegrad.LimitError, lambda: tapegrad.Model(ELMAN, dims={"hidden": 100000}))
    assert str(e) == ELMAN + ":12:14: 'W' has more than the limit of 67108864 elements"
    m = tapegrad.Model(ELMAN)
    e = caught(tapegrad.IOError, lambda: m.load_params("/nonexistent/p.yaml"))
    assert str(e).startswith("/nonexistent/p.yaml: ")


def test_tape_ops_shapes_and_names():
    t = tapegrad.Context().tape()
    a = t.input(np.ones((2, 3), np.float32))
    e = caught(tapegrad.ShapeError, lambda: a @ a)
    assert str(e) == "matmul: inner dimensions differ: [2, 3] @ [2, 3]"
    e = caught(tapegrad.NotFoundError, lambda: t.apply("nosuch", a))
    assert str(e) == "unknown op 'nosuch'"
    e = caught(tapegrad.ArgError, lambda: t.apply("slice", a))
    assert str(e) == "slice: takes 2 attributes, given 0"
    loss = t.sum(a)
    t.reset()
    e = caught(tapegrad.Error, lambda: t.backward(loss))
    assert str(e) == "this tensor was recorded before the tape's reset()"


def test_anomaly_detection_points_into_the_model_file():
    path = str(ROOT / "tests/data/overflow.yaml")
    zeros = np.zeros((6, 1), np.float32)
    m = tapegrad.Model(path, detect_anomaly=True)
    e = caught(tapegrad.NonFiniteError, lambda: m.loss_and_grad(m.init_params(), x=zeros, y=zeros))
    assert str(e).startswith(path + ":13:9: in 's' at step 4: non-finite value computed by entry 21 (exp [1, 1]);")
    assert (e.file, e.line, e.column) == (path, 13, 9)
    # without anomaly mode, the refused loss still says where the first Inf came from
    m.detect_anomaly = False
    e = caught(tapegrad.NonFiniteError, lambda: m.loss_and_grad(m.init_params(), x=zeros, y=zeros))
    assert str(e).startswith("backward: the loss is inf; first non-finite value: entry 21 (exp [1, 1] "
                             "'s[t=4]' at " + path + ":13:9)")
    assert (e.file, e.line, e.column) == (path, 13, 9)


def test_out_of_memory_is_an_exception_not_a_crash():
    code = """
import resource, sys
sys.path.insert(0, %r)
import tapegrad
t = tapegrad.Context().tape()
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open('/proc/self/statm') as f:
    size = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (256 << 20), hard))
try:
    t.zeros((40000, 40000))
except tapegrad.NoMemoryError as e:
    print("NoMemoryError", e)
""" % str(ROOT / "python")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("NoMemoryError "), r.stdout
