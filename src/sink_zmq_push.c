/*
 * sink_zmq_push.c - the forwarding sink in zmq.mode = push: messages go on
 * to downstream ZeroMQ peers (zpiped.ini(5), "[zmq]").
 *
 * Each consumer thread opens its own PUSH socket on the daemon's context
 * (sink->open runs on that thread, and the socket never leaves it) and
 * connects it to every zmq.endpoints entry.  ZMQ_IMMEDIATE keeps libzmq
 * from queueing for peers that are not connected, so a message counts as
 * delivered only once libzmq took it for a connected peer.  Its monitor
 * reports failed handshakes (a downstream that refuses our CURVE key),
 * read when a submit() finds no taker, once a second under load, and in
 * the idle poll().  A refused handshake makes libzmq give that connection
 * up for good: with one endpoint, SINK_ZMQ_REMAKE_MS later the
 * socket is made anew (watch(); ZMQ_IMMEDIATE queued nothing for the
 * refused peer, so nothing is lost with the old one).  With several, the
 * others go on taking messages, and the socket is kept: a new one would
 * drop what the old one still queues for them once its linger ends.  The
 * refused endpoint is then found again at the next start.
 *
 * A message is stored, as far as this sink can know, once libzmq took it:
 * nothing is ever in flight.  Sends never block for long: submit() offers
 * each message without waiting and, when the peers' ZMQ_SNDHWM is full (or
 * there is no peer), polls for room for at most SINK_ZMQ_WAIT_MS over the
 * whole call.  It accepts what was taken; when that is nothing it returns
 * -EAGAIN, and the consumer backs off (backpressure: the queue fills and
 * the producers stop reading).  A multipart message is sent as multipart,
 * and is never half taken (sink_zmq_send).
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

#include "log.h"
#include "sink_zmq.h"
#include "stats.h"
#include "util.h"

/* At exit, zmq_ctx_term waits this long for what libzmq took but has not sent yet. */
#define SINK_ZMQ_PUSH_LINGER_MS 10000

struct sink_zmq_push {
    const struct conf *cfg;
    void *zctx;
    void *sock; /* PUSH, owned by the consumer thread that opened it; NULL if remaking it failed */
    void *mon;  /* its monitor: failed handshakes are logged */
    struct sink_zmq_peer peer;
    uint64_t mon_read_ms; /* when mon was last read */
    uint64_t failed_ms;   /* when making sock last failed */
    sink_done_fn *done;
    void *arg;
};

/*
 * Makes z's PUSH socket and its monitor, connected to every endpoint; on
 * error, neither, and watch() tries again SINK_ZMQ_REMAKE_MS later.
 */
static int
make(struct sink_zmq_push *z)
{
    const struct conf *cfg = z->cfg;
    int err;

    z->peer.refused_ms = 0;
    z->sock = zmq_socket(z->zctx, ZMQ_PUSH);
    if (!z->sock) {
        err = -zmq_errno();
        goto fail;
    }
    if ((err = sink_zmq_setup(z->sock, SINK_ZMQ_PUSH_LINGER_MS, cfg->zmq_sndhwm, true)) < 0 ||
        (err = sink_zmq_set_curve(z->sock, cfg)) < 0 ||
        (err = sink_zmq_monitor_open(z->zctx, z->sock, &z->mon)) < 0) {
        goto fail;
    }
    for (size_t i = 0; i < cfg->zmq_endpoints.n; i++) {
        err = sink_zmq_connect(z->sock, cfg->zmq_endpoints.items[i]);
        if (err < 0) {
            goto fail;
        }
    }
    return 0;
fail:
    sink_zmq_close(z->sock, z->mon);
    z->sock = z->mon = NULL;
    z->failed_ms = util_now_ms();
    return err;
}

/*
 * Reads the monitor; makes the socket anew when a handshake was refused
 * long enough ago, or when making it failed as long ago.  Returns 0 or the
 * negative errno of making it.
 */
