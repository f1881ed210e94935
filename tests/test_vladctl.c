/* Integration: the operator tool. A real `vlad` (synthetic policy, wall clock) drives a scripted
 * robot that this test plays with robot_io/client.h (so the counters move), and the real
 * `vladctl` runs as a child process with its stdout and stderr captured:
 *   - `status --watch --count 3 --interval 200` (not a terminal): three blocks, a blank line
 *     apart, each naming the robot, the mode and a tick that increases from block to block;
 *     rates from the second block on; `--watch --json`: one JSON object per line;
 *   - `--json` on every command parses (estop -> ok, status then shows the e-stop and its
 *     reason, release -> ok, reset, instruction, ask refused with the reason (no model), keygen);
 *   - `metrics` passes a Prometheus text-format (0.0.4) checker written here (and the checker
 *     rejects broken expositions), with the robot label on every sample, --prefix and --output;
 *   - with no daemon: status, --json status, metrics and status --watch --count exit 3 with a
 *     clear message, and metrics still prints a valid exposition with vlad_up 0;
 *   - usage errors exit 2 (as JSON with --json); --help exits 0. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "proc.h"

#define HZ 50

static char dir[64], profile_path[128], down_path[128], log_path[128];
static vlad_profile prof;
static pid_t daemon_pid = -1;
static vlad_client *robot;
static int64_t obs_tick;
static char *out_text, *err_text; /* the last vladctl run's stdout and stderr */

/* ---- the scripted robot -------------------------------------------------------------- */

static void publish_obs(void) {
    double pos[2] = {0.2 + 0.1 * sin((double)obs_tick * 0.05), -0.1};
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.tick = obs_tick++;
    o.stamp_ns = vlad_now_ns();
    o.n_joint_pos = 2;
    o.joint_pos = pos;
    vlad_err err;
    if (vlad_client_publish_observation(robot, &o, &err))
        fail_msg("publish: %s", err.msg);
    vlad_msg m; /* the actions are not looked at here: drop them */
    while (vlad_client_recv(robot, 0, &m, NULL) == VLAD_OK)
        vlad_msg_clear(&m);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot read %s", path);
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    fclose(f);
    return b;
}

/* Run vladctl with args (NULL-terminated); the robot keeps publishing observations while it
 * runs. Returns its exit status; out_text / err_text hold what it printed. */
static int ctl(const char *first, ...) {
    const char *args[48];
    int n = 0;
    char script[400], out[160], errp[160];
    snprintf(out, sizeof out, "%s/ctl.out", dir);
    snprintf(errp, sizeof errp, "%s/ctl.err", dir);
    snprintf(script, sizeof script, "exec \"$0\" \"$@\" >'%s' 2>'%s'", out, errp);
    args[n++] = "/bin/sh";
    args[n++] = "-c";
    args[n++] = script;
    args[n++] = vlad_proc_bin("vladctl");
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 47; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    pid_t pid = vlad_proc_start((char *const *)args, NULL);
    assert_true(pid > 0);
    int rc = -1;
    for (int i = 0; i < 3000 && (rc = vlad_proc_wait(pid, 0)) < 0; i++) { /* up to a minute */
        if (robot)
            publish_obs();
        sleep_ms(1000 / HZ);
    }
    if (rc < 0) {
        vlad_proc_kill(pid);
        fail_msg("vladctl %s did not exit within a minute", first);
    }
    free(out_text);
    free(err_text);
    out_text = slurp(out);
    err_text = slurp(errp);
    return rc;
}

static void write_profile(const char *path, int p0, int p1, int p2) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "robot: ctlbot\ncontrol_hz: %d\n"
            "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 5, home: 0.1}\n"
            "  - {name: b, min: -1, max: 1, max_velocity: 5, home: -0.1}\n"
            "endpoints:\n  observations: tcp://127.0.0.1:%d\n  actions: tcp://127.0.0.1:%d\n"
            "  control: tcp://127.0.0.1:%d\n"
            "policy: {synthetic: true, min_latency_ms: 20}\n"
            "safety: {watchdog_ms: 2000, estop_file: %s/estop}\n",
            HZ, p0, p1, p2, dir);
    fclose(f);
}

