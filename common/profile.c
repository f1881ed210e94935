#include "profile.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "endpoint.h"
#include "path.h"

/* ---- the one table of keys --------------------------------------------------------- */

typedef enum { F_STR, F_INT, F_DOUBLE, F_BOOL, F_ENUM, F_PATH, F_KEY, F_LIST } ftype;
/* F_LIST: a string of comma-separated entries; in YAML also a sequence of scalars (joined) */

typedef struct field {
    const char *key;   /* dotted path inside its mapping */
    ftype type;
    size_t off, size;  /* where in the struct; size for strings (buffer bytes) */
    double min, max;   /* numeric range; for strings max length is size-1 */
    const char *def;   /* default as YAML text; NULL = required */
    const char *enums; /* F_ENUM: "a|b|c" -> stored as int index */
    const char *doc;
} field;

#define P(m) offsetof(vlad_profile, m), sizeof(((vlad_profile *)0)->m)
#define J(m) offsetof(vlad_joint, m), sizeof(((vlad_joint *)0)->m)
#define C(m) offsetof(vlad_camera, m), sizeof(((vlad_camera *)0)->m)

static const field top_fields[] = {
    {"robot", F_STR, P(robot), 0, 0, NULL, NULL,
     "Robot name; used in topics (`action.<robot>`) and checked in every message."},
    {"control_hz", F_DOUBLE, P(control_hz), 1, 1000, "50", NULL,
     "Control rate: one Action per tick."},
    {"clock", F_ENUM, P(clock), 0, 0, "wall", "wall|lockstep",
     "`wall`: ticks on CLOCK_MONOTONIC deadlines. `lockstep`: one tick per observation from the "
     "simulator (deterministic evaluation)."},
    {"lockstep_timeout_ms", F_DOUBLE, P(lockstep_timeout_ms), 1, 600000, "2000", NULL,
     "Lockstep: how long to wait for the next observation before the watchdog counts it stale."},
    {"realtime", F_BOOL, P(realtime), 0, 1, "false", NULL,
     "Try SCHED_FIFO for the control thread (priority 80, with mlockall) and the I/O thread (79); needs CAP_SYS_NICE, warns if refused."},
    {"spin_us", F_DOUBLE, P(spin_us), 0, 2000, "150", NULL,
     "Wall clock with `realtime: true`: the control thread's timer fires this long before each "
     "tick's deadline and the thread spins on the clock for the rest, so the tick starts on time "
     "whatever the kernel's wake-up latency (costs that much CPU per tick; at most a quarter "
     "period). 0 = sleep to the deadline. Without `realtime` the thread always sleeps."},
    {"phase_lock", F_BOOL, P(phase_lock), 0, 1, "true", NULL,
     "Wall clock: when the robot publishes observations at control_hz, move the tick phase (by at "
     "most a tenth of a period per tick) so that each tick falls `phase_lead_ms` after an "
     "observation arrives: the Action for tick t is made from observation t and goes out right "
     "after it. A robot at another rate is not locked to; a pause does not unlock."},
    {"phase_lead_ms", F_DOUBLE, P(phase_lead_ms), 0, 500, "0", NULL,
     "Wall clock with `phase_lock`: how long after an observation arrives its tick falls (at most "
     "half a period). 0 = auto: the inference latency estimate (0.9 quantile) + 1 ms + twice the "
     "arrivals' scatter around the locked phase, so that an "
     "inference started on arrival (`async.early_start`) is ready for that tick (without a policy: 1 ms + the scatter)."
     },
    {"action_type", F_ENUM, P(action_type), 0, 0, "absolute_joint_position",
     "absolute_joint_position",
     "What an action is. Only absolute joint position targets are supported."},
    {"endpoints.observations", F_STR, P(endpoints.observations), 0, 0, "tcp://127.0.0.1:5550", NULL,
     "Daemon binds SUB here; the robot or simulator publishes `obs.<robot>`."},
    {"endpoints.actions", F_STR, P(endpoints.actions), 0, 0, "tcp://127.0.0.1:5551", NULL,
     "Daemon binds PUB here: `action.`, `chunk.`, `lang.`, `event.<robot>`."},
    {"endpoints.control", F_STR, P(endpoints.control), 0, 0, "tcp://127.0.0.1:5552", NULL,
     "Daemon binds ROUTER here for Commands (vladctl, clients)."},
    {"policy.model", F_PATH, P(policy.model), 0, 0, "", NULL,
     "Checkpoint (.safetensors), relative to the profile's folder. Empty: no policy, hold."},
    {"policy.flow_steps", F_INT, P(policy.flow_steps), 0, 100, "0", NULL,
     "Euler steps of flow matching; 0 = the checkpoint's own."},
    {"policy.min_latency_ms", F_DOUBLE, P(policy.min_latency_ms), 0, 10000, "0", NULL,
     "Pad each inference to at least this long, to emulate a slower model."},
    {"policy.threads", F_INT, P(policy.threads), 1, 64, "1", NULL,
     "BLAS threads of the inference worker (keep a core for the control thread)."},
    {"policy.seed", F_INT, P(policy.seed), 0, 2147483647, "0", NULL,
     "Seed of the flow-matching noise."},
    {"policy.noise_scale", F_DOUBLE, P(policy.noise_scale), 0, 2, "1", NULL,
     "Scale of the flow-matching start noise (1 = sample the policy; 0 = its deterministic "
     "mode, often smoother for small models)."},
    {"policy.synthetic", F_BOOL, P(policy.synthetic), 0, 1, "false", NULL,
     "Use the built-in synthetic policy (tracks a sine from the conditioned state) instead of a "
     "model: exercises the asynchronous pipeline without a checkpoint."},
    {"policy.synthetic_faults", F_DOUBLE, P(policy.synthetic_faults), 0, 1, "0", NULL,
     "Synthetic policy only (testing): the share of chunks it corrupts on purpose (NaN, out of "
     "limits, jumps, late, failed), seeded by `policy.seed`."},
    {"policy.instruction", F_STR, P(policy.instruction), 0, 0, "", NULL,
     "Instruction (prompt) until a client sets one."},
    {"policy.remote.endpoints", F_LIST, P(policy.remote.endpoints), 0, 0, "", NULL,
     "vlad-serve hosts that run the model instead of this daemon (docs/SERVE.md): 1..8 "
     "`tcp://HOST:PORT` or `ipc://PATH` endpoints, a YAML list or comma-separated; requests go "
     "to the connected ones in turn. Empty: the policy is local. A non-loopback endpoint needs "
     "`policy.remote.server_key` and `client_key` (CURVE). Not with `policy.model` unless "
     "`policy.remote.fallback` is true, nor with `policy.synthetic`."},
    {"policy.remote.server_key", F_PATH, P(policy.remote.server_key), 0, 0, "", NULL,
     "The vlad-serve hosts' public certificate (`vladctl keygen`'s BASE.key), relative to the "
     "profile's folder: the remote connections use CURVE. Empty: plain (loopback endpoints "
     "only)."},
    {"policy.remote.client_key", F_PATH, P(policy.remote.client_key), 0, 0, "", NULL,
     "This daemon's secret certificate for the vlad-serve hosts (mode 0600 or stricter; its "
     "public half in each server's `--keys-dir`, with the `infer` right), relative to the "
     "profile's folder. Required with `policy.remote.server_key`."},
    {"policy.remote.timeout_ms", F_INT, P(policy.remote.timeout_ms), 1, 600000, "1000", NULL,
     "How long one attempt of a remote inference waits for its reply (and, with no server "
     "connected, for a connection). Then the inference fails, the daemon holds once its queue "
     "runs out, and the next one is tried."},
    {"policy.remote.attempts", F_INT, P(policy.remote.attempts), 1, 16, "1", NULL,
     "Sends per remote inference: one without a reply in `timeout_ms` is sent again, same "
     "request id, to the next connected server."},
    {"policy.remote.start_timeout_ms", F_INT, P(policy.remote.start_timeout_ms), 1, 600000,
     "5000", NULL,
     "At start: how long the daemon waits for a vlad-serve to answer a status request (its "
     "model's dims, views and Δmax, checked against the profile). None answers: the daemon "
     "refuses to start, naming the endpoints (unless `policy.remote.fallback`)."},
    {"policy.remote.fallback", F_BOOL, P(policy.remote.fallback), 0, 1, "false", NULL,
     "With `policy.model` also set (same dims, views and chunk size as the server's): run the "
     "local model when no server answers at start, and for each inference a server fails "
     "(timeout, refusal), trying the servers again after a backoff (0.5 s doubling to 8 s)."},
    {"policy.remote.images", F_ENUM, P(policy.remote.images), 0, 0, "raw", "raw|jpeg",
     "How the camera views travel to vlad-serve: `raw` (RGB8, width·height·3 bytes each; the "
     "chunk equals a local model's) or `jpeg` (encoded on the inference worker at "
     "`policy.remote.jpeg_quality`, decoded by the server before its model sees them: several "
     "times fewer bytes per request, a slightly different chunk; docs/SERVE.md)."},
    {"policy.remote.jpeg_quality", F_INT, P(policy.remote.jpeg_quality), 1, 100, "90", NULL,
     "`policy.remote.images: jpeg`: the JPEG quality (libjpeg's 1..100; 4:4:4, no chroma "
     "subsampling)."},
    {"policy.remote.emulate_rtt_ms", F_DOUBLE, P(policy.remote.emulate_rtt_ms), 0, 10000, "0",
     NULL,
     "Tests and benchmarks only (`vlad-bench serve`): emulate a network round trip of this "
     "long on every remote call, half before the send and half after the reply (the daemon "
     "sees all of it; it does not count against `timeout_ms`). 0: none; never set it on a "
     "robot."},
    {"policy.remote.emulate_jitter_ms", F_DOUBLE, P(policy.remote.emulate_jitter_ms), 0, 10000,
     "0", NULL,
     "Tests and benchmarks only: each emulated round trip is `emulate_rtt_ms` plus a uniform "
     "draw in ±this (at least 0), seeded by `policy.seed`."},
    {"async.mode", F_ENUM, P(async.mode), 0, 0, "vlash", "sync|naive|vlash|merge",
     "`sync`: execute K actions then stop and infer. `naive`: infer ahead on the current state. "
     "`vlash`: infer ahead on the state rolled forward to the new chunk's start. `merge`: "
     "LeRobot's asynchronous merge: naive, and where the new chunk overlaps actions still "
     "queued the executed action is a weighted average of the two (`async.merge_weight`)."},
    {"async.execution_horizon", F_INT, P(async.execution_horizon), 1, 1000, "10", NULL,
     "K: actions executed from each chunk."},
    {"async.trigger_threshold", F_INT, P(async.trigger_threshold), 0, 1000, "5", NULL,
     "naive/vlash/merge: start the next inference when this many actions remain queued."},
    {"async.delay_margin", F_INT, P(async.delay_margin), 0, 100, "1", NULL,
     "Ticks added to the estimated inference delay."},
    {"async.early_start", F_BOOL, P(async.early_start), 0, 1, "true", NULL,
     "Wall clock: when the worker is idle, take each new observation as it arrives and start the "
     "inference then, instead of at the next tick. The observation is placed on the tick that "
     "follows, and the delay estimate counts from that tick's deadline."},
    {"async.max_delay_ticks", F_INT, P(async.max_delay_ticks), 0, 256, "0", NULL,
     "Largest delay Δ (ticks) the scheduler plans with; beyond it the policy is out of its "
     "training distribution: planning uses the limit, the ticks are counted and DELAY_LIMIT is "
     "emitted. 0 = the checkpoint's recorded training Δmax, else horizon - execution_horizon. "
     "horizon + limit must fit the action queue (checked at start)."},
    {"async.tracking_lag_ms", F_DOUBLE, P(async.tracking_lag_ms), 0, 10000, "0", NULL,
     "vlash: first-order tracking-lag time constant for the roll-forward; 0 = the robot reaches "
     "each target."},
    {"async.merge_weight", F_DOUBLE, P(async.merge_weight), 0, 1, "0.7", NULL,
     "merge: on each tick where a new chunk overlaps an action still queued from an older one, "
     "execute w·new + (1 − w)·old. 0.7 = LeRobot's `weighted_average`; 1 = the newest only (as "
     "naive); 0.5 = the mean; 0.3 = conservative (keeps more of the old chunk)."},
    {"safety.watchdog_ms", F_DOUBLE, P(safety.watchdog_ms), 1, 60000, "200", NULL,
     "Observations older than this: hold the last commanded target and emit WATCHDOG_TRIP."},
    {"safety.max_delta_per_tick", F_DOUBLE, P(safety.max_delta_per_tick), 1e-6, 10, "0.1", NULL,
     "Largest change of any joint target between two ticks (also bounded by max_velocity)."},
    {"safety.obs_limit_margin", F_DOUBLE, P(safety.obs_limit_margin), 0, 1e6, "0.05", NULL,
     "An observed position outside a joint's [min, max] by more than this is dropped and "
     "counted (never used or held); within the margin it is clamped to the limits."},
    {"safety.estop_file", F_PATH, P(safety.estop_file), 0, 0, "", NULL,
     "Where the e-stop latch persists across daemon restarts (relative to the profile's "
     "folder). Empty: `$XDG_STATE_HOME/vlad/<robot>.estop` (else `~/.local/state/...`); "
     "`none`: not persisted."},
    {"lang.max_streams", F_INT, P(lang.max_streams), 0, 64, "8", NULL,
     "Language stream slots (questions and commentary decoded at once); allocated at start. "
     "0: language off (`ask` is refused)."},
    {"lang.tokens_per_frame", F_INT, P(lang.tokens_per_frame), 1, 64, "4", NULL,
     "k: tokens every active stream advances per frame, in one batched decode after the "
     "frame's action chunk is ready (a due action inference preempts it between tokens)."},
    {"lang.commentary_every", F_INT, P(lang.commentary_every), 0, 100000, "0", NULL,
     "Start a running-commentary stream every N frames (0: only on request)."},
    {"lang.during_estop", F_BOOL, P(lang.during_estop), 0, 1, "true", NULL,
     "Answer questions while the e-stop is latched (language moves nothing; streams condition "
     "on the newest frame encoded)."},
    {"security.curve_server_public_key", F_KEY, P(security.server_public_key), 0, 0, "", NULL,
     "Z85 public key of the daemon (40 chars; `vladctl keygen`). Set: every socket uses CURVE and "
     "only the clients in `security.client_keys_dir` are let in. Required for non-loopback "
     "endpoints."},
    {"security.server_key_file", F_PATH, P(security.server_key_file), 0, 0, "", NULL,
     "The daemon's secret certificate (ZeroMQ cert format, mode 0600 or stricter), relative to "
     "the profile's folder. Read by the daemon only."},
    {"security.client_keys_dir", F_PATH, P(security.client_keys_dir), 0, 0, "", NULL,
     "Folder of the allowed clients' public certificates (`*.key`), each with its rights in its "
     "metadata: `rights = \"observe,publish,command\"` (observe: subscribe and status; publish: "
     "observations; command: instruction, reset, release, ask; any client may e-stop; `infer` "
     "is vlad-serve's right, `all` every one)."},
    {"security.client_key_file", F_PATH, P(security.client_key_file), 0, 0, "", NULL,
     "This client's secret certificate (vladctl, vlad-sim, the client library); "
     "`$VLAD_CLIENT_KEY` overrides it. Each client should have its own."},
    {"security.max_connections", F_INT, P(security.max_connections), 1, 10000, "64", NULL,
     "Most connections each socket accepts at once; more are refused at the handshake and "
     "counted."},
    {"security.curve_server_secret_key", F_KEY, P(security.server_secret_key), 0, 0, "", NULL,
     "Refused: a secret key in a profile is readable by every client. Use "
     "`security.server_key_file`."},
    {"security.curve_client_public_key", F_KEY, P(security.client_public_key), 0, 0, "", NULL,
     "Refused: clients are listed in `security.client_keys_dir`, each with its own key."},
    {"security.curve_client_secret_key", F_KEY, P(security.client_secret_key), 0, 0, "", NULL,
     "Refused: use `security.client_key_file` or `$VLAD_CLIENT_KEY`."},
    {"logging.level", F_ENUM, P(logging.level), 0, 0, "info", "error|warn|info|debug",
     "Log level (`vlad --log-level` overrides)."},
    {"logging.file", F_PATH, P(logging.file), 0, 0, "", NULL,
     "Log file, relative to the profile's folder; empty = stderr."},
    {"sim.model", F_PATH, P(sim.model), 0, 0, "", NULL,
     "MJCF model for vlad-sim, relative to the profile's folder."},
    {"sim.substeps", F_INT, P(sim.substeps), 1, 1000, "10", NULL,
     "Physics steps per control tick in vlad-sim, each 1/(control_hz x substeps) s (a tick is "
     "one control period of simulated time)."},
    {"record.dir", F_PATH, P(record.dir), 0, 0, "", NULL,
     "Record every message the daemon receives and sends (observations, commands, actions, "
     "chunks, language, events, replies, each with its time) into a new file "
     "`vlad-record-<robot>-<UTC>.vrec` in this folder (created if missing), relative to the "
     "profile's folder; `vlad --record DIR` sets it (relative to the working directory). "
     "Empty: no recording. Read and replayed by `vlad-replay`."},
    {"record.file", F_PATH, P(record.file), 0, 0, "", NULL,
     "Record into exactly this file (truncated first), relative to the profile's folder, "
     "instead of a new name in `record.dir`. Empty: a new name in `record.dir`."},
    {"record.images", F_ENUM, P(record.images), 0, 0, "full", "full|hash|none",
     "Camera images in a recording: `full` keeps the pixels (a replay then feeds the policy the "
     "same images: bit-identical actions), `hash` keeps each image's 64-bit hash and shape, "
     "`none` drops them."},
    {"record.ring_kb", F_INT, P(record.ring_kb), 64, 1048576, "4096", NULL,
     "KiB of the lock-free ring from the I/O thread to the recording's writer thread. An entry "
     "that does not fit when it arrives is dropped and counted (`record_dropped`): the control "
     "path never waits for the disk."},
};

