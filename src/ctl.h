/*
 * ctl.h - the control socket: a unix stream socket on the main thread's
 * libuv loop with a one-line request, one-line reply protocol (zpiped(8),
 * "CONTROL SOCKET").
 *
 *   ping   -> pong
 *   stats  -> one JSON object (written by the daemon's stats callback)
 *   other  -> ERR unknown command
 *
 * A line longer than CTL_LINE_MAX bytes (not counting its newline) gets
 * "ERR line too long" and the connection is closed.  A connection may send
 * any number of requests; replies come in order.  Every buffer is bounded:
 * a client that does not read its replies is not read from either.
 *
 * Clients are bounded in time and number, so none can lock out another:
 * a connection with nothing pending is closed after CTL_IDLE_MS without a
 * request; one that leaves a line unfinished, or its replies unread, for
 * CTL_LINE_MS is closed.  At most CTL_CLIENTS_MAX are served at once: a new
 * connection beyond that closes, to make room, the client served longest
 * ago (its last answered request, or its accept) among those accepted at
 * least a grace of one second ago, or waits until one is; so a new client
 * is always served, within about a second, and one that sends its request
 * within the grace is answered before it can be closed.  No bytes from a
 * client can stop the daemon.
 *
 * Every function here runs on the loop's thread (the main thread).
 */
#ifndef ZPIPE_CTL_H
#define ZPIPE_CTL_H

#include <stddef.h>
#include <uv.h>

#define CTL_LINE_MAX    4096  /* bytes of a request line, without its newline */
#define CTL_CLIENTS_MAX 64    /* connections served at once */
#define CTL_LINE_MS     5000  /* to finish a line begun, or read the replies */
#define CTL_IDLE_MS     30000 /* a connection with nothing pending stays open */

typedef struct ctl ctl_t;

/*
 * Writes the stats JSON object (one line, no newline) into buf[0..len) and
 * returns its length, or a negative errno (-ENOSPC when it does not fit).
 * Called on the loop's thread, for each "stats" request.
 */
typedef int ctl_stats_fn(void *arg, char *buf, size_t len);

/*
 * ctl_open serves the control socket at path on loop.  A socket file
 * already at path is checked first: if anything accepts a connection on it
 * (even without answering: a busy daemon, or one whose client slots are
 * all taken), another zpiped runs there and ctl_open fails with
 * -EADDRINUSE; only a socket nobody listens on (ECONNREFUSED) is a leftover,
 * and is removed.  A path that exists and is not a socket is never removed
 * (-EEXIST).  Missing parent directories are created (mode 0755); the
 * socket gets mode 0660.  stats_fn(arg, ...) writes the stats reply; path,
 * stats_fn and arg are borrowed and must outlive the ctl (path is copied).
 * Does not block.  Returns 0 and *out, or a negative errno with the reason
 * logged.
 */
int ctl_open(ctl_t **out, uv_loop_t *loop, const char *path, ctl_stats_fn *stats_fn, void *arg);

/*
 * ctl_close stops listening, removes the socket file if it is still the
 * one ctl_open created (not a socket another daemon put at the same path
 * since), and closes every connection (replies not yet written are
 * dropped).  The memory is freed by the last close callback, so the loop
 * must run once more afterwards.  Accepts NULL; call at most once.
 */
void ctl_close(ctl_t *c);

#endif
