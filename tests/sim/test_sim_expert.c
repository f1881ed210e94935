/* test_sim_expert — the scripted expert solves every task (>= 95% over 20 seeded
 * episodes per task, both arms) in lockstep without a daemon, and reacts to world changes
 * at once; an expert planning on a 4-tick-stale world loses track episodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>

#include "run.h"

static void run(const char *profile, int episodes, int delay, int *succ, double *lat_max) {
    static vlad_profile p;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, profile, &err), VLAD_OK);
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.expert = true;
    o.expert_delay = delay;
    o.episodes = episodes;
    o.seed = 1234;
    vlad_sim_results r;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_OK);
    for (int k = 0; k < VLAD_TASK_COUNT; k++) {
        succ[k] = 0;
        lat_max[k] = -1;
    }
    for (int i = 0; i < r.n; i++) {
        const vlad_episode_result *e = &r.ep[i];
        succ[e->task] += e->success;
        assert_int_equal(e->stall_ticks, 0);
        if (e->world_changes > 0) {
            /* every change gets a reaction, except one on the episode's very last tick */
            assert_true(e->reactions == e->world_changes ||
                        (e->task == VLAD_TASK_TRACK && e->reactions == e->world_changes - 1));
            if (e->latency_max_ticks > lat_max[e->task])
                lat_max[e->task] = e->latency_max_ticks;
        } else {
            assert_true(isnan(e->latency_mean_ticks));
        }
        assert_true(isfinite(e->jerk) && e->jerk > 0);
    }
    vlad_sim_results_free(&r);
}

static void test_expert_success(void **st) {
    (void)st;
    const char *profiles[] = {"configs/sim-arm.yaml", "configs/sim-arm3.yaml"};
    for (int i = 0; i < 2; i++) {
        int succ[VLAD_TASK_COUNT];
        double lat[VLAD_TASK_COUNT];
        run(profiles[i], 20, 0, succ, lat);
        for (int k = 0; k < VLAD_TASK_COUNT; k++) {
            printf("  %s %s: %d/20\n", profiles[i], vlad_task_name((vlad_task_kind)k), succ[k]);
            assert_true(succ[k] >= 19);
        }
        assert_true(lat[VLAD_TASK_TRACK] == 0);
        assert_true(lat[VLAD_TASK_WHACK] == 0);
    }
}

static void test_stale_expert_loses_track(void **st) {
    (void)st;
    int succ[VLAD_TASK_COUNT];
    double lat[VLAD_TASK_COUNT];
    run("configs/sim-arm.yaml", 20, 4, succ, lat);
    printf("  4-tick-stale expert: track %d/20, whack %d/20\n", succ[VLAD_TASK_TRACK], succ[VLAD_TASK_WHACK]);
    assert_true(succ[VLAD_TASK_TRACK] <= 17); /* loses >= 10 points */
    assert_true(lat[VLAD_TASK_TRACK] == 4);   /* reaction latency = its delay */
    assert_true(lat[VLAD_TASK_WHACK] == 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expert_success),
        cmocka_unit_test(test_stale_expert_loses_track),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
