/* escape.c — strings from inputs written into outputs that have a syntax of
 * their own (tg_escape.h says what each kind does and why). */
#include "tg_escape.h"
#include <string.h>

/* Where escaped text goes: a stream, or a bounded buffer that stops at the
 * first piece that does not fit whole (so no escape is cut in half). */
typedef struct sink {
    FILE *f;
    char *buf;
    size_t limit, pos; /* buf: bytes the body may use, bytes used */
    int full, err;
} sink;

static void put(sink *k, const char *p, size_t n)
{
    if (k->f) {
        if (n && fwrite(p, 1, n, k->f) != n) k->err = 1;
        return;
    }
    if (k->full || k->pos + n > k->limit) {
        k->full = 1;
        return;
    }
    memcpy(k->buf + k->pos, p, n);
    k->pos += n;
}

static void put_hex(sink *k, const char *prefix, unsigned c)
{
    static const char hex[] = "0123456789abcdef";
    char b[8];
    size_t n = strlen(prefix);
    memcpy(b, prefix, n);
    b[n++] = hex[(c >> 4) & 15];
    b[n++] = hex[c & 15];
    put(k, b, n);
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 if s starts none:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* A byte TEXT shows as \xNN: a control character, or the start of a C1
 * control (U+0080..U+009F is 0xc2 0x80..0x9f). n: utf8_len at p. */
static int is_shown_hex(const unsigned char *p, int n)
{
    return n == 0 || p[0] < 0x20 || p[0] == 0x7f || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0);
}

static int csv_needs_quotes(const char *s)
{
    size_t n = strlen(s);
    if (n && (s[0] == ' ' || s[n - 1] == ' ')) return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int k = utf8_len(p);
        if (*p == ',' || *p == '"' || is_shown_hex(p, k)) return 1;
        p += k ? k : 1;
    }
    return 0;
}

static void escape(sink *k, const char *s, tg_esc_kind kind)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_len(p);
        const char *rep = NULL;
        if (kind == TG_ESC_JSON) {
            if (!n) {
                put(k, "\\ufffd", 6);
                p++;
                continue;
            }
            switch (*p) {
            case '"': rep = "\\\""; break;
            case '\\': rep = "\\\\"; break;
            case '\n': rep = "\\n"; break;
            case '\t': rep = "\\t"; break;
            case '\r': rep = "\\r"; break;
            case '\b': rep = "\\b"; break;
            case '\f': rep = "\\f"; break;
            }
            if (rep) put(k, rep, strlen(rep));
            else if (*p < 0x20 || *p == 0x7f) put_hex(k, "\\u00", *p);
            else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) put_hex(k, "\\u00", p[1]);
            else put(k, (const char *)p, (size_t)n);
            p += n;
            continue;
        }
        if (kind == TG_ESC_DOT && *p == '\n') rep = "\\n";
        else if (kind == TG_ESC_DOT && *p == '"') rep = "\\\"";
        else if (kind == TG_ESC_DOT && *p == '\\') rep = "\\\\";
        else if (kind == TG_ESC_CSV && *p == '"') rep = "\"\"";
        else if (kind == TG_ESC_GNUPLOT && *p == '\'') rep = "''";
        else if (kind == TG_ESC_TOKEN && *p == ' ') rep = "\\x20";
        if (rep) {
            put(k, rep, strlen(rep));
            p++;
        } else if (is_shown_hex(p, n)) {
            /* DOT reads "\x" as an unknown escape: double the backslash */
            int bytes = n ? n : 1;
            for (int i = 0; i < bytes; i++) put_hex(k, kind == TG_ESC_DOT ? "\\\\x" : "\\x", p[i]);
            p += bytes;
        } else {
            put(k, (const char *)p, (size_t)n);
            p += n;
        }
    }
}

static const char *quote_of(const char *s, tg_esc_kind kind)
{
    switch (kind) {
    case TG_ESC_JSON:
    case TG_ESC_DOT: return "\"";
    case TG_ESC_CSV: return csv_needs_quotes(s) ? "\"" : "";
    case TG_ESC_GNUPLOT: return "'";
    default: return "";
    }
}

int tg_esc_write(FILE *out, const char *s, tg_esc_kind kind)
{
    if (!out || !s) return 0;
    sink k = {.f = out};
    const char *q = quote_of(s, kind);
    put(&k, q, strlen(q));
    escape(&k, s, kind);
    put(&k, q, strlen(q));
    return k.err ? EOF : 0;
}

char *tg_esc_str(char *buf, size_t len, const char *s, tg_esc_kind kind)
{
    if (!buf || !len) return buf;
    buf[0] = 0;
    if (!s) return buf;
    const char *q = quote_of(s, kind);
    size_t ql = strlen(q);
    if (len < 2 * ql + 1) return buf;
    sink k = {.buf = buf, .limit = len - 1 - ql};
    put(&k, q, ql);
    escape(&k, s, kind);
    k.full = 0;
    k.limit = len - 1;
    put(&k, q, ql);
    buf[k.pos] = 0;
    return buf;
}

int tg_esc_needed(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p;) {
        int n = utf8_len(p);
        if (is_shown_hex(p, n)) return 1;
        p += n;
    }
    return 0;
}
