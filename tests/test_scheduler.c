/* Schedulers and roll-forward, each mode driven through a synthetic closed loop:
 * the synthetic policy, the tick-keyed queue, an emulated inference delay of Δ ticks
 * and a robot that tracks its targets with a first-order lag. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler.h"
#include "synthetic.h"

static vlad_profile prof;

static double g_merge_weight = 0.7; /* async.merge_weight of the next load() */

static void load(const char *mode, int K, int threshold, double lag_ms) {
    char y[1024];
    snprintf(y, sizeof y,
             "robot: r\ncontrol_hz: 50\njoints:\n"
             "  - {name: a, min: -2, max: 2, max_velocity: 10}\n"
             "  - {name: b, min: -2, max: 2, max_velocity: 10, home: 0.5}\n"
             "async: {mode: %s, execution_horizon: %d, trigger_threshold: %d, delay_margin: 0, "
             "tracking_lag_ms: %g, merge_weight: %.17g}\n",
             mode, K, threshold, lag_ms, g_merge_weight);
    vlad_err err;
    if (vlad_profile_load_string(&prof, y, strlen(y), "s.yaml", &err))
        fail_msg("%s", err.msg);
}

static vlad_chunk mk(uint64_t id, int64_t start, int len, float v0) {
    vlad_chunk c;
    memset(&c, 0, sizeof c);
    c.id = id, c.start_tick = start, c.len = len, c.dim = 2;
    for (int i = 0; i < len; i++)
        c.values[2 * i] = v0 + (float)i, c.values[2 * i + 1] = -(v0 + (float)i);
    return c;
}

static void test_rollforward(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk c = mk(1, 10, 5, 100); /* ticks 10..14 */
    vlad_aq_push(&q, &c, NULL);
    double cmd[2] = {7, -7}, meas[2] = {6, -6}, out[2];
    /* the state at tick 13 is the target pending at 12 */
    vlad_rollforward(&q, 10, 13, cmd, meas, 1.0, 2, out);
    assert_true(out[0] == 102 && out[1] == -102);
    /* a start beyond the queue holds its last target */
    vlad_rollforward(&q, 10, 20, cmd, meas, 1.0, 2, out);
    assert_true(out[0] == 104);
    /* start == now: nothing pending, the last commanded target */
    vlad_rollforward(&q, 10, 10, cmd, meas, 1.0, 2, out);
    assert_true(out[0] == 7 && out[1] == -7);
    /* ticks before the queue begins hold cmd */
    vlad_rollforward(&q, 8, 10, cmd, meas, 1.0, 2, out);
    assert_true(out[0] == 7);
    /* tracking lag: from the measured state, halfway to each target per tick */
    vlad_rollforward(&q, 10, 12, cmd, meas, 0.5, 2, out);
    double x = 6;
    x += 0.5 * (100 - x);
    x += 0.5 * (101 - x);
    assert_true(fabs(out[0] - x) < 1e-9);
}

