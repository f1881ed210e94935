/* The daemon's frame history end to end: the real vlad, in lockstep, with a model whose image
 * inputs are views of two cameras now and in the past (tests/policy/fixtures/views_3of2cam:
 * "vlad.views" = camera 0 now, camera 0 three ticks ago, camera 1 one tick ago), driven by a
 * scripted robot that sends a different random image per camera per tick through three
 * episodes: ticks 0.., a Reset from tick 12 (the ticks go on), and a restarted robot (its ticks
 * start again at 0). policy.noise_scale 0 makes every chunk a function of its inputs alone, so
 * each chunk the daemon publishes is checked against the engine run here on views taken by the
 * training rule (frame max(t - lag, the episode's first tick), MODEL.md 6.0) and the chunk's
 * own conditioning state. A view taken from the wrong tick, from the previous episode or from
 * the other camera changes the chunk. The second test runs the same with stack_4of2cam, whose
 * four views are fused in pairs (frame_stack 2, MODEL.md 6.1). */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "engine.h"
#include "harness.h"
#include "model.h"
#include "proc.h"
#include "profile.h"
#include "safetensors.h"
#include "views.h"

#define SZ 8                 /* the fixture's image_size */
#define IMG (SZ * SZ * 3)
#define NCAM 2
#define MAXT 16              /* ticks per episode */
#define MAXCHUNKS 64
#define PROMPT "follow the ball"

typedef struct chunk {
    int episode;
    int64_t obs_robot_tick;
    int horizon, dim;
    float values[16 * 3];
    float state[3];
    bool clamped;
} chunk;

typedef struct robot {
    int episode;
    int64_t first_tick[3]; /* the episode's first robot tick */
    uint8_t img[3][MAXT][NCAM][IMG]; /* per episode, per tick - first_tick, per camera */
    chunk chunks[MAXCHUNKS];
    int n_chunks;
} robot;

static void on_msg(void *arg, vlad_msg *m) {
    robot *r = arg;
    if (m->kind == VLAD_MSG_CHUNK && r->n_chunks < MAXCHUNKS) {
        const Vlad__ActionChunk *c = m->u.chunk;
        chunk *k = &r->chunks[r->n_chunks++];
        k->episode = r->episode;
        k->obs_robot_tick = c->obs_robot_tick;
        k->horizon = (int)c->horizon;
        k->dim = (int)c->dim;
        k->clamped = c->clamped;
        assert_true(c->n_values <= 16 * 3 && c->n_conditioned_state == 3);
        memcpy(k->values, c->values, c->n_values * sizeof(float));
        memcpy(k->state, c->conditioned_state, 3 * sizeof(float));
    }
    vlad_msg_clear(m);
}

static void tick(vlad_client *c, robot *r, const vlad_profile *p, int64_t t) {
    int e = r->episode;
    int64_t k = t - r->first_tick[e];
    assert_true(k >= 0 && k < MAXT);
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    Vlad__CameraImage ci[NCAM], *cis[NCAM];
    for (int i = 0; i < NCAM; i++) {
        for (int b = 0; b < IMG; b++)
            r->img[e][k][i][b] = (uint8_t)(rand() & 0xff);
        vlad__camera_image__init(&ci[i]);
        ci[i].name = (char *)p->cameras[i].name;
        ci[i].width = ci[i].height = SZ;
        ci[i].encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
        ci[i].data.data = r->img[e][k][i];
        ci[i].data.len = IMG;
        ci[i].tick = t;
        cis[i] = &ci[i];
    }
    double pos[3] = {0.1, -0.2, 0.3 + 0.01 * (double)k};
    o.tick = t;
    o.stamp_ns = vlad_now_ns();
    o.n_joint_pos = 3;
    o.joint_pos = pos;
    o.n_images = NCAM;
    o.images = cis;
    Vlad__Action *a = NULL;
    vlad_err err;
    if (vlad_client_lockstep(c, &o, 20000, 200, on_msg, r, &a, &err))
        fail_msg("episode %d tick %lld: %s", e, (long long)t, err.msg);
    vlad__action__free_unpacked(a, NULL);
}

static void reset(vlad_client *c, int64_t from) {
    vh_cmd b;
    Vlad__Command *cmd = vh_command(&b, VLAD__COMMAND__BODY_RESET, NULL);
    b.reset.from_robot_tick = from;
    Vlad__Reply *rep = NULL;
    vlad_err err;
    if (vlad_client_command(c, cmd, 5000, &rep, &err))
        fail_msg("reset: %s", err.msg);
    assert_true(rep->ok);
    vlad__reply__free_unpacked(rep, NULL);
}

