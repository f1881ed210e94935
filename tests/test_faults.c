/* test_faults — faults a real deployment meets, done for real against the real `vlad`
 * (built-in synthetic policy, clock: wall, 50 Hz) and the real `vlad-sim` on loopback, each in
 * its own temporary folder (ipc:// endpoints, or free TCP ports where raw TCP is needed, and
 * safety.estop_file inside it), each bounded in time:
 *
 *   1. the simulator SIGKILLed mid-episode and restarted: the daemon holds (WATCHDOG after
 *      safety.watchdog_ms, the last commanded target exactly), keeps publishing at its rate
 *      while the robot is gone, and resumes from the new robot's state (ROBOT_RESTART, an
 *      anchored Action at the position the new simulator measured, policy actions again);
 *   2. the daemon SIGKILLed and restarted while the simulator runs, e-stopped before the kill:
 *      the simulator keeps running and holds its last applied target (its trajectory) for
 *      25 of its own ticks or more (the daemon stays dead until it has seen them), the
 *      restarted daemon comes back e-stopped (every Action ESTOP, one hold) until
 *      `vladctl release`, then policy actions flow again and the simulator's JSON shows every
 *      episode completed, the last ones driven by the policy;
 *   3. observations stopped longer than the watchdog (SIGSTOP the simulator, SIGCONT):
 *      WATCHDOG_TRIP, a hold meanwhile, WATCHDOG_CLEAR, policy actions again, no robot restart;
 *   4. never-reading subscribers (raw SUBs with a tiny receive high-water mark that never call
 *      recv) and a subscription flood (50,000 distinct topics): the action rate seen by a
 *      normal subscriber and the publish jitter stay near a baseline measured first in the
 *      same test (realtime: true as configs/sim-arm.yaml deploys it; the jitter bound is
 *      asserted where SCHED_FIFO is granted); Status.subscriptions_refused counts the flood.
 *      (In 4 s the never-reading subscribers back up into their socket buffers; the daemon's
 *      per-subscriber high-water mark is not reached at ~60 messages/s);
 *   5. bursts, duplicated and reordered observation sequence numbers (client library,
 *      Observation.seq set explicitly): every observation counted, seq is not mistaken for the
 *      robot's tick (no robot restart), the Actions follow the robot's ticks forward;
 *   6. garbage on every socket (raw bytes over TCP to each port, random frames through raw
 *      ZeroMQ PUB / DEALER / XSUB), oversized frames, 200 idle TCP connections: bad messages
 *      and oversized frames counted exactly, actions keep flowing at rate, status answers;
 *   7. a truncated, a corrupted-header and a NaN-weighted model file (made from
 *      models/vlad-default.safetensors; the NaN in a weight matrix found from the JSON header):
 *      `vlad` refuses each at start, quickly, naming the file and the reason (for NaN: the
 *      tensor), while the intact model passes `vlad --check` with the same profile;
 *   8. a client with an unknown CURVE key, or a known key without the right, gets nothing and
 *      commands nothing: covered by tests/test_security.c (test_keys_and_rights), not here.
 *
 * One checker sees every Action and ActionChunk the test's subscriber receives, in every
 * case: the safety contract of daemon/safety.h, computed here from the profile (not with the
 * daemon's own code): every target finite and inside its joint's limits; an Action not
 * anchored is within step_j = min(max_delta_per_tick, max_velocity_j / control_hz) of the
 * previous Action of the same daemon run; the first Action of a daemon run is an anchor
 * (where the subscriber is known to be subscribed before it: not for a daemon restarted
 * under a running robot, whose first Actions may go out before the subscriber reconnects);
 * ticks strictly increase within a run; no HOME or unspecified source; a chunk's rows are
 * within a step of each other. Where the test knows the robot's position (the simulator's
 * trajectory, or its own observations) an anchor is checked to be within a step of it.
 *
 * Bounds on rates and jitter are ratios over windows of 1.5 s or more, with the slack a
 * loaded 2-core machine under AddressSanitizer needs; each says why where it is. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "frame.h"
#include "harness.h"
#include "proc.h"
#include "validate.h"

#define HZ 50
#define NJ 4
#define WATCHDOG_MS 200
#define EPS 1e-9
#define MAX_REC 30000
#define PERIOD_NS (VLAD_NS_PER_S / HZ)

static const char *SRC_ACTIONS[] = {"UNSPECIFIED", "POLICY", "HOLD", "HOME", "ESTOP", "WATCHDOG"};
enum {
    S_POLICY = VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY,
    S_HOLD = VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD,
    S_ESTOP = VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP,
    S_WATCHDOG = VLAD__ACTION_SOURCE__ACTION_SOURCE_WATCHDOG,
};

/* ---- the world of one test ----------------------------------------------------------- */

static char dir[64], prof_path[160], daemon_log[160], src_dir[PATH_MAX];
static vlad_profile prof;
static double step_j[NJ];
static int ports[3];
static pid_t daemon_pid = -1, sim_pid = -1;
static vlad_client *sub;  /* actions, chunks, events: what the checker sees */
static bool passed;
static int sim_runs;

/* raw sockets a test opened (closed by the teardown, also after a failure) */
static void *zctx;
static void *zsocks[64];
static int n_zsocks;
static int fds[512];
static int n_fds;

static void *zsock(int type) {
    if (!zctx)
        zctx = zmq_ctx_new();
    assert_non_null(zctx);
    assert_true(n_zsocks < (int)(sizeof zsocks / sizeof zsocks[0]));
    void *s = zmq_socket(zctx, type);
    assert_non_null(s);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zsocks[n_zsocks++] = s;
    return s;
}

static void close_raw(void) {
    for (int i = 0; i < n_zsocks; i++)
        zmq_close(zsocks[i]);
    n_zsocks = 0;
    if (zctx)
        zmq_ctx_term(zctx);
    zctx = NULL;
    for (int i = 0; i < n_fds; i++)
        close(fds[i]);
    n_fds = 0;
}

/* ---- what the subscriber saw, in arrival order, and the checker ---------------------- */

static vh_rec tl[MAX_REC];
static int tl_run[MAX_REC]; /* the daemon run (1, 2, ...) the checker assigned tl[i] to */
static int ntl;

static struct {
    int run;
    bool have_prev;
    double prev[NJ];
    int64_t prev_tick;
    bool first_seen;      /* the subscriber was subscribed before this run's first Action */
    long actions, anchors, chunks, tick_gaps;
} ck;

/* the robot's position at a robot tick, when the test is the robot (cases 5 and 6) */
static bool (*known_pos)(int64_t robot_tick, double *pos);

/* A new daemon run. `first_seen`: the subscriber is known to be subscribed before the run's
 * first Action (sub_ready), so that Action must be an anchor; otherwise (a daemon restarted
 * under a running robot publishes before a subscriber can reconnect) the first Action
 * received only starts the step checks. */
static void new_run(bool first_seen) {
    ck.run++;
    ck.have_prev = false;
    ck.first_seen = first_seen;
}

static bool in_limits(int j, double v) {
    return isfinite(v) && v >= prof.joints[j].min && v <= prof.joints[j].max;
}

static void check_action(const Vlad__Action *a) {
    ck.actions++;
    if (a->n_joint_targets != NJ)
        fail_msg("contract: Action tick %lld has %zu targets", (long long)a->tick, a->n_joint_targets);
    const double *x = a->joint_targets;
    for (int j = 0; j < NJ; j++)
        if (!in_limits(j, x[j]))
            fail_msg("contract S1/S2: Action tick %lld joint %d target %g outside [%g, %g]",
                     (long long)a->tick, j, x[j], prof.joints[j].min, prof.joints[j].max);
    const int src = (int)a->source;
    if (src != S_POLICY && src != S_HOLD && src != S_ESTOP && src != S_WATCHDOG)
        fail_msg("Action tick %lld has source %d (HOME and unspecified are never sent)",
                 (long long)a->tick, src);
    if (ck.have_prev && a->tick <= ck.prev_tick)
        fail_msg("daemon run %d: Action tick %lld after tick %lld (ticks only increase)", ck.run,
                 (long long)a->tick, (long long)ck.prev_tick);
    if (a->anchored) {
        ck.anchors++;
        double pos[NJ];
        if (known_pos && known_pos(a->robot_tick, pos))
            for (int j = 0; j < NJ; j++)
                if (fabs(x[j] - pos[j]) > step_j[j] + EPS)
                    fail_msg("contract S4: anchor at tick %lld (robot tick %lld) joint %d is %g "
                             "from the robot's position there (step %g)",
                             (long long)a->tick, (long long)a->robot_tick, j, x[j] - pos[j],
                             step_j[j]);
    } else if (ck.have_prev) {
        for (int j = 0; j < NJ; j++)
            if (fabs(x[j] - ck.prev[j]) > step_j[j] + EPS)
                fail_msg("contract S3: daemon run %d, Action tick %lld (source %s) joint %d moved "
                         "%g from the previous Action (tick %lld), the step is %g",
                         ck.run, (long long)a->tick, SRC_ACTIONS[a->source], j, x[j] - ck.prev[j],
                         (long long)ck.prev_tick, step_j[j]);
    } else if (ck.first_seen) {
        fail_msg("contract S4: the first Action of daemon run %d (tick %lld, source %s) is not "
                 "anchored",
                 ck.run, (long long)a->tick, SRC_ACTIONS[a->source]);
    }
    if (ck.have_prev && a->tick > ck.prev_tick + 1)
        ck.tick_gaps++;
    memcpy(ck.prev, x, sizeof ck.prev);
    ck.prev_tick = a->tick;
    ck.have_prev = true;
}

