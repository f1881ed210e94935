/* test_lang_daemon — language from the real daemon on loopback, while it drives a robot.
 *
 * The real `vlad` with the default model (configs/sim-arm.yaml, endpoints moved to ipc:// in a
 * private folder, wall clock at 50 Hz) drives a scripted robot: this test publishes an
 * Observation with a camera image every tick and follows each Action. Image A is sent until a
 * switch tick, image B after it, so the robot tick of a stream's frame says which image it saw.
 *   1. 150 ticks without language, then 150 ticks with a question every 15 ticks (and one
 *      `vladctl --json ask` run beside): every daemon tick gets one Action in both phases (a
 *      skipped tick only as a counted overrun); stall ticks are printed (in wall clock they
 *      depend on the machine's load; the lockstep test below asserts language adds none);
 *   2. every answer arrives on lang.<robot> in order (piece indices 0, 1, ...; one last piece),
 *      names its question and the frame it was conditioned on (a frame encoded around the time
 *      of the ask), and equals the greedy answer the engine gives in-process for that frame's
 *      image and the instruction: the daemon's shared prefill and batched decoding change nothing;
 *   3. refusals are replies with reasons: a question longer than the model reads, more asks
 *      than lang.max_streams slots;
 *   4. during an e-stop a question is still answered (language moves nothing) while every
 *      Action holds;
 *   5. status: one prefill per frame, prefix blocks bounded by the slots, streams all done,
 *      requests and refusals counted.
 * Then in lockstep, the same robot run twice, the second time with questions every 15 ticks:
 * the Actions are bit-identical (targets, sources: no stall added) and the answers are the
 * engine's for their frames. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
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

#define HZ 50
#define K 10           /* async.execution_horizon of the profile */
#define SLOTS 4
#define IMG (64 * 64 * 3)
#define MAX_STREAMS_SEEN 64

static char g_dir[64];
static vh_sets g_sets;
static pid_t g_vlad = -1;
static vlad_profile g_p;

typedef struct stream {
    uint32_t id;
    char question[64];
    int64_t asked_tick;    /* daemon tick in the ask's reply */
    char text[512];
    int len, pieces, done;
    int64_t obs_tick, obs_robot_tick;
    char error[160];
} stream;

typedef struct robot {
    vlad_client *c;
    double pos[VLAD_MAX_JOINTS];
    int64_t tick;              /* next robot tick to publish */
    int64_t switch_tick;       /* image B from here on */
    uint8_t img[2][IMG];
    /* per phase */
    int actions, holds_after_policy, estop_actions;
    int64_t last_action_tick;  /* daemon tick of the newest Action (-1: none) */
    int gaps;                  /* daemon ticks without an Action (a tick skipped) */
    bool seen_policy;
    stream s[MAX_STREAMS_SEEN];
    int n;
    int pieces_foreign;        /* pieces of streams this test did not ask for (vladctl's) */
} robot;

static void add_set(const char *key, const char *value) { vh_sets_add(&g_sets, key, value); }

static void make_images(robot *r) {
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            uint8_t *a = r->img[0] + (y * 64 + x) * 3, *b = r->img[1] + (y * 64 + x) * 3;
            bool ball = (x - 20) * (x - 20) + (y - 40) * (y - 40) < 36;
            a[0] = ball ? 220 : 128, a[1] = ball ? 30 : 128, a[2] = ball ? 30 : 128;
            bool blk = x > 36 && x < 48 && y > 16 && y < 28;
            b[0] = blk ? 30 : 120, b[1] = blk ? 30 : 120, b[2] = blk ? 220 : 120;
        }
}

static stream *find(robot *r, uint32_t id) {
    for (int i = 0; i < r->n; i++)
        if (r->s[i].id == id)
            return &r->s[i];
    return NULL;
}

