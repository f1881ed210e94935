#include "control.h"

#include <errno.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "vlad.pb-c.h"

int vlad_control_init(vlad_control *c, vlad_shared *sh, vlad_err *err) {
    memset(c, 0, sizeof *c);
    c->sh = sh;
    c->p = sh->p;
    vlad_watchdog_init(&c->wd, sh->p->clock == VLAD_CLOCK_LOCKSTEP
                                   ? sh->p->lockstep_timeout_ms
                                   : sh->p->safety.watchdog_ms);
    vlad_gate_init(&c->gate, c->p);
    c->lockstep = c->p->clock == VLAD_CLOCK_LOCKSTEP;
    c->last_robot_tick = -1;
    c->obs_tick = -1;
    /* e-stops latched before the control thread starts (a persisted latch) count */
    c->seen_estop = c->seen_release = 0;
    c->seen_reset = atomic_load(&sh->reset_req);
    c->need_anchor = true;
    c->period_ns = (int64_t)(1e9 / sh->p->control_hz);
    vlad_phase_init(&c->phase, c->period_ns);
    c->early_tick = -1;
    atomic_store(&sh->mode, VLAD__MODE__MODE_WAITING);
    return vlad_aq_init(&c->queue, c->p->n_joints, err);
}

int vlad_control_attach_policy(vlad_control *c, vlad_worker *worker, int horizon, int dim,
                               int trained_max_delay, vlad_err *err) {
    const vlad_profile *p = c->p;
    int rc = vlad_sched_init(&c->sched, p, horizon, dim, err);
    if (rc)
        return rc;
    int64_t tick_ns = (int64_t)(1e9 / p->control_hz);
    int64_t floor_ns = (int64_t)(p->policy.min_latency_ms * 1e6);
    rc = vlad_delay_init(&c->delay, tick_ns, floor_ns, floor_ns, p->async.delay_margin,
                         /*warmup*/ 2, /*window*/ 32, /*quantile*/ 0.9, err);
    if (rc)
        return rc;
    rc = vlad_delay_init(&c->rawlat, tick_ns, floor_ns, floor_ns, 0, 2, 32, 0.9, err);
    if (rc)
        return rc;
    int md = p->async.max_delay_ticks;
    if (md == 0)
        md = trained_max_delay > 0 ? trained_max_delay : horizon - c->sched.K;
    if (md < 0)
        md = 0;
    if (horizon + md > VLAD_AQ_CAP)
        return vlad_err_set(err, VLAD_ERANGE,
                            "async.max_delay_ticks %d + the model's horizon %d exceed the action "
                            "queue's %d ticks",
                            md, horizon, VLAD_AQ_CAP);
    c->max_delay = md;
    atomic_store(&c->sh->max_delay_ticks, md);
    c->worker = worker;
    c->policy_active = true;
    c->early = !c->lockstep && p->async.early_start;
    c->emul_delay = vlad_ns_to_ticks(floor_ns, tick_ns);
    c->seed = (uint64_t)p->policy.seed;
    return VLAD_OK;
}

static void wake_io(vlad_control *c) {
    uint64_t one = 1;
    ssize_t w = write(c->sh->wake_fd, &one, sizeof one);
    (void)w; /* eventfd write only fails if the counter would overflow */
}

static void push_out(vlad_control *c, const vlad_out_rec *r) {
    if (!vlad_spsc_push(c->sh->out, r))
        atomic_fetch_add(&c->sh->out_dropped, 1);
}

static void emit(vlad_control *c, int64_t tick, int kind, uint64_t count, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void emit(vlad_control *c, int64_t tick, int kind, uint64_t count, const char *fmt, ...) {
    vlad_out_rec r;
    memset(&r, 0, sizeof r);
    r.kind = VLAD_OUT_EVENT;
    r.tick = tick;
    r.event_kind = kind;
    r.count = count;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.message, sizeof r.message, fmt, ap);
    va_end(ap);
    push_out(c, &r);
}

/* THE way an Action leaves the daemon: `want` passes the gate into rec->target. */
static void publish_action(vlad_control *c, vlad_out_rec *rec, const double *want) {
    rec->kind = VLAD_OUT_ACTION;
    bool changed = vlad_gate_pass(&c->gate, want, rec->target);
    if (rec->source == VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY) {
        rec->clamped = changed;
        if (changed)
            atomic_fetch_add(&c->sh->clamped_actions, 1);
    }
    c->last_rec = *rec;
    push_out(c, rec);
}

