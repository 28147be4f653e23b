/* common.c — option parsing with generated help, loading a model with its
 * params and data, and printing, shared by every `tapegrad` subcommand. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "tg_escape.h"
#include "tg_files.h"

/* ---- suggestions ------------------------------------------------------------------ */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) return 100;
    int row[42];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j], best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

const char *cli_suggest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = strlen(word) <= 3 ? 2 : 3;
    for (int i = 0; i < n; i++) {
        int d = distance(word, cands[i]);
        if (d < bd) {
            bd = d;
            best = cands[i];
        }
    }
    return best;
}

/* ---- threads: every command takes --threads N --------------------------------------------
 * cli_parse() knows this option besides a command's own table, and cli_open()
 * hands the value to tg_ctx_set_threads().  One command runs per process, so
 * the parsed value is kept here.  0: the default. */
static int opt_threads;
static const cli_opt threads_opt = {"threads", CLI_INT, &opt_threads, "N", "", 1, TG_MAX_THREADS};

int cli_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > CLI_MAX_DEFAULT_THREADS ? CLI_MAX_DEFAULT_THREADS : (int)n;
}

/* ---- options ------------------------------------------------------------------------- */
/* Every message the tool prints goes through here: a string from an input
 * (a path, an option's value, a library message naming a file) is escaped. */
static void put_escaped(const char *fmt, va_list ap)
{
    char msg[4096], shown[8192];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fputs(tg_esc_str(shown, sizeof shown, msg, TG_ESC_TEXT), stderr);
}

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    put_escaped(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tapegrad %s: ", cmd->name);
    put_escaped(fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'tapegrad %s --help'.\n", cmd->name);
    return CLI_USAGE;
}

int cli_check_outputs(const cli_cmd *cmd, const char *const *outputs, int n_out, const char *const *inputs,
                      int n_in)
{
    for (int i = 0; i < n_out; i++) {
        char msg[2048];
        if (outputs[i] && tg_file_check_output(outputs[i], inputs, n_in, msg, sizeof msg) != TG_OK)
            return cli_error(CLI_USAGE, "tapegrad %s: %s", cmd->name, msg);
    }
    return 0;
}

void cli_help(FILE *f, const cli_cmd *cmd, const cli_usage *usage, const cli_opt *opts, int n_opts)
{
    fprintf(f, "usage: tapegrad %s %s\n\n%s\n\noptions:\n", cmd->name, usage->args, usage->about);
    for (int i = 0; i < n_opts; i++) {
        char left[64];
        if (opts[i].kind == CLI_FLAG) snprintf(left, sizeof left, "--%s", opts[i].name);
        else snprintf(left, sizeof left, "--%s %s", opts[i].name, opts[i].meta);
        fprintf(f, "  %-22s %s\n", left, opts[i].help);
    }
    fprintf(f, "  %-22s threads for large products, 1 to %d (default: the online CPUs up to %d, here %d)\n",
            "--threads N", TG_MAX_THREADS, CLI_MAX_DEFAULT_THREADS, cli_default_threads());
    fprintf(f, "  %-22s %s\n\n%s", "-h, --help", "show this help", CLI_EXIT_CODES);
}

static int set_value(const cli_cmd *cmd, const cli_opt *o, const char *v)
{
    char *end;
    switch (o->kind) {
    case CLI_FLAG:
        *(int *)o->dst = 1;
        return 0;
    case CLI_STRING:
        if (!*v) return cli_usage_error(cmd, "--%s needs a non-empty %s", o->name, o->meta);
        *(const char **)o->dst = v;
        return 0;
    case CLI_CHOICE: {
        size_t n = strlen(v);
        for (const char *p = o->meta; *p;) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (len == n && !strncmp(p, v, n)) {
                *(const char **)o->dst = p == o->meta && !bar ? o->meta : v;
                return 0;
            }
            p += len + (bar ? 1 : 0);
        }
        return cli_usage_error(cmd, "--%s must be one of %s, not '%s'", o->name, o->meta, v);
    }
    case CLI_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || ((o->min || o->max) && (x < o->min || x > o->max)))
            return cli_usage_error(cmd, "--%s needs a whole number from %.0f to %.0f, not '%s'", o->name, o->min,
                                   o->max, v);
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_U64: {
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-')
            return cli_usage_error(cmd, "--%s needs a non-negative whole number, not '%s'", o->name, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case CLI_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || ((o->min || o->max) && (x < o->min || x > o->max)))
            return cli_usage_error(cmd, "--%s needs a number from %g to %g, not '%s'", o->name, o->min, o->max, v);
        *(double *)o->dst = x;
        return 0;
    }
    case CLI_DIMS: {
        cli_dims *d = o->dst;
        const char *eq = strchr(v, '=');
        if (!eq || eq == v)
            return cli_usage_error(cmd, "--%s takes NAME=VALUE, like hidden=8, not '%s'", o->name, v);
        errno = 0;
        long x = strtol(eq + 1, &end, 10);
        if (errno || end == eq + 1 || *end || x < 1 || x > 1000000)
            return cli_usage_error(cmd, "--%s %.*s= needs a whole number from 1 to 1000000, not '%s'", o->name,
                                   (int)(eq - v), v, eq + 1);
        if (d->n == CLI_MAX_DIMS) return cli_usage_error(cmd, "more than %d --%s options", CLI_MAX_DIMS, o->name);
        /* the name points into argv, which outlives the command; cut at '=' */
        ((char *)eq)[0] = 0;
        d->dim[d->n].name = v;
        d->dim[d->n].value = (int)x;
        d->n++;
        return 0;
    }
    }
    return CLI_USAGE;
}

