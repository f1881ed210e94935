/* The control thread's tick, driven directly: no target before the robot reports, an anchor
 * at its first report, policy actions through the gate, stalls, watchdog, e-stop ordering and
 * its hold, reset and robot restart, a persisted latch; and a malloc-counting run of the tick
 * in every clock and async mode with a faulty synthetic policy. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "clock.h"
#include "control.h"
#include "alloc_count.h"
#include "synthetic.h"
#include "vlad.pb-c.h"

/* allocations are counted on this thread while vlad_alloc_counting is set (alloc_count.h);
 * the control tick runs on the test's thread */

static vlad_profile prof;
static vlad_shared sh;
static vlad_control ctl;
static const int64_t MS = 1000000;
static uint64_t obs_count;

static void shared_up(const vlad_profile *p) {
    memset(&sh, 0, sizeof sh);
    sh.p = p;
    sh.obs = vlad_latest_new(sizeof(vlad_obs_state), NULL);
    sh.frames = vlad_frames_new(12, NULL);
    sh.out = vlad_spsc_new(sizeof(vlad_out_rec), 1024, NULL);
    sh.chunks = vlad_spsc_new(sizeof(vlad_chunk_rec), 8, NULL);
    sh.wake_fd = eventfd(0, EFD_NONBLOCK);
    sh.obs_fd = eventfd(0, EFD_NONBLOCK);
    sh.req_fd = eventfd(0, EFD_NONBLOCK);
    pthread_mutex_init(&sh.text_mu, NULL);
    obs_count = 0;
}

static void shared_down(void) {
    vlad_latest_free(sh.obs);
    vlad_frames_free(sh.frames);
    vlad_spsc_free(sh.out);
    vlad_spsc_free(sh.chunks);
    close(sh.wake_fd);
    close(sh.obs_fd);
    close(sh.req_fd);
    pthread_mutex_destroy(&sh.text_mu);
}

