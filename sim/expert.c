/* expert.c — scripted expert; see expert.h. */
#include "expert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Motion knobs of the expert. */
#define V_AVG 0.6       /* m/s, average speed of a minimum-jerk segment */
#define V_AVG_WHACK 0.9 /* faster segments toward whack targets */
#define T_MIN 0.16      /* s, shortest segment */
#define T_MAX 0.9       /* s, longest segment */
#define HOVER 0.06      /* m above a reach target before descending */
#define TRACK_LEAD 2.0  /* ticks of target motion to lead by (actuator lag) */
#define TRACK_VMAX 0.9  /* m/s, speed limit while tracking */
#define PUSH_Z_HIGH 0.075
#define PUSH_STANDOFF 0.075 /* m behind the block's centre before descending */
#define PUSH_DEPTH 0.016    /* m the command leads into the block */
#define PUSH_V 0.14         /* m/s pushing speed */

enum { PH_IDLE, PH_APPROACH, PH_DESCEND, PH_TRACK, PH_PUSH, PH_RETREAT, PH_DONE };
static const char *phase_names[] = {"idle", "approach", "descend", "track", "push", "retreat", "done"};

struct vlad_expert {
    const vlad_profile *p;
    vlad_world *w;
    int n;
    double dt;
    double q_cmd[VLAD_MAX_JOINTS], q_ik[VLAD_MAX_JOINTS], home[VLAD_MAX_JOINTS];
    double pos[3], vel[3], acc[3]; /* commanded end-effector point and its derivatives */
    /* current quintic segment */
    bool seg;
    double c[6][3];
    double T, tau;
    int phase;
    int last_pop;
};

vlad_expert *vlad_expert_new(const vlad_profile *p, vlad_world *w, vlad_err *err) {
    vlad_expert *e = calloc(1, sizeof *e);
    if (!e) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        return NULL;
    }
    e->p = p;
    e->w = w;
    e->n = p->n_joints;
    e->dt = 1.0 / p->control_hz;
    for (int j = 0; j < e->n; j++)
        e->home[j] = p->joints[j].home;
    return e;
}

void vlad_expert_free(vlad_expert *e) { free(e); }

void vlad_expert_begin(vlad_expert *e, const double *q, const double ee[3]) {
    memcpy(e->q_cmd, q, sizeof(double) * (size_t)e->n);
    memcpy(e->q_ik, q, sizeof(double) * (size_t)e->n);
    memcpy(e->pos, ee, sizeof e->pos);
    memset(e->vel, 0, sizeof e->vel);
    memset(e->acc, 0, sizeof e->acc);
    e->seg = false;
    e->phase = PH_IDLE;
    e->last_pop = -1;
}

const char *vlad_expert_phase(const vlad_expert *e) { return phase_names[e->phase]; }

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static double dur(double d, double vavg) { return clampd(d / vavg, T_MIN, T_MAX); }

/* Quintic from the current (pos, vel, acc) to rest at p1 in T seconds. */
static void segment_to(vlad_expert *e, const double p1[3], double T) {
    double T2 = T * T, T3 = T2 * T, T4 = T3 * T, T5 = T4 * T;
    for (int i = 0; i < 3; i++) {
        double p0 = e->pos[i], v0 = e->vel[i], a0 = e->acc[i], dp = p1[i] - p0;
        e->c[0][i] = p0;
        e->c[1][i] = v0;
        e->c[2][i] = a0 / 2;
        e->c[3][i] = (20 * dp - 12 * v0 * T - 3 * a0 * T2) / (2 * T3);
        e->c[4][i] = (-30 * dp + 16 * v0 * T + 3 * a0 * T2) / (2 * T4);
        e->c[5][i] = (12 * dp - 6 * v0 * T - a0 * T2) / (2 * T5);
    }
    e->T = T;
    e->tau = 0;
    e->seg = true;
}

static double dist3(const double *a, const double *b) {
    return sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
}

/* Advance the segment by one tick; returns true when it has finished. */
static bool segment_step(vlad_expert *e) {
    if (!e->seg)
        return true;
    e->tau += e->dt;
    double s = e->tau < e->T ? e->tau : e->T;
    for (int i = 0; i < 3; i++) {
        const double c0 = e->c[0][i], c1 = e->c[1][i], c2 = e->c[2][i], c3 = e->c[3][i],
                     c4 = e->c[4][i], c5 = e->c[5][i];
        e->pos[i] = c0 + s * (c1 + s * (c2 + s * (c3 + s * (c4 + s * c5))));
        e->vel[i] = c1 + s * (2 * c2 + s * (3 * c3 + s * (4 * c4 + s * 5 * c5)));
        e->acc[i] = 2 * c2 + s * (6 * c3 + s * (12 * c4 + s * 20 * c5));
    }
    if (e->tau >= e->T - 1e-9) {
        e->seg = false;
        memset(e->vel, 0, sizeof e->vel);
        memset(e->acc, 0, sizeof e->acc);
        return true;
    }
    return false;
}

/* Move the commanded point straight toward p_des at most vmax*dt (no segment). */
static void follow(vlad_expert *e, const double p_des[3], double vmax) {
    double d = dist3(p_des, e->pos), step = vmax * e->dt, s = d > step ? step / d : 1.0;
    for (int i = 0; i < 3; i++) {
        double np = e->pos[i] + s * (p_des[i] - e->pos[i]);
        double nv = (np - e->pos[i]) / e->dt;
        e->acc[i] = (nv - e->vel[i]) / e->dt;
        e->vel[i] = nv;
        e->pos[i] = np;
    }
    e->seg = false;
}

