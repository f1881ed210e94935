/* vlad_check_profile (daemon/check.h) and `vlad --check`: the default profile and model
 * pass; each mismatch the daemon would refuse at start is reported as an error naming the
 * profile key and both values, all of them at once, not just the first; the check loads
 * the model without starting threads or binding sockets; `vlad` refuses to start with the
 * same list; and any number of --set options is accepted (more than 32 used to be
 * refused as "unknown argument"). Profiles are written to a temporary folder and point at
 * the committed default model (4 joints, 64x64 images, chunk_size 26), or, where the camera
 * count is the point, at a parity fixture: one without views (one image input per camera)
 * and one whose views name cameras 0 and 1 (MODEL.md "Views"). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "check.h"
#include "model.h"
#include "keys.h"
#include "proc.h"
#include "profile.h"
#include "safetensors.h"

static char g_dir[256];
static char g_model[600];
static char g_fix1[600];  /* tiny_f32_1cam: no views, 1 camera 16x16, 3 state / 2 action, chunk 5 */
static char g_views[600]; /* views_3of2cam: views camera 0 now and 3 ago, camera 1 1 ago; 8x8 */

/* What a temporary profile contains; NULL / 0 fields take the sim-arm values. */
typedef struct spec {
    int n_joints;        /* 0: 4 */
    const char *cameras; /* YAML list items; NULL: one front 64x64 camera; "" = none */
    const char *model;   /* NULL: the default model; "" = none */
    int synthetic;
    int K, threshold;    /* 0: 10, 5 */
    const char *extra;   /* appended YAML (other sections), NULL for none */
} spec;

