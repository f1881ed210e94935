#include "path.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static int mkdir_one(const char *p, const char *whole, vlad_err *err) {
    if (mkdir(p, 0777) == 0)
        return 0;
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(p, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return vlad_err_set(err, VLAD_EIO, "cannot create %s: %s exists and is not a directory", whole, p);
    }
    return vlad_err_set(err, VLAD_EIO, "cannot create %s: %s: %s", whole, p, strerror(e));
}

int vlad_mkdir_p(const char *path, vlad_err *err) {
    char buf[4096];
    size_t n = path ? strlen(path) : 0;
    if (n == 0)
        return vlad_err_set(err, VLAD_EINVAL, "cannot create a directory with an empty path");
    if (n >= sizeof buf)
        return vlad_err_set(err, VLAD_EINVAL, "cannot create %.64s...: path too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/')
            continue;
        buf[i] = '\0';
        int rc = mkdir_one(buf, path, err);
        buf[i] = '/';
        if (rc)
            return rc;
    }
    return mkdir_one(buf, path, err);
}
