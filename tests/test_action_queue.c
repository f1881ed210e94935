/* The tick-keyed action queue: switching at start ticks, past ticks dropped by number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_errors), cmocka_unit_test(test_single_chunk),
        cmocka_unit_test(test_switch_at_start_tick), cmocka_unit_test(test_late_chunk_aligned_by_tick),
        cmocka_unit_test(test_replace_waiting_and_refuse_older),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
