/* serve_testutil.h — what the vlad-serve tests share (tests/serve_testutil.c; test_serve and
 * test_serve_jpeg): the default model loaded once per group with a local engine on it, an
 * observation with one image per image input of the model and the chunk the local engine
 * computes for it, a vlad-serve child process on loopback with its log in the test's folder
 * and a client of it, a raw DEALER for what the client library would refuse to send, and
 * the check of a refusal reply.
 *
 * Functions that cannot go on fail the running cmocka test (fail_msg), so they are called
 * from inside a test (or its setup); the group set-up functions return cmocka's verdict. */
#ifndef VLAD_SERVE_TESTUTIL_H
#define VLAD_SERVE_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "model.h"
#include "serve/client.h"
#include "serve/wire.h"

#define SV_MODEL "models/vlad-default.safetensors"
#define SV_TOL 1e-5 /* max |served - local| of a chunk the server computed on the same inputs */

/* ---- the model and the test's folder ----------------------------------------------------- */

extern vlad_model *sv_model;  /* SV_MODEL, loaded by sv_group_setup */
extern vlad_runstate *sv_rs;  /* the local engine on it (one BLAS thread) */
extern vlad_config sv_cfg;    /* sv_model->cfg */
extern vlad_serve_dims sv_dims; /* sv_cfg's, for the wire checks */
extern char sv_dir[64];       /* this test's temporary folder (sv_setup) */

/* Load SV_MODEL and make sv_rs with max_streams language streams; prog names the test in a
 * message on stderr when that fails (-1), dir_tag the folders sv_setup makes. 0 on success. */
int sv_group_setup(const char *prog, const char *dir_tag, int max_streams);
/* Free sv_rs and sv_model (a cmocka group teardown). */
int sv_group_teardown(void **state);
/* A fresh sv_dir, /tmp/vlad-<dir_tag>-XXXXXX (a cmocka per-test setup). */
int sv_setup(void **state);
/* Remove sv_dir (vh_finish_dir; a cmocka per-test teardown). */
int sv_teardown(void **state);

/* ---- observations and the local reference ------------------------------------------------ */

#define SV_MAX_PIX (64 * 64 * 3)
#define SV_MAX_IMG 4 /* image inputs (the model's views) */

typedef struct sv_obs {
    uint8_t img[SV_MAX_IMG][SV_MAX_PIX]; /* RAW RGB, sv_cfg.image_size squared */
    vlad_serve_image view[SV_MAX_IMG];   /* img as RAW request images */
    float state[16];
    char prompt[64];
    uint64_t seed;
    vlad_serve_request req; /* all of the above, for vlad_serve_client_infer */
} sv_obs;

/* Fills o->img[v] for each of the sv_cfg.n_cameras image inputs of observation k, each
 * different (sv_make_obs has zeroed o and checked that they fit). */
typedef void sv_pictures_fn(sv_obs *o, int k);

/* A deterministic observation k: the pictures, a state and a prompt that depend on k, seed
 * seed0 + k, obs_tick tick0 + k; one RAW image per image input of the model. */
void sv_make_obs(sv_obs *o, int k, int64_t tick0, uint64_t seed0, sv_pictures_fn *pictures);

/* The observation's images as the engine takes them (sv_cfg.n_cameras pointers). */
void sv_images_of(const sv_obs *o, const uint8_t **imgs);

/* The local engine's chunk (sv_cfg.chunk_size x action_dim into out) for o's prompt, state
 * and seed on imgs (one per image input; NULL: o's own images), with noise when not NULL. */
void sv_local_chunk(const sv_obs *o, const uint8_t *const *imgs, const float *noise, float *out);

/* max |a[i] - b[i]| over n values. */
double sv_maxdiff(const float *a, const float *b, size_t n);

/* ---- the server process and its client --------------------------------------------------- */

typedef struct sv_server {
    pid_t pid;
    int port;
    char ep[64], log[160];
} sv_server;

/* A free TCP port on 127.0.0.1 (vh_free_ports). */
int sv_free_port(void);

/* Start `vlad-serve --bind tcp://127.0.0.1:port --model SV_MODEL extra...` (extra
 * NULL-terminated, or NULL), its log sv_dir/serve-<tag>.log (tag NULL: sv_dir/serve.log). */
void sv_serve_start(sv_server *s, int port, const char *tag, const char *const *extra);

/* Wait (up to 120 status requests through c) until the server answers a status request,
 * failing as soon as it has exited; with check_model, the status must name the model and
 * its state_dim be sv_cfg's. */
void sv_wait_ready(sv_server *s, vlad_serve_client *c, bool check_model);

/* SIGTERM the server (nothing if it is not running); it must exit 0 within 20 s. */
void sv_serve_stop(sv_server *s);

/* A client of the n endpoints eps: timeout_ms per attempt, one attempt, robot name robot,
 * CURVE with the server's public key pub and the client's secret key file key (NULL, NULL:
 * plain), jpeg_quality (0: RAW images sent as given). */
vlad_serve_client *sv_client_of(const char *const *eps, int n, int timeout_ms, const char *pub,
                                const char *key, const char *robot, int jpeg_quality);

/* ---- a raw DEALER, for what the client library would refuse to send ---------------------- */

typedef struct sv_raw {
    void *ctx, *sock;
} sv_raw;

/* A DEALER of its own context, linger 0, connected to ep. */
void sv_raw_open(sv_raw *w, const char *ep);
void sv_raw_close(sv_raw *w);

/* Send len bytes as one frame. */
void sv_raw_send_bytes(sv_raw *w, const void *buf, size_t len);

/* Pack the request without any check (the point is to send what the checks would refuse)
 * and send it; at most 1 MiB packed. */
void sv_raw_send(sv_raw *w, const Vlad__Serve__InferRequest *r);

/* The next reply within timeout_ms, decoded and checked by wire.h (vlad_serve_decode_reply
 * against sv_dims), or fail. Free with vlad__serve__infer_reply__free_unpacked. */
Vlad__Serve__InferReply *sv_raw_recv(sv_raw *w, int timeout_ms);

/* An InferRequest for an observation, pointing into o and the storage here. */
typedef struct sv_rawreq {
    Vlad__Serve__InferRequest r;
    Vlad__Serve__Image im[SV_MAX_IMG], *imp[SV_MAX_IMG];
} sv_rawreq;

/* q->r: o's RAW images, prompt, state, seed and obs_tick as request id from robot "rawbot";
 * the caller changes what the test is about before sv_raw_send. */
void sv_rawreq_of(sv_rawreq *q, const sv_obs *o, uint64_t id);

/* The next reply on w within timeout_ms refuses request id with error code, naming field
 * (exactly), and its message contains in_msg unless that is NULL; else fail, naming the
 * request `what` (NULL: by its id). The reply, for more checks: free it with
 * vlad__serve__infer_reply__free_unpacked. */
Vlad__Serve__InferReply *sv_expect_refusal(sv_raw *w, int timeout_ms, uint64_t id, int code,
                                           const char *field, const char *in_msg,
                                           const char *what);

#endif
