/* test_sim_dataset — safetensors round trip (C writer -> C reader, and the Python reader
 * when /usr/bin/python3 has numpy), malformed files rejected, episode files complete. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "run.h"

static char dir[256];

static void test_roundtrip(void **st) {
    (void)st;
    char path[300];
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    uint8_t u8[2 * 3 * 4];
    float f32[5 * 2];
    int64_t i64[3] = {-1, 0, 1LL << 40};
    for (int i = 0; i < 24; i++)
        u8[i] = (uint8_t)(i * 11);
    for (int i = 0; i < 10; i++)
        f32[i] = (float)i * 0.25f - 1.0f;
    const struct {
        const char *name;
        vlad_dtype dt;
        int ndim;
        int64_t shape[3];
        const void *data;
        size_t nbytes;
    } t[3] = {{"a", VLAD_DT_U8, 3, {2, 3, 4}, u8, sizeof u8},
              {"b", VLAD_DT_F32, 2, {5, 2}, f32, sizeof f32},
              {"c", VLAD_DT_I64, 1, {3}, i64, sizeof i64}};
    vlad_err err;
    vlad_st_writer *w = vlad_st_writer_new();
    assert_int_equal(vlad_st_writer_meta(w, "k1", "v1", &err), VLAD_OK);
    assert_int_equal(vlad_st_writer_meta(w, "json", "[1, \"two\"]", &err), VLAD_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(vlad_st_writer_add(w, t[i].name, t[i].dt, t[i].ndim, t[i].shape, &err), VLAD_OK);
    assert_int_equal(vlad_st_writer_begin(w, path, &err), VLAD_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(vlad_st_writer_data(w, t[i].data, t[i].nbytes, &err), VLAD_OK);
    assert_int_equal(vlad_st_writer_finish(w, &err), VLAD_OK);
    vlad_st_writer_free(w);
    vlad_st_file *f;
    assert_int_equal(vlad_st_open(path, &f, &err), VLAD_OK);
    assert_int_equal(vlad_st_count(f), 3);
    for (int i = 0; i < 3; i++) {
        const vlad_st_tensor *r = vlad_st_find(f, t[i].name);
        assert_non_null(r);
        assert_int_equal(r->dtype, t[i].dt);
        assert_int_equal(r->ndim, t[i].ndim);
        for (int d = 0; d < r->ndim; d++)
            assert_int_equal(r->shape[d], t[i].shape[d]);
        assert_int_equal(r->nbytes, t[i].nbytes);
        assert_memory_equal(r->data, t[i].data, t[i].nbytes);
    }
    assert_null(vlad_st_find(f, "zz"));
    assert_string_equal(vlad_st_meta(f, "k1"), "v1");
    assert_string_equal(vlad_st_meta(f, "json"), "[1, \"two\"]");
    assert_null(vlad_st_meta(f, "nope"));
    vlad_st_close(f);
    vlad_st_close(NULL);

    /* fewer bytes than the shapes announce are refused by the writer */
    w = vlad_st_writer_new();
    int64_t three[1] = {3};
    assert_int_equal(vlad_st_writer_add(w, "x", VLAD_DT_F32, 1, three, &err), VLAD_OK);
    assert_int_equal(vlad_st_writer_begin(w, path, &err), VLAD_OK);
    assert_int_equal(vlad_st_writer_data(w, f32, 8, &err), VLAD_OK);
    assert_true(vlad_st_writer_finish(w, &err) != VLAD_OK);
    vlad_st_writer_free(w);
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* a file of header `h` followed by `pad` zero bytes must be refused */
static void expect_refused(const char *path, const char *h, size_t pad, const char *substr) {
    uint8_t buf[256] = {0};
    size_t hl = strlen(h);
    buf[0] = (uint8_t)hl;
    memcpy(buf + 8, h, hl);
    write_bytes(path, buf, 8 + hl + pad);
    vlad_st_file *f = NULL;
    vlad_err err;
    assert_true(vlad_st_open(path, &f, &err) != VLAD_OK);
    assert_null(f);
    if (!strstr(err.msg, substr))
        fail_msg("got '%s', wanted '%s'", err.msg, substr);
}

