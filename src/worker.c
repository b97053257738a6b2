/*
 * worker.c - thread start-up shared by the pools; see worker.h.
 */
#include "config.h"
#include "worker.h"

#include <errno.h>
#include <signal.h>

int
worker_spawn(pthread_t *tid, const char *name, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int err;

    /* The new thread inherits the mask in force at pthread_create. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(tid, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        return -err;
    }
    (void)pthread_setname_np(*tid, name);
    return 0;
}

int
worker_barrier_init(struct worker_barrier *b, unsigned n)
{
    int err = pthread_mutex_init(&b->lock, NULL);

    if (err) {
        return -err;
    }
    err = pthread_cond_init(&b->done, NULL);
    if (err) {
        pthread_mutex_destroy(&b->lock);
        return -err;
    }
    b->pending = n;
    b->err = 0;
    return 0;
}

void
worker_barrier_fini(struct worker_barrier *b)
{
    pthread_cond_destroy(&b->done);
    pthread_mutex_destroy(&b->lock);
}

void
worker_barrier_cancel(struct worker_barrier *b, unsigned n, int err)
{
    pthread_mutex_lock(&b->lock);
    b->pending -= n;
    if (err && !b->err) {
        b->err = err;
    }
    if (b->pending == 0) {
        pthread_cond_broadcast(&b->done);
    }
    pthread_mutex_unlock(&b->lock);
}

void
worker_barrier_arrive(struct worker_barrier *b, int err)
{
    worker_barrier_cancel(b, 1, err);
}

int
worker_barrier_wait(struct worker_barrier *b)
{
    int err;

    pthread_mutex_lock(&b->lock);
    while (b->pending > 0) {
        pthread_cond_wait(&b->done, &b->lock);
    }
    err = b->err;
    pthread_mutex_unlock(&b->lock);
    return err;
}
