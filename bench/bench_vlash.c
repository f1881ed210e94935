/* vlad-bench vlash — future-state-aware asynchronous inference against the baselines.
 *
 * Lockstep part: the default model, tasks reach/track/whack, modes sync/naive/vlash x
 * emulated delay Δ (policy.min_latency_ms = Δ ticks), N episodes each (same seeds for
 * every cell): success, completion time and speed-up vs sync (and the ideal (K+Δ)/K),
 * reaction latency and its ratio vs sync, chunk-boundary discontinuity, jerk, stalls.
 * Wall-clock part: the real engine latency, execution horizon 0.5 s, sync vs VLASH
 * re-planning continuously (threshold = K): reaction latency in ms.
 * Plot: one joint's executed trajectory for the three modes over the same episode.
 *
 *   vlad-bench vlash [--model M] [--profile P] [--episodes N] [--deltas 0,1,2,4,8] [--K K]
 *                    [--tasks reach,track,whack] [--seed S] [--jobs J] [--work DIR]
 *                    [--json FILE] [--plot FILE.png] [--no-wall] [--wall-episodes N]
 *                    [--wall-K K] [--noise-scale X] [--only-wall]
 * The wall-clock VLASH run re-plans whenever the worker is idle (threshold K) with no delay
 * margin: a late chunk is still aligned by tick and the queue never runs dry.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "closedloop.h"
#include "clock.h"

#define MAX_DELTAS 8
#define N_MODES 3
static const char *k_modes[N_MODES] = {"sync", "naive", "vlash"};

typedef struct job {
    bench_run run;
    char dir[1024];
    bench_task_stats st[BENCH_MAX_TASKS];
    int n;
    int rc;
    char err[VLAD_ERR_MSG_MAX];
    double seconds;
} job;

typedef struct pool {
    job *jobs;
    int n;
    _Atomic int next;
} pool;

static void *pool_worker(void *arg) {
    pool *p = arg;
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            return NULL;
        job *j = &p->jobs[i];
        vlad_err err = {0};
        int64_t t0 = vlad_now_ns();
        j->rc = bench_closed_loop(&j->run, j->dir, j->st, &j->n, &err);
        j->seconds = (double)(vlad_now_ns() - t0) / 1e9;
        snprintf(j->err, sizeof j->err, "%s", j->rc ? err.msg : "");
        fprintf(stderr, "  %-40s %5.0f s %s\n", j->dir, j->seconds, j->rc ? j->err : "");
    }
}

static void run_pool(job *jobs, int n, int threads) {
    pool p = {.jobs = jobs, .n = n};
    pthread_t t[8];
    if (threads < 1)
        threads = 1;
    if (threads > 8)
        threads = 8;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, pool_worker, &p);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
}

static const bench_task_stats *find(const job *j, const char *task) {
    for (int i = 0; j && !j->rc && i < j->n; i++)
        if (!strcmp(j->st[i].task, task))
            return &j->st[i];
    return NULL;
}

static double ratio(double a, double b) { return (b > 0 && !isnan(a) && !isnan(b)) ? a / b : NAN; }

/* gnuplot: joint 0 target over one episode, three modes */
static void plot(const char *png, job *const traj[N_MODES], const char *task, int delta, double hz) {
    char script[8192];
    int w = snprintf(script, sizeof script,
                     "set terminal pngcairo size 900,420 noenhanced\nset output '%s'\n"
                     "set datafile separator ','\nset key top left\nset grid\n"
                     "set xlabel 'time in episode (s)'\nset ylabel 'joint 0 target (rad)'\n"
                     "set title 'vlad: %s, delta = %d ticks, episode 0: executed target of joint 0'\n"
                     "plot ",
                     png, task, delta);
    for (int m = 0; m < N_MODES; m++) {
        char path[1100];
        bench_trajectory_path(traj[m]->dir, path, sizeof path);
        w += snprintf(script + w, sizeof script - (size_t)w,
                      "%s'< grep \"^%s,0,\" %s' using ($4/%g):6 with lines lw 2 title '%s'",
                      m ? ", " : "", task, path, hz, k_modes[m]);
    }
    snprintf(script + w, sizeof script - (size_t)w, "\n");
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "vlad-bench vlash: gnuplot not available; no plot\n");
        return;
    }
    fputs(script, g);
    if (pclose(g) != 0)
        fprintf(stderr, "vlad-bench vlash: gnuplot failed; no plot\n");
}

