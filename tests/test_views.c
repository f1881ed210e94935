/* Views and the frame history (common/views.h): parsing the checkpoint's "vlad.views", and the
 * history's rule -- the newest image at most `lag` ticks old, the episode's first frame when
 * none is that old -- checked against the training rule (vlad_views_frame_index) over long
 * random image streams with resends, dropped frames, resets and robot restarts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "views.h"

#define B 12 /* bytes per image: a tiny "camera" */

static void fill(uint8_t *img, int cam, int64_t tick) {
    for (int i = 0; i < B; i++)
        img[i] = (uint8_t)(cam * 97 + tick * 7 + i);
}

static void test_parse(void **st) {
    (void)st;
    vlad_views v;
    vlad_err err = {0};
    assert_int_equal(vlad_views_parse(NULL, 2, 2, &v, &err), VLAD_OK);
    assert_int_equal(v.n, 2);
    assert_int_equal(v.v[1].camera, 1);
    assert_int_equal(v.max_lag, 0);
    assert_int_equal(vlad_views_parse("[{\"camera\":0,\"lag\":0},{\"camera\":0,\"lag\":4}]", 2, 1,
                                      &v, &err),
                     VLAD_OK);
    assert_int_equal(v.n, 2);
    assert_int_equal(v.v[1].lag, 4);
    assert_int_equal(v.max_lag, 4);
    char buf[128];
    vlad_views_format(&v, buf, sizeof buf);
    assert_string_equal(buf, "[{\"camera\":0,\"lag\":0},{\"camera\":0,\"lag\":4}]");
    vlad_views w;
    assert_int_equal(vlad_views_parse(buf, 2, 1, &w, &err), VLAD_OK);
    assert_memory_equal(&v, &w, sizeof v);

    struct {
        const char *json;
        int n_views, n_cameras;
        const char *says;
    } bad[] = {
        {NULL, 1, 2, "1 camera image, the robot has 2 cameras"},
        {NULL, 2, 0, "0 cameras"},
        {"{}", 1, 1, "not a JSON array"},
        {"[{\"camera\":0,\"lag\":0}]", 2, 1, "1 views, but the model takes 2"},
        {"[{\"camera\":1,\"lag\":0}]", 1, 1, "vlad.views[0].camera"},
        {"[{\"camera\":0,\"lag\":65}]", 1, 1, "vlad.views[0].lag"},
        {"[{\"camera\":0,\"lag\":-1}]", 1, 1, "vlad.views[0].lag"},
        {"[{\"camera\":0,\"lag\":1.5}]", 1, 1, "vlad.views[0].lag"},
        {"[{\"camera\":0}]", 1, 1, "vlad.views[0]: no \"lag\""},
        {"[{\"camera\":0,\"lag\":0,\"fps\":3}]", 1, 1, "unknown key \"fps\""},
        {"[3]", 1, 1, "vlad.views[0]: not an object"},
        {"[{\"camera\":\"0\",\"lag\":0}]", 1, 1, "vlad.views[0].camera"},
        {"[", 1, 1, "not a JSON array"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        assert_int_equal(vlad_views_parse(bad[i].json, bad[i].n_views, bad[i].n_cameras, &v, &err),
                         VLAD_EINVAL);
        if (!strstr(err.msg, bad[i].says))
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err.msg, bad[i].says);
    }
}

static void test_history_examples(void **st) {
    (void)st;
    vlad_views v = {.n = 3, .max_lag = 2, .v = {{0, 0}, {0, 2}, {1, 1}}};
    size_t bytes[2] = {B, B};
    vlad_err err = {0};
    vlad_view_hist *h = vlad_view_hist_new(&v, 2, bytes, &err);
    assert_non_null(h);
    assert_int_equal(vlad_view_hist_frame_bytes(h), 3 * B);
    uint8_t out[3 * B], img[B], want[B], zero[B] = {0};
    vlad_view_hist_compose(h, 0, out); /* nothing yet: zeros */
    for (int i = 0; i < 3; i++)
        assert_memory_equal(out + i * B, zero, B);
    fill(img, 0, 10);
    vlad_view_hist_put(h, 0, 10, img);
    vlad_view_hist_compose(h, 10, out);
    assert_memory_equal(out, img, B);         /* now */
    assert_memory_equal(out + B, img, B);     /* 2 ticks ago: none that old, the first frame */
    assert_memory_equal(out + 2 * B, zero, B); /* camera 1 has sent nothing */
    for (int64_t t = 11; t <= 14; t++) {
        fill(img, 0, t);
        vlad_view_hist_put(h, 0, t, img);
        fill(img, 1, t);
        vlad_view_hist_put(h, 1, t, img);
    }
    vlad_view_hist_compose(h, 14, out);
    fill(want, 0, 14);
    assert_memory_equal(out, want, B);
    fill(want, 0, 12);
    assert_memory_equal(out + B, want, B);
    fill(want, 1, 13);
    assert_memory_equal(out + 2 * B, want, B);
    /* a resent observation of tick 14 replaces it, it does not push 12 out of reach */
    uint8_t other[B];
    memset(other, 0xab, B);
    vlad_view_hist_put(h, 0, 14, other);
    vlad_view_hist_compose(h, 14, out);
    assert_memory_equal(out, other, B);
    fill(want, 0, 12);
    assert_memory_equal(out + B, want, B);
    /* a reset from tick 100: older images are ignored, the new episode starts clean */
    vlad_view_hist_reset(h, 100);
    fill(img, 0, 15);
    vlad_view_hist_put(h, 0, 15, img); /* a late observation of the last episode */
    vlad_view_hist_compose(h, 100, out);
    assert_memory_equal(out, zero, B);
    fill(img, 0, 100);
    vlad_view_hist_put(h, 0, 100, img);
    vlad_view_hist_compose(h, 101, out);
    assert_memory_equal(out, img, B);
    assert_memory_equal(out + B, img, B);
    /* the robot restarted (its tick went back): everything is forgotten */
    fill(img, 0, 101);
    vlad_view_hist_put(h, 0, 101, img);
    fill(img, 1, 101);
    vlad_view_hist_put(h, 1, 101, img);
    fill(img, 0, 100); /* tick 100 < camera 0's newest, 101 */
    vlad_view_hist_put(h, 0, 100, img);
    vlad_view_hist_compose(h, 100, out);
    assert_memory_equal(out, img, B);
    assert_memory_equal(out + B, img, B);
    assert_memory_equal(out + 2 * B, zero, B); /* camera 1's tick-101 image is gone too */
    /* after a reset from 200 and an image of the new episode, a tick below 200 is a
     * restarted robot (taken, the history cleared), not a late observation (ignored) */
    vlad_view_hist_reset(h, 200);
    fill(img, 0, 150);
    vlad_view_hist_put(h, 0, 150, img); /* late: ignored */
    vlad_view_hist_compose(h, 200, out);
    assert_memory_equal(out, zero, B);
    fill(img, 0, 200);
    vlad_view_hist_put(h, 0, 200, img);
    fill(img, 1, 200);
    vlad_view_hist_put(h, 1, 200, img);
    fill(img, 0, 3);
    vlad_view_hist_put(h, 0, 3, img); /* restarted: its ticks begin again */
    vlad_view_hist_compose(h, 3, out);
    assert_memory_equal(out, img, B);
    assert_memory_equal(out + B, img, B);
    assert_memory_equal(out + 2 * B, zero, B);
    /* out-of-range cameras are ignored */
    vlad_view_hist_put(h, 2, 102, img);
    vlad_view_hist_put(h, -1, 102, img);
    vlad_view_hist_free(h);
    vlad_view_hist_free(NULL);
}

