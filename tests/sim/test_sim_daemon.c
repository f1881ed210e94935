/* test_sim_daemon — vlad-sim against a real vlad daemon in lockstep (the daemon answers
 * every observation with the action for its tick), without a daemon (every tick times
 * out and is a stall, and the run still finishes), and the CLI's handling of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "run.h"

static char dir[256], profile_path[300];
static vlad_profile prof;

static void write_profile(void) {
    const char *src = getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".";
    int base = vlad_proc_free_port();
    snprintf(profile_path, sizeof profile_path, "%s/sim-ls.yaml", dir);
    FILE *f = fopen(profile_path, "w");
    assert_non_null(f);
    fprintf(f,
            "robot: sim-arm\ncontrol_hz: 50\nclock: lockstep\nlockstep_timeout_ms: 2000\n"
            "joints:\n"
            "  - {name: base_yaw, min: -2.6, max: 2.6, max_velocity: 5.0, home: 0.0}\n"
            "  - {name: shoulder_pitch, min: -1.6, max: 1.6, max_velocity: 5.0, home: 0.5}\n"
            "  - {name: elbow_pitch, min: -2.6, max: 2.6, max_velocity: 5.0, home: 1.5}\n"
            "  - {name: wrist_pitch, min: -2.0, max: 2.0, max_velocity: 5.0, home: 1.0}\n"
            "cameras:\n  - {name: front, width: 64, height: 64, rate_hz: 25}\n"
            "endpoints:\n  observations: tcp://127.0.0.1:%d\n  actions: tcp://127.0.0.1:%d\n"
            "  control: tcp://127.0.0.1:%d\n"
            "safety: {watchdog_ms: 500}\n"
            "sim: {model: %s/sim/models/arm4.xml, substeps: 10}\n",
            base, vlad_proc_free_port(), vlad_proc_free_port(), src);
    fclose(f);
    vlad_err err;
    assert_int_equal(vlad_profile_load(&prof, profile_path, &err), VLAD_OK);
}

static vlad_sim_results run(vlad_task_kind task, bool expect_policy, double timeout_ms) {
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &prof);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.tasks[0] = task;
    o.n_tasks = 1;
    o.episodes = 2;
    o.expect_policy = expect_policy;
    o.lockstep_timeout_ms = timeout_ms;
    o.command_timeout_ms = timeout_ms > 100 ? 1000 : 20;
    vlad_sim_results r;
    vlad_err err;
    int rc = vlad_sim_run(&o, &r, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, VLAD_OK);
    return r;
}

static void test_with_daemon(void **st) {
    (void)st;
    char log[320];
    snprintf(log, sizeof log, "%s/vlad.log", dir);
    char *argv[] = {(char *)vlad_proc_bin("vlad"), "--profile", profile_path, NULL};
    pid_t pid = vlad_proc_start(argv, log);
    assert_true(pid > 0);
    usleep(400 * 1000);
    /* the daemon (no policy) answers every tick with HOLD: no missing actions */
    vlad_sim_results r = run(VLAD_TASK_TRACK, false, 2000);
    assert_int_equal(r.n, 2);
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(r.ep[i].ticks, 150);
        assert_int_equal(r.ep[i].stall_ticks, 0);
        assert_false(r.ep[i].success); /* holding does not track */
        assert_true(r.ep[i].world_changes > 0);
        assert_int_equal(r.ep[i].reactions, 0); /* HOLD actions come from no chunk */
        assert_true(isnan(r.ep[i].latency_mean_ticks));
    }
    assert_int_equal(r.ep[1].first_tick, 150); /* ticks continue across episodes */
    vlad_sim_results_free(&r);
    /* expecting a policy, every HOLD is a stall (all but the final tick of each episode) */
    r = run(VLAD_TASK_REACH, true, 2000);
    for (int i = 0; i < r.n; i++)
        assert_int_equal(r.ep[i].stall_ticks, r.ep[i].ticks - 1);
    assert_int_equal(r.ep[0].first_tick, 0); /* a new run starts at tick 0 */
    vlad_sim_results_free(&r);
    vlad_proc_kill(pid);
    /* the daemon saw the episodes' commands */
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "reset"));
}

static void test_without_daemon(void **st) {
    (void)st;
    vlad_sim_results r = run(VLAD_TASK_WHACK, false, 2);
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(r.ep[i].stall_ticks, r.ep[i].ticks - 1);
        assert_false(r.ep[i].success);
        assert_int_equal(r.ep[i].reactions, 0);
    }
    vlad_sim_results_free(&r);
}

static int run_cli(char *const argv[], const char *log, const char *want) {
    pid_t pid = vlad_proc_start(argv, log);
    if (pid <= 0)
        return -1;
    int rc = vlad_proc_wait(pid, 60000);
    if (rc < 0) {
        vlad_proc_kill(pid);
        return -1;
    }
    if (want) {
        FILE *f = fopen(log, "r");
        char buf[8192];
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (!strstr(buf, want)) {
            fprintf(stderr, "expected '%s' in:\n%s\n", want, buf);
            return -2;
        }
    }
    return rc;
}

static void test_cli(void **st) {
    (void)st;
    char log[320], bad[320], json[320];
    snprintf(log, sizeof log, "%s/cli.log", dir);
    snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
    snprintf(json, sizeof json, "%s/r.json", dir);
    FILE *f = fopen(bad, "w");
    fputs("robot: x\ncontrol_hz: -5\n", f);
    fclose(f);
    const char *sim = vlad_proc_bin("vlad-sim");
    char *a1[] = {(char *)sim, "--profile", bad, NULL};
    remove(log);
    assert_int_equal(run_cli(a1, log, "control_hz"), 2);
    char *a2[] = {(char *)sim, "--profile", profile_path, "--task", "dance", NULL};
    remove(log);
    assert_int_equal(run_cli(a2, log, "dance"), 2);
    char *a3[] = {(char *)sim, "--profile", profile_path, "--episodes", "-3", NULL};
    remove(log);
    assert_int_equal(run_cli(a3, log, "--episodes"), 2);
    char *a4[] = {(char *)sim, "--profile", profile_path, "--param", "whack.nonsense=1", NULL};
    remove(log);
    assert_int_equal(run_cli(a4, log, "--param"), 2);
    /* expert, no daemon: runs, prints the table, writes JSON */
    char *a5[] = {(char *)sim, "--profile", profile_path, "--expert", "--task", "reach,push", "--episodes", "1",
                  "--clock", "lockstep", "--json", json, NULL};
    remove(log);
    assert_int_equal(run_cli(a5, log, "| push  |"), 0);
    f = fopen(json, "r");
    assert_non_null(f);
    fclose(f);
}

static int setup(void **st) {
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/vlad-sim-daemon-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    write_profile();
    return 0;
}

static int teardown(void **st) {
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_with_daemon),
        cmocka_unit_test(test_without_daemon),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
