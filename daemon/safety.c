#include "safety.h"

#include <math.h>

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

bool vlad_safety_clamp(const vlad_profile *p, const double *prev, const double *want, double *out) {
    bool changed = false;
    for (int j = 0; j < p->n_joints; j++) {
        double w = want[j];
        if (!isfinite(w)) {
            w = prev[j];
            changed = true;
        }
        double step = p->joints[j].max_velocity / p->control_hz;
        if (p->safety.max_delta_per_tick < step)
            step = p->safety.max_delta_per_tick;
        double lo = prev[j] - step, hi = prev[j] + step;
        double v = w < lo ? lo : (w > hi ? hi : w);
        if (v != w)
            changed = true;
        out[j] = v;
    }
    if (vlad_safety_clamp_limits(p, out))
        changed = true;
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
