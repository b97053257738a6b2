/*
 * zpipe.c - the command-line client: main() and its subcommands.
 *
 *   zpipe push   sends its arguments, or the lines of stdin, to zpiped.
 *   zpipe bench  sends generated messages from several threads as fast as it
 *                can and prints the rate: the load generator of the benchmarks.
 *
 *   zpipe stats  asks the daemon's control socket for its counters.
 *   zpipe ping   asks the control socket whether the daemon answers.
 *
 * push and bench talk to the daemon's input endpoint through run_job(), one socket on
 * its own context.  In pull mode that is a PUSH socket; in router mode a
 * DEALER socket that sends ["", payload] and keeps up to ROUTER_WINDOW
 * messages in flight while it waits for their ["", "OK"] or ["", "ERR ..."]
 * replies.  The daemon answers the messages of one connection in the order
 * they arrived (README, "Configuration"), so the n-th reply belongs to the n-th
 * message and no id is needed.
 *
 * Exit status: 0 on success (in router mode: every message was answered OK),
 * 1 on an error, 2 on a usage error.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "util.h"

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"
#define DEFAULT_SOCKET "/run/zpipe/control.sock"
#define CTL_REPLY_MAX 65536         /* longest control socket reply we accept */
#define DEFAULT_TIMEOUT_MS 10000
#define ROUTER_WINDOW 1000          /* router mode: max messages awaiting a reply */
#define REPLY_MAX 512               /* longest reply text we keep for printing */

#define BENCH_DEFAULT_COUNT 100000
#define BENCH_DEFAULT_SIZE 100
#define BENCH_MAX_CLIENTS 1024
#define BENCH_MAX_SIZE (1024 * 1024 * 1024)
#define BENCH_TAG_MAX 48            /* "c<client>-<seq>" never exceeds this */
#define BENCH_FILLER '.'
#define BENCH_ERR_REPORTS 5         /* ERR replies printed per bench client */

enum {
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
};

/*
 * A source hands out the messages to send, one at a time.  next() points
 * *data and *len at the next message, valid until the following call, and
 * returns 1; it returns 0 at the end and a negative errno on failure.
 */
struct source {
    int (*next)(struct source *src, const char **data, size_t *len);
    const char *name;               /* for error messages: "stdin" */
};

/* What one socket is to do; filled in by a subcommand, read-only after. */
struct job {
    const char *label;              /* message prefix: "push", "bench: client 3" */
    const char *endpoint;
    bool is_router;
    int timeout_ms;                 /* longest wait without progress; -1 = forever */
    uint64_t err_report_limit;      /* ERR replies printed; later ones only counted */
};

/* What one socket did. */
struct tally {
    uint64_t sent;                  /* messages handed to zmq_send */
    uint64_t bytes;                 /* payload bytes of those */
    uint64_t acked;                 /* router mode: answered OK */
    uint64_t refused;               /* router mode: answered ERR */
};

static const char usage_text[] =
    "Usage: zpipe [-h] [--version] COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Commands:\n"
    "  push [-e ENDPOINT] [-r] [-t TIMEOUT] [MESSAGE...]\n"
    "      Send each MESSAGE as one message; with no MESSAGE, send each line of\n"
    "      standard input (without its newline).\n"
    "  bench [-e ENDPOINT] [-n COUNT] [-s SIZE] [-c CLIENTS] [-r] [-t TIMEOUT]\n"
    "      Send COUNT messages in total from CLIENTS threads as fast as possible\n"
    "      and print one line: messages, seconds, msgs/s, MB/s (and, with -r,\n"
    "      how many were acked).  Each payload is \"c<client>-<seq>\" padded with\n"
    "      '.' to SIZE bytes; client and seq count from 0.\n"
    "  stats [-s SOCKET] [-t TIMEOUT] [--json] [-i INTERVAL [-n COUNT]]\n"
    "      Print the daemon's counters, read from its control socket (default\n"
    "      " DEFAULT_SOCKET "): a summary with the average rates since\n"
    "      the start, or with --json the raw JSON object.  With -i, a line\n"
    "      every INTERVAL with what happened during it: counts and rates per\n"
    "      second (with --json, the raw object every INTERVAL).\n"
    "  ping [-s SOCKET] [-t TIMEOUT]\n"
    "      Check that the daemon answers on its control socket; prints \"pong\".\n"
    "\n"
    "Options:\n"
    "  -e, --endpoint=ENDPOINT  zpiped's input endpoint (default " DEFAULT_ENDPOINT ")\n"
    "  -r, --router             zpiped runs in router mode: use a DEALER socket and\n"
    "                           wait for every message's OK\n"
    "  -t, --timeout=DURATION   fail after waiting this long for the daemon (seconds,\n"
    "                           or with an ms/s/m suffix; default 10; 0 = forever)\n"
    "  -s, --size=SIZE          bench: payload bytes, K/M/G suffixes (default 100)\n"
    "  -s, --socket=SOCKET      stats, ping: the control socket path\n"
    "      --json               stats: print the raw JSON object\n"
    "  -i, --interval=DURATION  stats: print a line every DURATION (e.g. 1, 500ms)\n"
    "  -n, --count=COUNT        bench: messages in total (default 100000);\n"
    "                           stats -i: stop after COUNT lines (default: never)\n"
    "  -c, --clients=CLIENTS    bench: client threads, one socket each (default 1)\n"
    "  -h, --help               show this help and exit\n"
    "      --version            show the version and exit\n"
    "\n"
    "Exit status: 0 on success (with -r: every message was answered OK),\n"
    "1 on an error, 2 on a usage error.\n";

