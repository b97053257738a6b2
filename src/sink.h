/*
 * sink.h - where consumers deliver messages.
 *
 * A sink kind is a table of operations, one file each (sink_file.c, with
 * its fdatasync side in sink_file_sync.c; sink_null.c, sink_zmq_push.c,
 * sink_zmq_dealer.c, sink_sqlite.c, sink_postgres.c, sink_nats.c), chosen
 * from the configuration at start (sink_find()).
 * Each consumer thread opens its own instance on its own thread and is the
 * only thread that ever calls it, so
 * a sink needs no locking of its own state (a helper thread of the sink's
 * own, such as the file sink's syncer, is the sink's business).
 *
 * Messages in flight.  The consumer offers messages with submit(); the sink
 * accepts some of them from the front and keeps them in flight, across
 * calls, until it knows their outcome, which it reports through the done
 * callback it was opened with:
 *
 *   SINK_STORED  the messages are stored, as far as this sink can ever know
 *                (below); the sink is done with them.
 *   SINK_RETRY   they are not stored and never will be from this submission:
 *                the sink forgot them, and the consumer writes them again
 *                later (after a backoff) or spills them.  A sink reports a
 *                message RETRY only when it did not store it, or when it
 *                cannot know (a lost reply): then the retry may store it
 *                twice, which the sink documents (at-least-once).
 *
 * Outcomes are reported in submission order: each done() call covers the n
 * oldest messages in flight on the instance, so the consumer keeps them in
 * a FIFO.  A sink that learns outcomes out of order (several downstream
 * connections) holds the later ones until the earlier are known.  done() is
 * only ever called from within submit(), poll() and abort(), on the
 * consumer's thread; it must not call back into the sink.
 *
 * What stored means, per sink (the reason [input] ack = stored exists):
 * null, when accepted; zmq push, when libzmq took the message (nothing
 * later is ever learnt); zmq dealer, when the downstream's OK arrived; file,
 * when written (ack = queued) or once an fdatasync that began after the
 * write succeeded (ack = stored; on a FIFO or device, when written);
 * sqlite and postgres, when the COMMIT of their transaction succeeded;
 * nats, when the JetStream ack of the stream arrived.
 *
 * Memory.  The messages stay the consumer's (borrowed by the sink until
 * their outcome; the array passed to submit() is not: a sink copies the
 * pointers it keeps).  They stay counted in queue.max_bytes while in flight,
 * so what sinks hold is bounded by the queue's limits; a sink bounds its own
 * window besides, accepting fewer, or none, when it is full.
 *
 * Errors are negative errnos.  An error return is about the call (logged by
 * the consumer, which backs off before it offers more); what happened to
 * messages is said by outcomes alone.
 */
#ifndef ZPIPE_SINK_H
#define ZPIPE_SINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "msg.h"

/* The longest a poll() may wait: the consumer's watchdog check-in period. */
#define SINK_POLL_MAX_MS 100

enum sink_outcome {
    SINK_STORED, /* stored: the sink is done with the messages */
    SINK_RETRY,  /* not stored: the consumer writes them again or spills them */
};

/*
 * sink_done_fn reports the outcome of the n oldest messages in flight on an
 * instance.  err is 0 for SINK_STORED; for SINK_RETRY it is the negative
 * errno that cost them (for the log and the failed-write counter), or 0
 * when nothing failed (the drain deadline aborted them).
 */
typedef void sink_done_fn(void *arg, size_t n, enum sink_outcome outcome, int err);

/*
 * What a sink instance is opened with.  Owned by the daemon, borrowed by the
 * consumer pool and the sinks; it outlives every sink instance.
 */
struct sink_env {
    const struct conf *cfg; /* the whole configuration */
    void *zctx;             /* the daemon's ZeroMQ context (thread-safe), or NULL */
    /* Set once at the drain deadline, or NULL: a call that is waiting on a
     * target that takes nothing (a FIFO nobody reads) stops waiting and
     * reports what it could not deliver as SINK_RETRY. */
    const _Atomic bool *is_aborted;
};

struct sink_ops {
    const char *name;
    /*
     * open makes a new instance for the calling thread in *state; its
     * outcomes go to done(arg, ...).  env is borrowed.
     */
    int (*open)(const struct sink_env *env, sink_done_fn *done, void *arg, void **state);
    /*
     * submit offers msgs[0..n) (n >= 1), in order after every message
     * already in flight.  The sink accepts the first *accepted of them
     * (0 when its window is full: the consumer polls, then offers again;
     * so accepting none returns 0 only with messages in flight, whose
     * outcomes free the window); it may report outcomes, of these or
     * older messages, before it returns.  Returns 0, or a negative errno
     * when the target failed (a write error, no downstream, no room):
     * *accepted may be 0 or more then too, and the consumer backs off.
     */
    int (*submit)(void *state, struct msg *const *msgs, size_t n, size_t *accepted);
    /*
     * poll waits at most timeout_ms (0..SINK_POLL_MAX_MS) for the outcome of
     * messages in flight, and reports what it learns.  With nothing in
     * flight it does the sink's idle work (a periodic fsync, a path check)
     * and returns at once.  Returns 0 or a negative errno (logged).
     */
    int (*poll)(void *state, int timeout_ms);
    /*
     * abort is the drain deadline: it reports every message in flight at
     * once, without waiting on the target: SINK_STORED where the sink can
     * tell they are stored now, SINK_RETRY (to be spilled) otherwise.  The
     * instance gets no more submit() calls; only close().
     */
    void (*abort)(void *state);
    /*
     * reopen closes and reopens the underlying resource (SIGHUP).  Only
     * called with nothing in flight.
     */
    int (*reopen)(void *state);
    /*
     * close makes durable what the instance wrote (a final fsync) and frees
     * it.  Only called with nothing in flight.  Accepts NULL.
     */
    void (*close)(void *state);
};

extern const struct sink_ops sink_file_ops;
extern const struct sink_ops sink_null_ops;
extern const struct sink_ops sink_zmq_push_ops;
extern const struct sink_ops sink_zmq_dealer_ops;
extern const struct sink_ops sink_sqlite_ops;   /* only in a build with libsqlite3 */
extern const struct sink_ops sink_postgres_ops; /* only in a build with libpq */
extern const struct sink_ops sink_nats_ops;     /* only in a build with libnats */

/*
 * sink_find returns the operations for cfg's output.sink (for zmq, by
 * zmq.mode), or NULL if this build has none.
 */
const struct sink_ops *sink_find(const struct conf *cfg);

#endif
