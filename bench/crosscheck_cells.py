#!/usr/bin/env python3
"""crosscheck_cells.py - cells from papers that are not in models/, written in
the cell language exactly as models/README.md gives its forms, against the
same cells written in PyTorch (float64 autograd).  For each cell the script
writes the model, random parameters (a params file) and random data (a data
file), runs `tapegrad grad --format json` of the double and the float build,
computes the loss and every parameter's gradient in PyTorch, and prints the
worst differences, scaled as `tapegrad check` scales:
|a - b| / max(1, |a|, |b|).

PyTorch is not needed to build or test tapegrad; this script is a one-off
cross-check (Debian: apt-get install python3-torch, then run it with the
system /usr/bin/python3).

usage: /usr/bin/python3 bench/crosscheck_cells.py [--root DIR] [--steps T] [--batch B]
exit status 1 if a difference exceeds 1e-9 (double) or 2e-4 (float).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

# ---- the cells -------------------------------------------------------------------------
CELLS = {}

# IndRNN (Li, Li, Cook, Zhu & Gao 2018, "Independently recurrent neural network
# (IndRNN): building a longer and deeper RNN", CVPR): each unit recurs on
# itself only, h = relu(W x + u * h + b); two layers; a classifier read once
# per sequence from the last state against a class index given per sequence.
CELLS["indrnn_classifier"] = dict(
    yaml="""
name: indrnn_classifier
dims: {input: 3, hidden: 5, classes: 4}
params:
  W1: [hidden, input]
  u1: {shape: [hidden], init: uniform(0, 1)}
  b1: [hidden]
  W2: [hidden, hidden]
  u2: {shape: [hidden], init: uniform(0, 1)}
  b2: [hidden]
  V:  [classes, hidden]
  c:  [classes]
inputs:  {x: [input]}
targets: {y: {index: classes, per: sequence}}
state:   {h1: [hidden], h2: [hidden]}
step:
  - h1 = max(W1 @ x + u1 * h1 + b1, 0)
  - h2 = max(W2 @ h1 + u2 * h2 + b2, 0)
final:
  - z = V @ final(h2) + c
loss: softmax_cross_entropy(z, y)
""",
    shapes=dict(W1=(5, 3), u1=(5,), b1=(5,), W2=(5, 5), u2=(5,), b2=(5,), V=(4, 5), c=(4,)),
    inputs=dict(x=3), targets=dict(y=("index-seq", 4)),
)


def indrnn_torch(P, D, T, B):
    h1 = torch.zeros(5, B)
    h2 = torch.zeros(5, B)
    for t in range(T):
        x = D["x"][t]
        h1 = torch.clamp(P["W1"] @ x + P["u1"][:, None] * h1 + P["b1"][:, None], min=0)
        h2 = torch.clamp(P["W2"] @ h1 + P["u2"][:, None] * h2 + P["b2"][:, None], min=0)
    z = P["V"] @ h2 + P["c"][:, None]
    y = D["y"].long().reshape(-1)
    return torch.nn.functional.cross_entropy(z.T, y, reduction="sum")


CELLS["indrnn_classifier"]["torch"] = indrnn_torch

# Liquid time-constant network (Hasani, Lechner, Amini, Rus & Grosu 2021,
# "Liquid time-constant networks", AAAI), its fused semi-implicit Euler step
#   h(t) = (h(t-1) + dt f A) / (1 + dt (1 / tau + f)),  f = sigmoid(W h + U x + b)
# with tau = softplus(rho) + 0.5 kept positive, dt a number, A learned.
CELLS["ltc"] = dict(
    yaml="""
name: ltc
dims: {input: 2, hidden: 4, output: 2}
params:
  W:   [hidden, hidden]
  U:   [hidden, input]
  b:   [hidden]
  A:   {shape: [hidden], init: normal(0, 1)}
  rho: {shape: [hidden], init: normal(0, 1)}
  V:   [output, hidden]
  c:   [output]
inputs:  {x: [input]}
targets: {y: [output]}
state:   {h: [hidden]}
step:
  - tau = softplus(rho) + 0.5
  - f = sigmoid(W @ h + U @ x + b)
  - h = (h + 0.3 * f * A) / (1 + 0.3 * (1 / tau + f))
  - o = V @ h + c
