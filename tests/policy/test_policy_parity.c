/* Engine vs the committed PyTorch-twin fixtures (tests/policy/fixtures, regenerate with
 * /usr/bin/python3 training/make_fixtures.py). The twin's reference is float64 on the stored
 * weights; the engine computes in float32. Tolerances (max abs error):
 *   F32 checkpoint:  actions 1e-4, prefix K/V 1e-4 (MODEL.md parity)
 *   BF16 checkpoint: actions 2e-4, prefix K/V 2e-4 (the engine widens the same BF16 weights
 *                    to F32 exactly, so the measured error is F32-sized; the bound is looser
 *                    only to leave room for a future BF16-compute path)
 * and the same greedy text (bytes and end token). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "policy_testutil.h"

static void check(const char *name, double tol, int threads) {
    char dir[4096];
    tu_fixture_dir(dir, sizeof dir);
    fx_result r;
    fx_check(dir, name, threads, &r);
    if (!r.ok)
        fail_msg("%s", r.msg);
    printf("%s (%d thread%s): S=%d actions max err %.3g, prefix KV max err %.3g, text %s (%d bytes)\n",
           name, threads, threads > 1 ? "s" : "", r.S, r.act_err, r.kv_err,
           r.text_ok ? "equal" : "DIFFERS", r.text_len);
    if (!r.text_ok)
        printf("  text %s, expected %s\n", r.text_hex, r.text_hex_expected);
    assert_true(r.act_err <= tol);
    assert_true(r.kv_err <= tol);
    assert_true(r.text_ok);
    assert_true(r.runs_equal);
}

static void test_f32_1cam(void **state) {
    (void)state;
    check("tiny_f32_1cam", 1e-4, 1);
}
static void test_f32_1cam_2threads(void **state) {
    (void)state;
    check("tiny_f32_1cam", 1e-4, 2);
}
static void test_bf16_2cam(void **state) {
    (void)state;
    check("tiny_bf16_2cam", 2e-4, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_1cam),
        cmocka_unit_test(test_f32_1cam_2threads),
        cmocka_unit_test(test_bf16_2cam),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
