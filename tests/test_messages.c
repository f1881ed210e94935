/* Wire format tests: protobuf round-trips of every message, one-frame framing, and
 * validation of peer messages against a profile. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "frame.h"
#include "profile.h"
#include "validate.h"

static vlad_profile prof;

static int setup(void **state) {
    (void)state;
    const char *y = "robot: arm\njoints:\n"
                    "  - {name: a, min: -1, max: 1, max_velocity: 1}\n"
                    "  - {name: b, min: -2, max: 2, max_velocity: 1}\n"
                    "cameras:\n  - {name: front, width: 4, height: 2}\n"
                    "  - {name: wrist, width: 2, height: 2}\n";
    vlad_err err;
    int rc = vlad_profile_load_string(&prof, y, strlen(y), "mem.yaml", &err);
    if (rc)
        fail_msg("%s", err.msg);
    return 0;
}

/* pack msg into a frame, split it back, return the payload copy via out params */
static size_t roundtrip_frame(const char *topic, const ProtobufCMessage *m, uint8_t *buf, size_t cap,
                              const uint8_t **pl, size_t *plen) {
    size_t len;
    vlad_err err;
    assert_int_equal(vlad_frame_pack(topic, m, buf, cap, &len, &err), 0);
    assert_int_equal(len, vlad_frame_size(topic, m));
    assert_int_equal(vlad_frame_split(buf, len, topic, NULL, NULL, pl, plen, &err), 0);
    return len;
}

static void test_observation_roundtrip(void **state) {
    (void)state;
    uint8_t img0[4 * 2 * 3], img1[2 * 2 * 3];
    for (size_t i = 0; i < sizeof img0; i++)
        img0[i] = (uint8_t)i;
    memset(img1, 7, sizeof img1);
    Vlad__CameraImage ci[2] = {VLAD__CAMERA_IMAGE__INIT, VLAD__CAMERA_IMAGE__INIT};
    ci[0].name = "front", ci[0].width = 4, ci[0].height = 2;
    ci[0].encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci[0].data.data = img0, ci[0].data.len = sizeof img0;
    ci[1].name = "wrist", ci[1].width = 2, ci[1].height = 2;
    ci[1].encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci[1].data.data = img1, ci[1].data.len = sizeof img1;
    Vlad__CameraImage *imgs[2] = {&ci[0], &ci[1]};
    Vlad__TaskEvent ev = VLAD__TASK_EVENT__INIT;
    ev.kind = VLAD__TASK_EVENT__KIND__WORLD_CHANGE, ev.tick = 17, ev.detail = "target moved";
    Vlad__TaskEvent *evs[1] = {&ev};
    double pos[2] = {0.25, -1.5}, vel[2] = {0.1, 0.2};
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.robot = "arm", o.seq = 3, o.tick = 42, o.stamp_ns = 123456789;
    o.n_joint_pos = 2, o.joint_pos = pos, o.n_joint_vel = 2, o.joint_vel = vel;
    o.n_images = 2, o.images = imgs, o.n_events = 1, o.events = evs;
    uint8_t buf[1024];
    const uint8_t *pl;
    size_t plen;
    roundtrip_frame("obs.arm", &o.base, buf, sizeof buf, &pl, &plen);
    Vlad__Observation *r = vlad__observation__unpack(NULL, plen, pl);
    assert_non_null(r);
    assert_string_equal(r->robot, "arm");
    assert_int_equal(r->tick, 42);
    assert_int_equal(r->seq, 3);
    assert_int_equal(r->stamp_ns, 123456789);
    assert_int_equal(r->n_joint_pos, 2);
    assert_true(r->joint_pos[1] == -1.5);
    assert_true(r->joint_vel[0] == 0.1);
    assert_int_equal(r->n_images, 2);
    assert_string_equal(r->images[1]->name, "wrist");
    assert_memory_equal(r->images[0]->data.data, img0, sizeof img0);
    assert_int_equal(r->n_events, 1);
    assert_int_equal(r->events[0]->kind, VLAD__TASK_EVENT__KIND__WORLD_CHANGE);
    assert_string_equal(r->events[0]->detail, "target moved");
    vlad_err err;
    assert_int_equal(vlad_validate_observation(&prof, r, &err), 0);
    vlad__observation__free_unpacked(r, NULL);
}

