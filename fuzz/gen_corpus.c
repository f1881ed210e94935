/* gen_corpus — writes the committed seed corpus of the fuzz targets (fuzz/README.md):
 *   build-fuzz/fuzz/gen_corpus fuzz/corpus
 * Valid inputs and near-misses (one field wrong) for each target; the profile corpus also
 * takes copies of the configs/ profiles (done by fuzz/run.sh seeds, not here). Deterministic. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "frame.h"
#include "model.h"
#include "safetensors.h"
#include "vlad.pb-c.h"

static const char *g_root;

static void die(const char *what) {
    fprintf(stderr, "gen_corpus: %s\n", what);
    exit(1);
}

static void mkdirs(const char *target) {
    char p[1024];
    snprintf(p, sizeof p, "%s", g_root);
    if (mkdir(p, 0755) && errno != EEXIST)
        die(p);
    snprintf(p, sizeof p, "%s/%s", g_root, target);
    if (mkdir(p, 0755) && errno != EEXIST)
        die(p);
}

static void put(const char *target, const char *name, const void *data, size_t len) {
    mkdirs(target);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/%s", g_root, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f))
        die(p);
}

static void put_str(const char *target, const char *name, const char *s) {
    put(target, name, s, strlen(s));
}

static void put_frame(const char *target, const char *name, const char *topic,
                      const ProtobufCMessage *m) {
    uint8_t buf[8192];
    size_t len;
    vlad_err err;
    if (vlad_frame_pack(topic, m, buf, sizeof buf, &len, &err))
        die(err.msg);
    put(target, name, buf, len);
}

/* ---- observations (the fuzz_observation profile: robot fz, j0..j2, front 4x3, wrist 2x2) -- */

static void observations(void) {
    uint8_t front[4 * 3 * 3], wrist[2 * 2 * 3];
    for (size_t i = 0; i < sizeof front; i++)
        front[i] = (uint8_t)(i * 7);
    memset(wrist, 0x80, sizeof wrist);
    Vlad__CameraImage ci[2] = {VLAD__CAMERA_IMAGE__INIT, VLAD__CAMERA_IMAGE__INIT};
    ci[0].name = "front", ci[0].width = 4, ci[0].height = 3, ci[0].tick = 9;
    ci[0].encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci[0].data.data = front, ci[0].data.len = sizeof front;
    ci[1].name = "wrist", ci[1].width = 2, ci[1].height = 2;
    ci[1].encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci[1].data.data = wrist, ci[1].data.len = sizeof wrist;
    Vlad__CameraImage *imgs[2] = {&ci[0], &ci[1]};
    Vlad__TaskEvent ev[2] = {VLAD__TASK_EVENT__INIT, VLAD__TASK_EVENT__INIT};
    ev[0].kind = VLAD__TASK_EVENT__KIND__EPISODE_START, ev[0].detail = "touch the red ball";
    ev[1].kind = VLAD__TASK_EVENT__KIND__SUCCESS, ev[1].tick = 10, ev[1].episode = 2;
    ev[1].detail = "r\xc3\xa9ussi \xe2\x9c\x93";
    Vlad__TaskEvent *evs[2] = {&ev[0], &ev[1]};
    double pos[3] = {0.25, -1.5, 2.75}, vel[3] = {0.1, 0.2, -0.3};

    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.robot = "fz", o.seq = 1, o.tick = 9, o.stamp_ns = 1000000;
    o.n_joint_pos = 3, o.joint_pos = pos;
    put_frame("fuzz_observation", "valid-minimal", "obs.fz", &o.base);
    o.n_joint_vel = 3, o.joint_vel = vel;
    o.n_images = 2, o.images = imgs, o.n_events = 2, o.events = evs;
    put_frame("fuzz_observation", "valid-full", "obs.fz", &o.base);
    o.n_images = 1, o.n_events = 0, o.n_joint_vel = 0;
    put_frame("fuzz_observation", "valid-one-image", "obs.fz", &o.base);

    /* near misses */
    put_frame("fuzz_observation", "bad-topic", "obs.fy", &o.base);
    o.robot = "other";
    put_frame("fuzz_observation", "bad-robot", "obs.fz", &o.base);
    o.robot = "fz";
    o.n_joint_pos = 2;
    put_frame("fuzz_observation", "bad-joint-count", "obs.fz", &o.base);
    o.n_joint_pos = 3;
    pos[1] = NAN;
    put_frame("fuzz_observation", "bad-nan", "obs.fz", &o.base);
    pos[1] = -1.5;
    o.tick = -1;
    put_frame("fuzz_observation", "bad-tick", "obs.fz", &o.base);
    o.tick = 9;
    Vlad__CameraImage *dup[2] = {&ci[1], &ci[1]};
    o.n_images = 2, o.images = dup;
    put_frame("fuzz_observation", "bad-duplicate-camera", "obs.fz", &o.base);
    o.images = imgs;
    ci[0].data.len -= 1;
    put_frame("fuzz_observation", "bad-image-bytes", "obs.fz", &o.base);
    ci[0].data.len += 1;
    ev[0].kind = 9;
    o.n_events = 1;
    put_frame("fuzz_observation", "bad-event-kind", "obs.fz", &o.base);
    put_str("fuzz_observation", "bad-no-space", "obs.fz");
}