/* Policy targets flow: the robot has reported since the last reset, no e-stop, fresh. */
static bool running(const vlad_control *c) {
    return c->gate.anchored && !c->awaiting && !c->estop && !c->wd.tripped;
}

/* Everything queued or in flight is void (e-stop, reset, robot restart). */
static void discard(vlad_control *c) {
    vlad_aq_clear(&c->queue);
    c->epoch++;
}

/* An e-stop or reset came between an early observation's anchor and its tick: the anchor
 * never went out, so the gate goes back to the last published Action (control.h). */
static void drop_pending_anchor(vlad_control *c) {
    if (!c->anchor_pending)
        return;
    c->gate = c->pre_anchor;
    c->need_anchor = c->pre_need_anchor;
    c->anchor_pending = false;
}

/* Act on e-stop / release / reset requests, in the order io received them (shared.h). */
void vlad_control_requests(vlad_control *c, int64_t tick) {
    vlad_shared *sh = c->sh;
    uint64_t e = atomic_load(&sh->estop_req);
    if (e != c->seen_estop) {
        c->seen_estop = e;
        if (!c->estop)
            emit(c, tick, VLAD__EVENT__KIND__ESTOP, e,
                 c->gate.anchored ? "e-stop latched: holding the last commanded target"
                                  : "e-stop latched: no target until the robot reports, then "
                                    "holding its position");
        c->estop = true;
        discard(c);
        drop_pending_anchor(c);
    }
    c->seen_release = atomic_load(&sh->release_upto);
    if (c->estop && c->seen_release >= c->seen_estop) {
        c->estop = false;
        emit(c, tick, VLAD__EVENT__KIND__ESTOP_RELEASED, 0, "e-stop released");
    }
    uint64_t r = atomic_load(&sh->reset_req);
    if (r != c->seen_reset) {
        c->seen_reset = r;
        discard(c);
        drop_pending_anchor(c);
        c->awaiting = true;
        c->want_reset = r;
        c->want_from = atomic_load(&sh->reset_from_tick);
        c->need_anchor = true;
        atomic_fetch_add(&sh->episode, 1);
        atomic_store(&sh->episode_start_tick, tick);
        atomic_store(&sh->episode_stall_ticks, 0);
        atomic_store(&sh->episode_chunks, 0);
        emit(c, tick, VLAD__EVENT__KIND__RESET, r,
             c->estop ? "reset: queue cleared; the e-stop hold stays"
                      : "reset: holding until an observation taken after it");
    }
    if (c->estop)
        atomic_store_explicit(&sh->mode, VLAD__MODE__MODE_ESTOP, memory_order_relaxed);
}

/* Take observation o (fresh) at tick `tick`. Returns true if it anchors the gate. */
static bool take_obs(vlad_control *c, const vlad_obs_state *o, int64_t tick) {
    if (c->last_robot_tick >= 0 && o->robot_tick < c->last_robot_tick) {
        /* the robot restarted: a new timeline on its side, nothing queued is valid */
        atomic_fetch_add(&c->sh->robot_restarts, 1);
        discard(c);
        c->need_anchor = true;
        /* a reset's from_robot_tick beyond the old timeline's last tick was named on it: the
         * new ticks may never reach it. One at or below it names a tick of the new timeline
         * (the robot restarted, then reset): it stands, an earlier observation is stale. */
        if (c->want_from > c->last_robot_tick)
            c->want_from = 0;
        emit(c, tick, VLAD__EVENT__KIND__ROBOT_RESTART, atomic_load(&c->sh->robot_restarts),
             "robot tick went back from %lld to %lld: robot restarted; queue discarded%s",
             (long long)c->last_robot_tick, (long long)o->robot_tick,
             c->estop ? ", the e-stop hold stays" : ", holding its new position");
    }
    c->last_robot_tick = o->robot_tick;
    c->last_obs = *o;
    c->obs_tick = tick;
    if (c->awaiting) {
        if (o->reset_seq < c->want_reset || o->robot_tick < c->want_from)
            return false; /* taken before the reset: not a state to act on */
        c->awaiting = false;
    }
    bool anchor = !c->gate.anchored || (c->need_anchor && !c->estop);
    c->need_anchor = false;
    if (anchor)
        vlad_gate_anchor(&c->gate, o->pos);
    return anchor;
}

