/* test_wall_clock — the real `vlad` (built-in synthetic policy, clock: wall) against the real
 * `vlad-sim` in real time, for each scheduler (sync, naive, vlash), and a robot restart.
 *
 * The daemon's tick is its own timeline in both clock modes; a robot's tick is only kept for
 * reports (Action.robot_tick, *.obs_robot_tick) and to detect a restart. So the daemon is
 * started first and left alone for 3 s (its tick runs to ~150 while no robot reports), then
 * vlad-sim starts with `--start-tick 1234567`: the two timelines are far apart, and anything
 * that mixes them (a chunk placed at the robot's tick, an action filtered by the wrong tick)
 * shows up as stalls or as ticks near 1234567 where the daemon's belong. Checked, per run:
 *   - vlad-sim executed policy actions in every episode (its JSON: stall ticks well below the
 *     episode's ticks, with --expect-policy so HOLD counts as a stall);
 *   - no Action before the first observation (none during the 3 s wait; the first one is an
 *     anchor at a position the simulator measured);
 *   - every ActionChunk's start_tick is on the daemon's timeline, next to the Actions' ticks;
 *   - after each RESET (vlad-sim sends one at every episode start, after resetting the world to
 *     the profile's home pose): no policy action until an anchor, which is taken at an
 *     observation of the new episode and holds exactly the position the simulator measured
 *     there (home, up to the arm's sag under gravity while it waits); the first chunk after it
 *     is conditioned on that post-reset pose (not the previous episode's final pose), and every
 *     policy action of the episode comes from a chunk conditioned on an observation of it;
 *   - the simulator never executed, on an episode's first tick, a target from before the
 *     episode's reset (its --trajectory CSV: the applied target at k = 0 is home).
 * The robot restart: vlad-sim twice against one daemon, the second run from --start-tick 0
 * after the first ended at 1234716: the daemon counts a robot restart (Status.robot_restarts,
 * Event ROBOT_RESTART) and policy actions flow in the second run too. All of it with the
 * defaults phase_lock and async.early_start on: at the end the daemon's phase is locked to
 * vlad-sim's stream and some inferences started as observations arrived. */
#include <limits.h>
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

#define START_TICK 1234567
#define EPISODES 3
#define WAIT_S 3
#define MAX_REC 40000
#define MAX_EP 8

/* ---- what the subscriber saw, in arrival order (one PUB socket: the daemon's order) ---- */

typedef struct timeline {
    int n;
    vh_rec r[MAX_REC];
} timeline;

/* one vlad-sim run: its JSON episodes and its trajectory CSV */
typedef struct sim_run {
    int64_t start_tick;
    vh_sim_json js;
    vh_traj traj;
} sim_run;

static char dir[64], prof_path[128], daemon_log[128];
static vlad_profile prof;
static pid_t daemon_pid = -1, sim_pid = -1; /* killed by the teardown if a test fails midway */
static timeline tl;
static sim_run runs[2];

static void write_profile(const char *mode) {
    /* the profile lives in the temporary folder: the model's path must be absolute */
    const char *src = vh_src_dir();
    vh_tmpdir(dir, sizeof dir, "wall");
    snprintf(prof_path, sizeof prof_path, "%s/p.yaml", dir);
    snprintf(daemon_log, sizeof daemon_log, "%s/vlad.log", dir);
    /* joints, cameras and sim.model of configs/sim-arm.yaml; the synthetic policy. vlash runs
     * with realtime: true as configs/sim-arm.yaml deploys it (SCHED_FIFO where CAP_SYS_NICE
     * allows, and then the spin to each deadline, spin_us): every check below holds for it */
    vh_write_file(prof_path,
                  "robot: sim-arm\ncontrol_hz: 50\nclock: wall\nrealtime: %s\n" VH_SIM_ARM_JOINTS
                  "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
                  "  control: ipc://%s/ctl\n"
                  "policy: {synthetic: true}\n"
                  "async: {mode: %s, execution_horizon: 10}\n"
                  "safety: {watchdog_ms: 200, max_delta_per_tick: 0.1, estop_file: %s/estop}\n"
                  "logging: {level: info}\n"
                  "sim: {model: %s/sim/models/arm4.xml, substeps: 10}\n",
                  strcmp(mode, "vlash") ? "false" : "true", dir, dir, dir, mode, dir, src);
    vh_load_profile(&prof, prof_path);
}

