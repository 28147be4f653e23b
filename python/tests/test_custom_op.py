"""Ops written in Python: registered through cffi callbacks, used from YAML and tapes,
and put through the gradient check."""
import numpy as np
import pytest

from conftest import DTYPES

import tapegrad


def sin_fwd(xs, attrs):
    return np.sin(xs[0])


def sin_bwd(xs, y, gy, attrs):
    return [gy * np.cos(xs[0])]


# softplus(a x) with an attribute a, and a two-input op with its own shape rule
def softplus_fwd(xs, attrs):
    return np.logaddexp(0, attrs[0] * xs[0])


def softplus_bwd(xs, y, gy, attrs):
    a = attrs[0]
    return [gy * a / (1 + np.exp(-a * xs[0]))]


# column by column: [r1, B] and [r2, B] give [r1 * r2, B] (the model's static
# check calls the shape rule with a stand-in number for B)
def outer_shape(shapes, attrs):
    (r1, c1), (r2, c2) = shapes
    if c1 != c2:
        raise ValueError("outer takes as many columns on each side, given %d and %d" % (c1, c2))
    return r1 * r2, c1


def outer_fwd(xs, attrs):
    a, b = xs
    return np.einsum("ib,jb->ijb", a, b).reshape(-1, a.shape[1])


def outer_bwd(xs, y, gy, attrs):
    a, b = xs
    g = gy.reshape(a.shape[0], b.shape[0], a.shape[1])
    return [np.einsum("ijb,jb->ib", g, b), np.einsum("ijb,ib->jb", g, a)]


tapegrad.register_op("py_sin", sin_fwd, sin_bwd)
tapegrad.register_op("py_softplus", softplus_fwd, softplus_bwd, n_attrs=1)
tapegrad.register_op("py_outer", outer_fwd, outer_bwd, shape=outer_shape, arity=2)
tapegrad.register_op("py_bad_grad", sin_fwd, lambda xs, y, gy, a: [gy * 1.1 * np.cos(xs[0])])
tapegrad.register_op("py_raises", lambda xs, a: xs[0][5, 5], sin_bwd)

MODEL = """
name: custom
dims: {input: 2, hidden: 3}
params:
  U: [hidden, input]
  W: {shape: [hidden, hidden], init: normal(0, 0.5)}
  b: {shape: [hidden], init: uniform(-0.5, 0.5)}
  V: [1, hidden * input]
inputs:  {x: [input]}
targets: {y: [1]}
state:   {h: [hidden]}
step:
  - h = py_sin(U @ x + W @ h + b)
  - z = py_softplus(h, 1.5)
  - o = V @ py_outer(z, x)
outputs: [o]
loss: squared_error(o, y)
"""


@pytest.mark.parametrize("dtype", DTYPES)
def test_python_ops_in_a_yaml_model_pass_the_gradient_check(dtype):
    m = tapegrad.Model("custom.yaml", text=MODEL, dtype=dtype)
    r = m.check(steps=6, batch=3, seed=3)
    assert r.ok and r.checked == 6 + 9 + 3 + 6
    assert r.max_err < (1e-8 if dtype == "float64" else 5e-3)
    assert "U" in r.report


def test_the_gradient_check_catches_a_wrong_backward():
    m = tapegrad.Model("bad.yaml", text=MODEL.replace("py_sin", "py_bad_grad"), dtype="float64")
    with pytest.raises(tapegrad.CheckError) as e:
        m.check(steps=4)
    assert not e.value.result.ok and e.value.result.max_err > 1e-3


def test_values_equal_the_same_model_written_with_builtins():
    builtin = MODEL.replace("py_sin(U @ x + W @ h + b)", "tanh(U @ x + W @ h + b)")
    mine = MODEL.replace("py_sin(", "py_tanh(")
    tapegrad.register_op("py_tanh", lambda xs, a: np.tanh(xs[0]),
                         lambda xs, y, gy, a: [gy * (1 - y * y)])
    a = tapegrad.Model("a.yaml", text=builtin, dtype="float64")
    b = tapegrad.Model("b.yaml", text=mine, dtype="float64")
    pa, pb = a.init_params(seed=2), b.init_params(seed=2)
    data = a.random_data(5, 2)
    la, ga = a.loss_and_grad(pa, data)
    lb, gb = b.loss_and_grad(pb, data)
    assert abs(la - lb) < 1e-12
    for k in ga:
        assert np.allclose(ga[k], gb[k], rtol=1e-10, atol=1e-12)