static int setup(void **state) {
    (void)state;
    const char *y = "robot: r\ncontrol_hz: 100\nsafety: {max_delta_per_tick: 0.1, watchdog_ms: 50}\n"
                    "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 100, home: 0.5}\n"
                    "  - {name: b, min: -1, max: 1, max_velocity: 100, home: -0.5}\n";
    vlad_err err;
    if (vlad_profile_load_string(&prof, y, strlen(y), "c.yaml", &err))
        fail_msg("%s", err.msg);
    shared_up(&prof);
    assert_int_equal(vlad_control_init(&ctl, &sh, NULL), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    shared_down();
    return 0;
}

/* what io does with a valid observation */
static void feed_obs(int64_t robot_tick, double a, double b, int64_t recv_ns) {
    vlad_obs_state *o = vlad_latest_write_buf(sh.obs);
    memset(o, 0, sizeof *o);
    o->count = ++obs_count;
    o->reset_seq = atomic_load(&sh.reset_req);
    o->robot_tick = robot_tick;
    o->recv_ns = recv_ns;
    o->pos[0] = a;
    o->pos[1] = b;
    vlad_latest_publish(sh.obs);
}

#define EV(k) (1 << (k))

/* step; *events gets a mask EV(kind) of the events emitted; returns whether an Action was
 * published (into *act) */
static bool step_any(int64_t tick, int64_t now, int *events, vlad_out_rec *act) {
    vlad_control_step(&ctl, tick, now, now);
    vlad_out_rec r;
    bool got = false;
    *events = 0;
    while (vlad_spsc_pop(sh.out, &r)) {
        if (r.kind == VLAD_OUT_EVENT) {
            *events |= EV(r.event_kind);
        } else if (r.kind == VLAD_OUT_ACTION) {
            assert_false(got); /* one per tick */
            *act = r;
            got = true;
        }
    }
    return got;
}

static vlad_out_rec step(int64_t tick, int64_t now, int *events) {
    vlad_out_rec act;
    memset(&act, 0, sizeof act);
    if (!step_any(tick, now, events, &act))
        fail_msg("no Action for tick %lld", (long long)tick);
    assert_int_equal(act.tick, tick);
    return act;
}

static void test_control_sequence(void **state) {
    (void)state;
    int ev;
    int64_t now = 1000 * MS;
    vlad_out_rec r;
    /* 1. no observation: no target at all (not even home), mode waiting */
    assert_false(step_any(0, now, &ev, &r));
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_WAITING);

    /* 2. the robot reports from elsewhere: the first target is exactly there, an anchor */
    feed_obs(500, 0.2, 0.3, now);
    r = step(1, now + 10 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    assert_true(r.anchored);
    assert_true(r.target[0] == 0.2 && r.target[1] == 0.3);
    assert_int_equal(r.robot_tick, 500);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_RUNNING);

    /* 3. a policy chunk: rate-limited to 0.1 per tick, clamped flag, ids carried */
    ctl.policy_active = true;
    vlad_chunk c;
    memset(&c, 0, sizeof c);
    c.id = 42, c.start_tick = 2, c.obs_tick = 1, c.obs_robot_tick = 500, c.len = 3, c.dim = 2;
    float vals[6] = {0.25f, 0.3f, 0.9f, 0.3f, 5.0f, 0.3f};
    memcpy(c.values, vals, sizeof vals);
    assert_int_equal(vlad_aq_push(&ctl.queue, &c, NULL), 0);
    feed_obs(501, 0.2, 0.3, now + 20 * MS);
    r = step(2, now + 20 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY);
    assert_int_equal(r.chunk_id, 42);
    assert_int_equal(r.obs_tick, 1);
    assert_int_equal(r.obs_robot_tick, 500);
    assert_false(r.clamped);
    assert_false(r.anchored);
    assert_true(r.target[0] == 0.25f);
    r = step(3, now + 30 * MS, &ev);
    assert_true(r.clamped);
    assert_true(r.target[0] > 0.3499 && r.target[0] < 0.3501); /* 0.25 + 0.1 */
    r = step(4, now + 40 * MS, &ev);
    assert_true(r.target[0] > 0.4499 && r.target[0] < 0.4501); /* toward 5.0, rate-limited */
    assert_int_equal(atomic_load(&sh.clamped_actions), 2);

    /* 4. chunk exhausted while a policy is active: hold, counted as a stall, one event */
    feed_obs(504, 0.4, 0.3, now + 45 * MS);
    r = step(5, now + 50 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    assert_true(r.target[0] > 0.4499 && r.target[0] < 0.4501); /* last commanded target */
    assert_true(ev & EV(VLAD__EVENT__KIND__STALL));
    r = step(6, now + 55 * MS, &ev);
    assert_int_equal(ev, 0); /* only the first tick of a stall emits */
    assert_int_equal(atomic_load(&sh.stall_ticks), 2);

    /* 5. watchdog: observations stop; after 50 ms hold the last command, event once */
    r = step(7, now + 96 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_WATCHDOG);
    assert_true(ev & EV(VLAD__EVENT__KIND__WATCHDOG_TRIP));
    assert_true(r.target[0] > 0.4499 && r.target[0] < 0.4501);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_STALE);
    assert_int_equal(atomic_load(&sh.watchdog_trips), 1);
    feed_obs(508, 0.45, 0.3, now + 100 * MS);
    r = step(8, now + 100 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__WATCHDOG_CLEAR));
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_RUNNING);
    double held = r.target[0], held_b = r.target[1];

    /* 6. e-stop: hold the last COMMANDED target (not the measurement); a chunk is ignored */
    atomic_fetch_add(&sh.estop_req, 1);
    feed_obs(509, 0.1, 0.0, now + 110 * MS);
    r = step(9, now + 110 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ESTOP));
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
    assert_true(r.target[0] == held && r.target[1] == held_b);
    c.id = 43, c.start_tick = 10;
    vlad_aq_push(&ctl.queue, &c, NULL);
    for (int t = 10; t < 13; t++) {
        feed_obs(500 + t, -0.9, 0.9, now + (110 + 10 * (t - 9)) * MS); /* far away: no matter */
        r = step(t, now + (110 + 10 * (t - 9)) * MS, &ev);
        assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
        assert_true(r.target[0] == held);
        assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_ESTOP);
    }
    /* a reset and a robot restart while e-stopped do not move the hold */
    atomic_fetch_add(&sh.reset_req, 1);
    feed_obs(3, -0.7, 0.7, now + 150 * MS);
    r = step(13, now + 150 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__RESET));
    assert_true(ev & EV(VLAD__EVENT__KIND__ROBOT_RESTART));
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
    assert_true(r.target[0] == held && r.target[1] == held_b);
    assert_false(r.anchored);

    /* 7. release then e-stop within one tick: still e-stopped (ordered requests) */
    atomic_store(&sh.release_upto, atomic_load(&sh.estop_req));
    atomic_fetch_add(&sh.estop_req, 1);
    feed_obs(4, -0.7, 0.7, now + 160 * MS);
    r = step(14, now + 160 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_ESTOP);
    /* e-stop then release within one tick: released */
    atomic_fetch_add(&sh.estop_req, 1);
    atomic_store(&sh.release_upto, atomic_load(&sh.estop_req));
    feed_obs(5, -0.7, 0.7, now + 170 * MS);
    r = step(15, now + 170 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ESTOP_RELEASED));
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    assert_true(r.target[0] == held); /* the hold, not the measurement */

    /* 8. reset: hold until an observation taken after it, then anchor there */
    atomic_fetch_add(&sh.reset_req, 1);
    r = step(16, now + 175 * MS, &ev); /* no new observation: hold, waiting */
    assert_true(ev & EV(VLAD__EVENT__KIND__RESET));
    assert_true(r.target[0] == held);
    assert_false(r.anchored);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_WAITING);
    feed_obs(6, -0.2, 0.0, now + 180 * MS);
    r = step(17, now + 180 * MS, &ev);
    assert_true(r.anchored);
    assert_true(r.target[0] == -0.2 && r.target[1] == 0.0);
    assert_int_equal(atomic_load(&sh.episode), 2);

    /* 9. a robot restart while running: anchor at its new position */
    feed_obs(0, 0.6, -0.6, now + 190 * MS);
    r = step(18, now + 190 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ROBOT_RESTART));
    assert_true(r.anchored);
    assert_true(r.target[0] == 0.6 && r.target[1] == -0.6);
    assert_int_equal(atomic_load(&sh.robot_restarts), 2);
}

