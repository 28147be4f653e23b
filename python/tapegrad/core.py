"""Contexts, tapes, tensors and parameters: the C API's objects for Python.

Ownership follows the C API: every object hangs off a context.  Each Python
wrapper holds a strong reference to the Context it was made from, so a
context outlives everything made from it; when the context itself goes, it
first frees whatever of its children is still alive (in reverse order of
creation), so even a garbage-collected reference cycle frees in a safe order.
Numpy arrays that view C memory hold a reference to the object owning it.
"""
import numbers
import threading
import weakref
from collections.abc import Mapping

import numpy as np

from . import _lib
from .errors import DTypeError, Error, NoMemoryError, error_class

__all__ = ["Context", "Tape", "Tensor", "Params", "check_array_dtype"]

DTYPES = ("float32", "float64")
CASTINGS = ("safe", "same_kind")


# ---- errors raised inside callbacks (custom ops, gradient checks) ------------------------
# A C library cannot carry a Python exception through its frames: a callback
# stores it here and the Python call that entered the library raises it.
_pending = threading.local()


def set_pending(exc):
    if getattr(_pending, "exc", None) is None:
        _pending.exc = exc


def take_pending():
    exc = getattr(_pending, "exc", None)
    _pending.exc = None
    return exc


def raise_pending():
    exc = take_pending()
    if exc is not None:
        raise exc


# ---- ownership ------------------------------------------------------------------------------
class _Owner:
    """What a context's finalizer needs: the library, the pointer, the children."""

    def __init__(self, L, ptr):
        self.L = L
        self.ptr = ptr
        self.children = []

    def add(self, obj, fn, *args):
        f = weakref.finalize(obj, fn, *args)
        f.atexit = False  # at exit the OS takes the memory; nothing may run after a free
        if len(self.children) > 64 and len(self.children) > 2 * sum(c.alive for c in self.children):
            self.children = [c for c in self.children if c.alive]
        self.children.append(f)
        return f

    def close(self):
        for f in reversed(self.children):
            f()
        self.children = []
        self.L.lib.tg_ctx_free(self.ptr)


def _dtype_name(dtype):
    name = np.dtype(dtype).name if dtype is not None else None
    if name not in DTYPES:
        raise ValueError("dtype must be 'float32' or 'float64', not %r" % (dtype,))
    return name


