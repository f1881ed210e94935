/* check.h — everything the daemon would refuse at start, found before anything runs
 * (`vlad --check`, and main.c before it creates the daemon).
 *
 * vlad_check_profile looks at a loaded profile the way daemon.c attach_policy,
 * engine_policy.c and the scheduler use it: it loads policy.model (the path as the loader
 * resolved it against the profile's folder) with the engine's own loader, but starts no
 * thread, binds no socket and allocates no run state. It collects every problem instead of
 * stopping at the first:
 *   errors    the daemon would refuse the profile, or would silently run something other
 *             than what it says: model missing, unreadable or invalid; the model's
 *             action_dim / state_dim vs the joint count; its camera count and image size vs
 *             each camera; its chunk horizon vs VLAD_AQ_MAX_H and vs
 *             async.execution_horizon; policy.flow_steps out of the engine's range;
 *             policy.synthetic together with policy.model;
 *             with policy.remote.endpoints: the key files (policy.remote.server_key must be a
 *             public certificate, client_key a secret one of mode 0600);
 *   warnings  settings that have no effect (policy.flow_steps / noise_scale without a
 *             model, flow_steps on vlad-serve, policy.remote.* keys without endpoints,
 *             async.tracking_lag_ms outside vlash mode).
 * The servers of a remote policy are asked only by vlad_check_remote.
 * Each item is one sentence naming the profile key and both values. The checkpoint format
 * (MODEL.md) records no camera names, so names cannot be compared.
 *
 * Built only where the inference engine is (VLAD_HAVE_ENGINE). */
#ifndef VLAD_CHECK_H
#define VLAD_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "profile.h"

#define VLAD_CHECK_MAX_ITEMS 32
#define VLAD_CHECK_MSG_MAX 512

typedef enum { VLAD_CHECK_ERROR = 0, VLAD_CHECK_WARNING = 1 } vlad_check_severity;

typedef struct vlad_check_item {
    vlad_check_severity severity;
    char key[48];                 /* the profile key, e.g. "joints", "cameras[0]" */
    char msg[VLAD_CHECK_MSG_MAX]; /* one sentence, starting with the key */
} vlad_check_item;

typedef enum {
    VLAD_CHECK_POLICY_NONE = 0,      /* no policy: the daemon holds position */
    VLAD_CHECK_POLICY_SYNTHETIC = 1, /* policy.synthetic */
    VLAD_CHECK_POLICY_MODEL = 2,     /* policy.model */
    VLAD_CHECK_POLICY_REMOTE = 3,    /* policy.remote.endpoints (policy.model: the fallback) */
} vlad_check_policy;

typedef struct vlad_check_report {
    vlad_check_policy policy; /* what the daemon would run */
    int horizon, dim;         /* that policy's chunk horizon and action dim (0: none) */
    struct {
        bool loaded; /* policy.model was loaded (the fields below are valid) */
        int state_dim, action_dim, chunk_size;
        int flow_steps; /* the steps the daemon would run (profile override applied) */
        int n_cameras, image_size; /* n_cameras: image inputs (views) */
        int max_view_lag;          /* oldest view, robot ticks (0: current frames only) */
        int64_t params;
    } model;
    struct {
        bool reached; /* vlad_check_remote: a server answered (the fields below are valid) */
        char model[256];
        int state_dim, action_dim, chunk_size, n_cameras, image_size, max_delay, max_view_lag;
    } remote;
    int n_items, n_errors, n_warnings;
    int n_dropped; /* items beyond VLAD_CHECK_MAX_ITEMS (counted, not stored) */
    vlad_check_item items[VLAD_CHECK_MAX_ITEMS];
} vlad_check_report;

/* Check profile p (already loaded and validated by the profile loader) against the
 * policy it names; fills *out (cleared first). Returns VLAD_OK when the check ran, whatever
 * it found (problems are out->n_errors / n_warnings); VLAD_EINVAL with err filled only for
 * NULL arguments. Reentrant; holds nothing after it returns. */
int vlad_check_profile(const vlad_profile *p, vlad_check_report *out, vlad_err *err);

/* With policy.remote.endpoints: ask the servers for their model (vlad_remote_probe: waits up
 * to policy.remote.start_timeout_ms) and add every problem to r -- none answering is an error
 * (a warning with policy.remote.fallback), a model that does not fit the robot (policy_fit.h)
 * or is not the fallback's are errors; fills r->remote, horizon and dim. Opens a connection,
 * so `vlad --check` calls it, not the daemon's start (which asks the servers itself). VLAD_OK
 * when a server answered or there is nothing to ask (no remote policy). */
int vlad_check_remote(const vlad_profile *p, vlad_check_report *r);

/* VLAD_OK if the report has no errors; otherwise VLAD_EINVAL with err holding every error
 * joined by "; " (truncated to fit). For a start path that wants one message. */
int vlad_check_to_err(const vlad_check_report *r, vlad_err *err);

/* Print every item as "<prefix>error: <msg>" / "<prefix>warning: <msg>", one a line,
 * plus a line for dropped items. Returns the number of lines written. */
int vlad_check_print(const vlad_check_report *r, FILE *f, const char *prefix);

#endif