static const field joint_fields[] = {
    {"name", F_STR, J(name), 0, 0, NULL, NULL, "Joint name (unique; the sim's MJCF joint)."},
    {"min", F_DOUBLE, J(min), -1e6, 1e6, NULL, NULL, "Lower position limit."},
    {"max", F_DOUBLE, J(max), -1e6, 1e6, NULL, NULL, "Upper position limit (> min)."},
    {"max_velocity", F_DOUBLE, J(max_velocity), 1e-6, 1e6, NULL, NULL,
     "Largest speed, units/s; bounds the target change per tick."},
    {"home", F_DOUBLE, J(home), -1e6, 1e6, "0", NULL, "Rest pose: where vlad-sim resets the arm, the state of the warm-up inference and the centre of the synthetic policy. Never a target: nothing is published before the robot reports (safety.h S4)."},
};

static const field camera_fields[] = {
    {"name", F_STR, C(name), 0, 0, NULL, NULL, "Camera name (unique)."},
    {"width", F_INT, C(width), 1, 4096, NULL, NULL, "Image width, pixels."},
    {"height", F_INT, C(height), 1, 4096, NULL, NULL, "Image height, pixels."},
    {"rate_hz", F_DOUBLE, C(rate_hz), 0.1, 1000, "10", NULL, "Frames per second."},
};

