/* model.h — a loaded checkpoint: Config + Weights (llama2.c style).
 *
 * Weights point into the mmapped .safetensors file. Matrices keep their file dtype (F32 or
 * BF16; BF16 ones are converted tile by tile inside vlad_matmul); vectors (norms, biases,
 * embeddings, normalisation stats) are always F32 (copied when the file has BF16 or the
 * data is misaligned). A model is read-only after load and may be shared by several
 * runstates (threads). */
#ifndef VLAD_POLICY_MODEL_H
#define VLAD_POLICY_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "safetensors.h"

/* A Linear weight [rows=out, cols=in], row-major, F32 or BF16. `packed`, when set
 * (vlad_model_pack_expert), is an F32 copy in the layout of vlad_matmul's own kernel
 * (kernels.h: panels of 32 outputs, [ceil(rows/32)][cols][32]); `data` stays valid.
 * Quantised (MODEL.md 1.1, quant.h): qbits 8 or 4, dtype VLAD_DT_U8, data and packed NULL,
 * qcodes / qscale in quant.h's panel layout (groups of qgroup inputs), qinv = 1/awq or NULL. */
typedef struct vlad_mat {
    const void *data;
    vlad_dtype dtype;
    int rows, cols;
    const float *packed;
    int qbits;              /* 0: not quantised */
    int qgroup;
    const uint8_t *qcodes;
    const float *qscale;
    const float *qinv;
} vlad_mat;

typedef struct vlad_vit_block {
    const float *norm1, *norm2;          /* [vit_width] */
    vlad_mat q, k, v, o;                 /* [vit_width, vit_width] */
    const float *qb, *kb, *vb, *ob;      /* [vit_width] */
    vlad_mat fc1;                        /* [vit_mlp, vit_width] */
    const float *fc1b;                   /* [vit_mlp] */
    vlad_mat fc2;                        /* [vit_width, vit_mlp] */
    const float *fc2b;                   /* [vit_width] */
} vlad_vit_block;

/* Backbone or expert layer (no biases). d = width or expert_width, kv = n_heads*head_dim. */
typedef struct vlad_tlayer {
    const float *attn_norm, *mlp_norm;   /* [d] */
    vlad_mat q, k, v;                    /* [kv, d] */
    vlad_mat o;                          /* [d, kv] */
    vlad_mat fc1;                        /* [mlp, d] */
    vlad_mat fc2;                        /* [d, mlp] */
} vlad_tlayer;

typedef struct vlad_weights {
    vlad_mat patch_embed; const float *patch_embed_b;   /* [vit_width, patch_dim], [vit_width] */
    const float *pos_embed;                             /* [n_patches, vit_width] */
    vlad_vit_block *vit;                                /* [vit_depth] */
    const float *vit_norm;                              /* [vit_width] */
    vlad_mat vit_proj; const float *vit_proj_b;         /* [width, vit_width], [width] */
    const float *embed;                                 /* [vocab, width] (tied LM head);
                                                           NULL when quantised: rows through
                                                           vlad_mat_row(&embed_mat) (quant.h) */
    vlad_mat embed_mat;                                 /* the same, as a matrix */
    vlad_tlayer *vlm;                                   /* [depth] */
    const float *vlm_norm;                              /* [width] */
    vlad_mat state_proj; const float *state_proj_b;     /* [e, state_dim] */
    vlad_mat action_in; const float *action_in_b;       /* [e, action_dim] */
    vlad_mat time_in; const float *time_in_b;           /* [e, 2e] */
    vlad_mat time_out; const float *time_out_b;         /* [e, e] */
    vlad_tlayer *exp;                                   /* [depth] */
    const float *exp_norm;                              /* [e] */
    vlad_mat action_out; const float *action_out_b;     /* [action_dim, e] */
    const float *state_mean, *state_std;                /* [state_dim] */
    const float *action_mean, *action_std;              /* [action_dim] */
} vlad_weights;

typedef struct vlad_model {
    vlad_config cfg;
    vlad_weights w;
    vlad_st_file *file;
    vlad_dtype matrix_dtype;  /* dtype of the big matrices (F32 if any F32, for `info`) */
    size_t file_bytes;        /* size of the checkpoint */
    size_t owned_bytes;       /* bytes copied/converted at load */
    /* quantised matrices (MODEL.md 1.1): counts, and the groups seen */
    int n_q8, n_q4, n_awq, n_plain_mats;
    int qgroup_min, qgroup_max;
    const char *quant_meta;   /* __metadata__["vlad.quant"] or NULL (informational) */
    /* private */
    void **owned;
    int n_owned, cap_owned;
} vlad_model;

