"""Training over the library's trainer (tg_trainer): minibatches, truncated BPTT,
optimizers and schedules, validation, early stopping, one-file checkpoints.

    tr = tapegrad.Trainer(m, p, optimizer="adam", lr=1e-3, bptt=64, clip=5)
    tr.fit("data.yaml", epochs=10, valid=0.1, checkpoint="run.ckpt",
           callback=lambda s: print(s.step, s.loss))

The loop runs in C; Python sees each step through the progress callback.
Ctrl-C (KeyboardInterrupt) stops after the step under way, saves the
checkpoint when one is given, as `tapegrad train` does, and is raised again.
"""
import json
import math
import os
import sys
from collections import namedtuple

import numpy as np

from .core import Context, take_pending
from .errors import Error
from .model import Model

__all__ = ["Trainer", "TrainSet", "Progress", "load_checkpoint"]

Progress = namedtuple("Progress", "epoch epochs step total_steps loss step_loss valid_loss best_valid_loss "
                                  "lr grad_norm seconds epoch_end")
Progress.__doc__ = "What the callback sees after every step and at each epoch's end (tg_train_progress)."

ENDS = ["none", "epochs", "max_steps", "target", "patience", "stopped"]
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")
REDUCTIONS = {"mean": 0, "sum": 1}
SCHEDULES = ("constant", "step", "exp", "cosine", "plateau")


class TrainSet:
    """Training data as the library holds it (tg_trainset).

    TrainSet.load(m, path): .yaml/.yml sequences, .csv a series, anything
    else a text (one-hot over its characters);  TrainSet.sequences(m, seqs):
    a list of {name: array [T, rows, B]} (or one such dict);
    TrainSet.text(string): a text.  .vocab_size and .vocab (the characters,
    sorted) for text.
    """

    def __init__(self, ctx, ptr, parent=None):
        self._ctx = ctx
        self._L = ctx._L
        self._ptr = ptr
        self._parent = parent  # a split reads its parent's values
        ctx._owner.add(self, ctx._L.lib.tg_trainset_free, ptr)

    @classmethod
    def load(cls, m, path, vocab=None):
        ctx, keep = m._ctx, []
        ptr = ctx._L.lib.tg_trainset_load(ctx._ptr, m._ptr, os.fsencode(path), _vocab_ptr(ctx, vocab, keep))
        if ptr == ctx._L.ffi.NULL:
            ctx.fail()
        return cls(ctx, ptr)

    @classmethod
    def sequences(cls, m, seqs):
        if isinstance(seqs, dict):
            seqs = [seqs]
        ctx, L = m._ctx, m._L
        # written as a data file (JSON is YAML): every number in its shortest exact form
        parts = []
        for s in seqs:
            chk = m._seq(s, False)
            names = list(m.inputs) + (list(m.targets) if chk.targets is not None else [])
            arrays = chk.inputs + (chk.targets or [])
            parts.append("{" + ", ".join("%s: %s" % (json.dumps(k), json.dumps(_as_data(m, k, a, chk)))
                                         for k, a in zip(names, arrays)) + "}")
        text = ("[" + ",\n".join(parts) + "]\n").encode()
        d = L.lib.tg_dataset_parse(ctx._ptr, m._ptr, b"<arrays>", text, len(text))
        if d == L.ffi.NULL:
            ctx.fail()
        ptr = L.lib.tg_trainset_sequences(ctx._ptr, m._ptr, d)
        if ptr == L.ffi.NULL:
            ctx.fail()
        return cls(ctx, ptr)

    @classmethod
    def text(cls, text, vocab=None, ctx=None, name="<text>"):
        ctx, keep = ctx or Context(), []
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
        ptr = ctx._L.lib.tg_trainset_text_parse(ctx._ptr, os.fsencode(name), data, len(data),
                                                _vocab_ptr(ctx, vocab, keep))
        if ptr == ctx._L.ffi.NULL:
            ctx.fail()
        return cls(ctx, ptr)

    def split(self, fraction):
        """Moves the last fraction of this set into a new one (for validation)."""
        ptr = self._L.lib.tg_trainset_split(self._ptr, float(fraction))
        if ptr == self._L.ffi.NULL:
            self._ctx.fail()
        return TrainSet(self._ctx, ptr, parent=self)

    def __len__(self):
        return self._L.lib.tg_trainset_length(self._ptr)

    @property
    def is_text(self):
        return bool(self._L.lib.tg_trainset_is_text(self._ptr))

    @property
    def vocab(self):
        """The characters of a text set, sorted by code point (symbol i is vocab[i])."""
        v = self._L.lib.tg_trainset_vocab(self._ptr)
        if v == self._L.ffi.NULL:
            return None
        return _vocab_chars(self._L, v)

    @property
    def vocab_size(self):
        v = self.vocab
        return None if v is None else len(v)

    def _vocab_handle(self):
        v = self._L.lib.tg_trainset_vocab(self._ptr)
        return None if v == self._L.ffi.NULL else v


