/* err.h — error reporting shared by every vlad module.
 *
 * Contract: a function that can fail returns an int status (0 = success, a negative
 * VLAD_E* code on failure) and, when given a non-NULL vlad_err*, fills it with a
 * human-readable message naming what was wrong (file, field, tensor, value, ...).
 * Library code never exits or aborts on bad input. */
#ifndef VLAD_ERR_H
#define VLAD_ERR_H

#include <stddef.h>

enum {
    VLAD_OK = 0,
    VLAD_EINVAL = -1,   /* bad argument or bad input data */
    VLAD_ENOMEM = -2,   /* allocation failed */
    VLAD_EIO = -3,      /* file or socket I/O failed */
    VLAD_ERANGE = -4,   /* value out of its allowed range */
    VLAD_EPARSE = -5,   /* malformed file or message */
    VLAD_ETIMEOUT = -6, /* nothing arrived in time */
    VLAD_ESTATE = -7,   /* call not valid in the object's current state */
    VLAD_EAGAIN = -8,   /* would block; try again */
};

#define VLAD_ERR_MSG_MAX 512

typedef struct vlad_err {
    int code;
    char msg[VLAD_ERR_MSG_MAX];
} vlad_err;

/* Fill *e (if non-NULL) with code and a printf-style message. Returns code, so that
 * `return vlad_err_set(e, VLAD_EINVAL, "...")` reads naturally. */
int vlad_err_set(vlad_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in *e with a printf-style context ("file.yaml: ").
 * Returns e->code (or VLAD_EINVAL if e is NULL). */
int vlad_err_prefix(vlad_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reset *e to "no error". */
void vlad_err_clear(vlad_err *e);

/* A static name for a VLAD_E* code ("EINVAL", ...). */
const char *vlad_err_name(int code);

#endif
