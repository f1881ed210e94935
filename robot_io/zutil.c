#include "zutil.h"

#include <errno.h>
#include <string.h>
#include <zmq.h>

void *vlad_zsock_open(void *ctx, int type, const vlad_profile *p, bool server, const char *endpoint,
                      int64_t max_msg, vlad_err *err) {
    void *s = zmq_socket(ctx, type);
    if (!s) {
        vlad_err_set(err, VLAD_EIO, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (max_msg > 0)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (p->security.server_public_key[0]) {
        int rc;
        if (server) {
            int one = 1;
            rc = zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
            if (!rc)
                rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, p->security.server_secret_key,
                                    VLAD_KEY_LEN + 1);
        } else {
            rc = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, p->security.server_public_key,
                                VLAD_KEY_LEN + 1);
            if (!rc)
                rc = zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, p->security.client_public_key,
                                    VLAD_KEY_LEN + 1);
            if (!rc)
                rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, p->security.client_secret_key,
                                    VLAD_KEY_LEN + 1);
        }
        if (rc) {
            vlad_err_set(err, VLAD_EINVAL, "%s: CURVE set-up failed: %s", endpoint,
                         zmq_strerror(errno));
            zmq_close(s);
            return NULL;
        }
    }
    int rc = server ? zmq_bind(s, endpoint) : zmq_connect(s, endpoint);
    if (rc) {
        vlad_err_set(err, VLAD_EIO, "%s %s: %s", server ? "bind" : "connect", endpoint,
                     zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

int vlad_zrecv_frames(void *sock, void *msgs_, int cap, int *nframes, vlad_err *err) {
    zmq_msg_t *msgs = msgs_;
    int n = 0;
    bool overflow = false;
    for (;;) {
        zmq_msg_t tmp, *m = n < cap ? &msgs[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
            int e = errno;
            zmq_msg_close(m);
            if (n == 0 && e == EAGAIN)
                return VLAD_EAGAIN;
            vlad_zmsgs_close(msgs, n < cap ? n : cap);
            return vlad_err_set(err, VLAD_EIO, "recv: %s", zmq_strerror(e));
        }
        int more = zmq_msg_more(m);
        if (m == &tmp) {
            zmq_msg_close(m);
            overflow = true;
        } else {
            n++;
        }
        if (!more)
            break;
    }
    if (overflow) {
        vlad_zmsgs_close(msgs, n);
        return vlad_err_set(err, VLAD_EINVAL, "message has more than %d frames", cap);
    }
    *nframes = n;
    return VLAD_OK;
}

void vlad_zmsgs_close(void *msgs_, int n) {
    zmq_msg_t *msgs = msgs_;
    for (int i = 0; i < n; i++)
        zmq_msg_close(&msgs[i]);
}
