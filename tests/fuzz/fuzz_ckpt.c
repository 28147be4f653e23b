/* fuzz_ckpt.c — the checkpoint container's reader (train/ckpt_file.c).  Each input is
 * opened as a file (tgc_open through a memfd path), then again with its checksums
 * recomputed so that mutations reach the sections' contents; every section of a file that
 * opens is read with the decoder (a walk of mixed reads the payload itself steers); and the
 * raw input is decoded as one section.  A refusal must name the file; a decoder error must
 * leave a message and never read past the section.
 * Seeds: FUZZ_CKPT_SEEDS=DIR build/fuzz/fuzz_ckpt writes a few valid checkpoints into
 * DIR and exits (tests/fuzz/corpus.sh does this). */
#include "fuzz_util.h"
#include "ckpt_file.h"
#include <sys/stat.h>

/* Reads c to its end (or its first error) with reads chosen by the bytes themselves. */
static void decode_walk(tgc_cur *c)
{
    for (int guard = 0; !c->err && c->pos < c->len && guard < 4096; guard++) {
        size_t before = c->pos, n;
        switch (tgc_get_u8(c) % 7) {
        case 0: tgc_get_u32(c); break;
        case 1: tgc_get_u64(c); break;
        case 2: tgc_get_i64(c); break;
        case 3: tgc_get_f64(c); break;
        case 4:
            if (tgc_get_str(c, &n) == NULL && !c->err) abort();
            break;
        case 5: {
            /* the count as stored (peeked), capped: a wrong count must fail cleanly */
            tgc_cur peek = *c;
            tgc_get_u8(&peek);
            uint64_t want = tgc_get_u64(&peek);
            size_t k = want < 4096 ? (size_t)want : 4096;
            tg_real *v = malloc((k ? k : 1) * sizeof *v);
            if (!v) abort();
            int rc = tgc_get_reals(c, v, k);
            if (rc == 0 && (c->err || k != want)) abort();
            if (rc != 0 && !c->err) abort();
            free(v);
            break;
        }
        default: tgc_get_u8(c); break;
        }
        if (c->pos > c->len || (!c->err && c->pos <= before)) abort();
    }
    if (c->err && !c->msg[0]) {
        fprintf(stderr, "fuzz_ckpt: a decoder error without a message\n");
        abort();
    }
}

static void check_open(const char *path, tg_status st, tgc_file *f, const char *msg)
{
    if (st != TG_OK) {
        if (f || strncmp(msg, path, strlen(path)) || strlen(msg) <= strlen(path) + 2) {
            fprintf(stderr, "fuzz_ckpt: a refusal that does not name the file: %s\n", msg);
            abort();
        }
        return;
    }
    for (int i = 0; i < tgc_section_count(f); i++) {
        const char *name = tgc_section_name(f, i);
        size_t nl = strlen(name);
        if (nl < 1 || nl > TGC_MAX_NAME) abort();
        tgc_cur c;
        if (tgc_section(f, name, &c) != 1 || c.err) abort();
        decode_walk(&c);
    }
    tgc_cur c;
    if (tgc_section(f, "no such section", &c) != 0 || !c.err) abort();
}

/* A copy of data whose header and section checksums (and header length and count) are
 * made right wherever the layout can be followed; NULL when the magic is absent. */
