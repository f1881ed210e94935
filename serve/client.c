#include "client.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "endpoint.h"
#include "jpeg.h"
#include "keys.h"
#include "zutil.h"

#define REFUSE_BACKOFF_MIN_MS 500
#define REFUSE_BACKOFF_MAX_MS 8000
#define MAX_REPLY_BYTES (4 << 20)

typedef struct ep_state {
    char text[VLAD_ENDPOINT_MAX]; /* as given */
    char bound[VLAD_ENDPOINT_MAX]; /* as connected (ZeroMQ names it so in monitor events) */
    bool ever_connected;
    bool refused;                  /* refused at the handshake on the current socket */
} ep_state;

struct vlad_serve_client {
    void *ctx, *dealer, *mon;
    unsigned gen; /* sockets made so far */
    vlad_curve curve;
    int timeout_ms, attempts;
    char robot[VLAD_SERVE_MAX_ROBOT + 1];
    vlad_serve_dims dims;
    ep_state ep[VLAD_SERVE_CLIENT_MAX_ENDPOINTS];
    int n_ep;
    uint64_t next_id;
    int64_t refused_at;      /* last refusal (0: none on this socket) */
    int backoff_ms;
    bool refused_seen;       /* a refusal since the last successful reply */
    uint8_t *buf;
    size_t cap;
    Vlad__Serve__InferReply *last; /* the reply the caller's vlad_serve_reply points into */
    vlad_serve_client_counters n;
    int jpeg_quality;        /* 0: images as given */
    vlad_jpeg *jpeg;         /* with jpeg_quality: this client's codec */
    uint8_t *jbuf;           /* the encoded images of the request being sent */
    size_t jcap;
    int64_t rtt_ns, jitter_ns; /* emulated round trip (tests, benchmarks) */
    uint64_t rng;            /* its generator (xorshift64*) */
};

static _Atomic unsigned g_client_seq;

static void close_socket(vlad_serve_client *c) {
    if (c->dealer)
        zmq_socket_monitor(c->dealer, NULL, 0); /* stop the monitor before closing its PAIR */
    if (c->mon) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
    if (c->dealer) {
        zmq_close(c->dealer);
        c->dealer = NULL;
    }
}

/* A new DEALER (and its monitor) connected to every endpoint. */
static int open_socket(vlad_serve_client *c, vlad_err *err) {
    close_socket(c);
    c->dealer = vlad_zsock_new(c->ctx, ZMQ_DEALER, &c->curve, NULL, MAX_REPLY_BYTES, err);
    if (!c->dealer)
        return err ? err->code : VLAD_EIO;
    int one = 1, ivl = 100, ivl_max = 5000, hb = 1000, hb_to = 3000;
    if (zmq_setsockopt(c->dealer, ZMQ_IMMEDIATE, &one, sizeof one) ||
        zmq_setsockopt(c->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) ||
        zmq_setsockopt(c->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) ||
        zmq_setsockopt(c->dealer, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb) ||
        zmq_setsockopt(c->dealer, ZMQ_HEARTBEAT_TIMEOUT, &hb_to, sizeof hb_to))
        return vlad_err_set(err, VLAD_EIO, "socket options: %s", zmq_strerror(errno));
    char mon[96];
    snprintf(mon, sizeof mon, "inproc://vlad-serve-client.%ld.%u.%u", (long)getpid(),
             atomic_fetch_add(&g_client_seq, 1), c->gen++);
    if (zmq_socket_monitor(c->dealer, mon,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_DISCONNECTED))
        return vlad_err_set(err, VLAD_EIO, "socket monitor: %s", zmq_strerror(errno));
    c->mon = zmq_socket(c->ctx, ZMQ_PAIR);
    int zero = 0;
    if (!c->mon || zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof zero) || zmq_connect(c->mon, mon))
        return vlad_err_set(err, VLAD_EIO, "socket monitor: %s", zmq_strerror(errno));
    for (int i = 0; i < c->n_ep; i++) {
        c->ep[i].refused = false;
        int rc = vlad_zsock_attach(c->dealer, &c->curve, c->ep[i].text, err);
        if (rc)
            return rc;
    }
    c->refused_at = 0;
    return VLAD_OK;
}

static ep_state *ep_find(vlad_serve_client *c, const char *addr) {
    for (int i = 0; i < c->n_ep; i++)
        if (!strcmp(c->ep[i].bound, addr) || !strcmp(c->ep[i].text, addr))
            return &c->ep[i];
    return NULL;
}