static int
watch(struct sink_zmq_push *z, uint64_t now)
{
    if (z->mon) {
        z->mon_read_ms = now;
        (void)sink_zmq_monitor_read(z->mon, &z->peer);
    }
    if (z->sock &&
        (z->cfg->zmq_endpoints.n > 1 || !sink_zmq_peer_is_given_up(&z->peer, now))) {
        return 0;
    }
    if (z->sock) {
        log_debug("sink zmq: a handshake was refused: making the socket anew");
        sink_zmq_close(z->sock, z->mon);
        z->sock = z->mon = NULL;
    } else if (now - z->failed_ms < SINK_ZMQ_REMAKE_MS) {
        return 0;
    }
    return make(z);
}

static int
sink_zmq_push_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
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
    z->cfg = cfg;
    z->zctx = env->zctx;
    z->peer.has_curve = cfg->zmq_curve_server_key[0] != '\0';
    z->done = done;
    z->arg = arg;
    err = make(z);
    if (err < 0) {
        free(z);
        return err;
    }
    *state = z;
    return 0;
}

/*
 * Sends msgs[0..) until all are taken, or SINK_ZMQ_WAIT_MS passed; *sent is
 * how many went.  Returns 0 or the negative errno that stopped it.
 */
static int
send_some(struct sink_zmq_push *z, struct msg *const *msgs, size_t n, size_t *sent)
{
    uint64_t deadline = util_now_ms() + SINK_ZMQ_WAIT_MS;
    size_t i = 0;
    int err = 0;

    while (i < n) {
        zmq_pollitem_t item = { .socket = z->sock, .events = ZMQ_POLLOUT };
        uint64_t now;

        err = sink_zmq_send(z->sock, msgs[i], false);
        if (err == 0) {
            i++;
            continue;
        }
        if (err != -EAGAIN) {
            stats_sink_error(STATS_SINK_ERROR_SEND);
            break;
        }
        now = util_now_ms();
        if (now >= deadline) {
            stats_sink_error(STATS_SINK_ERROR_TIMEOUT);
            break;
        }
        if (zmq_poll(&item, 1, (long)(deadline - now)) < 0 && zmq_errno() != EINTR) {
            stats_sink_error(STATS_SINK_ERROR_SEND);
            err = -zmq_errno();
            break;
        }
        err = 0;
    }
    *sent = i;
    return err;
}

static int
sink_zmq_push_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct sink_zmq_push *z = state;
    uint64_t now;
    int err;

    *accepted = 0;
    err = z->sock ? send_some(z, msgs, n, accepted) : -EAGAIN;
    now = util_now_ms();
    /* Why no peer took them; and once a second anyway, or the events of
     * one refusing endpoint among several would pile up under load. */
    if (*accepted < n || now - z->mon_read_ms >= 1000) {
        (void)watch(z, now);
    }
    if (*accepted > 0) {
        z->done(z->arg, *accepted, SINK_STORED, 0);
        return 0; /* the rest is offered again at once */
    }
    return err;
}

/*
 * Nothing is in flight: the idle work is reading the monitor, so its events
 * never pile up, and making the socket anew after a refused handshake.
 */
static int
sink_zmq_push_poll(void *state, int timeout_ms)
{
    struct sink_zmq_push *z = state;

    (void)timeout_ms;
    return watch(z, util_now_ms());
}

static void
sink_zmq_push_close(void *state)
{
    struct sink_zmq_push *z = state;

    if (!z) {
        return;
    }
    sink_zmq_close(z->sock, z->mon);
    free(z);
}

const struct sink_ops sink_zmq_push_ops = {
    .name = "zmq",
    .open = sink_zmq_push_open,
    .submit = sink_zmq_push_submit,
    .poll = sink_zmq_push_poll,
    .abort = sink_zmq_abort,
    .reopen = sink_zmq_reopen,
    .close = sink_zmq_push_close,
};
