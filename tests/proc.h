/* proc.h — test helper: start a program as a child process and stop it. */
#ifndef VLAD_TEST_PROC_H
#define VLAD_TEST_PROC_H

#include <sys/types.h>

/* Start argv[0] (a path) with argv; stdout+stderr appended to log_path (NULL: inherit).
 * Returns the pid or -1. */
pid_t proc_start(char *const argv[], const char *log_path);

/* Wait up to timeout_ms for pid to exit. Returns its exit status (0..255), 128+signal if
 * killed by a signal, or -1 if it is still running. */
int proc_wait(pid_t pid, int timeout_ms);

/* SIGKILL and reap (for clean-up after a failure). */
void proc_kill(pid_t pid);

/* Path of a built program: $VLAD_BIN/name, else build/bin/name. */
const char *proc_bin(const char *name);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int proc_free_port(void);

#endif
