/* tapegrad.h — the whole public API of tapegrad, a tape-based reverse-mode
 * automatic-differentiation engine.  Record ops on a tape as they run, call
 * tg_backward() once, read the gradients.  An RNN unrolled over T steps is just
 * a longer tape: back-propagation through time is the same reverse sweep.
 *
 * Conventions
 *  - Every object hangs off a tg_ctx; there is no global state.  A context and
 *    everything made from it belong to one thread at a time.
 *  - Calls that can fail return a tg_status (or NULL); the reason is then in
 *    tg_errmsg(ctx).  Nothing aborts on a caller's mistake: every call takes
 *    NULL for any object and returns its "nothing" (0, NULL, NaN, -1 for an
 *    index, TG_ERR_ARG for a status); frees and setters do nothing.
 *  - Op calls chain: an op given a NULL input returns NULL at once and keeps
 *    the first error message, so a whole expression can be checked once.
 *  - Tensors are dense, row-major, at most 2-D.  Columns are the batch: a
 *    weight U is [hidden, input] and an input x_t is [input, batch].  A shape
 *    [n] is a column vector (n x 1) and broadcasts over columns.
 *  - Ownership is written beside each function: "owned by the tape" means the
 *    pointer stays valid until tg_tape_reset() or tg_tape_free().
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the API: the library is built with hidden visibility, so only what
 * carries TG_API is exported (tests/exports.sh checks; --mark adds it). */
#if defined(__GNUC__) || defined(__clang__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

/* The scalar type.  A library built with `make REAL=double` is compiled with
 * TG_REAL_DOUBLE, and so must be every program that includes this header for
 * it (pkg-config tapegrad64 says so); tg_ctx_new() refuses a mismatch. */
#ifdef TG_REAL_DOUBLE
typedef double tg_real;
#else
typedef float tg_real;
#endif

#define TG_VERSION "0.1.0"

typedef struct tg_ctx tg_ctx;       /* allocator, op table, RNG, last error */
typedef struct tg_tape tg_tape;     /* the recorded ops of one forward pass */
typedef struct tg_tensor tg_tensor; /* a tape entry or a parameter */
typedef struct tg_params tg_params; /* named parameters in one contiguous buffer */

typedef enum tg_status {
    TG_OK = 0,
    TG_ERR_ARG,      /* a bad argument: NULL, negative size, bad option */
    TG_ERR_SHAPE,    /* operand shapes do not fit the op */
    TG_ERR_NOMEM,    /* the allocator said no */
    TG_ERR_NOTFOUND, /* unknown op or parameter name */
    TG_ERR_NONFINITE,/* a NaN or Inf where a finite number is required */
    TG_ERR_PARSE,    /* a model, data or params file is malformed */
    TG_ERR_IO,       /* a file could not be read or written */
    TG_ERR_LIMIT,    /* a documented size limit was exceeded */
    TG_ERR_CHECK     /* a gradient check failed its tolerance */
} tg_status;

/* ---- context ------------------------------------------------------------ */

/* A replaceable allocator (tests use one that fails the Nth call).  realloc
 * may be NULL, in which case alloc+copy+free is used. */
typedef struct tg_allocator {
    void *(*alloc)(size_t size, void *user);
    void *(*realloc)(void *ptr, size_t old_size, size_t new_size, void *user);
    void (*free)(void *ptr, size_t size, void *user);
    void *user;
} tg_allocator;

/* New context.  alloc may be NULL (malloc/free); it is copied.  Returns NULL
 * only when even the context cannot be allocated or tg_real does not match the
 * library's (then a message goes to stderr).  Free with tg_ctx_free(). */
#define tg_ctx_new(alloc) tg_ctx_new_checked((alloc), sizeof(tg_real))
TG_API tg_ctx *tg_ctx_new_checked(const tg_allocator *alloc, size_t real_size);
/* Frees the context.  Tapes and params made from it must be freed first. */
TG_API void tg_ctx_free(tg_ctx *ctx);

/* The last error's status and message.  The string is owned by ctx and valid
 * until the next failing call.  Every failing status comes with a non-empty
 * message.  A NULL ctx gives TG_ERR_ARG and a fixed message saying so. */
TG_API tg_status tg_status_last(const tg_ctx *ctx);
TG_API const char *tg_errmsg(const tg_ctx *ctx);
TG_API void tg_clear_error(tg_ctx *ctx);
TG_API const char *tg_status_name(tg_status s);

/* The context's random generator (xoshiro256**); deterministic per seed. */
TG_API void tg_seed(tg_ctx *ctx, uint64_t seed);
TG_API double tg_rand_uniform(tg_ctx *ctx);           /* in [0, 1) */
TG_API double tg_rand_normal(tg_ctx *ctx);            /* mean 0, std 1 */

/* Threads.  With n >= 2, products large enough to gain (m n k of about 64^3
 * and up) are split over n threads: the calling thread and n - 1 workers the
 * context owns (started at the first such product, joined by
 * tg_ctx_set_threads(ctx, 1) and tg_ctx_free(); idle ones sleep).  The
 * context still belongs to one thread at a time: calls return only when
 * their workers are done.  Two thread pools on the same cores slow both
 * down, so n >= 2 also makes BLAS single-threaded (OpenBLAS:
 * openblas_set_num_threads(1)), which is process-wide: every context and
 * any other BLAS user in the program get one BLAS thread.  Going back to
 * n = 1 joins the workers but leaves BLAS at one thread; call
 * openblas_set_num_threads() to give BLAS its threads back.  tapegrad splits
 * only while BLAS runs one thread.  The default is 1: nothing is split and
 * BLAS keeps its own threading.  n from 1 to TG_MAX_THREADS, else
 * TG_ERR_ARG; TG_ERR_NOMEM leaves the setting as it was.  A worker that
 * cannot start is not an error: its share runs on the calling thread. */
#define TG_MAX_THREADS 64
TG_API tg_status tg_ctx_set_threads(tg_ctx *ctx, int n);
TG_API int tg_ctx_threads(const tg_ctx *ctx);

/* ---- tensors: read-only views -------------------------------------------- */

TG_API int tg_rows(const tg_tensor *t);
TG_API int tg_cols(const tg_tensor *t);
TG_API int tg_ndim(const tg_tensor *t);               /* 1 for [n], 2 for [r, c] */
TG_API size_t tg_size(const tg_tensor *t);            /* rows * cols */
/* Values and gradient, row-major, owned by the tape or params.  tg_grad()
 * is NULL before tg_backward() and for tensors that need no gradient. */
