/* batch.c — vlad_batch (batch.h): n inferences with their rows stacked into the same GEMMs.
 *
 * The same forward pass as engine.c (MODEL.md "Forward pass"), kernel call by kernel call,
 * with the rows of every item stacked wherever the rows are independent (Linear layers,
 * norms, activations, residual adds) and a loop over the items wherever they are not (RoPE
 * positions, attention). Layouts, for n items with prefix lengths S_i and row offsets
 * off_i = S_0 + ... + S_{i-1}:
 *   vision   [n * image_tokens] rows, item i's token set t (images t*F.., F = frame_stack) at
 *            (i * n_groups + t) * P
 *   prefix   [sum S_i] rows, item i at off_i: its image tokens, BOS, prompt bytes
 *   K/V      per backbone layer, [sum S_i, kv] each, item i at off_i (its prefix block)
 *   suffix   [n * (H + 1)] rows, item i at i * (H + 1): state token, H action tokens
 *   x_t, v   [n * H, action_dim], item i at i * H */
#include "batch.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "engine_internal.h"
#include "kernels.h"
#include "pool.h"
#include "quant.h"
#include "rng.h"
#include "tokenizer.h"

#define MAX_ALLOCS 64

struct vlad_batch {
    const vlad_model *m;
    vlad_config c;
    int max_batch;
    int n_threads;
    vlad_pool *pool;
    int caller_nice;
    vlad_scratch scr;
    float *rope_cos, *rope_sin; /* [max_pos, head_dim/2] */
    int max_pos;
    /* vision: max_batch * Mv rows */
    float *v_patch;
    float *v_x, *v_xb, *v_q, *v_k, *v_v, *v_att, *v_tmp;
    float *v_h;
    /* prefix: max_batch * Smax rows */
    float *p_x, *p_xb, *p_tmp;
    float *p_q, *p_att;
    float *p_h;
    float *kv;                  /* [depth][2][max_batch * Smax][kv] */
    size_t kv_layer;            /* floats of one layer's K (or V) */
    int *tok;                   /* [max_prompt_tokens + 1] */
    int *S, *off;               /* [max_batch] */
    /* expert: max_batch * H1 rows */
    float *e_x, *e_xb, *e_tmp;
    float *e_q, *e_k, *e_v, *e_att;
    float *e_h;
    float *e_cat;               /* [max_batch * H, 2e] */
    float *e_state;             /* [max_batch, e] */
    float *e_sn;                /* [max_batch, state_dim] */
    float *e_xt, *e_vel;        /* [max_batch * H, action_dim] */
    int *e_lim;                 /* [H1] */
    float *scores;
    size_t n_scores;
    vlad_batch_timing t;
    size_t bytes;
    void *allocs[MAX_ALLOCS];
    int n_allocs;
};

/* A zeroed block owned by b, 64-byte aligned. The blocks are large (sized for max_batch), so
 * the allocator maps each at the same offset within a page; every block is shifted by a
 * different number of cache lines, so that a kernel streaming through several of them in
 * step (x, y, q, k, v of one row) does not hit the same 4 KiB alias each time. */
static void *b_alloc(vlad_batch *b, size_t bytes) {
    if (b->n_allocs == MAX_ALLOCS)
        return NULL;
    size_t shift = (size_t)(b->n_allocs * 5 % 64) * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes + shift + 64) != 0)
        return NULL;
    memset(p, 0, bytes + shift + 64);
    b->allocs[b->n_allocs++] = p;
    b->bytes += bytes + shift + 64;
    return (char *)p + shift;
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

