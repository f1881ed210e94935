#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "io.h"
#include "lang.h"
#include "latch.h"
#include "log.h"
#include "record.h"
#include "synthetic.h"
#ifdef VLAD_HAVE_ENGINE
#include "engine_policy.h"
#endif
#ifdef VLAD_HAVE_REMOTE
#include "remote_policy.h"
#endif
#include "worker.h"

struct vlad_daemon {
    vlad_shared sh;
    vlad_control ctl;
    vlad_io io;
    vlad_synthetic synthetic;
#ifdef VLAD_HAVE_ENGINE
    vlad_engine_policy *engine;
#endif
#ifdef VLAD_HAVE_REMOTE
    vlad_remote_policy *remote;
#endif
    vlad_worker *worker;
    pthread_t t_io, t_ctl;
    bool started_io, started_ctl;
};

/* The frames the worker reads: one image per view (views.h), composed by io from its frame
 * history of the robot's cameras. */
static int make_frames(vlad_daemon *d, const vlad_views *v, vlad_err *err) {
    const vlad_profile *p = d->sh.p;
    size_t cam_bytes[VLAD_MAX_VIEWS] = {0};
    for (int c = 0; c < p->n_cameras && c < VLAD_MAX_VIEWS; c++)
        cam_bytes[c] = (size_t)p->cameras[c].width * (size_t)p->cameras[c].height * 3;
    d->io.views = vlad_view_hist_new(v, p->n_cameras, cam_bytes, err);
    if (!d->io.views)
        return err ? err->code : VLAD_ENOMEM;
    d->sh.image_bytes = vlad_view_hist_frame_bytes(d->io.views);
    d->sh.frames = vlad_frames_new(d->sh.image_bytes, err);
    if (!d->sh.frames)
        return err ? err->code : VLAD_ENOMEM;
    if (vlad_views_have_lag(v)) {
        char text[256];
        vlad_views_format(v, text, sizeof text);
        VLAD_LOGI("policy: image views %s (camera, robot ticks back)", text);
    }
    return VLAD_OK;
}

/* Create the policy named by the profile (none, synthetic, vlad-serve hosts, or a checkpoint)
 * and its worker. */
static int attach_policy(vlad_daemon *d, vlad_err *err) {
    const vlad_profile *p = d->sh.p;
    vlad_policy_ops ops;
    vlad_views views;
    vlad_views_identity(p->n_cameras, &views);
    d->sh.lang_off = "no language model: policy.model is not set";
    if (p->policy.synthetic) {
        d->sh.lang_off = "no language model: the synthetic policy has none";
        vlad_synthetic_init(&d->synthetic, p);
        vlad_synthetic_ops(&d->synthetic, &ops);
    } else if (vlad_profile_remote(p)) { /* before policy.model: that is then the fallback */
#ifdef VLAD_HAVE_REMOTE
        d->remote = vlad_remote_policy_new(p, &d->sh.remote, err);
        if (!d->remote)
            return err ? err->code : VLAD_EINVAL;
        VLAD_LOGI("policy: %s", vlad_remote_policy_describe(d->remote));
        d->sh.lang_off = "no language: the policy runs on vlad-serve (asks are not forwarded to "
                         "it)";
        vlad_remote_policy_ops(d->remote, &ops);
        views = *vlad_remote_policy_views(d->remote);
#else
        return vlad_err_set(err, VLAD_EINVAL,
                            "policy.remote.endpoints: this build has no vlad-serve client");
#endif
    } else if (p->policy.model[0]) {
#ifdef VLAD_HAVE_ENGINE
        d->engine = vlad_engine_policy_new(p, err);
        if (!d->engine)
            return err ? err->code : VLAD_EINVAL;
        int64_t ns = vlad_engine_policy_warmup(d->engine, err);
        if (ns < 0)
            return (int)ns;
        VLAD_LOGI("policy: %s loaded; warm-up inference %.1f ms", p->policy.model, (double)ns / 1e6);
        d->sh.lang = vlad_lang_new(p->lang.max_streams, vlad_engine_policy_max_question(d->engine),
                                   d->sh.wake_fd, err);
        if (!d->sh.lang)
            return err ? err->code : VLAD_ENOMEM;
        if (p->lang.max_streams > 0 &&
            vlad_engine_policy_attach_lang(d->engine, d->sh.lang, &d->sh.tick, &d->sh.stop, err))
            return err ? err->code : VLAD_EINVAL;
        d->sh.lang_off = p->lang.max_streams ? NULL : "language is off (lang.max_streams is 0)";
        vlad_engine_policy_ops(d->engine, &ops);
        views = *vlad_engine_policy_views(d->engine);
#else
        return vlad_err_set(err, VLAD_EINVAL, "policy.model %s: this build has no inference engine",
                            p->policy.model);
#endif
    } else {
        return make_frames(d, &views, err); /* no policy: hold */
    }
    if (make_frames(d, &views, err))
        return err ? err->code : VLAD_ENOMEM;
    int64_t min_lat = (int64_t)(p->policy.min_latency_ms * 1e6);
    d->worker = vlad_worker_new(&ops, d->sh.image_bytes, min_lat, p->clock == VLAD_CLOCK_WALL,
                                &d->sh.text_mu, d->sh.instruction, err);
    if (!d->worker)
        return err ? err->code : VLAD_EINVAL;
    return vlad_control_attach_policy(&d->ctl, d->worker, ops.horizon, ops.dim, ops.max_delay_ticks,
                                      err);
}