/* a reset while the watchdog is tripped never latches the stale observation */
static void test_reset_while_stale(void **state) {
    (void)state;
    int ev;
    int64_t now = 1000 * MS;
    feed_obs(0, 0.0, 0.0, now);
    vlad_out_rec r = step(0, now, &ev);
    feed_obs(1, 0.5, 0.0, now + 10 * MS); /* the robot moved (say, by hand) */
    r = step(1, now + 10 * MS, &ev);
    assert_true(r.target[0] == 0.0); /* not an anchor: hold the target */
    r = step(2, now + 100 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_WATCHDOG);
    atomic_fetch_add(&sh.reset_req, 1);
    r = step(3, now + 110 * MS, &ev);
    assert_true(r.target[0] == 0.0 && !r.anchored); /* the stale 0.5 is not latched */
    feed_obs(2, 0.45, 0.0, now + 120 * MS);
    r = step(4, now + 120 * MS, &ev);
    assert_true(r.anchored && r.target[0] == 0.45);
}

/* an observation sent just before a reset may arrive after it (another socket): with the
 * reset's from_robot_tick it is not taken as the post-reset state */
static void test_reset_from_tick(void **state) {
    (void)state;
    int ev;
    int64_t now = 1000 * MS;
    feed_obs(10, 0.5, 0.5, now);
    vlad_out_rec r = step(0, now, &ev);
    atomic_store(&sh.reset_from_tick, 12);
    atomic_fetch_add(&sh.reset_req, 1);
    feed_obs(11, 0.5, 0.5, now + 10 * MS); /* the old episode's last state, received late */
    r = step(1, now + 10 * MS, &ev);
    assert_false(r.anchored);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_WAITING);
    feed_obs(12, 0.0, -0.5, now + 20 * MS); /* the reset world */
    r = step(2, now + 20 * MS, &ev);
    assert_true(r.anchored && r.target[0] == 0.0 && r.target[1] == -0.5);
}

