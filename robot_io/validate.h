/* validate.h — checks of every message a peer can send, against the robot profile.
 *
 * Each returns 0 for a valid message, or VLAD_EINVAL with a message naming the field
 * and what was wrong (wrong robot, wrong joint count, non-finite value, image size,
 * unknown camera, invalid UTF-8, ...). Pure: no allocation, any thread. */
#ifndef VLAD_VALIDATE_H
#define VLAD_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "profile.h"
#include "vlad.pb-c.h"

#define VLAD_TEXT_MAX 255 /* instruction / question length cap, bytes */

/* True if s[0..len) is well-formed UTF-8. */
bool vlad_utf8_valid(const char *s, size_t len);

int vlad_validate_observation(const vlad_profile *p, const Vlad__Observation *o, vlad_err *err);
/* An e-stop is always valid whatever its reason: the reason is for the log only. */
int vlad_validate_command(const Vlad__Command *c, vlad_err *err);

/* Copy text for a log line: valid UTF-8 of at most cap-1 bytes; longer text is cut at a
 * character boundary and ends in "...", invalid UTF-8 is replaced by a note of its length. */
void vlad_text_sanitize(const char *in, char *out, size_t cap);
int vlad_validate_action(const vlad_profile *p, const Vlad__Action *a, vlad_err *err);
int vlad_validate_chunk(const vlad_profile *p, const Vlad__ActionChunk *c, vlad_err *err);

/* Largest frame a peer may legitimately send on the observation socket under this
 * profile (all cameras at once plus headroom): sockets refuse larger ones. */
size_t vlad_max_observation_frame(const vlad_profile *p);

#endif
