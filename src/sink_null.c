/*
 * sink_null.c - a sink that takes every message and keeps none: for
 * benchmarks and for measuring the pipeline without a destination.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <stdlib.h>

struct sink_null {
    sink_done_fn *done;
    void *arg;
};

static int
sink_null_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    struct sink_null *z = malloc(sizeof(*z));

    (void)env;
    if (!z) {
        return -ENOMEM;
    }
    z->done = done;
    z->arg = arg;
    *state = z;
    return 0;
}

/* Every message is stored as soon as it is taken. */
static int
sink_null_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct sink_null *z = state;

    (void)msgs;
    *accepted = n;
    z->done(z->arg, n, SINK_STORED, 0);
    return 0;
}

static int
sink_null_poll(void *state, int timeout_ms)
{
    (void)state;
    (void)timeout_ms;
    return 0;
}

static void
sink_null_abort(void *state)
{
    (void)state; /* nothing is ever in flight */
}

static int
sink_null_reopen(void *state)
{
    (void)state;
    return 0;
}

static void
sink_null_close(void *state)
{
    free(state);
}

const struct sink_ops sink_null_ops = {
    .name = "null",
    .open = sink_null_open,
    .submit = sink_null_submit,
    .poll = sink_null_poll,
    .abort = sink_null_abort,
    .reopen = sink_null_reopen,
    .close = sink_null_close,
};