/* Wall clock, early start: an observation taken before its tick anchors the gate, and the
 * anchor goes out with the tick's Action; an e-stop or a reset arriving between the two takes
 * it back (the tick holds the last published target, unanchored). The property test found
 * this: a reset between an early anchor and its tick used to publish an anchored hold at the
 * pre-reset position. */
static void early_anchor_then(bool estop) {
    int ev;
    int64_t now = 1000 * MS;
    feed_obs(0, 0.2, 0.3, now);
    vlad_out_rec r = step(0, now, &ev);
    assert_true(r.anchored && r.target[0] == 0.2);
    atomic_fetch_add(&sh.reset_req, 1);
    r = step(1, now + 10 * MS, &ev);
    assert_false(r.anchored);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_WAITING);
    /* the reset world is reported before tick 2: taken early, an anchor not yet out */
    feed_obs(1, 0.6, -0.2, now + 15 * MS);
    vlad_control_early(&ctl, 2, now + 15 * MS);
    assert_true(ctl.anchor_pending);
    vlad_out_rec drop;
    while (vlad_spsc_pop(sh.out, &drop))
        assert_true(drop.kind != VLAD_OUT_ACTION); /* an early observation publishes no Action */
    if (estop)
        atomic_fetch_add(&sh.estop_req, 1);
    else
        atomic_fetch_add(&sh.reset_req, 1);
    r = step(2, now + 20 * MS, &ev);
    assert_false(r.anchored);
    assert_true(r.target[0] == 0.2 && r.target[1] == 0.3); /* the last published target */
    assert_int_equal(r.source, estop ? VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP
                                     : VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    if (estop) { /* released: the reset's anchor is still owed, at the next report */
        atomic_store(&sh.release_upto, atomic_load(&sh.estop_req));
        feed_obs(2, 0.6, -0.2, now + 30 * MS);
        r = step(3, now + 30 * MS, &ev);
        assert_true(r.anchored && r.target[0] == 0.6 && r.target[1] == -0.2);
    } else { /* a report after the second reset anchors there */
        feed_obs(2, 0.5, -0.1, now + 30 * MS);
        r = step(3, now + 30 * MS, &ev);
        assert_true(r.anchored && r.target[0] == 0.5 && r.target[1] == -0.1);
    }
    /* without anything between, the early anchor is the tick's Action */
    feed_obs(3, 0.5, -0.1, now + 35 * MS);
    atomic_fetch_add(&sh.reset_req, 1);
    r = step(4, now + 40 * MS, &ev);
    feed_obs(4, -0.4, 0.7, now + 45 * MS);
    vlad_control_early(&ctl, 5, now + 45 * MS);
    r = step(5, now + 50 * MS, &ev);
    assert_true(r.anchored && r.target[0] == -0.4 && r.target[1] == 0.7);
}

static void test_early_anchor_then_reset(void **state) {
    (void)state;
    early_anchor_then(false);
}

static void test_early_anchor_then_estop(void **state) {
    (void)state;
    early_anchor_then(true);
}

