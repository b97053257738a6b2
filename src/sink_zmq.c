/*
 * sink_zmq.c - the forwarding sink: messages go on to downstream ZeroMQ
 * peers (DESIGN.md, "[zmq]").
 *
 * mode = push.  Each consumer thread opens its own PUSH socket on the
 * daemon's context (sink->open runs on that thread, and the socket never
 * leaves it) and connects it to every zmq.endpoints entry.  ZMQ_IMMEDIATE
 * keeps libzmq from queueing for peers that are not connected, so a message
 * counts as delivered only once libzmq took it for a connected peer.
 *
 * Sends never block for long: write() offers each message without waiting
 * and, when the peers' ZMQ_SNDHWM is full (or there is no peer), polls for
 * room for at most SINK_ZMQ_WAIT_MS over the whole call.  Then it returns
 * -EAGAIN with the number of messages already taken in *taken; the consumer
 * retries only the rest, with backoff while nothing moves (backpressure:
 * the queue fills and the producers stop reading).  A multipart message is
 * sent as multipart; libzmq admits or refuses a message at its first frame,
 * so a message is never half taken.
 *
 * mode = dealer is not written yet (TODO(#4)); conf.c refuses it.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

#include "log.h"
#include "stats.h"
#include "util.h"

#define SINK_ZMQ_WAIT_MS   100 /* longest a write() waits for room, in all */
#define SINK_ZMQ_LINGER_MS 10000 /* at exit, zmq_ctx_term waits this long for what
                                    libzmq took but has not sent yet */

struct sink_zmq {
    void *sock; /* PUSH, owned by the consumer thread that opened it */
};

static void sink_zmq_close(void *state);

static int
set_int(void *sock, int opt, int val)
{
    return zmq_setsockopt(sock, opt, &val, sizeof(val)) < 0 ? -zmq_errno() : 0;
}

static int
sink_zmq_open(const struct sink_env *env, void **state)
{
    const struct conf *cfg = env->cfg;
    struct sink_zmq *z;
    char ebuf[128];
    int err;

    if (!env->zctx) {
        return -EINVAL;
    }
    if (cfg->zmq_mode != CONF_ZMQMODE_PUSH) {
        return -ENOTSUP; /* conf.c refuses dealer; keep the sink honest anyway */
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
    if ((err = set_int(z->sock, ZMQ_LINGER, SINK_ZMQ_LINGER_MS)) < 0 ||
        (err = set_int(z->sock, ZMQ_IMMEDIATE, 1)) < 0 ||
        (err = set_int(z->sock, ZMQ_SNDHWM, (int)cfg->zmq_sndhwm)) < 0 ||
        (err = set_int(z->sock, ZMQ_SNDTIMEO, SINK_ZMQ_WAIT_MS)) < 0) {
        log_error("sink zmq: zmq_setsockopt: %s", zmq_strerror(-err));
        goto fail;
    }
    for (size_t i = 0; i < cfg->zmq_endpoints.n; i++) {
        if (zmq_connect(z->sock, cfg->zmq_endpoints.items[i]) < 0) {
            err = -zmq_errno();
            log_error("sink zmq: connect %s: %s", cfg->zmq_endpoints.items[i],
                      err <= -ZMQ_HAUSNUMERO ? zmq_strerror(-err)
                                            : util_strerror(-err, ebuf, sizeof(ebuf)));
            goto fail;
        }
    }
    *state = z;
    return 0;
fail:
    sink_zmq_close(z);
    return err;
}

/*
 * Offers m without blocking.  Returns 0 when libzmq took it, -EAGAIN when
 * no peer has room, another negative errno on failure.
 */
static int
send_one(struct sink_zmq *z, const struct msg *m)
{
    for (size_t i = 0; i < m->nframes; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < m->nframes ? ZMQ_SNDMORE : 0);

        if (zmq_send(z->sock, m->frames[i].data, m->frames[i].len, flags) < 0) {
            int err = zmq_errno();

            /* Only the first frame can be refused for lack of room. */
            return err == EINTR ? -EAGAIN : -err;
        }
    }
    return 0;
}

static int
sink_zmq_write(void *state, struct msg *const *batch, size_t n, size_t *taken)
{
    struct sink_zmq *z = state;
    uint64_t deadline = util_now_ms() + SINK_ZMQ_WAIT_MS;
    size_t i = 0;

    while (i < n) {
        zmq_pollitem_t item = { .socket = z->sock, .events = ZMQ_POLLOUT };
        uint64_t now;
        int err = send_one(z, batch[i]);

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

static int
sink_zmq_flush(void *state, int force)
{
    (void)state;
    (void)force;
    return 0;
}

static int
sink_zmq_reopen(void *state)
{
    (void)state;
    return 0;
}

static void
sink_zmq_close(void *state)
{
    struct sink_zmq *z = state;

    if (!z) {
        return;
    }
    if (z->sock) {
        zmq_close(z->sock);
    }
    free(z);
}

const struct sink_ops sink_zmq_ops = {
    .name = "zmq",
    .open = sink_zmq_open,
    .write = sink_zmq_write,
    .flush = sink_zmq_flush,
    .reopen = sink_zmq_reopen,
    .close = sink_zmq_close,
};