static void add(const vlad_msg *m) {
    if (tl.n >= MAX_REC || !vh_rec_of(&tl.r[tl.n], m))
        return;
    if (m->kind != VLAD_MSG_EVENT)
        assert_int_equal(tl.r[tl.n].n, prof.n_joints);
    tl.n++;
}

/* Receive for `ms` milliseconds. */
static void collect_for(vlad_client *c, int ms) {
    int64_t until = vlad_now_ns() + (int64_t)ms * VLAD_NS_PER_MS;
    vlad_err err;
    while (vlad_now_ns() < until) {
        vlad_msg m;
        if (vlad_client_recv(c, 10, &m, &err) == VLAD_OK) {
            add(&m);
            vlad_msg_clear(&m);
        }
    }
}

static int count_kind(int from, vlad_msg_kind k) {
    int n = 0;
    for (int i = from; i < tl.n; i++)
        n += tl.r[i].kind == k;
    return n;
}

/* ---- vlad-sim ---------------------------------------------------------------------- */

static void read_results(const char *json, const char *csv, sim_run *out) {
    vh_read_sim_json(json, &out->js);
    if (!vh_read_trajectory(csv, &prof, &out->traj))
        fail_msg("vlad-sim wrote no %s", csv);
}

/* ---- the daemon and the runs ------------------------------------------------------- */

static vlad_client *sub;  /* actions, chunks, events of the daemon under test */
static bool passed;

/* Start `vlad` for `mode` and watch it for WAIT_S seconds with no robot: no Action at all. */
static void start_daemon(const char *mode) {
    passed = false;
    write_profile(mode);
    daemon_pid = vh_start("vlad", prof_path, daemon_log, NULL);
    vlad_err err;
    sub = vlad_client_new(&prof, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_EVENTS, &err);
    if (!sub)
        fail_msg("%s", err.msg);
    tl.n = 0;
    collect_for(sub, WAIT_S * 1000);
    vh_alive(&daemon_pid, "vlad", daemon_log, "during the wait");
    /* before the first observation the daemon publishes no Action (safety.h S4) */
    if (count_kind(0, VLAD_MSG_ACTION) || count_kind(0, VLAD_MSG_CHUNK))
        fail_msg("%s: %d Actions and %d chunks before any observation", mode,
                 count_kind(0, VLAD_MSG_ACTION), count_kind(0, VLAD_MSG_CHUNK));
}

/* Run vlad-sim (task reach) from robot tick `start` while collecting what the daemon
 * publishes into tl.r[*from, *to); fills *out from its JSON and trajectory. */
static void run_sim(int idx, int64_t start, int episodes, sim_run *out, int *from, int *to) {
    char json[160], csv[160], log[160], st[32], ne[16];
    snprintf(json, sizeof json, "%s/run%d.json", dir, idx);
    snprintf(csv, sizeof csv, "%s/run%d.csv", dir, idx);
    snprintf(log, sizeof log, "%s/sim%d.log", dir, idx);
    snprintf(st, sizeof st, "%lld", (long long)start);
    snprintf(ne, sizeof ne, "%d", episodes);
    const char *args[] = {"--task", "reach", "--episodes", ne, "--clock", "wall",
                          "--start-tick", st, "--expect-policy", "--json", json,
                          "--trajectory", csv, "--quiet", NULL};
    *from = tl.n;
    int64_t t0 = vlad_now_ns();
    sim_pid = vh_start("vlad-sim", prof_path, log, args);
    int rc = -1;
    while ((rc = vlad_proc_wait(sim_pid, 0)) < 0) {
        if (vlad_now_ns() - t0 > 90 * VLAD_NS_PER_S)
            fail_msg("vlad-sim did not finish in 90 s");
        collect_for(sub, 20);
    }
    sim_pid = -1;
    collect_for(sub, 300); /* what the daemon published for the last observations */
    *to = tl.n;
    if (rc != 0) {
        vh_print_file(log, 0);
        fail_msg("vlad-sim exited with %d", rc);
    }
    printf("# vlad-sim run %d (start tick %lld): %.1f s, %d messages from the daemon\n", idx,
           (long long)start, (double)(vlad_now_ns() - t0) / 1e9, *to - *from);
    out->start_tick = start;
    read_results(json, csv, out);
    assert_int_equal(out->js.n, episodes);
    assert_int_equal(out->js.ep[0].first_tick, start);
}

