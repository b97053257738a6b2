/*
 * sink_zmq_dealer.c - the forwarding sink in zmq.mode = dealer: messages go
 * on to a downstream zpiped that acknowledges each one (zpiped.ini(5),
 * "[zmq]").
 *
 * The downstream is a zpiped in router mode, which answers every message
 * with ["", "OK"] once it is queued (or ["", "ERR reason"]), in the order
 * the messages came on that connection.  Each consumer thread
 * opens one DEALER socket per endpoint (one peer per socket, so the replies
 * of a socket come back in the order its messages went out) and sends every
 * message as ["", frames...].  A message counts as taken only when its OK
 * arrives.  The messages of a batch are pipelined: up to `window` of them
 * (min(output.batch, zmq.sndhwm, SINK_ZMQ_WINDOW_MAX)) per socket await a
 * reply at once, spread over the sockets that have a connected peer.
 * write() reports the acknowledged prefix of the batch as taken; when it
 * returns early (after SINK_ZMQ_WAIT_MS, or at the drain deadline), the
 * consumer calls it again with the rest of the same batch (sink.h): at once
 * and not as a failed write when it returned -EINPROGRESS (messages await
 * their replies), with backoff after -EAGAIN (nothing could be sent); the
 * state of every message (unsent, awaiting a reply, answered) carries over.
 *
 * Matching replies to messages relies on the order, so it must never see
 * the replies of one connection as those of another.  Two ways that could
 * happen, and what closes them:
 *  - The connection drops and libzmq reconnects on its own.  The messages
 *    written to the old connection that got no reply are unknown: a reply
 *    from the new connection must not be matched with them.  A monitor
 *    (ZMQ_EVENT_DISCONNECTED, on an inproc PAIR owned by the same thread)
 *    tells, and the socket is then closed and opened again and its
 *    unanswered messages resent.  The replies are read before the monitor
 *    is checked, and replies read in a round that sees a disconnect are
 *    dropped (their messages are resent): a reply from a new connection was
 *    queued after the disconnect event, so the check after the read sees it.
 *    ZMQ_IMMEDIATE means a message is only ever queued on a live connection.
 *  - No reply for zmq.ack_timeout (a hung peer, a lost reply): the socket
 *    is closed (linger 0) and opened again before the resend, so a late OK
 *    from the old connection can never be read as the answer to another
 *    message.
 * Resending makes a chain at-least-once across a downstream failure: the
 * downstream may have queued a message whose OK never arrived.  The window
 * stays far below the downstream's reply high-water mark (ROUTER_SNDHWM in
 * producer.c), so it never drops a reply for lack of room, which would
 * shift the order.
 *
 * An ERR reply: the downstream refused the message (too large for it);
 * sending it again would be refused again and stall the pipeline.  It is
 * appended to a dead-letter file in spool_dir by a spool writer
 * (spool_writer_open_dead_letter(): "deadletter-<ms>-<pid>-<n>.zpd", binary
 * record format).  The refusals met in one write are made durable together
 * (spool_writer_sync()) before they count as taken, so they count as
 * delivered: the dead-letter file is where they went.  A failed sync cuts
 * them off the file again and they are written again on the next try; a
 * file that could not be cut back takes no more and the next refusal opens
 * a new one, so no torn record is ever followed by another.
 * Replay does not read those files; a human decides.  Each refusal is
 * counted and logged with its reason.  If the dead-letter file cannot be
 * written, the message is not taken: the write fails, the consumer retries,
 * and at the drain deadline it is spilled like any other.
 *
 * At the drain deadline (env->is_cancelled) write() returns -ECANCELED with
 * the acknowledged prefix as taken; the rest is spilled by the consumer,
 * including any message already acknowledged behind an unacknowledged one
 * (only possible with several endpoints): that one is then delivered twice.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "heartbeat.h"
#include "log.h"
#include "sink_zmq.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zmq_util.h"

#define SINK_ZMQ_WINDOW_MAX 10000 /* far below the router's reply HWM */
#define SINK_ZMQ_REASON_MAX 128   /* bytes of an ERR reason kept for the log */

