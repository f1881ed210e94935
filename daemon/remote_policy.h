/* remote_policy.h — the model on vlad-serve hosts (serve/client.h, docs/SERVE.md) as the
 * worker's policy (async/worker.h), configured by the profile's policy.remote.* keys.
 *
 * infer() runs on the worker thread only, like every policy: it turns the job into one
 * vlad_serve_request -- the daemon's observation tick, the job's composed image views (views.h:
 * the daemon's io thread composes the SERVER's model's views), the instruction, the state the
 * scheduler chose (rolled forward under vlash), the seed, and with policy.noise_scale != 1 the
 * scaled start noise itself -- and waits up to policy.remote.attempts x timeout_ms for the
 * chunk. With policy.remote.images: jpeg the client library JPEG-encodes each view at
 * policy.remote.jpeg_quality before sending (serve/jpeg.h, on this worker thread; the server
 * decodes it): the chunk is then the model's on the decoded picture, not bit-identical to a
 * local model's. Status gets the mean request size and encoding time (remote_request_bytes,
 * remote_encode_us). policy.remote.emulate_rtt_ms / emulate_jitter_ms (tests, benchmarks)
 * add an emulated network round trip to every call, inside the measured latency. The worker measures the job's latency from submission to result, so the round trip is
 * in every delay estimate. The control thread never waits for the network (lockstep: it waits
 * for the worker, as for a local model).
 *
 * Start (vlad_remote_policy_new): a status request to the servers, repeated until one answers
 * or policy.remote.start_timeout_ms passes. The answer's model (dims, "vlad.views", Δmax)
 * must fit the profile (policy_fit.h, the same rule as a local checkpoint); a model that does
 * not is refused. No answer: refused with an error naming the endpoints (and whether a server
 * refused this daemon's key at the handshake), unless policy.remote.fallback -- then the daemon
 * starts on the local policy.model and tries the servers later.
 *
 * Failures while running: a timeout, a lost connection or a server's refusal (BUSY, LATE, ...)
 * fails that inference (the control thread holds the last target once the queue runs out and
 * reports the run of failures as one POLICY_DOWN event, then POLICY_UP); the next job tries
 * again -- the client library reconnects by itself (ZeroMQ: 100 ms doubling to 5 s) and makes
 * a new socket after a CURVE refusal (0.5 s doubling to 8 s). With fallback the failed job is
 * run by the local model instead (infer returns VLAD_POLICY_DEGRADED) and the servers are tried
 * again after a backoff (0.5 s doubling to 8 s, reset by an answer). After a reconnection, and
 * before the first inference when none answered at start, the server's model is asked for
 * and checked again: one that changed is a failure like a timeout. Every server behind the
 * endpoints must run the same checkpoint.
 *
 * Counters go to a vlad_remote_stats (shared.h) after every call, for the daemon's Status. A
 * reply whose request id is not the outstanding one (a late reply to a request given up on,
 * the duplicate of a resent one) is dropped and counted by the client library.
 *
 * Unlike the engine, a remote inference allocates (the client library's protobuf-c decoding),
 * on the worker thread only; the control thread still never does. Stopping the daemon waits
 * for the call in flight: at most policy.remote.attempts x timeout_ms, plus one status request
 * after a reconnection.
 *
 * Not done: language (asks) over the remote policy; policy.flow_steps (the server runs the
 * checkpoint's own). */
#ifndef VLAD_REMOTE_POLICY_H
#define VLAD_REMOTE_POLICY_H

#include <stdbool.h>

#include "err.h"
#include "policy_fit.h"
#include "profile.h"
#include "serve/wire.h"
#include "shared.h"
#include "views.h"
#include "worker.h"

typedef struct vlad_remote_policy vlad_remote_policy;

/* What the servers said about their model (a status reply, serve.proto ModelInfo). */
typedef struct vlad_remote_model {
    bool known;                /* the fields below hold an answer */
    char endpoints[VLAD_LIST_MAX];
    char path[256];            /* the checkpoint, the server's name for it */
    char views[VLAD_SERVE_MAX_VIEWS_TEXT + 1]; /* "vlad.views" JSON ("" = identity) */
    int state_dim, action_dim, chunk_size, n_cameras, image_size;
    int max_delay;             /* its trained Δmax (vlad_trained_max_delay; 0: not recorded) */
    char what[512];            /* "policy.remote.endpoints (vlad-serve EPS, model PATH)" */
} vlad_remote_model;

/* m as a shape for vlad_model_fits (pointers into m). */
void vlad_remote_model_shape(const vlad_remote_model *m, vlad_model_shape *out);

/* Ask the servers of policy.remote.endpoints for their model: a status request, repeated until
 * one answers or policy.remote.start_timeout_ms passes (a connection of its own, closed
 * before it returns). VLAD_ETIMEOUT with err naming the endpoints (and a handshake refusal)
 * when none answered; a key file that cannot be used, as vlad_remote_keys. */
int vlad_remote_probe(const vlad_profile *p, vlad_remote_model *out, vlad_err *err);

/* The servers' public key from policy.remote.server_key (a public certificate; one holding a
 * secret key is refused) into pub (VLAD_KEY_LEN + 1 bytes; "" without CURVE), and the client's
 * secret certificate policy.remote.client_key read (the 0600 rule of keys.h). The check `vlad
 * --check` and vlad_remote_policy_new make. */
int vlad_remote_keys(const vlad_profile *p, char *pub, vlad_err *err);

/* Connect, ask for the servers' model, check it (see above); with policy.remote.fallback also
 * load and warm up policy.model. stats (kept by pointer, may be NULL) gets the counters. */
vlad_remote_policy *vlad_remote_policy_new(const vlad_profile *p, vlad_remote_stats *stats,
                                           vlad_err *err);
void vlad_remote_policy_free(vlad_remote_policy *r); /* NULL is fine */

/* The model's image inputs as views of the profile's cameras (what io composes). */
const vlad_views *vlad_remote_policy_views(const vlad_remote_policy *r);

/* One line for the log: the servers and their model, or the fallback in use. */
const char *vlad_remote_policy_describe(const vlad_remote_policy *r);

/* Fill ops: horizon and dim of the model, its Δmax, infer on the worker thread. */
void vlad_remote_policy_ops(vlad_remote_policy *r, vlad_policy_ops *ops);

#endif
