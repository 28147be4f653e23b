/* trainset.c — what a trainer learns from: sequences (a tg_dataset from
 * YAML, or a CSV series) and text read as UTF-8 characters over a
 * vocabulary.  Readers check every byte: a CSV value is a finite number in
 * tg_real's range, a NUL is an error with FILE:LINE:COL. */
#include "train_internal.h"
#include "tg_files.h"
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading files ----------------------------------------------------- */

tg_status tgt_read(tg_ctx *ctx, const char *path, size_t max, const char *what, char **buf, size_t *len)
{
    char msg[4400];
    tg_status st = tg_file_read_as(path, what, max, 1, buf, len, msg, sizeof msg);
    return st ? tg_error(ctx, st, "%s", msg) : TG_OK;
}

/* ---- UTF-8 and the vocabulary ------------------------------------------ */

uint32_t tgt_utf8(const unsigned char *s, size_t n, int *used)
{
    unsigned c = s[0];
    *used = 1;
    if (c < 0x80) return c;
    int k;
    uint32_t cp, lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 2, cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;          /* overlong */
        if (c == 0xED) hi = 0x9F;          /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 3, cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;          /* overlong */
        if (c == 0xF4) hi = 0x8F;          /* past U+10FFFF */
    } else
        return 0xDC00 + c;
    if ((size_t)k >= n) return 0xDC00 + c;
    for (int i = 1; i <= k; i++) {
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return 0xDC00 + c;
        cp = cp << 6 | (b & 0x3F);
    }
    *used = k + 1;
    return cp;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

