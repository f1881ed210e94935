/* test_sim_world — physics, rendering and IK of the bundled models; bit-identical
 * lockstep runs; a profile that does not match its model is rejected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"
#include "report.h"
#include "run.h"
#include "world.h"

static vlad_profile *load(const char *path) {
    static vlad_profile p[4];
    static int i;
    vlad_profile *q = &p[i++ % 4];
    vlad_err err;
    if (vlad_profile_load(q, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return q;
}

static void test_step_and_render(void **st) {
    (void)st;
    vlad_profile *p = load("configs/sim-arm.yaml");
    assert_non_null(p);
    vlad_err err;
    vlad_world *w = vlad_world_new(p, true, &err);
    assert_non_null(w);
    assert_int_equal(vlad_world_n_joints(w), 4);
    assert_true(fabs(vlad_world_tick_seconds(w) - 0.02) < 1e-12);
    double q[VLAD_MAX_JOINTS], tgt[VLAD_MAX_JOINTS];
    vlad_world_joint_state(w, q, NULL);
    for (int j = 0; j < 4; j++)
        assert_true(fabs(q[j] - p->joints[j].home) < 1e-9);
    /* a position target is reached within a few ticks */
    memcpy(tgt, q, sizeof tgt);
    tgt[0] += 0.3;
    for (int i = 0; i < 25; i++)
        vlad_world_step(w, tgt);
    vlad_world_joint_state(w, q, NULL);
    assert_true(fabs(q[0] - tgt[0]) < 0.01);
    /* targets beyond the limits are clamped, NaN keeps the previous target */
    tgt[0] = 100;
    tgt[1] = NAN;
    for (int i = 0; i < 60; i++)
        vlad_world_step(w, tgt);
    vlad_world_joint_state(w, q, NULL);
    assert_true(q[0] <= p->joints[0].max + 0.02);
    assert_true(isfinite(q[1]));

    /* a red ball in front of the camera shows up as red pixels in the image's middle,
     * the table is grey, rows top to bottom (sky/dark on top is not required) */
    double home[VLAD_MAX_JOINTS];
    for (int j = 0; j < 4; j++)
        home[j] = p->joints[j].home;
    vlad_world_reset(w, home);
    uint8_t img[64 * 64 * 3];
    assert_int_equal(vlad_world_render(w, 0, img, &err), VLAD_OK);
    int red_before = 0;
    for (int i = 0; i < 64 * 64; i++)
        red_before += img[3 * i] > 150 && img[3 * i + 1] < 80 && img[3 * i + 2] < 80;
    const float rgb_red[3] = {0.92f, 0.08f, 0.08f};
    double pos[3] = {0.3, -0.12, 0.025}; /* world -y: image left */
    vlad_world_set_object(w, 0, pos, rgb_red);
    assert_int_equal(vlad_world_render(w, 0, img, &err), VLAD_OK);
    int red = 0;
    double cx = 0, cy = 0;
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            const uint8_t *px = img + 3 * (y * 64 + x);
            if (px[0] > 150 && px[1] < 80 && px[2] < 80) {
                red++;
                cx += x;
                cy += y;
            }
        }
    assert_int_equal(red_before, 0);
    assert_true(red >= 6);
    cx /= red;
    cy /= red;
    assert_true(cx < 30);           /* left half */
    assert_true(cy > 32 && cy < 60); /* lower half: near the camera, on the table */
    /* the bottom row is table (grey), not black */
    const uint8_t *b = img + 3 * (63 * 64 + 32);
    assert_true(b[0] > 80 && abs(b[0] - b[1]) < 30);
    assert_int_equal(vlad_png_write("build-sim-test-frame.png", img, 64, 64, 2, &err), VLAD_OK);
    remove("build-sim-test-frame.png");
    vlad_world_free(w);
    vlad_world_free(NULL);
}

