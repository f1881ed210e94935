#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "frame.h"
#include "validate.h"
#include "zutil.h"

struct vlad_server {
    const vlad_profile *p;
    void *ctx;
    void *sub, *pub, *router;
    char obs_topic[VLAD_TOPIC_MAX];
    uint8_t *buf; /* publish buffer, grown on demand (I/O thread only) */
    size_t cap;
    uint64_t bad_obs, bad_cmd;
};

vlad_server *vlad_server_new(const vlad_profile *p, vlad_err *err) {
    vlad_server *s = calloc(1, sizeof *s);
    if (!s) {
        vlad_err_set(err, VLAD_ENOMEM, "server: out of memory");
        return NULL;
    }
    s->p = p;
    s->ctx = zmq_ctx_new();
    s->cap = 1 << 16;
    s->buf = malloc(s->cap);
    if (!s->ctx || !s->buf) {
        vlad_err_set(err, VLAD_ENOMEM, "server: cannot create ZeroMQ context");
        vlad_server_free(s);
        return NULL;
    }
    vlad_topic(s->obs_topic, sizeof s->obs_topic, "obs", p->robot);
    s->sub = vlad_zsock_open(s->ctx, ZMQ_SUB, p, true, p->endpoints.observations,
                             (int64_t)vlad_max_observation_frame(p), err);
    if (!s->sub)
        goto fail;
    char filt[VLAD_TOPIC_MAX + 1];
    snprintf(filt, sizeof filt, "%s ", s->obs_topic);
    zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, filt, strlen(filt));
    s->pub = vlad_zsock_open(s->ctx, ZMQ_PUB, p, true, p->endpoints.actions, -1, err);
    if (!s->pub)
        goto fail;
    s->router = vlad_zsock_open(s->ctx, ZMQ_ROUTER, p, true, p->endpoints.control, 64 * 1024, err);
    if (!s->router)
        goto fail;
    int one = 1;
    zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    return s;
fail:
    vlad_server_free(s);
    return NULL;
}

void vlad_server_free(vlad_server *s) {
    if (!s)
        return;
    if (s->sub)
        zmq_close(s->sub);
    if (s->pub)
        zmq_close(s->pub);
    if (s->router)
        zmq_close(s->router);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    free(s->buf);
    free(s);
}

int vlad_server_poll(vlad_server *s, int timeout_ms, int extra_fd) {
    zmq_pollitem_t items[3] = {
        {s->sub, 0, ZMQ_POLLIN, 0},
        {s->router, 0, ZMQ_POLLIN, 0},
        {NULL, extra_fd, ZMQ_POLLIN, 0},
    };
    int n = zmq_poll(items, extra_fd >= 0 ? 3 : 2, timeout_ms);
    if (n <= 0)
        return 0;
    int mask = 0;
    if (items[0].revents & ZMQ_POLLIN)
        mask |= VLAD_SRV_OBS;
    if (items[1].revents & ZMQ_POLLIN)
        mask |= VLAD_SRV_CMD;
    if (extra_fd >= 0 && (items[2].revents & ZMQ_POLLIN))
        mask |= VLAD_SRV_FD;
    return mask;
}

int vlad_server_recv_observation(vlad_server *s, Vlad__Observation **out, vlad_err *err) {
    zmq_msg_t m[1];
    int n;
    int rc = vlad_zrecv_frames(s->sub, m, 1, &n, err);
    if (rc == VLAD_EAGAIN)
        return rc;
    if (rc) {
        s->bad_obs++;
        return VLAD_EINVAL;
    }
    const uint8_t *pl;
    size_t plen;
    rc = vlad_frame_split(zmq_msg_data(&m[0]), zmq_msg_size(&m[0]), s->obs_topic, NULL, NULL, &pl,
                          &plen, err);
    Vlad__Observation *o = NULL;
    if (!rc) {
        o = vlad__observation__unpack(NULL, plen, pl);
        if (!o)
            rc = vlad_err_set(err, VLAD_EINVAL, "observation: malformed protobuf (%zu bytes)", plen);
    }
    vlad_zmsgs_close(m, 1);
    if (!rc)
        rc = vlad_validate_observation(s->p, o, err);
    if (rc) {
        if (o)
            vlad__observation__free_unpacked(o, NULL);
        s->bad_obs++;
        return VLAD_EINVAL;
    }
    *out = o;
    return VLAD_OK;
}

