/* cmd_train.c — `tapegrad train MODEL --data DATA ...`: fits a model's
 * parameters to data with an optimizer, by full or truncated BPTT over
 * minibatches, with checkpoints that survive a crash, resume, progress, a
 * CSV loss log and a gnuplot picture of the loss.  The model is parsed and
 * every buffer allocated once; each step resets and reuses one tape. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "plot.h"
#include "train_data.h"
#include "train_state.h"

#define TEXT_BPTT 64    /* --bptt for text data when not given */
#define EXIT_INTERRUPTED 130

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { interrupted = sig; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *duration(char *buf, size_t len, double s)
{
    if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
    else if (s < 60) snprintf(buf, len, "%.0fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, len, "%dh%02dm", (int)s / 3600, (int)s / 60 % 60);
    return buf;
}

typedef struct train_opts {
    cli_common c;
    int epochs, batch, bptt, save_every, print_every, quiet, nesterov, decoupled, max_steps;
    const char *optimizer, *save, *resume, *log, *plot, *format;
    double lr, clip, momentum, beta1, beta2, rho, eps, weight_decay, target;
    int seed_given;
} train_opts;

/* Everything a run holds, allocated once before the first step. */
typedef struct run {
    cli_session s;
    td_set data;
    td_plan plan;
    tg_optim *opt;
    int n_in, n_tg, n_st, n_out;
    tg_real **in, **tg, **carry;
    int *carry_size;
    int *st_rows;
    FILE *log;
    char log_tmp[64];
} run;

static void run_free(run *r)
{
    for (int i = 0; r->in && i < r->n_in; i++) free(r->in[i]);
    for (int i = 0; r->tg && i < r->n_tg; i++) free(r->tg[i]);
    for (int i = 0; r->carry && i < r->n_st; i++) free(r->carry[i]);
    free(r->in), free(r->tg), free(r->carry), free(r->carry_size), free(r->st_rows);
    if (r->log) fclose(r->log);
    if (r->log_tmp[0]) unlink(r->log_tmp);
    tg_optim_free(r->opt);
    td_plan_free(&r->plan);
    td_free(&r->data);
    cli_close(&r->s);
}

static int fail(run *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(run *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tapegrad train: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    run_free(r);
    return code;
}

static int train(const cli_cmd *cmd, int argc, char **argv)
{
    train_opts o = {.c.seed = 1, .epochs = -1, .batch = 0, .bptt = -1, .save_every = 1000, .print_every = 100,
                    .lr = NAN, .clip = 0, .momentum = NAN, .beta1 = NAN, .beta2 = NAN, .rho = NAN, .eps = NAN,
                    .weight_decay = 0, .target = 0};
    uint64_t seed_sentinel = UINT64_MAX - 7;
    o.c.seed = seed_sentinel;
    const cli_opt opts[] = {
        CLI_OPT_DATA(&o.c, "sequences (.yaml), a series (.csv) or text (any other)"),
        CLI_OPT_PARAMS(&o.c),
        {"epochs", CLI_INT, &o.epochs, "N", "passes over the data (required unless --resume)", 0, 100000000},
        {"optimizer", CLI_CHOICE, &o.optimizer, "sgd|momentum|adam|rmsprop", "(default adam)", 0, 0},
        {"lr", CLI_DOUBLE, &o.lr, "X", "learning rate (default 0.001 adam, 0.01 others)", 0, 1e6},
        {"clip", CLI_DOUBLE, &o.clip, "X", "clip the gradients' global L2 norm to X (default: none)", 0, 1e300},
        {"momentum", CLI_DOUBLE, &o.momentum, "X", "momentum: mu (default 0.9)", 0, 0.999999},
        {"nesterov", CLI_FLAG, &o.nesterov, NULL, "momentum: Nesterov's form", 0, 0},
        {"beta1", CLI_DOUBLE, &o.beta1, "X", "adam: first-moment decay (default 0.9)", 0, 0.999999},
        {"beta2", CLI_DOUBLE, &o.beta2, "X", "adam: second-moment decay (default 0.999)", 0, 0.999999999},
        {"rho", CLI_DOUBLE, &o.rho, "X", "rmsprop: squared-gradient decay (default 0.99)", 0, 0.999999999},
        {"eps", CLI_DOUBLE, &o.eps, "X", "adam, rmsprop: denominator offset (default 1e-8)", 0, 1},
        {"weight-decay", CLI_DOUBLE, &o.weight_decay, "X", "L2 weight decay (added to the gradient)", 0, 1e300},
        {"decoupled", CLI_FLAG, &o.decoupled, NULL, "decay the weights directly instead (AdamW)", 0, 0},
        {"batch", CLI_INT, &o.batch, "B", "sequences per step, as columns (default 1, or the data's)", 1, 65536},
        {"bptt", CLI_INT, &o.bptt, "K", "truncated BPTT in chunks of K steps (default: full; text 64)", 0, 1000000},
        {"seed", CLI_U64, &o.c.seed, "S", "seed of the initial weights and the shuffling (default 1)", 0, 0},
        CLI_OPT_DIM(&o.c),
        {"steps", CLI_INT, &o.max_steps, "N", "stop after N steps in all (resumable, like Ctrl-C)", 1, 2000000000},
        {"target", CLI_DOUBLE, &o.target, "LOSS", "stop after an epoch whose mean loss is below LOSS", 0, 1e300},
        {"save", CLI_STRING, &o.save, "FILE", "checkpoint: PARAMS to FILE, training state to FILE.state", 0, 0},
        {"save-every", CLI_INT, &o.save_every, "N", "steps between checkpoints (default 1000; 0: at the end)",
         0, 2000000000},
        {"resume", CLI_STRING, &o.resume, "FILE", "continue the run saved in FILE (reads FILE.state)", 0, 0},
        {"log", CLI_STRING, &o.log, "FILE", "loss log as CSV: step,epoch,loss,grad_norm,seconds", 0, 0},
        {"plot", CLI_STRING, &o.plot, "FILE", "the loss curve as .svg or .png (with gnuplot)", 0, 0},
        {"print-every", CLI_INT, &o.print_every, "N", "no terminal: a progress line every N steps (100)", 1, 2000000000},
        {"quiet", CLI_FLAG, &o.quiet, NULL, "print nothing but errors", 0, 0},
    };
    const char *positional[1];
    cli_usage usage = {
        "MODEL --data DATA --epochs N [options]",
        "Fits MODEL's parameters to DATA by back-propagation through time and saves\n"
        "them as a PARAMS file that grad, run and check read with --params.\n"
        "DATA is YAML sequences (.yaml), a CSV series (.csv: a header of input and\n"
        "target names, one line per step, a blank line between sequences), or any\n"
        "other file as text for a character model (one-hot over its characters; the\n"
        "model needs a dim named vocab).  The loss shown is the model's loss per\n"
        "sequence averaged over the epoch (for text: nats per character).\n"
        "Ctrl-C stops after the current step, saves a checkpoint (with --save) and\n"
        "exits with status 130.",
        1, positional};
    int prc = cli_parse(cmd, &usage, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (prc) return prc < 0 ? CLI_OK : prc;
    o.c.model = positional[0];
    o.seed_given = o.c.seed != seed_sentinel;
    if (!o.seed_given) o.c.seed = 1;
    if (!o.c.data) return cli_usage_error(cmd, "--data FILE is required (the sequences to learn)");
    if (o.epochs < 0 && !o.resume) return cli_usage_error(cmd, "--epochs N is required");
    if (o.c.params && o.resume)
        return cli_usage_error(cmd, "--params and --resume both give the starting parameters; use one");
    if (o.plot) {
        const char *dot = strrchr(o.plot, '.');
        if (!dot || (strcmp(dot, ".svg") && strcmp(dot, ".png")))
            return cli_usage_error(cmd, "--plot FILE must end in .svg or .png, not '%s'", o.plot);
        const char *ins[] = {o.c.model, o.c.data, o.c.params, o.resume, o.log};
        int rc_out = cli_check_outputs(cmd, &o.plot, 1, ins, 5);
        if (rc_out) return rc_out;
    }

    run R;
    memset(&R, 0, sizeof R);
    char msg[2048];
    int csv = 0, kind = td_kind_of(o.c.data, &csv);

    /* the checkpoint to resume, read first: it has the vocabulary and defaults */
    ts_file *resume = NULL;
    ts_pos pos = {0};
    tg_optim_opts saved_opts;
    td_vocab vocab;
    memset(&vocab, 0, sizeof vocab);
    for (int b = 0; b < 256; b++) vocab.index[b] = -1;
    char state_path[4200];
    if (o.resume) {
        resume = ts_open(ts_state_path(state_path, sizeof state_path, o.resume), msg, sizeof msg);
        if (!resume) return fprintf(stderr, "tapegrad train: %s\n", msg), CLI_BAD_INPUT;
        if (ts_position(resume, &pos) || ts_optim(resume, &saved_opts)) {
            ts_close(resume);
            fprintf(stderr, "tapegrad train: %s: the training state lacks its position or optimizer\n", state_path);
            return CLI_BAD_INPUT;
        }
        ts_vocab(resume, &vocab);
        if (o.optimizer && tg_optim_kind_parse(o.optimizer) != (int)saved_opts.kind) {
            ts_close(resume);
            return cli_usage_error(cmd, "--optimizer %s, but %s holds %s state (leave --optimizer out to go on "
                                   "with %s)", o.optimizer, state_path, tg_optim_kind_name(saved_opts.kind),
                                   tg_optim_kind_name(saved_opts.kind));
        }
        if (o.batch && o.batch != pos.batch_size) {
            ts_close(resume);
            return cli_usage_error(cmd, "--batch %d, but the run in %s used --batch %d", o.batch, state_path,
                                   pos.batch_size);
        }
        if (o.bptt >= 0 && o.bptt != pos.bptt) {
            ts_close(resume);
            return cli_usage_error(cmd, "--bptt %d, but the run in %s used --bptt %d", o.bptt, state_path, pos.bptt);
        }
        if (o.seed_given && o.c.seed != pos.seed) {
            ts_close(resume);
            return cli_usage_error(cmd, "--seed %llu, but the run in %s used --seed %llu",
                                   (unsigned long long)o.c.seed, state_path, (unsigned long long)pos.seed);
        }
        o.c.seed = pos.seed;
        o.batch = pos.batch_size;
        o.bptt = pos.bptt;
        if (o.epochs < 0) o.epochs = pos.epochs;
    }

    /* text: the vocabulary sets the model's `vocab` dim */
    cli_common c = o.c;
    c.data = NULL;
    if (kind == TD_TEXT) {
        if (td_load_text(&R.data, o.c.data, &vocab, msg, sizeof msg)) {
            ts_close(resume);
            return fail(&R, CLI_BAD_INPUT, "%s", msg);
        }
        if (c.dims.n == CLI_MAX_DIMS) {
            ts_close(resume);
            return fail(&R, CLI_USAGE, "too many --dim options");
        }
        c.dims.dim[c.dims.n++] = (tg_dim){"vocab", vocab.n};
    }
    int rc = cli_open(&R.s, &c);
    if (rc) {
        if (kind == TD_TEXT)
            fprintf(stderr, "tapegrad train: (text data is one-hot encoded over its %d distinct characters, so the "
                            "model needs a dim named 'vocab' for its input and target size)\n", vocab.n);
        ts_close(resume);
        td_free(&R.data);
        return rc;
    }
    tg_model *m = R.s.model;
    tg_ctx *ctx = R.s.ctx;
    if (!tg_model_has_loss(m)) {
        ts_close(resume);
        return fail(&R, CLI_BAD_INPUT, "%s: the model has no 'loss', so there is nothing to train", o.c.model);
    }
    R.n_in = tg_model_count(m, TG_ROLE_INPUT);
    R.n_tg = tg_model_count(m, TG_ROLE_TARGET);
    R.n_st = tg_model_count(m, TG_ROLE_STATE);
    R.n_out = tg_model_count(m, TG_ROLE_OUTPUT);
    if (R.n_in > 256 || R.n_tg > 256) {
        ts_close(resume);
        return fail(&R, CLI_BAD_INPUT, "%s: more than 256 inputs or targets", o.c.model);
    }
    R.data.n_in = R.n_in;
    R.data.n_tg = R.n_tg;
    for (int i = 0; i < R.n_in; i++) tg_model_var(m, TG_ROLE_INPUT, i, &R.data.in_rows[i], NULL);
    for (int i = 0; i < R.n_tg; i++) tg_model_var(m, TG_ROLE_TARGET, i, &R.data.tg_rows[i], NULL);
    if (kind == TD_TEXT) {
        if (R.n_in != 1 || R.n_tg != 1 || R.data.in_rows[0] != vocab.n || R.data.tg_rows[0] != vocab.n) {
            ts_close(resume);
            return fail(&R, CLI_BAD_INPUT, "%s: a character model has one input and one target of size vocab "
                        "(%d here); this one has %d inputs and %d targets", o.c.model, vocab.n, R.n_in, R.n_tg);
        }
    } else if (td_load_seqs(&R.data, ctx, m, o.c.data, csv, msg, sizeof msg)) {
        ts_close(resume);
        return fail(&R, CLI_BAD_INPUT, "%s", msg);
    }
    if (!o.batch) o.batch = kind == TD_TEXT || R.data.n_seq == 0 ? 1 : R.data.seq_batch[0];
    if (o.bptt < 0) o.bptt = kind == TD_TEXT ? TEXT_BPTT : 0;
    if (td_plan_init(&R.plan, &R.data, o.batch, msg, sizeof msg)) {
        ts_close(resume);
        return fail(&R, CLI_BAD_INPUT, "%s", msg);
    }
    int T_max = R.plan.max_steps;
    int K = o.bptt > 0 && o.bptt < T_max ? o.bptt : T_max; /* the longest chunk */
    int B = o.batch;

    /* the optimizer: settings from the checkpoint, then the command line */
    tg_optim_opts oo = resume ? saved_opts
                              : tg_optim_defaults((tg_optim_kind)tg_optim_kind_parse(o.optimizer ? o.optimizer : "adam"));
    if (!isnan(o.lr)) oo.lr = o.lr;
    if (!isnan(o.momentum)) oo.momentum = o.momentum;
    if (!isnan(o.beta1)) oo.beta1 = o.beta1;
    if (!isnan(o.beta2)) oo.beta2 = o.beta2;
    if (!isnan(o.rho)) oo.rho = o.rho;
    if (!isnan(o.eps)) oo.eps = o.eps;
    if (o.nesterov) oo.nesterov = 1;
    if (o.decoupled) oo.decoupled = 1;
    if (!resume || o.weight_decay > 0) oo.weight_decay = o.weight_decay;
    if (!resume || o.clip > 0) oo.clip = o.clip;
    if (o.nesterov && oo.kind != TG_OPTIM_MOMENTUM) {
        ts_close(resume);
        run_free(&R);
        return cli_usage_error(cmd, "--nesterov goes with --optimizer momentum");
    }
    if (!(R.opt = tg_optim_new(R.s.params, &oo))) {
        ts_close(resume);
        fprintf(stderr, "tapegrad train: %s\n", tg_errmsg(ctx));
        run_free(&R);
        return CLI_USAGE;
    }

    /* buffers: inputs/targets for the longest batch (sequences) or chunk (text) */
    int span = kind == TD_TEXT ? K : T_max;
    R.in = calloc((size_t)R.n_in + 1, sizeof *R.in);
    R.tg = calloc((size_t)R.n_tg + 1, sizeof *R.tg);
    R.carry = calloc((size_t)R.n_st + 1, sizeof *R.carry);
    R.carry_size = calloc((size_t)R.n_st + 1, sizeof *R.carry_size);
    R.st_rows = calloc((size_t)R.n_st + 1, sizeof *R.st_rows);
    int oom = !R.in || !R.tg || !R.carry || !R.carry_size || !R.st_rows;
    for (int i = 0; !oom && i < R.n_in; i++)
        oom = !(R.in[i] = malloc((size_t)span * (size_t)R.data.in_rows[i] * (size_t)B * sizeof(tg_real)));
    for (int i = 0; !oom && i < R.n_tg; i++)
        oom = !(R.tg[i] = malloc((size_t)span * (size_t)R.data.tg_rows[i] * (size_t)B * sizeof(tg_real)));
    for (int i = 0; !oom && i < R.n_st; i++) {
        tg_model_var(m, TG_ROLE_STATE, i, &R.st_rows[i], NULL);
        oom = !(R.carry[i] = calloc((size_t)R.st_rows[i] * (size_t)B, sizeof(tg_real)));
    }
    if (oom) {
        ts_close(resume);
        return fail(&R, CLI_FAILURE, "out of memory for the batch buffers");
    }

    int has_carry = 0;
    if (resume) {
        /* the carried state's size depends on the batch the run stopped in */
        td_plan_epoch(&R.plan, &R.data, o.c.seed, (uint64_t)pos.epoch);
        int cols = pos.batch < R.plan.n_batches ? td_batch_cols(&R.plan, &R.data, pos.batch) : B;
        for (int i = 0; i < R.n_st; i++) R.carry_size[i] = R.st_rows[i] * cols;
        int rr = ts_restore(resume, m, R.s.params, R.opt, R.n_st, R.carry, R.carry_size, &has_carry, msg,
                            sizeof msg);
        ts_close(resume);
        resume = NULL;
        if (rr) return fail(&R, CLI_BAD_INPUT, "%s", msg);
        if (pos.epoch > o.epochs || (pos.epoch == o.epochs && (pos.batch || pos.chunk)))
            return fail(&R, CLI_USAGE, "%s stopped in epoch %d, past --epochs %d", state_path, pos.epoch + 1,
                        o.epochs);
    }
    pos.seed = o.c.seed;
    pos.epochs = o.epochs;
    pos.batch_size = B;
    pos.bptt = o.bptt;

    /* steps per epoch, for the ETA */
    td_plan_epoch(&R.plan, &R.data, o.c.seed, 0);
    uint64_t per_epoch = 0;
    for (int k = 0; k < R.plan.n_batches; k++) {
        int T = td_batch_steps(&R.plan, &R.data, k);
        per_epoch += (uint64_t)((T + K - 1) / K);
    }
    uint64_t total_steps = per_epoch * (uint64_t)o.epochs;

    const char *unit = kind == TD_TEXT ? "nats per character" : "per sequence";
    if (o.log || o.plot) {
        const char *lp = o.log;
        if (!lp) {
            snprintf(R.log_tmp, sizeof R.log_tmp, "/tmp/tapegrad-loss-XXXXXX");
            int fd = mkstemp(R.log_tmp);
            if (fd < 0) R.log_tmp[0] = 0;
            else close(fd);
            lp = R.log_tmp;
        }
        /* a resumed run appends to its log */
        struct stat sb;
        int append = o.resume && o.log && stat(o.log, &sb) == 0 && sb.st_size > 0;
        R.log = lp[0] ? fopen(lp, append ? "a" : "w") : NULL;
        if (!R.log) return fail(&R, CLI_FAILURE, "%s: cannot write the log: %s", lp[0] ? lp : "/tmp", strerror(errno));
        if (!append) fprintf(R.log, "step,epoch,loss,grad_norm,seconds\n");
    }

    int tty = isatty(2), show = !o.quiet;
    if (show) {
        if (kind == TD_TEXT)
            fprintf(stderr, "train %s on %s: %zu characters, vocabulary %d, %d streams of %d steps, chunks of %d\n",
                    tg_model_name(m), o.c.data, R.data.n_sym, vocab.n, B, T_max, K);
        else
            fprintf(stderr, "train %s on %s: %d sequence%s (longest %d steps), batch %d, %s\n", tg_model_name(m),
                    o.c.data, R.data.n_items, R.data.n_items == 1 ? "" : "s", T_max, B,
                    K < T_max ? "truncated BPTT" : "full BPTT");
        size_t n_scalars = 0;
        for (int i = 0; i < tg_params_count(R.s.params); i++) n_scalars += tg_size(tg_params_at(R.s.params, i));
        char clip[48] = "";
        if (oo.clip > 0) snprintf(clip, sizeof clip, ", clip %g", oo.clip);
        fprintf(stderr, "%s lr %g%s, %zu parameters, %d epochs%s\n", tg_optim_kind_name(oo.kind), oo.lr, clip,
                n_scalars, o.epochs, o.resume ? " (resumed)" : "");
    }

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    tg_tape *tape = R.s.tape;
    tg_tape_keep_grads(tape, 0); /* training reads parameter gradients only */
    double t_start = now(), t_shown = 0, base_seconds = pos.seconds;
    uint64_t step0 = pos.step;
    double last_epoch_loss = NAN, first_epoch_loss = NAN;
    int status = CLI_OK, reached = 0;
    const tg_real *inp[256], *tgp[256], *st0[256];
    char dbuf[32], ebuf[32];
    uint64_t last_saved = pos.step;

/* The PARAMS file first, then the state: a state file always has its params
 * file beside it (each is replaced atomically; a crash between the two
 * leaves the state one checkpoint behind, which resumes consistently). */
#define SAVE_CHECKPOINT()                                                                                    \
    do {                                                                                                     \
        pos.seconds = base_seconds + now() - t_start;                                                        \
        int nc_ = pos.chunk > 0 ? R.n_st : 0;                                                                \
        char pp_[4200];                                                                                      \
        if (tg_params_save(R.s.params, m, ts_params_path(pp_, sizeof pp_, o.save))) {                        \
            status = CLI_FAILURE;                                                                            \
            fprintf(stderr, "%stapegrad train: %s\n", tty && show ? "\n" : "", tg_errmsg(ctx));             \
            goto stop;                                                                                       \
        }                                                                                                    \
        if (ts_save(ts_state_path(state_path, sizeof state_path, o.save), m, R.s.params, R.opt, &pos,       \
                    kind == TD_TEXT ? &vocab : NULL, nc_, R.carry, R.carry_size, msg, sizeof msg)) {         \
            status = CLI_FAILURE;                                                                            \
            fprintf(stderr, "%stapegrad train: %s\n", tty && show ? "\n" : "", msg);                         \
            goto stop;                                                                                       \
        }                                                                                                    \
        last_saved = pos.step;                                                                               \
    } while (0)

    while (pos.epoch < o.epochs && !reached) {
        td_plan_epoch(&R.plan, &R.data, o.c.seed, (uint64_t)pos.epoch);
        for (; pos.batch < R.plan.n_batches; pos.batch++, pos.chunk = 0) {
            int T = td_batch_steps(&R.plan, &R.data, pos.batch);
            int cols = td_batch_cols(&R.plan, &R.data, pos.batch);
            int n_chunks = (T + K - 1) / K;
            if (kind != TD_TEXT) td_fill(&R.plan, &R.data, pos.batch, 0, T, R.in, R.tg);
            for (int i = 0; i < R.n_st; i++) R.carry_size[i] = R.st_rows[i] * cols;
            if (pos.chunk == 0) has_carry = 0;
            for (; pos.chunk < n_chunks; pos.chunk++) {
                /* here pos names the next chunk: the place to stop or save */
                if (interrupted || (o.max_steps && pos.step >= (uint64_t)o.max_steps)) goto interrupt;
                if (o.save && o.save_every > 0 && pos.step - last_saved >= (uint64_t)o.save_every)
                    SAVE_CHECKPOINT();
                int t0 = pos.chunk * K, steps = T - t0 < K ? T - t0 : K;
                if (kind == TD_TEXT) td_fill(&R.plan, &R.data, 0, t0, steps, R.in, R.tg);
                for (int i = 0; i < R.n_in; i++) inp[i] = R.in[i];
                for (int i = 0; i < R.n_tg; i++) tgp[i] = R.tg[i];
                for (int i = 0; i < R.n_st; i++) st0[i] = has_carry ? R.carry[i] : NULL;
                tg_tape_reset(tape);
                tg_params_zero_grad(R.s.params);
                tg_unroll u = {
                    .params = R.s.params,
                    .batch = cols,
                    .t0 = kind == TD_TEXT ? 0 : t0,
                    .steps = steps,
                    .seq_steps = kind == TD_TEXT ? 0 : T,
                    .inputs = inp,
                    .targets = tgp,
                    .state0 = R.n_st ? st0 : NULL,
                };
                if (tg_model_unroll(m, tape, &u)) {
                    fprintf(stderr, "%stapegrad train: %s\n", tty && show ? "\n" : "", tg_errmsg(ctx));
                    status = CLI_FAILURE;
                    goto stop;
                }
                double norm = 0, raw = 0, per = kind == TD_TEXT ? (double)steps * cols : (double)cols;
                if (u.loss) {
                    raw = tg_item(u.loss);
                    tg_tensor *obj = per == 1 ? u.loss : tg_scale(tape, u.loss, 1.0 / per, 0.0);
                    if (!obj || tg_backward(tape, obj) || tg_optim_step(R.opt, &norm)) {
                        fprintf(stderr, "%stapegrad train: step %llu: %s\n", tty && show ? "\n" : "",
                                (unsigned long long)pos.step + 1, tg_errmsg(ctx));
                        status = CLI_FAILURE;
                        goto stop;
                    }
                }
                if (!isfinite(raw)) {
                    fprintf(stderr, "%stapegrad train: step %llu: the loss is %g (try a smaller --lr or --clip)\n",
                            tty && show ? "\n" : "", (unsigned long long)pos.step + 1, raw);
                    status = CLI_FAILURE;
                    goto stop;
                }
                for (int i = 0; i < R.n_st; i++)
                    memcpy(R.carry[i], tg_data(u.state[i]), (size_t)R.carry_size[i] * sizeof(tg_real));
                has_carry = 1;
                pos.epoch_loss += raw;
                pos.epoch_count += kind == TD_TEXT ? (double)steps * cols : (pos.chunk == 0 ? cols : 0);
                pos.step++;
                double t = now() - t_start;
                if (R.log && u.loss)
                    fprintf(R.log, "%llu,%d,%.9g,%.9g,%.6f\n", (unsigned long long)pos.step, pos.epoch + 1,
                            raw / per, norm, base_seconds + t);
                if (show && ((tty && t - t_shown >= 0.1) || (!tty && pos.step % (uint64_t)o.print_every == 0))) {
                    double rate = (double)(pos.step - step0) / (t > 0 ? t : 1e-9);
                    double shown = pos.epoch_count > 0 ? pos.epoch_loss / pos.epoch_count : last_epoch_loss;
                    fprintf(stderr, "%sepoch %d/%d  step %llu/%llu  loss %.6g  %.0f steps/s  ETA %s%s",
                            tty ? "\r\033[K" : "", pos.epoch + 1, o.epochs, (unsigned long long)pos.step,
                            (unsigned long long)total_steps, shown, rate,
                            duration(ebuf, sizeof ebuf, (double)(total_steps - pos.step) / rate), tty ? "" : "\n");
                    t_shown = t;
                }
            }
        }
        last_epoch_loss = pos.epoch_loss / (pos.epoch_count > 0 ? pos.epoch_count : 1);
        if (isnan(first_epoch_loss)) first_epoch_loss = last_epoch_loss;
        pos.epoch++, pos.batch = 0, pos.chunk = 0, pos.epoch_loss = 0, pos.epoch_count = 0;
        if (o.target > 0 && last_epoch_loss < o.target) reached = 1;
    }
    if (o.save) SAVE_CHECKPOINT();
    goto stop;

interrupt:
    if (!interrupted) {
        /* --steps: a planned stop */
        if (o.save) SAVE_CHECKPOINT();
        goto stop;
    }
    status = EXIT_INTERRUPTED;
    if (show && tty) fputc('\n', stderr);
    if (o.save) {
        SAVE_CHECKPOINT();
        fprintf(stderr, "tapegrad train: interrupted at step %llu; saved %s (continue with --resume %s)\n",
                (unsigned long long)pos.step, o.save, o.save);
    } else {
        fprintf(stderr, "tapegrad train: interrupted at step %llu; nothing saved (no --save)\n",
                (unsigned long long)pos.step);
    }

stop:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (R.log) {
        fclose(R.log);
        R.log = NULL;
    }
    double secs = now() - t_start;
    if (isnan(last_epoch_loss) && pos.epoch_count > 0) last_epoch_loss = pos.epoch_loss / pos.epoch_count;
    if (status == CLI_OK && show) {
        if (tty) fputc('\n', stderr);
        printf("trained %s: %llu steps in %s (%.0f steps/s), %d epochs; loss %.6g %s%s\n", tg_model_name(m),
               (unsigned long long)(pos.step - step0), duration(dbuf, sizeof dbuf, secs),
               (double)(pos.step - step0) / (secs > 0 ? secs : 1e-9), pos.epoch, last_epoch_loss, unit,
               reached ? " (reached --target)" : "");
        if (!isnan(first_epoch_loss) && !o.resume) printf("  (first epoch: %.6g)\n", first_epoch_loss);
        if (o.save) printf("saved %s (training state: %s)\n", o.save, state_path);
    }
    if (status == CLI_OK && o.plot) {
        const char *lp = o.log ? o.log : R.log_tmp;
        char title[128], ylabel[64];
        snprintf(title, sizeof title, "tapegrad train %s", tg_model_name(m));
        snprintf(ylabel, sizeof ylabel, "loss (%s)", unit);
        const cli_plot_series loss_curve = {1, 3, "loss"};
        if (cli_plot_csv("train", lp, o.plot, title, "step", ylabel, 1, &loss_curve, 1) == 0 && show)
            printf("plotted the loss to %s\n", o.plot);
    }
    run_free(&R);
    if (interrupted && status == EXIT_INTERRUPTED) return EXIT_INTERRUPTED;
    return status;
}

const cli_cmd cli_cmd_train = {"train", "fit a model's parameters to data (optimizers, BPTT, checkpoints)", train};
