#include "remote_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine_policy.h"
#include "keys.h"
#include "log.h"
#include "policy_fit.h"
#include "serve/client.h"

#define BACKOFF_MIN_MS 500  /* fallback: the servers are tried again after this long ... */
#define BACKOFF_MAX_MS 8000 /* ... doubling up to this */
#define PROBE_SLICE_MS 1000 /* start: one status request waits at most this long */

struct vlad_remote_policy {
    const vlad_profile *p;
    vlad_remote_stats *st;
    vlad_serve_client *c;
    vlad_remote_model srv;       /* what the servers last said (srv.known: checked) */
    /* the model the daemon is set up for (frames, scheduler): the servers', or the
     * fallback's when none answered at start; every later answer must match it */
    vlad_views views;
    int chunk_size, dim, max_delay;
    uint64_t checked_reconnects; /* the client's reconnects when the model was last checked */
    vlad_serve_image imgs[VLAD_MAX_VIEWS];
    float *noise;                /* policy.noise_scale != 1: the scaled start noise */
    size_t noise_len;
    uint32_t budget_us;
    vlad_engine_policy *local;   /* policy.remote.fallback: policy.model (NULL: none) */
    vlad_policy_ops local_ops;
    int64_t retry_at;            /* fallback: the servers are tried again from then */
    int backoff_ms;
    char desc[2048];
};

/* ---- keys, the client, the servers' model ------------------------------------------------ */

