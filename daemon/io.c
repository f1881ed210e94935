#include "io.h"

#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static void publish_event(vlad_io *io, int64_t tick, int kind, const char *msg, uint64_t count) {
    Vlad__Event ev = VLAD__EVENT__INIT;
    ev.robot = (char *)io->sh->p->robot;
    ev.tick = tick;
    ev.stamp_ns = vlad_now_ns();
    ev.kind = (Vlad__Event__Kind)kind;
    ev.message = (char *)msg;
    ev.count = count;
    vlad_err err;
    if (vlad_server_publish(io->srv, "event", &ev.base, &err))
        VLAD_LOGW("event: %s", err.msg);
}

/* at most one BAD_MESSAGE event and log line per second per socket */
static void report_bad(vlad_io *io, int which, const char *what, const vlad_err *err) {
    int64_t now = vlad_now_ns();
    uint64_t total = which == 0 ? atomic_load(&io->sh->bad_obs) : atomic_load(&io->sh->bad_cmd);
    if (now - io->last_bad_report_ns[which] < VLAD_NS_PER_S)
        return;
    uint64_t since = total - io->bad_reported[which];
    io->bad_reported[which] = total;
    io->last_bad_report_ns[which] = now;
    char msg[VLAD_ERR_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "bad %s dropped (%llu since last report): %s", what,
             (unsigned long long)since, err->msg);
    VLAD_LOGW("%s", msg);
    publish_event(io, atomic_load(&io->sh->tick), VLAD__EVENT__KIND__BAD_MESSAGE, msg, since);
}

static void drain_out(vlad_io *io) {
    vlad_shared *sh = io->sh;
    const vlad_profile *p = sh->p;
    vlad_out_rec r;
    while (vlad_spsc_pop(sh->out, &r)) {
        if (r.kind == VLAD_OUT_EVENT) {
            VLAD_LOGI("event: %s", r.message);
            publish_event(io, r.tick, r.event_kind, r.message, 0);
            continue;
        }
        Vlad__Action a = VLAD__ACTION__INIT;
        a.robot = (char *)p->robot;
        a.tick = r.tick;
        a.n_joint_targets = (size_t)p->n_joints;
        a.joint_targets = r.target;
        a.chunk_id = r.chunk_id;
        a.obs_tick = r.obs_tick;
        a.source = (Vlad__ActionSource)r.source;
        a.clamped = r.clamped;
        a.stamp_ns = vlad_now_ns();
        vlad_err err;
        if (vlad_server_publish(io->srv, "action", &a.base, &err)) {
            VLAD_LOGW("action: %s", err.msg);
            continue;
        }
        vlad_hist_add(&sh->jitter, vlad_now_ns() - r.deadline_ns);
        atomic_fetch_add_explicit(&sh->actions_published, 1, memory_order_relaxed);
    }
}

static void publish_chunks(vlad_io *io) {
    vlad_shared *sh = io->sh;
    static vlad_chunk_rec r; /* io thread only; too large for the stack */
    while (vlad_spsc_pop(sh->chunks, &r)) {
        Vlad__ActionChunk m = VLAD__ACTION_CHUNK__INIT;
        m.robot = (char *)sh->p->robot;
        m.chunk_id = r.chunk.id;
        m.start_tick = r.chunk.start_tick;
        m.horizon = (uint32_t)r.chunk.len;
        m.dim = (uint32_t)r.chunk.dim;
        m.n_values = (size_t)r.chunk.len * (size_t)r.chunk.dim;
        m.values = r.chunk.values;
        m.obs_tick = r.chunk.obs_tick;
        m.n_conditioned_state = (size_t)r.chunk.dim;
        m.conditioned_state = r.state;
        m.inference_latency_us = r.latency_us;
        m.stamp_ns = vlad_now_ns();
        vlad_err err;
        if (vlad_server_publish(io->srv, "chunk", &m.base, &err))
            VLAD_LOGW("chunk: %s", err.msg);
    }
}

static void on_observations(vlad_io *io) {
    vlad_shared *sh = io->sh;
    const vlad_profile *p = sh->p;
    for (;;) {
        Vlad__Observation *o;
        vlad_err err;
        int rc = vlad_server_recv_observation(io->srv, &o, &err);
        if (rc == VLAD_EAGAIN)
            return;
        if (rc) {
            atomic_store(&sh->bad_obs, vlad_server_bad_observations(io->srv));
            report_bad(io, 0, "observation", &err);
            continue;
        }
        /* carry every camera's newest frame forward */
        for (size_t i = 0; i < o->n_images; i++) {
            size_t off = 0;
            for (int c = 0; c < p->n_cameras; c++) {
                size_t bytes = (size_t)p->cameras[c].width * (size_t)p->cameras[c].height * 3;
                if (!strcmp(p->cameras[c].name, o->images[i]->name)) {
                    memcpy(io->images + off, o->images[i]->data.data, bytes);
                    io->image_tick = o->tick;
                    break;
                }
                off += bytes;
            }
        }
        vlad_obs_state *st = vlad_latest_write_buf(sh->obs);
        memcpy(st + 1, io->images, sh->image_bytes);
        st->image_tick = io->image_tick;
        st->count = ++io->obs_count;
        st->tick = o->tick;
        st->stamp_ns = o->stamp_ns;
        st->recv_ns = vlad_now_ns();
        for (int j = 0; j < p->n_joints; j++) {
            st->pos[j] = o->joint_pos[j];
            st->vel[j] = o->n_joint_vel ? o->joint_vel[j] : 0.0;
        }
        vlad_latest_publish(sh->obs);
        atomic_store(&sh->observations, io->obs_count);
        vlad__observation__free_unpacked(o, NULL);
        uint64_t one = 1;
        ssize_t w = write(sh->obs_fd, &one, sizeof one);
        (void)w;
    }
}

