/* tg_internal.h — what the core, the ops, the model loader and the tests share
 * but an embedding program must not see: the tensor and op structs, the arena,
 * the error and allocation helpers. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include "tapegrad.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* uthash allocates through the context's allocator and reports running out of
 * memory instead of exiting: every function that adds to a hash declares
 * `tg_ctx *tg_hash_ctx` and `int tg_hash_oom`. */
#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) tg_alloc(tg_hash_ctx, (sz))
#define uthash_free(p, sz) tg_free(tg_hash_ctx, (p), (sz))
#define uthash_nonfatal_oom(e) (tg_hash_oom = 1)
#include <uthash.h>

#define TG_MAX_ATTRS 4
#define TG_ERRMSG_LEN 1024
#define TG_ALIGN 64 /* cache line; also what AVX-512 loads like */

/* An always-on invariant check: a broken invariant is our bug, not the
 * caller's, so it prints where and stops. */
#define TG_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) tg_assert_fail(#cond, __FILE__, __LINE__);                \
    } while (0)
void tg_assert_fail(const char *what, const char *file, int line)
    __attribute__((noreturn));

#ifdef TG_REAL_DOUBLE
#define TG_REAL_NAME "double"
#else
#define TG_REAL_NAME "float"
#endif

/* ---- arena: bump allocation in chunks that a reset keeps ---------------- */
typedef struct tg_chunk {
    struct tg_chunk *next;
    size_t size, used;
    /* data follows, TG_ALIGN-aligned */
} tg_chunk;

typedef struct tg_arena {
    tg_ctx *ctx;
    tg_chunk *head, *cur; /* cur: the chunk being filled */
    size_t reserved;      /* bytes held in all chunks */
    /* tg_model_backprop measures what a step costs: `exact` makes every new
     * chunk hold one request and count it rounded to a cache line (an upper
     * bound on what the same requests take bumped out of one chunk, whatever
     * their order); a nonzero `limit` refuses a chunk that would take
     * `reserved` past it and sets limit_hit. */
    bool exact, limit_hit;
    size_t limit;
} tg_arena;

void tg_arena_init(tg_arena *a, tg_ctx *ctx);
void *tg_arena_alloc_slow(tg_arena *a, size_t bytes);

/* A chunk's data starts one cache line after its header. */
#define TG_CHUNK_HEADER ((size_t)TG_ALIGN)

/* NULL + error on OOM.  Small requests (entries, scalars) are 16-byte
 * aligned so a tape of scalar ops stays dense; 64 bytes or more start on a
 * cache line.  Inline because recording an entry is a handful of these. */
static inline void *tg_arena_alloc(tg_arena *a, size_t bytes)
{
    bytes = bytes ? (bytes + 15) & ~(size_t)15 : 16;
    size_t align = bytes >= TG_ALIGN ? TG_ALIGN : 16;
    tg_chunk *c = a->cur;
    if (c) {
        size_t start = (c->used + align - 1) & ~(align - 1);
        if (start <= c->size && c->size - start >= bytes) {
            c->used = start + bytes;
            return (char *)c + TG_CHUNK_HEADER + start;
        }
    }
    return tg_arena_alloc_slow(a, bytes);
}
void tg_arena_reset(tg_arena *a);
void tg_arena_release(tg_arena *a);
/* Frees every chunk and keeps one of exactly `bytes` (rounded to a cache
 * line): a tape that must stay within a budget.  TG_ERR_NOMEM (with the
 * message) when the allocator says no. */
tg_status tg_arena_reserve(tg_arena *a, size_t bytes);

/* ---- ops ------------------------------------------------------------------ */
typedef int (*tg_shape_fn)(int n, const int (*in)[2], const double *attrs,
                           int out[2], char *err, size_t err_len);
typedef void (*tg_kernel_fn)(tg_tensor *out);

/* How the op-table test exercises an op: random inputs of these shapes,
 * values drawn from [lo, hi] but never within `kink` of a point where the op
 * is not differentiable. */
#define TG_TEST_MAX_IN 8
#define TG_TEST_MAX_CASES 6
typedef struct tg_op_test_case {
    int n_in;
    int shape[TG_TEST_MAX_IN][2];
    double attrs[TG_MAX_ATTRS];
} tg_op_test_case;