static const char *write_profile(const char *name, const spec *s) {
    static char path[400];
    snprintf(path, sizeof path, "%s/%s.yaml", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const char *joints[] = {"base_yaw", "shoulder_pitch", "elbow_pitch", "wrist_pitch",
                                   "wrist_roll", "gripper"};
    int nj = s->n_joints ? s->n_joints : 4;
    fprintf(f, "robot: checkbot\ncontrol_hz: 50\njoints:\n");
    for (int j = 0; j < nj; j++)
        fprintf(f, "  - {name: %s, min: -2, max: 2, max_velocity: 5, home: 0.0}\n", joints[j]);
    const char *cams = s->cameras ? s->cameras : "  - {name: front, width: 64, height: 64}\n";
    if (cams[0])
        fprintf(f, "cameras:\n%s", cams);
    fprintf(f,
            "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
            "  control: ipc://%s/ctl\n",
            g_dir, g_dir, g_dir);
    fprintf(f, "policy:\n  model: \"%s\"\n  synthetic: %s\n", s->model ? s->model : g_model,
            s->synthetic ? "true" : "false");
    fprintf(f, "async:\n  execution_horizon: %d\n  trigger_threshold: %d\n", s->K ? s->K : 10,
            s->threshold ? s->threshold : 5);
    if (s->extra)
        fputs(s->extra, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void load(vlad_profile *p, const char *path) {
    vlad_err err;
    if (vlad_profile_load(p, path, &err))
        fail_msg("%s", err.msg);
}

static void check(const vlad_profile *p, vlad_check_report *r) {
    vlad_err err = {0};
    assert_int_equal(vlad_check_profile(p, r, &err), VLAD_OK);
}

/* The error item with this key whose message contains every one of the strings (NULL-ended). */
static const vlad_check_item *find(const vlad_check_report *r, const char *key, ...) {
    for (int i = 0; i < r->n_items; i++) {
        const vlad_check_item *it = &r->items[i];
        if (it->severity != VLAD_CHECK_ERROR || strcmp(it->key, key))
            continue;
        va_list ap;
        va_start(ap, key);
        int all = 1;
        for (const char *s; (s = va_arg(ap, const char *));)
            all = all && strstr(it->msg, s) != NULL;
        va_end(ap);
        if (all)
            return it;
    }
    return NULL;
}

static void dump(const vlad_check_report *r) { vlad_check_print(r, stderr, "  report: "); }

/* The checkpoint at path, loaded by the engine's own loader (the test fails if it cannot). */
static vlad_model *load_model(const char *path) {
    vlad_model *m = NULL;
    vlad_err e;
    if (vlad_model_load(path, &m, &e))
        fail_msg("%s", e.msg);
    return m;
}

#define EXPECT(r, key, ...)                                                               \
    do {                                                                                  \
        if (!find(r, key, __VA_ARGS__, (const char *)NULL)) {                             \
            dump(r);                                                                      \
            fail_msg("no error for key '%s' with the expected values", key);              \
        }                                                                                 \
    } while (0)

static int count_dir(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- the library ------------------------------------------------------------------------ */

static void test_default_profile_passes(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    load(&p, "configs/sim-arm.yaml");
    check(&p, &r);
    if (r.n_items)
        dump(&r);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.n_warnings, 0);
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_MODEL);
    assert_true(r.model.loaded);
    assert_int_equal(r.model.action_dim, 4);
    assert_int_equal(r.model.state_dim, 4);
    vlad_model *m = load_model(g_model);
    assert_int_equal(r.model.n_cameras, m->cfg.n_cameras); /* image inputs: one per view */
    vlad_model_free(m);
    assert_int_equal(r.model.image_size, 64);
    assert_int_equal(r.horizon, r.model.chunk_size);
    assert_true(r.model.chunk_size >= p.async.execution_horizon);
    assert_true(r.model.params > 1000000);
    vlad_err err = {0};
    assert_int_equal(vlad_check_to_err(&r, &err), VLAD_OK);

    /* a written fixture pointing at the same model passes too */
    spec s = {0};
    load(&p, write_profile("good", &s));
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    assert_true(r.model.loaded);
}

static void test_wrong_joint_count(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {.n_joints = 3};
    load(&p, write_profile("joints3", &s));
    check(&p, &r);
    assert_int_equal(r.n_errors, 2);
    EXPECT(&r, "joints", "3 joints", "action_dim 4");
    EXPECT(&r, "joints", "3 joints", "state_dim 4");
    vlad_err err = {0};
    assert_int_equal(vlad_check_to_err(&r, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "action_dim 4"));
    assert_non_null(strstr(err.msg, "state_dim 4"));
}

static void test_wrong_camera_size(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {.cameras = "  - {name: front, width: 32, height: 48}\n"};
    load(&p, write_profile("cam-size", &s));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "cameras[0]", "front", "32x48", "64x64");
}

static void test_wrong_camera_count(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    /* no views: one image input per camera, so the profile's camera count must match */
    spec two = {.model = g_fix1, .n_joints = 3, .K = 5,
                .cameras = "  - {name: front, width: 16, height: 16}\n"
                           "  - {name: wrist, width: 16, height: 16}\n"};
    load(&p, write_profile("cam-two", &two));
    check(&p, &r);
    assert_int_equal(r.n_errors, 2); /* and the fixture's action_dim 2 for 3 joints */
    EXPECT(&r, "cameras", "2 cameras", "1 camera image");
    EXPECT(&r, "joints", "3 joints", "action_dim 2");
    spec none = {.model = g_fix1, .n_joints = 3, .K = 5, .cameras = ""};
    load(&p, write_profile("cam-none", &none));
    check(&p, &r);
    assert_int_equal(r.n_errors, 2);
    EXPECT(&r, "cameras", "0 cameras", "1 camera image");
    /* views: the cameras they name must exist; more cameras than views need is fine */
    spec one = {.model = g_views, .n_joints = 3, .K = 4, .threshold = 2,
                .cameras = "  - {name: front, width: 8, height: 8}\n"};
    load(&p, write_profile("views-one", &one));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "cameras", "camera");
    spec three = {.model = g_views, .n_joints = 3, .K = 4, .threshold = 2,
                  .cameras = "  - {name: front, width: 8, height: 8}\n"
                             "  - {name: wrist, width: 8, height: 8}\n"
                             "  - {name: side, width: 8, height: 8}\n"};
    load(&p, write_profile("views-three", &three));
    check(&p, &r);
    if (r.n_errors)
        dump(&r);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.model.n_cameras, 3); /* three image inputs from two of the cameras */
}