TG_API tg_real *tg_data(tg_tensor *t);
TG_API tg_real *tg_grad(tg_tensor *t);
TG_API const char *tg_tensor_op(const tg_tensor *t);  /* op name; "input", "param" for leaves */
TG_API int tg_tensor_arity(const tg_tensor *t);
TG_API tg_tensor *tg_tensor_input(tg_tensor *t, int i);
TG_API int tg_tensor_index(const tg_tensor *t);       /* position on the tape, -1 for params */
/* Attach a label (borrowed: must outlive the tape's recording), a time step
 * and a source location to a tape entry; graph dumps and errors show them. */
TG_API void tg_tensor_set_label(tg_tensor *t, const char *label, int step);
TG_API void tg_tensor_set_source(tg_tensor *t, const char *file, int line, int column);
TG_API const char *tg_tensor_label(const tg_tensor *t, int *step);
/* The scalar value of a 1x1 tensor, as double; NaN for any other size. */
TG_API double tg_item(tg_tensor *t);

/* ---- parameters ----------------------------------------------------------- */

/* Parameters persist across tapes.  All values share one contiguous buffer and
 * all gradients another (one optimizer loop, one allreduce). */
TG_API tg_params *tg_params_new(tg_ctx *ctx);
TG_API void tg_params_free(tg_params *ps);
/* Adds a zero-initialised parameter of shape [rows] (cols = 0) or [rows, cols].
 * The name is copied.  The tensor is owned by ps.  Adding may move the
 * buffers: take tg_params_values() again afterwards. */
TG_API tg_tensor *tg_params_add(tg_params *ps, const char *name, int rows, int cols);
TG_API tg_tensor *tg_params_find(tg_params *ps, const char *name);   /* NULL if absent */
TG_API int tg_params_count(const tg_params *ps);
TG_API tg_tensor *tg_params_at(tg_params *ps, int i);
TG_API const char *tg_params_name(const tg_params *ps, int i);
TG_API size_t tg_params_total(const tg_params *ps);  /* number of scalars */
TG_API tg_real *tg_params_values(tg_params *ps);     /* the contiguous buffers */
TG_API tg_real *tg_params_grads(tg_params *ps);
TG_API void tg_params_zero_grad(tg_params *ps);
/* Global L2 norm of all gradients; if max_norm > 0 and the norm exceeds it,
 * scales every gradient so that the norm equals max_norm.  Returns the norm
 * before clipping. */
TG_API double tg_params_clip_grad(tg_params *ps, double max_norm);

/* ---- optimizers ------------------------------------------------------------
 * One loop over the contiguous value and gradient buffers of a tg_params.
 * Each kind is the update torch.optim defines.  A step first clamps every
 * gradient element to [-clip_value, clip_value] (if clip_value > 0), then
 * scales the gradients so that their global norm is at most clip (if clip >
 * 0; the norm of the clamped gradients), adds the weight decay, then updates:
 *   SGD       p -= lr g
 *   MOMENTUM  b = mu b + g;  p -= lr (nesterov ? g + mu b : b)
 *   ADAM      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *             p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   RMSPROP   v = rho v + (1-rho) g^2;  p -= lr g / (sqrt(v) + eps)
 *   ADAGRAD   s += g^2;  p -= lr g / (sqrt(s) + eps)
 *             (torch.optim.Adagrad with lr_decay 0, initial accumulator 0)
 * With eps_inside, ADAM, RMSPROP and ADAGRAD put eps under the root:
 * m_hat / sqrt(v_hat + eps), g / sqrt(v + eps), g / sqrt(s + eps).  These
 * three need eps > 0 (tg_optim_new refuses 0, negative and NaN: with 0, a
 * parameter whose gradient is zero becomes 0/0).
 * Weight decay is L2 (g += wd p) unless decoupled (p -= lr wd p first, as
 * AdamW).  Gradients are left as the step used them (clipped, decayed). */
typedef struct tg_optim tg_optim;
typedef enum tg_optim_kind {
    TG_OPTIM_SGD, TG_OPTIM_MOMENTUM, TG_OPTIM_ADAM, TG_OPTIM_RMSPROP, TG_OPTIM_ADAGRAD
} tg_optim_kind;

typedef struct tg_optim_opts {
    tg_optim_kind kind;
    double lr;
    double momentum;      /* MOMENTUM: mu */
    int nesterov;         /* MOMENTUM: Nesterov's look-ahead form */
    double beta1, beta2;  /* ADAM */
    double rho;           /* RMSPROP: decay of the squared-gradient average */
    double eps;           /* ADAM, RMSPROP, ADAGRAD: > 0 */
    double weight_decay;  /* 0: none */
    int decoupled;        /* weight decay applied to p, not added to g */
    double clip;          /* global gradient norm limit; 0: no clipping */
    double clip_value;    /* clamp each gradient element to [-X, X] first; 0: off */
    int eps_inside;       /* ADAM, RMSPROP, ADAGRAD: eps under the square root */
} tg_optim_opts;

/* The usual settings for kind: lr 0.01 (ADAM 0.001), momentum 0.9, betas 0.9
 * and 0.999, rho 0.99, eps 1e-8 (ADAGRAD 1e-10), no decay, no clipping. */
TG_API tg_optim_opts tg_optim_defaults(tg_optim_kind kind);
/* "sgd", "momentum", "adam", "rmsprop", "adagrad"; parsing returns -1 for an
 * unknown name, and the name of an unknown kind is "?". */
TG_API const char *tg_optim_kind_name(tg_optim_kind kind);
TG_API int tg_optim_kind_parse(const char *name);
/* An optimizer for every parameter ps has now or gets later (state grows
 * with the buffers, zero-filled).  opts is copied; ps is borrowed and must
 * outlive it.  NULL with the error in the context on a bad option. */
TG_API tg_optim *tg_optim_new(tg_params *ps, const tg_optim_opts *opts);
TG_API void tg_optim_free(tg_optim *o);
/* One update from the gradients in ps.  *grad_norm (may be NULL) gets the
 * global norm before clipping.  A NaN or Inf gradient norm changes nothing
 * and returns TG_ERR_NONFINITE. */
TG_API tg_status tg_optim_step(tg_optim *o, double *grad_norm);
TG_API const tg_optim_opts *tg_optim_get_opts(const tg_optim *o);
TG_API void tg_optim_set_lr(tg_optim *o, double lr);
/* Checkpoints: the steps taken (ADAM's t) and the per-scalar state buffers,
 * laid out like tg_params_values() (a parameter's state is at the same
 * offset as its values): none for SGD, "velocity" for MOMENTUM, "m" and "v"
 * for ADAM, "sq" for RMSPROP, "sum" for ADAGRAD.  Buffers are owned by o; write into them to
 * restore a state. */
TG_API uint64_t tg_optim_steps(const tg_optim *o);
TG_API void tg_optim_set_steps(tg_optim *o, uint64_t steps);
TG_API int tg_optim_state_count(const tg_optim *o);
TG_API tg_real *tg_optim_state(tg_optim *o, int k, const char **name);

