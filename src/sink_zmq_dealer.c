/*
 * sink_zmq_dealer.c - the forwarding sink in zmq.mode = dealer: messages go
 * on to a downstream zpiped that acknowledges each one (zpiped.ini(5),
 * "[zmq]").
 *
 * One file over 700 lines: the pipelining ring, the reconnect handling and
 * the dead-letter path all keep the order of the same in-flight slots,
 * which is the argument of the notes below.
 *
 * The downstream is a zpiped in router mode, which answers every message
 * with ["", "OK"] (or ["", "ERR reason"]), in the order the messages came
 * on that connection.  Each consumer thread opens one DEALER socket per
 * endpoint (one peer per socket, so the replies of a socket come back in
 * the order its messages went out) and sends every message as
 * ["", frames...].  A message is stored, as far as this sink can know,
 * when its OK arrives (sink.h).
 *
 * Pipelining.  submit() sends the messages it is offered at once and
 * accepts those it sent; they stay in flight, in a ring of slots in
 * submission order (the sink's own copy of the pointers), across any
 * number of submit() and poll() calls, until their replies arrive.  Up to
 * `window` messages (min(zmq.sndhwm, REPLY_WINDOW_MAX)) per socket await
 * a reply at once, whatever output.batch is, spread over the sockets that
 * have a connected peer; the ring holds window x endpoints.  When every
 * socket's window is full submit() accepts nothing and the consumer polls;
 * when nothing awaits a reply and nothing could be sent (no endpoint has a
 * connected peer) it returns -EAGAIN and the consumer backs off.  Replies
 * are read by submit() and poll() alike, and the stored messages are
 * reported from the oldest: a message answered on one socket behind an
 * older one still awaiting its reply on another is held until that one is
 * known.
 *
 * A socket sends only while it has a peer: its monitor (an inproc PAIR
 * owned by the same thread, sink_zmq_link_read) reports completed and
 * failed handshakes and disconnects, and the last of them says whether the
 * peer is up.  Not ZMQ_IMMEDIATE, which would do that in libzmq: with it, libzmq
 * 4.3 drops the pipe of a lost connection at once, even between the two
 * frames of a reply this socket is reading, and then aborts the process
 * (assertion "!_more" in fq.cpp).  A refused handshake makes libzmq give
 * the connection up for good; the socket is made anew SINK_ZMQ_REMAKE_MS
 * later (expire()), and so is one that could not be made.
 *
 * Matching replies to messages relies on the order, so it must never see
 * the replies of one connection as those of another.  Two ways that could
 * happen, and what closes them:
 *  - The connection drops and libzmq reconnects on its own.  The messages
 *    written to the old connection that got no reply are unknown: a reply
 *    from the new connection must not be matched with them.  The monitor
 *    tells, and the socket is then closed and opened again and its
 *    unanswered messages resent.  The replies are read before the monitor
 *    is checked, and replies read in a round that sees a disconnect are
 *    dropped (their messages are resent): a reply from a new connection was
 *    queued after the disconnect event, so the check after the read sees it.
 *    A message sent between the disconnect and the check waits in libzmq
 *    and may reach the new connection before the socket is closed: it is
 *    resent all the same, and stored twice.
 *  - No reply for zmq.ack_timeout (a hung peer, a lost reply): the socket
 *    is closed (linger 0) and opened again before the resend, so a late OK
 *    from the old connection can never be read as the answer to another
 *    message.
 * A message whose reply was lost stays in flight and is resent by the sink
 * itself, before any new message, on whichever socket has a peer; it is
 * never reported SINK_RETRY for that.  Resending makes a chain
 * at-least-once across a downstream failure: the downstream may have
 * stored a message whose OK never arrived.  The window stays far below the
 * downstream's reply high-water mark (REPLY_WINDOW_MAX in reply.h), so it
 * never drops a reply for lack of room, which would shift the order.
 *
 * An ERR reply: the downstream refused the message (too large for it);
 * sending it again would be refused again and stall the pipeline.  It is
 * appended to a dead-letter file in spool_dir by a spool writer
 * (spool_dead_letter_add(): "deadletter-<ms>-<pid>-<n>.zpd", binary
 * record format).  The refusals reported together are made durable
 * together (spool_dead_letter_sync()) before they count as stored: the
 * dead-letter file is where they went.  A failed sync cuts them off the
 * file again and they stay in flight, to be written again on the next
 * call; a file that could not be cut back takes no more and the next
 * refusal opens a new one, so no torn record is ever followed by another.
 * Replay does not read those files; a human decides.  Each refusal is
 * counted and logged with its reason.  If the dead-letter file cannot be
 * written, the message stays in flight and the call returns the error; at
 * the drain deadline it is spilled like any other.
 *
 * At the drain deadline abort() reads the replies already there and
 * reports the stored messages from the oldest, then everything else in
 * flight as SINK_RETRY (spilled by the consumer), including any message
 * acknowledged behind an unacknowledged one (only possible with several
 * endpoints): that one is then delivered twice.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "reply.h"
#include "sink_zmq.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zmq_util.h"

#define SINK_ZMQ_REASON_MAX 128 /* bytes of an ERR reason kept for the log */