/* ---- commands ------------------------------------------------------------------------ */

static void commands(void) {
    Vlad__Command c = VLAD__COMMAND__INIT;
    c.request_id = 7;
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    si.text = "touch the red ball";
    c.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION, c.set_instruction = &si;
    put_frame("fuzz_command", "set-instruction", "cmd", &c.base);
    char long_text[301];
    memset(long_text, 'a', 300);
    long_text[300] = '\0';
    si.text = long_text;
    put_frame("fuzz_command", "bad-set-instruction-long", "cmd", &c.base);
    Vlad__Ask ask = VLAD__ASK__INIT;
    ask.question = "what do you see? \xf0\x9f\x91\x80";
    c.body_case = VLAD__COMMAND__BODY_ASK, c.ask = &ask;
    put_frame("fuzz_command", "ask", "cmd", &c.base);
    ask.question = "bad \xed\xa0\x80 surrogate";
    put_frame("fuzz_command", "bad-ask-utf8", "cmd", &c.base);

    Vlad__EStop es = VLAD__ESTOP__INIT;
    c.body_case = VLAD__COMMAND__BODY_ESTOP, c.estop = &es;
    es.reason = "operator pressed the button";
    put_frame("fuzz_command", "estop", "cmd", &c.base);
    /* a reason longer than the log buffer, with a 3-byte character across the cut */
    char reason[320];
    size_t n = 0;
    while (n + 3 < sizeof reason - 1) {
        memcpy(reason + n, "\xe2\x82\xac", 3); /* EURO SIGN */
        n += 3;
    }
    reason[n] = '\0';
    es.reason = reason;
    put_frame("fuzz_command", "estop-long-reason", "cmd", &c.base);
    es.reason = "stop \xff\xfe now";
    put_frame("fuzz_command", "estop-invalid-reason", "cmd", &c.base);

    Vlad__ReleaseEStop rel = VLAD__RELEASE_ESTOP__INIT;
    c.body_case = VLAD__COMMAND__BODY_RELEASE_ESTOP, c.release_estop = &rel;
    put_frame("fuzz_command", "release", "cmd", &c.base);
    Vlad__Reset rs = VLAD__RESET__INIT;
    rs.from_robot_tick = 100;
    c.body_case = VLAD__COMMAND__BODY_RESET, c.reset = &rs;
    put_frame("fuzz_command", "reset", "cmd", &c.base);
    Vlad__StatusRequest st = VLAD__STATUS_REQUEST__INIT;
    c.body_case = VLAD__COMMAND__BODY_STATUS, c.status = &st;
    put_frame("fuzz_command", "status", "cmd", &c.base);
    put_frame("fuzz_command", "bad-topic", "cmd2", &c.base);
    c.body_case = VLAD__COMMAND__BODY__NOT_SET;
    put_frame("fuzz_command", "bad-no-body", "cmd", &c.base);
}

/* ---- profiles: the "#set" mode (the YAML files are copies of configs/ and fixtures) ---- */

