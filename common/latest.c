#include "latest.h"

#include <stdatomic.h>
#include <stdlib.h>

/* state word: bits 0-1 index of the "middle" buffer, bit 2 = middle holds an unread value */
#define DIRTY 4u

struct vlad_latest {
    size_t size;
    unsigned char *buf[3];
    _Atomic unsigned middle; /* index | DIRTY */
    unsigned back;           /* writer-owned */
    unsigned front;          /* reader-owned */
    _Atomic uint64_t count;
};

vlad_latest *vlad_latest_new(size_t size, vlad_err *err) {
    vlad_latest *l = calloc(1, sizeof *l);
    if (!l) {
        vlad_err_set(err, VLAD_ENOMEM, "latest slot: out of memory");
        return NULL;
    }
    l->size = size;
    for (int i = 0; i < 3; i++) {
        l->buf[i] = calloc(1, size ? size : 1);
        if (!l->buf[i]) {
            vlad_latest_free(l);
            vlad_err_set(err, VLAD_ENOMEM, "latest slot: out of memory (%zu bytes)", size);
            return NULL;
        }
    }
    l->front = 0;
    atomic_init(&l->middle, 1u);
    l->back = 2;
    atomic_init(&l->count, 0);
    return l;
}

void vlad_latest_free(vlad_latest *l) {
    if (!l)
        return;
    for (int i = 0; i < 3; i++)
        free(l->buf[i]);
    free(l);
}

void *vlad_latest_write_buf(vlad_latest *l) { return l->buf[l->back]; }

void vlad_latest_publish(vlad_latest *l) {
    unsigned old = atomic_exchange_explicit(&l->middle, l->back | DIRTY, memory_order_acq_rel);
    l->back = old & 3u;
    atomic_fetch_add_explicit(&l->count, 1, memory_order_relaxed);
}

const void *vlad_latest_read(vlad_latest *l, bool *fresh) {
    bool got = false;
    if (atomic_load_explicit(&l->middle, memory_order_relaxed) & DIRTY) {
        unsigned old = atomic_exchange_explicit(&l->middle, l->front, memory_order_acq_rel);
        l->front = old & 3u;
        got = true;
    }
    if (fresh)
        *fresh = got;
    return l->buf[l->front];
}

uint64_t vlad_latest_count(const vlad_latest *l) {
    return atomic_load_explicit(&l->count, memory_order_relaxed);
}
