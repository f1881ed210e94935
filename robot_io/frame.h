/* frame.h — the one-frame wire format: topic bytes, one space, packed protobuf.
 *
 * Topics are "<kind>.<robot>" with kind one of obs, action, chunk, lang, event; control
 * messages use "cmd" and "reply". Pure functions: no allocation, any thread. */
#ifndef VLAD_FRAME_H
#define VLAD_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define VLAD_TOPIC_MAX 96

/* Write "<kind>.<robot>" into buf. Returns 0 or VLAD_ERANGE if it does not fit. */
int vlad_topic(char *buf, size_t cap, const char *kind, const char *robot);

/* Pack `topic` + ' ' + msg into buf[cap]; *len gets the frame size.
 * Returns 0, or VLAD_ERANGE (with a message) if the frame does not fit. */
int vlad_frame_pack(const char *topic, const ProtobufCMessage *msg, uint8_t *buf, size_t cap,
                    size_t *len, vlad_err *err);

/* Size vlad_frame_pack would need. */
size_t vlad_frame_size(const char *topic, const ProtobufCMessage *msg);

/* Split a received frame. If `expect` is non-NULL the topic must equal it exactly.
 * On success *payload and *plen point into buf (and *topic, *tlen, if non-NULL, at the topic).
 * Errors (VLAD_EPARSE) say what was wrong: no space, empty topic, unexpected topic; on error
 * the out parameters are left as they were. */
int vlad_frame_split(const uint8_t *buf, size_t len, const char *expect, const uint8_t **topic,
                     size_t *tlen, const uint8_t **payload, size_t *plen, vlad_err *err);

#endif
