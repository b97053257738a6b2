/*
 * consumer.c - the consumer pool.
 *
 * One file over 700 lines: deliver, consume and spill are the three paths
 * of one consumer thread over its in-flight FIFO and its counters.
 *
 * Design.  output.threads threads, each with its own sink instance, opened
 * on that thread (a zmq sink's socket must never cross threads).  A
 * consumer pops up to output.batch messages (waiting at most 100 ms, so it
 * checks in with the watchdog and lets the sink do its idle work), offers
 * them to the sink (submit), and holds every message until the sink reports
 * its outcome (sink.h): stored, then the message counts as delivered, its
 * OK is owed (ack = stored: msg_ack_stored()) and it is freed; or to be
 * retried.  While messages are in flight the consumer goes on popping and
 * offering more as far as the sink accepts them, and polls the sink for
 * outcomes in between: a sink that learns late (a downstream's OK, an
 * fdatasync) is kept busy, not waited on batch by batch.
 *
 * Three FIFOs of message pointers hold what a consumer owns, oldest first:
 * todo (popped or given back, not in flight), fly (in flight, in submission
 * order: the order outcomes come in) and back (reported SINK_RETRY while
 * older messages were still in flight).  A retry stops new offers until
 * every older outcome is in, then waits a capped exponential backoff (in
 * 100 ms slices) and offers back + todo again, oldest first: so with one
 * producer and one consumer thread the order holds across retries, and
 * nothing is dropped.  A sink that is down stops the consumers, the queue
 * fills, the producers stop reading: backpressure reaches the senders.
 * Held messages stay counted in queue.max_bytes until they are freed, so
 * memory stays bounded whatever a sink keeps in flight.
 *
 * Consumers run until queue_pop_batch() reports the queue closed and empty
 * and nothing is held; then the sink is closed (its final fsync).  SIGHUP
 * bumps reopen_gen; a consumer reopens its sink the next time it holds
 * nothing, so no message is split across files.
 *
 * Drain deadline (zpiped(8), "SPILL FILES").  consumer_pool_abort() sets
 * is_aborted.  A consumer sees it between two sink calls (a call is never
 * interrupted; one waiting on a FIFO nobody reads gives up on its own:
 * sink_env.is_aborted), aborts the sink, which reports every message in
 * flight at once (stored, or to be retried), and from then on writes all it
 * holds and all it pops to its own spill file, until the queue is closed
 * and empty, exactly as before, which keeps the drain deadlock-free: a
 * producer (or the replay thread) blocked on a full queue still gets room.
 * With ack = stored a spilled message's OK waits until its spill file is
 * durable (spool_writer_sync() after each batch that owes OKs).  At exit the
 * consumer commits its spill file (fsync, link to its name, fsync of the
 * directory).
 *
 * The spill file is prepared when the consumer starts (spool_writer_open,
 * before the barrier), so the deadline needs no new descriptor or memory:
 * a daemon whose descriptors are all taken by input connections still
 * spills.  Should a writer break (a failed write it could not cut back),
 * it is committed with the records it holds and the record is tried once
 * more in a new one; a failed open is tried again for each batch, never
 * given up.
 *
 * Counters are the thread's own relaxed atomics; in_flight is how many
 * messages the consumer holds, for the accounting invariant.  Records that
 * could not be spilled either (the spool is unwritable) are counted in lost
 * and reported as in_flight, so the accounting at exit shows them as lost
 * and the exit status says so.
 */
#include "config.h"
#include "consumer.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heartbeat.h"
#include "log.h"
#include "spool.h"
#include "util.h"
#include "worker.h"

#define CONSUMER_POLL_MS     SINK_POLL_MAX_MS /* longest wait: watchdog check-in period */
#define CONSUMER_FLY_WAIT_MS 1                /* ms, a wait on the sink while the queue is empty */
#define CONSUMER_BACKOFF_MIN 10               /* ms, first retry delay */
#define CONSUMER_BACKOFF_MAX 5000             /* ms, cap of the doubling delay */

/* A FIFO of message pointers that grows as needed (never shrinks). */
struct fifo {
    struct msg **v;
    size_t cap; /* a power of two, or 0 */
    size_t head;
    size_t len;
};

