"""Gradients, losses and outputs from Python equal the tool's, bit for bit.

The tool prints JSON numbers with %.9g (float) or %.17g (double): enough
digits to give back the very same binary value, so equality after parsing is
equality of the numbers the library computed.
"""
import numpy as np
import pytest

from conftest import DTYPES, MODELS, ROOT, tool_json

import tapegrad


def yaml_steps(a):
    """[T, rows, B] as a data file's list of steps (exact decimal for each value)."""
    return "[" + ", ".join(
        "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in step) + "]"
        for step in a) + "]"


def yaml_value(m, name, a):
    if name in m.per_sequence:  # one [rows, B] value for the sequence
        return "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in a) + "]"
    if name in m.index:  # a step is one integer per column
        return "[" + ", ".join("[" + ", ".join(str(int(v)) for v in step[0]) + "]" for step in a) + "]"
    return yaml_steps(a)


def write_data(path, seqs, m):
    with open(path, "w") as f:
        for s in seqs:
            f.write("- " + "\n  ".join("%s: %s" % (k, yaml_value(m, k, v)) for k, v in s.items()) + "\n")


def random_seq(m, T, B, rng):
    """Random values for every input and target, as each is declared."""
    out = {}
    for name, rows in list(m.inputs.items()) + list(m.targets.items()):
        if name in m.index:
            out[name] = rng.integers(0, m.index[name], (T, 1, B)).astype(m.dtype)
        elif name in m.per_sequence:
            out[name] = rng.uniform(0, 1, (rows, B)).astype(m.dtype)
        else:
            out[name] = rng.uniform(-1, 1, (T, rows, B)).astype(m.dtype)
    return out


def same(py, js, dtype):
    """py (numpy) equals the tool's JSON numbers exactly."""
    want = np.array(js, dtype=np.float64).astype(dtype)
    assert py.shape == want.shape
    assert py.tobytes() == want.tobytes(), (py, want)


@pytest.mark.parametrize("model", MODELS, ids=[p.stem for p in MODELS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_equal_the_tools_bit_for_bit(model, dtype, tmp_path):
    m = tapegrad.Model(str(model), dtype=dtype)
    rng = np.random.default_rng(7)
    # params: the init of seed 3, then perturbed and saved, so loading is checked too
    p = m.init_params(seed=3)
    for _, v in p.items():
        v += rng.normal(0, 0.1, v.shape).astype(dtype)
    p.save(tmp_path / "p.yaml")
    seqs = [random_seq(m, 5, 3, rng), random_seq(m, 2, 1, rng)]
    write_data(tmp_path / "d.yaml", seqs, m)
    js = tool_json(dtype, "grad", model, "--data", tmp_path / "d.yaml", "--params", tmp_path / "p.yaml",
                   "--format", "json")
    q = m.load_params(tmp_path / "p.yaml")
    for name in p:
        assert q[name].tobytes() == p[name].tobytes()
    loss, grads = m.loss_and_grad(q, seqs)
    assert loss == js["loss"] if dtype == "float64" else np.float32(loss) == np.float32(js["loss"])
    assert list(grads) == list(js["grads"])
    for name in grads:
        same(grads[name], js["grads"][name], dtype)


@pytest.mark.parametrize("model", MODELS, ids=[p.stem for p in MODELS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_init_and_one_sequence_equal_the_tool(model, dtype, tmp_path):
    """The tool's own init (--seed), one sequence given as keyword arrays."""
    m = tapegrad.Model(str(model), dtype=dtype)
    seq = random_seq(m, 4, 2, np.random.default_rng(11))
    write_data(tmp_path / "d.yaml", [seq], m)
    js = tool_json(dtype, "grad", model, "--data", tmp_path / "d.yaml", "--seed", 5, "--format", "json")
    loss, grads = m.loss_and_grad(m.init_params(seed=5), **seq)
    for name in grads:
        same(grads[name], js["grads"][name], dtype)
    same(np.array(loss, dtype), js["loss"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_equal_the_tools_run(dtype, tmp_path):
    m = tapegrad.Model(str(ROOT / "models/lstm.yaml"), dims={"hidden": 3}, dtype=dtype)
    seq = random_seq(m, 4, 2, np.random.default_rng(5))
    write_data(tmp_path / "d.yaml", [seq], m)
    js = tool_json(dtype, "run", ROOT / "models/lstm.yaml", "--dim", "hidden=3", "--data", tmp_path / "d.yaml",
                   "--format", "json")
    out = m.run(m.init_params(seed=1), **seq)
    steps = js["sequences"][0]["steps"]
    assert out["o"].shape == (4, 2, 2)
    for t, step in enumerate(steps):
        same(out["o"][t], step["o"], dtype)
    same(np.array(out.loss, dtype), js["sequences"][0]["loss"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_lectures_example_from_its_files(dtype):
    m = tapegrad.Model(str(ROOT / "models/elman.yaml"), dtype=dtype)
    p = m.load_params(str(ROOT / "examples/data/seed-params.yaml"))
    data = m.load_data(str(ROOT / "examples/data/seed.yaml"))
    js = tool_json(dtype, "grad", ROOT / "models/elman.yaml", "--data", ROOT / "examples/data/seed.yaml",
                   "--params", ROOT / "examples/data/seed-params.yaml", "--format", "json")
    loss, grads = m.loss_and_grad(p, data)
    assert abs(loss - 3.9288670122) < 1e-6  # the slides' hand-computed loss
    for name in grads:
        same(grads[name], js["grads"][name], dtype)
