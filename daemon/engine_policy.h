/* engine_policy.h — the C inference engine (policy/) as the worker's policy: one prefix
 * pass per observation frame, then the flow-matching action expert on the conditioning
 * state the scheduler chose. Loaded from the profile's policy section; checks that the
 * checkpoint fits the robot (policy_fit.h: state/action dims = joints, views of the cameras,
 * image size, chunk size).
 * check.h reports all of these (and what the scheduler would clamp) before the daemon starts. */
#ifndef VLAD_ENGINE_POLICY_H
#define VLAD_ENGINE_POLICY_H

#include <stdatomic.h>

#include "err.h"
#include "lang.h"
#include "model.h"
#include "policy_fit.h"
#include "profile.h"
#include "views.h"
#include "worker.h"

typedef struct vlad_engine_policy vlad_engine_policy;

/* Load p->policy.model and allocate the engine's run state (p->policy.threads BLAS
 * threads; p->policy.flow_steps overrides the checkpoint's when > 0, and must then be in
 * the engine's range; p->lang.max_streams language stream slots and their KV, all now). */
vlad_engine_policy *vlad_engine_policy_new(const vlad_profile *p, vlad_err *err);
void vlad_engine_policy_free(vlad_engine_policy *e);

/* A loaded checkpoint's shape (its config and "vlad.views" metadata) for vlad_model_fits
 * (policy_fit.h), the one check both vlad_engine_policy_new and `vlad --check` (check.h)
 * make; `what` names it in messages and must outlive *out. */
void vlad_model_shape_of(const vlad_model *m, const char *what, vlad_model_shape *out);

/* The checkpoint's recorded training Δmax ("vlad.train.delta_max", vlad_trained_max_delay):
 * 0 when not recorded. */
int vlad_model_max_delay(const vlad_model *m);

/* The views of the loaded model (what the daemon's frame history composes for the worker). */
const vlad_views *vlad_engine_policy_views(const vlad_engine_policy *e);

/* The longest question the model reads (bytes). */
int vlad_engine_policy_max_question(const vlad_engine_policy *e);

/* Serve language streams from channel ch (lang_sched.h), after the warm-up: the worker
 * decodes them between action inferences. tick/stop: the daemon's. */
int vlad_engine_policy_attach_lang(vlad_engine_policy *e, vlad_lang *ch, const _Atomic int64_t *tick,
                                   const _Atomic bool *stop, vlad_err *err);

/* Fill ops to run inference (and, once attached, language) through this engine (on the
 * worker thread only). */
void vlad_engine_policy_ops(vlad_engine_policy *e, vlad_policy_ops *ops);

/* The flow's start noise of a sample with policy.noise_scale != 1: n values, `scale` times
 * the standard normals the engine itself draws from `seed` (policy/rng.h). The remote policy
 * sends the same noise, so a served chunk equals the local one. */
void vlad_policy_noise(uint64_t seed, double scale, float *out, size_t n);

/* One inference on blank images and the home state, and (with stream slots) one short
 * language stream, to warm up (allocations, BLAS threads); returns the inference's latency
 * in ns (< 0 on error). */
int64_t vlad_engine_policy_warmup(vlad_engine_policy *e, vlad_err *err);

#endif
