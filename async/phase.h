/* phase.h — locking the wall-clock tick phase to the robot's observation stream.
 *
 * A robot publishes observation t at its own tick t; the daemon's ticks run on its own
 * CLOCK_MONOTONIC deadlines. Left alone the two 50 Hz clocks have an arbitrary phase, so an
 * observation waits up to one period before a tick takes it. The lock moves the daemon's tick
 * origin so that each deadline falls `lead` after an observation arrives: the target for tick
 * t is then computed from observation t (and, with early start, from an inference started as
 * it arrived) and goes out right after it.
 *
 * Contract (vlad_phase_observe):
 *   * it locks only to a stream at the control rate: the mean interval between arrivals
 *     (the plain mean of the first 32, then an exponential average over about 32, so that
 *     a loaded machine's scatter of arrivals does not move it out) within 5% of the period.
 *     A robot at another rate, or fewer than 8 intervals so far: no correction. An interval outside
 *     0.75..1.25 periods (a pause, a burst) is not averaged: a robot that pauses keeps its
 *     rate and its lock; 8 such intervals in a row are another rate and start the average
 *     again;
 *   * the correction moves the origin by a quarter of the phase error (wrapped into
 *     [-period/2, period/2)), never by more than period/10, and once per tick (a second
 *     arrival before the same deadline is measured, not corrected for): consecutive
 *     deadlines stay between 0.9 and 1.1 periods apart, so tick numbers stay tied to wall
 *     time and the robot sees a steady rate;
 *   * the result depends only on the arguments and the state (no clock read): deterministic.
 * Owned by the control thread; no allocation. */
#ifndef VLAD_PHASE_H
#define VLAD_PHASE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct vlad_phase {
    int64_t period_ns;
    int64_t last_recv_ns;  /* previous arrival (0: none) */
    double interval_ns;    /* mean of the arrival intervals (plain for the first 32, then
                              exponential over about 32; 0: none yet) */
    int intervals;         /* arrivals averaged since the last restart */
    int outliers;          /* consecutive intervals outside [0.75, 1.25] periods */
    bool locked;           /* the last arrival was from a stream at the control rate */
    int64_t error_ns;      /* the last phase error: (deadline - arrival) - lead, wrapped */
    int64_t corrected_ns;  /* the (moved) deadline of the tick corrected last (0: none) */
    double jitter_ns;      /* exponential mean of |error| over about 8 arrivals: how far the
                              arrivals scatter around the locked phase */
} vlad_phase;

/* period_ns > 0. */
void vlad_phase_init(vlad_phase *ph, int64_t period_ns);

/* One observation arrived at recv_ns; the deadline of the tick that takes it is
 * deadline_ns; the wanted lead (deadline - arrival) is lead_ns, in [0, period/2].
 * Returns the signed amount to add to the tick origin (negative: deadlines come earlier). */
int64_t vlad_phase_observe(vlad_phase *ph, int64_t recv_ns, int64_t deadline_ns, int64_t lead_ns);

#endif
