/* test_sim_tasks — each task's success check on hand-made states, seeded layouts,
 * world-change events and language labels (no physics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "tasks.h"

static int count(const vlad_task_events *ev, vlad_ev_kind k) {
    int n = 0;
    for (int i = 0; i < ev->n; i++)
        n += ev->ev[i].kind == k;
    return n;
}

static vlad_task_state far_state(void) {
    vlad_task_state s = {{0.0, 0.0, 0.5}, {2, 2, 0.02}};
    return s;
}

static void test_reach_success_and_distractor(void **st) {
    (void)st;
    vlad_task t;
    assert_int_equal(vlad_task_begin(&t, VLAD_TASK_REACH, NULL, 50, 7, NULL), VLAD_OK);
    assert_int_equal(t.n_obj, 3);
    /* the instruction names the target's colour, and no distractor has it */
    assert_non_null(strstr(t.instruction, vlad_colour_name(t.obj[0].colour)));
    for (int i = 1; i < t.n_obj; i++)
        assert_int_not_equal(t.obj[i].colour, t.obj[0].colour);
    vlad_task_events ev = {0};
    vlad_task_state s = far_state();
    vlad_task_update(&t, &s, &ev);
    assert_false(t.done);
    assert_int_equal(ev.n, 0);
    /* just outside the tolerance: not yet */
    memcpy(s.ee, t.obj[0].pos, sizeof s.ee);
    s.ee[2] += t.prm.tol + 0.002;
    vlad_task_update(&t, &s, &ev);
    assert_false(t.done);
    s.ee[2] -= 0.004;
    vlad_task_update(&t, &s, &ev);
    assert_true(t.done);
    assert_true(t.success);
    assert_int_equal(t.success_k, 2);
    assert_int_equal(count(&ev, VLAD_EV_SUCCESS), 1);
    assert_int_equal(count(&ev, VLAD_EV_END), 1);

    /* touching a distractor fails at once */
    vlad_task u;
    vlad_task_begin(&u, VLAD_TASK_REACH, NULL, 50, 7, NULL);
    vlad_task_events ev2 = {0};
    memcpy(s.ee, u.obj[1].pos, sizeof s.ee);
    vlad_task_update(&u, &s, &ev2);
    assert_true(u.done);
    assert_false(u.success);
    assert_int_equal(count(&ev2, VLAD_EV_SUCCESS), 0);
    assert_int_equal(count(&ev2, VLAD_EV_END), 1);
}

static void test_reach_timeout(void **st) {
    (void)st;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_REACH, NULL, 50, 3, NULL);
    vlad_task_state s = far_state();
    int k = 0;
    while (!t.done && k < 10000) {
        vlad_task_update(&t, &s, NULL);
        k++;
    }
    assert_int_equal(k, t.max_ticks);
    assert_int_equal(t.max_ticks, 150);
    assert_false(t.success);
}

static void test_layout_seeded(void **st) {
    (void)st;
    for (int kind = 0; kind < VLAD_TASK_COUNT; kind++) {
        vlad_task a, b, c;
        vlad_task_begin(&a, (vlad_task_kind)kind, NULL, 50, 42, NULL);
        vlad_task_begin(&b, (vlad_task_kind)kind, NULL, 50, 42, NULL);
        vlad_task_begin(&c, (vlad_task_kind)kind, NULL, 50, 43, NULL);
        assert_memory_equal(&a, &b, sizeof a);
        assert_true(memcmp(&a, &c, sizeof a) != 0);
        assert_true(strlen(a.instruction) > 5);
    }
}

/* Feed the task the end-effector exactly on target 0 (as it will be after this tick's
 * motion, found by updating a copy first). */
static void update_on_target(vlad_task *t, vlad_task_events *ev) {
    vlad_task probe = *t;
    vlad_task_state s = far_state();
    vlad_task_update(&probe, &s, NULL);
    memcpy(s.ee, probe.obj[0].pos, sizeof s.ee);
    vlad_task_update(t, &s, ev);
}

