#include "synthetic.h"

#include <math.h>
#include <string.h>

void vlad_synthetic_init(vlad_synthetic *s, const vlad_profile *p) {
    memset(s, 0, sizeof *s);
    s->dim = p->n_joints;
    int h = 2 * p->async.execution_horizon + 8;
    s->horizon = h > VLAD_AQ_MAX_H ? VLAD_AQ_MAX_H : h;
    s->period_ticks = 4.0 * p->control_hz;
    s->beta = 0.3;
    for (int j = 0; j < s->dim; j++) {
        const vlad_joint *jt = &p->joints[j];
        double room = fmin(jt->max - jt->home, jt->home - jt->min);
        s->home[j] = jt->home;
        s->amp[j] = 0.3 * room;
        s->phase[j] = 0.7 * j;
    }
}

double vlad_synthetic_ref(const vlad_synthetic *s, int j, double t) {
    return s->home[j] + s->amp[j] * sin(2.0 * M_PI * t / s->period_ticks + s->phase[j]);
}

static int infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    (void)err;
    const vlad_synthetic *s = self;
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
    return VLAD_OK;
}

void vlad_synthetic_ops(vlad_synthetic *s, vlad_policy_ops *ops) {
    ops->self = s;
    ops->horizon = s->horizon;
    ops->dim = s->dim;
    ops->infer = infer;
}
