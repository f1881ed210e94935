#include "views.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vlad_views_identity(int n_cameras, vlad_views *out) {
    memset(out, 0, sizeof *out);
    out->n = n_cameras < 0 ? 0 : n_cameras > VLAD_MAX_VIEWS ? VLAD_MAX_VIEWS : n_cameras;
    for (int i = 0; i < out->n; i++)
        out->v[i] = (vlad_view){.camera = i, .lag = 0};
}

/* an integer member in [lo, hi] */
static int int_field(const cJSON *o, const char *name, int lo, int hi, int view, int *out,
                     vlad_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!x)
        return vlad_err_set(err, VLAD_EINVAL, "vlad.views[%d]: no \"%s\"", view, name);
    double d = cJSON_IsNumber(x) ? x->valuedouble : NAN;
    if (!(d == floor(d)) || d < lo || d > hi)
        return vlad_err_set(err, VLAD_EINVAL, "vlad.views[%d].%s: must be an integer in [%d, %d]",
                            view, name, lo, hi);
    *out = (int)d;
    return VLAD_OK;
}

int vlad_views_parse(const char *json, int n_views, int n_cameras, vlad_views *out,
                     vlad_err *err) {
    if (n_views < 1 || n_views > VLAD_MAX_VIEWS)
        return vlad_err_set(err, VLAD_EINVAL, "views: %d image inputs (1..%d)", n_views,
                            VLAD_MAX_VIEWS);
    if (!json) {
        if (n_views != n_cameras)
            return vlad_err_set(err, VLAD_EINVAL,
                                "the model takes %d camera image%s, the robot has %d camera%s "
                                "(and the checkpoint has no vlad.views saying which)",
                                n_views, n_views == 1 ? "" : "s", n_cameras,
                                n_cameras == 1 ? "" : "s");
        vlad_views_identity(n_views, out);
        return VLAD_OK;
    }
    cJSON *root = cJSON_Parse(json);
    int rc = VLAD_OK;
    vlad_views v = {0};
    if (!cJSON_IsArray(root)) {
        rc = vlad_err_set(err, VLAD_EINVAL, "vlad.views: not a JSON array");
        goto done;
    }
    if (cJSON_GetArraySize(root) != n_views) {
        rc = vlad_err_set(err, VLAD_EINVAL, "vlad.views: %d views, but the model takes %d images",
                          cJSON_GetArraySize(root), n_views);
        goto done;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, root) {
        if (!cJSON_IsObject(o)) {
            rc = vlad_err_set(err, VLAD_EINVAL, "vlad.views[%d]: not an object", v.n);
            goto done;
        }
        for (const cJSON *k = o->child; k; k = k->next)
            if (strcmp(k->string, "camera") && strcmp(k->string, "lag")) {
                rc = vlad_err_set(err, VLAD_EINVAL, "vlad.views[%d]: unknown key \"%s\"", v.n,
                                  k->string);
                goto done;
            }
        vlad_view *w = &v.v[v.n];
        if (n_cameras < 1) {
            rc = vlad_err_set(err, VLAD_EINVAL, "vlad.views[%d]: the robot has no camera", v.n);
            goto done;
        }
        if ((rc = int_field(o, "camera", 0, n_cameras - 1, v.n, &w->camera, err)) ||
            (rc = int_field(o, "lag", 0, VLAD_MAX_VIEW_LAG, v.n, &w->lag, err)))
            goto done;
        if (w->lag > v.max_lag)
            v.max_lag = w->lag;
        v.n++;
    }
    *out = v;
done:
    cJSON_Delete(root);
    return rc;
}

