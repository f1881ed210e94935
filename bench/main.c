/* vlad-bench — benchmarks of vlad. Subcommands live in their own files (bench_<name>.c);
 * this file holds what they share: the dispatch, JSON output, option-table parsing and the
 * --plot folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cpu.h"
#include "closedloop.h"

typedef struct {
    const char *name, *help;
    int (*fn)(int, char **);
} subcmd;

static const subcmd k_cmds[] = {
    {"engine", "C engine vs PyTorch twin: prefix, flow step, inference, decode, RSS, GFLOP/s, "
               "jitter", bench_engine_main},
    {"policy", "the default model vs the scripted expert on every task (lockstep), language "
               "accuracy on held-out episodes", bench_policy_main},
    {"vlash", "sync / naive / VLASH x delay on the sim (lockstep), wall-clock reaction latency, "
              "pictures", bench_vlash_main},
    {"soak", "daemon + sim + the default model at 200 Hz for N minutes: jitter, stalls, RSS and "
             "fd drift", bench_soak_main},
    {"kv", "unified KV cache (OxyGen): isolated / shared / unified language + actions, "
           "T x flow steps x k sweep", bench_kv_main},
#ifdef VLAD_HAVE_SERVE
    {"serve", "one vlad-serve shared by N robots: latency, Δ, stalls, success vs a local "
              "engine, throughput, batching gain; emulated RTT", bench_serve_main},
#endif
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: vlad-bench SUBCOMMAND [options]   (vlad-bench SUBCOMMAND --help: its options)\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        fprintf(fp, "  %-8s %s\n", k_cmds[i].name, k_cmds[i].help);
}

void bench_write_json(const char *path, cJSON *root) {
    char *s = cJSON_Print(root);
    FILE *fp = s ? fopen(path, "w") : NULL;
    if (fp) {
        fprintf(fp, "%s\n", s);
        if (fclose(fp))
            fprintf(stderr, "vlad-bench: write error on %s\n", path);
    } else {
        fprintf(stderr, "vlad-bench: cannot write %s\n", path);
    }
    free(s);
    cJSON_Delete(root);
}

int bench_opts(const char *who, const char *synopsis, const vlad_opt *tab, int argc, char **argv,
               int *status) {
    vlad_err err;
    vlad_err_clear(&err);
    int rc = vlad_opts_parse(tab, argc, argv, NULL, 0, NULL, &err);
    if (rc == VLAD_OK)
        return 1;
    if (rc == VLAD_ESTATE && !err.msg[0]) { /* --help */
        vlad_opts_usage(stdout, synopsis, tab);
        *status = 0;
        return 0;
    }
    fprintf(stderr, "%s: %s\n", who, err.msg);
    vlad_opts_usage(stderr, synopsis, tab);
    *status = 2;
    return 0;
}

int bench_opt_int_list(void *dst, const char *value, vlad_err *err) {
    bench_int_list *l = dst;
    int n = 0;
    const char *p = value;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ','))
            return vlad_err_set(err, VLAD_EINVAL, "'%s': expected integers separated by commas", value);
        if (v < l->lo || v > l->hi)
            return vlad_err_set(err, VLAD_ERANGE, "'%s': %ld is out of range %d..%d", value, v, l->lo,
                                l->hi);
        if (n == BENCH_LIST_MAX)
            return vlad_err_set(err, VLAD_ERANGE, "'%s': at most %d values", value, BENCH_LIST_MAX);
        l->v[n++] = (int)v;
        if (!*end)
            break;
        p = end + 1;
    }
    l->n = n;
    return VLAD_OK;
}

int bench_opt_choice(void *dst, const char *value, vlad_err *err) {
    bench_choice *c = dst;
    const char *a = c->allowed;
    size_t len = strlen(value);
    for (int i = 0; *a; i++) {
        const char *bar = strchr(a, '|');
        size_t n = bar ? (size_t)(bar - a) : strlen(a);
        if (n == len && !strncmp(a, value, n)) {
            c->value = value;
            c->index = i;
            return VLAD_OK;
        }
        if (!bar)
            break;
        a = bar + 1;
    }
    return vlad_err_set(err, VLAD_EINVAL, "'%s': expected one of %s", value, c->allowed);
}

int bench_plot_dir(const char *who, const char *dir) {
    if (!vlad_plot_available()) {
        fprintf(stderr, "%s: gnuplot not found (apt-get install gnuplot-nox): no pictures in %s\n",
                who, dir);
        return VLAD_EIO;
    }
    vlad_err err;
    if (bench_mkdirs(dir, &err)) {
        fprintf(stderr, "%s: --plot: %s: no pictures\n", who, err.msg);
        return VLAD_EIO;
    }
    return VLAD_OK;
}

void bench_plot_path(const char *dir, const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

void bench_plot_done(const char *who, vlad_plot *p, const char *path, const char *what) {
    vlad_err err;
    vlad_err_clear(&err);
    if (!p)
        return;
    if (vlad_plot_finish(p, 0, &err))
        fprintf(stderr, "%s: %s\n", who, err.msg);
    else
        printf("picture: %s (%s)\n", path, what);
}

int main(int argc, char **argv) {
    vlad_blas_coretype_init(argv); /* OpenBLAS kernels for this CPU (cpu.h); may re-exec */
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (!strcmp(argv[1], k_cmds[i].name))
            return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vlad-bench: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
