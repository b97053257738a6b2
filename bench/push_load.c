/*
 * push_load - the pull-mode load generator of scripts/bench.
 *
 *   push_load ENDPOINT COUNT SIZE CLIENTS [HOLD_S]
 *
 * CLIENTS threads, each with a context and a PUSH socket of its own, connect
 * to ENDPOINT, wait at a common starting line, and send COUNT messages in all
 * (SIZE payload bytes each, "c<client>-<seq>" then '.' filler: the payloads of
 * zpipe bench).  When every message is queued it prints zpipe bench's line:
 * "N messages, T s, R msgs/s, M MB/s" (the sender-side rate).
 *
 * Unlike zpipe bench it then keeps its sockets open until SIGTERM or SIGINT
 * (or HOLD_S seconds, default 120), and only then closes them, with linger 0.
 * Why: libzmq 4.3 can drop the tail of a PUSH pipe whose sender disconnects
 * while the receiver's HWM is full (libzmq issue 4660; seen here over ipc:
 * 0.5-1 % of the messages lost), so a sender that closes as soon as it is done
 * makes the receiver wait forever for the last ones.  The script signals
 * push_load once the receiver has counted all COUNT messages, so nothing is
 * in flight at the close and the loss cannot happen or skew the figure.
 *
 * Exit status 0; 1 on an error (a send not taken within 30 s: no receiver,
 * or one that stopped reading); 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#define SEND_TIMEOUT_MS 30000
#define TAG_MAX 48
#define MAX_CLIENTS 64
#define DEFAULT_HOLD_S 120

struct start_line {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ready;
    bool is_open;
};

struct client {
    pthread_t thread;
    unsigned id;
    const char *endpoint;
    uint64_t count;
    size_t size;
    struct start_line *start;
    void *ctx;
    void *sock;
    uint64_t sent;
    uint64_t bytes;
    int rc;
};

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 10);
    return (errno != 0 || *end != '\0' || end == s || s[0] == '-') ? -1 : 0;
}

/* The client's socket: PUSH, only to completed connections (ZMQ_IMMEDIATE). */
static int
client_open(struct client *c)
{
    int one = 1, zero = 0, timeout = SEND_TIMEOUT_MS;

    c->ctx = zmq_ctx_new();
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_PUSH) : NULL;
    if (!c->sock) {
        fprintf(stderr, "push_load: client %u: socket: %s\n", c->id, zmq_strerror(errno));
        return -1;
    }
    if (zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &timeout, sizeof(timeout)) < 0
        || zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero)) < 0
        || zmq_setsockopt(c->sock, ZMQ_IMMEDIATE, &one, sizeof(one)) < 0) {
        fprintf(stderr, "push_load: client %u: setsockopt: %s\n", c->id, zmq_strerror(errno));
        return -1;
    }
    if (zmq_connect(c->sock, c->endpoint) < 0) {
        fprintf(stderr, "push_load: client %u: connect %s: %s\n", c->id, c->endpoint,
                zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static void *
client_main(void *arg)
{
    struct client *c = arg;
    char *buf = malloc(c->size + TAG_MAX);
    int rc = buf ? client_open(c) : -1;

    if (buf) {
        memset(buf, '.', c->size + TAG_MAX);
    }
    /* Wait at the line even after a failure, so the others are not left waiting. */
    pthread_mutex_lock(&c->start->lock);
    c->start->ready++;
    pthread_cond_broadcast(&c->start->cond);
    while (!c->start->is_open) {
        pthread_cond_wait(&c->start->cond, &c->start->lock);
    }
    pthread_mutex_unlock(&c->start->lock);

    for (uint64_t seq = 0; rc == 0 && seq < c->count; seq++) {
        char tag[TAG_MAX];
        int n = snprintf(tag, sizeof(tag), "c%u-%" PRIu64, c->id, seq);
        size_t len = (size_t)n > c->size ? (size_t)n : c->size;

        memcpy(buf, tag, (size_t)n);
        if (zmq_send(c->sock, buf, len, 0) < 0) {
            if (errno == EINTR) {
                seq--;
                continue;
            }
            fprintf(stderr, "push_load: client %u: send to %s: %s (%" PRIu64 " sent)\n", c->id,
                    c->endpoint, zmq_strerror(errno), c->sent);
            rc = -1;
            break;
        }
        c->sent++;
        c->bytes += len;
    }
    free(buf);
    c->rc = rc;
    return NULL;
}

int
main(int argc, char **argv)
{
    uint64_t count, size, nclients, hold_s = DEFAULT_HOLD_S;

    if (argc < 5 || argc > 6 || parse_u64(argv[2], &count) < 0 || parse_u64(argv[3], &size) < 0
        || parse_u64(argv[4], &nclients) < 0 || nclients < 1 || nclients > MAX_CLIENTS
        || size > (1u << 30) || (argc == 6 && parse_u64(argv[5], &hold_s) < 0)) {
        fprintf(stderr, "usage: push_load ENDPOINT COUNT SIZE CLIENTS(1-%d) [HOLD_S]\n",
                MAX_CLIENTS);
        return 2;
    }

    /* Block the stop signals in every thread; main takes them with sigtimedwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct start_line start = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER,
    };
    struct client clients[MAX_CLIENTS];
    unsigned started = 0;
    int status = 0;

    memset(clients, 0, sizeof(clients));
    for (; started < nclients; started++) {
        struct client *c = &clients[started];

        c->id = started;
        c->endpoint = argv[1];
        c->count = count / nclients + (started < count % nclients ? 1 : 0);
        c->size = (size_t)size;
        c->start = &start;
        int err = pthread_create(&c->thread, NULL, client_main, c);
        if (err != 0) {
            fprintf(stderr, "push_load: pthread_create: %s\n", strerror(err));
            status = 1;
            break;
        }
    }
    pthread_mutex_lock(&start.lock);
    while (start.ready < started) {
        pthread_cond_wait(&start.cond, &start.lock);
    }
    start.is_open = true;
    pthread_cond_broadcast(&start.cond);
    pthread_mutex_unlock(&start.lock);

    uint64_t t0 = now_us();
    uint64_t sent = 0, bytes = 0;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(clients[i].thread, NULL);
        status = clients[i].rc != 0 ? 1 : status;
        sent += clients[i].sent;
        bytes += clients[i].bytes;
    }
    double secs = (double)(now_us() - t0) / 1e6;
    printf("%" PRIu64 " messages, %.3f s, %.0f msgs/s, %.2f MB/s\n", sent, secs,
           secs > 0 ? (double)sent / secs : 0.0, secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
    fflush(stdout);

    /* Hold the connections until told the receiver has everything. */
    if (status == 0) {
        struct timespec hold = { .tv_sec = (time_t)hold_s };

        while (sigtimedwait(&stop, NULL, &hold) < 0 && errno == EINTR) {
        }
    }
    /* pthread_join ordered the sockets' last use before this close. */
    for (unsigned i = 0; i < started; i++) {
        if (clients[i].sock) {
            zmq_close(clients[i].sock);
        }
        if (clients[i].ctx) {
            zmq_ctx_term(clients[i].ctx);
        }
    }
    return status;
}
