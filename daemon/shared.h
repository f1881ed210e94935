/* shared.h — state shared between the daemon's threads, and who owns what.
 *
 * Threads:
 *   main     parses arguments, installs signal handlers (they only set a flag), starts
 *            and joins the others.
 *   io       owns every ZeroMQ socket (robot_io server): receives observations and
 *            commands, publishes what control queued, answers status, persists the e-stop
 *            latch. Does a bounded amount of receiving per poll so publishing keeps its rate.
 *   control  owns the tick, the action queue, the safety gate and the scheduler: builds one
 *            Action per tick, never blocks on I/O (lockstep only: it waits, interruptibly, for
 *            the inference in flight — that is how delay is emulated), never allocates, never
 *            logs synchronously, never copies images.
 *   worker   runs the policy (async/worker.h): one job at a time, handed over and back
 *            through single-slot mailboxes owned by the control thread's state machine; reads
 *            the job's camera frame in place (pinned in `frames` by control). Between jobs it
 *            decodes the language streams (lang_sched.h); it owns the runstate and its KV.
 *   record   only with record.dir / --record (record.h): drains the byte ring the io thread
 *            fills into the .vrec file; never on the real-time path (a full ring drops).
 *   logger   the asynchronous log's sink (log.h).
 *
 * Channels (each has exactly one writer):
 *   obs        vlad_latest<vlad_obs_state>  io → control     newest robot state (no images)
 *   frames     vlad_frames                  io → worker      camera frames; control pins one per job
 *   out        vlad_spsc<vlad_out_rec>      control → io     actions, events and chunk markers, in
 *                                                            the order control made them
 *   chunks     vlad_spsc<vlad_chunk_rec>    control → io     the chunk a CHUNK marker names
 *   job/result vlad_worker mailboxes        control ↔ worker
 *   wake_fd    eventfd                      control → io     "out has records"
 *   obs_fd     eventfd                      io → control     "new observation" (lockstep)
 *   req_fd     eventfd                      io → control     "a request arrived" (interrupts the
 *                                                            lockstep wait for an inference)
 *   requests   atomic counters              io → control     e-stop, release, reset (lossless:
 *                                                            counters, never a queue that can fill)
 *   lang       vlad_lang (lang.h)           io → worker      asks (a slot reserved for each first)
 *                                           worker → io      language pieces (LanguageToken); the
 *                                                            worker signals wake_fd
 *   remote     vlad_remote_stats            worker → io      the remote policy's counters
 *   stats      atomics below                writer named per field
 *
 * E-stop ordering: io counts e-stops in estop_req and, on a release, stores into release_upto
 * the number of e-stops received before it. The robot is e-stopped while
 * release_upto < estop_req: a release clears only the e-stops that came before it, and an
 * e-stop is never lost however requests interleave within a tick.
 */
#ifndef VLAD_DAEMON_SHARED_H
#define VLAD_DAEMON_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "action_queue.h"
#include "frames.h"
#include "latest.h"
#include "profile.h"
#include "spsc.h"
#include "stats.h"

/* newest robot state, written by io (positions already checked and clamped into the limits
 * by vlad_safety_measured; observations that fail are dropped before they get here) */
typedef struct vlad_obs_state {
    uint64_t count;       /* observations accepted so far */
    uint64_t reset_seq;   /* resets io had received when this observation arrived */
    uint64_t frame_id;    /* newest camera frame in `frames` when it arrived (0: none) */
    int64_t image_robot_tick; /* robot tick of that frame's newest image (-1: none) */
    int64_t robot_tick;   /* the robot's own tick of this state */
    int64_t stamp_ns;     /* sender's stamp */
    int64_t recv_ns;      /* daemon CLOCK_MONOTONIC at receipt (used by the watchdog) */
    double pos[VLAD_MAX_JOINTS];
    double vel[VLAD_MAX_JOINTS];
} vlad_obs_state;

typedef enum { VLAD_OUT_ACTION = 1, VLAD_OUT_EVENT = 2, VLAD_OUT_CHUNK = 3 } vlad_out_kind;

/* one record control → io */
typedef struct vlad_out_rec {
    int kind;            /* vlad_out_kind */
    int64_t tick;
    int64_t deadline_ns; /* ACTION: the tick's deadline (jitter = publish - deadline) */
    /* ACTION */
    double target[VLAD_MAX_JOINTS];
    uint64_t chunk_id;
    int64_t obs_tick;
    int64_t robot_tick, obs_robot_tick;
    int source;          /* Vlad__ActionSource */
    bool clamped, anchored;
    /* EVENT */
    int event_kind;      /* Vlad__Event__Kind */
    uint64_t count;
    char message[160];
} vlad_out_rec;        /* CHUNK: chunk_id names the record to pop from `chunks` */

