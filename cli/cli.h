/* cli.h — what the `tapegrad` subcommands share: the command table entry,
 * declarative option parsing with generated --help, loading a model with its
 * params and data, printing tensors, and the exit codes.
 *
 * Adding a subcommand: write cli/cmd_NAME.c defining `const cli_cmd
 * cli_cmd_NAME` and add one line CLI_CMD(NAME) to cli/commands.def. */
#ifndef TG_CLI_H
#define TG_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <tapegrad.h>

/* Exit codes (documented in --help and models/README.md). */
enum {
    CLI_OK = 0,           /* success */
    CLI_CHECK_FAILED = 1, /* a gradient check exceeded its tolerance */
    CLI_USAGE = 2,        /* unknown command or option, bad option value, an unsafe output */
    CLI_BAD_INPUT = 3,    /* a model, data or params file is unreadable or invalid */
    CLI_FAILURE = 4       /* out of memory, non-finite values, a write failed */
};
#define CLI_EXIT_CODES                                                                     \
    "exit status:\n"                                                                       \
    "  0  success\n"                                                                       \
    "  1  the gradient check failed its tolerance\n"                                      \
    "  2  usage error: unknown command or option, bad option value, an output that is\n"  \
    "     an input, a device or in a missing directory\n"                                   \
    "  3  bad input: a model, data or params file is unreadable, malformed or does not\n"  \
    "     fit the model (messages read FILE:LINE:COLUMN: ...)\n"                           \
    "  4  failure while running: out of memory, non-finite values (the message names\n"  \
    "     the first one's equation and FILE:LINE:COL), a write failed\n"

typedef struct cli_cmd {
    const char *name;
    const char *summary;     /* one line for `tapegrad --help` */
    int (*run)(const struct cli_cmd *cmd, int argc, char **argv); /* argv[0] is the command */
} cli_cmd;

/* ---- options ------------------------------------------------------------------ */
typedef enum { CLI_FLAG, CLI_STRING, CLI_INT, CLI_DOUBLE, CLI_U64, CLI_CHOICE, CLI_DIMS } cli_kind;

#define CLI_MAX_DIMS 32
typedef struct cli_dims {    /* a repeatable --dim NAME=VALUE */
    tg_dim dim[CLI_MAX_DIMS];
    int n;
} cli_dims;

typedef struct cli_opt {
    const char *name;        /* "data" for --data */
    cli_kind kind;
    void *dst;               /* int*, const char**, double*, uint64_t*, cli_dims* */
    const char *meta;        /* "FILE"; CLI_CHOICE: "text|json" */
    const char *help;
    double min, max;         /* CLI_INT, CLI_DOUBLE, CLI_U64: allowed range (both 0: any) */
} cli_opt;

/* The options most commands share; a command lists the ones it takes. */
typedef struct cli_common {
    const char *model;       /* the positional MODEL */
    const char *data, *params, *format;
    uint64_t seed;
    cli_dims dims;
} cli_common;

#define CLI_OPT_DATA(c, help) {"data", CLI_STRING, &(c)->data, "FILE", help, 0, 0}
#define CLI_OPT_PARAMS(c)                                                                    \
    {"params", CLI_STRING, &(c)->params, "FILE",                                             \
     "parameter values (YAML: name -> nested lists); they override the model's init", 0, 0}
#define CLI_OPT_FORMAT(c) {"format", CLI_CHOICE, &(c)->format, "text|json", "output format (default text)", 0, 0}
#define CLI_OPT_SEED(c)                                                                      \
    {"seed", CLI_U64, &(c)->seed, "N", "seed of random inits (and random data) (default 1)", 0, 0}
#define CLI_OPT_DIM(c)                                                                       \
    {"dim", CLI_DIMS, &(c)->dims, "NAME=N", "override one of the model's dims (repeatable)", 0, 0}

/* The usage text of a command: what goes after `tapegrad NAME`, and a
 * paragraph that --help prints before the options. */
typedef struct cli_usage {
    const char *args;        /* "MODEL --data DATA [options]" */
    const char *about;
    int n_positional;        /* positional arguments required (MODEL: 1) */
    const char **positional; /* where they go */
} cli_usage;

/* Parses argv[1..argc) of a subcommand against opts, and --threads N, which
 * every command takes (kept for cli_open; --help lists it).  Returns -1 when
 * it printed --help (exit 0), CLI_USAGE after printing an error, else 0. */
int cli_parse(const cli_cmd *cmd, const cli_usage *usage, const cli_opt *opts, int n_opts, int argc,
              char **argv);
void cli_help(FILE *f, const cli_cmd *cmd, const cli_usage *usage, const cli_opt *opts, int n_opts);
/* --threads without a value: the online CPUs, at most CLI_MAX_DEFAULT_THREADS
 * (past that the products of the shipped models gain nothing). */
#define CLI_MAX_DEFAULT_THREADS 8
int cli_default_threads(void);
/* "tapegrad NAME: message" + a pointer to --help, on stderr; returns CLI_USAGE. */
int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line on stderr: the formatted message with every control character (and
 * invalid UTF-8) shown as \xNN, so that a file name or label from an input can
 * never start a line of its own; then a newline.  Returns code. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Checks every output path (NULL entries skipped) with tg_file_check_output() against every
 * input path, before any work.  On refusal prints "tapegrad CMD: <msg>" and returns
 * CLI_USAGE; else 0. */
