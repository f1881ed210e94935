/* run.c — the vlad-sim tick loop; see run.h. The wire is link.c, the reports report.c. */
#include "run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dataset.h"
#include "expert.h"
#include "link.h"
#include "media.h"
#include "safety.h"
#include "vlad.pb-c.h"
#include "world.h"

#define MAX_CHANGES 256

typedef struct runner {
    const vlad_sim_opts *o;
    const vlad_profile *p;
    int n;
    double hz;
    vlad_world *w;
    vlad_expert *ex;
    vlad_sim_link *link;   /* the daemon (NULL with the expert) */
    vlad_dataset *ds;
    vlad_video *vid;
    int64_t tick;
    uint8_t *img[VLAD_MAX_CAMERAS];
    int cam_period[VLAD_MAX_CAMERAS];
    bool render;
    int64_t episode_first_tick; /* tick of the current episode's first observation */
    FILE *traj;            /* --trajectory */
    uint64_t last_chunk;   /* chunk of the last applied action (discontinuity) */
    double last_cmd[VLAD_MAX_JOINTS];
    double applied[VLAD_MAX_JOINTS];
    double noise[VLAD_MAX_JOINTS];    /* expert noise: the OU offset per joint */
    vlad_rng noise_rng;
    int64_t wall_next;     /* wall: deadline of the current tick */
    bool warned_silent;
    int silent_ticks;
    uint64_t chunk_counter;
    /* expert delay ring */
    int ring_n;
    vlad_task *ring_t;
    vlad_task_state *ring_s;
    /* --expert-chunk: the forecast the current plan is made on */
    vlad_task plan_t;
    vlad_task_state plan_s;
    /* per-episode joint trajectory */
    double *qbuf;
    size_t qcap;
} runner;

/* The episode in progress: its task and the metrics gathered tick by tick. */
typedef struct episode {
    vlad_task t;
    vlad_task_kind kind;
    int ep, global_ep;
    vlad_episode_result *res;
    int64_t changes[MAX_CHANGES]; /* ticks of WORLD_CHANGE events */
    bool reacted[MAX_CHANGES];
    int64_t change_pub_ns[MAX_CHANGES]; /* wall clock: when the observation of that tick went out */
    int n_changes, n_react, n_e2e;
    double lat_sum, lat_max, e2e_sum, e2e_max;
    int switches;
    double disc_sum, disc_max;
    uint64_t h;                   /* FNV-1a of the trajectories */
} episode;

void vlad_sim_opts_defaults(vlad_sim_opts *o, const vlad_profile *p) {
    memset(o, 0, sizeof *o);
    o->p = p;
    for (int k = 0; k < VLAD_TASK_COUNT; k++)
        o->tasks[k] = (vlad_task_kind)k;
    o->n_tasks = VLAD_TASK_COUNT;
    o->episodes = 1;
    o->seed = 1;
    o->clock = p->clock;
    o->record_scale = 3;
}