struct consumer {
    struct consumer_pool *pool;
    unsigned id;
    pthread_t tid;
    bool is_started;
    _Atomic bool has_exited; /* set by the thread as it ends */
    struct heartbeat *hb;
    void *sink;           /* the thread's sink instance */
    uint64_t reopen_seen; /* last reopen_gen acted on */
    struct msg **batch;   /* output.batch pointers: what one pop or one offer takes */
    struct msg **scratch; /* output.batch pointers for outcomes and spills */
    struct fifo todo;     /* held, not in flight */
    struct fifo fly;      /* in flight, in submission order */
    struct fifo back;     /* reported SINK_RETRY, older than todo */
    bool is_retrying;     /* a retry is due: no offers until fly is empty */
    int retry_err;        /* what cost the first retried message, or 0 */
    unsigned fail_streak; /* consecutive failed tries */
    unsigned backoff_ms;  /* the next retry's delay */
    _Alignas(64) _Atomic uint64_t delivered; /* written by the thread only */
    _Atomic uint64_t failed;
    _Atomic uint64_t retried;
    _Atomic uint64_t in_flight;
    _Atomic uint64_t spilled;
    _Atomic uint64_t lost; /* neither delivered nor spilled; reported as in_flight */
    spool_writer_t *spill; /* prepared at start; the thread's own; NULL after a failure */
    bool is_spill_failing; /* the last try to open a spill file failed (logged once) */
};

struct consumer_pool {
    const struct conf *cfg;
    struct sink_env env; /* what each sink instance is opened with */
    queue_t *q;
    const struct sink_ops *ops;
    consumer_exit_fn *on_exit;
    void *exit_arg;
    struct worker_barrier ready;
    _Atomic uint64_t reopen_gen; /* bumped by the main thread on SIGHUP */
    _Atomic unsigned running;
    _Atomic bool is_aborted; /* set once by the main thread at drain_timeout */
    unsigned n;
    struct consumer *consumers;
};

int
consumer_pool_create(consumer_pool_t **out, const struct sink_env *env, queue_t *q,
                     const struct sink_ops *ops, consumer_exit_fn *on_exit, void *arg)
{
    const struct conf *cfg = env->cfg;
    struct consumer_pool *p;

    p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->n = (unsigned)cfg->output_threads;
    p->consumers = calloc(p->n, sizeof(*p->consumers));
    if (!p->consumers) {
        free(p);
        return -ENOMEM;
    }
    p->cfg = cfg;
    p->env = *env;
    p->env.is_aborted = &p->is_aborted;
    p->q = q;
    p->ops = ops;
    p->on_exit = on_exit;
    p->exit_arg = arg;
    for (unsigned i = 0; i < p->n; i++) {
        p->consumers[i].pool = p;
        p->consumers[i].id = i;
    }
    *out = p;
    return 0;
}

void
consumer_pool_destroy(consumer_pool_t *p)
{
    if (!p) {
        return;
    }
    free(p->consumers);
    free(p);
}

/* Makes room for n more pointers in f. */
static int
fifo_reserve(struct fifo *f, size_t n)
{
    size_t cap = f->cap ? f->cap : 64;
    struct msg **v;

    if (f->len + n <= f->cap) {
        return 0;
    }
    while (cap < f->len + n) {
        cap *= 2;
    }
    v = malloc(cap * sizeof(*v));
    if (!v) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < f->len; i++) {
        v[i] = f->v[(f->head + i) & (f->cap - 1)];
    }
    free(f->v);
    f->v = v;
    f->cap = cap;
    f->head = 0;
    return 0;
}

/*
 * Appends m[0..n) to f, which has room (fifo_reserve()).  Two copies at
 * most, the run up to the ring's end and the rest: a copy per pointer was
 * a visible part of the per-message cost.
 */
static void
fifo_push(struct fifo *f, struct msg *const *m, size_t n)
{
    size_t tail = (f->head + f->len) & (f->cap - 1);
    size_t run = f->cap - tail < n ? f->cap - tail : n;

    assert(f->len + n <= f->cap); /* else the ring overwrites its own front */
    if (run > 0) {
        memcpy(f->v + tail, m, run * sizeof(*m));
    }
    if (n > run) {
        memcpy(f->v, m + run, (n - run) * sizeof(*m));
    }
    f->len += n;
}

/* Copies up to max pointers from the front of f into out[]; returns how many. */
static size_t
fifo_peek(const struct fifo *f, struct msg **out, size_t max)
{
    size_t n = f->len < max ? f->len : max;
    size_t run = f->cap - f->head < n ? f->cap - f->head : n;

    if (run > 0) {
        memcpy(out, f->v + f->head, run * sizeof(*out));
    }
    if (n > run) {
        memcpy(out + run, f->v, (n - run) * sizeof(*out));
    }
    return n;
}

