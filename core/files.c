/* files.c — what a path a user typed may be before we read or write it: only a
 * regular file is read (a FIFO with no writer would block open() forever) or
 * replaced (a rename over /dev/null as root replaces the device), an output
 * never overwrites an input, and one writer at a time holds a checkpoint. */
#define _DEFAULT_SOURCE /* flock */
#include "tg_files.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static tg_status say(char *msg, size_t msg_len, tg_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static tg_status say(char *msg, size_t msg_len, tg_status s, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return s;
}

const char *tg_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFLNK: return "a symbolic link";
    default: return "not a file";
    }
}

/* ---- reading ----------------------------------------------------------------- */

/* The encoding a file's first bytes betray: 0 (UTF-8 or not text: not ours to
 * judge), 16 or 32.  Text in UTF-16/32 has NUL bytes where UTF-8 has none: in
 * ASCII-range UTF-16 LE every odd byte, in UTF-32 LE three bytes of four. */
static int wide_encoding(const unsigned char *b, size_t n)
{
    if (n >= 4 && ((b[0] == 0xFF && b[1] == 0xFE && b[2] == 0 && b[3] == 0) ||
                   (b[0] == 0 && b[1] == 0 && b[2] == 0xFE && b[3] == 0xFF)))
        return 32;
    if (n >= 2 && ((b[0] == 0xFF && b[1] == 0xFE) || (b[0] == 0xFE && b[1] == 0xFF))) return 16;
    size_t m = n < 4096 ? n : 4096;
    m -= m % 4;
    if (m < 4) {
        /* two or three bytes: "a\0" or "\0a" */
        if (n >= 2 && n < 4 && (b[0] == 0) != (b[1] == 0)) return 16;
        return 0;
    }
    size_t zero[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < m; i++) zero[i % 4] += b[i] == 0;
    size_t q = m / 4; /* bytes per position class */
    if (!zero[0] && !zero[1] && !zero[2] && !zero[3]) return 0;
    /* UTF-32: the top byte of every code point is 0 (all of Unicode is below
     * 0x110000), the next one is 0 for the whole BMP */
    if (zero[3] == q && zero[2] * 2 > q && zero[0] < q) return 32; /* LE */
    if (zero[0] == q && zero[1] * 2 > q && zero[3] < q) return 32; /* BE */
    size_t odd = zero[1] + zero[3], even = zero[0] + zero[2];
    if (odd * 2 > 2 * q && even * 2 < 2 * q) return 16; /* LE: more than half the odd bytes */
    if (even * 2 > 2 * q && odd * 2 < 2 * q) return 16; /* BE */
    return 0;
}

/* Reads fd to its end, at most max + 1 bytes (one more tells "too large"). */
static tg_status read_all(int fd, size_t max, char **out, size_t *out_len, int *too_large, int *err)
{
    size_t cap = 4096, n = 0;
    if (cap > max + 1) cap = max + 1;
    char *buf = malloc(cap + 1);
    if (!buf) return TG_ERR_NOMEM;
    *too_large = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                *too_large = 1;
                break;
            }
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                return TG_ERR_NOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            *err = errno;
            free(buf);
            return TG_ERR_IO;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n > max) *too_large = 1;
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return TG_OK;
}

static tg_status not_regular(const char *path, const char *what, unsigned mode, char *msg, size_t msg_len)
{
    if (what)
        return say(msg, msg_len, TG_ERR_IO, "%s: cannot read %s: it is %s%s", path, what, tg_file_kind(mode),
                   S_ISDIR(mode) ? "" : ", not a regular file");
    return say(msg, msg_len, TG_ERR_IO, "%s: is %s, not a regular file", path, tg_file_kind(mode));
}

tg_status tg_file_read_as(const char *path, const char *what, size_t max_bytes, int allow_stdin,
                          char **buf, size_t *len, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!path || !buf || !len) return say(msg, msg_len, TG_ERR_ARG, "tg_file_read: path, buf and len are required");
    const char *sp = what ? " " : "", *w = what ? what : "";
    int fd, is_stdin = strcmp(path, "-") == 0;
    if (is_stdin) {
        if (!allow_stdin)
            return say(msg, msg_len, TG_ERR_IO,
                       "-: standard input cannot be read here; name a file (./- for a file called '-')");
        fd = STDIN_FILENO;
    } else {
        struct stat st;
        if (stat(path, &st) != 0)
            return say(msg, msg_len, TG_ERR_IO, "%s: cannot open%s%s: %s", path, sp, w, strerror(errno));
        if (!S_ISREG(st.st_mode)) return not_regular(path, what, st.st_mode, msg, msg_len);
        fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return say(msg, msg_len, TG_ERR_IO, "%s: cannot open%s%s: %s", path, sp, w, strerror(errno));
        /* the path may have been swapped for a FIFO between stat and open */
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return not_regular(path, what, st.st_mode, msg, msg_len);
        }
        if ((size_t)st.st_size > max_bytes && st.st_size > 0) {
            close(fd);
            goto too_large;
        }
    }
    char *text = NULL;
    size_t n = 0;
    int too = 0, e = 0;
    tg_status s = read_all(fd, max_bytes, &text, &n, &too, &e);
    if (!is_stdin) close(fd);
    if (s == TG_ERR_NOMEM) return say(msg, msg_len, s, "%s: out of memory reading the file", path);
    if (s) return say(msg, msg_len, s, "%s: cannot read%s%s: %s", path, sp, w, strerror(e));
    if (too) {
        free(text);
        goto too_large;
    }
    int wide = wide_encoding((const unsigned char *)text, n);
    if (wide) {
        free(text);
        return say(msg, msg_len, TG_ERR_PARSE, "%s: this file is UTF-%d; save it as UTF-8", path, wide);
    }
    if (n >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF) {
        memmove(text, text + 3, n - 3 + 1);
        n -= 3;
    }
    *buf = text;
    *len = n;
    return TG_OK;
