/* path.h — small file-system helpers.
 *
 * vlad_mkdir_p: create a directory and any missing parents (like `mkdir -p`). An existing
 * directory is fine; an existing non-directory anywhere on the path, an empty or too-long
 * path, or a failing mkdir returns VLAD_EIO/VLAD_EINVAL with the path in err. */
#ifndef VLAD_PATH_H
#define VLAD_PATH_H

#include "err.h"

int vlad_mkdir_p(const char *path, vlad_err *err);

#endif
