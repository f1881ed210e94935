/* vlad-bench vlash — future-state-aware asynchronous inference against the baselines.
 *
 * Lockstep part: the default model, tasks reach/track/whack, modes sync/naive/vlash x
 * emulated delay Δ (policy.min_latency_ms = Δ ticks), N episodes each (same seeds for
 * every cell): success, completion time and speed-up vs sync (and the ideal (K+Δ)/K),
 * reaction latency and its ratio vs sync, chunk-boundary discontinuity, jerk, stalls.
 * Wall-clock part: the real engine latency, execution horizon 0.5 s, sync vs VLASH
 * re-planning continuously (threshold = K): reaction latency in ms.
 * Pictures (--plot DIR, gnuplot): DIR/vlash-trajectory.png, the executed trajectory of joint 0
 * for the three modes over the same episode with chunk starts and inference intervals;
 * vlash-latency.png, per-episode reaction latency per mode; vlash-success.png and
 * vlash-completion.png, success (Wilson 95%) and completion time (Student-t 95%) against Δ
 * per mode, one panel per task.
 *
 *   vlad-bench vlash [--model M] [--profile P] [--episodes N] [--deltas 0,1,2,4,8] [--K K]
 *                    [--tasks reach,track,whack] [--seed S] [--jobs J] [--work DIR]
 *                    [--json FILE] [--plot DIR] [--no-wall] [--wall-episodes N]
 *                    [--wall-K K] [--noise-scale X] [--only-wall]   (--help: the table)
 * The wall-clock VLASH run re-plans whenever the worker is idle (threshold K) with no delay
 * margin: a late chunk is still aligned by tick and the queue never runs dry.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* ---- pictures (--plot DIR) ------------------------------------------------------------- */

static const char *k_mode_rgb[N_MODES] = {"#4477aa", "#ee6677", "#228833"};

typedef struct vplot {
    const char *dir, *traj_png; /* the folder; the trajectory picture (DIR/vlash-trajectory.png) */
    job *grid;                  /* nd x N_MODES lockstep runs (NULL: none) */
    int nd, K;
    const int *deltas;
    double hz;
    char tasks[BENCH_MAX_TASKS][16];
    int nt;
    const job *wall;            /* sync, vlash wall-clock runs (NULL: none) */
    int wall_K;
} vplot;

static const char *who = "vlad-bench vlash";

/* The comma-separated task list into names (at most BENCH_MAX_TASKS). */
static int split_tasks(const char *list, char names[][16], int max) {
    int n = 0;
    for (const char *p = list; *p && n < max;) {
        size_t len = strcspn(p, ",");
        if (len) {
            snprintf(names[n], sizeof names[n], "%.*s", (int)(len < 15 ? len : 15), p);
            n++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return n;
}

/* One row of a trajectory CSV that matters to the picture. */
typedef struct traj_row {
    int k;                    /* tick in the episode */
    long long tick, obs_tick; /* the sim's tick; the chunk's observation tick (-1: no column) */
    unsigned long long chunk; /* 0: no policy action this tick */
    double target, pos;       /* joint 0: executed target, measured position */
} traj_row;

static int col_of(char **names, int n, const char *want) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], want))
            return i;
    return -1;
}

/* Split a CSV line in place (no quoting in the sim's files). */
static int split_csv(char *line, char **f, int cap) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *s = line; n < cap;) {
        f[n++] = s;
        char *c = strchr(s, ',');
        if (!c)
            break;
        *c = 0;
        s = c + 1;
    }
    return n;
}

/* The rows of task's episode ep in the sim's trajectory CSV (columns found by name: task,
 * episode, tick, k, chunk, the first target_* and pos_*, and obs_tick when the sim writes it). */
