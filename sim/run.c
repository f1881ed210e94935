/* run.c — the vlad-sim tick loop, metrics and reports; see run.h. */
#include "run.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "clock.h"
#include "dataset.h"
#include "expert.h"
#include "media.h"
#include "path.h"
#include "world.h"

#define MAX_CHANGES 256

typedef struct runner {
    const vlad_sim_opts *o;
    const vlad_profile *p;
    int n;
    double hz;
    vlad_world *w;
    vlad_expert *ex;
    vlad_client *cl;
    vlad_dataset *ds;
    vlad_video *vid;
    int64_t tick;
    uint8_t *img[VLAD_MAX_CAMERAS];
    int cam_period[VLAD_MAX_CAMERAS];
    bool render;
    Vlad__Action *pending; /* lockstep: an action for a later tick */
    /* lockstep: the observation of this tick, to resend while waiting (a first message
     * can meet a subscription that is not connected yet; the daemon answers a resend
     * with the same action) */
    int64_t pub_tick;
    int64_t episode_first_tick; /* tick of the current episode's first observation */
    int pub_ep;
    const double *pub_q, *pub_qd;
    const vlad_task_events *pub_ev;
    const bool *pub_due;
    FILE *traj;            /* --trajectory */
    uint64_t last_chunk;   /* chunk of the last applied action (discontinuity) */
    double last_cmd[VLAD_MAX_JOINTS];
    double applied[VLAD_MAX_JOINTS];
    double noise[VLAD_MAX_JOINTS];    /* expert noise: the OU offset per joint */
    vlad_rng noise_rng;
    int64_t wall_next;     /* wall: deadline of the current tick */
    bool warned_cmd, warned_silent;
    int silent_ticks;
    uint64_t chunk_counter;
    /* expert delay ring */
    int ring_n;
    vlad_task *ring_t;
    vlad_task_state *ring_s;
    /* per-episode joint trajectory */
    double *qbuf;
    size_t qcap;
} runner;

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

/* ---- daemon I/O ------------------------------------------------------------------- */

static void send_commands(runner *r, const char *instruction) {
    if (!r->cl)
        return;
    int to = r->o->command_timeout_ms > 0 ? r->o->command_timeout_ms : 500;
    vlad_err err;
    Vlad__Command c = VLAD__COMMAND__INIT;
    Vlad__Reset rs = VLAD__RESET__INIT;
    rs.from_robot_tick = r->tick; /* this episode's first tick: what we sent before is stale */
    c.body_case = VLAD__COMMAND__BODY_RESET;
    c.reset = &rs;
    Vlad__Reply *rep = NULL;
    int rc = vlad_client_command(r->cl, &c, to, &rep, &err);
    if (rep)
        vlad__reply__free_unpacked(rep, NULL);
    if (rc == VLAD_OK) {
        Vlad__Command c2 = VLAD__COMMAND__INIT;
        Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
        si.text = (char *)instruction;
        c2.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION;
        c2.set_instruction = &si;
        rep = NULL;
        rc = vlad_client_command(r->cl, &c2, to, &rep, &err);
        if (rep)
            vlad__reply__free_unpacked(rep, NULL);
    }
    if (rc != VLAD_OK && !r->warned_cmd) {
        r->warned_cmd = true;
        if (r->o->log)
            fprintf(r->o->log, "vlad-sim: warning: daemon did not answer reset/set_instruction (%s); "
                               "continuing\n", err.msg);
    }
}

typedef struct got {
    bool fresh;
    double q[VLAD_MAX_JOINTS];
    uint64_t chunk_id;
    int64_t obs_tick;
    int source;
} got;

static void take(runner *r, const Vlad__Action *a, got *g) {
    g->fresh = true;
    for (int j = 0; j < r->n; j++)
        g->q[j] = a->joint_targets[j];
    g->chunk_id = a->chunk_id;
    g->obs_tick = a->obs_robot_tick; /* on this simulator's timeline */
    g->source = a->source;
}

static int publish(runner *r, int64_t tick, int episode, const double *q, const double *qd,
                   const vlad_task_events *ev, const bool *cam_due);

#define RESEND_MS 100

