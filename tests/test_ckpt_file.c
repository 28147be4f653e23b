/* test_ckpt_file.c — the checkpoint container (train/ckpt_file.c): a round trip through a
 * file; the byte layout against bytes written by hand (a big-endian host cannot be tested
 * here, so the layout is pinned instead); every cut of a small file and every change of
 * every single byte refused with its message; foreign files, newer versions, bad section
 * names and failed writes; the decoder's bounds. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ckpt_file.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tg-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(ckpt_file, .init = setup, .fini = teardown, .timeout = 60);

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_bytes(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static const tg_real params_v[3] = {0.5f, -1.25f, 3.0f};
static const tg_real optim_v[2] = {1e-3f, 2.0f};

/* a small checkpoint of three sections, in memory (free with free()) */
static unsigned char *small_file(size_t *n)
{
    tgc_writer *w = tgc_writer_new();
    cr_assert_not_null(w);
    tgc_buf b = {0};
    tgc_put_u32(&b, 7);
    tgc_put_str(&b, "elman", 5);
    cr_assert_eq(tgc_writer_add(w, "meta", &b), 0);
    cr_assert_null(b.p, "the writer takes the payload");
    tgc_put_reals(&b, params_v, 3);
    cr_assert_eq(tgc_writer_add(w, "params", &b), 0);
    tgc_put_reals(&b, optim_v, 2);
    cr_assert_eq(tgc_writer_add(w, "optim", &b), 0);
    unsigned char *out;
    char msg[256];
    cr_assert_eq(tgc_writer_bytes(w, &out, n, msg, sizeof msg), TG_OK, "%s", msg);
    tgc_writer_free(w);
    return out;
}

