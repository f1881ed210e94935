/* vlad-sim — the bundled MuJoCo simulator of vlad. See sim/README.md.
 *   vlad-sim --profile FILE [--task NAME[,NAME..]|all] [--episodes N] [--seed S]
 *            [--clock wall|lockstep] [--expert [--expert-delay T]] [--expect-policy]
 *            [--lockstep-timeout MS] [--json FILE] [--record FILE.gif|FILE.mp4]
 *            [--record-scale K] [--record-dataset DIR] [--param TASK.KNOB=V] [--quiet]
 *   vlad-sim --profile FILE --snapshot DIR [--seed S]
 *   vlad-sim --profile FILE --bench [--json FILE] */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "run.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vlad-sim --profile FILE [options]\n"
            "  --task NAME[,NAME...]|all   reach, track, whack, push (default all)\n"
            "  --episodes N                episodes per task (default 1)\n"
            "  --seed S                    layout seed (default 1)\n"
            "  --clock wall|lockstep       default: the profile's clock\n"
            "  --expert                    act with the scripted expert (no daemon needed)\n"
            "  --expert-delay T            expert plans on the world as it was T ticks ago\n"
            "  --expert-noise STD[,TAU]    perturb the executed expert command by a random walk\n"
            "                              (std STD rad, correlation TAU s, default 0.2); the\n"
            "                              dataset keeps the clean command (DART-style data)\n"
            "  --expect-policy             count non-POLICY actions (HOLD, ESTOP, ...) as stalls\n"
            "  --start-tick N              first tick number this robot reports (default 0)\n"
            "  --key FILE                  CURVE: this client's secret key (vladctl keygen)\n"
            "  --lockstep-timeout MS       wait per tick for the daemon's action (default: profile)\n"
            "  --command-timeout MS        wait for reset/set_instruction replies (default 500)\n"
            "  --json FILE                 write per-episode results as JSON\n"
            "  --record FILE               camera stream as an animated .gif (or .mp4 via ffmpeg)\n"
            "  --record-scale K            enlarge recorded frames K times (default 3)\n"
            "  --record-dataset DIR        write DIR/episode_NNNNNN.safetensors (with --expert)\n"
            "  --trajectory FILE           CSV of every tick: task, episode, tick, chunk, targets, positions\n"
            "  --snapshot DIR              write DIR/task-<name>.png, one frame per task, and exit\n"
            "  --bench                     measure physics and render speed, and exit\n"
            "  --param TASK.KNOB=VALUE     change a difficulty knob (see sim/README.md)\n"
            "  --quiet                     no per-episode lines\n");
}

