#include "spsc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct vlad_spsc {
    size_t elem, mask;
    _Alignas(64) _Atomic size_t head; /* next write (producer) */
    _Alignas(64) _Atomic size_t tail; /* next read (consumer) */
    _Alignas(64) unsigned char data[];
};

vlad_spsc *vlad_spsc_new(size_t elem_size, size_t capacity, vlad_err *err) {
    size_t cap = 1;
    while (cap < capacity)
        cap <<= 1;
    if (!elem_size || cap > ((size_t)1 << 24)) {
        vlad_err_set(err, VLAD_EINVAL, "spsc: bad size (%zu x %zu)", elem_size, capacity);
        return NULL;
    }
    vlad_spsc *r = calloc(1, sizeof *r + elem_size * cap);
    if (!r) {
        vlad_err_set(err, VLAD_ENOMEM, "spsc: out of memory");
        return NULL;
    }
    r->elem = elem_size;
    r->mask = cap - 1;
    return r;
}

void vlad_spsc_free(vlad_spsc *r) { free(r); }

bool vlad_spsc_push(vlad_spsc *r, const void *rec) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (h - t > r->mask)
        return false;
    memcpy(r->data + (h & r->mask) * r->elem, rec, r->elem);
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return true;
}

bool vlad_spsc_pop(vlad_spsc *r, void *rec) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t == h)
        return false;
    memcpy(rec, r->data + (t & r->mask) * r->elem, r->elem);
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return true;
}

size_t vlad_spsc_size(const vlad_spsc *r) {
    return atomic_load_explicit(&r->head, memory_order_acquire) -
           atomic_load_explicit(&r->tail, memory_order_acquire);
}
