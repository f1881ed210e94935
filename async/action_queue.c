#include "action_queue.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define SLOT(q, t) ((size_t)((uint64_t)(t) % VLAD_AQ_CAP))

int vlad_aq_init(vlad_action_queue *q, int dim, vlad_err *err) {
    memset(q, 0, sizeof *q);
    if (dim < 1 || dim > VLAD_AQ_MAX_DIM)
        return vlad_err_set(err, VLAD_EINVAL, "action queue: dim %d not in [1, %d]", dim,
                            VLAD_AQ_MAX_DIM);
    q->dim = dim;
    vlad_aq_clear(q);
    return VLAD_OK;
}

void vlad_aq_clear(vlad_action_queue *q) {
    for (size_t i = 0; i < VLAD_AQ_CAP; i++)
        q->tick_of[i] = -1;
    q->now = 0; /* a cleared queue may start a new timeline */
    q->end = INT64_MIN;
    q->newest_start = INT64_MIN;
    q->has_last = false;
}

static bool valid(const vlad_action_queue *q, int64_t tick) {
    return tick >= 0 && tick >= q->now && q->tick_of[SLOT(q, tick)] == tick;
}

/* The refusals shared by push and merge (action_queue.h). */
static int check_chunk(const vlad_action_queue *q, const vlad_chunk *c, vlad_err *err) {
    if (c->dim != q->dim)
        return vlad_err_set(err, VLAD_EINVAL, "action queue: chunk dim %d, queue dim %d", c->dim,
                            q->dim);
    if (c->len < 1 || c->len > VLAD_AQ_MAX_H)
        return vlad_err_set(err, VLAD_EINVAL, "action queue: chunk length %d not in [1, %d]",
                            c->len, VLAD_AQ_MAX_H);
    if (c->start_tick < 0)
        return vlad_err_set(err, VLAD_EINVAL, "action queue: chunk start tick %lld is negative",
                            (long long)c->start_tick);
    if (c->start_tick > INT64_MAX / 4)
        return vlad_err_set(err, VLAD_EINVAL, "action queue: chunk start tick %lld is absurd",
                            (long long)c->start_tick);
    /* the span must not reach the slots of ticks still queued; an empty queue (cleared, or
     * everything past) has none, whatever its `now` */
    bool empty = q->end == INT64_MIN || q->end <= q->now;
    if (!empty && c->start_tick + c->len > q->now + VLAD_AQ_CAP)
        return vlad_err_set(err, VLAD_ERANGE,
                            "action queue: chunk %llu ends at tick %lld, beyond the %d ticks the "
                            "queue spans from tick %lld",
                            (unsigned long long)c->id, (long long)(c->start_tick + c->len),
                            VLAD_AQ_CAP, (long long)q->now);
    if (c->start_tick < q->newest_start)
        return vlad_err_set(err, VLAD_ESTATE,
                            "action queue: chunk %llu starts at tick %lld, before the installed "
                            "chunk's %lld",
                            (unsigned long long)c->id, (long long)c->start_tick,
                            (long long)q->newest_start);
    return VLAD_OK;
}

/* The first tick of c that is not past: earlier ones are dropped by number. */
static int64_t first_tick(const vlad_action_queue *q, const vlad_chunk *c) {
    return c->start_tick > q->now ? c->start_tick : q->now;
}

int vlad_aq_merge(const vlad_action_queue *q, vlad_chunk *c, double w_new, int *blended,
                  vlad_err *err) {
    if (blended)
        *blended = 0;
    if (!(w_new >= 0.0 && w_new <= 1.0))
        return vlad_err_set(err, VLAD_EINVAL, "action queue: merge weight %g not in [0, 1]", w_new);
    int rc = check_chunk(q, c, err);
    if (rc)
        return rc;
    int n = 0;
    int64_t end = c->start_tick + c->len;
    for (int64_t t = first_tick(q, c); t < end && t < q->end; t++) {
        size_t s = SLOT(q, t);
        if (!valid(q, t) || q->chunk_of[s] == c->id)
            continue;
        const float *old = &q->values[s * VLAD_AQ_MAX_DIM];
        float *v = &c->values[(size_t)(t - c->start_tick) * (size_t)c->dim];
        for (int j = 0; j < c->dim; j++)
            v[j] = (float)(w_new * (double)v[j] + (1.0 - w_new) * (double)old[j]);
        n++;
    }
    if (blended)
        *blended = n;
    return VLAD_OK;
}

