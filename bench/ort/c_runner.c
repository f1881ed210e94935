/* c_runner — the C engine's side of bench/ort/compare.sh: the same observation (obs.json of
 * export.py: images, state, prompt, the explicit initial noise) through vlad_encode_prefix +
 * vlad_sample_actions, W warm-up inferences then N timed ones, one JSON object on stdout
 * (medians and per-iteration times, the action chunk of the last inference).
 *
 *   c_runner --model CKPT --input OBS.json [--iters N] [--warmup W] [--threads T] [--profile]
 *
 * Built by compare.sh against build-ho's static libraries (the link line of vlad-policy):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Ipolicy -Icommon $(pkg-config --cflags libcjson openblas) \
 *      bench/ort/c_runner.c build-ho/policy/libvlad_policy.a build-ho/common/libvlad_common.a \
 *      $(pkg-config --libs libcjson openblas) -lpng16 -lyaml -lpthread -lm -o bench/ort/out/c_runner
 * Timing is CLOCK_MONOTONIC around each call, the same points as run_ort.js: prefix = the
 * vlad_encode_prefix call, sample = the vlad_sample_actions call (all flow steps, state token
 * and the de-normalisation), flow step = sample / flow_steps, full = prefix + sample;
 * full_cpu_ms: the process CPU time of a full inference (CLOCK_PROCESS_CPUTIME_ID). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"
#include "engine.h"
#include "kernels.h"
#include "model.h"
#include "obs.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* CPU time of the whole process (every thread): with one thread, the engine's own work; on a
 * shared machine it leaves out the time the process waited for a core */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s)
        return -1;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

static void print_arr(const char *name, const double *v, int n) {
    printf("\"%s\":[", name);
    for (int i = 0; i < n; i++)
        printf("%s%.6f", i ? "," : "", v[i]);
    printf("],");
}

int main(int argc, char **argv) {
    vlad_blas_coretype_init(argv); /* as vlad-policy: OpenBLAS kernels for this CPU */
    const char *model = NULL, *input = NULL;
    int iters = 10, warmup = 2, threads = 1, profile = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--input") && i + 1 < argc)
            input = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--profile"))
            profile = 1; /* the engine's per-category timers (not for timing runs) */
        else {
            fprintf(stderr, "usage: c_runner --model CKPT --input OBS.json [--iters N] "
                            "[--warmup W] [--threads T] [--profile]\n");
            return 2;
        }
    }
    if (!model || !input || iters < 1 || warmup < 0 || threads < 1) {
        fprintf(stderr, "c_runner: bad arguments\n");
        return 2;
    }
    vlad_err err = {0};
    vlad_model *m = NULL;
    vlad_obs obs = {0};
    double t0 = now_ms();
    if (vlad_model_load(model, &m, &err)) {
        fprintf(stderr, "c_runner: %s\n", err.msg);
        return 1;
    }
    const vlad_config *c = &m->cfg;
    if (vlad_obs_load(input, c, &obs, &err) || !obs.noise) {
        fprintf(stderr, "c_runner: %s\n", obs.noise || err.msg[0] ? err.msg : "obs: no noise");
        return 1;
    }
    vlad_runstate_opts o = {.n_threads = threads, .max_streams = 1, .profile = profile};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    if (!rs) {
        fprintf(stderr, "c_runner: %s\n", err.msg);
        return 1;
    }
    double load_ms = now_ms() - t0;
    const uint8_t *imgs[16];
    for (int i = 0; i < obs.n_images; i++)
        imgs[i] = obs.images[i].rgb;
    int na = c->chunk_size * c->action_dim;
    float *act = malloc((size_t)na * sizeof *act);
    double *pre = calloc((size_t)iters, sizeof *pre), *smp = calloc((size_t)iters, sizeof *smp);
    double *full = calloc((size_t)iters, sizeof *full), *stp = calloc((size_t)iters, sizeof *stp);
    double *fcpu = calloc((size_t)iters, sizeof *fcpu);
    if (!act || !pre || !smp || !full || !stp || !fcpu) {
        fprintf(stderr, "c_runner: out of memory\n");
        return 1;
    }
    size_t plen = strlen(obs.prompt);
    for (int it = -warmup; it < iters; it++) {
        double ca = cpu_ms(), a = now_ms();
        if (vlad_encode_prefix(rs, imgs, obs.prompt, plen, &err) < 0) {
            fprintf(stderr, "c_runner: %s\n", err.msg);
            return 1;
        }
        double b = now_ms();
        if (vlad_sample_actions(rs, obs.state, obs.noise, 0, act, &err)) {
            fprintf(stderr, "c_runner: %s\n", err.msg);
            return 1;
        }
        double e = now_ms(), ce = cpu_ms();
        if (it >= 0) {
            fcpu[it] = ce - ca;
            pre[it] = b - a;
            smp[it] = e - b;
            full[it] = e - a;
            stp[it] = (e - b) / c->flow_steps;
        }
    }
    printf("{\"runner\":\"c-engine\",\"threads\":%d,\"iters\":%d,\"warmup\":%d,"
           "\"blas_core\":\"%s\",\"pack_supported\":%d,\"pack_scope\":%d,\"matrix_dtype\":\"%s\","
           "\"load_ms\":%.3f,",
           threads, iters, warmup, vlad_blas_corename(), vlad_pack_supported(), vlad_pack_scope(),
           vlad_dtype_name(m->matrix_dtype), load_ms);
    printf("\"prefix_ms\":%.6f,\"flow_step_ms\":%.6f,\"sample_ms\":%.6f,\"full_ms\":%.6f,",
           median(pre, iters), median(stp, iters), median(smp, iters), median(full, iters));
    printf("\"full_cpu_ms\":%.6f,", median(fcpu, iters));
    print_arr("full_ms_all", full, iters);
    print_arr("prefix_ms_all", pre, iters);
    if (profile) { /* last inference: ms per category (gemm, attn, elem, copy) */
        const vlad_timing *t = vlad_runstate_timing(rs);
        printf("\"profile_ms\":{\"prefix\":[%.3f,%.3f,%.3f,%.3f],\"flow_step\":[%.3f,%.3f,%.3f,%.3f]},",
               t->prefix_cat_ms[0], t->prefix_cat_ms[1], t->prefix_cat_ms[2], t->prefix_cat_ms[3],
               t->flow_step_cat_ms[0], t->flow_step_cat_ms[1], t->flow_step_cat_ms[2],
               t->flow_step_cat_ms[3]);
    }
    printf("\"prefix_len\":%d,\"actions\":[", vlad_runstate_prefix_len(rs));
    for (int i = 0; i < c->chunk_size; i++) {
        printf("%s[", i ? "," : "");
        for (int j = 0; j < c->action_dim; j++)
            printf("%s%.9g", j ? "," : "", (double)act[i * c->action_dim + j]);
        printf("]");
    }
    printf("]}\n");
    free(act);
    free(pre);
    free(smp);
    free(full);
    free(stp);
    free(fcpu);
    vlad_runstate_free(rs);
    vlad_obs_free(&obs);
    vlad_model_free(m);
    return 0;
}
