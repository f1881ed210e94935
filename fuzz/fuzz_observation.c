/* fuzz_observation — one frame from the observation socket, as the daemon handles it:
 * vlad_frame_split, protobuf-c decode of an Observation, vlad_validate_observation against a
 * fixed profile (3 joints, two small cameras). An accepted observation must satisfy what the
 * validator promises, and must survive a pack/split/decode/validate round trip. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz_util.h"
#include "profile.h"
#include "validate.h"
#include "vlad.pb-c.h"

static const char k_profile[] =
    "robot: fz\n"
    "joints:\n"
    "  - {name: j0, min: -1, max: 1, max_velocity: 2}\n"
    "  - {name: j1, min: -2, max: 2, max_velocity: 2, home: 0.5}\n"
    "  - {name: j2, min: -3, max: 3, max_velocity: 2}\n"
    "cameras:\n"
    "  - {name: front, width: 4, height: 3, rate_hz: 10}\n"
    "  - {name: wrist, width: 2, height: 2, rate_hz: 5}\n";

static vlad_profile g_p;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    vlad_err err;
    if (vlad_profile_load_string(&g_p, k_profile, sizeof k_profile - 1, "fuzz.yaml", &err)) {
        fprintf(stderr, "fuzz_observation: profile: %s\n", err.msg);
        abort();
    }
    return 0;
}

static void check_accepted(const Vlad__Observation *o) {
    FUZZ_CHECK(o->robot && !strcmp(o->robot, g_p.robot));
    FUZZ_CHECK(o->tick >= 0);
    FUZZ_CHECK(o->n_joint_pos == (size_t)g_p.n_joints);
    FUZZ_CHECK(o->n_joint_vel == 0 || o->n_joint_vel == (size_t)g_p.n_joints);
    for (size_t i = 0; i < o->n_joint_pos; i++)
        FUZZ_CHECK(isfinite(o->joint_pos[i]));
    for (size_t i = 0; i < o->n_joint_vel; i++)
        FUZZ_CHECK(isfinite(o->joint_vel[i]));
    FUZZ_CHECK(o->n_images <= (size_t)g_p.n_cameras);
    for (size_t i = 0; i < o->n_images; i++) {
        const Vlad__CameraImage *im = o->images[i];
        int ci = vlad_profile_camera_index(&g_p, im->name);
        FUZZ_CHECK(ci >= 0);
        FUZZ_CHECK(im->width == (uint32_t)g_p.cameras[ci].width);
        FUZZ_CHECK(im->height == (uint32_t)g_p.cameras[ci].height);
        FUZZ_CHECK(im->data.len == (size_t)im->width * im->height * 3);
        for (size_t k = 0; k < i; k++)
            FUZZ_CHECK(strcmp(o->images[k]->name, im->name) != 0);
    }
    for (size_t i = 0; i < o->n_events; i++) {
        const Vlad__TaskEvent *ev = o->events[i];
        FUZZ_CHECK(ev->kind >= VLAD__TASK_EVENT__KIND__EPISODE_START &&
                   ev->kind <= VLAD__TASK_EVENT__KIND__EPISODE_END);
        size_t dl = strlen(ev->detail);
        FUZZ_CHECK(dl <= 1024 && fuzz_utf8_ref((const unsigned char *)ev->detail, dl));
    }
}

/* Unknown fields are left out of the round trip: libprotobuf-c 1.4 keeps a field numbered 0
 * whose tag is a non-minimal varint (0x81 0x00) as an unknown field and packs it back as the
 * tag 0x01, which its own unpack then refuses. vlad never re-packs a received message. */
