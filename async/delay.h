/* delay.h — inference delay estimation, in control ticks.
 *
 * Robust where LeRobot's running maximum is not: the first `warmup` samples (allocator,
 * page faults, BLAS thread start) are ignored; the estimate is a high quantile of the
 * last `window` samples, so a one-off spike is forgotten once it leaves the window and
 * rare outliers above the quantile never drive it. The profile's min_latency floors the
 * estimate (emulating a slower model). Δ = ceil(estimate / tick) + margin.
 * Owned by one thread (the control thread); no allocation. */
#ifndef VLAD_DELAY_H
#define VLAD_DELAY_H

#include <stdint.h>

#include "err.h"

#define VLAD_DELAY_MAX_WINDOW 128

typedef struct vlad_delay {
    int64_t tick_ns;       /* control period */
    int64_t floor_ns;      /* min_latency: the estimate never goes below */
    int64_t prior_ns;      /* used until the first post-warm-up sample */
    int margin;            /* ticks added to ceil(estimate / tick) */
    int warmup, window;
    double quantile;
    uint64_t seen;         /* samples offered, warm-up included */
    int count, head;       /* samples in the ring */
    int64_t ring[VLAD_DELAY_MAX_WINDOW];
} vlad_delay;

/* tick_ns > 0; window in [1, VLAD_DELAY_MAX_WINDOW]; quantile in (0, 1]. */
int vlad_delay_init(vlad_delay *d, int64_t tick_ns, int64_t floor_ns, int64_t prior_ns, int margin,
                    int warmup, int window, double quantile, vlad_err *err);

/* Record one measured inference latency. */
void vlad_delay_add(vlad_delay *d, int64_t latency_ns);

/* Current latency estimate in ns (quantile of the window, floored). */
int64_t vlad_delay_estimate_ns(const vlad_delay *d);

/* Current delay in ticks: ceil(estimate / tick) + margin. */
int vlad_delay_ticks(const vlad_delay *d);

/* ceil(ns / tick_ns) for ns >= 0. */
int vlad_ns_to_ticks(int64_t ns, int64_t tick_ns);

#endif
