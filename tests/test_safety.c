/* Safety clamps, the gate (S1-S3, S5 of safety.h) and the observation watchdog.
 * The property tests drive the gate with long seeded random runs of adversarial inputs. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "action_queue.h" /* VLAD_AQ_MAX_H: the longest chunk */
#include "safety.h"

static vlad_profile prof;

static int setup(void **state) {
    (void)state;
    /* 100 Hz; joint a: max_velocity 5/s -> 0.05 per tick; joint b: 50/s -> 0.5, but
     * max_delta_per_tick caps it at 0.2 */
    const char *y = "robot: r\ncontrol_hz: 100\nsafety: {max_delta_per_tick: 0.2}\njoints:\n"
                    "  - {name: a, min: -1, max: 1, max_velocity: 5}\n"
                    "  - {name: b, min: 0, max: 2, max_velocity: 50}\n";
    vlad_err err;
    if (vlad_profile_load_string(&prof, y, strlen(y), "s.yaml", &err))
        fail_msg("%s", err.msg);
    return 0;
}

static void test_within_limits_untouched(void **state) {
    (void)state;
    double prev[2] = {0, 1}, want[2] = {0.03, 1.1}, out[2];
    assert_false(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(out[0] == 0.03 && out[1] == 1.1);
}

static void test_rate_limit_per_joint(void **state) {
    (void)state;
    double prev[2] = {0, 1}, want[2] = {0.9, 1.9}, out[2];
    assert_true(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(fabs(out[0] - 0.05) < 1e-12); /* max_velocity / control_hz */
    assert_true(fabs(out[1] - 1.2) < 1e-12);  /* max_delta_per_tick */
    double down[2] = {-0.9, 0.1};
    vlad_safety_clamp(&prof, prev, down, out);
    assert_true(fabs(out[0] + 0.05) < 1e-12);
    assert_true(fabs(out[1] - 0.8) < 1e-12);
}

static void test_limits_last(void **state) {
    (void)state;
    /* a step inside the rate limit that leaves the position range: limits win */
    double prev[2] = {0.99, 0.05}, want[2] = {1.03, -0.1}, out[2];
    assert_true(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(out[0] == 1.0);
    assert_true(out[1] == 0.0);
    /* a previous target outside the limits (cannot happen, but) still ends inside */
    double bad_prev[2] = {5, 5}, w2[2] = {5, 5};
    vlad_safety_clamp(&prof, bad_prev, w2, out);
    assert_true(out[0] == 1.0 && out[1] == 2.0);
}

static void test_non_finite_keeps_previous(void **state) {
    (void)state;
    double prev[2] = {0.2, 1.5}, want[2] = {NAN, INFINITY}, out[2];
    assert_true(vlad_safety_clamp(&prof, prev, want, out));
    assert_true(out[0] == 0.2 && out[1] == 1.5);
}

static void test_clamp_in_place(void **state) {
    (void)state;
    double prev[2] = {0, 1}, x[2] = {0.5, 1};
    vlad_safety_clamp(&prof, prev, x, x);
    assert_true(fabs(x[0] - 0.05) < 1e-12);
    double y[2] = {-3, 3};
    assert_true(vlad_safety_clamp_limits(&prof, y));
    assert_true(y[0] == -1 && y[1] == 2);
    assert_false(vlad_safety_clamp_limits(&prof, y));
}

static void test_watchdog(void **state) {
    (void)state;
    vlad_watchdog w;
    vlad_watchdog_init(&w, 100); /* ms */
    const int64_t ms = 1000000;
    assert_int_equal(vlad_watchdog_check(&w, 0, 10000 * ms), 0); /* no obs yet: waiting, not stale */
    assert_false(w.tripped);
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1050 * ms), 0);
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1100 * ms), 0); /* exactly at the limit */
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1101 * ms), 1);  /* trips once */
    assert_true(w.tripped);
    assert_int_equal(vlad_watchdog_check(&w, 1000 * ms, 1500 * ms), 0);
    assert_int_equal(vlad_watchdog_check(&w, 1490 * ms, 1500 * ms), -1); /* clears once */
    assert_int_equal(vlad_watchdog_check(&w, 1495 * ms, 1500 * ms), 0);
}

/* ---- property tests ---------------------------------------------------------------- */