typedef struct tg_op_test {
    int n_cases;
    tg_op_test_case cases[TG_TEST_MAX_CASES];
    double lo, hi;   /* input range; both 0 means [-1, 1] */
    double kink;     /* distance kept from kink_at */
    double kink_at;
    double tol;      /* scaled error allowed in float32; double uses tol/1e6 */
    unsigned constant; /* bit i: input i is data (indices, a mask), not a parameter:
                          its gradient is not checked */
    /* Optional: adjusts freshly drawn values to what the op needs (indices, a
     * 0/1 mask) and away from its kinks, or returns -1 to have every input
     * drawn again.  v[i] holds input i's values, shape[i] its shape. */
    int (*prepare)(int n_in, tg_real *const *v, const int (*shape)[2], const double *attrs);
    bool training;   /* recorded on a training tape (dropout), the generator
                        reseeded before every evaluation: one mask throughout */
} tg_op_test;

/* A built-in op, defined in one file under ops/ and listed in ops/ops.def. */
typedef struct tg_builtin_op {
    const char *name;
    int arity;        /* -1: any number >= 1 */
    int n_attrs;
    bool differentiable; /* false: the output never needs a gradient */
    tg_shape_fn shape;
    tg_kernel_fn forward, backward;
    /* scratch (in tg_real) the op keeps between forward and backward */
    size_t (*scratch)(const tg_tensor *out);
    /* workspace (in tg_real) backward needs for one call only: the sweep
     * lends the tape's workspace to out->scratch for that call.  An op uses
     * this or scratch, not both. */
    size_t (*backward_scratch)(const tg_tensor *out);
    /* Optional: checks input values that forward would trust (indices in
     * range) before forward runs; writes a message and returns -1, and the
     * entry is not recorded (TG_ERR_ARG "op: message"). */
    int (*check)(const tg_tensor *out, char *err, size_t err_len);
    tg_op_test test;
} tg_builtin_op;

typedef enum tg_op_id {
#define TG_OP(ID, name) TG_OP_##ID,
#include "ops.def"
#undef TG_OP
    TG_OP_BUILTIN_COUNT
} tg_op_id;

#define TG_OP(ID, name) extern const tg_builtin_op tg_op_##name;
#include "ops.def"
#undef TG_OP

/* An entry in a context's op table: a built-in or a registered op. */
typedef struct tg_op {
    tg_builtin_op def;
    tg_ctx *ctx;        /* the context whose table holds it (kernels' settings, threads) */
    char *name_owned;   /* registered ops own their name */
    int id;             /* position in the table */
    UT_hash_handle hh;  /* by name */
} tg_op;

const tg_op *tg_op_lookup(const tg_ctx *ctx, const char *name);
const tg_op *tg_op_by_id(const tg_ctx *ctx, int id);
const tg_builtin_op *tg_builtin_at(int id);
/* Arity and attribute count against the op's definition; sets the error. */
tg_status tg_op_check_args(tg_ctx *ctx, const tg_builtin_op *d, int n, int n_attrs);

/* ---- tensors ---------------------------------------------------------------- */
enum { TG_KIND_NODE, TG_KIND_INPUT, TG_KIND_PARAM };

struct tg_tensor {
    tg_real *val;
    tg_real *grad;          /* NULL until backward, or if no gradient needed */
    tg_real *scratch;       /* op-owned scratch, on the tape's arena (or lent for backward) */
    const tg_op *op;        /* NULL for leaves */
    tg_tensor **in;         /* inputs, on the tape's arena */
    int n_in;
    int rows, cols;
    signed char ndim;
    unsigned char kind;
    unsigned char requires_grad;
    unsigned char train;    /* recorded on a training tape (tg_tape_set_training) */
    int index;              /* tape position; -1 for params */
    unsigned sweep;         /* the tape's sweep that last reached it from the loss */
    double attr[TG_MAX_ATTRS];
    const char *label;      /* borrowed */
    int step;               /* time step for labels, -1 none */
    const char *file;       /* borrowed: source of the equation */
    int line, column;
};