static void act_reach(vlad_expert *e, const vlad_task *t) {
    const double *g = t->obj[0].pos;
    double above[3] = {g[0], g[1], g[2] + HOVER}, at[3] = {g[0], g[1], g[2] - 0.004};
    if (e->phase == PH_IDLE) {
        segment_to(e, above, dur(dist3(e->pos, above), V_AVG));
        e->phase = PH_APPROACH;
    }
    bool done = segment_step(e);
    if (done && e->phase == PH_APPROACH) {
        segment_to(e, at, dur(HOVER, 0.4));
        e->phase = PH_DESCEND;
    }
}

static void act_track(vlad_expert *e, const vlad_task *t) {
    const double *g = t->obj[0].pos;
    if (e->phase == PH_IDLE) {
        double T = dur(dist3(e->pos, g), V_AVG);
        double meet[3] = {g[0] + t->vel[0] * T, g[1] + t->vel[1] * T, g[2]};
        segment_to(e, meet, T);
        e->phase = PH_APPROACH;
    }
    if (e->phase == PH_APPROACH) {
        if (segment_step(e))
            e->phase = PH_TRACK;
        return;
    }
    double lead = TRACK_LEAD * e->dt;
    double want[3] = {g[0] + t->vel[0] * lead, g[1] + t->vel[1] * lead, g[2]};
    follow(e, want, TRACK_VMAX);
}

static void act_whack(vlad_expert *e, const vlad_task *t) {
    if (t->obj[0].visible && t->pop_k != e->last_pop) {
        e->last_pop = t->pop_k;
        const double *g = t->obj[0].pos;
        double at[3] = {g[0], g[1], g[2] - 0.003};
        segment_to(e, at, dur(dist3(e->pos, at), V_AVG_WHACK));
        e->phase = PH_APPROACH;
    }
    if (segment_step(e) && e->phase == PH_APPROACH)
        e->phase = PH_IDLE;
}

static void act_push(vlad_expert *e, const vlad_task *t, const vlad_task_state *s) {
    const double *b = s->block;
    double half = vlad_world_block_half(e->w), r = vlad_world_ee_radius(e->w);
    double dx = t->goal[0] - b[0], dy = t->goal[1] - b[1], dn = hypot(dx, dy);
    if (dn < 0.004) { /* there: hold */
        e->phase = PH_DONE;
        segment_step(e);
        return;
    }
    double ux = dx / dn, uy = dy / dn;
    double zp = half; /* push at the block's centre height */
    switch (e->phase) {
    case PH_IDLE:
    case PH_DONE: {
        double pre[3] = {b[0] - ux * PUSH_STANDOFF, b[1] - uy * PUSH_STANDOFF, PUSH_Z_HIGH};
        segment_to(e, pre, dur(dist3(e->pos, pre), V_AVG));
        e->phase = PH_APPROACH;
        break;
    }
    case PH_APPROACH:
        if (segment_step(e)) {
            double pre[3] = {b[0] - ux * PUSH_STANDOFF, b[1] - uy * PUSH_STANDOFF, zp};
            segment_to(e, pre, dur(dist3(e->pos, pre), 0.35));
            e->phase = PH_DESCEND;
        }
        break;
    case PH_DESCEND:
        if (segment_step(e))
            e->phase = PH_PUSH;
        break;
    case PH_PUSH: {
        /* stay on the line block->goal, lead into the block by PUSH_DEPTH */
        double rx = b[0] - e->pos[0], ry = b[1] - e->pos[1];
        double along = rx * ux + ry * uy, lat = fabs(-rx * uy + ry * ux);
        if (lat > 0.6 * half || along < half * 0.5) {
            double up[3] = {e->pos[0] - ux * 0.02, e->pos[1] - uy * 0.02, PUSH_Z_HIGH};
            segment_to(e, up, dur(dist3(e->pos, up), 0.35));
            e->phase = PH_RETREAT;
            break;
        }
        double c = half + r - PUSH_DEPTH;
        double want[3] = {b[0] - ux * c, b[1] - uy * c, zp};
        follow(e, want, PUSH_V);
        break;
    }
    case PH_RETREAT:
        if (segment_step(e))
            e->phase = PH_IDLE;
        break;
    default:
        break;
    }
}

void vlad_expert_act(vlad_expert *e, const vlad_task *t, const vlad_task_state *s, double *q_out) {
    switch (t->kind) {
    case VLAD_TASK_REACH:
        act_reach(e, t);
        break;
    case VLAD_TASK_TRACK:
        act_track(e, t);
        break;
    case VLAD_TASK_WHACK:
        act_whack(e, t);
        break;
    case VLAD_TASK_PUSH:
        act_push(e, t, s);
        break;
    default:
        break;
    }
    vlad_world_ik(e->w, e->pos, e->q_ik, e->home, e->q_ik);
    for (int j = 0; j < e->n; j++) {
        const vlad_joint *jt = &e->p->joints[j];
        double step = jt->max_velocity * e->dt;
        double q = clampd(e->q_ik[j], e->q_cmd[j] - step, e->q_cmd[j] + step);
        q_out[j] = e->q_cmd[j] = clampd(q, jt->min, jt->max);
    }
}
