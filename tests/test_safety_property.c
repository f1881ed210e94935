/* The safety contract of daemon/safety.h as a property, checked on EVERY message that leaves
 * a real `vlad` process over a long seeded run.
 *
 *   test_safety_property CLOCK MODE [SEED [TICKS]]      CLOCK wall|lockstep, MODE sync|naive|vlash
 *
 * This program is at once a scripted robot, an operator and the checker. The daemon runs
 * the adversarial synthetic policy (policy.synthetic_faults: NaN, infinite, out-of-limit and
 * jumping chunks, late chunks, failed inferences). The robot tracks the daemon's targets,
 * and at random: stalls (watchdog), publishes out-of-limit, slightly-out-of-limit (within
 * the margin) and absurd (tick >= 2^53, negative stamp) observations, restarts (its tick
 * goes back and it reappears elsewhere). The operator sends random e-stops (with reasons
 * too long or not UTF-8), releases, resets, instructions and status requests, sometimes
 * while a lockstep tick waits for an inference; and kills the daemon (SIGKILL) while
 * e-stopped and starts it again. The start order alternates with the seed: robot first, or
 * daemon first.
 *
 * Checked on every Action (S1-S4, S6):
 *   finite and inside the limits; within step of the previous Action of the same daemon
 *   run unless anchored; an anchored target within step of the (clamped) position of an
 *   observation the daemon may have received since the last event that allows an anchor
 *   (start; robot restart; reset, from the first Action of a tick after its reply's: with
 *   from_robot_tick one of at least that tick, with 0 also one published before the reset
 *   that was still on its way), never an out-of-limit one; no anchor while e-stopped
 *   except the first Action of a daemon run; after an e-stop is acknowledged (reply tick τ)
 *   every Action of tick > τ is ESTOP until a release is acknowledged, across daemon
 *   restarts; the e-stop hold never moves (the first ESTOP target equals the previous
 *   target; all ESTOP targets of one latch are equal).
 * Checked on every ActionChunk (S5): values and conditioned state finite, inside limits,
 *   each row within step of the row before, row 0 within step of the target the daemon had
 *   pending at start_tick - 1 when it installed the chunk, on the tick of the next Action
 *   (mirrored from the chunks and Actions seen, in the daemon's order; the mirror is cleared
 *   by ESTOP, RESET, ROBOT_RESTART as the daemon's queue is; an action queued for a tick an
 *   overrun skipped is not pending).
 * And: the client dropped no message as invalid; the daemon counted the faults it met. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "harness.h"
#include "proc.h"
#include "safety.h"

#define NJ 3
#define HZ_WALL 200
#define EPS 1e-9

static const char *g_clock = "wall", *g_mode = "vlash";
static uint64_t g_seed = 1;
static int g_ticks = 1500;

/* ---- randomness ---- */
static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static bool chance(double p) { return unif() < p; }

/* ---- the world ---- */
static char dir[64], profile_path[128], log_path[128];
static vlad_profile prof;
static double step_j[NJ];
static pid_t daemon_pid = -1;
static vlad_client *cli;
static bool lockstep;
/* the robot's tick, and its timelines: timeline k starts at tl_first[k] (0: the first; k+1
 * after its k+1-th restart). A restart goes back below the timeline's first tick by more
 * than a run's length, so timelines never share a tick and an Action's robot_tick says which
 * one it belongs to (timeline_of). */
#define MAX_TL 256
static int64_t robot_tick, tl_first[MAX_TL];
static int tl_cur;
#define TIMELINE_GAP ((int64_t)g_ticks * 2 + 100)

/* the timeline robot tick t belongs to, or -1 */
static int timeline_of(int64_t t) {
    for (int k = 0; k <= tl_cur; k++)
        if (t >= tl_first[k] && (k == 0 || t < tl_first[k - 1]))
            return k;
    return -1;
}