tg_vocab *tgt_vocab_make(tg_ctx *ctx, uint32_t *chars, int n)
{
    tg_vocab *v = malloc(sizeof *v);
    if (!v) {
        free(chars);
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    v->ctx = ctx;
    v->n = n;
    v->chars = chars;
    return v;
}

tg_vocab *tg_vocab_new(tg_ctx *ctx, const uint32_t *chars, int n)
{
    if (!ctx) return NULL;
    if (n < 1 || n > (1 << 21) || !chars) {
        tg_error(ctx, TG_ERR_ARG, "tg_vocab_new: a vocabulary needs 1 to 2097152 characters");
        return NULL;
    }
    uint32_t *c = malloc((size_t)n * sizeof *c);
    if (!c) {
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(c, chars, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_u32);
    for (int i = 0; i < n; i++)
        if (c[i] > 0x10FFFF || (i && c[i] == c[i - 1])) {
            tg_error(ctx, TG_ERR_ARG, "tg_vocab_new: character U+%04X is %s", (unsigned)c[i],
                     c[i] > 0x10FFFF ? "past U+10FFFF" : "there twice");
            free(c);
            return NULL;
        }
    return tgt_vocab_make(ctx, c, n);
}

void tg_vocab_free(tg_vocab *v)
{
    if (!v) return;
    free(v->chars);
    free(v);
}

int tg_vocab_size(const tg_vocab *v) { return v ? v->n : 0; }
uint32_t tg_vocab_char(const tg_vocab *v, int i) { return v && i >= 0 && i < v->n ? v->chars[i] : 0; }

int tg_vocab_index(const tg_vocab *v, uint32_t cp)
{
    if (!v) return -1;
    int lo = 0, hi = v->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (v->chars[mid] == cp) return mid;
        if (v->chars[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int tg_vocab_utf8(const tg_vocab *v, int i, char out[4])
{
    if (!v || i < 0 || i >= v->n) return 0;
    uint32_t c = v->chars[i];
    if (c >= 0xDC80 && c <= 0xDCFF) return out[0] = (char)(c - 0xDC00), 1;
    if (c < 0x80) return out[0] = (char)c, 1;
    if (c < 0x800) return out[0] = (char)(0xC0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3F)), 2;
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12), out[1] = (char)(0x80 | (c >> 6 & 0x3F)), out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18), out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F)), out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- sets ---------------------------------------------------------------- */

static tg_trainset *set_new(tg_ctx *ctx, int kind, const char *name)
{
    tg_trainset *s = calloc(1, sizeof *s);
    if (s) s->name = strdup(name ? name : "(data)");
    if (!s || !s->name) {
        free(s);
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->ctx = ctx;
    s->kind = kind;
    return s;
}

void tg_trainset_free(tg_trainset *s)
{
    if (!s) return;
    tg_dataset_free(s->yaml);
    free(s->name);
    free(s->rows);
    free(s->seq_steps);
    free(s->seq_batch);
    free(s->vals);
    free(s->csv_values);
    free(s->items);
    free(s->sym);
    tg_vocab_free(s->vocab);
    free(s);
}

int tg_trainset_is_text(const tg_trainset *s) { return s && s->kind == TGT_TEXT; }
size_t tg_trainset_length(const tg_trainset *s) { return !s ? 0 : s->kind == TGT_TEXT ? s->n_sym : (size_t)s->n_items; }
const tg_vocab *tg_trainset_vocab(const tg_trainset *s) { return s && s->kind == TGT_TEXT ? s->vocab : NULL; }

/* The model's inputs and targets, their rows, and room for n_seq sequences. */
static tg_status seqs_alloc(tg_trainset *s, const tg_model *m, int n_seq)
{
    s->n_in = tg_model_count(m, TG_ROLE_INPUT);
    s->n_tg = tg_model_count(m, TG_ROLE_TARGET);
    int nv = s->n_in + s->n_tg;
    if (nv > TGT_MAX_VARS) return tg_error(s->ctx, TG_ERR_LIMIT, "%s: more than %d inputs and targets", s->name, TGT_MAX_VARS);
    s->rows = malloc((size_t)(nv ? nv : 1) * sizeof *s->rows);
    s->n_seq = n_seq;
    s->seq_steps = calloc((size_t)(n_seq ? n_seq : 1), sizeof *s->seq_steps);
    s->seq_batch = calloc((size_t)(n_seq ? n_seq : 1), sizeof *s->seq_batch);
    s->vals = calloc((size_t)(n_seq ? n_seq : 1) * (size_t)(nv ? nv : 1), sizeof *s->vals);
    if (!s->rows || !s->seq_steps || !s->seq_batch || !s->vals) return tg_error(s->ctx, TG_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nv; i++)
        tg_model_var(m, i < s->n_in ? TG_ROLE_INPUT : TG_ROLE_TARGET, i < s->n_in ? i : i - s->n_in, &s->rows[i], NULL);
    return TG_OK;
}

static tg_status items_make(tg_trainset *s)
{
    int n = 0;
    for (int q = 0; q < s->n_seq; q++) n += s->seq_batch[q];
    s->items = malloc((size_t)(n ? n : 1) * sizeof *s->items);
    if (!s->items) return tg_error(s->ctx, TG_ERR_NOMEM, "out of memory");
    s->n_items = 0;
    for (int q = 0; q < s->n_seq; q++)
        for (int c = 0; c < s->seq_batch[q]; c++) s->items[s->n_items++] = (tgt_item){q, c, s->seq_steps[q]};
    if (!s->n_items) return tg_error(s->ctx, TG_ERR_PARSE, "%s: no sequences to train on", s->name);
    return TG_OK;
}

/* The model is read for its inputs' and targets' names and sizes only. */
static tg_trainset *sequences(tg_ctx *ctx, const tg_model *m, tg_dataset *d, const char *name)
{
    tg_trainset *s = set_new(ctx, TGT_SEQS, name);
    if (!s) {
        tg_dataset_free(d);
        return NULL;
    }
    s->yaml = d;
    int n = tg_dataset_count(d);
    if (seqs_alloc(s, m, n)) goto fail;
    int nv = s->n_in + s->n_tg;
    for (int q = 0; q < n; q++) {
        s->seq_steps[q] = tg_dataset_steps(d, q);
        s->seq_batch[q] = tg_dataset_batch(d, q);
        for (int v = 0; v < nv; v++) {
            const tg_real *p = tg_dataset_values(d, q, v < s->n_in ? TG_ROLE_INPUT : TG_ROLE_TARGET,
                                                 v < s->n_in ? v : v - s->n_in);
            if (!p) {
                tg_error(ctx, TG_ERR_PARSE, "%s: sequence %d has no values for target '%s' (training needs every "
                         "target)", s->name, q + 1, tg_model_var(m, TG_ROLE_TARGET, v - s->n_in, NULL, NULL));
                goto fail;
            }
            s->vals[(size_t)q * (size_t)nv + (size_t)v] = p;
        }
    }
    if (items_make(s)) goto fail;
    return s;
fail:
    tg_trainset_free(s);
    return NULL;
}

tg_trainset *tg_trainset_sequences(tg_ctx *ctx, const tg_model *m, tg_dataset *d)
{
    if (!ctx) {
        tg_dataset_free(d);
        return NULL;
    }
    if (!m || !d) {
        tg_dataset_free(d);
        tg_error(ctx, TG_ERR_ARG, "tg_trainset_sequences: model and data are required");
        return NULL;
    }
    return sequences(ctx, m, d, "(sequences)");
}

/* ---- text ---------------------------------------------------------------- */

tg_trainset *tg_trainset_text_parse(tg_ctx *ctx, const char *filename, const char *text, size_t len,
                                    const tg_vocab *vocab)
{
    if (!ctx) return NULL;
    if (!text) {
        tg_error(ctx, TG_ERR_ARG, "tg_trainset_text_parse: text is NULL");
        return NULL;
    }
    tg_trainset *s = set_new(ctx, TGT_TEXT, filename ? filename : "(text)");
    if (!s) return NULL;
    const unsigned char *u = (const unsigned char *)text;
    s->sym = malloc((len ? len : 1) * sizeof *s->sym);
    if (!s->sym) {
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* pass 1: code points (kept in sym for now), distinct ones counted */
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int used;
        s->sym[n++] = (int32_t)tgt_utf8(u + i, len - i, &used);
        i += (size_t)used;
    }
    s->n_sym = n;
    if (n < 2) {
        tg_error(ctx, TG_ERR_PARSE, "%s: a text needs at least 2 characters to predict one from the other", s->name);
        goto fail;
    }
    if (vocab) {
        uint32_t *c = malloc((size_t)vocab->n * sizeof *c);
        if (!c) {
            tg_error(ctx, TG_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(c, vocab->chars, (size_t)vocab->n * sizeof *c);
        if (!(s->vocab = tgt_vocab_make(ctx, c, vocab->n))) goto fail;
    } else {
        /* the distinct code points, in order, from a bitmap of all of them */
        uint64_t *seen = calloc(0x110000 / 64, sizeof *seen);
        if (!seen) {
            tg_error(ctx, TG_ERR_NOMEM, "out of memory");
            goto fail;
        }
        int k = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp = (uint32_t)s->sym[i];
            if (!(seen[cp / 64] >> (cp % 64) & 1)) seen[cp / 64] |= (uint64_t)1 << (cp % 64), k++;
        }
        uint32_t *c = malloc((size_t)k * sizeof *c);
        if (!c) {
            free(seen);
            tg_error(ctx, TG_ERR_NOMEM, "out of memory");
            goto fail;
        }
        int j = 0;
        for (uint32_t w = 0; w < 0x110000 / 64; w++)
            for (uint64_t b = seen[w]; b; b &= b - 1) c[j++] = w * 64 + (uint32_t)__builtin_ctzll(b);
        free(seen);
        if (!(s->vocab = tgt_vocab_make(ctx, c, k))) goto fail;
    }
    /* pass 2: symbols; a character the given vocabulary lacks is positioned */
    int line = 1, col = 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = (uint32_t)s->sym[i];
        int k = tg_vocab_index(s->vocab, cp);
        if (k < 0) {
            char shown[16] = "";
            if (cp >= 32 && cp < 127) snprintf(shown, sizeof shown, "'%c' ", (char)cp);
            tg_error(ctx, TG_ERR_PARSE, "%s:%d:%d: character %s(U+%04X) is not in the vocabulary of %d characters",
                     s->name, line, col, shown, (unsigned)cp, s->vocab->n);
            goto fail;
        }
        s->sym[i] = k;
        if (cp == '\n') line++, col = 1;
        else col++;
    }
    return s;
fail:
    tg_trainset_free(s);
    return NULL;
}

tg_trainset *tg_trainset_text(tg_ctx *ctx, const char *path, const tg_vocab *vocab)
{
    if (!ctx) return NULL;
    if (!path) {
        tg_error(ctx, TG_ERR_ARG, "tg_trainset_text: path is NULL");
        return NULL;
    }
    char *buf;
    size_t len;
    if (tgt_read(ctx, path, TGT_MAX_TEXT, "the text", &buf, &len)) return NULL;
    tg_trainset *s = tg_trainset_text_parse(ctx, strcmp(path, "-") ? path : "(standard input)", buf, len, vocab);
    free(buf);
    return s;
}

/* ---- CSV ----------------------------------------------------------------- */

typedef struct csv_col { int var, row; } csv_col;  /* var: input i, or n_in + target i */

static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1, *col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') ++*line, *col = 1;
        else ++*col;
    }
}