/* ---- the tape ------------------------------------------------------------- */

TG_API tg_tape *tg_tape_new(tg_ctx *ctx);
TG_API void tg_tape_free(tg_tape *tape);
/* Forgets every entry; keeps the memory, so a warm tape allocates nothing. */
TG_API void tg_tape_reset(tg_tape *tape);
TG_API tg_ctx *tg_tape_ctx(tg_tape *tape);
TG_API int tg_tape_length(const tg_tape *tape);
TG_API tg_tensor *tg_tape_at(tg_tape *tape, int i);
TG_API size_t tg_tape_bytes(const tg_tape *tape);     /* arena bytes reserved */
/* Check every value as it is recorded and every gradient as it is swept;
 * the first NaN/Inf fails with TG_ERR_NONFINITE naming entry, op and source. */
TG_API void tg_tape_detect_anomaly(tg_tape *tape, int on);
/* With keep = 0, tg_backward() recycles an entry's gradient buffer as soon as
 * the entry has passed it on to its inputs, so gradient memory is the live
 * set of a step or two instead of the whole tape, and tg_grad() of tape
 * entries is NULL afterwards (parameters' and leaves' gradients stay).  For
 * training loops; the default (1) keeps every gradient for inspection. */
TG_API void tg_tape_keep_grads(tg_tape *tape, int keep);
/* Training mode (off by default; a reset keeps it): entries recorded while
 * it is on apply dropout, with masks drawn from the context's generator, so
 * a run reproduces from its seed; off, dropout is the identity. */
TG_API void tg_tape_set_training(tg_tape *tape, int on);
TG_API int tg_tape_training(const tg_tape *tape);

/* A leaf holding data, copied in (data may be NULL: zeros).  cols = 0 makes a
 * 1-D [rows] tensor.  If requires_grad, tg_grad() gives dL/d(leaf). */
TG_API tg_tensor *tg_input(tg_tape *tape, int rows, int cols, const tg_real *data, int requires_grad);
/* The same, but borrowing data instead of copying it: data must stay valid
 * and unchanged until tg_tape_reset() or tg_tape_free().  No gradient. */
TG_API tg_tensor *tg_input_ref(tg_tape *tape, int rows, int cols, const tg_real *data);

/* ---- ops ------------------------------------------------------------------
 * Each records one entry and returns it (owned by the tape), or NULL with an
 * error in the context.  Elementwise binary ops broadcast a dimension of 1. */
TG_API tg_tensor *tg_matmul(tg_tape *tp, tg_tensor *a, tg_tensor *b);   /* a @ b */
TG_API tg_tensor *tg_add(tg_tape *tp, tg_tensor *a, tg_tensor *b);
TG_API tg_tensor *tg_sub(tg_tape *tp, tg_tensor *a, tg_tensor *b);
TG_API tg_tensor *tg_mul(tg_tape *tp, tg_tensor *a, tg_tensor *b);      /* elementwise */
TG_API tg_tensor *tg_scale(tg_tape *tp, tg_tensor *a, double alpha, double beta); /* alpha*a + beta */
TG_API tg_tensor *tg_tanh(tg_tape *tp, tg_tensor *a);
TG_API tg_tensor *tg_sigmoid(tg_tape *tp, tg_tensor *a);
TG_API tg_tensor *tg_relu(tg_tape *tp, tg_tensor *a);
TG_API tg_tensor *tg_exp(tg_tape *tp, tg_tensor *a);
TG_API tg_tensor *tg_log(tg_tape *tp, tg_tensor *a);
TG_API tg_tensor *tg_sum(tg_tape *tp, tg_tensor *a);                    /* 1x1 */
TG_API tg_tensor *tg_mean(tg_tape *tp, tg_tensor *a);                   /* 1x1 */
TG_API tg_tensor *tg_squared_error(tg_tape *tp, tg_tensor *o, tg_tensor *y); /* sum (y-o)^2 */
/* Sum over columns of -sum_i y_i log softmax(z)_i; y holds target
 * probabilities (one-hot) in the shape of z.  Stable for large logits. */
TG_API tg_tensor *tg_softmax_cross_entropy(tg_tape *tp, tg_tensor *z, tg_tensor *y);
TG_API tg_tensor *tg_concat(tg_tape *tp, int n, tg_tensor *const *parts); /* stack rows */
TG_API tg_tensor *tg_slice(tg_tape *tp, tg_tensor *a, int start, int count); /* rows */
TG_API tg_tensor *tg_transpose(tg_tape *tp, tg_tensor *a);
TG_API tg_tensor *tg_stop_gradient(tg_tape *tp, tg_tensor *a);          /* value, no gradient */

/* Any op by its table name, built-in or registered.  attrs (may be NULL)
 * holds the op's numeric attributes in the order its documentation gives. */
TG_API tg_tensor *tg_apply(tg_tape *tp, const char *op, int n, tg_tensor *const *in,
                           int n_attrs, const double *attrs);

/* ---- the op table --------------------------------------------------------- */

/* An op as embedding code defines it.  forward fills tg_data(out) from the
 * inputs; backward adds (+=) into tg_grad(input) for each input whose
 * tg_grad() is not NULL, given tg_grad(out).  shape computes the output shape
 * from the input shapes and returns 0, or writes a message into err and
 * returns -1 (err holds err_len bytes; the library terminates it).  Attributes
 * are read back with tg_attr() (NaN past TG_MAX_ATTRS).  All three functions
 * are required: an op with no backward would leave its inputs' gradients
 * silently unset, so registration refuses it ("op X has no backward").  The
 * name is an identifier of at most 64 characters and not one the model
 * language gives a meaning (input, param, B, t, the sections of a model
 * file, the init functions: the list is in core/optable.c). */
typedef struct tg_op_spec {
    const char *name;  /* copied */
    int arity;         /* number of inputs; -1 for any number >= 1 */
    int n_attrs;       /* number of numeric attributes */
    int (*shape)(int n, const int (*in)[2], const double *attrs, int out[2],
                 char *err, size_t err_len);
    void (*forward)(tg_tensor *out);
    void (*backward)(tg_tensor *out);
} tg_op_spec;

TG_API tg_status tg_op_register(tg_ctx *ctx, const tg_op_spec *spec);
TG_API int tg_op_exists(const tg_ctx *ctx, const char *name);
TG_API double tg_attr(const tg_tensor *t, int i);
/* Names of every op in the table, in registration order (built-ins first). */
TG_API int tg_op_count(const tg_ctx *ctx);
TG_API const char *tg_op_name(const tg_ctx *ctx, int i);
/* Output shape of an op for given input shapes, without recording anything
 * (model checkers use it).  Returns TG_OK or TG_ERR_SHAPE with a message. */
