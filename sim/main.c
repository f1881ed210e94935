/* vlad-sim — the bundled MuJoCo simulator of vlad. See sim/README.md.
 *   vlad-sim --profile FILE [--set KEY=VALUE ...] [--task NAME[,NAME..]|all] [--episodes N] [--seed S]
 *            [--clock wall|lockstep] [--expert [--expert-delay T] [--expert-chunk K]] [--expect-policy]
 *            [--lockstep-timeout MS] [--json FILE] [--record FILE.gif|FILE.mp4]
 *            [--record-scale K] [--record-dataset DIR] [--param TASK.KNOB=V] [--quiet]
 *   vlad-sim --profile FILE --snapshot DIR [--seed S]
 *   vlad-sim --profile FILE --bench [--json FILE]
 * Every option is in the one table below (common/opts.h); exit 2 on a usage error. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "profile.h"
#include "report.h"
#include "run.h"
#include "snapshot.h"

#define SYNOPSIS                                                                                   \
    "vlad-sim --profile FILE [options]\n"                                                          \
    "       vlad-sim --profile FILE --snapshot DIR [--seed S]\n"                                   \
    "       vlad-sim --profile FILE --bench [--json FILE]"

typedef struct cli {
    const char *profile, *tasks, *json, *clock, *snapshot, *record, *dataset, *trajectory, *key_file;
    int episodes, delay, chunk, scale, lockstep_to, cmd_to;
    int expert, expect, bench, quiet;
    uint64_t seed, start_tick;
    double noise[2];                      /* std, correlation time */
    vlad_task_params prm[VLAD_TASK_COUNT];
    bool prm_set[VLAD_TASK_COUNT];
    vlad_sets sets;                       /* --set KEY=VALUE, applied in order after loading */
} cli;

/* --expert-noise "STD" or "STD,TAU" with 0 <= STD <= 1 and 0 < TAU <= 10 */
static int opt_noise(void *dst, const char *s, vlad_err *err) {
    double *v = dst, std, tau = v[1];
    char *end;
    errno = 0;
    std = strtod(s, &end);
    bool ok = !errno && end != s && std >= 0 && std <= 1;
    if (ok && *end == ',') {
        const char *t = end + 1;
        tau = strtod(t, &end);
        ok = !errno && end != t && tau > 0 && tau <= 10;
    }
    if (!ok || *end)
        return vlad_err_set(err, VLAD_EINVAL, "expected STD (0..1 rad) or STD,TAU (TAU 0..10 s), got '%s'", s);
    v[0] = std, v[1] = tau;
    return VLAD_OK;
}

/* --param TASK.KNOB=VALUE */
static int opt_param(void *dst, const char *s, vlad_err *err) {
    cli *c = dst;
    char key[64], *dot, *eq = NULL, *end = NULL;
    snprintf(key, sizeof key, "%s", s);
    vlad_task_kind k;
    double val = 0;
    if ((dot = strchr(key, '.')))
        *dot = 0;
    if ((eq = dot ? strchr(dot + 1, '=') : NULL)) {
        *eq = 0;
        val = strtod(eq + 1, &end);
    }
    if (!dot || !eq || !eq[1] || *end || vlad_task_parse(key, &k) ||
        vlad_task_param_set(&c->prm[k], dot + 1, val) || !isfinite(val))
        return vlad_err_set(err, VLAD_EINVAL, "expected TASK.KNOB=VALUE (e.g. whack.window_s=0.6), got '%s'", s);
    c->prm_set[k] = true;
    return VLAD_OK;
}

static int usage_error(const char *msg, const char *synopsis, const vlad_opt *tab) {
    fprintf(stderr, "vlad-sim: %s\n", msg);
    vlad_opts_usage(stderr, synopsis, tab);
    return 2;
}

