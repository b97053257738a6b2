/*
 * test_queue.c - the bounded MPMC queue: order, limits, close, wakeups, and
 * a multi-thread stress run.
 *
 * queue.c is included, as chrony's unit tests do, so a test can see how many
 * threads wait inside the queue: that is how it knows a thread is blocked
 * before it acts, instead of sleeping and hoping.
 *
 * ZPIPE_STRESS_N sets the messages per producer of the stress test (default
 * 100000).
 */
#include "queue.c"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util.h"

#define LONG_WAIT_MS 10000u     /* "forever" for a test; hitting it is a failure */

static struct msg *
make_msg(size_t size, uint32_t tag)
{
    struct msg *m = msg_create(1, &size);

    if (m == NULL) {
        bail_out("msg_create(%zu) failed", size);
    }
    memset(msg_frame_data(m, 0), 0, size);
    if (size >= sizeof(tag)) {
        memcpy(msg_frame_data(m, 0), &tag, sizeof(tag));
    }
    return m;
}

static uint32_t
msg_tag(const struct msg *m)
{
    uint32_t tag;

    memcpy(&tag, msg_frame(m, 0).data, sizeof(tag));
    return tag;
}

static queue_t *
make_queue(size_t capacity, uint64_t max_bytes)
{
    queue_t *q = NULL;

    if (queue_create(&q, capacity, max_bytes) != 0) {
        bail_out("queue_create(%zu, %llu) failed", capacity, (unsigned long long)max_bytes);
    }
    return q;
}

/* release_batch frees what a pop returned and gives its bytes back to q,
 * as a consumer does; n may be an error, then nothing. */
static void
release_batch(queue_t *q, struct msg **out, int n)
{
    uint64_t bytes = 0;

    for (int i = 0; i < n; i++) {
        bytes += msg_cost(out[i]);
        msg_destroy(out[i]);
    }
    queue_release(q, bytes);
}

/* pop1 pops one message without waiting, or returns NULL. */
static struct msg *
pop1(queue_t *q)
{
    struct msg *out[1];

    return queue_pop_batch(q, out, 1, 0) == 1 ? out[0] : NULL;
}

static size_t
depth(queue_t *q)
{
    size_t count;

    queue_depth(q, &count, NULL);
    return count;
}

/* Which waiter count wait_for_waiters() watches. */
enum waiter_kind { PUSHERS, POPPERS };

/*
 * wait_for_waiters returns once n threads of that kind are blocked inside q.
 * It polls the queue's own counters: a thread counted there holds or has
 * released the lock only by entering pthread_cond_timedwait, so whatever
 * the test does next under the lock happens while it waits.
 */
static void
wait_for_waiters(queue_t *q, enum waiter_kind kind, unsigned n)
{
    uint64_t give_up_ms = util_now_ms() + LONG_WAIT_MS;

    for (;;) {
        pthread_mutex_lock(&q->lock);
        unsigned now = kind == PUSHERS ? q->pushers_waiting : q->poppers_waiting;
        pthread_mutex_unlock(&q->lock);
        if (now >= n) {
            return;
        }
        if (util_now_ms() > give_up_ms) {
            bail_out("%u %s never blocked", n, kind == PUSHERS ? "pushers" : "poppers");
        }
        sched_yield();
    }
}

/* ---------------------------------------------------------------- threads */

struct pusher {
    pthread_t thread;
    queue_t *q;
    struct msg *m;
    unsigned timeout_ms;
    int rc;
    uint64_t elapsed_ms;
};

static void *
pusher_main(void *arg)
{
    struct pusher *p = arg;
    uint64_t start_ms = util_now_ms();

    p->rc = queue_push(p->q, p->m, p->timeout_ms);
    p->elapsed_ms = util_now_ms() - start_ms;
    return NULL;
}

static void
pusher_start(struct pusher *p, queue_t *q, struct msg *m, unsigned timeout_ms)
{
    *p = (struct pusher){ .q = q, .m = m, .timeout_ms = timeout_ms, .rc = 1 };
    if (pthread_create(&p->thread, NULL, pusher_main, p) != 0) {
        bail_out("pthread_create failed");
    }
}

struct popper {
    pthread_t thread;
    queue_t *q;
    struct msg *out[8];
    unsigned timeout_ms;
    int rc;
    uint64_t elapsed_ms;
};

static void *
popper_main(void *arg)
{
    struct popper *p = arg;
    uint64_t start_ms = util_now_ms();

    p->rc = queue_pop_batch(p->q, p->out, 8, p->timeout_ms);
    p->elapsed_ms = util_now_ms() - start_ms;
    return NULL;
}

