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
#include "serve_testutil.h"

#define SIDE 64
#define PIX (SIDE * SIDE * 3)

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

/* Observation k's pictures: one scene per image input, each different. */
static void pictures(sv_obs *o, int k) {
    assert_true(sv_cfg.image_size == SIDE);
    for (int v = 0; v < sv_cfg.n_cameras; v++)
        scene(o->img[v], k + 3 * v);
}

static void make_obs(sv_obs *o, int k) {
    sv_make_obs(o, k, 10, 500, pictures);
}

static vlad_serve_client *client_of(const char *ep, int quality) {
    const char *eps[1] = {ep};
    return sv_client_of(eps, 1, 20000, NULL, NULL, "jpegbot", quality);
}

/* A request with o's images but image 0 this JPEG (declared side x side), sent raw. */
static void raw_send_jpeg(sv_raw *w, const sv_obs *o, uint64_t id, const uint8_t *jpg, size_t len,
                          uint32_t side) {
    sv_rawreq q;
    sv_rawreq_of(&q, o, id);
    q.r.obs_tick = 1;
    q.im[0].width = q.im[0].height = side;
    q.im[0].encoding = VLAD__SERVE__ENCODING__ENCODING_JPEG;
    q.im[0].data.data = (uint8_t *)jpg;
    q.im[0].data.len = len;
    sv_raw_send(w, &q.r);
}

/* A refusal (sv_expect_refusal), printed on stderr. */
static void expect(sv_raw *w, uint64_t id, int code, const char *field, const char *in_msg) {
    Vlad__Serve__InferReply *r = sv_expect_refusal(w, 20000, id, code, field, in_msg, NULL);
    fprintf(stderr, "test_serve_jpeg: request %llu: %s %s: %s\n", (unsigned long long)id,
            vlad_serve_code_name(r->error), r->field, r->message);
    vlad__serve__infer_reply__free_unpacked(r, NULL);
}

/* The model sees the decoded picture: a JPEG request's chunk is the local engine's on the
 * decoded image, a bounded distance from the raw one's; raw requests are the local engine's. */
