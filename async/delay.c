#include "delay.h"

#include <string.h>

int vlad_delay_init(vlad_delay *d, int64_t tick_ns, int64_t floor_ns, int64_t prior_ns, int margin,
                    int warmup, int window, double quantile, vlad_err *err) {
    memset(d, 0, sizeof *d);
    if (tick_ns <= 0)
        return vlad_err_set(err, VLAD_EINVAL, "delay: tick %lld ns must be positive", (long long)tick_ns);
    if (window < 1 || window > VLAD_DELAY_MAX_WINDOW)
        return vlad_err_set(err, VLAD_EINVAL, "delay: window %d not in [1, %d]", window,
                            VLAD_DELAY_MAX_WINDOW);
    if (!(quantile > 0 && quantile <= 1))
        return vlad_err_set(err, VLAD_EINVAL, "delay: quantile %g not in (0, 1]", quantile);
    if (margin < 0 || warmup < 0 || floor_ns < 0 || prior_ns < 0)
        return vlad_err_set(err, VLAD_EINVAL, "delay: negative margin, warm-up, floor or prior");
    d->tick_ns = tick_ns;
    d->floor_ns = floor_ns;
    d->prior_ns = prior_ns;
    d->margin = margin;
    d->warmup = warmup;
    d->window = window;
    d->quantile = quantile;
    return VLAD_OK;
}

void vlad_delay_add(vlad_delay *d, int64_t latency_ns) {
    if (d->seen++ < (uint64_t)d->warmup)
        return;
    if (latency_ns < 0)
        latency_ns = 0;
    d->ring[d->head] = latency_ns;
    d->head = (d->head + 1) % d->window;
    if (d->count < d->window)
        d->count++;
}

int64_t vlad_delay_estimate_ns(const vlad_delay *d) {
    int64_t est = d->prior_ns;
    if (d->count > 0) {
        /* quantile by partial insertion sort of a copy (window <= 128: cheap, no alloc) */
        int64_t v[VLAD_DELAY_MAX_WINDOW];
        int n = d->count;
        for (int i = 0; i < n; i++) {
            int64_t x = d->ring[i];
            int j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        int k = (int)(d->quantile * (double)n + 0.999999) - 1; /* ceil(q n) - 1 */
        if (k < 0)
            k = 0;
        if (k >= n)
            k = n - 1;
        est = v[k];
    }
    return est > d->floor_ns ? est : d->floor_ns;
}

int vlad_ns_to_ticks(int64_t ns, int64_t tick_ns) {
    if (ns <= 0)
        return 0;
    return (int)((ns + tick_ns - 1) / tick_ns);
}

int vlad_delay_ticks(const vlad_delay *d) {
    return vlad_ns_to_ticks(vlad_delay_estimate_ns(d), d->tick_ns) + d->margin;
}
