/*
 * queue.c - the bounded MPMC message queue.
 *
 * Design.  One mutex guards everything; two condition variables hang off
 * it: not_empty, where consumers wait for a message, and not_full, where
 * producers wait for room.  Messages form an intrusive singly-linked FIFO
 * through msg->next, so push never allocates and nothing is ever allocated,
 * freed or logged under the lock.
 *
 * Who wakes whom:
 *   - a push into an empty queue wakes one consumer (signal not_empty) if
 *     any is waiting;
 *   - pop wakes producers if any is waiting: one when it took one message,
 *     all when it took several (several may now fit);
 *   - a woken waiter that got what it wanted passes the wakeup on when
 *     there is more for the others: a consumer that left messages behind
 *     signals not_empty, a producer that left room signals not_full.  This
 *     covers room freed in bytes rather than in messages, and a consumer
 *     woken by one push that took several;
 *   - a release (bytes given back) wakes one producer if any is waiting;
 *   - close broadcasts both, once.
 * Signals are sent only when the waiter counts say someone is waiting, so an
 * uncontended push or pop never enters the kernel for a wakeup.  Waiters are
 * counted under the lock before they wait, so no wakeup can be lost.
 *
 * Invariants (under the lock): count and bytes match the list; held is what
 * pops handed out and queue_release() has not given back, i.e. the batches
 * in the consumers' hands (bytes and held sum msg_cost(), so frames count
 * even when they carry no payload); a push is admitted when count <
 * capacity and bytes + held + cost <= max_bytes, or when the queue is
 * empty and nothing is held, so one message larger than max_bytes still
 * gets through instead of blocking its producer forever (it waits for the
 * consumers to give back what they hold, which they do as their sink
 * stores it, or at the drain); once closed, no push succeeds and pops drain
 * what is left.
 *
 * Every wait is a pthread_cond_timedwait on CLOCK_MONOTONIC bounded by the
 * caller's timeout, so worker threads regain control (and check in with the
 * watchdog) however long the queue stays full or empty.  A producer woken
 * when its message still does not fit (say it waits for an empty queue)
 * sleeps again; the next pop or release wakes someone again, and consumers
 * keep popping while anything is queued, so that costs latency, never
 * progress.
 */
#include "config.h"
#include "queue.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "util.h"

struct queue {
    pthread_mutex_t lock;       /* protects every field below but the limits */
    pthread_cond_t not_empty;   /* consumers wait here for count > 0 or closed */
    pthread_cond_t not_full;    /* producers wait here for room or closed */

    struct msg *head;           /* oldest message, popped first; lock */
    struct msg *tail;           /* newest message, valid when head != NULL; lock */
    size_t count;               /* messages queued; lock */
    uint64_t bytes;             /* bytes queued (msg_cost() summed); lock */
    uint64_t held;              /* bytes popped, not yet released; lock */
    unsigned pushers_waiting;   /* producers in a not_full wait; lock */
    unsigned poppers_waiting;   /* consumers in a not_empty wait; lock */
    bool is_closed;             /* set once by queue_close; lock */
    uint64_t pushed;            /* messages ever pushed; lock */
    uint64_t popped;            /* messages ever popped; lock */

    /*
     * Monotonic ms since producers have been waiting on not_full with none
     * of them admitted, 0 while none waits.  Written under the lock, read
     * without it so the stats and watchdog paths on the main thread never
     * contend with producers.
     */
    _Atomic uint64_t blocked_since_ms;

    size_t capacity;            /* messages; immutable */
    uint64_t max_bytes;         /* msg_cost() bytes; immutable */
};

int
queue_create(queue_t **out, size_t capacity, uint64_t max_bytes)
{
    pthread_condattr_t attr;
    queue_t *q;
    int rc;

    if (capacity == 0 || max_bytes == 0) {
        return -EINVAL;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return -ENOMEM;
    }
    q->capacity = capacity;
    q->max_bytes = max_bytes;
    atomic_init(&q->blocked_since_ms, 0);

    rc = pthread_mutex_init(&q->lock, NULL);
    if (rc != 0) {
        goto fail_mutex;
    }
    rc = pthread_condattr_init(&attr);
    if (rc != 0) {
        goto fail_attr;
    }
    /* Timed waits must not jump with the wall clock. */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc != 0) {
        goto fail_not_empty;
    }
    rc = pthread_cond_init(&q->not_empty, &attr);
    if (rc != 0) {
        goto fail_not_empty;
    }
    rc = pthread_cond_init(&q->not_full, &attr);
    if (rc != 0) {
        goto fail_not_full;
    }
    pthread_condattr_destroy(&attr);
    *out = q;
    return 0;

fail_not_full:
    pthread_cond_destroy(&q->not_empty);
