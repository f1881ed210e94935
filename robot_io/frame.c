#include "frame.h"

#include <stdio.h>
#include <string.h>

int vlad_topic(char *buf, size_t cap, const char *kind, const char *robot) {
    int n = snprintf(buf, cap, "%s.%s", kind, robot);
    return (n < 0 || (size_t)n >= cap) ? VLAD_ERANGE : VLAD_OK;
}

size_t vlad_frame_size(const char *topic, const ProtobufCMessage *msg) {
    return strlen(topic) + 1 + protobuf_c_message_get_packed_size(msg);
}

int vlad_frame_pack(const char *topic, const ProtobufCMessage *msg, uint8_t *buf, size_t cap,
                    size_t *len, vlad_err *err) {
    size_t tl = strlen(topic);
    size_t need = tl + 1 + protobuf_c_message_get_packed_size(msg);
    if (need > cap)
        return vlad_err_set(err, VLAD_ERANGE, "frame %s: %zu bytes exceed the buffer of %zu", topic,
                            need, cap);
    memcpy(buf, topic, tl);
    buf[tl] = ' ';
    size_t n = protobuf_c_message_pack(msg, buf + tl + 1);
    *len = tl + 1 + n;
    return VLAD_OK;
}

int vlad_frame_split(const uint8_t *buf, size_t len, const char *expect, const uint8_t **topic,
                     size_t *tlen, const uint8_t **payload, size_t *plen, vlad_err *err) {
    const uint8_t *sp = len ? memchr(buf, ' ', len < VLAD_TOPIC_MAX ? len : VLAD_TOPIC_MAX) : NULL;
    if (!sp)
        return vlad_err_set(err, VLAD_EPARSE, "frame of %zu bytes has no topic separator", len);
    size_t tl = (size_t)(sp - buf);
    if (tl == 0)
        return vlad_err_set(err, VLAD_EPARSE, "frame has an empty topic");
    if (expect && (strlen(expect) != tl || memcmp(expect, buf, tl) != 0))
        return vlad_err_set(err, VLAD_EPARSE, "frame topic '%.*s' is not '%s'", (int)tl,
                            (const char *)buf, expect);
    if (topic)
        *topic = buf;
    if (tlen)
        *tlen = tl;
    *payload = sp + 1;
    *plen = len - tl - 1;
    return VLAD_OK;
}
