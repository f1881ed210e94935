#include "lang.h"

#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "spsc.h"

/* pieces queued before the worker waits: a few frames of every stream's pieces */
#define PIECES_CAP 1024

struct vlad_lang {
    int max_streams, max_question;
    int wake_fd;         /* io's (not owned) */
    int req_fd;          /* worker's (owned) */
    vlad_spsc *reqs, *pieces;
    _Atomic uint32_t next_id;
    vlad_lang_stats st;
};

vlad_lang *vlad_lang_new(int max_streams, int max_question, int wake_fd, vlad_err *err) {
    if (max_streams < 0 || max_streams > 64 || max_question < 0) {
        vlad_err_set(err, VLAD_EINVAL, "lang: max_streams %d outside [0, 64]", max_streams);
        return NULL;
    }
    vlad_lang *l = calloc(1, sizeof *l);
    if (!l) {
        vlad_err_set(err, VLAD_ENOMEM, "lang: out of memory");
        return NULL;
    }
    l->max_streams = max_streams;
    l->max_question = max_question < VLAD_LANG_Q_MAX ? max_question : VLAD_LANG_Q_MAX;
    l->wake_fd = wake_fd;
    l->req_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->reqs = vlad_spsc_new(sizeof(vlad_lang_req), (size_t)(max_streams ? max_streams : 1), err);
    l->pieces = l->reqs ? vlad_spsc_new(sizeof(vlad_lang_piece), PIECES_CAP, err) : NULL;
    if (l->req_fd < 0 || !l->pieces) {
        if (l->req_fd < 0)
            vlad_err_set(err, VLAD_EIO, "lang: eventfd failed");
        vlad_lang_free(l);
        return NULL;
    }
    return l;
}

void vlad_lang_free(vlad_lang *l) {
    if (!l)
        return;
    vlad_spsc_free(l->reqs);
    vlad_spsc_free(l->pieces);
    if (l->req_fd >= 0)
        close(l->req_fd);
    free(l);
}

int vlad_lang_max_streams(const vlad_lang *l) { return l->max_streams; }
int vlad_lang_max_question(const vlad_lang *l) { return l->max_question; }
vlad_lang_stats *vlad_lang_stats_of(vlad_lang *l) { return &l->st; }

bool vlad_lang_reserve(vlad_lang *l) {
    uint32_t cur = atomic_load(&l->st.reserved);
    do {
        if (cur >= (uint32_t)l->max_streams)
            return false;
    } while (!atomic_compare_exchange_weak(&l->st.reserved, &cur, cur + 1));
    return true;
}

void vlad_lang_unreserve(vlad_lang *l) { atomic_fetch_sub(&l->st.reserved, 1); }

uint32_t vlad_lang_next_id(vlad_lang *l) { return atomic_fetch_add(&l->next_id, 1) + 1; }

static void signal_fd(int fd) {
    if (fd < 0)
        return;
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w;
}

int vlad_lang_submit(vlad_lang *l, const vlad_lang_req *r, vlad_err *err) {
    if (!vlad_spsc_push(l->reqs, r))
        return vlad_err_set(err, VLAD_ESTATE, "lang: request queue full");
    signal_fd(l->req_fd);
    return VLAD_OK;
}

bool vlad_lang_take(vlad_lang *l, vlad_lang_req *r) { return vlad_spsc_pop(l->reqs, r); }

int vlad_lang_request_fd(const vlad_lang *l) { return l->req_fd; }

void vlad_lang_clear_wake(vlad_lang *l) {
    uint64_t v;
    ssize_t r = read(l->req_fd, &v, sizeof v);
    (void)r;
}

int vlad_lang_emit(vlad_lang *l, const vlad_lang_piece *p, const _Atomic bool *stop) {
    bool waited = false;
    while (!vlad_spsc_push(l->pieces, p)) {
        if (stop && atomic_load(stop))
            return VLAD_ESTATE;
        if (!waited)
            atomic_fetch_add(&l->st.piece_waits, 1);
        waited = true;
        signal_fd(l->wake_fd);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    signal_fd(l->wake_fd);
    return VLAD_OK;
}

bool vlad_lang_next_piece(vlad_lang *l, vlad_lang_piece *p) { return vlad_spsc_pop(l->pieces, p); }