static void test_execution_horizon_beyond_model(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {.K = 30};
    load(&p, write_profile("k30", &s));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "async.execution_horizon", "30", "26");
    /* exactly the model's horizon is fine */
    spec ok = {.K = 26};
    load(&p, write_profile("k26", &ok));
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
}

static void test_missing_and_unreadable_model(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    char missing[400];
    snprintf(missing, sizeof missing, "%s/no-such-model.safetensors", g_dir);
    spec s = {.model = missing};
    load(&p, write_profile("missing", &s));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.model", "no-such-model.safetensors", "No such file");
    assert_false(r.model.loaded);

    char junk[400];
    snprintf(junk, sizeof junk, "%s/junk.safetensors", g_dir);
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("this is not a checkpoint, but it is long enough to have a header", f);
    fclose(f);
    spec j = {.model = junk};
    load(&p, write_profile("junk", &j));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.model", "junk.safetensors");

    /* a folder is not a checkpoint either */
    spec d = {.model = g_dir};
    load(&p, write_profile("folder", &d));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.model", "not a regular file");
}

static void test_synthetic_and_model(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {.synthetic = 1};
    load(&p, write_profile("synth-model", &s));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.synthetic", "policy.model", "vlad-default.safetensors");
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_SYNTHETIC); /* what the daemon would run */

    /* synthetic alone is fine; its horizon is 2K+8 */
    spec alone = {.synthetic = 1, .model = ""};
    load(&p, write_profile("synth", &alone));
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_SYNTHETIC);
    assert_int_equal(r.horizon, 2 * 10 + 8);
    assert_int_equal(r.dim, 4);

    /* ... capped at the queue's 256, shorter than a 300-tick execution horizon */
    spec big = {.synthetic = 1, .model = "", .K = 300};
    load(&p, write_profile("synth-k300", &big));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "async.execution_horizon", "300", "256");
}

static void test_every_problem_reported(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {.n_joints = 6, .synthetic = 1, .K = 40, .threshold = 5,
              .cameras = "  - {name: front, width: 32, height: 32}\n"
                         "  - {name: side, width: 64, height: 96}\n"};
    load(&p, write_profile("everything", &s));
    check(&p, &r);
    EXPECT(&r, "policy.synthetic", "policy.model");
    EXPECT(&r, "joints", "6 joints", "action_dim 4");
    EXPECT(&r, "joints", "6 joints", "state_dim 4");
    /* two cameras are a problem for a model without views that takes one image; a model
     * whose views all name camera 0 takes any number of cameras */
    const int count_problem = find(&r, "cameras", "2 cameras", (const char *)NULL) != NULL;
    vlad_model *m = load_model(g_model);
    const char *views = vlad_st_meta(m->file, "vlad.views");
    assert_int_equal(count_problem, !views && m->cfg.n_cameras == 1);
    vlad_model_free(m);
    EXPECT(&r, "cameras[0]", "front", "32x32");
    EXPECT(&r, "cameras[1]", "side", "64x96");
    EXPECT(&r, "async.execution_horizon", "40", "26");
    const int n = 6 + count_problem;
    assert_int_equal(r.n_errors, n);
    assert_int_equal(r.n_dropped, 0);
    vlad_err err = {0};
    assert_int_equal(vlad_check_to_err(&r, &err), VLAD_EINVAL);
    char want[32];
    snprintf(want, sizeof want, "%d problems", n);
    assert_non_null(strstr(err.msg, want));
    char buf[8192] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    assert_non_null(f);
    assert_int_equal(vlad_check_print(&r, f, "> "), n);
    fclose(f);
    assert_non_null(strstr(buf, "> error: cameras[1] (side)"));
}

