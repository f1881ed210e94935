#include "engine.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"
#include "engine_internal.h"
#include "kernels.h"
#include "pool.h"
#include "quant.h"
#include "rng.h"
#include "tokenizer.h"

#define MAX_STREAMS 64

typedef struct lang_stream {
    int active, done, end_token, n_new, n_gen, next_tok, feed_tok;
    int len;          /* text bytes */
    uint8_t *text;    /* [max_text_tokens] */
} lang_stream;

struct vlad_runstate {
    const vlad_model *m;
    vlad_config c;
    int n_threads;
    vlad_pool *pool;      /* n_threads > 1: helpers for the packed GEMMs (pool.h) */
    int caller_nice;      /* nice given to the pool and OpenBLAS's threads, INT_MIN: none yet */
    vlad_kvcache *kv;
    int cur;              /* current prefix block, -1 none */
    vlad_scratch scr;     /* BF16 tiles */
    float *rope_cos, *rope_sin; /* [max_pos, head_dim/2] */
    int max_pos;
    /* vision: Mv = vlad_cfg_image_tokens rows */
    float *v_patch;       /* [Mv, patch_dim] */
    float *v_x, *v_xb, *v_q, *v_k, *v_v, *v_att, *v_tmp; /* [Mv, vit_width] */
    float *v_h;           /* [Mv, vit_mlp] */
    /* prefix: up to prefix_max rows */
    float *p_x, *p_xb, *p_tmp; /* [Smax, width] */
    float *p_q, *p_att;        /* [Smax, kv] */
    float *p_h;                /* [Smax, mlp] */
    /* expert: H1 = chunk_size + 1 rows */
    float *e_x, *e_xb, *e_tmp; /* [H1, e] */
    float *e_q, *e_k, *e_v, *e_att; /* [H1, kv] */
    float *e_h;                /* [H1, expert_mlp] */
    float *e_cat;              /* [H, 2e] */
    float *e_state;            /* [e] state token */
    float *e_sn;               /* [state_dim] */
    float *e_xt, *e_vel;       /* [H, action_dim] */
    int *e_lim;                /* [H1] */
    /* language: up to Tl rows */
    int Tl;
    float *l_x, *l_xb, *l_tmp; /* [Tl, width] */
    float *l_q, *l_k, *l_v, *l_att; /* [Tl, kv] */
    float *l_h;                /* [Tl, mlp] */
    float *l_last;             /* [max_streams+1, width] */
    float *l_logits;           /* [max_streams+1, vocab] */
    int *l_lim;                /* [Tl] */
    int *l_tok;                /* [Tl] */
    float *scores;
    size_t n_scores;      /* floats of scores */
    lang_stream *ls;
    int max_streams;
    int ignore_end;
    vlad_timing t;
    int prof;                  /* opts.profile */
    double acc[VLAD_TCAT_N];   /* per-category ms of the phase in progress */
    size_t bytes;
    void **allocs; /* every rs_alloc block, freed with the runstate; grows as needed */
    int n_allocs, cap_allocs;
};

double vlad__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
static double now_ms(void) { return vlad__now_ms(); }

/* Per-category timers (off unless opts.profile): PROF(cat, call) times one kernel call. */
#define PROF(cat, ...)                         \
    do {                                       \
        if (rs->prof) {                        \
            double t_ = now_ms();              \
            __VA_ARGS__;                       \
            rs->acc[cat] += now_ms() - t_;     \
        } else {                               \
            __VA_ARGS__;                       \
        }                                      \
    } while (0)

static void prof_begin(vlad_runstate *rs) {
    memset(rs->acc, 0, sizeof rs->acc);
    rs->scr.conv_ms = 0;
}
/* The BF16 tile conversions ran inside vlad_matmul: move them from GEMM to COPY. */
static void prof_end(vlad_runstate *rs, double *out, double div) {
    if (!rs->prof)
        return;
    rs->acc[VLAD_TCAT_GEMM] -= rs->scr.conv_ms;
    rs->acc[VLAD_TCAT_COPY] += rs->scr.conv_ms;
    for (int i = 0; i < VLAD_TCAT_N; i++)
        out[i] = rs->acc[i] / div;
}

/* A zeroed, 64-byte aligned block owned by rs (freed by vlad_runstate_free); NULL when out of
 * memory. The bookkeeping grows with the number of blocks (one per language stream among
 * them), so it never limits max_streams. */
