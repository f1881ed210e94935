/* The tick-keyed action queue: switching at start ticks, past ticks dropped by number,
 * chunks that would alias the timeline refused, a randomized run against a model, and
 * LeRobot's asynchronous merge (vlad_aq_merge). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "action_queue.h"

static vlad_chunk chunk(uint64_t id, int64_t start, int len, float base) {
    vlad_chunk c;
    memset(&c, 0, sizeof c);
    c.id = id, c.start_tick = start, c.obs_tick = start - 2, c.len = len, c.dim = 2;
    for (int i = 0; i < len; i++) {
        c.values[i * 2] = base + (float)i;
        c.values[i * 2 + 1] = -(base + (float)i);
    }
    return c;
}

static void test_empty_and_errors(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    assert_int_equal(vlad_aq_init(&q, 0, &err), VLAD_EINVAL);
    assert_int_equal(vlad_aq_init(&q, 2, &err), 0);
    assert_null(vlad_aq_get(&q, 0, NULL, NULL));
    assert_int_equal(vlad_aq_remaining(&q, 0), 0);
    assert_null(vlad_aq_last(&q, NULL));
    vlad_chunk c = chunk(1, 10, 4, 0);
    c.dim = 3;
    assert_int_equal(vlad_aq_push(&q, &c, &err), VLAD_EINVAL);
    c = chunk(1, 10, 0, 0);
    assert_int_equal(vlad_aq_push(&q, &c, &err), VLAD_EINVAL);
    c = chunk(1, 0, 4, 0);
    c.len = VLAD_AQ_MAX_H;
    vlad_aq_get(&q, VLAD_AQ_CAP - 2, NULL, NULL); /* now far ahead: the chunk is mostly past */
    assert_int_equal(vlad_aq_push(&q, &c, &err), 0);
    assert_int_equal(vlad_aq_remaining(&q, VLAD_AQ_CAP - 1), 0);
    vlad_aq_clear(&q); /* a cleared queue accepts a new timeline from tick 0 */
    c = chunk(1, 3, 4, 0);
    assert_int_equal(vlad_aq_push(&q, &c, &err), 0);
    assert_true(vlad_aq_get(&q, 4, NULL, NULL)[0] == 1);
    vlad_aq_init(&q, 2, NULL);
    c = chunk(1, -1, 4, 0);
    assert_int_equal(vlad_aq_push(&q, &c, &err), VLAD_EINVAL);
}

static void test_single_chunk(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk c = chunk(7, 10, 4, 100);
    assert_int_equal(vlad_aq_push(&q, &c, NULL), 0);
    assert_null(vlad_aq_get(&q, 9, NULL, NULL)); /* before its start */
    assert_int_equal(vlad_aq_remaining(&q, 10), 4);
    uint64_t id;
    int64_t ot;
    const float *a = vlad_aq_get(&q, 10, &id, &ot);
    assert_non_null(a);
    assert_true(a[0] == 100 && a[1] == -100);
    assert_int_equal(id, 7);
    assert_int_equal(ot, 8);
    /* skipping ticks 11, 12: the action for 13 is still the 4th, by tick number */
    a = vlad_aq_get(&q, 13, NULL, NULL);
    assert_true(a[0] == 103);
    assert_int_equal(vlad_aq_remaining(&q, 13), 0); /* used */
    assert_null(vlad_aq_get(&q, 14, NULL, NULL)); /* exhausted */
    assert_int_equal(vlad_aq_remaining(&q, 14), 0);
}

static void test_switch_at_start_tick(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 0, 10, 0), b = chunk(2, 6, 10, 50);
    vlad_aq_push(&q, &a, NULL);
    assert_true(vlad_aq_get(&q, 0, NULL, NULL)[0] == 0);
    vlad_aq_push(&q, &b, NULL); /* lands early: waits for tick 6 */
    assert_int_equal(vlad_aq_remaining(&q, 1), 5 + 10);
    int64_t at;
    assert_true(vlad_aq_last(&q, &at)[0] == 59);
    assert_int_equal(at, 15);
    for (int t = 1; t < 6; t++)
        assert_true(vlad_aq_get(&q, t, NULL, NULL)[0] == (float)t); /* old chunk until 5 */
    uint64_t id;
    assert_true(vlad_aq_get(&q, 6, &id, NULL)[0] == 50);
    assert_int_equal(id, 2);
    assert_int_equal(q.switches, 1);
    assert_true(q.last_discontinuity == 45.0); /* |50 - 5| */
    assert_true(vlad_aq_peek(&q, 7)[0] == 51);
}

