/*
 * sink_nats.c - the nats sink: messages published to a NATS JetStream
 * stream (README.md, "Scaling past one machine").  A skeleton: it takes
 * nothing yet.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <stdlib.h>

#include <nats/nats.h>

struct nats_sink {
    const struct conf *cfg;
    sink_done_fn *done;
    void *arg;
};

static int
sink_nats_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    struct nats_sink *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return -ENOMEM;
    }
    s->cfg = env->cfg;
    s->done = done;
    s->arg = arg;
    *state = s;
    return 0;
}

static int
sink_nats_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    (void)state;
    (void)msgs;
    (void)n;
    *accepted = 0;
    return -ENOSYS;
}

static int
sink_nats_poll(void *state, int timeout_ms)
{
    (void)state;
    (void)timeout_ms;
    return 0;
}

static void
sink_nats_cancel(void *state)
{
    (void)state;
}

static int
sink_nats_reopen(void *state)
{
    (void)state;
    return 0;
}

static void
sink_nats_close(void *state)
{
    free(state);
}

const struct sink_ops sink_nats_ops = {
    .name = "nats",
    .open = sink_nats_open,
    .submit = sink_nats_submit,
    .poll = sink_nats_poll,
    .cancel = sink_nats_cancel,
    .reopen = sink_nats_reopen,
    .close = sink_nats_close,
};
