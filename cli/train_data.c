/* train_data.c — training data for `tapegrad train`: YAML sequences (read by
 * the library), CSV series, and text as characters; minibatches of equal-
 * length items shuffled reproducibly from (seed, epoch); the gather into the
 * [rows, B]-per-step layout of tg_model_unroll(). */
#include "train_data.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD_MAX_TEXT ((size_t)256 << 20)

int td_kind_of(const char *path, int *csv)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    *csv = 0;
    if (!dot || (slash && dot < slash)) return TD_TEXT;
    if (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")) return TD_SEQS;
    if (!strcmp(dot, ".csv")) {
        *csv = 1;
        return TD_SEQS;
    }
    return TD_TEXT;
}

void td_vocab_build(td_vocab *v, const unsigned char *bytes, size_t n)
{
    int seen[256] = {0};
    for (size_t i = 0; i < n; i++) seen[bytes[i]] = 1;
    v->n = 0;
    for (int b = 0; b < 256; b++) {
        v->index[b] = seen[b] ? v->n : -1;
        if (seen[b]) v->bytes[v->n++] = (unsigned char)b;
    }
}

/* Reads a whole file with a size limit; NUL-terminated, free() it. */
static char *slurp(const char *path, size_t max, size_t *len, char *msg, size_t mlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, mlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        if (cap >= max) {
            snprintf(msg, mlen, "%s: larger than the limit of %zu MB", path, max >> 20);
            free(buf);
            fclose(f);
            return NULL;
        }
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    if (!buf) {
        snprintf(msg, mlen, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }
    if (ferror(f)) {
        snprintf(msg, mlen, "%s: read error: %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

int td_load_text(td_set *s, const char *path, td_vocab *v, char *msg, size_t len)
{
    size_t n;
    char *text = slurp(path, TD_MAX_TEXT, &n, msg, len);
    if (!text) return -1;
    if (n < 2) {
        snprintf(msg, len, "%s: a text needs at least 2 characters to predict one from the other", path);
        free(text);
        return -1;
    }
    if (v->n == 0) td_vocab_build(v, (const unsigned char *)text, n);
    int line = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)text[i];
        line += b == '\n';
        if (v->index[b] < 0) {
            snprintf(msg, len, "%s:%d: character %s%c%s(byte 0x%02x) is not in the checkpoint's vocabulary "
                     "of %d characters", path, line, b >= 32 && b < 127 ? "'" : "", b >= 32 && b < 127 ? b : ' ',
                     b >= 32 && b < 127 ? "' " : "", b, v->n);
            free(text);
            return -1;
        }
        text[i] = (char)v->index[b];
    }
    s->kind = TD_TEXT;
    s->path = path;
    s->sym = (unsigned char *)text;
    s->n_sym = n;
    s->vocab = *v;
    return 0;
}

/* ---- CSV: a header of column names, one step per line, a blank line
 * between sequences, '#' comments.  A column is an input or target name, or
 * name[i] for row i of one with several rows. */

typedef struct csv_col { int role, var, row; } csv_col;

static int csv_header(td_set *s, const tg_model *m, char *line, const char *path, csv_col **cols,
                      int *n_cols, char *msg, size_t len)
{
    int cap = 16, n = 0;
    csv_col *c = malloc((size_t)cap * sizeof *c);
    int need = 0;
    for (int i = 0; i < s->n_in; i++) need += s->in_rows[i];
    for (int i = 0; i < s->n_tg; i++) need += s->tg_rows[i];
    char *save = NULL;
    for (char *tok = strtok_r(line, ",\r\n", &save); tok && c; tok = strtok_r(NULL, ",\r\n", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
        int row = 0;
        char *br = strchr(tok, '[');
        if (br) {
            char *e;
            row = (int)strtol(br + 1, &e, 10);
            if (e == br + 1 || *e != ']' || e[1]) {
                snprintf(msg, len, "%s:1: bad column name '%s' (use name or name[row])", path, tok);
                free(c);
                return -1;
            }
            *br = 0;
        }
        int role = -1, var = -1;
        for (int i = 0; i < s->n_in && var < 0; i++)
            if (!strcmp(tg_model_var(m, TG_ROLE_INPUT, i, NULL, NULL), tok)) role = TG_ROLE_INPUT, var = i;
        for (int i = 0; i < s->n_tg && var < 0; i++)
            if (!strcmp(tg_model_var(m, TG_ROLE_TARGET, i, NULL, NULL), tok)) role = TG_ROLE_TARGET, var = i;
        if (var < 0) {
            char names[512] = "";
            for (int i = 0; i < s->n_in + s->n_tg; i++) {
                const char *nm = i < s->n_in ? tg_model_var(m, TG_ROLE_INPUT, i, NULL, NULL)
                                             : tg_model_var(m, TG_ROLE_TARGET, i - s->n_in, NULL, NULL);
                if (strlen(names) + strlen(nm) + 3 < sizeof names) strcat(strcat(names, i ? ", " : ""), nm);
            }
            snprintf(msg, len, "%s:1: column '%s' is not an input or target of model '%s' (it has: %s)", path,
                     tok, tg_model_name(m), names);
            free(c);
            return -1;
        }
        int rows = role == TG_ROLE_INPUT ? s->in_rows[var] : s->tg_rows[var];
        if (row < 0 || row >= rows || (!br && rows > 1)) {
            snprintf(msg, len, "%s:1: column '%s%s': '%s' has %d rows, so name its columns %s[0] .. %s[%d]", path,
                     tok, br ? "[..]" : "", tok, rows, tok, tok, rows - 1);
            free(c);
            return -1;
        }
        for (int k = 0; k < n; k++)
            if (c[k].role == role && c[k].var == var && c[k].row == row) {
                snprintf(msg, len, "%s:1: column '%s' appears twice", path, tok);
                free(c);
                return -1;
            }
        if (n == cap) {
            csv_col *nc = realloc(c, (size_t)(cap *= 2) * sizeof *c);
            if (!nc) free(c);
            c = nc;
            if (!c) break;
        }
        c[n++] = (csv_col){role, var, row};
    }
    if (!c) {
        snprintf(msg, len, "%s: out of memory", path);
        return -1;
    }
    /* every input row is required; targets all or nothing per target */
    for (int i = 0; i < s->n_in + s->n_tg; i++) {
        int role = i < s->n_in ? TG_ROLE_INPUT : TG_ROLE_TARGET, var = i < s->n_in ? i : i - s->n_in;
        int rows = role == TG_ROLE_INPUT ? s->in_rows[var] : s->tg_rows[var], have = 0;
        for (int k = 0; k < n; k++) have += c[k].role == role && c[k].var == var;
        if (have != rows) {
            snprintf(msg, len, "%s:1: the header lacks %s '%s'%s (training needs every input and target)", path,
                     role == TG_ROLE_INPUT ? "input" : "target", tg_model_var(m, role, var, NULL, NULL),
                     rows > 1 ? " (all its rows)" : "");
            free(c);
            return -1;
        }
    }
    (void)need;
    *cols = c;
    *n_cols = n;
    return 0;
}

static int load_csv(td_set *s, const tg_model *m, const char *path, char *msg, size_t len)
{
    size_t n;
    char *text = slurp(path, (size_t)256 << 20, &n, msg, len);
    if (!text) return -1;
    csv_col *cols = NULL;
    int n_cols = 0, lineno = 0, rc = -1;
    int per_step = 0; /* scalars of all inputs and targets in one step */
    for (int i = 0; i < s->n_in; i++) per_step += s->in_rows[i];
    for (int i = 0; i < s->n_tg; i++) per_step += s->tg_rows[i];
    /* pass 1: header, count steps per sequence; pass 2: values */
    size_t cap_steps = 0, cap_seq = 0;
    int *steps = NULL;
    int n_seq = 0;
    double *vals = NULL;
    size_t n_vals = 0, cap_vals = 0;
    char *p = text, *line;
    int in_seq = 0;
    while (p && *p) {
        line = p;
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        p = nl ? nl + 1 : NULL;
        lineno++;
        char *q = line;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q == '#') continue;
        if (!*q) {
            in_seq = 0;
            continue;
        }
        if (!cols) {
            if (csv_header(s, m, line, path, &cols, &n_cols, msg, len)) goto out;
            continue;
        }
        if (!in_seq) {
            if ((size_t)n_seq == cap_seq) {
                cap_seq = cap_seq ? 2 * cap_seq : 16;
                int *ns = realloc(steps, cap_seq * sizeof *ns);
                if (!ns) goto oom;
                steps = ns;
            }
            steps[n_seq++] = 0;
            in_seq = 1;
        }
        if (n_vals + (size_t)n_cols > cap_vals) {
            cap_vals = cap_vals ? 2 * cap_vals : 4096;
            while (cap_vals < n_vals + (size_t)n_cols) cap_vals *= 2;
            double *nv = realloc(vals, cap_vals * sizeof *nv);
            if (!nv) goto oom;
            vals = nv;
        }
        char *e = q;
        for (int k = 0; k < n_cols; k++) {
            char *start = e;
            double v = strtod(start, &e);
            if (e == start) {
                snprintf(msg, len, "%s:%d: column %d: expected a number, found '%.20s'", path, lineno, k + 1,
                         start);
                goto out;
            }
            while (*e == ' ' || *e == '\t' || *e == '\r') e++;
            if (k + 1 < n_cols) {
                if (*e != ',') {
                    snprintf(msg, len, "%s:%d: expected %d values, found %d", path, lineno, n_cols, k + 1);
                    goto out;
                }
                e++;
            } else if (*e) {
                snprintf(msg, len, "%s:%d: more than the header's %d values", path, lineno, n_cols);
                goto out;
            }
            vals[n_vals++] = v;
        }
        steps[n_seq - 1]++;
        (void)cap_steps;
    }
    if (!cols || n_seq == 0) {
        snprintf(msg, len, "%s: no %s (a CSV file is a header line of input and target names, then one line "
                 "per step)", path, cols ? "data lines" : "header");
        goto out;
    }
    /* lay out every sequence's inputs and targets as tg_dataset_values() does, batch 1 */
    size_t total = n_vals / (size_t)n_cols * (size_t)per_step;
    s->csv_values = malloc((total ? total : 1) * sizeof(tg_real));
    s->seq_steps = malloc((size_t)n_seq * sizeof(int));
    s->seq_batch = malloc((size_t)n_seq * sizeof(int));
    s->seq_in = malloc((size_t)n_seq * (size_t)(s->n_in ? s->n_in : 1) * sizeof *s->seq_in);
    s->seq_tg = malloc((size_t)n_seq * (size_t)(s->n_tg ? s->n_tg : 1) * sizeof *s->seq_tg);
    if (!s->csv_values || !s->seq_steps || !s->seq_batch || !s->seq_in || !s->seq_tg) goto oom;
    s->n_seq = n_seq;
    tg_real *w = s->csv_values;
    const double *r = vals;
    for (int q2 = 0; q2 < n_seq; q2++) {
        int T = steps[q2];
        s->seq_steps[q2] = T;
        s->seq_batch[q2] = 1;
        tg_real *base[512];
        for (int i = 0; i < s->n_in + s->n_tg; i++) {
            int rows = i < s->n_in ? s->in_rows[i] : s->tg_rows[i - s->n_in];
            base[i] = w;
            if (i < s->n_in) s->seq_in[q2 * s->n_in + i] = w;
            else s->seq_tg[q2 * s->n_tg + i - s->n_in] = w;
            w += (size_t)T * (size_t)rows;
        }
        for (int t = 0; t < T; t++, r += n_cols)
            for (int k = 0; k < n_cols; k++) {
                int i = cols[k].role == TG_ROLE_INPUT ? cols[k].var : s->n_in + cols[k].var;
                int rows = cols[k].role == TG_ROLE_INPUT ? s->in_rows[cols[k].var] : s->tg_rows[cols[k].var];
                base[i][(size_t)t * (size_t)rows + (size_t)cols[k].row] = (tg_real)r[k];
            }
    }
    rc = 0;
    goto out;
oom:
    snprintf(msg, len, "%s: out of memory", path);
out:
    free(cols);
    free(steps);
    free(vals);
    free(text);
    return rc;
}

int td_load_seqs(td_set *s, tg_ctx *ctx, const tg_model *m, const char *path, int csv, char *msg,
                 size_t len)
{
    s->kind = TD_SEQS;
    s->path = path;
    if (s->n_in + s->n_tg > 512) {
        snprintf(msg, len, "%s: too many inputs and targets", path);
        return -1;
    }
    if (csv) {
        if (load_csv(s, m, path, msg, len)) return -1;
    } else {
        s->yaml = tg_dataset_load(ctx, m, path);
        if (!s->yaml) {
            snprintf(msg, len, "%s", tg_errmsg(ctx));
            return -1;
        }
        int n = tg_dataset_count(s->yaml);
        s->n_seq = n;
        s->seq_steps = malloc((size_t)(n ? n : 1) * sizeof(int));
        s->seq_batch = malloc((size_t)(n ? n : 1) * sizeof(int));
        s->seq_in = malloc((size_t)(n ? n : 1) * (size_t)(s->n_in ? s->n_in : 1) * sizeof *s->seq_in);
        s->seq_tg = malloc((size_t)(n ? n : 1) * (size_t)(s->n_tg ? s->n_tg : 1) * sizeof *s->seq_tg);
        if (!s->seq_steps || !s->seq_batch || !s->seq_in || !s->seq_tg) {
            snprintf(msg, len, "%s: out of memory", path);
            return -1;
        }
        for (int q = 0; q < n; q++) {
            s->seq_steps[q] = tg_dataset_steps(s->yaml, q);
            s->seq_batch[q] = tg_dataset_batch(s->yaml, q);
            for (int i = 0; i < s->n_in; i++) s->seq_in[q * s->n_in + i] = tg_dataset_values(s->yaml, q, TG_ROLE_INPUT, i);
            for (int i = 0; i < s->n_tg; i++) {
                const tg_real *v = tg_dataset_values(s->yaml, q, TG_ROLE_TARGET, i);
                if (!v) {
                    snprintf(msg, len, "%s: sequence %d has no values for target '%s' (training needs every "
                             "target)", path, q + 1, tg_model_var(m, TG_ROLE_TARGET, i, NULL, NULL));
                    return -1;
                }
                s->seq_tg[q * s->n_tg + i] = v;
            }
        }
    }
    int items = 0;
    for (int q = 0; q < s->n_seq; q++) items += s->seq_batch[q];
    s->items = malloc((size_t)(items ? items : 1) * sizeof *s->items);
    if (!s->items) {
        snprintf(msg, len, "%s: out of memory", path);
        return -1;
    }
    for (int q = 0; q < s->n_seq; q++)
        for (int c = 0; c < s->seq_batch[q]; c++) s->items[s->n_items++] = (td_item){q, c, s->seq_steps[q]};
    if (s->n_items == 0) {
        snprintf(msg, len, "%s: no sequences to train on", path);
        return -1;
    }
    return 0;
}

void td_free(td_set *s)
{
    tg_dataset_free(s->yaml);
    free(s->seq_steps);
    free(s->seq_batch);
    free(s->seq_in);
    free(s->seq_tg);
    free(s->csv_values);
    free(s->items);
    free(s->sym);
    memset(s, 0, sizeof *s);
}

/* ---- epochs and batches ---------------------------------------------------- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int by_steps(const void *a, const void *b, void *items)
{
    const td_item *it = items;
    int x = it[*(const int *)a].steps, y = it[*(const int *)b].steps;
    return (x > y) - (x < y);
}

int td_plan_init(td_plan *p, const td_set *s, int batch, char *msg, size_t len)
{
    memset(p, 0, sizeof *p);
    p->batch = batch;
    if (s->kind == TD_TEXT) {
        size_t L = (s->n_sym - 1) / (size_t)batch;
        if (L < 1) {
            snprintf(msg, len, "%s: %zu characters are too few for --batch %d", s->path, s->n_sym, batch);
            return -1;
        }
        if (L > 1000000000) L = 1000000000;
        p->n_batches = 1;
        p->max_steps = (int)L;
        return 0;
    }
    int n = s->n_items;
    p->order = malloc((size_t)n * sizeof *p->order);
    p->start = malloc((size_t)n * sizeof *p->start);
    p->count = malloc((size_t)n * sizeof *p->count);
    if (!p->order || !p->start || !p->count) {
        snprintf(msg, len, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) p->max_steps = s->items[i].steps > p->max_steps ? s->items[i].steps : p->max_steps;
    return 0;
}

/* Items grouped by length; each group shuffled, cut into batches of up to
 * B; then the batch order shuffled.  Depends only on (seed, epoch). */
void td_plan_epoch(td_plan *p, const td_set *s, uint64_t seed, uint64_t epoch)
{
    if (s->kind == TD_TEXT) return;
    uint64_t st = seed * 0x2545f4914f6cdd1dull + epoch + 1;
    int n = s->n_items;
    for (int i = 0; i < n; i++) p->order[i] = i;
    /* a stable grouping: insertion sort by length keeps file order within a group */
    for (int i = 1; i < n; i++) {
        int v = p->order[i], j = i - 1;
        while (j >= 0 && by_steps(&p->order[j], &v, s->items) > 0) p->order[j + 1] = p->order[j], j--;
        p->order[j + 1] = v;
    }
    p->n_batches = 0;
    for (int g = 0; g < n;) {
        int e = g;
        while (e < n && s->items[p->order[e]].steps == s->items[p->order[g]].steps) e++;
        for (int i = e - 1; i > g; i--) {
            int j = g + (int)(splitmix(&st) % (uint64_t)(i - g + 1));
            int t = p->order[i];
            p->order[i] = p->order[j];
            p->order[j] = t;
        }
        for (int b = g; b < e; b += p->batch) {
            p->start[p->n_batches] = b;
            p->count[p->n_batches] = e - b < p->batch ? e - b : p->batch;
            p->n_batches++;
        }
        g = e;
    }
    for (int i = p->n_batches - 1; i > 0; i--) {
        int j = (int)(splitmix(&st) % (uint64_t)(i + 1));
        int a = p->start[i], c = p->count[i];
        p->start[i] = p->start[j], p->count[i] = p->count[j];
        p->start[j] = a, p->count[j] = c;
    }
}

void td_plan_free(td_plan *p)
{
    free(p->order);
    free(p->start);
    free(p->count);
    memset(p, 0, sizeof *p);
}

int td_batch_steps(const td_plan *p, const td_set *s, int k)
{
    return s->kind == TD_TEXT ? p->max_steps : s->items[p->order[p->start[k]]].steps;
}

int td_batch_cols(const td_plan *p, const td_set *s, int k)
{
    return s->kind == TD_TEXT ? p->batch : p->count[k];
}

void td_fill(const td_plan *p, const td_set *s, int k, int t0, int steps, tg_real **in, tg_real **tg)
{
    if (s->kind == TD_TEXT) {
        /* column j reads the j-th stretch of L characters; one-hot rows */
        int B = p->batch, V = s->vocab.n;
        size_t L = (size_t)p->max_steps;
        /* an index variable takes the character's index, [1, B] a step */
        int Vi = s->in_index[0] ? 1 : V, Vt = s->tg_index[0] ? 1 : V;
        memset(in[0], 0, (size_t)steps * (size_t)Vi * (size_t)B * sizeof(tg_real));
        memset(tg[0], 0, (size_t)steps * (size_t)Vt * (size_t)B * sizeof(tg_real));
        for (int t = 0; t < steps; t++)
            for (int j = 0; j < B; j++) {
                size_t pos = (size_t)j * L + (size_t)(t0 + t);
                int a = s->sym[pos], b = s->sym[pos + 1];
                if (s->in_index[0]) in[0][(size_t)t * B + (size_t)j] = (tg_real)a;
                else in[0][((size_t)t * V + (size_t)a) * (size_t)B + (size_t)j] = 1;
                if (s->tg_index[0]) tg[0][(size_t)t * B + (size_t)j] = (tg_real)b;
                else tg[0][((size_t)t * V + (size_t)b) * (size_t)B + (size_t)j] = 1;
            }
        return;
    }
    (void)t0, (void)steps;
    int B = p->count[k], T = td_batch_steps(p, s, k);
    for (int j = 0; j < B; j++) {
        const td_item *it = &s->items[p->order[p->start[k] + j]];
        int b = s->seq_batch[it->seq];
        for (int v = 0; v < s->n_in + s->n_tg; v++) {
            int rows = v < s->n_in ? s->in_rows[v] : s->tg_rows[v - s->n_in];
            const tg_real *src = v < s->n_in ? s->seq_in[it->seq * s->n_in + v]
                                             : s->seq_tg[it->seq * s->n_tg + v - s->n_in];
            tg_real *dst = v < s->n_in ? in[v] : tg[v - s->n_in];
            int once = v >= s->n_in && s->tg_once[v - s->n_in]; /* one block, not one per step */
            for (int t = 0; t < (once ? 1 : T); t++)
                for (int r = 0; r < rows; r++)
                    dst[((size_t)t * (size_t)rows + (size_t)r) * (size_t)B + (size_t)j] =
                        src[((size_t)t * (size_t)rows + (size_t)r) * (size_t)b + (size_t)it->col];
        }
    }
}