/* The run options from the command line; 0, or the exit code after saying why. */
static int run_opts(cli *c, vlad_sim_opts *o) {
    if (c->clock) {
        if (!strcmp(c->clock, "wall"))
            o->clock = VLAD_CLOCK_WALL;
        else if (!strcmp(c->clock, "lockstep"))
            o->clock = VLAD_CLOCK_LOCKSTEP;
        else {
            fprintf(stderr, "vlad-sim: --clock: expected wall or lockstep, got '%s'\n", c->clock);
            return 2;
        }
    }
    if (strcmp(c->tasks, "all")) {
        o->n_tasks = 0;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", c->tasks);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            vlad_task_kind k;
            if (vlad_task_parse(tok, &k) || o->n_tasks >= VLAD_TASK_COUNT) {
                fprintf(stderr, "vlad-sim: --task: unknown task '%s' (reach, track, whack, push, all)\n", tok);
                return 2;
            }
            o->tasks[o->n_tasks++] = k;
        }
        if (!o->n_tasks) {
            fprintf(stderr, "vlad-sim: --task: empty\n");
            return 2;
        }
    }
    const char *needs_expert = c->dataset ? "--record-dataset" : c->delay ? "--expert-delay"
                               : c->chunk ? "--expert-chunk"
                               : c->noise[0] > 0 ? "--expert-noise" : NULL;
    if (needs_expert && !c->expert) {
        fprintf(stderr, "vlad-sim: %s needs --expert\n", needs_expert);
        return 2;
    }
    for (int k = 0; k < VLAD_TASK_COUNT; k++)
        if (c->prm_set[k])
            o->params[k] = &c->prm[k];
    o->episodes = c->episodes;
    o->seed = c->seed;
    o->expert = c->expert;
    o->expert_delay = c->delay;
    o->expert_chunk = c->chunk;
    o->expert_noise = c->noise[0];
    o->expert_noise_tau_s = c->noise[1];
    o->expect_policy = c->expect;
    o->start_tick = (int64_t)c->start_tick;
    o->key_file = c->key_file;
    o->lockstep_timeout_ms = c->lockstep_to;
    o->command_timeout_ms = c->cmd_to;
    o->dataset_dir = c->dataset;
    o->trajectory_path = c->trajectory;
    o->record_path = c->record;
    o->record_scale = c->scale;
    o->log = c->quiet ? NULL : stderr;
    return 0;
}