def _as_data(m, name, a, chk):
    """One variable's values as a data file's nested lists."""
    if name in m.per_sequence:
        return a.reshape(-1, chk.B).tolist()
    if name in m.index:  # a step is one integer per column
        return a.reshape(chk.T, chk.B).astype(np.int64).tolist()
    return a.reshape(chk.T, -1, chk.B).tolist()


def _vocab_chars(L, v):
    ffi, lib = L.ffi, L.lib
    out = []
    buf = ffi.new("char[4]")
    for i in range(lib.tg_vocab_size(v)):
        n = lib.tg_vocab_utf8(v, i, buf)
        out.append(ffi.buffer(buf, n)[:].decode("utf-8", "surrogateescape"))
    return "".join(out)


class _Vocab:
    """A tg_vocab made from a string of distinct characters."""

    def __init__(self, ctx, chars):
        L = ctx._L
        cps = [ord(ch) for ch in chars]
        self._ctx = ctx
        self.ptr = L.lib.tg_vocab_new(ctx._ptr, L.ffi.new("uint32_t[]", cps) if cps else L.ffi.NULL, len(cps))
        if self.ptr == L.ffi.NULL:
            ctx.fail()
        ctx._owner.add(self, L.lib.tg_vocab_free, self.ptr)


def _vocab_ptr(ctx, vocab, keep):
    """vocab as a tg_vocab pointer: None, a string of characters, or a pointer."""
    if vocab is None:
        return ctx._L.ffi.NULL
    if isinstance(vocab, str):
        v = _Vocab(ctx, vocab)
        keep.append(v)
        return v.ptr
    return vocab


def _memory_bytes(m, memory):
    """A budget in bytes from an int or a size such as "256M" (tg_parse_size)."""
    L = m._L
    if isinstance(memory, bool) or not isinstance(memory, (int, str)):
        raise TypeError("memory is a number of bytes or a size such as '256M', not %s" % type(memory).__name__)
    if isinstance(memory, int):
        if memory < 0 or memory >= 1 << 64:
            raise ValueError("memory must be from 0 to 2**64 - 1 bytes, not %d" % memory)
        return memory
    if "\x00" in memory:
        raise ValueError("memory: a size has no NUL character")
    out = L.ffi.new("size_t *")
    m._ctx.check(L.lib.tg_parse_size(m._ctx._ptr, memory.encode("utf-8", "surrogateescape"), out))
    return int(out[0])


