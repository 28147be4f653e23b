"""PyTorch interop: an nn.RNN, nn.LSTM or nn.GRU (and an optional nn.Linear
read-out) as a tapegrad YAML model with PyTorch's own equations and its
parameters from the state_dict.

    rnn = torch.nn.LSTM(3, 8, num_layers=2); fc = torch.nn.Linear(8, 2)
    m, p = tapegrad.torch.from_module(rnn, fc)
    X = tapegrad.torch.steps(x)               # torch [T, B, 3] -> numpy [T, 3, B]
    loss, grads = m.loss_and_grad(p, x=X, y=tapegrad.torch.steps(y))

torch is needed only to read the modules: importing tapegrad never imports
it.  The equations, per layer l and step t (x is layer l-1's h at l > 0):

    RNN   h = tanh(W_ih x + b_ih + W_hh h + b_hh)          (or relu)
    LSTM  z = W_ih x + b_ih + W_hh h + b_hh, gates stacked i, f, g, o:
          c = sigmoid(f) * c + sigmoid(i) * tanh(g);  h = sigmoid(o) * tanh(c)
    GRU   a = W_ih x + b_ih, b = W_hh h + b_hh, stacked r, z, n:
          r = sigmoid(a_r + b_r);  z = sigmoid(a_z + b_z)
          n = tanh(a_n + r * b_n);  h = (1 - z) * n + z * h

Parameter names are the state_dict's (weight_ih_l0, ...); the read-out's are
fc_weight and fc_bias.  States are h_l0, h_l1, ... (and c_l0, ... for the
LSTM), zero at the start as in PyTorch.
"""
import numpy as np

from .model import Model

__all__ = ["from_module", "to_yaml", "steps", "from_steps", "state_dict"]


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("tapegrad.torch needs PyTorch (Debian: apt-get install python3-torch)") from e
    return torch


def _describe(module, readout):
    torch = _torch()
    nn = torch.nn
    if isinstance(module, nn.LSTM):
        kind = "lstm"
    elif isinstance(module, nn.GRU):
        kind = "gru"
    elif isinstance(module, nn.RNN):
        kind = "rnn"
    else:
        raise TypeError("from_module takes nn.RNN, nn.LSTM or nn.GRU, given %s" % type(module).__name__)
    if module.bidirectional:
        raise ValueError("bidirectional recurrent modules are not supported")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM with proj_size is not supported")
    if readout is not None and not isinstance(readout, nn.Linear):
        raise TypeError("the read-out must be an nn.Linear, given %s" % type(readout).__name__)
    if readout is not None and readout.in_features != module.hidden_size:
        raise ValueError("the read-out takes %d features, the %s gives %d"
                         % (readout.in_features, kind.upper(), module.hidden_size))
    act = "tanh"
    if kind == "rnn":
        act = module.nonlinearity
        if act not in ("tanh", "relu"):
            raise ValueError("nonlinearity %r" % act)
    return kind, act


