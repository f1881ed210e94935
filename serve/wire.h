/* wire.h — the vlad-serve wire format (proto/serve.proto, docs/SERVE.md): the ONE place
 * that packs and checks requests and replies, used the same way by the server (server.h)
 * and the client library (client.h).
 *
 * A message is one ZeroMQ frame: topic, one space, packed protobuf (robot_io/frame.h):
 * "infer" + InferRequest from a client, "reply" + InferReply from the server.
 *
 * Checks name the field in every message ("images[0].data: 100 bytes, expected 12288 (64x64
 * RAW)") and, when the caller gives a buffer, copy the field's path alone ("images[0].data")
 * so a reply can carry it. Their verdicts:
 *   VLAD_OK      valid
 *   VLAD_EINVAL  malformed: undecodable, a wrong topic or version, a field out of the bounds
 *                below, a non-finite float, bad UTF-8 -- the server answers BAD_REQUEST
 *   VLAD_ERANGE  well-formed but a dimension differs from the model's (camera count, image
 *                width/height, state or noise length, a reply's horizon / action_dim) --
 *                the server answers SHAPE
 * Dimensions the checker does not know (a client before it asked for the status) are 0 in
 * vlad_serve_dims and are then only checked against the absolute bounds.
 *
 * Pure functions on the caller's memory, any thread; the decode functions allocate the
 * unpacked message (protobuf-c; free it with the matching free_unpacked). JPEG images
 * (jpeg.h) are bounded by the checks and decoded by vlad_serve_decode_images with the
 * caller's codec (one thread at a time per codec). */
#ifndef VLAD_SERVE_WIRE_H
#define VLAD_SERVE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "jpeg.h"
#include "serve.pb-c.h"

#define VLAD_SERVE_VERSION 1
#define VLAD_SERVE_TOPIC_REQUEST "infer"
#define VLAD_SERVE_TOPIC_REPLY "reply"

/* Absolute bounds, whatever the model. */
#define VLAD_SERVE_MAX_ROBOT 63        /* robot name, bytes */
#define VLAD_SERVE_MAX_IMAGES 16       /* views per request */
#define VLAD_SERVE_MAX_SIDE 4096       /* image width / height, pixels */
#define VLAD_SERVE_MAX_PROMPT 1024     /* prompt, bytes */
#define VLAD_SERVE_MAX_QUESTION 1024   /* ask question, bytes */
#define VLAD_SERVE_MAX_STATE 1024      /* state values */
#define VLAD_SERVE_MAX_ACTIONS 65536   /* chunk values (horizon * action_dim), noise values */
#define VLAD_SERVE_MAX_MESSAGE 511     /* reply message, bytes */
#define VLAD_SERVE_MAX_FIELD 63        /* reply field path, bytes */
#define VLAD_SERVE_MAX_ANSWER 4096     /* ask answer, bytes */
#define VLAD_SERVE_MAX_BATCH 1024      /* reply batch_size */
#define VLAD_SERVE_MAX_VIEWS_TEXT 4096 /* status: the model's "vlad.views" JSON, bytes */

/* The server's verdicts (serve.proto ErrorCode; the same numbers). */
typedef enum {
    VLAD_SERVE_OK = 0,
    VLAD_SERVE_BAD_REQUEST = 1,
    VLAD_SERVE_LATE = 2,
    VLAD_SERVE_BUSY = 3,
    VLAD_SERVE_NOT_AUTHORISED = 4,
    VLAD_SERVE_SHAPE = 5,
    VLAD_SERVE_INTERNAL = 6,
} vlad_serve_code;

/* "OK", "BAD_REQUEST", ... ("UNKNOWN" outside the enum). */
const char *vlad_serve_code_name(int code);

/* The check verdict (VLAD_EINVAL / VLAD_ERANGE / other) as the code a server replies with:
 * VLAD_ERANGE -> SHAPE, VLAD_EINVAL and VLAD_EPARSE -> BAD_REQUEST, else INTERNAL. */
vlad_serve_code vlad_serve_code_of(int rc);

/* A reply's code as a VLAD_E* for a caller that wants one: OK -> VLAD_OK, BAD_REQUEST ->
 * VLAD_EINVAL, SHAPE -> VLAD_ERANGE, LATE -> VLAD_ETIMEOUT, BUSY -> VLAD_EAGAIN,
 * NOT_AUTHORISED -> VLAD_ESTATE, INTERNAL (and unknown) -> VLAD_EIO. */
int vlad_serve_code_errno(int code);

