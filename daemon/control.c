#include "control.h"

#include <errno.h>
#include <poll.h>
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
    for (int j = 0; j < c->p->n_joints; j++)
        c->cmd[j] = c->hold[j] = c->p->joints[j].home;
    c->seen_estop = atomic_load(&sh->estop_req);
    c->seen_release = atomic_load(&sh->release_req);
    c->seen_reset = atomic_load(&sh->reset_req);
    atomic_store(&sh->mode, VLAD__MODE__MODE_WAITING);
    return vlad_aq_init(&c->queue, c->p->n_joints, err);
}

int vlad_control_attach_policy(vlad_control *c, vlad_worker *worker, int horizon, int dim,
                               vlad_err *err) {
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
    c->worker = worker;
    c->policy_active = true;
    c->lockstep = p->clock == VLAD_CLOCK_LOCKSTEP;
    c->emul_delay = vlad_ns_to_ticks(floor_ns, tick_ns);
    c->seed = (uint64_t)p->policy.seed;
    return VLAD_OK;
}

static void wake_io(vlad_control *c) {
    uint64_t one = 1;
    ssize_t w = write(c->sh->wake_fd, &one, sizeof one);
    (void)w; /* eventfd write only fails if the counter would overflow */
}

static void emit(vlad_control *c, int64_t tick, int kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void emit(vlad_control *c, int64_t tick, int kind, const char *fmt, ...) {
    vlad_out_rec r;
    r.kind = VLAD_OUT_EVENT;
    r.tick = tick;
    r.event_kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.message, sizeof r.message, fmt, ap);
    va_end(ap);
    if (!vlad_spsc_push(c->sh->out, &r))
        atomic_fetch_add(&c->sh->out_dropped, 1);
}

/* Stop where the robot is: hold AND command `pos` from now on. Commanding the measured
 * position needs no rate limit (it asks for no motion). */
static void latch_hold(vlad_control *c, const double *pos) {
    memcpy(c->hold, pos, sizeof(double) * (size_t)c->p->n_joints);
    vlad_safety_clamp_limits(c->p, c->hold);
    memcpy(c->cmd, c->hold, sizeof(double) * (size_t)c->p->n_joints);
}

/* Copy the newest observation, if a new one arrived. */
static void take_obs(vlad_control *c) {
    bool fresh;
    const vlad_obs_state *o = vlad_latest_read(c->sh->obs, &fresh);
    c->obs_images = (const uint8_t *)(o + 1);
    if (fresh && o->count > 0) {
        c->last_obs = *o;
        if (!c->have_obs) {
            c->have_obs = true;
            latch_hold(c, o->pos); /* first report: hold where the robot is */
        }
    }
}

/* Trip or clear the observation watchdog, emitting the event. */
static void check_watchdog(vlad_control *c, int64_t tick, int64_t now_ns) {
    int wd = vlad_watchdog_check(&c->wd, c->have_obs ? c->last_obs.recv_ns : 0, now_ns);
    if (wd > 0) {
        atomic_fetch_add(&c->sh->watchdog_trips, 1);
        memcpy(c->hold, c->cmd, sizeof(double) * (size_t)c->p->n_joints);
        atomic_store_explicit(&c->sh->mode, VLAD__MODE__MODE_STALE, memory_order_relaxed);
        emit(c, tick, VLAD__EVENT__KIND__WATCHDOG_TRIP,
             "no observation for %.0f ms: holding the last commanded target",
             (double)(now_ns - c->last_obs.recv_ns) / 1e6);
    } else if (wd < 0) {
        emit(c, tick, VLAD__EVENT__KIND__WATCHDOG_CLEAR, "observations fresh again");
    }
}

/* Install a finished inference (if its time has come) into the queue. */
static void take_result(vlad_control *c, int64_t tick, bool running) {
    if (!c->busy)
        return;
    const vlad_infer_result *r;
    if (c->lockstep) {
        if (tick < c->ready_tick)
            return; /* emulated delay: not usable yet */
        /* lockstep: waiting is how delay is simulated */
        r = vlad_worker_wait(c->worker, (int)c->p->lockstep_timeout_ms);
    } else {
        r = vlad_worker_poll(c->worker);
    }
    if (!r)
        return;
    vlad_shared *sh = c->sh;
    int64_t lat = c->lockstep ? (int64_t)c->emul_delay * c->delay.tick_ns : r->latency_ns;
    vlad_delay_add(&c->delay, lat);
    vlad_hist_add(&sh->inference, r->latency_ns);
    if (r->status) {
        atomic_fetch_add(&sh->inference_errors, 1);
        emit(c, tick, VLAD__EVENT__KIND__STALL, "inference failed: %.90s", r->error);
    } else if (running && c->job_epoch == c->epoch) {
        vlad_chunk_rec *cr = &c->staging;
        vlad_sched_place(&c->sched, &r->req, r->actions, tick, &cr->chunk);
        memcpy(cr->state, r->req.state, sizeof(float) * (size_t)c->sched.dim);
        cr->latency_us = (uint32_t)(r->latency_ns / 1000);
        vlad_err err;
        if (vlad_aq_push(&c->queue, &cr->chunk, &err) == VLAD_OK) {
            atomic_fetch_add(&sh->chunks_installed, 1);
            if (!vlad_spsc_push(sh->chunks, cr))
                atomic_fetch_add(&sh->out_dropped, 1);
        }
    }
    vlad_worker_release(c->worker);
    c->busy = false;
}

