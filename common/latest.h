/* latest.h — single-writer / single-reader "latest value" slot (a triple buffer).
 *
 * The writer fills the buffer returned by vlad_latest_write_buf() and publishes it with
 * vlad_latest_publish(); the reader calls vlad_latest_read() and gets the most recently
 * published value. Neither side ever blocks, waits or allocates; a value being read is
 * never overwritten. Exactly one writer thread and one reader thread. */
#ifndef VLAD_LATEST_H
#define VLAD_LATEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct vlad_latest vlad_latest;

/* Allocate a slot holding values of `size` bytes (three zeroed buffers). */
vlad_latest *vlad_latest_new(size_t size, vlad_err *err);
void vlad_latest_free(vlad_latest *l);

/* Writer: the buffer to fill next (valid until the next publish). */
void *vlad_latest_write_buf(vlad_latest *l);
/* Writer: make the filled buffer the latest value. */
void vlad_latest_publish(vlad_latest *l);

/* Reader: pointer to the latest published value (stable until the next read call).
 * *fresh (if non-NULL) says whether it was published since the previous read.
 * Before any publish it returns a zeroed buffer and fresh=false. */
const void *vlad_latest_read(vlad_latest *l, bool *fresh);

/* Number of publishes so far (any thread). */
uint64_t vlad_latest_count(const vlad_latest *l);

#endif
