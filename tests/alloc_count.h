/* alloc_count.h — counting (and failing) heap allocations in a test.
 *
 * A test made with vlad_add_test(... WRAP_ALLOC) links alloc_count.c and wraps malloc, calloc,
 * realloc, posix_memalign and aligned_alloc of everything linked into it (-Wl,--wrap=...), the
 * project's libraries included:
 *   vlad_allocs          allocations so far, every thread
 *   vlad_allocs_here     this thread's, counted while vlad_alloc_counting is set on it
 *   vlad_alloc_fail_at   > 0: the allocation that brings vlad_allocs to this value fails
 *                        (NULL / ENOMEM), to test every out-of-memory path in turn */
#ifndef VLAD_TEST_ALLOC_COUNT_H
#define VLAD_TEST_ALLOC_COUNT_H

#include <stdatomic.h>

extern _Atomic long vlad_allocs;
extern _Atomic long vlad_alloc_fail_at;
extern _Thread_local long vlad_allocs_here;
extern _Thread_local int vlad_alloc_counting;

#endif