static void test_malformed(void **st) {
    (void)st;
    char path[300];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    vlad_st_file *f = NULL;
    vlad_err err;
    write_bytes(path, "abc", 3);
    assert_true(vlad_st_open(path, &f, &err) != VLAD_OK);
    assert_null(f);
    const uint8_t big[12] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    write_bytes(path, big, sizeof big);
    assert_true(vlad_st_open(path, &f, &err) != VLAD_OK);
    /* offsets past the end of the data */
    expect_refused(path, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2, "'a'");
    /* shape disagrees with the offsets */
    expect_refused(path, "{\"a\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                   "4 bytes for 4 elements of I64");
    /* unknown dtype */
    expect_refused(path, "{\"a\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                   "unknown dtype");
    assert_true(vlad_st_open("/nonexistent/x.safetensors", &f, &err) != VLAD_OK);
}

static void test_episode_files(void **st) {
    (void)st;
    static vlad_profile p;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, "configs/sim-arm.yaml", &err), VLAD_OK);
    char ds[300];
    snprintf(ds, sizeof ds, "%s/data", dir);
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.expert = true;
    o.episodes = 1;
    o.tasks[0] = VLAD_TASK_WHACK;
    o.tasks[1] = VLAD_TASK_PUSH;
    o.n_tasks = 2;
    o.dataset_dir = ds;
    vlad_sim_results r;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_OK);
    for (int e = 0; e < 2; e++) {
        char path[400];
        snprintf(path, sizeof path, "%s/episode_%06d.safetensors", ds, e);
        vlad_st_file *f;
        assert_int_equal(vlad_st_open(path, &f, &err), VLAD_OK);
        const vlad_st_tensor *im = vlad_st_find(f, "images"), *sv = vlad_st_find(f, "state"),
                             *ac = vlad_st_find(f, "action"), *tk = vlad_st_find(f, "tick");
        assert_non_null(im);
        assert_non_null(sv);
        assert_non_null(ac);
        assert_non_null(tk);
        int64_t T = sv->shape[0];
        assert_int_equal(T, r.ep[e].ticks);
        assert_int_equal(im->ndim, 5);
        assert_int_equal(im->shape[0], T);
        assert_int_equal(im->shape[1], 1);
        assert_int_equal(im->shape[2], 64);
        assert_int_equal(im->shape[3], 64);
        assert_int_equal(im->shape[4], 3);
        assert_int_equal(sv->shape[1], 4);
        assert_int_equal(ac->shape[1], 4);
        /* mmapped data: no alignment promise, copy before reading */
        int64_t tick0, tick1;
        memcpy(&tick0, tk->data, 8);
        memcpy(&tick1, tk->data + (size_t)(T - 1) * 8, 8);
        assert_int_equal(tick0, r.ep[e].first_tick);
        assert_int_equal(tick1, r.ep[e].first_tick + T - 1);
        /* frames differ over time (the arm moves), and actions lead states */
        assert_true(memcmp(im->data, (uint8_t *)im->data + (T - 1) * 64 * 64 * 3, 64 * 64 * 3) != 0);
        float *s = malloc(sv->nbytes), *a = malloc(ac->nbytes);
        memcpy(s, sv->data, sv->nbytes);
        memcpy(a, ac->data, ac->nbytes);
        double moved = 0;
        for (int j = 0; j < 4; j++)
            moved += fabs(s[(T - 1) * 4 + j] - s[j]);
        assert_true(moved > 0.1);
        assert_true(fabs(a[0] - s[0]) < 0.2);
        /* metadata */
        assert_string_equal(vlad_st_meta(f, "task"), e == 0 ? "whack" : "push");
        assert_string_equal(vlad_st_meta(f, "instruction"), r.ep[e].instruction);
        assert_string_equal(vlad_st_meta(f, "format"), "vlad-sim-episode-1");
        assert_string_equal(vlad_st_meta(f, "success"), r.ep[e].success ? "true" : "false");
        cJSON *labels = cJSON_Parse(vlad_st_meta(f, "labels"));
        cJSON *events = cJSON_Parse(vlad_st_meta(f, "events"));
        assert_int_equal(cJSON_GetArraySize(labels), T);
        cJSON *l0 = cJSON_GetArrayItem(labels, 0);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(l0, "commentary")));
        cJSON *qa = cJSON_GetObjectItem(l0, "qa");
        assert_true(cJSON_GetArraySize(qa) >= 3);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetArrayItem(qa, 0)), 2);
        cJSON *e0 = cJSON_GetArrayItem(events, 0);
        assert_string_equal(cJSON_GetObjectItem(e0, "kind")->valuestring, "EPISODE_START");
        assert_string_equal(cJSON_GetObjectItem(e0, "detail")->valuestring, r.ep[e].instruction);
        int wc = 0;
        cJSON *ev;
        cJSON_ArrayForEach(ev, events) wc += !strcmp(cJSON_GetObjectItem(ev, "kind")->valuestring, "WORLD_CHANGE");
        assert_int_equal(wc, r.ep[e].world_changes);
        if (e == 0) { /* whack: the first frame has no target up: "is a target visible?" no */
            assert_string_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(qa, 0), 1)->valuestring, "no");
        }
        cJSON_Delete(labels);
        cJSON_Delete(events);

        /* Python reader (numpy), if available: same shapes and sums */
        if (e == 0 && system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
            char cmd[600];
            snprintf(cmd, sizeof cmd, "/usr/bin/python3 sim/read_episode.py --check %s", path);
            FILE *pp = popen(cmd, "r");
            assert_non_null(pp);
            char out[4096] = "";
            size_t n = fread(out, 1, sizeof out - 1, pp);
            out[n] = 0;
            assert_int_equal(pclose(pp), 0);
            cJSON *dg = cJSON_Parse(out);
            assert_non_null(dg);
            double ssum = 0, asum = 0, isum = 0;
            for (int64_t i = 0; i < T * 4; i++) {
                ssum += s[i];
                asum += a[i];
            }
            for (size_t i = 0; i < im->nbytes; i++)
                isum += ((const uint8_t *)im->data)[i];
            assert_true(fabs(cJSON_GetObjectItem(dg, "state_sum")->valuedouble - ssum) < 1e-6);
            assert_true(fabs(cJSON_GetObjectItem(dg, "action_sum")->valuedouble - asum) < 1e-6);
            assert_true(cJSON_GetObjectItem(dg, "images_sum")->valuedouble == isum);
            assert_int_equal((int)cJSON_GetObjectItem(dg, "n_labels")->valuedouble, T);
            assert_string_equal(cJSON_GetObjectItem(dg, "instruction")->valuestring, r.ep[e].instruction);
            cJSON *shapes = cJSON_GetObjectItem(dg, "shapes");
            assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(shapes, "images"), 0)->valuedouble, T);
            cJSON_Delete(dg);
        }
        free(s);
        free(a);
        vlad_st_close(f);
    }
    vlad_sim_results_free(&r);
}

