#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "frame.h"
#include "validate.h"
#include "zutil.h"

struct vlad_client {
    const vlad_profile *p;
    unsigned flags;
    void *ctx, *sub, *dealer, *pub;
    char topics[4][VLAD_TOPIC_MAX];
    uint64_t seq, next_request, bad;
    uint8_t *buf;
    size_t cap;
};

static const char *kinds[4] = {"action", "chunk", "lang", "event"};

vlad_client *vlad_client_new(const vlad_profile *p, unsigned flags, vlad_err *err) {
    return vlad_client_new_keyed(p, flags, NULL, err);
}

vlad_client *vlad_client_new_keyed(const vlad_profile *p, unsigned flags, const char *key_file,
                                   vlad_err *err) {
    vlad_curve curve;
    if (vlad_curve_load(p, false, key_file, &curve, err))
        return NULL;
    vlad_client *c = calloc(1, sizeof *c);
    if (!c) {
        vlad_err_set(err, VLAD_ENOMEM, "client: out of memory");
        return NULL;
    }
    c->p = p;
    c->flags = flags;
    c->next_request = 1;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        vlad_err_set(err, VLAD_ENOMEM, "client: cannot create ZeroMQ context");
        goto fail;
    }
    for (int i = 0; i < 4; i++)
        vlad_topic(c->topics[i], sizeof c->topics[i], kinds[i], p->robot);
    if (flags & (VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_LANG | VLAD_CLIENT_EVENTS)) {
        c->sub = vlad_zsock_open(c->ctx, ZMQ_SUB, &curve, NULL, p->endpoints.actions, 16 << 20, err);
        if (!c->sub)
            goto fail;
        for (int i = 0; i < 4; i++)
            if (flags & (1u << i)) {
                char filt[VLAD_TOPIC_MAX + 1];
                snprintf(filt, sizeof filt, "%s ", c->topics[i]);
                zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, filt, strlen(filt));
            }
    }
    if (flags & VLAD_CLIENT_CONTROL) {
        /* ZMQ_IMMEDIATE: a command is sent only over a completed connection (the handshake
         * done, the key admitted). Without it a command sent while the daemon is down waits in
         * the socket and reaches a daemon started later -- a release nobody meant for it. */
        int one = 1;
        c->dealer = vlad_zsock_new(c->ctx, ZMQ_DEALER, &curve, NULL, 1 << 20, err);
        if (!c->dealer)
            goto fail;
        if (zmq_setsockopt(c->dealer, ZMQ_IMMEDIATE, &one, sizeof one)) {
            vlad_err_set(err, VLAD_EIO, "ZMQ_IMMEDIATE: %s", zmq_strerror(errno));
            goto fail;
        }
        if (vlad_zsock_attach(c->dealer, &curve, p->endpoints.control, err))
            goto fail;
    }
    if (flags & VLAD_CLIENT_PUBLISH) {
        /* ZMQ_IMMEDIATE: observations go only to a connected daemon. Without it the socket
         * queues them (up to its high-water mark) while the daemon is down, and a restarted
         * daemon would first receive -- and anchor on -- states the robot has long left. */
        int one = 1;
        c->pub = vlad_zsock_new(c->ctx, ZMQ_PUB, &curve, NULL, -1, err);
        if (!c->pub)
            goto fail;
        if (zmq_setsockopt(c->pub, ZMQ_IMMEDIATE, &one, sizeof one)) {
            vlad_err_set(err, VLAD_EIO, "ZMQ_IMMEDIATE: %s", zmq_strerror(errno));
            goto fail;
        }
        if (vlad_zsock_attach(c->pub, &curve, p->endpoints.observations, err))
            goto fail;
    }
    return c;
fail:
    vlad_client_free(c);
    return NULL;
}

void vlad_client_free(vlad_client *c) {
    if (!c)
        return;
    if (c->sub)
        zmq_close(c->sub);
    if (c->dealer)
        zmq_close(c->dealer);
    if (c->pub)
        zmq_close(c->pub);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c->buf);
    free(c);
}

static int send_packed(vlad_client *c, void *sock, const char *topic, const ProtobufCMessage *m,
                       vlad_err *err) {
    size_t need = vlad_frame_size(topic, m), len;
    if (need > c->cap) {
        uint8_t *nb = realloc(c->buf, need);
        if (!nb)
            return vlad_err_set(err, VLAD_ENOMEM, "client: out of memory (%zu bytes)", need);
        c->buf = nb;
        c->cap = need;
    }
    int rc = vlad_frame_pack(topic, m, c->buf, c->cap, &len, err);
    if (rc)
        return rc;
    if (zmq_send(sock, c->buf, len, ZMQ_DONTWAIT) < 0 && errno != EAGAIN)
        return vlad_err_set(err, VLAD_EIO, "send %s: %s", topic, zmq_strerror(errno));
    return VLAD_OK;
}

