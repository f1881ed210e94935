/* engine.h — the VLA inference engine (MODEL.md "Forward pass") over a loaded model.
 *
 * A vlad_runstate holds every activation buffer, sized from the config and allocated once in
 * vlad_runstate_new, plus the unified KV cache (kvcache.h). After the first call of each
 * kind (warm-up: OpenBLAS starts its threads then) no function below allocates heap memory.
 *
 * Flow per observation frame:
 *   vlad_encode_prefix(rs, images, prompt)     vision + backbone over the prefix; fills a
 *                                              prefix KV block, which becomes "current"
 *   vlad_sample_actions(rs, state, noise, ..)  action expert flow loop reading the current
 *                                              prefix KV (any number of times per frame)
 *   vlad_lang_begin(rs, slot, question)        a language stream on the current frame
 *   vlad_lang_step(rs, k)                      k greedy tokens for every active stream
 *                                              (batched), each reading its own frame's prefix
 *   vlad_lang_end(rs, slot)                    frees the slot (and the frame's prefix block
 *                                              when nothing else reads it)
 *
 * Several independent inferences (prefix + flow) with their rows stacked into the same
 * GEMMs, for a server: batch.h.
 *
 * Threads: with opts.n_threads > 1 the runstate's pool (pool.h) splits the GEMMs on packed
 * weights (of >= 4 MFLOP) and attention, and OpenBLAS runs what remains on it with n_threads
 * threads. openblas_set_num_threads is process-global; vlad_runstate_new sets it,
 * vlad_runstate_set_threads changes it. Every helper thread (the pool's and OpenBLAS's) is
 * given the nice value of the thread that calls the engine (per call, when it changes). A
 * runstate is used by one thread at a time; the model may be shared. */
#ifndef VLAD_POLICY_ENGINE_H
#define VLAD_POLICY_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "kvcache.h"
#include "model.h"

typedef struct vlad_runstate_opts {
    int n_threads;      /* OpenBLAS threads, >= 1 (0 means 1) */
    int max_streams;    /* language stream slots, 0..64 */
    int n_prefix;       /* prefix KV blocks; 0 = max_streams + 2 (enough for every stream to
                           sit on a different frame while a new frame is encoded) */
    int lang_ignore_end; /* benchmarks: a non-byte token does not end a stream (it is fed
                            back, not added to the text); streams run to max_text_tokens */
    int profile;        /* per-category timers (vlad_timing.*_cat_ms); off by default: they
                           cost two clock reads per kernel call. vlad_runstate_set_profile */
} vlad_runstate_opts;

/* Categories of the per-phase breakdown (opts.profile). */
enum {
    VLAD_TCAT_GEMM,   /* vlad_matmul: the Linear layers (cblas_sgemm / packed / BF16 GEMV) */
    VLAD_TCAT_ATTN,   /* vlad_attention: scores, softmax, weighted sum */
    VLAD_TCAT_ELEM,   /* rmsnorm, GELU, SiLU, RoPE, residual adds, time embedding */
    VLAD_TCAT_COPY,   /* patch extraction, embedding rows, K/V appends, BF16 -> F32 tiles */
    VLAD_TCAT_N
};

/* Timing of the last call of each kind, milliseconds (CLOCK_MONOTONIC). */
typedef struct vlad_timing {
    double vision_ms;     /* image encoder, all cameras */
    double backbone_ms;   /* backbone layers over the prefix */
    double prefix_ms;     /* whole vlad_encode_prefix */
    double flow_step_ms;  /* mean of the flow steps of the last vlad_sample_actions */
    double sample_ms;     /* whole vlad_sample_actions */
    double lang_begin_ms; /* last vlad_lang_begin (question prefill) */
    double lang_step_ms;  /* last vlad_lang_step */
    int lang_step_tokens; /* tokens decoded (summed over streams) by the last vlad_lang_step */
    /* With opts.profile: the same phases split by VLAD_TCAT_* (ms; the rest of the phase
     * is bookkeeping). Flow step: mean per step; lang step: the whole last vlad_lang_step. */
    double prefix_cat_ms[VLAD_TCAT_N];
    double flow_step_cat_ms[VLAD_TCAT_N];
    double lang_step_cat_ms[VLAD_TCAT_N];
} vlad_timing;