static void check_chunk(const Vlad__ActionChunk *c) {
    ck.chunks++;
    if (c->dim != NJ || c->n_values != (size_t)c->horizon * NJ)
        fail_msg("chunk %llu: %zu values for horizon %u x dim %u", (unsigned long long)c->chunk_id,
                 c->n_values, c->horizon, c->dim);
    for (uint32_t i = 0; i < c->horizon; i++)
        for (int j = 0; j < NJ; j++) {
            double v = c->values[i * NJ + (uint32_t)j];
            if (!in_limits(j, v))
                fail_msg("contract S5: chunk %llu row %u joint %d value %g outside the limits",
                         (unsigned long long)c->chunk_id, i, j, v);
            /* float values: the gate's rule holds in double, allow the float rounding */
            if (i > 0 && fabs(v - (double)c->values[(i - 1) * NJ + (uint32_t)j]) >
                             step_j[j] * (1 + 1e-6) + 1e-6)
                fail_msg("contract S5: chunk %llu row %u joint %d moved %g from the row before "
                         "(step %g)",
                         (unsigned long long)c->chunk_id, i, j,
                         v - (double)c->values[(i - 1) * NJ + (uint32_t)j], step_j[j]);
        }
}

static void take_msg(const vlad_msg *m) {
    if (m->kind == VLAD_MSG_ACTION)
        check_action(m->u.action);
    else if (m->kind == VLAD_MSG_CHUNK)
        check_chunk(m->u.chunk);
    if (ntl >= MAX_REC)
        fail_msg("more than %d messages recorded", MAX_REC);
    if (!vh_rec_of(&tl[ntl], m))
        return;
    tl_run[ntl++] = ck.run;
}

/* called on every turn of the receive loop: the test as a robot publishes from here */
static void (*hook)(void);

static void pump(int ms) {
    int64_t until = vlad_now_ns() + (int64_t)ms * VLAD_NS_PER_MS;
    vlad_err err;
    for (int64_t now = vlad_now_ns(); now < until; now = vlad_now_ns()) {
        if (hook)
            hook();
        int left = (int)((until - now) / VLAD_NS_PER_MS) + 1;
        int wait = hook ? 4 : 20;
        vlad_msg m;
        if (vlad_client_recv(sub, left < wait ? left : wait, &m, &err) == VLAD_OK) {
            take_msg(&m);
            vlad_msg_clear(&m);
        }
    }
}

static int count_actions(int from, int to, int source) {
    int n = 0;
    for (int i = from; i < to; i++)
        n += tl[i].kind == VLAD_MSG_ACTION && (source < 0 || tl[i].source == source);
    return n;
}

static int find_event(int from, int to, int kind) {
    for (int i = from; i < to; i++)
        if (tl[i].kind == VLAD_MSG_EVENT && tl[i].ev == kind)
            return i;
    return -1;
}

/* Pump until `n` Actions of `source` (-1: any) arrived from index `from`, or timeout. */
static bool pump_until(int from, int source, int n, int timeout_ms) {
    int64_t until = vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    while (count_actions(from, ntl, source) < n) {
        if (vlad_now_ns() >= until)
            return false;
        pump(20);
    }
    return true;
}

/* Actions per second received in [t0, t1). */
static double rate_between(int64_t t0, int64_t t1) {
    int n = 0;
    for (int i = 0; i < ntl; i++)
        n += tl[i].kind == VLAD_MSG_ACTION && tl[i].t_ns >= t0 && tl[i].t_ns < t1;
    return n / ((double)(t1 - t0) / 1e9);
}

/* Actions per second the daemon published in [t0, t1): counted by their publish stamps
 * (Action.stamp_ns, the daemon's monotonic clock, this host's), so a test process starved by a
 * loaded machine (receiving late, then in a burst) does not read as a daemon off its rate.
 * Call it once everything stamped before t1 has been received (pump a while after t1). */
static double rate_published(int64_t t0, int64_t t1) {
    int n = 0;
    for (int i = 0; i < ntl; i++)
        n += tl[i].kind == VLAD_MSG_ACTION && tl[i].stamp_ns >= t0 && tl[i].stamp_ns < t1;
    return n / ((double)(t1 - t0) / 1e9);
}

static double maxdiff(const double *a, const double *b) { return vh_maxdiff(a, b, NJ); }

/* ---- files, profile, processes ------------------------------------------------------- */

static void make_dir(void) {
    snprintf(src_dir, sizeof src_dir, "%s", vh_src_dir());
    vh_tmpdir(dir, sizeof dir, "faults");
    snprintf(prof_path, sizeof prof_path, "%s/p.yaml", dir);
    snprintf(daemon_log, sizeof daemon_log, "%s/vlad.log", dir);
}

/* The joints, camera and sim.model of configs/sim-arm.yaml, wall clock at 50 Hz, `realtime`,
 * the synthetic policy (or `policy_yaml`), watchdog 200 ms; ipc:// endpoints in the folder, or free TCP
 * ports on 127.0.0.1. step_j = min(0.1, 5 / 50) = 0.1 rad. */
static void write_profile(bool tcp, bool realtime, const char *policy_yaml) {
    char ep[3][128];
    static const char *names[3] = {"obs", "act", "ctl"};
    if (tcp)
        vh_free_ports(ports, 3);
    for (int i = 0; i < 3; i++) {
        if (tcp)
            snprintf(ep[i], sizeof ep[i], "tcp://127.0.0.1:%d", ports[i]);
        else
            snprintf(ep[i], sizeof ep[i], "ipc://%s/%s", dir, names[i]);
    }
    vh_write_file(prof_path,
                  "robot: sim-arm\ncontrol_hz: %d\nclock: wall\nrealtime: %s\n" VH_SIM_ARM_JOINTS
                  "endpoints:\n  observations: %s\n  actions: %s\n  control: %s\n"
                  "policy: %s\n"
                  "async: {mode: vlash, execution_horizon: 10}\n"
                  "safety: {watchdog_ms: %d, max_delta_per_tick: 0.1, estop_file: %s/estop}\n"
                  "logging: {level: info}\n"
                  "sim: {model: %s/sim/models/arm4.xml, substeps: 10}\n",
                  HZ, realtime ? "true" : "false", ep[0], ep[1], ep[2],
                  policy_yaml ? policy_yaml : "{synthetic: true}", WATCHDOG_MS, dir, src_dir);
    vh_load_profile(&prof, prof_path);
    assert_int_equal(prof.n_joints, NJ);
    for (int j = 0; j < NJ; j++)
        step_j[j] = fmin(prof.safety.max_delta_per_tick, prof.joints[j].max_velocity / prof.control_hz);
}

/* Start (or restart) the daemon: a new run for the checker. */
static void start_daemon(bool first_seen) {
    new_run(first_seen);
    daemon_pid = vh_start("vlad", prof_path, daemon_log, NULL);
}

static void daemon_alive(const char *when) { vh_alive(&daemon_pid, "vlad", daemon_log, when); }

static void stop_daemon(void) {
    int rc = vh_stop(&daemon_pid, 10000);
    if (rc != 0) {
        vh_print_file(daemon_log, 200);
        fail_msg("vlad exited with %d after SIGTERM", rc);
    }
}

static void sub_ready(void);

/* A fresh world: folder, profile, daemon, the checker's subscriber (subscribed before any
 * robot reports). */
static void world(bool tcp, bool realtime) {
    passed = false;
    ntl = 0;
    memset(&ck, 0, sizeof ck);
    known_pos = NULL;
    hook = NULL;
    sim_runs = 0;
    make_dir();
    write_profile(tcp, realtime, NULL);
    start_daemon(true);
    vlad_err err;
    sub = vlad_client_new(&prof, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_EVENTS, &err);
    if (!sub)
        fail_msg("%s", err.msg);
    sub_ready();
}

/* vlad-sim, task reach, wall clock, with `extra` arguments (NULL-terminated); its log is
 * sim_log, sim<N>.log for its N-th start in this test. */
static char sim_log[200];
static void start_sim(const char *const *extra) {
    snprintf(sim_log, sizeof sim_log, "%s/sim%d.log", dir, sim_runs++);
    const char *args[40] = {"--task", "reach", "--clock", "wall", "--quiet"};
    int n = 5;
    for (int i = 0; extra && extra[i]; i++) {
        assert_true(n < 39);
        args[n++] = extra[i];
    }
    args[n] = NULL;
    sim_pid = vh_start("vlad-sim", prof_path, sim_log, args);
}

static void sim_alive(const char *when) { vh_alive(&sim_pid, "vlad-sim", sim_log, when); }

/* Pump until vlad-sim exits (at most timeout_ms); its exit status. */
static int wait_sim(int timeout_ms) {
    int64_t until = vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    int rc;
    while ((rc = vlad_proc_wait(sim_pid, 0)) < 0) {
        if (vlad_now_ns() > until)
            fail_msg("vlad-sim did not finish in %d ms", timeout_ms);
        pump(50);
    }
    sim_pid = -1;
    return rc;
}

static Vlad__Status *status_try(int timeout_ms) { return vh_status_of(&prof, timeout_ms); }