static int read_trajectory(const char *csv, const char *task, int ep, traj_row **out, int *n,
                           bool *has_obs, vlad_err *err) {
    FILE *f = fopen(csv, "r");
    *out = NULL, *n = 0, *has_obs = false;
    if (!f)
        return vlad_err_set(err, VLAD_EIO, "%s: %s", csv, strerror(errno));
    char *line = NULL, *hdr = NULL, *fl[64], *hf[64];
    size_t cap = 0;
    int rc = VLAD_OK, ncap = 0;
    if (getline(&line, &cap, f) < 0 || !(hdr = strdup(line))) {
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: no header", csv);
        goto out;
    }
    int nh = split_csv(hdr, hf, 64), c_task = col_of(hf, nh, "task"), c_ep = col_of(hf, nh, "episode");
    int c_tick = col_of(hf, nh, "tick"), c_k = col_of(hf, nh, "k"), c_chunk = col_of(hf, nh, "chunk");
    int c_obs = col_of(hf, nh, "obs_tick"), c_tg = -1, c_pos = -1;
    for (int i = nh - 1; i >= 0; i--) {
        if (!strncmp(hf[i], "target_", 7))
            c_tg = i;
        if (!strncmp(hf[i], "pos_", 4))
            c_pos = i;
    }
    if (c_task < 0 || c_ep < 0 || c_tick < 0 || c_k < 0 || c_chunk < 0 || c_tg < 0 || c_pos < 0) {
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: missing columns (task, episode, tick, k, chunk, "
                          "target_*, pos_*)", csv);
        goto out;
    }
    *has_obs = c_obs >= 0;
    while (getline(&line, &cap, f) >= 0) {
        int nf = split_csv(line, fl, 64);
        if (nf < nh || strcmp(fl[c_task], task) || atoi(fl[c_ep]) != ep)
            continue;
        if (*n == ncap) {
            ncap = ncap ? 2 * ncap : 512;
            traj_row *r = realloc(*out, (size_t)ncap * sizeof *r);
            if (!r) {
                rc = vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", csv);
                goto out;
            }
            *out = r;
        }
        traj_row *r = &(*out)[(*n)++];
        r->k = atoi(fl[c_k]);
        r->tick = atoll(fl[c_tick]);
        r->obs_tick = c_obs >= 0 ? atoll(fl[c_obs]) : -1;
        r->chunk = strtoull(fl[c_chunk], NULL, 10);
        r->target = atof(fl[c_tg]);
        r->pos = atof(fl[c_pos]);
    }
    if (!*n)
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: no rows for %s episode %d", csv, task, ep);
out:
    if (rc) {
        free(*out);
        *out = NULL, *n = 0;
    }
    free(line);
    free(hdr);
    fclose(f);
    return rc;
}

static vlad_plot *new_plot(const char *png, int w, int h) {
    vlad_err err;
    vlad_plot *p = vlad_plot_new(png, w, h, NULL, &err);
    if (!p)
        fprintf(stderr, "%s: %s\n", who, err.msg);
    return p;
}

/* vlash-trajectory.png: one panel per mode, joint 0 over episode 0 of task at Δ = deltas[d];
 * a dashed line where a new chunk starts executing, a shaded interval for the inference that
 * made it: from its observation's tick (the sim's obs_tick column) to its first executed
 * tick; without that column, the Δ ticks before it (lockstep emulates exactly Δ). */
