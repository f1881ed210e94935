#include "alloc_count.h"

#include <errno.h>
#include <stddef.h>

_Atomic long vlad_allocs;
_Atomic long vlad_alloc_fail_at;
_Thread_local long vlad_allocs_here;
_Thread_local int vlad_alloc_counting;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

/* count one allocation; true if it is the one to fail */
static int fails(void) {
    if (vlad_alloc_counting)
        vlad_allocs_here++;
    long n = atomic_fetch_add(&vlad_allocs, 1) + 1;
    long at = atomic_load(&vlad_alloc_fail_at);
    return at > 0 && n == at;
}

void *__wrap_malloc(size_t n) { return fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return fails() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return fails() ? NULL : __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
    return fails() ? ENOMEM : __real_posix_memalign(p, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) {
    return fails() ? NULL : __real_aligned_alloc(a, n);
}
