/* tg_model_internal.h — what the files under models/ share: a bounded YAML
 * tree with source positions (yaml.c), the model's compiled form (model.c,
 * expr.c), and small helpers (did-you-mean, numbers, a bump pool).  Nothing
 * here is visible to embedding programs. */
#ifndef TG_MODEL_INTERNAL_H
#define TG_MODEL_INTERNAL_H

#include "tg_internal.h"

/* ---- limits (models/README.md has the same table) ------------------------- */
#define TGM_MAX_MODEL_BYTES   ((size_t)1 << 20)   /* a model file */
#define TGM_MAX_DATA_BYTES    ((size_t)64 << 20)  /* a data or params file */
#define TGM_MAX_DEPTH         16                  /* YAML nesting */
#define TGM_MAX_MODEL_NODES   (1 << 20)           /* YAML nodes in a model file */
#define TGM_MAX_DATA_NODES    (4 << 20)           /* YAML nodes in a data/params file */
#define TGM_MAX_NAME          64                  /* characters in a name */
#define TGM_MAX_DECLS         256                 /* entries in dims/params/inputs/... */
#define TGM_MAX_KEYS          4096                /* keys in any one mapping */
#define TGM_MAX_EQUATIONS     1024                /* equations in `step` */
#define TGM_MAX_EQ_LEN        4096                /* characters in an equation */
#define TGM_MAX_EXPR_DEPTH    64                  /* nested parentheses and calls */
#define TGM_MAX_ARGS          64                  /* arguments of one call */
#define TGM_MAX_DIM           1000000             /* a dimension */
#define TGM_MAX_PARAM_ELEMS   ((size_t)1 << 26)   /* scalars in one parameter */
#define TGM_MAX_TOTAL_PARAMS  ((size_t)1 << 28)   /* scalars in all parameters */
#define TGM_MAX_STEPS         1000000             /* steps in one sequence */
#define TGM_MAX_BATCH         65536               /* columns in one step */
#define TGM_MAX_SEQUENCES     100000              /* sequences in one data file */
/* The batch size is unknown when a model is checked, so shapes are checked
 * with this stand-in for B (larger than any dimension) and printed as "B". */
#define TGM_BATCH             1048573

/* ---- a bump pool: everything a model owns, freed at once ------------------ */
typedef struct tgm_block tgm_block;
typedef struct tgm_pool {
    tg_ctx *ctx;
    tgm_block *head;   /* newest block first */
} tgm_pool;

void *tgm_palloc(tgm_pool *p, size_t bytes);                /* zeroed, 16-aligned */
char *tgm_pstrdup(tgm_pool *p, const char *s, size_t len);   /* NUL-terminated copy */
void tgm_pool_free(tgm_pool *p);

/* ---- the YAML tree ----------------------------------------------------------- */
enum { TGM_Y_SCALAR, TGM_Y_SEQ, TGM_Y_MAP };

typedef struct tgm_ynode {
    unsigned char kind;   /* TGM_Y_* */
    unsigned char style;  /* yaml_scalar_style_t of scalars */
    int line, col;        /* 1-based start of the node (a quoted scalar: its quote) */
    int first, next;      /* first child, next sibling; -1 for none.  A map's
                             children alternate key, value, key, value. */
    int count;            /* children (a map: 2 per entry) */
    size_t str, len;      /* scalars: value at pool + str, len bytes, NUL after */
} tgm_ynode;

typedef struct tgm_ylimits {
    size_t max_bytes;
    int max_depth, max_nodes;
} tgm_ylimits;

typedef struct tgm_ydoc {
    tg_ctx *ctx;
    const char *file;       /* borrowed: the name used in messages */
    const char *text;       /* borrowed source, for positions inside scalars */
    size_t text_len;
    size_t *line_start;     /* byte offset of each line's start */
    int n_lines;
    tgm_ynode *nodes;
    int n, cap;
    char *pool;             /* scalar values, each NUL-terminated */
    size_t pool_len, pool_cap;
    int root;               /* -1 for an empty document */
} tgm_ydoc;

