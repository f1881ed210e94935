/* test_sim_expert — the scripted expert solves every task (>= 95% over 20 seeded
 * episodes per task, both arms) in lockstep without a daemon, and reacts to world changes
 * at once; an expert planning on a 4-tick-stale world, or open loop 10 ticks at a time, loses
 * track episodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>

#include "run.h"

static uint64_t run_chunked(const char *profile, int episodes, int delay, int chunk, int *succ,
                            double *lat_max) {
    static vlad_profile p;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, profile, &err), VLAD_OK);
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.expert = true;
    o.expert_delay = delay;
    o.expert_chunk = chunk;
    o.episodes = episodes;
    o.seed = 1234;
    vlad_sim_results r;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_OK);
    uint64_t h = 1469598103934665603ull; /* the episodes' trajectory hashes, combined */
    for (int k = 0; k < VLAD_TASK_COUNT; k++) {
        succ[k] = 0;
        lat_max[k] = -1;
    }
    for (int i = 0; i < r.n; i++) {
        const vlad_episode_result *e = &r.ep[i];
        succ[e->task] += e->success;
        assert_int_equal(e->stall_ticks, 0);
        if (e->world_changes > 0) {
            /* every change gets a reaction, except one on the episode's very last tick (or,
             * planning in chunks, those in its last chunk) */
            if (chunk > 0)
                assert_true(e->reactions <= e->world_changes && e->reactions > 0);
            else
                assert_true(e->reactions == e->world_changes ||
                            (e->task == VLAD_TASK_TRACK && e->reactions == e->world_changes - 1));
            if (e->latency_max_ticks > lat_max[e->task])
                lat_max[e->task] = e->latency_max_ticks;
        } else {
            assert_true(isnan(e->latency_mean_ticks));
        }
        assert_true(isfinite(e->jerk) && e->jerk > 0);
        h = (h ^ e->traj_hash) * 1099511628211ull;
    }
    vlad_sim_results_free(&r);
    return h;
}

static void run(const char *profile, int episodes, int delay, int *succ, double *lat_max) {
    run_chunked(profile, episodes, delay, 0, succ, lat_max);
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

/* --expert-chunk K: the expert plans K ticks on a forecast of the present and runs the plan
 * open loop. K = 1 is replanning every tick (identical trajectories); at K = 10 a change is
 * seen only at the next plan (reaction up to K - 1 ticks) and track is lost even though each
 * plan starts from the exact present: the open-loop bound for a policy executing 10 actions. */
static void test_chunked_expert(void **st) {
    (void)st;
    int succ[VLAD_TASK_COUNT], succ1[VLAD_TASK_COUNT];
    double lat[VLAD_TASK_COUNT], lat1[VLAD_TASK_COUNT];
    uint64_t h0 = run_chunked("configs/sim-arm.yaml", 5, 0, 0, succ, lat);
    uint64_t h1 = run_chunked("configs/sim-arm.yaml", 5, 0, 1, succ1, lat1);
    assert_true(h0 == h1);
    run_chunked("configs/sim-arm.yaml", 20, 0, 10, succ, lat);
    printf("  expert in open-loop chunks of 10: track %d/20, whack %d/20, reach %d/20\n",
           succ[VLAD_TASK_TRACK], succ[VLAD_TASK_WHACK], succ[VLAD_TASK_REACH]);
    assert_true(succ[VLAD_TASK_TRACK] <= 10); /* loses >= 50 points */
    assert_true(succ[VLAD_TASK_REACH] >= 19); /* a static target is not hurt */
    assert_true(lat[VLAD_TASK_WHACK] >= 1 && lat[VLAD_TASK_WHACK] <= 9);
    assert_true(lat[VLAD_TASK_TRACK] >= 1 && lat[VLAD_TASK_TRACK] <= 9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expert_success),
        cmocka_unit_test(test_stale_expert_loses_track),
        cmocka_unit_test(test_chunked_expert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