vlad_batch *vlad_batch_new(const vlad_model *m, int max_batch, const vlad_runstate_opts *opts,
                           vlad_err *err) {
    if (!m) {
        vlad_err_set(err, VLAD_EINVAL, "batch: no model");
        return NULL;
    }
    vlad_runstate_opts o = {0};
    if (opts)
        o = *opts;
    if (o.n_threads <= 0)
        o.n_threads = 1;
    if (o.max_streams < 0 || o.max_streams > 64) {
        vlad_err_set(err, VLAD_EINVAL, "batch: max_streams %d out of range [0, 64]",
                     o.max_streams);
        return NULL;
    }
    const vlad_config *c = &m->cfg;
    int P = vlad_cfg_n_patches(c), Mv = vlad_cfg_image_tokens(c), Smax = vlad_cfg_prefix_max(c);
    int H = c->chunk_size, H1 = H + 1;
    /* every row count handed to a kernel is an int */
    int lim = INT_MAX / (Smax > H1 ? Smax : H1);
    if (max_batch < 1 || max_batch > lim || (long long)max_batch * Mv > INT_MAX) {
        vlad_err_set(err, VLAD_EINVAL, "batch: max_batch %d out of range [1, %d]", max_batch,
                     lim);
        return NULL;
    }
    vlad_batch *b = calloc(1, sizeof *b);
    if (!b) {
        vlad_err_set(err, VLAD_ENOMEM, "batch: out of memory");
        return NULL;
    }
    b->m = m;
    b->c = *c;
    b->max_batch = max_batch;
    b->caller_nice = INT_MIN;
    size_t R = (size_t)max_batch;
    int vw = c->vit_width, kvd = vlad_cfg_kv_dim(c), wd = c->width, e = c->expert_width;
    int A = c->action_dim, half = c->head_dim / 2;
    size_t pp = (size_t)vlad_cfg_patch_dim(c);
    b->max_pos = Smax + H1;
    b->n_scores = zmax(zmax((size_t)P * P, (size_t)Smax * Smax), (size_t)H1 * (Smax + H1));
    b->scr.cap = vlad_matmul_scratch_floats((int)vlad__max_cols(m));
    b->scr.kcap = zmax(vlad_attention_scratch_floats(P, vw / c->vit_heads),
                       vlad_attention_scratch_floats(Smax > H1 ? Smax : H1, c->head_dim));
    b->kv_layer = R * Smax * kvd;
    int ok = 1;
#define A_(ptr, n)                                         \
    do {                                                   \
        (ptr) = b_alloc(b, (size_t)(n) * sizeof *(ptr));   \
        ok = ok && (ptr) != NULL;                          \
    } while (0)
    A_(b->scr.buf, b->scr.cap);
    A_(b->scr.kbuf, b->scr.kcap);
    A_(b->rope_cos, (size_t)b->max_pos * half);
    A_(b->rope_sin, (size_t)b->max_pos * half);
    A_(b->v_patch, R * Mv * pp);
    A_(b->v_x, R * Mv * vw);
    A_(b->v_xb, R * Mv * vw);
    A_(b->v_q, R * Mv * vw);
    A_(b->v_k, R * Mv * vw);
    A_(b->v_v, R * Mv * vw);
    A_(b->v_att, R * Mv * vw);
    A_(b->v_tmp, R * Mv * vw);
    A_(b->v_h, R * Mv * c->vit_mlp);
    A_(b->p_x, R * Smax * wd);
    A_(b->p_xb, R * Smax * wd);
    A_(b->p_tmp, R * Smax * wd);
    A_(b->p_q, R * Smax * kvd);
    A_(b->p_att, R * Smax * kvd);
    A_(b->p_h, R * Smax * c->mlp);
    A_(b->kv, (size_t)2 * c->depth * b->kv_layer);
    A_(b->tok, (size_t)c->max_prompt_tokens + 1);
    A_(b->S, R);
    A_(b->off, R);
    A_(b->e_x, R * H1 * e);
    A_(b->e_xb, R * H1 * e);
    A_(b->e_tmp, R * H1 * e);
    A_(b->e_q, R * H1 * kvd);
    A_(b->e_k, R * H1 * kvd);
    A_(b->e_v, R * H1 * kvd);
    A_(b->e_att, R * H1 * kvd);
    A_(b->e_h, R * H1 * c->expert_mlp);
    A_(b->e_cat, R * H * 2 * e);
    A_(b->e_state, R * e);
    A_(b->e_sn, R * c->state_dim);
    A_(b->e_xt, R * H * A);
    A_(b->e_vel, R * H * A);
    A_(b->e_lim, (size_t)H1);
    A_(b->scores, b->n_scores);
#undef A_
    if (!ok) {
        vlad_batch_free(b);
        vlad_err_set(err, VLAD_ENOMEM, "batch: out of memory (max_batch %d)", max_batch);
        return NULL;
    }
    vlad__rope_tables(c, b->max_pos, b->rope_cos, b->rope_sin);
    b->e_lim[0] = 1; /* the state token sees the prefix and itself */
    for (int i = 1; i < H1; i++)
        b->e_lim[i] = H1;
    b->n_threads = o.n_threads;
    b->pool = vlad_pool_new(o.n_threads, b->scr.kcap + b->n_scores); /* NULL for 1 thread */
    b->scr.pool = b->pool;
    b->scr.pool_scores = b->n_scores;
    vlad_blas_set_threads(o.n_threads);
    return b;
}

