/* io.h — the daemon's I/O thread: owns the robot_io server (every socket).
 * Receives observations (→ obs slot), commands (→ requests / replies), publishes what the
 * control thread queued in `out`, and reports bad messages as rate-limited events. */
#ifndef VLAD_IO_H
#define VLAD_IO_H

#include <stdint.h>

#include "server.h"
#include "shared.h"

typedef struct vlad_io {
    vlad_shared *sh;
    vlad_server *srv;
    uint64_t obs_count;
    uint8_t *images;          /* newest frame of every camera (profile order) */
    int64_t image_tick;
    int64_t last_bad_report_ns[2]; /* obs, cmd */
    uint64_t bad_reported[2];
} vlad_io;

/* Thread body: loops until sh->stop, then publishes STOPPING. arg is a vlad_io*. */
void *vlad_io_main(void *arg);

/* Fill st (strings point into sh/profile; no allocation beyond the caller's struct). */
void vlad_io_fill_status(vlad_shared *sh, Vlad__Status *st, Vlad__LatencyStats *jit,
                         Vlad__LatencyStats *inf);

#endif
