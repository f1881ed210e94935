/* client.h — the vlad-serve client library: what a vlad daemon's remote policy calls from
 * its worker thread to have an action chunk (or an answer) computed by one of several
 * vlad-serve hosts (server.h, docs/SERVE.md).
 *
 * One vlad_serve_client is used by one thread at a time; it makes no thread of its own and
 * does its housekeeping (socket monitor, reconnection) inside the calls. It holds ONE DEALER
 * socket connected to every endpoint given; ZeroMQ spreads the requests over the servers it
 * is connected to. Dead servers are skipped:
 *   - ZMQ_IMMEDIATE: a request goes only over a completed connection (handshake done, key
 *     admitted), never into a queue waiting for a server that is down;
 *   - a request that gets no reply within timeout_ms is sent again (attempts - 1 times, same
 *     request id, elapsed_us increased by the time spent) -- the DEALER's round robin hands
 *     it to the next connected server;
 *   - ZeroMQ reconnects a lost connection with backoff (100 ms doubling to 5 s), and
 *     heartbeats (1 s, 3 s timeout) notice a server that vanished without closing;
 *   - a CURVE refusal at the handshake (the server's ZAP handler does not know this key) is
 *     final for a libzmq socket (robot_io/zap.h): the client then makes a NEW socket, at the
 *     start of a later call, after a backoff of 0.5 s doubling to 8 s.
 * Only one request is outstanding at a time: every reply whose request id is not the one
 * being waited for (a late reply to a request that timed out, a duplicate of a resent one) is
 * dropped and counted in dropped_stale. Replies are checked by wire.h; bad ones are counted
 * and dropped. */
#ifndef VLAD_SERVE_CLIENT_H
#define VLAD_SERVE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "serve.pb-c.h"
#include "wire.h"

#define VLAD_SERVE_CLIENT_MAX_ENDPOINTS 8

typedef struct vlad_serve_client_opts {
    const char *const *endpoints; /* 1..VLAD_SERVE_CLIENT_MAX_ENDPOINTS (endpoint.h strings) */
    int n_endpoints;
    const char *server_public_key; /* the servers' Z85 public key (40 chars): CURVE; NULL or
                                      "": plain sockets (loopback only) */
    const char *client_key;        /* with CURVE: this client's secret certificate (keys.h) */
    int timeout_ms;                /* wait per attempt, 1..600000 (0: 1000) */
    int attempts;                  /* sends per request, 1..16 (0: 1) */
    const char *robot;             /* name for the server's log (NULL: "") */
    vlad_serve_dims dims;          /* the model's dimensions if known (0: learnt from the
                                      first status reply, unchecked until then) */
    int jpeg_quality;              /* 0: images are sent as given; 1..100: every RAW image of
                                      a request is JPEG-encoded at this quality first (jpeg.h,
                                      the client's own codec, on the calling thread) */
    /* Emulated network (tests and benchmarks only): every exchange sleeps half of a round
     * trip of emulate_rtt_ms + a uniform draw in [-emulate_jitter_ms, +emulate_jitter_ms]
     * (at least 0) before each send and the other half after the reply, so the caller sees
     * the whole round trip; the draws come from a generator seeded with emulate_seed. The
     * delay does not count against timeout_ms. 0..10000 ms each; 0, 0: none. */
    double emulate_rtt_ms, emulate_jitter_ms;
    uint64_t emulate_seed;
} vlad_serve_client_opts;

/* One camera view of a request. */
typedef struct vlad_serve_image {
    uint32_t width, height;
    int encoding;        /* VLAD__SERVE__ENCODING__ENCODING_RAW or _JPEG */
    const uint8_t *data; /* RAW: width*height*3 bytes, RGB HWC; JPEG: a JPEG file (jpeg.h) */
    size_t len;
} vlad_serve_image;

/* What to infer on. The pointers need stay valid only during the call. */
typedef struct vlad_serve_request {
    int64_t obs_tick;                 /* the daemon's tick of the observation (>= 0) */
    const vlad_serve_image *images;   /* n_images, in the model's camera order */
    int n_images;
    const char *prompt;               /* NUL-terminated UTF-8 (NULL: "") */
    const float *state;               /* state_len values (an ask may give none) */
    int state_len;
    const float *noise;               /* NULL, or noise_len standard-normal values */
    int noise_len;
    uint64_t seed;                    /* seeds the noise when noise is NULL */
    uint32_t budget_us;               /* the request must start within this long of its
                                         first send (0: no deadline; serve.proto) */
    uint32_t elapsed_us;              /* of the budget, already used before the call */
} vlad_serve_request;

/* A reply. Its pointers are owned by the client and valid until its next call or
 * vlad_serve_client_free. */