static Vlad__Status *status_now(void) {
    Vlad__Status *st = status_try(3000);
    if (!st)
        fail_msg("status: no reply in 3 s");
    return st;
}

/* Until the subscriber receives an event, nothing says its subscription reached the daemon
 * (ZeroMQ's slow joiner): ask for an instruction event until one arrives (up to 20 s). */
static void sub_ready(void) {
    vlad_err err;
    vlad_client *c = vlad_client_new(&prof, VLAD_CLIENT_CONTROL, &err);
    if (!c)
        fail_msg("%s", err.msg);
    int64_t until = vlad_now_ns() + 20 * VLAD_NS_PER_S;
    const int from = ntl;
    while (find_event(from, ntl, VLAD__EVENT__KIND__INSTRUCTION) < 0) {
        if (vlad_now_ns() > until) {
            vlad_client_free(c);
            daemon_alive("waiting for the subscriber");
            fail_msg("the subscriber received no event in 20 s");
        }
        vh_cmd b;
        Vlad__Command *cmd = vh_command(&b, VLAD__COMMAND__BODY_SET_INSTRUCTION, "touch the red ball");
        Vlad__Reply *rep = NULL;
        if (vlad_client_command(c, cmd, 500, &rep, &err) == VLAD_OK && rep)
            vlad__reply__free_unpacked(rep, NULL);
        pump(100);
    }
    vlad_client_free(c);
}

static int command_estop(void) {
    vlad_err err;
    vlad_client *c = vlad_client_new(&prof, VLAD_CLIENT_CONTROL, &err);
    if (!c)
        fail_msg("%s", err.msg);
    vh_cmd b;
    Vlad__Command *cmd =
        vh_command(&b, VLAD__COMMAND__BODY_ESTOP, "test_faults: e-stop before the daemon is killed");
    Vlad__Reply *rep = NULL;
    int rc = vlad_client_command(c, cmd, 3000, &rep, &err);
    vlad_client_free(c);
    bool ok = rc == VLAD_OK && rep && rep->ok;
    if (rep)
        vlad__reply__free_unpacked(rep, NULL);
    return ok ? 0 : -1;
}

/* ---- vlad-sim's files ---------------------------------------------------------------- */

static vh_sim_json simj;
static vh_traj traj;

/* the trajectory CSV prints 6 decimals */
#define CSV_TOL 2e-6

/* ---- the tests ----------------------------------------------------------------------- */

/* Bounds on the rate of Actions over a window of >= 1.5 s: the daemon ticks on absolute
 * CLOCK_MONOTONIC deadlines (a late tick is skipped, never bunched), so the count over 1.5 s
 * is 75 +- 1 on an idle machine; +-20% leaves room for receive-time jitter and skipped ticks
 * on a loaded 2-core machine under AddressSanitizer, while a daemon that stopped publishing
 * (rate 0), stalled for 0.3 s, or published per observation burst (rate x2) is far outside. */
#define RATE_LO 0.8
#define RATE_HI 1.2

/* 1. The simulator SIGKILLed mid-episode, then a new simulator. */
static void test_sim_killed(void **st) {
    (void)st;
    world(false, false);
    const char *a_args[] = {"--episodes", "50", NULL};
    start_sim(a_args);
    if (!pump_until(0, S_POLICY, 25, 20000)) {
        daemon_alive("before the first policy actions");
        fail_msg("no policy actions in 20 s with vlad-sim running");
    }
    sim_alive("mid-episode");
    const int k0 = ntl;
    const int64_t t_kill = vlad_now_ns();
    vlad_proc_kill(sim_pid); /* SIGKILL: no goodbye, its sockets vanish */
    sim_pid = -1;
    pump(2500);
    const int k1 = ntl;
    const int64_t t_restart = vlad_now_ns();
    daemon_alive("while the simulator was dead");

    /* the watchdog tripped, and from then on the daemon held the last commanded target */
    int trip = find_event(k0, k1, VLAD__EVENT__KIND__WATCHDOG_TRIP);
    if (trip < 0)
        fail_msg("no WATCHDOG_TRIP in 2.5 s after the simulator was killed (watchdog %d ms)",
                 WATCHDOG_MS);
    int before = -1;
    for (int i = trip - 1; i >= 0 && before < 0; i--)
        if (tl[i].kind == VLAD_MSG_ACTION)
            before = i;
    assert_true(before >= 0);
    assert_int_not_equal(tl[before].source, S_WATCHDOG);
    int held = 0;
    for (int i = trip + 1; i < k1; i++) {
        if (tl[i].kind != VLAD_MSG_ACTION)
            continue;
        held++;
        if (tl[i].source != S_WATCHDOG)
            fail_msg("Action tick %lld after WATCHDOG_TRIP (robot dead) has source %s",
                     (long long)tl[i].tick, SRC_ACTIONS[tl[i].source]);
        if (memcmp(tl[i].q, tl[before].q, sizeof tl[i].q) != 0)
            fail_msg("WATCHDOG Action tick %lld does not hold the last commanded target (%g off)",
                     (long long)tl[i].tick, maxdiff(tl[i].q, tl[before].q));
    }
    /* and kept publishing at its rate while the robot was gone */
    double dead_s = (double)(t_restart - tl[trip].t_ns) / 1e9;
    double rate = rate_between(tl[trip].t_ns, t_restart);
    printf("# 1. sim killed: WATCHDOG_TRIP %.0f ms after the kill; %d WATCHDOG holds over %.2f s "
           "while dead: %.1f Actions/s (control_hz %d)\n",
           (double)(tl[trip].t_ns - t_kill) / 1e6, held, dead_s, rate, HZ);
    assert_true(dead_s >= 1.5);
    if (!(rate >= RATE_LO * HZ && rate <= RATE_HI * HZ))
        fail_msg("%.1f Actions/s while the robot was dead, control_hz %d", rate, HZ);

    /* a new simulator (its ticks start again at 0): resume from its state */
    char csv[200];
    snprintf(csv, sizeof csv, "%s/restart.csv", dir);
    const char *b_args[] = {"--episodes", "1", "--param", "reach.max_s=2.0", "--trajectory", csv,
                            NULL};
    start_sim(b_args);
    int rc = wait_sim(60000);
    pump(300);
    const int k2 = ntl;
    assert_int_equal(rc, 0);
    int clear = find_event(k1, k2, VLAD__EVENT__KIND__WATCHDOG_CLEAR);
    int restart = find_event(k1, k2, VLAD__EVENT__KIND__ROBOT_RESTART);
    int anchor = -1;
    for (int i = k1; i < k2 && anchor < 0; i++)
        if (tl[i].kind == VLAD_MSG_ACTION && tl[i].anchored)
            anchor = i;
    if (clear < 0 || restart < 0 || anchor < 0)
        fail_msg("after the restart: WATCHDOG_CLEAR at %d, ROBOT_RESTART at %d, anchor at %d (-1: "
                 "none)",
                 clear, restart, anchor);
    for (int i = k1; i < anchor; i++)
        if (tl[i].kind == VLAD_MSG_ACTION && tl[i].source == S_POLICY)
            fail_msg("policy Action tick %lld after the restart, before the anchor",
                     (long long)tl[i].tick);
    int policy_after = count_actions(anchor, k2, S_POLICY);
    if (!vh_read_trajectory(csv, &prof, &traj))
        fail_msg("vlad-sim wrote no %s", csv);
    int row = vh_traj_row(&traj, tl[anchor].robot_tick);
    if (row < 0)
        fail_msg("the anchor's robot tick %lld is not in the new simulator's trajectory",
                 (long long)tl[anchor].robot_tick);
    const double *meas = traj.rows[row].pos;
    double d_meas = maxdiff(tl[anchor].q, meas);
    double d_old = maxdiff(tl[anchor].q, tl[before].q);
    printf("# 1. restarted sim: anchor at its robot tick %lld, %.2e from the position it measured "
           "there, %.3f from the target held while it was dead; %d policy Actions after it\n",
           (long long)tl[anchor].robot_tick, d_meas, d_old, policy_after);
    for (int j = 0; j < NJ; j++)
        if (fabs(tl[anchor].q[j] - meas[j]) > step_j[j] + CSV_TOL)
            fail_msg("contract S4: the anchor joint %d is %g from the new robot's measured position",
                     j, tl[anchor].q[j] - meas[j]);
    assert_true(policy_after >= 10); /* 2 s of policy: ~90 Actions; 10 is "it resumed" */
    Vlad__Status *s = status_now();
    printf("# 1. status: robot_restarts %llu, watchdog_trips %llu, overruns %llu; checker: %ld "
           "Actions, %ld anchors, %ld chunks, %ld tick gaps\n",
           (unsigned long long)s->robot_restarts, (unsigned long long)s->watchdog_trips,
           (unsigned long long)s->overruns, ck.actions, ck.anchors, ck.chunks, ck.tick_gaps);
    uint64_t restarts = s->robot_restarts, trips = s->watchdog_trips;
    vlad__status__free_unpacked(s, NULL);
    assert_int_equal(restarts, 1);
    assert_true(trips >= 1);
    stop_daemon();
    passed = true;
}

/* 2. The daemon SIGKILLed (e-stopped) and restarted while the simulator runs. */
#define EP2 12
#define DEAD_TICKS 25 /* simulator ticks without a daemon, at the least */

