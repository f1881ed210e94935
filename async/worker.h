/* worker.h — the inference worker thread and its two single-slot mailboxes.
 *
 * The control thread fills the job (vlad_worker_job), submits it, and later polls for
 * the result; the worker thread runs the policy. One job at a time. The slot state is
 * one atomic word with a single writer per transition:
 *   IDLE --control: submit--> QUEUED --worker--> RUNNING --worker--> DONE --control: release--> IDLE
 * Neither side allocates after vlad_worker_new; the control thread never blocks
 * (vlad_worker_wait exists for lockstep evaluation, where waiting is how delay is
 * simulated). With pad_latency, the worker holds each result until min_latency has
 * passed since the job started (emulating a slower model in wall-clock runs).
 * The worker thread runs at nice +10 so the control and I/O threads preempt it. */
#ifndef VLAD_WORKER_H
#define VLAD_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "scheduler.h"

#define VLAD_PROMPT_MAX 256

typedef struct vlad_infer_job {
    vlad_infer_req req;
    const uint8_t *images; /* all cameras, profile order, each H*W*3 RGB8, or NULL (no frame
                            * yet: zeros); set by the control thread per job (a frame it pinned,
                            * or the worker's zero buffer), read in place by the worker */
    size_t image_bytes;
    int64_t image_tick;    /* robot tick the newest image was captured (-1: none yet) */
    char prompt[VLAD_PROMPT_MAX];
    uint64_t seed;
} vlad_infer_job;

/* infer() may return this instead of VLAD_OK: the actions are valid, but a fallback made
 * them (the remote policy's servers did not answer: remote_policy.h); err says why. */
#define VLAD_POLICY_DEGRADED 1

typedef struct vlad_infer_result {
    vlad_infer_req req;
    int status;               /* 0 ok, else VLAD_E* */
    bool degraded;            /* status 0, but infer() returned VLAD_POLICY_DEGRADED */
    char error[VLAD_ERR_MSG_MAX]; /* why it failed or was degraded ("" otherwise) */
    int64_t submitted_ns, started_ns, done_ns; /* CLOCK_MONOTONIC: submitted, taken, ready */
    int64_t latency_ns;       /* wall time from submission to the chunk being ready (a job that
                                 waited for a language decode step to end counts that wait) */
    float actions[VLAD_AQ_MAX_H * VLAD_AQ_MAX_DIM]; /* horizon x dim */
} vlad_infer_result;

typedef struct vlad_worker vlad_worker;

/* Why the worker calls between(). */
typedef enum {
    VLAD_BETWEEN_FRAME = 1, /* a job's result was just handed over */
    VLAD_BETWEEN_WAKE = 2,  /* wake_fd became readable */
    VLAD_BETWEEN_IDLE = 3,  /* idle_ns passed without a job while between() had work left */
} vlad_between_why;

/* The policy as the worker sees it. infer() fills horizon*dim actions for the job and
 * returns VLAD_OK, VLAD_POLICY_DEGRADED, or a VLAD_E* error (with err filled).
 * between (optional; NULL: none) is work the worker does while no job runs (language
 * decoding), on the worker thread; it returns true while it has work left. It must return
 * soon after vlad_worker_job_queued(w) turns true: a job waiting is an action inference due. */
typedef struct vlad_policy_ops {
    void *self;
    int horizon, dim;
    int max_delay_ticks;   /* largest delay the policy was trained for (0: not recorded) */
    int (*infer)(void *self, const vlad_infer_job *job, float *actions, vlad_err *err);
    bool (*between)(void *self, vlad_worker *w, vlad_between_why why);
    int wake_fd;           /* with between: polled beside the job fd (-1: none) */
    int64_t idle_ns;       /* with between: the idle period */
} vlad_policy_ops;

/* `prompt_mu`/`prompt` (may be NULL): where the current instruction lives; the worker
 * copies it under the mutex when it takes a job (the control thread never touches it). */
vlad_worker *vlad_worker_new(const vlad_policy_ops *ops, size_t image_bytes, int64_t min_latency_ns,
                             bool pad_latency, pthread_mutex_t *prompt_mu, const char *prompt,
                             vlad_err *err);
/* Stop and join the thread. NULL is fine. */
void vlad_worker_free(vlad_worker *w);

/* Control thread. */
bool vlad_worker_idle(const vlad_worker *w);           /* a job can be submitted */
vlad_infer_job *vlad_worker_job(vlad_worker *w);        /* fill while idle */
const uint8_t *vlad_worker_zero_images(const vlad_worker *w); /* image_bytes of zeros */
int vlad_worker_submit(vlad_worker *w);                 /* VLAD_EAGAIN if not idle */
const vlad_infer_result *vlad_worker_poll(vlad_worker *w); /* result if done, else NULL */
/* Block until the result is done (lockstep only), timeout_ms passes, or abort_fd (if >= 0)
 * becomes readable (it is not read): NULL in the last two cases. */
const vlad_infer_result *vlad_worker_wait(vlad_worker *w, int timeout_ms, int abort_fd);
void vlad_worker_release(vlad_worker *w);              /* consume the result */

/* A job is submitted and not yet taken (any thread; between() polls it to yield). */
bool vlad_worker_job_queued(const vlad_worker *w);

/* Jobs completed so far (any thread). */
uint64_t vlad_worker_completed(const vlad_worker *w);

#endif
