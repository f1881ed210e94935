#include "quant.h"
#include "simd.h"

#include <cblas.h>
#include <string.h>

#define NR VLAD_PACK_NR

/* bytes per input row of a panel */
static inline size_t panel_cb(int bits) {
    return bits == 8 ? NR : bits == 4 ? NR / 2 : 2 * NR;
}

size_t vlad_quant_codes_bytes(int bits, int rows, int cols) {
    size_t np = (size_t)((rows + NR - 1) / NR);
    return np * (size_t)cols * panel_cb(bits);
}

void vlad_quant_pack_bf16(uint8_t *codes, int rows, int cols, const void *src) {
    int np = (rows + NR - 1) / NR;
    const unsigned char *sb = src;
    for (int p = 0; p < np; p++) {
        uint16_t *cp = (uint16_t *)(void *)(codes + (size_t)p * cols * 2 * NR);
        for (int j = 0; j < NR; j++) {
            int n = p * NR + j;
            for (int k = 0; k < cols; k++) {
                uint16_t v = 0;
                if (n < rows)
                    memcpy(&v, sb + ((size_t)n * cols + k) * 2, 2);
                cp[(size_t)k * NR + j] = v;
            }
        }
    }
}

size_t vlad_quant_scale_floats(int rows, int cols, int group) {
    size_t np = (size_t)((rows + NR - 1) / NR);
    return np * (size_t)(cols / group) * NR;
}

size_t vlad_quant_scratch_floats(int cols) {
    /* one dequantised panel [cols][32], or x ⊘ s for up to QM_MAX rows; + alignment slack */
    return (size_t)NR * (size_t)cols + 16;
}

void vlad_quant_pack(uint8_t *codes, float *scales, int bits, int rows, int cols, int group,
                     const uint8_t *src_codes, const void *src_scales) {
    int np = (rows + NR - 1) / NR, ng = cols / group;
    size_t cb = bits == 8 ? NR : NR / 2; /* bytes per k in a panel */
    const unsigned char *ss = src_scales;
    for (int p = 0; p < np; p++) {
        uint8_t *cp = codes + (size_t)p * cols * cb;
        float *sp = scales + (size_t)p * ng * NR;
        if (bits == 4)
            memset(cp, 0x88, (size_t)cols * cb); /* padding: nibble 8 = value 0 */
        for (int j = 0; j < NR; j++) {
            int n = p * NR + j;
            if (n >= rows) {
                for (int g = 0; g < ng; g++)
                    sp[(size_t)g * NR + j] = 0.0f;
                if (bits == 8)
                    for (int k = 0; k < cols; k++)
                        cp[(size_t)k * NR + j] = 0;
                continue;
            }
            for (int g = 0; g < ng; g++) {
                float v;
                memcpy(&v, ss + ((size_t)n * ng + g) * sizeof(float), sizeof v);
                sp[(size_t)g * NR + j] = v;
            }
            if (bits == 8) {
                const uint8_t *r = src_codes + (size_t)n * cols;
                for (int k = 0; k < cols; k++)
                    cp[(size_t)k * NR + j] = (uint8_t)(int8_t)((int)r[k] - 128);
            } else {
                const uint8_t *r = src_codes + (size_t)n * (cols / 2);
                for (int k = 0; k < cols; k++) {
                    unsigned nib = (k & 1) ? (unsigned)(r[k >> 1] >> 4) : (unsigned)(r[k >> 1] & 15);
                    uint8_t *b = cp + (size_t)k * (NR / 2) + (j & 15);
                    if (j < 16)
                        *b = (uint8_t)((*b & 0xF0) | nib);
                    else
                        *b = (uint8_t)((*b & 0x0F) | (nib << 4));
                }
            }
        }
    }
}

/* code value of (panel-local output j, input k) */
static inline float bf16_at(const vlad_mat *W, int p, int j, int k) {
    const uint16_t *c = (const uint16_t *)(const void *)W->qcodes;
    return vlad_bf16_to_f32(c[((size_t)p * W->cols + k) * NR + j]);
}