int vlad_client_publish_observation(vlad_client *c, Vlad__Observation *o, vlad_err *err) {
    if (!c->pub)
        return vlad_err_set(err, VLAD_ESTATE, "client: not created with VLAD_CLIENT_PUBLISH");
    char topic[VLAD_TOPIC_MAX];
    vlad_topic(topic, sizeof topic, "obs", c->p->robot);
    if (!o->robot || !o->robot[0])
        o->robot = (char *)c->p->robot;
    if (!o->seq)
        o->seq = ++c->seq;
    return send_packed(c, c->pub, topic, &o->base, err);
}

void vlad_msg_clear(vlad_msg *m) {
    if (m->kind != VLAD_MSG_NONE && m->u.base)
        protobuf_c_message_free_unpacked(m->u.base, NULL);
    m->kind = VLAD_MSG_NONE;
    m->u.base = NULL;
}

/* Decode one frame already received; VLAD_OK or VLAD_EINVAL (counted). */
static int decode(vlad_client *c, const uint8_t *data, size_t len, vlad_msg *m, vlad_err *err) {
    const uint8_t *topic, *pl;
    size_t tl, plen;
    int rc = vlad_frame_split(data, len, NULL, &topic, &tl, &pl, &plen, err);
    if (rc)
        goto bad;
    int k;
    for (k = 0; k < 4; k++)
        if (strlen(c->topics[k]) == tl && !memcmp(c->topics[k], topic, tl))
            break;
    if (k == 4) {
        rc = vlad_err_set(err, VLAD_EINVAL, "unexpected topic '%.*s'", (int)tl, (const char *)topic);
        goto bad;
    }
    m->kind = (vlad_msg_kind)(k + 1);
    switch (m->kind) {
    case VLAD_MSG_ACTION:
        m->u.action = vlad__action__unpack(NULL, plen, pl);
        rc = m->u.action ? vlad_validate_action(c->p, m->u.action, err) : VLAD_EPARSE;
        break;
    case VLAD_MSG_CHUNK:
        m->u.chunk = vlad__action_chunk__unpack(NULL, plen, pl);
        rc = m->u.chunk ? vlad_validate_chunk(c->p, m->u.chunk, err) : VLAD_EPARSE;
        break;
    case VLAD_MSG_LANG:
        m->u.lang = vlad__language_token__unpack(NULL, plen, pl);
        rc = m->u.lang ? VLAD_OK : VLAD_EPARSE;
        break;
    default:
        m->u.event = vlad__event__unpack(NULL, plen, pl);
        rc = m->u.event ? VLAD_OK : VLAD_EPARSE;
        break;
    }
    if (rc == VLAD_EPARSE) {
        m->kind = VLAD_MSG_NONE;
        m->u.base = NULL;
        rc = vlad_err_set(err, VLAD_EINVAL, "%s: malformed protobuf (%zu bytes)", c->topics[k], plen);
    }
    if (!rc)
        return VLAD_OK;
    vlad_msg_clear(m);
bad:
    c->bad++;
    return VLAD_EINVAL;
}

int vlad_client_recv(vlad_client *c, int timeout_ms, vlad_msg *m, vlad_err *err) {
    m->kind = VLAD_MSG_NONE;
    m->u.base = NULL;
    if (!c->sub)
        return vlad_err_set(err, VLAD_ESTATE, "client: no subscriptions");
    int64_t deadline = timeout_ms < 0 ? -1 : vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, c->sub, ZMQ_DONTWAIT) >= 0) {
            int rc = decode(c, zmq_msg_data(&msg), zmq_msg_size(&msg), m, err);
            zmq_msg_close(&msg);
            if (!rc)
                return VLAD_OK;
            continue; /* bad message: counted, skip */
        }
        zmq_msg_close(&msg);
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - vlad_now_ns();
            if (left <= 0)
                return vlad_err_set(err, VLAD_ETIMEOUT, "no message within %d ms", timeout_ms);
            wait = (int)((left + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS);
        }
        zmq_pollitem_t it = {c->sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, wait) < 0 && errno != EINTR)
            return vlad_err_set(err, VLAD_EIO, "poll: %s", zmq_strerror(errno));
    }
}

int vlad_client_recv_action(vlad_client *c, int timeout_ms, Vlad__Action **a, vlad_err *err) {
    *a = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    for (;;) {
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - vlad_now_ns();
            left = l <= 0 ? 0 : (int)((l + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS);
        }
        /* once we hold an action in LATEST mode, only drain what is already queued */
        vlad_msg m;
        int rc = vlad_client_recv(c, *a ? 0 : left, &m, err);
        if (rc == VLAD_ETIMEOUT)
            return *a ? VLAD_OK : rc;
        if (rc)
            return rc;
        if (m.kind != VLAD_MSG_ACTION) {
            vlad_msg_clear(&m);
            continue;
        }
        if (*a)
            vlad__action__free_unpacked(*a, NULL);
        *a = m.u.action;
        if (!(c->flags & VLAD_CLIENT_LATEST))
            return VLAD_OK;
    }
}

