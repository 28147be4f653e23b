/* atomic.c — whole-file writes that a crash, a kill or Ctrl-C can never leave
 * half-done: write a temporary file beside the target, fsync it, rename it
 * over the target, fsync the directory.  Params files and checkpoints use it.
 * Only a regular file is ever replaced: a rename over /dev/null (we may run as
 * root) or a FIFO would destroy it, and over a symlink would replace the link. */
#define _DEFAULT_SOURCE /* readlink, kill */
#include "tg_internal.h"
#include "tg_files.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Follows symlinks from path to the file a write should replace (which may
 * not exist yet: a dangling link names where to create it).  0, or -1 with
 * errno. */
static int resolve_target(const char *path, char *out, size_t len)
{
    if ((size_t)snprintf(out, len, "%s", path) >= len) goto too_long;
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(out, &st) != 0) return errno == ENOENT ? 0 : -1;
        if (!S_ISLNK(st.st_mode)) return 0;
        if (hops == 40) {
            errno = ELOOP;
            return -1;
        }
        char link[4200];
        ssize_t k = readlink(out, link, sizeof link - 1);
        if (k < 0) return -1;
        if ((size_t)k >= sizeof link - 1) goto too_long;
        link[k] = 0;
        char *slash = strrchr(out, '/');
        if (link[0] == '/' || !slash) {
            if ((size_t)snprintf(out, len, "%s", link) >= len) goto too_long;
        } else {
            size_t dir = (size_t)(slash + 1 - out);
            if (dir + (size_t)k + 1 > len) goto too_long;
            memcpy(out + dir, link, (size_t)k + 1);
        }
    }
too_long:
    errno = ENAMETOOLONG;
    return -1;
}

int tg_atomic_open(tg_atomic *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->path = path;
    if (resolve_target(path, a->target, sizeof a->target) != 0) return -1;
    if (strlen(a->target) + 40 > sizeof a->tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    struct stat st;
    if (stat(a->target, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(a->why, sizeof a->why, "is %s, not a regular file; refusing to write it", tg_file_kind(st.st_mode));
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    /* O_EXCL on a fresh name rather than mkstemp: mkstemp makes the file 0600,
     * and a params file should get the user's umask like any other output */
    for (int tries = 0; tries < 100; tries++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld.%ld", a->target, (long)getpid(),
                 (long)(ts.tv_nsec + tries));
        int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return -1;
        if (!(a->f = fdopen(fd, "w"))) {
            int e = errno;
            close(fd);
            unlink(a->tmp);
            errno = e;
            return -1;
        }
        return 0;
    }
    errno = EEXIST;
    return -1;
}

void tg_atomic_abort(tg_atomic *a)
{
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) unlink(a->tmp);
}

/* Removes dir/BASE.tmp.PID.* whose PID is gone: what a save killed between
 * open and rename leaves.  A live PID's file may be a save in progress. */
static void remove_stale(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
        char *end;
        errno = 0;
        long pid = strtol(n + bl + 5, &end, 10);
        if (errno || end == n + bl + 5 || *end != '.' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[8500];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, n) >= sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) unlink(p);
    }
    closedir(d);
}

int tg_atomic_commit(tg_atomic *a)
{
    int bad = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    int e = errno;
    if (fclose(a->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    a->f = NULL;
    /* the target may have become a device or FIFO since open */
    struct stat st;
    if (!bad && stat(a->target, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(a->why, sizeof a->why, "is %s, not a regular file; refusing to write it", tg_file_kind(st.st_mode));
        bad = 1;
        e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    }
    if (!bad && rename(a->tmp, a->target) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(a->tmp);
        errno = e;
        return -1;
    }
    /* the rename itself is durable only once the directory is */
    char dir[sizeof a->target];
    snprintf(dir, sizeof dir, "%s", a->target);
    char *slash = strrchr(dir, '/');
    const char *base = a->target;
    if (slash) {
        base = a->target + (slash - dir) + 1;
        *(slash == dir ? slash + 1 : slash) = 0;
    } else snprintf(dir, sizeof dir, ".");
    remove_stale(dir, base);
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}
