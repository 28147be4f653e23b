/* train_state.h — the training state `tapegrad train --save FILE` keeps in
 * FILE.state beside the PARAMS file FILE: format version, model name and
 * parameter shapes, optimizer settings and per-parameter state, where in the
 * data the run stopped, the recurrent state carried between truncated-BPTT
 * chunks, the vocabulary of a character model, and exact (hex) copies of
 * the parameters.  Written atomically (temporary file, fsync, rename). */
#ifndef TRAIN_STATE_H
#define TRAIN_STATE_H

#include <tapegrad.h>
#include "train_data.h"

#define TS_FORMAT "tapegrad-train-state"
#define TS_VERSION 1

/* Where a run is: the next step to take. */
typedef struct ts_pos {
    uint64_t step;       /* optimizer steps taken */
    int epoch;           /* the epoch under way (0-based) */
    int batch;           /* next batch of that epoch */
    int chunk;           /* next truncated-BPTT chunk of that batch */
    double epoch_loss;   /* loss summed over the epoch so far */
    double epoch_count;  /* what it is divided by */
    uint64_t seed;
    int epochs;          /* --epochs of the run */
    int batch_size, bptt;
    double seconds;      /* training time so far */
} ts_pos;

/* "FILE.state" for FILE (or FILE itself if it already ends in .state);
 * the params file for a state file.  Write into buf. */
const char *ts_state_path(char *buf, size_t len, const char *file);
const char *ts_params_path(char *buf, size_t len, const char *file);

/* Writes path atomically.  carry[i] holds state i's [rows, cols] values
 * (n_carry entries, may be 0).  Returns 0, or -1 with msg. */
int ts_save(const char *path, const tg_model *m, tg_params *ps, tg_optim *opt, const ts_pos *pos,
            const td_vocab *vocab, int n_carry, tg_real *const *carry, const int *carry_size,
            char *msg, size_t len);

/* A state file read into memory, checked for format and version. */
typedef struct ts_file ts_file;
ts_file *ts_open(const char *path, char *msg, size_t len);
void ts_close(ts_file *f);
/* What the header says (valid until ts_close). */
const char *ts_model_name(const ts_file *f);
int ts_vocab(const ts_file *f, td_vocab *v);          /* 1 if the file has one */
int ts_optim(const ts_file *f, tg_optim_opts *o);     /* the saved settings */
int ts_position(const ts_file *f, ts_pos *pos);
/* Checks the file is for model m (name, every parameter's shape) and copies
 * the parameters, the optimizer state (opt may be NULL) and the carried
 * state (carry[i] of carry_size[i] scalars; *has_carry set to 0 if the file
 * has none) in.  Returns 0 or -1 with a message naming the mismatch. */
int ts_restore(ts_file *f, const tg_model *m, tg_params *ps, tg_optim *opt, int n_carry,
               tg_real *const *carry, const int *carry_size, int *has_carry, char *msg, size_t len);

#endif