/* Standard normal (Box-Muller on the simulator's own generator). */
static double rng_normal(vlad_rng *r) {
    double u = vlad_rng_unif(r), v = vlad_rng_unif(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

uint64_t vlad_sim_episode_seed(uint64_t seed, vlad_task_kind k, int ep) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + (uint64_t)k * 0xD1B54A32D192ED03ULL + (uint64_t)ep;
    return vlad_splitmix64(&x);
}

static uint64_t fnv(uint64_t h, const void *data, size_t len) {
    const uint8_t *b = data;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001B3ULL;
    }
    return h;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static double mean_sq_jerk(const double *q, int T, int n, double dt) {
    if (T < 4)
        return 0;
    double s = 0, dt3 = dt * dt * dt;
    for (int t = 0; t + 3 < T; t++)
        for (int j = 0; j < n; j++) {
            double jk = (q[(t + 3) * n + j] - 3 * q[(t + 2) * n + j] + 3 * q[(t + 1) * n + j] - q[t * n + j]) / dt3;
            s += jk * jk;
        }
    return s / ((double)(T - 3) * n);
}

static void state_of(runner *r, vlad_task_state *s) {
    vlad_world_ee(r->w, s->ee);
    vlad_world_block(r->w, s->block);
}

/* ---- one episode ------------------------------------------------------------------ */

/* Reset the world and the daemon's episode; step 1 of run.h before the first tick. */
static int episode_begin(runner *r, episode *e, vlad_task_kind kind, int ep, int global_ep,
                         vlad_episode_result *res, vlad_err *err) {
    const vlad_sim_opts *o = r->o;
    uint64_t seed = vlad_sim_episode_seed(o->seed, kind, ep);
    memset(e, 0, sizeof *e);
    int rc = vlad_task_begin(&e->t, kind, o->params[kind], r->hz, seed, err);
    if (rc)
        return rc;
    e->kind = kind, e->ep = ep, e->global_ep = global_ep, e->res = res;
    e->h = 0xCBF29CE484222325ULL;
    memset(res, 0, sizeof *res);
    res->task = kind;
    res->episode = ep;
    res->seed = seed;
    snprintf(res->instruction, sizeof res->instruction, "%s", e->t.instruction);
    res->first_tick = r->tick;
    r->episode_first_tick = r->tick;
    res->completion_ticks = -1;
    res->latency_mean_ticks = res->latency_max_ticks = NAN;
    res->e2e_mean_ms = res->e2e_max_ms = NAN;

    double home[VLAD_MAX_JOINTS];
    for (int j = 0; j < r->n; j++)
        home[j] = r->p->joints[j].home;
    vlad_world_reset(r->w, home);
    vlad_task_sync_world(&e->t, r->w, true);
    memcpy(r->applied, home, sizeof(double) * (size_t)r->n);
    memset(r->noise, 0, sizeof r->noise);
    vlad_rng_seed(&r->noise_rng, seed ^ 0xD6E8FEB86659FD93ULL);
    if (r->link) /* what was sent before this tick is stale */
        vlad_sim_link_begin_episode(r->link, r->tick, e->t.instruction);
    if (r->ds && (rc = vlad_dataset_begin(r->ds, global_ep, vlad_task_name(kind), e->t.instruction,
                                          seed, err)))
        return rc;
    if (r->ex) {
        double ee[3];
        vlad_world_ee(r->w, ee);
        vlad_expert_begin(r->ex, home, ee);
    }
    r->last_chunk = 0;
    if (o->clock == VLAD_CLOCK_WALL && r->wall_next == 0)
        r->wall_next = vlad_now_ns();
    return VLAD_OK;
}

/* Steps 1-3 of run.h up to the publish: measure, update the task, render what is due, and
 * record the tick (trajectory buffer, hash, dataset frame). */
static int observe(runner *r, episode *e, int k, double *q, double *qd, vlad_task_state *st,
                   vlad_task_events *ev, bool *due, vlad_err *err) {
    const int n = r->n;
    int rc;
    vlad_world_joint_state(r->w, q, qd);
    state_of(r, st);
    if (k == 0)
        vlad_task_events_add(ev, VLAD_EV_START, e->t.instruction);
    int before = ev->n;
    vlad_task_update(&e->t, st, ev);
    for (int i = before; i < ev->n; i++)
        if (ev->ev[i].kind == VLAD_EV_WORLD_CHANGE && e->n_changes < MAX_CHANGES) {
            e->changes[e->n_changes] = r->tick;
            e->change_pub_ns[e->n_changes] = 0;
            e->reacted[e->n_changes++] = false;
        }
    vlad_task_sync_world(&e->t, r->w, false);
    for (int c = 0; r->render && c < r->p->n_cameras; c++) {
        if (k % r->cam_period[c])
            continue;
        due[c] = true;
        if ((rc = vlad_world_render(r->w, c, r->img[c], err)))
            return rc;
    }
    if (r->vid && due[0] && (rc = vlad_video_frame(r->vid, r->img[0], err)))
        return rc;
    if ((size_t)(k + 1) * (size_t)n > r->qcap) {
        size_t nc = r->qcap ? r->qcap * 2 : 1024 * (size_t)n;
        double *nq = realloc(r->qbuf, nc * sizeof(double));
        if (!nq)
            return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        r->qbuf = nq;
        r->qcap = nc;
    }
    memcpy(r->qbuf + (size_t)k * (size_t)n, q, sizeof(double) * (size_t)n);
    e->h = fnv(e->h, q, sizeof(double) * (size_t)n);
    if (r->ds) {
        vlad_labels lb;
        vlad_task_labels(&e->t, st, &lb);
        for (int i = 0; i < ev->n; i++)
            vlad_dataset_event(r->ds, r->tick, (int)ev->ev[i].kind, ev->ev[i].detail, NULL);
        const uint8_t *im[VLAD_MAX_CAMERAS];
        for (int c = 0; c < r->p->n_cameras; c++)
            im[c] = r->render ? r->img[c] : NULL;
        if ((rc = vlad_dataset_frame(r->ds, r->tick, im, q, qd, r->applied, st->ee, &lb, err)))
            return rc;
    }
    return VLAD_OK;
}

/* Steps 3-4: publish the observation and get the tick's target. The expert acts on the world
 * as it was expert_delay ticks ago; lockstep waits for the daemon's answer; wall clock takes
 * the newest action before the tick's deadline (done: the episode's last observation, which
 * lockstep still waits on -- the daemon must have finished this tick before the next
 * episode's reset reaches it, or a reset racing the last tick decides on which tick the new
 * episode's first inference starts, and from which world). */
static void exchange(runner *r, episode *e, int k, const vlad_sim_obs *ob, const vlad_task_state *st,
                     bool done, vlad_sim_target *g) {
    const vlad_sim_opts *o = r->o;
    memset(g, 0, sizeof *g);
    vlad_err err;
    int rc = VLAD_OK;
    if (r->ex) {
        if (done)
            return;
        const int d = o->expert_delay, K = o->expert_chunk;
        const int k0 = K > 0 ? k - k % K : k; /* the tick the current plan started */
        const int kk = k0 - d < 0 ? 0 : k0 - d; /* the tick of the world it was made on */
        r->ring_t[k % r->ring_n] = e->t;
        r->ring_s[k % r->ring_n] = *st;
        const vlad_task *seen = &r->ring_t[kk % r->ring_n];
        const vlad_task_state *seen_s = &r->ring_s[kk % r->ring_n];
        if (k == k0)
            r->chunk_counter++;
        if (K > 0) { /* open loop: a plan of K ticks made on the forecast of tick kk */
            if (k == k0) {
                r->plan_t = *seen;
                r->plan_s = *seen_s;
                vlad_task_forecast(&r->plan_t);
            } else {
                vlad_task_update(&r->plan_t, &r->plan_s, NULL);
            }
            seen = &r->plan_t;
            seen_s = &r->plan_s;
        }
        vlad_expert_act(r->ex, seen, seen_s, g->q);
        g->fresh = true;
        g->chunk_id = r->chunk_counter;
        g->obs_tick = e->res->first_tick + kk;
        g->source = VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
    } else if (o->clock == VLAD_CLOCK_LOCKSTEP) {
        rc = vlad_sim_link_lockstep(r->link, ob, g, &err);
    } else {
        rc = vlad_sim_link_publish(r->link, ob, &err);
        int64_t now = vlad_now_ns();
        for (int i = 0; i < e->n_changes; i++)
            if (e->changes[i] == r->tick && !e->change_pub_ns[i])
                e->change_pub_ns[i] = now;
        if (!done)
            vlad_sim_link_wall_target(r->link, r->episode_first_tick, r->tick, r->wall_next, g);
    }
    if (rc && o->log)
        fprintf(o->log, "vlad-sim: publish: %s\n", err.msg);
}

/* Wall clock: the next tick's deadline (the expert sleeps to it; with a daemon the wait for
 * its action was the sleep). */
static void pace(runner *r) {
    if (r->o->clock != VLAD_CLOCK_WALL)
        return;
    if (r->ex)
        vlad_sleep_until_ns(r->wall_next);
    int64_t period = (int64_t)(1e9 / r->hz);
    r->wall_next += period;
    if (vlad_now_ns() > r->wall_next + 5 * period) /* far behind: do not burst */
        r->wall_next = vlad_now_ns() + period;
}

/* Metrics of an answered (or missing) target: stalls, chunk-boundary discontinuity,
 * reaction latency. */
static void account(runner *r, episode *e, const vlad_sim_target *g) {
    const vlad_sim_opts *o = r->o;
    vlad_episode_result *res = e->res;
    bool stall = !g->fresh || (o->expect_policy && g->source != VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY);
    res->stall_ticks += stall;
    if (r->link) {
        r->silent_ticks = g->fresh ? 0 : r->silent_ticks + 1;
        if (r->silent_ticks == 25 && !r->warned_silent && o->log) {
            r->warned_silent = true;
            fprintf(o->log, "vlad-sim: warning: no actions from the daemon for 25 ticks "
                            "(is vlad running with this profile%s?)\n",
                    o->clock == VLAD_CLOCK_LOCKSTEP ? " and clock: lockstep" : "");
        }
    }
    if (!g->fresh || g->chunk_id == 0)
        return;
    /* chunk-boundary discontinuity: the commanded target jumps at a switch */
    if (r->last_chunk != 0 && g->chunk_id != r->last_chunk) {
        double d = 0;
        for (int j = 0; j < r->n; j++)
            d = fmax(d, fabs(g->q[j] - r->last_cmd[j]));
        e->disc_sum += d;
        e->disc_max = fmax(e->disc_max, d);
        e->switches++;
    }
    r->last_chunk = g->chunk_id;
    memcpy(r->last_cmd, g->q, sizeof(double) * (size_t)r->n);
    if (g->obs_tick < 0)
        return;
    for (int i = 0; i < e->n_changes; i++)
        if (!e->reacted[i] && e->changes[i] <= r->tick && g->obs_tick >= e->changes[i]) {
            e->reacted[i] = true;
            double l = (double)(r->tick - e->changes[i]);
            e->lat_sum += l;
            e->lat_max = l > e->lat_max ? l : e->lat_max;
            e->n_react++;
            if (g->recv_ns && e->change_pub_ns[i] && g->recv_ns >= e->change_pub_ns[i]) {
                double ms = (double)(g->recv_ns - e->change_pub_ns[i]) / 1e6;
                e->e2e_sum += ms;
                e->e2e_max = ms > e->e2e_max ? ms : e->e2e_max;
                e->n_e2e++;
            }
        }
}

/* Step 5: the robot's controller takes the target through the daemon's own rule
 * (vlad_safety_clamp, safety.h: rate limit from the last applied target, position limits
 * last; a non-finite value holds). Behind a daemon it changes nothing -- the daemon's gate
 * already passed the target against the same previous target -- except when an action was
 * missed in wall clock, where the robot's rate limit still holds. Then the tick is recorded
 * and the physics steps. */
static void apply(runner *r, episode *e, int k, const double *q, const vlad_sim_target *g) {
    const vlad_sim_opts *o = r->o;
    const int n = r->n;
    if (g->fresh) {
        double out[VLAD_MAX_JOINTS];
        vlad_safety_clamp(r->p, r->applied, g->q, out);
        memcpy(r->applied, out, sizeof(double) * (size_t)n);
    }
    if (r->ds)
        vlad_dataset_set_action(r->ds, r->applied);
    e->h = fnv(e->h, r->applied, sizeof(double) * (size_t)n);
    if (r->traj) {
        fprintf(r->traj, "%s,%d,%lld,%d,%llu", vlad_task_name(e->kind), e->ep, (long long)r->tick, k,
                (unsigned long long)(g->fresh ? g->chunk_id : 0));
        for (int j = 0; j < n; j++)
            fprintf(r->traj, ",%.6f", r->applied[j]);
        for (int j = 0; j < n; j++)
            fprintf(r->traj, ",%.6f", q[j]);
        fprintf(r->traj, ",%lld,%d\n", (long long)(g->fresh && g->chunk_id ? g->obs_tick : -1),
                g->fresh ? g->source : -1);
    }
    double executed[VLAD_MAX_JOINTS]; /* applied + the expert-noise offset */
    const double *exec = r->applied;
    if (r->ex && o->expert_noise > 0) {
        /* OU step: x <- a x + sigma sqrt(1 - a^2) xi keeps the stationary std sigma */
        double a = exp(-1.0 / (r->hz * o->expert_noise_tau_s));
        double b = o->expert_noise * sqrt(1.0 - a * a);
        for (int j = 0; j < n; j++) {
            const vlad_joint *jt = &r->p->joints[j];
            r->noise[j] = a * r->noise[j] + b * rng_normal(&r->noise_rng);
            executed[j] = clampd(r->applied[j] + r->noise[j], jt->min, jt->max);
        }
        exec = executed;
    }
    vlad_world_step(r->w, exec);
}

static int episode_end(runner *r, episode *e, vlad_err *err) {
    vlad_episode_result *res = e->res;
    const vlad_task *t = &e->t;
    res->success = t->success;
    res->completion_ticks = t->success ? t->success_k : -1;
    res->score = vlad_task_score(t);
    res->jerk = mean_sq_jerk(r->qbuf, res->ticks, r->n, 1.0 / r->hz);
    res->world_changes = t->world_changes;
    res->reactions = e->n_react;
    if (e->n_react > 0) {
        res->latency_mean_ticks = e->lat_sum / e->n_react;
        res->latency_max_ticks = e->lat_max;
    }
    if (e->n_e2e > 0) {
        res->e2e_mean_ms = e->e2e_sum / e->n_e2e;
        res->e2e_max_ms = e->e2e_max;
    }
    res->traj_hash = e->h;
    res->chunk_switches = e->switches;
    if (r->link)
        vlad_sim_link_take_faults(r->link, &res->unanswered_commands, &res->lockstep_timeouts);
    res->disc_mean = e->switches ? e->disc_sum / e->switches : NAN;
    res->disc_max = e->switches ? e->disc_max : NAN;
    int rc;
    if (r->ds && (rc = vlad_dataset_end(r->ds, t->success, err)))
        return rc;
    if (r->o->log)
        fprintf(r->o->log, "  %-5s ep %3d  %-7s ticks %4d  score %.2f  stalls %3d  latency %s%s\n",
                vlad_task_name(e->kind), e->ep, t->success ? "success" : "FAIL", res->ticks, res->score,
                res->stall_ticks, e->n_react ? "" : (t->world_changes ? "missing" : "-"),
                e->kind == VLAD_TASK_WHACK ? (t->hit_ticks_max > 16 ? "  slowest hit > 16 ticks" : "") : "");
    return VLAD_OK;
}

static int run_episode(runner *r, vlad_task_kind kind, int ep, int global_ep, vlad_episode_result *res,
                       vlad_err *err) {
    episode e;
    int rc = episode_begin(r, &e, kind, ep, global_ep, res, err);
    if (rc)
        return rc;
    for (int k = 0;; k++) {
        double q[VLAD_MAX_JOINTS], qd[VLAD_MAX_JOINTS];
        vlad_task_state st;
        vlad_task_events ev = {0};
        bool due[VLAD_MAX_CAMERAS] = {false};
        if ((rc = observe(r, &e, k, q, qd, &st, &ev, due, err)))
            return rc;
        vlad_sim_obs ob = {.tick = r->tick, .episode = global_ep, .q = q, .qd = qd, .ev = &ev,
                           .img = r->render ? r->img : NULL, .cam_due = due};
        vlad_sim_target g;
        exchange(r, &e, k, &ob, &st, e.t.done, &g);
        if (e.t.done) {
            res->ticks = k + 1;
            r->tick++;
            break;
        }
        pace(r);
        account(r, &e, &g);
        apply(r, &e, k, q, &g);
        r->tick++;
    }
    return episode_end(r, &e, err);
}

static void runner_free(runner *r) {
    if (r->traj)
        fclose(r->traj);
    vlad_expert_free(r->ex);
    vlad_sim_link_free(r->link);
    vlad_dataset_free(r->ds);
    vlad_video_close(r->vid, NULL);
    vlad_world_free(r->w);
    for (int c = 0; c < VLAD_MAX_CAMERAS; c++)
        free(r->img[c]);
    free(r->ring_t);
    free(r->ring_s);
    free(r->qbuf);
}
int vlad_sim_run(const vlad_sim_opts *o, vlad_sim_results *res, vlad_err *err) {
    memset(res, 0, sizeof *res);
    const vlad_profile *p = o->p;
    if (o->episodes < 0 || o->n_tasks < 1 || o->n_tasks > VLAD_TASK_COUNT || o->expert_delay < 0 ||
        o->expert_delay > 1000 || o->expert_chunk < 0 || o->expert_chunk > 1000)
        return vlad_err_set(err, VLAD_EINVAL, "bad run options (episodes, tasks, expert delay or chunk)");
    if (!(o->expert_noise >= 0 && o->expert_noise <= 1) ||
        (o->expert_noise > 0 && !(o->expert_noise_tau_s > 0 && o->expert_noise_tau_s <= 10)))
        return vlad_err_set(err, VLAD_EINVAL, "bad expert noise (std 0..1 rad, correlation time 0..10 s)");
    runner r = {0};
    r.o = o;
    r.p = p;
    r.n = p->n_joints;
    r.hz = p->control_hz;
    r.tick = o->start_tick;
    r.render = p->n_cameras > 0 && (o->render || !o->expert || o->dataset_dir || o->record_path);
    int rc = VLAD_OK;
    if (o->trajectory_path) {
        r.traj = fopen(o->trajectory_path, "w");
        if (!r.traj)
            return vlad_err_set(err, VLAD_EIO, "--trajectory %s: cannot write", o->trajectory_path);
        fprintf(r.traj, "task,episode,tick,k,chunk");
        for (int j = 0; j < p->n_joints; j++)
            fprintf(r.traj, ",target_%s", p->joints[j].name);
        for (int j = 0; j < p->n_joints; j++)
            fprintf(r.traj, ",pos_%s", p->joints[j].name);
        fprintf(r.traj, ",obs_tick,source\n");
    }
    r.w = vlad_world_new(p, r.render, err);
    if (!r.w)
        return err ? err->code : VLAD_EINVAL;
    for (int c = 0; c < p->n_cameras; c++) {
        r.img[c] = calloc((size_t)p->cameras[c].width * (size_t)p->cameras[c].height * 3, 1);
        if (!r.img[c]) {
            rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
            goto out;
        }
        long per = lround(p->control_hz / p->cameras[c].rate_hz);
        r.cam_period[c] = per < 1 ? 1 : (int)per;
    }
    r.ring_n = o->expert_delay + 1;
    r.ring_t = calloc((size_t)r.ring_n, sizeof *r.ring_t);
    r.ring_s = calloc((size_t)r.ring_n, sizeof *r.ring_s);
    res->ep = calloc((size_t)(o->episodes * o->n_tasks + 1), sizeof *res->ep);
    if (!r.ring_t || !r.ring_s || !res->ep) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto out;
    }
    if (o->expert) {
        if (!(r.ex = vlad_expert_new(p, r.w, err))) {
            rc = err ? err->code : VLAD_ENOMEM;
            goto out;
        }
    } else {
        r.link = vlad_sim_link_new(p, o->key_file, o->command_timeout_ms, o->lockstep_timeout_ms,
                                   o->log, err);
        if (!r.link) {
            rc = err ? err->code : VLAD_EIO;
            goto out;
        }
    }
    if (o->dataset_dir && !(r.ds = vlad_dataset_new(o->dataset_dir, p, err))) {
        rc = err ? err->code : VLAD_EIO;
        goto out;
    }
    if (o->record_path) {
        if (!r.render) {
            rc = vlad_err_set(err, VLAD_EINVAL, "--record needs a camera in the profile");
            goto out;
        }
        double fps = p->control_hz / r.cam_period[0];
        r.vid = vlad_video_open(o->record_path, p->cameras[0].width, p->cameras[0].height,
                                o->record_scale > 0 ? o->record_scale : 1, fps, err);
        if (!r.vid) {
            rc = err ? err->code : VLAD_EIO;
            goto out;
        }
    }
    res->control_hz = p->control_hz;
    snprintf(res->robot, sizeof res->robot, "%s", p->robot);
    res->clock = o->clock;
    res->seed = o->seed;
    res->expert = o->expert;
    res->expert_delay = o->expert_delay;
    res->expert_chunk = o->expert_chunk;
    int64_t t0 = vlad_now_ns();
    int global_ep = 0;
    for (int ti = 0; ti < o->n_tasks; ti++)
        for (int ep = 0; ep < o->episodes; ep++) {
            rc = run_episode(&r, o->tasks[ti], ep, global_ep, &res->ep[res->n], err);
            if (rc)
                goto out;
            res->n++;
            global_ep++;
        }
    res->wall_s = (double)(vlad_now_ns() - t0) / 1e9;
    res->ticks = r.tick;
    if (r.vid) {
        rc = vlad_video_close(r.vid, err);
        r.vid = NULL;
    }
out:
    runner_free(&r);
    return rc;
}

void vlad_sim_results_free(vlad_sim_results *res) {
    free(res->ep);
    res->ep = NULL;
    res->n = 0;
}

