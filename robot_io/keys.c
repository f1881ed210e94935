#include "keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static const char *const right_names[4] = {"observe", "publish", "command", "infer"};
#define N_RIGHTS 4

int vlad_rights_parse(const char *text, unsigned *rights, vlad_err *err) {
    *rights = 0;
    if (!strcmp(text, "all")) {
        *rights = VLAD_RIGHTS_ALL;
        return VLAD_OK;
    }
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ", ");
        bool ok = n == 0;
        for (int i = 0; i < N_RIGHTS && !ok; i++)
            if (strlen(right_names[i]) == n && !strncmp(p, right_names[i], n)) {
                *rights |= 1u << i;
                ok = true;
            }
        if (!ok)
            return vlad_err_set(err, VLAD_EINVAL,
                                "rights '%s': unknown right '%.*s' (observe, publish, command, infer, all)",
                                text, (int)n, p);
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return VLAD_OK;
}

void vlad_rights_format(unsigned rights, char *buf, size_t cap) {
    buf[0] = 0;
    size_t len = 0;
    for (int i = 0; i < N_RIGHTS; i++)
        if (rights & (1u << i)) {
            int w = snprintf(buf + len, cap - len, "%s%s", len ? "," : "", right_names[i]);
            if (w < 0 || (size_t)w >= cap - len)
                return;
            len += (size_t)w;
        }
}

/* `key = "value"` (indented) -> key, value; false if not such a line */
static bool kv(char *line, char **key, char **val) {
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (p == line)
        return false; /* section names are not indented */
    char *eq = strchr(p, '=');
    if (!eq)
        return false;
    char *ke = eq;
    while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t'))
        ke--;
    *ke = 0;
    char *v = eq + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == '\n' || v[vl - 1] == '\r' || v[vl - 1] == ' '))
        v[--vl] = 0;
    if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        v[vl - 1] = 0;
        v++;
    }
    *key = p;
    *val = v;
    return true;
}

static bool z85_ok(const char *k) {
    uint8_t raw[32];
    return strlen(k) == VLAD_Z85_KEY && zmq_z85_decode(raw, k) != NULL;
}

int vlad_cert_read(const char *path, bool secret, vlad_cert *out, vlad_err *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vlad_err_set(err, VLAD_EIO, "key file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return vlad_err_set(err, VLAD_EINVAL, "key file %s: not a regular file", path);
    }
    if (secret && (st.st_mode & 077)) {
        close(fd);
        return vlad_err_set(err, VLAD_EINVAL,
                            "key file %s: a secret key readable or writable by group or others "
                            "(mode %04o) is refused: chmod 600 %s",
                            path, (unsigned)(st.st_mode & 07777), path);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return vlad_err_set(err, VLAD_EIO, "key file %s: %s", path, strerror(errno));
    }
    char line[512];
    enum { NONE, META, CURVE } sec = NONE;
    bool have_rights = false;
    int lines = 0;
    while (fgets(line, sizeof line, f) && lines++ < 1000) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *k, *v;
        if (!kv(line, &k, &v)) {
            if (!strncmp(line, "metadata", 8))
                sec = META;
            else if (!strncmp(line, "curve", 5))
                sec = CURVE;
            else
                sec = NONE;
            continue;
        }
        if (sec == META && !strcmp(k, "name"))
            snprintf(out->name, sizeof out->name, "%s", v);
        else if (sec == META && !strcmp(k, "rights")) {
            have_rights = true;
            if (vlad_rights_parse(v, &out->rights, err)) {
                fclose(f);
                return vlad_err_set(err, VLAD_EINVAL, "key file %s: %s", path, err ? err->msg : "");
            }
        } else if (sec == CURVE && !strcmp(k, "public-key"))
            snprintf(out->public_key, sizeof out->public_key, "%s", v);
        else if (sec == CURVE && !strcmp(k, "secret-key"))
            snprintf(out->secret_key, sizeof out->secret_key, "%s", v);
    }
    fclose(f);
    (void)have_rights;
    if (!z85_ok(out->public_key))
        return vlad_err_set(err, VLAD_EINVAL, "key file %s: no valid curve public-key", path);
    if (secret && !z85_ok(out->secret_key))
        return vlad_err_set(err, VLAD_EINVAL, "key file %s: no valid curve secret-key", path);
    if (secret) { /* the pair must match */
        char derived[VLAD_Z85_KEY + 1];
        if (zmq_curve_public(derived, out->secret_key) || strcmp(derived, out->public_key))
            return vlad_err_set(err, VLAD_EINVAL,
                                "key file %s: the public-key does not belong to the secret-key", path);
    }
    if (!out->name[0]) {
        const char *b = strrchr(path, '/');
        snprintf(out->name, sizeof out->name, "%s", b ? b + 1 : path);
    }
    return VLAD_OK;
}

