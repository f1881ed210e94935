/* kernels.h — the numeric building blocks of MODEL.md over OpenBLAS.
 *
 * Matrices are row-major. A Linear y = x W^T + b uses the PyTorch layout W[out, in].
 * Functions here never allocate: scratch space is passed in by the caller (the runstate). */
#ifndef VLAD_POLICY_KERNELS_H
#define VLAD_POLICY_KERNELS_H

#include <stddef.h>

#include "model.h"

/* Scratch for BF16 weight tiles converted to F32. */
typedef struct vlad_scratch {
    float *buf;
    size_t cap;     /* floats */
    int prof;       /* time the BF16 -> F32 tile conversions into conv_ms */
    double conv_ms;
    float *kbuf;    /* keys of one head packed for vlad_attention_s */
    size_t kcap;    /* floats */
    struct vlad_pool *pool; /* NULL or the runstate's pool: packed GEMMs of >= 4 MFLOP split
                               their panels over it (pool.h), attention its heads; each
                               helper's scratch: kcap floats of keys, then pool_scores */
    size_t pool_scores;
} vlad_scratch;

/* Floats of scratch that vlad_matmul needs for any BF16 or quantised (quant.h) matrix with at
 * most `cols` inputs. */
size_t vlad_matmul_scratch_floats(int cols);

/* y[M, W.rows] = x[M, W.cols] @ W^T (+ bias if non-NULL). ldx/ldy: row strides of x and y.
 * BF16 weights are converted in row tiles into `s` (which must hold
 * vlad_matmul_scratch_floats(W.cols)); F32 weights go straight to cblas_sgemm; quantised
 * ones (W->qbits) to vlad_quant_matmul (quant.h), dequantised on the fly. */
void vlad_matmul(vlad_scratch *s, float *y, int ldy, const float *x, int ldx, int M,
                 const vlad_mat *W, const float *bias);

/* The panel layout of pre-packed weights: VLAD_PACK_NR outputs per panel, [ceil(rows/NR)]
 * [cols][NR] floats, the last panel zero-padded. vlad_pack_supported: the CPU runs the packed
 * kernel (AVX-512F: 6x32 register tile; AVX2+FMA: 3x32); 0 elsewhere (then nothing is packed).
 * vlad_matmul uses W->packed when set and supported (single-threaded: meant for the few-row
 * products of the flow step). */
#define VLAD_PACK_NR 32
int vlad_pack_supported(void);
/* The kernel family in use: 2 AVX-512F, 1 AVX2+FMA, 0 none (or VLAD_PACK=0); VLAD_PACK=avx2
 * picks 1 on an AVX-512 machine. Cached at the first call. */
int vlad_pack_kind(void);
/* What vlad_model_pack_all packs: 0 nothing (VLAD_PACK=0 or no support), 1 the expert
 * (VLAD_PACK=expert), 2 (the default; VLAD_PACK=all) every Linear of vision, backbone and
 * expert (not the tied embedding / LM head). */
int vlad_pack_scope(void);
size_t vlad_pack_floats(int rows, int cols);
/* dst[vlad_pack_floats(W.rows, W.cols)] from W (F32 or BF16 data). */
void vlad_pack(float *dst, const vlad_mat *W);
/* y[M, N] = x[M, K] @ W^T (+ bias) on packed weights. Requires vlad_pack_supported(). */
void vlad_gemm_packed(float *y, int ldy, const float *x, int ldx, int M, const float *Wp, int N,
                      int K, const float *bias);

/* out[M, D] = rmsnorm(x[M, D]) * w, eps. out may equal x. */
void vlad_rmsnorm(float *out, const float *x, const float *w, int M, int D, float eps);
/* In place, n values. */
void vlad_gelu_tanh(float *x, size_t n);
void vlad_silu(float *x, size_t n);
/* y += x, n values. */
void vlad_add(float *y, const float *x, size_t n);

/* RoPE, rotate-half convention, in place on x[M, n_heads*head_dim] (row stride ld): row r is at
 * position pos0 + r. cos/sin tables are [max_pos, head_dim/2]. */
void vlad_rope(float *x, int ld, int M, int n_heads, int head_dim, int pos0, const float *cos_t,
               const float *sin_t);

/* One source of keys/values for attention: n rows of K and V with row stride ld (the head h
 * columns are [h*head_dim, (h+1)*head_dim)). row_lim: if non-NULL, query row i sees only the
 * first row_lim[i] keys of this segment; NULL: all n. */
typedef struct vlad_kvseg {
    const float *k, *v;
    int n, ld;
    const int *row_lim;
} vlad_kvseg;

/* Multi-head attention of q[Mq, n_heads*head_dim] (stride ldq) over the concatenation of the
 * segments; out[Mq, n_heads*head_dim] (stride ldo). scores: Mq * (sum of seg n) floats. */
void vlad_attention(float *out, int ldo, const float *q, int ldq, int Mq, int n_heads,
                    int head_dim, const vlad_kvseg *segs, int nseg, float *scores);

/* The same on the engine's own kernel (packed keys in s->kbuf, V read in place) when the
 * CPU supports it, head_dim % 32 == 0 and s->kbuf holds vlad_attention_scratch_floats of the
 * longest segment; otherwise exactly vlad_attention. For 1 or 2 query rows (decode) with
 * head_dim % 8 == 0 on such a CPU: direct dot products with the keys in place (AVX2). */
size_t vlad_attention_scratch_floats(int max_keys, int head_dim);
void vlad_attention_s(vlad_scratch *s, float *out, int ldo, const float *q, int ldq, int Mq,
                      int n_heads, int head_dim, const vlad_kvseg *segs, int nseg,
                      float *scores);

#endif
