/* train_internal.h — what the files of train/ share: the training set's
 * layout, the file reader, the UTF-8 decoder.  Not part of the public API. */
#ifndef TG_TRAIN_INTERNAL_H
#define TG_TRAIN_INTERNAL_H

#include "tapegrad.h"
#include "tg_internal.h"
#include "tg_model_internal.h"
#include <signal.h>

#define TGT_MAX_TEXT ((size_t)256 << 20)  /* bytes of a text or CSV file */
#define TGT_MAX_VARS 512                  /* inputs + targets of a model the trainer feeds */

enum { TGT_SEQS, TGT_TEXT };

typedef struct tgt_item { int seq, col, steps; } tgt_item;  /* one column of a sequence */

struct tg_vocab {
    tg_ctx *ctx;
    int n;
    uint32_t *chars;    /* sorted code points */
};

struct tg_trainset {
    tg_ctx *ctx;
    int kind;                /* TGT_SEQS or TGT_TEXT */
    char *name;              /* the file, for messages */
    /* sequences */
    tg_dataset *yaml;        /* owned, or NULL */
    int n_in, n_tg, *rows;   /* the model's inputs, then targets */
    int n_seq;
    int *seq_steps, *seq_batch;
    const tg_real **vals;    /* [seq * (n_in + n_tg) + v], laid out as tg_dataset_values() */
    tg_real *csv_values;     /* owned CSV storage, or NULL */
    int n_items;
    tgt_item *items;
    /* text */
    int32_t *sym;            /* the text as symbol indices */
    size_t n_sym;
    tg_vocab *vocab;         /* owned */
};

/* Reads path ("-": standard input when allow_stdin) whole into a malloc'd,
 * NUL-terminated buffer; refuses what is not a regular file. */
tg_status tgt_read(tg_ctx *ctx, const char *path, size_t max, const char *what, char **buf, size_t *len);
/* Decodes one character at s[0..n) (n >= 1): the code point, *used bytes;
 * an invalid byte b (always >= 0x80) gives U+DC00 + b and *used = 1. */
uint32_t tgt_utf8(const unsigned char *s, size_t n, int *used);
tg_vocab *tgt_vocab_make(tg_ctx *ctx, uint32_t *chars, int n);  /* takes chars (malloc'd, sorted) */

/* One pass over a set: batches of equal-length items (shuffled per epoch
 * from the seed when training, file order when evaluating), or for text B
 * streams of L characters. */
typedef struct tgt_plan {
    const tg_trainset *set;
    int B;                   /* columns asked for */
    int n_batches;
    int *start, *count, *order;  /* batch k: items order[start[k] ..+ count[k]] */
    int T_max;               /* longest item; text: the stream length L */
    int K;                   /* chunk length (bptt, or T_max) */
    tg_real **in, **tg, **carry;  /* per input/target/state: the batch (text: the chunk) */
    tg_real **out;           /* per state [rows, B]: where a sweep leaves the final state */
    int filled;              /* the batch in in/tg (sequences), -1: none */
    int has_carry;           /* carry holds the state after the last chunk */
    /* data-parallel (tg_trainer_set_shard): this plan computes columns
     * [rank c / size, (rank + 1) c / size) of a batch of c; carry keeps the
     * batch's layout (its own columns, zeros elsewhere), carry_loc its own */
    int rank, size;
    tg_real **carry_loc;
} tgt_plan;

/* Where a run is: the next chunk to take. */
typedef struct tgt_pos {
    uint64_t step;           /* optimizer steps taken */
    int epoch, batch, chunk;
    double epoch_loss, epoch_count; /* summed raw loss of the epoch so far; its count */
    double seconds;          /* training time before this process */
} tgt_pos;

struct tg_trainer {
    tg_ctx *ctx;
    const tg_model *m;
    tg_params *ps;
    tg_train_opts o;
    tg_optim *opt;
    tg_tape *tape;
    int n_in, n_tg, n_st, *st_rows;
    int *in_flags, *tg_flags; /* tg_model_var_flags() of each input and target */
    const tg_trainset *train, *valid;
    tgt_plan plan;
    int plan_epoch;          /* the epoch plan is shuffled for; -1 none */
    uint64_t per_epoch, total_steps;
    tgt_pos pos;
    /* validation, early stopping, plateau */
    double valid_loss, best_loss, plateau_best, lr_factor, first_epoch_loss, last_epoch_loss;
    int bad_epochs, plateau_bad;
    tg_real *best;           /* the best parameters (patience), or NULL */
    size_t n_scalars;
    tg_train_end end;
    volatile sig_atomic_t stop;
    tg_train_progress_fn progress_fn;
    void *progress_user;
    tg_train_reduce_fn reduce_fn;
    void *reduce_user;
    int shard_rank, shard_size;
    tg_train_progress prog;
    int plan_cols;           /* columns of the chunk prog.plan was made for (evaluation under
                                o.memory records segments of prog.plan.segment steps, scaled) */
    double t0;               /* monotonic time of this process's first step */
    int started;
};

double tgt_now(void);
tg_status tgt_plan_init(tg_trainer *tr, tgt_plan *p, const tg_trainset *s);
void tgt_plan_epoch(tgt_plan *p, uint64_t seed, uint64_t epoch, int shuffle);
void tgt_plan_free(tgt_plan *p, int n_in, int n_tg, int n_st);
int tgt_batch_steps(const tgt_plan *p, int k);
int tgt_batch_cols(const tgt_plan *p, int k);
int tgt_batch_chunks(const tgt_plan *p, int k);
uint64_t tgt_fingerprint(const tg_trainset *s);

#endif