/* a latch persisted by an earlier run: e-stopped from the first Action, anchored there */
static void test_starts_estopped(void **state) {
    (void)state;
    atomic_store(&sh.estop_req, 1);
    assert_int_equal(vlad_control_init(&ctl, &sh, NULL), 0);
    int ev;
    vlad_out_rec r;
    assert_false(step_any(0, 1000 * MS, &ev, &r));
    assert_true(ev & EV(VLAD__EVENT__KIND__ESTOP));
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_ESTOP);
    feed_obs(77, 0.3, 0.1, 1010 * MS);
    r = step(1, 1010 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
    assert_true(r.anchored && r.target[0] == 0.3 && r.target[1] == 0.1);
    feed_obs(78, 0.0, 0.0, 1020 * MS);
    r = step(2, 1020 * MS, &ev);
    assert_true(r.target[0] == 0.3 && !r.anchored); /* nothing but a release moves it */
}

/* ---- a request that cuts a lockstep wait short takes the tick's anchor back ------------- */

/* A policy that, when asked to, has an e-stop or a reset arrive while the control thread
 * waits for it (as io would: the shared counter, then the request fd), and answers late. */
static _Atomic int request_in_infer; /* 0 none, 1 reset, 2 e-stop */

static int requesting_infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    (void)self, (void)job, (void)err;
    int what = atomic_exchange(&request_in_infer, 0);
    if (what) {
        atomic_fetch_add(what == 1 ? &sh.reset_req : &sh.estop_req, 1);
        uint64_t one = 1;
        if (write(sh.req_fd, &one, sizeof one) != (ssize_t)sizeof one)
            return -1;
        vlad_sleep_until_ns(vlad_now_ns() + 300 * MS); /* the wait sees the request first */
    }
    for (int i = 0; i < 4 * 2; i++)
        actions[i] = 0.0f;
    return 0;
}

/* The property test found this: a robot restart anchored in step 2, a reset that cut the
 * policy wait short in step 4 of the same tick, and the Action went out anchored at the
 * pre-reset position. Now it holds the last published target, unanchored (S4), and under an
 * e-stop that target is the hold (S6); the next report after a reset anchors. */
static void request_during_wait(bool estop) {
    static vlad_profile p;
    const char *y = "robot: r\ncontrol_hz: 100\nclock: lockstep\nlockstep_timeout_ms: 2000\n"
                    "safety: {max_delta_per_tick: 0.1, watchdog_ms: 5000}\n"
                    "async: {mode: sync}\n"
                    "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 100}\n"
                    "  - {name: b, min: -1, max: 1, max_velocity: 100}\n";
    vlad_err err;
    if (vlad_profile_load_string(&p, y, strlen(y), "w.yaml", &err))
        fail_msg("%s", err.msg);
    shared_down(); /* setup's */
    shared_up(&p);
    vlad_policy_ops ops = {.horizon = 4, .dim = 2, .infer = requesting_infer, .wake_fd = -1};
    vlad_worker *w = vlad_worker_new(&ops, 0, 0, false, &sh.text_mu, "x", &err);
    assert_non_null(w);
    assert_int_equal(vlad_control_init(&ctl, &sh, NULL), 0);
    assert_int_equal(vlad_control_attach_policy(&ctl, w, 4, 2, 0, &err), 0);
    int ev;
    int64_t now = 1000 * MS;
    feed_obs(100, 0.2, 0.3, now);
    vlad_out_rec r = step(0, now, &ev);
    assert_true(r.anchored);
    double held[2] = {r.target[0], r.target[1]}; /* a step from there toward the policy's 0 */
    /* the robot restarts elsewhere; the request arrives while this tick waits */
    atomic_store(&request_in_infer, estop ? 2 : 1);
    feed_obs(3, -0.5, 0.5, now + 10 * MS);
    r = step(1, now + 10 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ROBOT_RESTART));
    assert_true(ev & EV(estop ? VLAD__EVENT__KIND__ESTOP : VLAD__EVENT__KIND__RESET));
    assert_false(r.anchored);
    assert_true(r.target[0] == held[0] && r.target[1] == held[1]); /* the last published target */
    assert_int_equal(r.source, estop ? VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP
                                     : VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    feed_obs(4, 0.4, -0.4, now + 20 * MS);
    r = step(2, now + 20 * MS, &ev);
    if (estop) /* nothing but a release moves the hold */
        assert_true(!r.anchored && r.target[0] == held[0] && r.target[1] == held[1]);
    else /* the report after the reset anchors */
        assert_true(r.anchored && fabs(r.target[0] - 0.4) <= 0.1 + 1e-9 && fabs(r.target[1] + 0.4) <= 0.1 + 1e-9);
    if (ctl.busy)
        vlad_worker_wait(w, 5000, -1);
    vlad_worker_free(w);
}

