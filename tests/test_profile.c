/* Profile loader tests: every bad fixture under tests/fixtures/profiles/bad/ must be
 * refused with the message its first line announces ("# expect: ..."); good profiles
 * load with the documented defaults; configs/README.md is the loader's own table. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profile.h"

#define BAD_DIR "tests/fixtures/profiles/bad"

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_bad_files(void **state) {
    (void)state;
    DIR *d = opendir(BAD_DIR);
    assert_non_null(d);
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strstr(e->d_name, ".yaml"))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp);
    assert_true(n >= 50);
    static vlad_profile p;
    for (int i = 0; i < n; i++) {
        char path[512], expect[600] = {0};
        snprintf(path, sizeof path, "%s/%s", BAD_DIR, names[i]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char line[600];
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        assert_true(strncmp(line, "# expect: ", 10) == 0);
        snprintf(expect, sizeof expect, "%s", line + 10);
        expect[strcspn(expect, "\n")] = 0;
        vlad_err err = {0};
        int rc = vlad_profile_load(&p, path, &err);
        if (rc == 0 || !strstr(err.msg, expect) || !strstr(err.msg, names[i]))
            fail_msg("%s: rc=%d\n  got:    %s\n  wanted: %s", names[i], rc, err.msg, expect);
        free(names[i]);
    }
}

static void test_minimal_defaults(void **state) {
    (void)state;
    static vlad_profile p, d;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, "tests/fixtures/profiles/good-minimal.yaml", &err), 0);
    vlad_profile_defaults(&d);
    assert_string_equal(p.robot, "tiny");
    assert_int_equal(p.n_joints, 1);
    assert_int_equal(p.n_cameras, 0);
    assert_true(p.joints[0].home == 0.0);
    assert_true(p.control_hz == d.control_hz && p.control_hz == 50.0);
    assert_int_equal(p.async.mode, VLAD_ASYNC_VLASH);
    assert_int_equal(p.clock, VLAD_CLOCK_WALL);
    assert_int_equal(p.async.execution_horizon, 10);
    assert_true(p.safety.watchdog_ms == 200.0);
    assert_int_equal(p.logging.level, VLAD_LOG_INFO);
    assert_string_equal(p.policy.model, "");
    assert_string_equal(p.endpoints.control, "tcp://127.0.0.1:5552");
}

static void test_sim_arm(void **state) {
    (void)state;
    static vlad_profile p;
    vlad_err err;
    int rc = vlad_profile_load(&p, "configs/sim-arm.yaml", &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_string_equal(p.robot, "sim-arm");
    assert_true(p.n_joints >= 3);
    assert_true(p.n_cameras >= 1);
    assert_int_equal(vlad_profile_joint_index(&p, p.joints[1].name), 1);
    assert_int_equal(vlad_profile_joint_index(&p, "nope"), -1);
    assert_int_equal(vlad_profile_camera_index(&p, p.cameras[0].name), 0);
    /* relative paths resolve against the profile's folder */
    assert_string_equal(p.sim.model, "configs/../sim/models/arm4.xml");
}

