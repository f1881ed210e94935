/* clock.h — monotonic time and absolute-deadline sleeping.
 * All times are CLOCK_MONOTONIC nanoseconds. Safe from any thread; no allocation. */
#ifndef VLAD_CLOCK_H
#define VLAD_CLOCK_H

#include <stdint.h>

#define VLAD_NS_PER_MS 1000000LL
#define VLAD_NS_PER_S 1000000000LL

/* Current CLOCK_MONOTONIC time in ns. */
int64_t vlad_now_ns(void);

/* Sleep until the absolute CLOCK_MONOTONIC time `deadline_ns` (restarts on EINTR).
 * Returns at once if the deadline has passed. */
void vlad_sleep_until_ns(int64_t deadline_ns);

/* Try to make the calling thread real-time: SCHED_FIFO at `priority` (1..99) and, if
 * `lock_memory`, mlockall(current|future). Returns 0, or a negative code when the
 * system refuses (e.g. no CAP_SYS_NICE); the caller decides whether that matters. */
int vlad_rt_setup(int priority, int lock_memory);

#endif