int vlad_remote_keys(const vlad_profile *p, char *pub, vlad_err *err) {
    pub[0] = 0;
    const char *sk = p->policy.remote.server_key, *ck = p->policy.remote.client_key;
    if (!sk[0])
        return VLAD_OK;
    vlad_cert cert;
    if (vlad_cert_read(sk, false, &cert, err))
        return vlad_err_prefix(err, "policy.remote.server_key: ");
    if (cert.secret_key[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "policy.remote.server_key %s: holds a secret key; give the servers' "
                            "public certificate (vladctl keygen's BASE.key) and keep the secret "
                            "one on the server",
                            sk);
    if (!ck[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "policy.remote.client_key: empty, but policy.remote.server_key is set");
    vlad_cert mine;
    if (vlad_cert_read(ck, true, &mine, err)) /* the 0600 rule (keys.h) */
        return vlad_err_prefix(err, "policy.remote.client_key: ");
    memset(&mine, 0, sizeof mine);
    snprintf(pub, VLAD_KEY_LEN + 1, "%s", cert.public_key);
    return VLAD_OK;
}

static vlad_serve_client *client_open(const vlad_profile *p, vlad_err *err) {
    char eps[VLAD_REMOTE_MAX_ENDPOINTS][VLAD_PATH_MAX];
    int n = vlad_profile_list(p->policy.remote.endpoints, eps, VLAD_REMOTE_MAX_ENDPOINTS);
    if (n < 1) {
        vlad_err_set(err, VLAD_EINVAL, "policy.remote.endpoints: no endpoint");
        return NULL;
    }
    char pub[VLAD_KEY_LEN + 1];
    if (vlad_remote_keys(p, pub, err))
        return NULL;
    const char *ptrs[VLAD_REMOTE_MAX_ENDPOINTS];
    for (int i = 0; i < n; i++)
        ptrs[i] = eps[i];
    vlad_serve_client_opts o = {.endpoints = ptrs,
                                .n_endpoints = n,
                                .server_public_key = pub,
                                .client_key = p->policy.remote.client_key,
                                .timeout_ms = p->policy.remote.timeout_ms,
                                .attempts = p->policy.remote.attempts,
                                .robot = p->robot,
                                .jpeg_quality = p->policy.remote.images == VLAD_REMOTE_IMAGES_JPEG
                                                    ? p->policy.remote.jpeg_quality
                                                    : 0,
                                .emulate_rtt_ms = p->policy.remote.emulate_rtt_ms,
                                .emulate_jitter_ms = p->policy.remote.emulate_jitter_ms,
                                .emulate_seed = (uint64_t)p->policy.seed};
    vlad_serve_client *c = vlad_serve_client_new(&o, err);
    if (!c)
        vlad_err_prefix(err, "policy.remote.endpoints: ");
    return c;
}

/* The status reply's model into *m (strings copied). */
static int model_of(const vlad_profile *p, const Vlad__Serve__ServeStatus *s, vlad_remote_model *m,
                    vlad_err *err) {
    const Vlad__Serve__ModelInfo *mi = s ? s->model : NULL;
    if (!mi)
        return vlad_err_set(err, VLAD_EPARSE, "policy.remote.endpoints: a status reply without "
                            "the server's model");
    snprintf(m->endpoints, sizeof m->endpoints, "%s", p->policy.remote.endpoints);
    snprintf(m->path, sizeof m->path, "%s", mi->path ? mi->path : "");
    snprintf(m->views, sizeof m->views, "%s", mi->views ? mi->views : "");
    m->state_dim = (int)mi->state_dim;
    m->action_dim = (int)mi->action_dim;
    m->chunk_size = (int)mi->chunk_size;
    m->n_cameras = (int)mi->n_cameras;
    m->image_size = (int)mi->image_size;
    m->max_delay = vlad_trained_max_delay((long)mi->delta_max);
    snprintf(m->what, sizeof m->what, "policy.remote.endpoints (vlad-serve %.200s, model %.200s)",
             m->endpoints, m->path);
    m->known = true;
    return VLAD_OK;
}

void vlad_remote_model_shape(const vlad_remote_model *m, vlad_model_shape *out) {
    *out = (vlad_model_shape){.what = m->what,
                              .key = "policy.remote.endpoints",
                              .state_dim = m->state_dim,
                              .action_dim = m->action_dim,
                              .chunk_size = m->chunk_size,
                              .n_cameras = m->n_cameras,
                              .image_size = m->image_size,
                              .views = m->views[0] ? m->views : NULL};
}

/* Status requests until one is answered or `wait_ms` passes. */
static int probe(vlad_serve_client *c, const vlad_profile *p, int wait_ms, vlad_remote_model *m,
                 vlad_err *err) {
    int64_t deadline = vlad_now_ns() + (int64_t)wait_ms * VLAD_NS_PER_MS;
    vlad_serve_reply rep;
    int rc = VLAD_ETIMEOUT;
    vlad_err_set(err, VLAD_ETIMEOUT, "no attempt");
    for (;;) {
        int64_t left = (deadline - vlad_now_ns()) / VLAD_NS_PER_MS;
        if (left < 1)
            break;
        vlad_serve_client_set_timeout(c, left < PROBE_SLICE_MS ? (int)left : PROBE_SLICE_MS);
        rc = vlad_serve_client_status(c, &rep, err);
        if (rc != VLAD_ETIMEOUT)
            break; /* an answer, or a refusal that waiting does not change */
    }
    vlad_serve_client_set_timeout(c, p->policy.remote.timeout_ms);
    if (rc == VLAD_OK)
        return model_of(p, rep.status, m, err);
    if (rc != VLAD_ETIMEOUT) /* a server answered, with a refusal */
        return vlad_err_prefix(err, "policy.remote.endpoints: %.200s: ", p->policy.remote.endpoints);
    vlad_serve_client_counters n;
    vlad_serve_client_counters_get(c, &n);
    const char *why = n.refusals ? "a server refused this daemon's key at the handshake: is "
                                   "policy.remote.client_key's public half in the server's "
                                   "--keys-dir, with the infer right?"
                      : n.sent   ? "connected, but no reply came"
                                 : "no connection: is vlad-serve running there?";
    return vlad_err_set(err, rc,
                        "policy.remote.endpoints: no vlad-serve answered a status request at %.300s "
                        "within %d ms (policy.remote.start_timeout_ms): %s",
                        p->policy.remote.endpoints, wait_ms, why);
}

int vlad_remote_probe(const vlad_profile *p, vlad_remote_model *out, vlad_err *err) {
    memset(out, 0, sizeof *out);
    vlad_serve_client *c = client_open(p, err);
    if (!c)
        return err ? err->code : VLAD_EINVAL;
    int rc = probe(c, p, p->policy.remote.start_timeout_ms, out, err);
    vlad_serve_client_free(c);
    return rc;
}

static bool views_equal(const vlad_views *a, const vlad_views *b) {
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->v[i].camera != b->v[i].camera || a->v[i].lag != b->v[i].lag)
            return false;
    return true;
}

/* The servers' model m against the profile and, once the daemon is set up, against what it is
 * set up for (r->views, chunk_size): the frames and the scheduler cannot change underway. */
static int check_model(vlad_remote_policy *r, const vlad_remote_model *m, bool set_up, vlad_err *err) {
    vlad_model_shape shape;
    vlad_remote_model_shape(m, &shape);
    vlad_views v;
    if (vlad_model_fits_err(&shape, r->p, &v, err))
        return err ? err->code : VLAD_EINVAL;
    if (set_up && (!views_equal(&v, &r->views) || m->chunk_size != r->chunk_size)) {
        char a[256], b[256];
        vlad_views_format(&v, a, sizeof a);
        vlad_views_format(&r->views, b, sizeof b);
        return vlad_err_set(err, VLAD_ERANGE,
                            "%s: chunk_size %d, views %s, but the daemon runs chunk_size %d, views "
                            "%s (%s): every server and the fallback must run the same checkpoint",
                            m->what, m->chunk_size, a, r->chunk_size, b,
                            r->local ? "policy.model's" : "the model the servers had at start");
    }
    if (!set_up) {
        r->views = v;
        r->chunk_size = m->chunk_size;
        r->dim = m->action_dim;
        r->max_delay = m->max_delay;
    }
    return VLAD_OK;
}

/* ---- counters ------------------------------------------------------------------------------ */

static void publish_counters(vlad_remote_policy *r, int rc, const vlad_err *e) {
    vlad_remote_stats *st = r->st;
    if (!st)
        return;
    vlad_serve_client_counters n;
    vlad_serve_client_counters_get(r->c, &n);
    atomic_store(&st->requests, n.sent);
    atomic_store(&st->replies, n.replies);
    atomic_store(&st->timeouts, n.timeouts);
    atomic_store(&st->dropped_stale, n.dropped_stale);
    atomic_store(&st->reconnects, n.reconnects);
    atomic_store(&st->refusals, n.refusals);
    atomic_store(&st->up, rc == VLAD_OK);
    if (rc && e) {
        pthread_mutex_lock(&st->mu);
        snprintf(st->last_error, sizeof st->last_error, "%s", e->msg);
        pthread_mutex_unlock(&st->mu);
    }
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* Of two Δmax records (0: none), the smaller one recorded. */
static int stricter(int a, int b) { return !a ? b : !b ? a : a < b ? a : b; }

vlad_remote_policy *vlad_remote_policy_new(const vlad_profile *p, vlad_remote_stats *stats,
                                           vlad_err *err) {
    vlad_remote_policy *r = calloc(1, sizeof *r);
    if (!r) {
        vlad_err_set(err, VLAD_ENOMEM, "remote policy: out of memory");
        return NULL;
    }
    r->p = p;
    r->st = stats;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (stats)
        atomic_store(&stats->on, true);
    r->c = client_open(p, err);
    if (!r->c)
        goto fail;
    if (p->policy.remote.emulate_rtt_ms > 0 || p->policy.remote.emulate_jitter_ms > 0)
        VLAD_LOGW("policy.remote.emulate_rtt_ms %g, emulate_jitter_ms %g: every remote call is "
                  "delayed on purpose (tests and benchmarks only)",
                  p->policy.remote.emulate_rtt_ms, p->policy.remote.emulate_jitter_ms);
    if (p->policy.remote.fallback) {
        r->local = vlad_engine_policy_new(p, err);
        if (!r->local) {
            vlad_err_prefix(err, "policy.remote.fallback: ");
            goto fail;
        }
        int64_t ns = vlad_engine_policy_warmup(r->local, err);
        if (ns < 0) {
            vlad_err_prefix(err, "policy.remote.fallback: ");
            goto fail;
        }
        vlad_engine_policy_ops(r->local, &r->local_ops);
        r->views = *vlad_engine_policy_views(r->local);
        r->chunk_size = r->local_ops.horizon;
        r->dim = r->local_ops.dim;
        r->max_delay = r->local_ops.max_delay_ticks;
    }
    vlad_err pe;
    int rc = probe(r->c, p, p->policy.remote.start_timeout_ms, &r->srv, &pe);
    publish_counters(r, rc, &pe);
    if (rc == VLAD_OK) {
        if (check_model(r, &r->srv, r->local != NULL, err))
            goto fail;
        vlad_serve_client_counters n;
        vlad_serve_client_counters_get(r->c, &n);
        r->checked_reconnects = n.reconnects;
        if (r->local) /* the stricter of the two training records */
            r->max_delay = stricter(r->local_ops.max_delay_ticks, r->srv.max_delay);
    } else if (r->local) {
        r->srv.known = false;
        r->retry_at = vlad_now_ns() + (int64_t)BACKOFF_MIN_MS * VLAD_NS_PER_MS;
        VLAD_LOGW("%s; starting on the fallback policy.model %s, trying the servers again", pe.msg,
                  p->policy.model);
    } else {
        if (err)
            *err = pe;
        goto fail;
    }
    r->noise_len = (size_t)r->chunk_size * (size_t)r->dim;
    r->noise = calloc(r->noise_len ? r->noise_len : 1, sizeof(float));
    if (!r->noise) {
        vlad_err_set(err, VLAD_ENOMEM, "remote policy: out of memory");
        goto fail;
    }
    uint64_t budget = (uint64_t)p->policy.remote.attempts * (uint64_t)p->policy.remote.timeout_ms * 1000;
    r->budget_us = budget > UINT32_MAX ? UINT32_MAX : (uint32_t)budget;
    char views[200];
    vlad_views_format(&r->views, views, sizeof views);
    if (r->srv.known)
        snprintf(r->desc, sizeof r->desc,
                 "remote: vlad-serve %.300s, model %.200s: state_dim %d, action_dim %d, chunk_size %d, "
                 "%d image input%s %dx%d, views %s, trained delta_max %d; timeout %d ms x %d%s%.300s",
                 p->policy.remote.endpoints, r->srv.path, r->srv.state_dim, r->srv.action_dim,
                 r->srv.chunk_size, r->srv.n_cameras, r->srv.n_cameras == 1 ? "" : "s",
                 r->srv.image_size, r->srv.image_size, views, r->srv.max_delay,
                 p->policy.remote.timeout_ms, p->policy.remote.attempts,
                 r->local ? "; fallback " : "", r->local ? p->policy.model : "");
    else
        snprintf(r->desc, sizeof r->desc,
                 "remote: vlad-serve %.300s not answering; running the fallback %.300s (chunk_size %d, "
                 "views %s) until a server does",
                 p->policy.remote.endpoints, p->policy.model, r->chunk_size, views);
    return r;
fail:
    vlad_remote_policy_free(r);
    return NULL;
}

void vlad_remote_policy_free(vlad_remote_policy *r) {
    if (!r)
        return;
    vlad_serve_client_free(r->c);
    vlad_engine_policy_free(r->local);
    free(r->noise);
    free(r);
}

const vlad_views *vlad_remote_policy_views(const vlad_remote_policy *r) { return &r->views; }

const char *vlad_remote_policy_describe(const vlad_remote_policy *r) { return r->desc; }

/* ---- inference (worker thread) ----------------------------------------------------------- */

/* The servers' model checked again after a reconnection (a restarted server may run another
 * checkpoint), and before the first inference when none answered at start. */
static int recheck(vlad_remote_policy *r, vlad_err *err) {
    vlad_serve_client_counters n;
    vlad_serve_client_counters_get(r->c, &n);
    if (r->srv.known && n.reconnects == r->checked_reconnects)
        return VLAD_OK;
    vlad_serve_reply rep;
    int rc = vlad_serve_client_status(r->c, &rep, err);
    if (rc && rep.code > 0 && r->st)
        atomic_fetch_add(&r->st->errors, 1);
    vlad_remote_model m;
    if (rc || (rc = model_of(r->p, rep.status, &m, err)) || (rc = check_model(r, &m, true, err)))
        return rc;
    vlad_serve_client_counters_get(r->c, &n);
    r->srv = m;
    r->checked_reconnects = n.reconnects;
    return VLAD_OK;
}

static int remote_infer(vlad_remote_policy *r, const vlad_infer_job *job, float *actions,
                        vlad_err *err) {
    int rc = recheck(r, err);
    if (rc)
        return rc;
    const vlad_profile *p = r->p;
    size_t off = 0;
    for (int i = 0; i < r->views.n; i++) { /* the views, composed in order by io (views.h) */
        const vlad_camera *cam = &p->cameras[r->views.v[i].camera];
        size_t bytes = (size_t)cam->width * (size_t)cam->height * 3;
        if (off + bytes > job->image_bytes)
            return vlad_err_set(err, VLAD_ESTATE, "remote policy: the job's frame holds %zu bytes, "
                                "the views need more", job->image_bytes);
        r->imgs[i] = (vlad_serve_image){(uint32_t)cam->width, (uint32_t)cam->height,
                                        VLAD__SERVE__ENCODING__ENCODING_RAW, job->images + off, bytes};
        off += bytes;
    }
    vlad_serve_request q = {.obs_tick = job->req.obs_tick > 0 ? job->req.obs_tick : 0,
                            .images = r->imgs,
                            .n_images = r->views.n,
                            .prompt = job->prompt,
                            .state = job->req.state,
                            .state_len = r->dim,
                            .seed = job->seed,
                            .budget_us = r->budget_us};
    if (p->policy.noise_scale != 1.0) { /* the engine's own rule (engine_policy.h) */
        vlad_policy_noise(job->seed, p->policy.noise_scale, r->noise, r->noise_len);
        q.noise = r->noise;
        q.noise_len = (int)r->noise_len;
    }
    vlad_serve_reply rep;
    rc = vlad_serve_client_infer(r->c, &q, &rep, err);
    if (rep.request_bytes && r->st) { /* sent: its size and encoding time, for Status */
        atomic_fetch_add(&r->st->infer_sent, 1);
        atomic_fetch_add(&r->st->request_bytes, rep.request_bytes);
        atomic_fetch_add(&r->st->encode_ns, (uint64_t)rep.encode_us * 1000);
    }
    if (rc) {
        if (rep.code > 0 && r->st) /* a server's refusal, not a timeout */
            atomic_fetch_add(&r->st->errors, 1);
        return rc;
    }
    if (rep.horizon != r->chunk_size || rep.action_dim != r->dim)
        return vlad_err_set(err, VLAD_ERANGE, "remote policy: a %dx%d chunk, the model's is %dx%d",
                            rep.horizon, rep.action_dim, r->chunk_size, r->dim);
    memcpy(actions, rep.actions, sizeof(float) * (size_t)r->chunk_size * (size_t)r->dim);
    return VLAD_OK;
}

static int infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    vlad_remote_policy *r = self;
    if (r->local && vlad_now_ns() < r->retry_at) { /* the servers failed a moment ago */
        int rc = r->local_ops.infer(r->local_ops.self, job, actions, err);
        if (rc)
            return rc;
        if (r->st)
            atomic_fetch_add(&r->st->fallbacks, 1);
        vlad_err_set(err, VLAD_ETIMEOUT, "policy.remote: servers not answering; the fallback "
                     "policy.model ran this inference (servers tried again within %d ms)",
                     r->backoff_ms);
        return VLAD_POLICY_DEGRADED;
    }
    vlad_err e;
    vlad_err_clear(&e);
    int rc = remote_infer(r, job, actions, &e);
    publish_counters(r, rc, &e);
    if (rc == VLAD_OK) {
        r->backoff_ms = BACKOFF_MIN_MS;
        return VLAD_OK;
    }
    if (!r->local) {
        if (err)
            *err = e;
        return rc;
    }
    r->retry_at = vlad_now_ns() + (int64_t)r->backoff_ms * VLAD_NS_PER_MS;
    int wait_ms = r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    int lrc = r->local_ops.infer(r->local_ops.self, job, actions, err);
    if (lrc)
        return lrc;
    if (r->st)
        atomic_fetch_add(&r->st->fallbacks, 1);
    vlad_err_set(err, rc, "%.300s; the fallback policy.model ran this inference (servers tried "
                 "again in %d ms)", e.msg, wait_ms);
    return VLAD_POLICY_DEGRADED;
}

void vlad_remote_policy_ops(vlad_remote_policy *r, vlad_policy_ops *ops) {
    *ops = (vlad_policy_ops){.self = r, .wake_fd = -1};
    ops->horizon = r->chunk_size;
    ops->dim = r->dim;
    ops->max_delay_ticks = r->max_delay;
    ops->infer = infer;
}
