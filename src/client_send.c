/*
 * client_send.c - the zpipe client's sending engine (see client_send.h).
 *
 * Pull mode sends with a blocking zmq_send bounded by ZMQ_SNDTIMEO.  Router
 * mode never blocks in a send: it fills the window, then zmq_polls for a
 * reply or for room, and the oldest unanswered message alone decides the
 * timeout.
 */
#include "config.h"

#include "client_send.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zmq.h>

#include "client.h"
#include "curve.h"
#include "reply.h"
#include "util.h"

#define REPLY_PRINT_MAX 512         /* longest reply text we keep for printing */

_Static_assert(CLIENT_SEND_WINDOW <= REPLY_WINDOW_MAX,
               "the client's window must stay below the router's reply high-water mark");

/* ------------------------------------------------------------ push's sources */

struct args_source {
    struct client_source base;
    char **argv;
    int argc;
    int next_index;
};

static int
args_next(struct client_source *src, const char **data, size_t *len)
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
    struct client_source base;
    char *line;                     /* getline's buffer, freed by the owner */
    size_t cap;
};

static int
stdin_next(struct client_source *src, const char **data, size_t *len)
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

/* ------------------------------------------------------------ sending */

/*
 * send_failed prints why a send to job's endpoint failed, err being zmq_send's
 * errno, and returns the negative errno: -ETIMEDOUT when message number index
 * (from 1) was not taken within the timeout.
 */
static int
send_failed(const struct client_job *job, int err, uint64_t index, const char *hint)
{
    if (err == EAGAIN) {
        client_fail("%s: %s: message %" PRIu64 " not taken within %d ms%s", job->label,
                    job->endpoint, index, job->timeout_ms, hint);
        return -ETIMEDOUT;
    }
    client_fail("%s: send to %s: %s", job->label, job->endpoint, client_errstr(err));
    return -err;
}

/* read_failed prints why src failed with rc (a negative errno) and returns rc. */
static int
read_failed(const struct client_job *job, const struct client_source *src, int rc)
{
    client_fail("%s: read %s: %s", job->label, src->name, client_errstr(-rc));
    return rc;
}

/*
 * send_push sends every message of src on a PUSH socket.  A send that cannot
 * go out within the socket's ZMQ_SNDTIMEO (no connected daemon, or one that
 * stopped reading) fails.  Returns 0, or a negative errno after printing why.
 */
static int
send_push(void *sock, const struct client_job *job, struct client_source *src,
          struct client_tally *t)
{
    const char *data;
    size_t len;
    int rc;

    while ((rc = src->next(src, &data, &len)) > 0) {
        if (zmq_send(sock, data, len, 0) < 0) {
            return send_failed(job, errno, t->sent + 1, " (is zpiped running there?)");
        }
        t->sent++;
        t->bytes += len;
    }
    return rc < 0 ? read_failed(job, src, rc) : 0;
}

/*
 * handle_reply counts one reply of kind REPLY_OK or REPLY_ERR (text: the
 * ERR's) to message number index (from 1), printing the first ERRs.
 */
static void
handle_reply(const struct client_job *job, int kind, const char *text, uint64_t index,
             struct client_tally *t)
{
    if (kind == REPLY_OK) {
        t->acked++;
        return;
    }
    if (t->refused < job->err_report_limit) {
        client_fail("%s: message %" PRIu64 ": %s", job->label, index, text);
    }
    t->refused++;
}

/*
 * router_fill sends messages of src as ["", payload] without blocking until
 * the window is full, src ends (*is_eof) or the socket refuses one at its
 * high-water mark (*is_blocked).  *data and *len carry a message taken from
 * src but not sent yet (*has_data) to the next call.  sent_us[i %
 * CLIENT_SEND_WINDOW] is when message i (from 0) was sent.  Returns 0, or a
 * negative errno after printing why.
 */
static int
router_fill(void *sock, const struct client_job *job, struct client_source *src,
            struct client_tally *t, uint64_t *sent_us, const char **data, size_t *len,
            bool *has_data, bool *is_eof, bool *is_blocked)
{
    uint64_t answered = t->acked + t->refused;

    while (!*is_eof && t->sent - answered < CLIENT_SEND_WINDOW) {
        if (!*has_data) {
            int rc = src->next(src, data, len);

            if (rc < 0) {
                return read_failed(job, src, rc);
            }
            if (rc == 0) {
                *is_eof = true;
                break;
            }
            *has_data = true;
        }
        if (zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN) {
                *is_blocked = true;
                break;
            }
            return send_failed(job, errno, t->sent + 1, "");
        }
        /* The first frame got in, so the last one will: it cannot block. */
        if (zmq_send(sock, *data, *len, 0) < 0) {
            return send_failed(job, errno, t->sent + 1, "");
        }
        sent_us[t->sent % CLIENT_SEND_WINDOW] = util_now_us();
        t->sent++;
        t->bytes += *len;
        *has_data = false;
    }
    return 0;
}