/* ---- checker state ---- */
#define MAX_VALID 4096
static struct {
    /* the current daemon run */
    int run;              /* daemon runs started */
    bool started_seen;    /* STARTED of this run was received before its first Action */
    bool have_prev;
    double prev[NJ];
    int64_t prev_tick;
    bool first_of_run;    /* no Action of this run seen yet */
    /* anchors: the valid observations an anchor may use: clamped position, robot tick,
     * timeline (see keep_after_reset and keep_recent_tl) */
    int n_valid;
    struct valid_obs { double pos[NJ]; int64_t tick; int tl; } valid[MAX_VALID];
    /* what this daemon run is known to have received: the newest timeline an Action names,
     * and in the robot's current timeline the newest tick (io received that observation, and
     * every earlier one, before it published that Action; -1: none) */
    int rx_tl;
    int64_t rx_tick;
    /* a reset acknowledged at daemon tick prune_tau: Actions of that tick may still carry an
     * anchor made before the daemon acted on it, so its prune waits for a later tick */
    bool prune_pending;
    int64_t prune_tau, prune_from, prune_rx;
    int prune_tl;
    int64_t reset_mark;   /* the robot's next tick when the last from = 0 reset was sent */
    /* e-stop */
    bool estop_acked;     /* an e-stop reply arrived and no release reply since */
    int64_t estop_tick;   /* the e-stop reply's tick (this run), or -1 after a restart */
    bool hold_set;
    double hold[NJ];
    int estop_latch_id, hold_latch_id;
    /* chunk mirror: the daemon's queue as its messages tell it */
    bool mirror_valid;
    int64_t m_start, m_end; /* ticks covered */
    double m_vals[512][NJ];
    /* chunks whose row 0 waits for the next Action: its tick is the tick the chunk was
     * installed on, and only queued actions from that tick on were still pending */
    int n_pend;
    struct {
        uint64_t id;
        int64_t start;
        double row0[NJ], prev[NJ], q[NJ];
        bool have_q;   /* the mirror queued an action at tick tq, the newest before start */
        int64_t tq;
    } pend[16];
    /* counts */
    long prior_anchors;
    long actions, anchors, estop_actions, chunks, clamped_chunks, policy_actions, violations;
    long restarts_daemon, restarts_robot, estops, releases, resets;
} ck;

/* what the checker saw last (messages, publishes, commands), printed with the first
 * violation: the context a timing-dependent failure needs */
#define TRACE_N 48
static char trace_ring[TRACE_N][160];
static long trace_n;
static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace_ring[trace_n++ % TRACE_N], sizeof trace_ring[0], fmt, ap);
    va_end(ap);
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
    if (ck.violations == 0) {
        fprintf(stderr, "# the checker's last %d records, oldest first:\n", TRACE_N);
        for (long i = trace_n > TRACE_N ? trace_n - TRACE_N : 0; i < trace_n; i++)
            fprintf(stderr, "#   %s\n", trace_ring[i % TRACE_N]);
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION (%s %s seed %llu, run %d): ", g_clock, g_mode,
            (unsigned long long)g_seed, ck.run);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ck.violations++;
}

static bool in_limits(int j, double v) {
    return isfinite(v) && v >= prof.joints[j].min && v <= prof.joints[j].max;
}

static void allow_anchor_reset(void) { ck.n_valid = 0; }

/* keep the valid observations for which keep(v) holds */
static void filter_valid(bool (*keep)(const struct valid_obs *)) {
    int k = 0;
    for (int i = 0; i < ck.n_valid; i++)
        if (keep(&ck.valid[i]))
            ck.valid[k++] = ck.valid[i];
    ck.n_valid = k;
}

/* A reset's anchor is the first observation io receives after it with robot tick >= from
 * (safety.h S4, Reset.from_robot_tick). Observations travel on another socket than the
 * reset, so one published before the reset may arrive after it: with from = 0 it may anchor.
 * What goes, of the timeline the reset was sent in: with from > 0 every observation of tick
 * < from; with from = 0 the ones io surely had before the reset (tick <= rx: an Action
 * received before the reset was sent names rx, and one socket delivers in order). An older
 * timeline's observation still on its way has the larger ticks and may anchor (then the
 * daemon sees the restart). */
static bool keep_after_reset(const struct valid_obs *v) {
    if (v->tl != ck.prune_tl)
        return true;
    return ck.prune_from > 0 ? v->tick >= ck.prune_from : v->tick > ck.prune_rx;
}

/* An Action that names a tick of timeline k: the daemon has seen k, and nothing older can
 * reach it after (one socket, in order). */
static bool keep_recent_tl(const struct valid_obs *v) { return v->tl >= ck.rx_tl; }