int cli_parse(const cli_cmd *cmd, const cli_usage *usage, const cli_opt *opts, int n_opts, int argc, char **argv)
{
    int n_pos = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            cli_help(stdout, cmd, usage, opts, n_opts);
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == 0) {
            if (n_pos >= usage->n_positional)
                return cli_usage_error(cmd, "unexpected argument '%s'", a);
            usage->positional[n_pos++] = a;
            continue;
        }
        if (a[1] != '-') return cli_usage_error(cmd, "unknown option '%s' (options are spelt --name)", a);
        const char *name = a + 2;
        char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, name, nlen)) o = &opts[k];
        if (!o && strlen(threads_opt.name) == nlen && !strncmp(threads_opt.name, name, nlen)) o = &threads_opt;
        if (!o) {
            const char *names[65];
            int n = 0;
            for (int k = 0; k < n_opts && n < 64; k++) names[n++] = opts[k].name;
            names[n++] = threads_opt.name;
            char word[48];
            snprintf(word, sizeof word, "%.*s", (int)(nlen < 40 ? nlen : 40), name);
            const char *s = cli_suggest(word, names, n);
            if (s) return cli_usage_error(cmd, "unknown option '--%s' (did you mean '--%s'?)", word, s);
            return cli_usage_error(cmd, "unknown option '--%s'", word);
        }
        const char *v;
        if (o->kind == CLI_FLAG) {
            if (eq) return cli_usage_error(cmd, "--%s takes no value", o->name);
            v = "";
        } else if (eq) v = eq + 1;
        else if (i + 1 < argc) v = argv[++i];
        else return cli_usage_error(cmd, "--%s needs a value (%s)", o->name, o->meta);
        int rc = set_value(cmd, o, v);
        if (rc) return rc;
    }
    if (n_pos < usage->n_positional)
        return cli_usage_error(cmd, "missing argument: usage: tapegrad %s %s", cmd->name, usage->args);
    return 0;
}

/* ---- sessions ---------------------------------------------------------------------------- */
void cli_close(cli_session *s)
{
    tg_tape_free(s->tape);
    tg_dataset_free(s->data);
    tg_params_free(s->params);
    tg_model_free(s->model);
    tg_ctx_free(s->ctx);
    memset(s, 0, sizeof *s);
}

static int exit_code(tg_status st)
{
    switch (st) {
    case TG_OK: return CLI_OK;
    case TG_ERR_CHECK: return CLI_CHECK_FAILED;
    case TG_ERR_NOMEM:
    case TG_ERR_NONFINITE: return CLI_FAILURE;
    default: return CLI_BAD_INPUT;
    }
}

int cli_fail(cli_session *s)
{
    tg_status st = s->ctx ? tg_status_last(s->ctx) : TG_ERR_NOMEM;
    const char *msg = s->ctx ? tg_errmsg(s->ctx) : "out of memory";
    if (!st) st = TG_ERR_NOMEM;
    return cli_error(exit_code(st), "%s", msg[0] ? msg : tg_status_name(st));
}

tg_model *cli_model_or_checkpoint(tg_ctx *ctx, const char *path, const cli_dims *dims,
                                  tg_checkpoint **ckpt)
{
    *ckpt = NULL;
    if (!tg_checkpoint_is(path)) return tg_model_load(ctx, path, dims->dim, dims->n);
    if (!(*ckpt = tg_checkpoint_open(ctx, path))) return NULL;
    tg_model *m = tg_checkpoint_model(*ckpt, dims->dim, dims->n);
    if (!m) {
        tg_checkpoint_close(*ckpt);
        *ckpt = NULL;
    }
    return m;
}

