#include "latch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "path.h"

void vlad_latch_path(const vlad_profile *p, char *buf, size_t cap) {
    buf[0] = 0;
    const char *f = p->safety.estop_file;
    if (!strcmp(f, "none"))
        return;
    if (f[0]) {
        snprintf(buf, cap, "%s", f);
        return;
    }
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    int w;
    if (xdg && xdg[0] == '/')
        w = snprintf(buf, cap, "%s/vlad/%s.estop", xdg, p->robot);
    else if (home && home[0] == '/')
        w = snprintf(buf, cap, "%s/.local/state/vlad/%s.estop", home, p->robot);
    else
        w = -1;
    if (w < 0 || (size_t)w >= cap)
        buf[0] = 0;
}

int vlad_latch_read(const char *path, bool *latched, char *reason, size_t cap, vlad_err *err) {
    *latched = false;
    if (reason && cap)
        reason[0] = 0;
    if (!path[0])
        return VLAD_OK;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return VLAD_OK;
    vlad_err e2;
    int fd = vlad_open_regular(path, O_RDONLY, 0, &e2); /* never blocks on a FIFO */
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        *latched = true; /* it exists but cannot be read: fail safe */
        return vlad_err_set(err, VLAD_EIO, "e-stop latch %s (treated as latched)",
                            fd >= 0 ? path : e2.msg);
    }
    *latched = true;
    if (reason && cap && fgets(reason, (int)cap, f))
        reason[strcspn(reason, "\n")] = 0;
    fclose(f);
    return VLAD_OK;
}

int vlad_latch_write(const char *path, const char *reason, vlad_err *err) {
    if (!path[0])
        return VLAD_OK;
    char dir[VLAD_PATH_MAX], tmp[VLAD_PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int rc = vlad_mkdir_p(dir, err);
        if (rc)
            return rc;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return vlad_err_set(err, VLAD_EINVAL, "e-stop latch path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return vlad_err_set(err, VLAD_EIO, "e-stop latch %s: %s", tmp, strerror(errno));
    char line[512];
    int n = snprintf(line, sizeof line, "e-stop latched at %lld (unix s): %s\n",
                     (long long)time(NULL), reason ? reason : "");
    if (n < 0 || (size_t)n >= sizeof line)
        n = (int)sizeof line - 1, line[n - 1] = '\n';
    bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return vlad_err_set(err, VLAD_EIO, "e-stop latch %s: %s", path, strerror(e));
    }
    return VLAD_OK;
}

int vlad_latch_clear(const char *path, vlad_err *err) {
    if (!path[0])
        return VLAD_OK;
    if (unlink(path) != 0 && errno != ENOENT)
        return vlad_err_set(err, VLAD_EIO, "e-stop latch %s: cannot remove: %s", path,
                            strerror(errno));
    return VLAD_OK;
}