static void test_want_conditions(void **state) {
    (void)state;
    vlad_sched s;
    vlad_action_queue q;
    vlad_infer_req r;
    double obs[2] = {0.1, 0.2}, cmd[2] = {0.3, 0.4};
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk c = mk(1, 0, 10, 0);
    vlad_aq_push(&q, &c, NULL);

    load("sync", 10, 0, 0);
    assert_int_equal(vlad_sched_init(&s, &prof, 16, 2, NULL), 0);
    assert_false(vlad_sched_want(&s, &q, 9, obs, 9, cmd, 3, false, &r)); /* one left */
    assert_true(vlad_sched_want(&s, &q, 10, obs, 10, cmd, 3, false, &r)); /* empty */
    assert_int_equal(r.start_tick, -1);
    assert_int_equal(r.len, 10);
    assert_true(r.state[0] == 0.1f);
    assert_false(vlad_sched_want(&s, &q, 10, obs, 10, cmd, 3, true, &r)); /* busy */

    load("naive", 10, 2, 0);
    vlad_sched_init(&s, &prof, 16, 2, NULL);
    assert_false(vlad_sched_want(&s, &q, 6, obs, 6, cmd, 3, false, &r)); /* 4 left > max(2,3) */
    assert_true(vlad_sched_want(&s, &q, 7, obs, 7, cmd, 3, false, &r));  /* 3 left */
    assert_int_equal(r.start_tick, 7);                                   /* the obs tick */
    assert_int_equal(r.len, 13);                                         /* K + Δ */
    assert_true(r.state[1] == 0.2f);

    /* merge: naive's trigger, conditioning, placement and length */
    load("merge", 10, 2, 0);
    vlad_sched_init(&s, &prof, 16, 2, NULL);
    assert_true(s.merge_weight == 0.7); /* the default: LeRobot's weighted_average */
    assert_false(vlad_sched_want(&s, &q, 6, obs, 6, cmd, 3, false, &r));
    assert_true(vlad_sched_want(&s, &q, 7, obs, 5, cmd, 3, false, &r));
    assert_int_equal(r.start_tick, 5); /* the obs tick */
    assert_int_equal(r.obs_tick, 5);
    assert_int_equal(r.len, 13);
    assert_true(r.state[0] == 0.1f && r.state[1] == 0.2f); /* observed, not rolled forward */
    assert_false(vlad_sched_want(&s, &q, 7, obs, 5, cmd, 3, true, &r)); /* busy */
    /* async.merge_weight: [0, 1], what the profile says reaches the scheduler */
    vlad_err err;
    assert_int_equal(vlad_profile_set(&prof, "async.merge_weight", "0.3", &err), 0);
    vlad_sched_init(&s, &prof, 16, 2, NULL);
    assert_true(s.merge_weight == 0.3);
    assert_int_equal(vlad_profile_set(&prof, "async.merge_weight", "1", &err), 0);
    assert_int_equal(vlad_profile_set(&prof, "async.merge_weight", "0", &err), 0);
    assert_int_equal(vlad_profile_set(&prof, "async.merge_weight", "1.01", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "async.merge_weight"));
    assert_int_equal(vlad_profile_set(&prof, "async.merge_weight", "-0.1", &err), VLAD_EINVAL);
    assert_int_equal(vlad_profile_set(&prof, "async.mode", "merge", &err), 0);
    assert_int_equal(prof.async.mode, VLAD_ASYNC_MERGE);
    assert_string_equal(vlad_async_mode_name(VLAD_ASYNC_MERGE), "merge");

    load("vlash", 10, 2, 0);
    vlad_sched_init(&s, &prof, 16, 2, NULL);
    assert_true(vlad_sched_want(&s, &q, 7, obs, 6, cmd, 3, false, &r));
    assert_int_equal(r.start_tick, 10);          /* right after the queued actions */
    assert_int_equal(r.obs_tick, 6);
    assert_int_equal(r.len, 10);
    assert_true(r.state[0] == 9.0f && r.state[1] == -9.0f); /* target pending at tick 9 */
    assert_int_equal(r.id, 1);
    /* empty queue: start Δ ticks ahead, holding the last command until then */
    vlad_action_queue e;
    vlad_aq_init(&e, 2, NULL);
    assert_true(vlad_sched_want(&s, &e, 50, obs, 50, cmd, 3, false, &r));
    assert_int_equal(r.start_tick, 53);
    assert_true(r.state[0] == 0.3f);
    assert_int_equal(r.id, 2);
    /* threshold = K: re-plan whenever idle; the chunk supersedes the queue from now+Δ */
    load("vlash", 10, 10, 0);
    vlad_sched_init(&s, &prof, 16, 2, NULL);
    assert_true(vlad_sched_want(&s, &q, 2, obs, 2, cmd, 3, false, &r)); /* 8 queued */
    assert_int_equal(r.start_tick, 5);
    assert_true(r.state[0] == 4.0f); /* the target pending at tick 4 */
    /* the model's horizon bounds K */
    load("vlash", 40, 2, 0);
    vlad_sched_init(&s, &prof, 16, 2, NULL);
    assert_int_equal(s.K, 16);
    assert_int_equal(vlad_sched_init(&s, &prof, 16, 3, NULL), VLAD_EINVAL); /* dim != joints */
}

