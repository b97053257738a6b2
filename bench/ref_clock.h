/*
 * ref_clock.h - the wall clock and the process's CPU time, in seconds, for
 * the bench reference programs that print both (ref_sqlite, ref_pgcopy,
 * ref_jspub).
 */
#ifndef ZPIPE_REF_CLOCK_H
#define ZPIPE_REF_CLOCK_H

#include <sys/resource.h>
#include <time.h>

static inline double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* cpu_s is user + system time of the whole process, every thread. */
static inline double
cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

#endif
