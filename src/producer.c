/*
 * producer.c - the producer pool.
 *
 * One file over 700 lines: reading a socket, the batch push and the ack
 * ring are one thread's loop over one struct producer; split, every part
 * would reach into the others' fields.
 *
 * Design.  input.threads threads; thread i owns the endpoints i, i+n, ...
 * Each thread creates, binds, reads and closes its own sockets: a ZeroMQ
 * socket never crosses threads.  A thread zmq_polls its sockets and the
 * pool's stop eventfd with a 100 ms timeout, so it checks in with the
 * watchdog at least that often.  A message is read whole (all frames),
 * its cost (msg_cost(), frames included) checked against max_message_size
 * as the frames come, and copied into one struct msg, carved from the
 * thread's slab (msg_create_in: no malloc per message).  What one
 * burst read from a socket is pushed as a batch (queue_push_batch: one lock
 * and one wakeup for all of it); it blocks while the queue is full, in
 * 100 ms steps, and while it blocks the thread reads nothing: ZeroMQ's
 * receive HWM fills and the senders block.  That is the backpressure, and
 * no message is dropped for it.
 *
 * Drain.  The main thread writes the stop eventfd once; every producer
 * sees it (it is never read, so it stays readable), keeps reading until its
 * sockets have been quiet for 100 ms or drain_input has passed, then stops
 * reading and says so (reading drops, the main thread is woken).  The queue
 * stays open until every producer has stopped reading, so a blocked push
 * always completes while consumers run: a producer can never wait on a
 * queue that nobody empties.  With ack = stored the producer then keeps its
 * sockets open, reading nothing, and sends the replies of its ring as they
 * become done, until the ring is empty or producer_pool_finish() says the
 * consumers have all exited (what they never stored gets no OK); only then
 * does it close its sockets (with a linger, for the last replies) and exit.
 * With ack = queued the ring is always empty and it closes at once.
 * Sockets are not unbound first: libzmq drops the connections, and the
 * messages buffered in them, on unbind.
 *
 * Router mode.  The first frame is the routing id, then an optional empty
 * delimiter (only when more frames follow), then the payload.  The reply
 * carries the same envelope, and is sent after the push (OK) or instead of
 * it (ERR), in arrival order since one thread serves each socket.
 *
 * ack = stored.  The OK waits until a consumer has the message stored by
 * the sink or durably spilled.  Each producer keeps a reply ring: one slot
 * per message read, in arrival order across all its sockets, holding the
 * routing id (moved from the frame, not copied), whether a delimiter came
 * with it, and its socket; a queued message's m->ack points at its slot.
 * A refused message takes a slot too, done at once with its ERR, so that
 * the replies of a connection keep the arrival order.  The producer sends
 * the replies of the done prefix of the ring, oldest first, and only those:
 * a slot waiting for its sink holds back the replies after it.
 *
 * The ring has queue.capacity + output.threads * output.batch slots: a
 * slot is busy from the read until the reply is sent, and the messages
 * waiting to be stored are in the queue (at most queue.capacity) or in a
 * consumer's batch (at most output.batch each), so while the sink keeps up
 * one producer fills its ring only when its own messages fill the whole
 * pipeline.  Slots already done behind one that waits (a batch stuck in a
 * slow sink call while other consumers go on) hold the ring too: the order
 * of the replies costs that much pipelining, bounded by the ring.  A full
 * ring stops the producer reading its sockets until replies go out, the
 * same backpressure as a full queue.  That cannot deadlock: slots are freed
 * by consumers storing messages, which needs nothing from the producer.  A
 * slot is 96 bytes, so the default queue costs about 6 MiB per producer,
 * allocated only with ack = stored; ack = queued has no ring, and its path
 * is unchanged but for one compare per message read.
 *
 * Waking the producer.  A consumer marks the slot done (release), then
 * exchanges the producer's is_ack_pending flag to true, and writes the
 * producer's ack eventfd (which it zmq_polls) only if the flag was false:
 * a burst of completions costs one write.  The producer, woken, first reads
 * (empties) the eventfd, then exchanges the flag to false, then scans the
 * ring.  No completion is missed.  Take a consumer's exchange C and the
 * producer's clearing exchange P; both are read-modify-writes of one
 * atomic, so one comes first in its modification order.  If C is before P,
 * P reads C's value or a later one in C's release sequence, so the mark
 * happens before P and the scan after P sees it.  If P is before C, C
 * reads false from P (then C's consumer writes the eventfd, which makes the
 * producer poll readable after P and scan again, after a later P' that
 * follows C), or reads true from another consumer's C2 that came after P
 * (C2 writes the eventfd, and the producer's next P' follows C2 and C: every
 * set stays until a P clears it).  The eventfd is read before P, never
 * after: a read after P could swallow the write of a C that set the flag
 * after P, and the flag would then stay true with no write to come, so
 * every later consumer would skip its write.  A write that lands after the
 * read only wakes the producer once more for nothing.
 *
 * Frame cap.  Every input socket has ZMQ_MAXMSGSIZE = max_message_size +
 * max(max_message_size, 16 MiB), clamped to INT64_MAX (input_frame_cap()).
 * libzmq allocates a frame whole as soon as it has read its size, so
 * without a cap one peer announcing a 2^40-byte frame makes it reserve that
 * and buffer whatever follows.  A frame over the cap is never read: libzmq
 * drops that connection (and whatever it had buffered for it) at once, the
 * message is never accepted, counted or answered.  Below the cap an
 * oversized message is read and refused as above (counted as rejected, ERR
 * in router mode), so a sender that is merely over the limit still hears
 * why.  The cap is per frame: a multipart message whose frames are each
 * under it but together over max_message_size is read and refused as above.
 * tests/integration/150-hostile-tcp.sh checks the cap and hostile peers.
 * What the cap cannot bound: libzmq hands a multipart message over only
 * once its last frame has arrived, and keeps the frames before it (64
 * bytes each, plus their bytes) however many there are; no libzmq 4.3
 * option limits that.  A peer that never ends its message makes libzmq
 * hold without limit, which is why an input open to untrusted peers needs
 * CURVE (README.md, man/zpiped.8).
 */
