/*
 * sink_zmq_push.c - the forwarding sink in zmq.mode = push: messages go on
 * to downstream ZeroMQ peers (zpiped.ini(5), "[zmq]").
 *
 * Each consumer thread opens its own PUSH socket per zmq.endpoints entry on
 * the daemon's context (sink->open runs on that thread, and the sockets
 * never leave it), and offers each message to them in turn, as a PUSH
 * socket connected to all of them would (round robin over the peers with
 * room).  ZMQ_IMMEDIATE keeps libzmq from queueing for a peer that is not
 * connected, so a message counts as delivered only once libzmq took it for
 * a connected peer.  Each socket's monitor reports failed handshakes (a
 * downstream that refuses our CURVE key), read when a submit() finds no
 * taker, once a second under load, and in the idle poll().  A refused
 * handshake makes libzmq give that connection up for good, so
 * SINK_ZMQ_REMAKE_MS later that endpoint's socket is made anew (watch()):
 * ZMQ_IMMEDIATE queued nothing for the refused peer, so nothing is lost
 * with the old socket, and the other endpoints' sockets, with what they
 * still queue, are not touched.  That is why a socket per endpoint.
 *
 * A message is stored, as far as this sink can know, once libzmq took it:
 * nothing is ever in flight.  Sends never block for long: submit() offers
 * each message without waiting and, when every peer's ZMQ_SNDHWM is full
 * (or there is no peer), polls for room for at most SINK_ZMQ_WAIT_MS over
 * the whole call.  It accepts what was taken; when that is nothing it
 * returns -EAGAIN, and the consumer backs off (backpressure: the queue
 * fills and the producers stop reading).  A multipart message is sent as
 * multipart, and is never half taken (sink_zmq_send).
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
    struct sink_zmq_link *ps; /* a PUSH socket per endpoint, in the config's order */
    size_t nps;
    size_t next;           /* the socket offered the next message first */
    zmq_pollitem_t *items; /* room to wait on: one per socket */
    uint64_t mon_read_ms;  /* when the monitors were last read */
    sink_done_fn *done;
    void *arg;
};

/* Makes p's PUSH socket; on error, watch() tries again SINK_ZMQ_REMAKE_MS later. */
static int
make(struct sink_zmq_push *z, struct sink_zmq_link *p)
{
    return sink_zmq_link_open(p, z->zctx, z->cfg, ZMQ_PUSH, SINK_ZMQ_PUSH_LINGER_MS, true);
}

/*
 * Reads the monitors; makes a socket anew when its handshake was refused
 * long enough ago, or when making it failed as long ago (the link logs
 * why).  A socket that cannot be made is no error of poll(): the others
 * may take messages, and if none can, submit() says so (-EAGAIN).
 */
static void
watch(struct sink_zmq_push *z, uint64_t now)
{
    z->mon_read_ms = now;
    for (size_t i = 0; i < z->nps; i++) {
        struct sink_zmq_link *p = &z->ps[i];

        (void)sink_zmq_link_read(p);
        if (now < sink_zmq_link_remake_ms(p)) {
            continue;
        }
        if (p->sock) {
            log_debug("sink zmq: %s: handshake refused: making the socket anew", p->endpoint);
            sink_zmq_link_close(p);
        }
        (void)make(z, p);
    }
}

static void sink_zmq_push_close(void *state);

static int
sink_zmq_push_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    const struct conf *cfg = env->cfg;
    struct sink_zmq_push *z;
    int err = 0;

    if (!env->zctx) {
        return -EINVAL;
    }
    z = calloc(1, sizeof(*z));
    if (!z) {
        return -ENOMEM;
    }
    z->cfg = cfg;
    z->zctx = env->zctx;
    z->done = done;
    z->arg = arg;
    z->nps = cfg->zmq_endpoints.n;
    z->ps = calloc(z->nps, sizeof(*z->ps));
    z->items = calloc(z->nps, sizeof(*z->items));
    if (!z->ps || !z->items) {
        err = -ENOMEM;
    }
    for (size_t i = 0; i < z->nps && err == 0; i++) {
        z->ps[i].endpoint = cfg->zmq_endpoints.items[i];
        err = make(z, &z->ps[i]);
    }
    if (err < 0) {
        sink_zmq_push_close(z);
        return err;
    }
    *state = z;
    return 0;
}

/*
 * Offers m to the sockets in turn from z->next, without waiting.  Returns 0
 * when one took it (the next message goes to the one after), -EAGAIN when
 * none had room or a peer, another negative errno on failure.
 */
static int
send_one(struct sink_zmq_push *z, const struct msg *m)
{
    for (size_t k = 0, i = z->next; k < z->nps; k++, i = i + 1 < z->nps ? i + 1 : 0) {
        int err;

        if (!z->ps[i].sock) {
            continue;
        }
        err = sink_zmq_send(z->ps[i].sock, m, false);
        if (err == 0) {
            z->next = i + 1 < z->nps ? i + 1 : 0;
            return 0;
        }
        if (err != -EAGAIN) {
            return err;
        }
    }
    return -EAGAIN;
}

/*
 * Waits at most timeout_ms for room on any socket.  Returns 0, -EAGAIN at
 * once if there is no socket to wait on, or another negative errno.
 */
static int
wait_room(struct sink_zmq_push *z, long timeout_ms)
{
    int n = 0;

    for (size_t i = 0; i < z->nps; i++) {
        if (z->ps[i].sock) {
            z->items[n++] = (zmq_pollitem_t){ .socket = z->ps[i].sock, .events = ZMQ_POLLOUT };
        }
    }
    if (n == 0) {
        return -EAGAIN;
    }
    if (zmq_poll(z->items, n, timeout_ms) < 0 && zmq_errno() != EINTR) {
        return -zmq_errno();
    }
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
        uint64_t now;

        err = send_one(z, msgs[i]);
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
        err = wait_room(z, (long)(deadline - now));
        if (err < 0) {
            if (err != -EAGAIN) {
                stats_sink_error(STATS_SINK_ERROR_SEND);
            }
            break;
        }
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
    err = send_some(z, msgs, n, accepted);
    now = util_now_ms();
    /* Why no peer took them; and once a second anyway, or the events of
     * one refusing endpoint among several would pile up under load. */
    if (*accepted < n || now - z->mon_read_ms >= 1000) {
        watch(z, now);
    }
    if (*accepted > 0) {
        z->done(z->arg, *accepted, SINK_STORED, 0);
        return 0; /* the rest is offered again at once */
    }
    return err;
}

/*
 * Nothing is in flight: the idle work is reading the monitors, so their
 * events never pile up, and making a socket anew after a refused handshake.
 */
static int
sink_zmq_push_poll(void *state, int timeout_ms)
{
    struct sink_zmq_push *z = state;

    (void)timeout_ms;
    watch(z, util_now_ms());
    return 0;
}

static void
sink_zmq_push_close(void *state)
{
    struct sink_zmq_push *z = state;

    if (!z) {
        return;
    }
    for (size_t i = 0; z->ps && i < z->nps; i++) {
        sink_zmq_link_close(&z->ps[i]);
    }
    free(z->ps);
    free(z->items);
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
