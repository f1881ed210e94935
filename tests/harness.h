/* harness.h — what the integration tests share (tests/harness.c, the vlad_test_harness
 * library): a temporary folder per test, files and profiles written into it, `vlad` and
 * `vlad-sim` started with their logs there and stopped, the daemon's Status in one call and
 * waited for, vlad-sim's --json results and --trajectory CSV read back, log files read and
 * searched.
 *
 * Functions that cannot go on fail the running cmocka test (fail_msg), so they are called
 * from inside a test (or its setup); the ones that say "NULL" or "false" leave the verdict
 * to the caller. */
#ifndef VLAD_TEST_HARNESS_H
#define VLAD_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client.h"
#include "profile.h"

/* The joints and the camera of configs/sim-arm.yaml (YAML lines, for a test's profile). */
#define VH_SIM_ARM_JOINTS                                                                  \
    "joints:\n"                                                                           \
    "  - {name: base_yaw,       min: -2.6, max: 2.6, max_velocity: 5.0, home: 0.0}\n"      \
    "  - {name: shoulder_pitch, min: -1.6, max: 1.6, max_velocity: 5.0, home: 0.5}\n"      \
    "  - {name: elbow_pitch,    min: -2.6, max: 2.6, max_velocity: 5.0, home: 1.5}\n"      \
    "  - {name: wrist_pitch,    min: -2.0, max: 2.0, max_velocity: 5.0, home: 1.0}\n"      \
    "cameras:\n  - {name: front, width: 64, height: 64, rate_hz: 50}\n"

/* ---- folders and files ------------------------------------------------------------------ */

/* Make a fresh folder /tmp/vlad-<tag>-XXXXXX into dir (cap bytes). */
void vh_tmpdir(char *dir, size_t cap, const char *tag);

/* rm -rf dir (nothing when dir is ""), then dir[0] = 0. 0, or -1 if rm failed. */
int vh_rmdir(char *dir);

/* The end of a test's folder: kept (said on stderr, with the log at keep_log when not NULL)
 * when the test did not pass, removed when it did. vh_rmdir's result. */
int vh_finish_dir(char *dir, bool passed, const char *keep_log);

/* The source tree, resolved to an absolute path ($VLAD_SRC, else the working folder). */
const char *vh_src_dir(void);