static void test_action_chunk_roundtrip(void **state) {
    (void)state;
    double t[2] = {0.5, -0.5};
    Vlad__Action a = VLAD__ACTION__INIT;
    a.robot = "arm", a.tick = 9, a.stamp_ns = 5, a.n_joint_targets = 2, a.joint_targets = t;
    a.chunk_id = 77, a.obs_tick = 4, a.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
    a.clamped = true;
    uint8_t buf[512];
    const uint8_t *pl;
    size_t plen;
    roundtrip_frame("action.arm", &a.base, buf, sizeof buf, &pl, &plen);
    Vlad__Action *ra = vlad__action__unpack(NULL, plen, pl);
    assert_non_null(ra);
    assert_int_equal(ra->tick, 9);
    assert_int_equal(ra->chunk_id, 77);
    assert_int_equal(ra->obs_tick, 4);
    assert_int_equal(ra->source, VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY);
    assert_true(ra->clamped);
    assert_true(ra->joint_targets[0] == 0.5);
    vlad__action__free_unpacked(ra, NULL);

    float vals[6] = {1, 2, 3, 4, 5, 6}, st[2] = {0.1f, 0.2f};
    Vlad__ActionChunk c = VLAD__ACTION_CHUNK__INIT;
    c.robot = "arm", c.chunk_id = 3, c.start_tick = 100, c.horizon = 3, c.dim = 2;
    c.n_values = 6, c.values = vals, c.obs_tick = 96, c.n_conditioned_state = 2;
    c.conditioned_state = st, c.inference_latency_us = 4200, c.stamp_ns = 8;
    roundtrip_frame("chunk.arm", &c.base, buf, sizeof buf, &pl, &plen);
    Vlad__ActionChunk *rc = vlad__action_chunk__unpack(NULL, plen, pl);
    assert_non_null(rc);
    assert_int_equal(rc->start_tick, 100);
    assert_int_equal(rc->n_values, 6);
    assert_true(rc->values[5] == 6.0f);
    assert_int_equal(rc->inference_latency_us, 4200);
    vlad_err err;
    assert_int_equal(vlad_validate_chunk(&prof, rc, &err), 0);
    rc->n_values = 5;
    assert_int_equal(vlad_validate_chunk(&prof, rc, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "values: 5"));
    rc->n_values = 6;
    rc->values[2] = NAN;
    assert_int_equal(vlad_validate_chunk(&prof, rc, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "values[2]"));
    vlad__action_chunk__free_unpacked(rc, NULL);
}

