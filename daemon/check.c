#include "check.h"

#include "keys.h"
#include "zutil.h"

#include <stdarg.h>
#include <string.h>

#include "action_queue.h"
#include "config.h"
#include "engine_policy.h"
#include "model.h"
#include "synthetic.h"
#ifdef VLAD_HAVE_REMOTE
#include "remote_policy.h"
#endif

static void add(vlad_check_report *r, vlad_check_severity sev, const char *key, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static void add(vlad_check_report *r, vlad_check_severity sev, const char *key, const char *fmt,
                ...) {
    if (sev == VLAD_CHECK_ERROR)
        r->n_errors++;
    else
        r->n_warnings++;
    if (r->n_items == VLAD_CHECK_MAX_ITEMS) {
        r->n_dropped++;
        return;
    }
    vlad_check_item *it = &r->items[r->n_items++];
    it->severity = sev;
    snprintf(it->key, sizeof it->key, "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->msg, sizeof it->msg, fmt, ap);
    va_end(ap);
}

#define ERR(r, key, ...) add(r, VLAD_CHECK_ERROR, key, __VA_ARGS__)
#define WARN(r, key, ...) add(r, VLAD_CHECK_WARNING, key, __VA_ARGS__)

static void fit_item(void *user, const char *key, const char *msg) {
    ERR((vlad_check_report *)user, key, "%s", msg);
}

/* The checkpoint against the robot: what engine_policy.c vlad_engine_policy_new and the
 * scheduler refuse (policy_fit.h, the one rule), plus the flow steps. */
static void check_model(const vlad_profile *p, vlad_check_report *r) {
    const char *path = p->policy.model;
    vlad_model *m = NULL;
    vlad_err e = {0};
    if (vlad_model_load(path, &m, &e)) {
        ERR(r, "policy.model", "policy.model: cannot load the checkpoint: %s", e.msg);
        return;
    }
    vlad_config c = m->cfg;
    r->model.loaded = true;
    r->model.state_dim = c.state_dim;
    r->model.action_dim = c.action_dim;
    r->model.chunk_size = c.chunk_size;
    r->model.flow_steps = c.flow_steps;
    r->model.n_cameras = c.n_cameras;
    r->model.image_size = c.image_size;
    r->model.params = vlad_model_param_count(m);
    char what[VLAD_PATH_MAX + 16];
    snprintf(what, sizeof what, "policy.model %s", path);
    vlad_model_shape shape;
    vlad_model_shape_of(m, what, &shape);
    vlad_views views = {0};
    vlad_model_fits(&shape, p, &views, fit_item, r);
    r->model.max_view_lag = views.max_lag; /* 0 when the views did not parse */
    vlad_model_free(m);
    if (p->policy.flow_steps < 0) {
        ERR(r, "policy.flow_steps",
            "policy.flow_steps: %d is negative (0 = the checkpoint's own %d)",
            p->policy.flow_steps, c.flow_steps);
    } else if (p->policy.flow_steps > 0) {
        vlad_config o = c;
        o.flow_steps = p->policy.flow_steps;
        vlad_err ve = {0};
        if (vlad_config_validate(&o, &ve))
            ERR(r, "policy.flow_steps",
                "policy.flow_steps: %d is outside the engine's range (%s; 0 = the checkpoint's "
                "own %d)",
                p->policy.flow_steps, ve.msg, c.flow_steps);
        else
            r->model.flow_steps = p->policy.flow_steps;
    }
}

int vlad_check_profile(const vlad_profile *p, vlad_check_report *out, vlad_err *err) {
    if (!p || !out)
        return vlad_err_set(err, VLAD_EINVAL, "check: NULL profile or report");
    memset(out, 0, sizeof *out);
    vlad_check_report *r = out;
    bool has_model = p->policy.model[0] != 0;

    if (p->n_joints > VLAD_AQ_MAX_DIM)
        ERR(r, "joints", "joints: %d joints, but the daemon's actions hold at most %d",
            p->n_joints, VLAD_AQ_MAX_DIM);

    /* daemon.c attach_policy: synthetic wins over a model, which is then never loaded */
    if (p->policy.synthetic && has_model)
        ERR(r, "policy.synthetic",
            "policy.synthetic: true, but policy.model is also set (%s): the daemon would run "
            "the synthetic policy and ignore the model; set only one",
            p->policy.model);
    if (has_model)
        check_model(p, r);

    /* CURVE: the daemon's key file and the client key folder load (server.c would refuse) */
    if (p->security.server_public_key[0]) {
        vlad_curve curve;
        vlad_err e2;
        if (vlad_curve_load(p, true, NULL, &curve, &e2))
            ERR(r, "security.server_key_file", "%s", e2.msg);
        static vlad_keyring kr; /* large: not on the stack */
        if (!p->security.client_keys_dir[0])
            ERR(r, "security.client_keys_dir",
                "security.client_keys_dir: empty, so no client could connect");
        else if (vlad_keyring_load(p->security.client_keys_dir, &kr, &e2))
            ERR(r, "security.client_keys_dir", "%s", e2.msg);
        else if (kr.n == 0)
            ERR(r, "security.client_keys_dir", "security.client_keys_dir %s: no *.key file",
                p->security.client_keys_dir);
    }

    /* policy.remote.*: the key files (the servers themselves: vlad_check_remote) */
    bool remote = vlad_profile_remote(p);
    if (remote) {
#ifdef VLAD_HAVE_REMOTE
        char pub[VLAD_KEY_LEN + 1];
        vlad_err e2;
        if (vlad_remote_keys(p, pub, &e2)) /* its message starts with the key it is about */
            ERR(r, strncmp(e2.msg, "policy.remote.client_key", 24) ? "policy.remote.server_key"
                                                                   : "policy.remote.client_key",
                "%s", e2.msg);
#else
        ERR(r, "policy.remote.endpoints",
            "policy.remote.endpoints: this build has no vlad-serve client");
#endif
        if (p->policy.flow_steps != 0 && !p->policy.remote.fallback)
            WARN(r, "policy.flow_steps",
                 "policy.flow_steps: %d has no effect: vlad-serve runs the checkpoint's own steps",
                 p->policy.flow_steps);
    } else {
        static const char *const rkeys[] = {"server_key", "client_key"};
        const char *rvals[] = {p->policy.remote.server_key, p->policy.remote.client_key};
        for (int i = 0; i < 2; i++)
            if (rvals[i][0])
                WARN(r, "policy.remote", "policy.remote.%s: set, but policy.remote.endpoints is "
                     "empty: no effect", rkeys[i]);
        if (p->policy.remote.fallback)
            WARN(r, "policy.remote.fallback", "policy.remote.fallback: true, but "
                 "policy.remote.endpoints is empty: policy.model runs here in any case");
    }

    if (p->policy.synthetic) {
        vlad_synthetic s;
        vlad_synthetic_init(&s, p);
        r->policy = VLAD_CHECK_POLICY_SYNTHETIC;
        r->horizon = s.horizon;
        r->dim = s.dim;
        if (p->async.execution_horizon > s.horizon)
            ERR(r, "async.execution_horizon",
                "async.execution_horizon: %d actions per chunk, but the synthetic policy "
                "predicts chunks of only %d",
                p->async.execution_horizon, s.horizon);
    } else if (remote) {
        r->policy = VLAD_CHECK_POLICY_REMOTE; /* horizon, dim: what the servers say */
        r->horizon = r->model.loaded ? r->model.chunk_size : 0;
        r->dim = r->model.loaded ? r->model.action_dim : 0;
    } else if (has_model) {
        r->policy = VLAD_CHECK_POLICY_MODEL;
        r->horizon = r->model.chunk_size;
        r->dim = r->model.action_dim;
    } else {
        r->policy = VLAD_CHECK_POLICY_NONE;
    }

    /* settings the chosen policy never reads (the remote policy sends the scaled noise) */
    if (r->policy != VLAD_CHECK_POLICY_MODEL && r->policy != VLAD_CHECK_POLICY_REMOTE) {
        const char *why = p->policy.synthetic ? "the synthetic policy ignores it"
                                              : "there is no policy.model";
        if (p->policy.flow_steps != 0)
            WARN(r, "policy.flow_steps", "policy.flow_steps: %d has no effect: %s",
                 p->policy.flow_steps, why);
        if (p->policy.noise_scale != 1.0)
            WARN(r, "policy.noise_scale", "policy.noise_scale: %g has no effect: %s",
                 p->policy.noise_scale, why);
    }
    if (r->policy != VLAD_CHECK_POLICY_NONE && p->async.tracking_lag_ms > 0 &&
        p->async.mode != VLAD_ASYNC_VLASH)
        WARN(r, "async.tracking_lag_ms",
             "async.tracking_lag_ms: %g has no effect in async.mode %s (only vlash rolls the "
             "state forward)",
             p->async.tracking_lag_ms, vlad_async_mode_name(p->async.mode));
    return VLAD_OK;
}

int vlad_check_remote(const vlad_profile *p, vlad_check_report *r) {
    if (!vlad_profile_remote(p))
        return VLAD_OK;
#ifdef VLAD_HAVE_REMOTE
    static vlad_remote_model m; /* large: not on the stack */
    vlad_err e = {0};
    int rc = vlad_remote_probe(p, &m, &e);
    if (rc) {
        if (p->policy.remote.fallback)
            WARN(r, "policy.remote.endpoints", "%s; the daemon would start on the fallback "
                 "policy.model", e.msg);
        else
            ERR(r, "policy.remote.endpoints", "%s: the daemon would refuse to start", e.msg);
        return rc;
    }
    r->remote.reached = true;
    snprintf(r->remote.model, sizeof r->remote.model, "%s", m.path);
    r->remote.state_dim = m.state_dim;
    r->remote.action_dim = m.action_dim;
    r->remote.chunk_size = m.chunk_size;
    r->remote.n_cameras = m.n_cameras;
    r->remote.image_size = m.image_size;
    r->remote.max_delay = m.max_delay;
    vlad_model_shape shape;
    vlad_remote_model_shape(&m, &shape);
    vlad_views views = {0};
    vlad_model_fits(&shape, p, &views, fit_item, r);
    r->remote.max_view_lag = views.max_lag;
    if (r->model.loaded && (r->model.chunk_size != m.chunk_size ||
                            r->model.n_cameras != m.n_cameras ||
                            r->model.max_view_lag != views.max_lag))
        ERR(r, "policy.remote.fallback",
            "policy.remote.fallback: policy.model %s (chunk_size %d, %d image inputs, oldest view "
            "%d ticks back) is not the servers' model %s (chunk_size %d, %d, %d): the fallback "
            "must run the same checkpoint",
            p->policy.model, r->model.chunk_size, r->model.n_cameras, r->model.max_view_lag,
            m.path, m.chunk_size, m.n_cameras, views.max_lag);
    r->horizon = m.chunk_size;
    r->dim = m.action_dim;
    return VLAD_OK;
#else
    (void)r;
    return VLAD_EINVAL;
#endif
}

int vlad_check_to_err(const vlad_check_report *r, vlad_err *err) {
    if (!r || r->n_errors == 0)
        return VLAD_OK;
    char buf[VLAD_ERR_MSG_MAX];
    size_t o = 0;
    int n = 0;
    for (int i = 0; i < r->n_items && o < sizeof buf - 1; i++) {
        if (r->items[i].severity != VLAD_CHECK_ERROR)
            continue;
        int w = snprintf(buf + o, sizeof buf - o, "%s%s", n++ ? "; " : "", r->items[i].msg);
        if (w < 0)
            break;
        o += (size_t)w < sizeof buf - o ? (size_t)w : sizeof buf - o - 1;
    }
    buf[o] = 0;
    if (r->n_errors == 1)
        return vlad_err_set(err, VLAD_EINVAL, "%s", buf);
    return vlad_err_set(err, VLAD_EINVAL, "%d problems: %s", r->n_errors, buf);
}

int vlad_check_print(const vlad_check_report *r, FILE *f, const char *prefix) {
    if (!r || !f)
        return 0;
    if (!prefix)
        prefix = "";
    int lines = 0;
    for (int i = 0; i < r->n_items; i++, lines++)
        fprintf(f, "%s%s: %s\n", prefix,
                r->items[i].severity == VLAD_CHECK_ERROR ? "error" : "warning", r->items[i].msg);
    if (r->n_dropped) {
        fprintf(f, "%s... and %d more problem%s\n", prefix, r->n_dropped,
                r->n_dropped == 1 ? "" : "s");
        lines++;
    }
    return lines;
}