Test(ckpt_file, crc32_is_zlibs)
{
    cr_assert_eq(tgc_crc32(0, "123456789", 9), 0xcbf43926u);
    /* fed in pieces, the same */
    cr_assert_eq(tgc_crc32(tgc_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
    cr_assert_eq(tgc_crc32(0, "", 0), 0u);
}

Test(ckpt_file, round_trip_through_a_file)
{
    tgc_writer *w = tgc_writer_new();
    tgc_buf b = {0};
    tgc_put_u8(&b, 200);
    tgc_put_u32(&b, 0xdeadbeefu);
    tgc_put_u64(&b, 0x0123456789abcdefull);
    tgc_put_i64(&b, -1234567890123ll);
    tgc_put_f64(&b, -0.1);
    tgc_put_str(&b, "h\0i", 3);
    tgc_put_str(&b, "", 0);
    cr_assert_eq(tgc_writer_add(w, "meta", &b), 0);
    tg_real big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (tg_real)(i * 0.37 - 100);
    tgc_put_reals(&b, big, 1000);
    cr_assert_eq(tgc_writer_add(w, "params", &b), 0);
    cr_assert_eq(tgc_writer_add(w, "empty", &b), 0, "an empty section is allowed");
    char msg[256];
    cr_assert_eq(tgc_writer_commit(w, path("a.tgckpt"), msg, sizeof msg), TG_OK, "%s", msg);
    tgc_writer_free(w);

    cr_assert_eq(tgc_is_checkpoint(path("a.tgckpt")), 1);
    tgc_file *f;
    cr_assert_eq(tgc_open(path("a.tgckpt"), &f, msg, sizeof msg), TG_OK, "%s", msg);
    cr_assert_eq(tgc_section_count(f), 3);
    cr_assert_str_eq(tgc_section_name(f, 0), "meta");
    cr_assert_str_eq(tgc_section_name(f, 2), "empty");
    cr_assert_null(tgc_section_name(f, 3));
    tgc_cur c;
    cr_assert_eq(tgc_section(f, "meta", &c), 1);
    cr_assert_eq(tgc_get_u8(&c), 200);
    cr_assert_eq(tgc_get_u32(&c), 0xdeadbeefu);
    cr_assert_eq(tgc_get_u64(&c), 0x0123456789abcdefull);
    cr_assert_eq(tgc_get_i64(&c), -1234567890123ll);
    cr_assert_eq(tgc_get_f64(&c), -0.1);
    size_t n;
    const char *s = tgc_get_str(&c, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(s, "h\0i", 3), 0);
    tgc_get_str(&c, &n);
    cr_assert_eq(n, 0);
    cr_assert_eq(c.err, 0, "%s", c.msg);
    cr_assert_eq(c.pos, c.len, "everything read");
    cr_assert_eq(tgc_section(f, "params", &c), 1);
    tg_real back[1000];
    cr_assert_eq(tgc_get_reals(&c, back, 1000), 0, "%s", c.msg);
    cr_assert_eq(memcmp(back, big, sizeof big), 0, "reals come back bit for bit");
    cr_assert_eq(tgc_section(f, "empty", &c), 1);
    cr_assert_eq(c.len, 0);
    cr_assert_eq(tgc_section(f, "optim", &c), 0);
    cr_assert_eq(c.err, 1);
    cr_assert_str_eq(c.msg, "section 'optim' is missing");
    cr_assert_eq(tgc_get_u32(&c), 0, "a read from a missing section gives 0");
    cr_assert_str_eq(c.msg, "section 'optim' is missing", "and keeps the first message");
    tgc_close(f);

    /* rewritten in place: the new file replaces the old one, no temporary stays */
    w = tgc_writer_new();
    tgc_put_u32(&b, 1);
    tgc_writer_add(w, "meta", &b);
    cr_assert_eq(tgc_writer_commit(w, path("a.tgckpt"), msg, sizeof msg), TG_OK, "%s", msg);
    tgc_writer_free(w);
    cr_assert_eq(tgc_open(path("a.tgckpt"), &f, msg, sizeof msg), TG_OK, "%s", msg);
    cr_assert_eq(tgc_section_count(f), 1);
    tgc_close(f);
    char cmd[256], listing[256] = "";
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    FILE *p = popen(cmd, "r");
    size_t got = fread(listing, 1, sizeof listing - 1, p);
    listing[got] = 0;
    pclose(p);
    cr_assert_str_eq(listing, "a.tgckpt\n");
}

/* The layout of ckpt_file.h, byte for byte: header (magic, version 1, two sections, the
 * length 96, the header's CRC), then "meta" and the empty "e", each with its CRC-32
 * (values from Python's zlib.crc32 over the same bytes). */
Test(ckpt_file, byte_layout_is_little_endian_as_documented)
{
    static const unsigned char want[96] = {
        0x89, 0x54, 0x47, 0x43, 0x0d, 0x0a, 0x1a, 0x0a, 0x01, 0x00, 0x00, 0x00,
        0x02, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0b, 0x7e, 0x2a, 0xce, 0x04, 0x00, 0x6d, 0x65, 0x74, 0x61, 0x23, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xbe, 0x6a, 0x32, 0x85, 0x07, 0x04,
        0x03, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0xfe,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xf0, 0x3f, 0x02, 0x00, 0x00, 0x00, 0x68, 0x69, 0x01, 0x00, 0x65,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0xaa, 0xfd, 0xbc,
    };
    tgc_writer *w = tgc_writer_new();
    tgc_buf b = {0};
    tgc_put_u8(&b, 7);
    tgc_put_u32(&b, 0x01020304u);
    tgc_put_u64(&b, 0x0102030405060708ull);
    tgc_put_i64(&b, -2);
    tgc_put_f64(&b, 1.0);
    tgc_put_str(&b, "hi", 2);
    tgc_writer_add(w, "meta", &b);
    tgc_writer_add(w, "e", &b);
    unsigned char *got;
    size_t n;
    char msg[256];
    cr_assert_eq(tgc_writer_bytes(w, &got, &n, msg, sizeof msg), TG_OK, "%s", msg);
    cr_assert_eq(n, sizeof want);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "byte %zu: 0x%02x, want 0x%02x", i, got[i], want[i]);
    free(got);
    tgc_writer_free(w);

    /* and the hand-written bytes read back */
    tgc_file *f;
    cr_assert_eq(tgc_open_mem(want, sizeof want, "hand", &f, msg, sizeof msg), TG_OK, "%s", msg);
    tgc_cur c;
    cr_assert_eq(tgc_section(f, "meta", &c), 1);
    cr_assert_eq(tgc_get_u8(&c), 7);
    cr_assert_eq(tgc_get_u32(&c), 0x01020304u);
    cr_assert_eq(tgc_get_u64(&c), 0x0102030405060708ull);
    cr_assert_eq(tgc_get_i64(&c), -2);
    cr_assert_eq(tgc_get_f64(&c), 1.0);
    cr_assert_eq(c.err, 0);
    tgc_close(f);
}

/* Reals: the kind byte, a u64 count, then binary32 or binary64 little-endian. */
Test(ckpt_file, reals_layout_and_the_other_kind)
{
    tg_real v[2] = {1.5f, -2.0f};
    tgc_buf b = {0};
    tgc_put_reals(&b, v, 2);
    if (sizeof(tg_real) == 4) {
        static const unsigned char want[17] = {4, 2, 0, 0, 0, 0, 0, 0, 0,
                                               0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0};
        cr_assert_eq(b.len, sizeof want);
        cr_assert_eq(memcmp(b.p, want, sizeof want), 0);
    } else {
        static const unsigned char want[25] = {8, 2, 0, 0, 0, 0, 0, 0, 0,
                                               0, 0, 0, 0, 0, 0, 0xf8, 0x3f,
                                               0, 0, 0, 0, 0, 0, 0x00, 0xc0};
        cr_assert_eq(b.len, sizeof want);
        cr_assert_eq(memcmp(b.p, want, sizeof want), 0);
    }
    tgc_buf_free(&b);

    /* written by the other build: binary64 0.1 and binary32 0.1f */
    static const unsigned char d[17] = {8, 1, 0, 0, 0, 0, 0, 0, 0,
                                        0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f};
    static const unsigned char s[13] = {4, 1, 0, 0, 0, 0, 0, 0, 0, 0xcd, 0xcc, 0xcc, 0x3d};
    tg_real x = 0;
    tgc_cur c = {.p = d, .len = sizeof d};
    cr_assert_eq(tgc_get_reals(&c, &x, 1), 0, "%s", c.msg);
    cr_assert_eq(x, (tg_real)0.1, "a double checkpoint is read by rounding");
    c = (tgc_cur){.p = s, .len = sizeof s};
    cr_assert_eq(tgc_get_reals(&c, &x, 1), 0, "%s", c.msg);
    cr_assert_eq(x, (tg_real)0.1f, "a float checkpoint is read exactly");
}

Test(ckpt_file, decoder_stops_at_the_sections_end)
{
    unsigned char tiny[6] = {1, 2, 3, 4, 5, 6};
    tgc_file *f;
    tgc_writer *w = tgc_writer_new();
    tgc_buf b = {0};
    tgc_put_u32(&b, 10);  /* a string that claims 10 bytes, 2 present */
    tgc_put_u8(&b, 'a');
    tgc_put_u8(&b, 'b');
    tgc_writer_add(w, "meta", &b);
    unsigned char *bytes;
    size_t n;
    char msg[256];
    cr_assert_eq(tgc_writer_bytes(w, &bytes, &n, msg, sizeof msg), TG_OK);
    tgc_writer_free(w);
    cr_assert_eq(tgc_open_mem(bytes, n, "m", &f, msg, sizeof msg), TG_OK, "%s", msg);
    free(bytes);
    tgc_cur c;
    tgc_section(f, "meta", &c);
    size_t len = 99;
    cr_assert_null(tgc_get_str(&c, &len));
    cr_assert_eq(len, 0);
    cr_assert_eq(c.err, 1);
    cr_assert_str_eq(c.msg, "section 'meta': a string at byte 4 runs past its end (6 bytes)");
    cr_assert_eq(tgc_get_u64(&c), 0);
    cr_assert_str_eq(c.msg, "section 'meta': a string at byte 4 runs past its end (6 bytes)",
                     "the first failure's message stays");
    tgc_close(f);

    c = (tgc_cur){.p = tiny, .len = sizeof tiny};
    cr_assert_eq(tgc_get_u32(&c), 0x04030201u);
    cr_assert_eq(tgc_get_u32(&c), 0);
    cr_assert_str_eq(c.msg, "a 32-bit integer at byte 4 runs past its end (6 bytes)");

    /* reals: another count, a bad kind, a count past the end; out untouched */
    tg_real v[3] = {1, 2, 3}, out[3] = {9, 9, 9};
    tgc_put_reals(&b, v, 3);
    c = (tgc_cur){.p = b.p, .len = b.len};
    cr_assert_eq(tgc_get_reals(&c, out, 2), -1);
    cr_assert_str_eq(c.msg, "3 reals at byte 0 where 2 are expected");
    cr_assert_eq(out[0], 9);
    b.p[0] = 2;
    c = (tgc_cur){.p = b.p, .len = b.len};
    cr_assert_eq(tgc_get_reals(&c, out, 3), -1);
    cr_assert_str_eq(c.msg, "reals at byte 0 are of kind 2, neither 4 nor 8 bytes");
    b.p[0] = 8 + 4 - sizeof(tg_real);  /* the other kind: twice or half the bytes */
    c = (tgc_cur){.p = b.p, .len = b.len};
    if (sizeof(tg_real) == 4) {
        cr_assert_eq(tgc_get_reals(&c, out, 3), -1);
        cr_assert_str_eq(c.msg, "3 reals at byte 0 run past its end (21 bytes)");
    }
    cr_assert_eq(out[2], 9);
    tgc_buf_free(&b);
}

/* Every cut of a small checkpoint is refused as truncated, naming where. */
Test(ckpt_file, every_truncation_is_refused)
{
    size_t n;
    unsigned char *full = small_file(&n);
    char msg[512], want[512];
    const char *p = path("cut.tgckpt");
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(p, full, cut);
        cr_assert_eq(tgc_is_checkpoint(p), cut > 0, "cut at %zu", cut);
        tgc_file *f = (tgc_file *)1;
        tg_status st = tgc_open(p, &f, msg, sizeof msg);
        cr_assert_eq(st, TG_ERR_PARSE, "cut at %zu of %zu: accepted", cut, n);
        cr_assert_null(f);
        if (cut == 0) {
            snprintf(want, sizeof want, "%s: not a tapegrad checkpoint", p);
            cr_assert_str_eq(msg, want);
            continue;
        }
        snprintf(want, sizeof want, "%s: truncated: ", p);
        cr_assert_eq(strncmp(msg, want, strlen(want)), 0, "cut at %zu: %s", cut, msg);
    }
    /* the messages at a few cuts, exactly: in the header, in a section's header, in the
     * 'params' payload ('meta' ends at 28 + 18 + 13 = 59, 'params' has a 20-byte header
     * and 9 + 3 * sizeof(tg_real) bytes) */
    size_t params_end = 28 + (2 + 4 + 12 + 13) + (2 + 6 + 12) + 9 + 3 * sizeof(tg_real);
    struct { size_t cut; const char *msg; } cases[] = {
        {5, "truncated: the header ends at byte 28 of 5"},
        {20, "truncated: the header ends at byte 28 of 20"},
        {29, "truncated: the file ends at byte 29, in section 1's header (it should have %zu bytes)"},
        {61, "truncated: section 2's header ends at byte 79 of 61"},
        {80, "truncated: section 'params' ends at byte %zu of 80"},
        {params_end - 1, "truncated: section 'params' ends at byte %zu of %zu"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_bytes(p, full, cases[k].cut);
        tgc_file *f;
        tgc_open(p, &f, msg, sizeof msg);
        char tail[256];
        if (k == 2) snprintf(tail, sizeof tail, cases[k].msg, n);
        else if (k == 4) snprintf(tail, sizeof tail, cases[k].msg, params_end);
        else if (k == 5) snprintf(tail, sizeof tail, cases[k].msg, params_end, params_end - 1);
        else snprintf(tail, sizeof tail, "%s", cases[k].msg);
        snprintf(want, sizeof want, "%s: %s", p, tail);
        cr_assert_str_eq(msg, want);
    }
    /* and the whole file opens */
    write_bytes(p, full, n);
    tgc_file *f;
    cr_assert_eq(tgc_open(p, &f, msg, sizeof msg), TG_OK, "%s", msg);
    tgc_close(f);
    free(full);
}

static int starts_with(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* Every byte of a small checkpoint changed to each of its 255 other values: refused,
 * with a message that says what is wrong. */
Test(ckpt_file, every_single_byte_corruption_is_refused)
{
    size_t n;
    unsigned char *full = small_file(&n);
    unsigned char *bad = malloc(n);
    char msg[512];
    for (size_t i = 0; i < n; i++)
        for (int x = 1; x < 256; x++) {
            memcpy(bad, full, n);
            bad[i] ^= (unsigned char)x;
            tgc_file *f = (tgc_file *)1;
            tg_status st = tgc_open_mem(bad, n, "c", &f, msg, sizeof msg);
            cr_assert_neq(st, TG_OK, "byte %zu ^ 0x%02x: accepted", i, x);
            cr_assert_null(f);
            int known = starts_with(msg, "c: not a tapegrad checkpoint") ||
                        starts_with(msg, "c: checkpoint format version ") ||
                        starts_with(msg, "c: the header is corrupted (checksum mismatch)") ||
                        (strstr(msg, "c: section ") == msg && strstr(msg, " is corrupted ("));
            cr_assert(known, "byte %zu ^ 0x%02x: %s", i, x, msg);
            if (i >= 8 + 4)
                cr_assert(strstr(msg, "corrupted"), "byte %zu ^ 0x%02x: %s", i, x, msg);
        }
    /* a changed payload byte names its section; a changed name is caught too */
    memcpy(bad, full, n);
    bad[n - 1] ^= 1;
    tgc_file *f;
    tgc_open_mem(bad, n, "c", &f, msg, sizeof msg);
    cr_assert_str_eq(msg, "c: section 'optim' is corrupted (checksum mismatch)");
    memcpy(bad, full, n);
    bad[28 + 2] = 'n';  /* 'meta' -> 'neta' */
    tgc_open_mem(bad, n, "c", &f, msg, sizeof msg);
    cr_assert_str_eq(msg, "c: section 'neta' is corrupted (checksum mismatch)");
    free(bad);
    free(full);
}

/* Binary is not text: a section of 1.0f values has the NUL pattern of UTF-16 text, and
 * must open all the same (a text reader's encoding sniffing would refuse it). */
Test(ckpt_file, a_file_with_the_nul_pattern_of_utf16_opens)
{
    tgc_writer *w = tgc_writer_new();
    tgc_buf b = {0};
    tgc_put_u8(&b, 4);
    tgc_put_u64(&b, 100);
    for (int i = 0; i < 100; i++) tgc_put_u32(&b, 0x3f800000u);
    tgc_writer_add(w, "x", &b);
    char msg[512];
    cr_assert_eq(tgc_writer_commit(w, path("ones"), msg, sizeof msg), TG_OK, "%s", msg);
    tgc_writer_free(w);
    tgc_file *f;
    cr_assert_eq(tgc_open(path("ones"), &f, msg, sizeof msg), TG_OK, "%s", msg);
    tgc_cur c;
    tgc_section(f, "x", &c);
    tg_real v[100];
    cr_assert_eq(tgc_get_reals(&c, v, 100), 0, "%s", c.msg);
    cr_assert_eq(v[99], 1);
    tgc_close(f);
}

Test(ckpt_file, foreign_files_are_not_checkpoints)
{
    char msg[512], want[512];
    tgc_file *f;
    const char *yaml = "U: [[0.1, 0.2], [0.3, 0.4]]\nW: [[0.5]]\n";
    write_bytes(path("params.yaml"), yaml, strlen(yaml));
    write_bytes(path("empty"), "", 0);
    unsigned char rnd[4096];
    unsigned long long s = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        rnd[i] = (unsigned char)(s >> 56);
    }
    write_bytes(path("random"), rnd, sizeof rnd);
    /* the magic through a text-mode conversion (CR LF -> LF) */
    unsigned char *full;
    size_t n;
    full = small_file(&n);
    unsigned char *mangled = malloc(n);
    memcpy(mangled, full, 4);
    memcpy(mangled + 4, full + 5, n - 5);
    write_bytes(path("mangled"), mangled, n - 1);
    free(mangled);
    free(full);
    const char *names[] = {"params.yaml", "empty", "random", "mangled"};
    for (int k = 0; k < 4; k++) {
        const char *p = path(names[k]);
        cr_assert_eq(tgc_open(p, &f, msg, sizeof msg), TG_ERR_PARSE, "%s", names[k]);
        snprintf(want, sizeof want, "%s: not a tapegrad checkpoint", p);
        cr_assert_str_eq(msg, want);
        cr_assert_eq(tgc_is_checkpoint(p), 0);
    }
    /* not a file at all: refused without blocking on a FIFO */
    const char *fifo = path("fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(tgc_is_checkpoint(fifo), 0);
    cr_assert_eq(tgc_open(fifo, &f, msg, sizeof msg), TG_ERR_IO);
    snprintf(want, sizeof want, "%s: is a FIFO, not a regular file", fifo);
    cr_assert_str_eq(msg, want);
    cr_assert_eq(tgc_open(dir, &f, msg, sizeof msg), TG_ERR_IO);
    snprintf(want, sizeof want, "%s: is a directory, not a regular file", dir);
    cr_assert_str_eq(msg, want);
    cr_assert_eq(tgc_open(path("missing"), &f, msg, sizeof msg), TG_ERR_IO);
    snprintf(want, sizeof want, "%s: No such file or directory", path("missing"));
    cr_assert_str_eq(msg, want);
    cr_assert_eq(tgc_is_checkpoint(path("missing")), 0);
}

Test(ckpt_file, a_newer_version_asks_for_an_upgrade)
{
    /* version 2 with a valid header CRC, no sections: what a future tapegrad writes */
    static const unsigned char v2[28] = {
        0x89, 0x54, 0x47, 0x43, 0x0d, 0x0a, 0x1a, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb9, 0xd0, 0x26, 0xf0,
    };
    char msg[512], want[512];
    tgc_file *f;
    const char *p = path("v2.tgckpt");
    write_bytes(p, v2, sizeof v2);
    cr_assert_eq(tgc_is_checkpoint(p), 1, "still a checkpoint, just a newer one");
    cr_assert_eq(tgc_open(p, &f, msg, sizeof msg), TG_ERR_PARSE);
    snprintf(want, sizeof want, "%s: checkpoint format version 2 is newer than this tapegrad "
             "reads (1); upgrade tapegrad", p);
    cr_assert_str_eq(msg, want);
    /* a newer version's header may be laid out differently: only the version is read */
    write_bytes(p, v2, 12);
    cr_assert_eq(tgc_open(p, &f, msg, sizeof msg), TG_ERR_PARSE);
    cr_assert_str_eq(msg, want);
}

Test(ckpt_file, structural_problems_of_a_well_checksummed_file)
{
    /* a file whose CRCs are right but whose sections repeat or overflow: only a writer
     * other than tgc_writer makes one */
    size_t n;
    unsigned char *full = small_file(&n);
    char msg[512];
    tgc_file *f;
    /* the 'optim' section twice, with the header's count, length and CRC fixed */
    unsigned char *dup = malloc(2 * n);
    memcpy(dup, full, n);
    size_t optim_at = n - (2 + 5 + 12 + 9 + 2 * sizeof(tg_real));
    size_t optim_len = n - optim_at;
    memcpy(dup + n, full + optim_at, optim_len);
    size_t m = n + optim_len;
    dup[12] = 4;
    dup[16] = (unsigned char)m;
    dup[17] = (unsigned char)(m >> 8);
    uint32_t crc = tgc_crc32(0, dup, 24);
    for (int i = 0; i < 4; i++) dup[24 + i] = (unsigned char)(crc >> (8 * i));
    cr_assert_eq(tgc_open_mem(dup, m, "d", &f, msg, sizeof msg), TG_ERR_PARSE);
    cr_assert_str_eq(msg, "d: section 'optim' appears twice");
    /* bytes after the end the header gives */
    memcpy(dup, full, n);
    memset(dup + n, 0, 3);
    cr_assert_eq(tgc_open_mem(dup, n + 3, "d", &f, msg, sizeof msg), TG_ERR_PARSE);
    char want[256];
    snprintf(want, sizeof want, "d: 3 unexpected bytes after the end of the checkpoint (byte %zu)", n);
    cr_assert_str_eq(msg, want);
    free(dup);
    free(full);
}

Test(ckpt_file, writer_refuses_bad_sections_and_failed_writes_keep_the_old_file)
{
    char msg[512], want[512];
    tgc_writer *w = tgc_writer_new();
    tgc_buf b = {0};
    tgc_put_u32(&b, 1);
    cr_assert_eq(tgc_writer_add(w, "bad name", &b), -1);
    cr_assert_null(b.p, "taken even when refused");
    cr_assert_eq(tgc_writer_commit(w, path("x"), msg, sizeof msg), TG_ERR_ARG);
    snprintf(want, sizeof want, "%s: section 'bad name': not a valid section name", path("x"));
    cr_assert_str_eq(msg, want);
    cr_assert_eq(access(path("x"), F_OK), -1, "nothing written");
    tgc_writer_free(w);

    w = tgc_writer_new();
    tgc_writer_add(w, "a", &b);
    cr_assert_eq(tgc_writer_add(w, "a", &b), -1);
    cr_assert_eq(tgc_writer_add(w, "", &b), -1);
    cr_assert_eq(tgc_writer_add(w, "abcdefghijabcdefghijabcdefghijabc", &b), -1, "33 bytes");
    cr_assert_eq(tgc_writer_commit(w, path("x"), msg, sizeof msg), TG_ERR_ARG);
    snprintf(want, sizeof want, "%s: section 'a': added twice", path("x"));
    cr_assert_str_eq(msg, want);
    tgc_writer_free(w);

    b.oom = 1;
    w = tgc_writer_new();
    cr_assert_eq(tgc_writer_add(w, "a", &b), -1);
    cr_assert_eq(tgc_writer_commit(w, path("x"), msg, sizeof msg), TG_ERR_NOMEM);
    tgc_writer_free(w);

    /* a directory that does not exist: a clear message, no file */
    w = tgc_writer_new();
    cr_assert_eq(tgc_writer_commit(w, path("no/such/x"), msg, sizeof msg), TG_ERR_IO);
    snprintf(want, sizeof want, "%s: No such file or directory", path("no/such/x"));
    cr_assert_str_eq(msg, want);
    /* a target that is a directory: the rename fails, the temporary is removed */
    cr_assert_eq(mkdir(path("d"), 0700), 0);
    cr_assert_eq(tgc_writer_commit(w, path("d"), msg, sizeof msg), TG_ERR_IO);
    snprintf(want, sizeof want, "%s: ", path("d"));
    cr_assert(starts_with(msg, want), "%s", msg);
    tgc_writer_free(w);
    char cmd[256], listing[256] = "";
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    FILE *p = popen(cmd, "r");
    size_t got = fread(listing, 1, sizeof listing - 1, p);
    listing[got] = 0;
    pclose(p);
    cr_assert_str_eq(listing, "d\n", "no temporary left behind");
}