#define NTOP (sizeof top_fields / sizeof top_fields[0])
#define NJOINT (sizeof joint_fields / sizeof joint_fields[0])
#define NCAM (sizeof camera_fields / sizeof camera_fields[0])

/* ---- parsing ----------------------------------------------------------------------- */

typedef struct ctx {
    const char *name; /* file name for messages */
    char dir[VLAD_PATH_MAX];
    yaml_document_t *doc;
    vlad_err *err;
} ctx;

static int fail(ctx *c, yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(ctx *c, yaml_node_t *n, const char *key, const char *fmt, ...) {
    char msg[VLAD_ERR_MSG_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned long line = n ? n->start_mark.line + 1 : 0, col = n ? n->start_mark.column + 1 : 0;
    return vlad_err_set(c->err, VLAD_EINVAL, "%s:%lu:%lu: %s: %s", c->name, line, col,
                        key && key[0] ? key : "(top)", msg);
}

static const char *scalar(yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool is_null(yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = scalar(n);
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void range_text(const field *f, char *buf, size_t cap) {
    if (f->type == F_INT)
        snprintf(buf, cap, "[%.0f, %.0f]", f->min, f->max);
    else
        snprintf(buf, cap, "[%g, %g]", f->min, f->max);
}

/* Parse YAML text `s` as field f into base; n (may be NULL for defaults) for messages. */
static int set_field(ctx *c, const field *f, const char *full, void *base, const char *s,
                     yaml_node_t *n) {
    char *dst = (char *)base + f->off;
    char rng[96];
    switch (f->type) {
    case F_STR:
    case F_PATH:
    case F_KEY:
    case F_LIST: {
        size_t len = strlen(s);
        if (f->type == F_KEY) {
            if (len != 0 && len != VLAD_KEY_LEN)
                return fail(c, n, full, "a CURVE key is %d Z85 characters, got %zu", VLAD_KEY_LEN,
                            len);
        } else if (len >= f->size) {
            return fail(c, n, full, "string of %zu bytes is too long (at most %zu)", len,
                        f->size - 1);
        }
        if (f->type == F_PATH && len && s[0] != '/' && c->dir[0] && strcmp(s, "none") != 0) {
            int w = snprintf(dst, f->size, "%s/%s", c->dir, s);
            if (w < 0 || (size_t)w >= f->size)
                return fail(c, n, full, "path too long once resolved against %s", c->dir);
        } else {
            memcpy(dst, s, len + 1);
        }
        return VLAD_OK;
    }
    case F_INT: {
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (!s[0] || *end || errno)
            return fail(c, n, full, "expected an integer, got '%s'", s);
        range_text(f, rng, sizeof rng);
        if ((double)v < f->min || (double)v > f->max)
            return fail(c, n, full, "value %lld out of range %s", v, rng);
        *(int *)dst = (int)v;
        return VLAD_OK;
    }
    case F_DOUBLE: {
        errno = 0;
        char *end;
        double v = strtod(s, &end);
        if (!s[0] || *end || errno || !isfinite(v))
            return fail(c, n, full, "expected a finite number, got '%s'", s);
        range_text(f, rng, sizeof rng);
        if (v < f->min || v > f->max)
            return fail(c, n, full, "value %g out of range %s", v, rng);
        *(double *)dst = v;
        return VLAD_OK;
    }
    case F_BOOL: {
        bool v;
        if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
            v = true;
        else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
            v = false;
        else
            return fail(c, n, full, "expected true or false, got '%s'", s);
        *(bool *)dst = v;
        return VLAD_OK;
    }
    case F_ENUM: {
        const char *p = f->enums;
        int idx = 0;
        size_t len = strlen(s);
        while (p && *p) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == len && !strncmp(p, s, l)) {
                *(int *)dst = idx;
                return VLAD_OK;
            }
            idx++;
            p = bar ? bar + 1 : NULL;
        }
        return fail(c, n, full, "'%s' is not one of %s", s, f->enums);
    }
    }
    return fail(c, n, full, "internal: unknown field type");
}

/* A list key given as a YAML sequence of scalars: its entries joined by commas. */
static int set_list(ctx *c, const field *f, const char *full, void *base, yaml_node_t *n) {
    char text[VLAD_LIST_MAX];
    size_t len = 0;
    text[0] = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        if (!item || item->type != YAML_SCALAR_NODE || is_null(item))
            return fail(c, item ? item : n, full, "expected a list of strings");
        const char *v = scalar(item);
        if (strchr(v, ','))
            return fail(c, item, full, "entry '%s': a list entry holds no comma", v);
        int w = snprintf(text + len, sizeof text - len, "%s%s", len ? "," : "", v);
        if (w < 0 || (size_t)w >= sizeof text - len)
            return fail(c, n, full, "the list is too long (at most %zu bytes, commas included)",
                        sizeof text - 1);
        len += (size_t)w;
    }
    return set_field(c, f, full, base, text, n);
}

static int set_from_node(ctx *c, const field *f, const char *full, void *base, yaml_node_t *n) {
    if (f->type == F_LIST && n->type == YAML_SEQUENCE_NODE)
        return set_list(c, f, full, base, n);
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, full, "expected a scalar value, got a %s",
                    n->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
    if (is_null(n)) {
        if (f->type == F_STR || f->type == F_PATH || f->type == F_KEY || f->type == F_LIST) {
            ((char *)base + f->off)[0] = '\0';
            return VLAD_OK;
        }
        return fail(c, n, full, "value is empty");
    }
    return set_field(c, f, full, base, scalar(n), n);
}

static int apply_defaults(ctx *c, const field *t, size_t nt, void *base, const bool *seen,
                          yaml_node_t *owner, const char *prefix) {
    for (size_t i = 0; i < nt; i++) {
        if (seen[i])
            continue;
        char full[160];
        snprintf(full, sizeof full, "%s%s", prefix, t[i].key);
        if (!t[i].def)
            return fail(c, owner, full, "missing required key");
        int rc = set_field(c, &t[i], full, base, t[i].def, owner);
        if (rc)
            return rc;
    }
    return VLAD_OK;
}

/* Walk mapping `m` whose keys are relative to `path` ("" or "safety."), matching against
 * table t. List keys ("joints", "cameras") are handled by the caller via `list_cb`. */
typedef int (*list_fn)(ctx *c, const char *key, yaml_node_t *val, void *user);

static int walk_mapping(ctx *c, yaml_node_t *m, const char *path, const field *t, size_t nt,
                        void *base, bool *seen, list_fn list_cb, void *user) {
    if (m->type != YAML_MAPPING_NODE)
        return fail(c, m, path[0] ? path : "(top)", "expected a mapping");
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        if (!k || !v)
            return fail(c, m, path, "malformed mapping");
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k, path, "keys must be plain strings");
        char full[160];
        int w = snprintf(full, sizeof full, "%s%s", path, scalar(k));
        if (w < 0 || (size_t)w >= sizeof full)
            return fail(c, k, path, "key too long");
        /* duplicate key inside this mapping? */
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < pr; q++) {
            yaml_node_t *kq = yaml_document_get_node(c->doc, q->key);
            if (kq && kq->type == YAML_SCALAR_NODE && !strcmp(scalar(kq), scalar(k)))
                return fail(c, k, full, "duplicate key");
        }
        size_t i;
        for (i = 0; i < nt; i++)
            if (!strcmp(t[i].key, full))
                break;
        if (i < nt) {
            /* the same key twice, once dotted and once nested (policy.threads / policy: {threads}) */
            if (seen[i])
                return fail(c, k, full, "duplicate key (given twice, dotted and nested)");
            int rc = set_from_node(c, &t[i], full, base, v);
            if (rc)
                return rc;
            seen[i] = true;
            continue;
        }
        if (list_cb && !path[0] && (!strcmp(full, "joints") || !strcmp(full, "cameras"))) {
            int rc = list_cb(c, full, v, user);
            if (rc)
                return rc;
            continue;
        }
        /* a section? */
        size_t fl = strlen(full);
        bool section = false;
        for (size_t j = 0; j < nt; j++)
            if (!strncmp(t[j].key, full, fl) && t[j].key[fl] == '.')
                section = true;
        if (section) {
            if (is_null(v))
                continue; /* empty section: all defaults */
            if (v->type != YAML_MAPPING_NODE)
                return fail(c, v, full, "expected a mapping");
            char sub[170];
            snprintf(sub, sizeof sub, "%s.", full);
            int rc = walk_mapping(c, v, sub, t, nt, base, seen, NULL, NULL);
            if (rc)
                return rc;
            continue;
        }
        return fail(c, k, full, "unknown key");
    }
    return VLAD_OK;
}