/* Parses text into d (which the caller zeroes), rejecting anchors, aliases,
 * tags, several documents and anything past the limits.  On failure leaves
 * "FILE:LINE:COL: message" in the context.  Free with tgm_yaml_free() in
 * every case. */
tg_status tgm_yaml_parse(tgm_ydoc *d, tg_ctx *ctx, const char *file, const char *text,
                         size_t len, const tgm_ylimits *lim);
void tgm_yaml_free(tgm_ydoc *d);
/* Reads a whole file, at most max bytes, into a buffer from the context's
 * allocator (free with tg_free(ctx, *text, *len + 1)); NUL-terminated. */
tg_status tgm_read_file(tg_ctx *ctx, const char *path, size_t max, const char *what,
                        char **text, size_t *len);

static inline const tgm_ynode *tgm_node(const tgm_ydoc *d, int i) { return &d->nodes[i]; }
static inline const char *tgm_str(const tgm_ydoc *d, int i) { return d->pool + d->nodes[i].str; }
const char *tgm_kind_name(const tgm_ydoc *d, int i);   /* "a mapping", "a number", ... */
int tgm_is_null(const tgm_ydoc *d, int i);             /* ~, null, or empty plain scalar */
/* The map entry with this key, or -1; *key gets the key node. */
int tgm_map_get(const tgm_ydoc *d, int map, const char *key, int *key_node);

/* The position of byte `offset` of a scalar's value in the source.  Exact for
 * plain and quoted scalars whose text maps onto the value (whitespace runs
 * may differ, as in folded lines); otherwise the scalar's own position. */