outputs: [o]
loss: squared_error(o, y)
""",
    shapes=dict(W=(4, 4), U=(4, 2), b=(4,), A=(4,), rho=(4,), V=(2, 4), c=(2,)),
    inputs=dict(x=2), targets=dict(y=2),
)


def ltc_torch(P, D, T, B):
    h = torch.zeros(4, B)
    tau = torch.nn.functional.softplus(P["rho"]) + 0.5
    loss = 0
    for t in range(T):
        f = torch.sigmoid(P["W"] @ h + P["U"] @ D["x"][t] + P["b"][:, None])
        h = (h + 0.3 * f * P["A"][:, None]) / (1 + 0.3 * (1 / tau[:, None] + f))
        o = P["V"] @ h + P["c"][:, None]
        loss = loss + ((o - D["y"][t]) ** 2).sum()
    return loss


CELLS["ltc"]["torch"] = ltc_torch

# A bidirectional GRU tagger (Cho et al. 2014 GRU; Schuster & Paliwal 1997
# bidirectional) over an embedding table, with RMSNorm (Zhang & Sennrich 2019,
# "Root mean square layer normalization", NeurIPS) on the concatenated
# states: r = v / sqrt(mean(v * v, 0) + eps) * g, a tag per step.
CELLS["bigru_tagger"] = dict(
    yaml="""
name: bigru_tagger
dims: {vocab: 6, embed: 3, hidden: 4, tags: 3}
params:
  E:  [vocab, embed]
  Wz: [hidden, embed + hidden]
  Wr: [hidden, embed + hidden]
  Wh: [hidden, embed + hidden]
  Vz: [hidden, embed + hidden]
  Vr: [hidden, embed + hidden]
  Vh: [hidden, embed + hidden]
  g:  {shape: [2 * hidden], init: ones}
  O:  [tags, 2 * hidden]
  c:  [tags]
inputs:  {w: {index: vocab}}
targets: {tag: {index: tags}}
state:
  f: [hidden]
  b: {shape: [hidden], direction: reverse}
step:
  - e = embed(E, w)
  - zf = sigmoid(Wz @ concat(e, f))
  - rf = sigmoid(Wr @ concat(e, f))
  - f = (1 - zf) * f + zf * tanh(Wh @ concat(e, rf * f))
  - zb = sigmoid(Vz @ concat(e, b))
  - rb = sigmoid(Vr @ concat(e, b))
  - b = (1 - zb) * b + zb * tanh(Vh @ concat(e, rb * b))
  - v = concat(f, b)
  - r = v / sqrt(mean(v * v, 0) + 1e-6) * g
  - z = O @ r + c
