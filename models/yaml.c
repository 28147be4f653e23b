/* yaml.c — reads model, data and params files into a small tree of plain
 * data with a source position on every node.  Uses libyaml's event API so
 * that depth, size and node count are enforced as the file is read, and
 * rejects what could make a data file do more than hold data: anchors,
 * aliases, tags, several documents. */
#include "tg_model_internal.h"
#include "tg_files.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- the bump pool ------------------------------------------------------------ */
struct tgm_block {
    tgm_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void *tgm_palloc(tgm_pool *p, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    if (!bytes) bytes = 16;
    tgm_block *b = p->head;
    if (!b || b->size - b->used < bytes) {
        size_t size = bytes > 16384 ? bytes : 16384;
        b = tg_alloc(p->ctx, sizeof *b + size);
        if (!b) return NULL;
        b->size = size;
        b->used = 0;
        b->next = p->head;
        p->head = b;
    }
    void *q = b->data + b->used;
    b->used += bytes;
    memset(q, 0, bytes);
    return q;
}

char *tgm_pstrdup(tgm_pool *p, const char *s, size_t len)
{
    char *d = tgm_palloc(p, len + 1);
    if (d) memcpy(d, s, len);
    return d;
}

void tgm_pool_free(tgm_pool *p)
{
    tgm_block *b = p->head;
    while (b) {
        tgm_block *next = b->next;
        tg_free(p->ctx, b, sizeof *b + b->size);
        b = next;
    }
    p->head = NULL;
}

/* ---- reading a file -------------------------------------------------------------- */
/* Through tg_file_read_as (core/files.c): only a regular file is opened, so a
 * FIFO cannot block us, and UTF-16/32 is named instead of misparsed.  The text
 * is copied into the context's allocator, which the callers free it with. */
tg_status tgm_read_file(tg_ctx *ctx, const char *path, size_t max, const char *what, char **text,
                        size_t *len)
{
    *text = NULL;
    *len = 0;
    char *buf, msg[TG_ERRMSG_LEN];
    size_t n;
    tg_status st = tg_file_read_as(path, what, max, 0, &buf, &n, msg, sizeof msg);
    if (st) return tg_error(ctx, st, "%s", msg);
    char *out = tg_alloc(ctx, n + 1);
    if (!out) {
        free(buf);
        return TG_ERR_NOMEM;
    }
    memcpy(out, buf, n + 1);
    free(buf);
    *text = out;
    *len = n;
    return TG_OK;
}

/* ---- building the tree ------------------------------------------------------------ */
static tg_status oom(tgm_ydoc *d)
{
    return tg_error(d->ctx, TG_ERR_NOMEM, "%s: out of memory reading the file", d->file);
}

/* "FILE:LINE:COL: " + message, at a 1-based position */
static tg_status verr_pos(const tgm_ydoc *d, int line, int col, tg_status s, const char *fmt,
                          va_list ap)
{
    char msg[TG_ERRMSG_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return tg_error(d->ctx, s, "%s:%d:%d: %s", d->file, line, col, msg);
}

static tg_status err_pos(const tgm_ydoc *d, int line, int col, tg_status s, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static tg_status err_pos(const tgm_ydoc *d, int line, int col, tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr_pos(d, line, col, s, fmt, ap);
    va_end(ap);
    return s;
}

tg_status tgm_err_node(const tgm_ydoc *d, int node, tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const tgm_ynode *n = node >= 0 ? &d->nodes[node] : NULL;
    verr_pos(d, n ? n->line : 1, n ? n->col : 1, s, fmt, ap);
    va_end(ap);
    return s;
}

tg_status tgm_err_at(const tgm_ydoc *d, int node, size_t offset, tg_status s, const char *fmt, ...)
{
    int line, col;
    tgm_locate(d, node, offset, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    verr_pos(d, line, col, s, fmt, ap);
    va_end(ap);
    return s;
}

static tg_status line_table(tgm_ydoc *d)
{
    int n = 1;
    for (size_t i = 0; i < d->text_len; i++)
        if (d->text[i] == '\n' || (d->text[i] == '\r' && (i + 1 >= d->text_len || d->text[i + 1] != '\n')))
            n++;
    d->line_start = tg_alloc(d->ctx, (size_t)n * sizeof *d->line_start);
    if (!d->line_start) return TG_ERR_NOMEM;
    /* libyaml skips a byte-order mark without counting it as a column */
    d->line_start[0] = d->text_len >= 3 && !memcmp(d->text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    int k = 1;
    for (size_t i = 0; i < d->text_len && k < n; i++)
        if (d->text[i] == '\n' || (d->text[i] == '\r' && (i + 1 >= d->text_len || d->text[i + 1] != '\n')))
            d->line_start[k++] = i + 1;
    d->n_lines = n;
    return TG_OK;
}

/* A byte offset of the source as 1-based line and column (in characters,
 * as libyaml counts them). */
static void offset_pos(const tgm_ydoc *d, size_t off, int *line, int *col)
{
    int lo = 0, hi = d->n_lines - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->line_start[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    int c = 1;
    for (size_t i = d->line_start[lo]; i < off && i < d->text_len; i++)
        if (((unsigned char)d->text[i] & 0xC0) != 0x80) c++;
    *line = lo + 1;
    *col = c;
}

static int new_node(tgm_ydoc *d, int kind, const yaml_mark_t *mark)
{
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 64;
        tgm_ynode *nn = tg_realloc(d->ctx, d->nodes, (size_t)d->cap * sizeof *nn, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        d->nodes = nn;
        d->cap = cap;
    }
    tgm_ynode *n = &d->nodes[d->n];
    memset(n, 0, sizeof *n);
    n->kind = (unsigned char)kind;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    n->first = n->next = -1;
    return d->n++;
}

static int pool_add(tgm_ydoc *d, const char *s, size_t len, size_t *at)
{
    if (d->pool_len + len + 1 > d->pool_cap) {
        size_t cap = d->pool_cap ? d->pool_cap : 1024;
        while (cap < d->pool_len + len + 1) cap *= 2;
        char *p = tg_realloc(d->ctx, d->pool, d->pool_cap, cap);
        if (!p) return -1;
        d->pool = p;
        d->pool_cap = cap;
    }
    memcpy(d->pool + d->pool_len, s, len);
    d->pool[d->pool_len + len] = 0;
    *at = d->pool_len;
    d->pool_len += len + 1;
    return 0;
}

static tg_status syntax_error(tgm_ydoc *d, yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) return oom(d);
    int line, col;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        offset_pos(d, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            return err_pos(d, line, col, TG_ERR_PARSE, "YAML syntax error: %s (byte 0x%02x)", problem,
                           (unsigned)p->problem_value & 0xff);
        return err_pos(d, line, col, TG_ERR_PARSE, "YAML syntax error: %s", problem);
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    if (line >= 1 && line <= d->n_lines) {
        size_t at = d->line_start[line - 1] + (size_t)(col - 1);
        if (at < d->text_len && d->text[at] == '\t')
            return err_pos(d, line, col, TG_ERR_PARSE, "YAML syntax error: a tab character (indent with spaces)");
    }
    if (p->context)
        return err_pos(d, line, col, TG_ERR_PARSE, "YAML syntax error: %s (%s at line %d)", problem,
                       p->context, (int)p->context_mark.line + 1);
    return err_pos(d, line, col, TG_ERR_PARSE, "YAML syntax error: %s", problem);
}

/* The byte offset of a node's start in the source. */
static size_t node_offset(const tgm_ydoc *d, int node)
{
    const tgm_ynode *n = &d->nodes[node];
    if (n->line < 1 || n->line > d->n_lines) return d->text_len;
    size_t j = d->line_start[n->line - 1];
    for (int c = 1; c < n->col && j < d->text_len; c++) {
        j++;
        while (j < d->text_len && ((unsigned char)d->text[j] & 0xC0) == 0x80) j++;
    }
    return j;
}

/* In a flow collection YAML ends a plain scalar at a comma, so the value of
 * {init: uniform(-0.5, 0.5)} arrives as "uniform(-0.5" followed by a key
 * "0.5)" with no value, and [h = f(x, y)] as two items.  Such a value (a
 * plain scalar with an unclosed parenthesis, followed on the same line by
 * empty-valued keys or plain items) is read from the source up to its
 * closing parenthesis, and the stray pieces are dropped. */
static tg_status repair_flow_calls(tgm_ydoc *d)
{
    for (int m = 0; m < d->n; m++) {
        if (d->nodes[m].kind == TGM_Y_SCALAR || !d->nodes[m].style) continue;
        int is_map = d->nodes[m].kind == TGM_Y_MAP;
        for (int k = d->nodes[m].first; k >= 0;) {
            int v = is_map ? d->nodes[k].next : k;
            if (v < 0) break;
            tgm_ynode *vn = &d->nodes[v];
            int open = 0;
            if (vn->kind == TGM_Y_SCALAR && vn->style == YAML_PLAIN_SCALAR_STYLE)
                for (size_t i = 0; i < vn->len; i++) open += d->pool[vn->str + i] == '(' ? 1 : d->pool[vn->str + i] == ')' ? -1 : 0;
            if (open <= 0) {
                k = vn->next;
                continue;
            }
            /* the source from the value to its closing parenthesis, one line */
            size_t start = node_offset(d, v), end = start;
            int depth = 0;
            for (; end < d->text_len; end++) {
                char ch = d->text[end];
                if (ch == '\n' || ch == '\r' || ch == '}' || ch == '{' || ch == '[' || ch == ']') break;
                if (ch == '(') depth++;
                if (ch == ')' && --depth == 0) break;
            }
            if (end >= d->text_len || d->text[end] != ')') {
                k = vn->next;
                continue;
            }
            /* the stray keys (or list items) must all lie inside; keys must
             * have no value */
            int after = vn->next, ok = 1, dropped = 0;
            while (after >= 0 && node_offset(d, after) < end) {
                int sv = is_map ? d->nodes[after].next : after;
                if (d->nodes[after].kind != TGM_Y_SCALAR || d->nodes[after].style != YAML_PLAIN_SCALAR_STYLE ||
                    (is_map && (sv < 0 || d->nodes[sv].kind != TGM_Y_SCALAR || d->nodes[sv].len != 0 ||
                                d->nodes[sv].style != YAML_PLAIN_SCALAR_STYLE))) {
                    ok = 0;
                    break;
                }
                after = d->nodes[sv].next;
                dropped++;
            }
            if (!ok || !dropped) {
                k = vn->next;
                continue;
            }
            size_t at;
            if (pool_add(d, d->text + start, end + 1 - start, &at)) return oom(d);
            vn = &d->nodes[v];
            vn->str = at;
            vn->len = end + 1 - start;
            vn->next = after;
            d->nodes[m].count -= (is_map ? 2 : 1) * dropped;
            k = after;
        }
    }
    return TG_OK;
}

tg_status tgm_yaml_parse(tgm_ydoc *d, tg_ctx *ctx, const char *file, const char *text, size_t len,
                         const tgm_ylimits *lim)
{
    d->ctx = ctx;
    d->file = file;
    d->text = text;
    d->text_len = len;
    d->root = -1;
    /* the size first: the line table walks (and counts in an int) every byte */
    if (len > lim->max_bytes)
        return err_pos(d, 1, 1, TG_ERR_LIMIT, "the file is larger than the limit of %zu bytes",
                       lim->max_bytes);
    if (line_table(d)) return oom(d);

    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return oom(d);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int stack[TGM_MAX_DEPTH + 1], last_child[TGM_MAX_DEPTH + 1];
    int depth = 0, docs = 0, done = 0;
    tg_status st = TG_OK;
    while (!done && st == TG_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            st = syntax_error(d, &p);
            break;
        }
        const yaml_mark_t *mk = &ev.start_mark;
        int line = (int)mk->line + 1, col = (int)mk->column + 1;
        int kind = -1;
        const char *anchor = NULL, *tag = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                st = err_pos(d, line, col, TG_ERR_PARSE,
                             "only one YAML document is allowed in a file");
            else if (ev.data.document_start.tag_directives.start != ev.data.document_start.tag_directives.end)
                st = err_pos(d, line, col, TG_ERR_PARSE, "%%TAG directives are not allowed");
            break;
        case YAML_ALIAS_EVENT:
            st = err_pos(d, line, col, TG_ERR_PARSE,
                         "aliases ('*%.40s') are not allowed: the file must be plain data",
                         (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            kind = TGM_Y_SCALAR;
            anchor = (const char *)ev.data.scalar.anchor;
            tag = (const char *)ev.data.scalar.tag;
            break;
        case YAML_SEQUENCE_START_EVENT:
            kind = TGM_Y_SEQ;
            anchor = (const char *)ev.data.sequence_start.anchor;
            tag = (const char *)ev.data.sequence_start.tag;
            break;
        case YAML_MAPPING_START_EVENT:
            kind = TGM_Y_MAP;
            anchor = (const char *)ev.data.mapping_start.anchor;
            tag = (const char *)ev.data.mapping_start.tag;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) depth--;
            break;
        default:
            break;
        }
        if (st == TG_OK && kind >= 0) {
            if (anchor)
                st = err_pos(d, line, col, TG_ERR_PARSE,
                             "anchors ('&%.40s') are not allowed: the file must be plain data", anchor);
            else if (tag) {
                /* show the tag as written (libyaml hands it expanded) */
                size_t at = d->line_start[line - 1 < d->n_lines ? line - 1 : 0], e;
                for (int c = 1; c < col && at < d->text_len; c++) at++;
                for (e = at; e < d->text_len && e - at < 60 && d->text[e] != ' ' && d->text[e] != '\n' &&
                             d->text[e] != '\r' && d->text[e] != '\t';
                     e++)
                    ;
                if (e > at && d->text[at] == '!')
                    st = err_pos(d, line, col, TG_ERR_PARSE,
                                 "tags ('%.*s') are not allowed: the file must be plain data", (int)(e - at), d->text + at);
                else
                    st = err_pos(d, line, col, TG_ERR_PARSE,
                                 "tags ('%.60s') are not allowed: the file must be plain data", tag);
            }
            else if (d->n >= lim->max_nodes)
                st = err_pos(d, line, col, TG_ERR_LIMIT,
                             "too many values: the limit is %d YAML nodes per file", lim->max_nodes);
            else if (kind != TGM_Y_SCALAR && depth >= lim->max_depth)
                st = err_pos(d, line, col, TG_ERR_LIMIT,
                             "nesting deeper than the limit of %d levels", lim->max_depth);
        }
        if (st == TG_OK && kind >= 0) {
            int id = new_node(d, kind, mk);
            if (id < 0) st = oom(d);
            else {
                if (kind == TGM_Y_SEQ)
                    d->nodes[id].style = ev.data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
                if (kind == TGM_Y_MAP)
                    d->nodes[id].style = ev.data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
                if (kind == TGM_Y_SCALAR) {
                    d->nodes[id].style = (unsigned char)ev.data.scalar.style;
                    d->nodes[id].len = ev.data.scalar.length;
                    if (pool_add(d, (const char *)ev.data.scalar.value, ev.data.scalar.length,
                                 &d->nodes[id].str))
                        st = oom(d);
                }
                if (depth == 0) d->root = id;
                else {
                    int parent = stack[depth - 1];
                    if (last_child[depth - 1] < 0) d->nodes[parent].first = id;
                    else d->nodes[last_child[depth - 1]].next = id;
                    last_child[depth - 1] = id;
                    d->nodes[parent].count++;
                }
                if (kind != TGM_Y_SCALAR) {
                    stack[depth] = id;
                    last_child[depth] = -1;
                    depth++;
                }
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (st) return st;

    if ((st = repair_flow_calls(d))) return st;
    /* maps: keys must be scalars and unique */
    for (int i = 0; i < d->n; i++) {
        if (d->nodes[i].kind != TGM_Y_MAP) continue;
        if (d->nodes[i].count / 2 > TGM_MAX_KEYS)
            return tgm_err_node(d, i, TG_ERR_LIMIT, "more than %d keys in one mapping", TGM_MAX_KEYS);
        int k = d->nodes[i].first;
        while (k >= 0) {
            const tgm_ynode *kn = &d->nodes[k];
            if (kn->kind != TGM_Y_SCALAR)
                return tgm_err_node(d, k, TG_ERR_PARSE, "a key must be a plain name, not %s",
                                    tgm_kind_name(d, k));
            /* quadratic, but a mapping has at most TGM_MAX_KEYS keys */
            for (int j = d->nodes[i].first; j != k; j = d->nodes[d->nodes[j].next].next)
                if (d->nodes[j].len == kn->len && strcmp(tgm_str(d, j), tgm_str(d, k)) == 0)
                    return tgm_err_node(d, k, TG_ERR_PARSE, "duplicate key '%s' (first at line %d)",
                                        tgm_str(d, k), d->nodes[j].line);
            int v = kn->next;
            k = v >= 0 ? d->nodes[v].next : -1;
        }
    }
    return TG_OK;
}

void tgm_yaml_free(tgm_ydoc *d)
{
    if (!d->ctx) return;
    tg_free(d->ctx, d->nodes, (size_t)d->cap * sizeof *d->nodes);
    tg_free(d->ctx, d->pool, d->pool_cap);
    tg_free(d->ctx, d->line_start, (size_t)d->n_lines * sizeof *d->line_start);
    memset(d, 0, sizeof *d);
}

/* ---- reading nodes ------------------------------------------------------------------ */
int tgm_is_null(const tgm_ydoc *d, int i)
{
    const tgm_ynode *n = &d->nodes[i];
    if (n->kind != TGM_Y_SCALAR || n->style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = tgm_str(d, i);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

const char *tgm_kind_name(const tgm_ydoc *d, int i)
{
    const tgm_ynode *n = &d->nodes[i];
    double v;
    if (n->kind == TGM_Y_MAP) return "a mapping";
    if (n->kind == TGM_Y_SEQ) return "a list";
    if (tgm_is_null(d, i)) return "nothing";
    if (n->style == YAML_PLAIN_SCALAR_STYLE && tgm_parse_number(tgm_str(d, i), &v) == 0)
        return "a number";
    return "a string";
}

int tgm_map_get(const tgm_ydoc *d, int map, const char *key, int *key_node)
{
    for (int k = d->nodes[map].first; k >= 0;) {
        int v = d->nodes[k].next;
        if (strcmp(tgm_str(d, k), key) == 0) {
            if (key_node) *key_node = k;
            return v;
        }
        k = v >= 0 ? d->nodes[v].next : -1;
    }
    if (key_node) *key_node = -1;
    return -1;
}

/* ---- positions inside scalars --------------------------------------------------------- */
static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void tgm_locate(const tgm_ydoc *d, int node, size_t offset, int *line, int *col)
{
    const tgm_ynode *n = &d->nodes[node];
    *line = n->line;
    *col = n->col;
    if (n->kind != TGM_Y_SCALAR || n->line < 1 || n->line > d->n_lines) return;
    /* the node's start as a byte offset (columns count characters) */
    size_t j = d->line_start[n->line - 1];
    for (int c = 1; c < n->col && j < d->text_len; c++) {
        j++;
        while (j < d->text_len && ((unsigned char)d->text[j] & 0xC0) == 0x80) j++;
    }
    switch (n->style) {
    case YAML_PLAIN_SCALAR_STYLE: break;
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: j++; break;
    default: /* block scalars start on the line after the indicator */
        while (j < d->text_len && d->text[j] != '\n') j++;
        break;
    }
    /* walk value and source together; whitespace runs match whitespace runs */
    const char *v = tgm_str(d, node);
    size_t i = 0;
    if (offset > n->len) offset = n->len;
    while (j < d->text_len && is_ws(d->text[j]) && !(i < n->len && is_ws(v[i]))) j++;
    while (i < offset) {
        if (j >= d->text_len) return;
        if (is_ws(v[i])) {
            if (!is_ws(d->text[j])) return;
            while (i < offset && is_ws(v[i])) i++;
            while (j < d->text_len && is_ws(d->text[j])) j++;
            if (i == offset) break;
            continue;
        }
        if (v[i] != d->text[j]) {
            if (!is_ws(d->text[j])) return;   /* escapes and the like: give up */
            while (j < d->text_len && is_ws(d->text[j])) j++;
            continue;
        }
        i++;
        j++;
    }
    /* land on the character itself, not on whitespace before it */
    if (i < n->len && !is_ws(v[i]))
        while (j < d->text_len && is_ws(d->text[j])) j++;
    if (j > d->text_len) return;
    offset_pos(d, j, line, col);
}

/* ---- helpers -------------------------------------------------------------------------------- */
int tgm_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int row[66];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j];
            int cost = (a[i - 1] | 32) == (b[j - 1] | 32) ? 0 : 1;
            int best = prev + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

const char *tgm_suggest(const char *word, const char *const *cands, int n)
{
    size_t len = strlen(word);
    int limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    const char *best = NULL;
    int bd = limit + 1;
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        int dist = tgm_edit_distance(word, cands[i]);
        size_t lc = strlen(cands[i]);
        if (dist < bd && dist < (int)(lc > len ? lc : len)) {
            bd = dist;
            best = cands[i];
        }
    }
    return best;
}

const char *tgm_did_you_mean(char *buf, size_t len, const char *word, const char *const *cands, int n)
{
    const char *s = tgm_suggest(word, cands, n);
    if (s) snprintf(buf, len, " (did you mean '%s'?)", s);
    else buf[0] = 0;
    return buf;
}

int tgm_is_ident(const char *s)
{
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return 0;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

int tgm_parse_number(const char *s, double *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return -1;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return -1;
    double v = strtod(s, NULL);
    if (!isfinite(v)) return -1;
    *out = v;
    return 0;
}

const char *tgm_shape_str(char *buf, size_t len, int rows, int cols, int ndim)
{
    char r[16], c[16];
    if (rows == TGM_BATCH) snprintf(r, sizeof r, "B");
    else snprintf(r, sizeof r, "%d", rows);
    if (cols == TGM_BATCH) snprintf(c, sizeof c, "B");
    else snprintf(c, sizeof c, "%d", cols);
    if (ndim == 1) snprintf(buf, len, "[%s]", r);
    else snprintf(buf, len, "[%s, %s]", r, c);
    return buf;
}
