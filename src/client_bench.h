/*
 * client_bench.h - zpipe bench: generated messages sent from several threads
 * as fast as they go, the load generator of the benchmarks (BENCHMARKS.md).
 */
#ifndef ZPIPE_CLIENT_BENCH_H
#define ZPIPE_CLIENT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENT_BENCH_DEFAULT_COUNT 100000
#define CLIENT_BENCH_DEFAULT_SIZE 100
#define CLIENT_BENCH_MAX_CLIENTS 1024
#define CLIENT_BENCH_MAX_SIZE (1024 * 1024 * 1024)

/* What to send, from the command line. */
struct client_bench_opts {
    const char *endpoint;           /* zpiped's input endpoint */
    bool is_router;
    int timeout_ms;                 /* longest wait without progress; -1 = forever */
    uint64_t count;                 /* messages in total */
    size_t size;                    /* payload bytes, at most CLIENT_BENCH_MAX_SIZE */
    unsigned clients;               /* threads, one socket each: 1 to CLIENT_BENCH_MAX_CLIENTS */
    const char *curve_server_key;   /* as in struct client_job: NULL = no CURVE */
    const char *curve_secret_key;
    bool is_hold;                   /* pull mode only: hold the sockets open after sending */
    int hold_ms;                    /* with is_hold: for at most this long; -1 = no limit */
};

/*
 * client_bench_run sends o->count messages split over o->clients threads,
 * which connect first and then start together, and prints one line: messages,
 * seconds, msgs/s, MB/s (and, in router mode, how many were acked).  Each
 * payload is "c<client>-<seq>" padded with '.' to o->size bytes.  Blocks
 * until every thread is joined.
 *
 * With o->is_hold, the threads keep their sockets open after their last send:
 * the line is printed (and stdout flushed) once every message is queued, and
 * the sockets are closed, dropping what is still queued, on SIGTERM or SIGINT
 * or after o->hold_ms.  Those two signals are blocked in every thread from the
 * start, and stay blocked, so one that comes while sending is taken after.
 * A caller that signals only once the receiver has counted every message
 * loses none to libzmq 4.3, which can drop the tail of a PUSH sender that
 * disconnects while the receiver's high-water mark is full (libzmq issue 4660).
 *
 * Returns 0 when every message went out (and, in router mode, was answered
 * OK), or a negative errno, CLIENT_SEND_REFUSED included, after printing why.
 */
int client_bench_run(const struct client_bench_opts *o);

#endif
