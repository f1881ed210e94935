/* engine_internal.h — pieces of the engine shared by engine.c and batch.c (not a public API).
 *
 * One definition each, so that a batch computes exactly what a runstate computes: the RoPE
 * tables, the BF16 tile scratch size and the nice-value hand-over to the helper threads. */
#ifndef VLAD_POLICY_ENGINE_INTERNAL_H
#define VLAD_POLICY_ENGINE_INTERNAL_H

#include <stddef.h>

#include "config.h"
#include "model.h"
#include "pool.h"

/* Widest Linear input of the model: what vlad_matmul_scratch_floats is sized for. */
size_t vlad__max_cols(const vlad_model *m);

/* RoPE tables cos/sin[max_pos, head_dim/2], angles in double (MODEL.md). */
void vlad__rope_tables(const vlad_config *c, int max_pos, float *cos_t, float *sin_t);

/* With n_threads > 1: give the pool's helpers and OpenBLAS's threads the calling thread's
 * nice when it differs from *caller_nice (then updated; INT_MIN: none yet). */
void vlad__sync_nice(vlad_pool *pool, int n_threads, int *caller_nice);

/* CLOCK_MONOTONIC in milliseconds. */
double vlad__now_ms(void);

#endif