/*
 * router_wait polls until a reply arrives or, when is_blocked, the socket
 * takes more.  Replies come in order, so the oldest unanswered message,
 * number acked + refused (from 0), alone decides the timeout.  Returns 0, or
 * a negative errno after printing why.
 */
static int
router_wait(void *sock, const struct client_job *job, const struct client_tally *t,
            const uint64_t *sent_us, bool is_blocked)
{
    uint64_t answered = t->acked + t->refused;
    zmq_pollitem_t item = { .socket = sock, .events = 0 };
    long wait_ms = job->timeout_ms;
    int rc;

    if (t->sent > answered) {
        item.events |= ZMQ_POLLIN;
        if (job->timeout_ms >= 0) {
            uint64_t deadline_us = sent_us[answered % CLIENT_SEND_WINDOW]
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
        int err = errno;

        client_fail("%s: poll %s: %s", job->label, job->endpoint, client_errstr(err));
        return -err;
    }
    if (rc == 0) {
        if (t->sent > answered) {
            client_fail("%s: %s: no reply to message %" PRIu64 " within %d ms "
                        "(is zpiped running there in router mode?)",
                        job->label, job->endpoint, answered + 1, job->timeout_ms);
            return -ETIMEDOUT;
        }
        return send_failed(job, EAGAIN, t->sent + 1, "");
    }
    return 0;
}

/*
 * send_router sends every message of src as ["", payload] on a DEALER socket
 * and waits for all the replies, with up to CLIENT_SEND_WINDOW messages in
 * flight.  Returns 0 once every message has been answered (OK or ERR), or a
 * negative errno after printing why.
 */
static int
send_router(void *sock, const struct client_job *job, struct client_source *src,
            struct client_tally *t)
{
    uint64_t sent_us[CLIENT_SEND_WINDOW];    /* 8 KB: fine on any thread's stack */
    char text[REPLY_PRINT_MAX];    /* an ERR or unexpected reply, for printing */
    const char *data = NULL;
    size_t len = 0;
    bool has_data = false;          /* data/len hold a message not sent yet */
    bool is_eof = false;

    for (;;) {
        bool is_blocked = false;    /* the socket refused a send (high-water mark) */
        int rc = router_fill(sock, job, src, t, sent_us, &data, &len, &has_data, &is_eof,
                             &is_blocked);
        uint64_t answered = t->acked + t->refused;

        if (rc < 0) {
            return rc;
        }
        if (is_eof && t->sent == answered) {
            return 0;
        }
        rc = reply_recv(sock, text, sizeof(text));
        if (rc == -EPROTO) {
            client_fail("%s: %s: message %" PRIu64 ": unexpected reply '%s' "
                        "(not [\"\", \"OK\"] or [\"\", \"ERR ...\"])",
                        job->label, job->endpoint, answered + 1, text);
            return rc;
        }
        if (rc < 0) {
            client_fail("%s: receive from %s: %s", job->label, job->endpoint,
                        client_errstr(-rc));
            return rc;
        }
        if (rc > 0 && t->sent == answered) {
            client_fail("%s: %s: reply to no message: '%s'", job->label, job->endpoint,
                        rc == REPLY_OK ? REPLY_OK_TEXT : text);
            return -EPROTO;
        }
        if (rc > 0) {
            handle_reply(job, rc, text, answered + 1, t);
            continue;
        }
        rc = router_wait(sock, job, t, sent_us, is_blocked);
        if (rc < 0) {
            return rc;
        }
    }
}

/*
 * open_socket creates the job's socket on ctx and connects it.  In pull mode
 * it only queues messages for a completed connection (ZMQ_IMMEDIATE), so a
 * send times out instead of queueing for a daemon that is not there, and it
 * lingers up to the timeout at close so queued messages get out.  Returns 0
 * and *out, or a negative errno after printing why.
 */
static int
open_socket(void *ctx, const struct client_job *job, void **out)
{
    void *sock = zmq_socket(ctx, job->is_router ? ZMQ_DEALER : ZMQ_PUSH);
    int64_t max_frame = REPLY_PEER_FRAME_MAX;
    int one = 1;
    int zero = 0;
    int err;

    if (!sock) {
        err = errno;
        client_fail("%s: socket: %s", job->label, client_errstr(err));
        return -err;
    }
    if (zmq_setsockopt(sock, ZMQ_SNDTIMEO, &job->timeout_ms, sizeof(int)) < 0
        || zmq_setsockopt(sock, ZMQ_LINGER, job->is_router ? &zero : &job->timeout_ms,
                          sizeof(int)) < 0
        || (!job->is_router && zmq_setsockopt(sock, ZMQ_IMMEDIATE, &one, sizeof(one)) < 0)
        || zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_frame, sizeof(max_frame)) < 0) {
        err = errno;
        client_fail("%s: setsockopt: %s", job->label, client_errstr(err));
        goto fail;
    }
    if (job->curve_server_key) {
        char why[CURVE_ERR_MAX];

        err = -curve_client_setup(sock, job->curve_server_key, job->curve_secret_key, why,
                                  sizeof(why));
        if (err > 0) {
            client_fail("%s: CURVE: %s", job->label, why);
            goto fail;
        }
    }
    if (zmq_connect(sock, job->endpoint) < 0) {
        err = errno;
        client_fail("%s: connect %s: %s", job->label, job->endpoint, client_errstr(err));
        goto fail;
    }
    *out = sock;
    return 0;

fail:
    zmq_close(sock);
    return -err;
}