void tgm_locate(const tgm_ydoc *d, int node, size_t offset, int *line, int *col);
/* Error helpers: set "FILE:LINE:COL: message" in the context and return s. */
tg_status tgm_err_node(const tgm_ydoc *d, int node, tg_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
tg_status tgm_err_at(const tgm_ydoc *d, int node, size_t offset, tg_status s, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- small helpers -------------------------------------------------------------- */
int tgm_edit_distance(const char *a, const char *b);
/* The closest candidate for a misspelt word, or NULL if none is close. */
const char *tgm_suggest(const char *word, const char *const *cands, int n);
/* " (did you mean 'x'?)" or "" into buf (80+ bytes). */
const char *tgm_did_you_mean(char *buf, size_t len, const char *word, const char *const *cands, int n);
int tgm_is_ident(const char *s);
/* Parses a whole string as a finite number (decimal, optional sign and
 * exponent).  Returns 0 on success. */
int tgm_parse_number(const char *s, double *out);
/* A value a tensor can hold: finite once converted to tg_real (in the float
 * build, 1e39 parses as a double but would load as Inf). */
#ifdef TG_REAL_DOUBLE
#define TGM_REAL_MAX 1.7976931348623157e308
#else
#define TGM_REAL_MAX 3.4028234663852886e38
#endif
static inline int tgm_fits_real(double v) { return v >= -TGM_REAL_MAX && v <= TGM_REAL_MAX; }
/* "[2, 3]", "[2]", "[2, B]" with the batch stand-in shown as B. */
const char *tgm_shape_str(char *buf, size_t len, int rows, int cols, int ndim);

/* ---- the compiled model -------------------------------------------------------- */
enum { TGM_INIT_DEFAULT, TGM_INIT_ZEROS, TGM_INIT_ONES, TGM_INIT_CONST, TGM_INIT_UNIFORM,
       TGM_INIT_NORMAL, TGM_INIT_XAVIER, TGM_INIT_LITERAL };

typedef struct tgm_var {
    const char *name;       /* owned by the model's pool */
    int role;               /* tg_model_role */
    int rows, cols;         /* params: cols 0 for [n]; per-step values: TG_MODEL_BATCH */
    int slot;               /* where the unroller keeps its tensor */
    int line, col;          /* declaration */
    int init;               /* TGM_INIT_* */
    double a, b;            /* init arguments */
    double *values;         /* TGM_INIT_LITERAL: rows*cols values */
    int cur;                /* states: the slot of h(t); `slot` holds h(t-1) (reverse: h(t+1)) */
    int final_slot;         /* states read as final(h): the slot final equations read; else -1 */
    int reverse;            /* states: `direction: reverse` */
    int per_seq;            /* targets: `per: sequence` (one value per sequence) */
    int index;              /* inputs, targets: `index: vocab` (rows 1, integers 0..vocab-1); else 0 */
    tg_real *fixed;         /* constants: their values, rows*cols (set at load, or drawn by
                               tg_model_init_params when random) */
} tgm_var;

/* A value that is the same at every step and has no gradient: a declared
 * constant, or a number used where a tensor is needed (`1 / tau`). */
typedef struct tgm_cslot {
    int slot, rows, cols;
    const tgm_var *var;     /* a declared constant, or NULL */
    tg_real value;          /* a number: the 1x1 value */
} tgm_cslot;

/* Where an instruction of the step runs (models with reverse states): in
 * the forward sweep t = 1..T, the reverse sweep t = T..1, or for every step
 * after both. */
enum { TGM_PHASE_FWD, TGM_PHASE_REV, TGM_PHASE_BOTH };
/* The internal role of `constants` in tg_model.vars; not a public role. */
#define TGM_ROLE_CONST 5

/* One op to record: the compiled form of (part of) an equation. */
typedef struct tgm_instr {
    const tg_op *op;        /* NULL: just copy slot in[0] to out */
    int out;                /* slot written */
    int n_in;
    int *in;                /* slots read (model pool) */
    int n_attrs;
    double attrs[TG_MAX_ATTRS];
    const char *label;      /* the equation's name */
    int line, col;          /* the operator or call in the source */
    int rows, cols;         /* the result's shape (cols may be TGM_BATCH); copies: 0 */
    int checked;            /* 1: shapes fully known once B is: record without re-checking */
    int phase;              /* TGM_PHASE_* */
    int stacked;            /* affine_block: its last input is a stack_affine entry; the
                               unroller sets attrs 2 and 3 to the step's block and the steps */
} tgm_instr;

/* One product over a chunk of steps (models/hoist.c): a stack_affine entry
 * recorded before the chunk's steps from `prod` (inputs: the matrices, the
 * biases, then each product's per-step operand, once; rows: the stack's),
 * kept in `slot`; x_keep[j] is where product j's operand (x_rows[j] rows)
 * is among the values the unroller keeps per step (tg_model.keep). */
typedef struct tgm_hoist {
    tgm_instr prod;
    int slot;
    int *x_keep;
    int *x_rows;
} tgm_hoist;

typedef struct tgm_output {
    const char *name;
    int slot;
    int rows, cols, ndim;   /* cols may be TGM_BATCH */
} tgm_output;

struct tg_model {
    tg_ctx *ctx;
    tgm_pool pool;          /* every string and array of the model */
    const char *file, *name;
    const char *text;       /* the model file's own text (checkpoints keep it) */
    size_t text_len;
    int loss_at_last;       /* `loss_at: last` */
    tgm_var *vars[6];       /* by tg_model_role: params, inputs, targets, states, dims;
                               then TGM_ROLE_CONST */
    int n_vars[6];
    tgm_cslot *cslots;      /* values recorded once per unroll, without gradient */
    int n_cslots;
    int consts_drawn;       /* random constants have values (tg_model_init_params ran) */
    int t_slot;             /* the step index `t` ([1, 1], 1..T), or -1 if unused */
    int n_reverse;          /* states with `direction: reverse` */
    int n_phase[3];         /* step instructions per phase (fused form), in phase order */
    int n_phase_each_op[3];
    tgm_instr *final;       /* `final:` equations, once per sequence */
    int n_final;
    int loss_per_seq;       /* the loss reads final equations: once per sequence */
    int first_temp;         /* slots below are variables, constants and t */
    tgm_output *outputs;
    int n_outputs;
    tgm_instr *step;        /* one time step, in order, as fuse.c rewrote it */
    int n_step;
    tgm_instr *loss;        /* the per-step loss, after the step (fused likewise) */
    int n_loss;
    tgm_instr *step_each_op, *loss_each_op; /* the same, one instruction per operator */
    int n_step_each_op, n_loss_each_op;
    int loss_slot;          /* -1: the model has no loss */
    int loss_line, loss_col;
    int n_slots;            /* params, inputs, targets, states, then temporaries */
    int max_in;             /* most inputs of any instruction */
    int step_uses_targets;
    /* the fused step with its state-free products hoisted (models/hoist.c);
     * n_hoists 0: nothing to hoist, the unroller runs `step` */
    tgm_hoist *hoists;
    int n_hoists;
    tgm_instr *pre;         /* per step, first, for a chunk's steps: what the hoisted products read */
    int n_pre;
    tgm_instr *step_hoisted; /* then per step: `step` without `pre`, reading the products */
    int n_step_hoisted;
    int *keep;              /* slots kept per step from the first pass: the inputs, then pre's */
    int n_keep;
    /* where tg_model_unroll hoists (tgm_hoist_pays): batch at most
     * hoist_max_batch, hoisted matrices of hoist_min_elems elements or more;
     * measured defaults, lowered by tests to hoist small models */
    int hoist_max_batch;
    size_t hoist_min_elems;
};

/* expr.c: compiles the `step`, `final` and `loss` of a parsed model. */
typedef struct tgm_compiler tgm_compiler;
tg_status tgm_compile(tg_model *m, const tgm_ydoc *d, int step_node, int final_node, int outputs_node,
                      int loss_node);
/* fuse.c: sets step/loss to the fused form of step_each_op/loss_each_op. */
tg_status tgm_fuse(tg_model *m);
/* hoist.c: finds the state-free products of the fused step (slot shapes
 * as fuse.c computed them) and sets hoists, pre, step_hoisted and keep. */
tg_status tgm_hoist_find(tg_model *m, const int *rows, const int *cols);
/* hoist.c: the hoisted products gain at this batch size (measured there) */
bool tgm_hoist_pays(const tg_model *m, int batch);
/* unroll.c: tg_model_unroll with the hoisting switchable, so that tests
 * and the per-step gradient norms (which attribute each entry's gradient
 * to its step) can record the fused step as it is. */
enum { TGM_HOIST_NEVER, TGM_HOIST_AUTO, TGM_HOIST_ALWAYS };
/* Steps per stack_affine entry.  One stack per chunk rather than per call
 * bounds what the hoisting adds to a tape: the stack's gradient ([m, chunk
 * B], recycled by the sweep once the chunk is passed) and the gathered
 * operands of its product, while the product is already wide enough for
 * BLAS to run at its rate (measured, models/README.md). */
#ifndef TGM_HOIST_CHUNK
#define TGM_HOIST_CHUNK 32
#endif
tg_status tgm_unroll(const tg_model *m, tg_tape *tape, tg_unroll *u, int hoist);
/* Evaluates a constant expression (a shape entry, an init argument): numbers,
 * dims (if m is not NULL), + - * / and parentheses. */
tg_status tgm_const_expr(tg_model *m, const tgm_ydoc *d, int node, double *out);
/* An init: "name", "name(args...)" (fname set, its offset in *fname_off) or a
 * constant expression (fname empty, the value in args[0]). */
tg_status tgm_init_expr(tg_model *m, const tgm_ydoc *d, int node, char *fname, size_t fname_len,
                        size_t *fname_off, double *args, int max_args, int *n_args);
/* Reads nested lists of numbers in the shape [rows] (cols 0) or [rows, cols]
 * into out; a single number is accepted for one element. */
tg_status tgm_read_values(const tgm_ydoc *d, int node, const char *what, int rows, int cols,
                          double *out_d, tg_real *out_r);

#endif