TG_API tg_status tg_op_shape(tg_ctx *ctx, const char *op, int n, const int (*in)[2],
                             int n_attrs, const double *attrs, int out[2]);

/* ---- the reverse sweep ----------------------------------------------------- */

/* Seeds dloss/dloss = 1 (loss must be 1x1 and on this tape), walks the tape
 * backwards once and accumulates (+=) into parameter gradients.  Gradients of
 * tape entries are zeroed first, so backward may run again on the same tape. */
TG_API tg_status tg_backward(tg_tape *tape, tg_tensor *loss);

/* Debugging views (per-step gradient norms, dumps) watch the sweep: fn is
 * called once with entry = NULL before the first entry, then after each
 * entry's backward.  NULL removes it.  Costs one branch per entry when off. */
typedef void (*tg_sweep_hook)(tg_tensor *entry, void *user);
TG_API void tg_tape_set_sweep_hook(tg_tape *tape, tg_sweep_hook fn, void *user);

/* ---- debugging: tape dumps, first bad number, gradient norms -------------- */

/* A dump lists every tape entry (index, op, label[t=step], FILE:LINE:COL,
 * inputs, shape, a summary of the value and, after tg_backward(), of the
 * gradient) and the parameters the tape reads.  TEXT is one whitespace-
 * separated line per entry (for grep and diff), JSON the same facts for
 * tools, DOT a Graphviz graph with a cluster per time step and NaN/Inf
 * outlined in red.  Entries without a label take the step of what reads them. */
typedef enum tg_dump_format { TG_DUMP_TEXT, TG_DUMP_JSON, TG_DUMP_DOT } tg_dump_format;

typedef struct tg_dump_opts {
    int grads;            /* also summarise gradients (after tg_backward) */
    int fold;             /* TEXT, DOT: show the first and last step, fold the rest */
    int max_values;       /* print the values of tensors this small: 0 means 4, -1 never */
    tg_tensor *loss;      /* drawn as the loss; NULL: the last entry if backward ran from it */
    const char *const *targets; /* NULL-terminated labels of target inputs; NULL:
                                   inputs read as the target of a loss op */
    const char *title;    /* e.g. the model file, shown at the top; may be NULL */
} tg_dump_opts;

/* Writes the tape to out (opts may be NULL).  TG_ERR_IO if writing fails. */
TG_API tg_status tg_tape_dump(tg_tape *tape, FILE *out, tg_dump_format fmt, const tg_dump_opts *opts);
TG_API const char *tg_dump_format_name(tg_dump_format fmt); /* "text", "json", "dot" */
TG_API int tg_dump_format_parse(const char *name);          /* -1 if unknown */

/* The first NaN or Inf on the tape: the first entry whose value is not
 * finite, else (if loss is not NULL) the first gradient in sweep order.
 * Returns TG_ERR_NONFINITE with a message like anomaly mode's (entry, op,
 * label[t=], FILE:LINE:COL, its inputs' summaries), or TG_OK. */
TG_API tg_status tg_tape_check_finite(tg_tape *tape, tg_tensor *loss);

/* Per-step gradient norms, the vanishing/exploding picture of BPTT.  Runs
 * tg_backward(tape, loss) and records, for each time step t (a row) and each
 * parameter of ps (a column; ps NULL: those the tape reads), the norm of the
 * part of its gradient that step t's entries added; then one column per
 * labelled equation, |dL/d label[t]|.  Row -1 of a parameter column is the
 * norm of all it gained in the sweep.  NULL with the error in the context
 * (the sweep's own errors included).  Free with tg_grad_norms_free().  Where
 * tg_model_unroll stacked a chunk of steps' U @ x (models/README.md, Fusion),
 * that entry's dU counts at the chunk's first step; a tape watched (_watch)
 * before it is recorded gets the per-step entries. */
typedef struct tg_grad_norms tg_grad_norms;
TG_API tg_grad_norms *tg_grad_norms_new(tg_tape *tape, tg_tensor *loss, tg_params *ps);
/* The same table for sweeps the caller runs, such as tg_model_backprop under
 * a memory budget, whose tape holds one segment at a time: _watch sets the
 * tape's sweep and segment hooks (calling any set before) and returns an
 * empty table for the parameters of ps (required); every sweep until
 * tg_grad_norms_finish() (which puts the hooks back and fills the table)
 * adds to it.  NULL / a status with the error in the context. */
TG_API tg_grad_norms *tg_grad_norms_watch(tg_tape *tape, tg_params *ps);
TG_API tg_status tg_grad_norms_finish(tg_grad_norms *gn);
TG_API void tg_grad_norms_free(tg_grad_norms *gn);
TG_API void tg_grad_norms_size(const tg_grad_norms *gn, int *rows, int *cols);
TG_API int tg_grad_norms_step(const tg_grad_norms *gn, int row);    /* -1: entries without a step */
TG_API const char *tg_grad_norms_name(const tg_grad_norms *gn, int col, int *is_param); /* owned by gn */
TG_API double tg_grad_norms_at(const tg_grad_norms *gn, int row, int col);  /* NaN where none */
/* A table for people, or CSV (step,<params>,dL/d<name>...; a last "total" row). */
TG_API tg_status tg_grad_norms_write(const tg_grad_norms *gn, FILE *out, int csv);

/* ---- gradient check --------------------------------------------------------- */

/* Builds the function to check on a reset tape and returns its 1x1 output
 * (or NULL on error). */
typedef tg_tensor *(*tg_build_fn)(tg_tape *tape, void *user);

typedef struct tg_gradcheck_opts {
    double eps;        /* step; 0 picks one for the precision */
    double tol;        /* pass if |analytic - numeric| <= tol * max(1, |a|, |n|); 0 picks */
    FILE *report;      /* one line per parameter, or NULL */
} tg_gradcheck_opts;

typedef struct tg_gradcheck_result {
    double max_err;    /* worst scaled error over all parameters */
    int worst_param;   /* index into ps of the worst, -1 if none */
    size_t worst_index;/* element of that parameter */
    size_t checked;    /* scalars compared */
    size_t refined;    /* of those, judged by the refined estimate (below) */
    size_t unresolved; /* refinement could not bound its error: 5-point kept */
} tg_gradcheck_result;

/* Compares the gradients tg_backward() gives for every parameter in ps with
 * 5-point central finite differences of build().  A scalar that disagrees by
 * more than tol / 2 is compared again with a least-squares fit over 12 to 96
 * wider steps (up to 200 eps) if that fit's error bound (noise and
 * truncation) is within tol; where none is (a kink, noise) the 5-point
 * verdict stands.  Uses and resets tape.
 * Returns TG_OK, TG_ERR_CHECK past tolerance, or the error build() raised.
 * result and opts may be NULL. */