/* Drops n pointers from the front of f (n <= f->len). */
static void
fifo_drop(struct fifo *f, size_t n)
{
    f->head = (f->head + n) & (f->cap - 1);
    f->len -= n;
}

/* Drops the last n pointers of f (n <= f->len). */
static void
fifo_unpush(struct fifo *f, size_t n)
{
    f->len -= n;
}

/*
 * Gives back to the front of f the n pointers fifo_drop() dropped last (their
 * slots are untouched as long as nothing was pushed since).
 */
static void
fifo_unpeek(struct fifo *f, size_t n)
{
    f->head = (f->head - n) & (f->cap - 1);
    f->len += n;
}

/* Moves every pointer of from to the end of to (which may grow). */
static int
fifo_move(struct fifo *to, struct fifo *from)
{
    int err = fifo_reserve(to, from->len);

    while (err == 0 && from->len > 0) {
        size_t run = from->cap - from->head < from->len ? from->cap - from->head : from->len;

        fifo_push(to, from->v + from->head, run);
        from->head = (from->head + run) & (from->cap - 1);
        from->len -= run;
    }
    return err;
}

static size_t
held(const struct consumer *c)
{
    return c->todo.len + c->fly.len + c->back.len;
}

static void
count_held(struct consumer *c)
{
    atomic_store_explicit(&c->in_flight, (uint64_t)held(c), memory_order_relaxed);
}

/* The cost (msg_cost()) of batch[0..n): what it holds of queue.max_bytes. */
static uint64_t
batch_bytes(struct msg *const *batch, size_t n)
{
    uint64_t bytes = 0;

    for (size_t i = 0; i < n; i++) {
        bytes += msg_cost(batch[i]);
    }
    return bytes;
}

/* Frees batch[0..n) and gives their bytes back to the queue. */
static void
release(struct consumer *c, struct msg *const *batch, size_t n)
{
    uint64_t bytes = batch_bytes(batch, n);

    msg_destroy_batch(batch, n);
    queue_release(c->pool->q, bytes);
}

/* Doubles the next backoff, up to CONSUMER_BACKOFF_MAX. */
static void
grow_backoff(struct consumer *c)
{
    c->backoff_ms = c->backoff_ms * 2 > CONSUMER_BACKOFF_MAX ? CONSUMER_BACKOFF_MAX
                                                             : c->backoff_ms * 2;
}

/* Waits ms milliseconds in watchdog-sized slices, or until the drain deadline. */
static void
backoff_wait(struct consumer *c, unsigned ms)
{
    while (ms > 0 && !atomic_load(&c->pool->is_aborted)) {
        unsigned step = ms < CONSUMER_POLL_MS ? ms : CONSUMER_POLL_MS;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step * 1000000L };

        nanosleep(&ts, NULL);
        heartbeat_beat(c->hb);
        ms -= step;
    }
}

/* Reopens the sink if SIGHUP asked; false while that waits for the messages in flight. */
static bool
reopen_if_asked(struct consumer *c)
{
    struct consumer_pool *p = c->pool;
    uint64_t gen = atomic_load_explicit(&p->reopen_gen, memory_order_acquire);
    char ebuf[128];
    int err;

    if (gen == c->reopen_seen) {
        return true;
    }
    if (c->fly.len > 0) {
        return false;
    }
    c->reopen_seen = gen;
    err = p->ops->reopen(c->sink);
    if (err < 0) {
        log_error("sink %s: consumer %u: reopen: %s (still writing to the old target)",
                  p->ops->name, c->id, util_strerror(-err, ebuf, sizeof(ebuf)));
    } else {
        log_debug("sink %s: consumer %u: reopened", p->ops->name, c->id);
    }
    return true;
}

/* A try failed with err: counted, and the first of a streak logged. */
static void
note_failure(struct consumer *c, int err)
{
    struct consumer_pool *p = c->pool;
    char ebuf[128];

    atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
    if (c->fail_streak++ > 0) {
        return;
    }
    if (held(c) == 0) {
        /* What the failed call took was stored since (sink.h: an error
         * may come with outcomes, e.g. of older messages). */
        log_error("sink %s: consumer %u: write: %s (nothing left to write again)",
                  p->ops->name, c->id, util_strerror(-err, ebuf, sizeof(ebuf)));
        return;
    }
    log_error("sink %s: consumer %u: write: %s (retrying %zu messages)", p->ops->name, c->id,
              util_strerror(-err, ebuf, sizeof(ebuf)), held(c));
}

