/* server.h — the daemon's ZeroMQ endpoints (owned by ONE thread, the daemon's I/O thread):
 *   SUB    endpoints.observations  ← "obs.<robot>"  Observation from the robot/simulator
 *   PUB    endpoints.actions       → "action.", "chunk.", "lang.", "event.<robot>"
 *   ROUTER endpoints.control       ↔ "cmd" Command / "reply" Reply (DEALER or REQ peers)
 * Every received message is framed, decoded and validated against the profile; bad ones
 * are counted and dropped with an error naming the problem. Frames over the size cap (up to
 * twice it) are counted and dropped; ZeroMQ drops the connection of a peer sending more.
 * With security.curve_server_public_key every socket is CURVE and a ZAP handler (zap.h)
 * admits only the keys of security.client_keys_dir, per their rights. The PUB is an XPUB in
 * manual mode: only subscriptions to (prefixes of) this robot's topics are applied, others
 * are counted, so no subscriber can grow the daemon's memory.
 *
 * Connections are bounded per socket: a handshake on a socket that already has
 * security.max_connections connections is refused by the ZAP handler (status 400), which
 * every handshake passes, CURVE or not (without CURVE each socket still has a ZAP domain, so
 * ZeroMQ asks the handler about NULL-mechanism handshakes too). The count comes from a
 * ZeroMQ socket monitor per socket (zap.h says how it is kept without per-connection
 * handshake events): the cap is never exceeded, and a client leaving frees its place at once
 * -- unless it was admitted while other handshakes (or bare connections) were under way on
 * the same socket, then up to VLAD_HANDSHAKE_IVL_MS + 1 s later. A connection that never completes its handshake (a bare TCP connection,
 * a client that stalls, a refused one that does not hang up) is not counted but is dropped by
 * ZeroMQ VLAD_HANDSHAKE_IVL_MS (zutil.h: 5 s) after it was accepted, so it holds a file
 * descriptor no longer than that. A libzmq client refused at the handshake (almost always:
 * zap.h) does not reconnect: it has to make a new socket (vlad_client_new) to try again.
 *
 * The I/O thread services the handler, the socket monitors and the subscriptions inside
 * vlad_server_poll (no thread of their own). */
#ifndef VLAD_SERVER_H
#define VLAD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"
#include "vlad.pb-c.h"

typedef struct vlad_server vlad_server;

/* Routing envelope of a control peer, to address the reply. */
typedef struct vlad_peer {
    uint8_t id[256];
    size_t id_len;  /* 0: unknown (reply impossible) */
    int envelope;   /* 1 if the peer is a REQ socket (empty delimiter frame) */
    uint64_t request_id; /* of the command, when it decoded (even if it was then refused) */
    unsigned rights;     /* VLAD_RIGHT_* of its key (all, without CURVE: loopback only) */
    char who[64];        /* its key's name ("local" without CURVE) */
} vlad_peer;

/* Security counters (I/O thread). */
typedef struct vlad_server_sec {
    bool curve;
    int clients;                  /* keys in security.client_keys_dir */
    /* handshakes the ZAP handler refused / let in, on all three sockets; with CURVE or
     * without (then they are NULL-mechanism handshakes, refused only at the cap); refused
     * includes connections_refused */
    uint64_t handshakes_refused, handshakes_accepted;
    /* Open connections past their handshake, summed over the three sockets (each is capped at
     * security.max_connections). Exact for connections open more than VLAD_HANDSHAKE_IVL_MS
     * + 1 s; during a connection's first seconds, while other handshakes run at the same
     * time, it may be off by those (zap.h). Connections still handshaking are not counted. */
    uint32_t connections;
    uint64_t connections_refused; /* handshakes refused because their socket was at the cap */
    /* Accepted connections that ended, on all three sockets, whatever the reason: closed by
     * the peer, dropped by ZeroMQ for a frame over ZMQ_MAXMSGSIZE (twice the size cap: see
     * above), for a protocol error or an unfinished handshake (VLAD_HANDSHAKE_IVL_MS), or
     * after a refused handshake. ZeroMQ reports no reason, so the count covers them all. */
    uint64_t disconnects;
    uint64_t commands_denied;     /* known key without the right */
    uint64_t subscriptions_refused; /* not a prefix of this robot's topics */
    uint64_t oversized;           /* frames over the size cap (counted, dropped) */
    char last_refusal[200];
} vlad_server_sec;

enum { VLAD_SRV_OBS = 1, VLAD_SRV_CMD = 2, VLAD_SRV_FD = 4 };

/* Bind the three sockets for profile p (kept by pointer: must outlive the server). */
vlad_server *vlad_server_new(const vlad_profile *p, vlad_err *err);
void vlad_server_free(vlad_server *s);

/* Wait up to timeout_ms (-1 forever) for input; also wakes when `extra_fd` (or -1) is
 * readable. Returns a mask of VLAD_SRV_* that are ready, 0 on timeout / EINTR. */
int vlad_server_poll(vlad_server *s, int timeout_ms, int extra_fd);

/* Take one pending observation. VLAD_OK: *out is valid (release with
 * vlad__observation__free_unpacked(*out, NULL)). VLAD_EAGAIN: none pending. VLAD_EINVAL:
 * a bad message was dropped and counted; err says why. */
int vlad_server_recv_observation(vlad_server *s, Vlad__Observation **out, vlad_err *err);

/* Take one pending command, as above. On VLAD_EINVAL *peer may still be filled
 * (peer->id_len > 0, peer->request_id) so the caller can send an error reply. With CURVE, a
 * command other than estop and status needs the command right of the sender's key
 * (vlad_command_needs_command_right); without it: VLAD_EINVAL "not authorised", counted in
 * commands_denied. */
int vlad_server_recv_command(vlad_server *s, Vlad__Command **out, vlad_peer *peer, vlad_err *err);

/* Send a reply to peer (never blocks; a vanished peer is not an error). */
int vlad_server_reply(vlad_server *s, const vlad_peer *peer, const Vlad__Reply *r, vlad_err *err);

/* Publish msg on topic "<kind>.<robot>" (kind: action, chunk, lang, event). Never blocks:
 * messages beyond the send high-water mark are dropped by ZeroMQ. */
int vlad_server_publish(vlad_server *s, const char *kind, const ProtobufCMessage *msg, vlad_err *err);

/* A tap sees every message the server handles, as the bytes on the wire: each valid
 * Observation and Command received (kind VLAD__RECORD_ENTRY__KIND__OBSERVATION / COMMAND, with
 * the decoded message), each message published (ACTION, CHUNK, LANGUAGE, EVENT) and each Reply
 * sent (REPLY), with the message packed. payload/len: the packed protobuf (no topic), valid only
 * during the call; msg: the same message decoded. Called on the server's thread, inside the
 * receive / publish / reply call: it must not block (daemon/record.h copies into a ring). */
typedef void (*vlad_server_tap_fn)(void *arg, int kind, const uint8_t *payload, size_t len,
                                   const ProtobufCMessage *msg);

/* Install (fn non-NULL) or remove (NULL) the tap. Set it before the server's thread runs. */
void vlad_server_set_tap(vlad_server *s, vlad_server_tap_fn fn, void *arg);

/* True for the commands that move the robot or change what it does. */
bool vlad_command_needs_command_right(const Vlad__Command *c);

void vlad_server_security(const vlad_server *s, vlad_server_sec *out);

/* Counters of dropped bad messages per socket. */
uint64_t vlad_server_bad_observations(const vlad_server *s);
uint64_t vlad_server_bad_commands(const vlad_server *s);

#endif
