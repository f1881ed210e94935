#include "policy_fit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "action_queue.h"

typedef struct fit {
    vlad_fit_report report;
    void *user;
    int n;
} fit;

static void problem(fit *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(fit *f, const char *key, const char *fmt, ...) {
    f->n++;
    if (!f->report)
        return;
    char msg[VLAD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    f->report(f->user, key, msg);
}

int vlad_model_fits(const vlad_model_shape *m, const vlad_profile *p, vlad_views *views,
                    vlad_fit_report report, void *user) {
    fit f = {report, user, 0};
    const char *what = m->what ? m->what : "the model";
    const char *key = m->key ? m->key : "policy.model";
    vlad_views v;
    vlad_err ve = {0};
    const char *json = m->views && m->views[0] ? m->views : NULL;
    if (vlad_views_parse(json, m->n_cameras, p->n_cameras, &v, &ve))
        problem(&f, "cameras", "cameras: %s: %s", what, ve.msg);
    else if (views)
        *views = v;
    if (m->action_dim != p->n_joints)
        problem(&f, "joints",
                "joints: the profile has %d joints, but %s has action_dim %d (one action per "
                "joint)",
                p->n_joints, what, m->action_dim);
    if (m->state_dim != p->n_joints)
        problem(&f, "joints",
                "joints: the profile has %d joints, but %s has state_dim %d (one state value per "
                "joint)",
                p->n_joints, what, m->state_dim);
    if (m->action_dim > VLAD_AQ_MAX_DIM)
        problem(&f, key, "%s: action_dim %d exceeds the daemon's maximum %d", what, m->action_dim,
                VLAD_AQ_MAX_DIM);
    for (int i = 0; i < p->n_cameras; i++) {
        const vlad_camera *cam = &p->cameras[i];
        if (cam->width != m->image_size || cam->height != m->image_size) {
            char k[32];
            snprintf(k, sizeof k, "cameras[%d]", i);
            problem(&f, k,
                    "cameras[%d] (%s): width x height is %dx%d, but %s takes %dx%d images "
                    "(image_size %d)",
                    i, cam->name, cam->width, cam->height, what, m->image_size, m->image_size,
                    m->image_size);
        }
    }
    if (m->chunk_size < 1 || m->chunk_size > VLAD_AQ_MAX_H)
        problem(&f, key, "%s: chunk_size %d is outside the daemon's action queue horizon 1..%d",
                what, m->chunk_size, VLAD_AQ_MAX_H);
    else if (p->async.execution_horizon > m->chunk_size)
        problem(&f, "async.execution_horizon",
                "async.execution_horizon: %d actions per chunk, but %s predicts chunks of only "
                "%d (chunk_size)",
                p->async.execution_horizon, what, m->chunk_size);
    return f.n;
}

typedef struct joined {
    char buf[VLAD_ERR_MSG_MAX];
    size_t len;
} joined;

static void join(void *user, const char *key, const char *msg) {
    (void)key;
    joined *j = user;
    if (j->len >= sizeof j->buf - 1)
        return;
    int w = snprintf(j->buf + j->len, sizeof j->buf - j->len, "%s%s", j->len ? "; " : "", msg);
    if (w > 0)
        j->len += (size_t)w < sizeof j->buf - j->len ? (size_t)w : sizeof j->buf - j->len - 1;
}

int vlad_model_fits_err(const vlad_model_shape *m, const vlad_profile *p, vlad_views *views,
                        vlad_err *err) {
    joined j = {.len = 0};
    j.buf[0] = 0;
    if (vlad_model_fits(m, p, views, join, &j) == 0)
        return VLAD_OK;
    return vlad_err_set(err, VLAD_EINVAL, "%s", j.buf);
}

int vlad_trained_max_delay(long trained) {
    return trained > 0 && trained <= VLAD_AQ_MAX_H ? (int)trained : 0;
}