static int free_port_not(const int *taken, int n) {
    for (;;) {
        int p = vlad_proc_free_port();
        int dup = p <= 0;
        for (int k = 0; k < n && !dup; k++)
            dup = taken[k] == p;
        if (!dup)
            return p;
    }
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vlad-ctl-XXXXXX");
    assert_non_null(mkdtemp(dir));
    int ports[6];
    for (int i = 0; i < 6; i++)
        ports[i] = free_port_not(ports, i);
    snprintf(profile_path, sizeof profile_path, "%s/ctl.yaml", dir);
    snprintf(down_path, sizeof down_path, "%s/down.yaml", dir);
    snprintf(log_path, sizeof log_path, "%s/vlad.log", dir);
    write_profile(profile_path, ports[0], ports[1], ports[2]);
    write_profile(down_path, ports[3], ports[4], ports[5]); /* nothing listens there */
    vlad_err err;
    if (vlad_profile_load(&prof, profile_path, &err))
        fail_msg("%s", err.msg);
    char *argv[] = {(char *)vlad_proc_bin("vlad"), "--profile", profile_path, NULL};
    daemon_pid = vlad_proc_start(argv, log_path);
    assert_true(daemon_pid > 0);
    robot = vlad_client_new(&prof, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_PUBLISH, &err);
    assert_non_null(robot);
    /* until the first action: the daemon is up and commanding */
    Vlad__Action *a = NULL;
    for (int i = 0; i < 500 && !a; i++) {
        Vlad__Observation o = VLAD__OBSERVATION__INIT;
        double pos[2] = {0.2, -0.1};
        o.tick = obs_tick++;
        o.stamp_ns = vlad_now_ns();
        o.n_joint_pos = 2;
        o.joint_pos = pos;
        assert_int_equal(vlad_client_publish_observation(robot, &o, &err), 0);
        if (vlad_client_recv_action(robot, 20, &a, &err) != VLAD_OK)
            a = NULL;
    }
    if (!a)
        fail_msg("no action from vlad within 10 s (log: %s)", log_path);
    vlad__action__free_unpacked(a, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vlad_client_free(robot);
    robot = NULL;
    if (daemon_pid > 0 && vlad_proc_wait(daemon_pid, 0) < 0)
        vlad_proc_kill(daemon_pid);
    free(out_text);
    free(err_text);
    out_text = err_text = NULL;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 0;
    return 0;
}

/* ---- a Prometheus text-format (0.0.4) checker ---------------------------------------- */

typedef struct {
    char name[200], type[16];
    int samples, done; /* done: another family's samples came after this one's */
} prom_family;

static prom_family fams[512];
static int nfams;
static char series[2048][320];
static int nseries;

static prom_family *family(const char *name) {
    for (int i = 0; i < nfams; i++)
        if (!strcmp(fams[i].name, name))
            return &fams[i];
    return NULL;
}

static int name_len(const char *p, int label) {
    int n = 0;
    if (!(isalpha((unsigned char)p[0]) || p[0] == '_' || (!label && p[0] == ':')))
        return 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_' || (!label && p[n] == ':'))
        n++;
    return n;
}

static int parse_value(const char *s, double *v) {
    if (!strcmp(s, "NaN")) {
        *v = NAN;
        return 1;
    }
    if (!strcmp(s, "+Inf") || !strcmp(s, "-Inf")) {
        *v = s[0] == '+' ? INFINITY : -INFINITY;
        return 1;
    }
    char *end;
    *v = strtod(s, &end);
    return *s && !*end && isfinite(*v);
}

#define BAD(...) do { snprintf(why, cap, __VA_ARGS__); return 0; } while (0)

/* One sample line: name{labels} value [timestamp]. */
static int check_sample(const char *line, const char *robot_label, prom_family **last, char *why,
                        size_t cap) {
    int n = name_len(line, 0);
    if (!n)
        BAD("'%.100s': not a metric name", line);
    char name[160];
    snprintf(name, sizeof name, "%.*s", n, line);
    prom_family *f = family(name);
    const char *suffix = "";
    if (!f) { /* a summary's or histogram's _sum, _count (, _bucket) */
        static const char *sfx[] = {"_sum", "_count", "_bucket"};
        for (int k = 0; k < 3 && !f; k++) {
            size_t l = strlen(name), sl = strlen(sfx[k]);
            if (l > sl && !strcmp(name + l - sl, sfx[k])) {
                char base[160];
                snprintf(base, sizeof base, "%.*s", (int)(l - sl), name);
                prom_family *b = family(base);
                if (b && (!strcmp(b->type, "summary") || !strcmp(b->type, "histogram")) &&
                    (k < 2 || !strcmp(b->type, "histogram"))) {
                    f = b;
                    suffix = sfx[k];
                }
            }
        }
    }
    if (!f)
        BAD("sample '%s' has no TYPE line before it", name);
    if (f->done)
        BAD("samples of '%s' are not together", f->name);
    if (*last && *last != f)
        (*last)->done = 1;
    *last = f;
    f->samples++;
    if (!strcmp(f->type, "counter") && (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total")))
        BAD("counter '%s' does not end in _total", name);
    const char *p = line + n;
    int have_robot = 0, have_quantile = 0;
    char key[320];
    snprintf(key, sizeof key, "%s", name);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            int ln = name_len(p, 1);
            if (!ln)
                BAD("'%s': bad label name at '%s'", name, p);
            char lname[64];
            snprintf(lname, sizeof lname, "%.*s", ln, p);
            p += ln;
            if (*p++ != '=' || *p++ != '"')
                BAD("'%s': label %s is not =\"...\"", name, lname);
            char val[256];
            size_t vn = 0;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        BAD("'%s': label %s: bad escape '\\%c'", name, lname, *p ? *p : '0');
                    if (vn < sizeof val - 1)
                        val[vn++] = *p == 'n' ? '\n' : *p;
                    p++;
                } else {
                    if (vn < sizeof val - 1)
                        val[vn++] = *p;
                    p++;
                }
            }
            val[vn] = 0;
            if (*p++ != '"')
                BAD("'%s': label %s: value not closed", name, lname);
            if (!strcmp(lname, "robot")) {
                if (strcmp(val, robot_label))
                    BAD("'%s': robot=\"%s\", expected \"%s\"", name, val, robot_label);
                have_robot = 1;
            }
            if (!strcmp(lname, "quantile")) {
                double q;
                if (!parse_value(val, &q) || q < 0 || q > 1)
                    BAD("'%s': quantile \"%s\" is not in [0,1]", name, val);
                have_quantile = 1;
            }
            size_t kl = strlen(key);
            if (snprintf(key + kl, sizeof key - kl, ",%s=%.100s", lname, val) >= (int)(sizeof key - kl))
                BAD("'%s': labels too long for this checker", name);
            if (*p == ',')
                p++;
            else if (*p != '}')
                BAD("'%s': expected ',' or '}' after label %s", name, lname);
        }
        p++;
    }
    if (!have_robot)
        BAD("'%s': no robot label", name);
    if (!strcmp(f->type, "summary") && !suffix[0] && !have_quantile)
        BAD("summary sample '%s' without a quantile label", name);
    if (have_quantile && (strcmp(f->type, "summary") || suffix[0]))
        BAD("'%s': a quantile label outside a summary's quantiles", name);
    if (*p++ != ' ')
        BAD("'%s': no space before the value", name);
    char vbuf[64];
    size_t vl = strcspn(p, " ");
    snprintf(vbuf, sizeof vbuf, "%.*s", (int)vl, p);
    double v;
    if (!parse_value(vbuf, &v))
        BAD("'%s': value '%s' is not a float", name, vbuf);
    if (p[vl]) { /* an optional timestamp: an integer */
        const char *ts = p + vl + 1;
        char *end;
        strtoll(ts, &end, 10);
        if (!*ts || *end)
            BAD("'%s': bad timestamp '%s'", name, ts);
    }
    for (int i = 0; i < nseries; i++)
        if (!strcmp(series[i], key))
            BAD("series %s appears twice", key);
    if (nseries < 2048)
        snprintf(series[nseries++], sizeof series[0], "%s", key);
    return 1;
}