static void recv_lockstep(runner *r, got *g) {
    int64_t t = r->tick;
    /* an Action answers the observation whose robot tick it carries (robot_tick) */
    if (r->pending && r->pending->robot_tick <= t) {
        if (r->pending->robot_tick == t)
            take(r, r->pending, g);
        vlad__action__free_unpacked(r->pending, NULL);
        r->pending = NULL;
        if (g->fresh)
            return;
    }
    double to_ms = r->o->lockstep_timeout_ms > 0 ? r->o->lockstep_timeout_ms : r->p->lockstep_timeout_ms;
    int64_t deadline = vlad_now_ns() + (int64_t)(to_ms * 1e6);
    vlad_err err;
    for (;;) {
        int64_t left = deadline - vlad_now_ns();
        if (left <= 0)
            break;
        Vlad__Action *a = NULL;
        int ms = (int)((left + 999999) / 1000000);
        int rc = vlad_client_recv_action(r->cl, ms < RESEND_MS ? ms : RESEND_MS, &a, &err);
        if (rc == VLAD_ETIMEOUT && r->pub_q) {
            publish(r, r->pub_tick, r->pub_ep, r->pub_q, r->pub_qd, r->pub_ev, r->pub_due);
            continue;
        }
        if (rc != VLAD_OK || !a)
            break;
        if (a->robot_tick < t) {
            vlad__action__free_unpacked(a, NULL);
        } else if (a->robot_tick > t) {
            if (r->pending)
                vlad__action__free_unpacked(r->pending, NULL);
            r->pending = a;
        } else {
            take(r, a, g);
            vlad__action__free_unpacked(a, NULL);
            return;
        }
    }
}

static void recv_wall(runner *r, got *g) {
    vlad_err err;
    for (;;) {
        int64_t left = r->wall_next - vlad_now_ns();
        int ms = left > 0 ? (int)((left + 999999) / 1000000) : 0;
        Vlad__Action *a = NULL;
        int rc = vlad_client_recv_action(r->cl, ms, &a, &err);
        if (rc == VLAD_OK && a) {
            /* newest wins; an Action computed from an observation before this episode's
             * reset (robot_tick older than its first tick), or from another run of this robot
             * (robot_tick ahead of ours) is not for this episode */
            if (a->robot_tick >= r->episode_first_tick && a->robot_tick <= r->tick)
                take(r, a, g);
            vlad__action__free_unpacked(a, NULL);
            continue; /* drain what is queued (ms = 0 once the tick is over) */
        }
        if (vlad_now_ns() >= r->wall_next)
            break;
    }
}

static int publish(runner *r, int64_t tick, int episode, const double *q, const double *qd,
                   const vlad_task_events *ev, const bool *cam_due) {
    if (!r->cl)
        return VLAD_OK;
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.tick = tick;
    o.stamp_ns = vlad_now_ns();
    o.n_joint_pos = (size_t)r->n;
    o.joint_pos = (double *)q;
    o.n_joint_vel = (size_t)r->n;
    o.joint_vel = (double *)qd;
    Vlad__CameraImage imgs[VLAD_MAX_CAMERAS], *ip[VLAD_MAX_CAMERAS];
    size_t ni = 0;
    for (int c = 0; r->render && c < r->p->n_cameras; c++) {
        if (!cam_due[c])
            continue;
        Vlad__CameraImage *im = &imgs[ni];
        vlad__camera_image__init(im);
        im->name = (char *)r->p->cameras[c].name;
        im->width = (uint32_t)r->p->cameras[c].width;
        im->height = (uint32_t)r->p->cameras[c].height;
        im->encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
        im->data.len = (size_t)im->width * im->height * 3;
        im->data.data = r->img[c];
        im->tick = tick;
        ip[ni] = im;
        ni++;
    }
    o.n_images = ni;
    o.images = ip;
    Vlad__TaskEvent evs[VLAD_TASK_MAX_EVENTS], *ep[VLAD_TASK_MAX_EVENTS];
    for (int i = 0; i < ev->n; i++) {
        vlad__task_event__init(&evs[i]);
        evs[i].kind = (Vlad__TaskEvent__Kind)ev->ev[i].kind;
        evs[i].tick = tick;
        evs[i].episode = (uint32_t)episode;
        evs[i].detail = (char *)ev->ev[i].detail;
        ep[i] = &evs[i];
    }
    o.n_events = (size_t)ev->n;
    o.events = ep;
    vlad_err err;
    int rc = vlad_client_publish_observation(r->cl, &o, &err);
    if (rc && r->o->log)
        fprintf(r->o->log, "vlad-sim: publish: %s\n", err.msg);
    return rc;
}

