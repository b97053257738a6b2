/*
 * client_bench.c - zpipe bench (see client_bench.h): one thread and one
 * client_send job per client, a start line so that all begin together and,
 * with --hold, a finish line where they wait with their sockets open.
 */
#include "config.h"

#include "client_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "client_send.h"
#include "util.h"

#define BENCH_TAG_MAX 48            /* "c<client>-<seq>" never exceeds this */
#define BENCH_FILLER '.'
#define BENCH_ERR_REPORTS 5         /* ERR replies printed per bench client */

/*
 * A bench client's payloads: "c<client>-<seq>" followed by BENCH_FILLER up to
 * size bytes (or just the tag, when that is longer).  The buffer is filled
 * with the filler once; as seq only grows, each tag covers the previous one.
 */
struct bench_source {
    struct client_source base;
    unsigned client;
    uint64_t seq;                   /* next message's number */
    uint64_t count;                 /* messages this client sends */
    size_t size;
    char *buf;                      /* size + BENCH_TAG_MAX bytes */
};

static int
bench_next(struct client_source *src, const char **data, size_t *len)
{
    struct bench_source *bs = (struct bench_source *)src;
    char tag[BENCH_TAG_MAX];
    int n;

    if (bs->seq >= bs->count) {
        return 0;
    }
    n = snprintf(tag, sizeof(tag), "c%u-%" PRIu64, bs->client, bs->seq++);
    memcpy(bs->buf, tag, (size_t)n);
    *data = bs->buf;
    *len = (size_t)n > bs->size ? (size_t)n : bs->size;
    return 1;
}

struct bench_client {
    pthread_t thread;
    struct client_job job;
    struct bench_source src;
    struct client_tally tally;      /* written by the client, read after join or finish line */
    struct client_line *start;
    struct client_line *finish;     /* NULL: close as soon as done */
    char label[32];
    int rc;                         /* client_send_run's result, read after join */
};

static void *
bench_client_main(void *arg)
{
    struct bench_client *bc = arg;

    bc->rc = client_send_run(&bc->job, &bc->src.base, &bc->tally, bc->start, bc->finish);
    return NULL;
}

/*
 * bench_client_init prepares client number i of o's, with its share of the
 * messages, to wait at start and, with --hold, at finish.  Returns 0, or
 * -ENOMEM after printing why.
 */
static int
bench_client_init(struct bench_client *bc, unsigned i, const struct client_bench_opts *o,
                  struct client_line *start, struct client_line *finish)
{
    snprintf(bc->label, sizeof(bc->label), "bench: client %u", i);
    bc->job = (struct client_job){
        .label = bc->label,
        .endpoint = o->endpoint,
        .is_router = o->is_router,
        .timeout_ms = o->timeout_ms,
        .err_report_limit = BENCH_ERR_REPORTS,
        .curve_server_key = o->curve_server_key,
        .curve_secret_key = o->curve_secret_key,
    };
    bc->src = (struct bench_source){
        .base = { .next = bench_next, .name = "generator" },
        .client = i,
        .count = o->count / o->clients + (i < o->count % o->clients ? 1 : 0),
        .size = o->size,
        .buf = malloc(o->size + BENCH_TAG_MAX),
    };
    bc->start = start;
    bc->finish = o->is_hold ? finish : NULL;
    if (!bc->src.buf) {
        client_fail("bench: payload buffer: %s", client_errstr(ENOMEM));
        return -ENOMEM;
    }
    memset(bc->src.buf, BENCH_FILLER, o->size + BENCH_TAG_MAX);
    return 0;
}

/* print_result prints bench's one line for sum, sent in secs. */
static void
print_result(const struct client_tally *sum, double secs, bool is_router)
{
    printf("%" PRIu64 " messages, %.3f s, %.0f msgs/s, %.2f MB/s",
           sum->sent, secs, secs > 0 ? (double)sum->sent / secs : 0.0,
           secs > 0 ? (double)sum->bytes / secs / 1e6 : 0.0);
    if (is_router) {
        printf(", %" PRIu64 " acked", sum->acked);
    }
    putchar('\n');
}

/* join_clients joins the threads of the first n clients. */
static void
join_clients(struct bench_client *clients, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        pthread_join(clients[i].thread, NULL);
    }
}

/* stop_signals fills *set with the signals that end a hold. */
static void
stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

/*
 * hold waits for SIGTERM or SIGINT (blocked since the start) for at most
 * hold_ms, or without limit if it is -1.
 */
static void
hold(int hold_ms)
{
    struct timespec limit = { .tv_sec = hold_ms / 1000, .tv_nsec = hold_ms % 1000 * 1000000L };
    sigset_t stop;
    int rc;

    stop_signals(&stop);
    do {
        /* An interruption (a stop and continue) starts the limit over: it is a safety net. */
        rc = hold_ms < 0 ? sigwaitinfo(&stop, NULL) : sigtimedwait(&stop, NULL, &limit);
    } while (rc < 0 && errno == EINTR);
}

int
client_bench_run(const struct client_bench_opts *o)
{
    struct client_line start = CLIENT_LINE_INIT;
    struct client_line finish = CLIENT_LINE_INIT;
    struct client_tally sum = { 0 };
    struct bench_client *clients;
    unsigned started = 0;
    int rc = 0;

    if (o->is_hold) {
        sigset_t stop;

        /* Before any thread starts, so that every thread inherits it. */
        stop_signals(&stop);
        pthread_sigmask(SIG_BLOCK, &stop, NULL);
    }
    clients = calloc(o->clients, sizeof(*clients));
    if (!clients) {
        client_fail("bench: %s", client_errstr(ENOMEM));
        return -ENOMEM;
    }
    for (unsigned i = 0; i < o->clients && rc == 0; i++) {
        rc = bench_client_init(&clients[i], i, o, &start, &finish);
    }
    while (rc == 0 && started < o->clients) {
        int err = pthread_create(&clients[started].thread, NULL, bench_client_main,
                                 &clients[started]);
        if (err != 0) {
            client_fail("bench: pthread_create: %s", client_errstr(err));
            rc = -err;
            break;
        }
        started++;
    }
    /* Clients that did start find the line open even if others failed to. */
    client_line_await(&start, started);
    client_line_open(&start);
    uint64_t start_us = util_now_us();
    /* Held, the run ends with the last send (all at the finish line), else the last close. */
    bool is_failed = false;
    if (o->is_hold) {
        is_failed = client_line_await(&finish, started) > 0;
    } else {
        join_clients(clients, started);
    }
    double secs = (double)(util_now_us() - start_us) / 1e6;

    for (unsigned i = 0; i < started; i++) {
        sum.sent += clients[i].tally.sent;
        sum.bytes += clients[i].tally.bytes;
        sum.acked += clients[i].tally.acked;
        sum.refused += clients[i].tally.refused;
    }
    if (started > 0) {
        print_result(&sum, secs, o->is_router);
    }
    if (o->is_hold) {
        fflush(stdout);
        if (rc == 0 && !is_failed) {
            hold(o->hold_ms);
        }
        client_line_open(&finish);
        join_clients(clients, started);
    }
    for (unsigned i = 0; i < started && rc == 0; i++) {
        rc = clients[i].rc;
    }
    if (sum.refused > 0) {
        client_fail("bench: %" PRIu64 " of %" PRIu64 " messages refused", sum.refused, sum.sent);
    }
    for (unsigned i = 0; i < o->clients; i++) {
        free(clients[i].src.buf);
    }
    free(clients);
    return rc;
}