static void
popper_start(struct popper *p, queue_t *q, unsigned timeout_ms)
{
    *p = (struct popper){ .q = q, .timeout_ms = timeout_ms, .rc = 1 };
    if (pthread_create(&p->thread, NULL, popper_main, p) != 0) {
        bail_out("pthread_create failed");
    }
}

/* ---------------------------------------------------------------- single thread */

static void
test_create(void)
{
    queue_t *q = NULL;

    ok(queue_create(&q, 0, 10) == -EINVAL && q == NULL, "capacity 0: -EINVAL");
    ok(queue_create(&q, 10, 0) == -EINVAL && q == NULL, "max_bytes 0: -EINVAL");
    ok(queue_create(&q, 1, 1) == 0 && q != NULL, "create");
    queue_destroy(q);
    queue_destroy(NULL);
    ok(1, "destroy accepts NULL");

    /* destroy frees what is still queued: ASan's leak check proves it. */
    q = make_queue(4, 100);
    queue_push(q, make_msg(10, 1), 0);
    queue_push(q, make_msg(10, 2), 0);
    queue_destroy(q);
    ok(1, "destroy frees queued messages");
}

static void
test_fifo(void)
{
    queue_t *q = make_queue(100, 100000);
    struct msg *out[8];
    bool is_ordered = true;
    size_t count;
    uint64_t bytes;
    uint32_t next = 0;
    int n;

    for (uint32_t i = 0; i < 20; i++) {
        if (queue_push(q, make_msg(4 + i, i), 0) != 0) {
            bail_out("push %u failed", i);
        }
    }
    queue_depth(q, &count, &bytes);
    ok(count == 20 && bytes == 20 * 4 + 190, "depth counts messages and bytes");

    ok(queue_pop_batch(q, out, 0, 0) == -EINVAL, "pop with max 0: -EINVAL");
    n = queue_pop_batch(q, out, 1, 0);
    ok(n == 1 && msg_tag(out[0]) == 0 && out[0]->next == NULL, "pop 1 takes the oldest");
    release_batch(q, out, n);
    next = 1;
    while ((n = queue_pop_batch(q, out, 7, 0)) > 0) {
        for (int i = 0; i < n; i++) {
            is_ordered = is_ordered && msg_tag(out[i]) == next++ && out[i]->next == NULL;
            msg_destroy(out[i]);
        }
    }
    ok(is_ordered && next == 20, "batches of 7 come out in FIFO order");
    ok(n == -ETIMEDOUT, "pop on empty with timeout 0: -ETIMEDOUT");
    queue_depth(q, &count, &bytes);
    ok(count == 0 && bytes == 0, "empty again: depth 0, 0 bytes");

    uint64_t start_us = util_now_us();
    n = queue_pop_batch(q, out, 8, 30);
    uint64_t waited_us = util_now_us() - start_us;
    ok(n == -ETIMEDOUT && waited_us >= 30000 && waited_us < LONG_WAIT_MS * 1000,
       "pop on empty waits timeout_ms then -ETIMEDOUT (%llu us)",
       (unsigned long long)waited_us);

    /* Interleaved push and pop keep order across the list becoming empty. */
    queue_push(q, make_msg(4, 100), 0);
    n = queue_pop_batch(q, out, 8, 0);
    queue_push(q, make_msg(4, 101), 0);
    queue_push(q, make_msg(4, 102), 0);
    ok(n == 1 && msg_tag(out[0]) == 100, "pop after refill");
    release_batch(q, out, n);
    n = queue_pop_batch(q, out, 8, 0);
    ok(n == 2 && msg_tag(out[0]) == 101 && msg_tag(out[1]) == 102, "tail relinked after empty");
    release_batch(q, out, n);
    queue_destroy(q);
}

static void
test_capacity_count(void)
{
    queue_t *q = make_queue(4, 1000);
    struct msg *extra = make_msg(10, 99);
    struct msg *m;

    for (uint32_t i = 0; i < 4; i++) {
        queue_push(q, make_msg(10, i), 0);
    }
    ok(queue_push(q, extra, 0) == -ETIMEDOUT, "full by count, timeout 0: -ETIMEDOUT at once");

    uint64_t start_us = util_now_us();
    int rc = queue_push(q, extra, 20);
    uint64_t waited_us = util_now_us() - start_us;
    ok(rc == -ETIMEDOUT && waited_us >= 20000, "full by count: waits 20 ms, then -ETIMEDOUT");
    ok(depth(q) == 4 && extra->next == NULL, "a refused message is not linked in");
    ok(queue_blocked_since_ms(q) == 0, "no producer waiting: blocked_since 0");

    ok((m = pop1(q)) != NULL, "pop one");
    msg_destroy(m);
    ok(queue_push(q, extra, 0) == 0, "room again: push succeeds");
    queue_destroy(q);
}