vlad_daemon *vlad_daemon_new(const vlad_profile *p, vlad_err *err) {
    vlad_daemon *d = calloc(1, sizeof *d);
    if (!d) {
        vlad_err_set(err, VLAD_ENOMEM, "daemon: out of memory");
        return NULL;
    }
    vlad_shared *sh = &d->sh;
    sh->p = p;
    sh->wake_fd = sh->obs_fd = sh->req_fd = -1;
    sh->start_ns = vlad_now_ns();
    pthread_mutex_init(&sh->text_mu, NULL);
    pthread_mutex_init(&sh->remote.mu, NULL);
    snprintf(sh->instruction, sizeof sh->instruction, "%s", p->policy.instruction);
    vlad_hist_init(&sh->jitter);
    vlad_hist_init(&sh->wake);
    vlad_hist_init(&sh->inference);
    sh->obs = vlad_latest_new(sizeof(vlad_obs_state), err);
    if (!sh->obs)
        goto fail;
    sh->out = vlad_spsc_new(sizeof(vlad_out_rec), 1024, err);
    if (!sh->out)
        goto fail;
    sh->chunks = vlad_spsc_new(sizeof(vlad_chunk_rec), 8, err);
    if (!sh->chunks)
        goto fail;
    d->io.image_tick = -1;
    sh->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sh->obs_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sh->req_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sh->wake_fd < 0 || sh->obs_fd < 0 || sh->req_fd < 0) {
        vlad_err_set(err, VLAD_EIO, "daemon: eventfd failed");
        goto fail;
    }
    d->io.sh = sh;
    d->io.srv = vlad_server_new(p, err);
    if (!d->io.srv)
        goto fail;
    /* recording (record.dir / record.file): the server's tap feeds it, a thread writes it */
    char rec_path[VLAD_PATH_MAX];
    if (vlad_record_path(p, rec_path, sizeof rec_path, err))
        goto fail;
    if (rec_path[0]) {
        d->io.rec = vlad_record_new(p, rec_path, (size_t)p->record.ring_kb * 1024, err);
        if (!d->io.rec)
            goto fail;
        vlad_server_set_tap(d->io.srv, vlad_record_tap, d->io.rec);
        VLAD_LOGI("recording to %s (images: %s, ring %d KiB)", rec_path,
                  p->record.images == VLAD_REC_IMAGES_FULL   ? "full"
                  : p->record.images == VLAD_REC_IMAGES_HASH ? "hash"
                                                             : "none",
                  p->record.ring_kb);
    }
    /* a daemon stopped while e-stopped starts e-stopped (the latch persists) */
    vlad_latch_path(p, sh->estop_file, sizeof sh->estop_file);
    bool latched;
    char reason[256];
    vlad_err lerr;
    if (vlad_latch_read(sh->estop_file, &latched, reason, sizeof reason, &lerr))
        VLAD_LOGW("%s", lerr.msg);
    if (latched) {
        atomic_store(&sh->estop_req, 1);
        VLAD_LOGW("e-stop latched by an earlier run (%s: %s): holding until `vladctl release`",
                  sh->estop_file, reason);
    }
    if (vlad_control_init(&d->ctl, sh, err))
        goto fail;
    if (attach_policy(d, err))
        goto fail;
    /* without a language model the channel has no slots: asks are refused (and counted) */
    if (!sh->lang && !(sh->lang = vlad_lang_new(0, 0, sh->wake_fd, err)))
        goto fail;
    return d;
