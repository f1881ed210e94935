#include "obs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "path.h"

static char *read_file(const char *path, vlad_err *err) {
    int fd = vlad_open_regular(path, O_RDONLY, 0, err); /* never blocks on a FIFO */
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp) {
        if (fd >= 0) {
            close(fd);
            vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
        }
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(fp);
                vlad_err_set(err, VLAD_EINVAL, "%s: too large", path);
                return NULL;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, fp);
        n += r;
        if (r < 4096)
            break;
    }
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* Flatten a numeric array (nested one level at most) into out[n]. */
static int numbers(const cJSON *a, float *out, int n, const char *what, vlad_err *err) {
    int k = 0;
    for (const cJSON *it = a ? a->child : NULL; it; it = it->next) {
        if (cJSON_IsArray(it)) {
            for (const cJSON *jt = it->child; jt; jt = jt->next) {
                if (!cJSON_IsNumber(jt) || k >= n)
                    return vlad_err_set(err, VLAD_EINVAL, "'%s': expected %d numbers", what, n);
                out[k++] = (float)jt->valuedouble;
            }
        } else {
            if (!cJSON_IsNumber(it) || k >= n)
                return vlad_err_set(err, VLAD_EINVAL, "'%s': expected %d numbers", what, n);
            out[k++] = (float)it->valuedouble;
        }
    }
    if (k != n)
        return vlad_err_set(err, VLAD_EINVAL, "'%s': %d numbers, expected %d", what, k, n);
    for (int i = 0; i < n; i++)
        if (!isfinite(out[i]))
            return vlad_err_set(err, VLAD_EINVAL, "'%s'[%d] is not finite", what, i);
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

int vlad_obs_load(const char *path, const vlad_config *c, vlad_obs *out, vlad_err *err) {
    memset(out, 0, sizeof *out);
    char *txt = read_file(path, err);
    if (!txt)
        return err ? err->code : VLAD_EIO;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = vlad_err_set(err, VLAD_EPARSE, "not a JSON object");
        goto done;
    }
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(root, "images");
    if (!cJSON_IsArray(imgs) || cJSON_GetArraySize(imgs) != c->n_cameras) {
        rc = vlad_err_set(err, VLAD_EINVAL, "'images': expected an array of %d file names",
                          c->n_cameras);
        goto done;
    }
    char dir[4096] = ".";
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    for (const cJSON *it = imgs->child; it; it = it->next) {
        if (!cJSON_IsString(it)) {
            rc = vlad_err_set(err, VLAD_EINVAL, "'images': entry %d is not a string",
                              out->n_images);
            goto done;
        }
        char p[8192];
        if (it->valuestring[0] == '/')
            snprintf(p, sizeof p, "%s", it->valuestring);
        else
            snprintf(p, sizeof p, "%s/%s", dir, it->valuestring);
        vlad_image *im = &out->images[out->n_images];
        rc = vlad_image_load(p, im, err);
        if (rc)
            goto done;
        out->n_images++;
        if (im->width != c->image_size || im->height != c->image_size) {
            rc = vlad_err_set(err, VLAD_EINVAL, "%s: image is %dx%d, the model expects %dx%d", p,
                              im->width, im->height, c->image_size, c->image_size);
            goto done;
        }
    }
    out->state = malloc((size_t)c->state_dim * sizeof(float));
    if (!out->state) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto done;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "state");
    if (!cJSON_IsArray(st)) {
        rc = vlad_err_set(err, VLAD_EINVAL, "'state': expected %d numbers", c->state_dim);
        goto done;
    }
    if ((rc = numbers(st, out->state, c->state_dim, "state", err)))
        goto done;
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(root, "noise");
    if (nz && !cJSON_IsNull(nz)) {
        int n = c->chunk_size * c->action_dim;
        out->noise = malloc((size_t)n * sizeof(float));
        if (!out->noise) {
            rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
            goto done;
        }
        if (!cJSON_IsArray(nz)) {
            rc = vlad_err_set(err, VLAD_EINVAL, "'noise': expected %d numbers", n);
            goto done;
        }
        if ((rc = numbers(nz, out->noise, n, "noise", err)))
            goto done;
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (sd) {
        if (!cJSON_IsNumber(sd) || sd->valuedouble < 0 || sd->valuedouble > 9007199254740992.0) {
            rc = vlad_err_set(err, VLAD_EINVAL, "'seed': expected a non-negative integer");
            goto done;
        }
        out->seed = (uint64_t)sd->valuedouble;
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (pr && !cJSON_IsString(pr) && !cJSON_IsNull(pr)) {
        rc = vlad_err_set(err, VLAD_EINVAL, "'prompt': expected a string");
        goto done;
    }
    out->prompt = dup_str(cJSON_IsString(pr) ? pr->valuestring : "");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "question");
    if (q && !cJSON_IsString(q) && !cJSON_IsNull(q)) {
        rc = vlad_err_set(err, VLAD_EINVAL, "'question': expected a string");
        goto done;
    }
    if (cJSON_IsString(q))
        out->question = dup_str(q->valuestring);
    if (!out->prompt || (cJSON_IsString(q) && !out->question))
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
done:
    cJSON_Delete(root);
    if (rc)
        vlad_err_prefix(err, "%s: ", path);
    return rc;
}

void vlad_obs_free(vlad_obs *o) {
    if (!o)
        return;
    for (int i = 0; i < o->n_images; i++)
        vlad_image_free(&o->images[i]);
    free(o->state);
    free(o->noise);
    free(o->prompt);
    free(o->question);
    memset(o, 0, sizeof *o);
}
