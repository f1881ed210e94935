/* The camera-frame pool (common/frames.h): ids, carrying the newest frame forward, pinning,
 * and a two-thread stress test in which the writer publishes as fast as it can while the
 * pinning thread holds and re-reads frames: a pinned buffer must never change under it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "frames.h"

/* frame `id`'s content: every byte id & 0xff, the id itself in the first 8 bytes */
static void fill(uint8_t *b, size_t bytes, uint64_t id) {
    memset(b, (int)(id & 0xff), bytes);
    if (bytes >= 8)
        memcpy(b, &id, 8);
}

/* 0 if b holds frame `id` exactly, else the first offending offset + 1 */
static size_t check(const uint8_t *b, size_t bytes, uint64_t id) {
    uint64_t stored;
    memcpy(&stored, b, 8);
    if (stored != id)
        return 1;
    for (size_t i = 8; i < bytes; i++)
        if (b[i] != (uint8_t)(id & 0xff))
            return i + 1;
    return 0;
}

static void test_single_thread(void **state) {
    (void)state;
    const size_t n = 64;
    vlad_err err;
    vlad_frames *f = vlad_frames_new(n, &err);
    assert_non_null(f);
    assert_int_equal(vlad_frames_bytes(f), n);
    assert_int_equal(vlad_frames_newest(f), 0);
    assert_null(vlad_frames_pin(f, 0));
    assert_null(vlad_frames_pin(f, 1)); /* not published yet */
    uint8_t *w = vlad_frames_write_buf(f);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(w[i], 0); /* zeros before the first publish */
    assert_ptr_equal(vlad_frames_write_buf(f), w); /* the same buffer until publish */
    fill(w, n, 1);
    assert_int_equal(vlad_frames_publish(f), 1);
    assert_int_equal(vlad_frames_newest(f), 1);

    /* 30 more frames; each write buffer starts as a copy of the newest frame */
    enum { N = 31 };
    const uint8_t *where[N + 1] = {0};
    where[1] = w;
    for (uint64_t id = 2; id <= N; id++) {
        uint8_t *b = vlad_frames_write_buf(f);
        assert_int_equal(check(b, n, id - 1), 0); /* carried forward */
        assert_ptr_not_equal(b, where[id - 1]);   /* never the newest buffer itself */
        b[n - 1] = 0xEE;                          /* a partial update ... */
        assert_int_equal(b[0], (uint8_t)((id - 1) & 0xff));
        fill(b, n, id); /* ... then the whole frame */
        where[id] = b;
        assert_int_equal(vlad_frames_publish(f), id); /* ids increase by one */
        assert_int_equal(vlad_frames_newest(f), id);
    }
    /* the newest frame pins, with its content */
    const uint8_t *p = vlad_frames_pin(f, N);
    assert_ptr_equal(p, where[N]);
    assert_int_equal(check(p, n, N), 0);
    vlad_frames_unpin(f);
    /* a frame whose buffer a later frame reused is gone; any frame still pinnable is intact */
    int pinnable = 0;
    for (uint64_t id = 1; id <= N; id++) {
        bool reused = false;
        for (uint64_t later = id + 1; later <= N; later++)
            reused |= where[later] == where[id];
        const uint8_t *q = vlad_frames_pin(f, id);
        if (reused)
            assert_null(q);
        if (q) {
            assert_int_equal(check(q, n, id), 0);
            pinnable++;
        }
        vlad_frames_unpin(f);
    }
    assert_true(pinnable >= 1 && pinnable <= 4); /* four buffers */
    assert_null(vlad_frames_pin(f, N + 1));       /* not yet published */
    assert_null(vlad_frames_pin(f, UINT64_MAX));

    /* a pinned frame is never written while the writer goes on; the newest still carries */
    const uint8_t *held = vlad_frames_pin(f, N);
    assert_non_null(held);
    for (uint64_t id = N + 1; id <= N + 40; id++) {
        uint8_t *b = vlad_frames_write_buf(f);
        assert_ptr_not_equal(b, held);
        assert_int_equal(check(b, n, id - 1), 0);
        fill(b, n, id);
        assert_int_equal(vlad_frames_publish(f), id);
        assert_int_equal(check(held, n, N), 0);
    }
    /* a new pin replaces the old one */
    const uint8_t *p2 = vlad_frames_pin(f, N + 40);
    assert_non_null(p2);
    assert_int_equal(check(p2, n, N + 40), 0);
    vlad_frames_unpin(f);
    vlad_frames_free(f);
    vlad_frames_free(NULL);

    /* no cameras: zero-byte frames still get ids and pin */
    f = vlad_frames_new(0, &err);
    assert_non_null(f);
    assert_int_equal(vlad_frames_bytes(f), 0);
    assert_non_null(vlad_frames_write_buf(f));
    assert_int_equal(vlad_frames_publish(f), 1);
    assert_int_equal(vlad_frames_publish(f), 2); /* publish without write_buf is fine */
    assert_non_null(vlad_frames_pin(f, 2));
    vlad_frames_unpin(f);
    vlad_frames_free(f);
}

