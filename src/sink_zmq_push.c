/*
 * sink_zmq_push.c - the forwarding sink in zmq.mode = push: messages go on
 * to downstream ZeroMQ peers (zpiped.ini(5), "[zmq]").
 *
 * Each consumer thread opens its own PUSH socket on the daemon's context
 * (sink->open runs on that thread, and the socket never leaves it) and
 * connects it to every zmq.endpoints entry.  ZMQ_IMMEDIATE keeps libzmq
 * from queueing for peers that are not connected, so a message counts as
 * delivered only once libzmq took it for a connected peer.
 *
 * Sends never block for long: write() offers each message without waiting
 * and, when the peers' ZMQ_SNDHWM is full (or there is no peer), polls for
 * room for at most SINK_ZMQ_WAIT_MS over the whole call.  Then it returns
 * -EAGAIN with the number of messages already taken in *taken; the consumer
 * retries only the rest, with backoff while nothing moves (backpressure:
 * the queue fills and the producers stop reading).  A multipart message is
 * sent as multipart, and is never half taken (sink_zmq_send).
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

#include "sink_zmq.h"
#include "stats.h"
#include "util.h"
#include "zmq_util.h"

/* At exit, zmq_ctx_term waits this long for what libzmq took but has not sent yet. */
#define SINK_ZMQ_PUSH_LINGER_MS 10000

struct sink_zmq_push {
    void *sock; /* PUSH, owned by the consumer thread that opened it */
};

static void sink_zmq_push_close(void *state);

static int
sink_zmq_push_open(const struct sink_env *env, void **state)
{
    const struct conf *cfg = env->cfg;
    struct sink_zmq_push *z;
    int err;

    if (!env->zctx) {
        return -EINVAL;
    }
    z = calloc(1, sizeof(*z));
    if (!z) {
        return -ENOMEM;
    }
    z->sock = zmq_socket(env->zctx, ZMQ_PUSH);
    if (!z->sock) {
        err = -zmq_errno();
        goto fail;
    }
    if ((err = sink_zmq_setup(z->sock, SINK_ZMQ_PUSH_LINGER_MS, cfg->zmq_sndhwm)) < 0 ||
        (err = zmq_util_set_int(z->sock, ZMQ_SNDTIMEO, SINK_ZMQ_WAIT_MS)) < 0 ||
        (err = sink_zmq_set_curve(z->sock, cfg)) < 0) {
        goto fail;
    }
    for (size_t i = 0; i < cfg->zmq_endpoints.n; i++) {
        err = sink_zmq_connect(z->sock, cfg->zmq_endpoints.items[i]);
        if (err < 0) {
            goto fail;
        }
    }
    *state = z;
    return 0;
fail:
    sink_zmq_push_close(z);
    return err;
}

static int
sink_zmq_push_write(void *state, struct msg *const *batch, size_t n, size_t *taken)
{
    struct sink_zmq_push *z = state;
    uint64_t deadline = util_now_ms() + SINK_ZMQ_WAIT_MS;
    size_t i = 0;

    while (i < n) {
        zmq_pollitem_t item = { .socket = z->sock, .events = ZMQ_POLLOUT };
        uint64_t now;
        int err = sink_zmq_send(z->sock, batch[i], false);

        if (err == 0) {
            i++;
            continue;
        }
        if (err != -EAGAIN) {
            stats_sink_error(STATS_SINK_ERROR_SEND);
            *taken = i;
            return err;
        }
        now = util_now_ms();
        if (now >= deadline) {
            stats_sink_error(STATS_SINK_ERROR_TIMEOUT);
            *taken = i;
            return -EAGAIN;
        }
        if (zmq_poll(&item, 1, (long)(deadline - now)) < 0 && zmq_errno() != EINTR) {
            stats_sink_error(STATS_SINK_ERROR_SEND);
            *taken = i;
            return -zmq_errno();
        }
    }
    return 0;
}

static void
sink_zmq_push_close(void *state)
{
    struct sink_zmq_push *z = state;

    if (!z) {
        return;
    }
    if (z->sock) {
        zmq_close(z->sock);
    }
    free(z);
}

const struct sink_ops sink_zmq_push_ops = {
    .name = "zmq",
    .open = sink_zmq_push_open,
    .write = sink_zmq_push_write,
    .flush = sink_zmq_flush,
    .reopen = sink_zmq_reopen,
    .close = sink_zmq_push_close,
};
