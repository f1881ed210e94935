#include "worker.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"

enum { IDLE, QUEUED, RUNNING, DONE };

struct vlad_worker {
    vlad_policy_ops ops;
    int64_t min_latency_ns;
    bool pad;
    pthread_mutex_t *prompt_mu;
    const char *prompt;
    _Atomic int state;
    _Atomic bool stop;
    _Atomic uint64_t completed;
    int job_fd, done_fd;
    pthread_t thread;
    bool started;
    vlad_infer_job job;
    int64_t submitted_ns;  /* written by control before the job is QUEUED */
    uint8_t *images;
    vlad_infer_result res;
};

static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w;
}

static void drain_fd(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

/* Niceness of the worker thread: inference yields the CPU to the control and I/O
 * threads whenever they wake (Linux applies nice per thread). */
#define WORKER_NICE 10

static void run_job(vlad_worker *w) {
    vlad_infer_result *r = &w->res;
    r->req = w->job.req;
    r->submitted_ns = w->submitted_ns;
    r->started_ns = vlad_now_ns();
    if (w->prompt_mu && w->prompt) {
        pthread_mutex_lock(w->prompt_mu);
        snprintf(w->job.prompt, sizeof w->job.prompt, "%s", w->prompt);
        pthread_mutex_unlock(w->prompt_mu);
    }
    vlad_err err;
    err.msg[0] = 0;
    int rc = w->ops.infer(w->ops.self, &w->job, r->actions, &err);
    r->degraded = rc == VLAD_POLICY_DEGRADED;
    r->status = r->degraded ? VLAD_OK : rc;
    snprintf(r->error, sizeof r->error, "%s", rc ? err.msg : "");
    if (w->pad)
        vlad_sleep_until_ns(r->started_ns + w->min_latency_ns);
    r->done_ns = vlad_now_ns();
    r->latency_ns = r->done_ns - r->submitted_ns;
    atomic_fetch_add(&w->completed, 1);
    atomic_store_explicit(&w->state, DONE, memory_order_release);
    signal_fd(w->done_fd);
}

/* Jobs first; between() after each job, when its wake fd fires, and every idle_ns while it
 * has work left and no job comes. */
static void *worker_main(void *arg) {
    vlad_worker *w = arg;
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE);
    bool (*between)(void *, vlad_worker *, vlad_between_why) = w->ops.between;
    bool more = false;
    int64_t last = vlad_now_ns();
    while (!atomic_load(&w->stop)) {
        int timeout = 100;
        if (between && more) {
            int64_t left = last + w->ops.idle_ns - vlad_now_ns();
            timeout = left <= 0 ? 0 : (int)(left / VLAD_NS_PER_MS) + 1;
            if (timeout > 100)
                timeout = 100;
        }
        struct pollfd pfd[2] = {{.fd = w->job_fd, .events = POLLIN},
                                {.fd = between ? w->ops.wake_fd : -1, .events = POLLIN}};
        int n = poll(pfd, between && w->ops.wake_fd >= 0 ? 2 : 1, timeout);
        if (n > 0 && (pfd[0].revents & POLLIN))
            drain_fd(w->job_fd);
        bool woke = n > 0 && (pfd[1].revents & POLLIN);
        int expect = QUEUED;
        if (atomic_compare_exchange_strong(&w->state, &expect, RUNNING)) {
            run_job(w);
            if (between) {
                more = between(w->ops.self, w, VLAD_BETWEEN_FRAME);
                last = vlad_now_ns();
            }
            continue;
        }
        if (!between)
            continue;
        if (woke) /* the callee clears its own wake fd */
            more = between(w->ops.self, w, VLAD_BETWEEN_WAKE);
        else if (more && vlad_now_ns() - last >= w->ops.idle_ns) {
            more = between(w->ops.self, w, VLAD_BETWEEN_IDLE);
            last = vlad_now_ns();
        }
    }
    return NULL;
}