enum mst {
    MST_UNSENT = 0, /* its reply was lost: to send again */
    MST_SENT,       /* awaiting its reply */
    MST_OK,         /* acknowledged */
    MST_ERR,        /* refused downstream: to the dead-letter file */
    MST_DONE,       /* in the dead-letter file, not yet synced */
};

/* A message in flight. */
struct slot {
    struct msg *m;    /* borrowed from the consumer until its outcome */
    uint64_t sent_ms; /* when it was last sent */
    uint8_t st;       /* enum mst */
};

/* One DEALER socket per endpoint, with its unanswered messages. */
struct dsock {
    struct sink_zmq_link link; /* the DEALER; up: a handshake completed, no disconnect since */
    size_t *fifo;              /* slots awaiting a reply, oldest first */
    size_t head, count;        /* ring of window entries */
    bool is_full;              /* the last send found no room (this round) */
};

struct sink_zmq_dealer {
    const struct conf *cfg;
    void *zctx;
    sink_done_fn *done;
    void *done_arg;
    struct dsock *ds;
    size_t nds;
    zmq_pollitem_t *items; /* 2 per socket: the DEALER and its monitor */
    size_t window;         /* per socket */
    struct slot *slots;    /* ring of the messages in flight, in submission order */
    size_t cap;            /* window x endpoints */
    size_t head, count;    /* the oldest slot in flight; how many are */
    size_t unsent;         /* slots in MST_UNSENT */
    uint64_t reported;     /* messages reported, in all */
    size_t enough;         /* outcomes that end a poll() early: min(batch, window / 2) */
    uint8_t *tent;         /* replies of one round, before they are applied */
    struct spool_dead_letter dl; /* the dead-letter file, opened on the first refusal */
    uint64_t refused;      /* ERR replies, in all */
    uint64_t resent;       /* messages sent again */
    uint64_t refused_log_ms;
    char reason[SINK_ZMQ_REASON_MAX]; /* the last ERR reason */
};

/*
 * Opens d's DEALER and its monitor and connects it; on error d is closed,
 * and expire() tries again SINK_ZMQ_REMAKE_MS later.  Linger 0: what is
 * unsent is resent or spilled.
 */
static int
dsock_open(struct sink_zmq_dealer *z, struct dsock *d)
{
    d->head = 0;
    d->count = 0;
    d->is_full = false;
    return sink_zmq_link_open(&d->link, z->zctx, z->cfg, ZMQ_DEALER, 0, false);
}

/*
 * Forgets the connection of d: closes and reopens its socket and marks its
 * unanswered messages for resending.  A reopen failure leaves d closed; the
 * next round tries again.
 */
static void
dsock_reset(struct sink_zmq_dealer *z, struct dsock *d)
{
    for (size_t k = 0; k < d->count; k++) {
        z->slots[d->fifo[(d->head + k) % z->window]].st = MST_UNSENT;
    }
    z->unsent += d->count;
    z->resent += d->count;
    sink_zmq_link_close(&d->link);
    (void)dsock_open(z, d);
}

/*
 * Reads d's replies (the reason of the last ERR in z->reason) and applies
 * them to the messages awaiting one, unless the connection dropped meanwhile
 * (then d is reset; see the top comment).
 */
