/* vlad-fakebot — a tiny fake robot for demos and smoke tests, and an example of the
 * client library: publishes an Observation every tick, moves each joint a fraction of
 * the way toward the latest Action target (first-order lag), and reports what it saw.
 *   vlad-fakebot --profile FILE [--seconds S] [--lag 0.3]   (--help: the option table) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "clock.h"
#include "opts.h"

static const char *src_name(int s) {
    static const char *n[] = {"?", "policy", "hold", "home", "estop", "watchdog"};
    return s >= 0 && s <= 5 ? n[s] : "?";
}

int main(int argc, char **argv) {
    const char *path = NULL;
    double seconds = 3.0, lag = 0.3;
    const vlad_opt tab[] = {
        {"profile", VLAD_OPT_STR, &path, "FILE", "the robot profile (required)", 0, 0, NULL},
        {"seconds", VLAD_OPT_DOUBLE, &seconds, "S", "how long to run", 0.001, 86400, NULL},
        {"lag", VLAD_OPT_DOUBLE, &lag, "X", "fraction of the way to the target per tick", 0.001, 1, NULL},
        {0},
    };
    vlad_err err;
    int rc = vlad_opts_parse(tab, argc, argv, NULL, 0, NULL, &err);
    if (rc == VLAD_ESTATE) {
        vlad_opts_usage(stdout, "vlad-fakebot --profile FILE [options]", tab);
        return 0;
    }
    if (rc || !path) {
        fprintf(stderr, "vlad-fakebot: %s\n", rc ? err.msg : "--profile FILE is required");
        vlad_opts_usage(stderr, "vlad-fakebot --profile FILE [options]", tab);
        return 2;
    }
    static vlad_profile p;
    if (vlad_profile_load(&p, path, &err)) {
        fprintf(stderr, "vlad-fakebot: %s\n", err.msg);
        return 2;
    }
    vlad_client *c = vlad_client_new(&p, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_EVENTS | VLAD_CLIENT_PUBLISH, &err);
    if (!c) {
        fprintf(stderr, "vlad-fakebot: %s\n", err.msg);
        return 1;
    }
    int n = p.n_joints;
    double pos[VLAD_MAX_JOINTS], target[VLAD_MAX_JOINTS];
    for (int j = 0; j < n; j++) /* start away from home, like a real arm */
        pos[j] = target[j] = p.joints[j].home + 0.25 * (p.joints[j].max - p.joints[j].home);
    uint64_t actions = 0, by_src[6] = {0}, events = 0, non_monotonic = 0;
    int64_t first_tick = -1, last_tick = -1, tick = 0;
    const int64_t period = (int64_t)(1e9 / p.control_hz);
    int64_t t0 = vlad_now_ns(), next = t0;
    while (vlad_now_ns() - t0 < (int64_t)(seconds * 1e9)) {
        /* one tick: observe, then take whatever arrived */
        Vlad__Observation o = VLAD__OBSERVATION__INIT;
        o.tick = tick++;
        o.stamp_ns = vlad_now_ns();
        o.n_joint_pos = (size_t)n;
        o.joint_pos = pos;
        vlad_client_publish_observation(c, &o, &err);
        next += period;
        for (;;) {
            int64_t left = next - vlad_now_ns();
            vlad_msg m;
            if (vlad_client_recv(c, left > 0 ? (int)(left / 1000000) : 0, &m, &err))
                break;
            if (m.kind == VLAD_MSG_ACTION) {
                Vlad__Action *a = m.u.action;
                actions++;
                if (a->source >= 0 && a->source <= 5)
                    by_src[a->source]++;
                if (last_tick >= 0 && a->tick <= last_tick)
                    non_monotonic++;
                if (first_tick < 0)
                    first_tick = a->tick;
                last_tick = a->tick;
                memcpy(target, a->joint_targets, sizeof(double) * (size_t)n);
            } else if (m.kind == VLAD_MSG_EVENT) {
                events++;
                printf("  event @tick %lld: %s\n", (long long)m.u.event->tick, m.u.event->message);
            }
            vlad_msg_clear(&m);
            if (vlad_now_ns() >= next)
                break;
        }
        for (int j = 0; j < n; j++)
            pos[j] += lag * (target[j] - pos[j]);
    }
    double el = (double)(vlad_now_ns() - t0) / 1e9;
    printf("fakebot: %.1f s, %llu actions (%.1f/s, profile %.0f Hz), ticks %lld..%lld, "
           "%llu out of order, %llu events, %llu bad messages\n",
           el, (unsigned long long)actions, (double)actions / el, p.control_hz,
           (long long)first_tick, (long long)last_tick, (unsigned long long)non_monotonic,
           (unsigned long long)events, (unsigned long long)vlad_client_bad_messages(c));
    printf("fakebot: action sources:");
    for (int s = 1; s <= 5; s++)
        if (by_src[s])
            printf(" %s=%llu", src_name(s), (unsigned long long)by_src[s]);
    printf("\nfakebot: final position:");
    for (int j = 0; j < n; j++)
        printf(" %s=%.3f", p.joints[j].name, pos[j]);
    printf("\n");
    vlad_client_free(c);
    return actions > 0 && non_monotonic == 0 ? 0 : 1;
}