vlad_worker *vlad_worker_new(const vlad_policy_ops *ops, size_t image_bytes, int64_t min_latency_ns,
                             bool pad_latency, pthread_mutex_t *prompt_mu, const char *prompt,
                             vlad_err *err) {
    if (!ops || !ops->infer || ops->horizon < 1 || ops->horizon > VLAD_AQ_MAX_H || ops->dim < 1 ||
        ops->dim > VLAD_AQ_MAX_DIM || (ops->between && ops->idle_ns <= 0)) {
        vlad_err_set(err, VLAD_EINVAL, "worker: policy horizon/dim (or idle period) out of range");
        return NULL;
    }
    vlad_worker *w = calloc(1, sizeof *w);
    if (!w) {
        vlad_err_set(err, VLAD_ENOMEM, "worker: out of memory");
        return NULL;
    }
    w->ops = *ops;
    w->min_latency_ns = min_latency_ns;
    w->pad = pad_latency;
    w->prompt_mu = prompt_mu;
    w->prompt = prompt;
    w->job_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->images = calloc(1, image_bytes ? image_bytes : 1);
    if (w->job_fd < 0 || w->done_fd < 0 || !w->images) {
        vlad_err_set(err, VLAD_ENOMEM, "worker: cannot allocate buffers");
        vlad_worker_free(w);
        return NULL;
    }
    w->job.images = w->images; /* zeros until the control thread hands a frame */
    w->job.image_bytes = image_bytes;
    w->job.image_tick = -1;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        vlad_err_set(err, VLAD_ESTATE, "worker: cannot start thread");
        vlad_worker_free(w);
        return NULL;
    }
    w->started = true;
    return w;
}

void vlad_worker_free(vlad_worker *w) {
    if (!w)
        return;
    atomic_store(&w->stop, true);
    if (w->started) {
        signal_fd(w->job_fd);
        pthread_join(w->thread, NULL);
    }
    if (w->job_fd >= 0)
        close(w->job_fd);
    if (w->done_fd >= 0)
        close(w->done_fd);
    free(w->images);
    free(w);
}

bool vlad_worker_idle(const vlad_worker *w) { return atomic_load(&w->state) == IDLE; }
bool vlad_worker_job_queued(const vlad_worker *w) { return atomic_load(&w->state) == QUEUED; }
vlad_infer_job *vlad_worker_job(vlad_worker *w) { return &w->job; }
const uint8_t *vlad_worker_zero_images(const vlad_worker *w) { return w->images; }
uint64_t vlad_worker_completed(const vlad_worker *w) { return atomic_load(&w->completed); }

int vlad_worker_submit(vlad_worker *w) {
    if (atomic_load(&w->state) != IDLE)
        return VLAD_EAGAIN;
    w->submitted_ns = vlad_now_ns(); /* published by the CAS below */
    int expect = IDLE;
    if (!atomic_compare_exchange_strong(&w->state, &expect, QUEUED))
        return VLAD_EAGAIN;
    signal_fd(w->job_fd);
    return VLAD_OK;
}

const vlad_infer_result *vlad_worker_poll(vlad_worker *w) {
    return atomic_load_explicit(&w->state, memory_order_acquire) == DONE ? &w->res : NULL;
}

const vlad_infer_result *vlad_worker_wait(vlad_worker *w, int timeout_ms, int abort_fd) {
    int64_t deadline = vlad_now_ns() + (int64_t)timeout_ms * VLAD_NS_PER_MS;
    for (;;) {
        const vlad_infer_result *r = vlad_worker_poll(w);
        if (r)
            return r;
        int64_t left = deadline - vlad_now_ns();
        if (left <= 0 || atomic_load(&w->state) == IDLE)
            return NULL;
        struct pollfd pfd[2] = {{.fd = w->done_fd, .events = POLLIN},
                                {.fd = abort_fd, .events = POLLIN}};
        if (poll(pfd, abort_fd >= 0 ? 2 : 1, (int)(left / VLAD_NS_PER_MS) + 1) > 0) {
            if (pfd[0].revents & POLLIN)
                drain_fd(w->done_fd);
            if (abort_fd >= 0 && (pfd[1].revents & POLLIN))
                return vlad_worker_poll(w);
        }
    }
}

void vlad_worker_release(vlad_worker *w) {
    int expect = DONE;
    atomic_compare_exchange_strong(&w->state, &expect, IDLE);
}