static void test_place(void **state) {
    (void)state;
    vlad_sched s;
    load("sync", 4, 0, 0);
    vlad_sched_init(&s, &prof, 8, 2, NULL);
    float acts[16];
    for (int i = 0; i < 16; i++)
        acts[i] = (float)i;
    vlad_infer_req r = {.id = 5, .obs_tick = 20, .start_tick = -1, .len = 4};
    vlad_chunk c;
    vlad_sched_place(&s, &r, acts, 23, &c);
    assert_int_equal(c.start_tick, 23); /* sync: where it lands */
    assert_int_equal(c.len, 4);
    assert_int_equal(c.id, 5);
    assert_true(c.values[7] == 7.0f);
    r.start_tick = 21;
    vlad_sched_place(&s, &r, acts, 23, &c);
    assert_int_equal(c.start_tick, 21); /* planned start kept: the queue drops past ticks */
}

/* closed loop ------------------------------------------------------------------------- */
typedef struct loop_stats {
    int stalls, chunks;
    double max_jump, sum_jump; /* |change of commanded target| per tick */
    int misaligned;            /* vlash chunks not starting where the previous ended */
    int blended;               /* merge: ticks blended with an older chunk */
    double targets[400][2];    /* the commanded target per tick (runs of at most 400) */
} loop_stats;

typedef struct loop {
    vlad_sched s;
    vlad_action_queue q;
    const char *mode;
    bool busy;
    vlad_infer_req req;
    float acts[VLAD_AQ_MAX_H * 2];
    int64_t ready, prev_end;
    loop_stats st;
} loop;

/* install the in-flight chunk if its delay has passed */
static void try_install(loop *L, int64_t t) {
    if (!L->busy || t < L->ready)
        return;
    static vlad_chunk c;
    vlad_sched_place(&L->s, &L->req, L->acts, t, &c);
    if (L->prev_end >= 0 && strcmp(L->mode, "vlash") == 0 && c.start_tick != L->prev_end)
        L->st.misaligned++;
    if (L->s.mode == VLAD_ASYNC_MERGE) { /* what the control thread does before the gate */
        int n;
        assert_int_equal(vlad_aq_merge(&L->q, &c, L->s.merge_weight, &n, NULL), 0);
        L->st.blended += n;
    }
    assert_int_equal(vlad_aq_push(&L->q, &c, NULL), 0);
    L->prev_end = c.start_tick + c.len;
    L->busy = false;
    L->st.chunks++;
}

static loop_stats run_loop_th(const char *mode, int K, int threshold, int delta, int ticks,
                              double lag_ms) {
    static loop L;
    memset(&L, 0, sizeof L);
    L.mode = mode;
    L.prev_end = -1;
    assert_true(ticks <= 400);
    load(mode, K, threshold, lag_ms);
    vlad_synthetic pol;
    vlad_synthetic_init(&pol, &prof);
    vlad_policy_ops ops;
    vlad_synthetic_ops(&pol, &ops);
    assert_int_equal(vlad_sched_init(&L.s, &prof, ops.horizon, 2, NULL), 0);
    vlad_aq_init(&L.q, 2, NULL);
    double x[2] = {0, 0.5}, cmd[2] = {0, 0.5};
    double alpha = 1.0 - exp(-(1.0 / 50.0) / 0.06); /* the robot lags its targets by ~60 ms */
    for (int64_t t = 0; t < ticks; t++) {
        try_install(&L, t);
        if (!L.busy && vlad_sched_want(&L.s, &L.q, t, x, t, cmd, delta, false, &L.req)) {
            vlad_infer_job job = {.req = L.req};
            ops.infer(ops.self, &job, L.acts, NULL);
            L.busy = true;
            L.ready = t + delta;
            try_install(&L, t); /* zero delay: usable for this very tick */
        }
        const float *a = vlad_aq_get(&L.q, t, NULL, NULL);
        if (a) {
            double j = fmax(fabs(a[0] - cmd[0]), fabs(a[1] - cmd[1]));
            L.st.max_jump = fmax(L.st.max_jump, j);
            L.st.sum_jump += j;
            cmd[0] = a[0], cmd[1] = a[1];
        } else {
            L.st.stalls++;
        }
        L.st.targets[t][0] = cmd[0], L.st.targets[t][1] = cmd[1];
        for (int k = 0; k < 2; k++)
            x[k] += alpha * (cmd[k] - x[k]);
    }
    return L.st;
}