/* Trip or clear the observation watchdog, emitting the event. */
static void check_watchdog(vlad_control *c, int64_t tick, int64_t now_ns) {
    int64_t last = c->last_obs.count ? c->last_obs.recv_ns : 0;
    int wd = vlad_watchdog_check(&c->wd, last, now_ns);
    if (wd > 0) {
        atomic_fetch_add(&c->sh->watchdog_trips, 1);
        emit(c, tick, VLAD__EVENT__KIND__WATCHDOG_TRIP, 0,
             "no observation for %.0f ms: holding the last commanded target",
             (double)(now_ns - last) / 1e6);
    } else if (wd < 0) {
        emit(c, tick, VLAD__EVENT__KIND__WATCHDOG_CLEAR, 0, "observations fresh again");
    }
}

static void refuse(vlad_control *c, int64_t tick, const char *why, uint64_t id) {
    uint64_t n = atomic_fetch_add(&c->sh->chunks_refused, 1) + 1;
    emit(c, tick, VLAD__EVENT__KIND__CHUNK_REFUSED, n, "chunk %llu refused: %.120s",
         (unsigned long long)id, why);
}

/* Install a finished chunk at tick `tick`: trim what is past, (merge mode) blend it with
 * the actions still queued where it overlaps them, pass it through the gate along itself
 * from the target pending at its first tick - 1, queue it, publish it. What is gated,
 * queued and published is the same: the blended values in merge mode. */
static void install(vlad_control *c, int64_t tick, const vlad_infer_result *r) {
    vlad_shared *sh = c->sh;
    vlad_chunk_rec *cr = &c->staging;
    vlad_chunk *ch = &cr->chunk;
    vlad_sched_place(&c->sched, &r->req, r->actions, tick, ch);
    if (ch->start_tick + ch->len <= tick) {
        char why[96];
        snprintf(why, sizeof why, "its ticks [%lld, %lld) had all passed when it was ready",
                 (long long)ch->start_tick, (long long)(ch->start_tick + ch->len));
        refuse(c, tick, why, ch->id);
        return;
    }
    int64_t first = ch->start_tick > tick ? ch->start_tick : tick; /* earlier ticks have passed */
    int off = (int)(first - ch->start_tick);
    vlad_err err;
    if (c->sched.mode == VLAD_ASYNC_MERGE &&
        vlad_aq_merge(&c->queue, ch, c->sched.merge_weight, NULL, &err) != VLAD_OK) {
        refuse(c, tick, err.msg, ch->id);
        return;
    }
    double ref[VLAD_AQ_MAX_DIM];
    vlad_rollforward(&c->queue, tick, first, c->gate.prev, NULL, 1.0, c->sched.dim, ref);
    bool clamped = vlad_gate_chunk(&c->gate, ref, ch->values + (size_t)off * (size_t)ch->dim,
                                   ch->len - off);
    if (vlad_aq_push(&c->queue, ch, &err) != VLAD_OK) {
        refuse(c, tick, err.msg, ch->id);
        return;
    }
    atomic_fetch_add(&sh->chunks_installed, 1);
    atomic_fetch_add(&sh->episode_chunks, 1);
    if (clamped)
        atomic_fetch_add(&sh->chunks_clamped, 1);
    /* what is published is what was queued: from `first` on */
    ch->start_tick = first;
    ch->len -= off;
    if (off)
        memmove(ch->values, ch->values + (size_t)off * (size_t)ch->dim,
                sizeof(float) * (size_t)ch->len * (size_t)ch->dim);
    memcpy(cr->state, r->req.state, sizeof(float) * (size_t)c->sched.dim);
    cr->obs_robot_tick = r->req.obs_robot_tick;
    cr->latency_us = (uint32_t)(r->latency_ns / 1000);
    cr->clamped = clamped;
    if (!vlad_spsc_push(sh->chunks, cr)) {
        atomic_fetch_add(&sh->out_dropped, 1);
        return;
    }
    vlad_out_rec m;
    memset(&m, 0, sizeof m);
    m.kind = VLAD_OUT_CHUNK;
    m.tick = tick;
    m.chunk_id = ch->id;
    push_out(c, &m);
}

