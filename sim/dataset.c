/* dataset.c — safetensors I/O and the episode recorder; see dataset.h. */
#include "dataset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *dtype_names[] = {"U8", "F32", "I64"};
static const size_t dtype_size[] = {1, 4, 8};

/* ---- writer ----------------------------------------------------------------------- */

int vlad_ds_write(const char *path, const vlad_ds_tensor *t, int n, const char *const *meta_kv,
                  int n_meta, vlad_err *err) {
    cJSON *h = cJSON_CreateObject();
    if (!h)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    int rc = VLAD_OK;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(h, "__metadata__");
        for (int i = 0; m && i < n_meta; i++)
            cJSON_AddStringToObject(m, meta_kv[2 * i], meta_kv[2 * i + 1]);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t count = 1;
        for (int d = 0; d < t[i].ndim; d++)
            count *= (size_t)t[i].shape[d];
        if (t[i].dtype > VLAD_DS_I64 || count * dtype_size[t[i].dtype] != t[i].nbytes) {
            cJSON_Delete(h);
            return vlad_err_set(err, VLAD_EINVAL, "tensor %s: shape does not match its %zu bytes",
                                t[i].name, t[i].nbytes);
        }
        cJSON *o = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(o, "dtype", dtype_names[t[i].dtype]);
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t[i].nbytes)));
        off += t[i].nbytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory (header)");
    size_t jl = strlen(js), hl = (jl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(js);
        return vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(js, 1, jl, f) == jl;
    for (size_t i = jl; ok && i < hl; i++)
        ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++)
        ok = t[i].nbytes == 0 || fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    if (fclose(f) != 0)
        ok = false;
    free(js);
    if (!ok)
        rc = vlad_err_set(err, VLAD_EIO, "%s: write failed", path);
    return rc;
}

/* ---- reader ----------------------------------------------------------------------- */

struct vlad_ds_file {
    int n;
    vlad_ds_tensor *t;
    cJSON *meta;
};

void vlad_ds_free(vlad_ds_file *f) {
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->t[i].data);
    free(f->t);
    cJSON_Delete(f->meta);
    free(f);
}

int vlad_ds_count(const vlad_ds_file *f) { return f->n; }
const vlad_ds_tensor *vlad_ds_get(const vlad_ds_file *f, int i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const vlad_ds_tensor *vlad_ds_find(const vlad_ds_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

const char *vlad_ds_meta(const vlad_ds_file *f, const char *key) {
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_tensor(const cJSON *o, vlad_ds_tensor *t, const uint8_t *data, size_t dlen,
                        vlad_err *err) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(o, "data_offsets");
    if (strlen(o->string) >= sizeof t->name)
        return vlad_err_set(err, VLAD_EPARSE, "tensor name too long");
    snprintf(t->name, sizeof t->name, "%s", o->string);
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return vlad_err_set(err, VLAD_EPARSE, "tensor %s: needs dtype, shape, data_offsets", t->name);
    int d = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(dt->valuestring, dtype_names[i]))
            d = i;
    if (d < 0)
        return vlad_err_set(err, VLAD_EPARSE, "tensor %s: unsupported dtype %s", t->name, dt->valuestring);
    t->dtype = (vlad_ds_dtype)d;
    t->ndim = cJSON_GetArraySize(sh);
    if (t->ndim > VLAD_DS_MAX_DIM)
        return vlad_err_set(err, VLAD_EPARSE, "tensor %s: too many dimensions", t->name);
    double count = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *v = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e12)
            return vlad_err_set(err, VLAD_EPARSE, "tensor %s: bad shape", t->name);
        t->shape[i] = (int64_t)v->valuedouble;
        count *= (double)t->shape[i];
    }
    const cJSON *b = cJSON_GetArrayItem(of, 0), *e = cJSON_GetArrayItem(of, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(e) || b->valuedouble < 0 || e->valuedouble < b->valuedouble ||
        e->valuedouble > (double)dlen)
        return vlad_err_set(err, VLAD_EPARSE, "tensor %s: data_offsets out of range", t->name);
    size_t bo = (size_t)b->valuedouble, eo = (size_t)e->valuedouble;
    if (count * (double)dtype_size[d] != (double)(eo - bo))
        return vlad_err_set(err, VLAD_EPARSE, "tensor %s: shape needs %.0f bytes, offsets give %zu",
                            t->name, count * (double)dtype_size[d], eo - bo);
    t->nbytes = eo - bo;
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->data)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    memcpy(t->data, data + bo, t->nbytes);
    return VLAD_OK;
}

