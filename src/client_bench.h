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
};

/*
 * client_bench_run sends o->count messages split over o->clients threads,
 * which connect first and then start together, and prints one line: messages,
 * seconds, msgs/s, MB/s (and, in router mode, how many were acked).  Each
 * payload is "c<client>-<seq>" padded with '.' to o->size bytes.  Blocks
 * until every thread is joined.  Returns 0 when every message went out (and,
 * in router mode, was answered OK), or a negative errno, CLIENT_SEND_REFUSED
 * included, after printing why.
 */
int client_bench_run(const struct client_bench_opts *o);

#endif