void vlad_batch_free(vlad_batch *b) {
    if (!b)
        return;
    vlad_pool_free(b->pool);
    for (int i = 0; i < b->n_allocs; i++)
        free(b->allocs[i]);
    free(b);
}

int vlad_batch_max(const vlad_batch *b) { return b ? b->max_batch : 0; }

const vlad_batch_timing *vlad_batch_timing_get(const vlad_batch *b) { return &b->t; }

size_t vlad_batch_bytes(const vlad_batch *b) { return b->bytes; }

static float *kv_k(vlad_batch *b, int L) { return b->kv + (size_t)(2 * L) * b->kv_layer; }
static float *kv_v(vlad_batch *b, int L) { return b->kv + (size_t)(2 * L + 1) * b->kv_layer; }

/* ---- vision: n * n_groups token sets; the projected tokens go to each item's prefix rows ---- */

static void vision(vlad_batch *b, int n, const vlad_batch_item *items) {
    const vlad_config *c = &b->c;
    const vlad_weights *w = &b->m->w;
    int P = vlad_cfg_n_patches(c), Mv = vlad_cfg_image_tokens(c), M = n * Mv;
    int NI = n * vlad_cfg_n_groups(c); /* token sets of the batch */
    int vw = c->vit_width, pp = vlad_cfg_patch_dim(c), wd = c->width;
    int hd = vw / c->vit_heads;
    float eps = (float)c->norm_eps;
    for (int i = 0; i < n; i++)
        vlad_patchify(c, items[i].images, b->v_patch + (size_t)i * Mv * pp);
    vlad_matmul(&b->scr, b->v_x, vw, b->v_patch, pp, M, &w->patch_embed, w->patch_embed_b);
    for (int im = 0; im < NI; im++)
        vlad_add(b->v_x + (size_t)im * P * vw, w->pos_embed, (size_t)P * vw);
    for (int L = 0; L < c->vit_depth; L++) {
        const vlad_vit_block *k = &w->vit[L];
        vlad_rmsnorm(b->v_xb, b->v_x, k->norm1, M, vw, eps);
        vlad_matmul(&b->scr, b->v_q, vw, b->v_xb, vw, M, &k->q, k->qb);
        vlad_matmul(&b->scr, b->v_k, vw, b->v_xb, vw, M, &k->k, k->kb);
        vlad_matmul(&b->scr, b->v_v, vw, b->v_xb, vw, M, &k->v, k->vb);
        for (int im = 0; im < NI; im++) { /* within one token set */
            size_t off = (size_t)im * P * vw;
            vlad_kvseg seg = {b->v_k + off, b->v_v + off, P, vw, NULL};
            vlad_attention_s(&b->scr, b->v_att + off, vw, b->v_q + off, vw, P, c->vit_heads, hd,
                             &seg, 1, b->scores);
        }
        vlad_matmul(&b->scr, b->v_tmp, vw, b->v_att, vw, M, &k->o, k->ob);
        vlad_add(b->v_x, b->v_tmp, (size_t)M * vw);
        vlad_rmsnorm(b->v_xb, b->v_x, k->norm2, M, vw, eps);
        vlad_matmul(&b->scr, b->v_h, c->vit_mlp, b->v_xb, vw, M, &k->fc1, k->fc1b);
        vlad_gelu_tanh(b->v_h, (size_t)M * c->vit_mlp);
        vlad_matmul(&b->scr, b->v_tmp, vw, b->v_h, c->vit_mlp, M, &k->fc2, k->fc2b);
        vlad_add(b->v_x, b->v_tmp, (size_t)M * vw);
    }
    vlad_rmsnorm(b->v_xb, b->v_x, w->vit_norm, M, vw, eps);
    /* all items' image tokens at once into p_tmp, then each item's to its first Mv rows */
    vlad_matmul(&b->scr, b->p_tmp, wd, b->v_xb, vw, M, &w->vit_proj, w->vit_proj_b);
    for (int i = 0; i < n; i++)
        memcpy(b->p_x + (size_t)b->off[i] * wd, b->p_tmp + (size_t)i * Mv * wd,
               (size_t)Mv * wd * sizeof(float));
}