enum mst {
    MST_UNSENT = 0, /* to send (again) */
    MST_SENT,       /* awaiting its reply */
    MST_OK,         /* acknowledged */
    MST_ERR,        /* refused downstream: to the dead-letter file */
    MST_DONE,       /* in the dead-letter file */
};

/* One DEALER socket per endpoint, with its unanswered messages. */
struct dsock {
    const char *endpoint; /* borrowed from the config */
    void *sock;           /* DEALER */
    void *mon;            /* PAIR reading sock's disconnect events */
    size_t *fifo;         /* batch indices awaiting a reply, oldest first */
    size_t head, count;   /* ring of window entries */
    bool is_full;         /* the last send found no room (this round) */
};

struct sink_zmq_dealer {
    sink_done_fn *done; /* outcomes, to the consumer */
    void *arg;
    const struct conf *cfg;
    void *zctx;
    const _Atomic bool *is_cancelled;
    struct dsock *ds;
    size_t nds;
    zmq_pollitem_t *items; /* 2 per socket: the DEALER and its monitor */
    size_t window;
    uint8_t *st;        /* per batch index: enum mst */
    uint64_t *sent_ms;  /* per batch index: when it was last sent */
    uint8_t *tent;      /* replies of one round, before they are applied */
    struct msg **cur;   /* the batch being written (borrowed pointers) */
    size_t cur_n, base; /* its size; how many from the front were taken */
    size_t scan;        /* no message before this index is unsent */
    size_t batch_cap;
    spool_writer_t *dl; /* the dead-letter file, opened on the first refusal */
    uint64_t refused;   /* ERR replies, in all */
    uint64_t resent;    /* messages sent again */
    uint64_t refused_log_ms;
    char reason[SINK_ZMQ_REASON_MAX]; /* the last ERR reason */
};

static bool
is_cancelled(const struct sink_zmq_dealer *z)
{
    return z->is_cancelled && atomic_load(z->is_cancelled);
}

static void
dsock_close(struct dsock *d)
{
    if (d->sock) {
        zmq_close(d->sock); /* linger 0: what is unsent is resent or spilled */
        d->sock = NULL;
    }
    if (d->mon) {
        zmq_close(d->mon);
        d->mon = NULL;
    }
}

