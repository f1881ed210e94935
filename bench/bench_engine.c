/* vlad-bench engine — the C engine on the default tiny config and a SmolVLA-scale config
 * (random weights), side by side with the PyTorch twin on the same checkpoint and the same
 * thread count, in the same run:
 *   prefix (vision + backbone), one flow step, full inference (prefix + all flow steps),
 *   per-token greedy decode, peak RSS, prefix GFLOP/s vs a same-run 1024^3 cblas_sgemm,
 *   control-loop jitter (a 100 Hz absolute-deadline probe thread) while the engine runs with
 *   1 and with 2 OpenBLAS threads.
 * Options (vlad-bench engine --help): --json FILE, --threads N (engine and twin, default 1),
 *          --quick, --no-twin, --only default|smolvla, --widen none|expert|all (BF16 matrices
 *          widened to F32 at load; default: all), --keep DIR (checkpoints kept there and
 *          reused), --plot DIR (DIR/engine-breakdown.png), --batch LIST (batch sizes of the
 *          batch rows, default 1,2,4,8), --batch-rounds N, --no-batch,
 *          --quant LIST (q4,q8 | none; default q4,q8 when /usr/bin/python3 has torch),
 *          --quant-method auto|awq|rtn (auto: AWQ on random calibration frames for the
 *          default config, RTN for the SmolVLA-scale one), --quant-group 32|64|128.
 * Quantised rows (MODEL.md 1.1): the same checkpoint quantised by training/quantize.py,
 * loaded beside the F32 model and run on the same inputs in interleaved rounds (ABBA) against
 * it: prefix, one flow step, full inference and decode per token (medians), the speed ratio
 * vs F32 from those same rounds, max |chunk - F32 chunk| (same noise). Peak RSS of a
 * quantised model is measured alone: after the F32 model is freed (malloc_trim), the
 * process's peak is reset (/proc/self/clear_refs 5) and the quantised model is loaded and run
 * once (inference + decode).
 * Batch rows (batch.h): for each n in the list, n different requests (images, prompts of
 * different lengths, states, noise) as one vlad_batch_infer against the same n one after the
 * other on a runstate (encode_prefix + sample_actions), in interleaved rounds (every round
 * runs each n both ways, the order alternating between rounds): medians of the time per
 * batch, per item, items/s and the speed-up, and the largest |batched - sequential| action. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "bench.h"
#include "cpu.h"
#include "engine.h"
#include "model.h"
#include "quant.h"
#include "rng.h"

#ifndef VLAD_SOURCE_DIR
#define VLAD_SOURCE_DIR "."
#endif

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n ? v[n / 2] : 0;
}
static double pct(double *v, int n, double p) { /* v sorted */
    if (!n)
        return 0;
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

/* A /proc/self/status figure in MB ("VmHWM:" peak, "VmRSS:" now). */
static double status_mb(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return 0;
    char line[256];
    double kb = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, key, n))
            kb = atof(line + n);
    fclose(fp);
    return kb / 1024.0;
}

static double peak_rss_mb(void) { return status_mb("VmHWM:"); }

/* ---- jitter probe ------------------------------------------------------------------------ */

typedef struct {
    atomic_int stop; /* set by the measuring thread, read by the probe */
    double *lat_us;
    int n, cap;
} probe;

static void *probe_main(void *arg) {
    probe *p = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&p->stop) && p->n < p->cap) {
        next.tv_nsec += 10000000L; /* 100 Hz */
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double late = (double)(now.tv_sec - next.tv_sec) * 1e6 +
                      (double)(now.tv_nsec - next.tv_nsec) * 1e-3;
        p->lat_us[p->n++] = late;
    }
    return NULL;
}

typedef struct {
    int blas_threads; /* 0 = engine idle */
    double p50, p99, max;
    int ticks;
    double inferences;
} jitter;

/* ---- one config ---------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    vlad_config cfg;
    vlad_dtype dtype;
    int iters;
    int64_t params;
    int S;
    double vision_ms, backbone_ms, prefix_ms, flow_step_ms, full_ms, decode_ms;
    double prefix_gflops, flow_gflops, sgemm_gflops;
    double rss_mb;
    double peak_gflops;           /* same-run register-only FMA kernel, one core */
    const char *peak_isa;
    double peak_avx512, peak_avx2; /* each kernel (0: not run) */
    double decode_gflops;
    /* breakdown (profiling run): [phase][category], ms; phase 0 prefix, 1 flow step, 2 decode
     * token; category VLAD_TCAT_* then "other" (phase time not in any kernel) */
    double cat_ms[3][VLAD_TCAT_N + 1];
    double phase_prof_ms[3];
    /* threads: 1 and 2 OpenBLAS threads, interleaved rounds */
    double thr_prefix_ms[2], thr_flow_ms[2], thr_full_ms[2];
    int twin_ok;
    double t_prefix_ms, t_flow_step_ms, t_full_ms, t_decode_ms;
    jitter jit[3];
    /* batch rows: batch sizes, medians over the rounds of one batch call and of the same n
     * items one after the other, and the largest |batch - sequential| action */
    int nb, b_rounds;
    int b_n[BENCH_LIST_MAX];
    double b_batch_ms[BENCH_LIST_MAX], b_seq_ms[BENCH_LIST_MAX], b_diff[BENCH_LIST_MAX];
    size_t b_bytes;
    /* quantised rows: per entry of --quant */
    int nq;
    struct qrow {
        int bits, group, ok;
        char method[8];
        double prefix_ms, flow_ms, full_ms, decode_ms;       /* quantised, same rounds */
        double f_prefix_ms, f_flow_ms, f_full_ms, f_decode_ms; /* F32 in those rounds */
        double chunk_err, rss_mb, rss_base_mb, file_mb, quant_s;
        int rss_ok;
    } q[4];
} result;

static const char *k_prompt = "pick up the red cube and put it in the bin";

static void fill_inputs(const vlad_config *c, uint8_t **imgs, float *state, float *noise) {
    vlad_rng r;
    vlad_rng_seed(&r, 1);
    size_t isz = (size_t)c->image_size * c->image_size * 3;
    for (int i = 0; i < c->n_cameras; i++)
        for (size_t k = 0; k < isz; k++)
            imgs[i][k] = (uint8_t)(vlad_rng_u64(&r) & 0xff);
    for (int i = 0; i < c->state_dim; i++)
        state[i] = (float)vlad_rng_normal(&r);
    for (int i = 0; i < c->chunk_size * c->action_dim; i++)
        noise[i] = (float)vlad_rng_normal(&r);
}

static double sgemm_gflops(int reps) {
    const int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double t[16];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t[r] = now_ms() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / (median(t, reps) * 1e-3) * 1e-9;
}

/* ---- peak FMA throughput of one core ------------------------------------------------------
 * A register-only kernel: NACC independent accumulators (more than FMA latency x FMA ports),
 * each updated a = a * b + c per iteration, nothing loaded or stored in the loop. The widest
 * ISA the CPU and OS support is chosen at run time (AVX-512F, else AVX2+FMA, else scalar). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NACC 16
/* The loops are written in assembly so that the compiler can neither spill the
 * accumulators nor fold anything: per iteration 16 (AVX-512) or 12 (AVX2) independent
 * vfmadd231ps on registers, sources zero (no denormals). */
