/* bstats.c — bootstrap intervals, the paired speed-up and the seed sets (bstats.h). */
#include "bstats.h"

#include <math.h>
#include <stdlib.h>

#include "rng.h"

/* The generator: the simulator's seeded xoshiro256** (sim/rng.h). */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_quantile_sorted(const double *sorted, int n, double q) {
    if (n <= 0)
        return NAN;
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i < 0)
        return sorted[0];
    if (i >= n - 1)
        return sorted[n - 1];
    double f = pos - i;
    return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

double bench_mean(const double *x, int n) {
    if (n <= 0)
        return NAN;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    return s / n;
}

/* The percentile interval of stats[0..B) (sorted here). */
static void percentile95(double *stats, int B, double *lo, double *hi) {
    qsort(stats, (size_t)B, sizeof *stats, cmp_double);
    *lo = bench_quantile_sorted(stats, B, 0.025);
    *hi = bench_quantile_sorted(stats, B, 0.975);
}

int bench_boot_mean(const double *x, int n, int B, uint64_t seed, double *lo, double *hi) {
    *lo = *hi = NAN;
    if (n < 2) /* one value has no spread to resample: no interval */
        return 0;
    if (B < 1) {
        *lo = *hi = bench_mean(x, n);
        return 0;
    }
    double *st = malloc((size_t)B * sizeof *st);
    if (!st)
        return -1;
    vlad_rng r;
    vlad_rng_seed(&r, seed);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += x[vlad_rng_int(&r, n)];
        st[b] = s / n;
    }
    percentile95(st, B, lo, hi);
    free(st);
    return 0;
}

int bench_boot_ratio(const double *num, const double *den, int n, int B, uint64_t seed,
                     double *est, double *lo, double *hi) {
    *est = *lo = *hi = NAN;
    if (n <= 0)
        return 0;
    double sn = 0, sd = 0;
    for (int i = 0; i < n; i++)
        sn += num[i], sd += den[i];
    *est = sd != 0 ? sn / sd : NAN;
    if (n < 2)
        return 0;
    if (B < 1) {
        *lo = *hi = *est;
        return 0;
    }
    double *st = malloc((size_t)B * sizeof *st);
    if (!st)
        return -1;
    vlad_rng r;
    vlad_rng_seed(&r, seed);
    int nb = 0;
    for (int b = 0; b < B; b++) {
        double a = 0, c = 0;
        for (int k = 0; k < n; k++) {
            int i = vlad_rng_int(&r, n);
            a += num[i], c += den[i];
        }
        if (c != 0) /* completion times are > 0: never 0 in practice */
            st[nb++] = a / c;
    }
    if (nb)
        percentile95(st, nb, lo, hi);
    free(st);
    return 0;
}

int bench_paired_speedup(const bool *ok_sync, const double *t_sync, const bool *ok_mode,
                         const double *t_mode, int n, int B, uint64_t seed, double *est,
                         double *lo, double *hi, int *pairs) {
    double *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    double *b = malloc((size_t)(n > 0 ? n : 1) * sizeof *b);
    int m = 0, rc = -1;
    *est = *lo = *hi = NAN;
    *pairs = 0;
    if (a && b) {
        for (int i = 0; i < n; i++)
            if (ok_sync[i] && ok_mode[i] && isfinite(t_sync[i]) && isfinite(t_mode[i]))
                a[m] = t_sync[i], b[m] = t_mode[i], m++;
        *pairs = m;
        rc = bench_boot_ratio(a, b, m, B, seed, est, lo, hi);
    }
    free(a);
    free(b);
    return rc;
}

int bench_interval_order(double alo, double ahi, double blo, double bhi) {
    if (!isfinite(alo) || !isfinite(ahi) || !isfinite(blo) || !isfinite(bhi))
        return 0;
    return alo > bhi ? 1 : ahi < blo ? -1 : 0;
}

/* training/make_default_model.sh's JOBS: NAME TASK EPISODES SEED (reach 0, track 1, whack 2,
 * push 3; "all": -1), the default recipe's and MOTION=1's (403, 203; its reach runs are
 * prefixes of the default's), so that held-out seeds are unseen by both. Keep in step with
 * that script. */
const bench_seed_run bench_training_runs[] = {
    {101, 0, 300}, {401, 3, 300}, {102, 0, 2700}, {402, 3, 700}, {111, 0, 800},
    {112, 0, 800}, {201, 1, 150}, {202, 1, 150},  {301, 2, 200}, {302, 2, 100},
    {303, 2, 300}, {403, 3, 300}, {203, 1, 300},  {9001, -1, 20},
};
const int bench_n_training_runs = (int)(sizeof bench_training_runs / sizeof bench_training_runs[0]);

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int bench_count_common(uint64_t *a, int n, const uint64_t *b, int m) {
    qsort(a, (size_t)n, sizeof *a, cmp_u64);
    int c = 0;
    for (int i = 0; i < m; i++)
        c += bsearch(&b[i], a, (size_t)n, sizeof *a, cmp_u64) != NULL;
    return c;
}