/* The dead window of case 2 in vlad-sim's own ticks: the rows of its trajectory (csv, read
 * into traj) with from_t < tick < to_t, from_t the last robot tick the killed daemon
 * answered, to_t the first tick vlad-sim applied an action of the restarted daemon (while
 * waiting: INT64_MAX, the restarted daemon not started yet). No daemon sent anything for
 * them, so:
 *   - a row with no action that tick (source -1) keeps the previous row's target (what the
 *     simulator applied last), except an episode's first row (k == 0), where the simulator
 *     itself resets the arm and its target to home: those rows are left out, explicitly,
 *     neither checked nor counted;
 *   - a row with an action is one of the killed daemon's last (answering a tick <= from_t,
 *     arriving late); it was e-stopped, so the action is ESTOP and nothing else. Such a row
 *     may move the target (the e-stop hold, reached by rate-limited steps after a reset to
 *     home at an episode start just before the kill): it is not counted as held.
 * The rows held (no action, k > 0, target unchanged); fails the test on any other row. */
static int dead_window(const char *csv, int64_t from_t, int64_t to_t) {
    if (!vh_read_trajectory(csv, &prof, &traj))
        return 0; /* nothing on disk yet */
    int held = 0;
    for (int i = 1; i < traj.n; i++) {
        const vh_row *r = &traj.rows[i];
        if (r->tick <= from_t || r->tick >= to_t)
            continue;
        if (r->source >= 0) {
            if (r->source != S_ESTOP)
                fail_msg("vlad-sim applied a %s action at tick %lld, after the killed daemon's "
                         "last robot tick %lld (it was e-stopped)",
                         r->source < 6 ? SRC_ACTIONS[r->source] : "?", (long long)r->tick,
                         (long long)from_t);
            continue;
        }
        if (r->k == 0)
            continue; /* the episode's reset to home (see above) */
        if (maxdiff(r->target, traj.rows[i - 1].target) > CSV_TOL)
            fail_msg("vlad-sim moved its target at tick %lld (episode %d, k %d) with no action "
                     "and no daemon running (%g)",
                     (long long)r->tick, r->episode, r->k,
                     maxdiff(r->target, traj.rows[i - 1].target));
        held++;
    }
    return held;
}
static void test_daemon_killed(void **st) {
    (void)st;
    world(false, false);
    char json[200], csv[200], ne[8];
    snprintf(json, sizeof json, "%s/run.json", dir);
    snprintf(csv, sizeof csv, "%s/run.csv", dir);
    snprintf(ne, sizeof ne, "%d", EP2);
    /* 12 episodes of 1 s: long enough to outlive the kill, the restart and the release */
    const char *args[] = {"--episodes", ne, "--param", "reach.max_s=1.0", "--command-timeout", "200",
                          "--expect-policy", "--json", json, "--trajectory", csv, NULL};
    start_sim(args);
    if (!pump_until(0, S_POLICY, 25, 20000)) {
        daemon_alive("before the first policy actions");
        fail_msg("no policy actions in 20 s with vlad-sim running");
    }
    const int e0 = ntl;
    assert_int_equal(command_estop(), 0);
    if (!pump_until(e0, S_ESTOP, 5, 3000))
        fail_msg("no ESTOP Action within 3 s of the acknowledged e-stop");
    char latch[200];
    snprintf(latch, sizeof latch, "%s/estop", dir);
    assert_int_equal(access(latch, F_OK), 0); /* persisted before the kill */
    int last1 = -1;
    for (int i = ntl - 1; i >= 0 && last1 < 0; i--)
        if (tl[i].kind == VLAD_MSG_ACTION)
            last1 = i;
    vlad_proc_kill(daemon_pid);
    daemon_pid = -1;
    pump(400); /* what the daemon sent just before it died may still be on its way */
    const int d0 = ntl;
    /* the last robot tick the killed daemon answered (all it sent has arrived by now) */
    int64_t kill_t = -1;
    for (int i = 0; i < d0; i++)
        if (tl[i].kind == VLAD_MSG_ACTION && tl_run[i] == 1 && tl[i].robot_tick > kill_t)
            kill_t = tl[i].robot_tick;
    assert_true(kill_t >= 0);
    /* The daemon stays dead for DEAD_TICKS of the simulator's own ticks, however slowly it
     * runs (a sanitizer build on a loaded machine runs below 50 Hz): the wait reads its
     * trajectory, which it writes in stdio blocks, so what is on disk is a lower bound on
     * its progress. The 30 s only bound a simulator that stopped ticking without a daemon. */
    const int64_t until = vlad_now_ns() + 30 * VLAD_NS_PER_S;
    int dead = 0;
    while ((dead = dead_window(csv, kill_t, INT64_MAX)) < DEAD_TICKS) {
        sim_alive("while the daemon was dead");
        if (vlad_now_ns() > until)
            fail_msg("vlad-sim held %d ticks (of %d) in 30 s without a daemon", dead, DEAD_TICKS);
        pump(100);
    }
    /* every tick on disk now was executed before the restarted daemon existed */
    const int64_t restart_t = traj.rows[traj.n - 1].tick;
    const int d1 = ntl;
    /* the robot lives on without its daemon (its sockets reconnect on their own) */
    sim_alive("while the daemon was dead");
    assert_int_equal(count_actions(d0, d1, -1), 0);

    start_daemon(false); /* same profile, same latch file: a new run for the checker */
    /* 1.5 s e-stopped, and 30 Actions or more: it found the robot and publishes (it waits for
     * the first observation, which comes within a tick of the sockets connecting; 30 Actions
     * are 0.6 s at 50 Hz; a sanitizer build under load may take a second or more to come up,
     * the 20 s only bound one that never does) */
    pump(1500);
    if (!pump_until(d1, -1, 30, 20000)) {
        daemon_alive("after the restart");
        fail_msg("the restarted daemon published %d Actions in 21.5 s", count_actions(d1, ntl, -1));
    }
    daemon_alive("after the restart");
    const int r1 = ntl;
    int n2 = 0, first2 = -1;
    for (int i = d1; i < r1; i++) {
        if (tl[i].kind != VLAD_MSG_ACTION)
            continue;
        if (first2 < 0)
            first2 = i;
        n2++;
        if (tl[i].source != S_ESTOP)
            fail_msg("the restarted daemon published tick %lld with source %s before any release "
                     "(the e-stop was latched before the kill)",
                     (long long)tl[i].tick, SRC_ACTIONS[tl[i].source]);
        if (memcmp(tl[i].q, tl[first2].q, sizeof tl[i].q) != 0)
            fail_msg("contract S6: the restarted daemon's e-stop hold moved at tick %lld (%g)",
                     (long long)tl[i].tick, maxdiff(tl[i].q, tl[first2].q));
    }
    assert_true(n2 >= 30);
    Vlad__Status *s = status_now();
    int mode = s->mode;
    vlad__status__free_unpacked(s, NULL);
    assert_int_equal(mode, VLAD__MODE__MODE_ESTOP);
    sim_alive("before the release (EP2 too small for this machine?)");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s --profile %s release >/dev/null", vlad_proc_bin("vladctl"),
             prof_path);
    assert_int_equal(system(cmd), 0);
    const int rel = ntl;
    if (!pump_until(rel, S_POLICY, 10, 10000))
        fail_msg("no policy Actions within 10 s of `vladctl release`");
    assert_true(find_event(rel, ntl, VLAD__EVENT__KIND__ESTOP_RELEASED) >= 0);
    assert_int_not_equal(access(latch, F_OK), 0);
    int rc = wait_sim(60000);
    assert_int_equal(rc, 0);

    /* the simulator completed every episode; the last one was driven by the policy */
    vh_read_sim_json(json, &simj);
    assert_int_equal(simj.n, EP2);
    printf("# 2. daemon killed: %d ESTOP Actions from the restarted daemon before the release, "
           "its hold %.2e from the killed daemon's; vlad-sim: %d episodes, the last %d ticks "
           "with %d non-policy\n",
           n2, maxdiff(tl[first2].q, tl[last1].q), simj.n, simj.ep[EP2 - 1].ticks,
           simj.ep[EP2 - 1].stall_ticks);
    /* an episode ends at its 1 s time-out or earlier (touching a distractor ends it) */
    for (int e = 0; e < EP2; e++)
        assert_true(simj.ep[e].ticks >= 1 && simj.ep[e].ticks <= HZ + 1);
    /* the last three episodes came after the release: a policy-driven episode stalls only at
     * its start (anchor, first inference: ~3 ticks of 50); e-stopped or without a daemon,
     * every tick is a stall (--expect-policy) */
    int last_ticks = 0, last_stalls = 0;
    for (int e = EP2 - 3; e < EP2; e++)
        last_ticks += simj.ep[e].ticks, last_stalls += simj.ep[e].stall_ticks;
    if (!(2 * last_stalls < last_ticks))
        fail_msg("vlad-sim's last three episodes: %d of %d ticks without a policy action",
                 last_stalls, last_ticks);
    /* while no daemon ran, the simulator kept its last applied target: the whole window from
     * the killed daemon's last robot tick to the first tick vlad-sim applied an action of the
     * restarted daemon (its first action after restart_t: the killed daemon's last ones came
     * within a few ticks of kill_t, DEAD_TICKS before), the rows the wait above saw included.
     * (Not the robot tick of the first Action the subscriber saw from the restarted daemon:
     * that daemon may answer observations vlad-sim queued for it while it was down.) */
    assert_true(vh_read_trajectory(csv, &prof, &traj));
    int64_t to_t = -1;
    for (int i = 0; i < traj.n && to_t < 0; i++)
        if (traj.rows[i].tick > restart_t && traj.rows[i].source >= 0)
            to_t = traj.rows[i].tick;
    if (to_t < 0)
        fail_msg("vlad-sim applied no action of the restarted daemon");
    int rows = dead_window(csv, kill_t, to_t);
    printf("# 2. vlad-sim held its target over %d ticks without a daemon (robot ticks "
           "%lld..%lld)\n",
           rows, (long long)kill_t + 1, (long long)to_t - 1);
    /* the restarted daemon's first Action, when the subscriber caught it, is the anchor: the
     * position the robot measured (no previous target in this run to hold). The trajectory
     * has a row for every tick vlad-sim executed; an episode's final observation is measured
     * and published but not executed (no row), and it is often the one a daemon coming up
     * meets first, since vlad-sim then waits out its command timeout (200 ms) on the next
     * episode's reset. For that tick the measurement recorded last, one tick earlier, stands
     * in: the arm has held one target through the dead window before it. */
    const int64_t rt2 = tl[first2].robot_tick;
    /* ... and it answers the robot's present: an observation published after it came up, not
     * one the simulator's socket queued while no daemon was there (the client publishes only
     * to a connected peer, ZMQ_IMMEDIATE: an anchor on a state the robot has long left would
     * be a step from where it was, not from where it is) */
    if (rt2 < restart_t)
        fail_msg("the restarted daemon first answered robot tick %lld, before its own start (the "
                 "simulator was at tick %lld or later): a stale observation queued while it was dead",
                 (long long)rt2, (long long)restart_t);
    int row = vh_traj_row(&traj, rt2);
    if (row < 0) {
        bool final_tick = false;
        for (int e = 0; e < simj.n; e++)
            final_tick |= simj.ep[e].first_tick + simj.ep[e].ticks - 1 == rt2;
        if (!final_tick)
            fail_msg("robot tick %lld, answered by the restarted daemon, is neither in vlad-sim's "
                     "trajectory nor an episode's final tick",
                     (long long)rt2);
        row = vh_traj_row(&traj, rt2 - 1);
        assert_true(row >= 0);
    }
    const double *meas = traj.rows[row].pos;
    printf("# 2. first Action received from the restarted daemon: anchored %d, %.2e from the "
           "position vlad-sim measured at its robot tick %lld%s\n",
           tl[first2].anchored, maxdiff(tl[first2].q, meas), (long long)traj.rows[row].tick,
           traj.rows[row].tick == rt2 ? "" : " (the tick before the episode's final one)");
    if (tl[first2].anchored)
        for (int j = 0; j < NJ; j++)
            if (fabs(tl[first2].q[j] - meas[j]) > step_j[j] + CSV_TOL)
                fail_msg("contract S4: the restarted daemon's anchor joint %d is %g from the "
                         "measured position",
                         j, tl[first2].q[j] - meas[j]);
    assert_true(rows >= DEAD_TICKS); /* the wait above saw as many before the restart */
    stop_daemon();
    passed = true;
}

