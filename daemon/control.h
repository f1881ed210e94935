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
#include "err.h"
#include "safety.h"
#include "shared.h"

typedef struct vlad_control {
    vlad_shared *sh;
    const vlad_profile *p;
    vlad_watchdog wd;
    vlad_action_queue queue;      /* filled by the scheduler of the async issue */
    bool policy_active;           /* a policy feeds the queue (stalls are counted) */
    bool have_obs, estop, stalled;
    uint32_t seen_estop, seen_release, seen_reset;
    vlad_obs_state last_obs;
    double cmd[VLAD_MAX_JOINTS];  /* last commanded (published) target */
    double hold[VLAD_MAX_JOINTS]; /* target held when there is no action */
    int64_t tick;
} vlad_control;

/* Prepare the control state (home position commanded). */
int vlad_control_init(vlad_control *c, vlad_shared *sh, vlad_err *err);

/* Run tick `tick` whose deadline was `deadline_ns`, at time now_ns. */
void vlad_control_step(vlad_control *c, int64_t tick, int64_t deadline_ns, int64_t now_ns);

/* Thread body: loops until sh->stop. arg is a vlad_control*. */
void *vlad_control_main(void *arg);

#endif