outputs: [z]
loss: softmax_cross_entropy(z, tag)
""",
    shapes=dict(E=(6, 3), Wz=(4, 7), Wr=(4, 7), Wh=(4, 7), Vz=(4, 7), Vr=(4, 7), Vh=(4, 7), g=(8,), O=(3, 8),
                c=(3,)),
    inputs=dict(w=("index", 6)), targets=dict(tag=("index", 3)),
)


def bigru_torch(P, D, T, B):
    idx = [D["w"][t].long().reshape(-1) for t in range(T)]
    e = [P["E"][i].T for i in idx]  # [embed, B]

    def gru(h, x, Wz, Wr, Wh):
        z = torch.sigmoid(Wz @ torch.cat([x, h]))
        r = torch.sigmoid(Wr @ torch.cat([x, h]))
        return (1 - z) * h + z * torch.tanh(Wh @ torch.cat([x, r * h]))

    fs, bs = [None] * T, [None] * T
    h = torch.zeros(4, B)
    for t in range(T):
        h = gru(h, e[t], P["Wz"], P["Wr"], P["Wh"])
        fs[t] = h
    h = torch.zeros(4, B)
    for t in reversed(range(T)):
        h = gru(h, e[t], P["Vz"], P["Vr"], P["Vh"])
        bs[t] = h
    loss = 0
    for t in range(T):
        v = torch.cat([fs[t], bs[t]])
        r = v / torch.sqrt((v * v).mean(0, keepdim=True) + 1e-6) * P["g"][:, None]
        z = P["O"] @ r + P["c"][:, None]
        loss = loss + torch.nn.functional.cross_entropy(z.T, D["tag"][t].long().reshape(-1), reduction="sum")
    return loss


CELLS["bigru_tagger"]["torch"] = bigru_torch


# ---- files ------------------------------------------------------------------------------
def fmt(v):
    return repr(float(v))


def params_yaml(P):
    out = []
    for k, v in P.items():
        a = v.detach().numpy()
        if a.ndim == 1:
            out.append("%s: [%s]" % (k, ", ".join(fmt(x) for x in a)))
        else:
            out.append("%s: [%s]" % (k, ", ".join("[" + ", ".join(fmt(x) for x in row) + "]" for row in a)))
    return "\n".join(out) + "\n"


def block(a):
    """[rows, B] as nested lists"""
    return "[" + ", ".join("[" + ", ".join(fmt(x) for x in row) + "]" for row in a) + "]"


def make_data(cell, rng, T, B):
    D, text = {}, []
    for name, spec in list(cell["inputs"].items()) + list(cell["targets"].items()):
        if isinstance(spec, tuple) and spec[0] == "index-seq":
            a = rng.integers(0, spec[1], size=(1, B)).astype(float)
            D[name] = torch.tensor(a)
            text.append("%s: %s" % (name, block(a)))
            continue
        if isinstance(spec, tuple):  # an index per step
            a = rng.integers(0, spec[1], size=(T, 1, B)).astype(float)
        else:
            a = rng.uniform(-1, 1, size=(T, spec, B))
        D[name] = torch.tensor(a)
        text.append("%s: [%s]" % (name, ", ".join(block(s) for s in a)))
    return D, "\n".join(text) + "\n"


def numbers(j):
    out = [j["loss"]]
    for k, v in j["grads"].items():
        out.extend(np.asarray(v, dtype=float).reshape(-1).tolist())
    return np.array(out)


def scaled(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1, np.maximum(np.abs(a), np.abs(b)))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    tools = {r: os.path.join(a.root, "build", r, "tapegrad") for r in ("double", "float")}
    rng = np.random.default_rng(a.seed)
    worst = {"double": 0.0, "float": 0.0}
    bad = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, cell in CELLS.items():
            P = {k: torch.tensor(rng.normal(0, 0.5, size=s), requires_grad=True) for k, s in cell["shapes"].items()}
            D, data = make_data(cell, rng, a.steps, a.batch)
            paths = {k: os.path.join(tmp, "%s.%s.yaml" % (name, k)) for k in ("model", "params", "data")}
            open(paths["model"], "w").write(cell["yaml"])
            open(paths["params"], "w").write(params_yaml(P))
            open(paths["data"], "w").write(data)
            loss = cell["torch"](P, D, a.steps, a.batch)
            loss.backward()
            ref = np.array([loss.item()] + [x for k in cell["shapes"] for x in P[k].grad.numpy().reshape(-1)])
            for real, tool in tools.items():
                if not os.access(tool, os.X_OK):
                    print("%s: %s is not built; skipped" % (name, tool))
                    continue
                r = subprocess.run([tool, "grad", paths["model"], "--data", paths["data"], "--params",
                                    paths["params"], "--format", "json"], capture_output=True, text=True)
                if r.returncode:
                    print("%s (%s): tapegrad failed: %s" % (name, real, r.stderr.strip()))
                    bad = True
                    continue
                got = numbers(json.loads(r.stdout))
                err = scaled(got, ref)
                tol = 1e-9 if real == "double" else 2e-4
                worst[real] = max(worst[real], err)
                bad |= err > tol
                print("%-18s %-6s loss %.12g (torch %.12g)  worst scaled difference %.3e over %d numbers%s" %
                      (name, real, got[0], ref[0], err, len(ref), "" if err <= tol else "  EXCEEDS %g" % tol))
    print("worst: double %.3e (bar 1e-9), float %.3e (bar 2e-4); %d steps, batch %d" %
          (worst["double"], worst["float"], a.steps, a.batch))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
