/* train_data.h — what `tapegrad train` and `tapegrad sample` feed a model:
 * sequences from a YAML data file or a CSV file, or a text file read as
 * characters (one-hot over a byte vocabulary), cut into minibatches and
 * truncated-BPTT chunks in the layout tg_model_unroll() reads. */
#ifndef TRAIN_DATA_H
#define TRAIN_DATA_H

#include <tapegrad.h>

enum { TD_SEQS, TD_TEXT };

/* A vocabulary of bytes: byte b is symbol index[b] (or -1), symbol i is
 * byte bytes[i].  Sorted by byte value, so one text gives one vocabulary. */
typedef struct td_vocab {
    int n;
    unsigned char bytes[256];
    int index[256];
} td_vocab;

/* One training item: a column of a sequence (steps T, one batch column). */
typedef struct td_item {
    int seq, col, steps;
} td_item;

typedef struct td_set {
    int kind;                 /* TD_SEQS or TD_TEXT */
    const char *path;         /* borrowed */
    int n_in, n_tg;           /* the model's inputs and targets */
    int in_rows[256], tg_rows[256];
    int in_index[256], tg_index[256];  /* an index variable (`index: vocab`): text is fed as indices */
    int tg_once[256];                  /* a target given once per sequence (`per: sequence`) */
    /* TD_SEQS: sequences, from a tg_data or from CSV buffers */
    tg_dataset *yaml;            /* owned, or NULL */
    int n_seq;
    int *seq_steps, *seq_batch;
    const tg_real **seq_in;   /* [seq * n_in + i]: as tg_dataset_values() */
    const tg_real **seq_tg;   /* [seq * n_tg + i] */
    tg_real *csv_values;      /* owned CSV storage */
    int n_items;
    td_item *items;
    /* TD_TEXT */
    unsigned char *sym;       /* the text as symbol indices */
    size_t n_sym;
    td_vocab vocab;
} td_set;

/* The format a path names: TD_TEXT unless it ends in .yaml/.yml (YAML) or
 * .csv; sets *csv for CSV. */
int td_kind_of(const char *path, int *csv);

/* Reads a text file into s->sym with vocabulary v (if v->n > 0, every byte
 * must be in it; otherwise v is built from the text).  Errors go to msg. */
int td_load_text(td_set *s, const char *path, td_vocab *v, char *msg, size_t len);
/* Reads YAML (through tg_dataset_load) or CSV sequences for model m. */
int td_load_seqs(td_set *s, tg_ctx *ctx, const tg_model *m, const char *path, int csv, char *msg,
                 size_t len);
void td_free(td_set *s);
void td_vocab_build(td_vocab *v, const unsigned char *bytes, size_t n);

/* The plan of one epoch: batches of items of equal length (shuffled by
 * seed and epoch), or for text B streams of L steps. */
typedef struct td_plan {
    int n_batches;
    int *start, *count;       /* batch k: items order[start[k] ..+ count[k]] */
    int *order;
    int batch;                /* B */
    int max_steps;            /* longest item */
} td_plan;

int td_plan_init(td_plan *p, const td_set *s, int batch, char *msg, size_t len);
void td_plan_epoch(td_plan *p, const td_set *s, uint64_t seed, uint64_t epoch);
void td_plan_free(td_plan *p);
/* Steps and columns of batch k. */
int td_batch_steps(const td_plan *p, const td_set *s, int k);
int td_batch_cols(const td_plan *p, const td_set *s, int k);

/* Fills in[i] / tg[i] for steps [t0, t0 + steps) of batch k.  For sequences
 * the whole batch is gathered (laid out from step 0: pass t0 to unroll);
 * for text only the chunk is written, from offset 0. */
void td_fill(const td_plan *p, const td_set *s, int k, int t0, int steps, tg_real **in, tg_real **tg);

#endif