static void *rs_alloc(vlad_runstate *rs, size_t bytes) {
    if (rs->n_allocs == rs->cap_allocs) {
        int cap = rs->cap_allocs ? 2 * rs->cap_allocs : 64;
        void **a = realloc(rs->allocs, (size_t)cap * sizeof *a);
        if (!a)
            return NULL;
        rs->allocs = a;
        rs->cap_allocs = cap;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return NULL;
    memset(p, 0, bytes ? bytes : 64);
    rs->allocs[rs->n_allocs++] = p;
    rs->bytes += bytes;
    return p;
}

size_t vlad__max_cols(const vlad_model *m) {
    const vlad_config *c = &m->cfg;
    size_t mx = (size_t)(3 * c->patch_size * c->patch_size);
    int cand[] = {c->vit_width, c->vit_mlp, c->width, c->mlp, c->expert_width * 2,
                  c->expert_mlp, vlad_cfg_kv_dim(c), c->state_dim, c->action_dim};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        if ((size_t)cand[i] > mx)
            mx = (size_t)cand[i];
    return mx;
}

/* RoPE tables, angles in double (MODEL.md: freq_i = theta^(-2i/head_dim)). */
void vlad__rope_tables(const vlad_config *c, int max_pos, float *cos_t, float *sin_t) {
    int half = c->head_dim / 2;
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            double f = pow(c->rope_theta, -2.0 * i / c->head_dim);
            double a = p * f;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

vlad_runstate *vlad_runstate_new(const vlad_model *m, const vlad_runstate_opts *opts,
                                 vlad_err *err) {
    vlad_runstate_opts o = {0};
    if (opts)
        o = *opts;
    if (o.n_threads <= 0)
        o.n_threads = 1;
    if (o.max_streams < 0 || o.max_streams > MAX_STREAMS) {
        vlad_err_set(err, VLAD_EINVAL, "runstate: max_streams %d out of range [0, %d]",
                     o.max_streams, MAX_STREAMS);
        return NULL;
    }
    if (o.n_prefix <= 0)
        o.n_prefix = o.max_streams + 2;
    vlad_runstate *rs = calloc(1, sizeof *rs);
    if (!rs) {
        vlad_err_set(err, VLAD_ENOMEM, "runstate: out of memory");
        return NULL;
    }
    rs->m = m;
    rs->c = m->cfg;
    rs->cur = -1;
    rs->caller_nice = INT_MIN;
    rs->max_streams = o.max_streams;
    rs->ignore_end = o.lang_ignore_end;
    rs->prof = rs->scr.prof = o.profile != 0;
    const vlad_config *c = &rs->c;
    rs->kv = vlad_kvcache_new(c, o.n_prefix, o.max_streams, err);
    if (!rs->kv) {
        free(rs);
        return NULL;
    }
    int P = vlad_cfg_n_patches(c), Mv = vlad_cfg_image_tokens(c), vw = c->vit_width;
    int Smax = vlad_cfg_prefix_max(c), kvd = vlad_cfg_kv_dim(c), wd = c->width;
    int e = c->expert_width, H = c->chunk_size, H1 = H + 1, A = c->action_dim;
    int Tmax = vlad_cfg_stream_max(c);
    rs->Tl = c->max_prompt_tokens + 2 > o.max_streams ? c->max_prompt_tokens + 2 : o.max_streams;
    int Tl = rs->Tl, half = c->head_dim / 2;
    rs->max_pos = Smax + (H1 > Tmax ? H1 : Tmax);
    size_t sc = zmax(zmax((size_t)P * P, (size_t)Smax * Smax),
                     zmax((size_t)H1 * (Smax + H1), (size_t)Tl * (Smax + Tmax)));
    rs->scr.cap = vlad_matmul_scratch_floats((int)vlad__max_cols(m));
    int ok = 1;
#define A_(ptr, n)                                       \
    do {                                                 \
        (ptr) = rs_alloc(rs, (size_t)(n) * sizeof *(ptr)); \
        ok = ok && (ptr) != NULL;                        \
    } while (0)
    A_(rs->scr.buf, rs->scr.cap);
    {
        int kmax = Smax > H1 ? Smax : H1;
        kmax = kmax > Tmax ? kmax : Tmax;
        rs->scr.kcap = zmax(vlad_attention_scratch_floats(P, vw / c->vit_heads),
                            vlad_attention_scratch_floats(kmax, c->head_dim));
    }
    A_(rs->scr.kbuf, rs->scr.kcap);
    A_(rs->rope_cos, (size_t)rs->max_pos * half);
    A_(rs->rope_sin, (size_t)rs->max_pos * half);
    A_(rs->v_patch, (size_t)Mv * vlad_cfg_patch_dim(c));
    A_(rs->v_x, (size_t)Mv * vw);
    A_(rs->v_xb, (size_t)Mv * vw);
    A_(rs->v_q, (size_t)Mv * vw);
    A_(rs->v_k, (size_t)Mv * vw);
    A_(rs->v_v, (size_t)Mv * vw);
    A_(rs->v_att, (size_t)Mv * vw);
    A_(rs->v_tmp, (size_t)Mv * vw);
    A_(rs->v_h, (size_t)Mv * c->vit_mlp);
    A_(rs->p_x, (size_t)Smax * wd);
    A_(rs->p_xb, (size_t)Smax * wd);
    A_(rs->p_tmp, (size_t)Smax * wd);
    A_(rs->p_q, (size_t)Smax * kvd);
    A_(rs->p_att, (size_t)Smax * kvd);
    A_(rs->p_h, (size_t)Smax * c->mlp);
    A_(rs->e_x, (size_t)H1 * e);
    A_(rs->e_xb, (size_t)H1 * e);
    A_(rs->e_tmp, (size_t)H1 * e);
    A_(rs->e_q, (size_t)H1 * kvd);
    A_(rs->e_k, (size_t)H1 * kvd);
    A_(rs->e_v, (size_t)H1 * kvd);
    A_(rs->e_att, (size_t)H1 * kvd);
    A_(rs->e_h, (size_t)H1 * c->expert_mlp);
    A_(rs->e_cat, (size_t)H * 2 * e);
    A_(rs->e_state, (size_t)e);
    A_(rs->e_sn, (size_t)c->state_dim);
    A_(rs->e_xt, (size_t)H * A);
    A_(rs->e_vel, (size_t)H * A);
    A_(rs->e_lim, (size_t)H1);
    A_(rs->l_x, (size_t)Tl * wd);
    A_(rs->l_xb, (size_t)Tl * wd);
    A_(rs->l_tmp, (size_t)Tl * wd);
    A_(rs->l_q, (size_t)Tl * kvd);
    A_(rs->l_k, (size_t)Tl * kvd);
    A_(rs->l_v, (size_t)Tl * kvd);
    A_(rs->l_att, (size_t)Tl * kvd);
    A_(rs->l_h, (size_t)Tl * c->mlp);
    A_(rs->l_last, (size_t)(o.max_streams + 1) * wd);
    A_(rs->l_logits, (size_t)(o.max_streams + 1) * c->vocab_size);
    A_(rs->l_lim, (size_t)Tl);
    A_(rs->l_tok, (size_t)Tl);
    A_(rs->scores, sc);
    rs->n_scores = sc;
    A_(rs->ls, (size_t)(o.max_streams + 1));
    for (int i = 0; ok && i < o.max_streams; i++)
        A_(rs->ls[i].text, (size_t)c->max_text_tokens);
#undef A_
    if (!ok) {
        vlad_runstate_free(rs);
        vlad_err_set(err, VLAD_ENOMEM, "runstate: out of memory");
        return NULL;
    }
    rs->bytes += rs->kv->bytes;
    vlad__rope_tables(c, rs->max_pos, rs->rope_cos, rs->rope_sin);
    rs->e_lim[0] = 1;
    for (int i = 1; i < H1; i++)
        rs->e_lim[i] = H1;
    vlad_runstate_set_threads(rs, o.n_threads);
    return rs;
}

void vlad_runstate_free(vlad_runstate *rs) {
    if (!rs)
        return;
    vlad_pool_free(rs->pool);
    vlad_kvcache_free(rs->kv);
    for (int i = 0; i < rs->n_allocs; i++)
        free(rs->allocs[i]);
    free(rs->allocs);
    free(rs);
}

size_t vlad_runstate_bytes(const vlad_runstate *rs) { return rs->bytes; }

void vlad_runstate_set_profile(vlad_runstate *rs, int on) { rs->prof = rs->scr.prof = on != 0; }

void vlad_runstate_set_threads(vlad_runstate *rs, int n_threads) {
    n_threads = n_threads < 1 ? 1 : n_threads;
    if (n_threads != vlad_pool_threads(rs->pool)) {
        vlad_pool_free(rs->pool);
        /* NULL for 1 (or failure: single-threaded); helpers get attention scratch */
        rs->pool = vlad_pool_new(n_threads, rs->scr.kcap + rs->n_scores);
        rs->caller_nice = INT_MIN;
    }
    rs->scr.pool = rs->pool;
    rs->scr.pool_scores = rs->n_scores;
    rs->n_threads = n_threads;
    vlad_blas_set_threads(rs->n_threads);
}

/* More than one thread: the helpers (ours and OpenBLAS's pool, which OpenBLAS starts before
 * main at nice 0) take the calling thread's nice, so a worker at +10 does not leave threads
 * at 0 that compete with the control thread. One getpriority per call. */
void vlad__sync_nice(vlad_pool *pool, int n_threads, int *caller_nice) {
    if (n_threads < 2)
        return;
    errno = 0;
    int n = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (errno || n == *caller_nice)
        return;
    *caller_nice = n;
    vlad_pool_set_nice(pool, n);
    vlad_blas_pool_set_nice(n);
}
static void sync_nice(vlad_runstate *rs) {
    vlad__sync_nice(rs->pool, rs->n_threads, &rs->caller_nice);
}

int vlad_runstate_prefix_len(const vlad_runstate *rs) {
    return rs->cur >= 0 ? rs->kv->prefix[rs->cur].len : -1;
}
int vlad_runstate_prefix_block(const vlad_runstate *rs) { return rs->cur; }
const vlad_kvcache *vlad_runstate_kv(const vlad_runstate *rs) { return rs->kv; }
const vlad_timing *vlad_runstate_timing(const vlad_runstate *rs) { return &rs->t; }

/* ---- vision ---------------------------------------------------------------------------- */

static void vision(vlad_runstate *rs, const uint8_t *const *images) {
    const vlad_config *c = &rs->c;
    const vlad_weights *w = &rs->m->w;
    int P = vlad_cfg_n_patches(c), Mv = vlad_cfg_image_tokens(c), ng = vlad_cfg_n_groups(c);
    int vw = c->vit_width, pp = vlad_cfg_patch_dim(c);
    int hd = vw / c->vit_heads;
    float eps = (float)c->norm_eps;
    double tp0 = rs->prof ? now_ms() : 0;
    vlad_patchify(c, images, rs->v_patch);
    if (rs->prof)
        rs->acc[VLAD_TCAT_COPY] += now_ms() - tp0;
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_x, vw, rs->v_patch, pp, Mv, &w->patch_embed,
                                     w->patch_embed_b));
    for (int t = 0; t < ng; t++)
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->v_x + (size_t)t * P * vw, w->pos_embed,
                                      (size_t)P * vw));
    for (int L = 0; L < c->vit_depth; L++) {
        const vlad_vit_block *b = &w->vit[L];
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->v_xb, rs->v_x, b->norm1, Mv, vw, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_q, vw, rs->v_xb, vw, Mv, &b->q, b->qb));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_k, vw, rs->v_xb, vw, Mv, &b->k, b->kb));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_v, vw, rs->v_xb, vw, Mv, &b->v, b->vb));
        for (int t = 0; t < ng; t++) { /* within one token set */
            size_t off = (size_t)t * P * vw;
            vlad_kvseg seg = {rs->v_k + off, rs->v_v + off, P, vw, NULL};
            PROF(VLAD_TCAT_ATTN, vlad_attention_s(&rs->scr, rs->v_att + off, vw, rs->v_q + off, vw,
                                                  P, c->vit_heads, hd, &seg, 1,
                                                  rs->scores));
        }
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_tmp, vw, rs->v_att, vw, Mv, &b->o, b->ob));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->v_x, rs->v_tmp, (size_t)Mv * vw));
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->v_xb, rs->v_x, b->norm2, Mv, vw, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_h, c->vit_mlp, rs->v_xb, vw, Mv, &b->fc1,
                                         b->fc1b));
        PROF(VLAD_TCAT_ELEM, vlad_gelu_tanh(rs->v_h, (size_t)Mv * c->vit_mlp));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->v_tmp, vw, rs->v_h, c->vit_mlp, Mv, &b->fc2,
                                         b->fc2b));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->v_x, rs->v_tmp, (size_t)Mv * vw));
    }
    PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->v_xb, rs->v_x, w->vit_norm, Mv, vw, eps));
    /* -> the first Mv rows of the prefix */
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->p_x, c->width, rs->v_xb, vw, Mv, &w->vit_proj,
                                     w->vit_proj_b));
}

