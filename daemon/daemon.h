/* daemon.h — a whole vlad daemon for one robot profile: wiring of the I/O, control and
 * inference worker threads (and the recorder's writer when recording). Used by main.c and by
 * tests that run a daemon in-process. */
#ifndef VLAD_DAEMON_H
#define VLAD_DAEMON_H

#include "err.h"
#include "profile.h"

typedef struct vlad_daemon vlad_daemon;

/* Bind the sockets of profile p (kept by pointer: must outlive the daemon). */
vlad_daemon *vlad_daemon_new(const vlad_profile *p, vlad_err *err);

/* Start the threads. */
int vlad_daemon_start(vlad_daemon *d, vlad_err *err);

/* Ask the threads to stop (async-signal-safe: sets a flag only). */
void vlad_daemon_request_stop(vlad_daemon *d);

/* Stop (if running) and join the threads, then release everything. NULL is fine. */
void vlad_daemon_free(vlad_daemon *d);

/* One-line summary of the counters (for the log at exit). */
void vlad_daemon_summary(vlad_daemon *d, char *buf, size_t cap);

#endif
