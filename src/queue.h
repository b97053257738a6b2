/*
 * queue.h - the bounded MPMC message queue between producers and consumers.
 *
 * Bounded in messages and in bytes, each message counting for msg_cost():
 * its payload plus a fixed cost per frame after the first (msg.h).
 * Producers block in queue_push() while it is full; consumers block in
 * queue_pop_batch() while it is empty.
 * Every wait is bounded by the caller's timeout, so worker threads can check
 * in with the watchdog.  queue_close() wakes everyone: push then fails with
 * QUEUE_CLOSED, and pop returns what is left, then QUEUE_CLOSED once closed
 * *and* empty.  The queue knows nothing about ZeroMQ or sinks.
 *
 * All functions are thread-safe unless said otherwise.
 */
#ifndef ZPIPE_QUEUE_H
#define ZPIPE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "msg.h"

typedef struct queue queue_t;

/* Returned by push and pop once the queue is closed (and, for pop, empty). */
#define QUEUE_CLOSED (-10001)

/*
 * queue_create makes an empty queue holding at most capacity messages and at
 * most max_bytes bytes (msg_cost() summed), counting the bytes of
 * popped messages until queue_release() gives them back: max_bytes bounds
 * what is queued and what consumers hold together.  A message larger than
 * max_bytes is still accepted once nothing is queued or held, so it cannot
 * block forever.  Returns 0 and *out, or -EINVAL (a zero limit) or -ENOMEM.
 */
int queue_create(queue_t **out, size_t capacity, uint64_t max_bytes);

/*
 * queue_destroy frees the queue and every message still in it.  Accepts
 * NULL.  No thread may be using the queue or waiting on it.
 */
void queue_destroy(queue_t *q);

/*
 * queue_push appends m, waiting up to timeout_ms (0 = do not wait) while the
 * queue is full.  Returns 0 when m was queued (the queue owns it and will
 * use m->next), -ETIMEDOUT when it is still full, QUEUE_CLOSED when closed
 * (also when the queue closes during the wait).  On failure the caller still
 * owns m.  Producer threads; blocks at most timeout_ms.
 */
int queue_push(queue_t *q, struct msg *m, unsigned timeout_ms);

/*
 * queue_push_batch appends msgs[0..n) in order, as many from the front as
 * fit, under one lock and with at most one wakeup: the producer's fast path.
 * It waits up to timeout_ms (0 = do not wait) while not even msgs[0] fits.
 * Returns how many were queued (> 0; the queue owns those, the caller still
 * owns the rest), -ETIMEDOUT, QUEUE_CLOSED, or -EINVAL when n is 0.  If
 * pushed is not NULL, the number queued is added to it under the queue's
 * lock (the counter must have this one writer), so queue_snapshot() sees it
 * and the queued messages together.  If wake is NULL, a consumer waiting
 * for the messages is woken before the call returns; otherwise that wakeup
 * is left to the caller: *wake is set to whether one is due, and the caller
 * sends it with queue_wake_consumer() once it has done what should not wait
 * behind it (router mode: the OK replies), and before it pushes again.
 * Producer threads; blocks at most timeout_ms.
 */
int queue_push_batch(queue_t *q, struct msg *const *msgs, size_t n, unsigned timeout_ms,
                     _Atomic uint64_t *pushed, bool *wake);

/*
 * queue_wake_consumer wakes one consumer waiting for messages: the wakeup a
 * queue_push_batch() call left to its caller.  Producer threads; never
 * blocks.
 */
void queue_wake_consumer(queue_t *q);

/*
 * queue_pop_batch removes up to max messages in FIFO order into out[],
 * waiting up to timeout_ms (0 = do not wait) while the queue is empty.
 * Returns the number of messages taken (> 0; the caller owns them),
 * -ETIMEDOUT when none came, QUEUE_CLOSED when the queue is closed and
 * empty, or -EINVAL when max is 0.  A closed queue still hands out what it
 * holds.  Their bytes count against max_bytes until the caller, done with
 * them, gives them back with queue_release().  Consumer threads; blocks at
 * most timeout_ms.
 */
int queue_pop_batch(queue_t *q, struct msg **out, size_t max, unsigned timeout_ms);

/*
 * queue_release gives back bytes (the msg_cost() sum of popped messages the
 * caller is done with) to max_bytes, and wakes a producer waiting for room.
 * Consumer threads; never blocks beyond the queue's short critical sections.
 */
void queue_release(queue_t *q, uint64_t bytes);

/*
 * queue_close marks the queue closed and wakes every waiter: pushes fail
 * with QUEUE_CLOSED from now on, pops drain what is left.  Idempotent.
 * Any thread; never blocks beyond the queue's short critical sections.
 */
void queue_close(queue_t *q);

/*
 * queue_depth reports the messages and bytes (msg_cost()) now queued, a
 * consistent pair.  Either pointer may be NULL.
 */
void queue_depth(queue_t *q, size_t *count, uint64_t *bytes);

/* What a queue holds and has passed through, one consistent set. */
struct queue_counts {
    size_t count;    /* messages queued now */
    uint64_t bytes;  /* their msg_cost() */
    uint64_t pushed; /* messages ever pushed */
    uint64_t popped; /* messages ever popped: pushed = count + popped */
};

/*
 * queue_snapshot calls fn(arg, counts) under the queue's lock, while no push
 * or pop can run.  Counters that pushers add to under the lock
 * (queue_push_batch's pushed) read inside fn are consistent with them, so a
 * live snapshot of the accounting invariant holds exactly.  fn must be
 * short and must not call into the queue.  Any thread.
 */
typedef void queue_snapshot_fn(void *arg, const struct queue_counts *counts);
void queue_snapshot(queue_t *q, queue_snapshot_fn *fn, void *arg);

/*
 * queue_blocked_since_ms returns the monotonic time (util_now_ms) since
 * which producers have been waiting on a full queue without any of the
 * waiting ones being admitted, or 0 if none is waiting now.  So "now minus
 * this" is how long the producers have been stalled.  Lock-free: cheap
 * enough for the main thread's timers.
 */
uint64_t queue_blocked_since_ms(queue_t *q);

#endif
