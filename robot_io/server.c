#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "frame.h"
#include "keys.h"
#include "zap.h"
#include "validate.h"
#include "zutil.h"

struct vlad_server {
    const vlad_profile *p;
    void *ctx;
    void *sub, *pub, *router;
    vlad_curve curve;
    vlad_keyring *keys;  /* CURVE only */
    vlad_zap *zap;       /* admission: authentication (CURVE) and the connection cap */
    char obs_topic[VLAD_TOPIC_MAX];
    char topics[4][VLAD_TOPIC_MAX + 1]; /* what a subscriber may subscribe to ("action.r ", ...) */
    uint8_t *buf; /* publish buffer, grown on demand (I/O thread only) */
    size_t cap;
    size_t max_obs, max_cmd; /* frame size caps (bigger frames are counted and dropped) */
    uint64_t bad_obs, bad_cmd, subs_refused, oversized, denied;
    vlad_server_tap_fn tap; /* sees every message handled (record.h), or NULL */
    void *tap_arg;
};

void vlad_server_set_tap(vlad_server *s, vlad_server_tap_fn fn, void *arg) {
    s->tap = fn;
    s->tap_arg = arg;
}

/* Frames up to twice the cap are received (and counted, and dropped, if over the cap);
 * ZeroMQ drops the connection of a peer that sends more. */
#define OVERSIZE_FACTOR 2

/* Create a server socket with ZAP domain `domain`, watch its connections, then bind it. *out
 * is set as soon as the socket exists (vlad_server_free closes it). */
static int open_socket(vlad_server *s, void **out, int type, const char *domain,
                       const char *endpoint, int64_t max_msg, vlad_err *err) {
    *out = vlad_zsock_new(s->ctx, type, &s->curve, domain, max_msg, err);
    if (!*out)
        return err ? vlad_err_prefix(err, "%s: ", endpoint) : VLAD_EIO;
    int rc = vlad_zap_watch(s->zap, *out, domain, err);
    if (!rc)
        rc = vlad_zsock_attach(*out, &s->curve, endpoint, err);
    return rc;
}

vlad_server *vlad_server_new(const vlad_profile *p, vlad_err *err) {
    vlad_server *s = calloc(1, sizeof *s);
    if (!s) {
        vlad_err_set(err, VLAD_ENOMEM, "server: out of memory");
        return NULL;
    }
    s->p = p;
    s->ctx = zmq_ctx_new(); /* one I/O thread (ZeroMQ's default): zap.h's count relies on it */
    s->cap = 1 << 16;
    s->buf = malloc(s->cap);
    if (!s->ctx || !s->buf) {
        vlad_err_set(err, VLAD_ENOMEM, "server: cannot create ZeroMQ context");
        vlad_server_free(s);
        return NULL;
    }
    vlad_topic(s->obs_topic, sizeof s->obs_topic, "obs", p->robot);
    static const char *kinds[4] = {"action", "chunk", "lang", "event"};
    for (int i = 0; i < 4; i++) {
        char t[VLAD_TOPIC_MAX];
        vlad_topic(t, sizeof t, kinds[i], p->robot);
        snprintf(s->topics[i], sizeof s->topics[i], "%s ", t);
    }
    if (vlad_curve_load(p, true, NULL, &s->curve, err))
        goto fail;
    if (s->curve.on) {
        /* the authentication handler first: every handshake asks it */
        s->keys = calloc(1, sizeof *s->keys);
        if (!s->keys) {
            vlad_err_set(err, VLAD_ENOMEM, "server: out of memory");
            goto fail;
        }
        if (!p->security.client_keys_dir[0]) {
            vlad_err_set(err, VLAD_EINVAL,
                         "security: CURVE is on but security.client_keys_dir is empty: no client "
                         "could connect");
            goto fail;
        }
        if (vlad_keyring_load(p->security.client_keys_dir, s->keys, err))
            goto fail;
    }
    /* the handler before the sockets: every handshake asks it, CURVE or not (zap.h) */
    s->zap = vlad_zap_new(s->ctx, s->curve.on ? s->keys : NULL, p->security.max_connections, err);
    if (!s->zap)
        goto fail;
    s->max_obs = vlad_max_observation_frame(p);
    s->max_cmd = 64 * 1024;
    if (open_socket(s, &s->sub, ZMQ_SUB, "obs", p->endpoints.observations,
                    (int64_t)(OVERSIZE_FACTOR * s->max_obs), err))
        goto fail;
    char filt[VLAD_TOPIC_MAX + 1];
    snprintf(filt, sizeof filt, "%s ", s->obs_topic);
    zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, filt, strlen(filt));
    /* XPUB, manual: a subscriber may subscribe only to (prefixes of) this robot's topics, so
     * nothing it sends makes the daemon's subscription table grow */
    if (open_socket(s, &s->pub, ZMQ_XPUB, "act", p->endpoints.actions, 4096, err))
        goto fail;
    int one = 1;
    zmq_setsockopt(s->pub, ZMQ_XPUB_MANUAL, &one, sizeof one);
    if (open_socket(s, &s->router, ZMQ_ROUTER, "ctl", p->endpoints.control,
                    (int64_t)(OVERSIZE_FACTOR * s->max_cmd), err))
        goto fail;
    zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    return s;