/* The header line [h, e): column names. */
static tg_status csv_header(tg_trainset *s, const tg_model *m, const char *h, const char *e, csv_col **out,
                            int *n_out)
{
    int cap = 16, n = 0, nv = s->n_in + s->n_tg;
    csv_col *c = malloc((size_t)cap * sizeof *c);
    if (!c) return tg_error(s->ctx, TG_ERR_NOMEM, "out of memory");
    const char *p = h;
    for (;;) {
        const char *q = p;
        while (q < e && *q != ',') q++;
        const char *a = p, *b = q;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) b--;
        char tok[TGM_MAX_NAME + 32];
        int col = (int)(a - h) + 1;
        if ((size_t)(b - a) >= sizeof tok) {
            free(c);
            return tg_error(s->ctx, TG_ERR_PARSE, "%s:1:%d: column name longer than %zu characters", s->name, col,
                            sizeof tok - 1);
        }
        memcpy(tok, a, (size_t)(b - a));
        tok[b - a] = 0;
        int row = 0;
        char *br = strchr(tok, '[');
        if (br) {
            char *x;
            long r = strtol(br + 1, &x, 10);
            if (x == br + 1 || *x != ']' || x[1] || r < 0 || r > TGM_MAX_DIM) {
                free(c);
                return tg_error(s->ctx, TG_ERR_PARSE, "%s:1:%d: bad column name '%s' (use name or name[row])", s->name,
                                col, tok);
            }
            row = (int)r;
            *br = 0;
        }
        int var = -1;
        for (int i = 0; i < nv && var < 0; i++)
            if (!strcmp(tg_model_var(m, i < s->n_in ? TG_ROLE_INPUT : TG_ROLE_TARGET, i < s->n_in ? i : i - s->n_in,
                                     NULL, NULL), tok))
                var = i;
        if (var < 0) {
            char names[512] = "";
            for (int i = 0; i < nv; i++) {
                const char *nm = tg_model_var(m, i < s->n_in ? TG_ROLE_INPUT : TG_ROLE_TARGET,
                                              i < s->n_in ? i : i - s->n_in, NULL, NULL);
                if (strlen(names) + strlen(nm) + 3 < sizeof names) strcat(strcat(names, i ? ", " : ""), nm);
            }
            free(c);
            return tg_error(s->ctx, TG_ERR_PARSE, "%s:1:%d: column '%s' is not an input or target of model '%s' (it "
                            "has: %s)", s->name, col, tok, tg_model_name(m), names);
        }
        int rows = s->rows[var];
        if (row >= rows || (!br && rows > 1)) {
            free(c);
            return tg_error(s->ctx, TG_ERR_PARSE, "%s:1:%d: column '%s%s': '%s' has %d rows, so name its columns "
                            "%s[0] .. %s[%d]", s->name, col, tok, br ? "[..]" : "", tok, rows, tok, tok, rows - 1);
        }
        for (int k = 0; k < n; k++)
            if (c[k].var == var && c[k].row == row) {
                free(c);
                return tg_error(s->ctx, TG_ERR_PARSE, "%s:1:%d: column '%s' appears twice", s->name, col, tok);
            }
        if (n == cap) {
            csv_col *nc = realloc(c, (size_t)(cap *= 2) * sizeof *c);
            if (!nc) {
                free(c);
                return tg_error(s->ctx, TG_ERR_NOMEM, "out of memory");
            }
            c = nc;
        }
        c[n++] = (csv_col){var, row};
        if (q >= e) break;
        p = q + 1;
    }
    /* every input row is required; targets too */
    for (int v = 0; v < nv; v++) {
        int have = 0;
        for (int k = 0; k < n; k++) have += c[k].var == v;
        if (have != s->rows[v]) {
            int tg = v >= s->n_in;
            free(c);
            return tg_error(s->ctx, TG_ERR_PARSE, "%s:1: the header lacks %s '%s'%s (training needs every input and "
                            "target)", s->name, tg ? "target" : "input",
                            tg_model_var(m, tg ? TG_ROLE_TARGET : TG_ROLE_INPUT, tg ? v - s->n_in : v, NULL, NULL),
                            s->rows[v] > 1 ? " (all its rows)" : "");
        }
    }
    *out = c;
    *n_out = n;
    return TG_OK;
}