#define FMA16(R) "vfmadd231ps %%zmm16, %%zmm17, %%zmm" #R "\n\t"
__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters, float seed) {
    (void)seed;
    __asm__ volatile("vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
                     "vpxord %%zmm0, %%zmm0, %%zmm0\n\tvpxord %%zmm1, %%zmm1, %%zmm1\n\t"
                     "vpxord %%zmm2, %%zmm2, %%zmm2\n\tvpxord %%zmm3, %%zmm3, %%zmm3\n\t"
                     "vpxord %%zmm4, %%zmm4, %%zmm4\n\tvpxord %%zmm5, %%zmm5, %%zmm5\n\t"
                     "vpxord %%zmm6, %%zmm6, %%zmm6\n\tvpxord %%zmm7, %%zmm7, %%zmm7\n\t"
                     "vpxord %%zmm8, %%zmm8, %%zmm8\n\tvpxord %%zmm9, %%zmm9, %%zmm9\n\t"
                     "vpxord %%zmm10, %%zmm10, %%zmm10\n\tvpxord %%zmm11, %%zmm11, %%zmm11\n\t"
                     "vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                     "vpxord %%zmm14, %%zmm14, %%zmm14\n\tvpxord %%zmm15, %%zmm15, %%zmm15\n\t"
                     "1:\n\t" FMA16(0) FMA16(1) FMA16(2) FMA16(3) FMA16(4) FMA16(5) FMA16(6)
                         FMA16(7) FMA16(8) FMA16(9) FMA16(10) FMA16(11) FMA16(12) FMA16(13)
                             FMA16(14) FMA16(15) "dec %0\n\tjnz 1b\n\tvzeroupper\n\t"
                     : "+r"(iters)
                     :
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16",
                       "xmm17", "cc");
    return (float)iters;
}
#define FMA12(R) "vfmadd231ps %%ymm12, %%ymm13, %%ymm" #R "\n\t"
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters, float seed) {
    (void)seed;
    __asm__ volatile("vxorps %%ymm12, %%ymm12, %%ymm12\n\tvxorps %%ymm13, %%ymm13, %%ymm13\n\t"
                     "vxorps %%ymm0, %%ymm0, %%ymm0\n\tvxorps %%ymm1, %%ymm1, %%ymm1\n\t"
                     "vxorps %%ymm2, %%ymm2, %%ymm2\n\tvxorps %%ymm3, %%ymm3, %%ymm3\n\t"
                     "vxorps %%ymm4, %%ymm4, %%ymm4\n\tvxorps %%ymm5, %%ymm5, %%ymm5\n\t"
                     "vxorps %%ymm6, %%ymm6, %%ymm6\n\tvxorps %%ymm7, %%ymm7, %%ymm7\n\t"
                     "vxorps %%ymm8, %%ymm8, %%ymm8\n\tvxorps %%ymm9, %%ymm9, %%ymm9\n\t"
                     "vxorps %%ymm10, %%ymm10, %%ymm10\n\tvxorps %%ymm11, %%ymm11, %%ymm11\n\t"
                     "1:\n\t" FMA12(0) FMA12(1) FMA12(2) FMA12(3) FMA12(4) FMA12(5) FMA12(6)
                         FMA12(7) FMA12(8) FMA12(9) FMA12(10) FMA12(11)
                             "dec %0\n\tjnz 1b\n\tvzeroupper\n\t"
                     : "+r"(iters)
                     :
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "cc");
    return (float)iters;
}
#endif

typedef struct {
    const char *isa;
    double gflops;
    double gflops_avx512, gflops_avx2;
} peak_fma;

static volatile float g_sink;

/* FLOP/s of the kernel, median of 7 runs of ~20 ms. */
static peak_fma measure_peak_fma(void) {
    peak_fma pk = {"scalar", 0, 0, 0};
    int kind = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        kind = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        kind = 1;
#endif
    double per_iter = 0;
    long iters = 2000000;
    double t[7];
    for (int r = 0; r < 8; r++) {
        double t0 = now_ms();
        float v = 0;
        volatile double fallback = 1.0;
#if defined(__x86_64__) && defined(__GNUC__)
        if (kind == 2)
            v = fma_loop_avx512(iters, (float)r), per_iter = 16.0 * NACC * 2;
        else if (kind == 1)
            v = fma_loop_avx2(iters, (float)r), per_iter = 8.0 * 12 * 2;
        else
#endif
        {
            double a0 = fallback, a1 = fallback, a2 = fallback, a3 = fallback;
            for (long i = 0; i < iters; i++) {
                a0 = a0 * 0.999999 + 1e-7;
                a1 = a1 * 0.999999 + 1e-7;
                a2 = a2 * 0.999999 + 1e-7;
                a3 = a3 * 0.999999 + 1e-7;
            }
            v = (float)(a0 + a1 + a2 + a3);
            per_iter = 8;
        }
        g_sink = v;
        if (r > 0) /* the first run warms up the clock and the wide units */
            t[r - 1] = now_ms() - t0;
    }
    pk.isa = kind == 2 ? "avx512f" : kind == 1 ? "avx2+fma" : "scalar";
    pk.gflops_avx512 = kind == 2 ? per_iter * (double)iters / (median(t, 7) * 1e-3) * 1e-9 : 0;
    pk.gflops = per_iter * (double)iters / (median(t, 7) * 1e-3) * 1e-9;
#if defined(__x86_64__) && defined(__GNUC__)
    /* with one 512-bit FMA port (or a lower AVX-512 clock) AVX2 can be as fast: the peak is
     * the faster of the two */
    if (kind == 2) {
        for (int r = 0; r < 8; r++) {
            double t0 = now_ms();
            g_sink = fma_loop_avx2(iters, (float)r);
            if (r > 0)
                t[r - 1] = now_ms() - t0;
        }
        double g2 = 8.0 * 12 * 2 * (double)iters / (median(t, 7) * 1e-3) * 1e-9;
        pk.gflops_avx2 = g2;
        if (g2 > pk.gflops) {
            pk.gflops = g2;
            pk.isa = "avx2+fma (avx512f slower)";
        }
    }
#endif
    return pk;
}

/* FLOPs of one decoded token with `ctx` keys (all layers, attention, tied LM head). */
static double decode_flops(const vlad_config *c, int ctx) {
    double wd = c->width, kvd = vlad_cfg_kv_dim(c);
    return c->depth * (2 * (3 * wd * kvd + kvd * wd + 2 * wd * c->mlp) + 4.0 * ctx * kvd) +
           2 * wd * c->vocab_size;
}

static int have_torch(void) {
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static int run_twin(const char *ckpt, int threads, int iters, result *r) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s/training' && OMP_NUM_THREADS=%d /usr/bin/python3 -m vlad_twin bench "
             "--model '%s' --threads %d --iters %d",
             VLAD_SOURCE_DIR, threads, ckpt, threads, iters);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[4096], last[4096] = "";
    while (fgets(line, sizeof line, p))
        snprintf(last, sizeof last, "%s", line);
    if (pclose(p) != 0)
        return -1;
    cJSON *j = cJSON_Parse(last);
    if (!j)
        return -1;
    cJSON *a = cJSON_GetObjectItem(j, "prefix_ms"), *b = cJSON_GetObjectItem(j, "flow_step_ms"),
          *c = cJSON_GetObjectItem(j, "full_ms"), *d = cJSON_GetObjectItem(j, "decode_token_ms");
    int ok = cJSON_IsNumber(a) && cJSON_IsNumber(b) && cJSON_IsNumber(c) && cJSON_IsNumber(d);
    if (ok) {
        r->t_prefix_ms = a->valuedouble;
        r->t_flow_step_ms = b->valuedouble;
        r->t_full_ms = c->valuedouble;
        r->t_decode_ms = d->valuedouble;
    }
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

typedef struct {
    vlad_runstate *rs;
    const uint8_t *const *imgs;
    const float *state, *noise;
    float *act;
} infer_ctx;

static int full_inference(infer_ctx *x, vlad_err *err) {
    if (vlad_encode_prefix(x->rs, x->imgs, k_prompt, strlen(k_prompt), err) < 0)
        return -1;
    return vlad_sample_actions(x->rs, x->state, x->noise, 0, x->act, err);
}

static void measure_jitter(infer_ctx *x, int blas_threads, double seconds, jitter *j) {
    probe p = {0};
    p.cap = (int)(seconds * 100) + 200;
    p.lat_us = calloc((size_t)p.cap, sizeof(double));
    if (!p.lat_us)
        return;
    j->blas_threads = blas_threads;
    if (blas_threads > 0)
        vlad_runstate_set_threads(x->rs, blas_threads);
    pthread_t th;
    if (pthread_create(&th, NULL, probe_main, &p) != 0) {
        free(p.lat_us);
        return;
    }
    double t0 = now_ms();
    int n = 0;
    vlad_err err = {0};
    while (now_ms() - t0 < seconds * 1e3) {
        if (blas_threads > 0) {
            full_inference(x, &err);
            n++;
        } else {
            usleep(10000);
        }
    }
    atomic_store(&p.stop, 1);
    pthread_join(th, NULL);
    qsort(p.lat_us, (size_t)p.n, sizeof(double), cmp_d);
    j->ticks = p.n;
    j->p50 = pct(p.lat_us, p.n, 0.5);
    j->p99 = pct(p.lat_us, p.n, 0.99);
    j->max = p.n ? p.lat_us[p.n - 1] : 0;
    j->inferences = n;
    free(p.lat_us);
}