static void
test_capacity_bytes(void)
{
    queue_t *q = make_queue(100, 100);
    struct msg *m50 = make_msg(50, 2);
    struct msg *m;
    size_t count;
    uint64_t bytes;

    ok(queue_push(q, make_msg(60, 1), 0) == 0, "60 of 100 bytes");
    ok(queue_push(q, m50, 0) == -ETIMEDOUT, "50 more would exceed max_bytes: -ETIMEDOUT");
    ok(queue_push(q, m50, 10) == -ETIMEDOUT, "... also after waiting");
    ok(queue_push(q, make_msg(40, 3), 0) == 0, "40 more fills it exactly");
    ok(queue_push(q, make_msg(0, 4), 0) == 0, "an empty message still fits a byte-full queue");
    struct msg *m1 = make_msg(1, 5);
    ok(queue_push(q, m1, 0) == -ETIMEDOUT, "one more byte does not");
    msg_destroy(m1);
    queue_depth(q, &count, &bytes);
    ok(count == 3 && bytes == 100, "depth 3 messages, 100 bytes");

    ok((m = pop1(q)) != NULL && m->size == 60, "pop the 60");
    ok(queue_push(q, m50, 0) == -ETIMEDOUT, "popped, its 60 bytes still count until released");
    release_batch(q, &m, 1);
    ok(queue_push(q, m50, 0) == 0, "released, now the 50 fits");
    queue_destroy(q);
}

/* make_empty_frames makes a message of n empty frames: no payload at all. */
static struct msg *
make_empty_frames(size_t n)
{
    size_t *zeros = calloc(n, sizeof(*zeros));
    struct msg *m = zeros != NULL ? msg_create(n, zeros) : NULL;

    if (m == NULL) {
        bail_out("msg_create(%zu empty frames) failed", n);
    }
    free(zeros);
    return m;
}

/*
 * test_capacity_frames: max_bytes counts msg_cost(), so frames without
 * payload fill the queue too.  The finding: 200 messages of 65,535 empty
 * frames all went into a queue of max_bytes = 1M (351 MB held), since
 * their payload was 0.
 */
static void
test_capacity_frames(void)
{
    queue_t *q = make_queue(100, 1000);
    struct msg *m2 = make_empty_frames(2);
    struct msg *m;
    size_t count;
    uint64_t bytes;

    ok(queue_push(q, make_empty_frames(32), 0) == 0, "32 empty frames: 31 * 16 = 496 bytes");
    ok(queue_push(q, make_empty_frames(32), 0) == 0, "again: 992 of 1000 bytes");
    queue_depth(q, &count, &bytes);
    ok(count == 2 && bytes == 2 * 31 * MSG_FRAME_COST, "depth 2 messages, %llu bytes",
       (unsigned long long)bytes);
    ok(queue_push(q, m2, 0) == -ETIMEDOUT, "2 empty frames (16 bytes) do not fit any more");
    ok(queue_push(q, make_msg(0, 0), 0) == 0, "one empty frame costs nothing: it fits");

    ok((m = pop1(q)) != NULL && m->nframes == 32, "pop 32 frames");
    ok(queue_push(q, m2, 0) == -ETIMEDOUT, "popped, its frames still count until released");
    release_batch(q, &m, 1);
    ok(queue_push(q, m2, 0) == 0, "released, now the 2 frames fit");
    queue_destroy(q);

    /* The finding's numbers: one message of 65,535 empty frames takes a
     * 1M queue (it fits, just), and the next one must wait. */
    q = make_queue(65536, 1024 * 1024);
    m2 = make_empty_frames(65535);
    ok(queue_push(q, make_empty_frames(65535), 0) == 0, "65,535 empty frames fit max_bytes 1M");
    ok(queue_push(q, m2, 0) == -ETIMEDOUT, "a second one waits: the queue is full by bytes");
    queue_depth(q, &count, &bytes);
    ok(count == 1 && bytes == 65534u * MSG_FRAME_COST && bytes <= 1024 * 1024,
       "queued_bytes %llu: more than 0, at most max_bytes", (unsigned long long)bytes);
    msg_destroy(m2);
    queue_destroy(q);
}