int vlad_aq_push(vlad_action_queue *q, const vlad_chunk *c, vlad_err *err) {
    int rc = check_chunk(q, c, err);
    if (rc)
        return rc;
    /* len <= VLAD_AQ_MAX_H = VLAD_AQ_CAP / 2: the chunk always fits the timeline */
    q->newest_start = c->start_tick;
    int64_t end = c->start_tick + c->len;
    /* the newer chunk supersedes everything queued from its start on */
    for (int64_t t = first_tick(q, c); t < q->end; t++)
        if (valid(q, t)) {
            q->tick_of[SLOT(q, t)] = -1;
            q->overwritten++;
        }
    /* ticks already past are dropped by number */
    for (int64_t t = first_tick(q, c); t < end; t++) {
        size_t s = SLOT(q, t);
        memcpy(&q->values[s * VLAD_AQ_MAX_DIM], &c->values[(size_t)(t - c->start_tick) * (size_t)c->dim],
               sizeof(float) * (size_t)c->dim);
        q->tick_of[s] = t;
        q->chunk_of[s] = c->id;
        q->obs_of[s] = c->obs_tick;
        q->obs_robot_of[s] = c->obs_robot_tick;
    }
    q->end = end;
    return VLAD_OK;
}

const float *vlad_aq_peek(const vlad_action_queue *q, int64_t tick) {
    return valid(q, tick) ? &q->values[SLOT(q, tick) * VLAD_AQ_MAX_DIM] : NULL;
}

const float *vlad_aq_get(vlad_action_queue *q, int64_t tick, uint64_t *chunk_id, int64_t *obs_tick) {
    if (tick < 0 || tick > INT64_MAX / 4)
        return NULL; /* no chunk is ever queued there (push refuses it) */
    if (tick > q->now)
        q->now = tick; /* everything before `tick` is past */
    bool ok = valid(q, tick);
    if (tick + 1 > q->now)
        q->now = tick + 1; /* `tick` itself is now past too: an action is used once */
    if (!ok)
        return NULL;
    size_t s = SLOT(q, tick);
    const float *a = &q->values[s * VLAD_AQ_MAX_DIM];
    if (q->has_last && q->chunk_of[s] != q->last_chunk) {
        double d = 0;
        for (int j = 0; j < q->dim; j++)
            d = fmax(d, fabs((double)a[j] - (double)q->last_action[j]));
        q->last_discontinuity = d;
        q->switches++;
    }
    memcpy(q->last_action, a, sizeof(float) * (size_t)q->dim);
    q->last_chunk = q->chunk_of[s];
    q->has_last = true;
    if (chunk_id)
        *chunk_id = q->chunk_of[s];
    if (obs_tick)
        *obs_tick = q->obs_of[s];
    return a;
}

int64_t vlad_aq_obs_robot_tick(const vlad_action_queue *q, int64_t tick) {
    return valid(q, tick) ? q->obs_robot_of[SLOT(q, tick)] : -1;
}

int vlad_aq_remaining(const vlad_action_queue *q, int64_t tick) {
    int n = 0;
    while (valid(q, tick + n) && n < VLAD_AQ_CAP)
        n++;
    return n;
}

const float *vlad_aq_last(const vlad_action_queue *q, int64_t *at_tick) {
    if (q->end == INT64_MIN || !valid(q, q->end - 1))
        return NULL;
    if (at_tick)
        *at_tick = q->end - 1;
    return &q->values[SLOT(q, q->end - 1) * VLAD_AQ_MAX_DIM];
}