static void hide_unknown(Vlad__Observation *o, unsigned *saved, int restore) {
    size_t k = 0;
    ProtobufCMessage *ms[1 + 2 * 64];
    ms[k++] = &o->base;
    for (size_t i = 0; i < o->n_images && k < 65; i++)
        ms[k++] = &o->images[i]->base;
    for (size_t i = 0; i < o->n_events && k < sizeof ms / sizeof *ms; i++)
        ms[k++] = &o->events[i]->base;
    for (size_t i = 0; i < k; i++) {
        if (restore) {
            ms[i]->n_unknown_fields = saved[i];
        } else {
            saved[i] = ms[i]->n_unknown_fields;
            ms[i]->n_unknown_fields = 0;
        }
    }
}

/* Pack the accepted observation as the robot would send it, and take it in again. */
static void roundtrip(Vlad__Observation *o) {
    if (o->n_events > 64)
        return;
    unsigned saved[1 + 2 * 64];
    hide_unknown(o, saved, 0);
    char topic[VLAD_TOPIC_MAX];
    FUZZ_CHECK(vlad_topic(topic, sizeof topic, "obs", g_p.robot) == 0);
    size_t need = vlad_frame_size(topic, &o->base);
    uint8_t *buf = malloc(need);
    FUZZ_CHECK(buf);
    size_t len = 0;
    vlad_err err;
    /* one byte short must be refused, not overflow */
    int rc = vlad_frame_pack(topic, &o->base, buf, need - 1, &len, &err);
    FUZZ_CHECK(rc == VLAD_ERANGE);
    fuzz_check_err(&err, rc);
    FUZZ_CHECK(vlad_frame_pack(topic, &o->base, buf, need, &len, &err) == 0);
    FUZZ_CHECK(len == need);
    const uint8_t *pl;
    size_t plen;
    FUZZ_CHECK(vlad_frame_split(buf, len, topic, NULL, NULL, &pl, &plen, &err) == 0);
    Vlad__Observation *o2 = vlad__observation__unpack(NULL, plen, pl);
    FUZZ_CHECK(o2);
    FUZZ_CHECK(vlad_validate_observation(&g_p, o2, &err) == 0);
    FUZZ_CHECK(o2->tick == o->tick && o2->n_joint_pos == o->n_joint_pos &&
               o2->n_images == o->n_images && o2->n_events == o->n_events);
    FUZZ_CHECK(!memcmp(o2->joint_pos, o->joint_pos, o->n_joint_pos * sizeof *o->joint_pos));
    vlad__observation__free_unpacked(o2, NULL);
    free(buf);
    hide_unknown(o, saved, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vlad_err err;
    const uint8_t *topic = NULL, *pl = NULL;
    size_t tl = 0, plen = 0;
    int rc = vlad_frame_split(data, size, NULL, &topic, &tl, &pl, &plen, &err);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(!topic && !pl);
        return 0;
    }
    FUZZ_CHECK(topic == data && tl > 0 && tl < VLAD_TOPIC_MAX && tl < size);
    FUZZ_CHECK(data[tl] == ' ' && !memchr(data, ' ', tl));
    FUZZ_CHECK(pl == data + tl + 1 && plen == size - tl - 1);

    /* the daemon's socket expects its own topic */
    const uint8_t *pl2 = NULL;
    size_t plen2 = 0;
    rc = vlad_frame_split(data, size, "obs.fz", NULL, NULL, &pl2, &plen2, &err);
    int topic_ok = tl == 6 && !memcmp(data, "obs.fz", 6);
    FUZZ_CHECK((rc == 0) == topic_ok);
    if (rc)
        fuzz_check_err(&err, rc);
    else
        FUZZ_CHECK(pl2 == pl && plen2 == plen);

    Vlad__Observation *o = vlad__observation__unpack(NULL, plen, pl);
    if (!o)
        return 0;
    rc = vlad_validate_observation(&g_p, o, &err);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(rc == VLAD_EINVAL);
    } else {
        check_accepted(o);
        roundtrip(o);
    }
    FUZZ_CHECK(vlad_validate_observation(&g_p, o, NULL) == rc); /* NULL err is allowed */
    vlad__observation__free_unpacked(o, NULL);
    return 0;
}