static void test_command_reply_roundtrip(void **state) {
    (void)state;
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    si.text = "touch the red ball";
    Vlad__Command c = VLAD__COMMAND__INIT;
    c.request_id = 11, c.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION, c.set_instruction = &si;
    uint8_t buf[512];
    const uint8_t *pl;
    size_t plen;
    roundtrip_frame("cmd", &c.base, buf, sizeof buf, &pl, &plen);
    Vlad__Command *r = vlad__command__unpack(NULL, plen, pl);
    assert_non_null(r);
    assert_int_equal(r->request_id, 11);
    assert_int_equal(r->body_case, VLAD__COMMAND__BODY_SET_INSTRUCTION);
    assert_string_equal(r->set_instruction->text, "touch the red ball");
    vlad_err err;
    assert_int_equal(vlad_validate_command(r, &err), 0);
    vlad__command__free_unpacked(r, NULL);

    Vlad__LatencyStats js = VLAD__LATENCY_STATS__INIT;
    js.p99_us = 250;
    Vlad__Status st = VLAD__STATUS__INIT;
    st.robot = "arm", st.mode = VLAD__MODE__MODE_ESTOP, st.tick = 5, st.bad_messages = 2;
    st.jitter = &js;
    Vlad__Reply rep = VLAD__REPLY__INIT;
    rep.request_id = 11, rep.ok = true, rep.status = &st;
    roundtrip_frame("reply", &rep.base, buf, sizeof buf, &pl, &plen);
    Vlad__Reply *rr = vlad__reply__unpack(NULL, plen, pl);
    assert_non_null(rr);
    assert_int_equal(rr->status->mode, VLAD__MODE__MODE_ESTOP);
    assert_true(rr->status->jitter->p99_us == 250);
    vlad__reply__free_unpacked(rr, NULL);

    Vlad__LanguageToken lt = VLAD__LANGUAGE_TOKEN__INIT;
    lt.robot = "arm", lt.stream_id = 2, lt.text.data = (uint8_t *)"re", lt.text.len = 2;
    lt.done = true, lt.index = 4;
    roundtrip_frame("lang.arm", &lt.base, buf, sizeof buf, &pl, &plen);
    Vlad__LanguageToken *rl = vlad__language_token__unpack(NULL, plen, pl);
    assert_non_null(rl);
    assert_int_equal(rl->text.len, 2);
    assert_true(rl->done);
    vlad__language_token__free_unpacked(rl, NULL);

    Vlad__Event ev = VLAD__EVENT__INIT;
    ev.robot = "arm", ev.kind = VLAD__EVENT__KIND__WATCHDOG_TRIP, ev.message = "stale", ev.count = 3;
    roundtrip_frame("event.arm", &ev.base, buf, sizeof buf, &pl, &plen);
    Vlad__Event *re = vlad__event__unpack(NULL, plen, pl);
    assert_non_null(re);
    assert_int_equal(re->kind, VLAD__EVENT__KIND__WATCHDOG_TRIP);
    assert_int_equal(re->count, 3);
    vlad__event__free_unpacked(re, NULL);
}

static void test_framing_errors(void **state) {
    (void)state;
    const uint8_t *pl, *tp;
    size_t plen, tl;
    vlad_err err;
    assert_int_equal(vlad_frame_split((const uint8_t *)"nospace", 7, NULL, NULL, NULL, &pl, &plen, &err),
                     VLAD_EPARSE);
    assert_non_null(strstr(err.msg, "no topic separator"));
    assert_int_equal(vlad_frame_split((const uint8_t *)" x", 2, NULL, NULL, NULL, &pl, &plen, &err),
                     VLAD_EPARSE);
    assert_non_null(strstr(err.msg, "empty topic"));
    assert_int_equal(vlad_frame_split((const uint8_t *)"obs.b xyz", 9, "obs.a", NULL, NULL, &pl,
                                      &plen, &err),
                     VLAD_EPARSE);
    assert_non_null(strstr(err.msg, "'obs.b' is not 'obs.a'"));
    /* a prefix of the expected topic is not the topic */
    assert_int_equal(vlad_frame_split((const uint8_t *)"obs. x", 6, "obs.a", NULL, NULL, &pl, &plen,
                                      &err),
                     VLAD_EPARSE);
    assert_int_equal(vlad_frame_split((const uint8_t *)"", 0, NULL, NULL, NULL, &pl, &plen, &err),
                     VLAD_EPARSE);
    assert_int_equal(vlad_frame_split((const uint8_t *)"t ", 2, "t", &tp, &tl, &pl, &plen, &err), 0);
    assert_int_equal(tl, 1);
    assert_int_equal(plen, 0); /* empty payload is a valid (all-default) protobuf */
    /* too small a buffer */
    Vlad__Event ev = VLAD__EVENT__INIT;
    ev.message = "a long enough message to not fit";
    uint8_t small[8];
    size_t len;
    assert_int_equal(vlad_frame_pack("event.arm", &ev.base, small, sizeof small, &len, &err),
                     VLAD_ERANGE);
    char topic[8];
    assert_int_equal(vlad_topic(topic, sizeof topic, "action", "arm"), VLAD_ERANGE);
    assert_int_equal(vlad_topic(topic, sizeof topic, "obs", "arm"), 0);
    assert_string_equal(topic, "obs.arm");
}