typedef struct lists {
    vlad_profile *p;
    bool joints_seen, cameras_seen;
} lists;

static int parse_list(ctx *c, const char *key, yaml_node_t *v, void *user) {
    lists *L = user;
    bool is_j = !strcmp(key, "joints");
    if (is_null(v)) {
        if (is_j)
            L->joints_seen = true;
        else
            L->cameras_seen = true;
        return VLAD_OK;
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(c, v, key, "expected a list");
    int cap = is_j ? VLAD_MAX_JOINTS : VLAD_MAX_CAMERAS;
    const field *t = is_j ? joint_fields : camera_fields;
    size_t nt = is_j ? NJOINT : NCAM;
    int count = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        if (!item)
            return fail(c, v, key, "malformed list");
        if (count >= cap)
            return fail(c, item, key, "too many entries (at most %d)", cap);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s[%d].", key, count);
        void *base = is_j ? (void *)&L->p->joints[count] : (void *)&L->p->cameras[count];
        bool seen[8] = {0};
        if (item->type != YAML_MAPPING_NODE)
            return fail(c, item, key, "entry %d: expected a mapping", count);
        /* keys are matched without the prefix; messages carry it */
        for (yaml_node_pair_t *pr = item->data.mapping.pairs.start;
             pr < item->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
            yaml_node_t *val = yaml_document_get_node(c->doc, pr->value);
            if (!k || !val || k->type != YAML_SCALAR_NODE)
                return fail(c, item, key, "malformed entry");
            char full[160];
            snprintf(full, sizeof full, "%s%s", prefix, scalar(k));
            size_t i;
            for (i = 0; i < nt; i++)
                if (!strcmp(t[i].key, scalar(k)))
                    break;
            if (i == nt)
                return fail(c, k, full, "unknown key");
            if (seen[i])
                return fail(c, k, full, "duplicate key");
            int rc = set_from_node(c, &t[i], full, base, val);
            if (rc)
                return rc;
            seen[i] = true;
        }
        int rc = apply_defaults(c, t, nt, base, seen, item, prefix);
        if (rc)
            return rc;
        count++;
    }
    if (is_j) {
        L->p->n_joints = count;
        L->joints_seen = true;
    } else {
        L->p->n_cameras = count;
        L->cameras_seen = true;
    }
    return VLAD_OK;
}

