/* Engine vs the committed PyTorch-twin fixtures (tests/policy/fixtures, regenerate with
 * /usr/bin/python3 training/make_fixtures.py). The twin's reference is float64 on the stored
 * weights; the engine computes in float32. Tolerances (max abs error):
 *   F32 checkpoint:  actions 1e-4, prefix K/V 1e-4 (MODEL.md parity)
 *   BF16 checkpoint: actions 2e-4, prefix K/V 2e-4 (the engine widens the same BF16 weights
 *                    to F32 exactly, so the measured error is F32-sized; the bound is looser
 *                    only to leave room for a future BF16-compute path)
 * and the same greedy text (bytes and end token).
 * The views fixture (a model seeing two robot cameras now and in the past, "vlad.views") runs
 * its frame stream through the daemon's frame history (common/views.h) tick by tick and
 * compares the engine's chunk on the composed views with the twin's, whose views were taken
 * by the training rule: actions 1e-4 at every evaluated tick, including the first ticks,
 * before the oldest view has a frame that old. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "model.h"
#include "policy_testutil.h"
#include "safetensors.h"
#include "views.h"

static void check(const char *name, double tol, int threads) {
    char dir[4096];
    tu_fixture_dir(dir, sizeof dir);
    fx_result r;
    fx_check(dir, name, threads, &r);
    if (!r.ok)
        fail_msg("%s", r.msg);
    printf("%s (%d thread%s): S=%d actions max err %.3g, prefix KV max err %.3g, text %s (%d bytes)\n",
           name, threads, threads > 1 ? "s" : "", r.S, r.act_err, r.kv_err,
           r.text_ok ? "equal" : "DIFFERS", r.text_len);
    if (!r.text_ok)
        printf("  text %s, expected %s\n", r.text_hex, r.text_hex_expected);
    assert_true(r.act_err <= tol);
    assert_true(r.kv_err <= tol);
    assert_true(r.text_ok);
    assert_true(r.runs_equal);
}

static void test_f32_1cam(void **state) {
    (void)state;
    check("tiny_f32_1cam", 1e-4, 1);
}
static void test_f32_1cam_2threads(void **state) {
    (void)state;
    check("tiny_f32_1cam", 1e-4, 2);
}
static void test_bf16_2cam(void **state) {
    (void)state;
    check("tiny_bf16_2cam", 2e-4, 1);
}

/* A views fixture (training/vlad_twin/fixtures.py): the daemon's frame history composes
 * each evaluated tick's views, and the engine's actions match the twin's. */
static void check_views(const char *name, int n_views, int max_lag, int frame_stack) {
    char dir[4096], path[4200];
    tu_fixture_dir(dir, sizeof dir);
    vlad_err err = {0};
    vlad_model *m = NULL;
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if (vlad_model_load(path, &m, &err))
        fail_msg("%s", err.msg);
    vlad_st_file *ex = NULL;
    snprintf(path, sizeof path, "%s/%s.expected.safetensors", dir, name);
    if (vlad_st_open(path, &ex, &err))
        fail_msg("%s", err.msg);
    const vlad_st_tensor *frames = vlad_st_find(ex, "frames"), *st = vlad_st_find(ex, "state"),
                         *no = vlad_st_find(ex, "noise"), *ac = vlad_st_find(ex, "actions");
    assert_true(frames && st && no && ac && frames->dtype == VLAD_DT_U8 && frames->ndim == 5);
    const vlad_config *c = &m->cfg;
    int T = (int)frames->shape[0], n_cams = (int)frames->shape[1];
    vlad_views v;
    if (vlad_views_parse(vlad_st_meta(m->file, "vlad.views"), c->n_cameras, n_cams, &v, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(v.n, n_views);
    assert_int_equal(v.max_lag, max_lag);
    assert_int_equal(c->frame_stack, frame_stack);
    size_t cam = (size_t)c->image_size * (size_t)c->image_size * 3, bytes[2] = {cam, cam};
    vlad_view_hist *h = vlad_view_hist_new(&v, n_cams, bytes, &err);
    assert_non_null(h);
    vlad_runstate_opts o = {.n_threads = 1};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    assert_non_null(rs);
    uint8_t *composed = malloc(vlad_view_hist_frame_bytes(h));
    size_t HA = (size_t)c->chunk_size * (size_t)c->action_dim;
    float *out = malloc(HA * sizeof(float));
    const char *prompt = vlad_st_meta(ex, "prompt");
    const char *ticks = vlad_st_meta(ex, "ticks");
    assert_true(composed && out && prompt && ticks);
    vlad_view_hist_reset(h, 0);
    int k = 0;
    double worst = 0;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < n_cams; i++)
            vlad_view_hist_put(h, i, t, frames->data + ((size_t)t * (size_t)n_cams + (size_t)i) * cam);
        /* is t an evaluated tick? (the k-th of "t0,t1,...") */
        const char *p = ticks;
        int idx = 0, hit = -1;
        while (*p) {
            if (atoi(p) == t)
                hit = idx;
            idx++;
            p = strchr(p, ',');
            if (!p)
                break;
            p++;
        }
        if (hit < 0)
            continue;
        vlad_view_hist_compose(h, t, composed);
        const uint8_t *imgs[VLAD_MAX_VIEWS];
        for (int i = 0; i < v.n; i++)
            imgs[i] = composed + (size_t)i * cam;
        if (vlad_encode_prefix(rs, imgs, prompt, strlen(prompt), &err) < 0 ||
            vlad_sample_actions(rs, (const float *)st->data + (size_t)hit * (size_t)c->state_dim,
                                (const float *)no->data + (size_t)hit * HA, 0, out, &err))
            fail_msg("%s", err.msg);
        const float *want = (const float *)ac->data + (size_t)hit * HA;
        double e = 0;
        for (size_t i = 0; i < HA; i++)
            e = fabs((double)out[i] - want[i]) > e ? fabs((double)out[i] - want[i]) : e;
        printf("%s tick %d: actions max err %.3g\n", name, t, e);
        worst = e > worst ? e : worst;
        k++;
    }
    assert_int_equal(k, 5);
    assert_true(worst <= 1e-4);
    free(composed);
    free(out);
    vlad_runstate_free(rs);
    vlad_view_hist_free(h);
    vlad_st_close(ex);
    vlad_model_free(m);
}

static void test_views_history(void **state) {
    (void)state;
    check_views("views_3of2cam", 3, 3, 1);
}

/* Four views fused in pairs (frame_stack 2): each camera now and in the past in one token set. */
static void test_views_stacked(void **state) {
    (void)state;
    check_views("stack_4of2cam", 4, 3, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_1cam),
        cmocka_unit_test(test_f32_1cam_2threads),
        cmocka_unit_test(test_bf16_2cam),
        cmocka_unit_test(test_views_history),
        cmocka_unit_test(test_views_stacked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