#include "config.h"
#include "producer.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "heartbeat.h"
#include "log.h"
#include "reply.h"
#include "sockact.h"
#include "util.h"
#include "worker.h"
#include "zmq_util.h"

#define PRODUCER_POLL_MS  100    /* longest wait: watchdog check-in period */
#define PRODUCER_QUIET_MS 100    /* drain: a socket this long idle is done */
#define PRODUCER_BURST    256    /* messages read from one socket per poll */
/* Bytes (msg_cost()) read from one socket per poll: while the queue is full
 * a burst waits outside it, uncounted by queue.max_bytes, so it stays small
 * (a burst ends at the first message that reaches this). */
#define PRODUCER_BURST_BYTES (1u << 20)
#define ROUTER_LINGER_MS  1000   /* time for the last replies at close */
#define FRAME_CAP_SLACK   (16u << 20) /* see input_frame_cap() */
/* Scratch frames kept between messages (64 KiB): a message of more frames
 * grows the table for itself only, so one burst of many-frame messages does
 * not pin up to MSG_FRAMES_MAX of them (4 MiB) for the producer's life. */
#define PRODUCER_PARTS_KEEP 1024

/*
 * One reply owed, in the ring (ack = stored).  Written by the producer
 * thread only, except is_done, which the consumer that stores the message
 * sets.  ack is the first member: m->ack points at it, and ack_stored()
 * casts it back.
 */
struct ack_slot {
    struct msg_ack ack;
    struct producer *pr;  /* set once, at creation */
    const char *why;      /* NULL for OK, else the reason of the ERR */
    _Atomic bool is_done; /* stored (or refused: why set); the reply may go */
    bool has_delim;       /* the empty delimiter came after the routing id */
    uint32_t sock;        /* index in the producer's socks */
    zmq_msg_t id;         /* the routing id, moved from the message */
};

static void ack_stored(struct msg_ack *a);

struct producer {
    struct producer_pool *pool;
    unsigned id;
    pthread_t tid;
    bool is_started;
    struct heartbeat *hb;
    _Atomic bool has_exited; /* set by the thread as it ends */
    size_t nsocks;
    void **socks;           /* owned by the thread while it runs */
    const char **endpoints; /* borrowed from the config */
    zmq_msg_t *parts;       /* scratch frames of the message being read */
    size_t parts_cap;
    struct msg *batch[PRODUCER_BURST]; /* read from one socket, not queued yet */
    size_t nbatch;
    size_t batch_bytes;     /* cost (msg_cost()) of batch[0..nbatch) */
    struct msg_arena arena; /* the slab its messages are carved from */
    zmq_msg_t (*envs)[2];   /* router: batch[i]'s envelope frames, for its OK */
    unsigned char env_n[PRODUCER_BURST]; /* router: envelope frames of batch[i] */
    struct ack_slot *ring;  /* ack = stored: the replies owed, or NULL */
    size_t ring_cap;        /* slots; SIZE_MAX without a ring (never full) */
    size_t ring_head;       /* the oldest slot whose reply is not sent */
    size_t ring_len;        /* slots in use from ring_head on */
    int ack_fd;             /* eventfd: a slot is done (ack = stored), or -1 */
    uint64_t dropped_log_ms; /* when a reply dropped for a full HWM was last logged */
    _Alignas(64) _Atomic uint64_t received; /* written by the thread only */
    _Atomic uint64_t rejected;
    _Alignas(64) _Atomic bool is_ack_pending; /* ack_fd written, not yet seen */
};

struct producer_pool {
    const struct conf *cfg;
    void *zctx;
    queue_t *q;
    producer_exit_fn *on_exit;
    void *exit_arg;
    int stop_fd; /* eventfd, readable once the drain begins */
    struct worker_barrier ready;
    _Atomic unsigned reading;     /* threads that have not stopped reading */
    _Atomic unsigned running;     /* threads that have not exited */
    _Atomic bool is_finishing;    /* the consumers have exited: reply and close */
    unsigned n;
    struct producer *producers;
};