static bool is_policy(const vh_rec *r) { return r->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY; }

/* The arm waits at home, commanded home, while the daemon picks up the episode's first
 * observation; gravity sags it by ~1e-3 rad per tick under its position servos (shoulder
 * 0.97e-3 after one tick, 1.9e-3 after three), and in wall clock the daemon may take the
 * second or third observation of the episode (two unsynchronised 50 Hz clocks). The previous
 * episode's final pose is 0.1-0.8 rad away from home (the synthetic policy's sine), so 0.01
 * separates "conditioned on the post-reset pose" from "on the old pose" by an order of
 * magnitude either way. The exact check is against the simulator's own measurement. */
#define HOME_TOL 1e-2
/* the trajectory CSV prints 6 decimals */
#define CSV_TOL 1e-6

/* Check one vlad-sim run against what the daemon published during it. */
static void check_run(const char *what, const sim_run *s, int from, int to, bool first_run) {
    const int n = prof.n_joints;
    double home[VLAD_MAX_JOINTS];
    for (int j = 0; j < n; j++)
        home[j] = prof.joints[j].home;
    const int64_t last_robot_tick = s->js.ep[s->js.n - 1].first_tick + s->js.ep[s->js.n - 1].ticks - 1;

    /* 1. policy actions were executed in every episode. The old bug (the daemon placed chunks
     * at the robot's tick, 1234567, far in the future of its own ~150, and the simulator
     * waited for them) stalled 149 of 150 ticks; working, a stall is a tick where the
     * unsynchronised clocks delivered no new action, plus the first Δ ticks of an episode
     * (sync: ~Δ per chunk of 10): a few percent. Half the episode separates both by far. */
    for (int i = 0; i < s->js.n; i++) {
        printf("#   %s episode %d: first tick %lld, %d ticks, %d stalls\n", what, i,
               (long long)s->js.ep[i].first_tick, s->js.ep[i].ticks, s->js.ep[i].stall_ticks);
        if (!(s->js.ep[i].ticks >= 10 && 2 * s->js.ep[i].stall_ticks < s->js.ep[i].ticks))
            fail_msg("%s: episode %d stalled %d of %d ticks (policy actions not executed)", what, i,
                     s->js.ep[i].stall_ticks, s->js.ep[i].ticks);
    }

    /* 2. no Action before the first observation: the daemon's first Action is an anchor at a
     * position the simulator measured at one of its ticks */
    int first_action = -1;
    for (int i = from; i < to && first_action < 0; i++)
        if (tl.r[i].kind == VLAD_MSG_ACTION)
            first_action = i;
    if (first_action < 0)
        fail_msg("%s: no Action at all", what);
    if (first_run) {
        const vh_rec *a = &tl.r[first_action];
        if (!a->anchored || a->robot_tick < s->start_tick || a->robot_tick > last_robot_tick)
            fail_msg("%s: the first Action (tick %lld, robot tick %lld, anchored %d) is not an anchor "
                     "at an observation of the run",
                     what, (long long)a->tick, (long long)a->robot_tick, a->anchored);
    }

    /* 3. every chunk is on the daemon's timeline: next to the Actions' ticks, on the far side
     * of the robot's; its observation is one the simulator sent in this run */
    int chunks = 0;
    int64_t last_tick = -1;
    for (int i = from; i < to; i++) {
        const vh_rec *r = &tl.r[i];
        if (r->kind == VLAD_MSG_ACTION) {
            if (r->tick >= START_TICK / 2 || (last_tick >= 0 && r->tick <= last_tick))
                fail_msg("%s: Action tick %lld after %lld: not the daemon's increasing timeline",
                         what, (long long)r->tick, (long long)last_tick);
            last_tick = r->tick;
            if (is_policy(r) && !(r->obs_tick >= 0 && r->obs_tick <= r->tick &&
                                  r->obs_robot_tick >= s->start_tick &&
                                  r->obs_robot_tick <= last_robot_tick))
                fail_msg("%s: policy Action at tick %lld: obs_tick %lld, obs_robot_tick %lld", what,
                         (long long)r->tick, (long long)r->obs_tick, (long long)r->obs_robot_tick);
        } else if (r->kind == VLAD_MSG_CHUNK) {
            chunks++;
            if (last_tick < 0)
                fail_msg("%s: a chunk before any Action", what);
            if (!(r->tick >= last_tick - 2 && r->tick <= last_tick + 64))
                fail_msg("%s: chunk %llu starts at tick %lld, the Actions are at tick %lld (the "
                         "daemon's timeline; the robot's is at %lld)",
                         what, (unsigned long long)r->chunk_id, (long long)r->tick,
                         (long long)last_tick, (long long)s->start_tick);
            if (!(r->obs_tick <= r->tick && r->obs_tick >= last_tick - 64))
                fail_msg("%s: chunk %llu: obs_tick %lld, Actions at %lld", what,
                         (unsigned long long)r->chunk_id, (long long)r->obs_tick, (long long)last_tick);
            if (!(r->obs_robot_tick >= s->start_tick && r->obs_robot_tick <= last_robot_tick))
                fail_msg("%s: chunk %llu: obs_robot_tick %lld outside the run's ticks [%lld, %lld]",
                         what, (unsigned long long)r->chunk_id, (long long)r->obs_robot_tick,
                         (long long)s->start_tick, (long long)last_robot_tick);
        }
    }
    assert_true(chunks >= s->js.n);

    /* 4. each reset: hold, anchor on the new episode, infer from there */
    int resets[MAX_EP + 1], nr = 0;
    for (int i = from; i < to; i++)
        if (tl.r[i].kind == VLAD_MSG_EVENT && tl.r[i].ev == VLAD__EVENT__KIND__RESET) {
            if (nr >= MAX_EP)
                fail_msg("%s: too many RESET events", what);
            resets[nr++] = i;
        }
    if (nr != s->js.n)
        fail_msg("%s: %d RESET events for %d episodes", what, nr, s->js.n);
    resets[nr] = to;
    for (int e = 0; e < nr; e++) {
        const int64_t ft = s->js.ep[e].first_tick, lt = ft + s->js.ep[e].ticks - 1;
        int anchor = -1, chunk = -1;
        for (int i = resets[e] + 1; i < resets[e + 1] && anchor < 0; i++) {
            const vh_rec *r = &tl.r[i];
            if (r->kind == VLAD_MSG_CHUNK)
                fail_msg("%s episode %d: chunk %llu published after the reset, before the anchor",
                         what, e, (unsigned long long)r->chunk_id);
            if (r->kind != VLAD_MSG_ACTION)
                continue;
            if (r->anchored)
                anchor = i;
            else if (is_policy(r))
                fail_msg("%s episode %d: policy Action (tick %lld, chunk %llu) after the reset, "
                         "before the anchor",
                         what, e, (long long)r->tick, (unsigned long long)r->chunk_id);
        }
        if (anchor < 0)
            fail_msg("%s episode %d: no anchored Action after the reset", what, e);
        const vh_rec *a = &tl.r[anchor];
        /* the anchor is an observation of this episode, held exactly as measured */
        if (!(a->robot_tick >= ft && a->robot_tick < lt))
            fail_msg("%s episode %d: anchored at robot tick %lld, the episode is [%lld, %lld]", what,
                     e, (long long)a->robot_tick, (long long)ft, (long long)lt);
        int row = vh_traj_row(&s->traj, a->robot_tick);
        assert_true(row >= 0);
        double d_meas = vh_maxdiff(a->q, s->traj.rows[row].pos, n), d_home = vh_maxdiff(a->q, home, n);
        if (a->robot_tick == ft && d_home > 1e-6)
            fail_msg("%s episode %d: anchored at the episode's first observation, %g from home", what,
                     e, d_home);
        if (d_meas > CSV_TOL || d_home > HOME_TOL)
            fail_msg("%s episode %d: the anchor (robot tick %lld) holds a target %g from the "
                     "measured position and %g from home",
                     what, e, (long long)a->robot_tick, d_meas, d_home);
        /* the first chunk after it: conditioned on the post-reset pose */
        for (int i = anchor + 1; i < resets[e + 1] && chunk < 0; i++)
            if (tl.r[i].kind == VLAD_MSG_CHUNK)
                chunk = i;
        if (chunk < 0)
            fail_msg("%s episode %d: no chunk after the anchor", what, e);
        const vh_rec *c = &tl.r[chunk];
        double d_cond = vh_maxdiff(c->q, home, n);
        /* how far the previous episode ended from home (what a stale conditioning would show) */
        double d_prev = NAN;
        int prow = e > 0 ? vh_traj_row(&s->traj, ft - 2) : -1;
        if (prow >= 0)
            d_prev = vh_maxdiff(s->traj.rows[prow].pos, home, n);
        printf("#   %s episode %d: anchor at robot tick +%lld (%.2e from home), first chunk %llu "
               "from robot tick +%lld, conditioned %.2e from home (previous episode ended %.3f "
               "from home)\n",
               what, e, (long long)(a->robot_tick - ft), d_home, (unsigned long long)c->chunk_id,
               (long long)(c->obs_robot_tick - ft), d_cond, d_prev);
        if (c->obs_robot_tick < ft || c->obs_robot_tick > lt)
            fail_msg("%s episode %d: first chunk %llu conditioned on robot tick %lld, the episode "
                     "starts at %lld",
                     what, e, (unsigned long long)c->chunk_id, (long long)c->obs_robot_tick,
                     (long long)ft);
        if (d_cond > HOME_TOL)
            fail_msg("%s episode %d: first chunk %llu conditioned on a state %g from home", what, e,
                     (unsigned long long)c->chunk_id, d_cond);
        /* every policy action of the episode comes from a chunk of the episode */
        for (int i = anchor; i < resets[e + 1]; i++) {
            const vh_rec *r = &tl.r[i];
            if (r->kind == VLAD_MSG_ACTION && is_policy(r) && r->obs_robot_tick < ft)
                fail_msg("%s episode %d: policy Action at tick %lld from a chunk conditioned on "
                         "robot tick %lld, before the episode's reset (%lld)",
                         what, e, (long long)r->tick, (long long)r->obs_robot_tick, (long long)ft);
        }
        /* the simulator executed nothing from before the reset on the episode's first tick */
        int r0 = vh_traj_row(&s->traj, ft);
        assert_true(r0 >= 0);
        assert_int_equal(s->traj.rows[r0].k, 0);
        double d0 = vh_maxdiff(s->traj.rows[r0].target, home, n);
        if (d0 > CSV_TOL) {
            /* what the daemon was publishing when the reset came: the candidate */
            for (int i = resets[e] - 1; i >= from; i--)
                if (tl.r[i].kind == VLAD_MSG_ACTION) {
                    const vh_rec *r = &tl.r[i];
                    fprintf(stderr, "# last Action before the reset: tick %lld, robot_tick %lld, "
                            "source %d, targets", (long long)r->tick, (long long)r->robot_tick,
                            r->source);
                    for (int j = 0; j < n; j++)
                        fprintf(stderr, " %.6f", r->q[j]);
                    fprintf(stderr, "; vlad-sim applied");
                    for (int j = 0; j < n; j++)
                        fprintf(stderr, " %.6f", s->traj.rows[r0].target[j]);
                    fprintf(stderr, " (home rate-limited toward it by max_velocity / control_hz)\n");
                    break;
                }
            fail_msg("%s episode %d: vlad-sim applied a target %g from home on the episode's first "
                     "tick %lld (an Action from before the reset: robot_tick filter)",
                     what, e, d0, (long long)ft);
        }
    }
}