/* The batch rows (see the top): rs is the warm runstate of the single-inference figures. */
static const char *k_batch_prompts[] = {
    "pick up the red cube and put it in the bin", "", "touch the ball", "whack",
    "push the blue cube to the left edge of the table and stop", "track the green target",
    "reach", "which colour is the target?",
};

static void bench_batch(result *r, const vlad_model *m, vlad_runstate *rs, int threads,
                        const bench_int_list *bl, int rounds) {
    const vlad_config *c = &m->cfg;
    int maxn = 0;
    for (int k = 0; k < bl->n; k++)
        maxn = bl->v[k] > maxn ? bl->v[k] : maxn;
    if (maxn < 1)
        return;
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = threads};
    vlad_batch *b = vlad_batch_new(m, maxn, &o, &err);
    if (!b) {
        fprintf(stderr, "vlad-bench: batch: %s\n", err.msg);
        return;
    }
    size_t isz = (size_t)c->image_size * c->image_size * 3;
    int ha = c->chunk_size * c->action_dim, nc = c->n_cameras;
    uint8_t *pix = malloc((size_t)maxn * nc * isz);
    const uint8_t **imgp = malloc(sizeof *imgp * (size_t)maxn * nc);
    float *st = malloc(sizeof(float) * (size_t)maxn * c->state_dim);
    float *nz = malloc(sizeof(float) * (size_t)maxn * ha);
    float *ab = malloc(sizeof(float) * (size_t)maxn * ha);
    float *as = malloc(sizeof(float) * (size_t)maxn * ha);
    vlad_batch_item *items = malloc(sizeof *items * (size_t)maxn);
    double *res[BENCH_LIST_MAX][2] = {{NULL}};
    int ok = pix && imgp && st && nz && ab && as && items;
    for (int k = 0; k < bl->n; k++)
        for (int a = 0; a < 2; a++)
            ok = ok && (res[k][a] = calloc((size_t)rounds, sizeof(double))) != NULL;
    if (!ok) {
        fprintf(stderr, "vlad-bench: batch: out of memory\n");
        goto out;
    }
    vlad_rng g;
    vlad_rng_seed(&g, 99);
    for (size_t k = 0; k < (size_t)maxn * nc * isz; k++)
        pix[k] = (uint8_t)(vlad_rng_u64(&g) >> 56);
    for (int i = 0; i < maxn * c->state_dim; i++)
        st[i] = (float)vlad_rng_normal(&g);
    for (int i = 0; i < maxn * ha; i++)
        nz[i] = (float)vlad_rng_normal(&g);
    int np = (int)(sizeof k_batch_prompts / sizeof k_batch_prompts[0]);
    for (int i = 0; i < maxn; i++) {
        for (int k = 0; k < nc; k++)
            imgp[i * nc + k] = pix + ((size_t)i * nc + k) * isz;
        const char *pr = k_batch_prompts[i % np];
        items[i] = (vlad_batch_item){imgp + (size_t)i * nc, pr, strlen(pr),
                                     st + (size_t)i * c->state_dim, nz + (size_t)i * ha, 0};
    }
    r->b_rounds = rounds;
    r->b_bytes = vlad_batch_bytes(b);
    fprintf(stderr, "[%s] batch rows: n =", r->name);
    for (int k = 0; k < bl->n; k++)
        fprintf(stderr, " %d", bl->v[k]);
    fprintf(stderr, ", %d interleaved round(s) of batched vs sequential\n", rounds);
    for (int k = 0; k < bl->n; k++) {
        r->b_n[k] = bl->v[k];
        r->b_diff[k] = 0;
    }
    r->nb = bl->n;
    int warm = r->full_ms < 400; /* SmolVLA scale: the rounds are long enough as they are */
    for (int q = warm ? -1 : 0; q < rounds; q++)
        for (int k = 0; k < bl->n; k++) {
            int n = bl->v[k];
            for (int a0 = 0; a0 < 2; a0++) {
                int a = (q & 1) ? 1 - a0 : a0; /* ABBA over the rounds */
                double t0 = now_ms();
                if (a == 0) {
                    if (vlad_batch_infer(b, n, items, ab, &err))
                        fprintf(stderr, "vlad-bench: batch: %s\n", err.msg);
                } else {
                    for (int i = 0; i < n; i++) {
                        vlad_encode_prefix(rs, items[i].images, items[i].prompt,
                                           items[i].prompt_len, &err);
                        vlad_sample_actions(rs, items[i].state, items[i].noise, 0,
                                            as + (size_t)i * ha, &err);
                    }
                }
                double dt = now_ms() - t0;
                if (q >= 0)
                    res[k][a][q] = dt;
            }
            for (int i = 0; i < n * ha; i++) {
                double d = fabs((double)ab[i] - (double)as[i]);
                r->b_diff[k] = d > r->b_diff[k] ? d : r->b_diff[k];
            }
        }
    for (int k = 0; k < bl->n; k++) {
        r->b_batch_ms[k] = median(res[k][0], rounds);
        r->b_seq_ms[k] = median(res[k][1], rounds);
    }
out:
    for (int k = 0; k < bl->n; k++)
        for (int a = 0; a < 2; a++)
            free(res[k][a]);
    free(items);
    free(as);
    free(ab);
    free(nz);
    free(st);
    free(imgp);
    free(pix);
    vlad_batch_free(b);
    vlad_runstate_set_threads(rs, threads); /* vlad_batch_new set the process-global count */
}

/* ---- quantised rows ------------------------------------------------------------------------ */

typedef struct {
    int n, bits[4];
    const char *method; /* auto, awq, rtn */
    int group;
} quant_opts;

static double cur_rss_mb(void) { return status_mb("VmRSS:"); }

/* Reset the process's peak RSS (VmHWM) to its current RSS; 0 on success. */
static int reset_peak_rss(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

static int quantize_ckpt(const char *ckpt, const char *out, int bits, int group,
                         const char *method, int threads) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "cd '%s/training' && OMP_NUM_THREADS=%d /usr/bin/python3 quantize.py --model '%s' "
             "--out '%s' --bits %d --group %d --method %s --calib random --frames 4 "
             "--threads %d >&2",
             VLAD_SOURCE_DIR, threads, ckpt, out, bits, group, method, threads);
    return system(cmd) == 0 ? 0 : -1;
}

static int load_for_bench(const char *path, int widen, vlad_model **m, vlad_err *err) {
    if (vlad_model_load(path, m, err))
        return -1;
    if ((widen == 1 ? vlad_model_widen_expert(*m, err)
                    : widen == 2 ? vlad_model_widen_all(*m, err) : 0)) {
        vlad_model_free(*m);
        *m = NULL;
        return -1;
    }
    return 0;
}

static double decode_token_ms(vlad_runstate *rs, vlad_err *err) {
    const vlad_timing *t = vlad_runstate_timing(rs);
    vlad_lang_begin(rs, 0, "what now?", 9, err);
    vlad_lang_step(rs, 16, err);
    double v = t->lang_step_ms / (t->lang_step_tokens ? t->lang_step_tokens : 1);
    vlad_lang_end(rs, 0);
    return v;
}