/* Five joints with different limits and rate bounds, at 100 Hz, max_delta_per_tick 0.2:
 *   shoulder [-1, 1]      5/s    -> step 0.05
 *   elbow    [0, 2]       50/s   -> 0.5, capped at 0.2
 *   wrist    [-pi, pi]    2/s    -> 0.02
 *   grip     [10, 10.1]   100/s  -> 1, capped at 0.2: one step spans the whole range
 *   rail     [-1000, 1000] 0.5/s -> 0.005 */
#define NJ 5
static vlad_profile prof5;

static void load5(void) {
    const char *y = "robot: r5\ncontrol_hz: 100\n"
                    "safety: {max_delta_per_tick: 0.2, obs_limit_margin: 0.1}\njoints:\n"
                    "  - {name: shoulder, min: -1, max: 1, max_velocity: 5}\n"
                    "  - {name: elbow, min: 0, max: 2, max_velocity: 50, home: 1}\n"
                    "  - {name: wrist, min: -3.14159, max: 3.14159, max_velocity: 2}\n"
                    "  - {name: grip, min: 10, max: 10.1, max_velocity: 100, home: 10.05}\n"
                    "  - {name: rail, min: -1000, max: 1000, max_velocity: 0.5}\n";
    vlad_err err;
    if (vlad_profile_load_string(&prof5, y, strlen(y), "s5.yaml", &err))
        fail_msg("%s", err.msg);
    assert_int_equal(prof5.n_joints, NJ);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; } /* [0,1) */
static double unif_in(uint64_t *s, double a, double b) { return a + (b - a) * unif(s); }

/* x is within the rate bound of ref: the comparison the gate itself makes */
static bool within_step(double x, double ref, double step) {
    return x >= ref - step && x <= ref + step;
}

/* an adversarial wish for joint j, given the previous target */
static double adversarial(uint64_t *s, const vlad_joint *jt, double step, double prev) {
    switch (splitmix64(s) % 16) {
    case 0: return NAN;
    case 1: return splitmix64(s) & 1 ? INFINITY : -INFINITY;
    case 2: return splitmix64(s) & 1 ? 1e300 : -DBL_MAX;
    case 3: return nextafter(jt->max, INFINITY); /* just outside */
    case 4: return nextafter(jt->min, -INFINITY);
    case 5: return jt->max + step * unif(s);
    case 6: return jt->min - step * unif(s);
    case 7: return unif_in(s, jt->min, jt->max);                  /* a random jump */
    case 8: return prev + step * (double)((int)(splitmix64(s) % 7) - 3); /* whole steps */
    case 9: return splitmix64(s) & 1 ? prev + step : prev - step;  /* exactly the bound */
    case 10: return nextafter(prev + step, INFINITY);               /* just beyond it */
    case 11: return splitmix64(s) & 1 ? -0.0 : 5e-324;              /* signed zero, subnormal */
    case 12: return prev;
    default: return prev + step * unif_in(s, -1, 1);               /* an ordinary small move */
    }
}

static bool acceptable(const vlad_joint *jt, double step, double ref, double w) {
    return isfinite(w) && w >= jt->min && w <= jt->max && within_step(w, ref, step);
}

/* S1-S3 through vlad_gate_pass: 200k steps of adversarial wishes, after an anchor at a random
 * in-limit position (and a re-anchor now and then, S4's new segment). Every output is finite,
 * inside its limits and within step_j of the previous output; a wish the rule accepts passes
 * unchanged; the return value says exactly whether the wish was changed. */