/* ---- prefix ----------------------------------------------------------------------------- */

int vlad_encode_prefix(vlad_runstate *rs, const uint8_t *const *images, const char *prompt,
                       size_t prompt_len, vlad_err *err) {
    const vlad_config *c = &rs->c;
    const vlad_weights *w = &rs->m->w;
    if (!images)
        return vlad_err_set(err, VLAD_EINVAL, "encode_prefix: no images");
    for (int i = 0; i < c->n_cameras; i++)
        if (!images[i])
            return vlad_err_set(err, VLAD_EINVAL, "encode_prefix: image %d missing", i);
    if (!prompt)
        prompt_len = 0;
    if (prompt_len > (size_t)c->max_prompt_tokens)
        prompt_len = (size_t)c->max_prompt_tokens;
    int blk = vlad_kv_prefix_acquire(rs->kv);
    if (blk < 0 && rs->cur >= 0 && rs->kv->prefix[rs->cur].refs == 1) {
        blk = rs->cur; /* nobody else reads the current frame: overwrite it in place */
        rs->kv->prefix[blk].frame = ++rs->kv->frames;
    }
    if (blk < 0)
        return vlad_err_set(err, VLAD_EAGAIN,
                            "encode_prefix: all %d prefix KV blocks are held by language streams",
                            rs->kv->n_prefix);
    sync_nice(rs);
    prof_begin(rs);
    double t0 = now_ms();
    vision(rs, images);
    double t1 = now_ms();
    int Mv = vlad_cfg_image_tokens(c), wd = c->width, kvd = vlad_cfg_kv_dim(c);
    int S = Mv + 1 + (int)prompt_len;
    float eps = (float)c->norm_eps;
    int nt = vlad_tok_prompt(prompt, prompt_len, c->max_prompt_tokens, rs->l_tok);
    for (int i = 0; i < nt; i++)
        PROF(VLAD_TCAT_COPY, vlad_embed_row(w, rs->l_tok[i], wd, rs->p_x + (size_t)(Mv + i) * wd));
    for (int L = 0; L < c->depth; L++) {
        const vlad_tlayer *l = &w->vlm[L];
        float *K = vlad_kv_prefix_k(rs->kv, blk, L), *V = vlad_kv_prefix_v(rs->kv, blk, L);
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->p_xb, rs->p_x, l->attn_norm, S, wd, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->p_q, kvd, rs->p_xb, wd, S, &l->q, NULL));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, K, kvd, rs->p_xb, wd, S, &l->k, NULL));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, V, kvd, rs->p_xb, wd, S, &l->v, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_rope(K, kvd, S, c->n_heads, c->head_dim, 0, rs->rope_cos,
                                       rs->rope_sin));
        if (L == c->depth - 1)
            break; /* only the last layer's K/V are needed; its output is never read */
        PROF(VLAD_TCAT_ELEM, vlad_rope(rs->p_q, kvd, S, c->n_heads, c->head_dim, 0, rs->rope_cos,
                                       rs->rope_sin));
        vlad_kvseg seg = {K, V, S, kvd, NULL};
        PROF(VLAD_TCAT_ATTN, vlad_attention_s(&rs->scr, rs->p_att, kvd, rs->p_q, kvd, S,
                                              c->n_heads, c->head_dim, &seg, 1,
                                              rs->scores));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->p_tmp, wd, rs->p_att, kvd, S, &l->o, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->p_x, rs->p_tmp, (size_t)S * wd));
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->p_xb, rs->p_x, l->mlp_norm, S, wd, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->p_h, c->mlp, rs->p_xb, wd, S, &l->fc1,
                                         NULL));
        PROF(VLAD_TCAT_ELEM, vlad_gelu_tanh(rs->p_h, (size_t)S * c->mlp));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->p_tmp, wd, rs->p_h, c->mlp, S, &l->fc2,
                                         NULL));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->p_x, rs->p_tmp, (size_t)S * wd));
    }
    rs->kv->prefix[blk].len = S;
    if (rs->cur >= 0 && rs->cur != blk)
        vlad_kv_prefix_unref(rs->kv, rs->cur);
    rs->cur = blk;
    double t2 = now_ms();
    rs->t.vision_ms = t1 - t0;
    rs->t.backbone_ms = t2 - t1;
    rs->t.prefix_ms = t2 - t0;
    prof_end(rs, rs->t.prefix_cat_ms, 1.0);
    return blk;
}