/* 1 when text is a valid exposition with robot_label on every sample; else 0 and why. */
static int prom_check(const char *text, const char *robot_label, char *why, size_t cap) {
    nfams = nseries = 0;
    prom_family *last = NULL;
    int samples = 0;
    if (!*text)
        BAD("empty exposition");
    if (text[strlen(text) - 1] != '\n')
        BAD("the exposition does not end with a newline");
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = (size_t)(nl - p);
        char line[2048];
        if (len >= sizeof line)
            BAD("line too long");
        memcpy(line, p, len);
        line[len] = 0;
        p = nl + 1;
        if (!line[0])
            continue;
        if (line[0] == '#') {
            char kw[8], name[200], rest[1024] = "";
            if (sscanf(line, "# %7s %199s %1023[^\n]", kw, name, rest) >= 2 &&
                (!strcmp(kw, "HELP") || !strcmp(kw, "TYPE"))) {
                if ((int)strlen(name) != name_len(name, 0))
                    BAD("%s: '%s' is not a metric name", kw, name);
                if (!strcmp(kw, "TYPE")) {
                    static const char *types[] = {"counter", "gauge", "summary", "histogram", "untyped"};
                    int ok = 0;
                    for (int k = 0; k < 5; k++)
                        ok |= !strcmp(rest, types[k]);
                    if (!ok)
                        BAD("TYPE %s: unknown type '%s'", name, rest);
                    prom_family *f = family(name);
                    if (f && f->type[0])
                        BAD("TYPE %s: a second TYPE line", name);
                    if (f && f->samples)
                        BAD("TYPE %s after its samples", name);
                    if (!f) {
                        if (nfams == 512)
                            BAD("too many families");
                        f = &fams[nfams++];
                        memset(f, 0, sizeof *f);
                        snprintf(f->name, sizeof f->name, "%s", name);
                    }
                    snprintf(f->type, sizeof f->type, "%.15s", rest);
                }
            }
            continue;
        }
        if (!check_sample(line, robot_label, &last, why, cap))
            return 0;
        samples++;
    }
    if (!samples)
        BAD("no samples");
    return 1;
}