static void test_flow_steps(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {0};
    load(&p, write_profile("flow", &s));
    vlad_err err;
    assert_int_equal(vlad_profile_set(&p, "policy.flow_steps", "8", &err), 0);
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.model.flow_steps, 8); /* the override the daemon would run */
    /* outside what the engine accepts (a profile built in code, past the loader's range) */
    p.policy.flow_steps = 5000;
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.flow_steps", "5000", "1000");
    p.policy.flow_steps = -2;
    check(&p, &r);
    EXPECT(&r, "policy.flow_steps", "-2");
    /* without a model flow_steps does nothing: a warning, not an error */
    spec none = {.model = ""};
    load(&p, write_profile("flow-nomodel", &none));
    assert_int_equal(vlad_profile_set(&p, "policy.flow_steps", "8", &err), 0);
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.n_warnings, 1);
    assert_int_equal(r.items[0].severity, VLAD_CHECK_WARNING);
    assert_string_equal(r.items[0].key, "policy.flow_steps");
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_NONE);
    assert_int_equal(vlad_check_to_err(&r, &err), VLAD_OK);
}

/* The check loads the model but binds none of the profile's ipc endpoints (each would
 * create a socket file in g_dir) and leaves the thread count as it was. */
static void test_no_sockets_no_threads(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    spec s = {0};
    load(&p, write_profile("quiet", &s));
    int files = count_dir(g_dir), threads = count_dir("/proc/self/task");
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    assert_true(r.model.loaded);
    assert_int_equal(count_dir(g_dir), files);
    assert_int_equal(count_dir("/proc/self/task"), threads);
    struct stat sb;
    char obs[400];
    snprintf(obs, sizeof obs, "%s/obs", g_dir);
    assert_int_not_equal(stat(obs, &sb), 0);
}

static void test_null_arguments(void **st) {
    (void)st;
    static vlad_check_report r;
    vlad_err err = {0};
    assert_int_equal(vlad_check_profile(NULL, &r, &err), VLAD_EINVAL);
    assert_true(err.msg[0] != 0);
    static vlad_profile p;
    assert_int_equal(vlad_check_profile(&p, NULL, NULL), VLAD_EINVAL);
}

/* policy.remote.*: without the network, the policy is "remote" and only the key files are
 * checked (the servers' public certificate must not hold a secret key, the daemon's secret
 * one must be 0600); remote keys without endpoints are warned about; vlad_check_remote asks
 * the servers: none there is an error, a warning with the fallback. */
