/* The e-stop latch on disk (daemon/latch.h): where it lives, the write/read/clear round trip,
 * and fail-safe reads (a latch that exists but cannot be read counts as latched). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "latch.h"

static void load(vlad_profile *p, const char *estop_file, const char *name) {
    char y[1024];
    if (estop_file)
        snprintf(y, sizeof y,
                 "robot: arm7\nsafety: {estop_file: '%s'}\njoints:\n"
                 "  - {name: a, min: -1, max: 1, max_velocity: 1}\n",
                 estop_file);
    else
        snprintf(y, sizeof y, "robot: arm7\njoints:\n  - {name: a, min: -1, max: 1, max_velocity: 1}\n");
    vlad_err err;
    if (vlad_profile_load_string(p, y, strlen(y), name, &err))
        fail_msg("%s", err.msg);
}

/* saved and restored environment */
static char *saved_home, *saved_xdg;

static int save_env(void **state) {
    (void)state;
    const char *h = getenv("HOME"), *x = getenv("XDG_STATE_HOME");
    saved_home = h ? strdup(h) : NULL;
    saved_xdg = x ? strdup(x) : NULL;
    return 0;
}

static int restore_env(void **state) {
    (void)state;
    if (saved_home)
        setenv("HOME", saved_home, 1);
    else
        unsetenv("HOME");
    if (saved_xdg)
        setenv("XDG_STATE_HOME", saved_xdg, 1);
    else
        unsetenv("XDG_STATE_HOME");
    free(saved_home);
    free(saved_xdg);
    return 0;
}