static void test_track(void **st) {
    (void)st;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_TRACK, NULL, 50, 5, NULL);
    int changes = 0, k = 0;
    double p0[3];
    memcpy(p0, t.obj[0].pos, sizeof p0);
    while (!t.done) {
        vlad_task_events ev = {0};
        update_on_target(&t, &ev);
        changes += count(&ev, VLAD_EV_WORLD_CHANGE);
        if (t.done) {
            assert_int_equal(count(&ev, VLAD_EV_SUCCESS), 1);
            assert_int_equal(count(&ev, VLAD_EV_END), 1);
        }
        k++;
    }
    assert_int_equal(k, t.max_ticks);
    assert_true(t.success);
    assert_int_equal(t.acquired_k, 0);
    assert_true(changes >= 3); /* 3 s with a turn every 0.3..0.7 s */
    assert_int_equal(changes, t.world_changes);
    assert_true(fabs(vlad_task_score(&t) - 1.0) < 1e-12);
    /* the target moved at the configured speed */
    assert_true(hypot(t.vel[0], t.vel[1]) > 0.99 * t.prm.speed);

    /* off target 20% of the scored ticks: fails the 85% threshold */
    vlad_task u;
    vlad_task_begin(&u, VLAD_TASK_TRACK, NULL, 50, 5, NULL);
    k = 0;
    while (!u.done) {
        if (k % 5 == 0) {
            vlad_task_state s = far_state();
            vlad_task_update(&u, &s, NULL);
        } else {
            update_on_target(&u, NULL);
        }
        k++;
    }
    assert_false(u.success);
    assert_true(vlad_task_score(&u) < 0.85 && vlad_task_score(&u) > 0.7);
}

static void test_whack(void **st) {
    (void)st;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_WHACK, NULL, 50, 9, NULL);
    int pops = 0, guard = 0;
    while (!t.done && guard++ < 10000) {
        vlad_task_events ev = {0};
        vlad_task_state s = far_state();
        if (t.obj[0].visible)
            memcpy(s.ee, t.obj[0].pos, sizeof s.ee); /* hit it on the tick after it appeared */
        vlad_task_update(&t, &s, &ev);
        pops += count(&ev, VLAD_EV_WORLD_CHANGE);
    }
    assert_true(t.success);
    assert_int_equal(t.hits, t.prm.n_targets);
    assert_int_equal(pops, t.prm.n_targets);
    assert_int_equal(t.hit_ticks_max, 1);

    /* never there: every target vanishes after its window, then failure */
    vlad_task u;
    vlad_task_begin(&u, VLAD_TASK_WHACK, NULL, 50, 9, NULL);
    int visible_run = 0, longest = 0;
    while (!u.done) {
        vlad_task_state s = far_state();
        vlad_task_update(&u, &s, NULL);
        visible_run = u.obj[0].visible ? visible_run + 1 : 0;
        if (visible_run > longest)
            longest = visible_run;
    }
    assert_false(u.success);
    assert_int_equal(u.misses, u.prm.n_targets);
    assert_int_equal(longest, (int)lround(u.prm.window_s * 50));

    /* a hit one tick too late does not count */
    vlad_task w;
    vlad_task_begin(&w, VLAD_TASK_WHACK, NULL, 50, 9, NULL);
    while (!w.obj[0].visible) {
        vlad_task_state s = far_state();
        vlad_task_update(&w, &s, NULL);
    }
    int vanish = w.vanish_k;
    while (w.k <= vanish) {
        vlad_task_state s = far_state();
        vlad_task_update(&w, &s, NULL);
    }
    assert_false(w.obj[0].visible);
    assert_int_equal(w.misses, 1);
    assert_int_equal(w.hits, 0);
}

/* A forecast (vlad_task_forecast) is the task with its random future removed: the track
 * target keeps its speed and changes velocity only by bouncing off the region's edges; it
 * agrees with the real task up to the real task's first turn; no whack target pops. */
static void test_forecast(void **st) {
    (void)st;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        vlad_task t;
        assert_int_equal(vlad_task_begin(&t, VLAD_TASK_TRACK, NULL, 50, seed, NULL), VLAD_OK);
        vlad_task f = t;
        vlad_task_forecast(&f);
        bool diverged = false;
        int changes = 0; /* turns and bounces */
        while (!t.done) {
            vlad_task_state s = far_state();
            double fv[2] = {f.vel[0], f.vel[1]};
            vlad_task_events ev = {0};
            int changes_before = t.world_changes;
            vlad_task_update(&t, &s, &ev);
            vlad_task_update(&f, &s, NULL);
            /* the forecast's velocity: the same or a component reflected */
            for (int i = 0; i < 2; i++)
                assert_true(fabs(f.vel[i] - fv[i]) < 1e-12 || fabs(f.vel[i] + fv[i]) < 1e-12);
            assert_true(fabs(hypot(f.vel[0], f.vel[1]) - f.prm.speed) < 1e-9);
            if (!diverged) {
                if (t.world_changes > changes_before &&
                    (fabs(t.vel[0] - f.vel[0]) > 1e-12 || fabs(t.vel[1] - f.vel[1]) > 1e-12)) {
                    diverged = true; /* the real task turned: the forecast cannot know that */
                } else {
                    assert_true(fabs(t.obj[0].pos[0] - f.obj[0].pos[0]) < 1e-12);
                    assert_true(fabs(t.obj[0].pos[1] - f.obj[0].pos[1]) < 1e-12);
                }
            }
            changes += t.world_changes > changes_before;
        }
        assert_true(diverged); /* 3 s with a turn every 0.3..0.7 s */
        assert_true(changes >= 3);
    }
    /* whack: a forecast made while a target is up sees it vanish and no other appear */
    vlad_task w;
    vlad_task_begin(&w, VLAD_TASK_WHACK, NULL, 50, 9, NULL);
    while (!w.obj[0].visible) {
        vlad_task_state s = far_state();
        vlad_task_update(&w, &s, NULL);
    }
    vlad_task f = w;
    vlad_task_forecast(&f);
    int visible_after = 0, pops = 0;
    for (int k = 0; k < 200; k++) {
        vlad_task_state s = far_state();
        vlad_task_events ev = {0};
        vlad_task_update(&f, &s, &ev);
        pops += count(&ev, VLAD_EV_WORLD_CHANGE);
        if (f.k > w.vanish_k)
            visible_after += f.obj[0].visible;
    }
    assert_int_equal(pops, 0);
    assert_int_equal(visible_after, 0);
}