static void profiles(void) {
    put_str("fuzz_profile", "set-scalars",
            "#set\nclock=lockstep\nasync.mode=naive\ncontrol_hz=100\nsafety.watchdog_ms=50\n"
            "policy.model=../models/vlad-default.safetensors\nrealtime=yes\n");
    put_str("fuzz_profile", "set-bad",
            "#set\ncontrol_hz=0\nasync.trigger_threshold=50\njoints=3\nrobot=a b\n"
            "endpoints.control=tcp://127.0.0.1:5550\nsecurity.curve_server_secret_key=x\n");
    put_str("fuzz_profile", "set-endpoints",
            "#set\nendpoints.observations=ipc:///tmp/vlad-obs\nendpoints.actions=tcp://[::1]:7001\n"
            "endpoints.control=tcp://localhost:7002\nlogging.level=debug\nlogging.file=log/x.log\n");
    put_str("fuzz_profile", "set-hostnames",
            "#set\nendpoints.observations=tcp://localhost:7000\n"
            "endpoints.actions=tcp://loopback.test:7001\nendpoints.control=tcp://mixed.test:7002\n"
            "endpoints.control=tcp://[::1]:7002\n");
    put_str("fuzz_profile", "set-curve",
            "#set\nsecurity.curve_server_public_key=Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\n"
            "endpoints.observations=tcp://remote.test:7000\nendpoints.actions=tcp://*:7001\n"
            "endpoints.control=tcp://192.0.2.1:7002\nsecurity.curve_server_public_key=\n");
    put_str("fuzz_profile", "inline",
            "{robot: r, joints: [{name: a, min: -1, max: 1, max_velocity: 1, home: 0.5}], "
            "cameras: [{name: c, width: 8, height: 8}], async: {mode: sync}}\n");
    put_str("fuzz_profile", "bad-duplicate-key",
            "robot: r\nrobot: s\njoints:\n  - {name: a, min: -1, max: 1, max_velocity: 1}\n");
    put_str("fuzz_profile", "bad-anchor",
            "robot: &x r\njoints: &j\n  - {name: *x, min: -1, max: 1, max_velocity: 1}\n"
            "cameras: *j\n");
}

/* ---- safetensors --------------------------------------------------------------------- */

static vlad_config tiny_config(void) {
    vlad_config c = vlad_config_default();
    c.image_size = 2, c.patch_size = 1, c.n_cameras = 1;
    c.vit_width = 2, c.vit_depth = 1, c.vit_heads = 1, c.vit_mlp = 1;
    c.width = 2, c.depth = 1, c.n_heads = 1, c.head_dim = 2, c.mlp = 1;
    c.expert_width = 2, c.expert_mlp = 1;
    c.max_prompt_tokens = 0, c.max_text_tokens = 1;
    c.state_dim = 1, c.action_dim = 1, c.chunk_size = 1, c.flow_steps = 1;
    return c;
}

static void copy_file(const char *path, const char *target, const char *name) {
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    put(target, name, buf, n);
}

