/* policy_fit.h — does a model fit the robot? The ONE copy of the rule, whoever runs the model:
 * the local engine (engine_policy.h: the checkpoint it loaded), a vlad-serve host
 * (remote_policy.h: the model its status reply describes) and `vlad --check` (check.h: every
 * problem at once).
 *
 * A model fits profile p when
 *   action_dim == state_dim == the joint count, action_dim <= VLAD_AQ_MAX_DIM;
 *   its image inputs parse as views of the profile's cameras (views.h: the checkpoint's
 *     "vlad.views", else camera i at lag 0 and the counts agree);
 *   every camera is image_size x image_size;
 *   chunk_size <= VLAD_AQ_MAX_H (the action queue's horizon) and >= async.execution_horizon.
 * Pure functions of their arguments: no allocation kept, any thread. */
#ifndef VLAD_POLICY_FIT_H
#define VLAD_POLICY_FIT_H

#include "profile.h"
#include "views.h"

/* What a model looks like from outside. */
typedef struct vlad_model_shape {
    const char *what;  /* names the model in messages, starting with `key`: "policy.model PATH",
                          "policy.remote.endpoints (vlad-serve tcp://..., model PATH)" */
    const char *key;   /* the profile key that chose it: "policy.model", "policy.remote.endpoints" */
    int state_dim, action_dim, chunk_size, n_cameras, image_size;
    const char *views; /* its "vlad.views" JSON; NULL (or ""): camera i at lag 0 */
} vlad_model_shape;

/* One problem: the profile key it concerns ("joints", "cameras", "cameras[1]",
 * "async.execution_horizon", or shape->key) and one sentence starting with that key and
 * naming both values. */
typedef void (*vlad_fit_report)(void *user, const char *key, const char *msg);

/* Check m against p, reporting every problem through report (NULL: none reported). *views
 * (may be NULL) gets the model's views when they parse. Returns the number of problems. */
int vlad_model_fits(const vlad_model_shape *m, const vlad_profile *p, vlad_views *views,
                    vlad_fit_report report, void *user);

/* The same, as one error: VLAD_OK, or VLAD_EINVAL with every problem joined by "; " in err. */
int vlad_model_fits_err(const vlad_model_shape *m, const vlad_profile *p, vlad_views *views,
                        vlad_err *err);

/* The largest delay Δmax (ticks) the scheduler may take from a model's training record
 * ("vlad.train.delta_max"): `trained` when it is in 1..VLAD_AQ_MAX_H, else 0 (not recorded). */
int vlad_trained_max_delay(long trained);

#endif
