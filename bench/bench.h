/* bench.h — vlad-bench subcommands and what they share. Each subcommand takes argc/argv with
 * argv[0] its own name (the options follow) and returns a process exit status: 0, 1 when a
 * measurement failed, 2 for bad options. */
#ifndef VLAD_BENCH_H
#define VLAD_BENCH_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "opts.h"
#include "plot.h"

/* Write `root` as indented JSON to `path` and free it; a message on stderr if it cannot. */
void bench_write_json(const char *path, cJSON *root);

/* Parse a subcommand's options against its table (common/opts.h). Returns 1 to go on; 0 when
 * the caller should return *status: 0 after --help (the usage, generated from the table, on
 * stdout), 2 after a bad option ("<who>: <message naming the option>" and the usage on stderr). */
int bench_opts(const char *who, const char *synopsis, const vlad_opt *tab, int argc, char **argv,
               int *status);

/* Table rows (every field spelled, for -Wmissing-field-initializers). */
#define BENCH_STR(n, d, mv, h) {n, VLAD_OPT_STR, d, mv, h, 0, 0, NULL}
#define BENCH_INT(n, d, mv, h, lo, hi) {n, VLAD_OPT_INT, d, mv, h, lo, hi, NULL}
#define BENCH_U64(n, d, mv, h, lo, hi) {n, VLAD_OPT_U64, d, mv, h, lo, hi, NULL}
#define BENCH_DBL(n, d, mv, h, lo, hi) {n, VLAD_OPT_DOUBLE, d, mv, h, lo, hi, NULL}
#define BENCH_FLAG(n, d, h) {n, VLAD_OPT_FLAG, d, NULL, h, 0, 0, NULL}
#define BENCH_CALL(n, d, mv, h, fn) {n, VLAD_OPT_CALL, d, mv, h, 0, 0, fn}
#define BENCH_OPT_END {NULL, VLAD_OPT_END, NULL, NULL, NULL, 0, 0, NULL}

/* VLAD_OPT_CALL parsers. A comma-separated list of integers, each in [lo, hi]: */
#define BENCH_LIST_MAX 8
typedef struct bench_int_list {
    int v[BENCH_LIST_MAX];
    int n;
    int lo, hi;
} bench_int_list;
int bench_opt_int_list(void *dst, const char *value, vlad_err *err);
/* One of the names in allowed ("none|expert|all"): value points into argv, index is its place. */
typedef struct bench_choice {
    const char *allowed;
    const char *value; /* the default until parsed (may be NULL) */
    int index;
} bench_choice;
int bench_opt_choice(void *dst, const char *value, vlad_err *err);

/* --plot DIR: VLAD_OK when gnuplot is there and DIR exists (made); otherwise one line on stderr
 * ("<who>: gnuplot not found ...: no pictures") and VLAD_EIO: the benchmark carries on. */
int bench_plot_dir(const char *who, const char *dir);
/* buf = DIR/NAME */
void bench_plot_path(const char *dir, const char *name, char *buf, size_t cap);
/* Run the plot (vlad_plot_finish): "picture: PATH (what)" on stdout, or the error on stderr;
 * never fails the benchmark. p may be NULL (nothing to do). */
void bench_plot_done(const char *who, vlad_plot *p, const char *path, const char *what);

/* vlad-bench engine [--json FILE] [--threads N] [--quick] [--no-twin] [--only NAME] [--plot DIR] */
int bench_engine_main(int argc, char **argv);

/* vlad-bench policy [--model M] [--episodes N] [--json FILE] ... (bench_policy.c) */
int bench_policy_main(int argc, char **argv);

/* vlad-bench vlash [--json FILE] [--episodes N] [--deltas ...] [--plot DIR] ... (bench_vlash.c) */
int bench_vlash_main(int argc, char **argv);

/* vlad-bench soak [--minutes N] [--json FILE] ... (bench_soak.c) */
int bench_soak_main(int argc, char **argv);

/* vlad-bench kv [--json FILE] [--quick] [--only default|smolvla] [--threads N] [--frames N]
 * [--plot DIR] ... (bench_kv.c) */
int bench_kv_main(int argc, char **argv);

/* vlad-bench serve [--robots 1,2,4,8] [--rtt 0,20,50] [--quick] [--json FILE] ... (bench_serve.c;
 * built where vlad-serve is) */
int bench_serve_main(int argc, char **argv);

#endif
