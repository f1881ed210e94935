/* cpu.h — pick OpenBLAS's kernels from what the CPU supports.
 *
 * Debian's OpenBLAS (DYNAMIC_ARCH) chooses its kernels in a library constructor, before
 * main, from a table of known CPU models; on CPUs newer than that table (or virtual CPUs
 * with a generic model name) it falls back to "Prescott" (SSE3, no FMA), about half the
 * speed of its AVX2 kernels. The choice can only be overridden by OPENBLAS_CORETYPE in the
 * environment at load time, so vlad_blas_coretype_init, called first thing in main, sets it
 * and re-executes the program once (/proc/self/exe, same argv and pid).
 *
 *   OPENBLAS_CORETYPE set      the user's choice, nothing done
 *   VLAD_BLAS_CORETYPE=off     nothing done (also 0, no, none)
 *   VLAD_BLAS_CORETYPE=NAME    use NAME (an OpenBLAS core name, e.g. Haswell, SkylakeX)
 *   unset or auto              when the loaded core is one of the pre-AVX2 fallbacks:
 *                              SkylakeX if the CPU (and OS) support AVX-512 F/CD/BW/DQ/VL,
 *                              else Haswell if AVX2+FMA, else nothing
 *
 * A marker variable (VLAD_BLAS_REEXEC, removed again after the re-exec) prevents a second
 * re-exec; if exec fails, the program simply continues with the kernels it has. Binaries
 * not linked with OpenBLAS see no core name and are left alone. */
#ifndef VLAD_COMMON_CPU_H
#define VLAD_COMMON_CPU_H

/* Returns only when no re-exec happened (or it failed). argv as given to main. */
void vlad_blas_coretype_init(char **argv);

/* The OpenBLAS core in use ("Prescott", "Haswell", ...) or "" when not linked. */
const char *vlad_blas_corename(void);

/* The core name auto mode would choose on this CPU ("" when none). */
const char *vlad_blas_coretype_wanted(void);

/* OpenBLAS's pool threads started before main (see cpu.c): their count, and set their nice
 * (returns how many were changed; raising nice needs no privilege). The engine calls it with
 * its caller's nice when it runs more than one BLAS thread. */
int vlad_blas_pool_threads(void);
int vlad_blas_pool_set_nice(int nice);
/* openblas_set_num_threads(n), also recording the pool threads it starts (engine: runstate
 * creation / vlad_runstate_set_threads, never during an inference). */
void vlad_blas_set_threads(int n);

#endif
