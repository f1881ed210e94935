/* action_queue.h — the control thread's queue of actions, keyed by tick.
 *
 * A timeline of the next VLAD_AQ_CAP ticks. A chunk covers ticks [start_tick,
 * start_tick + len); pushing it supersedes everything queued from its start tick on
 * (the switch to a new chunk happens exactly at its start tick), and its actions for
 * ticks already past are dropped by tick number, never by counting pops. The control
 * thread asks for the action of tick τ; each action is used once. Owned by one thread
 * (the control thread); no allocation. */
#ifndef VLAD_ACTION_QUEUE_H
#define VLAD_ACTION_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define VLAD_AQ_MAX_H 256
#define VLAD_AQ_MAX_DIM 32
#define VLAD_AQ_CAP (2 * VLAD_AQ_MAX_H) /* ticks the timeline spans ahead of now */

typedef struct vlad_chunk {
    uint64_t id;         /* never 0 */
    int64_t start_tick;  /* tick of values[0] */
    int64_t obs_tick;    /* tick of the observation it was conditioned on */
    int64_t obs_robot_tick; /* the robot's own tick of that observation (reports only) */
    int len;             /* actions to execute (<= VLAD_AQ_MAX_H) */
    int dim;             /* values per action */
    float values[VLAD_AQ_MAX_H * VLAD_AQ_MAX_DIM]; /* row-major [len][dim] */
} vlad_chunk;

typedef struct vlad_action_queue {
    int dim;
    int64_t now;           /* first tick not yet past */
    int64_t end;           /* one past the last queued tick */
    int64_t newest_start;  /* start tick of the newest chunk pushed */
    int64_t tick_of[VLAD_AQ_CAP];   /* slot -> the tick it holds, -1 empty */
    uint64_t chunk_of[VLAD_AQ_CAP];
    int64_t obs_of[VLAD_AQ_CAP];
    int64_t obs_robot_of[VLAD_AQ_CAP];
    float values[VLAD_AQ_CAP * VLAD_AQ_MAX_DIM];
    /* statistics */
    uint64_t switches;          /* times the executed action came from a different chunk */
    uint64_t overwritten;       /* queued future actions superseded by a newer chunk */
    double last_discontinuity;  /* max_j |a_first_new - a_last_old| at the last switch */
    float last_action[VLAD_AQ_MAX_DIM];
    uint64_t last_chunk;
    bool has_last;
} vlad_action_queue;

/* Empty queue for actions of `dim` values. */
int vlad_aq_init(vlad_action_queue *q, int dim, vlad_err *err);

/* Drop everything (e.g. on reset or e-stop). */
void vlad_aq_clear(vlad_action_queue *q);

/* Install chunk c (copied): from c->start_tick on it replaces whatever was queued; its
 * actions for past ticks are dropped. Refused, with the queue unchanged: a chunk starting
 * before the newest one pushed (VLAD_ESTATE), one that ends beyond the timeline the queue
 * spans while actions are still queued (start_tick + len > now + VLAD_AQ_CAP: it would alias
 * them; VLAD_ERANGE),
 * a negative or overflowing start tick (VLAD_EINVAL). */
int vlad_aq_push(vlad_action_queue *q, const vlad_chunk *c, vlad_err *err);

/* LeRobot's asynchronous merge (async.mode merge), applied to chunk c before it is gated
 * and pushed: for each tick t >= max(c->start_tick, now) of c where the queue still holds
 * an action `old` from another chunk, c's action `new` for t becomes, joint by joint,
 *     (float)(w_new * (double)new + (1 - w_new) * (double)old)
 * (w_new in [0, 1]: 1 = new only, 0 = old only; a non-finite value stays non-finite, for
 * the gate to reject). c's other ticks are left as they are; the queue is not changed
 * (pushing c then supersedes the old actions from c's start, those beyond its end
 * included). The same refusals as vlad_aq_push, with c unchanged; a w_new outside [0, 1]
 * is VLAD_EINVAL. *blended (if non-NULL) gets the number of ticks blended. */
int vlad_aq_merge(const vlad_action_queue *q, vlad_chunk *c, double w_new, int *blended,
                  vlad_err *err);

/* The action for `tick`, or NULL if none is queued. Ticks before `tick` become past.
 * *chunk_id and *obs_tick (if non-NULL) describe its origin. */
const float *vlad_aq_get(vlad_action_queue *q, int64_t tick, uint64_t *chunk_id, int64_t *obs_tick);

/* The robot tick of the observation behind the action of `tick` (-1 if none queued). */
int64_t vlad_aq_obs_robot_tick(const vlad_action_queue *q, int64_t tick);

/* Number of actions available for ticks tick, tick+1, ... without a gap. */
int vlad_aq_remaining(const vlad_action_queue *q, int64_t tick);

/* The last queued action (the target pending at the queue's final tick), or NULL if
 * none; *at_tick (if non-NULL) gets that tick. */
const float *vlad_aq_last(const vlad_action_queue *q, int64_t *at_tick);

/* The action the queue holds for `tick` without advancing, or NULL. */
const float *vlad_aq_peek(const vlad_action_queue *q, int64_t tick);

#endif