static void usage(void) {
    fprintf(stderr,
            "usage: vlad-bench vlash [--model M] [--profile P] [--episodes N] [--deltas 0,1,2,4,8]\n"
            "         [--K K] [--tasks reach,track,whack] [--seed S] [--jobs J] [--work DIR]\n"
            "         [--json FILE] [--plot FILE.png] [--no-wall] [--wall-episodes N] [--wall-K K]\n"
            "         [--noise-scale X] [--only-wall]\n");
}

int bench_vlash_main(int argc, char **argv) {
    const char *model = "models/vlad-default.safetensors", *profile = "configs/sim-arm.yaml";
    const char *tasks = "reach,track,whack", *work = "/tmp/vlad-bench-vlash", *json = NULL;
    const char *png = "vlash-trajectory.png", *deltas_s = "0,1,2,4,8";
    int episodes = 50, K = 10, jobs = 2, wall = 1, wall_eps = 20, wall_K = 25, lockstep = 1;
    double noise = 1.0;
    unsigned seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && ++i)
        if (ARG("--model")) model = v;
        else if (ARG("--profile")) profile = v;
        else if (ARG("--episodes")) episodes = atoi(v);
        else if (ARG("--deltas")) deltas_s = v;
        else if (ARG("--K")) K = atoi(v);
        else if (ARG("--tasks")) tasks = v;
        else if (ARG("--seed")) seed = (unsigned)atoi(v);
        else if (ARG("--jobs")) jobs = atoi(v);
        else if (ARG("--work")) work = v;
        else if (ARG("--json")) json = v;
        else if (ARG("--plot")) png = v;
        else if (ARG("--wall-episodes")) wall_eps = atoi(v);
        else if (ARG("--wall-K")) wall_K = atoi(v);
        else if (ARG("--noise-scale")) noise = atof(v);
        else if (!strcmp(a, "--no-wall")) wall = 0;
        else if (!strcmp(a, "--only-wall")) lockstep = 0;
        else {
            usage();
            return 2;
        }
