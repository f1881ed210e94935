/* vlad — the robot control daemon.
 *   vlad --profile FILE [--set KEY=VALUE ...] [--log-level error|warn|info|debug] [--record DIR]
 *   --record DIR                 record every message into a new DIR/vlad-record-<robot>-<UTC>.vrec
 *                                (sets record.dir, after the --set's; relative to the working
 *                                directory; daemon/record.h, `vlad-replay`)
 *   vlad --print-config-doc      print the profile key table (configs/README.md)
 *   vlad --check --profile FILE  validate a profile against its model and exit: every problem
 *                                the daemon would refuse at start is printed (exit 1), else
 *                                one "ok" line naming the robot and the model (exit 0); with
 *                                policy.remote.endpoints it asks the servers for their model
 * --set may be given any number of times; they apply in order after the profile is loaded.
 * Before starting, the daemon runs the same check (check.h) and refuses with the full list.
 * SIGINT/SIGTERM: clean shutdown (the handler only sets a flag). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef VLAD_HAVE_ENGINE
#include "check.h"
#endif
#include "clock.h"
#include "cpu.h"
#include "daemon.h"
#include "log.h"
#include "opts.h"
#include "profile.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

#define SYNOPSIS                                                                                   \
    "vlad --profile FILE [--set KEY=VALUE ...] [--log-level error|warn|info|debug]\n"                \
    "            [--record DIR] [--check]\n"                                                        \
    "       vlad --print-config-doc"

#ifdef VLAD_HAVE_ENGINE
/* What the daemon would run, for the ok line and the log: "model PATH: dims...",
 * "synthetic policy: ..." or "no policy: ...". */
static void describe_policy(const vlad_check_report *r, const vlad_profile *p, char *buf,
                            size_t cap) {
    switch (r->policy) {
    case VLAD_CHECK_POLICY_MODEL:
        snprintf(buf, cap,
                 "model %s: state_dim %d, action_dim %d, chunk_size %d, %d flow steps, %d image "
                 "input%s %dx%d (oldest %d ticks back), %.2f M parameters",
                 p->policy.model, r->model.state_dim, r->model.action_dim, r->model.chunk_size,
                 r->model.flow_steps, r->model.n_cameras, r->model.n_cameras == 1 ? "" : "s",
                 r->model.image_size, r->model.image_size, r->model.max_view_lag,
                 (double)r->model.params / 1e6);
        break;
    case VLAD_CHECK_POLICY_REMOTE:
        if (r->remote.reached)
            snprintf(buf, cap,
                     "remote: vlad-serve %.200s, model %.200s: state_dim %d, action_dim %d, chunk_size %d, "
                     "%d image input%s %dx%d (oldest %d ticks back)%s%.200s",
                     p->policy.remote.endpoints, r->remote.model, r->remote.state_dim,
                     r->remote.action_dim, r->remote.chunk_size, r->remote.n_cameras,
                     r->remote.n_cameras == 1 ? "" : "s", r->remote.image_size,
                     r->remote.image_size, r->remote.max_view_lag,
                     p->policy.remote.fallback ? "; fallback " : "",
                     p->policy.remote.fallback ? p->policy.model : "");
        else
            snprintf(buf, cap, "remote: vlad-serve %.300s%s%.300s", p->policy.remote.endpoints,
                     p->policy.remote.fallback ? "; fallback " : "",
                     p->policy.remote.fallback ? p->policy.model : "");
        break;
    case VLAD_CHECK_POLICY_SYNTHETIC:
        snprintf(buf, cap, "synthetic policy: horizon %d, %d joints", r->horizon, r->dim);
        break;
    default:
        snprintf(buf, cap, "no policy: the daemon holds position");
        break;
    }
}
#endif

