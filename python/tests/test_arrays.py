"""Arrays in and out: shapes and dtypes checked with exact messages, params as views."""
import numpy as np
import pytest

from conftest import ROOT

import tapegrad

ELMAN = str(ROOT / "models/elman.yaml")


@pytest.fixture
def elman():
    m = tapegrad.Model(ELMAN)
    return m, m.init_params(seed=1)


def raises(exc, msg, fn, *a, **kw):
    with pytest.raises(exc) as e:
        fn(*a, **kw)
    assert str(e.value) == msg
    return e.value


X = np.zeros((3, 2, 4), np.float32)
Y = np.zeros((3, 1, 4), np.float32)


def test_shapes_are_checked_and_named(elman):
    m, p = elman
    raises(ValueError, "x: expected shape [T, 2, B] or [T, 2], given [3, 3, 4]",
           m.loss_and_grad, p, x=np.zeros((3, 3, 4), np.float32), y=Y)
    raises(ValueError, "x: expected shape [T, 2, B] or [T, 2], given [2]",
           m.loss_and_grad, p, x=np.zeros(2, np.float32), y=Y)
    raises(ValueError, "y: expected shape [3, 1, 4] (T and B from x), given [3, 1, 5]",
           m.loss_and_grad, p, x=X, y=np.zeros((3, 1, 5), np.float32))
    raises(ValueError, "y: expected shape [3, 1, 4] (T and B from x), given [2, 1, 4]",
           m.loss_and_grad, p, x=X, y=Y[:2])
    raises(ValueError, "y: expected shape [3, 1] (T from x), given [3, 1, 4]",
           m.loss_and_grad, p, x=np.zeros((3, 2), np.float32), y=Y)
    raises(ValueError, "state h: expected shape [2, 4], given [2, 3]",
           m.run, p, x=X, state={"h": np.zeros((2, 3), np.float32)})
    raises(TypeError, "y: missing target (the loss reads it)", m.loss_and_grad, p, x=X)
    raises(TypeError, "x: missing input (the model elman reads x at every step)", m.run, p, y=Y)
    raises(TypeError, "z: the model elman has no input or target of that name (inputs: x; targets: y)",
           m.run, p, x=X, z=X)


def test_float64_is_never_silently_rounded_into_float32(elman):
    m, p = elman
    e = raises(tapegrad.DTypeError,
               "x: given dtype float64, the model's dtype is float32: converting could lose precision "
               "(pass an array of dtype float32, or create the model with casting='same_kind' to round "
               "to nearest)", m.loss_and_grad, p, x=X.astype(np.float64), y=Y)
    assert isinstance(e, ValueError) and isinstance(e, TypeError)
    with pytest.raises(tapegrad.DTypeError):
        m.loss_and_grad(p, x=[[[0.0]] * 2] * 3, y=Y[:, :, :1])  # lists are float64 too
    with pytest.raises(tapegrad.DTypeError):
        p["W"] = np.eye(2)
    # exact conversions are taken: small integers into float32, float32 into float64
    loss, _ = m.loss_and_grad(p, x=X.astype(np.int16), y=Y)
    assert loss == m.loss_and_grad(p, x=X, y=Y)[0]
    m64 = tapegrad.Model(ELMAN, dtype="float64")
    p64 = m64.init_params(seed=1)
    assert m64.loss_and_grad(p64, x=X, y=Y)[0] == m64.loss_and_grad(p64, x=X.astype(np.float64),
                                                                     y=Y.astype(np.float64))[0]
    # opting in rounds to nearest
    mr = tapegrad.Model(ELMAN, casting="same_kind")
    pr = mr.init_params(seed=1)
    x = np.random.default_rng(1).normal(size=(3, 2, 4))
    assert mr.loss_and_grad(pr, x=x, y=Y)[0] == mr.loss_and_grad(pr, x=x.astype(np.float32), y=Y)[0]


