#include "wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "jpeg.h"
#include "validate.h"

const char *vlad_serve_code_name(int code) {
    switch (code) {
    case VLAD_SERVE_OK: return "OK";
    case VLAD_SERVE_BAD_REQUEST: return "BAD_REQUEST";
    case VLAD_SERVE_LATE: return "LATE";
    case VLAD_SERVE_BUSY: return "BUSY";
    case VLAD_SERVE_NOT_AUTHORISED: return "NOT_AUTHORISED";
    case VLAD_SERVE_SHAPE: return "SHAPE";
    case VLAD_SERVE_INTERNAL: return "INTERNAL";
    default: return "UNKNOWN";
    }
}

vlad_serve_code vlad_serve_code_of(int rc) {
    if (rc == VLAD_OK)
        return VLAD_SERVE_OK;
    if (rc == VLAD_ERANGE)
        return VLAD_SERVE_SHAPE;
    if (rc == VLAD_EINVAL || rc == VLAD_EPARSE)
        return VLAD_SERVE_BAD_REQUEST;
    return VLAD_SERVE_INTERNAL;
}

int vlad_serve_code_errno(int code) {
    switch (code) {
    case VLAD_SERVE_OK: return VLAD_OK;
    case VLAD_SERVE_BAD_REQUEST: return VLAD_EINVAL;
    case VLAD_SERVE_SHAPE: return VLAD_ERANGE;
    case VLAD_SERVE_LATE: return VLAD_ETIMEOUT;
    case VLAD_SERVE_BUSY: return VLAD_EAGAIN;
    case VLAD_SERVE_NOT_AUTHORISED: return VLAD_ESTATE;
    default: return VLAD_EIO;
    }
}

/* A failed check: the field's path into field (when given) and "path: what" into err. */
typedef struct chk {
    char *field;
    size_t fcap;
    vlad_err *err;
} chk;