static void test_reset_during_wait(void **state) {
    (void)state;
    request_during_wait(false);
}

static void test_estop_during_wait(void **state) {
    (void)state;
    request_during_wait(true);
}

/* A reset naming a tick of the robot's new timeline (it restarted, then reset) still holds
 * after the restart is seen: the restart's first report, sent before the reset, is stale. One
 * naming a tick beyond the old timeline's last was named there: the restart clears it (the
 * new ticks may never reach it). */
static void test_reset_from_tick_across_restart(void **state) {
    (void)state;
    int ev;
    int64_t now = 1000 * MS;
    feed_obs(500, 0.5, 0.5, now);
    vlad_out_rec r = step(0, now, &ev);
    /* restarted at 20, then reset from 21; the report of 20 arrives after the reset */
    atomic_store(&sh.reset_from_tick, 21);
    atomic_fetch_add(&sh.reset_req, 1);
    feed_obs(20, -0.5, -0.5, now + 10 * MS);
    r = step(1, now + 10 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ROBOT_RESTART));
    assert_false(r.anchored);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_WAITING);
    feed_obs(21, -0.4, -0.4, now + 20 * MS);
    r = step(2, now + 20 * MS, &ev);
    assert_true(r.anchored && r.target[0] == -0.4 && r.target[1] == -0.4);
    /* reset from 22 (the old timeline's next), then the robot restarts at 5 */
    atomic_store(&sh.reset_from_tick, 22);
    atomic_fetch_add(&sh.reset_req, 1);
    r = step(3, now + 30 * MS, &ev);
    feed_obs(5, 0.1, 0.1, now + 40 * MS);
    r = step(4, now + 40 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ROBOT_RESTART));
    assert_true(r.anchored && r.target[0] == 0.1 && r.target[1] == 0.1);
}

/* ---- the tick allocates nothing, in every mode, with a faulty policy ----------------------- */

static const char *const MODES[] = {"sync", "naive", "vlash", "merge"};
#define N_MODES (int)(sizeof MODES / sizeof MODES[0])