static void add_valid(const double *pos, int64_t tick) {
    if (ck.n_valid == MAX_VALID) { /* keep the newest half */
        memmove(ck.valid, ck.valid + MAX_VALID / 2, sizeof(ck.valid[0]) * (MAX_VALID / 2));
        ck.n_valid = MAX_VALID / 2;
    }
    struct valid_obs *v = &ck.valid[ck.n_valid++];
    for (int j = 0; j < NJ; j++)
        v->pos[j] = fmin(fmax(pos[j], prof.joints[j].min), prof.joints[j].max);
    v->tick = tick;
    v->tl = tl_cur;
}

static void resolve_pending(int64_t install_tick);

static void new_run_seen(void) {
    resolve_pending(ck.prev_tick + 1);
    ck.have_prev = false;
    ck.first_of_run = true;
    ck.mirror_valid = false;
    ck.hold_set = false;
}

static void check_action(const Vlad__Action *a) {
    ck.actions++;
    trace("action tick %lld robot_tick %lld src %d%s (%g %g %g)", (long long)a->tick,
          (long long)a->robot_tick, a->source, a->anchored ? " ANCHOR" : "",
          a->n_joint_targets == NJ ? a->joint_targets[0] : NAN,
          a->n_joint_targets == NJ ? a->joint_targets[1] : NAN,
          a->n_joint_targets == NJ ? a->joint_targets[2] : NAN);
    if (a->n_joint_targets != NJ) {
        violation("action with %zu targets", a->n_joint_targets);
        return;
    }
    if (ck.have_prev && a->tick < ck.prev_tick) /* a new daemon run whose STARTED we missed */
        new_run_seen();
    resolve_pending(a->tick);
    if (ck.prune_pending && a->tick > ck.prune_tau) {
        filter_valid(keep_after_reset);
        ck.prune_pending = false;
    }
    int tl = a->robot_tick >= 0 ? timeline_of(a->robot_tick) : -1;
    if (tl > ck.rx_tl) {
        ck.rx_tl = tl;
        filter_valid(keep_recent_tl);
    }
    if (tl == tl_cur && a->robot_tick > ck.rx_tick)
        ck.rx_tick = a->robot_tick;
    const double *x = a->joint_targets;
    for (int j = 0; j < NJ; j++)
        if (!in_limits(j, x[j]))
            violation("S1/S2: tick %lld joint %d target %g", (long long)a->tick, j, x[j]);
    bool estop_src = a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP;
    if (a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_HOME)
        violation("HOME published (tick %lld): a target before the robot reported", (long long)a->tick);
    if (a->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY)
        ck.policy_actions++;
    if (a->anchored) {
        ck.anchors++;
        if (estop_src && !ck.first_of_run)
            violation("S4: anchored while e-stopped at tick %lld", (long long)a->tick);
        bool ok = false, after = false;
        for (int i = ck.n_valid - 1; i >= 0; i--) {
            bool near = true;
            for (int j = 0; j < NJ; j++)
                near = near && fabs(x[j] - ck.valid[i].pos[j]) <= step_j[j] + EPS;
            ok = ok || near;
            after = after || (near && (ck.valid[i].tl != tl_cur || ck.valid[i].tick >= ck.reset_mark));
        }
        if (ok && !after)
            ck.prior_anchors++; /* only an observation sent before a from = 0 reset fits */
        if (!ok)
            violation("S4: anchored target at tick %lld (%g %g %g) is not within a step of any "
                      "valid observation it may anchor on (%d of them)",
                      (long long)a->tick, x[0], x[1], x[2], ck.n_valid);
    } else if (ck.have_prev) {
        for (int j = 0; j < NJ; j++)
            if (fabs(x[j] - ck.prev[j]) > step_j[j] + EPS)
                violation("S3: tick %lld joint %d moved %g > step %g (source %d)", (long long)a->tick,
                          j, x[j] - ck.prev[j], step_j[j], a->source);
    } else if (ck.first_of_run && ck.started_seen) {
        violation("S4: the first Action of a daemon run (tick %lld) is not anchored",
                  (long long)a->tick);
    }
    /* the e-stop always wins, and its hold never moves */
    bool must_estop = ck.estop_acked && (ck.estop_tick < 0 || a->tick > ck.estop_tick);
    if (must_estop && !estop_src)
        violation("e-stop lost: tick %lld has source %d after the e-stop acknowledged at tick %lld",
                  (long long)a->tick, a->source, (long long)ck.estop_tick);
    if (estop_src) {
        ck.estop_actions++;
        if (!ck.hold_set || ck.hold_latch_id != ck.estop_latch_id) {
            if (ck.have_prev && !a->anchored)
                for (int j = 0; j < NJ; j++)
                    if (x[j] != ck.prev[j])
                        violation("S6: the e-stop hold (tick %lld) is not the last commanded target",
                                  (long long)a->tick);
            memcpy(ck.hold, x, sizeof ck.hold);
            ck.hold_set = true;
            ck.hold_latch_id = ck.estop_latch_id;
        } else {
            for (int j = 0; j < NJ; j++)
                if (x[j] != ck.hold[j])
                    violation("S6: the e-stop hold moved at tick %lld joint %d: %g -> %g",
                              (long long)a->tick, j, ck.hold[j], x[j]);
        }
    } else {
        ck.hold_set = false;
    }
    memcpy(ck.prev, x, sizeof ck.prev);
    ck.prev_tick = a->tick;
    ck.have_prev = true;
    ck.first_of_run = false;
}

