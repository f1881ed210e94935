/* kv_loop.h — the closed-loop part of `vlad-bench kv`: task success, Δ and action-inference
 * latency of the daemon driving vlad-sim with and without language streams running. */
#ifndef VLAD_BENCH_KV_LOOP_H
#define VLAD_BENCH_KV_LOOP_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "closedloop.h"
#include "err.h"

typedef struct bench_kv_loop_opts {
    const vlad_profile *base; /* the robot (configs/sim-arm.yaml) */
    const char *model;        /* checkpoint */
    const char *tasks;        /* "all" or a list */
    int episodes;             /* per task */
    unsigned seed;
    bool wall;                /* wall clock (real time), else lockstep */
    int streams, k;           /* lang.max_streams, lang.tokens_per_frame of the language run */
    const char *workdir;      /* runs go in workdir/nolang and workdir/lang */
} bench_kv_loop_opts;

/* Run both, print the tables, append one JSON object per run to json_runs (an array). */
int bench_kv_closed_loop(const bench_kv_loop_opts *o, cJSON *json_runs, vlad_err *err);

#endif
