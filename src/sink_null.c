/*
 * sink_null.c - a sink that takes every message and keeps none: for
 * benchmarks and for measuring the pipeline without a destination.
 */
#include "config.h"
#include "sink.h"

static int null_state; /* open must return a non-NULL state */

static int
sink_null_open(const struct sink_env *env, void **state)
{
    (void)env;
    *state = &null_state;
    return 0;
}

static int
sink_null_write(void *state, struct msg *const *batch, size_t n, size_t *taken)
{
    (void)taken;
    (void)state;
    (void)batch;
    (void)n;
    return 0;
}

static int
sink_null_flush(void *state, int force)
{
    (void)state;
    (void)force;
    return 0;
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
    (void)state;
}

const struct sink_ops sink_null_ops = {
    .name = "null",
    .open = sink_null_open,
    .write = sink_null_write,
    .flush = sink_null_flush,
    .reopen = sink_null_reopen,
    .close = sink_null_close,
};
