/* simd.h — private to policy/: the function attributes of the hand-written x86 kernels
 * (kernels.c, quant.c), written once.
 *
 * HAVE_X86 is defined where GCC-style x86-64 intrinsics are available (immintrin.h is then
 * included). AVX2 / AVX512 mark a function compiled for that instruction set whatever the
 * build's -march; callers dispatch on the CPU at run time (cpu.h). INL forces inlining of
 * the small helpers inside such functions.
 *
 * ThreadSanitizer does not instrument the vector kernels (NO_TSAN): each call writes only its
 * own output rows or columns and reads shared weights, and instrumented, every load and store
 * of their inner loops is a call (the default model's inference took 0.56 s instead of
 * milliseconds, too slow for the wall-clock tests). What they share across threads is handed
 * over by the pool (pool.c), which stays instrumented. ASan keeps checking them. */
#ifndef VLAD_POLICY_SIMD_H
#define VLAD_POLICY_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#ifdef VLAD_TSAN
#define NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define NO_TSAN
#endif
#define AVX2 __attribute__((target("avx2,fma"))) NO_TSAN
#define AVX512 __attribute__((target("avx512f"))) NO_TSAN
#define INL __attribute__((always_inline)) static inline
#endif

#endif
