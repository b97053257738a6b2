/*
 * consumer.c - the consumer pool.
 *
 * Design.  output.threads threads, each with its own sink instance, opened
 * on that thread (a zmq sink's socket must never cross threads).  A
 * consumer pops up to output.batch messages (waiting at most 100 ms, so it
 * checks in with the watchdog and lets the sink fsync on an idle interval),
 * writes them with one sink call and frees them once the sink took them.  A
 * failed write is retried, whole, with capped exponential backoff, in 100 ms
 * slices; nothing is dropped, so a sink that is down stops the consumers,
 * the queue fills, and the producers stop reading: backpressure reaches the
 * senders.
 *
 * Consumers run until queue_pop_batch() reports the queue closed and empty,
 * then force a final flush (fsync) and close the sink.  SIGHUP bumps
 * reopen_gen; each consumer notices before its next batch and reopens its
 * sink between two batches, so no batch is split across files.
 *
 * Drain deadline (zpiped(8), "SPILL FILES").  consumer_pool_abort() sets
 * is_aborting.  A consumer sees it after its current sink call returns (a
 * sink call is never interrupted), and in its retry loop between two tries.
 * From then on it writes nothing to the sink: the part of the batch it
 * holds that the sink did not take (the sink reports what it took from the
 * front, and undoes or keeps count of the rest; sink.h), and everything it
 * pops afterwards go to its own spill file.  It keeps popping until the queue is closed and
 * empty, exactly as before, which is what keeps the drain deadlock-free: a
 * producer (or the replay thread) blocked on a full queue still gets room,
 * and the queue is closed only once they have been joined.  At exit the
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
 * Counters are the thread's own relaxed atomics; in_flight holds the size
 * of the batch between pop and delivery, for the accounting invariant.
 * Records that could not be spilled either (the spool is unwritable) are
 * counted in lost and reported as in_flight, so the accounting at exit
 * shows them as lost and the exit status says so.
 */
#include "config.h"
#include "consumer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "heartbeat.h"
#include "log.h"
#include "spool.h"
#include "util.h"
#include "worker.h"

#define CONSUMER_POLL_MS     100  /* longest wait: watchdog check-in period */
#define CONSUMER_BACKOFF_MIN 10   /* ms, first retry delay */
#define CONSUMER_BACKOFF_MAX 5000 /* ms, cap of the doubling delay */

struct consumer {
    struct consumer_pool *pool;
    unsigned id;
    pthread_t tid;
    bool is_started;
    struct heartbeat *hb;
    void *sink;                              /* the thread's sink instance */
    uint64_t reopen_seen;                    /* last reopen_gen acted on */
    unsigned fail_streak;                    /* consecutive failed writes */
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
    _Atomic bool is_aborting; /* set once by the main thread at drain_timeout */
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
    p->env.is_cancelled = &p->is_aborting;
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

/* Waits ms milliseconds in watchdog-sized slices. */
static void
backoff_wait(struct consumer *c, unsigned ms)
{
    while (ms > 0 && !atomic_load(&c->pool->is_aborting)) {
        unsigned step = ms < CONSUMER_POLL_MS ? ms : CONSUMER_POLL_MS;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step * 1000000L };

        nanosleep(&ts, NULL);
        heartbeat_beat(c->hb);
        ms -= step;
    }
}

static void
reopen_if_asked(struct consumer *c)
{
    struct consumer_pool *p = c->pool;
    uint64_t gen = atomic_load_explicit(&p->reopen_gen, memory_order_acquire);
    char ebuf[128];
    int err;

    if (gen == c->reopen_seen) {
        return;
    }
    c->reopen_seen = gen;
    err = p->ops->reopen(c->sink);
    if (err < 0) {
        log_error("sink %s: consumer %u: reopen: %s (still writing to the old target)",
                  p->ops->name, c->id, util_strerror(-err, ebuf, sizeof(ebuf)));
    } else {
        log_debug("sink %s: consumer %u: reopened", p->ops->name, c->id);
    }
}

