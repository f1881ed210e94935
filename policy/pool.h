/* pool.h — a small fork-join pool for the engine's own GEMM kernel (kernels.h packed path).
 *
 * OpenBLAS threads only help OpenBLAS's calls; the GEMMs on pre-packed weights (the flow
 * step) split their column panels over this pool instead when the runstate has
 * n_threads > 1. Helpers sleep on a condition variable between jobs (no spinning: on a
 * 2-core machine a spinning helper would steal the control thread's core), and before each
 * job take the nice value the caller passes (Linux applies nice per thread; the daemon's
 * worker runs at +10 and its helpers must not outrank the control thread). No allocation
 * after vlad_pool_new. */
#ifndef VLAD_POLICY_POOL_H
#define VLAD_POLICY_POOL_H

#include <stddef.h>

typedef struct vlad_pool vlad_pool;

/* n_threads >= 2: n_threads - 1 helper threads (the caller is the other one). NULL on
 * failure or n_threads < 2. */
vlad_pool *vlad_pool_new(int n_threads, size_t scratch_floats);
/* Per-part scratch (64-byte aligned, scratch_floats each) for parts 1..n-1; NULL for part 0
 * (the caller's own buffers) or when scratch_floats was 0. */
float *vlad_pool_scratch(const vlad_pool *p, int part);
void vlad_pool_free(vlad_pool *p); /* NULL is fine */
int vlad_pool_threads(const vlad_pool *p); /* helpers + 1; 1 for NULL */
/* Nice value the helpers take before their next job. */
void vlad_pool_set_nice(vlad_pool *p, int nice);
/* fn(arg, part, n_parts) on the calling thread (part 0) and on every helper that wakes before
 * the caller's own call returns (parts 1..n-1, n = vlad_pool_threads); returns when those are
 * done. A helper that wakes later skips the job, so fn must share the work out dynamically
 * (an atomic counter), not by part: on a loaded machine the caller then does it all rather
 * than wait for a helper that has no core. */
void vlad_pool_run(vlad_pool *p, void (*fn)(void *arg, int part, int n_parts), void *arg);

#endif
