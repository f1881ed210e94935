#include "io.h"

#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lang.h"
#include "latch.h"
#include "log.h"
#include "safety.h"
#include "validate.h"

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

/* at most one event and log line per second per kind of bad input */
static const int report_kind[3] = {VLAD__EVENT__KIND__BAD_MESSAGE, VLAD__EVENT__KIND__BAD_MESSAGE,
                                   VLAD__EVENT__KIND__OBS_REJECTED};

/* publish what has not been reported of kind `which`, if a second has passed */
static void flush_report(vlad_io *io, int which, int64_t now) {
    uint64_t since = io->bad_total[which] - io->bad_reported[which];
    if (!since || now - io->last_bad_report_ns[which] < VLAD_NS_PER_S)
        return;
    io->bad_reported[which] = io->bad_total[which];
    io->last_bad_report_ns[which] = now;
    char msg[VLAD_ERR_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "%s (%llu since last report)", io->bad_last[which],
             (unsigned long long)since);
    VLAD_LOGW("%s", msg);
    publish_event(io, atomic_load(&io->sh->tick), report_kind[which], msg, since);
}

/* at most one event and log line per second per kind of bad input; the tail of a burst is
 * reported a second later even if nothing else arrives (vlad_io_main flushes) */
static void report_dropped(vlad_io *io, int which, const char *what, uint64_t total,
                           const vlad_err *err) {
    io->bad_total[which] = total;
    snprintf(io->bad_last[which], sizeof io->bad_last[which], "%s dropped: %.400s", what, err->msg);
    flush_report(io, which, vlad_now_ns());
}

/* handshakes the authentication handler refused, once a second */
static void report_auth(vlad_io *io, int64_t now) {
    vlad_server_sec sec;
    vlad_server_security(io->srv, &sec);
    uint64_t since = sec.handshakes_refused - io->auth_reported;
    if (!since || now - io->last_auth_report_ns < VLAD_NS_PER_S)
        return;
    io->auth_reported = sec.handshakes_refused;
    io->last_auth_report_ns = now;
    char msg[300];
    snprintf(msg, sizeof msg, "%llu connection(s) refused at the handshake; newest: %s",
             (unsigned long long)since, sec.last_refusal);
    VLAD_LOGW("%s", msg);
    publish_event(io, atomic_load(&io->sh->tick), VLAD__EVENT__KIND__AUTH_REFUSED, msg, since);
}

static void report_bad(vlad_io *io, int which, const vlad_err *err) {
    uint64_t total = which == 0 ? atomic_load(&io->sh->bad_obs) : atomic_load(&io->sh->bad_cmd);
    report_dropped(io, which, which == 0 ? "bad observation" : "bad command", total, err);
}

static void publish_chunk(vlad_io *io, uint64_t id) {
    vlad_shared *sh = io->sh;
    vlad_chunk_rec *r = &io->chunk; /* too large for the stack */
    for (;;) {
        if (!vlad_spsc_pop(sh->chunks, r))
            return; /* its record was dropped (ring full): counted by control */
        if (r->chunk.id == id)
            break;
        /* an older record whose marker was dropped: its moment has passed */
    }
    Vlad__ActionChunk m = VLAD__ACTION_CHUNK__INIT;
    m.robot = (char *)sh->p->robot;
    m.chunk_id = r->chunk.id;
    m.start_tick = r->chunk.start_tick;
    m.horizon = (uint32_t)r->chunk.len;
    m.dim = (uint32_t)r->chunk.dim;
    m.n_values = (size_t)r->chunk.len * (size_t)r->chunk.dim;
    m.values = r->chunk.values;
    m.obs_tick = r->chunk.obs_tick;
    m.obs_robot_tick = r->obs_robot_tick;
    m.n_conditioned_state = (size_t)r->chunk.dim;
    m.conditioned_state = r->state;
    m.inference_latency_us = r->latency_us;
    m.clamped = r->clamped;
    m.stamp_ns = vlad_now_ns();
    vlad_err err;
    if (vlad_server_publish(io->srv, "chunk", &m.base, &err))
        VLAD_LOGW("chunk: %s", err.msg);
}

