/* vladctl_metrics.h — a daemon Status as Prometheus text exposition (format 0.0.4), for
 * node-exporter's textfile collector (`vladctl metrics`).
 *
 * Every sample carries the robot label. The families follow the Status descriptor, so a field
 * added to proto/vlad.proto is exported without a change here:
 *   uint64 fields          counters  <prefix>_<field>_total   (episode_* fields: gauges, a reset
 *                                                               zeroes them)
 *   other numbers, bools   gauges    <prefix>_<field>          (_s -> _seconds, _per_s -> _per_second)
 *   enums                  one gauge per value, 1 for the current one:
 *                                    <prefix>_mode{robot="arm",mode="running"} 1
 *   LatencyStats           summaries <prefix>_inference_latency_seconds, <prefix>_tick_jitter_seconds
 *                          (quantile 0.5 and 0.99, _sum = mean x count, _count), and their maximum
 *                          as the gauge <prefix>_..._max_seconds. The daemon's histograms cover
 *                          every sample since it started (not a sliding window); with no
 *                          sample the quantiles are NaN.
 *   strings                labels of <prefix>_info{robot,...} 1 (with the clock mode of the profile)
 *   <prefix>_up            1, or 0 alone when the daemon did not answer. */
#ifndef VLADCTL_METRICS_H
#define VLADCTL_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "err.h"
#include "vlad.pb-c.h"

/* Whether name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*). */
bool vladctl_metric_name_ok(const char *name);

/* Write the exposition of s (NULL: the daemon did not answer: only <prefix>_up 0) for robot
 * (the profile's; s->robot when s is given) with clock (the profile's clock mode) to out.
 * Returns VLAD_OK, VLAD_EINVAL for a prefix that is not a metric name, or VLAD_EIO when
 * writing failed. *samples (if non-NULL) gets the number of sample lines. */
int vladctl_metrics_write(FILE *out, const char *prefix, const char *robot, const char *clock,
                          const Vlad__Status *s, int *samples, vlad_err *err);

#endif