void vlad_profile_defaults(vlad_profile *p) {
    memset(p, 0, sizeof *p);
    ctx c = {.name = "(defaults)", .dir = "", .doc = NULL, .err = NULL};
    for (size_t i = 0; i < NTOP; i++)
        if (top_fields[i].def)
            set_field(&c, &top_fields[i], top_fields[i].key, p, top_fields[i].def, NULL);
}

/* Mappings and lists inside each other: a profile needs 3 (top, joints, a joint). libyaml's
 * scanner re-checks every open level per token, so its time grows with the square of the depth
 * (80k levels: ~50 s) and its loader recurses per level: the depth is checked on the event
 * stream first, which stops at the first level too deep, before any document is built. */
#define PROFILE_MAX_DEPTH 32
/* libyaml's loader compares each new anchor with every earlier one and each alias with every
 * anchor (90k anchors in 1 MiB: ~37 s); a profile needs a handful. */
#define PROFILE_MAX_ANCHORS 256
#define PROFILE_MAX_ALIASES 1024

/* One pass over the parser's events: refuse nesting deeper than PROFILE_MAX_DEPTH
 * ("FILE:LINE:COL: nesting deeper than 32"), more anchors or aliases than
 * PROFILE_MAX_ANCHORS / PROFILE_MAX_ALIASES, and a second document in the stream (the loader
 * would read the first and silently ignore the rest); report a syntax error as the loader
 * would. 0 if the stream may be loaded. */
