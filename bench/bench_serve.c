/* vlad-bench serve — one vlad-serve on loopback shared by N simulated robots.
 *
 * Each robot is a vlad daemon (VLASH scheduling, its model on vlad-serve: policy.remote.*)
 * driving its own vlad-sim, with its own generated profile, ipc:// endpoints and episode seeds
 * (run seed S + robot index). For every clock (lockstep, wall), N (--robots) and emulated
 * network round trip (--rtt, with --jitter; policy.remote.emulate_rtt_ms: half before each
 * send, half after the reply, inside the latency the daemon measures) one cell runs the N
 * robots at once against ONE server (--max-batch B, its requests batched) and reports:
 *   per robot: the chunk latency p50 / p99 of the daemon's Status inference histogram
 *     (submission to result, the round trip included), the delay Δ the daemon estimated (mean
 *     of a sample per chunk), stall ticks; pooled over robots: task success with its Wilson
 *     95% interval;
 *   the server (its STATUS counters, sampled while the robots run): chunk requests per second
 *     over the active window, the mean batch, the bytes per request, decode time;
 *   the reference: the same episodes (same seeds) on a LOCAL engine in lockstep with the same
 *     delay (policy.min_latency_ms): in a lockstep cell the emulated delay is the RTT itself
 *     and the remote run must be exact -- every robot's trajectory byte-identical to the local
 *     one's with raw images (JPEG: the chunk differs a little, the success is compared); in a
 *     wall-clock cell the local run plans with the Δ the remote daemons estimated.
 * Wall clock is where the robots contend for the server (and, here, for the CPUs); lockstep
 * shows the protocol is exact. The batching gain: the same N-robot wall-clock load (at the
 * first --rtt) against one server with --max-batch 1 (one request at a time) and against N
 * independent servers, side by side with the shared one in the same run.
 *
 *   vlad-bench serve [--robots 1,2,4,8] [--rtt 0,20,50] [--jitter MS] [--episodes N]
 *                    [--tasks reach,track] [--modes lockstep,wall] [--images raw|jpeg]
 *                    [--jpeg-quality Q] [--max-batch B] [--batch-wait-us US] [--K K]
 *                    [--threshold T] [--seed S]
 *                    [--no-baselines] [--quick] [--resume] [--work DIR] [--json FILE]
 * --quick: N = 1, 2, RTT 0 and 20 ms, one reach episode per robot (a few minutes on two
 * cores). --resume: a cell whose result (DIR/CELL/cell.json) is in --work already is read, not
 * run again, so an interrupted run goes on where it stopped. Every process of a cell runs at
 * once: 8 daemons, 8 simulators and a server share this machine's cores, so the wall-clock
 * figures are those of the machine it ran on (the JSON records its CPU count and load). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "closedloop.h"
#include "clock.h"
#include "proc.h"
#include "serve/client.h"

#define MAX_ROBOTS 8
#define MAX_EPS 4096 /* episode outcomes per robot and task read back */

static const char *who = "vlad-bench serve";

enum { SRV_SHARED = 0, SRV_MB1 = 1, SRV_INDEP = 2, SRV_LOCAL = 3 };
static const char *k_srv_name[4] = {"shared", "max_batch_1", "independent", "local"};
static const char *k_srv_label[4] = {"one, batched", "one, max-batch 1", "N servers", "local engine"};

/* What every cell shares. */
typedef struct setup {
    const vlad_profile *base;
    const char *model, *tasks, *work;
    char model_abs[PATH_MAX];
    int episodes, K, threshold, margin, max_batch, batch_wait_us, jpeg_quality;
    bool jpeg, resume;
    double jitter;
    unsigned seed;
    char tnames[BENCH_MAX_TASKS][16];
    int nt;
} setup;

/* One robot of a cell (a daemon + vlad-sim pair). */
typedef struct robot {
    bench_run run;
    char dir[PATH_MAX];
    bench_task_stats st[BENCH_MAX_TASKS];
    int n;
    bench_daemon_stats ds;
    int rc;
    char err[VLAD_ERR_MSG_MAX];
    _Atomic int *done;
} robot;

static void *robot_main(void *arg) {
    robot *r = arg;
    vlad_err err;
    vlad_err_clear(&err);
    r->rc = bench_closed_loop(&r->run, r->dir, r->st, &r->n, &err);
    snprintf(r->err, sizeof r->err, "%s", r->rc ? err.msg : "");
    if (r->done)
        atomic_fetch_add(r->done, 1);
    return NULL;
}

/* ---- the servers ------------------------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    char ep[PATH_MAX + 8], log[PATH_MAX];
    vlad_serve_client *c;
} server;

/* The counters of a status reply that a cell reports. */
typedef struct snap {
    bool ok;
    double chunks, batches, request_bytes, jpeg_images, busy, late;
    double decode_p50_us, queue_p50_us, total_p50_us, total_p99_us;
} snap;

static snap snap_of(server *s, int timeout_ms) {
    snap x = {0};
    vlad_serve_client_set_timeout(s->c, timeout_ms);
    vlad_serve_reply r;
    vlad_err e;
    if (vlad_serve_client_status(s->c, &r, &e) || !r.status)
        return x;
    const Vlad__Serve__ServeStatus *st = r.status;
    x.ok = true;
    x.chunks = (double)st->chunks;
    x.batches = (double)st->batches;
    x.request_bytes = (double)st->request_bytes;
    x.jpeg_images = (double)st->jpeg_images;
    x.busy = (double)st->busy;
    x.late = (double)st->late;
    x.decode_p50_us = st->decode ? st->decode->p50_us : NAN;
    x.queue_p50_us = st->queue ? st->queue->p50_us : NAN;
    x.total_p50_us = st->total ? st->total->p50_us : NAN;
    x.total_p99_us = st->total ? st->total->p99_us : NAN;
    return x;
}