static inline int code_at(const vlad_mat *W, int p, int j, int k) {
    int K = W->cols;
    if (W->qbits == 8)
        return (int8_t)W->qcodes[((size_t)p * K + k) * NR + j];
    uint8_t b = W->qcodes[((size_t)p * K + k) * (NR / 2) + (j & 15)];
    return (int)(j < 16 ? (b & 15) : (b >> 4)) - 8;
}

float vlad_quant_at(const vlad_mat *W, int n, int k) {
    int p = n / NR, j = n % NR, ng = W->cols / W->qgroup;
    if (W->qbits == 16)
        return bf16_at(W, p, j, k);
    float sc = W->qscale[((size_t)p * ng + k / W->qgroup) * NR + j];
    return (float)code_at(W, p, j, k) * sc;
}

void vlad_quant_row(const vlad_mat *W, int row, float *dst) {
    for (int k = 0; k < W->cols; k++) {
        float v = vlad_quant_at(W, row, k);
        dst[k] = W->qinv ? v * W->qinv[k] : v;
    }
}

void vlad_mat_row(const vlad_mat *W, int row, float *dst) {
    if (W->qbits) {
        vlad_quant_row(W, row, dst);
    } else if (W->data && W->dtype == VLAD_DT_F32) {
        memcpy(dst, (const float *)W->data + (size_t)row * W->cols, (size_t)W->cols * sizeof(float));
    } else if (W->data && W->dtype == VLAD_DT_BF16) {
        vlad_bf16_to_f32_n(dst, (const uint16_t *)W->data + (size_t)row * W->cols, (size_t)W->cols);
    } else if (W->packed) {
        for (int k = 0; k < W->cols; k++)
            dst[k] = W->packed[((size_t)(row / NR) * W->cols + k) * NR + row % NR];
    }
}

const char *vlad_mat_kind(const vlad_mat *W) {
    return W->qbits == 8    ? "Q8"
           : W->qbits == 4  ? "Q4"
           : W->qbits == 16 ? "BF16 panels"
                            : vlad_dtype_name(W->dtype);
}

/* ---- panel dequantisation (all paths) ------------------------------------------------------
 * dst[k][32] = code(k, j) * scale(k/G, j) * qinv[k]  (the effective weights of one panel). */
static void deq_panel_scalar(float *restrict dst, const vlad_mat *W, int p) {
    int K = W->cols, G = W->qgroup, ng = K / G;
    const float *sp = W->qscale + (size_t)p * ng * NR;
    for (int k = 0; k < K; k++) {
        float *d = dst + (size_t)k * NR;
        if (W->qbits == 16) {
            for (int j = 0; j < NR; j++)
                d[j] = bf16_at(W, p, j, k);
            continue;
        }
        const float *sc = sp + (size_t)(k / G) * NR;
        float inv = W->qinv ? W->qinv[k] : 1.0f;
        if (W->qbits == 8) {
            const int8_t *c = (const int8_t *)(W->qcodes + ((size_t)p * K + k) * NR);
            for (int j = 0; j < NR; j++)
                d[j] = (float)c[j] * sc[j] * inv;
        } else {
            const uint8_t *c = W->qcodes + ((size_t)p * K + k) * (NR / 2);
            for (int j = 0; j < 16; j++) {
                d[j] = (float)((int)(c[j] & 15) - 8) * sc[j] * inv;
                d[j + 16] = (float)((int)(c[j] >> 4) - 8) * sc[j + 16] * inv;
            }
        }
    }
}

/* x ⊘ s (x * qinv) for M rows into dst (row stride K). */
__attribute__((unused)) static void scale_x(float *restrict dst, const float *x, int ldx, int M, int K,
                    const float *inv) {
    for (int r = 0; r < M; r++)
        for (int k = 0; k < K; k++)
            dst[(size_t)r * K + k] = x[(size_t)r * ldx + k] * inv[k];
}

static void store_tile_scalar(float *y, int ldy, const float *acc, int mr, int nv,
                              const float *bias) {
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nv; j++)
            y[(size_t)r * ldy + j] = acc[r * NR + j] + (bias ? bias[j] : 0.0f);
}

