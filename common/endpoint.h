/* endpoint.h — ZeroMQ endpoint strings, parsed in full.
 *
 * Accepted: ipc://PATH, inproc://NAME, tcp://HOST:PORT with HOST one of an IPv4 literal, a
 * bracketed IPv6 literal ([::1]), `*` (every interface) or a host name (resolved with
 * getaddrinfo), and PORT a decimal 1..65535. Refused, with a message naming the endpoint and
 * what is wrong: any other transport, ZeroMQ's "source;destination" form (a bind must say one
 * address), a missing or out-of-range port, an empty host, a name that does not resolve.
 * Loopback is decided on the resolved addresses, never on the text: a host is loopback when
 * every address it resolves to is in 127.0.0.0/8 or is ::1 (ipc:// and inproc:// are local).
 * `bind` is the string to hand to zmq_bind/zmq_connect: names are replaced by their first
 * resolved address (ZeroMQ binds interfaces, not host names), and `ipv6` says that
 * ZMQ_IPV6 must be set on the socket. No allocation. */
#ifndef VLAD_ENDPOINT_H
#define VLAD_ENDPOINT_H

#include <stdbool.h>

#include "err.h"

#define VLAD_ENDPOINT_MAX 512

typedef enum { VLAD_EP_TCP = 0, VLAD_EP_IPC = 1, VLAD_EP_INPROC = 2 } vlad_ep_transport;

typedef struct vlad_endpoint {
    vlad_ep_transport transport;
    char host[256];   /* tcp: as written, without brackets */
    int port;         /* tcp: 1..65535 */
    bool loopback;    /* only this host can reach it */
    bool ipv6;        /* set ZMQ_IPV6 on the socket */
    char bind[VLAD_ENDPOINT_MAX]; /* numeric form for ZeroMQ */
} vlad_endpoint;

/* Parse and resolve `text`. VLAD_EINVAL with a message on anything above that is refused. */
int vlad_endpoint_parse(const char *text, vlad_endpoint *out, vlad_err *err);

#endif
