#include "engine_policy.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"

struct vlad_engine_policy {
    const vlad_profile *p;
    vlad_model *m;
    vlad_runstate *rs;
    uint8_t *blank;         /* warm-up images */
    float *noise;           /* scaled start noise (noise_scale != 1) */
    size_t cam_bytes;       /* image_size^2 * 3 */
};

vlad_engine_policy *vlad_engine_policy_new(const vlad_profile *p, vlad_err *err) {
    vlad_engine_policy *e = calloc(1, sizeof *e);
    if (!e) {
        vlad_err_set(err, VLAD_ENOMEM, "policy: out of memory");
        return NULL;
    }
    e->p = p;
    if (vlad_model_load(p->policy.model, &e->m, err))
        goto fail;
    vlad_config *c = &e->m->cfg;
    if (c->action_dim != p->n_joints || c->state_dim != p->n_joints) {
        vlad_err_set(err, VLAD_EINVAL,
                     "policy.model %s: state_dim %d / action_dim %d, but the profile has %d joints",
                     p->policy.model, c->state_dim, c->action_dim, p->n_joints);
        goto fail;
    }
    if (c->n_cameras != p->n_cameras) {
        vlad_err_set(err, VLAD_EINVAL, "policy.model %s: %d cameras, the profile has %d",
                     p->policy.model, c->n_cameras, p->n_cameras);
        goto fail;
    }
    for (int i = 0; i < p->n_cameras; i++)
        if (p->cameras[i].width != c->image_size || p->cameras[i].height != c->image_size) {
            vlad_err_set(err, VLAD_EINVAL,
                         "policy.model %s: images are %dx%d, camera %s is %dx%d", p->policy.model,
                         c->image_size, c->image_size, p->cameras[i].name, p->cameras[i].width,
                         p->cameras[i].height);
            goto fail;
        }
    if (c->chunk_size > VLAD_AQ_MAX_H) {
        vlad_err_set(err, VLAD_EINVAL, "policy.model %s: chunk_size %d exceeds %d", p->policy.model,
                     c->chunk_size, VLAD_AQ_MAX_H);
        goto fail;
    }
    if (p->policy.flow_steps > 0) {
        c->flow_steps = p->policy.flow_steps;
        if (vlad_config_validate(c, err)) {
            vlad_err_prefix(err, "policy.flow_steps %d: ", p->policy.flow_steps);
            goto fail;
        }
    }
    vlad_runstate_opts o = {.n_threads = p->policy.threads, .max_streams = 4};
    e->rs = vlad_runstate_new(e->m, &o, err);
    if (!e->rs)
        goto fail;
    e->noise = calloc((size_t)c->chunk_size * (size_t)c->action_dim, sizeof(float));
    e->cam_bytes = (size_t)c->image_size * (size_t)c->image_size * 3;
    e->blank = calloc((size_t)(c->n_cameras > 0 ? c->n_cameras : 1), e->cam_bytes);
    if (!e->blank || !e->noise) {
        vlad_err_set(err, VLAD_ENOMEM, "policy: out of memory");
        goto fail;
    }
    return e;
fail:
    vlad_engine_policy_free(e);
    return NULL;
}

void vlad_engine_policy_free(vlad_engine_policy *e) {
    if (!e)
        return;
    vlad_runstate_free(e->rs);
    vlad_model_free(e->m);
    free(e->blank);
    free(e->noise);
    free(e);
}

static int run(vlad_engine_policy *e, const uint8_t *images, const char *prompt, const float *state,
               uint64_t seed, float *actions, vlad_err *err) {
    const uint8_t *cams[VLAD_MAX_CAMERAS];
    for (int i = 0; i < e->m->cfg.n_cameras; i++)
        cams[i] = images + (size_t)i * e->cam_bytes;
    int rc = vlad_encode_prefix(e->rs, cams, prompt, strlen(prompt), err);
    if (rc < 0)
        return rc;
    double scale = e->p->policy.noise_scale;
    if (scale == 1.0)
        return vlad_sample_actions(e->rs, state, NULL, seed, actions, err);
    vlad_rng r;
    vlad_rng_seed(&r, seed);
    size_t n = (size_t)e->m->cfg.chunk_size * (size_t)e->m->cfg.action_dim;
    for (size_t i = 0; i < n; i++)
        e->noise[i] = (float)(scale * vlad_rng_normal(&r));
    return vlad_sample_actions(e->rs, state, e->noise, seed, actions, err);
}

static int infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    vlad_engine_policy *e = self;
    return run(e, job->images, job->prompt, job->req.state, job->seed, actions, err);
}

void vlad_engine_policy_ops(vlad_engine_policy *e, vlad_policy_ops *ops) {
    ops->self = e;
    ops->horizon = e->m->cfg.chunk_size;
    ops->dim = e->m->cfg.action_dim;
    /* the training recipe records its largest future-state delay Δmax (vlad_train) */
    const char *dm = e->m->file ? vlad_st_meta(e->m->file, "vlad.train.delta_max") : NULL;
    int v = dm ? atoi(dm) : 0;
    ops->max_delay_ticks = v > 0 && v <= VLAD_AQ_MAX_H ? v : 0;
    ops->infer = infer;
}

int64_t vlad_engine_policy_warmup(vlad_engine_policy *e, vlad_err *err) {
    float state[VLAD_MAX_JOINTS];
    for (int j = 0; j < e->p->n_joints; j++)
        state[j] = (float)e->p->joints[j].home;
    static float actions[VLAD_AQ_MAX_H * VLAD_AQ_MAX_DIM];
    int64_t t0 = vlad_now_ns();
    int rc = run(e, e->blank, "", state, 0, actions, err);
    return rc ? rc : vlad_now_ns() - t0;
}