/* The history's choice for a view equals the training rule whenever the robot sent an image
 * every tick since the episode began; with dropped frames it is the newest image at least
 * `lag` old (or the oldest held). Long random runs against a model of the rule. */
static void test_history_property(void **st) {
    (void)st;
    srand(7);
    for (int run = 0; run < 200; run++) {
        vlad_views v = {0};
        v.n = 1 + rand() % 4;
        for (int i = 0; i < v.n; i++) {
            v.v[i] = (vlad_view){.camera = rand() % 2, .lag = rand() % 7};
            if (v.v[i].lag > v.max_lag)
                v.max_lag = v.v[i].lag;
        }
        size_t bytes[2] = {B, B};
        vlad_err err = {0};
        vlad_view_hist *h = vlad_view_hist_new(&v, 2, bytes, &err);
        assert_non_null(h);
        bool drops = run % 2;                       /* odd runs drop frames */
        int64_t ep_start = 1000 * run, t = ep_start; /* the episode's first tick */
        int64_t sent[2][400];                        /* ticks sent per camera this episode */
        int n_sent[2] = {0, 0};
        vlad_view_hist_reset(h, ep_start);
        uint8_t out[4 * B], img[B], want[B];
        for (int step = 0; step < 300; step++, t++) {
            if (rand() % 60 == 0) { /* a reset: the next episode */
                ep_start = t;
                vlad_view_hist_reset(h, ep_start);
                n_sent[0] = n_sent[1] = 0;
            }
            for (int c = 0; c < 2; c++) {
                if (drops && rand() % 3 == 0)
                    continue;
                int copies = rand() % 8 == 0 ? 2 : 1; /* a resend */
                for (int k = 0; k < copies; k++) {
                    fill(img, c, t);
                    vlad_view_hist_put(h, c, t, img);
                }
                sent[c][n_sent[c]++] = t;
            }
            vlad_view_hist_compose(h, t, out);
            for (int i = 0; i < v.n; i++) {
                int c = v.v[i].camera;
                if (!n_sent[c]) {
                    uint8_t zero[B] = {0};
                    assert_memory_equal(out + i * B, zero, B);
                    continue;
                }
                /* the model: newest sent tick <= t - lag among the last max_lag+1 sent, else
                 * the oldest of those */
                int lo = n_sent[c] > v.max_lag + 1 ? n_sent[c] - (v.max_lag + 1) : 0;
                int64_t pick = sent[c][lo];
                for (int k = n_sent[c] - 1; k >= lo; k--)
                    if (sent[c][k] <= t - v.v[i].lag) {
                        pick = sent[c][k];
                        break;
                    }
                if (!drops) /* every tick sent: exactly the training rule */
                    assert_int_equal(pick - ep_start,
                                     vlad_views_frame_index(&v, i, t - ep_start));
                fill(want, c, pick);
                assert_memory_equal(out + i * B, want, B);
            }
        }
        vlad_view_hist_free(h);
    }
}

static void test_bad_new(void **st) {
    (void)st;
    vlad_views v = {.n = 1, .v = {{3, 0}}};
    size_t bytes[2] = {B, B};
    vlad_err err = {0};
    assert_null(vlad_view_hist_new(&v, 2, bytes, &err));
    assert_non_null(strstr(err.msg, "camera 3"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_history_examples),
        cmocka_unit_test(test_history_property),
        cmocka_unit_test(test_bad_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