static void safetensors(const char *tmpdir) {
    char path[1024];
    vlad_err err;
    vlad_config c = tiny_config();
    snprintf(path, sizeof path, "%s/tiny-bf16.safetensors", tmpdir);
    if (vlad_model_write_random(&c, VLAD_DT_BF16, 1, path, &err))
        die(err.msg);
    copy_file(path, "fuzz_safetensors", "model-tiny-bf16");
    snprintf(path, sizeof path, "%s/tiny-f32.safetensors", tmpdir);
    if (vlad_model_write_random(&c, VLAD_DT_F32, 2, path, &err))
        die(err.msg);
    copy_file(path, "fuzz_safetensors", "model-tiny-f32");

    /* a generic container: every dtype, an empty tensor, metadata */
    snprintf(path, sizeof path, "%s/generic.safetensors", tmpdir);
    vlad_st_writer *w = vlad_st_writer_new();
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s0[2] = {0, 5}, s1[3] = {1, 1, 2};
    if (!w || vlad_st_writer_meta(w, "format", "pt", &err) ||
        vlad_st_writer_add(w, "a", VLAD_DT_F32, 2, s23, &err) ||
        vlad_st_writer_add(w, "b", VLAD_DT_U8, 1, s4, &err) ||
        vlad_st_writer_add(w, "empty", VLAD_DT_BF16, 2, s0, &err) ||
        vlad_st_writer_add(w, "c", VLAD_DT_I64, 1, s4, &err) ||
        vlad_st_writer_add(w, "d", VLAD_DT_BF16, 3, s1, &err) ||
        vlad_st_writer_add(w, "scalar", VLAD_DT_F32, 0, s1, &err) ||
        vlad_st_writer_begin(w, path, &err))
        die("generic.safetensors");
    uint8_t bytes[24 + 4 + 32 + 4 + 4];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)i;
    if (vlad_st_writer_data(w, bytes, sizeof bytes, &err) || vlad_st_writer_finish(w, &err))
        die(err.msg);
    vlad_st_writer_free(w);
    copy_file(path, "fuzz_safetensors", "generic");

    /* structured mode of fuzz_safetensors: [0xA5][flags][(offset hi, lo, xor)...] */
    put("fuzz_safetensors", "structured-bf16", "\xa5\x00", 2);
    put("fuzz_safetensors", "structured-f32", "\xa5\x01", 2);
    put("fuzz_safetensors", "structured-f32-misaligned", "\xa5\x03", 2);
    put("fuzz_safetensors", "structured-bf16-misaligned-patched", "\xa5\x0a\x17\x70\x40", 5);

    /* near misses, hand-written */
    static const char *const hdrs[] = {
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
        ("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"y\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}"),
        "{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"vlad.format\":\"1\",\"vlad.config\":\"{}\"}}",
        "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,2]}}",
    };
    static const char *const names[] = {"bad-size", "bad-overlap", "bad-dtype", "bad-config",
                                        "bad-reversed"};
    for (size_t i = 0; i < sizeof hdrs / sizeof *hdrs; i++) {
        uint8_t buf[512];
        size_t hn = strlen(hdrs[i]);
        for (int k = 0; k < 8; k++)
            buf[k] = (uint8_t)((uint64_t)hn >> (8 * k));
        memcpy(buf + 8, hdrs[i], hn);
        memset(buf + 8 + hn, 0x3f, 8);
        put("fuzz_safetensors", names[i], buf, 8 + hn + 8);
    }
}

/* ---- configs ------------------------------------------------------------------------- */

static void configs(void) {
    vlad_config c = vlad_config_default();
    char *js = vlad_config_to_json(&c);
    put_str("fuzz_config", "default", js);
    free(js);
    c = vlad_config_smolvla();
    js = vlad_config_to_json(&c);
    put_str("fuzz_config", "smolvla", js);
    free(js);
    c = tiny_config();
    js = vlad_config_to_json(&c);
    put_str("fuzz_config", "tiny", js);
    free(js);
    put_str("fuzz_config", "no-optional",
            "{\"image_size\":32,\"patch_size\":8,\"n_cameras\":2,\"vit_width\":64,\"vit_depth\":1,"
            "\"vit_heads\":2,\"vit_mlp\":64,\"width\":64,\"depth\":2,\"n_heads\":2,\"head_dim\":16,"
            "\"mlp\":128,\"expert_width\":32,\"expert_mlp\":64,\"vocab_size\":260,"
            "\"max_prompt_tokens\":16,\"max_text_tokens\":16,\"state_dim\":6,\"action_dim\":6,"
            "\"chunk_size\":10,\"flow_steps\":4}");
    put_str("fuzz_config", "bad-missing", "{\"image_size\":64,\"patch_size\":16}");
    put_str("fuzz_config", "bad-unknown-field",
            "{\"image_size\":64,\"patch_size\":16,\"colour\":\"red\"}");
    put_str("fuzz_config", "bad-types",
            "{\"image_size\":64.5,\"patch_size\":\"16\",\"rope_theta\":null}");
    put_str("fuzz_config", "bad-not-object", "[1, 2, 3]");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: gen_corpus CORPUS_DIR TMP_DIR\n");
        return 2;
    }
    g_root = argv[1];
    observations();
    commands();
    profiles();
    safetensors(argv[2]);
    configs();
    return 0;
}
