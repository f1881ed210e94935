/* vlad-serve (serve/, docs/SERVE.md) against the real program on loopback TCP, with the
 * default model: a chunk equals the local engine's (vlad_encode_prefix + vlad_sample_actions)
 * on the same inputs, an answer equals vlad_lang_generate's; requests sent together from
 * several client sockets run as one batch and each equals its one-by-one result; malformed
 * requests are answered BAD_REQUEST / SHAPE naming the field and the server goes on; a spent
 * deadline is LATE, one that passes in the queue too; a full queue answers BUSY; a late
 * reply to a request the client gave up on is dropped and counted; with CURVE an unknown key
 * and a key without the infer right get nothing (refused at the handshake), an allowed one is
 * served; a
 * server killed and restarted on the same port serves the client again; a dead endpoint
 * among several is skipped. Every server is stopped with SIGTERM and must exit 0. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>
#include <cjson/cJSON.h>
#include <cmocka.h>

#include "clock.h"
#include "cpu.h"
#include "engine.h"
#include "frame.h"
#include "harness.h"
#include "keys.h"
#include "model.h"
#include "proc.h"
#include "safetensors.h"
#include "serve/client.h"
#include "serve/wire.h"
#include "serve_testutil.h"

/* ---- observations and the local reference ----------------------------------------------- */

/* Observation k's pictures: one per image input of the model (each of its views), each
 * different. */
static void pictures(sv_obs *o, int k) {
    size_t n = (size_t)sv_cfg.image_size * sv_cfg.image_size * 3;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
    for (int v = 0; v < sv_cfg.n_cameras; v++)
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            o->img[v][i] = (uint8_t)((i % 3 == (size_t)((k + v) % 3) ? 160 : 40) + (x & 63));
        }
}

/* A deterministic observation k (images, state, prompt and seed all depend on k). */
static void make_obs(sv_obs *o, int k) {
    sv_make_obs(o, k, 100, 1000, pictures);
}

static void assert_chunk_is_local(const vlad_serve_reply *r, const sv_obs *o, const float *noise) {
    assert_int_equal(r->code, VLAD_SERVE_OK);
    assert_int_equal(r->horizon, sv_cfg.chunk_size);
    assert_int_equal(r->action_dim, sv_cfg.action_dim);
    assert_non_null(r->actions);
    float want[4096];
    size_t n = (size_t)sv_cfg.chunk_size * sv_cfg.action_dim;
    assert_true(n <= 4096);
    sv_local_chunk(o, NULL, noise, want);
    double md = sv_maxdiff(r->actions, want, n);
    if (!(md <= SV_TOL))
        fail_msg("request %llu (obs tick %lld): max |served - local| = %g > %g",
                 (unsigned long long)r->request_id, (long long)r->obs_tick, md, SV_TOL);
}

static const Vlad__Serve__ServeStatus *status_of(vlad_serve_client *c, vlad_serve_reply *r) {
    vlad_err e;
    if (vlad_serve_client_status(c, r, &e))
        fail_msg("status: %s", e.msg);
    return r->status;
}

static int group_setup(void **state) {
    (void)state;
    return sv_group_setup("test_serve", "serve", 1); /* one language stream: the asks */
}

/* ---- tests ----------------------------------------------------------------------------- */

/* One request: the chunk equals the local engine's, with seeded and with explicit noise; an
 * ask equals vlad_lang_generate on the same frame; the status counts them; a client whose
 * first endpoint has no server is served by the second. */