/* The quantised rows of one config, beside the loaded F32 model (x->rs). */
static void bench_quant(result *r, infer_ctx *x, int threads, int widen, const char *dir,
                        const quant_opts *qo) {
    const vlad_config *c = &r->cfg;
    size_t HA = (size_t)c->chunk_size * c->action_dim;
    char ckpt[4200], qck[4300];
    snprintf(ckpt, sizeof ckpt, "%s/%s.safetensors", dir, r->name);
    float *ref = malloc(sizeof(float) * HA), *qa = malloc(sizeof(float) * HA);
    vlad_err err = {0};
    full_inference(x, &err);
    memcpy(ref, x->act, sizeof(float) * HA);
    const vlad_timing *tf = vlad_runstate_timing(x->rs);
    r->nq = 0;
    for (int qi = 0; qi < qo->n; qi++) {
        struct qrow *q = &r->q[r->nq++];
        memset(q, 0, sizeof *q);
        q->bits = qo->bits[qi];
        q->group = qo->group;
        snprintf(q->method, sizeof q->method, "%s",
                 strcmp(qo->method, "auto") ? qo->method
                                            : (!strcmp(r->name, "smolvla") ? "rtn" : "awq"));
        snprintf(qck, sizeof qck, "%s/%s.q%d.safetensors", dir, r->name, q->bits);
        fprintf(stderr, "[%s] quantising to Q%d (%s, group %d): %s\n", r->name, q->bits,
                q->method, q->group, qck);
        double t0 = now_ms();
        if (quantize_ckpt(ckpt, qck, q->bits, q->group, q->method, threads)) {
            fprintf(stderr, "[%s] training/quantize.py failed: no Q%d row\n", r->name, q->bits);
            continue;
        }
        q->quant_s = (now_ms() - t0) * 1e-3;
        vlad_model *qm = NULL;
        if (load_for_bench(qck, widen, &qm, &err)) {
            fprintf(stderr, "vlad-bench: %s\n", err.msg);
            unlink(qck);
            continue;
        }
        q->file_mb = (double)qm->file_bytes / 1048576.0;
        vlad_runstate_opts o = {.n_threads = threads, .max_streams = 1, .lang_ignore_end = 1};
        vlad_runstate *qrs = vlad_runstate_new(qm, &o, &err);
        if (!qrs) {
            fprintf(stderr, "vlad-bench: %s\n", err.msg);
            vlad_model_free(qm);
            unlink(qck);
            continue;
        }
        infer_ctx y = {qrs, x->imgs, x->state, x->noise, qa};
        full_inference(&y, &err); /* warm-up, and the chunk on the same inputs */
        q->chunk_err = 0;
        for (size_t i = 0; i < HA; i++) {
            double d = fabs((double)qa[i] - ref[i]);
            q->chunk_err = d > q->chunk_err ? d : q->chunk_err;
        }
        const vlad_timing *tq = vlad_runstate_timing(qrs);
        int n = r->iters;
        double *v[2][4];
        for (int a = 0; a < 2; a++)
            for (int k = 0; k < 4; k++)
                v[a][k] = calloc((size_t)n, sizeof(double));
        fprintf(stderr, "[%s] Q%d vs F32, %d interleaved rounds\n", r->name, q->bits, n);
        for (int i = 0; i < n; i++)
            for (int a0 = 0; a0 < 2; a0++) {
                int a = (i & 1) ? 1 - a0 : a0; /* ABBA: 0 = F32, 1 = quantised */
                infer_ctx *z = a ? &y : x;
                const vlad_timing *t = a ? tq : tf;
                double t1 = now_ms();
                full_inference(z, &err);
                v[a][2][i] = now_ms() - t1;
                v[a][0][i] = t->prefix_ms;
                v[a][1][i] = t->flow_step_ms;
                v[a][3][i] = decode_token_ms(z->rs, &err);
            }
        q->f_prefix_ms = median(v[0][0], n);
        q->f_flow_ms = median(v[0][1], n);
        q->f_full_ms = median(v[0][2], n);
        q->f_decode_ms = median(v[0][3], n);
        q->prefix_ms = median(v[1][0], n);
        q->flow_ms = median(v[1][1], n);
        q->full_ms = median(v[1][2], n);
        q->decode_ms = median(v[1][3], n);
        for (int a = 0; a < 2; a++)
            for (int k = 0; k < 4; k++)
                free(v[a][k]);
        q->ok = 1;
        vlad_runstate_free(qrs);
        vlad_model_free(qm);
    }
    free(ref);
    free(qa);
}

/* Peak RSS of each quantised model alone (the F32 model already freed). */
static void bench_quant_rss(result *r, int threads, int widen, const char *dir, infer_ctx *x0) {
    for (int qi = 0; qi < r->nq; qi++) {
        struct qrow *q = &r->q[qi];
        if (!q->ok)
            continue;
        char qck[4300];
        snprintf(qck, sizeof qck, "%s/%s.q%d.safetensors", dir, r->name, q->bits);
        malloc_trim(0);
        q->rss_base_mb = cur_rss_mb();
        q->rss_ok = reset_peak_rss() == 0;
        vlad_err err = {0};
        vlad_model *qm = NULL;
        if (!load_for_bench(qck, widen, &qm, &err)) {
            vlad_runstate_opts o = {.n_threads = threads, .max_streams = 1, .lang_ignore_end = 1};
            vlad_runstate *qrs = vlad_runstate_new(qm, &o, &err);
            if (qrs) {
                infer_ctx y = *x0;
                y.rs = qrs;
                full_inference(&y, &err);
                decode_token_ms(qrs, &err);
                vlad_runstate_free(qrs);
            }
            vlad_model_free(qm);
        }
        q->rss_mb = q->rss_ok ? peak_rss_mb() : NAN;
        unlink(qck);
    }
}

