/* engine_policy.h — the C inference engine (policy/) as the worker's policy: one prefix
 * pass per observation frame, then the flow-matching action expert on the conditioning
 * state the scheduler chose. Loaded from the profile's policy section; checks that the
 * checkpoint fits the robot (state/action dims = joints, camera count and image size).
 * check.h reports all of these (and what the scheduler would clamp) before the daemon starts. */
#ifndef VLAD_ENGINE_POLICY_H
#define VLAD_ENGINE_POLICY_H

#include "err.h"
#include "profile.h"
#include "worker.h"

typedef struct vlad_engine_policy vlad_engine_policy;

/* Load p->policy.model and allocate the engine's run state (p->policy.threads BLAS
 * threads; p->policy.flow_steps overrides the checkpoint's when > 0, and must then be in
 * the engine's range). */
vlad_engine_policy *vlad_engine_policy_new(const vlad_profile *p, vlad_err *err);
void vlad_engine_policy_free(vlad_engine_policy *e);

/* Fill ops to run inference through this engine (on the worker thread only). */
void vlad_engine_policy_ops(vlad_engine_policy *e, vlad_policy_ops *ops);

/* One inference on blank images and the home state, to warm up (allocations, BLAS
 * threads); returns its latency in ns (< 0 on error). */
int64_t vlad_engine_policy_warmup(vlad_engine_policy *e, vlad_err *err);

#endif
