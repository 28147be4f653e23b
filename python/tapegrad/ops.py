"""Custom ops written in Python, registered in the library's op table.

    def forward(xs, attrs):            # xs: the inputs as 2-D arrays [rows, cols]
        return np.sin(xs[0])
    def backward(xs, y, gy, attrs):    # y: the output, gy: dL/dy
        return [gy * np.cos(xs[0])]    # dL/dx per input (None: no contribution)
    tapegrad.register_op("sin", forward, backward)

After this every new context (and so every Model created afterwards) has the
op: a YAML equation may call sin(x), tapes record it with tape.sin(x).  The
library calls these functions through cffi callbacks, with read-only views of
its memory; the results are copied into the output and added (+=) into the
input gradients.  An exception inside them is raised by the Python call that
entered the library (Model.loss_and_grad, Tape.apply, ...).
"""
import threading

import numpy as np

from . import _lib
from .core import Context, _live, set_pending, view

__all__ = ["register_op", "registered_ops"]

_registry = {}  # name -> _Op, in registration order
_lock = threading.Lock()


class _Op:
    def __init__(self, name, forward, backward, shape, arity, n_attrs):
        self.name = name
        self.forward = forward
        self.backward = backward
        self.shape = shape
        self.arity = arity
        self.n_attrs = n_attrs
        self.specs = {}  # dtype -> (spec, callbacks): kept alive for ever

    def spec(self, L):
        """The tg_op_spec for one precision, its callbacks made once."""
        if L.dtype in self.specs:
            return self.specs[L.dtype][0]
        ffi, lib = L.ffi, L.lib
        op = self

        def inputs(out):
            n = lib.tg_tensor_arity(out)
            xs = []
            for i in range(n):
                t = lib.tg_tensor_input(out, i)
                x = view(None, L, lib.tg_data(t), (lib.tg_rows(t), lib.tg_cols(t)), readonly=True)
                xs.append(x)
            return xs

        def attrs_of(out):
            return tuple(lib.tg_attr(out, k) for k in range(op.n_attrs))

        def fit(what, a, shape):
            a = np.asarray(a)
            if a.shape != shape:
                if a.ndim == 1 and shape[1] == 1 and a.shape[0] == shape[0]:
                    a = a.reshape(shape)
                else:
                    raise ValueError("custom op '%s': %s has shape %s, expected %s"
                                     % (op.name, what, list(a.shape), list(shape)))
            if a.dtype.kind not in "biuf":
                raise TypeError("custom op '%s': %s has dtype %s, not numbers" % (op.name, what, a.dtype))
            return a

        def shape_cb(n, ins, attrs, out, err, err_len):
            try:
                shapes = [(ins[i][0], ins[i][1]) for i in range(n)]
                if op.shape is None:
                    r, c = shapes[0]
                else:
                    r, c = op.shape(shapes, tuple(attrs[k] for k in range(op.n_attrs)))
                out[0], out[1] = int(r), int(c)
                return 0
            except Exception as e:  # a shape the op refuses: the message becomes the library's
                msg = str(e) if isinstance(e, ValueError) else "%s: %s" % (type(e).__name__, e)
                b = msg.encode("utf-8", "replace")[: max(0, err_len - 1)]
                ffi.memmove(err, b + b"\0", len(b) + 1)
                if not isinstance(e, ValueError):
                    set_pending(e)
                return -1

        def forward_cb(out):
            try:
                xs = inputs(out)
                shape = (lib.tg_rows(out), lib.tg_cols(out))
                y = view(None, L, lib.tg_data(out), shape)
                y[...] = fit("forward's result", op.forward(xs, attrs_of(out)), shape)
            except BaseException as e:
                set_pending(e)
                try:  # what was recorded must not look like a result
                    view(None, L, lib.tg_data(out), (lib.tg_rows(out), lib.tg_cols(out)))[...] = np.nan
                except Exception:
                    pass

        def backward_cb(out):
            try:
                xs = inputs(out)
                shape = (lib.tg_rows(out), lib.tg_cols(out))
                y = view(None, L, lib.tg_data(out), shape, readonly=True)
                gy = view(None, L, lib.tg_grad(out), shape, readonly=True)
                gs = op.backward(xs, y, gy, attrs_of(out))
                gs = list(gs) if gs is not None else []
                if len(gs) != len(xs):
                    raise ValueError("custom op '%s': backward returned %d gradients for %d inputs"
                                     % (op.name, len(gs), len(xs)))
                for i, g in enumerate(gs):
                    t = lib.tg_tensor_input(out, i)
                    gp = lib.tg_grad(t)
                    if g is None or gp == ffi.NULL:
                        continue
                    gv = view(None, L, gp, xs[i].shape)
                    gv += fit("backward's gradient %d" % (i + 1), g, xs[i].shape)
            except BaseException as e:
                set_pending(e)

        cbs = [ffi.callback("int(int, const int (*)[2], const double *, int *, char *, size_t)", shape_cb),
               ffi.callback("void(tg_tensor *)", forward_cb)]
        cbs.append(ffi.callback("void(tg_tensor *)", backward_cb))
        name = ffi.new("char[]", op.name.encode())
        spec = ffi.new("tg_op_spec *", {"name": name, "arity": op.arity, "n_attrs": op.n_attrs,
                                        "shape": cbs[0], "forward": cbs[1], "backward": cbs[2]})
        self.specs[L.dtype] = (spec, cbs, name)
        return spec

    def install(self, ctx):
        if ctx.has_op(self.name):
            return
        ctx.check(ctx._L.lib.tg_op_register(ctx._ptr, self.spec(ctx._L)))


def register_op(name, forward, backward, *, shape=None, arity=1, n_attrs=0):
    """Adds an op to every context, existing and future.

    forward(xs, attrs) -> array of the output's shape; backward(xs, y, gy,
    attrs) -> one gradient (or None: nothing) per input, each in that
    input's shape.  Both are required (the library refuses an op without a
    backward: its inputs' gradients would silently stay unset).  shape(in_shapes, attrs) -> (rows, cols),
    raising ValueError with a message for shapes the op refuses; the default
    gives the first input's shape.  A model's static check calls it with a
    stand-in number for the batch B, so a rule must hold for any number of
    columns.  in_shapes and arrays are 2-D: a [n]
    tensor is n x 1.  arity: the number of inputs (-1: any number >= 1);
    n_attrs: numeric attributes (0 to 4), written after the tensors in YAML
    (myop(x, 0.5)) and tape.apply.  Names are unique: registering one again
    raises ArgError; check with tapegrad.registered_ops().
    """
    if not callable(forward) or not callable(backward):
        raise TypeError("forward and backward must be functions")
    with _lock:
        if name in _registry:
            from .errors import ArgError
            raise ArgError("op_register: an op named '%s' already exists" % name)
        op = _Op(name, forward, backward, shape, int(arity), int(n_attrs))
        # the library checks the name, arity and attributes: a scratch context
        # says no before anything is kept
        probe = Context("float32")
        probe.check(probe._L.lib.tg_op_register(probe._ptr, op.spec(probe._L)))
        _registry[name] = op
        for ctx in list(_live):
            op.install(ctx)
    return op


def registered_ops():
    """Names of the ops registered from Python."""
    return list(_registry)


def install_all(ctx):
    for op in list(_registry.values()):
        op.install(ctx)