class Trainer:
    """Fits m's parameters p (a Params of m) with the library's trainer.

    Options (tg_train_opts; defaults as the library's): optimizer "sgd" |
    "momentum" | "adam" | "rmsprop" | "adagrad", lr, momentum, nesterov,
    betas (adam), rho (rmsprop), eps, eps_inside, weight_decay, decoupled,
    clip (global norm; 0 none), clip_value (each element; 0 none),
    batch, bptt (-1: 64 for text, whole sequences otherwise; 0: whole),
    accumulate, reduction "mean" | "sum", schedule "constant" | "step" |
    "exp" | "cosine" | "plateau", warmup, gamma, step_size,
    plateau_patience, target, patience, max_steps, seed, memory (a budget
    for what one chunk's BPTT keeps: bytes, or a size such as "256M";
    0 or None: no budget).
    """

    def __init__(self, m, p, *, optimizer="adam", lr=None, momentum=None, nesterov=None, betas=None, rho=None,
                 eps=None, eps_inside=None, weight_decay=None, decoupled=None, clip=None, clip_value=None,
                 batch=None, bptt=None, accumulate=None,
                 reduction=None, schedule=None, warmup=None, gamma=None, step_size=None, plateau_patience=None,
                 target=None, patience=None, max_steps=None, seed=None, memory=None):
        if not isinstance(m, Model):
            raise TypeError("Trainer takes a tapegrad.Model, given %s" % type(m).__name__)
        m._own(p)
        self.model, self.params = m, p
        L = self._L = m._L
        ffi, lib = L.ffi, L.lib
        o = self._opts = ffi.new("tg_train_opts *", lib.tg_train_defaults())
        if optimizer not in OPTIMIZERS:
            raise ValueError("optimizer must be one of %s, not %r" % (", ".join(OPTIMIZERS), optimizer))
        keep_lr = o.optim.lr
        o.optim = lib.tg_optim_defaults(lib.tg_optim_kind_parse(optimizer.encode()))
        if optimizer == "adam" and lr is None:
            o.optim.lr = keep_lr

        def put(obj, field, value, conv=float):
            if value is not None:
                setattr(obj, field, conv(value))

        put(o.optim, "lr", lr)
        put(o.optim, "momentum", momentum)
        put(o.optim, "nesterov", nesterov, lambda v: int(bool(v)))
        if betas is not None:
            o.optim.beta1, o.optim.beta2 = (float(b) for b in betas)
        put(o.optim, "rho", rho)
        put(o.optim, "eps", eps)
        put(o.optim, "weight_decay", weight_decay)
        put(o.optim, "decoupled", decoupled, lambda v: int(bool(v)))
        put(o.optim, "clip", clip)
        put(o.optim, "clip_value", clip_value)
        put(o.optim, "eps_inside", eps_inside, lambda v: int(bool(v)))
        put(o, "batch", batch, int)
        put(o, "bptt", bptt, int)
        put(o, "accumulate", accumulate, int)
        if reduction is not None:
            if reduction not in REDUCTIONS:
                raise ValueError("reduction must be 'mean' or 'sum', not %r" % (reduction,))
            o.reduction = REDUCTIONS[reduction]
        if schedule is not None:
            if schedule not in SCHEDULES:
                raise ValueError("schedule must be one of %s, not %r" % (", ".join(SCHEDULES), schedule))
            o.schedule = SCHEDULES.index(schedule)
        put(o, "warmup", warmup, int)
        put(o, "gamma", gamma)
        put(o, "step_size", step_size, int)
        put(o, "plateau_patience", plateau_patience, int)
        put(o, "target", target)
        put(o, "patience", patience, int)
        put(o, "max_steps", max_steps, int)
        put(o, "seed", seed, int)
        if memory is not None:
            o.memory = _memory_bytes(m, memory)
        self._tr = None
        self._sets = None
        self._resume_from = None
        self.end = None

    # -- the C trainer of one run
    def _new_trainer(self, epochs):
        L, m = self._L, self.model
        self._opts.epochs = int(epochs)
        self._free()
        tr = L.lib.tg_trainer_new(m._ptr, self.params._ptr, self._opts)
        if tr == L.ffi.NULL:
            m._ctx.fail()
        self._tr = tr
        self._fin = m._ctx._owner.add(self, L.lib.tg_trainer_free, tr)

    def _free(self):
        if self._tr is not None:
            self._fin()
            self._tr = None

    def _data(self, data, valid):
        m = self.model
        train = data if isinstance(data, TrainSet) else (
            TrainSet.load(m, data) if isinstance(data, (str, bytes, os.PathLike))
            else TrainSet.sequences(m, data))
        if valid is None:
            vset = None
        elif isinstance(valid, float):
            vset = train.split(valid)
        elif isinstance(valid, TrainSet):
            vset = valid
        elif isinstance(valid, (str, bytes, os.PathLike)):
            vset = TrainSet.load(m, valid, vocab=train._vocab_handle())
        else:
            vset = TrainSet.sequences(m, valid)
        return train, vset

    def fit(self, data, epochs=1, *, valid=None, callback=None, checkpoint=None, save_every=0, resume=None,
            verbose=False):
        """Trains for `epochs` passes over data; returns the last Progress.

        data: a path (see TrainSet.load), a list of sequences ({name: array
        [T, rows, B]}) or a TrainSet.  valid: the same kinds, or a fraction
        of data to hold out.  callback(progress) after every step and at
        each epoch's end (progress.epoch_end); returning True stops the run.
        checkpoint: a file saved every save_every steps (0: at the end only),
        at the end, and on Ctrl-C.  resume: a checkpoint to continue
        (parameters, optimizer state, position; options must agree).  Each
        fit() without resume starts a new run (a fresh optimizer) from the
        parameters as they are.  .end tells why the run stopped: "epochs",
        "max_steps", "target", "patience" (best parameters restored) or
        "stopped" (the callback).
        """
        L, m = self._L, self.model
        ffi, lib = L.ffi, L.lib
        train, vset = self._data(data, valid)
        self._sets = (vset, train)  # alive while the trainer may read them
        self._new_trainer(epochs)
        st = lib.tg_trainer_set_data(self._tr, train._ptr, vset._ptr if vset is not None else ffi.NULL)
        if st:
            m._ctx.check(st)
        resume = resume or self._resume_from
        self._resume_from = None
        if resume is not None:
            c = lib.tg_checkpoint_open(m._ctx._ptr, os.fsencode(resume))
            if c == ffi.NULL:
                m._ctx.fail()
            try:
                m._ctx.check(lib.tg_trainer_resume(self._tr, c))
            finally:
                lib.tg_checkpoint_close(c)
        state = {"interrupt": None, "error": None, "user_stop": False, "save": False, "last": None}

        def progress(pp, user):
            try:
                pr = Progress(pp.epoch, pp.epochs, pp.step, pp.total_steps, pp.loss, pp.step_loss,
                              pp.valid_loss, pp.best_valid_loss, pp.lr, pp.grad_norm, pp.seconds,
                              bool(pp.epoch_end))
                state["last"] = pr
                if verbose and pr.epoch_end:
                    print("epoch %d/%d  step %d  loss %.6g%s  lr %.3g  %.1fs" % (
                        pr.epoch, pr.epochs, pr.step, pr.loss,
                        "" if math.isnan(pr.valid_loss) else "  valid %.6g" % pr.valid_loss,
                        pr.lr, pr.seconds), file=sys.stderr)
                if callback is not None and callback(pr):
                    state["user_stop"] = True
                    return 1
                if checkpoint and save_every and not pr.epoch_end and pr.step % save_every == 0:
                    state["save"] = True
                    return 1
                return 0
            except KeyboardInterrupt as e:
                state["interrupt"] = e
                return 1
            except BaseException as e:
                state["error"] = e
                return 1

        cb = ffi.callback("int(const tg_train_progress *, void *)", progress)
        lib.tg_trainer_set_progress(self._tr, cb, ffi.NULL)
        try:
            while True:
                try:
                    st = lib.tg_trainer_run(self._tr)
                except KeyboardInterrupt as e:  # pragma: no cover - only between C calls
                    state["interrupt"] = e
                    st = 0
                if state["error"] is not None:
                    raise state["error"]
                if st:
                    m._ctx.check(st)
                pend = take_pending()
                if pend is not None:
                    raise pend
                if state["interrupt"] is not None:
                    step = lib.tg_trainer_progress(self._tr).step
                    if checkpoint:
                        self.save(checkpoint)
                        print("tapegrad: interrupted at step %d; saved %s (continue with fit(..., resume=%r))"
                              % (step, checkpoint, str(checkpoint)), file=sys.stderr)
                    else:
                        print("tapegrad: interrupted at step %d; nothing saved (no checkpoint=)" % step,
                              file=sys.stderr)
                    raise state["interrupt"]
                if state["save"]:
                    state["save"] = False
                    self.save(checkpoint)
                    continue
                break
            self.end = ENDS[lib.tg_trainer_end(self._tr)]
            if checkpoint:
                self.save(checkpoint)
        finally:
            lib.tg_trainer_set_progress(self._tr, ffi.NULL, ffi.NULL)
        return state["last"] or self.progress()

    def progress(self):
        """The run's Progress now."""
        if self._tr is None:
            raise Error("no run yet: call fit()")
        pp = self._L.lib.tg_trainer_progress(self._tr)
        return Progress(pp.epoch, pp.epochs, pp.step, pp.total_steps, pp.loss, pp.step_loss, pp.valid_loss,
                        pp.best_valid_loss, pp.lr, pp.grad_norm, pp.seconds, bool(pp.epoch_end))

    def evaluate(self, data):
        """The mean loss on a set (as the run's batch and bptt; no gradients)."""
        if self._tr is None:
            raise Error("no run yet: call fit()")
        s = data if isinstance(data, TrainSet) else (
            TrainSet.load(self.model, data) if isinstance(data, (str, bytes, os.PathLike))
            else TrainSet.sequences(self.model, data))
        out = self._L.ffi.new("double *")
        self.model._ctx.check(self._L.lib.tg_trainer_evaluate(self._tr, s._ptr, out))
        return out[0]

    def save(self, path):
        """Writes the one-file checkpoint of the run (atomically)."""
        if self._tr is None:
            raise Error("no run yet: call fit()")
        self.model._ctx.check(self._L.lib.tg_trainer_save(self._tr, os.fsencode(path)))

    @classmethod
    def from_checkpoint(cls, path, dtype="float32", dims=None):
        """A Trainer for the run saved in path, with its model, parameters and
        options; the next fit() continues the run (give it the same data)."""
        m, p, opts = _open_checkpoint(path, dtype, dims, want_opts=True)
        tr = cls(m, p)
        tr._opts[0] = opts
        tr._resume_from = path
        return tr