/* ---- backbone over all prefix rows; K/V per layer into b->kv --------------------------- */

static void backbone(vlad_batch *b, int n, const vlad_batch_item *items) {
    const vlad_config *c = &b->c;
    const vlad_weights *w = &b->m->w;
    int Mv = vlad_cfg_image_tokens(c), wd = c->width, kvd = vlad_cfg_kv_dim(c);
    float eps = (float)c->norm_eps;
    int R = b->off[n - 1] + b->S[n - 1];
    for (int i = 0; i < n; i++) {
        int nt = vlad_tok_prompt(items[i].prompt, (size_t)(b->S[i] - Mv - 1),
                                 c->max_prompt_tokens, b->tok);
        for (int t = 0; t < nt; t++)
            vlad_embed_row(w, b->tok[t], wd, b->p_x + (size_t)(b->off[i] + Mv + t) * wd);
    }
    for (int L = 0; L < c->depth; L++) {
        const vlad_tlayer *l = &w->vlm[L];
        float *K = kv_k(b, L), *V = kv_v(b, L);
        vlad_rmsnorm(b->p_xb, b->p_x, l->attn_norm, R, wd, eps);
        vlad_matmul(&b->scr, b->p_q, kvd, b->p_xb, wd, R, &l->q, NULL);
        vlad_matmul(&b->scr, K, kvd, b->p_xb, wd, R, &l->k, NULL);
        vlad_matmul(&b->scr, V, kvd, b->p_xb, wd, R, &l->v, NULL);
        for (int i = 0; i < n; i++) /* positions 0 .. S_i - 1 in every item */
            vlad_rope(K + (size_t)b->off[i] * kvd, kvd, b->S[i], c->n_heads, c->head_dim, 0,
                      b->rope_cos, b->rope_sin);
        if (L == c->depth - 1)
            break; /* only the last layer's K/V are needed; its output is never read */
        for (int i = 0; i < n; i++) {
            size_t o = (size_t)b->off[i] * kvd;
            vlad_rope(b->p_q + o, kvd, b->S[i], c->n_heads, c->head_dim, 0, b->rope_cos,
                      b->rope_sin);
            vlad_kvseg seg = {K + o, V + o, b->S[i], kvd, NULL};
            vlad_attention_s(&b->scr, b->p_att + o, kvd, b->p_q + o, kvd, b->S[i], c->n_heads,
                             c->head_dim, &seg, 1, b->scores);
        }
        vlad_matmul(&b->scr, b->p_tmp, wd, b->p_att, kvd, R, &l->o, NULL);
        vlad_add(b->p_x, b->p_tmp, (size_t)R * wd);
        vlad_rmsnorm(b->p_xb, b->p_x, l->mlp_norm, R, wd, eps);
        vlad_matmul(&b->scr, b->p_h, c->mlp, b->p_xb, wd, R, &l->fc1, NULL);
        vlad_gelu_tanh(b->p_h, (size_t)R * c->mlp);
        vlad_matmul(&b->scr, b->p_tmp, wd, b->p_h, c->mlp, R, &l->fc2, NULL);
        vlad_add(b->p_x, b->p_tmp, (size_t)R * wd);
    }
}

/* ---- action expert: one velocity evaluation of every item into b->e_vel ----------------- */