/* the value of the sample whose line starts with `series` ("name{labels}"), or NAN */
static double prom_value(const char *text, const char *series_prefix) {
    size_t l = strlen(series_prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series_prefix, l) && p[l] == ' ')
            return strtod(p + l + 1, NULL);
    return NAN;
}

/* the checker itself fails what it should */
static void test_prom_checker(void **state) {
    (void)state;
    char why[300];
    const char *good = "# HELP x_total a counter\n# TYPE x_total counter\nx_total{robot=\"r\"} 3\n"
                       "# TYPE s summary\ns{robot=\"r\",quantile=\"0.5\"} NaN\n"
                       "s_sum{robot=\"r\"} 1.5\ns_count{robot=\"r\"} 2\n"
                       "# TYPE g gauge\ng{robot=\"r\",t=\"a\\\"b\\\\c\\nd\"} -1e-3\n";
    if (!prom_check(good, "r", why, sizeof why))
        fail_msg("the checker refused a good exposition: %s", why);
    const char *bad[][2] = {
        {"x_total{robot=\"r\"} 3\n", "no TYPE"},
        {"# TYPE x counter\nx{robot=\"r\"} 3\n", "_total"},
        {"# TYPE g gauge\n# TYPE g gauge\ng{robot=\"r\"} 1\n", "second TYPE"},
        {"# TYPE g gauge\ng{robot=\"r\"} 1\n# TYPE g gauge\n", "second TYPE"},
        {"# TYPE g gauge\ng{robot=\"r\"} abc\n", "not a float"},
        {"# TYPE g gauge\ng{robot=r} 1\n", "=\""},
        {"# TYPE g gauge\ng{robot=\"r\",x=\"a\\tb\"} 1\n", "bad escape"},
        {"# TYPE g gauge\ng{robot=\"r\",x=\"ab} 1\n", "not closed"},
        {"# TYPE g gauge\ng{x=\"a\"} 1\n", "no robot label"},
        {"# TYPE s summary\ns{robot=\"r\",quantile=\"1.5\"} 1\n", "[0,1]"},
        {"# TYPE 1g gauge\n", "not a metric name"},
        {"# TYPE g gauge\n# TYPE h gauge\ng{robot=\"r\"} 1\nh{robot=\"r\"} 1\ng{robot=\"r\",a=\"b\"} 1\n",
         "not together"},
        {"# TYPE g gauge\ng{robot=\"r\"} 1\ng{robot=\"r\"} 2\n", "twice"},
        {"# TYPE g gauge\ng{robot=\"r\"} 1", "newline"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (prom_check(bad[i][0], "r", why, sizeof why))
            fail_msg("the checker passed a bad exposition: %s", bad[i][0]);
        if (!strstr(why, bad[i][1]))
            fail_msg("checker: '%s' for %s (expected '%s')", why, bad[i][0], bad[i][1]);
    }
}

/* ---- the tests ----------------------------------------------------------------------- */

static const char *k_modes[] = {"waiting", "running", "stale", "estop"};

static int64_t block_tick(const char *block) {
    const char *t = strstr(block, "\ntick ");
    if (!t)
        fail_msg("no tick line in the watch block:\n%s", block);
    return strtoll(t + 6, NULL, 10);
}

static void test_watch(void **state) {
    (void)state;
    int rc = ctl("--profile", profile_path, "status", "--watch", "--count", "3", "--interval",
                 "200", NULL);
    if (rc)
        fail_msg("status --watch exited %d: %s", rc, err_text);
    printf("%s", out_text);
    /* three blocks, one blank line between two */
    char *blocks[4];
    int nb = 0;
    char *s = out_text;
    for (;;) {
        if (nb < 4)
            blocks[nb] = s;
        nb++;
        char *sep = strstr(s, "\n\n");
        if (!sep)
            break;
        sep[1] = '\0'; /* the block keeps its last newline */
        s = sep + 2;
    }
    assert_int_equal(nb, 3);
    int64_t prev = -1;
    for (int b = 0; b < 3; b++) {
        const char *blk = blocks[b];
        assert_non_null(strstr(blk, "vlad ctlbot @ tcp://127.0.0.1:"));
        const char *m = strstr(blk, "\nmode ");
        assert_non_null(m);
        int known = 0;
        for (int k = 0; k < 4; k++)
            known |= !strncmp(m + 6, k_modes[k], strlen(k_modes[k]));
        if (!known)
            fail_msg("block %d names no mode: %s", b + 1, blk);
        assert_non_null(strstr(blk, "clock wall"));
        int64_t t = block_tick(blk);
        if (t <= prev)
            fail_msg("tick %lld in block %d after %lld", (long long)t, b + 1, (long long)prev);
        prev = t;
        assert_non_null(strstr(blk, "\ninference "));
        assert_non_null(strstr(blk, "\njitter "));
        assert_non_null(strstr(blk, "\nstalls "));
        assert_non_null(strstr(blk, "\nsafety: clamped "));
        assert_non_null(strstr(blk, "\ne-stop off"));
        assert_non_null(strstr(blk, "\nlanguage 0/"));
        assert_non_null(strstr(blk, "\nconnections "));
        /* rates need two replies */
        assert_true(!!strstr(blk, "ticks/s") == (b > 0));
    }
    /* the robot has been reporting since setup: the synthetic policy's latencies are there */
    assert_non_null(strstr(blocks[2], "inference p50 "));
}

static void test_watch_json(void **state) {
    (void)state;
    int rc = ctl("--profile", profile_path, "--json", "status", "--watch", "--count", "2",
                 "--interval", "100", NULL);
    if (rc)
        fail_msg("status --watch --json exited %d: %s", rc, err_text);
    char *nl = strchr(out_text, '\n');
    assert_non_null(nl);
    *nl = '\0';
    char *second = nl + 1, *nl2 = strchr(second, '\n');
    assert_non_null(nl2);
    assert_string_equal(nl2 + 1, ""); /* exactly two lines */
    *nl2 = '\0';
    double tick[2];
    const char *line[2] = {out_text, second};
    for (int i = 0; i < 2; i++) {
        cJSON *j = cJSON_Parse(line[i]);
        if (!j)
            fail_msg("line %d is not JSON: %s", i + 1, line[i]);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
        assert_int_equal(cJSON_GetObjectItem(j, "refresh")->valueint, i + 1);
        const cJSON *st = cJSON_GetObjectItem(j, "status");
        assert_non_null(st);
        assert_string_equal(cJSON_GetObjectItem(st, "robot")->valuestring, "ctlbot");
        tick[i] = cJSON_GetObjectItem(st, "tick")->valuedouble;
        const cJSON *tps = cJSON_GetObjectItem(j, "ticks_per_s");
        assert_true(i == 0 ? cJSON_IsNull(tps) : cJSON_IsNumber(tps));
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "estop_latched")));
        cJSON_Delete(j);
    }
    assert_true(tick[1] > tick[0]);
}

