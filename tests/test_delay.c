/* Delay estimation: warm-up excluded, spikes forgotten, outliers ignored, floor kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "delay.h"

#define MS 1000000LL

static void test_init_errors(void **state) {
    (void)state;
    vlad_delay d;
    vlad_err e;
    assert_int_equal(vlad_delay_init(&d, 0, 0, 0, 0, 0, 8, 0.9, &e), VLAD_EINVAL);
    assert_int_equal(vlad_delay_init(&d, 20 * MS, 0, 0, 0, 0, 0, 0.9, &e), VLAD_EINVAL);
    assert_int_equal(vlad_delay_init(&d, 20 * MS, 0, 0, 0, 0, 500, 0.9, &e), VLAD_EINVAL);
    assert_int_equal(vlad_delay_init(&d, 20 * MS, 0, 0, 0, 0, 8, 0.0, &e), VLAD_EINVAL);
    assert_int_equal(vlad_delay_init(&d, 20 * MS, 0, 0, -1, 0, 8, 0.9, &e), VLAD_EINVAL);
}

static void test_ticks_rounding(void **state) {
    (void)state;
    assert_int_equal(vlad_ns_to_ticks(0, 20 * MS), 0);
    assert_int_equal(vlad_ns_to_ticks(1, 20 * MS), 1);
    assert_int_equal(vlad_ns_to_ticks(20 * MS, 20 * MS), 1);
    assert_int_equal(vlad_ns_to_ticks(20 * MS + 1, 20 * MS), 2);
    vlad_delay d;
    vlad_delay_init(&d, 20 * MS, 0, 30 * MS, 1, 0, 8, 0.9, NULL);
    assert_int_equal(vlad_delay_ticks(&d), 2 + 1); /* prior 30 ms -> 2 ticks, + margin */
}

static void test_warmup_spike_forgotten(void **state) {
    (void)state;
    vlad_delay d;
    vlad_delay_init(&d, 20 * MS, 0, 0, 0, /*warmup*/ 2, /*window*/ 16, 0.9, NULL);
    vlad_delay_add(&d, 900 * MS); /* first call: allocator, page faults */
    vlad_delay_add(&d, 400 * MS);
    for (int i = 0; i < 5; i++)
        vlad_delay_add(&d, 30 * MS);
    assert_int_equal(vlad_delay_estimate_ns(&d), 30 * MS); /* warm-up never counted */
    assert_int_equal(vlad_delay_ticks(&d), 2);
    /* a later spike raises the estimate while it is in the window ... */
    vlad_delay_add(&d, 200 * MS);
    for (int i = 0; i < 3; i++)
        vlad_delay_add(&d, 30 * MS);
    assert_int_equal(vlad_delay_estimate_ns(&d), 200 * MS); /* 9 samples: q0.9 is the max */
    /* ... and is forgotten once it leaves it (unlike a running maximum) */
    for (int i = 0; i < 16; i++)
        vlad_delay_add(&d, 30 * MS);
    assert_int_equal(vlad_delay_estimate_ns(&d), 30 * MS);
}

static void test_outliers_ignored(void **state) {
    (void)state;
    vlad_delay d;
    vlad_delay_init(&d, 20 * MS, 0, 0, 0, 0, 32, 0.9, NULL);
    for (int i = 0; i < 32; i++)
        vlad_delay_add(&d, (i % 16 == 0) ? 500 * MS : (25 + i % 5) * MS); /* 2 outliers in 32 */
    int64_t e = vlad_delay_estimate_ns(&d);
    assert_true(e >= 28 * MS && e <= 29 * MS);
    assert_int_equal(vlad_delay_ticks(&d), 2);
}

static void test_floor_and_margin(void **state) {
    (void)state;
    vlad_delay d;
    vlad_delay_init(&d, 20 * MS, /*floor*/ 80 * MS, 0, /*margin*/ 1, 0, 8, 0.9, NULL);
    assert_int_equal(vlad_delay_ticks(&d), 4 + 1); /* no samples: the floor */
    for (int i = 0; i < 8; i++)
        vlad_delay_add(&d, 5 * MS);                /* a fast model is slowed to the floor */
    assert_int_equal(vlad_delay_estimate_ns(&d), 80 * MS);
    for (int i = 0; i < 8; i++)
        vlad_delay_add(&d, 130 * MS);              /* a slower one is not */
    assert_int_equal(vlad_delay_ticks(&d), 7 + 1);
    assert_int_equal(vlad_delay_estimate_ns(&d), 130 * MS);
    /* nonsense is clamped, not trusted: a negative latency neither lowers the quantile below
     * the real ones nor wraps around to a huge one */
    vlad_delay_add(&d, -5);
    assert_int_equal(vlad_delay_estimate_ns(&d), 130 * MS);
    assert_int_equal(vlad_delay_ticks(&d), 7 + 1);
    for (int i = 0; i < 8; i++)
        vlad_delay_add(&d, INT64_MIN);             /* a window of nonsense: the floor, exactly */
    assert_int_equal(vlad_delay_estimate_ns(&d), 80 * MS);
    assert_int_equal(vlad_delay_ticks(&d), 4 + 1);
    /* a floor that is not a whole number of ticks rounds up: 81 ms at 20 ms ticks is 5 */
    vlad_delay_init(&d, 20 * MS, 81 * MS, 0, 0, 0, 8, 0.9, NULL);
    for (int i = 0; i < 8; i++)
        vlad_delay_add(&d, 10 * MS);
    assert_int_equal(vlad_delay_estimate_ns(&d), 81 * MS);
    assert_int_equal(vlad_delay_ticks(&d), 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_errors), cmocka_unit_test(test_ticks_rounding),
        cmocka_unit_test(test_warmup_spike_forgotten), cmocka_unit_test(test_outliers_ignored),
        cmocka_unit_test(test_floor_and_margin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
