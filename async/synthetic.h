/* synthetic.h — a built-in synthetic policy for exercising the asynchronous pipeline
 * without a trained model (profile `policy.synthetic: true`, and the tests).
 *
 * It tracks a reference trajectory r_j(t) = home_j + amp_j sin(2π t / period + φ_j) from
 * the state it is conditioned on: for the chunk starting at tick t0 (the observation's
 * tick for sync and naive, the planned start for VLASH),
 *   a_i = r(t0+i) + (s - r(t0+i)) (1-β)^(i+1)
 * so a policy fed a stale state produces the jump back that VLASH removes. Deterministic;
 * ignores images and prompt.
 *
 * Adversarial mode (policy.synthetic_faults = f > 0, for the safety tests): each chunk is,
 * with probability f, corrupted in one of six ways — NaN values, infinities, values far
 * outside the limits, a jump of the whole chunk by up to twice the joint range, a late
 * result (the worker sleeps up to 4 K ticks), or a failed inference. The choice is a pure
 * function of (policy.seed, chunk id): reruns corrupt the same chunks. */
#ifndef VLAD_SYNTHETIC_H
#define VLAD_SYNTHETIC_H

#include <stdatomic.h>
#include <stdint.h>

#include "profile.h"
#include "worker.h"

typedef struct vlad_synthetic {
    int dim, horizon;
    double home[VLAD_MAX_JOINTS], amp[VLAD_MAX_JOINTS], phase[VLAD_MAX_JOINTS];
    double period_ticks, beta;
    double faults;          /* share of chunks corrupted */
    uint64_t seed;
    double tick_s;
    int K;
    double lo[VLAD_MAX_JOINTS], hi[VLAD_MAX_JOINTS];
    _Atomic uint64_t corrupted; /* chunks corrupted so far (any thread may read) */
} vlad_synthetic;

/* Reference amplitudes are 30% of each joint's half range around home (kept inside the
 * limits); period 4 s of ticks; β = 0.3; horizon = 2 K + 8 (capped). */
void vlad_synthetic_init(vlad_synthetic *s, const vlad_profile *p);

/* The reference at tick t for joint j. */
double vlad_synthetic_ref(const vlad_synthetic *s, int j, double t);

/* Fill ops to call this policy. */
void vlad_synthetic_ops(vlad_synthetic *s, vlad_policy_ops *ops);

#endif
