/* The control thread's tick, driven directly: home before the robot reports, hold where
 * it reports, policy actions rate-limited and clamped, e-stop latch, watchdog, reset,
 * stall counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "clock.h"
#include "control.h"
#include "vlad.pb-c.h"

static vlad_profile prof;
static vlad_shared sh;
static vlad_control ctl;
static const int64_t MS = 1000000;

static int setup(void **state) {
    (void)state;
    const char *y = "robot: r\ncontrol_hz: 100\nsafety: {max_delta_per_tick: 0.1, watchdog_ms: 50}\n"
                    "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 100, home: 0.5}\n"
                    "  - {name: b, min: -1, max: 1, max_velocity: 100, home: -0.5}\n";
    vlad_err err;
    if (vlad_profile_load_string(&prof, y, strlen(y), "c.yaml", &err))
        fail_msg("%s", err.msg);
    memset(&sh, 0, sizeof sh);
    sh.p = &prof;
    sh.obs = vlad_latest_new(sizeof(vlad_obs_state), NULL);
    sh.out = vlad_spsc_new(sizeof(vlad_out_rec), 256, NULL);
    sh.wake_fd = eventfd(0, EFD_NONBLOCK);
    sh.obs_fd = eventfd(0, EFD_NONBLOCK);
    assert_int_equal(vlad_control_init(&ctl, &sh, NULL), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vlad_latest_free(sh.obs);
    vlad_spsc_free(sh.out);
    close(sh.wake_fd);
    close(sh.obs_fd);
    return 0;
}

static void feed_obs(int64_t tick, double a, double b, int64_t recv_ns) {
    vlad_obs_state *o = vlad_latest_write_buf(sh.obs);
    static uint64_t count;
    o->count = ++count;
    o->tick = tick;
    o->recv_ns = recv_ns;
    o->pos[0] = a;
    o->pos[1] = b;
    vlad_latest_publish(sh.obs);
}

#define EV(k) (1 << (k))

/* step and return the action record; *events gets a mask EV(kind) of the events emitted */
static vlad_out_rec step(int64_t tick, int64_t now, int *events) {
    vlad_control_step(&ctl, tick, now, now);
    vlad_out_rec r, act;
    memset(&act, 0, sizeof act);
    *events = 0;
    while (vlad_spsc_pop(sh.out, &r)) {
        if (r.kind == VLAD_OUT_EVENT) {
            *events |= EV(r.event_kind);
        } else {
            act = r;
        }
    }
    assert_int_equal(act.kind, VLAD_OUT_ACTION);
    assert_int_equal(act.tick, tick);
    return act;
}

static void test_control_sequence(void **state) {
    (void)state;
    int ev;
    int64_t now = 1000 * MS;
    /* 1. no observation: home, mode waiting */
    vlad_out_rec r = step(0, now, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_HOME);
    assert_true(r.target[0] == 0.5 && r.target[1] == -0.5);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_WAITING);
    assert_int_equal(r.obs_tick, -1);

    /* 2. the robot reports from elsewhere: hold exactly there (no pull toward home) */
    feed_obs(0, 0.2, 0.3, now);
    r = step(1, now + 10 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    assert_true(r.target[0] == 0.2 && r.target[1] == 0.3);
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_RUNNING);

    /* 3. a policy chunk: rate-limited to 0.1 per tick, clamped flag, ids carried */
    ctl.policy_active = true;
    vlad_chunk c;
    memset(&c, 0, sizeof c);
    c.id = 42, c.start_tick = 2, c.obs_tick = 1, c.len = 3, c.dim = 2;
    float vals[6] = {0.25f, 0.3f, 0.9f, 0.3f, 5.0f, 0.3f};
    memcpy(c.values, vals, sizeof vals);
    assert_int_equal(vlad_aq_push(&ctl.queue, &c, NULL), 0);
    feed_obs(1, 0.2, 0.3, now + 20 * MS);
    r = step(2, now + 20 * MS, &ev);
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY);
    assert_int_equal(r.chunk_id, 42);
    assert_int_equal(r.obs_tick, 1);
    assert_false(r.clamped);
    assert_true(r.target[0] == 0.25f);
    r = step(3, now + 30 * MS, &ev);
    assert_true(r.clamped);
    assert_true(r.target[0] > 0.3499 && r.target[0] < 0.3501); /* 0.25 + 0.1 */
    r = step(4, now + 40 * MS, &ev);
    assert_true(r.target[0] > 0.4499 && r.target[0] < 0.4501); /* toward 5.0, rate-limited */
    assert_int_equal(atomic_load(&sh.clamped_actions), 2);

    /* 4. chunk exhausted while a policy is active: hold, counted as a stall, one event */
    feed_obs(4, 0.4, 0.3, now + 45 * MS);
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
    feed_obs(8, 0.45, 0.3, now + 100 * MS);
    r = step(8, now + 100 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__WATCHDOG_CLEAR));
    assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_RUNNING);

    /* 6. e-stop: hold where the robot is; a new chunk is ignored until release */
    atomic_fetch_add(&sh.estop_req, 1);
    feed_obs(9, 0.41, 0.31, now + 110 * MS);
    r = step(9, now + 110 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ESTOP));
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
    assert_true(r.target[0] == 0.41 && r.target[1] == 0.31);
    c.id = 43, c.start_tick = 10;
    vlad_aq_push(&ctl.queue, &c, NULL);
    for (int t = 10; t < 13; t++) {
        feed_obs(t, 0.41, 0.31, now + (110 + 10 * (t - 9)) * MS);
        r = step(t, now + (110 + 10 * (t - 9)) * MS, &ev);
        assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP);
        assert_true(r.target[0] == 0.41);
        assert_int_equal(atomic_load(&sh.mode), VLAD__MODE__MODE_ESTOP);
    }
    atomic_fetch_add(&sh.estop_req, 1); /* a second e-stop while latched changes nothing */
    atomic_fetch_add(&sh.release_req, 1);
    feed_obs(13, 0.41, 0.31, now + 150 * MS);
    r = step(13, now + 150 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__ESTOP_RELEASED));
    assert_int_equal(r.source, VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD);
    assert_true(r.target[0] == 0.41);

    /* 7. reset re-latches at the current position */
    atomic_fetch_add(&sh.reset_req, 1);
    feed_obs(14, -0.2, 0.0, now + 160 * MS);
    r = step(14, now + 160 * MS, &ev);
    assert_true(ev & EV(VLAD__EVENT__KIND__RESET));
    assert_true(r.target[0] == -0.2 && r.target[1] == 0.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_control_sequence, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
