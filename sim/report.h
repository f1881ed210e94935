/* report.h — vlad-sim's results: per-episode JSON (deterministic for lockstep runs) and the
 * per-task summary table. */
#ifndef VLAD_SIM_REPORT_H
#define VLAD_SIM_REPORT_H

#include <stdio.h>

#include "err.h"
#include "run.h"

/* The results as JSON text (malloc'd; deterministic for lockstep runs: no wall times). */
char *vlad_sim_results_json(const vlad_sim_results *res);
int vlad_sim_results_write_json(const vlad_sim_results *res, const char *path, vlad_err *err);

/* Per-task summary table (Markdown) and the run's tick rate. */
void vlad_sim_results_print(const vlad_sim_results *res, FILE *out);

#endif
