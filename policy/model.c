#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"
#include "quant.h"
#include "rng.h"

typedef enum { K_MAT, K_NORM, K_BIAS, K_EMBED, K_POS, K_MEAN, K_STD } tkind;

/* dst: vlad_mat* for K_MAT, const float** otherwise. */
typedef int (*visit_fn)(void *ctx, const char *name, int ndim, const int64_t *shape, tkind k,
                        void *dst);

typedef struct {
    visit_fn fn;
    void *ctx;
    char name[160];
} visitor;

static int v1(visitor *v, tkind k, void *dst, int64_t d0, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int v1(visitor *v, tkind k, void *dst, int64_t d0, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->name, sizeof v->name, fmt, ap);
    va_end(ap);
    int64_t shape[1] = {d0};
    return v->fn(v->ctx, v->name, 1, shape, k, dst);
}
static int v2(visitor *v, tkind k, void *dst, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int v2(visitor *v, tkind k, void *dst, int64_t d0, int64_t d1, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->name, sizeof v->name, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {d0, d1};
    return v->fn(v->ctx, v->name, 2, shape, k, dst);
}

#define TRY(x)            \
    do {                  \
        int rc_ = (x);    \
        if (rc_)          \
            return rc_;   \
    } while (0)

static int visit_tlayer(visitor *v, const char *pre, int L, vlad_tlayer *t, int d, int kv,
                        int mlp) {
    TRY(v1(v, K_NORM, &t->attn_norm, d, "%s.layers.%d.attn_norm.weight", pre, L));
    TRY(v1(v, K_NORM, &t->mlp_norm, d, "%s.layers.%d.mlp_norm.weight", pre, L));
    TRY(v2(v, K_MAT, &t->q, kv, d, "%s.layers.%d.attn.q.weight", pre, L));
    TRY(v2(v, K_MAT, &t->k, kv, d, "%s.layers.%d.attn.k.weight", pre, L));
    TRY(v2(v, K_MAT, &t->v, kv, d, "%s.layers.%d.attn.v.weight", pre, L));
    TRY(v2(v, K_MAT, &t->o, d, kv, "%s.layers.%d.attn.o.weight", pre, L));
    TRY(v2(v, K_MAT, &t->fc1, mlp, d, "%s.layers.%d.mlp.fc1.weight", pre, L));
    TRY(v2(v, K_MAT, &t->fc2, d, mlp, "%s.layers.%d.mlp.fc2.weight", pre, L));
    return 0;
}

/* Every tensor of MODEL.md, in file order. w->vit/vlm/exp must have their arrays. */
static int visit_all(const vlad_config *c, vlad_weights *w, visit_fn fn, void *ctx) {
    visitor vv = {.fn = fn, .ctx = ctx}, *v = &vv;
    int vw = c->vit_width, wd = c->width, e = c->expert_width, kv = vlad_cfg_kv_dim(c);
    int pp = vlad_cfg_patch_dim(c);
    TRY(v2(v, K_MAT, &w->patch_embed, vw, pp, "vision.patch_embed.weight"));
    TRY(v1(v, K_BIAS, &w->patch_embed_b, vw, "vision.patch_embed.bias"));
    TRY(v2(v, K_POS, &w->pos_embed, vlad_cfg_n_patches(c), vw, "vision.pos_embed"));
    for (int L = 0; L < c->vit_depth; L++) {
        vlad_vit_block *b = &w->vit[L];
        TRY(v1(v, K_NORM, &b->norm1, vw, "vision.blocks.%d.norm1.weight", L));
        TRY(v1(v, K_NORM, &b->norm2, vw, "vision.blocks.%d.norm2.weight", L));
        TRY(v2(v, K_MAT, &b->q, vw, vw, "vision.blocks.%d.attn.q.weight", L));
        TRY(v1(v, K_BIAS, &b->qb, vw, "vision.blocks.%d.attn.q.bias", L));
        TRY(v2(v, K_MAT, &b->k, vw, vw, "vision.blocks.%d.attn.k.weight", L));
        TRY(v1(v, K_BIAS, &b->kb, vw, "vision.blocks.%d.attn.k.bias", L));
        TRY(v2(v, K_MAT, &b->v, vw, vw, "vision.blocks.%d.attn.v.weight", L));
        TRY(v1(v, K_BIAS, &b->vb, vw, "vision.blocks.%d.attn.v.bias", L));
        TRY(v2(v, K_MAT, &b->o, vw, vw, "vision.blocks.%d.attn.o.weight", L));
        TRY(v1(v, K_BIAS, &b->ob, vw, "vision.blocks.%d.attn.o.bias", L));
        TRY(v2(v, K_MAT, &b->fc1, c->vit_mlp, vw, "vision.blocks.%d.mlp.fc1.weight", L));
        TRY(v1(v, K_BIAS, &b->fc1b, c->vit_mlp, "vision.blocks.%d.mlp.fc1.bias", L));
        TRY(v2(v, K_MAT, &b->fc2, vw, c->vit_mlp, "vision.blocks.%d.mlp.fc2.weight", L));
        TRY(v1(v, K_BIAS, &b->fc2b, vw, "vision.blocks.%d.mlp.fc2.bias", L));
    }
    TRY(v1(v, K_NORM, &w->vit_norm, vw, "vision.norm.weight"));
    TRY(v2(v, K_MAT, &w->vit_proj, wd, vw, "vision.proj.weight"));
    TRY(v1(v, K_BIAS, &w->vit_proj_b, wd, "vision.proj.bias"));
    TRY(v2(v, K_EMBED, &w->embed, c->vocab_size, wd, "embed.weight"));
    for (int L = 0; L < c->depth; L++)
        TRY(visit_tlayer(v, "vlm", L, &w->vlm[L], wd, kv, c->mlp));
    TRY(v1(v, K_NORM, &w->vlm_norm, wd, "vlm.norm.weight"));
    TRY(v2(v, K_MAT, &w->state_proj, e, c->state_dim, "expert.state_proj.weight"));
    TRY(v1(v, K_BIAS, &w->state_proj_b, e, "expert.state_proj.bias"));
    TRY(v2(v, K_MAT, &w->action_in, e, c->action_dim, "expert.action_in.weight"));
    TRY(v1(v, K_BIAS, &w->action_in_b, e, "expert.action_in.bias"));
    TRY(v2(v, K_MAT, &w->time_in, e, 2 * e, "expert.time_mlp_in.weight"));
    TRY(v1(v, K_BIAS, &w->time_in_b, e, "expert.time_mlp_in.bias"));
    TRY(v2(v, K_MAT, &w->time_out, e, e, "expert.time_mlp_out.weight"));
    TRY(v1(v, K_BIAS, &w->time_out_b, e, "expert.time_mlp_out.bias"));
    for (int L = 0; L < c->depth; L++)
        TRY(visit_tlayer(v, "expert", L, &w->exp[L], e, kv, c->expert_mlp));
    TRY(v1(v, K_NORM, &w->exp_norm, e, "expert.norm.weight"));
    TRY(v2(v, K_MAT, &w->action_out, c->action_dim, e, "expert.action_out.weight"));
    TRY(v1(v, K_BIAS, &w->action_out_b, c->action_dim, "expert.action_out.bias"));
    TRY(v1(v, K_MEAN, &w->state_mean, c->state_dim, "norm.state.mean"));
    TRY(v1(v, K_STD, &w->state_std, c->state_dim, "norm.state.std"));
    TRY(v1(v, K_MEAN, &w->action_mean, c->action_dim, "norm.action.mean"));
    TRY(v1(v, K_STD, &w->action_std, c->action_dim, "norm.action.std"));
    return 0;
}

static int alloc_layer_arrays(const vlad_config *c, vlad_weights *w) {
    w->vit = calloc((size_t)c->vit_depth, sizeof *w->vit);
    w->vlm = calloc((size_t)c->depth, sizeof *w->vlm);
    w->exp = calloc((size_t)c->depth, sizeof *w->exp);
    return (w->vit && w->vlm && w->exp) ? 0 : -1;
}
static void free_layer_arrays(vlad_weights *w) {
    free(w->vit);
    free(w->vlm);
    free(w->exp);
}

/* ---- loader -------------------------------------------------------------------------- */

typedef struct {
    vlad_model *m;
    const vlad_st_file *f;
    unsigned char *seen;
    int n_seen;
    int any_f32_mat, any_bf16_mat;
    vlad_err *err;
} load_ctx;

static void *own_alloc(vlad_model *m, size_t n) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    void *b = NULL;
    if (posix_memalign(&b, 64, n ? n : 1) != 0)
        return NULL;
    m->owned[m->n_owned++] = b;
    m->owned_bytes += n;
    return b;
}