static void test_late_chunk_aligned_by_tick(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 0, 5, 0), b = chunk(2, 3, 10, 50);
    vlad_aq_push(&q, &a, NULL);
    for (int t = 0; t < 7; t++)
        vlad_aq_get(&q, t, NULL, NULL); /* ticks 5,6 had nothing */
    vlad_aq_push(&q, &b, NULL);         /* meant to start at 3, arrives at 7 */
    const float *x = vlad_aq_get(&q, 7, NULL, NULL);
    assert_non_null(x);
    assert_true(x[0] == 54); /* index 7-3 = 4: ticks 3..6 are dropped by number */
    assert_int_equal(vlad_aq_remaining(&q, 8), 5);
}

static void test_replace_waiting_and_refuse_older(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 0, 10, 0), b = chunk(2, 5, 10, 50), c = chunk(3, 6, 10, 80);
    vlad_aq_push(&q, &a, NULL);
    vlad_aq_push(&q, &b, NULL);
    vlad_aq_push(&q, &c, NULL); /* supersedes b from tick 6 on */
    assert_int_equal(q.overwritten, 5 + 9);
    assert_true(vlad_aq_get(&q, 4, NULL, NULL)[0] == 4);  /* a until b's start */
    assert_true(vlad_aq_get(&q, 5, NULL, NULL)[0] == 50); /* b for its one tick: c starts at 6 */
    assert_true(vlad_aq_get(&q, 6, NULL, NULL)[0] == 80);
    vlad_chunk old = chunk(4, 2, 10, 0);
    assert_int_equal(vlad_aq_push(&q, &old, &err), VLAD_ESTATE);
    assert_non_null(strstr(err.msg, "before the installed chunk"));
    /* shorter chunk than the gap: a hole after it */
    vlad_chunk s = chunk(5, 20, 2, 0);
    vlad_aq_push(&q, &s, NULL);
    assert_int_equal(vlad_aq_remaining(&q, 10), 6); /* 10..15 of c; then a gap to 20 */
    assert_null(vlad_aq_get(&q, 17, NULL, NULL));
    assert_true(vlad_aq_get(&q, 21, NULL, NULL)[0] == 1);
    vlad_aq_clear(&q);
    assert_null(vlad_aq_get(&q, 21, NULL, NULL));
}

/* A chunk that would end beyond the span of the timeline (start_tick + len > now + CAP) would
 * wrap onto the slots of queued ticks: refused with VLAD_ERANGE, the queue untouched. */
static void test_push_refuses_alias(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 0, 10, 0);
    assert_int_equal(vlad_aq_push(&q, &a, NULL), 0);
    assert_int_equal(vlad_aq_remaining(&q, 0), 10);
    vlad_chunk far = chunk(2, 300, VLAD_AQ_MAX_H, 50); /* ticks 300..555: 512..555 alias 0..43 */
    err.msg[0] = 0;
    assert_int_equal(vlad_aq_push(&q, &far, &err), VLAD_ERANGE);
    assert_non_null(strstr(err.msg, "beyond"));
    assert_int_equal(vlad_aq_remaining(&q, 0), 10);
    for (int t = 0; t < 10; t++) {
        const float *x = vlad_aq_peek(&q, t);
        assert_non_null(x);
        assert_true(x[0] == (float)t && x[1] == -(float)t);
    }
    assert_null(vlad_aq_peek(&q, 300));
    assert_int_equal(q.overwritten, 0);
    int64_t at;
    assert_true(vlad_aq_last(&q, &at)[0] == 9);
    assert_int_equal(at, 9);
    /* the refused chunk did not become the newest: an earlier start is still accepted */
    vlad_chunk b = chunk(3, 5, 3, 80);
    assert_int_equal(vlad_aq_push(&q, &b, &err), 0);
    assert_int_equal(vlad_aq_remaining(&q, 0), 8); /* 0..4 of a, 5..7 of b */
    /* exactly the span is fine; one tick more is not */
    vlad_chunk edge = chunk(4, VLAD_AQ_CAP - VLAD_AQ_MAX_H, VLAD_AQ_MAX_H, 200); /* ends at CAP */
    assert_int_equal(vlad_aq_push(&q, &edge, &err), 0);
    vlad_chunk over = chunk(5, VLAD_AQ_CAP - VLAD_AQ_MAX_H + 1, VLAD_AQ_MAX_H, 300);
    assert_int_equal(vlad_aq_push(&q, &over, &err), VLAD_ERANGE);
    for (int t = 0; t < 5; t++)
        assert_true(vlad_aq_peek(&q, t)[0] == (float)t); /* still intact */
    assert_true(vlad_aq_peek(&q, VLAD_AQ_CAP - 1)[0] == 200 + VLAD_AQ_MAX_H - 1);
    /* once tick 0 is past, the timeline spans one tick further */
    assert_true(vlad_aq_get(&q, 0, NULL, NULL)[0] == 0);
    assert_int_equal(vlad_aq_push(&q, &over, &err), 0);
    assert_true(vlad_aq_get(&q, 1, NULL, NULL)[0] == 1);
    assert_true(vlad_aq_peek(&q, VLAD_AQ_CAP)[0] == 300 + VLAD_AQ_MAX_H - 1);
}