static Vlad__Status *status_now(void) {
    Vlad__Status *st = vh_status_of(&prof, 2000);
    if (!st)
        fail_msg("status: no reply in 2 s");
    return st;
}

static void stop_daemon(void) {
    vlad_client_free(sub);
    sub = NULL;
    int rc = vh_stop(&daemon_pid, 10000);
    if (rc != 0)
        vh_print_file(daemon_log, 0);
    assert_int_equal(rc, 0);
}

/* ---- the tests ----------------------------------------------------------------------- */

static void run_mode(const char *mode) {
    start_daemon(mode);
    int from, to;
    run_sim(0, START_TICK, EPISODES, &runs[0], &from, &to);
    check_run(mode, &runs[0], from, to, true);
    /* the defaults lock the tick phase to vlad-sim's 50 Hz stream and start inferences as
     * observations arrive (everything above was checked with both on) */
    Vlad__Status *s = status_now();
    printf("# %s: phase %s (error %lld us), early starts %llu of %llu chunks\n", mode,
           s->phase_locked ? "locked" : "free", (long long)s->phase_error_us,
           (unsigned long long)s->early_starts, (unsigned long long)s->chunks_installed);
    bool locked = s->phase_locked;
    uint64_t early = s->early_starts;
    uint64_t wakes = s->wake ? s->wake->count : 0, acts = s->actions_published;
    vlad__status__free_unpacked(s, NULL);
    assert_true(locked);
    assert_true(early > 0);
    /* every tick's step records its start against its deadline, with or without an Action
     * (none goes out before the robot reports), and an Action comes from one step */
    assert_true(wakes > 0 && wakes >= acts);
    stop_daemon();
    passed = true;
}

