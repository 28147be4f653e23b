/* ckpt_file.c — the checkpoint container (layout in ckpt_file.h): a little-endian encoder
 * and a bounds-checked decoder, a writer that commits atomically, and a reader that
 * verifies the whole file (magic, version, length, every section's CRC-32) before any
 * section is handed out, so that a cut, corrupted or foreign file is refused by name. */
#include "ckpt_file.h"
#include "tg_files.h"
#include "tg_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- CRC-32, four bits at a time: a 16-entry table is fast enough for checkpoints
 * (hundreds of MB/s) and small enough to write out, so nothing is built at run time ---- */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu,
    0x76dc4190u, 0x6b6b51f4u, 0x4db26158u, 0x5005713cu,
    0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
    0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t tgc_crc32(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc = (crc >> 4) ^ crc_nibble[(crc ^ p[i]) & 15];
        crc = (crc >> 4) ^ crc_nibble[(crc ^ (p[i] >> 4)) & 15];
    }
    return ~crc;
}

/* ---- little-endian bytes, independent of the host's order ---- */
static void le_store(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_load(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- the encoder ---- */
void tgc_buf_free(tgc_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static unsigned char *buf_grow(tgc_buf *b, size_t n)
{
    if (b->oom) return NULL;
    if (n > b->cap - b->len || !b->p) {
        size_t need = b->len + n;
        if (need < b->len) {
            b->oom = 1;
            return NULL;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                cap = need;
                break;
            }
            cap *= 2;
        }
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    unsigned char *at = b->p + b->len;
    b->len += n;
    return at;
}

static void put_le(tgc_buf *b, uint64_t v, int n)
{
    unsigned char *p = buf_grow(b, (size_t)n);
    if (p) le_store(p, v, n);
}

void tgc_put_u8(tgc_buf *b, uint8_t v) { put_le(b, v, 1); }
void tgc_put_u32(tgc_buf *b, uint32_t v) { put_le(b, v, 4); }
void tgc_put_u64(tgc_buf *b, uint64_t v) { put_le(b, v, 8); }
void tgc_put_i64(tgc_buf *b, int64_t v) { put_le(b, (uint64_t)v, 8); }

void tgc_put_f64(tgc_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_le(b, bits, 8);
}

void tgc_put_str(tgc_buf *b, const char *s, size_t len)
{
    if (len > UINT32_MAX) {
        b->oom = 1; /* no string of a checkpoint is that long; refuse rather than cut */
        return;
    }
    put_le(b, len, 4);
    unsigned char *p = buf_grow(b, len);
    if (p && len) memcpy(p, s, len);
}

void tgc_put_reals(tgc_buf *b, const tg_real *v, size_t n)
{
    tgc_put_u8(b, (uint8_t)sizeof(tg_real));
    tgc_put_u64(b, n);
    if (n > SIZE_MAX / sizeof(tg_real)) {
        b->oom = 1;
        return;
    }
    unsigned char *p = buf_grow(b, n * sizeof(tg_real));
    if (!p) return;
    for (size_t i = 0; i < n; i++) {
        if (sizeof(tg_real) == 4) {
            uint32_t bits;
            float f = (float)v[i];
            memcpy(&bits, &f, 4);
            le_store(p + 4 * i, bits, 4);
        } else {
            uint64_t bits;
            double d = (double)v[i];
            memcpy(&bits, &d, 8);
            le_store(p + 8 * i, bits, 8);
        }
    }
}

/* ---- the decoder ---- */
static void cur_failf(tgc_cur *c, const char *fmt, ...)
{
    if (c->err) return;
    char what[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tgc_cur_fail(c, what);
}

void tgc_cur_fail(tgc_cur *c, const char *what)
{
    if (c->err) return;
    /* while no error is set, msg holds the section's name (tgc_section puts it there) */
    char name[TGC_MAX_NAME + 1];
    snprintf(name, sizeof name, "%.32s", c->msg);
    c->err = 1;
    if (name[0]) snprintf(c->msg, sizeof c->msg, "section '%s': %s", name, what);
    else snprintf(c->msg, sizeof c->msg, "%s", what);
}

/* n bytes at the cursor, or NULL (err set) when fewer remain */
static const unsigned char *cur_take(tgc_cur *c, size_t n, const char *what)
{
    if (c->err) return NULL;
    if (c->pos > c->len || n > c->len - c->pos) {
        cur_failf(c, "%s at byte %zu runs past its end (%zu bytes)", what, c->pos, c->len);
        return NULL;
    }
    const unsigned char *p = c->p + c->pos;
    c->pos += n;
    return p;
}

static uint64_t get_le(tgc_cur *c, int n, const char *what)
{
    const unsigned char *p = cur_take(c, (size_t)n, what);
    return p ? le_load(p, n) : 0;
}

uint8_t tgc_get_u8(tgc_cur *c) { return (uint8_t)get_le(c, 1, "a byte"); }
uint32_t tgc_get_u32(tgc_cur *c) { return (uint32_t)get_le(c, 4, "a 32-bit integer"); }
uint64_t tgc_get_u64(tgc_cur *c) { return get_le(c, 8, "a 64-bit integer"); }
int64_t tgc_get_i64(tgc_cur *c) { return (int64_t)get_le(c, 8, "a 64-bit integer"); }

double tgc_get_f64(tgc_cur *c)
{
    uint64_t bits = get_le(c, 8, "a real");
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

const char *tgc_get_str(tgc_cur *c, size_t *len)
{
    *len = 0;
    uint32_t n = (uint32_t)get_le(c, 4, "a string's length");
    const unsigned char *p = cur_take(c, n, "a string");
    if (!p) return NULL;
    *len = n;
    return (const char *)p;
}

int tgc_get_reals(tgc_cur *c, tg_real *out, size_t n)
{
    size_t at = c->pos;
    uint8_t kind = (uint8_t)get_le(c, 1, "the kind of reals");
    uint64_t count = get_le(c, 8, "a count of reals");
    if (c->err) return -1;
    if (kind != 4 && kind != 8) {
        cur_failf(c, "reals at byte %zu are of kind %u, neither 4 nor 8 bytes", at, kind);
        return -1;
    }
    if (count != n) {
        cur_failf(c, "%llu reals at byte %zu where %zu are expected",
                  (unsigned long long)count, at, n);
        return -1;
    }
    if (n > (c->len - c->pos) / kind) {
        cur_failf(c, "%zu reals at byte %zu run past its end (%zu bytes)", n, at, c->len);
        return -1;
    }
    const unsigned char *p = c->p + c->pos;
    c->pos += n * kind;
    for (size_t i = 0; i < n; i++) {
        if (kind == 4) {
            uint32_t bits = (uint32_t)le_load(p + 4 * i, 4);
            float f;
            memcpy(&f, &bits, 4);
            out[i] = (tg_real)f;
        } else {
            uint64_t bits = le_load(p + 8 * i, 8);
            double d;
            memcpy(&d, &bits, 8);
            out[i] = (tg_real)d;
        }
    }
    return 0;
}

/* ---- section names: short and printable, so a message can always quote them ---- */
static int name_ok(const char *s, size_t n)
{
    if (n < 1 || n > TGC_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- the writer ---- */
typedef struct ckpt_wsec {
    char name[TGC_MAX_NAME + 1];
    tgc_buf buf;
} ckpt_wsec;

struct tgc_writer {
    ckpt_wsec *sec;
    int n, cap;
    char err[128]; /* the first failed add's reason; the commit reports it */
    tg_status err_status;
};

tgc_writer *tgc_writer_new(void)
{
    return calloc(1, sizeof(tgc_writer));
}

void tgc_writer_free(tgc_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) tgc_buf_free(&w->sec[i].buf);
    free(w->sec);
    free(w);
}

static int writer_fail(tgc_writer *w, tg_status s, const char *what, const char *name)
{
    if (!w->err[0]) {
        snprintf(w->err, sizeof w->err, "section '%.32s': %s", name, what);
        w->err_status = s;
    }
    return -1;
}

int tgc_writer_add(tgc_writer *w, const char *name, tgc_buf *payload)
{
    tgc_buf b = *payload;
    memset(payload, 0, sizeof *payload);
    int rc = 0;
    if (!name_ok(name, strlen(name)))
        rc = writer_fail(w, TG_ERR_ARG, "not a valid section name", name);
    else if (b.oom)
        rc = writer_fail(w, TG_ERR_NOMEM, "out of memory while encoding", name);
    else if (w->n >= TGC_MAX_SECTIONS)
        rc = writer_fail(w, TG_ERR_LIMIT, "more sections than the limit of 4096", name);
    for (int i = 0; !rc && i < w->n; i++)
        if (!strcmp(w->sec[i].name, name)) rc = writer_fail(w, TG_ERR_ARG, "added twice", name);
    if (!rc && w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 8;
        ckpt_wsec *s = realloc(w->sec, (size_t)cap * sizeof *s);
        if (!s) rc = writer_fail(w, TG_ERR_NOMEM, "out of memory", name);
        else {
            w->sec = s;
            w->cap = cap;
        }
    }
    if (rc) {
        tgc_buf_free(&b);
        return rc;
    }
    snprintf(w->sec[w->n].name, sizeof w->sec[w->n].name, "%s", name);
    w->sec[w->n++].buf = b;
    return 0;
}

/* The file as a sequence of pieces handed to emit (a FILE or a buffer), so that a big
 * checkpoint is written without a second copy in memory. */
typedef int (*ckpt_emit_fn)(void *to, const void *p, size_t n);

static int writer_emit(const tgc_writer *w, ckpt_emit_fn emit, void *to)
{
    uint64_t total = TGC_HEADER_LEN;
    for (int i = 0; i < w->n; i++)
        total += 2 + strlen(w->sec[i].name) + 12 + (uint64_t)w->sec[i].buf.len;
    unsigned char h[TGC_HEADER_LEN];
    memcpy(h, TGC_MAGIC, TGC_MAGIC_LEN);
    le_store(h + 8, TGC_VERSION, 4);
    le_store(h + 12, (uint64_t)w->n, 4);
    le_store(h + 16, total, 8);
    le_store(h + 24, tgc_crc32(0, h, 24), 4);
    if (emit(to, h, sizeof h)) return -1;
    for (int i = 0; i < w->n; i++) {
        const ckpt_wsec *s = &w->sec[i];
        size_t nl = strlen(s->name);
        unsigned char sh[2 + TGC_MAX_NAME + 12];
        le_store(sh, nl, 2);
        memcpy(sh + 2, s->name, nl);
        le_store(sh + 2 + nl, s->buf.len, 8);
        uint32_t crc = tgc_crc32(0, sh, 2 + nl + 8);
        crc = tgc_crc32(crc, s->buf.p, s->buf.len);
        le_store(sh + 2 + nl + 8, crc, 4);
        if (emit(to, sh, 2 + nl + 12)) return -1;
        if (s->buf.len && emit(to, s->buf.p, s->buf.len)) return -1;
    }
    return 0;
}

static int emit_file(void *to, const void *p, size_t n)
{
    return fwrite(p, 1, n, (FILE *)to) == n ? 0 : -1;
}

static int emit_buf(void *to, const void *p, size_t n)
{
    tgc_buf *b = to;
    unsigned char *at = buf_grow(b, n);
    if (!at) return -1;
    memcpy(at, p, n);
    return 0;
}

tg_status tgc_writer_commit(tgc_writer *w, const char *path, char *msg, size_t len)
{
    if (w->err[0]) {
        snprintf(msg, len, "%s: %s", path, w->err);
        return w->err_status;
    }
    tg_atomic a;
    if (tg_atomic_open(&a, path) != 0) {
        snprintf(msg, len, "%s: %s", path, strerror(errno));
        return TG_ERR_IO;
    }
    if (writer_emit(w, emit_file, a.f) != 0) {
        int e = errno;
        tg_atomic_abort(&a);
        snprintf(msg, len, "%s: %s", path, strerror(e ? e : EIO));
        return TG_ERR_IO;
    }
    if (tg_atomic_commit(&a) != 0) {
        snprintf(msg, len, "%s: %s", path, strerror(errno));
        return TG_ERR_IO;
    }
    return TG_OK;
}

tg_status tgc_writer_bytes(tgc_writer *w, unsigned char **out, size_t *out_len,
                           char *msg, size_t len)
{
    *out = NULL;
    *out_len = 0;
    if (w->err[0]) {
        snprintf(msg, len, "%s", w->err);
        return w->err_status;
    }
    tgc_buf b = {0};
    if (writer_emit(w, emit_buf, &b) != 0) {
        tgc_buf_free(&b);
        snprintf(msg, len, "out of memory");
        return TG_ERR_NOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return TG_OK;
}

/* ---- the reader ---- */
typedef struct ckpt_rsec {
    char name[TGC_MAX_NAME + 1];
    const unsigned char *p;
    size_t len;
} ckpt_rsec;

struct tgc_file {
    unsigned char *bytes; /* the whole file */
    size_t size;
    ckpt_rsec *sec;
    int n;
};

void tgc_close(tgc_file *f)
{
    if (!f) return;
    free(f->bytes);
    free(f->sec);
    free(f);
}

/* Reads a whole regular file of at most max bytes.  Never blocks on a FIFO or device:
 * they are refused by stat() before being opened, and O_NONBLOCK covers the race.
 * Not tg_file_read(): that one reads text, and its UTF-16/32 sniffing refuses binary
 * files (a section of 1.0f values has the NUL pattern of UTF-16). */
static tg_status ckpt_slurp(const char *path, size_t max, unsigned char **out, size_t *out_len,
                            char *msg, size_t len)
{
    *out = NULL;
    *out_len = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(msg, len, "%s: %s", path, strerror(errno));
        return TG_ERR_IO;
    }
    int fd = -1;
    if (S_ISREG(st.st_mode)) {
        fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            snprintf(msg, len, "%s: %s", path, strerror(errno));
            return TG_ERR_IO;
        }
        /* the path may have been swapped for a FIFO between stat and open */
        if (fstat(fd, &st) != 0) st.st_mode = 0;
    }
    if (!S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        snprintf(msg, len, "%s: is %s, not a regular file", path, tg_file_kind(st.st_mode));
        return TG_ERR_IO;
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        close(fd);
        snprintf(msg, len, "%s: larger than the limit of %zu bytes", path, max);
        return TG_ERR_LIMIT;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    unsigned char *b = malloc(cap);
    while (b) {
        if (n == cap) { /* the file grew while being read */
            if (cap > max) {
                free(b);
                close(fd);
                snprintf(msg, len, "%s: larger than the limit of %zu bytes", path, max);
                return TG_ERR_LIMIT;
            }
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            snprintf(msg, len, "%s: %s", path, strerror(e));
            return TG_ERR_IO;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!b) {
        snprintf(msg, len, "%s: out of memory reading %zu bytes", path, (size_t)st.st_size);
        return TG_ERR_NOMEM;
    }
    *out = b;
    *out_len = n;
    return TG_OK;
}

/* The file is cut (m < total bytes): walks the sections as far as they go to name the
 * one that is cut. */
static void truncation_message(const unsigned char *b, size_t m, uint64_t total, uint32_t count,
                               const char *name, char *msg, size_t len)
{
    size_t pos = TGC_HEADER_LEN;
    for (uint32_t i = 0; i < count; i++) {
        if (m - pos < 2) {
            snprintf(msg, len, "%s: truncated: the file ends at byte %zu, in section %u's header "
                     "(it should have %llu bytes)", name, m, i + 1, (unsigned long long)total);
            return;
        }
        size_t nl = (size_t)le_load(b + pos, 2);
        if (nl < 1 || nl > TGC_MAX_NAME) break;
        if (m - pos < 2 + nl + 12) {
            snprintf(msg, len, "%s: truncated: section %u's header ends at byte %zu of %zu",
                     name, i + 1, pos + 2 + nl + 12, m);
            return;
        }
        if (!name_ok((const char *)b + pos + 2, nl)) break;
        uint64_t size = le_load(b + pos + 2 + nl, 8);
        pos += 2 + nl + 12;
        if (size > m - pos) {
            snprintf(msg, len, "%s: truncated: section '%.*s' ends at byte %llu of %zu", name,
                     (int)nl, (const char *)b + pos - nl - 12, (unsigned long long)(pos + size), m);
            return;
        }
        pos += (size_t)size;
    }
    snprintf(msg, len, "%s: truncated: the file has %zu of its %llu bytes", name, m,
             (unsigned long long)total);
}

/* Verifies the whole file in b (m bytes; taken: freed on failure, kept by *out). */
static tg_status ckpt_parse(unsigned char *b, size_t m, const char *name, tgc_file **out,
                            char *msg, size_t len)
{
    tg_status st = TG_ERR_PARSE;
    tgc_file *f = NULL;
    size_t cmp = m < TGC_MAGIC_LEN ? m : TGC_MAGIC_LEN;
    if (m == 0 || memcmp(b, TGC_MAGIC, cmp) != 0) {
        snprintf(msg, len, "%s: not a tapegrad checkpoint", name);
        goto fail;
    }
    if (m < 12) {
        snprintf(msg, len, "%s: truncated: the header ends at byte %d of %zu", name,
                 TGC_HEADER_LEN, m);
        goto fail;
    }
    uint32_t version = (uint32_t)le_load(b + 8, 4);
    if (version > TGC_VERSION) {
        snprintf(msg, len, "%s: checkpoint format version %u is newer than this tapegrad reads "
                 "(%u); upgrade tapegrad", name, version, TGC_VERSION);
        goto fail;
    }
    if (version < 1) {
        snprintf(msg, len, "%s: checkpoint format version 0 does not exist (corrupted header)",
                 name);
        goto fail;
    }
    if (m < TGC_HEADER_LEN) {
        snprintf(msg, len, "%s: truncated: the header ends at byte %d of %zu", name,
                 TGC_HEADER_LEN, m);
        goto fail;
    }
    if ((uint32_t)le_load(b + 24, 4) != tgc_crc32(0, b, 24)) {
        snprintf(msg, len, "%s: the header is corrupted (checksum mismatch)", name);
        goto fail;
    }
    uint32_t count = (uint32_t)le_load(b + 12, 4);
    uint64_t total = le_load(b + 16, 8);
    if (count > TGC_MAX_SECTIONS) {
        snprintf(msg, len, "%s: %u sections, more than the limit of %d", name, count,
                 TGC_MAX_SECTIONS);
        st = TG_ERR_LIMIT;
        goto fail;
    }
    if (total < TGC_HEADER_LEN) {
        snprintf(msg, len, "%s: the header is corrupted (a length of %llu bytes)", name,
                 (unsigned long long)total);
        goto fail;
    }
    if (total > m) {
        truncation_message(b, m, total, count, name, msg, len);
        goto fail;
    }
    if (total < m) {
        snprintf(msg, len, "%s: %llu unexpected bytes after the end of the checkpoint (byte %llu)",
                 name, (unsigned long long)(m - total), (unsigned long long)total);
        goto fail;
    }
    st = TG_ERR_NOMEM;
    if (!(f = calloc(1, sizeof *f)) ||
        (count && !(f->sec = calloc(count, sizeof *f->sec)))) {
        snprintf(msg, len, "%s: out of memory", name);
        goto fail;
    }
    st = TG_ERR_PARSE;
    /* the length matches the header's, so from here on a section that does not fit is
     * corrupted, not cut */
    size_t pos = TGC_HEADER_LEN;
    for (uint32_t i = 0; i < count; i++) {
        size_t nl = m - pos >= 2 ? (size_t)le_load(b + pos, 2) : 0;
        if (m - pos < 2 || nl < 1 || nl > TGC_MAX_NAME || m - pos - 2 < nl + 12 ||
            !name_ok((const char *)b + pos + 2, nl)) {
            snprintf(msg, len, "%s: section %u is corrupted (its header at byte %zu is not valid)",
                     name, i + 1, pos);
            goto fail;
        }
        const char *sname = (const char *)b + pos + 2;
        uint64_t size = le_load(b + pos + 2 + nl, 8);
        uint32_t want = (uint32_t)le_load(b + pos + 2 + nl + 8, 4);
        size_t body = pos + 2 + nl + 12;
        if (size > m - body) {
            snprintf(msg, len, "%s: section '%.*s' is corrupted (its size %llu runs past the "
                     "end of the file)", name, (int)nl, sname, (unsigned long long)size);
            goto fail;
        }
        uint32_t crc = tgc_crc32(0, b + pos, 2 + nl + 8);
        crc = tgc_crc32(crc, b + body, (size_t)size);
        if (crc != want) {
            snprintf(msg, len, "%s: section '%.*s' is corrupted (checksum mismatch)", name,
                     (int)nl, sname);
            goto fail;
        }
        for (int k = 0; k < f->n; k++)
            if (strlen(f->sec[k].name) == nl && !memcmp(f->sec[k].name, sname, nl)) {
                snprintf(msg, len, "%s: section '%.*s' appears twice", name, (int)nl, sname);
                goto fail;
            }
        ckpt_rsec *s = &f->sec[f->n++];
        memcpy(s->name, sname, nl);
        s->name[nl] = 0;
        s->p = b + body;
        s->len = (size_t)size;
        pos = body + (size_t)size;
    }
    if (pos != m) {
        snprintf(msg, len, "%s: the checkpoint is corrupted (%zu bytes after its last section)",
                 name, m - pos);
        goto fail;
    }
    f->bytes = b;
    f->size = m;
    *out = f;
    return TG_OK;
fail:
    if (f) {
        free(f->sec);
        free(f);
    }
    free(b);
    return st;
}

tg_status tgc_open(const char *path, tgc_file **out, char *msg, size_t len)
{
    *out = NULL;
    unsigned char *b;
    size_t m;
    tg_status st = ckpt_slurp(path, TGC_MAX_FILE, &b, &m, msg, len);
    if (st != TG_OK) return st;
    return ckpt_parse(b, m, path, out, msg, len);
}

tg_status tgc_open_mem(const void *data, size_t size, const char *name, tgc_file **out,
                       char *msg, size_t len)
{
    *out = NULL;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        snprintf(msg, len, "%s: out of memory", name);
        return TG_ERR_NOMEM;
    }
    if (size) memcpy(b, data, size);
    return ckpt_parse(b, size, name, out, msg, len);
}

int tgc_is_checkpoint(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    unsigned char m[TGC_MAGIC_LEN];
    size_t n = 0;
    while (n < sizeof m) {
        ssize_t r = read(fd, m + n, sizeof m - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    /* a file cut inside the magic is still a (truncated) checkpoint: tgc_open says so */
    return n > 0 && !memcmp(m, TGC_MAGIC, n);
}

int tgc_section(const tgc_file *f, const char *name, tgc_cur *cur)
{
    memset(cur, 0, sizeof *cur);
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->sec[i].name, name)) {
            cur->p = f->sec[i].p;
            cur->len = f->sec[i].len;
            snprintf(cur->msg, sizeof cur->msg, "%.32s", name);
            return 1;
        }
    cur->err = 1; /* reads from it return 0 and keep this message */
    snprintf(cur->msg, sizeof cur->msg, "section '%.32s' is missing", name);
    return 0;
}

int tgc_section_count(const tgc_file *f) { return f->n; }

const char *tgc_section_name(const tgc_file *f, int i)
{
    return i >= 0 && i < f->n ? f->sec[i].name : NULL;
}
