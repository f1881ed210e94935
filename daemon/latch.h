/* latch.h — the e-stop latch on disk, so a daemon restarted while e-stopped comes back
 * e-stopped until an operator releases it.
 *
 * The file exists exactly while the e-stop is latched; it holds one line (the time and the
 * reason). It is written (temporary file, fsync, rename) before the e-stop is acknowledged
 * and removed when a release clears the last e-stop. Used by the io thread (rare, on
 * commands) and at start; never by the control thread. */
#ifndef VLAD_LATCH_H
#define VLAD_LATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "profile.h"

/* The latch file of profile p into buf: safety.estop_file, else
 * $XDG_STATE_HOME/vlad/<robot>.estop, else $HOME/.local/state/vlad/<robot>.estop, or ""
 * when persistence is off (`none`, or no HOME to put it in). */
void vlad_latch_path(const vlad_profile *p, char *buf, size_t cap);

/* *latched = whether the file exists; reason (if non-NULL) gets its line. An unreadable
 * file that exists counts as latched (fail safe). "" path: never latched. */
int vlad_latch_read(const char *path, bool *latched, char *reason, size_t cap, vlad_err *err);

/* Create or replace the latch (creating its folder). No-op for "". */
int vlad_latch_write(const char *path, const char *reason, vlad_err *err);

/* Remove the latch (absent is fine). No-op for "". */
int vlad_latch_clear(const char *path, vlad_err *err);

#endif
