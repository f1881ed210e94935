#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vlad_config vlad_config_default(void) {
    vlad_config c = {
        .image_size = 64, .patch_size = 16, .n_cameras = 1,
        .vit_width = 128, .vit_depth = 2, .vit_heads = 4, .vit_mlp = 256,
        .width = 128, .depth = 4, .n_heads = 4, .head_dim = 32, .mlp = 384,
        .expert_width = 96, .expert_mlp = 256,
        .vocab_size = VLAD_VOCAB_SIZE,
        .max_prompt_tokens = 32, .max_text_tokens = 48,
        .state_dim = 4, .action_dim = 4, .chunk_size = 26, .flow_steps = 5,
        .rope_theta = 10000.0, .norm_eps = 1e-6, .frame_stack = 1,
    };
    return c;
}

vlad_config vlad_config_smolvla(void) {
    vlad_config c = {
        .image_size = 128, .patch_size = 16, .n_cameras = 3,
        .vit_width = 768, .vit_depth = 12, .vit_heads = 12, .vit_mlp = 3072,
        .width = 960, .depth = 16, .n_heads = 15, .head_dim = 64, .mlp = 2560,
        .expert_width = 720, .expert_mlp = 2048,
        .vocab_size = VLAD_VOCAB_SIZE,
        .max_prompt_tokens = 48, .max_text_tokens = 64,
        .state_dim = 6, .action_dim = 6, .chunk_size = 50, .flow_steps = 10,
        .rope_theta = 10000.0, .norm_eps = 1e-6, .frame_stack = 1,
    };
    return c;
}

int vlad_config_preset(const char *name, vlad_config *out, vlad_err *err) {
    if (!name)
        return vlad_err_set(err, VLAD_EINVAL, "config preset: no name");
    if (!strcmp(name, "default") || !strcmp(name, "tiny")) {
        *out = vlad_config_default();
        return 0;
    }
    if (!strcmp(name, "smolvla")) {
        *out = vlad_config_smolvla();
        return 0;
    }
    return vlad_err_set(err, VLAD_EINVAL, "config preset: unknown preset '%s' (default, smolvla)",
                        name);
}

/* Field table: name, offset, min, max, and for an optional field its default (0: required).
 * An optional field at its default is not written by vlad_config_to_json, so checkpoints
 * that do not use it read the same in older builds. */
typedef struct {
    const char *name;
    size_t off;
    int lo, hi, dflt;
} int_field;

#define F(n, lo, hi) {#n, offsetof(vlad_config, n), lo, hi, 0}
#define OPT(n, lo, hi, d) {#n, offsetof(vlad_config, n), lo, hi, d}
static const int_field k_int_fields[] = {
    F(image_size, 1, 4096),     F(patch_size, 1, 4096),       F(n_cameras, 1, 16),
    F(vit_width, 1, 16384),     F(vit_depth, 1, 256),         F(vit_heads, 1, 1024),
    F(vit_mlp, 1, 65536),       F(width, 1, 16384),           F(depth, 1, 256),
    F(n_heads, 1, 1024),        F(head_dim, 2, 1024),         F(mlp, 1, 65536),
    F(expert_width, 2, 16384),  F(expert_mlp, 1, 65536),      F(vocab_size, 260, 260),
    F(max_prompt_tokens, 0, 4096), F(max_text_tokens, 1, 4096), F(state_dim, 1, 4096),
    F(action_dim, 1, 4096),     F(chunk_size, 1, 4096),       F(flow_steps, 1, 1000),
    OPT(frame_stack, 1, 16, 1),
};
#undef F
#undef OPT
#define N_INT_FIELDS (sizeof k_int_fields / sizeof k_int_fields[0])

static int *field_ptr(vlad_config *c, const int_field *f) { return (int *)((char *)c + f->off); }
static int field_get(const vlad_config *c, const int_field *f) {
    return *(const int *)((const char *)c + f->off);
}

int vlad_config_validate(const vlad_config *c, vlad_err *err) {
    for (size_t i = 0; i < N_INT_FIELDS; i++) {
        int v = field_get(c, &k_int_fields[i]);
        if (v < k_int_fields[i].lo || v > k_int_fields[i].hi)
            return vlad_err_set(err, VLAD_ERANGE, "config field '%s' = %d out of range [%d, %d]",
                                k_int_fields[i].name, v, k_int_fields[i].lo, k_int_fields[i].hi);
    }
    if (c->image_size % c->patch_size != 0)
        return vlad_err_set(err, VLAD_ERANGE,
                            "config field 'patch_size' = %d does not divide image_size %d",
                            c->patch_size, c->image_size);
    if (c->n_cameras % c->frame_stack != 0)
        return vlad_err_set(err, VLAD_ERANGE,
                            "config field 'frame_stack' = %d does not divide n_cameras %d",
                            c->frame_stack, c->n_cameras);
    if (c->vit_width % c->vit_heads != 0)
        return vlad_err_set(err, VLAD_ERANGE,
                            "config field 'vit_heads' = %d does not divide vit_width %d",
                            c->vit_heads, c->vit_width);
    if (c->head_dim % 2 != 0)
        return vlad_err_set(err, VLAD_ERANGE, "config field 'head_dim' = %d must be even",
                            c->head_dim);
    if (c->expert_width % 2 != 0)
        return vlad_err_set(err, VLAD_ERANGE, "config field 'expert_width' = %d must be even",
                            c->expert_width);
    if ((long)c->n_heads * c->head_dim > 65536)
        return vlad_err_set(err, VLAD_ERANGE, "config fields 'n_heads'*'head_dim' = %ld too large",
                            (long)c->n_heads * c->head_dim);
    long np = (long)(c->image_size / c->patch_size) * (c->image_size / c->patch_size);
    if (np * c->n_cameras > 65536)
        return vlad_err_set(err, VLAD_ERANGE,
                            "config fields 'image_size'/'patch_size'/'n_cameras': %ld image tokens "
                            "(max 65536)", np * c->n_cameras);
    if (3L * c->frame_stack * c->patch_size * c->patch_size > 1L << 20)
        return vlad_err_set(err, VLAD_ERANGE,
                            "config fields 'patch_size'/'frame_stack' = %d/%d: patch tokens of "
                            "%ld values (max 2^20)", c->patch_size, c->frame_stack,
                            3L * c->frame_stack * c->patch_size * c->patch_size);
    if (!isfinite(c->rope_theta) || c->rope_theta <= 1.0 || c->rope_theta > 1e9)
        return vlad_err_set(err, VLAD_ERANGE, "config field 'rope_theta' = %g out of range (1, 1e9]",
                            c->rope_theta);
    if (!isfinite(c->norm_eps) || c->norm_eps <= 0.0 || c->norm_eps > 1e-1)
        return vlad_err_set(err, VLAD_ERANGE, "config field 'norm_eps' = %g out of range (0, 0.1]",
                            c->norm_eps);
    return 0;
}

