/* tasks.c — task layouts, dynamics, checks and labels; see tasks.h. */
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- difficulty table ---------------------------------------------------------------
 * Tuned so that the scripted expert (instant reaction) succeeds >= 95% while a plan made
 * on a 4-tick-stale state misses often on track and whack (see sim/README.md). */
static const vlad_task_params defaults[VLAD_TASK_COUNT] = {
    [VLAD_TASK_REACH] = {.max_s = 3.0, .tol = 0.03, .n_distractors = 2},
    [VLAD_TASK_TRACK] = {.max_s = 3.0, .tol = 0.025, .speed = 0.3, .turn_min_s = 0.3,
                         .turn_max_s = 0.7, .grace_s = 0.6, .on_frac = 0.85},
    [VLAD_TASK_WHACK] = {.max_s = 7.0, .tol = 0.03, .n_targets = 5, .window_s = 0.45,
                         .gap_min_s = 0.1, .gap_max_s = 0.3, .min_hits = 0},
    [VLAD_TASK_PUSH] = {.max_s = 6.0, .goal_radius = 0.035},
};

/* Workspace: targets lie at radius R_MIN..R_MAX from the base, azimuth within +-AZ. */
#define R_MIN 0.20
#define R_MAX 0.36
#define AZ 0.6
#define BALL_Z 0.025  /* a ball resting on the table */
#define TRACK_Z 0.09  /* track target height */
#define TRACK_X0 0.20
#define TRACK_X1 0.38
#define TRACK_Y 0.16
#define WHACK_SEP 0.15 /* m between successive whack targets */

static const char *colour_names[VLAD_COLOUR_COUNT] = {"red", "green", "blue", "yellow"};
static const float colour_rgb[VLAD_COLOUR_COUNT][3] = {
    {0.92f, 0.08f, 0.08f}, {0.08f, 0.78f, 0.15f}, {0.10f, 0.30f, 0.98f}, {0.98f, 0.86f, 0.05f}};
static const char *task_names[VLAD_TASK_COUNT] = {"reach", "track", "whack", "push"};

const char *vlad_task_name(vlad_task_kind k) {
    return k >= 0 && k < VLAD_TASK_COUNT ? task_names[k] : "?";
}

int vlad_task_parse(const char *s, vlad_task_kind *out) {
    for (int k = 0; k < VLAD_TASK_COUNT; k++)
        if (!strcmp(s, task_names[k])) {
            *out = (vlad_task_kind)k;
            return VLAD_OK;
        }
    return VLAD_EINVAL;
}

const char *vlad_colour_name(int c) { return c >= 0 && c < VLAD_COLOUR_COUNT ? colour_names[c] : "?"; }
const float *vlad_colour_rgb(int c) { return colour_rgb[c >= 0 && c < VLAD_COLOUR_COUNT ? c : 0]; }

vlad_task_params vlad_task_default_params(vlad_task_kind k) {
    return defaults[k >= 0 && k < VLAD_TASK_COUNT ? k : 0];
}

