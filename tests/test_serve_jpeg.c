/* JPEG images on the vlad-serve wire (serve/jpeg.h, ENCODING_JPEG, docs/SERVE.md "Images"):
 *   the codec: a round trip at quality 90 stays within a bounded pixel error (PSNR, max |Δ|),
 *     decoding is repeatable, a JPEG of another size, a truncated or corrupt one, bytes that are
 *     not a JPEG, a buffer too small or a bad quality are refused with a clear error;
 *   the real vlad-serve with the default model: a client with jpeg_quality 90 gets the chunk the
 *     local engine computes on the DECODED picture (the model sees what the server decoded), a
 *     bounded distance from the chunk on the raw picture; a raw request's chunk equals the local
 *     engine's; the request is several times smaller; the server reports the decode time and
 *     counts the images; a corrupt JPEG is BAD_REQUEST naming images[0].data, a JPEG of the
 *     wrong size SHAPE naming it, and the server keeps serving (a good JPEG next).
 * The measured figures (bytes, encode / decode µs, chunk difference) are printed on stderr; no
 * assertion is timed. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "clock.h"
#include "cpu.h"
#include "engine.h"
#include "frame.h"
#include "harness.h"
#include "model.h"
#include "proc.h"
#include "serve/client.h"
#include "serve/jpeg.h"
#include "serve/wire.h"

#define MODEL "models/vlad-default.safetensors"
#define TOL 1e-5
#define SIDE 64
#define PIX (SIDE * SIDE * 3)

static char dir[64];
static vlad_model *model;
static vlad_runstate *rs;
static vlad_config cfg;
static vlad_serve_dims dims;

/* ---- pictures ---------------------------------------------------------------------------- */

/* Scene k: a grey table with a coloured ball and a block (smooth, like the simulator's
 * camera), k moving them. */
static void scene(uint8_t *img, int k) {
    int bx = 14 + 5 * (k % 7), by = 40 - 3 * (k % 5), kx = 44 - 2 * (k % 6), ky = 18 + k % 9;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            uint8_t *p = img + (y * SIDE + x) * 3;
            int shade = 100 + (x + y) / 4;
            p[0] = p[1] = p[2] = (uint8_t)shade;
            if ((x - bx) * (x - bx) + (y - by) * (y - by) < 36)
                p[0] = 220, p[1] = 40, p[2] = 35;
            if (x > kx && x < kx + 10 && y > ky && y < ky + 10)
                p[0] = 30, p[1] = 60, p[2] = 210;
        }
}

/* Noise: the worst case for JPEG (every coefficient matters). */
static void noise_img(uint8_t *img, uint64_t x) {
    for (int i = 0; i < PIX; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        img[i] = (uint8_t)x;
    }
}

static void pixel_error(const uint8_t *a, const uint8_t *b, double *psnr, int *maxd) {
    double se = 0;
    *maxd = 0;
    for (int i = 0; i < PIX; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        se += (double)d * d;
        if (d > *maxd)
            *maxd = d;
    }
    double mse = se / PIX;
    *psnr = mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : INFINITY;
}

/* ---- the codec ------------------------------------------------------------------------------ */