/* Opens d's DEALER and its monitor and connects it; on error d is closed. */
static int
dsock_open(struct sink_zmq_dealer *z, struct dsock *d)
{
    static _Atomic unsigned seq;
    char addr[64], ebuf[128];
    int err;

    snprintf(addr, sizeof(addr), "inproc://zpipe-sink-zmq-mon-%u", atomic_fetch_add(&seq, 1));
    d->sock = zmq_socket(z->zctx, ZMQ_DEALER);
    d->mon = zmq_socket(z->zctx, ZMQ_PAIR);
    if (!d->sock || !d->mon) {
        err = -zmq_errno();
        log_error("sink zmq: zmq_socket: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    /* Linger 0: what is unsent is resent or spilled. */
    if ((err = sink_zmq_setup(d->sock, 0, z->cfg->zmq_sndhwm)) < 0 ||
        (err = sink_zmq_set_curve(d->sock, z->cfg)) < 0) {
        goto fail;
    }
    if ((err = zmq_util_set_int(d->mon, ZMQ_LINGER, 0)) < 0) {
        log_error("sink zmq: zmq_setsockopt: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    /* The monitor is connected before the DEALER, so no event is missed. */
    if (zmq_socket_monitor(d->sock, addr, ZMQ_EVENT_DISCONNECTED) < 0 ||
        zmq_connect(d->mon, addr) < 0) {
        err = -zmq_errno();
        log_error("sink zmq: monitor %s: %s", addr, zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    err = sink_zmq_connect(d->sock, d->endpoint);
    if (err < 0) {
        goto fail;
    }
    d->head = 0;
    d->count = 0;
    d->is_full = false;
    return 0;
fail:
    dsock_close(d);
    return err;
}

/*
 * Forgets the connection of d: closes and reopens its socket and marks its
 * unanswered messages for resending.  A reopen failure leaves d closed; the
 * next write tries again.
 */
static void
dsock_reset(struct sink_zmq_dealer *z, struct dsock *d)
{
    for (size_t k = 0; k < d->count; k++) {
        z->st[d->fifo[(d->head + k) % z->window]] = MST_UNSENT;
    }
    z->resent += d->count;
    z->scan = 0;
    d->head = 0;
    d->count = 0;
    dsock_close(d);
    (void)dsock_open(z, d);
}

/* Returns true if d's monitor reported a disconnect; drains its events. */
static bool
dsock_disconnected(struct dsock *d)
{
    bool seen = false;

    for (;;) {
        zmq_msg_t ev;
        int more;

        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, d->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return seen;
        }
        if (zmq_msg_size(&ev) >= 2) {
            uint16_t event;

            memcpy(&event, zmq_msg_data(&ev), sizeof(event));
            seen = seen || event == ZMQ_EVENT_DISCONNECTED;
        }
        more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        /* The second frame is the endpoint. */
        while (more) {
            zmq_msg_init(&ev);
            if (zmq_msg_recv(&ev, d->mon, 0) < 0) {
                zmq_msg_close(&ev);
                return seen;
            }
            more = zmq_msg_more(&ev);
            zmq_msg_close(&ev);
        }
    }
}

/*
 * Reads one reply without waiting.  Returns 1 and *is_ok (and the reason
 * of an ERR in z->reason), 0 if none is waiting, -EPROTO for a reply that
 * is not ["", "OK"] or ["", "ERR ..."], another negative errno on error.
 */
static int
read_reply(struct sink_zmq_dealer *z, struct dsock *d, bool *is_ok)
{
    zmq_msg_t part;
    size_t nparts = 0;
    bool is_good = true;
    int more;

    *is_ok = false;
    do {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, d->sock, nparts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int err = zmq_errno();

            zmq_msg_close(&part);
            return nparts == 0 && (err == EAGAIN || err == EINTR) ? 0 : -err;
        }
        more = zmq_msg_more(&part);
        if (nparts == 0) {
            is_good = zmq_msg_size(&part) == 0 && more;
        } else if (nparts == 1 && !more && is_good) {
            const char *text = zmq_msg_data(&part);
            size_t len = zmq_msg_size(&part);

            if (len == 2 && memcmp(text, "OK", 2) == 0) {
                *is_ok = true;
            } else if (len >= 3 && memcmp(text, "ERR", 3) == 0) {
                size_t keep = len < sizeof(z->reason) - 1 ? len : sizeof(z->reason) - 1;

                /* It goes into the log: one line, printable. */
                for (size_t i = 0; i < keep; i++) {
                    z->reason[i] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
                }
                z->reason[keep] = '\0';
            } else {
                is_good = false;
            }
        } else {
            is_good = false;
        }
        nparts++;
        zmq_msg_close(&part);
    } while (more);
    return is_good && nparts == 2 ? 1 : -EPROTO;
}

/*
 * Reads d's replies and applies them to the messages awaiting one, unless
 * the connection dropped meanwhile (then d is reset; see the top comment).
 */
static void
dsock_collect(struct sink_zmq_dealer *z, struct dsock *d)
{
    size_t k = 0;
    int r = 0;

    if (!d->sock) {
        return;
    }
    while (k < d->count) {
        bool is_ok;

        r = read_reply(z, d, &is_ok);
        if (r <= 0) {
            break;
        }
        z->tent[k++] = is_ok ? MST_OK : MST_ERR;
    }
    if (r >= 0 && k == d->count) {
        bool is_ok;

        r = read_reply(z, d, &is_ok); /* one more than awaited is an error */
        if (r == 1) {
            r = -EPROTO;
        }
    }
    if (r < 0) {
        char ebuf[128];

        log_warning("sink zmq: %s: reply: %s: reconnecting, resending %zu messages", d->endpoint,
                    r == -EPROTO ? "not OK or ERR" : zmq_util_strerror(-r, ebuf, sizeof(ebuf)),
                    d->count);
        dsock_reset(z, d);
        return;
    }
    if (dsock_disconnected(d) && d->count > 0) {
        log_info("sink zmq: %s: connection lost with %zu messages unacknowledged: resending",
                 d->endpoint, d->count);
        dsock_reset(z, d);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        size_t idx = d->fifo[d->head];

        z->st[idx] = z->tent[i];
        if (z->tent[i] == MST_ERR) {
            uint64_t now = util_now_ms();

            z->refused++;
            stats_sink_error(STATS_SINK_ERROR_REFUSED);
            /* One line per second at most: a downstream may refuse them all. */
            if (z->refused == 1 || now - z->refused_log_ms >= 1000) {
                log_warning("sink zmq: %s refused a message (%s; %" PRIu64 " refused so far): "
                            "it goes to the dead-letter file",
                            d->endpoint, z->reason, z->refused);
                z->refused_log_ms = now;
            }
        }
        d->head = (d->head + 1) % z->window;
        d->count--;
    }
}

/* Whether a message of the batch was sent and awaits its reply. */
static bool
awaits_reply(const struct sink_zmq_dealer *z)
{
    for (size_t j = 0; j < z->nds; j++) {
        if (z->ds[j].count > 0) {
            return true;
        }
    }
    return false;
}

/* Resets the sockets whose oldest unanswered message is older than ack_timeout. */
static void
expire(struct sink_zmq_dealer *z, uint64_t now)
{
    for (size_t j = 0; j < z->nds; j++) {
        struct dsock *d = &z->ds[j];

        if (!d->sock) {
            log_debug("sink zmq: %s: opening the socket again", d->endpoint);
            (void)dsock_open(z, d);
            continue;
        }
        if (d->count > 0 && now - z->sent_ms[d->fifo[d->head]] >= z->cfg->zmq_ack_timeout) {
            log_warning("sink zmq: %s: no reply within %" PRIu64 " ms: reconnecting, "
                        "resending %zu messages",
                        d->endpoint, z->cfg->zmq_ack_timeout, d->count);
            stats_sink_error(STATS_SINK_ERROR_TIMEOUT);
            dsock_reset(z, d);
        }
    }
}

/* The socket with room and the fewest unanswered messages, or NULL. */
static struct dsock *
pick(struct sink_zmq_dealer *z)
{
    struct dsock *best = NULL;

    for (size_t j = 0; j < z->nds; j++) {
        struct dsock *d = &z->ds[j];

        if (d->sock && !d->is_full && d->count < z->window && (!best || d->count < best->count)) {
            best = d;
        }
    }
    return best;
}

/* Sends what is unsent, in batch order, while some socket has room. */
static int
send_some(struct sink_zmq_dealer *z, uint64_t now)
{
    for (size_t j = 0; j < z->nds; j++) {
        z->ds[j].is_full = false;
    }
    size_t i = z->scan > z->base ? z->scan : z->base;

    for (; i < z->cur_n; i++) {
        struct dsock *d;

        if (z->st[i] != MST_UNSENT) {
            continue;
        }
        while ((d = pick(z)) != NULL) {
            int err = sink_zmq_send(d->sock, z->cur[i], true);

            if (err == 0) {
                d->fifo[(d->head + d->count) % z->window] = i;
                d->count++;
                z->st[i] = MST_SENT;
                z->sent_ms[i] = now;
                break;
            }
            if (err != -EAGAIN) {
                char ebuf[128];

                log_error("sink zmq: send to %s: %s", d->endpoint,
                          zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
                return err;
            }
            d->is_full = true; /* no connected peer, or its HWM is full */
        }
        if (!d) {
            break;
        }
    }
    z->scan = i;
    return 0;
}

/* Appends m to the dead-letter file, opened on the first refusal. */
static int
dead_letter_add(struct sink_zmq_dealer *z, const struct msg *m)
{
    const char *dir = z->cfg->daemon_spool_dir;
    char ebuf[128];
    int err = 0;

    if (!z->dl) {
        err = spool_writer_open_dead_letter(&z->dl, dir);
    }
    if (err == 0) {
        err = spool_writer_add(z->dl, m);
    }
    if (err < 0) {
        log_error("sink zmq: dead-letter file in %s: %s", dir,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

/*
 * Moves z->base over the acknowledged messages at the front, writing the
 * refused ones to the dead-letter file (made durable before they count).
 */
static int
advance(struct sink_zmq_dealer *z)
{
    size_t end = z->base;
    bool is_dl = false, was_named = z->dl && spool_writer_name(z->dl);
    int err = 0, sync_err = 0;

    while (end < z->cur_n && (z->st[end] == MST_OK || z->st[end] == MST_ERR)) {
        if (z->st[end] == MST_ERR) {
            err = dead_letter_add(z, z->cur[end]);
            if (err < 0) {
                break;
            }
            z->st[end] = MST_DONE;
            is_dl = true;
        }
        end++;
    }
    if (is_dl) {
        sync_err = spool_writer_sync(z->dl);
    }
    if (sync_err < 0) {
        /* Not durable, and cut off the file: those messages are not taken;
         * they stay refused and are written again on the next try. */
        for (size_t i = z->base; i < end; i++) {
            if (z->st[i] == MST_DONE) {
                z->st[i] = MST_ERR;
            }
        }
    } else if (is_dl && !was_named) {
        log_warning("sink zmq: messages refused downstream go to %s/%s",
                    z->cfg->daemon_spool_dir, spool_writer_name(z->dl));
    }
    if (z->dl && spool_writer_is_broken(z->dl)) {
        /* A torn record ends that file and nothing may follow it: its
         * synced records stay, the next refusal starts a new file. */
        (void)spool_writer_commit(z->dl);
        z->dl = NULL;
    }
    if (sync_err < 0) {
        return sync_err;
    }
    z->base = end;
    return err;
}

/* Makes batch[0..n) the batch being written, unless it is the rest of it. */
static void
begin_batch(struct sink_zmq_dealer *z, struct msg *const *batch, size_t n)
{
    if (z->cur_n - z->base == n && z->cur[z->base] == batch[0] &&
        z->cur[z->cur_n - 1] == batch[n - 1]) {
        return; /* the consumer retries the rest of the same batch (sink.h) */
    }
    for (size_t j = 0; j < z->nds; j++) {
        /* Left over from an abandoned batch: their replies must not count. */
        if (z->ds[j].count > 0) {
            z->ds[j].head = 0;
            z->ds[j].count = 0;
            dsock_close(&z->ds[j]);
            (void)dsock_open(z, &z->ds[j]);
        }
    }
    memcpy(z->cur, batch, n * sizeof(*batch));
    memset(z->st, MST_UNSENT, n);
    z->cur_n = n;
    z->base = 0;
    z->scan = 0;
}

static int
sink_zmq_dealer_write(void *state, struct msg *const *batch, size_t n, size_t *taken)
{
    struct sink_zmq_dealer *z = state;
    uint64_t now = util_now_ms(), deadline = now + SINK_ZMQ_WAIT_MS;
    size_t start;
    int err;

    if (n == 0) {
        return 0;
    }
    if (n > z->batch_cap) {
        return -EINVAL; /* the consumer never pops more than output.batch */
    }
    begin_batch(z, batch, n);
    start = z->base;
    for (;;) {
        zmq_pollitem_t *items = z->items;
        size_t nitems = 0;
        uint64_t wait = deadline - now;

        for (size_t j = 0; j < z->nds; j++) {
            dsock_collect(z, &z->ds[j]);
        }
        err = advance(z);
        if (z->base == z->cur_n) {
            z->cur_n = z->base = z->scan = 0;
            return 0;
        }
        if (err < 0) {
            break;
        }
        if (is_cancelled(z)) {
            err = -ECANCELED;
            break;
        }
        expire(z, now);
        err = send_some(z, now);
        if (err < 0) {
            break;
        }
        now = util_now_ms();
        if (now >= deadline) {
            err = awaits_reply(z) ? -EINPROGRESS : -EAGAIN;
            break;
        }
        for (size_t j = 0; j < z->nds; j++) {
            struct dsock *d = &z->ds[j];

            if (!d->sock) {
                continue;
            }
            if (d->count > 0) {
                uint64_t due = z->sent_ms[d->fifo[d->head]] + z->cfg->zmq_ack_timeout;

                wait = due <= now ? 0 : (due - now < wait ? due - now : wait);
            }
            items[nitems++] = (zmq_pollitem_t){
                .socket = d->sock,
                .events =
                    (short)(ZMQ_POLLIN | (d->is_full && d->count < z->window ? ZMQ_POLLOUT : 0)),
            };
            items[nitems++] = (zmq_pollitem_t){ .socket = d->mon, .events = ZMQ_POLLIN };
        }
        if (zmq_poll(items, (int)nitems, (long)wait) < 0 && zmq_errno() != EINTR) {
            err = -zmq_errno();
            break;
        }
        now = util_now_ms();
    }
    *taken = z->base - start;
    return err;
}

/*
 * Offers msgs[0..n) as one batch: waits, checking in with the watchdog,
 * until its first messages are acknowledged, and reports those stored.
 */
static int
sink_zmq_dealer_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct sink_zmq_dealer *z = state;
    size_t taken;
    int err;

    do {
        taken = 0;
        err = sink_zmq_dealer_write(z, msgs, n, &taken);
        heartbeat_beat_self();
    } while (err == -EINPROGRESS && taken == 0);
    if (taken > 0) {
        z->done(z->arg, taken, SINK_STORED, 0);
    }
    *accepted = taken;
    return err == -EINPROGRESS || (err == -EAGAIN && taken > 0) ? 0 : err;
}

/* Allocates z's arrays and opens its sockets. */
static int
dealer_alloc(struct sink_zmq_dealer *z)
{
    const struct conf *cfg = z->cfg;
    size_t cap = (size_t)cfg->output_batch;
    int err;

    z->window = cap;
    if (cfg->zmq_sndhwm < z->window) {
        z->window = (size_t)cfg->zmq_sndhwm;
    }
    if (z->window > SINK_ZMQ_WINDOW_MAX) {
        z->window = SINK_ZMQ_WINDOW_MAX;
    }
    z->batch_cap = cap;
    z->nds = cfg->zmq_endpoints.n;
    z->ds = calloc(z->nds, sizeof(*z->ds));
    z->items = calloc(2 * z->nds, sizeof(*z->items));
    z->st = calloc(cap, sizeof(*z->st));
    z->sent_ms = calloc(cap, sizeof(*z->sent_ms));
    z->tent = calloc(z->window, sizeof(*z->tent));
    z->cur = calloc(cap, sizeof(*z->cur));
    if (!z->ds || !z->items || !z->st || !z->sent_ms || !z->tent || !z->cur) {
        return -ENOMEM;
    }
    for (size_t j = 0; j < z->nds; j++) {
        z->ds[j].endpoint = cfg->zmq_endpoints.items[j];
        z->ds[j].fifo = calloc(z->window, sizeof(*z->ds[j].fifo));
        if (!z->ds[j].fifo) {
            return -ENOMEM;
        }
        err = dsock_open(z, &z->ds[j]);
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

static void sink_zmq_dealer_close(void *state);

static int
sink_zmq_dealer_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    struct sink_zmq_dealer *z;
    int err;

    if (!env->zctx) {
        return -EINVAL;
    }
    z = calloc(1, sizeof(*z));
    if (!z) {
        return -ENOMEM;
    }
    z->done = done;
    z->arg = arg;
    z->cfg = env->cfg;
    z->zctx = env->zctx;
    z->is_cancelled = env->is_cancelled;
    err = dealer_alloc(z);
    if (err < 0) {
        sink_zmq_dealer_close(z);
        return err;
    }
    *state = z;
    return 0;
}

static void
sink_zmq_dealer_close(void *state)
{
    struct sink_zmq_dealer *z = state;

    if (!z) {
        return;
    }
    for (size_t j = 0; z->ds && j < z->nds; j++) {
        dsock_close(&z->ds[j]);
        free(z->ds[j].fifo);
    }
    if (z->refused > 0 || z->resent > 0) {
        log_info("sink zmq: %" PRIu64 " messages refused downstream (dead-lettered), "
                 "%" PRIu64 " resent",
                 z->refused, z->resent);
    }
    /* Every record in it was synced when it was counted: this only closes it. */
    (void)spool_writer_commit(z->dl);
    free(z->ds);
    free(z->items);
    free(z->st);
    free(z->sent_ms);
    free(z->tent);
    free(z->cur);
    free(z);
}

const struct sink_ops sink_zmq_dealer_ops = {
    .name = "zmq",
    .open = sink_zmq_dealer_open,
    .submit = sink_zmq_dealer_submit,
    .poll = sink_zmq_poll,
    .cancel = sink_zmq_cancel,
    .reopen = sink_zmq_reopen,
    .close = sink_zmq_dealer_close,
};