fail_not_empty:
    pthread_condattr_destroy(&attr);
fail_attr:
    pthread_mutex_destroy(&q->lock);
fail_mutex:
    free(q);
    return -rc;
}

void
queue_destroy(queue_t *q)
{
    struct msg *m;

    if (q == NULL) {
        return;
    }
    while ((m = q->head) != NULL) {
        q->head = m->next;
        msg_destroy(m);
    }
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

/* stall_clock_start_locked records now as the start of a producer stall. */
static void
stall_clock_start_locked(queue_t *q)
{
    uint64_t now_ms = util_now_ms();

    /* 0 means "nobody waits"; a clock reading of 0 is bumped to stay distinct. */
    atomic_store_explicit(&q->blocked_since_ms, now_ms > 0 ? now_ms : 1, memory_order_relaxed);
}

/* has_room_locked tells whether a message costing cost bytes may be pushed now. */
static bool
has_room_locked(const queue_t *q, uint64_t cost)
{
    if (q->count == 0 && q->held == 0) {
        return true;            /* even an oversize message: see the note above */
    }
    uint64_t used = q->bytes + q->held;

    return q->count < q->capacity && used <= q->max_bytes && cost <= q->max_bytes - used;
}

/*
 * admit_locked takes msgs[0..n) from the front while each fits, links them
 * at the tail and returns how many it took.  The first one is checked alone
 * so an oversize message still gets into an empty queue, nothing held.
 */
static size_t
admit_locked(queue_t *q, struct msg *const *msgs, size_t n)
{
    size_t k = 0;

    while (k < n && has_room_locked(q, msg_cost(msgs[k]))) {
        struct msg *m = msgs[k++];

        m->next = NULL;
        if (q->head == NULL) {
            q->head = m;
        } else {
            q->tail->next = m;
        }
        q->tail = m;
        q->count++;
        q->bytes += msg_cost(m);
    }
    q->pushed += k;
    return k;
}

/*
 * Wakes the waiters a push, pop or release decided on under the lock, after
 * releasing it: a waiter woken under the lock would only block again on
 * the mutex still held by its waker (a second sleep and wakeup).  A
 * waiter that counted itself under the lock is in (or about to enter) its
 * wait, so a signal sent after the unlock still reaches it; a spurious
 * wakeup is harmless since every wait rechecks its condition.
 */
static void
signal_unlocked(queue_t *q, bool is_wake_popper, bool is_wake_pusher, bool is_wake_all_pushers)
{
    if (is_wake_popper) {
        pthread_cond_signal(&q->not_empty);
    }
    if (is_wake_all_pushers) {
        pthread_cond_broadcast(&q->not_full);
    } else if (is_wake_pusher) {
        pthread_cond_signal(&q->not_full);
    }
}

int
queue_push_batch(queue_t *q, struct msg *const *msgs, size_t n, unsigned timeout_ms,
                 _Atomic uint64_t *pushed, bool *wake)
{
    bool has_waited = false;
    struct timespec deadline;
    uint64_t cost;
    size_t k;

    if (n == 0) {
        return -EINVAL;
    }
    cost = msg_cost(msgs[0]);
    if (n > INT_MAX) {
        n = INT_MAX;            /* the count is returned as an int */
    }

    pthread_mutex_lock(&q->lock);
    if (!q->is_closed && !has_room_locked(q, cost) && timeout_ms > 0) {
        has_waited = true;
        util_deadline_ts(CLOCK_MONOTONIC, timeout_ms, &deadline);
        if (q->pushers_waiting++ == 0) {
            stall_clock_start_locked(q);
        }
        while (!q->is_closed && !has_room_locked(q, cost)) {
            if (pthread_cond_timedwait(&q->not_full, &q->lock, &deadline) == ETIMEDOUT) {
                break;
            }
        }
        if (--q->pushers_waiting == 0) {
            atomic_store_explicit(&q->blocked_since_ms, 0, memory_order_relaxed);
        }
    }
    if (q->is_closed) {
        pthread_mutex_unlock(&q->lock);
        return QUEUE_CLOSED;
    }
    bool was_empty = q->count == 0;

    k = admit_locked(q, msgs, n);
    if (k == 0) {
        pthread_mutex_unlock(&q->lock);
        return -ETIMEDOUT;
    }
    if (pushed != NULL) {
        /* Under the lock, with the messages: see queue_snapshot(). */
        atomic_store_explicit(pushed, atomic_load_explicit(pushed, memory_order_relaxed) + k,
                              memory_order_relaxed);
    }

    /* One wakeup when the queue stops being empty: the consumer woken
     * takes what it finds, this batch and any pushed before it runs, and
     * passes the wakeup on if it left messages behind.  (A consumer waits
     * only on an empty queue, so a queue that was not empty has a wakeup
     * on its way already, or no consumer waiting.) */
    bool is_wake_popper = was_empty && q->poppers_waiting > 0, is_wake_pusher = false;

    if (has_waited && q->pushers_waiting > 0) {
        /* The blocked producers made progress: restart the stall clock. */
        stall_clock_start_locked(q);
        /* Pass the wakeup on if a pop freed room for more than this one. */
        is_wake_pusher = has_room_locked(q, 0);
    }
    pthread_mutex_unlock(&q->lock);
    if (wake != NULL) {
        *wake = is_wake_popper;
        is_wake_popper = false;
    }
    signal_unlocked(q, is_wake_popper, is_wake_pusher, false);
    return (int)k;
}

void
queue_wake_consumer(queue_t *q)
{
    pthread_cond_signal(&q->not_empty);
}

int
queue_push(queue_t *q, struct msg *m, unsigned timeout_ms)
{
    int r = queue_push_batch(q, &m, 1, timeout_ms, NULL, NULL);

    return r > 0 ? 0 : r;
}

int
queue_pop_batch(queue_t *q, struct msg **out, size_t max, unsigned timeout_ms)
{
    struct timespec deadline;
    bool has_deadline = false;
    size_t n = 0;

    if (max == 0) {
        return -EINVAL;
    }
    if (max > INT_MAX) {
        max = INT_MAX;          /* the count is returned as an int */
    }

    pthread_mutex_lock(&q->lock);
    while (q->count == 0) {
        if (q->is_closed) {
            pthread_mutex_unlock(&q->lock);
            return QUEUE_CLOSED;
        }
        if (timeout_ms == 0) {
            pthread_mutex_unlock(&q->lock);
            return -ETIMEDOUT;
        }
        if (!has_deadline) {
            util_deadline_ts(CLOCK_MONOTONIC, timeout_ms, &deadline);
            has_deadline = true;
        }
        q->poppers_waiting++;
        int rc = pthread_cond_timedwait(&q->not_empty, &q->lock, &deadline);
        q->poppers_waiting--;
        if (rc == ETIMEDOUT && q->count == 0) {
            bool is_closed = q->is_closed; /* read under the lock: queue_close() writes it */

            pthread_mutex_unlock(&q->lock);
            return is_closed ? QUEUE_CLOSED : -ETIMEDOUT;
        }
    }

    while (n < max && q->head != NULL) {
        struct msg *m = q->head;

        q->head = m->next;
        m->next = NULL;
        uint64_t cost = msg_cost(m);

        q->bytes -= cost;
        q->held += cost;
        out[n++] = m;
    }
    q->count -= n;
    q->popped += n;
    if (q->head == NULL) {
        q->tail = NULL;
    }

    /* Pass the wakeup on: a push's signal may have woken us for less than we took. */
    bool is_wake_popper = q->count > 0 && q->poppers_waiting > 0;
    bool is_wake_pusher = q->pushers_waiting > 0;
    bool is_wake_all_pushers = n > 1 && q->pushers_waiting > 1;

    pthread_mutex_unlock(&q->lock);
    signal_unlocked(q, is_wake_popper, is_wake_pusher, is_wake_all_pushers);
    return (int)n;
}

void
queue_release(queue_t *q, uint64_t bytes)
{
    bool is_wake_pusher;

    pthread_mutex_lock(&q->lock);
    q->held -= bytes < q->held ? bytes : q->held;
    /* One producer; it passes the wakeup on if there is room for more. */
    is_wake_pusher = q->pushers_waiting > 0 && has_room_locked(q, 0);
    pthread_mutex_unlock(&q->lock);
    signal_unlocked(q, false, is_wake_pusher, false);
}

void
queue_close(queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    if (!q->is_closed) {
        q->is_closed = true;
        pthread_cond_broadcast(&q->not_empty);
        pthread_cond_broadcast(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
}

void
queue_depth(queue_t *q, size_t *count, uint64_t *bytes)
{
    pthread_mutex_lock(&q->lock);
    if (count != NULL) {
        *count = q->count;
    }
    if (bytes != NULL) {
        *bytes = q->bytes;
    }
    pthread_mutex_unlock(&q->lock);
}

void
queue_snapshot(queue_t *q, queue_snapshot_fn *fn, void *arg)
{
    struct queue_counts counts;

    pthread_mutex_lock(&q->lock);
    counts = (struct queue_counts){
        .count = q->count, .bytes = q->bytes, .pushed = q->pushed, .popped = q->popped
    };
    fn(arg, &counts);
    pthread_mutex_unlock(&q->lock);
}

uint64_t
queue_blocked_since_ms(queue_t *q)
{
    return atomic_load_explicit(&q->blocked_since_ms, memory_order_relaxed);
}