static void test_string_and_paths(void **state) {
    (void)state;
    static vlad_profile p;
    vlad_err err;
    const char *y = "robot: r\njoints:\n  - {name: a, min: -1, max: 1, max_velocity: 1, home: 0.5}\n"
                    "policy:\n  model: m.safetensors\nlogging:\n  file: /abs/x.log\n"
                    "realtime: yes\nclock: lockstep\nasync: {mode: sync}\n";
    assert_int_equal(vlad_profile_load_string(&p, y, strlen(y), "/etc/vlad/r.yaml", &err), 0);
    assert_string_equal(p.policy.model, "/etc/vlad/m.safetensors");
    assert_string_equal(p.logging.file, "/abs/x.log");
    assert_true(p.realtime);
    assert_int_equal(p.clock, VLAD_CLOCK_LOCKSTEP);
    assert_int_equal(p.async.mode, VLAD_ASYNC_SYNC);
    assert_true(p.joints[0].home == 0.5);
    /* the missing file */
    assert_int_equal(vlad_profile_load(&p, "/nonexistent.yaml", &err), VLAD_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent.yaml"));
}

static void test_endpoint_local(void **state) {
    (void)state;
    assert_true(vlad_endpoint_is_local("ipc:///tmp/x"));
    assert_true(vlad_endpoint_is_local("inproc://x"));
    assert_true(vlad_endpoint_is_local("tcp://127.0.0.1:5"));
    assert_true(vlad_endpoint_is_local("tcp://localhost:5"));
    assert_true(vlad_endpoint_is_local("tcp://[::1]:5"));
    assert_false(vlad_endpoint_is_local("tcp://0.0.0.0:5"));
    assert_false(vlad_endpoint_is_local("tcp://*:5"));
    assert_false(vlad_endpoint_is_local("tcp://10.0.0.1:5"));
    assert_false(vlad_endpoint_is_local("tcp://localhost.evil.com:5"));
    /* the whole 127.0.0.0/8 block, and the IPv6 loopback however it is spelled */
    assert_true(vlad_endpoint_is_local("tcp://127.255.3.4:65535"));
    assert_true(vlad_endpoint_is_local("tcp://127.0.0.1:1"));
    assert_true(vlad_endpoint_is_local("tcp://[0:0:0:0:0:0:0:1]:5550"));
    /* names that merely start with "127." are DNS names: anywhere */
    assert_false(vlad_endpoint_is_local("tcp://127.evil.com:5550"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1.nip.io:1"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1evil:1"));
    assert_true(vlad_endpoint_is_local("tcp://127.1:5550")); /* resolves to 127.0.0.1 */
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.256:5550"));
    assert_false(vlad_endpoint_is_local("tcp://128.0.0.1:5550"));
    assert_false(vlad_endpoint_is_local("tcp://[::2]:5550"));
    assert_false(vlad_endpoint_is_local("tcp://[::1:5550"));
    assert_false(vlad_endpoint_is_local("tcp://::1:5550"));
    assert_false(vlad_endpoint_is_local("tcp://lo:5550")); /* an interface name (or a DNS name) */
    /* ZeroMQ's source address: "source;destination" binds the source side anywhere */
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:1;*:6000"));
    assert_false(vlad_endpoint_is_local("tcp://*:6000;127.0.0.1:1"));
    assert_false(vlad_endpoint_is_local("tcp://localhost:1;10.0.0.1:6000"));
    assert_false(vlad_endpoint_is_local("tcp://[::1]:1;[::]:6000"));
    /* a port must be there and in 1..65535 */
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:*"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:0"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:65536"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:123456"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:-5"));
    assert_false(vlad_endpoint_is_local("tcp://127.0.0.1:5x"));
    assert_false(vlad_endpoint_is_local("tcp://localhost"));
    assert_false(vlad_endpoint_is_local("tcp://[::1]"));
    assert_false(vlad_endpoint_is_local("tcp://:5550"));
    assert_false(vlad_endpoint_is_local("tcp://"));
    assert_false(vlad_endpoint_is_local("udp://127.0.0.1:5550"));
    assert_false(vlad_endpoint_is_local(""));
    /* the profile check follows: a fake loopback endpoint is refused (it does not resolve
     * here; where it resolves to a public address it needs CURVE); every interface needs CURVE */
    static vlad_profile p;
    vlad_err err;
    const char *y = "robot: r\njoints:\n  - {name: a, min: -1, max: 1, max_velocity: 2}\n"
                    "endpoints: {observations: 'tcp://127.evil.com:5550'}\n";
    assert_int_equal(vlad_profile_load_string(&p, y, strlen(y), "/tmp/r.yaml", &err), VLAD_EINVAL);
    if (!strstr(err.msg, "requires CURVE") && !strstr(err.msg, "does not resolve"))
        fail_msg("got '%s'", err.msg);
    const char *y2 = "robot: r\njoints:\n  - {name: a, min: -1, max: 1, max_velocity: 2}\n"
                     "endpoints: {control: 'tcp://*:5552'}\n";
    assert_int_equal(vlad_profile_load_string(&p, y2, strlen(y2), "/tmp/r.yaml", &err), VLAD_EINVAL);
    if (!strstr(err.msg, "requires CURVE"))
        fail_msg("got '%s'", err.msg);
}

static void test_set_overrides(void **state) {
    (void)state;
    static vlad_profile p;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, "tests/fixtures/profiles/good-minimal.yaml", &err), 0);
    assert_int_equal(vlad_profile_set(&p, "clock", "lockstep", &err), 0);
    assert_int_equal(p.clock, VLAD_CLOCK_LOCKSTEP);
    assert_int_equal(vlad_profile_set(&p, "async.execution_horizon", "25", &err), 0);
    assert_int_equal(p.async.execution_horizon, 25);
    assert_int_equal(vlad_profile_set(&p, "policy.model", "m.safetensors", &err), 0);
    assert_string_equal(p.policy.model, "tests/fixtures/profiles/m.safetensors");
    assert_int_equal(vlad_profile_set(&p, "control_hz", "0", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "control_hz: value 0 out of range [1, 1000]"));
    assert_int_equal(vlad_profile_set(&p, "async.mode", "fast", &err), VLAD_EINVAL);
    assert_int_equal(vlad_profile_set(&p, "joints", "x", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "unknown key"));
    /* cross-field checks run again */
    assert_int_equal(vlad_profile_set(&p, "async.trigger_threshold", "30", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "exceeds async.execution_horizon"));
    /* spin_us: at most a quarter of a tick (250 us at 1000 Hz), with its default of 150 */
    assert_int_equal(vlad_profile_load(&p, "tests/fixtures/profiles/good-minimal.yaml", &err), 0);
    assert_true(p.spin_us == 150.0);
    assert_int_equal(vlad_profile_set(&p, "control_hz", "1000", &err), 0);
    assert_int_equal(vlad_profile_set(&p, "safety.watchdog_ms", "200", &err), 0);
    assert_int_equal(vlad_profile_set(&p, "spin_us", "250", &err), 0);
    assert_int_equal(vlad_profile_set(&p, "spin_us", "251", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "spin_us: 251 us is more than a quarter of a control tick"));

    /* a command line's --set list (every program takes it the same way): in order, the last
     * wins, the first bad one stops and is named; the list refuses what is not KEY=VALUE */
    assert_int_equal(vlad_profile_load(&p, "tests/fixtures/profiles/good-minimal.yaml", &err), 0);
    vlad_sets sets = {0};
    assert_int_equal(vlad_sets_add(&sets, "control_hz=100", &err), VLAD_OK);
    assert_int_equal(vlad_sets_add(&sets, "control_hz=200", &err), VLAD_OK);
    assert_int_equal(vlad_sets_add(&sets, "clock=lockstep", &err), VLAD_OK);
    assert_int_equal(vlad_sets_add(&sets, "novalue", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "expected KEY=VALUE, got 'novalue'"));
    assert_int_equal(vlad_sets_add(&sets, "=1", &err), VLAD_EINVAL);
    assert_int_equal(sets.n, 3);
    assert_int_equal(vlad_profile_apply_sets(&p, &sets, &err), VLAD_OK);
    assert_true(p.control_hz == 200);
    assert_int_equal(p.clock, VLAD_CLOCK_LOCKSTEP);
    assert_int_equal(vlad_sets_add(&sets, "bogus.key=1", &err), VLAD_OK);
    assert_int_equal(vlad_sets_add(&sets, "clock=wall", &err), VLAD_OK);
    assert_int_equal(vlad_profile_apply_sets(&p, &sets, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "bogus.key"));
    assert_int_equal(p.clock, VLAD_CLOCK_LOCKSTEP); /* stopped at the bad one */
    vlad_sets full = {0};
    for (int i = 0; i < VLAD_SETS_MAX; i++)
        assert_int_equal(vlad_sets_add(&full, "robot=r", &err), VLAD_OK);
    assert_int_equal(vlad_sets_add(&full, "robot=r", &err), VLAD_ERANGE);
}