int vlad_ds_read(const char *path, vlad_ds_file **out, vlad_err *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, fp);
        len += r;
        if (r == 0)
            break;
    }
    fclose(fp);
    int rc = VLAD_OK;
    cJSON *h = NULL;
    vlad_ds_file *f = calloc(1, sizeof *f);
    if (!f) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto done;
    }
    uint64_t hl = 0;
    if (len < 8) {
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: shorter than a safetensors header", path);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)buf[i] << (8 * i);
    if (hl > len - 8 || hl > (100u << 20)) {
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: header length %llu exceeds the file", path,
                          (unsigned long long)hl);
        goto done;
    }
    h = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hl);
    if (!cJSON_IsObject(h)) {
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: header is not a JSON object", path);
        goto done;
    }
    int n = cJSON_GetArraySize(h);
    f->t = calloc((size_t)(n > 0 ? n : 1), sizeof *f->t);
    if (!f->t) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto done;
    }
    const uint8_t *data = buf + 8 + hl;
    size_t dlen = len - 8 - (size_t)hl;
    const cJSON *o;
    cJSON_ArrayForEach(o, h) {
        if (!strcmp(o->string, "__metadata__")) {
            f->meta = cJSON_Duplicate(o, 1);
            continue;
        }
        if (!cJSON_IsObject(o)) {
            rc = vlad_err_set(err, VLAD_EPARSE, "%s: entry %s is not an object", path, o->string);
            goto done;
        }
        rc = parse_tensor(o, &f->t[f->n], data, dlen, err);
        if (rc) {
            vlad_err_prefix(err, "%s: ", path);
            goto done;
        }
        f->n++;
    }
done:
    cJSON_Delete(h);
    free(buf);
    if (rc) {
        vlad_ds_free(f);
        return rc;
    }
    *out = f;
    return VLAD_OK;
}

/* ---- episode recorder -------------------------------------------------------------- */

struct vlad_dataset {
    char dir[VLAD_PATH_MAX];
    char last[VLAD_PATH_MAX + 32];
    const vlad_profile *p;
    int n, n_cam, w, h;
    size_t frame_bytes; /* n_cam*h*w*3 */
    size_t T, cap;
    uint8_t *images;
    int64_t *tick;
    float *state, *vel, *act, *ee;
    cJSON *events, *labels;
    int episode;
    char task[32], instruction[160];
    uint64_t seed;
};

static void reset_episode(vlad_dataset *d) {
    d->T = 0;
    cJSON_Delete(d->events);
    cJSON_Delete(d->labels);
    d->events = cJSON_CreateArray();
    d->labels = cJSON_CreateArray();
}

vlad_dataset *vlad_dataset_new(const char *dir, const vlad_profile *p, vlad_err *err) {
    for (int c = 1; c < p->n_cameras; c++)
        if (p->cameras[c].width != p->cameras[0].width || p->cameras[c].height != p->cameras[0].height) {
            vlad_err_set(err, VLAD_EINVAL, "dataset: all cameras must have the same size (%s is %dx%d, %s is %dx%d)",
                         p->cameras[0].name, p->cameras[0].width, p->cameras[0].height, p->cameras[c].name,
                         p->cameras[c].width, p->cameras[c].height);
            return NULL;
        }
    if (strlen(dir) >= VLAD_PATH_MAX) {
        vlad_err_set(err, VLAD_EINVAL, "dataset: path too long");
        return NULL;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        vlad_err_set(err, VLAD_EIO, "dataset: cannot create %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        vlad_err_set(err, VLAD_EIO, "dataset: %s is not a directory", dir);
        return NULL;
    }
    vlad_dataset *d = calloc(1, sizeof *d);
    if (!d) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    d->p = p;
    d->n = p->n_joints;
    d->n_cam = p->n_cameras;
    d->w = p->n_cameras ? p->cameras[0].width : 0;
    d->h = p->n_cameras ? p->cameras[0].height : 0;
    d->frame_bytes = (size_t)d->n_cam * (size_t)d->w * (size_t)d->h * 3;
    reset_episode(d);
    return d;
}

void vlad_dataset_free(vlad_dataset *d) {
    if (!d)
        return;
    free(d->images);
    free(d->tick);
    free(d->state);
    free(d->vel);
    free(d->act);
    free(d->ee);
    cJSON_Delete(d->events);
    cJSON_Delete(d->labels);
    free(d);
}

int vlad_dataset_begin(vlad_dataset *d, int episode, const char *task, const char *instruction,
                       uint64_t seed, vlad_err *err) {
    (void)err;
    reset_episode(d);
    d->episode = episode;
    snprintf(d->task, sizeof d->task, "%s", task);
    snprintf(d->instruction, sizeof d->instruction, "%s", instruction);
    d->seed = seed;
    return VLAD_OK;
}

static int grow(void **p, size_t cap, size_t elem) {
    size_t bytes = cap * elem;
    void *np = realloc(*p, bytes ? bytes : 1);
    if (!np)
        return VLAD_ENOMEM;
    *p = np;
    return VLAD_OK;
}

int vlad_dataset_frame(vlad_dataset *d, int64_t tick, const uint8_t *const *images, const double *q,
                       const double *qd, const double *action, const double ee[3],
                       const vlad_labels *labels, vlad_err *err) {
    if (d->T == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 256;
        if (grow((void **)&d->images, nc, d->frame_bytes) || grow((void **)&d->tick, nc, 8) ||
            grow((void **)&d->state, nc, 4 * (size_t)d->n) || grow((void **)&d->vel, nc, 4 * (size_t)d->n) ||
            grow((void **)&d->act, nc, 4 * (size_t)d->n) || grow((void **)&d->ee, nc, 12))
            return vlad_err_set(err, VLAD_ENOMEM, "dataset: out of memory");
        d->cap = nc;
    }
    size_t t = d->T, cam_bytes = (size_t)d->w * (size_t)d->h * 3;
    for (int c = 0; c < d->n_cam; c++) {
        uint8_t *dst = d->images + t * d->frame_bytes + (size_t)c * cam_bytes;
        if (images && images[c])
            memcpy(dst, images[c], cam_bytes);
        else
            memset(dst, 0, cam_bytes);
    }
    d->tick[t] = tick;
    for (int j = 0; j < d->n; j++) {
        d->state[t * (size_t)d->n + (size_t)j] = (float)q[j];
        d->vel[t * (size_t)d->n + (size_t)j] = qd ? (float)qd[j] : 0.0f;
        d->act[t * (size_t)d->n + (size_t)j] = action ? (float)action[j] : (float)q[j];
    }
    for (int i = 0; i < 3; i++)
        d->ee[t * 3 + (size_t)i] = (float)ee[i];
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "commentary", labels ? labels->commentary : "");
    cJSON *qa = cJSON_AddArrayToObject(l, "qa");
    for (int i = 0; labels && i < labels->n_qa; i++) {
        const char *pair[2] = {labels->qa[i].q, labels->qa[i].a};
        cJSON_AddItemToArray(qa, cJSON_CreateStringArray(pair, 2));
    }
    cJSON_AddItemToArray(d->labels, l);
    d->T++;
    return VLAD_OK;
}