/* ---- action expert ------------------------------------------------------------------------ */

/* One evaluation of the velocity field v(x_t, t) into rs->e_vel. e_x row 0 (the state token)
 * must hold state_proj(s_n). */
static void expert_velocity(vlad_runstate *rs, int blk, double t) {
    const vlad_config *c = &rs->c;
    const vlad_weights *w = &rs->m->w;
    int e = c->expert_width, H = c->chunk_size, H1 = H + 1, kvd = vlad_cfg_kv_dim(c);
    int half = e / 2, S = rs->kv->prefix[blk].len;
    float eps = (float)c->norm_eps;
    /* action tokens: time_mlp_out(silu(time_mlp_in([action_in(x_i), temb(t)]))) */
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_cat, 2 * e, rs->e_xt, c->action_dim, H,
                                     &w->action_in,
                                     w->action_in_b));
    double te0 = rs->prof ? now_ms() : 0;
    for (int j = 0; j < half; j++) {
        double f = pow(10000.0, -(double)j / half);
        double a = 1000.0 * t * f;
        float sv = (float)sin(a), cv = (float)cos(a);
        for (int i = 0; i < H; i++) {
            rs->e_cat[(size_t)i * 2 * e + e + j] = sv;
            rs->e_cat[(size_t)i * 2 * e + e + half + j] = cv;
        }
    }
    if (rs->prof)
        rs->acc[VLAD_TCAT_ELEM] += now_ms() - te0;
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_tmp, e, rs->e_cat, 2 * e, H, &w->time_in,
                                     w->time_in_b));
    PROF(VLAD_TCAT_ELEM, vlad_silu(rs->e_tmp, (size_t)H * e));
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_x + e, e, rs->e_tmp, e, H, &w->time_out,
                                     w->time_out_b));
    PROF(VLAD_TCAT_COPY, memcpy(rs->e_x, rs->e_state, (size_t)e * sizeof(float)));
    for (int L = 0; L < c->depth; L++) {
        const vlad_tlayer *l = &w->exp[L];
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->e_xb, rs->e_x, l->attn_norm, H1, e, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_q, kvd, rs->e_xb, e, H1, &l->q, NULL));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_k, kvd, rs->e_xb, e, H1, &l->k, NULL));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_v, kvd, rs->e_xb, e, H1, &l->v, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_rope(rs->e_q, kvd, H1, c->n_heads, c->head_dim, S, rs->rope_cos,
                                       rs->rope_sin));
        PROF(VLAD_TCAT_ELEM, vlad_rope(rs->e_k, kvd, H1, c->n_heads, c->head_dim, S, rs->rope_cos,
                                       rs->rope_sin));
        vlad_kvseg segs[2] = {
            {vlad_kv_prefix_k(rs->kv, blk, L), vlad_kv_prefix_v(rs->kv, blk, L), S, kvd, NULL},
            {rs->e_k, rs->e_v, H1, kvd, rs->e_lim},
        };
        PROF(VLAD_TCAT_ATTN, vlad_attention_s(&rs->scr, rs->e_att, kvd, rs->e_q, kvd, H1,
                                              c->n_heads, c->head_dim, segs, 2,
                                              rs->scores));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_tmp, e, rs->e_att, kvd, H1, &l->o, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->e_x, rs->e_tmp, (size_t)H1 * e));
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->e_xb, rs->e_x, l->mlp_norm, H1, e, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_h, c->expert_mlp, rs->e_xb, e, H1,
                                         &l->fc1, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_gelu_tanh(rs->e_h, (size_t)H1 * c->expert_mlp));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_tmp, e, rs->e_h, c->expert_mlp, H1,
                                         &l->fc2, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->e_x, rs->e_tmp, (size_t)H1 * e));
    }
    PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->e_xb, rs->e_x + e, w->exp_norm, H, e, eps));
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_vel, c->action_dim, rs->e_xb, e, H,
                                     &w->action_out,
                                     w->action_out_b));
}

