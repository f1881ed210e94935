#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#ifndef VLAD_VERSION
#define VLAD_VERSION "unknown"
#endif

#define WBUF_BYTES (64 * 1024)
#define FLUSH_NS (100 * VLAD_NS_PER_MS)
#define POLL_NS (2 * VLAD_NS_PER_MS)
#define RING_WRAP 0xFFFFFFFFu /* ring record length meaning "continue at offset 0" */
#define DIGEST_MAX 128        /* one packed ImageDigest (camera name < VLAD_NAME_MAX) */

struct vlad_record {
    const vlad_profile *p;
    char path[VLAD_PATH_MAX];
    int fd;
    /* the ring: records [u32 n][n bytes, ready for the file], 4-byte aligned */
    uint8_t *ring;
    size_t cap;
    _Atomic uint64_t head; /* producer */
    _Atomic uint64_t tail; /* writer */
    uint64_t seq;          /* producer: entries offered so far */
    _Atomic uint64_t dropped, entries, bytes;
    _Atomic bool failed;   /* set once, after `error` is written */
    char error[VLAD_ERR_MSG_MAX];
    _Atomic bool stop;
    pthread_t thread;
    bool started;
    /* writer only */
    uint8_t *wbuf;
    size_t wlen;
    uint64_t wentries;     /* entries in wbuf */
    int64_t last_flush;
};

/* ---- protobuf wire helpers ----------------------------------------------------------- */

static size_t vsize(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *vput(uint8_t *d, uint64_t v) {
    while (v >= 0x80) {
        *d++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *d++ = (uint8_t)v;
    return d;
}

static uint8_t *put_varint_field(uint8_t *d, unsigned field, uint64_t v) {
    return vput(vput(d, (uint64_t)field << 3), v);
}

static uint8_t *put_len_field(uint8_t *d, unsigned field, const void *data, size_t n) {
    d = vput(vput(d, ((uint64_t)field << 3) | 2), n);
    memcpy(d, data, n);
    return d + n;
}

static size_t len_field_size(unsigned field, size_t n) {
    return vsize(((uint64_t)field << 3) | 2) + vsize(n) + n;
}

uint64_t vlad_record_image_hash(const uint8_t *data, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = 0;
        for (int b = 7; b >= 0; b--)
            w = (w << 8) | data[i + (size_t)b];
        h ^= w;
        h *= 0x100000001b3ull;
    }
    if (i < n) {
        uint64_t w = 0;
        for (size_t b = n; b-- > i;)
            w = (w << 8) | data[b];
        h ^= w;
        h *= 0x100000001b3ull;
    }
    return h ^ (uint64_t)n;
}

const char *vlad_record_kind_name(int kind) {
    static const char *names[] = {"?",      "HEADER",   "OBSERVATION", "COMMAND", "ACTION",
                                  "CHUNK",  "LANGUAGE", "EVENT",       "REPLY"};
    return kind >= 1 && kind <= 8 ? names[kind] : "?";
}

/* ---- the ring (producer side) ----------------------------------------------------- */

static size_t ring_need(size_t n) { return (4 + n + 3) & ~(size_t)3; }

/* Room for an n-byte record: its payload pointer, or NULL (full). *next: head once written. */
static uint8_t *ring_reserve(vlad_record *r, size_t n, uint64_t *next) {
    size_t need = ring_need(n);
    if (need > r->cap / 2)
        return NULL;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t off = (size_t)(head & (r->cap - 1));
    size_t to_end = r->cap - off, skip = need > to_end ? to_end : 0;
    if (head + skip + need - tail > r->cap)
        return NULL;
    if (skip) {
        uint32_t wrap = RING_WRAP;
        memcpy(r->ring + off, &wrap, 4);
        off = 0;
    }
    uint32_t len = (uint32_t)n;
    memcpy(r->ring + off, &len, 4);
    *next = head + skip + need;
    return r->ring + off + 4;
}

static void drop(vlad_record *r) { atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed); }

