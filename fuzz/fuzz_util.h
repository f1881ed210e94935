/* fuzz_util.h — helpers shared by the libFuzzer targets (fuzz/README.md).
 *
 * A broken invariant is a finding: FUZZ_CHECK prints what failed and aborts, and libFuzzer
 * saves the input as a crash. (Only the harness aborts; the library code under test never
 * does.) */
#ifndef VLAD_FUZZ_UTIL_H
#define VLAD_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* A failed call returned rc: the error must carry that code and a non-empty, terminated
 * message. */
static inline void fuzz_check_err(const vlad_err *e, int rc) {
    FUZZ_CHECK(rc < 0);
    FUZZ_CHECK(e->code == rc);
    FUZZ_CHECK(memchr(e->msg, '\0', sizeof e->msg) != NULL);
    FUZZ_CHECK(e->msg[0] != '\0');
}

/* A NUL-terminated copy of data[0..size) (the fuzzer's buffer has no terminator). */
static inline char *fuzz_strdup(const unsigned char *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Reference UTF-8 check (RFC 3629), written independently of vlad_utf8_valid to compare. */
static inline int fuzz_utf8_ref(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (b <= 0x7F) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            n = 2;
        } else if (b == 0xE0) {
            n = 3, lo = 0xA0;
        } else if (b == 0xED) {
            n = 3, hi = 0x9F;
        } else if (b >= 0xE1 && b <= 0xEF) {
            n = 3;
        } else if (b == 0xF0) {
            n = 4, lo = 0x90;
        } else if (b >= 0xF1 && b <= 0xF3) {
            n = 4;
        } else if (b == 0xF4) {
            n = 4, hi = 0x8F;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += n;
    }
    return 1;
}

#endif