static void test_push(void **st) {
    (void)st;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_PUSH, NULL, 50, 11, NULL);
    double d = hypot(t.goal[0] - t.block0[0], t.goal[1] - t.block0[1]);
    assert_true(d >= 0.08 - 1e-9 && d <= 0.14 + 1e-9);
    assert_int_not_equal(t.block_colour, t.goal_colour);
    vlad_task_state s = far_state();
    s.block[0] = t.block0[0];
    s.block[1] = t.block0[1];
    vlad_task_update(&t, &s, NULL);
    assert_false(t.done);
    /* just outside the goal radius, then just inside */
    s.block[0] = t.goal[0] + t.prm.goal_radius + 0.001;
    s.block[1] = t.goal[1];
    vlad_task_update(&t, &s, NULL);
    assert_false(t.done);
    s.block[0] = t.goal[0] + t.prm.goal_radius - 0.001;
    vlad_task_events ev = {0};
    vlad_task_update(&t, &s, &ev);
    assert_true(t.success);
    assert_int_equal(count(&ev, VLAD_EV_SUCCESS), 1);
}

static void test_labels(void **st) {
    (void)st;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_REACH, NULL, 50, 21, NULL);
    t.obj[0].pos[1] = -0.1; /* image left (camera looks back at the robot along -x) */
    vlad_task_state s = far_state();
    vlad_labels l;
    vlad_task_labels(&t, &s, &l);
    assert_true(l.n_qa >= 3);
    assert_non_null(strstr(l.commentary, vlad_colour_name(t.obj[0].colour)));
    assert_string_equal(l.qa[0].a, vlad_colour_name(t.obj[0].colour));
    assert_string_equal(l.qa[1].a, "left");
    assert_string_equal(l.qa[2].a, "3");
    assert_string_equal(l.qa[3].a, "no");
    memcpy(s.ee, t.obj[0].pos, sizeof s.ee);
    vlad_task_labels(&t, &s, &l);
    assert_string_equal(l.qa[3].a, "yes");

    vlad_task w;
    vlad_task_begin(&w, VLAD_TASK_WHACK, NULL, 50, 21, NULL);
    vlad_task_labels(&w, &s, &l);
    assert_string_equal(l.qa[0].a, "no");
    assert_string_equal(l.qa[1].a, "none");
}

static void test_params(void **st) {
    (void)st;
    vlad_task_params p = vlad_task_default_params(VLAD_TASK_WHACK);
    assert_int_equal(vlad_task_param_set(&p, "window_s", 0.3), VLAD_OK);
    assert_true(p.window_s == 0.3);
    assert_int_equal(vlad_task_param_set(&p, "n_targets", 3), VLAD_OK);
    assert_int_equal(p.n_targets, 3);
    assert_int_equal(vlad_task_param_set(&p, "nonsense", 1), VLAD_EINVAL);
    vlad_task t;
    assert_int_equal(vlad_task_begin(&t, VLAD_TASK_WHACK, &p, 50, 1, NULL), VLAD_OK);
    assert_int_equal(t.prm.n_targets, 3);
    p.n_targets = 1000;
    vlad_err err;
    assert_int_equal(vlad_task_begin(&t, VLAD_TASK_WHACK, &p, 50, 1, &err), VLAD_EINVAL);
    vlad_task_kind k;
    assert_int_equal(vlad_task_parse("push", &k), VLAD_OK);
    assert_int_equal(k, VLAD_TASK_PUSH);
    assert_int_equal(vlad_task_parse("pushy", &k), VLAD_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reach_success_and_distractor),
        cmocka_unit_test(test_reach_timeout),
        cmocka_unit_test(test_layout_seeded),
        cmocka_unit_test(test_track),
        cmocka_unit_test(test_whack),
        cmocka_unit_test(test_forecast),
        cmocka_unit_test(test_push),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
