/*
 * ack_latency - router-mode acknowledgement latency probe of scripts/bench.
 *
 *   ack_latency ENDPOINT RATE COUNT SIZE [CLIENTS]
 *
 * CLIENTS threads (default 1), each with a DEALER socket on a context of its
 * own, connect to a zpiped in router mode; each sends one message and waits
 * for its reply (connection set up, daemon warm).  Then, together, they send
 * COUNT messages ["", payload of SIZE bytes] in all, RATE messages/s in all,
 * each client paced on its own: its message i is due at start + i / (its
 * share of RATE).  zpiped answers the messages of a connection in
 * order (README, "Configuration"), so the n-th reply ["", "OK"] belongs to the
 * n-th message.  The latency of a message is the time from when it was due
 * to when its reply was read, so a sender that falls behind its schedule
 * (the daemon pushing back, or this process not scheduled) counts against
 * the latency instead of hiding it (no coordinated omission).
 *
 * Waiting uses ppoll on the socket's ZMQ_FD with a nanosecond timeout and a
 * timer slack of 1 ns, not zmq_poll (millisecond timeouts) and not a busy
 * loop (it would take a core from the daemon on a 2-core machine).  A client
 * sleeps at least TICK_NS (50 us) between two bursts of sends, sending what
 * fell due meanwhile together: one wake-up per message at high rates cost
 * this probe most of a core (libzmq hands every send and reply across its
 * I/O thread: context switches), which it took from the daemon.  The lag
 * this adds (at most 50 us) is part of the latency, which runs from the due
 * time.
 *
 * It prints one line of key=value pairs, latencies in microseconds:
 *   n=COUNT target=RATE achieved=MSGS_PER_S p50_us=.. p99_us=.. p999_us=.. max_us=..
 * Exit status 0; 1 on an error (a reply other than OK, none within 10 s);
 * 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include <zmq.h>

#define REPLY_TIMEOUT_NS 10000000000ull
#define TAG_MAX 32
#define MAX_CLIENTS 64
#define TICK_NS 50000u            /* shortest sleep between two send bursts */

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 10);
    return (errno != 0 || *end != '\0' || end == s || s[0] == '-') ? -1 : 0;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The p-quantile (0 < p <= 1) of sorted v[0..n), nearest rank. */
static uint64_t
quantile(const uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999);

    return v[rank == 0 ? 0 : (rank > n ? n - 1 : rank - 1)];
}

static int
events_of(void *sock)
{
    int ev = 0;
    size_t len = sizeof(ev);

    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) < 0) {
        fprintf(stderr, "ack_latency: getsockopt ZMQ_EVENTS: %s\n", zmq_strerror(errno));
        exit(1);
    }
    return ev;
}

/* Sends ["", buf[0..len)] without blocking: 1 sent, 0 would block. */
static int
send_one(void *sock, const char *buf, size_t len)
{
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (errno == EAGAIN) {
            return 0;
        }
        fprintf(stderr, "ack_latency: send: %s\n", zmq_strerror(errno));
        exit(1);
    }
    /* The first frame got in, so the second will. */
    if (zmq_send(sock, buf, len, 0) < 0) {
        fprintf(stderr, "ack_latency: send: %s\n", zmq_strerror(errno));
        exit(1);
    }
    return 1;
}

/* Reads one reply without blocking: 1 an OK, 0 none there; exits on anything else. */
static int
recv_one(void *sock)
{
    char body[64];
    int more = 0;
    size_t len = sizeof(more);
    int n = zmq_recv(sock, body, sizeof(body) - 1, ZMQ_DONTWAIT);

    if (n < 0) {
        if (errno == EAGAIN) {
            return 0;
        }
        fprintf(stderr, "ack_latency: recv: %s\n", zmq_strerror(errno));
        exit(1);
    }
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len);
    if (n != 0 || !more) {
        fprintf(stderr, "ack_latency: malformed reply (not [\"\", text])\n");
        exit(1);
    }
    n = zmq_recv(sock, body, sizeof(body) - 1, 0);
    if (n < 0) {
        fprintf(stderr, "ack_latency: recv: %s\n", zmq_strerror(errno));
        exit(1);
    }
    body[n < (int)sizeof(body) - 1 ? n : (int)sizeof(body) - 1] = '\0';
    if (strcmp(body, "OK") != 0) {
        fprintf(stderr, "ack_latency: reply '%s', not OK\n", body);
        exit(1);
    }
    return 1;
}

