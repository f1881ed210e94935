/* safety.h — the one safety contract of the daemon, and the gate every target passes.
 *
 * THE CONTRACT. For every joint j, with step_j = min(safety.max_delta_per_tick,
 * max_velocity_j / control_hz):
 *   S1  every target value that leaves the daemon — an Action's joint_targets or any value of
 *       an ActionChunk — is a finite number;
 *   S2  it is inside its joint's [min, max];
 *   S3  an Action's target differs from the previous Action's target by at most step_j —
 *       whatever its source (POLICY, HOLD, ESTOP, WATCHDOG, after a reset, a lockstep resend)
 *       — unless the Action is an anchor (S4);
 *   S4  an anchor (Action.anchored) counts its rate limit from the robot's own measured
 *       position instead of the previous target: |target - m| <= step_j, where m is the position
 *       of an observation that passed the limit check (vlad_safety_measured) — a step from where
 *       the robot is, never toward where it was. There are three, and only three, anchors: the
 *       first observation the daemon accepts (before it the daemon publishes NO Action: it does
 *       not know where the robot is, and any target — the profile's home included — would ask a
 *       robot that is elsewhere to jump; polymetis holds the measured state the same way); the
 *       first observation received after a reset; the first observation after a robot restart
 *       (its tick went back); a lockstep resend of an anchor's observation repeats that same
 *       Action, flag included. None happens while the e-stop is latched — except the very first
 *       Action of a daemon that restarted while e-stopped, which has no previous target and so
 *       holds the measured position exactly;
 *   S5  the values of an ActionChunk obey S1, S2 and S3 along the chunk: values[0] against the
 *       target the daemon has pending at start_tick - 1 when it installs the chunk on tick τ
 *       (the newest queued action for a tick in [τ, start_tick - 1], else the last target: an
 *       action queued for a tick that an overrun skipped is not pending), each later value
 *       against the one before; ActionChunk.clamped says whether the gate changed any value;
 *   S6  the e-stop holds the last commanded target (the one the robot is tracking, never a
 *       measurement that may be watchdog_ms old); nothing but a release moves it — not a
 *       reset, not an episode boundary, not a new observation, not a robot restart.
 * The gate enforces S1-S3 and S5 structurally: the control thread builds every outgoing
 * Action through vlad_gate_pass (anchors through vlad_gate_anchor then vlad_gate_pass) and
 * every chunk through vlad_gate_chunk; S4 and S6 are the control thread's state machine
 * (control.c), checked with the rest by tests/test_safety_property.c.
 *
 * The rule, as in polymetis, in this order: a non-finite value becomes the reference (no
 * motion); the rate limit against the reference; the position limits last. The reference is
 * inside the limits, so the limits never undo the rate limit.
 * Pure functions and a plain struct: no allocation, no locks (control thread). */
#ifndef VLAD_SAFETY_H
#define VLAD_SAFETY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"

/* step_j of the contract for every joint (n_joints values). */
void vlad_safety_steps(const vlad_profile *p, double *step);

/* out = the rule applied to want against ref (all n_joints long; out may alias want). ref
 * must be inside the limits. Returns true if any value was changed. */
bool vlad_safety_clamp(const vlad_profile *p, const double *ref, const double *want, double *out);

/* Position limits only (in place). Returns true if anything changed. */
bool vlad_safety_clamp_limits(const vlad_profile *p, double *x);

/* The observation check: a measured position is usable when every value is finite and
 * within safety.obs_limit_margin of its joint's limits; it is then clamped into the limits
 * (out may alias pos). Otherwise VLAD_EINVAL naming the joint, its value and the range, and
 * out is untouched: the observation is dropped, counted, and never held or used. */
int vlad_safety_measured(const vlad_profile *p, const double *pos, double *out, vlad_err *err);

/* The gate: the previous target that left the daemon. Owned by the control thread. */
typedef struct vlad_gate {
    const vlad_profile *p;
    int n;
    bool anchored;                 /* a target has been published (prev is valid) */
    double step[VLAD_MAX_JOINTS];
    double prev[VLAD_MAX_JOINTS];  /* the last target that passed */
} vlad_gate;

/* No target yet. */
void vlad_gate_init(vlad_gate *g, const vlad_profile *p);

/* Start a new segment at a measured position that passed vlad_safety_measured (S4): the
 * next vlad_gate_pass counts its rate limit from there (vlad_gate_pass(g, g->prev, ...)
 * publishes the position itself). */
void vlad_gate_anchor(vlad_gate *g, const double *measured);

/* out = the rule applied to want against the previous target; out becomes the previous
 * target. Must not be called before the first anchor (returns true and copies prev, which is
 * then undefined: the control thread never does). Returns true if the rule changed want. */
bool vlad_gate_pass(vlad_gate *g, const double *want, double *out);

/* Apply the rule along a chunk in place (len x dim floats, dim = n_joints): values[0]
 * against ref (inside the limits), each later row against the row before it. Does not move
 * the gate. Returns true if any value changed. */
bool vlad_gate_chunk(const vlad_gate *g, const double *ref, float *values, int len);

/* Observation watchdog. */
typedef struct vlad_watchdog {
    int64_t timeout_ns;
    bool tripped;
} vlad_watchdog;

void vlad_watchdog_init(vlad_watchdog *w, double timeout_ms);

/* last_obs_ns: daemon receive time of the newest observation (0 = none yet, which is
 * "waiting", never "stale"). Returns +1 when it trips, -1 when it clears, else 0. */
int vlad_watchdog_check(vlad_watchdog *w, int64_t last_obs_ns, int64_t now_ns);

#endif