/* A CSV number: what strtod reads, finite and within tg_real. */
static tg_status csv_number(tg_trainset *s, const char *text, const char *p, const char **end, double *v)
{
    char *e;
    int line, col;
    errno = 0;
    *v = strtod(p, &e);
    if (e == p) {
        line_col(text, p, &line, &col);
        const char *q = p;
        while (*q && *q != ',' && *q != '\n' && *q != '\r' && q - p < 20) q++;
        return tg_error(s->ctx, TG_ERR_PARSE, "%s:%d:%d: expected a number, found '%.*s'", s->name, line, col,
                        (int)(q - p), p);
    }
    double limit = sizeof(tg_real) == 4 ? FLT_MAX : DBL_MAX;
    if (!isfinite(*v) || fabs(*v) > limit) {
        line_col(text, p, &line, &col);
        int word = 0; /* nan, inf, infinity as written */
        for (const char *q = p; q < e; q++) word |= *q == 'n' || *q == 'N';
        if (!isfinite(*v) && word)
            return tg_error(s->ctx, TG_ERR_PARSE, "%s:%d:%d: '%.*s' is not a finite number", s->name, line, col,
                            (int)(e - p), p);
        return tg_error(s->ctx, TG_ERR_PARSE, "%s:%d:%d: '%.*s' is out of range for %s (largest %g)", s->name, line,
                        col, (int)(e - p), p, sizeof(tg_real) == 4 ? "float" : "double", limit);
    }
    /* strtod also reads C's hexadecimal floats (0x10 is 16): not a CSV number */
    for (const char *q = p; q < e; q++)
        if (*q == 'x' || *q == 'X') {
            line_col(text, p, &line, &col);
            return tg_error(s->ctx, TG_ERR_PARSE, "%s:%d:%d: '%.*s' is a hexadecimal number; write numbers in decimal",
                            s->name, line, col, (int)(e - p), p);
        }
    *end = e;
    return TG_OK;
}