/* S5's row 0: the target the daemon had pending at start - 1 when it installed the chunk on
 * tick `install_tick` (the tick of the next Action): the newest action the mirror queued for a
 * tick in [install_tick, start - 1], else the last target. Ticks before install_tick had
 * passed (an overrun skips ticks without an Action: what was queued for them is not pending). */
static void resolve_pending(int64_t install_tick) {
    for (int k = 0; k < ck.n_pend; k++) {
        const double *ref = ck.pend[k].have_q && ck.pend[k].tq >= install_tick ? ck.pend[k].q
                                                                               : ck.pend[k].prev;
        for (int j = 0; j < NJ; j++)
            if (fabs(ck.pend[k].row0[j] - ref[j]) > step_j[j] + 1e-6)
                violation("S5: chunk %llu (start %lld, installed at tick %lld) row 0 joint %d steps "
                          "%g > %g from the pending target",
                          (unsigned long long)ck.pend[k].id, (long long)ck.pend[k].start,
                          (long long)install_tick, j, ck.pend[k].row0[j] - ref[j], step_j[j]);
    }
    ck.n_pend = 0;
}

/* Record chunk c's row 0 for resolve_pending, with what the mirror knows now (before c
 * supersedes it): the last target, and the newest queued action for a tick in
 * (prev_tick, start - 1]. */
static void pend_row0(const Vlad__ActionChunk *c) {
    if (!ck.have_prev || ck.n_pend == (int)(sizeof ck.pend / sizeof ck.pend[0]))
        return;
    int k = ck.n_pend++;
    ck.pend[k].id = c->chunk_id;
    ck.pend[k].start = c->start_tick;
    for (int j = 0; j < NJ; j++)
        ck.pend[k].row0[j] = c->values[j];
    memcpy(ck.pend[k].prev, ck.prev, sizeof ck.prev);
    ck.pend[k].have_q = false;
    for (int64_t t = c->start_tick - 1; t > ck.prev_tick && t >= ck.m_start; t--)
        if (t < ck.m_end) {
            memcpy(ck.pend[k].q, ck.m_vals[t % 512], sizeof(double) * NJ);
            ck.pend[k].have_q = true;
            ck.pend[k].tq = t;
            break;
        }
}

