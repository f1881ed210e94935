#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Weak: resolved when the final program links libopenblas, NULL otherwise. */
extern char *openblas_get_corename(void) __attribute__((weak));

const char *vlad_blas_corename(void) {
    if (!openblas_get_corename)
        return "";
    const char *n = openblas_get_corename();
    return n ? n : "";
}

const char *vlad_blas_coretype_wanted(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0);
     * OpenBLAS's SkylakeX kernels need F, CD, BW, DQ and VL */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return "";
}

/* OpenBLAS x86-64 fallbacks without AVX2/FMA kernels. */
static int is_old_core(const char *n) {
    static const char *const old[] = {"Prescott", "Core2",     "Penryn", "Dunnington", "Nehalem",
                                      "Atom",     "Katmai",    "Coppermine", "Northwood",
                                      "Banias",   "Barcelona", "Opteron", "Opteron_SSE3",
                                      "Sandybridge", "Bobcat", "Bulldozer", "Piledriver",
                                      "Steamroller", "Excavator", "Unknown"};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        if (!strcasecmp(n, old[i]))
            return 1;
    return 0;
}

void vlad_blas_coretype_init(char **argv) {
    if (getenv("VLAD_BLAS_REEXEC")) { /* we are the re-executed process */
        unsetenv("VLAD_BLAS_REEXEC");
        return;
    }
    const char *cur = vlad_blas_corename();
    if (!*cur || getenv("OPENBLAS_CORETYPE"))
        return;
    const char *mode = getenv("VLAD_BLAS_CORETYPE");
    const char *want;
    if (mode && (!strcasecmp(mode, "off") || !strcmp(mode, "0") || !strcasecmp(mode, "no") ||
                 !strcasecmp(mode, "none")))
        return;
    if (mode && *mode && strcasecmp(mode, "auto")) {
        want = mode;
    } else {
        if (!is_old_core(cur))
            return;
        want = vlad_blas_coretype_wanted();
    }
    if (!*want || !strcasecmp(want, cur) || !argv || !argv[0])
        return;
    /* under valgrind /proc/self/exe is the tool, and the re-executed program would run
     * without it */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) || setenv("VLAD_BLAS_REEXEC", "1", 1))
        return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the current kernels */
    unsetenv("VLAD_BLAS_REEXEC");
}

/* ---- OpenBLAS's pool threads and nice -------------------------------------------------------
 * OpenBLAS (pthreads build) starts its pool in its library constructor when its initial thread
 * count (OPENBLAS_NUM_THREADS, default: the number of cores) is > 1, i.e. before main, from
 * the main thread, at the process's nice (0). Linux applies nice per thread, so a worker
 * thread that raises its own nice (async/worker.c: +10) leaves those pool threads at 0: with
 * more than one BLAS thread they compete with the control thread at equal priority. This
 * constructor (run after the shared libraries', before main) records the threads that exist
 * at that point, which are that pool; vlad_blas_pool_set_nice gives them a nice value.
 * Threads OpenBLAS creates later (openblas_set_num_threads above the initial count) are
 * created by the calling thread and inherit its nice. */
#include <dirent.h>
#include <pthread.h>
#include <sys/resource.h>

extern void openblas_set_num_threads(int n) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));

#define MAX_POOL 256
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_pool[MAX_POOL];
static int g_npool;
static int g_max_threads; /* the largest count asked of vlad_blas_set_threads so far */

/* The process's thread ids (not the main thread's), at most cap. */
static int list_tasks(int *out, int cap) {
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    int self = (int)getpid(), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        int tid = atoi(e->d_name);
        if (tid > 0 && tid != self)
            out[n++] = tid;
    }
    closedir(d);
    return n;
}

__attribute__((constructor)) static void record_pre_main_threads(void) {
    g_npool = list_tasks(g_pool, MAX_POOL);
}

int vlad_blas_pool_threads(void) {
    if (!openblas_get_corename)
        return 0;
    pthread_mutex_lock(&g_mu);
    int n = g_npool;
    pthread_mutex_unlock(&g_mu);
    return n;
}

int vlad_blas_pool_set_nice(int nice) {
    if (!openblas_get_corename)
        return 0;
    int n = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < g_npool; i++)
        n += setpriority(PRIO_PROCESS, (id_t)g_pool[i], nice) == 0;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* openblas_set_num_threads, recording the threads it starts when it grows the pool (they
 * are then reniced with the others; it never stops threads). Not for a hot path: it reads
 * /proc when the count exceeds every earlier one. */
void vlad_blas_set_threads(int n) {
    if (!openblas_set_num_threads)
        return;
    pthread_mutex_lock(&g_mu);
    if (n <= g_max_threads) {
        pthread_mutex_unlock(&g_mu);
        openblas_set_num_threads(n);
        return;
    }
    g_max_threads = n;
    static int before[MAX_POOL], after[MAX_POOL];
    int nb = list_tasks(before, MAX_POOL);
    openblas_set_num_threads(n);
    int na = list_tasks(after, MAX_POOL);
    for (int i = 0; i < na && g_npool < MAX_POOL; i++) {
        int known = 0;
        for (int j = 0; j < nb && !known; j++)
            known = after[i] == before[j];
        for (int j = 0; j < g_npool && !known; j++)
            known = after[i] == g_pool[j];
        if (!known)
            g_pool[g_npool++] = after[i];
    }
    pthread_mutex_unlock(&g_mu);
}
