#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

const char *vlad_file_kind(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "a file of unknown type";
    }
}

static int not_regular(const char *path, mode_t mode, vlad_err *err) {
    return vlad_err_set(err, VLAD_EINVAL, "%s: is %s, not a regular file", path,
                        vlad_file_kind(mode));
}

int vlad_open_regular(const char *path, int flags, mode_t mode, vlad_err *err) {
    if (!path || !path[0])
        return vlad_err_set(err, VLAD_EINVAL, "cannot open a file with an empty path");
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return not_regular(path, st.st_mode, err);
    int fd;
    do
        fd = open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        /* swapped for a FIFO with no reader (ENXIO), a directory (EISDIR), ...: say what */
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
            return not_regular(path, st.st_mode, err);
        return vlad_err_set(err, VLAD_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vlad_err_set(err, VLAD_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return not_regular(path, st.st_mode, err);
    }
    if (!(flags & O_NONBLOCK)) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
            int e = errno;
            close(fd);
            return vlad_err_set(err, VLAD_EIO, "%s: fcntl: %s", path, strerror(e));
        }
    }
    return fd;
}