void vlad_record_tap(void *arg, int kind, const uint8_t *payload, size_t len,
                     const ProtobufCMessage *msg) {
    vlad_record *r = arg;
    uint64_t seq = r->seq++;
    if (kind < 1 || kind > 8 || atomic_load_explicit(&r->failed, memory_order_acquire)) {
        drop(r);
        return;
    }
    unsigned field = (unsigned)kind + 9; /* RecordEntry body: header = 10 ... reply = 17 */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint8_t head[64], *h = head;
    h = put_varint_field(h, 1, (uint64_t)vlad_now_ns());
    h = put_varint_field(h, 2, (uint64_t)((int64_t)wall.tv_sec * VLAD_NS_PER_S + wall.tv_nsec));
    h = put_varint_field(h, 3, (uint64_t)kind);
    h = put_varint_field(h, 4, seq);
    h = put_varint_field(h, 5, atomic_load_explicit(&r->dropped, memory_order_relaxed));
    size_t hlen = (size_t)(h - head);

    /* an observation without its pixels: packed again (shallow copies, no allocation) */
    const Vlad__Observation *o = (const Vlad__Observation *)msg;
    bool strip = kind == VLAD__RECORD_ENTRY__KIND__OBSERVATION && o &&
                 r->p->record.images != VLAD_REC_IMAGES_FULL && o->n_images > 0;
    Vlad__Observation oc;
    Vlad__CameraImage ic[VLAD_MAX_CAMERAS], *ip[VLAD_MAX_CAMERAS];
    uint8_t dig[VLAD_MAX_CAMERAS][DIGEST_MAX];
    size_t diglen[VLAD_MAX_CAMERAS];
    size_t ndig = 0, plen = len, extra = 0;
    if (strip) {
        if (o->n_images > VLAD_MAX_CAMERAS) { /* validation allows no more than the cameras */
            drop(r);
            return;
        }
        oc = *o;
        oc.images = ip;
        for (size_t i = 0; i < o->n_images; i++) {
            const Vlad__CameraImage *im = o->images[i];
            ic[i] = *im;
            ic[i].data.data = NULL;
            ic[i].data.len = 0;
            ip[i] = &ic[i];
            if (r->p->record.images == VLAD_REC_IMAGES_HASH) {
                size_t nl = strnlen(im->name ? im->name : "", VLAD_NAME_MAX);
                uint8_t *d = dig[ndig];
                d = put_len_field(d, 1, im->name ? im->name : "", nl);
                d = put_varint_field(d, 2, im->width);
                d = put_varint_field(d, 3, im->height);
                d = put_varint_field(d, 4, im->data.len);
                d = put_varint_field(d, 5, vlad_record_image_hash(im->data.data, im->data.len));
                diglen[ndig] = (size_t)(d - dig[ndig]);
                extra += len_field_size(20, diglen[ndig]);
                ndig++;
            }
        }
        plen = vlad__observation__get_packed_size(&oc);
    }
    size_t body = hlen + len_field_size(field, plen) + extra;
    size_t total = vsize(body) + body;
    uint64_t next;
    uint8_t *d = ring_reserve(r, total, &next);
    if (!d) {
        drop(r);
        return;
    }
    d = vput(d, body);
    memcpy(d, head, hlen);
    d += hlen;
    d = vput(vput(d, ((uint64_t)field << 3) | 2), plen);
    if (strip)
        d += vlad__observation__pack(&oc, d);
    else if (plen)
        memcpy(d, payload, plen), d += plen;
    for (size_t i = 0; i < ndig; i++)
        d = put_len_field(d, 20, dig[i], diglen[i]);
    atomic_store_explicit(&r->head, next, memory_order_release);
}

/* ---- the writer ------------------------------------------------------------------------ */

static void fail_write(vlad_record *r, int e, uint64_t lost) {
    if (!atomic_load_explicit(&r->failed, memory_order_relaxed)) {
        snprintf(r->error, sizeof r->error, "record: write %.300s: %s (recording stopped; the daemon "
                 "runs on)", r->path, strerror(e));
        atomic_store_explicit(&r->failed, true, memory_order_release);
    }
    atomic_fetch_add(&r->dropped, lost);
}