static int server_start(const setup *S, server *s, const char *dir, int idx, int max_batch,
                        int wait_us, vlad_err *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->ep, sizeof s->ep, "ipc://%s/serve%d", dir, idx);
    snprintf(s->log, sizeof s->log, "%s/serve%d.log", dir, idx);
    char mb[16], bw[16];
    snprintf(mb, sizeof mb, "%d", max_batch);
    snprintf(bw, sizeof bw, "%d", wait_us);
    char *argv[] = {(char *)vlad_proc_bin("vlad-serve"), "--bind", s->ep, "--model",
                    (char *)S->model_abs, "--max-batch", mb, "--batch-wait-us", bw, "--threads",
                    "1", "--log-level", "warn", NULL};
    s->pid = vlad_proc_start(argv, s->log);
    if (s->pid <= 0)
        return vlad_err_set(err, VLAD_EIO, "cannot start %s", argv[0]);
    const char *eps[1] = {s->ep};
    vlad_serve_client_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 1000,
                                .attempts = 1, .robot = "vlad-bench serve"};
    s->c = vlad_serve_client_new(&o, err);
    if (!s->c)
        return err ? err->code : VLAD_EIO;
    for (int i = 0; i < 120; i++) { /* it loads the model first */
        if (snap_of(s, 1000).ok)
            return VLAD_OK;
        if (vlad_proc_wait(s->pid, 0) >= 0) {
            s->pid = -1;
            return vlad_err_set(err, VLAD_EIO, "vlad-serve exited at start (see %s)", s->log);
        }
    }
    return vlad_err_set(err, VLAD_ETIMEOUT, "vlad-serve on %s never answered (see %s)", s->ep,
                        s->log);
}

static void server_stop(server *s) {
    vlad_serve_client_free(s->c);
    s->c = NULL;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (vlad_proc_wait(s->pid, 20000) < 0)
            vlad_proc_kill(s->pid);
        s->pid = -1;
    }
}

/* ---- cells ------------------------------------------------------------------------------- */

typedef struct cell {
    bool lockstep;
    int robots, server;    /* SRV_* */
    double rtt;            /* emulated round trip (remote cells) */
    double min_latency_ms; /* lockstep's emulated delay (remote: = rtt; local: the reference's) */
    unsigned seed;         /* local: this robot's run seed */
    char name[96], dir[512];
    cJSON *res;            /* the result (owned) */
    int rc;
    char err[VLAD_ERR_MSG_MAX];
} cell;

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static double median(double *v, int n) {
    if (n <= 0)
        return NAN;
    for (int i = 1; i < n; i++) /* insertion sort: n <= 8 */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cell_path(const cell *c, char *buf, size_t cap) { snprintf(buf, cap, "%s/cell.json", c->dir); }

/* --resume: the result a finished run left (NULL: none). */
static cJSON *cell_load(const cell *c) {
    char path[PATH_MAX + 16];
    cell_path(c, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *txt = NULL;
    size_t cap = 0, len = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            char *nt = realloc(txt, cap);
            if (!nt) {
                free(txt);
                fclose(f);
                return NULL;
            }
            txt = nt;
        }
        memcpy(txt + len, chunk, got);
        len += got;
    }
    fclose(f);
    if (!txt)
        return NULL;
    txt[len] = 0;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (j && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete"))) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static void cell_save(const cell *c) {
    char path[PATH_MAX + 16];
    cell_path(c, path, sizeof path);
    bench_write_json(path, cJSON_Duplicate(c->res, true));
}

/* The robots' episodes, in task order, as 0/1 (success) into arr; counts into *k, *n. */
static void outcomes(const setup *S, const char *dir, cJSON *arr, int *k, int *n) {
    static bool ok[MAX_EPS];
    static double comp[MAX_EPS];
    for (int t = 0; t < S->nt; t++) {
        int m = 0;
        vlad_err e;
        if (bench_episode_outcomes(dir, S->tnames[t], ok, comp, MAX_EPS, &m, &e))
            m = 0;
        for (int i = 0; i < S->episodes; i++) { /* a missing episode is a failure */
            bool s = i < m && ok[i];
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(s));
            *k += s;
            (*n)++;
        }
    }
}

static bool same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = false;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void base_run(const setup *S, bench_run *r, bool lockstep, unsigned seed, double min_lat,
                     bench_daemon_stats *ds) {
    *r = (bench_run){.base = S->base, .mode = "vlash", .K = S->K, .threshold = S->threshold,
                     .margin = S->margin, .min_latency_ms = min_lat, .wall = !lockstep,
                     .threads = 1, .noise_scale = 1.0, .tasks = S->tasks,
                     .episodes = S->episodes, .seed = seed, .trajectory = lockstep, .stats = ds};
}

/* Run one local-engine robot (a reference): lockstep, policy.min_latency_ms. */
static int run_local(const setup *S, cell *c) {
    robot *r = calloc(1, sizeof *r);
    if (!r)
        return vlad_err_set(NULL, VLAD_ENOMEM, "out of memory");
    base_run(S, &r->run, true, c->seed, c->min_latency_ms, &r->ds);
    r->run.model = S->model_abs;
    snprintf(r->dir, sizeof r->dir, "%s", c->dir);
    int64_t t0 = vlad_now_ns();
    robot_main(r);
    double secs = (double)(vlad_now_ns() - t0) / 1e9;
    c->rc = r->rc;
    snprintf(c->err, sizeof c->err, "%s", r->err);
    if (!r->rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "local");
        cJSON_AddNumberToObject(o, "seed", c->seed);
        cJSON_AddNumberToObject(o, "min_latency_ms", c->min_latency_ms);
        int k = 0, n = 0;
        cJSON *arr = cJSON_CreateArray();
        outcomes(S, c->dir, arr, &k, &n);
        cJSON_AddItemToObject(o, "episode_success", arr);
        cJSON_AddNumberToObject(o, "successes", k);
        cJSON_AddNumberToObject(o, "episodes", n);
        add_num(o, "delay_ticks_mean", isfinite(r->ds.delay_mean_ticks) ? r->ds.delay_mean_ticks
                                                                         : r->ds.delay_ticks);
        add_num(o, "seconds", secs);
        cJSON_AddBoolToObject(o, "complete", true);
        c->res = o;
        cell_save(c);
    }
    fprintf(stderr, "  %-44s %5.0f s %s\n", c->name, secs, c->rc ? c->err : "");
    free(r);
    return c->rc;
}