/* A start tick near INT64_MAX is refused as invalid, without overflowing start + len (the
 * sanitizer build aborts on signed overflow). */
static void test_push_refuses_absurd_start(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 0, 10, 0);
    vlad_aq_push(&q, &a, NULL);
    const int64_t starts[] = {INT64_MAX, INT64_MAX - 1, INT64_MAX - VLAD_AQ_MAX_H,
                              INT64_MAX / 2, INT64_MAX / 4 + 1};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        vlad_chunk c = chunk(2, 0, VLAD_AQ_MAX_H, 50);
        c.start_tick = starts[i];
        err.msg[0] = 0;
        assert_int_equal(vlad_aq_push(&q, &c, &err), VLAD_EINVAL);
        assert_true(err.msg[0] != 0);
    }
    vlad_chunk c = chunk(2, 0, VLAD_AQ_MAX_H, 50);
    c.start_tick = INT64_MAX / 4; /* large but arithmetic-safe: merely beyond the span */
    assert_int_equal(vlad_aq_push(&q, &c, &err), VLAD_ERANGE);
    c.start_tick = INT64_MIN;
    assert_int_equal(vlad_aq_push(&q, &c, &err), VLAD_EINVAL);
    assert_int_equal(vlad_aq_remaining(&q, 0), 10);
    assert_int_equal(q.newest_start, 0);
}

/* The robot tick of the observation behind each action travels with it. */
static void test_obs_robot_tick(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 10, 5, 0), b = chunk(2, 12, 5, 50);
    a.obs_robot_tick = 9001, b.obs_robot_tick = 9002;
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 10), -1); /* empty */
    vlad_aq_push(&q, &a, NULL);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 9), -1);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 10), 9001);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 14), 9001);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 15), -1);
    vlad_aq_push(&q, &b, NULL);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 11), 9001);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 12), 9002); /* b supersedes a from 12 on */
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 16), 9002);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 17), -1);
    int64_t ot;
    uint64_t id;
    assert_non_null(vlad_aq_get(&q, 10, &id, &ot));
    assert_int_equal(id, 1);
    assert_int_equal(ot, 8); /* obs_tick = start - 2 (chunk()) */
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 10), -1); /* used */
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 11), 9001);
    vlad_aq_clear(&q);
    assert_int_equal(vlad_aq_obs_robot_tick(&q, 12), -1);
}

/* ---- LeRobot's asynchronous merge (vlad_aq_merge) ----------------------------------- */

/* the documented blend of one value */
static float blend(double w, float n, float o) { return (float)(w * (double)n + (1.0 - w) * (double)o); }

/* A chunk merged over a queue with a known overlap: w·new + (1 − w)·old on the overlap, the
 * new values after it and for past ticks, the queue untouched until the push; after the push
 * the blended ticks belong to the new chunk and the old tail beyond its end is gone. */