tg_trainset *tg_trainset_csv_parse(tg_ctx *ctx, const tg_model *m, const char *filename, const char *text,
                                   size_t len)
{
    if (!ctx) return NULL;
    if (!m || !text) {
        tg_error(ctx, TG_ERR_ARG, "tg_trainset_csv_parse: model and text are required");
        return NULL;
    }
    /* strtod reads up to a terminator: parse a NUL-terminated copy */
    char *own = malloc(len + 1);
    if (!own) {
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(own, text, len);
    own[len] = 0;
    text = own;
    tg_trainset *s = set_new(ctx, TGT_SEQS, filename ? filename : "(csv)");
    if (!s) {
        free(own);
        return NULL;
    }
    csv_col *cols = NULL;
    int *steps = NULL, n_cols = 0, n_seq = 0, cap_seq = 0, in_seq = 0;
    double *vals = NULL;
    size_t n_vals = 0, cap_vals = 0;
    if (seqs_alloc(s, m, 0)) goto fail;
    const char *nul = memchr(text, 0, len);
    if (nul) {
        int line, col;
        line_col(text, nul, &line, &col);
        tg_error(ctx, TG_ERR_PARSE, "%s:%d:%d: a NUL byte in CSV data", s->name, line, col);
        goto fail;
    }
    int lineno = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *line = p;
        p = nl ? nl + 1 : end;
        lineno++;
        const char *q = line;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < le && *q == '#') continue;
        if (q == le) {
            in_seq = 0;
            continue;
        }
        if (!cols) {
            if (csv_header(s, m, line, le, &cols, &n_cols)) goto fail;
            continue;
        }
        if (!in_seq) {
            if (n_seq == TGM_MAX_SEQUENCES) {
                int l, c;
                line_col(text, q, &l, &c);
                tg_error(ctx, TG_ERR_LIMIT, "%s:%d:%d: more than the limit of %d sequences", s->name, l, c,
                         TGM_MAX_SEQUENCES);
                goto fail;
            }
            if (n_seq == cap_seq) {
                cap_seq = cap_seq ? 2 * cap_seq : 16;
                int *ns = realloc(steps, (size_t)cap_seq * sizeof *ns);
                if (!ns) goto oom;
                steps = ns;
            }
            steps[n_seq++] = 0;
            in_seq = 1;
        }
        if (steps[n_seq - 1] == TGM_MAX_STEPS) {
            int l, c;
            line_col(text, q, &l, &c);
            tg_error(ctx, TG_ERR_LIMIT, "%s:%d:%d: sequence %d has more than the limit of %d steps", s->name, l, c,
                     n_seq, TGM_MAX_STEPS);
            goto fail;
        }
        if (n_vals + (size_t)n_cols > cap_vals) {
            cap_vals = cap_vals ? 2 * cap_vals : 4096;
            while (cap_vals < n_vals + (size_t)n_cols) cap_vals *= 2;
            double *nv = realloc(vals, cap_vals * sizeof *nv);
            if (!nv) goto oom;
            vals = nv;
        }
        const char *e = q;
        for (int k = 0; k < n_cols; k++) {
            while (e < le && (*e == ' ' || *e == '\t')) e++;
            double v;
            if (e >= le || *e == '\r') {
                tg_error(ctx, TG_ERR_PARSE, "%s:%d: expected %d values, found %d", s->name, lineno, n_cols, k);
                goto fail;
            }
            if (csv_number(s, text, e, &e, &v)) goto fail;
            while (e < le && (*e == ' ' || *e == '\t' || *e == '\r')) e++;
            if (k + 1 < n_cols) {
                if (e >= le || *e != ',') {
                    tg_error(ctx, TG_ERR_PARSE, "%s:%d: expected %d values, found %d", s->name, lineno, n_cols, k + 1);
                    goto fail;
                }
                e++;
            } else if (e < le) {
                tg_error(ctx, TG_ERR_PARSE, "%s:%d: more than the header's %d values", s->name, lineno, n_cols);
                goto fail;
            }
            vals[n_vals++] = v;
        }
        steps[n_seq - 1]++;
    }
    if (!cols || n_seq == 0) {
        tg_error(ctx, TG_ERR_PARSE, "%s: no %s (a CSV file is a header line of input and target names, then one line "
                 "per step)", s->name, cols ? "data lines" : "header");
        goto fail;
    }
    /* each sequence's inputs and targets as tg_dataset_values() lays them out, batch 1 */
    {
        int nv = s->n_in + s->n_tg;
        size_t per_step = 0;
        for (int v = 0; v < nv; v++) per_step += (size_t)s->rows[v];
        size_t total = n_vals / (size_t)n_cols * per_step;
        free(s->seq_steps), free(s->seq_batch), free(s->vals);
        s->n_seq = n_seq;
        s->seq_steps = malloc((size_t)n_seq * sizeof *s->seq_steps);
        s->seq_batch = malloc((size_t)n_seq * sizeof *s->seq_batch);
        s->vals = malloc((size_t)n_seq * (size_t)(nv ? nv : 1) * sizeof *s->vals);
        s->csv_values = calloc(total ? total : 1, sizeof(tg_real));
        if (!s->seq_steps || !s->seq_batch || !s->vals || !s->csv_values) goto oom;
        tg_real *w = s->csv_values;
        const double *r = vals;
        for (int q = 0; q < n_seq; q++) {
            int T = steps[q];
            s->seq_steps[q] = T;
            s->seq_batch[q] = 1;
            for (int v = 0; v < nv; v++) {
                s->vals[(size_t)q * (size_t)nv + (size_t)v] = w;
                w += (size_t)T * (size_t)s->rows[v];
            }
            for (int t = 0; t < T; t++, r += n_cols)
                for (int k = 0; k < n_cols; k++) {
                    tg_real *base = (tg_real *)s->vals[(size_t)q * (size_t)nv + (size_t)cols[k].var];
                    base[(size_t)t * (size_t)s->rows[cols[k].var] + (size_t)cols[k].row] = (tg_real)r[k];
                }
        }
    }
    if (items_make(s)) goto fail;
    free(cols), free(steps), free(vals), free(own);
    return s;
