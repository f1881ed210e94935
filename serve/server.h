/* server.h — vlad-serve: one loaded checkpoint answering inference requests (wire.h,
 * proto/serve.proto, docs/SERVE.md) from any number of vlad daemons over ZeroMQ.
 *
 * Threads and what each owns:
 *   io (the caller of vlad_serve_server_new / _poll / _free; vlad-serve's main thread): the
 *       ZeroMQ context and the ROUTER socket, the ZAP handler and its socket monitor
 *       (robot_io/zap.h, serviced inside _poll), the keyring, every job's allocation and
 *       release, decoding and checking requests (wire.h), decoding their JPEG images into
 *       the job's memory (its own jpeg.h codec; the decode histogram), the admission
 *       decisions (BAD_REQUEST, SHAPE, NOT_AUTHORISED, BUSY, LATE on arrival), packing and
 *       sending every reply, STATUS replies, and the receive-side counters.
 *   inference (started by _new, joined by _free): the vlad_batch (policy/batch.h) and the
 *       runstate for asks, the per-stage histograms and the inference-side counters. It takes
 *       the waiting jobs (up to max_batch, after waiting batch_wait_us from the first one's
 *       receipt for more), answers LATE the ones whose deadline has passed, runs the rest as
 *       ONE vlad_batch_infer call (asks after it, one by one) and hands each job back.
 *   ZeroMQ's own I/O thread, and the engine's pool / OpenBLAS threads (`threads`).
 * Between io and inference there are two lock-free SPSC rings of job pointers (common/spsc.h:
 * io -> inference "jobs", inference -> io "done"), each with an eventfd to wake the other
 * side, and a few atomic counters. A job is touched by one thread at a time: io fills it and
 * pushes it, inference reads the request and writes the result, pushes it back, io replies
 * and frees it. The model is read-only and shared.
 *
 * Admission, in order: an undecodable or invalid request is answered BAD_REQUEST (or SHAPE:
 * wire.h) at once, and so is one whose JPEG image does not decode (BAD_REQUEST) or decodes to
 * another size (SHAPE), naming the image; without the `infer` right (CURVE: the client key's
 * rights in the keyring; the ZAP handler refuses the handshake of such a key already, so this
 * is the same rule again per request) NOT_AUTHORISED; a deadline already spent (elapsed_us >=
 * budget_us) LATE; a full queue (`queue` requests waiting) BUSY. Nothing a client sends
 * stops the server: every refusal is counted and logged (rate-limited) and it goes on. */
#ifndef VLAD_SERVE_SERVER_H
#define VLAD_SERVE_SERVER_H

#include <stdint.h>

#include "err.h"

#define VLAD_SERVE_DEFAULT_BIND "tcp://127.0.0.1:5590"
#define VLAD_SERVE_DEFAULT_MODEL "models/vlad-default.safetensors"

typedef struct vlad_serve_opts {
    const char *bind;       /* ROUTER endpoint (endpoint.h); non-loopback needs CURVE */
    const char *model;      /* checkpoint, loaded once */
    const char *server_key; /* the server's secret certificate (keys.h): CURVE on; NULL off */
    const char *keys_dir;   /* with server_key: the allowed clients' public certificates */
    int max_batch;          /* requests per vlad_batch_infer, 1..256 (default 8) */
    int queue;              /* requests waiting at most, 1..65536 (default 64) */
    int batch_wait_us;      /* after the first request arrives, wait this long for more
                               (0..10 s; default 0: run what is waiting now) */
    int threads;            /* engine threads (pool + OpenBLAS), 1..64 (default 1) */
    int max_connections;    /* per the ZAP handler's cap (zap.h), 1..4096 (default 256) */
    int min_latency_ms;     /* emulate a slower model (tests, benchmarks): each batch's
                               results are held until this long after it started (0..60000) */
} vlad_serve_opts;

/* The defaults above. */
void vlad_serve_opts_default(vlad_serve_opts *o);

/* Counters (docs/SERVE.md "Counters"). */
typedef struct vlad_serve_stats {
    uint64_t requests, replies, chunks, asks, statuses, batches;
    uint64_t late, busy, bad_requests, shape_errors, not_authorised, internal_errors;
    uint32_t queued, max_batch_seen;
    double mean_batch; /* chunks / batches */
    uint64_t request_bytes; /* frames of the chunk and ask requests admitted */
    uint64_t jpeg_images;   /* JPEG images decoded (io thread, on receipt) */
} vlad_serve_stats;

typedef struct vlad_serve_server vlad_serve_server;

/* Load the model, bind, start the inference thread. NULL with err filled on any failure
 * (bad option, model, keys, endpoint in use). */
vlad_serve_server *vlad_serve_server_new(const vlad_serve_opts *o, vlad_err *err);

/* One io step: wait up to timeout_ms (-1 forever; EINTR returns early) for requests, results
 * or ZAP traffic, then send every finished reply and take the requests pending (at most 256).
 * Returns VLAD_OK, or VLAD_EIO when the poll itself failed. */
int vlad_serve_server_poll(vlad_serve_server *s, int timeout_ms, vlad_err *err);

/* Counters now (io thread). */
void vlad_serve_server_stats(const vlad_serve_server *s, vlad_serve_stats *out);

/* Stop the inference thread (after its current batch), send the replies of what finished,
 * answer what is still waiting BUSY "shutting down", close everything. NULL is fine. */
void vlad_serve_server_free(vlad_serve_server *s);

#endif