static void test_merge_overlap(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    const double ws[] = {0.7, 0.5, 0.3, 1.0, 0.0};
    for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) {
        double w = ws[k];
        vlad_aq_init(&q, 2, NULL);
        vlad_chunk a = chunk(1, 0, 10, 0.25f); /* ticks 0..9: 0.25 + t, -(0.25 + t) */
        assert_int_equal(vlad_aq_push(&q, &a, NULL), 0);
        /* ticks 0..2 pass without being taken, tick 3 is executed: now = 4 */
        assert_true(vlad_aq_get(&q, 3, NULL, NULL)[0] == 3.25f);
        /* conditioned on the observation at tick 2 (index 0 = tick 2): ticks 2, 3 are past */
        vlad_chunk b = chunk(2, 2, 12, 100.5f), orig = b; /* ticks 2..13 */
        int n = -1;
        assert_int_equal(vlad_aq_merge(&q, &b, w, &n, &err), 0);
        assert_int_equal(n, 6); /* ticks 4..9 overlap a */
        for (int i = 0; i < 12; i++) {
            int64_t t = 2 + i;
            for (int j = 0; j < 2; j++) {
                float nv = orig.values[i * 2 + j], got = b.values[i * 2 + j];
                if (t >= 4 && t <= 9) {
                    float ov = a.values[t * 2 + j];
                    assert_true(got == blend(w, nv, ov));
                    if (w == 1.0)
                        assert_true(got == nv); /* the newest only: naive */
                    if (w == 0.0)
                        assert_true(got == ov); /* the old chunk only */
                    if (w > 0.0 && w < 1.0) /* strictly between the two */
                        assert_true(fminf(nv, ov) < got && got < fmaxf(nv, ov));
                } else {
                    assert_true(got == nv); /* past ticks and ticks beyond the old chunk */
                }
            }
        }
        /* merging changes the chunk, never the queue */
        for (int64_t t = 4; t < 10; t++)
            assert_true(vlad_aq_peek(&q, t)[0] == 0.25f + (float)t);
        assert_int_equal(vlad_aq_push(&q, &b, NULL), 0);
        for (int64_t t = 4; t < 14; t++) {
            uint64_t id;
            int64_t ot;
            const float *x = vlad_aq_get(&q, t, &id, &ot);
            assert_non_null(x);
            assert_true(x[0] == b.values[(t - 2) * 2] && x[1] == b.values[(t - 2) * 2 + 1]);
            assert_int_equal(id, 2);
            assert_int_equal(ot, 0); /* the new chunk's observation */
        }
        assert_null(vlad_aq_get(&q, 14, NULL, NULL));

        /* a new chunk ending before the old one: the old tail beyond its end is dropped */
        vlad_aq_init(&q, 2, NULL);
        assert_int_equal(vlad_aq_push(&q, &a, NULL), 0);
        vlad_aq_get(&q, 3, NULL, NULL);
        vlad_chunk s = chunk(3, 4, 3, -5), so = s; /* ticks 4..6 */
        assert_int_equal(vlad_aq_merge(&q, &s, w, &n, &err), 0);
        assert_int_equal(n, 3);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++)
                assert_true(s.values[i * 2 + j] == blend(w, so.values[i * 2 + j], a.values[(4 + i) * 2 + j]));
        assert_int_equal(vlad_aq_push(&q, &s, NULL), 0);
        assert_int_equal(vlad_aq_remaining(&q, 4), 3);
        assert_null(vlad_aq_peek(&q, 7)); /* a's ticks 7..9 are gone */
        assert_null(vlad_aq_peek(&q, 9));
    }
}

/* The overlap is whatever is still queued from the chunk before: a chunk starts at or after
 * the newest start (push refuses earlier), so that is the newest chunk's actions, which end
 * where it ends or at a gap; an empty queue, the same chunk again; each joint of a wider
 * action is blended with its own. */
