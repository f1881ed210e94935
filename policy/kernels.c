#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Hot element-wise loops are compiled twice (AVX2+FMA and baseline x86-64), picked at load
 * time by the dynamic linker (GCC target_clones / ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VLAD_SANITIZE)
#define VLAD_CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define VLAD_CLONES
#endif

/* BF16 tiles: about this many floats (1 MiB) per tile, at least 16 rows. */
#define TILE_FLOATS (256u * 1024u)
#define TILE_MIN_ROWS 16

static int tile_rows(int cols) {
    int r = (int)(TILE_FLOATS / (unsigned)cols);
    return r < TILE_MIN_ROWS ? TILE_MIN_ROWS : r;
}

size_t vlad_matmul_scratch_floats(int cols) {
    /* a tile never exceeds TILE_FLOATS floats, or TILE_MIN_ROWS rows of the widest matrix */
    size_t a = TILE_FLOATS, b = (size_t)TILE_MIN_ROWS * (size_t)cols;
    return a > b ? a : b;
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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#define AVX2 __attribute__((target("avx2,fma")))

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
#endif

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

void vlad_matmul(vlad_scratch *s, float *y, int ldy, const float *x, int ldx, int M,
                 const vlad_mat *W, const float *bias) {
    int N = W->rows, K = W->cols;
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
            bf16_run(s->buf, src + (size_t)r0 * K, (size_t)nr * K);
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