/* write all n bytes; false (and recording stopped) on an error */
static bool write_all(vlad_record *r, const uint8_t *d, size_t n, uint64_t entries) {
    while (n) {
        ssize_t w = write(r->fd, d, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fail_write(r, w < 0 ? errno : EIO, entries);
            return false;
        }
        atomic_fetch_add_explicit(&r->bytes, (uint64_t)w, memory_order_relaxed);
        d += w;
        n -= (size_t)w;
    }
    atomic_fetch_add_explicit(&r->entries, entries, memory_order_relaxed);
    return true;
}

static void flush_buf(vlad_record *r) {
    if (r->wlen && !atomic_load_explicit(&r->failed, memory_order_relaxed))
        write_all(r, r->wbuf, r->wlen, r->wentries);
    r->wlen = 0;
    r->wentries = 0;
    r->last_flush = vlad_now_ns();
}

static void put_entry(vlad_record *r, const uint8_t *d, size_t n) {
    if (atomic_load_explicit(&r->failed, memory_order_relaxed)) {
        atomic_fetch_add(&r->dropped, 1);
        return;
    }
    if (r->wlen + n > WBUF_BYTES)
        flush_buf(r);
    if (n > WBUF_BYTES) {
        if (!atomic_load_explicit(&r->failed, memory_order_relaxed))
            write_all(r, d, n, 1);
        else
            atomic_fetch_add(&r->dropped, 1);
        return;
    }
    memcpy(r->wbuf + r->wlen, d, n);
    r->wlen += n;
    r->wentries++;
}

/* everything queued now, into the buffer (and out, as it fills); returns entries taken */
static size_t drain(vlad_record *r) {
    size_t taken = 0;
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    while (tail != head) {
        size_t off = (size_t)(tail & (r->cap - 1));
        uint32_t n;
        memcpy(&n, r->ring + off, 4);
        if (n == RING_WRAP) {
            tail += r->cap - off;
            continue;
        }
        put_entry(r, r->ring + off + 4, n);
        tail += ring_need(n);
        atomic_store_explicit(&r->tail, tail, memory_order_release);
        taken++;
    }
    atomic_store_explicit(&r->tail, tail, memory_order_release);
    return taken;
}

static void *writer_main(void *arg) {
    vlad_record *r = arg;
    r->last_flush = vlad_now_ns();
    for (;;) {
        /* read before draining: all pushed before the stop request is then drained */
        bool stop = atomic_load_explicit(&r->stop, memory_order_acquire);
        if (drain(r))
            continue;
        if (r->wlen && (stop || vlad_now_ns() - r->last_flush >= FLUSH_NS))
            flush_buf(r);
        if (stop)
            break;
        vlad_sleep_until_ns(vlad_now_ns() + POLL_NS);
    }
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

int vlad_record_path(const vlad_profile *p, char *buf, size_t cap, vlad_err *err) {
    buf[0] = '\0';
    if (p->record.file[0]) {
        if ((size_t)snprintf(buf, cap, "%s", p->record.file) >= cap)
            return vlad_err_set(err, VLAD_ERANGE, "record.file: path too long");
        return VLAD_OK;
    }
    if (!p->record.dir[0])
        return VLAD_OK;
    struct stat st;
    if (mkdir(p->record.dir, 0755) && errno != EEXIST)
        return vlad_err_set(err, VLAD_EIO, "record.dir %s: cannot create it: %s", p->record.dir,
                            strerror(errno));
    if (stat(p->record.dir, &st) || !S_ISDIR(st.st_mode))
        return vlad_err_set(err, VLAD_EIO, "record.dir %s: not a folder", p->record.dir);
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int k = 1; k < 1000; k++) {
        char suffix[16] = "";
        if (k > 1)
            snprintf(suffix, sizeof suffix, "-%d", k);
        int w = snprintf(buf, cap, "%s/vlad-record-%s-%s%s.vrec", p->record.dir, p->robot, stamp,
                         suffix);
        if (w < 0 || (size_t)w >= cap)
            return vlad_err_set(err, VLAD_ERANGE, "record.dir %s: path too long", p->record.dir);
        if (access(buf, F_OK))
            return VLAD_OK;
    }
    return vlad_err_set(err, VLAD_EIO, "record.dir %s: no free file name", p->record.dir);
}