#ifdef HAVE_X86
#define QPF 4096 /* prefetch distance (bytes of codes) of the few-row kernels */

/* 32 weights of row k of a panel as floats (unscaled code values). */
INL AVX512 void deq512(int bits, const uint8_t *c, __m512 *w0, __m512 *w1) {
    if (bits == 16) {
        *w0 = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)c)), 16));
        *w1 = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(c + 32))), 16));
    } else if (bits == 8) {
        *w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)c)));
        *w1 = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(c + 16))));
    } else {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)c));
        __m512i e = _mm512_set1_epi32(8), m = _mm512_set1_epi32(15);
        *w0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m), e));
        *w1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), e));
    }
}

/* Raw code values of row k as floats: Q8 signed, Q4 the nibble 0..15 (the - 8 is applied per
 * group through the row sums of x, below). */
INL AVX512 void raw512(int bits, const uint8_t *c, __m512 *w0, __m512 *w1) {
    if (bits == 16) {
        deq512(16, c, w0, w1);
    } else if (bits == 8) {
        deq512(8, c, w0, w1);
    } else {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)c));
        *w0 = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)));
        *w1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
    }
}

/* Store an mr x 32 register tile (acc[r][0..1]) as y[mr, nv] (+ bias). mr <= QM512. */
INL AVX512 void store_tile512(float *y, int ldy, __m512 (*acc)[2], int mr, int nv,
                              const float *bias) {
    if (nv == NR) {
        for (int r = 0; r < mr; r++) {
            float *yp = y + (size_t)r * ldy;
            __m512 v0 = acc[r][0], v1 = acc[r][1];
            if (bias) {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(bias));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(bias + 16));
            }
            _mm512_storeu_ps(yp, v0);
            _mm512_storeu_ps(yp + 16, v1);
        }
    } else {
        float tmp[12 * NR]; /* QM512 rows, the most of any tile here */
        for (int r = 0; r < mr; r++) {
            _mm512_storeu_ps(tmp + r * NR, acc[r][0]);
            _mm512_storeu_ps(tmp + r * NR + 16, acc[r][1]);
        }
        store_tile_scalar(y, ldy, tmp, mr, nv, bias);
    }
}

/* Few rows (decode, the state token): per group, accumulate x · code unscaled (two chains
 * over k for <= 2 rows), then total += scale · (acc − 8 · Σx) once per group. xsum[r][g]:
 * the sums of x over each group (Q4 only). */
