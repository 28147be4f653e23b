/* tapegrad.h — the whole public API of tapegrad, a tape-based reverse-mode
 * automatic-differentiation engine.  Record ops on a tape as they run, call
 * tg_backward() once, read the gradients.  An RNN unrolled over T steps is just
 * a longer tape: back-propagation through time is the same reverse sweep.
 *
 * Conventions
 *  - Every object hangs off a tg_ctx; there is no global state.  A context and
 *    everything made from it belong to one thread at a time.
 *  - Calls that can fail return a tg_status (or NULL); the reason is then in
 *    tg_errmsg(ctx).  Nothing aborts on a caller's mistake.
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
tg_ctx *tg_ctx_new_checked(const tg_allocator *alloc, size_t real_size);
/* Frees the context.  Tapes and params made from it must be freed first. */
void tg_ctx_free(tg_ctx *ctx);

/* The last error's status and message.  The string is owned by ctx and valid
 * until the next failing call. */
tg_status tg_status_last(const tg_ctx *ctx);
const char *tg_errmsg(const tg_ctx *ctx);
void tg_clear_error(tg_ctx *ctx);
const char *tg_status_name(tg_status s);

/* The context's random generator (xoshiro256**); deterministic per seed. */
void tg_seed(tg_ctx *ctx, uint64_t seed);
double tg_rand_uniform(tg_ctx *ctx);           /* in [0, 1) */
double tg_rand_normal(tg_ctx *ctx);            /* mean 0, std 1 */

/* ---- tensors: read-only views -------------------------------------------- */

int tg_rows(const tg_tensor *t);
int tg_cols(const tg_tensor *t);
int tg_ndim(const tg_tensor *t);               /* 1 for [n], 2 for [r, c] */
size_t tg_size(const tg_tensor *t);            /* rows * cols */
/* Values and gradient, row-major, owned by the tape or params.  tg_grad()
 * is NULL before tg_backward() and for tensors that need no gradient. */
tg_real *tg_data(tg_tensor *t);
tg_real *tg_grad(tg_tensor *t);
const char *tg_tensor_op(const tg_tensor *t);  /* op name; "input", "param" for leaves */
int tg_tensor_arity(const tg_tensor *t);
tg_tensor *tg_tensor_input(tg_tensor *t, int i);
int tg_tensor_index(const tg_tensor *t);       /* position on the tape, -1 for params */
/* Attach a label (borrowed: must outlive the tape's recording), a time step
 * and a source location to a tape entry; graph dumps and errors show them. */
void tg_tensor_set_label(tg_tensor *t, const char *label, int step);
void tg_tensor_set_source(tg_tensor *t, const char *file, int line, int column);
const char *tg_tensor_label(const tg_tensor *t, int *step);
/* The scalar value of a 1x1 tensor, as double. */
double tg_item(tg_tensor *t);

/* ---- parameters ----------------------------------------------------------- */

/* Parameters persist across tapes.  All values share one contiguous buffer and
 * all gradients another (one optimizer loop, one allreduce). */
tg_params *tg_params_new(tg_ctx *ctx);
void tg_params_free(tg_params *ps);
/* Adds a zero-initialised parameter of shape [rows] (cols = 0) or [rows, cols].
 * The name is copied.  The tensor is owned by ps.  Adding may move the
 * buffers: take tg_params_values() again afterwards. */
tg_tensor *tg_params_add(tg_params *ps, const char *name, int rows, int cols);
tg_tensor *tg_params_find(tg_params *ps, const char *name);   /* NULL if absent */
int tg_params_count(const tg_params *ps);
tg_tensor *tg_params_at(tg_params *ps, int i);
const char *tg_params_name(const tg_params *ps, int i);
size_t tg_params_total(const tg_params *ps);  /* number of scalars */
tg_real *tg_params_values(tg_params *ps);     /* the contiguous buffers */
tg_real *tg_params_grads(tg_params *ps);
void tg_params_zero_grad(tg_params *ps);
/* Global L2 norm of all gradients; if max_norm > 0 and the norm exceeds it,
 * scales every gradient so that the norm equals max_norm.  Returns the norm
 * before clipping. */
double tg_params_clip_grad(tg_params *ps, double max_norm);

/* ---- the tape ------------------------------------------------------------- */

tg_tape *tg_tape_new(tg_ctx *ctx);
void tg_tape_free(tg_tape *tape);
/* Forgets every entry; keeps the memory, so a warm tape allocates nothing. */
void tg_tape_reset(tg_tape *tape);
tg_ctx *tg_tape_ctx(tg_tape *tape);
int tg_tape_length(const tg_tape *tape);
tg_tensor *tg_tape_at(tg_tape *tape, int i);
size_t tg_tape_bytes(const tg_tape *tape);     /* arena bytes reserved */
/* Check every value as it is recorded and every gradient as it is swept;
 * the first NaN/Inf fails with TG_ERR_NONFINITE naming entry, op and source. */
void tg_tape_detect_anomaly(tg_tape *tape, int on);

/* A leaf holding data, copied in (data may be NULL: zeros).  cols = 0 makes a
 * 1-D [rows] tensor.  If requires_grad, tg_grad() gives dL/d(leaf). */
