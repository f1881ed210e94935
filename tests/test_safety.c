/* Safety clamps and the observation watchdog. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "safety.h"

static vlad_profile prof;

static int setup(void **state) {
    (void)state;
    /* 100 Hz; joint a: max_velocity 5/s -> 0.05 per tick; joint b: 50/s -> 0.5, but
     * max_delta_per_tick caps it at 0.2 */
    const char *y = "robot: r\ncontrol_hz: 100\nsafety: {max_delta_per_tick: 0.2}\njoints:\n"
                    "  - {name: a, min: -1, max: 1, max_velocity: 5}\n"
                    "  - {name: b, min: 0, max: 2, max_velocity: 50}\n";
    vlad_err err;
    if (vlad_profile_load_string(&prof, y, strlen(y), "s.yaml", &err))
        fail_msg("%s", err.msg);
    return 0;
}

static void test_within_limits_untouched(void **state) {
    (void)state;
    double prev[2] = {0, 1}, want[2] = {0.03, 1.1}, out[2];
    assert_false(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(out[0] == 0.03 && out[1] == 1.1);
}

static void test_rate_limit_per_joint(void **state) {
    (void)state;
    double prev[2] = {0, 1}, want[2] = {0.9, 1.9}, out[2];
    assert_true(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(fabs(out[0] - 0.05) < 1e-12); /* max_velocity / control_hz */
    assert_true(fabs(out[1] - 1.2) < 1e-12);  /* max_delta_per_tick */
    double down[2] = {-0.9, 0.1};
    vlad_safety_clamp(&prof, prev, down, out);
    assert_true(fabs(out[0] + 0.05) < 1e-12);
    assert_true(fabs(out[1] - 0.8) < 1e-12);
}

static void test_limits_last(void **state) {
    (void)state;
    /* a step inside the rate limit that leaves the position range: limits win */
    double prev[2] = {0.99, 0.05}, want[2] = {1.03, -0.1}, out[2];
    assert_true(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(out[0] == 1.0);
    assert_true(out[1] == 0.0);
    /* a previous target outside the limits (cannot happen, but) still ends inside */
    double bad_prev[2] = {5, 5}, w2[2] = {5, 5};
    vlad_safety_clamp(&prof, bad_prev, w2, out);
    assert_true(out[0] == 1.0 && out[1] == 2.0);
}

static void test_non_finite_keeps_previous(void **state) {
    (void)state;
    double prev[2] = {0.2, 1.5}, want[2] = {NAN, INFINITY}, out[2];
    assert_true(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(out[0] == 0.2 && out[1] == 1.5);
}

static void test_clamp_in_place(void **state) {
    (void)state;
    double prev[2] = {0, 1}, x[2] = {0.5, 1};
    vlad_safety_clamp(&prof, prev, x, x);
    assert_true(fabs(x[0] - 0.05) < 1e-12);
    double y[2] = {-3, 3};
    assert_true(vlad_safety_clamp_limits(&prof, y));
    assert_true(y[0] == -1 && y[1] == 2);
    assert_false(vlad_safety_clamp_limits(&prof, y));
}

static void test_watchdog(void **state) {
    (void)state;
    vlad_watchdog w;
    vlad_watchdog_init(&w, 100); /* ms */
    const int64_t ms = 1000000;
    assert_int_equal(vlad_watchdog_check(&w, 0, 10000 * ms), 0); /* no obs yet: waiting, not stale */
    assert_false(w.tripped);
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1050 * ms), 0);
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1100 * ms), 0); /* exactly at the limit */
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1101 * ms), 1);  /* trips once */
    assert_true(w.tripped);
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1500 * ms), 0);
    assert_int_equal(vlad_watchdog_check(&w, 1490 * ms, 1500 * ms), -1); /* clears once */
    assert_int_equal(vlad_watchdog_check(&w, 1495 * ms, 1500 * ms), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within_limits_untouched), cmocka_unit_test(test_rate_limit_per_joint),
        cmocka_unit_test(test_limits_last), cmocka_unit_test(test_non_finite_keeps_previous),
        cmocka_unit_test(test_clamp_in_place), cmocka_unit_test(test_watchdog),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