#undef ARG
    }
    int deltas[MAX_DELTAS], nd = 0;
    for (const char *p = deltas_s; *p && nd < MAX_DELTAS;) {
        deltas[nd++] = atoi(p);
        const char *c = strchr(p, ',');
        if (!c)
            break;
        p = c + 1;
    }
    if (episodes < 1 || K < 1 || nd < 1 || wall_K < 1) {
        usage();
        return 2;
    }
    static vlad_profile p;
    if (bench_setup("vlad-bench vlash", profile, &p))
        return 2;
    double tick_ms = 1000.0 / p.control_hz;
    int64_t t0 = vlad_now_ns();

    /* ---- lockstep grid ---- */
    int nj = lockstep ? nd * N_MODES : 0;
    job *grid = calloc((size_t)nj + 2, sizeof *grid);
    if (!grid)
        return 1;
    for (int d = 0; lockstep && d < nd; d++)
        for (int m = 0; m < N_MODES; m++) {
            job *j = &grid[d * N_MODES + m];
            j->run = (bench_run){.base = &p, .model = model, .mode = k_modes[m], .K = K,
                                 .threshold = 0, .margin = 0, .min_latency_ms = deltas[d] * tick_ms,
                                 .threads = 1, .tasks = tasks, .episodes = episodes, .seed = seed,
                                 .trajectory = true, .noise_scale = noise};
            snprintf(j->dir, sizeof j->dir, "%s/lockstep-d%d-%s", work, deltas[d], k_modes[m]);
        }
    fprintf(stderr, "vlad-bench vlash: %d lockstep runs (%s x %d episodes), %d at a time\n", nj, tasks,
            episodes, jobs);
    run_pool(grid, nj, jobs);

    /* ---- wall clock: real engine latency, 0.5 s execution horizon ---- */
    job wj[2];
    memset(wj, 0, sizeof wj);
    if (wall) {
        for (int m = 0; m < 2; m++) {
            job *j = &wj[m];
            int vl = m == 1;
            j->run = (bench_run){.base = &p, .model = model, .mode = vl ? "vlash" : "sync",
                                 .K = wall_K, .threshold = vl ? wall_K : 0, .margin = 0,
                                 .wall = true, .realtime = true, .threads = 1, .tasks = "whack",
                                 .episodes = wall_eps, .seed = seed, .noise_scale = noise};
            snprintf(j->dir, sizeof j->dir, "%s/wall-%s", work, vl ? "vlash" : "sync");
        }
        fprintf(stderr, "vlad-bench vlash: wall-clock reaction runs (whack, K=%d = %.2f s)\n", wall_K,
                wall_K * tick_ms / 1000);
        run_pool(wj, 2, 1); /* one at a time: real time must not share the CPU */
    }

    /* ---- report ---- */
    printf("\nvlad-bench vlash: model %s, K=%d (%.0f ms), %d episodes per cell, seed %u, lockstep; "
           "%.0f s\n", model, K, K * tick_ms, episodes, seed, (double)(vlad_now_ns() - t0) / 1e9);
    printf("\n| task  | Δ | mode  | success | completion s | speed-up vs sync (ideal) | execution-rate speed-up "
           "| reaction ticks mean/max | vs sync | discontinuity rad | sq jerk | stalls/ep |\n");
    printf("|-------|--:|-------|--------:|-------------:|-------------------------:|-----------------------:"
           "|------------------------:|--------:|------------------:|--------:|----------:|\n");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "K", K);
    cJSON_AddNumberToObject(root, "episodes", episodes);
    cJSON_AddNumberToObject(root, "seed", seed);
    cJSON_AddNumberToObject(root, "control_hz", p.control_hz);
    cJSON_AddNumberToObject(root, "noise_scale", noise);
    cJSON *cells = cJSON_AddArrayToObject(root, "lockstep");
    int failures = 0;
    for (int i = 0; i < nj; i++)
        if (grid[i].rc) {
            fprintf(stderr, "vlad-bench vlash: %s: %s\n", grid[i].dir, grid[i].err);
            failures++;
        }
    const char *tl = tasks;
    char tbuf[128];
    snprintf(tbuf, sizeof tbuf, "%s", tl);
    for (char *save = NULL, *task = lockstep ? strtok_r(tbuf, ",", &save) : NULL; task;
         task = strtok_r(NULL, ",", &save)) {
        for (int d = 0; d < nd; d++) {
            const bench_task_stats *sy = find(&grid[d * N_MODES], task);
            for (int m = 0; m < N_MODES; m++) {
                const bench_task_stats *s = find(&grid[d * N_MODES + m], task);
                if (!s)
                    continue;
                double ideal = (double)(K + deltas[d]) / K;
                double speed = sy ? ratio(sy->completion_s, s->completion_s) : NAN;
                /* execution rate: the share of ticks that executed a fresh policy action; its
                 * ratio to sync is the completion-time speed-up for a fixed amount of policy
                 * work, defined whether or not episodes succeed */
                double rate = 1.0 - s->stall_ticks / s->ticks;
                double rate_sp = sy ? ratio(rate, 1.0 - sy->stall_ticks / sy->ticks) : NAN;
                double rr = sy ? ratio(sy->react_mean_ticks, s->react_mean_ticks) : NAN;
                printf("| %-5s | %d | %-5s | %6.0f%% | %12.3f | %10.2fx (%.2fx) %5.0f%% | %7.2fx = %4.0f%% of ideal "
                       "| %10.1f / %-10.0f | %6.1fx | %17.4f | %7.3g | %9.2f |\n",
                       task, deltas[d], k_modes[m], 100 * s->success, s->completion_s, speed, ideal,
                       100 * speed / ideal, rate_sp, 100 * rate_sp / ideal, s->react_mean_ticks,
                       s->react_max_ticks, rr, s->disc_mean, s->jerk, s->stall_ticks);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "task", task);
                cJSON_AddNumberToObject(o, "delta", deltas[d]);
                cJSON_AddStringToObject(o, "mode", k_modes[m]);
                cJSON_AddNumberToObject(o, "success", s->success);
                cJSON_AddNumberToObject(o, "completion_s", isnan(s->completion_s) ? -1 : s->completion_s);
                cJSON_AddNumberToObject(o, "speedup_vs_sync", isnan(speed) ? -1 : speed);
                cJSON_AddNumberToObject(o, "ideal_speedup", ideal);
                cJSON_AddNumberToObject(o, "execution_rate_speedup_vs_sync", isnan(rate_sp) ? -1 : rate_sp);
                cJSON_AddNumberToObject(o, "episode_ticks", s->ticks);
                cJSON_AddNumberToObject(o, "reaction_mean_ticks", isnan(s->react_mean_ticks) ? -1 : s->react_mean_ticks);
                cJSON_AddNumberToObject(o, "reaction_max_ticks", isnan(s->react_max_ticks) ? -1 : s->react_max_ticks);
                cJSON_AddNumberToObject(o, "reaction_mean_ms", isnan(s->react_mean_ticks) ? -1 : s->react_mean_ticks * tick_ms);
                cJSON_AddNumberToObject(o, "reaction_ratio_vs_sync", isnan(rr) ? -1 : rr);
                cJSON_AddNumberToObject(o, "discontinuity_mean", isnan(s->disc_mean) ? -1 : s->disc_mean);
                cJSON_AddNumberToObject(o, "discontinuity_max", isnan(s->disc_max) ? -1 : s->disc_max);
                cJSON_AddNumberToObject(o, "mean_sq_jerk", s->jerk);
                cJSON_AddNumberToObject(o, "stall_ticks_per_episode", s->stall_ticks);
                cJSON_AddItemToArray(cells, o);
            }
        }
    }
    if (wall) {
        const bench_task_stats *ws = find(&wj[0], "whack"), *wv = find(&wj[1], "whack");
        printf("\nwall clock, whack, real engine latency, execution horizon %d ticks (%.0f ms):\n", wall_K,
               wall_K * tick_ms);
        printf("| mode | success | reaction ms mean | reaction ms max | stalls/ep |\n|------|--------:|---:|---:|---:|\n");
        for (int m = 0; m < 2; m++) {
            const bench_task_stats *s = m ? wv : ws;
            if (!s) {
                fprintf(stderr, "vlad-bench vlash: %s: %s\n", wj[m].dir, wj[m].err);
                failures++;
                continue;
            }
            printf("| %s | %.0f%% | %.1f | %.1f | %.2f |\n", m ? "vlash (re-plan when idle)" : "sync",
                   100 * s->success, s->react_mean_ticks * tick_ms, s->react_max_ticks * tick_ms,
                   s->stall_ticks);
        }
        if (ws && wv) {
            double rm = ratio(ws->react_mean_ticks, wv->react_mean_ticks);
            double rx = ratio(ws->react_max_ticks, wv->react_max_ticks);
            printf("reaction latency, sync / vlash: mean %.1fx, max %.1fx (the paper's metric is the max)\n", rm, rx);
            cJSON *w = cJSON_AddObjectToObject(root, "wall");
            cJSON_AddNumberToObject(w, "K", wall_K);
            cJSON_AddNumberToObject(w, "sync_reaction_mean_ms", ws->react_mean_ticks * tick_ms);
            cJSON_AddNumberToObject(w, "sync_reaction_max_ms", ws->react_max_ticks * tick_ms);
            cJSON_AddNumberToObject(w, "vlash_reaction_mean_ms", wv->react_mean_ticks * tick_ms);
            cJSON_AddNumberToObject(w, "vlash_reaction_max_ms", wv->react_max_ticks * tick_ms);
            cJSON_AddNumberToObject(w, "ratio_mean", rm);
            cJSON_AddNumberToObject(w, "ratio_max", rx);
            cJSON_AddNumberToObject(w, "sync_success", ws->success);
            cJSON_AddNumberToObject(w, "vlash_success", wv->success);
        }
    }
    /* plot: the largest Δ <= 4, first task with world changes */
    int dp = 0;
    for (int d = 0; d < nd; d++)
        if (deltas[d] <= 4)
            dp = d;
    const char *ptask = strstr(tasks, "track") ? "track" : (strstr(tasks, "whack") ? "whack" : "reach");
    if (png && png[0] && lockstep) {
        job *traj[N_MODES] = {&grid[dp * N_MODES], &grid[dp * N_MODES + 1], &grid[dp * N_MODES + 2]};
        plot(png, traj, ptask, deltas[dp], p.control_hz);
        printf("\ntrajectory plot: %s (%s, Δ=%d)\n", png, ptask, deltas[dp]);
    }
    if (json)
        bench_write_json(json, root);
    else
        cJSON_Delete(root);
    free(grid);
    return failures ? 1 : 0;
}