/* queue the HEADER entry (allocates: at start only) */
static void queue_header(vlad_record *r) {
    const vlad_profile *p = r->p;
    Vlad__RecordHeader h = VLAD__RECORD_HEADER__INIT;
    char *joints[VLAD_MAX_JOINTS], *cams[VLAD_MAX_CAMERAS];
    static const char *img[] = {"full", "hash", "none"};
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    h.robot = (char *)p->robot;
    h.vlad_version = VLAD_VERSION;
    h.profile = (char *)p->path;
    h.model = p->policy.synthetic ? "synthetic" : (char *)p->policy.model;
    h.control_hz = p->control_hz;
    h.clock = (char *)vlad_clock_mode_name(p->clock);
    h.async_mode = (char *)vlad_async_mode_name(p->async.mode);
    h.images = (char *)img[p->record.images >= 0 && p->record.images <= 2 ? p->record.images : 0];
    h.start_wall_ns = (int64_t)wall.tv_sec * VLAD_NS_PER_S + wall.tv_nsec;
    h.start_ns = vlad_now_ns();
    for (int j = 0; j < p->n_joints; j++)
        joints[j] = (char *)p->joints[j].name;
    h.n_joints = (size_t)p->n_joints;
    h.joints = joints;
    for (int c = 0; c < p->n_cameras; c++)
        cams[c] = (char *)p->cameras[c].name;
    h.n_cameras = (size_t)p->n_cameras;
    h.cameras = cams;
    h.instruction = (char *)p->policy.instruction;
    size_t n = vlad__record_header__get_packed_size(&h);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        drop(r);
        r->seq++;
        return;
    }
    vlad__record_header__pack(&h, buf);
    vlad_record_tap(r, VLAD__RECORD_ENTRY__KIND__HEADER, buf, n, NULL);
    free(buf);
}

vlad_record *vlad_record_new(const vlad_profile *p, const char *path, size_t ring_bytes,
                             vlad_err *err) {
    vlad_record *r = calloc(1, sizeof *r);
    if (!r) {
        vlad_err_set(err, VLAD_ENOMEM, "record: out of memory");
        return NULL;
    }
    r->p = p;
    r->fd = -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->cap = 4096;
    while (r->cap < ring_bytes && r->cap < ((size_t)1 << 40))
        r->cap <<= 1;
    r->ring = malloc(r->cap);
    r->wbuf = malloc(WBUF_BYTES);
    if (!r->ring || !r->wbuf) {
        vlad_err_set(err, VLAD_ENOMEM, "record: cannot allocate a ring of %zu bytes", r->cap);
        vlad_record_free(r);
        return NULL;
    }
    /* O_NONBLOCK: a FIFO without a reader fails at once instead of waiting */
    r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0644);
    if (r->fd < 0) {
        vlad_err_set(err, VLAD_EIO, "record: cannot open %s: %s", path, strerror(errno));
        vlad_record_free(r);
        return NULL;
    }
    int fl = fcntl(r->fd, F_GETFL);
    if (fl >= 0)
        fcntl(r->fd, F_SETFL, fl & ~O_NONBLOCK);
    queue_header(r);
    return r;
}

int vlad_record_start(vlad_record *r, vlad_err *err) {
    if (r->started)
        return vlad_err_set(err, VLAD_ESTATE, "record: already started");
    if (pthread_create(&r->thread, NULL, writer_main, r) != 0)
        return vlad_err_set(err, VLAD_ESTATE, "record: cannot start the writer thread");
    r->started = true;
    return VLAD_OK;
}

