#include "kernels.h"
#include "pool.h"
#include "quant.h"
#include "simd.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Hot element-wise loops are compiled twice (AVX2+FMA and baseline x86-64), picked at load
 * time by the dynamic linker (GCC target_clones / ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VLAD_SANITIZE)
#define VLAD_CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define VLAD_CLONES
#endif

#define NR VLAD_PACK_NR
#define POOL_MIN_FLOPS 4e6 /* smaller products are not worth a wake-up of the pool */
#ifndef VLAD_PACK_DEFAULT_SCOPE
#define VLAD_PACK_DEFAULT_SCOPE 2
#endif

/* BF16 tiles: about this many floats (1 MiB) per tile, at least 16 rows. */
#define TILE_FLOATS (256u * 1024u)
#define TILE_MIN_ROWS 16

static int tile_rows(int cols) {
    int r = (int)(TILE_FLOATS / (unsigned)cols);
    return r < TILE_MIN_ROWS ? TILE_MIN_ROWS : r;
}

size_t vlad_matmul_scratch_floats(int cols) {
    /* a tile never exceeds TILE_FLOATS floats, or TILE_MIN_ROWS rows of the widest matrix;
     * a quantised matmul needs one dequantised panel (quant.h) */
    size_t a = TILE_FLOATS, b = (size_t)TILE_MIN_ROWS * (size_t)cols;
    size_t q = vlad_quant_scratch_floats(cols);
    a = a > b ? a : b;
    return a > q ? a : q;
}

/* BF16 -> F32 for a contiguous, 2-byte aligned run (vectorised by the compiler). */
VLAD_CLONES
static void bf16_run(float *restrict dst, const uint16_t *restrict src, size_t n) {
    uint32_t *d = (uint32_t *)(void *)dst;
    for (size_t i = 0; i < n; i++)
        d[i] = (uint32_t)src[i] << 16;
}



/* exp(x) for x <= 0 range-reduced, branch-free (vectorisable); |rel err| < 2e-7. */
static inline float exp_fast(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } u = {.f = p};
    u.i += (int32_t)((uint32_t)(int32_t)n << 23);
    return u.f;
}

VLAD_CLONES
void vlad_rmsnorm(float *out, const float *x, const float *w, int M, int D, float eps) {
    for (int i = 0; i < M; i++) {
        const float *xr = x + (size_t)i * D;
        float *o = out + (size_t)i * D;
        float ss = 0.0f;
        for (int j = 0; j < D; j++)
            ss += xr[j] * xr[j];
        float sc = 1.0f / sqrtf(ss / (float)D + eps);
        for (int j = 0; j < D; j++)
            o[j] = xr[j] * sc * w[j];
    }
}

#ifdef HAVE_X86

AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_floor_ps(
        _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

/* x / (1 + exp(k*x')) forms, 8 lanes at a time; tails in scalar. */
AVX2 static size_t gelu_avx2(float *x, size_t n) {
    const __m256 k0 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), k1 = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_mul_ps(k0, _mm256_fmadd_ps(_mm256_mul_ps(k1, v), _mm256_mul_ps(v, v), v));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp256(u))));
    }
    return i;
}
AVX2 static size_t silu_avx2(float *x, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp256(_mm256_xor_ps(v, neg)))));
    }
    return i;
}
AVX2 static float hsum256(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}
AVX2 static float hmax256(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}
/* softmax numerator in place; returns the sum. */
AVX2 static float softmax_avx2(float *row, int n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= n; j += 8)
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(row + j));
    float mx = hmax256(vm);
    for (; j < n; j++)
        mx = row[j] > mx ? row[j] : mx;
    __m256 vs = _mm256_setzero_ps(), m8 = _mm256_set1_ps(mx);
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), m8));
        _mm256_storeu_ps(row + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    float sum = hsum256(vs);
    for (; j < n; j++) {
        float e = exp_fast(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    return sum;
}
static int have_avx2(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return v;
}

/* Attention for 1 or 2 query rows (language decode): scores as direct dot products with the
 * keys read in place (no per-head key packing, which costs more than the products at one
 * query), softmax, then out = sum_j p_j v_j. head_dim % 8 == 0. */
AVX2 static void attn_few_avx2(float *out, int ldo, const float *q, int ldq, int Mq, int n_heads,
                               int head_dim, const vlad_kvseg *segs, int nseg, float *scores,
                               int total) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int h = 0; h < n_heads; h++) {
        for (int i = 0; i < Mq; i++) {
            const float *qh = q + (size_t)i * ldq + (size_t)h * head_dim;
            float *row = scores + (size_t)i * total;
            int c0 = 0;
            for (int sg = 0; sg < nseg; sg++) {
                const vlad_kvseg *g = &segs[sg];
                int lim = g->row_lim ? g->row_lim[i] : g->n;
                for (int j = 0; j < g->n; j++) {
                    if (j >= lim) {
                        row[c0 + j] = -INFINITY;
                        continue;
                    }
                    const float *kj = g->k + (size_t)j * g->ld + (size_t)h * head_dim;
                    if (j + 4 < g->n) /* rows are ld apart: ahead of the hardware prefetcher */
                        for (int d = 0; d < head_dim; d += 16)
                            _mm_prefetch((const char *)(kj + 4 * (size_t)g->ld + d), _MM_HINT_T0);
                    __m256 acc = _mm256_setzero_ps();
                    for (int d = 0; d < head_dim; d += 8)
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(kj + d), acc);
                    row[c0 + j] = hsum256(acc) * scale;
                }
                c0 += g->n;
            }
            float inv = 1.0f / softmax_avx2(row, total);
            float *oh = out + (size_t)i * ldo + (size_t)h * head_dim;
            for (int d = 0; d < head_dim; d += 8)
                _mm256_storeu_ps(oh + d, _mm256_setzero_ps());
            c0 = 0;
            for (int sg = 0; sg < nseg; sg++) {
                const vlad_kvseg *g = &segs[sg];
                for (int j = 0; j < g->n; j++) {
                    float pj = row[c0 + j];
                    if (pj == 0.0f)
                        continue;
                    __m256 p = _mm256_set1_ps(pj * inv);
                    const float *vj = g->v + (size_t)j * g->ld + (size_t)h * head_dim;
                    if (j + 4 < g->n)
                        for (int d = 0; d < head_dim; d += 16)
                            _mm_prefetch((const char *)(vj + 4 * (size_t)g->ld + d), _MM_HINT_T0);
                    for (int d = 0; d < head_dim; d += 8)
                        _mm256_storeu_ps(oh + d, _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + d),
                                                                 _mm256_loadu_ps(oh + d)));
                }
                c0 += g->n;
            }
        }
    }
}

/* y[m, :] = x[m, :] @ W^T for M <= 4 rows straight from BF16 W (memory-bound decode and
 * small batches: reads 2 bytes per weight, no tile). K % 8 == 0. */
AVX2 static void gemv_bf16_avx2(float *y, int ldy, const float *x, int ldx, int M,
                                const uint16_t *W, int N, int K) {
    for (int n = 0; n < N; n++) {
        const uint16_t *w = W + (size_t)n * K;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        for (int k = 0; k < K; k += 8) {
            __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(w + k));
            __m256 wf = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            for (int m = 0; m < M; m++)
                acc[m] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + (size_t)m * ldx + k), acc[m]);
        }
        for (int m = 0; m < M; m++)
            y[(size_t)m * ldy + n] = hsum256(acc[m]);
    }
}
/* ---- GEMM on pre-packed weights ----------------------------------------------------------
 * y[M, N] = x[M, K] W^T with W packed in panels of 32 outputs ([panel][k][32]). Per panel
 * (32 columns of y, its K x 32 weights stay in L2 across the row blocks) the rows go in
 * blocks of MR: the MR x 32 accumulators live in registers for the whole K loop, each k
 * loads one 32-wide weight row and broadcasts MR inputs. No packing of x (it is read with
 * broadcasts) and none of W per call. */

