/*
 * producer.c - the producer pool.
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
 * receive HWM fills and the senders block.  That is the backpressure, and no message is dropped for it.
 *
 * Drain.  The main thread writes the eventfd once; every producer sees it
 * (it is never read, so it stays readable), keeps reading until its sockets
 * have been quiet for 100 ms or drain_input has passed, then closes them.
 * Sockets are not unbound first: libzmq drops the connections, and the
 * messages buffered in them, on unbind.  The queue stays open until every
 * producer has exited, so a blocked push always completes while consumers
 * run: a producer can never wait on a queue that nobody empties.
 *
 * Router mode.  The first frame is the routing id, then an optional empty
 * delimiter (only when more frames follow), then the payload.  The reply
 * carries the same envelope, and is sent after the push (OK) or instead of
 * it (ERR), in arrival order since one thread serves each socket.
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

#include "heartbeat.h"
#include "log.h"
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
#define ROUTER_SNDHWM     100000 /* replies waiting for a slow reader */
#define ROUTER_LINGER_MS  1000   /* time for the last replies at close */
#define FRAME_CAP_SLACK   (16u << 20) /* see input_frame_cap() */
/* Scratch frames kept between messages (64 KiB): a message of more frames
 * grows the table for itself only, so one burst of many-frame messages does
 * not pin up to MSG_FRAMES_MAX of them (4 MiB) for the producer's life. */
#define PRODUCER_PARTS_KEEP 1024

struct producer {
    struct producer_pool *pool;
    unsigned id;
    pthread_t tid;
    bool is_started;
    struct heartbeat *hb;
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
    _Alignas(64) _Atomic uint64_t received; /* written by the thread only */
    _Atomic uint64_t rejected;
};