void vlad_record_free(vlad_record *r) {
    if (!r)
        return;
    if (r->started) {
        atomic_store_explicit(&r->stop, true, memory_order_release);
        pthread_join(r->thread, NULL);
    } else if (r->fd >= 0 && r->ring && r->wbuf) {
        drain(r); /* never started: write what was queued */
        flush_buf(r);
    }
    if (r->fd >= 0)
        close(r->fd);
    free(r->ring);
    free(r->wbuf);
    free(r);
}

bool vlad_record_failed(const vlad_record *r) {
    return atomic_load_explicit(&((vlad_record *)r)->failed, memory_order_acquire);
}

void vlad_record_stats_get(const vlad_record *r, vlad_record_stats *out) {
    vlad_record *m = (vlad_record *)r;
    out->failed = atomic_load_explicit(&m->failed, memory_order_acquire);
    snprintf(out->error, sizeof out->error, "%s", out->failed ? m->error : "");
    out->entries = atomic_load(&m->entries);
    out->dropped = atomic_load(&m->dropped);
    out->bytes = atomic_load(&m->bytes);
}

const char *vlad_record_file(const vlad_record *r) { return r->path; }

/* ---- reading ------------------------------------------------------------------------- */

#define ENTRY_MAX ((uint64_t)256 << 20)

struct vlad_rec_reader {
    FILE *f;
    char path[VLAD_PATH_MAX];
    uint64_t off;
    bool truncated;
    uint8_t *buf;
    size_t cap;
};

vlad_rec_reader *vlad_rec_reader_open(const char *path, vlad_err *err) {
    vlad_rec_reader *r = calloc(1, sizeof *r);
    if (!r) {
        vlad_err_set(err, VLAD_ENOMEM, "record: out of memory");
        return NULL;
    }
    snprintf(r->path, sizeof r->path, "%s", path);
    r->f = fopen(path, "rb");
    if (!r->f) {
        vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    return r;
}

void vlad_rec_reader_free(vlad_rec_reader *r) {
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free(r->buf);
    free(r);
}

bool vlad_rec_reader_truncated(const vlad_rec_reader *r) { return r->truncated; }

int vlad_rec_reader_next(vlad_rec_reader *r, Vlad__RecordEntry **e, vlad_err *err) {
    *e = NULL;
    uint64_t n = 0;
    int shift = 0, c, got = 0;
    for (;;) {
        c = getc(r->f);
        if (c == EOF)
            break;
        got++;
        if (shift > 63)
            return vlad_err_set(err, VLAD_EPARSE, "%s: byte %llu: entry length is not a varint",
                                r->path, (unsigned long long)r->off);
        n |= (uint64_t)(c & 0x7f) << shift;
        shift += 7;
        if (!(c & 0x80))
            break;
    }
    if (c == EOF) {
        if (ferror(r->f))
            return vlad_err_set(err, VLAD_EIO, "%s: read error: %s", r->path, strerror(errno));
        r->truncated = got > 0;
        return VLAD_OK;
    }
    if (n > ENTRY_MAX)
        return vlad_err_set(err, VLAD_EPARSE, "%s: byte %llu: entry of %llu bytes (more than 256 MiB)",
                            r->path, (unsigned long long)r->off, (unsigned long long)n);
    if (n > r->cap) {
        uint8_t *nb = realloc(r->buf, (size_t)n);
        if (!nb)
            return vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", r->path);
        r->buf = nb;
        r->cap = (size_t)n;
    }
    size_t rd = fread(r->buf, 1, (size_t)n, r->f);
    if (rd < n) {
        if (ferror(r->f))
            return vlad_err_set(err, VLAD_EIO, "%s: read error: %s", r->path, strerror(errno));
        r->truncated = true;
        return VLAD_OK;
    }
    *e = vlad__record_entry__unpack(NULL, (size_t)n, r->buf);
    if (!*e)
        return vlad_err_set(err, VLAD_EPARSE, "%s: byte %llu: %llu bytes that are not a RecordEntry",
                            r->path, (unsigned long long)r->off, (unsigned long long)n);
    r->off += (uint64_t)got + n;
    return VLAD_OK;
}