static void test_merge_ids_holes_dims(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    const double w = 0.7;
    int n = -1;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk e = chunk(1, 0, 5, 1), eo = e;
    assert_int_equal(vlad_aq_merge(&q, &e, w, &n, &err), 0); /* an empty queue: nothing to blend */
    assert_int_equal(n, 0);
    assert_memory_equal(e.values, eo.values, sizeof(float) * 10);

    /* a: ticks 0..9; c: 6..7 supersedes a from 6 (a's 8, 9 gone); d: 10..13 after a gap */
    vlad_chunk a = chunk(1, 0, 10, 0), c = chunk(2, 6, 2, 60), d = chunk(3, 10, 4, 120);
    vlad_aq_push(&q, &a, NULL);
    vlad_aq_push(&q, &c, NULL);
    vlad_aq_get(&q, 4, NULL, NULL); /* now = 5 */
    vlad_chunk m = chunk(4, 6, 6, 500), mo = m; /* ticks 6..11 */
    assert_int_equal(vlad_aq_merge(&q, &m, w, &n, &err), 0);
    assert_int_equal(n, 2); /* 6, 7 of c; nothing at 8..11 */
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 2; j++) {
            float o = (float)(60 + i) * (j ? -1.0f : 1.0f);
            float want = i < 2 ? blend(w, mo.values[i * 2 + j], o) : mo.values[i * 2 + j];
            assert_true(m.values[i * 2 + j] == want);
        }
    assert_int_equal(vlad_aq_push(&q, &d, NULL), 0); /* a gap at 8, 9 */
    vlad_chunk g = chunk(5, 10, 6, 900), go = g;  /* ticks 10..15 over d's 10..13 */
    assert_int_equal(vlad_aq_merge(&q, &g, w, &n, &err), 0);
    assert_int_equal(n, 4);
    for (int i = 0; i < 6; i++) {
        float want = i < 4 ? blend(w, go.values[i * 2], (float)(120 + i)) : go.values[i * 2];
        assert_true(g.values[i * 2] == want);
    }
    /* the same chunk pushed again is not blended with itself */
    assert_int_equal(vlad_aq_push(&q, &g, NULL), 0);
    vlad_chunk again = g;
    assert_int_equal(vlad_aq_merge(&q, &again, w, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_memory_equal(again.values, g.values, sizeof(float) * 12);
    uint64_t id;
    vlad_aq_get(&q, 9, NULL, NULL);
    assert_true(vlad_aq_get(&q, 10, &id, NULL)[0] == g.values[0]);
    assert_int_equal(id, 5); /* the blended tick is the new chunk's */

    /* dim 3: the queue stores actions at a wider stride than the chunk; each joint is its own */
    vlad_aq_init(&q, 3, NULL);
    vlad_chunk a3, b3;
    memset(&a3, 0, sizeof a3);
    a3.id = 1, a3.start_tick = 0, a3.len = 4, a3.dim = 3;
    for (int i = 0; i < 12; i++)
        a3.values[i] = (float)(10 * (i / 3) + (i % 3)); /* tick*10 + joint */
    assert_int_equal(vlad_aq_push(&q, &a3, NULL), 0);
    b3 = a3;
    b3.id = 2, b3.start_tick = 2, b3.len = 4;
    for (int i = 0; i < 12; i++)
        b3.values[i] = (float)(1000 + i);
    vlad_chunk b3o = b3;
    assert_int_equal(vlad_aq_merge(&q, &b3, 0.5, &n, &err), 0);
    assert_int_equal(n, 2); /* ticks 2, 3 */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) {
            float nv = b3o.values[i * 3 + j];
            float want = i < 2 ? blend(0.5, nv, (float)(10 * (2 + i) + j)) : nv;
            assert_true(b3.values[i * 3 + j] == want);
        }
}

/* Merge refuses what push refuses, and a weight outside [0, 1], leaving the chunk as it was;
 * a non-finite new value stays non-finite (for the gate to reject). */