int vlad_sample_actions(vlad_runstate *rs, const float *state, const float *noise, uint64_t seed,
                        float *actions, vlad_err *err) {
    const vlad_config *c = &rs->c;
    const vlad_weights *w = &rs->m->w;
    if (rs->cur < 0)
        return vlad_err_set(err, VLAD_ESTATE, "sample_actions: no prefix encoded");
    if (!state || !actions)
        return vlad_err_set(err, VLAD_EINVAL, "sample_actions: NULL state or actions");
    int H = c->chunk_size, A = c->action_dim, N = c->flow_steps;
    for (int i = 0; i < c->state_dim; i++)
        if (!isfinite(state[i]))
            return vlad_err_set(err, VLAD_EINVAL, "sample_actions: state[%d] is not finite", i);
    if (noise) {
        for (int i = 0; i < H * A; i++)
            if (!isfinite(noise[i]))
                return vlad_err_set(err, VLAD_EINVAL, "sample_actions: noise[%d] is not finite",
                                    i);
        PROF(VLAD_TCAT_COPY, memcpy(rs->e_xt, noise, (size_t)H * A * sizeof(float)));
    } else {
        vlad_rng r;
        vlad_rng_seed(&r, seed);
        for (int i = 0; i < H * A; i++)
            rs->e_xt[i] = (float)vlad_rng_normal(&r);
    }
    sync_nice(rs);
    prof_begin(rs);
    double t0 = now_ms();
    int blk = rs->cur;
    for (int i = 0; i < c->state_dim; i++)
        rs->e_sn[i] = (state[i] - w->state_mean[i]) / w->state_std[i];
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->e_state, c->expert_width, rs->e_sn,
                                     c->state_dim, 1,
                                     &w->state_proj, w->state_proj_b));
    for (int k = 0; k < N; k++) {
        double t = 1.0 - (double)k / N;
        expert_velocity(rs, blk, t);
        float inv = 1.0f / (float)N;
        for (int i = 0; i < H * A; i++)
            rs->e_xt[i] -= rs->e_vel[i] * inv;
    }
    for (int i = 0; i < H; i++)
        for (int j = 0; j < A; j++)
            actions[i * A + j] = rs->e_xt[i * A + j] * w->action_std[j] + w->action_mean[j];
    double t1 = now_ms();
    rs->t.sample_ms = t1 - t0;
    rs->t.flow_step_ms = (t1 - t0) / N;
    prof_end(rs, rs->t.flow_step_cat_ms, N);
    return 0;
}