static unsigned char *fix_checksums(const uint8_t *data, size_t size)
{
    if (size < TGC_HEADER_LEN || memcmp(data, TGC_MAGIC, TGC_MAGIC_LEN)) return NULL;
    unsigned char *b = malloc(size);
    if (!b) abort();
    memcpy(b, data, size);
    size_t pos = TGC_HEADER_LEN;
    uint32_t count = 0;
    while (size - pos >= 2) {
        size_t nl = (size_t)b[pos] | (size_t)b[pos + 1] << 8;
        if (size - pos - 2 < nl + 12) break;
        uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)b[pos + 2 + nl + i] << (8 * i);
        if (len > size - pos - 2 - nl - 12) break;
        uint32_t crc = tgc_crc32(0, b + pos, 2 + nl + 8);
        crc = tgc_crc32(crc, b + pos + 2 + nl + 12, (size_t)len);
        for (int i = 0; i < 4; i++) b[pos + 2 + nl + 8 + i] = (unsigned char)(crc >> (8 * i));
        pos += 2 + nl + 12 + (size_t)len;
        count++;
    }
    /* keep the input's own version (a newer one must still be refused) */
    for (int i = 0; i < 4; i++) b[12 + i] = (unsigned char)(count >> (8 * i));
    for (int i = 0; i < 8; i++) b[16 + i] = (unsigned char)((uint64_t)pos >> (8 * i));
    uint32_t crc = tgc_crc32(0, b, 24);
    for (int i = 0; i < 4; i++) b[24 + i] = (unsigned char)(crc >> (8 * i));
    return b;
}

static void write_seed(const char *dir, const char *name, tgc_writer *w)
{
    char path[4096], msg[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (tgc_writer_commit(w, path, msg, sizeof msg) != TG_OK) {
        fprintf(stderr, "fuzz_ckpt: %s\n", msg);
        exit(1);
    }
    tgc_writer_free(w);
}

/* A few valid checkpoints: an empty one, one laid out as a trainer's (meta strings and
 * integers, parameters, optimizer state), and one whose sections hold the walk's own
 * opcodes. */
static void write_seeds(const char *dir)
{
    mkdir(dir, 0777);
    write_seed(dir, "empty.tgckpt", tgc_writer_new());

    tgc_writer *w = tgc_writer_new();
    tgc_buf b = {0};
    tgc_put_u32(&b, 1);
    tgc_put_str(&b, "elman", 5);
    tgc_put_str(&b, "models/elman.yaml", 17);
    tgc_put_i64(&b, -3);
    tgc_put_f64(&b, 0.25);
    tgc_writer_add(w, "meta", &b);
    tg_real p[8] = {0.5f, -0.25f, 1, 2, 3, 4, 5, 6};
    tgc_put_u32(&b, 2);
    tgc_put_str(&b, "U", 1);
    tgc_put_reals(&b, p, 4);
    tgc_put_str(&b, "W", 1);
    tgc_put_reals(&b, p + 4, 4);
    tgc_writer_add(w, "params", &b);
    tgc_put_u64(&b, 12);
    tgc_put_reals(&b, p, 8);
    tgc_writer_add(w, "optim", &b);
    tgc_put_reals(&b, p, 0);
    tgc_writer_add(w, "position", &b);
    write_seed(dir, "trainer-like.tgckpt", w);

    w = tgc_writer_new();
    for (int op = 0; op < 7; op++) {
        tgc_put_u8(&b, (uint8_t)op);
        switch (op) {
        case 0: tgc_put_u32(&b, 7); break;
        case 1: case 2: tgc_put_u64(&b, 7); break;
        case 3: tgc_put_f64(&b, -1.5); break;
        case 4: tgc_put_str(&b, "abc", 3); break;
        case 5: tgc_put_reals(&b, p, 3); break;
        default: tgc_put_u8(&b, 1); break;
        }
    }
    tgc_writer_add(w, "walk", &b);
    write_seed(dir, "walk.tgckpt", w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("FUZZ_CKPT_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], msg[512];
    int fd = fz_memfd(data, size, path, sizeof path);
    tgc_file *f = NULL;
    tg_status st = tgc_open(path, &f, msg, sizeof msg);
    check_open(path, st, f, msg);
    tgc_close(f);
    close(fd);

    unsigned char *fixed = fix_checksums(data, size);
    if (fixed) {
        f = NULL;
        st = tgc_open_mem(fixed, size, "fixed", &f, msg, sizeof msg);
        check_open("fixed", st, f, msg);
        tgc_close(f);
        free(fixed);
    }

    tgc_cur c = {.p = data, .len = size};
    decode_walk(&c);
    return 0;
}