static void test_ik(void **st) {
    (void)st;
    const char *profiles[] = {"configs/sim-arm.yaml", "configs/sim-arm3.yaml"};
    for (int k = 0; k < 2; k++) {
        vlad_profile *p = load(profiles[k]);
        assert_non_null(p);
        vlad_world *w = vlad_world_new(p, false, NULL);
        assert_non_null(w);
        double home[VLAD_MAX_JOINTS], q[VLAD_MAX_JOINTS], ee[3];
        for (int j = 0; j < p->n_joints; j++)
            home[j] = p->joints[j].home;
        const double targets[][3] = {{0.3, 0.0, 0.03}, {0.2, 0.1, 0.1}, {0.3, -0.2, 0.03}};
        for (int i = 0; i < 3; i++) {
            double e = vlad_world_ik(w, targets[i], home, home, q);
            assert_true(e < 1e-3);
            vlad_world_fk(w, q, ee);
            for (int d = 0; d < 3; d++)
                assert_true(fabs(ee[d] - targets[i][d]) < 1e-3);
            for (int j = 0; j < p->n_joints; j++)
                assert_true(q[j] >= p->joints[j].min && q[j] <= p->joints[j].max);
        }
        /* out of reach: best effort, reports the remaining error */
        const double far[3] = {2.0, 0, 0};
        assert_true(vlad_world_ik(w, far, home, home, q) > 1.0);
        vlad_world_free(w);
    }
}

static void test_bad_profiles(void **st) {
    (void)st;
    vlad_profile p;
    vlad_err err;
    const char *yaml = "robot: x\njoints:\n  - {name: nosuch, min: -1, max: 1, max_velocity: 1}\n"
                       "sim: {model: /nonexistent/arm4.xml}\n";
    assert_int_equal(vlad_profile_load_string(&p, yaml, strlen(yaml), "t.yaml", &err), VLAD_OK);
    assert_null(vlad_world_new(&p, false, &err));
    assert_non_null(strstr(err.msg, "cannot load MJCF"));
    /* a joint the model does not have */
    char y2[512];
    snprintf(y2, sizeof y2,
             "robot: x\njoints:\n  - {name: nosuch, min: -1, max: 1, max_velocity: 1}\n"
             "sim: {model: %s/sim/models/arm4.xml}\n", getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".");
    assert_int_equal(vlad_profile_load_string(&p, y2, strlen(y2), "t.yaml", &err), VLAD_OK);
    assert_null(vlad_world_new(&p, false, &err));
    assert_non_null(strstr(err.msg, "nosuch"));
    /* limits wider than the model's */
    snprintf(y2, sizeof y2,
             "robot: x\njoints:\n  - {name: base_yaw, min: -3, max: 3, max_velocity: 1}\n"
             "sim: {model: %s/sim/models/arm4.xml}\n", getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".");
    assert_int_equal(vlad_profile_load_string(&p, y2, strlen(y2), "t.yaml", &err), VLAD_OK);
    assert_null(vlad_world_new(&p, false, &err));
    assert_non_null(strstr(err.msg, "exceed"));
    /* a camera the model does not have */
    snprintf(y2, sizeof y2,
             "robot: x\njoints:\n  - {name: base_yaw, min: -1, max: 1, max_velocity: 1}\n"
             "cameras:\n  - {name: wrist, width: 32, height: 32}\n"
             "sim: {model: %s/sim/models/arm4.xml}\n", getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".");
    assert_int_equal(vlad_profile_load_string(&p, y2, strlen(y2), "t.yaml", &err), VLAD_OK);
    assert_null(vlad_world_new(&p, false, &err));
    assert_non_null(strstr(err.msg, "wrist"));
    /* no model at all */
    const char *y3 = "robot: x\njoints:\n  - {name: j, min: -1, max: 1, max_velocity: 1}\n";
    assert_int_equal(vlad_profile_load_string(&p, y3, strlen(y3), "t.yaml", &err), VLAD_OK);
    assert_null(vlad_world_new(&p, false, &err));
    assert_non_null(strstr(err.msg, "sim.model"));
}

/* Every control tick is 1 / control_hz of simulated time: at 50 Hz with the bundled models'
 * own 2 ms step (unchanged, bit for bit), and at 200 Hz (configs/sim-arm-200hz.yaml: 2
 * substeps of 2.5 ms; the model's 2 ms used as is made 4 ms ticks, 0.8x the control clock). */