static void finish_job(vlad_control *c) {
    vlad_worker_release(c->worker);
    if (c->pinned)
        vlad_frames_unpin(c->sh->frames);
    c->pinned = false;
    c->busy = false;
}

/* One event per run of failed (or fallback-made) inferences, at its first, and one at the
 * first good result after it: a remote server gone for a minute is two events, not one per
 * retry. While the run lasts the queue drains and the daemon holds the last target (stall
 * ticks), or, degraded, acts on the fallback's chunks. */
static void policy_health(vlad_control *c, int64_t tick, const vlad_infer_result *r) {
    bool bad = r->status || r->degraded;
    if (bad && !c->policy_down) {
        c->policy_down = true;
        c->down_results = 0;
        if (r->status)
            emit(c, tick, VLAD__EVENT__KIND__POLICY_DOWN, 0,
                 "inference failed: %.120s; holding once the queue runs out, retrying", r->error);
        else
            emit(c, tick, VLAD__EVENT__KIND__POLICY_DOWN, 0, "policy degraded: %.140s", r->error);
    }
    if (bad) {
        c->down_results++;
    } else if (c->policy_down) {
        c->policy_down = false;
        emit(c, tick, VLAD__EVENT__KIND__POLICY_UP, c->down_results,
             "inference back after %llu failed or fallback result%s",
             (unsigned long long)c->down_results, c->down_results == 1 ? "" : "s");
    }
}

/* Install a finished inference (if its time has come). Returns false if a lockstep wait
 * was cut short by a request. */
static bool take_result(vlad_control *c, int64_t tick, bool running) {
    if (!c->busy)
        return true;
    const vlad_infer_result *r;
    if (c->lockstep) {
        if (tick < c->ready_tick)
            return true; /* emulated delay: not usable yet */
        /* lockstep: waiting is how delay is simulated; a request cuts it short */
        r = vlad_worker_wait(c->worker, (int)c->p->lockstep_timeout_ms, c->sh->req_fd);
        if (!r)
            return false;
    } else {
        r = vlad_worker_poll(c->worker);
    }
    if (!r)
        return true;
    vlad_shared *sh = c->sh;
    /* the delay a chunk has: from the deadline of its observation's tick to the result (an
     * early start began before that deadline, by job_lead_ns) */
    int64_t lat = c->lockstep ? (int64_t)c->emul_delay * c->delay.tick_ns
                              : r->latency_ns - c->job_lead_ns;
    if (lat < 0)
        lat = 0;
    if (!r->status) /* a failure (a remote timeout...) is no delay a chunk will have */
        vlad_delay_add(&c->delay, lat);
    vlad_hist_add(&sh->inference, r->latency_ns);
    if (!r->status) /* the phase lead's estimate: the inference itself, however it started */
        vlad_delay_add(&c->rawlat, r->latency_ns);
    if (r->status)
        atomic_fetch_add(&sh->inference_errors, 1);
    policy_health(c, tick, r);
    if (!r->status && running && c->job_epoch == c->epoch)
        install(c, tick, r);
    finish_job(c);
    return true;
}

/* The delay Δ the scheduler may plan with now: the estimate, capped at the limit. `count`:
 * this is the tick's own call (the limit's events and tick counter); an early start asks
 * without counting. */
static int planning_delay(vlad_control *c, int64_t tick, bool count) {
    int d = vlad_delay_ticks(&c->delay);
    bool over = d > c->max_delay;
    if (!count)
        return over ? c->max_delay : d;
    atomic_store_explicit(&c->sh->delay_ticks, d, memory_order_relaxed);
    if (over != c->delay_limited) {
        if (over)
            emit(c, tick, VLAD__EVENT__KIND__DELAY_LIMIT, (uint64_t)d,
                 "inference delay %d ticks exceeds async.max_delay_ticks %d: planning with %d "
                 "(outside the policy's training range)",
                 d, c->max_delay, c->max_delay);
        else
            emit(c, tick, VLAD__EVENT__KIND__DELAY_OK, (uint64_t)d,
                 "inference delay %d ticks is within async.max_delay_ticks %d again", d,
                 c->max_delay);
        c->delay_limited = over;
    }
    if (over)
        atomic_fetch_add(&c->sh->delay_limited_ticks, 1);
    return over ? c->max_delay : d;
}