static void test_sync(void **st) {
    (void)st;
    run_mode("sync");
}

static void test_naive(void **st) {
    (void)st;
    run_mode("naive");
}

static void test_vlash(void **st) {
    (void)st;
    run_mode("vlash");
}

static void test_robot_restart(void **st) {
    (void)st;
    start_daemon("vlash");
    int f0, t0, f1, t1;
    run_sim(0, START_TICK, 1, &runs[0], &f0, &t0);
    check_run("restart, first run", &runs[0], f0, t0, true);
    /* the robot restarts: its ticks start again at 0, below the 1234716 it ended at */
    run_sim(1, 0, 1, &runs[1], &f1, &t1);
    int restarts = 0;
    for (int i = f1; i < t1; i++)
        restarts += tl.r[i].kind == VLAD_MSG_EVENT && tl.r[i].ev == VLAD__EVENT__KIND__ROBOT_RESTART;
    Vlad__Status *s = status_now();
    printf("# robot_restarts %llu, ROBOT_RESTART events %d, episode %llu\n",
           (unsigned long long)s->robot_restarts, restarts, (unsigned long long)s->episode);
    assert_int_equal(s->robot_restarts, 1);
    vlad__status__free_unpacked(s, NULL);
    assert_int_equal(restarts, 1);
    check_run("restart, second run", &runs[1], f1, t1, false);
    stop_daemon();
    passed = true;
}

static int teardown(void **st) {
    (void)st;
    vh_kill(&sim_pid);
    vh_kill(&daemon_pid);
    vlad_client_free(sub);
    sub = NULL;
    for (int i = 0; i < 2; i++)
        vh_traj_free(&runs[i].traj);
    return vh_finish_dir(dir, passed, daemon_log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sync, teardown),
        cmocka_unit_test_teardown(test_naive, teardown),
        cmocka_unit_test_teardown(test_vlash, teardown),
        cmocka_unit_test_teardown(test_robot_restart, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