/* Start an inference if the scheduler wants one now. */
static void maybe_request(vlad_control *c, int64_t tick) {
    if (c->busy || !vlad_worker_idle(c->worker))
        return;
    vlad_infer_job *job = vlad_worker_job(c->worker);
    double obs_state[VLAD_MAX_JOINTS];
    memcpy(obs_state, c->last_obs.pos, sizeof obs_state);
    if (!vlad_sched_want(&c->sched, &c->queue, tick, obs_state, c->last_obs.tick, c->cmd,
                         vlad_delay_ticks(&c->delay), false, &job->req))
        return;
    memcpy(vlad_worker_images(c->worker), c->obs_images, c->sh->image_bytes);
    job->image_tick = c->last_obs.image_tick;
    job->seed = c->seed * 1000003u + job->req.id;
    if (vlad_worker_submit(c->worker) != VLAD_OK)
        return;
    c->busy = true;
    c->job_epoch = c->epoch;
    c->ready_tick = tick + c->emul_delay;
}

void vlad_control_step(vlad_control *c, int64_t tick, int64_t deadline_ns, int64_t now_ns) {
    vlad_shared *sh = c->sh;
    const vlad_profile *p = c->p;
    int n = p->n_joints;
    c->tick = tick;
    atomic_store_explicit(&sh->tick, tick, memory_order_relaxed);

    /* 1. newest observation */
    take_obs(c);

    /* 2. watchdog */
    check_watchdog(c, tick, now_ns);

    /* 3. requests from the io thread */
    uint32_t r;
    if ((r = atomic_load(&sh->estop_req)) != c->seen_estop) {
        c->seen_estop = r;
        if (!c->estop) {
            c->estop = true;
            /* stop where the robot is (if we know it), else where we commanded it */
            latch_hold(c, c->have_obs && !c->wd.tripped ? c->last_obs.pos : c->cmd);
            vlad_aq_clear(&c->queue);
            c->epoch++;
            emit(c, tick, VLAD__EVENT__KIND__ESTOP, "e-stop latched: holding");
        }
    }
    if ((r = atomic_load(&sh->release_req)) != c->seen_release) {
        c->seen_release = r;
        if (c->estop) {
            c->estop = false;
            emit(c, tick, VLAD__EVENT__KIND__ESTOP_RELEASED, "e-stop released");
        }
    }
    if ((r = atomic_load(&sh->reset_req)) != c->seen_reset) {
        c->seen_reset = r;
        vlad_aq_clear(&c->queue);
        c->epoch++;
        if (c->have_obs)
            latch_hold(c, c->last_obs.pos);
        emit(c, tick, VLAD__EVENT__KIND__RESET, "reset: holding the current position");
    }

    /* 4. the policy: install what finished, start what is due */
    bool running = !c->estop && c->have_obs && !c->wd.tripped;
    if (c->worker) {
        take_result(c, tick, running);
        if (running) {
            maybe_request(c, tick);
            if (c->lockstep && c->emul_delay == 0)
                take_result(c, tick, running); /* zero delay: usable for this very tick */
        }
    }

    /* 5. choose the target */
    vlad_out_rec rec;
    rec.kind = VLAD_OUT_ACTION;
    rec.tick = tick;
    rec.deadline_ns = deadline_ns;
    rec.chunk_id = 0;
    rec.obs_tick = -1;
    rec.clamped = false;
    int mode;
    const float *a = NULL;
    if (c->estop) {
        mode = VLAD__MODE__MODE_ESTOP;
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_ESTOP;
        memcpy(rec.target, c->hold, sizeof(double) * (size_t)n);
    } else if (!c->have_obs) {
        mode = VLAD__MODE__MODE_WAITING;
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_HOME;
        memcpy(rec.target, c->hold, sizeof(double) * (size_t)n);
    } else if (c->wd.tripped) {
        mode = VLAD__MODE__MODE_STALE;
        rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_WATCHDOG;
        memcpy(rec.target, c->hold, sizeof(double) * (size_t)n);
    } else {
        mode = VLAD__MODE__MODE_RUNNING;
        a = vlad_aq_get(&c->queue, tick, &rec.chunk_id, &rec.obs_tick);
        if (a) {
            double want[VLAD_MAX_JOINTS];
            for (int j = 0; j < n; j++)
                want[j] = a[j];
            rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_POLICY;
            rec.clamped = vlad_safety_clamp(p, c->cmd, want, rec.target);
            memcpy(c->hold, rec.target, sizeof(double) * (size_t)n);
        } else {
            rec.source = VLAD__ACTION_SOURCE__ACTION_SOURCE_HOLD;
            vlad_safety_clamp(p, c->cmd, c->hold, rec.target);
        }
    }
    /* stalls: a policy is driving but had nothing for this tick */
    bool stall = c->policy_active && mode == VLAD__MODE__MODE_RUNNING && !a;
    if (stall) {
        atomic_fetch_add(&sh->stall_ticks, 1);
        if (!c->stalled)
            emit(c, tick, VLAD__EVENT__KIND__STALL, "no action for tick %lld: holding",
                 (long long)tick);
    }
    c->stalled = stall;
    if (rec.clamped)
        atomic_fetch_add(&sh->clamped_actions, 1);
    memcpy(c->cmd, rec.target, sizeof(double) * (size_t)n);
    c->last_rec = rec;
    atomic_store_explicit(&sh->mode, mode, memory_order_relaxed);
    if (!vlad_spsc_push(sh->out, &rec))
        atomic_fetch_add(&sh->out_dropped, 1);
    wake_io(c);
}

