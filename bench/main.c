/* vlad-bench — benchmarks of vlad. Subcommands live in their own files (bench_<name>.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

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
              "trajectory plot", bench_vlash_main},
    {"soak", "daemon + sim + the default model at 200 Hz for N minutes: jitter, stalls, RSS and "
             "fd drift", bench_soak_main},
    {"kv", "unified KV cache (OxyGen): isolated / shared / unified language + actions, "
           "T x flow steps x k sweep", bench_kv_main},
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: vlad-bench SUBCOMMAND [options]\n");
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

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (!strcmp(argv[1], k_cmds[i].name))
            return k_cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "vlad-bench: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
