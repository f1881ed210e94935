#include "phase.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIN_INTERVALS 8
#define MEAN_SPAN 32 /* the rate's average: the plain mean of the first 32 intervals, then an
                        exponential one over about 32 (smooth enough under scheduling jitter) */

void vlad_phase_init(vlad_phase *ph, int64_t period_ns) {
    memset(ph, 0, sizeof *ph);
    ph->period_ns = period_ns;
}

int64_t vlad_phase_observe(vlad_phase *ph, int64_t recv_ns, int64_t deadline_ns, int64_t lead_ns) {
    const int64_t P = ph->period_ns;
    if (ph->last_recv_ns) {
        int64_t dt = recv_ns - ph->last_recv_ns;
        if (dt < P - P / 4 || dt > P + P / 4) {
            /* a pause (a reset's round trip), a burst or a clock oddity: not an interval of a
             * stream at the control rate; a run of them is another rate: start again */
            if (++ph->outliers >= MIN_INTERVALS) {
                ph->interval_ns = 0;
                ph->intervals = 0;
            }
        } else {
            ph->outliers = 0;
            ph->intervals++;
            int span = ph->intervals < MEAN_SPAN ? ph->intervals : MEAN_SPAN;
            ph->interval_ns += ((double)dt - ph->interval_ns) / span;
        }
    }
    ph->last_recv_ns = recv_ns;
    ph->locked = ph->intervals >= MIN_INTERVALS && fabs(ph->interval_ns - (double)P) < 0.05 * (double)P;
    if (lead_ns < 0)
        lead_ns = 0;
    if (lead_ns > P / 2)
        lead_ns = P / 2;
    int64_t e = (deadline_ns - recv_ns) - lead_ns; /* > 0: the deadline is later than wanted */
    e %= P;                                         /* C: the sign of the dividend */
    if (e >= P / 2)
        e -= P;
    else if (e < -P / 2)
        e += P;
    ph->error_ns = e;
    ph->jitter_ns += (fabs((double)e) - ph->jitter_ns) / 8.0;
    if (!ph->locked || (ph->corrected_ns && llabs(deadline_ns - ph->corrected_ns) < P / 2))
        return 0;
    int64_t corr = -e / 4, lim = P / 10;
    if (corr > lim)
        corr = lim;
    if (corr < -lim)
        corr = -lim;
    ph->corrected_ns = deadline_ns + corr;
    return corr;
}