TG_API tg_status tg_gradcheck(tg_tape *tape, tg_params *ps, tg_build_fn build, void *user,
                              const tg_gradcheck_opts *opts, tg_gradcheck_result *result);

/* ---- models: YAML model files, data and params files (models/) ----------
 * (this section is owned by the models work; see models/README.md) */

/* A model file declares dims, params, per-step inputs, targets and states, the
 * equations of one time step, outputs and a loss; it is parsed, checked and
 * compiled once, then unrolled onto a tape for any number of steps.  Model,
 * data and params files are plain YAML data; every problem is reported as
 * "FILE:LINE:COL: message" in tg_errmsg(). */
typedef struct tg_model tg_model;     /* a checked, compiled model file */
typedef struct tg_dataset tg_dataset; /* sequences read from a data file */

/* A dimension to override the file's `dims` with, e.g. {"hidden", 3};
 * read during the load only. */
typedef struct tg_dim { const char *name; int value; } tg_dim;

/* Reads, checks and compiles a model (from a file, or from text[0..len) with
 * filename used in messages).  dims may be NULL.  Returns NULL with the error
 * in tg_errmsg(ctx).  Ops are looked up now: register custom ops first.  The
 * model must outlive every tape it records on (labels point into it); free it
 * with tg_model_free(). */
TG_API tg_model *tg_model_load(tg_ctx *ctx, const char *path, const tg_dim *dims, int n_dims);
TG_API tg_model *tg_model_parse(tg_ctx *ctx, const char *filename, const char *text, size_t len,
                                const tg_dim *dims, int n_dims);
TG_API void tg_model_free(tg_model *m);

/* What a model declares, by role, in declaration order.  tg_model_var gives
 * the name (owned by the model; NULL if i is out of range) and the shape:
 * cols is 0 for a 1-D parameter [n] and TG_MODEL_BATCH where there is one
 * column per batch item (inputs, targets, states, most outputs); a dim has
 * rows = its value.  has_loss: the model declares a `loss`. */
typedef enum tg_model_role {
    TG_ROLE_PARAM, TG_ROLE_INPUT, TG_ROLE_TARGET, TG_ROLE_STATE, TG_ROLE_DIM, TG_ROLE_OUTPUT
} tg_model_role;
#define TG_MODEL_BATCH (-1)
TG_API const char *tg_model_name(const tg_model *m);
TG_API int tg_model_count(const tg_model *m, tg_model_role role);
TG_API const char *tg_model_var(const tg_model *m, tg_model_role role, int i, int *rows, int *cols);
TG_API int tg_model_has_loss(const tg_model *m);
/* How a variable is given (models/README.md): TG_VAR_PER_SEQUENCE for a
 * target declared `per: sequence` (tg_dataset_values holds one [rows, B]
 * block, not one per step), TG_VAR_REVERSE for a state declared `direction:
 * reverse`, TG_VAR_INDEX for an input or target declared `index: vocab`
 * (rows 1, integers 0..vocab-1; *vocab gets it, else 0; vocab may be NULL). */
enum { TG_VAR_PER_SEQUENCE = 1, TG_VAR_REVERSE = 2, TG_VAR_INDEX = 4 };
TG_API int tg_model_var_flags(const tg_model *m, tg_model_role role, int i, int *vocab);

/* Adds every declared parameter to ps (one already there with the same shape
 * is reused) and sets it by its `init`; random inits draw from the context's
 * generator, seeded with seed first. */
TG_API tg_status tg_model_init_params(const tg_model *m, tg_params *ps, uint64_t seed);

/* Params files: a mapping from parameter name to nested lists in the declared
 * shape.  Loading overwrites the named parameters (adding any missing from
 * ps); the rest keep their values.  Loading also reads a training checkpoint
 * (tg_trainer_save) in place of a params file.  Saving writes every model parameter
 * atomically (temporary file, fsync, rename). */
TG_API tg_status tg_params_load(tg_params *ps, const tg_model *m, const char *path);
TG_API tg_status tg_params_save(tg_params *ps, const tg_model *m, const char *path);

/* Data files: one sequence (a mapping from input/target name to a list of
 * steps) or a list of them.  The model is only read while loading.  Free
 * with tg_dataset_free(). */
TG_API tg_dataset *tg_dataset_load(tg_ctx *ctx, const tg_model *m, const char *path);
TG_API tg_dataset *tg_dataset_parse(tg_ctx *ctx, const tg_model *m, const char *filename,
                                    const char *text, size_t len);
/* One sequence of `steps` steps and `batch` columns, inputs uniform in
 * [-1, 1) and targets uniform in [0, 1), from a generator seeded with seed. */
TG_API tg_dataset *tg_dataset_random(tg_ctx *ctx, const tg_model *m, int steps, int batch, uint64_t seed);
TG_API void tg_dataset_free(tg_dataset *d);
TG_API int tg_dataset_count(const tg_dataset *d);            /* sequences */
TG_API int tg_dataset_steps(const tg_dataset *d, int seq);
TG_API int tg_dataset_batch(const tg_dataset *d, int seq);
/* All steps of input or target i of a sequence: step t is the [rows, batch]
 * block at t * rows * batch, row-major.  NULL for a target the file lacks.
 * Owned by d. */
TG_API const tg_real *tg_dataset_values(const tg_dataset *d, int seq, tg_model_role role, int i);

/* Records steps [t0, t0 + steps) of a batch of equal-length sequences onto a
 * tape (of the model's context).  Fill the inputs (all borrowed and read only
 * during the call), call, read the outputs (owned by the tape: valid until
 * tg_tape_reset).  To go on with the next chunk (truncated BPTT), copy
 * tg_data() of each final state out and pass it as state0: it starts the next
 * chunk without a gradient. */
typedef struct tg_unroll {
    tg_params *params;            /* holds every model parameter */
    int batch;                    /* B >= 1 */
    int t0, steps;                /* the steps to record */
    int seq_steps;                /* the sequence length T (for `loss_at: last`); 0: t0 + steps */
    const tg_real *const *inputs; /* per input, laid out as tg_dataset_values() */
    const tg_real *const *targets;/* per target, likewise; NULL: record no loss */
    const tg_real *const *state0; /* per state [rows, B] values; NULL (or a NULL entry): its init */
    int each_op;                  /* 1: one entry per operator, as the equations are written
                                     (what `tapegrad dump` shows); 0: an affine map and its
                                     activation as one `affine` entry (same values and
                                     gradients, fewer entries and buffers: training uses it) */
    tg_tensor *loss;              /* out: 1x1 sum of the per-step losses (or the last
                                     step's); NULL without targets or loss step */
    tg_tensor **outputs;          /* out: outputs[k * n_outputs + j] is output j at step t0 + k */
    tg_tensor **state;            /* out: each state after the last recorded step */
} tg_unroll;
TG_API tg_status tg_model_unroll(const tg_model *m, tg_tape *tape, tg_unroll *u);