static void run_no_alloc(const char *clock, const char *mode) {
    static vlad_profile p;
    char y[1024];
    snprintf(y, sizeof y,
             "robot: r\ncontrol_hz: 100\nclock: %s\nlockstep_timeout_ms: 2000\n"
             "safety: {max_delta_per_tick: 0.05, watchdog_ms: 1000}\n"
             "policy: {synthetic: true, synthetic_faults: 0.4, seed: 3, min_latency_ms: 20}\n"
             "async: {mode: %s, execution_horizon: 8, trigger_threshold: 2}\n"
             "cameras:\n  - {name: c, width: 2, height: 2}\n"
             "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 100}\n"
             "  - {name: b, min: -1, max: 1, max_velocity: 100}\n",
             clock, mode);
    vlad_err err;
    if (vlad_profile_load_string(&p, y, strlen(y), "m.yaml", &err))
        fail_msg("%s", err.msg);
    shared_up(&p);
    static vlad_synthetic syn;
    vlad_synthetic_init(&syn, &p);
    vlad_policy_ops ops;
    vlad_synthetic_ops(&syn, &ops);
    bool wall = p.clock == VLAD_CLOCK_WALL;
    vlad_worker *w = vlad_worker_new(&ops, 12, 20 * MS, wall, &sh.text_mu, "x", &err);
    assert_non_null(w);
    assert_int_equal(vlad_control_init(&ctl, &sh, NULL), 0);
    assert_int_equal(vlad_control_attach_policy(&ctl, w, ops.horizon, ops.dim, 0, &err), 0);
    long allocs = 0;
    int policy = 0, chunks = 0;
    double pos[2] = {0, 0};
    for (int64_t t = 0; t < 400; t++) {
        int64_t now = vlad_now_ns();
        /* what io does: a frame and a state */
        uint8_t *img = vlad_frames_write_buf(sh.frames);
        img[0] = (uint8_t)t;
        uint64_t fid = vlad_frames_publish(sh.frames);
        vlad_obs_state *o = vlad_latest_write_buf(sh.obs);
        memset(o, 0, sizeof *o);
        o->count = ++obs_count;
        o->reset_seq = atomic_load(&sh.reset_req);
        o->frame_id = fid;
        o->robot_tick = t < 200 ? 1000 + t : t; /* a robot restart at 200 */
        o->recv_ns = now;
        memcpy(o->pos, pos, sizeof pos);
        vlad_latest_publish(sh.obs);
        if (t % 97 == 50)
            atomic_fetch_add(&sh.estop_req, 1);
        if (t % 97 == 60)
            atomic_store(&sh.release_upto, atomic_load(&sh.estop_req));
        if (t % 131 == 70)
            atomic_fetch_add(&sh.reset_req, 1);
        vlad_alloc_counting = 1;
        vlad_control_step(&ctl, t, now, now);
        vlad_alloc_counting = 0;
        allocs += vlad_allocs_here;
        vlad_allocs_here = 0;
        vlad_out_rec r;
        while (vlad_spsc_pop(sh.out, &r)) {
            if (r.kind == VLAD_OUT_ACTION) {
                policy += r.source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
                for (int j = 0; j < 2; j++) {
                    assert_true(isfinite(r.target[j]) && fabs(r.target[j]) <= 1.0);
                    pos[j] += 0.5 * (r.target[j] - pos[j]);
                }
            } else if (r.kind == VLAD_OUT_CHUNK) {
                vlad_chunk_rec *cr = malloc(sizeof *cr);
                assert_true(vlad_spsc_pop(sh.chunks, cr));
                assert_int_equal(cr->chunk.id, r.chunk_id);
                for (int i = 0; i < cr->chunk.len * 2; i++)
                    assert_true(isfinite(cr->chunk.values[i]) && fabsf(cr->chunk.values[i]) <= 1.0f);
                free(cr);
                chunks++;
            }
        }
        if (wall)
            vlad_sleep_until_ns(now + 5 * MS);
    }
    printf("%s/%s: %d policy actions, %d chunks, %llu corrupted, %llu refused, %ld allocations\n",
           clock, mode, policy, chunks, (unsigned long long)atomic_load(&syn.corrupted),
           (unsigned long long)atomic_load(&sh.chunks_refused), allocs);
    assert_int_equal(allocs, 0);
    assert_true(policy > 50);
    assert_true(chunks > 5);
    assert_true(atomic_load(&syn.corrupted) > 0);
    if (ctl.busy)
        vlad_worker_wait(w, 5000, -1);
    vlad_worker_free(w);
    vlad_frames_unpin(sh.frames);
    shared_down();
}

static void test_tick_allocates_nothing(void **state) {
    (void)state;
    for (int m = 0; m < N_MODES; m++) {
        run_no_alloc("lockstep", MODES[m]);
        run_no_alloc("wall", MODES[m]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_control_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_while_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_from_tick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starts_estopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_anchor_then_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_anchor_then_estop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_during_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_estop_during_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_from_tick_across_restart, setup, teardown),
        cmocka_unit_test(test_tick_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
