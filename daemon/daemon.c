#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "io.h"
#include "log.h"

struct vlad_daemon {
    vlad_shared sh;
    vlad_control ctl;
    vlad_io io;
    pthread_t t_io, t_ctl;
    bool started_io, started_ctl;
};

vlad_daemon *vlad_daemon_new(const vlad_profile *p, vlad_err *err) {
    vlad_daemon *d = calloc(1, sizeof *d);
    if (!d) {
        vlad_err_set(err, VLAD_ENOMEM, "daemon: out of memory");
        return NULL;
    }
    vlad_shared *sh = &d->sh;
    sh->p = p;
    sh->wake_fd = sh->obs_fd = -1;
    sh->start_ns = vlad_now_ns();
    pthread_mutex_init(&sh->text_mu, NULL);
    snprintf(sh->instruction, sizeof sh->instruction, "%s", p->policy.instruction);
    vlad_hist_init(&sh->jitter);
    vlad_hist_init(&sh->inference);
    sh->obs = vlad_latest_new(sizeof(vlad_obs_state), err);
    if (!sh->obs)
        goto fail;
    sh->out = vlad_spsc_new(sizeof(vlad_out_rec), 1024, err);
    if (!sh->out)
        goto fail;
    sh->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sh->obs_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sh->wake_fd < 0 || sh->obs_fd < 0) {
        vlad_err_set(err, VLAD_EIO, "daemon: eventfd failed");
        goto fail;
    }
    d->io.sh = sh;
    d->io.srv = vlad_server_new(p, err);
    if (!d->io.srv)
        goto fail;
    if (vlad_control_init(&d->ctl, sh, err))
        goto fail;
    return d;
fail:
    vlad_daemon_free(d);
    return NULL;
}

int vlad_daemon_start(vlad_daemon *d, vlad_err *err) {
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
}

void vlad_daemon_free(vlad_daemon *d) {
    if (!d)
        return;
    vlad_daemon_request_stop(d);
    if (d->started_ctl)
        pthread_join(d->t_ctl, NULL);
    if (d->started_io)
        pthread_join(d->t_io, NULL);
    vlad_server_free(d->io.srv);
    vlad_latest_free(d->sh.obs);
    vlad_spsc_free(d->sh.out);
    if (d->sh.wake_fd >= 0)
        close(d->sh.wake_fd);
    if (d->sh.obs_fd >= 0)
        close(d->sh.obs_fd);
    pthread_mutex_destroy(&d->sh.text_mu);
    free(d);
}
