/* bench.h — vlad-bench subcommands. Each takes argc/argv after the subcommand name and
 * returns a process exit status. */
#ifndef VLAD_BENCH_H
#define VLAD_BENCH_H

#include <cjson/cJSON.h>

/* Write `root` as indented JSON to `path` and free it; a message on stderr if it cannot. */
void bench_write_json(const char *path, cJSON *root);

/* vlad-bench engine [--json FILE] [--threads N] [--quick] [--no-twin] [--only NAME] */
int bench_engine_main(int argc, char **argv);

/* vlad-bench policy [--model M] [--episodes N] [--json FILE] ... (bench_policy.c) */
int bench_policy_main(int argc, char **argv);

/* vlad-bench vlash [--json FILE] [--episodes N] [--deltas ...] ... (bench_vlash.c) */
int bench_vlash_main(int argc, char **argv);

/* vlad-bench soak [--minutes N] [--json FILE] ... (bench_soak.c) */
int bench_soak_main(int argc, char **argv);

/* vlad-bench kv [--json FILE] [--quick] [--only default|smolvla] [--threads N] [--frames N]
 * ... (bench_kv.c) */
int bench_kv_main(int argc, char **argv);

#endif