def _open_checkpoint(path, dtype, dims, want_opts=False, best=False):
    ctx = Context(dtype)
    L = ctx._L
    ffi, lib = L.ffi, L.lib
    c = lib.tg_checkpoint_open(ctx._ptr, os.fsencode(path))
    if c == ffi.NULL:
        ctx.fail()
    try:
        dims = dict(dims or {})
        names = [ffi.new("char[]", str(k).encode()) for k in dims]
        darr = ffi.new("tg_dim[]", len(dims)) if dims else ffi.NULL
        for i, (k, v) in enumerate(dims.items()):
            darr[i].name, darr[i].value = names[i], int(v)
        mp = lib.tg_checkpoint_model(c, darr, len(dims))
        if mp == ffi.NULL:
            ctx.fail()
        plen = ffi.new("size_t *")
        ppath = ffi.new("const char **")
        lib.tg_checkpoint_model_text(c, plen, ppath)
        src = ffi.string(ppath[0]).decode("utf-8", "replace") if ppath[0] != ffi.NULL else str(path)
        m = Model(src, ctx=ctx, _ptr=mp)
        p = m.init_params()
        ctx.check(lib.tg_checkpoint_params(c, m._ptr, p._ptr, int(bool(best))))
        v = lib.tg_checkpoint_vocab(c)
        m.vocab = _vocab_chars(L, v) if v != ffi.NULL else None
        opts = None
        if want_opts:
            opts = ffi.new("tg_train_opts *")
            ctx.check(lib.tg_checkpoint_opts(c, opts))
            opts = opts[0]
        return m, p, opts
    finally:
        lib.tg_checkpoint_close(c)


def load_checkpoint(path, dtype="float32", dims=None, best=False):
    """(Model, Params) of a checkpoint: the model from the text it holds, its
    parameters (best=True: the best of a run with patience); model.vocab is the
    text's characters for a text run."""
    m, p, _ = _open_checkpoint(path, dtype, dims, best=best)
    return m, p
