"""Loading the shared library through cffi in ABI mode.

tapegrad's Python binding is pure Python: cffi reads the declarations below
(copied from core/tapegrad.h, which a test compares them with) and dlopen()s
the library, so installing it needs neither a compiler nor Python's headers.
The two precisions are two libraries with the same symbols and a different
tg_real, so each gets its own FFI instance: libtapegrad.so (float32) and
libtapegrad64.so (float64).
"""
import os
import re
import threading
from pathlib import Path

import cffi

# Declarations of core/tapegrad.h that cffi can read: macros are replaced by
# what they expand to (tg_ctx_new -> tg_ctx_new_checked) or by constants in
# Python.  TG_REAL is replaced by float or double.
CDEF = r"""
typedef TG_REAL tg_real;
typedef struct tg_ctx tg_ctx;
typedef struct tg_tape tg_tape;
typedef struct tg_tensor tg_tensor;
typedef struct tg_params tg_params;

typedef enum tg_status {
    TG_OK = 0, TG_ERR_ARG, TG_ERR_SHAPE, TG_ERR_NOMEM, TG_ERR_NOTFOUND, TG_ERR_NONFINITE,
    TG_ERR_PARSE, TG_ERR_IO, TG_ERR_LIMIT, TG_ERR_CHECK
} tg_status;

typedef struct tg_allocator {
    void *(*alloc)(size_t size, void *user);
    void *(*realloc)(void *ptr, size_t old_size, size_t new_size, void *user);
    void (*free)(void *ptr, size_t size, void *user);
    void *user;
} tg_allocator;

tg_ctx *tg_ctx_new_checked(const tg_allocator *alloc, size_t real_size);
void tg_ctx_free(tg_ctx *ctx);
tg_status tg_status_last(const tg_ctx *ctx);
const char *tg_errmsg(const tg_ctx *ctx);
void tg_clear_error(tg_ctx *ctx);
const char *tg_status_name(tg_status s);
void tg_seed(tg_ctx *ctx, uint64_t seed);
double tg_rand_uniform(tg_ctx *ctx);
double tg_rand_normal(tg_ctx *ctx);
tg_status tg_ctx_set_threads(tg_ctx *ctx, int n);
int tg_ctx_threads(const tg_ctx *ctx);

int tg_rows(const tg_tensor *t);
int tg_cols(const tg_tensor *t);
int tg_ndim(const tg_tensor *t);
size_t tg_size(const tg_tensor *t);
tg_real *tg_data(tg_tensor *t);
tg_real *tg_grad(tg_tensor *t);
const char *tg_tensor_op(const tg_tensor *t);
int tg_tensor_arity(const tg_tensor *t);
tg_tensor *tg_tensor_input(tg_tensor *t, int i);
int tg_tensor_index(const tg_tensor *t);
void tg_tensor_set_label(tg_tensor *t, const char *label, int step);
void tg_tensor_set_source(tg_tensor *t, const char *file, int line, int column);
const char *tg_tensor_label(const tg_tensor *t, int *step);
double tg_item(tg_tensor *t);

tg_params *tg_params_new(tg_ctx *ctx);
void tg_params_free(tg_params *ps);
tg_tensor *tg_params_add(tg_params *ps, const char *name, int rows, int cols);
tg_tensor *tg_params_find(tg_params *ps, const char *name);
int tg_params_count(const tg_params *ps);
tg_tensor *tg_params_at(tg_params *ps, int i);
const char *tg_params_name(const tg_params *ps, int i);
size_t tg_params_total(const tg_params *ps);
tg_real *tg_params_values(tg_params *ps);
tg_real *tg_params_grads(tg_params *ps);
void tg_params_zero_grad(tg_params *ps);
double tg_params_clip_grad(tg_params *ps, double max_norm);

typedef struct tg_optim tg_optim;
typedef enum tg_optim_kind {
    TG_OPTIM_SGD, TG_OPTIM_MOMENTUM, TG_OPTIM_ADAM, TG_OPTIM_RMSPROP, TG_OPTIM_ADAGRAD
} tg_optim_kind;
typedef struct tg_optim_opts {
    tg_optim_kind kind;
    double lr;
    double momentum;
    int nesterov;
    double beta1, beta2;
    double rho;
    double eps;
    double weight_decay;
    int decoupled;
    double clip;
    double clip_value;
    int eps_inside;
} tg_optim_opts;
tg_optim_opts tg_optim_defaults(tg_optim_kind kind);
const char *tg_optim_kind_name(tg_optim_kind kind);
int tg_optim_kind_parse(const char *name);
tg_optim *tg_optim_new(tg_params *ps, const tg_optim_opts *opts);
void tg_optim_free(tg_optim *o);
tg_status tg_optim_step(tg_optim *o, double *grad_norm);
const tg_optim_opts *tg_optim_get_opts(const tg_optim *o);
void tg_optim_set_lr(tg_optim *o, double lr);
uint64_t tg_optim_steps(const tg_optim *o);
void tg_optim_set_steps(tg_optim *o, uint64_t steps);
int tg_optim_state_count(const tg_optim *o);
tg_real *tg_optim_state(tg_optim *o, int k, const char **name);

tg_tape *tg_tape_new(tg_ctx *ctx);
void tg_tape_free(tg_tape *tape);
void tg_tape_reset(tg_tape *tape);
tg_ctx *tg_tape_ctx(tg_tape *tape);
int tg_tape_length(const tg_tape *tape);
tg_tensor *tg_tape_at(tg_tape *tape, int i);
size_t tg_tape_bytes(const tg_tape *tape);
void tg_tape_detect_anomaly(tg_tape *tape, int on);
void tg_tape_keep_grads(tg_tape *tape, int keep);
tg_tensor *tg_input(tg_tape *tape, int rows, int cols, const tg_real *data, int requires_grad);
tg_tensor *tg_input_ref(tg_tape *tape, int rows, int cols, const tg_real *data);

tg_tensor *tg_apply(tg_tape *tp, const char *op, int n, tg_tensor *const *in,
                    int n_attrs, const double *attrs);

typedef struct tg_op_spec {
    const char *name;
    int arity;
    int n_attrs;
    int (*shape)(int n, const int (*in)[2], const double *attrs, int out[2],
                 char *err, size_t err_len);
    void (*forward)(tg_tensor *out);
    void (*backward)(tg_tensor *out);
} tg_op_spec;
tg_status tg_op_register(tg_ctx *ctx, const tg_op_spec *spec);
int tg_op_exists(const tg_ctx *ctx, const char *name);
double tg_attr(const tg_tensor *t, int i);
int tg_op_count(const tg_ctx *ctx);
const char *tg_op_name(const tg_ctx *ctx, int i);
tg_status tg_op_shape(tg_ctx *ctx, const char *op, int n, const int (*in)[2],
                      int n_attrs, const double *attrs, int out[2]);

tg_status tg_backward(tg_tape *tape, tg_tensor *loss);

typedef enum tg_dump_format { TG_DUMP_TEXT, TG_DUMP_JSON, TG_DUMP_DOT } tg_dump_format;
typedef struct tg_dump_opts {
    int grads;
    int fold;
    int max_values;
    tg_tensor *loss;
    const char *const *targets;
    const char *title;
} tg_dump_opts;
tg_status tg_tape_dump(tg_tape *tape, FILE *out, tg_dump_format fmt, const tg_dump_opts *opts);
const char *tg_dump_format_name(tg_dump_format fmt);
int tg_dump_format_parse(const char *name);
tg_status tg_tape_check_finite(tg_tape *tape, tg_tensor *loss);

typedef void (*tg_sweep_hook)(tg_tensor *entry, void *user);
void tg_tape_set_sweep_hook(tg_tape *tape, tg_sweep_hook fn, void *user);

typedef struct tg_grad_norms tg_grad_norms;
tg_grad_norms *tg_grad_norms_new(tg_tape *tape, tg_tensor *loss, tg_params *ps);
void tg_grad_norms_free(tg_grad_norms *gn);
void tg_grad_norms_size(const tg_grad_norms *gn, int *rows, int *cols);
int tg_grad_norms_step(const tg_grad_norms *gn, int row);
const char *tg_grad_norms_name(const tg_grad_norms *gn, int col, int *is_param);
double tg_grad_norms_at(const tg_grad_norms *gn, int row, int col);

typedef tg_tensor *(*tg_build_fn)(tg_tape *tape, void *user);
typedef struct tg_gradcheck_opts {
    double eps;
    double tol;
    FILE *report;
} tg_gradcheck_opts;
typedef struct tg_gradcheck_result {
    double max_err;
    int worst_param;
    size_t worst_index;
    size_t checked;
    size_t refined;
    size_t unresolved;
} tg_gradcheck_result;
tg_status tg_gradcheck(tg_tape *tape, tg_params *ps, tg_build_fn build, void *user,
                       const tg_gradcheck_opts *opts, tg_gradcheck_result *result);

typedef struct tg_model tg_model;
typedef struct tg_dataset tg_dataset;
typedef struct tg_dim { const char *name; int value; } tg_dim;
tg_model *tg_model_load(tg_ctx *ctx, const char *path, const tg_dim *dims, int n_dims);
tg_model *tg_model_parse(tg_ctx *ctx, const char *filename, const char *text, size_t len,
                         const tg_dim *dims, int n_dims);
void tg_model_free(tg_model *m);
typedef enum tg_model_role {
    TG_ROLE_PARAM, TG_ROLE_INPUT, TG_ROLE_TARGET, TG_ROLE_STATE, TG_ROLE_DIM, TG_ROLE_OUTPUT
} tg_model_role;
const char *tg_model_name(const tg_model *m);
int tg_model_count(const tg_model *m, tg_model_role role);
const char *tg_model_var(const tg_model *m, tg_model_role role, int i, int *rows, int *cols);
int tg_model_has_loss(const tg_model *m);
tg_status tg_model_init_params(const tg_model *m, tg_params *ps, uint64_t seed);
tg_status tg_params_load(tg_params *ps, const tg_model *m, const char *path);
tg_status tg_params_save(tg_params *ps, const tg_model *m, const char *path);
tg_dataset *tg_dataset_load(tg_ctx *ctx, const tg_model *m, const char *path);
tg_dataset *tg_dataset_parse(tg_ctx *ctx, const tg_model *m, const char *filename,
                             const char *text, size_t len);
tg_dataset *tg_dataset_random(tg_ctx *ctx, const tg_model *m, int steps, int batch, uint64_t seed);
void tg_dataset_free(tg_dataset *d);
int tg_dataset_count(const tg_dataset *d);
int tg_dataset_steps(const tg_dataset *d, int seq);
int tg_dataset_batch(const tg_dataset *d, int seq);
const tg_real *tg_dataset_values(const tg_dataset *d, int seq, tg_model_role role, int i);

typedef struct tg_unroll {
    tg_params *params;
    int batch;
    int t0, steps;
    int seq_steps;
    const tg_real *const *inputs;
    const tg_real *const *targets;
    const tg_real *const *state0;
    int each_op;
    tg_tensor *loss;
    tg_tensor **outputs;
    tg_tensor **state;
} tg_unroll;
tg_status tg_model_unroll(const tg_model *m, tg_tape *tape, tg_unroll *u);
typedef struct tg_bptt_plan {
    int steps;
    int segment;
    int segments;
    int snapshots;
    long long forward_steps;
    long long recomputed;
    size_t tape_bytes;
    size_t snapshot_bytes;
} tg_bptt_plan;
tg_status tg_parse_size(tg_ctx *ctx, const char *text, size_t *bytes);

typedef struct tg_vocab tg_vocab;
tg_vocab *tg_vocab_new(tg_ctx *ctx, const uint32_t *chars, int n);
void tg_vocab_free(tg_vocab *v);
int tg_vocab_size(const tg_vocab *v);
uint32_t tg_vocab_char(const tg_vocab *v, int i);
int tg_vocab_index(const tg_vocab *v, uint32_t cp);
int tg_vocab_utf8(const tg_vocab *v, int i, char out[4]);
typedef struct tg_trainset tg_trainset;
tg_trainset *tg_trainset_sequences(tg_ctx *ctx, const tg_model *m, tg_dataset *d);
tg_trainset *tg_trainset_csv(tg_ctx *ctx, const tg_model *m, const char *path);
tg_trainset *tg_trainset_csv_parse(tg_ctx *ctx, const tg_model *m, const char *filename,
                                   const char *text, size_t len);
tg_trainset *tg_trainset_text(tg_ctx *ctx, const char *path, const tg_vocab *vocab);
tg_trainset *tg_trainset_text_parse(tg_ctx *ctx, const char *filename, const char *text, size_t len,
                                    const tg_vocab *vocab);
tg_trainset *tg_trainset_load(tg_ctx *ctx, const tg_model *m, const char *path, const tg_vocab *vocab);
void tg_trainset_free(tg_trainset *s);
int tg_trainset_is_text(const tg_trainset *s);
size_t tg_trainset_length(const tg_trainset *s);
const tg_vocab *tg_trainset_vocab(const tg_trainset *s);
tg_trainset *tg_trainset_split(tg_trainset *s, double fraction);
typedef enum tg_reduction {
    TG_REDUCE_MEAN,
    TG_REDUCE_SUM
} tg_reduction;
typedef enum tg_schedule {
    TG_SCHED_CONSTANT, TG_SCHED_STEP, TG_SCHED_EXP, TG_SCHED_COSINE, TG_SCHED_PLATEAU
} tg_schedule;
const char *tg_schedule_name(tg_schedule s);
int tg_schedule_parse(const char *name);
typedef struct tg_train_opts {
    tg_optim_opts optim;
    int epochs;
    uint64_t max_steps;
    int batch;
    int bptt;
    int accumulate;
    tg_reduction reduction;
    tg_schedule schedule;
    int warmup;
    double gamma;
    int step_size;
    int plateau_patience;
    double target;
    int patience;
    uint64_t seed;
    size_t memory;
} tg_train_opts;
tg_train_opts tg_train_defaults(void);
typedef struct tg_train_progress {
    int epoch, epochs;
    uint64_t step, total_steps;
    double loss;
    double step_loss;
    double valid_loss;
    double best_valid_loss;
    double lr, grad_norm;
    double seconds;
    int epoch_end;
    tg_bptt_plan plan;
} tg_train_progress;
typedef enum tg_train_end {
    TG_END_NONE,
    TG_END_EPOCHS,
    TG_END_MAX_STEPS,
    TG_END_TARGET,
    TG_END_PATIENCE,
    TG_END_STOPPED
} tg_train_end;
typedef struct tg_trainer tg_trainer;
tg_trainer *tg_trainer_new(const tg_model *m, tg_params *ps, const tg_train_opts *opts);
void tg_trainer_free(tg_trainer *tr);
tg_status tg_trainer_set_data(tg_trainer *tr, const tg_trainset *train, const tg_trainset *valid);
tg_status tg_trainer_step(tg_trainer *tr);
tg_status tg_trainer_epoch(tg_trainer *tr);
tg_status tg_trainer_run(tg_trainer *tr);
tg_train_end tg_trainer_end(const tg_trainer *tr);
tg_status tg_trainer_evaluate(tg_trainer *tr, const tg_trainset *set, double *loss);
void tg_trainer_stop(tg_trainer *tr);
typedef int (*tg_train_progress_fn)(const tg_train_progress *p, void *user);
void tg_trainer_set_progress(tg_trainer *tr, tg_train_progress_fn fn, void *user);
const tg_train_progress *tg_trainer_progress(const tg_trainer *tr);
const tg_train_opts *tg_trainer_opts(const tg_trainer *tr);
tg_optim *tg_trainer_optim(tg_trainer *tr);
typedef int (*tg_train_reduce_fn)(tg_real *grads, size_t n, double *stats, int n_stats, void *user);
void tg_trainer_set_reduce(tg_trainer *tr, tg_train_reduce_fn fn, void *user);
tg_status tg_trainer_save(tg_trainer *tr, const char *path);
typedef struct tg_checkpoint tg_checkpoint;
tg_checkpoint *tg_checkpoint_open(tg_ctx *ctx, const char *path);
void tg_checkpoint_close(tg_checkpoint *c);
int tg_checkpoint_is(const char *path);
tg_model *tg_checkpoint_model(tg_checkpoint *c, const tg_dim *dims, int n_dims);
const char *tg_checkpoint_model_text(const tg_checkpoint *c, size_t *len, const char **path);
tg_status tg_checkpoint_params(tg_checkpoint *c, const tg_model *m, tg_params *ps, int best);
const tg_vocab *tg_checkpoint_vocab(const tg_checkpoint *c);
tg_status tg_checkpoint_opts(const tg_checkpoint *c, tg_train_opts *opts);
tg_status tg_trainer_resume(tg_trainer *tr, tg_checkpoint *c);
"""