void vlad_dataset_set_action(vlad_dataset *d, const double *action) {
    if (!d->T)
        return;
    for (int j = 0; j < d->n; j++)
        d->act[(d->T - 1) * (size_t)d->n + (size_t)j] = (float)action[j];
}

int vlad_dataset_event(vlad_dataset *d, int64_t tick, int kind, const char *detail, vlad_err *err) {
    static const char *names[] = {"?", "EPISODE_START", "WORLD_CHANGE", "SUCCESS", "EPISODE_END"};
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    cJSON_AddNumberToObject(e, "frame", (double)d->T);
    cJSON_AddNumberToObject(e, "tick", (double)tick);
    cJSON_AddStringToObject(e, "kind", kind >= 1 && kind <= 4 ? names[kind] : "?");
    cJSON_AddStringToObject(e, "detail", detail ? detail : "");
    cJSON_AddItemToArray(d->events, e);
    return VLAD_OK;
}

const char *vlad_dataset_last_path(const vlad_dataset *d) { return d->last; }

static cJSON *name_list(const vlad_profile *p, bool cams) {
    cJSON *a = cJSON_CreateArray();
    int n = cams ? p->n_cameras : p->n_joints;
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(cams ? p->cameras[i].name : p->joints[i].name));
    return a;
}

int vlad_dataset_end(vlad_dataset *d, int success, vlad_err *err) {
    int64_t T = (int64_t)d->T, n = d->n;
    vlad_ds_tensor t[6] = {
        {"images", VLAD_DS_U8, 5, {T, d->n_cam, d->h, d->w, 3}, d->images, d->T * d->frame_bytes},
        {"tick", VLAD_DS_I64, 1, {T}, d->tick, d->T * 8},
        {"state", VLAD_DS_F32, 2, {T, n}, d->state, d->T * 4 * (size_t)n},
        {"velocity", VLAD_DS_F32, 2, {T, n}, d->vel, d->T * 4 * (size_t)n},
        {"action", VLAD_DS_F32, 2, {T, n}, d->act, d->T * 4 * (size_t)n},
        {"ee", VLAD_DS_F32, 2, {T, 3}, d->ee, d->T * 12},
    };
    char seed[32], ep[16], hz[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)d->seed);
    snprintf(ep, sizeof ep, "%d", d->episode);
    snprintf(hz, sizeof hz, "%g", d->p->control_hz);
    cJSON *jn = name_list(d->p, false), *cn = name_list(d->p, true);
    char *s_jn = cJSON_PrintUnformatted(jn), *s_cn = cJSON_PrintUnformatted(cn);
    char *s_ev = cJSON_PrintUnformatted(d->events), *s_lb = cJSON_PrintUnformatted(d->labels);
    cJSON_Delete(jn);
    cJSON_Delete(cn);
    int rc;
    if (!s_jn || !s_cn || !s_ev || !s_lb) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "dataset: out of memory");
    } else {
        const char *meta[] = {"format", "vlad-sim-episode-1", "task", d->task, "instruction",
                              d->instruction, "seed", seed, "episode", ep, "control_hz", hz,
                              "success", success ? "true" : "false", "robot", d->p->robot,
                              "joint_names", s_jn, "camera_names", s_cn, "events", s_ev,
                              "labels", s_lb};
        snprintf(d->last, sizeof d->last, "%s/episode_%06d.safetensors", d->dir, d->episode);
        rc = vlad_ds_write(d->last, t, 6, meta, (int)(sizeof meta / sizeof meta[0] / 2), err);
    }
    free(s_jn);
    free(s_cn);
    free(s_ev);
    free(s_lb);
    reset_episode(d);
    return rc;
}
