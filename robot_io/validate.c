#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

bool vlad_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + n >= len) /* continuation bytes i+1..i+n must exist */
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static int check_text(const char *field, const char *s, size_t max, vlad_err *err) {
    size_t len = s ? strlen(s) : 0;
    if (len > max)
        return vlad_err_set(err, VLAD_EINVAL, "%s: %zu bytes, at most %zu", field, len, max);
    if (!vlad_utf8_valid(s ? s : "", len))
        return vlad_err_set(err, VLAD_EINVAL, "%s: not valid UTF-8", field);
    return VLAD_OK;
}

static int check_robot(const vlad_profile *p, const char *robot, vlad_err *err) {
    if (!robot || strcmp(robot, p->robot) != 0)
        return vlad_err_set(err, VLAD_EINVAL, "robot: '%.64s' is not this profile's '%s'",
                            robot ? robot : "", p->robot);
    return VLAD_OK;
}

static int check_finite_d(const char *field, const double *v, size_t n, vlad_err *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return vlad_err_set(err, VLAD_EINVAL, "%s[%zu]: not a finite number", field, i);
    return VLAD_OK;
}

int vlad_validate_observation(const vlad_profile *p, const Vlad__Observation *o, vlad_err *err) {
    int rc;
    if ((rc = check_robot(p, o->robot, err)))
        return rc;
    if (o->tick < 0)
        return vlad_err_set(err, VLAD_EINVAL, "tick: %lld is negative", (long long)o->tick);
    if (o->n_joint_pos != (size_t)p->n_joints)
        return vlad_err_set(err, VLAD_EINVAL, "joint_pos: %zu values, the profile has %d joints",
                            o->n_joint_pos, p->n_joints);
    if (o->n_joint_vel != 0 && o->n_joint_vel != (size_t)p->n_joints)
        return vlad_err_set(err, VLAD_EINVAL,
                            "joint_vel: %zu values, expected 0 or %d (one per joint)",
                            o->n_joint_vel, p->n_joints);
    if ((rc = check_finite_d("joint_pos", o->joint_pos, o->n_joint_pos, err)) ||
        (rc = check_finite_d("joint_vel", o->joint_vel, o->n_joint_vel, err)))
        return rc;
    if (o->n_images > (size_t)p->n_cameras)
        return vlad_err_set(err, VLAD_EINVAL, "images: %zu images, the profile has %d cameras",
                            o->n_images, p->n_cameras);
    for (size_t i = 0; i < o->n_images; i++) {
        const Vlad__CameraImage *im = o->images[i];
        int ci = vlad_profile_camera_index(p, im->name ? im->name : "");
        if (ci < 0)
            return vlad_err_set(err, VLAD_EINVAL, "images[%zu]: unknown camera '%.64s'", i,
                                im->name ? im->name : "");
        for (size_t k = 0; k < i; k++)
            if (!strcmp(o->images[k]->name, im->name))
                return vlad_err_set(err, VLAD_EINVAL, "images[%zu]: camera '%s' appears twice", i,
                                    im->name);
        const vlad_camera *cam = &p->cameras[ci];
        if (im->width != (uint32_t)cam->width || im->height != (uint32_t)cam->height)
            return vlad_err_set(err, VLAD_EINVAL, "images[%zu] (%s): %ux%u, the profile says %dx%d",
                                i, cam->name, im->width, im->height, cam->width, cam->height);
        if (im->encoding != VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8)
            return vlad_err_set(err, VLAD_EINVAL, "images[%zu] (%s): encoding %d is not RGB8", i,
                                cam->name, (int)im->encoding);
        size_t need = (size_t)cam->width * (size_t)cam->height * 3;
        if (im->data.len != need)
            return vlad_err_set(err, VLAD_EINVAL, "images[%zu] (%s): %zu bytes, RGB8 %dx%d needs %zu",
                                i, cam->name, im->data.len, cam->width, cam->height, need);
    }
    for (size_t i = 0; i < o->n_events; i++) {
        const Vlad__TaskEvent *ev = o->events[i];
        if (ev->kind <= VLAD__TASK_EVENT__KIND__KIND_UNSPECIFIED ||
            ev->kind > VLAD__TASK_EVENT__KIND__EPISODE_END)
            return vlad_err_set(err, VLAD_EINVAL, "events[%zu]: unknown kind %d", i, (int)ev->kind);
        if ((rc = check_text("events[].detail", ev->detail, 1024, err)))
            return rc;
    }
    return VLAD_OK;
}

