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
    bool is_blocked;     /* producers wait on a full queue now */
    uint64_t blocked_ms; /* for this long (0 when not blocked) */
};

/* What stats_format_json adds to the counters: the daemon's context. */
struct stats_context {
    const char *state;       /* drain state: "running", "draining inputs", ... */
    const char *sink;        /* sink kind: "file", "zmq", "null" */
    uint64_t sink_threads;   /* consumer threads, one sink instance each */
    uint64_t queue_capacity; /* messages */
    uint64_t queue_max_bytes;
};

/* stats_format_status writes the STATUS= text (without "STATUS="). Returns buf. */
const char *stats_format_status(const struct stats *s, uint64_t capacity, char *buf, size_t len);

/*
 * stats_format_json writes s and ctx (borrowed) as one JSON object on one
 * line, without a newline, into buf[0..len) and returns its length, or
 * -ENOSPC when it does not fit (buf then holds nothing useful).  Strings are
 * escaped, so any value yields valid JSON.  Any thread.
 */
int stats_format_json(const struct stats *s, const struct stats_context *ctx, char *buf,
                      size_t len);

/* stats_format_accounting writes the exit accounting line. Returns buf. */
const char *stats_format_accounting(const struct stats *s, char *buf, size_t len);

#endif
