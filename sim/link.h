/* link.h — vlad-sim's side of the wire to a vlad daemon: the commands that start an episode,
 * the observation of a tick, and the target that answers it.
 *
 * Lockstep: the observation goes out through vlad_client_lockstep (robot_io/client.h, the
 * one lockstep client protocol of the project: publish, wait for the Action whose
 * robot_tick is this tick, resend while none comes). Wall clock: the observation is
 * published, and the newest Action for this episode received before the tick's deadline is
 * the target. Either way a tick without an answer is a stall: the caller holds its last
 * target. One link is used by one thread (the simulator's). */
#ifndef VLAD_SIM_LINK_H
#define VLAD_SIM_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "profile.h"
#include "tasks.h"

/* What the daemon answered for one tick. */
typedef struct vlad_sim_target {
    bool fresh;                 /* an Action answered this tick (else: hold) */
    double q[VLAD_MAX_JOINTS];  /* its joint targets */
    uint64_t chunk_id;          /* the chunk it came from (0: none, e.g. HOLD) */
    int64_t obs_tick;           /* robot tick of the observation that chunk was computed from */
    int source;                 /* Vlad__ActionSource */
    int64_t recv_ns;            /* wall clock: when that Action was received (0: lockstep) */
} vlad_sim_target;

/* The observation of one tick (pointers into the caller's buffers, read during the call). */
typedef struct vlad_sim_obs {
    int64_t tick;
    int episode;
    const double *q, *qd;            /* measured joint positions and velocities */
    const vlad_task_events *ev;      /* this tick's task events */
    uint8_t *const *img;             /* per camera: RGB8 frame (sent where cam_due) */
    const bool *cam_due;             /* per camera: a frame is due this tick (NULL: none) */
} vlad_sim_obs;

typedef struct vlad_sim_link vlad_sim_link;

/* Connect to the daemon of profile p (kept by pointer): publish observations, subscribe to
 * actions, send commands. key_file: CURVE secret key (NULL: $VLAD_CLIENT_KEY / profile).
 * command_timeout_ms bounds each command reply (<= 0: 500 ms in wall clock; in lockstep the
 * tick's bound, if longer); lockstep_timeout_ms (<= 0: the profile's) bounds the wait for one
 * tick's action. Progress warnings go to log (NULL:
 * quiet). Waits briefly for ZeroMQ to connect. */
vlad_sim_link *vlad_sim_link_new(const vlad_profile *p, const char *key_file, int command_timeout_ms,
                                 double lockstep_timeout_ms, FILE *log, vlad_err *err);
void vlad_sim_link_free(vlad_sim_link *l);

/* Command.reset from first_tick (what was sent before is stale) and Command.set_instruction.
 * A daemon that does not answer is warned about once; the run goes on. */
void vlad_sim_link_begin_episode(vlad_sim_link *l, int64_t first_tick, const char *instruction);

/* Lockstep: send o and wait for its Action (resent every 100 ms, up to the lockstep
 * timeout). *t is filled; t->fresh false on timeout. VLAD_OK, or a publish error. */
int vlad_sim_link_lockstep(vlad_sim_link *l, const vlad_sim_obs *o, vlad_sim_target *t, vlad_err *err);

/* The commands left unanswered (begin_episode) and the lockstep ticks that timed out since
 * the last call; resets both. Either one non-zero means the daemon did not keep up: a
 * lockstep run with them is not the deterministic run its seed names. */
void vlad_sim_link_take_faults(vlad_sim_link *l, int *unanswered, int *timeouts);

/* Wall clock: publish o. */
int vlad_sim_link_publish(vlad_sim_link *l, const vlad_sim_obs *o, vlad_err *err);

/* Wall clock: drain the actions received until deadline_ns (monotonic); the newest one for
 * this episode (robot_tick in [episode_first_tick, tick]) fills *t. An Action computed before
 * this episode's reset, or from another run of this robot (robot_tick ahead), is not for it. */
void vlad_sim_link_wall_target(vlad_sim_link *l, int64_t episode_first_tick, int64_t tick,
                               int64_t deadline_ns, vlad_sim_target *t);

#endif