static void plot_trajectory(const vplot *v, int d, const char *task) {
    int delta = v->deltas[d];
    traj_row *rows[N_MODES] = {NULL};
    int n[N_MODES] = {0};
    bool obs = true;
    double tmax = 0;
    for (int m = 0; m < N_MODES; m++) {
        char csv[1100];
        vlad_err err;
        bool has_obs;
        bench_trajectory_path(v->grid[d * N_MODES + m].dir, csv, sizeof csv);
        if (read_trajectory(csv, task, 0, &rows[m], &n[m], &has_obs, &err)) {
            fprintf(stderr, "%s: trajectory picture: %s\n", who, err.msg);
            for (int i = 0; i < m; i++)
                free(rows[i]);
            return;
        }
        obs = obs && has_obs;
        tmax = fmax(tmax, (rows[m][n[m] - 1].k + 1) / v->hz);
    }
    vlad_plot *p = new_plot(v->traj_png, 1000, 780);
    if (!p)
        goto out;
    vlad_plot_printf(p, "set multiplot layout 3,1 title \"vlad-bench vlash: %s, delta = %d ticks, K = %d, "
                        "episode 0 (same seed in every mode), joint 0\\nshaded: %s\"\n"
                        "set xrange [0:%g]\nset ylabel 'joint 0 (rad)'\n"
                        "set key outside right top vertical Left reverse samplen 2\n",
                     task, delta, v->K,
                     obs ? "each inference, from its observation to the first action of its chunk"
                         : "the delta ticks before the first action of each chunk (lockstep emulates the inference)",
                     tmax);
    for (int m = 0; m < N_MODES; m++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", m);
        vlad_plot_data(p, name);
        int chunks = 0, obj = 0;
        unsigned long long last = 0;
        for (int i = 0; i < n[m]; i++) {
            const traj_row *r = &rows[m][i];
            double row[3] = {r->k / v->hz, r->target, r->pos};
            vlad_plot_row(p, row, 3);
        }
        vlad_plot_end_data(p);
        vlad_plot_printf(p, "unset object\nunset arrow\n");
        for (int i = 0; i < n[m]; i++) {
            const traj_row *r = &rows[m][i];
            if (!r->chunk || r->chunk == last)
                continue;
            last = r->chunk;
            chunks++;
            double x1 = r->k / v->hz;
            double x0 = obs ? (double)(r->obs_tick - (r->tick - r->k)) / v->hz : x1 - delta / v->hz;
            if (x0 < x1)
                vlad_plot_printf(p, "set object %d rect from %.6g, graph 0 to %.6g, graph 1 behind "
                                    "fc rgb '#f2c14e' fs solid 0.35 noborder\n", ++obj, fmax(x0, 0), x1);
            vlad_plot_printf(p, "set arrow from %.6g, graph 0 to %.6g, graph 1 nohead dt 2 lc rgb "
                                "'#777777'\n", x1, x1);
        }
        int stall = 0;
        for (int i = 0; i < n[m]; i++)
            stall += rows[m][i].chunk == 0;
        vlad_plot_printf(p, "set title '%s: %d chunks, %d of %d ticks without a policy action'\n",
                         k_modes[m], chunks, stall, n[m]);
        vlad_plot_printf(p, "set xlabel '%s'\n", m == N_MODES - 1 ? "time in episode (s)" : "");
        vlad_plot_printf(p, "plot $%s using 1:2 with lines lw 2 lc rgb '%s' title 'target', "
                            "$%s using 1:3 with lines lw 1 lc rgb '#999999' title 'position', "
                            "keyentry with boxes fc rgb '#f2c14e' fs solid 0.35 title 'inference', "
                            "keyentry with lines dt 2 lc rgb '#777777' title 'chunk start'\n",
                         name, k_mode_rgb[m], name);
    }
    vlad_plot_printf(p, "unset multiplot\n");
    bench_plot_done(who, p, v->traj_png, "joint 0 per mode, chunk starts and inference intervals");
out:
    for (int m = 0; m < N_MODES; m++)
        free(rows[m]);
}

/* One histogram panel: ns series of values, side-by-side bars per bin. */
static void hist_panel(vlad_plot *p, const char *name, const char *title, const char *xlabel,
                       const char *const labels[], const char *const rgb[], double *const vals[],
                       const int cnt[], int ns) {
    double lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < cnt[s]; i++)
            lo = fmin(lo, vals[s][i]), hi = fmax(hi, vals[s][i]);
    if (!(lo <= hi))
        lo = 0, hi = 1;
    const int nb = 15;
    double w = hi > lo ? (hi - lo) / nb : 1;
    vlad_plot_data(p, name);
    for (int b = 0; b < nb + 1; b++) {
        double row[1 + N_MODES] = {lo + (b + 0.5) * w, 0, 0, 0};
        for (int s = 0; s < ns; s++)
            for (int i = 0; i < cnt[s]; i++) {
                int bi = (int)floor((vals[s][i] - lo) / w);
                row[1 + s] += (bi >= nb ? nb - 1 : bi) == b;
            }
        if (b < nb)
            vlad_plot_row(p, row, 1 + ns);
    }
    vlad_plot_end_data(p);
    vlad_plot_printf(p, "set title '%s'\nset xlabel '%s'\nset ylabel 'episodes'\nset yrange [0:*]\n"
                        "set boxwidth %.6g absolute\nset style fill solid 0.8 border -1\nplot ",
                     title, xlabel, w / ns);
    for (int s = 0; s < ns; s++)
        vlad_plot_printf(p, "%s$%s using ($1+%.6g):%d with boxes lc rgb '%s' title '%s (%d)'",
                         s ? ", " : "", name, (s - (ns - 1) / 2.0) * w / ns, 2 + s, rgb[s], labels[s],
                         cnt[s]);
    vlad_plot_printf(p, "\n");
}

/* vlash-latency.png: per-episode mean reaction latency (world change to the first action from
 * an observation after it), per mode: the lockstep cell at Δ = deltas[d] (every task with
 * world changes) and the wall-clock runs (whack, real engine latency) when they ran. */
