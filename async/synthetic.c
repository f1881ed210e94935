#include "synthetic.h"

#include <math.h>
#include <string.h>

#include "clock.h"

void vlad_synthetic_init(vlad_synthetic *s, const vlad_profile *p) {
    memset(s, 0, sizeof *s);
    s->dim = p->n_joints;
    int h = 2 * p->async.execution_horizon + 8;
    s->horizon = h > VLAD_AQ_MAX_H ? VLAD_AQ_MAX_H : h;
    s->period_ticks = 4.0 * p->control_hz;
    s->beta = 0.3;
    s->faults = p->policy.synthetic_faults;
    s->seed = (uint64_t)p->policy.seed;
    s->tick_s = 1.0 / p->control_hz;
    s->K = p->async.execution_horizon;
    for (int j = 0; j < s->dim; j++) {
        const vlad_joint *jt = &p->joints[j];
        double room = fmin(jt->max - jt->home, jt->home - jt->min);
        s->home[j] = jt->home;
        s->amp[j] = 0.3 * room;
        s->phase[j] = 0.7 * j;
        s->lo[j] = jt->min;
        s->hi[j] = jt->max;
    }
}

double vlad_synthetic_ref(const vlad_synthetic *s, int j, double t) {
    return s->home[j] + s->amp[j] * sin(2.0 * M_PI * t / s->period_ticks + s->phase[j]);
}

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static double unit(uint64_t *st) { /* [0, 1) */
    *st = mix(*st);
    return (double)(*st >> 11) / 9007199254740992.0;
}

/* corrupt one chunk (see the header); returns an error code for a failed inference */
static int corrupt(vlad_synthetic *s, uint64_t id, float *actions, vlad_err *err) {
    uint64_t st = mix(s->seed ^ mix(id));
    if (unit(&st) >= s->faults)
        return VLAD_OK;
    atomic_fetch_add(&s->corrupted, 1);
    int kind = (int)(unit(&st) * 6);
    int n = s->horizon * s->dim;
    switch (kind) {
    case 0: /* NaN at random places */
    case 1: /* infinities */
        for (int i = 0; i < n; i++)
            if (unit(&st) < 0.3)
                actions[i] = kind == 0 ? NAN : (unit(&st) < 0.5 ? INFINITY : -INFINITY);
        break;
    case 2: /* far outside the limits */
        for (int i = 0; i < n; i++)
            if (unit(&st) < 0.5)
                actions[i] = (float)(unit(&st) < 0.5 ? -1e3 : 1e3);
        break;
    case 3: /* the whole chunk jumps */
        for (int j = 0; j < s->dim; j++) {
            double off = (unit(&st) * 4 - 2) * (s->hi[j] - s->lo[j]);
            for (int i = 0; i < s->horizon; i++)
                actions[i * s->dim + j] += (float)off;
        }
        break;
    case 4: { /* late */
        double ms = unit(&st) * 4 * s->K * s->tick_s * 1e3;
        vlad_sleep_until_ns(vlad_now_ns() + (int64_t)(ms * 1e6));
        break;
    }
    default:
        return vlad_err_set(err, VLAD_EIO, "synthetic policy: injected failure (chunk %llu)",
                            (unsigned long long)id);
    }
    return VLAD_OK;
}

static int infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    vlad_synthetic *s = self;
    const vlad_infer_req *r = &job->req;
    int64_t t0 = r->start_tick >= 0 ? r->start_tick : r->obs_tick;
    double decay = 1.0;
    for (int i = 0; i < s->horizon; i++) {
        decay *= 1.0 - s->beta;
        for (int j = 0; j < s->dim; j++) {
            double ref = vlad_synthetic_ref(s, j, (double)(t0 + i));
            actions[i * s->dim + j] = (float)(ref + ((double)r->state[j] - ref) * decay);
        }
    }
    return s->faults > 0 ? corrupt(s, r->id, actions, err) : VLAD_OK;
}

void vlad_synthetic_ops(vlad_synthetic *s, vlad_policy_ops *ops) {
    *ops = (vlad_policy_ops){.self = s, .horizon = s->horizon, .dim = s->dim, .infer = infer,
                             .wake_fd = -1};
}