/* a valid observation to mutate */
static double vpos[2] = {0, 0};
static uint8_t vimg[24];
static Vlad__CameraImage vci = VLAD__CAMERA_IMAGE__INIT;
static Vlad__CameraImage *vimgs[2] = {&vci, &vci};
static Vlad__Observation valid_obs(void) {
    Vlad__CameraImage c = VLAD__CAMERA_IMAGE__INIT;
    c.name = "front", c.width = 4, c.height = 2, c.encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    c.data.data = vimg, c.data.len = sizeof vimg;
    vci = c;
    vpos[0] = vpos[1] = 0;
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.robot = "arm", o.tick = 1, o.n_joint_pos = 2, o.joint_pos = vpos, o.n_images = 1;
    o.images = vimgs;
    return o;
}

#define EXPECT_BAD(o, substr)                                                                      \
    do {                                                                                           \
        vlad_err e_;                                                                               \
        assert_int_equal(vlad_validate_observation(&prof, &(o), &e_), VLAD_EINVAL);               \
        if (!strstr(e_.msg, substr))                                                               \
            fail_msg("got '%s', wanted '%s'", e_.msg, substr);                                   \
    } while (0)

static void test_validate_observation(void **state) {
    (void)state;
    vlad_err err;
    Vlad__Observation o = valid_obs();
    assert_int_equal(vlad_validate_observation(&prof, &o, &err), 0);
    o = valid_obs(), o.robot = "other";
    EXPECT_BAD(o, "robot: 'other' is not this profile's 'arm'");
    o = valid_obs(), o.tick = -3;
    EXPECT_BAD(o, "tick: -3 is negative");
    o = valid_obs(), o.n_joint_pos = 1;
    EXPECT_BAD(o, "joint_pos: 1 values, the profile has 2 joints");
    double vel[3] = {0};
    o = valid_obs(), o.n_joint_vel = 3, o.joint_vel = vel;
    EXPECT_BAD(o, "joint_vel: 3 values");
    o = valid_obs(), vpos[1] = INFINITY;
    EXPECT_BAD(o, "joint_pos[1]: not a finite number");
    o = valid_obs(), vpos[0] = NAN;
    EXPECT_BAD(o, "joint_pos[0]: not a finite number");
    o = valid_obs(), vci.name = "rear";
    EXPECT_BAD(o, "images[0]: unknown camera 'rear'");
    o = valid_obs(), vci.width = 8;
    EXPECT_BAD(o, "images[0] (front): 8x2, the profile says 4x2");
    o = valid_obs(), vci.encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_UNSPECIFIED;
    EXPECT_BAD(o, "encoding 0 is not RGB8");
    o = valid_obs(), vci.data.len = 23;
    EXPECT_BAD(o, "images[0] (front): 23 bytes, RGB8 4x2 needs 24");
    o = valid_obs(), o.n_images = 2; /* the same camera twice */
    EXPECT_BAD(o, "camera 'front' appears twice");
    Vlad__CameraImage *three[3] = {&vci, &vci, &vci};
    o = valid_obs(), o.n_images = 3, o.images = three;
    EXPECT_BAD(o, "images: 3 images, the profile has 2 cameras");
    Vlad__TaskEvent ev = VLAD__TASK_EVENT__INIT;
    Vlad__TaskEvent *evs[1] = {&ev};
    o = valid_obs(), o.n_events = 1, o.events = evs;
    EXPECT_BAD(o, "events[0]: unknown kind 0");
}