static void test_codec(void **state) {
    (void)state;
    vlad_err e;
    vlad_jpeg *j = vlad_jpeg_new(&e);
    if (!j)
        fail_msg("%s", e.msg);
    size_t cap = vlad_jpeg_max_bytes(SIDE, SIDE);
    assert_int_equal(cap, 64 * 64 * 6 + 2048);
    assert_int_equal(vlad_jpeg_max_bytes(1, 1), 16 * 16 * 6 + 2048);
    assert_int_equal(vlad_jpeg_max_bytes(0, 5), 0);
    uint8_t *buf = malloc(cap), *img = malloc(PIX), *out = malloc(PIX), *out2 = malloc(PIX);
    assert_non_null(buf);
    assert_non_null(img);
    assert_non_null(out);
    assert_non_null(out2);
    size_t len;

    /* the scene at quality 90 (and 50, 100 for the record) */
    const int qs[3] = {90, 50, 100};
    for (int qi = 0; qi < 3; qi++) {
        scene(img, 3);
        assert_int_equal(vlad_jpeg_encode(j, img, SIDE, SIDE, qs[qi], buf, cap, &len, &e), VLAD_OK);
        assert_true(len > 0 && len < PIX);
        assert_int_equal(vlad_jpeg_decode(j, buf, len, SIDE, SIDE, out, PIX, &e), VLAD_OK);
        double psnr;
        int maxd;
        pixel_error(img, out, &psnr, &maxd);
        fprintf(stderr, "test_serve_jpeg: scene, quality %3d: %zu bytes (raw %d, %.1fx), PSNR "
                "%.1f dB, max |pixel diff| %d\n", qs[qi], len, PIX, (double)PIX / len, psnr, maxd);
        if (qs[qi] == 90) {
            assert_true(psnr >= 34.0); /* measured ~40 dB */
            assert_true(len * 3 < PIX); /* several times smaller than raw */
        }
    }
    /* noise: larger, still within the worst-case bound, still decodes */
    noise_img(img, 7);
    assert_int_equal(vlad_jpeg_encode(j, img, SIDE, SIDE, 100, buf, cap, &len, &e), VLAD_OK);
    fprintf(stderr, "test_serve_jpeg: noise, quality 100: %zu bytes (raw %d, bound %zu)\n", len,
            PIX, cap);
    assert_true(len <= cap);
    assert_int_equal(vlad_jpeg_decode(j, buf, len, SIDE, SIDE, out, PIX, &e), VLAD_OK);

    /* repeatable: the same bytes decode to the same pixels; timing of both directions */
    scene(img, 5);
    assert_int_equal(vlad_jpeg_encode(j, img, SIDE, SIDE, 90, buf, cap, &len, &e), VLAD_OK);
    enum { REPS = 300 };
    int64_t t0 = vlad_now_ns();
    for (int r = 0; r < REPS; r++)
        assert_int_equal(vlad_jpeg_encode(j, img, SIDE, SIDE, 90, buf, cap, &len, &e), VLAD_OK);
    int64_t t1 = vlad_now_ns();
    for (int r = 0; r < REPS; r++)
        assert_int_equal(vlad_jpeg_decode(j, buf, len, SIDE, SIDE, out, PIX, &e), VLAD_OK);
    int64_t t2 = vlad_now_ns();
    fprintf(stderr, "test_serve_jpeg: 64x64 at quality 90: encode %.1f us, decode %.1f us (mean of "
            "%d)\n", (double)(t1 - t0) / 1e3 / REPS, (double)(t2 - t1) / 1e3 / REPS, REPS);
    assert_int_equal(vlad_jpeg_decode(j, buf, len, SIDE, SIDE, out2, PIX, &e), VLAD_OK);
    assert_memory_equal(out, out2, PIX);

    /* refusals */
    assert_int_equal(vlad_jpeg_decode(j, buf, len, 32, 32, out, PIX, &e), VLAD_ERANGE);
    assert_non_null(strstr(e.msg, "JPEG is 64x64, expected 32x32"));
    assert_int_equal(vlad_jpeg_decode(j, buf, len, SIDE, SIDE, out, PIX - 1, &e), VLAD_ERANGE);
    assert_int_equal(vlad_jpeg_decode(j, img, 500, SIDE, SIDE, out, PIX, &e), VLAD_EINVAL);
    assert_non_null(strstr(e.msg, "not a JPEG"));
    assert_int_equal(vlad_jpeg_decode(j, buf, 0, SIDE, SIDE, out, PIX, &e), VLAD_EINVAL);
    /* truncated: the header is there (4:4:4 tables take ~600 bytes), a quarter of the data
     * is not; and cut inside the header */
    assert_int_equal(vlad_jpeg_decode(j, buf, len - len / 4, SIDE, SIDE, out, PIX, &e), VLAD_EINVAL);
    fprintf(stderr, "test_serve_jpeg: truncated: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "does not decode"));
    int rc = vlad_jpeg_decode(j, buf, 100, SIDE, SIDE, out, PIX, &e);
    fprintf(stderr, "test_serve_jpeg: cut in the header: %s\n", e.msg);
    assert_int_equal(rc, VLAD_EINVAL);
    assert_non_null(strstr(e.msg, "not a JPEG"));
    /* corrupt entropy-coded data (the header intact): refused, or at worst decoded; never a
     * crash (the server test below checks a refusal) */
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    memcpy(bad, buf, len);
    for (size_t i = len / 2; i < len - 2; i += 7)
        bad[i] = 0xFF;
    rc = vlad_jpeg_decode(j, bad, len, SIDE, SIDE, out, PIX, &e);
    assert_true(rc == VLAD_OK || rc == VLAD_EINVAL);
    free(bad);
    assert_int_equal(vlad_jpeg_encode(j, img, SIDE, SIDE, 0, buf, cap, &len, &e), VLAD_ERANGE);
    assert_int_equal(vlad_jpeg_encode(j, img, SIDE, SIDE, 90, buf, cap - 1, &len, &e), VLAD_ERANGE);
    assert_int_equal(vlad_jpeg_encode(j, img, 0, SIDE, 90, buf, cap, &len, &e), VLAD_ERANGE);
    free(buf);
    free(img);
    free(out);
    free(out2);
    vlad_jpeg_free(j);
    vlad_jpeg_free(NULL);
}

/* ---- the server -------------------------------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    char ep[64], log[160];
} server;

static void serve_start(server *s, int port) {
    snprintf(s->ep, sizeof s->ep, "tcp://127.0.0.1:%d", port);
    snprintf(s->log, sizeof s->log, "%s/serve.log", dir);
    char *argv[] = {(char *)vlad_proc_bin("vlad-serve"), "--bind", s->ep, "--model", MODEL, NULL};
    s->pid = vlad_proc_start(argv, s->log);
    if (s->pid <= 0)
        fail_msg("cannot start vlad-serve");
}

static void serve_stop(server *s) {
    int rc = vh_stop(&s->pid, 20000);
    if (rc != 0) {
        vh_print_file(s->log, 200);
        fail_msg("vlad-serve exited with %d after SIGTERM (expected 0)", rc);
    }
}

static vlad_serve_client *client_of(const char *ep, int quality) {
    const char *eps[1] = {ep};
    vlad_serve_client_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 20000,
                                .attempts = 1, .robot = "jpegbot", .jpeg_quality = quality};
    vlad_err e;
    vlad_serve_client *c = vlad_serve_client_new(&o, &e);
    if (!c)
        fail_msg("client: %s", e.msg);
    return c;
}

static void wait_ready(server *s, vlad_serve_client *c) {
    for (int i = 0; i < 120; i++) {
        vh_alive(&s->pid, "vlad-serve", s->log, "before it answered");
        vlad_serve_reply r;
        vlad_err e;
        if (vlad_serve_client_status(c, &r, &e) == VLAD_OK)
            return;
    }
    vh_print_file(s->log, 100);
    fail_msg("vlad-serve never answered a status request");
}

#define MAX_IMG 4 /* image inputs (the model's views) */

typedef struct obs {
    uint8_t img[MAX_IMG][PIX];
    vlad_serve_image view[MAX_IMG];
    float state[16];
    const char *prompt;
    vlad_serve_request req;
} obs;

static void make_obs(obs *o, int k) {
    memset(o, 0, sizeof *o);
    assert_true(cfg.image_size == SIDE && cfg.n_cameras <= MAX_IMG && cfg.state_dim <= 16);
    for (int v = 0; v < cfg.n_cameras; v++) { /* one scene per image input, each different */
        scene(o->img[v], k + 3 * v);
        o->view[v] = (vlad_serve_image){SIDE, SIDE, VLAD__SERVE__ENCODING__ENCODING_RAW, o->img[v], PIX};
    }
    for (int j = 0; j < cfg.state_dim; j++)
        o->state[j] = (float)(0.3 * sin(0.7 * k + j) + 0.1 * j);
    o->prompt = k % 2 ? "touch the red ball" : "reach the target";
    o->req = (vlad_serve_request){.obs_tick = 10 + k, .images = o->view, .n_images = cfg.n_cameras,
                                  .prompt = o->prompt, .state = o->state,
                                  .state_len = cfg.state_dim, .seed = 500 + (uint64_t)k};
}

/* The local engine's chunk for o's prompt, state and seed on these images (one per input). */
static void local_chunk(const obs *o, const uint8_t *const *imgs, float *out) {
    vlad_err e;
    if (vlad_encode_prefix(rs, imgs, o->prompt, strlen(o->prompt), &e) < 0)
        fail_msg("local encode: %s", e.msg);
    if (vlad_sample_actions(rs, o->state, NULL, o->req.seed, out, &e))
        fail_msg("local sample: %s", e.msg);
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* A raw DEALER: what the client library would not send. */
static void *raw_sock(void *ctx, const char *ep) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, ep), 0);
    return s;
}

