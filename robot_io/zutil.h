/* zutil.h — small ZeroMQ helpers shared by the daemon endpoints and the client library:
 * socket creation with vlad's options (linger 0, message size cap, CURVE when the profile
 * has keys), and receiving one whole message. Internal to robot_io (and the daemon's
 * --check, which loads the same keys). */
#ifndef VLAD_ZUTIL_H
#define VLAD_ZUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"

/* The CURVE keys of one side (on = false: plain sockets, loopback only). */
typedef struct vlad_curve {
    bool on;
    bool server;
    char server_public[41]; /* client: the daemon's public key */
    char public_key[41];    /* this side's keypair */
    char secret_key[41];
} vlad_curve;

/* The keys for profile p: the daemon reads security.server_key_file; a client reads
 * `client_key` (if non-NULL), else $VLAD_CLIENT_KEY, else security.client_key_file. Without
 * security.curve_server_public_key: curve->on = false. Errors name the file and the fix. */
int vlad_curve_load(const vlad_profile *p, bool server, const char *client_key, vlad_curve *curve,
                    vlad_err *err);

/* How long a server socket gives a new connection to complete its ZeroMQ handshake
 * (ZMQ_HANDSHAKE_IVL; ZeroMQ's default would be 30 s): a peer that connects and completes
 * nothing (a bare TCP connection, a CURVE client that never finishes, a refused client that
 * does not hang up) is dropped by ZeroMQ after this long, so it holds its file descriptor at
 * most this long. Clients keep ZeroMQ's default. */
#define VLAD_HANDSHAKE_IVL_MS 5000

/* Create a socket of `type` on ctx with linger 0, ZMQ_MAXMSGSIZE max_msg (if > 0), CURVE per
 * `curve` (its server role), then bind (server) or connect (client) `endpoint` (parsed by
 * vlad_endpoint_parse). On the server side (curve->server) the socket also gets
 * ZMQ_HANDSHAKE_IVL = VLAD_HANDSHAKE_IVL_MS and, if `domain` is non-NULL, the ZAP domain
 * `domain` -- with or without CURVE: with a domain, ZeroMQ asks the context's ZAP handler
 * (zap.h) about every handshake, NULL-mechanism ones included, and refuses ZMTP 1.0/2.0
 * peers. Returns the socket or NULL with *err filled. */
void *vlad_zsock_open(void *ctx, int type, const vlad_curve *curve, const char *domain,
                      const char *endpoint, int64_t max_msg, vlad_err *err);

/* vlad_zsock_open in two halves, so that something (a socket monitor) can be attached
 * between them: vlad_zsock_new creates and configures the socket, vlad_zsock_attach binds
 * or connects it (on failure the socket is left open: the caller closes it). */
void *vlad_zsock_new(void *ctx, int type, const vlad_curve *curve, const char *domain,
                     int64_t max_msg, vlad_err *err);
int vlad_zsock_attach(void *sock, const vlad_curve *curve, const char *endpoint, vlad_err *err);

/* Receive one message (all its frames) without blocking into zmq_msg_t array msgs[cap];
 * *nframes gets the count. Returns 0, VLAD_EAGAIN if nothing is pending, VLAD_EINVAL if
 * the message had more than cap frames (all frames are consumed and dropped). */
int vlad_zrecv_frames(void *sock, void *msgs, int cap, int *nframes, vlad_err *err);

/* Close the zmq_msg_t array msgs[n]. */
void vlad_zmsgs_close(void *msgs, int n);

#endif