/* The producer's reply ring and its ack eventfd (ack = stored); see "ack = stored". */
static int
ring_create(struct producer *pr)
{
    const struct conf *cfg = pr->pool->cfg;

    pr->ring_cap = (size_t)(cfg->queue_capacity + cfg->output_threads * cfg->output_batch);
    pr->ring = calloc(pr->ring_cap, sizeof(*pr->ring));
    if (!pr->ring) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < pr->ring_cap; i++) {
        pr->ring[i].ack.stored = ack_stored;
        pr->ring[i].pr = pr;
    }
    pr->ack_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return pr->ack_fd < 0 ? -errno : 0;
}

int
producer_pool_create(producer_pool_t **out, const struct conf *cfg, void *zctx, queue_t *q,
                     producer_exit_fn *on_exit, void *arg)
{
    struct producer_pool *p;
    unsigned n = (unsigned)cfg->input_threads;
    int err;

    p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->cfg = cfg;
    p->zctx = zctx;
    p->q = q;
    p->on_exit = on_exit;
    p->exit_arg = arg;
    p->n = n;
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->stop_fd < 0) {
        err = -errno;
        goto fail;
    }
    p->producers = calloc(n, sizeof(*p->producers));
    if (!p->producers) {
        err = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < n; i++) {
        struct producer *pr = &p->producers[i];
        size_t k = 0;

        pr->pool = p;
        pr->id = i;
        pr->ack_fd = -1;
        pr->ring_cap = SIZE_MAX;
        if (cfg->input_mode == CONF_INMODE_ROUTER && cfg->input_ack == CONF_ACK_STORED) {
            err = ring_create(pr);
            if (err < 0) {
                goto fail;
            }
        }
        pr->nsocks = (cfg->input_endpoints.n - i + n - 1) / n;
        pr->socks = calloc(pr->nsocks, sizeof(*pr->socks));
        pr->endpoints = calloc(pr->nsocks, sizeof(*pr->endpoints));
        if (!pr->socks || !pr->endpoints) {
            err = -ENOMEM;
            goto fail;
        }
        for (size_t e = i; e < cfg->input_endpoints.n; e += n) {
            pr->endpoints[k++] = cfg->input_endpoints.items[e];
        }
    }
    *out = p;
    return 0;
fail:
    producer_pool_destroy(p);
    return err;
}

void
producer_pool_destroy(producer_pool_t *p)
{
    if (!p) {
        return;
    }
    for (unsigned i = 0; p->producers && i < p->n; i++) {
        free(p->producers[i].socks);
        free(p->producers[i].endpoints);
        /* Freed here, not when the thread exits: after a failed start
         * consumers may still tell slots of a producer that has exited.
         * (A producer that never got a ring has ack_fd 0 from calloc.) */
        if (p->producers[i].ring && p->producers[i].ack_fd >= 0) {
            close(p->producers[i].ack_fd);
        }
        free(p->producers[i].ring);
    }
    free(p->producers);
    if (p->stop_fd >= 0) {
        close(p->stop_fd);
    }
    free(p);
}

/* ZMQ_MAXMSGSIZE for the input sockets: see "Frame cap" above. */
static int64_t
input_frame_cap(uint64_t max_size)
{
    uint64_t slack = max_size > FRAME_CAP_SLACK ? max_size : FRAME_CAP_SLACK;

    if (slack > (uint64_t)INT64_MAX || max_size > (uint64_t)INT64_MAX - slack) {
        return INT64_MAX;
    }
    return (int64_t)(max_size + slack);
}

/*
 * With input.curve_secret_key set, makes s a CURVE server whose clients the
 * ZAP handler (zap.c) must let in; see README.md, "Security".  Before bind.
 */
static int
input_set_curve(void *s, const struct conf *cfg, const char *endpoint)
{
    char why[CURVE_ERR_MAX];
    int err;

    if (cfg->input_curve_secret_key[0] == '\0') {
        return 0;
    }
    err = curve_server_setup(s, cfg->input_curve_secret_key, why, sizeof(why));
    if (err < 0) {
        log_error("input: CURVE on %s: %s", endpoint, why);
    }
    return err;
}