static int fail(chk *c, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(chk *c, int code, const char *path, const char *fmt, ...) {
    if (c->field && c->fcap)
        snprintf(c->field, c->fcap, "%s", path);
    if (c->err) {
        char what[VLAD_ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        vlad_err_set(c->err, code, "%s: %s", path, what);
    }
    return code;
}

static int check_text(chk *c, const char *path, const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return fail(c, VLAD_EINVAL, path, "%zu bytes, at most %zu", n, max);
    if (!vlad_utf8_valid(s ? s : "", n))
        return fail(c, VLAD_EINVAL, path, "not valid UTF-8");
    return VLAD_OK;
}

/* Floats a[0..n) all finite, n <= max; n == want when want > 0 (else VLAD_ERANGE). */
static int check_floats(chk *c, const char *name, const float *a, size_t n, size_t max,
                        size_t want, const char *want_what) {
    if (n > max)
        return fail(c, VLAD_EINVAL, name, "%zu values, at most %zu", n, max);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) {
            char path[64];
            snprintf(path, sizeof path, "%s[%zu]", name, i);
            return fail(c, VLAD_EINVAL, path, "%s is not finite", isnan(a[i]) ? "NaN" : "Inf");
        }
    if (want && n != want)
        return fail(c, VLAD_ERANGE, name, "%zu values, the model's %s is %zu", n, want_what, want);
    return VLAD_OK;
}

static int check_image(chk *c, size_t i, const Vlad__Serve__Image *im, const vlad_serve_dims *d) {
    char path[64];
    if (!im) {
        snprintf(path, sizeof path, "images[%zu]", i);
        return fail(c, VLAD_EINVAL, path, "missing");
    }
    if (im->width == 0 || im->height == 0 || im->width > VLAD_SERVE_MAX_SIDE ||
        im->height > VLAD_SERVE_MAX_SIDE) {
        snprintf(path, sizeof path, "images[%zu].%s", i,
                 im->width == 0 || im->width > VLAD_SERVE_MAX_SIDE ? "width" : "height");
        return fail(c, VLAD_EINVAL, path, "%ux%u pixels, each side must be 1..%d", im->width,
                    im->height, VLAD_SERVE_MAX_SIDE);
    }
    switch (im->encoding) {
    case VLAD__SERVE__ENCODING__ENCODING_RAW: {
        size_t want = (size_t)im->width * im->height * 3;
        if (im->data.len != want) {
            snprintf(path, sizeof path, "images[%zu].data", i);
            return fail(c, VLAD_EINVAL, path, "%zu bytes, expected %zu (%ux%u RAW RGB8)",
                        im->data.len, want, im->width, im->height);
        }
        break;
    }
    case VLAD__SERVE__ENCODING__ENCODING_JPEG: {
        /* decoded later (vlad_serve_decode_images); here only its size is bounded */
        size_t max = vlad_jpeg_max_bytes((int)im->width, (int)im->height);
        if (im->data.len == 0 || im->data.len > max) {
            snprintf(path, sizeof path, "images[%zu].data", i);
            return fail(c, VLAD_EINVAL, path, "%zu bytes of JPEG, expected 1..%zu for %ux%u",
                        im->data.len, max, im->width, im->height);
        }
        break;
    }
    default:
        snprintf(path, sizeof path, "images[%zu].encoding", i);
        return fail(c, VLAD_EINVAL, path, "%d is not RAW (1) or JPEG (2)", (int)im->encoding);
    }
    if (d && d->image_size > 0 &&
        (im->width != (unsigned)d->image_size || im->height != (unsigned)d->image_size)) {
        snprintf(path, sizeof path, "images[%zu].%s", i,
                 im->width != (unsigned)d->image_size ? "width" : "height");
        return fail(c, VLAD_ERANGE, path, "%ux%u pixels, the model takes %dx%d", im->width,
                    im->height, d->image_size, d->image_size);
    }
    return VLAD_OK;
}

int vlad_serve_check_request(const Vlad__Serve__InferRequest *r, const vlad_serve_dims *d,
                             char *field, size_t fcap, vlad_err *err) {
    chk c = {field, fcap, err};
    if (field && fcap)
        field[0] = 0;
    if (!r)
        return fail(&c, VLAD_EINVAL, "request", "missing");
    if (r->version != VLAD_SERVE_VERSION)
        return fail(&c, VLAD_EINVAL, "version", "%u, this server speaks %d", r->version,
                    VLAD_SERVE_VERSION);
    if (r->request_id == 0)
        return fail(&c, VLAD_EINVAL, "request_id", "0 (must be non-zero)");
    int rc = check_text(&c, "robot", r->robot, VLAD_SERVE_MAX_ROBOT);
    if (rc)
        return rc;
    if (r->kind_case == VLAD__SERVE__INFER_REQUEST__KIND_STATUS)
        return VLAD_OK;
    if (r->kind_case != VLAD__SERVE__INFER_REQUEST__KIND__NOT_SET &&
        r->kind_case != VLAD__SERVE__INFER_REQUEST__KIND_ASK)
        return fail(&c, VLAD_EINVAL, "kind", "unknown request kind %d", (int)r->kind_case);
    bool ask = r->kind_case == VLAD__SERVE__INFER_REQUEST__KIND_ASK;
    if (ask) {
        if (!r->ask)
            return fail(&c, VLAD_EINVAL, "ask", "missing");
        if ((rc = check_text(&c, "ask.question", r->ask->question, VLAD_SERVE_MAX_QUESTION)))
            return rc;
    }
    if (r->obs_tick < 0)
        return fail(&c, VLAD_EINVAL, "obs_tick", "%lld is negative", (long long)r->obs_tick);
    if (r->n_images > VLAD_SERVE_MAX_IMAGES)
        return fail(&c, VLAD_EINVAL, "images", "%zu views, at most %d", r->n_images,
                    VLAD_SERVE_MAX_IMAGES);
    for (size_t i = 0; i < r->n_images; i++)
        if ((rc = check_image(&c, i, r->images[i], d)))
            return rc;
    if (r->n_images == 0 || (d && d->n_cameras > 0 && r->n_images != (size_t)d->n_cameras)) {
        if (!d || d->n_cameras <= 0)
            return fail(&c, VLAD_EINVAL, "images", "none given");
        return fail(&c, r->n_images ? VLAD_ERANGE : VLAD_EINVAL, "images",
                    "%zu views, the model takes %d", r->n_images, d->n_cameras);
    }
    if ((rc = check_text(&c, "prompt", r->prompt, VLAD_SERVE_MAX_PROMPT)))
        return rc;
    if (ask && r->n_state == 0) {
        /* an ask reads only the prefix (images and prompt): no state needed */
    } else {
        if (r->n_state == 0)
            return fail(&c, VLAD_EINVAL, "state", "empty");
        if ((rc = check_floats(&c, "state", r->state, r->n_state, VLAD_SERVE_MAX_STATE,
                               d && d->state_dim > 0 ? (size_t)d->state_dim : 0, "state_dim")))
            return rc;
    }
    if (r->n_noise) {
        size_t want = d && d->chunk_size > 0 && d->action_dim > 0
                          ? (size_t)d->chunk_size * (size_t)d->action_dim
                          : 0;
        if ((rc = check_floats(&c, "noise", r->noise, r->n_noise, VLAD_SERVE_MAX_ACTIONS, want,
                               "chunk_size*action_dim")))
            return rc;
    }
    return VLAD_OK;
}

/* Split and unpack; VLAD_OK with *out, else VLAD_EINVAL naming the problem. */
static int split(const uint8_t *buf, size_t len, const char *topic, const uint8_t **pl, size_t *plen,
                 chk *c) {
    vlad_err e;
    if (vlad_frame_split(buf, len, topic, NULL, NULL, pl, plen, &e))
        return fail(c, VLAD_EINVAL, "frame", "%s (expected \"%s \" + protobuf)", e.msg, topic);
    return VLAD_OK;
}

int vlad_serve_decode_request(const uint8_t *buf, size_t len, const vlad_serve_dims *d,
                              Vlad__Serve__InferRequest **out, char *field, size_t fcap,
                              vlad_err *err) {
    chk c = {field, fcap, err};
    *out = NULL;
    const uint8_t *pl;
    size_t plen;
    int rc = split(buf, len, VLAD_SERVE_TOPIC_REQUEST, &pl, &plen, &c);
    if (rc)
        return rc;
    *out = vlad__serve__infer_request__unpack(NULL, plen, pl);
    if (!*out)
        return fail(&c, VLAD_EINVAL, "frame", "%zu bytes are not an InferRequest protobuf", plen);
    return vlad_serve_check_request(*out, d, field, fcap, err);
}

static int pack(const char *topic, const ProtobufCMessage *m, uint8_t **buf, size_t *cap,
                size_t *len, vlad_err *err) {
    size_t need = vlad_frame_size(topic, m);
    if (need > *cap) {
        uint8_t *nb = realloc(*buf, need);
        if (!nb)
            return vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory (%zu bytes)", topic, need);
        *buf = nb;
        *cap = need;
    }
    return vlad_frame_pack(topic, m, *buf, *cap, len, err);
}

int vlad_serve_pack_request(const Vlad__Serve__InferRequest *r, const vlad_serve_dims *d,
                            uint8_t **buf, size_t *cap, size_t *len, vlad_err *err) {
    int rc = vlad_serve_check_request(r, d, NULL, 0, err);
    if (rc)
        return rc;
    return pack(VLAD_SERVE_TOPIC_REQUEST, &r->base, buf, cap, len, err);
}

int vlad_serve_check_reply(const Vlad__Serve__InferReply *r, const vlad_serve_dims *d,
                           char *field, size_t fcap, vlad_err *err) {
    chk c = {field, fcap, err};
    if (field && fcap)
        field[0] = 0;
    if (!r)
        return fail(&c, VLAD_EINVAL, "reply", "missing");
    if (r->version != VLAD_SERVE_VERSION)
        return fail(&c, VLAD_EINVAL, "version", "%u, this client speaks %d", r->version,
                    VLAD_SERVE_VERSION);
    if ((unsigned)r->error > VLAD_SERVE_INTERNAL)
        return fail(&c, VLAD_EINVAL, "error", "unknown code %d", (int)r->error);
    int rc;
    if ((rc = check_text(&c, "message", r->message, VLAD_SERVE_MAX_MESSAGE)) ||
        (rc = check_text(&c, "field", r->field, VLAD_SERVE_MAX_FIELD)))
        return rc;
    bool has = r->body_case != VLAD__SERVE__INFER_REPLY__BODY__NOT_SET;
    if (r->error != VLAD__SERVE__ERROR_CODE__OK) {
        if (has)
            return fail(&c, VLAD_EINVAL, "body", "set in an error reply (%s)",
                        vlad_serve_code_name(r->error));
        return VLAD_OK;
    }
    switch (r->body_case) {
    case VLAD__SERVE__INFER_REPLY__BODY_STATUS:
        if (!r->status)
            return fail(&c, VLAD_EINVAL, "status", "missing");
        if (r->status->model)
            return check_text(&c, "status.model.views", r->status->model->views,
                              VLAD_SERVE_MAX_VIEWS_TEXT);
        return VLAD_OK;
    case VLAD__SERVE__INFER_REPLY__BODY_ANSWER:
        if (!r->answer)
            return fail(&c, VLAD_EINVAL, "answer", "missing");
        if (r->answer->text.len > VLAD_SERVE_MAX_ANSWER)
            return fail(&c, VLAD_EINVAL, "answer.text", "%zu bytes, at most %d",
                        r->answer->text.len, VLAD_SERVE_MAX_ANSWER);
        return VLAD_OK;
    case VLAD__SERVE__INFER_REPLY__BODY_CHUNK:
        break;
    default:
        return fail(&c, VLAD_EINVAL, "body", "an OK reply without a chunk, an answer or a status");
    }
    const Vlad__Serve__Chunk *k = r->chunk;
    if (!k)
        return fail(&c, VLAD_EINVAL, "chunk", "missing");
    if (k->horizon == 0 || k->action_dim == 0 ||
        (uint64_t)k->horizon * k->action_dim > VLAD_SERVE_MAX_ACTIONS)
        return fail(&c, VLAD_EINVAL, k->horizon == 0 ? "chunk.horizon" : "chunk.action_dim",
                    "%ux%u, each must be >= 1 and the product <= %d", k->horizon, k->action_dim,
                    VLAD_SERVE_MAX_ACTIONS);
    if (r->batch_size < 1 || r->batch_size > VLAD_SERVE_MAX_BATCH)
        return fail(&c, VLAD_EINVAL, "batch_size", "%u, expected 1..%d", r->batch_size,
                    VLAD_SERVE_MAX_BATCH);
    size_t want = (size_t)k->horizon * k->action_dim;
    if (k->n_actions != want)
        return fail(&c, VLAD_EINVAL, "chunk.actions", "%zu values, horizon*action_dim is %zu",
                    k->n_actions, want);
    if ((rc = check_floats(&c, "chunk.actions", k->actions, k->n_actions, VLAD_SERVE_MAX_ACTIONS,
                           0, "")))
        return rc;
    if (d && d->chunk_size > 0 && k->horizon != (unsigned)d->chunk_size)
        return fail(&c, VLAD_ERANGE, "chunk.horizon", "%u, the model's chunk_size is %d",
                    k->horizon, d->chunk_size);
    if (d && d->action_dim > 0 && k->action_dim != (unsigned)d->action_dim)
        return fail(&c, VLAD_ERANGE, "chunk.action_dim", "%u, the model's is %d", k->action_dim,
                    d->action_dim);
    return VLAD_OK;
}

int vlad_serve_decode_reply(const uint8_t *buf, size_t len, const vlad_serve_dims *d,
                            Vlad__Serve__InferReply **out, char *field, size_t fcap,
                            vlad_err *err) {
    chk c = {field, fcap, err};
    *out = NULL;
    const uint8_t *pl;
    size_t plen;
    int rc = split(buf, len, VLAD_SERVE_TOPIC_REPLY, &pl, &plen, &c);
    if (rc)
        return rc;
    *out = vlad__serve__infer_reply__unpack(NULL, plen, pl);
    if (!*out)
        return fail(&c, VLAD_EINVAL, "frame", "%zu bytes are not an InferReply protobuf", plen);
    return vlad_serve_check_reply(*out, d, field, fcap, err);
}

int vlad_serve_pack_reply(const Vlad__Serve__InferReply *r, const vlad_serve_dims *d,
                          uint8_t **buf, size_t *cap, size_t *len, vlad_err *err) {
    int rc = vlad_serve_check_reply(r, d, NULL, 0, err);
    if (rc)
        return rc;
    return pack(VLAD_SERVE_TOPIC_REPLY, &r->base, buf, cap, len, err);
}

size_t vlad_serve_decoded_bytes(const Vlad__Serve__InferRequest *r) {
    size_t n = 0;
    for (size_t i = 0; r && i < r->n_images; i++)
        if (r->images[i] && r->images[i]->encoding == VLAD__SERVE__ENCODING__ENCODING_JPEG)
            n += (size_t)r->images[i]->width * r->images[i]->height * 3;
    return n;
}

int vlad_serve_decode_images(vlad_jpeg *j, const Vlad__Serve__InferRequest *r, uint8_t *buf,
                             size_t cap, const uint8_t **pix, char *field, size_t fcap,
                             vlad_err *err) {
    chk c = {field, fcap, err};
    if (field && fcap)
        field[0] = 0;
    size_t off = 0;
    for (size_t i = 0; i < r->n_images; i++) {
        const Vlad__Serve__Image *im = r->images[i];
        if (im->encoding != VLAD__SERVE__ENCODING__ENCODING_JPEG) {
            pix[i] = im->data.data;
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "images[%zu].data", i);
        size_t bytes = (size_t)im->width * im->height * 3;
        if (!j || off + bytes > cap)
            return fail(&c, VLAD_EIO, path, "no decoder or room for the decoded image");
        vlad_err e;
        int rc = vlad_jpeg_decode(j, im->data.data, im->data.len, (int)im->width, (int)im->height,
                                  buf + off, cap - off, &e);
        if (rc)
            return fail(&c, rc == VLAD_ERANGE ? VLAD_ERANGE : VLAD_EINVAL, path, "%s", e.msg);
        pix[i] = buf + off;
        off += bytes;
    }
    return VLAD_OK;
}

size_t vlad_serve_max_request_frame(const vlad_serve_dims *d) {
    size_t img = d && d->image_size > 0 ? (size_t)d->image_size * d->image_size * 3 : 0;
    size_t jpg = d && d->image_size > 0 ? vlad_jpeg_max_bytes(d->image_size, d->image_size) : 0;
    if (jpg > img)
        img = jpg; /* a JPEG may be larger than the raw pixels (noise at quality 100) */
    size_t cams = d && d->n_cameras > 0 ? (size_t)d->n_cameras : 1;
    size_t state = d && d->state_dim > 0 ? (size_t)d->state_dim : VLAD_SERVE_MAX_STATE;
    size_t noise = d && d->chunk_size > 0 && d->action_dim > 0
                       ? (size_t)d->chunk_size * d->action_dim
                       : VLAD_SERVE_MAX_ACTIONS;
    return cams * (img + 64) + 4 * (state + noise) + VLAD_SERVE_MAX_PROMPT +
           VLAD_SERVE_MAX_QUESTION + VLAD_SERVE_MAX_ROBOT + 64 * 1024;
}