def check_array_dtype(name, a, dtype, casting):
    """a as a C-contiguous array of dtype, never losing precision unless casting allows it."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype != dtype:
        if a.dtype.kind not in "biuf":
            raise DTypeError("%s: expected numbers of dtype %s, given dtype %s" % (name, dtype, a.dtype))
        if not np.can_cast(a.dtype, dtype, casting):
            raise DTypeError(
                "%s: given dtype %s, the model's dtype is %s: converting could lose precision (pass an array of "
                "dtype %s, or create the model with casting='same_kind' to round to nearest)"
                % (name, a.dtype, dtype, dtype))
        a = a.astype(dtype)
    elif not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


class Context:
    """A tg_ctx: allocator, op table, random generator, last error.

    dtype "float32" uses libtapegrad.so, "float64" libtapegrad64.so.
    casting: how arrays of another dtype are taken: "safe" (default) accepts
    only exact conversions (float32 into float64, small integers) and raises
    DTypeError otherwise; "same_kind" also rounds float64 to float32.
    threads: tg_ctx_set_threads (products of about 64^3 and up are split).
    """

    def __init__(self, dtype="float32", *, casting="safe", threads=1):
        self.dtype = _dtype_name(dtype)
        if casting not in CASTINGS:
            raise ValueError("casting must be 'safe' or 'same_kind', not %r" % (casting,))
        self.casting = casting
        L = self._L = _lib.load(self.dtype)
        ptr = L.lib.tg_ctx_new_checked(L.ffi.NULL, L.real_size)
        if ptr == L.ffi.NULL:
            raise NoMemoryError("cannot create a context")
        self._ptr = ptr
        self._owner = _Owner(L, ptr)
        fin = weakref.finalize(self, self._owner.close)
        fin.atexit = False
        if threads != 1:
            self.threads = threads
        from . import ops  # registered custom ops join every new context
        ops.install_all(self)
        _live.add(self)

    @property
    def threads(self):
        return self._L.lib.tg_ctx_threads(self._ptr)

    @threads.setter
    def threads(self, n):
        self.check(self._L.lib.tg_ctx_set_threads(self._ptr, int(n)))

    def seed(self, seed):
        self._L.lib.tg_seed(self._ptr, int(seed))

    def ops(self):
        """Names of every op in this context's table (built-ins first)."""
        lib, ffi = self._L.lib, self._L.ffi
        return [ffi.string(lib.tg_op_name(self._ptr, i)).decode() for i in range(lib.tg_op_count(self._ptr))]

    def has_op(self, name):
        return bool(self._L.lib.tg_op_exists(self._ptr, name.encode()))

    def tape(self, **kw):
        return Tape(self, **kw)

    def params(self, shapes=None):
        """Empty parameters, or one per name: shape in `shapes` (zeros)."""
        p = Params(self, self._new_params())
        for name, shape in (shapes or {}).items():
            p.add(name, shape)
        return p

    # -- errors
    def error(self, status=None, cause=None):
        """The exception for the context's last error (status: what the call returned)."""
        lib, ffi = self._L.lib, self._L.ffi
        code = int(status) if status else int(lib.tg_status_last(self._ptr))
        msg = ffi.string(lib.tg_errmsg(self._ptr)).decode("utf-8", "replace")
        if not code:
            code = 3
        if not msg:
            msg = ffi.string(lib.tg_status_name(code)).decode()
        lib.tg_clear_error(self._ptr)
        exc = error_class(code)(msg)
        if cause is not None:
            exc.__cause__ = cause
        return exc

    def check(self, status):
        """Raises the pending callback exception or the library's error."""
        pend = take_pending()
        if status:
            raise self.error(status, pend)
        if pend is not None:
            raise pend

    def fail(self):
        """For a call that returned NULL."""
        raise self.error(None, take_pending())

    def _new_params(self):
        ptr = self._L.lib.tg_params_new(self._ptr)
        if ptr == self._L.ffi.NULL:
            self.fail()
        return ptr


_live = weakref.WeakSet()


# ---- numpy views of C memory ----------------------------------------------------------------
class _Buffer:
    """An object numpy can view through __array_interface__; it keeps `owner` alive."""
    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner, address, shape, typestr, readonly=False):
        self.owner = owner
        self.__array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                    "data": (address, readonly), "version": 3}


def _address(ffi, ptr):
    return int(ffi.cast("uintptr_t", ptr))


def view(owner, L, ptr, shape, readonly=False):
    """A numpy array over C memory at ptr (tg_real elements), keeping owner alive."""
    typestr = "<f4" if L.dtype == "float32" else "<f8"
    return np.asarray(_Buffer(owner, _address(L.ffi, ptr), shape, typestr, readonly))


# ---- parameters ---------------------------------------------------------------------------------
class _Handle:
    """Keeps a context alive; its finalizer frees the C object it stands for."""
    __slots__ = ("ctx", "__weakref__")

    def __init__(self, ctx):
        self.ctx = ctx


