/* opts.c — see opts.h. */
#include "opts.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const vlad_opt *find(const vlad_opt *tab, const char *name, size_t len) {
    for (const vlad_opt *o = tab; o->kind != VLAD_OPT_END; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len))
            return o;
    return NULL;
}

static int bounds(const vlad_opt *o, double v, const char *s, vlad_err *err) {
    if (o->lo < o->hi && (v < o->lo || v > o->hi))
        return vlad_err_set(err, VLAD_ERANGE, "--%s: %s is out of range %g..%g", o->name, s, o->lo,
                            o->hi);
    return VLAD_OK;
}

static int set_value(const vlad_opt *o, const char *s, vlad_err *err) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case VLAD_OPT_STR:
        *(const char **)o->dst = s;
        return VLAD_OK;
    case VLAD_OPT_INT: {
        long v = strtol(s, &end, 10);
        if (!*s || *end || errno || v < INT32_MIN || v > INT32_MAX)
            return vlad_err_set(err, VLAD_EINVAL, "--%s: expected an integer, got '%s'", o->name, s);
        if (bounds(o, (double)v, s, err))
            return err ? err->code : VLAD_ERANGE;
        *(int *)o->dst = (int)v;
        return VLAD_OK;
    }
    case VLAD_OPT_U64: {
        if (*s == '-')
            return vlad_err_set(err, VLAD_EINVAL, "--%s: expected an unsigned integer, got '%s'",
                                o->name, s);
        unsigned long long v = strtoull(s, &end, 0);
        if (!*s || *end || errno)
            return vlad_err_set(err, VLAD_EINVAL, "--%s: expected an unsigned integer, got '%s'",
                                o->name, s);
        if (bounds(o, (double)v, s, err))
            return err ? err->code : VLAD_ERANGE;
        *(uint64_t *)o->dst = (uint64_t)v;
        return VLAD_OK;
    }
    case VLAD_OPT_DOUBLE: {
        double v = strtod(s, &end);
        if (!*s || *end || errno || !isfinite(v))
            return vlad_err_set(err, VLAD_EINVAL, "--%s: expected a number, got '%s'", o->name, s);
        if (bounds(o, v, s, err))
            return err ? err->code : VLAD_ERANGE;
        *(double *)o->dst = v;
        return VLAD_OK;
    }
    case VLAD_OPT_CALL: {
        vlad_err e;
        vlad_err_clear(&e);
        int rc = o->fn(o->dst, s, &e);
        if (rc)
            return vlad_err_set(err, rc, "--%s: %s", o->name, e.msg[0] ? e.msg : "bad value");
        return VLAD_OK;
    }
    default:
        return vlad_err_set(err, VLAD_EINVAL, "--%s: bad option table entry", o->name);
    }
}

int vlad_opts_parse(const vlad_opt *tab, int argc, char **argv, const char **pos, int pos_cap,
                    int *npos, vlad_err *err) {
    int n = 0, only_pos = 0;
    if (npos)
        *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            vlad_err_clear(err);
            if (err)
                err->code = VLAD_ESTATE;
            return VLAD_ESTATE;
        }
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] != '-' || !a[2]) {
            if (!pos || n >= pos_cap)
                return vlad_err_set(err, VLAD_EINVAL, "unexpected argument '%s'", a);
            pos[n++] = a;
            if (npos)
                *npos = n;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const vlad_opt *o = find(tab, name, len);
        if (!o)
            return vlad_err_set(err, VLAD_EINVAL, "unknown option '--%.*s' (--help lists them)",
                                (int)len, name);
        if (o->kind == VLAD_OPT_FLAG) {
            if (eq)
                return vlad_err_set(err, VLAD_EINVAL, "--%s takes no value", o->name);
            *(int *)o->dst = o->lo != 0 ? (int)o->lo : 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return vlad_err_set(err, VLAD_EINVAL, "--%s needs a value (%s)", o->name,
                                    o->metavar ? o->metavar : "VALUE");
            v = argv[++i];
        }
        int rc = set_value(o, v, err);
        if (rc)
            return rc;
    }
    return VLAD_OK;
}

static void current(const vlad_opt *o, char *buf, size_t cap) {
    buf[0] = 0;
    if (!o->dst)
        return;
    switch (o->kind) {
    case VLAD_OPT_STR: {
        const char *s = *(const char *const *)o->dst;
        if (s && *s)
            snprintf(buf, cap, "%s", s);
        break;
    }
    case VLAD_OPT_INT: snprintf(buf, cap, "%d", *(const int *)o->dst); break;
    case VLAD_OPT_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)o->dst); break;
    case VLAD_OPT_DOUBLE: snprintf(buf, cap, "%g", *(const double *)o->dst); break;
    default: break;
    }
}

void vlad_opts_usage(FILE *out, const char *synopsis, const vlad_opt *tab) {
    fprintf(out, "usage: %s\n", synopsis);
    size_t w = 0;
    for (const vlad_opt *o = tab; o->kind != VLAD_OPT_END; o++) {
        size_t l = strlen(o->name) + (o->metavar ? strlen(o->metavar) + 1 : 0);
        if (l > w)
            w = l;
    }
    for (const vlad_opt *o = tab; o->kind != VLAD_OPT_END; o++) {
        char left[160], val[256];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        current(o, val, sizeof val);
        fprintf(out, "  --%-*s  %s", (int)w, left, o->help ? o->help : "");
        if (o->lo < o->hi && o->kind != VLAD_OPT_FLAG)
            fprintf(out, " [%g..%g]", o->lo, o->hi);
        if (val[0] && !(o->help && strstr(o->help, "default"))) /* the help names its own */
            fprintf(out, " (default %s)", val);
        fputc('\n', out);
    }
}
