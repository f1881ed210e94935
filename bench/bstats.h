/* bstats.h — the statistics of vlad-bench vlash: percentile-bootstrap intervals (a fixed-seed
 * generator, so a run's output is deterministic), the paired completion-time speed-up, interval
 * overlap, and the benchmark's seed sets. Pure functions: no I/O, no global state.
 *
 * Bootstrap: B resamples of the n values with replacement (each index a uniform draw from the
 * simulator's xoshiro256** generator, sim/rng.h, seeded with `seed`); the statistic of each
 * resample; the interval is the 2.5% and 97.5% percentiles of the B statistics, linear
 * interpolation between order statistics (position q·(B − 1) in the sorted statistics,
 * "type 7"). */
#ifndef VLAD_BENCH_BSTATS_H
#define VLAD_BENCH_BSTATS_H

#include <stdbool.h>
#include <stdint.h>

#define BENCH_BOOT_SEED 0x5EEDB007ULL /* the fixed seed of every bootstrap of vlad-bench vlash */

/* The q-quantile (0..1) of sorted[0..n), linear interpolation at q·(n − 1); NAN if n == 0. */
double bench_quantile_sorted(const double *sorted, int n, double q);

/* Mean of x[0..n) (NAN if n == 0). */
double bench_mean(const double *x, int n);

/* Percentile-bootstrap 95% interval of the mean of x[0..n): B resamples, generator seeded with
 * seed. Below 2 values: NAN, NAN (no interval). Returns 0, or -1 when out of memory (NAN, NAN). */
int bench_boot_mean(const double *x, int n, int B, uint64_t seed, double *lo, double *hi);

/* Paired ratio of means, mean(num) / mean(den), over the pairs (num[i], den[i]), i < n, and its
 * percentile-bootstrap 95% interval (the pairs resampled together, B times). n == 0: all NAN;
 * n == 1: the ratio, no interval (NAN). Returns 0, or -1 when out of memory. */
int bench_boot_ratio(const double *num, const double *den, int n, int B, uint64_t seed,
                     double *est, double *lo, double *hi);

/* The completion-time speed-up of a mode over sync at the same Δ, paired by episode (same
 * seed): over the episodes i < n where both succeeded (ok_sync[i] && ok_mode[i]),
 * mean(t_sync) / mean(t_mode), with its bootstrap interval. *pairs = the number of such
 * episodes. Same return as bench_boot_ratio. */
int bench_paired_speedup(const bool *ok_sync, const double *t_sync, const bool *ok_mode,
                         const double *t_mode, int n, int B, uint64_t seed, double *est,
                         double *lo, double *hi, int *pairs);

/* 1 when [alo, ahi] lies wholly above [blo, bhi], -1 wholly below, 0 when they overlap or
 * either is not finite. */
int bench_interval_order(double alo, double ahi, double blo, double bhi);

/* vlad-bench vlash claims a difference (intervals disjoint) only between cells with at least
 * this many values behind each interval (episodes, successes, pairs): below it the percentile
 * bootstrap understates the spread. */
#define BENCH_MIN_CLAIM_N 10

/* ---- seed sets ----
 * An episode's layout comes from vlad_sim_episode_seed(run seed, task, episode) (sim/run.c).
 * "dev": run seed --seed (default 1; the README's figures use 1); run seeds below
 * BENCH_HELDOUT_BASE. "held-out": run seed BENCH_HELDOUT_BASE + --seed. The training data
 * (training/make_default_model.sh) uses the run seeds in bench_training_runs. */
#define BENCH_HELDOUT_BASE 1000000u

typedef struct bench_seed_run {
    unsigned seed;
    int task;     /* vlad_task_kind; -1: every task (--task all) */
    int episodes; /* per task */
} bench_seed_run;

/* The runs of training/make_default_model.sh (seed, task, episodes), in its order. */
extern const bench_seed_run bench_training_runs[];
extern const int bench_n_training_runs;

/* Sort a[0..n) and count the values of b[0..m) that occur in it (b need not be sorted). */
int bench_count_common(uint64_t *a, int n, const uint64_t *b, int m);

#endif