#define QS512 4
INL AVX512 void qtile512s(int bits, int mr, int K, int G, const float *x, int ldx,
                          const float *xsum, const uint8_t *codes, const float *sc, float *y,
                          int ldy, int nv, const float *bias) {
    const size_t cb = panel_cb(bits);
    const int ng = K / G, two = mr <= 2 && G % 2 == 0;
    __m512 tot[QS512][2];
    for (int r = 0; r < QS512; r++)
        tot[r][0] = tot[r][1] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512 ga[QS512][2], gb[2][2];
        for (int r = 0; r < QS512; r++)
            ga[r][0] = ga[r][1] = _mm512_setzero_ps();
        gb[0][0] = gb[0][1] = gb[1][0] = gb[1][1] = _mm512_setzero_ps();
        const uint8_t *cg = codes + (size_t)g * G * cb;
        const float *xg = x + (size_t)g * G;
        /* streaming from DRAM at one row: prefetch QPF bytes ahead (the hardware prefetcher
         * alone left a DRAM-resident Q4 decode at ~40% of the memory bandwidth) */
        for (size_t o = 0; o < (size_t)G * cb; o += 64)
            _mm_prefetch((const char *)(cg + QPF + o), _MM_HINT_T0);
        if (sc) {
            _mm_prefetch((const char *)(sc + (size_t)g * NR + QPF / 4), _MM_HINT_T0);
            _mm_prefetch((const char *)(sc + (size_t)g * NR + QPF / 4 + 16), _MM_HINT_T0);
        }
        if (two) {
            for (int k = 0; k < G; k += 2) {
                __m512 a0, a1, b0, b1;
                raw512(bits, cg + (size_t)k * cb, &a0, &a1);
                raw512(bits, cg + (size_t)(k + 1) * cb, &b0, &b1);
                for (int r = 0; r < mr; r++) {
                    __m512 xa = _mm512_set1_ps(xg[(size_t)r * ldx + k]);
                    __m512 xb = _mm512_set1_ps(xg[(size_t)r * ldx + k + 1]);
                    ga[r][0] = _mm512_fmadd_ps(xa, a0, ga[r][0]);
                    ga[r][1] = _mm512_fmadd_ps(xa, a1, ga[r][1]);
                    gb[r][0] = _mm512_fmadd_ps(xb, b0, gb[r][0]);
                    gb[r][1] = _mm512_fmadd_ps(xb, b1, gb[r][1]);
                }
            }
            for (int r = 0; r < mr; r++) {
                ga[r][0] = _mm512_add_ps(ga[r][0], gb[r][0]);
                ga[r][1] = _mm512_add_ps(ga[r][1], gb[r][1]);
            }
        } else {
            for (int k = 0; k < G; k++) {
                __m512 a0, a1;
                raw512(bits, cg + (size_t)k * cb, &a0, &a1);
                for (int r = 0; r < mr; r++) {
                    __m512 xa = _mm512_set1_ps(xg[(size_t)r * ldx + k]);
                    ga[r][0] = _mm512_fmadd_ps(xa, a0, ga[r][0]);
                    ga[r][1] = _mm512_fmadd_ps(xa, a1, ga[r][1]);
                }
            }
        }
        if (bits == 16) { /* BF16 panels: one group, no scale */
            for (int r = 0; r < mr; r++) {
                tot[r][0] = _mm512_add_ps(tot[r][0], ga[r][0]);
                tot[r][1] = _mm512_add_ps(tot[r][1], ga[r][1]);
            }
            continue;
        }
        const float *s = sc + (size_t)g * NR;
        __m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
        for (int r = 0; r < mr; r++) {
            __m512 a0 = ga[r][0], a1 = ga[r][1];
            if (bits == 4) {
                __m512 c = _mm512_set1_ps(8.0f * xsum[(size_t)r * ng + g]);
                a0 = _mm512_sub_ps(a0, c);
                a1 = _mm512_sub_ps(a1, c);
            }
            tot[r][0] = _mm512_fmadd_ps(s0, a0, tot[r][0]);
            tot[r][1] = _mm512_fmadd_ps(s1, a1, tot[r][1]);
        }
    }
    store_tile512(y, ldy, tot, mr, nv, bias);
}

#define QM512 12
/* y[mr, nv] = x[mr, K] · panel p of W (fused: dequantise row k, scale, FMA into mr x 32
 * accumulators). x already divided by s. */