static void test_chunk_equals_local(void **state) {
    (void)state;
    sv_server s;
    sv_serve_start(&s, sv_free_port(), "chunk", NULL);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 2000, NULL, NULL, "testbot", 0);
    sv_wait_ready(&s, c, true);
    assert_int_equal(vlad_serve_client_dims(c).state_dim, sv_cfg.state_dim); /* learnt from status */
    sv_obs o;
    vlad_serve_reply r;
    vlad_err e;
    for (int k = 0; k < 3; k++) {
        make_obs(&o, k);
        if (vlad_serve_client_infer(c, &o.req, &r, &e))
            fail_msg("infer %d: %s", k, e.msg);
        assert_chunk_is_local(&r, &o, NULL);
        assert_int_equal(r.obs_tick, o.req.obs_tick);
        assert_int_equal(r.batch_size, 1);
        assert_true(r.total_us >= r.queue_us);
    }
    /* explicit noise instead of the seed */
    float noise[4096];
    size_t nn = (size_t)sv_cfg.chunk_size * sv_cfg.action_dim;
    for (size_t i = 0; i < nn; i++)
        noise[i] = (float)(0.5 * sin(0.37 * (double)i));
    make_obs(&o, 7);
    o.req.noise = noise;
    o.req.noise_len = (int)nn;
    if (vlad_serve_client_infer(c, &o.req, &r, &e))
        fail_msg("infer with noise: %s", e.msg);
    assert_chunk_is_local(&r, &o, noise);
    /* ask: the greedy answer on this observation's prefix */
    make_obs(&o, 4);
    if (vlad_serve_client_ask(c, &o.req, "which colour is the target?", &r, &e))
        fail_msg("ask: %s", e.msg);
    assert_int_equal(r.code, VLAD_SERVE_OK);
    char want[4200];
    size_t wlen = 0;
    const uint8_t *imgs[SV_MAX_IMG];
    sv_images_of(&o, imgs);
    assert_true(vlad_encode_prefix(sv_rs, imgs, o.prompt, strlen(o.prompt), &e) >= 0);
    const char *q = "which colour is the target?";
    if (vlad_lang_generate(sv_rs, q, strlen(q), want, sizeof want, &wlen, &e))
        fail_msg("local ask: %s", e.msg);
    assert_int_equal(r.answer_len, wlen);
    assert_memory_equal(r.answer, want, wlen);
    /* a second ask (commentary) on another observation, with no state */
    make_obs(&o, 5);
    o.req.state = NULL;
    o.req.state_len = 0;
    if (vlad_serve_client_ask(c, &o.req, "", &r, &e))
        fail_msg("second ask: %s", e.msg);
    sv_images_of(&o, imgs);
    assert_true(vlad_encode_prefix(sv_rs, imgs, o.prompt, strlen(o.prompt), &e) >= 0);
    if (vlad_lang_generate(sv_rs, "", 0, want, sizeof want, &wlen, &e))
        fail_msg("local commentary: %s", e.msg);
    assert_int_equal(r.answer_len, wlen);
    assert_memory_equal(r.answer, want, wlen);
    /* a chunk request needs the state */
    assert_int_equal(vlad_serve_client_infer(c, &o.req, &r, &e), VLAD_EINVAL);
    /* the counters */
    const Vlad__Serve__ServeStatus *st = status_of(c, &r);
    assert_int_equal(st->chunks, 4);
    assert_int_equal(st->asks, 2);
    assert_int_equal(st->batches, 4);
    assert_int_equal(st->bad_requests + st->late + st->busy + st->shape_errors, 0);
    assert_int_equal(st->queue->count, 6);
    assert_int_equal(st->model->chunk_size, sv_cfg.chunk_size);
    /* what a daemon composes and plans by: the checkpoint's views and Δmax, as recorded */
    const char *mv = vlad_st_meta(sv_model->file, "vlad.views");
    assert_string_equal(st->model->views, mv ? mv : "");
    const char *md = vlad_st_meta(sv_model->file, "vlad.train.delta_max");
    assert_int_equal(st->model->delta_max, md ? strtol(md, NULL, 10) : 0);
    vlad_serve_client_counters n;
    vlad_serve_client_counters_get(c, &n);
    assert_int_equal(n.dropped_stale + n.bad_replies + n.timeouts, 0);
    vlad_serve_client_free(c);

    /* the same counters from `vlad-serve --status`, as JSON */
    char out[200];
    snprintf(out, sizeof out, "%s/status.json", sv_dir);
    char *argv[] = {(char *)vlad_proc_bin("vlad-serve"), "--status", "--connect", s.ep, NULL};
    pid_t qp = vlad_proc_start(argv, out);
    assert_true(qp > 0);
    assert_int_equal(vlad_proc_wait(qp, 60000), 0);
    char *txt = vh_slurp(out, NULL);
    assert_non_null(txt);
    cJSON *j = cJSON_Parse(txt);
    if (!j)
        fail_msg("vlad-serve --status printed no JSON: %s", txt);
    free(txt);
    assert_int_equal(cJSON_GetObjectItem(j, "chunks")->valuedouble, 4);
    assert_int_equal(cJSON_GetObjectItem(j, "asks")->valuedouble, 2);
    cJSON *mj = cJSON_GetObjectItem(j, "model");
    assert_non_null(mj);
    assert_int_equal(cJSON_GetObjectItem(mj, "action_dim")->valuedouble, sv_cfg.action_dim);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "total"), "p99_us"));
    cJSON_Delete(j);

    /* a dead endpoint first: ZMQ_IMMEDIATE sends only over the live connection */
    char dead[64];
    snprintf(dead, sizeof dead, "tcp://127.0.0.1:%d", sv_free_port());
    const char *two[2] = {dead, s.ep};
    c = sv_client_of(two, 2, 3000, NULL, NULL, "testbot", 0);
    for (int k = 0; k < 4; k++) {
        make_obs(&o, 10 + k);
        if (vlad_serve_client_infer(c, &o.req, &r, &e))
            fail_msg("infer with a dead endpoint listed first, %d: %s", k, e.msg);
        assert_chunk_is_local(&r, &o, NULL);
    }
    vlad_serve_client_counters_get(c, &n);
    assert_int_equal(n.timeouts, 0);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