static void release_pages(vlad_model *m, const void *data, size_t bytes);

static const vlad_st_tensor *find_suffix(load_ctx *cx, const char *name, const char *suf) {
    char nm[200];
    snprintf(nm, sizeof nm, "%s.%s", name, suf);
    return vlad_st_find(cx->f, nm);
}
static void mark_seen(load_ctx *cx, const vlad_st_tensor *t) {
    cx->seen[t - vlad_st_get(cx->f, 0)] = 1;
    cx->n_seen++;
}

/* A quantised Linear `name` [out, in] (MODEL.md 1.1): name.q8 or name.q4, name.scale and
 * optionally name.awq. *found = 0 when there is no quantised form (nothing is checked then
 * but a stray .scale / .awq). On success mt is the repacked matrix. */
static int load_quant(load_ctx *cx, const char *name, const int64_t *shape, vlad_mat *mt,
                      int *found) {
    vlad_err *err = cx->err;
    const vlad_st_tensor *t = vlad_st_find(cx->f, name), *t8 = find_suffix(cx, name, "q8"),
                         *t4 = find_suffix(cx, name, "q4"), *ts = find_suffix(cx, name, "scale"),
                         *ta = find_suffix(cx, name, "awq");
    *found = 0;
    if (!t8 && !t4) {
        if (ts || ta)
            return vlad_err_set(err, VLAD_EINVAL,
                                "tensor '%s.%s' without quantised codes '%s.q8' or '%s.q4'%s",
                                name, ts ? "scale" : "awq", name, name,
                                t ? " (the plain matrix is there too)" : "");
        return 0;
    }
    *found = 1;
    if (t8 && t4)
        return vlad_err_set(err, VLAD_EINVAL, "tensor '%s': both '%s.q8' and '%s.q4' present",
                            name, name, name);
    const vlad_st_tensor *tq = t8 ? t8 : t4;
    int bits = t8 ? 8 : 4;
    const char *qs = t8 ? "q8" : "q4";
    if (t)
        return vlad_err_set(err, VLAD_EINVAL,
                            "tensor '%s': both the plain matrix and '%s.%s' present", name, name,
                            qs);
    mark_seen(cx, tq);
    int64_t out = shape[0], in = shape[1];
    if (tq->dtype != VLAD_DT_U8)
        return vlad_err_set(err, VLAD_EINVAL, "tensor '%s.%s': dtype '%s', expected U8", name, qs,
                            vlad_dtype_name(tq->dtype));
    int64_t qin = bits == 8 ? in : in / 2;
    if ((bits == 4 && in % 2) || tq->ndim != 2 || tq->shape[0] != out || tq->shape[1] != qin)
        return vlad_err_set(err, VLAD_EINVAL,
                            "tensor '%s.%s': shape [%lld%s%lld], expected [%lld, %lld]", name, qs,
                            (long long)tq->shape[0], tq->ndim >= 2 ? ", " : "",
                            tq->ndim >= 2 ? (long long)tq->shape[1] : 0LL, (long long)out,
                            (long long)qin);
    if (!ts)
        return vlad_err_set(err, VLAD_EINVAL, "tensor '%s.%s': scale tensor '%s.scale' missing",
                            name, qs, name);
    mark_seen(cx, ts);
    if (ts->dtype != VLAD_DT_F32)
        return vlad_err_set(err, VLAD_EINVAL, "tensor '%s.scale': dtype '%s', expected F32", name,
                            vlad_dtype_name(ts->dtype));
    int64_t G = (ts->ndim == 2 && ts->shape[1] > 0) ? in / ts->shape[1] : 0;
    if (ts->ndim != 2 || ts->shape[0] != out || G * ts->shape[1] != in ||
        (G != 32 && G != 64 && G != 128))
        return vlad_err_set(err, VLAD_EINVAL,
                            "tensor '%s.scale': shape [%lld%s%lld], expected [%lld, %lld / G] "
                            "with G 32, 64 or 128 dividing %lld",
                            name, (long long)ts->shape[0], ts->ndim >= 2 ? ", " : "",
                            ts->ndim >= 2 ? (long long)ts->shape[1] : 0LL, (long long)out,
                            (long long)in, (long long)in);
    for (int64_t i = 0; i < ts->numel; i++) {
        float v;
        memcpy(&v, ts->data + (size_t)i * 4, 4);
        if (!isfinite(v))
            return vlad_err_set(err, VLAD_EINVAL, "tensor '%s.scale' element %lld is %s", name,
                                (long long)i, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
        if (!(v > 0.0f))
            return vlad_err_set(err, VLAD_EINVAL,
                                "tensor '%s.scale': scale %g at [%lld] is not positive", name,
                                (double)v, (long long)i);
    }
    float *inv = NULL;
    if (ta) {
        mark_seen(cx, ta);
        if (ta->dtype != VLAD_DT_F32 || ta->ndim != 1 || ta->shape[0] != in)
            return vlad_err_set(err, VLAD_EINVAL,
                                "tensor '%s.awq': %s [%lld], expected F32 [%lld]", name,
                                vlad_dtype_name(ta->dtype),
                                ta->ndim >= 1 ? (long long)ta->shape[0] : 0LL, (long long)in);
        inv = own_alloc(cx->m, (size_t)in * sizeof(float));
        if (!inv)
            return vlad_err_set(err, VLAD_ENOMEM, "tensor '%s.awq': out of memory", name);
        for (int64_t i = 0; i < in; i++) {
            float v;
            memcpy(&v, ta->data + (size_t)i * 4, 4);
            if (!isfinite(v))
                return vlad_err_set(err, VLAD_EINVAL, "tensor '%s.awq' element %lld is %s", name,
                                    (long long)i, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
            if (!(v > 0.0f))
                return vlad_err_set(err, VLAD_EINVAL,
                                    "tensor '%s.awq': scale %g at [%lld] is not positive", name,
                                    (double)v, (long long)i);
            inv[i] = 1.0f / v;
            if (!isfinite(inv[i]))
                return vlad_err_set(err, VLAD_EINVAL,
                                    "tensor '%s.awq': scale %g at [%lld] is too small", name,
                                    (double)v, (long long)i);
        }
        cx->m->n_awq++;
    }
    int R = (int)out, C = (int)in;
    uint8_t *codes = own_alloc(cx->m, vlad_quant_codes_bytes(bits, R, C));
    float *sc = own_alloc(cx->m, vlad_quant_scale_floats(R, C, (int)G) * sizeof(float));
    if (!codes || !sc)
        return vlad_err_set(err, VLAD_ENOMEM, "tensor '%s.%s': out of memory", name, qs);
    vlad_quant_pack(codes, sc, bits, R, C, (int)G, tq->data, ts->data);
    release_pages(cx->m, tq->data, tq->nbytes);
    release_pages(cx->m, ts->data, ts->nbytes);
    *mt = (vlad_mat){.data = NULL, .dtype = VLAD_DT_U8, .rows = R, .cols = C, .qbits = bits,
                     .qgroup = (int)G, .qcodes = codes, .qscale = sc, .qinv = inv};
    if (bits == 8)
        cx->m->n_q8++;
    else
        cx->m->n_q4++;
    if (!cx->m->qgroup_min || G < cx->m->qgroup_min)
        cx->m->qgroup_min = (int)G;
    if (G > cx->m->qgroup_max)
        cx->m->qgroup_max = (int)G;
    return 0;
}

static int load_visit(void *vctx, const char *name, int ndim, const int64_t *shape, tkind k,
                      void *dst) {
    load_ctx *cx = vctx;
    if (k == K_MAT || k == K_EMBED) {
        int found = 0;
        vlad_mat qm;
        TRY(load_quant(cx, name, shape, &qm, &found));
        if (found) {
            if (k == K_MAT) {
                *(vlad_mat *)dst = qm;
            } else {
                cx->m->w.embed_mat = qm;
                *(const float **)dst = NULL;
            }
            return 0;
        }
    }
    const vlad_st_tensor *t = vlad_st_find(cx->f, name);
    if (!t)
        return vlad_err_set(cx->err, VLAD_EINVAL, "missing tensor '%s'", name);
    cx->seen[t - vlad_st_get(cx->f, 0)] = 1;
    cx->n_seen++;
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[128] = "", exp[64] = "";
        size_t o = 0;
        for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        if (ndim == 1)
            snprintf(exp, sizeof exp, "%lld", (long long)shape[0]);
        else
            snprintf(exp, sizeof exp, "%lld, %lld", (long long)shape[0], (long long)shape[1]);
        return vlad_err_set(cx->err, VLAD_EINVAL, "tensor '%s': shape [%s], expected [%s]", name,
                            got, exp);
    }
    if (t->dtype != VLAD_DT_F32 && t->dtype != VLAD_DT_BF16)
        return vlad_err_set(cx->err, VLAD_EINVAL,
                            "tensor '%s': unsupported dtype '%s' for a model tensor (F32 or BF16)",
                            name, vlad_dtype_name(t->dtype));
    /* a NaN or Inf weight would poison every action silently: refuse it at load, naming where */
    float bad = 0.0f;
    int64_t at = vlad_st_find_nonfinite(t, &bad);
    if (at >= 0)
        return vlad_err_set(cx->err, VLAD_EINVAL, "weight tensor '%s' element %lld is %s", name,
                            (long long)at, isnan(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf");
    size_t n = (size_t)t->numel;
    size_t es = vlad_dtype_size(t->dtype);
    int aligned = ((uintptr_t)t->data % es) == 0;
    if (k == K_MAT) {
        vlad_mat *mt = dst;
        cx->m->n_plain_mats++;
        mt->dtype = t->dtype;
        mt->rows = (int)shape[0];
        mt->cols = (int)shape[1];
        if (t->dtype == VLAD_DT_F32)
            cx->any_f32_mat = 1;
        else
            cx->any_bf16_mat = 1;
        if (aligned) {
            mt->data = t->data;
        } else {
            void *b = own_alloc(cx->m, t->nbytes);
            if (!b)
                return vlad_err_set(cx->err, VLAD_ENOMEM, "tensor '%s': out of memory", name);
            memcpy(b, t->data, t->nbytes);
            mt->data = b;
        }
        return 0;
    }
    const float *p;
    if (t->dtype == VLAD_DT_F32 && aligned) {
        p = (const float *)(const void *)t->data;
    } else {
        float *b = own_alloc(cx->m, n * sizeof(float));
        if (!b)
            return vlad_err_set(cx->err, VLAD_ENOMEM, "tensor '%s': out of memory", name);
        if (t->dtype == VLAD_DT_F32)
            memcpy(b, t->data, n * sizeof(float));
        else
            vlad_bf16_to_f32_n(b, t->data, n);
        p = b;
    }
    if (k == K_STD) /* finite already (above) */
        for (size_t i = 0; i < n; i++)
            if (!(p[i] > 0.0f))
                return vlad_err_set(cx->err, VLAD_EINVAL,
                                    "tensor '%s': std %g at [%zu] is not positive", name,
                                    (double)p[i], i);
    *(const float **)dst = p;
    return 0;
}

int vlad_model_load(const char *path, vlad_model **out, vlad_err *err) {
    *out = NULL;
    vlad_model *m = calloc(1, sizeof *m);
    if (!m)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    int rc = vlad_st_open(path, &m->file, err);
    if (rc) {
        free(m);
        return rc;
    }
    load_ctx cx = {.m = m, .f = m->file, .err = err};
    const char *fmt = vlad_st_meta(m->file, "vlad.format");
    const char *cfg = vlad_st_meta(m->file, "vlad.config");
    if (!fmt || strcmp(fmt, "1")) {
        rc = vlad_err_set(err, VLAD_EINVAL, "metadata field 'vlad.format' is %s%s%s, expected \"1\"",
                          fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
        goto fail;
    }
    if (!cfg) {
        rc = vlad_err_set(err, VLAD_EINVAL, "metadata field 'vlad.config' missing");
        goto fail;
    }
    rc = vlad_config_from_json(cfg, &m->cfg, err);
    if (rc)
        goto fail;
    if (alloc_layer_arrays(&m->cfg, &m->w)) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto fail;
    }
    cx.seen = calloc((size_t)vlad_st_count(m->file) + 1, 1);
    if (!cx.seen) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto fail;
    }
    rc = visit_all(&m->cfg, &m->w, load_visit, &cx);
    if (!rc && cx.n_seen != vlad_st_count(m->file)) {
        for (int i = 0; i < vlad_st_count(m->file); i++)
            if (!cx.seen[i]) {
                rc = vlad_err_set(err, VLAD_EINVAL, "unexpected tensor '%s'",
                                  vlad_st_get(m->file, i)->name);
                break;
            }
    }
    free(cx.seen);
    if (rc)
        goto fail;
    if (m->w.embed) /* else quantised: embed_mat is set by load_quant */
        m->w.embed_mat = (vlad_mat){.data = m->w.embed, .dtype = VLAD_DT_F32,
                                    .rows = m->cfg.vocab_size, .cols = m->cfg.width};
    m->quant_meta = vlad_st_meta(m->file, "vlad.quant");
    m->matrix_dtype = cx.any_f32_mat ? VLAD_DT_F32 : VLAD_DT_BF16;
    m->file_bytes = vlad_st_file_size(m->file);
    if (m->w.exp[0].q.dtype == VLAD_DT_F32 && (rc = vlad_model_pack_all(m, err)))
        goto fail;
    *out = m;
    return 0;
fail:
    vlad_err_prefix(err, "%s: ", path);
    vlad_model_free(m);
    return rc;
}

void vlad_model_free(vlad_model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free_layer_arrays(&m->w);
    vlad_st_close(m->file);
    free(m);
}

int64_t vlad_model_param_count(const vlad_model *m) {
    int64_t n = 0;
    for (int i = 0; i < vlad_st_count(m->file); i++) {
        const vlad_st_tensor *t = vlad_st_get(m->file, i);
        size_t l = strlen(t->name);
        if (l > 6 && (!strcmp(t->name + l - 6, ".scale") || !strcmp(t->name + l - 4, ".awq")))
            continue; /* quantisation side tensors */
        n += (l > 3 && !strcmp(t->name + l - 3, ".q4")) ? 2 * t->numel : t->numel;
    }
    return n;
}

/* ---- random checkpoint writer --------------------------------------------------------- */

typedef struct {
    vlad_st_writer *w;
    vlad_dtype dtype;
    vlad_rng rng;
    int pass; /* 0: declare, 1: data */
    float *buf;
    uint16_t *hbuf;
    size_t cap;
    vlad_err *err;
} write_ctx;

static int write_visit(void *vctx, const char *name, int ndim, const int64_t *shape, tkind k,
                       void *dst) {
    (void)dst;
    write_ctx *cx = vctx;
    vlad_dtype dt = (k == K_MEAN || k == K_STD) ? VLAD_DT_F32 : cx->dtype;
    if (cx->pass == 0)
        return vlad_st_writer_add(cx->w, name, dt, ndim, shape, cx->err);
    size_t n = (size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1);
    if (n > cx->cap) {
        free(cx->buf);
        free(cx->hbuf);
        cx->buf = malloc(n * sizeof *cx->buf);
        cx->hbuf = malloc(n * sizeof *cx->hbuf);
        cx->cap = n;
        if (!cx->buf || !cx->hbuf) {
            cx->cap = 0;
            return vlad_err_set(cx->err, VLAD_ENOMEM, "out of memory");
        }
    }
    double fan_in = ndim == 2 ? (double)shape[1] : 1.0;
    for (size_t i = 0; i < n; i++) {
        double g = vlad_rng_normal(&cx->rng), x;
        switch (k) {
        case K_MAT: x = g / sqrt(fan_in); break;
        case K_NORM: x = 1.0 + 0.1 * g; break;
        case K_BIAS: x = 0.02 * g; break;
        case K_EMBED: x = g; break;
        case K_POS: x = 0.02 * g; break;
        case K_MEAN: x = 0.5 * g; break;
        default: x = 0.5 + vlad_rng_uniform(&cx->rng); break;
        }
        cx->buf[i] = (float)x;
    }
    if (dt == VLAD_DT_F32)
        return vlad_st_writer_data(cx->w, cx->buf, n * sizeof(float), cx->err);
    for (size_t i = 0; i < n; i++)
        cx->hbuf[i] = vlad_f32_to_bf16(cx->buf[i]);
    return vlad_st_writer_data(cx->w, cx->hbuf, n * 2, cx->err);
}

int vlad_model_write_random(const vlad_config *c, vlad_dtype dtype, uint64_t seed,
                            const char *path, vlad_err *err) {
    int rc = vlad_config_validate(c, err);
    if (rc)
        return rc;
    vlad_weights w;
    memset(&w, 0, sizeof w);
    write_ctx cx = {.dtype = dtype, .err = err};
    vlad_rng_seed(&cx.rng, seed);
    char *cj = vlad_config_to_json(c);
    cx.w = vlad_st_writer_new();
    if (!cj || !cx.w || alloc_layer_arrays(c, &w)) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = vlad_st_writer_meta(cx.w, "vlad.format", "1", err)) ||
        (rc = vlad_st_writer_meta(cx.w, "vlad.config", cj, err)))
        goto done;
    if ((rc = visit_all(c, &w, write_visit, &cx)))
        goto done;
    if ((rc = vlad_st_writer_begin(cx.w, path, err)))
        goto done;
    cx.pass = 1;
    if ((rc = visit_all(c, &w, write_visit, &cx)))
        goto done;
    rc = vlad_st_writer_finish(cx.w, err);
done:
    free(cj);
    free(cx.buf);
    free(cx.hbuf);
    free_layer_arrays(&w);
    vlad_st_writer_free(cx.w);
    return rc;
}