/* 3. Observations stopped longer than the watchdog: SIGSTOP the simulator, then SIGCONT. */
static void test_sim_stopped(void **st) {
    (void)st;
    world(false, false);
    const char *args[] = {"--episodes", "50", NULL};
    start_sim(args);
    if (!pump_until(0, S_POLICY, 25, 20000)) {
        daemon_alive("before the first policy actions");
        fail_msg("no policy actions in 20 s with vlad-sim running");
    }
    const int k0 = ntl;
    assert_int_equal(kill(sim_pid, SIGSTOP), 0);
    pump(2000); /* 10 x the watchdog */
    const int64_t t_cont = vlad_now_ns();
    assert_int_equal(kill(sim_pid, SIGCONT), 0);
    const int k1 = ntl;
    int trip = find_event(k0, k1, VLAD__EVENT__KIND__WATCHDOG_TRIP);
    if (trip < 0)
        fail_msg("no WATCHDOG_TRIP while the simulator was stopped for 2 s");
    int before = -1;
    for (int i = trip - 1; i >= 0 && before < 0; i--)
        if (tl[i].kind == VLAD_MSG_ACTION)
            before = i;
    assert_true(before >= 0);
    int held = 0;
    for (int i = trip + 1; i < k1; i++) {
        if (tl[i].kind != VLAD_MSG_ACTION)
            continue;
        held++;
        if (tl[i].source != S_WATCHDOG || memcmp(tl[i].q, tl[before].q, sizeof tl[i].q) != 0)
            fail_msg("Action tick %lld while the robot was stopped: source %s, %g from the last "
                     "commanded target",
                     (long long)tl[i].tick, SRC_ACTIONS[tl[i].source], maxdiff(tl[i].q, tl[before].q));
    }
    double rate = rate_between(tl[trip].t_ns, t_cont);
    double win = (double)(t_cont - tl[trip].t_ns) / 1e9;
    if (!pump_until(k1, S_POLICY, 20, 10000))
        fail_msg("no policy Actions within 10 s of SIGCONT");
    pump(200);
    const int k2 = ntl;
    int clear = find_event(k1, k2, VLAD__EVENT__KIND__WATCHDOG_CLEAR);
    if (clear < 0)
        fail_msg("no WATCHDOG_CLEAR after SIGCONT");
    int first_policy = -1;
    for (int i = k1; i < k2 && first_policy < 0; i++)
        if (tl[i].kind == VLAD_MSG_ACTION && tl[i].source == S_POLICY)
            first_policy = i;
    assert_true(first_policy > clear); /* policy targets only once observations are fresh */
    sim_alive("after SIGCONT");
    Vlad__Status *s = status_now();
    printf("# 3. sim stopped 2 s: %d WATCHDOG holds over %.2f s (%.1f Actions/s), WATCHDOG_CLEAR "
           "%.0f ms after SIGCONT, %d policy Actions after; status: watchdog_trips %llu, "
           "robot_restarts %llu, mode %d\n",
           held, win, rate, (double)(tl[clear].t_ns - t_cont) / 1e6,
           count_actions(clear, k2, S_POLICY), (unsigned long long)s->watchdog_trips,
           (unsigned long long)s->robot_restarts, s->mode);
    uint64_t trips = s->watchdog_trips, restarts = s->robot_restarts;
    int mode = s->mode;
    vlad__status__free_unpacked(s, NULL);
    assert_true(win >= 1.5);
    if (!(rate >= RATE_LO * HZ && rate <= RATE_HI * HZ))
        fail_msg("%.1f Actions/s while the robot was stopped, control_hz %d", rate, HZ);
    assert_true(trips >= 1);
    assert_int_equal(restarts, 0); /* a stopped robot's tick did not go back: no restart */
    assert_int_equal(mode, VLAD__MODE__MODE_RUNNING);
    vlad_proc_kill(sim_pid);
    sim_pid = -1;
    stop_daemon();
    passed = true;
}

/* Publish jitter of the Actions received in [t0, t1), estimated from Action.stamp_ns (the
 * daemon's publish time; its deadline is t0_daemon + tick * period): stamp - tick * period,
 * minus `base`. Returns the p99 in us; *min_out gets the minimum raw value. */
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double stamp_p99_us(int64_t t0, int64_t t1, double base, double *min_out) {
    static double v[MAX_REC];
    int n = 0;
    double mn = INFINITY;
    for (int i = 0; i < ntl; i++)
        if (tl[i].kind == VLAD_MSG_ACTION && tl[i].t_ns >= t0 && tl[i].t_ns < t1) {
            double raw = (double)tl[i].stamp_ns - (double)tl[i].tick * (double)PERIOD_NS;
            mn = fmin(mn, raw);
            v[n++] = raw;
        }
    if (min_out)
        *min_out = mn;
    if (!n)
        return NAN;
    qsort(v, (size_t)n, sizeof v[0], cmp_d);
    return (v[(int)floor(0.99 * (n - 1))] - base) / 1e3;
}