/* one message: follow an action, collect a language piece (checking their order) */
static void on_msg(void *arg, vlad_msg *m) {
    robot *r = arg;
    if (m->kind == VLAD_MSG_ACTION) {
        const Vlad__Action *a = m->u.action;
        r->actions++;
        if (r->last_action_tick >= 0 && a->tick != r->last_action_tick + 1)
            r->gaps++;
        r->last_action_tick = a->tick;
        if (a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY)
            r->seen_policy = true;
        else if (a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP)
            r->estop_actions++;
        else if (r->seen_policy)
            r->holds_after_policy++;
        for (int j = 0; j < g_p.n_joints; j++)
            r->pos[j] += 0.5 * (a->joint_targets[j] - r->pos[j]);
    } else if (m->kind == VLAD_MSG_LANG) {
        const Vlad__LanguageToken *t = m->u.lang;
        stream *s = find(r, t->stream_id);
        if (!s) {
            r->pieces_foreign++;
        } else {
            assert_false(s->done); /* nothing after the last piece */
            assert_int_equal(t->index, (uint32_t)s->pieces);
            if (t->index == 0) {
                s->obs_tick = t->obs_tick;
                s->obs_robot_tick = t->obs_robot_tick;
                assert_string_equal(t->question, s->question);
            } else {
                assert_int_equal(t->obs_tick, s->obs_tick);
            }
            assert_true(s->len + (int)t->text.len < (int)sizeof s->text);
            if (t->text.len)
                memcpy(s->text + s->len, t->text.data, t->text.len);
            s->len += (int)t->text.len;
            s->pieces++;
            s->done = t->done;
            snprintf(s->error, sizeof s->error, "%s", t->error ? t->error : "");
        }
    }
    vlad_msg_clear(m);
}

/* take everything that arrived */
static void drain(robot *r) {
    vlad_msg m;
    vlad_err err;
    while (vlad_client_recv(r->c, 0, &m, &err) == VLAD_OK)
        on_msg(r, &m);
}

/* The observation of robot tick t: the state and this tick's image (ci, cis: its storage). */
static void fill_obs(robot *r, int64_t t, Vlad__Observation *o, Vlad__CameraImage *ci,
                     Vlad__CameraImage **cis) {
    vlad__observation__init(o);
    vlad__camera_image__init(ci);
    cis[0] = ci;
    ci->name = g_p.cameras[0].name;
    ci->width = ci->height = 64;
    ci->encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci->data.data = r->img[t < r->switch_tick ? 0 : 1];
    ci->data.len = IMG;
    ci->tick = t;
    o->tick = t;
    o->stamp_ns = vlad_now_ns();
    o->n_joint_pos = (size_t)g_p.n_joints;
    o->joint_pos = r->pos;
    o->n_images = 1;
    o->images = cis;
}

/* one robot tick: publish the state and this tick's image, then read what came */
static void tick(robot *r) {
    Vlad__Observation o;
    Vlad__CameraImage ci, *cis[1];
    fill_obs(r, r->tick, &o, &ci, cis);
    vlad_err err;
    assert_int_equal(vlad_client_publish_observation(r->c, &o, &err), 0);
    r->tick++;
    drain(r);
}

/* run n ticks at HZ on absolute deadlines */
static void run_ticks(robot *r, int n, int64_t *deadline) {
    for (int i = 0; i < n; i++) {
        vlad_sleep_until_ns(*deadline);
        *deadline += VLAD_NS_PER_S / HZ;
        tick(r);
    }
}

static Vlad__Reply *command(robot *r, Vlad__Command *cmd) {
    Vlad__Reply *rep = NULL;
    vlad_err err;
    if (vlad_client_command(r->c, cmd, 5000, &rep, &err))
        fail_msg("command: %s", err.msg);
    return rep;
}

/* the daemon's Status (free with vlad__status__free_unpacked) */
static Vlad__Status *status(robot *r) {
    Vlad__Status *st = vh_status(r->c, 5000);
    if (!st)
        fail_msg("status: no ok reply in 5 s");
    return st;
}

/* the daemon's stall ticks and overruns so far */
static void stall_counts(robot *r, uint64_t *stall, uint64_t *over) {
    Vlad__Status *st = status(r);
    *stall = st->stall_ticks;
    *over = st->overruns;
    vlad__status__free_unpacked(st, NULL);
}

/* ask; on success the stream is recorded. Returns the reply (caller frees). */
static Vlad__Reply *ask(robot *r, const char *q) {
    Vlad__Command cmd = VLAD__COMMAND__INIT;
    Vlad__Ask a = VLAD__ASK__INIT;
    a.question = (char *)q;
    cmd.body_case = VLAD__COMMAND__BODY_ASK;
    cmd.ask = &a;
    Vlad__Reply *rep = command(r, &cmd);
    if (rep->ok) {
        assert_true(rep->stream_id > 0);
        assert_true(r->n < MAX_STREAMS_SEEN);
        stream *s = &r->s[r->n++];
        memset(s, 0, sizeof *s);
        s->id = rep->stream_id;
        snprintf(s->question, sizeof s->question, "%s", q);
        s->asked_tick = rep->status->tick;
    }
    return rep;
}

