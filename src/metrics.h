/*
 * metrics.h - the Prometheus endpoint: GET /metrics over HTTP.
 *
 * daemon.metrics_listen = HOST:PORT turns it on.  The HTTP side is
 * libmicrohttpd's, on one thread of its own (epoll, non-blocking), with a
 * bounded number of connections, per client address too, an idle timeout
 * and a deadline for each request, so slow or garbage clients cost a
 * connection slot for a few seconds and nothing else.
 *
 * Two steps, so that a bad address fails the start early and nothing reads
 * the daemon's state before it is complete: metrics_open() binds the socket
 * (main thread, before any worker starts), metrics_start() starts serving.
 * The thread calls collect for every scrape: it must be safe to call from
 * a thread other than the main one.
 */
#ifndef ZPIPE_METRICS_H
#define ZPIPE_METRICS_H

#include "stats.h"

typedef struct metrics metrics_t;

/*
 * Fills *s and *ctx with a snapshot for one scrape.  Called on the metrics
 * thread; the strings in *ctx must stay valid until metrics_close().
 */
typedef void metrics_collect_fn(void *arg, struct stats *s, struct stats_context *ctx);

/* Connections served at once; more wait in the listen backlog, then are refused. */
#define METRICS_CONNECTION_LIMIT 32
/* Connections from one client address at once; more are closed at once. */
#define METRICS_PER_IP_LIMIT 8
/* A connection idle this long (a half-sent request, an unread reply) is closed. */
#define METRICS_TIMEOUT_S 5
/*
 * A connection must have sent a complete request and been answered within
 * this long of connecting or of its previous reply, however steadily it
 * trickles bytes, or it is closed.
 */
#define METRICS_REQUEST_MS 5000

/*
 * metrics_open resolves and binds listen ("HOST:PORT" or "[IPV6]:PORT") and
 * listens, without serving yet.  Returns 0 and *out, or a negative errno
 * after logging why (e.g. "metrics_listen 127.0.0.1:9555: bind: Address
 * already in use").  Main thread.
 */
int metrics_open(metrics_t **out, const char *listen);

/*
 * metrics_start serves GET /metrics from now on, calling collect(arg) for
 * each scrape.  Returns 0 or a negative errno (logged).  Main thread.
 */
int metrics_start(metrics_t *m, metrics_collect_fn *collect, void *arg);

/* metrics_close stops serving (joins the thread), closes the socket, frees m. Accepts NULL. */
void metrics_close(metrics_t *m);

#endif