/*
 * Writes batch[0..n) until the sink takes all of it, or the drain deadline
 * passes.  Returns how many messages the sink took, from the front: n, or
 * fewer once the drain is aborted (the caller spills the rest).  A failed
 * write that still took the first messages (the zmq sink) made progress:
 * only the rest is written again, at once, so no message is delivered
 * twice; so is a write still waiting on the target (-EINPROGRESS).  The log says when a streak of failures begins and when it ends,
 * not each failure.
 */
static size_t
deliver(struct consumer *c, struct msg *const *batch, size_t n)
{
    struct consumer_pool *p = c->pool;
    unsigned backoff_ms = CONSUMER_BACKOFF_MIN;
    size_t done = 0, taken = 0;
    char ebuf[128];
    int err;

    if (atomic_load(&p->is_aborting)) {
        return 0;
    }
    while ((err = p->ops->write(c->sink, batch + done, n - done, &taken)) < 0) {
        if (taken > 0 || err == -EINPROGRESS) {
            done += taken < n - done ? taken : n - done;
            taken = 0;
            if (done == n) {
                break;
            }
            if (atomic_load(&p->is_aborting)) {
                return done; /* the drain deadline: the rest is spilled */
            }
            backoff_ms = CONSUMER_BACKOFF_MIN;
            heartbeat_beat(c->hb);
            continue;
        }
        if (err == -ECANCELED) {
            /* A write waiting on a target that took nothing more (a FIFO
             * nobody reads) gave up at the drain deadline. */
            log_warning("sink %s: consumer %u: the sink took nothing more by the drain "
                        "deadline: spilling",
                        p->ops->name, c->id);
            return done;
        }
        atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
        if (c->fail_streak++ == 0) {
            log_error("sink %s: consumer %u: write: %s (retrying %zu messages)", p->ops->name,
                      c->id, util_strerror(-err, ebuf, sizeof(ebuf)), n);
        }
        backoff_wait(c, backoff_ms);
        if (atomic_load(&p->is_aborting)) {
            log_warning("sink %s: consumer %u: drain timeout during %u failed writes: spilling",
                        p->ops->name, c->id, c->fail_streak);
            return done;
        }
        backoff_ms = backoff_ms * 2 > CONSUMER_BACKOFF_MAX ? CONSUMER_BACKOFF_MAX : backoff_ms * 2;
        atomic_fetch_add_explicit(&c->retried, 1, memory_order_relaxed);
        reopen_if_asked(c);
    }
    if (c->fail_streak > 0) {
        log_info("sink %s: consumer %u: recovered after %u failed writes", p->ops->name, c->id,
                 c->fail_streak);
        c->fail_streak = 0;
    }
    return n;
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

/* Commits the spill file; if that fails, its records are lost. */
static void
spill_commit(struct consumer *c)
{
    uint64_t count;

    if (!c->spill) {
        return;
    }
    count = spool_writer_count(c->spill);
    if (spool_writer_commit(c->spill) < 0) {
        atomic_fetch_sub_explicit(&c->spilled, count, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->lost, count, memory_order_relaxed);
    }
    c->spill = NULL;
}

/*
 * ack = stored: batch[0..n), just added to the current spill file, are
 * answered once it is durable.  A failed sync cut them off: lost, no OK.
 */
static void
spill_ack(struct consumer *c, struct msg *const *batch, size_t n)
{
    uint64_t before = c->spill ? spool_writer_count(c->spill) : 0;
    size_t k = 0;

    while (k < n && !batch[k]->ack) {
        k++;
    }
    if (k == n || !c->spill) {
        return;
    }
    if (spool_writer_sync(c->spill) < 0) {
        before -= spool_writer_count(c->spill);
        atomic_fetch_sub_explicit(&c->spilled, before, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->lost, before, memory_order_relaxed);
        return;
    }
    for (k = 0; k < n; k++) {
        msg_ack_stored(batch[k]);
    }
}

/* Writes batch[0..n) to the consumer's spill file; what fails counts as lost. */
static void
spill(struct consumer *c, struct msg *const *batch, size_t n)
{
    const char *dir = c->pool->cfg->daemon_spool_dir;
    char ebuf[128];
    size_t i = 0, first = 0; /* batch[first..i) went to the current file */

    for (bool is_retry = false; i < n && (c->spill || spill_open(c) == 0);) {
        int err = spool_writer_add(c->spill, batch[i]);

        if (err == 0) {
            atomic_fetch_add_explicit(&c->spilled, 1, memory_order_relaxed);
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
        first = i;
        is_retry = true;
    }
    if (i < n) {
        atomic_fetch_add_explicit(&c->lost, n - i, memory_order_relaxed);
    }
    spill_ack(c, batch + first, i - first);
}

static void
flush(struct consumer *c, int force)
{
    char ebuf[128];
    int err = c->pool->ops->flush(c->sink, force);

    if (err < 0) {
        log_error("sink %s: consumer %u: flush: %s", c->pool->ops->name, c->id,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
    }
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

static void
consume(struct consumer *c, struct msg **batch)
{
    struct consumer_pool *p = c->pool;
    size_t max = (size_t)p->cfg->output_batch;

    for (;;) {
        uint64_t bytes;
        size_t done;
        int n;

        heartbeat_beat(c->hb);
        reopen_if_asked(c);
        n = queue_pop_batch(p->q, batch, max, CONSUMER_POLL_MS);
        if (n == -ETIMEDOUT) {
            flush(c, 0);
            continue;
        }
        if (n == QUEUE_CLOSED) {
            break;
        }
        atomic_store_explicit(&c->in_flight, (uint64_t)n, memory_order_relaxed);
        done = deliver(c, batch, (size_t)n);
        for (size_t i = 0; i < done; i++) {
            msg_ack_stored(batch[i]); /* TODO(#11): only once stored, not written */
        }
        atomic_fetch_add_explicit(&c->delivered, (uint64_t)done, memory_order_relaxed);
        if (done < (size_t)n) {
            spill(c, batch + done, (size_t)n - done);
        }
        atomic_store_explicit(&c->in_flight, 0, memory_order_relaxed);
        bytes = batch_bytes(batch, (size_t)n);
        msg_destroy_batch(batch, (size_t)n);
        queue_release(p->q, bytes);
    }
    spill_commit(c);
    flush(c, 1);
}

static void *
consumer_main(void *arg)
{
    struct consumer *c = arg;
    struct consumer_pool *p = c->pool;
    struct msg **batch;
    int err;

    /* Everything that can fail happens before the barrier, so a consumer
     * that started runs until the queue is closed and empty. */
    c->reopen_seen = atomic_load_explicit(&p->reopen_gen, memory_order_acquire);
    heartbeat_set_self(c->hb); /* a sink waiting on backpressure checks in for us */
    batch = malloc((size_t)p->cfg->output_batch * sizeof(*batch));
    err = batch ? spill_open(c) : -ENOMEM;
    if (err == 0) {
        err = p->ops->open(&p->env, &c->sink);
    }
    worker_barrier_arrive(&p->ready, err);
    if (err == 0) {
        consume(c, batch);
        p->ops->close(c->sink);
        c->sink = NULL;
    }
    spool_writer_discard(c->spill); /* the sink did not open: consume() commits it */
    c->spill = NULL;
    free(batch);
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
    atomic_store(&p->is_aborting, true);
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

void
consumer_pool_join(consumer_pool_t *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        struct consumer *c = &p->consumers[i];

        if (c->is_started) {
            pthread_join(c->tid, NULL);
        }
        c->is_started = false;
        heartbeat_unregister(c->hb);
        c->hb = NULL;
    }
}

void
consumer_pool_counters(consumer_pool_t *p, uint64_t *delivered, uint64_t *failed, uint64_t *retried,
                       uint64_t *spilled, uint64_t *in_flight)
{
    for (unsigned i = 0; i < p->n; i++) {
        struct consumer *c = &p->consumers[i];

        *delivered += atomic_load_explicit(&c->delivered, memory_order_relaxed);
        *failed += atomic_load_explicit(&c->failed, memory_order_relaxed);
        *retried += atomic_load_explicit(&c->retried, memory_order_relaxed);
        *spilled += atomic_load_explicit(&c->spilled, memory_order_relaxed);
        *in_flight += atomic_load_explicit(&c->in_flight, memory_order_relaxed) +
                      atomic_load_explicit(&c->lost, memory_order_relaxed);
    }
}