/* Waits until the socket's fd fires or deadline_ns (0: 10 ms) passes. */
static void
wait_fd(int fd, uint64_t deadline_ns)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    uint64_t now = now_ns();
    uint64_t wait = deadline_ns == 0 ? 10000000u : (deadline_ns > now ? deadline_ns - now : 0);
    struct timespec ts = { .tv_sec = (time_t)(wait / 1000000000u),
                           .tv_nsec = (long)(wait % 1000000000u) };

    if (wait > 0 && ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR) {
        perror("ack_latency: ppoll");
        exit(1);
    }
}

struct worker {
    pthread_t thread;
    const char *endpoint;
    uint64_t rate;                  /* this worker's messages/s */
    uint64_t count;                 /* this worker's messages */
    size_t size;
    pthread_barrier_t *line;        /* all warmed up: start together */
    uint64_t *lat;                  /* count latencies, ns */
    double secs;                    /* from the first due time to the last reply */
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t count = w->count;
    uint64_t *due = malloc(count * sizeof(*due));
    char *buf = malloc(w->size + TAG_MAX);
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int zero = 0, fd = -1;
    size_t fd_len = sizeof(fd);

    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (!due || !buf || !sock) {
        fprintf(stderr, "ack_latency: setup: %s\n", sock ? strerror(ENOMEM) : zmq_strerror(errno));
        exit(1);
    }
    memset(buf, '.', w->size + TAG_MAX);
    if (zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero)) < 0
        || zmq_getsockopt(sock, ZMQ_FD, &fd, &fd_len) < 0 || zmq_connect(sock, w->endpoint) < 0) {
        fprintf(stderr, "ack_latency: %s: %s\n", w->endpoint, zmq_strerror(errno));
        exit(1);
    }

    /* One message first: the connection is up and the daemon's path warm. */
    uint64_t deadline = now_ns() + REPLY_TIMEOUT_NS;
    while (!(events_of(sock) & ZMQ_POLLOUT) || !send_one(sock, "warm-up", 7)) {
        if (now_ns() > deadline) {
            fprintf(stderr, "ack_latency: %s: could not send\n", w->endpoint);
            exit(1);
        }
        wait_fd(fd, 0);
    }
    while (!((events_of(sock) & ZMQ_POLLIN) && recv_one(sock))) {
        if (now_ns() > deadline) {
            fprintf(stderr, "ack_latency: %s: no reply within 10 s (router mode?)\n",
                    w->endpoint);
            exit(1);
        }
        wait_fd(fd, 0);
    }
    pthread_barrier_wait(w->line);

    double interval_ns = 1e9 / (double)w->rate;
    uint64_t start = now_ns();
    uint64_t sent = 0, answered = 0, last_progress = start;

    while (answered < count) {
        uint64_t now = now_ns();
        uint64_t loop_start = now;

        /* Send what is due, unless the socket pushes back. */
        while (sent < count) {
            uint64_t t_due = start + (uint64_t)((double)sent * interval_ns);

            if (t_due > now) {
                break;
            }
            int n = snprintf(buf, TAG_MAX, "l%" PRIu64, sent);
            buf[n] = '.';
            if (!send_one(sock, buf, w->size > (uint64_t)n ? w->size : (size_t)n)) {
                break;
            }
            due[sent++] = t_due;
        }
        /* Read every reply there is. */
        while (recv_one(sock)) {
            if (answered == sent) {
                fprintf(stderr, "ack_latency: reply to no message\n");
                exit(1);
            }
            now = now_ns();
            w->lat[answered] = now - due[answered];
            answered++;
            last_progress = now;
        }
        if (answered == count) {
            break;
        }
        if (now_ns() - last_progress > REPLY_TIMEOUT_NS) {
            fprintf(stderr, "ack_latency: no reply to message %" PRIu64 " within 10 s\n",
                    answered + 1);
            exit(1);
        }
        /* ZMQ_FD only fires on a change: ask ZMQ_EVENTS (one syscall) before sleeping. */
        int ev = events_of(sock);
        if (ev & ZMQ_POLLIN) {
            continue;
        }
        /* Sleep until the next send is due, or a reply (or room) comes. */
        uint64_t next = sent < count ? start + (uint64_t)((double)sent * interval_ns) : 0;
        if (sent < count && !(ev & ZMQ_POLLOUT)) {
            next = 0; /* blocked: wake on the fd only */
        }
        if (next != 0 && next < loop_start + TICK_NS) {
            next = loop_start + TICK_NS;
        }
        if (next == 0 || next > now_ns()) {
            wait_fd(fd, next);
        }
    }
    w->secs = (double)(now_ns() - start) / 1e9;
    zmq_close(sock);
    zmq_ctx_term(ctx);
    free(due);
    free(buf);
    return NULL;
}

