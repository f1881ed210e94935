/* zap.h — the daemon's ZeroMQ authentication handler (ZAP, RFC 27), owned by the I/O thread.
 *
 * Bound on inproc://zeromq.zap.01 in the server's context before its sockets, so every CURVE
 * handshake asks it. Decision per socket domain: "obs" (the observation SUB) needs the
 * publish right, "act" (the PUB) needs observe, "ctl" (the ROUTER) lets in every known key
 * (what each command needs is checked per message: robot_io/server.h). A key not in the
 * keyring, or a mechanism other than CURVE, is refused at the handshake and counted. The
 * user id handed back is the client's Z85 public key (zmq_msg_gets "User-Id"). */
#ifndef VLAD_ZAP_H
#define VLAD_ZAP_H

#include <stdint.h>

#include "err.h"
#include "keys.h"

typedef struct vlad_zap vlad_zap;

vlad_zap *vlad_zap_new(void *ctx, const vlad_keyring *kr, vlad_err *err);
void vlad_zap_free(vlad_zap *z); /* NULL is fine */

void *vlad_zap_socket(vlad_zap *z); /* to poll */

/* Answer every pending request (never blocks). */
void vlad_zap_handle(vlad_zap *z);

uint64_t vlad_zap_refused(const vlad_zap *z);
uint64_t vlad_zap_accepted(const vlad_zap *z);
/* One line about the newest refusal ("" if none). */
const char *vlad_zap_last_refusal(const vlad_zap *z);

#endif
