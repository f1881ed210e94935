/* frames.h — camera frames handed from the I/O thread to the inference worker without a
 * copy on the control thread.
 *
 * A pool of four buffers, each holding one complete set of camera images (every camera,
 * profile order). One writer thread (io) fills a buffer and publishes it under a new frame
 * id (1, 2, ...). One pinning thread (control) pins the frame an inference is conditioned
 * on; the writer never writes a pinned buffer or the newest one, so a pinned frame stays
 * intact until it is unpinned, whoever reads it meanwhile (the worker). Pinning is one
 * store and one load; writing is a short back-off when the two race. Neither side blocks
 * or allocates after vlad_frames_new.
 *
 * Memory order: the unpin store happens after the worker's last read of the buffer (the
 * control thread unpins only after it has acquired the worker's DONE), and the writer
 * reads the pin before writing a buffer, so reads and writes of one buffer never overlap. */
#ifndef VLAD_FRAMES_H
#define VLAD_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct vlad_frames vlad_frames;

/* A pool of frames of `bytes` each (0 is allowed: a robot without cameras). */
vlad_frames *vlad_frames_new(size_t bytes, vlad_err *err);
void vlad_frames_free(vlad_frames *f); /* NULL is fine */

size_t vlad_frames_bytes(const vlad_frames *f);

/* Writer: a buffer to fill, already holding a copy of the newest frame (so cameras that
 * did not update carry forward; zeros before the first publish). Valid until publish. */
uint8_t *vlad_frames_write_buf(vlad_frames *f);
/* Writer: publish the buffer from vlad_frames_write_buf; returns its frame id (> 0). */
uint64_t vlad_frames_publish(vlad_frames *f);

/* Any thread: id of the newest published frame (0: none yet). */
uint64_t vlad_frames_newest(const vlad_frames *f);

/* Pinning thread: pin frame `id` and return its buffer (stable until unpinned), or NULL
 * when that frame has been overwritten already (or id is 0). At most one pin at a time:
 * a new pin replaces the old one. */
const uint8_t *vlad_frames_pin(vlad_frames *f, uint64_t id);
void vlad_frames_unpin(vlad_frames *f);

#endif