/* Record one reach episode into dir/<name> with the given expert noise; returns its state
 * and action arrays (malloc'd, T x 4) and T. */
static int64_t record_reach(const char *name, double noise, float **state, float **action) {
    static vlad_profile p;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, "configs/sim-arm.yaml", &err), VLAD_OK);
    char ds[300], path[400];
    snprintf(ds, sizeof ds, "%s/%s", dir, name);
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.expert = true;
    o.expert_noise = noise;
    o.expert_noise_tau_s = 0.2;
    o.episodes = 1;
    o.tasks[0] = VLAD_TASK_REACH;
    o.n_tasks = 1;
    o.seed = 77;
    o.dataset_dir = ds;
    vlad_sim_results r;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_OK);
    assert_true(r.ep[0].success);
    vlad_sim_results_free(&r);
    snprintf(path, sizeof path, "%s/episode_%06d.safetensors", ds, 0);
    vlad_st_file *f;
    assert_int_equal(vlad_st_open(path, &f, &err), VLAD_OK);
    const vlad_st_tensor *sv = vlad_st_find(f, "state"), *ac = vlad_st_find(f, "action");
    int64_t T = sv->shape[0];
    *state = malloc(sv->nbytes);
    *action = malloc(ac->nbytes);
    memcpy(*state, sv->data, sv->nbytes);
    memcpy(*action, ac->data, ac->nbytes);
    vlad_st_close(f);
    return T;
}

/* --expert-noise (DART-style data): the world executes a perturbed command, so the
 * recorded states leave the clean path, but the recorded actions are the clean expert's
 * (reach's plan is open loop, so they equal the unperturbed run's tick by tick); the
 * perturbation is seeded (the same run twice is identical); bad settings are refused. */
static void test_expert_noise(void **st) {
    (void)st;
    float *s0, *a0, *s1, *a1, *s2, *a2;
    int64_t T0 = record_reach("clean", 0, &s0, &a0);
    int64_t T1 = record_reach("noisy", 0.05, &s1, &a1);
    int64_t T2 = record_reach("noisy2", 0.05, &s2, &a2);
    /* the last frame of an episode (the tick it ends) repeats the previous command */
    int64_t T = (T0 < T1 ? T0 : T1) - 1;
    assert_true(T > 5);
    double dstate = 0, daction = 0;
    for (int64_t i = 0; i < T * 4; i++) {
        dstate = fmax(dstate, fabs(s0[i] - s1[i]));
        daction = fmax(daction, fabs(a0[i] - a1[i]));
    }
    printf("  reach, noise 0.05 rad: max state change %.4f rad, max action change %.2g rad\n",
           dstate, daction);
    assert_true(dstate > 0.01);
    assert_true(daction < 1e-6);
    assert_int_equal(T1, T2);
    assert_memory_equal(s1, s2, (size_t)T1 * 4 * sizeof(float));
    free(s0), free(a0), free(s1), free(a1), free(s2), free(a2);

    static vlad_profile p;
    vlad_err err;
    assert_int_equal(vlad_profile_load(&p, "configs/sim-arm.yaml", &err), VLAD_OK);
    vlad_sim_opts o;
    vlad_sim_opts_defaults(&o, &p);
    o.clock = VLAD_CLOCK_LOCKSTEP;
    o.expert = true;
    o.expert_noise = 2;
    vlad_sim_results r;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "expert noise"));
    o.expert_noise = 0.05;
    o.expert_noise_tau_s = 0;
    assert_int_equal(vlad_sim_run(&o, &r, &err), VLAD_EINVAL);
}

static int setup(void **st) {
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/vlad-sim-test-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_episode_files),
        cmocka_unit_test(test_expert_noise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
