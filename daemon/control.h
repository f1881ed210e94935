/* control.h — the control thread: one Action per tick, through the safety gate.
 *
 * vlad_control_step() does one tick and is what the thread runs in a loop (wall clock:
 * absolute-deadline sleeps; lockstep: one tick per new observation). It is exposed so
 * tests can drive ticks directly. It never allocates, never logs synchronously, never
 * copies images, never sleeps; in lockstep only it waits for the inference in flight (that
 * is how delay is emulated), and any request from io (e-stop, release, reset) cuts the wait
 * short.
 *
 * One timeline: the tick number is the daemon's own, in both clock modes (wall: counted
 * from the daemon's start on CLOCK_MONOTONIC deadlines; lockstep: +1 per new observation).
 * An observation is placed on it at the tick the control thread first takes it; the robot's
 * tick is kept for reports and to detect a robot restart (its tick went back).
 *
 * The state machine (S4 and S6 of safety.h):
 *   no target yet ── first usable observation ──> anchored at the measured position
 *   reset ── hold (no new target) until an observation received after the reset ──>
 *            anchored there (unless e-stopped: the e-stop hold stays) ── inference on it
 *   robot restart (tick went back) ── queue discarded ──> anchored at its new position
 *            (unless e-stopped; while a reset waits, only if the reset's from_robot_tick
 *            was beyond the old timeline's last tick: one at or below it names a tick of
 *            the new timeline, and it still stands)
 *   e-stop ── queue discarded, hold the last target; only a release that came after it
 *            clears it; a daemon restarted while e-stopped starts e-stopped
 *   watchdog ── hold the last target until observations are fresh again
 * Policy targets flow only while running = anchored, not e-stopped, not waiting for a
 * post-reset observation, watchdog clear. */
#ifndef VLAD_CONTROL_H
#define VLAD_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "action_queue.h"
#include "delay.h"
#include "err.h"
#include "phase.h"
#include "safety.h"
#include "scheduler.h"
#include "shared.h"
#include "worker.h"

typedef struct vlad_control {
    vlad_shared *sh;
    const vlad_profile *p;
    vlad_watchdog wd;
    vlad_gate gate;               /* the previous target that left the daemon */
    vlad_action_queue queue;      /* actions by tick, filled from the worker's chunks */
    bool policy_active;           /* a policy feeds the queue (stalls are counted) */
    /* policy (all NULL/0 without one) */
    vlad_worker *worker;
    vlad_sched sched;
    vlad_delay delay;             /* Δ: from the observation tick's deadline to the result */
    vlad_delay rawlat;            /* the inference's own latency (the auto phase lead) */
    int max_delay;                /* Δ limit (ticks) */
    bool delay_limited;           /* the estimate is above the limit now */
    bool lockstep;
    int emul_delay;               /* lockstep: ticks from request to usable result */
    bool busy;                    /* a job is in flight */
    bool policy_down;             /* the newest results failed or were degraded (one event) */
    uint64_t down_results;        /* how many in this run */
    bool pinned;                  /* the job's frame is pinned in sh->frames */
    uint32_t epoch, job_epoch;    /* results from before an e-stop/reset/restart are discarded */
    int64_t ready_tick;           /* lockstep: first tick the in-flight result may be used */
    uint64_t seed;
    vlad_chunk_rec staging;       /* a chunk being installed (too big for the stack) */
    vlad_out_rec last_rec;        /* the last action published (lockstep resends answer it) */
    /* observations */
    vlad_obs_state last_obs;
    int64_t obs_tick;             /* daemon tick at which last_obs was taken */
    int64_t last_robot_tick;      /* robot tick of the newest observation (-1: none) */
    /* requests */
    bool estop, stalled;
    uint64_t seen_estop, seen_release, seen_reset;
    bool awaiting;                /* reset: waiting for an observation received after it */
    bool need_anchor;             /* the next usable observation anchors (if not e-stopped) */
    uint64_t want_reset;          /* awaiting: reset_seq the observation must carry */
    int64_t want_from;            /* awaiting: robot tick it must reach (the reset's from_robot_tick) */
    int64_t tick;
    /* wall clock: the tick origin, its phase lock and early starts (control.c) */
    int64_t t0;                   /* deadline of tick n = t0 + n * period */
    int64_t period_ns;
    vlad_phase phase;             /* phase_lock: the lock to the observation stream */
    bool early;                   /* async.early_start and a worker, wall clock */
    bool anchor_pending;          /* an anchor not yet published: from an early observation, or
                                   * this tick's, until its Action is built */
    vlad_gate pre_anchor;         /* anchor_pending: the gate as the last published Action left it */
    bool pre_need_anchor;         /* ... and need_anchor then */
    int64_t early_tick;           /* the tick whose observation an early job was started on */
    int64_t job_lead_ns;          /* the job's obs-tick deadline minus its submission time */
} vlad_control;

/* Prepare the control state: no target until the robot reports. */
int vlad_control_init(vlad_control *c, vlad_shared *sh, vlad_err *err);

/* Attach a policy: the control thread will schedule inferences on `worker` (owned by
 * the caller) for a model of `horizon` x `dim` actions trained for delays up to
 * `trained_max_delay` ticks (0: not recorded). Refuses a profile whose delay limit and the
 * horizon do not fit the action queue. */
int vlad_control_attach_policy(vlad_control *c, vlad_worker *worker, int horizon, int dim,
                               int trained_max_delay, vlad_err *err);

/* Run tick `tick` whose deadline was `deadline_ns`, at time now_ns. Requests first, then the
 * newest observation (which may anchor), the policy, the Action. An e-stop or reset acted on
 * while the tick waits for the policy (lockstep: a request cuts the wait short) takes back an
 * anchor of this tick, as it does an early one (vlad_control_early). */
void vlad_control_step(vlad_control *c, int64_t tick, int64_t deadline_ns, int64_t now_ns);

/* Wall clock, async.early_start: an observation arrived at now_ns, before tick `tick`'s
 * deadline (the control thread's own loop calls this). Takes it for that tick and may start
 * an inference; publishes nothing. An anchor it makes goes out with the tick's Action, and
 * an e-stop or reset that comes first takes it back: the tick then holds the last published
 * target, unanchored (safety.h S4: an anchor is the first Action after a valid observation
 * taken since the last reset, and none happens while an e-stop is latched). */
void vlad_control_early(vlad_control *c, int64_t tick, int64_t now_ns);

/* Act on pending requests (e-stop, release, reset) without a tick: lockstep, while no
 * observation arrives, so status and events follow a request at once. */
void vlad_control_requests(vlad_control *c, int64_t tick);

/* Lockstep: answer a resent observation (same robot tick) again, without a new tick. */
void vlad_control_resend(vlad_control *c, int64_t now_ns);

/* Thread body: loops until sh->stop. arg is a vlad_control*. */
void *vlad_control_main(void *arg);

#endif