typedef struct vlad_runstate vlad_runstate;

/* Allocate everything for `m` (which must outlive the runstate). NULL on failure. */
vlad_runstate *vlad_runstate_new(const vlad_model *m, const vlad_runstate_opts *opts,
                                 vlad_err *err);
/* NULL is fine. */
void vlad_runstate_free(vlad_runstate *rs);
/* Bytes of activations + KV cache held by the runstate. */
size_t vlad_runstate_bytes(const vlad_runstate *rs);
/* Change the OpenBLAS thread count (process-global). */
void vlad_runstate_set_threads(vlad_runstate *rs, int n_threads);
/* Turn the per-category timers on or off (opts.profile). */
void vlad_runstate_set_profile(vlad_runstate *rs, int on);

/* Encode a frame: images[c] is camera c, image_size x image_size RGB uint8, row-major HWC;
 * prompt is raw bytes (the first max_prompt_tokens are used). Writes a new prefix KV block
 * and makes it current. Returns the block index (>= 0) or a VLAD_E* code (VLAD_EAGAIN if
 * every block is held by language streams). */
int vlad_encode_prefix(vlad_runstate *rs, const uint8_t *const *images, const char *prompt,
                       size_t prompt_len, vlad_err *err);

/* Length S of the current prefix, -1 if none. Its block: vlad_runstate_prefix_block. */
int vlad_runstate_prefix_len(const vlad_runstate *rs);
int vlad_runstate_prefix_block(const vlad_runstate *rs);
const vlad_kvcache *vlad_runstate_kv(const vlad_runstate *rs);

/* Sample an action chunk on the current prefix: state[state_dim] (raw units), noise
 * [chunk_size*action_dim] standard normal or NULL to draw it from `seed`;
 * actions[chunk_size*action_dim] out (raw units). VLAD_ESTATE if no prefix was encoded. */
int vlad_sample_actions(vlad_runstate *rs, const float *state, const float *noise, uint64_t seed,
                        float *actions, vlad_err *err);

/* Start language stream `slot` on the current frame with a question (raw bytes, the first
 * max_prompt_tokens used; empty = running commentary). Prefills [SEP, question, SEP]. */
int vlad_lang_begin(vlad_runstate *rs, int slot, const char *question, size_t qlen,
                    vlad_err *err);
/* Decode up to k tokens for every active, unfinished stream, batched. Returns the number of
 * streams still unfinished (>= 0) or a VLAD_E* code. */
int vlad_lang_step(vlad_runstate *rs, int k, vlad_err *err);

typedef struct vlad_lang_info {
    int active;          /* slot in use */
    int done;            /* finished: end token, or max_text_tokens generated */
    int end_token;       /* the non-byte token that ended it, -1 if none (yet / cap) */
    int n_new;           /* bytes added by the last vlad_lang_step */
    int len;             /* bytes so far */
    const uint8_t *text; /* the bytes (not NUL-terminated), valid until vlad_lang_end */
    int prefix_block;    /* the frame's prefix block the stream reads */
} vlad_lang_info;
int vlad_lang_get(const vlad_runstate *rs, int slot, vlad_lang_info *out);
/* Release the slot (no-op when free). */
void vlad_lang_end(vlad_runstate *rs, int slot);

/* Convenience: a whole greedy answer on the current frame in the first free slot. Writes at
 * most cap-1 bytes plus a NUL to out; *len (optional) gets the byte count. */
int vlad_lang_generate(vlad_runstate *rs, const char *question, size_t qlen, char *out,
                       size_t cap, size_t *len, vlad_err *err);

const vlad_timing *vlad_runstate_timing(const vlad_runstate *rs);

/* FLOPs (multiply-adds x2) of the matrix products of one prefix pass of length S and of one
 * flow step, for the benchmark. */
double vlad_flops_prefix(const vlad_config *c, int S);
double vlad_flops_flow_step(const vlad_config *c, int S);

#endif