static void test_validate_command_action(void **state) {
    (void)state;
    vlad_err err;
    Vlad__Command c = VLAD__COMMAND__INIT;
    assert_int_equal(vlad_validate_command(&c, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "no body"));
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    char longtext[300];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[299] = 0;
    si.text = longtext;
    c.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION, c.set_instruction = &si;
    assert_int_equal(vlad_validate_command(&c, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "set_instruction.text: 299 bytes, at most 255"));
    si.text = "bad \xC3\x28 utf8";
    assert_int_equal(vlad_validate_command(&c, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "not valid UTF-8"));
    si.text = "gr\xC3\xBCn \xE2\x82\xAC \xF0\x9F\x98\x80";
    assert_int_equal(vlad_validate_command(&c, &err), 0);

    assert_true(vlad_utf8_valid("", 0));
    assert_false(vlad_utf8_valid("\xC3", 1));               /* truncated */
    assert_false(vlad_utf8_valid("\xC0\xAF", 2));           /* overlong */
    assert_false(vlad_utf8_valid("\xED\xA0\x80", 3));       /* surrogate */
    assert_false(vlad_utf8_valid("\xF4\x90\x80\x80", 4));   /* > U+10FFFF */
    assert_false(vlad_utf8_valid("\xFF", 1));

    double t[2] = {0.5, 1.5};
    Vlad__Action a = VLAD__ACTION__INIT;
    a.robot = "arm", a.n_joint_targets = 2, a.joint_targets = t;
    assert_int_equal(vlad_validate_action(&prof, &a, &err), 0);
    t[0] = 1.5;
    assert_int_equal(vlad_validate_action(&prof, &a, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "joint_targets[0] (a): 1.5 outside [-1, 1]"));
    t[0] = 0;
    a.n_joint_targets = 3;
    assert_int_equal(vlad_validate_action(&prof, &a, &err), VLAD_EINVAL);
    assert_true(vlad_max_observation_frame(&prof) > (4 * 2 + 2 * 2) * 3);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Garbage never gets through the path the daemon's server takes (split, decode, validate),
 * and never crashes it: random bytes as a whole frame are refused by the framing (not the
 * expected topic) with an error and nothing returned; as the payload of a well-framed message
 * they either do not decode (NULL) or decode to a message the validator refuses with an error.
 * A fixed generator, so the same inputs every run. */
static void test_garbage_decode(void **state) {
    (void)state;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    uint8_t buf[256];
    static const uint8_t sentinel[1];
    int decoded_obs = 0, decoded_cmd = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(xorshift(&rng) % sizeof buf);
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)xorshift(&rng);
        const char *topics[2] = {"obs.arm", "cmd"};
        for (int t = 0; t < 2; t++) {
            const uint8_t *pl = sentinel, *tp = sentinel;
            size_t plen = 12345, tlen = 12345;
            vlad_err err = {0};
            assert_int_equal(vlad_frame_split(buf, n, topics[t], &tp, &tlen, &pl, &plen, &err),
                             VLAD_EPARSE);
            assert_true(err.msg[0] != '\0');
            assert_ptr_equal(pl, sentinel);
            assert_ptr_equal(tp, sentinel);
            assert_int_equal(plen, 12345);
            assert_int_equal(tlen, 12345);
        }
        Vlad__Observation *o = vlad__observation__unpack(NULL, n, buf);
        if (o) {
            decoded_obs++;
            vlad_err err = {0};
            int rc = vlad_validate_observation(&prof, o, &err);
            vlad__observation__free_unpacked(o, NULL);
            if (rc != VLAD_EINVAL || !err.msg[0])
                fail_msg("garbage #%d (%zu bytes) passed as an observation (rc %d)", i, n, rc);
        }
        Vlad__Command *c = vlad__command__unpack(NULL, n, buf);
        if (c) {
            decoded_cmd++;
            vlad_err err = {0};
            int rc = vlad_validate_command(c, &err);
            vlad__command__free_unpacked(c, NULL);
            if (rc != VLAD_EINVAL || !err.msg[0])
                fail_msg("garbage #%d (%zu bytes) passed as a command (rc %d)", i, n, rc);
        }
    }
    /* some garbage did decode, so the validators' refusals were exercised, not only the decoder */
    printf("garbage: %d of 20000 decoded as observations, %d as commands; all refused\n",
           decoded_obs, decoded_cmd);
    assert_true(decoded_obs > 0);
    assert_true(decoded_cmd > 0);
    /* the smallest garbage: an empty payload decodes to an empty message, which is refused */
    vlad_err err = {0};
    Vlad__Observation *o = vlad__observation__unpack(NULL, 0, buf);
    assert_non_null(o);
    assert_int_equal(vlad_validate_observation(&prof, o, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "robot"));
    vlad__observation__free_unpacked(o, NULL);
    Vlad__Command *c = vlad__command__unpack(NULL, 0, buf);
    assert_non_null(c);
    assert_int_equal(vlad_validate_command(c, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "no body"));
    vlad__command__free_unpacked(c, NULL);
    /* a truncated field is not decoded at all: nothing is returned */
    const uint8_t cut[] = {0x0a, 0x05, 'a', 'r'}; /* robot: 5 bytes announced, 2 present */
    assert_null(vlad__observation__unpack(NULL, sizeof cut, cut));
}