/* Start an inference if the scheduler wants one now, on the observation taken for `tick`
 * (whose deadline is deadline_ns: an early start comes before it). */
static bool maybe_request(vlad_control *c, int64_t tick, int delay, int64_t deadline_ns,
                          int64_t now_ns) {
    if (c->busy || !vlad_worker_idle(c->worker))
        return false;
    vlad_infer_job *job = vlad_worker_job(c->worker);
    if (!vlad_sched_want(&c->sched, &c->queue, tick, c->last_obs.pos, c->obs_tick, c->gate.prev,
                         delay, false, &job->req))
        return false;
    job->req.obs_robot_tick = c->last_obs.robot_tick;
    /* the frame the observation came with, read in place by the worker (no copy here) */
    const uint8_t *img = NULL;
    if (c->sh->frames && c->last_obs.frame_id) {
        img = vlad_frames_pin(c->sh->frames, c->last_obs.frame_id);
        if (!img) /* overwritten already (wall clock, a burst of frames): take the newest */
            img = vlad_frames_pin(c->sh->frames, vlad_frames_newest(c->sh->frames));
        if (!img)
            return false; /* raced the writer: try again next tick */
        c->pinned = true;
    }
    job->images = img ? img : vlad_worker_zero_images(c->worker);
    job->image_tick = c->last_obs.image_robot_tick;
    job->seed = c->seed * 1000003u + job->req.id;
    if (vlad_worker_submit(c->worker) != VLAD_OK) {
        if (c->pinned)
            vlad_frames_unpin(c->sh->frames);
        c->pinned = false;
        return false;
    }
    c->busy = true;
    c->job_epoch = c->epoch;
    c->ready_tick = tick + c->emul_delay;
    c->job_lead_ns = c->lockstep ? 0 : deadline_ns - now_ns;
    return true;
}

/* Reset an eventfd or timerfd counter (non-blocking: nothing to read is fine). */
static void drain_fd(int fd) {
    uint64_t v;
    ssize_t rd = read(fd, &v, sizeof v);
    (void)rd; /* EAGAIN: already drained */
}

static void drain_req_fd(vlad_control *c) { drain_fd(c->sh->req_fd); }

/* The tick's observation: lockstep passes the one it read; wall reads the newest. */
static const vlad_obs_state *newest_obs(vlad_control *c, const vlad_obs_state *given) {
    if (given)
        return given;
    bool fresh;
    const vlad_obs_state *o = vlad_latest_read(c->sh->obs, &fresh);
    return fresh && o->count > 0 ? o : NULL;
}

/* The phase lead wanted now (phase.h): the configured one, or the inference's 0.9-quantile
 * latency + 1 ms + twice the arrivals' scatter around the locked phase (so that an inference
 * started on a late arrival still makes its tick; 1 ms + the scatter without a policy), at
 * most half a period. */
static int64_t phase_lead(const vlad_control *c) {
    int64_t lead = (int64_t)(c->p->phase_lead_ms * 1e6);
    if (lead <= 0)
        lead = (c->worker ? vlad_delay_estimate_ns(&c->rawlat) : 0) + 1000000 +
               (int64_t)(2 * c->phase.jitter_ns);
    return lead > c->period_ns / 2 ? c->period_ns / 2 : lead;
}

/* take_obs, and in wall clock with phase_lock the phase lock's step: the origin moves so
 * that the deadlines follow the observations' arrivals. */
static bool take_new_obs(vlad_control *c, const vlad_obs_state *o, int64_t tick) {
    bool anchor = take_obs(c, o, tick);
    if (!anchor && c->anchor_pending && !c->awaiting) {
        /* a burst: a newer observation before the tick whose Action carries the anchor; the
         * anchor that goes out is the newest measured position (nothing was published since) */
        vlad_gate_anchor(&c->gate, o->pos);
        anchor = true;
    }
    if (!c->lockstep && c->p->phase_lock) {
        c->t0 += vlad_phase_observe(&c->phase, o->recv_ns, c->t0 + tick * c->period_ns,
                                    phase_lead(c));
        atomic_store_explicit(&c->sh->phase_locked, c->phase.locked, memory_order_relaxed);
        atomic_store_explicit(&c->sh->phase_error_us, (int64_t)(c->phase.error_ns / 1000),
                              memory_order_relaxed);
    }
    return anchor;
}