static void test_path(void **state) {
    (void)state;
    static vlad_profile p;
    char buf[4096];
    /* an explicit file, absolute */
    load(&p, "/var/lib/vlad/arm7.estop", "/etc/vlad/arm.yaml");
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "/var/lib/vlad/arm7.estop");
    /* relative: against the profile's folder */
    load(&p, "state/latch.estop", "/etc/vlad/arm.yaml");
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "/etc/vlad/state/latch.estop");
    /* none: not persisted */
    load(&p, "none", "/etc/vlad/arm.yaml");
    strcpy(buf, "junk");
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "");
    /* the default: XDG_STATE_HOME first */
    load(&p, NULL, "/etc/vlad/arm.yaml");
    setenv("HOME", "/home/op", 1);
    setenv("XDG_STATE_HOME", "/xdg/state", 1);
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "/xdg/state/vlad/arm7.estop");
    /* a relative XDG_STATE_HOME is ignored (the XDG spec: absolute paths only), then HOME */
    setenv("XDG_STATE_HOME", "relative/state", 1);
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "/home/op/.local/state/vlad/arm7.estop");
    setenv("XDG_STATE_HOME", "", 1);
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "/home/op/.local/state/vlad/arm7.estop");
    unsetenv("XDG_STATE_HOME");
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "/home/op/.local/state/vlad/arm7.estop");
    /* no HOME either: nowhere to put it, not persisted */
    unsetenv("HOME");
    strcpy(buf, "junk");
    vlad_latch_path(&p, buf, sizeof buf);
    assert_string_equal(buf, "");
    /* a path that does not fit the buffer is not truncated into another path */
    setenv("HOME", "/home/op", 1);
    char small[16];
    vlad_latch_path(&p, small, sizeof small);
    assert_string_equal(small, "");
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_round_trip(void **state) {
    (void)state;
    char dir[] = "/tmp/vlad-latch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512], tmp[600], reason[1024];
    snprintf(path, sizeof path, "%s/a/b/arm7.estop", dir); /* a and b do not exist */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    vlad_err err;
    bool latched = true;
    strcpy(reason, "junk");
    assert_int_equal(vlad_latch_read(path, &latched, reason, sizeof reason, &err), 0);
    assert_false(latched); /* missing file: not latched */
    assert_string_equal(reason, "");
    assert_int_equal(vlad_latch_clear(path, &err), 0); /* absent is fine */

    assert_int_equal(vlad_latch_write(path, "operator pressed the button", &err), 0);
    assert_true(exists(path));
    assert_false(exists(tmp)); /* renamed into place */
    assert_int_equal(vlad_latch_read(path, &latched, reason, sizeof reason, &err), 0);
    assert_true(latched);
    assert_non_null(strstr(reason, "e-stop latched at"));
    assert_non_null(strstr(reason, "operator pressed the button"));
    assert_null(strchr(reason, '\n'));
    /* reason may be NULL */
    latched = false;
    assert_int_equal(vlad_latch_read(path, &latched, NULL, 0, &err), 0);
    assert_true(latched);
    /* replaced, not appended */
    assert_int_equal(vlad_latch_write(path, "second", &err), 0);
    assert_int_equal(vlad_latch_read(path, &latched, reason, sizeof reason, &err), 0);
    assert_true(latched);
    assert_non_null(strstr(reason, "second"));
    assert_null(strstr(reason, "operator"));
    /* a reason longer than the line: written (cut), still one line */
    char longr[700];
    memset(longr, 'r', sizeof longr - 1);
    longr[sizeof longr - 1] = 0;
    assert_int_equal(vlad_latch_write(path, longr, &err), 0);
    assert_int_equal(vlad_latch_read(path, &latched, reason, sizeof reason, &err), 0);
    assert_true(latched);
    assert_true(strlen(reason) > 400 && strlen(reason) < 512);
    /* a small reason buffer: cut, terminated */
    char tiny[8];
    assert_int_equal(vlad_latch_read(path, &latched, tiny, sizeof tiny, &err), 0);
    assert_true(latched);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    /* NULL reason written as empty */
    assert_int_equal(vlad_latch_write(path, NULL, &err), 0);
    assert_int_equal(vlad_latch_read(path, &latched, reason, sizeof reason, &err), 0);
    assert_true(latched);

    assert_int_equal(vlad_latch_clear(path, &err), 0);
    assert_false(exists(path));
    assert_int_equal(vlad_latch_read(path, &latched, reason, sizeof reason, &err), 0);
    assert_false(latched);
    assert_int_equal(vlad_latch_clear(path, &err), 0);

    /* "" path: persistence off, everything a no-op, never latched */
    assert_int_equal(vlad_latch_write("", "x", &err), 0);
    latched = true;
    assert_int_equal(vlad_latch_read("", &latched, reason, sizeof reason, &err), 0);
    assert_false(latched);
    assert_int_equal(vlad_latch_clear("", &err), 0);

    /* a folder that cannot be created (a file is in the way): an error naming the path */
    char blocker[600], under[700];
    snprintf(blocker, sizeof blocker, "%s/file", dir);
    FILE *fp = fopen(blocker, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(under, sizeof under, "%s/sub/arm7.estop", blocker);
    err.msg[0] = 0;
    assert_int_not_equal(vlad_latch_write(under, "x", &err), 0);
    assert_non_null(strstr(err.msg, blocker));
    /* ... and reading there: the latch cannot be known, so it counts as latched */
    latched = false;
    vlad_latch_read(under, &latched, reason, sizeof reason, &err);
    assert_true(latched);

    unlink(blocker);
    char p1[600];
    snprintf(p1, sizeof p1, "%s/a/b", dir);
    rmdir(p1);
    snprintf(p1, sizeof p1, "%s/a", dir);
    rmdir(p1);
    assert_int_equal(rmdir(dir), 0); /* nothing left behind */
}

/* A latch that exists but cannot be read is latched (fail safe). Tests may run as root, who
 * reads any file, so the unreadable latch is a directory at the path; chmod 000 is tried too
 * where it means something. */
static void test_unreadable_is_latched(void **state) {
    (void)state;
    char dir[] = "/tmp/vlad-latch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512], reason[256];
    snprintf(path, sizeof path, "%s/arm7.estop", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    vlad_err err;
    bool latched = false;
    strcpy(reason, "junk");
    int rc = vlad_latch_read(path, &latched, reason, sizeof reason, &err);
    printf("# a directory at the latch path: rc %d, latched %d\n", rc, latched);
    assert_true(latched);
    /* writing cannot replace a directory: an error, and no temporary file left behind */
    assert_int_not_equal(vlad_latch_write(path, "x", &err), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    latched = false;
    vlad_latch_read(path, &latched, reason, sizeof reason, &err);
    assert_true(latched); /* still */
    assert_int_equal(rmdir(path), 0);

    if (geteuid() != 0) {
        assert_int_equal(vlad_latch_write(path, "x", &err), 0);
        assert_int_equal(chmod(path, 0), 0);
        latched = false;
        rc = vlad_latch_read(path, &latched, reason, sizeof reason, &err);
        assert_true(latched);
        assert_int_equal(rc, VLAD_EIO);
        assert_non_null(strstr(err.msg, "treated as latched"));
        assert_int_equal(vlad_latch_clear(path, &err), 0); /* removal needs the folder only */
    } else {
        printf("# running as root: chmod 000 cannot make the latch unreadable, skipped\n");
    }
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_path, save_env, restore_env),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_unreadable_is_latched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