/* Publish what control queued, in its order: actions, events, chunks. */
static void drain_out(vlad_io *io) {
    vlad_shared *sh = io->sh;
    const vlad_profile *p = sh->p;
    vlad_out_rec r;
    while (vlad_spsc_pop(sh->out, &r)) {
        if (r.kind == VLAD_OUT_EVENT) {
            VLAD_LOGI("event: %s", r.message);
            publish_event(io, r.tick, r.event_kind, r.message, r.count);
            continue;
        }
        if (r.kind == VLAD_OUT_CHUNK) {
            publish_chunk(io, r.chunk_id);
            continue;
        }
        Vlad__Action a = VLAD__ACTION__INIT;
        a.robot = (char *)p->robot;
        a.tick = r.tick;
        a.n_joint_targets = (size_t)p->n_joints;
        a.joint_targets = r.target;
        a.chunk_id = r.chunk_id;
        a.obs_tick = r.obs_tick;
        a.robot_tick = r.robot_tick;
        a.obs_robot_tick = r.obs_robot_tick;
        a.anchored = r.anchored;
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

/* Publish the language pieces the worker decoded, as LanguageTokens. */
static void drain_lang(vlad_io *io) {
    vlad_shared *sh = io->sh;
    vlad_lang_piece *pc = &io->piece; /* too large for the stack */
    while (vlad_lang_next_piece(sh->lang, pc)) {
        Vlad__LanguageToken t = VLAD__LANGUAGE_TOKEN__INIT;
        char question[VLAD_LANG_Q_MAX + 1];
        memcpy(question, pc->question, pc->qlen);
        question[pc->qlen] = '\0';
        t.robot = (char *)sh->p->robot;
        t.stream_id = pc->stream_id;
        t.text.data = pc->text;
        t.text.len = pc->n;
        t.done = pc->done;
        t.tick = pc->tick;
        t.index = pc->index;
        t.obs_tick = pc->obs_tick;
        t.obs_robot_tick = pc->obs_robot_tick;
        t.frame = pc->frame;
        t.question = question;
        t.error = pc->error;
        vlad_err err;
        if (vlad_server_publish(io->srv, "lang", &t.base, &err))
            VLAD_LOGW("lang: %s", err.msg);
    }
}

/* An ask: NULL and *id when accepted, else why not (in buf). */
static const char *on_ask(vlad_io *io, const char *question, uint32_t *id, char *buf, size_t cap) {
    vlad_shared *sh = io->sh;
    size_t qlen = question ? strlen(question) : 0;
    vlad_lang_stats *st = vlad_lang_stats_of(sh->lang);
    int maxq = vlad_lang_max_question(sh->lang);
    if (sh->lang_off)
        snprintf(buf, cap, "ask: %s", sh->lang_off);
    else if (vlad_estopped(sh) && !sh->p->lang.during_estop)
        snprintf(buf, cap, "ask: e-stopped, and lang.during_estop is false");
    else if (qlen > (size_t)maxq)
        snprintf(buf, cap, "ask: the question is %zu bytes; the model reads at most %d", qlen, maxq);
    else if (!vlad_lang_reserve(sh->lang))
        snprintf(buf, cap, "ask: no free language stream (all %d of lang.max_streams in use)",
                 vlad_lang_max_streams(sh->lang));
    else {
        vlad_lang_req r = {.stream_id = vlad_lang_next_id(sh->lang), .qlen = (uint32_t)qlen};
        if (qlen)
            memcpy(r.question, question, qlen);
        vlad_err err;
        if (!vlad_lang_submit(sh->lang, &r, &err)) {
            atomic_fetch_add(&st->requests, 1);
            *id = r.stream_id;
            return NULL;
        }
        vlad_lang_unreserve(sh->lang);
        snprintf(buf, cap, "ask: %.400s", err.msg);
    }
    atomic_fetch_add(&st->refused, 1);
    return buf;
}

/* At most this many messages per socket per poll: a flood cannot starve publishing. */
#define IO_BATCH 16

static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w;
}

/* Robot ticks at or above this are absurd (2^53: 285,000 years of 1 kHz ticks; the
 * daemon's arithmetic on robot ticks stays far from overflow). */
#define ROBOT_TICK_MAX (INT64_C(1) << 53)

static void on_observations(vlad_io *io) {
    vlad_shared *sh = io->sh;
    const vlad_profile *p = sh->p;
    for (int k = 0; k < IO_BATCH; k++) {
        Vlad__Observation *o;
        vlad_err err;
        int rc = vlad_server_recv_observation(io->srv, &o, &err);
        if (rc == VLAD_EAGAIN)
            return;
        if (rc) {
            atomic_store(&sh->bad_obs, vlad_server_bad_observations(io->srv));
            report_bad(io, 0, &err);
            continue;
        }
        double pos[VLAD_MAX_JOINTS];
        /* checked against the robot: dropped, counted, never used or held */
        _Atomic uint64_t *rejected = NULL;
        const char *what = NULL;
        if (o->tick >= ROBOT_TICK_MAX || o->stamp_ns < 0) {
            vlad_err_set(&err, VLAD_EINVAL, "tick %lld / stamp_ns %lld: absurd (tick must be below "
                         "2^53, stamp_ns not negative)", (long long)o->tick, (long long)o->stamp_ns);
            rejected = &sh->obs_absurd, what = "absurd observation";
        } else if (vlad_safety_measured(p, o->joint_pos, pos, &err)) {
            rejected = &sh->obs_out_of_limits, what = "out-of-limits observation";
        }
        if (rejected) {
            atomic_fetch_add(rejected, 1);
            report_dropped(io, 2, what, atomic_load(&sh->obs_absurd) + atomic_load(&sh->obs_out_of_limits),
                           &err);
            vlad__observation__free_unpacked(o, NULL);
            continue;
        }
        /* camera frames: the history takes each camera's image; the frame set is every view
         * of this tick (a camera that did not send one is carried forward: its newest) */
        if (o->n_images && sh->frames && io->views) {
            for (size_t i = 0; i < o->n_images; i++)
                for (int c = 0; c < p->n_cameras; c++)
                    if (!strcmp(p->cameras[c].name, o->images[i]->name)) {
                        vlad_view_hist_put(io->views, c, o->tick, o->images[i]->data.data);
                        break;
                    }
            vlad_view_hist_compose(io->views, o->tick, vlad_frames_write_buf(sh->frames));
            io->frame_id = vlad_frames_publish(sh->frames);
            io->image_tick = o->tick;
        }
        vlad_obs_state *st = vlad_latest_write_buf(sh->obs);
        st->count = ++io->obs_count;
        st->reset_seq = atomic_load(&sh->reset_req);
        st->frame_id = io->frame_id;
        st->image_robot_tick = io->image_tick;
        st->robot_tick = o->tick;
        st->stamp_ns = o->stamp_ns;
        st->recv_ns = vlad_now_ns();
        for (int j = 0; j < p->n_joints; j++) {
            st->pos[j] = pos[j];
            st->vel[j] = o->n_joint_vel ? o->joint_vel[j] : 0.0;
        }
        vlad_latest_publish(sh->obs);
        atomic_store(&sh->observations, io->obs_count);
        vlad__observation__free_unpacked(o, NULL);
        signal_fd(sh->obs_fd);
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

void vlad_io_fill_status(vlad_io *io, Vlad__Status *st, Vlad__LatencyStats *jit, Vlad__LatencyStats *wake,
                         Vlad__LatencyStats *inf) {
    vlad_shared *sh = io->sh;
    const vlad_server *srv = io->srv;
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
    st->episode = atomic_load(&sh->episode);
    st->episode_ticks = st->tick - atomic_load(&sh->episode_start_tick);
    st->episode_stall_ticks = atomic_load(&sh->episode_stall_ticks);
    st->episode_chunks = atomic_load(&sh->episode_chunks);
    st->chunks_installed = atomic_load(&sh->chunks_installed);
    st->chunks_refused = atomic_load(&sh->chunks_refused);
    st->chunks_clamped = atomic_load(&sh->chunks_clamped);
    st->inference_errors = atomic_load(&sh->inference_errors);
    st->obs_out_of_limits = atomic_load(&sh->obs_out_of_limits);
    st->obs_absurd = atomic_load(&sh->obs_absurd);
    st->robot_restarts = atomic_load(&sh->robot_restarts);
    st->delay_limited_ticks = atomic_load(&sh->delay_limited_ticks);
    st->delay_ticks = atomic_load(&sh->delay_ticks);
    st->max_delay_ticks = atomic_load(&sh->max_delay_ticks);
    st->phase_locked = atomic_load(&sh->phase_locked);
    st->phase_error_us = atomic_load(&sh->phase_error_us);
    st->early_starts = atomic_load(&sh->early_starts);
    st->estop_file = sh->estop_file;
    vlad_server_sec sec;
    vlad_server_security(srv, &sec);
    st->curve = sec.curve;
    st->client_keys = (uint32_t)sec.clients;
    st->handshakes_refused = sec.handshakes_refused;
    st->commands_denied = sec.commands_denied;
    st->subscriptions_refused = sec.subscriptions_refused;
    st->oversized_frames = sec.oversized;
    st->connections = sec.connections;
    st->connections_refused = sec.connections_refused;
    st->disconnects = sec.disconnects;
    st->log_lines_lost = vlad_log_dropped() + vlad_log_write_failures();
    st->lang_max_streams = (uint32_t)p->lang.max_streams;
    vlad_lang_stats *ls = vlad_lang_stats_of(sh->lang);
    st->lang_streams_active = atomic_load(&ls->active);
    st->prefix_blocks_in_use = atomic_load(&ls->blocks_in_use);
    st->prefix_blocks = atomic_load(&ls->blocks);
    st->prefills = atomic_load(&ls->prefills);
    st->frames = atomic_load(&ls->frames);
    st->lang_requests = atomic_load(&ls->requests);
    st->lang_refused = atomic_load(&ls->refused);
    st->lang_streams_done = atomic_load(&ls->done);
    st->lang_tokens = atomic_load(&ls->tokens);
    /* a rate older than two seconds: nothing is decoding */
    st->lang_tokens_per_s = vlad_now_ns() - atomic_load(&ls->rate_ns) < 2 * VLAD_NS_PER_S
                                ? atomic_load(&ls->tokens_per_s) : 0.0;
    st->lang_slices_preempted = atomic_load(&ls->preempted);
    fill_lat(jit, &sh->jitter);
    fill_lat(wake, &sh->wake);
    fill_lat(inf, &sh->inference);
    st->jitter = jit;
    st->wake = wake;
    st->inference = inf;
    st->instruction = sh->instruction; /* io thread is its only writer */
    st->async_mode = (char *)vlad_async_mode_name(p->async.mode);
    st->uptime_s = (double)(vlad_now_ns() - sh->start_ns) / 1e9;
    st->control_hz = p->control_hz;
    vlad_remote_stats *rs = &sh->remote;
    if (atomic_load(&rs->on)) {
        st->remote_endpoints = (char *)p->policy.remote.endpoints;
        st->remote_up = atomic_load(&rs->up);
        st->remote_requests = atomic_load(&rs->requests);
        st->remote_replies = atomic_load(&rs->replies);
        st->remote_timeouts = atomic_load(&rs->timeouts);
        st->remote_dropped_stale = atomic_load(&rs->dropped_stale);
        st->remote_reconnects = atomic_load(&rs->reconnects);
        st->remote_refusals = atomic_load(&rs->refusals);
        st->remote_errors = atomic_load(&rs->errors);
        st->remote_fallbacks = atomic_load(&rs->fallbacks);
        uint64_t sent = atomic_load(&rs->infer_sent);
        if (sent) { /* means over the inference requests so far */
            st->remote_request_bytes = atomic_load(&rs->request_bytes) / sent;
            st->remote_encode_us = (double)atomic_load(&rs->encode_ns) / 1e3 / (double)sent;
        }
        pthread_mutex_lock(&rs->mu); /* the worker's, briefly; never the control thread's */
        snprintf(io->remote_error, sizeof io->remote_error, "%s", rs->last_error);
        pthread_mutex_unlock(&rs->mu);
        st->remote_last_error = io->remote_error;
    }
    if (io->rec) {
        vlad_record_stats_get(io->rec, &io->rec_stats);
        st->record_file = (char *)vlad_record_file(io->rec);
        st->record_entries = io->rec_stats.entries;
        st->record_dropped = io->rec_stats.dropped;
        st->record_bytes = io->rec_stats.bytes;
        st->record_error = io->rec_stats.error;
    }
}

/* The recording stopped on a write error: say so once (log and event); the daemon runs on. */
static void check_record(vlad_io *io) {
    if (!io->rec || io->rec_reported || !vlad_record_failed(io->rec))
        return;
    io->rec_reported = true;
    vlad_record_stats_get(io->rec, &io->rec_stats);
    VLAD_LOGW("%s", io->rec_stats.error);
    publish_event(io, atomic_load(&io->sh->tick), VLAD__EVENT__KIND__RECORD_ERROR,
                  io->rec_stats.error, io->rec_stats.dropped);
}

/* The latch on disk follows the in-memory state (released iff release_upto >= estop_req). */
static void persist_latch(vlad_io *io, const char *reason) {
    vlad_shared *sh = io->sh;
    vlad_err err;
    bool latched = vlad_estopped(sh);
    int rc = latched ? vlad_latch_write(sh->estop_file, reason, &err)
                     : vlad_latch_clear(sh->estop_file, &err);
    if (rc) {
        VLAD_LOGW("%s", err.msg);
        publish_event(io, atomic_load(&sh->tick), VLAD__EVENT__KIND__BAD_MESSAGE, err.msg, 0);
    }
}

static void on_commands(vlad_io *io) {
    vlad_shared *sh = io->sh;
    for (int k = 0; k < IO_BATCH; k++) {
        Vlad__Command *c = NULL;
        vlad_peer peer;
        vlad_err err;
        int rc = vlad_server_recv_command(io->srv, &c, &peer, &err);
        if (rc == VLAD_EAGAIN)
            return;
        Vlad__Reply rep = VLAD__REPLY__INIT;
        Vlad__Status st = VLAD__STATUS__INIT;
        Vlad__LatencyStats jit = VLAD__LATENCY_STATS__INIT, inf = VLAD__LATENCY_STATS__INIT,
                           wk = VLAD__LATENCY_STATS__INIT;
        char why[VLAD_ERR_MSG_MAX];
        rep.ok = true;
        rep.error = "";
        if (rc) {
            atomic_store(&sh->bad_cmd, vlad_server_bad_commands(io->srv));
            report_bad(io, 1, &err);
            if (!peer.id_len)
                continue;
            rep.ok = false;
            rep.request_id = peer.request_id; /* the sender matches the refusal to its request */
            snprintf(why, sizeof why, "%s", err.msg);
            rep.error = why;
        } else {
            rep.request_id = c->request_id;
            switch (c->body_case) {
            case VLAD__COMMAND__BODY_ESTOP: {
                /* first the stop (control acts on its next tick), then the log and the file */
                atomic_fetch_add(&sh->estop_req, 1);
                signal_fd(sh->req_fd);
                char reason[VLAD_TEXT_MAX + 1];
                vlad_text_sanitize(c->estop->reason, reason, sizeof reason);
                VLAD_LOGW("e-stop requested: %s", reason);
                persist_latch(io, reason);
                break;
            }
            case VLAD__COMMAND__BODY_RELEASE_ESTOP:
                /* clears the e-stops received before it, not later ones */
                atomic_store(&sh->release_upto, atomic_load(&sh->estop_req));
                signal_fd(sh->req_fd);
                VLAD_LOGI("e-stop release requested");
                persist_latch(io, "");
                break;
            case VLAD__COMMAND__BODY_RESET:
                atomic_store(&sh->reset_from_tick, c->reset->from_robot_tick);
                if (io->views) /* a new episode: no view looks back into the last one */
                    vlad_view_hist_reset(io->views, c->reset->from_robot_tick);
                atomic_fetch_add(&sh->reset_req, 1);
                signal_fd(sh->req_fd);
                break;
            case VLAD__COMMAND__BODY_SET_INSTRUCTION:
                pthread_mutex_lock(&sh->text_mu);
                snprintf(sh->instruction, sizeof sh->instruction, "%s", c->set_instruction->text);
                pthread_mutex_unlock(&sh->text_mu);
                publish_event(io, atomic_load(&sh->tick), VLAD__EVENT__KIND__INSTRUCTION,
                              sh->instruction, 0);
                break;
            case VLAD__COMMAND__BODY_ASK: {
                const char *no = on_ask(io, c->ask->question, &rep.stream_id, why, sizeof why);
                if (no) {
                    rep.ok = false;
                    rep.error = why;
                }
                break;
            }
            default:
                break;
            }
        }
        vlad_io_fill_status(io, &st, &jit, &wk, &inf);
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
        if (mask & VLAD_SRV_OBS)
            on_observations(io);
        drain_out(io);
        drain_lang(io);
        if (mask & VLAD_SRV_CMD)
            on_commands(io);
        int64_t now = vlad_now_ns();
        for (int w = 0; w < 3; w++)
            flush_report(io, w, now);
        report_auth(io, now);
        check_record(io);
    }
    drain_out(io);
    drain_lang(io);
    publish_event(io, atomic_load(&sh->tick), VLAD__EVENT__KIND__STOPPING, "vlad stopping", 0);
    return NULL;
}