# Declarations that only some versions of the library have: resolved when
# present (Lib.has(name) says), never required.
OPTIONAL_CDEF = r"""
int tg_model_var_flags(const tg_model *m, tg_model_role role, int i, int *vocab);
"""

# The C library's stdio, for dumps and gradient-check reports into memory.
LIBC_CDEF = r"""
FILE *open_memstream(char **ptr, size_t *sizeloc);
int fclose(FILE *stream);
void free(void *ptr);
"""

TG_MODEL_BATCH = -1
TG_VAR_PER_SEQUENCE, TG_VAR_REVERSE, TG_VAR_INDEX = 1, 2, 4
TG_MAX_THREADS = 64

_NAMES = {"float32": ("libtapegrad", "float", "build/float"),
          "float64": ("libtapegrad64", "double", "build/double")}


class Lib:
    """One precision: its FFI, the dlopen()ed library and libc."""

    def __init__(self, dtype, ffi, lib, libc, path):
        self.dtype = dtype
        self.ffi = ffi
        self.lib = lib
        self.libc = libc
        self.path = path
        self.real = "float" if dtype == "float32" else "double"
        self.real_size = ffi.sizeof("tg_real")
        self.optional = set()

    def has(self, name):
        """Whether this library has an optional function (OPTIONAL_CDEF)."""
        return name in self.optional


