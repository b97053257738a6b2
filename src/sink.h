/*
 * sink.h - where consumers deliver messages.
 *
 * A sink kind is a table of operations, one file each (sink_file.c,
 * sink_null.c), chosen by name at start.  Each consumer thread opens its own
 * instance on its own thread and is the only thread that ever uses it, so
 * sinks need no locking of their own state.
 *
 * Errors are negative errnos.  write() returns 0 when every message of the
 * batch is delivered (and, for fsync = always, on stable storage).  On error
 * it stores in *taken how many messages from the front of the batch were
 * delivered anyway (the caller sets it to 0 first); the caller retries only
 * the rest, so nothing is delivered twice.  The null sink and the file sink
 * on a regular file are all-or-nothing (a partial write is undone, *taken
 * is 0) unless undoing fails: then the file sink reports the records that
 * stay in the file whole, as it does on a FIFO or device, which cannot be
 * undone; the zmq sink hands messages to libzmq one by one and reports the
 * ones it took (push), or the acknowledged ones from the front (dealer).
 *
 * After a failed write, the caller's next write on that instance is the
 * rest of the same batch (the same message pointers, batch + taken), until
 * the batch is all taken or the drain deadline gives up on it (then the
 * instance gets no more writes).  The dealer zmq sink relies on this: it
 * keeps the state of the messages it sent and is still waiting on across
 * the calls (a write of another batch makes it drop that state and the
 * connections the replies would come on).
 *
 * -EINPROGRESS is not a failure: the sink handed messages over and is
 * waiting on the target's answer (the dealer zmq sink awaiting replies).
 * The caller calls again at once with the rest, without a backoff and
 * without counting a failed write.
 */
#ifndef ZPIPE_SINK_H
#define ZPIPE_SINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "msg.h"

/*
 * What a sink instance is opened with.  Owned by the daemon, borrowed by the
 * consumer pool and the sinks; it outlives every sink instance.
 */
struct sink_env {
    const struct conf *cfg; /* the whole configuration */
    void *zctx;             /* the daemon's ZeroMQ context (thread-safe), or NULL */
    /* Set once at the drain deadline, or NULL: a write that is waiting on a
     * target that takes nothing (a FIFO nobody reads) gives up with
     * -ECANCELED, *taken saying how many whole records got out. */
    const _Atomic bool *is_cancelled;
};

struct sink_ops {
    const char *name;
    /* open makes a new instance for the calling thread in *state. env is borrowed. */
    int (*open)(const struct sink_env *env, void **state);
    /* write delivers batch[0..n); the messages stay the caller's.  On error
     * *taken says how many of the first ones were delivered (see above). */
    int (*write)(void *state, struct msg *const *batch, size_t n, size_t *taken);
    /* flush makes what was written durable if the sink's policy calls for it
     * now (e.g. fsync = interval and the interval has passed); force = 1
     * makes it durable regardless of the interval (at close, at drain). */
    int (*flush)(void *state, int force);
    /* reopen closes and reopens the underlying resource (SIGHUP). */
    int (*reopen)(void *state);
    /* close flushes (force) and frees the instance. Accepts NULL. */
    void (*close)(void *state);
};

extern const struct sink_ops sink_file_ops;
extern const struct sink_ops sink_null_ops;
extern const struct sink_ops sink_zmq_push_ops;
extern const struct sink_ops sink_zmq_dealer_ops;

/*
 * sink_find returns the operations for cfg's output.sink (for zmq, by
 * zmq.mode), or NULL if this build has none.
 */
const struct sink_ops *sink_find(const struct conf *cfg);

#endif