static void
dsock_collect(struct sink_zmq_dealer *z, struct dsock *d)
{
    size_t k = 0;
    int r = 0;

    if (!d->link.sock) {
        return;
    }
    while (k < d->count) {
        r = reply_recv(d->link.sock, z->reason, sizeof(z->reason));
        if (r <= 0) {
            break;
        }
        z->tent[k++] = r == REPLY_OK ? MST_OK : MST_ERR;
    }
    if (r >= 0 && k == d->count) {
        /* One more than awaited is an error. */
        r = reply_recv(d->link.sock, z->reason, sizeof(z->reason));
        if (r > 0) {
            r = -EPROTO;
        }
    }
    if (r < 0) {
        char ebuf[128];

        log_warning(
            "sink zmq: %s: reply: %s: reconnecting, resending %zu messages", d->link.endpoint,
            r == -EPROTO ? "not OK or ERR" : zmq_util_strerror(-r, ebuf, sizeof(ebuf)), d->count);
        dsock_reset(z, d);
        return;
    }
    if (sink_zmq_link_read(&d->link) && d->count > 0) {
        log_info("sink zmq: %s: connection lost with %zu messages unacknowledged: resending",
                 d->link.endpoint, d->count);
        dsock_reset(z, d);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        z->slots[d->fifo[d->head]].st = z->tent[i];
        if (z->tent[i] == MST_ERR) {
            uint64_t now = util_now_ms();

            z->refused++;
            stats_sink_error(STATS_SINK_ERROR_REFUSED);
            /* One line per second at most: a downstream may refuse them all. */
            if (z->refused == 1 || now - z->refused_log_ms >= 1000) {
                log_warning("sink zmq: %s refused a message (%s; %" PRIu64 " refused so far): "
                            "it goes to the dead-letter file",
                            d->link.endpoint, z->reason, z->refused);
                z->refused_log_ms = now;
            }
        }
        d->head = (d->head + 1) % z->window;
        d->count--;
    }
}

/* Whether a message in flight was sent and awaits its reply. */
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

/*
 * Reopens the sockets that are closed (SINK_ZMQ_REMAKE_MS after the last
 * try), and resets those whose oldest unanswered message is older than
 * ack_timeout and those whose handshake the downstream refused
 * (sink_zmq_link_remake_ms).
 */