too_large:
    if (what)
        return say(msg, msg_len, TG_ERR_LIMIT, "%s: %s is larger than the limit of %zu bytes", path, what,
                   max_bytes);
    return say(msg, msg_len, TG_ERR_LIMIT, "%s: larger than the limit of %zu bytes", path, max_bytes);
}

tg_status tg_file_read(const char *path, size_t max_bytes, int allow_stdin, char **buf, size_t *len,
                       char *msg, size_t msg_len)
{
    return tg_file_read_as(path, NULL, max_bytes, allow_stdin, buf, len, msg, msg_len);
}

/* ---- writing ------------------------------------------------------------------ */

tg_status tg_file_check_output(const char *path, const char *const *inputs, int n_inputs, char *msg,
                               size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!path || !*path) return say(msg, msg_len, TG_ERR_IO, "an output path is empty");
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return say(msg, msg_len, TG_ERR_IO, "%s: is %s, not a regular file; refusing to write it", path,
                       tg_file_kind(st.st_mode));
        for (int i = 0; inputs && i < n_inputs; i++) {
            struct stat in;
            if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino)
                return say(msg, msg_len, TG_ERR_IO, "%s: is the same file as the input %s; refusing to overwrite it",
                           path, inputs[i]);
        }
        return TG_OK;
    }
    int e = errno;
    if (e != ENOENT && e != ENOTDIR)
        return say(msg, msg_len, TG_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    /* missing: its directory must exist (a dangling symlink: the directory the
     * link points into, which is where the file would be created) */
    char target[PATH_MAX + 1];
    snprintf(target, sizeof target, "%s", path);
    struct stat lst;
    for (int hops = 0; hops < 40 && lstat(target, &lst) == 0 && S_ISLNK(lst.st_mode); hops++) {
        char link[PATH_MAX + 1];
        ssize_t k = readlink(target, link, sizeof link - 1);
        if (k < 0) break;
        link[k] = 0;
        char *slash = strrchr(target, '/');
        if (link[0] == '/' || !slash) snprintf(target, sizeof target, "%s", link);
        else {
            slash[1] = 0;
            size_t used = strlen(target);
            snprintf(target + used, sizeof target - used, "%s", link);
        }
    }
    char dir[PATH_MAX + 1];
    snprintf(dir, sizeof dir, "%s", target);
    char *slash = strrchr(dir, '/');
    if (!slash) return TG_OK; /* the current directory exists */
    if (slash == dir) slash[1] = 0;
    else *slash = 0;
    struct stat ds;
    if (stat(dir, &ds) != 0) {
        if (errno == ENOENT) return say(msg, msg_len, TG_ERR_IO, "%s: directory %s does not exist", path, dir);
        return say(msg, msg_len, TG_ERR_IO, "%s: directory %s: %s", path, dir, strerror(errno));
    }
    if (!S_ISDIR(ds.st_mode)) return say(msg, msg_len, TG_ERR_IO, "%s: %s is not a directory", path, dir);
    return TG_OK;
}

/* ---- the writer's lock ------------------------------------------------------- */

tg_status tg_file_lock_take(const char *path, tg_file_lock *lock, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!lock) return say(msg, msg_len, TG_ERR_ARG, "tg_file_lock_take: lock is NULL");
    lock->fd = -1;
    lock->path[0] = 0;
    if (!path) return say(msg, msg_len, TG_ERR_ARG, "tg_file_lock_take: path is NULL");
    if (strlen(path) + 6 > sizeof lock->path)
        return say(msg, msg_len, TG_ERR_IO, "%s: cannot lock: %s", path, strerror(ENAMETOOLONG));
    char lp[sizeof lock->path];
    snprintf(lp, sizeof lp, "%s.lock", path);
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0666);
        if (fd < 0) return say(msg, msg_len, TG_ERR_IO, "%s: cannot create the lock %s: %s", path, lp, strerror(errno));
        struct stat a, b;
        if (fstat(fd, &a) != 0 || !S_ISREG(a.st_mode)) {
            close(fd);
            return say(msg, msg_len, TG_ERR_IO, "%s: the lock %s is not a regular file", path, lp);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK || e == EINTR)
                return say(msg, msg_len, TG_ERR_IO, "%s: another process is writing this file (lock %s held)", path,
                           lp);
            return say(msg, msg_len, TG_ERR_IO, "%s: cannot lock %s: %s", path, lp, strerror(e));
        }
        /* a holder releasing unlinks the file it locked: if that happened
         * between our open and our flock, we hold a lock nobody else sees */
        if (stat(lp, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            lock->fd = fd;
            memcpy(lock->path, lp, sizeof lp);
            return TG_OK;
        }
        close(fd);
    }
    return say(msg, msg_len, TG_ERR_IO, "%s: cannot lock %s: it keeps changing", path, lp);
}

void tg_file_lock_release(tg_file_lock *lock)
{
    if (!lock || lock->fd < 0) return;
    /* unlink while still holding: a newcomer that opened the old file finds it
     * gone after its flock and retries */
    unlink(lock->path);
    close(lock->fd);
    lock->fd = -1;
}
