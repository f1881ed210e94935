#include "frames.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NBUF 4
#define WRITING UINT64_MAX

struct vlad_frames {
    size_t bytes;
    uint8_t *buf[NBUF];
    _Atomic uint64_t id_of[NBUF]; /* frame id held (0 none, WRITING while written) */
    _Atomic uint64_t pinned;      /* written by the pinning thread */
    _Atomic uint64_t newest;      /* written by the writer */
    /* writer only */
    int newest_buf, writing_buf;
    uint64_t next_id;
};

vlad_frames *vlad_frames_new(size_t bytes, vlad_err *err) {
    vlad_frames *f = calloc(1, sizeof *f);
    if (!f) {
        vlad_err_set(err, VLAD_ENOMEM, "frames: out of memory");
        return NULL;
    }
    f->bytes = bytes;
    for (int i = 0; i < NBUF; i++) {
        f->buf[i] = calloc(1, bytes ? bytes : 1);
        if (!f->buf[i]) {
            vlad_frames_free(f);
            vlad_err_set(err, VLAD_ENOMEM, "frames: out of memory for %d x %zu bytes", NBUF, bytes);
            return NULL;
        }
        atomic_init(&f->id_of[i], 0);
    }
    f->newest_buf = 0;
    f->writing_buf = -1;
    f->next_id = 1;
    return f;
}

void vlad_frames_free(vlad_frames *f) {
    if (!f)
        return;
    for (int i = 0; i < NBUF; i++)
        free(f->buf[i]);
    free(f);
}

size_t vlad_frames_bytes(const vlad_frames *f) { return f->bytes; }

uint8_t *vlad_frames_write_buf(vlad_frames *f) {
    if (f->writing_buf >= 0)
        return f->buf[f->writing_buf];
    for (;;) {
        uint64_t pin = atomic_load(&f->pinned);
        for (int b = 0; b < NBUF; b++) {
            uint64_t held = atomic_load(&f->id_of[b]);
            if (b == f->newest_buf || (held != 0 && held == pin))
                continue;
            atomic_store(&f->id_of[b], WRITING);
            /* the pinning thread may have pinned `held` between our two loads: back off */
            if (held != 0 && atomic_load(&f->pinned) == held) {
                atomic_store(&f->id_of[b], held);
                continue;
            }
            f->writing_buf = b;
            if (f->next_id > 1) /* carry the newest frame forward */
                memcpy(f->buf[b], f->buf[f->newest_buf], f->bytes);
            return f->buf[b];
        }
        /* unreachable with NBUF >= 3 (newest + one pin excluded); loop defensively */
    }
}

uint64_t vlad_frames_publish(vlad_frames *f) {
    if (f->writing_buf < 0)
        vlad_frames_write_buf(f);
    uint64_t id = f->next_id++;
    atomic_store_explicit(&f->id_of[f->writing_buf], id, memory_order_release);
    f->newest_buf = f->writing_buf;
    f->writing_buf = -1;
    atomic_store_explicit(&f->newest, id, memory_order_release);
    return id;
}

uint64_t vlad_frames_newest(const vlad_frames *f) {
    return atomic_load_explicit(&f->newest, memory_order_acquire);
}

const uint8_t *vlad_frames_pin(vlad_frames *f, uint64_t id) {
    if (id == 0 || id == WRITING)
        return NULL;
    for (int b = 0; b < NBUF; b++) {
        if (atomic_load(&f->id_of[b]) != id)
            continue;
        atomic_store(&f->pinned, id);
        if (atomic_load(&f->id_of[b]) == id)
            return f->buf[b];
        break;
    }
    atomic_store(&f->pinned, 0);
    return NULL;
}

void vlad_frames_unpin(vlad_frames *f) { atomic_store(&f->pinned, 0); }