class Params(Mapping):
    """Named parameters in one contiguous buffer (a tg_params).

    p["W"] is a numpy array viewing the library's memory: writes go through,
    nothing is copied.  p.values and p.grads are the flat buffers; p.grad is
    the mapping of gradient views.  p["W"] = w copies w in after checking its
    shape and dtype (the model's casting rule), whereas p["W"][...] = w is
    numpy's own assignment, which rounds a float64 w into float32 silently.
    """

    def __init__(self, ctx, ptr, model=None):
        self._ctx = ctx
        self._L = ctx._L
        self._ptr = ptr
        self._model = model
        # numpy arrays take no part in garbage collection, so views that kept
        # this object alive would make an uncollectable cycle through the view
        # cache: they keep a handle that owns the C memory instead
        self._h = _Handle(ctx)
        ctx._owner.add(self._h, ctx._L.lib.tg_params_free, ptr)
        self._views = None
        self._grad = None
        self._checked = False

    # -- layout
    def _layout(self):
        if self._views is None:
            lib, ffi = self._L.lib, self._L.ffi
            n = lib.tg_params_count(self._ptr)
            total = lib.tg_params_total(self._ptr)
            vals, grads = lib.tg_params_values(self._ptr), lib.tg_params_grads(self._ptr)
            views, gviews, shapes = {}, {}, {}
            for i in range(n):
                t = lib.tg_params_at(self._ptr, i)
                name = ffi.string(lib.tg_params_name(self._ptr, i)).decode()
                shape = (lib.tg_rows(t),) if lib.tg_ndim(t) == 1 else (lib.tg_rows(t), lib.tg_cols(t))
                off = lib.tg_data(t) - vals
                shapes[name] = shape
                views[name] = view(self._h, self._L, vals + off, shape)
                gviews[name] = view(self._h, self._L, grads + off, shape)
            self._shapes = shapes
            self._views = views
            self._grad = Grads(gviews)
            self._flat = view(self._h, self._L, vals, (total,)) if total else np.zeros(0, self._L.dtype)
            self._gflat = view(self._h, self._L, grads, (total,)) if total else np.zeros(0, self._L.dtype)
        return self._views

    def add(self, name, shape):
        """A new zero parameter of shape (n,) or (rows, cols) (before any view is taken:
        adding may move the buffers)."""
        if self._views is not None:
            raise Error("add every parameter before taking views: adding may move the buffers")
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if len(shape) not in (1, 2):
            raise ValueError("%s: a parameter has 1 or 2 dimensions, given shape %s" % (name, list(shape)))
        t = self._L.lib.tg_params_add(self._ptr, name.encode(), shape[0], shape[1] if len(shape) == 2 else 0)
        if t == self._L.ffi.NULL:
            self._ctx.fail()

    # -- mapping
    def __getitem__(self, name):
        return self._layout()[name]

    def __setitem__(self, name, value):
        v = self._layout()[name]
        a = check_array_dtype(name, value, v.dtype, self._ctx.casting)
        if a.shape != v.shape:
            raise ValueError("%s: expected shape %s, given %s" % (name, list(v.shape), list(a.shape)))
        v[...] = a

    def __iter__(self):
        return iter(self._layout())

    def __len__(self):
        return self._L.lib.tg_params_count(self._ptr)

    def __repr__(self):
        return "<tapegrad.Params %s %s>" % (self._L.dtype, ", ".join(
            "%s %s" % (k, list(v.shape)) for k, v in self._layout().items()))

    @property
    def shapes(self):
        self._layout()
        return dict(self._shapes)

    @property
    def values(self):
        """Every value, one flat array viewing the contiguous buffer."""
        self._layout()
        return self._flat

    @property
    def grads(self):
        """Every gradient, one flat array viewing the contiguous buffer."""
        self._layout()
        return self._gflat

    @property
    def grad(self):
        """name -> numpy view of that parameter's gradient."""
        self._layout()
        return self._grad

    @property
    def dtype(self):
        return self._L.dtype

    def zero_grad(self):
        self._L.lib.tg_params_zero_grad(self._ptr)

    def clip_grad(self, max_norm):
        """Global L2 norm of the gradients (before clipping); scales them to max_norm if above."""
        return self._L.lib.tg_params_clip_grad(self._ptr, float(max_norm))

    def update(self, other=(), **kw):
        for k, v in (other.items() if hasattr(other, "items") else other):
            self[k] = v
        for k, v in kw.items():
            self[k] = v

    def to_dict(self):
        """Copies of every value: name -> array."""
        return {k: v.copy() for k, v in self._layout().items()}

    def tensor(self, name):
        """The parameter as a Tensor, to use in tape ops."""
        t = self._L.lib.tg_params_find(self._ptr, name.encode())
        if t == self._L.ffi.NULL:
            raise KeyError(name)
        return Tensor(self, t, None)

    def save(self, path):
        """Writes a params file (YAML, exact round trip); needs the Model these came from."""
        if self._model is None:
            raise Error("these parameters belong to no model: only Model.init_params() and "
                        "Model.load_params() parameters can be saved")
        self._model._save_params(self, path)

    def load(self, path):
        """Overwrites the parameters named in a params file (needs the Model)."""
        if self._model is None:
            raise Error("these parameters belong to no model")
        self._model._load_into(self, path)


