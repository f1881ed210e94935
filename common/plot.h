/* plot.h — PNG pictures through gnuplot (Debian's gnuplot-nox).
 *
 * A plot is a gnuplot script built in memory: inline data blocks ($name << EOD ... EOD)
 * and commands, then run by one gnuplot process writing one PNG (pngcairo, or png where
 * cairo is missing). Nothing is written until vlad_plot_finish. Without gnuplot,
 * vlad_plot_finish fails with VLAD_EIO naming it, and the caller reports and carries on. */
#ifndef VLAD_PLOT_H
#define VLAD_PLOT_H

#include <stdarg.h>

#include "err.h"

typedef struct vlad_plot vlad_plot;

/* A plot that will be written to png_path, width x height pixels, with title (may be NULL). */
vlad_plot *vlad_plot_new(const char *png_path, int width, int height, const char *title,
                         vlad_err *err);
void vlad_plot_free(vlad_plot *p);

/* Append raw gnuplot text (no newline is added). */
void vlad_plot_printf(vlad_plot *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Start an inline data block named name ("$name" in plot commands); vlad_plot_row adds
 * one row of n numbers (NaN written as "NaN", which gnuplot skips); vlad_plot_end_data ends it.
 * A blank row (n == 0) separates data sets (gnuplot "index"/"lines" breaks). */
void vlad_plot_data(vlad_plot *p, const char *name);
void vlad_plot_row(vlad_plot *p, const double *v, int n);
void vlad_plot_end_data(vlad_plot *p);

/* Run gnuplot on the script; VLAD_OK when it exited 0 and the PNG exists. The script is
 * also kept beside the PNG as <png_path>.gp when keep_script is non-zero (to tweak it).
 * The plot is freed either way. */
int vlad_plot_finish(vlad_plot *p, int keep_script, vlad_err *err);

/* Is gnuplot on PATH? */
int vlad_plot_available(void);

#endif