/* 4. Never-reading subscribers and a subscription flood. */
#define FLOOD 50000
#define SLOW_SUBS 8
static void test_slow_subscribers(void **st) {
    (void)st;
    /* realtime: true, as configs/sim-arm.yaml deploys it (SCHED_FIFO control and I/O threads
     * where CAP_SYS_NICE allows; the daemon warns and goes on where it does not) */
    world(false, true);
    const char *args[] = {"--episodes", "50", NULL};
    start_sim(args);
    if (!pump_until(0, S_POLICY, 25, 20000)) {
        daemon_alive("before the first policy actions");
        fail_msg("no policy actions in 20 s with vlad-sim running");
    }
    /* baseline: 3 s with one normal subscriber (this test's) */
    int64_t b0 = vlad_now_ns();
    pump(3000);
    int64_t b1 = vlad_now_ns();
    Vlad__Status *s0 = status_now();
    double raw_min;
    (void)stamp_p99_us(b0, b1, 0, &raw_min);
    double base_p99 = stamp_p99_us(b0, b1, raw_min, NULL);
    double base_status_p99 = s0->jitter ? s0->jitter->p99_us : NAN;
    uint64_t refused0 = s0->subscriptions_refused;
    vlad__status__free_unpacked(s0, NULL);

    /* the abuse: subscribers that never read, with the smallest queues, to everything */
    const char *ep = prof.endpoints.actions;
    for (int i = 0; i < SLOW_SUBS; i++) {
        void *s = zsock(ZMQ_SUB);
        int one = 1, small = 4096;
        zmq_setsockopt(s, ZMQ_RCVHWM, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_RCVBUF, &small, sizeof small);
        assert_int_equal(zmq_connect(s, ep), 0);
        if (i % 2)
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
        else
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, "action.sim-arm", 14);
    }
    /* and one that subscribes to 50,000 distinct topics (no send limit: all of them go out) */
    void *flood = zsock(ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(flood, ZMQ_SNDHWM, &zero, sizeof zero);
    assert_int_equal(zmq_connect(flood, ep), 0);
    for (int i = 0; i < FLOOD; i++) {
        char t[32];
        int n = snprintf(t, sizeof t, "flood-%d", i);
        zmq_setsockopt(flood, ZMQ_SUBSCRIBE, t, (size_t)n);
    }
    int64_t a0 = vlad_now_ns();
    pump(4000); /* longer than the baseline: see the p99 bound below */
    int64_t a1 = vlad_now_ns();
    Vlad__Status *s1 = status_try(3000);
    if (!s1)
        fail_msg("no status reply during the subscriber abuse");
    double abuse_p99 = stamp_p99_us(a0, a1, raw_min, NULL);
    double abuse_status_p99 = s1->jitter ? s1->jitter->p99_us : NAN;
    uint64_t overruns = s1->overruns;
    vlad__status__free_unpacked(s1, NULL);
    /* the flood is counted: wait (up to 10 s) until all 50,000 arrived */
    uint64_t refused = 0;
    int64_t until = vlad_now_ns() + 10 * VLAD_NS_PER_S;
    do {
        pump(200);
        Vlad__Status *s2 = status_now();
        refused = s2->subscriptions_refused - refused0;
        vlad__status__free_unpacked(s2, NULL);
    } while (refused < FLOOD && vlad_now_ns() < until);
    /* the rates by publish stamps, once both windows' Actions have arrived (the subscription
     * is drained for another 0.5 s: a starved test process catches up on what was queued) */
    pump(500);
    double base_rate = rate_published(b0, b1), abuse_rate = rate_published(a0, a1);
    printf("# 4. baseline: %.1f Actions/s, jitter p99 %.0f us (status, cumulative) / %.0f us (from "
           "stamps, window); with %d never-reading subscribers and a %d-topic flood: %.1f "
           "Actions/s, p99 %.0f us / %.0f us; subscriptions_refused +%llu, overruns %llu, tick "
           "gaps seen %ld\n",
           base_rate, base_status_p99, base_p99, SLOW_SUBS, FLOOD, abuse_rate, abuse_status_p99,
           abuse_p99, (unsigned long long)refused, (unsigned long long)overruns, ck.tick_gaps);
    /* rate within 20% of the baseline (see RATE_LO) */
    if (!(abuse_rate >= RATE_LO * base_rate && abuse_rate <= RATE_HI * base_rate))
        fail_msg("action rate %.1f/s under abuse, %.1f/s before", abuse_rate, base_rate);
    /* jitter p99 below max(5 ms, 3x baseline): 5 ms is a quarter tick, what an unloaded
     * 2-core machine without SCHED_FIFO already shows at p99 (README: 3-4 ms); 3x absorbs
     * a noisy neighbour. The Status histogram is cumulative since start: the abuse window
     * (4 s, ~200 samples) is over half of all samples, so if more than 2% of its ticks were
     * late the cumulative p99 would show it. The window p99 from the Actions' stamps
     * (publish time - tick x period, control.c's deadlines, minus the baseline's minimum) is
     * the same bound on the abuse window alone.
     * Only with SCHED_FIFO: without it the daemon's threads share 2 cores with every other
     * runnable thread, this test's 50,000 subscriptions and both ZeroMQ I/O threads among
     * them, and the first ticks after the flood were measured 5-50 ms late (CPU contention,
     * not the daemon's I/O loop: with SCHED_FIFO the same flood leaves p99 at 0.1-0.3 ms). */
    bool fifo = !vh_file_has(daemon_log, "SCHED_FIFO refused");
    double lim_status = fmax(5000.0, 3 * base_status_p99), lim_win = fmax(5000.0, 3 * base_p99);
    if (!fifo) {
        printf("# 4. SCHED_FIFO refused (no CAP_SYS_NICE): the jitter bounds are not asserted\n");
    } else {
        if (!(abuse_status_p99 < lim_status))
            fail_msg("Status.jitter p99 %.0f us under abuse, limit %.0f us", abuse_status_p99,
                     lim_status);
        if (!(abuse_p99 < lim_win))
            fail_msg("publish jitter p99 %.0f us in the abuse window, limit %.0f us", abuse_p99,
                     lim_win);
    }
    assert_int_equal(refused, FLOOD); /* every distinct topic refused once (none stored) */
    close_raw();
    daemon_alive("after the subscriber abuse");
    vlad_proc_kill(sim_pid);
    sim_pid = -1;
    stop_daemon();
    passed = true;
}

/* ---- the test as the robot (cases 5 and 6) ------------------------------------------- */

enum { SEQ_INC, SEQ_DUP, SEQ_BACK, SEQ_SHUFFLE };
static struct {
    vlad_client *cli;   /* case 5: the client library */
    void *pub;          /* case 6: a raw ZeroMQ PUB */
    int64_t next_ns, tick;
    uint64_t seq, counter;
    int seq_mode;
    long sent;
    uint64_t rng;
} rb;