/* Write the printf-formatted text to path (replacing it). */
void vh_write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Load the profile at path into *p (the loader's message on failure). */
void vh_load_profile(vlad_profile *p, const char *path);

/* A test's profile overrides, kept as "KEY=VALUE" strings: added one by one, applied to a
 * loaded profile (failing the test on a refused one), and passed to a started program as
 * "--set KEY=VALUE" arguments -- the same overrides both ways. */
#define VH_SETS_MAX 24
typedef struct vh_sets {
    char kv[VH_SETS_MAX][512];
    int n;
} vh_sets;
void vh_sets_add(vh_sets *s, const char *key, const char *value);
void vh_sets_apply(const vh_sets *s, vlad_profile *p);
/* The overrides of a daemon private to this test: its three endpoints as ipc:// sockets in
 * dir (obs, act, ctl), realtime off, its e-stop latch in dir/estop. */
void vh_sets_private(vh_sets *s, const char *dir);
/* Append "--set", kv for each override to args from index at; returns the new count. */
int vh_sets_args(const vh_sets *s, const char **args, int at);

/* The whole file as a NUL-terminated string (free it), its length in *len when not NULL;
 * NULL if it cannot be read. */
char *vh_slurp(const char *path, size_t *len);

/* Whether the file exists and contains needle. */
bool vh_file_has(const char *path, const char *needle);

/* Copy the file's first max_lines lines to stderr under a "---- path" line (max_lines <= 0:
 * all of it); nothing if it cannot be read. */
void vh_print_file(const char *path, int max_lines);

/* n distinct TCP ports on 127.0.0.1 that were free a moment ago. */
void vh_free_ports(int *ports, int n);

/* A CURVE key pair for client `name` with `rights` (vlad_rights_parse) at base.key and
 * base.key_secret (vlad_cert_generate); with install_dir, base.key is copied there too (the
 * daemon's client_keys_dir). */
void vh_gen_key(const char *base, const char *name, const char *rights, const char *install_dir);

/* ---- processes -------------------------------------------------------------------------- */

/* Start the built program `prog` (vlad_proc_bin) as `prog --profile profile args...` (args
 * NULL-terminated, or NULL), stdout and stderr appended to log. Its pid. */
pid_t vh_start(const char *prog, const char *profile, const char *log, const char *const *args);

/* Start the built vlad-serve as `vlad-serve --bind ep --model model extra...` (extra
 * NULL-terminated, or NULL), stdout and stderr appended to log. Its pid. */
pid_t vh_start_serve(const char *ep, const char *model, const char *log, const char *const *extra);

/* If *pid (started as `what`) has exited: print its log, set *pid = -1 and fail the test
 * with its exit status and `when`. */
void vh_alive(pid_t *pid, const char *what, const char *log, const char *when);

/* SIGTERM *pid and wait up to timeout_ms; SIGKILL if it is still running then. Its exit
 * status (vlad_proc_wait), -1 if it had to be killed; *pid = -1. Nothing (0) for *pid <= 0. */
int vh_stop(pid_t *pid, int timeout_ms);

/* SIGKILL and reap *pid if it is > 0 (clean-up after a failure); *pid = -1. */
void vh_kill(pid_t *pid);

/* ---- commands --------------------------------------------------------------------------- */

/* A Command and the storage of its body (the caller's: nothing is allocated). */
typedef struct vh_cmd {
    Vlad__Command cmd;
    Vlad__Reset reset;
    Vlad__EStop estop;
    Vlad__ReleaseEStop release;
    Vlad__SetInstruction instruction;
} vh_cmd;

/* &b->cmd with the one body `body` (Vlad__Command__BodyCase): RESET, ESTOP (reason text),
 * RELEASE_ESTOP or SET_INSTRUCTION (text); request_id 0. Fails the test for any other body
 * (a StatusRequest goes through vh_status / vlad_client_status). */
Vlad__Command *vh_command(vh_cmd *b, int body, const char *text);

/* ---- the daemon's Status ---------------------------------------------------------------- */

/* The daemon's Status through c (a VLAD_CLIENT_CONTROL client, vlad_client_status) within
 * timeout_ms, taken out of its reply: free with vlad__status__free_unpacked. NULL if no
 * reply came or it was not ok. */
Vlad__Status *vh_status(vlad_client *c, int timeout_ms);

/* vh_status through a control client of p made for this one request. */
Vlad__Status *vh_status_of(const vlad_profile *p, int timeout_ms);

/* Wait for the daemon to answer: up to `tries` Status requests of try_ms each through c;
 * with pid not NULL, fails the test as vh_alive does as soon as that `vlad` has exited. The
 * first Status that came, or NULL. */
Vlad__Status *vh_wait_status(vlad_client *c, int try_ms, int tries, pid_t *pid, const char *log);

/* ---- what a subscriber received ---------------------------------------------------------- */

/* One Action, ActionChunk or Event as a test keeps it (in arrival order). */
typedef struct vh_rec {
    vlad_msg_kind kind;
    int64_t t_ns;        /* receive time (vlad_now_ns when recorded) */
    int64_t tick;        /* Action.tick, ActionChunk.start_tick, Event.tick */
    int64_t robot_tick;  /* Action.robot_tick */
    int64_t obs_tick, obs_robot_tick; /* Action's / ActionChunk's */
    int64_t stamp_ns;    /* Action.stamp_ns (the daemon's publish time) */
    uint64_t chunk_id;   /* Action's / ActionChunk's */
    int source;          /* Action.source */
    int ev;              /* Event.kind */
    bool anchored;       /* Action.anchored */
    uint32_t horizon;    /* ActionChunk.horizon */
    int n;               /* how many values the message carried for q */
    double q[VLAD_MAX_JOINTS]; /* Action.joint_targets / ActionChunk.conditioned_state (the
                                * first VLAD_MAX_JOINTS of them); the rest 0 */
} vh_rec;

/* *r from m, received now. false (and *r zeroed) for any other kind of message. */
bool vh_rec_of(vh_rec *r, const vlad_msg *m);

/* ---- vlad-sim's files --------------------------------------------------------------------- */

#define VH_MAX_EPISODES 64

/* --json: the episodes, in order */
typedef struct vh_episode {
    int64_t first_tick;
    int ticks, stall_ticks;
    bool success;
} vh_episode;

typedef struct vh_sim_json {
    int n;
    vh_episode ep[VH_MAX_EPISODES];
} vh_sim_json;

/* Read vlad-sim's --json file; fails the test if it is missing, not JSON, has no "episodes"
 * array, more than VH_MAX_EPISODES of them, or an episode without its numbers. */
void vh_read_sim_json(const char *path, vh_sim_json *out);

/* --trajectory: one row per executed tick (sim/run.h) */
typedef struct vh_row {
    int episode;        /* index within its task */
    int64_t tick;       /* the robot's (run-wide) tick */
    int k;              /* tick within the episode (0: the reset to home) */
    uint64_t chunk;     /* chunk of the action applied (0: none) */
    double target[VLAD_MAX_JOINTS], pos[VLAD_MAX_JOINTS];
    int64_t obs_tick;   /* robot tick the chunk was computed from; -1: none */
    int source;         /* Vlad__ActionSource of the action this tick; -1: no action came */
} vh_row;

typedef struct vh_traj {
    int n, cap;
    vh_row *rows;
} vh_traj;

/* Read the trajectory CSV written for profile p into *t (replacing what it held), columns
 * found by their header names (task, episode, tick, k, chunk, target_<joint>...,
 * pos_<joint>..., obs_tick, source; any order). Only complete lines count: a simulator
 * still running has written part of its buffer, and the last line may be cut. false if the
 * file or its header line is not there (yet); fails the test on a header without those
 * columns or a row that does not parse. Free with vh_traj_free. */
bool vh_read_trajectory(const char *path, const vlad_profile *p, vh_traj *t);
void vh_traj_free(vh_traj *t);

/* Index of the row of robot tick `tick`, or -1. */
int vh_traj_row(const vh_traj *t, int64_t tick);

/* max_j |a[j] - b[j]| over n joints */
double vh_maxdiff(const double *a, const double *b, int n);

#endif
