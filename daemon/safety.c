#include "safety.h"

#include <math.h>
#include <string.h>

void vlad_safety_steps(const vlad_profile *p, double *step) {
    for (int j = 0; j < p->n_joints; j++) {
        double s = p->joints[j].max_velocity / p->control_hz;
        step[j] = p->safety.max_delta_per_tick < s ? p->safety.max_delta_per_tick : s;
    }
}

bool vlad_safety_clamp_limits(const vlad_profile *p, double *x) {
    bool changed = false;
    for (int j = 0; j < p->n_joints; j++) {
        double v = x[j];
        if (v < p->joints[j].min)
            v = p->joints[j].min;
        if (v > p->joints[j].max)
            v = p->joints[j].max;
        if (v != x[j]) {
            x[j] = v;
            changed = true;
        }
    }
    return changed;
}

/* the rule for one joint: non-finite -> ref; rate limit around ref; limits last */
static double rule(const vlad_joint *jt, double step, double ref, double w, bool *changed) {
    double v = isfinite(w) ? w : ref;
    if (v < ref - step)
        v = ref - step;
    if (v > ref + step)
        v = ref + step;
    if (v < jt->min)
        v = jt->min;
    if (v > jt->max)
        v = jt->max;
    if (!(v == w))
        *changed = true;
    return v;
}

bool vlad_safety_clamp(const vlad_profile *p, const double *ref, const double *want, double *out) {
    double step[VLAD_MAX_JOINTS];
    vlad_safety_steps(p, step);
    bool changed = false;
    for (int j = 0; j < p->n_joints; j++)
        out[j] = rule(&p->joints[j], step[j], ref[j], want[j], &changed);
    return changed;
}

int vlad_safety_measured(const vlad_profile *p, const double *pos, double *out, vlad_err *err) {
    double m = p->safety.obs_limit_margin;
    for (int j = 0; j < p->n_joints; j++) {
        const vlad_joint *jt = &p->joints[j];
        if (!isfinite(pos[j]) || pos[j] < jt->min - m || pos[j] > jt->max + m)
            return vlad_err_set(err, VLAD_EINVAL,
                                "joint_pos[%d] (%s): %g is outside its limits [%g, %g] by more than "
                                "safety.obs_limit_margin %g",
                                j, jt->name, pos[j], jt->min, jt->max, m);
    }
    for (int j = 0; j < p->n_joints; j++) {
        const vlad_joint *jt = &p->joints[j];
        out[j] = pos[j] < jt->min ? jt->min : pos[j] > jt->max ? jt->max : pos[j];
    }
    return VLAD_OK;
}

void vlad_gate_init(vlad_gate *g, const vlad_profile *p) {
    memset(g, 0, sizeof *g);
    g->p = p;
    g->n = p->n_joints;
    vlad_safety_steps(p, g->step);
}

void vlad_gate_anchor(vlad_gate *g, const double *measured) {
    memcpy(g->prev, measured, sizeof(double) * (size_t)g->n);
    vlad_safety_clamp_limits(g->p, g->prev); /* already inside: defensive */
    g->anchored = true;
}

bool vlad_gate_pass(vlad_gate *g, const double *want, double *out) {
    bool changed = false;
    for (int j = 0; j < g->n; j++)
        g->prev[j] = out[j] = rule(&g->p->joints[j], g->step[j], g->prev[j], want[j], &changed);
    return changed || !g->anchored;
}

bool vlad_gate_chunk(const vlad_gate *g, const double *ref, float *values, int len) {
    bool changed = false;
    double r[VLAD_MAX_JOINTS];
    memcpy(r, ref, sizeof(double) * (size_t)g->n);
    for (int i = 0; i < len; i++) {
        float *row = values + (size_t)i * (size_t)g->n;
        for (int j = 0; j < g->n; j++) {
            double v = rule(&g->p->joints[j], g->step[j], r[j], (double)row[j], &changed);
            float f = (float)v;
            /* float rounding must not step outside the limits or the rate bound (the profile
             * guarantees the window holds floats: steps are >= 4 float ulps of the range) */
            const vlad_joint *jt = &g->p->joints[j];
            for (int k = 0; k < 8; k++) {
                if ((double)f > jt->max || (double)f > r[j] + g->step[j])
                    f = nextafterf(f, -INFINITY);
                else if ((double)f < jt->min || (double)f < r[j] - g->step[j])
                    f = nextafterf(f, INFINITY);
                else
                    break;
            }
            if ((double)f != (double)row[j])
                changed = true;
            row[j] = f;
            r[j] = (double)f;
        }
    }
    return changed;
}

void vlad_watchdog_init(vlad_watchdog *w, double timeout_ms) {
    w->timeout_ns = (int64_t)(timeout_ms * 1e6);
    w->tripped = false;
}

int vlad_watchdog_check(vlad_watchdog *w, int64_t last_obs_ns, int64_t now_ns) {
    bool stale = last_obs_ns > 0 && now_ns - last_obs_ns > w->timeout_ns;
    if (stale && !w->tripped) {
        w->tripped = true;
        return 1;
    }
    if (!stale && w->tripped) {
        w->tripped = false;
        return -1;
    }
    return 0;
}