static bool all_done(const robot *r) {
    for (int i = 0; i < r->n; i++)
        if (!r->s[i].done)
            return false;
    return true;
}

static vlad_views g_views; /* the model's views (engine_up) */

/* the engine's own greedy answer for q on the frame of robot tick t with the daemon's
 * instruction: each view (camera 0, lag L) is the image of robot tick t - L (a frame every
 * tick; before the first one, the first, which is image A like every frame before the switch) */
static int expected(vlad_runstate *rs, const robot *r, int64_t t, const char *q, char *out,
                    size_t cap) {
    vlad_err err = {0};
    const uint8_t *cams[VLAD_MAX_VIEWS];
    for (int v = 0; v < g_views.n; v++)
        cams[v] = r->img[t - g_views.v[v].lag < r->switch_tick ? 0 : 1];
    const char *prompt = g_p.policy.instruction;
    assert_true(vlad_encode_prefix(rs, cams, prompt, strlen(prompt), &err) >= 0);
    size_t len = 0;
    assert_int_equal(vlad_lang_generate(rs, q, strlen(q), out, cap, &len, &err), 0);
    return (int)(len < cap ? len : cap - 1);
}

static const char *k_questions[] = {"which colour is the target?", "where is the target?",
                                    "is the target touched?", "", "how many balls are there?"};

static void check_answers(robot *r, vlad_runstate *rs) {
    for (int i = 0; i < r->n; i++) {
        stream *s = &r->s[i];
        assert_true(s->done);
        assert_string_equal(s->error, "");
        /* the newest frame at the ask, or the next one: within two chunk periods of it */
        if (s->obs_tick < s->asked_tick - 3 * K || s->obs_tick > s->asked_tick + 3 * K)
            fail_msg("stream %u asked at tick %lld conditioned on the frame of tick %lld",
                     s->id, (long long)s->asked_tick, (long long)s->obs_tick);
        int which = s->obs_robot_tick < r->switch_tick ? 0 : 1;
        char want[512];
        int n = expected(rs, r, s->obs_robot_tick, s->question, want, sizeof want);
        printf("stream %u \"%s\" (asked at tick %lld, frame of tick %lld, image %c): \"%.*s\" in "
               "%d pieces\n", s->id, s->question, (long long)s->asked_tick, (long long)s->obs_tick,
               which ? 'B' : 'A', s->len, s->text, s->pieces);
        assert_int_equal(s->len, n);
        assert_memory_equal(s->text, want, (size_t)n);
    }
}

static char g_prof[4200];

/* Start the daemon on configs/sim-arm.yaml in clock `clock` with the test's overrides (its own
 * folder), and r's client; returns once status answers (the model is loaded). */
static void daemon_up(robot *r, const char *clock) {
    vh_tmpdir(g_dir, sizeof g_dir, "lang");
    char logp[128];
    snprintf(logp, sizeof logp, "%s/vlad.log", g_dir);
    g_sets.n = 0;
    vh_sets_private(&g_sets, g_dir);
    add_set("lang.max_streams", "4");
    add_set("lang.tokens_per_frame", "2");
    add_set("policy.instruction", "touch the red ball");
    add_set("clock", clock);
    snprintf(g_prof, sizeof g_prof, "%s/configs/sim-arm.yaml", vh_src_dir());
    vh_load_profile(&g_p, g_prof);
    vh_sets_apply(&g_sets, &g_p);
    const char *args[2 * VH_SETS_MAX + 1];
    args[vh_sets_args(&g_sets, args, 0)] = NULL;
    g_vlad = vh_start("vlad", g_prof, logp, args);

    memset(r, 0, sizeof *r);
    make_images(r);
    for (int j = 0; j < g_p.n_joints; j++)
        r->pos[j] = g_p.joints[j].home;
    r->switch_tick = INT64_MAX;
    r->last_action_tick = -1;
    vlad_err err;
    r->c = vlad_client_new(&g_p, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_LANG | VLAD_CLIENT_PUBLISH |
                                     VLAD_CLIENT_CONTROL, &err);
    assert_non_null(r->c);
    /* up: the model loads, then status answers */
    Vlad__Status *st = vh_wait_status(r->c, 200, 150, &g_vlad, logp);
    assert_non_null(st);
    assert_int_equal(st->lang_max_streams, SLOTS);
    assert_int_equal(st->prefix_blocks, SLOTS + 2);
    vlad__status__free_unpacked(st, NULL);
}