static int prescan(const ctx *c, const char *text, size_t len) {
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps))
        return vlad_err_set(c->err, VLAD_ENOMEM, "%s: cannot initialise YAML parser", c->name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    int rc = VLAD_OK, depth = 0, docs = 0, anchors = 0, aliases = 0;
    for (bool end = false; !end && !rc;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = vlad_err_set(c->err, VLAD_EPARSE, "%s:%zu:%zu: YAML syntax error: %s", c->name,
                              ps.problem_mark.line + 1, ps.problem_mark.column + 1,
                              ps.problem ? ps.problem : "unknown");
            break;
        }
        const yaml_char_t *anchor = ev.type == YAML_SCALAR_EVENT ? ev.data.scalar.anchor
                                    : ev.type == YAML_MAPPING_START_EVENT
                                        ? ev.data.mapping_start.anchor
                                    : ev.type == YAML_SEQUENCE_START_EVENT
                                        ? ev.data.sequence_start.anchor
                                        : NULL;
        if (anchor && ++anchors > PROFILE_MAX_ANCHORS)
            rc = vlad_err_set(c->err, VLAD_EPARSE, "%s:%zu:%zu: more than %d YAML anchors",
                              c->name, ev.start_mark.line + 1, ev.start_mark.column + 1,
                              PROFILE_MAX_ANCHORS);
        switch (ev.type) {
        case YAML_ALIAS_EVENT:
            if (++aliases > PROFILE_MAX_ALIASES)
                rc = vlad_err_set(c->err, VLAD_EPARSE, "%s:%zu:%zu: more than %d YAML aliases",
                                  c->name, ev.start_mark.line + 1, ev.start_mark.column + 1,
                                  PROFILE_MAX_ALIASES);
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (!rc && ++depth > PROFILE_MAX_DEPTH)
                rc = vlad_err_set(c->err, VLAD_EPARSE, "%s:%zu:%zu: nesting deeper than %d",
                                  c->name, ev.start_mark.line + 1, ev.start_mark.column + 1,
                                  PROFILE_MAX_DEPTH);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = vlad_err_set(c->err, VLAD_EPARSE,
                                  "%s: a second YAML document at line %zu; one document per "
                                  "profile",
                                  c->name, ev.start_mark.line + 1);
            break;
        case YAML_STREAM_END_EVENT:
            end = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ps);
    return rc;
}

