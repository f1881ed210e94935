#include "scheduler.h"

#include <math.h>
#include <string.h>

int vlad_sched_init(vlad_sched *s, const vlad_profile *p, int horizon, int dim, vlad_err *err) {
    memset(s, 0, sizeof *s);
    if (horizon < 1 || horizon > VLAD_AQ_MAX_H)
        return vlad_err_set(err, VLAD_EINVAL, "scheduler: model horizon %d not in [1, %d]", horizon,
                            VLAD_AQ_MAX_H);
    if (dim != p->n_joints)
        return vlad_err_set(err, VLAD_EINVAL,
                            "scheduler: model action_dim %d but the profile has %d joints", dim,
                            p->n_joints);
    s->mode = p->async.mode;
    s->K = p->async.execution_horizon < horizon ? p->async.execution_horizon : horizon;
    s->threshold = p->async.trigger_threshold;
    s->horizon = horizon;
    s->dim = dim;
    double tick_s = 1.0 / p->control_hz, lag_s = p->async.tracking_lag_ms / 1000.0;
    s->lag_alpha = lag_s > 0 ? 1.0 - exp(-tick_s / lag_s) : 1.0;
    s->merge_weight = p->async.merge_weight;
    s->next_id = 1;
    return VLAD_OK;
}

void vlad_rollforward(const vlad_action_queue *q, int64_t now, int64_t start_tick, const double *cmd,
                      const double *state, double lag_alpha, int dim, double *out) {
    double target[VLAD_AQ_MAX_DIM], x[VLAD_AQ_MAX_DIM];
    for (int j = 0; j < dim; j++) {
        target[j] = cmd[j];
        x[j] = state ? state[j] : cmd[j];
    }
    int64_t end = start_tick - now > VLAD_AQ_CAP ? now + VLAD_AQ_CAP : start_tick;
    int64_t extra = start_tick - end; /* ticks past the queue's span: the target holds */
    for (int64_t t = now; t < end; t++) {
        const float *a = vlad_aq_peek(q, t);
        if (a)
            for (int j = 0; j < dim; j++)
                target[j] = a[j];
        for (int j = 0; j < dim; j++)
            x[j] += lag_alpha * (target[j] - x[j]);
    }
    for (int64_t t = 0; t < extra && t < VLAD_AQ_CAP && lag_alpha < 1.0; t++)
        for (int j = 0; j < dim; j++)
            x[j] += lag_alpha * (target[j] - x[j]);
    for (int j = 0; j < dim; j++)
        out[j] = lag_alpha >= 1.0 ? target[j] : x[j];
}

bool vlad_sched_want(vlad_sched *s, const vlad_action_queue *q, int64_t now, const double *obs_state,
                     int64_t obs_tick, const double *cmd, int delay, bool busy, vlad_infer_req *req) {
    if (busy)
        return false;
    int rem = vlad_aq_remaining(q, now);
    int trigger = s->threshold > delay ? s->threshold : delay;
    if (s->mode == VLAD_ASYNC_SYNC ? rem > 0 : rem > trigger)
        return false;
    memset(req, 0, sizeof *req);
    req->id = s->next_id++;
    req->obs_tick = obs_tick;
    req->issue_tick = now;
    req->delay_ticks = delay;
    double st[VLAD_AQ_MAX_DIM];
    switch (s->mode) {
    case VLAD_ASYNC_SYNC:
        req->start_tick = -1;
        req->len = s->K;
        memcpy(st, obs_state, sizeof(double) * (size_t)s->dim);
        break;
    case VLAD_ASYNC_NAIVE:
    case VLAD_ASYNC_MERGE: /* naive's timing; the blend happens on install */
        req->start_tick = obs_tick;
        req->len = s->K + delay < s->horizon ? s->K + delay : s->horizon;
        memcpy(st, obs_state, sizeof(double) * (size_t)s->dim);
        break;
    default: /* VLASH */
        req->start_tick = now + delay; /* as soon as it can be ready; supersedes the rest */
        req->len = s->K;
        vlad_rollforward(q, now, req->start_tick, cmd, obs_state, s->lag_alpha, s->dim, st);
        break;
    }
    for (int j = 0; j < s->dim; j++)
        req->state[j] = (float)st[j];
    return true;
}

void vlad_sched_place(const vlad_sched *s, const vlad_infer_req *req, const float *actions,
                      int64_t now, vlad_chunk *out) {
    out->id = req->id;
    out->obs_tick = req->obs_tick;
    out->obs_robot_tick = req->obs_robot_tick;
    out->start_tick = req->start_tick < 0 ? now : req->start_tick;
    out->len = req->len;
    out->dim = s->dim;
    memcpy(out->values, actions, sizeof(float) * (size_t)req->len * (size_t)s->dim);
}