/*
 * on_done is the sink's done callback (sink.h): the n oldest messages in
 * flight are stored, or to be written again.
 */
static void
on_done(void *arg, size_t n, enum sink_outcome outcome, int err)
{
    struct consumer *c = arg;
    size_t max = (size_t)c->pool->cfg->output_batch;

    if (n > c->fly.len) {
        log_error("sink %s: consumer %u: an outcome for %zu messages, %zu in flight",
                  c->pool->ops->name, c->id, n, c->fly.len);
        n = c->fly.len;
    }
    if (outcome == SINK_RETRY) {
        /* back has room for all of fly: offer() reserved it. */
        while (n > 0) {
            size_t k = fifo_peek(&c->fly, c->scratch, n < max ? n : max);

            fifo_drop(&c->fly, k);
            fifo_push(&c->back, c->scratch, k);
            n -= k;
        }
        if (!c->is_retrying) {
            c->is_retrying = true;
            c->retry_err = err;
        }
    }
    if (n > 0 && !c->is_retrying) {
        /* Stored since the last retry or failed poll: the streak is over. */
        if (c->fail_streak > 0) {
            log_info("sink %s: consumer %u: recovered after %u failed writes",
                     c->pool->ops->name, c->id, c->fail_streak);
            c->fail_streak = 0;
        }
        c->backoff_ms = CONSUMER_BACKOFF_MIN;
    }
    while (n > 0) {
        /* In place, a run up to the ring's end at a time: nothing is pushed
         * to fly before this returns, so the dropped slots stay as they are. */
        struct msg *const *v = c->fly.v + c->fly.head;
        size_t k = c->fly.cap - c->fly.head < n ? c->fly.cap - c->fly.head : n;
        uint64_t bytes = 0;

        fifo_drop(&c->fly, k);
        /* One pass for the OKs and the bytes (release() without its own). */
        for (size_t i = 0; i < k; i++) {
            msg_ack_stored(v[i]);
            bytes += msg_cost(v[i]);
        }
        atomic_fetch_add_explicit(&c->delivered, (uint64_t)k, memory_order_relaxed);
        msg_destroy_batch(v, k);
        queue_release(c->pool->q, bytes);
        n -= k;
    }
    count_held(c);
}

/*
 * Offers what todo holds to the sink, in batches, as long as it accepts
 * them.  A failed offer starts a retry.
 */
static void
offer(struct consumer *c)
{
    struct consumer_pool *p = c->pool;
    size_t max = (size_t)p->cfg->output_batch;

    while (c->todo.len > 0 && !c->is_retrying) {
        size_t n = fifo_peek(&c->todo, c->batch, max), accepted = 0;
        int err;

        /* Room first, so that outcomes never need memory: fly for what is
         * offered, back for all that can be in flight. */
        err = fifo_reserve(&c->fly, n);
        if (err == 0) {
            err = fifo_reserve(&c->back, c->fly.len + n);
        }
        if (err == 0) {
            size_t was_in_flight = c->fly.len;

            /* In flight before the call: the sink may report them in it. */
            fifo_push(&c->fly, c->batch, n);
            fifo_drop(&c->todo, n);
            err = p->ops->submit(c->sink, c->batch, n, &accepted);
            if (accepted == 0 && err == 0 && was_in_flight == 0) {
                /* No window to wait on (sink.h): back off.  (Outcomes of
                 * older messages reported in the call do not count: their
                 * window was full when it began.) */
                err = -EAGAIN;
            }
            if (accepted < n) {
                /* Not taken: they are fly's last ones; back to todo's front. */
                fifo_unpush(&c->fly, n - accepted);
                fifo_unpeek(&c->todo, n - accepted);
            }
        }
        if (err < 0) {
            c->is_retrying = true;
            c->retry_err = err;
        }
        if (accepted == 0) {
            break; /* the window is full, or the sink failed: poll, then offer again */
        }
    }
    count_held(c);
}

