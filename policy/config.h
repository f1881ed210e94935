/* config.h — the model configuration of MODEL.md ("vlad.config" in a checkpoint).
 *
 * Every size of the model comes from here; nothing else in the engine is hard-coded. */
#ifndef VLAD_POLICY_CONFIG_H
#define VLAD_POLICY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Vocabulary of the byte tokenizer (MODEL.md). */
enum {
    VLAD_VOCAB_SIZE = 260,
    VLAD_TOK_BOS = 256,
    VLAD_TOK_EOS = 257,
    VLAD_TOK_SEP = 258,
    VLAD_TOK_PAD = 259,
};

typedef struct vlad_config {
    int image_size, patch_size, n_cameras;
    int vit_width, vit_depth, vit_heads, vit_mlp;
    int width, depth, n_heads, head_dim, mlp;
    int expert_width, expert_mlp;
    int vocab_size;
    int max_prompt_tokens, max_text_tokens;
    int state_dim, action_dim, chunk_size, flow_steps;
    double rope_theta, norm_eps;
    int frame_stack; /* image inputs fused into one token set (MODEL.md 6.1); optional, 1 */
} vlad_config;

/* Derived sizes. */
static inline int vlad_cfg_n_patches(const vlad_config *c) {
    int g = c->image_size / c->patch_size;
    return g * g;
}
/* Token sets of image inputs: n_cameras / frame_stack (validate checks that it divides). */
static inline int vlad_cfg_n_groups(const vlad_config *c) { return c->n_cameras / c->frame_stack; }
/* Prefix rows of the images: one token set of n_patches rows per group. */
static inline int vlad_cfg_image_tokens(const vlad_config *c) {
    return vlad_cfg_n_groups(c) * vlad_cfg_n_patches(c);
}
/* Values per patch token: 3*patch_size^2 for each image of its group. */
static inline int vlad_cfg_patch_dim(const vlad_config *c) {
    return 3 * c->frame_stack * c->patch_size * c->patch_size;
}
/* Width of one K or V row: n_heads*head_dim. */
static inline int vlad_cfg_kv_dim(const vlad_config *c) { return c->n_heads * c->head_dim; }
/* Longest prefix: all image tokens + BOS + max_prompt_tokens. */
static inline int vlad_cfg_prefix_max(const vlad_config *c) {
    return vlad_cfg_image_tokens(c) + 1 + c->max_prompt_tokens;
}
/* Rows of a language stream's own KV blocks: [SEP, question (<= max_prompt_tokens), SEP]
 * followed by the generated tokens that are fed back (< max_text_tokens). */
static inline int vlad_cfg_stream_max(const vlad_config *c) {
    return c->max_prompt_tokens + 2 + c->max_text_tokens;
}

/* The default tiny config (the model the daemon ships; see policy/README.md). */
vlad_config vlad_config_default(void);
/* The SmolVLA-scale config used by the benchmark (random weights). */
vlad_config vlad_config_smolvla(void);
/* Preset by name: "default"/"tiny" or "smolvla". Returns 0 or VLAD_EINVAL. */
int vlad_config_preset(const char *name, vlad_config *out, vlad_err *err);

/* Check every field is in range (message names the field). Returns 0 or VLAD_ERANGE. */
int vlad_config_validate(const vlad_config *c, vlad_err *err);

/* Parse the "vlad.config" JSON text: every field is required except rope_theta and
 * norm_eps (defaults 10000, 1e-6); unknown fields are rejected. Validates. */
int vlad_config_from_json(const char *json, vlad_config *out, vlad_err *err);

/* JSON text of the config (malloc'd, caller frees), NULL on allocation failure. */
char *vlad_config_to_json(const vlad_config *c);

/* Number of parameters of a model of this config. */
int64_t vlad_config_param_count(const vlad_config *c);

#endif
