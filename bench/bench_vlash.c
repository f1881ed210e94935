/* vlad-bench vlash — future-state-aware asynchronous inference against the baselines.
 *
 * Lockstep part: the default model, tasks reach/track/whack, modes sync/naive/vlash/merge x
 * emulated delay Δ (policy.min_latency_ms = Δ ticks), N episodes each (same seeds for
 * every cell): success with its Wilson 95% interval; mean completion time of the successful
 * episodes with a percentile-bootstrap 95% interval; the completion-time speed-up over sync at
 * the same Δ, paired by episode (the episodes both succeeded: mean time of sync / mean time of
 * the mode, bootstrap 95% interval) against the ideal (K+Δ)/K; the execution-rate speed-up
 * (a proxy: ticks that ran a policy action, not time to finish); reaction latency and its
 * ratio vs sync, chunk-boundary discontinuity, jerk, stalls; which modes' intervals are
 * disjoint. Seed sets: dev (run seed --seed, below 1000000; the README's figures use 1) or
 * held-out (run seed 1000000 + --seed; checked disjoint from the training data's episodes).
 * Wall-clock part: the real engine latency, execution horizon 0.5 s, sync vs VLASH
 * re-planning continuously (threshold = K): reaction latency in ms.
 * Pictures (--plot DIR, gnuplot): DIR/vlash-trajectory.png, the executed trajectory of joint 0
 * for each mode over the same episode with chunk starts and inference intervals;
 * vlash-latency.png, per-episode reaction latency per mode; vlash-success.png,
 * vlash-completion.png and vlash-speedup.png, success (Wilson 95%), completion time and the
 * paired completion-time speed-up over sync (bootstrap 95%, the ideal (K+Δ)/K drawn) against Δ
 * per mode, one panel per task.
 *
 *   vlad-bench vlash [--model M] [--profile P] [--episodes N] [--deltas 0,1,2,4,8] [--K K]
 *                    [--tasks reach,track,whack] [--modes sync,naive,vlash,merge]
 *                    [--seed S] [--seed-set dev|held-out] [--held-out] [--seeds-only]
 *                    [--bootstrap B] [--merge-weight W] [--jobs J] [--work DIR]
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
#include "bstats.h"
#include "closedloop.h"
#include "clock.h"
#include "proc.h"
#include "run.h"

#define MAX_DELTAS 8
#define MAX_MODES 4
/* every mode, in table order; a run's modes are a subset (--modes), sync always among them */
static const char *k_all_modes[MAX_MODES] = {"sync", "naive", "vlash", "merge"};