/*
 * complain prints "zpipe: MESSAGE" on stderr, and for a usage error the
 * --help hint, and returns status (EXIT_ERROR or EXIT_USAGE).  One fprintf:
 * stdio locks the stream, so bench threads' lines don't interleave.
 */
__attribute__((format(printf, 2, 3)))
static int
complain(int status, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "zpipe: %s\n%s", line, status == EXIT_USAGE ? "Try 'zpipe --help'.\n" : "");
    return status;
}

/* fail reports an error; the caller decides the exit status. */
#define fail(...) ((void)complain(EXIT_ERROR, __VA_ARGS__))
/* usage_error reports a bad command line and returns the usage exit status. */
#define usage_error(...) complain(EXIT_USAGE, __VA_ARGS__)

/* errstr describes a positive errno or libzmq error code; any thread may call it. */
static const char *
errstr(int errnum)
{
    static _Thread_local char buf[128];

    /* libzmq's own codes (ETERM, EFSM, ...) start at ZMQ_HAUSNUMERO. */
    if (errnum >= ZMQ_HAUSNUMERO) {
        return zmq_strerror(errnum);
    }
    return util_strerror(errnum, buf, sizeof(buf));
}

/* ------------------------------------------------------------ sources */

struct args_source {
    struct source base;
    char **argv;
    int argc;
    int next_index;
};

static int
args_next(struct source *src, const char **data, size_t *len)
{
    struct args_source *as = (struct args_source *)src;

    if (as->next_index >= as->argc) {
        return 0;
    }
    *data = as->argv[as->next_index++];
    *len = strlen(*data);
    return 1;
}

struct stdin_source {
    struct source base;
    char *line;                     /* getline's buffer, freed by the owner */
    size_t cap;
};

static int
stdin_next(struct source *src, const char **data, size_t *len)
{
    struct stdin_source *ss = (struct stdin_source *)src;
    ssize_t n;

    errno = 0;
    n = getline(&ss->line, &ss->cap, stdin);
    if (n < 0) {
        return errno != 0 ? -errno : 0;
    }
    if (n > 0 && ss->line[n - 1] == '\n') {
        n--;
    }
    *data = ss->line;
    *len = (size_t)n;
    return 1;
}

/*
 * A bench client's payloads: "c<client>-<seq>" followed by BENCH_FILLER up to
 * size bytes (or just the tag, when that is longer).  The buffer is filled
 * with the filler once; as seq only grows, each tag covers the previous one.
 */
struct bench_source {
    struct source base;
    unsigned client;
    uint64_t seq;                   /* next message's number */
    uint64_t count;                 /* messages this client sends */
    size_t size;
    char *buf;                      /* size + BENCH_TAG_MAX bytes */
};

static int
bench_next(struct source *src, const char **data, size_t *len)
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

/* ------------------------------------------------------------ sending */

/*
 * send_push sends every message of src on a PUSH socket.  A send that cannot
 * go out within the socket's ZMQ_SNDTIMEO (no connected daemon, or one that
 * stopped reading) fails.  Returns 0, or -1 after printing why.
 */
static int
send_push(void *sock, const struct job *job, struct source *src, struct tally *t)
{
    const char *data;
    size_t len;
    int rc;

    while ((rc = src->next(src, &data, &len)) > 0) {
        if (zmq_send(sock, data, len, 0) < 0) {
            if (errno == EAGAIN) {
                fail("%s: %s: message %" PRIu64 " not taken within %d ms "
                     "(is zpiped running there?)",
                     job->label, job->endpoint, t->sent + 1, job->timeout_ms);
            } else {
                fail("%s: send to %s: %s", job->label, job->endpoint, errstr(errno));
            }
            return -1;
        }
        t->sent++;
        t->bytes += len;
    }
    if (rc < 0) {
        fail("%s: read %s: %s", job->label, src->name, errstr(-rc));
        return -1;
    }
    return 0;
}

/*
 * recv_reply reads one reply without blocking into body (NUL-terminated,
 * truncated to cap - 1 bytes).  Returns 1, 0 when none is waiting, -EPROTO
 * when it is not ["", text] or [text], or another negative errno.
 */
static int
recv_reply(void *sock, char *body, size_t cap)
{
    zmq_msg_t frame;
    int frames = 0;
    bool is_first_empty = false;
    int more;
    size_t more_len = sizeof(more);

    do {
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, sock, frames == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int err = errno;

            zmq_msg_close(&frame);
            return frames == 0 && err == EAGAIN ? 0 : -err;
        }
        size_t n = zmq_msg_size(&frame);
        if (frames == 0) {
            is_first_empty = n == 0;
        }
        if (n > cap - 1) {
            n = cap - 1;
        }
        memcpy(body, zmq_msg_data(&frame), n);
        body[n] = '\0';
        frames++;
        zmq_msg_close(&frame);
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len) < 0) {
            return -errno;
        }
    } while (more);

    if (frames == 1 || (frames == 2 && is_first_empty)) {
        return 1;
    }
    return -EPROTO;
}

