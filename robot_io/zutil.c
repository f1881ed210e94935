#include "zutil.h"

#include "endpoint.h"
#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

int vlad_curve_load(const vlad_profile *p, bool server, const char *client_key, vlad_curve *curve,
                    vlad_err *err) {
    memset(curve, 0, sizeof *curve);
    curve->server = server;
    if (!p->security.server_public_key[0])
        return VLAD_OK;
    curve->on = true;
    snprintf(curve->server_public, sizeof curve->server_public, "%s", p->security.server_public_key);
    const char *path = server ? p->security.server_key_file : client_key;
    if (!server && !path)
        path = getenv("VLAD_CLIENT_KEY");
    if (!server && (!path || !path[0]))
        path = p->security.client_key_file;
    if (!path || !path[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            server ? "security: CURVE is on but security.server_key_file is empty "
                                     "(vladctl keygen writes one)"
                                   : "security: CURVE is on: give this client its secret key "
                                     "(--key FILE, $VLAD_CLIENT_KEY or security.client_key_file)");
    vlad_cert c;
    int rc = vlad_cert_read(path, true, &c, err);
    if (rc)
        return rc;
    if (server && strcmp(c.public_key, curve->server_public))
        return vlad_err_set(err, VLAD_EINVAL,
                            "security.server_key_file %s: its public key is not "
                            "security.curve_server_public_key",
                            path);
    snprintf(curve->public_key, sizeof curve->public_key, "%s", c.public_key);
    snprintf(curve->secret_key, sizeof curve->secret_key, "%s", c.secret_key);
    return VLAD_OK;
}

void *vlad_zsock_new(void *ctx, int type, const vlad_curve *curve, const char *domain,
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
    int rc = 0;
    const char *what = "";
    if (curve && curve->server) {
        /* bound the time an unfinished handshake holds a connection (zutil.h), and send
         * every handshake to the ZAP handler: ZeroMQ consults it for the NULL mechanism too
         * once the socket has a ZAP domain */
        int ivl = VLAD_HANDSHAKE_IVL_MS;
        what = "socket set-up";
        rc = zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl);
        if (!rc && domain)
            rc = zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, domain, strlen(domain));
    }
    if (!rc && curve && curve->on) {
        what = "CURVE set-up";
        if (curve->server) {
            int one = 1;
            rc = zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
            if (!rc)
                rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve->secret_key, VLAD_KEY_LEN + 1);
        } else {
            rc = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, curve->server_public, VLAD_KEY_LEN + 1);
            if (!rc)
                rc = zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve->public_key, VLAD_KEY_LEN + 1);
            if (!rc)
                rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve->secret_key, VLAD_KEY_LEN + 1);
        }
    }
    if (rc) {
        vlad_err_set(err, VLAD_EINVAL, "%s failed: %s", what, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

int vlad_zsock_attach(void *s, const vlad_curve *curve, const char *endpoint, vlad_err *err) {
    bool server = curve ? curve->server : false;
    vlad_endpoint ep;
    int rc = vlad_endpoint_parse(endpoint, &ep, err);
    if (rc)
        return rc;
    if (ep.ipv6) {
        int one = 1;
        zmq_setsockopt(s, ZMQ_IPV6, &one, sizeof one);
    }
    if (server ? zmq_bind(s, ep.bind) : zmq_connect(s, ep.bind))
        return vlad_err_set(err, VLAD_EIO, "%s %s: %s", server ? "bind" : "connect", endpoint,
                            zmq_strerror(errno));
    return VLAD_OK;
}

void *vlad_zsock_open(void *ctx, int type, const vlad_curve *curve, const char *domain,
                      const char *endpoint, int64_t max_msg, vlad_err *err) {
    void *s = vlad_zsock_new(ctx, type, curve, domain, max_msg, err);
    if (!s) {
        vlad_err_prefix(err, "%s: ", endpoint);
        return NULL;
    }
    if (vlad_zsock_attach(s, curve, endpoint, err)) {
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