/* Store an MR x 32 tile (nv valid columns), adding bias, and y itself when accum. */
#define STORE_TILE(MR, LANES, STOREU, LOADU, ADD, ACC)                                         \
    do {                                                                                      \
        if (nv == NR) {                                                                       \
            for (int r = 0; r < (MR); r++)                                                    \
                for (int j = 0; j < NR / (LANES); j++) {                                      \
                    float *yp = y + (size_t)r * ldy + j * (LANES);                            \
                    __typeof__(ACC[0][0]) v_ = ACC[r][j];                                     \
                    if (bias)                                                                 \
                        v_ = ADD(v_, LOADU(bias + j * (LANES)));                              \
                    if (accum)                                                                \
                        v_ = ADD(v_, LOADU(yp));                                              \
                    STOREU(yp, v_);                                                           \
                }                                                                             \
        } else {                                                                              \
            float tmp[NR];                                                                    \
            for (int r = 0; r < (MR); r++) {                                                  \
                for (int j = 0; j < NR / (LANES); j++)                                        \
                    STOREU(tmp + j * (LANES), ACC[r][j]);                                     \
                for (int j = 0; j < nv; j++) {                                                \
                    float *yp = y + (size_t)r * ldy + j;                                      \
                    *yp = (accum ? *yp : 0.0f) + tmp[j] + (bias ? bias[j] : 0.0f);            \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/* The weights of one panel: k-th row of 32 at w + k*ks (ks = NR when packed). */
#define MR512 12 /* 12 x 32 accumulators = 24 of the 32 zmm registers */
INL AVX512 void tile512(int mr, int K, const float *x, int ldx, const float *w, size_t ks,
                        float *y, int ldy, int nv, const float *bias, int accum) {
    __m512 acc[MR512][2];
    for (int r = 0; r < MR512; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 w0 = _mm512_loadu_ps(w + (size_t)k * ks);
        __m512 w1 = _mm512_loadu_ps(w + (size_t)k * ks + 16);
        for (int r = 0; r < mr; r++) {
            __m512 xb = _mm512_set1_ps(x[(size_t)r * ldx + k]);
            acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
    STORE_TILE(mr, 16, _mm512_storeu_ps, _mm512_loadu_ps, _mm512_add_ps, acc);
}

/* 1 or 2 rows (decode, the state token): 2*mr accumulators would be one FMA latency chain
 * each; U partial sums over k (k = u mod U) keep 8 chains in flight. */
INL AVX512 void tile512_small(int mr, int U, int K, const float *x, int ldx, const float *w,
                              size_t ks, float *y, int ldy, int nv, const float *bias,
                              int accum) {
    __m512 acc[4][2][2];
    for (int u = 0; u < 4; u++)
        for (int r = 0; r < 2; r++)
            acc[u][r][0] = acc[u][r][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + U <= K; k += U)
        for (int u = 0; u < U; u++) {
            const float *wk = w + (size_t)(k + u) * ks;
            __m512 w0 = _mm512_loadu_ps(wk), w1 = _mm512_loadu_ps(wk + 16);
            for (int r = 0; r < mr; r++) {
                __m512 xb = _mm512_set1_ps(x[(size_t)r * ldx + k + u]);
                acc[u][r][0] = _mm512_fmadd_ps(xb, w0, acc[u][r][0]);
                acc[u][r][1] = _mm512_fmadd_ps(xb, w1, acc[u][r][1]);
            }
        }
    for (; k < K; k++) {
        const float *wk = w + (size_t)k * ks;
        __m512 w0 = _mm512_loadu_ps(wk), w1 = _mm512_loadu_ps(wk + 16);
        for (int r = 0; r < mr; r++) {
            __m512 xb = _mm512_set1_ps(x[(size_t)r * ldx + k]);
            acc[0][r][0] = _mm512_fmadd_ps(xb, w0, acc[0][r][0]);
            acc[0][r][1] = _mm512_fmadd_ps(xb, w1, acc[0][r][1]);
        }
    }
    __m512 tot[2][2];
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 2; j++) {
            tot[r][j] = acc[0][r][j];
            for (int u = 1; u < U; u++)
                tot[r][j] = _mm512_add_ps(tot[r][j], acc[u][r][j]);
        }
    STORE_TILE(mr, 16, _mm512_storeu_ps, _mm512_loadu_ps, _mm512_add_ps, tot);
}

/* y[M, N] (+)= x[M, K] W^T (+ bias); panel p (columns p*32..) has its k-th row at
 * W + p*ps + k*ks. */
AVX512 static void gemm_panels512(float *y, int ldy, const float *x, int ldx, int M,
                                  const float *W, size_t ks, size_t ps, int N, int K,
                                  const float *bias, int accum) {
    for (int n0 = 0; n0 < N; n0 += NR) {
        const float *w = W + (size_t)(n0 / NR) * ps;
        int nv = N - n0 < NR ? N - n0 : NR;
        const float *b = bias ? bias + n0 : NULL;
        int m0 = 0;
        for (; m0 + MR512 <= M; m0 += MR512)
            tile512(MR512, K, x + (size_t)m0 * ldx, ldx, w, ks, y + (size_t)m0 * ldy + n0, ldy, nv,
                    b, accum);
        float *yt = y + (size_t)m0 * ldy + n0;
        const float *xt = x + (size_t)m0 * ldx;
        switch (M - m0) { /* constant row counts: the accumulators stay in registers */
        case 11: tile512(11, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 10: tile512(10, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 9: tile512(9, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 8: tile512(8, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 7: tile512(7, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 6: tile512(6, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 5: tile512(5, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 4: tile512(4, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 3: tile512(3, K, xt, ldx, w, ks, yt, ldy, nv, b, accum); break;
        case 2:
            if (M == 2)
                tile512_small(2, 2, K, xt, ldx, w, ks, yt, ldy, nv, b, accum);
            else
                tile512(2, K, xt, ldx, w, ks, yt, ldy, nv, b, accum);
            break;
        case 1:
            if (M == 1)
                tile512_small(1, 4, K, xt, ldx, w, ks, yt, ldy, nv, b, accum);
            else
                tile512(1, K, xt, ldx, w, ks, yt, ldy, nv, b, accum);
            break;
        default: break;
        }
    }
}

INL AVX2 void tile256(int mr, int K, const float *x, int ldx, const float *w, size_t ks,
                      float *y, int ldy, int nv, const float *bias, int accum) {
    __m256 acc[3][4];
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *wk = w + (size_t)k * ks;
        __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
        __m256 w2 = _mm256_loadu_ps(wk + 16), w3 = _mm256_loadu_ps(wk + 24);
        for (int r = 0; r < mr; r++) {
            __m256 xb = _mm256_broadcast_ss(x + (size_t)r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(xb, w2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_ps(xb, w3, acc[r][3]);
        }
    }
    STORE_TILE(mr, 8, _mm256_storeu_ps, _mm256_loadu_ps, _mm256_add_ps, acc);
}

AVX2 static void gemm_panels256(float *y, int ldy, const float *x, int ldx, int M,
                                const float *W, size_t ks, size_t ps, int N, int K,
                                const float *bias, int accum) {
    for (int n0 = 0; n0 < N; n0 += NR) {
        const float *w = W + (size_t)(n0 / NR) * ps;
        int nv = N - n0 < NR ? N - n0 : NR;
        const float *b = bias ? bias + n0 : NULL;
        int m0 = 0;
        for (; m0 + 3 <= M; m0 += 3)
            tile256(3, K, x + (size_t)m0 * ldx, ldx, w, ks, y + (size_t)m0 * ldy + n0, ldy, nv, b,
                    accum);
        float *yt = y + (size_t)m0 * ldy + n0;
        const float *xt = x + (size_t)m0 * ldx;
        if (M - m0 == 2)
            tile256(2, K, xt, ldx, w, ks, yt, ldy, nv, b, accum);
        else if (M - m0 == 1)
            tile256(1, K, xt, ldx, w, ks, yt, ldy, nv, b, accum);
    }
}

static int pack_kind(void) { /* 2 AVX-512F, 1 AVX2+FMA, 0 none; VLAD_PACK=0 turns it off, =avx2 picks AVX2 */
    static int cached = -1; /* atomic: the first calls may come from several threads */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("VLAD_PACK");
        __builtin_cpu_init();
        if (e && !strcmp(e, "0"))
            v = 0;
        else if (e && !strcmp(e, "avx2")) /* the AVX2 kernels on an AVX-512 machine (tests) */
            v = have_avx2();
        else if (__builtin_cpu_supports("avx512f"))
            v = 2;
        else
            v = have_avx2();
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

int vlad_pack_supported(void) {
#ifdef HAVE_X86
    return pack_kind() > 0;
#else
    return 0;
#endif
}

int vlad_pack_kind(void) {
#ifdef HAVE_X86
    return pack_kind();
#else
    return 0;
#endif
}

int vlad_pack_scope(void) {
    if (!vlad_pack_supported())
        return 0;
    const char *e = getenv("VLAD_PACK");
    return e && !strcmp(e, "expert") ? 1 : e && !strcmp(e, "all") ? 2 : VLAD_PACK_DEFAULT_SCOPE;
}

size_t vlad_pack_floats(int rows, int cols) {
    return (size_t)((rows + NR - 1) / NR) * NR * (size_t)cols;
}

void vlad_pack(float *dst, const vlad_mat *W) {
    int N = W->rows, K = W->cols, np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++) {
        float *d = dst + (size_t)p * K * NR;
        for (int j = 0; j < NR; j++) {
            int n = p * NR + j;
            if (n >= N) {
                for (int k = 0; k < K; k++)
                    d[(size_t)k * NR + j] = 0.0f;
            } else if (W->dtype == VLAD_DT_F32) {
                const float *src = (const float *)W->data + (size_t)n * K;
                for (int k = 0; k < K; k++)
                    d[(size_t)k * NR + j] = src[k];
            } else {
                const uint16_t *src = (const uint16_t *)W->data + (size_t)n * K;
                for (int k = 0; k < K; k++) {
                    union { uint32_t u; float f; } cv = {.u = (uint32_t)src[k] << 16};
                    d[(size_t)k * NR + j] = cv.f;
                }
            }
        }
    }
}

void vlad_gemm_packed(float *y, int ldy, const float *x, int ldx, int M, const float *Wp, int N,
                      int K, const float *bias) {
#ifdef HAVE_X86
    if (pack_kind() == 2)
        gemm_panels512(y, ldy, x, ldx, M, Wp, NR, (size_t)K * NR, N, K, bias, 0);
    else if (pack_kind() == 1)
        gemm_panels256(y, ldy, x, ldx, M, Wp, NR, (size_t)K * NR, N, K, bias, 0);
#else
    (void)y; (void)ldy; (void)x; (void)ldx; (void)M; (void)Wp; (void)N; (void)K; (void)bias;
#endif
}

void vlad_gelu_tanh(float *x, size_t n) {
    /* 0.5 v (1 + tanh(u)) = v * sigmoid(2u) = v / (1 + exp(-2u)) */
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    size_t i = 0;
#ifdef HAVE_X86
    if (have_avx2())
        i = gelu_avx2(x, n);
#endif
    for (; i < n; i++) {
        float v = x[i];
        float u = k0 * (v + k1 * v * v * v);
        x[i] = v / (1.0f + exp_fast(-2.0f * u));
    }
}

void vlad_silu(float *x, size_t n) {
    size_t i = 0;
#ifdef HAVE_X86
    if (have_avx2())
        i = silu_avx2(x, n);
#endif
    for (; i < n; i++)
        x[i] = x[i] / (1.0f + exp_fast(-x[i]));
}

static float softmax_row(float *row, int n) {
#ifdef HAVE_X86
    if (have_avx2())
        return softmax_avx2(row, n);
#endif
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        float e = exp_fast(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    return sum;
}

VLAD_CLONES
static void scale_row(float *row, int n, float s) {
    for (int j = 0; j < n; j++)
        row[j] *= s;
}

VLAD_CLONES
void vlad_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void vlad_rope(float *x, int ld, int M, int n_heads, int head_dim, int pos0, const float *cos_t,
               const float *sin_t) {
    int half = head_dim / 2;
    for (int r = 0; r < M; r++) {
        const float *c = cos_t + (size_t)(pos0 + r) * half;
        const float *s = sin_t + (size_t)(pos0 + r) * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)r * ld + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void vlad_attention(float *out, int ldo, const float *q, int ldq, int Mq, int n_heads,
                    int head_dim, const vlad_kvseg *segs, int nseg, float *scores) {
    int total = 0;
    for (int s = 0; s < nseg; s++)
        total += segs[s].n;
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int h = 0; h < n_heads; h++) {
        const float *qh = q + (size_t)h * head_dim;
        int c0 = 0;
        for (int s = 0; s < nseg; s++) {
            const vlad_kvseg *g = &segs[s];
            if (g->n > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Mq, g->n, head_dim, scale, qh,
                            ldq, g->k + (size_t)h * head_dim, g->ld, 0.0f, scores + c0, total);
            if (g->row_lim) {
                for (int i = 0; i < Mq; i++) {
                    float *row = scores + (size_t)i * total + c0;
                    for (int j = g->row_lim[i]; j < g->n; j++)
                        row[j] = -INFINITY;
                }
            }
            c0 += g->n;
        }
        for (int i = 0; i < Mq; i++) {
            float *row = scores + (size_t)i * total;
            scale_row(row, total, 1.0f / softmax_row(row, total));
        }
        c0 = 0;
        float beta = 0.0f;
        for (int s = 0; s < nseg; s++) {
            const vlad_kvseg *g = &segs[s];
            if (g->n > 0) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Mq, head_dim, g->n, 1.0f,
                            scores + c0, total, g->v + (size_t)h * head_dim, g->ld, beta,
                            out + (size_t)h * head_dim, ldo);
                beta = 1.0f;
            }
            c0 += g->n;
        }
    }
}

typedef struct {
    float *y;
    const float *x, *Wp, *bias;
    int ldy, ldx, M, N, K;
    int chunk;  /* panels per claim */
    int next;   /* atomic: next chunk to claim */
} packed_job;

/* Column panels claimed in chunks from a shared counter (pool.h: whoever is awake works). */
static void packed_part(void *a, int part, int n) {
    (void)part;
    (void)n;
    packed_job *j = a;
    int np = (j->N + NR - 1) / NR;
    for (;;) {
        int p0 = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED) * j->chunk;
        if (p0 >= np)
            break;
        int p1 = p0 + j->chunk < np ? p0 + j->chunk : np;
        int n0 = p0 * NR, n1 = p1 * NR < j->N ? p1 * NR : j->N;
        vlad_gemm_packed(j->y + n0, j->ldy, j->x, j->ldx, j->M, j->Wp + (size_t)p0 * j->K * NR,
                         n1 - n0, j->K, j->bias ? j->bias + n0 : NULL);
    }
}

/* Dispatch of the panel GEMM (requires pack_kind() > 0). */
static void gemm_panels(float *y, int ldy, const float *x, int ldx, int M, const float *W,
                        size_t ks, size_t ps, int N, int K, int accum) {
#ifdef HAVE_X86
    if (pack_kind() == 2)
        gemm_panels512(y, ldy, x, ldx, M, W, ks, ps, N, K, NULL, accum);
    else
        gemm_panels256(y, ldy, x, ldx, M, W, ks, ps, N, K, NULL, accum);
#else
    (void)y; (void)ldy; (void)x; (void)ldx; (void)M; (void)W; (void)ks; (void)ps; (void)N;
    (void)K; (void)accum;
#endif
}

/* dst[panel][k][32] = src[row][k] for rows 0..N-1 (row stride ld), K columns, zero-padded. */
static void pack_rows(float *dst, const float *src, int ld, int N, int K) {
    int np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++) {
        float *d = dst + (size_t)p * K * NR;
        for (int j = 0; j < NR; j++) {
            int n = p * NR + j;
            if (n >= N) {
                for (int k = 0; k < K; k++)
                    d[(size_t)k * NR + j] = 0.0f;
            } else {
                const float *r = src + (size_t)n * ld;
                for (int k = 0; k < K; k++)
                    d[(size_t)k * NR + j] = r[k];
            }
        }
    }
}

size_t vlad_attention_scratch_floats(int max_keys, int head_dim) {
    return vlad_pack_floats(max_keys, head_dim);
}

/* Heads h0..h1-1 of vlad_attention_s with the given key buffer and scores rows. */
static void attn_heads(float *kbuf, float *scores, int h0, int h1, float *out, int ldo,
                       const float *q, int ldq, int Mq, int head_dim, const vlad_kvseg *segs,
                       int nseg, int total) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (size_t)h * head_dim;
        int c0 = 0;
        for (int s = 0; s < nseg; s++) {
            const vlad_kvseg *g = &segs[s];
            if (g->n > 0) {
                /* scores = q_h K_h^T: the keys packed as the "weights" (n x head_dim) */
                pack_rows(kbuf, g->k + (size_t)h * head_dim, g->ld, g->n, head_dim);
                gemm_panels(scores + c0, total, qh, ldq, Mq, kbuf, NR, (size_t)head_dim * NR,
                            g->n, head_dim, 0);
            }
            if (g->row_lim) {
                for (int i = 0; i < Mq; i++) {
                    float *row = scores + (size_t)i * total + c0;
                    for (int j = g->row_lim[i]; j < g->n; j++)
                        row[j] = -INFINITY;
                }
            }
            c0 += g->n;
        }
        for (int i = 0; i < Mq; i++) {
            float *row = scores + (size_t)i * total;
            scale_row(row, total, scale);
            scale_row(row, total, 1.0f / softmax_row(row, total));
        }
        c0 = 0;
        int accum = 0;
        for (int s = 0; s < nseg; s++) {
            const vlad_kvseg *g = &segs[s];
            if (g->n > 0) {
                /* out_h (+)= P V_h: V's rows are already panels of 32 head columns */
                gemm_panels(out + (size_t)h * head_dim, ldo, scores + c0, total, Mq,
                            g->v + (size_t)h * head_dim, (size_t)g->ld, NR, head_dim, g->n, accum);
                accum = 1;
            }
            c0 += g->n;
        }
    }
}

typedef struct {
    vlad_scratch *sc;
    float *out, *scores;
    const float *q;
    int ldo, ldq, Mq, n_heads, head_dim, nseg, total;
    const vlad_kvseg *segs;
    int next; /* atomic: next head to claim */
} attn_job;

/* Heads claimed one at a time from a shared counter, each part with its own buffers. */
static void attn_part(void *a, int part, int n) {
    (void)n;
    attn_job *j = a;
    float *kbuf = j->sc->kbuf, *scores = j->scores;
    if (part > 0) { /* the helper's own buffers: keys, then scores */
        kbuf = vlad_pool_scratch(j->sc->pool, part);
        scores = kbuf + j->sc->kcap;
    }
    for (;;) {
        int h = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (h >= j->n_heads)
            break;
        attn_heads(kbuf, scores, h, h + 1, j->out, j->ldo, j->q, j->ldq, j->Mq, j->head_dim,
                   j->segs, j->nseg, j->total);
    }
}

void vlad_attention_s(vlad_scratch *sc, float *out, int ldo, const float *q, int ldq, int Mq,
                      int n_heads, int head_dim, const vlad_kvseg *segs, int nseg,
                      float *scores) {
    int total = 0, maxn = 0;
    for (int s = 0; s < nseg; s++) {
        total += segs[s].n;
        maxn = segs[s].n > maxn ? segs[s].n : maxn;
    }
#ifdef HAVE_X86
    if (Mq <= 2 && head_dim % 8 == 0 && vlad_pack_supported() && have_avx2()) {
        attn_few_avx2(out, ldo, q, ldq, Mq, n_heads, head_dim, segs, nseg, scores, total);
        return;
    }
#endif
    if (!vlad_pack_supported() || head_dim % NR != 0 || !sc->kbuf ||
        vlad_pack_floats(maxn, head_dim) > sc->kcap) {
        vlad_attention(out, ldo, q, ldq, Mq, n_heads, head_dim, segs, nseg, scores);
        return;
    }
    /* heads split over the pool when it has room for this call's scores */
    double flops = 4.0 * Mq * total * head_dim * n_heads;
    if (sc->pool && n_heads > 1 && flops >= POOL_MIN_FLOPS && vlad_pool_scratch(sc->pool, 1) &&
        (size_t)Mq * total <= sc->pool_scores) {
        attn_job j = {sc, out, scores, q, ldo, ldq, Mq, n_heads, head_dim, nseg, total, segs, 0};
        vlad_pool_run(sc->pool, attn_part, &j);
        return;
    }
    attn_heads(sc->kbuf, scores, 0, n_heads, out, ldo, q, ldq, Mq, head_dim, segs, nseg, total);
}

void vlad_matmul(vlad_scratch *s, float *y, int ldy, const float *x, int ldx, int M,
                 const vlad_mat *W, const float *bias) {
    int N = W->rows, K = W->cols;
    if (W->qbits) {
        vlad_quant_matmul(s, y, ldy, x, ldx, M, W, bias);
        return;
    }
    if (W->packed && vlad_pack_supported()) {
        if (s->pool && 2.0 * M * N * K >= POOL_MIN_FLOPS && N > NR) {
            int np = (N + NR - 1) / NR, nt = vlad_pool_threads(s->pool);
            int chunk = np / (4 * nt); /* ~4 claims per thread: balance without contention */
            packed_job j = {y, x, W->packed, bias, ldy, ldx, M, N, K, chunk < 1 ? 1 : chunk, 0};
            vlad_pool_run(s->pool, packed_part, &j);
        } else {
            vlad_gemm_packed(y, ldy, x, ldx, M, W->packed, N, K, bias);
        }
        return;
    }
    if (W->dtype == VLAD_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, ldx,
                    (const float *)W->data, K, 0.0f, y, ldy);
    }
#ifdef HAVE_X86
    else if (M <= 4 && K % 8 == 0 && have_avx2()) {
        gemv_bf16_avx2(y, ldy, x, ldx, M, W->data, N, K);
    }
#endif
    else {
        const uint16_t *src = W->data;
        int tr = tile_rows(K);
        for (int r0 = 0; r0 < N; r0 += tr) {
            int nr = N - r0 < tr ? N - r0 : tr;
            if (s->prof) {
                struct timespec a, b;
                clock_gettime(CLOCK_MONOTONIC, &a);
                bf16_run(s->buf, src + (size_t)r0 * K, (size_t)nr * K);
                clock_gettime(CLOCK_MONOTONIC, &b);
                s->conv_ms += (double)(b.tv_sec - a.tv_sec) * 1e3 +
                              (double)(b.tv_nsec - a.tv_nsec) * 1e-6;
            } else {
                bf16_run(s->buf, src + (size_t)r0 * K, (size_t)nr * K);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nr, K, 1.0f, x, ldx, s->buf,
                        K, 0.0f, y + r0, ldy);
        }
    }
    if (bias) {
        for (int i = 0; i < M; i++) {
            float *yr = y + (size_t)i * ldy;
            for (int j = 0; j < N; j++)
                yr[j] += bias[j];
        }
    }
}
