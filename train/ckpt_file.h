/* ckpt_file.h — the one-file checkpoint CONTAINER: named sections of bytes, each with a
 * CRC-32, in a binary file that every host writes and reads alike.  It knows nothing of
 * training: the trainer (train/) fills the sections and range-checks what it reads back.
 * Internal header (not installed).
 *
 * Layout, version 1 (every integer little-endian on every host):
 *   magic     8 bytes  89 'T' 'G' 'C' 0D 0A 1A 0A   (PNG's trick: the high byte catches a
 *                      7-bit channel, CR LF a newline conversion, 1A a DOS type, the last
 *                      LF the reverse conversion)
 *   version   u32      1
 *   count     u32      number of sections (at most TGC_MAX_SECTIONS)
 *   length    u64      the whole file's length in bytes (so a cut file is told apart from a
 *                      corrupted one)
 *   crc       u32      CRC-32 of the 24 bytes above
 *   then count sections, each:
 *   name_len  u16      1..TGC_MAX_NAME
 *   name      bytes    [A-Za-z0-9_.-]
 *   size      u64      payload length
 *   crc       u32      CRC-32 (IEEE 802.3, as zlib's crc32) of name_len, name, size and the
 *                      payload: a flipped byte anywhere in a section, its name included,
 *                      is caught
 *   payload   size bytes
 * Reals are stored as IEEE-754 binary32 or binary64 with the kind recorded beside them: a
 * float build reads a double checkpoint by rounding, a double build reads a float one
 * exactly. */
#ifndef TG_CKPT_FILE_H
#define TG_CKPT_FILE_H

#include "tapegrad.h"
#include <stddef.h>
#include <stdint.h>

#define TGC_MAGIC "\x89TGC\r\n\x1a\n"
#define TGC_MAGIC_LEN 8
#define TGC_VERSION 1u
#define TGC_HEADER_LEN 28
#define TGC_MAX_NAME 32
#define TGC_MAX_SECTIONS 4096
/* the largest checkpoint tgc_open reads (it reads the whole file into memory) */
#define TGC_MAX_FILE (SIZE_MAX > 0xffffffffu ? (size_t)1 << 30 << 6 : (size_t)1 << 30)

/* A growable little-endian encoder.  oom is set on an allocation failure; every later
 * write is then a no-op, so a caller checks once (tgc_writer_add refuses such a buffer).
 * Start from {0}; free with tgc_buf_free (or hand it to tgc_writer_add, which takes it). */
typedef struct tgc_buf { unsigned char *p; size_t len, cap; int oom; } tgc_buf;
void tgc_buf_free(tgc_buf *b);
void tgc_put_u8(tgc_buf *b, uint8_t v);
void tgc_put_u32(tgc_buf *b, uint32_t v);
void tgc_put_u64(tgc_buf *b, uint64_t v);
void tgc_put_i64(tgc_buf *b, int64_t v);
void tgc_put_f64(tgc_buf *b, double v);                       /* exact bits */
void tgc_put_str(tgc_buf *b, const char *s, size_t len);      /* u32 length + bytes */
void tgc_put_reals(tgc_buf *b, const tg_real *v, size_t n);   /* u8 kind (4|8) + u64 n + values */

/* A bounds-checked decoder over one section: a read past the end sets err (the first
 * failure's description stays in msg, naming the section) and returns 0; callers check
 * err once at the end.  The cursor borrows the file's bytes: valid until tgc_close(). */
typedef struct tgc_cur { const unsigned char *p; size_t len, pos; int err; char msg[160]; } tgc_cur;
uint8_t tgc_get_u8(tgc_cur *c);
uint32_t tgc_get_u32(tgc_cur *c);
uint64_t tgc_get_u64(tgc_cur *c);
int64_t tgc_get_i64(tgc_cur *c);
double tgc_get_f64(tgc_cur *c);
/* points into the file (valid until tgc_close); not NUL-terminated; NULL and *len 0 on error */
const char *tgc_get_str(tgc_cur *c, size_t *len);
/* Reads n reals written by tgc_put_reals into out, converting the stored kind to tg_real.
 * Returns 0, or -1 (and sets err) when the stored kind is not 4 or 8, the stored count is
 * not n, or the section ends early; out is then untouched. */
int tgc_get_reals(tgc_cur *c, tg_real *out, size_t n);
/* Sets err with a message ("section 'NAME': WHAT") unless an error is already set: for a
 * caller's own range checks, so that one message reports the first problem. */
void tgc_cur_fail(tgc_cur *c, const char *what);

/* Collects sections, then writes the whole file atomically (core/atomic.c: a temporary
 * file beside the target, fsync, rename, fsync the directory). */
typedef struct tgc_writer tgc_writer;
tgc_writer *tgc_writer_new(void);                 /* NULL when out of memory */
/* Appends a section; takes the payload (freed here, also on failure; *payload is reset
 * to {0}).  Returns 0, or -1 for a bad or duplicate name, too many sections, a payload
 * that ran out of memory, or no memory; the commit then fails with the reason. */
int tgc_writer_add(tgc_writer *w, const char *name, tgc_buf *payload);
/* Writes path atomically: on failure the previous file at path is untouched and msg
 * says why ("PATH: No space left on device").  The writer stays the caller's. */
tg_status tgc_writer_commit(tgc_writer *w, const char *path, char *msg, size_t len);
/* The encoded file in memory (for tests and fuzz seeds): a malloc'd copy in *out
 * (free with free()), or TG_ERR_NOMEM / the add's failure with msg. */
tg_status tgc_writer_bytes(tgc_writer *w, unsigned char **out, size_t *out_len,
                           char *msg, size_t len);
void tgc_writer_free(tgc_writer *w);

/* Opens and verifies a whole checkpoint (read into memory): magic, version (a newer one:
 * "PATH: checkpoint format version N is newer than this tapegrad reads (1); upgrade
 * tapegrad"), a foreign file ("PATH: not a tapegrad checkpoint"), truncation
 * ("PATH: truncated: section 'params' ends at byte N of M"), a CRC mismatch
 * ("PATH: section 'optim' is corrupted (checksum mismatch)"), duplicate sections.
 * On success *out owns the bytes until tgc_close(); on failure *out is NULL and msg
 * says why (TG_ERR_PARSE, TG_ERR_IO, TG_ERR_LIMIT or TG_ERR_NOMEM). */
typedef struct tgc_file tgc_file;
tg_status tgc_open(const char *path, tgc_file **out, char *msg, size_t len);
/* The same over bytes already in memory (copied); name stands for PATH in messages. */
tg_status tgc_open_mem(const void *data, size_t size, const char *name, tgc_file **out,
                       char *msg, size_t len);
/* 1 if path is a regular file that starts with the magic (or is a non-empty beginning of
 * it: a cut checkpoint, which tgc_open refuses as truncated), else 0.  Never blocks: a
 * FIFO or device is 0 without being opened.  For "a MODEL argument may be a checkpoint":
 * no text file starts with the byte 0x89, which is not UTF-8. */
int tgc_is_checkpoint(const char *path);
/* 1 and a cursor over the payload if the section is present, else 0 and a cursor with
 * err set and msg "section 'NAME' is missing" (reads from it return 0). */
int tgc_section(const tgc_file *f, const char *name, tgc_cur *cur);
int tgc_section_count(const tgc_file *f);
const char *tgc_section_name(const tgc_file *f, int i);  /* valid until tgc_close */
void tgc_close(tgc_file *f);

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320, as zlib's crc32()): start with crc 0 and
 * feed the bytes in pieces. */
uint32_t tgc_crc32(uint32_t crc, const void *data, size_t n);

#endif
