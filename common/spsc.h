/* spsc.h — bounded lock-free single-producer / single-consumer ring of fixed-size records.
 * One producer thread calls vlad_spsc_push, one consumer thread calls vlad_spsc_pop;
 * neither blocks nor allocates. A full ring refuses the push (the producer decides what
 * to drop and counts it). */
#ifndef VLAD_SPSC_H
#define VLAD_SPSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct vlad_spsc vlad_spsc;

/* Ring of `capacity` (rounded up to a power of two) records of `elem_size` bytes. */
vlad_spsc *vlad_spsc_new(size_t elem_size, size_t capacity, vlad_err *err);
void vlad_spsc_free(vlad_spsc *r);

/* Producer: copy one record in. False if the ring is full. */
bool vlad_spsc_push(vlad_spsc *r, const void *rec);
/* Consumer: copy the oldest record out. False if empty. */
bool vlad_spsc_pop(vlad_spsc *r, void *rec);
/* Records currently queued (approximate while the other side runs). */
size_t vlad_spsc_size(const vlad_spsc *r);

#endif