static void raw_send_jpeg(void *sock, const obs *o, uint64_t id, const uint8_t *jpg, size_t len,
                          uint32_t side) {
    Vlad__Serve__InferRequest r = VLAD__SERVE__INFER_REQUEST__INIT;
    Vlad__Serve__Image im[MAX_IMG], *imp[MAX_IMG]; /* image 0 is this JPEG, any others o's raw */
    for (int v = 0; v < cfg.n_cameras; v++) {
        im[v] = (Vlad__Serve__Image)VLAD__SERVE__IMAGE__INIT;
        im[v].width = im[v].height = SIDE;
        im[v].encoding = VLAD__SERVE__ENCODING__ENCODING_RAW;
        im[v].data.data = (uint8_t *)o->img[v];
        im[v].data.len = PIX;
        imp[v] = &im[v];
    }
    im[0].width = im[0].height = side;
    im[0].encoding = VLAD__SERVE__ENCODING__ENCODING_JPEG;
    im[0].data.data = (uint8_t *)jpg;
    im[0].data.len = len;
    r.version = VLAD_SERVE_VERSION;
    r.robot = "rawbot";
    r.request_id = id;
    r.obs_tick = 1;
    r.n_images = (size_t)cfg.n_cameras;
    r.images = imp;
    r.prompt = (char *)o->prompt;
    r.n_state = (size_t)cfg.state_dim;
    r.state = (float *)o->state;
    r.seed = o->req.seed;
    static uint8_t buf[1 << 16];
    size_t n;
    assert_int_equal(vlad_frame_pack(VLAD_SERVE_TOPIC_REQUEST, &r.base, buf, sizeof buf, &n, NULL), 0);
    assert_true(zmq_send(sock, buf, n, 0) == (int)n);
}