/* policy.remote.*: a YAML list or commas (the same text), the list split and trimmed, the
 * defaults, and --set overrides whose cross-field checks run once all are applied (a model
 * removed after the endpoints are set is as good as before). */
static void test_remote_keys(void **state) {
    (void)state;
    static vlad_profile p, q;
    vlad_err err;
    const char *base = "robot: r\njoints:\n  - {name: j0, min: -1, max: 1, max_velocity: 2}\n";
    char y[1024];
    snprintf(y, sizeof y, "%spolicy:\n  remote:\n    endpoints:\n      - tcp://127.0.0.1:5590\n"
             "      - ipc:///tmp/vlad-serve\n", base);
    assert_int_equal(vlad_profile_load_string(&p, y, strlen(y), NULL, &err), 0);
    assert_string_equal(p.policy.remote.endpoints, "tcp://127.0.0.1:5590,ipc:///tmp/vlad-serve");
    snprintf(y, sizeof y, "%spolicy.remote.endpoints: \" tcp://127.0.0.1:5590 , ipc:///tmp/vlad-serve\"\n",
             base);
    assert_int_equal(vlad_profile_load_string(&q, y, strlen(y), NULL, &err), 0);
    char eps[VLAD_REMOTE_MAX_ENDPOINTS][VLAD_PATH_MAX];
    assert_int_equal(vlad_profile_list(q.policy.remote.endpoints, eps, VLAD_REMOTE_MAX_ENDPOINTS), 2);
    assert_string_equal(eps[0], "tcp://127.0.0.1:5590");
    assert_string_equal(eps[1], "ipc:///tmp/vlad-serve");
    assert_int_equal(vlad_profile_list(p.policy.remote.endpoints, eps, 1), -1); /* too many */
    assert_int_equal(vlad_profile_list(" , ,", eps, 8), 0);
    assert_true(vlad_profile_remote(&p));
    assert_int_equal(p.policy.remote.timeout_ms, 1000);
    assert_int_equal(p.policy.remote.attempts, 1);
    assert_int_equal(p.policy.remote.start_timeout_ms, 5000);
    assert_false(p.policy.remote.fallback);
    assert_string_equal(p.policy.remote.server_key, "");
    vlad_profile_defaults(&q);
    assert_false(vlad_profile_remote(&q));

    /* a profile with a model: the endpoints alone are refused, with the model removed (either
     * order on one command line) or kept as the fallback they are fine */
    assert_int_equal(vlad_profile_load(&p, "tests/fixtures/profiles/good-minimal.yaml", &err), 0);
    assert_int_equal(vlad_profile_set(&p, "policy.model", "m.safetensors", &err), 0);
    q = p;
    assert_int_equal(vlad_profile_set(&q, "policy.remote.endpoints", "tcp://127.0.0.1:5590", &err),
                     VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "policy.remote.fallback: true"));
    const char *orders[2][2] = {{"policy.remote.endpoints=tcp://127.0.0.1:5590", "policy.model="},
                                {"policy.model=", "policy.remote.endpoints=tcp://127.0.0.1:5590"}};
    for (int o = 0; o < 2; o++) {
        q = p;
        vlad_sets sets = {0};
        for (int i = 0; i < 2; i++)
            assert_int_equal(vlad_sets_add(&sets, orders[o][i], &err), VLAD_OK);
        assert_int_equal(vlad_profile_apply_sets(&q, &sets, &err), VLAD_OK);
        assert_string_equal(q.policy.model, "");
        assert_true(vlad_profile_remote(&q));
    }
    q = p;
    vlad_sets fb = {0};
    assert_int_equal(vlad_sets_add(&fb, "policy.remote.endpoints=ipc:///tmp/a,ipc:///tmp/b", &err), 0);
    assert_int_equal(vlad_sets_add(&fb, "policy.remote.fallback=true", &err), 0);
    assert_int_equal(vlad_profile_apply_sets(&q, &fb, &err), VLAD_OK);
    assert_true(q.policy.remote.fallback);
    /* still refused at the end: the first cross-field problem is named */
    q = p;
    vlad_sets bad = {0};
    assert_int_equal(vlad_sets_add(&bad, "policy.remote.endpoints=tcp://127.0.0.1:5590", &err), 0);
    assert_int_equal(vlad_profile_apply_sets(&q, &bad, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "policy.remote.endpoints and policy.model"));
    /* the keys' paths resolve against the profile's folder, as every path key */
    q = p;
    assert_int_equal(vlad_profile_set(&q, "policy.remote.server_key", "k/s.key", &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "policy.remote.client_key is empty"));
    assert_string_equal(q.policy.remote.server_key, "tests/fixtures/profiles/k/s.key");
}

