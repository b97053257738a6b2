/*
 * client_stats.h - zpipe stats and zpipe ping: the client side of zpiped's
 * control socket.
 *
 * A request is one line on a fresh connection to the socket, the reply one
 * line (README, "Control socket and client").  The stats reply is a JSON object, read
 * here with jansson.  Every function prints why it failed (client.h) before
 * returning a negative errno.  Main thread only.
 */
#ifndef ZPIPE_CLIENT_STATS_H
#define ZPIPE_CLIENT_STATS_H

#include <stdbool.h>
#include <stdint.h>

#define CLIENT_STATS_DEFAULT_SOCKET "/run/zpipe/control.sock"

/* What stats and ping are to do, from the command line. */
struct client_stats_opts {
    const char *sock;               /* the control socket's path */
    int timeout_ms;                 /* longest wait for a reply; -1 = forever */
    bool is_json;                   /* print the raw object instead of a summary */
    const char *fields;             /* NAME[,NAME...]: print their values instead; or NULL */
    uint64_t interval_ms;           /* a line every interval_ms; 0 = one summary */
    uint64_t count;                 /* lines to print with interval_ms; 0 = no end */
};

/*
 * client_stats_run prints the daemon's counters: with no interval a readable
 * summary with the average rates since the start (or the raw object); with
 * one, a header and then a line every interval with what happened during it,
 * counts and rates per second (or the raw object every interval), until
 * o->count lines or an error.  With o->fields, instead, one line per object
 * with the values of those fields, separated by spaces (a dotted name looks
 * into a nested object: sink.kind).  Blocks.  Returns 0, or a negative errno:
 * the daemon did not answer, or not with a JSON object (-EPROTO), it sent no
 * such field (-ENOENT), or stdout failed.
 */
int client_stats_run(const struct client_stats_opts *o);

/*
 * client_stats_ping asks the daemon at o->sock whether it answers and prints
 * "pong" if it does.  Returns 0, or a negative errno (-EPROTO for an answer
 * other than pong).
 */
int client_stats_ping(const struct client_stats_opts *o);

#endif