/* The model's dimensions (0: not known, not checked). */
typedef struct vlad_serve_dims {
    int n_cameras;
    int image_size;  /* width = height */
    int state_dim;
    int action_dim;
    int chunk_size;
} vlad_serve_dims;

/* ---- requests ------------------------------------------------------------------------- */

/* Check r against the bounds and dims (NULL: no dims known). Status requests need only the
 * version, the request id and the robot name; asks may leave the state empty (a state that is
 * given is checked); chunk requests need all of it. field (cap fcap, may be NULL) gets the
 * field's path on failure, "" on success. */
int vlad_serve_check_request(const Vlad__Serve__InferRequest *r, const vlad_serve_dims *d,
                             char *field, size_t fcap, vlad_err *err);

/* Split the frame (topic "infer"), unpack, check. *out is set whenever the protobuf decoded
 * (also when the check then failed, so the caller can echo its request_id); NULL when it did
 * not. Free with vlad__serve__infer_request__free_unpacked(*out, NULL). */
int vlad_serve_decode_request(const uint8_t *buf, size_t len, const vlad_serve_dims *d,
                              Vlad__Serve__InferRequest **out, char *field, size_t fcap,
                              vlad_err *err);

/* Check r, then pack it as a frame into *buf (grown with realloc as needed; *cap its size);
 * *len gets the frame length. A check failure packs nothing. */
int vlad_serve_pack_request(const Vlad__Serve__InferRequest *r, const vlad_serve_dims *d,
                            uint8_t **buf, size_t *cap, size_t *len, vlad_err *err);

/* ---- replies -------------------------------------------------------------------------- */

/* Check a reply: version, a known error code, message / field bounds; with error OK exactly
 * one body -- a chunk (horizon, action_dim > 0, horizon*action_dim finite actions, the dims'
 * when known, batch_size 1..VLAD_SERVE_MAX_BATCH), an answer (<= VLAD_SERVE_MAX_ANSWER
 * bytes) or a status (its model's views UTF-8, <= VLAD_SERVE_MAX_VIEWS_TEXT bytes); with an
 * error none. Whether the body is the kind the request asked
 * for is the caller's to check (client.h does). */
int vlad_serve_check_reply(const Vlad__Serve__InferReply *r, const vlad_serve_dims *d,
                           char *field, size_t fcap, vlad_err *err);

/* Split (topic "reply"), unpack, check; *out as for vlad_serve_decode_request. Free with
 * vlad__serve__infer_reply__free_unpacked(*out, NULL). */
int vlad_serve_decode_reply(const uint8_t *buf, size_t len, const vlad_serve_dims *d,
                            Vlad__Serve__InferReply **out, char *field, size_t fcap,
                            vlad_err *err);

/* Check r, then pack it as for vlad_serve_pack_request. */
int vlad_serve_pack_reply(const Vlad__Serve__InferReply *r, const vlad_serve_dims *d,
                          uint8_t **buf, size_t *cap, size_t *len, vlad_err *err);

/* ---- images ---------------------------------------------------------------------------- */

/* Bytes the decoded JPEG images of r need: width*height*3 for each JPEG image (RAW ones are
 * used where they are). */
size_t vlad_serve_decoded_bytes(const Vlad__Serve__InferRequest *r);

/* The pixels of r's images (r passed vlad_serve_check_request: every image's width and height
 * are the model's, a JPEG's bytes bounded) into pix[0..n_images): a RAW image's point into r;
 * a JPEG one is decoded by codec j (jpeg.h; NULL when none is JPEG) into buf (cap >=
 * vlad_serve_decoded_bytes(r)), and must be exactly its declared width x height. Errors name
 * the image as the checks do (field "images[1].data"): VLAD_EINVAL for bytes that do not
 * decode (BAD_REQUEST: "not a JPEG", "does not decode: <libjpeg's message>"), VLAD_ERANGE for
 * a JPEG of another size (SHAPE: "JPEG is 32x32, expected 64x64"), VLAD_EIO without a codec
 * or room. The one decoding rule of the server; the client library encodes with the same
 * codec (jpeg.h). */
int vlad_serve_decode_images(vlad_jpeg *j, const Vlad__Serve__InferRequest *r, uint8_t *buf,
                             size_t cap, const uint8_t **pix, char *field, size_t fcap,
                             vlad_err *err);

/* Largest request frame a client may send for these dims (all images at full size, RAW or the
 * largest JPEG vlad_jpeg_max_bytes allows, the longest prompt, state and noise, plus
 * headroom): the server's ZMQ_MAXMSGSIZE. */
size_t vlad_serve_max_request_frame(const vlad_serve_dims *d);

#endif
