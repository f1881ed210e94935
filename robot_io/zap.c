#include "zap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct vlad_zap {
    void *rep;
    const vlad_keyring *kr;
    uint64_t refused, accepted;
    char last[200];
};

vlad_zap *vlad_zap_new(void *ctx, const vlad_keyring *kr, vlad_err *err) {
    vlad_zap *z = calloc(1, sizeof *z);
    if (!z) {
        vlad_err_set(err, VLAD_ENOMEM, "zap: out of memory");
        return NULL;
    }
    z->kr = kr;
    z->rep = zmq_socket(ctx, ZMQ_REP);
    int zero = 0;
    if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_bind(z->rep, "inproc://zeromq.zap.01")) {
        vlad_err_set(err, VLAD_EIO, "zap: cannot bind the authentication handler: %s",
                     zmq_strerror(errno));
        vlad_zap_free(z);
        return NULL;
    }
    return z;
}

void vlad_zap_free(vlad_zap *z) {
    if (!z)
        return;
    if (z->rep)
        zmq_close(z->rep);
    free(z);
}

void *vlad_zap_socket(vlad_zap *z) { return z->rep; }
uint64_t vlad_zap_refused(const vlad_zap *z) { return z->refused; }
uint64_t vlad_zap_accepted(const vlad_zap *z) { return z->accepted; }
const char *vlad_zap_last_refusal(const vlad_zap *z) { return z->last; }

static void send_str(void *s, const char *str, size_t n, int more) {
    zmq_send(s, str, n, more ? ZMQ_SNDMORE : 0);
}

#define ZAP_FRAMES 8

/* handle one request; false if none was pending */
static bool one(vlad_zap *z) {
    zmq_msg_t f[ZAP_FRAMES];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t tmp, *m = n < ZAP_FRAMES ? &f[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->rep, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            for (int i = 0; i < n && i < ZAP_FRAMES; i++)
                zmq_msg_close(&f[i]);
            return false;
        }
        more = zmq_msg_more(m);
        if (m == &tmp)
            zmq_msg_close(m);
        else
            n++;
    }
    /* version, request id, domain, address, identity, mechanism, credentials... */
    char domain[16] = "", mech[16] = "", addr[64] = "";
    if (n >= 6) {
        snprintf(domain, sizeof domain, "%.*s", (int)zmq_msg_size(&f[2]), (char *)zmq_msg_data(&f[2]));
        snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (char *)zmq_msg_data(&f[3]));
        snprintf(mech, sizeof mech, "%.*s", (int)zmq_msg_size(&f[5]), (char *)zmq_msg_data(&f[5]));
    }
    const char *status = "400", *why = "refused";
    char user[VLAD_Z85_KEY + 1] = "";
    const vlad_cert *c = NULL;
    if (n < 6 || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3)) {
        why = "malformed ZAP request";
    } else if (strcmp(mech, "CURVE") || n < 7 || zmq_msg_size(&f[6]) != 32) {
        why = "only CURVE clients are let in";
    } else if (!(c = vlad_keyring_find(z->kr, zmq_msg_data(&f[6])))) {
        why = "unknown client key";
    } else if (!strcmp(domain, "obs") && !(c->rights & VLAD_RIGHT_PUBLISH)) {
        why = "key lacks the publish right";
    } else if (!strcmp(domain, "act") && !(c->rights & VLAD_RIGHT_OBSERVE)) {
        why = "key lacks the observe right";
    } else {
        status = "200";
        why = "OK";
        snprintf(user, sizeof user, "%s", c->public_key);
    }
    /* reply: version, request id, status code, status text, user id, metadata */
    send_str(z->rep, "1.0", 3, 1);
    if (n >= 2)
        zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        send_str(z->rep, "", 0, 1);
    send_str(z->rep, status, 3, 1);
    send_str(z->rep, why, strlen(why), 1);
    send_str(z->rep, user, strlen(user), 1);
    send_str(z->rep, "", 0, 0);
    if (status[0] == '2') {
        z->accepted++;
    } else {
        z->refused++;
        snprintf(z->last, sizeof z->last, "%s connection from %s refused: %s%s%s", domain, addr, why,
                 c ? " (" : "", c ? c->name : "");
        if (c)
            strncat(z->last, ")", sizeof z->last - strlen(z->last) - 1);
    }
    for (int i = 0; i < n && i < ZAP_FRAMES; i++)
        zmq_msg_close(&f[i]);
    return true;
}

void vlad_zap_handle(vlad_zap *z) {
    for (int i = 0; i < 64 && one(z); i++)
        ;
}