void vlad_text_sanitize(const char *in, char *out, size_t cap) {
    if (!cap)
        return;
    if (!in)
        in = "";
    size_t len = strlen(in);
    if (!vlad_utf8_valid(in, len)) {
        snprintf(out, cap, "(reason of %zu bytes, not valid UTF-8)", len);
        return;
    }
    if (len < cap) {
        memcpy(out, in, len + 1);
        return;
    }
    /* truncate at a character boundary, leaving room for "..." */
    size_t keep = cap > 4 ? cap - 4 : 0;
    while (keep > 0 && ((unsigned char)in[keep] & 0xC0) == 0x80)
        keep--;
    memcpy(out, in, keep);
    snprintf(out + keep, cap - keep, "...");
}

int vlad_validate_command(const Vlad__Command *c, vlad_err *err) {
    switch (c->body_case) {
    case VLAD__COMMAND__BODY_SET_INSTRUCTION:
        return check_text("set_instruction.text", c->set_instruction->text, VLAD_TEXT_MAX, err);
    case VLAD__COMMAND__BODY_ASK:
        return check_text("ask.question", c->ask->question, VLAD_TEXT_MAX, err);
    case VLAD__COMMAND__BODY_ESTOP:
        return VLAD_OK; /* never refused for its reason: vlad_text_sanitize it */
    case VLAD__COMMAND__BODY_RELEASE_ESTOP:
    case VLAD__COMMAND__BODY_RESET:
    case VLAD__COMMAND__BODY_STATUS:
        return VLAD_OK;
    default:
        return vlad_err_set(err, VLAD_EINVAL, "command: no body (expected one of set_instruction, "
                                              "ask, estop, release_estop, reset, status)");
    }
}

int vlad_validate_action(const vlad_profile *p, const Vlad__Action *a, vlad_err *err) {
    int rc;
    if ((rc = check_robot(p, a->robot, err)))
        return rc;
    if (a->n_joint_targets != (size_t)p->n_joints)
        return vlad_err_set(err, VLAD_EINVAL, "joint_targets: %zu values, the profile has %d joints",
                            a->n_joint_targets, p->n_joints);
    if ((rc = check_finite_d("joint_targets", a->joint_targets, a->n_joint_targets, err)))
        return rc;
    for (int i = 0; i < p->n_joints; i++)
        if (a->joint_targets[i] < p->joints[i].min || a->joint_targets[i] > p->joints[i].max)
            return vlad_err_set(err, VLAD_EINVAL, "joint_targets[%d] (%s): %g outside [%g, %g]", i,
                                p->joints[i].name, a->joint_targets[i], p->joints[i].min,
                                p->joints[i].max);
    return VLAD_OK;
}

int vlad_validate_chunk(const vlad_profile *p, const Vlad__ActionChunk *c, vlad_err *err) {
    int rc;
    if ((rc = check_robot(p, c->robot, err)))
        return rc;
    if (c->dim != (uint32_t)p->n_joints)
        return vlad_err_set(err, VLAD_EINVAL, "dim: %u, the profile has %d joints", c->dim,
                            p->n_joints);
    if (c->horizon == 0 || c->horizon > 4096)
        return vlad_err_set(err, VLAD_EINVAL, "horizon: %u not in [1, 4096]", c->horizon);
    if (c->n_values != (size_t)c->horizon * c->dim)
        return vlad_err_set(err, VLAD_EINVAL, "values: %zu, horizon*dim is %zu", c->n_values,
                            (size_t)c->horizon * c->dim);
    for (size_t i = 0; i < c->n_values; i++)
        if (!isfinite(c->values[i]))
            return vlad_err_set(err, VLAD_EINVAL, "values[%zu]: not a finite number", i);
    return VLAD_OK;
}

size_t vlad_max_observation_frame(const vlad_profile *p) {
    size_t n = 64 * 1024;
    for (int i = 0; i < p->n_cameras; i++)
        n += (size_t)p->cameras[i].width * (size_t)p->cameras[i].height * 3 + 256;
    return n;
}