static void plot_latency(const vplot *v, int d) {
    enum { CAP = 4096 };
    double *vals[2][N_MODES] = {{NULL}};
    int cnt[2][N_MODES] = {{0}}, panels = (v->grid != NULL) + (v->wall != NULL);
    char png[1100];
    bench_plot_path(v->dir, "vlash-latency.png", png, sizeof png);
    vlad_plot *p = panels ? new_plot(png, 560 * panels + 80, 440) : NULL;
    if (!p)
        return;
    vlad_plot_printf(p, "set multiplot layout 1,%d title 'vlad-bench vlash: reaction latency per "
                        "episode (mean of its world changes)'\nset key top right\n", panels);
    for (int pi = 0; pi < 2; pi++) {
        if ((pi == 0 && !v->grid) || (pi == 1 && !v->wall))
            continue;
        int ns = pi == 0 ? N_MODES : 2;
        const char *labels[N_MODES], *rgb[N_MODES];
        for (int s = 0; s < ns; s++) {
            int m = pi == 0 ? s : (s ? 2 : 0);
            const job *j = pi == 0 ? &v->grid[d * N_MODES + m] : &v->wall[s];
            labels[s] = pi == 0 ? k_modes[m] : (s ? "vlash (re-plan when idle)" : "sync");
            rgb[s] = k_mode_rgb[m];
            vals[pi][s] = malloc(CAP * sizeof(double));
            if (!vals[pi][s] || j->rc)
                continue;
            for (int t = 0; t < (pi == 0 ? v->nt : 1); t++) {
                int got = 0;
                vlad_err err;
                if (!bench_episode_values(j->dir, pi == 0 ? v->tasks[t] : "whack",
                                          "reaction_latency_mean_ms", vals[pi][s] + cnt[pi][s],
                                          CAP - cnt[pi][s], &got, &err))
                    cnt[pi][s] += got;
            }
        }
        char title[200];
        if (pi == 0)
            snprintf(title, sizeof title, "lockstep, delta = %d ticks (emulated), K = %d, all tasks",
                     v->deltas[d], v->K);
        else
            snprintf(title, sizeof title, "wall clock, whack, real engine latency, K = %d", v->wall_K);
        hist_panel(p, pi ? "hw" : "hl", title, "reaction latency (ms)", labels, rgb, vals[pi], cnt[pi],
                   ns);
    }
    vlad_plot_printf(p, "unset multiplot\n");
    bench_plot_done(who, p, png, "histogram of per-episode reaction latency per mode");
    for (int pi = 0; pi < 2; pi++)
        for (int s = 0; s < N_MODES; s++)
            free(vals[pi][s]);
}

/* vlash-success.png (what = 0): success rate against Δ per mode, Wilson 95% intervals;
 * vlash-completion.png (what = 1): mean completion time of the successful episodes against Δ
 * per mode, 95% Student-t interval of the mean. One panel per task; modes offset a little in x. */