static cJSON *json_out(void) {
    cJSON *j = cJSON_Parse(out_text);
    if (!j)
        fail_msg("vladctl --json printed no JSON: '%s' (stderr: %s)", out_text, err_text);
    return j;
}

static const cJSON *get(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    if (!v)
        fail_msg("no '%s' in the JSON", k);
    return v;
}

/* status --json until pred(status) holds (the control thread acts on a command at its next
 * tick); returns the parsed reply */
static cJSON *status_until(const char *mode, int want) {
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ctl("--profile", profile_path, "--json", "status", NULL), 0);
        cJSON *j = json_out();
        const char *m = get(get(j, "status"), "mode")->valuestring;
        if ((strcmp(m, mode) == 0) == want)
            return j;
        cJSON_Delete(j);
    }
    fail_msg("status never %s %s", want ? "reached" : "left", mode);
    return NULL;
}

static void test_status_json(void **state) {
    (void)state;
    assert_int_equal(ctl("--profile", profile_path, "--json", "status", NULL), 0);
    cJSON *j = json_out();
    assert_true(cJSON_IsTrue(get(j, "ok")));
    assert_true(cJSON_IsNumber(get(j, "request_id")));
    assert_string_equal(get(j, "error")->valuestring, "");
    const cJSON *st = get(j, "status");
    assert_string_equal(get(st, "robot")->valuestring, "ctlbot");
    assert_true(cJSON_IsString(get(st, "mode")) && !strncmp(get(st, "mode")->valuestring, "MODE_", 5));
    assert_true(get(st, "tick")->valuedouble > 0);
    assert_true(get(st, "actions_published")->valuedouble > 0);
    assert_true(get(st, "observations_received")->valuedouble > 0);
    assert_true(cJSON_IsNumber(get(get(st, "inference"), "p99_us")));
    assert_true(cJSON_IsNumber(get(get(st, "jitter"), "p50_us")));
    assert_true(cJSON_IsNumber(get(st, "stall_ticks")));
    assert_true(cJSON_IsNumber(get(st, "lang_streams_active")));
    cJSON_Delete(j);
}

