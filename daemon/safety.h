/* safety.h — the last word on every target the daemon publishes (pure functions, no
 * allocation; used by the control thread).
 *
 * Order, as in polymetis: first the rate limit against the previous commanded target
 * (per joint: min(safety.max_delta_per_tick, max_velocity / control_hz)), then the
 * position limits, last. A non-finite request keeps the previous target. */
#ifndef VLAD_SAFETY_H
#define VLAD_SAFETY_H

#include <stdbool.h>
#include <stdint.h>

#include "profile.h"

/* out = clamp(want) given prev (all n_joints long; out may alias want). Returns true if
 * any value was changed by the limits. */
bool vlad_safety_clamp(const vlad_profile *p, const double *prev, const double *want, double *out);

/* Position limits only (in place). Returns true if anything changed. */
bool vlad_safety_clamp_limits(const vlad_profile *p, double *x);

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
