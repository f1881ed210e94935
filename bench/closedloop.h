/* closedloop.h — run the daemon with a policy against vlad-sim (or the sim's scripted
 * expert alone) and summarise the sim's per-episode results per task. Used by
 * `vlad-bench policy`, `vlad-bench vlash`, `vlad-bench kv` and `vlad-bench serve` (whose
 * daemons run their model on vlad-serve: bench_run.remote).
 *
 * Each run gets its own folder: a generated profile (ipc:// endpoints inside the folder,
 * so runs never collide), the daemon's log, the sim's JSON (and optional trajectory). */
#ifndef VLAD_BENCH_CLOSEDLOOP_H
#define VLAD_BENCH_CLOSEDLOOP_H

#include <stdbool.h>

#include "err.h"
#include "profile.h"

/* What the daemon said at the end of a run (its last Status), and the language load's view. */
typedef struct bench_daemon_stats {
    bool ok;                  /* a Status was received */
    double infer_p50_us, infer_p99_us, infer_max_us; /* action-inference latency */
    double jitter_p99_us;
    int delay_ticks;          /* Δ estimate at the end */
    int max_delay_ticks;      /* the daemon's delay limit in force (async.max_delay_ticks or
                                 the checkpoint's Δmax) */
    unsigned long long delay_limited_ticks; /* ticks planned at that limit (Δ estimate above it) */
    double delay_mean_ticks;  /* mean Δ sampled by the load once per chunk (NAN: not sampled) */
    unsigned long long stall_ticks, chunks, prefills, frames;
    unsigned long long lang_tokens, lang_done, lang_refused, preempted;
    /* the language load (bench_run.lang_load) */
    unsigned long long asks, asks_ok, asks_refused, pieces, answers;
    double lang_seconds;      /* from the first ask to the last piece */
    /* the remote policy (bench_run.remote): Status remote_* */
    unsigned long long remote_replies, remote_timeouts, remote_errors, remote_request_bytes;
    double remote_encode_us;
    unsigned long long overruns; /* wall clock: ticks that began after their deadline */
} bench_daemon_stats;

/* The daemon's model on vlad-serve hosts (policy.remote.*, docs/SERVE.md) instead of a local
 * checkpoint: bench_run.model stays NULL. */
typedef struct bench_remote {
    const char *endpoints;    /* policy.remote.endpoints (NULL: the policy is local) */
    bool jpeg;                /* policy.remote.images: jpeg (else raw) */
    int jpeg_quality;         /* 1..100 (0: the daemon's default) */
    double rtt_ms, jitter_ms; /* policy.remote.emulate_rtt_ms / emulate_jitter_ms */
    int timeout_ms;           /* policy.remote.timeout_ms (0: 2000) */
} bench_remote;

typedef struct bench_run {
    const vlad_profile *base; /* robot, joints, cameras, control_hz, safety limits, sim model,
                                 async.tracking_lag_ms, max_delay_ticks and merge_weight */
    const char *model;        /* checkpoint; NULL: the sim's scripted expert, no daemon */
    bool synthetic;           /* the daemon's built-in synthetic policy instead of a model */
    const char *mode;         /* sync | naive | vlash | merge */
    int K, threshold, margin;
    double min_latency_ms;    /* emulated inference latency (lockstep: Δ ticks) */
    bool wall;                /* wall clock for daemon and sim (default lockstep) */
    bool realtime;            /* daemon threads SCHED_FIFO (wall runs) */
    bool free_phase;          /* wall: phase_lock and async.early_start off (ticks on their own
                                 phase, inferences start at ticks) */
    int threads;              /* BLAS threads of the worker */
    double noise_scale;       /* policy.noise_scale (0 is valid; set 1 for the default) */
    const char *tasks;        /* "reach,track" or "all" */
    int episodes;             /* per task */
    unsigned seed;
    const char *params[8];    /* --param TASK.KNOB=V for the sim */
    int n_params;
    int expert_delay;         /* expert only: plan on the world this many ticks late */
    bool trajectory;          /* ask the sim for a trajectory CSV (DIR/trajectory.csv) */
    int lang_streams;         /* the daemon's lang.max_streams (0: the default) */
    int lang_k;               /* lang.tokens_per_frame (0: the default) */
    bool lang_load;           /* while the sim runs, ask one question per chunk (one new request
                                 per frame, OxyGen's workload) and read every answer */
    bench_daemon_stats *stats;/* optional: filled at the end of a daemon run */
    bench_remote remote;      /* remote.endpoints set: the daemon's model runs on vlad-serve */
} bench_run;