static loop_stats run_loop(const char *mode, int K, int delta, int ticks, double lag_ms) {
    return run_loop_th(mode, K, 0, delta, ticks, lag_ms);
}

static void test_loop_sync_stalls(void **state) {
    (void)state;
    loop_stats s0 = run_loop("sync", 10, 0, 400, 0);
    assert_int_equal(s0.stalls, 0); /* instant inference: no stall */
    loop_stats s4 = run_loop("sync", 10, 4, 400, 0);
    /* every chunk waits Δ ticks: (K + Δ) ticks per K actions */
    assert_true(s4.chunks >= 400 / 14 - 1 && s4.chunks <= 400 / 14 + 1);
    assert_true(abs(s4.stalls - 4 * s4.chunks) <= 4);
}

static void test_loop_async_no_stalls(void **state) {
    (void)state;
    for (int d = 1; d <= 8; d *= 2) {
        loop_stats n = run_loop("naive", 10, d, 400, 0);
        loop_stats v = run_loop("vlash", 10, d, 400, 0);
        printf("# Δ=%d naive: stalls %d chunks %d max jump %.4f | vlash: stalls %d chunks %d max "
               "jump %.4f\n",
               d, n.stalls, n.chunks, n.max_jump, v.stalls, v.chunks, v.max_jump);
        /* the first chunk waits Δ ticks; after that, never (Δ < K) */
        assert_true(n.stalls <= d);
        assert_true(v.stalls <= d);
        assert_int_equal(v.misaligned, 0); /* each VLASH chunk starts where the last ended */
        /* VLASH continues from the pending target: chunk boundaries are smoother */
        assert_true(v.max_jump < n.max_jump);
        assert_true(v.chunks >= 400 / 10 - 2);
    }
}

/* merge re-plans with an overlap (threshold > Δ): never stalls after the first chunk, blends
 * on every overlap, and its chunk boundaries are smoother than naive's at the same trigger;
 * weight 1 is naive exactly; with threshold 0 there is no overlap and merge is naive. */
static void test_loop_merge(void **state) {
    (void)state;
    static loop_stats n, m, m1, z, nz;
    for (int d = 1; d <= 4; d *= 2) {
        n = run_loop_th("naive", 10, 6, d, 400, 0);
        g_merge_weight = 0.7;
        m = run_loop_th("merge", 10, 6, d, 400, 0);
        g_merge_weight = 1.0;
        m1 = run_loop_th("merge", 10, 6, d, 400, 0);
        g_merge_weight = 0.7;
        z = run_loop_th("merge", 10, 0, d, 400, 0);
        nz = run_loop_th("naive", 10, 0, d, 400, 0);
        printf("# Δ=%d naive: stalls %d chunks %d max jump %.4f sum %.4f | merge 0.7: stalls %d "
               "chunks %d blended %d max jump %.4f sum %.4f\n",
               d, n.stalls, n.chunks, n.max_jump, n.sum_jump, m.stalls, m.chunks, m.blended,
               m.max_jump, m.sum_jump);
        assert_true(m.stalls <= d);
        assert_int_equal(m.chunks, n.chunks); /* the same trigger */
        /* each chunk after the first overlaps the 6 - Δ actions still queued when it lands */
        assert_int_equal(m.blended, (m.chunks - 1) * (6 - d));
        /* the largest step between ticks once the first chunk runs (its start is a jump from
         * the initial target in both) */
        double jn = 0, jm = 0;
        for (int t = 20; t < 400; t++)
            for (int j = 0; j < 2; j++) {
                jn = fmax(jn, fabs(n.targets[t][j] - n.targets[t - 1][j]));
                jm = fmax(jm, fabs(m.targets[t][j] - m.targets[t - 1][j]));
            }
        printf("#   max step after tick 20: naive %.4f, merge %.4f\n", jn, jm);
        assert_true(jm < jn);
        assert_true(m.sum_jump < n.sum_jump);
        assert_memory_equal(m1.targets, n.targets, sizeof n.targets); /* w = 1: naive */
        assert_int_equal(z.blended, 0);
        assert_memory_equal(z.targets, nz.targets, sizeof nz.targets);
    }
}

