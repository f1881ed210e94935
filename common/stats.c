#include "stats.h"

#include <math.h>
#include <string.h>

/* bin b covers [2^(b/8), 2^((b+1)/8)) microseconds; bin 0 also takes everything < 1 us */
static int bin_of(int64_t ns) {
    double us = (double)ns / 1000.0;
    if (us < 1.0)
        return 0;
    int b = (int)(log2(us) * 8.0);
    if (b >= VLAD_HIST_BINS)
        b = VLAD_HIST_BINS - 1;
    return b < 0 ? 0 : b;
}

void vlad_hist_init(vlad_hist *h) {
    atomic_store(&h->count, 0);
    atomic_store(&h->sum_ns, 0);
    atomic_store(&h->max_ns, 0);
    for (int i = 0; i < VLAD_HIST_BINS; i++)
        atomic_store(&h->bins[i], 0);
}

void vlad_hist_add(vlad_hist *h, int64_t ns) {
    if (ns < 0)
        ns = 0;
    int b = bin_of(ns);
    /* single writer: load+store is enough and cheaper than a locked RMW */
    atomic_store_explicit(&h->bins[b], atomic_load_explicit(&h->bins[b], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&h->sum_ns,
                          atomic_load_explicit(&h->sum_ns, memory_order_relaxed) + (uint64_t)ns,
                          memory_order_relaxed);
    if (ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
        atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
    atomic_store_explicit(&h->count, atomic_load_explicit(&h->count, memory_order_relaxed) + 1,
                          memory_order_release);
}

double vlad_hist_percentile_us(const vlad_hist *h, double q) {
    uint32_t bins[VLAD_HIST_BINS];
    uint64_t total = 0;
    for (int i = 0; i < VLAD_HIST_BINS; i++) {
        bins[i] = atomic_load_explicit(&h->bins[i], memory_order_relaxed);
        total += bins[i];
    }
    if (total == 0)
        return 0.0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0)
        rank = 1;
    uint64_t acc = 0;
    for (int i = 0; i < VLAD_HIST_BINS; i++) {
        acc += bins[i];
        if (acc >= rank) {
            double lo = i == 0 ? 0.0 : exp2(i / 8.0), hi = exp2((i + 1) / 8.0);
            double mid = i == 0 ? hi / 2 : sqrt(lo * hi);
            double mx = (double)atomic_load_explicit(&h->max_ns, memory_order_relaxed) / 1000.0;
            return mid < mx ? mid : mx;
        }
    }
    return (double)atomic_load_explicit(&h->max_ns, memory_order_relaxed) / 1000.0;
}

void vlad_hist_summarize(const vlad_hist *h, vlad_hist_summary *s) {
    memset(s, 0, sizeof *s);
    s->count = atomic_load_explicit(&h->count, memory_order_acquire);
    if (s->count == 0)
        return;
    s->mean_us = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1000.0 /
                 (double)s->count;
    s->max_us = (double)atomic_load_explicit(&h->max_ns, memory_order_relaxed) / 1000.0;
    s->p50_us = vlad_hist_percentile_us(h, 0.50);
    s->p99_us = vlad_hist_percentile_us(h, 0.99);
}
