/* dataset.c — the episode recorder (safetensors via common/safetensors); see dataset.h. */
#include "dataset.h"
#include "path.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    if (vlad_mkdir_p(dir, err)) /* also fails when dir exists and is not a directory */
        return NULL;
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

/* Write one episode file with the common streaming writer. */
static int write_episode(vlad_dataset *d, const char *const *meta, int n_meta, vlad_err *err) {
    int64_t T = (int64_t)d->T, n = d->n;
    const struct {
        const char *name;
        vlad_dtype dt;
        int ndim;
        int64_t shape[5];
        const void *data;
        size_t bytes;
    } t[6] = {
        {"images", VLAD_DT_U8, 5, {T, d->n_cam, d->h, d->w, 3}, d->images, d->T * d->frame_bytes},
        {"tick", VLAD_DT_I64, 1, {T}, d->tick, d->T * 8},
        {"state", VLAD_DT_F32, 2, {T, n}, d->state, d->T * 4 * (size_t)n},
        {"velocity", VLAD_DT_F32, 2, {T, n}, d->vel, d->T * 4 * (size_t)n},
        {"action", VLAD_DT_F32, 2, {T, n}, d->act, d->T * 4 * (size_t)n},
        {"ee", VLAD_DT_F32, 2, {T, 3}, d->ee, d->T * 12},
    };
    vlad_st_writer *w = vlad_st_writer_new();
    if (!w)
        return vlad_err_set(err, VLAD_ENOMEM, "dataset: out of memory");
    int rc = VLAD_OK;
    for (int i = 0; i < n_meta && !rc; i++)
        rc = vlad_st_writer_meta(w, meta[2 * i], meta[2 * i + 1], err);
    for (int i = 0; i < 6 && !rc; i++)
        rc = vlad_st_writer_add(w, t[i].name, t[i].dt, t[i].ndim, t[i].shape, err);
    if (!rc)
        rc = vlad_st_writer_begin(w, d->last, err);
    for (int i = 0; i < 6 && !rc; i++)
        rc = vlad_st_writer_data(w, t[i].data, t[i].bytes, err);
    if (!rc)
        rc = vlad_st_writer_finish(w, err);
    vlad_st_writer_free(w);
    return rc;
}

int vlad_dataset_end(vlad_dataset *d, int success, vlad_err *err) {
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
        rc = write_episode(d, meta, (int)(sizeof meta / sizeof meta[0] / 2), err);
    }
    free(s_jn);
    free(s_cn);
    free(s_ev);
    free(s_lb);
    reset_episode(d);
    return rc;
}
