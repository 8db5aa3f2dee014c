/*
 * log: one line per event on stderr, "2026-11-28T14:00:00.123Z INFO proxy[42] message".
 *
 *     log_init("proxy", LOG_LEVEL_INFO);
 *     LOG(INFO, "Sync prediction: %s", label);
 *
 * LOG() tests the level before it evaluates or formats anything, so debug
 * lines cost one comparison when filtered. Each line leaves in one write(),
 * so lines of processes sharing stderr do not interleave (below PIPE_BUF).
 * The pid is read per line: a forked child logs its own pid without setup,
 * and calls log_init() again only to change its role.
 */
#ifndef TANDEM_LOG_H
#define TANDEM_LOG_H

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* The lowest level written; set by log_init(). */
extern int log_min_level;

#define LOG(level, ...)                                                                            \
    do {                                                                                           \
        if (LOG_LEVEL_##level >= log_min_level) log_write(LOG_LEVEL_##level, __VA_ARGS__);         \
    } while (0)

/* role is copied (up to 31 characters); level is an enum log_level. */
void log_init(const char *role, int level);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Async-signal-safe: writes msg and a newline to stderr with write() only,
 * without time, role or pid (formatting them is not signal-safe). */
void log_raw(const char *msg);

/* "debug", "info", "warn" (or "warning"), "error" -> enum log_level. 0 or -1. */
int log_level_parse(const char *name, int *out);
const char *log_level_name(int level);

#endif