static inline size_t tg_numel(const tg_tensor *t) { return (size_t)t->rows * (size_t)t->cols; }

/* ---- context, tape, params ------------------------------------------------ */
/* matmul's choice of path (ops/matmul.c): direct loops for matrix-vector
 * and vector-matrix products (n == 1 or m == 1) whose matrix has at most
 * matmul_mv_max elements and for other products with m n k at most
 * matmul_small_mnk; BLAS for the rest.  Per context, so that tests can drive
 * a shape down either path without global state. */
#define TG_MATMUL_SMALL_MNK 64
#define TG_MATMUL_MV_MAX (512 * 512)

struct tg_ctx {
    tg_allocator alloc;
    size_t matmul_small_mnk, matmul_mv_max;
    int threads;            /* threads: tg_ctx_set_threads() (core/threads.c) */
    size_t par_min_mnk;     /* threads: products split only from this m n k (ops/gemm.c) */
    struct tg_pool *pool;   /* threads: the workers; NULL while threads is 1 */
    tg_status status;
    char errmsg[TG_ERRMSG_LEN];
    uint64_t rng[4];
    tg_op *ops;             /* uthash head, by name */
    tg_op **op_list;        /* by id */
    int n_ops, cap_ops;
    struct tg_defer *defer; /* the pending products of the sweep under way (core/defer.c), NULL outside one */
};

/* ---- deferred parameter gradients (core/defer.c) ---------------------------
 * A parameter is a leaf: nothing in a reverse sweep reads its gradient before
 * the sweep ends.  So the products that add into one, dA += da x^T at every
 * step with inner dimension n (the batch: a rank-1 update at batch 1), are
 * kept instead: each step's da goes into a block of n columns of one [m, cap]
 * buffer, its x into the same columns of a [k, cap] buffer, and one product
 * with inner dimension cap adds them all (tg_mm_grad_a_deferred in
 * ops/gemm.h).  A group holds the steps of one kind of entry: the same op,
 * shape and parameters.  Its buffers come from the tape's arena and stay
 * until the tape is reset, for the next sweep of the same tape. */
#define TG_DEFER_GROUPS 32
#ifndef TG_DEFER_COLS
#define TG_DEFER_COLS 1024                 /* columns a group holds at most (why: core/defer.c) */
#endif
#ifndef TG_DEFER_BYTES
#define TG_DEFER_BYTES ((size_t)4 << 20)  /* and the bytes of its buffers */
#endif
#define TG_DEFER_MIN_ELEMS 4096            /* smaller parameters are added at once (core/defer.c) */
#define TG_DEFER_MAX_N 8                   /* and so are products of more columns a step */
typedef struct tg_defer_group {
    const tg_op *op;            /* the kind: op, [m, n], the parameters */
    int m, n, np, nb;
    tg_tensor **a, **b;         /* product parameters [np], bias parameters [nb] */
    int *k;                     /* a[i]->cols */
    tg_real *da;                /* [m, cap] */
    tg_real **x;                /* [np] buffers of [k[i], cap] */
    int cap, used;              /* columns */
    int first, last;            /* tape positions of the pending entries, for messages */
} tg_defer_group;

typedef struct tg_defer {
    struct tg_tape *tp;
    bool immediate;             /* internal switch (tests, bench): every product at once */
    size_t min_elems;           /* a cell whose products' parameters hold fewer elements (m times
                                   the sum of their columns) adds them at once: TG_DEFER_MIN_ELEMS,
                                   set by tg_tape_new; tests set 0 to defer everything */
    int max_n;                  /* nor are entries of more columns (the batch): TG_DEFER_MAX_N */
    /* the tape was sized for a memory budget (tg_tape_set_capacity, which
     * tg_model_backprop calls under one): nothing is deferred from then on,
     * since where memory is short the buffers (rows + columns of a cell) x B
     * a step would make segments shorter and recording again costs more than
     * deferring saves (char_rnn, 4 MiB: 25 segments of 40 steps instead of 5
     * of 200).  tg_tape_set_capacity(tape, 0) clears it. */
    bool budget;
    int n_groups;
    tg_defer_group g[TG_DEFER_GROUPS];
    const tg_tensor *last;      /* the entry that appended last, its group and first column */
    int last_group, last_col;
    tg_status err;              /* a group's buffers could not be had: the sweep fails with it */
} tg_defer;