static void views_through_the_daemon(const char *fixture) {
    char dir[256], prof[300], logp[300], model[4200];
    vh_tmpdir(dir, sizeof dir, "vlad-views");
    snprintf(model, sizeof model, "%s/tests/policy/fixtures/%s.safetensors", vh_src_dir(), fixture);
    snprintf(prof, sizeof prof, "%s/p.yaml", dir);
    snprintf(logp, sizeof logp, "%s/vlad.log", dir);
    vh_write_file(prof,
                  "robot: viewbot\ncontrol_hz: 50\nclock: lockstep\n"
                  "joints:\n"
                  "  - {name: a, min: -50, max: 50, max_velocity: 100000}\n"
                  "  - {name: b, min: -50, max: 50, max_velocity: 100000}\n"
                  "  - {name: c, min: -50, max: 50, max_velocity: 100000}\n"
                  "cameras:\n  - {name: left, width: 8, height: 8}\n"
                  "  - {name: right, width: 8, height: 8}\n"
                  "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
                  "  control: ipc://%s/ctl\n"
                  "policy: {model: %s, noise_scale: 0, instruction: \"" PROMPT "\"}\n"
                  "async: {mode: sync, execution_horizon: 2, trigger_threshold: 1}\n"
                  "safety: {estop_file: none, max_delta_per_tick: 10}\nlang: {max_streams: 0}\n",
                  dir, dir, dir, model);
    vlad_profile p;
    vh_load_profile(&p, prof);
    pid_t pid = vh_start("vlad", prof, logp, NULL);
    vlad_err err;
    vlad_client *c = vlad_client_new(&p, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_PUBLISH | VLAD_CLIENT_CONTROL,
                                     &err);
    assert_non_null(c);
    Vlad__Status *s0 = vh_wait_status(c, 200, 300, &pid, logp);
    assert_non_null(s0);
    vlad__status__free_unpacked(s0, NULL);

    static robot r;
    memset(&r, 0, sizeof r);
    srand(5);
    /* episode 0: ticks 0..11; episode 1: a reset from 12, ticks 12..23; episode 2: the robot
     * restarted, ticks 0..9 again */
    r.first_tick[0] = 0, r.first_tick[1] = 12, r.first_tick[2] = 0;
    for (int64_t t = 0; t < 12; t++)
        tick(c, &r, &p, t);
    reset(c, 12);
    r.episode = 1;
    for (int64_t t = 12; t < 24; t++)
        tick(c, &r, &p, t);
    r.episode = 2;
    for (int64_t t = 0; t < 10; t++)
        tick(c, &r, &p, t);
    vlad_client_free(c);
    assert_int_equal(vh_stop(&pid, 5000), 0);

    /* every chunk against the engine here, on the views of the training rule */
    vlad_model *m = NULL;
    if (vlad_model_load(model, &m, &err))
        fail_msg("%s", err.msg);
    vlad_views v;
    if (vlad_views_parse(vlad_st_meta(m->file, "vlad.views"), m->cfg.n_cameras, NCAM, &v, &err))
        fail_msg("%s", err.msg);
    vlad_runstate_opts o = {.n_threads = 1};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    assert_non_null(rs);
    int H = m->cfg.chunk_size, A = m->cfg.action_dim;
    float noise[16 * 3] = {0}, out[16 * 3];
    assert_true(H * A <= 16 * 3);
    int checked[3] = {0}, early[3] = {0};
    double worst = 0;
    for (int i = 0; i < r.n_chunks; i++) {
        const chunk *k = &r.chunks[i];
        int e = k->episode;
        int64_t t = k->obs_robot_tick - r.first_tick[e];
        assert_true(t >= 0 && t < MAXT);
        assert_false(k->clamped);
        assert_int_equal(k->dim, A);
        assert_true(k->horizon >= 1 && k->horizon <= H);
        const uint8_t *imgs[VLAD_MAX_VIEWS];
        for (int j = 0; j < v.n; j++)
            imgs[j] = r.img[e][vlad_views_frame_index(&v, j, t)][v.v[j].camera];
        if (vlad_encode_prefix(rs, imgs, PROMPT, strlen(PROMPT), &err) < 0 ||
            vlad_sample_actions(rs, k->state, noise, 0, out, &err))
            fail_msg("%s", err.msg);
        
        const float *want = out; /* sync, Δ = 0: the chunk's rows are the model's first */
        for (int j = 0; j < k->horizon * A; j++) {
            double d = fabs((double)k->values[j] - want[j]);
            worst = d > worst ? d : worst;
        }
        if (getenv("VIEWS_DEBUG"))
            printf("ep %d t %lld horizon %d got %g %g %g want %g %g %g state %g %g %g\n", e,
                   (long long)t, k->horizon, k->values[0], k->values[1], k->values[2], want[0],
                   want[1], want[2], k->state[0], k->state[1], k->state[2]);
        checked[e]++;
        early[e] += t < v.max_lag;
    }
    printf("%s: %d chunks checked (episodes %d / %d / %d, %d / %d / %d before the oldest view "
           "exists): max |daemon - engine on the training rule's views| = %.3g\n",
           fixture, r.n_chunks, checked[0], checked[1], checked[2], early[0], early[1], early[2], worst);
    for (int e = 0; e < 3; e++) {
        assert_true(checked[e] >= 3);
        assert_true(early[e] >= 1);
    }
    assert_true(worst <= 1e-5);
    vlad_runstate_free(rs);
    vlad_model_free(m);
    vh_finish_dir(dir, true, NULL);
}

static void test_views_through_the_daemon(void **st) {
    (void)st;
    views_through_the_daemon("views_3of2cam");
}

/* The same with views fused in pairs (stack_4of2cam: frame_stack 2, camera 0 now and 3 ticks
 * ago, camera 1 now and 2 ago): the daemon composes the same history, the engine fuses it. */
static void test_stacked_views_through_the_daemon(void **st) {
    (void)st;
    views_through_the_daemon("stack_4of2cam");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_through_the_daemon),
        cmocka_unit_test(test_stacked_views_through_the_daemon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
