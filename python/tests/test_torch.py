"""from_module: PyTorch's recurrent modules as tapegrad models, same loss, outputs and
gradients (within 2e-4 in float32, 1e-9 in float64).  Skipped without torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tapegrad  # noqa: E402
import tapegrad.torch as tt  # noqa: E402

TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


def close(a, b, tol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    err = np.max(np.abs(a - b) / np.maximum(1, np.abs(b))) if a.size else 0
    assert err <= tol, "%s: %.3g > %.3g" % (what, err, tol)


CASES = [(cls, layers, kw) for cls in ("RNN", "LSTM", "GRU") for layers in (1, 2)
         for kw in ({}, {"batch_first": True, "bias": False})] + [("RNN", 2, {"nonlinearity": "relu"})]


@pytest.mark.parametrize("dt", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,layers,kw", CASES, ids=["%s-%d-%s" % (c, l, "-".join(k) or "default")
                                                      for c, l, k in CASES])
def test_loss_outputs_and_gradients_match_pytorch(cls, layers, kw, dt):
    torch.manual_seed(layers * 10 + len(kw))
    rnn = getattr(torch.nn, cls)(3, 5, num_layers=layers, **kw).to(dt)
    fc = torch.nn.Linear(5, 2).to(dt)
    bf = kw.get("batch_first", False)
    T, B = 7, 4
    x = torch.randn(*((B, T, 3) if bf else (T, B, 3)), dtype=dt)
    y = torch.randn(*((B, T, 2) if bf else (T, B, 2)), dtype=dt)
    out, _ = rnn(x)
    o = fc(out)
    loss = ((o - y) ** 2).sum()
    loss.backward()

    m, p = tt.from_module(rnn, fc)
    assert m.dtype == ("float32" if dt == torch.float32 else "float64") and m.batch_first == bf
    X, Y = tt.steps(x, bf), tt.steps(y, bf)
    assert X.shape == (T, 3, B)
    tol = TOL[dt]
    run = m.run(p, x=X, y=Y)
    close(tt.from_steps(run["o"], bf), o.detach().numpy(), tol, "outputs")
    close(run.loss, loss.item(), tol, "loss")
    l, g = m.loss_and_grad(p, x=X, y=Y)
    close(l, loss.item(), tol, "loss")
    for name, param in list(rnn.named_parameters()) + [("fc_" + k, v) for k, v in fc.named_parameters()]:
        close(g[name], param.grad.numpy(), tol, "d/d" + name)
    # the final states are PyTorch's h_n (and c_n)
    _, hn = rnn(x)
    hn = hn[0] if cls == "LSTM" else hn
    for layer in range(layers):
        close(run.state["h_l%d" % layer].T, hn[layer].detach().numpy(), tol, "h_n")


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_no_readout_initial_states_and_cross_entropy(cls):
    torch.manual_seed(3)
    dt = torch.float64
    rnn = getattr(torch.nn, cls)(2, 4, num_layers=2).to(dt)
    x = torch.randn(5, 3, 2, dtype=dt)
    h0 = torch.randn(2, 3, 4, dtype=dt)
    c0 = torch.randn(2, 3, 4, dtype=dt)
    target = torch.randint(0, 4, (5, 3))
    out, _ = rnn(x, (h0, c0) if cls == "LSTM" else h0)
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, 4), target.reshape(-1), reduction="sum")
    loss.backward()
    m, p = tt.from_module(rnn, loss="cross_entropy")
    assert m.outputs == ["h_l1"]
    state = {"h_l%d" % k: h0[k].numpy().T for k in range(2)}
    if cls == "LSTM":
        state.update({"c_l%d" % k: c0[k].numpy().T for k in range(2)})
    onehot = np.eye(4)[target.numpy()].transpose(0, 2, 1)  # [T, 4, B]
    l, g = m.loss_and_grad(p, x=tt.steps(x), y=onehot, state=state)
    close(l, loss.item(), 1e-9, "loss")
    for name, param in rnn.named_parameters():
        close(g[name], param.grad.numpy(), 1e-9, "d/d" + name)


def test_state_dicts_go_back_and_bad_modules_are_refused():
    rnn, fc = torch.nn.GRU(2, 3), torch.nn.Linear(3, 1)
    m, p = tt.from_module(rnn, fc)
    p["weight_hh_l0"][...] = 0.5
    sd, fsd = tt.state_dict(p, readout=True)
    rnn.load_state_dict(sd)
    fc.load_state_dict(fsd)
    assert (rnn.weight_hh_l0 == 0.5).all()
    assert "h_l0 = (1 - u_l0) * n_l0 + u_l0 * h_l0" in m.source
    with pytest.raises(ValueError, match="bidirectional"):
        tt.from_module(torch.nn.LSTM(2, 3, bidirectional=True))
    with pytest.raises(TypeError, match="nn.RNN, nn.LSTM or nn.GRU"):
        tt.from_module(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="the read-out takes 4 features, the GRU gives 3"):
        tt.from_module(rnn, torch.nn.Linear(4, 1))
    # a float64 module into a float32 model rounds: refused unless asked for
    with pytest.raises(tapegrad.DTypeError):
        tt.from_module(torch.nn.RNN(2, 3).double(), dtype="float32")
    tt.from_module(torch.nn.RNN(2, 3).double(), dtype="float32", casting="same_kind")