static int parse_u64(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !*s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* "STD" or "STD,TAU" with 0 <= STD <= 1 and 0 < TAU <= 10. */
static int parse_noise(const char *s, double *std, double *tau) {
    char *end;
    errno = 0;
    *std = strtod(s, &end);
    if (errno || end == s || !(*std >= 0 && *std <= 1))
        return -1;
    if (*end == ',') {
        const char *t = end + 1;
        *tau = strtod(t, &end);
        if (errno || end == t || !(*tau > 0 && *tau <= 10))
            return -1;
    }
    return *end ? -1 : 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    unsigned long long v;
    if (parse_u64(s, &v) || v < (unsigned long long)lo || v > (unsigned long long)hi)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *profile = NULL, *tasks = "all", *json = NULL, *clock = NULL, *snapshot = NULL;
    const char *record = NULL, *dataset = NULL, *trajectory = NULL;
    int episodes = 1, delay = 0, scale = 3, lockstep_to = 0, cmd_to = 0;
    double noise = 0, noise_tau = 0.2;
    unsigned long long seed = 1;
    bool expert = false, expect = false, bench = false, quiet = false;
    long long start_tick = 0;
    const char *key_file = NULL;
    static vlad_task_params prm[VLAD_TASK_COUNT];
    bool prm_set[VLAD_TASK_COUNT] = {false};
    for (int k = 0; k < VLAD_TASK_COUNT; k++)
        prm[k] = vlad_task_default_params((vlad_task_kind)k);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV                                                                                      \
    do {                                                                                           \
        if (!v) {                                                                                  \
            fprintf(stderr, "vlad-sim: %s needs a value\n", a);                                    \
            return 2;                                                                              \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "--profile")) {
            NEEDV;
            profile = v;
        } else if (!strcmp(a, "--task")) {
            NEEDV;
            tasks = v;
        } else if (!strcmp(a, "--episodes")) {
            NEEDV;
            if (parse_int(v, 0, 1000000, &episodes)) {
                fprintf(stderr, "vlad-sim: --episodes: expected 0..1000000, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            NEEDV;
            if (parse_u64(v, &seed)) {
                fprintf(stderr, "vlad-sim: --seed: expected a non-negative integer, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--clock")) {
            NEEDV;
            clock = v;
        } else if (!strcmp(a, "--expert")) {
            expert = true;
        } else if (!strcmp(a, "--expert-delay")) {
            NEEDV;
            if (parse_int(v, 0, 1000, &delay)) {
                fprintf(stderr, "vlad-sim: --expert-delay: expected 0..1000 ticks, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--expert-noise")) {
            NEEDV;
            if (parse_noise(v, &noise, &noise_tau)) {
                fprintf(stderr, "vlad-sim: --expert-noise: expected STD (0..1 rad) or STD,TAU "
                                "(TAU 0..10 s), got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--expect-policy")) {
            expect = true;
        } else if (!strcmp(a, "--key")) {
            NEEDV;
            key_file = v;
        } else if (!strcmp(a, "--start-tick")) {
            NEEDV;
            char *end;
            errno = 0;
            long long st = strtoll(v, &end, 10);
            if (errno || *end || st < 0 || st > (1LL << 52)) {
                fprintf(stderr, "vlad-sim: --start-tick: expected 0..2^52, got '%s'\n", v);
                return 2;
            }
            start_tick = st;
        } else if (!strcmp(a, "--lockstep-timeout")) {
            NEEDV;
            if (parse_int(v, 1, 600000, &lockstep_to)) {
                fprintf(stderr, "vlad-sim: --lockstep-timeout: expected 1..600000 ms, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--command-timeout")) {
            NEEDV;
            if (parse_int(v, 1, 600000, &cmd_to)) {
                fprintf(stderr, "vlad-sim: --command-timeout: expected 1..600000 ms, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            NEEDV;
            json = v;
        } else if (!strcmp(a, "--record")) {
            NEEDV;
            record = v;
        } else if (!strcmp(a, "--record-scale")) {
            NEEDV;
            if (parse_int(v, 1, 16, &scale)) {
                fprintf(stderr, "vlad-sim: --record-scale: expected 1..16, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--record-dataset")) {
            NEEDV;
            dataset = v;
        } else if (!strcmp(a, "--trajectory")) {
            NEEDV;
            trajectory = v;
        } else if (!strcmp(a, "--snapshot")) {
            NEEDV;
            snapshot = v;
        } else if (!strcmp(a, "--bench")) {
            bench = true;
        } else if (!strcmp(a, "--param")) {
            NEEDV;
            char key[64], *dot, *eq, *end;
            snprintf(key, sizeof key, "%s", v);
            vlad_task_kind k;
            double val = 0;
            if ((dot = strchr(key, '.')))
                *dot = 0;
            if ((eq = dot ? strchr(dot + 1, '=') : NULL)) {
                *eq = 0;
                val = strtod(eq + 1, &end);
            }
            if (!dot || !eq || !eq[1] || *end || vlad_task_parse(key, &k) ||
                vlad_task_param_set(&prm[k], dot + 1, val) || !isfinite(val)) {
                fprintf(stderr, "vlad-sim: --param: expected TASK.KNOB=VALUE (e.g. whack.window_s=0.6), "
                                "got '%s'\n", v);
                return 2;
            }
            prm_set[k] = true;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vlad-sim: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!profile) {
        fprintf(stderr, "vlad-sim: --profile FILE is required\n");
        usage(stderr);
        return 2;
    }
    /* Mesa's llvmpipe: tiny frames render faster on the calling thread than on worker
     * threads (and leave the other cores to the daemon); the user's setting wins. */
    setenv("LP_NUM_THREADS", "0", 0);
    static vlad_profile p;
    vlad_err err;
    if (vlad_profile_load(&p, profile, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        return 2;
    }
    if (snapshot) {
        if (vlad_sim_snapshots(&p, snapshot, seed, 18, 3, &err)) {
            fprintf(stderr, "vlad-sim: %s\n", err.msg);
            return 1;
        }
        printf("vlad-sim: wrote %s/task-{reach,track,whack,push}.png\n", snapshot);
        return 0;
    }
    if (bench) {
        vlad_sim_bench b;
        if (vlad_sim_bench_run(&p, 5000, 500, &b, &err)) {
            fprintf(stderr, "vlad-sim: %s\n", err.msg);
            return 1;
        }
        printf("vlad-sim bench: robot %s (%d joints), %s\n", p.robot, p.n_joints, p.sim.model);
        printf("| measure | value |\n|---|---:|\n");
        printf("| physics per control tick (%d substeps) | %.1f us |\n", b.substeps, b.tick_us);
        printf("| physics per step | %.2f us |\n", b.step_us);
        printf("| control ticks per second | %.0f |\n", b.tick_us > 0 ? 1e6 / b.tick_us : 0);
        printf("| faster than real time | %.0fx |\n", b.realtime_factor);
        printf("| expert action (IK) per tick | %.1f us |\n", b.ik_us);
        if (b.frames)
            printf("| render %dx%d per frame | %.3f ms |\n", b.width, b.height, b.render_ms);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "robot", p.robot);
            cJSON_AddNumberToObject(o, "joints", p.n_joints);
            cJSON_AddNumberToObject(o, "ticks", b.ticks);
            cJSON_AddNumberToObject(o, "substeps", b.substeps);
            cJSON_AddNumberToObject(o, "physics_tick_us", b.tick_us);
            cJSON_AddNumberToObject(o, "physics_step_us", b.step_us);
            cJSON_AddNumberToObject(o, "realtime_factor", b.realtime_factor);
            cJSON_AddNumberToObject(o, "expert_action_us", b.ik_us);
            cJSON_AddNumberToObject(o, "render_frames", b.frames);
            cJSON_AddNumberToObject(o, "render_width", b.width);
            cJSON_AddNumberToObject(o, "render_height", b.height);
            cJSON_AddNumberToObject(o, "render_ms_per_frame", b.render_ms);
            char *txt = cJSON_Print(o);
            cJSON_Delete(o);
            FILE *f = txt ? fopen(json, "w") : NULL;
            if (!f || fputs(txt, f) < 0) {
                fprintf(stderr, "vlad-sim: cannot write %s\n", json);
                if (f)
                    fclose(f);
                free(txt);
                return 1;
            }
            fputc('\n', f);
            fclose(f);
            free(txt);
        }
        return 0;
    }
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    if (clock) {
        if (!strcmp(clock, "wall"))
            o.clock = VLAD_CLOCK_WALL;
        else if (!strcmp(clock, "lockstep"))
            o.clock = VLAD_CLOCK_LOCKSTEP;
        else {
            fprintf(stderr, "vlad-sim: --clock: expected wall or lockstep, got '%s'\n", clock);
            return 2;
        }
    }
    if (strcmp(tasks, "all")) {
        o.n_tasks = 0;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", tasks);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            vlad_task_kind k;
            if (vlad_task_parse(tok, &k) || o.n_tasks >= VLAD_TASK_COUNT) {
                fprintf(stderr, "vlad-sim: --task: unknown task '%s' (reach, track, whack, push, all)\n", tok);
                return 2;
            }
            o.tasks[o.n_tasks++] = k;
        }
        if (!o.n_tasks) {
            fprintf(stderr, "vlad-sim: --task: empty\n");
            return 2;
        }
    }
    if (dataset && !expert) {
        fprintf(stderr, "vlad-sim: --record-dataset needs --expert\n");
        return 2;
    }
    if (delay && !expert) {
        fprintf(stderr, "vlad-sim: --expert-delay needs --expert\n");
        return 2;
    }
    if (noise > 0 && !expert) {
        fprintf(stderr, "vlad-sim: --expert-noise needs --expert\n");
        return 2;
    }
    for (int k = 0; k < VLAD_TASK_COUNT; k++)
        if (prm_set[k])
            o.params[k] = &prm[k];
    o.episodes = episodes;
    o.seed = seed;
    o.expert = expert;
    o.expert_delay = delay;
    o.expert_noise = noise;
    o.expert_noise_tau_s = noise_tau;
    o.expect_policy = expect;
    o.start_tick = start_tick;
    o.key_file = key_file;
    o.lockstep_timeout_ms = lockstep_to;
    o.command_timeout_ms = cmd_to;
    o.dataset_dir = dataset;
    o.trajectory_path = trajectory;
    o.record_path = record;
    o.record_scale = scale;
    o.log = quiet ? NULL : stderr;
    vlad_sim_results res;
    if (vlad_sim_run(&o, &res, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        vlad_sim_results_free(&res);
        return 1;
    }
    vlad_sim_results_print(&res, stdout);
    int rc = 0;
    if (json && vlad_sim_results_write_json(&res, json, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        rc = 1;
    }
    vlad_sim_results_free(&res);
    return rc;
}
