/* tg_files.h — the files a user names (model, data, params, checkpoints, logs,
 * plots) are checked before they are opened or written: a FIFO must never block
 * us, a device must never be replaced, an input must never be overwritten.
 * Internal to the library, its tool and its tests (core/files.c). */
#ifndef TG_FILES_H
#define TG_FILES_H

#include "tapegrad.h"
#include <stddef.h>

/* Reads a whole file a user named into a malloc'd, NUL-terminated buffer (*buf, *len;
 * free with free()).  Before opening, stat()s the path and refuses anything that is not a
 * regular file (FIFO, socket, device, directory) with "PATH: is a FIFO, not a regular file"
 * (etc.), so that a FIFO with no writer can never block; opens with O_RDONLY|O_NOCTTY|
 * O_NONBLOCK|O_CLOEXEC and re-checks fstat() (the path may have changed in between).
 * path "-" reads standard input when allow_stdin (else refused).  More than max_bytes:
 * TG_ERR_LIMIT "PATH: larger than the limit of N bytes".  A UTF-16 or UTF-32 file
 * (a BOM, or NUL bytes in the pattern of 16/32-bit text) is refused with
 * "PATH: this file is UTF-16; save it as UTF-8" (UTF-32 likewise).  A UTF-8 byte-order
 * mark is dropped (*buf starts after it), so that a header or key on line 1 reads as
 * written.  The message goes to msg (msg_len bytes, always NUL-terminated).  Returns
 * TG_OK or the status (TG_ERR_IO, TG_ERR_LIMIT, TG_ERR_PARSE for the encoding,
 * TG_ERR_NOMEM, TG_ERR_ARG for a NULL argument). */
tg_status tg_file_read(const char *path, size_t max_bytes, int allow_stdin,
                       char **buf, size_t *len, char *msg, size_t msg_len);

/* The same, with messages that name what the file is for (what = "the model file"):
 * "PATH: cannot open the model file: No such file or directory",
 * "PATH: cannot read the model file: it is a FIFO, not a regular file",
 * "PATH: the model file is larger than the limit of N bytes".  what NULL gives
 * tg_file_read's messages. */
tg_status tg_file_read_as(const char *path, const char *what, size_t max_bytes, int allow_stdin,
                          char **buf, size_t *len, char *msg, size_t msg_len);

/* Before any work: may `path` be written as an output?  Refuses an existing path that is not
 * a regular file after following symlinks ("PATH: is a character device, not a regular file;
 * refusing to write it"), and one that is the same file (st_dev and st_ino) as any of the
 * n_inputs paths in inputs (NULL entries skipped): "PATH: is the same file as the input
 * INPUT; refusing to overwrite it".  A missing path whose directory does not exist:
 * "PATH: directory DIR does not exist".  Returns TG_OK or TG_ERR_IO with msg. */
tg_status tg_file_check_output(const char *path, const char *const *inputs, int n_inputs,
                               char *msg, size_t msg_len);

/* An exclusive lock that a process holds for as long as it writes `path` (e.g. a whole
 * training run saving to one checkpoint): flock(LOCK_EX|LOCK_NB) on the sidecar file
 * "PATH.lock" (created 0666 & ~umask), re-checked against the path after locking (so an
 * unlink by a releasing holder cannot give two holders).  Held: returns TG_OK and the lock in
 * *lock.  Already held by another process: TG_ERR_IO "PATH: another process is writing this
 * file (lock PATH.lock held)".  tg_file_unlock() removes the sidecar and closes it; a
 * process that dies leaves the sidecar, which is harmless (the kernel drops flock locks). */
typedef struct tg_file_lock { int fd; char path[4200]; } tg_file_lock;
tg_status tg_file_lock_take(const char *path, tg_file_lock *lock, char *msg, size_t msg_len);
/* Safe on a lock that was never taken (fd < 0) and twice in a row. */
void tg_file_lock_release(tg_file_lock *lock);

/* "a FIFO", "a directory", "a character device", ... for st_mode; "a regular file" */
const char *tg_file_kind(unsigned mode);

#endif