static void test_gate_pass_property(void **state) {
    (void)state;
    load5();
    double step[NJ];
    vlad_safety_steps(&prof5, step);
    assert_true(fabs(step[0] - 0.05) < 1e-15 && step[1] == 0.2 && fabs(step[2] - 0.02) < 1e-15 &&
                step[3] == 0.2 && fabs(step[4] - 0.005) < 1e-15);
    uint64_t rng = 0x5AFE7Aull;
    vlad_gate g;
    vlad_gate_init(&g, &prof5);
    assert_false(g.anchored);
    double prev[NJ];
    for (int j = 0; j < NJ; j++)
        prev[j] = unif_in(&rng, prof5.joints[j].min, prof5.joints[j].max);
    vlad_gate_anchor(&g, prev);
    assert_true(g.anchored);
    assert_memory_equal(g.prev, prev, sizeof prev); /* inside the limits: kept exactly */
    long exact = 0, changed = 0, strict_excess = 0, anchors = 1;
    double worst_excess = 0;
    for (long it = 0; it < 200000; it++) {
        if (splitmix64(&rng) % 20000 == 0) { /* a new segment at a measured position */
            for (int j = 0; j < NJ; j++)
                prev[j] = unif_in(&rng, prof5.joints[j].min, prof5.joints[j].max);
            vlad_gate_anchor(&g, prev);
            anchors++;
        }
        double want[NJ], out[NJ];
        bool all_small = splitmix64(&rng) % 4 == 0; /* often a wish the rule takes as it is */
        for (int j = 0; j < NJ; j++)
            want[j] = all_small ? unif_in(&rng, fmax(prev[j] - step[j], prof5.joints[j].min),
                                          fmin(prev[j] + step[j], prof5.joints[j].max))
                                : adversarial(&rng, &prof5.joints[j], step[j], prev[j]);
        bool ret = vlad_gate_pass(&g, want, out);
        bool differs = false;
        for (int j = 0; j < NJ; j++) {
            const vlad_joint *jt = &prof5.joints[j];
            if (!isfinite(out[j]) || out[j] < jt->min || out[j] > jt->max ||
                !within_step(out[j], prev[j], step[j]))
                fail_msg("step %ld joint %s: want %.17g prev %.17g -> out %.17g (limits [%g, %g], "
                         "step %g)",
                         it, jt->name, want[j], prev[j], out[j], jt->min, jt->max, step[j]);
            if (acceptable(jt, step[j], prev[j], want[j]) && !(out[j] == want[j]))
                fail_msg("step %ld joint %s: acceptable want %.17g (prev %.17g) became %.17g", it,
                         jt->name, want[j], prev[j], out[j]);
            if (!(out[j] == want[j]))
                differs = true;
            double excess = fabs(out[j] - prev[j]) - step[j];
            if (excess > 0) { /* |out - prev| > step only by the rounding of prev +- step */
                strict_excess++;
                if (excess > worst_excess)
                    worst_excess = excess;
            }
        }
        if (ret != differs)
            fail_msg("step %ld: vlad_gate_pass returned %d but the wish was %schanged", it, ret,
                     differs ? "" : "un");
        assert_memory_equal(g.prev, out, sizeof out); /* out is the new previous target */
        memcpy(prev, out, sizeof prev);
        exact += !differs;
        changed += differs;
    }
    printf("# gate_pass: %ld passed unchanged, %ld changed, %ld anchors; |out-prev| exceeded "
           "step by rounding %ld times (worst %.3g)\n",
           exact, changed, anchors, strict_excess, worst_excess);
    assert_true(exact > 20000 && changed > 20000); /* both branches exercised */
    assert_true(worst_excess < 1e-12);
    /* vlad_gate_pass(g, g->prev) publishes the anchor itself, unchanged */
    double m[NJ] = {0.3, 1.7, -2, 10.01, -999.5}, o[NJ];
    vlad_gate_anchor(&g, m);
    assert_false(vlad_gate_pass(&g, g.prev, o));
    assert_memory_equal(o, m, sizeof m);
}

/* a chunk that already obeys the rule, from a float-representable reference */
static void clean_chunk(uint64_t *s, const double *step, const double *ref, float *v, int len) {
    for (int i = 0; i < len; i++)
        for (int j = 0; j < NJ; j++) {
            const vlad_joint *jt = &prof5.joints[j];
            double r = i ? (double)v[(i - 1) * NJ + j] : ref[j];
            float f = (float)(r + step[j] * unif_in(s, -1, 1));
            if (!((double)f >= jt->min && (double)f <= jt->max && within_step(f, r, step[j])))
                f = (float)r; /* r is a float inside the limits */
            v[i * NJ + j] = f;
        }
}

/* S5 through vlad_gate_chunk: random chunks of 1..256 rows with NaN, inf, out-of-limit and
 * jumping values from a random in-limit reference. Every value is finite and inside its
 * limits, row 0 within step of ref, each row within step of the row before (in double of the
 * floats); values the rule accepts are kept; the return value is true iff something changed;
 * rows past len are not touched; a chunk that obeys the rule comes back bit-identical. */
