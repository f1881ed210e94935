/* snapshot.h — vlad-sim without a daemon or episodes: one picture per task, and the speed of
 * the physics, the expert and the renderer. */
#ifndef VLAD_SIM_SNAPSHOT_H
#define VLAD_SIM_SNAPSHOT_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "profile.h"

/* Render one camera frame per task (episode 0 of seed, after `ticks` expert ticks) to
 * dir/task-<name>.png, enlarged `scale` times. */
int vlad_sim_snapshots(const vlad_profile *p, const char *dir, uint64_t seed, int ticks, int scale,
                       vlad_err *err);

/* Benchmark: physics tick rate and render time per frame. */
typedef struct vlad_sim_bench {
    int ticks, substeps, frames, width, height;
    double tick_us, step_us;   /* per control tick / per physics step */
    double realtime_factor;    /* simulated seconds per wall second */
    double render_ms;          /* per frame */
    double ik_us;              /* one expert action (IK) */
} vlad_sim_bench;

/* Run `ticks` expert ticks of whack and render `frames` frames; fill *b. */
int vlad_sim_bench_run(const vlad_profile *p, int ticks, int frames, vlad_sim_bench *b, vlad_err *err);

/* The table on out; with json_path, the same figures as JSON there. */
int vlad_sim_bench_report(const vlad_profile *p, const vlad_sim_bench *b, FILE *out,
                          const char *json_path, vlad_err *err);

#endif