static int
open_sockets(struct producer *pr)
{
    const struct conf *cfg = pr->pool->cfg;
    bool is_router = cfg->input_mode == CONF_INMODE_ROUTER;
    char ebuf[128];
    int err;

    for (size_t i = 0; i < pr->nsocks; i++) {
        void *s = zmq_socket(pr->pool->zctx, is_router ? ZMQ_ROUTER : ZMQ_PULL);
        int fd = sockact_fd(pr->endpoints[i]);

        if (!s) {
            err = -errno;
            log_error("input: socket for %s: %s", pr->endpoints[i],
                      util_strerror(-err, ebuf, sizeof(ebuf)));
            return err;
        }
        pr->socks[i] = s;
        err = zmq_util_set_int(s, ZMQ_RCVHWM, (int)cfg->input_rcvhwm);
        if (!err) {
            err = zmq_util_set_int(s, ZMQ_LINGER, is_router ? ROUTER_LINGER_MS : 0);
        }
        if (!err) {
            err =
                zmq_util_set_int64(s, ZMQ_MAXMSGSIZE, input_frame_cap(cfg->input_max_message_size));
        }
        if (!err && is_router) {
            err = zmq_util_set_int(s, ZMQ_SNDHWM, REPLY_ROUTER_SNDHWM);
        }
        if (!err && is_router) {
            err = zmq_util_set_int(s, ZMQ_ROUTER_MANDATORY, 1);
        }
        /* Socket activation: zmq_bind adopts the listening socket that
         * systemd passed for this endpoint instead of binding one. */
        if (!err && fd >= 0) {
            err = zmq_util_set_int(s, ZMQ_USE_FD, fd);
        }
        if (err < 0) {
            log_error("input: setsockopt on %s: %s", pr->endpoints[i],
                      util_strerror(-err, ebuf, sizeof(ebuf)));
            return err;
        }
        if ((err = input_set_curve(s, cfg, pr->endpoints[i])) < 0) {
            return err;
        }
        if (zmq_bind(s, pr->endpoints[i]) < 0) {
            err = -errno;
            log_error("input: bind %s: %s", pr->endpoints[i],
                      zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
            return err;
        }
        log_info("input: listening on %s (%s%s%s)", pr->endpoints[i],
                 conf_inmode_name(cfg->input_mode), fd >= 0 ? ", socket-activated" : "",
                 cfg->input_curve_secret_key[0] != '\0' ? ", CURVE" : "");
    }
    return 0;
}

static void
close_sockets(struct producer *pr)
{
    for (size_t i = 0; i < pr->nsocks; i++) {
        if (pr->socks[i]) {
            zmq_close(pr->socks[i]);
        }
        pr->socks[i] = NULL;
    }
}

static int
grow_parts(struct producer *pr, size_t want)
{
    size_t cap = pr->parts_cap ? pr->parts_cap : 8;
    zmq_msg_t *parts;

    while (cap < want) {
        cap *= 2;
    }
    parts = realloc(pr->parts, cap * sizeof(*parts));
    if (!parts) {
        return -ENOMEM;
    }
    pr->parts = parts;
    pr->parts_cap = cap;
    return 0;
}

/*
 * A reply that could not be sent.  A peer that is gone (EHOSTUNREACH) is
 * routine; one that left REPLY_ROUTER_SNDHWM replies unread (EAGAIN) will
 * match its later replies with the wrong messages, which the operator must
 * hear of (one line every 10 s at most per producer).
 */
static void
reply_dropped(struct producer *pr, int err)
{
    uint64_t now;

    if (err != EAGAIN) {
        log_debug("input: reply to a client dropped: errno %d", err);
        return;
    }
    now = util_now_ms();
    if (pr->dropped_log_ms == 0 || now - pr->dropped_log_ms >= 10000) {
        log_warning("input: a client left %d replies unread: a reply to it was dropped, and "
                    "it will take the later ones for the wrong messages",
                    REPLY_ROUTER_SNDHWM);
        pr->dropped_log_ms = now;
    }
}

/*
 * Sends text after the env frames of envelope (the routing id and maybe the
 * delimiter), which it consumes: each is sent (libzmq takes it) or closed.
 * ROUTER_MANDATORY with DONTWAIT: a peer that is gone (EHOSTUNREACH) or not
 * reading its replies (EAGAIN) loses its reply, never the message: it is
 * queued already, and the client's retry makes it at-least-once.
 */
static void
reply(struct producer *pr, void *sock, zmq_msg_t *envelope, size_t env, const char *text)
{
    size_t i = 0;

    for (; i < env; i++) {
        if (zmq_msg_send(&envelope[i], sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            reply_dropped(pr, errno);
            break;
        }
    }
    if (i == env && zmq_send(sock, text, strlen(text), ZMQ_DONTWAIT) < 0) {
        reply_dropped(pr, errno);
    }
    for (; i < env; i++) {
        zmq_msg_close(&envelope[i]);
    }
}

/*
 * Takes the next slot of the ring (the caller checked it is not full) for
 * the reply to the message whose envelope is pr->parts[0..env), on socket
 * sock: the routing id is moved into the slot.  why is NULL for a message
 * that will be queued (OK once stored), else the reason it was refused
 * (the slot is done at once).  Producer thread.
 */
static struct ack_slot *
ring_take(struct producer *pr, size_t sock, size_t env, const char *why)
{
    size_t i = pr->ring_head + pr->ring_len++;
    struct ack_slot *slot = &pr->ring[i < pr->ring_cap ? i : i - pr->ring_cap];

    assert(pr->ring_len <= pr->ring_cap);
    slot->sock = (uint32_t)sock;
    slot->has_delim = env == 2;
    slot->why = why;
    zmq_msg_init(&slot->id);
    zmq_msg_move(&slot->id, &pr->parts[0]);
    atomic_store_explicit(&slot->is_done, why != NULL, memory_order_relaxed);
    return slot;
}

/* Sends the replies of the done prefix of the ring, in order.  Producer thread. */
static void
ring_send_done(struct producer *pr)
{
    while (pr->ring_len > 0) {
        struct ack_slot *slot = &pr->ring[pr->ring_head];
        zmq_msg_t envelope[2];
        char text[REPLY_TEXT_MAX + 1];

        if (!atomic_load_explicit(&slot->is_done, memory_order_acquire)) {
            break;
        }
        zmq_msg_init(&envelope[0]);
        zmq_msg_move(&envelope[0], &slot->id);
        zmq_msg_close(&slot->id);
        if (slot->has_delim) {
            zmq_msg_init(&envelope[1]); /* empty, as it came */
        }
        reply(pr, pr->socks[slot->sock], envelope, slot->has_delim ? 2 : 1,
              reply_text(slot->why, text, sizeof(text)));
        pr->ring_head = pr->ring_head + 1 < pr->ring_cap ? pr->ring_head + 1 : 0;
        pr->ring_len--;
    }
}

/* Closes the routing ids of the slots whose reply was never sent. */
static void
ring_drop(struct producer *pr)
{
    for (size_t k = 0; k < pr->ring_len; k++) {
        size_t i = pr->ring_head + k;

        zmq_msg_close(&pr->ring[i < pr->ring_cap ? i : i - pr->ring_cap].id);
    }
    pr->ring_len = 0;
}

/*
 * msg_ack's stored callback: the message of slot a is stored.  Any consumer
 * thread.  See "Waking the producer" above for why this order is safe.
 */
static void
ack_stored(struct msg_ack *a)
{
    struct ack_slot *slot = (struct ack_slot *)a;
    struct producer *pr = slot->pr; /* the slot may be reused once done */
    uint64_t one = 1;

    atomic_store_explicit(&slot->is_done, true, memory_order_release);
    if (!atomic_exchange_explicit(&pr->is_ack_pending, true, memory_order_acq_rel)) {
        /* Cannot fail: the counter stays far below its maximum, since the
         * producer empties it before it clears the flag. */
        ssize_t r = write(pr->ack_fd, &one, sizeof(one));

        (void)r;
    }
}

/* The producer's side of the wakeup: eventfd, then flag, then the ring. */
static void
ack_collect(struct producer *pr)
{
    uint64_t count;
    ssize_t r = read(pr->ack_fd, &count, sizeof(count)); /* -EAGAIN when empty */

    (void)r;
    atomic_exchange_explicit(&pr->is_ack_pending, false, memory_order_acq_rel);
    ring_send_done(pr);
}

/*
 * Queues the batch read from sock, waiting as long as the queue is full,
 * under one queue lock per push_batch call; received is counted there, with
 * the messages.  In router mode each message is answered OK once it is
 * queued, in arrival order, and the consumer's wakeup waits until the OKs
 * are handed to libzmq: on 2 CPUs a consumer woken first delayed them
 * (BENCHMARKS.md, "Figures behind the code").
 */
static void
flush_batch(struct producer *pr, void *sock)
{
    size_t done = 0;

    msg_id_assign(pr->batch, pr->nbatch); /* accepted now: identities in reading order */
    while (done < pr->nbatch) {
        bool is_wake_due = false;
        int r = queue_push_batch(pr->pool->q, pr->batch + done, pr->nbatch - done, PRODUCER_POLL_MS,
                                 &pr->received, pr->envs ? &is_wake_due : NULL);

        if (r == -ETIMEDOUT) {
            heartbeat_beat(pr->hb);
            if (pr->ring) {
                ring_send_done(pr); /* OKs need not wait for room in the queue */
            }
            continue;
        }
        /* The queue is closed only after every producer has been joined. */
        assert(r > 0);
        if (pr->envs) {
            for (size_t i = done; i < done + (size_t)r; i++) {
                reply(pr, sock, pr->envs[i], pr->env_n[i], REPLY_OK_TEXT);
            }
        }
        if (is_wake_due) {
            queue_wake_consumer(pr->pool->q);
        }
        done += (size_t)r;
    }
    if (pr->ring) {
        /* A refusal read after the last stored message is due now: no
         * later completion may come to send it. */
        ring_send_done(pr);
    }
    pr->nbatch = 0;
    pr->batch_bytes = 0;
}

static void
close_parts(struct producer *pr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zmq_msg_close(&pr->parts[i]);
    }
}

/*
 * Reads the frames of one message into pr->parts.  Returns the number of
 * frames kept, 0 if no message was waiting, or a negative errno.  Frames
 * past what can be kept are read and dropped, and *why says the message is
 * refused; so does a message over max_message_size.  Its size is its cost
 * (msg_cost(): the payload plus MSG_FRAME_COST for every frame after the
 * first; router mode's envelope does not count), added up frame by frame
 * as libzmq hands them over, so the frames of a message refused for its
 * frame count are dropped as they come instead of being kept first: the
 * scratch table never holds more than max_message_size of cost.
 */
static int
recv_parts(struct producer *pr, void *sock, bool is_router, const char **why)
{
    uint64_t max_size = pr->pool->cfg->input_max_message_size;
    uint64_t cost = 0;
    size_t nparts = 0, nread = 0, npayload = 0;
    int more;

    *why = NULL;
    do {
        zmq_msg_t spare, *part = &spare;
        size_t len;
        int r;

        if (!*why) {
            if (nparts == MSG_FRAMES_MAX) {
                *why = "too many frames";
            } else if (nparts == pr->parts_cap && grow_parts(pr, nparts + 1) < 0) {
                *why = "out of memory";
            } else {
                part = &pr->parts[nparts];
            }
        }
        zmq_msg_init(part);
        /* The frames of a message arrive together: only the first
         * may find nothing waiting. */
        r = zmq_msg_recv(part, sock, nread == 0 ? ZMQ_DONTWAIT : 0);
        if (r < 0) {
            int err = errno;

            zmq_msg_close(part);
            close_parts(pr, nparts);
            return nread == 0 && err == EAGAIN ? 0 : -err;
        }
        more = zmq_msg_more(part);
        /* Its size, not r: zmq_msg_recv() returns INT_MAX for a longer frame. */
        len = zmq_msg_size(part);
        /* Router mode: the routing id, then the delimiter (an empty frame
         * with more after it), are the envelope, as read_one() finds it. */
        if (!(is_router && (nread == 0 || (nread == 1 && len == 0 && more)))) {
            cost += (uint64_t)len + (npayload++ > 0 ? MSG_FRAME_COST : 0);
        }
        nread++;
        if (part == &spare) {
            zmq_msg_close(part);
        } else {
            nparts++;
        }
        /* A frame over MSG_FRAME_MAX fits no record, whatever the limit. */
        if (!*why && (cost > max_size || len > MSG_FRAME_MAX)) {
            *why = "message too large";
        }
    } while (more);
    return (int)nparts;
}

/*
 * Reads one whole message from socket si without waiting, and adds it to
 * the batch (flush_batch() queues it) or refuses it.  Router replies keep
 * the arrival order: with ack = stored each message takes the next slot of
 * the ring (the caller checked there is one); otherwise a refusal first
 * flushes the batch.  Returns 1 if a message was read, 0 if none was
 * waiting, or a negative errno on a socket error.
 */
static int
read_one(struct producer *pr, size_t si)
{
    bool is_router = pr->pool->cfg->input_mode == CONF_INMODE_ROUTER;
    void *sock = pr->socks[si];
    size_t env = 0, lens_small[16], *lens = lens_small;
    const char *why;
    struct msg *m = NULL;
    int nparts;

    nparts = recv_parts(pr, sock, is_router, &why);
    if (nparts <= 0) {
        return nparts;
    }
    if (is_router) {
        /* The routing id, then the delimiter if more frames follow. */
        env = 1;
        if (nparts > 2 && zmq_msg_size(&pr->parts[1]) == 0) {
            env = 2;
        }
        if ((size_t)nparts <= env) {
            close_parts(pr, (size_t)nparts); /* nothing to answer */
            return 1;
        }
    }

    if (!why) {
        size_t nframes = (size_t)nparts - env;

        if (nframes > 16) {
            lens = malloc(nframes * sizeof(*lens));
        }
        if (lens) {
            for (size_t i = 0; i < nframes; i++) {
                lens[i] = zmq_msg_size(&pr->parts[env + i]);
            }
            m = msg_create_in(&pr->arena, nframes, lens);
            if (lens != lens_small) {
                free(lens);
            }
        }
        if (!m) {
            why = "out of memory"; /* one message refused, not the daemon */
        }
    }
    if (m) {
        size_t b = pr->nbatch++;

        assert(b < PRODUCER_BURST);
        for (size_t i = 0; i < m->nframes; i++) {
            memcpy(msg_frame_data(m, i), zmq_msg_data(&pr->parts[env + i]), msg_frame(m, i).len);
        }
        pr->batch[b] = m;
        pr->batch_bytes += msg_cost(m);
        if (pr->ring) {
            m->ack = &ring_take(pr, si, env, NULL)->ack;
        } else if (is_router) {
            /* Moved, not copied: close_parts() closes the emptied frames. */
            for (size_t i = 0; i < env; i++) {
                zmq_msg_init(&pr->envs[b][i]);
                zmq_msg_move(&pr->envs[b][i], &pr->parts[i]);
            }
            pr->env_n[b] = (unsigned char)env;
        }
    } else {
        if (!pr->ring) {
            flush_batch(pr, sock); /* the OKs of the messages before it go first */
        }
        atomic_fetch_add_explicit(&pr->rejected, 1, memory_order_relaxed);
        log_debug("input: message refused: %s", why);
        if (pr->ring) {
            ring_take(pr, si, env, why);
        } else if (is_router) {
            char text[REPLY_TEXT_MAX + 1];
            zmq_msg_t envelope[2];

            for (size_t i = 0; i < env; i++) {
                zmq_msg_init(&envelope[i]);
                zmq_msg_move(&envelope[i], &pr->parts[i]);
            }
            reply(pr, sock, envelope, env, reply_text(why, text, sizeof(text)));
        }
    }
    close_parts(pr, (size_t)nparts);
    if (pr->parts_cap > PRODUCER_PARTS_KEEP) {
        free(pr->parts);
        pr->parts = NULL;
        pr->parts_cap = 0;
    }
    return 1;
}

/*
 * Serves the sockets until the drain is over: after the stop eventfd fires,
 * until every socket has been quiet for PRODUCER_QUIET_MS or drain_input has
 * passed.  items has room for the sockets, the ack eventfd and the stop
 * eventfd.  With ack = stored it also sends the replies that become due,
 * and while the ring is full it reads no socket (a full ring is not quiet).
 */
static void
serve(struct producer *pr, zmq_pollitem_t *items)
{
    struct producer_pool *p = pr->pool;
    size_t n = pr->nsocks, nfds = pr->ring ? 1 : 0;
    bool is_draining = false;
    uint64_t drain_end_ms = 0, last_read_ms = 0;

    for (size_t i = 0; i < n; i++) {
        items[i] = (zmq_pollitem_t){ .socket = pr->socks[i], .events = ZMQ_POLLIN };
    }
    if (pr->ring) {
        items[n] = (zmq_pollitem_t){ .fd = pr->ack_fd, .events = ZMQ_POLLIN };
    }
    items[n + nfds] = (zmq_pollitem_t){ .fd = p->stop_fd, .events = ZMQ_POLLIN };

    for (;;) {
        long timeout = PRODUCER_POLL_MS;
        int r;

        heartbeat_beat(pr->hb);
        if (pr->ring) {
            short events = pr->ring_len < pr->ring_cap ? ZMQ_POLLIN : 0;

            for (size_t i = 0; i < n; i++) {
                items[i].events = events;
            }
            if (is_draining && events == 0) {
                last_read_ms = util_now_ms();
            }
        }
        if (is_draining) {
            uint64_t now = util_now_ms();

            if (now - last_read_ms >= PRODUCER_QUIET_MS || now >= drain_end_ms) {
                break;
            }
            timeout = (long)(PRODUCER_QUIET_MS - (now - last_read_ms));
            if ((long)(drain_end_ms - now) < timeout) {
                timeout = (long)(drain_end_ms - now);
            }
        }
        r = zmq_poll(items, (int)(n + nfds + (is_draining ? 0 : 1)), timeout);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            char ebuf[128];

            log_error("input: producer %u: zmq_poll: %s", pr->id,
                      zmq_util_strerror(errno, ebuf, sizeof(ebuf)));
            break;
        }
        if (!is_draining && (items[n + nfds].revents & ZMQ_POLLIN)) {
            is_draining = true;
            last_read_ms = util_now_ms();
            drain_end_ms = last_read_ms + p->cfg->daemon_drain_input;
        }
        if (pr->ring && (items[n].revents & ZMQ_POLLIN)) {
            ack_collect(pr);
        }
        for (size_t i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) {
                continue;
            }
            /* A message read takes one slot of the ring at most: the room
             * is counted once per burst, not checked per message. */
            size_t room = pr->ring_cap - pr->ring_len;
            int k = 0, max = room < PRODUCER_BURST ? (int)room : PRODUCER_BURST;

            while (k < max && pr->batch_bytes < PRODUCER_BURST_BYTES &&
                   (r = read_one(pr, i)) > 0) {
                k++;
            }
            flush_batch(pr, pr->socks[i]);
            if (is_draining && k > 0) {
                last_read_ms = util_now_ms();
            }
            if (r < 0) {
                char ebuf[128];

                log_error("input: recv on %s: %s", pr->endpoints[i],
                          zmq_util_strerror(-r, ebuf, sizeof(ebuf)));
            }
        }
    }
}

