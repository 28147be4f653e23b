/* cmd_train.c — `tapegrad train MODEL --data DATA ...`: flags in, the
 * library's trainer (tapegrad.h, "training") does the work, progress out: a
 * line that fits the terminal, a CSV log, a gnuplot picture, a summary in
 * text or JSON.  Ctrl-C stops after the step under way, saves and exits 130. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "plot.h"
#include "tg_files.h"

#define EXIT_INTERRUPTED 130

static tg_trainer *volatile running; /* what a signal stops */
static cli_parallel *volatile running_par; /* with ranks, they agree on the step to stop after */
static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
    interrupted = sig;
    if (running_par) running_par->stop = 1;
    else if (running) tg_trainer_stop(running);
}

static const char *duration(char *buf, size_t len, double s)
{
    if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
    else if (s < 60) snprintf(buf, len, "%.0fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, len, "%dh%02dm", (int)s / 3600, (int)s / 60 % 60);
    return buf;
}

/* The terminal's width: TIOCGWINSZ, else $COLUMNS, else 80. */
static int term_width(void)
{
    struct winsize ws;
    if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}

typedef struct train_opts {
    cli_common c;
    int epochs, batch, bptt, save_every, print_every, quiet, nesterov, decoupled, max_steps;
    int accumulate, warmup, step_size, plateau_patience, patience, eps_inside;
    const char *optimizer, *save, *resume, *log, *plot, *reduction, *schedule, *valid, *memory;
    double lr, clip, clip_value, momentum, beta1, beta2, rho, eps, weight_decay, target, gamma, valid_split;
    int seed_given;
} train_opts;

/* What the progress callback needs. */
typedef struct show {
    const train_opts *o;
    tg_trainer *tr;
    cli_parallel *par;
    int tty, show, width, failed, plan_shown;
    size_t memory;            /* the run's budget: its schedule is shown after the first step */
    double shown_at, t0;
    uint64_t step0;
    FILE *log;
    char row[256];            /* the last step's log row, written when the next report comes */
    uint64_t last_saved;
    char msg[4400];
} show;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void flush_row(show *S, double valid)
{
    if (!S->log || !S->row[0]) return;
    if (isnan(valid)) fprintf(S->log, "%s,\n", S->row);
    else fprintf(S->log, "%s,%.9g\n", S->row, valid);
    S->row[0] = 0;
}

/* One progress line, cut to the terminal's width so that it never wraps. */
static void progress_line(show *S, const tg_train_progress *p)
{
    char line[512], ebuf[32];
    double t = now() - S->t0;
    double rate = (double)(p->step - S->step0) / (t > 0 ? t : 1e-9);
    int n = snprintf(line, sizeof line, "epoch %d/%d  step %llu/%llu  loss %.6g", p->epoch, p->epochs,
                     (unsigned long long)p->step, (unsigned long long)p->total_steps, p->loss);
    if (!isnan(p->valid_loss) && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, "  valid %.6g", p->valid_loss);
    if (n < (int)sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, "  %.0f steps/s  ETA %s", rate,
                 duration(ebuf, sizeof ebuf, (double)(p->total_steps - p->step) / rate));
    if (S->tty) {
        int w = S->width - 1;
        if (w < 1) w = 1;
        if ((int)strlen(line) > w) line[w] = 0;
        fprintf(stderr, "\r\033[K%s", line);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

static int on_progress(const tg_train_progress *p, void *user)
{
    show *S = user;
    const train_opts *o = S->o;
    if (p->epoch_end) {
        flush_row(S, p->valid_loss);
        return 0;
    }
    flush_row(S, NAN);
    if (S->log)
        snprintf(S->row, sizeof S->row, "%llu,%d,%.9g,%.9g,%.6f,%.9g", (unsigned long long)p->step, p->epoch,
                 p->step_loss, p->grad_norm, p->seconds, p->lr);
    if (o->save && o->save_every > 0 && p->step - S->last_saved >= (uint64_t)o->save_every) {
        /* every rank gathers the carried states, rank 0 writes */
        if (tg_trainer_gather(S->tr) || ((!S->par || S->par->rank == 0) && tg_trainer_save(S->tr, o->save))) {
            S->failed = 1;
            return 1;
        }
        S->last_saved = p->step;
    }
    if (S->show && S->memory && !S->plan_shown && p->plan.steps) {
        char line[512];
        cli_plan_text(line, sizeof line, S->memory, &p->plan);
        fprintf(stderr, "%s%s\n", S->tty ? "\r\033[K" : "", line);
        S->plan_shown = 1;
    }
    double t = now() - S->t0;
    if (S->show && ((S->tty && t - S->shown_at >= 0.1) || (!S->tty && p->step % (uint64_t)o->print_every == 0))) {
        progress_line(S, p);
        S->shown_at = t;
    }
    return 0;
}

int cli_train(const cli_cmd *cmd, int argc, char **argv, cli_parallel *par)
{
    int writer = !par || par->rank == 0; /* prints and writes files */
    train_opts o = {.epochs = -1, .bptt = -2, .save_every = 1000, .print_every = 100, .lr = NAN, .momentum = NAN,
                    .beta1 = NAN, .beta2 = NAN, .rho = NAN, .eps = NAN, .accumulate = 1, .step_size = 1000,
                    .plateau_patience = 10};
    uint64_t seed_sentinel = UINT64_MAX - 7;
    o.c.seed = seed_sentinel;
    cli_opt opts[64] = {
        CLI_OPT_DATA(&o.c, "sequences (.yaml), a series (.csv) or text (any other; - reads standard input)"),
        CLI_OPT_PARAMS(&o.c),
        {"epochs", CLI_INT, &o.epochs, "N", "passes over the data (required unless --resume)", 0, 100000000},
        {"optimizer", CLI_CHOICE, &o.optimizer, "sgd|momentum|adam|rmsprop|adagrad", "(default adam)", 0, 0},
        {"lr", CLI_DOUBLE, &o.lr, "X", "learning rate (default 0.001 adam, 0.01 others)", 0, 1e6},
        {"clip", CLI_DOUBLE, &o.clip, "X", "clip the gradients' global L2 norm to X (default: none)", 0, 1e300},
        {"clip-value", CLI_DOUBLE, &o.clip_value, "X", "clamp each gradient element to [-X, X] (default: none)",
         0, 1e300},
        {"momentum", CLI_DOUBLE, &o.momentum, "X", "momentum: mu (default 0.9)", 0, 0.999999},
        {"nesterov", CLI_FLAG, &o.nesterov, NULL, "momentum: Nesterov's form", 0, 0},
        {"beta1", CLI_DOUBLE, &o.beta1, "X", "adam: first-moment decay (default 0.9)", 0, 0.999999},
        {"beta2", CLI_DOUBLE, &o.beta2, "X", "adam: second-moment decay (default 0.999)", 0, 0.999999999},
        {"rho", CLI_DOUBLE, &o.rho, "X", "rmsprop: squared-gradient decay (default 0.99)", 0, 0.999999999},
        {"eps", CLI_DOUBLE, &o.eps, "X", "adam, rmsprop, adagrad: denominator offset (default 1e-8; adagrad 1e-10)",
         0, 1},
        {"eps-inside", CLI_FLAG, &o.eps_inside, NULL, "adam, rmsprop, adagrad: g / sqrt(v + eps), not g / (sqrt(v) + eps)",
         0, 0},
        {"weight-decay", CLI_DOUBLE, &o.weight_decay, "X", "L2 weight decay (added to the gradient)", 0, 1e300},
        {"decoupled", CLI_FLAG, &o.decoupled, NULL, "decay the weights directly instead (AdamW)", 0, 0},
        {"batch", CLI_INT, &o.batch, "B", "sequences per step, as columns (default 1, or the data's)", 1, 65536},
        {"bptt", CLI_INT, &o.bptt, "K", "truncated BPTT in chunks of K steps (default: full; text 64)", 0, 1000000},
        {"accumulate", CLI_INT, &o.accumulate, "N", "minibatches (chunks) per optimizer step (default 1)", 1, 1000000},
        {"reduction", CLI_CHOICE, &o.reduction, "mean|sum",
         "the objective: the loss per sequence (text: per character), or summed (default mean)", 0, 0},
        {"schedule", CLI_CHOICE, &o.schedule, "constant|step|exp|cosine|plateau",
         "learning-rate schedule, per step as torch.optim.lr_scheduler (default constant)", 0, 0},
        {"warmup", CLI_INT, &o.warmup, "N", "steps of linear warm-up from 0 (default 0)", 0, 2000000000},
        {"gamma", CLI_DOUBLE, &o.gamma, "X", "step, exp, plateau: the factor (default 0.1; exp 0.99)", 0, 1},
        {"step-size", CLI_INT, &o.step_size, "N", "step: steps between decays (default 1000)", 1, 2000000000},
        {"plateau-patience", CLI_INT, &o.plateau_patience, "N",
         "plateau: epochs without improvement before the lr drops (default 10)", 0, 2000000000},
        {"valid", CLI_STRING, &o.valid, "FILE", "validation data (like --data); its loss is shown per epoch", 0, 0},
        {"valid-split", CLI_DOUBLE, &o.valid_split, "F",
         "validate on the last fraction F of the sequences (or of the text)", 0, 0.99},
        {"patience", CLI_INT, &o.patience, "N",
         "stop after N epochs without a better validation loss; keep the best parameters", 0, 2000000000},
        {"seed", CLI_U64, &o.c.seed, "S", "seed of the initial weights and the shuffling (default 1)", 0, 0},
        CLI_OPT_DIM(&o.c),
        {"steps", CLI_INT, &o.max_steps, "N", "stop after N steps in all (resumable, like Ctrl-C)", 1, 2000000000},
        {"memory", CLI_STRING, &o.memory, "SIZE", CLI_MEMORY_HELP " (a resumed run keeps its own)", 0, 0},
        {"target", CLI_DOUBLE, &o.target, "LOSS", "stop after an epoch whose mean loss is below LOSS", 0, 1e300},
        {"save", CLI_STRING, &o.save, "FILE", "checkpoint: one file that resumes the run and that run, grad, dump "
                                              "and sample read", 0, 0},
        {"save-every", CLI_INT, &o.save_every, "N", "steps between checkpoints (default 1000; 0: at the end)",
         0, 2000000000},
        {"resume", CLI_STRING, &o.resume, "FILE", "continue the run saved in FILE (without --save: saves back "
                                                  "into FILE)", 0, 0},
        {"log", CLI_STRING, &o.log, "FILE", "CSV: step,epoch,loss,grad_norm,seconds,lr,valid_loss", 0, 0},
        {"plot", CLI_STRING, &o.plot, "FILE", "the loss curve as .svg or .png (with gnuplot)", 0, 0},
        {"print-every", CLI_INT, &o.print_every, "N", "no terminal: a progress line every N steps (100)", 1, 2000000000},
        CLI_OPT_FORMAT(&o.c),
        {"quiet", CLI_FLAG, &o.quiet, NULL, "print nothing but errors", 0, 0},
    };
    const char *positional[1];
    cli_usage usage = {
        "MODEL --data DATA --epochs N [options]",
        "Fits MODEL's parameters to DATA by back-propagation through time and saves\n"
        "a checkpoint that resumes the run and that grad, run and dump read with\n"
        "--params.  DATA is YAML sequences (.yaml), a CSV series (.csv: a header of\n"
        "input and target names, one line per step, a blank line between sequences),\n"
        "or any other file as UTF-8 text for a character model (one-hot over its\n"
        "characters; the model needs a dim named vocab).  The loss shown is the\n"
        "model's loss per sequence averaged over the epoch (for text: nats per\n"
        "character).  Ctrl-C stops after the current step, saves a checkpoint (with\n"
        "--save) and exits with status 130.  With --memory SIZE each chunk's BPTT keeps\n"
        "at most SIZE bytes of tape and state snapshots, recording segments again from\n"
        "snapshots; the gradients are those of full BPTT (to float rounding).",
        1, positional};
    int n_opts = 0;
    while (opts[n_opts].name) n_opts++;
    for (int i = 0; par && i < par->n_opts && n_opts < 63; i++) opts[n_opts++] = par->opts[i];
    int prc = cli_parse(cmd, &usage, opts, n_opts, argc, argv);
    if (prc) return prc < 0 ? CLI_OK : prc;
    o.c.model = positional[0];
    o.seed_given = o.c.seed != seed_sentinel;
    if (!o.seed_given) o.c.seed = 1;
    int json = o.c.format && !strcmp(o.c.format, "json");
    if (!o.c.data) return cli_usage_error(cmd, "--data FILE is required (the sequences to learn)");
    if (o.epochs < 0 && !o.resume) return cli_usage_error(cmd, "--epochs N is required");
    if (o.c.params && o.resume)
        return cli_usage_error(cmd, "--params and --resume both give the starting parameters; use one");
    if (o.valid && o.valid_split > 0) return cli_usage_error(cmd, "--valid and --valid-split both give validation data; use one");
    if (o.plot) {
        const char *dot = strrchr(o.plot, '.');
        if (!dot || (strcmp(dot, ".svg") && strcmp(dot, ".png")))
            return cli_usage_error(cmd, "--plot FILE must end in .svg or .png, not '%s'", o.plot);
    }
    size_t memory = 0;
    if (o.memory) {
        int mrc = cli_parse_memory(cmd, o.memory, &memory);
        if (mrc) return mrc;
    }
    if (o.nesterov && o.optimizer && strcmp(o.optimizer, "momentum"))
        return cli_usage_error(cmd, "--nesterov goes with --optimizer momentum");
    /* --resume without --save saves back into the resumed checkpoint */
    int save_back = o.resume && !o.save;
    if (save_back) o.save = o.resume;
    /* every output, before any work: never one of the inputs, never a device */
    {
        /* --save may be the checkpoint --resume reads (it goes on from it) */
        const char *ins[] = {o.c.model, o.c.data, o.c.params, o.valid, o.resume, o.save};
        int rc = cli_check_outputs(cmd, &o.save, 1, ins, 4);
        const char *outs[] = {o.log, o.plot};
        if (!rc) rc = cli_check_outputs(cmd, outs, 2, ins, 6);
        if (rc) return rc;
    }

    int rc = CLI_OK;
    cli_session s;
    memset(&s, 0, sizeof s);
    tg_ctx *aux = tg_ctx_new(NULL); /* for what is read before the model: checkpoint, text */
    tg_checkpoint *ck = NULL;
    tg_trainset *data = NULL, *valid = NULL;
    tg_trainer *tr = NULL;
    tg_file_lock lock = {.fd = -1};
    show S;
    memset(&S, 0, sizeof S);
    if (!aux) return cli_error(CLI_FAILURE, "tapegrad train: out of memory");
    char msg[4400];
    if (writer && o.save && tg_file_lock_take(o.save, &lock, msg, sizeof msg)) {
        rc = cli_error(CLI_USAGE, "tapegrad train: %s", msg);
        goto out;
    }
    tg_train_opts to = tg_train_defaults();
    if (o.resume) {
        if (!(ck = tg_checkpoint_open(aux, o.resume))) {
            rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(aux));
            goto out;
        }
        if (tg_checkpoint_opts(ck, &to)) {
            rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(aux));
            goto out;
        }
        if (o.optimizer && tg_optim_kind_parse(o.optimizer) != (int)to.optim.kind) {
            rc = cli_usage_error(cmd, "--optimizer %s, but %s holds %s state (leave --optimizer out to go on with %s)",
                                 o.optimizer, o.resume, tg_optim_kind_name(to.optim.kind),
                                 tg_optim_kind_name(to.optim.kind));
            goto out;
        }
        if (o.batch && o.batch != to.batch) {
            rc = cli_usage_error(cmd, "--batch %d, but the run in %s used --batch %d", o.batch, o.resume, to.batch);
            goto out;
        }
        if (o.bptt >= 0 && o.bptt != to.bptt) {
            rc = cli_usage_error(cmd, "--bptt %d, but the run in %s used --bptt %d", o.bptt, o.resume, to.bptt);
            goto out;
        }
        if (o.seed_given && o.c.seed != to.seed) {
            rc = cli_usage_error(cmd, "--seed %llu, but the run in %s used --seed %llu", (unsigned long long)o.c.seed,
                                 o.resume, (unsigned long long)to.seed);
            goto out;
        }
        if (o.accumulate != 1 && o.accumulate != to.accumulate) {
            rc = cli_usage_error(cmd, "--accumulate %d, but the run in %s used --accumulate %d", o.accumulate,
                                 o.resume, to.accumulate);
            goto out;
        }
        o.c.seed = to.seed;
        if (o.epochs >= 0) to.epochs = o.epochs;
        to.max_steps = 0;
        if (!isnan(o.lr)) to.optim.lr = o.lr;
        if (o.clip > 0) to.optim.clip = o.clip;
        if (o.clip_value > 0) to.optim.clip_value = o.clip_value;
        if (o.target > 0) to.target = o.target;
        if (o.patience > 0) to.patience = o.patience;
        if (o.memory) to.memory = memory; /* a budget does not change the run's plan */
    } else {
        to.optim = tg_optim_defaults((tg_optim_kind)tg_optim_kind_parse(o.optimizer ? o.optimizer : "adam"));
        if (!isnan(o.lr)) to.optim.lr = o.lr;
        if (!isnan(o.momentum)) to.optim.momentum = o.momentum;
        if (!isnan(o.beta1)) to.optim.beta1 = o.beta1;
        if (!isnan(o.beta2)) to.optim.beta2 = o.beta2;
        if (!isnan(o.rho)) to.optim.rho = o.rho;
        if (!isnan(o.eps)) to.optim.eps = o.eps;
        to.optim.nesterov = o.nesterov;
        to.optim.decoupled = o.decoupled;
        to.optim.weight_decay = o.weight_decay;
        to.optim.clip = o.clip;
        to.optim.clip_value = o.clip_value;
        to.optim.eps_inside = o.eps_inside;
        to.epochs = o.epochs;
        to.batch = o.batch;
        to.bptt = o.bptt == -2 ? -1 : o.bptt;
        to.accumulate = o.accumulate;
        to.reduction = o.reduction && !strcmp(o.reduction, "sum") ? TG_REDUCE_SUM : TG_REDUCE_MEAN;
        to.schedule = o.schedule ? (tg_schedule)tg_schedule_parse(o.schedule) : TG_SCHED_CONSTANT;
        to.warmup = o.warmup;
        to.gamma = o.gamma;
        to.step_size = o.step_size;
        to.plateau_patience = o.plateau_patience;
        to.target = o.target;
        to.patience = o.patience;
        to.seed = o.c.seed;
        to.memory = memory;
    }
    if (o.nesterov && to.optim.kind != TG_OPTIM_MOMENTUM) {
        rc = cli_usage_error(cmd, "--nesterov goes with --optimizer momentum");
        goto out;
    }

    /* text: the vocabulary (the checkpoint's when resuming) sets the model's `vocab` dim */
    const char *dot = strrchr(o.c.data, '.'), *slash = strrchr(o.c.data, '/');
    int text = !(dot && (!slash || dot > slash) && (!strcmp(dot, ".csv") || !strcmp(dot, ".yaml") || !strcmp(dot, ".yml")));
    cli_common c = o.c;
    c.data = NULL;
    if (text) {
        if (!(data = tg_trainset_text(aux, o.c.data, ck ? tg_checkpoint_vocab(ck) : NULL))) {
            rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(aux));
            goto out;
        }
        if (c.dims.n == CLI_MAX_DIMS) {
            rc = cli_usage_error(cmd, "too many --dim options");
            goto out;
        }
        c.dims.dim[c.dims.n++] = (tg_dim){"vocab", tg_vocab_size(tg_trainset_vocab(data))};
    }
    if ((rc = cli_open(&s, &c))) {
        if (text)
            cli_error(0, "tapegrad train: (text data is one-hot encoded over its %d distinct characters, so the model "
                         "needs a dim named 'vocab' for its input and target size)",
                      tg_vocab_size(tg_trainset_vocab(data)));
        goto out;
    }
    tg_model *m = s.model;
    tg_ctx *ctx = s.ctx;
    if (!tg_model_has_loss(m)) {
        rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s: the model has no 'loss', so there is nothing to train",
                       o.c.model);
        goto out;
    }
    if (!text && !(data = tg_trainset_load(ctx, m, o.c.data, NULL))) {
        rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(ctx));
        goto out;
    }
    if (o.valid && !(valid = tg_trainset_load(text ? aux : ctx, m, o.valid, tg_trainset_vocab(data)))) {
        rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(text ? aux : ctx));
        goto out;
    }
    if (o.valid_split > 0 && !(valid = tg_trainset_split(data, o.valid_split))) {
        rc = cli_error(CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(text ? aux : ctx));
        goto out;
    }
    to.max_steps = (uint64_t)o.max_steps; /* counts every step of the run, resumed ones included */
    if (!(tr = tg_trainer_new(m, s.params, &to))) {
        rc = cli_error(CLI_USAGE, "tapegrad train: %s", tg_errmsg(ctx));
        goto out;
    }
    if (par && (rc = par->attach(par, tr, s.params, text))) goto out;
    if (tg_trainer_set_data(tr, data, valid)) {
        /* TG_ERR_ARG: the options do not fit the data (--batch, --bptt) */
        rc = cli_error(tg_status_last(ctx) == TG_ERR_ARG ? CLI_USAGE : CLI_BAD_INPUT, "tapegrad train: %s",
                       tg_errmsg(ctx));
        goto out;
    }
    if (ck && tg_trainer_resume(tr, ck)) {
        tg_status st = tg_status_last(ctx);
        rc = cli_error(st == TG_ERR_ARG ? CLI_USAGE : CLI_BAD_INPUT, "tapegrad train: %s", tg_errmsg(ctx));
        goto out;
    }

    S.o = &o;
    S.tr = tr;
    S.par = par;
    S.tty = isatty(2);
    S.show = !o.quiet && writer;
    if (!writer) o.log = o.plot = NULL;
    S.width = term_width();
    const tg_train_progress *p0 = tg_trainer_progress(tr);
    S.step0 = S.last_saved = p0->step;
    char log_tmp[64] = "";
    if (o.log || o.plot) {
        const char *lp = o.log;
        if (!lp) {
            snprintf(log_tmp, sizeof log_tmp, "/tmp/tapegrad-loss-XXXXXX");
            int fd = mkstemp(log_tmp);
            if (fd < 0) log_tmp[0] = 0;
            else close(fd);
            lp = log_tmp;
        }
        /* a resumed run appends to its log */
        int append = o.resume && o.log && access(o.log, F_OK) == 0;
        S.log = lp[0] ? fopen(lp, append ? "a" : "w") : NULL;
        if (!S.log) {
            rc = cli_error(CLI_FAILURE, "tapegrad train: %s: cannot write the log: %s", lp[0] ? lp : "/tmp",
                           strerror(errno));
            goto out;
        }
        if (!append) fprintf(S.log, "step,epoch,loss,grad_norm,seconds,lr,valid_loss\n");
    }
    const char *unit = text ? "nats per character" : "per sequence";
    const tg_optim_opts *oo = &to.optim;
    if (S.show && !json) {
        if (save_back) fprintf(stderr, "tapegrad train: no --save: saving back into %s\n", o.resume);
        size_t n_chars = tg_trainset_length(data);
        if (text)
            fprintf(stderr, "train %s on %s: %zu characters, vocabulary %d, batch %d, %s%s\n", tg_model_name(m),
                    o.c.data, n_chars, tg_vocab_size(tg_trainset_vocab(data)), to.batch ? to.batch : 1,
                    to.bptt == 0 ? "full BPTT" : "truncated BPTT",
                    valid ? ", validation held out" : "");
        else
            fprintf(stderr, "train %s on %s: %zu sequence%s, %s%s\n", tg_model_name(m), o.c.data, n_chars,
                    n_chars == 1 ? "" : "s", to.bptt > 0 ? "truncated BPTT" : "full BPTT",
                    valid ? ", validation held out" : "");
        char clip[48] = "";
        if (oo->clip > 0) snprintf(clip, sizeof clip, ", clip %g", oo->clip);
        if (oo->clip_value > 0)
            snprintf(clip + strlen(clip), sizeof clip - strlen(clip), ", clip-value %g", oo->clip_value);
        size_t n_scalars = 0;
        for (int i = 0; i < tg_params_count(s.params); i++) n_scalars += tg_size(tg_params_at(s.params, i));
        char budget[64] = "", b[32];
        if (to.memory) snprintf(budget, sizeof budget, ", memory budget %s", cli_bytes(b, sizeof b, (double)to.memory));
        fprintf(stderr, "%s lr %g%s, %zu parameters, %d epochs%s%s\n", tg_optim_kind_name(oo->kind), oo->lr, clip,
                n_scalars, to.epochs, budget, o.resume ? " (resumed)" : "");
    }
    S.memory = to.memory;
    tg_trainer_set_progress(tr, on_progress, &S);

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    running = tr;
    running_par = par;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    S.t0 = now();
    S.shown_at = -1; /* the first step shows a line at once: a short run on a terminal still sees one */
    tg_status st = TG_OK;
    if (par && (rc = par->agree(par, CLI_OK))) st = TG_ERR_IO; /* another rank failed and said why */
    else st = tg_trainer_run(tr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    running = NULL;
    running_par = NULL;
    if (rc) goto out;
    if (par && par->stopped) interrupted = SIGINT;
    flush_row(&S, NAN);
    if (S.log) {
        /* a full disk shows first here: the rows were buffered */
        int bad = ferror(S.log);
        bad |= fclose(S.log) != 0;
        S.log = NULL;
        if (bad && !rc && o.log) {
            rc = cli_error(CLI_FAILURE, "tapegrad train: %s: writing the log failed: %s", o.log, strerror(errno));
            goto out;
        }
    }
    const tg_train_progress *p = tg_trainer_progress(tr);
    tg_train_end end = tg_trainer_end(tr);
    if (S.show && S.tty && !json) fputc('\n', stderr);
    if (S.failed || st) {
        /* a budget too small for one step is a bad --memory */
        rc = cli_error(st == TG_ERR_ARG && to.memory ? CLI_USAGE : CLI_FAILURE, "tapegrad train: %s", tg_errmsg(ctx));
        goto out;
    }
    if (o.save && (tg_trainer_gather(tr) || (writer && tg_trainer_save(tr, o.save)))) {
        rc = cli_error(CLI_FAILURE, "tapegrad train: %s", tg_errmsg(ctx));
        goto out;
    }
    if (interrupted) {
        if (!writer) {
        } else if (o.save)
            cli_error(0, "tapegrad train: interrupted at step %llu; saved %s (continue with --resume %s)",
                      (unsigned long long)p->step, o.save, o.save);
        else
            cli_error(0, "tapegrad train: interrupted at step %llu; nothing saved (no --save)",
                      (unsigned long long)p->step);
        rc = EXIT_INTERRUPTED;
        goto out;
    }
    double secs = now() - S.t0, last = p->loss;
    uint64_t steps = p->step - S.step0;
    static const char *const ends[] = {"none", "epochs", "steps", "target", "patience", "stopped"};
    char dbuf[32];
    if (!writer) {
    } else if (json) {
        printf("{\"model\": \"%s\", \"steps\": %llu, \"total_steps\": %llu, \"epochs\": %d, \"loss\": %.9g, "
               "\"unit\": \"%s\", \"valid_loss\": ", tg_model_name(m), (unsigned long long)steps,
               (unsigned long long)p->step, p->epoch, last, text ? "nats per character" : "per sequence");
        if (isnan(p->valid_loss)) printf("null, \"best_valid_loss\": ");
        else printf("%.9g, \"best_valid_loss\": ", p->valid_loss);
        if (isnan(p->best_valid_loss)) printf("null");
        else printf("%.9g", p->best_valid_loss);
        if (to.memory) cli_plan_json(stdout, to.memory, &p->plan);
        printf(", \"seconds\": %.3f, \"end\": \"%s\", \"saved\": ", secs, ends[end]);
        if (o.save) cli_json_string(stdout, o.save);
        else printf("null");
        printf("}\n");
    } else if (S.show) {
        printf("trained %s: %llu steps in %s (%.0f steps/s), %d epochs; loss %.6g %s%s\n", tg_model_name(m),
               (unsigned long long)steps, duration(dbuf, sizeof dbuf, secs), (double)steps / (secs > 0 ? secs : 1e-9),
               p->epoch, last, unit, end == TG_END_TARGET ? " (reached --target)"
                                     : end == TG_END_PATIENCE ? " (no better validation loss: --patience; kept the best)"
                                                              : "");
        if (!isnan(p->valid_loss)) printf("  validation loss %.6g (best %.6g)\n", p->valid_loss, p->best_valid_loss);
        if (to.memory && p->plan.steps) {
            char line[512];
            cli_plan_text(line, sizeof line, to.memory, &p->plan);
            printf("  schedule of the last step: %s\n", line);
        }
        if (o.save) printf("saved %s\n", o.save);
    }
    if (o.plot) {
        const char *lp = o.log ? o.log : log_tmp;
        char title[160], ylabel[64];
        snprintf(title, sizeof title, "tapegrad train %s", tg_model_name(m));
        snprintf(ylabel, sizeof ylabel, "loss (%s)", unit);
        const cli_plot_series curves[] = {{1, 3, "loss"}, {1, 7, "validation loss"}};
        if (cli_plot_csv("train", lp, o.plot, title, "step", ylabel, 1, curves, valid ? 2 : 1) == 0 && S.show && !json)
            printf("plotted the loss to %s\n", o.plot);
    }
    if (log_tmp[0]) unlink(log_tmp);
out:
    if (S.log) fclose(S.log);
    tg_trainer_free(tr);
    tg_trainset_free(valid);
    tg_trainset_free(data);
    tg_checkpoint_close(ck);
    if (s.ctx) cli_close(&s);
    tg_ctx_free(aux);
    tg_file_lock_release(&lock);
    return rc;
}

static int train(const cli_cmd *cmd, int argc, char **argv) { return cli_train(cmd, argc, argv, NULL); }

const cli_cmd cli_cmd_train = {"train", "fit a model's parameters to data (optimizers, BPTT, checkpoints)", train};