/* SIGTERM: the daemon exits 0; its folder goes */
static void daemon_down(robot *r) {
    vlad_client_free(r->c);
    r->c = NULL;
    assert_int_equal(vh_stop(&g_vlad, 10000), 0);
    assert_int_equal(vh_rmdir(g_dir), 0);
}

/* the in-process engine the answers are checked against, and the model's views */
static vlad_model *g_m;
static vlad_runstate *g_rs;
static void engine_up(void) {
    vlad_err err;
    assert_int_equal(vlad_model_load(g_p.policy.model, &g_m, &err), 0);
    if (vlad_views_parse(vlad_st_meta(g_m->file, "vlad.views"), g_m->cfg.n_cameras, 1, &g_views,
                         &err))
        fail_msg("%s", err.msg);
    vlad_runstate_opts o = {.n_threads = g_p.policy.threads, .max_streams = 1};
    g_rs = vlad_runstate_new(g_m, &o, &err);
    assert_non_null(g_rs);
}

static void test_language_while_acting(void **state) {
    (void)state;
    static robot r;
    daemon_up(&r, "wall");
    engine_up();
    vlad_runstate *rs = g_rs;
    char *prof = g_prof;
    Vlad__Reply *rep = NULL;

    int64_t deadline = vlad_now_ns();
    run_ticks(&r, 60, &deadline); /* the first chunks */
    assert_true(r.seen_policy);

    /* 1. without language */
    uint64_t stall0, over0;
    stall_counts(&r, &stall0, &over0);
    int64_t t0 = r.tick;
    r.actions = r.holds_after_policy = 0;
    run_ticks(&r, 150, &deadline);
    uint64_t stall1, over1;
    stall_counts(&r, &stall1, &over1);
    int actions1 = r.actions, holds1 = r.holds_after_policy, gaps1 = r.gaps;
    int64_t ticks1 = r.tick - t0;

    /* 2. with language: a question every 15 ticks, `vladctl ask` beside, image B halfway */
    char ctl_out[128];
    snprintf(ctl_out, sizeof ctl_out, "%s/vladctl.json", g_dir);
    r.actions = r.holds_after_policy = r.gaps = 0;
    t0 = r.tick;
    r.switch_tick = r.tick + 75;
    pid_t ctl = -1;
    int asked = 0, refused = 0;
    /* ten asks, more (up to 40) while fewer than five were accepted: on a loaded machine the
     * answers decode slowly and an ask finds every slot taken (refused, counted, asked again) */
    for (int i = 0; i < 40 && (i < 10 || asked < 5); i++) {
        rep = ask(&r, k_questions[i % 5]);
        if (!rep->ok) { /* only ever for want of a slot, while earlier answers decode */
            assert_non_null(strstr(rep->error, "no free language stream"));
            refused++;
        }
        asked += rep->ok;
        vlad__reply__free_unpacked(rep, NULL);
        if (i == 2) {
            const char *cargs[2 * VH_SETS_MAX + 8];
            int n = vh_sets_args(&g_sets, cargs, 0);
            cargs[n++] = "--json";
            cargs[n++] = "--timeout";
            cargs[n++] = "5000";
            cargs[n++] = "ask";
            cargs[n++] = "which colour is the target?";
            cargs[n] = NULL;
            ctl = vh_start("vladctl", prof, ctl_out, cargs);
        }
        run_ticks(&r, 15, &deadline);
    }
    for (int i = 0; i < 200 && !all_done(&r); i++)
        run_ticks(&r, 1, &deadline);
    uint64_t stall2, over2;
    stall_counts(&r, &stall2, &over2);
    int actions2 = r.actions, holds2 = r.holds_after_policy, gaps2 = r.gaps;
    int64_t ticks2 = r.tick - t0;
    printf("without language: %lld ticks, %d actions, %d ticks skipped, %d holds, %llu stall "
           "ticks\n", (long long)ticks1, actions1, gaps1, holds1,
           (unsigned long long)(stall1 - stall0));
    printf("with language:    %lld ticks, %d actions, %d ticks skipped, %d holds, %llu stall "
           "ticks, %d asks accepted, %d refused (no slot)\n", (long long)ticks2, actions2, gaps2,
           holds2, (unsigned long long)(stall2 - stall1), asked, refused);
    assert_true(asked >= 5);
    assert_true(all_done(&r));
    /* an Action every daemon tick: none skipped but for overruns (a tick that began after its
     * deadline had passed: counted by the daemon, possible without SCHED_FIFO on a loaded
     * machine); the daemon's clock, not the robot's, counts them: a window may see one more or
     * less; language adds no stall */
    printf("overruns: %llu without language, %llu with\n", (unsigned long long)(over1 - over0),
           (unsigned long long)(over2 - over1));
    assert_true((uint64_t)gaps1 <= over1 - over0);
    assert_true((uint64_t)gaps2 <= over2 - over1);
    assert_true(actions1 >= ticks1 - 2 && actions1 <= ticks1 + 2);
    assert_true(actions2 >= ticks2 - 2 && actions2 <= ticks2 + 2);
    /* (stall ticks in wall clock depend on the machine's load: printed above; that language adds
     * none is asserted exactly in lockstep, test_lockstep_actions_unchanged) */
    check_answers(&r, rs);

    /* vladctl printed the whole answer and its frame */
    int ctl_rc = -1;
    for (int i = 0; i < 100 && (ctl_rc = vlad_proc_wait(ctl, 0)) < 0; i++)
        run_ticks(&r, 5, &deadline);
    assert_int_equal(ctl_rc, 0);
    FILE *fp = fopen(ctl_out, "r");
    assert_non_null(fp);
    static char js[8192];
    size_t jn = fread(js, 1, sizeof js - 1, fp);
    js[jn] = 0;
    fclose(fp);
    cJSON *j = cJSON_Parse(js);
    if (!j)
        fail_msg("vladctl --json ask printed: %s", js);
    const cJSON *ans = cJSON_GetObjectItem(j, "answer"), *ort = cJSON_GetObjectItem(j, "obs_robot_tick");
    assert_true(cJSON_IsString(ans) && cJSON_IsNumber(ort));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "done")));
    char want[512];
    int wn = expected(rs, &r, (int64_t)ort->valuedouble, "which colour is the target?", want,
                      sizeof want);
    printf("vladctl ask: \"%s\" (frame of robot tick %.0f)\n", ans->valuestring, ort->valuedouble);
    assert_int_equal(strlen(ans->valuestring), (size_t)wn);
    assert_memory_equal(ans->valuestring, want, (size_t)wn);
    cJSON_Delete(j);

    /* 3. refusals: too long a question; more asks than slots (back to back) */
    rep = ask(&r, "which colour is the target? and where is it?");
    assert_false(rep->ok);
    assert_non_null(strstr(rep->error, "at most 32"));
    vlad__reply__free_unpacked(rep, NULL);
    refused++;
    int burst_ok = 0, burst_no = 0;
    for (int i = 0; i < SLOTS + 2; i++) {
        rep = ask(&r, "where is the target?");
        if (rep->ok)
            burst_ok++;
        else {
            assert_non_null(strstr(rep->error, "no free language stream"));
            burst_no++;
        }
        vlad__reply__free_unpacked(rep, NULL);
    }
    assert_int_equal(burst_ok, SLOTS);
    assert_int_equal(burst_no, 2);
    asked += burst_ok;
    refused += burst_no;
    for (int i = 0; i < 300 && !all_done(&r); i++)
        run_ticks(&r, 1, &deadline);
    assert_true(all_done(&r));

    /* 4. during an e-stop a question is answered; every action holds */
    vh_cmd b;
    rep = command(&r, vh_command(&b, VLAD__COMMAND__BODY_ESTOP, "test"));
    assert_true(rep->ok);
    vlad__reply__free_unpacked(rep, NULL);
    run_ticks(&r, 5, &deadline);
    r.actions = r.estop_actions = 0;
    rep = ask(&r, "is the target touched?");
    assert_true(rep->ok);
    asked++;
    vlad__reply__free_unpacked(rep, NULL);
    for (int i = 0; i < 300 && !all_done(&r); i++)
        run_ticks(&r, 1, &deadline);
    assert_true(all_done(&r));
    assert_true(r.actions > 0);
    assert_int_equal(r.estop_actions, r.actions);
    rep = command(&r, vh_command(&b, VLAD__COMMAND__BODY_RELEASE_ESTOP, NULL));
    vlad__reply__free_unpacked(rep, NULL);
    check_answers(&r, rs);

    /* 5. status */
    run_ticks(&r, 10, &deadline);
    Vlad__Status *st = status(&r);
    printf("status: %llu prefills for %llu frames, blocks %u/%u, %llu requests, %llu refused, "
           "%llu done, %llu tokens, %llu preempted\n", (unsigned long long)st->prefills,
           (unsigned long long)st->frames, st->prefix_blocks_in_use, st->prefix_blocks,
           (unsigned long long)st->lang_requests, (unsigned long long)st->lang_refused,
           (unsigned long long)st->lang_streams_done, (unsigned long long)st->lang_tokens,
           (unsigned long long)st->lang_slices_preempted);
    assert_true(st->frames > 10);
    assert_int_equal(st->prefills, st->frames); /* one prefill per frame, shared */
    assert_int_equal(st->lang_streams_active, 0);
    assert_true(st->prefix_blocks_in_use >= 1 && st->prefix_blocks_in_use <= SLOTS + 1);
    assert_int_equal(st->lang_requests, (uint64_t)asked + 1); /* + vladctl's */
    assert_int_equal(st->lang_refused, (uint64_t)refused);
    assert_int_equal(st->lang_streams_done, (uint64_t)asked + 1);
    assert_true(st->lang_tokens > 0);
    vlad__status__free_unpacked(st, NULL);

    daemon_down(&r);
}