/*
 * ack = stored, once the producer reads no more: sends the replies of the
 * ring as they become due, until every one is sent or the consumers have
 * all exited (producer_pool_finish()); then what is due is sent, and the
 * rest (never stored: lost, or behind a lost one) gets no reply.
 */
static void
answer(struct producer *pr)
{
    struct producer_pool *p = pr->pool;
    zmq_pollitem_t item = { .fd = pr->ack_fd, .events = ZMQ_POLLIN };

    while (pr->ring_len > 0 && !atomic_load(&p->is_finishing)) {
        heartbeat_beat(pr->hb);
        if (zmq_poll(&item, 1, PRODUCER_POLL_MS) < 0 && errno != EINTR) {
            char ebuf[128];

            log_error("input: producer %u: zmq_poll: %s", pr->id,
                      zmq_util_strerror(errno, ebuf, sizeof(ebuf)));
            break;
        }
        if (item.revents & ZMQ_POLLIN) {
            ack_collect(pr);
        }
    }
    ring_send_done(pr);
    if (pr->ring_len > 0) {
        log_warning("input: producer %u: %zu messages never stored get no reply", pr->id,
                    pr->ring_len);
    }
    ring_drop(pr);
}

static void *
producer_main(void *arg)
{
    struct producer *pr = arg;
    struct producer_pool *p = pr->pool;
    zmq_pollitem_t *items;
    int err;

    /* Everything that can fail happens before the barrier. */
    items = calloc(pr->nsocks + 2, sizeof(*items));
    if (items && p->cfg->input_mode == CONF_INMODE_ROUTER && !pr->ring) {
        pr->envs = calloc(PRODUCER_BURST, sizeof(*pr->envs));
    }
    err = items && (pr->envs || pr->ring || p->cfg->input_mode != CONF_INMODE_ROUTER)
              ? open_sockets(pr)
              : -ENOMEM;
    worker_barrier_arrive(&p->ready, err);
    if (err == 0) {
        serve(pr, items);
    }
    /* Everything read is queued (flush_batch): the queue may close. */
    atomic_fetch_sub(&p->reading, 1);
    p->on_exit(p->exit_arg);
    if (err == 0 && pr->ring) {
        answer(pr);
    }
    free(items);
    close_sockets(pr);
    free(pr->parts);
    pr->parts = NULL;
    free(pr->envs);
    pr->envs = NULL;
    msg_arena_release(&pr->arena);
    atomic_store(&pr->has_exited, true);
    atomic_fetch_sub(&p->running, 1);
    p->on_exit(p->exit_arg);
    return NULL;
}