static void test_remote_profile(void **st) {
    (void)st;
    static vlad_profile p;
    static vlad_check_report r;
    char srv[400], arm[400], extra[2000];
    snprintf(srv, sizeof srv, "%s/serve", g_dir);
    snprintf(arm, sizeof arm, "%s/arm", g_dir);
    vlad_err err;
    assert_int_equal(vlad_cert_generate(srv, "vlad-serve", 0, &err), 0);
    assert_int_equal(vlad_cert_generate(arm, "arm", VLAD_RIGHT_INFER, &err), 0);
    spec s = {.model = "", .extra = "policy.remote.endpoints: \"tcp://127.0.0.1:9, ipc:///tmp/x\"\n"};
    load(&p, write_profile("remote", &s));
    int threads = count_dir("/proc/self/task");
    check(&p, &r);
    if (r.n_items)
        dump(&r);
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_REMOTE);
    assert_int_equal(r.n_errors + r.n_warnings, 0);
    assert_int_equal(count_dir("/proc/self/task"), threads); /* nothing asked yet */

    snprintf(extra, sizeof extra,
             "policy.remote: {endpoints: [tcp://127.0.0.1:9], server_key: %s.key, client_key: "
             "%s.key_secret}\n", srv, arm);
    spec k = {.model = "", .extra = extra};
    load(&p, write_profile("remote-keys", &k));
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    /* the secret certificate given as the servers' public one */
    snprintf(extra, sizeof extra,
             "policy.remote: {endpoints: [tcp://127.0.0.1:9], server_key: %s.key_secret, "
             "client_key: %s.key_secret}\n", srv, arm);
    load(&p, write_profile("remote-secret", &k));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.remote.server_key", "holds a secret key");
    /* the daemon's secret key readable by others */
    char sec[420];
    snprintf(sec, sizeof sec, "%s.key_secret", arm);
    assert_int_equal(chmod(sec, 0644), 0);
    snprintf(extra, sizeof extra,
             "policy.remote: {endpoints: [tcp://127.0.0.1:9], server_key: %s.key, client_key: "
             "%s.key_secret}\n", srv, arm);
    load(&p, write_profile("remote-0644", &k));
    check(&p, &r);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.remote.client_key", "policy.remote.client_key", "chmod 600");
    assert_int_equal(chmod(sec, 0600), 0);
    /* keys without endpoints: no effect, said */
    snprintf(extra, sizeof extra, "policy.remote: {server_key: %s.key, client_key: %s.key_secret}\n",
             srv, arm);
    spec none = {.extra = extra};
    load(&p, write_profile("remote-none", &none));
    check(&p, &r);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.n_warnings, 2);
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_MODEL);

    /* the servers asked: nobody on port 9 */
    spec gone = {.model = "", .extra = "policy.remote: {endpoints: [tcp://127.0.0.1:9], "
                                        "start_timeout_ms: 300}\n"};
    load(&p, write_profile("remote-gone", &gone));
    check(&p, &r);
    assert_int_not_equal(vlad_check_remote(&p, &r), VLAD_OK);
    assert_int_equal(r.n_errors, 1);
    EXPECT(&r, "policy.remote.endpoints", "no vlad-serve answered", "tcp://127.0.0.1:9",
           "no connection", "refuse to start");
    assert_false(r.remote.reached);
    /* ... with the fallback (the default model): a warning, the model checked as ever */
    spec fb = {.extra = "policy.remote: {endpoints: [tcp://127.0.0.1:9], start_timeout_ms: 300, "
                        "fallback: true}\n"};
    load(&p, write_profile("remote-fallback", &fb));
    check(&p, &r);
    assert_true(r.model.loaded);
    assert_int_not_equal(vlad_check_remote(&p, &r), VLAD_OK);
    assert_int_equal(r.n_errors, 0);
    assert_int_equal(r.n_warnings, 1);
    assert_int_equal(r.policy, VLAD_CHECK_POLICY_REMOTE);
}

/* ---- the binary --------------------------------------------------------------------------- */

/* Run `vlad` with args; returns the exit status and the combined output in out. */
static int run_vlad(char **args, int n, char *out, size_t cap) {
    char logp[400];
    snprintf(logp, sizeof logp, "%s/vlad-out.log", g_dir);
    remove(logp);
    char *argv[128];
    assert_true(n + 2 <= 128);
    argv[0] = (char *)vlad_proc_bin("vlad");
    for (int i = 0; i < n; i++)
        argv[1 + i] = args[i];
    argv[n + 1] = NULL;
    pid_t pid = vlad_proc_start(argv, logp);
    assert_true(pid > 0);
    int rc = vlad_proc_wait(pid, 60000);
    if (rc < 0) {
        vlad_proc_kill(pid);
        fail_msg("vlad did not exit");
    }
    out[0] = 0;
    FILE *f = fopen(logp, "r");
    if (f) {
        size_t got = fread(out, 1, cap - 1, f);
        out[got] = 0;
        fclose(f);
    }
    return rc;
}

