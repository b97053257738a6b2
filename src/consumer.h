/*
 * consumer.h - the consumer pool: threads that pop batches from the queue
 * and hand them to the sink.
 *
 * Each consumer opens its own sink instance on its own thread, pops up to
 * output.batch messages, writes them, retries with capped exponential
 * backoff on error, and frees them once the sink took them.  Consumers run
 * until the queue is closed and empty.
 */
#ifndef ZPIPE_CONSUMER_H
#define ZPIPE_CONSUMER_H

#include <stdint.h>

#include "conf.h"
#include "queue.h"
#include "sink.h"

typedef struct consumer_pool consumer_pool_t;

/* Called from a worker thread when a consumer exits (see producer_exit_fn). */
typedef void consumer_exit_fn(void *arg);

/*
 * consumer_pool_create prepares output.threads consumers for sink ops, whose
 * instances are opened with env (env->cfg is the configuration).  env, q and
 * ops are borrowed and must outlive the pool.  Returns 0 and *out, or a
 * negative errno.  Main thread only.
 */
int consumer_pool_create(consumer_pool_t **out, const struct sink_env *env, queue_t *q,
                         const struct sink_ops *ops, consumer_exit_fn *on_exit, void *arg);

/*
 * consumer_pool_start starts the threads and waits until each has opened its
 * sink: the output half of the readiness barrier.  Returns 0 or the first
 * negative errno (logged); on failure the started threads are stopping, and
 * consumer_pool_join() must still be called (after queue_close()).
 */
int consumer_pool_start(consumer_pool_t *p);

/*
 * consumer_pool_abort is the drain deadline: each consumer stops writing to
 * the sink after its current sink call (and stops retrying), and from then
 * on writes what it holds and what it pops to a spill file in spool_dir
 * until the queue is closed and empty.  Main thread; does not block.
 */
void consumer_pool_abort(consumer_pool_t *p);

/* consumer_pool_reopen asks every consumer to reopen its sink before its next batch (SIGHUP). */
void consumer_pool_reopen(consumer_pool_t *p);

/* consumer_pool_running returns how many consumer threads have not exited. */
unsigned consumer_pool_running(consumer_pool_t *p);

/*
 * consumer_pool_reap joins the threads that have exited, so that their
 * watchdog slots are freed while the others still deliver.  Does not block
 * (beyond a thread's last instructions).  Main thread.
 */
void consumer_pool_reap(consumer_pool_t *p);

/* consumer_pool_join joins every started thread; they exit once the queue is closed and empty. */
void consumer_pool_join(consumer_pool_t *p);

/* The consumers' counters, summed over the pool (messages). */
struct consumer_counters {
    uint64_t delivered; /* the sink stored them */
    uint64_t failed;    /* failed sink calls */
    uint64_t retried;   /* retried after a failure */
    uint64_t spilled;   /* written to a spill file */
    uint64_t in_flight; /* held by a consumer, and lost: neither delivered nor spilled */
};

/* consumer_pool_counters fills *out with the consumers' counters.  Any thread. */
void consumer_pool_counters(consumer_pool_t *p, struct consumer_counters *out);

/* consumer_pool_destroy frees a joined pool. Accepts NULL. */
void consumer_pool_destroy(consumer_pool_t *p);

#endif