static void test_merge_refusals(void **state) {
    (void)state;
    vlad_action_queue q;
    vlad_err err;
    int n = -1;
    vlad_aq_init(&q, 2, NULL);
    vlad_chunk a = chunk(1, 5, 10, 0);
    vlad_aq_push(&q, &a, NULL);
    struct {
        vlad_chunk c;
        double w;
        int rc;
    } cases[] = {
        {chunk(2, 6, 4, 50), 1.5, VLAD_EINVAL},
        {chunk(2, 6, 4, 50), -0.1, VLAD_EINVAL},
        {chunk(2, 6, 4, 50), NAN, VLAD_EINVAL},
        {chunk(2, 4, 4, 50), 0.7, VLAD_ESTATE},                  /* before the newest start */
        {chunk(2, 300, VLAD_AQ_MAX_H, 50), 0.7, VLAD_ERANGE},    /* would alias */
        {chunk(2, -1, 4, 50), 0.7, VLAD_EINVAL},
        {chunk(2, 6, 0, 50), 0.7, VLAD_EINVAL},
        {chunk(2, 6, 4, 50), 0.7, VLAD_EINVAL}, /* dim 3, below */
    };
    cases[7].c.dim = 3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vlad_chunk before = cases[i].c;
        err.msg[0] = 0;
        assert_int_equal(vlad_aq_merge(&q, &cases[i].c, cases[i].w, &n, &err), cases[i].rc);
        assert_true(err.msg[0] != 0);
        assert_int_equal(n, 0);
        assert_memory_equal(&before, &cases[i].c, sizeof before);
    }
    vlad_chunk f = chunk(2, 6, 3, 50);
    f.values[0] = NAN, f.values[1] = INFINITY, f.values[3] = -INFINITY;
    assert_int_equal(vlad_aq_merge(&q, &f, 0.7, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(isnan(f.values[0]) && isinf(f.values[1]) && isinf(f.values[3]));
    assert_true(f.values[2] == blend(0.7, 51, 2)); /* the rest is blended as usual */
    f = chunk(2, 6, 3, 50);
    f.values[0] = INFINITY;
    assert_int_equal(vlad_aq_merge(&q, &f, 0.0, &n, &err), 0);
    assert_false(isfinite(f.values[0])); /* 0 · inf: not finite, never a number picked up */
    assert_int_equal(vlad_aq_remaining(&q, 5), 10); /* the queue untouched throughout */
}

/* ---- randomized run against a model -------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The model: the accepted chunks in push order (their starts never decrease). The action for
 * tick t, when t is not past, belongs to the last accepted chunk starting at or before t (it
 * superseded everything from its start on), if t is inside it. */
#define MAXC 200000
typedef struct mchunk {
    uint64_t id;
    int64_t start, obs, obs_robot;
    int len;
} mchunk;
static mchunk acc[MAXC];
static int n_acc;

static const mchunk *owner(int64_t t, int64_t mnow) {
    if (t < mnow)
        return NULL; /* past, or used */
    int lo = 0, hi = n_acc; /* first index with start > t */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (acc[mid].start <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const mchunk *c = &acc[lo - 1];
    return t < c->start + c->len ? c : NULL;
}

/* Random pushes (in order, late, early, beyond the span, before the newest, negative) and gets
 * (in order, skipping ticks, in the past): every action comes back for the tick it was pushed
 * for, from the chunk the model says owns that tick, with that chunk's observation ticks, and
 * remaining/peek/refusals agree with the model. Each action's values encode its tick, its
 * chunk and its index in the chunk. */
static void test_random_against_model(void **state) {
    (void)state;
    static vlad_action_queue q;
    static vlad_chunk c;
    vlad_err err;
    assert_int_equal(vlad_aq_init(&q, 3, &err), 0);
    uint64_t rng = 0xA0A0F00Dull, next_id = 1;
    int64_t tau = 0, mnow = 0, newest = INT64_MIN;
    n_acc = 0;
    long got = 0, empty = 0, pushed = 0, refused = 0, clears = 0;
    for (long it = 0; it < 200000; it++) {
        uint64_t r = splitmix64(&rng) % 100;
        if (r < 35) { /* push */
            memset(&c, 0, sizeof c);
            c.id = next_id++;
            c.dim = 3;
            c.len = 1 + (int)(splitmix64(&rng) % VLAD_AQ_MAX_H);
            uint64_t kind = splitmix64(&rng) % 100;
            int64_t near = tau - 40 + (int64_t)(splitmix64(&rng) % 80); /* late or early */
            if (kind < 75) /* in order: at or after the newest start */
                c.start_tick = near > newest ? near : newest + (int64_t)(splitmix64(&rng) % 3);
            else if (kind < 87) /* far ahead: beyond the span for most lengths */
                c.start_tick = tau + 257 + (int64_t)(splitmix64(&rng) % 400);
            else if (kind < 99) /* before the newest chunk (or anywhere near now) */
                c.start_tick = tau + (int64_t)(splitmix64(&rng) % 300) - 150;
            else
                c.start_tick = -1 - (int64_t)(splitmix64(&rng) % 5);
            if (c.start_tick < 0 && kind < 99)
                c.start_tick = 0;
            c.obs_tick = c.start_tick - 2;
            c.obs_robot_tick = (int64_t)c.id * 7 + 1;
            for (int i = 0; i < c.len; i++) {
                c.values[i * 3] = (float)(c.start_tick + i);
                c.values[i * 3 + 1] = (float)c.id;
                c.values[i * 3 + 2] = (float)i;
            }
            bool einval = c.start_tick < 0;
            /* nothing still queued (cleared, or all past): nothing to alias */
            bool q_empty = q.end == INT64_MIN || q.end <= q.now;
            bool erange = !einval && !q_empty && c.start_tick + c.len > mnow + VLAD_AQ_CAP;
            bool estate = !einval && c.start_tick < newest;
            int rc = vlad_aq_push(&q, &c, &err);
            if (einval || erange || estate) {
                if (!((einval && rc == VLAD_EINVAL) || (erange && rc == VLAD_ERANGE) ||
                      (estate && rc == VLAD_ESTATE)))
                    fail_msg("it %ld: push [%lld, +%d) at now %lld, newest %lld: rc %d", it,
                             (long long)c.start_tick, c.len, (long long)mnow, (long long)newest,
                             rc);
                refused++;
            } else {
                if (rc != 0)
                    fail_msg("it %ld: push [%lld, +%d) refused: %s", it, (long long)c.start_tick,
                             c.len, err.msg);
                assert_true(n_acc < MAXC);
                acc[n_acc++] = (mchunk){c.id, c.start_tick, c.obs_tick, c.obs_robot_tick, c.len};
                newest = c.start_tick;
                pushed++;
            }
        } else if (r < 90) { /* get */
            int64_t t = tau + (int64_t)(splitmix64(&rng) % 4);
            if (splitmix64(&rng) % 50 == 0)
                t = tau - 1 - (int64_t)(splitmix64(&rng) % 20); /* a past tick */
            if (t < 0)
                t = 0;
            const mchunk *m = owner(t, mnow);
            int64_t rt = vlad_aq_obs_robot_tick(&q, t);
            assert_int_equal(rt, m ? m->obs_robot : -1);
            uint64_t id = 0;
            int64_t ot = 0;
            const float *a = vlad_aq_get(&q, t, &id, &ot);
            if (t + 1 > mnow)
                mnow = t + 1;
            if (t > tau)
                tau = t;
            if (!m) {
                if (a)
                    fail_msg("it %ld: tick %lld returned an action (tick %g, chunk %g) where none "
                             "is queued",
                             it, (long long)t, a[0], a[1]);
                empty++;
                continue;
            }
            if (!a)
                fail_msg("it %ld: tick %lld: no action, expected chunk %llu", it, (long long)t,
                         (unsigned long long)m->id);
            if (a[0] != (float)t || a[1] != (float)m->id || a[2] != (float)(t - m->start) ||
                id != m->id || ot != m->obs)
                fail_msg("it %ld: tick %lld got the action of tick %g (chunk %g/%llu, index %g), "
                         "expected chunk %llu",
                         it, (long long)t, a[0], a[1], (unsigned long long)id, a[2],
                         (unsigned long long)m->id);
            got++;
        } else if (r < 99) { /* look without taking */
            int64_t t = tau + (int64_t)(splitmix64(&rng) % 600) - 50;
            if (t < 0)
                t = 0;
            const mchunk *m = owner(t, mnow);
            const float *a = vlad_aq_peek(&q, t);
            assert_true((a != NULL) == (m != NULL));
            if (a)
                assert_true(a[0] == (float)t && a[1] == (float)m->id);
            int n = 0;
            while (n < VLAD_AQ_CAP && owner(t + n, mnow))
                n++;
            assert_int_equal(vlad_aq_remaining(&q, t), n);
        } else if (splitmix64(&rng) % 50 == 0) { /* a reset: a new timeline */
            vlad_aq_clear(&q);
            n_acc = 0;
            mnow = 0;
            newest = INT64_MIN;
            clears++;
        }
    }
    printf("# random queue: %ld pushed, %ld refused, %ld actions got, %ld empty ticks, %ld "
           "clears\n",
           pushed, refused, got, empty, clears);
    assert_true(pushed > 10000 && refused > 1000 && got > 10000 && empty > 1000);
}

/* Random merges and pushes in order (late, early, with gaps, over the ring's wrap) and gets,
 * against a flat per-tick model of the timeline: every merge blends exactly the ticks the
 * model has queued (not past, from another chunk) by the documented formula, and every action
 * taken is the model's. */
#define MT 6000
static float m_val[MT][3];
static uint64_t m_id[MT];
static bool m_has[MT];

static void test_merge_random_against_model(void **state) {
    (void)state;
    static vlad_action_queue q;
    static vlad_chunk c, orig;
    assert_int_equal(vlad_aq_init(&q, 3, NULL), 0);
    memset(m_has, 0, sizeof m_has);
    uint64_t rng = 0x5EED3E6Eull, next_id = 1;
    int64_t tau = 0, newest = 0;
    long blended = 0, merged = 0, got = 0;
    while (tau < MT - 200) {
        if (splitmix64(&rng) % 3 == 0) { /* a chunk: merged, then pushed */
            memset(&c, 0, sizeof c);
            c.id = next_id++;
            c.dim = 3;
            c.len = 1 + (int)(splitmix64(&rng) % 64);
            int64_t st = tau - 8 + (int64_t)(splitmix64(&rng) % 24); /* late or early */
            c.start_tick = st > newest ? st : newest;
            for (int i = 0; i < c.len * 3; i++)
                c.values[i] = (float)((double)(splitmix64(&rng) % 20001) / 1000.0 - 10.0);
            orig = c;
            const double ws[] = {0.7, 0.5, 0.3, 1.0, 0.0, 0.123};
            double w = ws[splitmix64(&rng) % 6];
            int n = -1;
            assert_int_equal(vlad_aq_merge(&q, &c, w, &n, NULL), 0);
            int want_n = 0;
            for (int i = 0; i < c.len; i++) {
                int64_t t = c.start_tick + i;
                bool ov = t >= tau && m_has[t] && m_id[t] != c.id;
                want_n += ov;
                for (int j = 0; j < 3; j++) {
                    float want = ov ? blend(w, orig.values[i * 3 + j], m_val[t][j]) : orig.values[i * 3 + j];
                    if (c.values[i * 3 + j] != want)
                        fail_msg("chunk %llu tick %lld joint %d: %.9g, expected %.9g", (unsigned long long)c.id,
                                 (long long)t, j, (double)c.values[i * 3 + j], (double)want);
                }
            }
            assert_int_equal(n, want_n);
            blended += n;
            merged++;
            assert_int_equal(vlad_aq_push(&q, &c, NULL), 0);
            newest = c.start_tick;
            for (int64_t t = c.start_tick; t < MT; t++)
                m_has[t] = false; /* superseded from its start on */
            for (int i = 0; i < c.len; i++) {
                int64_t t = c.start_tick + i;
                if (t < tau)
                    continue; /* past: dropped by number */
                m_has[t] = true;
                m_id[t] = c.id;
                memcpy(m_val[t], &c.values[i * 3], sizeof m_val[t]);
            }
        } else { /* take this tick's action, sometimes skipping ticks */
            tau += (int64_t)(splitmix64(&rng) % 3);
            uint64_t id = 0;
            const float *a = vlad_aq_get(&q, tau, &id, NULL);
            assert_true((a != NULL) == m_has[tau]);
            if (a) {
                assert_memory_equal(a, m_val[tau], sizeof m_val[tau]);
                assert_int_equal(id, m_id[tau]);
                got++;
            }
            for (int64_t t = 0; t <= tau; t++)
                m_has[t] = false; /* past or used */
            tau++;
        }
    }
    printf("# random merge: %ld chunks merged, %ld ticks blended, %ld actions taken\n", merged,
           blended, got);
    assert_true(merged > 1000 && blended > 5000 && got > 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_errors), cmocka_unit_test(test_single_chunk),
        cmocka_unit_test(test_switch_at_start_tick), cmocka_unit_test(test_late_chunk_aligned_by_tick),
        cmocka_unit_test(test_replace_waiting_and_refuse_older),
        cmocka_unit_test(test_push_refuses_alias), cmocka_unit_test(test_push_refuses_absurd_start),
        cmocka_unit_test(test_obs_robot_tick), cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_merge_overlap), cmocka_unit_test(test_merge_ids_holes_dims),
        cmocka_unit_test(test_merge_refusals), cmocka_unit_test(test_merge_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