/* Run a remote cell: its server(s) from this (the main) thread, its robots on threads. */
static int run_remote(const setup *S, cell *c) {
    vlad_err err;
    vlad_err_clear(&err);
    int rc = bench_mkdirs(c->dir, &err);
    if (rc) {
        snprintf(c->err, sizeof c->err, "%s", err.msg);
        return c->rc = rc;
    }
    int N = c->robots, ns = c->server == SRV_INDEP ? N : 1;
    server srv[MAX_ROBOTS];
    robot *rb = calloc((size_t)N, sizeof *rb);
    pthread_t th[MAX_ROBOTS];
    int started = 0, nsrv = 0;
    _Atomic int done = 0;
    snap s0[MAX_ROBOTS], s1[MAX_ROBOTS];
    int64_t t0 = vlad_now_ns();
    double load[3] = {NAN, NAN, NAN};
    getloadavg(load, 3); /* what else this machine was doing */
    if (!rb) {
        rc = vlad_err_set(&err, VLAD_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < ns; i++) {
        bool one = c->server == SRV_MB1;
        rc = server_start(S, &srv[i], c->dir, i, one ? 1 : S->max_batch, one ? 0 : S->batch_wait_us,
                          &err);
        nsrv = i + 1;
        if (rc)
            goto out;
        s0[i] = snap_of(&srv[i], 2000);
    }
    for (int i = 0; i < N; i++) {
        robot *r = &rb[i];
        base_run(S, &r->run, c->lockstep, S->seed + (unsigned)i, c->lockstep ? c->rtt : 0, &r->ds);
        r->run.remote = (bench_remote){.endpoints = srv[c->server == SRV_INDEP ? i : 0].ep,
                                       .jpeg = S->jpeg, .jpeg_quality = S->jpeg_quality,
                                       .rtt_ms = c->rtt, .jitter_ms = c->rtt > 0 ? S->jitter : 0,
                                       .timeout_ms = c->lockstep ? 30000 : 2000};
        snprintf(r->dir, sizeof r->dir, "%s/r%d", c->dir, i);
        r->done = &done;
    }
    int64_t t_robots0 = vlad_now_ns();
    /* the daemons and simulators are started by each robot's thread, which waits for them (the
     * children's death signal follows their starting thread: proc.h) */
    for (; started < N; started++)
        if (pthread_create(&th[started], NULL, robot_main, &rb[started])) {
            rc = vlad_err_set(&err, VLAD_EIO, "cannot start a robot thread");
            break;
        }
    /* the servers' counters while the robots run: the active window is from the first chunk
     * served to the last */
    double c_first = NAN, c_last = NAN, prev = 0;
    int64_t t_first = 0, t_last = 0;
    while (atomic_load(&done) < started) {
        double sum = 0;
        bool all = true;
        for (int i = 0; i < nsrv; i++) {
            snap x = snap_of(&srv[i], 1000);
            all = all && x.ok;
            sum += x.chunks - s0[i].chunks;
        }
        int64_t now = vlad_now_ns();
        if (all && sum > prev) { /* the first sample with chunks, the last with new ones */
            if (isnan(c_first))
                c_first = sum, t_first = now;
            c_last = sum, t_last = now;
            prev = sum;
        }
        struct timespec ts = {0, 250 * 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    int64_t t_robots = vlad_now_ns() - t_robots0;
    for (int i = 0; i < nsrv; i++)
        s1[i] = snap_of(&srv[i], 2000);
    double secs = (double)(vlad_now_ns() - t0) / 1e9;
    if (rc)
        goto out;
    for (int i = 0; i < N; i++)
        if (rb[i].rc) {
            rc = vlad_err_set(&err, rb[i].rc, "robot %d: %s", i, rb[i].err);
            goto out;
        }

    /* the result */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "remote");
    cJSON_AddStringToObject(o, "clock", c->lockstep ? "lockstep" : "wall");
    cJSON_AddNumberToObject(o, "robots", N);
    cJSON_AddNumberToObject(o, "rtt_ms", c->rtt);
    cJSON_AddNumberToObject(o, "jitter_ms", c->rtt > 0 ? S->jitter : 0);
    cJSON_AddStringToObject(o, "server", k_srv_name[c->server]);
    cJSON_AddNumberToObject(o, "servers", ns);
    cJSON_AddNumberToObject(o, "max_batch", c->server == SRV_MB1 ? 1 : S->max_batch);
    cJSON_AddNumberToObject(o, "batch_wait_us", c->server == SRV_MB1 ? 0 : S->batch_wait_us);
    cJSON_AddStringToObject(o, "images", S->jpeg ? "jpeg" : "raw");
    cJSON_AddNumberToObject(o, "min_latency_ms", c->lockstep ? c->rtt : 0);
    cJSON *pr = cJSON_AddArrayToObject(o, "per_robot");
    double p50[MAX_ROBOTS], p99max = 0, dsum = 0, stalls = 0, bytes = 0, enc = 0;
    unsigned long long timeouts = 0, errors = 0, overruns = 0;
    int k = 0, n = 0;
    for (int i = 0; i < N; i++) {
        const robot *r = &rb[i];
        const bench_daemon_stats *d = &r->ds;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "seed", r->run.seed);
        int ki = 0, ni = 0;
        cJSON *arr = cJSON_CreateArray();
        outcomes(S, r->dir, arr, &ki, &ni);
        cJSON_AddItemToObject(x, "episode_success", arr);
        cJSON_AddNumberToObject(x, "successes", ki);
        cJSON_AddNumberToObject(x, "episodes", ni);
        k += ki, n += ni;
        double dm = isfinite(d->delay_mean_ticks) ? d->delay_mean_ticks : d->delay_ticks;
        add_num(x, "chunk_latency_p50_ms", d->infer_p50_us / 1e3);
        add_num(x, "chunk_latency_p99_ms", d->infer_p99_us / 1e3);
        add_num(x, "delay_ticks_mean", dm);
        cJSON_AddNumberToObject(x, "stall_ticks", (double)d->stall_ticks);
        cJSON_AddNumberToObject(x, "chunks", (double)d->chunks);
        cJSON_AddNumberToObject(x, "request_bytes", (double)d->remote_request_bytes);
        add_num(x, "encode_us", d->remote_encode_us);
        cJSON_AddNumberToObject(x, "remote_timeouts", (double)d->remote_timeouts);
        cJSON_AddNumberToObject(x, "remote_errors", (double)d->remote_errors);
        cJSON_AddNumberToObject(x, "overruns", (double)d->overruns);
        if (c->lockstep) {
            char a[PATH_MAX + 32];
            bench_trajectory_path(r->dir, a, sizeof a);
            cJSON_AddStringToObject(x, "trajectory", a);
        }
        cJSON_AddItemToArray(pr, x);
        p50[i] = d->infer_p50_us / 1e3;
        p99max = fmax(p99max, d->infer_p99_us / 1e3);
        dsum += dm;
        stalls += (double)d->stall_ticks;
        bytes += (double)d->remote_request_bytes;
        enc += d->remote_encode_us;
        timeouts += d->remote_timeouts, errors += d->remote_errors, overruns += d->overruns;
    }
    double lo, hi;
    bench_wilson(k, n, &lo, &hi);
    cJSON_AddNumberToObject(o, "successes", k);
    cJSON_AddNumberToObject(o, "episodes", n);
    cJSON_AddNumberToObject(o, "success", n ? (double)k / n : 0);
    cJSON_AddNumberToObject(o, "success_wilson95_lo", lo);
    cJSON_AddNumberToObject(o, "success_wilson95_hi", hi);
    add_num(o, "chunk_latency_p50_ms", median(p50, N));
    add_num(o, "chunk_latency_p99_ms", p99max);
    add_num(o, "delay_ticks_mean", dsum / N);
    add_num(o, "stall_ticks_per_episode", n ? stalls / n : NAN);
    cJSON_AddNumberToObject(o, "remote_timeouts", (double)timeouts);
    cJSON_AddNumberToObject(o, "remote_errors", (double)errors);
    cJSON_AddNumberToObject(o, "overruns", (double)overruns);
    add_num(o, "request_bytes", bytes / N);
    add_num(o, "encode_us", enc / N);
    double chunks = 0, batches = 0, rbytes = 0, busy = 0, late = 0, dec = 0, q50 = 0;
    int nd = 0;
    for (int i = 0; i < nsrv; i++) {
        chunks += s1[i].chunks - s0[i].chunks;
        batches += s1[i].batches - s0[i].batches;
        rbytes += s1[i].request_bytes - s0[i].request_bytes;
        busy += s1[i].busy - s0[i].busy;
        late += s1[i].late - s0[i].late;
        if (isfinite(s1[i].decode_p50_us) && s1[i].jpeg_images > 0)
            dec += s1[i].decode_p50_us, nd++;
        q50 += s1[i].queue_p50_us / nsrv;
    }
    cJSON *sj = cJSON_AddObjectToObject(o, "server_status");
    cJSON_AddNumberToObject(sj, "chunks", chunks);
    cJSON_AddNumberToObject(sj, "batches", batches);
    add_num(sj, "mean_batch", batches > 0 ? chunks / batches : NAN);
    /* a run too short for two samples with chunks: over the robots' whole time instead */
    bool window = t_last - t_first > VLAD_NS_PER_S;
    add_num(sj, "requests_per_s", window ? (c_last - c_first) / ((double)(t_last - t_first) / 1e9)
                                         : chunks / ((double)t_robots / 1e9));
    cJSON_AddStringToObject(sj, "requests_per_s_over", window ? "active window" : "whole run");
    add_num(sj, "request_bytes", chunks > 0 ? rbytes / chunks : NAN);
    add_num(sj, "decode_p50_us", nd ? dec / nd : NAN);
    add_num(sj, "queue_p50_us", q50);
    cJSON_AddNumberToObject(sj, "busy", busy);
    cJSON_AddNumberToObject(sj, "late", late);
    add_num(o, "seconds", secs);
    add_num(o, "loadavg_1m_at_start", load[0]);
    cJSON_AddBoolToObject(o, "complete", true);
    c->res = o;
    cell_save(c);
out:
    for (int i = 0; i < nsrv; i++)
        server_stop(&srv[i]);
    free(rb);
    c->rc = rc;
    snprintf(c->err, sizeof c->err, "%s", rc ? err.msg : "");
    fprintf(stderr, "  %-44s %5.0f s %s\n", c->name, (double)(vlad_now_ns() - t0) / 1e9,
            rc ? c->err : "");
    return rc;
}

static int run_cell(const setup *S, cell *c) {
    if (S->resume && (c->res = cell_load(c))) {
        fprintf(stderr, "  %-44s (from %s/cell.json)\n", c->name, c->dir);
        return VLAD_OK;
    }
    vlad_err err;
    if (bench_mkdirs(c->dir, &err)) {
        snprintf(c->err, sizeof c->err, "%s", err.msg);
        return c->rc = VLAD_EIO;
    }
    return c->server == SRV_LOCAL ? run_local(S, c) : run_remote(S, c);
}

/* The local references: 2 at a time (lockstep, no contention to speak of). */
typedef struct lpool {
    const setup *S;
    cell *cells;
    int n;
    _Atomic int next;
} lpool;

static void *lpool_main(void *arg) {
    lpool *p = arg;
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            return NULL;
        run_cell(p->S, &p->cells[i]);
    }
}