static Vlad__Serve__InferReply *raw_recv(void *sock) {
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 20000) <= 0)
        fail_msg("no reply");
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_true(zmq_msg_recv(&m, sock, 0) >= 0);
    Vlad__Serve__InferReply *r = NULL;
    vlad_err e;
    int rc = vlad_serve_decode_reply(zmq_msg_data(&m), zmq_msg_size(&m), &dims, &r, NULL, 0, &e);
    zmq_msg_close(&m);
    if (rc)
        fail_msg("reply failed the wire check: %s", e.msg);
    return r;
}

static void expect(void *sock, uint64_t id, int code, const char *field, const char *in_msg) {
    Vlad__Serve__InferReply *r = raw_recv(sock);
    fprintf(stderr, "test_serve_jpeg: request %llu: %s %s: %s\n", (unsigned long long)id,
            vlad_serve_code_name(r->error), r->field, r->message);
    if ((int)r->error != code || r->request_id != id || strcmp(r->field, field) ||
        (in_msg && !strstr(r->message, in_msg)))
        fail_msg("request %llu: got %s field '%s' (%s), expected %s field '%s' with '%s'",
                 (unsigned long long)id, vlad_serve_code_name(r->error), r->field, r->message,
                 vlad_serve_code_name(code), field, in_msg ? in_msg : "");
    vlad__serve__infer_reply__free_unpacked(r, NULL);
}

/* The model sees the decoded picture: a JPEG request's chunk is the local engine's on the
 * decoded image, a bounded distance from the raw one's; raw requests are the local engine's. */