#define NCONC 4

typedef struct conc {
    const char *ep;
    pthread_barrier_t *bar;
    int k;
    int rc;
    char err[VLAD_ERR_MSG_MAX];
    float actions[4096];
    int n;
    uint32_t batch_size;
} conc;

static void *conc_main(void *arg) {
    conc *x = arg;
    const char *eps[1] = {x->ep};
    vlad_serve_client_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 20000,
                                .attempts = 1, .robot = "conc"};
    vlad_err e;
    vlad_serve_client *c = vlad_serve_client_new(&o, &e);
    if (!c) {
        x->rc = -100;
        snprintf(x->err, sizeof x->err, "%s", e.msg);
        pthread_barrier_wait(x->bar);
        return NULL;
    }
    /* connected first, so that the requests really leave together */
    vlad_serve_reply r;
    x->rc = vlad_serve_client_status(c, &r, &e);
    pthread_barrier_wait(x->bar);
    if (!x->rc) {
        sv_obs *ob = malloc(sizeof *ob);
        make_obs(ob, 20 + x->k);
        x->rc = vlad_serve_client_infer(c, &ob->req, &r, &e);
        if (!x->rc) {
            x->n = r.horizon * r.action_dim;
            memcpy(x->actions, r.actions, (size_t)x->n * sizeof(float));
            x->batch_size = r.batch_size;
        }
        free(ob);
    }
    if (x->rc)
        snprintf(x->err, sizeof x->err, "%s", e.msg);
    vlad_serve_client_free(c);
    return NULL;
}

/* Requests from several client sockets sent together run as one batch (--batch-wait-us; two
 * engine threads), and each result equals its one-by-one local result. */