static void test_binary_many_sets(void **st) {
    (void)st;
    char *args[96];
    static char vals[40][32];
    int n = 0;
    args[n++] = "--check";
    args[n++] = "--profile";
    args[n++] = "configs/sim-arm.yaml";
    for (int i = 0; i < 40; i++) {
        snprintf(vals[i], sizeof vals[i], "robot=set-%d", i);
        args[n++] = "--set";
        args[n++] = vals[i];
    }
    static char out[8192];
    int rc = run_vlad(args, n, out, sizeof out);
    if (rc != 0)
        fail_msg("vlad exited %d:\n%s", rc, out);
    /* all 40 applied, in order: the last one wins */
    assert_non_null(strstr(out, ": ok (robot set-39, 4 joints"));
    assert_non_null(strstr(out, "vlad-default.safetensors: state_dim 4, action_dim 4"));
    assert_null(strstr(out, "unknown argument"));
}

static void test_binary_reports_every_problem(void **st) {
    (void)st;
    spec s = {.n_joints = 3, .K = 30, .cameras = "  - {name: front, width: 32, height: 32}\n"};
    const char *path = write_profile("bin-bad", &s);
    char prof[400];
    snprintf(prof, sizeof prof, "%s", path);
    static char out[8192];
    char *a1[] = {"--check", "--profile", prof};
    assert_int_equal(run_vlad(a1, 3, out, sizeof out), 1);
    assert_non_null(strstr(out, "error: joints:"));
    assert_non_null(strstr(out, "error: cameras[0] (front)"));
    assert_non_null(strstr(out, "error: async.execution_horizon: 30"));
    assert_non_null(strstr(out, "4 problems: the daemon would refuse this profile"));
    assert_null(strstr(out, ": ok ("));
    /* --set fixes one of them: the others remain */
    char *a2[] = {"--check", "--profile", prof, "--set", "async.execution_horizon=20"};
    assert_int_equal(run_vlad(a2, 5, out, sizeof out), 1);
    assert_null(strstr(out, "async.execution_horizon"));
    assert_non_null(strstr(out, "3 problems"));
    /* the daemon itself refuses to start with the same list, before binding anything */
    char *a3[] = {"--profile", prof};
    assert_int_equal(run_vlad(a3, 2, out, sizeof out), 1);
    assert_non_null(strstr(out, "error: joints:"));
    assert_non_null(strstr(out, "4 problems: refusing to start"));
    char obs[400];
    struct stat sb;
    snprintf(obs, sizeof obs, "%s/obs", g_dir);
    assert_int_not_equal(stat(obs, &sb), 0);
    /* a --set with no '=' is still a usage error */
    char *a4[] = {"--check", "--profile", prof, "--set", "robot"};
    assert_int_equal(run_vlad(a4, 5, out, sizeof out), 2);
    assert_non_null(strstr(out, "expected KEY=VALUE"));
}

/* ---- fixture ------------------------------------------------------------------------------ */

static int setup(void **st) {
    (void)st;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/vlad-check-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir))
        return -1;
    const char *src = getenv("VLAD_SRC");
    char base[512];
    if (src && *src)
        snprintf(base, sizeof base, "%s", src);
    else if (!getcwd(base, sizeof base))
        return -1;
    snprintf(g_model, sizeof g_model, "%s/models/vlad-default.safetensors", base);
    snprintf(g_fix1, sizeof g_fix1, "%s/tests/policy/fixtures/tiny_f32_1cam.safetensors", base);
    snprintf(g_views, sizeof g_views, "%s/tests/policy/fixtures/views_3of2cam.safetensors", base);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    DIR *d = opendir(g_dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.')
                continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            remove(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_profile_passes),
        cmocka_unit_test(test_wrong_joint_count),
        cmocka_unit_test(test_wrong_camera_size),
        cmocka_unit_test(test_wrong_camera_count),
        cmocka_unit_test(test_execution_horizon_beyond_model),
        cmocka_unit_test(test_missing_and_unreadable_model),
        cmocka_unit_test(test_synthetic_and_model),
        cmocka_unit_test(test_every_problem_reported),
        cmocka_unit_test(test_flow_steps),
        cmocka_unit_test(test_no_sockets_no_threads),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_remote_profile),
        cmocka_unit_test(test_binary_many_sets),
        cmocka_unit_test(test_binary_reports_every_problem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