INL AVX512 void qtile512(int bits, int mr, int K, int G, const float *x, int ldx,
                         const uint8_t *codes, const float *sc, float *y, int ldy, int nv,
                         const float *bias) {
    const size_t cb = panel_cb(bits);
    __m512 acc[QM512][2], acc2[2][2];
    for (int r = 0; r < QM512; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    acc2[0][0] = acc2[0][1] = acc2[1][0] = acc2[1][1] = _mm512_setzero_ps();
    for (int g0 = 0; g0 < K; g0 += G) {
        __m512 s0 = _mm512_set1_ps(1.0f), s1 = s0;
        if (bits != 16) {
            const float *s = sc + (size_t)(g0 / G) * NR;
            s0 = _mm512_loadu_ps(s);
            s1 = _mm512_loadu_ps(s + 16);
        }
        if (mr <= 2 && G % 2 == 0) { /* two chains per accumulator (k even / odd) */
            for (int k = g0; k < g0 + G; k += 2) {
                __m512 a0, a1, b0, b1;
                deq512(bits, codes + (size_t)k * cb, &a0, &a1);
                deq512(bits, codes + (size_t)(k + 1) * cb, &b0, &b1);
                a0 = _mm512_mul_ps(a0, s0);
                a1 = _mm512_mul_ps(a1, s1);
                b0 = _mm512_mul_ps(b0, s0);
                b1 = _mm512_mul_ps(b1, s1);
                for (int r = 0; r < mr; r++) {
                    __m512 xa = _mm512_set1_ps(x[(size_t)r * ldx + k]);
                    __m512 xb = _mm512_set1_ps(x[(size_t)r * ldx + k + 1]);
                    acc[r][0] = _mm512_fmadd_ps(xa, a0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(xa, a1, acc[r][1]);
                    acc2[r][0] = _mm512_fmadd_ps(xb, b0, acc2[r][0]);
                    acc2[r][1] = _mm512_fmadd_ps(xb, b1, acc2[r][1]);
                }
            }
        } else {
            for (int k = g0; k < g0 + G; k++) {
                __m512 w0, w1;
                deq512(bits, codes + (size_t)k * cb, &w0, &w1);
                w0 = _mm512_mul_ps(w0, s0);
                w1 = _mm512_mul_ps(w1, s1);
                for (int r = 0; r < mr; r++) {
                    __m512 xb = _mm512_set1_ps(x[(size_t)r * ldx + k]);
                    acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
                }
            }
        }
    }
    if (mr <= 2 && G % 2 == 0)
        for (int r = 0; r < mr; r++) {
            acc[r][0] = _mm512_add_ps(acc[r][0], acc2[r][0]);
            acc[r][1] = _mm512_add_ps(acc[r][1], acc2[r][1]);
        }
    store_tile512(y, ldy, acc, mr, nv, bias);
}

#define Q512_CASE(B, R)                                                                     \
    case R: qtile512(B, R, K, G, x, ldx, codes, sc, y, ldy, nv, bias); break;
#define Q512_SWITCH(B)                                                                      \
    switch (mr) {                                                                           \
        Q512_CASE(B, 1) Q512_CASE(B, 2) Q512_CASE(B, 3) Q512_CASE(B, 4) Q512_CASE(B, 5)     \
        Q512_CASE(B, 6) Q512_CASE(B, 7) Q512_CASE(B, 8) Q512_CASE(B, 9) Q512_CASE(B, 10)    \
        Q512_CASE(B, 11) Q512_CASE(B, 12) default: break;                                   \
    }

#define QS512_CASE(B, R)                                                                    \
    case R: qtile512s(B, R, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias); break;

AVX512 static void qgemm512(float *y0, int ldy, const float *x, int ldx, int mr,
                            const vlad_mat *W, const float *bias0, const float *xsum) {
    int N = W->rows, K = W->cols, G = W->qgroup, ng = K / G;
    size_t cb = panel_cb(W->qbits);
    for (int n0 = 0; n0 < N; n0 += NR) {
        int p = n0 / NR, nv = N - n0 < NR ? N - n0 : NR;
        const uint8_t *codes = W->qcodes + (size_t)p * K * cb;
        const float *sc = W->qscale ? W->qscale + (size_t)p * ng * NR : NULL;
        const float *bias = bias0 ? bias0 + n0 : NULL;
        float *y = y0 + n0;
        if (mr <= QS512) {
            if (W->qbits == 16) {
                switch (mr) { QS512_CASE(16, 1) QS512_CASE(16, 2) QS512_CASE(16, 3) QS512_CASE(16, 4) default: break; }
            } else if (W->qbits == 8) {
                switch (mr) { QS512_CASE(8, 1) QS512_CASE(8, 2) QS512_CASE(8, 3) QS512_CASE(8, 4) default: break; }
            } else {
                switch (mr) { QS512_CASE(4, 1) QS512_CASE(4, 2) QS512_CASE(4, 3) QS512_CASE(4, 4) default: break; }
            }
            continue;
        }
        if (W->qbits == 16) {
            Q512_SWITCH(16)
        } else if (W->qbits == 8) {
            Q512_SWITCH(8)
        } else {
            Q512_SWITCH(4)
        }
    }
}

AVX512 static void deq_panel512(float *restrict dst, const vlad_mat *W, int p) {
    int K = W->cols, G = W->qgroup, ng = K / G, bits = W->qbits;
    size_t cb = panel_cb(bits);
    const uint8_t *codes = W->qcodes + (size_t)p * K * cb;
    if (bits == 16) {
        for (int k = 0; k < K; k++) {
            __m512 w0, w1;
            deq512(16, codes + (size_t)k * cb, &w0, &w1);
            _mm512_storeu_ps(dst + (size_t)k * NR, w0);
            _mm512_storeu_ps(dst + (size_t)k * NR + 16, w1);
        }
        return;
    }
    const float *sp = W->qscale + (size_t)p * ng * NR;
    for (int k = 0; k < K; k++) {
        const float *s = sp + (size_t)(k / G) * NR;
        __m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16), w0, w1;
        if (W->qinv) {
            __m512 iv = _mm512_set1_ps(W->qinv[k]);
            s0 = _mm512_mul_ps(s0, iv);
            s1 = _mm512_mul_ps(s1, iv);
        }
        if (bits == 8)
            deq512(8, codes + (size_t)k * cb, &w0, &w1);
        else
            deq512(4, codes + (size_t)k * cb, &w0, &w1);
        _mm512_storeu_ps(dst + (size_t)k * NR, _mm512_mul_ps(w0, s0));
        _mm512_storeu_ps(dst + (size_t)k * NR + 16, _mm512_mul_ps(w1, s1));
    }
}

/* AVX2: 32 weights as four 8-lane vectors. */
INL AVX2 void deq256(int bits, const uint8_t *c, __m256 *w) {
    if (bits == 16) {
        for (int i = 0; i < 4; i++)
            w[i] = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(c + 16 * i))), 16));
    } else if (bits == 8) {
        for (int i = 0; i < 4; i++)
            w[i] = _mm256_cvtepi32_ps(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(c + 8 * i))));
    } else {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)c), m = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        __m256i e = _mm256_set1_epi32(8);
        w[0] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(lo), e));
        w[1] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), e));
        w[2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(hi), e));
        w[3] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), e));
    }
}