static bool wait_obs(vlad_control *c, int timeout_ms) {
    struct pollfd pfd = {.fd = c->sh->obs_fd, .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);
    if (n > 0) {
        uint64_t v;
        ssize_t rd = read(c->sh->obs_fd, &v, sizeof v);
        (void)rd;
        return true;
    }
    return false;
}

void *vlad_control_main(void *arg) {
    vlad_control *c = arg;
    vlad_shared *sh = c->sh;
    const vlad_profile *p = c->p;
    if (p->realtime && vlad_rt_setup(80, 1) != VLAD_OK)
        VLAD_LOGW("control: SCHED_FIFO/mlockall refused (run with CAP_SYS_NICE); continuing");
    if (p->clock == VLAD_CLOCK_LOCKSTEP) {
        /* one tick per observation; the tick number is the robot's */
        int64_t last_tick = -1;
        while (!atomic_load(&sh->stop)) {
            bool got = wait_obs(c, 50);
            int64_t now = vlad_now_ns();
            if (!got) {
                /* the simulator is silent: no tick happens, but the watchdog may trip */
                check_watchdog(c, last_tick < 0 ? 0 : last_tick, now);
                wake_io(c);
                continue;
            }
            take_obs(c);
            int64_t t = c->last_obs.tick;
            if (t == last_tick) {
                /* the same observation again (a resend): the same answer, no new tick */
                c->last_rec.deadline_ns = now; /* not a late tick: a repeated answer */
                if (vlad_spsc_push(sh->out, &c->last_rec))
                    wake_io(c);
                continue;
            }
            if (t < last_tick) {
                /* the robot's clock restarted: a new timeline, nothing queued is valid */
                vlad_aq_clear(&c->queue);
                c->epoch++;
                emit(c, t, VLAD__EVENT__KIND__RESET, "tick went back from %lld to %lld: new timeline",
                     (long long)last_tick, (long long)t);
            }
            last_tick = t;
            vlad_control_step(c, t, now, now);
        }
        return NULL;
    }
    const int64_t period = (int64_t)(1e9 / p->control_hz);
    int64_t t0 = vlad_now_ns() + period;
    int64_t tick = 0;
    while (!atomic_load(&sh->stop)) {
        int64_t deadline = t0 + tick * period;
        vlad_sleep_until_ns(deadline);
        int64_t now = vlad_now_ns();
        if (now - deadline > period) {
            /* we woke more than a period late: count it and jump to the current tick,
             * keeping tick numbers tied to wall time */
            int64_t behind = (now - t0) / period;
            atomic_fetch_add(&sh->overruns, (uint64_t)(behind - tick));
            tick = behind;
            deadline = t0 + tick * period;
        }
        vlad_control_step(c, tick, deadline, now);
        tick++;
    }
    return NULL;
}
