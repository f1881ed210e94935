#include "engine_policy.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine.h"
#include "lang_sched.h"
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
    vlad_lang_sched *lang;  /* language streams (NULL: none attached) */
    vlad_lang *ch;          /* their channel (the daemon's) */
    vlad_views views;       /* the model's image inputs, from the robot's cameras */
};

void vlad_model_shape_of(const vlad_model *m, const char *what, vlad_model_shape *out) {
    const vlad_config *c = &m->cfg;
    *out = (vlad_model_shape){.what = what,
                              .key = "policy.model",
                              .state_dim = c->state_dim,
                              .action_dim = c->action_dim,
                              .chunk_size = c->chunk_size,
                              .n_cameras = c->n_cameras,
                              .image_size = c->image_size,
                              .views = m->file ? vlad_st_meta(m->file, "vlad.views") : NULL};
}

int vlad_model_max_delay(const vlad_model *m) {
    /* the training recipe records its largest future-state delay Δmax (vlad_train) */
    const char *dm = m->file ? vlad_st_meta(m->file, "vlad.train.delta_max") : NULL;
    return vlad_trained_max_delay(dm ? strtol(dm, NULL, 10) : 0);
}

const vlad_views *vlad_engine_policy_views(const vlad_engine_policy *e) { return &e->views; }

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
    char what[VLAD_PATH_MAX + 16];
    snprintf(what, sizeof what, "policy.model %s", p->policy.model);
    vlad_model_shape shape;
    vlad_model_shape_of(e->m, what, &shape);
    if (vlad_model_fits_err(&shape, p, &e->views, err)) /* the one rule (policy_fit.h) */
        goto fail;
    if (p->policy.flow_steps > 0) {
        c->flow_steps = p->policy.flow_steps;
        if (vlad_config_validate(c, err)) {
            vlad_err_prefix(err, "policy.flow_steps %d: ", p->policy.flow_steps);
            goto fail;
        }
    }
    vlad_runstate_opts o = {.n_threads = p->policy.threads, .max_streams = p->lang.max_streams};
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
    vlad_lang_sched_free(e->lang);
    vlad_runstate_free(e->rs);
    vlad_model_free(e->m);
    free(e->blank);
    free(e->noise);
    free(e);
}

/* One frame: one prefill, then the action chunk on it. job (NULL: warm-up) names the frame's
 * observation for the language streams that will read the same prefix block. */
static int run(vlad_engine_policy *e, const uint8_t *images, const char *prompt, const float *state,
               uint64_t seed, float *actions, const vlad_infer_job *job, vlad_err *err) {
    const uint8_t *cams[VLAD_MAX_CAMERAS];
    for (int i = 0; i < e->m->cfg.n_cameras; i++)
        cams[i] = images + (size_t)i * e->cam_bytes;
    int rc = vlad_encode_prefix(e->rs, cams, prompt, strlen(prompt), err);
    if (rc < 0)
        return rc;
    if (e->lang && job)
        vlad_lang_sched_frame(e->lang, job->req.obs_tick, job->image_tick);
    double scale = e->p->policy.noise_scale;
    if (scale == 1.0)
        return vlad_sample_actions(e->rs, state, NULL, seed, actions, err);
    vlad_policy_noise(seed, scale, e->noise,
                      (size_t)e->m->cfg.chunk_size * (size_t)e->m->cfg.action_dim);
    return vlad_sample_actions(e->rs, state, e->noise, seed, actions, err);
}

void vlad_policy_noise(uint64_t seed, double scale, float *out, size_t n) {
    vlad_rng r;
    vlad_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(scale * vlad_rng_normal(&r));
}

static int infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    vlad_engine_policy *e = self;
    return run(e, job->images, job->prompt, job->req.state, job->seed, actions, job, err);
}

static bool job_queued(void *w) { return vlad_worker_job_queued(w); }

static bool between(void *self, vlad_worker *w, vlad_between_why why) {
    vlad_engine_policy *e = self;
    return vlad_lang_sched_run(e->lang, why, job_queued, w);
}

int vlad_engine_policy_max_question(const vlad_engine_policy *e) {
    return e->m->cfg.max_prompt_tokens;
}

int vlad_engine_policy_attach_lang(vlad_engine_policy *e, vlad_lang *ch, const _Atomic int64_t *tick,
                                   const _Atomic bool *stop, vlad_err *err) {
    const vlad_profile *p = e->p;
    vlad_lang_sched_opts o = {.tokens_per_frame = p->lang.tokens_per_frame,
                              .commentary_every = p->lang.commentary_every,
                              .preempt = p->clock == VLAD_CLOCK_WALL,
                              .tick = tick,
                              .stop = stop};
    e->ch = ch;
    e->lang = vlad_lang_sched_new(ch, e->rs, &o, err);
    return e->lang ? VLAD_OK : (err ? err->code : VLAD_EINVAL);
}

void vlad_engine_policy_ops(vlad_engine_policy *e, vlad_policy_ops *ops) {
    *ops = (vlad_policy_ops){.self = e, .wake_fd = -1};
    ops->horizon = e->m->cfg.chunk_size;
    ops->dim = e->m->cfg.action_dim;
    if (e->lang) {
        const vlad_profile *p = e->p;
        ops->between = between;
        ops->wake_fd = vlad_lang_request_fd(e->ch);
        /* a frame period: a chunk every execution horizon at control_hz */
        ops->idle_ns = (int64_t)(1e9 * p->async.execution_horizon / p->control_hz);
    }
    ops->max_delay_ticks = vlad_model_max_delay(e->m);
    ops->infer = infer;
}

int64_t vlad_engine_policy_warmup(vlad_engine_policy *e, vlad_err *err) {
    float state[VLAD_MAX_JOINTS];
    for (int j = 0; j < e->p->n_joints; j++)
        state[j] = (float)e->p->joints[j].home;
    static float actions[VLAD_AQ_MAX_H * VLAD_AQ_MAX_DIM];
    int64_t t0 = vlad_now_ns();
    int rc = run(e, e->blank, "", state, 0, actions, NULL, err);
    int64_t ns = vlad_now_ns() - t0;
    if (!rc && e->p->lang.max_streams > 0) { /* the decode path too (its GEMM shapes) */
        rc = vlad_lang_begin(e->rs, 0, "?", 1, err);
        if (!rc)
            rc = vlad_lang_step(e->rs, 2, err) < 0 ? err->code : 0;
        vlad_lang_end(e->rs, 0);
    }
    return rc ? rc : ns;
}
