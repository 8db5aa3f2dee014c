/*
 * log: formatted lines to stderr. Formatting happens into a stack buffer and
 * the line leaves with a single write(), so there is no stdio buffering to
 * lose at _exit() and no lock: concurrent threads and processes each emit
 * whole lines. An over-long message is cut and marked with "..." rather than
 * split across lines.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

int log_min_level = LOG_LEVEL_INFO;
static char log_role[32] = "tandem";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *role, int level)
{
    if (role) snprintf(log_role, sizeof log_role, "%s", role);
    if (level < LOG_LEVEL_DEBUG) level = LOG_LEVEL_DEBUG;
    if (level > LOG_LEVEL_ERROR) level = LOG_LEVEL_ERROR;
    log_min_level = level;
}

const char *log_level_name(int level)
{
    if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR) return "?";
    return level_names[level];
}

int log_level_parse(const char *name, int *out)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {{"debug", LOG_LEVEL_DEBUG},
                 {"info", LOG_LEVEL_INFO},
                 {"warn", LOG_LEVEL_WARN},
                 {"warning", LOG_LEVEL_WARN},
                 {"error", LOG_LEVEL_ERROR}};
    if (!name) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcasecmp(name, names[i].name)) {
            *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_write(int level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%ld] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_level_name(level), log_role, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof line) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    /* Keep room for the newline; mark a cut message so nobody trusts its tail. */
    if (len > sizeof line - 2) {
        len = sizeof line - 2;
        memcpy(line + len - 3, "...", 3);
    }
    line[len++] = '\n';
    write_all(line, len);
}

void log_raw(const char *msg)
{
    write_all(msg, strlen(msg));
    write_all("\n", 1);
}