struct producer_pool {
    const struct conf *cfg;
    void *zctx;
    queue_t *q;
    producer_exit_fn *on_exit;
    void *exit_arg;
    int stop_fd; /* eventfd, readable once the drain begins */
    struct worker_barrier ready;
    _Atomic unsigned running;
    unsigned n;
    struct producer *producers;
};

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
            int64_t cap = input_frame_cap(cfg->input_max_message_size);

            if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cap, sizeof(cap)) < 0) {
                err = -errno;
            }
        }
        if (!err && is_router) {
            err = zmq_util_set_int(s, ZMQ_SNDHWM, ROUTER_SNDHWM);
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
        if (zmq_bind(s, pr->endpoints[i]) < 0) {
            err = -errno;
            log_error("input: bind %s: %s", pr->endpoints[i],
                      zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
            return err;
        }
        log_info("input: listening on %s (%s%s)", pr->endpoints[i],
                 conf_inmode_name(cfg->input_mode), fd >= 0 ? ", socket-activated" : "");
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
 * Sends text after the env frames of envelope (the routing id and maybe the
 * delimiter), which it consumes: each is sent (libzmq takes it) or closed.
 * ROUTER_MANDATORY with DONTWAIT: a peer that is gone (EHOSTUNREACH) or not
 * reading its replies (EAGAIN) loses its reply, never the message: it is
 * queued already, and the client's retry makes it at-least-once.
 */
static void
reply(void *sock, zmq_msg_t *envelope, size_t env, const char *text)
{
    size_t i = 0;

    for (; i < env; i++) {
        if (zmq_msg_send(&envelope[i], sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            log_debug("input: reply to a client dropped: errno %d", errno);
            break;
        }
    }
    if (i == env && zmq_send(sock, text, strlen(text), ZMQ_DONTWAIT) < 0) {
        log_debug("input: reply to a client dropped: errno %d", errno);
    }
    for (; i < env; i++) {
        zmq_msg_close(&envelope[i]);
    }
}

/*
 * Queues the batch read from sock, waiting as long as the queue is full,
 * under one queue lock per push_batch call; received is counted there, with
 * the messages.  In router mode each message is answered OK once it is
 * queued, in arrival order, and the consumer's wakeup waits until the OKs
 * are handed to libzmq: on 2 CPUs a consumer woken first delayed them
 * (p50 and p99 of the ack latency about 10 % lower this way).
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
            continue;
        }
        /* The queue is closed only after every producer has been joined. */
        assert(r > 0);
        if (pr->envs) {
            for (size_t i = done; i < done + (size_t)r; i++) {
                reply(sock, pr->envs[i], pr->env_n[i], "OK");
            }
        }
        if (is_wake_due) {
            queue_wake_consumer(pr->pool->q);
        }
        done += (size_t)r;
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
        /* Router mode: the routing id, then the delimiter (an empty frame
         * with more after it), are the envelope, as read_one() finds it. */
        if (!(is_router && (nread == 0 || (nread == 1 && r == 0 && more)))) {
            cost += (uint64_t)r + (npayload++ > 0 ? MSG_FRAME_COST : 0);
        }
        nread++;
        if (part == &spare) {
            zmq_msg_close(part);
        } else {
            nparts++;
        }
        if (!*why && cost > max_size) {
            *why = "message too large";
        }
    } while (more);
    return (int)nparts;
}

/*
 * Reads one whole message from sock without waiting, and adds it to the
 * batch (flush_batch() queues it) or refuses it; a refusal first flushes the
 * batch, so router replies keep the arrival order.  Returns 1 if a message was read, 0 if none was waiting, or a
 * negative errno on a socket error.
 */
static int
read_one(struct producer *pr, void *sock)
{
    bool is_router = pr->pool->cfg->input_mode == CONF_INMODE_ROUTER;
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
            memcpy(msg_frame_data(m, i), zmq_msg_data(&pr->parts[env + i]), m->frames[i].len);
        }
        pr->batch[b] = m;
        pr->batch_bytes += msg_cost(m);
        if (is_router) {
            /* Moved, not copied: close_parts() closes the emptied frames. */
            for (size_t i = 0; i < env; i++) {
                zmq_msg_init(&pr->envs[b][i]);
                zmq_msg_move(&pr->envs[b][i], &pr->parts[i]);
            }
            pr->env_n[b] = (unsigned char)env;
        }
    } else {
        flush_batch(pr, sock);
        atomic_fetch_add_explicit(&pr->rejected, 1, memory_order_relaxed);
        log_debug("input: message refused: %s", why);
        if (is_router) {
            char text[64];
            zmq_msg_t envelope[2];

            for (size_t i = 0; i < env; i++) {
                zmq_msg_init(&envelope[i]);
                zmq_msg_move(&envelope[i], &pr->parts[i]);
            }
            snprintf(text, sizeof(text), "ERR %s", why);
            reply(sock, envelope, env, text);
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
 * passed.
 */
static void
serve(struct producer *pr, zmq_pollitem_t *items)
{
    struct producer_pool *p = pr->pool;
    size_t n = pr->nsocks;
    bool is_draining = false;
    uint64_t drain_end_ms = 0, last_read_ms = 0;

    for (size_t i = 0; i < n; i++) {
        items[i] = (zmq_pollitem_t){ .socket = pr->socks[i], .events = ZMQ_POLLIN };
    }
    items[n] = (zmq_pollitem_t){ .fd = p->stop_fd, .events = ZMQ_POLLIN };

    for (;;) {
        long timeout = PRODUCER_POLL_MS;
        int r;

        heartbeat_beat(pr->hb);
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
        r = zmq_poll(items, (int)(is_draining ? n : n + 1), timeout);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            char ebuf[128];

            log_error("input: producer %u: zmq_poll: %s", pr->id,
                      zmq_util_strerror(errno, ebuf, sizeof(ebuf)));
            break;
        }
        if (!is_draining && (items[n].revents & ZMQ_POLLIN)) {
            is_draining = true;
            last_read_ms = util_now_ms();
            drain_end_ms = last_read_ms + p->cfg->daemon_drain_input;
        }
        for (size_t i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) {
                continue;
            }
            int k = 0;

            while (k < PRODUCER_BURST && pr->batch_bytes < PRODUCER_BURST_BYTES &&
                   (r = read_one(pr, pr->socks[i])) > 0) {
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

static void *
producer_main(void *arg)
{
    struct producer *pr = arg;
    struct producer_pool *p = pr->pool;
    zmq_pollitem_t *items;
    int err;

    /* Everything that can fail happens before the barrier. */
    items = calloc(pr->nsocks + 1, sizeof(*items));
    if (items && p->cfg->input_mode == CONF_INMODE_ROUTER) {
        pr->envs = calloc(PRODUCER_BURST, sizeof(*pr->envs));
    }
    err = items && (pr->envs || p->cfg->input_mode != CONF_INMODE_ROUTER) ? open_sockets(pr)
                                                                           : -ENOMEM;
    worker_barrier_arrive(&p->ready, err);
    if (err == 0) {
        serve(pr, items);
    }
    free(items);
    close_sockets(pr);
    free(pr->parts);
    pr->parts = NULL;
    free(pr->envs);
    pr->envs = NULL;
    msg_arena_release(&pr->arena);
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
        err = worker_spawn(&pr->tid, name, producer_main, pr);
        if (err < 0) {
            char ebuf[128];

            atomic_fetch_sub(&p->running, 1);
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

unsigned
producer_pool_running(producer_pool_t *p)
{
    return atomic_load(&p->running);
}

void
producer_pool_join(producer_pool_t *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        struct producer *pr = &p->producers[i];

        if (pr->is_started) {
            pthread_join(pr->tid, NULL);
        }
        pr->is_started = false;
        heartbeat_unregister(pr->hb);
        pr->hb = NULL;
    }
}

void
producer_pool_counters(producer_pool_t *p, uint64_t *received, uint64_t *rejected)
{
    for (unsigned i = 0; i < p->n; i++) {
        *received += atomic_load_explicit(&p->producers[i].received, memory_order_relaxed);
        *rejected += atomic_load_explicit(&p->producers[i].rejected, memory_order_relaxed);
    }
}