static void test_served_chunks(void **state) {
    (void)state;
    server s;
    int port;
    vh_free_ports(&port, 1);
    serve_start(&s, port);
    vlad_serve_client *raw = client_of(s.ep, 0), *jpg = client_of(s.ep, 90);
    wait_ready(&s, raw);
    wait_ready(&s, jpg);
    vlad_err e;
    vlad_jpeg *codec = vlad_jpeg_new(&e);
    assert_non_null(codec);
    size_t n = (size_t)cfg.chunk_size * cfg.action_dim, cap = vlad_jpeg_max_bytes(SIDE, SIDE);
    float *want_raw = malloc(n * sizeof(float)), *want_dec = malloc(n * sizeof(float));
    uint8_t *enc = malloc(cap), *dec = malloc((size_t)MAX_IMG * PIX);
    assert_true(want_raw && want_dec && enc && dec);
    double worst_raw = 0, worst_dec = 0, worst_jpeg = 0, span = 0;
    size_t bytes_raw = 0, bytes_jpeg = 0;
    uint64_t enc_us = 0, dec_us = 0;
    enum { K = 6 };
    for (int k = 0; k < K; k++) {
        obs o;
        make_obs(&o, k);
        vlad_serve_reply r;
        /* raw: the local engine's chunk */
        if (vlad_serve_client_infer(raw, &o.req, &r, &e))
            fail_msg("raw infer %d: %s", k, e.msg);
        const uint8_t *imgs[MAX_IMG];
        for (int v = 0; v < cfg.n_cameras; v++)
            imgs[v] = o.img[v];
        local_chunk(&o, imgs, want_raw);
        worst_raw = fmax(worst_raw, maxdiff(r.actions, want_raw, n));
        bytes_raw += r.request_bytes;
        assert_int_equal(r.encode_us + r.decode_us, 0);
        for (size_t i = 0; i < n; i++)
            span = fmax(span, fabs((double)want_raw[i]));
        /* JPEG: the local engine's chunk on the decoded picture */
        if (vlad_serve_client_infer(jpg, &o.req, &r, &e))
            fail_msg("jpeg infer %d: %s", k, e.msg);
        for (int v = 0; v < cfg.n_cameras; v++) { /* what the server decodes, per image */
            size_t len;
            assert_int_equal(vlad_jpeg_encode(codec, o.img[v], SIDE, SIDE, 90, enc, cap, &len, &e), 0);
            assert_int_equal(vlad_jpeg_decode(codec, enc, len, SIDE, SIDE, dec + (size_t)v * PIX, PIX, &e), 0);
            imgs[v] = dec + (size_t)v * PIX;
        }
        local_chunk(&o, imgs, want_dec);
        worst_dec = fmax(worst_dec, maxdiff(r.actions, want_dec, n));
        worst_jpeg = fmax(worst_jpeg, maxdiff(r.actions, want_raw, n));
        bytes_jpeg += r.request_bytes;
        enc_us += r.encode_us;
        dec_us += r.decode_us;
    }
    fprintf(stderr, "test_serve_jpeg: %d requests: raw %zu bytes each, JPEG q90 %zu bytes each "
            "(%.1fx fewer); client encode %.1f us, server decode %.1f us per request\n", K,
            bytes_raw / K, bytes_jpeg / K, (double)bytes_raw / (double)bytes_jpeg,
            (double)enc_us / K, (double)dec_us / K);
    fprintf(stderr, "test_serve_jpeg: max |served - local| raw %g, JPEG vs local on the decoded "
            "picture %g; JPEG vs raw %g (largest |action| %g)\n", worst_raw, worst_dec, worst_jpeg,
            span);
    assert_true(worst_raw <= TOL);           /* raw: the engine's chunk (measured 0) */
    assert_true(worst_dec <= TOL);           /* the model saw exactly the decoded picture */
    assert_true(worst_jpeg > 0);             /* ... which is not the raw one */
    assert_true(worst_jpeg <= 0.02);         /* a small, bounded change (rad; measured 0.0023) */
    assert_true(bytes_jpeg * 2 < bytes_raw); /* the point of it */
    vlad_serve_client_counters cn;
    vlad_serve_client_counters_get(jpg, &cn);
    assert_int_equal(cn.jpeg_images, K * cfg.n_cameras);
    vlad_serve_reply r;
    assert_int_equal(vlad_serve_client_status(raw, &r, &e), VLAD_OK);
    assert_int_equal(r.status->jpeg_images, K * cfg.n_cameras);
    assert_int_equal(r.status->decode->count, K);
    assert_int_equal(r.status->chunks, 2 * K);
    assert_true(r.status->request_bytes >= bytes_raw + bytes_jpeg);
    free(want_raw);
    free(want_dec);
    free(enc);
    free(dec);
    vlad_jpeg_free(codec);
    vlad_serve_client_free(raw);
    vlad_serve_client_free(jpg);
    serve_stop(&s);
}