/* Raw code values (Q4: the nibble 0..15), as raw512. */
INL AVX2 void raw256(int bits, const uint8_t *c, __m256 *w) {
    if (bits == 16) {
        deq256(16, c, w);
    } else if (bits == 8) {
        deq256(8, c, w);
    } else {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)c), m = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        w[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        w[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        w[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        w[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
    }
}

/* 1 or 2 rows: per group x · code unscaled in registers, then the totals (kept in memory)
 * += scale · (acc − 8 · Σx) once per group (qtile512s). */
#define QS256 2
INL AVX2 void qtile256s(int bits, int mr, int K, int G, const float *x, int ldx,
                        const float *xsum, const uint8_t *codes, const float *sc, float *y,
                        int ldy, int nv, const float *bias) {
    const size_t cb = panel_cb(bits);
    const int ng = K / G;
    float tot[QS256 * NR];
    memset(tot, 0, sizeof tot);
    for (int g = 0; g < ng; g++) {
        __m256 ga[QS256][4];
        for (int r = 0; r < QS256; r++)
            for (int j = 0; j < 4; j++)
                ga[r][j] = _mm256_setzero_ps();
        const uint8_t *cg = codes + (size_t)g * G * cb;
        const float *xg = x + (size_t)g * G;
        for (size_t o = 0; o < (size_t)G * cb; o += 64) /* as qtile512s */
            _mm_prefetch((const char *)(cg + QPF + o), _MM_HINT_T0);
        if (sc) {
            _mm_prefetch((const char *)(sc + (size_t)g * NR + QPF / 4), _MM_HINT_T0);
            _mm_prefetch((const char *)(sc + (size_t)g * NR + QPF / 4 + 16), _MM_HINT_T0);
        }
        for (int k = 0; k < G; k++) {
            __m256 w[4];
            raw256(bits, cg + (size_t)k * cb, w);
            for (int r = 0; r < mr; r++) {
                __m256 xb = _mm256_broadcast_ss(xg + (size_t)r * ldx + k);
                for (int j = 0; j < 4; j++)
                    ga[r][j] = _mm256_fmadd_ps(xb, w[j], ga[r][j]);
            }
        }
        if (bits == 16) {
            for (int r = 0; r < mr; r++)
                for (int j = 0; j < 4; j++) {
                    float *t = tot + r * NR + 8 * j;
                    _mm256_storeu_ps(t, _mm256_add_ps(ga[r][j], _mm256_loadu_ps(t)));
                }
            continue;
        }
        const float *s = sc + (size_t)g * NR;
        for (int r = 0; r < mr; r++) {
            __m256 c = _mm256_set1_ps(bits == 4 ? 8.0f * xsum[(size_t)r * ng + g] : 0.0f);
            for (int j = 0; j < 4; j++) {
                float *t = tot + r * NR + 8 * j;
                __m256 a = bits == 4 ? _mm256_sub_ps(ga[r][j], c) : ga[r][j];
                _mm256_storeu_ps(t, _mm256_fmadd_ps(_mm256_loadu_ps(s + 8 * j), a,
                                                    _mm256_loadu_ps(t)));
            }
        }
    }
    store_tile_scalar(y, ldy, tot, mr, nv, bias);
}

#define QM256 3
INL AVX2 void qtile256(int bits, int mr, int K, int G, const float *x, int ldx,
                       const uint8_t *codes, const float *sc, float *y, int ldy, int nv,
                       const float *bias) {
    const size_t cb = panel_cb(bits);
    __m256 acc[QM256][4];
    for (int r = 0; r < QM256; r++)
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm256_setzero_ps();
    for (int g0 = 0; g0 < K; g0 += G) {
        const float *s = sc ? sc + (size_t)(g0 / G) * NR : NULL;
        for (int k = g0; k < g0 + G; k++) {
            __m256 w[4];
            deq256(bits, codes + (size_t)k * cb, w);
            if (bits != 16)
                for (int j = 0; j < 4; j++)
                    w[j] = _mm256_mul_ps(w[j], _mm256_loadu_ps(s + 8 * j));
            for (int r = 0; r < mr; r++) {
                __m256 xb = _mm256_broadcast_ss(x + (size_t)r * ldx + k);
                for (int j = 0; j < 4; j++)
                    acc[r][j] = _mm256_fmadd_ps(xb, w[j], acc[r][j]);
            }
        }
    }
    float tmp[QM256 * NR];
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(tmp + r * NR + 8 * j, acc[r][j]);
    store_tile_scalar(y, ldy, tmp, mr, nv, bias);
}

AVX2 static void qgemm256(float *y0, int ldy, const float *x, int ldx, int mr,
                          const vlad_mat *W, const float *bias0, const float *xsum) {
    int N = W->rows, K = W->cols, G = W->qgroup, ng = K / G;
    size_t cb = panel_cb(W->qbits);
    for (int n0 = 0; n0 < N; n0 += NR) {
        int p = n0 / NR, nv = N - n0 < NR ? N - n0 : NR;
        const uint8_t *codes = W->qcodes + (size_t)p * K * cb;
        const float *sc = W->qscale ? W->qscale + (size_t)p * ng * NR : NULL;
        const float *bias = bias0 ? bias0 + n0 : NULL;
        float *y = y0 + n0;
        if (mr <= QS256) {
            if (W->qbits == 16) {
                if (mr == 1) qtile256s(16, 1, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias);
                else qtile256s(16, 2, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias);
            } else if (W->qbits == 8) {
                if (mr == 1) qtile256s(8, 1, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias);
                else qtile256s(8, 2, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias);
            } else {
                if (mr == 1) qtile256s(4, 1, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias);
                else qtile256s(4, 2, K, G, x, ldx, xsum, codes, sc, y, ldy, nv, bias);
            }
            continue;
        }
        if (W->qbits == 16) {
            if (mr == 1) qtile256(16, 1, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
            else if (mr == 2) qtile256(16, 2, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
            else qtile256(16, 3, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
        } else if (W->qbits == 8) {
            if (mr == 1) qtile256(8, 1, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
            else if (mr == 2) qtile256(8, 2, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
            else qtile256(8, 3, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
        } else {
            if (mr == 1) qtile256(4, 1, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
            else if (mr == 2) qtile256(4, 2, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
            else qtile256(4, 3, K, G, x, ldx, codes, sc, y, ldy, nv, bias);
        }
    }
}

AVX2 static void deq_panel256(float *restrict dst, const vlad_mat *W, int p) {
    int K = W->cols, G = W->qgroup, ng = K / G, bits = W->qbits;
    size_t cb = panel_cb(bits);
    const uint8_t *codes = W->qcodes + (size_t)p * K * cb;
    if (bits == 16) {
        for (int k = 0; k < K; k++) {
            __m256 w[4];
            deq256(16, codes + (size_t)k * cb, w);
            for (int j = 0; j < 4; j++)
                _mm256_storeu_ps(dst + (size_t)k * NR + 8 * j, w[j]);
        }
        return;
    }
    const float *sp = W->qscale + (size_t)p * ng * NR;
    for (int k = 0; k < K; k++) {
        const float *s = sp + (size_t)(k / G) * NR;
        __m256 w[4], iv = _mm256_set1_ps(W->qinv ? W->qinv[k] : 1.0f);
        if (bits == 8)
            deq256(8, codes + (size_t)k * cb, w);
        else
            deq256(4, codes + (size_t)k * cb, w);
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(dst + (size_t)k * NR + 8 * j,
                             _mm256_mul_ps(w[j], _mm256_mul_ps(_mm256_loadu_ps(s + 8 * j), iv)));
    }
}
#endif

void vlad_quant_matmul(vlad_scratch *s, float *y, int ldy, const float *x, int ldx, int M,
                       const vlad_mat *W, const float *bias) {
    int N = W->rows, K = W->cols;
    int kind = vlad_pack_kind();
    float *buf = s->buf;
    if (M <= 0 || N <= 0)
        return;
#ifdef HAVE_X86
    int qm = kind == 2 ? QM512 : kind == 1 ? QM256 : 0;
    if (M <= qm) { /* fused: x ⊘ s once into scratch, then dequantise inside the tile */
        const float *xs = x;
        int ldxs = ldx;
        if (W->qinv) {
            scale_x(buf, x, ldx, M, K, W->qinv);
            xs = buf;
            ldxs = K;
        }
        float *xsum = NULL; /* Q4, few rows: the sums of x over each group */
        {
            if (W->qbits == 4 && M <= (kind == 2 ? QS512 : QS256)) {
                int ng = K / W->qgroup;
                xsum = buf + (xs == buf ? (size_t)M * K : 0);
                for (int r = 0; r < M; r++)
                    for (int g = 0; g < ng; g++) {
                        const float *xr = xs + (size_t)r * ldxs + (size_t)g * W->qgroup;
                        float t = 0.0f;
                        for (int k = 0; k < W->qgroup; k++)
                            t += xr[k];
                        xsum[(size_t)r * ng + g] = t;
                    }
            }
        }
        if (kind == 2)
            qgemm512(y, ldy, xs, ldxs, M, W, bias, xsum);
        else
            qgemm256(y, ldy, xs, ldxs, M, W, bias, xsum);
        return;
    }
#endif
    /* one panel at a time: dequantise (1/s folded in) into scratch, then all M rows on it */
    int np = (N + NR - 1) / NR;
    for (int p = 0; p < np; p++) {
        int n0 = p * NR, nv = N - n0 < NR ? N - n0 : NR;
#ifdef HAVE_X86
        if (kind == 2)
            deq_panel512(buf, W, p);
        else if (kind == 1)
            deq_panel256(buf, W, p);
        else
#endif
            deq_panel_scalar(buf, W, p);
        if (kind > 0) {
            vlad_gemm_packed(y + n0, ldy, x, ldx, M, buf, nv, K, bias ? bias + n0 : NULL);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, nv, K, 1.0f, x, ldx, buf,
                        NR, 0.0f, y + n0, ldy);
            if (bias)
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < nv; j++)
                        y[(size_t)i * ldy + n0 + j] += bias[n0 + j];
        }
    }
}
