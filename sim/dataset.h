/* dataset.h — the per-episode demonstration recorder of vlad-sim (`--record-dataset DIR`).
 * Files are safetensors (common/safetensors.h reads and writes them).
 *
 * Episode file DIR/episode_NNNNNN.safetensors (format "vlad-sim-episode-1"), T frames
 * (one per control tick of the episode, including its last tick):
 *   images  U8  [T, n_cam, H, W, 3]  latest frame of each camera, rows top to bottom
 *   tick    I64 [T]                  control tick of the frame
 *   state   F32 [T, n_joints]        measured joint positions
 *   velocity F32 [T, n_joints]       measured joint velocities
 *   action  F32 [T, n_joints]        absolute joint targets executed at that tick
 *   ee      F32 [T, 3]               end-effector position (privileged)
 * metadata: format, task, instruction, seed, episode, control_hz, success, robot,
 *   joint_names (JSON list), camera_names (JSON list), events (JSON list of
 *   {"frame","tick","kind","detail"}), labels (JSON list, one per frame, of
 *   {"commentary": str, "qa": [[question, answer], ...]}). */
#ifndef VLAD_SIM_DATASET_H
#define VLAD_SIM_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"
#include "safetensors.h"
#include "tasks.h"

/* ---- episode recorder ---- */
typedef struct vlad_dataset vlad_dataset;

/* Record into directory dir (created if missing). All cameras of p must share one size. */
vlad_dataset *vlad_dataset_new(const char *dir, const vlad_profile *p, vlad_err *err);
void vlad_dataset_free(vlad_dataset *d);
/* Start episode `episode` (its file index). */
int vlad_dataset_begin(vlad_dataset *d, int episode, const char *task, const char *instruction,
                       uint64_t seed, vlad_err *err);
/* Append a frame. images[c] is camera c's RGB8 frame (NULL: black). */
int vlad_dataset_frame(vlad_dataset *d, int64_t tick, const uint8_t *const *images, const double *q,
                       const double *qd, const double *action, const double ee[3],
                       const vlad_labels *labels, vlad_err *err);
/* Set the action of the last frame (the target executed at its tick). */
void vlad_dataset_set_action(vlad_dataset *d, const double *action);
int vlad_dataset_event(vlad_dataset *d, int64_t tick, int kind, const char *detail, vlad_err *err);
/* Write DIR/episode_NNNNNN.safetensors. */
int vlad_dataset_end(vlad_dataset *d, int success, vlad_err *err);
/* Path of the last file written. */
const char *vlad_dataset_last_path(const vlad_dataset *d);

#endif