static void
test_release_wakes_pusher(void)
{
    queue_t *q = make_queue(100, 100);
    struct msg *m;
    struct pusher p;

    queue_push(q, make_msg(60, 1), 0);
    queue_push(q, make_msg(10, 2), 0);
    m = pop1(q);
    pusher_start(&p, q, make_msg(50, 3), LONG_WAIT_MS); /* 10 queued + 60 held + 50 */
    wait_for_waiters(q, PUSHERS, 1);
    release_batch(q, &m, 1);
    pthread_join(p.thread, NULL);
    ok(p.rc == 0 && p.elapsed_ms < LONG_WAIT_MS / 2 && depth(q) == 2,
       "a release wakes a producer waiting for bytes (rc %d, %llu ms)", p.rc,
       (unsigned long long)p.elapsed_ms);
    queue_destroy(q);
}

static void
test_oversize(void)
{
    queue_t *q = make_queue(10, 100);
    struct msg *big = make_msg(150, 1);
    struct msg *small = make_msg(10, 2);
    struct msg *big2 = make_msg(150, 3);
    struct msg *m;
    size_t count;
    uint64_t bytes;

    ok(queue_push(q, big, 0) == 0, "oversize message admitted into an empty queue");
    queue_depth(q, &count, &bytes);
    ok(count == 1 && bytes == 150, "depth shows its bytes beyond max_bytes");
    ok(queue_push(q, small, 0) == -ETIMEDOUT, "nothing more while over max_bytes");
    ok((m = pop1(q)) == big, "pop the oversize message");
    ok(queue_push(q, small, 0) == -ETIMEDOUT,
       "nothing queued, but the consumer holds it: still over max_bytes");
    queue_release(q, msg_cost(m));
    msg_destroy(m);
    ok(queue_push(q, small, 0) == 0, "small message in once it is given back");
    ok(queue_push(q, big2, 0) == -ETIMEDOUT, "oversize refused when the queue is not empty");
    ok((m = pop1(q)) == small, "pop the small one");
    ok(queue_push(q, big2, 0) == -ETIMEDOUT,
       "oversize refused when the queue is empty but a consumer holds bytes");
    queue_release(q, msg_cost(m));
    msg_destroy(m);
    ok(queue_push(q, big2, 0) == 0, "oversize admitted once nothing is queued or held");
    queue_destroy(q);
}

/* snap_fn stores what queue_snapshot() saw. */
struct snap {
    struct queue_counts qc;
    uint64_t counted;           /* the caller's counter, read under the lock */
    _Atomic uint64_t *counter;
};

static void
snap_fn(void *arg, const struct queue_counts *qc)
{
    struct snap *s = arg;

    s->qc = *qc;
    s->counted = atomic_load_explicit(s->counter, memory_order_relaxed);
}

static void
test_push_batch(void)
{
    queue_t *q = make_queue(4, 100);
    _Atomic uint64_t pushed = 0;
    struct msg *in[6], *out[8];
    struct snap s = { .counter = &pushed };
    int n;

    for (uint32_t i = 0; i < 6; i++) {
        in[i] = make_msg(10, i);
    }
    ok(queue_push_batch(q, in, 0, 0, &pushed, NULL) == -EINVAL, "push_batch of 0: -EINVAL");
    n = queue_push_batch(q, in, 6, 0, &pushed, NULL);
    ok(n == 4 && atomic_load(&pushed) == 4, "push_batch takes what fits by count: 4 of 6");
    ok(in[3]->next == NULL && in[4]->next == NULL, "the ones left are not linked in");
    ok(queue_push_batch(q, in + 4, 2, 0, &pushed, NULL) == -ETIMEDOUT && atomic_load(&pushed) == 4,
       "full: -ETIMEDOUT, nothing counted");
    n = queue_pop_batch(q, out, 3, 0);
    ok(n == 3 && msg_tag(out[0]) == 0 && msg_tag(out[2]) == 2, "pop 3 in FIFO order");
    release_batch(q, out, n);
    queue_snapshot(q, snap_fn, &s);
    ok(s.qc.count == 1 && s.qc.bytes == 10 && s.qc.popped == 3 && s.qc.pushed == 4 &&
           s.counted == 4,
       "snapshot: pushed 4 (the caller's count too) = queued 1 + popped 3");
    n = queue_push_batch(q, in + 4, 2, 0, &pushed, NULL);
    ok(n == 2 && atomic_load(&pushed) == 6, "the last 2 go in once there is room");
    n = queue_pop_batch(q, out, 8, 0);
    ok(n == 3 && msg_tag(out[0]) == 3 && msg_tag(out[1]) == 4 && msg_tag(out[2]) == 5,
       "batch order kept across calls");
    release_batch(q, out, n);

    /* By bytes: 10 + 50 + 50 of 100; the second 50 must wait. */
    in[0] = make_msg(10, 10);
    in[1] = make_msg(50, 11);
    in[2] = make_msg(50, 12);
    n = queue_push_batch(q, in, 3, 0, NULL, NULL);
    ok(n == 2, "push_batch stops at max_bytes: 2 of 3");
    n = queue_pop_batch(q, out, 8, 0);
    release_batch(q, out, n);
    msg_destroy(in[2]);

    /* An oversize first message still enters an empty queue, alone. */
    in[0] = make_msg(150, 20);
    in[1] = make_msg(1, 21);
    n = queue_push_batch(q, in, 2, 0, NULL, NULL);
    ok(n == 1, "oversize first message admitted alone into an empty queue");
    queue_close(q);
    ok(queue_push_batch(q, in + 1, 1, 10, &pushed, NULL) == QUEUE_CLOSED &&
           atomic_load(&pushed) == 6,
       "closed: QUEUE_CLOSED, nothing counted");
    msg_destroy(in[1]);
    queue_snapshot(q, snap_fn, &s);
    ok(s.qc.popped == 8 && s.qc.count == 1 && s.qc.pushed == 9,
       "snapshot after close: 9 pushed, 8 popped, 1 queued");
    queue_destroy(q);
}