int
main(int argc, char **argv)
{
    uint64_t rate, count, size, nclients = 1;

    if (argc < 5 || argc > 6 || parse_u64(argv[2], &rate) < 0 || parse_u64(argv[3], &count) < 0
        || parse_u64(argv[4], &size) < 0 || size > (1u << 24)
        || (argc == 6 && parse_u64(argv[5], &nclients) < 0) || nclients < 1
        || nclients > MAX_CLIENTS || rate < nclients || count < nclients) {
        fprintf(stderr, "usage: ack_latency ENDPOINT RATE COUNT SIZE [CLIENTS(1-%d)]\n",
                MAX_CLIENTS);
        return 2;
    }

    struct worker workers[MAX_CLIENTS];
    pthread_barrier_t line;
    uint64_t *lat = malloc(count * sizeof(*lat));
    uint64_t offset = 0;
    double secs = 0;

    if (!lat || pthread_barrier_init(&line, NULL, (unsigned)nclients) != 0) {
        fprintf(stderr, "ack_latency: setup: %s\n", strerror(ENOMEM));
        return 1;
    }
    for (unsigned i = 0; i < nclients; i++) {
        struct worker *w = &workers[i];

        *w = (struct worker){
            .endpoint = argv[1],
            .rate = rate / nclients + (i < rate % nclients ? 1 : 0),
            .count = count / nclients + (i < count % nclients ? 1 : 0),
            .size = (size_t)size,
            .line = &line,
            .lat = lat + offset,
        };
        offset += w->count;
        int err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) {
            fprintf(stderr, "ack_latency: pthread_create: %s\n", strerror(err));
            exit(1);
        }
    }
    for (unsigned i = 0; i < nclients; i++) {
        pthread_join(workers[i].thread, NULL);
        secs = workers[i].secs > secs ? workers[i].secs : secs;
    }

    qsort(lat, count, sizeof(*lat), cmp_u64);
    printf("n=%" PRIu64 " target=%" PRIu64 " achieved=%.0f p50_us=%.1f p99_us=%.1f "
           "p999_us=%.1f max_us=%.1f\n",
           count, rate, secs > 0 ? (double)count / secs : 0.0,
           (double)quantile(lat, count, 0.50) / 1e3, (double)quantile(lat, count, 0.99) / 1e3,
           (double)quantile(lat, count, 0.999) / 1e3, (double)lat[count - 1] / 1e3);
    free(lat);
    pthread_barrier_destroy(&line);
    return 0;
}