/* ---- language ------------------------------------------------------------------------------ */

typedef struct lseg {
    int slot, n;
    const int *toks;
} lseg;

/* Run the backbone over nseg stream segments (rows concatenated), appending their K/V to the
 * streams' blocks; sets each stream's next_tok to the arg-max after its last row. */
static void lang_forward(vlad_runstate *rs, const lseg *segs, int nseg) {
    const vlad_config *c = &rs->c;
    const vlad_weights *w = &rs->m->w;
    vlad_kvcache *kv = rs->kv;
    int wd = c->width, kvd = vlad_cfg_kv_dim(c);
    float eps = (float)c->norm_eps;
    int M = 0;
    for (int s = 0; s < nseg; s++)
        for (int i = 0; i < segs[s].n; i++, M++)
            PROF(VLAD_TCAT_COPY,
                 vlad_embed_row(w, segs[s].toks[i], wd, rs->l_x + (size_t)M * wd));
    for (int L = 0; L < c->depth; L++) {
        const vlad_tlayer *l = &w->vlm[L];
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->l_xb, rs->l_x, l->attn_norm, M, wd, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_q, kvd, rs->l_xb, wd, M, &l->q, NULL));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_k, kvd, rs->l_xb, wd, M, &l->k, NULL));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_v, kvd, rs->l_xb, wd, M, &l->v, NULL));
        int r0 = 0;
        for (int s = 0; s < nseg; s++) {
            const lseg *g = &segs[s];
            vlad_stream_block *sb = &kv->streams[g->slot];
            int S = kv->prefix[sb->prefix].len, len = sb->len;
            float *q = rs->l_q + (size_t)r0 * kvd, *k = rs->l_k + (size_t)r0 * kvd;
            PROF(VLAD_TCAT_ELEM, vlad_rope(q, kvd, g->n, c->n_heads, c->head_dim, S + len,
                                           rs->rope_cos, rs->rope_sin));
            PROF(VLAD_TCAT_ELEM, vlad_rope(k, kvd, g->n, c->n_heads, c->head_dim, S + len,
                                           rs->rope_cos, rs->rope_sin));
            float *SK = vlad_kv_stream_k(kv, g->slot, L), *SV = vlad_kv_stream_v(kv, g->slot, L);
            PROF(VLAD_TCAT_COPY, memcpy(SK + (size_t)len * kvd, k,
                                        (size_t)g->n * kvd * sizeof(float)));
            PROF(VLAD_TCAT_COPY, memcpy(SV + (size_t)len * kvd, rs->l_v + (size_t)r0 * kvd,
                                        (size_t)g->n * kvd * sizeof(float)));
            for (int i = 0; i < g->n; i++)
                rs->l_lim[i] = len + i + 1; /* causal among the stream's own tokens */
            vlad_kvseg ks[2] = {
                {vlad_kv_prefix_k(kv, sb->prefix, L), vlad_kv_prefix_v(kv, sb->prefix, L), S, kvd,
                 NULL},
                {SK, SV, len + g->n, kvd, rs->l_lim},
            };
            PROF(VLAD_TCAT_ATTN, vlad_attention_s(&rs->scr, rs->l_att + (size_t)r0 * kvd, kvd, q,
                                                  kvd, g->n, c->n_heads,
                                                  c->head_dim, ks, 2, rs->scores));
            r0 += g->n;
        }
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_tmp, wd, rs->l_att, kvd, M, &l->o, NULL));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->l_x, rs->l_tmp, (size_t)M * wd));
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->l_xb, rs->l_x, l->mlp_norm, M, wd, eps));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_h, c->mlp, rs->l_xb, wd, M, &l->fc1,
                                         NULL));
        PROF(VLAD_TCAT_ELEM, vlad_gelu_tanh(rs->l_h, (size_t)M * c->mlp));
        PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_tmp, wd, rs->l_h, c->mlp, M, &l->fc2,
                                         NULL));
        PROF(VLAD_TCAT_ELEM, vlad_add(rs->l_x, rs->l_tmp, (size_t)M * wd));
    }
    int r = 0;
    for (int s = 0; s < nseg; s++) {
        r += segs[s].n;
        kv->streams[segs[s].slot].len += segs[s].n;
        PROF(VLAD_TCAT_ELEM, vlad_rmsnorm(rs->l_last + (size_t)s * wd,
                                          rs->l_x + (size_t)(r - 1) * wd, w->vlm_norm, 1,
                                          wd, eps));
    }
    PROF(VLAD_TCAT_GEMM, vlad_matmul(&rs->scr, rs->l_logits, c->vocab_size, rs->l_last, wd, nseg,
                                     &w->embed_mat, NULL));
    for (int s = 0; s < nseg; s++) {
        const float *lg = rs->l_logits + (size_t)s * c->vocab_size;
        int best = 0;
        for (int j = 1; j < c->vocab_size; j++)
            if (lg[j] > lg[best])
                best = j;
        rs->ls[segs[s].slot].next_tok = best;
    }
}