def test_params_view_the_librarys_buffers(elman):
    m, p = elman
    assert list(p) == ["U", "W", "b", "V", "c"]
    assert p["W"].shape == (2, 2) and p["b"].shape == (2,) and p["W"].dtype == np.float32
    # a write through the view is what the library reads
    p["W"][...] = 0
    p["U"][...] = 0
    p["b"][...] = [0.5, -0.5]
    out = m.run(p, x=np.ones((2, 2), np.float32))
    assert np.allclose(out.state["h"], np.tanh([0.5, -0.5]), rtol=1e-6, atol=0)
    # the flat buffers are the same memory
    p.values[:] = 0
    assert not p["b"].any()
    assert np.shares_memory(p["W"], p.values) and np.shares_memory(p.grad["W"], p.grads)
    # the gradient mapping is the gradient buffer: loss_and_grad fills it in place
    loss, g = m.loss_and_grad(p, x=X + 1, y=Y + 1)
    assert g is p.grad and np.shares_memory(g["c"], p.grads) and g["c"].any()
    # p[name] = value checks and copies in
    p["W"] = np.float32([[1, 2], [3, 4]])
    assert p["W"][1, 0] == 3
    raises(ValueError, "W: expected shape [2, 2], given [2, 3]", p.__setitem__, "W", np.zeros((2, 3), np.float32))


def test_views_keep_the_memory_alive():
    m = tapegrad.Model(ELMAN)
    w = m.init_params(seed=4)["W"]
    g = m.init_params(seed=4).grads
    want = w.copy()
    del m
    import gc
    gc.collect()
    for _ in range(100):  # churn the allocator
        tapegrad.Model(ELMAN).init_params()
    assert np.array_equal(w, want) and not g.any()


def test_params_from_another_model_are_refused(elman):
    m, p = elman
    other = tapegrad.Model(ELMAN).init_params()
    raises(ValueError, "these parameters belong to another model's context", m.loss_and_grad, other, x=X, y=Y)
    raises(TypeError, "expected tapegrad.Params (from init_params or load_params), given dict",
           m.loss_and_grad, {"W": 1}, x=X, y=Y)


def test_batch_one_layout_and_initial_states(elman):
    m, p = elman
    x = np.random.default_rng(2).uniform(-1, 1, (5, 2)).astype(np.float32)
    out2 = m.run(p, x=x)
    out3 = m.run(p, x=x[:, :, None])
    assert out2["o"].shape == (5, 1) and out3["o"].shape == (5, 1, 1)
    assert np.array_equal(out2["o"], out3["o"][:, :, 0])
    assert out2.state["h"].shape == (2,) and out2.loss is None
    # the final state carried into the next chunk continues the sequence (truncated BPTT)
    a = m.run(p, x=x[:3])
    b = m.run(p, x=x[3:], state=a.state)
    assert np.array_equal(np.concatenate([a["o"], b["o"]]), out2["o"])


def test_dims_override_and_model_description():
    m = tapegrad.Model(str(ROOT / "models/lstm.yaml"), dims={"hidden": 64}, dtype="float64")
    assert m.dims["hidden"] == 64 and m.params["Wf"] == (64, 66) and m.params["bf"] == (64,)
    assert m.inputs == {"x": 2} and m.targets == {"y": 2} and m.states == {"h": 64, "c": 64}
    assert m.outputs == ["o"] and m.has_loss and m.dtype == "float64"
    p = m.init_params(seed=1)
    assert p["Wf"].dtype == np.float64 and (p["bf"] == 1).all()


def test_parameters_save_and_load_exactly(tmp_path, dtype):
    m = tapegrad.Model(ELMAN, dtype=dtype)
    p = m.init_params(seed=9)
    p.save(tmp_path / "p.yaml")
    q = m.load_params(tmp_path / "p.yaml", seed=2)
    for k in p:
        assert q[k].tobytes() == p[k].tobytes()


def test_a_model_from_text():
    text = """
name: tiny
dims: {n: 2}
params: {w: {shape: [n], init: ones}}
inputs: {x: [n]}
targets: {y: [n]}
step:
  - o = w * x
outputs: [o]
loss: squared_error(o, y)
"""
    m = tapegrad.Model("tiny.yaml", text=text, dtype="float64")
    p = m.init_params()
    x = np.array([[1.0, 2.0]])
    loss, g = m.loss_and_grad(p, x=x, y=np.zeros((1, 2)))
    assert loss == 5.0 and list(g["w"]) == [2.0, 8.0]