int vlad_profile_load_string(vlad_profile *p, const char *text, size_t len, const char *name,
                             vlad_err *err) {
    memset(p, 0, sizeof *p);
    ctx c = {.name = name ? name : "(string)", .err = err};
    if (name) {
        snprintf(p->path, sizeof p->path, "%s", name);
        char tmp[VLAD_PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", name);
        snprintf(c.dir, sizeof c.dir, "%s", dirname(tmp));
    }
    int prc = prescan(&c, text, len);
    if (prc)
        return prc;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return vlad_err_set(err, VLAD_ENOMEM, "%s: cannot initialise YAML parser", c.name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = vlad_err_set(err, VLAD_EPARSE, "%s:%zu:%zu: YAML syntax error: %s", c.name,
                              parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                              parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        return rc;
    }
    c.doc = &doc;
    int rc = VLAD_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    bool seen[NTOP] = {0};
    lists L = {.p = p};
    if (!root) {
        rc = vlad_err_set(err, VLAD_EINVAL, "%s: empty profile", c.name);
        goto out;
    }
    rc = walk_mapping(&c, root, "", top_fields, NTOP, p, seen, parse_list, &L);
    if (rc)
        goto out;
    rc = apply_defaults(&c, top_fields, NTOP, p, seen, root, "");
    if (rc)
        goto out;
    if (!L.joints_seen || p->n_joints == 0) {
        rc = fail(&c, root, "joints", "at least one joint is required");
        goto out;
    }
    rc = vlad_profile_validate(p, err);
    if (rc)
        vlad_err_prefix(err, "%s: ", c.name);
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

#define PROFILE_MAX_BYTES (1u << 20)

int vlad_profile_load(vlad_profile *p, const char *path, vlad_err *err) {
    /* a FIFO or device is refused, never waited on (FIFO) or read without end (/dev/zero) */
    int fd = vlad_open_regular(path, O_RDONLY, 0, err);
    if (fd < 0)
        return fd;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = VLAD_OK;
    for (;;) {
        if (len == cap) { /* the buffer ends at PROFILE_MAX_BYTES + 1: one byte over is enough */
            if (cap > PROFILE_MAX_BYTES) {
                rc = vlad_err_set(err, VLAD_EINVAL, "%s: larger than 1 MiB", path);
                break;
            }
            size_t ncap = cap ? 2 * cap : 8192;
            if (ncap > PROFILE_MAX_BYTES + 1)
                ncap = PROFILE_MAX_BYTES + 1;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = vlad_err_set(err, VLAD_EIO, "%s: read error: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (!rc)
        rc = vlad_profile_load_string(p, buf, len, path, err);
    free(buf);
    return rc;
}

/* One override: the key's type and range checks (not the cross-field ones). */
static int set_key(vlad_profile *p, const char *key, const char *value, vlad_err *err) {
    for (size_t i = 0; i < NTOP; i++) {
        if (strcmp(top_fields[i].key, key))
            continue;
        ctx c = {.name = "--set", .err = err};
        /* relative paths resolve against the profile's folder, as in the file */
        char tmp[VLAD_PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", p->path);
        snprintf(c.dir, sizeof c.dir, "%s", p->path[0] ? dirname(tmp) : "");
        return set_field(&c, &top_fields[i], key, p, value, NULL);
    }
    return vlad_err_set(err, VLAD_EINVAL, "--set %s: unknown key (joints and cameras cannot be set)",
                        key);
}

int vlad_profile_set(vlad_profile *p, const char *key, const char *value, vlad_err *err) {
    int rc = set_key(p, key, value, err);
    return rc ? rc : vlad_profile_validate(p, err);
}

int vlad_sets_add(void *dst, const char *kv, vlad_err *err) {
    vlad_sets *s = dst;
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return vlad_err_set(err, VLAD_EINVAL, "expected KEY=VALUE, got '%s'", kv);
    if (s->n >= VLAD_SETS_MAX)
        return vlad_err_set(err, VLAD_ERANGE, "at most %d overrides", VLAD_SETS_MAX);
    s->v[s->n++] = kv;
    return VLAD_OK;
}

int vlad_profile_apply_sets(vlad_profile *p, const vlad_sets *s, vlad_err *err) {
    for (int i = 0; i < s->n; i++) {
        const char *eq = strchr(s->v[i], '=');
        char key[128];
        if (!eq || eq == s->v[i] || (size_t)(eq - s->v[i]) >= sizeof key)
            return vlad_err_set(err, VLAD_EINVAL, "--set '%s': expected KEY=VALUE", s->v[i]);
        snprintf(key, sizeof key, "%.*s", (int)(eq - s->v[i]), s->v[i]);
        int rc = set_key(p, key, eq + 1, err);
        if (rc)
            return rc;
    }
    /* across fields once all are applied: `--set policy.model= --set policy.remote...` and
     * the other order are the same */
    return s->n ? vlad_profile_validate(p, err) : VLAD_OK;
}

/* ---- cross-field checks ------------------------------------------------------------ */

int vlad_profile_list(const char *text, char (*out)[VLAD_PATH_MAX], int max) {
    int n = 0;
    for (const char *q = text; *q;) {
        while (*q == ' ' || *q == '\t')
            q++;
        size_t l = strcspn(q, ",");
        size_t t = l;
        while (t && (q[t - 1] == ' ' || q[t - 1] == '\t'))
            t--;
        if (t) {
            if (n >= max || t >= VLAD_PATH_MAX)
                return -1;
            memcpy(out[n], q, t);
            out[n++][t] = 0;
        }
        q += l;
        if (*q == ',')
            q++;
    }
    return n;
}

bool vlad_profile_remote(const vlad_profile *p) {
    char eps[VLAD_REMOTE_MAX_ENDPOINTS][VLAD_PATH_MAX];
    return vlad_profile_list(p->policy.remote.endpoints, eps, VLAD_REMOTE_MAX_ENDPOINTS) != 0;
}

/* policy.remote.*: the endpoints, their keys, and which policy runs */
static int validate_remote(const vlad_profile *p, vlad_err *err) {
    char eps[VLAD_REMOTE_MAX_ENDPOINTS][VLAD_PATH_MAX];
    int n = vlad_profile_list(p->policy.remote.endpoints, eps, VLAD_REMOTE_MAX_ENDPOINTS);
    if (n < 0)
        return vlad_err_set(err, VLAD_EINVAL, "policy.remote.endpoints: more than %d endpoints",
                            VLAD_REMOTE_MAX_ENDPOINTS);
    bool curve = p->policy.remote.server_key[0] != 0;
    if (curve != (p->policy.remote.client_key[0] != 0))
        return vlad_err_set(err, VLAD_EINVAL,
                            "%s: set, but %s is empty: CURVE to vlad-serve needs both the "
                            "servers' public certificate and this daemon's secret one",
                            curve ? "policy.remote.server_key" : "policy.remote.client_key",
                            curve ? "policy.remote.client_key" : "policy.remote.server_key");
    for (int i = 0; i < n; i++) {
        vlad_endpoint ep;
        vlad_err e2;
        if (vlad_endpoint_parse(eps[i], &ep, &e2))
            return vlad_err_set(err, VLAD_EINVAL, "policy.remote.endpoints[%d]: %s", i, e2.msg);
        if (!ep.loopback && !curve)
            return vlad_err_set(err, VLAD_EINVAL,
                                "policy.remote.endpoints[%d]: %s is not loopback: set "
                                "policy.remote.server_key and policy.remote.client_key (CURVE); "
                                "refusing to send the robot's observations unauthenticated",
                                i, eps[i]);
        for (int k = 0; k < i; k++)
            if (!strcmp(eps[i], eps[k]))
                return vlad_err_set(err, VLAD_EINVAL,
                                    "policy.remote.endpoints[%d]: %s is listed twice", i, eps[i]);
    }
    if (n == 0)
        return VLAD_OK; /* the remote keys alone change nothing (vlad --check warns) */
    if (p->policy.synthetic)
        return vlad_err_set(err, VLAD_EINVAL,
                            "policy.remote.endpoints and policy.synthetic are both set: choose "
                            "one policy");
    if (p->policy.model[0] && !p->policy.remote.fallback)
        return vlad_err_set(err, VLAD_EINVAL,
                            "policy.remote.endpoints and policy.model (%s) are both set: the model "
                            "runs either on vlad-serve or here; set policy.remote.fallback: true to "
                            "keep policy.model as the fallback when no server answers, or remove "
                            "one of them",
                            p->policy.model);
    if (p->policy.remote.fallback && !p->policy.model[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "policy.remote.fallback: true needs policy.model (the local model to "
                            "fall back on)");
    return VLAD_OK;
}

bool vlad_endpoint_is_local(const char *ep) {
    vlad_endpoint e;
    return vlad_endpoint_parse(ep, &e, NULL) == VLAD_OK && e.loopback;
}

static bool valid_z85(const char *k) {
    static const char *alpha = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               ".-:+=^!/*?&<>()[]{}@%$#";
    if (strlen(k) != VLAD_KEY_LEN)
        return false;
    for (const char *q = k; *q; q++)
        if (!strchr(alpha, *q))
            return false;
    return true;
}

int vlad_profile_validate(const vlad_profile *p, vlad_err *err) {
    if (!p->robot[0])
        return vlad_err_set(err, VLAD_EINVAL, "robot: must not be empty");
    for (const char *q = p->robot; *q; q++)
        if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_')
            return vlad_err_set(err, VLAD_EINVAL,
                                "robot: '%s' may only hold letters, digits, '-' and '_'", p->robot);
    if (p->n_joints < 1 || p->n_joints > VLAD_MAX_JOINTS)
        return vlad_err_set(err, VLAD_EINVAL, "joints: need 1..%d joints, got %d", VLAD_MAX_JOINTS,
                            p->n_joints);
    for (int i = 0; i < p->n_joints; i++) {
        const vlad_joint *j = &p->joints[i];
        if (!j->name[0])
            return vlad_err_set(err, VLAD_EINVAL, "joints[%d].name: must not be empty", i);
        if (!(j->min < j->max))
            return vlad_err_set(err, VLAD_EINVAL, "joints[%d] (%s): min %g must be below max %g", i,
                                j->name, j->min, j->max);
        if (j->home < j->min || j->home > j->max)
            return vlad_err_set(err, VLAD_EINVAL,
                                "joints[%d] (%s): home %g outside the limits [%g, %g]", i, j->name,
                                j->home, j->min, j->max);
        for (int k = 0; k < i; k++)
            if (!strcmp(p->joints[k].name, j->name))
                return vlad_err_set(err, VLAD_EINVAL, "joints[%d]: name '%s' already used by joints[%d]",
                                    i, j->name, k);
    }
    for (int i = 0; i < p->n_cameras; i++) {
        const vlad_camera *cam = &p->cameras[i];
        if (!cam->name[0])
            return vlad_err_set(err, VLAD_EINVAL, "cameras[%d].name: must not be empty", i);
        for (int k = 0; k < i; k++)
            if (!strcmp(p->cameras[k].name, cam->name))
                return vlad_err_set(err, VLAD_EINVAL,
                                    "cameras[%d]: name '%s' already used by cameras[%d]", i,
                                    cam->name, k);
    }
    const char *eps[3] = {p->endpoints.observations, p->endpoints.actions, p->endpoints.control};
    const char *epn[3] = {"endpoints.observations", "endpoints.actions", "endpoints.control"};
    bool all_local = true;
    for (int i = 0; i < 3; i++) {
        vlad_endpoint ep;
        vlad_err e2;
        if (vlad_endpoint_parse(eps[i], &ep, &e2))
            return vlad_err_set(err, VLAD_EINVAL, "%s: %s", epn[i], e2.msg);
        for (int k = 0; k < i; k++)
            if (!strcmp(eps[i], eps[k]))
                return vlad_err_set(err, VLAD_EINVAL, "%s: same endpoint as %s (%s)", epn[i],
                                    epn[k], eps[i]);
        if (!ep.loopback)
            all_local = false;
    }
    /* secret keys never live in a profile: clients read it too */
    if (p->security.server_secret_key[0] || p->security.client_secret_key[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "%s: a secret key does not belong in a profile (every client reads it); "
                            "keep it in a key file (vladctl keygen) named by %s",
                            p->security.server_secret_key[0] ? "security.curve_server_secret_key"
                                                              : "security.curve_client_secret_key",
                            p->security.server_secret_key[0] ? "security.server_key_file"
                                                              : "security.client_key_file or $VLAD_CLIENT_KEY");
    if (p->security.server_public_key[0] && !valid_z85(p->security.server_public_key))
        return vlad_err_set(err, VLAD_EINVAL, "security.curve_server_public_key: not a valid Z85 key");
    if (p->security.client_public_key[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "security.curve_client_public_key: clients are listed, each with its own "
                            "key and rights, in security.client_keys_dir");
    if (!all_local && !p->security.server_public_key[0])
        return vlad_err_set(err, VLAD_EINVAL,
                            "security: a non-loopback endpoint requires CURVE "
                            "(security.curve_server_public_key, server_key_file, client_keys_dir); "
                            "refusing to expose the robot unauthenticated");
    int rrc = validate_remote(p, err);
    if (rrc)
        return rrc;
    if (p->async.trigger_threshold > p->async.execution_horizon)
        return vlad_err_set(err, VLAD_EINVAL,
                            "async.trigger_threshold: %d exceeds async.execution_horizon %d",
                            p->async.trigger_threshold, p->async.execution_horizon);
    double tick_ms = 1000.0 / p->control_hz;
    if (p->spin_us > 250 * tick_ms)
        return vlad_err_set(err, VLAD_EINVAL,
                            "spin_us: %g us is more than a quarter of a control tick (%g ms)",
                            p->spin_us, tick_ms);
    if (p->safety.watchdog_ms < 2 * tick_ms)
        return vlad_err_set(err, VLAD_EINVAL,
                            "safety.watchdog_ms: %g ms is shorter than two control ticks (%g ms)",
                            p->safety.watchdog_ms, 2 * tick_ms);
    /* chunks travel as floats: a joint's per-tick step must be expressible in them */
    for (int j = 0; j < p->n_joints; j++) {
        const vlad_joint *jt = &p->joints[j];
        double step = fmin(p->safety.max_delta_per_tick, jt->max_velocity / p->control_hz);
        double mag = fmax(fabs(jt->min), fabs(jt->max));
        double ulp = (double)nextafterf((float)mag, INFINITY) - (double)(float)mag;
        if (step < 4 * ulp)
            return vlad_err_set(err, VLAD_EINVAL,
                                "joints[%d] (%s): its per-tick step %g (min of "
                                "safety.max_delta_per_tick and max_velocity / control_hz) is finer "
                                "than 4 float steps (%g) at its limits [%g, %g]",
                                j, jt->name, step, 4 * ulp, jt->min, jt->max);
    }
    return VLAD_OK;
}

int vlad_profile_joint_index(const vlad_profile *p, const char *name) {
    for (int i = 0; i < p->n_joints; i++)
        if (!strcmp(p->joints[i].name, name))
            return i;
    return -1;
}

int vlad_profile_camera_index(const vlad_profile *p, const char *name) {
    for (int i = 0; i < p->n_cameras; i++)
        if (!strcmp(p->cameras[i].name, name))
            return i;
    return -1;
}

const char *vlad_async_mode_name(vlad_async_mode m) {
    static const char *n[] = {"sync", "naive", "vlash", "merge"};
    return (m >= 0 && m <= VLAD_ASYNC_MERGE) ? n[m] : "?";
}

const char *vlad_clock_mode_name(vlad_clock_mode m) { return m == VLAD_CLOCK_LOCKSTEP ? "lockstep" : "wall"; }

/* ---- documentation ----------------------------------------------------------------- */

static void doc_rows(FILE *out, const field *t, size_t nt, const char *prefix) {
    static const char *tn[] = {"string", "integer", "number", "bool", "enum", "path", "key", "list"};
    for (size_t i = 0; i < nt; i++) {
        const field *f = &t[i];
        char rng[96] = "";
        if (f->type == F_INT || f->type == F_DOUBLE)
            range_text(f, rng, sizeof rng);
        else if (f->type == F_ENUM)
            snprintf(rng, sizeof rng, "`%s`", f->enums);
        else if (f->type == F_STR || f->type == F_PATH)
            snprintf(rng, sizeof rng, "≤ %zu bytes", f->size - 1);
        else if (f->type == F_BOOL)
            snprintf(rng, sizeof rng, "true/false");
        else if (f->type == F_LIST)
            snprintf(rng, sizeof rng, "strings, ≤ %zu bytes joined by commas", f->size - 1);
        else
            snprintf(rng, sizeof rng, "%d chars", VLAD_KEY_LEN);
        char def[64];
        if (!f->def)
            snprintf(def, sizeof def, "*required*");
        else if (!f->def[0])
            snprintf(def, sizeof def, "\"\"");
        else
            snprintf(def, sizeof def, "`%s`", f->def);
        fprintf(out, "| `%s%s` | %s | %s | %s | %s |\n", prefix, f->key, tn[f->type], def, rng,
                f->doc);
    }
}

void vlad_profile_write_doc(FILE *out) {
    fprintf(out, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    doc_rows(out, top_fields, NTOP, "");
    fprintf(out, "| `joints` | list | *required* | 1..%d entries | One entry per joint, in action "
                 "order. |\n",
            VLAD_MAX_JOINTS);
    doc_rows(out, joint_fields, NJOINT, "joints[].");
    fprintf(out, "| `cameras` | list | empty | 0..%d entries | Cameras the robot publishes. |\n",
            VLAD_MAX_CAMERAS);
    doc_rows(out, camera_fields, NCAM, "cameras[].");
}