static int bench_config(result *r, int threads, int quick, int twin, int widen,
                        const char *dir, int keep, int timing_only, const bench_int_list *bl,
                        int batch_rounds, const quant_opts *qo) {
    vlad_err err = {0};
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s.safetensors", dir, r->name);
    if (keep && access(ckpt, R_OK) == 0)
        fprintf(stderr, "[%s] reusing %s\n", r->name, ckpt);
    else if (fprintf(stderr, "[%s] writing random checkpoint %s (%s)\n", r->name, ckpt,
                     vlad_dtype_name(r->dtype)) < 0 ||
             vlad_model_write_random(&r->cfg, r->dtype, 1234, ckpt, &err)) {
        fprintf(stderr, "vlad-bench: %s\n", err.msg);
        return -1;
    }
    vlad_model *m = NULL;
    if (vlad_model_load(ckpt, &m, &err)) {
        fprintf(stderr, "vlad-bench: %s\n", err.msg);
        return -1;
    }
    if ((widen == 1 ? vlad_model_widen_expert(m, &err)
                    : widen == 2 ? vlad_model_widen_all(m, &err) : 0)) {
        fprintf(stderr, "vlad-bench: %s\n", err.msg);
        vlad_model_free(m);
        return -1;
    }
    const vlad_config *c = &m->cfg;
    r->params = vlad_model_param_count(m);
    vlad_runstate_opts o = {.n_threads = threads, .max_streams = 1, .lang_ignore_end = 1};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    if (!rs) {
        fprintf(stderr, "vlad-bench: %s\n", err.msg);
        vlad_model_free(m);
        return -1;
    }
    uint8_t *imgs[16];
    size_t isz = (size_t)c->image_size * c->image_size * 3;
    for (int i = 0; i < c->n_cameras; i++)
        imgs[i] = malloc(isz);
    float *state = malloc(sizeof(float) * (size_t)c->state_dim);
    float *noise = malloc(sizeof(float) * (size_t)c->chunk_size * c->action_dim);
    float *act = malloc(sizeof(float) * (size_t)c->chunk_size * c->action_dim);
    fill_inputs(c, imgs, state, noise);
    infer_ctx x = {rs, (const uint8_t *const *)imgs, state, noise, act};
    int n = r->iters;
    double *tv = calloc((size_t)n, sizeof(double)), *tb = calloc((size_t)n, sizeof(double)),
           *tp = calloc((size_t)n, sizeof(double)), *tf = calloc((size_t)n, sizeof(double)),
           *tfull = calloc((size_t)n, sizeof(double)), *td = calloc((size_t)n, sizeof(double));
    fprintf(stderr, "[%s] C engine, %d thread(s), %d iterations\n", r->name, threads, n);
    full_inference(&x, &err); /* warm-up */
    const vlad_timing *t = vlad_runstate_timing(rs);
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        full_inference(&x, &err);
        tfull[i] = now_ms() - t0;
        tv[i] = t->vision_ms;
        tb[i] = t->backbone_ms;
        tp[i] = t->prefix_ms;
        tf[i] = t->flow_step_ms;
    }
    r->S = vlad_runstate_prefix_len(rs);
    int dk = 16;
    for (int i = 0; i < n; i++) {
        vlad_lang_begin(rs, 0, "what now?", 9, &err);
        vlad_lang_step(rs, dk, &err);
        td[i] = t->lang_step_ms / (t->lang_step_tokens ? t->lang_step_tokens : 1);
        vlad_lang_end(rs, 0);
    }
    r->vision_ms = median(tv, n);
    r->backbone_ms = median(tb, n);
    r->prefix_ms = median(tp, n);
    r->flow_step_ms = median(tf, n);
    r->full_ms = median(tfull, n);
    r->decode_ms = median(td, n);
    r->prefix_gflops = vlad_flops_prefix(c, r->S) / (r->prefix_ms * 1e-3) * 1e-9;
    r->flow_gflops = vlad_flops_flow_step(c, r->S) / (r->flow_step_ms * 1e-3) * 1e-9;
    r->sgemm_gflops = sgemm_gflops(quick ? 3 : 7);
    peak_fma pk = measure_peak_fma();
    r->peak_gflops = pk.gflops;
    r->peak_isa = pk.isa;
    r->peak_avx512 = pk.gflops_avx512;
    r->peak_avx2 = pk.gflops_avx2;
    /* decode: one token at ~S + question + 8 keys */
    r->decode_gflops = decode_flops(c, r->S + 12) / (r->decode_ms * 1e-3) * 1e-9;
    /* breakdown: a separate profiled run (the timers cost a little, the figures above have
     * them off) */
    {
        int np = n < 5 ? n : 5;
        double *pv[3][VLAD_TCAT_N + 1], *ph[3];
        for (int q = 0; q < 3; q++) {
            ph[q] = calloc((size_t)np, sizeof(double));
            for (int k = 0; k <= VLAD_TCAT_N; k++)
                pv[q][k] = calloc((size_t)np, sizeof(double));
        }
        vlad_runstate_set_profile(rs, 1);
        for (int i = 0; i < np; i++) {
            full_inference(&x, &err);
            vlad_lang_begin(rs, 0, "what now?", 9, &err);
            vlad_lang_step(rs, dk, &err);
            vlad_lang_end(rs, 0);
            int tok = t->lang_step_tokens ? t->lang_step_tokens : 1;
            const double *src[3] = {t->prefix_cat_ms, t->flow_step_cat_ms, t->lang_step_cat_ms};
            double tot[3] = {t->prefix_ms, t->flow_step_ms, t->lang_step_ms / tok};
            double div[3] = {1, 1, tok};
            for (int q = 0; q < 3; q++) {
                double sum = 0;
                for (int k = 0; k < VLAD_TCAT_N; k++) {
                    pv[q][k][i] = src[q][k] / div[q];
                    sum += pv[q][k][i];
                }
                pv[q][VLAD_TCAT_N][i] = fmax(tot[q] - sum, 0);
                ph[q][i] = tot[q];
            }
        }
        vlad_runstate_set_profile(rs, 0);
        for (int q = 0; q < 3; q++) {
            r->phase_prof_ms[q] = median(ph[q], np);
            for (int k = 0; k <= VLAD_TCAT_N; k++) {
                r->cat_ms[q][k] = median(pv[q][k], np);
                free(pv[q][k]);
            }
            free(ph[q]);
        }
    }
    /* thread scaling: 1 and 2 OpenBLAS threads, alternating rounds */
    if (!timing_only) {
        double *v[2][3];
        for (int a = 0; a < 2; a++)
            for (int q = 0; q < 3; q++)
                v[a][q] = calloc((size_t)n, sizeof(double));
        for (int a = 0; a < 2; a++) { /* warm-up of each setting */
            vlad_runstate_set_threads(rs, a + 1);
            full_inference(&x, &err);
        }
        for (int i = 0; i < n; i++)
            for (int a0 = 0; a0 < 2; a0++) {
                int a = (i & 1) ? 1 - a0 : a0; /* ABBA order */
                vlad_runstate_set_threads(rs, a + 1);
                double t0 = now_ms();
                full_inference(&x, &err);
                v[a][2][i] = now_ms() - t0;
                v[a][0][i] = t->prefix_ms;
                v[a][1][i] = t->flow_step_ms;
            }
        vlad_runstate_set_threads(rs, threads);
        for (int a = 0; a < 2; a++) {
            r->thr_prefix_ms[a] = median(v[a][0], n);
            r->thr_flow_ms[a] = median(v[a][1], n);
            r->thr_full_ms[a] = median(v[a][2], n);
            for (int q = 0; q < 3; q++)
                free(v[a][q]);
        }
    }
    if (bl && bl->n) {
        int rounds = batch_rounds;
        if (rounds <= 0) /* auto: short on the tiny config, 1-2 rounds at SmolVLA scale */
            rounds = r->full_ms > 400 ? (quick ? 1 : 2) : (quick ? 5 : 15);
        bench_batch(r, m, rs, threads, bl, rounds);
    }
    r->rss_mb = peak_rss_mb();
    /* jitter: engine idle, then 1 and 2 BLAS threads */
    double js = quick ? 1.0 : 3.0;
    if (r->full_ms > 400)
        js = quick ? 3.0 : 6.0;
    if (!timing_only) {
        fprintf(stderr, "[%s] jitter probe (100 Hz), %.0f s each: idle, 1 and 2 BLAS threads\n",
                r->name, js);
        measure_jitter(&x, 0, js / 2, &r->jit[0]);
        measure_jitter(&x, 1, js, &r->jit[1]);
        measure_jitter(&x, 2, js, &r->jit[2]);
    }
    vlad_runstate_set_threads(rs, threads);
    if (twin) {
        fprintf(stderr, "[%s] PyTorch twin, %d thread(s)\n", r->name, threads);
        r->twin_ok = run_twin(ckpt, threads, r->iters, r) == 0;
        if (!r->twin_ok)
            fprintf(stderr, "[%s] twin run failed\n", r->name);
    }
    if (qo && qo->n)
        bench_quant(r, &x, threads, widen, dir, qo);
    free(tv);
    free(tb);
    free(tp);
    free(tf);
    free(tfull);
    free(td);
    vlad_runstate_free(rs);
    vlad_model_free(m);
    if (qo && qo->n)
        bench_quant_rss(r, threads, widen, dir, &x);
    for (int i = 0; i < r->cfg.n_cameras; i++) /* c pointed into the freed model */
        free(imgs[i]);
    free(state);
    free(noise);
    free(act);
    if (!keep)
        unlink(ckpt);
    return 0;
}

static const char *fmt2(const double *v) {
    static char buf[4][48];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%.3f / %.3f", v[0], v[1]);
    return buf[k];
}