/* configs/README.md must end with the marker line (once), a blank line and exactly the table
 * generated from the loader's own table: no stale or repeated copy after it (the script that
 * writes it, scripts/gen-config-doc.sh, is checked by tests/test_gen_config_doc.sh) */
static void test_doc_matches(void **state) {
    (void)state;
    static const char marker[] =
        "<!-- generated by `vlad --print-config-doc`: do not edit below -->\n";
    char *gen = NULL;
    size_t glen = 0;
    FILE *m = open_memstream(&gen, &glen);
    assert_non_null(m);
    vlad_profile_write_doc(m);
    fclose(m);
    assert_true(glen > 0);
    FILE *f = fopen("configs/README.md", "r");
    assert_non_null(f);
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    assert_true(feof(f)); /* read it whole */
    fclose(f);
    doc[n] = 0;
    const char *at = strstr(doc, marker);
    if (!at || (at != doc && at[-1] != '\n'))
        fail_msg("configs/README.md: the marker line is missing");
    const char *after = at + strlen(marker);
    if (strstr(after, marker))
        fail_msg("configs/README.md: the marker line appears more than once");
    int tables = 0;
    for (const char *q = after; (q = strstr(q, "| key | type |")); q++)
        tables++;
    if (tables != 1)
        fail_msg("configs/README.md: the key table appears %d times after the marker", tables);
    if (after[0] != '\n' || strcmp(after + 1, gen))
        fail_msg("configs/README.md is out of date: regenerate the table with "
                 "scripts/gen-config-doc.sh");
    free(gen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files),      cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_sim_arm),        cmocka_unit_test(test_string_and_paths),
        cmocka_unit_test(test_endpoint_local), cmocka_unit_test(test_doc_matches),
        cmocka_unit_test(test_set_overrides),  cmocka_unit_test(test_remote_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
