/* engine_policy.h — the C inference engine (policy/) as the worker's policy: one prefix
 * pass per observation frame, then the flow-matching action expert on the conditioning
 * state the scheduler chose. Loaded from the profile's policy section; checks that the
 * checkpoint fits the robot (state/action dims = joints, camera count and image size).
 * check.h reports all of these (and what the scheduler would clamp) before the daemon starts. */
#ifndef VLAD_ENGINE_POLICY_H
#define VLAD_ENGINE_POLICY_H

#include <stdatomic.h>

#include "err.h"
#include "lang.h"
#include "model.h"
#include "profile.h"
#include "views.h"
#include "worker.h"

typedef struct vlad_engine_policy vlad_engine_policy;

/* Load p->policy.model and allocate the engine's run state (p->policy.threads BLAS
 * threads; p->policy.flow_steps overrides the checkpoint's when > 0, and must then be in
 * the engine's range; p->lang.max_streams language stream slots and their KV, all now). */
vlad_engine_policy *vlad_engine_policy_new(const vlad_profile *p, vlad_err *err);
void vlad_engine_policy_free(vlad_engine_policy *e);

/* The model's image inputs as views of the profile's cameras (views.h: the checkpoint's
 * "vlad.views", else camera i at lag 0 and the camera counts must agree). The one check both vlad_engine_policy_new and
 * `vlad --check` (check.h) make. */
int vlad_model_views(const vlad_model *m, const vlad_profile *p, vlad_views *out, vlad_err *err);

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

/* One inference on blank images and the home state, and (with stream slots) one short
 * language stream, to warm up (allocations, BLAS threads); returns the inference's latency
 * in ns (< 0 on error). */
int64_t vlad_engine_policy_warmup(vlad_engine_policy *e, vlad_err *err);

#endif
