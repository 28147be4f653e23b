/* test_files.c — the paths a user names (core/files.c, core/atomic.c): a FIFO
 * is refused before it can block, a device is never replaced (the tests run as
 * root in CI, where a rename over /dev/null succeeds), a symlink is followed,
 * an output is never an input, UTF-16/32 is named, one writer holds a lock,
 * and temporaries of killed saves are swept. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tg_internal.h"
#include "tg_files.h"

static char dir[64];
static char msg[1024];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tg-files-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(files, .init = setup, .fini = teardown, .timeout = 30);

/* dir/name in a static buffer (sixteen in rotation) */
static const char *at(const char *name)
{
    static char bufs[16][256];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

static void put(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static void puts_file(const char *path, const char *s) { put(path, s, strlen(s)); }

/* The file's whole text (at most 255 bytes) */
static const char *slurp(const char *path)
{
    static char b[256];
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(b, 1, sizeof b - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

static void expect_read_fails(const char *path, tg_status want, const char *want_msg)
{
    char *buf = (char *)1;
    size_t len = 99;
    tg_status s = tg_file_read(path, 1 << 20, 0, &buf, &len, msg, sizeof msg);
    cr_expect_eq(s, want, "%s: status %d (%s)", path, s, msg);
    cr_expect_str_eq(msg, want_msg);
    cr_expect_null(buf);
    cr_expect_eq(len, 0);
}

/* ---- reading ------------------------------------------------------------------ */

Test(files, a_fifo_with_no_writer_is_refused_without_blocking)
{
    const char *p = at("fifo");
    cr_assert_eq(mkfifo(p, 0600), 0);
    char want[512];
    snprintf(want, sizeof want, "%s: is a FIFO, not a regular file", p);
    expect_read_fails(p, TG_ERR_IO, want);
    char *buf;
    size_t len;
    cr_expect_eq(tg_file_read_as(p, "the data file", 100, 0, &buf, &len, msg, sizeof msg), TG_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot read the data file: it is a FIFO, not a regular file", p);
    cr_expect_str_eq(msg, want);
    /* and through the library's loaders, which read with it */
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_expect_null(tg_model_load(ctx, p, NULL, 0));
    snprintf(want, sizeof want, "%s: cannot read the model file: it is a FIFO, not a regular file", p);
    cr_expect_str_eq(tg_errmsg(ctx), want);
    tg_ctx_free(ctx);
}

Test(files, devices_directories_and_missing_files_are_refused_as_input)
{
    expect_read_fails("/dev/null", TG_ERR_IO, "/dev/null: is a character device, not a regular file");
    expect_read_fails("/dev/zero", TG_ERR_IO, "/dev/zero: is a character device, not a regular file");
    char want[512];
    snprintf(want, sizeof want, "%s: is a directory, not a regular file", dir);
    expect_read_fails(dir, TG_ERR_IO, want);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", at("none"));
    expect_read_fails(at("none"), TG_ERR_IO, want);
    expect_read_fails("-", TG_ERR_IO, "-: standard input cannot be read here; name a file (./- for a file called '-')");
}

Test(files, the_size_limit_is_exact)
{
    puts_file(at("ten"), "0123456789");
    char *buf;
    size_t len;
    cr_assert_eq(tg_file_read(at("ten"), 10, 0, &buf, &len, msg, sizeof msg), TG_OK, "%s", msg);
    cr_expect_eq(len, 10);
    cr_expect_str_eq(buf, "0123456789");
    free(buf);
    char want[512];
    snprintf(want, sizeof want, "%s: larger than the limit of 9 bytes", at("ten"));
    cr_expect_eq(tg_file_read(at("ten"), 9, 0, &buf, &len, msg, sizeof msg), TG_ERR_LIMIT);
    cr_expect_str_eq(msg, want);
    /* an empty file is a file */
    put(at("empty"), "", 0);
    cr_assert_eq(tg_file_read(at("empty"), 9, 0, &buf, &len, msg, sizeof msg), TG_OK, "%s", msg);
    cr_expect_eq(len, 0);
    cr_expect_str_eq(buf, "");
    free(buf);
}

Test(files, standard_input_is_read_when_allowed)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(write(fds[1], "a: 1\n", 5), 5);
    close(fds[1]);
    int saved = dup(0);
    dup2(fds[0], 0);
    close(fds[0]);
    char *buf;
    size_t len;
    tg_status s = tg_file_read("-", 100, 1, &buf, &len, msg, sizeof msg);
    dup2(saved, 0);
    close(saved);
    cr_assert_eq(s, TG_OK, "%s", msg);
    cr_expect_str_eq(buf, "a: 1\n");
    free(buf);
}

/* "a,b\n1,2\n" in a wide encoding: unit bytes, little- or big-endian, BOM or not */
static size_t wide(unsigned char *out, int unit, int big, int bom)
{
    const char *s = "a,b\n1,2\n";
    size_t n = 0;
    if (bom) {
        unsigned cp = 0xFEFF;
        for (int k = 0; k < unit; k++) out[n + (big ? unit - 1 - k : k)] = (unsigned char)(cp >> (8 * k));
        n += (size_t)unit;
    }
    for (const char *c = s; *c; c++) {
        for (int k = 0; k < unit; k++) out[n + (big ? unit - 1 - k : k)] = k ? 0 : (unsigned char)*c;
        n += (size_t)unit;
    }
    return n;
}

Test(files, utf16_and_utf32_are_named_with_or_without_a_bom)
{
    for (int unit = 2; unit <= 4; unit += 2)
        for (int big = 0; big < 2; big++)
            for (int bom = 0; bom < 2; bom++) {
                unsigned char b[64];
                size_t n = wide(b, unit, big, bom);
                const char *p = at("wide.csv");
                put(p, b, n);
                char want[512];
                snprintf(want, sizeof want, "%s: this file is UTF-%d; save it as UTF-8", p, unit * 8);
                cr_expect_eq(tg_file_read(p, 1000, 0, &(char *){0}, &(size_t){0}, msg, sizeof msg), TG_ERR_PARSE,
                             "UTF-%d %s %s BOM", unit * 8, big ? "BE" : "LE", bom ? "with" : "without");
                cr_expect_str_eq(msg, want, "UTF-%d %s %s BOM", unit * 8, big ? "BE" : "LE", bom ? "with" : "without");
            }
}

Test(files, utf8_with_a_bom_is_read_without_it_and_utf8_text_passes)
{
    puts_file(at("bom.csv"), "\xEF\xBB\xBF" "x,y\n1,2\n");
    char *buf;
    size_t len;
    cr_assert_eq(tg_file_read(at("bom.csv"), 100, 0, &buf, &len, msg, sizeof msg), TG_OK, "%s", msg);
    cr_expect_str_eq(buf, "x,y\n1,2\n");
    cr_expect_eq(len, 8);
    free(buf);
    puts_file(at("text"), "na\xC3\xAFve caf\xC3\xA9 \xE2\x82\xAC 1,2\n");
    cr_assert_eq(tg_file_read(at("text"), 100, 0, &buf, &len, msg, sizeof msg), TG_OK, "%s", msg);
    free(buf);
}

/* ---- outputs ------------------------------------------------------------------- */

Test(files, dev_null_a_char_device_a_fifo_and_a_directory_are_refused_as_output)
{
    cr_expect_eq(tg_file_check_output("/dev/null", NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, "/dev/null: is a character device, not a regular file; refusing to write it");
    cr_expect_eq(tg_file_check_output("/dev/zero", NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, "/dev/zero: is a character device, not a regular file; refusing to write it");
    cr_assert_eq(mkfifo(at("fifo"), 0600), 0);
    char want[512];
    snprintf(want, sizeof want, "%s: is a FIFO, not a regular file; refusing to write it", at("fifo"));
    cr_expect_eq(tg_file_check_output(at("fifo"), NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, want);
    snprintf(want, sizeof want, "%s: is a directory, not a regular file; refusing to write it", dir);
    cr_expect_eq(tg_file_check_output(dir, NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, want);
    /* a symlink to a device is the device */
    cr_assert_eq(symlink("/dev/null", at("null-link")), 0);
    snprintf(want, sizeof want, "%s: is a character device, not a regular file; refusing to write it",
             at("null-link"));
    cr_expect_eq(tg_file_check_output(at("null-link"), NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, want);
}

Test(files, the_atomic_writer_never_replaces_a_device_or_a_fifo)
{
    const char *targets[] = {"/dev/null", at("fifo"), at("null-link")};
    cr_assert_eq(mkfifo(at("fifo"), 0600), 0);
    cr_assert_eq(symlink("/dev/null", at("null-link")), 0);
    for (int i = 0; i < 3; i++) {
        tg_atomic a;
        errno = 0;
        cr_expect_eq(tg_atomic_open(&a, targets[i]), -1, "%s", targets[i]);
        cr_expect_eq(errno, EINVAL);
        cr_expect_str_eq(a.why, i == 1 ? "is a FIFO, not a regular file; refusing to write it"
                                       : "is a character device, not a regular file; refusing to write it");
    }
    struct stat st;
    cr_assert_eq(stat("/dev/null", &st), 0);
    cr_expect(S_ISCHR(st.st_mode), "/dev/null is no longer a character device");
    cr_assert_eq(lstat(at("fifo"), &st), 0);
    cr_expect(S_ISFIFO(st.st_mode));
    /* and the params writer says so */
    tg_ctx *ctx = tg_ctx_new(NULL);
    const char *model = "name: m\nparams: {w: [1]}\ninputs: {x: [1]}\nstep:\n  - y = w * x\noutputs: [y]\n";
    tg_model *m = tg_model_parse(ctx, "m.yaml", model, strlen(model), NULL, 0);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    tg_params *ps = tg_params_new(ctx);
    cr_assert_eq(tg_model_init_params(m, ps, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_params_save(ps, m, "/dev/null"), TG_ERR_IO);
    cr_expect_str_eq(tg_errmsg(ctx),
                     "/dev/null: cannot write params: is a character device, not a regular file; refusing to write it");
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
}

Test(files, a_symlink_is_followed_and_stays_a_link)
{
    puts_file(at("real"), "old\n");
    cr_assert_eq(symlink("real", at("link")), 0);
    cr_expect_eq(tg_file_check_output(at("link"), NULL, 0, msg, sizeof msg), TG_OK, "%s", msg);
    tg_atomic a;
    cr_assert_eq(tg_atomic_open(&a, at("link")), 0, "%s", strerror(errno));
    fputs("new\n", a.f);
    cr_assert_eq(tg_atomic_commit(&a), 0, "%s", strerror(errno));
    struct stat st;
    cr_assert_eq(lstat(at("link"), &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced by a file");
    cr_expect_str_eq(slurp(at("real")), "new\n");
    /* a chain of links, and a dangling one: the file appears where it points */
    cr_assert_eq(symlink("link", at("link2")), 0);
    cr_assert_eq(tg_atomic_open(&a, at("link2")), 0);
    fputs("newer\n", a.f);
    cr_assert_eq(tg_atomic_commit(&a), 0);
    cr_expect_str_eq(slurp(at("real")), "newer\n");
    cr_assert_eq(symlink("fresh", at("dangling")), 0);
    cr_expect_eq(tg_file_check_output(at("dangling"), NULL, 0, msg, sizeof msg), TG_OK, "%s", msg);
    cr_assert_eq(tg_atomic_open(&a, at("dangling")), 0);
    fputs("fresh\n", a.f);
    cr_assert_eq(tg_atomic_commit(&a), 0);
    cr_expect_str_eq(slurp(at("fresh")), "fresh\n");
    cr_assert_eq(lstat(at("dangling"), &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
}

Test(files, an_output_that_is_an_input_is_refused_by_any_name)
{
    puts_file(at("in.yaml"), "x: 1\n");
    puts_file(at("other"), "y\n");
    cr_assert_eq(link(at("in.yaml"), at("hard")), 0);
    cr_assert_eq(symlink("in.yaml", at("soft")), 0);
    const char *inputs[] = {NULL, at("other"), at("in.yaml")};
    const char *outs[] = {at("in.yaml"), at("hard"), at("soft")};
    for (int i = 0; i < 3; i++) {
        char want[512];
        snprintf(want, sizeof want, "%s: is the same file as the input %s; refusing to overwrite it", outs[i],
                 inputs[2]);
        cr_expect_eq(tg_file_check_output(outs[i], inputs, 3, msg, sizeof msg), TG_ERR_IO, "%s", outs[i]);
        cr_expect_str_eq(msg, want);
    }
    /* the input named through a link is still the input */
    const char *by_link[] = {at("soft")};
    cr_expect_eq(tg_file_check_output(at("in.yaml"), by_link, 1, msg, sizeof msg), TG_ERR_IO);
    /* a different file, and a new one, are fine */
    cr_expect_eq(tg_file_check_output(at("other"), inputs + 2, 1, msg, sizeof msg), TG_OK, "%s", msg);
    cr_expect_eq(tg_file_check_output(at("new"), inputs, 3, msg, sizeof msg), TG_OK, "%s", msg);
}

Test(files, an_output_in_a_missing_directory_is_refused)
{
    char want[512];
    snprintf(want, sizeof want, "%s: directory %s does not exist", at("no/such/out.csv"), at("no/such"));
    cr_expect_eq(tg_file_check_output(at("no/such/out.csv"), NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, want);
    puts_file(at("file"), "x\n");
    snprintf(want, sizeof want, "%s: %s is not a directory", at("file/out.csv"), at("file"));
    cr_expect_eq(tg_file_check_output(at("file/out.csv"), NULL, 0, msg, sizeof msg), TG_ERR_IO);
    cr_expect_str_eq(msg, want);
    cr_expect_eq(tg_file_check_output("plain-name-in-cwd.csv", NULL, 0, msg, sizeof msg), TG_OK, "%s", msg);
}

/* ---- the writer's lock ------------------------------------------------------- */

/* A child process tries the lock: exit 0 if refused with the exact message,
 * 1 if it got the lock, 2 if refused otherwise. */
static int child_tries(const char *path)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        tg_file_lock l;
        char m[1024], want[1024];
        tg_status s = tg_file_lock_take(path, &l, m, sizeof m);
        snprintf(want, sizeof want, "%s: another process is writing this file (lock %s.lock held)", path, path);
        if (s == TG_OK) tg_file_lock_release(&l);
        _exit(s == TG_OK ? 1 : strcmp(m, want) == 0 ? 0 : 2);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

Test(files, the_lock_refuses_a_second_holder)
{
    const char *p = at("run.params");
    tg_file_lock l;
    cr_assert_eq(tg_file_lock_take(p, &l, msg, sizeof msg), TG_OK, "%s", msg);
    struct stat st;
    cr_expect_eq(stat(at("run.params.lock"), &st), 0);
    cr_expect_eq(child_tries(p), 0, "a second process got the lock or the wrong message");
    tg_file_lock_release(&l);
    cr_expect_eq(stat(at("run.params.lock"), &st), -1, "the sidecar stays after release");
    tg_file_lock_release(&l); /* twice is harmless */
    cr_expect_eq(child_tries(p), 1, "the lock is still held after release");
    /* a sidecar left by a dead holder does not block */
    puts_file(at("run.params.lock"), "");
    cr_expect_eq(child_tries(p), 1);
}

/* ---- temporaries of killed saves ---------------------------------------------- */

Test(files, commit_removes_temporaries_of_dead_processes_only)
{
    fflush(NULL);
    pid_t dead = fork();
    cr_assert(dead >= 0);
    if (dead == 0) _exit(0);
    cr_assert_eq(waitpid(dead, NULL, 0), dead);
    char stale[256], live[256], other[256];
    snprintf(stale, sizeof stale, "%s.tmp.%ld.1", at("X"), (long)dead);
    snprintf(live, sizeof live, "%s.tmp.%ld.1", at("X"), (long)getppid());
    snprintf(other, sizeof other, "%s.tmp.%ld.1", at("Y"), (long)dead);
    puts_file(stale, "half\n");
    puts_file(live, "in progress\n");
    puts_file(other, "someone else's\n");
    tg_atomic a;
    cr_assert_eq(tg_atomic_open(&a, at("X")), 0);
    fputs("whole\n", a.f);
    cr_assert_eq(tg_atomic_commit(&a), 0);
    cr_expect_str_eq(slurp(at("X")), "whole\n");
    cr_expect_eq(access(stale, F_OK), -1, "the dead process's temporary is still there");
    cr_expect_eq(access(live, F_OK), 0, "a live process's temporary was removed");
    cr_expect_eq(access(other, F_OK), 0, "another target's temporary was removed");
}