class Grads(Mapping):
    """name -> numpy view of a gradient (read and write through)."""

    def __init__(self, views):
        self._views = views

    def __getitem__(self, name):
        return self._views[name]

    def __iter__(self):
        return iter(self._views)

    def __len__(self):
        return len(self._views)

    def __repr__(self):
        return "<tapegrad.Grads %s>" % ", ".join(self._views)

    def to_dict(self):
        return {k: v.copy() for k, v in self._views.items()}


# ---- tapes and tensors ----------------------------------------------------------------------------
class Tape:
    """A tg_tape: record ops, run backward, read values and gradients.

        tape = ctx.tape()
        x = tape.input(np.ones((2, 1), np.float32))
        W = p.tensor("W")
        loss = tape.sum(tape.tanh(W @ x))
        tape.backward(loss)            # p.grad["W"] now holds dloss/dW

    Every op in the context's table is a method: tape.tanh(a), tape.scale(a,
    2.0, 0.0) (tensors first, then the op's numeric attributes), or
    tape.apply("name", *args).  Tensors support @ + - * and unary -.
    Tensors are valid until reset(); using one afterwards raises.
    """

    def __init__(self, ctx, *, detect_anomaly=False, keep_grads=True):
        self._ctx = ctx
        self._L = L = ctx._L
        ptr = L.lib.tg_tape_new(ctx._ptr)
        if ptr == L.ffi.NULL:
            ctx.fail()
        self._ptr = ptr
        ctx._owner.add(self, L.lib.tg_tape_free, ptr)
        self._gen = 0
        self._keep = []  # arrays borrowed by input_ref, until reset
        if detect_anomaly:
            self.detect_anomaly = True
        if not keep_grads:
            L.lib.tg_tape_keep_grads(ptr, 0)
        self._anomaly = bool(detect_anomaly)

    @property
    def ctx(self):
        return self._ctx

    @property
    def detect_anomaly(self):
        return self._anomaly

    @detect_anomaly.setter
    def detect_anomaly(self, on):
        self._anomaly = bool(on)
        self._L.lib.tg_tape_detect_anomaly(self._ptr, int(bool(on)))

    def reset(self):
        """Forgets every entry (keeps the memory); earlier Tensors become invalid."""
        self._L.lib.tg_tape_reset(self._ptr)
        self._gen += 1
        self._keep = []

    def __len__(self):
        return self._L.lib.tg_tape_length(self._ptr)

    def at(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError("tape entry %d of %d" % (i, n))
        return Tensor(self, self._L.lib.tg_tape_at(self._ptr, i % n), self._gen)

    def input(self, data, requires_grad=False, name="input"):
        """A leaf holding a copy of data: shape (n,) is a column [n], (rows, cols) a matrix."""
        a = check_array_dtype(name, data, self._L.dtype, self._ctx.casting)
        if a.ndim == 0:
            a = a.reshape(1, 1)
        if a.ndim not in (1, 2) or a.size == 0:
            raise ValueError("%s: a tensor has 1 or 2 non-empty dimensions, given shape %s"
                             % (name, list(a.shape)))
        rows, cols = (a.shape[0], 0) if a.ndim == 1 else a.shape
        ffi = self._L.ffi
        t = self._L.lib.tg_input(self._ptr, rows, cols, ffi.cast("tg_real *", ffi.from_buffer(a)),
                                 int(bool(requires_grad)))
        if t == ffi.NULL:
            self._ctx.fail()
        return Tensor(self, t, self._gen)

    def zeros(self, shape, requires_grad=False):
        """A leaf of zeros, allocated by the library (no numpy array in between)."""
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if len(shape) not in (1, 2):
            raise ValueError("a tensor has 1 or 2 dimensions, given shape %s" % list(shape))
        t = self._L.lib.tg_input(self._ptr, shape[0], shape[1] if len(shape) == 2 else 0,
                                 self._L.ffi.NULL, int(bool(requires_grad)))
        if t == self._L.ffi.NULL:
            self._ctx.fail()
        return Tensor(self, t, self._gen)

    def apply(self, op, *args):
        """Records op on the given tensors (first) and numeric attributes (after)."""
        tensors, attrs = [], []
        for a in args:
            if isinstance(a, Tensor):
                if attrs:
                    raise TypeError("%s: tensors come before the numeric attributes" % op)
                tensors.append(a._use(self))
            elif isinstance(a, numbers.Real) and not isinstance(a, bool):
                attrs.append(float(a))
            elif isinstance(a, (list, tuple)) and all(isinstance(x, Tensor) for x in a) and not attrs:
                tensors.extend(x._use(self) for x in a)
            else:
                raise TypeError("%s: arguments are Tensors then numbers, given %r" % (op, type(a).__name__))
        ffi, lib = self._L.ffi, self._L.lib
        ins = ffi.new("tg_tensor *[]", tensors) if tensors else ffi.NULL
        at = ffi.new("double[]", attrs) if attrs else ffi.NULL
        t = lib.tg_apply(self._ptr, op.encode(), len(tensors), ins, len(attrs), at)
        if t == ffi.NULL:
            self._ctx.fail()
        raise_pending()
        return Tensor(self, t, self._gen)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        ctx = self.__dict__.get("_ctx")
        if ctx is None or not ctx.has_op(name):
            raise AttributeError("'Tape' has no attribute or op %r" % name)
        return lambda *args: self.apply(name, *args)

    def backward(self, loss):
        """One reverse sweep from the 1x1 loss; gradients add into parameters."""
        st = self._L.lib.tg_backward(self._ptr, loss._use(self))
        self._ctx.check(st)

    def check_finite(self, loss=None):
        """Raises NonFiniteError naming the first NaN/Inf value (or gradient, given loss)."""
        st = self._L.lib.tg_tape_check_finite(self._ptr, loss._use(self) if loss is not None else self._L.ffi.NULL)
        self._ctx.check(st)

    def dump(self, format="text", *, grads=False, fold=False, max_values=0, loss=None, targets=None,
             title=None):
        """The tape as text, JSON or Graphviz DOT (tg_tape_dump), as a string."""
        return dump_tape(self, format, grads=grads, fold=fold, max_values=max_values, loss=loss,
                         targets=targets, title=title)


_FORMATS = {"text": 0, "json": 1, "dot": 2}


def dump_tape(tape, format, *, grads, fold, max_values, loss, targets, title):
    if format not in _FORMATS:
        raise ValueError("format must be 'text', 'json' or 'dot', not %r" % (format,))
    L = tape._L
    ffi, lib, libc = L.ffi, L.lib, L.libc
    keep = []
    opts = ffi.new("tg_dump_opts *")
    opts.grads = int(bool(grads))
    opts.fold = int(bool(fold))
    opts.max_values = int(max_values)
    opts.loss = loss._use(tape) if loss is not None else ffi.NULL
    if targets is not None:
        names = [ffi.new("char[]", t.encode()) for t in targets]
        keep.append(names)
        arr = ffi.new("const char *[]", names + [ffi.NULL])
        keep.append(arr)
        opts.targets = arr
    if title is not None:
        tt = ffi.new("char[]", str(title).encode())
        keep.append(tt)
        opts.title = tt
    return with_memstream(L, lambda f: tape._ctx.check(lib.tg_tape_dump(tape._ptr, f, _FORMATS[format], opts)))


def with_memstream(L, fn):
    """Runs fn(FILE *) on an in-memory stream and returns what it wrote."""
    ffi, libc = L.ffi, L.libc
    buf = ffi.new("char **")
    size = ffi.new("size_t *")
    f = libc.open_memstream(buf, size)
    if f == ffi.NULL:
        raise NoMemoryError("open_memstream failed")
    try:
        fn(f)
    finally:
        libc.fclose(f)
        text = ffi.string(buf[0], size[0]).decode("utf-8", "replace") if buf[0] != ffi.NULL else ""
        libc.free(buf[0])
    return text


class Tensor:
    """A tape entry or a parameter (read-only view of a tg_tensor)."""
    __slots__ = ("_tape", "_ptr", "_gen", "__weakref__")

    def __init__(self, tape, ptr, gen):
        self._tape = tape  # a Tape, or the Params for a parameter
        self._ptr = ptr
        self._gen = gen

    def _use(self, tape=None):
        if self._gen is not None and self._gen != self._tape._gen:
            raise Error("this tensor was recorded before the tape's reset()")
        if tape is not None:
            if isinstance(self._tape, Tape):
                if self._tape is not tape:
                    raise Error("this tensor belongs to another tape")
            elif self._tape._ctx is not tape._ctx:
                raise Error("this parameter belongs to another context than the tape")
        return self._ptr

    @property
    def _L(self):
        return self._tape._L

    @property
    def shape(self):
        lib = self._L.lib
        p = self._use()
        return (lib.tg_rows(p),) if lib.tg_ndim(p) == 1 else (lib.tg_rows(p), lib.tg_cols(p))

    @property
    def op(self):
        return self._L.ffi.string(self._L.lib.tg_tensor_op(self._use())).decode()

    @property
    def label(self):
        ffi = self._L.ffi
        step = ffi.new("int *")
        s = self._L.lib.tg_tensor_label(self._use(), step)
        return (ffi.string(s).decode(), step[0]) if s != ffi.NULL else (None, step[0])

    def numpy(self):
        """A copy of the value, in the tensor's shape."""
        return view(self, self._L, self._L.lib.tg_data(self._use()), self.shape).copy()

    @property
    def grad(self):
        """A copy of dL/d(this) after backward, or None."""
        g = self._L.lib.tg_grad(self._use())
        if g == self._L.ffi.NULL:
            return None
        return view(self, self._L, g, self.shape).copy()

    def item(self):
        if self._L.lib.tg_size(self._use()) != 1:
            raise ValueError("item() of a tensor of shape %s" % list(self.shape))
        return self._L.lib.tg_item(self._ptr)

    def __repr__(self):
        try:
            return "<tapegrad.Tensor %s %s>" % (self.op, list(self.shape))
        except Error:
            return "<tapegrad.Tensor (reset)>"

    def _tape_for(self, other):
        for t in (self, other):
            if isinstance(t, Tensor) and isinstance(t._tape, Tape):
                return t._tape
        raise Error("an op needs a tape: at least one operand must be a tape entry "
                    "(use tape.apply with parameters only)")

    def __matmul__(self, o):
        return self._tape_for(o).apply("matmul", self, o)

    def __add__(self, o):
        if isinstance(o, numbers.Real):
            return self._tape_for(None).apply("scale", self, 1.0, float(o))
        return self._tape_for(o).apply("add", self, o)

    def __radd__(self, o):
        return self.__add__(o)

    def __sub__(self, o):
        if isinstance(o, numbers.Real):
            return self._tape_for(None).apply("scale", self, 1.0, -float(o))
        return self._tape_for(o).apply("sub", self, o)

    def __rsub__(self, o):
        return self._tape_for(None).apply("scale", self, -1.0, float(o))

    def __mul__(self, o):
        if isinstance(o, numbers.Real):
            return self._tape_for(None).apply("scale", self, float(o), 0.0)
        return self._tape_for(o).apply("mul", self, o)

    def __rmul__(self, o):
        return self.__mul__(o)

    def __neg__(self):
        return self._tape_for(None).apply("scale", self, -1.0, 0.0)