int vlad_client_lockstep(vlad_client *c, Vlad__Observation *o, int timeout_ms, int resend_ms,
                         void (*on_msg)(void *arg, vlad_msg *m), void *arg, Vlad__Action **a,
                         vlad_err *err) {
    *a = NULL;
    if (resend_ms < 1)
        resend_ms = 1;
    int64_t now = vlad_now_ns(), deadline = now + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    int64_t resend = now; /* the first publish */
    for (;;) {
        now = vlad_now_ns();
        if (now >= resend) {
            int rc = vlad_client_publish_observation(c, o, err);
            if (rc)
                return rc;
            resend = now + (int64_t)resend_ms * VLAD_NS_PER_MS;
        }
        int64_t until = resend < deadline ? resend : deadline;
        if (now >= deadline)
            return vlad_err_set(err, VLAD_ETIMEOUT, "lockstep: no action for robot tick %lld in %d ms",
                                (long long)o->tick, timeout_ms);
        vlad_msg m;
        int rc = vlad_client_recv(c, (int)((until - now + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS), &m,
                                  err);
        if (rc == VLAD_ETIMEOUT)
            continue;
        if (rc)
            return rc;
        if (m.kind == VLAD_MSG_ACTION && m.u.action->robot_tick == o->tick) {
            *a = m.u.action;
            return VLAD_OK;
        }
        if (m.kind == VLAD_MSG_ACTION || !on_msg)
            vlad_msg_clear(&m);
        else
            on_msg(arg, &m);
    }
}

int vlad_client_command(vlad_client *c, Vlad__Command *cmd, int timeout_ms, Vlad__Reply **reply,
                        vlad_err *err) {
    *reply = NULL;
    if (!c->dealer)
        return vlad_err_set(err, VLAD_ESTATE, "client: not created with VLAD_CLIENT_CONTROL");
    if (!cmd->request_id)
        cmd->request_id = c->next_request++;
    int64_t deadline = vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    /* the DEALER is ZMQ_IMMEDIATE: writable once a connection is complete; wait for that
     * within the timeout (a client just made, a daemon starting), never queue for later */
    for (;;) {
        zmq_pollitem_t out = {c->dealer, 0, ZMQ_POLLOUT, 0};
        int64_t left = deadline - vlad_now_ns();
        int n = zmq_poll(&out, 1, left > 0 ? (int)((left + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS) : 0);
        if (n < 0 && errno != EINTR)
            return vlad_err_set(err, VLAD_EIO, "poll: %s", zmq_strerror(errno));
        if (n > 0 && (out.revents & ZMQ_POLLOUT))
            break;
        if (vlad_now_ns() >= deadline)
            return vlad_err_set(err, VLAD_ETIMEOUT,
                                "no reply from %s within %d ms (no connection: the command was not sent)",
                                c->p->endpoints.control, timeout_ms);
    }
    int rc = send_packed(c, c->dealer, "cmd", &cmd->base, err);
    if (rc)
        return rc;
    for (;;) {
        int64_t left = deadline - vlad_now_ns();
        if (left <= 0)
            return vlad_err_set(err, VLAD_ETIMEOUT, "no reply from %s within %d ms",
                                c->p->endpoints.control, timeout_ms);
        zmq_pollitem_t it = {c->dealer, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, (int)((left + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS));
        if (n < 0 && errno != EINTR)
            return vlad_err_set(err, VLAD_EIO, "poll: %s", zmq_strerror(errno));
        if (n <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, c->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        const uint8_t *pl;
        size_t plen;
        Vlad__Reply *r = NULL;
        if (!vlad_frame_split(zmq_msg_data(&msg), zmq_msg_size(&msg), "reply", NULL, NULL, &pl, &plen,
                              NULL))
            r = vlad__reply__unpack(NULL, plen, pl);
        zmq_msg_close(&msg);
        if (!r) {
            c->bad++;
            continue;
        }
        if (r->request_id != cmd->request_id) {
            vlad__reply__free_unpacked(r, NULL); /* a late reply to an earlier request */
            continue;
        }
        *reply = r;
        return VLAD_OK;
    }
}

uint64_t vlad_client_bad_messages(const vlad_client *c) { return c->bad; }
void *vlad_client_sub_socket(vlad_client *c) { return c->sub; }

int vlad_client_status(vlad_client *c, int timeout_ms, Vlad__Reply **reply, vlad_err *err) {
    Vlad__Command cmd = VLAD__COMMAND__INIT;
    Vlad__StatusRequest sr = VLAD__STATUS_REQUEST__INIT;
    cmd.body_case = VLAD__COMMAND__BODY_STATUS;
    cmd.status = &sr;
    return vlad_client_command(c, &cmd, timeout_ms, reply, err);
}