static void test_commands_json(void **state) {
    (void)state;
    /* estop -> ok; status shows it, the watch view names the reason */
    assert_int_equal(ctl("--profile", profile_path, "--json", "estop", "test", "stop", NULL), 0);
    cJSON *j = json_out();
    assert_true(cJSON_IsTrue(get(j, "ok")));
    assert_true(cJSON_IsObject(get(j, "status")));
    cJSON_Delete(j);
    cJSON_Delete(status_until("MODE_ESTOP", 1));
    assert_int_equal(ctl("--profile", profile_path, "status", "--watch", "--count", "1", NULL), 0);
    if (!strstr(out_text, "\ne-stop LATCHED: test stop\n"))
        fail_msg("the watch view does not show the e-stop and its reason:\n%s", out_text);
    assert_int_equal(ctl("--profile", profile_path, "--json", "status", "--watch", "--count", "1",
                         NULL), 0);
    j = json_out();
    assert_true(cJSON_IsTrue(get(j, "estop_latched")));
    assert_string_equal(get(j, "estop_reason")->valuestring, "test stop");
    cJSON_Delete(j);
    /* release -> ok, and the mode leaves estop */
    assert_int_equal(ctl("--profile", profile_path, "--json", "release", NULL), 0);
    j = json_out();
    assert_true(cJSON_IsTrue(get(j, "ok")));
    cJSON_Delete(j);
    cJSON_Delete(status_until("MODE_ESTOP", 0));
    /* reset -> ok, and a new episode begins (at the control thread's next tick) */
    assert_int_equal(ctl("--profile", profile_path, "--json", "reset", NULL), 0);
    j = json_out();
    assert_true(cJSON_IsTrue(get(j, "ok")));
    cJSON_Delete(j);
    double episode = 0;
    for (int i = 0; i < 100 && episode < 1; i++) {
        assert_int_equal(ctl("--profile", profile_path, "--json", "status", NULL), 0);
        j = json_out();
        episode = get(get(j, "status"), "episode")->valuedouble;
        cJSON_Delete(j);
    }
    assert_true(episode >= 1);
    /* instruction -> ok, and Status carries it (quotes, a backslash and a newline:
     * metrics escapes them) */
    assert_int_equal(ctl("--profile", profile_path, "--json", "instruction", "touch \"the\" red\\ball\nnow",
                         NULL), 0);
    j = json_out();
    assert_true(cJSON_IsTrue(get(j, "ok")));
    assert_string_equal(get(get(j, "status"), "instruction")->valuestring, "touch \"the\" red\\ball\nnow");
    cJSON_Delete(j);
    /* ask: the synthetic policy has no language model: refused with the reason, exit 1 */
    assert_int_equal(ctl("--profile", profile_path, "--json", "ask", "which colour?", NULL), 1);
    j = json_out();
    assert_true(cJSON_IsFalse(get(j, "ok")));
    assert_non_null(strstr(get(j, "error")->valuestring, "model"));
    cJSON_Delete(j);
    /* keygen: the files written and the public key */
    char base[128], path[160];
    snprintf(base, sizeof base, "%s/op", dir);
    assert_int_equal(ctl("--json", "keygen", base, "--rights", "all", NULL), 0);
    j = json_out();
    assert_true(cJSON_IsTrue(get(j, "ok")));
    snprintf(path, sizeof path, "%s.key", base);
    assert_string_equal(get(j, "public_file")->valuestring, path);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s.key_secret", base);
    assert_string_equal(get(j, "secret_file")->valuestring, path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
    assert_int_equal(strlen(get(j, "public_key")->valuestring), 40);
    assert_string_equal(get(j, "name")->valuestring, "op");
    cJSON_Delete(j);
}

static void test_metrics(void **state) {
    (void)state;
    char why[400];
    int rc = ctl("--profile", profile_path, "metrics", NULL);
    if (rc)
        fail_msg("metrics exited %d: %s", rc, err_text);
    if (!prom_check(out_text, "ctlbot", why, sizeof why))
        fail_msg("metrics: %s\n%s", why, out_text);
    assert_true(prom_value(out_text, "vlad_up{robot=\"ctlbot\"}") == 1);
    assert_true(prom_value(out_text, "vlad_actions_published_total{robot=\"ctlbot\"}") > 0);
    assert_true(prom_value(out_text, "vlad_observations_received_total{robot=\"ctlbot\"}") > 0);
    assert_true(prom_value(out_text, "vlad_tick{robot=\"ctlbot\"}") > 0);
    assert_true(prom_value(out_text, "vlad_stall_ticks_total{robot=\"ctlbot\"}") >= 0);
    assert_true(prom_value(out_text, "vlad_inference_latency_seconds_count{robot=\"ctlbot\"}") > 0);
    double p50 = prom_value(out_text, "vlad_inference_latency_seconds{robot=\"ctlbot\",quantile=\"0.5\"}");
    double p99 = prom_value(out_text, "vlad_inference_latency_seconds{robot=\"ctlbot\",quantile=\"0.99\"}");
    assert_true(p50 > 0 && p99 >= p50);
    assert_false(isnan(prom_value(out_text, "vlad_tick_jitter_seconds{robot=\"ctlbot\",quantile=\"0.99\"}")));
    assert_false(isnan(prom_value(out_text, "vlad_tick_jitter_seconds_sum{robot=\"ctlbot\"}")));
    /* the mode, enum-style: exactly one 1 */
    double ones = 0;
    for (int k = 0; k < 4; k++) {
        char s[96];
        snprintf(s, sizeof s, "vlad_mode{robot=\"ctlbot\",mode=\"%s\"}", k_modes[k]);
        double v = prom_value(out_text, s);
        assert_false(isnan(v));
        ones += v;
    }
    assert_true(ones == 1);
    assert_false(isnan(prom_value(out_text, "vlad_lang_streams_active{robot=\"ctlbot\"}")));
    assert_false(isnan(prom_value(out_text, "vlad_connections{robot=\"ctlbot\"}")));
    assert_false(isnan(prom_value(out_text, "vlad_delay_ticks{robot=\"ctlbot\"}")));
    /* the instruction (test_commands_json set it) as an escaped label value */
    assert_non_null(strstr(out_text, "instruction=\"touch \\\"the\\\" red\\\\ball\\nnow\""));
    assert_non_null(strstr(out_text, "# TYPE vlad_actions_published_total counter\n"));
    assert_non_null(strstr(out_text, "# TYPE vlad_inference_latency_seconds summary\n"));

    /* --prefix */
    assert_int_equal(ctl("--profile", profile_path, "metrics", "--prefix", "arm_ctl", NULL), 0);
    if (!prom_check(out_text, "ctlbot", why, sizeof why))
        fail_msg("metrics --prefix: %s", why);
    assert_true(prom_value(out_text, "arm_ctl_up{robot=\"ctlbot\"}") == 1);
    assert_null(strstr(out_text, "\nvlad_"));
    assert_int_equal(ctl("--profile", profile_path, "metrics", "--prefix", "9x", NULL), 2);
    assert_non_null(strstr(err_text, "--prefix 9x"));

    /* --output: written whole, no temporary left beside it */
    char file[128];
    snprintf(file, sizeof file, "%s/vlad.prom", dir);
    assert_int_equal(ctl("--profile", profile_path, "metrics", "--output", file, NULL), 0);
    assert_string_equal(out_text, "");
    char *txt = slurp(file);
    if (!prom_check(txt, "ctlbot", why, sizeof why))
        fail_msg("metrics --output: %s", why);
    assert_true(prom_value(txt, "vlad_up{robot=\"ctlbot\"}") == 1);
    free(txt);
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp."))
            fail_msg("temporary file %s left", e->d_name);
    closedir(d);
}

static void test_no_daemon(void **state) {
    (void)state;
    char why[400];
    /* status */
    assert_int_equal(ctl("--profile", down_path, "--timeout", "300", "status", NULL), 3);
    if (!strstr(err_text, "no reply from tcp://127.0.0.1:") || !strstr(err_text, "is vlad running"))
        fail_msg("status without a daemon said: %s", err_text);
    /* --json status: the error as JSON on stdout */
    assert_int_equal(ctl("--profile", down_path, "--timeout", "300", "--json", "status", NULL), 3);
    cJSON *j = json_out();
    assert_true(cJSON_IsFalse(get(j, "ok")));
    assert_non_null(strstr(get(j, "error")->valuestring, "no reply from tcp://127.0.0.1:"));
    assert_int_equal(get(j, "exit_code")->valueint, 3);
    cJSON_Delete(j);
    /* metrics: still a valid exposition, vlad_up 0 */
    assert_int_equal(ctl("--profile", down_path, "--timeout", "300", "metrics", NULL), 3);
    if (!prom_check(out_text, "ctlbot", why, sizeof why))
        fail_msg("metrics without a daemon: %s\n%s", why, out_text);
    assert_true(prom_value(out_text, "vlad_up{robot=\"ctlbot\"}") == 0);
    assert_non_null(strstr(err_text, "no reply from"));
    char file[128];
    snprintf(file, sizeof file, "%s/down.prom", dir);
    assert_int_equal(ctl("--profile", down_path, "--timeout", "300", "metrics", "--output", file,
                         NULL), 3);
    char *txt = slurp(file);
    assert_true(prom_value(txt, "vlad_up{robot=\"ctlbot\"}") == 0);
    free(txt);
    /* the watch says so in the view and keeps trying; --count: exit 3 */
    assert_int_equal(ctl("--profile", down_path, "--timeout", "200", "status", "--watch", "--count",
                         "2", "--interval", "100", NULL), 3);
    const char *first = strstr(out_text, "no reply from tcp://127.0.0.1:");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "no reply from tcp://127.0.0.1:"));
    assert_non_null(strstr(out_text, "\n\nvlad ctlbot @")); /* two blocks */
    assert_non_null(strstr(out_text, "refresh 2"));
}

static void test_usage(void **state) {
    (void)state;
    assert_int_equal(ctl("--help", NULL), 0);
    assert_non_null(strstr(out_text, "exit status: 0 ok, 1 refused"));
    assert_non_null(strstr(out_text, "textfile"));
    assert_int_equal(ctl("--profile", profile_path, "bogus", NULL), 2);
    assert_non_null(strstr(err_text, "unknown command 'bogus'"));
    assert_int_equal(ctl("--profile", profile_path, "--json", "bogus", NULL), 2);
    cJSON *j = json_out();
    assert_true(cJSON_IsFalse(get(j, "ok")));
    assert_int_equal(get(j, "exit_code")->valueint, 2);
    cJSON_Delete(j);
    assert_int_equal(ctl("--profile", profile_path, "release", "--count", "2", NULL), 2);
    assert_int_equal(ctl("--profile", profile_path, "status", "--watch", "--interval", "x", NULL), 2);
    assert_non_null(strstr(err_text, "--interval"));
    assert_int_equal(ctl("status", NULL), 2);
    assert_non_null(strstr(err_text, "--profile"));
    assert_int_equal(ctl("--profile", "/nonexistent/p.yaml", "status", NULL), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prom_checker),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_watch_json),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_commands_json),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_no_daemon),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
