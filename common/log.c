#include "log.h"

#include <fcntl.h>
#include <unistd.h>

#include "path.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "clock.h"

/* Vyukov bounded MPMC queue; here many producers, one consumer (the logger thread). */
#define RING 1024 /* power of two */

typedef struct {
    _Atomic size_t seq;
    int level;
    int64_t stamp_ns;
    char msg[VLAD_LOG_MSG_MAX];
} slot;

static slot g_ring[RING];
static _Atomic size_t g_head; /* next slot to claim (producers) */
static size_t g_tail;         /* next slot to read (consumer) */
static _Atomic int g_level = VLAD_LOG_INFO;
static _Atomic bool g_running;
static _Atomic bool g_stop;
static _Atomic uint64_t g_dropped;
static _Atomic uint64_t g_write_failures;
/* Producers between "about to look at g_running" and "done with the ring". vlad_log_stop
 * waits for it to reach 0 after clearing g_running (both seq_cst: a producer either sees
 * g_running false or is seen by the stop), so no producer still writes a slot when the
 * logger thread's final drain runs or when a later vlad_log_start re-initialises the ring. */
static _Atomic unsigned g_writers;
static pthread_mutex_t g_ctl_mu = PTHREAD_MUTEX_INITIALIZER; /* start/stop against each other */
static pthread_t g_thread;  /* start/stop under g_ctl_mu */
static FILE *g_sink;        /* the logger thread's, between pthread_create and pthread_join */
static bool g_sink_owned;
/* Time origin of the stamps: set once, by whichever thread logs or starts first. */
static _Atomic int64_t g_t0;

static int64_t t0_ns(void) {
    int64_t t = atomic_load_explicit(&g_t0, memory_order_relaxed);
    if (t)
        return t;
    int64_t now = vlad_now_ns(), expected = 0;
    if (now == 0)
        now = 1; /* 0 means "unset" */
    if (atomic_compare_exchange_strong_explicit(&g_t0, &expected, now, memory_order_relaxed,
                                                memory_order_relaxed))
        return now;
    return expected; /* another thread set it first */
}

static const char *names[] = {"error", "warn", "info", "debug"};

int vlad_log_level_parse(const char *s, vlad_log_level *out) {
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (vlad_log_level)i;
            return VLAD_OK;
        }
    return VLAD_EINVAL;
}

const char *vlad_log_level_name(vlad_log_level l) {
    return (l >= 0 && l <= 3) ? names[l] : "?";
}

void vlad_log_set_level(vlad_log_level level) { atomic_store(&g_level, (int)level); }
vlad_log_level vlad_log_get_level(void) { return (vlad_log_level)atomic_load(&g_level); }
uint64_t vlad_log_dropped(void) { return atomic_load(&g_dropped); }
uint64_t vlad_log_write_failures(void) { return atomic_load(&g_write_failures); }

static void write_line(FILE *f, int level, int64_t stamp_ns, const char *msg) {
    double t = (double)(stamp_ns - t0_ns()) / 1e9;
    fprintf(f, "[%10.4f] %-5s %s\n", t, vlad_log_level_name((vlad_log_level)level), msg);
}

/* consumer: pop one message into *out; false if empty */
static bool pop(slot *out) {
    slot *s = &g_ring[g_tail & (RING - 1)];
    size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (seq != g_tail + 1)
        return false;
    out->level = s->level;
    out->stamp_ns = s->stamp_ns;
    memcpy(out->msg, s->msg, sizeof out->msg);
    atomic_store_explicit(&s->seq, g_tail + RING, memory_order_release);
    g_tail++;
    return true;
}

static void drain(void) {
    slot m;
    int n = 0;
    while (pop(&m)) {
        write_line(g_sink, m.level, m.stamp_ns, m.msg);
        n++;
    }
    if (n && (fflush(g_sink) != 0 || ferror(g_sink))) {
        /* a full disk, a file that went away: count what was lost (vlad_log_write_failures) */
        atomic_fetch_add(&g_write_failures, (uint64_t)n);
        clearerr(g_sink);
    }
}

