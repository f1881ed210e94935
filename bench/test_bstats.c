/* test_bstats.c — vlad-bench vlash's statistics against known values: the Wilson interval,
 * the percentile bootstrap (a constant sample, a known sample, determinism), the paired
 * completion-time speed-up, interval order. No benchmark runs: milliseconds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bstats.h"
#include "closedloop.h"

static int fails;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void test_wilson(void) {
    double lo, hi;
    bench_wilson(8, 10, &lo, &hi); /* the textbook value: [0.490, 0.943] */
    CHECK(near(lo, 0.4902, 5e-4) && near(hi, 0.9433, 5e-4), "Wilson(8/10) = [%.4f, %.4f]", lo, hi);
    bench_wilson(0, 10, &lo, &hi);
    CHECK(lo == 0 && near(hi, 0.2775, 5e-4), "Wilson(0/10) = [%.4f, %.4f]", lo, hi);
    bench_wilson(10, 10, &lo, &hi);
    CHECK(near(lo, 0.7225, 5e-4) && near(hi, 1, 1e-9), "Wilson(10/10) = [%.4f, %.4f]", lo, hi);
    bench_wilson(100, 200, &lo, &hi); /* 0.5 +- 1.96 * sqrt(0.25 / 200) about: [0.431, 0.569] */
    CHECK(near(lo, 0.4314, 5e-4) && near(hi, 0.5686, 5e-4), "Wilson(100/200) = [%.4f, %.4f]", lo, hi);
}

static void test_quantile(void) {
    double s[4] = {1, 2, 3, 4};
    CHECK(bench_quantile_sorted(s, 4, 0) == 1 && bench_quantile_sorted(s, 4, 1) == 4 &&
              bench_quantile_sorted(s, 4, 0.5) == 2.5 && near(bench_quantile_sorted(s, 4, 0.25), 1.75, 1e-12),
          "type-7 quantiles of 1..4");
    CHECK(isnan(bench_quantile_sorted(s, 0, 0.5)), "quantile of nothing");
}

static void test_boot_mean(void) {
    double c[50], lo, hi, lo2, hi2;
    for (int i = 0; i < 50; i++)
        c[i] = 2.34;
    CHECK(!bench_boot_mean(c, 50, 2000, BENCH_BOOT_SEED, &lo, &hi), "boot");
    CHECK(near(lo, 2.34, 1e-12) && near(hi, 2.34, 1e-12), "constant sample: [%.15g, %.15g]", lo, hi);
    CHECK(!bench_boot_mean(c, 1, 2000, BENCH_BOOT_SEED, &lo, &hi) && isnan(lo) && isnan(hi),
          "one value: no interval");
    bench_boot_mean(c, 0, 2000, BENCH_BOOT_SEED, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi), "no value: NAN");
    /* 0..99: mean 49.5, standard error 29.01 / 10 = 2.90: about [43.8, 55.2] */
    double x[100];
    for (int i = 0; i < 100; i++)
        x[i] = i;
    bench_boot_mean(x, 100, 2000, BENCH_BOOT_SEED, &lo, &hi);
    CHECK(lo < 49.5 && hi > 49.5 && near(lo, 43.8, 0.8) && near(hi, 55.2, 0.8),
          "0..99: [%.2f, %.2f], want about [43.8, 55.2]", lo, hi);
    bench_boot_mean(x, 100, 2000, BENCH_BOOT_SEED, &lo2, &hi2);
    CHECK(lo == lo2 && hi == hi2, "same seed, same interval");
    bench_boot_mean(x, 100, 2000, BENCH_BOOT_SEED + 1, &lo2, &hi2);
    CHECK(lo != lo2 || hi != hi2, "another seed, other resamples");
}

static void test_speedup(void) {
    /* episode 0, 1: both succeeded; 2: sync failed; 3: the mode failed */
    bool oks[4] = {true, true, false, true}, okm[4] = {true, true, true, false};
    double ts[4] = {2, 4, NAN, 6}, tm[4] = {1, 2, 3, NAN}, est, lo, hi;
    int pairs;
    CHECK(!bench_paired_speedup(oks, ts, okm, tm, 4, 2000, BENCH_BOOT_SEED, &est, &lo, &hi, &pairs),
          "speedup");
    CHECK(pairs == 2 && near(est, 2.0, 1e-12), "paired speed-up (2+4)/(1+2) = %g over %d", est, pairs);
    CHECK(near(lo, 2.0, 1e-12) && near(hi, 2.0, 1e-12), "a constant ratio: [%g, %g]", lo, hi);
    /* ratio of means, not mean of ratios: (1 + 3) / (1 + 1) = 2 */
    bool all[2] = {true, true};
    double a[2] = {1, 3}, b[2] = {1, 1};
    bench_paired_speedup(all, a, all, b, 2, 2000, BENCH_BOOT_SEED, &est, &lo, &hi, &pairs);
    CHECK(pairs == 2 && near(est, 2.0, 1e-12) && lo >= 1 && hi <= 3 && lo < hi,
          "ratio of means: %g [%g, %g]", est, lo, hi);
    /* sync at Δ = 4, K = 10: every episode 1.4x longer; the ideal is (K + Δ) / K = 1.4 */
    bool ok[30];
    double t1[30], t2[30];
    for (int i = 0; i < 30; i++)
        ok[i] = true, t2[i] = 1 + 0.05 * i, t1[i] = 1.4 * t2[i];
    bench_paired_speedup(ok, t1, ok, t2, 30, 2000, BENCH_BOOT_SEED, &est, &lo, &hi, &pairs);
    CHECK(near(est, 1.4, 1e-12) && near(lo, 1.4, 1e-12) && near(hi, 1.4, 1e-12) &&
              near(est / 1.4, 1.0, 1e-12), "ideal speed-up: %g [%g, %g]", est, lo, hi);
    bool none[2] = {false, false};
    bench_paired_speedup(none, a, all, b, 2, 2000, BENCH_BOOT_SEED, &est, &lo, &hi, &pairs);
    CHECK(pairs == 0 && isnan(est) && isnan(lo), "no pair: NAN");
}

static void test_order(void) {
    CHECK(bench_interval_order(0.8, 0.9, 0.5, 0.7) == 1, "above");
    CHECK(bench_interval_order(0.1, 0.2, 0.5, 0.7) == -1, "below");
    CHECK(bench_interval_order(0.1, 0.6, 0.5, 0.7) == 0, "overlap");
    CHECK(bench_interval_order(0.1, 0.5, 0.5, 0.7) == 0, "touching intervals overlap");
    CHECK(bench_interval_order(NAN, 0.5, 0.5, 0.7) == 0, "NAN: no claim");
}

int main(void) {
    test_wilson();
    test_quantile();
    test_boot_mean();
    test_speedup();
    test_order();
    if (fails)
        fprintf(stderr, "%d failure(s)\n", fails);
    else
        printf("ok\n");
    return fails != 0;
}
