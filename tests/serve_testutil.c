/* What the vlad-serve tests share: see serve_testutil.h. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>
#include <cmocka.h>

#include "frame.h"
#include "harness.h"
#include "proc.h"
#include "serve_testutil.h"

vlad_model *sv_model;
vlad_runstate *sv_rs;
vlad_config sv_cfg;
vlad_serve_dims sv_dims;
char sv_dir[64];

static const char *dir_tag = "serve";

/* ---- the model and the test's folder ----------------------------------------------------- */

int sv_group_setup(const char *prog, const char *tag, int max_streams) {
    dir_tag = tag;
    vlad_err e;
    if (vlad_model_load(SV_MODEL, &sv_model, &e)) {
        fprintf(stderr, "%s: %s\n", prog, e.msg);
        return -1;
    }
    sv_cfg = sv_model->cfg;
    sv_dims = (vlad_serve_dims){sv_cfg.n_cameras, sv_cfg.image_size, sv_cfg.state_dim,
                                sv_cfg.action_dim, sv_cfg.chunk_size};
    vlad_runstate_opts ro = {.n_threads = 1, .max_streams = max_streams};
    sv_rs = vlad_runstate_new(sv_model, &ro, &e);
    if (!sv_rs) {
        fprintf(stderr, "%s: %s\n", prog, e.msg);
        return -1;
    }
    return 0;
}

int sv_group_teardown(void **state) {
    (void)state;
    vlad_runstate_free(sv_rs);
    vlad_model_free(sv_model);
    return 0;
}

int sv_setup(void **state) {
    (void)state;
    vh_tmpdir(sv_dir, sizeof sv_dir, dir_tag);
    return 0;
}

int sv_teardown(void **state) {
    (void)state;
    vh_finish_dir(sv_dir, true, NULL);
    return 0;
}

/* ---- observations and the local reference ------------------------------------------------ */

void sv_make_obs(sv_obs *o, int k, int64_t tick0, uint64_t seed0, sv_pictures_fn *pictures) {
    memset(o, 0, sizeof *o);
    size_t n = (size_t)sv_cfg.image_size * sv_cfg.image_size * 3;
    assert_true(n <= SV_MAX_PIX && sv_cfg.n_cameras <= SV_MAX_IMG && sv_cfg.state_dim <= 16);
    pictures(o, k);
    for (int v = 0; v < sv_cfg.n_cameras; v++)
        o->view[v] = (vlad_serve_image){(uint32_t)sv_cfg.image_size, (uint32_t)sv_cfg.image_size,
                                        VLAD__SERVE__ENCODING__ENCODING_RAW, o->img[v], n};
    for (int j = 0; j < sv_cfg.state_dim; j++)
        o->state[j] = (float)(0.3 * sin(0.7 * k + j) + 0.1 * j);
    snprintf(o->prompt, sizeof o->prompt, "%s", k % 2 ? "touch the red ball" : "reach the target");
    o->seed = seed0 + (uint64_t)k;
    o->req = (vlad_serve_request){.obs_tick = tick0 + k, .images = o->view,
                                  .n_images = sv_cfg.n_cameras, .prompt = o->prompt,
                                  .state = o->state, .state_len = sv_cfg.state_dim,
                                  .seed = o->seed};
}

void sv_images_of(const sv_obs *o, const uint8_t **imgs) {
    for (int v = 0; v < sv_cfg.n_cameras; v++)
        imgs[v] = o->img[v];
}

void sv_local_chunk(const sv_obs *o, const uint8_t *const *imgs, const float *noise, float *out) {
    const uint8_t *own[SV_MAX_IMG];
    if (!imgs) {
        sv_images_of(o, own);
        imgs = own;
    }
    vlad_err e;
    if (vlad_encode_prefix(sv_rs, imgs, o->prompt, strlen(o->prompt), &e) < 0)
        fail_msg("local encode: %s", e.msg);
    if (vlad_sample_actions(sv_rs, o->state, noise, o->seed, out, &e))
        fail_msg("local sample: %s", e.msg);
}

double sv_maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- the server process and its client --------------------------------------------------- */

int sv_free_port(void) {
    int p;
    vh_free_ports(&p, 1);
    return p;
}

void sv_serve_start(sv_server *s, int port, const char *tag, const char *const *extra) {
    s->port = port;
    snprintf(s->ep, sizeof s->ep, "tcp://127.0.0.1:%d", port);
    if (tag)
        snprintf(s->log, sizeof s->log, "%s/serve-%s.log", sv_dir, tag);
    else
        snprintf(s->log, sizeof s->log, "%s/serve.log", sv_dir);
    s->pid = vh_start_serve(s->ep, SV_MODEL, s->log, extra);
}

