/* safetensors.h — generic .safetensors reader (mmap) and streaming writer.
 *
 * File layout: u64 little-endian N, N bytes of JSON header, then the data section.
 * Header: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}}.
 * The reader validates the container (header size and JSON, dtypes, shapes, offsets inside
 * the data section, byte sizes matching shapes, no two tensors overlapping); what the
 * tensors mean is the caller's business (policy/model.c checkpoints, sim/dataset.c
 * demonstration episodes). Supported dtypes: F32, BF16, U8, I64. */
#ifndef VLAD_SAFETENSORS_H
#define VLAD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum { VLAD_DT_F32 = 0, VLAD_DT_BF16 = 1, VLAD_DT_U8 = 2, VLAD_DT_I64 = 3 } vlad_dtype;

#define VLAD_ST_MAX_DIMS 8

typedef struct vlad_st_tensor {
    const char *name;
    vlad_dtype dtype;
    int ndim;
    int64_t shape[VLAD_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the mapping; alignment is whatever the file gives */
    size_t nbytes;
    size_t begin, end; /* offsets in the data section */
} vlad_st_tensor;

typedef struct vlad_st_file vlad_st_file;

/* mmap and validate `path`. On success *out owns the mapping. Errors name the tensor. `path`
 * must be a regular file: a FIFO, device, directory or socket is refused without blocking
 * ("PATH: is a FIFO, not a regular file"; vlad_open_regular in path.h). */
int vlad_st_open(const char *path, vlad_st_file **out, vlad_err *err);
/* Unmap and free; NULL is fine. */
void vlad_st_close(vlad_st_file *f);

int vlad_st_count(const vlad_st_file *f);
const vlad_st_tensor *vlad_st_get(const vlad_st_file *f, int i);
/* Tensor by name, NULL if absent. */
const vlad_st_tensor *vlad_st_find(const vlad_st_file *f, const char *name);
/* "__metadata__" string value by key, NULL if absent (or not a string). */
const char *vlad_st_meta(const vlad_st_file *f, const char *key);
/* 1 if p points into the file's mapping. */
int vlad_st_owns(const vlad_st_file *f, const void *p);
/* Size of the whole file in bytes. */
size_t vlad_st_file_size(const vlad_st_file *f);

/* Flat index (row-major, 0-based) of the first NaN or +-Inf element of an F32 or BF16 tensor,
 * -1 if every element is finite or the dtype is an integer one. If bad is non-NULL it receives
 * that element as a float (NaN, INFINITY or -INFINITY). Reads every element: the whole tensor
 * is paged in. */
int64_t vlad_st_find_nonfinite(const vlad_st_tensor *t, float *bad);

/* Element size of a dtype (4, 2, 1, 8). */
size_t vlad_dtype_size(vlad_dtype dt);
const char *vlad_dtype_name(vlad_dtype dt);

/* BF16 <-> F32 (round-to-nearest-even on the way down; NaN kept NaN). */
static inline float vlad_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}
uint16_t vlad_f32_to_bf16(float f);
/* Convert n BF16 values (any alignment) to F32. */
void vlad_bf16_to_f32_n(float *dst, const void *src, size_t n);

/* ---- writer --------------------------------------------------------------------------
 * w = vlad_st_writer_new(); add metadata and tensor descriptors in data order; then
 * vlad_st_writer_begin(w, path) writes the header; vlad_st_writer_data() streams the tensors'
 * bytes in the same order; vlad_st_writer_finish() checks the byte count and closes. */
typedef struct vlad_st_writer vlad_st_writer;
vlad_st_writer *vlad_st_writer_new(void);
int vlad_st_writer_meta(vlad_st_writer *w, const char *key, const char *value, vlad_err *err);
int vlad_st_writer_add(vlad_st_writer *w, const char *name, vlad_dtype dt, int ndim,
                       const int64_t *shape, vlad_err *err);
int vlad_st_writer_begin(vlad_st_writer *w, const char *path, vlad_err *err);
int vlad_st_writer_data(vlad_st_writer *w, const void *bytes, size_t n, vlad_err *err);
int vlad_st_writer_finish(vlad_st_writer *w, vlad_err *err);
/* Free (closing the file if still open); NULL is fine. */
void vlad_st_writer_free(vlad_st_writer *w);

#endif