fail:
    vlad_server_free(s);
    return NULL;
}

void vlad_server_free(vlad_server *s) {
    if (!s)
        return;
    vlad_zap_free(s->zap); /* first: it stops the monitors of the sockets */
    if (s->sub)
        zmq_close(s->sub);
    if (s->pub)
        zmq_close(s->pub);
    if (s->router)
        zmq_close(s->router);
    free(s->keys);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    free(s->buf);
    free(s);
}

/* A subscription message on the XPUB: apply it only if it is a prefix of one of our topics. */
static void on_subscriptions(vlad_server *s) {
    for (int k = 0; k < 64; k++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->pub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const uint8_t *d = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        bool ok = false;
        if (n >= 1 && (d[0] == 0 || d[0] == 1))
            for (int i = 0; i < 4 && !ok; i++)
                ok = n - 1 <= strlen(s->topics[i]) && !memcmp(d + 1, s->topics[i], n - 1);
        if (ok)
            zmq_setsockopt(s->pub, d[0] ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, d + 1, n - 1);
        else
            s->subs_refused++;
        zmq_msg_close(&m);
    }
}

int vlad_server_poll(vlad_server *s, int timeout_ms, int extra_fd) {
    enum { OBS, CMD, SUBS, ZAP, FD };
    zmq_pollitem_t items[4 + 1 + VLAD_ZAP_MAX_WATCH];
    int what[4 + 1 + VLAD_ZAP_MAX_WATCH], n = 0;
#define ITEM(sock, fd, w) (items[n] = (zmq_pollitem_t){(sock), (fd), ZMQ_POLLIN, 0}, what[n++] = (w))
    ITEM(s->sub, 0, OBS);
    ITEM(s->router, 0, CMD);
    ITEM(s->pub, 0, SUBS); /* subscription messages of the XPUB */
    void *zs[1 + VLAD_ZAP_MAX_WATCH]; /* the ZAP handler and the socket monitors */
    int nz = vlad_zap_sockets(s->zap, zs, 1 + VLAD_ZAP_MAX_WATCH);
    for (int i = 0; i < nz; i++)
        ITEM(zs[i], 0, ZAP);
    if (extra_fd >= 0)
        ITEM(NULL, extra_fd, FD);
#undef ITEM
    if (zmq_poll(items, n, timeout_ms) <= 0)
        return 0;
    int mask = 0;
    bool zap = false;
    for (int k = 0; k < n; k++) {
        if (!(items[k].revents & ZMQ_POLLIN))
            continue;
        switch (what[k]) {
        case OBS: mask |= VLAD_SRV_OBS; break;
        case CMD: mask |= VLAD_SRV_CMD; break;
        case SUBS: on_subscriptions(s); break;
        case ZAP: zap = true; break;
        default: mask |= VLAD_SRV_FD; break;
        }
    }
    if (zap)
        vlad_zap_handle(s->zap);
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
    const uint8_t *pl = NULL;
    size_t plen = 0;
    Vlad__Observation *o = NULL;
    if (s->curve.on && !zmq_msg_gets(&m[0], "User-Id")) {
        vlad_zmsgs_close(m, 1);
        s->bad_obs++;
        return vlad_err_set(err, VLAD_EINVAL, "observation: from an unauthenticated peer");
    }
    if (zmq_msg_size(&m[0]) > s->max_obs) {
        s->oversized++;
        rc = vlad_err_set(err, VLAD_EINVAL, "observation: frame of %zu bytes, the cap is %zu",
                          zmq_msg_size(&m[0]), s->max_obs);
    } else {
        rc = vlad_frame_split(zmq_msg_data(&m[0]), zmq_msg_size(&m[0]), s->obs_topic, NULL, NULL,
                              &pl, &plen, err);
    }
    if (!rc) {
        o = vlad__observation__unpack(NULL, plen, pl);
        if (!o)
            rc = vlad_err_set(err, VLAD_EINVAL, "observation: malformed protobuf (%zu bytes)", plen);
    }
    if (!rc)
        rc = vlad_validate_observation(s->p, o, err);
    if (!rc && s->tap) /* the received bytes, while the frame is still open */
        s->tap(s->tap_arg, VLAD__RECORD_ENTRY__KIND__OBSERVATION, pl, plen, &o->base);
    vlad_zmsgs_close(m, 1);
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
    peer->request_id = 0;
    peer->rights = VLAD_RIGHTS_ALL;
    snprintf(peer->who, sizeof peer->who, "%s", s->curve.on ? "?" : "local");
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
    bool denied = false;
    if (s->curve.on) { /* who is it (the ZAP handler let only known keys in) */
        const char *uid = zmq_msg_gets(&m[n - 1], "User-Id");
        const vlad_cert *cert = uid ? vlad_keyring_find_z85(s->keys, uid) : NULL;
        peer->rights = cert ? cert->rights : 0;
        snprintf(peer->who, sizeof peer->who, "%s", cert ? cert->name : "unknown");
    }
    if (zmq_msg_size(&m[n - 1]) > s->max_cmd) {
        s->oversized++;
        rc = vlad_err_set(err, VLAD_EINVAL, "command: frame of %zu bytes, the cap is %zu",
                          zmq_msg_size(&m[n - 1]), s->max_cmd);
    } else if (n < 2 || n > 3 || (n == 3 && !peer->envelope)) {
        rc = vlad_err_set(err, VLAD_EINVAL, "command: expected one frame after the routing id, got %d",
                          n - 1);
    } else {
        zmq_msg_t *body = &m[n - 1];
        const uint8_t *pl = NULL;
        size_t plen = 0;
        rc = vlad_frame_split(zmq_msg_data(body), zmq_msg_size(body), "cmd", NULL, NULL, &pl, &plen,
                              err);
        if (!rc) {
            c = vlad__command__unpack(NULL, plen, pl);
            if (!c)
                rc = vlad_err_set(err, VLAD_EINVAL, "command: malformed protobuf (%zu bytes)", plen);
        }
        if (c)
            peer->request_id = c->request_id; /* so even a refusal reaches its sender */
        if (!rc)
            rc = vlad_validate_command(c, err);
        if (!rc && vlad_command_needs_command_right(c) && !(peer->rights & VLAD_RIGHT_COMMAND)) {
            denied = true;
            rc = vlad_err_set(err, VLAD_EINVAL, "not authorised: client '%s' lacks the command right",
                              peer->who);
        }
        if (!rc && s->tap)
            s->tap(s->tap_arg, VLAD__RECORD_ENTRY__KIND__COMMAND, pl, plen, &c->base);
    }
    vlad_zmsgs_close(m, n);
    if (rc) {
        if (c)
            vlad__command__free_unpacked(c, NULL);
        if (denied)
            s->denied++;
        else
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
    if (s->tap) /* "reply" + ' ' + payload (frame.h) */
        s->tap(s->tap_arg, VLAD__RECORD_ENTRY__KIND__REPLY, s->buf + sizeof "reply",
               len - sizeof "reply", &r->base);
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
    if (s->tap) {
        size_t skip = strlen(topic) + 1; /* topic + ' ' + payload (frame.h) */
        int k = !strcmp(kind, "action")  ? VLAD__RECORD_ENTRY__KIND__ACTION
                : !strcmp(kind, "chunk") ? VLAD__RECORD_ENTRY__KIND__CHUNK
                : !strcmp(kind, "lang")  ? VLAD__RECORD_ENTRY__KIND__LANGUAGE
                                         : VLAD__RECORD_ENTRY__KIND__EVENT;
        s->tap(s->tap_arg, k, s->buf + skip, len - skip, msg);
    }
    if (zmq_send(s->pub, s->buf, len, ZMQ_DONTWAIT) < 0 && errno != EAGAIN)
        return vlad_err_set(err, VLAD_EIO, "publish %s: %s", topic, zmq_strerror(errno));
    return VLAD_OK;
}

uint64_t vlad_server_bad_observations(const vlad_server *s) { return s->bad_obs; }
uint64_t vlad_server_bad_commands(const vlad_server *s) { return s->bad_cmd; }

bool vlad_command_needs_command_right(const Vlad__Command *c) {
    switch (c->body_case) {
    case VLAD__COMMAND__BODY_ESTOP:  /* anyone authenticated may stop the robot */
    case VLAD__COMMAND__BODY_STATUS: /* and ask how it is */
        return false;
    default:
        return true;
    }
}

void vlad_server_security(const vlad_server *s, vlad_server_sec *out) {
    out->curve = s->curve.on;
    out->clients = s->keys ? s->keys->n : 0;
    out->handshakes_refused = vlad_zap_refused(s->zap);
    out->handshakes_accepted = vlad_zap_accepted(s->zap);
    out->connections = vlad_zap_connections(s->zap);
    out->connections_refused = vlad_zap_conn_refused(s->zap);
    out->disconnects = vlad_zap_disconnects(s->zap);
    out->commands_denied = s->denied;
    out->subscriptions_refused = s->subs_refused;
    out->oversized = s->oversized;
    snprintf(out->last_refusal, sizeof out->last_refusal, "%s", vlad_zap_last_refusal(s->zap));
}
