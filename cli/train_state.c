/* train_state.c — write and read FILE.state, the training checkpoint beside
 * the PARAMS file (see train_state.h).  Values are written as hex floats so
 * a resumed run continues bit for bit; the file ends with `end: true` so a
 * reader can tell a complete file from a cut one. */
#include "train_state.h"
#include "tg_internal.h" /* tg_atomic: the library's crash-safe file writes */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

const char *ts_state_path(char *buf, size_t len, const char *file)
{
    size_t n = strlen(file);
    if (n > 6 && !strcmp(file + n - 6, ".state")) snprintf(buf, len, "%s", file);
    else snprintf(buf, len, "%s.state", file);
    return buf;
}

const char *ts_params_path(char *buf, size_t len, const char *file)
{
    size_t n = strlen(file);
    if (n > 6 && !strcmp(file + n - 6, ".state")) snprintf(buf, len, "%.*s", (int)(n - 6), file);
    else snprintf(buf, len, "%s", file);
    return buf;
}

/* ---- writing ----------------------------------------------------------- */

static void put_list(FILE *f, const tg_real *v, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i) fputs(i % 6 ? ", " : ",\n      ", f);
        fprintf(f, "%a", (double)v[i]);
    }
    fputs("]\n", f);
}

static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s < 32) fprintf(f, "\\x%02x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static size_t param_offset(tg_params *ps, tg_tensor *t) { return (size_t)(tg_data(t) - tg_params_values(ps)); }

int ts_save(const char *path, const tg_model *m, tg_params *ps, tg_optim *opt, const ts_pos *pos,
            const td_vocab *vocab, int n_carry, tg_real *const *carry, const int *carry_size,
            char *msg, size_t len)
{
    tg_atomic out;
    if (tg_atomic_open(&out, path) != 0) {
        snprintf(msg, len, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = out.f;
    int np = tg_model_count(m, TG_ROLE_PARAM);
    fprintf(f, "# tapegrad training state (optimizer, position, exact parameters) for the PARAMS file\n"
               "# beside it; continue with `tapegrad train ... --resume FILE`.\n");
    fprintf(f, "format: %s\nversion: %d\nmodel: ", TS_FORMAT, TS_VERSION);
    put_quoted(f, tg_model_name(m));
    fprintf(f, "\nreal: %s\nparams:\n", sizeof(tg_real) == 8 ? "double" : "float");
    for (int i = 0; i < np; i++) {
        int r, c;
        const char *name = tg_model_var(m, TG_ROLE_PARAM, i, &r, &c);
        if (c) fprintf(f, "  %s: [%d, %d]\n", name, r, c);
        else fprintf(f, "  %s: [%d]\n", name, r);
    }
    const tg_optim_opts *o = tg_optim_get_opts(opt);
    fprintf(f, "optimizer:\n  kind: %s\n  lr: %.17g\n  momentum: %.17g\n  nesterov: %d\n  beta1: %.17g\n"
               "  beta2: %.17g\n  rho: %.17g\n  eps: %.17g\n  weight_decay: %.17g\n  decoupled: %d\n"
               "  clip: %.17g\n  steps: %llu\n",
            tg_optim_kind_name(o->kind), o->lr, o->momentum, o->nesterov, o->beta1, o->beta2, o->rho, o->eps,
            o->weight_decay, o->decoupled, o->clip, (unsigned long long)tg_optim_steps(opt));
    fprintf(f, "position:\n  step: %llu\n  epoch: %d\n  batch: %d\n  chunk: %d\n  epoch_loss: %.17g\n"
               "  epoch_count: %.17g\n  seed: %llu\n  epochs: %d\n  batch_size: %d\n  bptt: %d\n  seconds: %.17g\n",
            (unsigned long long)pos->step, pos->epoch, pos->batch, pos->chunk, pos->epoch_loss,
            pos->epoch_count, (unsigned long long)pos->seed, pos->epochs, pos->batch_size, pos->bptt, pos->seconds);
    if (vocab && vocab->n) {
        fprintf(f, "vocab: [");
        for (int i = 0; i < vocab->n; i++) fprintf(f, "%s%d", i ? ", " : "", vocab->bytes[i]);
        fprintf(f, "]   # byte values of the one-hot rows, in order\n");
    }
    fprintf(f, "values:\n");
    for (int i = 0; i < np; i++) {
        const char *name = tg_model_var(m, TG_ROLE_PARAM, i, NULL, NULL);
        tg_tensor *t = tg_params_find(ps, name);
        fprintf(f, "  %s: ", name);
        put_list(f, tg_data(t), tg_size(t));
    }
    int ns = tg_optim_state_count(opt);
    if (ns) fprintf(f, "state:\n");
    for (int k = 0; k < ns; k++) {
        const char *sname;
        tg_real *buf = tg_optim_state(opt, k, &sname);
        fprintf(f, "  %s:\n", sname);
        for (int i = 0; i < np; i++) {
            const char *name = tg_model_var(m, TG_ROLE_PARAM, i, NULL, NULL);
            tg_tensor *t = tg_params_find(ps, name);
            fprintf(f, "    %s: ", name);
            put_list(f, buf + param_offset(ps, t), tg_size(t));
        }
    }
    if (n_carry) {
        fprintf(f, "carry:\n");
        for (int i = 0; i < n_carry; i++) {
            fprintf(f, "  %s: ", tg_model_var(m, TG_ROLE_STATE, i, NULL, NULL));
            put_list(f, carry[i], (size_t)carry_size[i]);
        }
    }
    fprintf(f, "end: true\n");
    if (tg_atomic_commit(&out) != 0) {
        snprintf(msg, len, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

struct ts_file {
    const char *path;
    yaml_document_t doc;
    int root;
};

static yaml_node_t *node(ts_file *f, int i) { return i ? yaml_document_get_node(&f->doc, i) : NULL; }

static int get(ts_file *f, int map, const char *key)
{
    yaml_node_t *n = node(f, map);
    if (!n || n->type != YAML_MAPPING_NODE) return 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(f, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key)) return p->value;
    }
    return 0;
}

static const char *str(ts_file *f, int i)
{
    yaml_node_t *n = node(f, i);
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int num(ts_file *f, int map, const char *key, double *out)
{
    const char *s = str(f, get(f, map, key));
    char *e;
    if (!s) return -1;
    *out = strtod(s, &e);
    return e == s || *e ? -1 : 0;
}

static int line_of(ts_file *f, int i)
{
    yaml_node_t *n = node(f, i);
    return n ? (int)n->start_mark.line + 1 : 1;
}

ts_file *ts_open(const char *path, char *msg, size_t len)
{
    FILE *in = fopen(path, "rb");
    if (!in) {
        snprintf(msg, len, "%s: cannot open the training state: %s%s", path, strerror(errno),
                 errno == ENOENT ? " (it is written beside FILE by `tapegrad train --save FILE`)" : "");
        return NULL;
    }
    ts_file *f = calloc(1, sizeof *f);
    yaml_parser_t p;
    if (!f || !yaml_parser_initialize(&p)) {
        fclose(in);
        free(f);
        snprintf(msg, len, "out of memory");
        return NULL;
    }
    f->path = path;
    yaml_parser_set_input_file(&p, in);
    int ok = yaml_parser_load(&p, &f->doc);
    if (!ok) {
        snprintf(msg, len, "%s:%d:%d: not a complete training state (%s)", path, (int)p.problem_mark.line + 1,
                 (int)p.problem_mark.column + 1, p.problem ? p.problem : "YAML error");
        yaml_parser_delete(&p);
        fclose(in);
        free(f);
        return NULL;
    }
    yaml_parser_delete(&p);
    fclose(in);
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    f->root = root ? (int)(root - f->doc.nodes.start) + 1 : 0;
    const char *fmt = str(f, get(f, f->root, "format"));
    double ver = 0;
    if (!fmt || strcmp(fmt, TS_FORMAT)) {
        snprintf(msg, len, "%s: not a tapegrad training state (no 'format: %s')", path, TS_FORMAT);
    } else if (num(f, f->root, "version", &ver) || ver != TS_VERSION) {
        snprintf(msg, len, "%s: training state version %g; this tapegrad reads version %d", path, ver, TS_VERSION);
    } else if (!str(f, get(f, f->root, "end"))) {
        snprintf(msg, len, "%s: the training state is cut short (no 'end: true')", path);
    } else {
        return f;
    }
    ts_close(f);
    return NULL;
}

void ts_close(ts_file *f)
{
    if (!f) return;
    yaml_document_delete(&f->doc);
    free(f);
}

const char *ts_model_name(const ts_file *f) { return str((ts_file *)f, get((ts_file *)f, f->root, "model")); }

int ts_vocab(const ts_file *cf, td_vocab *v)
{
    ts_file *f = (ts_file *)cf;
    yaml_node_t *n = node(f, get(f, f->root, "vocab"));
    memset(v, 0, sizeof *v);
    for (int b = 0; b < 256; b++) v->index[b] = -1;
    if (!n || n->type != YAML_SEQUENCE_NODE) return 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const char *s = str(f, *it);
        int b = s ? atoi(s) : -1;
        if (b < 0 || b > 255 || v->index[b] >= 0) return 0;
        v->index[b] = v->n;
        v->bytes[v->n++] = (unsigned char)b;
    }
    return v->n > 0;
}

int ts_optim(const ts_file *cf, tg_optim_opts *o)
{
    ts_file *f = (ts_file *)cf;
    int om = get(f, f->root, "optimizer");
    int kind = tg_optim_kind_parse(str(f, get(f, om, "kind")));
    if (kind < 0) return -1;
    *o = tg_optim_defaults((tg_optim_kind)kind);
    double v;
    if (!num(f, om, "lr", &v)) o->lr = v;
    if (!num(f, om, "momentum", &v)) o->momentum = v;
    if (!num(f, om, "nesterov", &v)) o->nesterov = v != 0;
    if (!num(f, om, "beta1", &v)) o->beta1 = v;
    if (!num(f, om, "beta2", &v)) o->beta2 = v;
    if (!num(f, om, "rho", &v)) o->rho = v;
    if (!num(f, om, "eps", &v)) o->eps = v;
    if (!num(f, om, "weight_decay", &v)) o->weight_decay = v;
    if (!num(f, om, "decoupled", &v)) o->decoupled = v != 0;
    if (!num(f, om, "clip", &v)) o->clip = v;
    return 0;
}

int ts_position(const ts_file *cf, ts_pos *pos)
{
    ts_file *f = (ts_file *)cf;
    int pm = get(f, f->root, "position");
    double v[11];
    static const char *const keys[] = {"step", "epoch", "batch", "chunk", "epoch_loss", "epoch_count",
                                       "seed", "epochs", "batch_size", "bptt", "seconds"};
    for (int i = 0; i < 11; i++)
        if (num(f, pm, keys[i], &v[i])) return -1;
    const char *seed = str(f, get(f, pm, "seed"));
    *pos = (ts_pos){(uint64_t)v[0], (int)v[1], (int)v[2], (int)v[3], v[4], v[5],
                    strtoull(seed, NULL, 10), (int)v[7], (int)v[8], (int)v[9], v[10]};
    return 0;
}

/* Reads a flow list of exactly n numbers into out. */
static int read_list(ts_file *f, int i, tg_real *out, size_t n, const char *what, char *msg, size_t len)
{
    yaml_node_t *nd = node(f, i);
    if (!nd || nd->type != YAML_SEQUENCE_NODE) {
        snprintf(msg, len, "%s:%d: %s is missing or not a list", f->path, line_of(f, i), what);
        return -1;
    }
    size_t have = (size_t)(nd->data.sequence.items.top - nd->data.sequence.items.start);
    if (have != n) {
        snprintf(msg, len, "%s:%d: %s has %zu values, expected %zu", f->path, line_of(f, i), what, have, n);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        const char *s = str(f, nd->data.sequence.items.start[k]);
        char *e;
        double v = s ? strtod(s, &e) : 0;
        if (!s || e == s || *e) {
            snprintf(msg, len, "%s:%d: %s: value %zu is not a number", f->path, line_of(f, i), what, k + 1);
            return -1;
        }
        out[k] = (tg_real)v;
    }
    return 0;
}

int ts_restore(ts_file *f, const tg_model *m, tg_params *ps, tg_optim *opt, int n_carry,
               tg_real *const *carry, const int *carry_size, int *has_carry, char *msg, size_t len)
{
    const char *name = ts_model_name(f);
    if (!name || strcmp(name, tg_model_name(m))) {
        snprintf(msg, len, "%s: this checkpoint is for model '%s', not '%s'", f->path, name ? name : "?",
                 tg_model_name(m));
        return -1;
    }
    int pm = get(f, f->root, "params"), vm = get(f, f->root, "values");
    int np = tg_model_count(m, TG_ROLE_PARAM);
    yaml_node_t *pn = node(f, pm);
    int saved = pn && pn->type == YAML_MAPPING_NODE
                    ? (int)(pn->data.mapping.pairs.top - pn->data.mapping.pairs.start) : 0;
    if (saved != np) {
        snprintf(msg, len, "%s: the checkpoint of model '%s' has %d parameters; the model has %d (was the model "
                 "file changed?)", f->path, name, saved, np);
        return -1;
    }
    for (int i = 0; i < np; i++) {
        int r, c;
        const char *pname = tg_model_var(m, TG_ROLE_PARAM, i, &r, &c);
        int sh = get(f, pm, pname);
        yaml_node_t *s = node(f, sh);
        int sr = -1, sc = 0, nd = s && s->type == YAML_SEQUENCE_NODE
                                    ? (int)(s->data.sequence.items.top - s->data.sequence.items.start) : 0;
        if (nd >= 1) sr = atoi(str(f, s->data.sequence.items.start[0]) ? str(f, s->data.sequence.items.start[0]) : "-1");
        if (nd == 2) sc = atoi(str(f, s->data.sequence.items.start[1]) ? str(f, s->data.sequence.items.start[1]) : "-1");
        if (!sh) {
            snprintf(msg, len, "%s: the checkpoint has no parameter '%s' (was the model file changed?)", f->path,
                     pname);
            return -1;
        }
        if (sr != r || sc != c) {
            char a[32], b[32];
            snprintf(a, sizeof a, c ? "[%d, %d]" : "[%d]", r, c);
            snprintf(b, sizeof b, sc ? "[%d, %d]" : "[%d]", sr, sc);
            snprintf(msg, len, "%s:%d: parameter '%s' is %s in the checkpoint but %s in the model (different dims?)",
                     f->path, line_of(f, sh), pname, b, a);
            return -1;
        }
    }
    for (int i = 0; i < np; i++) {
        const char *pname = tg_model_var(m, TG_ROLE_PARAM, i, NULL, NULL);
        tg_tensor *t = tg_params_find(ps, pname);
        char what[128];
        snprintf(what, sizeof what, "values of '%s'", pname);
        if (!t || read_list(f, get(f, vm, pname), tg_data(t), tg_size(t), what, msg, len)) return -1;
    }
    if (opt) {
        double steps = 0;
        num(f, get(f, f->root, "optimizer"), "steps", &steps);
        tg_optim_set_steps(opt, (uint64_t)steps);
        int sm = get(f, f->root, "state");
        for (int k = 0; k < tg_optim_state_count(opt); k++) {
            const char *sname;
            tg_real *buf = tg_optim_state(opt, k, &sname);
            int bm = get(f, sm, sname);
            if (!bm) {
                snprintf(msg, len, "%s: the checkpoint has no optimizer state '%s' (saved by another optimizer?)",
                         f->path, sname);
                return -1;
            }
            for (int i = 0; i < np; i++) {
                const char *pname = tg_model_var(m, TG_ROLE_PARAM, i, NULL, NULL);
                tg_tensor *t = tg_params_find(ps, pname);
                char what[160];
                snprintf(what, sizeof what, "optimizer state %s of '%s'", sname, pname);
                if (read_list(f, get(f, bm, pname), buf + param_offset(ps, t), tg_size(t), what, msg, len))
                    return -1;
            }
        }
    }
    int cm = get(f, f->root, "carry");
    *has_carry = cm != 0;
    for (int i = 0; cm && i < n_carry; i++) {
        const char *sname = tg_model_var(m, TG_ROLE_STATE, i, NULL, NULL);
        char what[128];
        snprintf(what, sizeof what, "carried state '%s'", sname);
        if (read_list(f, get(f, cm, sname), carry[i], (size_t)carry_size[i], what, msg, len)) return -1;
    }
    return 0;
}