/* The schedule of a bounded-memory sweep (Griewank & Walther, "Algorithm 799:
 * revolve", ACM TOMS 26(1), 2000): the steps are cut into segments of
 * `segment` steps (the last may be shorter); the tape holds one segment at a
 * time and `snapshots` saved states; `recomputed` segment-steps are recorded
 * again from a snapshot beyond the one forward pass. */
typedef struct tg_bptt_plan {
    int steps;              /* time steps swept */
    int segment;            /* steps per segment (= steps when the budget holds them all) */
    int segments;
    int snapshots;          /* states kept at once (the start state included) */
    long long forward_steps;/* time steps recorded in all, >= steps */
    long long recomputed;   /* forward_steps - steps */
    size_t tape_bytes;      /* the most the tape held (arena bytes reserved) */
    size_t snapshot_bytes;  /* the most the snapshots held */
} tg_bptt_plan;

/* Forward and reverse sweep of steps [u->t0, u->t0 + u->steps) in one call: adds (+=) the
 * gradient of the loss into every parameter of u->params (like tg_model_unroll followed by
 * tg_backward) and sets *loss to the loss's value.  u->targets are required.  memory = 0:
 * one recording of the whole range.  memory > 0 (bytes): the tape and the state snapshots
 * together never hold more than that; segments are recorded again from snapshots as the
 * binomial schedule says.  Too small a budget for one step: TG_ERR_ARG naming the least
 * budget that would do.  state_out (may be NULL; entries may be NULL): per state, a
 * [rows, B] buffer the caller owns, filled with the state after the last step (what
 * truncated BPTT passes on as state0).  plan (may be NULL): the schedule used.
 * The tape is reset (its first segment stays recorded, with gradients, until the next
 * reset).  Anomaly detection, the sweep hook and training mode of the tape apply to every
 * segment.  Under a budget the first call measures what a step costs and keeps that on the
 * tape (freed with it); a later call with the same model, batch, range, form and budget
 * reuses it, and the tape's memory too.  docs/memory.md tells how the budget is spent and
 * what is bit-exact. */
TG_API tg_status tg_model_backprop(const tg_model *m, tg_tape *tape, tg_unroll *u, size_t memory,
                                   tg_real *const *state_out, double *loss, tg_bptt_plan *plan);

/* Parses a size such as "256M", "1.5G", "4096", "64K" (powers of 1024; B optional) into
 * bytes.  TG_ERR_ARG with a message for anything else (negative, empty, overflow, junk). */
TG_API tg_status tg_parse_size(tg_ctx *ctx, const char *text, size_t *bytes);

/* Called by tg_model_backprop after each segment's reverse sweep, while the segment's entries
 * (values and, with tg_tape_keep_grads(tape, 1), gradients) are on the tape: steps
 * [t0, t0 + steps), segments in the order they are swept (last first).  Without a budget it
 * is called once for the whole range.  NULL removes it. */
typedef void (*tg_segment_hook)(tg_tape *tape, int t0, int steps, void *user);
TG_API void tg_tape_set_segment_hook(tg_tape *tape, tg_segment_hook fn, void *user);

/* ---- end of models -------------------------------------------------------- */

/* ---- training (train/) ---------------------------------------------------
 * A trainer fits a model's parameters to data: minibatches of equal-length
 * sequences shuffled from a seed, or a text cut into B parallel streams;
 * truncated BPTT with the state carried between chunks; gradient
 * accumulation; an optimizer and a learning-rate schedule; validation and
 * early stopping; one-file checkpoints that resume bit for bit.  It is the
 * loop of `tapegrad train`, of the Python binding and of MPI training. */

/* A vocabulary: the distinct characters of a text, sorted by code point;
 * symbol i is the i-th.  Text is read as UTF-8.  A byte that does not start
 * a valid UTF-8 sequence (a stray continuation byte, an overlong form, a
 * surrogate, a truncated sequence, a code point past U+10FFFF) is not an
 * error: it becomes its own character U+DC00 + byte, one of U+DC80 ..
 * U+DCFF (Python's "surrogateescape"), so any file trains and writing a symbol back gives the
 * original byte.  A NUL byte is an ordinary character. */
typedef struct tg_vocab tg_vocab;
/* A vocabulary of n distinct code points (any order; copied).  NULL with the
 * error in ctx for a duplicate or a value past U+10FFFF.  Free with
 * tg_vocab_free(). */
TG_API tg_vocab *tg_vocab_new(tg_ctx *ctx, const uint32_t *chars, int n);
TG_API void tg_vocab_free(tg_vocab *v);
TG_API int tg_vocab_size(const tg_vocab *v);
TG_API uint32_t tg_vocab_char(const tg_vocab *v, int i);        /* the code point of symbol i */
TG_API int tg_vocab_index(const tg_vocab *v, uint32_t cp);      /* its symbol, -1 if absent */
/* Writes symbol i as UTF-8 (an escaped byte U+DC00+b as the byte b) into
 * out[0..4); returns the number of bytes, 0 if i is out of range. */
TG_API int tg_vocab_utf8(const tg_vocab *v, int i, char out[4]);

/* What a trainer learns from.  Three kinds, one type:
 *  - sequences: a tg_dataset (YAML), or a CSV series (a header of input and
 *    target names, `name[i]` for row i of a vector; one line per step; a
 *    blank line between sequences; `#` comments).  A CSV value must be a
 *    finite number in tg_real's range: nan, inf, 1e39 in a float build, a
 *    NUL byte, are refused as FILE:LINE:COL;
 *  - text, one-hot over a vocabulary: for a model with one input and one
 *    target of size `vocab`.
 * Paths are read through the library's file reader (a FIFO or device is
 * refused, UTF-16 is told to be saved as UTF-8); "-" reads standard input.
 * NULL with the error in ctx.  Free with tg_trainset_free(). */
typedef struct tg_trainset tg_trainset;
/* Takes ownership of d (freed with the set, even on failure); m (read now
 * only) is the model d was loaded for. */
TG_API tg_trainset *tg_trainset_sequences(tg_ctx *ctx, const tg_model *m, tg_dataset *d);
TG_API tg_trainset *tg_trainset_csv(tg_ctx *ctx, const tg_model *m, const char *path);
TG_API tg_trainset *tg_trainset_csv_parse(tg_ctx *ctx, const tg_model *m, const char *filename,
                                          const char *text, size_t len);
/* vocab NULL: the text's own characters; else every character must be in it
 * ("FILE:LINE:COL: character 'x' (U+0078) is not in the vocabulary of N
 * characters").  The set keeps its own copy. */
TG_API tg_trainset *tg_trainset_text(tg_ctx *ctx, const char *path, const tg_vocab *vocab);
TG_API tg_trainset *tg_trainset_text_parse(tg_ctx *ctx, const char *filename, const char *text, size_t len,
                                           const tg_vocab *vocab);