struct tg_tape {
    tg_ctx *ctx;
    tg_arena arena;
    tg_tensor **nodes;
    int n, cap;
    bool detect_anomaly;
    bool training;          /* tg_tape_set_training: dropout is active */
    unsigned sweep;         /* counts tg_backward calls, to mark entries reached */
    bool recycle_grads;     /* !tg_tape_keep_grads */
    struct tg_free_grads {  /* recycled gradient buffers, one list per size */
        size_t bytes;
        void *head;
    } free_grads[16];
    int n_free_sizes;
    tg_real *work;          /* backward_scratch workspace, on the arena */
    size_t work_len;
    tg_sweep_hook hook;
    void *hook_user;
    tg_segment_hook seg_hook; /* tg_model_backprop's, after each segment's sweep */
    void *seg_hook_user;
    tg_defer defer;         /* products into parameter gradients pending in a sweep (core/defer.c) */
};

/* A parameter's tensor knows its context, so that a tape of another context
 * refuses it (params.c allocates every parameter as one of these). */
typedef struct tg_param_tensor {
    tg_tensor t;
    const tg_ctx *ctx;
} tg_param_tensor;
static inline const tg_ctx *tg_param_ctx(const tg_tensor *p) { return ((const tg_param_tensor *)p)->ctx; }

typedef struct tg_param_entry {
    char *name;
    tg_tensor *t;
    size_t offset;          /* into the contiguous buffers */
} tg_param_entry;

struct tg_params {
    tg_ctx *ctx;
    tg_param_entry *list;
    int n, cap;
    tg_real *values, *grads;
    size_t total, cap_total;
};

/* ---- threads (core/threads.c) ----------------------------------------------- */
/* A context's worker pool: threads - 1 workers, started at the first batch
 * and joined by tg_ctx_set_threads() or tg_ctx_free().  tg_parallel() runs
 * fn(arg, 0) ... fn(arg, n - 1) on the workers and the caller's thread and
 * returns when all are done; jobs must not touch the context's error state.
 * Without workers (threads 1, a thread that could not start, a call from
 * inside a job) the jobs run one after the other on the caller's thread.
 * ops/gemm.c splits a product only when its m n k is at least par_min_mnk
 * (TG_PAR_MIN_MNK by default; tests set 0 to split everything) and BLAS
 * runs single-threaded. */
#define TG_PAR_MIN_MNK ((size_t)64 * 64 * 64)
typedef struct tg_pool tg_pool;
typedef void (*tg_job_fn)(void *arg, int job);
void tg_parallel(tg_ctx *ctx, int n, tg_job_fn fn, void *arg);
void tg_threads_free(tg_ctx *ctx);
bool tg_blas_is_single_threaded(void);
/* ---- end of threads --------------------------------------------------------- */

/* ---- helpers ----------------------------------------------------------------- */
void *tg_alloc(tg_ctx *ctx, size_t size);            /* NULL + TG_ERR_NOMEM */
void *tg_realloc(tg_ctx *ctx, void *p, size_t old, size_t size);
void tg_free(tg_ctx *ctx, void *p, size_t size);
char *tg_strdup(tg_ctx *ctx, const char *s);
void tg_strfree(tg_ctx *ctx, char *s);
/* Sets the context's status and message (a NULL ctx is ignored).  The macro
 * passes the calling function's name, which an empty message falls back to. */
