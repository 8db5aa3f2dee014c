/*
 * clock: the monotonic clock, for durations and deadlines. Wall-clock time
 * (CLOCK_REALTIME) jumps with NTP and the administrator, so nothing that
 * measures how long something took or decides when to give up reads it.
 * Every layer once had its own copy of these few lines; this is the one.
 */
#ifndef TANDEM_CLOCK_H
#define TANDEM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC, with the sub-millisecond part. */
static inline double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Seconds on CLOCK_MONOTONIC. */
static inline double mono_s(void)
{
    return mono_ms() / 1e3;
}

/* Whole milliseconds on CLOCK_MONOTONIC, for integer deadlines. */
static inline int64_t mono_ms_int(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds since a mono_ms() reading. */
static inline double mono_ms_since(double t0_ms)
{
    return mono_ms() - t0_ms;
}

#endif