static void check_chunk(const Vlad__ActionChunk *c) {
    ck.chunks++;
    ck.clamped_chunks += c->clamped;
    if (c->dim != NJ || c->n_values != (size_t)c->horizon * NJ || c->n_conditioned_state != NJ) {
        violation("chunk %llu shape", (unsigned long long)c->chunk_id);
        return;
    }
    for (int j = 0; j < NJ; j++)
        if (!isfinite(c->conditioned_state[j]))
            violation("chunk %llu: conditioned_state not finite", (unsigned long long)c->chunk_id);
    if (ck.mirror_valid && c->horizon > 0)
        pend_row0(c);
    for (uint32_t i = 0; i < c->horizon; i++)
        for (int j = 0; j < NJ; j++) {
            double v = c->values[i * NJ + j];
            if (!in_limits(j, v))
                violation("S5: chunk %llu row %u joint %d: %g", (unsigned long long)c->chunk_id, i, j, v);
            if (i && fabs(v - c->values[(i - 1) * NJ + j]) > step_j[j] + 1e-6)
                violation("S5: chunk %llu (start %lld) row %u joint %d steps %g > %g from the row before",
                          (unsigned long long)c->chunk_id, (long long)c->start_tick, i, j,
                          v - c->values[(i - 1) * NJ + j], step_j[j]);
        }
    /* the mirror: this chunk supersedes from its start */
    if (!ck.mirror_valid || c->start_tick >= ck.m_end || c->start_tick < ck.m_start)
        ck.m_start = c->start_tick;
    ck.m_end = c->start_tick + c->horizon;
    for (uint32_t i = 0; i < c->horizon && i < 512; i++)
        for (int j = 0; j < NJ; j++)
            ck.m_vals[(c->start_tick + i) % 512][j] = c->values[i * NJ + j];
    if (c->horizon > 256)
        violation("chunk %llu: horizon %u", (unsigned long long)c->chunk_id, c->horizon);
}

static void check_event(const Vlad__Event *e) {
    trace("event %d tick %lld: %s", e->kind, (long long)e->tick, e->message ? e->message : "");
    switch (e->kind) {
    case VLAD__EVENT__KIND__STARTED:
        new_run_seen();
        ck.started_seen = true;
        ck.mirror_valid = true; /* the queue is empty at start */
        ck.m_start = ck.m_end = 0;
        break;
    case VLAD__EVENT__KIND__ESTOP:
    case VLAD__EVENT__KIND__RESET:
    case VLAD__EVENT__KIND__ROBOT_RESTART:
        ck.mirror_valid = true; /* the daemon's queue was discarded */
        ck.m_start = ck.m_end = 0;
        break;
    default:
        break;
    }
}

#define NEWEST (-2) /* pump: keep the newest Action of the whole wait */

/* receive and check everything that arrives within timeout_ms; returns the Action answering
 * robot tick `want` (lockstep) as soon as it comes, or with want NEWEST the newest Action of
 * the wait, else NULL (caller frees) */
static Vlad__Action *pump(int timeout_ms, int64_t want) {
    int64_t until = vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    Vlad__Action *answer = NULL;
    for (;;) {
        int64_t left = until - vlad_now_ns();
        vlad_msg m;
        if (vlad_client_recv(cli, left > 0 ? (int)(left / VLAD_NS_PER_MS) : 0, &m, NULL) != VLAD_OK)
            return answer;
        if (m.kind == VLAD_MSG_ACTION) {
            check_action(m.u.action);
            if (want == NEWEST || (want >= 0 && m.u.action->robot_tick == want && !answer)) {
                if (answer)
                    vlad__action__free_unpacked(answer, NULL);
                answer = m.u.action;
                m.u.action = NULL;
                m.kind = VLAD_MSG_NONE;
            }
        } else if (m.kind == VLAD_MSG_CHUNK) {
            check_chunk(m.u.chunk);
        } else if (m.kind == VLAD_MSG_EVENT) {
            check_event(m.u.event);
        }
        vlad_msg_clear(&m);
        if ((answer && want >= 0) || vlad_now_ns() >= until)
            return answer;
    }
}

/* ---- the daemon ---- */
static void start_daemon(void) {
    daemon_pid = vh_start("vlad", profile_path, log_path, NULL);
    ck.run++;
    ck.started_seen = false;
    ck.rx_tick = -1; /* this run has received nothing yet */
    ck.rx_tl = -1;
    ck.prune_pending = false; /* its ticks start again */
    new_run_seen();
}

/* a command (NULL: a StatusRequest, vlad_client_status) and its reply; returns the reply's
 * tick, or -1 if the daemon did not answer */
