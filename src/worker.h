/*
 * worker.h - what producer and consumer threads share: starting a thread
 * with every signal blocked, and the start barrier the main thread waits on
 * before READY=1.
 */
#ifndef ZPIPE_WORKER_H
#define ZPIPE_WORKER_H

#include <pthread.h>

/*
 * worker_spawn starts fn(arg) on a new joinable thread whose signal mask
 * blocks everything, so signals reach only the main thread.  name (at most
 * 15 bytes) names the thread for ps and gdb.  Returns 0 or a negative errno.
 */
int worker_spawn(pthread_t *tid, const char *name, void *(*fn)(void *), void *arg);

/* A count-down of threads reporting how their start went. */
struct worker_barrier {
    pthread_mutex_t lock; /* protects pending and err */
    pthread_cond_t done;  /* signalled when pending reaches 0 */
    unsigned pending;     /* threads that have not reported yet */
    int err;              /* first negative errno reported, or 0 */
};

/* worker_barrier_init expects n reports. Returns 0 or a negative errno. */
int worker_barrier_init(struct worker_barrier *b, unsigned n);
void worker_barrier_fini(struct worker_barrier *b);

/* worker_barrier_arrive reports err (0 = started) from a worker thread. */
void worker_barrier_arrive(struct worker_barrier *b, int err);

/*
 * worker_barrier_cancel accounts for n threads that will never report (they
 * failed to spawn), with err as their result.
 */
void worker_barrier_cancel(struct worker_barrier *b, unsigned n, int err);

/* worker_barrier_wait blocks until every report is in; returns the first error or 0. */
int worker_barrier_wait(struct worker_barrier *b);

#endif