static void expert_velocity(vlad_batch *b, int n, double t) {
    const vlad_config *c = &b->c;
    const vlad_weights *w = &b->m->w;
    int e = c->expert_width, H = c->chunk_size, H1 = H + 1, kvd = vlad_cfg_kv_dim(c);
    int half = e / 2, MH = n * H, M1 = n * H1;
    float eps = (float)c->norm_eps;
    /* action tokens: time_mlp_out(silu(time_mlp_in([action_in(x_i), temb(t)]))) */
    vlad_matmul(&b->scr, b->e_cat, 2 * e, b->e_xt, c->action_dim, MH, &w->action_in,
                w->action_in_b);
    for (int j = 0; j < half; j++) {
        double f = pow(10000.0, -(double)j / half);
        double a = 1000.0 * t * f;
        float sv = (float)sin(a), cv = (float)cos(a);
        for (int i = 0; i < MH; i++) {
            b->e_cat[(size_t)i * 2 * e + e + j] = sv;
            b->e_cat[(size_t)i * 2 * e + e + half + j] = cv;
        }
    }
    vlad_matmul(&b->scr, b->e_tmp, e, b->e_cat, 2 * e, MH, &w->time_in, w->time_in_b);
    vlad_silu(b->e_tmp, (size_t)MH * e);
    vlad_matmul(&b->scr, b->e_xb, e, b->e_tmp, e, MH, &w->time_out, w->time_out_b);
    for (int i = 0; i < n; i++) { /* suffix i = [state token i, action tokens i] */
        float *xi = b->e_x + (size_t)i * H1 * e;
        memcpy(xi, b->e_state + (size_t)i * e, (size_t)e * sizeof(float));
        memcpy(xi + e, b->e_xb + (size_t)i * H * e, (size_t)H * e * sizeof(float));
    }
    for (int L = 0; L < c->depth; L++) {
        const vlad_tlayer *l = &w->exp[L];
        vlad_rmsnorm(b->e_xb, b->e_x, l->attn_norm, M1, e, eps);
        vlad_matmul(&b->scr, b->e_q, kvd, b->e_xb, e, M1, &l->q, NULL);
        vlad_matmul(&b->scr, b->e_k, kvd, b->e_xb, e, M1, &l->k, NULL);
        vlad_matmul(&b->scr, b->e_v, kvd, b->e_xb, e, M1, &l->v, NULL);
        const float *PK = kv_k(b, L), *PV = kv_v(b, L);
        for (int i = 0; i < n; i++) {
            size_t o = (size_t)i * H1 * kvd, po = (size_t)b->off[i] * kvd;
            int S = b->S[i];
            vlad_rope(b->e_q + o, kvd, H1, c->n_heads, c->head_dim, S, b->rope_cos,
                      b->rope_sin);
            vlad_rope(b->e_k + o, kvd, H1, c->n_heads, c->head_dim, S, b->rope_cos,
                      b->rope_sin);
            vlad_kvseg segs[2] = {
                {PK + po, PV + po, S, kvd, NULL},
                {b->e_k + o, b->e_v + o, H1, kvd, b->e_lim},
            };
            vlad_attention_s(&b->scr, b->e_att + o, kvd, b->e_q + o, kvd, H1, c->n_heads,
                             c->head_dim, segs, 2, b->scores);
        }
        vlad_matmul(&b->scr, b->e_tmp, e, b->e_att, kvd, M1, &l->o, NULL);
        vlad_add(b->e_x, b->e_tmp, (size_t)M1 * e);
        vlad_rmsnorm(b->e_xb, b->e_x, l->mlp_norm, M1, e, eps);
        vlad_matmul(&b->scr, b->e_h, c->expert_mlp, b->e_xb, e, M1, &l->fc1, NULL);
        vlad_gelu_tanh(b->e_h, (size_t)M1 * c->expert_mlp);
        vlad_matmul(&b->scr, b->e_tmp, e, b->e_h, c->expert_mlp, M1, &l->fc2, NULL);
        vlad_add(b->e_x, b->e_tmp, (size_t)M1 * e);
    }
    for (int i = 0; i < n; i++) /* the action rows of each item */
        vlad_rmsnorm(b->e_xb + (size_t)i * H * e, b->e_x + ((size_t)i * H1 + 1) * e,
                     w->exp_norm, H, e, eps);
    vlad_matmul(&b->scr, b->e_vel, c->action_dim, b->e_xb, e, MH, &w->action_out,
                w->action_out_b);
}