/* ---- the report --------------------------------------------------------------------------- */

static cell *find_local(cell *l, int nl, unsigned seed, double ms) {
    for (int i = 0; i < nl; i++)
        if (l[i].seed == seed && fabs(l[i].min_latency_ms - ms) < 1e-9)
            return &l[i];
    return NULL;
}

/* The emulated delay of the local reference of remote cell c: lockstep, its own (the RTT);
 * wall clock, the Δ its daemons estimated (rounded), less the margin the estimate includes. */
static double ref_delay_ms(const setup *S, const cell *c) {
    if (c->lockstep)
        return c->rtt;
    double d = jnum(c->res, "delay_ticks_mean");
    if (!isfinite(d))
        return NAN;
    long t = lround(d) - S->margin;
    return (t > 0 ? (double)t : 0.0) * 1000.0 / S->base->control_hz;
}

static void fmt_ms(char *b, size_t cap, double v, const char *f) {
    if (isfinite(v))
        snprintf(b, cap, f, v);
    else
        snprintf(b, cap, "-");
}

static bool parse_modes(const char *s, bool *ls, bool *wall) {
    *ls = *wall = false;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 8 && !strncmp(p, "lockstep", 8))
            *ls = true;
        else if (n == 4 && !strncmp(p, "wall", 4))
            *wall = true;
        else if (n)
            return false;
        p += n;
        if (*p == ',')
            p++;
    }
    return *ls || *wall;
}