static void plot_vs_delta(const vplot *v, int what) {
    char png[1100];
    bench_plot_path(v->dir, what ? "vlash-completion.png" : "vlash-success.png", png, sizeof png);
    vlad_plot *p = v->nt ? new_plot(png, 420 * v->nt + 220, 470) : NULL;
    if (!p)
        return;
    int dmax = 0;
    for (int d = 0; d < v->nd; d++)
        dmax = v->deltas[d] > dmax ? v->deltas[d] : dmax;
    double off = 0.03 * (dmax > 0 ? dmax : 1);
    vlad_plot_printf(p, "set multiplot layout 1,%d title 'vlad-bench vlash, lockstep, K = %d: %s'\n"
                        "set xlabel 'delta (ticks)'\nset xrange [%g:%g]\nset xtics (",
                     v->nt, v->K, what ? "completion time of successful episodes, 95% t interval"
                                       : "success, 95% Wilson interval",
                     -4 * off, dmax + 4 * off);
    for (int d = 0; d < v->nd; d++)
        vlad_plot_printf(p, "%s%d", d ? ", " : "", v->deltas[d]);
    const char *yr = what ? "set yrange [0:*]" : "set yrange [0:105]";
    vlad_plot_printf(p, ")\nset ylabel '%s'\nset bmargin 5\n"
                        "set key at screen 0.5, 0.035 center horizontal\n",
                     what ? "completion (s)" : "success (%)");
    for (int t = 0; t < v->nt; t++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", t);
        vlad_plot_data(p, name);
        bool any = false;
        for (int d = 0; d < v->nd; d++) {
            double row[1 + 3 * N_MODES];
            row[0] = v->deltas[d];
            for (int m = 0; m < N_MODES; m++) {
                const bench_task_stats *s = find(&v->grid[d * N_MODES + m], v->tasks[t]);
                double y = NAN, lo = NAN, hi = NAN;
                if (s && !what) {
                    bench_wilson(s->successes, s->episodes, &lo, &hi);
                    y = 100 * s->success, lo *= 100, hi *= 100;
                } else if (s) {
                    y = s->completion_s;
                    lo = y - s->completion_ci95, hi = y + s->completion_ci95;
                }
                row[1 + 3 * m] = y, row[2 + 3 * m] = lo, row[3 + 3 * m] = hi;
                any = any || isfinite(y);
            }
            vlad_plot_row(p, row, 1 + 3 * N_MODES);
        }
        vlad_plot_end_data(p);
        const bench_task_stats *any_s = NULL;
        for (int i = 0; i < v->nd * N_MODES && !any_s; i++)
            any_s = find(&v->grid[i], v->tasks[t]);
        vlad_plot_printf(p, "set title '%s, %d episodes per point'\n", v->tasks[t],
                         any_s ? any_s->episodes : 0);
        if (!any) { /* gnuplot refuses a plot without a point: say why the panel is empty */
            vlad_plot_printf(p, "set yrange [0:1]\nset label 1 '%s' at graph 0.5, 0.5 center\n"
                                "plot 1/0 notitle\nunset label 1\n",
                             what ? "no successful episode" : "no results");
            continue;
        }
        vlad_plot_printf(p, "%s\nplot ", yr);
        for (int m = 0; m < N_MODES; m++) {
            double dx = (m - 1) * off;
            vlad_plot_printf(p, "%s$%s using ($1+%g):%d with linespoints lw 2 pt 7 lc rgb '%s' "
                                "title '%s', $%s using ($1+%g):%d:%d:%d with yerrorbars pt 7 lc rgb "
                                "'%s' notitle",
                             m ? ", " : "", name, dx, 2 + 3 * m, k_mode_rgb[m], k_modes[m], name, dx,
                             2 + 3 * m, 3 + 3 * m, 4 + 3 * m, k_mode_rgb[m]);
        }
        vlad_plot_printf(p, "\n");
    }
    vlad_plot_printf(p, "unset multiplot\n");
    bench_plot_done(who, p, png, what ? "completion time vs delta per mode, 95% t intervals"
                                      : "success vs delta per mode, Wilson 95% intervals");
}

/* All pictures: the trajectory at the largest Δ <= 4 on the first of track, whack, reach in
 * the grid (the tasks whose world changes). */
static void write_pictures(vplot *v) {
    if (bench_plot_dir(who, v->dir))
        return;
    if (v->grid) {
        int dp = 0;
        for (int d = 0; d < v->nd; d++)
            if (v->deltas[d] <= 4)
                dp = d;
        const char *ptask = v->tasks[0];
        static const char *pref[] = {"track", "whack", "reach"};
        for (int i = 2; i >= 0; i--)
            for (int t = 0; t < v->nt; t++)
                if (!strcmp(v->tasks[t], pref[i]))
                    ptask = v->tasks[t];
        bool ok = true;
        for (int m = 0; m < N_MODES; m++)
            ok = ok && !v->grid[dp * N_MODES + m].rc;
        if (ok)
            plot_trajectory(v, dp, ptask);
        plot_latency(v, dp);
        plot_vs_delta(v, 0);
        plot_vs_delta(v, 1);
    } else if (v->wall) {
        plot_latency(v, 0);
    }
}

