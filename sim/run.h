/* run.h — the vlad-sim episode runner: the tick loop that ties physics, tasks, the daemon
 * (or the in-process expert), metrics, the dataset recorder and the video recorder.
 *
 * Per tick t (a run-wide counter that never resets; Observation.tick = t):
 *   1. measure the state; on an episode's first tick reset the world, send Command.reset
 *      and Command.set_instruction to the daemon and add EPISODE_START (detail =
 *      instruction);
 *   2. vlad_task_update: world changes (WORLD_CHANGE), success (SUCCESS), end (EPISODE_END);
 *   3. render cameras due at this tick (every round(control_hz/rate_hz) ticks from the
 *      episode start) and publish Observation(t) with joint state, images and events;
 *   4. unless the episode ended: get the target for tick t (link.h) -- expert: computed in
 *      process; lockstep: the Action that answers Observation(t), through the client
 *      library's one lockstep protocol, waited for up to the lockstep timeout; wall: the
 *      newest Action for this episode received before the tick's deadline -- hold the last
 *      target when none came (a stall);
 *   5. pass it through the daemon's own rule (vlad_safety_clamp, daemon/safety.h: rate limit
 *      from the last applied target, position limits last) -- the robot's controller limits
 *      what it executes the way the daemon does, so a target the daemon's gate passed is
 *      applied unchanged -- apply it for sim.substeps physics steps; t++.
 * --trajectory writes one CSV row per executed tick: task, episode, tick, k, chunk (0: none),
 * target_<joint>..., pos_<joint>..., obs_tick (robot tick of the observation the chunk was
 * computed from; -1: none), source (Vlad__ActionSource; -1: no action this tick).
 * Metrics per episode: success, completion time, mean squared jerk of the measured joint
 * trajectory, stall ticks, reaction latency (WORLD_CHANGE at c -> first executed action
 * at e >= c with chunk_id != 0 whose Action.obs_robot_tick >= c -- its chunk saw the change;
 * latency e - c ticks; in wall clock also end to end: from publishing observation c to
 * receiving the Action executed at e, in ms). */
#ifndef VLAD_SIM_RUN_H
#define VLAD_SIM_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "profile.h"
#include "tasks.h"

typedef struct vlad_sim_opts {
    const vlad_profile *p;
    vlad_task_kind tasks[VLAD_TASK_COUNT];
    int n_tasks;
    int episodes;             /* per task */
    uint64_t seed;
    vlad_clock_mode clock;
    bool expert;              /* act in process; no daemon */
    int expert_delay;         /* expert sees the world this many ticks late */
    int expert_chunk;         /* > 0: the expert plans this many ticks at a time on a forecast
                               * of the world (vlad_task_forecast) and executes the plan open
                               * loop, as a policy with a chunk of that length that knew the
                               * present exactly would (with expert_delay: the world of that
                               * many ticks before the plan's first tick); 0: it replans every
                               * tick */
    /* DART-style perturbation of the expert's demonstrations: the world executes the
     * expert's command plus a seeded Ornstein-Uhlenbeck offset per joint (stationary std
     * expert_noise rad, correlation time expert_noise_tau_s), while the dataset records
     * the clean command -- states off the expert's path, labelled with the way back */
    double expert_noise;      /* 0: off */
    double expert_noise_tau_s;
    bool expect_policy;       /* non-POLICY actions count as stalls */
    int64_t start_tick;       /* this robot's first tick number (any: the daemon has its own) */
    const char *key_file;     /* CURVE: this client's secret key (NULL: $VLAD_CLIENT_KEY / profile) */
    double lockstep_timeout_ms; /* <= 0: the profile's */
    int command_timeout_ms;   /* reset/set_instruction reply wait; <= 0: 500 */
    bool render;              /* render cameras (forced on with a daemon or recorders) */
    const char *dataset_dir;  /* --record-dataset */
    const char *record_path;  /* --record (.gif or .mp4) */
    int record_scale;
    const vlad_task_params *params[VLAD_TASK_COUNT]; /* NULL: the defaults */
    const char *trajectory_path; /* --trajectory: CSV of every tick's target and position */
    FILE *log;                /* progress lines; NULL: quiet */
} vlad_sim_opts;

typedef struct vlad_episode_result {
    vlad_task_kind task;
    int episode;          /* index within its task */
    uint64_t seed;        /* the episode's layout seed */
    char instruction[128];
    int64_t first_tick;
    int ticks;            /* ticks in the episode */
    bool success;
    int completion_ticks; /* -1 if not successful */
    double score;
    double jerk;          /* mean squared jerk, (rad/s^3)^2 */
    int stall_ticks;
    int world_changes;
    int reactions;        /* world changes with a qualifying action */
    double latency_mean_ticks, latency_max_ticks; /* NAN when reactions == 0 */
    /* wall clock, end to end: from publishing the first observation that shows the change
     * to receiving the executed Action that reacts to it (NAN in lockstep or without one) */
    double e2e_mean_ms, e2e_max_ms;
    int chunk_switches;   /* ticks whose action came from another chunk than the last */
    double disc_mean, disc_max; /* max_j |a_first_new - a_last_old| at switches; NAN if none */
    uint64_t traj_hash;   /* FNV-1a of the measured and applied joint trajectories */
    /* the daemon did not keep up (0 in a clean run): episode commands without a reply, and
     * lockstep ticks without an Action within the lockstep timeout (the robot held) */
    int unanswered_commands, lockstep_timeouts;
} vlad_episode_result;

typedef struct vlad_sim_results {
    int n;
    vlad_episode_result *ep;
    double control_hz;
    char robot[VLAD_NAME_MAX];
    vlad_clock_mode clock;
    uint64_t seed;
    bool expert;
    int expert_delay;
    int expert_chunk;
    double wall_s;        /* not part of the JSON (which is deterministic) */
    int64_t ticks;
} vlad_sim_results;

void vlad_sim_opts_defaults(vlad_sim_opts *o, const vlad_profile *p);

/* Run every episode; fills *res (free with vlad_sim_results_free). */
int vlad_sim_run(const vlad_sim_opts *o, vlad_sim_results *res, vlad_err *err);
void vlad_sim_results_free(vlad_sim_results *res);

/* The seed of episode `ep` of task `k` in a run seeded with `seed`. */
uint64_t vlad_sim_episode_seed(uint64_t seed, vlad_task_kind k, int ep);

#endif