/* Read every pending monitor event (never blocks). */
static void service_monitor(vlad_serve_client *c) {
    if (!c->mon)
        return;
    for (int k = 0; k < 64; k++) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 6)
            memcpy(&event, zmq_msg_data(&ev), sizeof event);
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        char a[VLAD_ENDPOINT_MAX] = "";
        if (more) {
            zmq_msg_init(&addr);
            if (zmq_msg_recv(&addr, c->mon, 0) >= 0)
                snprintf(a, sizeof a, "%.*s", (int)zmq_msg_size(&addr), (char *)zmq_msg_data(&addr));
            zmq_msg_close(&addr);
        }
        ep_state *e = ep_find(c, a);
        switch (event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            if (e) {
                if (e->ever_connected)
                    c->n.reconnects++;
                e->ever_connected = true;
                e->refused = false;
            }
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            c->n.refusals++;
            c->refused_seen = true;
            c->refused_at = vlad_now_ns();
            if (e)
                e->refused = true;
            break;
        case ZMQ_EVENT_DISCONNECTED:
            c->n.disconnects++;
            break;
        default:
            break;
        }
    }
}

/* At the start of a call: a socket a server refused is made again after the backoff. */
static int maybe_renew(vlad_serve_client *c, vlad_err *err) {
    if (!c->refused_at)
        return VLAD_OK;
    bool any = false;
    for (int i = 0; i < c->n_ep; i++)
        any |= c->ep[i].refused;
    if (!any)
        return VLAD_OK;
    if (vlad_now_ns() - c->refused_at < (int64_t)c->backoff_ms * VLAD_NS_PER_MS)
        return VLAD_OK;
    c->backoff_ms = c->backoff_ms * 2 > REFUSE_BACKOFF_MAX_MS ? REFUSE_BACKOFF_MAX_MS : c->backoff_ms * 2;
    c->n.new_sockets++;
    return open_socket(c, err);
}

