/* atomic.c — whole-file writes that a crash, a kill or Ctrl-C can never leave
 * half-done: write a temporary file beside the target, fsync it, rename it
 * over the target, fsync the directory.  Params files and checkpoints use it. */
#include "tg_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int tg_atomic_open(tg_atomic *a, const char *path)
{
    memset(a, 0, sizeof *a);
    if (strlen(path) + 40 > sizeof a->tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    a->path = path;
    /* O_EXCL on a fresh name rather than mkstemp: mkstemp makes the file 0600,
     * and a params file should get the user's umask like any other output */
    for (int tries = 0; tries < 100; tries++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld.%ld", path, (long)getpid(),
                 (long)(ts.tv_nsec + tries));
        int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
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
    unlink(a->tmp);
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
    if (!bad && rename(a->tmp, a->path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(a->tmp);
        errno = e;
        return -1;
    }
    /* the rename itself is durable only once the directory is */
    char dir[sizeof a->tmp];
    snprintf(dir, sizeof dir, "%s", a->path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}