def test_on_a_tape_with_attributes():
    ctx = tapegrad.Context("float64")
    t = ctx.tape()
    x = t.input(np.array([[0.5], [-1.0]]), requires_grad=True)
    y = t.py_softplus(x, 2.0)
    t.backward(t.sum(y))
    assert np.allclose(y.numpy(), np.logaddexp(0, 2 * np.array([[0.5], [-1.0]])))
    assert np.allclose(x.grad, 2 / (1 + np.exp(-2 * np.array([[0.5], [-1.0]]))))


def test_errors_inside_python_ops_reach_the_caller():
    ctx = tapegrad.Context("float64")
    t = ctx.tape()
    a = t.input(np.ones((2, 2)))
    with pytest.raises(tapegrad.ShapeError) as e:
        t.py_outer(a, t.input(np.ones((2, 3))))
    assert str(e.value) == "py_outer: outer takes as many columns on each side, given 2 and 3"
    with pytest.raises(IndexError):
        t.py_raises(a)
    with pytest.raises(tapegrad.ArgError) as e:
        tapegrad.register_op("py_sin", sin_fwd, sin_bwd)
    assert str(e.value) == "op_register: an op named 'py_sin' already exists"
    with pytest.raises(tapegrad.ArgError) as e:
        tapegrad.register_op("tanh", sin_fwd, sin_bwd)
    assert str(e.value) == "op_register: an op named 'tanh' already exists"
    with pytest.raises(tapegrad.ArgError):
        tapegrad.register_op("2bad", sin_fwd, sin_bwd)
    with pytest.raises(TypeError):
        tapegrad.register_op("py_no_backward", sin_fwd, None)
    # a wrong result shape is refused, not written
    tapegrad.register_op("py_wrong_shape", lambda xs, a: np.zeros(3), sin_bwd)
    with pytest.raises(ValueError) as e:
        t.py_wrong_shape(a)
    assert str(e.value) == "custom op 'py_wrong_shape': forward's result has shape [3], expected [2, 2]"


def test_an_op_registered_later_reaches_existing_contexts():
    ctx = tapegrad.Context()
    assert not ctx.has_op("py_late")
    tapegrad.register_op("py_late", sin_fwd, sin_bwd)
    assert ctx.has_op("py_late") and "py_late" in tapegrad.registered_ops()


def test_an_exception_in_backward_reaches_loss_and_grad():
    def bad(xs, y, gy, attrs):
        raise RuntimeError("backward broke")
    tapegrad.register_op("py_bad_backward", sin_fwd, bad)
    m = tapegrad.Model("b.yaml", text=MODEL.replace("py_sin", "py_bad_backward"))
    with pytest.raises(RuntimeError, match="backward broke"):
        m.loss_and_grad(m.init_params(), m.random_data(3))


NOISY = """
name: noisy
dims: {n: 3}
params:
  w: {shape: [n], init: uniform(-1, 1)}
inputs:  {x: [n]}
targets: {y: [n]}
step:
  - o = py_sin(w * x)
outputs: [o]
loss: sum(o * o) + 1e5
"""


def test_a_noisy_loss_is_judged_by_the_refined_estimate():
    # 1e5 in each step's loss leaves ~1e-11 of rounding in every evaluation: the 5-point
    # estimate at its default step is too noisy for tol 1e-9, the wider fit is not
    m = tapegrad.Model(text=NOISY, dtype="float64")
    r = m.check(steps=3, tol=1e-9)
    assert r.ok and r.checked == 3 and 0 < r.refined <= 3 and r.unresolved == 0
    assert "%d refined, 0 unresolved" % r.refined in repr(r)
    plain = tapegrad.Model(text=NOISY.replace(" + 1e5", ""), dtype="float64").check(steps=3, tol=1e-9)
    assert plain.ok and plain.refined == 0 and plain.unresolved == 0
