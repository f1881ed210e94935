/* kvcache.h — the unified KV cache of DESIGN.md.
 *
 * Prefix blocks: one per observation frame, holding every backbone layer's post-RoPE K and V
 * of the frame's prefix ([prefix_max, n_heads*head_dim] each). A prefix block is written once
 * (vlad_encode_prefix) and then read by several readers: the action expert's flow steps and
 * any number of language streams. Blocks are reference-counted, so a frame's prefix stays
 * alive while language streams started on it are still decoding, even after newer frames
 * were encoded into other blocks. The pool has a fixed number of blocks allocated up front.
 *
 * Stream blocks: one per language stream slot, holding the stream's own K and V (its
 * [SEP, question, SEP] tokens and the generated tokens fed back), appended after the shared
 * prefix of the frame the stream started on ([stream_max, n_heads*head_dim] per layer).
 *
 * Nothing here allocates after vlad_kvcache_new. Not thread-safe: one runstate owns it. */
#ifndef VLAD_POLICY_KVCACHE_H
#define VLAD_POLICY_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

typedef struct vlad_prefix_block {
    int refs;        /* 0 = free */
    int len;         /* S: tokens in this frame's prefix */
    uint64_t frame;  /* sequence number of the frame (1, 2, ...) */
    float *kv;       /* [depth][2][prefix_max][kv_dim] */
} vlad_prefix_block;

typedef struct vlad_stream_block {
    int prefix;      /* prefix block the stream reads, -1 when the slot is free */
    int len;         /* rows of the stream's own KV in use */
    float *kv;       /* [depth][2][stream_max][kv_dim] */
} vlad_stream_block;

typedef struct vlad_kvcache {
    int depth, kv_dim, prefix_max, stream_max;
    int n_prefix, n_streams;
    vlad_prefix_block *prefix;
    vlad_stream_block *streams;
    uint64_t frames;  /* frames encoded so far */
    size_t bytes;     /* memory held */
} vlad_kvcache;

/* A cache with n_prefix prefix blocks (>= 1) and n_streams stream slots (>= 0). */
vlad_kvcache *vlad_kvcache_new(const vlad_config *c, int n_prefix, int n_streams, vlad_err *err);
/* NULL is fine. */
void vlad_kvcache_free(vlad_kvcache *kv);

/* Take a free prefix block (refs becomes 1, frame number assigned); -1 if none is free. */
int vlad_kv_prefix_acquire(vlad_kvcache *kv);
void vlad_kv_prefix_ref(vlad_kvcache *kv, int block);
/* Drop one reference; the block is free again at 0. */
void vlad_kv_prefix_unref(vlad_kvcache *kv, int block);

/* K or V rows of layer L of a prefix block / of a stream slot (row stride kv_dim). */
static inline float *vlad_kv_prefix_k(const vlad_kvcache *kv, int block, int L) {
    return kv->prefix[block].kv + (size_t)(2 * L) * kv->prefix_max * kv->kv_dim;
}
static inline float *vlad_kv_prefix_v(const vlad_kvcache *kv, int block, int L) {
    return kv->prefix[block].kv + (size_t)(2 * L + 1) * kv->prefix_max * kv->kv_dim;
}
static inline float *vlad_kv_stream_k(const vlad_kvcache *kv, int s, int L) {
    return kv->streams[s].kv + (size_t)(2 * L) * kv->stream_max * kv->kv_dim;
}
static inline float *vlad_kv_stream_v(const vlad_kvcache *kv, int s, int L) {
    return kv->streams[s].kv + (size_t)(2 * L + 1) * kv->stream_max * kv->kv_dim;
}

#endif
