/* The daemon with the built-in synthetic policy, in lockstep against a scripted robot,
 * for each scheduler: actions come from chunks (chunk id, observation tick), chunks are
 * published and carry exactly the values executed, sync stalls Δ ticks per chunk, naive,
 * VLASH and merge never stall after the first chunk, VLASH starts each chunk where the last
 * ended, merge (re-planning with an overlap) is smoother than naive at the same trigger and
 * is naive with weight 1, and a lockstep run is bit-identical when repeated. */
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
#include "harness.h"
#include "proc.h"

#define TICKS 160
#define K 10
#define DELTA 2 /* min_latency 40 ms at 50 Hz */

#define MAX_SEEN 128 /* chunks kept per run */
#define SEEN_LEN 64  /* actions kept per chunk */

typedef struct seen_chunk {
    uint64_t id;
    int64_t start;
    int len;
    float values[SEEN_LEN][2];
} seen_chunk;

typedef struct run_result {
    int stalls_after_first;  /* non-POLICY actions after the first POLICY one */
    int policy_actions, chunks_seen, vlash_gaps;
    double targets[TICKS][2];
    uint64_t chunk_of[TICKS];
    int64_t obs_of[TICKS];
    bool clamped[TICKS];
    int n_kept;
    seen_chunk kept[MAX_SEEN]; /* the chunks published, in order */
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
        const Vlad__ActionChunk *ch = m->u.chunk;
        assert_true(cs->out->n_kept < MAX_SEEN);
        assert_int_equal(ch->dim, 2);
        assert_int_equal(ch->n_values, (size_t)ch->horizon * 2);
        seen_chunk *k = &cs->out->kept[cs->out->n_kept++];
        k->id = ch->chunk_id;
        k->start = ch->start_tick;
        k->len = ch->horizon < SEEN_LEN ? (int)ch->horizon : SEEN_LEN;
        memcpy(k->values, ch->values, sizeof(float) * 2 * (size_t)k->len);
    }
    vlad_msg_clear(m);
}

static void run_with(const char *mode, int threshold, double merge_weight, run_result *out) {
    memset(out, 0, sizeof *out);
    char dir[64];
    vh_tmpdir(dir, sizeof dir, "async");
    char path[128], logp[128];
    snprintf(path, sizeof path, "%s/p.yaml", dir);
    snprintf(logp, sizeof logp, "%s/vlad.log", dir);
    vh_write_file(path,
                  "robot: lockbot\ncontrol_hz: 50\nclock: lockstep\n"
                  "joints:\n  - {name: a, min: -2, max: 2, max_velocity: 20}\n"
                  "  - {name: b, min: -2, max: 2, max_velocity: 20, home: 0.5}\n"
                  "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
                  "  control: ipc://%s/ctl\n"
                  "policy: {synthetic: true, min_latency_ms: %d}\n"
                  "async: {mode: %s, execution_horizon: %d, trigger_threshold: %d, delay_margin: 0, "
                  "merge_weight: %.17g}\n"
                  "safety: {max_delta_per_tick: 1.0}\n",
                  dir, dir, dir, DELTA * 20, mode, K, threshold, merge_weight);
    static vlad_profile p;
    vh_load_profile(&p, path);
    daemon_pid = vh_start("vlad", path, logp, NULL);
    vlad_err err;
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
        out->clamped[t] = a->clamped;
        /* the robot reaches 60% of the way to each target per tick */
        for (int j = 0; j < 2; j++)
            pos[j] += 0.6 * (a->joint_targets[j] - pos[j]);
        vlad__action__free_unpacked(a, NULL);
    }
    vlad_client_free(c);
    assert_int_equal(vh_stop(&daemon_pid, 5000), 0);
    assert_int_equal(vh_rmdir(dir), 0);
}

static void run(const char *mode, run_result *out) { run_with(mode, 0, 0.7, out); }

/* Every policy action the safety gate left as it was is exactly the value the chunk it came
 * from was published with for that tick (ActionChunk carries what executes: in merge mode
 * the blended values). Returns the number of actions checked. */
static int check_published_is_executed(const char *mode, const run_result *r) {
    int checked = 0;
    for (int t = 0; t < TICKS; t++) {
        if (!r->chunk_of[t] || r->clamped[t])
            continue;
        const seen_chunk *k = NULL;
        for (int i = 0; i < r->n_kept; i++)
            if (r->kept[i].id == r->chunk_of[t])
                k = &r->kept[i];
        if (!k)
            fail_msg("%s: tick %d: chunk %llu was never published", mode, t,
                     (unsigned long long)r->chunk_of[t]);
        if (t < k->start || t >= k->start + k->len)
            fail_msg("%s: tick %d outside its chunk %llu's [%lld, +%d)", mode, t,
                     (unsigned long long)k->id, (long long)k->start, k->len);
        for (int j = 0; j < 2; j++)
            if ((float)r->targets[t][j] != k->values[t - k->start][j])
                fail_msg("%s: tick %d joint %d executed %.9g, chunk %llu published %.9g", mode, t, j,
                         r->targets[t][j], (unsigned long long)k->id, (double)k->values[t - k->start][j]);
        checked++;
    }
    return checked;
}