int vlad_server_recv_command(vlad_server *s, Vlad__Command **out, vlad_peer *peer, vlad_err *err) {
    zmq_msg_t m[8]; /* room to see (and refuse, with a reply) a few extra frames */
    int n;
    peer->id_len = 0;
    peer->envelope = 0;
    int rc = vlad_zrecv_frames(s->router, m, 8, &n, err);
    if (rc == VLAD_EAGAIN)
        return rc;
    if (rc) {
        s->bad_cmd++;
        return VLAD_EINVAL;
    }
    /* [id][payload] from DEALER, [id][empty][payload] from REQ */
    size_t idl = zmq_msg_size(&m[0]);
    if (idl > 0 && idl <= sizeof peer->id) {
        memcpy(peer->id, zmq_msg_data(&m[0]), idl);
        peer->id_len = idl;
    }
    Vlad__Command *c = NULL;
    if (n == 3 && zmq_msg_size(&m[1]) == 0)
        peer->envelope = 1;
    if (n < 2 || n > 3 || (n == 3 && !peer->envelope)) {
        rc = vlad_err_set(err, VLAD_EINVAL, "command: expected one frame after the routing id, got %d",
                          n - 1);
    } else {
        zmq_msg_t *body = &m[n - 1];
        const uint8_t *pl;
        size_t plen;
        rc = vlad_frame_split(zmq_msg_data(body), zmq_msg_size(body), "cmd", NULL, NULL, &pl, &plen,
                              err);
        if (!rc) {
            c = vlad__command__unpack(NULL, plen, pl);
            if (!c)
                rc = vlad_err_set(err, VLAD_EINVAL, "command: malformed protobuf (%zu bytes)", plen);
        }
        if (!rc)
            rc = vlad_validate_command(c, err);
    }
    vlad_zmsgs_close(m, n);
    if (rc) {
        if (c)
            vlad__command__free_unpacked(c, NULL);
        s->bad_cmd++;
        return VLAD_EINVAL;
    }
    *out = c;
    return VLAD_OK;
}

static int ensure(vlad_server *s, size_t need, vlad_err *err) {
    if (need <= s->cap)
        return VLAD_OK;
    size_t cap = s->cap;
    while (cap < need)
        cap *= 2;
    uint8_t *nb = realloc(s->buf, cap);
    if (!nb)
        return vlad_err_set(err, VLAD_ENOMEM, "server: cannot grow send buffer to %zu", cap);
    s->buf = nb;
    s->cap = cap;
    return VLAD_OK;
}

int vlad_server_reply(vlad_server *s, const vlad_peer *peer, const Vlad__Reply *r, vlad_err *err) {
    if (!peer->id_len)
        return vlad_err_set(err, VLAD_EINVAL, "reply: unknown peer");
    size_t len;
    int rc = ensure(s, vlad_frame_size("reply", &r->base), err);
    if (!rc)
        rc = vlad_frame_pack("reply", &r->base, s->buf, s->cap, &len, err);
    if (rc)
        return rc;
    if (zmq_send(s->router, peer->id, peer->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return VLAD_OK; /* peer gone (ROUTER_MANDATORY): nothing to do */
    if (peer->envelope)
        zmq_send(s->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (zmq_send(s->router, s->buf, len, ZMQ_DONTWAIT) < 0)
        return vlad_err_set(err, VLAD_EIO, "reply: %s", zmq_strerror(errno));
    return VLAD_OK;
}

int vlad_server_publish(vlad_server *s, const char *kind, const ProtobufCMessage *msg, vlad_err *err) {
    char topic[VLAD_TOPIC_MAX];
    if (vlad_topic(topic, sizeof topic, kind, s->p->robot))
        return vlad_err_set(err, VLAD_ERANGE, "publish: topic too long");
    size_t len;
    int rc = ensure(s, vlad_frame_size(topic, msg), err);
    if (!rc)
        rc = vlad_frame_pack(topic, msg, s->buf, s->cap, &len, err);
    if (rc)
        return rc;
    if (zmq_send(s->pub, s->buf, len, ZMQ_DONTWAIT) < 0 && errno != EAGAIN)
        return vlad_err_set(err, VLAD_EIO, "publish %s: %s", topic, zmq_strerror(errno));
    return VLAD_OK;
}

uint64_t vlad_server_bad_observations(const vlad_server *s) { return s->bad_obs; }
uint64_t vlad_server_bad_commands(const vlad_server *s) { return s->bad_cmd; }
