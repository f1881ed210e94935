/* batch.h — several independent inferences (prefix + all flow steps) run as one batch.
 *
 * For a server that collects the requests of several robots: instead of n calls of
 * vlad_encode_prefix + vlad_sample_actions, one vlad_batch_infer stacks the rows of all items
 * into the same GEMMs (MODEL.md "Forward pass"):
 *   vision    the n * n_groups token sets in one set of GEMMs (attention within each set);
 *   backbone  every item's prefix rows stacked (items may have different prompt lengths):
 *             the Linear layers, norms and MLPs take all rows at once, RoPE and attention run
 *             per item over its own prefix K/V (positions 0 .. S_i - 1);
 *   flow      each Euler step over the n * (chunk_size + 1) suffix rows stacked, each item's
 *             suffix attending to its own prefix K/V and its own suffix. As in the single
 *             path, the state token (state_proj) is computed once per call.
 * Item i's result equals vlad_encode_prefix + vlad_sample_actions on a fresh runstate with the
 * same inputs to 1e-5 (in practice the packed GEMM kernel computes each row the same way
 * whatever the number of rows, so the results are usually bit-identical).
 *
 * Memory: every buffer (activations and the n prefix K/V blocks) is sized for max_batch items
 * and allocated in vlad_batch_new; vlad_batch_infer allocates nothing (after the first call
 * at a given n: OpenBLAS warms up then). Threads as for a runstate (engine.h: the pool splits
 * the packed GEMMs of >= 4 MFLOP, OpenBLAS the rest; helpers take the caller's nice). A batch
 * is used by one thread at a time; the model may be shared with runstates and other batches. */
#ifndef VLAD_POLICY_BATCH_H
#define VLAD_POLICY_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "model.h"

typedef struct vlad_batch vlad_batch;

/* One request. The pointers need only stay valid for the vlad_batch_infer call. */
typedef struct vlad_batch_item {
    const uint8_t *const *images; /* n_cameras images, image_size^2*3 RGB HWC each */
    const char *prompt; size_t prompt_len;  /* raw bytes, first max_prompt_tokens used */
    const float *state;            /* state_dim, raw units */
    const float *noise;            /* chunk_size*action_dim standard normal, or NULL: drawn from seed */
    uint64_t seed;
} vlad_batch_item;

/* Timing of the last vlad_batch_infer, milliseconds (CLOCK_MONOTONIC), for the whole batch:
 * vision_ms the image encoder over all items' cameras, prefix_ms vision + backbone, flow_ms
 * the state token and every flow step, total_ms the whole call (input checks and the noise
 * included); n the batch size of that call (0 before the first). */
typedef struct vlad_batch_timing { double vision_ms, prefix_ms, flow_ms, total_ms; int n; } vlad_batch_timing;

/* max_batch >= 1 items per call; opts as vlad_runstate_new (threads; max_streams may be 0:
 * the batch runs no language streams, n_prefix and lang_ignore_end are ignored, profile is
 * accepted and unused). `m` must outlive the batch. NULL on failure with err filled
 * (VLAD_EINVAL: max_batch < 1 or too large for int sizes, bad opts; VLAD_ENOMEM). Sets the
 * process-global OpenBLAS thread count to opts.n_threads, as vlad_runstate_new does. Memory
 * grows linearly in max_batch (vlad_batch_bytes: ~6 MB at 8 for the default model, ~350 MB
 * at 8 for the SmolVLA-scale config). */
vlad_batch *vlad_batch_new(const vlad_model *m, int max_batch, const vlad_runstate_opts *opts, vlad_err *err);
void vlad_batch_free(vlad_batch *b); /* NULL fine */
/* The max_batch the batch was made with (0 for NULL). */
int vlad_batch_max(const vlad_batch *b);

/* Run n (1..max_batch) independent inferences (prefix + all flow steps) as one batch:
 * actions out is n*chunk_size*action_dim floats, item i's chunk at i*chunk_size*action_dim.
 * Each item's result equals vlad_encode_prefix + vlad_sample_actions on a fresh runstate
 * with the same inputs to 1e-5 (abs, raw units). No allocation after the first call at a
 * given n (warm-up). Returns VLAD_OK or a VLAD_E* code with err filled (bad n, NULL inputs). */
/* Errors (nothing is computed and `actions` is untouched): VLAD_EINVAL for b, items or
 * actions NULL, n outside 1..max_batch, an item's images / images[c] / state NULL, or a
 * non-finite state or noise value (the message names the item and the index). */
int vlad_batch_infer(vlad_batch *b, int n, const vlad_batch_item *items, float *actions, vlad_err *err);

const vlad_batch_timing *vlad_batch_timing_get(const vlad_batch *b); /* of the last call */
/* Bytes of activations, scratch and prefix K/V held by the batch (all allocated in
 * vlad_batch_new). */
size_t vlad_batch_bytes(const vlad_batch *b);

#endif
