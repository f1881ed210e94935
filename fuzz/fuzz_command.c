/* fuzz_command — one frame from the control socket: vlad_frame_split (topic "cmd"),
 * protobuf-c decode of a Command, vlad_validate_command, and vlad_text_sanitize of an e-stop
 * reason as the daemon logs it. Also compares vlad_utf8_valid with an independent reference
 * and checks what vlad_text_sanitize promises for every buffer size up to a few bytes past
 * the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "fuzz_util.h"
#include "validate.h"
#include "vlad.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* out = vlad_text_sanitize(in, cap): terminated inside cap, valid UTF-8, the text itself when
 * it is valid and fits, else a prefix of it cut at a character boundary, followed by "...". */
static void check_sanitize(const char *in, size_t cap) {
    char *out = malloc(cap ? cap : 1);
    FUZZ_CHECK(out);
    memset(out, 0x5a, cap ? cap : 1);
    vlad_text_sanitize(in, out, cap);
    if (!cap) {
        FUZZ_CHECK((unsigned char)out[0] == 0x5a); /* nothing written */
        free(out);
        return;
    }
    size_t ol = strnlen(out, cap);
    FUZZ_CHECK(ol < cap);
    FUZZ_CHECK(fuzz_utf8_ref((const unsigned char *)out, ol));
    const char *src = in ? in : "";
    size_t il = strlen(src);
    if (fuzz_utf8_ref((const unsigned char *)src, il)) {
        if (il < cap) {
            FUZZ_CHECK(!strcmp(out, src));
        } else if (cap < 4) {
            FUZZ_CHECK(ol == cap - 1 && !strncmp(out, "...", ol)); /* no room for text */
        } else {
            FUZZ_CHECK(ol >= 3 && !strcmp(out + ol - 3, "..."));
            size_t keep = ol - 3;
            /* the kept part is a prefix cut at a character boundary, at most one character
             * short of the room (cap - 4 bytes) */
            FUZZ_CHECK(keep <= cap - 4 && keep + 3 >= cap - 4 && !memcmp(out, src, keep));
            FUZZ_CHECK(((unsigned char)src[keep] & 0xC0) != 0x80);
        }
    } else {
        FUZZ_CHECK(!strstr(out, src) || il == 0);
    }
    free(out);
}

static void check_command(const Vlad__Command *c) {
    vlad_err err;
    int rc = vlad_validate_command(c, &err);
    FUZZ_CHECK(vlad_validate_command(c, NULL) == rc);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(rc == VLAD_EINVAL);
    }
    switch (c->body_case) {
    case VLAD__COMMAND__BODY_SET_INSTRUCTION:
    case VLAD__COMMAND__BODY_ASK: {
        const char *t = c->body_case == VLAD__COMMAND__BODY_ASK ? c->ask->question
                                                                : c->set_instruction->text;
        size_t tl = t ? strlen(t) : 0;
        int ok = tl <= VLAD_TEXT_MAX && fuzz_utf8_ref((const unsigned char *)(t ? t : ""), tl);
        FUZZ_CHECK((rc == 0) == ok);
        break;
    }
    case VLAD__COMMAND__BODY_ESTOP: {
        FUZZ_CHECK(rc == 0); /* an e-stop is never refused */
        char reason[VLAD_TEXT_MAX + 1]; /* what daemon/io.c logs */
        vlad_text_sanitize(c->estop->reason, reason, sizeof reason);
        FUZZ_CHECK(strlen(reason) <= VLAD_TEXT_MAX);
        size_t rl = c->estop->reason ? strlen(c->estop->reason) : 0;
        for (size_t cap = 0; cap <= rl + 2 && cap <= 40; cap++)
            check_sanitize(c->estop->reason, cap);
        check_sanitize(c->estop->reason, VLAD_TEXT_MAX + 1);
        break;
    }
    case VLAD__COMMAND__BODY_RELEASE_ESTOP:
    case VLAD__COMMAND__BODY_RESET:
    case VLAD__COMMAND__BODY_STATUS:
        FUZZ_CHECK(rc == 0);
        break;
    default:
        FUZZ_CHECK(rc != 0);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the UTF-8 check and the sanitizer on the raw bytes */
    FUZZ_CHECK(vlad_utf8_valid((const char *)data, size) == (fuzz_utf8_ref(data, size) != 0));
    if (size <= 300) {
        char *s = fuzz_strdup(data, size);
        size_t cap = size ? data[0] % 48 : 0;
        check_sanitize(s, cap);
        check_sanitize(s, strlen(s) + 1);
        free(s);
    }

    vlad_err err;
    const uint8_t *pl = NULL;
    size_t plen = 0;
    int rc = vlad_frame_split(data, size, "cmd", NULL, NULL, &pl, &plen, &err);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(!pl);
        return 0;
    }
    FUZZ_CHECK(size >= 4 && !memcmp(data, "cmd ", 4) && pl == data + 4 && plen == size - 4);
    Vlad__Command *c = vlad__command__unpack(NULL, plen, pl);
    if (!c)
        return 0;
    check_command(c);
    vlad__command__free_unpacked(c, NULL);
    return 0;
}