static void print_table(result *rs, int nr, int threads) {
    printf("\nvlad-bench engine — batch 1, %d OpenBLAS thread(s) for engine and twin, "
           "medians, same run\n\n",
           threads);
    printf("%-34s", "");
    for (int i = 0; i < nr; i++)
        printf(" %20s", rs[i].name);
    printf("\n");
#define ROW(label, fmt, expr)                      \
    do {                                           \
        printf("%-34s", label);                    \
        for (int i = 0; i < nr; i++) {             \
            result *r = &rs[i];                    \
            (void)r;                               \
            printf(" %20" fmt, expr);              \
        }                                          \
        printf("\n");                              \
    } while (0)
    ROW("parameters (M)", ".2f", r->params / 1e6);
    ROW("weights dtype", "s", vlad_dtype_name(r->dtype));
    ROW("prefix tokens S", "d", r->S);
    ROW("vision (ms)", ".3f", r->vision_ms);
    ROW("prefix: vision+backbone (ms)", ".3f", r->prefix_ms);
    ROW("one flow step (ms)", ".3f", r->flow_step_ms);
    ROW("full inference (ms)", ".3f", r->full_ms);
    ROW("decode per token (ms)", ".3f", r->decode_ms);
    ROW("peak RSS (MB)", ".1f", r->rss_mb);
    ROW("prefix GFLOP/s", ".1f", r->prefix_gflops);
    ROW("flow step GFLOP/s", ".1f", r->flow_gflops);
    ROW("sgemm 1024^3 GFLOP/s", ".1f", r->sgemm_gflops);
    ROW("prefix / sgemm", ".0f%%", 100.0 * r->prefix_gflops / r->sgemm_gflops);
    ROW("decode GFLOP/s", ".1f", r->decode_gflops);
    ROW("OpenBLAS core", "s", vlad_blas_corename());
    ROW("peak FMA ISA", "s", r->peak_isa);
    ROW("peak FMA GFLOP/s (1 core)", ".1f", r->peak_gflops);
    ROW("  avx512f / avx2 kernels", "s", fmt2((double[2]){r->peak_avx512, r->peak_avx2}));
    ROW("sgemm / peak", ".0f%%", 100.0 * r->sgemm_gflops / r->peak_gflops);
    ROW("prefix / peak", ".0f%%", 100.0 * r->prefix_gflops / r->peak_gflops);
    ROW("flow step / peak", ".0f%%", 100.0 * r->flow_gflops / r->peak_gflops);
    ROW("decode / peak", ".1f%%", 100.0 * r->decode_gflops / r->peak_gflops);
    {
        static const char *ph[3] = {"prefix", "flow step", "decode token"};
        static const char *cn[VLAD_TCAT_N + 1] = {"GEMM", "attention", "norm/act/rope",
                                                   "copy/convert", "other"};
        for (int q = 0; q < 3; q++) {
            char lab[64];
            snprintf(lab, sizeof lab, "%s profiled (ms)", ph[q]);
            ROW(lab, ".3f", r->phase_prof_ms[q]);
            for (int k = 0; k <= VLAD_TCAT_N; k++) {
                snprintf(lab, sizeof lab, "  %s ms (%%)", cn[k]);
                printf("%-34s", lab);
                for (int i = 0; i < nr; i++) {
                    char cell[64];
                    double tot = rs[i].phase_prof_ms[q] > 0 ? rs[i].phase_prof_ms[q] : 1;
                    snprintf(cell, sizeof cell, "%.3f (%.0f%%)", rs[i].cat_ms[q][k],
                             100.0 * rs[i].cat_ms[q][k] / tot);
                    printf(" %20s", cell);
                }
                printf("\n");
            }
        }
    }
    ROW("prefix 1 / 2 threads (ms)", "s", fmt2(r->thr_prefix_ms));
    ROW("flow step 1 / 2 threads (ms)", "s", fmt2(r->thr_flow_ms));
    ROW("full 1 / 2 threads (ms)", "s", fmt2(r->thr_full_ms));
    ROW("speed-up full, 2 threads", ".2fx", r->thr_full_ms[0] / r->thr_full_ms[1]);
    {
        int mb = 0;
        for (int i = 0; i < nr; i++)
            mb = rs[i].nb > mb ? rs[i].nb : mb;
        for (int k = 0; k < mb; k++) {
            static const char *bl[5] = {"batch n=%d: batch / %d seq. (ms)", "  per item (ms)",
                                        "  items/s batched / seq.", "  speed-up batched",
                                        "  max |batch - seq.| action"};
            for (int row = 0; row < 5; row++) {
                char lab[64];
                int n0 = 0;
                for (int i = 0; i < nr && !n0; i++)
                    n0 = k < rs[i].nb ? rs[i].b_n[k] : 0;
                snprintf(lab, sizeof lab, bl[row], n0, n0);
                printf("%-34s", lab);
                for (int i = 0; i < nr; i++) {
                    const result *r = &rs[i];
                    char cell[64] = "-";
                    if (k < r->nb && r->b_batch_ms[k] > 0) {
                        double bt = r->b_batch_ms[k], sq = r->b_seq_ms[k];
                        int n = r->b_n[k];
                        if (row == 0)
                            snprintf(cell, sizeof cell, "%.3f / %.3f", bt, sq);
                        else if (row == 1)
                            snprintf(cell, sizeof cell, "%.3f / %.3f", bt / n, sq / n);
                        else if (row == 2)
                            snprintf(cell, sizeof cell, "%.1f / %.1f", n * 1e3 / bt, n * 1e3 / sq);
                        else if (row == 3)
                            snprintf(cell, sizeof cell, "%.2fx", sq / bt);
                        else
                            snprintf(cell, sizeof cell, "%.2g", r->b_diff[k]);
                    }
                    printf(" %20s", cell);
                }
                printf("\n");
            }
        }
        if (mb)
            ROW("batch rounds / bytes (MB)", "s",
                fmt2((double[2]){r->b_rounds, (double)r->b_bytes / 1048576.0}));
    }
    {
        int mq = 0;
        for (int i = 0; i < nr; i++)
            mq = rs[i].nq > mq ? rs[i].nq : mq;
        for (int k = 0; k < mq; k++) {
            static const char *ql[11] = {
                "", "  prefix Q / F32 (ms)", "  one flow step Q / F32 (ms)",
                "  full inference Q / F32 (ms)", "  decode per token Q / F32 (ms)",
                "  speed-up full vs F32", "  speed-up flow step vs F32", "  speed-up decode vs F32",
                "  peak RSS alone (MB)", "  max |chunk - F32 chunk|", "  quantise time (s)"};
            for (int row = 0; row < 11; row++) {
                char lab[80];
                snprintf(lab, sizeof lab, "%s", ql[row]);
                if (row == 0) /* the method may differ per config: named in the cells */
                    for (int i = 0; i < nr; i++)
                        if (k < rs[i].nq) {
                            snprintf(lab, sizeof lab, "Q%d (g%d): method, file (MB)",
                                     rs[i].q[k].bits, rs[i].q[k].group);
                            break;
                        }
                printf("%-34s", lab);
                for (int i = 0; i < nr; i++) {
                    const struct qrow *q = k < rs[i].nq ? &rs[i].q[k] : NULL;
                    char cell[64] = "-";
                    if (q && q->ok) {
                        switch (row) {
                        case 0: snprintf(cell, sizeof cell, "%s, %.1f", q->method, q->file_mb); break;
                        case 1: snprintf(cell, sizeof cell, "%.3f / %.3f", q->prefix_ms, q->f_prefix_ms); break;
                        case 2: snprintf(cell, sizeof cell, "%.3f / %.3f", q->flow_ms, q->f_flow_ms); break;
                        case 3: snprintf(cell, sizeof cell, "%.3f / %.3f", q->full_ms, q->f_full_ms); break;
                        case 4: snprintf(cell, sizeof cell, "%.3f / %.3f", q->decode_ms, q->f_decode_ms); break;
                        case 5: snprintf(cell, sizeof cell, "%.2fx", q->f_full_ms / q->full_ms); break;
                        case 6: snprintf(cell, sizeof cell, "%.2fx", q->f_flow_ms / q->flow_ms); break;
                        case 7: snprintf(cell, sizeof cell, "%.2fx", q->f_decode_ms / q->decode_ms); break;
                        case 8:
                            if (q->rss_ok)
                                snprintf(cell, sizeof cell, "%.1f", q->rss_mb);
                            else
                                snprintf(cell, sizeof cell, "n/a");
                            break;
                        case 9: snprintf(cell, sizeof cell, "%.3g", q->chunk_err); break;
                        default: snprintf(cell, sizeof cell, "%.1f", q->quant_s); break;
                        }
                    }
                    printf(" %20s", cell);
                }
                printf("\n");
            }
        }
    }
    ROW("twin prefix (ms)", ".3f", r->twin_ok ? r->t_prefix_ms : NAN);
    ROW("twin one flow step (ms)", ".3f", r->twin_ok ? r->t_flow_step_ms : NAN);
    ROW("twin full inference (ms)", ".3f", r->twin_ok ? r->t_full_ms : NAN);
    ROW("twin decode per token (ms)", ".3f", r->twin_ok ? r->t_decode_ms : NAN);
    ROW("speed-up prefix (twin/C)", ".2fx", r->twin_ok ? r->t_prefix_ms / r->prefix_ms : NAN);
    ROW("speed-up flow step", ".2fx", r->twin_ok ? r->t_flow_step_ms / r->flow_step_ms : NAN);
    ROW("speed-up full inference", ".2fx", r->twin_ok ? r->t_full_ms / r->full_ms : NAN);
    ROW("speed-up decode", ".2fx", r->twin_ok ? r->t_decode_ms / r->decode_ms : NAN);
    const char *jl[3] = {"idle", "1 BLAS thread", "2 BLAS threads"};
    for (int k = 0; k < 3; k++) {
        char lab[64];
        snprintf(lab, sizeof lab, "jitter %s p50/p99/max (us)", jl[k]);
        printf("%-34s", lab);
        for (int i = 0; i < nr; i++) {
            char cell[64];
            snprintf(cell, sizeof cell, "%.0f/%.0f/%.0f", rs[i].jit[k].p50, rs[i].jit[k].p99,
                     rs[i].jit[k].max);
            printf(" %20s", cell);
        }
        printf("\n");
    }
#undef ROW
}