int main(int argc, char **argv) {
    vlad_blas_coretype_init(argv); /* OpenBLAS kernels for this CPU (cpu.h); may re-exec */
    const char *profile_path = NULL, *level = NULL, *record_dir = NULL;
    int check = 0, print_doc = 0;
    vlad_sets sets = {0};
    const vlad_opt tab[] = {
        {"profile", VLAD_OPT_STR, &profile_path, "FILE", "the robot profile (required)", 0, 0, NULL},
        {"set", VLAD_OPT_CALL, &sets, "KEY=VALUE", "override a profile key after loading it (repeatable, in order)", 0, 0, vlad_sets_add},
        {"log-level", VLAD_OPT_STR, &level, "LEVEL", "error, warn, info or debug (default: logging.level)", 0, 0, NULL},
        {"record", VLAD_OPT_STR, &record_dir, "DIR", "record every message into DIR/vlad-record-<robot>-<UTC>.vrec", 0, 0, NULL},
        {"check", VLAD_OPT_FLAG, &check, NULL, "validate the profile and its model, print every problem, exit", 0, 0, NULL},
        {"print-config-doc", VLAD_OPT_FLAG, &print_doc, NULL, "print the profile key table (configs/README.md) and exit", 0, 0, NULL},
        {0},
    };
    vlad_err err;
    int prc = vlad_opts_parse(tab, argc, argv, NULL, 0, NULL, &err);
    if (prc == VLAD_ESTATE) {
        vlad_opts_usage(stdout, SYNOPSIS, tab);
        return 0;
    }
    if (prc) {
        fprintf(stderr, "vlad: %s\n", err.msg);
        vlad_opts_usage(stderr, SYNOPSIS, tab);
        return 2;
    }
    if (print_doc) {
        vlad_profile_write_doc(stdout);
        return 0;
    }
    if (!profile_path) {
        fprintf(stderr, "vlad: --profile FILE is required\n");
        vlad_opts_usage(stderr, SYNOPSIS, tab);
        return 2;
    }
    static vlad_profile prof;
    if (vlad_profile_load(&prof, profile_path, &err) || vlad_profile_apply_sets(&prof, &sets, &err)) {
        fprintf(stderr, "vlad: %s\n", err.msg);
        return 1;
    }
    if (record_dir) { /* record.dir, relative to the working directory (not the profile's) */
        char abs[VLAD_PATH_MAX], cwd[VLAD_PATH_MAX];
        int w = record_dir[0] == '/' || !getcwd(cwd, sizeof cwd)
                    ? snprintf(abs, sizeof abs, "%s", record_dir)
                    : snprintf(abs, sizeof abs, "%s/%s", cwd, record_dir);
        if (w < 0 || (size_t)w >= sizeof abs) {
            fprintf(stderr, "vlad: --record %s: path too long\n", record_dir);
            return 2;
        }
        if (vlad_profile_set(&prof, "record.dir", abs, &err)) {
            fprintf(stderr, "vlad: --record: %s\n", err.msg);
            return 1;
        }
    }
    char policy_desc[2048];
#ifdef VLAD_HAVE_ENGINE
    static vlad_check_report rep;
    if (vlad_check_profile(&prof, &rep, &err)) {
        fprintf(stderr, "vlad: %s\n", err.msg);
        return 1;
    }
    if (check) /* the servers of a remote policy too (the daemon's start asks them itself) */
        vlad_check_remote(&prof, &rep);
    char prefix[VLAD_PATH_MAX + 16];
    snprintf(prefix, sizeof prefix, "vlad: %s: ", profile_path);
    if (rep.n_errors) {
        vlad_check_print(&rep, stderr, prefix);
        fprintf(stderr, "vlad: %s: %d problem%s: %s\n", profile_path, rep.n_errors,
                rep.n_errors == 1 ? "" : "s",
                check ? "the daemon would refuse this profile" : "refusing to start");
        return 1;
    }
    describe_policy(&rep, &prof, policy_desc, sizeof policy_desc);
    if (check)
        vlad_check_print(&rep, stderr, prefix); /* warnings only */
#else
    /* No engine in this build: daemon.c refuses a model; nothing else can be checked. */
    if (prof.policy.synthetic && prof.policy.model[0]) {
        fprintf(stderr,
                "vlad: %s: error: policy.synthetic: true, but policy.model is also set (%s): the "
                "daemon would run the synthetic policy and ignore the model; set only one\n",
                profile_path, prof.policy.model);
        return 1;
    }
    if (!prof.policy.synthetic && prof.policy.model[0]) {
        fprintf(stderr, "vlad: %s: error: policy.model %s: this build has no inference engine\n",
                profile_path, prof.policy.model);
        return 1;
    }
    snprintf(policy_desc, sizeof policy_desc, "%s",
             prof.policy.synthetic ? "synthetic policy (no inference engine in this build)"
                                   : "no policy: the daemon holds position");
#endif
    if (check) {
        printf("%s: ok (robot %s, %d joints, %d cameras, %.0f Hz; %s)\n", profile_path, prof.robot,
               prof.n_joints, prof.n_cameras, prof.control_hz, policy_desc);
        return 0;
    }
    vlad_log_level lvl = prof.logging.level;
    if (level && vlad_log_level_parse(level, &lvl)) {
        fprintf(stderr, "vlad: --log-level '%s' is not one of error|warn|info|debug\n", level);
        return 2;
    }
    vlad_log_set_level(lvl);
    if (vlad_log_start(prof.logging.file, &err)) {
        fprintf(stderr, "vlad: %s\n", err.msg);
        return 1;
    }
#ifdef VLAD_HAVE_ENGINE
    for (int i = 0; i < rep.n_items; i++)
        VLAD_LOGW("profile: %s", rep.items[i].msg);
#endif
    VLAD_LOGI("vlad: %s", policy_desc);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    vlad_daemon *d = vlad_daemon_new(&prof, &err);
    if (!d || vlad_daemon_start(d, &err)) {
        VLAD_LOGE("%s", err.msg);
        vlad_daemon_free(d);
        vlad_log_stop();
        fprintf(stderr, "vlad: %s\n", err.msg);
        return 1;
    }
    VLAD_LOGI("vlad: robot %s, %d joints, %.0f Hz, clock %s, async %s; obs %s, actions %s, "
              "control %s",
              prof.robot, prof.n_joints, prof.control_hz, vlad_clock_mode_name(prof.clock),
              vlad_async_mode_name(prof.async.mode), prof.endpoints.observations,
              prof.endpoints.actions, prof.endpoints.control);
    while (!g_stop)
        vlad_sleep_until_ns(vlad_now_ns() + 20 * VLAD_NS_PER_MS);
    VLAD_LOGI("vlad: shutting down");
    vlad_daemon_request_stop(d);
    char summary[2048];
    vlad_daemon_summary(d, summary, sizeof summary);
    vlad_daemon_free(d);
    VLAD_LOGI("vlad: %s", summary);
    vlad_log_stop();
    return 0;
}
