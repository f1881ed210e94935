/* path.h — small file-system helpers.
 *
 * vlad_mkdir_p: create a directory and any missing parents (like `mkdir -p`). An existing
 * directory is fine; an existing non-directory anywhere on the path, an empty or too-long
 * path, or a failing mkdir returns VLAD_EIO/VLAD_EINVAL with the path in err.
 *
 * vlad_open_regular: open(2) for a path that must be a regular file (a profile, a checkpoint,
 * a log file: anything named by configuration or the command line). It never blocks on a
 * FIFO or a device and never opens one:
 *   1. stat(path): an existing non-regular file is refused before it is opened (opening a
 *      device can have effects of its own: a tty, a tape, /dev/watchdog);
 *   2. open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, mode): O_NONBLOCK so that a FIFO
 *      swapped in after step 1 cannot block the open (a FIFO opened for reading with no writer
 *      would wait for one forever; for writing it fails with ENXIO);
 *   3. fstat(fd): the file actually opened must be a regular file, else it is closed and
 *      refused;
 *   4. O_NONBLOCK is cleared again (unless the caller asked for it), so the descriptor behaves
 *      like one from a plain open().
 * Symbolic links are followed (no O_NOFOLLOW): a link to a checkpoint or profile is a normal
 * deployment (models/current -> models/v3.safetensors), O_NOFOLLOW would only look at the last
 * component anyway, and steps 1 and 3 check the file the link resolves to, so a link to a
 * FIFO or device is refused like the FIFO or device itself.
 * `flags` are open(2) flags (O_RDONLY, O_WRONLY | O_CREAT | O_APPEND, ...); `mode` is used with
 * O_CREAT. Returns the descriptor (>= 0; the caller closes it, or hands it to fdopen) or a
 * negative VLAD_E* code with err naming the path and why:
 *   "PATH: cannot open: <strerror>"                          VLAD_EIO (missing, permission...)
 *   "PATH: is a FIFO, not a regular file"                    VLAD_EINVAL (also "a directory",
 *                                   "a character device", "a block device", "a socket")
 * An empty or NULL path is VLAD_EINVAL. */
#ifndef VLAD_PATH_H
#define VLAD_PATH_H

#include <sys/types.h>

#include "err.h"

int vlad_mkdir_p(const char *path, vlad_err *err);

int vlad_open_regular(const char *path, int flags, mode_t mode, vlad_err *err);

/* What a stat() st_mode is, with its article, for messages: "a regular file", "a directory",
 * "a FIFO", "a character device", "a block device", "a socket", "a symbolic link",
 * "a file of unknown type". Static string. */
const char *vlad_file_kind(mode_t mode);

#endif
