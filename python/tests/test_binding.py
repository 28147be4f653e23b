"""The binding's declarations are the header's, and the tape layer computes what the model does."""
import re

import numpy as np
import pytest

from conftest import DTYPES, ROOT

import tapegrad
from tapegrad import _lib


def declarations(text):
    """function name -> its declaration with comments and spacing normalised."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
    text = re.sub(r"\bTG_API\b", " ", text)  # the export mark (visibility) is no part of a signature
    out = {}
    for m in re.finditer(r"[A-Za-z_][\w\s\*]*?\b(tg_\w+)\s*\(([^;{}]*)\)\s*;", text):
        decl = re.sub(r"\s+", " ", m.group(0)).strip()
        decl = re.sub(r"\s*([(),*\[\]])\s*", r"\1", decl)
        out[m.group(1)] = decl
    return out


def test_every_declaration_of_the_binding_is_the_headers():
    header = declarations((ROOT / "core/tapegrad.h").read_text())
    mine = declarations(_lib.CDEF.replace("TG_REAL", "float"))
    assert len(mine) > 90
    for name, decl in mine.items():
        assert name in header, "%s is not in core/tapegrad.h" % name
        assert decl == header[name], "%s differs from core/tapegrad.h" % name
    # optional ones: when the header has them, as the header has them
    for name, decl in declarations(_lib.OPTIONAL_CDEF).items():
        assert name not in header or decl == header[name], "%s differs from core/tapegrad.h" % name
        assert (name in header) == tapegrad.Context()._L.has(name)


def types(text):
    """typedef'd struct and enum name -> its body, comments and spacing normalised."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out = {}
    for m in re.finditer(r"typedef\s+(?:struct|enum)\s+\w+\s*\{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        body = re.sub(r"\s+", " ", m.group(1)).strip()
        out[m.group(2)] = re.sub(r"\s*([(),*\[\];=])\s*", r"\1", body)
    return out


def test_every_struct_and_enum_of_the_binding_is_the_headers():
    """A field or an enumerator out of step would move every later one: memory, not an error."""
    header = types((ROOT / "core/tapegrad.h").read_text())
    mine = types(_lib.CDEF.replace("TG_REAL", "float"))
    assert len(mine) > 15
    for name, body in mine.items():
        assert name in header, "%s is not in core/tapegrad.h" % name
        assert body == header[name], "%s differs from core/tapegrad.h" % name


def test_the_library_of_each_precision_is_found(dtype):
    ctx = tapegrad.Context(dtype)
    L = ctx._L
    assert L.path.name == ("libtapegrad.so" if dtype == "float32" else "libtapegrad64.so")
    assert L.real_size == np.dtype(dtype).itemsize
    assert "matmul" in ctx.ops() and "affine" in ctx.ops()
    with pytest.raises(ValueError):
        tapegrad.Context("float16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_lectures_rnn_on_a_tape_equals_the_model(dtype):
    """The worked example written op by op, as embedding research code would."""
    m = tapegrad.Model(str(ROOT / "models/elman.yaml"), dtype=dtype)
    mp = m.load_params(str(ROOT / "examples/data/seed-params.yaml"))
    seq = m.load_data(str(ROOT / "examples/data/seed.yaml"))[0]
    want_loss, want = m.loss_and_grad(mp, seq)

    ctx = tapegrad.Context(dtype)
    p = ctx.params({"U": (2, 2), "W": (2, 2), "b": 2, "V": (1, 2), "c": 1})
    for k in p:
        p[k] = mp[k]
    U, W, b, V, c = (p.tensor(k) for k in ("U", "W", "b", "V", "c"))
    tape = ctx.tape()
    h = tape.zeros(2)
    loss = None
    for t in range(3):
        x = tape.input(seq["x"][t, :, 0])
        h = tape.tanh(U @ x + W @ h + b)
        o = tape.tanh(V @ h + c)
        e = tape.squared_error(o, tape.input(seq["y"][t, :, 0]))
        loss = e if loss is None else loss + e
    tape.backward(loss)
    tol = 1e-6 if dtype == "float32" else 1e-14
    assert abs(loss.item() - want_loss) <= tol * abs(want_loss)
    for k in p:
        assert np.allclose(p.grad[k], want[k], rtol=tol, atol=tol)
    assert tape.at(-1).op == "add" and loss.shape == (1, 1)
    assert "squared_error" in tape.dump("text", grads=True)


def test_tape_leaves_ops_and_gradients_as_numpy():
    ctx = tapegrad.Context("float64")
    t = ctx.tape()
    a = t.input(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    s = t.sum(t.scale(t.transpose(a), 2.0, 1.0) * a)  # sum((2 a^T + 1) * a)
    t.backward(s)
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert s.item() == np.sum((2 * A.T + 1) * A)
    assert np.array_equal(a.grad, 2 * A.T + 1 + 2 * A.T)
    assert a.grad is not None and s.op == "sum"
    with pytest.raises(TypeError):
        t.apply("scale", 2.0, a)
    d = t.dump("json", grads=True)
    import json
    assert len(json.loads(d)["nodes"]) == len(t)


def test_dump_of_a_model_in_every_format():
    m = tapegrad.Model(str(ROOT / "models/elman.yaml"))
    p = m.load_params(str(ROOT / "examples/data/seed-params.yaml"))
    seq = m.load_data(str(ROOT / "examples/data/seed.yaml"))[0]
    text = m.dump(p, seq, grads=True)
    assert text.startswith("# tapegrad tape of " + str(ROOT / "models/elman.yaml"))
    assert "h[t=2]" in text
    assert m.dump(p, seq, format="dot").startswith("digraph")
    import json
    j = json.loads(m.dump(p, seq, format="json", fused=True))
    assert any(e["op"] == "affine" for e in j["nodes"])
    with pytest.raises(ValueError):
        m.dump(p, seq, format="svg")