static void write_json(const char *path, result *rs, int nr, int threads) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON *arr = cJSON_AddArrayToObject(o, "configs");
    for (int i = 0; i < nr; i++) {
        result *r = &rs[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", r->name);
        char *cj = vlad_config_to_json(&r->cfg);
        cJSON_AddItemToObject(j, "config", cJSON_Parse(cj ? cj : "{}"));
        free(cj);
        cJSON_AddNumberToObject(j, "parameters", (double)r->params);
        cJSON_AddStringToObject(j, "dtype", vlad_dtype_name(r->dtype));
        cJSON_AddNumberToObject(j, "prefix_tokens", r->S);
        cJSON_AddNumberToObject(j, "vision_ms", r->vision_ms);
        cJSON_AddNumberToObject(j, "prefix_ms", r->prefix_ms);
        cJSON_AddNumberToObject(j, "flow_step_ms", r->flow_step_ms);
        cJSON_AddNumberToObject(j, "full_inference_ms", r->full_ms);
        cJSON_AddNumberToObject(j, "decode_token_ms", r->decode_ms);
        cJSON_AddNumberToObject(j, "peak_rss_mb", r->rss_mb);
        cJSON_AddNumberToObject(j, "prefix_gflops", r->prefix_gflops);
        cJSON_AddNumberToObject(j, "flow_step_gflops", r->flow_gflops);
        cJSON_AddNumberToObject(j, "sgemm_1024_gflops", r->sgemm_gflops);
        cJSON_AddNumberToObject(j, "prefix_vs_sgemm", r->prefix_gflops / r->sgemm_gflops);
        cJSON_AddNumberToObject(j, "decode_gflops", r->decode_gflops);
        cJSON_AddStringToObject(j, "openblas_core", vlad_blas_corename());
        cJSON *pk = cJSON_AddObjectToObject(j, "peak");
        cJSON_AddStringToObject(pk, "isa", r->peak_isa);
        cJSON_AddNumberToObject(pk, "fma_gflops_1core", r->peak_gflops);
        cJSON_AddNumberToObject(pk, "avx512f_gflops", r->peak_avx512);
        cJSON_AddNumberToObject(pk, "avx2_gflops", r->peak_avx2);
        cJSON_AddNumberToObject(pk, "sgemm_frac", r->sgemm_gflops / r->peak_gflops);
        cJSON_AddNumberToObject(pk, "prefix_frac", r->prefix_gflops / r->peak_gflops);
        cJSON_AddNumberToObject(pk, "flow_step_frac", r->flow_gflops / r->peak_gflops);
        cJSON_AddNumberToObject(pk, "decode_frac", r->decode_gflops / r->peak_gflops);
        static const char *phk[3] = {"prefix", "flow_step", "decode_token"};
        static const char *ck[VLAD_TCAT_N + 1] = {"gemm_ms", "attention_ms", "norm_act_ms",
                                                   "copy_convert_ms", "other_ms"};
        cJSON *bd = cJSON_AddObjectToObject(j, "breakdown");
        for (int q = 0; q < 3; q++) {
            cJSON *e = cJSON_AddObjectToObject(bd, phk[q]);
            cJSON_AddNumberToObject(e, "total_ms", r->phase_prof_ms[q]);
            for (int k = 0; k <= VLAD_TCAT_N; k++)
                cJSON_AddNumberToObject(e, ck[k], r->cat_ms[q][k]);
        }
        cJSON *ts = cJSON_AddArrayToObject(j, "threads_scaling");
        for (int a = 0; a < 2; a++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "threads", a + 1);
            cJSON_AddNumberToObject(e, "prefix_ms", r->thr_prefix_ms[a]);
            cJSON_AddNumberToObject(e, "flow_step_ms", r->thr_flow_ms[a]);
            cJSON_AddNumberToObject(e, "full_inference_ms", r->thr_full_ms[a]);
            cJSON_AddItemToArray(ts, e);
        }
        if (r->nb) {
            cJSON *bo = cJSON_AddObjectToObject(j, "batch");
            cJSON_AddNumberToObject(bo, "rounds", r->b_rounds);
            cJSON_AddNumberToObject(bo, "bytes", (double)r->b_bytes);
            cJSON *ba = cJSON_AddArrayToObject(bo, "rows");
            for (int k = 0; k < r->nb; k++) {
                cJSON *e = cJSON_CreateObject();
                double bt = r->b_batch_ms[k], sq = r->b_seq_ms[k];
                int n = r->b_n[k];
                cJSON_AddNumberToObject(e, "n", n);
                cJSON_AddNumberToObject(e, "batch_ms", bt);
                cJSON_AddNumberToObject(e, "sequential_ms", sq);
                cJSON_AddNumberToObject(e, "per_item_ms", bt / n);
                cJSON_AddNumberToObject(e, "sequential_per_item_ms", sq / n);
                cJSON_AddNumberToObject(e, "items_per_s", bt > 0 ? n * 1e3 / bt : 0);
                cJSON_AddNumberToObject(e, "sequential_items_per_s", sq > 0 ? n * 1e3 / sq : 0);
                cJSON_AddNumberToObject(e, "speedup", bt > 0 ? sq / bt : 0);
                cJSON_AddNumberToObject(e, "max_abs_diff", r->b_diff[k]);
                cJSON_AddItemToArray(ba, e);
            }
        }
        if (r->nq) {
            cJSON *qa = cJSON_AddArrayToObject(j, "quant");
            for (int k = 0; k < r->nq; k++) {
                const struct qrow *q = &r->q[k];
                if (!q->ok)
                    continue;
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "bits", q->bits);
                cJSON_AddNumberToObject(e, "group", q->group);
                cJSON_AddStringToObject(e, "method", q->method);
                cJSON_AddNumberToObject(e, "file_mb", q->file_mb);
                cJSON_AddNumberToObject(e, "prefix_ms", q->prefix_ms);
                cJSON_AddNumberToObject(e, "flow_step_ms", q->flow_ms);
                cJSON_AddNumberToObject(e, "full_inference_ms", q->full_ms);
                cJSON_AddNumberToObject(e, "decode_token_ms", q->decode_ms);
                cJSON_AddNumberToObject(e, "f32_prefix_ms", q->f_prefix_ms);
                cJSON_AddNumberToObject(e, "f32_flow_step_ms", q->f_flow_ms);
                cJSON_AddNumberToObject(e, "f32_full_inference_ms", q->f_full_ms);
                cJSON_AddNumberToObject(e, "f32_decode_token_ms", q->f_decode_ms);
                cJSON_AddNumberToObject(e, "speedup_full", q->f_full_ms / q->full_ms);
                cJSON_AddNumberToObject(e, "speedup_flow_step", q->f_flow_ms / q->flow_ms);
                cJSON_AddNumberToObject(e, "speedup_decode", q->f_decode_ms / q->decode_ms);
                if (q->rss_ok)
                    cJSON_AddNumberToObject(e, "peak_rss_mb", q->rss_mb);
                cJSON_AddNumberToObject(e, "rss_before_load_mb", q->rss_base_mb);
                cJSON_AddNumberToObject(e, "max_abs_chunk_diff", q->chunk_err);
                cJSON_AddNumberToObject(e, "quantize_s", q->quant_s);
                cJSON_AddItemToArray(qa, e);
            }
        }
        if (r->twin_ok) {
            cJSON *t = cJSON_AddObjectToObject(j, "twin");
            cJSON_AddNumberToObject(t, "prefix_ms", r->t_prefix_ms);
            cJSON_AddNumberToObject(t, "flow_step_ms", r->t_flow_step_ms);
            cJSON_AddNumberToObject(t, "full_inference_ms", r->t_full_ms);
            cJSON_AddNumberToObject(t, "decode_token_ms", r->t_decode_ms);
            cJSON_AddNumberToObject(t, "speedup_full", r->t_full_ms / r->full_ms);
            cJSON_AddNumberToObject(t, "speedup_prefix", r->t_prefix_ms / r->prefix_ms);
            cJSON_AddNumberToObject(t, "speedup_flow_step", r->t_flow_step_ms / r->flow_step_ms);
            cJSON_AddNumberToObject(t, "speedup_decode", r->t_decode_ms / r->decode_ms);
        }
        cJSON *ja = cJSON_AddArrayToObject(j, "jitter");
        for (int k = 0; k < 3; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "blas_threads", r->jit[k].blas_threads);
            cJSON_AddNumberToObject(e, "ticks", r->jit[k].ticks);
            cJSON_AddNumberToObject(e, "inferences", r->jit[k].inferences);
            cJSON_AddNumberToObject(e, "p50_us", r->jit[k].p50);
            cJSON_AddNumberToObject(e, "p99_us", r->jit[k].p99);
            cJSON_AddNumberToObject(e, "max_us", r->jit[k].max);
            cJSON_AddItemToArray(ja, e);
        }
        cJSON_AddItemToArray(arr, j);
    }
    bench_write_json(path, o);
}