int
producer_pool_start(producer_pool_t *p)
{
    int err = worker_barrier_init(&p->ready, p->n);

    if (err < 0) {
        return err;
    }
    for (unsigned i = 0; i < p->n; i++) {
        struct producer *pr = &p->producers[i];
        char name[32];

        snprintf(name, sizeof(name), "producer %u", i);
        pr->hb = heartbeat_register(name);
        /* Thread names hold 15 bytes; pools are far smaller than 10^5. */
        snprintf(name, 16, "zpipe-in-%hu", (unsigned short)i);
        atomic_fetch_add(&p->running, 1);
        atomic_fetch_add(&p->reading, 1);
        err = worker_spawn(&pr->tid, name, producer_main, pr);
        if (err < 0) {
            char ebuf[128];

            atomic_fetch_sub(&p->running, 1);
            atomic_fetch_sub(&p->reading, 1);
            log_error("input: start producer %u: %s", i, util_strerror(-err, ebuf, sizeof(ebuf)));
            worker_barrier_cancel(&p->ready, p->n - i, err);
            break;
        }
        pr->is_started = true;
    }
    err = worker_barrier_wait(&p->ready);
    worker_barrier_fini(&p->ready);
    if (err < 0) {
        producer_pool_stop(p);
    }
    return err;
}