int cli_open(cli_session *s, const cli_common *o)
{
    memset(s, 0, sizeof *s);
    s->model_path = o->model;
    s->data_path = o->data;
    if (!(s->ctx = tg_ctx_new(NULL))) {
        fprintf(stderr, "tapegrad: cannot create a context\n");
        return CLI_FAILURE;
    }
    int rc = CLI_OK;
    if (tg_ctx_set_threads(s->ctx, opt_threads ? opt_threads : cli_default_threads()) != TG_OK) {
        rc = cli_fail(s);
        cli_close(s);
        return rc;
    }
    tg_checkpoint *ckpt = NULL;
    s->model = cli_model_or_checkpoint(s->ctx, o->model, &o->dims, &ckpt);
    if (!s->model) {
        /* a bad --dim is a usage error; everything else is the file's */
        int usage = tg_status_last(s->ctx) == TG_ERR_ARG;
        rc = cli_fail(s);
        if (usage) rc = CLI_USAGE;
    } else if (!(s->params = tg_params_new(s->ctx)) || !(s->tape = tg_tape_new(s->ctx)) ||
               tg_model_init_params(s->model, s->params, o->seed) ||
               (ckpt && tg_checkpoint_params(ckpt, s->model, s->params, 1)) ||
               (o->params && tg_params_load(s->params, s->model, o->params)) ||
               (o->data && !(s->data = tg_dataset_load(s->ctx, s->model, o->data))))
        rc = cli_fail(s);
    tg_checkpoint_close(ckpt);
    if (rc) cli_close(s);
    return rc;
}

int cli_check_targets(cli_session *s)
{
    int nt = tg_model_count(s->model, TG_ROLE_TARGET);
    if (!tg_model_has_loss(s->model)) {
        return cli_error(CLI_BAD_INPUT, "%s: model '%s' has no 'loss', so it has no gradient", s->model_path,
                         tg_model_name(s->model));
    }
    for (int q = 0; q < tg_dataset_count(s->data); q++)
        for (int i = 0; i < nt; i++)
            if (!tg_dataset_values(s->data, q, TG_ROLE_TARGET, i)) {
                const char *name = tg_model_var(s->model, TG_ROLE_TARGET, i, NULL, NULL);
                if (tg_dataset_count(s->data) > 1)
                    return cli_error(CLI_BAD_INPUT, "%s: sequence %d has no target '%s', which the loss needs",
                                     s->data_path, q + 1, name);
                return cli_error(CLI_BAD_INPUT, "%s: the data has no target '%s', which the loss needs",
                                 s->data_path, name);
            }
    return CLI_OK;
}

tg_status cli_unroll_all(cli_session *s, tg_tensor **loss, tg_unroll *per_seq)
{
    int ni = tg_model_count(s->model, TG_ROLE_INPUT), nt = tg_model_count(s->model, TG_ROLE_TARGET);
    const tg_real *in[256], *tg[256];
    *loss = NULL;
    tg_tape_reset(s->tape);
    for (int q = 0; q < tg_dataset_count(s->data); q++) {
        int have_targets = nt <= 256;
        for (int i = 0; i < ni && i < 256; i++) in[i] = tg_dataset_values(s->data, q, TG_ROLE_INPUT, i);
        for (int i = 0; i < nt && i < 256; i++)
            if (!(tg[i] = tg_dataset_values(s->data, q, TG_ROLE_TARGET, i))) have_targets = 0;
        tg_unroll u = {
            .params = s->params,
            .batch = tg_dataset_batch(s->data, q),
            .t0 = 0,
            .steps = tg_dataset_steps(s->data, q),
            .inputs = in,
            .targets = have_targets ? tg : NULL,
        };
        tg_status st = tg_model_unroll(s->model, s->tape, &u);
        if (st) return st;
        if (per_seq) per_seq[q] = u;
        if (u.loss) {
            *loss = *loss ? tg_add(s->tape, *loss, u.loss) : u.loss;
            if (!*loss) return tg_status_last(s->ctx);
        }
    }
    return TG_OK;
}

/* ---- printing ------------------------------------------------------------------------------ */
void cli_json_string(FILE *f, const char *s) { tg_esc_write(f, s, TG_ESC_JSON); }

void cli_json_number(FILE *f, double v)
{
    if (!isfinite(v)) fputs("null", f);
#ifdef TG_REAL_DOUBLE
    else fprintf(f, "%.17g", v);
#else
    else fprintf(f, "%.9g", v);
#endif
}