/* --plot DIR: DIR/engine-breakdown.png, one panel per configuration (their scales differ
 * 1000x): a stacked bar per implementation of the time of one full inference by phase. The C
 * engine splits its prefix into vision and backbone; the twin reports the prefix whole. The
 * flow part is full - prefix (all N flow steps). Decode per token is in the bar's label. */
static void plot_breakdown(const char *dir, const result *rs, int nr, int threads) {
    static const char *who = "vlad-bench engine";
    if (nr < 1 || bench_plot_dir(who, dir))
        return;
    char png[4200], title[160];
    bench_plot_path(dir, "engine-breakdown.png", png, sizeof png);
    snprintf(title, sizeof title, "vlad-bench engine: one full inference by phase, medians, %d BLAS "
             "thread%s", threads, threads == 1 ? "" : "s");
    vlad_err err;
    vlad_plot *p = vlad_plot_new(png, 560 * nr + 80, 480, NULL, &err);
    if (!p) {
        fprintf(stderr, "%s: %s\n", who, err.msg);
        return;
    }
    vlad_plot_printf(p, "set multiplot layout 1,%d title '%s'\n"
                        "set style data histograms\nset style histogram rowstacked\n"
                        "set style fill solid 0.85 border -1\nset boxwidth 0.6\n"
                        "set ylabel 'ms'\nset yrange [0:*]\nset bmargin 4\n"
                        "set key outside right top vertical Left reverse samplen 2\n",
                     nr, title);
    for (int i = 0; i < nr; i++) {
        const result *r = &rs[i];
        char name[16];
        snprintf(name, sizeof name, "e%d", i);
        vlad_plot_data(p, name);
        vlad_plot_printf(p, "\"C engine\\ndecode %.3g ms/token\" %.6g %.6g 0 %.6g\n", r->decode_ms,
                         r->vision_ms, r->backbone_ms, fmax(r->full_ms - r->prefix_ms, 0));
        if (r->twin_ok)
            vlad_plot_printf(p, "\"PyTorch twin\\ndecode %.3g ms/token\" 0 0 %.6g %.6g\n",
                             r->t_decode_ms, r->t_prefix_ms, fmax(r->t_full_ms - r->t_prefix_ms, 0));
        vlad_plot_end_data(p);
        vlad_plot_printf(p,
                         "set title '%s (%.2g M parameters, %d flow steps): C %.3g ms%s'\n"
                         "plot $%s using 2:xtic(1) lc rgb '#8856a7' title 'vision', "
                         "$%s using 3 lc rgb '#43a2ca' title 'backbone', ",
                         r->name, (double)r->params / 1e6, r->cfg.flow_steps, r->full_ms,
                         r->twin_ok ? ", twin side by side" : ", no twin", name, name);
        if (r->twin_ok)
            vlad_plot_printf(p, "$%s using 4 lc rgb '#a6bddb' title 'prefix (twin, not split)', ", name);
        vlad_plot_printf(p, "$%s using 5 lc rgb '#f2c14e' title 'flow steps (full - prefix)'\n", name);
    }
    vlad_plot_printf(p, "unset multiplot\n");
    bench_plot_done(who, p, png, "per-phase time of one inference, C engine vs PyTorch twin");
}

int bench_engine_main(int argc, char **argv) {
    const char *json = NULL, *keep = NULL, *plot_dir = NULL;
    int threads = 1, quick = 0, no_twin = 0, timing_only = 0, no_batch = 0, batch_rounds = 0;
    bench_int_list batch = {.v = {1, 2, 4, 8}, .n = 4, .lo = 1, .hi = 64};
    bench_choice only = {.allowed = "default|smolvla"};
    bench_choice widen = {.allowed = "none|expert|all", .value = "all", .index = 2};
    bench_choice qmethod = {.allowed = "auto|awq|rtn", .value = "auto", .index = 0};
    bench_choice qgroup = {.allowed = "32|64|128", .value = "32", .index = 0};
    const char *quant_list = NULL;
    const vlad_opt opts[] = {
        BENCH_STR("json", &json, "FILE", "write the results as JSON"),
        BENCH_INT("threads", &threads, "N", "OpenBLAS threads of the engine and the twin", 1, 64),
        BENCH_FLAG("quick", &quick, "fewer iterations, the default config only measured briefly"),
        BENCH_FLAG("no-twin", &no_twin, "skip the PyTorch twin"),
        BENCH_FLAG("timing-only", &timing_only,
                   "skip the jitter probes and the 1-vs-2-thread rounds (A/B runs)"),
        BENCH_CALL("only", &only, "default|smolvla", "one configuration (default: both)",
                   bench_opt_choice),
        BENCH_CALL("widen", &widen, "none|expert|all",
                   "BF16 matrices widened to F32 at load (default all)", bench_opt_choice),
        BENCH_STR("keep", &keep, "DIR", "keep the checkpoints there and reuse them"),
        BENCH_STR("plot", &plot_dir, "DIR", "write DIR/engine-breakdown.png (gnuplot)"),
        BENCH_CALL("batch", &batch, "LIST",
                   "batch sizes of the batched-vs-sequential rows (default 1,2,4,8)",
                   bench_opt_int_list),
        BENCH_INT("batch-rounds", &batch_rounds, "N",
                  "interleaved rounds of the batch rows (0: auto, 15 / 2 at SmolVLA scale; "
                  "--quick 5 / 1)", 0, 1000),
        BENCH_FLAG("no-batch", &no_batch, "skip the batch rows"),
        BENCH_STR("quant", &quant_list, "LIST",
                  "quantised rows: q4,q8 | none (default q4,q8 when /usr/bin/python3 has torch)"),
        BENCH_CALL("quant-method", &qmethod, "auto|awq|rtn",
                   "quantiser (auto: awq on random frames for default, rtn for smolvla)",
                   bench_opt_choice),
        BENCH_CALL("quant-group", &qgroup, "32|64|128", "group size (default 32)",
                   bench_opt_choice),
        BENCH_OPT_END,
    };
    int status;
    if (!bench_opts("vlad-bench engine", "vlad-bench engine [options]", opts, argc, argv, &status))
        return status;
    int twin = !no_twin;
    if (twin && !have_torch()) {
        fprintf(stderr, "vlad-bench: /usr/bin/python3 cannot import torch: no twin figures\n");
        twin = 0;
    }
    quant_opts qo = {.method = qmethod.value, .group = atoi(qgroup.value)};
    {
        int torch_ok = quant_list ? 1 : have_torch();
        const char *ql = quant_list ? quant_list : torch_ok ? "q4,q8" : "none";
        if (!torch_ok)
            fprintf(stderr, "vlad-bench: /usr/bin/python3 cannot import torch: no quantised rows\n");
        if (strcmp(ql, "none") && strcmp(ql, "")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", ql);
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if ((strcmp(tok, "q4") && strcmp(tok, "q8")) || qo.n == 4) {
                    fprintf(stderr, "vlad-bench: --quant: '%s' is not q4 or q8 (at most 4)\n", tok);
                    return 2;
                }
                qo.bits[qo.n++] = tok[1] == '4' ? 4 : 8;
            }
        }
    }
    char dir[4096];
    if (keep) {
        snprintf(dir, sizeof dir, "%s", keep);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/vlad-bench-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "vlad-bench: cannot make a temp dir\n");
            return 1;
        }
    }
    result rs[2];
    memset(rs, 0, sizeof rs);
    rs[0].name = "default";
    rs[0].cfg = vlad_config_default();
    rs[0].dtype = VLAD_DT_F32;
    rs[0].iters = quick ? 10 : 50;
    rs[1].name = "smolvla";
    rs[1].cfg = vlad_config_smolvla();
    rs[1].dtype = VLAD_DT_BF16;
    rs[1].iters = quick ? 1 : 3;
    result done[2];
    int nd = 0, rc = 0;
    for (int i = 0; i < 2; i++) {
        if (only.value && strcmp(only.value, rs[i].name))
            continue;
        if (bench_config(&rs[i], threads, quick, twin, widen.index, dir, keep != NULL,
                         timing_only, no_batch ? NULL : &batch, batch_rounds, &qo)) {
            rc = 1;
            continue;
        }
        done[nd++] = rs[i];
    }
    if (!keep)
        rmdir(dir);
    print_table(done, nd, threads);
    if (json)
        write_json(json, done, nd, threads);
    if (plot_dir && *plot_dir)
        plot_breakdown(plot_dir, done, nd, threads);
    return rc;
}