int cli_check_outputs(const cli_cmd *cmd, const char *const *outputs, int n_out,
                      const char *const *inputs, int n_in);

/* ---- a loaded model ------------------------------------------------------------------ */
typedef struct cli_session {
    tg_ctx *ctx;
    tg_model *model;
    tg_params *params;
    tg_dataset *data;        /* NULL unless --data was given (or a command made some) */
    tg_tape *tape;
    const char *model_path, *data_path;
} cli_session;

/* Makes the context with --threads threads (default cli_default_threads()),
 * loads o->model (with --dim), initialises params from --seed, then reads
 * --params and --data if given.  o->model may be a checkpoint (tapegrad train
 * --save): its model, with the best parameters it holds (the last ones when
 * the run kept none).  On failure prints the message, closes the
 * session and returns the exit code. */
int cli_open(cli_session *s, const cli_common *o);
/* A model file, or the model a checkpoint holds (*ckpt then open: the caller
 * closes it).  NULL with the error in ctx. */
tg_model *cli_model_or_checkpoint(tg_ctx *ctx, const char *path, const cli_dims *dims,
                                  tg_checkpoint **ckpt);
void cli_close(cli_session *s);
/* Prints tg_errmsg on stderr and returns the exit code for the last status. */
int cli_fail(cli_session *s);
/* Checks that the model has a loss and every sequence has its targets;
 * prints what is missing and returns CLI_BAD_INPUT, or CLI_OK. */
int cli_check_targets(cli_session *s);
/* Records every sequence of s->data onto s->tape (reset first); *loss is the
 * summed loss, NULL when no sequence has targets.  per_seq, if not NULL,
 * receives each sequence's tg_unroll (n = tg_dataset_count). */
tg_status cli_unroll_all(cli_session *s, tg_tensor **loss, tg_unroll *per_seq);
const char *cli_suggest(const char *word, const char *const *cands, int n);

/* ---- a memory budget: --memory SIZE (grad, train, dump) ---------------------------- */
#define CLI_MEMORY_HELP \
    "BPTT keeps at most SIZE bytes (K/M/G) of tape and snapshots, recording segments again; prints the schedule"
/* Parses SIZE with tg_parse_size into *bytes.  A bad size or 0 prints
 * "tapegrad CMD: --memory 'SIZE': why" and returns CLI_USAGE; else 0. */
int cli_parse_memory(const cli_cmd *cmd, const char *text, size_t *bytes);
/* "256.0 MiB", "512 bytes" into buf. */
const char *cli_bytes(char *buf, size_t len, double bytes);
/* The schedule in words, one line without a newline:
 * "memory budget 1.0 MiB: 1000 steps in 40 segments of 25, 6 snapshots, 1750 steps
 *  recomputed (1.75 forward passes, binomial schedule); tape 900.2 KiB + snapshots 1.5 KiB" */
void cli_plan_text(char *buf, size_t len, size_t memory, const tg_bptt_plan *p);
/* The same as JSON fields, after a comma: , "memory": N, "schedule": {...} */
void cli_plan_json(FILE *f, size_t memory, const tg_bptt_plan *p);

/* ---- printing ---------------------------------------------------------------------- */
/* A number in JSON (null for NaN/Inf), at full precision. */
void cli_json_number(FILE *f, double v);
/* A string in JSON, quoted and escaped by RFC 8259 (invalid UTF-8 as U+FFFD). */
void cli_json_string(FILE *f, const char *s);
/* Values of an rows x cols tensor: JSON nested lists ([n] flat when ndim 1). */
void cli_json_tensor(FILE *f, const tg_real *v, int rows, int cols, int ndim);
/* Text, compact: 0.5, [a, b] for a column, [[a, b], [c, d]] by rows. */
void cli_text_value(FILE *f, const tg_real *v, int rows, int cols);
/* Text: rows on separate lines, each indented. */
void cli_text_tensor(FILE *f, const tg_real *v, int rows, int cols, const char *indent);

/* ---- data-parallel training: `tapegrad-mpi train` (cli/mpi_main.c) -------------
 * The same train command on every rank; the wrapper brings the communicator. */
#include <signal.h>
typedef struct cli_parallel cli_parallel;
struct cli_parallel {
    int rank, size;          /* rank 0 alone prints progress and writes files */
    const cli_opt *opts;     /* the wrapper's own options, listed after train's */
    int n_opts;
    /* Right after the trainer is made, before its data: shard it and hook the
     * reduction.  text: the data is a text.  A CLI_ exit code after printing why. */
    int (*attach)(cli_parallel *par, tg_trainer *tr, tg_params *ps, int text);
    /* Every rank calls it once, with its exit code so far (0: ready to run);
     * returns the largest over the ranks.  train calls it before the run, the
     * wrapper after train returned early. */
    int (*agree)(cli_parallel *par, int rc);
    int agreed;
    volatile sig_atomic_t stop; /* a signal came: the ranks stop after the same step */
    int stopped;             /* they agreed to */
};
/* `tapegrad train`: par NULL for one process. */
int cli_train(const cli_cmd *cmd, int argc, char **argv, cli_parallel *par);
extern const cli_cmd cli_cmd_train;

#endif