int vlad_config_from_json(const char *json, vlad_config *out, vlad_err *err) {
    vlad_config c;
    memset(&c, 0, sizeof c);
    c.rope_theta = 10000.0;
    c.norm_eps = 1e-6;
    for (size_t i = 0; i < N_INT_FIELDS; i++)
        if (k_int_fields[i].dflt)
            *field_ptr(&c, &k_int_fields[i]) = k_int_fields[i].dflt;
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vlad_err_set(err, VLAD_EPARSE, "vlad.config: not a JSON object");
    }
    int rc = 0;
    unsigned seen = 0; /* bit per int field */
    for (cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        size_t i;
        for (i = 0; i < N_INT_FIELDS; i++)
            if (!strcmp(k, k_int_fields[i].name))
                break;
        if (i < N_INT_FIELDS) {
            double d = it->valuedouble;
            if (!cJSON_IsNumber(it) || d != floor(d) || !isfinite(d)) {
                rc = vlad_err_set(err, VLAD_EPARSE, "vlad.config: field '%s' is not an integer", k);
                break;
            }
            if (d < k_int_fields[i].lo || d > k_int_fields[i].hi) {
                rc = vlad_err_set(err, VLAD_ERANGE,
                                  "config field '%s' = %g out of range [%d, %d]", k, d,
                                  k_int_fields[i].lo, k_int_fields[i].hi);
                break;
            }
            *field_ptr(&c, &k_int_fields[i]) = (int)d;
            seen |= 1u << i;
        } else if (!strcmp(k, "rope_theta") || !strcmp(k, "norm_eps")) {
            if (!cJSON_IsNumber(it)) {
                rc = vlad_err_set(err, VLAD_EPARSE, "vlad.config: field '%s' is not a number", k);
                break;
            }
            if (!strcmp(k, "rope_theta"))
                c.rope_theta = it->valuedouble;
            else
                c.norm_eps = it->valuedouble;
        } else {
            rc = vlad_err_set(err, VLAD_EPARSE, "vlad.config: unknown field '%s'", k);
            break;
        }
    }
    cJSON_Delete(root);
    if (rc)
        return rc;
    for (size_t i = 0; i < N_INT_FIELDS; i++)
        if (!(seen & (1u << i)) && !k_int_fields[i].dflt)
            return vlad_err_set(err, VLAD_EPARSE, "vlad.config: missing field '%s'",
                                k_int_fields[i].name);
    rc = vlad_config_validate(&c, err);
    if (rc)
        return rc;
    *out = c;
    return 0;
}

char *vlad_config_to_json(const vlad_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    for (size_t i = 0; i < N_INT_FIELDS; i++) {
        int v = field_get(c, &k_int_fields[i]);
        if (!k_int_fields[i].dflt || v != k_int_fields[i].dflt)
            cJSON_AddNumberToObject(o, k_int_fields[i].name, v);
    }
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int64_t vlad_config_param_count(const vlad_config *c) {
    int64_t vw = c->vit_width, w = c->width, e = c->expert_width, kv = vlad_cfg_kv_dim(c);
    int64_t pp = vlad_cfg_patch_dim(c);
    int64_t n = 0;
    n += vw * pp + vw + (int64_t)vlad_cfg_n_patches(c) * vw;
    n += c->vit_depth * (2 * vw + 4 * (vw * vw + vw) + (c->vit_mlp * vw + c->vit_mlp) +
                         (vw * c->vit_mlp + vw));
    n += vw + w * vw + w;
    n += (int64_t)c->vocab_size * w;
    n += c->depth * (2 * w + 3 * kv * w + w * kv + 2 * (int64_t)c->mlp * w) + w;
    n += e * c->state_dim + e + e * c->action_dim + e + e * 2 * e + e + e * e + e;
    n += c->depth * (2 * e + 3 * kv * e + e * kv + 2 * (int64_t)c->expert_mlp * e) + e;
    n += (int64_t)c->action_dim * e + c->action_dim;
    n += 2 * c->state_dim + 2 * c->action_dim;
    return n;
}
