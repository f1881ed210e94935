/* quant.h — weight-only quantised Linear layers (MODEL.md section 1.1): 8-bit and 4-bit codes
 * with one F32 scale per (output row, group of G consecutive inputs), and an optional AWQ
 * per-input-channel scale s (the codes quantise W·diag(s); the layer computes
 * y = (x ⊘ s)·Ŵᵀ, Ŵ = the dequantised codes).
 *
 * In memory (vlad_mat with qbits = 8 or 4, dtype VLAD_DT_U8, data NULL) a quantised matrix is
 * repacked at load into panels of VLAD_PACK_NR = 32 outputs, the layout of the engine's own
 * GEMM (kernels.h), never widened to F32 as a whole:
 *   codes  Q8: [ceil(rows/32)][cols][32] int8, value = code (the file's q - 128)
 *          Q4: [ceil(rows/32)][cols][16] bytes; byte j of row k holds output j in its low
 *              nibble and output j + 16 in its high nibble, value = nibble - 8
 *   scales [ceil(rows/32)][cols/G][32] F32
 *   qinv   [cols] F32 = 1/s, or NULL without AWQ
 * Padding outputs of the last panel have code value 0 and scale 0.
 *
 * The kernels dequantise on the fly: AVX-512F (fused register tile up to 12 rows), AVX2+FMA
 * (up to 3 rows), and for more rows (or neither ISA, or VLAD_PACK=0) one panel at a time is
 * dequantised into the caller's scratch and multiplied there (the packed F32 kernel, or cblas
 * when VLAD_PACK=0 / no support). Functions here never allocate. */
#ifndef VLAD_POLICY_QUANT_H
#define VLAD_POLICY_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "model.h"

/* BF16 panels (qbits 16, qgroup = cols, qscale and qinv NULL): the in-memory layout of the
 * plain BF16 matrices of a quantised model (vlad_model_widen_*: half the memory of F32
 * panels, converted on the fly by the same kernels): [ceil(rows/32)][cols][32] uint16. */

/* Bytes of packed codes of a rows x cols matrix with `bits` (8, 4; 16: BF16 panels). */
size_t vlad_quant_codes_bytes(int bits, int rows, int cols);
/* Floats of packed scales (groups of `group` inputs; cols % group == 0). */
size_t vlad_quant_scale_floats(int rows, int cols, int group);
/* Floats of scratch vlad_quant_matmul needs for a matrix with `cols` inputs (any M). */
size_t vlad_quant_scratch_floats(int cols);

/* Repack the file layout into the panel layout above.
 *   src_codes: Q8 [rows][cols] bytes (q, value q - 128); Q4 [rows][cols/2] bytes, low nibble
 *              = even column, value nibble - 8
 *   src_scales: [rows][cols/group] F32, any alignment (read with memcpy)
 * codes: vlad_quant_codes_bytes, scales: vlad_quant_scale_floats. cols % group == 0, and cols
 * is even for Q4. */
void vlad_quant_pack(uint8_t *codes, float *scales, int bits, int rows, int cols, int group,
                     const uint8_t *src_codes, const void *src_scales);

/* Row-major BF16 src [rows][cols] (any alignment) into BF16 panels
 * (vlad_quant_codes_bytes(16, rows, cols) bytes), padding rows 0. */
void vlad_quant_pack_bf16(uint8_t *codes, int rows, int cols, const void *src);

/* y[M, W.rows] = (x[M, W.cols] ⊘ s) · Ŵᵀ (+ bias). W->qbits must be 4, 8 or 16. `s` must hold
 * vlad_quant_scratch_floats(W.cols) floats in s->buf (vlad_matmul_scratch_floats includes
 * it). Single-threaded (s->pool is not used). vlad_matmul calls it for quantised matrices. */
void vlad_quant_matmul(vlad_scratch *s, float *y, int ldy, const float *x, int ldx, int M,
                       const vlad_mat *W, const float *bias);

/* Row `row` of the effective matrix Ŵ·diag(1/s) into dst[W.cols] (the embedding lookup of a
 * quantised tied embedding): the same values the matmul uses. */
void vlad_quant_row(const vlad_mat *W, int row, float *dst);

/* Row `row` of any matrix (F32, BF16 row-major data, or quantised) as F32 into dst[W.cols]. */
void vlad_mat_row(const vlad_mat *W, int row, float *dst);

/* Token `tok`'s embedding row (width wd) into dst: a copy of the F32 table, or the
 * dequantised row of a quantised tied embedding. */
static inline void vlad_embed_row(const vlad_weights *w, int tok, int wd, float *dst) {
    if (w->embed)
        memcpy(dst, w->embed + (size_t)tok * (size_t)wd, (size_t)wd * sizeof(float));
    else
        vlad_quant_row(&w->embed_mat, tok, dst);
}

/* Dequantised element (n, k) of Ŵ (before the 1/s): a scalar reference for tests. */
float vlad_quant_at(const vlad_mat *W, int n, int k);

/* "Q8" / "Q4" / the dtype name of a plain matrix. */
const char *vlad_mat_kind(const vlad_mat *W);

#endif
