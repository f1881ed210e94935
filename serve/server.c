#include "server.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "batch.h"
#include "clock.h"
#include "endpoint.h"
#include "engine.h"
#include "jpeg.h"
#include "keys.h"
#include "log.h"
#include "model.h"
#include "safetensors.h"
#include "spsc.h"
#include "stats.h"
#include "wire.h"
#include "zap.h"
#include "zutil.h"

#define MAX_PEER_ID 255
#define RECV_PER_POLL 256

/* One request, from its receipt to its reply. io fills the request part and pushes it; the
 * inference thread fills the result part and pushes it back; io replies and frees it. */
typedef struct job {
    /* request (io) */
    Vlad__Serve__InferRequest *req;
    uint8_t peer[MAX_PEER_ID];
    size_t peer_len;
    bool req_envelope; /* REQ peer: an empty delimiter frame before the payload */
    int64_t t_recv, deadline; /* CLOCK_MONOTONIC ns; deadline 0: none */
    const uint8_t *pix[VLAD_SERVE_MAX_IMAGES]; /* each image's pixels: into req (RAW) or into
                                                  the job's own memory (a decoded JPEG) */
    uint32_t decode_us;
    /* result (inference) */
    int code;
    char msg[VLAD_SERVE_MAX_MESSAGE + 1];
    float *actions; /* chunk_size*action_dim, allocated with the job */
    char *answer;   /* ask: answer_cap bytes, allocated with the job */
    /* then, allocated with the job too, its decoded JPEG images (wire.h) */
    size_t answer_len;
    uint32_t queue_us, vision_us, prefix_us, flow_us, total_us, batch_size;
} job;

struct vlad_serve_server {
    vlad_serve_opts o;
    char model_path[1024];
    vlad_model *model;
    vlad_serve_dims dims;
    size_t chunk_len, answer_cap;
    int64_t t_start;

    /* io */
    void *ctx, *router;
    vlad_zap *zap;
    vlad_keyring *keys; /* NULL without CURVE */
    bool curve;
    uint8_t *rbuf;
    size_t rcap;
    int inflight; /* jobs allocated and not yet freed */
    uint64_t requests, replies, statuses, busy, bad, shape, not_auth, late_io;
    uint64_t request_bytes, jpeg_images; /* admitted chunk / ask requests; images decoded */
    vlad_jpeg *jpeg;     /* the io thread's JPEG decoder */
    vlad_hist h_decode;  /* io only: decoding a request's JPEG images */
    int64_t log_next;    /* rate limit of refusal lines: the next time one may be logged */
    uint64_t log_quiet;  /* refusals not logged since the last line */

    /* shared */
    vlad_spsc *jobs, *done;
    int job_fd, done_fd;
    _Atomic int stop;
    _Atomic uint32_t queued; /* jobs pushed and not yet taken by the inference thread */
    _Atomic uint64_t chunks, asks, batches, late_inf, internal;
    _Atomic uint32_t max_seen;
    vlad_hist h_queue, h_vision, h_prefix, h_flow, h_total; /* written by inference only */

    /* inference */
    pthread_t thread;
    bool thread_started;
    vlad_batch *batch;
    vlad_runstate *ask_rs;
    float *scratch;              /* max_batch * chunk_len */
    vlad_batch_item *items;      /* max_batch */
    const uint8_t **img_ptrs;    /* max_batch * n_cameras */
    job **pending;               /* max_batch, taken but not yet run */
};

void vlad_serve_opts_default(vlad_serve_opts *o) {
    memset(o, 0, sizeof *o);
    o->bind = VLAD_SERVE_DEFAULT_BIND;
    o->model = VLAD_SERVE_DEFAULT_MODEL;
    o->max_batch = 8;
    o->queue = 64;
    o->batch_wait_us = 0;
    o->threads = 1;
    o->max_connections = 256;
    o->min_latency_ms = 0;
}