void vlad_views_format(const vlad_views *v, char *buf, size_t cap) {
    size_t n = 0;
    if (!cap)
        return;
    buf[0] = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < v->n && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s{\"camera\":%d,\"lag\":%d}", i ? "," : "",
                              v->v[i].camera, v->v[i].lag);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

int64_t vlad_views_frame_index(const vlad_views *v, int view, int64_t t) {
    int lag = view >= 0 && view < v->n ? v->v[view].lag : 0;
    return t - lag > 0 ? t - lag : 0;
}

/* One camera's ring of the last `depth` images: slot (head - k) % depth is the k-th newest. */
typedef struct cam_ring {
    size_t bytes;
    uint8_t *data;  /* depth * bytes */
    int64_t *tick;  /* depth */
    int count;      /* images held (<= depth) */
    int head;       /* slot of the newest */
} cam_ring;

struct vlad_view_hist {
    vlad_views views;
    int n_cameras, depth;
    size_t frame_bytes;
    int64_t from_tick; /* images of earlier ticks are ignored (the last reset) */
    cam_ring cam[VLAD_MAX_VIEWS];
};

vlad_view_hist *vlad_view_hist_new(const vlad_views *v, int n_cameras, const size_t *cam_bytes,
                                   vlad_err *err) {
    if (n_cameras < 0 || n_cameras > VLAD_MAX_VIEWS || !v || v->n < 0 || v->n > VLAD_MAX_VIEWS) {
        vlad_err_set(err, VLAD_EINVAL, "views: %d cameras (0..%d)", n_cameras, VLAD_MAX_VIEWS);
        return NULL;
    }
    for (int i = 0; i < v->n; i++)
        if (v->v[i].camera < 0 || v->v[i].camera >= n_cameras || v->v[i].lag < 0 ||
            v->v[i].lag > VLAD_MAX_VIEW_LAG) {
            vlad_err_set(err, VLAD_EINVAL, "views[%d]: camera %d / lag %d out of range", i,
                         v->v[i].camera, v->v[i].lag);
            return NULL;
        }
    vlad_view_hist *h = calloc(1, sizeof *h);
    if (!h) {
        vlad_err_set(err, VLAD_ENOMEM, "views: out of memory");
        return NULL;
    }
    h->views = *v;
    h->n_cameras = n_cameras;
    h->depth = v->max_lag + 1;
    h->from_tick = INT64_MIN;
    for (int c = 0; c < n_cameras; c++) {
        cam_ring *r = &h->cam[c];
        r->bytes = cam_bytes[c];
        r->data = calloc((size_t)h->depth, r->bytes ? r->bytes : 1);
        r->tick = calloc((size_t)h->depth, sizeof *r->tick);
        if (!r->data || !r->tick) {
            vlad_err_set(err, VLAD_ENOMEM, "views: out of memory");
            vlad_view_hist_free(h);
            return NULL;
        }
    }
    for (int i = 0; i < v->n; i++)
        h->frame_bytes += cam_bytes[v->v[i].camera];
    return h;
}

void vlad_view_hist_free(vlad_view_hist *h) {
    if (!h)
        return;
    for (int c = 0; c < h->n_cameras; c++) {
        free(h->cam[c].data);
        free(h->cam[c].tick);
    }
    free(h);
}

size_t vlad_view_hist_frame_bytes(const vlad_view_hist *h) { return h->frame_bytes; }

static void forget(vlad_view_hist *h) {
    for (int c = 0; c < h->n_cameras; c++)
        h->cam[c].count = 0;
}

void vlad_view_hist_reset(vlad_view_hist *h, int64_t from_tick) {
    forget(h);
    h->from_tick = from_tick;
}

void vlad_view_hist_put(vlad_view_hist *h, int camera, int64_t tick, const uint8_t *data) {
    if (camera < 0 || camera >= h->n_cameras)
        return;
    if (tick < h->from_tick) {
        bool since = false; /* images of this episode (ticks >= from_tick) held? */
        for (int c = 0; c < h->n_cameras; c++)
            since |= h->cam[c].count > 0;
        if (!since)
            return; /* a late observation from before the reset */
        forget(h);  /* the robot restarted after the reset: its ticks begin again */
        h->from_tick = INT64_MIN;
    }
    cam_ring *r = &h->cam[camera];
    if (r->count && tick < r->tick[r->head])
        forget(h); /* the robot's clock went back: a restarted robot, a new world */
    if (!r->count || tick > r->tick[r->head]) {
        r->head = r->count ? (r->head + 1) % h->depth : 0;
        if (r->count < h->depth)
            r->count++;
    }
    r->tick[r->head] = tick;
    memcpy(r->data + (size_t)r->head * r->bytes, data, r->bytes);
}

/* The image view (camera, lag) takes for tick t: the newest with tick <= t - lag, else the
 * oldest held; NULL when the camera has none. */
static const uint8_t *pick(const vlad_view_hist *h, const vlad_view *v, int64_t t) {
    const cam_ring *r = &h->cam[v->camera];
    if (!r->count)
        return NULL;
    int64_t want = t - v->lag;
    int slot = r->head;
    for (int k = 0; k < r->count; k++) {
        slot = ((r->head - k) % h->depth + h->depth) % h->depth;
        if (r->tick[slot] <= want)
            break;
    }
    return r->data + (size_t)slot * r->bytes;
}

void vlad_view_hist_compose(const vlad_view_hist *h, int64_t tick, uint8_t *out) {
    size_t off = 0;
    for (int i = 0; i < h->views.n; i++) {
        const vlad_view *v = &h->views.v[i];
        size_t bytes = h->cam[v->camera].bytes;
        const uint8_t *src = pick(h, v, tick);
        if (src)
            memcpy(out + off, src, bytes);
        else
            memset(out + off, 0, bytes);
        off += bytes;
    }
}
