/* The live PyTorch twin against the engine on fresh random configs: runs only when
 * `/usr/bin/python3 -c 'import torch'` works (else skipped). The seed comes from
 * $VLAD_TWIN_SEED or the clock, and is printed so that a failure can be reproduced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "policy_testutil.h"

static int have_torch(void) {
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static void live(int seed, const char *dtype) {
    char dir[4096];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s/training' && /usr/bin/python3 -m vlad_twin fixture --random-config "
             "--seed %d --dtype %s --name live --out '%s'",
             tu_src(), seed, dtype, dir);
    printf("live twin: seed %d dtype %s\n", seed, dtype);
    fflush(stdout);
    int rc = system(cmd);
    if (rc != 0) {
        tu_rmtree(dir);
        fail_msg("twin fixture generation failed (rc %d): %s", rc, cmd);
    }
    fx_result r;
    fx_check(dir, "live", 1, &r);
    tu_rmtree(dir);
    if (!r.ok)
        fail_msg("%s", r.msg);
    printf("live seed %d %s: S=%d actions err %.3g, KV err %.3g, text %s (%d bytes)\n", seed,
           dtype, r.S, r.act_err, r.kv_err, r.text_ok ? "equal" : "DIFFERS", r.text_len);
    if (!r.text_ok)
        printf("  text %s, expected %s\n", r.text_hex, r.text_hex_expected);
    assert_true(r.act_err <= 1e-4);
    assert_true(r.kv_err <= 1e-4);
    assert_true(r.text_ok);
}

static int base_seed(void) {
    const char *s = getenv("VLAD_TWIN_SEED");
    if (s && *s)
        return atoi(s);
    return (int)(time(NULL) % 100000);
}

static void test_live_twin(void **state) {
    (void)state;
    if (!have_torch()) {
        printf("SKIP: /usr/bin/python3 cannot import torch; live twin parity not run\n");
        skip();
    }
    int s = base_seed();
    live(s, "F32");
    live(s + 1, "BF16");
    live(s + 2, "F32");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_live_twin)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
