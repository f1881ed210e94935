/* Integration: the real `vlad` daemon (built-in synthetic policy) against the real
 * `vlad-sim` in lockstep, for each scheduler, Δ = 3 ticks of emulated latency, K = 10:
 * episodes complete with policy actions; sync holds Δ ticks before each chunk, naive and
 * VLASH only before the first chunk of an episode; at chunk switches the commanded target
 * jumps by at most one tick's rate limit; a repeated run is bit-identical (the
 * simulator sends reset only after the daemon has answered the episode's last tick). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "closedloop.h"

#define DELTA 3
#define EPISODES 2

static vlad_profile prof;
static bench_task_stats st[3][2];

static void run_mode(int m, const char *mode, int rep) {
    bench_run r = {.base = &prof, .synthetic = true, .mode = mode, .K = 10, .threshold = 0,
                   .margin = 0, .min_latency_ms = DELTA * 20.0, .threads = 1, .tasks = "whack",
                   .episodes = EPISODES, .seed = 3, .noise_scale = 1.0};
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/vlad-closed-loop-%d/%s-%d", (int)getpid(), mode, rep);
    int n = 0;
    vlad_err err;
    if (bench_closed_loop(&r, dir, &st[m][rep], &n, &err))
        fail_msg("%s: %s", mode, err.msg);
    assert_int_equal(n, 1);
    assert_int_equal(st[m][rep].episodes, EPISODES);
    printf("# %-5s stalls/episode %.1f, ticks/episode %.1f, discontinuity mean %.4f max %.4f\n", mode,
           st[m][rep].stall_ticks, st[m][rep].ticks, st[m][rep].disc_mean, st[m][rep].disc_max);
}

static void test_modes(void **state) {
    (void)state;
    vlad_err err;
    if (vlad_profile_load(&prof, "configs/sim-arm.yaml", &err))
        fail_msg("%s", err.msg);
    const char *modes[3] = {"sync", "naive", "vlash"};
    for (int m = 0; m < 3; m++)
        run_mode(m, modes[m], 0);
    const bench_task_stats *sy = &st[0][0], *na = &st[1][0], *vl = &st[2][0];
    /* naive and VLASH wait only for the first chunk of each episode, exactly Δ ticks: the
     * episode's first inference starts on its first tick, from its own first observation */
    assert_true(fabs(na->stall_ticks - DELTA) < 0.01);
    assert_true(fabs(vl->stall_ticks - DELTA) < 0.01);
    /* sync waits Δ ticks before every chunk of 10 */
    assert_true(sy->stall_ticks >= DELTA * (sy->ticks / (10 + DELTA)) - DELTA - 0.01);
    /* every mode executes chunk after chunk (the discontinuity is NaN in an episode without
     * a chunk switch), and at a switch the commanded target never jumps by more than the
     * daemon's rate limit of one tick, min(safety.max_delta_per_tick, max_velocity /
     * control_hz) per joint (the smoothness comparison between the modes needs a trained
     * model: vlad-bench vlash; the synthetic policy converges to a time-indexed reference,
     * which hides naive's stale state) */
    double step = 0;
    for (int j = 0; j < prof.n_joints; j++)
        step = fmax(step, fmin(prof.safety.max_delta_per_tick,
                               prof.joints[j].max_velocity / prof.control_hz));
    assert_true(step > 0);
    for (int m = 0; m < 3; m++) {
        const bench_task_stats *s = &st[m][0];
        if (!(isfinite(s->disc_mean) && isfinite(s->disc_max)))
            fail_msg("%s: no chunk switch measured", modes[m]);
        if (!(s->disc_mean >= 0 && s->disc_mean <= s->disc_max && s->disc_max <= step + 1e-9))
            fail_msg("%s: discontinuity mean %g max %g, expected 0 <= mean <= max <= %g (one "
                     "tick's rate limit)",
                     modes[m], s->disc_mean, s->disc_max, step);
    }
    /* lockstep is deterministic */
    run_mode(2, "vlash", 1);
    assert_true(st[2][1].disc_mean == vl->disc_mean);
    assert_true(st[2][1].stall_ticks == vl->stall_ticks);
    assert_true(st[2][1].jerk == vl->jerk);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/vlad-closed-loop-%d", (int)getpid());
    assert_int_equal(system(cmd), 0);
}

/* The generated profile keeps the base profile's delay limit (and, for merge runs, its merge
 * weight): with async.max_delay_ticks 2 and Δ = 3 the daemon (VLASH) reports the limit 2 and
 * plans at it (DELAY_LIMIT ticks counted); with the base's 0 the limit is the policy's own
 * (above Δ: nothing counted; the merge run). */
static void test_delay_limit(void **state) {
    (void)state;
    vlad_err err;
    if (vlad_profile_load(&prof, "configs/sim-arm.yaml", &err))
        fail_msg("%s", err.msg);
    const double def_w = prof.async.merge_weight; /* the profile's (the loader's default) */
    for (int lim = 2; lim >= 0; lim -= 2) {
        prof.async.max_delay_ticks = lim;
        prof.async.merge_weight = 0.25 * (lim + 1); /* written for merge runs only */
        bench_daemon_stats ds = {0};
        bench_task_stats ts;
        bench_run r = {.base = &prof, .synthetic = true, .mode = lim ? "vlash" : "merge", .K = 10, .threshold = 0,
                       .margin = 0, .min_latency_ms = DELTA * 20.0, .threads = 1, .tasks = "whack",
                       .episodes = 1, .seed = 3, .noise_scale = 1.0, .stats = &ds};
        char dir[128];
        snprintf(dir, sizeof dir, "/tmp/vlad-closed-loop-%d/limit-%d", (int)getpid(), lim);
        int n = 0;
        if (bench_closed_loop(&r, dir, &ts, &n, &err))
            fail_msg("limit %d: %s", lim, err.msg);
        assert_true(ds.ok);
        /* the run's generated profile holds the base's lag model, limit and merge weight */
        char gen[160];
        snprintf(gen, sizeof gen, "%s/profile.yaml", dir);
        vlad_profile g;
        if (vlad_profile_load(&g, gen, &err))
            fail_msg("%s: %s", gen, err.msg);
        assert_int_equal(g.async.max_delay_ticks, lim);
        assert_true(g.async.tracking_lag_ms == prof.async.tracking_lag_ms);
        assert_true(g.async.merge_weight == (lim ? def_w : prof.async.merge_weight));
        if (lim) {
            assert_int_equal(ds.max_delay_ticks, lim);
            assert_true(ds.delay_limited_ticks > 0);
        } else {
            assert_true(ds.max_delay_ticks > DELTA);
            assert_true(ds.delay_limited_ticks == 0);
        }
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/vlad-closed-loop-%d", (int)getpid());
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_modes), cmocka_unit_test(test_delay_limit)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