/* Load and validate a checkpoint (MODEL.md "Checkpoint", quantised matrices: 1.1; their
 * codes are repacked (quant.h) and the mapped pages released). Every failure names the file and
 * the tensor or config field. Every tensor is read once: a NaN or +-Inf anywhere is refused
 * ("PATH: weight tensor 'vlm.norm.weight' element 17 is NaN", flat row-major index), as is a
 * non-positive normalisation std. The path must be a regular file (a FIFO or device is
 * refused without blocking: vlad_st_open). *out is set only on success; free with
 * vlad_model_free. */
int vlad_model_load(const char *path, vlad_model **out, vlad_err *err);
/* NULL is fine. */
void vlad_model_free(vlad_model *m);

/* Replace the action expert's BF16 matrices (the ones every flow step re-reads) by F32
 * copies owned by the model: more memory (4 bytes/param for the expert), no per-step BF16
 * conversion. Where the packed kernel runs (kernels.h) the copies are packed panels
 * (vlad_model_pack_expert) instead of row-major F32. No-op for F32 checkpoints. Call before
 * creating runstates. */
int vlad_model_widen_expert(vlad_model *m, vlad_err *err);
/* (Quantised matrices, MODEL.md 1.1, are repacked at load into their own panel layout and
 * left alone by the widen and pack functions. In a model with quantised matrices, the BF16
 * matrices that would be packed become BF16 panels (quant.h, qbits 16) instead of F32 ones:
 * a quantised checkpoint is never widened to F32.)
 * The same for every BF16 matrix of the model (packed: vlad_model_pack_all). The
 * checkpoint's BF16 pages are released from the process (madvise) as they are converted, so
 * peak RSS stays about the F32 size. */
int vlad_model_widen_all(vlad_model *m, vlad_err *err);

/* Pack the action expert's matrices (the ones every flow step re-reads, at few rows) once
 * into the panel layout of the engine's own GEMM kernel (kernels.h), F32. The source pages
 * are released (madvise) when they lie in the mapping, so memory stays about the F32 size.
 * No-op when the CPU has neither AVX-512F nor AVX2+FMA, or VLAD_PACK=0 in the environment.
 * Called through vlad_model_pack_all by vlad_model_load for F32 checkpoints, and by
 * vlad_model_widen_expert / _all for BF16 ones (instead of a row-major F32 copy). */
int vlad_model_pack_expert(vlad_model *m, vlad_err *err);
/* The expert and, when vlad_pack_scope() is 2 (the default), the vision encoder and the
 * backbone too. vlad_model_load calls it for F32 checkpoints, vlad_model_widen_all for BF16
 * ones. */
int vlad_model_pack_all(vlad_model *m, vlad_err *err);

/* Number of parameters actually stored. */
int64_t vlad_model_param_count(const vlad_model *m);

/* Write a checkpoint of config `c` with random weights (deterministic in `seed`), matrices in
 * `dtype`, to `path`. Init: Linear ~ N(0, 1/in), biases N(0, 0.02^2), norms 1 + N(0, 0.1^2),
 * embeddings N(0,1), pos_embed N(0, 0.02^2), stats mean N(0, 0.5^2) std 0.5 + U(0,1). */
int vlad_model_write_random(const vlad_config *c, vlad_dtype dtype, uint64_t seed,
                            const char *path, vlad_err *err);

/* The vision input of one observation (MODEL.md 6.1): images are the n_cameras RGB8 HWC
 * image inputs (image_size square). Writes vlad_cfg_image_tokens(c) rows of
 * vlad_cfg_patch_dim(c) floats to dst: token set t (images t*F .. t*F+F-1, F = frame_stack)
 * at rows t*n_patches.., patches in row-major order; a row holds its patch of each image of
 * the set in input order, each flattened (row, column, channel), values v/127.5 - 1. The
 * engine and the batched engine both call it. */
void vlad_patchify(const vlad_config *c, const uint8_t *const *images, float *dst);

#endif