static int write_cert(const char *path, const vlad_cert *c, bool secret, vlad_err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, secret ? 0600 : 0644);
    if (fd < 0)
        return vlad_err_set(err, errno == EEXIST ? VLAD_ESTATE : VLAD_EIO, "%s: %s%s", path,
                            strerror(errno), errno == EEXIST ? " (not overwritten)" : "");
    char rights[64];
    vlad_rights_format(c->rights, rights, sizeof rights);
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "#   ZeroMQ CURVE %s Certificate (vladctl keygen)\n%s\n"
                     "metadata\n    name = \"%s\"\n    rights = \"%s\"\n"
                     "curve\n    public-key = \"%s\"\n",
                     secret ? "**Secret**" : "Public",
                     secret ? "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."
                            : "#   Give this file to the daemon's security.client_keys_dir.",
                     c->name, rights, c->public_key);
    if (secret && n > 0 && (size_t)n < sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "    secret-key = \"%s\"\n", c->secret_key);
    bool ok = n > 0 && (size_t)n < sizeof buf && write(fd, buf, (size_t)n) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(path);
        return vlad_err_set(err, VLAD_EIO, "%s: write failed", path);
    }
    return VLAD_OK;
}

int vlad_cert_generate(const char *base, const char *name, unsigned rights, vlad_err *err) {
    vlad_cert c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.rights = rights;
    if (zmq_curve_keypair(c.public_key, c.secret_key))
        return vlad_err_set(err, VLAD_EIO, "keygen: this libzmq has no CURVE support");
    char pub[600], sec[600];
    if (snprintf(pub, sizeof pub, "%s.key", base) >= (int)sizeof pub ||
        snprintf(sec, sizeof sec, "%s.key_secret", base) >= (int)sizeof sec)
        return vlad_err_set(err, VLAD_EINVAL, "keygen: path too long");
    int rc = write_cert(sec, &c, true, err);
    if (rc)
        return rc;
    rc = write_cert(pub, &c, false, err);
    if (rc)
        unlink(sec);
    return rc;
}

int vlad_keyring_load(const char *dir, vlad_keyring *kr, vlad_err *err) {
    kr->n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return vlad_err_set(err, VLAD_EIO, "security.client_keys_dir %s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = VLAD_OK;
    while ((e = readdir(d)) && !rc) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".key"))
            continue;
        if (kr->n == VLAD_MAX_CLIENT_KEYS) {
            rc = vlad_err_set(err, VLAD_ERANGE, "security.client_keys_dir %s: more than %d keys", dir,
                              VLAD_MAX_CLIENT_KEYS);
            break;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rc = vlad_cert_read(path, false, &kr->keys[kr->n], err);
        if (!rc)
            kr->n++;
    }
    closedir(d);
    return rc;
}

const vlad_cert *vlad_keyring_find(const vlad_keyring *kr, const uint8_t key[32]) {
    char z[VLAD_Z85_KEY + 1];
    if (!zmq_z85_encode(z, key, 32))
        return NULL;
    return vlad_keyring_find_z85(kr, z);
}

const vlad_cert *vlad_keyring_find_z85(const vlad_keyring *kr, const char *z85) {
    for (int i = 0; i < kr->n; i++)
        if (!strcmp(kr->keys[i].public_key, z85))
            return &kr->keys[i];
    return NULL;
}
