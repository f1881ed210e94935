/* lang_sched.h — language streams on the inference worker (the OxyGen schedule over the
 * unified KV cache of policy/kvcache.h).
 *
 * Per observation frame the worker prefills once (vlad_encode_prefix, in the action
 * inference); the action expert reads that prefix block and so does every stream started on
 * the frame. After the frame's action chunk has been handed to the control thread:
 *   1. asks queued on the channel start on the newest frame (its [SEP, question, SEP] is
 *      prefilled into the stream's own KV; the frame's prefix block gains a reader);
 *   2. every N frames (lang.commentary_every) a commentary stream starts;
 *   3. one decode slice: every active stream advances k tokens (lang.tokens_per_frame), all
 *      streams batched in one call per token; each keeps reading the prefix block of the
 *      frame it started on while newer frames go to other blocks;
 *   4. each stream's new bytes go out as one piece; a finished stream frees its slot and,
 *      with its last reader, its frame's prefix block.
 * In wall-clock mode a slice yields between tokens as soon as an action inference is queued
 * (counted in `preempted`), so language never delays a due chunk by more than one token's
 * decode. In lockstep the slice runs whole (a deterministic schedule; lockstep counts
 * inference delay in ticks, so the actions are unchanged).
 * Asks that arrive before any frame wait for the first one. When no frame comes for idle_ns
 * (e-stop, stale robot) slices still run, one per idle period.
 *
 * Worker thread only (the scheduler owns the runstate's stream slots). Nothing allocates
 * after vlad_lang_sched_new. */
#ifndef VLAD_DAEMON_LANG_SCHED_H
#define VLAD_DAEMON_LANG_SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "lang.h"
#include "worker.h"

typedef struct vlad_lang_sched_opts {
    int tokens_per_frame;           /* k, 1..64 */
    int commentary_every;           /* frames; 0 = none */
    bool preempt;                   /* yield to a queued action inference between tokens */
    const _Atomic int64_t *tick;    /* the daemon's tick, for pieces (NULL: 0) */
    const _Atomic bool *stop;       /* the daemon stopping (NULL: never) */
} vlad_lang_sched_opts;

typedef struct vlad_lang_sched vlad_lang_sched;

/* For a runstate with vlad_lang_max_streams(ch) stream slots (rs and ch must outlive it).
 * Prefills counted from now on (a warm-up before does not count). */
vlad_lang_sched *vlad_lang_sched_new(vlad_lang *ch, vlad_runstate *rs,
                                     const vlad_lang_sched_opts *o, vlad_err *err);
/* NULL is fine. Streams still active are ended (their slots released). */
void vlad_lang_sched_free(vlad_lang_sched *s);

/* A frame was just encoded into the runstate's current prefix block and its chunk sampled:
 * obs_tick / obs_robot_tick name its observation (daemon / robot tick). */
void vlad_lang_sched_frame(vlad_lang_sched *s, int64_t obs_tick, int64_t obs_robot_tick);

/* Do the work for `why` (see the steps above; WAKE: start queued asks only). yield(arg)
 * true means an action inference is due: stop decoding now. Returns true while streams are
 * active or asks wait for a frame. */
bool vlad_lang_sched_run(vlad_lang_sched *s, vlad_between_why why, bool (*yield)(void *),
                         void *arg);

#endif