static void test_tick_is_one_control_period(void **st) {
    (void)st;
    const char *profiles[] = {"configs/sim-arm.yaml", "configs/sim-arm3.yaml",
                              "configs/sim-arm-200hz.yaml"};
    for (int k = 0; k < 3; k++) {
        vlad_profile *p = load(profiles[k]);
        assert_non_null(p);
        vlad_err err;
        vlad_world *w = vlad_world_new(p, false, &err);
        if (!w)
            fail_msg("%s", err.msg);
        double hz = p->control_hz, dt = vlad_world_timestep(w);
        printf("# %s: %g Hz, %d substeps of %g ms (the model's step: %g ms)\n", profiles[k], hz,
               p->sim.substeps, dt * 1e3, vlad_world_model_timestep(w) * 1e3);
        assert_true(dt == 1.0 / (hz * p->sim.substeps));
        if (hz == 50) /* the same double as the MJCF's 0.002: the same physics as ever */
            assert_true(dt == vlad_world_model_timestep(w) && dt == 0.002);
        assert_true(fabs(vlad_world_tick_seconds(w) - 1.0 / hz) < 1e-15);
        double q[VLAD_MAX_JOINTS];
        vlad_world_joint_state(w, q, NULL);
        assert_true(vlad_world_time(w) == 0);
        vlad_world_step(w, q);
        assert_true(fabs(vlad_world_time(w) - 1.0 / hz) < 1e-12);
        for (int i = 1; i < (int)hz; i++)
            vlad_world_step(w, q);
        printf("#   %d ticks: %.12f s simulated\n", (int)hz, vlad_world_time(w));
        assert_true(fabs(vlad_world_time(w) - 1.0) < 1e-9); /* one second of ticks */
        vlad_world_reset(w, q);
        assert_true(vlad_world_time(w) == 0);
        vlad_world_free(w);
    }
    /* a physics step far beyond the model's is refused, saying what to set */
    static vlad_profile p2;
    vlad_profile *p = &p2;
    vlad_err err;
    char y[512];
    for (int sub = 10; sub <= 25; sub += 15) {
        snprintf(y, sizeof y,
                 "robot: x\ncontrol_hz: 2\nsafety: {watchdog_ms: 2000}\njoints:\n  - {name: base_yaw, min: -1, max: 1, max_velocity: 1}\n"
                 "sim: {model: %s/sim/models/arm4.xml, substeps: %d}\n",
                 getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".", sub);
        if (vlad_profile_load_string(p, y, strlen(y), "t.yaml", &err))
            fail_msg("%s", err.msg);
        if (sub == 25)
            break;
        assert_null(vlad_world_new(p, false, &err)); /* 50 ms steps: 25x the model's */
        printf("# %s\n", err.msg);
        assert_non_null(strstr(err.msg, "sim.substeps to at least 25"));
    }
    vlad_world *w = vlad_world_new(p, false, &err); /* 20 ms = 10x: accepted */
    if (!w)
        fail_msg("%s", err.msg);
    assert_true(fabs(vlad_world_tick_seconds(w) - 0.5) < 1e-12);
    vlad_world_free(w);
}

static char *run_json(vlad_profile *p, uint64_t seed, bool render, uint64_t *hash) {
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, p);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.expert = true;
    o.episodes = 2;
    o.seed = seed;
    o.render = render;
    vlad_sim_results r;
    vlad_err err;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_OK);
    assert_int_equal(r.n, 2 * VLAD_TASK_COUNT);
    /* ticks never reset: each episode starts where the previous ended */
    int64_t t = 0;
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(r.ep[i].first_tick, t);
        t += r.ep[i].ticks;
    }
    *hash = 0;
    for (int i = 0; i < r.n; i++)
        *hash = *hash * 31 + r.ep[i].traj_hash;
    char *js = vlad_sim_results_json(&r);
    vlad_sim_results_free(&r);
    return js;
}

static void test_lockstep_bit_identical(void **st) {
    (void)st;
    vlad_profile *p = load("configs/sim-arm.yaml");
    assert_non_null(p);
    uint64_t h1, h2, h3, h4;
    char *a = run_json(p, 5, false, &h1);
    char *b = run_json(p, 5, true, &h2); /* rendering does not change the physics */
    char *c = run_json(p, 6, false, &h3);
    char *d = run_json(p, 5, false, &h4);
    assert_string_equal(a, b);
    assert_string_equal(a, d);
    assert_true(h1 == h2 && h1 == h4);
    assert_true(strcmp(a, c) != 0);
    assert_true(h1 != h3);
    free(a);
    free(b);
    free(c);
    free(d);
}

static void test_three_joint_arm_runs(void **st) {
    (void)st;
    vlad_profile *p = load("configs/sim-arm3.yaml");
    assert_non_null(p);
    assert_int_equal(p->n_joints, 3);
    uint64_t h;
    char *js = run_json(p, 1, false, &h);
    assert_non_null(strstr(js, "\"robot\":\t\"sim-arm3\""));
    free(js);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_and_render),
        cmocka_unit_test(test_ik),
        cmocka_unit_test(test_bad_profiles),
        cmocka_unit_test(test_tick_is_one_control_period),
        cmocka_unit_test(test_lockstep_bit_identical),
        cmocka_unit_test(test_three_joint_arm_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