static int widen(vlad_model *m, vlad_mat *mt, vlad_err *err) {
    if (mt->dtype != VLAD_DT_BF16 || mt->packed)
        return 0;
    size_t n = (size_t)mt->rows * mt->cols;
    float *b = own_alloc(m, n * sizeof(float));
    if (!b)
        return vlad_err_set(err, VLAD_ENOMEM, "widen: out of memory");
    vlad_bf16_to_f32_n(b, mt->data, n);
    /* drop the converted BF16 pages from our RSS if they lie in the mapping */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a0 = ((uintptr_t)mt->data + pg - 1) & ~(pg - 1);
    uintptr_t a1 = ((uintptr_t)mt->data + n * 2) & ~(pg - 1);
    if (vlad_st_owns(m->file, mt->data) && a1 > a0)
        madvise((void *)a0, a1 - a0, MADV_DONTNEED);
    mt->data = b;
    mt->dtype = VLAD_DT_F32;
    return 0;
}

/* Release the pages of a mapped source matrix that no longer needs to be resident. */
static void release_pages(vlad_model *m, const void *data, size_t bytes) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a0 = ((uintptr_t)data + pg - 1) & ~(pg - 1);
    uintptr_t a1 = ((uintptr_t)data + bytes) & ~(pg - 1);
    if (vlad_st_owns(m->file, data) && a1 > a0)
        madvise((void *)a0, a1 - a0, MADV_DONTNEED);
}