typedef struct vlad_serve_reply {
    int code;             /* the server's verdict (vlad_serve_code); -1: no reply */
    uint64_t request_id;
    char message[VLAD_SERVE_MAX_MESSAGE + 1]; /* why, for an error */
    char field[VLAD_SERVE_MAX_FIELD + 1];     /* the field, for BAD_REQUEST / SHAPE */
    int64_t obs_tick;
    int horizon, action_dim;
    const float *actions; /* chunk: horizon*action_dim, row-major */
    const uint8_t *answer; /* ask: answer_len bytes (not NUL-terminated) */
    size_t answer_len;
    uint32_t queue_us, vision_us, prefix_us, flow_us, total_us, batch_size;
    uint32_t decode_us;   /* the server's time decoding this request's JPEG images */
    uint32_t encode_us;   /* this client's time JPEG-encoding them (opts.jpeg_quality) */
    size_t request_bytes; /* the request's frame as sent (0: nothing was sent) */
    const Vlad__Serve__ServeStatus *status; /* status call */
} vlad_serve_reply;

typedef struct vlad_serve_client_counters {
    uint64_t sent;          /* request messages sent (resends included) */
    uint64_t resent;        /* of which resends after a timeout */
    uint64_t replies;       /* replies taken as the answer to the outstanding request */
    uint64_t dropped_stale; /* replies dropped: not the outstanding request's id */
    uint64_t bad_replies;   /* replies dropped: failed the wire.h check or the wrong kind */
    uint64_t timeouts;      /* calls that ended without a reply */
    uint64_t reconnects;    /* handshakes with a server this client had been connected to */
    uint64_t disconnects;   /* connections that ended */
    uint64_t refusals;      /* handshakes a server refused (CURVE: key not admitted) */
    uint64_t new_sockets;   /* sockets made again after a refusal */
    uint64_t bytes_sent;    /* request frames' bytes sent (resends included) */
    uint64_t jpeg_images;   /* images this client encoded as JPEG */
} vlad_serve_client_counters;

typedef struct vlad_serve_client vlad_serve_client;

/* Check opts, read the client key, make the JPEG codec when jpeg_quality is set, connect.
 * NULL with err filled (bad endpoint, key file, option). The connections complete in the
 * background. */
vlad_serve_client *vlad_serve_client_new(const vlad_serve_client_opts *opts, vlad_err *err);
void vlad_serve_client_free(vlad_serve_client *c); /* NULL is fine */

/* An action chunk for req, with a fresh request id (its RAW images JPEG-encoded first when
 * opts.jpeg_quality is set: reply->encode_us; the buffers are the client's, grown to the
 * largest request seen and kept). Returns
 *   VLAD_OK        reply->code OK: reply->actions (horizon x action_dim) and latencies;
 *   VLAD_ETIMEOUT  no reply in attempts x timeout_ms (reply->code -1; err says whether no
 *                  server was connected and whether a server refused this client's key);
 *   VLAD_EINVAL / VLAD_ERANGE  req failed wire.h's check here (nothing sent, code -1);
 *   a server's refusal: reply->code and reply->message / field hold it, err repeats them,
 *   and the return value is vlad_serve_code_errno(code) (BAD_REQUEST -> VLAD_EINVAL, SHAPE
 *   -> VLAD_ERANGE, LATE -> VLAD_ETIMEOUT, BUSY -> VLAD_EAGAIN, NOT_AUTHORISED ->
 *   VLAD_ESTATE, INTERNAL -> VLAD_EIO): tell a server's LATE from a local timeout by
 *   reply->code;
 *   VLAD_EIO / VLAD_ENOMEM  a local failure. */
int vlad_serve_client_infer(vlad_serve_client *c, const vlad_serve_request *req,
                            vlad_serve_reply *reply, vlad_err *err);

/* A greedy answer to `question` (NUL-terminated UTF-8; "" = commentary) on req's images and
 * prompt (its state may be empty): reply->answer. Returns as vlad_serve_client_infer. */
int vlad_serve_client_ask(vlad_serve_client *c, const vlad_serve_request *req,
                          const char *question, vlad_serve_reply *reply, vlad_err *err);

/* The server's counters and model: reply->status. The first status reply also sets the
 * client's dims when opts.dims had none. Returns as vlad_serve_client_infer. */
int vlad_serve_client_status(vlad_serve_client *c, vlad_serve_reply *reply, vlad_err *err);

/* Change the wait per attempt (1..600000 ms; others are ignored), e.g. to the time a
 * deadline leaves. */
void vlad_serve_client_set_timeout(vlad_serve_client *c, int timeout_ms);

/* Counters so far. */
void vlad_serve_client_counters_get(const vlad_serve_client *c, vlad_serve_client_counters *out);

/* The dims requests are checked against now (0s: not known). */
vlad_serve_dims vlad_serve_client_dims(const vlad_serve_client *c);

#endif