oom:
    tg_error(ctx, TG_ERR_NOMEM, "%s: out of memory", s->name);
fail:
    free(cols), free(steps), free(vals), free(own);
    tg_trainset_free(s);
    return NULL;
}

tg_trainset *tg_trainset_csv(tg_ctx *ctx, const tg_model *m, const char *path)
{
    if (!ctx) return NULL;
    if (!path || !m) {
        tg_error(ctx, TG_ERR_ARG, "tg_trainset_csv: model and path are required");
        return NULL;
    }
    char *buf;
    size_t len;
    if (tgt_read(ctx, path, TGT_MAX_TEXT, "the data file", &buf, &len)) return NULL;
    tg_trainset *s = tg_trainset_csv_parse(ctx, m, strcmp(path, "-") ? path : "(standard input)", buf, len);
    free(buf);
    return s;
}

tg_trainset *tg_trainset_load(tg_ctx *ctx, const tg_model *m, const char *path, const tg_vocab *vocab)
{
    if (!ctx) return NULL;
    if (!path) {
        tg_error(ctx, TG_ERR_ARG, "tg_trainset_load: path is NULL");
        return NULL;
    }
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash)) {
        if (!strcmp(dot, ".csv")) return tg_trainset_csv(ctx, m, path);
        if (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")) {
            if (!m) {
                tg_error(ctx, TG_ERR_ARG, "tg_trainset_load: sequences need the model");
                return NULL;
            }
            tg_dataset *d = tg_dataset_load(ctx, m, path);
            return d ? sequences(ctx, m, d, path) : NULL;
        }
    }
    return tg_trainset_text(ctx, path, vocab);
}