static int pack(vlad_model *m, vlad_mat *mt, vlad_err *err) {
    if (mt->packed || mt->qbits)
        return 0;
    if (mt->dtype == VLAD_DT_BF16 && (m->n_q4 || m->n_q8)) {
        /* a quantised model's plain BF16 matrices stay 2 bytes per weight: BF16 panels that
         * the quantised kernels convert on the fly (quant.h), never an F32 copy */
        uint8_t *b = own_alloc(m, vlad_quant_codes_bytes(16, mt->rows, mt->cols));
        if (!b)
            return vlad_err_set(err, VLAD_ENOMEM, "pack: out of memory");
        vlad_quant_pack_bf16(b, mt->rows, mt->cols, mt->data);
        release_pages(m, mt->data, (size_t)mt->rows * mt->cols * 2);
        *mt = (vlad_mat){.dtype = VLAD_DT_U8, .rows = mt->rows, .cols = mt->cols, .qbits = 16,
                         .qgroup = mt->cols, .qcodes = b};
        return 0;
    }
    float *b = own_alloc(m, vlad_pack_floats(mt->rows, mt->cols) * sizeof(float));
    if (!b)
        return vlad_err_set(err, VLAD_ENOMEM, "pack: out of memory");
    vlad_pack(b, mt);
    release_pages(m, mt->data, (size_t)mt->rows * mt->cols * vlad_dtype_size(mt->dtype));
    mt->packed = b;
    return 0;
}