void sv_wait_ready(sv_server *s, vlad_serve_client *c, bool check_model) {
    for (int i = 0; i < 120; i++) {
        vh_alive(&s->pid, "vlad-serve", s->log, "before it answered");
        vlad_serve_reply r;
        vlad_err e;
        if (vlad_serve_client_status(c, &r, &e) == VLAD_OK) {
            if (check_model) {
                assert_non_null(r.status);
                assert_non_null(r.status->model);
                assert_int_equal(r.status->model->state_dim, sv_cfg.state_dim);
            }
            return;
        }
    }
    vh_print_file(s->log, 100);
    fail_msg("vlad-serve on %s never answered a status request", s->ep);
}

void sv_serve_stop(sv_server *s) {
    if (s->pid <= 0)
        return;
    int rc = vh_stop(&s->pid, 20000);
    if (rc != 0) {
        vh_print_file(s->log, 200);
        fail_msg("vlad-serve exited with %d after SIGTERM (expected 0)", rc);
    }
}

vlad_serve_client *sv_client_of(const char *const *eps, int n, int timeout_ms, const char *pub,
                                const char *key, const char *robot, int jpeg_quality) {
    vlad_serve_client_opts o = {.endpoints = eps, .n_endpoints = n, .timeout_ms = timeout_ms,
                                .attempts = 1, .robot = robot, .server_public_key = pub,
                                .client_key = key, .jpeg_quality = jpeg_quality};
    vlad_err e;
    vlad_serve_client *c = vlad_serve_client_new(&o, &e);
    if (!c)
        fail_msg("client: %s", e.msg);
    return c;
}

/* ---- a raw DEALER ------------------------------------------------------------------------- */

void sv_raw_open(sv_raw *w, const char *ep) {
    w->ctx = zmq_ctx_new();
    w->sock = zmq_socket(w->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(w->sock, ep), 0);
}

void sv_raw_close(sv_raw *w) {
    zmq_close(w->sock);
    zmq_ctx_term(w->ctx);
}

void sv_raw_send_bytes(sv_raw *w, const void *buf, size_t len) {
    assert_true(zmq_send(w->sock, buf, len, 0) == (int)len);
}

void sv_raw_send(sv_raw *w, const Vlad__Serve__InferRequest *r) {
    static uint8_t buf[1 << 20];
    size_t len;
    assert_int_equal(vlad_frame_pack(VLAD_SERVE_TOPIC_REQUEST, &r->base, buf, sizeof buf, &len, NULL), 0);
    sv_raw_send_bytes(w, buf, len);
}

Vlad__Serve__InferReply *sv_raw_recv(sv_raw *w, int timeout_ms) {
    zmq_pollitem_t it = {w->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        fail_msg("no reply within %d ms", timeout_ms);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_true(zmq_msg_recv(&m, w->sock, 0) >= 0);
    Vlad__Serve__InferReply *r = NULL;
    vlad_err e;
    int rc = vlad_serve_decode_reply(zmq_msg_data(&m), zmq_msg_size(&m), &sv_dims, &r, NULL, 0, &e);
    zmq_msg_close(&m);
    if (rc)
        fail_msg("reply failed the wire check: %s", e.msg);
    return r;
}

void sv_rawreq_of(sv_rawreq *q, const sv_obs *o, uint64_t id) {
    q->r = (Vlad__Serve__InferRequest)VLAD__SERVE__INFER_REQUEST__INIT;
    for (int v = 0; v < sv_cfg.n_cameras; v++) {
        q->im[v] = (Vlad__Serve__Image)VLAD__SERVE__IMAGE__INIT;
        q->im[v].width = q->im[v].height = (uint32_t)sv_cfg.image_size;
        q->im[v].encoding = VLAD__SERVE__ENCODING__ENCODING_RAW;
        q->im[v].data.data = (uint8_t *)o->img[v]; /* only read: packed */
        q->im[v].data.len = o->view[v].len;
        q->imp[v] = &q->im[v];
    }
    q->r.version = VLAD_SERVE_VERSION;
    q->r.robot = "rawbot";
    q->r.request_id = id;
    q->r.obs_tick = o->req.obs_tick;
    q->r.n_images = (size_t)sv_cfg.n_cameras;
    q->r.images = q->imp;
    q->r.prompt = (char *)o->prompt;
    q->r.n_state = (size_t)sv_cfg.state_dim;
    q->r.state = (float *)o->state;
    q->r.seed = o->seed;
}

Vlad__Serve__InferReply *sv_expect_refusal(sv_raw *w, int timeout_ms, uint64_t id, int code,
                                           const char *field, const char *in_msg,
                                           const char *what) {
    Vlad__Serve__InferReply *r = sv_raw_recv(w, timeout_ms);
    char name[64];
    if (!what) {
        snprintf(name, sizeof name, "request %llu", (unsigned long long)id);
        what = name;
    }
    if ((int)r->error != code || r->request_id != id || strcmp(r->field, field) ||
        (in_msg && !strstr(r->message, in_msg)))
        fail_msg("%s: got %s field '%s' (request %llu: %s), expected %s field '%s' request %llu"
                 " with '%s'", what, vlad_serve_code_name(r->error), r->field,
                 (unsigned long long)r->request_id, r->message, vlad_serve_code_name(code), field,
                 (unsigned long long)id, in_msg ? in_msg : "");
    return r;
}