int vlad_lang_begin(vlad_runstate *rs, int slot, const char *question, size_t qlen,
                    vlad_err *err) {
    const vlad_config *c = &rs->c;
    if (slot < 0 || slot >= rs->max_streams)
        return vlad_err_set(err, VLAD_EINVAL, "lang_begin: slot %d out of range [0, %d)", slot,
                            rs->max_streams);
    if (rs->ls[slot].active)
        return vlad_err_set(err, VLAD_ESTATE, "lang_begin: slot %d is busy", slot);
    if (rs->cur < 0)
        return vlad_err_set(err, VLAD_ESTATE, "lang_begin: no prefix encoded");
    if (!question)
        qlen = 0;
    if (qlen > (size_t)c->max_prompt_tokens)
        qlen = (size_t)c->max_prompt_tokens;
    sync_nice(rs);
    double t0 = now_ms();
    int n = vlad_tok_question(question, qlen, c->max_prompt_tokens, rs->l_tok);
    vlad_stream_block *sb = &rs->kv->streams[slot];
    sb->prefix = rs->cur;
    sb->len = 0;
    vlad_kv_prefix_ref(rs->kv, rs->cur);
    lang_stream *st = &rs->ls[slot];
    st->active = 1;
    st->done = 0;
    st->end_token = -1;
    st->n_new = 0;
    st->n_gen = 0;
    st->len = 0;
    lseg seg = {slot, n, rs->l_tok};
    lang_forward(rs, &seg, 1);
    rs->t.lang_begin_ms = now_ms() - t0;
    return 0;
}

