#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#include "err.h"

int64_t vlad_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * VLAD_NS_PER_S + ts.tv_nsec;
}

void vlad_sleep_until_ns(int64_t deadline_ns) {
    struct timespec ts = {.tv_sec = deadline_ns / VLAD_NS_PER_S,
                          .tv_nsec = deadline_ns % VLAD_NS_PER_S};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int vlad_rt_setup(int priority, int lock_memory) {
    int rc = VLAD_OK;
    struct sched_param sp = {.sched_priority = priority};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0)
        rc = VLAD_ESTATE;
    if (lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
        rc = VLAD_ESTATE;
    return rc;
}