/* ---- one episode ------------------------------------------------------------------ */

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

static int run_episode(runner *r, vlad_task_kind kind, int ep, int global_ep, vlad_episode_result *res,
                       vlad_err *err) {
    const vlad_sim_opts *o = r->o;
    const int n = r->n;
    vlad_task t;
    uint64_t seed = vlad_sim_episode_seed(o->seed, kind, ep);
    int rc = vlad_task_begin(&t, kind, o->params[kind], r->hz, seed, err);
    if (rc)
        return rc;
    memset(res, 0, sizeof *res);
    res->task = kind;
    res->episode = ep;
    res->seed = seed;
    snprintf(res->instruction, sizeof res->instruction, "%s", t.instruction);
    res->first_tick = r->tick;
    r->episode_first_tick = r->tick;
    res->completion_ticks = -1;
    res->latency_mean_ticks = res->latency_max_ticks = NAN;

    double home[VLAD_MAX_JOINTS];
    for (int j = 0; j < n; j++)
        home[j] = r->p->joints[j].home;
    vlad_world_reset(r->w, home);
    vlad_task_sync_world(&t, r->w, true);
    memcpy(r->applied, home, sizeof(double) * (size_t)n);
    memset(r->noise, 0, sizeof r->noise);
    vlad_rng_seed(&r->noise_rng, seed ^ 0xD6E8FEB86659FD93ULL);
    send_commands(r, t.instruction);
    if (r->ds && (rc = vlad_dataset_begin(r->ds, global_ep, vlad_task_name(kind), t.instruction, seed, err)))
        return rc;
    if (r->ex) {
        double ee[3];
        vlad_world_ee(r->w, ee);
        vlad_expert_begin(r->ex, home, ee);
    }
    int64_t changes[MAX_CHANGES];
    bool reacted[MAX_CHANGES];
    int n_changes = 0, n_react = 0;
    double lat_sum = 0, lat_max = 0;
    int switches = 0;
    double disc_sum = 0, disc_max = 0;
    r->last_chunk = 0;
    uint64_t h = 0xCBF29CE484222325ULL;
    if (o->clock == VLAD_CLOCK_WALL && r->wall_next == 0)
        r->wall_next = vlad_now_ns();

    for (int k = 0;; k++) {
        double q[VLAD_MAX_JOINTS], qd[VLAD_MAX_JOINTS];
        vlad_task_state st;
        vlad_world_joint_state(r->w, q, qd);
        state_of(r, &st);
        vlad_task_events ev = {0};
        if (k == 0)
            vlad_task_events_add(&ev, VLAD_EV_START, t.instruction);
        int before = ev.n;
        vlad_task_update(&t, &st, &ev);
        for (int i = before; i < ev.n; i++)
            if (ev.ev[i].kind == VLAD_EV_WORLD_CHANGE && n_changes < MAX_CHANGES) {
                changes[n_changes] = r->tick;
                reacted[n_changes++] = false;
            }
        vlad_task_sync_world(&t, r->w, false);
        /* cameras due this tick */
        bool due[VLAD_MAX_CAMERAS] = {false};
        if (r->render) {
            for (int c = 0; c < r->p->n_cameras; c++) {
                if (k % r->cam_period[c])
                    continue;
                due[c] = true;
                if ((rc = vlad_world_render(r->w, c, r->img[c], err)))
                    return rc;
            }
            if (r->vid && due[0] && (rc = vlad_video_frame(r->vid, r->img[0], err)))
                return rc;
        }
        /* record */
        if ((size_t)(k + 1) * (size_t)n > r->qcap) {
            size_t nc = r->qcap ? r->qcap * 2 : 1024 * (size_t)n;
            double *nq = realloc(r->qbuf, nc * sizeof(double));
            if (!nq)
                return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
            r->qbuf = nq;
            r->qcap = nc;
        }
        memcpy(r->qbuf + (size_t)k * (size_t)n, q, sizeof(double) * (size_t)n);
        h = fnv(h, q, sizeof(double) * (size_t)n);
        if (r->ds) {
            vlad_labels lb;
            vlad_task_labels(&t, &st, &lb);
            for (int i = 0; i < ev.n; i++)
                vlad_dataset_event(r->ds, r->tick, (int)ev.ev[i].kind, ev.ev[i].detail, NULL);
            const uint8_t *im[VLAD_MAX_CAMERAS];
            for (int c = 0; c < r->p->n_cameras; c++)
                im[c] = r->render ? r->img[c] : NULL;
            if ((rc = vlad_dataset_frame(r->ds, r->tick, im, q, qd, r->applied, st.ee, &lb, err)))
                return rc;
        }
        r->pub_tick = r->tick, r->pub_ep = global_ep, r->pub_q = q, r->pub_qd = qd;
        r->pub_ev = &ev, r->pub_due = due;
        publish(r, r->tick, global_ep, q, qd, &ev, due);
        if (t.done) {
            res->ticks = k + 1;
            if (!r->ex && o->clock == VLAD_CLOCK_LOCKSTEP) {
                /* lockstep: every observation is answered before the robot moves on. The
                 * daemon must have finished this tick before the next episode's reset
                 * reaches it, or a reset racing the last tick decides on which tick the
                 * new episode's first inference starts (and from which world). */
                got last = {0};
                recv_lockstep(r, &last);
            }
            r->tick++;
            break;
        }
        /* the target for this tick */
        got g = {0};
        if (r->ex) {
            int d = o->expert_delay, kk = k - d < 0 ? 0 : k - d;
            r->ring_t[k % r->ring_n] = t;
            r->ring_s[k % r->ring_n] = st;
            vlad_expert_act(r->ex, &r->ring_t[kk % r->ring_n], &r->ring_s[kk % r->ring_n], g.q);
            g.fresh = true;
            g.chunk_id = ++r->chunk_counter;
            g.obs_tick = res->first_tick + kk;
            g.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
        } else if (o->clock == VLAD_CLOCK_LOCKSTEP) {
            recv_lockstep(r, &g);
        } else {
            recv_wall(r, &g);
        }
        if (o->clock == VLAD_CLOCK_WALL) {
            if (r->ex)
                vlad_sleep_until_ns(r->wall_next);
            int64_t period = (int64_t)(1e9 / r->hz);
            r->wall_next += period;
            if (vlad_now_ns() > r->wall_next + 5 * period) /* far behind: do not burst */
                r->wall_next = vlad_now_ns() + period;
        }
        bool stall = !g.fresh || (o->expect_policy && g.source != VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY);
        res->stall_ticks += stall;
        if (!r->ex) {
            r->silent_ticks = g.fresh ? 0 : r->silent_ticks + 1;
            if (r->silent_ticks == 25 && !r->warned_silent && o->log) {
                r->warned_silent = true;
                fprintf(o->log, "vlad-sim: warning: no actions from the daemon for 25 ticks "
                                "(is vlad running with this profile%s?)\n",
                        o->clock == VLAD_CLOCK_LOCKSTEP ? " and clock: lockstep" : "");
            }
        }
        if (g.fresh && g.chunk_id != 0) {
            /* chunk-boundary discontinuity: the commanded target jumps at a switch */
            if (r->last_chunk != 0 && g.chunk_id != r->last_chunk) {
                double d = 0;
                for (int j = 0; j < n; j++)
                    d = fmax(d, fabs(g.q[j] - r->last_cmd[j]));
                disc_sum += d;
                disc_max = fmax(disc_max, d);
                switches++;
            }
            r->last_chunk = g.chunk_id;
            memcpy(r->last_cmd, g.q, sizeof(double) * (size_t)n);
        }
        if (g.fresh) {
            for (int j = 0; j < n; j++) {
                const vlad_joint *jt = &r->p->joints[j];
                double step = jt->max_velocity / r->hz, v = g.q[j];
                if (!isfinite(v))
                    continue;
                v = clampd(v, r->applied[j] - step, r->applied[j] + step);
                r->applied[j] = clampd(v, jt->min, jt->max);
            }
            if (g.chunk_id != 0 && g.obs_tick >= 0) {
                for (int i = 0; i < n_changes; i++)
                    if (!reacted[i] && changes[i] <= r->tick && g.obs_tick >= changes[i]) {
                        reacted[i] = true;
                        double l = (double)(r->tick - changes[i]);
                        lat_sum += l;
                        lat_max = l > lat_max ? l : lat_max;
                        n_react++;
                    }
            }
        }
        if (r->ds)
            vlad_dataset_set_action(r->ds, r->applied);
        h = fnv(h, r->applied, sizeof(double) * (size_t)n);
        if (r->traj) {
            fprintf(r->traj, "%s,%d,%lld,%d,%llu", vlad_task_name(kind), ep, (long long)r->tick, k,
                    (unsigned long long)(g.fresh ? g.chunk_id : 0));
            for (int j = 0; j < n; j++)
                fprintf(r->traj, ",%.6f", r->applied[j]);
            for (int j = 0; j < n; j++)
                fprintf(r->traj, ",%.6f", q[j]);
            fputc('\n', r->traj);
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
        r->tick++;
    }
    res->success = t.success;
    res->completion_ticks = t.success ? t.success_k : -1;
    res->score = vlad_task_score(&t);
    res->jerk = mean_sq_jerk(r->qbuf, res->ticks, n, 1.0 / r->hz);
    res->world_changes = t.world_changes;
    res->reactions = n_react;
    if (n_react > 0) {
        res->latency_mean_ticks = lat_sum / n_react;
        res->latency_max_ticks = lat_max;
    }
    res->traj_hash = h;
    res->chunk_switches = switches;
    res->disc_mean = switches ? disc_sum / switches : NAN;
    res->disc_max = switches ? disc_max : NAN;
    if (r->ds && (rc = vlad_dataset_end(r->ds, t.success, err)))
        return rc;
    if (o->log)
        fprintf(o->log, "  %-5s ep %3d  %-7s ticks %4d  score %.2f  stalls %3d  latency %s%s\n",
                vlad_task_name(kind), ep, t.success ? "success" : "FAIL", res->ticks, res->score,
                res->stall_ticks, n_react ? "" : (t.world_changes ? "missing" : "-"),
                kind == VLAD_TASK_WHACK ? (t.hit_ticks_max > 16 ? "  slowest hit > 16 ticks" : "") : "");
    return VLAD_OK;
}

static void runner_free(runner *r) {
    if (r->traj)
        fclose(r->traj);
    vlad_expert_free(r->ex);
    vlad_client_free(r->cl);
    vlad_dataset_free(r->ds);
    vlad_video_close(r->vid, NULL);
    vlad_world_free(r->w);
    if (r->pending)
        vlad__action__free_unpacked(r->pending, NULL);
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
        o->expert_delay > 1000)
        return vlad_err_set(err, VLAD_EINVAL, "bad run options (episodes, tasks or expert delay)");
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
        fputc('\n', r.traj);
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
        r.cl = vlad_client_new_keyed(p, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CONTROL | VLAD_CLIENT_PUBLISH,
                                     o->key_file, err);
        if (!r.cl) {
            rc = err ? err->code : VLAD_EIO;
            goto out;
        }
        vlad_sleep_until_ns(vlad_now_ns() + 300 * VLAD_NS_PER_MS); /* let ZeroMQ connect */
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

/* ---- reports ---------------------------------------------------------------------- */

static void num_or_null(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

typedef struct summary {
    int episodes, successes, stalls, with_latency, missing_latency;
    double completion_s, jerk, score, lat_mean, lat_max;
} summary;

static void summarize(const vlad_sim_results *res, vlad_task_kind k, summary *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < res->n; i++) {
        const vlad_episode_result *e = &res->ep[i];
        if (e->task != k)
            continue;
        s->episodes++;
        s->stalls += e->stall_ticks;
        s->jerk += e->jerk;
        s->score += e->score;
        if (e->success) {
            s->successes++;
            s->completion_s += e->completion_ticks / res->control_hz;
        }
        if (e->reactions > 0) {
            s->with_latency++;
            s->lat_mean += e->latency_mean_ticks;
            if (e->latency_max_ticks > s->lat_max)
                s->lat_max = e->latency_max_ticks;
        } else if (e->world_changes > 0) {
            s->missing_latency++;
        }
    }
    if (s->episodes) {
        s->jerk /= s->episodes;
        s->score /= s->episodes;
    }
    s->completion_s = s->successes ? s->completion_s / s->successes : NAN;
    s->lat_mean = s->with_latency ? s->lat_mean / s->with_latency : NAN;
    if (!s->with_latency)
        s->lat_max = NAN;
}

char *vlad_sim_results_json(const vlad_sim_results *res) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "robot", res->robot);
    cJSON_AddStringToObject(root, "clock", vlad_clock_mode_name(res->clock));
    cJSON_AddNumberToObject(root, "seed", (double)res->seed);
    cJSON_AddNumberToObject(root, "control_hz", res->control_hz);
    cJSON_AddBoolToObject(root, "expert", res->expert);
    cJSON_AddNumberToObject(root, "expert_delay", res->expert_delay);
    cJSON *eps = cJSON_AddArrayToObject(root, "episodes");
    const double ms = 1000.0 / res->control_hz;
    for (int i = 0; i < res->n; i++) {
        const vlad_episode_result *e = &res->ep[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", vlad_task_name(e->task));
        cJSON_AddNumberToObject(o, "episode", e->episode);
        char hx[24];
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)e->seed);
        cJSON_AddStringToObject(o, "seed", hx);
        cJSON_AddStringToObject(o, "instruction", e->instruction);
        cJSON_AddNumberToObject(o, "first_tick", (double)e->first_tick);
        cJSON_AddNumberToObject(o, "ticks", e->ticks);
        cJSON_AddBoolToObject(o, "success", e->success);
        if (e->completion_ticks >= 0) {
            cJSON_AddNumberToObject(o, "completion_ticks", e->completion_ticks);
            cJSON_AddNumberToObject(o, "completion_s", e->completion_ticks / res->control_hz);
        } else {
            cJSON_AddNullToObject(o, "completion_ticks");
            cJSON_AddNullToObject(o, "completion_s");
        }
        cJSON_AddNumberToObject(o, "score", e->score);
        cJSON_AddNumberToObject(o, "mean_sq_jerk", e->jerk);
        cJSON_AddNumberToObject(o, "stall_ticks", e->stall_ticks);
        cJSON_AddNumberToObject(o, "world_changes", e->world_changes);
        cJSON_AddNumberToObject(o, "reactions", e->reactions);
        num_or_null(o, "reaction_latency_mean_ticks", e->latency_mean_ticks);
        num_or_null(o, "reaction_latency_max_ticks", e->latency_max_ticks);
        num_or_null(o, "reaction_latency_mean_ms", e->latency_mean_ticks * ms);
        num_or_null(o, "reaction_latency_max_ms", e->latency_max_ticks * ms);
        cJSON_AddNumberToObject(o, "chunk_switches", e->chunk_switches);
        num_or_null(o, "discontinuity_mean", e->disc_mean);
        num_or_null(o, "discontinuity_max", e->disc_max);
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)e->traj_hash);
        cJSON_AddStringToObject(o, "trajectory_hash", hx);
        cJSON_AddItemToArray(eps, o);
    }
    cJSON *sum = cJSON_AddArrayToObject(root, "summary");
    for (int k = 0; k < VLAD_TASK_COUNT; k++) {
        summary s;
        summarize(res, (vlad_task_kind)k, &s);
        if (!s.episodes)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", vlad_task_name((vlad_task_kind)k));
        cJSON_AddNumberToObject(o, "episodes", s.episodes);
        cJSON_AddNumberToObject(o, "successes", s.successes);
        cJSON_AddNumberToObject(o, "success_rate", (double)s.successes / s.episodes);
        cJSON_AddNumberToObject(o, "mean_score", s.score);
        num_or_null(o, "mean_completion_s", s.completion_s);
        cJSON_AddNumberToObject(o, "mean_sq_jerk", s.jerk);
        cJSON_AddNumberToObject(o, "stall_ticks", s.stalls);
        num_or_null(o, "reaction_latency_mean_ticks", s.lat_mean);
        num_or_null(o, "reaction_latency_max_ticks", s.lat_max);
        num_or_null(o, "reaction_latency_mean_ms", s.lat_mean * ms);
        cJSON_AddNumberToObject(o, "episodes_missing_reaction", s.missing_latency);
        cJSON_AddItemToArray(sum, o);
    }
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    return txt;
}