void
producer_pool_stop(producer_pool_t *p)
{
    uint64_t one = 1;
    char ebuf[128];

    /* Level-triggered: nobody reads the eventfd, so it stays readable. */
    if (write(p->stop_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        log_error("input: signal producers to stop: %s", util_strerror(errno, ebuf, sizeof(ebuf)));
    }
}

void
producer_pool_finish(producer_pool_t *p)
{
    uint64_t one = 1;

    atomic_store(&p->is_finishing, true);
    for (unsigned i = 0; i < p->n; i++) {
        /* Wakes a producer waiting in answer() (it empties the eventfd). */
        if (p->producers[i].ring && write(p->producers[i].ack_fd, &one, sizeof(one)) < 0) {
            char ebuf[128];

            log_error("input: wake producer %u: %s", i, util_strerror(errno, ebuf, sizeof(ebuf)));
        }
    }
}

unsigned
producer_pool_reading(producer_pool_t *p)
{
    return atomic_load(&p->reading);
}

unsigned
producer_pool_running(producer_pool_t *p)
{
    return atomic_load(&p->running);
}

/* Joins every producer thread that has exited or, if is_all, every one. */
static void
join_threads(producer_pool_t *p, bool is_all)
{
    for (unsigned i = 0; i < p->n; i++) {
        struct producer *pr = &p->producers[i];

        if (!is_all && !atomic_load(&pr->has_exited)) {
            continue;
        }
        if (pr->is_started) {
            pthread_join(pr->tid, NULL);
        }
        pr->is_started = false;
        heartbeat_unregister(pr->hb);
        pr->hb = NULL;
    }
}

void
producer_pool_reap(producer_pool_t *p)
{
    join_threads(p, false);
}

void
producer_pool_join(producer_pool_t *p)
{
    join_threads(p, true);
}

void
producer_pool_counters(producer_pool_t *p, struct producer_counters *out)
{
    *out = (struct producer_counters){ 0 };
    for (unsigned i = 0; i < p->n; i++) {
        out->received += atomic_load_explicit(&p->producers[i].received, memory_order_relaxed);
        out->rejected += atomic_load_explicit(&p->producers[i].rejected, memory_order_relaxed);
    }
}