/* By the path's ending: .yaml/.yml sequences, .csv a series, anything else
 * (and "-") text with vocab as above.  m is needed for sequences only. */
TG_API tg_trainset *tg_trainset_load(tg_ctx *ctx, const tg_model *m, const char *path, const tg_vocab *vocab);
TG_API void tg_trainset_free(tg_trainset *s);
TG_API int tg_trainset_is_text(const tg_trainset *s);
/* Sequences (a batched YAML sequence counts each column) or characters. */
TG_API size_t tg_trainset_length(const tg_trainset *s);
TG_API const tg_vocab *tg_trainset_vocab(const tg_trainset *s);  /* text only; owned by s */
/* Moves the last fraction (0 < fraction < 1) of s into a new set for
 * validation: the last sequences in file order, or the last characters of a
 * text (with the same vocabulary).  NULL with the error in ctx when either
 * part would be empty.  A split of sequences reads s's values: free it
 * before s. */
TG_API tg_trainset *tg_trainset_split(tg_trainset *s, double fraction);

typedef enum tg_reduction {
    TG_REDUCE_MEAN, /* the loss divided by its count: for text, the characters (steps x
                       columns) of the step; for sequences, the sequences (columns) of
                       the step; so one step of a text is nats per character */
    TG_REDUCE_SUM   /* the plain sum (min-char-rnn's; PyTorch's reduction='sum') */
} tg_reduction;

/* Learning-rate schedules, as torch.optim.lr_scheduler defines them, taken
 * per optimizer step after warm-up (s = steps taken since warm-up ended):
 *   CONSTANT  lr
 *   STEP      lr gamma^floor(s / step_size)                  (StepLR)
 *   EXP       lr gamma^s                                     (ExponentialLR)
 *   COSINE    lr (1 + cos(pi s / T)) / 2, T = the epochs' steps - warmup
 *             (CosineAnnealingLR, eta_min 0; max_steps pauses a run, it does not
 *             shorten T)
 *   PLATEAU   lr times gamma after an epoch ending `plateau_patience` epochs
 *             past the best loss (validation loss if any, else the epoch's
 *             training loss), improvement meaning below best (1 - 1e-4)
 *             (ReduceLROnPlateau, mode min, threshold 1e-4 rel, cooldown 0)
 * With warmup N > 0 the k-th step (k = 1..N) uses lr k / N before any of the
 * above. */
typedef enum tg_schedule {
    TG_SCHED_CONSTANT, TG_SCHED_STEP, TG_SCHED_EXP, TG_SCHED_COSINE, TG_SCHED_PLATEAU
} tg_schedule;
TG_API const char *tg_schedule_name(tg_schedule s);   /* "constant", "step", ... */
TG_API int tg_schedule_parse(const char *name);       /* -1 if unknown */

typedef struct tg_train_opts {
    tg_optim_opts optim;  /* the optimizer and its base learning rate */
    int epochs;           /* passes over the data (default 1) */
    uint64_t max_steps;   /* stop after this many optimizer steps in all; 0: no limit */
    int batch;            /* columns per minibatch; 0: a text's 1, else the first
                             sequence's batch */
    int bptt;             /* truncated BPTT in chunks of this many steps; 0: whole
                             sequences; -1 (the default): 64 for text, whole sequences
                             otherwise */
    int accumulate;       /* minibatches (chunks) per optimizer step (default 1) */
    tg_reduction reduction;
    tg_schedule schedule;
    int warmup;           /* steps of linear warm-up (default 0) */
    double gamma;         /* STEP, EXP, PLATEAU factor; 0: 0.1 (EXP: 0.99) */
    int step_size;        /* STEP: optimizer steps per decay (default 1000) */
    int plateau_patience; /* PLATEAU: epochs without improvement (default 10) */
    double target;        /* stop after an epoch whose mean loss is below; 0: never */
    int patience;         /* stop after this many epochs without a better validation
                             loss, keeping the best parameters; 0: never */
    uint64_t seed;        /* the shuffle's seed (default 1) */
    size_t memory;        /* a budget in bytes for what one chunk's sweep keeps (its tape
                             and state snapshots: tg_model_backprop); 0 (the default): no
                             budget, each chunk recorded whole.  Evaluation records under it
                             too (in segments, states carried, nothing recomputed) */
} tg_train_opts;

/* Adam (lr 0.001), one epoch, the rest as documented above. */
TG_API tg_train_opts tg_train_defaults(void);

/* Where a run is and how it goes; passed to the progress callback and
 * returned by tg_trainer_progress().  Losses are in the reduction's unit:
 * per character (text) or per sequence, whatever the reduction. */
typedef struct tg_train_progress {
    int epoch, epochs;        /* the epoch under way (1-based) of epochs */
    uint64_t step, total_steps; /* optimizer steps taken; planned for the run */
    double loss;              /* the epoch's mean loss so far (at an epoch's end: the epoch's) */
    double step_loss;         /* the last step's mean loss */
    double valid_loss;        /* the last validation loss; NAN before the first */
    double best_valid_loss;   /* the best so far; NAN before the first */
    double lr, grad_norm;     /* of the last step (grad norm before clipping) */
    double seconds;           /* training time, resumed runs included */
    int epoch_end;            /* 1 when this report closes an epoch */
    tg_bptt_plan plan;        /* the schedule of the last chunk's sweep (all zero before one) */
} tg_train_progress;

/* Why tg_trainer_run() returned TG_OK. */
typedef enum tg_train_end {
    TG_END_NONE,       /* not run yet, or not finished */
    TG_END_EPOCHS,     /* every epoch done */
    TG_END_MAX_STEPS,  /* max_steps reached */
    TG_END_TARGET,     /* an epoch's loss fell below target */
    TG_END_PATIENCE,   /* patience ran out (the best parameters are restored) */
    TG_END_STOPPED     /* tg_trainer_stop() or the progress callback */
} tg_train_end;

typedef struct tg_trainer tg_trainer;

/* A trainer for model m's parameters ps (both borrowed: they must outlive
 * the trainer; ps must hold every model parameter, initialised).  opts is
 * copied (NULL: the defaults).  NULL with the error in the model's context on
 * a bad option.  Free with tg_trainer_free(). */
TG_API tg_trainer *tg_trainer_new(const tg_model *m, tg_params *ps, const tg_train_opts *opts);
TG_API void tg_trainer_free(tg_trainer *tr);
/* The data (borrowed; must outlive the trainer's use).  valid may be NULL.
 * Checks that the sets fit the model and the options (a text needs one input
 * and one target of size vocab, or declared `index: vocab`, then fed the
 * character's index; batch fits the data; a model with a reverse state
 * trains on whole sequences, so a shorter bptt is TG_ERR_ARG) and plans the
 * epochs.  Training steps run the tape in training mode (dropout on);
 * evaluation does not.  Call before stepping; again to change data (the
 * position restarts). */
