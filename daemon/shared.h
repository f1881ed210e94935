/* shared.h — state shared between the daemon's threads, and who owns what.
 *
 * Threads:
 *   main     parses arguments, installs signal handlers (they only set a flag), starts
 *            and joins the others.
 *   io       owns every ZeroMQ socket (robot_io server): receives observations and
 *            commands, publishes actions/events, answers status.
 *   control  owns the tick: builds one Action per tick, applies safety, never blocks on
 *            I/O, never allocates, never logs synchronously.
 *   worker   runs the policy (async/worker.h): one job at a time, handed over and back
 *            through single-slot mailboxes owned by the control thread's state machine.
 *
 * Channels (each has exactly one writer):
 *   obs       vlad_latest<vlad_obs_state>   io → control   newest robot state + images
 *   out       vlad_spsc<vlad_out_rec>       control → io   actions and events to publish
 *   chunks    vlad_spsc<vlad_chunk_rec>     control → io   installed chunks to publish
 *   job/result vlad_worker mailboxes        control ↔ worker
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

#include "action_queue.h"
#include "latest.h"
#include "profile.h"
#include "spsc.h"
#include "stats.h"

/* newest robot state, written by io; followed in the slot by the newest image of every
 * camera (profile order, H*W*3 bytes each), carried forward between camera frames */
typedef struct vlad_obs_state {
    uint64_t count;     /* observations accepted so far */
    int64_t image_tick; /* tick of the newest image (-1: none yet) */
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

/* one installed chunk control → io (published as ActionChunk) */
typedef struct vlad_chunk_rec {
    vlad_chunk chunk;
    float state[VLAD_AQ_MAX_DIM]; /* conditioning state */
    uint32_t latency_us;
} vlad_chunk_rec;

typedef struct vlad_shared {
    const vlad_profile *p;
    vlad_latest *obs;
    vlad_spsc *out;
    vlad_spsc *chunks;
    size_t image_bytes; /* sum over cameras of W*H*3 */
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
    vlad_hist inference;       /* control: latency of each inference it consumed */
    _Atomic uint64_t chunks_installed, inference_errors;

    /* instruction: io writes, worker reads; short critical section, never the control thread */
    pthread_mutex_t text_mu;
    char instruction[256];
} vlad_shared;

#endif