def to_yaml(module, readout=None, *, loss="squared_error", name=None):
    """The YAML model text for module (and readout): see the module's docstring.

    loss: "squared_error" (sum over steps, items and units of (o - y)^2),
    "cross_entropy" (softmax cross-entropy of the read-out against target
    probabilities y, summed) or None (no loss, no targets).
    """
    kind, act = _describe(module, readout)
    L, H, I = module.num_layers, module.hidden_size, module.input_size
    bias = module.bias
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    out_rows = readout.out_features if readout is not None else H
    y = []
    y.append("name: %s" % (name or "torch_" + kind))
    y.append("description: PyTorch nn.%s (%d layer%s%s)%s, by tapegrad.torch.from_module" % (
        {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind], L, "" if L == 1 else "s",
        "" if bias else ", bias=False", " and an nn.Linear read-out" if readout is not None else ""))
    y.append("dims: {input: %d, hidden: %d, output: %d}" % (I, H, out_rows))
    y.append("params:")
    for l in range(L):
        inp = "input" if l == 0 else "hidden"
        y.append("  weight_ih_l%d: [%s, %s]" % (l, "%d * hidden" % gates if gates > 1 else "hidden", inp))
        y.append("  weight_hh_l%d: [%s, hidden]" % (l, "%d * hidden" % gates if gates > 1 else "hidden"))
        if bias:
            y.append("  bias_ih_l%d: [%s]" % (l, "%d * hidden" % gates if gates > 1 else "hidden"))
            y.append("  bias_hh_l%d: [%s]" % (l, "%d * hidden" % gates if gates > 1 else "hidden"))
    if readout is not None:
        y.append("  fc_weight: [output, hidden]")
        if readout.bias is not None:
            y.append("  fc_bias: [output]")
    y.append("inputs: {x: [input]}")
    if loss is not None:
        y.append("targets: {y: [output]}")
    y.append("state:")
    for l in range(L):
        y.append("  h_l%d: [hidden]" % l)
        if kind == "lstm":
            y.append("  c_l%d: [hidden]" % l)
    y.append("step:")
    for l in range(L):
        x = "x" if l == 0 else "h_l%d" % (l - 1)
        bi = " + bias_ih_l%d" % l if bias else ""
        bh = " + bias_hh_l%d" % l if bias else ""
        if kind == "rnn":
            y.append("  - h_l%d = %s(weight_ih_l%d @ %s%s + weight_hh_l%d @ h_l%d%s)" % (l, act, l, x, bi, l, l, bh))
        elif kind == "lstm":
            y.append("  - z_l%d = weight_ih_l%d @ %s%s + weight_hh_l%d @ h_l%d%s" % (l, l, x, bi, l, l, bh))
            for k, g in enumerate("ifgo"):
                f = "tanh" if g == "g" else "sigmoid"
                y.append("  - %s_l%d = %s(slice(z_l%d, %d * hidden, hidden))" % (g, l, f, l, k))
            y.append("  - c_l%d = f_l%d * c_l%d + i_l%d * g_l%d" % (l, l, l, l, l))
            y.append("  - h_l%d = o_l%d * tanh(c_l%d)" % (l, l, l))
        else:
            y.append("  - a_l%d = weight_ih_l%d @ %s%s" % (l, l, x, bi))
            y.append("  - b_l%d = weight_hh_l%d @ h_l%d%s" % (l, l, l, bh))
            y.append("  - r_l%d = sigmoid(slice(a_l%d, 0, hidden) + slice(b_l%d, 0, hidden))" % (l, l, l))
            y.append("  - u_l%d = sigmoid(slice(a_l%d, hidden, hidden) + slice(b_l%d, hidden, hidden))" % (l, l, l))
            y.append("  - n_l%d = tanh(slice(a_l%d, 2 * hidden, hidden) + r_l%d * slice(b_l%d, 2 * hidden, hidden))"
                     % (l, l, l, l))
            y.append("  - h_l%d = (1 - u_l%d) * n_l%d + u_l%d * h_l%d" % (l, l, l, l, l))
    top = "h_l%d" % (L - 1)
    if readout is not None:
        y.append("  - o = fc_weight @ %s%s" % (top, " + fc_bias" if readout.bias is not None else ""))
        out = "o"
    else:
        out = top
    y.append("outputs: [%s]" % out)
    if loss == "squared_error":
        y.append("loss: squared_error(%s, y)" % out)
    elif loss == "cross_entropy":
        y.append("loss: softmax_cross_entropy(%s, y)" % out)
    elif loss is not None:
        raise ValueError("loss must be 'squared_error', 'cross_entropy' or None, not %r" % (loss,))
    return "\n".join(y) + "\n"


def from_module(module, readout=None, *, dtype=None, loss="squared_error", name=None, **model_kw):
    """(Model, Params) equal to module followed by readout, params copied from state_dicts.

    dtype: "float32" or "float64"; default: the module's parameters' dtype.
    model.source holds the YAML text.  Other keywords go to tapegrad.Model.
    """
    torch = _torch()
    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if readout is not None:
        for k, v in readout.state_dict().items():
            sd["fc_" + k] = v.detach().cpu()
    if dtype is None:
        dtype = {torch.float32: "float32", torch.float64: "float64"}.get(next(iter(sd.values())).dtype)
        if dtype is None:
            raise ValueError("the module's parameters are %s: give dtype='float32' or 'float64'"
                             % next(iter(sd.values())).dtype)
    text = to_yaml(module, readout, loss=loss, name=name)
    m = Model("<%s>" % (name or type(module).__name__), text=text, dtype=dtype, **model_kw)
    m.source = text
    m.batch_first = bool(module.batch_first)
    p = m.init_params()
    if set(sd) != set(p):
        raise ValueError("state_dict keys %s do not match the model's parameters %s" % (sorted(sd), sorted(p)))
    for k, v in sd.items():
        p[k] = v.numpy()
    return m, p


def steps(x, batch_first=False):
    """A PyTorch sequence ([T, B, n], or [B, T, n] when batch_first, or
    unbatched [T, n]) as tapegrad's layout [T, n, B] (or [T, n])."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 2:
        return np.ascontiguousarray(x)
    if batch_first:
        x = x.transpose(1, 0, 2)
    return np.ascontiguousarray(x.transpose(0, 2, 1))


def from_steps(a, batch_first=False):
    """tapegrad's [T, n, B] (or [T, n]) back as PyTorch's layout (a numpy array)."""
    a = np.asarray(a)
    if a.ndim == 2:
        return a
    a = a.transpose(0, 2, 1)
    return np.ascontiguousarray(a.transpose(1, 0, 2) if batch_first else a)


def state_dict(p, readout=False):
    """Params back as PyTorch state_dicts of torch tensors (copies): the recurrent
    module's, and with readout=True also the Linear's, as a pair."""
    torch = _torch()
    rnn = {k: torch.from_numpy(v.copy()) for k, v in p.items() if not k.startswith("fc_")}
    if not readout:
        return rnn
    return rnn, {k[3:]: torch.from_numpy(v.copy()) for k, v in p.items() if k.startswith("fc_")}
