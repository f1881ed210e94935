/* control.h — the control thread: one Action per tick.
 *
 * vlad_control_step() does one tick and is what the thread runs in a loop (wall clock:
 * absolute-deadline sleeps; lockstep: one tick per new observation). It is exposed so
 * tests can drive ticks directly. It never allocates, never blocks, never logs
 * synchronously. */
#ifndef VLAD_CONTROL_H
#define VLAD_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "action_queue.h"
#include "delay.h"
#include "err.h"
#include "safety.h"
#include "scheduler.h"
#include "shared.h"
#include "worker.h"

typedef struct vlad_control {
    vlad_shared *sh;
    const vlad_profile *p;
    vlad_watchdog wd;
    vlad_action_queue queue;      /* actions by tick, filled from the worker's chunks */
    bool policy_active;           /* a policy feeds the queue (stalls are counted) */
    /* policy (all NULL/0 without one) */
    vlad_worker *worker;
    vlad_sched sched;
    vlad_delay delay;
    bool lockstep;
    int emul_delay;               /* lockstep: ticks from request to usable result */
    bool busy;                    /* a job is in flight */
    uint32_t epoch, job_epoch;    /* results from before an e-stop/reset are discarded */
    int64_t ready_tick;           /* lockstep: first tick the in-flight result may be used */
    uint64_t seed;
    const uint8_t *obs_images;    /* images of the newest observation (in the obs slot) */
    vlad_chunk_rec staging;       /* a chunk being installed (too big for the stack) */
    vlad_out_rec last_rec;        /* the last action published (lockstep resends get it again) */
    bool have_obs, estop, stalled;
    uint32_t seen_estop, seen_release, seen_reset;
    vlad_obs_state last_obs;
    double cmd[VLAD_MAX_JOINTS];  /* last commanded (published) target */
    double hold[VLAD_MAX_JOINTS]; /* target held when there is no action */
    int64_t tick;
} vlad_control;

/* Prepare the control state (home position commanded). */
int vlad_control_init(vlad_control *c, vlad_shared *sh, vlad_err *err);

/* Attach a policy: the control thread will schedule inferences on `worker` (owned by
 * the caller) for a model of `horizon` x `dim` actions. */
int vlad_control_attach_policy(vlad_control *c, vlad_worker *worker, int horizon, int dim,
                               vlad_err *err);

/* Run tick `tick` whose deadline was `deadline_ns`, at time now_ns. */
void vlad_control_step(vlad_control *c, int64_t tick, int64_t deadline_ns, int64_t now_ns);

/* Thread body: loops until sh->stop. arg is a vlad_control*. */
void *vlad_control_main(void *arg);

#endif