int vlad_sim_results_write_json(const vlad_sim_results *res, const char *path, vlad_err *err) {
    char *txt = vlad_sim_results_json(res);
    if (!txt)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    FILE *f = fopen(path, "w");
    if (!f) {
        free(txt);
        return vlad_err_set(err, VLAD_EIO, "cannot write %s", path);
    }
    bool ok = fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(txt);
    return ok ? VLAD_OK : vlad_err_set(err, VLAD_EIO, "write %s failed", path);
}

void vlad_sim_results_print(const vlad_sim_results *res, FILE *out) {
    const double ms = 1000.0 / res->control_hz;
    fprintf(out, "\nvlad-sim results: robot %s, %s, seed %llu, %s%s\n", res->robot,
            vlad_clock_mode_name(res->clock), (unsigned long long)res->seed,
            res->expert ? "scripted expert" : "daemon", res->expert && res->expert_delay ? " (delayed)" : "");
    fprintf(out, "| task  | episodes | success | score | completion s | sq jerk (rad/s^3)^2 | stall ticks | reaction ticks (ms) mean / max | no reaction |\n");
    fprintf(out, "|-------|---------:|--------:|------:|-------------:|--------------------:|------------:|-------------------------------:|------------:|\n");
    for (int k = 0; k < VLAD_TASK_COUNT; k++) {
        summary s;
        summarize(res, (vlad_task_kind)k, &s);
        if (!s.episodes)
            continue;
        char comp[32], lat[64];
        if (isfinite(s.completion_s))
            snprintf(comp, sizeof comp, "%.2f", s.completion_s);
        else
            snprintf(comp, sizeof comp, "-");
        if (isfinite(s.lat_mean))
            snprintf(lat, sizeof lat, "%.1f (%.0f) / %.0f", s.lat_mean, s.lat_mean * ms, s.lat_max);
        else
            snprintf(lat, sizeof lat, "-");
        fprintf(out, "| %-5s | %8d | %6.0f%% | %5.2f | %12s | %19.4g | %11d | %30s | %11d |\n",
                vlad_task_name((vlad_task_kind)k), s.episodes, 100.0 * s.successes / s.episodes, s.score,
                comp, s.jerk, s.stalls, lat, s.missing_latency);
    }
    fprintf(out, "%lld ticks in %.2f s wall (%.0f ticks/s; real time is %.0f)\n", (long long)res->ticks,
            res->wall_s, res->wall_s > 0 ? (double)res->ticks / res->wall_s : 0, res->control_hz);
}

