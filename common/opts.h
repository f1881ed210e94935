/* opts.h — one command-line option table per program: parsing, bounds and usage text.
 *
 * A program describes its options once, as an array of vlad_opt ended by {0}; the parser
 * fills each option's destination, checks numbers against [lo, hi] (when lo < hi) and
 * names the option and the value in every error, and the same table prints the usage.
 * Options are "--name VALUE" or "--name=VALUE" ("--flag" for VLAD_OPT_FLAG); "--" ends the
 * options. Arguments that are not options (positional) are kept in order. */
#ifndef VLAD_OPTS_H
#define VLAD_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef enum {
    VLAD_OPT_END = 0,
    VLAD_OPT_FLAG,   /* int *: set to 1, or to `lo` when lo != 0 (-1, 2, ...: a flag with a value) */
    VLAD_OPT_STR,    /* const char **: points into argv */
    VLAD_OPT_INT,    /* int * */
    VLAD_OPT_U64,    /* uint64_t * (decimal or 0x hex) */
    VLAD_OPT_DOUBLE, /* double * */
    VLAD_OPT_CALL,   /* fn(dst, value, err): custom or repeated options (--set K=V ...) */
} vlad_opt_kind;

typedef struct vlad_opt {
    const char *name;    /* without the leading "--" */
    vlad_opt_kind kind;
    void *dst;
    const char *metavar; /* shown in the usage ("N", "FILE"); NULL for flags */
    const char *help;    /* one line */
    double lo, hi;       /* numeric bounds, inclusive, checked when lo < hi */
    int (*fn)(void *dst, const char *value, vlad_err *err); /* VLAD_OPT_CALL */
} vlad_opt;

/* Parse argv[1..argc-1] against tab. Positional arguments are written to pos (up to
 * pos_cap; more is an error) and counted in *npos (pos may be NULL when none are allowed).
 * "--help" / "-h" returns VLAD_ESTATE with no message, so the caller prints the usage and
 * exits 0. An unknown option, a missing value, a value that is not a number or is out of
 * bounds returns VLAD_EINVAL / VLAD_ERANGE with err naming the option. */
int vlad_opts_parse(const vlad_opt *tab, int argc, char **argv, const char **pos, int pos_cap,
                    int *npos, vlad_err *err);

/* "usage: <synopsis>" and one line per option: name, metavar, help, bounds and the current
 * value of the destination (the default, when called before parsing; not where the help
 * text already says "default"). */
void vlad_opts_usage(FILE *out, const char *synopsis, const vlad_opt *tab);

#endif