static int check_items(const vlad_batch *b, int n, const vlad_batch_item *items,
                       vlad_err *err) {
    const vlad_config *c = &b->c;
    int HA = c->chunk_size * c->action_dim;
    for (int i = 0; i < n; i++) {
        const vlad_batch_item *it = &items[i];
        if (!it->images)
            return vlad_err_set(err, VLAD_EINVAL, "batch_infer: item %d: no images", i);
        for (int k = 0; k < c->n_cameras; k++)
            if (!it->images[k])
                return vlad_err_set(err, VLAD_EINVAL, "batch_infer: item %d: image %d missing",
                                    i, k);
        if (!it->state)
            return vlad_err_set(err, VLAD_EINVAL, "batch_infer: item %d: NULL state", i);
        for (int k = 0; k < c->state_dim; k++)
            if (!isfinite(it->state[k]))
                return vlad_err_set(err, VLAD_EINVAL,
                                    "batch_infer: item %d: state[%d] is not finite", i, k);
        if (it->noise)
            for (int k = 0; k < HA; k++)
                if (!isfinite(it->noise[k]))
                    return vlad_err_set(err, VLAD_EINVAL,
                                        "batch_infer: item %d: noise[%d] is not finite", i, k);
    }
    return VLAD_OK;
}

int vlad_batch_infer(vlad_batch *b, int n, const vlad_batch_item *items, float *actions,
                     vlad_err *err) {
    double t0 = vlad__now_ms();
    if (!b)
        return vlad_err_set(err, VLAD_EINVAL, "batch_infer: NULL batch");
    if (n < 1 || n > b->max_batch)
        return vlad_err_set(err, VLAD_EINVAL, "batch_infer: n = %d out of range [1, %d]", n,
                            b->max_batch);
    if (!items || !actions)
        return vlad_err_set(err, VLAD_EINVAL, "batch_infer: NULL items or actions");
    int rc = check_items(b, n, items, err);
    if (rc)
        return rc;
    const vlad_config *c = &b->c;
    const vlad_weights *w = &b->m->w;
    int H = c->chunk_size, A = c->action_dim, HA = H * A, N = c->flow_steps;
    int Mv = vlad_cfg_image_tokens(c), sd = c->state_dim;
    for (int i = 0, off = 0; i < n; i++) {
        size_t pl = items[i].prompt ? items[i].prompt_len : 0;
        if (pl > (size_t)c->max_prompt_tokens)
            pl = (size_t)c->max_prompt_tokens;
        b->S[i] = Mv + 1 + (int)pl;
        b->off[i] = off;
        off += b->S[i];
    }
    for (int i = 0; i < n; i++) {
        float *xt = b->e_xt + (size_t)i * HA;
        if (items[i].noise) {
            memcpy(xt, items[i].noise, (size_t)HA * sizeof(float));
        } else {
            vlad_rng r;
            vlad_rng_seed(&r, items[i].seed);
            for (int k = 0; k < HA; k++)
                xt[k] = (float)vlad_rng_normal(&r);
        }
    }
    vlad__sync_nice(b->pool, b->n_threads, &b->caller_nice);
    double t1 = vlad__now_ms();
    vision(b, n, items);
    double t2 = vlad__now_ms();
    backbone(b, n, items);
    double t3 = vlad__now_ms();
    for (int i = 0; i < n; i++)
        for (int k = 0; k < sd; k++)
            b->e_sn[(size_t)i * sd + k] = (items[i].state[k] - w->state_mean[k]) / w->state_std[k];
    /* the state tokens: once per call, as the single path does once per chunk */
    vlad_matmul(&b->scr, b->e_state, c->expert_width, b->e_sn, sd, n, &w->state_proj,
                w->state_proj_b);
    float inv = 1.0f / (float)N;
    for (int k = 0; k < N; k++) {
        double t = 1.0 - (double)k / N;
        expert_velocity(b, n, t);
        for (size_t i = 0; i < (size_t)n * HA; i++)
            b->e_xt[i] -= b->e_vel[i] * inv;
    }
    for (size_t i = 0; i < (size_t)n * H; i++)
        for (int j = 0; j < A; j++)
            actions[i * A + j] = b->e_xt[i * A + j] * w->action_std[j] + w->action_mean[j];
    double t4 = vlad__now_ms();
    b->t.vision_ms = t2 - t1;
    b->t.prefix_ms = t3 - t1;
    b->t.flow_ms = t4 - t3;
    b->t.total_ms = t4 - t0;
    b->t.n = n;
    return VLAD_OK;
}