static void
test_close(void)
{
    queue_t *q = make_queue(10, 1000);
    struct msg *late = make_msg(4, 9);
    struct msg *out[8];
    int n;

    for (uint32_t i = 0; i < 3; i++) {
        queue_push(q, make_msg(4, i), 0);
    }
    queue_close(q);
    queue_close(q);
    ok(queue_push(q, late, 0) == QUEUE_CLOSED, "push after close: QUEUE_CLOSED");
    ok(queue_push(q, late, 100) == QUEUE_CLOSED && late->next == NULL,
       "push after close with a timeout: QUEUE_CLOSED at once, caller keeps the message");
    msg_destroy(late);

    n = queue_pop_batch(q, out, 2, 0);
    ok(n == 2 && msg_tag(out[0]) == 0 && msg_tag(out[1]) == 1, "closed queue still drains, FIFO");
    release_batch(q, out, n);
    n = queue_pop_batch(q, out, 2, 1000);
    ok(n == 1 && msg_tag(out[0]) == 2, "... to the last message");
    release_batch(q, out, n);

    uint64_t start_ms = util_now_ms();
    ok(queue_pop_batch(q, out, 2, 0) == QUEUE_CLOSED, "closed and empty: QUEUE_CLOSED");
    ok(queue_pop_batch(q, out, 2, LONG_WAIT_MS) == QUEUE_CLOSED
       && util_now_ms() - start_ms < LONG_WAIT_MS / 2,
       "closed and empty: QUEUE_CLOSED without waiting");
    queue_destroy(q);
}

/* ---------------------------------------------------------------- wakeups */

static void
test_close_wakes_pusher(void)
{
    queue_t *q = make_queue(1, 1000);
    struct pusher p;

    queue_push(q, make_msg(4, 0), 0);
    uint64_t before_ms = util_now_ms();
    pusher_start(&p, q, make_msg(4, 1), LONG_WAIT_MS);
    wait_for_waiters(q, PUSHERS, 1);
    uint64_t since_ms = queue_blocked_since_ms(q);
    ok(since_ms >= before_ms && since_ms <= util_now_ms(),
       "blocked producer: blocked_since is when it began waiting");
    queue_close(q);
    pthread_join(p.thread, NULL);
    ok(p.rc == QUEUE_CLOSED && p.elapsed_ms < LONG_WAIT_MS / 2,
       "close wakes a blocked pusher: QUEUE_CLOSED (after %llu ms)",
       (unsigned long long)p.elapsed_ms);
    ok(queue_blocked_since_ms(q) == 0, "no producer waiting: blocked_since back to 0");
    msg_destroy(p.m);
    queue_destroy(q);
}