static int64_t command(Vlad__Command *c, bool must) {
    Vlad__Reply *r = NULL;
    vlad_err err;
    int64_t t = -1;
    for (int attempt = 0; attempt < 10 && t < 0; attempt++) {
        int rc = c ? vlad_client_command(cli, c, 1000, &r, &err) : vlad_client_status(cli, 1000, &r, &err);
        if (rc == VLAD_OK) {
            if (c && !r->ok && c->body_case == VLAD__COMMAND__BODY_ESTOP)
                violation("an e-stop was refused: %s", r->error);
            t = r->status ? r->status->tick : 0;
            vlad__reply__free_unpacked(r, NULL);
        } else if (!must) {
            break;
        }
        if (c)
            c->request_id = 0;
    }
    if (must && t < 0)
        fail_msg("the daemon did not answer a command");
    return t;
}

static void wait_up(void) {
    command(NULL, true);
    pump(300, -1); /* let the subscription reconnect */
}

static const char *const reasons[] = {"operator", "", NULL, NULL};

static void send_estop(void) {
    char big[400];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char bad[8] = {'s', 't', 'o', 'p', (char)0xC3, (char)0x28, 0};
    int k = (int)(rnd() % 4);
    vh_cmd b;
    int64_t t = command(vh_command(&b, VLAD__COMMAND__BODY_ESTOP,
                                   k == 2 ? big : k == 3 ? bad : reasons[k]),
                        true);
    trace("e-stop, reply tick %lld", (long long)t);
    if (!ck.estop_acked) {
        ck.estop_acked = true;
        ck.estop_tick = t;
        ck.estop_latch_id++;
    } /* a second e-stop while latched: the earlier acknowledgement stands */
    ck.estops++;
}

static void send_simple(int body) {
    vh_cmd b;
    Vlad__Command *c = body == VLAD__COMMAND__BODY_STATUS ? NULL : vh_command(&b, body, "touch the red ball");
    /* a reset names the robot's next tick (as vlad-sim does) or any (0), half the time each */
    int64_t from = body == VLAD__COMMAND__BODY_RESET && chance(0.5) ? robot_tick : 0;
    if (body == VLAD__COMMAND__BODY_RESET) {
        b.reset.from_robot_tick = from;
        if (from == 0)
            ck.reset_mark = robot_tick;
    }
    trace("command %d (from %lld)", body, (long long)from);
    int64_t t = command(c, true);
    trace("  reply tick %lld", (long long)t);
    if (body == VLAD__COMMAND__BODY_RELEASE_ESTOP) {
        ck.estop_acked = false;
        ck.releases++;
    }
    if (body == VLAD__COMMAND__BODY_RESET) {
        /* the next anchor is an observation io receives after the reset: from the first
         * Action of a tick after the reply's (a newer reset's prune supersedes this one) */
        ck.prune_pending = true;
        ck.prune_tau = t;
        ck.prune_from = from;
        ck.prune_rx = ck.rx_tick;
        ck.prune_tl = tl_cur;
        ck.resets++;
    }
}

/* ---- the robot ---- */
static double pos[NJ];

static void random_pos(double *p) {
    for (int j = 0; j < NJ; j++)
        p[j] = prof.joints[j].min + (0.1 + 0.8 * unif()) * (prof.joints[j].max - prof.joints[j].min);
}

/* publish one observation; kind 0 valid, 1 within the margin (valid), 2 beyond the margin,
 * 3 absurd tick, 4 negative stamp, 5 NaN. Returns whether the daemon should accept it. */
static bool publish(int kind) {
    double q[NJ];
    memcpy(q, pos, sizeof q);
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.tick = robot_tick;
    o.stamp_ns = vlad_now_ns();
    int j = (int)(rnd() % NJ);
    double m = prof.safety.obs_limit_margin;
    if (kind == 1)
        q[j] = prof.joints[j].max + 0.5 * m;
    if (kind == 2)
        q[j] = chance(0.5) ? prof.joints[j].max + 3 * m + unif() * 100 : prof.joints[j].min - 3 * m;
    if (kind == 3)
        o.tick = (INT64_C(1) << 53) + (int64_t)(rnd() >> 2);
    if (kind == 4)
        o.stamp_ns = -1;
    if (kind == 5)
        q[j] = NAN;
    o.n_joint_pos = NJ;
    o.joint_pos = q;
    vlad_err err;
    assert_int_equal(vlad_client_publish_observation(cli, &o, &err), 0);
    bool ok = kind <= 1;
    trace("publish tick %lld kind %d (%g %g %g)", (long long)o.tick, kind, q[0], q[1], q[2]);
    if (ok)
        add_valid(q, robot_tick);
    return ok;
}