/* Wall clock, async.early_start: an observation arrived before tick `tick`'s deadline. Take
 * it for that tick (requests first, as in a tick), and if the worker is idle and the
 * scheduler wants an inference, start it now: the result can be in place by the deadline.
 * Publishes no Action (the tick does, on its deadline). Not while the observation is an anchor
 * that has not gone out yet. */
void vlad_control_early(vlad_control *c, int64_t tick, int64_t now_ns) {
    if (c->sh->req_fd >= 0)
        drain_req_fd(c);
    vlad_control_requests(c, tick);
    const vlad_obs_state *o = newest_obs(c, NULL);
    if (!c->anchor_pending) { /* what an e-stop or reset before the tick goes back to */
        c->pre_anchor = c->gate;
        c->pre_need_anchor = c->need_anchor;
    }
    if (o && take_new_obs(c, o, tick))
        c->anchor_pending = true;
    if (!o) {
        wake_io(c);
        return;
    }
    check_watchdog(c, tick, now_ns);
    /* an anchor goes out as the tick's Action before anything is planned from it: the first
     * inference of an episode starts at its tick, as without early start */
    if (c->worker && !c->anchor_pending) {
        take_result(c, tick, running(c));
        if (running(c) && maybe_request(c, tick, planning_delay(c, tick, false),
                                        c->t0 + tick * c->period_ns, now_ns)) {
            c->early_tick = tick;
            atomic_fetch_add(&c->sh->early_starts, 1);
        }
    }
    wake_io(c);
}

static void step(vlad_control *c, int64_t tick, int64_t deadline_ns, int64_t now_ns,
                 const vlad_obs_state *given) {
    vlad_shared *sh = c->sh;
    const vlad_profile *p = c->p;
    int n = p->n_joints;
    c->tick = tick;
    atomic_store(&sh->tick, tick); /* seq_cst: ordered before reading the requests (io reads them the other way round) */

    /* 1. requests first: a reset must see this tick's observation as taken after it */
    if (sh->req_fd >= 0)
        drain_req_fd(c);
    vlad_control_requests(c, tick);

    /* 2. newest observation (may anchor the gate); one taken early for this tick counts. The
     * anchor stays pending until the Action is built: an e-stop or reset that step 4 acts on
     * (one that cut a wait short) takes it back, as it does an early one (the Action then
     * holds the last published target: S4, no anchor from before a reset or under an e-stop;
     * S6, the hold is the last commanded target, never this measurement) */
    const vlad_obs_state *o = newest_obs(c, given);
    if (!c->anchor_pending) {
        c->pre_anchor = c->gate;
        c->pre_need_anchor = c->need_anchor;
    }
    if (o && take_new_obs(c, o, tick))
        c->anchor_pending = true;

    /* 3. watchdog */
    check_watchdog(c, tick, now_ns);

    /* 4. the policy: install what finished, start what is due (not a second inference on an
     * observation an early start already used for this tick) */
    if (c->worker) {
        if (!take_result(c, tick, running(c)))
            vlad_control_requests(c, tick); /* the wait was cut short by a request */
        int delay = planning_delay(c, tick, true);
        if (running(c) && c->early_tick != tick) {
            maybe_request(c, tick, delay, deadline_ns, now_ns);
            if (c->lockstep && c->emul_delay == 0 && !take_result(c, tick, true))
                vlad_control_requests(c, tick);
        }
    }

    /* 5. choose the target and pass it through the gate */
    bool anchored = c->anchor_pending;
    c->anchor_pending = false;
    if (!c->gate.anchored) {
        /* the robot has not reported: no target at all (safety.h S4) */
        atomic_store_explicit(&sh->mode, c->estop ? VLAD__MODE__MODE_ESTOP : VLAD__MODE__MODE_WAITING,
                              memory_order_relaxed);
        wake_io(c); /* events may be queued */
        return;
    }
    vlad_out_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.tick = tick;
    rec.deadline_ns = deadline_ns;
    rec.obs_tick = -1;
    rec.obs_robot_tick = -1;
    rec.robot_tick = c->last_obs.count ? c->last_obs.robot_tick : -1;
    rec.anchored = anchored;
    int mode;
    const float *a = NULL;
    double want[VLAD_MAX_JOINTS];
    memcpy(want, c->gate.prev, sizeof(double) * (size_t)n);
    if (c->estop) {
        mode = VLAD__MODE__MODE_ESTOP;
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP;
    } else if (c->awaiting) {
        mode = VLAD__MODE__MODE_WAITING; /* after a reset: hold until the robot reports */
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD;
    } else if (c->wd.tripped) {
        mode = VLAD__MODE__MODE_STALE;
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_WATCHDOG;
    } else {
        mode = VLAD__MODE__MODE_RUNNING;
        int64_t obs_tick, obs_robot_tick = vlad_aq_obs_robot_tick(&c->queue, tick);
        a = vlad_aq_get(&c->queue, tick, &rec.chunk_id, &obs_tick);
        if (a) {
            rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
            rec.obs_tick = obs_tick;
            rec.obs_robot_tick = obs_robot_tick;
            for (int j = 0; j < n; j++)
                want[j] = a[j];
        } else {
            rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD;
        }
    }
    /* stalls: a policy is driving but had nothing for this tick */
    bool stall = c->policy_active && mode == VLAD__MODE__MODE_RUNNING && !a;
    if (stall) {
        atomic_fetch_add(&sh->stall_ticks, 1);
        atomic_fetch_add(&sh->episode_stall_ticks, 1);
        if (!c->stalled)
            emit(c, tick, VLAD__EVENT__KIND__STALL, 0, "no action for tick %lld: holding",
                 (long long)tick);
    }
    c->stalled = stall;
    atomic_store_explicit(&sh->mode, mode, memory_order_relaxed);
    publish_action(c, &rec, want);
    wake_io(c);
}