static void
test_deferred_wake(void)
{
    queue_t *q = make_queue(10, 1000);
    struct msg *m[2] = { make_msg(4, 1), make_msg(4, 2) };
    struct popper p;
    bool is_wake_due = false;

    popper_start(&p, q, LONG_WAIT_MS);
    wait_for_waiters(q, POPPERS, 1);
    ok(queue_push_batch(q, m, 1, 0, NULL, &is_wake_due) == 1 && is_wake_due,
       "a push into an empty queue with a consumer waiting leaves the wakeup due");
    ok(queue_push_batch(q, m + 1, 1, 0, NULL, &is_wake_due) == 1 && !is_wake_due,
       "a push into a queue that is not empty: no wakeup due");
    queue_wake_consumer(q);
    pthread_join(p.thread, NULL);
    ok(p.rc >= 1 && p.elapsed_ms < LONG_WAIT_MS / 2,
       "the deferred wakeup wakes the consumer (rc %d, %llu ms)", p.rc,
       (unsigned long long)p.elapsed_ms);
    release_batch(q, p.out, p.rc);
    queue_destroy(q);
}

static void
test_close_wakes_popper(void)
{
    queue_t *q = make_queue(1, 1000);
    struct popper p;

    popper_start(&p, q, LONG_WAIT_MS);
    wait_for_waiters(q, POPPERS, 1);
    queue_close(q);
    pthread_join(p.thread, NULL);
    ok(p.rc == QUEUE_CLOSED && p.elapsed_ms < LONG_WAIT_MS / 2,
       "close wakes a blocked popper: QUEUE_CLOSED (after %llu ms)",
       (unsigned long long)p.elapsed_ms);
    queue_destroy(q);
}

static void
test_push_wakes_popper(void)
{
    queue_t *q = make_queue(4, 1000);
    struct popper p;

    popper_start(&p, q, LONG_WAIT_MS);
    wait_for_waiters(q, POPPERS, 1);
    queue_push(q, make_msg(4, 7), 0);
    pthread_join(p.thread, NULL);
    ok(p.rc == 1 && msg_tag(p.out[0]) == 7 && p.elapsed_ms < LONG_WAIT_MS / 2,
       "push wakes a blocked popper");
    if (p.rc == 1) {
        msg_destroy(p.out[0]);
    }
    queue_destroy(q);
}

static void
test_pop_wakes_pusher(void)
{
    queue_t *q = make_queue(1, 1000);
    struct pusher p;
    struct msg *m;

    queue_push(q, make_msg(4, 0), 0);
    pusher_start(&p, q, make_msg(4, 1), LONG_WAIT_MS);
    wait_for_waiters(q, PUSHERS, 1);
    ok((m = pop1(q)) != NULL && msg_tag(m) == 0, "pop the blocker");
    msg_destroy(m);
    pthread_join(p.thread, NULL);
    ok(p.rc == 0 && depth(q) == 1 && p.elapsed_ms < LONG_WAIT_MS / 2,
       "pop wakes a blocked pusher, which pushes");
    queue_destroy(q);
}

/*
 * test_wake_all checks that no blocked producer is left asleep while there
 * is room for it: when a batch pop frees several slots, and when a single
 * pop frees room in bytes for several small messages.
 */
static void
test_wake_all(void)
{
    struct pusher p[3];
    struct msg *out[8];
    queue_t *q;
    bool is_done;

    q = make_queue(3, 1000);
    for (uint32_t i = 0; i < 3; i++) {
        queue_push(q, make_msg(4, i), 0);
    }
    for (int i = 0; i < 3; i++) {
        pusher_start(&p[i], q, make_msg(4, 10), LONG_WAIT_MS);
    }
    wait_for_waiters(q, PUSHERS, 3);
    int n = queue_pop_batch(q, out, 8, 0);
    ok(n == 3, "batch pop frees 3 slots");
    release_batch(q, out, n);
    is_done = true;
    for (int i = 0; i < 3; i++) {
        pthread_join(p[i].thread, NULL);
        is_done = is_done && p[i].rc == 0 && p[i].elapsed_ms < LONG_WAIT_MS / 2;
    }
    ok(is_done && depth(q) == 3, "all 3 blocked pushers got in");
    queue_destroy(q);

    q = make_queue(100, 30);
    queue_push(q, make_msg(30, 0), 0);
    for (int i = 0; i < 3; i++) {
        pusher_start(&p[i], q, make_msg(10, 10), LONG_WAIT_MS);
    }
    wait_for_waiters(q, PUSHERS, 3);
    n = queue_pop_batch(q, out, 1, 0);
    ok(n == 1, "one pop frees 30 bytes");
    release_batch(q, out, n);
    is_done = true;
    for (int i = 0; i < 3; i++) {
        pthread_join(p[i].thread, NULL);
        is_done = is_done && p[i].rc == 0 && p[i].elapsed_ms < LONG_WAIT_MS / 2;
    }
    ok(is_done && depth(q) == 3, "all 3 blocked 10-byte pushers got in");
    queue_destroy(q);
}