static void test_batching(void **state) {
    (void)state;
    sv_server s;
    const char *args[] = {"--batch-wait-us", "500000", "--max-batch", "8", "--threads", "2", NULL};
    sv_serve_start(&s, sv_free_port(), "batch", args);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 2000, NULL, NULL, "testbot", 0);
    sv_wait_ready(&s, c, true);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NCONC);
    static conc x[NCONC];
    pthread_t th[NCONC];
    for (int i = 0; i < NCONC; i++) {
        memset(&x[i], 0, sizeof x[i]);
        x[i] = (conc){.ep = s.ep, .bar = &bar, .k = i};
        assert_int_equal(pthread_create(&th[i], NULL, conc_main, &x[i]), 0);
    }
    for (int i = 0; i < NCONC; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    uint32_t maxb = 0;
    for (int i = 0; i < NCONC; i++) {
        if (x[i].rc)
            fail_msg("client %d: %s", i, x[i].err);
        vlad_serve_reply r = {.code = VLAD_SERVE_OK, .horizon = sv_cfg.chunk_size,
                              .action_dim = sv_cfg.action_dim, .actions = x[i].actions};
        sv_obs o;
        make_obs(&o, 20 + i);
        r.obs_tick = o.req.obs_tick;
        assert_int_equal(x[i].n, sv_cfg.chunk_size * sv_cfg.action_dim);
        assert_chunk_is_local(&r, &o, NULL);
        if (x[i].batch_size > maxb)
            maxb = x[i].batch_size;
    }
    vlad_serve_reply r;
    const Vlad__Serve__ServeStatus *st = status_of(c, &r);
    fprintf(stderr, "test_serve: %d concurrent requests ran in %llu batches (largest %u)\n", NCONC,
            (unsigned long long)st->batches, maxb);
    assert_true(maxb > 1);
    assert_int_equal(st->chunks, NCONC);
    assert_true(st->batches < NCONC);
    assert_true(st->mean_batch > 1.0);
    assert_int_equal(st->max_batch_seen, maxb);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

/* A refusal (sv_expect_refusal) whose message names the field too and that carries no body. */
static void expect_refusal(sv_raw *w, uint64_t id, int code, const char *field, const char *what) {
    Vlad__Serve__InferReply *r = sv_expect_refusal(w, 10000, id, code, field, NULL, what);
    assert_non_null(strstr(r->message, field)); /* the message names the field too */
    assert_int_equal(r->body_case, VLAD__SERVE__INFER_REPLY__BODY__NOT_SET);
    vlad__serve__infer_reply__free_unpacked(r, NULL);
}

/* Malformed requests: BAD_REQUEST (or SHAPE for dimensions that are not the model's) naming
 * the field, and the server keeps serving. The client library refuses them before sending. */
static void test_bad_requests(void **state) {
    (void)state;
    sv_server s;
    sv_serve_start(&s, sv_free_port(), "bad", NULL);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 3000, NULL, NULL, "testbot", 0);
    sv_wait_ready(&s, c, true);
    sv_raw w;
    sv_raw_open(&w, s.ep);
    sv_obs o;
    make_obs(&o, 1);
    sv_rawreq q;
    int shape = 0, bad = 0;

    sv_rawreq_of(&q, &o, 11); /* image bytes short of width*height*3 */
    q.im[0].data.len -= 5;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 11, VLAD_SERVE_BAD_REQUEST, "images[0].data", "short image");
    bad++;

    sv_rawreq_of(&q, &o, 12); /* NaN in the state */
    float st[16];
    memcpy(st, o.state, sizeof st);
    st[1] = NAN;
    q.r.state = st;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 12, VLAD_SERVE_BAD_REQUEST, "state[1]", "NaN state");
    bad++;

    sv_raw_send_bytes(&w, "\x01garbage \xff\xfe not a request", 26); /* garbage */
    expect_refusal(&w, 0, VLAD_SERVE_BAD_REQUEST, "frame", "garbage bytes");
    bad++;
    static const uint8_t junk[] = "infer \x0a\xff\xff\xff\xff\x0f\x01";
    sv_raw_send_bytes(&w, junk, sizeof junk - 1); /* the right topic, not a protobuf */
    expect_refusal(&w, 0, VLAD_SERVE_BAD_REQUEST, "frame", "garbage protobuf");
    bad++;

    sv_rawreq_of(&q, &o, 13); /* a well-formed image of the wrong size: SHAPE */
    static uint8_t small[32 * 32 * 3];
    q.im[0].width = q.im[0].height = 32;
    q.im[0].data.data = small;
    q.im[0].data.len = sizeof small;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 13, VLAD_SERVE_SHAPE, "images[0].width", "32x32 image");
    shape++;

    sv_rawreq_of(&q, &o, 14); /* one state value short: SHAPE */
    q.r.n_state = (size_t)sv_cfg.state_dim - 1;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 14, VLAD_SERVE_SHAPE, "state", "short state");
    shape++;

    sv_rawreq_of(&q, &o, 15); /* another protocol version */
    q.r.version = 2;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 15, VLAD_SERVE_BAD_REQUEST, "version", "version 2");
    bad++;

    sv_rawreq_of(&q, &o, 16); /* JPEG that is not one (raw pixels); test_serve_jpeg has more */
    q.im[0].encoding = VLAD__SERVE__ENCODING__ENCODING_JPEG;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 16, VLAD_SERVE_BAD_REQUEST, "images[0].data", "JPEG of raw pixels");
    bad++;

    sv_rawreq_of(&q, &o, 0); /* request id 0 */
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 0, VLAD_SERVE_BAD_REQUEST, "request_id", "request id 0");
    bad++;

    sv_rawreq_of(&q, &o, 17); /* no images */
    q.r.n_images = 0;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 17, VLAD_SERVE_BAD_REQUEST, "images", "no images");
    bad++;

    sv_rawreq_of(&q, &o, 18); /* a prompt over the bound */
    static char longp[VLAD_SERVE_MAX_PROMPT + 10];
    memset(longp, 'a', sizeof longp - 1);
    q.r.prompt = longp;
    sv_raw_send(&w, &q.r);
    expect_refusal(&w, 18, VLAD_SERVE_BAD_REQUEST, "prompt", "long prompt");
    bad++;

    /* two frames after the routing id */
    uint8_t buf[256];
    size_t len;
    sv_rawreq_of(&q, &o, 19);
    q.r.n_images = 0; /* small enough; never decoded anyway */
    assert_int_equal(vlad_frame_pack(VLAD_SERVE_TOPIC_REQUEST, &q.r.base, buf, sizeof buf, &len, NULL), 0);
    assert_true(zmq_send(w.sock, buf, len, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(w.sock, buf, len, 0) >= 0);
    expect_refusal(&w, 0, VLAD_SERVE_BAD_REQUEST, "frame", "two frames");
    bad++;

    /* the raw socket is still served */
    sv_rawreq_of(&q, &o, 20);
    sv_raw_send(&w, &q.r);
    Vlad__Serve__InferReply *ok = sv_raw_recv(&w, 10000);
    assert_int_equal(ok->error, VLAD__SERVE__ERROR_CODE__OK);
    assert_int_equal(ok->request_id, 20);
    vlad__serve__infer_reply__free_unpacked(ok, NULL);
    sv_raw_close(&w);

    /* the client library checks before sending: nothing goes out */
    vlad_serve_client_counters n0, n1;
    vlad_serve_client_counters_get(c, &n0);
    vlad_serve_reply r;
    vlad_err e;
    o.state[2] = INFINITY;
    assert_int_equal(vlad_serve_client_infer(c, &o.req, &r, &e), VLAD_EINVAL);
    assert_non_null(strstr(e.msg, "state[2]"));
    make_obs(&o, 1);
    o.req.state_len = sv_cfg.state_dim + 1;
    assert_int_equal(vlad_serve_client_infer(c, &o.req, &r, &e), VLAD_ERANGE);
    assert_int_equal(r.code, -1);
    vlad_serve_client_counters_get(c, &n1);
    assert_int_equal(n1.sent, n0.sent);

    /* and the server serves the client as before */
    make_obs(&o, 2);
    if (vlad_serve_client_infer(c, &o.req, &r, &e))
        fail_msg("infer after the bad requests: %s", e.msg);
    assert_chunk_is_local(&r, &o, NULL);
    const Vlad__Serve__ServeStatus *stt = status_of(c, &r);
    assert_int_equal(stt->bad_requests, bad);
    assert_int_equal(stt->shape_errors, shape);
    assert_int_equal(stt->chunks, 2);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

/* Deadlines and backpressure, against a slow server (--min-latency-ms, one request per
 * batch, two waiting at most): a spent budget is LATE at once; one that passes while the
 * request waits behind a slow batch is LATE and not run; a full queue answers BUSY at once
 * (before any of the slow results). */
static void test_late_and_busy(void **state) {
    (void)state;
    sv_server s;
    const char *args[] = {"--min-latency-ms", "1500", "--max-batch", "1", "--queue", "2", NULL};
    sv_serve_start(&s, sv_free_port(), "late", args);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 10000, NULL, NULL, "testbot", 0);
    sv_wait_ready(&s, c, true);
    sv_obs o;
    vlad_serve_reply r;
    vlad_err e;

    /* spent on arrival: elapsed_us >= budget_us */
    make_obs(&o, 3);
    o.req.budget_us = 5000;
    o.req.elapsed_us = 8000;
    assert_int_equal(vlad_serve_client_infer(c, &o.req, &r, &e), VLAD_ETIMEOUT);
    assert_int_equal(r.code, VLAD_SERVE_LATE);
    assert_null(r.actions);

    /* passed in the queue: B (100 ms budget) waits behind A's 1.5 s batch */
    sv_raw w;
    sv_raw_open(&w, s.ep);
    sv_obs a, b;
    make_obs(&a, 4);
    make_obs(&b, 5);
    sv_rawreq qa, qb;
    sv_rawreq_of(&qa, &a, 101);
    sv_rawreq_of(&qb, &b, 102);
    qb.r.budget_us = 100000;
    sv_raw_send(&w, &qa.r);
    sv_raw_send(&w, &qb.r);
    Vlad__Serve__InferReply *ra = sv_raw_recv(&w, 20000), *rb = sv_raw_recv(&w, 20000);
    assert_int_equal(ra->request_id, 101);
    assert_int_equal(ra->error, VLAD__SERVE__ERROR_CODE__OK);
    assert_int_equal(rb->request_id, 102);
    if (rb->error != VLAD__SERVE__ERROR_CODE__LATE)
        fail_msg("request 102: %s (%s), expected LATE", vlad_serve_code_name(rb->error), rb->message);
    assert_true(rb->latency && rb->latency->queue_us > 100000);
    vlad__serve__infer_reply__free_unpacked(ra, NULL);
    vlad__serve__infer_reply__free_unpacked(rb, NULL);

    /* a full queue: at most one running + two waiting are taken, the rest is BUSY */
    enum { NB = 6 };
    sv_rawreq qs[NB];
    sv_obs os[NB];
    for (int i = 0; i < NB; i++) {
        make_obs(&os[i], 30 + i);
        sv_rawreq_of(&qs[i], &os[i], 200 + (uint64_t)i);
        sv_raw_send(&w, &qs[i].r);
    }
    int busy = 0, okn = 0;
    bool seen_ok = false;
    for (int i = 0; i < NB; i++) {
        Vlad__Serve__InferReply *x = sv_raw_recv(&w, 20000);
        if (x->error == VLAD__SERVE__ERROR_CODE__BUSY) {
            busy++;
            assert_false(seen_ok); /* answered at once, before any slow result */
        } else {
            assert_int_equal(x->error, VLAD__SERVE__ERROR_CODE__OK);
            seen_ok = true;
            okn++;
        }
        vlad__serve__infer_reply__free_unpacked(x, NULL);
    }
    fprintf(stderr, "test_serve: %d requests at once: %d served, %d BUSY\n", NB, okn, busy);
    assert_true(busy >= NB - 3);
    assert_true(okn >= 2 && okn <= 3);
    sv_raw_close(&w);
    const Vlad__Serve__ServeStatus *st = status_of(c, &r);
    assert_int_equal(st->late, 2);
    assert_int_equal(st->busy, busy);
    assert_int_equal(st->chunks, 1 + okn);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

/* A reply that comes after the client gave up on its request is dropped and counted, and
 * the next request gets its own reply. The server holds the first request 1.5 s (batch
 * wait) while the client waits 300 ms for it; the second request (waited for 20 s) joins the
 * same batch, so the first one's reply reaches the client before its own. */
static void test_stale_reply_dropped(void **state) {
    (void)state;
    sv_server s;
    const char *args[] = {"--batch-wait-us", "1500000", NULL};
    sv_serve_start(&s, sv_free_port(), "stale", args);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 300, NULL, NULL, "testbot", 0);
    vlad_serve_client_set_timeout(c, 5000);
    sv_wait_ready(&s, c, true); /* status replies come at once, without the batch wait */
    vlad_serve_client_set_timeout(c, 300);
    sv_obs o;
    vlad_serve_reply r;
    vlad_err e;
    make_obs(&o, 40);
    assert_int_equal(vlad_serve_client_infer(c, &o.req, &r, &e), VLAD_ETIMEOUT);
    assert_int_equal(r.code, -1);
    assert_non_null(strstr(e.msg, "no reply"));
    vlad_serve_client_set_timeout(c, 20000);
    make_obs(&o, 41);
    if (vlad_serve_client_infer(c, &o.req, &r, &e))
        fail_msg("second request: %s", e.msg);
    assert_chunk_is_local(&r, &o, NULL);
    assert_int_equal(r.obs_tick, o.req.obs_tick);
    vlad_serve_client_counters n;
    vlad_serve_client_counters_get(c, &n);
    assert_int_equal(n.timeouts, 1);
    assert_int_equal(n.dropped_stale, 1);
    assert_int_equal(n.replies, 2); /* the status and the second request */
    /* the server ran both */
    vlad_serve_client_set_timeout(c, 5000);
    const Vlad__Serve__ServeStatus *st = status_of(c, &r);
    assert_int_equal(st->chunks, 2);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

/* CURVE: the allowed key (the infer right) is served; a known key without the infer right
 * (observe, command: the daemon's own rights) is refused at the handshake like a key the
 * server does not know -- it gets nothing, status included; the client reports the refusal,
 * counts it and makes a new socket after the backoff, to be refused again. */
static void test_curve(void **state) {
    (void)state;
    char keys[160], srv[160], good[160], viewer[160], stranger[160], path[200];
    snprintf(keys, sizeof keys, "%s/clients", sv_dir);
    assert_int_equal(mkdir(keys, 0700), 0);
    snprintf(srv, sizeof srv, "%s/server", sv_dir);
    snprintf(good, sizeof good, "%s/daemon", sv_dir);
    snprintf(viewer, sizeof viewer, "%s/viewer", sv_dir);
    snprintf(stranger, sizeof stranger, "%s/stranger", sv_dir);
    vh_gen_key(srv, "vlad-serve", "", NULL);
    vh_gen_key(good, "daemon", "infer", keys);
    vh_gen_key(viewer, "viewer", "observe,publish,command", keys); /* all but infer */
    vh_gen_key(stranger, "stranger", "all", NULL);
    vlad_cert sc;
    snprintf(path, sizeof path, "%s.key", srv);
    assert_int_equal(vlad_cert_read(path, false, &sc, NULL), 0);
    char srv_secret[200], good_secret[200], viewer_secret[200], stranger_secret[200];
    snprintf(srv_secret, sizeof srv_secret, "%s.key_secret", srv);
    snprintf(good_secret, sizeof good_secret, "%s.key_secret", good);
    snprintf(viewer_secret, sizeof viewer_secret, "%s.key_secret", viewer);
    snprintf(stranger_secret, sizeof stranger_secret, "%s.key_secret", stranger);
    sv_server s;
    const char *args[] = {"--server-key", srv_secret, "--keys-dir", keys, NULL};
    sv_serve_start(&s, sv_free_port(), "curve", args);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 3000, sc.public_key, good_secret, "testbot", 0);
    sv_wait_ready(&s, c, true);
    sv_obs o;
    vlad_serve_reply r;
    vlad_err e;
    make_obs(&o, 50);
    if (vlad_serve_client_infer(c, &o.req, &r, &e))
        fail_msg("allowed key: %s", e.msg);
    assert_chunk_is_local(&r, &o, NULL);

    /* a key without the infer right, and a key the server does not know: nothing at all */
    const char *refused[2] = {viewer_secret, stranger_secret};
    const char *what[2] = {"key without the infer right", "unknown key"};
    for (int k = 0; k < 2; k++) {
        vlad_serve_client *x = sv_client_of(eps, 1, 1000, sc.public_key, refused[k], "testbot", 0);
        vlad_serve_client_counters n = {0};
        int calls = 0;
        for (; calls < 8 && !(n.refusals >= 2 && n.new_sockets >= 1); calls++) {
            vh_alive(&s.pid, "vlad-serve", s.log, "while refusing a key");
            int rc = k == 0 ? vlad_serve_client_status(x, &r, &e)
                            : vlad_serve_client_infer(x, &o.req, &r, &e);
            assert_int_equal(rc, VLAD_ETIMEOUT);
            assert_int_equal(r.code, -1);
            vlad_serve_client_counters_get(x, &n);
            if (n.refusals)
                assert_non_null(strstr(e.msg, "refused"));
        }
        fprintf(stderr, "test_serve: %s: %d calls, %llu refusals, %llu new sockets\n", what[k],
                calls, (unsigned long long)n.refusals, (unsigned long long)n.new_sockets);
        assert_true(n.refusals >= 2);
        assert_true(n.new_sockets >= 1);
        assert_int_equal(n.replies, 0);
        assert_int_equal(n.sent, 0); /* ZMQ_IMMEDIATE: never sent over a refused connection */
        vlad_serve_client_free(x);
    }

    const Vlad__Serve__ServeStatus *st = status_of(c, &r);
    assert_true(st->curve);
    assert_int_equal(st->client_keys, 2);
    assert_true(st->handshakes_refused >= 4);
    assert_int_equal(st->not_authorised, 0); /* the handshake refused them first */
    assert_int_equal(st->chunks, 1);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

/* The server killed (SIGKILL) and started again on the same port: the client times out
 * while it is gone, then reconnects by itself and is served again. */
static void test_restart(void **state) {
    (void)state;
    sv_server s;
    int port = sv_free_port();
    sv_serve_start(&s, port, "first", NULL);
    const char *eps[1] = {s.ep};
    vlad_serve_client *c = sv_client_of(eps, 1, 1000, NULL, NULL, "testbot", 0);
    vlad_serve_client_set_timeout(c, 3000);
    sv_wait_ready(&s, c, true);
    vlad_serve_client_set_timeout(c, 1000);
    sv_obs o;
    vlad_serve_reply r;
    vlad_err e;
    make_obs(&o, 60);
    if (vlad_serve_client_infer(c, &o.req, &r, &e))
        fail_msg("before the kill: %s", e.msg);
    assert_chunk_is_local(&r, &o, NULL);
    vlad_proc_kill(s.pid);
    s.pid = -1;
    make_obs(&o, 61);
    assert_int_equal(vlad_serve_client_infer(c, &o.req, &r, &e), VLAD_ETIMEOUT);
    assert_int_equal(r.code, -1);
    sv_serve_start(&s, port, "second", NULL);
    int rc = VLAD_ETIMEOUT, tries = 0;
    for (; tries < 60 && rc; tries++) {
        vh_alive(&s.pid, "vlad-serve", s.log, "after the restart");
        rc = vlad_serve_client_infer(c, &o.req, &r, &e);
        if (rc && rc != VLAD_ETIMEOUT)
            fail_msg("after the restart: %s", e.msg);
    }
    if (rc)
        fail_msg("no reply after the restart in %d tries: %s", tries, e.msg);
    assert_chunk_is_local(&r, &o, NULL);
    vlad_serve_client_counters n;
    vlad_serve_client_counters_get(c, &n);
    fprintf(stderr, "test_serve: restart: served again after %d tries; %llu timeouts, %llu "
            "reconnects, %llu disconnects\n", tries, (unsigned long long)n.timeouts,
            (unsigned long long)n.reconnects, (unsigned long long)n.disconnects);
    assert_true(n.timeouts >= 1);
    assert_true(n.reconnects >= 1);
    assert_true(n.disconnects >= 1);
    vlad_serve_client_free(c);
    sv_serve_stop(&s);
}

/* A hostile or broken server: every chunk the client would hand the daemon passes the one
 * reply check (wire.h): finite values, the model's horizon, the value count. */
static void test_hostile_replies(void **state) {
    (void)state;
    size_t n = (size_t)sv_cfg.chunk_size * (size_t)sv_cfg.action_dim;
    struct {
        const char *why, *field;
        int horizon;
        size_t n_actions;
        float poison; /* written into value 3 */
        int rc;
    } cases[] = {
        {"ok", "", sv_cfg.chunk_size, n, 0.f, VLAD_OK},
        {"NaN", "chunk.actions", sv_cfg.chunk_size, n, NAN, VLAD_EINVAL},
        {"Inf", "chunk.actions", sv_cfg.chunk_size, n, INFINITY, VLAD_EINVAL},
        {"short", "chunk.actions", sv_cfg.chunk_size, n - 1, 0.f, VLAD_EINVAL},
        {"other horizon", "chunk.horizon", sv_cfg.chunk_size - 1,
         (size_t)(sv_cfg.chunk_size - 1) * (size_t)sv_cfg.action_dim, 0.f, VLAD_ERANGE},
        {"zero horizon", "chunk.horizon", 0, 0, 0.f, VLAD_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *v = calloc(n, sizeof *v);
        assert_non_null(v);
        v[3] = cases[i].poison;
        Vlad__Serve__Chunk k = VLAD__SERVE__CHUNK__INIT;
        k.horizon = (uint32_t)cases[i].horizon;
        k.action_dim = (uint32_t)sv_cfg.action_dim;
        k.n_actions = cases[i].n_actions;
        k.actions = v;
        Vlad__Serve__InferReply r = VLAD__SERVE__INFER_REPLY__INIT;
        r.version = VLAD_SERVE_VERSION;
        r.request_id = 7;
        r.batch_size = 1;
        r.body_case = VLAD__SERVE__INFER_REPLY__BODY_CHUNK;
        r.chunk = &k;
        char field[64] = "";
        vlad_err e = {0};
        int rc = vlad_serve_check_reply(&r, &sv_dims, field, sizeof field, &e);
        printf("hostile reply '%s': rc %d, field '%s': %s\n", cases[i].why, rc, field, e.msg);
        assert_int_equal(rc, cases[i].rc);
        if (rc) /* the field, with its index where it has one ("chunk.actions[3]") */
            assert_int_equal(strncmp(field, cases[i].field, strlen(cases[i].field)), 0);
        free(v);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    vlad_blas_coretype_init(argv); /* the same OpenBLAS kernels as vlad-serve */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chunk_equals_local, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_batching, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_late_and_busy, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_stale_reply_dropped, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_curve, sv_setup, sv_teardown),
        cmocka_unit_test_setup_teardown(test_restart, sv_setup, sv_teardown),
        cmocka_unit_test(test_hostile_replies),
    };
    return cmocka_run_group_tests(tests, group_setup, sv_group_teardown);
}