tg_tensor *tg_input(tg_tape *tape, int rows, int cols, const tg_real *data, int requires_grad);

/* ---- ops ------------------------------------------------------------------
 * Each records one entry and returns it (owned by the tape), or NULL with an
 * error in the context.  Elementwise binary ops broadcast a dimension of 1. */
tg_tensor *tg_matmul(tg_tape *tp, tg_tensor *a, tg_tensor *b);   /* a @ b */
tg_tensor *tg_add(tg_tape *tp, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_tape *tp, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_tape *tp, tg_tensor *a, tg_tensor *b);      /* elementwise */
tg_tensor *tg_scale(tg_tape *tp, tg_tensor *a, double alpha, double beta); /* alpha*a + beta */
tg_tensor *tg_tanh(tg_tape *tp, tg_tensor *a);
tg_tensor *tg_sigmoid(tg_tape *tp, tg_tensor *a);
tg_tensor *tg_relu(tg_tape *tp, tg_tensor *a);
tg_tensor *tg_exp(tg_tape *tp, tg_tensor *a);
tg_tensor *tg_log(tg_tape *tp, tg_tensor *a);
tg_tensor *tg_sum(tg_tape *tp, tg_tensor *a);                    /* 1x1 */
tg_tensor *tg_mean(tg_tape *tp, tg_tensor *a);                   /* 1x1 */
tg_tensor *tg_squared_error(tg_tape *tp, tg_tensor *o, tg_tensor *y); /* sum (y-o)^2 */
/* Sum over columns of -sum_i y_i log softmax(z)_i; y holds target
 * probabilities (one-hot) in the shape of z.  Stable for large logits. */
tg_tensor *tg_softmax_cross_entropy(tg_tape *tp, tg_tensor *z, tg_tensor *y);
tg_tensor *tg_concat(tg_tape *tp, int n, tg_tensor *const *parts); /* stack rows */
tg_tensor *tg_slice(tg_tape *tp, tg_tensor *a, int start, int count); /* rows */
tg_tensor *tg_transpose(tg_tape *tp, tg_tensor *a);
tg_tensor *tg_stop_gradient(tg_tape *tp, tg_tensor *a);          /* value, no gradient */

/* Any op by its table name, built-in or registered.  attrs (may be NULL)
 * holds the op's numeric attributes in the order its documentation gives. */
tg_tensor *tg_apply(tg_tape *tp, const char *op, int n, tg_tensor *const *in,
                    int n_attrs, const double *attrs);

/* ---- the op table --------------------------------------------------------- */

/* An op as embedding code defines it.  forward fills tg_data(out) from the
 * inputs; backward adds (+=) into tg_grad(input) for each input whose
 * tg_grad() is not NULL, given tg_grad(out).  shape computes the output shape
 * from the input shapes and returns 0, or writes a message into err and
 * returns -1.  Attributes are read back with tg_attr(). */
typedef struct tg_op_spec {
    const char *name;  /* copied */
    int arity;         /* number of inputs; -1 for any number >= 1 */
    int n_attrs;       /* number of numeric attributes */
    int (*shape)(int n, const int (*in)[2], const double *attrs, int out[2],
                 char *err, size_t err_len);
    void (*forward)(tg_tensor *out);
    void (*backward)(tg_tensor *out);
} tg_op_spec;

tg_status tg_op_register(tg_ctx *ctx, const tg_op_spec *spec);
int tg_op_exists(const tg_ctx *ctx, const char *name);
double tg_attr(const tg_tensor *t, int i);
/* Names of every op in the table, in registration order (built-ins first). */
int tg_op_count(const tg_ctx *ctx);
const char *tg_op_name(const tg_ctx *ctx, int i);
/* Output shape of an op for given input shapes, without recording anything
 * (model checkers use it).  Returns TG_OK or TG_ERR_SHAPE with a message. */
tg_status tg_op_shape(tg_ctx *ctx, const char *op, int n, const int (*in)[2],
                      int n_attrs, const double *attrs, int out[2]);

/* ---- the reverse sweep ----------------------------------------------------- */

/* Seeds dloss/dloss = 1 (loss must be 1x1 and on this tape), walks the tape
 * backwards once and accumulates (+=) into parameter gradients.  Gradients of
 * tape entries are zeroed first, so backward may run again on the same tape. */
tg_status tg_backward(tg_tape *tape, tg_tensor *loss);

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
} tg_gradcheck_result;

/* Compares the gradients tg_backward() gives for every parameter in ps with
 * 5-point central finite differences of build().  Uses and resets tape.
 * Returns TG_OK, TG_ERR_CHECK past tolerance, or the error build() raised.
 * result and opts may be NULL. */
tg_status tg_gradcheck(tg_tape *tape, tg_params *ps, tg_build_fn build, void *user,
                       const tg_gradcheck_opts *opts, tg_gradcheck_result *result);

/* ---- models: YAML model files, data and params files (models/) ----------
 * (this section is owned by the models work; see models/README.md) */

/* ---- end of models -------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif
