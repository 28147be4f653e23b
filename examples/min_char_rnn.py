"""min-char-rnn (Karpathy's 112 lines) on tapegrad: the model is models/char_rnn.yaml,
the loop is his: 25-character chunks, hprev carried, Adagrad, clipping, samples.
    PYTHONPATH=python /usr/bin/python3 examples/min_char_rnn.py [TEXT] [ITERATIONS]"""
import sys
import numpy as np
import tapegrad

data = open(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/games/fortunes/fortunes").read()
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
chars = sorted(set(data)); V, H, seq_length, learning_rate = len(chars), 100, 25, 1e-1
ix = {ch: i for i, ch in enumerate(chars)}
eye = np.eye(V, dtype=np.float32)
m = tapegrad.Model("models/char_rnn.yaml", dims={"vocab": V, "hidden": H})
P = m.init_params(seed=1)
for k in ("U", "W", "V"):  # his init: randn * 0.01, zero biases
    P[k] = (np.random.default_rng(k.encode()[0]).standard_normal(P[k].shape) * 0.01).astype(np.float32)

def sample(h, seed_ix, n):
    out = []
    for _ in range(n):
        r = m.run(P, x=eye[[seed_ix]], state={"h": h})
        h, z = r.state["h"], r["z"][0].astype(np.float64)
        seed_ix = np.random.choice(V, p=np.exp(z - z.max()) / np.exp(z - z.max()).sum())
        out.append(chars[seed_ix])
    return "".join(out)

mem = np.zeros_like(P.values)  # Adagrad memory, over the flat buffer of every parameter
n, p, smooth_loss = 0, 0, -np.log(1.0 / V) * seq_length
while n < iterations:
    if p + seq_length + 1 >= len(data) or n == 0:
        hprev, p = np.zeros(H, np.float32), 0
    inputs = [ix[ch] for ch in data[p:p + seq_length]]
    targets = [ix[ch] for ch in data[p + 1:p + seq_length + 1]]
    if n % 500 == 0:
        print("----\n%s\n----" % sample(hprev, inputs[0], 200))
    loss, _ = m.loss_and_grad(P, x=eye[inputs], y=eye[targets], state={"h": hprev})
    hprev = m.last_state()["h"]
    smooth_loss = smooth_loss * 0.999 + loss * 0.001
    if n % 500 == 0:
        print("iter %d, loss: %f" % (n, smooth_loss))
    np.clip(P.grads, -5, 5, out=P.grads)  # mitigate exploding gradients
    mem += P.grads * P.grads
    P.values[...] -= learning_rate * P.grads / np.sqrt(mem + 1e-8)  # adagrad update
    p += seq_length; n += 1