typedef struct bench_task_stats {
    char task[16];
    int episodes, successes;
    double success;           /* fraction */
    double completion_s;      /* mean over successful episodes (NAN if none) */
    double completion_sd;     /* their standard deviation (NAN below 2 successes) */
    double completion_ci95;   /* half-width of the 95% Student-t interval of that mean (NAN
                                 below 2 successes) */
    double jerk;              /* mean of the episodes' mean squared jerk */
    double stall_ticks;       /* mean per episode */
    double react_mean_ticks;  /* mean over episodes with a reaction (NAN if none) */
    double react_max_ticks;   /* max over episodes */
    int react_missing;        /* episodes with world changes but no qualifying action */
    double e2e_mean_ms;       /* wall clock: end-to-end reaction (observation out to reacting
                                 Action in, vlad-sim), mean over episodes (NAN: none) */
    double e2e_max_ms;        /* ... max over episodes */
    double disc_mean, disc_max; /* chunk-boundary discontinuity (rad) */
    double ticks;             /* mean episode length */
    int daemon_faults;        /* vlad-sim's unanswered_commands + lockstep_timeouts, summed:
                                 0 in a clean run; else the daemon did not keep up */
} bench_task_stats;

#define BENCH_MAX_TASKS 4

/* The language load: a thread with its own client asks one question per ActionChunk the
 * daemon of profile p publishes (one new request per frame) and reads every answer; st gets
 * asks, refusals, pieces, answers and Δ sampled per chunk (by a status request: with ask
 * false the thread only samples Δ, the same way, for the run without language). NULL if it
 * cannot start. */
typedef struct bench_lang_load bench_lang_load;
bench_lang_load *bench_lang_load_start(const vlad_profile *p, bench_daemon_stats *st, bool ask);
/* Give the last answers 300 ms, stop, fill st's lang_seconds and delay_mean_ticks. NULL is fine. */
void bench_lang_load_stop(bench_lang_load *L);

/* Wilson score interval (95%) of a success rate k/n. */
void bench_wilson(int k, int n, double *lo, double *hi);

/* Run in folder `dir` (created). Fills out[0..*n) with one entry per task. */
int bench_closed_loop(const bench_run *r, const char *dir, bench_task_stats *out, int *n,
                      vlad_err *err);

/* The numbers `key` of the episodes of `task` in a run folder's sim.json (episodes where it is
 * null are left out), in episode order: out[0..*n), at most cap. */
int bench_episode_values(const char *dir, const char *task, const char *key, double *out, int cap,
                         int *n, vlad_err *err);

/* The outcome of every episode of `task` in a run folder's sim.json, indexed by its "episode"
 * field: ok[e] (success) and completion_s[e] (NAN unless successful) for e < *n, where *n is one
 * more than the largest index seen (at most cap; an index missing from the file is a failure). */
int bench_episode_outcomes(const char *dir, const char *task, bool *ok, double *completion_s,
                           int cap, int *n, vlad_err *err);

/* Path of the folder's trajectory CSV (when r->trajectory). */
void bench_trajectory_path(const char *dir, char *buf, size_t cap);

/* Make `dir` (and parents). */
int bench_mkdirs(const char *dir, vlad_err *err);

/* The default folder of a benchmark's runs: $TMPDIR (else /tmp)/vlad-bench-NAME-PID, so that
 * two benchmarks at once never share a profile or ipc:// endpoints. Returns buf. */
const char *bench_default_work(char *buf, size_t cap, const char *name);

/* Point vlad_proc_bin at the folder of the running executable (build/bin). */
void bench_find_binaries(void);

/* Start of a closed-loop benchmark: find the binaries and load the base profile; on error
 * prints "<who>: <message>" and returns non-zero. */
int bench_setup(const char *who, const char *profile, vlad_profile *p);

#endif