typedef struct job {
    bench_run run;
    char dir[1024];
    bench_task_stats st[BENCH_MAX_TASKS];
    bench_daemon_stats ds;     /* the daemon's last Status (delay limit) */
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

static const char *k_mode_rgb[MAX_MODES] = {"#4477aa", "#ee6677", "#228833", "#aa3377"};

/* The statistics of one cell (task, Δ, mode) of the lockstep grid. */
typedef struct cell {
    const bench_task_stats *s; /* NULL: the run failed */
    double wlo, whi;           /* success, Wilson 95% */
    int n_done;                /* successful episodes */
    double comp, comp_lo, comp_hi; /* mean completion time (s) of those, bootstrap 95% */
    double sp, sp_lo, sp_hi;   /* completion-time speed-up over sync at this Δ, paired; bootstrap */
    int pairs;                 /* episodes where both this mode and sync succeeded */
    double ideal;              /* (K + Δ) / K */
    double rate_sp;            /* execution-rate speed-up over sync (a proxy) */
} cell;

typedef struct vplot {
    const char *dir, *traj_png; /* the folder; the trajectory picture (DIR/vlash-trajectory.png) */
    job *grid;                  /* nd x nm lockstep runs (NULL: none) */
    const cell *cells;          /* nt x nd x nm, same order */
    int nd, K, nm;
    const int *modes;           /* nm indices into k_all_modes */
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
    traj_row *rows[MAX_MODES] = {NULL};
    int n[MAX_MODES] = {0}, nm = v->nm;
    bool obs = true;
    double tmax = 0;
    for (int m = 0; m < nm; m++) {
        char csv[1100];
        vlad_err err;
        bool has_obs;
        bench_trajectory_path(v->grid[d * nm + m].dir, csv, sizeof csv);
        if (read_trajectory(csv, task, 0, &rows[m], &n[m], &has_obs, &err)) {
            fprintf(stderr, "%s: trajectory picture: %s\n", who, err.msg);
            for (int i = 0; i < m; i++)
                free(rows[i]);
            return;
        }
        obs = obs && has_obs;
        tmax = fmax(tmax, (rows[m][n[m] - 1].k + 1) / v->hz);
    }
    vlad_plot *p = new_plot(v->traj_png, 1000, 120 + 220 * nm);
    if (!p)
        goto out;
    vlad_plot_printf(p, "set multiplot layout %d,1 title \"vlad-bench vlash: %s, delta = %d ticks, K = %d, "
                        "episode 0 (same seed in every mode), joint 0\\nshaded: %s\"\n"
                        "set xrange [0:%g]\nset ylabel 'joint 0 (rad)'\n"
                        "set key outside right top vertical Left reverse samplen 2\n",
                     nm, task, delta, v->K,
                     obs ? "each inference, from its observation to the first action of its chunk"
                         : "the delta ticks before the first action of each chunk (lockstep emulates the inference)",
                     tmax);
    for (int m = 0; m < nm; m++) {
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
                         k_all_modes[v->modes[m]], chunks, stall, n[m]);
        vlad_plot_printf(p, "set xlabel '%s'\n", m == nm - 1 ? "time in episode (s)" : "");
        vlad_plot_printf(p, "plot $%s using 1:2 with lines lw 2 lc rgb '%s' title 'target', "
                            "$%s using 1:3 with lines lw 1 lc rgb '#999999' title 'position', "
                            "keyentry with boxes fc rgb '#f2c14e' fs solid 0.35 title 'inference', "
                            "keyentry with lines dt 2 lc rgb '#777777' title 'chunk start'\n",
                         name, k_mode_rgb[v->modes[m]], name);
    }
    vlad_plot_printf(p, "unset multiplot\n");
    bench_plot_done(who, p, v->traj_png, "joint 0 per mode, chunk starts and inference intervals");
out:
    for (int m = 0; m < nm; m++)
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
        double row[1 + MAX_MODES] = {lo + (b + 0.5) * w};
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
    double *vals[2][MAX_MODES] = {{NULL}};
    int cnt[2][MAX_MODES] = {{0}}, panels = (v->grid != NULL) + (v->wall != NULL);
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
        int ns = pi == 0 ? v->nm : 2;
        const char *labels[MAX_MODES], *rgb[MAX_MODES];
        for (int s = 0; s < ns; s++) {
            int m = pi == 0 ? v->modes[s] : (s ? 2 : 0); /* index into k_all_modes */
            const job *j = pi == 0 ? &v->grid[d * v->nm + s] : &v->wall[s];
            labels[s] = pi == 0 ? k_all_modes[m] : (s ? "vlash (re-plan when idle)" : "sync");
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
        for (int s = 0; s < MAX_MODES; s++)
            free(vals[pi][s]);
}

/* vlash-success.png (what = 0): success rate against Δ per mode, Wilson 95% intervals;
 * vlash-completion.png (what = 1): mean completion time of the successful episodes against Δ
 * per mode, percentile-bootstrap 95% interval of the mean; vlash-speedup.png (what = 2): the
 * paired completion-time speed-up over sync at each Δ, bootstrap 95%, with the ideal (K+Δ)/K.
 * One panel per task; modes offset a little in x. */
static void plot_vs_delta(const vplot *v, int what) {
    static const char *png_name[3] = {"vlash-success.png", "vlash-completion.png", "vlash-speedup.png"};
    static const char *title[3] = {"success, 95% Wilson interval",
                                   "completion time of successful episodes, 95% bootstrap interval",
                                   "completion-time speed-up over sync (paired episodes), 95% bootstrap "
                                   "interval; dashed: the ideal (K+delta)/K"};
    static const char *ylabel[3] = {"success (%)", "completion (s)", "speed-up vs sync"};
    char png[1100];
    bench_plot_path(v->dir, png_name[what], png, sizeof png);
    vlad_plot *p = v->nt ? new_plot(png, 420 * v->nt + 220, 470) : NULL;
    if (!p)
        return;
    int dmax = 0, nm = v->nm;
    for (int d = 0; d < v->nd; d++)
        dmax = v->deltas[d] > dmax ? v->deltas[d] : dmax;
    double off = 0.03 * (dmax > 0 ? dmax : 1);
    vlad_plot_printf(p, "set multiplot layout 1,%d title 'vlad-bench vlash, lockstep, K = %d: %s'\n"
                        "set xlabel 'delta (ticks)'\nset xrange [%g:%g]\nset xtics (",
                     v->nt, v->K, title[what], -4 * off, dmax + 4 * off);
    for (int d = 0; d < v->nd; d++)
        vlad_plot_printf(p, "%s%d", d ? ", " : "", v->deltas[d]);
    const char *yr = what == 0 ? "set yrange [0:105]" : what == 1 ? "set yrange [0:*]" : "set yrange [*:*]";
    vlad_plot_printf(p, ")\nset ylabel '%s'\nset bmargin 5\n"
                        "set key at screen 0.5, 0.035 center horizontal\n",
                     ylabel[what]);
    for (int t = 0; t < v->nt; t++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", t);
        vlad_plot_data(p, name);
        bool any = false;
        int eps = 0;
        for (int d = 0; d < v->nd; d++) {
            double row[1 + 3 * MAX_MODES];
            row[0] = v->deltas[d];
            for (int m = 0; m < nm; m++) {
                const cell *c = &v->cells[(t * v->nd + d) * nm + m];
                double y = NAN, lo = NAN, hi = NAN;
                if (c->s && what == 0)
                    y = 100 * c->s->success, lo = 100 * c->wlo, hi = 100 * c->whi;
                else if (c->s && what == 1)
                    y = c->comp, lo = c->comp_lo, hi = c->comp_hi;
                else if (c->s)
                    y = c->sp, lo = c->sp_lo, hi = c->sp_hi;
                if (c->s)
                    eps = c->s->episodes;
                row[1 + 3 * m] = y, row[2 + 3 * m] = lo, row[3 + 3 * m] = hi;
                any = any || isfinite(y);
            }
            vlad_plot_row(p, row, 1 + 3 * nm);
        }
        vlad_plot_end_data(p);
        vlad_plot_printf(p, "set title '%s, %d episodes per point'\n", v->tasks[t], eps);
        if (!any) { /* gnuplot refuses a plot without a point: say why the panel is empty */
            vlad_plot_printf(p, "set yrange [0:1]\nset label 1 '%s' at graph 0.5, 0.5 center\n"
                                "plot 1/0 notitle\nunset label 1\n",
                             what ? "no successful episode" : "no results");
            continue;
        }
        vlad_plot_printf(p, "%s\nplot ", yr);
        for (int m = 0; m < nm; m++) {
            double dx = (m - (nm - 1) / 2.0) * off;
            int mi = v->modes[m];
            vlad_plot_printf(p, "%s$%s using ($1+%g):%d with linespoints lw 2 pt 7 lc rgb '%s' "
                                "title '%s', $%s using ($1+%g):%d:%d:%d with yerrorbars pt 7 lc rgb "
                                "'%s' notitle",
                             m ? ", " : "", name, dx, 2 + 3 * m, k_mode_rgb[mi], k_all_modes[mi], name,
                             dx, 2 + 3 * m, 3 + 3 * m, 4 + 3 * m, k_mode_rgb[mi]);
        }
        if (what == 2)
            vlad_plot_printf(p, ", (%d + x) / %d.0 with lines dt 2 lw 1 lc rgb '#000000' title 'ideal'",
                             v->K, v->K);
        vlad_plot_printf(p, "\n");
    }
    vlad_plot_printf(p, "unset multiplot\n");
    static const char *what_s[3] = {"success vs delta per mode, Wilson 95% intervals",
                                    "completion time vs delta per mode, bootstrap 95% intervals",
                                    "paired completion-time speed-up vs delta per mode and the ideal"};
    bench_plot_done(who, p, png, what_s[what]);
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
        for (int m = 0; m < v->nm; m++)
            ok = ok && !v->grid[dp * v->nm + m].rc;
        if (ok)
            plot_trajectory(v, dp, ptask);
        plot_latency(v, dp);
        for (int w = 0; w < 3; w++)
            plot_vs_delta(v, w);
    } else if (v->wall) {
        plot_latency(v, 0);
    }
}

/* --modes: a comma-separated subset of k_all_modes into out[] (indices, table order, no
 * repeats); sync must be among them (every speed-up is relative to it). */