int vlad_model_pack_expert(vlad_model *m, vlad_err *err) {
    if (!vlad_pack_supported())
        return 0;
    vlad_weights *w = &m->w;
    for (int L = 0; L < m->cfg.depth; L++) {
        vlad_tlayer *l = &w->exp[L];
        vlad_mat *ms[] = {&l->q, &l->k, &l->v, &l->o, &l->fc1, &l->fc2};
        for (int i = 0; i < 6; i++)
            TRY(pack(m, ms[i], err));
    }
    TRY(pack(m, &w->action_in, err));
    TRY(pack(m, &w->time_in, err));
    TRY(pack(m, &w->time_out, err));
    return pack(m, &w->action_out, err);
}

int vlad_model_pack_all(vlad_model *m, vlad_err *err) {
    if (!vlad_pack_supported())
        return 0;
    TRY(vlad_model_pack_expert(m, err));
    if (vlad_pack_scope() < 2)
        return 0;
    vlad_weights *w = &m->w;
    TRY(pack(m, &w->patch_embed, err));
    for (int L = 0; L < m->cfg.vit_depth; L++) {
        vlad_vit_block *b = &w->vit[L];
        vlad_mat *ms[] = {&b->q, &b->k, &b->v, &b->o, &b->fc1, &b->fc2};
        for (int i = 0; i < 6; i++)
            TRY(pack(m, ms[i], err));
    }
    TRY(pack(m, &w->vit_proj, err));
    for (int L = 0; L < m->cfg.depth; L++) {
        vlad_tlayer *l = &w->vlm[L];
        vlad_mat *ms[] = {&l->q, &l->k, &l->v, &l->o, &l->fc1, &l->fc2};
        for (int i = 0; i < 6; i++)
            TRY(pack(m, ms[i], err));
    }
    return 0;
}

