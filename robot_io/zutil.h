/* zutil.h — small ZeroMQ helpers shared by the daemon endpoints and the client library:
 * socket creation with vlad's options (linger 0, message size cap, CURVE when the profile
 * has keys), and receiving one whole message. Internal to robot_io. */
#ifndef VLAD_ZUTIL_H
#define VLAD_ZUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"

/* Create a socket of `type` on ctx with linger 0 and, if max_msg > 0, ZMQ_MAXMSGSIZE.
 * `server` chooses the CURVE role when the profile carries keys. Then bind (server) or
 * connect (client) to `endpoint`. Returns the socket or NULL with *err filled. */
void *vlad_zsock_open(void *ctx, int type, const vlad_profile *p, bool server, const char *endpoint,
                      int64_t max_msg, vlad_err *err);

/* Receive one message (all its frames) without blocking into zmq_msg_t array msgs[cap];
 * *nframes gets the count. Returns 0, VLAD_EAGAIN if nothing is pending, VLAD_EINVAL if
 * the message had more than cap frames (all frames are consumed and dropped). */
int vlad_zrecv_frames(void *sock, void *msgs, int cap, int *nframes, vlad_err *err);

/* Close the zmq_msg_t array msgs[n]. */
void vlad_zmsgs_close(void *msgs, int n);

#endif