def candidates(dtype):
    """Where the library for dtype is looked for, in order."""
    base, _, build = _NAMES[dtype]
    here = Path(__file__).resolve().parent
    env = os.environ.get("TAPEGRAD_LIB_DIR")
    out = []
    if env:
        out += [Path(env) / (base + ".so"), Path(env) / (base + ".so.0")]
    out += [here / (base + ".so")]
    # Installed: PREFIX/lib/python3.X/dist-packages/tapegrad -> PREFIX/lib
    if here.parent.name in ("dist-packages", "site-packages") and len(here.parents) > 2:
        prefix_lib = here.parents[2]
        out += [prefix_lib / (base + ".so.0"), prefix_lib / (base + ".so")]
    # In the repository: python/tapegrad -> build/<real>
    out += [here.parents[1] / build / (base + ".so")]
    return out


_cache = {}
_lock = threading.Lock()


def load(dtype):
    """The Lib for "float32" or "float64" (loaded once)."""
    if dtype not in _NAMES:
        raise ValueError("dtype must be 'float32' or 'float64', not %r" % (dtype,))
    with _lock:
        if dtype in _cache:
            return _cache[dtype]
        base, real, build = _NAMES[dtype]
        tried = candidates(dtype)
        path = next((p for p in tried if p.is_file()), None)
        if path is None:
            raise ImportError(
                "tapegrad: cannot find %s.so for dtype %s; looked in:\n  %s\n"
                "build it with `make%s` in the repository, or set TAPEGRAD_LIB_DIR"
                % (base, dtype, "\n  ".join(str(p) for p in tried),
                   "" if real == "float" else " REAL=double"))
        ffi = cffi.FFI()
        ffi.cdef(CDEF.replace("TG_REAL", real))
        ffi.cdef(OPTIONAL_CDEF)
        ffi.cdef(LIBC_CDEF)
        lib = ffi.dlopen(str(path))
        libc = ffi.dlopen(None)
        # cffi resolves a function at its first use under a lock of its own; a
        # finalizer that the garbage collector runs in the middle of that and
        # calls a function not yet used would wait for ever.  Resolve all now.
        for name in re.findall(r"\b(tg_\w+)\s*\(", CDEF):
            getattr(lib, name)
        have = set()
        for name in re.findall(r"\b(tg_\w+)\s*\(", OPTIONAL_CDEF):
            try:
                getattr(lib, name)
                have.add(name)
            except AttributeError:
                pass
        for name in ("open_memstream", "fclose", "free"):
            getattr(libc, name)
        _cache[dtype] = Lib(dtype, ffi, lib, libc, path)
        _cache[dtype].optional = have
        return _cache[dtype]
