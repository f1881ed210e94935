/* policy_testutil.h — shared helpers of the policy tests: fixture parity check, temp dirs. */
#ifndef VLAD_POLICY_TESTUTIL_H
#define VLAD_POLICY_TESTUTIL_H

#include <stddef.h>

/* Result of running the engine on a fixture (dir/name.*) against its expected outputs. */
typedef struct fx_result {
    int ok;              /* everything loaded and ran */
    char msg[600];       /* why not */
    int S, S_expected;
    double act_err;      /* max |actions - expected| */
    double kv_err;       /* max |prefix K/V of the stored layer - expected| */
    int text_ok;         /* greedy text bytes and end token equal */
    int text_len;
    char text_hex[256];
    char text_hex_expected[256];
    int runs_equal;      /* a second run (2 BLAS threads) gave bit-identical actions */
} fx_result;

/* Run the engine on fixture `name` in `dir` (n_threads BLAS threads). */
void fx_check(const char *dir, const char *name, int n_threads, fx_result *r);

/* Source root ($VLAD_SRC or "."). */
const char *tu_src(void);
/* "$VLAD_SRC/tests/policy/fixtures" into buf. */
const char *tu_fixture_dir(char *buf, size_t n);
/* Make a fresh temp dir (mkdtemp) into buf; 0 on success. */
int tu_mkdtemp(char *buf, size_t n);
/* rm -r of a temp dir made by tu_mkdtemp. */
void tu_rmtree(const char *dir);
/* Read a whole file (malloc'd, NUL-terminated); *len optional. NULL on failure. */
char *tu_read(const char *path, size_t *len);
/* Write bytes to a file; 0 on success. */
int tu_write(const char *path, const void *data, size_t len);

#endif
