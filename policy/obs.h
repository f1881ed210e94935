/* obs.h — the OBS.json input of `vlad-policy run`:
 *   {"images": ["cam0.png", ...],      one file per camera (PNG or PPM), paths relative
 *                                      to the JSON file's folder; image_size x image_size
 *    "state": [s0, ...],               state_dim numbers
 *    "prompt": "pick up the cube",     optional, default ""
 *    "noise": [[...], ...] or [...],   optional: chunk_size x action_dim standard normal
 *    "seed": 7,                        optional (used when noise is absent), default 0
 *    "question": "what next?"}         optional: also decode a greedy answer ("" = commentary)
 */
#ifndef VLAD_POLICY_OBS_H
#define VLAD_POLICY_OBS_H

#include <stdint.h>

#include "config.h"
#include "err.h"
#include "image.h"

typedef struct vlad_obs {
    int n_images;
    vlad_image images[16];
    float *state;       /* [state_dim] */
    float *noise;       /* [chunk_size*action_dim] or NULL */
    uint64_t seed;
    char *prompt;       /* never NULL */
    char *question;     /* NULL when absent */
} vlad_obs;

/* Parse and check against the config (camera count, image size, state/noise sizes, finite
 * numbers). Fills *out; release with vlad_obs_free (also after a failure). */
int vlad_obs_load(const char *path, const vlad_config *c, vlad_obs *out, vlad_err *err);
void vlad_obs_free(vlad_obs *o);

#endif