/* ---- two threads --------------------------------------------------------------------- */

#define BYTES (64 * 1024)

typedef struct writer_ctx {
    vlad_frames *f;
    atomic_bool stop;
    atomic_uint_fast64_t published;
    atomic_int bad_id; /* publish returned an unexpected id */
} writer_ctx;

static void *writer(void *arg) {
    writer_ctx *w = arg;
    uint64_t id = 0;
    while (!atomic_load(&w->stop)) {
        uint8_t *b = vlad_frames_write_buf(w->f);
        fill(b, BYTES, id + 1);
        uint64_t got = vlad_frames_publish(w->f);
        if (got != id + 1)
            atomic_store(&w->bad_id, 1);
        id = got;
        atomic_store(&w->published, id);
    }
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ~1 s: the main thread pins the newest frame, re-checks every byte of it for ~2 ms while the
 * writer keeps publishing, unpins, and again. A pin may fail (the frame was overwritten between
 * newest() and pin()); a successful one must hold exactly its frame the whole time. */
static void test_two_threads(void **state) {
    (void)state;
    static writer_ctx w;
    vlad_err err;
    w.f = vlad_frames_new(BYTES, &err);
    assert_non_null(w.f);
    atomic_init(&w.stop, false);
    atomic_init(&w.published, 0);
    atomic_init(&w.bad_id, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, &w), 0);
    long pins = 0, failed = 0, torn = 0, overlapped = 0, rechecks = 0;
    uint64_t last_pinned = 0;
    bool ids_monotonic = true;
    double t_end = now_s() + 1.0;
    char first_torn[160] = "";
    while (now_s() < t_end) {
        uint64_t id = vlad_frames_newest(w.f);
        if (id == 0)
            continue;
        const uint8_t *b = vlad_frames_pin(w.f, id);
        if (!b) {
            failed++;
            continue;
        }
        pins++;
        if (id < last_pinned)
            ids_monotonic = false;
        last_pinned = id;
        uint64_t pub0 = atomic_load(&w.published);
        double t_hold = now_s() + 0.002;
        do {
            size_t bad = check(b, BYTES, id);
            rechecks++;
            if (bad) {
                if (!torn++) {
                    uint64_t stored;
                    memcpy(&stored, b, 8);
                    snprintf(first_torn, sizeof first_torn,
                             "frame %llu: offset %zu holds 0x%02x, first 8 bytes say %llu",
                             (unsigned long long)id, bad - 1, b[bad - 1],
                             (unsigned long long)stored);
                }
                break;
            }
        } while (now_s() < t_hold);
        if (atomic_load(&w.published) > pub0)
            overlapped++; /* the writer published while this frame was held */
        vlad_frames_unpin(w.f);
    }
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    uint64_t published = atomic_load(&w.published);
    printf("# frames: %llu published; %ld pins (%ld with the writer publishing meanwhile, %ld "
           "re-checks of %d bytes), %ld pins refused, %ld torn\n",
           (unsigned long long)published, pins, overlapped, rechecks, BYTES, failed, torn);
    if (torn)
        fail_msg("%ld torn pinned frames; first: %s", torn, first_torn);
    assert_int_equal(atomic_load(&w.bad_id), 0);
    assert_true(ids_monotonic);
    assert_true(pins > 0);
    assert_true(overlapped > 0); /* the test did race the two */
    assert_true(published > 100);
    vlad_frames_free(w.f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
