/* The daemon with the built-in synthetic policy, in lockstep against a scripted robot,
 * for each scheduler: actions come from chunks (chunk id, observation tick), chunks are
 * published, sync stalls Δ ticks per chunk, naive and VLASH never stall after the first
 * chunk, VLASH starts each chunk where the last ended, and a lockstep run is
 * bit-identical when repeated. */
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
#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "proc.h"

#define TICKS 160
#define K 10
#define DELTA 2 /* min_latency 40 ms at 50 Hz */

typedef struct run_result {
    int stalls_after_first;  /* non-POLICY actions after the first POLICY one */
    int policy_actions, chunks_seen, vlash_gaps;
    double targets[TICKS][2];
    uint64_t chunk_of[TICKS];
    int64_t obs_of[TICKS];
} run_result;

static pid_t daemon_pid = -1; /* killed by the teardown if a test fails midway */

/* the chunks published meanwhile: counted, and under vlash each starts where the last ended */
typedef struct chunk_seen {
    run_result *out;
    const char *mode;
    int64_t prev_end;
} chunk_seen;

static void on_chunk(void *arg, vlad_msg *m) {
    chunk_seen *cs = arg;
    if (m->kind == VLAD_MSG_CHUNK) {
        cs->out->chunks_seen++;
        if (!strcmp(cs->mode, "vlash") && cs->prev_end >= 0 && m->u.chunk->start_tick != cs->prev_end)
            cs->out->vlash_gaps++;
        cs->prev_end = m->u.chunk->start_tick + m->u.chunk->horizon;
        assert_int_equal(m->u.chunk->n_conditioned_state, 2);
    }
    vlad_msg_clear(m);
}

static void run(const char *mode, run_result *out) {
    memset(out, 0, sizeof *out);
    char dir[64] = "/tmp/vlad-async-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], logp[128];
    snprintf(path, sizeof path, "%s/p.yaml", dir);
    snprintf(logp, sizeof logp, "%s/vlad.log", dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "robot: lockbot\ncontrol_hz: 50\nclock: lockstep\n"
            "joints:\n  - {name: a, min: -2, max: 2, max_velocity: 20}\n"
            "  - {name: b, min: -2, max: 2, max_velocity: 20, home: 0.5}\n"
            "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
            "  control: ipc://%s/ctl\n"
            "policy: {synthetic: true, min_latency_ms: %d}\n"
            "async: {mode: %s, execution_horizon: %d, trigger_threshold: 0, delay_margin: 0}\n"
            "safety: {max_delta_per_tick: 1.0}\n",
            dir, dir, dir, DELTA * 20, mode, K);
    fclose(f);
    static vlad_profile p;
    vlad_err err;
    if (vlad_profile_load(&p, path, &err))
        fail_msg("%s", err.msg);
    char *argv[] = {(char *)vlad_proc_bin("vlad"), "--profile", path, NULL};
    pid_t pid = daemon_pid = vlad_proc_start(argv, logp);
    vlad_client *c = vlad_client_new(&p, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_PUBLISH, &err);
    assert_non_null(c);
    double pos[2] = {0, 0.5};
    bool seen_policy = false;
    chunk_seen cs = {out, mode, -1};
    for (int64_t t = 0; t < TICKS; t++) {
        /* obs(t), resent until the daemon answers (the first may meet a slow joiner) */
        Vlad__Observation o = VLAD__OBSERVATION__INIT;
        o.tick = t;
        o.n_joint_pos = 2;
        o.joint_pos = pos;
        Vlad__Action *a = NULL;
        if (vlad_client_lockstep(c, &o, 10000, 200, on_chunk, &cs, &a, &err))
            fail_msg("%s: %s", mode, err.msg);
        bool pol = a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
        if (pol) {
            seen_policy = true;
            out->policy_actions++;
            assert_true(a->chunk_id > 0);
            assert_true(a->obs_tick >= 0 && a->obs_tick <= a->tick);
            assert_true(a->obs_robot_tick >= 0 && a->obs_robot_tick <= t);
        } else if (seen_policy) {
            out->stalls_after_first++;
        }
        out->targets[t][0] = a->joint_targets[0];
        out->targets[t][1] = a->joint_targets[1];
        out->chunk_of[t] = a->chunk_id;
        out->obs_of[t] = a->obs_tick;
        /* the robot reaches 60% of the way to each target per tick */
        for (int j = 0; j < 2; j++)
            pos[j] += 0.6 * (a->joint_targets[j] - pos[j]);
        vlad__action__free_unpacked(a, NULL);
    }
    vlad_client_free(c);
    kill(pid, SIGTERM);
    assert_int_equal(vlad_proc_wait(pid, 5000), 0);
    daemon_pid = -1;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static run_result r_sync, r_naive, r_vlash, r_vlash2;

static void test_sync(void **state) {
    (void)state;
    run("sync", &r_sync);
    printf("# sync: %d policy actions, %d stalls after the first chunk, %d chunks\n",
           r_sync.policy_actions, r_sync.stalls_after_first, r_sync.chunks_seen);
    /* every chunk after the first is preceded by Δ held ticks */
    assert_true(r_sync.chunks_seen >= TICKS / (K + DELTA) - 1);
    assert_true(abs(r_sync.stalls_after_first - DELTA * (r_sync.chunks_seen - 1)) <= DELTA);
}

static void test_naive(void **state) {
    (void)state;
    run("naive", &r_naive);
    printf("# naive: %d policy actions, %d stalls, %d chunks\n", r_naive.policy_actions,
           r_naive.stalls_after_first, r_naive.chunks_seen);
    assert_int_equal(r_naive.stalls_after_first, 0);
    assert_int_equal(r_naive.policy_actions, TICKS - DELTA);
}

static void test_vlash(void **state) {
    (void)state;
    run("vlash", &r_vlash);
    printf("# vlash: %d policy actions, %d stalls, %d chunks, %d gaps\n", r_vlash.policy_actions,
           r_vlash.stalls_after_first, r_vlash.chunks_seen, r_vlash.vlash_gaps);
    assert_int_equal(r_vlash.stalls_after_first, 0);
    assert_int_equal(r_vlash.policy_actions, TICKS - DELTA);
    assert_int_equal(r_vlash.vlash_gaps, 0);
    /* each action's chunk was conditioned on an observation at least Δ ticks older */
    for (int t = DELTA; t < TICKS; t++)
        assert_true(r_vlash.obs_of[t] <= t - DELTA);
}

static void test_lockstep_deterministic(void **state) {
    (void)state;
    run("vlash", &r_vlash2);
    assert_memory_equal(r_vlash.targets, r_vlash2.targets, sizeof r_vlash.targets);
    assert_memory_equal(r_vlash.chunk_of, r_vlash2.chunk_of, sizeof r_vlash.chunk_of);
}

static int teardown(void **state) {
    (void)state;
    if (daemon_pid > 0)
        vlad_proc_kill(daemon_pid);
    daemon_pid = -1;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sync, teardown), cmocka_unit_test_teardown(test_naive, teardown),
        cmocka_unit_test_teardown(test_vlash, teardown),
        cmocka_unit_test_teardown(test_lockstep_deterministic, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
