/* test_remote — the daemon's remote policy (daemon/remote_policy.h, policy.remote.*) against
 * the real vlad-serve on loopback with the default model, a scripted robot publishing
 * 64x64 camera images from here:
 *   lockstep: a daemon whose model runs on vlad-serve publishes the same Actions, tick by
 *     tick (targets, sources, chunk ids), as a daemon running the same checkpoint itself, on
 *     the same observations, instruction and scaled noise;
 *   policy.remote.images: jpeg in lockstep: the same sources and chunk ids, targets a small
 *     bounded distance from the local model's, requests several times smaller (Status);
 *   outage (wall clock): vlad-serve killed (SIGKILL) while the daemon acts -- the daemon holds
 *     (HOLD actions at one unchanging target, never a step over safety.max_delta_per_tick),
 *     reports the outage with ONE POLICY_DOWN event, counts the timeouts; vlad-serve started
 *     again on the same port -- the daemon reconnects and acts on new chunks, POLICY_UP;
 *   CURVE: a daemon key with the infer right starts (and `vlad --check` says ok); one without
 *     it is refused at the handshake: that daemon does not start and says why, naming the
 *     endpoint;
 *   late and duplicated replies: vlad-serve slower (--min-latency-ms) than the daemon waits
 *     (timeout x attempts, a resend): every reply comes after its request was given up and is
 *     dropped and counted (Status remote_dropped_stale, remote_timeouts), nothing installed,
 *     the daemon holds;
 *   chunks that arrive after all their ticks have passed (naive scheduling, a server slower
 *     than a chunk's length) are refused and counted (chunks_refused), never executed;
 *   fallback: with no server at start the daemon acts on the local policy.model (one
 *     POLICY_DOWN "degraded", remote_fallbacks counted); a server started later takes over
 *     (POLICY_UP, remote_up).
 * Nothing here is timed: every wait is for a condition, with limits far beyond what it needs. */
#include <math.h>
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

#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "harness.h"
#include "keys.h"
#include "proc.h"
#include "profile.h"

#define IMG (64 * 64 * 3)
#define MODEL "models/vlad-default.safetensors"
#define STEP 0.1 /* safety.max_delta_per_tick (and max_velocity / control_hz = 5 / 50) */

static char g_dir[64];
static pid_t g_daemon = -1, g_server = -1;
static bool g_passed;

static int setup(void **state) {
    (void)state;
    vh_tmpdir(g_dir, sizeof g_dir, "remote");
    g_passed = false;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vh_kill(&g_daemon);
    vh_kill(&g_server);
    vh_finish_dir(g_dir, g_passed, NULL);
    return 0;
}

/* ---- vlad-serve ---------------------------------------------------------------------------- */

typedef struct server {
    int port;
    char ep[64], log[200];
} server;

/* Start vlad-serve on s->port (extra: options, NULL-terminated). */
static void serve_start(server *s, const char *tag, const char *const *extra) {
    snprintf(s->ep, sizeof s->ep, "tcp://127.0.0.1:%d", s->port);
    snprintf(s->log, sizeof s->log, "%s/serve-%s.log", g_dir, tag);
    g_server = vh_start_serve(s->ep, MODEL, s->log, extra);
}

static void serve_stop(server *s) {
    int rc = vh_stop(&g_server, 20000);
    if (rc != 0) {
        vh_print_file(s->log, 100);
        fail_msg("vlad-serve exited with %d after SIGTERM", rc);
    }
}

/* ---- the daemon ------------------------------------------------------------------------------ */

typedef struct daemon_run {
    char prof[200], log[200];
    vh_sets sets;
    vlad_profile p;
} daemon_run;

/* The profile: sim-arm's joints and camera, private ipc endpoints, then the overrides. */
static void daemon_prepare(daemon_run *d, const char *tag) {
    snprintf(d->prof, sizeof d->prof, "%s/%s.yaml", g_dir, tag);
    snprintf(d->log, sizeof d->log, "%s/vlad-%s.log", g_dir, tag);
    vh_write_file(d->prof,
                  "robot: remotebot\ncontrol_hz: 50\n" VH_SIM_ARM_JOINTS
                  "safety: {watchdog_ms: 5000, max_delta_per_tick: %g}\n"
                  "async: {mode: vlash, execution_horizon: 10, trigger_threshold: 5}\n"
                  "lang: {max_streams: 0}\n",
                  STEP);
    d->sets.n = 0;
    vh_sets_private(&d->sets, g_dir);
}