int bench_vlash_main(int argc, char **argv) {
    const char *model = "models/vlad-default.safetensors", *profile = "configs/sim-arm.yaml";
    const char *tasks = "reach,track,whack", *work = "/tmp/vlad-bench-vlash", *json = NULL;
    const char *plot_arg = ".";
    int episodes = 50, K = 10, jobs = 2, no_wall = 0, wall_eps = 20, wall_K = 25, only_wall = 0;
    double noise = 1.0;
    uint64_t seed64 = 1;
    bench_int_list dl = {.v = {0, 1, 2, 4, 8}, .n = 5, .lo = 0, .hi = 64};
    const vlad_opt opts[] = {
        BENCH_STR("model", &model, "M", "checkpoint"),
        BENCH_STR("profile", &profile, "P", "base robot profile"),
        BENCH_INT("episodes", &episodes, "N", "episodes per cell (same seeds in every cell)", 1, 100000),
        BENCH_CALL("deltas", &dl, "D,D,...", "emulated inference delays in ticks, 0..64 (default "
                   "0,1,2,4,8)", bench_opt_int_list),
        BENCH_INT("K", &K, "K", "execution horizon (ticks) of the lockstep grid", 1, 1000),
        BENCH_STR("tasks", &tasks, "T,T", "vlad-sim tasks of the lockstep grid"),
        BENCH_U64("seed", &seed64, "S", "first episode seed", 0, 1e9),
        BENCH_INT("jobs", &jobs, "J", "lockstep runs at a time", 1, 8),
        BENCH_STR("work", &work, "DIR", "folder for the runs"),
        BENCH_STR("json", &json, "FILE", "write the results as JSON"),
        BENCH_STR("plot", &plot_arg, "DIR", "write the pictures vlash-*.png there ('': none; a "
                  "FILE.png: the trajectory there, the others beside it)"),
        BENCH_FLAG("no-wall", &no_wall, "skip the wall-clock reaction runs"),
        BENCH_INT("wall-episodes", &wall_eps, "N", "episodes per wall-clock run", 1, 100000),
        BENCH_INT("wall-K", &wall_K, "K", "execution horizon of the wall-clock runs", 1, 1000),
        BENCH_DBL("noise-scale", &noise, "X", "policy.noise_scale", 0, 100),
        BENCH_FLAG("only-wall", &only_wall, "only the wall-clock runs"),
        BENCH_OPT_END,
    };
    int status;
    if (!bench_opts("vlad-bench vlash", "vlad-bench vlash [options]", opts, argc, argv, &status))
        return status;
    const unsigned seed = (unsigned)seed64;
    const int wall = !no_wall, lockstep = !only_wall, nd = dl.n;
    const int *deltas = dl.v;
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
                double wlo, whi;
                bench_wilson(s->successes, s->episodes, &wlo, &whi);
                cJSON_AddNumberToObject(o, "success_wilson95_lo", wlo);
                cJSON_AddNumberToObject(o, "success_wilson95_hi", whi);
                cJSON_AddNumberToObject(o, "completion_s", isnan(s->completion_s) ? -1 : s->completion_s);
                cJSON_AddNumberToObject(o, "completion_sd_s", isnan(s->completion_sd) ? -1 : s->completion_sd);
                /* half-width of the Student-t 95% interval of the mean (-1: fewer than 2 successes) */
                cJSON_AddNumberToObject(o, "completion_ci95_s",
                                        isnan(s->completion_ci95) ? -1 : s->completion_ci95);
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
    if (plot_arg[0]) {
        /* --plot DIR, or (as before) --plot FILE.png: the trajectory there, the rest beside it */
        char dirbuf[1024], trajbuf[1100];
        size_t len = strlen(plot_arg);
        if (len > 4 && !strcmp(plot_arg + len - 4, ".png")) {
            const char *slash = strrchr(plot_arg, '/');
            snprintf(dirbuf, sizeof dirbuf, "%.*s", slash ? (int)(slash - plot_arg) : 1,
                     slash ? plot_arg : ".");
            if (!dirbuf[0])
                snprintf(dirbuf, sizeof dirbuf, "/");
            snprintf(trajbuf, sizeof trajbuf, "%s", plot_arg);
        } else {
            snprintf(dirbuf, sizeof dirbuf, "%s", plot_arg);
            bench_plot_path(dirbuf, "vlash-trajectory.png", trajbuf, sizeof trajbuf);
        }
        vplot v = {.dir = dirbuf, .traj_png = trajbuf, .grid = lockstep ? grid : NULL, .nd = nd,
                   .K = K, .deltas = deltas, .hz = p.control_hz, .wall = wall ? wj : NULL,
                   .wall_K = wall_K};
        v.nt = split_tasks(tasks, v.tasks, BENCH_MAX_TASKS);
        printf("\n");
        write_pictures(&v);
    }
    if (json)
        bench_write_json(json, root);
    else
        cJSON_Delete(root);
    free(grid);
    return failures ? 1 : 0;
}