/* ---------------------------------------------------------------- stress */

#define N_PRODUCERS 4
#define N_CONSUMERS 3
#define STRESS_CAPACITY 64
#define STRESS_MAX_BYTES 1024   /* 64 messages of 8..24 bytes: either limit binds */

static size_t stress_n;         /* messages per producer */

struct producer {
    pthread_t thread;
    queue_t *q;
    uint32_t id;
    unsigned timeouts;          /* pushes that waited LONG_WAIT_MS: lost wakeups */
    unsigned failures;          /* any other push error */
};

struct consumer {
    pthread_t thread;
    queue_t *q;
    unsigned id;
    uint8_t *seen[N_PRODUCERS]; /* times each (producer, seq) arrived here */
    unsigned timeouts;          /* pops that waited LONG_WAIT_MS: lost wakeups */
    unsigned out_of_order;      /* a producer's seq not above its last one here */
    unsigned corrupt;           /* bad producer id, seq or filler */
    unsigned over_limit;        /* depth seen above capacity or max_bytes */
    size_t pops, received;
};

static size_t
stress_size(uint32_t seq)
{
    return 8 + (seq * 7u) % 17u;
}

static unsigned char
stress_fill(uint32_t id, uint32_t seq, size_t j)
{
    return (unsigned char)(id * 61 + seq + j);
}

static void *
producer_main(void *arg)
{
    struct producer *p = arg;

    for (uint32_t seq = 0; seq < stress_n; seq++) {
        size_t size = stress_size(seq);
        struct msg *m = msg_create(1, &size);
        unsigned char *d;
        int rc;

        if (m == NULL) {
            p->failures++;
            return NULL;
        }
        d = msg_frame_data(m, 0);
        memcpy(d, &p->id, 4);
        memcpy(d + 4, &seq, 4);
        for (size_t j = 8; j < size; j++) {
            d[j] = stress_fill(p->id, seq, j);
        }
        while ((rc = queue_push(p->q, m, LONG_WAIT_MS)) == -ETIMEDOUT) {
            p->timeouts++;
        }
        if (rc != 0) {
            p->failures++;
            msg_destroy(m);
            return NULL;
        }
    }
    return NULL;
}

static void
consumer_take(struct consumer *c, struct msg *m, int64_t *last)
{
    uint32_t id, seq;

    memcpy(&id, msg_frame(m, 0).data, 4);
    memcpy(&seq, msg_frame(m, 0).data + 4, 4);
    if (m->nframes != 1 || id >= N_PRODUCERS || seq >= stress_n || m->size != stress_size(seq)) {
        c->corrupt++;
        msg_destroy(m);
        return;
    }
    for (size_t j = 8; j < m->size; j++) {
        if (msg_frame(m, 0).data[j] != stress_fill(id, seq, j)) {
            c->corrupt++;
            break;
        }
    }
    if ((int64_t)seq <= last[id]) {
        c->out_of_order++;
    }
    last[id] = seq;
    if (c->seen[id][seq] < UINT8_MAX) {
        c->seen[id][seq]++;
    }
    c->received++;
    msg_destroy(m);
}

static void *
consumer_main(void *arg)
{
    static const size_t batch_sizes[] = { 1, 2, 3, 5, 8, 13, 32, 64, 100 };
    struct consumer *c = arg;
    struct msg *out[100];
    int64_t last[N_PRODUCERS];
    size_t round = c->id;

    for (int i = 0; i < N_PRODUCERS; i++) {
        last[i] = -1;
    }
    for (;;) {
        size_t max = batch_sizes[round++ % (sizeof(batch_sizes) / sizeof(batch_sizes[0]))];
        int n = queue_pop_batch(c->q, out, max, LONG_WAIT_MS);

        if (n == QUEUE_CLOSED) {
            return NULL;
        }
        if (n == -ETIMEDOUT) {
            c->timeouts++;
            continue;
        }
        if (n <= 0 || (size_t)n > max) {
            c->corrupt++;
            return NULL;
        }
        c->pops++;

        size_t count;
        uint64_t bytes;
        queue_depth(c->q, &count, &bytes);
        if (count > STRESS_CAPACITY || bytes > STRESS_MAX_BYTES) {
            c->over_limit++;
        }
        uint64_t held = 0;

        for (int i = 0; i < n; i++) {
            held += out[i]->size;
            consumer_take(c, out[i], last);
        }
        queue_release(c->q, held);
    }
}

