/* record.h — recording every message the daemon receives and sends (`vlad --record DIR`,
 * profile record.*), and reading recordings back (vlad-replay).
 *
 * File: a length-delimited protobuf stream of RecordEntry (proto/vlad.proto, "Recordings"):
 * each entry is a varint byte count and that many bytes of one packed RecordEntry; the first is
 * the HEADER. Any protobuf runtime reads it (Python: _DecodeVarint32, RecordEntry.FromString).
 *
 * Threads and what is dropped when:
 *   io      the only producer. The robot_io server's tap (vlad_server_set_tap) calls
 *           vlad_record_tap with the bytes it already has: each valid observation and command
 *           received, each action, chunk, language piece, event published and each reply. The
 *           entry is built by hand straight into a lock-free single-producer/single-consumer
 *           byte ring (an embedded message is wire-identical to a bytes field holding the packed
 *           message: no re-pack; only an observation with record.images hash|none is packed
 *           again, without its pixels, into the ring). The tap never blocks, allocates, locks
 *           or logs. An entry that does not fit in the free space of the ring (the writer is
 *           behind), or is larger than half the ring, is dropped and counted; so is every entry
 *           once recording has stopped. Dropped entries leave a gap in RecordEntry.seq.
 *   writer  started by vlad_record_start: drains the ring into a 64 KiB buffer and write(2)s it
 *           when full and at least every 100 ms (polling the ring every 2 ms). A write error
 *           (ENOSPC: the disk is full, EIO, ...) stops recording for good: the error is kept
 *           (vlad_record_failed; the io thread publishes one RECORD_ERROR event), what was in
 *           the ring and later entries are counted as dropped, and the daemon runs on. The
 *           file keeps what was written (whole entries, but for at most one partial at the end).
 *   any     vlad_record_stats (atomics; the error text is published once, with release order).
 */
#ifndef VLAD_RECORD_H
#define VLAD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"
#include "vlad.pb-c.h"

typedef struct vlad_record vlad_record;

typedef struct vlad_record_stats {
    uint64_t entries;  /* entries written to the file (the header included) */
    uint64_t dropped;  /* entries not recorded (ring full, too large, after a write error) */
    uint64_t bytes;    /* bytes written to the file */
    bool failed;       /* recording stopped: error holds why */
    char error[VLAD_ERR_MSG_MAX];
} vlad_record_stats;

/* The file a daemon of profile p records into: record.file if set, else a new name
 * record.dir/vlad-record-<robot>-<YYYYMMDDTHHMMSSZ>.vrec (-2, -3, ... appended if taken; the
 * folder is created if missing, one level). buf = "" when p records nothing (both empty).
 * VLAD_EIO when the folder cannot be made. */
int vlad_record_path(const vlad_profile *p, char *buf, size_t cap, vlad_err *err);

/* Open (create or truncate) `path` for a recording of a daemon of profile p (kept by pointer)
 * with a ring of ring_bytes (rounded up to a power of two, at least 4 KiB), and queue the
 * HEADER. Nothing is written before vlad_record_start. VLAD_EIO naming the file if it cannot
 * be opened. */
vlad_record *vlad_record_new(const vlad_profile *p, const char *path, size_t ring_bytes,
                             vlad_err *err);

/* Start the writer thread. */
int vlad_record_start(vlad_record *r, vlad_err *err);

/* Stop the writer once it has written everything queued (call after the producer has stopped),
 * close the file, release everything. NULL is fine. */
void vlad_record_free(vlad_record *r);

/* The producer (one thread: the server's): record one message of kind
 * Vlad__RecordEntry__Kind with its time now. payload/len: the packed message; msg: the same
 * decoded (used only for observations when record.images is hash or none). Never blocks,
 * allocates, locks or logs; what does not fit is dropped and counted. `r` is a vlad_record*
 * (the signature of vlad_server_tap_fn). */
void vlad_record_tap(void *r, int kind, const uint8_t *payload, size_t len,
                     const ProtobufCMessage *msg);

/* True once recording has stopped on a write error (the error text: vlad_record_stats). */
bool vlad_record_failed(const vlad_record *r);

/* The counters and the error, now (any thread). */
void vlad_record_stats_get(const vlad_record *r, vlad_record_stats *out);

/* The file being written. */
const char *vlad_record_file(const vlad_record *r);

/* The image hash of ImageDigest.hash: FNV-1a 64 over the data as little-endian 64-bit words
 * (the tail zero-padded to 8 bytes), then xor n. */
uint64_t vlad_record_image_hash(const uint8_t *data, size_t n);

/* "OBSERVATION", "ACTION", ... for a RecordEntry kind ("?" if unknown). */
const char *vlad_record_kind_name(int kind);

/* ---- reading ------------------------------------------------------------------------ */

typedef struct vlad_rec_reader vlad_rec_reader;

/* Open a recording for reading (buffered; entries up to 256 MiB). */
vlad_rec_reader *vlad_rec_reader_open(const char *path, vlad_err *err);
void vlad_rec_reader_free(vlad_rec_reader *r);

/* The next entry: VLAD_OK with *e (release with vlad__record_entry__free_unpacked(*e, NULL)),
 * or VLAD_OK with *e NULL at the end of the file (vlad_rec_reader_truncated says whether it
 * ended inside an entry: a daemon killed while writing). VLAD_EPARSE: an entry that is not a
 * RecordEntry (err names its byte offset); VLAD_EIO: a read error. */
int vlad_rec_reader_next(vlad_rec_reader *r, Vlad__RecordEntry **e, vlad_err *err);

/* The file ended in the middle of an entry (the partial entry was ignored). */
bool vlad_rec_reader_truncated(const vlad_rec_reader *r);

#endif