void vlad_control_step(vlad_control *c, int64_t tick, int64_t deadline_ns, int64_t now_ns) {
    step(c, tick, deadline_ns, now_ns, NULL);
}

void vlad_control_resend(vlad_control *c, int64_t now_ns) {
    if (c->last_rec.kind != VLAD_OUT_ACTION)
        return; /* nothing was published yet */
    /* the same Action again, anchored flag included: a client that missed the answer (its
     * subscription not yet live) gets exactly what it missed, so a lockstep run is
     * bit-identical however the first messages met the sockets; the target is the same, a
     * zero step from the original */
    vlad_out_rec rec = c->last_rec;
    rec.deadline_ns = now_ns; /* not a late tick: a repeated answer */
    if (c->estop && rec.source != VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP) {
        /* an e-stop arrived since the answer: the resend says so (and is no anchor: none
         * happens while the e-stop is latched, S4) */
        rec.anchored = false;
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP;
        rec.chunk_id = 0;
        rec.obs_tick = rec.obs_robot_tick = -1;
        rec.clamped = false;
    }
    double want[VLAD_MAX_JOINTS];
    memcpy(want, c->gate.prev, sizeof want);
    publish_action(c, &rec, want);
    wake_io(c);
}

/* lockstep: wait for an observation or a request; returns POLLIN bits (1 obs, 2 request) */
static int wait_lockstep(vlad_control *c, int timeout_ms) {
    struct pollfd pfd[2] = {{.fd = c->sh->obs_fd, .events = POLLIN},
                            {.fd = c->sh->req_fd, .events = POLLIN}};
    int n = poll(pfd, 2, timeout_ms);
    if (n <= 0)
        return 0;
    int got = 0;
    if (pfd[0].revents & POLLIN) {
        drain_fd(c->sh->obs_fd);
        got |= 1;
    }
    if (pfd[1].revents & POLLIN)
        got |= 2;
    return got;
}