static void
test_stress(void)
{
    struct producer prod[N_PRODUCERS];
    struct consumer cons[N_CONSUMERS];
    const char *env = getenv("ZPIPE_STRESS_N");
    queue_t *q = make_queue(STRESS_CAPACITY, STRESS_MAX_BYTES);
    unsigned timeouts = 0, failures = 0, out_of_order = 0, corrupt = 0, over_limit = 0;
    size_t missing = 0, duplicate = 0, received = 0, pops = 0;

    stress_n = env != NULL && atol(env) > 0 ? (size_t)atol(env) : 100000;
    diag("stress: %d producers x %zu messages, %d consumers, capacity %d, max_bytes %d",
         N_PRODUCERS, stress_n, N_CONSUMERS, STRESS_CAPACITY, STRESS_MAX_BYTES);
    uint64_t start_ms = util_now_ms();

    for (unsigned i = 0; i < N_CONSUMERS; i++) {
        cons[i] = (struct consumer){ .q = q, .id = i };
        for (int j = 0; j < N_PRODUCERS; j++) {
            cons[i].seen[j] = calloc(stress_n, 1);
            if (cons[i].seen[j] == NULL) {
                bail_out("out of memory");
            }
        }
        if (pthread_create(&cons[i].thread, NULL, consumer_main, &cons[i]) != 0) {
            bail_out("pthread_create failed");
        }
    }
    for (uint32_t i = 0; i < N_PRODUCERS; i++) {
        prod[i] = (struct producer){ .q = q, .id = i };
        if (pthread_create(&prod[i].thread, NULL, producer_main, &prod[i]) != 0) {
            bail_out("pthread_create failed");
        }
    }

    /* The daemon's order: producers end, then close, then consumers drain. */
    for (int i = 0; i < N_PRODUCERS; i++) {
        pthread_join(prod[i].thread, NULL);
        timeouts += prod[i].timeouts;
        failures += prod[i].failures;
    }
    queue_close(q);
    for (int i = 0; i < N_CONSUMERS; i++) {
        pthread_join(cons[i].thread, NULL);
        timeouts += cons[i].timeouts;
        out_of_order += cons[i].out_of_order;
        corrupt += cons[i].corrupt;
        over_limit += cons[i].over_limit;
        received += cons[i].received;
        pops += cons[i].pops;
        diag("consumer %d: %zu messages in %zu pops", i, cons[i].received, cons[i].pops);
    }
    diag("stress took %llu ms, %.1f messages per pop",
         (unsigned long long)(util_now_ms() - start_ms), pops ? (double)received / pops : 0.0);

    for (int p = 0; p < N_PRODUCERS; p++) {
        for (size_t s = 0; s < stress_n; s++) {
            unsigned times = 0;

            for (int c = 0; c < N_CONSUMERS; c++) {
                times += cons[c].seen[p][s];
            }
            missing += times == 0;
            duplicate += times > 1;
        }
        for (int c = 0; c < N_CONSUMERS; c++) {
            free(cons[c].seen[p]);
        }
    }

    ok(failures == 0 && corrupt == 0, "stress: no push failure, no corrupt message");
    ok(received == N_PRODUCERS * stress_n && missing == 0 && duplicate == 0,
       "stress: every message arrived exactly once (%zu received, %zu missing, %zu twice)",
       received, missing, duplicate);
    ok(out_of_order == 0, "stress: per-producer order holds within each consumer (%u violations)",
       out_of_order);
    ok(over_limit == 0, "stress: depth never above capacity or max_bytes");
    ok(timeouts == 0, "stress: no wait ran into its %u ms timeout: no lost wakeup (%u)",
       LONG_WAIT_MS, timeouts);
    ok(depth(q) == 0 && queue_blocked_since_ms(q) == 0, "stress: queue empty at the end");
    queue_destroy(q);
}

int
main(void)
{
    test_create();
    test_fifo();
    test_capacity_count();
    test_capacity_bytes();
    test_capacity_frames();
    test_release_wakes_pusher();
    test_oversize();
    test_push_batch();
    test_close();
    test_close_wakes_pusher();
    test_close_wakes_popper();
    test_deferred_wake();
    test_push_wakes_popper();
    test_pop_wakes_pusher();
    test_wake_all();
    test_stress();
    return done_testing();
}