/* Lockstep: one tick per observation, the robot waiting for the Action that answers it (the
 * client library's handshake: vlad_client_lockstep); language pieces meanwhile go to on_msg. */
static void lockstep_ticks(robot *r, int ticks, double (*targets)[VLAD_MAX_JOINTS], int *sources) {
    vlad_err err;
    for (int n = 0; n < ticks; n++, r->tick++) {
        Vlad__Observation o;
        Vlad__CameraImage ci, *cis[1];
        fill_obs(r, r->tick, &o, &ci, cis);
        Vlad__Action *a;
        if (vlad_client_lockstep(r->c, &o, 10000, 200, on_msg, r, &a, &err))
            fail_msg("%s", err.msg);
        for (int j = 0; j < g_p.n_joints; j++) {
            targets[r->tick][j] = a->joint_targets[j];
            r->pos[j] += 0.5 * (a->joint_targets[j] - r->pos[j]);
        }
        sources[r->tick] = a->source;
        vlad__action__free_unpacked(a, NULL);
    }
}

#define LS_TICKS 240
static double g_tg[2][LS_TICKS][VLAD_MAX_JOINTS];
static int g_src[2][LS_TICKS];

/* Lockstep is deterministic: the same robot run twice, once with questions every 15 ticks,
 * gets bit-identical Actions (targets and sources) — language changes nothing in the action
 * path, adds no stall — and the answers equal the engine's for the frames named. */
