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

/*
 * What a sink call failed on, for the counters of sink errors by kind.
 * A sink counts each failed system or library call once, where it fails
 * (stats_sink_error), so a failed batch that the consumer retries counts
 * once per try.  These are not the "failed" counter (failed batches as the
 * consumer sees them), and need not add up to it.
 */
enum stats_sink_error {
    STATS_SINK_ERROR_OPEN,    /* opening or reopening the target (file sink) */
    STATS_SINK_ERROR_WRITE,   /* write(2)/writev(2)/lseek(2) on the target */
    STATS_SINK_ERROR_FSYNC,   /* fdatasync(2) */
    STATS_SINK_ERROR_SEND,    /* zmq_send/zmq_poll failed */
    STATS_SINK_ERROR_TIMEOUT, /* no peer took a message within the send wait, or no
                               * reply within zmq.ack_timeout (dealer) */
    STATS_SINK_ERROR_REFUSED, /* an ERR reply from a downstream zpiped (dealer), or a
                               * message too large for the NATS server (nats) */
    STATS_SINK_ERROR_N
};

/* stats_sink_error counts one error of kind.  Any thread; a relaxed atomic add. */
void stats_sink_error(enum stats_sink_error kind);

/* stats_sink_error_name returns the label of kind: "open", "write", ... */
const char *stats_sink_error_name(enum stats_sink_error kind);

/*
 * stats_curve_refused counts one client the CURVE allow-list refused (the
 * ZAP handler's answer 400).  Any thread; a relaxed atomic add.
 */
void stats_curve_refused(void);

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
    uint64_t uptime_ms;
    bool is_blocked;     /* producers wait on a full queue now */
    uint64_t blocked_ms; /* for this long (0 when not blocked) */
    uint64_t sink_errors[STATS_SINK_ERROR_N]; /* since start, all sinks together */
    uint64_t curve_refused; /* connections the CURVE allow-list refused */
};

/* stats_sink_errors_read copies the sink error counters into s->sink_errors. Any thread. */
void stats_sink_errors_read(struct stats *s);

/* stats_curve_read copies the CURVE counter into s->curve_refused. Any thread. */
void stats_curve_read(struct stats *s);

/* What stats_format_json adds to the counters: the daemon's context. */
struct stats_context {
    const char *state;       /* drain state: "running", "draining inputs", ... */
    uint64_t origin;         /* this run's message origin (msg.h) */
    const char *const *states; /* every drain state, NULL-terminated (for metrics) */
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

/*
 * stats_format_prometheus writes s and ctx in the Prometheus text exposition
 * format 0.0.4 (a HELP and a TYPE line for every family, then its samples)
 * into buf[0..len) and returns its length, or -ENOSPC.  version is the
 * build_info label.  Any thread.
 */
int stats_format_prometheus(const struct stats *s, const struct stats_context *ctx,
                            const char *version, char *buf, size_t len);

/* stats_format_accounting writes the exit accounting line. Returns buf. */
const char *stats_format_accounting(const struct stats *s, char *buf, size_t len);

#endif