static int parse_modes(const char *list, int *out, int *n, vlad_err *err) {
    bool want[MAX_MODES] = {false};
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int m = -1;
        for (int i = 0; i < MAX_MODES; i++)
            if (len == strlen(k_all_modes[i]) && !strncmp(p, k_all_modes[i], len))
                m = i;
        if (m < 0)
            return vlad_err_set(err, VLAD_EINVAL, "--modes: '%.*s': expected sync, naive, vlash or "
                                "merge", (int)len, p);
        want[m] = true;
        p += len;
        if (*p == ',')
            p++;
    }
    if (!want[0])
        return vlad_err_set(err, VLAD_EINVAL, "--modes: '%s': sync must be listed (every speed-up is "
                            "relative to it)", list);
    *n = 0;
    for (int i = 0; i < MAX_MODES; i++)
        if (want[i])
            out[(*n)++] = i;
    return VLAD_OK;
}

/* Whether the daemon takes async.mode merge: `vlad --check --profile P --set async.mode=merge`. */
static bool daemon_accepts_merge(const char *profile) {
    char *argv[] = {(char *)vlad_proc_bin("vlad"), "--check", "--profile", (char *)profile, "--set",
                    "async.mode=merge", NULL};
    pid_t pid = vlad_proc_start(argv, "/dev/null");
    if (pid < 0)
        return false;
    int st = vlad_proc_wait(pid, 20000);
    if (st < 0)
        vlad_proc_kill(pid);
    return st == 0;
}

/* ---- seed sets ----
 * Episode e of task k in a run with run seed S has the layout seed vlad_sim_episode_seed(S, k, e)
 * (sim/run.c). dev: S = --seed (< BENCH_HELDOUT_BASE; the README's figures use 1). held-out:
 * S = BENCH_HELDOUT_BASE + --seed. The check enumerates the episode seeds of the training data
 * (bench_training_runs: training/make_default_model.sh) and, for held-out, a dev sample (run
 * seeds 0..63 x 1000 episodes and run seed 1 x 100000, every task) and counts the run's episode
 * seeds found among them. */
typedef struct seed_check {
    long long n_train, n_dev; /* reference episode seeds enumerated */
    int shared_train, shared_dev;
} seed_check;

static int check_seeds(unsigned run_seed, const vlad_task_kind *kinds, int nk, int episodes,
                       bool vs_dev, seed_check *out) {
    memset(out, 0, sizeof *out);
    long long cap = 0;
    for (int r = 0; r < bench_n_training_runs; r++)
        cap += (long long)bench_training_runs[r].episodes *
               (bench_training_runs[r].task < 0 ? VLAD_TASK_COUNT : 1);
    long long n_train = cap, dev_lo = 1000, dev_hi = 100000;
    if (vs_dev)
        cap += 64LL * VLAD_TASK_COUNT * dev_lo + (long long)VLAD_TASK_COUNT * (dev_hi - dev_lo);
    uint64_t *ref = malloc((size_t)cap * sizeof *ref), *mine = malloc((size_t)nk * episodes * sizeof *mine);
    if (!ref || !mine) {
        free(ref);
        free(mine);
        return VLAD_ENOMEM;
    }
    long long n = 0;
    for (int r = 0; r < bench_n_training_runs; r++) {
        const bench_seed_run *t = &bench_training_runs[r];
        for (int k = 0; k < VLAD_TASK_COUNT; k++)
            for (int e = 0; (t->task < 0 || t->task == k) && e < t->episodes; e++)
                ref[n++] = vlad_sim_episode_seed(t->seed, (vlad_task_kind)k, e);
    }
    for (int i = 0; i < nk; i++)
        for (int e = 0; e < episodes; e++)
            mine[i * episodes + e] = vlad_sim_episode_seed(run_seed, kinds[i], e);
    int m = nk * episodes;
    out->n_train = n_train;
    uint64_t *tr = malloc((size_t)n_train * sizeof *tr);
    if (tr) { /* the training set alone, for its own count */
        memcpy(tr, ref, (size_t)n_train * sizeof *tr);
        out->shared_train = bench_count_common(tr, (int)n_train, mine, m);
        free(tr);
    }
    if (vs_dev) {
        long long d0 = n;
        for (unsigned sd = 0; sd < 64; sd++)
            for (int k = 0; k < VLAD_TASK_COUNT; k++)
                for (int e = 0; e < dev_lo; e++)
                    ref[n++] = vlad_sim_episode_seed(sd, (vlad_task_kind)k, e);
        for (int k = 0; k < VLAD_TASK_COUNT; k++)
            for (int e = (int)dev_lo; e < dev_hi; e++)
                ref[n++] = vlad_sim_episode_seed(1, (vlad_task_kind)k, e);
        out->n_dev = n - d0;
        out->shared_dev = bench_count_common(ref + d0, (int)(n - d0), mine, m);
    }
    free(ref);
    free(mine);
    return VLAD_OK;
}

static void add_num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, isfinite(v) ? v : -1); }

/* The compact mark of the table's last column and the JSON's "disjoint" entries: where this
 * cell's interval lies wholly on the better side of another mode's at the same task and Δ. */
static void disjoint_marks(const cell *row, int nm, const int *modes, int m, const char *task,
                           int delta, char *buf, size_t cap, cJSON *list, FILE *notes) {
    const cell *c = &row[m];
    size_t len = 0;
    buf[0] = 0;
    for (int o = 0; o < nm && c->s; o++) {
        const cell *x = &row[o];
        if (o == m || !x->s)
            continue;
        const char *om = k_all_modes[modes[o]], *mm = k_all_modes[modes[m]];
        /* enough values behind both intervals (sync's speed-up is exactly 1: its pairs) */
        const int N = BENCH_MIN_CLAIM_N;
        bool n_ok[3] = {c->s->episodes >= N && x->s->episodes >= N, c->n_done >= N && x->n_done >= N,
                        c->pairs >= N && x->pairs >= N};
        struct {
            const char *metric, *interval, *word;
            int better;
        } cmp[3] = {
            {"success", "wilson95", "success", bench_interval_order(c->wlo, c->whi, x->wlo, x->whi)},
            {"completion_s", "bootstrap95", "time",
             -bench_interval_order(c->comp_lo, c->comp_hi, x->comp_lo, x->comp_hi)},
            {"completion_speedup_vs_sync", "bootstrap95", "speed-up",
             bench_interval_order(c->sp_lo, c->sp_hi, x->sp_lo, x->sp_hi)},
        };
        for (int i = 0; i < 3; i++)
            cmp[i].better = n_ok[i] ? cmp[i].better : 0;
        for (int i = 0; i < 3; i++) {
            if (cmp[i].better != 1)
                continue;
            const char *rel = i == 1 ? "<" : ">";
            len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s %s %s", len ? "; " : "",
                                    cmp[i].word, rel, om);
            if (len >= cap)
                len = cap - 1;
            fprintf(notes, "  %s, delta %d: %s %s %s on %s (%s intervals disjoint)\n", task, delta, mm,
                    i == 1 ? "faster than" : ">", om, cmp[i].metric, cmp[i].interval);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "task", task);
            cJSON_AddNumberToObject(e, "delta", delta);
            cJSON_AddStringToObject(e, "metric", cmp[i].metric);
            cJSON_AddStringToObject(e, "better", mm);
            cJSON_AddStringToObject(e, "worse", om);
            cJSON_AddStringToObject(e, "interval", cmp[i].interval);
            cJSON_AddItemToArray(list, e);
        }
    }
}