tg_trainset *tg_trainset_split(tg_trainset *s, double fraction)
{
    if (!s) return NULL;
    tg_ctx *ctx = s->ctx;
    if (!(fraction > 0 && fraction < 1)) {
        tg_error(ctx, TG_ERR_ARG, "the validation fraction must be between 0 and 1, not %g", fraction);
        return NULL;
    }
    tg_trainset *v = set_new(ctx, s->kind, s->name);
    if (!v) return NULL;
    if (s->kind == TGT_TEXT) {
        size_t nv = (size_t)((double)s->n_sym * fraction);
        if (nv < 2 || s->n_sym - nv < 2) {
            tg_error(ctx, TG_ERR_ARG, "%s: %zu characters are too few to keep %g of them for validation", s->name,
                     s->n_sym, fraction);
            goto fail;
        }
        uint32_t *c = malloc((size_t)s->vocab->n * sizeof *c);
        v->sym = malloc(nv * sizeof *v->sym);
        if (!c || !v->sym) {
            free(c);
            tg_error(ctx, TG_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(c, s->vocab->chars, (size_t)s->vocab->n * sizeof *c);
        if (!(v->vocab = tgt_vocab_make(ctx, c, s->vocab->n))) goto fail;
        memcpy(v->sym, s->sym + (s->n_sym - nv), nv * sizeof *v->sym);
        v->n_sym = nv;
        s->n_sym -= nv;
        return v;
    }
    /* sequences: the last items in file order; their values stay in s's storage */
    int nv_items = (int)((double)s->n_items * fraction);
    if (nv_items < 1 || s->n_items - nv_items < 1) {
        tg_error(ctx, TG_ERR_ARG, "%s: %d sequences are too few to keep %g of them for validation", s->name,
                 s->n_items, fraction);
        goto fail;
    }
    int nvar = s->n_in + s->n_tg;
    v->n_in = s->n_in, v->n_tg = s->n_tg;
    v->rows = malloc((size_t)(nvar ? nvar : 1) * sizeof *v->rows);
    v->seq_steps = malloc((size_t)s->n_seq * sizeof(int));
    v->seq_batch = malloc((size_t)s->n_seq * sizeof(int));
    v->vals = malloc((size_t)s->n_seq * (size_t)(nvar ? nvar : 1) * sizeof *v->vals);
    v->items = malloc((size_t)nv_items * sizeof *v->items);
    if (!v->rows || !v->seq_steps || !v->seq_batch || !v->vals || !v->items) {
        tg_error(ctx, TG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(v->rows, s->rows, (size_t)nvar * sizeof *v->rows);
    memcpy(v->seq_steps, s->seq_steps, (size_t)s->n_seq * sizeof(int));
    memcpy(v->seq_batch, s->seq_batch, (size_t)s->n_seq * sizeof(int));
    memcpy(v->vals, s->vals, (size_t)s->n_seq * (size_t)nvar * sizeof *v->vals);
    v->n_seq = s->n_seq;
    memcpy(v->items, s->items + (s->n_items - nv_items), (size_t)nv_items * sizeof *v->items);
    v->n_items = nv_items;
    s->n_items -= nv_items;
    return v;
fail:
    tg_trainset_free(v);
    return NULL;
}