tg_status tg_error_in(const char *func, tg_ctx *ctx, tg_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define tg_error(ctx, s, ...) tg_error_in(__func__, (ctx), (s), __VA_ARGS__)
tg_status tg_verror(tg_ctx *ctx, tg_status s, const char *fmt, va_list ap);
/* "[3, 4]" or "[3]" for error messages; buf needs 32 bytes */
const char *tg_shape_str(char *buf, int rows, int cols, int ndim);

/* Anomaly messages (dump.c): "entry 7 (exp [2] 'h[t=3]' at m.yaml:4:9)", then
 * the entry's value or gradient and its inputs' summaries. */
enum { TG_DESCRIBE_NAME, TG_DESCRIBE_VALUE, TG_DESCRIBE_GRAD };
void tg_describe_entry(const tg_tensor *t, int what, char *buf, size_t len);

/* Whole-file writes that are never seen half-done (core/atomic.c): write to
 * a->f, then commit (fsync + rename) or abort.  Both return -1 with errno.
 * The target must be a regular file or absent; a symlink is followed (the
 * file it points to is replaced, the link stays).  Anything else fails open
 * with errno EISDIR (a directory) or EINVAL, and a->why says what it is
 * ("is a FIFO, not a regular file; refusing to write it"; "" otherwise).
 * Commit removes "TARGET.tmp.PID.*" left by processes that no longer exist. */
typedef struct tg_atomic {
    FILE *f;
    const char *path;  /* borrowed: as the caller named it */
    char target[4200]; /* where the rename goes: path with symlinks followed */
    char tmp[4200];
    char why[96];
} tg_atomic;
int tg_atomic_open(tg_atomic *a, const char *path);
int tg_atomic_commit(tg_atomic *a);
void tg_atomic_abort(tg_atomic *a);

/* Record one entry: checks shapes, allocates the value, runs forward. */
tg_tensor *tg_record(tg_tape *tp, const tg_op *op, int n, tg_tensor *const *in,
                     int n_attrs, const double *attrs);
/* The same for a caller that has checked everything tg_record checks: the
 * inputs are entries of this tape (or params), the arity, the attributes
 * (TG_MAX_ATTRS of them, unused ones 0) and the output shape [rows, cols]
 * are the op's.  The model unroller, whose code was checked when the model
 * was compiled, records through this. */
tg_tensor *tg_record_checked(tg_tape *tp, const tg_op *op, int n, tg_tensor *const *in, const double *attrs,
                             int rows, int cols);

/* For tg_model_backprop (models/backprop.c), which sweeps a sequence one
 * segment at a time.  tg_backward_seeded is tg_backward with the gradients
 * of other entries given too: each seeds[i] that needs a gradient starts the
 * sweep holding grads[i] (NULL: zeros), copied, so that what the segment adds
 * to it comes after what later segments added, in one recording's order.
 * loss may be NULL; with check_loss, a non-finite loss is refused as
 * tg_backward refuses it. */
tg_status tg_backward_seeded(tg_tape *tp, tg_tensor *loss, int n, tg_tensor *const *seeds,
                             const tg_real *const *grads, bool check_loss);
/* Makes the leaves need a gradient after they were recorded, and with them
 * every later entry that reads one (the model unroller records a segment's
 * start state as a leaf without one). */
void tg_tape_require_grad(tg_tape *tp, tg_tensor *const *leaves, int n);
/* Resets the tape, frees its arena and sizes its entry list for exactly
 * `entries` (0 frees it): what a budget holds is then what the tape
 * reports. */
tg_status tg_tape_set_capacity(tg_tape *tp, int entries);

/* The sweep's side of the deferral (core/defer.c).  tg_defer_begin makes the
 * context point at the tape's pending products for the sweep (unless it may
 * not defer) and returns what the context pointed at before, which
 * tg_defer_end puts back after adding every pending product (also when the
 * sweep stops on an error).  With check (anomaly mode), tg_defer_end reports
 * a parameter gradient the sum made non-finite.  tg_defer_bad says whether
 * the entry just swept deferred columns holding a NaN or Inf; the sweep then
 * calls tg_defer_flush so that the gradients the anomaly message shows are
 * those an immediate sweep would show. */
struct tg_defer *tg_defer_begin(tg_tape *tp);
tg_status tg_defer_end(tg_tape *tp, struct tg_defer *prev, bool check);
bool tg_defer_bad(const tg_tape *tp, const tg_tensor *t);
void tg_defer_flush(tg_tape *tp);
void tg_defer_reset(tg_tape *tp);

/* Elementwise-broadcast helpers shared by the binary ops. */
int tg_broadcast_shape(int n, const int (*in)[2], int out[2], const char *op,
                       char *err, size_t err_len);

#endif