int main(int argc, char **argv) {
    static cli c = {.tasks = "all", .episodes = 1, .scale = 3, .seed = 1, .noise = {0, 0.2}};
    for (int k = 0; k < VLAD_TASK_COUNT; k++)
        c.prm[k] = vlad_task_default_params((vlad_task_kind)k);
    const vlad_opt tab[] = {
        {"profile", VLAD_OPT_STR, &c.profile, "FILE", "the robot profile (required)", 0, 0, NULL},
        {"set", VLAD_OPT_CALL, &c.sets, "KEY=VALUE", "override a profile key, as vlad --set (repeatable)", 0, 0, vlad_sets_add},
        {"task", VLAD_OPT_STR, &c.tasks, "NAME[,NAME...]", "reach, track, whack, push or all", 0, 0, NULL},
        {"episodes", VLAD_OPT_INT, &c.episodes, "N", "episodes per task", 0, 1000000, NULL},
        {"seed", VLAD_OPT_U64, &c.seed, "S", "layout seed", 0, 0, NULL},
        {"clock", VLAD_OPT_STR, &c.clock, "wall|lockstep", "default: the profile's clock", 0, 0, NULL},
        {"expert", VLAD_OPT_FLAG, &c.expert, NULL, "act with the scripted expert (no daemon needed)", 0, 0, NULL},
        {"expert-delay", VLAD_OPT_INT, &c.delay, "T", "expert plans on the world as it was T ticks ago", 0, 1000, NULL},
        {"expert-chunk", VLAD_OPT_INT, &c.chunk, "K", "expert plans K ticks at a time on a forecast of the world and runs each plan open loop", 0, 1000, NULL},
        {"expert-noise", VLAD_OPT_CALL, c.noise, "STD[,TAU]",
         "perturb the executed expert command by a random walk (std STD rad, correlation TAU s, "
         "default 0.2); the dataset keeps the clean command (DART-style data)", 0, 0, opt_noise},
        {"expect-policy", VLAD_OPT_FLAG, &c.expect, NULL, "count non-POLICY actions (HOLD, ESTOP, ...) as stalls", 0, 0, NULL},
        {"start-tick", VLAD_OPT_U64, &c.start_tick, "N", "first tick number this robot reports", 0, 4503599627370496.0, NULL},
        {"key", VLAD_OPT_STR, &c.key_file, "FILE", "CURVE: this client's secret key (vladctl keygen)", 0, 0, NULL},
        {"lockstep-timeout", VLAD_OPT_INT, &c.lockstep_to, "MS", "wait per tick for the daemon's action (default: the profile's)", 1, 600000, NULL},
        {"command-timeout", VLAD_OPT_INT, &c.cmd_to, "MS", "wait for reset/set_instruction replies (default 500; lockstep: the lockstep timeout if longer)", 1, 600000, NULL},
        {"json", VLAD_OPT_STR, &c.json, "FILE", "write per-episode results (or --bench figures) as JSON", 0, 0, NULL},
        {"record", VLAD_OPT_STR, &c.record, "FILE", "camera stream as an animated .gif (or .mp4 via ffmpeg)", 0, 0, NULL},
        {"record-scale", VLAD_OPT_INT, &c.scale, "K", "enlarge recorded frames K times", 1, 16, NULL},
        {"record-dataset", VLAD_OPT_STR, &c.dataset, "DIR", "write DIR/episode_NNNNNN.safetensors (with --expert)", 0, 0, NULL},
        {"trajectory", VLAD_OPT_STR, &c.trajectory, "FILE",
         "CSV of every tick: task, episode, tick, k, chunk, targets, positions, obs_tick, source", 0, 0, NULL},
        {"snapshot", VLAD_OPT_STR, &c.snapshot, "DIR", "write DIR/task-<name>.png, one frame per task, and exit", 0, 0, NULL},
        {"bench", VLAD_OPT_FLAG, &c.bench, NULL, "measure physics and render speed, and exit", 0, 0, NULL},
        {"param", VLAD_OPT_CALL, &c, "TASK.KNOB=VALUE", "change a difficulty knob (see sim/README.md)", 0, 0, opt_param},
        {"quiet", VLAD_OPT_FLAG, &c.quiet, NULL, "no per-episode lines", 0, 0, NULL},
        {0},
    };
    vlad_err err;
    int rc = vlad_opts_parse(tab, argc, argv, NULL, 0, NULL, &err);
    if (rc == VLAD_ESTATE) {
        vlad_opts_usage(stdout, SYNOPSIS, tab);
        return 0;
    }
    if (rc)
        return usage_error(err.msg, SYNOPSIS, tab);
    if (!c.profile)
        return usage_error("--profile FILE is required", SYNOPSIS, tab);
    /* Mesa's llvmpipe: tiny frames render faster on the calling thread than on worker
     * threads (and leave the other cores to the daemon); the user's setting wins. */
    setenv("LP_NUM_THREADS", "0", 0);
    static vlad_profile p;
    if (vlad_profile_load(&p, c.profile, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        return 2;
    }
    if (vlad_profile_apply_sets(&p, &c.sets, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        return 2;
    }
    if (c.snapshot) {
        if (vlad_sim_snapshots(&p, c.snapshot, c.seed, 18, 3, &err)) {
            fprintf(stderr, "vlad-sim: %s\n", err.msg);
            return 1;
        }
        printf("vlad-sim: wrote %s/task-{reach,track,whack,push}.png\n", c.snapshot);
        return 0;
    }
    if (c.bench) {
        vlad_sim_bench b;
        if (vlad_sim_bench_run(&p, 5000, 500, &b, &err) ||
            vlad_sim_bench_report(&p, &b, stdout, c.json, &err)) {
            fprintf(stderr, "vlad-sim: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    if ((rc = run_opts(&c, &o)))
        return rc;
    vlad_sim_results res;
    if (vlad_sim_run(&o, &res, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        vlad_sim_results_free(&res);
        return 1;
    }
    vlad_sim_results_print(&res, stdout);
    rc = 0;
    if (c.json && vlad_sim_results_write_json(&res, c.json, &err)) {
        fprintf(stderr, "vlad-sim: %s\n", err.msg);
        rc = 1;
    }
    vlad_sim_results_free(&res);
    return rc;
}