static int check_opts(const vlad_serve_opts *o, vlad_err *err) {
    if (!o->bind || !o->bind[0])
        return vlad_err_set(err, VLAD_EINVAL, "bind: no endpoint");
    if (!o->model || !o->model[0])
        return vlad_err_set(err, VLAD_EINVAL, "model: no checkpoint");
    if (o->max_batch < 1 || o->max_batch > 256)
        return vlad_err_set(err, VLAD_ERANGE, "max-batch %d: expected 1..256", o->max_batch);
    if (o->queue < 1 || o->queue > 65536)
        return vlad_err_set(err, VLAD_ERANGE, "queue %d: expected 1..65536", o->queue);
    if (o->batch_wait_us < 0 || o->batch_wait_us > 10000000)
        return vlad_err_set(err, VLAD_ERANGE, "batch-wait-us %d: expected 0..10000000",
                            o->batch_wait_us);
    if (o->threads < 1 || o->threads > 64)
        return vlad_err_set(err, VLAD_ERANGE, "threads %d: expected 1..64", o->threads);
    if (o->max_connections < 1 || o->max_connections > 4096)
        return vlad_err_set(err, VLAD_ERANGE, "max-connections %d: expected 1..4096",
                            o->max_connections);
    if (o->min_latency_ms < 0 || o->min_latency_ms > 60000)
        return vlad_err_set(err, VLAD_ERANGE, "min-latency-ms %d: expected 0..60000",
                            o->min_latency_ms);
    if (o->server_key && o->server_key[0] && !(o->keys_dir && o->keys_dir[0]))
        return vlad_err_set(err, VLAD_EINVAL,
                            "server-key given without keys-dir: CURVE needs the folder of the "
                            "allowed clients' public certificates");
    if ((!o->server_key || !o->server_key[0]) && o->keys_dir && o->keys_dir[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "keys-dir given without server-key: CURVE needs the server's secret "
                            "certificate");
    return VLAD_OK;
}

static void wake(int fd) {
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w; /* a full counter (2^64 - 2) still wakes the reader */
}

static void drain_fd(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r; /* EAGAIN: nothing was signalled */
}

static uint32_t us_of_ns(int64_t ns) {
    if (ns <= 0)
        return 0;
    int64_t us = ns / 1000;
    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static uint32_t us_of_ms(double ms) {
    if (!(ms > 0))
        return 0;
    double us = ms * 1000.0;
    return us >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* ---- the inference thread ------------------------------------------------------------- */

static void finish(vlad_serve_server *s, job *j) {
    j->total_us = us_of_ns(vlad_now_ns() - j->t_recv);
    if (j->code == VLAD_SERVE_OK)
        vlad_hist_add(&s->h_total, vlad_now_ns() - j->t_recv);
    /* the ring holds queue + max_batch jobs and no more exist (admission), so it never fills */
    while (!vlad_spsc_push(s->done, &j))
        vlad_sleep_until_ns(vlad_now_ns() + VLAD_NS_PER_MS);
    wake(s->done_fd);
}

static void fail_job(job *j, int code, const char *msg) {
    j->code = code;
    snprintf(j->msg, sizeof j->msg, "%s", msg);
}

/* Hold results until min_latency_ms after t0 (emulation), waking for a stop. */
static void hold(vlad_serve_server *s, int64_t t0) {
    if (s->o.min_latency_ms <= 0)
        return;
    int64_t until = t0 + (int64_t)s->o.min_latency_ms * VLAD_NS_PER_MS;
    while (!atomic_load(&s->stop)) {
        int64_t now = vlad_now_ns();
        if (now >= until)
            break;
        int64_t step = until - now < 10 * VLAD_NS_PER_MS ? until - now : 10 * VLAD_NS_PER_MS;
        vlad_sleep_until_ns(now + step);
    }
}

static void run_chunks(vlad_serve_server *s, job **js, int n) {
    const vlad_config *cfg = &s->model->cfg;
    int nc = cfg->n_cameras;
    for (int i = 0; i < n; i++) {
        const Vlad__Serve__InferRequest *r = js[i]->req;
        for (int c = 0; c < nc; c++)
            s->img_ptrs[i * nc + c] = js[i]->pix[c];
        s->items[i] = (vlad_batch_item){
            .images = &s->img_ptrs[i * nc],
            .prompt = r->prompt,
            .prompt_len = strlen(r->prompt),
            .state = r->state,
            .noise = r->n_noise ? r->noise : NULL,
            .seed = r->seed,
        };
    }
    vlad_err e;
    int64_t t0 = vlad_now_ns();
    int rc = vlad_batch_infer(s->batch, n, s->items, s->scratch, &e);
    const vlad_batch_timing *t = vlad_batch_timing_get(s->batch);
    hold(s, t0);
    if (rc) {
        VLAD_LOGE("serve: batch of %d failed: %s", n, e.msg);
        atomic_fetch_add(&s->internal, (uint64_t)n);
    } else {
        atomic_fetch_add(&s->batches, 1);
        atomic_fetch_add(&s->chunks, (uint64_t)n);
        if ((uint32_t)n > atomic_load_explicit(&s->max_seen, memory_order_relaxed))
            atomic_store_explicit(&s->max_seen, (uint32_t)n, memory_order_relaxed);
        vlad_hist_add(&s->h_vision, (int64_t)(t->vision_ms * 1e6));
        vlad_hist_add(&s->h_prefix, (int64_t)(t->prefix_ms * 1e6));
        vlad_hist_add(&s->h_flow, (int64_t)(t->flow_ms * 1e6));
    }
    for (int i = 0; i < n; i++) {
        job *j = js[i];
        j->batch_size = (uint32_t)n;
        if (rc) {
            char m[VLAD_SERVE_MAX_MESSAGE + 1];
            snprintf(m, sizeof m, "inference failed: %.400s", e.msg);
            fail_job(j, VLAD_SERVE_INTERNAL, m);
        } else {
            j->code = VLAD_SERVE_OK;
            memcpy(j->actions, s->scratch + (size_t)i * s->chunk_len, s->chunk_len * sizeof(float));
            j->vision_us = us_of_ms(t->vision_ms);
            j->prefix_us = us_of_ms(t->prefix_ms);
            j->flow_us = us_of_ms(t->flow_ms);
        }
        finish(s, j);
    }
}

static void run_ask(vlad_serve_server *s, job *j) {
    const Vlad__Serve__InferRequest *r = j->req;
    const uint8_t *imgs[VLAD_SERVE_MAX_IMAGES];
    for (int c = 0; c < s->model->cfg.n_cameras; c++)
        imgs[c] = j->pix[c];
    vlad_err e;
    int64_t t0 = vlad_now_ns();
    int rc = vlad_encode_prefix(s->ask_rs, imgs, r->prompt, strlen(r->prompt), &e);
    if (rc >= 0)
        rc = vlad_lang_generate(s->ask_rs, r->ask->question, strlen(r->ask->question), j->answer,
                                s->answer_cap, &j->answer_len, &e);
    hold(s, t0);
    j->batch_size = 1;
    if (rc < 0) {
        char m[VLAD_SERVE_MAX_MESSAGE + 1];
        snprintf(m, sizeof m, "ask failed: %.400s", e.msg);
        fail_job(j, VLAD_SERVE_INTERNAL, m);
        atomic_fetch_add(&s->internal, 1);
        VLAD_LOGE("serve: %s", m);
    } else {
        const vlad_timing *t = vlad_runstate_timing(s->ask_rs);
        j->code = VLAD_SERVE_OK;
        j->vision_us = us_of_ms(t->vision_ms);
        j->prefix_us = us_of_ms(t->prefix_ms);
        atomic_fetch_add(&s->asks, 1);
    }
    finish(s, j);
}

/* The job starts now: its queue time; if its deadline has passed, answer it LATE (true). */
static bool late(vlad_serve_server *s, job *j, int64_t now) {
    j->queue_us = us_of_ns(now - j->t_recv);
    vlad_hist_add(&s->h_queue, now - j->t_recv);
    if (!j->deadline || now <= j->deadline)
        return false;
    char m[160];
    snprintf(m, sizeof m, "deadline passed %.3f ms before it could start (queued %.3f ms)",
             (double)(now - j->deadline) / 1e6, (double)(now - j->t_recv) / 1e6);
    fail_job(j, VLAD_SERVE_LATE, m);
    atomic_fetch_add(&s->late_inf, 1);
    finish(s, j);
    return true;
}

/* Take jobs from the ring into pending[] (up to max_batch in all). */
static int take(vlad_serve_server *s, int n) {
    job *j;
    while (n < s->o.max_batch && vlad_spsc_pop(s->jobs, &j)) {
        atomic_fetch_sub(&s->queued, 1);
        s->pending[n++] = j;
    }
    return n;
}

static void *infer_main(void *arg) {
    vlad_serve_server *s = arg;
    struct pollfd pfd = {.fd = s->job_fd, .events = POLLIN};
    while (!atomic_load(&s->stop)) {
        drain_fd(s->job_fd); /* before looking at the ring: a push after this wakes the poll */
        int n = take(s, 0);
        if (n == 0) {
            poll(&pfd, 1, 100);
            continue;
        }
        if (s->o.batch_wait_us > 0 && n < s->o.max_batch) {
            /* more may come: wait from the first one's receipt */
            int64_t until = s->pending[0]->t_recv + (int64_t)s->o.batch_wait_us * 1000;
            while (n < s->o.max_batch && !atomic_load(&s->stop)) {
                int64_t left = until - vlad_now_ns();
                if (left <= 0)
                    break;
                drain_fd(s->job_fd);
                int before = n;
                n = take(s, n);
                if (n == before)
                    poll(&pfd, 1, (int)((left + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS));
            }
        }
        /* what is already late is answered, never run. A job handed back (finish) belongs to
         * io again and may be freed at once: pending[] is emptied first */
        int64_t now = vlad_now_ns();
        job *chunks[256], *asks[256];
        int nchunk = 0, nask = 0;
        for (int i = 0; i < n; i++) {
            job *j = s->pending[i];
            s->pending[i] = NULL;
            if (j->req->kind_case == VLAD__SERVE__INFER_REQUEST__KIND_ASK)
                asks[nask++] = j; /* after the batch: their deadline is looked at then */
            else if (!late(s, j, now))
                chunks[nchunk++] = j;
        }
        if (nchunk)
            run_chunks(s, chunks, nchunk);
        for (int i = 0; i < nask; i++)
            if (!late(s, asks[i], vlad_now_ns()))
                run_ask(s, asks[i]);
    }
    return NULL;
}

/* ---- io ------------------------------------------------------------------------------- */

static void log_refusal(vlad_serve_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_refusal(vlad_serve_server *s, const char *fmt, ...) {
    int64_t now = vlad_now_ns();
    if (now < s->log_next) {
        s->log_quiet++;
        return;
    }
    char line[VLAD_LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->log_quiet)
        VLAD_LOGW("serve: %s (and %llu more refusals since the last line)", line,
                  (unsigned long long)s->log_quiet);
    else
        VLAD_LOGW("serve: %s", line);
    s->log_quiet = 0;
    s->log_next = now + VLAD_NS_PER_S;
}

static void send_reply(vlad_serve_server *s, const uint8_t *peer, size_t peer_len, bool env,
                       const Vlad__Serve__InferReply *r) {
    if (!peer_len)
        return;
    size_t len;
    vlad_err e;
    if (vlad_serve_pack_reply(r, &s->dims, &s->rbuf, &s->rcap, &len, &e)) {
        /* a reply we cannot pack (the engine produced a non-finite value): say so instead */
        VLAD_LOGE("serve: reply to request %llu not sent as made: %s",
                  (unsigned long long)r->request_id, e.msg);
        Vlad__Serve__InferReply alt = VLAD__SERVE__INFER_REPLY__INIT;
        char m[VLAD_SERVE_MAX_MESSAGE + 1];
        snprintf(m, sizeof m, "the result failed the reply check: %.400s", e.msg);
        alt.version = VLAD_SERVE_VERSION;
        alt.request_id = r->request_id;
        alt.obs_tick = r->obs_tick;
        alt.error = VLAD__SERVE__ERROR_CODE__INTERNAL;
        alt.message = m;
        if (vlad_serve_pack_reply(&alt, &s->dims, &s->rbuf, &s->rcap, &len, &e))
            return;
    }
    /* never blocks: an unknown peer (gone) or a full pipe drops the reply */
    if (zmq_send(s->router, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    if (env && zmq_send(s->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    if (zmq_send(s->router, s->rbuf, len, ZMQ_DONTWAIT) >= 0)
        s->replies++;
}

/* An error reply at once (io), naming the field. */
static void refuse(vlad_serve_server *s, const uint8_t *peer, size_t peer_len, bool env,
                   const Vlad__Serve__InferRequest *req, int code, const char *field,
                   const char *msg) {
    Vlad__Serve__InferReply r = VLAD__SERVE__INFER_REPLY__INIT;
    char m[VLAD_SERVE_MAX_MESSAGE + 1], f[VLAD_SERVE_MAX_FIELD + 1];
    snprintf(m, sizeof m, "%s", msg);
    snprintf(f, sizeof f, "%s", field ? field : "");
    r.version = VLAD_SERVE_VERSION;
    r.request_id = req ? req->request_id : 0;
    r.obs_tick = req ? req->obs_tick : 0;
    r.error = (Vlad__Serve__ErrorCode)code;
    r.message = m;
    r.field = f;
    send_reply(s, peer, peer_len, env, &r);
}

static void fill_lat(Vlad__LatencyStats *o, const vlad_hist *h) {
    vlad_hist_summary x;
    vlad_hist_summarize(h, &x);
    o->count = x.count;
    o->p50_us = x.p50_us;
    o->p99_us = x.p99_us;
    o->max_us = x.max_us;
    o->mean_us = x.mean_us;
}

static void reply_status(vlad_serve_server *s, const uint8_t *peer, size_t peer_len, bool env,
                         const Vlad__Serve__InferRequest *req) {
    s->statuses++;
    vlad_serve_stats st;
    vlad_serve_server_stats(s, &st);
    const vlad_config *c = &s->model->cfg;
    Vlad__Serve__ModelInfo mi = VLAD__SERVE__MODEL_INFO__INIT;
    mi.path = s->model_path;
    mi.n_cameras = (uint32_t)c->n_cameras;
    mi.image_size = (uint32_t)c->image_size;
    mi.state_dim = (uint32_t)c->state_dim;
    mi.action_dim = (uint32_t)c->action_dim;
    mi.chunk_size = (uint32_t)c->chunk_size;
    mi.max_prompt_tokens = (uint32_t)c->max_prompt_tokens;
    mi.parameters = (uint64_t)vlad_model_param_count(s->model);
    /* what a daemon needs to compose its requests (views.h) and plan its delay */
    const char *views = s->model->file ? vlad_st_meta(s->model->file, "vlad.views") : NULL;
    mi.views = (char *)(views ? views : "");
    const char *dm = s->model->file ? vlad_st_meta(s->model->file, "vlad.train.delta_max") : NULL;
    long dmv = dm ? strtol(dm, NULL, 10) : 0;
    mi.delta_max = dmv > 0 && dmv <= 65535 ? (uint32_t)dmv : 0;
    Vlad__LatencyStats lq = VLAD__LATENCY_STATS__INIT, lv = lq, lp = lq, lf = lq, lt = lq, ld = lq;
    fill_lat(&lq, &s->h_queue);
    fill_lat(&lv, &s->h_vision);
    fill_lat(&lp, &s->h_prefix);
    fill_lat(&lf, &s->h_flow);
    fill_lat(&lt, &s->h_total);
    fill_lat(&ld, &s->h_decode);
    Vlad__Serve__ServeStatus ss = VLAD__SERVE__SERVE_STATUS__INIT;
    ss.model = &mi;
    ss.uptime_s = (double)(vlad_now_ns() - s->t_start) / 1e9;
    ss.max_batch = (uint32_t)s->o.max_batch;
    ss.queue_cap = (uint32_t)s->o.queue;
    ss.batch_wait_us = (uint32_t)s->o.batch_wait_us;
    ss.queued = st.queued;
    ss.requests = st.requests;
    ss.replies = st.replies;
    ss.chunks = st.chunks;
    ss.asks = st.asks;
    ss.batches = st.batches;
    ss.mean_batch = st.mean_batch;
    ss.max_batch_seen = st.max_batch_seen;
    ss.late = st.late;
    ss.busy = st.busy;
    ss.bad_requests = st.bad_requests;
    ss.shape_errors = st.shape_errors;
    ss.not_authorised = st.not_authorised;
    ss.internal_errors = st.internal_errors;
    ss.queue = &lq;
    ss.vision = &lv;
    ss.prefix = &lp;
    ss.flow = &lf;
    ss.total = &lt;
    ss.decode = &ld;
    ss.request_bytes = st.request_bytes;
    ss.jpeg_images = st.jpeg_images;
    ss.curve = s->curve;
    ss.client_keys = s->keys ? (uint32_t)s->keys->n : 0;
    ss.handshakes_refused = vlad_zap_refused(s->zap);
    ss.connections = vlad_zap_connections(s->zap);
    Vlad__Serve__InferReply r = VLAD__SERVE__INFER_REPLY__INIT;
    r.version = VLAD_SERVE_VERSION;
    r.request_id = req->request_id;
    r.obs_tick = req->obs_tick;
    r.body_case = VLAD__SERVE__INFER_REPLY__BODY_STATUS;
    r.status = &ss;
    send_reply(s, peer, peer_len, env, &r);
}

static void reply_job(vlad_serve_server *s, job *j) {
    Vlad__Serve__InferReply r = VLAD__SERVE__INFER_REPLY__INIT;
    Vlad__Serve__Latency lat = VLAD__SERVE__LATENCY__INIT;
    Vlad__Serve__Chunk ch = VLAD__SERVE__CHUNK__INIT;
    Vlad__Serve__Answer an = VLAD__SERVE__ANSWER__INIT;
    r.version = VLAD_SERVE_VERSION;
    r.request_id = j->req->request_id;
    r.obs_tick = j->req->obs_tick;
    r.error = (Vlad__Serve__ErrorCode)j->code;
    lat.queue_us = j->queue_us;
    lat.vision_us = j->vision_us;
    lat.prefix_us = j->prefix_us;
    lat.flow_us = j->flow_us;
    lat.total_us = j->total_us;
    lat.decode_us = j->decode_us;
    r.latency = &lat;
    if (j->code != VLAD_SERVE_OK) {
        r.message = j->msg;
        log_refusal(s, "request %llu from '%.63s': %s: %s", (unsigned long long)r.request_id,
                    j->req->robot, vlad_serve_code_name(j->code), j->msg);
    } else if (j->req->kind_case == VLAD__SERVE__INFER_REQUEST__KIND_ASK) {
        r.batch_size = 1;
        an.text.data = (uint8_t *)j->answer;
        an.text.len = j->answer_len;
        r.body_case = VLAD__SERVE__INFER_REPLY__BODY_ANSWER;
        r.answer = &an;
    } else {
        r.batch_size = j->batch_size;
        ch.horizon = (uint32_t)s->dims.chunk_size;
        ch.action_dim = (uint32_t)s->dims.action_dim;
        ch.n_actions = s->chunk_len;
        ch.actions = j->actions;
        r.body_case = VLAD__SERVE__INFER_REPLY__BODY_CHUNK;
        r.chunk = &ch;
    }
    send_reply(s, j->peer, j->peer_len, j->req_envelope, &r);
}

static void free_job(vlad_serve_server *s, job *j) {
    if (!j)
        return;
    vlad__serve__infer_request__free_unpacked(j->req, NULL);
    free(j);
    s->inflight--;
}

static void drain_done(vlad_serve_server *s) {
    drain_fd(s->done_fd);
    job *j;
    while (vlad_spsc_pop(s->done, &j)) {
        reply_job(s, j);
        free_job(s, j);
    }
}

/* Handle one message from the ROUTER; false when none was pending. */
static bool recv_one(vlad_serve_server *s) {
    zmq_msg_t m[4];
    int n;
    vlad_err e;
    int rc = vlad_zrecv_frames(s->router, m, 4, &n, &e);
    if (rc == VLAD_EAGAIN)
        return false;
    s->requests++;
    if (rc) { /* more than 4 frames: all dropped, no reliable routing id */
        s->bad++;
        log_refusal(s, "dropped a message: %s", e.msg);
        return true;
    }
    int64_t t_recv = vlad_now_ns();
    uint8_t peer[MAX_PEER_ID];
    size_t peer_len = zmq_msg_size(&m[0]);
    if (peer_len > sizeof peer)
        peer_len = 0;
    else
        memcpy(peer, zmq_msg_data(&m[0]), peer_len);
    bool env = n == 3 && zmq_msg_size(&m[1]) == 0;
    unsigned rights = VLAD_RIGHTS_ALL;
    char who[64] = "local";
    if (s->curve) {
        const char *uid = zmq_msg_gets(&m[n - 1], "User-Id");
        const vlad_cert *cert = uid ? vlad_keyring_find_z85(s->keys, uid) : NULL;
        rights = cert ? cert->rights : 0;
        snprintf(who, sizeof who, "%s", cert ? cert->name : "unknown key");
    }
    Vlad__Serve__InferRequest *req = NULL;
    char field[VLAD_SERVE_MAX_FIELD + 1] = "";
    if (n < 2 || (n == 3 && !env) || n > 3) {
        rc = vlad_err_set(&e, VLAD_EINVAL, "frame: expected one frame after the routing id, got %d",
                          n - 1);
        snprintf(field, sizeof field, "frame");
    } else {
        rc = vlad_serve_decode_request(zmq_msg_data(&m[n - 1]), zmq_msg_size(&m[n - 1]), &s->dims,
                                       &req, field, sizeof field, &e);
    }
    size_t frame_bytes = n >= 2 ? zmq_msg_size(&m[n - 1]) : 0;
    vlad_zmsgs_close(m, n);
    bool status = req && req->kind_case == VLAD__SERVE__INFER_REQUEST__KIND_STATUS;
    if (req && !status && !(rights & VLAD_RIGHT_INFER)) {
        /* before the content checks: an unauthorised client learns nothing else. The ZAP
         * handler already refuses the handshake of a key without the infer right (zap.h,
         * domain "inf"); this is the same rule per request, should a key's rights change */
        s->not_auth++;
        char msg[160];
        snprintf(msg, sizeof msg, "client '%s' lacks the infer right (keys.h)", who);
        log_refusal(s, "request %llu: NOT_AUTHORISED: %s", (unsigned long long)req->request_id, msg);
        refuse(s, peer, peer_len, env, req, VLAD_SERVE_NOT_AUTHORISED, "", msg);
        vlad__serve__infer_request__free_unpacked(req, NULL);
        return true;
    }
    if (rc) {
        int code = vlad_serve_code_of(rc);
        if (code == VLAD_SERVE_SHAPE)
            s->shape++;
        else
            s->bad++;
        log_refusal(s, "request %llu from %s: %s: %s", req ? (unsigned long long)req->request_id : 0ULL,
                    who, vlad_serve_code_name(code), e.msg);
        refuse(s, peer, peer_len, env, req, code, field, e.msg);
        if (req)
            vlad__serve__infer_request__free_unpacked(req, NULL);
        return true;
    }
    if (status) {
        reply_status(s, peer, peer_len, env, req);
        vlad__serve__infer_request__free_unpacked(req, NULL);
        return true;
    }
    /* the job first: a request's JPEG images are decoded into its own memory */
    size_t pix_bytes = vlad_serve_decoded_bytes(req);
    job *j = calloc(1, sizeof *j + s->chunk_len * sizeof(float) + s->answer_cap + pix_bytes);
    if (!j) {
        refuse(s, peer, peer_len, env, req, VLAD_SERVE_INTERNAL, "", "server out of memory");
        vlad__serve__infer_request__free_unpacked(req, NULL);
        return true;
    }
    j->req = req;
    j->actions = (float *)(j + 1);
    j->answer = (char *)(j->actions + s->chunk_len);
    s->inflight++;
    if (pix_bytes) {
        int64_t t0 = vlad_now_ns();
        rc = vlad_serve_decode_images(s->jpeg, req, (uint8_t *)j->answer + s->answer_cap, pix_bytes,
                                      j->pix, field, sizeof field, &e);
        int64_t dt = vlad_now_ns() - t0;
        if (rc) {
            int code = vlad_serve_code_of(rc);
            if (code == VLAD_SERVE_SHAPE)
                s->shape++;
            else
                s->bad++;
            log_refusal(s, "request %llu from %s: %s: %s", (unsigned long long)req->request_id, who,
                        vlad_serve_code_name(code), e.msg);
            refuse(s, peer, peer_len, env, req, code, field, e.msg);
            free_job(s, j);
            return true;
        }
        j->decode_us = us_of_ns(dt);
        vlad_hist_add(&s->h_decode, dt);
        for (size_t i = 0; i < req->n_images; i++)
            s->jpeg_images += req->images[i]->encoding == VLAD__SERVE__ENCODING__ENCODING_JPEG;
    } else {
        vlad_serve_decode_images(NULL, req, NULL, 0, j->pix, NULL, 0, NULL); /* all RAW */
    }
    if (req->budget_us && req->elapsed_us >= req->budget_us) {
        s->late_io++;
        char msg[128];
        snprintf(msg, sizeof msg, "deadline already passed on arrival (elapsed_us %u >= budget_us %u)",
                 req->elapsed_us, req->budget_us);
        refuse(s, peer, peer_len, env, req, VLAD_SERVE_LATE, "", msg);
        free_job(s, j);
        return true;
    }
    /* this job is counted in inflight already: the cap is queue + max_batch jobs at once */
    if (atomic_load(&s->queued) >= (uint32_t)s->o.queue ||
        s->inflight > s->o.queue + s->o.max_batch) {
        s->busy++;
        char msg[128];
        snprintf(msg, sizeof msg, "queue full (%d requests waiting)", s->o.queue);
        refuse(s, peer, peer_len, env, req, VLAD_SERVE_BUSY, "", msg);
        free_job(s, j);
        return true;
    }
    s->request_bytes += frame_bytes;
    memcpy(j->peer, peer, peer_len);
    j->peer_len = peer_len;
    j->req_envelope = env;
    j->t_recv = t_recv;
    if (req->budget_us)
        j->deadline = t_recv + (int64_t)(req->budget_us - req->elapsed_us) * 1000;
    atomic_fetch_add(&s->queued, 1);
    if (!vlad_spsc_push(s->jobs, &j)) { /* cannot happen: the ring holds queue + max_batch */
        atomic_fetch_sub(&s->queued, 1);
        s->busy++;
        refuse(s, peer, peer_len, env, req, VLAD_SERVE_BUSY, "", "queue full");
        free_job(s, j);
        return true;
    }
    wake(s->job_fd);
    return true;
}

int vlad_serve_server_poll(vlad_serve_server *s, int timeout_ms, vlad_err *err) {
    zmq_pollitem_t it[2 + VLAD_ZAP_MAX_WATCH + 1];
    int n = 0;
    it[n++] = (zmq_pollitem_t){s->router, 0, ZMQ_POLLIN, 0};
    it[n++] = (zmq_pollitem_t){NULL, s->done_fd, ZMQ_POLLIN, 0};
    void *zs[VLAD_ZAP_MAX_WATCH + 1];
    int nz = vlad_zap_sockets(s->zap, zs, VLAD_ZAP_MAX_WATCH + 1);
    for (int i = 0; i < nz; i++)
        it[n++] = (zmq_pollitem_t){zs[i], 0, ZMQ_POLLIN, 0};
    if (zmq_poll(it, n, timeout_ms) < 0) {
        if (errno == EINTR)
            return VLAD_OK;
        return vlad_err_set(err, VLAD_EIO, "poll: %s", zmq_strerror(errno));
    }
    vlad_zap_handle(s->zap);
    drain_done(s);
    for (int i = 0; i < RECV_PER_POLL && recv_one(s); i++)
        ;
    drain_done(s);
    return VLAD_OK;
}

void vlad_serve_server_stats(const vlad_serve_server *s, vlad_serve_stats *o) {
    memset(o, 0, sizeof *o);
    o->requests = s->requests;
    o->replies = s->replies;
    o->statuses = s->statuses;
    o->chunks = atomic_load(&s->chunks);
    o->asks = atomic_load(&s->asks);
    o->batches = atomic_load(&s->batches);
    o->late = s->late_io + atomic_load(&s->late_inf);
    o->busy = s->busy;
    o->bad_requests = s->bad;
    o->shape_errors = s->shape;
    o->not_authorised = s->not_auth;
    o->internal_errors = atomic_load(&s->internal);
    o->queued = atomic_load(&s->queued);
    o->request_bytes = s->request_bytes;
    o->jpeg_images = s->jpeg_images;
    o->max_batch_seen = atomic_load(&s->max_seen);
    o->mean_batch = o->batches ? (double)o->chunks / (double)o->batches : 0.0;
}

/* ---- set-up and shutdown -------------------------------------------------------------- */

static int setup_socket(vlad_serve_server *s, vlad_err *err) {
    vlad_endpoint ep;
    int rc = vlad_endpoint_parse(s->o.bind, &ep, err);
    if (rc)
        return vlad_err_prefix(err, "bind: ");
    vlad_curve curve;
    memset(&curve, 0, sizeof curve);
    curve.server = true;
    if (s->o.server_key && s->o.server_key[0]) {
        vlad_cert cert;
        if ((rc = vlad_cert_read(s->o.server_key, true, &cert, err)))
            return vlad_err_prefix(err, "server-key: ");
        curve.on = true;
        snprintf(curve.public_key, sizeof curve.public_key, "%s", cert.public_key);
        snprintf(curve.server_public, sizeof curve.server_public, "%s", cert.public_key);
        snprintf(curve.secret_key, sizeof curve.secret_key, "%s", cert.secret_key);
        s->keys = calloc(1, sizeof *s->keys);
        if (!s->keys)
            return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        if ((rc = vlad_keyring_load(s->o.keys_dir, s->keys, err)))
            return vlad_err_prefix(err, "keys-dir: ");
        s->curve = true;
    } else if (!ep.loopback) {
        return vlad_err_set(err, VLAD_EINVAL,
                            "bind %s: a non-loopback endpoint requires CURVE (--server-key and "
                            "--keys-dir)",
                            s->o.bind);
    }
    s->ctx = zmq_ctx_new();
    if (!s->ctx)
        return vlad_err_set(err, VLAD_ENOMEM, "cannot create a ZeroMQ context");
    /* the ZAP handler before the socket: every handshake on the "inf" domain goes through it
     * (CURVE: only the keyring's keys; without: NULL-mechanism clients), capped per socket */
    s->zap = vlad_zap_new(s->ctx, s->keys, s->o.max_connections, err);
    if (!s->zap)
        return err ? err->code : VLAD_EIO;
    int64_t max_msg = (int64_t)vlad_serve_max_request_frame(&s->dims);
    s->router = vlad_zsock_new(s->ctx, ZMQ_ROUTER, &curve, "inf", max_msg, err);
    if (!s->router)
        return err ? err->code : VLAD_EIO;
    if ((rc = vlad_zap_watch(s->zap, s->router, "inf", err)))
        return rc;
    if ((rc = vlad_zsock_attach(s->router, &curve, s->o.bind, err)))
        return rc;
    return VLAD_OK;
}

vlad_serve_server *vlad_serve_server_new(const vlad_serve_opts *o, vlad_err *err) {
    if (check_opts(o, err))
        return NULL;
    vlad_serve_server *s = calloc(1, sizeof *s);
    if (!s) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->job_fd = s->done_fd = -1;
    s->t_start = vlad_now_ns();
    snprintf(s->model_path, sizeof s->model_path, "%s", o->model);
    s->o.model = s->model_path; /* bind and the key paths: used during set-up only */
    vlad_hist_init(&s->h_queue);
    vlad_hist_init(&s->h_vision);
    vlad_hist_init(&s->h_prefix);
    vlad_hist_init(&s->h_flow);
    vlad_hist_init(&s->h_total);
    vlad_hist_init(&s->h_decode);
    if (vlad_model_load(o->model, &s->model, err))
        goto fail;
    const vlad_config *c = &s->model->cfg;
    if (c->n_cameras > VLAD_SERVE_MAX_IMAGES) {
        vlad_err_set(err, VLAD_EINVAL, "model %s: %d cameras, this server takes at most %d",
                     o->model, c->n_cameras, VLAD_SERVE_MAX_IMAGES);
        goto fail;
    }
    s->dims = (vlad_serve_dims){c->n_cameras, c->image_size, c->state_dim, c->action_dim,
                                c->chunk_size};
    s->chunk_len = (size_t)c->chunk_size * (size_t)c->action_dim;
    int atext = c->max_text_tokens < VLAD_SERVE_MAX_ANSWER ? c->max_text_tokens : VLAD_SERVE_MAX_ANSWER;
    s->answer_cap = (size_t)atext + 1;
    vlad_runstate_opts ro = {.n_threads = o->threads, .max_streams = 0};
    s->batch = vlad_batch_new(s->model, o->max_batch, &ro, err);
    if (!s->batch)
        goto fail;
    vlad_runstate_opts ao = {.n_threads = o->threads, .max_streams = 1};
    s->ask_rs = vlad_runstate_new(s->model, &ao, err);
    if (!s->ask_rs)
        goto fail;
    s->jpeg = vlad_jpeg_new(err);
    if (!s->jpeg)
        goto fail;
    s->scratch = calloc((size_t)o->max_batch * s->chunk_len, sizeof(float));
    s->items = calloc((size_t)o->max_batch, sizeof *s->items);
    s->img_ptrs = calloc((size_t)o->max_batch * (size_t)c->n_cameras, sizeof *s->img_ptrs);
    s->pending = calloc((size_t)o->max_batch, sizeof *s->pending);
    if (!s->scratch || !s->items || !s->img_ptrs || !s->pending) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto fail;
    }
    size_t ring = (size_t)o->queue + (size_t)o->max_batch;
    s->jobs = vlad_spsc_new(sizeof(job *), ring, err);
    s->done = s->jobs ? vlad_spsc_new(sizeof(job *), ring, err) : NULL;
    if (!s->done)
        goto fail;
    s->job_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->job_fd < 0 || s->done_fd < 0) {
        vlad_err_set(err, VLAD_EIO, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (setup_socket(s, err))
        goto fail;
    s->o.bind = s->o.server_key = s->o.keys_dir = NULL; /* the caller's strings: not kept */
    if (pthread_create(&s->thread, NULL, infer_main, s)) {
        vlad_err_set(err, VLAD_EIO, "cannot start the inference thread");
        goto fail;
    }
    s->thread_started = true;
    return s;
fail:
    vlad_serve_server_free(s);
    return NULL;
}

void vlad_serve_server_free(vlad_serve_server *s) {
    if (!s)
        return;
    if (s->thread_started) {
        atomic_store(&s->stop, 1);
        wake(s->job_fd);
        pthread_join(s->thread, NULL);
    }
    if (s->done) {
        if (s->router)
            drain_done(s);
        job *j;
        while (s->jobs && vlad_spsc_pop(s->jobs, &j)) {
            atomic_fetch_sub(&s->queued, 1);
            if (s->router) {
                fail_job(j, VLAD_SERVE_BUSY, "server shutting down");
                reply_job(s, j);
            }
            free_job(s, j);
        }
    }
    vlad_zap_free(s->zap);
    if (s->router)
        zmq_close(s->router);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    vlad_spsc_free(s->jobs);
    vlad_spsc_free(s->done);
    if (s->job_fd >= 0)
        close(s->job_fd);
    if (s->done_fd >= 0)
        close(s->done_fd);
    vlad_batch_free(s->batch);
    vlad_runstate_free(s->ask_rs);
    vlad_jpeg_free(s->jpeg);
    vlad_model_free(s->model);
    free(s->scratch);
    free(s->items);
    free(s->img_ptrs);
    free(s->pending);
    free(s->keys);
    free(s->rbuf);
    free(s);
}
