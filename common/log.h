/* log.h — asynchronous logging, safe from the real-time thread.
 *
 * vlad_log() formats into a fixed-size slot of a lock-free bounded ring (no allocation,
 * no lock, no syscall); a logger thread started by vlad_log_start() drains the ring to
 * the sink. When the ring is full the message is dropped and counted. Before
 * vlad_log_start() (and after vlad_log_stop()) messages go straight to stderr.
 * Messages longer than VLAD_LOG_MSG_MAX-1 bytes are truncated. */
#ifndef VLAD_LOG_H
#define VLAD_LOG_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef enum {
    VLAD_LOG_ERROR = 0,
    VLAD_LOG_WARN = 1,
    VLAD_LOG_INFO = 2,
    VLAD_LOG_DEBUG = 3,
} vlad_log_level;

#define VLAD_LOG_MSG_MAX 240

/* Parse "error|warn|info|debug". Returns 0 or VLAD_EINVAL. */
int vlad_log_level_parse(const char *s, vlad_log_level *out);
const char *vlad_log_level_name(vlad_log_level l);

/* Messages above `level` are discarded (cheaply, before formatting). Any thread. */
void vlad_log_set_level(vlad_log_level level);
vlad_log_level vlad_log_get_level(void);

/* Start the logger thread writing to `path` (appending), or to stderr if path is NULL
 * or empty. Returns 0 or an error (file cannot be opened, thread cannot start). */
int vlad_log_start(const char *path, vlad_err *err);
/* Drain what is queued (including messages other threads are writing at that moment),
 * stop the thread, close the file. Idempotent. vlad_log_start and vlad_log_stop may be
 * called from any thread, concurrently with vlad_log and with each other. */
void vlad_log_stop(void);

/* Log a message (any thread, non-blocking). */
void vlad_log(vlad_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Messages dropped because the ring was full. */
uint64_t vlad_log_dropped(void);
/* Lines the logger thread could not write (full disk, ...), counted; shown in status. */
uint64_t vlad_log_write_failures(void);

#define VLAD_LOGE(...) vlad_log(VLAD_LOG_ERROR, __VA_ARGS__)
#define VLAD_LOGW(...) vlad_log(VLAD_LOG_WARN, __VA_ARGS__)
#define VLAD_LOGI(...) vlad_log(VLAD_LOG_INFO, __VA_ARGS__)
#define VLAD_LOGD(...) vlad_log(VLAD_LOG_DEBUG, __VA_ARGS__)

#endif
