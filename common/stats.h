/* stats.h — fixed-size latency histogram: no allocation, single writer, any readers.
 *
 * Bins are log-spaced (8 per octave) from 1 us to ~70 s; percentiles are read off the
 * bins (relative error < 9%), max/mean are exact. The writer thread calls
 * vlad_hist_add; other threads may call vlad_hist_summary at any time (relaxed atomics:
 * a summary may miss the sample being added, never reads torn values). */
#ifndef VLAD_STATS_H
#define VLAD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define VLAD_HIST_BINS 208 /* 26 octaves x 8 */

typedef struct vlad_hist {
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
    _Atomic int64_t max_ns;
    _Atomic uint32_t bins[VLAD_HIST_BINS];
} vlad_hist;

typedef struct vlad_hist_summary {
    uint64_t count;
    double p50_us, p99_us, max_us, mean_us;
} vlad_hist_summary;

/* Zero the histogram (only while no writer is active). */
void vlad_hist_init(vlad_hist *h);
/* Record one sample in ns (negative values count as 0). Writer thread only. */
void vlad_hist_add(vlad_hist *h, int64_t ns);
/* Percentile q in [0,1] in microseconds (0 when empty). */
double vlad_hist_percentile_us(const vlad_hist *h, double q);
/* Fill *s from the histogram. */
void vlad_hist_summarize(const vlad_hist *h, vlad_hist_summary *s);

#endif