static uint64_t rnd(void) {
    uint64_t z = (rb.rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The robot's position is a function of its tick: a slow wave around home inside the limits. */
static void pos_at(int64_t t, double *pos) {
    for (int j = 0; j < NJ; j++)
        pos[j] = prof.joints[j].home + 0.2 * sin(0.03 * (double)t + j);
}
static bool robot_pos(int64_t t, double *pos) {
    if (t < 0 || t > rb.tick)
        return false;
    pos_at(t, pos);
    return true;
}

static void robot_send(int64_t tick, uint64_t seq) {
    double pos[NJ];
    pos_at(tick, pos);
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.robot = "sim-arm";
    o.seq = seq;
    o.tick = tick;
    o.stamp_ns = vlad_now_ns();
    o.n_joint_pos = NJ;
    o.joint_pos = pos;
    vlad_err err;
    if (rb.cli) {
        if (vlad_client_publish_observation(rb.cli, &o, &err))
            fail_msg("publish: %s", err.msg);
        assert_int_equal(o.seq, seq); /* the library keeps an explicit seq */
    } else {
        uint8_t buf[512];
        size_t len;
        assert_int_equal(vlad_frame_pack("obs.sim-arm", &o.base, buf, sizeof buf, &len, NULL), 0);
        assert_true(zmq_send(rb.pub, buf, len, 0) == (int)len);
    }
    rb.sent++;
}

/* one observation per tick of the robot's own 50 Hz clock, seq per rb.seq_mode */
static void robot_tick_once(void) {
    int64_t t = ++rb.tick;
    rb.counter++;
    switch (rb.seq_mode) {
    case SEQ_INC: robot_send(t, ++rb.seq); break;
    case SEQ_DUP: /* the same message twice: a duplicating transport or a resend */
        ++rb.seq;
        robot_send(t, rb.seq);
        robot_send(t, rb.seq);
        break;
    case SEQ_BACK: robot_send(t, 1000000 - rb.counter); break;
    default: robot_send(t, 1 + rnd() % 1000000); break;
    }
}

static void robot_hook(void) {
    int64_t now = vlad_now_ns();
    if (now < rb.next_ns)
        return;
    robot_tick_once();
    rb.next_ns += PERIOD_NS;
    if (rb.next_ns < now) /* we were away: no catching up in a burst */
        rb.next_ns = now + PERIOD_NS;
}

static void robot_begin(void) {
    rb.next_ns = vlad_now_ns();
    rb.tick = 99; /* any start */
    rb.seq = rb.counter = 0;
    rb.seq_mode = SEQ_INC;
    rb.sent = 0;
    rb.rng = 12345;
    known_pos = robot_pos;
    hook = robot_hook;
}

/* Poll status (robot quiet) until get() reaches `want`, or (want UINT64_MAX) stays the same
 * over 100 ms; at most 3 s. */
static Vlad__Status *status_settled(uint64_t (*get)(const Vlad__Status *), uint64_t want) {
    int64_t until = vlad_now_ns() + 3 * VLAD_NS_PER_S;
    uint64_t last = UINT64_MAX;
    for (;;) {
        Vlad__Status *s = status_now();
        uint64_t v = get(s);
        if ((want != UINT64_MAX && v >= want) || (want == UINT64_MAX && v == last) ||
            vlad_now_ns() > until)
            return s;
        last = v;
        vlad__status__free_unpacked(s, NULL);
        pump(100);
    }
}
static uint64_t get_obs(const Vlad__Status *s) { return s->observations_received; }

/* 5. Bursts, duplicated and reordered sequence numbers. */
static void test_obs_sequence(void **st) {
    (void)st;
    world(false, false);
    vlad_err err;
    rb.cli = vlad_client_new(&prof, VLAD_CLIENT_PUBLISH, &err);
    if (!rb.cli)
        fail_msg("%s", err.msg);
    robot_begin();
    if (!pump_until(0, -1, 1, 10000))
        fail_msg("no Action in 10 s of observations");
    pump(1000);
    /* the observations a PUB sends before its connection is up are lost (ZeroMQ's slow
     * joiner): count from a quiet moment after the daemon has been acting on them */
    hook = NULL;
    Vlad__Status *s0 = status_settled(get_obs, UINT64_MAX);
    const uint64_t recv0 = s0->observations_received;
    const long sent0 = rb.sent;
    vlad__status__free_unpacked(s0, NULL);
    hook = robot_hook;
    rb.next_ns = vlad_now_ns();
    const int64_t t0 = vlad_now_ns();
    const int k0 = ntl;
    /* bursts of 200 observations at once, normal ticks between them */
    for (int b = 0; b < 5; b++) {
        for (int i = 0; i < 200; i++) {
            ++rb.tick;
            robot_send(rb.tick, ++rb.seq);
        }
        pump(300);
    }
    rb.seq_mode = SEQ_DUP;
    pump(1500);
    rb.seq_mode = SEQ_BACK;
    pump(1500);
    rb.seq_mode = SEQ_SHUFFLE;
    pump(1500);
    const int64_t t1 = vlad_now_ns();
    const int k1 = ntl;
    hook = NULL;
    /* the Actions follow the robot's ticks forward (seq does not matter) */
    int64_t last_rt = -1;
    for (int i = k0; i < k1; i++)
        if (tl[i].kind == VLAD_MSG_ACTION) {
            if (tl[i].robot_tick < last_rt || tl[i].robot_tick > rb.tick)
                fail_msg("Action tick %lld: robot_tick %lld after %lld (the robot's last tick is "
                         "%lld)",
                         (long long)tl[i].tick, (long long)tl[i].robot_tick, (long long)last_rt,
                         (long long)rb.tick);
            last_rt = tl[i].robot_tick;
        }
    double rate = rate_between(t0, t1);
    Vlad__Status *s = status_settled(get_obs, recv0 + (uint64_t)(rb.sent - sent0));
    printf("# 5. %ld observations (5 bursts of 200, duplicated, backwards and shuffled seq) in "
           "%.1f s: observations_received %llu, bad %llu, robot_restarts %llu, out-of-limits "
           "%llu, absurd %llu, watchdog_trips %llu; %.1f Actions/s, %d policy Actions, mode %d\n",
           rb.sent, (double)(t1 - t0) / 1e9, (unsigned long long)s->observations_received,
           (unsigned long long)s->bad_observations, (unsigned long long)s->robot_restarts,
           (unsigned long long)s->obs_out_of_limits, (unsigned long long)s->obs_absurd,
           (unsigned long long)s->watchdog_trips, rate, count_actions(k0, k1, S_POLICY), s->mode);
    uint64_t got = s->observations_received, bad = s->bad_observations,
             restarts = s->robot_restarts, lim = s->obs_out_of_limits, absurd = s->obs_absurd;
    vlad__status__free_unpacked(s, NULL);
    printf("# 5. %ld observations before the count started, %llu of them received (slow "
           "joiner); %ld sent since, %llu received\n",
           sent0, (unsigned long long)recv0, rb.sent - sent0, (unsigned long long)(got - recv0));
    assert_int_equal(got - recv0, (uint64_t)(rb.sent - sent0)); /* each counted, duplicates too */
    assert_int_equal(bad, 0);
    assert_int_equal(lim, 0);
    assert_int_equal(absurd, 0);
    assert_int_equal(restarts, 0); /* seq going back is not the robot's tick going back */
    if (!(rate >= RATE_LO * HZ && rate <= RATE_HI * HZ))
        fail_msg("%.1f Actions/s with bursts and odd sequence numbers, control_hz %d", rate, HZ);
    assert_true(count_actions(k0, k1, S_POLICY) >= HZ); /* ~6 s of policy: >= 1 s of it */
    vlad_client_free(rb.cli);
    rb.cli = NULL;
    daemon_alive("after the sequence faults");
    stop_daemon();
    passed = true;
}

/* ---- 6. garbage, oversized frames, idle connections ---------------------------------- */

static void fill_random(uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rnd();
}

static int tcp_connect(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(s);
        fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(e));
    }
    return s;
}

typedef struct counters {
    uint64_t bad_obs, bad_cmd, oversized, refused;
} counters;
static counters want_c;
static bool get_counters_ok(const Vlad__Status *s) {
    return s->bad_observations >= want_c.bad_obs && s->bad_commands >= want_c.bad_cmd &&
           s->oversized_frames >= want_c.oversized && s->subscriptions_refused >= want_c.refused;
}

#define N_RANDOM 50
#define N_OVERSIZED 3
#define N_IDLE 200
static void test_garbage(void **st) {
    (void)st;
    world(true, false);
    /* the robot publishes through a raw PUB, the same one the garbage goes through: when its
     * observations arrive, so do the frames behind them */
    rb.pub = zsock(ZMQ_PUB);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ports[0]);
    assert_int_equal(zmq_connect(rb.pub, ep), 0);
    robot_begin();
    if (!pump_until(0, -1, 1, 10000)) {
        daemon_alive("waiting for the first Action");
        fail_msg("no Action in 10 s of observations");
    }
    int64_t b0 = vlad_now_ns();
    pump(2000);
    int64_t b1 = vlad_now_ns();
    double base_rate = rate_between(b0, b1);
    Vlad__Status *s0 = status_now();
    counters c0 = {s0->bad_observations, s0->bad_commands, s0->oversized_frames,
                   s0->subscriptions_refused};
    vlad__status__free_unpacked(s0, NULL);

    /* random frames through raw ZeroMQ sockets: counted exactly */
    const size_t max_obs = vlad_max_observation_frame(&prof), max_cmd = 64 * 1024;
    size_t big_n = (max_obs > max_cmd ? max_obs : max_cmd) + 1024;
    uint8_t *big = malloc(big_n);
    assert_non_null(big);
    int bad_obs = 0, bad_cmd = 0, oversized = 0;
    for (int i = 0; i < N_RANDOM; i++) { /* the observation topic, then random bytes */
        uint8_t b[600];
        size_t n = 12 + rnd() % 500;
        memcpy(b, "obs.sim-arm ", 12);
        fill_random(b + 12, n - 12);
        assert_true(zmq_send(rb.pub, b, n, 0) == (int)n);
        bad_obs++;
    }
    for (int i = 0; i < N_RANDOM; i++) { /* random topics: the daemon's SUB filters them out */
        uint8_t b[300];
        size_t n = 1 + rnd() % 300;
        fill_random(b, n);
        b[0] = 'x';
        zmq_send(rb.pub, b, n, 0);
    }
    for (int i = 0; i < 10; i++) { /* two frames in one message */
        zmq_send(rb.pub, "obs.sim-arm ", 12, ZMQ_SNDMORE);
        zmq_send(rb.pub, "junk", 4, 0);
        bad_obs++;
    }
    memcpy(big, "obs.sim-arm ", 12);
    fill_random(big + 12, big_n - 12);
    for (int i = 0; i < N_OVERSIZED; i++) { /* over the cap, under twice it */
        assert_true(zmq_send(rb.pub, big, max_obs + 1024, 0) == (int)(max_obs + 1024));
        bad_obs++, oversized++;
    }
    void *dealer = zsock(ZMQ_DEALER);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ports[2]);
    assert_int_equal(zmq_connect(dealer, ep), 0);
    for (int i = 0; i < N_RANDOM; i++) {
        uint8_t b[600];
        size_t n = 1 + rnd() % 600;
        fill_random(b, n);
        if (i % 2 && n > 4)
            memcpy(b, "cmd ", 4);
        assert_true(zmq_send(dealer, b, n, 0) == (int)n);
        bad_cmd++;
    }
    memcpy(big, "cmd ", 4);
    for (int i = 0; i < N_OVERSIZED; i++) {
        assert_true(zmq_send(dealer, big, max_cmd + 1024, 0) == (int)(max_cmd + 1024));
        bad_cmd++, oversized++;
    }
    void *xsub = zsock(ZMQ_XSUB);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ports[1]);
    assert_int_equal(zmq_connect(xsub, ep), 0);
    int refused = 0;
    for (int i = 0; i < N_RANDOM; i++) { /* random subscription messages */
        uint8_t b[100];
        size_t n = 2 + rnd() % 90;
        fill_random(b, n);
        b[0] = 1;
        b[1] = 'z'; /* not a prefix of any of our topics */
        zmq_send(xsub, b, n, 0);
        refused++;
    }
    free(big);
    want_c = (counters){c0.bad_obs + (uint64_t)bad_obs, c0.bad_cmd + (uint64_t)bad_cmd,
                        c0.oversized + (uint64_t)oversized, c0.refused + (uint64_t)refused};
    int64_t until = vlad_now_ns() + 5 * VLAD_NS_PER_S;
    Vlad__Status *s1;
    for (;;) { /* the robot keeps publishing meanwhile */
        pump(200);
        s1 = status_now();
        if (get_counters_ok(s1) || vlad_now_ns() > until)
            break;
        vlad__status__free_unpacked(s1, NULL);
    }
    printf("# 6. ZeroMQ garbage: bad_observations +%llu (sent %d), bad_commands +%llu (sent %d), "
           "oversized_frames +%llu (sent %d), subscriptions_refused +%llu (sent %d)\n",
           (unsigned long long)(s1->bad_observations - c0.bad_obs), bad_obs,
           (unsigned long long)(s1->bad_commands - c0.bad_cmd), bad_cmd,
           (unsigned long long)(s1->oversized_frames - c0.oversized), oversized,
           (unsigned long long)(s1->subscriptions_refused - c0.refused), refused);
    counters c1 = {s1->bad_observations, s1->bad_commands, s1->oversized_frames,
                   s1->subscriptions_refused};
    int mode1 = s1->mode;
    vlad__status__free_unpacked(s1, NULL);
    assert_int_equal(c1.bad_obs, want_c.bad_obs);
    assert_int_equal(c1.bad_cmd, want_c.bad_cmd);
    assert_int_equal(c1.oversized, want_c.oversized);
    assert_int_equal(c1.refused, want_c.refused);
    assert_int_equal(mode1, VLAD__MODE__MODE_RUNNING);

    /* raw bytes over TCP to every port (not ZMTP: each connection is dropped by libzmq, or its
     * junk parsed as frames and counted), then 200 connections held open, idle */
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < 10; i++) {
            int s = tcp_connect(ports[p]);
            uint8_t junk[2048];
            fill_random(junk, sizeof junk);
            ssize_t w = write(s, junk, sizeof junk);
            (void)w;
            close(s);
        }
    for (int i = 0; i < N_IDLE; i++) {
        assert_true(n_fds < (int)(sizeof fds / sizeof fds[0]));
        fds[n_fds++] = tcp_connect(ports[i % 3]);
    }
    int64_t a0 = vlad_now_ns();
    pump(3000);
    int64_t a1 = vlad_now_ns();
    double abuse_rate = rate_between(a0, a1);
    int64_t q0 = vlad_now_ns();
    Vlad__Status *s2 = status_try(3000); /* with the 200 idle connections still open */
    double reply_ms = (double)(vlad_now_ns() - q0) / 1e6;
    if (!s2)
        fail_msg("no status reply with %d idle TCP connections open", N_IDLE);
    printf("# 6. baseline %.1f Actions/s; after raw TCP garbage on 3 ports and with %d idle TCP "
           "connections open: %.1f Actions/s, status in %.1f ms (mode %d, bad %llu, overruns "
           "%llu)\n",
           base_rate, N_IDLE, abuse_rate, reply_ms, s2->mode, (unsigned long long)s2->bad_messages,
           (unsigned long long)s2->overruns);
    int mode2 = s2->mode;
    bool counts_kept = s2->bad_observations >= c1.bad_obs && s2->bad_commands >= c1.bad_cmd;
    vlad__status__free_unpacked(s2, NULL);
    assert_int_equal(mode2, VLAD__MODE__MODE_RUNNING);
    assert_true(counts_kept);
    if (!(abuse_rate >= RATE_LO * base_rate && abuse_rate <= RATE_HI * base_rate))
        fail_msg("action rate %.1f/s with garbage and idle connections, %.1f/s before", abuse_rate,
                 base_rate);
    hook = NULL;
    close_raw();
    rb.pub = NULL;
    daemon_alive("after the garbage");
    stop_daemon();
    passed = true;
}

