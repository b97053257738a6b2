/*
 * stats.h - the daemon's counters, summed from every thread, and the
 * accounting invariant they obey.
 *
 * received + replayed = delivered + spilled + queued + in_flight
 *
 * Worker threads keep their own relaxed atomic counters; the main thread
 * sums them into a struct stats (a snapshot: exact once the workers are
 * joined, approximate while they run).
 */
#ifndef ZPIPE_STATS_H
#define ZPIPE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stats {
    uint64_t received;  /* accepted from input sockets */
    uint64_t rejected;  /* refused (too large); counted nowhere else */
    uint64_t replayed;  /* fed from spill files */
    uint64_t delivered; /* taken by the sink */
    uint64_t failed;    /* sink write errors */
    uint64_t retried;   /* batch retries after an error */
    uint64_t spilled;   /* written to a spill file */
    uint64_t queued;    /* in the queue now */
    uint64_t queued_bytes;
    uint64_t in_flight; /* popped by a consumer, not yet delivered */
    uint64_t uptime_s;
};

/* stats_lost returns how many accepted messages are unaccounted for (0 when the invariant holds).
 */
uint64_t stats_lost(const struct stats *s);

/* stats_format_status writes the STATUS= text (without "STATUS="). Returns buf. */
const char *stats_format_status(const struct stats *s, uint64_t capacity, char *buf, size_t len);

/* stats_format_accounting writes the exit accounting line. Returns buf. */
const char *stats_format_accounting(const struct stats *s, char *buf, size_t len);

#endif
