/* zap.h — the daemon's admission control, owned by the I/O thread: the ZeroMQ
 * authentication handler (ZAP, RFC 27) and a bound on the connections of each server socket.
 *
 * The handler is bound on inproc://zeromq.zap.01 in the server's context before its sockets,
 * and every server socket has a ZAP domain (zutil.h: "obs" the observation SUB, "act" the
 * XPUB, "ctl" the ROUTER), so ZeroMQ asks the handler about every handshake on them: CURVE
 * handshakes, and without keys (loopback) NULL-mechanism ones too -- libzmq 4.3 consults ZAP
 * for the NULL mechanism exactly when the socket has a ZAP domain (tests/test_conn_limit.c
 * checks that it does). Decision:
 *  - with a keyring (CURVE): "obs" needs the publish right, "act" observe, "ctl" any known key
 *    (what each command needs is checked per message: server.h), "inf" (vlad-serve's ROUTER,
 *    serve/server.h) the infer right; a key not in the keyring, or
 *    a mechanism other than CURVE, is refused. The user id handed back is the client's Z85
 *    public key (zmq_msg_gets "User-Id").
 *  - without (kr NULL): NULL-mechanism handshakes are let in (user id "").
 *  - either way, a handshake that would be let in is refused if its socket already has
 *    max_conn connections (counted in vlad_zap_conn_refused too).
 * A refusal is status 400: ZeroMQ sends the client an ERROR and drops the connection when the
 * client hangs up (a libzmq client does at once) or at the handshake time limit
 * (VLAD_HANDSHAKE_IVL_MS) at the latest. A libzmq client takes an ERROR as final and does not
 * reconnect -- that socket stays refused until the program makes a new one -- except now and
 * then, when the end of the connection overtakes the ERROR (a loaded machine: about 1 in 100
 * refusals here) and it tries again after ZMQ_RECONNECT_IVL, to be refused again while the
 * socket is full. Every refusal is counted and the newest described (vlad_zap_last_refusal).
 *
 * Connection count, per watched socket, from a ZeroMQ socket monitor (inproc PAIR, unbounded
 * queue so ZeroMQ's I/O thread never waits on it) serviced by vlad_zap_handle -- no thread of
 * its own. ZeroMQ's events name the file descriptor of a connection accepted
 * (ZMQ_EVENT_ACCEPTED) and of one that ended (ZMQ_EVENT_DISCONNECTED); nothing says which
 * connection a ZAP request (or a handshake event) comes from. So each request is matched,
 * when it is answered, to a connection of its socket not matched yet: for certain when only
 * one could have sent it, else as a guess (handshakes overlapping in time). Against the cap
 * count: connections open longer than VLAD_HANDSHAKE_IVL_MS + 1 s (ZeroMQ drops any whose
 * handshake has not succeeded by then, so these are established), younger ones admitted for
 * certain, and every admission decided on a guess during that time (even if the connection
 * guessed has ended: it may not have been the one). That is never less than the established
 * connections, so the cap holds even for overlapping handshakes; a connection frees its place
 * when it ends if its match was certain, a few seconds later otherwise. Connections still
 * handshaking do not count: they are bounded in time, not in number. vlad_zap_connections
 * reports the connections admitted and open (a guessed admission counts on the connection
 * guessed), exact except during the seconds after overlapping handshakes. (This relies on
 * ZeroMQ reporting a connection's accept before sending its ZAP request, true with the one
 * I/O thread a context has unless ZMQ_IO_THREADS says otherwise.) The
 * descriptor numbers are only matched between events, never used: ZeroMQ may have closed
 * and reused one by the time its event is read. */
#ifndef VLAD_ZAP_H
#define VLAD_ZAP_H

#include <stdint.h>

#include "err.h"
#include "keys.h"

typedef struct vlad_zap vlad_zap;

/* Most sockets one handler watches. */
#define VLAD_ZAP_MAX_WATCH 4

/* kr: the keyring of security.client_keys_dir (CURVE; kept by pointer), or NULL (no CURVE:
 * NULL-mechanism clients). max_conn (>= 1): connections per watched socket. */
vlad_zap *vlad_zap_new(void *ctx, const vlad_keyring *kr, int max_conn, vlad_err *err);
/* Stops the monitors: call it while the watched sockets are still open. NULL is fine. */
void vlad_zap_free(vlad_zap *z);

/* Count (and cap) the connections of server socket `sock` of this context, whose ZAP domain
 * is `domain` (at most 7 characters). Call it before the socket binds. */
int vlad_zap_watch(vlad_zap *z, void *sock, const char *domain, vlad_err *err);

/* The sockets to poll for input (the handler's, then one monitor per watched socket), at
 * most `max`; returns how many. */
int vlad_zap_sockets(vlad_zap *z, void **socks, int max);

/* Service every pending monitor event and ZAP request (never blocks). */
void vlad_zap_handle(vlad_zap *z);

uint64_t vlad_zap_refused(const vlad_zap *z);  /* handshakes refused, for any reason */
uint64_t vlad_zap_accepted(const vlad_zap *z); /* handshakes let in */
uint64_t vlad_zap_conn_refused(const vlad_zap *z); /* of the refused: their socket was full */
uint64_t vlad_zap_disconnects(const vlad_zap *z);  /* accepted connections that ended */
/* Connections now counted (see above), summed over the watched sockets. */
uint32_t vlad_zap_connections(const vlad_zap *z);
/* One line about the newest refusal ("" if none). */
const char *vlad_zap_last_refusal(const vlad_zap *z);

#endif