int vlad_task_param_set(vlad_task_params *prm, const char *name, double v) {
#define KNOB(f)                                                                                    \
    if (!strcmp(name, #f)) {                                                                       \
        prm->f = v;                                                                                \
        return VLAD_OK;                                                                            \
    }
#define IKNOB(f)                                                                                   \
    if (!strcmp(name, #f)) {                                                                       \
        prm->f = (int)v;                                                                           \
        return VLAD_OK;                                                                            \
    }
    KNOB(max_s) KNOB(tol) IKNOB(n_distractors) KNOB(speed) KNOB(turn_min_s) KNOB(turn_max_s)
    KNOB(grace_s) KNOB(on_frac) IKNOB(n_targets) KNOB(window_s) KNOB(gap_min_s) KNOB(gap_max_s)
    IKNOB(min_hits) KNOB(goal_radius)
#undef KNOB
#undef IKNOB
    return VLAD_EINVAL;
}

void vlad_task_events_add(vlad_task_events *ev, vlad_ev_kind kind, const char *detail) {
    if (!ev || ev->n >= VLAD_TASK_MAX_EVENTS)
        return;
    ev->ev[ev->n].kind = kind;
    snprintf(ev->ev[ev->n].detail, sizeof ev->ev[ev->n].detail, "%s", detail ? detail : "");
    ev->n++;
}

static int secs(const vlad_task *t, double s) { return (int)lround(s * t->hz); }

static double dist3(const double *a, const double *b) {
    double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return sqrt(dx * dx + dy * dy + dz * dz);
}

static double dist2(const double *a, const double *b) {
    double dx = a[0] - b[0], dy = a[1] - b[1];
    return sqrt(dx * dx + dy * dy);
}

static void sample_ws(vlad_rng *r, double z, double out[3]) {
    double rad = vlad_rng_range(r, R_MIN, R_MAX), az = vlad_rng_range(r, -AZ, AZ);
    out[0] = rad * cos(az);
    out[1] = rad * sin(az);
    out[2] = z;
}

/* Sample a workspace point at least `sep` (xy) from the n points in pts. */
static void sample_apart(vlad_rng *r, double z, double sep, double (*pts)[3], int n, double out[3]) {
    for (int tries = 0; tries < 200; tries++) {
        sample_ws(r, z, out);
        bool ok = true;
        for (int i = 0; i < n; i++)
            if (dist2(out, pts[i]) < sep)
                ok = false;
        if (ok)
            return;
    }
}

static void shuffle_colours(vlad_rng *r, int *c) {
    for (int i = 0; i < VLAD_COLOUR_COUNT; i++)
        c[i] = i;
    for (int i = VLAD_COLOUR_COUNT - 1; i > 0; i--) {
        int j = vlad_rng_int(r, i + 1), tmp = c[i];
        c[i] = c[j];
        c[j] = tmp;
    }
}

static void new_heading(vlad_task *t, double min_turn) {
    double a = atan2(t->vel[1], t->vel[0]);
    double turn = vlad_rng_range(&t->rng, min_turn, M_PI);
    a += vlad_rng_unif(&t->rng) < 0.5 ? -turn : turn;
    t->vel[0] = t->prm.speed * cos(a);
    t->vel[1] = t->prm.speed * sin(a);
    t->vel[2] = 0;
}

int vlad_task_begin(vlad_task *t, vlad_task_kind kind, const vlad_task_params *prm, double control_hz,
                    uint64_t seed, vlad_err *err) {
    if (kind < 0 || kind >= VLAD_TASK_COUNT)
        return vlad_err_set(err, VLAD_EINVAL, "unknown task %d", (int)kind);
    if (!(control_hz > 0))
        return vlad_err_set(err, VLAD_EINVAL, "control_hz must be > 0");
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->prm = prm ? *prm : defaults[kind];
    if (t->prm.n_distractors < 0 || t->prm.n_distractors > VLAD_WORLD_N_OBJ - 1 ||
        t->prm.n_targets < 0 || t->prm.n_targets > 64 || !(t->prm.max_s > 0))
        return vlad_err_set(err, VLAD_EINVAL, "task %s: parameters out of range", task_names[kind]);
    t->hz = control_hz;
    t->max_ticks = secs(t, t->prm.max_s);
    t->success_k = -1;
    t->acquired_k = -1;
    vlad_rng_seed(&t->rng, seed ^ (0x5851F42D4C957F2DULL * (uint64_t)(kind + 1)));
    int col[VLAD_COLOUR_COUNT];
    shuffle_colours(&t->rng, col);
    switch (kind) {
    case VLAD_TASK_REACH: {
        static const char *fmt[] = {"touch the %s ball", "reach the %s ball", "go to the %s ball"};
        t->n_obj = 1 + t->prm.n_distractors;
        double pts[VLAD_WORLD_N_OBJ][3];
        for (int i = 0; i < t->n_obj; i++) {
            sample_apart(&t->rng, BALL_Z, 0.1, pts, i, pts[i]);
            memcpy(t->obj[i].pos, pts[i], sizeof pts[i]);
            t->obj[i].colour = col[i];
            t->obj[i].visible = true;
        }
        snprintf(t->instruction, sizeof t->instruction, fmt[vlad_rng_int(&t->rng, 3)],
                 colour_names[col[0]]);
        break;
    }
    case VLAD_TASK_TRACK: {
        t->n_obj = 1;
        t->obj[0].colour = col[0];
        t->obj[0].visible = true;
        t->obj[0].pos[0] = vlad_rng_range(&t->rng, TRACK_X0 + 0.04, TRACK_X1 - 0.04);
        t->obj[0].pos[1] = vlad_rng_range(&t->rng, -TRACK_Y + 0.04, TRACK_Y - 0.04);
        t->obj[0].pos[2] = TRACK_Z;
        double a = vlad_rng_range(&t->rng, -M_PI, M_PI);
        t->vel[0] = t->prm.speed * cos(a);
        t->vel[1] = t->prm.speed * sin(a);
        t->next_turn = secs(t, vlad_rng_range(&t->rng, t->prm.turn_min_s, t->prm.turn_max_s));
        snprintf(t->instruction, sizeof t->instruction, "follow the %s ball", colour_names[col[0]]);
        break;
    }
    case VLAD_TASK_WHACK:
        t->n_obj = 1;
        t->obj[0].colour = col[0];
        t->obj[0].visible = false;
        t->pop_k = t->vanish_k = -1;
        t->next_pop_k = secs(t, 0.2);
        snprintf(t->instruction, sizeof t->instruction, "hit each %s ball as soon as it appears",
                 colour_names[col[0]]);
        break;
    case VLAD_TASK_PUSH: {
        double b[3], g[3];
        for (int tries = 0; tries < 500; tries++) {
            sample_ws(&t->rng, 0, b);
            double d = vlad_rng_range(&t->rng, 0.08, 0.14), a = vlad_rng_range(&t->rng, -M_PI, M_PI);
            g[0] = b[0] + d * cos(a);
            g[1] = b[1] + d * sin(a);
            double r = hypot(g[0], g[1]), az = atan2(g[1], g[0]);
            if (r >= R_MIN && r <= R_MAX && fabs(az) <= AZ)
                break;
        }
        t->block0[0] = b[0];
        t->block0[1] = b[1];
        t->block_yaw = vlad_rng_range(&t->rng, -0.4, 0.4);
        t->goal[0] = g[0];
        t->goal[1] = g[1];
        t->block_colour = col[0];
        t->goal_colour = col[1];
        snprintf(t->instruction, sizeof t->instruction, "push the %s block onto the %s circle",
                 colour_names[col[0]], colour_names[col[1]]);
        break;
    }
    default:
        break;
    }
    return VLAD_OK;
}

static void finish(vlad_task *t, bool success, vlad_task_events *ev, const char *why) {
    t->done = true;
    t->success = success;
    t->failed = !success;
    if (success) {
        t->success_k = t->k;
        vlad_task_events_add(ev, VLAD_EV_SUCCESS, task_names[t->kind]);
    }
    vlad_task_events_add(ev, VLAD_EV_END, why);
}

static void update_track(vlad_task *t, const vlad_task_state *s, vlad_task_events *ev) {
    double *p = t->obj[0].pos;
    if (t->k > 0) {
        bool changed = false;
        if (!t->forecast && t->k >= t->next_turn) {
            new_heading(t, M_PI / 3);
            t->next_turn = t->k + secs(t, vlad_rng_range(&t->rng, t->prm.turn_min_s, t->prm.turn_max_s));
            changed = true;
        }
        double dt = 1.0 / t->hz;
        double nx = p[0] + t->vel[0] * dt, ny = p[1] + t->vel[1] * dt;
        if (nx < TRACK_X0 || nx > TRACK_X1) { /* bounce off the region's edge */
            t->vel[0] = -t->vel[0];
            changed = true;
        }
        if (ny < -TRACK_Y || ny > TRACK_Y) {
            t->vel[1] = -t->vel[1];
            changed = true;
        }
        p[0] += t->vel[0] * dt;
        p[1] += t->vel[1] * dt;
        if (changed) {
            t->world_changes++;
            vlad_task_events_add(ev, VLAD_EV_WORLD_CHANGE, "target turned");
        }
    }
    bool on = dist3(s->ee, p) <= t->prm.tol;
    if (on && t->acquired_k < 0)
        t->acquired_k = t->k;
    if (t->k >= secs(t, t->prm.grace_s)) {
        t->scored_ticks++;
        t->on_ticks += on;
    }
    if (t->k >= t->max_ticks - 1) {
        bool ok = t->scored_ticks > 0 && (double)t->on_ticks >= t->prm.on_frac * t->scored_ticks;
        finish(t, ok, ev, ok ? "success" : "failure");
        if (ok)
            t->success_k = t->acquired_k;
    }
}

static void update_whack(vlad_task *t, const vlad_task_state *s, vlad_task_events *ev) {
    const int need = t->prm.min_hits > 0 ? t->prm.min_hits : t->prm.n_targets;
    if (t->obj[0].visible) {
        if (dist3(s->ee, t->obj[0].pos) <= t->prm.tol) {
            t->hits++;
            if (t->k - t->pop_k > t->hit_ticks_max)
                t->hit_ticks_max = t->k - t->pop_k;
            t->obj[0].visible = false;
        } else if (t->k >= t->vanish_k) {
            t->misses++;
            t->obj[0].visible = false;
        }
        if (!t->obj[0].visible)
            t->next_pop_k = t->k + secs(t, vlad_rng_range(&t->rng, t->prm.gap_min_s, t->prm.gap_max_s));
    }
    if (!t->obj[0].visible && t->popped >= t->prm.n_targets) {
        if (t->hits >= need) {
            finish(t, true, ev, "success");
        } else {
            finish(t, false, ev, "failure");
        }
        return;
    }
    if (!t->forecast && !t->obj[0].visible && t->k >= t->next_pop_k) {
        double prev[1][3];
        memcpy(prev[0], t->obj[0].pos, sizeof prev[0]);
        sample_apart(&t->rng, BALL_Z + 0.005, WHACK_SEP, prev, t->popped > 0 ? 1 : 0, t->obj[0].pos);
        t->obj[0].visible = true;
        t->pop_k = t->k;
        t->vanish_k = t->k + secs(t, t->prm.window_s);
        t->popped++;
        t->world_changes++;
        char d[32];
        snprintf(d, sizeof d, "target %d appeared", t->popped);
        vlad_task_events_add(ev, VLAD_EV_WORLD_CHANGE, d);
    }
    if (t->k >= t->max_ticks - 1)
        finish(t, false, ev, "timeout");
}

void vlad_task_update(vlad_task *t, const vlad_task_state *s, vlad_task_events *ev) {
    if (t->done)
        return;
    switch (t->kind) {
    case VLAD_TASK_REACH:
        if (dist3(s->ee, t->obj[0].pos) <= t->prm.tol) {
            finish(t, true, ev, "success");
        } else {
            for (int i = 1; i < t->n_obj; i++)
                if (dist3(s->ee, t->obj[i].pos) <= t->prm.tol) {
                    finish(t, false, ev, "touched a distractor");
                    break;
                }
            if (!t->done && t->k >= t->max_ticks - 1)
                finish(t, false, ev, "timeout");
        }
        break;
    case VLAD_TASK_TRACK:
        update_track(t, s, ev);
        break;
    case VLAD_TASK_WHACK:
        update_whack(t, s, ev);
        break;
    case VLAD_TASK_PUSH:
        if (dist2(s->block, t->goal) <= t->prm.goal_radius)
            finish(t, true, ev, "success");
        else if (t->k >= t->max_ticks - 1)
            finish(t, false, ev, "timeout");
        break;
    default:
        break;
    }
    t->k++;
}

void vlad_task_sync_world(const vlad_task *t, vlad_world *w, bool place_block) {
    for (int i = 0; i < VLAD_WORLD_N_OBJ; i++) {
        if (i < t->n_obj && t->obj[i].visible)
            vlad_world_set_object(w, i, t->obj[i].pos, colour_rgb[t->obj[i].colour]);
        else
            vlad_world_set_object(w, i, NULL, NULL);
    }
    if (t->kind == VLAD_TASK_PUSH) {
        vlad_world_set_goal(w, t->goal, t->prm.goal_radius + 0.005, colour_rgb[t->goal_colour]);
        if (place_block)
            vlad_world_set_block(w, t->block0, t->block_yaw, colour_rgb[t->block_colour]);
    } else {
        vlad_world_set_goal(w, NULL, 0, NULL);
    }
}

/* Where a point appears in the "front" camera (which looks back at the robot along -x):
 * world +y is image right. */
static const char *side(const double *p) {
    return p[1] < -0.04 ? "left" : p[1] > 0.04 ? "right" : "center";
}

static void qa(vlad_labels *l, const char *q, const char *a) {
    if (l->n_qa >= VLAD_LABEL_MAX_QA)
        return;
    snprintf(l->qa[l->n_qa].q, sizeof l->qa[l->n_qa].q, "%s", q);
    snprintf(l->qa[l->n_qa].a, sizeof l->qa[l->n_qa].a, "%s", a);
    l->n_qa++;
}

void vlad_task_labels(const vlad_task *t, const vlad_task_state *s, vlad_labels *l) {
    memset(l, 0, sizeof *l);
    char buf[24];
    const char *cname = colour_names[t->obj[0].colour];
    switch (t->kind) {
    case VLAD_TASK_REACH: {
        bool at = dist3(s->ee, t->obj[0].pos) <= t->prm.tol;
        snprintf(l->commentary, sizeof l->commentary, "%s the %s ball", at ? "touching" : "moving to",
                 cname);
        qa(l, "which colour is the target?", cname);
        qa(l, "where is the target?", side(t->obj[0].pos));
        snprintf(buf, sizeof buf, "%d", t->n_obj);
        qa(l, "how many balls are there?", buf);
        qa(l, "is the target touched?", at ? "yes" : "no");
        break;
    }
    case VLAD_TASK_TRACK: {
        bool on = dist3(s->ee, t->obj[0].pos) <= t->prm.tol;
        snprintf(l->commentary, sizeof l->commentary, "%s the %s ball", on ? "following" : "catching up with",
                 cname);
        qa(l, "which colour is the target?", cname);
        qa(l, "where is the target?", side(t->obj[0].pos));
        const char *dir = fabs(t->vel[1]) >= fabs(t->vel[0]) ? (t->vel[1] > 0 ? "right" : "left")
                                                              : (t->vel[0] > 0 ? "toward" : "away");
        qa(l, "which way is the target moving?", dir);
        qa(l, "is the arm on the target?", on ? "yes" : "no");
        break;
    }
    case VLAD_TASK_WHACK: {
        bool vis = t->obj[0].visible;
        if (vis)
            snprintf(l->commentary, sizeof l->commentary, "hitting the %s ball on the %s", cname,
                     side(t->obj[0].pos));
        else
            snprintf(l->commentary, sizeof l->commentary, "waiting for a %s ball", cname);
        qa(l, "is a target visible?", vis ? "yes" : "no");
        qa(l, "where is the target?", vis ? side(t->obj[0].pos) : "none");
        qa(l, "which colour is the target?", cname);
        snprintf(buf, sizeof buf, "%d", t->hits);
        qa(l, "how many targets were hit?", buf);
        break;
    }
    case VLAD_TASK_PUSH: {
        double g[3] = {t->goal[0], t->goal[1], 0};
        bool in = dist2(s->block, t->goal) <= t->prm.goal_radius;
        bool near = dist2(s->ee, s->block) < 0.06 && s->ee[2] < 0.05;
        snprintf(l->commentary, sizeof l->commentary, "%s the %s block",
                 in ? "placed" : near ? "pushing" : "approaching", colour_names[t->block_colour]);
        qa(l, "which colour is the block?", colour_names[t->block_colour]);
        qa(l, "where is the block?", side(s->block));
        qa(l, "where is the goal?", side(g));
        qa(l, "is the block on the goal?", in ? "yes" : "no");
        break;
    }
    default:
        break;
    }
}

void vlad_task_forecast(vlad_task *t) { t->forecast = true; }

double vlad_task_score(const vlad_task *t) {
    switch (t->kind) {
    case VLAD_TASK_TRACK:
        return t->scored_ticks ? (double)t->on_ticks / t->scored_ticks : 0;
    case VLAD_TASK_WHACK:
        return t->prm.n_targets ? (double)t->hits / t->prm.n_targets : 0;
    default:
        return t->success ? 1 : 0;
    }
}