static void test_lockstep_actions_unchanged(void **state) {
    (void)state;
    static robot r;
    for (int run = 0; run < 2; run++) {
        daemon_up(&r, "lockstep");
        if (!g_rs)
            engine_up();
        r.switch_tick = LS_TICKS / 2;
        int asked = 0;
        for (int t = 0; t < LS_TICKS; t += 15) {
            if (run == 1) {
                Vlad__Reply *rep = ask(&r, k_questions[asked % 5]);
                asked += rep->ok;
                vlad__reply__free_unpacked(rep, NULL);
            }
            lockstep_ticks(&r, 15, g_tg[run], g_src[run]);
        }
        /* the last answers: lockstep streams advance on frames, or one slice per idle period */
        for (int i = 0; i < 500 && !all_done(&r); i++)
            drain(&r), usleep(10000);
        assert_true(all_done(&r));
        if (run == 1) {
            assert_true(asked >= 5);
            check_answers(&r, g_rs);
        }
        daemon_down(&r);
    }
    int holds[2] = {0, 0}, policy[2] = {0, 0};
    for (int run = 0; run < 2; run++)
        for (int t = 0; t < LS_TICKS; t++) {
            policy[run] += g_src[run][t] == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
            holds[run] += g_src[run][t] != VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
        }
    printf("lockstep, %d ticks: %d policy actions / %d holds without language, %d / %d with\n",
           LS_TICKS, policy[0], holds[0], policy[1], holds[1]);
    assert_memory_equal(g_src[0], g_src[1], sizeof g_src[0]);
    assert_memory_equal(g_tg[0], g_tg[1], sizeof g_tg[0]);
    assert_true(policy[0] > LS_TICKS / 2);
}

static int teardown(void **state) {
    (void)state;
    if (g_vlad > 0)
        vlad_proc_kill(g_vlad);
    g_vlad = -1;
    if (vh_rmdir(g_dir) != 0)
        fprintf(stderr, "could not remove the test's folder\n");
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    vlad_runstate_free(g_rs);
    vlad_model_free(g_m);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_language_while_acting, teardown),
        cmocka_unit_test_teardown(test_lockstep_actions_unchanged, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