/* Opens the consumer's spill file; logs the first of a run of failures. */
static int
spill_open(struct consumer *c)
{
    const char *dir = c->pool->cfg->daemon_spool_dir;
    char tag[16], ebuf[128];
    int err;

    snprintf(tag, sizeof(tag), "c%u", c->id);
    err = spool_writer_open(&c->spill, dir, tag);
    if (err < 0 && !c->is_spill_failing) {
        log_error("spool: consumer %u: prepare a spill file in %s: %s", c->id, dir,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    c->is_spill_failing = err < 0;
    return err;
}

/* Takes back from spilled what the writer no longer counts: they are lost. */
static void
spill_uncount(struct consumer *c, uint64_t count)
{
    atomic_fetch_sub_explicit(&c->spilled, count, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->lost, count, memory_order_relaxed);
}

/*
 * Commits the spill file; the records it cannot make durable are lost.  A
 * file synced before (for the OKs of ack = stored) keeps what those syncs
 * made durable: a failed sync now cuts off only the records added since,
 * and the writer's count says what stays.
 */
static void
spill_commit(struct consumer *c)
{
    uint64_t count;

    if (!c->spill) {
        return;
    }
    count = spool_writer_count(c->spill);
    if (spool_writer_name(c->spill) != NULL) {
        (void)spool_writer_sync(c->spill);
        spill_uncount(c, count - spool_writer_count(c->spill));
        count = 0; /* the commit has nothing left to sync */
    }
    if (spool_writer_commit(c->spill) < 0) {
        spill_uncount(c, count);
    }
    c->spill = NULL;
}

/*
 * Writes batch[0..n) to the consumer's spill file, then frees them; what
 * fails counts as lost.  The OKs owed for them are told once the file is
 * durable with them (at once, not at the commit: the producers wait).
 */
static void
spill(struct consumer *c, struct msg *const *batch, size_t n)
{
    const char *dir = c->pool->cfg->daemon_spool_dir;
    bool owes_ok = false;
    char ebuf[128];
    size_t i = 0, first = 0; /* batch[first..i) went to the current file */

    for (bool is_retry = false; i < n && (c->spill || spill_open(c) == 0);) {
        int err = spool_writer_add(c->spill, batch[i]);

        if (err == 0) {
            atomic_fetch_add_explicit(&c->spilled, 1, memory_order_relaxed);
            owes_ok |= batch[i]->ack != NULL;
            i++;
            is_retry = false;
            continue;
        }
        log_error("spool: consumer %u: write to a spill file in %s: %s", c->id, dir,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
        if (is_retry || !spool_writer_is_broken(c->spill)) {
            break;
        }
        /* Keep what the broken file holds, and try the record once more in
         * a new file: commit frees the descriptors the new one needs. */
        spill_commit(c);
        is_retry = true;
        first = i; /* those are in a file committed or lost: no OK (a client retries) */
        owes_ok = false;
    }
    if (i < n) {
        atomic_fetch_add_explicit(&c->lost, n - i, memory_order_relaxed);
    }
    if (owes_ok && c->spill) {
        uint64_t before = spool_writer_count(c->spill);

        if (spool_writer_sync(c->spill) == 0) {
            for (size_t k = first; k < i; k++) {
                msg_ack_stored(batch[k]);
            }
        } else {
            /* Cut off again (or torn): not durable, so no OK (logged). */
            spill_uncount(c, before - spool_writer_count(c->spill));
        }
    }
    release(c, batch, n);
}

/* Spills every message f holds, oldest first. */
static void
spill_fifo(struct consumer *c, struct fifo *f)
{
    while (f->len > 0) {
        size_t n = fifo_peek(f, c->scratch, (size_t)c->pool->cfg->output_batch);

        fifo_drop(f, n);
        spill(c, c->scratch, n);
    }
    count_held(c);
}

/*
 * The drain deadline: the sink reports what it has in flight, and all the
 * consumer holds and everything it pops until the queue is closed and
 * empty goes to its spill file.
 */
static void
spill_rest(struct consumer *c, bool is_closed)
{
    struct consumer_pool *p = c->pool;

    if (c->fly.len > 0) {
        p->ops->abort(c->sink);
    }
    if (held(c) > 0) {
        log_warning("sink %s: consumer %u: drain deadline: spilling the %zu messages the sink "
                    "did not store",
                    p->ops->name, c->id, held(c));
    }
    spill_fifo(c, &c->back);
    spill_fifo(c, &c->todo);
    while (!is_closed) {
        int n = queue_pop_batch(p->q, c->batch, (size_t)p->cfg->output_batch, CONSUMER_POLL_MS);

        heartbeat_beat(c->hb);
        if (n == QUEUE_CLOSED) {
            is_closed = true;
        } else if (n > 0) {
            atomic_store_explicit(&c->in_flight, (uint64_t)n, memory_order_relaxed);
            spill(c, c->batch, (size_t)n);
            count_held(c);
        }
    }
}

/*
 * A retry, once every older outcome is in: waits the backoff, then offers
 * what was given back before what todo holds, oldest first.  The failure is
 * counted and the backoff waited even when nothing is left to write again
 * (a submit that took everything failed, and all it took was stored
 * since): the sink failed, and offering more at once could fail the same
 * way; no retry is counted then.
 */
static void
retry(struct consumer *c)
{
    struct fifo tmp;

    if (c->retry_err < 0) {
        note_failure(c, c->retry_err);
    }
    backoff_wait(c, c->backoff_ms);
    grow_backoff(c);
    if (held(c) > 0) {
        atomic_fetch_add_explicit(&c->retried, 1, memory_order_relaxed);
    }
    if (fifo_move(&c->back, &c->todo) < 0) {
        return; /* out of memory: is_retrying stays, tried again after the next backoff */
    }
    tmp = c->todo;
    c->todo = c->back;
    c->back = tmp;
    c->is_retrying = false;
    c->retry_err = 0;
}

/*
 * Polls the sink for outcomes, waiting at most timeout_ms.  A poll that
 * failed without reporting anything may not have waited, and may fail the
 * same way at once (a dead-letter file that cannot be written holds the
 * oldest message, and everything behind it): the consumer backs off before
 * it polls again, rather than spin.  retry() does not cover it: it waits
 * for every message in flight to have its outcome.
 */
static void
poll_sink(struct consumer *c, int timeout_ms)
{
    struct consumer_pool *p = c->pool;
    size_t in_flight = c->fly.len;
    char ebuf[128];
    int err = p->ops->poll(c->sink, timeout_ms);

    if (err < 0) {
        log_debug("sink %s: consumer %u: poll: %s", p->ops->name, c->id,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
        if (c->fly.len == in_flight) {
            backoff_wait(c, c->backoff_ms);
            grow_backoff(c);
        }
    }
}

static void
consume(struct consumer *c)
{
    struct consumer_pool *p = c->pool;
    size_t max = (size_t)p->cfg->output_batch;
    bool is_closed = false;

    for (;;) {
        bool is_idle = false, is_held_back;

        heartbeat_beat(c->hb);
        if (atomic_load(&p->is_aborted)) {
            spill_rest(c, is_closed);
            break;
        }
        /* A reopen waits until nothing is in flight: no more offers
         * until then, or a sink always busy would never reopen. */
        is_held_back = !reopen_if_asked(c);
        if (c->is_retrying && c->fly.len == 0) {
            retry(c);
            continue;
        }
        if (c->todo.len == 0 && !c->is_retrying && !is_closed && !is_held_back) {
            /* todo has room for a batch (consumer_main): popped straight
             * into it, from its start, rather than copied there. */
            int n;

            c->todo.head = 0;
            n = queue_pop_batch(p->q, c->todo.v, max, c->fly.len > 0 ? 0 : CONSUMER_POLL_MS);
            if (n > 0) {
                c->todo.len = (size_t)n;
                count_held(c);
            } else if (n == QUEUE_CLOSED) {
                is_closed = true;
            } else {
                is_idle = true;
            }
        }
        if (is_closed && held(c) == 0) {
            break;
        }
        if (!is_held_back) {
            offer(c);
        }
        if (c->fly.len > 0) {
            /* Wait on the sink as long as nothing else can move.  With the
             * queue merely empty, only briefly: a batch that comes while
             * the sink waits (an fdatasync) joins its next round instead
             * of waiting for this one to end. */
            bool is_waiting = is_closed || is_held_back || c->todo.len > 0 || c->is_retrying;

            poll_sink(c, is_waiting ? CONSUMER_POLL_MS : is_idle ? CONSUMER_FLY_WAIT_MS : 0);
        } else if (is_idle) {
            poll_sink(c, 0); /* the sink's idle work */
        }
    }
    spill_commit(c);
}

static void *
consumer_main(void *arg)
{
    struct consumer *c = arg;
    struct consumer_pool *p = c->pool;
    size_t max = (size_t)p->cfg->output_batch;
    int err = -ENOMEM;

    /* Everything that can fail happens before the barrier, so a consumer
     * that started runs until the queue is closed and empty. */
    c->reopen_seen = atomic_load_explicit(&p->reopen_gen, memory_order_acquire);
    c->backoff_ms = CONSUMER_BACKOFF_MIN;
    heartbeat_set_self(c->hb); /* a sink waiting on backpressure checks in for us */
    c->batch = malloc(max * sizeof(*c->batch));
    c->scratch = malloc(max * sizeof(*c->scratch));
    /* todo and back trade places in retry(): each holds a batch, so a pop
     * always fits todo once it is empty (caps never shrink). */
    if (c->batch && c->scratch && fifo_reserve(&c->todo, max) == 0 &&
        fifo_reserve(&c->back, max) == 0) {
        err = spill_open(c);
    }
    if (err == 0) {
        err = p->ops->open(&p->env, on_done, c, &c->sink);
    }
    worker_barrier_arrive(&p->ready, err);
    if (err == 0) {
        consume(c);
        p->ops->close(c->sink);
        c->sink = NULL;
    }
    spool_writer_discard(c->spill); /* the sink did not open: consume() commits it */
    c->spill = NULL;
    free(c->todo.v);
    free(c->fly.v);
    free(c->back.v);
    free(c->scratch);
    free(c->batch);
    atomic_store(&c->has_exited, true);
    atomic_fetch_sub(&p->running, 1);
    p->on_exit(p->exit_arg);
    return NULL;
}

int
consumer_pool_start(consumer_pool_t *p)
{
    int err = worker_barrier_init(&p->ready, p->n);

    if (err < 0) {
        return err;
    }
    for (unsigned i = 0; i < p->n; i++) {
        struct consumer *c = &p->consumers[i];
        char name[32];

        snprintf(name, sizeof(name), "consumer %u", i);
        c->hb = heartbeat_register(name);
        /* Thread names hold 15 bytes; pools are far smaller than 10^5. */
        snprintf(name, 16, "zpipe-out-%hu", (unsigned short)i);
        atomic_fetch_add(&p->running, 1);
        err = worker_spawn(&c->tid, name, consumer_main, c);
        if (err < 0) {
            char ebuf[128];

            atomic_fetch_sub(&p->running, 1);
            log_error("sink: start consumer %u: %s", i, util_strerror(-err, ebuf, sizeof(ebuf)));
            worker_barrier_cancel(&p->ready, p->n - i, err);
            break;
        }
        c->is_started = true;
    }
    err = worker_barrier_wait(&p->ready);
    worker_barrier_fini(&p->ready);
    return err;
}

void
consumer_pool_abort(consumer_pool_t *p)
{
    atomic_store(&p->is_aborted, true);
}

void
consumer_pool_reopen(consumer_pool_t *p)
{
    atomic_fetch_add_explicit(&p->reopen_gen, 1, memory_order_release);
}

unsigned
consumer_pool_running(consumer_pool_t *p)
{
    return atomic_load(&p->running);
}

/* Joins every consumer thread that has exited or, if is_all, every one. */
static void
join_threads(consumer_pool_t *p, bool is_all)
{
    for (unsigned i = 0; i < p->n; i++) {
        struct consumer *c = &p->consumers[i];

        if (!is_all && !atomic_load(&c->has_exited)) {
            continue;
        }
        if (c->is_started) {
            pthread_join(c->tid, NULL);
        }
        c->is_started = false;
        heartbeat_unregister(c->hb);
        c->hb = NULL;
    }
}

void
consumer_pool_reap(consumer_pool_t *p)
{
    join_threads(p, false);
}

void
consumer_pool_join(consumer_pool_t *p)
{
    join_threads(p, true);
}

void
consumer_pool_counters(consumer_pool_t *p, struct consumer_counters *out)
{
    *out = (struct consumer_counters){ 0 };
    for (unsigned i = 0; i < p->n; i++) {
        struct consumer *c = &p->consumers[i];

        out->delivered += atomic_load_explicit(&c->delivered, memory_order_relaxed);
        out->failed += atomic_load_explicit(&c->failed, memory_order_relaxed);
        out->retried += atomic_load_explicit(&c->retried, memory_order_relaxed);
        out->spilled += atomic_load_explicit(&c->spilled, memory_order_relaxed);
        out->in_flight += atomic_load_explicit(&c->in_flight, memory_order_relaxed) +
                          atomic_load_explicit(&c->lost, memory_order_relaxed);
    }
}