fail:
    vlad_daemon_free(d);
    return NULL;
}

int vlad_daemon_start(vlad_daemon *d, vlad_err *err) {
    if (d->io.rec && vlad_record_start(d->io.rec, err))
        return err ? err->code : VLAD_ESTATE;
    if (pthread_create(&d->t_io, NULL, vlad_io_main, &d->io) != 0)
        return vlad_err_set(err, VLAD_ESTATE, "daemon: cannot start the I/O thread");
    d->started_io = true;
    if (pthread_create(&d->t_ctl, NULL, vlad_control_main, &d->ctl) != 0) {
        vlad_daemon_request_stop(d);
        return vlad_err_set(err, VLAD_ESTATE, "daemon: cannot start the control thread");
    }
    d->started_ctl = true;
    return VLAD_OK;
}

void vlad_daemon_request_stop(vlad_daemon *d) { atomic_store(&d->sh.stop, true); }

void vlad_daemon_summary(vlad_daemon *d, char *buf, size_t cap) {
    vlad_shared *sh = &d->sh;
    vlad_hist_summary j;
    vlad_hist_summarize(&sh->jitter, &j);
    snprintf(buf, cap,
             "ticks=%lld actions=%llu observations=%llu bad_obs=%llu bad_cmd=%llu stalls=%llu "
             "watchdog_trips=%llu overruns=%llu jitter_us p50=%.0f p99=%.0f max=%.0f",
             (long long)atomic_load(&sh->tick), (unsigned long long)atomic_load(&sh->actions_published),
             (unsigned long long)atomic_load(&sh->observations),
             (unsigned long long)atomic_load(&sh->bad_obs),
             (unsigned long long)atomic_load(&sh->bad_cmd),
             (unsigned long long)atomic_load(&sh->stall_ticks),
             (unsigned long long)atomic_load(&sh->watchdog_trips),
             (unsigned long long)atomic_load(&sh->overruns), j.p50_us, j.p99_us, j.max_us);
    if (d->io.rec) {
        vlad_record_stats rs;
        vlad_record_stats_get(d->io.rec, &rs);
        size_t n = strlen(buf);
        snprintf(buf + n, cap > n ? cap - n : 0,
                 " record=%s entries=%llu dropped=%llu bytes=%llu%s%s", vlad_record_file(d->io.rec),
                 (unsigned long long)rs.entries, (unsigned long long)rs.dropped,
                 (unsigned long long)rs.bytes, rs.failed ? " error: " : "", rs.error);
    }
}

void vlad_daemon_free(vlad_daemon *d) {
    if (!d)
        return;
    vlad_daemon_request_stop(d);
    if (d->started_ctl)
        pthread_join(d->t_ctl, NULL);
    if (d->started_io)
        pthread_join(d->t_io, NULL);
    /* after io, its only producer: the writer writes what was queued, then stops */
    vlad_record_free(d->io.rec);
    vlad_worker_free(d->worker);
#ifdef VLAD_HAVE_ENGINE
    vlad_engine_policy_free(d->engine);
#endif
#ifdef VLAD_HAVE_REMOTE
    vlad_remote_policy_free(d->remote);
#endif
    vlad_lang_free(d->sh.lang);
    vlad_server_free(d->io.srv);
    vlad_frames_free(d->sh.frames);
    vlad_view_hist_free(d->io.views);
    vlad_spsc_free(d->sh.chunks);
    vlad_latest_free(d->sh.obs);
    vlad_spsc_free(d->sh.out);
    if (d->sh.wake_fd >= 0)
        close(d->sh.wake_fd);
    if (d->sh.obs_fd >= 0)
        close(d->sh.obs_fd);
    if (d->sh.req_fd >= 0)
        close(d->sh.req_fd);
    pthread_mutex_destroy(&d->sh.text_mu);
    pthread_mutex_destroy(&d->sh.remote.mu);
    free(d);
}
