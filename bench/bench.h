/* bench.h — vlad-bench subcommands. Each takes argc/argv after the subcommand name and
 * returns a process exit status. */
#ifndef VLAD_BENCH_H
#define VLAD_BENCH_H

/* vlad-bench engine [--json FILE] [--threads N] [--quick] [--no-twin] [--only NAME] */
int bench_engine_main(int argc, char **argv);

#endif