TG_API tg_status tg_trainer_set_data(tg_trainer *tr, const tg_trainset *train, const tg_trainset *valid);
/* One optimizer step (accumulate minibatches).  At the end of an epoch it
 * evaluates the validation set and applies target, patience and plateau.
 * TG_ERR_NONFINITE when the loss or a gradient is not finite: the message
 * says where the first non-finite value came from (entry, equation,
 * FILE:LINE:COL, step) when the model itself overflows. */
TG_API tg_status tg_trainer_step(tg_trainer *tr);
/* Steps to the end of the epoch under way. */
TG_API tg_status tg_trainer_epoch(tg_trainer *tr);
/* Steps until the epochs are done, max_steps, target, patience, or a stop;
 * tg_trainer_end() says which. */
TG_API tg_status tg_trainer_run(tg_trainer *tr);
TG_API tg_train_end tg_trainer_end(const tg_trainer *tr);
/* Mean loss of the model on a whole set (the options' batch and bptt, states
 * carried, no gradients, parameters unchanged). */
TG_API tg_status tg_trainer_evaluate(tg_trainer *tr, const tg_trainset *set, double *loss);
/* Asks the run to stop after the step under way.  Async-signal-safe (it sets
 * a flag), so a SIGINT handler may call it. */
TG_API void tg_trainer_stop(tg_trainer *tr);
/* Called after every step, then once more (epoch_end = 1) when the step
 * closed an epoch (validation done); returning nonzero stops the run like
 * tg_trainer_stop().  The callback may save a checkpoint (tg_trainer_save):
 * the position is then the place after the step.  NULL removes it. */
typedef int (*tg_train_progress_fn)(const tg_train_progress *p, void *user);
TG_API void tg_trainer_set_progress(tg_trainer *tr, tg_train_progress_fn fn, void *user);
/* The state now (owned by tr; valid until its next call). */
TG_API const tg_train_progress *tg_trainer_progress(const tg_trainer *tr);
TG_API const tg_train_opts *tg_trainer_opts(const tg_trainer *tr);
TG_API tg_optim *tg_trainer_optim(tg_trainer *tr);   /* owned by tr */

/* Data-parallel training: fn sees the step's gradients, summed over its
 * minibatches (the contiguous tg_params_grads() buffer of n scalars), and
 * stats[0] = the summed loss, stats[1] = its count (what MEAN divides by),
 * after backward and before the optimizer; an allreduce of both (sum) makes
 * every rank take the same step and add the same loss to the epoch's.  The
 * trainer then divides the gradients by stats[1] (MEAN) and steps.
 * tg_trainer_gather() calls it too, with stats NULL and n_stats 0.
 * Returning nonzero fails the step
 * (TG_ERR_IO, "gradient reduction failed").  NULL removes it. */
typedef int (*tg_train_reduce_fn)(tg_real *grads, size_t n, double *stats, int n_stats, void *user);
TG_API void tg_trainer_set_reduce(tg_trainer *tr, tg_train_reduce_fn fn, void *user);
/* Makes this trainer rank (0..size-1) of size that share each minibatch:
 * of a batch of c columns (a text's c streams) it computes columns
 * [rank c / size, (rank + 1) c / size) only, possibly none, so that size
 * trainers with the same options and data whose reduce hooks sum across
 * them take the steps one trainer takes on the whole batch.  Validation
 * runs whole on every rank.  Call before tg_trainer_set_data(). */
TG_API tg_status tg_trainer_set_shard(tg_trainer *tr, int rank, int size);
/* A shard carries the states of its own columns between chunks; this sums
 * every shard's through the reduce hook, so that the checkpoint saved next
 * holds them all (to resume with any number of ranks).  Every rank calls it
 * at the same step; nothing to do unsharded or between batches. */
TG_API tg_status tg_trainer_gather(tg_trainer *tr);

/* Checkpoints: one binary file (train/ckpt_file.h) with the parameters,
 * the optimizer state, the position (epoch, batch, chunk, step, the epoch's
 * loss sums, the carried states), the options, the vocabulary, the best
 * parameters (patience), the context's generator (dropout's masks resume
 * where they stopped) and the model file's own text with its dims, so the
 * file alone resumes a run and serves run/sample/dump/grad.  Saving is
 * atomic; tg_trainer_save() does not lock (the tool holds a lock for the
 * run). */
TG_API tg_status tg_trainer_save(tg_trainer *tr, const char *path);

typedef struct tg_checkpoint tg_checkpoint;
/* Opens and verifies a checkpoint (magic, version, checksums).  NULL with the
 * error in ctx ("PATH: not a tapegrad checkpoint", ...).  Close with
 * tg_checkpoint_close(). */
TG_API tg_checkpoint *tg_checkpoint_open(tg_ctx *ctx, const char *path);
TG_API void tg_checkpoint_close(tg_checkpoint *c);
/* 1 if path starts with the checkpoint magic (a MODEL or --params argument
 * may be a checkpoint). */
TG_API int tg_checkpoint_is(const char *path);
/* The model the run trained, parsed from the text the checkpoint holds with
 * the dims it was trained with (dims given here override them).  Free with
 * tg_model_free(). */
TG_API tg_model *tg_checkpoint_model(tg_checkpoint *c, const tg_dim *dims, int n_dims);
/* The model file's text as saved and its original path (owned by c). */
TG_API const char *tg_checkpoint_model_text(const tg_checkpoint *c, size_t *len, const char **path);
/* Copies the parameters into ps (adding any missing) after checking every
 * name and shape against m.  best = 1: the best parameters of a run with
 * patience (the last ones when it kept none). */
TG_API tg_status tg_checkpoint_params(tg_checkpoint *c, const tg_model *m, tg_params *ps, int best);
/* The vocabulary of a run on text; NULL otherwise.  Owned by c. */
TG_API const tg_vocab *tg_checkpoint_vocab(const tg_checkpoint *c);
/* The options the run was started with. */
TG_API tg_status tg_checkpoint_opts(const tg_checkpoint *c, tg_train_opts *opts);
/* Continues the run saved in c: the trainer (made with opts compatible with
 * tg_checkpoint_opts(), its data set) takes the parameters, optimizer state,
 * position and best parameters.  Every number read is checked against the
 * run it resumes, with a message naming the file and field ("PATH: field
 * 'position.batch' is -100000000; this run has 3 batches per epoch"). */
TG_API tg_status tg_trainer_resume(tg_trainer *tr, tg_checkpoint *c);

/* ---- end of training ------------------------------------------------------ */

#ifdef __cplusplus
}
#endif
#endif
