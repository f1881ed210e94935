/* vlad — the robot control daemon.
 *   vlad --profile FILE [--set KEY=VALUE ...] [--log-level error|warn|info|debug]
 *   vlad --print-config-doc      print the profile key table (configs/README.md)
 *   vlad --check --profile FILE  validate a profile and exit
 * SIGINT/SIGTERM: clean shutdown (the handler only sets a flag). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "profile.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: vlad --profile FILE [--set KEY=VALUE ...] [--log-level error|warn|info|debug]\n"
               "            [--check]\n"
               "       vlad --print-config-doc\n");
}

int main(int argc, char **argv) {
    const char *profile_path = NULL, *level = NULL, *sets[32];
    int check = 0, n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--profile") && i + 1 < argc) {
            profile_path = argv[++i];
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 32) {
            sets[n_sets++] = argv[++i];
        } else if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            level = argv[++i];
        } else if (!strcmp(argv[i], "--check")) {
            check = 1;
        } else if (!strcmp(argv[i], "--print-config-doc")) {
            vlad_profile_write_doc(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vlad: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!profile_path) {
        usage(stderr);
        return 2;
    }
    static vlad_profile prof;
    vlad_err err;
    if (vlad_profile_load(&prof, profile_path, &err)) {
        fprintf(stderr, "vlad: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < n_sets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof key) {
            fprintf(stderr, "vlad: --set '%s': expected KEY=VALUE\n", sets[i]);
            return 2;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
        if (vlad_profile_set(&prof, key, eq + 1, &err)) {
            fprintf(stderr, "vlad: %s\n", err.msg);
            return 1;
        }
    }
    if (check) {
        printf("%s: ok (robot %s, %d joints, %d cameras, %.0f Hz)\n", profile_path, prof.robot,
               prof.n_joints, prof.n_cameras, prof.control_hz);
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
    char summary[512];
    vlad_daemon_summary(d, summary, sizeof summary);
    vlad_daemon_free(d);
    VLAD_LOGI("vlad: %s", summary);
    vlad_log_stop();
    return 0;
}