/* An e-stop is valid whatever its reason (the reason is for the log, after
 * vlad_text_sanitize): longer than the text cap, not UTF-8, empty, absent. */
static void test_validate_estop(void **state) {
    (void)state;
    vlad_err err;
    Vlad__Command c = VLAD__COMMAND__INIT;
    Vlad__EStop es = VLAD__ESTOP__INIT;
    c.body_case = VLAD__COMMAND__BODY_ESTOP, c.estop = &es;
    char longr[401];
    memset(longr, 'x', 400);
    longr[400] = 0;
    const char *reasons[] = {longr, "bad \xC3\x28 utf8", "\xFF\xFE\xFD", "\xED\xA0\x80", "", NULL};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        es.reason = (char *)reasons[i];
        assert_int_equal(vlad_validate_command(&c, &err), 0);
    }
    /* the same texts as an instruction are refused: the e-stop is the exception */
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    Vlad__Command ci = VLAD__COMMAND__INIT;
    ci.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION, ci.set_instruction = &si;
    si.text = longr;
    assert_int_equal(vlad_validate_command(&ci, &err), VLAD_EINVAL);
    si.text = "\xFF\xFE\xFD";
    assert_int_equal(vlad_validate_command(&ci, &err), VLAD_EINVAL);
    /* and through the wire: a packed e-stop with a 400-byte invalid reason decodes and passes */
    char bad[401];
    for (int i = 0; i < 400; i++)
        bad[i] = (char)(0x80 | (i & 0x3f)); /* continuation bytes only */
    bad[400] = 0;
    es.reason = bad;
    uint8_t buf[1024];
    size_t n = vlad__command__pack(&c, buf);
    Vlad__Command *d = vlad__command__unpack(NULL, n, buf);
    assert_non_null(d);
    assert_int_equal(d->body_case, VLAD__COMMAND__BODY_ESTOP);
    assert_int_equal(vlad_validate_command(d, &err), 0);
    vlad__command__free_unpacked(d, NULL);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* append one random code point as UTF-8 (1 to 4 bytes, no surrogates, no NUL) */
static size_t put_char(uint64_t *rng, char *o) {
    unsigned cp;
    switch (splitmix64(rng) % 4) {
    case 0: cp = 1 + (unsigned)(splitmix64(rng) % 0x7F); break;
    case 1: cp = 0x80 + (unsigned)(splitmix64(rng) % (0x800 - 0x80)); break;
    case 2:
        do
            cp = 0x800 + (unsigned)(splitmix64(rng) % (0x10000 - 0x800));
        while (cp >= 0xD800 && cp <= 0xDFFF);
        break;
    default: cp = 0x10000 + (unsigned)(splitmix64(rng) % (0x110000 - 0x10000)); break;
    }
    unsigned char *u = (unsigned char *)o;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6)), u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | (cp >> 18)), u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* out (from valid in) is in itself, or a prefix of in cut at a character boundary followed
 * by "...", of fewer than cap bytes and valid UTF-8 */
static void check_sanitized(const char *in, const char *out, size_t cap) {
    size_t len = strlen(in), olen = strlen(out);
    if (olen >= cap)
        fail_msg("cap %zu: %zu bytes out", cap, olen);
    if (!vlad_utf8_valid(out, olen))
        fail_msg("cap %zu: output not valid UTF-8", cap);
    if (len < cap) {
        assert_string_equal(out, in);
        return;
    }
    if (cap <= 4) { /* no room for text: as much of "..." as fits */
        assert_int_equal(olen, cap - 1);
        assert_true(strspn(out, ".") == olen);
        return;
    }
    assert_true(olen >= 3 && strcmp(out + olen - 3, "...") == 0);
    size_t keep = olen - 3;
    assert_memory_equal(out, in, keep);
    /* cut at a boundary: the next input byte starts a character */
    assert_true(((unsigned char)in[keep] & 0xC0) != 0x80);
    assert_true(vlad_utf8_valid(in, keep));
    assert_true(keep + 3 + 3 >= cap - 1); /* at most a 4-byte character's tail dropped */
}