static void test_served_chunks(void **state) {
    (void)state;
    sv_server s;
    sv_serve_start(&s, sv_free_port(), NULL, NULL);
    vlad_serve_client *raw = client_of(s.ep, 0), *jpg = client_of(s.ep, 90);
    sv_wait_ready(&s, raw, false);
    sv_wait_ready(&s, jpg, false);
    vlad_err e;
    vlad_jpeg *codec = vlad_jpeg_new(&e);
    assert_non_null(codec);
    size_t n = (size_t)sv_cfg.chunk_size * sv_cfg.action_dim, cap = vlad_jpeg_max_bytes(SIDE, SIDE);
    float *want_raw = malloc(n * sizeof(float)), *want_dec = malloc(n * sizeof(float));
    uint8_t *enc = malloc(cap), *dec = malloc((size_t)SV_MAX_IMG * PIX);
    assert_true(want_raw && want_dec && enc && dec);
    double worst_raw = 0, worst_dec = 0, worst_jpeg = 0, span = 0;
    size_t bytes_raw = 0, bytes_jpeg = 0;
    uint64_t enc_us = 0, dec_us = 0;
    enum { K = 6 };
    for (int k = 0; k < K; k++) {
        sv_obs o;
        make_obs(&o, k);
        vlad_serve_reply r;
        /* raw: the local engine's chunk */
        if (vlad_serve_client_infer(raw, &o.req, &r, &e))
            fail_msg("raw infer %d: %s", k, e.msg);
        sv_local_chunk(&o, NULL, NULL, want_raw);
        worst_raw = fmax(worst_raw, sv_maxdiff(r.actions, want_raw, n));
        bytes_raw += r.request_bytes;
        assert_int_equal(r.encode_us + r.decode_us, 0);
        for (size_t i = 0; i < n; i++)
            span = fmax(span, fabs((double)want_raw[i]));
        /* JPEG: the local engine's chunk on the decoded picture */
        if (vlad_serve_client_infer(jpg, &o.req, &r, &e))
            fail_msg("jpeg infer %d: %s", k, e.msg);
        const uint8_t *imgs[SV_MAX_IMG];
        for (int v = 0; v < sv_cfg.n_cameras; v++) { /* what the server decodes, per image */
            size_t len;
            assert_int_equal(vlad_jpeg_encode(codec, o.img[v], SIDE, SIDE, 90, enc, cap, &len, &e), 0);
            assert_int_equal(vlad_jpeg_decode(codec, enc, len, SIDE, SIDE, dec + (size_t)v * PIX, PIX, &e), 0);
            imgs[v] = dec + (size_t)v * PIX;
        }
        sv_local_chunk(&o, imgs, NULL, want_dec);
        worst_dec = fmax(worst_dec, sv_maxdiff(r.actions, want_dec, n));
        worst_jpeg = fmax(worst_jpeg, sv_maxdiff(r.actions, want_raw, n));
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
    assert_true(worst_raw <= SV_TOL);           /* raw: the engine's chunk (measured 0) */
    assert_true(worst_dec <= SV_TOL);           /* the model saw exactly the decoded picture */
    assert_true(worst_jpeg > 0);             /* ... which is not the raw one */
    assert_true(worst_jpeg <= 0.02);         /* a small, bounded change (rad; measured 0.0023) */
    assert_true(bytes_jpeg * 2 < bytes_raw); /* the point of it */
    vlad_serve_client_counters cn;
    vlad_serve_client_counters_get(jpg, &cn);
    assert_int_equal(cn.jpeg_images, K * sv_cfg.n_cameras);
    vlad_serve_reply r;
    assert_int_equal(vlad_serve_client_status(raw, &r, &e), VLAD_OK);
    assert_int_equal(r.status->jpeg_images, K * sv_cfg.n_cameras);
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
    sv_serve_stop(&s);
}

/* Bad JPEGs are refused naming the image; the server keeps serving. */
static void test_bad_jpeg(void **state) {
    (void)state;
    sv_server s;
    sv_serve_start(&s, sv_free_port(), NULL, NULL);
    vlad_serve_client *c = client_of(s.ep, 0);
    sv_wait_ready(&s, c, false);
    vlad_err e;
    vlad_jpeg *codec = vlad_jpeg_new(&e);
    assert_non_null(codec);
    size_t cap = vlad_jpeg_max_bytes(SIDE, SIDE), len;
    uint8_t *enc = calloc(1, cap + 1), *small = malloc(32 * 32 * 3); /* + 1: over the bound */
    assert_true(enc && small);
    sv_obs o;
    make_obs(&o, 2);
    sv_raw w;
    sv_raw_open(&w, s.ep);

    raw_send_jpeg(&w, &o, 1, o.img[0], 700, SIDE); /* raw pixels called JPEG */
    expect(&w, 1, VLAD_SERVE_BAD_REQUEST, "images[0].data", "not a JPEG");

    assert_int_equal(vlad_jpeg_encode(codec, o.img[0], SIDE, SIDE, 90, enc, cap, &len, &e), 0);
    raw_send_jpeg(&w, &o, 2, enc, len - len / 4, SIDE); /* truncated */
    expect(&w, 2, VLAD_SERVE_BAD_REQUEST, "images[0].data", "does not decode");

    memset(small, 90, 32 * 32 * 3); /* a 32x32 JPEG declared 64x64 */
    assert_int_equal(vlad_jpeg_encode(codec, small, 32, 32, 90, enc, cap, &len, &e), 0);
    raw_send_jpeg(&w, &o, 3, enc, len, SIDE);
    expect(&w, 3, VLAD_SERVE_SHAPE, "images[0].data", "JPEG is 32x32, expected 64x64");

    raw_send_jpeg(&w, &o, 4, enc, len, 32); /* declared 32x32 too: the model's is 64 */
    expect(&w, 4, VLAD_SERVE_SHAPE, "images[0].width", NULL);

    raw_send_jpeg(&w, &o, 5, enc, cap + 1, SIDE); /* over the worst-case bound */
    expect(&w, 5, VLAD_SERVE_BAD_REQUEST, "images[0].data", "bytes of JPEG");

    /* still serving: a good JPEG, then the client */
    assert_int_equal(vlad_jpeg_encode(codec, o.img[0], SIDE, SIDE, 90, enc, cap, &len, &e), 0);
    raw_send_jpeg(&w, &o, 6, enc, len, SIDE);
    Vlad__Serve__InferReply *ok = sv_raw_recv(&w, 20000);
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
    sv_raw_close(&w);
    free(enc);
    free(small);
    vlad_jpeg_free(codec);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
    assert_true(vh_file_has(s.log, "not a JPEG")); /* the refusal is logged, naming why */
}

static int group_setup(void **state) {
    (void)state;
    return sv_group_setup("test_serve_jpeg", "jpeg", 0);
}

int main(int argc, char **argv) {
    (void)argc;
    vlad_blas_coretype_init(argv); /* the same OpenBLAS kernels as vlad-serve */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test_setup_teardown(test_served_chunks, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_jpeg, sv_setup, sv_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, sv_group_teardown);
}
