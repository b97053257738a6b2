/*
 * producer.h - the producer pool: threads that own the input sockets.
 *
 * Each producer thread creates, binds, reads and closes its own ZeroMQ
 * sockets (the endpoints are dealt to the threads round-robin), validates
 * each message, pushes it into the queue (blocking while it is full: that
 * is the backpressure) and, in router mode, answers OK or ERR: with
 * input.ack = queued once the message is queued, with input.ack = stored
 * once a consumer has told it that the message is stored (msg_ack_stored()).
 */
#ifndef ZPIPE_PRODUCER_H
#define ZPIPE_PRODUCER_H

#include <stdint.h>

#include "conf.h"
#include "queue.h"

typedef struct producer_pool producer_pool_t;

/* Called from a worker thread when a producer stops reading and when it
 * exits; must be async-signal-safe in spirit: the daemon passes a
 * uv_async_send wrapper. */
typedef void producer_exit_fn(void *arg);

/*
 * producer_pool_create prepares (does not start) input.threads producers.
 * cfg, zctx and q are borrowed and must outlive the pool.  Returns 0 and
 * *out, or a negative errno.  Main thread only.
 */
int producer_pool_create(producer_pool_t **out, const struct conf *cfg, void *zctx,
                         queue_t *q, producer_exit_fn *on_exit, void *arg);

/*
 * producer_pool_start starts the threads and waits until every one has
 * bound every endpoint or failed: the input half of the readiness barrier.
 * Returns 0, or the first thread's negative errno, after logging which
 * endpoint failed and why; then the threads that did start are already
 * stopping, and producer_pool_join() must still be called.  Main thread.
 */
int producer_pool_start(producer_pool_t *p);

/*
 * producer_pool_stop begins the drain: each producer keeps reading until its
 * sockets have been quiet for 100 ms or drain_input has passed, then stops
 * reading (everything it read is queued by then).  With ack = queued it
 * then closes its sockets and exits; with ack = stored it keeps them open to
 * send the OK of every message it accepted as each is stored, and closes
 * them and exits once all are sent or producer_pool_finish() is called.
 * Does not block.  Idempotent.  Main thread.
 */
void producer_pool_stop(producer_pool_t *p);

/*
 * producer_pool_finish tells the producers that the consumers have all
 * exited, so no message will be stored any more: each sends the replies
 * that are due, closes its sockets and exits.  Also ends the wait after a
 * failed start.  Does not block.  Main thread.
 */
void producer_pool_finish(producer_pool_t *p);

/*
 * producer_pool_reading returns how many producer threads still read their
 * sockets: once it is 0 nothing more will be pushed into the queue.
 */
unsigned producer_pool_reading(producer_pool_t *p);

/* producer_pool_running returns how many producer threads have not exited. */
unsigned producer_pool_running(producer_pool_t *p);

/*
 * producer_pool_reap joins the threads that have exited, so that their
 * watchdog slots are freed while the others still work.  Does not block
 * (beyond a thread's last instructions).  Main thread.
 */
void producer_pool_reap(producer_pool_t *p);

/* producer_pool_join joins every started thread. Blocks. Main thread. */
void producer_pool_join(producer_pool_t *p);

/* The producers' counters, summed over the pool (messages). */
struct producer_counters {
    uint64_t received; /* queued */
    uint64_t rejected; /* refused: too large, too many frames, out of memory */
};

/* producer_pool_counters fills *out with the producers' counters.  Any thread. */
void producer_pool_counters(producer_pool_t *p, struct producer_counters *out);

/* producer_pool_destroy frees a joined pool. Accepts NULL. */
void producer_pool_destroy(producer_pool_t *p);

#endif
