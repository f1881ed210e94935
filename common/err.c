#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int vlad_err_set(vlad_err *e, int code, const char *fmt, ...) {
    if (e) {
        e->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int vlad_err_prefix(vlad_err *e, const char *fmt, ...) {
    if (!e)
        return VLAD_EINVAL;
    char head[VLAD_ERR_MSG_MAX], old[VLAD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t hn = strnlen(head, sizeof head - 1);
    memcpy(e->msg, head, hn);
    size_t on = strnlen(old, sizeof old - 1);
    if (on > sizeof e->msg - 1 - hn)
        on = sizeof e->msg - 1 - hn;
    memcpy(e->msg + hn, old, on);
    e->msg[hn + on] = '\0';
    return e->code;
}

void vlad_err_clear(vlad_err *e) {
    if (e) {
        e->code = VLAD_OK;
        e->msg[0] = '\0';
    }
}

const char *vlad_err_name(int code) {
    switch (code) {
    case VLAD_OK: return "OK";
    case VLAD_EINVAL: return "EINVAL";
    case VLAD_ENOMEM: return "ENOMEM";
    case VLAD_EIO: return "EIO";
    case VLAD_ERANGE: return "ERANGE";
    case VLAD_EPARSE: return "EPARSE";
    case VLAD_ETIMEOUT: return "ETIMEOUT";
    case VLAD_ESTATE: return "ESTATE";
    case VLAD_EAGAIN: return "EAGAIN";
    default: return "EUNKNOWN";
    }
}