static void test_gate_chunk_property(void **state) {
    (void)state;
    load5();
    vlad_gate g;
    vlad_gate_init(&g, &prof5); /* chunks do not need the gate anchored, nor move it */
    double step[NJ];
    vlad_safety_steps(&prof5, step);
    uint64_t rng = 0xC4C4C4ull;
    static float in[(VLAD_AQ_MAX_H + 1) * NJ], v[(VLAD_AQ_MAX_H + 1) * NJ];
    long rows = 0, n_changed = 0, n_clean = 0;
    for (int trial = 0; trial < 3000; trial++) {
        int len = 1 + (int)(splitmix64(&rng) % VLAD_AQ_MAX_H);
        double ref[NJ];
        bool clean = splitmix64(&rng) % 3 == 0;
        for (int j = 0; j < NJ; j++) {
            ref[j] = unif_in(&rng, prof5.joints[j].min, prof5.joints[j].max);
            if (clean)
                ref[j] = (double)(float)ref[j];
            if (clean && (ref[j] < prof5.joints[j].min || ref[j] > prof5.joints[j].max))
                ref[j] = prof5.joints[j].min == 10 ? 10 : 0; /* float-exact and inside */
        }
        if (clean) {
            clean_chunk(&rng, step, ref, in, len);
        } else {
            double prevw[NJ];
            memcpy(prevw, ref, sizeof prevw);
            for (int i = 0; i < len; i++)
                for (int j = 0; j < NJ; j++) {
                    double w = adversarial(&rng, &prof5.joints[j], step[j], prevw[j]);
                    in[i * NJ + j] = (float)w;
                    if (isfinite(in[i * NJ + j]) && fabs(w) < 2000)
                        prevw[j] = w; /* the chunk's own path wanders, and jumps */
                }
        }
        const float sentinel = -12345.5f;
        for (int j = 0; j < NJ; j++)
            in[len * NJ + j] = sentinel;
        memcpy(v, in, sizeof(float) * (size_t)(len + 1) * NJ);
        double ref_copy[NJ];
        memcpy(ref_copy, ref, sizeof ref);
        bool ret = vlad_gate_chunk(&g, ref, v, len);
        assert_memory_equal(ref, ref_copy, sizeof ref); /* ref is input only */
        bool differs = memcmp(in, v, sizeof(float) * (size_t)len * NJ) != 0;
        if (ret != differs)
            fail_msg("trial %d (len %d): returned %d but the chunk %s", trial, len, ret,
                     differs ? "changed" : "is bit-identical");
        if (clean && differs)
            fail_msg("trial %d: a chunk that obeys the rule was changed", trial);
        for (int j = 0; j < NJ; j++)
            assert_true(v[len * NJ + j] == sentinel); /* nothing past len */
        for (int i = 0; i < len; i++)
            for (int j = 0; j < NJ; j++) {
                const vlad_joint *jt = &prof5.joints[j];
                double r = i ? (double)v[(i - 1) * NJ + j] : ref[j];
                double x = (double)v[i * NJ + j], w = (double)in[i * NJ + j];
                if (!isfinite(x) || x < jt->min || x > jt->max || !within_step(x, r, step[j]))
                    fail_msg("trial %d row %d/%d joint %s: in %.9g against %.17g -> %.9g "
                             "(limits [%g, %g], step %g)",
                             trial, i, len, jt->name, w, r, x, jt->min, jt->max, step[j]);
                if (acceptable(jt, step[j], r, w) && x != w)
                    fail_msg("trial %d row %d joint %s: acceptable %.9g became %.9g", trial, i,
                             jt->name, w, x);
            }
        rows += len;
        n_changed += ret;
        n_clean += clean;
    }
    printf("# gate_chunk: %ld rows, %ld chunks changed, %ld clean chunks kept\n", rows, n_changed,
           n_clean);
    assert_true(n_clean > 500 && n_changed > 1000);
    /* the degenerate length: nothing to do, nothing changed */
    double ref[NJ] = {0, 1, 0, 10, 0};
    float one[NJ] = {NAN, NAN, NAN, NAN, NAN};
    assert_false(vlad_gate_chunk(&g, ref, one, 0));
    assert_true(isnan(one[0]));
}

/* The observation check: inside the limits the position is copied, within the margin it is
 * clamped to the limits, beyond it (or not finite) VLAD_EINVAL names the joint and leaves
 * out untouched — checked on fixed edge cases and on 200k random positions. */