vlad_serve_client *vlad_serve_client_new(const vlad_serve_client_opts *o, vlad_err *err) {
    if (!o || o->n_endpoints < 1 || o->n_endpoints > VLAD_SERVE_CLIENT_MAX_ENDPOINTS || !o->endpoints) {
        vlad_err_set(err, VLAD_EINVAL, "serve client: %d endpoints, expected 1..%d",
                     o ? o->n_endpoints : 0, VLAD_SERVE_CLIENT_MAX_ENDPOINTS);
        return NULL;
    }
    if (o->timeout_ms < 0 || o->timeout_ms > 600000 || o->attempts < 0 || o->attempts > 16) {
        vlad_err_set(err, VLAD_ERANGE, "serve client: timeout_ms %d (0..600000), attempts %d (0..16)",
                     o->timeout_ms, o->attempts);
        return NULL;
    }
    if (o->jpeg_quality < 0 || o->jpeg_quality > 100) {
        vlad_err_set(err, VLAD_ERANGE, "serve client: jpeg_quality %d, expected 0..100",
                     o->jpeg_quality);
        return NULL;
    }
    if (!(o->emulate_rtt_ms >= 0 && o->emulate_rtt_ms <= 10000 && o->emulate_jitter_ms >= 0 &&
          o->emulate_jitter_ms <= 10000)) {
        vlad_err_set(err, VLAD_ERANGE, "serve client: emulate_rtt_ms %g, emulate_jitter_ms %g: "
                     "expected 0..10000 each", o->emulate_rtt_ms, o->emulate_jitter_ms);
        return NULL;
    }
    if (o->robot && strlen(o->robot) > VLAD_SERVE_MAX_ROBOT) {
        vlad_err_set(err, VLAD_EINVAL, "serve client: robot name longer than %d bytes",
                     VLAD_SERVE_MAX_ROBOT);
        return NULL;
    }
    vlad_serve_client *c = calloc(1, sizeof *c);
    if (!c) {
        vlad_err_set(err, VLAD_ENOMEM, "serve client: out of memory");
        return NULL;
    }
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : 1000;
    c->attempts = o->attempts ? o->attempts : 1;
    c->dims = o->dims;
    c->next_id = 1;
    c->backoff_ms = REFUSE_BACKOFF_MIN_MS;
    c->jpeg_quality = o->jpeg_quality;
    c->rtt_ns = (int64_t)(o->emulate_rtt_ms * 1e6);
    c->jitter_ns = (int64_t)(o->emulate_jitter_ms * 1e6);
    c->rng = o->emulate_seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!c->rng)
        c->rng = 1;
    snprintf(c->robot, sizeof c->robot, "%s", o->robot ? o->robot : "");
    if (c->jpeg_quality && !(c->jpeg = vlad_jpeg_new(err)))
        goto fail;
    bool curve = o->server_public_key && o->server_public_key[0];
    for (int i = 0; i < o->n_endpoints; i++) {
        vlad_endpoint ep;
        if (!o->endpoints[i] || vlad_endpoint_parse(o->endpoints[i], &ep, err)) {
            if (!o->endpoints[i])
                vlad_err_set(err, VLAD_EINVAL, "serve client: endpoint %d is NULL", i);
            goto fail;
        }
        if (!curve && !ep.loopback) {
            vlad_err_set(err, VLAD_EINVAL,
                         "serve client: %s is not loopback: give the server's public key (CURVE)",
                         o->endpoints[i]);
            goto fail;
        }
        snprintf(c->ep[i].text, sizeof c->ep[i].text, "%s", o->endpoints[i]);
        snprintf(c->ep[i].bound, sizeof c->ep[i].bound, "%s", ep.bind);
    }
    c->n_ep = o->n_endpoints;
    if (curve) {
        if (strlen(o->server_public_key) != VLAD_Z85_KEY) {
            vlad_err_set(err, VLAD_EINVAL, "serve client: the server public key has %zu characters, "
                         "expected %d (Z85)", strlen(o->server_public_key), VLAD_Z85_KEY);
            goto fail;
        }
        if (!o->client_key || !o->client_key[0]) {
            vlad_err_set(err, VLAD_EINVAL, "serve client: CURVE is on: give this client's secret "
                         "certificate");
            goto fail;
        }
        vlad_cert cert;
        if (vlad_cert_read(o->client_key, true, &cert, err))
            goto fail;
        c->curve.on = true;
        snprintf(c->curve.server_public, sizeof c->curve.server_public, "%s", o->server_public_key);
        snprintf(c->curve.public_key, sizeof c->curve.public_key, "%s", cert.public_key);
        snprintf(c->curve.secret_key, sizeof c->curve.secret_key, "%s", cert.secret_key);
    }
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        vlad_err_set(err, VLAD_ENOMEM, "serve client: cannot create a ZeroMQ context");
        goto fail;
    }
    if (open_socket(c, err))
        goto fail;
    return c;
fail:
    vlad_serve_client_free(c);
    return NULL;
}