void cli_json_tensor(FILE *f, const tg_real *v, int rows, int cols, int ndim)
{
    fputc('[', f);
    if (ndim == 1) {
        for (int r = 0; r < rows; r++) {
            if (r) fputs(", ", f);
            cli_json_number(f, (double)v[r]);
        }
    } else {
        for (int r = 0; r < rows; r++) {
            fputs(r ? ", [" : "[", f);
            for (int c = 0; c < cols; c++) {
                if (c) fputs(", ", f);
                cli_json_number(f, (double)v[(size_t)r * (size_t)cols + (size_t)c]);
            }
            fputc(']', f);
        }
    }
    fputc(']', f);
}

void cli_text_tensor(FILE *f, const tg_real *v, int rows, int cols, const char *indent)
{
    for (int r = 0; r < rows; r++) {
        fputs(indent, f);
        for (int c = 0; c < cols; c++) {
            double x = (double)v[(size_t)r * (size_t)cols + (size_t)c];
            /* fixed columns where that shows the digits, else exponents */
            if (x == 0 || (fabs(x) >= 1e-4 && fabs(x) < 1e4)) fprintf(f, " %12.8f", x);
            else fprintf(f, " %12.4e", x);
        }
        fputc('\n', f);
    }
}

void cli_text_value(FILE *f, const tg_real *v, int rows, int cols)
{
    if (rows == 1 && cols == 1) {
        fprintf(f, "%.6g", (double)v[0]);
        return;
    }
    if (cols == 1) {
        fputc('[', f);
        for (int r = 0; r < rows; r++) fprintf(f, "%s%.6g", r ? ", " : "", (double)v[r]);
        fputc(']', f);
        return;
    }
    fputc('[', f);
    for (int r = 0; r < rows; r++) {
        fputs(r ? ", [" : "[", f);
        for (int c = 0; c < cols; c++)
            fprintf(f, "%s%.6g", c ? ", " : "", (double)v[(size_t)r * (size_t)cols + (size_t)c]);
        fputc(']', f);
    }
    fputc(']', f);
}

/* ---- a memory budget ------------------------------------------------------------------------ */
int cli_parse_memory(const cli_cmd *cmd, const char *text, size_t *bytes)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    if (!ctx) return cli_error(CLI_FAILURE, "tapegrad %s: out of memory", cmd->name);
    char msg[512];
    tg_status st = tg_parse_size(ctx, text, bytes);
    snprintf(msg, sizeof msg, "%s", st ? tg_errmsg(ctx) : "");
    tg_ctx_free(ctx);
    if (st) return cli_usage_error(cmd, "--memory: %s", msg);
    if (*bytes == 0)
        return cli_usage_error(cmd, "--memory '%s': a budget must be at least 1 byte (leave --memory out for no budget)",
                               text);
    return 0;
}

const char *cli_bytes(char *buf, size_t len, double bytes)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, len, "%.0f bytes", bytes);
        return buf;
    }
    int u = 0;
    for (bytes /= 1024; bytes >= 1024 && u < 5; u++) bytes /= 1024;
    snprintf(buf, len, "%.1f %s", bytes, units[u]);
    return buf;
}

void cli_plan_text(char *buf, size_t len, size_t memory, const tg_bptt_plan *p)
{
    char mb[32], tb[32], sb[32];
    cli_bytes(mb, sizeof mb, (double)memory);
    cli_bytes(tb, sizeof tb, (double)p->tape_bytes);
    cli_bytes(sb, sizeof sb, (double)p->snapshot_bytes);
    if (p->segments <= 1)
        snprintf(buf, len, "memory budget %s: %d steps in one segment, nothing recomputed; tape %s + snapshots %s", mb,
                 p->steps, tb, sb);
    else
        snprintf(buf, len, "memory budget %s: %d steps in %d segments of %d, %d snapshot%s, %lld steps recomputed "
                           "(%.2f forward passes, binomial schedule); tape %s + snapshots %s",
                 mb, p->steps, p->segments, p->segment, p->snapshots, p->snapshots == 1 ? "" : "s", p->recomputed,
                 p->steps > 0 ? (double)p->forward_steps / p->steps : 0.0, tb, sb);
}

void cli_plan_json(FILE *f, size_t memory, const tg_bptt_plan *p)
{
    fprintf(f, ", \"memory\": %zu, \"schedule\": {\"steps\": %d, \"segment\": %d, \"segments\": %d, \"snapshots\": %d, "
               "\"forward_steps\": %lld, \"recomputed\": %lld, \"tape_bytes\": %zu, \"snapshot_bytes\": %zu}",
            memory, p->steps, p->segment, p->segments, p->snapshots, p->forward_steps, p->recomputed, p->tape_bytes,
            p->snapshot_bytes);
}
