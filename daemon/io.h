/* io.h — the daemon's I/O thread: owns the robot_io server (every socket).
 * Receives observations (→ the camera history, whose views of each observation's tick go to
 * frames, and the obs slot), commands (→ requests / replies),
 * publishes what the control thread queued in `out` in its order, persists the e-stop latch,
 * and reports bad and rejected messages as rate-limited events. At most IO_BATCH messages
 * per socket per poll, publishing in between, so a flood cannot starve the action stream.
 * Observations are checked here: invalid → BAD_MESSAGE; a robot tick >= 2^53 or a negative
 * stamp → dropped as absurd; a position beyond its limits by more than
 * safety.obs_limit_margin → dropped (vlad_safety_measured); within the margin → clamped
 * into the limits. A dropped observation is never used, held or anchored on, and does not
 * feed the watchdog. */
/* Recording (record.h): the server's tap copies every message handled into io->rec's ring;
 * once the recording's writer fails, io publishes one RECORD_ERROR event and runs on. */
#ifndef VLAD_IO_H
#define VLAD_IO_H

#include <stdint.h>

#include "lang.h"
#include "record.h"
#include "server.h"
#include "shared.h"
#include "views.h"

typedef struct vlad_io {
    vlad_shared *sh;
    vlad_server *srv;
    uint64_t obs_count;
    uint64_t frame_id;        /* newest frame published in sh->frames (0: none) */
    int64_t image_tick;       /* robot tick of its newest image (-1: none) */
    vlad_view_hist *views;    /* camera history -> the model's views (views.h; io only) */
    int64_t last_bad_report_ns[3]; /* bad obs, bad cmd, rejected obs */
    uint64_t bad_reported[3];
    uint64_t bad_total[3];    /* the totals last seen per kind (a burst's tail is reported later) */
    char bad_last[3][VLAD_ERR_MSG_MAX];
    uint64_t auth_reported;
    int64_t last_auth_report_ns;
    vlad_chunk_rec chunk;     /* the chunk being published */
    vlad_lang_piece piece;    /* the language piece being published */
    vlad_record *rec;         /* the recording (the server's tap feeds it), or NULL */
    bool rec_reported;        /* its write error was published (one RECORD_ERROR event) */
    vlad_record_stats rec_stats; /* the last read of its counters (too large for the stack) */
    char remote_error[VLAD_ERR_MSG_MAX]; /* Status.remote_last_error: a copy of sh->remote.last_error */
} vlad_io;

/* Thread body: loops until sh->stop, then publishes STOPPING. arg is a vlad_io*. */
void *vlad_io_main(void *arg);

/* Fill st (strings point into io, sh and the profile: valid until the next call; no allocation
 * beyond the caller's struct). io thread only. */
void vlad_io_fill_status(vlad_io *io, Vlad__Status *st, Vlad__LatencyStats *jit, Vlad__LatencyStats *wake,
                         Vlad__LatencyStats *inf);

#endif