static void track(const Vlad__Action *a) {
    for (int j = 0; j < NJ; j++)
        pos[j] += 0.7 * (a->joint_targets[j] - pos[j]);
}

static void robot_restart(void) {
    if (tl_first[tl_cur] < TIMELINE_GAP + 50 || tl_cur + 1 == MAX_TL)
        return; /* no tick left below this timeline */
    random_pos(pos);
    robot_tick = tl_first[tl_cur + 1] = tl_first[tl_cur] - TIMELINE_GAP - (int64_t)(rnd() % 50);
    tl_cur++;
    ck.rx_tick = -1;
    ck.reset_mark = robot_tick;
    trace("robot restart at tick %lld (%g %g %g)", (long long)robot_tick, pos[0], pos[1], pos[2]);
    /* the older timelines' observations stay usable until an Action shows the daemon saw
     * this one (keep_recent_tl): one may be on its way, or anchor an Action on its way */
    ck.restarts_robot++;
}

static void kill_and_restart_daemon(void) {
    trace("kill the daemon");
    kill(daemon_pid, SIGKILL);
    vlad_proc_wait(daemon_pid, 5000);
    pump(50, -1);
    start_daemon();
    ck.estop_tick = -1; /* the new run must be e-stopped from its first Action */
    allow_anchor_reset();
    wait_up();
    ck.restarts_daemon++;
}

static void operator_turn(bool mid_tick) {
    double r = unif();
    if (r < 0.012)
        send_estop();
    else if (r < 0.030 && ck.estop_acked)
        send_simple(VLAD__COMMAND__BODY_RELEASE_ESTOP);
    else if (r < 0.036)
        send_simple(VLAD__COMMAND__BODY_RESET);
    else if (r < 0.040)
        send_simple(VLAD__COMMAND__BODY_SET_INSTRUCTION);
    else if (r < 0.045)
        send_simple(VLAD__COMMAND__BODY_STATUS);
    else if (r < 0.050 && ck.estop_acked && !mid_tick && ck.restarts_daemon < 3)
        kill_and_restart_daemon();
}

static void run(void) {
    rng_state = g_seed * 0x2545F4914F6CDD1DULL + (uint64_t)(lockstep ? 7 : 3);
    random_pos(pos);
    robot_tick = tl_first[0] = TIMELINE_GAP * 64 + (int64_t)(rnd() % 1000000);
    tl_cur = 0;
    bool robot_first = g_seed % 2 == 0;
    if (robot_first) { /* the robot is up and reporting before the daemon starts */
        for (int i = 0; i < 40; i++) {
            publish(0);
            robot_tick++;
            vlad_sleep_until_ns(vlad_now_ns() + 5 * VLAD_NS_PER_MS);
        }
        start_daemon();
        if (lockstep)
            wait_up();
    } else {
        start_daemon();
        wait_up();
    }
    int stall = 0;
    for (int k = 0; k < g_ticks; k++) {
        operator_turn(false);
        if (stall > 0) { /* silent robot: the watchdog trips */
            stall--;
            pump(lockstep ? 20 : 5, -1);
            continue;
        }
        double r = unif();
        if (r < 0.004)
            robot_restart();
        int kind = 0;
        double b = unif();
        if (b < 0.03)
            kind = 1 + (int)(rnd() % 5);
        if (chance(0.004)) {
            stall = 5 + (int)(rnd() % 30);
            trace("stall for %d ticks", stall);
        }
        bool ok = publish(kind);
        if (!lockstep) {
            Vlad__Action *a = pump(1000 / HZ_WALL, NEWEST); /* one robot tick */
            if (a) {
                track(a);
                vlad__action__free_unpacked(a, NULL);
            }
        } else if (ok) {
            if (chance(0.01)) /* while the daemon works on this tick */
                operator_turn(true);
            Vlad__Action *a = NULL;
            for (int attempt = 0; attempt < 40 && !a; attempt++) {
                a = pump(100, robot_tick);
                if (!a)
                    publish(kind); /* resend */
            }
            if (!a)
                fail_msg("lockstep: no answer for robot tick %lld", (long long)robot_tick);
            track(a);
            vlad__action__free_unpacked(a, NULL);
        }
        robot_tick++;
    }
    pump(200, -1);
}

