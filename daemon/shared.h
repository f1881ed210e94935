/* shared.h — state shared between the daemon's threads, and who owns what.
 *
 * Threads:
 *   main     parses arguments, installs signal handlers (they only set a flag), starts
 *            and joins the others.
 *   io       owns every ZeroMQ socket (robot_io server): receives observations and
 *            commands, publishes actions/events, answers status.
 *   control  owns the tick: builds one Action per tick, applies safety, never blocks on
 *            I/O, never allocates, never logs synchronously.
 *   (worker) the inference worker of the async issue.
 *
 * Channels (each has exactly one writer):
 *   obs       vlad_latest<vlad_obs_state>   io → control   newest robot state
 *   out       vlad_spsc<vlad_out_rec>       control → io   actions and events to publish
 *   wake_fd   eventfd                        control → io   "out has records"
 *   obs_fd    eventfd                        io → control   "new observation" (lockstep)
 *   requests  atomic sequence numbers       io → control   e-stop, release, reset
 *   stats     atomics below                  writer named per field
 */
#ifndef VLAD_DAEMON_SHARED_H
#define VLAD_DAEMON_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "latest.h"
#include "profile.h"
#include "spsc.h"
#include "stats.h"

/* newest robot state, written by io */
typedef struct vlad_obs_state {
    uint64_t count;     /* observations accepted so far */
    int64_t tick;       /* the robot's tick of this state */
    int64_t stamp_ns;   /* sender's stamp */
    int64_t recv_ns;    /* daemon CLOCK_MONOTONIC at receipt (used by the watchdog) */
    double pos[VLAD_MAX_JOINTS];
    double vel[VLAD_MAX_JOINTS];
} vlad_obs_state;

typedef enum { VLAD_OUT_ACTION = 1, VLAD_OUT_EVENT = 2 } vlad_out_kind;

/* one record control → io */
typedef struct vlad_out_rec {
    int kind;            /* vlad_out_kind */
    int64_t tick;
    int64_t deadline_ns; /* ACTION: the tick's deadline (jitter = publish - deadline) */
    /* ACTION */
    double target[VLAD_MAX_JOINTS];
    uint64_t chunk_id;
    int64_t obs_tick;
    int source;          /* Vlad__ActionSource */
    bool clamped;
    /* EVENT */
    int event_kind;      /* Vlad__Event__Kind */
    char message[120];
} vlad_out_rec;

typedef struct vlad_shared {
    const vlad_profile *p;
    vlad_latest *obs;
    vlad_spsc *out;
    int wake_fd;
    int obs_fd;
    int64_t start_ns;

    _Atomic bool stop;
    /* requests io → control: control acts when the number differs from what it saw */
    _Atomic uint32_t estop_req, release_req, reset_req;

    /* written by control */
    _Atomic int mode;          /* Vlad__Mode */
    _Atomic int64_t tick;
    _Atomic uint64_t stall_ticks, watchdog_trips, clamped_actions, overruns, out_dropped;
    /* written by io */
    _Atomic uint64_t actions_published, observations, bad_obs, bad_cmd;
    vlad_hist jitter;          /* io: publish time - tick deadline */
    vlad_hist inference;       /* worker (later) */

    /* instruction: io writes, worker reads; short critical section, never the control thread */
    pthread_mutex_t text_mu;
    char instruction[256];
} vlad_shared;

#endif