static void
expire(struct sink_zmq_dealer *z, uint64_t now)
{
    for (size_t j = 0; j < z->nds; j++) {
        struct dsock *d = &z->ds[j];

        if (now >= sink_zmq_link_remake_ms(&d->link)) {
            if (!d->link.sock) {
                log_debug("sink zmq: %s: opening the socket again", d->link.endpoint);
                (void)dsock_open(z, d);
            } else {
                log_debug("sink zmq: %s: handshake refused: making the socket anew",
                          d->link.endpoint);
                dsock_reset(z, d);
            }
            continue;
        }
        if (!d->link.sock) {
            continue;
        }
        if (d->count > 0 && now - z->slots[d->fifo[d->head]].sent_ms >= z->cfg->zmq_ack_timeout) {
            log_warning("sink zmq: %s: no reply within %" PRIu64 " ms: reconnecting, "
                        "resending %zu messages",
                        d->link.endpoint, z->cfg->zmq_ack_timeout, d->count);
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

        if (d->link.sock && d->link.is_up && !d->is_full && d->count < z->window &&
            (!best || d->count < best->count)) {
            best = d;
        }
    }
    return best;
}

/*
 * Sends the message of slot idx on the socket that pick() chooses.
 * Returns 1 if one took it, 0 if none could (no peer, or every window
 * full), or a negative errno (logged).
 */
static int
send_slot(struct sink_zmq_dealer *z, size_t idx, uint64_t now)
{
    struct slot *s = &z->slots[idx];
    struct dsock *d;

    while ((d = pick(z)) != NULL) {
        int err = sink_zmq_send(d->link.sock, s->m, true);

        if (err == 0) {
            d->fifo[(d->head + d->count) % z->window] = idx;
            d->count++;
            s->st = MST_SENT;
            s->sent_ms = now;
            return 1;
        }
        if (err != -EAGAIN) {
            char ebuf[128];

            log_error("sink zmq: send to %s: %s", d->link.endpoint,
                      zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
            return err;
        }
        d->is_full = true; /* its HWM is full */
    }
    return 0;
}

/* Sends the messages whose reply was lost again, oldest first, while a socket has room. */
static int
resend(struct sink_zmq_dealer *z, uint64_t now)
{
    for (size_t k = 0; k < z->count && z->unsent > 0; k++) {
        size_t idx = (z->head + k) % z->cap;
        int r;

        if (z->slots[idx].st != MST_UNSENT) {
            continue;
        }
        r = send_slot(z, idx, now);
        if (r <= 0) {
            return r;
        }
        z->unsent--;
    }
    return 0;
}

/*
 * Reports the stored messages from the oldest in flight: acknowledged, or
 * refused and then made durable in the dead-letter file.  Returns 0 or the
 * dead-letter file's error (those messages stay in flight).
 */
static int
report_stored(struct sink_zmq_dealer *z)
{
    size_t n = 0;
    int err = 0, sync_err;

    for (; n < z->count; n++) {
        struct slot *s = &z->slots[(z->head + n) % z->cap];

        if (s->st == MST_ERR) {
            err = spool_dead_letter_add(&z->dl, s->m);
            if (err < 0) {
                break;
            }
            s->st = MST_DONE;
        } else if (s->st != MST_OK) {
            break;
        }
    }
    sync_err = spool_dead_letter_sync(&z->dl);
    if (sync_err < 0) {
        /* Not durable, and cut off the file: those messages stay in
         * flight, refused, and are written again on the next call;
         * the acknowledged ones before the first of them are stored. */
        size_t first = n;

        for (size_t k = 0; k < n; k++) {
            struct slot *s = &z->slots[(z->head + k) % z->cap];

            if (s->st == MST_DONE) {
                s->st = MST_ERR;
                first = first < k ? first : k;
            }
        }
        n = first;
        err = sync_err;
    }
    if (n > 0) {
        z->head = (z->head + n) % z->cap;
        z->count -= n;
        z->reported += n;
        z->done(z->done_arg, n, SINK_STORED, 0);
    }
    return err;
}

/*
 * One round, without waiting: reads the replies, reports what is stored,
 * resets the sockets past ack_timeout and resends what they had
 * unanswered.  Returns 0 or the first negative errno met.
 */
static int
step(struct sink_zmq_dealer *z, uint64_t now)
{
    int err, send_err;

    for (size_t j = 0; j < z->nds; j++) {
        z->ds[j].is_full = false;
        dsock_collect(z, &z->ds[j]);
    }
    err = report_stored(z);
    expire(z, now);
    send_err = resend(z, now);
    return err < 0 ? err : send_err;
}

static int
sink_zmq_dealer_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct sink_zmq_dealer *z = state;
    uint64_t now = util_now_ms();
    int err, r = 0;

    *accepted = 0;
    err = step(z, now);
    /* What must be resent goes first: it is older than anything offered. */
    for (size_t i = 0; i < n && z->unsent == 0 && z->count < z->cap; i++) {
        size_t idx = (z->head + z->count) % z->cap;

        z->slots[idx].m = msgs[i];
        r = send_slot(z, idx, now);
        if (r <= 0) {
            break;
        }
        z->count++;
        (*accepted)++;
    }
    if (err == 0 && r < 0) {
        err = r;
    }
    if (err == 0 && *accepted == 0 && !awaits_reply(z)) {
        err = -EAGAIN; /* nothing moves until a peer connects: the consumer backs off */
    }
    return err;
}

/* The wait until due, at most wait: 0 if due is past. */
static uint64_t
until(uint64_t due, uint64_t now, uint64_t wait)
{
    return due <= now ? 0 : due - now < wait ? due - now : wait;
}

static int
sink_zmq_dealer_poll(void *state, int timeout_ms)
{
    struct sink_zmq_dealer *z = state;
    uint64_t now = util_now_ms(), deadline = now + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    uint64_t start = z->reported;

    for (;;) {
        uint64_t wait = deadline > now ? deadline - now : 0;
        size_t nitems = 0;
        int err = step(z, now);

        /* Each outcome is reported as soon as it is read; returning for
         * fewer than z->enough would only wake the consumer to refill a
         * message or two at a time, a round of system calls each. */
        if (err < 0 || z->reported - start >= z->enough || z->count == 0 || wait == 0) {
            return err;
        }
        for (size_t j = 0; j < z->nds; j++) {
            struct dsock *d = &z->ds[j];

            /* Woken for expire()'s work on d too: a remake, an ack_timeout. */
            wait = until(sink_zmq_link_remake_ms(&d->link), now, wait);
            if (!d->link.sock) {
                continue;
            }
            if (d->count > 0) {
                wait = until(z->slots[d->fifo[d->head]].sent_ms + z->cfg->zmq_ack_timeout, now,
                             wait);
            }
            z->items[nitems++] = (zmq_pollitem_t){
                .socket = d->link.sock,
                .events = (short)(ZMQ_POLLIN | (d->is_full ? ZMQ_POLLOUT : 0)),
            };
            z->items[nitems++] = (zmq_pollitem_t){ .socket = d->link.mon, .events = ZMQ_POLLIN };
        }
        if (zmq_poll(z->items, (int)nitems, (long)wait) < 0 && zmq_errno() != EINTR) {
            return -zmq_errno();
        }
        now = util_now_ms();
    }
}

static void
sink_zmq_dealer_abort(void *state)
{
    struct sink_zmq_dealer *z = state;
    size_t n;

    for (size_t j = 0; j < z->nds; j++) {
        dsock_collect(z, &z->ds[j]);
    }
    (void)report_stored(z);
    n = z->count;
    if (n == 0) {
        return;
    }
    log_info("sink zmq: drain deadline: %zu messages in flight without their OK go to the spill "
             "file",
             n);
    /* The sockets close at once (linger 0): what libzmq still holds of
     * those messages is dropped, not delivered besides being spilled.  The
     * consumer calls nothing but close() after this. */
    for (size_t j = 0; j < z->nds; j++) {
        z->ds[j].head = 0;
        z->ds[j].count = 0;
        sink_zmq_link_close(&z->ds[j].link);
    }
    z->head = 0;
    z->count = 0;
    z->unsent = 0;
    z->reported += n;
    z->done(z->done_arg, n, SINK_RETRY, 0);
}

/* Allocates z's arrays and opens its sockets. */
static int
dealer_alloc(struct sink_zmq_dealer *z)
{
    const struct conf *cfg = z->cfg;
    int err;

    z->window = cfg->zmq_sndhwm < REPLY_WINDOW_MAX ? (size_t)cfg->zmq_sndhwm : REPLY_WINDOW_MAX;
    z->nds = cfg->zmq_endpoints.n;
    z->cap = z->window * z->nds;
    z->enough = z->window / 2 < cfg->output_batch ? z->window / 2 : (size_t)cfg->output_batch;
    z->enough = z->enough > 0 ? z->enough : 1;
    z->ds = calloc(z->nds, sizeof(*z->ds));
    z->items = calloc(2 * z->nds, sizeof(*z->items));
    z->slots = calloc(z->cap, sizeof(*z->slots));
    z->tent = calloc(z->window, sizeof(*z->tent));
    if (!z->ds || !z->items || !z->slots || !z->tent) {
        return -ENOMEM;
    }
    for (size_t j = 0; j < z->nds; j++) {
        z->ds[j].link.endpoint = cfg->zmq_endpoints.items[j];
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
    z->cfg = env->cfg;
    z->zctx = env->zctx;
    z->done = done;
    z->done_arg = arg;
    spool_dead_letter_init(&z->dl, z->cfg->daemon_spool_dir, "sink zmq",
                           "messages refused downstream");
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
        sink_zmq_link_close(&z->ds[j].link);
        free(z->ds[j].fifo);
    }
    if (z->refused > 0 || z->resent > 0) {
        log_info("sink zmq: %" PRIu64 " messages refused downstream (dead-lettered), "
                 "%" PRIu64 " resent",
                 z->refused, z->resent);
    }
    spool_dead_letter_fini(&z->dl);
    free(z->ds);
    free(z->items);
    free(z->slots);
    free(z->tent);
    free(z);
}

const struct sink_ops sink_zmq_dealer_ops = {
    .name = "zmq",
    .open = sink_zmq_dealer_open,
    .submit = sink_zmq_dealer_submit,
    .poll = sink_zmq_dealer_poll,
    .abort = sink_zmq_dealer_abort,
    .reopen = sink_zmq_reopen,
    .close = sink_zmq_dealer_close,
};
