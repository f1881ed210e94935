/* proc.h — child processes for tests and benchmarks: start a program, wait for it with a
 * timeout, stop it; where the built programs are; a free loopback port. */
#ifndef VLAD_PROC_H
#define VLAD_PROC_H

#include <sys/types.h>

/* Start argv[0] (a path) with argv; stdout+stderr appended to log_path (NULL: inherit).
 * Returns the pid or -1. The child dies with its parent: it gets SIGKILL when the parent
 * exits or is killed (prctl PR_SET_PDEATHSIG, kept across exec), and it exits (127) before
 * exec if the parent was already gone, so a test that crashes or is killed leaves no daemon
 * or simulator behind. Linux delivers that signal when the *thread* that called
 * vlad_proc_start ends, not only the process: call it from a thread that outlives the child
 * (the main thread). The child is still reaped by vlad_proc_wait / vlad_proc_kill. */
pid_t vlad_proc_start(char *const argv[], const char *log_path);

/* Wait up to timeout_ms for pid to exit. Returns its exit status (0..255), 128+signal if
 * killed by a signal, or -1 if it is still running. */
int vlad_proc_wait(pid_t pid, int timeout_ms);

/* SIGKILL and reap (for clean-up after a failure). */
void vlad_proc_kill(pid_t pid);

/* Path of a built program: $VLAD_BIN/name, else build/bin/name. */
const char *vlad_proc_bin(const char *name);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int vlad_proc_free_port(void);

#endif