int vlad_model_widen_expert(vlad_model *m, vlad_err *err) {
    vlad_weights *w = &m->w;
    TRY(vlad_model_pack_expert(m, err)); /* packed matrices need no row-major F32 copy */
    for (int L = 0; L < m->cfg.depth; L++) {
        vlad_tlayer *l = &w->exp[L];
        vlad_mat *ms[] = {&l->q, &l->k, &l->v, &l->o, &l->fc1, &l->fc2};
        for (int i = 0; i < 6; i++)
            TRY(widen(m, ms[i], err));
    }
    TRY(widen(m, &w->action_in, err));
    TRY(widen(m, &w->time_in, err));
    TRY(widen(m, &w->time_out, err));
    TRY(widen(m, &w->action_out, err));
    return widen(m, &w->state_proj, err);
}

int vlad_model_widen_all(vlad_model *m, vlad_err *err) {
    vlad_weights *w = &m->w;
    TRY(vlad_model_pack_all(m, err)); /* packed matrices are not widened again */
    TRY(vlad_model_widen_expert(m, err));
    TRY(widen(m, &w->patch_embed, err));
    for (int L = 0; L < m->cfg.vit_depth; L++) {
        vlad_vit_block *b = &w->vit[L];
        vlad_mat *ms[] = {&b->q, &b->k, &b->v, &b->o, &b->fc1, &b->fc2};
        for (int i = 0; i < 6; i++)
            TRY(widen(m, ms[i], err));
    }
    TRY(widen(m, &w->vit_proj, err));
    for (int L = 0; L < m->cfg.depth; L++) {
        vlad_tlayer *l = &w->vlm[L];
        vlad_mat *ms[] = {&l->q, &l->k, &l->v, &l->o, &l->fc1, &l->fc2};
        for (int i = 0; i < 6; i++)
            TRY(widen(m, ms[i], err));
    }
    m->matrix_dtype = VLAD_DT_F32;
    return 0;
}

void vlad_patchify(const vlad_config *c, const uint8_t *const *images, float *dst) {
    int p = c->patch_size, g = c->image_size / p, P = g * g, isz = c->image_size;
    int F = c->frame_stack, fp = 3 * p * p, pd = F * fp;
    for (int im = 0; im < c->n_cameras; im++) {
        const uint8_t *img = images[im];
        float *set = dst + (size_t)(im / F) * P * pd + (size_t)(im % F) * fp;
        for (int pr = 0; pr < g; pr++)
            for (int pc = 0; pc < g; pc++) {
                float *d = set + (size_t)(pr * g + pc) * pd;
                for (int r = 0; r < p; r++) {
                    const uint8_t *src = img + ((size_t)(pr * p + r) * isz + (size_t)pc * p) * 3;
                    for (int j = 0; j < 3 * p; j++)
                        d[r * 3 * p + j] = (float)src[j] / 127.5f - 1.0f;
                }
            }
    }
}