/*
 * line_wait blocks the calling job at line until client_line_open, counting
 * it as failed if rc is not 0.
 */
static void
line_wait(struct client_line *line, int rc)
{
    pthread_mutex_lock(&line->lock);
    line->ready++;
    line->failed += rc != 0 ? 1 : 0;
    pthread_cond_broadcast(&line->cond);
    while (!line->is_open) {
        pthread_cond_wait(&line->cond, &line->lock);
    }
    pthread_mutex_unlock(&line->lock);
}

unsigned
client_line_await(struct client_line *line, unsigned n)
{
    unsigned failed;

    pthread_mutex_lock(&line->lock);
    while (line->ready < n) {
        pthread_cond_wait(&line->cond, &line->lock);
    }
    failed = line->failed;
    pthread_mutex_unlock(&line->lock);
    return failed;
}

void
client_line_open(struct client_line *line)
{
    pthread_mutex_lock(&line->lock);
    line->is_open = true;
    pthread_cond_broadcast(&line->cond);
    pthread_mutex_unlock(&line->lock);
}

int
client_send_run(const struct client_job *job, struct client_source *src,
                struct client_tally *t, struct client_line *start, struct client_line *finish)
{
    void *ctx = zmq_ctx_new();
    void *sock = NULL;
    int rc;

    if (!ctx) {
        rc = -errno;
        client_fail("%s: zmq_ctx_new: %s", job->label, client_errstr(-rc));
    } else {
        rc = open_socket(ctx, job, &sock);
    }
    if (start) {
        line_wait(start, rc);
    }
    if (rc == 0) {
        rc = job->is_router ? send_router(sock, job, src, t) : send_push(sock, job, src, t);
    }
    if (rc == 0 && t->refused > 0) {
        rc = CLIENT_SEND_REFUSED;
    }
    if (finish) {
        int zero = 0;

        line_wait(finish, rc);
        /* Whoever opened the finish line decided that sending is over. */
        if (sock) {
            zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
        }
    }

    /*
     * Else, in pull mode, closing lingers until the queued messages are out
     * or the timeout is over.  Hitting the limit means some were dropped.
     */
    uint64_t close_start_ms = util_now_ms();
    if (sock) {
        zmq_close(sock);
    }
    if (ctx) {
        zmq_ctx_term(ctx);
    }
    if (rc == 0 && !finish && !job->is_router && job->timeout_ms > 0
        && util_now_ms() - close_start_ms >= (uint64_t)job->timeout_ms) {
        client_fail("%s: %s: queued messages not sent within %d ms; some may be lost",
                    job->label, job->endpoint, job->timeout_ms);
        rc = -ETIMEDOUT;
    }
    return rc;
}

int
client_send_push(const struct client_job *job, char **msgs, int n)
{
    struct client_tally t = { 0 };
    int rc;

    if (n > 0) {
        struct args_source src = {
            .base = { .next = args_next, .name = "arguments" },
            .argv = msgs,
            .argc = n,
        };
        rc = client_send_run(job, &src.base, &t, NULL, NULL);
    } else {
        struct stdin_source src = {
            .base = { .next = stdin_next, .name = "stdin" },
        };
        rc = client_send_run(job, &src.base, &t, NULL, NULL);
        free(src.line);
    }
    if (t.refused > 0) {
        client_fail("%s: %" PRIu64 " of %" PRIu64 " messages refused", job->label, t.refused,
                    t.sent);
    }
    return rc;
}