void vlad_serve_client_free(vlad_serve_client *c) {
    if (!c)
        return;
    close_socket(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    if (c->last)
        vlad__serve__infer_reply__free_unpacked(c->last, NULL);
    free(c->buf);
    free(c->jbuf);
    vlad_jpeg_free(c->jpeg);
    memset(&c->curve, 0, sizeof c->curve);
    free(c);
}

void vlad_serve_client_counters_get(const vlad_serve_client *c, vlad_serve_client_counters *out) {
    *out = c->n;
}

void vlad_serve_client_set_timeout(vlad_serve_client *c, int timeout_ms) {
    if (timeout_ms >= 1 && timeout_ms <= 600000)
        c->timeout_ms = timeout_ms;
}

vlad_serve_dims vlad_serve_client_dims(const vlad_serve_client *c) { return c->dims; }

static void reply_reset(vlad_serve_reply *r) {
    memset(r, 0, sizeof *r);
    r->code = -1;
}

static int ms_left(int64_t deadline) {
    int64_t left = deadline - vlad_now_ns();
    return left <= 0 ? 0 : (int)((left + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS);
}

/* Wait until deadline for the socket to be writable (a connection complete), servicing the
 * monitor. True when writable. */
static bool wait_writable(vlad_serve_client *c, int64_t deadline) {
    for (;;) {
        zmq_pollitem_t it[2] = {{c->dealer, 0, ZMQ_POLLOUT, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, 2, ms_left(deadline));
        service_monitor(c);
        if (n > 0 && (it[0].revents & ZMQ_POLLOUT))
            return true;
        if (vlad_now_ns() >= deadline)
            return false;
    }
}

/* Emulated network: one half of this exchange's round trip (drawn at its first half). */
static int64_t draw_rtt(vlad_serve_client *c) {
    if (!c->rtt_ns && !c->jitter_ns)
        return 0;
    c->rng ^= c->rng >> 12, c->rng ^= c->rng << 25, c->rng ^= c->rng >> 27;
    double u = (double)((c->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0; /* [0,1) */
    int64_t d = c->rtt_ns + (int64_t)((2 * u - 1) * (double)c->jitter_ns);
    return d > 0 ? d : 0;
}

static void emulate_delay(int64_t ns) {
    if (ns > 0)
        vlad_sleep_until_ns(vlad_now_ns() + ns);
}

/* kind: what the body must be */
static int exchange(vlad_serve_client *c, Vlad__Serve__InferRequest *req,
                    Vlad__Serve__InferReply__BodyCase kind, vlad_serve_reply *reply, vlad_err *err) {
    reply_reset(reply);
    if (c->last) {
        vlad__serve__infer_reply__free_unpacked(c->last, NULL);
        c->last = NULL;
    }
    service_monitor(c);
    int rc = maybe_renew(c, err);
    if (rc)
        return rc;
    req->version = VLAD_SERVE_VERSION;
    req->robot = c->robot;
    req->request_id = c->next_id++;
    uint32_t elapsed0 = req->elapsed_us;
    int64_t t_first = vlad_now_ns();
    bool sent_any = false;
    for (int attempt = 0; attempt < c->attempts; attempt++) {
        if (attempt) {
            uint64_t e = (uint64_t)elapsed0 + (uint64_t)((vlad_now_ns() - t_first) / 1000);
            req->elapsed_us = e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
        }
        size_t len;
        vlad_serve_dims *d = c->dims.state_dim ? &c->dims : NULL;
        rc = vlad_serve_pack_request(req, d, &c->buf, &c->cap, &len, err);
        if (rc)
            return rc;
        int64_t rtt = draw_rtt(c);
        emulate_delay(rtt / 2); /* the way there (emulated; not in the timeout) */
        int64_t deadline = vlad_now_ns() + (int64_t)c->timeout_ms * VLAD_NS_PER_MS;
        if (!wait_writable(c, deadline))
            continue; /* no connection this attempt */
        if (zmq_send(c->dealer, c->buf, len, ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN)
                continue;
            return vlad_err_set(err, VLAD_EIO, "serve client: send: %s", zmq_strerror(errno));
        }
        c->n.sent++;
        c->n.bytes_sent += len;
        reply->request_bytes = len;
        if (sent_any)
            c->n.resent++;
        sent_any = true;
        for (;;) {
            zmq_pollitem_t it[2] = {{c->dealer, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
            int left = ms_left(deadline);
            int pn = zmq_poll(it, 2, left);
            if (pn < 0 && errno != EINTR)
                return vlad_err_set(err, VLAD_EIO, "serve client: poll: %s", zmq_strerror(errno));
            service_monitor(c);
            if (pn > 0 && (it[0].revents & ZMQ_POLLIN)) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, c->dealer, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    continue;
                }
                bool more = zmq_msg_more(&m);
                Vlad__Serve__InferReply *r = NULL;
                int drc = more ? VLAD_EINVAL
                               : vlad_serve_decode_reply(zmq_msg_data(&m), zmq_msg_size(&m),
                                                         c->dims.state_dim ? &c->dims : NULL, &r,
                                                         NULL, 0, NULL);
                zmq_msg_close(&m);
                while (more) { /* a reply is one frame: drop the rest of a longer message */
                    zmq_msg_init(&m);
                    more = zmq_msg_recv(&m, c->dealer, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&m);
                    zmq_msg_close(&m);
                }
                if (r && r->request_id != req->request_id) {
                    c->n.dropped_stale++; /* a late reply to an earlier request, a duplicate */
                    vlad__serve__infer_reply__free_unpacked(r, NULL);
                    continue;
                }
                if (drc || (r->error == VLAD__SERVE__ERROR_CODE__OK && r->body_case != kind)) {
                    c->n.bad_replies++;
                    if (r)
                        vlad__serve__infer_reply__free_unpacked(r, NULL);
                    continue;
                }
                emulate_delay(rtt - rtt / 2); /* and back */
                c->n.replies++;
                c->refused_seen = false;
                c->backoff_ms = REFUSE_BACKOFF_MIN_MS;
                c->last = r;
                reply->code = (int)r->error;
                reply->request_id = r->request_id;
                reply->obs_tick = r->obs_tick;
                snprintf(reply->message, sizeof reply->message, "%s", r->message);
                snprintf(reply->field, sizeof reply->field, "%s", r->field);
                reply->batch_size = r->batch_size;
                if (r->latency) {
                    reply->queue_us = r->latency->queue_us;
                    reply->vision_us = r->latency->vision_us;
                    reply->prefix_us = r->latency->prefix_us;
                    reply->flow_us = r->latency->flow_us;
                    reply->total_us = r->latency->total_us;
                    reply->decode_us = r->latency->decode_us;
                }
                if (r->body_case == VLAD__SERVE__INFER_REPLY__BODY_CHUNK) {
                    reply->horizon = (int)r->chunk->horizon;
                    reply->action_dim = (int)r->chunk->action_dim;
                    reply->actions = r->chunk->actions;
                } else if (r->body_case == VLAD__SERVE__INFER_REPLY__BODY_ANSWER) {
                    reply->answer = r->answer->text.data;
                    reply->answer_len = r->answer->text.len;
                } else if (r->body_case == VLAD__SERVE__INFER_REPLY__BODY_STATUS) {
                    reply->status = r->status;
                    const Vlad__Serve__ModelInfo *mi = r->status->model;
                    if (!c->dims.state_dim && mi && mi->state_dim && mi->n_cameras &&
                        mi->image_size && mi->action_dim && mi->chunk_size)
                        c->dims = (vlad_serve_dims){(int)mi->n_cameras, (int)mi->image_size,
                                                    (int)mi->state_dim, (int)mi->action_dim,
                                                    (int)mi->chunk_size};
                }
                if (r->error == VLAD__SERVE__ERROR_CODE__OK)
                    return VLAD_OK;
                return vlad_err_set(err, vlad_serve_code_errno(reply->code),
                                    "server refused request %llu: %s: %s",
                                    (unsigned long long)r->request_id,
                                    vlad_serve_code_name(reply->code), r->message);
            }
            if (vlad_now_ns() >= deadline)
                break;
        }
    }
    c->n.timeouts++;
    char eps[3 * VLAD_ENDPOINT_MAX];
    size_t w = 0;
    eps[0] = 0;
    for (int i = 0; i < c->n_ep && w < sizeof eps; i++)
        w += (size_t)snprintf(eps + w, sizeof eps - w, "%s%s", i ? ", " : "", c->ep[i].text);
    return vlad_err_set(err, VLAD_ETIMEOUT, "serve client: no reply to request %llu from %s "
                        "within %d x %d ms%s%s",
                        (unsigned long long)req->request_id, eps, c->attempts, c->timeout_ms,
                        sent_any ? "" : " (no connection: not sent)",
                        c->refused_seen ? "; a server refused this client's key at the handshake"
                                        : "");
}

static void fill_request(Vlad__Serve__InferRequest *r, Vlad__Serve__Image *ims,
                         Vlad__Serve__Image **ptrs, const vlad_serve_request *q) {
    r->obs_tick = q->obs_tick;
    for (int i = 0; i < q->n_images; i++) {
        Vlad__Serve__Image im = VLAD__SERVE__IMAGE__INIT;
        im.width = q->images[i].width;
        im.height = q->images[i].height;
        im.encoding = (Vlad__Serve__Encoding)q->images[i].encoding;
        im.data.data = (uint8_t *)q->images[i].data;
        im.data.len = q->images[i].len;
        ims[i] = im;
        ptrs[i] = &ims[i];
    }
    r->n_images = (size_t)q->n_images;
    r->images = ptrs;
    r->prompt = (char *)(q->prompt ? q->prompt : "");
    r->n_state = q->state ? (size_t)q->state_len : 0;
    r->state = (float *)q->state;
    r->n_noise = q->noise ? (size_t)q->noise_len : 0;
    r->noise = (float *)q->noise;
    r->seed = q->seed;
    r->budget_us = q->budget_us;
    r->elapsed_us = q->elapsed_us;
}

/* opts.jpeg_quality: the request's RAW images JPEG-encoded into c->jbuf (grown to fit the
 * worst case of every image, then kept), ims[] pointing at them. */
static int encode_images(vlad_serve_client *c, Vlad__Serve__Image *ims, int n, vlad_err *err) {
    size_t need = 0;
    for (int i = 0; i < n; i++)
        if (ims[i].encoding == VLAD__SERVE__ENCODING__ENCODING_RAW) {
            size_t m = vlad_jpeg_max_bytes((int)ims[i].width, (int)ims[i].height);
            if (!m || ims[i].data.len != (size_t)ims[i].width * ims[i].height * 3)
                return vlad_err_set(err, VLAD_EINVAL, "images[%d]: %ux%u RAW with %zu bytes: "
                                    "cannot encode it as JPEG", i, ims[i].width, ims[i].height,
                                    ims[i].data.len);
            need += m;
        }
    if (need > c->jcap) {
        uint8_t *nb = realloc(c->jbuf, need);
        if (!nb)
            return vlad_err_set(err, VLAD_ENOMEM, "serve client: out of memory (%zu bytes)", need);
        c->jbuf = nb;
        c->jcap = need;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (ims[i].encoding != VLAD__SERVE__ENCODING__ENCODING_RAW)
            continue;
        size_t len;
        int rc = vlad_jpeg_encode(c->jpeg, ims[i].data.data, (int)ims[i].width, (int)ims[i].height,
                                  c->jpeg_quality, c->jbuf + off, c->jcap - off, &len, err);
        if (rc)
            return vlad_err_prefix(err, "images[%d]: ", i);
        ims[i].encoding = VLAD__SERVE__ENCODING__ENCODING_JPEG;
        ims[i].data.data = c->jbuf + off;
        ims[i].data.len = len;
        off += len;
        c->n.jpeg_images++;
    }
    return VLAD_OK;
}

static int request(vlad_serve_client *c, const vlad_serve_request *q, const char *question,
                   vlad_serve_reply *reply, vlad_err *err) {
    reply_reset(reply);
    if (!q || q->n_images < 0 || q->n_images > VLAD_SERVE_MAX_IMAGES || (q->n_images && !q->images) ||
        q->state_len < 0 || q->noise_len < 0)
        return vlad_err_set(err, VLAD_EINVAL, "serve client: bad request (NULL, a negative "
                            "length, images NULL, or more than %d images)", VLAD_SERVE_MAX_IMAGES);
    Vlad__Serve__InferRequest r = VLAD__SERVE__INFER_REQUEST__INIT;
    Vlad__Serve__Image ims[VLAD_SERVE_MAX_IMAGES];
    Vlad__Serve__Image *ptrs[VLAD_SERVE_MAX_IMAGES];
    Vlad__Serve__AskRequest ask = VLAD__SERVE__ASK_REQUEST__INIT;
    fill_request(&r, ims, ptrs, q);
    uint32_t encode_us = 0;
    if (c->jpeg_quality) {
        int64_t t0 = vlad_now_ns();
        int rc = encode_images(c, ims, q->n_images, err);
        if (rc)
            return rc;
        int64_t us = (vlad_now_ns() - t0) / 1000;
        encode_us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    }
    if (question) {
        ask.question = (char *)question;
        r.kind_case = VLAD__SERVE__INFER_REQUEST__KIND_ASK;
        r.ask = &ask;
    }
    int rc = exchange(c, &r,
                      question ? VLAD__SERVE__INFER_REPLY__BODY_ANSWER : VLAD__SERVE__INFER_REPLY__BODY_CHUNK,
                      reply, err);
    reply->encode_us = encode_us;
    return rc;
}

int vlad_serve_client_infer(vlad_serve_client *c, const vlad_serve_request *req,
                            vlad_serve_reply *reply, vlad_err *err) {
    return request(c, req, NULL, reply, err);
}

int vlad_serve_client_ask(vlad_serve_client *c, const vlad_serve_request *req,
                          const char *question, vlad_serve_reply *reply, vlad_err *err) {
    return request(c, req, question ? question : "", reply, err);
}

int vlad_serve_client_status(vlad_serve_client *c, vlad_serve_reply *reply, vlad_err *err) {
    Vlad__Serve__InferRequest r = VLAD__SERVE__INFER_REQUEST__INIT;
    Vlad__Serve__StatusRequest st = VLAD__SERVE__STATUS_REQUEST__INIT;
    r.kind_case = VLAD__SERVE__INFER_REQUEST__KIND_STATUS;
    r.status = &st;
    return exchange(c, &r, VLAD__SERVE__INFER_REPLY__BODY_STATUS, reply, err);
}