/* ---- snapshots and bench ------------------------------------------------------------ */

int vlad_sim_snapshots(const vlad_profile *p, const char *dir, uint64_t seed, int ticks, int scale,
                       vlad_err *err) {
    if (p->n_cameras < 1)
        return vlad_err_set(err, VLAD_EINVAL, "snapshots need a camera in the profile");
    int rc = vlad_mkdir_p(dir, err);
    if (rc)
        return rc;
    vlad_world *w = vlad_world_new(p, true, err);
    if (!w)
        return err ? err->code : VLAD_EINVAL;
    vlad_expert *ex = vlad_expert_new(p, w, err);
    int W = p->cameras[0].width, H = p->cameras[0].height;
    rc = ex ? VLAD_OK : VLAD_ENOMEM;
    uint8_t *img = malloc((size_t)W * (size_t)H * 3);
    if (!img)
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    double home[VLAD_MAX_JOINTS], q[VLAD_MAX_JOINTS];
    for (int j = 0; j < p->n_joints; j++)
        home[j] = p->joints[j].home;
    for (int k = 0; !rc && k < VLAD_TASK_COUNT; k++) {
        vlad_task t;
        rc = vlad_task_begin(&t, (vlad_task_kind)k, NULL, p->control_hz, vlad_sim_episode_seed(seed, (vlad_task_kind)k, 0),
                             err);
        if (rc)
            break;
        vlad_world_reset(w, home);
        vlad_task_sync_world(&t, w, true);
        double ee[3];
        vlad_world_ee(w, ee);
        vlad_expert_begin(ex, home, ee);
        /* whack: also wait until a target is up, so that the picture shows one */
        for (int i = 0; (i < ticks || (k == VLAD_TASK_WHACK && !t.obj[0].visible)) && !t.done && i < 1000; i++) {
            vlad_task_state st;
            vlad_world_ee(w, st.ee);
            vlad_world_block(w, st.block);
            vlad_task_update(&t, &st, NULL);
            vlad_task_sync_world(&t, w, false);
            vlad_expert_act(ex, &t, &st, q);
            vlad_world_step(w, q);
        }
        char path[VLAD_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/task-%s.png", dir, vlad_task_name((vlad_task_kind)k));
        rc = vlad_world_render(w, 0, img, err);
        if (!rc)
            rc = vlad_png_write(path, img, W, H, scale, err);
    }
    free(img);
    vlad_expert_free(ex);
    vlad_world_free(w);
    return rc;
}

int vlad_sim_bench_run(const vlad_profile *p, int ticks, int frames, vlad_sim_bench *b, vlad_err *err) {
    memset(b, 0, sizeof *b);
    vlad_world *w = vlad_world_new(p, p->n_cameras > 0, err);
    if (!w)
        return err ? err->code : VLAD_EINVAL;
    vlad_expert *ex = vlad_expert_new(p, w, err);
    if (!ex) {
        vlad_world_free(w);
        return VLAD_ENOMEM;
    }
    double home[VLAD_MAX_JOINTS], q[VLAD_MAX_JOINTS];
    for (int j = 0; j < p->n_joints; j++)
        home[j] = p->joints[j].home;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_WHACK, NULL, p->control_hz, 1, NULL);
    vlad_world_reset(w, home);
    double ee[3];
    vlad_world_ee(w, ee);
    vlad_expert_begin(ex, home, ee);
    int64_t step_ns = 0, ik_ns = 0;
    for (int i = 0; i < ticks; i++) {
        if (t.done) {
            vlad_task_begin(&t, VLAD_TASK_WHACK, NULL, p->control_hz, (uint64_t)i, NULL);
            vlad_world_reset(w, home);
            vlad_world_ee(w, ee);
            vlad_expert_begin(ex, home, ee);
        }
        vlad_task_state st;
        vlad_world_ee(w, st.ee);
        vlad_world_block(w, st.block);
        vlad_task_update(&t, &st, NULL);
        vlad_task_sync_world(&t, w, false);
        int64_t a = vlad_now_ns();
        vlad_expert_act(ex, &t, &st, q);
        int64_t m = vlad_now_ns();
        vlad_world_step(w, q);
        int64_t z = vlad_now_ns();
        ik_ns += m - a;
        step_ns += z - m;
    }
    b->ticks = ticks;
    b->substeps = p->sim.substeps;
    b->tick_us = ticks ? (double)step_ns / ticks / 1e3 : 0;
    b->step_us = b->tick_us / p->sim.substeps;
    b->ik_us = ticks ? (double)ik_ns / ticks / 1e3 : 0;
    b->realtime_factor = step_ns ? ticks * vlad_world_tick_seconds(w) / ((double)step_ns / 1e9) : 0;
    int rc = VLAD_OK;
    if (p->n_cameras > 0 && frames > 0) {
        uint8_t *img = malloc((size_t)p->cameras[0].width * (size_t)p->cameras[0].height * 3);
        if (!img) {
            rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        } else {
                vlad_world_render(w, 0, img, NULL); /* warm-up */
            int64_t a = vlad_now_ns();
            for (int i = 0; i < frames && !rc; i++) {
                vlad_world_step(w, q);
                        rc = vlad_world_render(w, 0, img, err);
            }
            int64_t z = vlad_now_ns();
            /* subtract the physics part measured above */
            b->render_ms = ((double)(z - a) / 1e6 - frames * b->tick_us / 1e3) / frames;
            b->frames = frames;
            b->width = p->cameras[0].width;
            b->height = p->cameras[0].height;
            free(img);
        }
    }
    vlad_expert_free(ex);
    vlad_world_free(w);
    return rc;
}