/*
 * handle_reply counts one reply to message number index (from 1).  Returns 0,
 * or -1 after printing why when the reply is neither OK nor ERR.
 */
static int
handle_reply(const struct job *job, const char *body, uint64_t index, struct tally *t)
{
    if (strcmp(body, "OK") == 0) {
        t->acked++;
        return 0;
    }
    if (strncmp(body, "ERR", 3) == 0) {
        if (t->refused < job->err_report_limit) {
            fail("%s: message %" PRIu64 ": %s", job->label, index, body);
        }
        t->refused++;
        return 0;
    }
    fail("%s: message %" PRIu64 ": unexpected reply '%s'", job->label, index, body);
    return -1;
}

/*
 * send_router sends every message of src as ["", payload] on a DEALER socket
 * and waits for all the replies, with up to ROUTER_WINDOW messages in flight.
 * sent_us[i % ROUTER_WINDOW] is when message i (from 0) was sent; replies come
 * in order, so the oldest unanswered one is message acked + refused, and it
 * alone decides the timeout.  Returns 0 once every message has been answered
 * (OK or ERR), or -1 after printing why.
 */
static int
send_router(void *sock, const struct job *job, struct source *src, struct tally *t)
{
    uint64_t sent_us[ROUTER_WINDOW];    /* 8 KB: fine on any thread's stack */
    char body[REPLY_MAX];
    const char *data = NULL;
    size_t len = 0;
    bool has_data = false;          /* data/len hold a message not sent yet */
    bool is_eof = false;

    for (;;) {
        uint64_t answered = t->acked + t->refused;
        bool is_blocked = false;    /* the socket refused a send (high-water mark) */

        while (!is_eof && t->sent - answered < ROUTER_WINDOW) {
            if (!has_data) {
                int rc = src->next(src, &data, &len);

                if (rc < 0) {
                    fail("%s: read %s: %s", job->label, src->name, errstr(-rc));
                    return -1;
                }
                if (rc == 0) {
                    is_eof = true;
                    break;
                }
                has_data = true;
            }
            if (zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
                if (errno == EAGAIN) {
                    is_blocked = true;
                    break;
                }
                fail("%s: send to %s: %s", job->label, job->endpoint, errstr(errno));
                return -1;
            }
            /* The first frame got in, so the last one will: it cannot block. */
            if (zmq_send(sock, data, len, 0) < 0) {
                fail("%s: send to %s: %s", job->label, job->endpoint, errstr(errno));
                return -1;
            }
            sent_us[t->sent % ROUTER_WINDOW] = util_now_us();
            t->sent++;
            t->bytes += len;
            has_data = false;
        }
        if (is_eof && t->sent == answered) {
            return 0;
        }

        int rc = recv_reply(sock, body, sizeof(body));
        if (rc < 0) {
            if (rc == -EPROTO) {
                fail("%s: %s: malformed reply (not [\"\", text])", job->label, job->endpoint);
            } else {
                fail("%s: receive from %s: %s", job->label, job->endpoint, errstr(-rc));
            }
            return -1;
        }
        if (rc > 0) {
            if (t->sent == answered) {
                fail("%s: %s: reply to no message: '%s'", job->label, job->endpoint, body);
                return -1;
            }
            if (handle_reply(job, body, answered + 1, t) < 0) {
                return -1;
            }
            continue;
        }

        /* Nothing to do until a reply arrives or the socket takes more. */
        zmq_pollitem_t item = { .socket = sock, .events = 0 };
        long wait_ms = job->timeout_ms;
        if (t->sent > answered) {
            item.events |= ZMQ_POLLIN;
            if (job->timeout_ms >= 0) {
                uint64_t deadline_us = sent_us[answered % ROUTER_WINDOW]
                                       + (uint64_t)job->timeout_ms * 1000;
                uint64_t now_us = util_now_us();

                wait_ms = deadline_us > now_us ? (long)((deadline_us - now_us + 999) / 1000) : 0;
            }
        }
        if (is_blocked) {
            item.events |= ZMQ_POLLOUT;
        }
        rc = zmq_poll(&item, 1, wait_ms);
        if (rc < 0 && errno != EINTR) {
            fail("%s: poll %s: %s", job->label, job->endpoint, errstr(errno));
            return -1;
        }
        if (rc == 0) {
            if (t->sent > answered) {
                fail("%s: %s: no reply to message %" PRIu64 " within %d ms "
                     "(is zpiped running there in router mode?)",
                     job->label, job->endpoint, answered + 1, job->timeout_ms);
            } else {
                fail("%s: %s: message %" PRIu64 " not taken within %d ms",
                     job->label, job->endpoint, t->sent + 1, job->timeout_ms);
            }
            return -1;
        }
    }
}

/*
 * open_socket creates the job's socket on ctx and connects it.  In pull mode
 * it only queues messages for a completed connection (ZMQ_IMMEDIATE), so a
 * send times out instead of queueing for a daemon that is not there, and it
 * lingers up to the timeout at close so queued messages get out.  Returns the
 * socket, or NULL after printing why.
 */