static void lockstep_main(vlad_control *c) {
    vlad_shared *sh = c->sh;
    /* one tick per new observation; the tick number is the daemon's own */
    int64_t tick = -1;
    while (!atomic_load(&sh->stop)) {
        int got = wait_lockstep(c, 50);
        int64_t now = vlad_now_ns();
        if (got & 2) {
            drain_req_fd(c);
            vlad_control_requests(c, tick < 0 ? 0 : tick);
            wake_io(c);
        }
        bool fresh = false;
        const vlad_obs_state *o = (got & 1) ? vlad_latest_read(sh->obs, &fresh) : NULL;
        if (!fresh || o->count == 0) {
            /* the simulator is silent: no tick happens, but the watchdog may trip */
            if (!got) {
                check_watchdog(c, tick < 0 ? 0 : tick, now);
                wake_io(c);
            }
            continue;
        }
        if (c->last_obs.count && o->robot_tick == c->last_robot_tick) {
            /* the same observation again (a resend): the same answer, no new tick */
            c->last_obs.recv_ns = o->recv_ns;
            vlad_control_resend(c, now);
            continue;
        }
        tick++;
        step(c, tick, now, now, o);
    }
}

/* Wall clock with early start: wait until deadline_ns (absolute, on tfd) or until an
 * observation arrives first. Returns true for an observation (the deadline has not come). */
static bool wait_wall(vlad_control *c, int tfd, int64_t deadline_ns) {
    struct itimerspec its = {.it_value = {.tv_sec = deadline_ns / 1000000000,
                                          .tv_nsec = deadline_ns % 1000000000}};
    if (deadline_ns <= vlad_now_ns())
        return false;
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
        vlad_sleep_until_ns(deadline_ns);
        return false;
    }
    for (;;) {
        struct pollfd pfd[2] = {{.fd = tfd, .events = POLLIN},
                                {.fd = c->sh->obs_fd, .events = POLLIN}};
        int n = poll(pfd, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) { /* cannot happen with valid descriptors: fall back to sleeping */
            vlad_sleep_until_ns(deadline_ns);
            return false;
        }
        if (pfd[0].revents & POLLIN) {
            drain_fd(tfd);
            return false; /* the deadline first (an observation now waits for the tick) */
        }
        if (pfd[1].revents & POLLIN) {
            drain_fd(c->sh->obs_fd);
            return vlad_now_ns() < deadline_ns;
        }
    }
}

void *vlad_control_main(void *arg) {
    vlad_control *c = arg;
    vlad_shared *sh = c->sh;
    const vlad_profile *p = c->p;
    bool rt = p->realtime && vlad_rt_setup(80, 1) == VLAD_OK;
    if (p->realtime && !rt)
        VLAD_LOGW("control: SCHED_FIFO/mlockall refused (run with CAP_SYS_NICE); continuing "
                  "without it (and without spin_us)");
    if (p->clock == VLAD_CLOCK_LOCKSTEP) {
        lockstep_main(c);
        return NULL;
    }
    const int64_t period = c->period_ns;
    c->t0 = vlad_now_ns() + period;
    /* early start waits for the deadline or an observation, whichever comes first: an
     * absolute timer beside obs_fd (no relative sleep); without it, or if the timer cannot
     * be made, plain absolute sleeps */
    int tfd = -1;
    if (c->early && sh->obs_fd >= 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (tfd < 0)
            VLAD_LOGW("control: timerfd_create failed (%s): no early starts", strerror(errno));
    }
    /* realtime: the timer fires spin_ns early and the rest is spun, so the tick starts at its
     * deadline however late the kernel wakes the thread (an observation in that stretch
     * waits for the tick, as one after the deadline does) */
    const int64_t spin_ns = rt ? (int64_t)(p->spin_us * 1e3) : 0;
    int64_t tick = 0;
    while (!atomic_load(&sh->stop)) {
        int64_t deadline = c->t0 + tick * period, wake = deadline - spin_ns;
        if (tfd >= 0 ? wait_wall(c, tfd, wake) : (vlad_sleep_until_ns(wake), false)) {
            vlad_control_early(c, tick, vlad_now_ns());
            continue; /* the origin may have moved: the deadline is computed again */
        }
        int64_t now = vlad_now_ns();
        while (now < deadline)
            now = vlad_now_ns();
        vlad_hist_add(&sh->wake, now - deadline);
        if (now - deadline > period) {
            /* we woke more than a period late: count it and jump to the current tick,
             * keeping tick numbers tied to wall time */
            int64_t behind = (now - c->t0) / period;
            atomic_fetch_add(&sh->overruns, (uint64_t)(behind - tick));
            tick = behind;
            deadline = c->t0 + tick * period;
        }
        step(c, tick, deadline, now, NULL);
        tick++;
    }
    if (tfd >= 0)
        close(tfd);
    return NULL;
}