/* one installed chunk control → io (published as ActionChunk) */
typedef struct vlad_chunk_rec {
    vlad_chunk chunk;
    float state[VLAD_AQ_MAX_DIM]; /* conditioning state */
    int64_t obs_robot_tick;
    uint32_t latency_us;
    bool clamped;
} vlad_chunk_rec;

/* the remote policy's view of its servers (policy.remote.*, remote_policy.h): written by the
 * worker thread after each call, read by io for Status (never by the control thread) */
typedef struct vlad_remote_stats {
    _Atomic bool on;            /* policy.remote.endpoints is set */
    _Atomic bool up;            /* the newest call got its answer */
    _Atomic uint64_t requests;  /* messages sent (resends and status requests included) */
    _Atomic uint64_t replies;   /* replies taken as the answer to the outstanding request */
    _Atomic uint64_t timeouts;  /* calls that ended without a reply */
    _Atomic uint64_t dropped_stale; /* replies dropped: not the outstanding request's id */
    _Atomic uint64_t reconnects;    /* handshakes with a server this daemon had been connected to */
    _Atomic uint64_t refusals;  /* handshakes a server refused (CURVE: key unknown, no infer right) */
    _Atomic uint64_t errors;    /* replies with an error (BUSY, LATE, SHAPE, NOT_AUTHORISED, ...) */
    _Atomic uint64_t fallbacks; /* inferences run by the local policy.model instead */
    _Atomic uint64_t infer_sent;    /* inference calls that sent a request */
    _Atomic uint64_t request_bytes; /* their requests' frames, the newest attempt of each */
    _Atomic uint64_t encode_ns;     /* their JPEG encoding (policy.remote.images: jpeg) */
    pthread_mutex_t mu;         /* guards last_error (worker writes, io reads) */
    char last_error[VLAD_ERR_MSG_MAX]; /* the newest failure ("" = none yet) */
} vlad_remote_stats;

typedef struct vlad_shared {
    const vlad_profile *p;
    vlad_latest *obs;
    vlad_frames *frames;
    vlad_spsc *out;
    vlad_spsc *chunks;
    size_t image_bytes; /* one frame set: the sum over the model's views of W*H*3 (views.h) */
    int wake_fd;
    int obs_fd;
    int req_fd;
    int64_t start_ns;
    char estop_file[VLAD_PATH_MAX]; /* resolved latch file ("" = not persisted) */
    struct vlad_lang *lang;         /* language channel (no slots without a language model) */
    const char *lang_off;           /* non-NULL: why asks are refused (no model, off) */

    _Atomic bool stop;
    /* requests io → control (see "E-stop ordering" above) */
    _Atomic uint64_t estop_req, release_upto, reset_req;
    _Atomic int64_t reset_from_tick; /* the newest reset's from_robot_tick (stored before reset_req) */

    /* written by control */
    _Atomic int mode;          /* Vlad__Mode */
    _Atomic int64_t tick;
    _Atomic uint64_t stall_ticks, watchdog_trips, clamped_actions, overruns, out_dropped;
    _Atomic uint64_t chunks_installed, chunks_refused, chunks_clamped, inference_errors;
    _Atomic uint64_t robot_restarts, delay_limited_ticks;
    _Atomic int delay_ticks, max_delay_ticks;
    _Atomic bool phase_locked;      /* control: phase_lock (control.c, async/phase.h) */
    _Atomic int64_t phase_error_us; /* control: its newest phase error */
    _Atomic uint64_t early_starts;  /* control: async.early_start inferences */
    _Atomic uint64_t episode, episode_stall_ticks, episode_chunks;
    _Atomic int64_t episode_start_tick;
    /* written by io */
    _Atomic uint64_t actions_published, observations, bad_obs, bad_cmd, obs_out_of_limits, obs_absurd;
    vlad_hist jitter;          /* io: publish time - tick deadline */
    vlad_hist wake;            /* control, wall clock: start of a tick's step - its deadline */
    vlad_hist inference;       /* control: latency of each inference it consumed */
    vlad_remote_stats remote;  /* worker (the remote policy) → io */

    /* instruction: io writes, worker reads; short critical section, never the control thread */
    pthread_mutex_t text_mu;
    char instruction[256];
} vlad_shared;

/* The e-stop rule above, as io sees it now (the latch file, refusals while e-stopped). */
static inline bool vlad_estopped(vlad_shared *sh) {
    return atomic_load(&sh->release_upto) < atomic_load(&sh->estop_req);
}

#endif