static void *
open_socket(void *ctx, const struct job *job)
{
    void *sock = zmq_socket(ctx, job->is_router ? ZMQ_DEALER : ZMQ_PUSH);
    int one = 1;
    int zero = 0;

    if (!sock) {
        fail("%s: socket: %s", job->label, errstr(errno));
        return NULL;
    }
    if (zmq_setsockopt(sock, ZMQ_SNDTIMEO, &job->timeout_ms, sizeof(int)) < 0
        || zmq_setsockopt(sock, ZMQ_LINGER, job->is_router ? &zero : &job->timeout_ms,
                          sizeof(int)) < 0
        || (!job->is_router && zmq_setsockopt(sock, ZMQ_IMMEDIATE, &one, sizeof(one)) < 0)) {
        fail("%s: setsockopt: %s", job->label, errstr(errno));
        zmq_close(sock);
        return NULL;
    }
    if (zmq_connect(sock, job->endpoint) < 0) {
        fail("%s: connect %s: %s", job->label, job->endpoint, errstr(errno));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* Bench clients connect, then wait here so that they start sending together. */
struct start_line {
    pthread_mutex_t lock;           /* protects ready and is_open */
    pthread_cond_t cond;            /* broadcast when ready grows and when is_open turns true */
    unsigned ready;                 /* clients waiting at the line */
    bool is_open;
};

/* start_line_wait blocks the calling client until start_line_open. */
static void
start_line_wait(struct start_line *sl)
{
    pthread_mutex_lock(&sl->lock);
    sl->ready++;
    pthread_cond_broadcast(&sl->cond);
    while (!sl->is_open) {
        pthread_cond_wait(&sl->cond, &sl->lock);
    }
    pthread_mutex_unlock(&sl->lock);
}

/* start_line_open waits until n clients are at the line, then lets them all go. */
static void
start_line_open(struct start_line *sl, unsigned n)
{
    pthread_mutex_lock(&sl->lock);
    while (sl->ready < n) {
        pthread_cond_wait(&sl->cond, &sl->lock);
    }
    sl->is_open = true;
    pthread_cond_broadcast(&sl->cond);
    pthread_mutex_unlock(&sl->lock);
}

/*
 * run_job connects one socket, on a context of its own, to job->endpoint and
 * sends every message of src; in router mode it also waits for every reply.
 * If start is not NULL, it waits there once connected (bench's starting line),
 * also when connecting failed, so the other threads are not left waiting.
 * Returns 0 when every message went out (and, in router mode, was answered
 * OK), or -1 after printing why.
 */
static int
run_job(const struct job *job, struct source *src, struct tally *t,
        struct start_line *start)
{
    void *ctx = zmq_ctx_new();
    void *sock = NULL;
    int rc = -1;

    if (!ctx) {
        fail("%s: zmq_ctx_new: %s", job->label, errstr(errno));
    } else {
        sock = open_socket(ctx, job);
    }
    if (start) {
        start_line_wait(start);
    }
    if (sock) {
        rc = job->is_router ? send_router(sock, job, src, t) : send_push(sock, job, src, t);
    }
    if (rc == 0 && t->refused > 0) {
        rc = -1;
    }

    /*
     * In pull mode, closing lingers until the queued messages are out or the
     * timeout is over.  Hitting the limit means some were dropped.
     */
    uint64_t close_start_ms = util_now_ms();
    if (sock) {
        zmq_close(sock);
    }
    if (ctx) {
        zmq_ctx_term(ctx);
    }
    if (rc == 0 && !job->is_router && job->timeout_ms > 0
        && util_now_ms() - close_start_ms >= (uint64_t)job->timeout_ms) {
        fail("%s: %s: queued messages not sent within %d ms; some may be lost",
             job->label, job->endpoint, job->timeout_ms);
        rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------------ bench */

struct bench_client {
    pthread_t thread;
    struct job job;
    struct bench_source src;
    struct tally tally;             /* written by the client, read after join */
    struct start_line *start;
    char label[32];
    int rc;                         /* run_job's result, read after join */
};

static void *
bench_client_main(void *arg)
{
    struct bench_client *bc = arg;

    bc->rc = run_job(&bc->job, &bc->src.base, &bc->tally, bc->start);
    return NULL;
}

/* ------------------------------------------------------------ options */

enum {
    OPT_VERSION = 256,
};

static const struct option long_options[] = {
    { "endpoint", required_argument, NULL, 'e' },
    { "router", no_argument, NULL, 'r' },
    { "timeout", required_argument, NULL, 't' },
    { "count", required_argument, NULL, 'n' },
    { "size", required_argument, NULL, 's' },
    { "clients", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
};

/* A command line; what a subcommand does not take keeps its default. */
struct opts {
    const char *endpoint;
    bool is_router;
    int timeout_ms;                 /* -1 = forever */
    uint64_t count;
    uint64_t size;
    uint64_t clients;
};

static const struct opts default_opts = {
    .endpoint = DEFAULT_ENDPOINT,
    .timeout_ms = DEFAULT_TIMEOUT_MS,
    .count = BENCH_DEFAULT_COUNT,
    .size = BENCH_DEFAULT_SIZE,
    .clients = 1,
};

/*
 * parse_options reads the options of cmd (NULL for zpipe's own, before the
 * command) into *o.  shorts lists the ones cmd takes in getopt's syntax and
 * starts with "+:": options end at the first argument, since a message may
 * begin with '-', and a missing argument is told apart.  Returns -1 when the
 * caller goes on, with optind at the first argument, or the exit status after
 * --help, --version or a usage error.
 */
static int
parse_options(int argc, char **argv, const char *cmd, const char *shorts, struct opts *o)
{
    const char *sep = cmd ? ": " : "";
    int opt;
    int index;
    uint64_t value;

    if (!cmd) {
        cmd = "";
    }
    opterr = 0;
    optind = 0;                     /* glibc and musl: restart and reset all state */
    while ((index = -1, opt = getopt_long(argc, argv, shorts, long_options, &index)) != -1) {
        if (opt == '?') {
            if (optopt != 0 && optopt != OPT_VERSION) {
                return usage_error("%s%sinvalid option -- '%c'", cmd, sep, optopt);
            }
            return usage_error("%s%sunrecognized option '%s'", cmd, sep, argv[optind - 1]);
        }
        if (opt == ':') {
            return usage_error("%s%soption '%s' requires an argument", cmd, sep,
                               argv[optind - 1]);
        }
        /* getopt checked the short options; a long one may not apply to cmd. */
        if (opt != OPT_VERSION && !strchr(shorts + 2, opt)) {
            return usage_error("%s%soption '--%s' does not apply", cmd, sep,
                               index >= 0 ? long_options[index].name : "?");
        }
        switch (opt) {
        case 'e':
            o->endpoint = optarg;
            break;
        case 'r':
            o->is_router = true;
            break;
        case 't':
            if (util_parse_duration_ms(optarg, &value) < 0 || value > INT_MAX) {
                return usage_error("%s%sinvalid timeout '%s'", cmd, sep, optarg);
            }
            o->timeout_ms = value == 0 ? -1 : (int)value;
            break;
        case 'n':
            if (util_parse_uint(optarg, &o->count) < 0) {
                return usage_error("%s%sinvalid count '%s'", cmd, sep, optarg);
            }
            break;
        case 's':
            if (util_parse_size(optarg, &value) < 0 || value > BENCH_MAX_SIZE) {
                return usage_error("%s%sinvalid size '%s' (at most 1G)", cmd, sep, optarg);
            }
            o->size = value;
            break;
        case 'c':
            if (util_parse_uint(optarg, &value) < 0 || value < 1
                || value > BENCH_MAX_CLIENTS) {
                return usage_error("%s%sinvalid client count '%s' (1 to %d)", cmd, sep,
                                   optarg, BENCH_MAX_CLIENTS);
            }
            o->clients = value;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_SUCCESS;
        case OPT_VERSION:
            printf("zpipe %s\n", PACKAGE_VERSION);
            return EXIT_SUCCESS;
        default:
            return usage_error("%s%sbad option", cmd, sep);
        }
    }
    return -1;
}

/* ------------------------------------------------------------ commands */

static int
cmd_push(int argc, char **argv)
{
    struct opts o = default_opts;
    struct tally t = { 0 };
    int status = parse_options(argc, argv, "push", "+:e:rt:h", &o);
    int rc;

    if (status >= 0) {
        return status;
    }
    const struct job job = {
        .label = "push",
        .endpoint = o.endpoint,
        .is_router = o.is_router,
        .timeout_ms = o.timeout_ms,
        .err_report_limit = UINT64_MAX,
    };
    if (optind < argc) {
        struct args_source src = {
            .base = { .next = args_next, .name = "arguments" },
            .argv = argv,
            .argc = argc,
            .next_index = optind,
        };
        rc = run_job(&job, &src.base, &t, NULL);
    } else {
        struct stdin_source src = {
            .base = { .next = stdin_next, .name = "stdin" },
        };
        rc = run_job(&job, &src.base, &t, NULL);
        free(src.line);
    }
    if (t.refused > 0) {
        fail("push: %" PRIu64 " of %" PRIu64 " messages refused", t.refused, t.sent);
    }
    return rc == 0 ? EXIT_SUCCESS : EXIT_ERROR;
}

static int
cmd_bench(int argc, char **argv)
{
    struct opts o = default_opts;
    struct start_line start = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER,
    };
    struct tally sum = { 0 };
    struct bench_client *clients;
    unsigned started = 0;
    bool is_ok = true;
    int status = parse_options(argc, argv, "bench", "+:e:rt:n:s:c:h", &o);

    if (status >= 0) {
        return status;
    }
    if (optind < argc) {
        return usage_error("bench: unexpected argument '%s'", argv[optind]);
    }
    clients = calloc(o.clients, sizeof(*clients));
    if (!clients) {
        fail("bench: %s", errstr(ENOMEM));
        return EXIT_ERROR;
    }
    for (unsigned i = 0; i < o.clients; i++) {
        struct bench_client *bc = &clients[i];

        snprintf(bc->label, sizeof(bc->label), "bench: client %u", i);
        bc->job = (struct job){
            .label = bc->label,
            .endpoint = o.endpoint,
            .is_router = o.is_router,
            .timeout_ms = o.timeout_ms,
            .err_report_limit = BENCH_ERR_REPORTS,
        };
        bc->src = (struct bench_source){
            .base = { .next = bench_next, .name = "generator" },
            .client = i,
            .count = o.count / o.clients + (i < o.count % o.clients ? 1 : 0),
            .size = (size_t)o.size,
            .buf = malloc((size_t)o.size + BENCH_TAG_MAX),
        };
        bc->start = &start;
        if (!bc->src.buf) {
            fail("bench: payload buffer: %s", errstr(ENOMEM));
            is_ok = false;
            break;
        }
        memset(bc->src.buf, BENCH_FILLER, (size_t)o.size + BENCH_TAG_MAX);
    }

    for (; is_ok && started < o.clients; started++) {
        int err = pthread_create(&clients[started].thread, NULL, bench_client_main,
                                 &clients[started]);
        if (err != 0) {
            fail("bench: pthread_create: %s", errstr(err));
            is_ok = false;
        }
    }
    /* Clients that did start find the line open even if others failed to. */
    start_line_open(&start, started);
    uint64_t start_us = util_now_us();
    for (unsigned i = 0; i < started; i++) {
        pthread_join(clients[i].thread, NULL);
        is_ok = is_ok && clients[i].rc == 0;
        sum.sent += clients[i].tally.sent;
        sum.bytes += clients[i].tally.bytes;
        sum.acked += clients[i].tally.acked;
        sum.refused += clients[i].tally.refused;
    }
    double secs = (double)(util_now_us() - start_us) / 1e6;

    if (started > 0) {
        printf("%" PRIu64 " messages, %.3f s, %.0f msgs/s, %.2f MB/s",
               sum.sent, secs, secs > 0 ? (double)sum.sent / secs : 0.0,
               secs > 0 ? (double)sum.bytes / secs / 1e6 : 0.0);
        if (o.is_router) {
            printf(", %" PRIu64 " acked", sum.acked);
        }
        putchar('\n');
    }
    if (sum.refused > 0) {
        fail("bench: %" PRIu64 " of %" PRIu64 " messages refused", sum.refused, sum.sent);
    }
    for (unsigned i = 0; i < o.clients; i++) {
        free(clients[i].src.buf);
    }
    free(clients);
    return is_ok ? EXIT_SUCCESS : EXIT_ERROR;
}

/* ------------------------------------------------------------ control socket */

/*
 * ctl_request sends line (without newline) to the control socket at path and
 * reads one reply line into reply (cap bytes, NUL-terminated, newline
 * removed), waiting at most timeout_ms in all (-1 = forever).  Returns 0 or
 * a negative errno (the reason printed).
 */
static int
ctl_request(const char *path, const char *line, int timeout_ms, char *reply, size_t cap)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint64_t deadline = util_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    size_t len = 0, line_len = strlen(line);
    char *req;
    int fd, err = 0;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        fail("%s: path too long for a unix socket", path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        fail("socket: %s", errstr(-err));
        return err;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        fail("connect %s: %s (is zpiped running?)", path, errstr(-err));
        goto out;
    }
    req = malloc(line_len + 1);
    if (!req) {
        err = -ENOMEM;
        fail("%s", errstr(ENOMEM));
        goto out;
    }
    memcpy(req, line, line_len);
    req[line_len] = '\n';
    if (send(fd, req, line_len + 1, MSG_NOSIGNAL) != (ssize_t)(line_len + 1)) {
        err = -errno;
        free(req);
        fail("send to %s: %s", path, errstr(-err));
        goto out;
    }
    free(req);
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int wait_ms = -1;
        ssize_t n;

        if (timeout_ms >= 0) {
            uint64_t now = util_now_ms();

            wait_ms = now >= deadline ? 0 : (int)(deadline - now);
        }
        if (poll(&pfd, 1, wait_ms) == 0) {
            err = -ETIMEDOUT;
            fail("%s: no reply within %d ms", path, timeout_ms);
            goto out;
        }
        n = recv(fd, reply + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            err = -errno;
            fail("recv from %s: %s", path, errstr(-err));
            goto out;
        }
        if (n == 0) {
            err = -ECONNRESET;
            fail("%s: connection closed before the reply ended", path);
            goto out;
        }
        len += (size_t)n;
        reply[len] = '\0';
        char *nl = memchr(reply, '\n', len);
        if (nl) {
            *nl = '\0';
            break;
        }
        if (len == cap - 1) {
            err = -EMSGSIZE;
            fail("%s: reply longer than %zu bytes", path, cap - 1);
            goto out;
        }
    }
out:
    close(fd);
    return err;
}

/*
 * json_field finds the first "key": in the stats object json and copies its
 * value's text (a number, true/false, or a string without its quotes) into
 * out.  Returns true if found.  The daemon writes flat keys in a fixed shape,
 * so the first occurrence is the top-level one.
 */
static bool
json_field(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    const char *p;
    size_t n = 0;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(json, pat);
    if (!p) {
        return false;
    }
    p += strlen(pat);
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < cap; p++) {
            if (*p == '\\' && p[1]) {
                p++;
            }
            out[n++] = *p;
        }
    } else {
        for (; *p && *p != ',' && *p != '}' && n + 1 < cap; p++) {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return true;
}

/* json_number returns key's value in json as a number, or 0 when absent. */
static uint64_t
json_number(const char *json, const char *key)
{
    char v[32];

    return json_field(json, key, v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
}

/* per_second is count / ms in messages per second; 0 for no time. */
static double
per_second(uint64_t count, uint64_t ms)
{
    return ms == 0 ? 0.0 : (double)count * 1000.0 / (double)ms;
}

/* print_stats prints the readable summary of the stats object json. */
static void
print_stats(const char *json)
{
    static const char *const keys[] = {
        "state", "uptime_s", "received", "rejected", "delivered", "queued", "queue_capacity",
        "queued_bytes", "queue_max_bytes", "in_flight", "failed", "retried", "spilled",
        "replayed", "blocked", "blocked_s", "kind", "threads",
    };
    char v[sizeof(keys) / sizeof(keys[0])][64];
    uint64_t up_ms = json_number(json, "uptime_ms");

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!json_field(json, keys[i], v[i], sizeof(v[i]))) {
            snprintf(v[i], sizeof(v[i]), "?");
        }
    }
    if (up_ms == 0) {
        up_ms = json_number(json, "uptime_s") * 1000;
    }
    printf("state:        %s, up %s s\n", v[0], v[1]);
    printf("received:     %s (rejected %s)\n", v[2], v[3]);
    printf("delivered:    %s\n", v[4]);
    printf("rates:        received %.1f/s, delivered %.1f/s (averages since start)\n",
           per_second(json_number(json, "received"), up_ms),
           per_second(json_number(json, "delivered"), up_ms));
    printf("queued:       %s of %s messages, %s of %s bytes\n", v[5], v[6], v[7], v[8]);
    printf("in flight:    %s\n", v[9]);
    printf("sink:         %s on %s thread(s), %s failed writes, %s retries\n", v[16], v[17],
           v[10], v[11]);
    printf("spilled:      %s (replayed %s)\n", v[12], v[13]);
    if (strcmp(v[14], "true") == 0) {
        printf("backpressure: producers blocked on a full queue for %s s\n", v[15]);
    } else {
        printf("backpressure: none\n");
    }
}

/* The counters of one stats reply that the interval lines show. */
struct sample {
    uint64_t at_ms; /* the daemon's uptime_ms, or our clock if it has none */
    uint64_t received, delivered, rejected, spilled, queued;
    bool is_blocked;
};

static void
sample_read(const char *json, struct sample *s)
{
    char v[16];

    s->at_ms = json_number(json, "uptime_ms");
    if (s->at_ms == 0) {
        s->at_ms = util_now_ms();
    }
    s->received = json_number(json, "received");
    s->delivered = json_number(json, "delivered");
    s->rejected = json_number(json, "rejected");
    s->spilled = json_number(json, "spilled");
    s->queued = json_number(json, "queued");
    s->is_blocked = json_field(json, "blocked", v, sizeof(v)) && strcmp(v, "true") == 0;
}

/* Counter b minus a, 0 if it went down (a restarted daemon). */
static uint64_t
delta(uint64_t a, uint64_t b)
{
    return b > a ? b - a : 0;
}

/* One interval line: what happened between samples a and b, and b's gauges. */
static void
print_interval(const struct sample *a, const struct sample *b)
{
    uint64_t ms = delta(a->at_ms, b->at_ms);
    time_t now = time(NULL);
    struct tm tm;
    char clock[16] = "?";

    if (localtime_r(&now, &tm) != NULL) {
        strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
    }
    printf("%-8s %10" PRIu64 " %10.1f %10" PRIu64 " %10.1f %9" PRIu64 " %8" PRIu64 " %8" PRIu64
           " %s\n",
           clock, delta(a->received, b->received), per_second(delta(a->received, b->received), ms),
           delta(a->delivered, b->delivered), per_second(delta(a->delivered, b->delivered), ms),
           delta(a->rejected, b->rejected), delta(a->spilled, b->spilled), b->queued,
           b->is_blocked ? "yes" : "no");
}

/* Options of stats and ping: their own, since -s means the socket here. */
struct ctl_opts {
    const char *sock;
    int timeout_ms;
    bool is_stats;        /* the stats-only options apply */
    bool is_json;         /* stats --json */
    uint64_t interval_ms; /* stats -i: 0 = one summary */
    uint64_t count;       /* stats -n: lines to print with -i; 0 = until interrupted */
};

static int
parse_ctl_options(int argc, char **argv, const char *cmd, struct ctl_opts *o)
{
    enum { OPT_JSON = 300 };
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, OPT_JSON },
        { "interval", required_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t value;
    int opt;

    opterr = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "+:s:t:i:n:h", opts, NULL)) != -1) {
        if (!o->is_stats && (opt == OPT_JSON || opt == 'i' || opt == 'n')) {
            return usage_error("%s: option '%s' does not apply", cmd, argv[optind - 1]);
        }
        switch (opt) {
        case 's':
            o->sock = optarg;
            break;
        case 't':
            if (util_parse_duration_ms(optarg, &value) < 0 || value > INT_MAX) {
                return usage_error("%s: invalid timeout '%s'", cmd, optarg);
            }
            o->timeout_ms = value == 0 ? -1 : (int)value;
            break;
        case 'i':
            if (util_parse_duration_ms(optarg, &value) < 0 || value == 0 || value > INT_MAX) {
                return usage_error("%s: invalid interval '%s'", cmd, optarg);
            }
            o->interval_ms = value;
            break;
        case 'n':
            if (util_parse_uint(optarg, &value) < 0 || value == 0) {
                return usage_error("%s: invalid count '%s'", cmd, optarg);
            }
            o->count = value;
            break;
        case OPT_JSON:
            o->is_json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_SUCCESS;
        case ':':
            return usage_error("%s: option '%s' requires an argument", cmd, argv[optind - 1]);
        default:
            return usage_error("%s: unrecognized option '%s'", cmd, argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
    }
    if (o->count > 0 && o->interval_ms == 0) {
        return usage_error("%s: option '-n' needs '-i'", cmd);
    }
    return -1;
}

/* stats_request asks for the stats object into reply; 0, or -1 after saying why. */
static int
stats_request(const struct ctl_opts *o, char *reply)
{
    if (ctl_request(o->sock, "stats", o->timeout_ms, reply, CTL_REPLY_MAX) < 0) {
        return -1;
    }
    if (reply[0] != '{') {
        fail("stats: %s answered: %s", o->sock, reply);
        return -1;
    }
    return 0;
}

/*
 * stats_watch prints, every interval, what happened since the previous
 * sample: counts and per-second rates (the daemon's uptime_ms is the clock,
 * so the rates do not depend on how late our wake-ups are), or with --json
 * each raw object.  Runs until count lines or an error.
 */
static int
stats_watch(const struct ctl_opts *o, char *reply)
{
    struct sample prev, cur;
    uint64_t lines = 0;

    if (stats_request(o, reply) < 0) {
        return EXIT_ERROR;
    }
    sample_read(reply, &prev);
    if (o->is_json) {
        printf("%s\n", reply);
        lines++;
    } else {
        printf("%-8s %10s %10s %10s %10s %9s %8s %8s %s\n", "time", "received", "recv/s",
               "delivered", "deliv/s", "rejected", "spilled", "queued", "blocked");
    }
    while (o->count == 0 || lines < o->count) {
        if (fflush(stdout) != 0) {
            fail("write stdout: %s", errstr(errno));
            return EXIT_ERROR;
        }
        (void)poll(NULL, 0, (int)o->interval_ms);
        if (stats_request(o, reply) < 0) {
            return EXIT_ERROR;
        }
        if (o->is_json) {
            printf("%s\n", reply);
        } else {
            sample_read(reply, &cur);
            print_interval(&prev, &cur);
            prev = cur;
        }
        lines++;
    }
    return EXIT_SUCCESS;
}

static int
cmd_stats(int argc, char **argv)
{
    struct ctl_opts o = { .sock = DEFAULT_SOCKET,
                          .timeout_ms = DEFAULT_TIMEOUT_MS,
                          .is_stats = true };
    int status = parse_ctl_options(argc, argv, "stats", &o);
    char *reply;

    if (status >= 0) {
        return status;
    }
    reply = malloc(CTL_REPLY_MAX);
    if (!reply) {
        fail("stats: %s", errstr(ENOMEM));
        return EXIT_ERROR;
    }
    if (o.interval_ms > 0) {
        status = stats_watch(&o, reply);
    } else if (stats_request(&o, reply) == 0) {
        if (o.is_json) {
            printf("%s\n", reply);
        } else {
            print_stats(reply);
        }
        status = EXIT_SUCCESS;
    } else {
        status = EXIT_ERROR;
    }
    free(reply);
    return status;
}

static int
cmd_ping(int argc, char **argv)
{
    struct ctl_opts o = { .sock = DEFAULT_SOCKET, .timeout_ms = DEFAULT_TIMEOUT_MS };
    int status = parse_ctl_options(argc, argv, "ping", &o);
    char reply[256];

    if (status >= 0) {
        return status;
    }
    if (ctl_request(o.sock, "ping", o.timeout_ms, reply, sizeof(reply)) < 0) {
        return EXIT_ERROR;
    }
    if (strcmp(reply, "pong") != 0) {
        fail("ping: %s answered: %s", o.sock, reply);
        return EXIT_ERROR;
    }
    printf("pong\n");
    return EXIT_SUCCESS;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    { "push", cmd_push },
    { "bench", cmd_bench },
    { "stats", cmd_stats },
    { "ping", cmd_ping },
};

int
main(int argc, char **argv)
{
    struct opts o = default_opts;
    int status = parse_options(argc, argv, NULL, "+:h", &o);

    if (status >= 0) {
        return status;
    }
    if (optind >= argc) {
        fprintf(stderr, "zpipe: no command given\n\n%s", usage_text);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    status = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].name) == 0) {
            status = commands[i].run(argc, argv);
            break;
        }
    }
    if (status < 0) {
        fprintf(stderr, "zpipe: unknown command '%s'\n\n%s", argv[0], usage_text);
        return EXIT_USAGE;
    }
    if (fflush(stdout) != 0) {
        fail("write stdout: %s", errstr(errno));
        return EXIT_ERROR;
    }
    return status;
}