static int setup(void **state) {
    (void)state;
    vh_tmpdir(dir, sizeof dir, "prop");
    snprintf(profile_path, sizeof profile_path, "%s/p.yaml", dir);
    snprintf(log_path, sizeof log_path, "%s/vlad.log", dir);
    lockstep = !strcmp(g_clock, "lockstep");
    vh_write_file(profile_path,
                  "robot: prop\ncontrol_hz: %d\nclock: %s\nlockstep_timeout_ms: 300\n"
                  "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 2}\n"
                  "  - {name: b, min: 0, max: 2.5, max_velocity: 10, home: 1}\n"
                  "  - {name: c, min: -0.3, max: 0.2, max_velocity: 1}\n"
                  "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
                  "  control: ipc://%s/ctl\n"
                  "policy: {synthetic: true, synthetic_faults: 0.3, seed: %llu, min_latency_ms: 15}\n"
                  "async: {mode: %s, execution_horizon: 8, trigger_threshold: 2, delay_margin: 1}\n"
                  "safety: {max_delta_per_tick: 0.02, watchdog_ms: 60, obs_limit_margin: 0.05, "
                  "estop_file: %s/estop}\nlogging: {level: warn}\n",
                  lockstep ? 50 : HZ_WALL, g_clock, dir, dir, dir, (unsigned long long)g_seed,
                  g_mode, dir);
    vh_load_profile(&prof, profile_path);
    vlad_safety_steps(&prof, step_j);
    vlad_err err;
    cli = vlad_client_new(&prof, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_EVENTS |
                                     VLAD_CLIENT_CONTROL | VLAD_CLIENT_PUBLISH,
                          &err);
    assert_non_null(cli);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vlad_client_free(cli);
    vh_stop(&daemon_pid, 5000);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "echo '# the daemon log (warnings):'; tail -n 15 %s", log_path);
    if (system(cmd) != 0)
        return 0;
    vh_rmdir(dir);
    return 0;
}

static void test_contract_holds(void **state) {
    (void)state;
    run();
    resolve_pending(ck.prev_tick + 1); /* chunks after the last Action */
    /* status: the daemon saw the faults it was given */
    Vlad__Status *st = vh_status(cli, 2000);
    assert_non_null(st);
    printf("# %s %s seed %llu: %ld actions (%ld policy, %ld anchored, %ld e-stop), %ld chunks "
           "(%ld clamped); %ld anchors on an observation sent before a reset; %ld e-stops, %ld releases, %ld resets, %ld robot restarts, %ld daemon "
           "restarts; last run: %llu obs out of limits, %llu absurd, %llu bad, %llu refused chunks, "
           "%llu inference errors, %llu watchdog trips; %ld violations\n",
           g_clock, g_mode, (unsigned long long)g_seed, ck.actions, ck.policy_actions, ck.anchors,
           ck.estop_actions, ck.chunks, ck.clamped_chunks, ck.prior_anchors, ck.estops, ck.releases, ck.resets,
           ck.restarts_robot, ck.restarts_daemon, (unsigned long long)st->obs_out_of_limits,
           (unsigned long long)st->obs_absurd, (unsigned long long)st->bad_observations,
           (unsigned long long)st->chunks_refused, (unsigned long long)st->inference_errors,
           (unsigned long long)st->watchdog_trips, ck.violations);
    vlad__status__free_unpacked(st, NULL);
    assert_int_equal(vlad_client_bad_messages(cli), 0); /* nothing invalid left the daemon */
    assert_int_equal(ck.violations, 0);
    /* the run exercised what it claims to */
    assert_true(ck.policy_actions > 100);
    assert_true(ck.chunks > 20 && ck.clamped_chunks > 0);
    assert_true(ck.estops > 0 && ck.resets > 0 && ck.anchors > 1);
}

int main(int argc, char **argv) {
    if (argc > 1)
        g_clock = argv[1];
    if (argc > 2)
        g_mode = argv[2];
    if (argc > 3)
        g_seed = strtoull(argv[3], NULL, 10);
    if (argc > 4)
        g_ticks = atoi(argv[4]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_contract_holds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