/* ---- 7. bad model files ------------------------------------------------------------- */

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* `vlad --profile P --set policy.model=PATH` must exit non-zero within 20 s (it takes
 * milliseconds; 20 s is for a loaded sanitizer build), its output naming `reason`. */
static void refuses(const char *what, const char *path, const char *reason, const char *reason2) {
    char set[PATH_MAX + 32], logp[200];
    snprintf(set, sizeof set, "policy.model=%s", path);
    snprintf(logp, sizeof logp, "%s/%s.log", dir, what);
    const char *args[] = {"--set", set, NULL};
    int64_t t0 = vlad_now_ns();
    daemon_pid = vh_start("vlad", prof_path, logp, args);
    int rc = vlad_proc_wait(daemon_pid, 20000);
    double ms = (double)(vlad_now_ns() - t0) / 1e6;
    if (rc < 0) {
        vlad_proc_kill(daemon_pid);
        daemon_pid = -1;
        vh_print_file(logp, 200);
        fail_msg("%s model: vlad still running after 20 s (it accepted the file)", what);
    }
    daemon_pid = -1;
    char *out = vh_slurp(logp, NULL);
    assert_non_null(out);
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
    printf("# 7. %s model: exit %d in %.0f ms: %s\n", what, rc, ms, out);
    bool named = strstr(out, path) && (strstr(out, reason) || (reason2 && strstr(out, reason2)));
    free(out);
    if (rc == 0 || rc == 127) {
        vh_print_file(logp, 200);
        fail_msg("%s model: vlad exited with %d", what, rc);
    }
    if (!named) {
        vh_print_file(logp, 200);
        fail_msg("%s model: the message does not name the file and '%s'", what, reason);
    }
}

static void test_bad_models(void **st) {
    (void)st;
#ifndef VLAD_FAULTS_ENGINE
    printf("# 7. vlad is built without the inference engine: no model files to refuse\n");
    skip();
#endif
    passed = false;
    ntl = 0;
    memset(&ck, 0, sizeof ck);
    make_dir();
    char good[PATH_MAX + 64], pol[PATH_MAX + 128];
    snprintf(good, sizeof good, "%s/models/vlad-default.safetensors", src_dir);
    snprintf(pol, sizeof pol, "{model: %s}", good);
    write_profile(false, false, pol);
    /* the intact model passes the same check (so what follows is about the damage) */
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "%s --check --profile %s > %s/check.log 2>&1", vlad_proc_bin("vlad"),
             prof_path, dir);
    int rc = system(cmd);
    if (rc != 0) {
        char p[200];
        snprintf(p, sizeof p, "%s/check.log", dir);
        vh_print_file(p, 200);
        fail_msg("vlad --check refuses the intact default model");
    }
    size_t n;
    uint8_t *m = (uint8_t *)vh_slurp(good, &n);
    assert_non_null(m);
    assert_true(n > 1024);
    char path[3][200];
    snprintf(path[0], sizeof path[0], "%s/truncated.safetensors", dir);
    snprintf(path[1], sizeof path[1], "%s/bad-header.safetensors", dir);
    snprintf(path[2], sizeof path[2], "%s/nan-weight.safetensors", dir);
    /* truncated to half */
    write_bytes(path[0], m, n / 2);
    /* the header: 8 bytes of length, then JSON; overwrite its first 16 JSON bytes */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | m[i];
    assert_true(hlen > 16 && 8 + hlen < n);
    uint8_t saved[16];
    memcpy(saved, m + 8, 16);
    memset(m + 8, 0xff, 16);
    write_bytes(path[1], m, n);
    memcpy(m + 8, saved, 16);
    /* one float of a weight matrix set to NaN: the F32 2-D tensor with the largest offset */
    char *hdr = malloc(hlen + 1);
    assert_non_null(hdr);
    memcpy(hdr, m + 8, hlen);
    hdr[hlen] = 0;
    cJSON *root = cJSON_Parse(hdr);
    free(hdr);
    assert_non_null(root);
    const cJSON *t;
    char name[256] = "";
    double begin = -1, numel = 0;
    cJSON_ArrayForEach(t, root) {
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || !cJSON_IsArray(sh) ||
            cJSON_GetArraySize(sh) != 2 || !cJSON_IsArray(off))
            continue;
        double b = cJSON_GetArrayItem(off, 0)->valuedouble;
        if (b > begin) {
            begin = b;
            numel = cJSON_GetArrayItem(sh, 0)->valuedouble * cJSON_GetArrayItem(sh, 1)->valuedouble;
            snprintf(name, sizeof name, "%s", t->string);
        }
    }
    cJSON_Delete(root);
    assert_true(begin >= 0 && numel >= 2);
    size_t at = 8 + (size_t)hlen + (size_t)begin + 4 * (size_t)(numel / 2);
    assert_true(at + 4 <= n);
    float nanf_ = NAN;
    memcpy(m + at, &nanf_, 4);
    write_bytes(path[2], m, n);
    free(m);
    refuses("truncated", path[0], "outside the file", "truncated");
    refuses("corrupted-header", path[1], "header", NULL);
    char quoted[300];
    snprintf(quoted, sizeof quoted, "'%s'", name);
    refuses("NaN-weight", path[2], quoted, NULL);
    snprintf(cmd, sizeof cmd, "grep -q NaN %s/NaN-weight.log", dir);
    assert_int_equal(system(cmd), 0);
    passed = true;
}

static int teardown(void **st) {
    (void)st;
    vh_kill(&sim_pid);
    vh_kill(&daemon_pid);
    hook = NULL;
    known_pos = NULL;
    vlad_client_free(rb.cli);
    rb.cli = NULL;
    rb.pub = NULL;
    close_raw();
    vlad_client_free(sub);
    sub = NULL;
    vh_traj_free(&traj);
    return vh_finish_dir(dir, passed, daemon_log);
}

/* test_faults [PATTERN]: only the tests whose name matches PATTERN (cmocka's filter). */
int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* raw TCP writes to connections the daemon dropped */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sim_killed, teardown),
        cmocka_unit_test_teardown(test_daemon_killed, teardown),
        cmocka_unit_test_teardown(test_sim_stopped, teardown),
        cmocka_unit_test_teardown(test_slow_subscribers, teardown),
        cmocka_unit_test_teardown(test_obs_sequence, teardown),
        cmocka_unit_test_teardown(test_garbage, teardown),
        cmocka_unit_test_teardown(test_bad_models, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