/* A value with its interval, "1.234 [1.100, 1.300]" (vf for the value, bf for the bounds);
 * "-" when the value is not finite, "[n/a]" when the interval is not (fewer than 2 values). */
static const char *fmt_ci(char *buf, size_t cap, const char *vf, const char *bf, double v, double lo,
                          double hi) {
    char fs[64];
    if (!isfinite(v))
        snprintf(buf, cap, "-");
    else if (!isfinite(lo) || !isfinite(hi))
        snprintf(fs, sizeof fs, "%s [n/a]", vf), snprintf(buf, cap, fs, v);
    else
        snprintf(fs, sizeof fs, "%s [%s, %s]", vf, bf, bf), snprintf(buf, cap, fs, v, lo, hi);
    return buf;
}

int bench_vlash_main(int argc, char **argv) {
    const char *model = "models/vlad-default.safetensors", *profile = "configs/sim-arm.yaml";
    char default_work[256];
    const char *tasks = "reach,track,whack", *work = bench_default_work(default_work, sizeof default_work, "vlash"), *json = NULL;
    const char *plot_arg = ".", *modes_arg = NULL;
    int episodes = 50, K = 10, jobs = 2, no_wall = 0, wall_eps = 20, wall_K = 25, only_wall = 0;
    int held_out = 0, seeds_only = 0, B = 2000, threshold = 0, max_delay = -1;
    double noise = 1.0, merge_weight = -1;
    uint64_t seed64 = 1;
    bench_int_list dl = {.v = {0, 1, 2, 4, 8}, .n = 5, .lo = 0, .hi = 64};
    bench_choice seed_set = {.allowed = "dev|held-out", .value = "dev", .index = 0};
    const vlad_opt opts[] = {
        BENCH_STR("model", &model, "M", "checkpoint"),
        BENCH_STR("profile", &profile, "P", "base robot profile (robot, cameras, safety limits, "
                  "async.tracking_lag_ms, max_delay_ticks and merge_weight; the grid sets the scheduler)"),
        BENCH_INT("max-delay", &max_delay, "N", "async.max_delay_ticks of every run, the planning-delay "
                  "limit (0: the checkpoint's trained Δmax, else horizon - K; default: the profile's)",
                  0, 256),
        BENCH_INT("episodes", &episodes, "N", "episodes per cell (same seeds in every cell)", 1, 100000),
        BENCH_CALL("deltas", &dl, "D,D,...", "emulated inference delays in ticks, 0..64 (default "
                   "0,1,2,4,8)", bench_opt_int_list),
        BENCH_INT("K", &K, "K", "execution horizon (ticks) of the lockstep grid", 1, 1000),
        BENCH_STR("tasks", &tasks, "T,T", "vlad-sim tasks of the lockstep grid"),
        BENCH_STR("modes", &modes_arg, "M,M", "async modes of the lockstep grid, sync among them (default "
                  "sync,naive,vlash,merge; without merge when the daemon refuses async.mode merge)"),
        BENCH_U64("seed", &seed64, "S", "run seed (dev: below 1000000; held-out: 1000000 + S)", 0, 1e9),
        BENCH_CALL("seed-set", &seed_set, "dev|held-out", "episode seeds: dev (run seed S; the README's "
                   "figures) or held-out (run seed 1000000 + S, disjoint from training) (default dev)",
                   bench_opt_choice),
        BENCH_FLAG("held-out", &held_out, "the same as --seed-set held-out"),
        BENCH_FLAG("seeds-only", &seeds_only, "print the seed set and its disjointness check, run nothing"),
        BENCH_INT("threshold", &threshold, "T", "async.trigger_threshold of the grid's asynchronous "
                  "modes (0: trigger at Δ remaining, no overlap, so merge acts as naive)", 0, 1000),
        BENCH_INT("bootstrap", &B, "B", "bootstrap resamples per interval (fixed seed)", 100, 100000),
        BENCH_DBL("merge-weight", &merge_weight, "W", "merge: async.merge_weight (default: the profile's)",
                  0, 1),
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
    vlad_err perr;
    int modes[MAX_MODES], nm = 0;
    if (modes_arg && parse_modes(modes_arg, modes, &nm, &perr)) {
        fprintf(stderr, "%s: %s\n", who, perr.msg);
        return 2;
    }
    vlad_task_kind kinds[BENCH_MAX_TASKS];
    char tnames[BENCH_MAX_TASKS][16];
    int nt = split_tasks(tasks, tnames, BENCH_MAX_TASKS);
    if (!nt) {
        fprintf(stderr, "%s: --tasks: '%s': no task\n", who, tasks);
        return 2;
    }
    for (int t = 0; t < nt; t++)
        if (vlad_task_parse(tnames[t], &kinds[t])) {
            fprintf(stderr, "%s: --tasks: '%s' is not a task (reach, track, whack, push)\n", who, tnames[t]);
            return 2;
        }
    held_out = held_out || seed_set.index == 1;
    if (!held_out && seed64 >= BENCH_HELDOUT_BASE) {
        fprintf(stderr, "%s: --seed: %llu: run seeds from %u on are the held-out set (--seed-set held-out "
                "--seed %llu)\n", who, (unsigned long long)seed64, BENCH_HELDOUT_BASE,
                (unsigned long long)(seed64 - BENCH_HELDOUT_BASE));
        return 2;
    }
    const unsigned seed = (unsigned)(held_out ? BENCH_HELDOUT_BASE + seed64 : seed64);
    const char *set_name = held_out ? "held-out" : "dev";
    seed_check sc;
    int eps_checked = only_wall ? wall_eps : episodes;
    if (only_wall)
        nt = 1, kinds[0] = VLAD_TASK_WHACK; /* the wall-clock runs: whack */
    if (check_seeds(seed, kinds, nt, eps_checked, held_out, &sc)) {
        fprintf(stderr, "%s: out of memory\n", who);
        return 1;
    }
    char seedline[600];
    snprintf(seedline, sizeof seedline,
             "seed set %s: run seed %u%s; episode e of task k has the layout seed "
             "vlad_sim_episode_seed(%u, k, e), e < %d; shared with the %lld training episodes "
             "(training/make_default_model.sh): %d%s",
             set_name, seed, held_out ? " (1000000 + --seed)" : "", seed, eps_checked, sc.n_train,
             sc.shared_train, "");
    if (held_out)
        snprintf(seedline + strlen(seedline), sizeof seedline - strlen(seedline),
                 "; with %lld dev episodes (run seeds 0..63 x 1000, run seed 1 x 100000, every task): %d",
                 sc.n_dev, sc.shared_dev);
    if (sc.shared_train || sc.shared_dev)
        fprintf(stderr, "%s: WARNING: %s\n", who, seedline);
    if (seeds_only) {
        printf("%s\n", seedline);
        for (int t = 0; t < nt; t++)
            printf("  %s: episode 0 %016llx ... episode %d %016llx\n", vlad_task_name(kinds[t]),
                   (unsigned long long)vlad_sim_episode_seed(seed, kinds[t], 0), eps_checked - 1,
                   (unsigned long long)vlad_sim_episode_seed(seed, kinds[t], eps_checked - 1));
        return (sc.shared_train || sc.shared_dev) ? 1 : 0;
    }
    const int wall = !no_wall, lockstep = !only_wall, nd = dl.n;
    const int *deltas = dl.v;
    static vlad_profile p;
    if (bench_setup("vlad-bench vlash", profile, &p))
        return 2;
    if (max_delay >= 0)
        p.async.max_delay_ticks = max_delay;
    if (merge_weight >= 0)
        p.async.merge_weight = merge_weight;
    bool merge_ok = daemon_accepts_merge(profile);
    if (!modes_arg) {
        static const int def[MAX_MODES] = {0, 1, 2, 3};
        nm = merge_ok ? 4 : 3;
        memcpy(modes, def, sizeof def);
        if (!merge_ok)
            fprintf(stderr, "%s: the daemon refuses async.mode merge: modes sync,naive,vlash\n", who);
    } else if (!merge_ok && modes[nm - 1] == 3) {
        fprintf(stderr, "%s: --modes %s: the daemon refuses async.mode merge (vlad --check --profile %s "
                "--set async.mode=merge)\n", who, modes_arg, profile);
        return 2;
    }
    char mode_list[64] = "";
    for (int m = 0; m < nm; m++)
        snprintf(mode_list + strlen(mode_list), sizeof mode_list - strlen(mode_list), "%s%s", m ? "," : "",
                 k_all_modes[modes[m]]);
    double tick_ms = 1000.0 / p.control_hz;
    int64_t t0 = vlad_now_ns();

    /* ---- lockstep grid ---- */
    int nj = lockstep ? nd * nm : 0;
    job *grid = calloc((size_t)nj + 2, sizeof *grid);
    if (!grid)
        return 1;
    for (int d = 0; lockstep && d < nd; d++)
        for (int m = 0; m < nm; m++) {
            job *j = &grid[d * nm + m];
            const char *mn = k_all_modes[modes[m]];
            j->run = (bench_run){.base = &p, .model = model, .mode = mn, .K = K,
                                 .threshold = modes[m] ? threshold : 0, .margin = 0,
                                 .min_latency_ms = deltas[d] * tick_ms,
                                 .threads = 1, .tasks = tasks, .episodes = episodes, .seed = seed,
                                 .trajectory = true, .noise_scale = noise,
                                 .stats = &j->ds};
            snprintf(j->dir, sizeof j->dir, "%s/lockstep-d%d-%s", work, deltas[d], mn);
        }
    fprintf(stderr, "vlad-bench vlash: %d lockstep runs (%s x %d episodes, modes %s, seed set %s), %d at a "
            "time\n", nj, tasks, episodes, mode_list, set_name, jobs);
    run_pool(grid, nj, jobs);

    /* ---- wall clock: real engine latency, 0.5 s execution horizon ---- */
    /* sync and VLASH with the daemon's defaults (phase lock, early start), and VLASH with
     * both off (ticks on their own phase, inferences started at ticks): what the lock buys */
    enum { W_SYNC, W_VLASH, W_FREE, W_N };
    static const char *const wname[W_N] = {"sync", "vlash", "vlash-free"};
    job wj[W_N];
    memset(wj, 0, sizeof wj);
    if (wall) {
        for (int m = 0; m < W_N; m++) {
            job *j = &wj[m];
            int vl = m != W_SYNC;
            j->run = (bench_run){.base = &p, .model = model, .mode = vl ? "vlash" : "sync",
                                 .K = wall_K, .threshold = vl ? wall_K : 0, .margin = 0,
                                 .wall = true, .realtime = true, .threads = 1, .tasks = "whack",
                                 .episodes = wall_eps, .seed = seed, .noise_scale = noise,
                                 .free_phase = m == W_FREE, .stats = &j->ds};
            snprintf(j->dir, sizeof j->dir, "%s/wall-%s", work, wname[m]);
        }
        fprintf(stderr, "vlad-bench vlash: wall-clock reaction runs (whack, K=%d = %.2f s)\n", wall_K,
                wall_K * tick_ms / 1000);
        run_pool(wj, W_N, 1); /* one at a time: real time must not share the CPU */
    }

    /* ---- the cells' statistics ---- */
    int failures = 0;
    for (int i = 0; i < nj; i++)
        if (grid[i].rc) {
            fprintf(stderr, "vlad-bench vlash: %s: %s\n", grid[i].dir, grid[i].err);
            failures++;
        }
    int ntl = lockstep ? nt : 0;
    cell *cells = calloc((size_t)(ntl * nd * nm) + 1, sizeof *cells);
    bool *ok_s = malloc((size_t)episodes * sizeof *ok_s), *ok_m = malloc((size_t)episodes * sizeof *ok_m);
    double *t_s = malloc((size_t)episodes * sizeof *t_s), *t_m = malloc((size_t)episodes * sizeof *t_m);
    double *done = malloc((size_t)episodes * sizeof *done);
    if (!cells || !ok_s || !ok_m || !t_s || !t_m || !done) {
        fprintf(stderr, "%s: out of memory\n", who);
        return 1;
    }
    for (int t = 0; t < ntl; t++)
        for (int d = 0; d < nd; d++) {
            int ns = 0; /* sync's episodes (modes[0] is sync) */
            vlad_err err;
            if (bench_episode_outcomes(grid[d * nm].dir, tnames[t], ok_s, t_s, episodes, &ns, &err))
                ns = 0;
            for (int m = 0; m < nm; m++) {
                cell *c = &cells[(t * nd + d) * nm + m];
                const job *j = &grid[d * nm + m];
                *c = (cell){.s = find(j, tnames[t]), .wlo = NAN, .whi = NAN, .comp = NAN, .comp_lo = NAN,
                            .comp_hi = NAN, .sp = NAN, .sp_lo = NAN, .sp_hi = NAN,
                            .ideal = (double)(K + deltas[d]) / K, .rate_sp = NAN};
                const bench_task_stats *sy = find(&grid[d * nm], tnames[t]);
                if (!c->s)
                    continue;
                bench_wilson(c->s->successes, c->s->episodes, &c->wlo, &c->whi);
                /* execution rate: the share of ticks that executed a fresh policy action; its
                 * ratio to sync is a proxy of the completion-time speed-up (defined whether or
                 * not episodes succeed; blind to what the actions achieve) */
                if (sy)
                    c->rate_sp = ratio(1.0 - c->s->stall_ticks / c->s->ticks, 1.0 - sy->stall_ticks / sy->ticks);
                int n = 0;
                if (bench_episode_outcomes(j->dir, tnames[t], ok_m, t_m, episodes, &n, &err))
                    continue;
                for (int i = 0; i < n; i++)
                    if (ok_m[i] && isfinite(t_m[i]))
                        done[c->n_done++] = t_m[i];
                c->comp = bench_mean(done, c->n_done);
                bench_boot_mean(done, c->n_done, B, BENCH_BOOT_SEED, &c->comp_lo, &c->comp_hi);
                if (sy && ns && m == 0) /* sync against itself: exactly 1 */
                    c->pairs = c->n_done, c->sp = c->sp_lo = c->sp_hi = c->n_done ? 1 : NAN;
                else if (sy && ns)
                    bench_paired_speedup(ok_s, t_s, ok_m, t_m, n < ns ? n : ns, B, BENCH_BOOT_SEED,
                                         &c->sp, &c->sp_lo, &c->sp_hi, &c->pairs);
            }
        }
    free(ok_s);
    free(ok_m);
    free(t_s);
    free(t_m);
    free(done);

    /* ---- report ---- */
    printf("\nvlad-bench vlash: model %s, K=%d (%.0f ms), trigger threshold %d, %d episodes per cell, "
           "modes %s, lockstep; %.0f s\n%s\n", model, K, K * tick_ms, threshold, episodes, mode_list,
           (double)(vlad_now_ns() - t0) / 1e9, seedline);
    if (lockstep) {
        printf("success: Wilson 95%%; completion: mean of the successful episodes, percentile bootstrap "
               "95%% (%d resamples, fixed seed); speed-up: completion time of sync / this mode at the same "
               "delta, over the episodes both succeeded (paired), bootstrap 95%%; ideal (K+delta)/K; "
               "execution-rate speed-up: a proxy (ticks that ran a policy action, not time to finish)\n", B);
        printf("\n| task  | Δ | mode  | success [Wilson 95%%] | completion s [bootstrap 95%%] (n) "
               "| completion speed-up vs sync, paired [95%%] (pairs) | ideal | of ideal [95%%] "
               "| proxy: execution-rate speed-up | reaction ticks mean/max | vs sync | discontinuity rad "
               "| sq jerk | stalls/ep | intervals disjoint (this mode better) |\n");
        printf("|-------|--:|-------|--------------------:|-----------------------------:"
               "|------------------------------------------------:|------:|--------------:"
               "|------------------------------:|------------------------:|--------:|------------------:"
               "|--------:|----------:|---|\n");
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "K", K);
    cJSON_AddNumberToObject(root, "trigger_threshold", threshold);
    cJSON_AddNumberToObject(root, "episodes", episodes);
    cJSON_AddNumberToObject(root, "seed", seed);
    cJSON *ss = cJSON_AddObjectToObject(root, "seed_set");
    cJSON_AddStringToObject(ss, "name", set_name);
    cJSON_AddNumberToObject(ss, "run_seed", seed);
    cJSON_AddNumberToObject(ss, "held_out_base", BENCH_HELDOUT_BASE);
    cJSON_AddStringToObject(ss, "episode_seed", "vlad_sim_episode_seed(run_seed, task, episode)");
    cJSON_AddNumberToObject(ss, "training_episode_seeds_checked", (double)sc.n_train);
    cJSON_AddNumberToObject(ss, "shared_with_training", sc.shared_train);
    if (held_out) {
        cJSON_AddNumberToObject(ss, "dev_episode_seeds_checked", (double)sc.n_dev);
        cJSON_AddNumberToObject(ss, "shared_with_dev", sc.shared_dev);
    }
    cJSON *eseeds = cJSON_AddObjectToObject(ss, "episode_seeds");
    for (int t = 0; t < nt; t++) {
        cJSON *arr = cJSON_AddArrayToObject(eseeds, vlad_task_name(kinds[t]));
        for (int e = 0; e < eps_checked; e++) {
            char hx[24];
            snprintf(hx, sizeof hx, "%016llx", (unsigned long long)vlad_sim_episode_seed(seed, kinds[t], e));
            cJSON_AddItemToArray(arr, cJSON_CreateString(hx));
        }
    }
    cJSON *jm = cJSON_AddArrayToObject(root, "modes");
    for (int m = 0; m < nm; m++)
        cJSON_AddItemToArray(jm, cJSON_CreateString(k_all_modes[modes[m]]));
    cJSON_AddNumberToObject(root, "merge_weight", p.async.merge_weight); /* the value in force */
    cJSON_AddNumberToObject(root, "control_hz", p.control_hz);
    cJSON_AddNumberToObject(root, "noise_scale", noise);
    cJSON *bj = cJSON_AddObjectToObject(root, "bootstrap");
    cJSON_AddStringToObject(bj, "method", "percentile, 95%, resampling episodes with replacement");
    cJSON_AddNumberToObject(bj, "resamples", B);
    cJSON_AddNumberToObject(bj, "seed", (double)BENCH_BOOT_SEED);
    cJSON_AddStringToObject(bj, "table", "the table's completion and speed-up intervals are these; "
                            "completion_ci95_s (Student t) is kept beside them");
    cJSON_AddNumberToObject(bj, "min_n_for_disjoint", BENCH_MIN_CLAIM_N);
    cJSON *defs = cJSON_AddObjectToObject(root, "definitions");
    cJSON_AddStringToObject(defs, "completion_speedup_vs_sync",
                            "mean completion_s of sync / mean completion_s of this mode at the same task "
                            "and delta, over the episodes (same seeds) where both succeeded; the table's "
                            "speed-up; comparable with ideal_speedup = (K + delta) / K");
    cJSON_AddStringToObject(defs, "execution_rate_speedup_vs_sync",
                            "a proxy: (1 - stall ticks / ticks) of this mode / that of sync; counts ticks "
                            "that ran a policy action, not time to finish the task");
    cJSON_AddStringToObject(defs, "speedup_vs_sync_unpaired",
                            "mean completion_s of sync's successful episodes / this mode's (each over its "
                            "own successes)");
    cJSON_AddStringToObject(defs, "completion_ci95_s",
                            "half-width of the Student-t 95% interval of completion_s (the table shows the "
                            "bootstrap interval)");
    cJSON *cells_j = cJSON_AddArrayToObject(root, "lockstep");
    cJSON *disj = cJSON_AddArrayToObject(root, "disjoint");
    char *notes_buf = NULL;
    size_t notes_len = 0;
    FILE *notes = open_memstream(&notes_buf, &notes_len);
    if (!notes) {
        fprintf(stderr, "%s: out of memory\n", who);
        return 1;
    }
    for (int t = 0; t < ntl; t++) {
        const char *task = tnames[t];
        for (int d = 0; d < nd; d++) {
            const cell *row = &cells[(t * nd + d) * nm];
            for (int m = 0; m < nm; m++) {
                const cell *c = &row[m];
                const bench_task_stats *s = c->s, *sy = row[0].s;
                if (!s)
                    continue;
                double rr = sy ? ratio(sy->react_mean_ticks, s->react_mean_ticks) : NAN;
                double unp = sy ? ratio(sy->completion_s, s->completion_s) : NAN;
                char b1[64], b2[64], b3[64], b4[64], marks[400];
                snprintf(b1, sizeof b1, "%3.0f%% [%3.0f, %3.0f]", 100 * s->success, 100 * c->wlo, 100 * c->whi);
                fmt_ci(b2, sizeof b2, "%.3f", "%.3f", c->comp, c->comp_lo, c->comp_hi);
                fmt_ci(b3, sizeof b3, "%.2fx", "%.2f", c->sp, c->sp_lo, c->sp_hi);
                fmt_ci(b4, sizeof b4, "%.0f%%", "%.0f", 100 * c->sp / c->ideal, 100 * c->sp_lo / c->ideal,
                       100 * c->sp_hi / c->ideal);
                disjoint_marks(row, nm, modes, m, task, deltas[d], marks, sizeof marks, disj, notes);
                char b5[48] = "-", b6[16] = "-"; /* no world change (reach): no reaction */
                if (isfinite(s->react_mean_ticks))
                    snprintf(b5, sizeof b5, "%.1f / %.0f", s->react_mean_ticks, s->react_max_ticks);
                if (isfinite(rr))
                    snprintf(b6, sizeof b6, "%.1fx", rr);
                printf("| %-5s | %d | %-5s | %20s | %22s (%3d) | %37s (%3d) | %4.2fx | %14s "
                       "| %7.2fx = %4.0f%% of ideal | %23s | %7s | %17.4f | %7.3g | %9.2f | %s |\n",
                       task, deltas[d], k_all_modes[modes[m]], b1, b2, c->n_done, b3, c->pairs, c->ideal,
                       b4, c->rate_sp, 100 * c->rate_sp / c->ideal, b5, b6, s->disc_mean, s->jerk,
                       s->stall_ticks, marks[0] ? marks : "-");
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "task", task);
                cJSON_AddNumberToObject(o, "delta", deltas[d]);
                cJSON_AddStringToObject(o, "mode", k_all_modes[modes[m]]);
                cJSON_AddNumberToObject(o, "episodes", s->episodes);
                cJSON_AddNumberToObject(o, "successes", s->successes);
                cJSON_AddNumberToObject(o, "success", s->success);
                cJSON_AddNumberToObject(o, "success_wilson95_lo", c->wlo);
                cJSON_AddNumberToObject(o, "success_wilson95_hi", c->whi);
                add_num(o, "completion_s", s->completion_s);
                cJSON_AddNumberToObject(o, "completion_n", c->n_done);
                add_num(o, "completion_boot95_lo_s", c->comp_lo);
                add_num(o, "completion_boot95_hi_s", c->comp_hi);
                add_num(o, "completion_sd_s", s->completion_sd);
                add_num(o, "completion_ci95_s", s->completion_ci95);
                add_num(o, "completion_speedup_vs_sync", c->sp);
                add_num(o, "completion_speedup_boot95_lo", c->sp_lo);
                add_num(o, "completion_speedup_boot95_hi", c->sp_hi);
                cJSON_AddNumberToObject(o, "completion_speedup_pairs", c->pairs);
                cJSON_AddNumberToObject(o, "ideal_speedup", c->ideal);
                add_num(o, "fraction_of_ideal", c->sp / c->ideal);
                add_num(o, "fraction_of_ideal_boot95_lo", c->sp_lo / c->ideal);
                add_num(o, "fraction_of_ideal_boot95_hi", c->sp_hi / c->ideal);
                add_num(o, "speedup_vs_sync_unpaired", unp);
                add_num(o, "execution_rate_speedup_vs_sync", c->rate_sp);
                add_num(o, "execution_rate_fraction_of_ideal", c->rate_sp / c->ideal);
                cJSON_AddNumberToObject(o, "episode_ticks", s->ticks);
                add_num(o, "reaction_mean_ticks", s->react_mean_ticks);
                add_num(o, "reaction_max_ticks", s->react_max_ticks);
                add_num(o, "reaction_mean_ms", s->react_mean_ticks * tick_ms);
                add_num(o, "reaction_ratio_vs_sync", rr);
                add_num(o, "discontinuity_mean", s->disc_mean);
                add_num(o, "discontinuity_max", s->disc_max);
                cJSON_AddNumberToObject(o, "mean_sq_jerk", s->jerk);
                cJSON_AddNumberToObject(o, "stall_ticks_per_episode", s->stall_ticks);
                cJSON_AddNumberToObject(o, "daemon_faults", s->daemon_faults);
                { /* the daemon's delay limit: per run (every task of this Δ and mode) */
                    const job *gj = &grid[d * nm + m];
                    int eps = 0;
                    for (int i = 0; i < gj->n; i++)
                        eps += gj->st[i].episodes;
                    if (gj->ds.ok) {
                        cJSON_AddNumberToObject(o, "daemon_max_delay_ticks", gj->ds.max_delay_ticks);
                        add_num(o, "delay_limited_ticks_per_episode",
                                eps ? (double)gj->ds.delay_limited_ticks / eps : NAN);
                    }
                }
                cJSON_AddItemToArray(cells_j, o);
            }
        }
    }
    fclose(notes);
    if (ntl)
        printf("\ndifferences outside both 95%% intervals (Wilson for success, bootstrap for time and "
               "speed-up):\n%s", notes_len ? notes_buf : "  none\n");
    free(notes_buf);
    /* per lockstep cell: a cell is only the run its seed names if the daemon answered every
     * command and tick in time (vlad-sim holds and goes on otherwise); and beyond the trained
     * delays the daemon plans with its limit (async.max_delay_ticks, by default the
     * checkpoint's training Δmax) and counts the ticks it did */
    for (int d = 0; lockstep && d < nd; d++)
        for (int m = 0; m < nm; m++) {
            const job *gj = &grid[d * nm + m];
            int eps = 0;
            for (int i = 0; i < gj->n; i++) {
                eps += gj->st[i].episodes;
                if (gj->st[i].daemon_faults)
                    printf("WARNING: %s at Δ = %d, %s: %d episode commands or ticks went "
                           "unanswered within the lockstep timeout (a loaded machine): not the "
                           "deterministic result\n",
                           gj->st[i].task, deltas[d], k_all_modes[modes[m]], gj->st[i].daemon_faults);
            }
            if (gj->ds.ok && gj->ds.delay_limited_ticks && eps)
                printf("delay limit %d ticks: at Δ = %d, %s planned %.1f ticks per episode at the "
                       "limit (DELAY_LIMIT)\n",
                       gj->ds.max_delay_ticks, deltas[d], k_all_modes[modes[m]],
                       (double)gj->ds.delay_limited_ticks / eps);
        }
    if (wall) {
        const bench_task_stats *w[W_N];
        for (int m = 0; m < W_N; m++)
            w[m] = find(&wj[m], "whack");
        static const char *const wlabel[W_N] = {
            "sync", "vlash (re-plan when idle)", "vlash, phase lock and early start off"};
        printf("\nwall clock, whack, real engine latency, execution horizon %d ticks (%.0f ms); "
               "end to end = observation sent to the reacting Action received (vlad-sim); ticks = "
               "the tick it executes at minus the change's:\n",
               wall_K, wall_K * tick_ms);
        printf("| mode | success | reaction end to end ms mean | max | reaction ticks x %.0f ms mean | max | "
               "inference p50 ms | stalls/ep | overruns |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
               tick_ms);
        cJSON *wo = cJSON_AddObjectToObject(root, "wall");
        cJSON_AddNumberToObject(wo, "K", wall_K);
        for (int m = 0; m < W_N; m++) {
            const bench_task_stats *s = w[m];
            if (!s) {
                fprintf(stderr, "vlad-bench vlash: %s: %s\n", wj[m].dir, wj[m].err);
                failures++;
                continue;
            }
            double p50 = wj[m].ds.ok ? wj[m].ds.infer_p50_us / 1000 : NAN;
            printf("| %s | %.0f%% | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %llu |\n", wlabel[m],
                   100 * s->success, s->e2e_mean_ms, s->e2e_max_ms, s->react_mean_ticks * tick_ms,
                   s->react_max_ticks * tick_ms, p50, s->stall_ticks, wj[m].ds.overruns);
            cJSON *o = cJSON_AddObjectToObject(wo, wname[m]);
            add_num(o, "success", s->success);
            add_num(o, "reaction_e2e_mean_ms", s->e2e_mean_ms);
            add_num(o, "reaction_e2e_max_ms", s->e2e_max_ms);
            add_num(o, "reaction_mean_ms", s->react_mean_ticks * tick_ms);
            add_num(o, "reaction_max_ms", s->react_max_ticks * tick_ms);
            add_num(o, "inference_p50_ms", p50);
            add_num(o, "stall_ticks", s->stall_ticks);
            cJSON_AddNumberToObject(o, "overruns", (double)wj[m].ds.overruns);
        }
        if (w[W_SYNC] && w[W_VLASH]) {
            const bench_task_stats *ws = w[W_SYNC], *wv = w[W_VLASH];
            double em = ratio(ws->e2e_mean_ms, wv->e2e_mean_ms), ex = ratio(ws->e2e_max_ms, wv->e2e_max_ms);
            double rm = ratio(ws->react_mean_ticks, wv->react_mean_ticks);
            double rx = ratio(ws->react_max_ticks, wv->react_max_ticks);
            /* the paper's definition (VLASH): max reaction = execution horizon + inference
             * for sync, the inference alone for async, from the measured inference p50 */
            double inf = wj[W_VLASH].ds.ok ? wj[W_VLASH].ds.infer_p50_us / 1000 : NAN;
            double ps = wall_K * tick_ms + inf, pr = ratio(ps, inf);
            printf("reaction, sync / vlash: end to end mean %.1fx, max %.1fx; in executed ticks mean %.1fx, "
                   "max %.1fx; the paper's definition (K x tick + inference vs inference, p50 %.2f ms) "
                   "%.1f vs %.2f ms = %.0fx\n",
                   em, ex, rm, rx, inf, ps, inf, pr);
            if (w[W_FREE])
                printf("vlash with the phase lock and early start off: end to end mean %.1f ms, max %.1f "
                       "ms (with them: %.1f, %.1f)\n",
                       w[W_FREE]->e2e_mean_ms, w[W_FREE]->e2e_max_ms, wv->e2e_mean_ms, wv->e2e_max_ms);
            add_num(wo, "ratio_e2e_mean", em);
            add_num(wo, "ratio_e2e_max", ex);
            add_num(wo, "ratio_mean", rm);
            add_num(wo, "ratio_max", rx);
            add_num(wo, "paper_sync_ms", ps);
            add_num(wo, "paper_async_ms", inf);
            add_num(wo, "paper_ratio", pr);
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
        vplot v = {.dir = dirbuf, .traj_png = trajbuf, .grid = lockstep ? grid : NULL, .cells = cells,
                   .nd = nd, .K = K, .nm = nm, .modes = modes, .deltas = deltas, .hz = p.control_hz,
                   .wall = wall ? wj : NULL, .wall_K = wall_K};
        v.nt = split_tasks(tasks, v.tasks, BENCH_MAX_TASKS);
        printf("\n");
        write_pictures(&v);
    }
    if (json)
        bench_write_json(json, root);
    else
        cJSON_Delete(root);
    free(grid);
    free(cells);
    return failures ? 1 : 0;
}