static void set(daemon_run *d, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set(daemon_run *d, const char *key, const char *fmt, ...) {
    char v[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    vh_sets_add(&d->sets, key, v);
}

/* Start `vlad` on d (prog args: --set for each override, then extra). */
static pid_t daemon_start(daemon_run *d, const char *const *extra) {
    vh_load_profile(&d->p, d->prof);
    vh_sets_apply(&d->sets, &d->p);
    const char *args[64];
    int n = vh_sets_args(&d->sets, args, 0);
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return vh_start("vlad", d->prof, d->log, args);
}

/* A client of d (flags | CONTROL), once the daemon answers. */
static vlad_client *daemon_client(daemon_run *d, unsigned flags) {
    vlad_err err;
    vlad_client *c = vlad_client_new(&d->p, flags | VLAD_CLIENT_CONTROL, &err);
    if (!c)
        fail_msg("client: %s", err.msg);
    Vlad__Status *st = vh_wait_status(c, 500, 480, &g_daemon, d->log);
    if (!st) {
        vh_print_file(d->log, 100);
        fail_msg("the daemon never answered");
    }
    vlad__status__free_unpacked(st, NULL);
    return c;
}

static Vlad__Status *status(vlad_client *c) {
    Vlad__Status *st = vh_status(c, 10000);
    if (!st)
        fail_msg("no status");
    return st;
}

static void daemon_stop(daemon_run *d) {
    int rc = vh_stop(&g_daemon, 30000);
    if (rc != 0) {
        vh_print_file(d->log, 100);
        fail_msg("vlad exited with %d after SIGTERM", rc);
    }
}

/* ---- the robot ------------------------------------------------------------------------------- */

typedef struct robot {
    double pos[VLAD_MAX_JOINTS];
    uint8_t img[2][IMG];
    int64_t tick;
} robot;

static void robot_init(robot *r, const vlad_profile *p) {
    memset(r, 0, sizeof *r);
    for (int j = 0; j < p->n_joints; j++)
        r->pos[j] = p->joints[j].home;
    for (int y = 0; y < 64; y++) /* a red ball, then a blue block (test_record's scenes) */
        for (int x = 0; x < 64; x++) {
            uint8_t *a = r->img[0] + (y * 64 + x) * 3, *b = r->img[1] + (y * 64 + x) * 3;
            bool ball = (x - 20) * (x - 20) + (y - 40) * (y - 40) < 36;
            a[0] = ball ? 220 : 128, a[1] = ball ? 30 : 128, a[2] = ball ? 30 : 128;
            bool blk = x > 36 && x < 48 && y > 16 && y < 28;
            b[0] = blk ? 30 : 120, b[1] = blk ? 30 : 120, b[2] = blk ? 220 : 120;
        }
}

/* The observation of r's tick (pointing into r and the caller's storage). */
static void robot_obs(robot *r, const vlad_profile *p, Vlad__Observation *o, Vlad__CameraImage *ci,
                      Vlad__CameraImage **cis) {
    *o = (Vlad__Observation)VLAD__OBSERVATION__INIT;
    *ci = (Vlad__CameraImage)VLAD__CAMERA_IMAGE__INIT;
    ci->name = (char *)p->cameras[0].name;
    ci->width = ci->height = 64;
    ci->encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci->data.data = r->img[(r->tick / 30) % 2];
    ci->data.len = IMG;
    ci->tick = r->tick;
    cis[0] = ci;
    o->tick = r->tick;
    o->stamp_ns = vlad_now_ns();
    o->n_joint_pos = (size_t)p->n_joints;
    o->joint_pos = r->pos;
    o->n_images = 1;
    o->images = cis;
}

/* The robot tracks each target halfway per tick. */
static void robot_follow(robot *r, const double *target, int n) {
    for (int j = 0; j < n; j++)
        r->pos[j] += 0.5 * (target[j] - r->pos[j]);
}

/* ---- (a) lockstep: remote == local ------------------------------------------------------------ */

#define LS_TICKS 90

typedef struct act {
    int source;
    uint64_t chunk_id;
    double q[VLAD_MAX_JOINTS];
} act;

static uint64_t g_req_bytes; /* the last lockstep run's Status: remote_request_bytes */
static double g_encode_us;   /* ... and remote_encode_us */

/* Drive a lockstep daemon for LS_TICKS ticks; its Actions into out. */
static void lockstep_run(daemon_run *d, act *out, uint64_t *chunks) {
    g_daemon = daemon_start(d, NULL);
    vlad_client *c = daemon_client(d, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_PUBLISH);
    static robot r;
    robot_init(&r, &d->p);
    for (r.tick = 0; r.tick < LS_TICKS; r.tick++) {
        Vlad__Observation o;
        Vlad__CameraImage ci, *cis[1];
        robot_obs(&r, &d->p, &o, &ci, cis);
        Vlad__Action *a;
        vlad_err err;
        if (vlad_client_lockstep(c, &o, 60000, 200, NULL, NULL, &a, &err)) {
            vh_print_file(d->log, 100);
            fail_msg("tick %lld: %s", (long long)r.tick, err.msg);
        }
        act *x = &out[r.tick];
        x->source = a->source;
        x->chunk_id = a->chunk_id;
        for (size_t j = 0; j < a->n_joint_targets && j < VLAD_MAX_JOINTS; j++)
            x->q[j] = a->joint_targets[j];
        robot_follow(&r, x->q, d->p.n_joints);
        vlad__action__free_unpacked(a, NULL);
    }
    Vlad__Status *st = status(c);
    *chunks = st->chunks_installed;
    g_req_bytes = st->remote_request_bytes;
    g_encode_us = st->remote_encode_us;
    if (st->remote_endpoints && st->remote_endpoints[0])
        fprintf(stderr, "test_remote: lockstep remote: %llu sent, %llu replies, %llu timeouts, "
                "%llu stale\n", (unsigned long long)st->remote_requests,
                (unsigned long long)st->remote_replies, (unsigned long long)st->remote_timeouts,
                (unsigned long long)st->remote_dropped_stale);
    vlad__status__free_unpacked(st, NULL);
    vlad_client_free(c);
    daemon_stop(d);
}

static void lockstep_sets(daemon_run *d, const char *tag) {
    daemon_prepare(d, tag);
    set(d, "clock", "lockstep");
    set(d, "lockstep_timeout_ms", "60000"); /* a sanitizer build infers slowly: never a stale tick */
    set(d, "policy.noise_scale", "0.5");   /* the remote policy sends the scaled noise itself */
    set(d, "policy.instruction", "touch the red ball");
}

static void test_lockstep_equals_local(void **state) {
    (void)state;
    static act local[LS_TICKS], remote[LS_TICKS];
    uint64_t chunks_local, chunks_remote;
    daemon_run d;
    lockstep_sets(&d, "local");
    set(&d, "policy.model", "%s/%s", vh_src_dir(), MODEL);
    lockstep_run(&d, local, &chunks_local);

    server s;
    vh_free_ports(&s.port, 1);
    serve_start(&s, "lockstep", NULL);
    lockstep_sets(&d, "remote");
    set(&d, "policy.remote.endpoints", "%s", s.ep);
    set(&d, "policy.remote.start_timeout_ms", "120000"); /* vlad-serve loads its model first */
    set(&d, "policy.remote.timeout_ms", "30000");
    lockstep_run(&d, remote, &chunks_remote);
    serve_stop(&s);

    int policy = 0;
    double worst = 0;
    for (int t = 0; t < LS_TICKS; t++) {
        if (local[t].source != remote[t].source || local[t].chunk_id != remote[t].chunk_id)
            fail_msg("tick %d: local source %d chunk %llu, remote source %d chunk %llu", t,
                     local[t].source, (unsigned long long)local[t].chunk_id, remote[t].source,
                     (unsigned long long)remote[t].chunk_id);
        double dq = vh_maxdiff(local[t].q, remote[t].q, 4);
        if (dq > worst)
            worst = dq;
        policy += local[t].source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
    }
    fprintf(stderr, "test_remote: lockstep: %d ticks, %d policy actions, %llu chunks; max |remote "
            "- local| = %g\n", LS_TICKS, policy, (unsigned long long)chunks_local, worst);
    assert_true(policy >= LS_TICKS / 2);
    assert_int_equal(chunks_local, chunks_remote);
    assert_true(chunks_local >= 5);
    assert_true(worst <= 1e-4); /* the served chunk is the engine's (in practice bit-identical) */
    g_passed = true;
}

/* policy.remote.images: jpeg drives a lockstep run: the same ticks, sources and chunk ids as a
 * local model, targets a small bounded distance away (the model sees the decoded JPEG), and
 * Status reports requests several times smaller than raw ones, and the encoding time. */
static void test_lockstep_jpeg(void **state) {
    (void)state;
    static act local[LS_TICKS], remote[LS_TICKS];
    uint64_t chunks_local, chunks_remote;
    daemon_run d;
    lockstep_sets(&d, "local");
    set(&d, "policy.model", "%s/%s", vh_src_dir(), MODEL);
    lockstep_run(&d, local, &chunks_local);

    server s;
    vh_free_ports(&s.port, 1);
    serve_start(&s, "jpeg", NULL);
    lockstep_sets(&d, "jpeg");
    set(&d, "policy.remote.endpoints", "%s", s.ep);
    set(&d, "policy.remote.start_timeout_ms", "120000");
    set(&d, "policy.remote.timeout_ms", "30000");
    set(&d, "policy.remote.images", "jpeg");
    set(&d, "policy.remote.jpeg_quality", "90");
    lockstep_run(&d, remote, &chunks_remote);
    serve_stop(&s);

    double worst = 0;
    int policy = 0;
    for (int t = 0; t < LS_TICKS; t++) {
        if (local[t].source != remote[t].source || local[t].chunk_id != remote[t].chunk_id)
            fail_msg("tick %d: local source %d chunk %llu, jpeg source %d chunk %llu", t,
                     local[t].source, (unsigned long long)local[t].chunk_id, remote[t].source,
                     (unsigned long long)remote[t].chunk_id);
        worst = fmax(worst, vh_maxdiff(local[t].q, remote[t].q, 4));
        policy += local[t].source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
    }
    fprintf(stderr, "test_remote: lockstep jpeg q90: %d policy actions, %llu chunks; max |jpeg - "
            "local| = %g rad; %llu bytes per request (raw: %d pixels' bytes alone), encoding "
            "%.1f us\n", policy, (unsigned long long)chunks_remote, worst,
            (unsigned long long)g_req_bytes, IMG, g_encode_us);
    assert_int_equal(chunks_local, chunks_remote);
    assert_true(policy >= LS_TICKS / 2);
    assert_true(worst <= 0.05);              /* small and bounded, the safety gate's step is 0.1 */
    assert_true(g_req_bytes > 0 && g_req_bytes * 2 < IMG);
    assert_true(g_encode_us > 0);
    g_passed = true;
}

/* ---- a wall-clock robot ------------------------------------------------------------------------ */

typedef struct wall {
    daemon_run *d;
    vlad_client *c;
    robot r;
    bool have_prev;
    int64_t prev_tick;
    double prev_q[VLAD_MAX_JOINTS];
    double max_step;       /* the largest change between Actions of consecutive ticks */
    uint64_t policy, hold; /* actions by source */
    uint64_t max_chunk;    /* the newest chunk id acted on */
    int down, up, refused; /* POLICY_DOWN, POLICY_UP, CHUNK_REFUSED events */
    /* the outage, told by the events (they travel in tick order with the actions): between
     * the first POLICY_DOWN and the first POLICY_UP, and after that */
    uint64_t holds_down, policy_up;
    bool have_held;
    double held[VLAD_MAX_JOINTS], hold_drift; /* the first HOLD target of the outage; the
                                                 largest move of a later HOLD from it */
    int64_t status_at;     /* the last Status read (wall_until's condition) */
} wall;

static void on_action(wall *w, const Vlad__Action *a) {
    int n = w->d->p.n_joints;
    double q[VLAD_MAX_JOINTS] = {0};
    for (int j = 0; j < n && j < (int)a->n_joint_targets; j++)
        q[j] = a->joint_targets[j];
    if (w->have_prev && a->tick == w->prev_tick + 1) {
        double dq = vh_maxdiff(q, w->prev_q, n);
        if (dq > w->max_step)
            w->max_step = dq;
    }
    if (!w->have_prev || a->tick > w->prev_tick) {
        w->have_prev = true;
        w->prev_tick = a->tick;
        memcpy(w->prev_q, q, sizeof q);
        robot_follow(&w->r, q, n);
    }
    if (a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY) {
        w->policy++;
        if (a->chunk_id > w->max_chunk)
            w->max_chunk = a->chunk_id;
        if (w->up)
            w->policy_up++;
    } else if (a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD) {
        w->hold++;
        if (w->down && !w->up) {
            w->holds_down++;
            if (!w->have_held) {
                w->have_held = true;
                memcpy(w->held, q, sizeof q);
            }
            double dq = vh_maxdiff(q, w->held, n);
            if (dq > w->hold_drift)
                w->hold_drift = dq;
        }
    }
}

/* One tick of the robot: an observation, then what arrives within 20 ms. */
static void wall_tick(wall *w) {
    Vlad__Observation o;
    Vlad__CameraImage ci, *cis[1];
    robot_obs(&w->r, &w->d->p, &o, &ci, cis);
    vlad_err err;
    if (vlad_client_publish_observation(w->c, &o, &err))
        fail_msg("publish: %s", err.msg);
    w->r.tick++;
    int64_t until = vlad_now_ns() + 20 * VLAD_NS_PER_MS;
    for (;;) {
        int64_t left = (until - vlad_now_ns()) / VLAD_NS_PER_MS;
        vlad_msg m;
        if (vlad_client_recv(w->c, left > 0 ? (int)left : 0, &m, &err) != VLAD_OK)
            break;
        if (m.kind == VLAD_MSG_ACTION)
            on_action(w, m.u.action);
        else if (m.kind == VLAD_MSG_EVENT) {
            const Vlad__Event *e = m.u.event;
            if (e->kind == VLAD__EVENT__KIND__POLICY_DOWN)
                w->down++;
            else if (e->kind == VLAD__EVENT__KIND__POLICY_UP)
                w->up++;
            else if (e->kind == VLAD__EVENT__KIND__CHUNK_REFUSED)
                w->refused++;
            if (e->kind == VLAD__EVENT__KIND__POLICY_DOWN || e->kind == VLAD__EVENT__KIND__POLICY_UP)
                fprintf(stderr, "test_remote: event at tick %lld: %s\n", (long long)e->tick,
                        e->message);
        }
        vlad_msg_clear(&m);
        if (vlad_now_ns() >= until)
            break;
    }
}

/* Tick until done(w, st) (st: a Status read at most once a second, NULL in between) or
 * limit_s pass; fails the test, saying `what`, if it never is. */
static void wall_until(wall *w, bool (*done)(wall *, const Vlad__Status *), int limit_s,
                       const char *what) {
    int64_t end = vlad_now_ns() + (int64_t)limit_s * VLAD_NS_PER_S;
    while (vlad_now_ns() < end) {
        vh_alive(&g_daemon, "vlad", w->d->log, what);
        wall_tick(w);
        Vlad__Status *st = NULL;
        if (vlad_now_ns() - w->status_at > VLAD_NS_PER_S) {
            w->status_at = vlad_now_ns();
            st = vh_status(w->c, 2000);
        }
        bool ok = done(w, st);
        if (st)
            vlad__status__free_unpacked(st, NULL);
        if (ok)
            return;
    }
    vh_print_file(w->d->log, 60);
    fail_msg("%s: not within %d s (policy %llu, hold %llu, down %d, up %d, refused %d)", what,
             limit_s, (unsigned long long)w->policy, (unsigned long long)w->hold, w->down, w->up,
             w->refused);
}

static void wall_start(wall *w, daemon_run *d) {
    memset(w, 0, sizeof *w);
    w->d = d;
    g_daemon = daemon_start(d, NULL);
    w->c = daemon_client(d, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_EVENTS | VLAD_CLIENT_PUBLISH);
    robot_init(&w->r, &d->p);
}

static void wall_sets(daemon_run *d, const char *tag, const server *s) {
    daemon_prepare(d, tag);
    set(d, "clock", "wall");
    set(d, "policy.remote.endpoints", "%s", s->ep);
    set(d, "policy.remote.start_timeout_ms", "120000");
}

/* ---- (b) the server killed and started again --------------------------------------------------- */

static bool acting(wall *w, const Vlad__Status *st) { (void)st; return w->policy >= 25; }
static bool holding(wall *w, const Vlad__Status *st) {
    (void)st;
    return w->down >= 1 && w->holds_down >= 25;
}
static bool resumed(wall *w, const Vlad__Status *st) {
    (void)st;
    return w->up >= 1 && w->policy_up >= 10;
}

static void test_outage_holds_and_resumes(void **state) {
    (void)state;
    server s;
    vh_free_ports(&s.port, 1);
    serve_start(&s, "first", NULL);
    daemon_run d;
    wall_sets(&d, "outage", &s);
    set(&d, "policy.remote.timeout_ms", "3000"); /* far above an inference, sanitizers too */
    static wall w;
    wall_start(&w, &d);
    wall_until(&w, acting, 60, "policy actions before the kill");
    assert_int_equal(w.down, 0);

    vlad_proc_kill(g_server); /* SIGKILL: no goodbye */
    g_server = -1;
    wall_until(&w, holding, 60, "holding after the kill");
    Vlad__Status *st = status(w.c);
    fprintf(stderr, "test_remote: outage: %llu holds at one target (drift %g), %llu timeouts, up "
            "%d, last error: %s\n", (unsigned long long)w.holds_down, w.hold_drift,
            (unsigned long long)st->remote_timeouts, st->remote_up, st->remote_last_error);
    assert_true(st->remote_timeouts >= 1);
    assert_true(st->inference_errors >= 1);
    assert_false(st->remote_up);
    assert_non_null(strstr(st->remote_last_error, s.ep));
    assert_int_equal(st->mode, VLAD__MODE__MODE_RUNNING); /* the robot is fresh: a policy hold */
    vlad__status__free_unpacked(st, NULL);

    serve_start(&s, "second", NULL); /* the same port */
    wall_until(&w, resumed, 90, "policy actions after the restart");
    st = status(w.c);
    fprintf(stderr, "test_remote: resumed: %llu new policy actions; %llu reconnects, %llu sent, "
            "%llu replies, %llu timeouts; max step %g\n",
            (unsigned long long)w.policy_up, (unsigned long long)st->remote_reconnects,
            (unsigned long long)st->remote_requests, (unsigned long long)st->remote_replies,
            (unsigned long long)st->remote_timeouts, w.max_step);
    assert_true(st->remote_up);
    assert_true(st->remote_reconnects >= 1);
    assert_string_equal(st->remote_endpoints, s.ep);
    vlad__status__free_unpacked(st, NULL);
    assert_int_equal(w.down, 1); /* one event for the whole outage, however many retries */
    assert_int_equal(w.up, 1);
    assert_true(w.hold_drift == 0);          /* held exactly */
    assert_true(w.max_step <= STEP + 1e-9);  /* never a jump, policy or hold */
    vlad_client_free(w.c);
    daemon_stop(&d);
    serve_stop(&s);
    assert_true(vh_file_has(d.log, "inference failed"));
    g_passed = true;
}

/* ---- (c) CURVE: the infer right ------------------------------------------------------------------ */

static void test_curve_infer_right(void **state) {
    (void)state;
    char keys[200], srv[200], good[200], bad[200], path[260];
    snprintf(keys, sizeof keys, "%s/serve-clients", g_dir);
    assert_int_equal(mkdir(keys, 0700), 0);
    snprintf(srv, sizeof srv, "%s/serve", g_dir);
    snprintf(good, sizeof good, "%s/arm", g_dir);
    snprintf(bad, sizeof bad, "%s/operator", g_dir);
    vh_gen_key(srv, "vlad-serve", "", NULL);
    vh_gen_key(good, "arm", "infer", keys);
    vh_gen_key(bad, "operator", "observe,publish,command", keys); /* all but infer */
    server s;
    vh_free_ports(&s.port, 1);
    snprintf(path, sizeof path, "%s.key_secret", srv);
    const char *args[] = {"--server-key", path, "--keys-dir", keys, NULL};
    serve_start(&s, "curve", args);

    /* the key with the infer right: the daemon starts (it waits for the server's status) */
    daemon_run d;
    daemon_prepare(&d, "curve-good");
    set(&d, "clock", "lockstep");
    set(&d, "policy.remote.endpoints", "%s", s.ep);
    set(&d, "policy.remote.server_key", "%s.key", srv);
    set(&d, "policy.remote.client_key", "%s.key_secret", good);
    set(&d, "policy.remote.start_timeout_ms", "120000");
    g_daemon = daemon_start(&d, NULL);
    vlad_client *c = daemon_client(&d, 0);
    Vlad__Status *st = status(c);
    assert_true(st->remote_up);
    assert_int_equal(st->remote_refusals, 0);
    vlad__status__free_unpacked(st, NULL);
    vlad_client_free(c);
    daemon_stop(&d);
    assert_true(vh_file_has(d.log, "policy: remote: vlad-serve"));
    /* ... and `vlad --check` asks the server too */
    const char *chk[] = {"--check", NULL};
    g_daemon = daemon_start(&d, chk);
    assert_int_equal(vlad_proc_wait(g_daemon, 120000), 0);
    g_daemon = -1;
    assert_true(vh_file_has(d.log, ": ok (robot remotebot"));
    assert_true(vh_file_has(d.log, "remote: vlad-serve tcp://127.0.0.1:"));

    /* without it: refused at the handshake, the daemon does not start and says why */
    daemon_prepare(&d, "curve-bad");
    set(&d, "clock", "lockstep");
    set(&d, "policy.remote.endpoints", "%s", s.ep);
    set(&d, "policy.remote.server_key", "%s.key", srv);
    set(&d, "policy.remote.client_key", "%s.key_secret", bad);
    set(&d, "policy.remote.start_timeout_ms", "4000");
    g_daemon = daemon_start(&d, NULL);
    int rc = vlad_proc_wait(g_daemon, 120000);
    g_daemon = -1;
    char *log = vh_slurp(d.log, NULL);
    assert_non_null(log);
    fprintf(stderr, "test_remote: a key without the infer right: exit %d\n%s", rc, log);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(log, "no vlad-serve answered"));
    assert_non_null(strstr(log, s.ep));
    assert_non_null(strstr(log, "refused this daemon's key at the handshake"));
    assert_non_null(strstr(log, "infer right"));
    free(log);
    serve_stop(&s);
    g_passed = true;
}

/* ---- (d) late and duplicated replies -------------------------------------------------------------- */

static bool stale_counted(wall *w, const Vlad__Status *st) {
    (void)w;
    return st && st->remote_dropped_stale >= 3 && st->remote_timeouts >= 3;
}

static void test_late_and_duplicate_replies_dropped(void **state) {
    (void)state;
    server s;
    vh_free_ports(&s.port, 1);
    /* every result 1 s after its batch started; the daemon waits 2 x 300 ms (one resend, the
     * same request id: a duplicate) and gives up: each reply comes for a request given up */
    const char *slow[] = {"--min-latency-ms", "1000", NULL};
    serve_start(&s, "slow", slow);
    daemon_run d;
    wall_sets(&d, "late", &s);
    set(&d, "policy.remote.timeout_ms", "300");
    set(&d, "policy.remote.attempts", "2");
    static wall w;
    wall_start(&w, &d);
    wall_until(&w, stale_counted, 60, "late replies dropped and counted");
    Vlad__Status *st = status(w.c);
    fprintf(stderr, "test_remote: late: %llu sent, %llu replies, %llu stale dropped, %llu "
            "timeouts, %llu errors; %llu chunks\n", (unsigned long long)st->remote_requests,
            (unsigned long long)st->remote_replies, (unsigned long long)st->remote_dropped_stale,
            (unsigned long long)st->remote_timeouts, (unsigned long long)st->remote_errors,
            (unsigned long long)st->chunks_installed);
    assert_true(st->remote_requests >= 2 * st->remote_timeouts); /* each one resent */
    assert_int_equal(st->chunks_installed, 0);
    assert_false(st->remote_up);
    vlad__status__free_unpacked(st, NULL);
    assert_int_equal(w.policy, 0); /* nothing late was acted on: the daemon held */
    assert_true(w.hold > 0);
    assert_int_equal(w.down, 1);
    assert_int_equal(w.up, 0);
    assert_true(w.max_step <= STEP + 1e-9);
    vlad_client_free(w.c);
    daemon_stop(&d);
    serve_stop(&s);
    g_passed = true;
}

/* ---- (e) a chunk whose ticks have all passed ----------------------------------------------------- */

static bool refused_counted(wall *w, const Vlad__Status *st) {
    return w->refused >= 2 && st && st->chunks_refused >= 2;
}

static void test_late_chunk_refused(void **state) {
    (void)state;
    server s;
    vh_free_ports(&s.port, 1);
    /* 700 ms per chunk; naive places a chunk at its observation's tick and keeps at most its
     * 26 ticks (520 ms at 50 Hz): all of them have passed when it arrives */
    const char *slow[] = {"--min-latency-ms", "700", NULL};
    serve_start(&s, "late-chunk", slow);
    daemon_run d;
    wall_sets(&d, "late-chunk", &s);
    set(&d, "async.mode", "naive");
    set(&d, "policy.remote.timeout_ms", "20000");
    static wall w;
    wall_start(&w, &d);
    wall_until(&w, refused_counted, 60, "late chunks refused");
    Vlad__Status *st = status(w.c);
    fprintf(stderr, "test_remote: late chunks: %llu refused, %llu installed, %llu replies\n",
            (unsigned long long)st->chunks_refused, (unsigned long long)st->chunks_installed,
            (unsigned long long)st->remote_replies);
    assert_int_equal(st->chunks_installed, 0);
    assert_true(st->remote_up); /* the server answers: the chunks are just too late */
    assert_int_equal(st->remote_timeouts, 0);
    vlad__status__free_unpacked(st, NULL);
    assert_int_equal(w.policy, 0);
    assert_int_equal(w.down, 0);
    vlad_client_free(w.c);
    daemon_stop(&d);
    serve_stop(&s);
    g_passed = true;
}

/* ---- (f) the fallback: policy.model while no server answers --------------------------------------- */

static bool degraded_acting(wall *w, const Vlad__Status *st) {
    return w->policy >= 25 && w->down >= 1 && st && st->remote_fallbacks >= 2;
}

static void test_fallback_then_server(void **state) {
    (void)state;
    server s;
    vh_free_ports(&s.port, 1); /* nothing there yet */
    snprintf(s.ep, sizeof s.ep, "tcp://127.0.0.1:%d", s.port);
    daemon_run d;
    wall_sets(&d, "fallback", &s);
    set(&d, "policy.remote.start_timeout_ms", "1000");
    set(&d, "policy.remote.timeout_ms", "3000");
    set(&d, "policy.remote.fallback", "true");
    set(&d, "policy.model", "%s/%s", vh_src_dir(), MODEL);
    static wall w;
    wall_start(&w, &d);
    wall_until(&w, degraded_acting, 60, "acting on the fallback model");
    Vlad__Status *st = status(w.c);
    fprintf(stderr, "test_remote: fallback: %llu policy actions, %llu fallback inferences, %llu "
            "timeouts\n", (unsigned long long)w.policy, (unsigned long long)st->remote_fallbacks,
            (unsigned long long)st->remote_timeouts);
    assert_false(st->remote_up);
    assert_int_equal(st->inference_errors, 0); /* degraded, not failed */
    vlad__status__free_unpacked(st, NULL);

    serve_start(&s, "late-start", NULL);
    wall_until(&w, resumed, 90, "the servers taking over");
    st = status(w.c);
    uint64_t fb = st->remote_fallbacks;
    fprintf(stderr, "test_remote: served again: %llu replies, %llu fallbacks in all\n",
            (unsigned long long)st->remote_replies, (unsigned long long)fb);
    assert_true(st->remote_up);
    assert_true(st->remote_replies >= 2); /* its model asked for, then a chunk */
    vlad__status__free_unpacked(st, NULL);
    assert_int_equal(w.down, 1);
    assert_int_equal(w.up, 1);
    assert_true(w.max_step <= STEP + 1e-9);
    vlad_client_free(w.c);
    daemon_stop(&d);
    serve_stop(&s);
    assert_true(vh_file_has(d.log, "starting on the fallback policy.model")); /* (log flushed) */
    g_passed = true;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lockstep_equals_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockstep_jpeg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_holds_and_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_curve_infer_right, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_and_duplicate_replies_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_chunk_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_then_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