static void test_text_sanitize(void **state) {
    (void)state;
    char out[1024];
    /* short valid text: copied */
    vlad_text_sanitize("gr\xC3\xBCn", out, sizeof out);
    assert_string_equal(out, "gr\xC3\xBCn");
    /* cap 0: nothing written */
    out[0] = 'Z';
    vlad_text_sanitize("abc", out, 0);
    assert_int_equal(out[0], 'Z');
    /* 3-byte characters (the euro sign) longer than the cap, at every cap: never cut inside */
    char euros[3 * 200 + 1];
    for (int i = 0; i < 200; i++)
        memcpy(euros + 3 * i, "\xE2\x82\xAC", 3);
    euros[600] = 0;
    for (size_t cap = 1; cap <= 700; cap++) {
        memset(out, 0x55, sizeof out);
        vlad_text_sanitize(euros, out, cap);
        check_sanitized(euros, out, cap);
        if (cap > 4 && cap <= 600) /* whole euros, then ... */
            assert_int_equal((strlen(out) - 3) % 3, 0);
    }
    vlad_text_sanitize(euros, out, 256);
    assert_int_equal(strlen(out), 252 / 3 * 3 + 3); /* 84 euros and "..." */
    /* exactly cap-1 bytes fit without a cut */
    vlad_text_sanitize(euros, out, 601);
    assert_string_equal(out, euros);
    /* invalid input: replaced by a note of its length, valid and short at any cap */
    const char *bad = "abc\xC3\x28 def";
    vlad_text_sanitize(bad, out, sizeof out);
    assert_non_null(strstr(out, "not valid UTF-8"));
    char nlen[32];
    snprintf(nlen, sizeof nlen, "%zu bytes", strlen(bad));
    assert_non_null(strstr(out, nlen));
    assert_null(strstr(out, "abc")); /* none of the input */
    for (size_t cap = 1; cap < 64; cap++) {
        memset(out, 0x55, sizeof out);
        vlad_text_sanitize(bad, out, cap);
        assert_true(strlen(out) < cap);
        assert_true(vlad_utf8_valid(out, strlen(out)));
    }
    /* random texts of 1-4 byte characters, some made invalid, at random caps */
    uint64_t rng = 0x7E47ull;
    char in[700];
    for (int it = 0; it < 20000; it++) {
        size_t n = 0, target = (size_t)(splitmix64(&rng) % 600);
        while (n < target)
            n += put_char(&rng, in + n);
        in[n] = 0;
        bool broken = n > 0 && splitmix64(&rng) % 4 == 0;
        if (broken) { /* a stray continuation byte, or a truncated character at the end */
            if (splitmix64(&rng) & 1)
                in[splitmix64(&rng) % n] = (char)0x80;
            else
                in[n - 1] = (char)0xE2;
            broken = !vlad_utf8_valid(in, n);
        }
        size_t cap = 1 + (size_t)(splitmix64(&rng) % sizeof out);
        memset(out, 0x55, sizeof out);
        vlad_text_sanitize(in, out, cap);
        if (broken) {
            assert_true(strlen(out) < cap);
            assert_true(vlad_utf8_valid(out, strlen(out)));
            if (cap > 48)
                assert_non_null(strstr(out, "not valid UTF-8"));
        } else {
            check_sanitized(in, out, cap);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_observation_roundtrip), cmocka_unit_test(test_action_chunk_roundtrip),
        cmocka_unit_test(test_command_reply_roundtrip), cmocka_unit_test(test_framing_errors),
        cmocka_unit_test(test_validate_observation), cmocka_unit_test(test_validate_command_action),
        cmocka_unit_test(test_garbage_decode), cmocka_unit_test(test_validate_estop),
        cmocka_unit_test(test_text_sanitize),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
