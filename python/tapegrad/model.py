"""Models: a YAML model file, its parameters, loss and gradients from numpy."""
import os

import numpy as np

from .core import Context, Params, Tensor, check_array_dtype, dump_tape, take_pending, view, with_memstream
from .errors import CheckError, DTypeError, Error, NonFiniteError

__all__ = ["Model", "Outputs", "CheckResult"]

ROLE_PARAM, ROLE_INPUT, ROLE_TARGET, ROLE_STATE, ROLE_DIM, ROLE_OUTPUT = range(6)
BATCH = -1


def _shape_str(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


class Outputs(dict):
    """Model.run's result: output name -> array [T, rows, B] (or [T, rows] for B = 1
    when the inputs were given so); .loss (None without targets); .state: each
    state after the last step, [rows, B] (or [rows])."""
    loss = None
    state = None


class CheckResult:
    """Model.check's result: the worst scaled error, where, how many scalars, the report.

    refined: how many scalars the refined (wider-step fit) estimate judged, because the
    5-point one disagreed by more than tol/2; unresolved: how many of those the refinement
    could not bound, so the 5-point verdict stood (tg_gradcheck_result)."""

    def __init__(self, max_err, worst_param, worst_index, checked, refined, unresolved, report, ok):
        self.max_err = max_err
        self.worst_param = worst_param
        self.worst_index = worst_index
        self.checked = checked
        self.refined = refined
        self.unresolved = unresolved
        self.report = report
        self.ok = ok

    def __repr__(self):
        return "<CheckResult %s: worst scaled error %.3e (%s element %d) over %d scalars; %d refined, %d unresolved>" % (
            "ok" if self.ok else "FAILED", self.max_err, self.worst_param, self.worst_index, self.checked,
            self.refined, self.unresolved)


class _Seq:
    """One sequence's arrays, checked against the model: pointers for tg_unroll."""
    __slots__ = ("T", "B", "flat", "inputs", "targets", "state0", "keep")


class Model:
    """A checked, compiled YAML model (tg_model) in its own context.

        m = tapegrad.Model("models/lstm.yaml", dims={"hidden": 64}, dtype="float64")
        p = m.init_params(seed=1)
        loss, grads = m.loss_and_grad(p, x=X, y=Y)     # X: [T, input, B], Y: [T, output, B]

    dtype "float32" (libtapegrad.so) or "float64" (libtapegrad64.so).
    casting "safe" refuses arrays whose conversion to dtype would round
    (DTypeError); "same_kind" rounds float64 to float32.  text= parses a
    model from a string (path is then the name used in messages).
    detect_anomaly: stop at the first NaN/Inf (forward or backward) with a
    NonFiniteError naming the equation, step and FILE:LINE:COL.
    threads: tg_ctx_set_threads.  ctx: share a Context (and its ops) instead.
    """

    def __init__(self, path=None, dims=None, dtype="float32", *, text=None, casting="safe", threads=1,
                 detect_anomaly=False, ctx=None, _ptr=None):
        if ctx is None:
            ctx = Context(dtype, casting=casting, threads=threads)
        elif dtype != "float32" and np.dtype(dtype).name != ctx.dtype:
            raise ValueError("dtype %s differs from the context's %s" % (dtype, ctx.dtype))
        self._ctx = ctx
        self._L = L = ctx._L
        ffi, lib = L.ffi, L.lib
        dims = dict(dims or {})
        names = [ffi.new("char[]", str(k).encode()) for k in dims]
        darr = ffi.new("tg_dim[]", len(dims)) if dims else ffi.NULL
        for i, (k, v) in enumerate(dims.items()):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError("dims: %s must be a whole number, given %r" % (k, v))
            darr[i].name = names[i]
            darr[i].value = int(v)
        if text is not None:
            fname = (path if path is not None else "<string>")
            data = text.encode() if isinstance(text, str) else bytes(text)
            ptr = lib.tg_model_parse(ctx._ptr, os.fsencode(fname), data, len(data), darr, len(dims))
        elif _ptr is not None:
            ptr = _ptr
        else:
            if path is None:
                raise TypeError("Model() needs a path or text=")
            ptr = lib.tg_model_load(ctx._ptr, os.fsencode(path), darr, len(dims))
        if ptr == ffi.NULL:
            ctx.fail()
        self.path = path
        tape = lib.tg_tape_new(ctx._ptr)
        if tape == ffi.NULL:
            lib.tg_model_free(ptr)
            ctx.fail()
        self._ptr, self._tape = ptr, tape
        ctx._owner.add(self, _free_model, lib, tape, ptr)
        self._gen = 0
        self._describe()
        self._u = ffi.new("tg_unroll *")
        self._last = None
        self._anomaly = False
        self.detect_anomaly = detect_anomaly

    # -- what the model declares
    def _describe(self):
        ffi, lib = self._L.ffi, self._L.lib
        rows, cols = ffi.new("int *"), ffi.new("int *")

        def vars_of(role):
            out = {}
            for i in range(lib.tg_model_count(self._ptr, role)):
                s = lib.tg_model_var(self._ptr, role, i, rows, cols)
                out[ffi.string(s).decode()] = (rows[0], cols[0])
            return out

        self.name = ffi.string(lib.tg_model_name(self._ptr)).decode()
        self.dims = {k: r for k, (r, c) in vars_of(ROLE_DIM).items()}
        self.params = {k: ((r,) if c == 0 else (r, c)) for k, (r, c) in vars_of(ROLE_PARAM).items()}
        self.inputs = {k: r for k, (r, c) in vars_of(ROLE_INPUT).items()}
        self.targets = {k: r for k, (r, c) in vars_of(ROLE_TARGET).items()}
        self.states = {k: r for k, (r, c) in vars_of(ROLE_STATE).items()}
        self._outputs = vars_of(ROLE_OUTPUT)
        self.outputs = list(self._outputs)
        self.has_loss = bool(lib.tg_model_has_loss(self._ptr))
        # how variables are given, where the library says (models/README.md): targets
        # once per sequence, inputs and targets as class indices, states swept backwards
        self.per_sequence, self.index, self.reverse = set(), {}, set()
        if self._L.has("tg_model_var_flags"):
            vocab = ffi.new("int *")
            for role, names in ((ROLE_INPUT, self.inputs), (ROLE_TARGET, self.targets),
                                (ROLE_STATE, self.states)):
                for i, name in enumerate(names):
                    f = lib.tg_model_var_flags(self._ptr, role, i, vocab)
                    if f & 1:
                        self.per_sequence.add(name)
                    if f & 2:
                        self.reverse.add(name)
                    if f & 4:
                        self.index[name] = vocab[0]
        self._in_ptrs = ffi.new("tg_real *[]", max(1, len(self.inputs)))
        self._tg_ptrs = ffi.new("tg_real *[]", max(1, len(self.targets)))
        self._st_ptrs = ffi.new("tg_real *[]", max(1, len(self.states)))
        self._arr_type = ffi.typeof("tg_real[]")

    @property
    def dtype(self):
        return self._L.dtype

    @property
    def ctx(self):
        return self._ctx

    @property
    def casting(self):
        return self._ctx.casting

    @property
    def detect_anomaly(self):
        return self._anomaly

    @detect_anomaly.setter
    def detect_anomaly(self, on):
        self._anomaly = bool(on)
        self._L.lib.tg_tape_detect_anomaly(self._tape, int(self._anomaly))

    def __repr__(self):
        return "<tapegrad.Model %s (%s) params %s inputs %s targets %s>" % (
            self.name, self.dtype, list(self.params), list(self.inputs), list(self.targets))

    # -- parameters
    def init_params(self, seed=1):
        """New parameters, each set by its `init` (random ones from seed)."""
        ffi, lib = self._L.ffi, self._L.lib
        p = Params(self._ctx, self._ctx._new_params(), model=self)
        self._ctx.check(lib.tg_model_init_params(self._ptr, p._ptr, int(seed)))
        return p

    def load_params(self, path, seed=1):
        """init_params(seed), then the values of a params file (as `tapegrad --params`)."""
        p = self.init_params(seed)
        self._load_into(p, path)
        return p

    def _load_into(self, p, path):
        self._own(p)
        self._ctx.check(self._L.lib.tg_params_load(p._ptr, self._ptr, os.fsencode(path)))

    def _save_params(self, p, path):
        self._own(p)
        self._ctx.check(self._L.lib.tg_params_save(p._ptr, self._ptr, os.fsencode(path)))

    def _own(self, p):
        if type(p) is Params and p._model is self and p._checked:
            return
        if not isinstance(p, Params):
            raise TypeError("expected tapegrad.Params (from init_params or load_params), given %s"
                            % type(p).__name__)
        if p._ctx is not self._ctx:
            raise ValueError("these parameters belong to another model's context")
        shapes = p.shapes
        for k, v in self.params.items():
            if k not in shapes:
                raise ValueError("the parameters lack '%s', which the model declares" % k)
            if shapes[k] != v:
                raise ValueError("%s: the model declares shape %s, the parameters have %s"
                                 % (k, _shape_str(v), _shape_str(shapes[k])))
        if p._model is self:
            p._checked = True  # its parameters cannot change any more: views are out

    # -- data
    def load_data(self, path):
        """The sequences of a data file: a list of {name: array [T, rows, B]} (copies)."""
        ffi, lib = self._L.ffi, self._L.lib
        d = lib.tg_dataset_load(self._ctx._ptr, self._ptr, os.fsencode(path))
        if d == ffi.NULL:
            self._ctx.fail()
        try:
            out = []
            for q in range(lib.tg_dataset_count(d)):
                T, B = lib.tg_dataset_steps(d, q), lib.tg_dataset_batch(d, q)
                seq = {}
                for role, names in ((ROLE_INPUT, self.inputs), (ROLE_TARGET, self.targets)):
                    for i, (name, rows) in enumerate(names.items()):
                        v = lib.tg_dataset_values(d, q, role, i)
                        if v != ffi.NULL:
                            shape = (rows, B) if name in self.per_sequence else (T, rows, B)
                            seq[name] = view(None, self._L, v, shape).copy()
                out.append(seq)
            return out
        finally:
            lib.tg_dataset_free(d)

    def random_data(self, steps, batch=1, seed=2):
        """One sequence as tg_dataset_random makes it: inputs in [-1, 1), targets in [0, 1)."""
        ffi, lib = self._L.ffi, self._L.lib
        d = lib.tg_dataset_random(self._ctx._ptr, self._ptr, int(steps), int(batch), int(seed))
        if d == ffi.NULL:
            self._ctx.fail()
        try:
            seq = {}
            for role, names in ((ROLE_INPUT, self.inputs), (ROLE_TARGET, self.targets)):
                for i, (name, rows) in enumerate(names.items()):
                    v = lib.tg_dataset_values(d, 0, role, i)
                    shape = (rows, int(batch)) if name in self.per_sequence else (int(steps), rows, int(batch))
                    seq[name] = view(None, self._L, v, shape).copy()
            return seq
        finally:
            lib.tg_dataset_free(d)

    def _seq(self, arrays, need_targets, state=None):
        """Checks one sequence's arrays (shapes, dtypes) and keeps them for the call."""
        dtype, casting = self._L.dtype, self._ctx.casting
        inputs, targets = self.inputs, self.targets
        for k in arrays:
            if k not in inputs and k not in targets:
                raise TypeError("%s: the model %s has no input or target of that name (inputs: %s; targets: %s)"
                                % (k, self.name, ", ".join(inputs) or "none", ", ".join(targets) or "none"))
        s = _Seq()
        s.keep = keep = []
        T = B = flat = first = None
        with_targets = bool(targets) and (need_targets or any(k in arrays for k in targets))
        s.inputs, s.targets = [], ([] if with_targets else None)
        for role, names, out in ((ROLE_INPUT, inputs, s.inputs), (ROLE_TARGET, targets, s.targets)):
            if out is None:
                continue
            for name, rows in names.items():
                a = arrays.get(name)
                if a is None:
                    if role == ROLE_INPUT:
                        raise TypeError("%s: missing input (the model %s reads %s at every step)"
                                        % (name, self.name, name))
                    raise TypeError("%s: missing target (the loss reads it)" % name)
                if name in self.index:
                    a = self._indices(name, a)
                elif type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
                    a = check_array_dtype(name, a, dtype, casting)
                shape = a.shape
                if name in self.per_sequence:
                    if first is None or not ((flat and shape == (rows,)) or shape == (rows, B)):
                        want = "[%d, %d]" % (rows, B) + (" or [%d]" % rows if flat or B == 1 else "")
                        raise ValueError("%s: expected shape %s (one value per sequence%s), given %s" % (
                            name, want, "" if first is None else ", B from " + first, _shape_str(shape)))
                    keep.append(a)
                    out.append(a)
                    continue
                if len(shape) == 3:
                    t, r, b, f = shape[0], shape[1], shape[2], False
                elif len(shape) == 2:
                    t, r, b, f = shape[0], shape[1], 1, True
                else:
                    t = r = b = f = None
                if (r != rows or not t or not b or (first is not None and (t != T or b != B or f != flat))):
                    if first is None:
                        want = "[T, %d, B] or [T, %d]" % (rows, rows)
                    else:
                        want = ("[%d, %d]" % (T, rows)) if flat else ("[%d, %d, %d]" % (T, rows, B))
                        want += " (T%s from %s)" % ("" if flat else " and B", first)
                    raise ValueError("%s: expected shape %s, given %s" % (name, want, _shape_str(shape)))
                if first is None:
                    T, B, flat, first = t, b, f, name
                keep.append(a)
                out.append(a)
        s.T, s.B, s.flat = T, B, flat
        s.state0 = None
        if state:
            s.state0 = []
            for k in state:
                if k not in self.states:
                    raise TypeError("state %s: the model has no state of that name (states: %s)"
                                    % (k, ", ".join(self.states) or "none"))
            for name, rows in self.states.items():
                v = state.get(name)
                if v is None:
                    s.state0.append(None)
                    continue
                a = check_array_dtype("state " + name, v, dtype, casting)
                want = (rows, s.B)
                if a.shape != want and not (s.B == 1 and a.shape == (rows,)):
                    raise ValueError("state %s: expected shape %s%s, given %s" % (
                        name, _shape_str(want), " or [%d]" % rows if s.B == 1 else "", _shape_str(a.shape)))
                s.keep.append(a)
                s.state0.append(a)
        return s

    def _indices(self, name, a):
        """An index variable's array: integers 0..vocab-1, as the model's dtype."""
        vocab = self.index[name]
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise DTypeError("%s: expected class indices (integers), given dtype %s" % (name, a.dtype))
        if a.size:
            bad = (a < 0) | (a >= vocab) | (a != np.floor(a))
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError("%s: %s at %s is not an index from 0 to %d (vocab %d)"
                                 % (name, a[where], list(where), vocab - 1, vocab))
        return np.ascontiguousarray(a, dtype=self._L.dtype)

    def _seqs(self, data, arrays, need_targets, state=None):
        if data is not None and arrays:
            raise TypeError("give either a data argument or keyword arrays, not both")
        if data is None:
            return [self._seq(arrays, need_targets, state)], False
        if isinstance(data, dict):
            return [self._seq(data, need_targets, state)], False
        if state:
            raise TypeError("state= takes one sequence")
        seqs = [self._seq(d, need_targets) for d in data]
        if not seqs:
            raise ValueError("no sequences given")
        return seqs, True

    def _unroll(self, s, each_op=0, with_targets=True):
        """Records one sequence on the model's tape; returns the filled tg_unroll."""
        ffi, lib = self._L.ffi, self._L.lib
        u = self._u
        u.batch = s.B
        u.t0 = 0
        u.steps = s.T
        u.seq_steps = s.T
        arr = self._arr_type
        ins = self._in_ptrs
        for i, a in enumerate(s.inputs):
            ins[i] = ffi.from_buffer(arr, a)
        u.inputs = ins
        if s.targets is not None and with_targets:
            tgs = self._tg_ptrs
            for i, a in enumerate(s.targets):
                tgs[i] = ffi.from_buffer(arr, a)
            u.targets = tgs
        else:
            u.targets = ffi.NULL
        if s.state0 is not None:
            for i, a in enumerate(s.state0):
                self._st_ptrs[i] = ffi.NULL if a is None else ffi.from_buffer(arr, a)
            u.state0 = self._st_ptrs
        else:
            u.state0 = ffi.NULL
        u.each_op = each_op
        st = lib.tg_model_unroll(self._ptr, self._tape, u)
        if st:
            self._raise(st)
        return u

    def _record(self, p, seqs, each_op=0, with_targets=True):
        """Resets the tape and records every sequence; the summed loss (or NULL) and the unrolls."""
        ffi, lib = self._L.ffi, self._L.lib
        lib.tg_tape_reset(self._tape)
        self._gen += 1
        self._u.params = p._ptr
        loss = ffi.NULL
        last = None
        self._last = None
        for s in seqs:
            u = self._unroll(s, each_op, with_targets)
            last = u
            self._last = (s, self._gen)
            if u.loss != ffi.NULL:
                if loss == ffi.NULL:
                    loss = u.loss
                else:
                    pair = ffi.new("tg_tensor *[2]", [loss, u.loss])
                    loss = lib.tg_apply(self._tape, b"add", 2, pair, 0, ffi.NULL)
                    if loss == ffi.NULL:
                        self._raise(0)
        return loss, last

    def _raise(self, status):
        """The error of a failed call; a non-finite value also says where it first appeared."""
        lib, ffi = self._L.lib, self._L.ffi
        ctx = self._ctx
        code = int(status) if status else int(lib.tg_status_last(ctx._ptr))
        exc = ctx.error(status, take_pending())
        if code == NonFiniteError.code and not self._anomaly and lib.tg_tape_check_finite(self._tape, ffi.NULL):
            where = ctx.error()
            exc = NonFiniteError("%s; %s" % (exc.message, where.message))
        raise exc

    # -- the calls
    def loss_and_grad(self, p, data=None, *, state=None, accumulate=False, **arrays):
        """The loss and dL/dP for every parameter: one forward pass, one backward sweep.

        Arrays by name (x=X, y=Y), laid out [T, rows, B] or [T, rows] for
        B = 1; or data: one such dict or a list of them (losses summed, as
        `tapegrad grad` does over a data file).  state: initial states
        {name: [rows, B]} (default: their init).  Returns (loss, p.grad):
        the gradients are p's gradient buffer (views: the next call
        overwrites them; copy to keep).  accumulate=True adds to the
        gradients already there instead of zeroing them first.
        """
        self._own(p)
        if not self.has_loss:
            raise Error("the model %s has no 'loss', so it has no gradient" % self.name)
        seqs, _ = self._seqs(data, arrays, True, state)
        lib, ffi = self._L.lib, self._L.ffi
        if not accumulate:
            lib.tg_params_zero_grad(p._ptr)
        loss, _ = self._record(p, seqs)
        st = lib.tg_backward(self._tape, loss)
        if st:
            self._raise(st)
        exc = take_pending()
        if exc is not None:
            raise exc
        return lib.tg_item(loss), p.grad

    def loss(self, p, data=None, *, state=None, **arrays):
        """The loss alone (forward only)."""
        self._own(p)
        if not self.has_loss:
            raise Error("the model %s has no 'loss'" % self.name)
        seqs, _ = self._seqs(data, arrays, True, state)
        loss, _ = self._record(p, seqs)
        self._ctx.check(0)
        return self._L.lib.tg_item(loss)

    def last_state(self):
        """The states after the last step of the last sequence that loss_and_grad,
        loss or run recorded: {name: [rows, B]} (or [rows]), copies.  Pass them as
        state= to continue (truncated BPTT, as min-char-rnn carries hprev)."""
        if self._last is None or self._last[1] != self._gen:
            raise Error("nothing recorded yet")
        s = self._last[0]
        lib = self._L.lib
        out = {}
        for i, (name, rows) in enumerate(self.states.items()):
            t = self._u.state[i]
            a = view(None, self._L, lib.tg_data(t), (lib.tg_rows(t), lib.tg_cols(t))).copy()
            out[name] = a.reshape(rows) if s.flat else a
        return out

    def run(self, p, data=None, *, state=None, **arrays):
        """Forward only: every output at every step (an Outputs dict, see there).

        With targets among the arrays, .loss holds the loss too.
        """
        self._own(p)
        seqs, many = self._seqs(data, arrays, False, state)
        if many:
            return [self.run(p, data=d) for d in data]
        s = seqs[0]
        lib, ffi = self._L.lib, self._L.ffi
        loss, u = self._record(p, seqs)
        self._ctx.check(0)
        out = Outputs()
        no = len(self._outputs)
        for j, (name, (rows, cols)) in enumerate(self._outputs.items()):
            first = u.outputs[j]
            r, c = lib.tg_rows(first), lib.tg_cols(first)
            res = np.empty((s.T, r, c), self._L.dtype)
            for k in range(s.T):
                t = u.outputs[k * no + j]
                res[k] = view(None, self._L, lib.tg_data(t), (r, c))
            if s.flat and cols == BATCH:
                res = res.reshape(s.T, r)
            out[name] = res
        out.loss = lib.tg_item(loss) if loss != ffi.NULL else None
        out.state = {}
        for i, (name, rows) in enumerate(self.states.items()):
            t = u.state[i]
            a = view(None, self._L, lib.tg_data(t), (lib.tg_rows(t), lib.tg_cols(t))).copy()
            out.state[name] = a.reshape(rows) if s.flat else a
        return out

    def check(self, p=None, data=None, *, steps=10, batch=1, seed=1, eps=0.0, tol=0.0, **arrays):
        """tg_gradcheck on the whole unrolled model: every scalar of every parameter
        against 5-point central differences.

        p: the parameters (default init_params(seed)); data or arrays as for
        loss_and_grad, else random data of `steps` steps and `batch` columns
        seeded with seed + 1 (as `tapegrad check`).  eps, tol: 0 picks the
        precision's defaults (the tool's: 1e-6 double, 5e-3 float).  Returns
        a CheckResult; raises CheckError (its .result attached) past tol.
        """
        if p is None:
            p = self.init_params(seed)
        self._own(p)
        if not self.has_loss:
            raise Error("the model %s has no 'loss', so it has no gradient" % self.name)
        if data is None and not arrays:
            data = self.random_data(steps, batch, seed + 1)
        seqs, _ = self._seqs(data, arrays, True)
        ffi, lib = self._L.ffi, self._L.lib
        self._u.params = p._ptr
        failure = []

        def build(tape, user):
            try:
                loss, _ = self._record(p, seqs)
                return loss
            except BaseException as e:
                failure.append(e)
                return ffi.NULL

        cb = ffi.callback("tg_tensor *(tg_tape *, void *)", build)
        opts = ffi.new("tg_gradcheck_opts *")
        opts.eps, opts.tol = float(eps), float(tol)
        res = ffi.new("tg_gradcheck_result *")
        status = []

        def go(f):
            opts.report = f
            status.append(lib.tg_gradcheck(self._tape, p._ptr, cb, ffi.NULL, opts, res))

        report = with_memstream(self._L, go)
        st = status[0]
        if failure:
            raise failure[0]
        names = list(p)
        worst = names[res.worst_param] if 0 <= res.worst_param < len(names) else None
        result = CheckResult(res.max_err, worst, res.worst_index, res.checked, res.refined, res.unresolved, report,
                             st == 0)
        if st:
            try:
                self._ctx.check(st)
            except CheckError as e:
                e.result = result
                raise
        return result

    def dump(self, p, data=None, *, format="text", grads=False, fold=False, fused=False, max_values=0,
             state=None, **arrays):
        """What the tape records for these arrays, as tg_tape_dump writes it.

        format "text" | "json" | "dot"; grads: run backward and show every
        gradient; fold: first and last step only (text, dot); fused: record
        as training does (one `affine` entry per cell) instead of one entry
        per operator.  Returns the dump as a string.
        """
        self._own(p)
        seqs, _ = self._seqs(data, arrays, grads, state)
        lib, ffi = self._L.lib, self._L.ffi
        loss, _ = self._record(p, seqs, each_op=0 if fused else 1)
        self._ctx.check(0)
        if grads:
            if loss == ffi.NULL:
                raise Error("grads=True needs a loss: the model %s has none" % self.name)
            lib.tg_params_zero_grad(p._ptr)
            st = lib.tg_backward(self._tape, loss)
            if st:
                self._raise(st)
        tape = _ModelTape(self)
        return dump_tape(tape, format, grads=grads, fold=fold, max_values=max_values,
                         loss=Tensor(tape, loss, tape._gen) if loss != ffi.NULL else None,
                         targets=list(self.targets), title=self.path)


class _ModelTape:
    """The model's own tape seen as a Tape by dump_tape."""

    def __init__(self, m):
        self._ptr, self._ctx, self._L, self._gen = m._tape, m._ctx, m._L, m._gen


def _free_model(lib, tape, model):
    lib.tg_tape_free(tape)
    lib.tg_model_free(model)