static void *logger_main(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        drain();
        vlad_sleep_until_ns(vlad_now_ns() + 5 * VLAD_NS_PER_MS);
    }
    drain();
    return NULL;
}

int vlad_log_start(const char *path, vlad_err *err) {
    pthread_mutex_lock(&g_ctl_mu);
    if (atomic_load(&g_running)) {
        pthread_mutex_unlock(&g_ctl_mu);
        return VLAD_OK;
    }
    (void)t0_ns();
    /* no producer touches the ring now: g_running is false and vlad_log_stop waited for
     * those that saw it true */
    for (size_t i = 0; i < RING; i++)
        atomic_store_explicit(&g_ring[i].seq, i, memory_order_relaxed);
    atomic_store(&g_head, 0);
    g_tail = 0;
    if (path && path[0]) {
        /* a regular file only: a FIFO would block, a device (/dev/full) would lose every line */
        vlad_err e2;
        int fd = vlad_open_regular(path, O_WRONLY | O_CREAT | O_APPEND, 0644, &e2);
        g_sink = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (!g_sink) {
            if (fd >= 0)
                close(fd);
            pthread_mutex_unlock(&g_ctl_mu);
            return vlad_err_set(err, VLAD_EIO, "logging.file: %s", fd >= 0 ? path : e2.msg);
        }
        g_sink_owned = true;
    } else {
        g_sink = stderr;
        g_sink_owned = false;
    }
    atomic_store(&g_stop, false);
    if (pthread_create(&g_thread, NULL, logger_main, NULL) != 0) {
        if (g_sink_owned)
            fclose(g_sink);
        g_sink = NULL;
        g_sink_owned = false;
        pthread_mutex_unlock(&g_ctl_mu);
        return vlad_err_set(err, VLAD_ESTATE, "logger: cannot start thread");
    }
    atomic_store(&g_running, true); /* publishes the initialised ring to producers */
    pthread_mutex_unlock(&g_ctl_mu);
    return VLAD_OK;
}

void vlad_log_stop(void) {
    pthread_mutex_lock(&g_ctl_mu);
    if (!atomic_exchange(&g_running, false)) {
        pthread_mutex_unlock(&g_ctl_mu);
        return;
    }
    /* producers that saw g_running true finish their slot (a bounded amount of work: they
     * never block); their messages are still drained below */
    while (atomic_load(&g_writers) != 0)
        vlad_sleep_until_ns(vlad_now_ns() + 100000);
    atomic_store(&g_stop, true);
    pthread_join(g_thread, NULL);
    if (g_sink_owned)
        fclose(g_sink);
    g_sink = NULL;
    g_sink_owned = false;
    pthread_mutex_unlock(&g_ctl_mu);
}

void vlad_log(vlad_log_level level, const char *fmt, ...) {
    if ((int)level > atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    (void)t0_ns();
    va_list ap;
    va_start(ap, fmt);
    atomic_fetch_add(&g_writers, 1); /* seq_cst: ordered before the g_running load */
    if (!atomic_load(&g_running)) {
        atomic_fetch_sub(&g_writers, 1);
        char buf[VLAD_LOG_MSG_MAX];
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        write_line(stderr, (int)level, vlad_now_ns(), buf);
        return;
    }
    size_t pos = atomic_load_explicit(&g_head, memory_order_relaxed);
    slot *s;
    for (;;) {
        s = &g_ring[pos & (RING - 1)];
        size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&g_head, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) { /* full */
            atomic_fetch_add(&g_dropped, 1);
            atomic_fetch_sub_explicit(&g_writers, 1, memory_order_release);
            va_end(ap);
            return;
        } else {
            pos = atomic_load_explicit(&g_head, memory_order_relaxed);
        }
    }
    s->level = (int)level;
    s->stamp_ns = vlad_now_ns();
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
    atomic_fetch_sub_explicit(&g_writers, 1, memory_order_release);
}