static void test_loop_vlash_late_chunk(void **state) {
    (void)state;
    /* Δ estimate 2 but the real delay 5: chunks arrive late and are aligned by tick */
    load("vlash", 10, 0, 0);
    vlad_sched s;
    vlad_synthetic pol;
    vlad_synthetic_init(&pol, &prof);
    vlad_policy_ops ops;
    vlad_synthetic_ops(&pol, &ops);
    vlad_sched_init(&s, &prof, ops.horizon, 2, NULL);
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk first = mk(99, 0, 10, 0);
    vlad_aq_push(&q, &first, NULL);
    double x[2] = {0}, cmd[2] = {0};
    vlad_infer_req req;
    for (int t = 0; t < 8; t++)
        vlad_aq_get(&q, t, NULL, NULL);
    assert_true(vlad_sched_want(&s, &q, 8, x, 8, cmd, 2, false, &req));
    assert_int_equal(req.start_tick, 10);
    float acts[VLAD_AQ_MAX_H * 2];
    vlad_infer_job job = {.req = req};
    ops.infer(ops.self, &job, acts, NULL);
    for (int t = 8; t < 13; t++)
        vlad_aq_get(&q, t, NULL, NULL); /* ticks 10..12 find nothing: it is late */
    vlad_chunk c;
    vlad_sched_place(&s, &req, acts, 13, &c);
    vlad_aq_push(&q, &c, NULL);
    const float *a = vlad_aq_get(&q, 13, NULL, NULL);
    assert_non_null(a);
    assert_true(a[0] == acts[3 * 2]); /* index 13 - 10 = 3 */
}

/* A start tick far beyond now (a bad delay estimate, a stalled clock) rolls at most the
 * queue's span: it returns at once, with the last queued target (lag 1), or the state run
 * toward it (lag < 1); an empty queue holds cmd. */
static void test_rollforward_far_start(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk c = mk(1, 10, 5, 100); /* ticks 10..14, last 104 / -104 */
    vlad_aq_push(&q, &c, NULL);
    double cmd[2] = {7, -7}, meas[2] = {6, -6}, out[2];
    const int64_t starts[] = {10 + 1000000, INT64_MAX / 4, INT64_MAX / 2, INT64_MAX};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        out[0] = out[1] = NAN;
        vlad_rollforward(&q, 10, starts[i], cmd, meas, 1.0, 2, out);
        assert_true(out[0] == 104 && out[1] == -104);
        vlad_rollforward(&q, 10, starts[i], cmd, NULL, 1.0, 2, out);
        assert_true(out[0] == 104 && out[1] == -104);
        /* with a tracking lag the state converges to the held target */
        vlad_rollforward(&q, 10, starts[i], cmd, meas, 0.5, 2, out);
        assert_true(fabs(out[0] - 104) < 1e-9 && fabs(out[1] + 104) < 1e-9);
    }
    /* now far along as well (a long-running daemon), nothing queued that far: cmd holds */
    vlad_rollforward(&q, 1000000000000, 1000000000000 + 1000000, cmd, meas, 1.0, 2, out);
    assert_true(out[0] == 7 && out[1] == -7);
    vlad_action_queue e;
    vlad_aq_init(&e, 2, NULL);
    vlad_rollforward(&e, 0, INT64_MAX / 4, cmd, meas, 1.0, 2, out);
    assert_true(out[0] == 7 && out[1] == -7);
    vlad_rollforward(&e, 0, INT64_MAX / 4, cmd, meas, 0.25, 2, out);
    assert_true(fabs(out[0] - 7) < 1e-9 && fabs(out[1] + 7) < 1e-9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollforward),      cmocka_unit_test(test_want_conditions),
        cmocka_unit_test(test_place),            cmocka_unit_test(test_loop_sync_stalls),
        cmocka_unit_test(test_loop_async_no_stalls), cmocka_unit_test(test_loop_vlash_late_chunk),
        cmocka_unit_test(test_rollforward_far_start), cmocka_unit_test(test_loop_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