int vlad_lang_step(vlad_runstate *rs, int k, vlad_err *err) {
    const vlad_config *c = &rs->c;
    if (k < 0)
        return vlad_err_set(err, VLAD_EINVAL, "lang_step: k = %d", k);
    sync_nice(rs);
    prof_begin(rs);
    double t0 = now_ms();
    int tokens = 0;
    lseg segs[MAX_STREAMS];
    for (int s = 0; s < rs->max_streams; s++)
        rs->ls[s].n_new = 0;
    for (int it = 0; it < k; it++) {
        int nseg = 0;
        for (int s = 0; s < rs->max_streams; s++) {
            lang_stream *st = &rs->ls[s];
            if (!st->active || st->done)
                continue;
            int tok = st->next_tok;
            st->n_gen++;
            tokens++;
            if (tok > 255 && !rs->ignore_end) {
                st->done = 1;
                st->end_token = tok;
                continue;
            }
            if (tok <= 255) {
                st->text[st->len++] = (uint8_t)tok;
                st->n_new++;
            }
            if (st->n_gen >= c->max_text_tokens) {
                st->done = 1;
                continue;
            }
            st->feed_tok = tok;
            segs[nseg++] = (lseg){s, 1, &st->feed_tok};
        }
        if (!nseg)
            break;
        lang_forward(rs, segs, nseg);
    }
    int left = 0;
    for (int s = 0; s < rs->max_streams; s++)
        left += rs->ls[s].active && !rs->ls[s].done;
    rs->t.lang_step_ms = now_ms() - t0;
    rs->t.lang_step_tokens = tokens;
    prof_end(rs, rs->t.lang_step_cat_ms, 1.0);
    return left;
}

int vlad_lang_get(const vlad_runstate *rs, int slot, vlad_lang_info *out) {
    if (slot < 0 || slot >= rs->max_streams)
        return VLAD_EINVAL;
    const lang_stream *st = &rs->ls[slot];
    out->active = st->active;
    out->done = st->done;
    out->end_token = st->end_token;
    out->n_new = st->n_new;
    out->len = st->len;
    out->text = st->text;
    out->prefix_block = st->active ? rs->kv->streams[slot].prefix : -1;
    return 0;
}

void vlad_lang_end(vlad_runstate *rs, int slot) {
    if (slot < 0 || slot >= rs->max_streams || !rs->ls[slot].active)
        return;
    vlad_kv_prefix_unref(rs->kv, rs->kv->streams[slot].prefix);
    rs->kv->streams[slot].prefix = -1;
    rs->kv->streams[slot].len = 0;
    rs->ls[slot].active = 0;
}

int vlad_lang_generate(vlad_runstate *rs, const char *question, size_t qlen, char *out,
                       size_t cap, size_t *len, vlad_err *err) {
    int slot = -1;
    for (int s = 0; s < rs->max_streams && slot < 0; s++)
        if (!rs->ls[s].active)
            slot = s;
    if (slot < 0)
        return vlad_err_set(err, VLAD_EAGAIN, "lang_generate: no free stream slot (max_streams %d)",
                            rs->max_streams);
    int rc = vlad_lang_begin(rs, slot, question, qlen, err);
    if (rc)
        return rc;
    /* other active streams advance too: that is the batched design */
    while (!rs->ls[slot].done) {
        rc = vlad_lang_step(rs, rs->c.max_text_tokens, err);
        if (rc < 0) {
            vlad_lang_end(rs, slot);
            return rc;
        }
    }
    size_t n = (size_t)rs->ls[slot].len;
    if (cap) {
        if (n > cap - 1)
            n = cap - 1;
        memcpy(out, rs->ls[slot].text, n);
        out[n] = '\0';
    }
    if (len)
        *len = (size_t)rs->ls[slot].len;
    vlad_lang_end(rs, slot);
    return 0;
}

/* ---- FLOP counts -------------------------------------------------------------------------- */

double vlad_flops_prefix(const vlad_config *c, int S) {
    double P = vlad_cfg_n_patches(c), Mv = vlad_cfg_image_tokens(c), vw = c->vit_width;
    double kvd = vlad_cfg_kv_dim(c), wd = c->width, pp = vlad_cfg_patch_dim(c);
    double f = 2 * Mv * vw * pp;
    f += c->vit_depth * (2 * Mv * (4 * vw * vw + 2 * vw * c->vit_mlp) + 4 * vlad_cfg_n_groups(c) * P * P * vw);
    f += 2 * Mv * vw * wd;
    /* backbone: all layers' q,k,v; all but the last: attention, o, mlp */
    f += c->depth * 2 * S * 3 * wd * kvd;
    f += (c->depth - 1) * (4.0 * S * S * kvd + 2 * S * (kvd * wd + 2 * wd * c->mlp));
    return f;
}

double vlad_flops_flow_step(const vlad_config *c, int S) {
    double H = c->chunk_size, H1 = H + 1, e = c->expert_width, kvd = vlad_cfg_kv_dim(c);
    double f = 2 * H * (c->action_dim * e + 2 * e * e + e * e) + 2 * H * e * c->action_dim;
    f += c->depth * (2 * H1 * (4 * e * kvd + 2 * e * c->expert_mlp) + 4 * H1 * (S + H1) * kvd);
    return f;
}