/* the largest change of the target between consecutive ticks, and their sum, from tick `from` */
static void steps(const run_result *r, int from, double *max, double *sum) {
    *max = *sum = 0;
    for (int t = from; t < TICKS; t++) {
        double d = fmax(fabs(r->targets[t][0] - r->targets[t - 1][0]),
                        fabs(r->targets[t][1] - r->targets[t - 1][1]));
        *max = fmax(*max, d);
        *sum += d;
    }
}

static run_result r_sync, r_naive, r_vlash, r_vlash2;
static run_result r_naive_o, r_merge, r_merge2, r_merge1;

static void test_sync(void **state) {
    (void)state;
    run("sync", &r_sync);
    printf("# sync: %d policy actions, %d stalls after the first chunk, %d chunks\n",
           r_sync.policy_actions, r_sync.stalls_after_first, r_sync.chunks_seen);
    /* every chunk after the first is preceded by Δ held ticks */
    assert_true(r_sync.chunks_seen >= TICKS / (K + DELTA) - 1);
    assert_true(abs(r_sync.stalls_after_first - DELTA * (r_sync.chunks_seen - 1)) <= DELTA);
    assert_true(check_published_is_executed("sync", &r_sync) > 0);
}

static void test_naive(void **state) {
    (void)state;
    run("naive", &r_naive);
    printf("# naive: %d policy actions, %d stalls, %d chunks\n", r_naive.policy_actions,
           r_naive.stalls_after_first, r_naive.chunks_seen);
    assert_int_equal(r_naive.stalls_after_first, 0);
    assert_int_equal(r_naive.policy_actions, TICKS - DELTA);
    assert_true(check_published_is_executed("naive", &r_naive) > 0);
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
    assert_true(check_published_is_executed("vlash", &r_vlash) > 0);
}

/* LeRobot's merge at a trigger that leaves an overlap (threshold 6 > Δ: each chunk lands with
 * 6 - Δ actions of the previous one still queued, blended 0.7 new + 0.3 old), against naive at
 * the same trigger. */
#define MERGE_TH 6
static void test_merge(void **state) {
    (void)state;
    run_with("naive", MERGE_TH, 0.7, &r_naive_o);
    run_with("merge", MERGE_TH, 0.7, &r_merge);
    double mn, sn, mm, sm;
    steps(&r_naive_o, 3 * K, &mn, &sn); /* past the first chunks' start from the robot's pose */
    steps(&r_merge, 3 * K, &mm, &sm);
    printf("# merge: %d policy actions, %d stalls, %d chunks; max step %.5f (naive %.5f), sum "
           "%.5f (naive %.5f)\n",
           r_merge.policy_actions, r_merge.stalls_after_first, r_merge.chunks_seen, mm, mn, sm, sn);
    assert_int_equal(r_merge.stalls_after_first, 0);
    assert_int_equal(r_merge.policy_actions, TICKS - DELTA);
    assert_int_equal(r_merge.chunks_seen, r_naive_o.chunks_seen); /* naive's trigger */
    /* a chunk every K - (threshold - Δ) ticks: it re-plans with an overlap */
    assert_true(r_merge.chunks_seen >= TICKS / (K - MERGE_TH + DELTA) - 1);
    /* naive's conditioning and placement: each chunk from the observation's tick */
    for (int i = 1; i < r_merge.n_kept; i++)
        assert_true(r_merge.kept[i].start > r_merge.kept[i - 1].start);
    for (int t = DELTA; t < TICKS; t++)
        assert_true(r_merge.obs_of[t] <= t - DELTA);
    /* the blend changed what executes, and what is published says so */
    assert_memory_not_equal(r_merge.targets, r_naive_o.targets, sizeof r_merge.targets);
    assert_true(check_published_is_executed("merge", &r_merge) > TICKS / 2);
    assert_true(check_published_is_executed("naive", &r_naive_o) > TICKS / 2);
    /* smoother chunk boundaries: a smaller largest step and less total motion */
    assert_true(mm < mn);
    assert_true(sm < sn);
    /* deterministic */
    run_with("merge", MERGE_TH, 0.7, &r_merge2);
    assert_memory_equal(r_merge.targets, r_merge2.targets, sizeof r_merge.targets);
    assert_memory_equal(r_merge.chunk_of, r_merge2.chunk_of, sizeof r_merge.chunk_of);
    /* weight 1 keeps only the newest: naive, bit for bit */
    run_with("merge", MERGE_TH, 1.0, &r_merge1);
    assert_memory_equal(r_merge1.targets, r_naive_o.targets, sizeof r_merge1.targets);
    assert_memory_equal(r_merge1.chunk_of, r_naive_o.chunk_of, sizeof r_merge1.chunk_of);
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
        cmocka_unit_test_teardown(test_vlash, teardown), cmocka_unit_test_teardown(test_merge, teardown),
        cmocka_unit_test_teardown(test_lockstep_deterministic, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