static void fill_lat(Vlad__LatencyStats *l, const vlad_hist *h) {
    vlad_hist_summary s;
    vlad_hist_summarize(h, &s);
    l->count = s.count;
    l->p50_us = s.p50_us;
    l->p99_us = s.p99_us;
    l->max_us = s.max_us;
    l->mean_us = s.mean_us;
}

void vlad_io_fill_status(vlad_shared *sh, Vlad__Status *st, Vlad__LatencyStats *jit,
                         Vlad__LatencyStats *inf) {
    const vlad_profile *p = sh->p;
    st->robot = (char *)p->robot;
    st->mode = (Vlad__Mode)atomic_load(&sh->mode);
    st->tick = atomic_load(&sh->tick);
    st->actions_published = atomic_load(&sh->actions_published);
    st->observations_received = atomic_load(&sh->observations);
    st->bad_observations = atomic_load(&sh->bad_obs);
    st->bad_commands = atomic_load(&sh->bad_cmd);
    st->bad_messages = st->bad_observations + st->bad_commands;
    st->stall_ticks = atomic_load(&sh->stall_ticks);
    st->watchdog_trips = atomic_load(&sh->watchdog_trips);
    st->clamped_actions = atomic_load(&sh->clamped_actions);
    st->overruns = atomic_load(&sh->overruns);
    fill_lat(jit, &sh->jitter);
    fill_lat(inf, &sh->inference);
    st->jitter = jit;
    st->inference = inf;
    st->instruction = sh->instruction; /* io thread is its only writer */
    st->async_mode = (char *)vlad_async_mode_name(p->async.mode);
    st->uptime_s = (double)(vlad_now_ns() - sh->start_ns) / 1e9;
    st->control_hz = p->control_hz;
}

static void on_commands(vlad_io *io) {
    vlad_shared *sh = io->sh;
    for (;;) {
        Vlad__Command *c = NULL;
        vlad_peer peer;
        vlad_err err;
        int rc = vlad_server_recv_command(io->srv, &c, &peer, &err);
        if (rc == VLAD_EAGAIN)
            return;
        Vlad__Reply rep = VLAD__REPLY__INIT;
        Vlad__Status st = VLAD__STATUS__INIT;
        Vlad__LatencyStats jit = VLAD__LATENCY_STATS__INIT, inf = VLAD__LATENCY_STATS__INIT;
        char why[VLAD_ERR_MSG_MAX];
        rep.ok = true;
        rep.error = "";
        if (rc) {
            atomic_store(&sh->bad_cmd, vlad_server_bad_commands(io->srv));
            report_bad(io, 1, "command", &err);
            if (!peer.id_len)
                continue;
            rep.ok = false;
            snprintf(why, sizeof why, "%s", err.msg);
            rep.error = why;
        } else {
            rep.request_id = c->request_id;
            switch (c->body_case) {
            case VLAD__COMMAND__BODY_ESTOP:
                atomic_fetch_add(&sh->estop_req, 1);
                VLAD_LOGW("e-stop requested: %s", c->estop->reason);
                break;
            case VLAD__COMMAND__BODY_RELEASE_ESTOP:
                atomic_fetch_add(&sh->release_req, 1);
                break;
            case VLAD__COMMAND__BODY_RESET:
                atomic_fetch_add(&sh->reset_req, 1);
                break;
            case VLAD__COMMAND__BODY_SET_INSTRUCTION:
                pthread_mutex_lock(&sh->text_mu);
                snprintf(sh->instruction, sizeof sh->instruction, "%s", c->set_instruction->text);
                pthread_mutex_unlock(&sh->text_mu);
                publish_event(io, atomic_load(&sh->tick), VLAD__EVENT__KIND__INSTRUCTION,
                              sh->instruction, 0);
                break;
            case VLAD__COMMAND__BODY_ASK:
                rep.ok = false;
                rep.error = "language streams are not served by this daemon yet";
                break;
            default:
                break;
            }
        }
        vlad_io_fill_status(sh, &st, &jit, &inf);
        rep.status = &st;
        if (vlad_server_reply(io->srv, &peer, &rep, &err))
            VLAD_LOGW("reply: %s", err.msg);
        if (c)
            vlad__command__free_unpacked(c, NULL);
    }
}

void *vlad_io_main(void *arg) {
    vlad_io *io = arg;
    vlad_shared *sh = io->sh;
    /* the io thread publishes every action: real-time too, one step below control */
    if (sh->p->realtime && vlad_rt_setup(79, 0) != VLAD_OK)
        VLAD_LOGW("io: SCHED_FIFO refused (run with CAP_SYS_NICE); continuing");
    publish_event(io, 0, VLAD__EVENT__KIND__STARTED, "vlad started", 0);
    while (!atomic_load(&sh->stop)) {
        int mask = vlad_server_poll(io->srv, 50, sh->wake_fd);
        if (mask & VLAD_SRV_FD) {
            uint64_t v;
            ssize_t rd = read(sh->wake_fd, &v, sizeof v);
            (void)rd;
        }
        drain_out(io);
        publish_chunks(io);
        if (mask & VLAD_SRV_OBS)
            on_observations(io);
        if (mask & VLAD_SRV_CMD)
            on_commands(io);
    }
    drain_out(io);
    publish_chunks(io);
    publish_event(io, atomic_load(&sh->tick), VLAD__EVENT__KIND__STOPPING, "vlad stopping", 0);
    return NULL;
}
