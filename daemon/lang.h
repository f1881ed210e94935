/* lang.h — the language channel between the I/O thread and the inference worker.
 *
 *   io (Command.ask) ── requests ring ──▶ worker (lang_sched.h): starts the stream on the
 *                                          newest frame it has encoded, decodes it k tokens
 *                                          per frame, batched with every other stream
 *   io ◀── pieces ring ── worker           io publishes each piece as a LanguageToken on
 *                                          "lang.<robot>"
 *
 * Slots: at most max_streams streams exist at once, counting asks not yet started. A slot is
 * reserved (vlad_lang_reserve, lock-free, any thread) before an ask is queued or a commentary
 * stream started, and released by the worker when the stream ends. A request is therefore
 * never queued without a slot and the request ring (capacity max_streams) never fills: the
 * ask is answered at once, either with its stream id or with the reason it was refused.
 *
 * Pieces are never dropped: when the pieces ring is full the worker waits for io to drain it
 * (the worker is not real-time; io drains it every poll).
 *
 * Owners: requests ring: io pushes, worker pops. Pieces ring: worker pushes, io pops. The
 * counters in vlad_lang_stats: written by the worker unless noted, read by io for Status.
 * Nothing allocates after vlad_lang_new. */
#ifndef VLAD_DAEMON_LANG_H
#define VLAD_DAEMON_LANG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define VLAD_LANG_Q_MAX 256     /* question bytes carried (the model reads fewer: checked) */
#define VLAD_LANG_PIECE_MAX 64  /* bytes per piece: lang.tokens_per_frame <= 64, 1 byte a token */

typedef struct vlad_lang_req {
    uint32_t stream_id;
    uint32_t qlen;
    char question[VLAD_LANG_Q_MAX];
} vlad_lang_req;

/* One LanguageToken to publish. */
typedef struct vlad_lang_piece {
    uint32_t stream_id, index;      /* index: piece number within the stream, from 0 */
    int64_t tick;                   /* daemon tick when decoded */
    int64_t obs_tick, obs_robot_tick; /* the frame the stream reads (daemon / robot tick) */
    uint64_t frame;                 /* that frame's prefill number, from 1 */
    uint32_t n;                     /* text bytes */
    bool done;
    uint8_t text[VLAD_LANG_PIECE_MAX];
    uint32_t qlen;                  /* first piece: the question (0 = commentary) */
    char question[VLAD_LANG_Q_MAX];
    char error[128];                /* a last piece that ended the stream early: why */
} vlad_lang_piece;

typedef struct vlad_lang_stats {
    _Atomic uint32_t reserved;      /* slots held: streams + asks queued (io and worker) */
    _Atomic uint32_t active;        /* streams decoding */
    _Atomic uint32_t blocks_in_use, blocks; /* prefix KV blocks held / allocated */
    _Atomic uint64_t requests;      /* asks accepted + commentary streams started (io, worker) */
    _Atomic uint64_t refused;       /* asks refused (io) + commentary skipped for want of a slot */
    _Atomic uint64_t done;          /* streams finished */
    _Atomic uint64_t tokens;        /* tokens decoded */
    _Atomic uint64_t prefills;      /* frames prefilled (served frames; warm-up excluded) */
    _Atomic uint64_t frames;        /* action inferences */
    _Atomic uint64_t preempted;     /* decode slices cut short by a due action inference */
    _Atomic uint64_t piece_waits;   /* times the worker waited for io to drain pieces */
    _Atomic double tokens_per_s;    /* over the newest whole second of decoding */
    _Atomic int64_t rate_ns;        /* when tokens_per_s was measured */
} vlad_lang_stats;

typedef struct vlad_lang vlad_lang;

/* A channel for max_streams (0..64; 0: language off, every ask refused) slots, for a model
 * that reads questions of at most max_question bytes. `wake_fd` (eventfd, or -1) is signalled
 * when pieces are queued (io polls it). */
vlad_lang *vlad_lang_new(int max_streams, int max_question, int wake_fd, vlad_err *err);
/* NULL is fine. */
void vlad_lang_free(vlad_lang *l);

int vlad_lang_max_streams(const vlad_lang *l);
int vlad_lang_max_question(const vlad_lang *l);
vlad_lang_stats *vlad_lang_stats_of(vlad_lang *l);

/* Reserve one slot; false if all max_streams are held. Release with vlad_lang_unreserve. */
bool vlad_lang_reserve(vlad_lang *l);
void vlad_lang_unreserve(vlad_lang *l);
/* A new stream id (1, 2, ...; any thread). */
uint32_t vlad_lang_next_id(vlad_lang *l);

/* io: queue an ask whose slot is reserved, and wake the worker. VLAD_ESTATE if the ring is
 * full (cannot happen while every queued ask holds a slot; the caller unreserves). */
int vlad_lang_submit(vlad_lang *l, const vlad_lang_req *r, vlad_err *err);
/* worker: take the oldest queued ask. */
bool vlad_lang_take(vlad_lang *l, vlad_lang_req *r);
/* worker: readable when asks were queued (poll it, then vlad_lang_clear_wake). */
int vlad_lang_request_fd(const vlad_lang *l);
void vlad_lang_clear_wake(vlad_lang *l);

/* worker: queue a piece; waits (1 ms steps) while the ring is full unless *stop turns true
 * (then VLAD_ESTATE: the daemon is stopping). Signals wake_fd. */
int vlad_lang_emit(vlad_lang *l, const vlad_lang_piece *p, const _Atomic bool *stop);
/* io: take the oldest piece. */
bool vlad_lang_next_piece(vlad_lang *l, vlad_lang_piece *p);

#endif