int bench_serve_main(int argc, char **argv) {
    const char *model = "models/vlad-default.safetensors", *profile = "configs/sim-arm.yaml";
    char default_work[256];
    const char *tasks = "reach,track", *work = bench_default_work(default_work, sizeof default_work, "serve"), *json = NULL;
    const char *modes = "lockstep,wall";
    int episodes = 3, K = 10, threshold = 5, max_batch = 8, quality = 90, quick = 0, resume = 0;
    int batch_wait = 0;
    int no_base = 0;
    double jitter = 5;
    uint64_t seed64 = 1;
    bench_int_list robots = {.v = {1, 2, 4, 8}, .n = 4, .lo = 1, .hi = MAX_ROBOTS};
    bench_int_list rtts = {.v = {0, 20, 50}, .n = 3, .lo = 0, .hi = 1000};
    bench_choice images = {.allowed = "raw|jpeg", .value = "raw", .index = 0};
    const vlad_opt opts[] = {
        BENCH_STR("model", &model, "M", "checkpoint vlad-serve loads (and the local references)"),
        BENCH_STR("profile", &profile, "P", "base robot profile (joints, camera, control_hz)"),
        BENCH_CALL("robots", &robots, "N,N,...", "robots sharing one server, 1..8 (default 1,2,4,8)",
                   bench_opt_int_list),
        BENCH_CALL("rtt", &rtts, "MS,MS,...", "emulated network round trips, 0..1000 ms (default "
                   "0,20,50)", bench_opt_int_list),
        BENCH_DBL("jitter", &jitter, "MS", "uniform jitter (+-) of each emulated round trip when "
                  "the RTT is not 0", 0, 1000),
        BENCH_INT("episodes", &episodes, "N", "episodes per task per robot", 1, 1000),
        BENCH_STR("tasks", &tasks, "T,T", "vlad-sim tasks"),
        BENCH_STR("modes", &modes, "M,M", "clocks: lockstep (exact), wall (contention)"),
        BENCH_CALL("images", &images, "raw|jpeg", "policy.remote.images (default raw)",
                   bench_opt_choice),
        BENCH_INT("jpeg-quality", &quality, "Q", "policy.remote.jpeg_quality", 1, 100),
        BENCH_INT("max-batch", &max_batch, "B", "the shared server's --max-batch", 1, 256),
        BENCH_INT("batch-wait-us", &batch_wait, "US", "the shared and the N servers' "
                  "--batch-wait-us (the max-batch-1 one waits for nothing)", 0, 1000000),
        BENCH_INT("K", &K, "K", "async.execution_horizon", 1, 1000),
        BENCH_INT("threshold", &threshold, "T", "async.trigger_threshold", 0, 1000),
        BENCH_U64("seed", &seed64, "S", "run seed of robot 0 (robot i: S + i)", 0, 1e9),
        BENCH_FLAG("no-baselines", &no_base, "skip the max-batch-1 and N-server runs and the local "
                   "references"),
        BENCH_FLAG("quick", &quick, "N = 1, 2; RTT 0, 20; one reach episode per robot"),
        BENCH_FLAG("resume", &resume, "read the cells already finished in --work instead of "
                   "running them again"),
        BENCH_STR("work", &work, "DIR", "folder for the runs (ipc sockets: keep it short)"),
        BENCH_STR("json", &json, "FILE", "write the results as JSON"),
        BENCH_OPT_END,
    };
    int status;
    if (!bench_opts(who, "vlad-bench serve [options]", opts, argc, argv, &status))
        return status;
    bool do_ls, do_wall;
    if (!parse_modes(modes, &do_ls, &do_wall)) {
        fprintf(stderr, "%s: --modes: '%s': expected lockstep, wall or both\n", who, modes);
        return 2;
    }
    if (quick) {
        robots.n = 2, robots.v[0] = 1, robots.v[1] = 2;
        rtts.n = 2, rtts.v[0] = 0, rtts.v[1] = 20;
        episodes = 1;
        tasks = "reach";
    }
    vlad_profile p;
    if (bench_setup(who, profile, &p))
        return 1;
    setup S = {.base = &p, .model = model, .tasks = tasks, .work = work, .episodes = episodes,
               .K = K, .threshold = threshold, .margin = 1, .max_batch = max_batch,
               .batch_wait_us = batch_wait,
               .jpeg_quality = quality, .jpeg = images.index == 1, .resume = resume,
               .jitter = jitter, .seed = (unsigned)seed64};
    if (!realpath(model, S.model_abs)) {
        fprintf(stderr, "%s: --model %s: %s\n", who, model, strerror(errno));
        return 1;
    }
    for (const char *q = tasks; *q && S.nt < BENCH_MAX_TASKS;) {
        size_t len = strcspn(q, ",");
        if (len)
            snprintf(S.tnames[S.nt++], sizeof S.tnames[0], "%.*s", (int)(len < 15 ? len : 15), q);
        q += len;
        if (*q == ',')
            q++;
    }
    vlad_err err;
    if (bench_mkdirs(work, &err)) {
        fprintf(stderr, "%s: %s\n", who, err.msg);
        return 1;
    }
    double load0[3] = {NAN, NAN, NAN};
    getloadavg(load0, 3);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    /* the remote cells */
    enum { MAXC = 2 * BENCH_LIST_MAX * BENCH_LIST_MAX * 3 };
    static cell cells[MAXC];
    int nc = 0;
    for (int m = 0; m < 2; m++) {
        bool ls = m == 0;
        if ((ls && !do_ls) || (!ls && !do_wall))
            continue;
        for (int ni = 0; ni < robots.n; ni++)
            for (int ri = 0; ri < rtts.n; ri++)
                for (int sv = SRV_SHARED; sv <= SRV_INDEP; sv++) {
                    int N = robots.v[ni];
                    if (sv != SRV_SHARED && (ls || ri != 0 || N < 2 || no_base))
                        continue; /* the batching gain: wall clock, the first RTT, N >= 2 */
                    cell *c = &cells[nc++];
                    c->lockstep = ls;
                    c->robots = N;
                    c->rtt = rtts.v[ri];
                    c->server = sv;
                    snprintf(c->name, sizeof c->name, "%s N=%d rtt=%g %s", ls ? "lockstep" : "wall",
                             N, c->rtt, k_srv_name[sv]);
                    snprintf(c->dir, sizeof c->dir, "%s/%s-n%d-rtt%d-%s", work, ls ? "ls" : "wall",
                             N, rtts.v[ri], k_srv_name[sv]);
                }
    }
    fprintf(stderr, "%s: %d cells, %d robots at most (%ld CPUs, load %.2f)\n", who, nc,
            robots.v[robots.n - 1], cpus, load0[0]);
    int failed = 0;
    for (int i = 0; i < nc; i++)
        failed += run_cell(&S, &cells[i]) != VLAD_OK;

    /* the local references: one per robot seed and delay */
    enum { MAXL = 512 };
    static cell locals[MAXL];
    int nl = 0;
    for (int i = 0; i < nc && !no_base; i++) {
        cell *c = &cells[i];
        if (!c->res)
            continue;
        double ms = ref_delay_ms(&S, c);
        if (!isfinite(ms))
            continue;
        for (int r = 0; r < c->robots; r++) {
            unsigned sd = S.seed + (unsigned)r;
            if (find_local(locals, nl, sd, ms) || nl == MAXL)
                continue;
            cell *l = &locals[nl++];
            l->lockstep = true;
            l->robots = 1;
            l->server = SRV_LOCAL;
            l->seed = sd;
            l->min_latency_ms = ms;
            snprintf(l->name, sizeof l->name, "local seed=%u delay=%gms", sd, ms);
            snprintf(l->dir, sizeof l->dir, "%s/local-s%u-d%g", work, sd, ms);
        }
    }
    if (nl) {
        lpool lp = {.S = &S, .cells = locals, .n = nl};
        pthread_t t[2];
        int nt = nl < 2 ? nl : 2;
        for (int i = 0; i < nt; i++)
            pthread_create(&t[i], NULL, lpool_main, &lp);
        for (int i = 0; i < nt; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < nl; i++)
            failed += locals[i].rc != VLAD_OK;
    }

    /* compare and print */
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "bench", "serve");
    cJSON *mach = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddNumberToObject(mach, "cpus", (double)cpus);
    add_num(mach, "loadavg_1m_at_start", load0[0]);
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "control_hz", p.control_hz);
    cJSON_AddNumberToObject(root, "K", K);
    cJSON_AddNumberToObject(root, "trigger_threshold", threshold);
    cJSON_AddNumberToObject(root, "delay_margin", S.margin);
    cJSON_AddStringToObject(root, "tasks", tasks);
    cJSON_AddNumberToObject(root, "episodes_per_task_per_robot", episodes);
    cJSON_AddStringToObject(root, "images", S.jpeg ? "jpeg" : "raw");
    cJSON_AddNumberToObject(root, "jpeg_quality", quality);
    cJSON_AddNumberToObject(root, "jitter_ms", jitter);
    cJSON_AddNumberToObject(root, "max_batch", max_batch);
    cJSON_AddNumberToObject(root, "batch_wait_us", batch_wait);
    cJSON_AddNumberToObject(root, "seed", (double)seed64);
    cJSON_AddBoolToObject(root, "quick", quick);
    cJSON *defs = cJSON_AddObjectToObject(root, "definitions");
    cJSON_AddStringToObject(defs, "chunk_latency", "the daemon's Status inference histogram: "
                            "submission to result on its worker, the emulated round trip "
                            "included (p50: median over the robots; p99: the worst robot's)");
    cJSON_AddStringToObject(defs, "delay_ticks_mean", "the delay the daemon planned with "
                            "(Status delay_ticks, async.delay_margin included), sampled once per "
                            "chunk, mean over the robots");
    cJSON_AddStringToObject(defs, "requests_per_s", "chunks the server(s) computed per second, "
                            "from the first chunk to the last the sampler saw while the robots ran");
    cJSON_AddStringToObject(defs, "local_reference", "the same episodes (robot i: run seed S + i) "
                            "on a local engine, lockstep, policy.min_latency_ms = the cell's RTT "
                            "(lockstep cells) or the Δ the daemons estimated less the margin "
                            "(wall-clock cells)");
    cJSON_AddStringToObject(defs, "exact", "lockstep: each robot's trajectory CSV byte-identical "
                            "to its local reference's");
    cJSON *cj = cJSON_AddArrayToObject(root, "cells");
    cJSON *gain = cJSON_AddArrayToObject(root, "batching_gain");

    printf("\nvlad-bench serve: one vlad-serve shared by N robots (daemon + vlad-sim each), VLASH, "
           "K = %d, %g Hz, %s images, %d episode%s of %s per robot, server --max-batch %d "
           "--batch-wait-us %d, jitter ±%g ms on a non-zero RTT; %ld CPUs, load %.2f at start\n\n",
           K, p.control_hz, S.jpeg ? "jpeg" : "raw", episodes, episodes == 1 ? "" : "s", tasks,
           max_batch, batch_wait, jitter, cpus, load0[0]);
    printf("| clock | N | RTT ms | server | success [Wilson 95%%] | local engine, same Δ | exact "
           "| chunk p50 / p99 ms | Δ ticks | stalls / ep | req/s | mean batch | bytes / req |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nc; i++) {
        cell *c = &cells[i];
        if (!c->res) {
            printf("| %s | %d | %g | %s | failed: %.200s |||||||||\n", c->lockstep ? "lockstep" : "wall",
                   c->robots, c->rtt, k_srv_label[c->server], c->err);
            continue;
        }
        cJSON *o = cJSON_Duplicate(c->res, true);
        double ms = ref_delay_ms(&S, c);
        int lk = 0, ln = 0, same = 0, diff_eps = 0;
        bool have_ref = !no_base && isfinite(ms);
        cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "per_robot");
        for (int r = 0; r < c->robots && have_ref; r++) {
            cell *l = find_local(locals, nl, S.seed + (unsigned)r, ms);
            if (!l || !l->res) {
                have_ref = false;
                break;
            }
            lk += (int)jnum(l->res, "successes");
            ln += (int)jnum(l->res, "episodes");
            cJSON *x = cJSON_GetArrayItem(pr, r);
            const cJSON *ea = cJSON_GetObjectItemCaseSensitive(x, "episode_success");
            const cJSON *eb = cJSON_GetObjectItemCaseSensitive(l->res, "episode_success");
            for (int e = 0; e < cJSON_GetArraySize(ea) && e < cJSON_GetArraySize(eb); e++)
                diff_eps += cJSON_GetArrayItem(ea, e)->valuedouble != cJSON_GetArrayItem(eb, e)->valuedouble;
            if (c->lockstep) {
                char a[PATH_MAX], b[PATH_MAX];
                snprintf(a, sizeof a, "%s/r%d", c->dir, r);
                bench_trajectory_path(a, b, sizeof b);
                bench_trajectory_path(l->dir, a, sizeof a);
                bool eq = same_file(a, b);
                same += eq;
                cJSON_AddBoolToObject(x, "trajectory_identical_to_local", eq);
            }
        }
        char ex[32] = "-", ref[64] = "-";
        if (have_ref) {
            double lo, hi;
            bench_wilson(lk, ln, &lo, &hi);
            cJSON *rj = cJSON_AddObjectToObject(o, "local_reference");
            cJSON_AddNumberToObject(rj, "min_latency_ms", ms);
            cJSON_AddNumberToObject(rj, "successes", lk);
            cJSON_AddNumberToObject(rj, "episodes", ln);
            cJSON_AddNumberToObject(rj, "success", ln ? (double)lk / ln : 0);
            cJSON_AddNumberToObject(rj, "success_wilson95_lo", lo);
            cJSON_AddNumberToObject(rj, "success_wilson95_hi", hi);
            cJSON_AddNumberToObject(rj, "episodes_with_other_outcome", diff_eps);
            snprintf(ref, sizeof ref, "%3.0f%% [%3.0f, %3.0f] (%g ms)", ln ? 100.0 * lk / ln : 0,
                     100 * lo, 100 * hi, ms);
            if (c->lockstep) { /* JPEG: the model sees another picture, so not expected */
                cJSON_AddNumberToObject(o, "robots_exact", same);
                cJSON_AddBoolToObject(o, "exact", same == c->robots);
                if (same == c->robots)
                    snprintf(ex, sizeof ex, "yes");
                else
                    snprintf(ex, sizeof ex, "%s%d of %d", S.jpeg ? "jpeg: " : "NO: ", same, c->robots);
            }
        }
        const cJSON *sj = cJSON_GetObjectItemCaseSensitive(o, "server_status");
        char lat[48], dl[16], st[16], rq[16], mb[16], by[24];
        snprintf(lat, sizeof lat, "%.1f / %.1f", jnum(o, "chunk_latency_p50_ms"),
                 jnum(o, "chunk_latency_p99_ms"));
        fmt_ms(dl, sizeof dl, jnum(o, "delay_ticks_mean"), "%.1f");
        fmt_ms(st, sizeof st, jnum(o, "stall_ticks_per_episode"), "%.1f");
        fmt_ms(rq, sizeof rq, jnum(sj, "requests_per_s"), "%.1f");
        fmt_ms(mb, sizeof mb, jnum(sj, "mean_batch"), "%.2f");
        fmt_ms(by, sizeof by, jnum(o, "request_bytes"), "%.0f");
        printf("| %s | %d | %g | %s | %3.0f%% [%3.0f, %3.0f] (%d) | %s | %s | %s | %s | %s | %s "
               "| %s | %s |\n",
               c->lockstep ? "lockstep" : "wall", c->robots, c->rtt, k_srv_label[c->server], 100 * jnum(o, "success"), 100 * jnum(o, "success_wilson95_lo"),
               100 * jnum(o, "success_wilson95_hi"), (int)jnum(o, "episodes"), ref, ex, lat, dl, st,
               rq, mb, by);
        cJSON_AddItemToArray(cj, o);
    }
    /* the batching gain: shared vs max-batch 1 vs N servers, same N, wall clock */
    bool any_gain = false;
    for (int i = 0; i < nc; i++) {
        cell *c = &cells[i];
        if (c->server != SRV_SHARED || c->lockstep || !c->res)
            continue;
        cell *mb1 = NULL, *ind = NULL;
        for (int k2 = 0; k2 < nc; k2++)
            if (!cells[k2].lockstep && cells[k2].robots == c->robots && cells[k2].rtt == c->rtt &&
                cells[k2].res) {
                if (cells[k2].server == SRV_MB1)
                    mb1 = &cells[k2];
                if (cells[k2].server == SRV_INDEP)
                    ind = &cells[k2];
            }
        if (!mb1 && !ind)
            continue;
        if (!any_gain)
            printf("\nbatching gain (wall clock, the same load side by side; chunk latency p50 / "
                   "p99 ms, server chunks/s, mean batch, stalls per episode):\n");
        any_gain = true;
        cJSON *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "robots", c->robots);
        cJSON_AddNumberToObject(g, "rtt_ms", c->rtt);
        printf("  N = %d, RTT %g ms:", c->robots, c->rtt);
        cell *set[3] = {c, mb1, ind};
        for (int s = 0; s < 3; s++) {
            if (!set[s])
                continue;
            const cJSON *o = set[s]->res, *sj = cJSON_GetObjectItemCaseSensitive(o, "server_status");
            cJSON *x = cJSON_AddObjectToObject(g, k_srv_name[set[s]->server]);
            add_num(x, "chunk_latency_p50_ms", jnum(o, "chunk_latency_p50_ms"));
            add_num(x, "chunk_latency_p99_ms", jnum(o, "chunk_latency_p99_ms"));
            add_num(x, "requests_per_s", jnum(sj, "requests_per_s"));
            add_num(x, "mean_batch", jnum(sj, "mean_batch"));
            add_num(x, "stall_ticks_per_episode", jnum(o, "stall_ticks_per_episode"));
            add_num(x, "success", jnum(o, "success"));
            printf("  %s %.1f / %.1f, %.1f/s, batch %.2f, %.1f stalls%s", k_srv_label[set[s]->server],
                   jnum(o, "chunk_latency_p50_ms"), jnum(o, "chunk_latency_p99_ms"),
                   jnum(sj, "requests_per_s"), jnum(sj, "mean_batch"),
                   jnum(o, "stall_ticks_per_episode"), s < 2 && set[s + 1] ? ";" : "");
        }
        double a = jnum(c->res, "chunk_latency_p99_ms");
        if (mb1) {
            double b = jnum(mb1->res, "chunk_latency_p99_ms");
            add_num(g, "p99_latency_ratio_max_batch_1_over_shared", a > 0 ? b / a : NAN);
        }
        if (ind) {
            double b = jnum(ind->res, "chunk_latency_p99_ms");
            add_num(g, "p99_latency_ratio_independent_over_shared", a > 0 ? b / a : NAN);
        }
        printf("\n");
        cJSON_AddItemToArray(gain, g);
    }
    cJSON *lj = cJSON_AddArrayToObject(root, "local_references");
    for (int i = 0; i < nl; i++)
        if (locals[i].res)
            cJSON_AddItemToArray(lj, cJSON_Duplicate(locals[i].res, true));
    double load1[3] = {NAN, NAN, NAN};
    getloadavg(load1, 3);
    add_num(mach, "loadavg_1m_at_end", load1[0]);
    printf("\nΔ: the delay the daemons planned with (margin %d included); stalls: ticks without a "
           "policy action per episode; req/s: the server's chunks per second while the robots "
           "ran; local engine: the same episodes in lockstep at that delay; exact: lockstep "
           "trajectories byte-identical to the local ones. Load average %.2f at the end.\n",
           S.margin, load1[0]);
    if (json)
        bench_write_json(json, root);
    else
        cJSON_Delete(root);
    for (int i = 0; i < nc; i++)
        cJSON_Delete(cells[i].res);
    for (int i = 0; i < nl; i++)
        cJSON_Delete(locals[i].res);
    if (failed)
        fprintf(stderr, "%s: %d run%s failed (see the logs in %s)\n", who, failed,
                failed == 1 ? "" : "s", work);
    return failed ? 1 : 0;
}
