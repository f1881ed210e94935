/* scheduler.h — when to start an inference, what state to condition it on, and where
 * its chunk goes on the tick timeline: sync, naive, VLASH (future-state-aware) and merge
 * (LeRobot's asynchronous client).
 *
 * Called by the control thread at the start of each tick τ, before the action for τ is
 * taken, with the number of queued actions rem = vlad_aq_remaining(q, τ) and the delay
 * estimate Δ (ticks). K = execution horizon.
 *   sync   trigger when rem == 0; condition on the observed state; the chunk starts at
 *          the tick it is installed (the robot waited, its state did not change);
 *          K actions are kept.
 *   naive  trigger when rem <= max(threshold, Δ); condition on the observed state; the
 *          chunk's index 0 is the observation's tick, so the Δ actions for ticks that
 *          passed during inference are dropped when it lands; K + Δ actions are kept so
 *          about K execute.
 *   vlash  same trigger; the chunk starts at s = τ + Δ, the first tick it can be ready
 *          for (with the trigger at rem = Δ that is right after the queued actions; a
 *          larger threshold re-plans earlier and supersedes the rest of the queue from s);
 *          condition on the state rolled forward to s: the target pending at s-1
 *          (optionally through a first-order tracking-lag model); no action is skipped;
 *          K actions are kept. A chunk arriving after s is still aligned by tick:
 *          actions for past ticks are dropped by number.
 *   merge  LeRobot's async merge: trigger, conditioning, placement and length as naive;
 *          on install, each tick of the new chunk that still has a queued action from an
 *          older chunk executes merge_weight·new + (1 − merge_weight)·old (vlad_aq_merge,
 *          called by the control thread before the gate); ticks beyond the new chunk's
 *          end are dropped, as in every mode.
 * threshold = K re-plans whenever the worker is idle (lowest reaction latency);
 * threshold = 0 triggers at rem = Δ (each chunk fully executed).
 * Pure functions of their inputs; no allocation. */
#ifndef VLAD_SCHEDULER_H
#define VLAD_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "action_queue.h"
#include "err.h"
#include "profile.h"

typedef struct vlad_sched {
    vlad_async_mode mode;
    int K;          /* execution horizon */
    int threshold;  /* naive/vlash/merge: trigger when this many actions (or Δ) remain */
    int horizon;    /* H of the model */
    int dim;
    double lag_alpha; /* per-tick tracking-lag factor in (0,1]; 1 = reaches each target */
    double merge_weight; /* merge: weight of the new chunk on the overlap (async.merge_weight) */
    uint64_t next_id;
} vlad_sched;

/* One inference to run. */
typedef struct vlad_infer_req {
    uint64_t id;          /* chunk id, from 1 */
    int64_t obs_tick;     /* daemon tick of the observation it is conditioned on */
    int64_t obs_robot_tick; /* the robot's own tick of it (reports; set by the caller) */
    int64_t issue_tick;   /* tick at which it was requested */
    int64_t start_tick;   /* tick of the chunk's first action; -1: when installed (sync) */
    int len;              /* actions to keep (<= horizon) */
    int delay_ticks;      /* Δ assumed when it was requested */
    float state[VLAD_AQ_MAX_DIM]; /* conditioning state (rolled forward under vlash) */
} vlad_infer_req;

/* K, threshold from the profile's async section; H and dim from the model;
 * tick_s and lag_s give lag_alpha = 1 - exp(-tick_s / lag_s) (1 when lag_s == 0). */
int vlad_sched_init(vlad_sched *s, const vlad_profile *p, int horizon, int dim, vlad_err *err);

/* The state the robot will be in when the chunk starting at `start_tick` begins, given
 * the queue at tick `now`: the target pending at start_tick-1, where ticks without a
 * queued action hold the previous target (starting from `cmd`, the last commanded).
 * With lag_alpha < 1 the measured `state` is run through x += alpha (target - x) over
 * the ticks [now, start_tick). At most VLAD_AQ_CAP ticks are rolled (the queue spans no
 * more: beyond it every tick holds the last target). */
void vlad_rollforward(const vlad_action_queue *q, int64_t now, int64_t start_tick, const double *cmd,
                      const double *state, double lag_alpha, int dim, double *out);

/* Decide at the start of tick `now`. `obs_state`/`obs_tick`: newest observation;
 * `cmd`: last commanded target; `delay`: Δ in ticks; `busy`: an inference is in flight.
 * Returns true and fills *req when an inference should start now. */
bool vlad_sched_want(vlad_sched *s, const vlad_action_queue *q, int64_t now, const double *obs_state,
                     int64_t obs_tick, const double *cmd, int delay, bool busy, vlad_infer_req *req);

/* Build the chunk to install at tick `now` from a finished request and its actions
 * (horizon x dim, row-major). Sets id, start tick (per mode), len, obs tick. */
void vlad_sched_place(const vlad_sched *s, const vlad_infer_req *req, const float *actions,
                      int64_t now, vlad_chunk *out);

#endif