/* Bad JPEGs are refused naming the image; the server keeps serving. */
static void test_bad_jpeg(void **state) {
    (void)state;
    server s;
    int port;
    vh_free_ports(&port, 1);
    serve_start(&s, port);
    vlad_serve_client *c = client_of(s.ep, 0);
    wait_ready(&s, c);
    vlad_err e;
    vlad_jpeg *codec = vlad_jpeg_new(&e);
    assert_non_null(codec);
    size_t cap = vlad_jpeg_max_bytes(SIDE, SIDE), len;
    uint8_t *enc = calloc(1, cap + 1), *small = malloc(32 * 32 * 3); /* + 1: over the bound */
    assert_true(enc && small);
    obs o;
    make_obs(&o, 2);
    void *ctx = zmq_ctx_new(), *sock = raw_sock(ctx, s.ep);

    raw_send_jpeg(sock, &o, 1, o.img[0], 700, SIDE); /* raw pixels called JPEG */
    expect(sock, 1, VLAD_SERVE_BAD_REQUEST, "images[0].data", "not a JPEG");

    assert_int_equal(vlad_jpeg_encode(codec, o.img[0], SIDE, SIDE, 90, enc, cap, &len, &e), 0);
    raw_send_jpeg(sock, &o, 2, enc, len - len / 4, SIDE); /* truncated */
    expect(sock, 2, VLAD_SERVE_BAD_REQUEST, "images[0].data", "does not decode");

    memset(small, 90, 32 * 32 * 3); /* a 32x32 JPEG declared 64x64 */
    assert_int_equal(vlad_jpeg_encode(codec, small, 32, 32, 90, enc, cap, &len, &e), 0);
    raw_send_jpeg(sock, &o, 3, enc, len, SIDE);
    expect(sock, 3, VLAD_SERVE_SHAPE, "images[0].data", "JPEG is 32x32, expected 64x64");

    raw_send_jpeg(sock, &o, 4, enc, len, 32); /* declared 32x32 too: the model's is 64 */
    expect(sock, 4, VLAD_SERVE_SHAPE, "images[0].width", NULL);

    raw_send_jpeg(sock, &o, 5, enc, cap + 1, SIDE); /* over the worst-case bound */
    expect(sock, 5, VLAD_SERVE_BAD_REQUEST, "images[0].data", "bytes of JPEG");

    /* still serving: a good JPEG, then the client */
    assert_int_equal(vlad_jpeg_encode(codec, o.img[0], SIDE, SIDE, 90, enc, cap, &len, &e), 0);
    raw_send_jpeg(sock, &o, 6, enc, len, SIDE);
    Vlad__Serve__InferReply *ok = raw_recv(sock);
    assert_int_equal(ok->error, VLAD__SERVE__ERROR_CODE__OK);
    assert_int_equal(ok->request_id, 6);
    assert_true(ok->latency->decode_us > 0 || ok->latency->total_us > 0);
    vlad__serve__infer_reply__free_unpacked(ok, NULL);
    vlad_serve_reply r;
    if (vlad_serve_client_infer(c, &o.req, &r, &e))
        fail_msg("infer after the bad JPEGs: %s", e.msg);
    assert_int_equal(vlad_serve_client_status(c, &r, &e), VLAD_OK);
    assert_int_equal(r.status->bad_requests, 3);
    assert_int_equal(r.status->shape_errors, 2);
    assert_int_equal(r.status->chunks, 2);
    assert_int_equal(r.status->jpeg_images, 1);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    free(enc);
    free(small);
    vlad_jpeg_free(codec);
    vlad_serve_client_free(c);
    serve_stop(&s);
    assert_true(vh_file_has(s.log, "not a JPEG")); /* the refusal is logged, naming why */
}

static int group_setup(void **state) {
    (void)state;
    vlad_err e;
    if (vlad_model_load(MODEL, &model, &e)) {
        fprintf(stderr, "test_serve_jpeg: %s\n", e.msg);
        return -1;
    }
    cfg = model->cfg;
    dims = (vlad_serve_dims){cfg.n_cameras, cfg.image_size, cfg.state_dim, cfg.action_dim,
                             cfg.chunk_size};
    vlad_runstate_opts ro = {.n_threads = 1, .max_streams = 0};
    rs = vlad_runstate_new(model, &ro, &e);
    if (!rs) {
        fprintf(stderr, "test_serve_jpeg: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    vlad_runstate_free(rs);
    vlad_model_free(model);
    return 0;
}

static int setup(void **state) {
    (void)state;
    vh_tmpdir(dir, sizeof dir, "jpeg");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vh_finish_dir(dir, true, NULL);
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    vlad_blas_coretype_init(argv); /* the same OpenBLAS kernels as vlad-serve */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test_setup_teardown(test_served_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_jpeg, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