static void test_measured(void **state) {
    (void)state;
    load5();
    const double m = prof5.safety.obs_limit_margin;
    assert_true(m == 0.1);
    vlad_err err;
    double pos[NJ] = {0.5, 0, -3.14159, 10.1, 999.9}, out[NJ];
    assert_int_equal(vlad_safety_measured(&prof5, pos, out, &err), 0);
    assert_memory_equal(out, pos, sizeof pos); /* limits included */
    double near[NJ] = {1.05, -0.1, 3.2, 10.0 - 0.05, -1000.09};
    assert_int_equal(vlad_safety_measured(&prof5, near, out, &err), 0);
    assert_true(out[0] == 1 && out[1] == 0 && out[2] == 3.14159 && out[3] == 10 && out[4] == -1000);
    memcpy(out, near, sizeof near); /* out may alias pos */
    assert_int_equal(vlad_safety_measured(&prof5, out, out, &err), 0);
    assert_true(out[0] == 1 && out[4] == -1000);
    /* each joint in turn is the bad one: named, and nothing written */
    const double bad_vals[] = {NAN, INFINITY, -INFINITY, 0, 0};
    for (int j = 0; j < NJ; j++)
        for (int k = 0; k < 6; k++) {
            double p[NJ] = {0, 1, 0, 10.05, 0};
            const vlad_joint *jt = &prof5.joints[j];
            p[j] = k < 3 ? bad_vals[k] : k == 3 ? jt->max + 1.5 * m : k == 4 ? jt->min - 1.01 * m
                                                                         : -DBL_MAX;
            double o[NJ];
            for (int i = 0; i < NJ; i++)
                o[i] = 777.25;
            err.msg[0] = 0;
            assert_int_equal(vlad_safety_measured(&prof5, p, o, &err), VLAD_EINVAL);
            char name[VLAD_NAME_MAX + 8];
            snprintf(name, sizeof name, "(%s)", jt->name);
            if (!strstr(err.msg, name))
                fail_msg("joint %s value %g: message '%s' does not name it", jt->name, p[j], err.msg);
            for (int i = 0; i < NJ; i++)
                assert_true(o[i] == 777.25);
        }
    /* random positions against an independent statement of the rule */
    uint64_t rng = 0x0B5E55EDull;
    long ok = 0, clamped = 0, refused = 0;
    for (long it = 0; it < 200000; it++) {
        double p[NJ], o[NJ], expect[NJ];
        bool valid = true, clamp = false;
        for (int j = 0; j < NJ; j++) {
            const vlad_joint *jt = &prof5.joints[j];
            uint64_t c = splitmix64(&rng) % 10;
            p[j] = c == 0 ? NAN : c < 3 ? jt->max + unif_in(&rng, 0, 2 * m)
                                : c < 5 ? jt->min - unif_in(&rng, 0, 2 * m)
                                        : unif_in(&rng, jt->min, jt->max);
            if (!isfinite(p[j]) || p[j] > jt->max + m || p[j] < jt->min - m)
                valid = false;
            expect[j] = p[j] > jt->max ? jt->max : p[j] < jt->min ? jt->min : p[j];
            clamp |= expect[j] != p[j];
        }
        if (splitmix64(&rng) % 3 == 0) { /* keep the valid case common */
            for (int j = 0; j < NJ; j++) {
                const vlad_joint *jt = &prof5.joints[j];
                p[j] = unif_in(&rng, jt->min - m * 0.999, jt->max + m * 0.999);
                expect[j] = p[j] > jt->max ? jt->max : p[j] < jt->min ? jt->min : p[j];
            }
            valid = true;
            clamp = false;
            for (int j = 0; j < NJ; j++)
                clamp |= expect[j] != p[j];
        }
        for (int j = 0; j < NJ; j++)
            o[j] = -4242.0;
        int rc = vlad_safety_measured(&prof5, p, o, &err);
        if (valid) {
            if (rc != 0)
                fail_msg("iteration %ld: a usable position refused: %s", it, err.msg);
            assert_memory_equal(o, expect, sizeof expect);
            clamped += clamp;
            ok += !clamp;
        } else {
            assert_int_equal(rc, VLAD_EINVAL);
            for (int j = 0; j < NJ; j++)
                assert_true(o[j] == -4242.0);
            refused++;
        }
    }
    printf("# measured: %ld copied, %ld clamped, %ld refused\n", ok, clamped, refused);
    assert_true(ok > 1000 && clamped > 1000 && refused > 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within_limits_untouched), cmocka_unit_test(test_rate_limit_per_joint),
        cmocka_unit_test(test_limits_last), cmocka_unit_test(test_non_finite_keeps_previous),
        cmocka_unit_test(test_clamp_in_place), cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_gate_pass_property), cmocka_unit_test(test_gate_chunk_property),
        cmocka_unit_test(test_measured),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
